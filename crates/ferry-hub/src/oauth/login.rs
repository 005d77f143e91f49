//! Signing in and out: the landing page, the sign-in form and its answer
//! (rate-limited, bounded password checks), and `/logout`.

use super::params::{carried, encode_pairs, form_params, truncate};
use super::{PageError, internal, page, see_other, shown};
use crate::grants;
use crate::page_auth::{Anyone, MaybeSignedIn, UNAVAILABLE};
use crate::pages;
use crate::secrets::verify_password;
use crate::server::Hub;
use crate::session::{self, LoginCsrf};
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

fn client_ip(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// The login page, with its CSRF cookie and the field that goes with it.
pub(super) fn login_page(
    hub: &Hub,
    headers: &HeaderMap,
    status: StatusCode,
    carry: &[(String, String)],
    user: &str,
    error: Option<&str>,
) -> Response {
    let csrf = match LoginCsrf::issue(&hub.login_csrf, headers, grants::now()) {
        Ok(csrf) => csrf,
        Err(e) => return internal(e).into_response(),
    };
    let providers = hub.oidc.offered();
    let mut response = page(
        status,
        pages::login(csrf.field(), user, carry, &providers, error),
    );
    csrf.set_cookie(&mut response);
    response
}

pub(super) async fn landing(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
) -> Result<Response, PageError> {
    // Signed in, `/` is the web app.
    if let Some(signed_in) = current {
        return Ok(crate::app::home(&hub, signed_in).await);
    }
    let fingerprint = ferry_proto::setup_key::format_fingerprint(&hub.tls_ca_sha256);
    Ok(page(
        StatusCode::OK,
        pages::landing(
            current.as_ref().map(|s| s.user_name()),
            current.as_ref().map(|s| s.csrf_token()),
            &fingerprint,
        ),
    ))
}

pub(super) async fn login_form(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(match current {
        Some(_) => see_other("/"),
        None => login_page(&hub, &headers, StatusCode::OK, &[], "", None),
    })
}

/// Argon2 runs for unknown accounts too, against this, so the time taken
/// does not tell which accounts exist.
fn dummy_password_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        crate::secrets::hash_password("no account has this password").unwrap_or_default()
    })
}

pub(super) async fn login(
    State(hub): State<Arc<Hub>>,
    _: Anyone,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let params = form_params(form)?;
    let carry = carried(&params);
    let now = grants::now();
    if LoginCsrf::check(&hub.login_csrf, &headers, params.get("csrf"), now).is_err() {
        return Err(shown(
            StatusCode::FORBIDDEN,
            "Sign-in form expired",
            "This sign-in form expired or did not come from this hub. Go back, reload the page and sign in again.",
        ));
    }
    let user = params.get("username").unwrap_or_default();
    let Some(password) = params.get("password").filter(|_| !user.is_empty()) else {
        return Ok(login_page(
            &hub,
            &headers,
            StatusCode::BAD_REQUEST,
            &carry,
            user,
            Some("Enter your user name and password."),
        ));
    };
    let ip = client_ip(peer);
    // Counted before the password is checked, so guesses sent at once
    // cannot all pass before any is counted.
    let attempt = match hub.logins.begin(user, ip, now) {
        Ok(attempt) => attempt,
        Err(wait) => {
            let minutes = (wait + 59) / 60;
            tracing::warn!(user = %truncate(user), ?ip, "login refused: too many failed logins");
            let plural = if minutes == 1 { "" } else { "s" };
            return Ok(login_page(
                &hub,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &carry,
                user,
                Some(&format!(
                    "too many failed logins; try again in {minutes} minute{plural}"
                )),
            ));
        }
    };
    let Some(place) = hub.password_checks.admit() else {
        attempt.unchecked();
        tracing::warn!(user = %truncate(user), ?ip, "login refused: too many password checks waiting");
        let mut busy = login_page(
            &hub,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            &carry,
            user,
            Some("The hub is busy with other sign-ins; try again in a moment."),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(busy);
    };
    let account = match hub.store.user_by_name(user) {
        Ok(account) => account,
        // No password was checked: nothing to count against the account
        // or the address, and nothing to tell but to try again.
        Err(e) if e.is_transient() => {
            attempt.unchecked();
            tracing::warn!(error = %e, "sign-in: storage unavailable");
            let mut busy = login_page(
                &hub,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &carry,
                user,
                Some(UNAVAILABLE),
            );
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Ok(busy);
        }
        Err(e) => {
            attempt.unchecked();
            return Err(internal(e));
        }
    };
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let password = password.to_string();
    let Some(turn) = place.turn().await else {
        attempt.unchecked();
        return Err(internal("the password checks were closed"));
    };
    // Argon2 takes tens of milliseconds of CPU and about 19 MiB: off the
    // async workers (the dummy hash too, made on first use), and holding
    // its turn until it ends even if the client has gone.
    let verified = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        verify_password(
            &password,
            match &stored {
                Some(hash) => hash,
                None => dummy_password_hash(),
            },
        )
    })
    .await
    .unwrap_or(false);
    let account = match account {
        Some(account) if verified => account,
        _ => {
            attempt.failed();
            tracing::info!(user = %truncate(user), ?ip, "failed login");
            return Ok(login_page(
                &hub,
                &headers,
                StatusCode::UNAUTHORIZED,
                &carry,
                user,
                Some("wrong user name or password"),
            ));
        }
    };
    attempt.succeeded();
    // Back to the authorize request that sent the browser here, never to a
    // place the form names.
    let next = if carry.is_empty() {
        "/".to_string()
    } else {
        let pairs: Vec<(&str, &str)> = carry
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        format!("/authorize?{}", encode_pairs(&pairs))
    };
    let mut response = see_other(&next);
    let identity = hub.identity_rules.local_identity(&account.name);
    session::begin(
        &*hub.store,
        &headers,
        account.id,
        &identity,
        now,
        &mut response,
    )?;
    LoginCsrf::clear(&mut response);
    tracing::info!(user = %account.name, "signed in");
    Ok(response)
}

pub(super) async fn logout(
    State(hub): State<Arc<Hub>>,
    MaybeSignedIn(current): MaybeSignedIn,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let params = form_params(form)?;
    if let Some(current) = current {
        if current.check_csrf(params.get("csrf")).is_err() {
            return Err(shown(
                StatusCode::FORBIDDEN,
                "Sign-out refused",
                "This sign-out form did not come from this hub.",
            ));
        }
        current.end(&*hub.store)?;
        tracing::info!(user = %current.user_name(), "signed out");
    }
    let mut response = see_other("/");
    session::clear(&mut response);
    Ok(response)
}
