//! `/api/v1/apps` (the caller's registered apps) and `/api/v1/consents`
//! (the apps the caller let act for them): thin handlers over [`crate::apps`].

use super::{Caller, Failure, LIST_DEFAULT, PageQuery, Paged, bad};
use crate::apps::{self, App, AppError};
use crate::authz::ManagesApps;
use crate::grants;
use crate::server::Hub;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use ferry_proto::api::{AppDeleted, AppInfo, ConsentInfo, CreateApp};
use std::sync::Arc;

// The routes are declared in `api::routes`, where the API's walk reads them.

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(m) => bad(m),
            AppError::NotFound(_) => {
                Failure::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            AppError::Refused(r) => Failure::from(r),
            AppError::Randomness(_) => Failure::internal(e),
            AppError::Storage(e) => Failure::from(e),
        }
    }
}

pub(crate) fn app_info(app: App) -> AppInfo {
    AppInfo {
        client_id: app.row.client_id,
        name: app.row.name,
        kind: app.row.kind.as_str().to_string(),
        redirect_uris: app.row.redirect_uris,
        identity: app.identity,
        client_secret: app.secret,
    }
}

pub(super) async fn create_app(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Json(body): Json<CreateApp>,
) -> Result<(StatusCode, Json<AppInfo>), Failure> {
    let kind = apps::parse_kind(&body.kind)?;
    let app = apps::create(
        &*hub.store,
        &hub.identity_rules,
        &who,
        &body.name,
        kind,
        &body.redirect_uris,
        grants::now(),
    )?;
    Ok((StatusCode::CREATED, Json(app_info(app))))
}

pub(super) async fn list_apps(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<AppInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let apps = apps::list(&*hub.store, &hub.identity_rules, &who)?
        .into_iter()
        .map(app_info)
        .collect();
    Ok(window.page(apps, &hub, &uri))
}

pub(super) async fn show_app(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Path(id): Path<String>,
) -> Result<Json<AppInfo>, Failure> {
    Ok(Json(app_info(apps::show(
        &*hub.store,
        &hub.identity_rules,
        &who,
        &id,
    )?)))
}

pub(super) async fn rotate_secret(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Path(id): Path<String>,
) -> Result<Json<AppInfo>, Failure> {
    Ok(Json(app_info(apps::rotate_secret(
        &*hub.store,
        &hub.identity_rules,
        &who,
        &id,
    )?)))
}

pub(super) async fn delete_app(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Path(id): Path<String>,
) -> Result<Json<AppDeleted>, Failure> {
    apps::delete(&*hub.store, &hub.identity_rules, &who, &id)?;
    Ok(Json(AppDeleted { client_id: id }))
}

pub(super) async fn list_consents(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Query(page): Query<PageQuery>,
    uri: Uri,
) -> Result<Paged<ConsentInfo>, Failure> {
    let window = page.window(LIST_DEFAULT, LIST_DEFAULT)?;
    let consents = apps::consents(&*hub.store, &who)?
        .into_iter()
        .map(|c| ConsentInfo {
            client_id: c.client_id,
            name: c.client_name,
            scopes: c.scope.split_whitespace().map(str::to_string).collect(),
            created: c.created,
        })
        .collect();
    Ok(window.page(consents, &hub, &uri))
}

pub(super) async fn revoke_consent(
    State(hub): State<Arc<Hub>>,
    Caller(who, _): Caller<ManagesApps>,
    Path(id): Path<String>,
) -> Result<Json<AppDeleted>, Failure> {
    apps::revoke_consent(&*hub.store, &who, &id)?;
    Ok(Json(AppDeleted { client_id: id }))
}
