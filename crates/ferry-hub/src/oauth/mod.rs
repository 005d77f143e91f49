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
//! `login` signs browsers in and out; `federated` signs them in through an
//! upstream OpenID provider or links its identity; `token` and `revoke` are the two
//! client-facing endpoints, sharing client authentication; `id_token`
//! signs the OpenID Connect ID token `token` adds for scope `openid`
//! (the provider's other endpoints are [`crate::oidc_provider`]'s). Every page
//! gets its principal (or none) from [`crate::page_auth`]'s extractors,
//! which also refuse forms from other sites; the session cookies and CSRF
//! checks are [`crate::session`]'s; the markup is [`crate::pages`]'.

mod authorize;
mod federated;
mod id_token;
mod login;
mod params;
mod revoke;
#[cfg(test)]
mod tests;
mod token;

/// `application/x-www-form-urlencoded`, as a browser encodes a form: for
/// the web app's links and redirects, and for tests.
pub(crate) fn encode_form(pairs: &[(&str, &str)]) -> String {
    params::encode_pairs(pairs)
}

/// What each of the scopes in `scope` lets an app do, in plain words.
pub(crate) fn scope_words(scope: &str) -> Vec<&'static str> {
    authorize::scope_words(scope)
}

use crate::page_auth::PageRefusal;
use crate::pages;
use crate::server::Hub;
use crate::session::SessionError;
use crate::store::StoreError;
use authorize::Refusal;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferry_proto::api::AUTH_CODE_PATH;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(login::landing))
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(login::logout))
        .route("/auth/oidc/{name}/start", get(federated::start))
        .route("/auth/oidc/{name}/callback", get(federated::callback))
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
    #[error(transparent)]
    Page(#[from] PageRefusal),
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
            PageError::Page(refusal) => refusal.into_response(),
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
        PageError::Page(e.into())
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Page(e.into())
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
    PageError::Page(PageRefusal::Internal(e.to_string()))
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
