//! The REST API under `/api/v1`: endpoints (create, search, register) and
//! file operations on connected endpoints. Every route authenticates first
//! and answers errors as JSON [`ApiError`]s with one line a user can act on.

use crate::control::CallError;
use crate::endpoints::{self, RegistryError};
use crate::grants::{self, Principal};
use crate::server::Hub;
use crate::store::EndpointRow;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_proto::api::{
    ApiError, CreateEndpoint, EndpointInfo, FilterScope, FsOp, FsOutcome, RegisterEndpoint,
    SCOPE_SETUP, SCOPE_TRANSFER,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a file operation may take on the endpoint.
const FS_WITHIN: Duration = Duration::from_secs(30);
/// Most endpoints one search returns.
const SEARCH_LIMIT: usize = 1000;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route(
            "/api/v1/endpoints",
            post(create_endpoint).get(search_endpoints),
        )
        .route("/api/v1/endpoints/register", post(register_endpoint))
        .route("/api/v1/endpoints/{endpoint}/fs", post(fs_operation))
        .route("/api/v1/endpoints/{endpoint}", get(show_endpoint))
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
            e
            @ (RegistryError::KeyUsed | RegistryError::KeyExpired | RegistryError::KeyUnknown) => {
                Failure::new(StatusCode::UNAUTHORIZED, "invalid_setup_key", e.to_string())
            }
            e @ RegistryError::Revoked(_) => {
                Failure::new(StatusCode::FORBIDDEN, "revoked", e.to_string())
            }
            RegistryError::Internal(e) => Failure::internal(format!("{e:#}")),
        }
    }
}

/// `Authorization: <scheme> <credential>`.
fn credential<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim())
}

/// The caller, who must hold one of `scopes`.
fn principal(hub: &Hub, headers: &HeaderMap, scopes: &[&str]) -> Result<Principal, Failure> {
    let token = credential(headers, "Bearer").ok_or_else(|| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no access token; log in with `ferry login` or set FERRY_TOKEN",
        )
    })?;
    let principal = grants::authenticate(&hub.store, token)
        .map_err(Failure::internal)?
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid or expired; log in again with `ferry login`",
            )
        })?;
    if !scopes.iter().any(|s| principal.has_scope(s)) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("the access token lacks the scope {}", scopes.join(" or ")),
        ));
    }
    Ok(principal)
}

fn info(hub: &Hub, row: EndpointRow) -> EndpointInfo {
    EndpointInfo {
        connected: hub.control.is_connected(&row.id),
        id: row.id,
        display_name: row.display_name,
        owner: row.owner_name,
        created: row.created,
    }
}

/// An endpoint the caller may use, named by id or by one of their display names.
fn resolve(hub: &Hub, who: &Principal, name: &str) -> Result<EndpointRow, Failure> {
    let by_id = hub.store.endpoint(name).map_err(Failure::internal)?;
    let row = match by_id {
        Some(row) => Some(row),
        None => hub
            .store
            .endpoint_by_name(who.user_id, name)
            .map_err(Failure::internal)?,
    };
    match row {
        Some(row) if row.owner_id == who.user_id => Ok(row),
        _ => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {name:?} among yours; list them with `ferry endpoint search`"),
        )),
    }
}

async fn create_endpoint(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(body): Json<CreateEndpoint>,
) -> Result<(StatusCode, Json<ferry_proto::api::CreatedEndpoint>), Failure> {
    let who = principal(&hub, &headers, &[SCOPE_SETUP, SCOPE_TRANSFER])?;
    let created = endpoints::create(
        &hub.store,
        &hub.config.url,
        hub.tls_ca_sha256,
        who.user_id,
        &body.display_name,
        endpoints::SETUP_KEY_TTL,
    )?;
    tracing::info!(endpoint = %created.id, owner = %who.user_name, "endpoint created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    filter_scope: Option<FilterScope>,
}

async fn search_endpoints(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Vec<EndpointInfo>>, Failure> {
    let who = principal(&hub, &headers, &[SCOPE_TRANSFER, SCOPE_SETUP])?;
    // Sharing is not built yet: nothing is shared with anyone, so "all"
    // (what the caller may see) is their own endpoints.
    let rows = match query.filter_scope.unwrap_or(FilterScope::MyEndpoints) {
        FilterScope::SharedWithMe => Vec::new(),
        FilterScope::MyEndpoints | FilterScope::All => hub
            .store
            .search_endpoints(Some(who.user_id), &query.q, SEARCH_LIMIT)
            .map_err(Failure::internal)?,
    };
    Ok(Json(rows.into_iter().map(|r| info(&hub, r)).collect()))
}

async fn show_endpoint(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(endpoint): Path<String>,
) -> Result<Json<EndpointInfo>, Failure> {
    let who = principal(&hub, &headers, &[SCOPE_TRANSFER, SCOPE_SETUP])?;
    let row = resolve(&hub, &who, &endpoint)?;
    Ok(Json(info(&hub, row)))
}

async fn register_endpoint(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(body): Json<RegisterEndpoint>,
) -> Result<(StatusCode, Json<ferry_proto::api::RegisteredEndpoint>), Failure> {
    let registered = if let Some(key) = credential(&headers, "SetupKey") {
        endpoints::register_with_key(&hub.store, &hub.endpoint_ca, key, &body.csr_pem)?
    } else {
        let who = principal(&hub, &headers, &[SCOPE_SETUP])?;
        let name = body.display_name.as_deref().ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "registering with a login needs a display_name",
            )
        })?;
        endpoints::register_new(
            &hub.store,
            &hub.endpoint_ca,
            who.user_id,
            name,
            &body.csr_pem,
        )?
    };
    tracing::info!(endpoint = %registered.id, owner = %registered.owner, "endpoint registered");
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn fs_operation(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(endpoint): Path<String>,
    Json(op): Json<FsOp>,
) -> Result<Json<FsOutcome>, Failure> {
    let who = principal(&hub, &headers, &[SCOPE_TRANSFER])?;
    let row = resolve(&hub, &who, &endpoint)?;
    match hub.control.fs(&row.id, op, FS_WITHIN).await {
        Ok(FsOutcome::Failed { message }) => Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "operation_failed",
            message,
        )),
        Ok(outcome) => Ok(Json(outcome)),
        Err(e @ CallError::Offline) => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "endpoint_offline",
            format!("endpoint {} ({}): {e}", row.display_name, row.id),
        )),
        Err(e @ CallError::Timeout(_)) => Err(Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            e.to_string(),
        )),
        Err(e) => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "endpoint_unavailable",
            e.to_string(),
        )),
    }
}
