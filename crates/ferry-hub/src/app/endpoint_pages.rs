//! Endpoints: the user's endpoints, connected or not; `Create endpoint`
//! with its one-time setup key; an endpoint's page to rename or revoke it.
//! Every change goes through [`crate::endpoints`], as the REST API's do.

use super::view::{self, EndpointLine, NewKey};
use super::{AppError, Nav, Notice, Posted, Said, Visitor};
use crate::authz::Action;
use crate::authz::{CreatesEndpoints, ManagesEndpoints, SeesEndpoints};
use crate::endpoints::{self, RegistryError};
use crate::page_auth::SignedIn;
use crate::server::Hub;
use crate::store::EndpointRow;
use crate::tasks::Wake;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// Most endpoints the page lists.
const LISTED: usize = 1000;

fn lines(hub: &Hub, visitor: &Visitor) -> Result<Vec<EndpointLine>, AppError> {
    Ok(hub
        .store
        .search_endpoints(Some(visitor.who.user_id), "", LISTED)?
        .into_iter()
        .map(|row| line(hub, row))
        .collect())
}

fn line(hub: &Hub, row: EndpointRow) -> EndpointLine {
    EndpointLine {
        link: hub.control.link(&row.id),
        row,
    }
}

fn list_page(
    hub: &Hub,
    visitor: &Visitor,
    new_key: Option<&NewKey>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lines = lines(hub, visitor)?;
    let page = view::endpoints(&visitor.frame(Nav::Endpoints), &lines, new_key, notice);
    Ok((status, Html(page)).into_response())
}

/// `GET /endpoints`.
pub async fn list(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    list_page(&hub, &visitor, None, None, StatusCode::OK)
}

/// A name for an endpoint created without one: `endpoint-` and 8 hex
/// digits, unlikely to be taken.
fn made_up_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("endpoint-{}", &id[..8])
}

/// `POST /endpoints/new`: `Create endpoint`. The key is shown on this
/// answer only; the hub keeps its hash.
pub async fn create(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<CreatesEndpoints>,
) -> Result<Response, AppError> {
    let name = match fields.get("name").map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => made_up_name(),
    };
    // The extractor checked the session covers creating endpoints.
    let created = endpoints::create(
        &*hub.store,
        &hub.config.url,
        hub.tls_ca_sha256,
        visitor.who.user_id,
        &name,
        endpoints::SETUP_KEY_TTL,
    );
    match created {
        Ok(created) => {
            tracing::info!(endpoint = %created.id, owner = %visitor.who.user_name, "endpoint created");
            let key = NewKey {
                name: created.display_name,
                key: created.setup_key,
            };
            list_page(&hub, &visitor, Some(&key), None, StatusCode::CREATED)
        }
        Err(e) => match Said::from(e) {
            Said::Sentence(s) => list_page(
                &hub,
                &visitor,
                None,
                Some(Notice::Error(s)),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            Said::Page(e) => Err(e),
        },
    }
}

fn find(
    hub: &Hub,
    visitor: &Visitor,
    endpoint: &str,
    action: Action,
) -> Result<EndpointRow, AppError> {
    endpoints::find(&*hub.store, &visitor.who, endpoint, action).map_err(|e| match e {
        RegistryError::Storage(e) => AppError::from(e),
        _ => AppError::NotFound(
            "There is no such endpoint among yours: open yours from Endpoints.".into(),
        ),
    })
}

fn endpoint_page(
    hub: &Hub,
    visitor: &Visitor,
    row: EndpointRow,
    confirm: bool,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let line = line(hub, row);
    let page = view::endpoint(&visitor.frame(Nav::Endpoints), &line, confirm, notice);
    (status, Html(page)).into_response()
}

/// `GET /endpoints/{endpoint}`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Path(endpoint): Path<String>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let row = find(&hub, &visitor, &endpoint, Action::SeeEndpoint)?;
    Ok(endpoint_page(
        &hub,
        &visitor,
        row,
        false,
        None,
        StatusCode::OK,
    ))
}

fn failed(
    hub: &Hub,
    visitor: &Visitor,
    row: EndpointRow,
    e: RegistryError,
) -> Result<Response, AppError> {
    match Said::from(e) {
        Said::Sentence(s) => Ok(endpoint_page(
            hub,
            visitor,
            row,
            false,
            Some(Notice::Error(s)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
        Said::Page(e) => Err(e),
    }
}

/// `POST /endpoints/{endpoint}/rename`.
pub async fn rename(
    State(hub): State<Arc<Hub>>,
    Path(endpoint): Path<String>,
    Posted {
        visitor, fields, ..
    }: Posted<ManagesEndpoints>,
) -> Result<Response, AppError> {
    let row = find(&hub, &visitor, &endpoint, Action::ManageEndpoint)?;
    let name = fields.get("name").unwrap_or("").trim().to_string();
    match endpoints::rename(&*hub.store, &row, &name) {
        Ok(()) => {
            tracing::info!(endpoint = %row.id, by = %visitor.who.user_name, from = %row.display_name, to = %name, "endpoint renamed");
            let row = find(&hub, &visitor, &row.id, Action::SeeEndpoint)?;
            Ok(endpoint_page(
                &hub,
                &visitor,
                row,
                false,
                Some(Notice::Done("Renamed.".into())),
                StatusCode::OK,
            ))
        }
        Err(e) => failed(&hub, &visitor, row, e),
    }
}

/// `POST /endpoints/{endpoint}/revoke`: asks first, then deletes it (its
/// certificate is refused from then on, as a revoked one's).
pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Path(endpoint): Path<String>,
    Posted {
        visitor, fields, ..
    }: Posted<ManagesEndpoints>,
) -> Result<Response, AppError> {
    let row = find(&hub, &visitor, &endpoint, Action::ManageEndpoint)?;
    if fields.get("confirm") != Some("yes") {
        return Ok(endpoint_page(
            &hub,
            &visitor,
            row,
            true,
            None,
            StatusCode::OK,
        ));
    }
    match endpoints::delete(&*hub.store, &row) {
        Ok(()) => {
            tracing::info!(endpoint = %row.id, by = %visitor.who.user_name, name = %row.display_name, "endpoint deleted");
            // The scheduler's sweep tells connected endpoints of new revocations.
            if let Some(Extension(wake)) = wake {
                wake.wake();
            }
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/endpoints")]).into_response())
        }
        Err(e) => failed(&hub, &visitor, row, e),
    }
}
