//! The OAuth2 authorization server and the browser side of logging in:
//! `/authorize` (RFC 6749 code grant with RFC 7636 PKCE, RFC 8252 loopback
//! redirects), the login and consent pages behind it, the copy-the-code page,
//! `/token` (authorization_code, refresh_token with rotation,
//! client_credentials), `/revoke` (RFC 7009) and `/logout`.
//!
//! The only public client is the built-in `ferry-cli`; it must use PKCE S256.
//! Confidential clients are registered by an admin and may only use
//! client_credentials. Every secret (session, code, token) is stored hashed.
//!
//! `params` bounds and decodes request parameters; `authorize` checks an
//! authorization request and answers it (consent, code, code page);
//! `login` signs browsers in and out; `token` and `revoke` are the two
//! client-facing endpoints, sharing client authentication. The session
//! cookies and CSRF checks are [`crate::session`]'s; the markup is
//! [`crate::pages`]'.

mod authorize;
mod login;
mod params;
pub(crate) use params::encode_pairs;
mod revoke;
#[cfg(test)]
mod tests;
mod token;

use crate::grants;
use crate::pages;
use crate::server::Hub;
use crate::session::{SessionError, SessionUser};
use authorize::Refusal;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferry_proto::api::AUTH_CODE_PATH;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(login::landing))
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(login::logout))
        .route(
            "/authorize",
            get(authorize::authorize).post(authorize::decide),
        )
        .route(AUTH_CODE_PATH, get(authorize::code_page))
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
}

/// Why a page request failed; each variant is a page or a redirect.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("{title}: {message}")]
    Shown {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("authorization request refused")]
    Refused(Refusal),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Shown {
                status,
                title,
                message,
            } => page(status, pages::error(title, &message)),
            PageError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::error(
                        "Something went wrong",
                        "The hub could not handle this request; its operator can find the reason in its log.",
                    ),
                )
            }
            PageError::Refused(refusal) => refusal.into_response(),
        }
    }
}

impl From<Refusal> for PageError {
    fn from(refusal: Refusal) -> Self {
        PageError::Refused(refusal)
    }
}

impl From<SessionError> for PageError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) if e.is_transient() => {
                tracing::warn!(error = %e, "storage unavailable");
                shown(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again",
                    "The hub's database is busy; try again in a moment.",
                )
            }
            e => internal(e),
        }
    }
}

fn shown(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
    PageError::Shown {
        status,
        title,
        message: message.into(),
    }
}

fn internal(e: impl std::fmt::Display) -> PageError {
    PageError::Internal(e.to_string())
}

fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(e) => internal(format!("unusable redirect location: {e}")).into_response(),
    }
}

/// The signed-in browser's session, if its cookie names a live one.
fn signed_in(hub: &Hub, headers: &HeaderMap) -> Result<Option<SessionUser>, PageError> {
    Ok(SessionUser::from_request(
        &*hub.store,
        headers,
        grants::now(),
    )?)
}

/// Refuses a form that a browser posted from another site or origin,
/// whatever tokens it carries.
fn check_origin(hub: &Hub, headers: &HeaderMap) -> Result<(), PageError> {
    crate::session::check_origin(headers, &hub.config.url).map_err(|_| {
        shown(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was sent from another site. Open this hub's own page and try again.",
        )
    })
}
