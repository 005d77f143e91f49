//! Signing in through an upstream OpenID provider, and linking an
//! identity to the signed-in account: `/auth/oidc/{name}/start` sends the
//! browser to the provider (with `?link=1` from the account page, to link
//! instead of signing in), `/auth/oidc/{name}/callback` takes it back.
//! The protocol is [`crate::oidc`]'s; which account an identity signs in
//! to, or whether it may be linked, [`crate::identities`]'.

use super::params::{carried, encode_pairs, query_params};
use super::{PageError, see_other, shown};
use crate::grants;
use crate::identities::{self, Federated, IdentityError};
use crate::oidc::{BINDING_COOKIE, LinkTo, OidcError, PENDING_TTL};
use crate::page_auth::MaybeSignedIn;
use crate::server::Hub;
use crate::session;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

fn refused(e: OidcError) -> PageError {
    const NOT_NOW: &str = "Sign-in not possible now";
    let (status, title) = match &e {
        OidcError::UnknownProvider(_) => (StatusCode::NOT_FOUND, "Not found"),
        OidcError::Unreachable { .. } | OidcError::BadAnswer { .. } => {
            (StatusCode::BAD_GATEWAY, NOT_NOW)
        }
        OidcError::Busy => (StatusCode::SERVICE_UNAVAILABLE, NOT_NOW),
        OidcError::Randomness(_) => (StatusCode::INTERNAL_SERVER_ERROR, NOT_NOW),
        _ => (StatusCode::FORBIDDEN, "Sign-in refused"),
    };
    tracing::info!(error = %e, "federated sign-in refused");
    shown(status, title, e.to_string())
}

/// `GET /auth/oidc/{name}/start`: to the provider, with this sign-in's
/// state, nonce and PKCE challenge; its binding cookie set here.
pub(super) async fn start(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query_params(query)?;
    let link = match (params.get("link"), current) {
        (Some("1"), Some(signed_in)) => Some(LinkTo {
            user_id: signed_in.principal().user_id,
            login_id: signed_in.session().login_id().to_string(),
        }),
        // Linking is for a signed-in account: sign in first.
        (Some("1"), None) => return Ok(see_other("/login")),
        _ => None,
    };
    // Back to the authorize request that sent the browser to sign in,
    // never to a place the link names.
    let carry = carried(&params);
    let next = if link.is_some() {
        "/account".to_string()
    } else if carry.is_empty() {
        "/".to_string()
    } else {
        let pairs: Vec<(&str, &str)> = carry
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        format!("/authorize?{}", encode_pairs(&pairs))
    };
    let started = hub
        .oidc
        .start(&hub.config.url, &name, link, next, grants::now())
        .await
        .map_err(refused)?;
    let mut response = see_other(&started.location);
    // Lax: the provider sends the browser back with a top-level GET.
    session::set_cookie(
        &mut response,
        &format!(
            "{BINDING_COOKIE}={}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={PENDING_TTL}",
            started.binding
        ),
    );
    Ok(response)
}

/// `GET /auth/oidc/{name}/callback`: the provider's answer. Signs the
/// browser in to the identity's account (made on its first sign-in), or
/// links the identity to the account that asked.
pub(super) async fn callback(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query_params(query)?;
    if let Some(error) = params.get("error") {
        return Err(refused(OidcError::Refused {
            provider: name.chars().take(64).collect(),
            detail: super::params::truncate(error).to_string(),
        }));
    }
    let (Some(state), Some(code)) = (params.get("state"), params.get("code")) else {
        return Err(shown(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "This is not an answer from an identity provider (no state or code).",
        ));
    };
    let now = grants::now();
    let binding = session::cookie(&headers, BINDING_COOKIE);
    let finished = hub
        .oidc
        .finish(&hub.config.url, &name, state, code, binding, now)
        .await
        .map_err(refused)?;
    let mut response = see_other(&finished.next);
    session::set_cookie(
        &mut response,
        &format!("{BINDING_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
    let store = &*hub.store;
    match finished.link {
        Some(link) => {
            // Only the session that asked finishes its link.
            let same = current.as_ref().is_some_and(|s| {
                s.principal().user_id == link.user_id && s.session().is(&link.login_id)
            });
            if !same {
                return Err(shown(
                    StatusCode::FORBIDDEN,
                    "Link refused",
                    "The session that asked for this link has ended; sign in and link the identity again from your account page.",
                ));
            }
            match identities::link(
                store,
                link.user_id,
                &finished.provider,
                &finished.identity,
                now,
            ) {
                Ok(()) => {}
                Err(IdentityError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(shown(StatusCode::CONFLICT, "Link refused", e.to_string())),
            }
            store.note_login_identity(&link.login_id, &finished.identity, now)?;
            tracing::info!(user = link.user_id, identity = %finished.identity, "identity linked");
        }
        None => {
            let (user_id, user_name) = match identities::sign_in_federated(
                store,
                &finished.provider,
                &finished.identity,
                now,
            ) {
                Ok(Federated::Existing { user_id, user_name }) => (user_id, user_name),
                Ok(Federated::Created { user_id, user_name }) => {
                    tracing::info!(user = %user_name, identity = %finished.identity, "account created by a federated sign-in");
                    (user_id, user_name)
                }
                Err(IdentityError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(shown(
                        StatusCode::CONFLICT,
                        "Sign-in refused",
                        e.to_string(),
                    ));
                }
            };
            session::begin(
                store,
                &headers,
                user_id,
                &finished.identity,
                now,
                &mut response,
            )?;
            tracing::info!(user = %user_name, identity = %finished.identity, "signed in");
        }
    }
    Ok(response)
}
