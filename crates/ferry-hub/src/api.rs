//! The REST API under `/api/v1`: endpoints (create, search, register),
//! file operations on connected endpoints, and transfer tasks. Every route authenticates first
//! and answers errors as JSON [`ApiError`]s with one line a user can act on.
//!
//! Every route gets its principal from one extractor, [`Caller`] (or
//! [`Registrant`], which also takes a setup key), and every decision from
//! [`authorize`]: the extractor checks that the grant covers the route's
//! action, and the lookups of endpoints and tasks ([`resolve`],
//! [`own_task`]) that the principal may act on the object. The extractors
//! read only the request head: axum runs them before the body's, so a
//! request without valid credentials is refused before any of its body is
//! read.

use crate::audit::{self, AuditError};
use crate::authz::{
    Action, CancelsTasks, ConfiguresEndpoints, CreatesEndpoints, ManagesEndpoints, ManagesGroups,
    ManagesWebhooks, Refusal, Resource, Route, SeesEndpoints, SeesTasks, SubmitsTasks,
    UsesEndpoints, authorize,
};
use crate::control::CallError;
use crate::endpoints::{self, RegistryError};
use crate::files::{self, FilesError};
use crate::grants::{self, Principal};
use crate::notify::{self, WebhookError};
use crate::server::Hub;
use crate::sharing::{self, GranteeName, NewPermission, SharingError};
use crate::store::{EndpointRow, MAX_TASK_EVENTS, StoreError, TaskRow, WebhookRow};
use crate::task_service::{self, TaskServiceError};
use crate::tasks::{self, Wake};
use crate::timers::{self, TimerError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ferry_proto::api::{
    ApiError, AuditEvent, CreateEndpoint, CreateGroup, CreateLink, CreatePermission, CreateWebhook,
    EndpointInfo, FilterScope, FsOp, FsOutcome, GroupInfo, GroupMember, LinkDeleted, LinkInfo,
    PermissionDeleted, PermissionInfo, RegisterEndpoint, UpdateEndpoint, WebhookDeleted,
    WebhookInfo,
};
use ferry_proto::share::ShareMode;
use ferry_proto::task::{
    CreateTimer, CreatedTimer, SubmitTask, SubmittedTask, TaskEvent, TaskInfo, TimerInfo,
};
use ferry_proto::wire_path::WirePath;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Most endpoints one search returns.
const SEARCH_LIMIT: usize = 1000;
/// Largest task submission: a `--batch` task lists many paths.
const MAX_SUBMIT: usize = 1024 * 1024;
/// Tasks one list returns unless asked for fewer, and at most.
const TASK_LIST_DEFAULT: usize = 100;
const TASK_LIST_MAX: usize = 1000;
/// The longest `wait_ms` a task lookup may hold the request for.
const TASK_WAIT_MAX: Duration = Duration::from_secs(5);
/// Events one request returns unless asked for fewer.
const EVENTS_DEFAULT: usize = 1000;
/// Items of the other lists (webhooks, groups, shares, timers) one page
/// holds, by default and at most.
const LIST_DEFAULT: usize = 1000;

mod apps;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/v1/apps", post(apps::create_app).get(apps::list_apps))
        .route(
            "/api/v1/apps/{app}",
            get(apps::show_app).delete(apps::delete_app),
        )
        .route(
            "/api/v1/apps/{app}/rotate-secret",
            post(apps::rotate_secret),
        )
        .route("/api/v1/consents", get(apps::list_consents))
        .route(
            "/api/v1/consents/{app}",
            axum::routing::delete(apps::revoke_consent),
        )
        .route(
            "/api/v1/endpoints",
            post(create_endpoint).get(search_endpoints),
        )
        .route("/api/v1/endpoints/register", post(register_endpoint))
        .route("/api/v1/endpoints/{endpoint}/fs", post(fs_operation))
        .route(
            "/api/v1/endpoints/{endpoint}/files/{*path}",
            get(download_file).put(upload_file),
        )
        .route(
            "/api/v1/endpoints/{endpoint}",
            get(show_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route(
            "/api/v1/tasks",
            post(submit_task)
                .layer(DefaultBodyLimit::max(MAX_SUBMIT))
                .get(list_tasks),
        )
        .route(
            "/api/v1/endpoints/{endpoint}/permissions",
            post(create_permission).get(list_permissions),
        )
        .route(
            "/api/v1/endpoints/{endpoint}/permissions/{permission}",
            axum::routing::delete(delete_permission),
        )
        .route("/api/v1/endpoints/{endpoint}/audit", get(endpoint_audit))
        .route(
            "/api/v1/endpoints/{endpoint}/nodes",
            post(add_node).get(list_nodes),
        )
        .route(
            "/api/v1/endpoints/{endpoint}/nodes/{node}",
            axum::routing::delete(remove_node),
        )
        .route("/api/v1/groups", post(create_group).get(list_groups))
        .route("/api/v1/groups/{group}/members", post(add_member))
        .route(
            "/api/v1/groups/{group}/members/{user}",
            axum::routing::delete(remove_member),
        )
        .route("/api/v1/links", post(create_link).get(list_links))
        .route("/api/v1/links/{link}", axum::routing::delete(delete_link))
        .route("/api/v1/webhooks", post(create_webhook).get(list_webhooks))
        .route(
            "/api/v1/webhooks/{webhook}",
            axum::routing::delete(delete_webhook),
        )
        .route("/api/v1/tasks/{task}", get(show_task))
        .route("/api/v1/tasks/{task}/cancel", post(cancel_task))
        .route("/api/v1/tasks/{task}/events", get(task_events))
        .route(
            "/api/v1/timers",
            post(create_timer)
                .layer(DefaultBodyLimit::max(MAX_SUBMIT))
                .get(list_timers),
        )
        .route(
            "/api/v1/timers/{timer}",
            get(show_timer).delete(delete_timer),
        )
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/submission_id", get(new_submission_id))
        .layer(map_response(json_errors))
}

/// The error word of a status that axum (not a handler) answered with.
fn error_word(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "invalid",
    }
}

/// Longest part of axum's own rejection text kept in the message.
const REJECTION_TEXT_MAX: usize = 300;

/// Every error the API answers is an [`ApiError`]: axum's own rejections
/// (a body that is not the JSON the route takes, a bad path or query, a
/// method the route has not, a body over the limit) are plain text, so
/// they are rewritten here, keeping their one line as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // What the answer says besides its body stays (`Allow`, a 416's
    // `Content-Range`); only the body and what describes it change.
    let (parts, body) = response.into_parts();
    let mut kept = parts.headers;
    kept.remove(header::CONTENT_TYPE);
    kept.remove(header::CONTENT_LENGTH);
    let text = axum::body::to_bytes(body, 4 * REJECTION_TEXT_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut message: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(REJECTION_TEXT_MAX)
        .collect();
    if message.is_empty() {
        message = match status {
            StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".into(),
            StatusCode::NOT_FOUND => "no such route; see /api/v1/openapi.json".into(),
            other => other.canonical_reason().unwrap_or("refused").into(),
        };
    }
    let mut rewritten = Failure::new(status, error_word(status), message).into_response();
    for (name, value) in &kept {
        if !rewritten.headers().contains_key(name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// What the router answers a path no route has: under `/api/` the
/// API's JSON error, elsewhere an empty 404 as before.
pub async fn no_route(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route {}; the API is described at {}",
                uri.path().chars().take(200).collect::<String>(),
                ferry_proto::api::OPENAPI_PATH
            ),
        )
        .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Largest `marker` offset: a list is never paged past this.
const MAX_OFFSET: usize = 1_000_000;

/// A list's page: `limit` items after `marker` (the opaque token of the
/// previous page's `Link: <..>; rel="next"`). Bodies stay plain JSON
/// arrays; the `Link` header says where the rest is.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct PageQuery {
    /// Most items in this page; each list has its default and its
    /// maximum, and a larger ask gets the maximum.
    #[schemars(range(min = 1, max = 10000))]
    limit: Option<usize>,
    /// Where this page starts: the `marker` of the previous page's `Link`
    /// header (opaque).
    #[schemars(length(max = 64))]
    marker: Option<String>,
}

/// Which slice of a whole list one page is.
#[derive(Debug, Clone, Copy)]
struct Window {
    offset: usize,
    limit: usize,
}

impl PageQuery {
    fn window(&self, default: usize, max: usize) -> Result<Window, Failure> {
        let offset = match &self.marker {
            None => 0,
            Some(marker) => decode_marker(marker).ok_or_else(|| {
                bad("the marker is not one this hub gave; start the list again without it")
            })?,
        };
        Ok(Window {
            offset,
            limit: self.limit.unwrap_or(default).clamp(1, max),
        })
    }
}

fn encode_marker(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

fn decode_marker(marker: &str) -> Option<usize> {
    use base64::Engine;
    if marker.len() > 64 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(marker)
        .ok()?;
    let offset: usize = std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix('o')?
        .parse()
        .ok()?;
    (offset <= MAX_OFFSET).then_some(offset)
}

impl Window {
    /// How many items from the list's start the page needs (one more
    /// than it shows, to know whether more remain).
    fn reach(self) -> usize {
        self.offset.saturating_add(self.limit).saturating_add(1)
    }

    /// The page of `items` (the list from its start, at least
    /// [`Self::reach`] long when it goes on).
    fn page<T>(self, items: Vec<T>, hub: &Hub, uri: &Uri) -> Paged<T> {
        let more = items.len() > self.offset.saturating_add(self.limit);
        let items = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        self.paged(items, more, hub, uri)
    }

    /// The page of a list kept oldest first whose pages go from its
    /// newest end back: `items` are the newest [`Self::reach`] of it.
    fn page_from_end<T>(self, mut items: Vec<T>, hub: &Hub, uri: &Uri) -> Paged<T> {
        let more = items.len() > self.offset.saturating_add(self.limit);
        let end = items.len().saturating_sub(self.offset);
        let start = end.saturating_sub(self.limit);
        items.truncate(end);
        let items = items.split_off(start);
        self.paged(items, more, hub, uri)
    }

    fn paged<T>(self, items: Vec<T>, more: bool, hub: &Hub, uri: &Uri) -> Paged<T> {
        let next_offset = self.offset + self.limit;
        let next = (more && next_offset <= MAX_OFFSET).then(|| {
            let mut query: Vec<&str> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("marker="))
                .collect();
            let marker = format!("marker={}", encode_marker(next_offset));
            query.push(&marker);
            format!(
                "<{}{}?{}>; rel=\"next\"",
                hub.config.url.trim_end_matches('/'),
                uri.path(),
                query.join("&")
            )
        });
        Paged { items, next }
    }
}

/// One page of a list: a JSON array, and a `Link` to the next while more remain.
#[derive(Debug)]
pub(crate) struct Paged<T> {
    items: Vec<T>,
    next: Option<String>,
}

impl<T: Serialize> IntoResponse for Paged<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.items).into_response();
        if let Some(link) = self
            .next
            .and_then(|l| header::HeaderValue::from_str(&l).ok())
        {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

/// An API error: status plus the JSON body.
#[derive(Debug)]
pub struct Failure(StatusCode, ApiError);

impl Failure {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self(
            status,
            ApiError {
                error: error.into(),
                message: message.into(),
            },
        )
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the hub failed to handle the request; see its log",
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(m) => Failure::new(StatusCode::BAD_REQUEST, "invalid", m),
            RegistryError::Conflict(m) => Failure::new(StatusCode::CONFLICT, "conflict", m),
            e @ (RegistryError::KeyUsed(_)
            | RegistryError::KeyExpired(_)
            | RegistryError::KeyUnknown) => {
                Failure::new(StatusCode::UNAUTHORIZED, "invalid_setup_key", e.to_string())
            }
            e @ RegistryError::Revoked(_) => {
                Failure::new(StatusCode::FORBIDDEN, "revoked", e.to_string())
            }
            RegistryError::Busy(m) => Failure::new(StatusCode::CONFLICT, "endpoint_busy", m),
            RegistryError::NotFound(name) => Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint {name:?} among yours; list them with `ferry endpoint search`"),
            ),
            e @ RegistryError::NoSuchNode(..) => {
                Failure::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            RegistryError::Refused(refusal) => Failure::from(refusal),
            RegistryError::Storage(e) => Failure::from(e),
            RegistryError::Internal(e) => Failure::internal(format!("{e:#}")),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Failure::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::NotFound => Failure::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "storage unavailable");
                Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the hub's database is busy; try again shortly",
                )
            }
            StoreError::Internal(_) | StoreError::TooNew { .. } => Failure::internal(e),
        }
    }
}

/// `Authorization: <scheme> <credential>`.
pub(crate) fn credential<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim())
}

/// The header a page's script sends its session's CSRF token in, on every
/// request that changes something.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The principal behind the request: its bearer token, or else the
/// browser session its cookie names. A session acts for its user with
/// everything the user may do (it is the user at the hub's own pages),
/// but a request that changes something must come from the hub's origin
/// and carry the session's CSRF token in [`CSRF_HEADER`]: a cookie
/// travels with requests other sites make, a header does not.
fn authenticate(hub: &Hub, parts: &Parts) -> Result<Principal, Failure> {
    let headers = &parts.headers;
    if let Some(token) = credential(headers, "Bearer") {
        // A store that cannot answer now is a 503 to retry, not a refusal.
        return grants::authenticate(&*hub.store, &hub.identity_rules, token)?.ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid or expired; log in again with `ferry login`",
            )
        });
    }
    let session = crate::session::SessionUser::from_request(
        &*hub.store,
        &hub.identity_rules,
        headers,
        grants::now(),
    )
    .map_err(|e| match e {
        crate::session::SessionError::Store(e) => Failure::from(e),
        other => Failure::internal(other),
    })?
    .ok_or_else(|| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no access token; log in with `ferry login` or set FERRY_TOKEN",
        )
    })?;
    if !parts.method.is_safe() {
        let forged = |e: crate::session::CsrfError| {
            Failure::new(StatusCode::FORBIDDEN, "csrf", e.to_string())
        };
        crate::session::check_origin(headers, &hub.config.url).map_err(forged)?;
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        session.check_csrf(given).map_err(forged)?;
    }
    Ok(session.principal())
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Scope { .. } => Failure::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                refusal.to_string(),
            ),
            Refusal::Hidden => Failure::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            Refusal::Forbidden(_) => {
                Failure::new(StatusCode::FORBIDDEN, "forbidden", refusal.to_string())
            }
            Refusal::Revoked => Failure::new(StatusCode::FORBIDDEN, "revoked", refusal.to_string()),
            Refusal::NotShared(message) => {
                Failure::new(StatusCode::FORBIDDEN, "not_shared", message)
            }
            Refusal::IdentityRequired(message) => {
                Failure::new(StatusCode::FORBIDDEN, "identity_required", message)
            }
        }
    }
}

/// The caller, authenticated, whose grant covers `R`'s action (whether
/// it may act on a particular object is asked when it is looked up).
#[derive(Debug)]
struct Caller<R>(Principal, PhantomData<R>);

impl<R: Route + Send> FromRequestParts<Arc<Hub>> for Caller<R> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Failure> {
        let who = authenticate(hub, parts)?;
        authorize(&who, R::ACTION, Resource::Any)?;
        Ok(Caller(who, PhantomData))
    }
}

/// Who registers an endpoint: the holder of a setup key, or a caller with
/// the setup scope. A key is used up only with the CSR, so before the body
/// it is checked as far as it can be without using it (its form).
#[derive(Debug)]
enum Registrant {
    Key(String),
    Login(Principal),
}

impl FromRequestParts<Arc<Hub>> for Registrant {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Failure> {
        match credential(&parts.headers, "SetupKey") {
            Some(key) => {
                ferry_proto::setup_key::SetupKey::decode(key)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                Ok(Registrant::Key(key.to_string()))
            }
            None => {
                let who = authenticate(hub, parts)?;
                authorize(&who, Action::CreateEndpoint, Resource::Any)?;
                Ok(Registrant::Login(who))
            }
        }
    }
}

fn info(hub: &Hub, row: EndpointRow) -> EndpointInfo {
    EndpointInfo {
        connected: crate::cluster::is_connected(hub, &row.id),
        id: row.id,
        display_name: row.display_name,
        owner: row.owner_name,
        created: row.created,
        revoked: row.revoked,
        allowed_domains: row.allowed_domains,
        nodes: Vec::new(),
    }
}

/// An endpoint the caller may `action` ([`endpoints::find`]).
fn resolve(hub: &Hub, who: &Principal, name: &str, action: Action) -> Result<EndpointRow, Failure> {
    Ok(endpoints::find(&*hub.store, who, name, action)?)
}

async fn create_endpoint(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<CreatesEndpoints>,
    Json(body): Json<CreateEndpoint>,
) -> Result<(StatusCode, Json<ferry_proto::api::CreatedEndpoint>), Failure> {
    let created = endpoints::create(
        &*hub.store,
        &hub.config.url,
        hub.tls_ca_sha256,
        who.user_id,
        &body.display_name,
        endpoints::SETUP_KEY_TTL,
    )?;
    tracing::info!(endpoint = %created.id, owner = %who.user_name, "endpoint created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SearchQuery {
    /// Words of the endpoints' names (empty: every endpoint).
    #[serde(default)]
    q: String,
    /// Whose endpoints: `my-endpoints` (the default), `shared-with-me` or `all`.
    filter_scope: Option<FilterScope>,
}

async fn search_endpoints(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesEndpoints>,
    Query(query): Query<SearchQuery>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<EndpointInfo>, Failure> {
    let window = page.window(SEARCH_LIMIT, SEARCH_LIMIT)?;
    let now = grants::now();
    let mine = || {
        hub.store
            .search_endpoints(Some(who.user_id), &query.q, SEARCH_LIMIT)
    };
    let shared = || {
        hub.store
            .shared_with(who.user_id, &query.q, now, SEARCH_LIMIT)
    };
    let filter = query.filter_scope.unwrap_or(FilterScope::MyEndpoints);
    crate::authz::may_list_endpoints(
        &who,
        filter != FilterScope::SharedWithMe,
        filter != FilterScope::MyEndpoints,
    )?;
    let rows = match filter {
        FilterScope::MyEndpoints => mine()?,
        FilterScope::SharedWithMe => shared()?,
        FilterScope::All => {
            let mut rows = mine()?;
            rows.extend(shared()?);
            rows.truncate(SEARCH_LIMIT);
            rows
        }
    };
    let rows = rows.into_iter().map(|r| info(&hub, r)).collect();
    Ok(window.page(rows, &hub, &uri))
}

async fn show_endpoint(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesEndpoints>,
    Path(endpoint): Path<String>,
) -> Result<Json<EndpointInfo>, Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::SeeEndpoint)?;
    let nodes = endpoints::node_infos(&hub, &row)?;
    Ok(Json(EndpointInfo {
        nodes,
        ..info(&hub, row)
    }))
}

/// The owner adds a machine to an endpoint (`ferry endpoint add-node`):
/// the node's name and a one-time key that sets the machine up as it.
async fn add_node(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
    Json(body): Json<ferry_proto::api::AddNode>,
) -> Result<(StatusCode, Json<ferry_proto::api::AddedNode>), Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::ManageEndpoint)?;
    let added = endpoints::add_node(
        &*hub.store,
        &hub.config.url,
        hub.tls_ca_sha256,
        &row,
        body.name.as_deref(),
        endpoints::SETUP_KEY_TTL,
    )?;
    tracing::info!(endpoint = %row.id, node = %added.node, by = %who.user_name, "endpoint node added");
    Ok((StatusCode::CREATED, Json(added)))
}

/// An endpoint's machines, `primary` first (`ferry endpoint nodes`).
async fn list_nodes(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
) -> Result<Json<Vec<ferry_proto::api::NodeInfo>>, Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::ManageEndpoint)?;
    Ok(Json(endpoints::node_infos(&hub, &row)?))
}

/// The owner removes a node (`ferry endpoint remove-node`): its
/// certificate is refused from then on, and its link is cut at once (held
/// by another instance of several: within a minute).
/// Answers with the nodes that remain.
async fn remove_node(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path((endpoint, node)): Path<(String, String)>,
) -> Result<Json<Vec<ferry_proto::api::NodeInfo>>, Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::ManageEndpoint)?;
    endpoints::remove_node(&*hub.store, &row, &node)?;
    hub.control.recheck(&row.id);
    tracing::info!(endpoint = %row.id, %node, by = %who.user_name, "endpoint node removed");
    Ok(Json(endpoints::node_infos(&hub, &row)?))
}

/// The owner renames an endpoint or sets its identity policy (`ferry
/// endpoint update EP --display-name NAME --allowed-domains D1,D2`).
async fn update_endpoint(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ConfiguresEndpoints>,
    Path(endpoint): Path<String>,
    Json(body): Json<UpdateEndpoint>,
) -> Result<Json<EndpointInfo>, Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::ConfigureEndpoint)?;
    // Checked before anything changes, so a bad domain renames nothing.
    let domains = body
        .allowed_domains
        .as_deref()
        .map(crate::identities::check_allowed_domains)
        .transpose()
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    if let Some(name) = &body.display_name {
        endpoints::rename(&*hub.store, &row, name)?;
        tracing::info!(endpoint = %row.id, by = %who.user_name, from = %row.display_name, to = %name, "endpoint renamed");
    }
    if let Some(domains) = domains {
        endpoints::set_allowed_domains(&*hub.store, &row, &domains)?;
        tracing::info!(endpoint = %row.id, by = %who.user_name, domains = %domains.join(","), "endpoint identity policy set");
    }
    let row = resolve(&hub, &who, &row.id, Action::ConfigureEndpoint)?;
    Ok(Json(info(&hub, row)))
}

/// `ferry whoami`: the caller's identity, the identities linked to the
/// account, and those the caller's sign-in authenticated.
async fn whoami(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesEndpoints>,
) -> Result<Json<ferry_proto::api::WhoAmI>, Failure> {
    let login = Some(who.sign_in.login_id.as_str()).filter(|l| !l.is_empty());
    Ok(Json(crate::identities::whoami(
        &*hub.store,
        &hub.identity_rules,
        &who,
        login,
    )?))
}

/// The owner deletes an endpoint: its certificate is refused from now on,
/// as a revoked one's is, and every endpoint is told so.
async fn delete_endpoint(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
) -> Result<Json<EndpointInfo>, Failure> {
    let row = resolve(&hub, &who, &endpoint, Action::ManageEndpoint)?;
    endpoints::delete(&*hub.store, &row)?;
    tracing::info!(endpoint = %row.id, by = %who.user_name, name = %row.display_name, "endpoint deleted");
    // The scheduler's sweep tells connected endpoints of new revocations.
    wake_scheduler(wake);
    let mut info = info(&hub, row);
    info.revoked = true;
    Ok(Json(info))
}

async fn register_endpoint(
    State(hub): State<Arc<Hub>>,
    registrant: Registrant,
    Json(body): Json<RegisterEndpoint>,
) -> Result<(StatusCode, Json<ferry_proto::api::RegisteredEndpoint>), Failure> {
    let registered = match registrant {
        Registrant::Key(key) => {
            endpoints::register_with_key(&*hub.store, &hub.endpoint_ca, &key, &body.csr_pem)?
        }
        Registrant::Login(who) => {
            let name = body.display_name.as_deref().ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "registering with a login needs a display_name",
                )
            })?;
            endpoints::register_new(
                &*hub.store,
                &hub.endpoint_ca,
                who.user_id,
                name,
                &body.csr_pem,
            )?
        }
    };
    tracing::info!(endpoint = %registered.id, owner = %registered.owner, "endpoint registered");
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn fs_operation(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Path(endpoint): Path<String>,
    Json(op): Json<FsOp>,
) -> Result<Json<FsOutcome>, Failure> {
    let (_, outcome) = files::operate(&hub, &who, &endpoint, op).await?;
    Ok(Json(outcome))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UploadQuery {
    /// A resumable upload's id (8 to 64 ASCII letters and digits): `PUT`
    /// pieces with `Content-Range`, `HEAD` answers `Upload-Offset`.
    upload: Option<String>,
}

/// `GET`/`HEAD` of one file (axum routes HEAD here too; the method tells);
/// `HEAD ...?upload=ID`: how much of that upload arrived (`Upload-Offset`).
async fn download_file(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Path((endpoint, path)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let path = crate::https_files::endpoint_path(&path);
    if let (Some(id), true) = (&query.upload, method == axum::http::Method::HEAD) {
        let piece = crate::https_files::UploadPiece {
            id: id.clone(),
            offset: 0,
            length: 0,
            total: 0,
            sha256: None,
        };
        let piece = if ferry_proto::file_stream::valid_upload_id(id) {
            Ok(piece)
        } else {
            Err("upload ids are 8 to 64 ASCII letters and digits".to_string())
        };
        let outcome = crate::https_files::upload(&hub, &who, &endpoint, path, piece, None).await?;
        return Ok(upload_answer(outcome));
    }
    Ok(crate::https_files::serve(&hub, &who, &endpoint, path, &method, &headers).await?)
}

/// `PUT` of one file, whole or a piece of a resumable upload (docs/https.md).
async fn upload_file(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Path((endpoint, path)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Failure> {
    let path = crate::https_files::endpoint_path(&path);
    // Without an id, a one-shot upload under a fresh one.
    let id = match query.upload {
        Some(id) => id,
        None => crate::secrets::hex(&uuid::Uuid::new_v4().into_bytes()),
    };
    let piece = crate::https_files::upload_piece(&id, &headers);
    let outcome =
        crate::https_files::upload(&hub, &who, &endpoint, path, piece, Some(body)).await?;
    Ok(upload_answer(outcome))
}

fn upload_answer(outcome: crate::https_files::UploadOutcome) -> Response {
    use crate::https_files::UploadOutcome as O;
    let offset = |n: u64| {
        [(
            header::HeaderName::from_static("upload-offset"),
            n.to_string(),
        )]
    };
    match outcome {
        O::Received(n) => (StatusCode::NO_CONTENT, offset(n)).into_response(),
        O::Conflict(n) => (
            StatusCode::CONFLICT,
            offset(n),
            Json(ApiError {
                error: "offset_mismatch".into(),
                message: format!("the upload stands at byte {n}; send from there"),
            }),
        )
            .into_response(),
        O::Complete { size, sha256 } => (
            StatusCode::CREATED,
            offset(size),
            Json(serde_json::json!({ "size": size, "sha256": sha256 })),
        )
            .into_response(),
    }
}

impl From<crate::https_files::StreamError> for Failure {
    fn from(e: crate::https_files::StreamError) -> Self {
        use crate::https_files::StreamError as E;
        match e {
            E::Files(e) => Failure::from(e),
            e @ E::Busy(_) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
            E::Refused {
                message,
                not_found: true,
            } => Failure::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Refused { message, .. } => Failure::new(StatusCode::FORBIDDEN, "forbidden", message),
            E::Invalid(message) => bad(message),
            E::Rejected(message) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "upload_rejected", message)
            }
            e @ E::Broken { .. } => Failure::new(
                StatusCode::BAD_GATEWAY,
                "endpoint_unavailable",
                e.to_string(),
            ),
        }
    }
}

impl From<FilesError> for Failure {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::Endpoint(e) => Failure::from(e),
            FilesError::Failed(message) => Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "operation_failed",
                message,
            ),
            FilesError::Offline { name, id } => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "endpoint_offline",
                format!("endpoint {name} ({id}): {}", CallError::Offline),
            ),
            FilesError::Timeout { within, .. } => Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                CallError::Timeout(within).to_string(),
            ),
            FilesError::Unavailable { reason, .. } => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "endpoint_unavailable",
                reason.to_string(),
            ),
        }
    }
}

// --- webhooks ---

impl From<WebhookError> for Failure {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => bad(m),
            WebhookError::NotFound(_) => {
                Failure::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            WebhookError::Refused(r) => Failure::from(r),
            WebhookError::Storage(e) => Failure::from(e),
        }
    }
}

fn webhook_info(w: WebhookRow, with_secret: bool) -> WebhookInfo {
    WebhookInfo {
        id: w.id,
        url: w.url,
        events: w.events,
        created: w.created,
        secret: with_secret.then_some(w.secret),
    }
}

/// The answer holds the webhook's secret: the one time the hub shows it.
async fn create_webhook(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesWebhooks>,
    Json(body): Json<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookInfo>), Failure> {
    let row = notify::create_webhook(
        &*hub.store,
        &who,
        &body.url,
        body.events,
        hub.config.webhook_private_addresses,
        grants::now(),
    )?;
    Ok((StatusCode::CREATED, Json(webhook_info(row, true))))
}

async fn list_webhooks(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesWebhooks>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<WebhookInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let hooks = notify::webhooks(&*hub.store, &who)?
        .into_iter()
        .map(|w| webhook_info(w, false))
        .collect();
    Ok(window.page(hooks, &hub, &uri))
}

async fn delete_webhook(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesWebhooks>,
    Path(id): Path<String>,
) -> Result<Json<WebhookDeleted>, Failure> {
    notify::delete_webhook(&*hub.store, &who, &id)?;
    Ok(Json(WebhookDeleted { id }))
}

// --- sharing ---

impl From<SharingError> for Failure {
    fn from(e: SharingError) -> Self {
        match e {
            SharingError::Invalid(m) => bad(m),
            SharingError::NotFound(m) => Failure::new(StatusCode::NOT_FOUND, "not_found", m),
            SharingError::Endpoint(e) => Failure::from(e),
            SharingError::Unreachable(m) => {
                Failure::new(StatusCode::SERVICE_UNAVAILABLE, "endpoint_unavailable", m)
            }
            SharingError::Storage(e) => Failure::from(e),
        }
    }
}

fn permission_info(p: crate::store::PermissionRow) -> PermissionInfo {
    PermissionInfo {
        id: p.id,
        path: WirePath::from_bytes(p.path),
        permissions: p.mode.as_str().into(),
        principal_type: p.grantee.kind().into(),
        principal: p.grantee.name().into(),
        expires: p.expires,
    }
}

/// The owner shares a path (`ferry endpoint permission create`).
async fn create_permission(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
    Json(body): Json<CreatePermission>,
) -> Result<(StatusCode, Json<PermissionInfo>), Failure> {
    let mode = ShareMode::parse(&body.permissions)
        .ok_or_else(|| bad("permissions must be r (read) or rw (read and write)"))?;
    let grantee = match (body.principal_type.as_str(), body.principal.trim()) {
        ("identity", name) if !name.is_empty() => GranteeName::Identity(name.to_string()),
        ("group", name) if !name.is_empty() => GranteeName::Group(name.to_string()),
        ("all_authenticated", _) => GranteeName::AllAuthenticated,
        ("anonymous", _) => GranteeName::Anonymous,
        ("identity" | "group", _) => return Err(bad("name the user or group to share with")),
        _ => {
            return Err(bad(
                "principal_type must be identity, group, all_authenticated or anonymous",
            ));
        }
    };
    let created = sharing::create_permission(
        &hub,
        &who,
        NewPermission {
            endpoint,
            path: body.path,
            mode,
            grantee,
            expires: body.expires,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(permission_info(created))))
}

async fn list_permissions(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<PermissionInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let listed = sharing::list_permissions(&*hub.store, &who, &endpoint)?;
    let listed = listed.into_iter().map(permission_info).collect();
    Ok(window.page(listed, &hub, &uri))
}

/// Access through the permission ends at once; tasks using it fail.
async fn delete_permission(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path((endpoint, permission)): Path<(String, String)>,
) -> Result<Json<PermissionDeleted>, Failure> {
    let failed = sharing::delete_permission(&*hub.store, &who, &endpoint, &permission)?;
    if !failed.is_empty() {
        hub.tasks_failed(&failed);
        wake_scheduler(wake);
    }
    Ok(Json(PermissionDeleted {
        id: permission,
        tasks_failed: failed,
    }))
}

// --- links ---

impl From<crate::links::LinkError> for Failure {
    fn from(e: crate::links::LinkError) -> Self {
        match e {
            crate::links::LinkError::Sharing(e) => Failure::from(e),
            crate::links::LinkError::NotFound(m) => {
                Failure::new(StatusCode::NOT_FOUND, "not_found", m)
            }
        }
    }
}

/// A link anyone holding its URL may read a path through (`ferry link
/// create`); the answer is the one time the hub shows the URL.
async fn create_link(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Json(body): Json<CreateLink>,
) -> Result<(StatusCode, Json<LinkInfo>), Failure> {
    let (link, _url) = crate::links::create(
        &hub,
        &who,
        crate::links::NewLink {
            endpoint: body.endpoint_id,
            path: body.path,
            expires: body.expires,
            max_bytes: body.max_bytes,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(crate::links::info(&hub, link))))
}

async fn list_links(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<LinkInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let listed = crate::links::list(&hub, &who)?
        .into_iter()
        .map(|l| crate::links::info(&hub, l))
        .collect();
    Ok(window.page(listed, &hub, &uri))
}

/// Its URL answers 410 Gone from now on.
async fn delete_link(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<UsesEndpoints>,
    Path(id): Path<String>,
) -> Result<Json<LinkDeleted>, Failure> {
    crate::links::delete(&hub, &who, &id)?;
    Ok(Json(LinkDeleted { id }))
}

// --- the audit log ---

/// Audit events one request returns unless asked for fewer.
const AUDIT_DEFAULT: usize = 1000;

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AuditQuery {
    /// Unix seconds: events at or after it.
    since: Option<i64>,
}

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Endpoint(e) => Failure::from(e),
            AuditError::Storage(e) => Failure::from(e),
        }
    }
}

/// The owner reads who did what on an endpoint (`ferry endpoint audit`):
/// the newest `limit` events (at most `audit::MAX_PAGE`) since `since`,
/// oldest first.
async fn endpoint_audit(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesEndpoints>,
    Path(endpoint): Path<String>,
    Query(query): Query<AuditQuery>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<AuditEvent>, Failure> {
    // Pages go from the newest back (each oldest first); the log is read
    // no further back than audit::MAX_PAGE events, as before.
    let window = page.window(AUDIT_DEFAULT, audit::MAX_PAGE)?;
    let events = audit::read(
        &*hub.store,
        &who,
        &endpoint,
        query.since.unwrap_or(0),
        window.reach().min(audit::MAX_PAGE),
    )?;
    Ok(window.page_from_end(events, &hub, &uri))
}

/// The group as `who` now sees it.
fn group_info(hub: &Hub, who: &Principal, name: &str) -> Result<GroupInfo, Failure> {
    sharing::groups(&*hub.store, who)?
        .into_iter()
        .find(|g| g.name == name)
        .map(|g| GroupInfo {
            name: g.name,
            owner: g.owner_name,
            members: g.members,
        })
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "not_found", "no such group of yours"))
}

async fn create_group(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesGroups>,
    Json(body): Json<CreateGroup>,
) -> Result<(StatusCode, Json<GroupInfo>), Failure> {
    sharing::create_group(&*hub.store, &who, &body.name)?;
    Ok((
        StatusCode::CREATED,
        Json(group_info(&hub, &who, &body.name)?),
    ))
}

async fn list_groups(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesGroups>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<GroupInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let groups = sharing::groups(&*hub.store, &who)?
        .into_iter()
        .map(|g| GroupInfo {
            name: g.name,
            owner: g.owner_name,
            members: g.members,
        })
        .collect();
    Ok(window.page(groups, &hub, &uri))
}

async fn add_member(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesGroups>,
    Path(group): Path<String>,
    Json(body): Json<GroupMember>,
) -> Result<Json<GroupInfo>, Failure> {
    sharing::change_member(&*hub.store, &who, &group, &body.user, true)?;
    Ok(Json(group_info(&hub, &who, &group)?))
}

async fn remove_member(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesGroups>,
    Path((group, user)): Path<(String, String)>,
) -> Result<Json<GroupInfo>, Failure> {
    sharing::change_member(&*hub.store, &who, &group, &user, false)?;
    Ok(Json(group_info(&hub, &who, &group)?))
}

// --- tasks ---

fn bad(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, "invalid", message)
}

fn task_info(hub: &Hub, row: TaskRow) -> TaskInfo {
    let totals = row.totals();
    let waiting_for = task_service::waiting_for(&hub.control, &row);
    TaskInfo {
        task_id: row.id,
        status: row.status,
        label: row.label,
        source_endpoint: row.source_id,
        source_endpoint_name: row.source_name,
        destination_endpoint: row.destination_id,
        destination_endpoint_name: row.destination_name,
        files: totals.files,
        files_transferred: totals.files_transferred,
        files_skipped: totals.files_skipped,
        bytes_transferred: totals.bytes_transferred,
        bytes: totals.bytes,
        bytes_skipped: totals.bytes_skipped,
        bytes_resent: totals.bytes_resent,
        bytes_relayed: row.bytes_relayed,
        walk_done: totals.walk_done,
        faults: row.faults,
        attempt: row.attempt,
        nodes: row.nodes,
        item_count: row.item_count,
        checksum_algorithm: Some(row.checksum_algorithm),
        on_success: row.on_success,
        filters: Vec::new(),
        bwlimit: None,
        created: row.created,
        completed: row.completed,
        deadline: row.deadline,
        last_fault: row.last_fault,
        fatal_error: row.fatal_error,
        waiting_for,
        items: None,
    }
}

/// What a stored task copies.
fn task_work(hub: &Hub, id: &str) -> Result<crate::store::TaskWork, Failure> {
    hub.store
        .task_work(id)?
        .ok_or_else(|| Failure::internal(format!("task {id} has no stored work")))
}

/// A task the caller may `action` ([`task_service::find`]).
fn own_task(hub: &Hub, who: &Principal, id: &str, action: Action) -> Result<TaskRow, Failure> {
    Ok(task_service::find(&*hub.store, who, id, action)?)
}

fn wake_scheduler(wake: Option<Extension<Wake>>) {
    if let Some(Extension(wake)) = wake {
        wake.wake();
    }
}

async fn submit_task(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Caller(who, _): Caller<SubmitsTasks>,
    body: Bytes,
) -> Result<(StatusCode, Json<SubmittedTask>), Failure> {
    // Parsed here rather than by the Json extractor, so a bad field (an
    // unknown sync level) is answered as an ApiError the CLI can show.
    let submit: SubmitTask = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the task is not understood: {e}")))?;
    let submitted = task_service::submit(&*hub.store, &hub.control, &who, submit, grants::now())?;
    if !submitted.created {
        // The same submission id again: its task, made before.
        return Ok((
            StatusCode::OK,
            Json(SubmittedTask {
                task_id: submitted.task_id,
            }),
        ));
    }
    wake_scheduler(wake);
    Ok((
        StatusCode::CREATED,
        Json(SubmittedTask {
            task_id: submitted.task_id,
        }),
    ))
}

/// A fresh submission id for a task submission (as Globus hands out):
/// the client may as well make its own UUID.
async fn new_submission_id(
    Caller(_, _): Caller<SubmitsTasks>,
) -> Json<ferry_proto::task::SubmissionId> {
    Json(ferry_proto::task::SubmissionId {
        value: uuid::Uuid::new_v4().to_string(),
    })
}

async fn list_tasks(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesTasks>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<TaskInfo>, Failure> {
    let window = page.window(TASK_LIST_DEFAULT, TASK_LIST_MAX)?;
    let rows = hub.store.tasks_of(who.user_id, window.reach())?;
    let tasks = rows.into_iter().map(|r| task_info(&hub, r)).collect();
    Ok(window.page(tasks, &hub, &uri))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct WaitQuery {
    /// Hold the answer until the task ends or this many milliseconds pass
    /// (at most [`TASK_WAIT_MAX`]): waiting clients learn of the end at
    /// once instead of at their next poll.
    wait_ms: Option<u64>,
    /// Include the task's items (source and destination paths).
    #[serde(default)]
    items: bool,
}

async fn show_task(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesTasks>,
    Path(task): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<TaskInfo>, Failure> {
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(TASK_WAIT_MAX);
    let until = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the look at the store, so an end in between still wakes it.
        let ended = hub.task_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let row = own_task(&hub, &who, &task, Action::SeeTask)?;
        if row.status.is_final() || tokio::time::Instant::now() >= until {
            // One task's answer also says how it filters and caps.
            let work = task_work(&hub, &row.id)?;
            return Ok(Json(TaskInfo {
                items: query.items.then_some(work.items),
                filters: work.options.filters,
                bwlimit: work.options.bwlimit,
                ..task_info(&hub, row)
            }));
        }
        let _ = tokio::time::timeout_at(until, ended).await;
    }
}

/// Cancels an ACTIVE task; canceling a canceled one again is not an error.
async fn cancel_task(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Caller(who, _): Caller<CancelsTasks>,
    Path(task): Path<String>,
) -> Result<Json<TaskInfo>, Failure> {
    let row = own_task(&hub, &who, &task, Action::CancelTask)?;
    if task_service::cancel(&*hub.store, &who, &row, grants::now())? {
        hub.task_ended.notify_waiters();
        wake_scheduler(wake);
    }
    let row = own_task(&hub, &who, &row.id, Action::SeeTask)?;
    Ok(Json(task_info(&hub, row)))
}

impl From<TaskServiceError> for Failure {
    fn from(e: TaskServiceError) -> Self {
        match e {
            e @ TaskServiceError::Revoked(_) => {
                Failure::new(StatusCode::CONFLICT, "revoked", e.to_string())
            }
            e @ TaskServiceError::Ended { .. } => {
                Failure::new(StatusCode::CONFLICT, "task_ended", e.to_string())
            }
            TaskServiceError::Invalid(message) => bad(message),
            TaskServiceError::NotFound(id) => Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no task {id:?} among yours; list them with `ferry task list`"),
            ),
            e @ TaskServiceError::Ambiguous { .. } => {
                Failure::new(StatusCode::CONFLICT, "ambiguous", e.to_string())
            }
            TaskServiceError::Refused(refusal) => Failure::from(refusal),
            TaskServiceError::Endpoint(e) => Failure::from(e),
            TaskServiceError::Storage(e) => Failure::from(e),
        }
    }
}

async fn task_events(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesTasks>,
    Path(task): Path<String>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<TaskEvent>, Failure> {
    let row = own_task(&hub, &who, &task, Action::SeeTask)?;
    let window = page.window(EVENTS_DEFAULT, MAX_TASK_EVENTS as usize)?;
    let events = hub.store.task_events(&row.id, window.reach())?;
    let events = events
        .into_iter()
        .map(|e| TaskEvent {
            is_error: tasks::is_error(&e.code),
            seq: e.seq,
            time: e.time,
            code: e.code,
            description: e.description,
        })
        .collect();
    Ok(window.page(events, &hub, &uri))
}

impl From<TimerError> for Failure {
    fn from(e: TimerError) -> Self {
        match e {
            TimerError::Invalid(message) => bad(message),
            e @ TimerError::NotFound(_) => {
                Failure::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            TimerError::Transfer(e) => Failure::from(e),
            TimerError::Refused(refusal) => Failure::from(refusal),
            TimerError::Storage(e) => Failure::from(e),
        }
    }
}

fn timer_info(row: crate::store::TimerRow, events: Option<Vec<TaskEvent>>) -> TimerInfo {
    let (source_endpoint, destination_endpoint) = timers::endpoints_of(&row);
    TimerInfo {
        status: row.status.as_str().to_string(),
        id: row.timer.id,
        interval: row.timer.interval,
        next_run: row.next_run,
        runs: row.runs,
        last_task_id: row.last_task_id,
        skipped: row.skipped,
        label: row.timer.label,
        source_endpoint,
        destination_endpoint,
        start: row.timer.start,
        stop_after_runs: row.timer.stop_after_runs,
        stop_after_date: row.timer.stop_after_date,
        created: row.timer.created,
        events,
    }
}

async fn create_timer(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SubmitsTasks>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedTimer>), Failure> {
    let create: CreateTimer = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the timer is not understood: {e}")))?;
    let id = timers::create(&*hub.store, &who, create, grants::now())?;
    Ok((StatusCode::CREATED, Json(CreatedTimer { id })))
}

async fn list_timers(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesTasks>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<TimerInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let rows = timers::list(&*hub.store, &who)?;
    let timers = rows.into_iter().map(|r| timer_info(r, None)).collect();
    Ok(window.page(timers, &hub, &uri))
}

async fn show_timer(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<SeesTasks>,
    Path(timer): Path<String>,
) -> Result<Json<TimerInfo>, Failure> {
    let row = timers::find(&*hub.store, &who, &timer, Action::SeeTask)?;
    let events = timers::events(&*hub.store, &row)?
        .into_iter()
        .map(|e| TaskEvent {
            is_error: timers::is_error(&e.code),
            seq: e.seq,
            time: e.time,
            code: e.code,
            description: e.description,
        })
        .collect();
    Ok(Json(timer_info(row, Some(events))))
}

/// Deletes a timer: no more runs. Answers with the timer as it was.
async fn delete_timer(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<CancelsTasks>,
    Path(timer): Path<String>,
) -> Result<Json<TimerInfo>, Failure> {
    let row = timers::find(&*hub.store, &who, &timer, Action::CancelTask)?;
    timers::delete(&*hub.store, &who, &row.timer.id)?;
    Ok(Json(timer_info(row, None)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTask;
    use axum::body::Body;
    use axum::http::Request;
    use ferry_proto::api::{SCOPE_SETUP, SCOPE_TRANSFER};
    use ferry_proto::task::TaskStatus;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    struct Setup {
        hub: Arc<Hub>,
        alice: String,
        bob: String,
        laptop: String,
        cluster: String,
    }

    fn token(hub: &Hub, user_id: i64, name: &str, scope: &str) -> String {
        grants::issue(
            &*hub.store,
            user_id,
            name,
            "test",
            scope,
            &uuid::Uuid::new_v4().to_string(),
            3600,
            false,
        )
        .unwrap()
        .access_token
    }

    fn setup() -> Setup {
        let hub = crate::web::for_tests();
        let alice = hub.store.add_user("alice", "h", 0).unwrap();
        let bob = hub.store.add_user("bob", "h", 0).unwrap();
        hub.store
            .create_endpoint("11111111-0000-0000-0000-000000000001", alice, "laptop", 0)
            .unwrap();
        hub.store
            .create_endpoint("11111111-0000-0000-0000-000000000002", alice, "cluster", 0)
            .unwrap();
        hub.store
            .create_endpoint("22222222-0000-0000-0000-000000000001", bob, "bobs", 0)
            .unwrap();
        Setup {
            alice: token(&hub, alice, "alice", SCOPE_TRANSFER),
            bob: token(&hub, bob, "bob", SCOPE_TRANSFER),
            laptop: "11111111-0000-0000-0000-000000000001".into(),
            cluster: "11111111-0000-0000-0000-000000000002".into(),
            hub,
        }
    }

    async fn call(
        hub: &Arc<Hub>,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = crate::web::router(hub.clone())
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    /// A request's status, `Link` header and body as JSON (which it must be).
    async fn ask(
        hub: &Arc<Hub>,
        method: &str,
        uri: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(kind) = content_type {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let response = crate::web::router(hub.clone())
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).cloned();
        let link = response
            .headers()
            .get(header::LINK)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {uri}: {status} {kind:?} is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, link, value)
    }

    /// axum's own refusals (bad JSON, wrong content type, bad query, a
    /// method or path no route has, a body over the limit) answer an
    /// ApiError like every handler's, never plain text.
    #[tokio::test]
    async fn every_refusal_is_an_api_error() {
        let s = setup();
        let t = Some(s.alice.as_str());
        let json = Some("application/json");
        let big = vec![b' '; crate::web::MAX_BODY + 1];
        // (method, uri, content type, body, status, error word)
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Vec<u8>,
            StatusCode,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "POST",
                "/api/v1/groups",
                json,
                b"{not json".to_vec(),
                StatusCode::BAD_REQUEST,
                "invalid",
            ),
            (
                "POST",
                "/api/v1/groups",
                json,
                b"{}".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
            (
                "POST",
                "/api/v1/groups",
                Some("text/plain"),
                b"{}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "POST",
                "/api/v1/groups",
                json,
                big,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            ),
            (
                "GET",
                "/api/v1/tasks?limit=many",
                None,
                vec![],
                StatusCode::BAD_REQUEST,
                "invalid",
            ),
            (
                "GET",
                "/api/v1/tasks?marker=forged",
                None,
                vec![],
                StatusCode::BAD_REQUEST,
                "invalid",
            ),
            (
                "PUT",
                "/api/v1/tasks",
                None,
                vec![],
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                "GET",
                "/api/v1/no-such-route",
                None,
                vec![],
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "GET",
                "/api/v2/tasks",
                None,
                vec![],
                StatusCode::NOT_FOUND,
                "not_found",
            ),
        ];
        for (method, uri, kind, body, status, word) in cases {
            let (got, _, answer) = ask(&s.hub, method, uri, t, kind, body).await;
            assert_eq!(got, status, "{method} {uri}: {answer}");
            let error: ApiError = serde_json::from_value(answer.clone())
                .unwrap_or_else(|e| panic!("{method} {uri}: {e}: {answer}"));
            assert_eq!(error.error, word, "{method} {uri}: {answer}");
            assert!(!error.message.is_empty() && !error.message.contains('\n'));
        }
    }

    /// A list comes in pages of `limit`, each a JSON array, chained by
    /// `Link: <..>; rel="next"` until the last; together they are the
    /// whole list, each item once.
    #[tokio::test]
    async fn lists_come_in_pages_linked_to_the_next() {
        let s = setup();
        let alice = grants::authenticate(&*s.hub.store, &s.hub.identity_rules, &s.alice)
            .unwrap()
            .unwrap();
        for i in 0..5 {
            sharing::create_group(&*s.hub.store, &alice, &format!("lab-{i}")).unwrap();
        }
        let (status, link, whole) = ask(
            &s.hub,
            "GET",
            "/api/v1/groups",
            Some(&s.alice),
            None,
            vec![],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(link, None, "one page holds them all by default");
        assert_eq!(whole.as_array().unwrap().len(), 5);
        let mut uri = "/api/v1/groups?limit=2".to_string();
        let mut pages = Vec::new();
        let mut items = Vec::new();
        loop {
            let (status, link, page) = ask(&s.hub, "GET", &uri, Some(&s.alice), None, vec![]).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            pages.push(page.as_array().unwrap().len());
            items.extend(page.as_array().unwrap().iter().cloned());
            let Some(link) = link else { break };
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("not a next link: {link}"));
            assert!(target.starts_with(&s.hub.config.url), "{target}");
            uri = target[s.hub.config.url.trim_end_matches('/').len()..].to_string();
            assert!(
                uri.contains("limit=2"),
                "the next page keeps the query: {uri}"
            );
            assert!(pages.len() < 10, "the pages never end");
        }
        assert_eq!(pages, [2, 2, 1]);
        assert_eq!(
            Value::from(items),
            whole,
            "the pages are the whole list, in order"
        );
    }

    /// Every (method, path) that [`routes`] declares, read from its source,
    /// so a route added without a line in the walk below fails the walk.
    fn declared_routes() -> Vec<(String, String)> {
        crate::route_walk::declared_routes(include_str!("api.rs"), "pub fn routes()")
    }

    async fn send(
        hub: &Arc<Hub>,
        method: &str,
        uri: &str,
        credentials: &[(&str, String)],
        body: Option<&Value>,
    ) -> (StatusCode, String) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in credentials {
            request = request.header(*name, value);
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = crate::web::router(hub.clone())
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Every route, as no one and as another user: no one is refused
    /// (401) before anything happens; Bob, with a token that covers every
    /// action or with his browser session, finds none of Alice's endpoints
    /// and tasks (404, the answer for what does not exist), sees none of
    /// them in his lists, and changes nothing of hers. A session's request
    /// that changes something needs its CSRF token and the hub's origin.
    #[tokio::test]
    async fn every_route_refuses_no_one_and_hides_one_users_objects_from_another() {
        let s = setup();
        let bob_id = s.hub.store.user_by_name("bob").unwrap().unwrap().id;
        let bob = token(
            &s.hub,
            bob_id,
            "bob",
            &format!("{SCOPE_TRANSFER} {SCOPE_SETUP}"),
        );
        let (session, csrf) = ("bobs-session-cookie-value", "bobs-csrf-token");
        s.hub
            .store
            .put_session(
                &crate::secrets::token_hash(session),
                bob_id,
                csrf,
                grants::now() + 3600,
            )
            .unwrap();
        let cookie = (
            "cookie",
            format!("{}={session}", crate::session::SESSION_COOKIE),
        );
        let as_bob = [
            vec![("authorization", format!("Bearer {bob}"))],
            vec![
                cookie.clone(),
                (CSRF_HEADER, csrf.to_string()),
                ("sec-fetch-site", "same-origin".to_string()),
            ],
        ];
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(submission(&s.laptop, &s.cluster)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let task = body["task_id"].as_str().unwrap().to_string();
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/timers",
            &s.alice,
            Some(timer_body(&s.laptop, &s.cluster)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let timer = body["id"].as_str().unwrap().to_string();
        let alice = grants::authenticate(&*s.hub.store, &s.hub.identity_rules, &s.alice)
            .unwrap()
            .unwrap();
        let hook = notify::create_webhook(
            &*s.hub.store,
            &alice,
            "https://hooks.example.org/alice",
            None,
            false,
            1,
        )
        .unwrap();
        let alices_hook = hook.id.clone();
        let alices_app = crate::apps::create(
            &*s.hub.store,
            &s.hub.identity_rules,
            &alice,
            "alices-portal",
            crate::store::ClientKind::Portal,
            &["https://portal.example.org/alice".to_string()],
            1,
        )
        .unwrap()
        .row
        .client_id;
        let alices_link = "alices-link-0000";
        s.hub
            .store
            .put_link(&crate::store::LinkRow {
                id: alices_link.into(),
                token_hash: crate::secrets::token_hash("alices-link-token"),
                endpoint_id: s.laptop.clone(),
                path: b"/~/pub".to_vec(),
                created_by: alice.user_id,
                created: 1,
                expires: None,
                deleted: false,
                max_bytes: None,
                bytes_served: 0,
            })
            .unwrap();
        let alices = [
            s.laptop.as_str(),
            alices_link,
            s.cluster.as_str(),
            task.as_str(),
            timer.as_str(),
            alices_hook.as_str(),
            hook.secret.as_str(),
            "hooks.example.org/alice",
            alices_app.as_str(),
            "portal.example.org/alice",
        ];
        sharing::create_group(&*s.hub.store, &alice, "alices-lab").unwrap();
        sharing::change_member(&*s.hub.store, &alice, "alices-lab", "alice", true).unwrap();

        // (method, path as declared, the request made, its body, what Bob gets)
        enum Bob {
            /// Alice's object, named: as absent as a missing one.
            NotFound,
            /// A route on his own things: it may succeed or fail, but
            /// never shows or touches Alice's.
            OwnOnly,
        }
        let fs = json!({"op": "list", "path": "/~/"});
        let rename = json!({"display_name": "taken-over"});
        let walk: Vec<(&str, &str, String, Option<Value>, Bob)> = vec![
            (
                "GET",
                "/api/v1/endpoints",
                "/api/v1/endpoints?filter_scope=all".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/endpoints",
                "/api/v1/endpoints".into(),
                Some(json!({"display_name": "bobs-new"})),
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/endpoints/register",
                "/api/v1/endpoints/register".into(),
                Some(json!({"csr_pem": "not a csr", "display_name": "x"})),
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/endpoints/{endpoint}",
                format!("/api/v1/endpoints/{}", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "PATCH",
                "/api/v1/endpoints/{endpoint}",
                format!("/api/v1/endpoints/{}", s.laptop),
                Some(rename.clone()),
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/endpoints/{endpoint}",
                format!("/api/v1/endpoints/{}", s.cluster),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/endpoints/{endpoint}/fs",
                format!("/api/v1/endpoints/{}/fs", s.laptop),
                Some(fs),
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/tasks",
                "/api/v1/tasks".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/tasks",
                "/api/v1/tasks".into(),
                Some(submission(&s.laptop, &s.cluster)),
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/tasks/{task}",
                format!("/api/v1/tasks/{task}"),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/tasks/{task}/cancel",
                format!("/api/v1/tasks/{task}/cancel"),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/tasks/{task}/events",
                format!("/api/v1/tasks/{task}/events"),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/endpoints/{endpoint}/permissions",
                format!("/api/v1/endpoints/{}/permissions", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/endpoints/{endpoint}/permissions",
                format!("/api/v1/endpoints/{}/permissions", s.laptop),
                Some(
                    json!({"path": "/~/", "permissions": "rw", "principal_type": "identity", "principal": "bob"}),
                ),
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/endpoints/{endpoint}/permissions/{permission}",
                format!("/api/v1/endpoints/{}/permissions/some-id", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/endpoints/{endpoint}/audit",
                format!("/api/v1/endpoints/{}/audit?since=0", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/endpoints/{endpoint}/nodes",
                format!("/api/v1/endpoints/{}/nodes", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/endpoints/{endpoint}/nodes",
                format!("/api/v1/endpoints/{}/nodes", s.laptop),
                Some(json!({"name": "bobs-node"})),
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/endpoints/{endpoint}/nodes/{node}",
                format!("/api/v1/endpoints/{}/nodes/node-2", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/endpoints/{endpoint}/files/{*path}",
                format!("/api/v1/endpoints/{}/files/~/x", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "PUT",
                "/api/v1/endpoints/{endpoint}/files/{*path}",
                format!("/api/v1/endpoints/{}/files/~/x", s.laptop),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/groups",
                "/api/v1/groups".into(),
                Some(json!({"name": "bobs-group"})),
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/groups",
                "/api/v1/groups".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/groups/{group}/members",
                "/api/v1/groups/alices-lab/members".into(),
                Some(json!({"user": "bob"})),
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/groups/{group}/members/{user}",
                "/api/v1/groups/alices-lab/members/alice".into(),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/timers",
                "/api/v1/timers".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/webhooks",
                "/api/v1/webhooks".into(),
                Some(json!({"url": "https://hooks.example.org/bob"})),
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/webhooks",
                "/api/v1/webhooks".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/timers",
                "/api/v1/timers".into(),
                Some(timer_body(&s.laptop, &s.cluster)),
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/timers/{timer}",
                format!("/api/v1/timers/{timer}"),
                None,
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/timers/{timer}",
                format!("/api/v1/timers/{timer}"),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/links",
                "/api/v1/links".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/links",
                "/api/v1/links".into(),
                Some(json!({"endpoint_id": s.laptop, "path": "/~/pub"})),
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/links/{link}",
                format!("/api/v1/links/{alices_link}"),
                None,
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/webhooks/{webhook}",
                format!("/api/v1/webhooks/{alices_hook}"),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/whoami",
                "/api/v1/whoami".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/submission_id",
                "/api/v1/submission_id".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "POST",
                "/api/v1/apps",
                "/api/v1/apps".into(),
                Some(json!({"name": "bobs-app", "type": "native"})),
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/apps",
                "/api/v1/apps".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "GET",
                "/api/v1/apps/{app}",
                format!("/api/v1/apps/{alices_app}"),
                None,
                Bob::NotFound,
            ),
            (
                "DELETE",
                "/api/v1/apps/{app}",
                format!("/api/v1/apps/{alices_app}"),
                None,
                Bob::NotFound,
            ),
            (
                "POST",
                "/api/v1/apps/{app}/rotate-secret",
                format!("/api/v1/apps/{alices_app}/rotate-secret"),
                None,
                Bob::NotFound,
            ),
            (
                "GET",
                "/api/v1/consents",
                "/api/v1/consents".into(),
                None,
                Bob::OwnOnly,
            ),
            (
                "DELETE",
                "/api/v1/consents/{app}",
                format!("/api/v1/consents/{alices_app}"),
                None,
                Bob::NotFound,
            ),
        ];
        let mut walked: Vec<(String, String)> = walk
            .iter()
            .map(|(m, p, ..)| (m.to_string(), p.to_string()))
            .collect();
        walked.sort();
        assert_eq!(walked, declared_routes(), "every route is walked, once");

        for (method, _, uri, body, expect) in &walk {
            let (status, answer) = send(&s.hub, method, uri, &[], body.as_ref()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} as no one: {answer}"
            );
            for credentials in &as_bob {
                let (status, answer) = send(&s.hub, method, uri, credentials, body.as_ref()).await;
                let who = &credentials[0].0;
                match expect {
                    Bob::NotFound => assert_eq!(
                        status,
                        StatusCode::NOT_FOUND,
                        "{method} {uri} as bob ({who}): {answer}"
                    ),
                    Bob::OwnOnly => assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{method} {uri} as bob ({who}): {status} {answer}"
                    ),
                }
                // (A refusal may repeat the name Bob gave; nothing else of hers.)
                for id in alices.iter().filter(|_| status.is_success()) {
                    assert!(
                        !answer.contains(id),
                        "{method} {uri} as bob ({who}) shows {id}: {answer}"
                    );
                }
            }
            // A session's change without its token, or from another site, is refused first.
            if *method != "GET" {
                for forged in [
                    vec![cookie.clone()],
                    vec![
                        cookie.clone(),
                        (CSRF_HEADER, csrf.to_string()),
                        ("sec-fetch-site", "cross-site".to_string()),
                    ],
                ] {
                    let (status, answer) = send(&s.hub, method, uri, &forged, body.as_ref()).await;
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {uri} forged: {answer}"
                    );
                    assert!(answer.contains("csrf"), "{answer}");
                }
            }
        }
        // Alice's things are as she left them.
        assert_eq!(s.hub.store.webhooks_of(alice.user_id).unwrap(), vec![hook]);
        let lab = sharing::groups(&*s.hub.store, &alice).unwrap();
        assert_eq!(lab[0].members, ["alice"], "bob changed alice's group");
        assert!(
            s.hub
                .store
                .endpoint_permissions(&s.laptop, grants::now())
                .unwrap()
                .is_empty()
        );
        let laptop = s.hub.store.endpoint(&s.laptop).unwrap().unwrap();
        assert_eq!(
            (laptop.display_name.as_str(), laptop.deleted),
            ("laptop", false)
        );
        assert!(!s.hub.store.endpoint(&s.cluster).unwrap().unwrap().deleted);
        assert_eq!(
            s.hub.store.task(&task).unwrap().unwrap().status,
            TaskStatus::Active
        );
        assert!(
            s.hub.store.timer(&timer).unwrap().is_some(),
            "bob deleted alice's timer"
        );
    }

    /// A store that cannot answer now makes the API say so (503, to retry),
    /// for token and session alike: not a refusal, not a server error.
    #[tokio::test]
    async fn a_store_that_cannot_answer_is_a_503_not_a_refusal() {
        use crate::store::failing::FailingStorage;
        let failing = Arc::new(FailingStorage::new(Arc::new(
            crate::store::SqliteStore::in_memory().unwrap(),
        )));
        let hub = Arc::new(crate::web::test_hub(failing.clone()));
        let alice = hub.store.add_user("alice", "h", 0).unwrap();
        let alices = token(&hub, alice, "alice", SCOPE_TRANSFER);
        failing.fail("token");
        let bearer = [("authorization", format!("Bearer {alices}"))];
        let (status, answer) = send(&hub, "GET", "/api/v1/tasks", &bearer, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert!(answer.contains("try again"), "{answer}");
        failing.fail("session");
        let cookie = [(
            "cookie",
            format!("{}=some-session", crate::session::SESSION_COOKIE),
        )];
        let (status, answer) = send(&hub, "GET", "/api/v1/tasks", &cookie, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        failing.recover();
        let (status, answer) = send(&hub, "GET", "/api/v1/tasks", &bearer, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    fn submission(source: &str, destination: &str) -> Value {
        json!({
            "source_endpoint": source,
            "destination_endpoint": destination,
            "items": [{"source": "/~/data", "destination": "/scratch/run7", "recursive": true}],
            "options": {"sync_level": "checksum"},
            "label": "run 7",
            "deadline": grants::now() + 3600,
        })
    }

    /// A timer of `submission` every minute (a timer's runs have no deadline of their own).
    fn timer_body(source: &str, destination: &str) -> Value {
        let mut transfer = submission(source, destination);
        transfer.as_object_mut().unwrap().remove("deadline");
        json!({"transfer": transfer, "interval": 60})
    }

    #[tokio::test]
    async fn a_hook_is_refused_at_submission_unless_the_destination_lists_it() {
        let s = setup();
        let with_hook = |name: &str| {
            let mut body = submission("laptop", &s.cluster);
            body["options"]["on_success"] = json!(name);
            body
        };
        // Offline: the hub cannot know; the destination checks later.
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(with_hook("later")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["task_id"].as_str().unwrap();
        let work = s.hub.store.task_work(id).unwrap().unwrap();
        assert_eq!(work.options.on_success.as_deref(), Some("later"));
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(with_hook("a b")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("hook name"), "{body}");

        let _link = s
            .hub
            .control
            .connect_for_tests(&s.cluster, Some(vec!["analyse".into(), "tar".into()]));
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(with_hook("nosuch")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body.to_string()
                .contains("endpoint 'cluster' has no hook named 'nosuch' (--on-success); its endpoint.toml configures hooks 'analyse', 'tar'"),
            "{body}"
        );
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(with_hook("analyse")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // An older daemon lists none at all: it would drop the hook.
        let _old = s.hub.control.connect_for_tests(&s.cluster, None);
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(with_hook("analyse")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("older ferry"), "{body}");
        // A task without a hook is none of this.
        let plain = submission("laptop", &s.cluster);
        let (status, body) = call(&s.hub, "POST", "/api/v1/tasks", &s.alice, Some(plain)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    #[tokio::test]
    async fn a_task_keeps_the_checksum_algorithm_it_was_submitted_with() {
        let s = setup();
        let mut blake3 = submission("laptop", &s.cluster);
        blake3["options"]["checksum_algorithm"] = json!("blake3");
        let (status, body) = call(&s.hub, "POST", "/api/v1/tasks", &s.alice, Some(blake3)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["task_id"].as_str().unwrap().to_string();
        let (_, shown) = call(
            &s.hub,
            "GET",
            &format!("/api/v1/tasks/{id}"),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(shown["checksum_algorithm"], "blake3");
        assert_eq!(
            s.hub
                .store
                .task_work(&id)
                .unwrap()
                .unwrap()
                .options
                .checksum_algorithm,
            ferry_proto::task::ChecksumAlgorithm::Blake3
        );
        let mut unknown = submission("laptop", &s.cluster);
        unknown["options"]["checksum_algorithm"] = json!("md5");
        let (status, body) = call(&s.hub, "POST", "/api/v1/tasks", &s.alice, Some(unknown)).await;
        assert!(status.is_client_error(), "{status} {body}");
    }

    #[tokio::test]
    async fn the_audit_log_is_its_owners_alone_and_reads_since_a_time_in_bounded_pages() {
        let s = setup();
        let store = &*s.hub.store;
        let bob_id = store.user_by_name("bob").unwrap().unwrap().id;
        let alice_id = store.user_by_name("alice").unwrap().unwrap().id;
        let bob = audit::Actor {
            id: bob_id,
            name: "bob",
        };
        audit::record(
            store,
            100,
            &s.laptop,
            bob,
            &[audit::Entry::new(audit::action::LS, b"/~/shared")],
        )
        .unwrap();
        audit::record(
            store,
            200,
            &s.laptop,
            bob,
            &[audit::Entry {
                task_id: Some("t-1"),
                ..audit::Entry::new(audit::action::READ, b"/~/shared/a\xff")
            }],
        )
        .unwrap();
        let uri = |query: &str| format!("/api/v1/endpoints/{}/audit{query}", s.laptop);
        let (status, body) = call(&s.hub, "GET", &uri(""), &s.alice, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!([
                {"time": 100, "identity": "bob", "action": "ls", "path": "/~/shared", "task_id": null},
                {"time": 200, "identity": "bob", "action": "read", "path": "/~/shared/a%FF", "task_id": "t-1"},
            ])
        );
        let (_, since) = call(&s.hub, "GET", &uri("?since=150"), &s.alice, None).await;
        assert_eq!(since.as_array().unwrap().len(), 1);
        assert_eq!(since[0]["action"], "read");
        // A page holds the newest; a limit of 0 still reads one.
        let (_, page) = call(&s.hub, "GET", &uri("?limit=0"), &s.alice, None).await;
        assert_eq!(page.as_array().unwrap().len(), 1);
        assert_eq!(page[0]["time"], 200);
        // By name too; another's endpoint is refused, shared or not.
        let (status, _) = call(
            &s.hub,
            "GET",
            "/api/v1/endpoints/laptop/audit",
            &s.alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        store
            .put_permission(&crate::store::PermissionRow {
                id: "p1".into(),
                endpoint_id: s.laptop.clone(),
                path: b"/~/shared".to_vec(),
                mode: ShareMode::Read,
                grantee: crate::store::Grantee::Identity {
                    user_id: bob_id,
                    name: "bob".into(),
                },
                expires: None,
                created: 0,
                created_by: alice_id,
            })
            .unwrap();
        let (status, body) = call(&s.hub, "GET", &uri(""), &s.bob, None).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{status} {body}"
        );
        assert!(!body.to_string().contains("/~/shared"), "{body}");
    }

    #[tokio::test]
    async fn a_task_is_submitted_shown_listed_and_canceled() {
        let s = setup();
        let (status, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(submission("laptop", &s.cluster)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["task_id"].as_str().unwrap().to_string();

        let (status, shown) = call(
            &s.hub,
            "GET",
            &format!("/api/v1/tasks/{id}"),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown["status"], "ACTIVE");
        assert_eq!(shown["label"], "run 7");
        assert_eq!(shown["source_endpoint"], s.laptop.as_str());
        assert_eq!(shown["source_endpoint_name"], "laptop");
        assert_eq!(shown["destination_endpoint_name"], "cluster");
        for key in [
            "files",
            "files_transferred",
            "files_skipped",
            "bytes_transferred",
            "faults",
            "attempt",
        ] {
            assert_eq!(shown[key], 0, "{key}");
        }
        assert_eq!(shown["item_count"], 1);
        assert!(
            shown["waiting_for"]
                .as_str()
                .unwrap()
                .contains("'laptop' is not connected"),
            "{shown}"
        );
        assert!(shown["deadline"].is_i64());
        assert!(shown["completed"].is_null());
        let options = s.hub.store.task_work(&id).unwrap().unwrap().options;
        assert_eq!(
            options.sync_level,
            Some(ferry_proto::task::SyncLevel::Checksum)
        );
        assert!(
            options.preserve_mtime && options.preserve_mode,
            "defaults fill what is left out"
        );
        // An older client names no algorithm: its task means SHA-256, as
        // it always did, and says so.
        assert_eq!(
            options.checksum_algorithm,
            ferry_proto::task::ChecksumAlgorithm::Sha256
        );
        assert_eq!(shown["checksum_algorithm"], "sha256");

        let (_, list) = call(&s.hub, "GET", "/api/v1/tasks", &s.alice, None).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["task_id"], id.as_str());
        let (_, none) = call(&s.hub, "GET", "/api/v1/tasks", &s.bob, None).await;
        assert_eq!(none, json!([]));

        // A waiting lookup answers when the task ends, not when its wait is up.
        let waiting = {
            let (hub, alice, id) = (s.hub.clone(), s.alice.clone(), id.clone());
            tokio::spawn(async move {
                let uri = format!("/api/v1/tasks/{id}?wait_ms=5000");
                call(&hub, "GET", &uri, &alice, None).await
            })
        };
        // Lets the lookup reach its wait before the cancel.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let (status, canceled) = call(
            &s.hub,
            "POST",
            &format!("/api/v1/tasks/{id}/cancel"),
            &s.alice,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{canceled}");
        assert_eq!(canceled["status"], "CANCELED");
        // It would hold for 5 s without the wake-up.
        let (status, seen) = tokio::time::timeout(Duration::from_secs(4), waiting)
            .await
            .expect("the waiting lookup was woken by the end")
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["status"], "CANCELED", "the waiting lookup saw the end");
        assert!(canceled["completed"].is_i64());
        assert!(canceled["waiting_for"].is_null());
        let (status, again) = call(
            &s.hub,
            "POST",
            &format!("/api/v1/tasks/{id}/cancel"),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(
            (status, &again["status"]),
            (StatusCode::OK, &json!("CANCELED")),
            "canceling twice is fine"
        );

        let (status, events) = call(
            &s.hub,
            "GET",
            &format!("/api/v1/tasks/{id}/events"),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let codes: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["SUBMITTED", "CANCELED"]);
        assert_eq!(events[1]["description"], "canceled by alice");
        assert_eq!(events[1]["is_error"], false);
    }

    #[tokio::test]
    async fn tasks_are_named_by_a_unique_prefix_of_their_id() {
        let s = setup();
        let alice = s.hub.store.user_by_name("alice").unwrap().unwrap().id;
        let bob = s.hub.store.user_by_name("bob").unwrap().unwrap().id;
        for (id, owner) in [
            ("abcd1111-0000-4000-8000-000000000001", alice),
            ("abcd2222-0000-4000-8000-000000000002", alice),
            ("abce3333-0000-4000-8000-000000000003", bob),
        ] {
            let task = NewTask {
                submission_id: None,
                id: id.into(),
                owner_id: owner,
                source_id: s.laptop.clone(),
                destination_id: s.cluster.clone(),
                items: Vec::new(),
                options: Default::default(),
                label: None,
                deadline: None,
                created: 1,
                notify: Default::default(),
            };
            s.hub.store.create_task(&task, "SUBMITTED", "x").unwrap();
        }
        let get = |prefix: &str| {
            let uri = format!("/api/v1/tasks/{prefix}");
            let hub = s.hub.clone();
            let token = s.alice.clone();
            async move { call(&hub, "GET", &uri, &token, None).await }
        };
        // Unique: found, whatever the case.
        let (status, body) = get("ABCD1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["task_id"], "abcd1111-0000-4000-8000-000000000001");
        // Ambiguous: one error naming every candidate of the caller's only.
        let (status, body) = get("abcd").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "ambiguous");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("abcd1111-") && message.contains("abcd2222-"),
            "{message}"
        );
        // Bob's task is not among alice's, by prefix either.
        let (status, _) = get("abce").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Too short, and not an id at all.
        let (status, body) = get("abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("at least 4"),
            "{body}"
        );
        let (status, _) = get("abcd%").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Cancel and events resolve the same way.
        let (status, body) =
            call(&s.hub, "POST", "/api/v1/tasks/abcd2/cancel", &s.alice, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["task_id"], "abcd2222-0000-4000-8000-000000000002");
        let (status, _) = call(&s.hub, "GET", "/api/v1/tasks/abcd/events", &s.alice, None).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn an_ended_task_cannot_be_canceled_and_others_tasks_are_invisible() {
        let s = setup();
        let (_, body) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(submission(&s.laptop, "cluster")),
        )
        .await;
        let id = body["task_id"].as_str().unwrap().to_string();
        for (method, uri) in [
            ("GET", format!("/api/v1/tasks/{id}")),
            ("GET", format!("/api/v1/tasks/{id}/events")),
            ("POST", format!("/api/v1/tasks/{id}/cancel")),
        ] {
            let (status, body) = call(&s.hub, method, &uri, &s.bob, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert_eq!(body["error"], "not_found");
        }
        s.hub
            .store
            .finish_task(&id, TaskStatus::Succeeded, None, None, 1)
            .unwrap();
        let (status, body) = call(
            &s.hub,
            "POST",
            &format!("/api/v1/tasks/{id}/cancel"),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("already ended: SUCCEEDED"),
            "{body}"
        );
        let (status, _) = call(&s.hub, "GET", "/api/v1/tasks/nope", &s.alice, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&s.hub, "GET", "/api/v1/tasks", "not-a-token", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn bad_submissions_are_refused_with_a_reason() {
        let s = setup();
        let bobs = "22222222-0000-0000-0000-000000000001";
        let mut cases = vec![
            (
                submission("laptop", bobs),
                StatusCode::NOT_FOUND,
                "no endpoint",
            ),
            (
                submission("bobs", "cluster"),
                StatusCode::NOT_FOUND,
                "no endpoint",
            ),
        ];
        let mut bad_level = submission("laptop", "cluster");
        bad_level["options"]["sync_level"] = json!("fast");
        cases.push((bad_level, StatusCode::BAD_REQUEST, "fast"));
        let mut relative = submission("laptop", "cluster");
        relative["items"][0]["source"] = json!("data/run7");
        cases.push((relative, StatusCode::BAD_REQUEST, "not absolute"));
        let mut tilde = submission("laptop", "cluster");
        tilde["items"][0]["destination"] = json!("~/x");
        cases.push((tilde, StatusCode::BAD_REQUEST, "/~/"));
        let mut empty = submission("laptop", "cluster");
        empty["items"] = json!([]);
        cases.push((empty, StatusCode::BAD_REQUEST, "nothing to transfer"));
        let mut past = submission("laptop", "cluster");
        past["deadline"] = json!(grants::now() - task_service::DEADLINE_GRACE - 10);
        cases.push((past, StatusCode::BAD_REQUEST, "already passed"));
        let mut label = submission("laptop", "cluster");
        label["label"] = json!("a\nb");
        cases.push((label, StatusCode::BAD_REQUEST, "label"));
        let mut streams = submission("laptop", "cluster");
        streams["options"]["streams"] = json!(0);
        cases.push((streams, StatusCode::BAD_REQUEST, "streams"));
        let mut nul = submission("laptop", "cluster");
        nul["items"][0]["source"] = json!("/a%00b");
        cases.push((nul, StatusCode::BAD_REQUEST, "NUL"));
        let mut filters = submission("laptop", "cluster");
        filters["options"]["filters"] =
            json!(vec![json!({"action": "exclude", "pattern": "*.tmp"}); 65]);
        cases.push((filters, StatusCode::BAD_REQUEST, "at most 64"));
        let mut pattern = submission("laptop", "cluster");
        pattern["options"]["filters"] = json!([{"action": "include", "pattern": "a".repeat(257)}]);
        cases.push((pattern, StatusCode::BAD_REQUEST, "too long"));
        let mut class = submission("laptop", "cluster");
        class["options"]["filters"] = json!([{"action": "exclude", "pattern": "[abc"}]);
        cases.push((class, StatusCode::BAD_REQUEST, "no closing"));
        let mut slow = submission("laptop", "cluster");
        slow["options"]["bwlimit"] = json!(9_999);
        cases.push((slow, StatusCode::BAD_REQUEST, "bwlimit"));
        for (body, expected, words) in cases {
            let (status, answer) = call(
                &s.hub,
                "POST",
                "/api/v1/tasks",
                &s.alice,
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, expected, "{body} -> {answer}");
            assert!(
                answer["message"].as_str().unwrap().contains(words),
                "{body} -> {answer}"
            );
        }
        s.hub.store.revoke_endpoint(&s.cluster).unwrap();
        let (status, answer) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(submission("laptop", "cluster")),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        let setup_only = token(&s.hub, 1, "alice", SCOPE_SETUP);
        let (status, _) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &setup_only,
            Some(submission("laptop", "laptop")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(s.hub.store.tasks_of(1, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_batch_larger_than_ordinary_requests_is_accepted_up_to_what_a_capability_carries() {
        let s = setup();
        let item = |i: usize| json!({"source": format!("/~/data/{i:0>90}"), "destination": format!("/scratch/{i:0>90}"), "recursive": false});
        let mut body = submission("laptop", "cluster");
        body["items"] = (0..1000).map(item).collect();
        assert!(body.to_string().len() > crate::web::MAX_BODY);
        let (status, answer) = call(
            &s.hub,
            "POST",
            "/api/v1/tasks",
            &s.alice,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let (_, shown) = call(
            &s.hub,
            "GET",
            &format!("/api/v1/tasks/{}", answer["task_id"].as_str().unwrap()),
            &s.alice,
            None,
        )
        .await;
        assert_eq!(shown["item_count"], 1000);
        body["items"] = (0..4000).map(item).collect();
        let (status, answer) = call(&s.hub, "POST", "/api/v1/tasks", &s.alice, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("split"),
            "{answer}"
        );
    }
}
