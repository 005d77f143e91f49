//! Account: who is signed in, their access tokens for scripts (make one,
//! see them, revoke one), their browser sessions (end the others), and how
//! the command line and programs reach the hub. Tokens are made and
//! revoked through [`grants`], as `ferry-hub token create` makes them.

use super::view::{self, Account};
use super::{AppError, Nav, Notice, Visitor};
use crate::authz::SeesEndpoints;
use crate::grants::{self, PersonalTokenError};
use crate::page_auth::SignedIn;
use crate::server::Hub;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

fn page(
    hub: &Hub,
    signed_in: &SignedIn<SeesEndpoints>,
    new_token: Option<&str>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let now = grants::now();
    let who = signed_in.principal();
    let tokens = hub.store.personal_tokens(who.user_id, now)?;
    let sessions: Vec<_> = hub
        .store
        .sessions_of(who.user_id, now)?
        .into_iter()
        .map(|s| {
            let this = signed_in.session().is(&s.session_hash);
            (s, this)
        })
        .collect();
    let whoami = crate::identities::whoami(
        &*hub.store,
        &hub.identity_rules,
        who,
        Some(signed_in.session().login_id()),
    )?;
    let providers = hub.oidc.offered();
    let connected = hub.store.consents_of(who.user_id)?;
    let visitor = Visitor {
        who: who.clone(),
        csrf: signed_in.csrf_token().to_string(),
    };
    let html = view::account(
        &visitor.frame(Nav::Account),
        &Account {
            hub_url: &hub.config.url,
            tokens: &tokens,
            new_token,
            sessions: &sessions,
            notice,
            whoami: &whoami,
            providers: &providers,
            connected: &connected,
        },
    );
    Ok((status, Html(html)).into_response())
}

/// `GET /account`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
) -> Result<Response, AppError> {
    page(&hub, &signed_in, None, None, StatusCode::OK)
}

/// The form's token, checked, or the page that says it is stale.
fn checked(
    signed_in: &SignedIn<SeesEndpoints>,
    fields: &[(String, String)],
) -> Result<super::Fields, AppError> {
    let fields = super::Fields(fields.to_vec());
    signed_in
        .check_csrf(fields.get("csrf"))
        .map_err(|_| AppError::StaleForm)?;
    Ok(fields)
}

/// `POST /account/tokens`: `Create token`.
pub async fn create_token(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let fields = checked(&signed_in, &fields)?;
    let days = fields
        .get("days")
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(30);
    let label = fields.get("label").unwrap_or("");
    match grants::create_personal(&*hub.store, signed_in.principal(), label, days * 86_400) {
        Ok(token) => {
            tracing::info!(user = %signed_in.user_name(), "personal access token made");
            page(
                &hub,
                &signed_in,
                Some(&token.access_token),
                None,
                StatusCode::CREATED,
            )
        }
        Err(PersonalTokenError::Issue(grants::IssueError::Store(e))) => Err(e.into()),
        Err(PersonalTokenError::Issue(e)) => Err(AppError::Internal(e.to_string())),
        Err(e) => page(
            &hub,
            &signed_in,
            None,
            Some(Notice::Error(super::sentence(&format!(
                "{e}: choose another"
            )))),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

/// `POST /account/tokens/{grant}/revoke`.
pub async fn revoke_token(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Path(grant): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    checked(&signed_in, &fields)?;
    if !grants::revoke_personal(&*hub.store, signed_in.principal(), &grant)? {
        return Err(AppError::NotFound(
            "There is no such token among yours: it may have expired or been revoked already."
                .into(),
        ));
    }
    tracing::info!(user = %signed_in.user_name(), "personal access token revoked");
    page(
        &hub,
        &signed_in,
        None,
        Some(Notice::Done(
            "Revoked: scripts using that token are refused from now on.".into(),
        )),
        StatusCode::OK,
    )
}

/// `POST /account/sessions/end-others`: `Sign out other browsers`.
pub async fn end_other_sessions(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    checked(&signed_in, &fields)?;
    let ended = signed_in
        .session()
        .end_others(&*hub.store)
        .map_err(|e| match e {
            crate::session::SessionError::Store(e) => AppError::from(e),
            e => AppError::Internal(e.to_string()),
        })?;
    tracing::info!(user = %signed_in.user_name(), ended, "other sessions ended");
    page(
        &hub,
        &signed_in,
        None,
        Some(Notice::Done(format!(
            "Signed out of {ended} other browser{}.",
            if ended == 1 { "" } else { "s" }
        ))),
        StatusCode::OK,
    )
}

/// `POST /account/apps/{app}/revoke`: a Connected app's `Revoke`.
pub async fn revoke_app(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Path(client_id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    checked(&signed_in, &fields)?;
    match crate::apps::revoke_consent(&*hub.store, signed_in.principal(), &client_id) {
        Ok(()) => {}
        Err(crate::apps::AppError::Storage(e)) => return Err(e.into()),
        Err(crate::apps::AppError::NotFound(_)) => {
            return Err(AppError::NotFound(
                "No such app acts for you: it may have been revoked already.".into(),
            ));
        }
        Err(e) => return Err(AppError::Internal(e.to_string())),
    }
    page(
        &hub,
        &signed_in,
        None,
        Some(Notice::Done(
            "Revoked: the app's access ended, and it must ask you again.".into(),
        )),
        StatusCode::OK,
    )
}
