//! Submitting, finding and canceling tasks: what the REST API, the web
//! pages and the admin CLI call alike, so each rule of a submission, a
//! lookup and a cancel is in one place. Every object is looked up through
//! [`crate::authz::authorize`] ([`find`], [`crate::endpoints::find`]);
//! this decides what the request does.
//! The scheduler then takes it from the store: a canceled task leaves its
//! ACTIVE set and it tells both endpoints, with the attempt.

use crate::audit;
use crate::authz::{Action, Refusal, Resource, authorize, authorize_paths};
use crate::endpoints::{self, RegistryError};
use crate::grants::Principal;
use crate::store::{EndpointRow, NewTask, Storage, StoreError, TaskRow};
use crate::tasks;
use ferry_proto::task::{
    Capability, MAX_CAPABILITY, MAX_ITEM_PATH, MAX_LABEL, MAX_TASK_ITEMS, SubmitTask, TaskStatus,
};
use ferry_proto::wire_path::WirePath;

/// Furthest deadline accepted, in seconds from now.
pub const MAX_DEADLINE: i64 = 366 * 86_400;
/// How far in the past a submitted deadline may lie (seconds).
pub const DEADLINE_GRACE: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TaskServiceError {
    /// The submission itself is wrong; the text says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// No task of that id (or prefix) among those the principal may see.
    #[error("no task {0:?} among yours")]
    NotFound(String),
    /// A prefix that names several of the principal's tasks.
    #[error("task id prefix {prefix:?} is ambiguous: it matches {listed}; give more of the id")]
    Ambiguous { prefix: String, listed: String },
    /// The principal's grant does not cover the action.
    #[error(transparent)]
    Refused(Refusal),
    /// An endpoint the submission names could not be used.
    #[error(transparent)]
    Endpoint(#[from] RegistryError),
    /// An endpoint of the submission was revoked (or deleted).
    #[error("endpoint '{0}' was revoked; set its machine up again with `ferry -setup --force`")]
    Revoked(String),
    /// The task ended before the cancel: it keeps its end.
    #[error("task {id} already ended: {status}")]
    Ended { id: String, status: TaskStatus },
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Checks `submit` and records it for `who`, who must be allowed to use
/// both endpoints; returns the new task's id. The scheduler starts it once
/// both are connected.
/// A submission's task: made now, or made before with the same
/// submission id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: String,
    pub created: bool,
}

pub fn submit(
    store: &dyn Storage,
    registry: &crate::control::Registry,
    who: &Principal,
    submit: SubmitTask,
    now: i64,
) -> Result<Submitted, TaskServiceError> {
    // A submission id seen before answers its task, whatever else has
    // changed since (the endpoints may be offline now): the client only
    // retries what it may not have heard the answer to.
    let submission_id = match &submit.submission_id {
        None => None,
        Some(given) => {
            let id = uuid::Uuid::try_parse(given).map_err(|_| {
                TaskServiceError::Invalid(format!(
                    "submission_id {:?} is not a UUID; make one, or ask GET /api/v1/submission_id",
                    given.chars().take(64).collect::<String>()
                ))
            })?;
            let id = id.hyphenated().to_string();
            if let Some(task) = store.task_by_submission(who.user_id, &id)? {
                return Ok(Submitted {
                    task_id: task.id,
                    created: false,
                });
            }
            Some(id)
        }
    };
    let Checked {
        source,
        destination,
        source_grant,
        destination_grant,
    } = check(store, who, &submit, now)?;
    let (source, destination) = (&source, &destination);
    if let Some(hook) = &submit.options.on_success {
        check_hook(registry, destination, hook)?;
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
        notify: submit.notify.unwrap_or_default(),
        submission_id: submission_id.clone(),
    };
    let count = task.items.len();
    let described = format!(
        "{} item{} from '{}' to '{}'",
        count,
        if count == 1 { "" } else { "s" },
        source.display_name,
        destination.display_name
    );
    match store.create_task(&task, tasks::code::SUBMITTED, &described) {
        Ok(()) => {}
        // The same id, submitted at the same time: the other made it.
        Err(StoreError::Conflict { .. }) if submission_id.is_some() => {
            let id = submission_id.as_deref().unwrap_or_default();
            if let Some(task) = store.task_by_submission(who.user_id, id)? {
                return Ok(Submitted {
                    task_id: task.id,
                    created: false,
                });
            }
            return Err(StoreError::Conflict {
                what: "a task with this submission id",
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    for (side, grant) in [
        ("source", &source_grant),
        ("destination", &destination_grant),
    ] {
        if let Some(permission) = grant {
            store.put_task_grant(&task.id, side, permission)?;
        }
    }
    tracing::info!(task = %task.id, owner = %who.user_name, "task submitted: {described}");
    Ok(Submitted {
        task_id: task.id,
        created: true,
    })
}

/// A submission `who` may make, with the endpoints it names and the
/// permission each side acts under (none on the user's own endpoint).
pub struct Checked {
    pub source: EndpointRow,
    pub destination: EndpointRow,
    pub source_grant: Option<String>,
    pub destination_grant: Option<String>,
}

/// Every rule a submission must pass, without recording anything: what
/// [`submit`] asks, and what a timer asks when it is created (each of its
/// runs is then submitted, and so asked again).
pub fn check(
    store: &dyn Storage,
    who: &Principal,
    submit: &SubmitTask,
    now: i64,
) -> Result<Checked, TaskServiceError> {
    authorize(who, Action::SubmitTask, Resource::Any).map_err(TaskServiceError::Refused)?;
    check_submission(submit, now)?;
    let (source, source_reach) =
        endpoints::find_with_access(store, who, &submit.source_endpoint, Action::UseEndpoint)?;
    let (destination, destination_reach) = endpoints::find_with_access(
        store,
        who,
        &submit.destination_endpoint,
        Action::UseEndpoint,
    )?;
    // On someone else's endpoint the task acts under one permission per
    // side that covers every path it reads (source) or writes (destination).
    let reads: Vec<(&[u8], bool)> = submit
        .items
        .iter()
        .map(|i| (i.source.as_bytes(), false))
        .collect();
    let writes: Vec<(&[u8], bool)> = submit
        .items
        .iter()
        .map(|i| (i.destination.as_bytes(), true))
        .collect();
    // A grantee's refused task is in the endpoint owner's audit log (by
    // its first path: a batch may name thousands).
    let refused =
        |endpoint: &EndpointRow, paths: &[(&[u8], bool)], verb: &str, refusal: Refusal| {
            if !matches!(refusal, Refusal::Hidden) {
                let entry = audit::Entry::new(
                    audit::action::REFUSED,
                    paths.first().map_or(&b""[..], |p| p.0),
                )
                .detail(format!(
                    "transfer {verb} this endpoint, {} item(s): {refusal}",
                    paths.len()
                ));
                audit::record_done(store, now, &endpoint.id, audit::Actor::of(who), &[entry]);
            }
            TaskServiceError::Refused(refusal)
        };
    let source_grant = authorize_paths(who, &source, &source_reach, &reads)
        .map_err(|r| refused(&source, &reads, "from", r))?
        .map(|p| p.id.clone());
    let destination_grant = authorize_paths(who, &destination, &destination_reach, &writes)
        .map_err(|r| refused(&destination, &writes, "to", r))?
        .map(|p| p.id.clone());
    for endpoint in [&source, &destination] {
        if endpoint.revoked {
            return Err(TaskServiceError::Revoked(endpoint.display_name.clone()));
        }
    }
    Ok(Checked {
        source,
        destination,
        source_grant,
        destination_grant,
    })
}

/// Whether the destination offers the hook a submission names, as far as
/// its hello said: a connected endpoint that names other hooks, or none
/// (an older ferry), refuses it now. Of an endpoint not connected the hub
/// knows nothing: the destination checks when the attempt begins, and
/// fails the task before data moves if it has no such hook.
fn check_hook(
    registry: &crate::control::Registry,
    destination: &EndpointRow,
    hook: &str,
) -> Result<(), TaskServiceError> {
    let name = &destination.display_name;
    match registry.hooks(&destination.id) {
        None => Ok(()),
        Some(None) => Err(bad(format!(
            "endpoint '{name}' runs an older ferry that cannot run hooks, so not '{hook}' (--on-success); upgrade it"
        ))),
        Some(Some(hooks)) if hooks.iter().any(|h| h == hook) => Ok(()),
        Some(Some(hooks)) => Err(bad(format!(
            "endpoint '{name}' has no hook named '{hook}' (--on-success); its endpoint.toml configures {}",
            ferry_proto::task::hook_list(&hooks)
        ))),
    }
}

/// Which endpoint an ACTIVE task waits for, if one of its two is not
/// connected: the words the API's `waiting_for` and the task page show.
pub fn waiting_for(registry: &crate::control::Registry, row: &TaskRow) -> Option<String> {
    if row.status != TaskStatus::Active {
        return None;
    }
    [
        (&row.source_id, &row.source_name),
        (&row.destination_id, &row.destination_name),
    ]
    .into_iter()
    .find(|(id, _)| !registry.is_connected(id))
    .map(|(_, name)| format!("endpoint '{name}' is not connected to the hub"))
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

fn bad(message: impl Into<String>) -> TaskServiceError {
    TaskServiceError::Invalid(message.into())
}

fn check_path(which: &str, index: usize, path: &WirePath) -> Result<(), TaskServiceError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(bad(format!(
            "item {}: the {which} path {path:?} is not absolute: start it with / (or /~/ for the endpoint owner's home)",
            index + 1,
            path = path.to_string()
        )));
    }
    if bytes.len() > MAX_ITEM_PATH {
        return Err(bad(format!(
            "item {}: the {which} path is longer than {MAX_ITEM_PATH} bytes",
            index + 1
        )));
    }
    if bytes.contains(&0) {
        return Err(bad(format!(
            "item {}: the {which} path contains a NUL byte",
            index + 1
        )));
    }
    Ok(())
}

/// Everything about a submission that does not need the store.
fn check_submission(submit: &SubmitTask, now: i64) -> Result<(), TaskServiceError> {
    if submit.items.is_empty() {
        return Err(bad("the task lists nothing to transfer"));
    }
    if submit.items.len() > MAX_TASK_ITEMS {
        return Err(bad(format!(
            "the task lists {} items; at most {MAX_TASK_ITEMS} fit one task: split it",
            submit.items.len()
        )));
    }
    for (i, item) in submit.items.iter().enumerate() {
        check_path("source", i, &item.source)?;
        check_path("destination", i, &item.destination)?;
    }
    if let Some(label) = &submit.label {
        if label.len() > MAX_LABEL || label.chars().any(char::is_control) {
            return Err(bad(format!(
                "the label is not allowed: use at most {MAX_LABEL} bytes without control characters"
            )));
        }
    }
    if let Some(deadline) = submit.deadline {
        // A deadline a moment in the past is a short relative one (`--deadline
        // 1s`) rounded to whole seconds on a slower path, or a client clock a
        // little behind: the task is taken and fails at once, as it would
        // have a moment later. Only a deadline clearly past is a mistake.
        if deadline < now - DEADLINE_GRACE {
            return Err(bad("the deadline has already passed"));
        }
        if deadline > now + MAX_DEADLINE {
            return Err(bad("the deadline is more than a year away"));
        }
    }
    if submit.options.streams.is_some_and(|n| n == 0 || n > 64) {
        return Err(bad("streams must be between 1 and 64"));
    }
    // Both endpoints compile the filters; what they would refuse is refused here.
    ferry_proto::filter::FilterSet::new(&submit.options.filters).map_err(|e| bad(e.to_string()))?;
    if let Some(hook) = &submit.options.on_success {
        ferry_proto::task::check_hook_name(hook).map_err(|e| bad(format!("on_success: {e}")))?;
    }
    if let Some(rate) = submit.options.bwlimit {
        ferry_proto::rate::check_rate(rate).map_err(|e| bad(format!("bwlimit: {e}")))?;
    }
    // The capability carries the items to both endpoints, base64 in a
    // control frame: refuse here what could never be sent.
    let body = Capability {
        task_id: uuid::Uuid::nil().to_string(),
        attempt: u32::MAX,
        source_endpoint: uuid::Uuid::nil().to_string(),
        destination_endpoint: uuid::Uuid::nil().to_string(),
        items: submit.items.clone(),
        options: submit.options.clone(),
        issued: i64::MAX,
        expires: i64::MAX,
        source_grant: None,
        destination_grant: None,
        label: submit.label.clone(),
        shard: Some(ferry_proto::task::Shard {
            index: u32::MAX,
            count: u32::MAX,
            split: true,
            large: true,
        }),
    }
    .body();
    if body.len().div_ceil(3) * 4 + 512 > MAX_CAPABILITY {
        return Err(bad(
            "the task's paths add up to more than one task can carry; split it into several tasks",
        ));
    }
    Ok(())
}

/// The fewest hex digits a task id prefix must give, as git asks of
/// abbreviated commit ids.
const MIN_TASK_PREFIX: usize = 4;
/// Candidates an ambiguous prefix names.
const AMBIGUOUS_LISTED: usize = 10;

/// A task `who` may `action`, named by its id or a unique prefix of it:
/// the one place every route and page resolves what the user typed.
/// Someone else's task is as absent as a missing one.
pub fn find(
    store: &dyn Storage,
    who: &Principal,
    id: &str,
    action: Action,
) -> Result<TaskRow, TaskServiceError> {
    let not_found = || TaskServiceError::NotFound(id.to_string());
    let allowed = |row: TaskRow| match authorize(who, action, Resource::Task(&row)) {
        Ok(()) => Ok(row),
        Err(Refusal::Hidden) => Err(not_found()),
        Err(refusal) => Err(TaskServiceError::Refused(refusal)),
    };
    if let Some(row) = store.task(id)? {
        return allowed(row);
    }
    let prefix = id.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(not_found());
    }
    let digits = prefix.bytes().filter(u8::is_ascii_hexdigit).count();
    if digits < MIN_TASK_PREFIX {
        return Err(bad(format!(
            "task id prefix {id:?} is too short: give at least {MIN_TASK_PREFIX} characters of the id"
        )));
    }
    let mut found = store.tasks_with_prefix(who.user_id, &prefix, AMBIGUOUS_LISTED + 1)?;
    match found.len() {
        0 => Err(not_found()),
        1 => allowed(found.remove(0)),
        n => {
            let more = if n > AMBIGUOUS_LISTED {
                " and more"
            } else {
                ""
            };
            let listed = found
                .iter()
                .take(AMBIGUOUS_LISTED)
                .map(|t| match &t.label {
                    Some(label) => format!("{} ({}, {label:?})", t.id, t.status),
                    None => format!("{} ({})", t.id, t.status),
                })
                .collect::<Vec<_>>()
                .join(", ");
            Err(TaskServiceError::Ambiguous {
                prefix: id.to_string(),
                listed: format!("{listed}{more}"),
            })
        }
    }
}
