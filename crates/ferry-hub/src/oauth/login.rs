//! Signing in and out: the landing page, the sign-in form and its answer
//! (rate-limited, bounded password checks), and `/logout`.

use super::params::{carried, encode_pairs, form_params, truncate};
use super::{PageError, internal, page, refused_from_elsewhere, see_other, shown};
use crate::grants;
use crate::pages;
use crate::secrets::{random_token, token_hash, verify_password};
use crate::server::Hub;
use crate::session::{
    LOGIN_CSRF_COOKIE, LOGIN_FORM_TTL, SESSION_COOKIE, SESSION_TTL, cookie, csrf_matches,
    login_cookie_age, login_csrf_field, new_login_cookie, posted_from_elsewhere, session,
    set_cookie,
};
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

pub(super) fn client_ip(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// The login page, with its CSRF cookie and the field that goes with it.
/// A recent cookie of the hub's that the browser already holds is kept, so
/// two open login tabs both work.
pub(super) fn login_page(
    hub: &Hub,
    headers: &HeaderMap,
    status: StatusCode,
    carry: &[(String, String)],
    user: &str,
    error: Option<&str>,
) -> Response {
    let now = grants::now();
    let held = cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|c| login_cookie_age(hub, c, now).is_some_and(|age| age < LOGIN_FORM_TTL / 2));
    let login_cookie = match held
        .map(str::to_string)
        .map_or_else(|| new_login_cookie(hub, now), Ok)
    {
        Ok(c) => c,
        Err(e) => return internal(format!("no randomness: {e}")).into_response(),
    };
    let field = login_csrf_field(hub, &login_cookie);
    let mut response = page(status, pages::login(&field, user, carry, error));
    set_cookie(
        &mut response,
        &format!(
            "{LOGIN_CSRF_COOKIE}={login_cookie}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={LOGIN_FORM_TTL}"
        ),
    );
    response
}

pub(super) async fn landing(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = session(&hub, &headers)?;
    let fingerprint = ferry_proto::setup_key::format_fingerprint(&hub.tls_ca_sha256);
    Ok(page(
        StatusCode::OK,
        pages::landing(
            current.as_ref().map(|(_, s)| s.user_name.as_str()),
            current.as_ref().map(|(_, s)| s.csrf.as_str()),
            &fingerprint,
        ),
    ))
}

pub(super) async fn login_form(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(match session(&hub, &headers)? {
        Some(_) => see_other("/"),
        None => login_page(&hub, &headers, StatusCode::OK, &[], "", None),
    })
}

/// Argon2 runs for unknown accounts too, against this, so the time taken
/// does not tell which accounts exist.
pub(super) fn dummy_password_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        crate::secrets::hash_password("no account has this password").unwrap_or_default()
    })
}

pub(super) async fn login(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    if posted_from_elsewhere(&headers) {
        return Err(refused_from_elsewhere());
    }
    let params = form_params(form)?;
    let carry = carried(&params);
    let now = grants::now();
    let issued = cookie(&headers, LOGIN_CSRF_COOKIE)
        .filter(|c| login_cookie_age(&hub, c, now).is_some_and(|age| age < LOGIN_FORM_TTL));
    if !issued.is_some_and(|c| csrf_matches(params.get("csrf"), &login_csrf_field(&hub, c))) {
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
    let account = hub.store.user_by_name(user).map_err(internal)?;
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
    let token = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    let csrf = random_token(32).map_err(|e| internal(format!("no randomness: {e}")))?;
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        hub.store
            .delete_session(&token_hash(old))
            .map_err(internal)?;
    }
    hub.store
        .put_session(&token_hash(&token), account.id, &csrf, now + SESSION_TTL)
        .map_err(internal)?;
    tracing::info!(user = %account.name, "signed in");
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
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={token}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_TTL}"
        ),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_CSRF_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}

pub(super) async fn logout(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    if posted_from_elsewhere(&headers) {
        return Err(refused_from_elsewhere());
    }
    let params = form_params(form)?;
    if let Some((hash, current)) = session(&hub, &headers)? {
        if !csrf_matches(params.get("csrf"), &current.csrf) {
            return Err(shown(
                StatusCode::FORBIDDEN,
                "Sign-out refused",
                "This sign-out form did not come from this hub.",
            ));
        }
        hub.store.delete_session(&hash).map_err(internal)?;
        tracing::info!(user = %current.user_name, "signed out");
    }
    let mut response = see_other("/");
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
    Ok(response)
}
