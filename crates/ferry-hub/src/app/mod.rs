//! The web app: the File Manager, Activity (with the user's timers),
//! Endpoints and Account pages a signed-in researcher uses from a
//! browser, served by the hub itself.
//!
//! Pages are rendered on the server ([`view`], maud) and act through HTML
//! forms; a small script (`assets/app.js`, served from the hub, so the
//! Content-Security-Policy allows no inline script) adds the Collection
//! suggestions, local times and a task page's live progress. Every page
//! gets its user from [`SignedIn`] (the browser session, as every page of
//! the hub; a form that changes something must come from the hub's origin
//! and carry the session's CSRF token, checked by [`Posted`]) and reaches
//! data only
//! through the services the REST API calls ([`crate::endpoints`],
//! [`crate::task_service`], [`crate::files`]), so through `authorize`.

mod account;
mod activity;
mod developers;
mod endpoint_pages;
mod file_manager;
mod view;

use crate::authz::Route;
use crate::endpoints::RegistryError;
use crate::files::FilesError;
use crate::grants::Principal;
use crate::page_auth::{self, SignedIn};
use crate::pages;
use crate::server::Hub;
use crate::store::StoreError;
use crate::task_service::TaskServiceError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::marker::PhantomData;
use std::sync::Arc;

pub(crate) use file_manager::home;

/// Scripts and styles only from the hub itself; nothing inline, nothing
/// framed, forms post only to the hub.
pub const APP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A File Manager form lists every checked entry: up to a listing's
/// worth of long names.
const MAX_FORM: usize = 1024 * 1024;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_ICON: &str = include_str!("assets/icon.svg");

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/files", get(file_manager::show))
        .route("/files/transfer", post(file_manager::transfer))
        .route("/files/mkdir", post(file_manager::mkdir))
        .route("/files/rename", post(file_manager::rename))
        .route("/files/delete", post(file_manager::delete))
        .route("/files/share", post(file_manager::share))
        .route("/files/link", post(file_manager::link))
        .route("/activity", get(activity::list))
        .route("/activity/{task}", get(activity::show))
        .route("/activity/{task}/live", get(activity::live))
        .route("/activity/{task}/cancel", post(activity::cancel))
        .route("/timers", get(activity::timers))
        .route("/timers/{timer}/delete", post(activity::delete_timer))
        .route("/endpoints", get(endpoint_pages::list))
        .route("/endpoints/new", post(endpoint_pages::create))
        .route("/endpoints/{endpoint}", get(endpoint_pages::show))
        .route("/endpoints/{endpoint}/rename", post(endpoint_pages::rename))
        .route("/endpoints/{endpoint}/revoke", post(endpoint_pages::revoke))
        .route(
            "/endpoints/{endpoint}/permissions",
            post(endpoint_pages::share),
        )
        .route(
            "/endpoints/{endpoint}/permissions/{permission}/delete",
            post(endpoint_pages::unshare),
        )
        .route("/account", get(account::show))
        .route("/account/tokens", post(account::create_token))
        .route(
            "/account/tokens/{grant}/revoke",
            post(account::revoke_token),
        )
        .route(
            "/account/sessions/end-others",
            post(account::end_other_sessions),
        )
        .route("/account/apps/{app}/revoke", post(account::revoke_app))
        .route("/developers", get(developers::show))
        .route("/developers/apps", post(developers::create))
        .route(
            "/developers/apps/{app}/rotate-secret",
            post(developers::rotate_secret),
        )
        .route("/developers/apps/{app}/delete", post(developers::delete))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/assets/icon.svg", get(icon))
        .layer(map_response(app_headers))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", APP_ICON)
}

/// Assets change only with the binary; a browser may keep them an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Headers every app answer carries. Pages hold CSRF tokens and users'
/// file names: nothing is framed, sniffed or leaked as a referrer, and
/// pages are not cached.
async fn app_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(APP_CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Which navigation link is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Files,
    Activity,
    Endpoints,
    Developers,
    Account,
}

/// One line at the top of a page after an action.
#[derive(Debug, Clone)]
pub enum Notice {
    Error(String),
    Done(String),
    /// A link was made: its URL, shown this once, when it expires and
    /// the most bytes it serves.
    Link {
        url: String,
        expires: Option<i64>,
        max_bytes: Option<u64>,
    },
    Started {
        task_id: String,
        label: Option<String>,
    },
}

/// How a panel's entries are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Name,
    NameDown,
    Size,
    SizeDown,
    Time,
    TimeDown,
}

impl Sort {
    fn parse(text: &str) -> Self {
        match text {
            "-name" => Sort::NameDown,
            "size" => Sort::Size,
            "-size" => Sort::SizeDown,
            "time" => Sort::Time,
            "-time" => Sort::TimeDown,
            _ => Sort::Name,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::NameDown => "-name",
            Sort::Size => "size",
            Sort::SizeDown => "-size",
            Sort::Time => "time",
            Sort::TimeDown => "-time",
        }
    }
    /// The same key the other way round.
    pub fn reversed(self) -> Self {
        match self {
            Sort::Name => Sort::NameDown,
            Sort::NameDown => Sort::Name,
            Sort::Size => Sort::SizeDown,
            Sort::SizeDown => Sort::Size,
            Sort::Time => Sort::TimeDown,
            Sort::TimeDown => Sort::Time,
        }
    }
    pub fn key(self) -> &'static str {
        self.as_str().trim_start_matches('-')
    }
    pub fn descending(self) -> bool {
        self.as_str().starts_with('-')
    }
}

/// Where one File Manager panel is: what its Collection box says, the
/// endpoint it has open (by id, so a rename elsewhere does not move it),
/// its directory (a [`ferry_proto::wire_path::WirePath`]'s text, ending
/// in `/`) and its order.
#[derive(Debug, Clone)]
pub struct PanelState {
    pub n: u8,
    pub collection: String,
    pub open_id: Option<String>,
    pub path: String,
    pub sort: Sort,
    /// The open endpoint is the user's own (so its folders can be shared).
    pub mine: bool,
}

/// The File Manager's URL for `panels` (panel `i` moved to `path` in
/// order `sort`, when given), with `extra` parameters: what every link,
/// breadcrumb and redirect of the File Manager points at.
pub fn files_url(
    panels: &[PanelState; 2],
    moved: Option<(usize, &str, Sort)>,
    extra: &[(&str, &str)],
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, p) in panels.iter().enumerate() {
        let (path, sort) = match moved {
            Some((i, path, sort)) if i == k => (path, sort),
            _ => (p.path.as_str(), p.sort),
        };
        pairs.push((format!("c{}", p.n), p.collection.clone()));
        pairs.push((format!("o{}", p.n), p.open_id.clone().unwrap_or_default()));
        pairs.push((format!("p{}", p.n), path.to_string()));
        pairs.push((format!("s{}", p.n), sort.as_str().to_string()));
    }
    let mut refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    refs.extend_from_slice(extra);
    format!("/files?{}", crate::oauth::encode_form(&refs))
}

/// The form fields or query parameters of a request, in order; a name may
/// repeat (one `sel1` per checked entry).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn checked(&self, name: &str) -> bool {
        self.get(name) == Some("on")
    }
}

/// A page's signed-in user, as [`SignedIn`] (the one way into pages)
/// found them: who they are to `authorize`, and their session's CSRF
/// token for the page's forms.
pub struct Visitor {
    pub who: Principal,
    pub csrf: String,
}

impl<R> From<SignedIn<R>> for Visitor {
    fn from(signed_in: SignedIn<R>) -> Self {
        Visitor {
            who: signed_in.principal().clone(),
            csrf: signed_in.csrf_token().to_string(),
        }
    }
}

impl Visitor {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
    pub fn frame(&self, nav: Nav) -> view::Frame<'_> {
        view::Frame {
            user: &self.who.user_name,
            csrf: &self.csrf,
            nav,
        }
    }
}

/// A posted form of a signed-in user whose session covers `R`'s action,
/// its CSRF token checked before the handler sees it.
pub struct Posted<R> {
    pub visitor: Visitor,
    pub fields: Fields,
    _route: PhantomData<R>,
}

impl<R: Route + Send> FromRequest<Arc<Hub>> for Posted<R> {
    type Rejection = Response;

    async fn from_request(request: Request, hub: &Arc<Hub>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed_in = SignedIn::<R>::from_request_parts(&mut parts, hub)
            .await
            .map_err(IntoResponse::into_response)?;
        let request = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(request, hub)
            .await
            .map_err(|_| AppError::BadForm.into_response())?;
        let fields = Fields(fields);
        signed_in
            .check_csrf(fields.get("csrf"))
            .map_err(|_| AppError::StaleForm.into_response())?;
        Ok(Posted {
            visitor: Visitor::from(signed_in),
            fields,
            _route: PhantomData,
        })
    }
}

/// Why a page cannot be shown; each is a page of one sentence that says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("a form without this session's token")]
    StaleForm,
    #[error("a form the hub cannot read")]
    BadForm,
    #[error("{0}")]
    NotFound(String),
    #[error("storage unavailable: {0}")]
    Unavailable(StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            AppError::StaleForm => (
                StatusCode::FORBIDDEN,
                "Form out of date",
                "This form is out of date: reload the page and try again.".to_string(),
            ),
            AppError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Form not understood",
                "The hub could not read this form: reload the page and try again.".to_string(),
            ),
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message.clone()),
            AppError::Unavailable(e) => return page_auth::unavailable_page(e),
            AppError::Internal(e) => return page_auth::internal_page(e),
        };
        page_auth::page(status, pages::app_error(title, &message))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_transient() => AppError::Unavailable(e),
            e => AppError::Internal(e.to_string()),
        }
    }
}

/// What the user can do about a failed service call, in one sentence; or
/// the error that makes the whole page fail (storage, internal).
pub enum Said {
    Sentence(String),
    Page(AppError),
}

impl From<RegistryError> for Said {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(name) => Said::Sentence(format!(
                "No endpoint “{name}” among yours: pick one from the suggestions, or create it under Endpoints."
            )),
            RegistryError::Refused(refusal) => Said::Sentence(format!("Not allowed: {refusal}.")),
            RegistryError::Storage(e) => Said::Page(e.into()),
            RegistryError::Internal(e) => Said::Page(AppError::Internal(format!("{e:#}"))),
            e => Said::Sentence(sentence(&e.to_string())),
        }
    }
}

impl From<FilesError> for Said {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::Endpoint(e) => Said::from(e),
            FilesError::Failed(message) => Said::Sentence(sentence(&message)),
            e => Said::Sentence(sentence(&e.to_string())),
        }
    }
}

impl From<TaskServiceError> for Said {
    fn from(e: TaskServiceError) -> Self {
        match e {
            TaskServiceError::Endpoint(e) => Said::from(e),
            TaskServiceError::Storage(e) => Said::Page(e.into()),
            TaskServiceError::NotFound(id) => {
                Said::Sentence(format!("No task {id} among yours: open it from Activity."))
            }
            e => Said::Sentence(sentence(&e.to_string())),
        }
    }
}

impl From<crate::timers::TimerError> for Said {
    fn from(e: crate::timers::TimerError) -> Self {
        use crate::timers::TimerError;
        match e {
            TimerError::Transfer(e) => Said::from(e),
            TimerError::Storage(e) => Said::Page(e.into()),
            e => Said::Sentence(sentence(&e.to_string())),
        }
    }
}

/// A message as one sentence: capital first letter, a full stop.
pub(super) fn sentence(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return "The request failed.".into(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests;
