//! Submitting and canceling tasks: what the REST API, the web pages and
//! the admin CLI call alike, so each rule of a submission and a cancel is
//! in one place. Callers have authorized the principal on the endpoints
//! and the task ([`crate::authz`]); this decides what the request does.
//! The scheduler then takes it from the store: a canceled task leaves its
//! ACTIVE set and it tells both endpoints, with the attempt.

use crate::grants::Principal;
use crate::store::{EndpointRow, NewTask, Storage, StoreError, TaskRow};
use crate::tasks;
use ferry_proto::task::{SubmitTask, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum TaskServiceError {
    /// An endpoint of the submission was revoked (or deleted).
    #[error("endpoint '{0}' was revoked; set its machine up again with `ferry -setup --force`")]
    Revoked(String),
    /// The task ended before the cancel: it keeps its end.
    #[error("task {id} already ended: {status}")]
    Ended { id: String, status: TaskStatus },
    #[error("the task cannot be stored: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Records a checked submission from `source` to `destination`; returns
/// the new task's id. The scheduler starts it once both are connected.
pub fn submit(
    store: &dyn Storage,
    who: &Principal,
    source: &EndpointRow,
    destination: &EndpointRow,
    submit: SubmitTask,
    now: i64,
) -> Result<String, TaskServiceError> {
    for endpoint in [source, destination] {
        if endpoint.revoked {
            return Err(TaskServiceError::Revoked(endpoint.display_name.clone()));
        }
    }
    let task = NewTask {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: who.user_id,
        source_id: source.id.clone(),
        destination_id: destination.id.clone(),
        items: submit.items,
        options: submit.options,
        label: submit.label.filter(|l| !l.is_empty()),
        deadline: submit.deadline,
        created: now,
    };
    let count = task.items.len();
    let described = format!(
        "{} item{} from '{}' to '{}'",
        count,
        if count == 1 { "" } else { "s" },
        source.display_name,
        destination.display_name
    );
    store.create_task(&task, tasks::code::SUBMITTED, &described)?;
    tracing::info!(task = %task.id, owner = %who.user_name, "task submitted: {described}");
    Ok(task.id)
}

/// Cancels `task` for `who`; canceling a canceled task again is no error.
/// Returns whether this call canceled it (the caller wakes the
/// scheduler and whoever waits on the task).
pub fn cancel(
    store: &dyn Storage,
    who: &Principal,
    task: &TaskRow,
    now: i64,
) -> Result<bool, TaskServiceError> {
    let canceled = store.finish_task(&task.id, TaskStatus::Canceled, None, None, now)?;
    if canceled {
        store.add_task_event(
            &task.id,
            tasks::code::CANCELED,
            &format!("canceled by {}", who.user_name),
            now,
            true,
        )?;
        tracing::info!(task = %task.id, by = %who.user_name, "task canceled");
        return Ok(true);
    }
    match store.task(&task.id)?.map(|t| t.status) {
        Some(TaskStatus::Canceled) => Ok(false),
        Some(status) => Err(TaskServiceError::Ended {
            id: task.id.clone(),
            status,
        }),
        None => Err(TaskServiceError::Storage(StoreError::NotFound)),
    }
}
