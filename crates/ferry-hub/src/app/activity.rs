//! Activity: the user's tasks, newest first, and each task's page with
//! its live progress, events and `Cancel`; and the user's timers, whose
//! runs are tasks here. Tasks are found through
//! [`task_service::find`], so through `authorize`: someone else's task
//! is a page that says there is no such task.

use super::view;
use super::{AppError, Nav, Notice, Posted, Said, Visitor};
use crate::authz::Action;
use crate::authz::{CancelsTasks, SeesTasks};
use crate::grants;
use crate::page_auth::SignedIn;
use crate::server::Hub;
use crate::store::{MAX_TASK_EVENTS, TaskRow};
use crate::task_service::{self, TaskServiceError};
use crate::tasks::Wake;
use crate::timers::{self, TimerError};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::Markup;
use std::sync::Arc;

/// Tasks the Activity page lists.
const LISTED: usize = 200;

/// `GET /activity`.
pub async fn list(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesTasks>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let rows = hub.store.tasks_of(visitor.who.user_id, LISTED)?;
    Ok(Html(view::activity(
        &visitor.frame(Nav::Activity),
        &rows,
        grants::now(),
    ))
    .into_response())
}

/// `GET /timers`: the user's timers.
pub async fn timers(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesTasks>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    timers_page(&hub, &visitor, None)
}

fn timers_page(hub: &Hub, visitor: &Visitor, notice: Option<Notice>) -> Result<Response, AppError> {
    let rows = timers::list(&*hub.store, &visitor.who).map_err(timer_error)?;
    Ok(Html(view::timers(&visitor.frame(Nav::Activity), &rows, notice)).into_response())
}

fn timer_error(e: TimerError) -> AppError {
    match e {
        TimerError::Storage(e) => AppError::from(e),
        _ => AppError::NotFound(
            "There is no such timer among yours: open your timers from Activity.".into(),
        ),
    }
}

/// `POST /timers/{timer}/delete`.
pub async fn delete_timer(
    State(hub): State<Arc<Hub>>,
    Path(timer): Path<String>,
    Posted { visitor, .. }: Posted<CancelsTasks>,
) -> Result<Response, AppError> {
    let row =
        timers::find(&*hub.store, &visitor.who, &timer, Action::CancelTask).map_err(timer_error)?;
    timers::delete(&*hub.store, &visitor.who, &row.timer.id).map_err(timer_error)?;
    let name = row.timer.label.unwrap_or(row.timer.id);
    timers_page(
        &hub,
        &visitor,
        Some(Notice::Done(format!(
            "Timer {name} deleted: it makes no more runs."
        ))),
    )
}

fn find(hub: &Hub, visitor: &Visitor, id: &str, action: Action) -> Result<TaskRow, AppError> {
    task_service::find(&*hub.store, &visitor.who, id, action).map_err(|e| match e {
        TaskServiceError::Storage(e) => AppError::from(e),
        _ => AppError::NotFound(
            "There is no such task among yours: open your tasks from Activity.".into(),
        ),
    })
}

fn live_part(hub: &Hub, visitor: &Visitor, row: &TaskRow) -> Result<Markup, AppError> {
    let events = hub.store.task_events(&row.id, MAX_TASK_EVENTS as usize)?;
    Ok(view::task_live(
        visitor.csrf(),
        row,
        task_service::waiting_for(&hub.control, row).as_deref(),
        &events,
        grants::now(),
    ))
}

fn task_page(
    hub: &Hub,
    visitor: &Visitor,
    row: &TaskRow,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let live = live_part(hub, visitor, row)?;
    let page = view::task_page(&visitor.frame(Nav::Activity), row, live, notice);
    Ok((status, Html(page)).into_response())
}

/// `GET /activity/{task}`.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesTasks>,
    Path(task): Path<String>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let row = find(&hub, &visitor, &task, Action::SeeTask)?;
    task_page(&hub, &visitor, &row, None, StatusCode::OK)
}

/// `GET /activity/{task}/live`: the part of the task's page that changes,
/// for its script to put in place while the task runs.
pub async fn live(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<SeesTasks>,
    Path(task): Path<String>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let row = find(&hub, &visitor, &task, Action::SeeTask)?;
    let part = live_part(&hub, &visitor, &row)?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        part.into_string(),
    )
        .into_response())
}

/// `POST /activity/{task}/cancel`.
pub async fn cancel(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Path(task): Path<String>,
    Posted { visitor, .. }: Posted<CancelsTasks>,
) -> Result<Response, AppError> {
    let row = find(&hub, &visitor, &task, Action::CancelTask)?;
    match task_service::cancel(&*hub.store, &visitor.who, &row, grants::now()) {
        Ok(canceled) => {
            if canceled {
                hub.task_ended.notify_waiters();
                if let Some(Extension(wake)) = wake {
                    wake.wake();
                }
            }
            let location = format!("/activity/{}", row.id);
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
        }
        Err(e) => {
            let row = find(&hub, &visitor, &row.id, Action::SeeTask)?;
            match Said::from(e) {
                Said::Sentence(s) => task_page(
                    &hub,
                    &visitor,
                    &row,
                    Some(Notice::Error(s)),
                    StatusCode::CONFLICT,
                ),
                Said::Page(e) => Err(e),
            }
        }
    }
}
