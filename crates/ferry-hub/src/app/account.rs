//! Account: who is signed in, and how the command line and scripts reach
//! the hub.

use super::view;
use super::{AppError, Nav, Visitor};
use crate::authz::SeesEndpoints;
use crate::page_auth::SignedIn;
use crate::server::Hub;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// `GET /account`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    Ok(Html(view::account(&visitor.frame(Nav::Account), &hub.config.url)).into_response())
}
