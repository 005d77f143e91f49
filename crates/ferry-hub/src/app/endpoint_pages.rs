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
use crate::sharing::{self, GranteeName, NewPermission, SharingError};
use crate::store::EndpointRow;
use crate::tasks::Wake;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ferry_proto::share::ShareMode;
use ferry_proto::wire_path::WirePath;
use std::sync::Arc;

/// Most endpoints the page lists.
const LISTED: usize = 1000;

/// The user's endpoints, then those others share with them.
fn lines(hub: &Hub, visitor: &Visitor) -> Result<Vec<EndpointLine>, AppError> {
    let mut rows = hub
        .store
        .search_endpoints(Some(visitor.who.user_id), "", LISTED)?;
    rows.extend(
        hub.store
            .shared_with(visitor.who.user_id, "", crate::grants::now(), LISTED)?,
    );
    Ok(rows.into_iter().map(|row| line(hub, row)).collect())
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
) -> Result<Response, AppError> {
    endpoint_page_proposing(hub, visitor, row, confirm, None, notice, status)
}

fn endpoint_page_proposing(
    hub: &Hub,
    visitor: &Visitor,
    row: EndpointRow,
    confirm: bool,
    proposed: Option<&str>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    // Its owner sees (and changes) whom it is shared with.
    let owner = row.owner_id == visitor.who.user_id;
    let (permissions, history) = if owner {
        (
            hub.store
                .endpoint_permissions(&row.id, crate::grants::now())?,
            hub.store
                .audit_events(&row.id, 0, HISTORY)?
                .into_iter()
                .map(crate::audit::event_of)
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let shared = view::Sharing {
        proposed,
        permissions: &permissions,
        history: &history,
    };
    let nodes = endpoints::node_infos(hub, &row).map_err(|e| match e {
        RegistryError::Storage(e) => AppError::from(e),
        other => AppError::Internal(other.to_string()),
    })?;
    let line = line(hub, row);
    let page = view::endpoint(
        &visitor.frame(Nav::Endpoints),
        &line,
        &nodes,
        confirm,
        owner.then_some(&shared),
        notice,
    );
    Ok((status, Html(page)).into_response())
}

/// Audit log entries an endpoint's page shows (the newest).
const HISTORY: usize = 200;

/// `GET /endpoints/{endpoint}`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesEndpoints>,
    Path(endpoint): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let row = find(&hub, &visitor, &endpoint, Action::SeeEndpoint)?;
    let proposed = query
        .iter()
        .find(|(k, _)| k == "share")
        .map(|(_, v)| v.as_str());
    endpoint_page_proposing(&hub, &visitor, row, false, proposed, None, StatusCode::OK)
}

fn failed(
    hub: &Hub,
    visitor: &Visitor,
    row: EndpointRow,
    e: RegistryError,
) -> Result<Response, AppError> {
    match Said::from(e) {
        Said::Sentence(s) => endpoint_page(
            hub,
            visitor,
            row,
            false,
            Some(Notice::Error(s)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
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
            endpoint_page(
                &hub,
                &visitor,
                row,
                false,
                Some(Notice::Done("Renamed.".into())),
                StatusCode::OK,
            )
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
        return endpoint_page(&hub, &visitor, row, true, None, StatusCode::OK);
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

/// `POST /endpoints/{endpoint}/permissions`: `Share`.
pub async fn share(
    State(hub): State<Arc<Hub>>,
    Path(endpoint): Path<String>,
    Posted {
        visitor, fields, ..
    }: Posted<ManagesEndpoints>,
) -> Result<Response, AppError> {
    let row = find(&hub, &visitor, &endpoint, Action::ManageEndpoint)?;
    let with = fields.get("with").unwrap_or("").trim();
    let grantee = match with.strip_prefix("group:") {
        Some(group) => GranteeName::Group(group.trim().to_string()),
        None if with == "everyone" => GranteeName::AllAuthenticated,
        None => GranteeName::Identity(with.to_string()),
    };
    let mode = match fields.get("mode") {
        Some("rw") => ShareMode::ReadWrite,
        _ => ShareMode::Read,
    };
    let path =
        WirePath::decode(fields.get("path").unwrap_or("").trim()).map_err(|_| AppError::BadForm)?;
    let created = sharing::create_permission(
        &hub,
        &visitor.who,
        NewPermission {
            endpoint: row.id.clone(),
            path,
            mode,
            grantee,
            expires: None,
        },
    )
    .await;
    let notice = match created {
        Ok(p) => Notice::Done(format!(
            "Shared {} with {}.",
            view::shown_name(&p.path),
            if p.grantee.name().is_empty() {
                "everyone signed in"
            } else {
                p.grantee.name()
            }
        )),
        Err(SharingError::Storage(e)) => return Err(e.into()),
        Err(SharingError::Endpoint(e)) => match Said::from(e) {
            Said::Sentence(s) => Notice::Error(s),
            Said::Page(e) => return Err(e),
        },
        Err(e) => Notice::Error(super::sentence(&e.to_string())),
    };
    let status = if matches!(notice, Notice::Error(_)) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let row = find(&hub, &visitor, &row.id, Action::ManageEndpoint)?;
    endpoint_page(&hub, &visitor, row, false, Some(notice), status)
}

/// `POST /endpoints/{endpoint}/permissions/{permission}/delete`:
/// `Stop sharing`. Tasks that used it fail at once.
pub async fn unshare(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Path((endpoint, permission)): Path<(String, String)>,
    Posted { visitor, .. }: Posted<ManagesEndpoints>,
) -> Result<Response, AppError> {
    let row = find(&hub, &visitor, &endpoint, Action::ManageEndpoint)?;
    let notice = match sharing::delete_permission(&*hub.store, &visitor.who, &row.id, &permission) {
        Ok(failed) => {
            if !failed.is_empty() {
                hub.tasks_failed(&failed);
                if let Some(Extension(wake)) = wake {
                    wake.wake();
                }
            }
            Notice::Done(format!(
                "No longer shared.{}",
                match failed.len() {
                    0 => String::new(),
                    1 => " A task that used it has stopped.".into(),
                    n => format!(" {n} tasks that used it have stopped."),
                }
            ))
        }
        Err(SharingError::Storage(e)) => return Err(e.into()),
        Err(e) => Notice::Error(super::sentence(&e.to_string())),
    };
    endpoint_page(&hub, &visitor, row, false, Some(notice), StatusCode::OK)
}
