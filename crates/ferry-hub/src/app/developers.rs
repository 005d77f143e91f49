//! Developers: the apps a user registered (native apps, portals, service
//! accounts), registering one, a new secret, deleting one; all through
//! [`crate::apps`], as `ferry app` and `/api/v1/apps` do.

use super::view::{self, Developers};
use super::{AppError, Nav, Notice, Posted, Visitor};
use crate::apps::{self, App};
use crate::authz::ManagesApps;
use crate::grants;
use crate::page_auth::SignedIn;
use crate::server::Hub;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

fn page(
    hub: &Hub,
    visitor: &Visitor,
    fresh: Option<&App>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let listed = apps::list(&*hub.store, &hub.identity_rules, &visitor.who).map_err(failed)?;
    let html = view::developers(
        &visitor.frame(Nav::Developers),
        &Developers {
            hub_url: &hub.config.url,
            apps: &listed,
            fresh,
            notice,
        },
    );
    Ok((status, Html(html)).into_response())
}

/// What a refusal of [`crate::apps`] is to a page: a sentence on the page
/// (`Ok`), or the page that fails whole.
fn said(e: apps::AppError) -> Result<String, AppError> {
    match e {
        apps::AppError::Invalid(m) => Ok(super::sentence(&m)),
        apps::AppError::NotFound(_) => Err(AppError::NotFound(
            "There is no such app among yours: it may have been deleted already.".into(),
        )),
        e => Err(failed(e)),
    }
}

fn failed(e: apps::AppError) -> AppError {
    match e {
        apps::AppError::Storage(e) => e.into(),
        e => AppError::Internal(e.to_string()),
    }
}

/// `GET /developers`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<ManagesApps>,
) -> Result<Response, AppError> {
    page(&hub, &Visitor::from(signed_in), None, None, StatusCode::OK)
}

/// `POST /developers/apps`: `Register app`.
pub async fn create(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<ManagesApps>,
) -> Result<Response, AppError> {
    let uris: Vec<String> = fields
        .get("redirect_uris")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let made = apps::parse_kind(fields.get("type").unwrap_or_default()).and_then(|kind| {
        apps::create(
            &*hub.store,
            &hub.identity_rules,
            &visitor.who,
            fields.get("name").unwrap_or_default(),
            kind,
            &uris,
            grants::now(),
        )
    });
    match made {
        Ok(app) => {
            let done = Notice::Done(format!("Registered {}.", app.row.name));
            page(&hub, &visitor, Some(&app), Some(done), StatusCode::CREATED)
        }
        Err(e) => page(
            &hub,
            &visitor,
            None,
            Some(Notice::Error(said(e)?)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

/// `POST /developers/apps/{app}/rotate-secret`: `New secret`.
pub async fn rotate_secret(
    State(hub): State<Arc<Hub>>,
    Path(client_id): Path<String>,
    Posted { visitor, .. }: Posted<ManagesApps>,
) -> Result<Response, AppError> {
    match apps::rotate_secret(&*hub.store, &hub.identity_rules, &visitor.who, &client_id) {
        Ok(app) => {
            let done = Notice::Done(format!(
                "New secret for {}: the old one no longer works.",
                app.row.name
            ));
            page(&hub, &visitor, Some(&app), Some(done), StatusCode::OK)
        }
        Err(e) => page(
            &hub,
            &visitor,
            None,
            Some(Notice::Error(said(e)?)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

/// `POST /developers/apps/{app}/delete`: `Delete`.
pub async fn delete(
    State(hub): State<Arc<Hub>>,
    Path(client_id): Path<String>,
    Posted { visitor, .. }: Posted<ManagesApps>,
) -> Result<Response, AppError> {
    match apps::delete(&*hub.store, &hub.identity_rules, &visitor.who, &client_id) {
        Ok(()) => page(
            &hub,
            &visitor,
            None,
            Some(Notice::Done(
                "Deleted: every token the app held is revoked.".into(),
            )),
            StatusCode::OK,
        ),
        Err(e) => page(
            &hub,
            &visitor,
            None,
            Some(Notice::Error(said(e)?)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}
