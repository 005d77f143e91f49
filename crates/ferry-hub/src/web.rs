//! The hub's HTTP side: web pages (login, consent, the copy-the-code page),
//! the OAuth2 endpoints, and the REST API routes.

use crate::server::Hub;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// Failed logins per account and per client address, for rate limiting.
#[derive(Debug, Default)]
pub struct LoginLimiter {}

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(ferry_proto::api::CA_CERT_PATH, get(ca_cert))
        .merge(crate::api::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hub)
}

async fn ca_cert(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], hub.tls_ca_pem.clone())
}
