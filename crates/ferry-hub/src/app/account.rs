//! Account: who is signed in, and how the command line and scripts reach
//! the hub.

use super::view;
use super::{AppError, Nav, Visitor};
use crate::server::Hub;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// `GET /account`.
pub async fn show(State(hub): State<Arc<Hub>>, visitor: Visitor) -> Result<Response, AppError> {
    Ok(Html(view::account(&visitor.frame(Nav::Account), &hub.config.url)).into_response())
}
