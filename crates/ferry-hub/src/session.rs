//! The browser session and its CSRF defences: the `__Host-` session cookie
//! and the session it names, the sign-in form's HMAC-bound CSRF cookie and
//! field, and the Fetch Metadata check on posted forms. Shared by every
//! page that acts for a signed-in user.

use crate::grants;
use crate::oauth::{PageError, internal};
use crate::secrets::{constant_time_eq, random_token, token_hash};
use crate::server::Hub;
use crate::store::SessionRow;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

/// Longest cookie value looked at.
const MAX_COOKIE: usize = 2048;

/// A browser session lasts a working day.
pub(crate) const SESSION_TTL: i64 = 12 * 3600;
/// `__Host-`: browsers accept the cookie only from this origin over HTTPS,
/// with `Path=/` and no `Domain`, so no other service on a sibling host (or
/// plain HTTP on this one) can set or replace it.
pub(crate) const SESSION_COOKIE: &str = "__Host-ferry_session";
/// The sign-in form has no session yet: its CSRF token is a cookie the hub
/// made and tagged, and the form carries a second tag over that cookie
/// (see [`login_csrf_field`]).
pub(crate) const LOGIN_CSRF_COOKIE: &str = "__Host-ferry_login_csrf";
/// How long a sign-in form stays good; a form shown again within half of
/// it keeps the cookie the browser holds, so two open sign-in tabs work.
pub(crate) const LOGIN_FORM_TTL: i64 = 3600;
pub(crate) const LOGIN_COOKIE_PURPOSE: &str = "ferry-hub login csrf cookie v1";
pub(crate) const LOGIN_FIELD_PURPOSE: &str = "ferry-hub login csrf field v1";

pub(crate) fn set_cookie(response: &mut Response, cookie: &str) {
    match HeaderValue::try_from(cookie) {
        Ok(value) => {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Err(e) => tracing::error!(error = %e, "unusable cookie"),
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE)
}

pub(crate) fn csrf_matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

/// A new sign-in cookie: `ISSUED.NONCE.TAG`, tagged with the hub's key.
pub(crate) fn new_login_cookie(hub: &Hub, now: i64) -> Result<String, getrandom::Error> {
    let body = format!("{now}.{}", random_token(24)?);
    let tag = hub
        .login_csrf
        .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    Ok(format!("{body}.{tag}"))
}

/// How old a sign-in cookie is, if this hub made it (and not in the future).
pub(crate) fn login_cookie_age(hub: &Hub, cookie: &str, now: i64) -> Option<i64> {
    let (body, tag) = cookie.rsplit_once('.')?;
    let expected = hub
        .login_csrf
        .tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    if !constant_time_eq(tag.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let issued: i64 = body.split_once('.')?.0.parse().ok()?;
    Some(now - issued).filter(|age| *age >= -60)
}

/// The form field that goes with a sign-in cookie. Only the hub can make
/// it, so a cookie and field chosen elsewhere never match.
pub(crate) fn login_csrf_field(hub: &Hub, cookie: &str) -> String {
    hub.login_csrf
        .tag_text(LOGIN_FIELD_PURPOSE, cookie.as_bytes())
}

/// Browsers say where a request comes from (Fetch Metadata): a form posted
/// from another site, or from a sibling on this site (another port or
/// subdomain, which could also have planted cookies), is refused whatever
/// tokens it carries. Clients that do not say are judged by their tokens.
pub(crate) fn posted_from_elsewhere(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| !matches!(site.as_bytes(), b"same-origin" | b"none"))
}

/// The signed-in browser's session, if its cookie names a live one.
pub(crate) fn session(
    hub: &Hub,
    headers: &HeaderMap,
) -> Result<Option<(String, SessionRow)>, PageError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(value);
    Ok(hub
        .store
        .session(&hash, grants::now())
        .map_err(internal)?
        .map(|s| (hash, s)))
}
