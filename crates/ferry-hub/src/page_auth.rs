//! The way into every HTML page, as `api::Caller` is the API's: the
//! principal comes from the browser session's cookie alone (a bearer
//! token means nothing to a page), a request that changes something must
//! come from the hub's own pages, and decisions are
//! [`crate::authz::authorize`]'s.
//!
//! Every page handler takes one of three extractors, by what it needs:
//!
//! - [`Anyone`]: a page for everyone, signed in or not (the sign-in form's
//!   answer, the copy-the-code page).
//! - [`MaybeSignedIn`]: a page that differs for a signed-in user (the
//!   landing page, the consent page, sign-out).
//! - [`SignedIn<R>`]: a page only for a signed-in user whose session covers
//!   `R`'s action; without a session a `GET` is sent to `/login` and
//!   anything else is refused.
//!
//! Each of them refuses an unsafe method (a posted form) that the browser
//! says came from another site or origin ([`session::check_origin`]),
//! before the session is looked up and before the body is read. A form
//! also carries the session's CSRF token in its hidden `csrf` field; the
//! field is in the body, which extractors of the head cannot read, so the
//! handler checks it with [`SignedIn::check_csrf`] before it acts on the
//! form. (The sign-in form has no session yet: its token is
//! [`session::LoginCsrf`]'s.)

use crate::authz::{Refusal, Resource, Route, authorize};
use crate::grants::{self, Principal};
use crate::pages;
use crate::server::Hub;
use crate::session::{self, CsrfError, SessionError, SessionUser};
use crate::store::{Storage, StoreError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::marker::PhantomData;
use std::sync::Arc;

/// Where a page without a session sends the browser.
pub const LOGIN_PATH: &str = "/login";

/// Why a page is not shown, before its handler runs (or from it).
#[derive(Debug, thiserror::Error)]
pub enum PageRefusal {
    /// The browser says the form came from another site or origin.
    #[error("the form was posted from another site")]
    CrossOrigin,
    /// The page needs a signed-in user and the request has no live
    /// session: a `GET` goes to the sign-in page, anything else is refused.
    #[error("not signed in")]
    SignIn { safe_method: bool },
    /// The principal may not do what the page does.
    #[error(transparent)]
    Refused(Refusal),
    /// The store cannot answer now; the same request may work shortly.
    #[error("storage unavailable: {0}")]
    Unavailable(StoreError),
    /// Nothing the user can do helps.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SessionError> for PageRefusal {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => e.into(),
            other => PageRefusal::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for PageRefusal {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            PageRefusal::Unavailable(e)
        } else {
            PageRefusal::Internal(e.to_string())
        }
    }
}

impl From<Refusal> for PageRefusal {
    fn from(refusal: Refusal) -> Self {
        PageRefusal::Refused(refusal)
    }
}

impl IntoResponse for PageRefusal {
    fn into_response(self) -> Response {
        match self {
            PageRefusal::CrossOrigin => page(
                StatusCode::FORBIDDEN,
                pages::error(
                    "Request refused",
                    "This form was sent from another site. Open this hub's own page and try again.",
                ),
            ),
            PageRefusal::SignIn { safe_method: true } => {
                (StatusCode::SEE_OTHER, [(header::LOCATION, LOGIN_PATH)]).into_response()
            }
            PageRefusal::SignIn { safe_method: false } => page(
                StatusCode::UNAUTHORIZED,
                pages::error("Sign in first", "Your session ended; sign in again."),
            ),
            // Someone else's object is as absent as a missing one.
            PageRefusal::Refused(Refusal::Hidden) => page(
                StatusCode::NOT_FOUND,
                pages::error("Not found", "There is nothing here."),
            ),
            PageRefusal::Refused(refusal) => page(
                StatusCode::FORBIDDEN,
                pages::error("Request refused", &refusal.to_string()),
            ),
            PageRefusal::Unavailable(e) => unavailable_page(&e),
            PageRefusal::Internal(e) => internal_page(&e),
        }
    }
}

/// The one-line answer of a page whose store cannot answer now: try again
/// shortly (never a refusal, which would send the user the wrong way).
pub fn unavailable_page(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "storage unavailable");
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::error(UNAVAILABLE_TITLE, UNAVAILABLE),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// What a page says when its store cannot answer now.
pub const UNAVAILABLE_TITLE: &str = "Try again";
pub const UNAVAILABLE: &str = "The hub's database is busy; try again shortly.";

/// The answer of a page that failed in a way no retry helps.
pub fn internal_page(e: &str) -> Response {
    tracing::error!(error = %e, "internal error");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::error(
            "Something went wrong",
            "The hub could not handle this request; its operator can find the reason in its log.",
        ),
    )
}

/// A page of `pages`: its own policy (inline styles, no script), which
/// the web app's routes, whose pages bring a stylesheet, keep.
pub fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::web::DEFAULT_CSP),
    );
    response
}

/// Refuses an unsafe method the browser says came from another site or
/// origin, whatever tokens it carries.
fn check_origin(parts: &Parts, hub: &Hub) -> Result<(), PageRefusal> {
    if parts.method.is_safe() {
        return Ok(());
    }
    session::check_origin(&parts.headers, &hub.config.url).map_err(|_| PageRefusal::CrossOrigin)
}

/// A request to a page for everyone: only its origin is checked.
#[derive(Debug)]
pub struct Anyone;

impl FromRequestParts<Arc<Hub>> for Anyone {
    type Rejection = PageRefusal;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, PageRefusal> {
        check_origin(parts, hub)?;
        Ok(Anyone)
    }
}

/// The signed-in user of a browser whose cookie names a live session.
#[derive(Debug)]
pub struct SignedIn<R = ()> {
    session: SessionUser,
    principal: Principal,
    _route: PhantomData<R>,
}

impl<R> SignedIn<R> {
    fn new(session: SessionUser) -> Self {
        Self {
            principal: session.principal(),
            session,
            _route: PhantomData,
        }
    }

    /// Who the session acts for: what a page asks
    /// [`crate::authz::authorize`] about, with the API's rules.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn user_name(&self) -> &str {
        &self.principal.user_name
    }

    /// The token every form of this page carries (hidden field `csrf`).
    pub fn csrf_token(&self) -> &str {
        self.session.csrf_token()
    }

    /// Whether a posted form carries this session's token; call it before
    /// acting on any form.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), CsrfError> {
        self.session.check_csrf(given)
    }

    /// Ends the session in the store; [`session::clear`] takes the cookie away.
    pub fn end(&self, store: &dyn Storage) -> Result<(), SessionError> {
        self.session.end(store)
    }

    /// The browser session itself (which one is this, ending the others).
    pub fn session(&self) -> &SessionUser {
        &self.session
    }
}

impl<R: Route + Send> FromRequestParts<Arc<Hub>> for SignedIn<R> {
    type Rejection = PageRefusal;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, PageRefusal> {
        let MaybeSignedIn(current) = MaybeSignedIn::from_request_parts(parts, hub).await?;
        let current = current.ok_or(PageRefusal::SignIn {
            safe_method: parts.method.is_safe(),
        })?;
        authorize(&current.principal, R::ACTION, Resource::Any)?;
        Ok(SignedIn::new(current.session))
    }
}

/// The signed-in user, if the request's cookie names a live session. A
/// cookie that names none (expired, ended, forged) is no session.
#[derive(Debug)]
pub struct MaybeSignedIn(pub Option<SignedIn>);

impl FromRequestParts<Arc<Hub>> for MaybeSignedIn {
    type Rejection = PageRefusal;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, PageRefusal> {
        check_origin(parts, hub)?;
        let session = SessionUser::from_request(
            &*hub.store,
            &hub.identity_rules,
            &parts.headers,
            grants::now(),
        )?;
        Ok(MaybeSignedIn(session.map(SignedIn::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::SeesEndpoints;
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// What a page for signed-in users built on [`SignedIn`] answers, as a
    /// new page would use it.
    async fn sees(who: SignedIn<SeesEndpoints>) -> String {
        format!("hello {}", who.user_name())
    }

    async fn ask(hub: &Arc<Hub>, method: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let router: Router = Router::new()
            .route("/mine", get(sees).post(sees))
            .with_state(hub.clone());
        let mut request = Request::builder().method(method).uri("/mine");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        )
    }

    #[tokio::test]
    async fn a_signed_in_page_sends_no_one_to_sign_in_and_refuses_forms_from_elsewhere() {
        use crate::store::failing::FailingStorage;
        let failing = Arc::new(FailingStorage::new(Arc::new(
            crate::store::SqliteStore::in_memory().unwrap(),
        )));
        let hub = Arc::new(crate::web::test_hub(failing.clone()));
        let alice = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store
            .put_session(
                &crate::secrets::token_hash("alices-session"),
                alice,
                "alices-csrf",
                grants::now() + 3600,
            )
            .unwrap();
        let cookie = format!("{}=alices-session", session::SESSION_COOKIE);
        let forged = format!("{}=made-up", session::SESSION_COOKIE);

        assert_eq!(
            ask(&hub, "GET", &[]).await,
            (StatusCode::SEE_OTHER, LOGIN_PATH.to_string())
        );
        assert_eq!(
            ask(&hub, "GET", &[("cookie", &forged)]).await,
            (StatusCode::SEE_OTHER, LOGIN_PATH.to_string())
        );
        assert_eq!(
            ask(&hub, "POST", &[("cookie", &forged)]).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ask(&hub, "GET", &[("cookie", &cookie)]).await,
            (StatusCode::OK, "hello alice".to_string())
        );
        let (status, page) = ask(
            &hub,
            "POST",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(page.contains("another site"), "{page}");
        failing.fail("session");
        let (status, page) = ask(&hub, "GET", &[("cookie", &cookie)]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(page.contains(UNAVAILABLE), "{page}");
    }
}
