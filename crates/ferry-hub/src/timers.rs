//! Timers: recurring transfers. A timer holds a submission and a schedule
//! (an interval from a start, until a number of runs or a date); each due
//! time its run is submitted through [`task_service::submit`] as the
//! timer's owner, so a run is an ordinary task, checked as any other at
//! the moment it is made.
//!
//! [`decide`] is the schedule, with no I/O: given the timer, the time and
//! whether the previous run's task is still ACTIVE, it says whether to
//! wait, fire, skip or finish, and where `next_run` goes. The loop
//! ([`spawn`]) asks it for each due timer and acts only after claiming
//! the due time in the store ([`crate::store::TimerStore::claim_timer_run`],
//! a compare-and-set on `next_run`): two hubs on one database never both
//! fire a run, and a hub that was down across several due times makes one
//! catch-up run, not one per missed time.

use crate::authz::{Action, Refusal, Resource, authorize};
use crate::grants::{self, Principal};
use crate::server::Hub;
use crate::store::{NewTimer, Storage, StoreError, TaskEventRow, TimerRow, TimerStatus};
use crate::task_service::{self, TaskServiceError};
use crate::tasks;
use ferry_proto::api::SCOPE_TRANSFER;
use ferry_proto::task::{
    CreateTimer, MAX_LABEL, MAX_TIMER_INTERVAL, MIN_TIMER_INTERVAL, SubmitTask, TaskStatus,
};
use std::sync::Arc;
use std::time::Duration;

/// How often the loop looks for due timers: the resolution of a run's
/// start, and far below the shortest interval.
const TICK: Duration = Duration::from_secs(1);
/// Due timers one pass handles; the rest wait a tick.
const DUE_PER_PASS: usize = 100;
/// Timers one user may have.
pub const MAX_TIMERS_PER_USER: usize = 100;
/// Furthest ahead a start or stop date may lie (seconds from now).
const MAX_AHEAD: i64 = 5 * 366 * 86_400;
/// How far in the past a start may lie (a client clock a little behind).
const START_GRACE: i64 = 60;
/// Longest a run's own deadline may be.
const MAX_RUN_DEADLINE: i64 = 366 * 86_400;

/// Event codes a timer records.
pub mod code {
    /// A run made its task.
    pub const RUN: &str = "RUN";
    /// A due time passed over: the previous run was still ACTIVE.
    pub const SKIPPED: &str = "SKIPPED";
    /// A run's submission was refused (an endpoint deleted, a permission
    /// withdrawn...): no task, the timer goes on.
    pub const REFUSED: &str = "REFUSED";
    /// The timer made its last run or passed its stop date.
    pub const FINISHED: &str = "FINISHED";
    /// The timer was created.
    pub const CREATED: &str = "CREATED";
}

/// Whether an event code reports something that went wrong.
pub fn is_error(code: &str) -> bool {
    code == code::REFUSED
}

/// What to do with a timer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not due yet (or nothing left to do).
    Wait,
    /// Make the run due at `due`; then the timer is next due at `next`
    /// (finished when `None`). `missed` due times after `due` passed too
    /// (the hub was down): this one run stands for them all.
    Fire {
        due: i64,
        next: Option<i64>,
        missed: u64,
    },
    /// The previous run is still ACTIVE: pass over `due` to `next`.
    Skip { due: i64, next: Option<i64> },
    /// Nothing more to run: finish at `due`.
    Finish { due: i64 },
}

/// The schedule: what `timer` does at `now`, given whether its previous
/// run's task is still ACTIVE.
///
/// Runs keep to the grid `start + k * interval`; a timer late by more
/// than an interval (a hub that was down) makes one run and is next due
/// an interval after it, so it never fires twice to catch up.
pub fn decide(timer: &TimerRow, now: i64, previous_active: bool) -> Decision {
    let Some(due) = timer.next_run else {
        return Decision::Wait;
    };
    if timer.status != TimerStatus::Active || now < due {
        return Decision::Wait;
    }
    let t = &timer.timer;
    let interval = t.interval.max(1);
    let ran_out = t.stop_after_runs.is_some_and(|n| timer.runs >= n);
    let past_date = t.stop_after_date.is_some_and(|date| due > date);
    if ran_out || past_date {
        return Decision::Finish { due };
    }
    let mut next = due.saturating_add(interval);
    if next <= now {
        next = now.saturating_add(interval);
    }
    let missed = u64::try_from((now - due) / interval).unwrap_or(0);
    let beyond_date = t.stop_after_date.is_some_and(|date| next > date);
    if previous_active {
        let next = (!beyond_date).then_some(next);
        return Decision::Skip { due, next };
    }
    // A run that reaches `--stop-after-runs` finishes the timer once its
    // task is made (a refused run is not one of them).
    let next = (!beyond_date).then_some(next);
    Decision::Fire { due, next, missed }
}

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// The request itself is wrong; the text says how to fix it.
    #[error("{0}")]
    Invalid(String),
    #[error("no timer {0:?} among yours; list them with `ferry timer list`")]
    NotFound(String),
    /// The transfer it would run is refused.
    #[error(transparent)]
    Transfer(#[from] TaskServiceError),
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

fn bad(message: impl Into<String>) -> TimerError {
    TimerError::Invalid(message.into())
}

/// A run's task label: the timer's own label, or its id, and the run's number.
fn run_label(label: Option<&str>, id: &str, run: u64) -> String {
    let short = id.get(..8).unwrap_or(id);
    match label {
        Some(label) => format!("{label} (timer {short} run {run})"),
        None => format!("timer {short} run {run}"),
    }
}

/// Checks `create` as `who` would submit its transfer now and records the
/// timer; returns its id. Its first run is due at `start` (now by default).
pub fn create(
    store: &dyn Storage,
    who: &Principal,
    create: CreateTimer,
    now: i64,
) -> Result<String, TimerError> {
    authorize(who, Action::SubmitTask, Resource::Any).map_err(TimerError::Refused)?;
    let CreateTimer {
        transfer,
        interval,
        start,
        stop_after_runs,
        stop_after_date,
        run_deadline,
    } = create;
    if !(MIN_TIMER_INTERVAL..=MAX_TIMER_INTERVAL).contains(&interval) {
        return Err(bad(format!(
            "the interval must be between {MIN_TIMER_INTERVAL} seconds and {} days",
            MAX_TIMER_INTERVAL / 86_400
        )));
    }
    if transfer.deadline.is_some() {
        return Err(bad(
            "a timer's transfer has no deadline of its own: give each run's as run_deadline (seconds)",
        ));
    }
    let start = start.unwrap_or(now);
    if start < now - START_GRACE || start > now + MAX_AHEAD {
        return Err(bad(
            "the start must lie between now and five years from now",
        ));
    }
    if stop_after_runs == Some(0) {
        return Err(bad("stop after at least one run"));
    }
    if let Some(date) = stop_after_date {
        if date < start || date > now + MAX_AHEAD {
            return Err(bad(
                "the stop date must lie after the start, and within five years",
            ));
        }
    }
    if run_deadline.is_some_and(|d| !(1..=MAX_RUN_DEADLINE).contains(&d)) {
        return Err(bad("a run's deadline must be between 1 second and a year"));
    }
    let label = transfer.label.clone().filter(|l| !l.is_empty());
    let id = uuid::Uuid::new_v4().to_string();
    if run_label(label.as_deref(), &id, u64::MAX).len() > MAX_LABEL {
        return Err(bad(format!(
            "the label is too long for a timer: use at most {} bytes",
            MAX_LABEL - run_label(Some(""), &id, u64::MAX).len()
        )));
    }
    let checked = task_service::check(store, who, &transfer, now)?;
    if store.timers_of(who.user_id, MAX_TIMERS_PER_USER)?.len() >= MAX_TIMERS_PER_USER {
        return Err(bad(format!(
            "you have {MAX_TIMERS_PER_USER} timers, the most one user may have: delete one first"
        )));
    }
    // The endpoints by id: a later rename must not redirect the runs.
    let submission = SubmitTask {
        submission_id: None,
        source_endpoint: checked.source.id.clone(),
        destination_endpoint: checked.destination.id.clone(),
        label: label.clone(),
        ..transfer
    };
    let submission = serde_json::to_string(&submission)
        .map_err(|e| bad(format!("the transfer cannot be kept: {e}")))?;
    store.create_timer(&NewTimer {
        id: id.clone(),
        owner_id: who.user_id,
        submission,
        label,
        interval,
        start,
        stop_after_runs,
        stop_after_date,
        run_deadline,
        created: now,
    })?;
    store.add_timer_event(
        &id,
        code::CREATED,
        &format!(
            "every {} from '{}' to '{}'",
            ferry_proto::human::duration(interval.unsigned_abs()),
            checked.source.display_name,
            checked.destination.display_name
        ),
        now,
    )?;
    tracing::info!(timer = %id, owner = %who.user_name, interval, "timer created");
    Ok(id)
}

/// A timer of `who`'s that `action` may be done to; another user's is as
/// absent as a missing one.
pub fn find(
    store: &dyn Storage,
    who: &Principal,
    id: &str,
    action: Action,
) -> Result<TimerRow, TimerError> {
    let not_found = || TimerError::NotFound(id.to_string());
    let row = store.timer(id)?.ok_or_else(not_found)?;
    match authorize(who, action, Resource::Timer(&row)) {
        Ok(()) => Ok(row),
        Err(Refusal::Hidden) => Err(not_found()),
        Err(refusal) => Err(TimerError::Refused(refusal)),
    }
}

/// `who`'s timers, oldest first.
pub fn list(store: &dyn Storage, who: &Principal) -> Result<Vec<TimerRow>, TimerError> {
    authorize(who, Action::SeeTask, Resource::Any).map_err(TimerError::Refused)?;
    Ok(store.timers_of(who.user_id, MAX_TIMERS_PER_USER)?)
}

/// Deletes a timer of `who`'s: no more runs (one already made runs on).
pub fn delete(store: &dyn Storage, who: &Principal, id: &str) -> Result<(), TimerError> {
    let row = find(store, who, id, Action::CancelTask)?;
    if !store.delete_timer(&row.timer.id)? {
        return Err(TimerError::NotFound(id.to_string()));
    }
    tracing::info!(timer = %row.timer.id, by = %who.user_name, "timer deleted");
    Ok(())
}

/// The endpoints a timer's runs go between (ids), from its submission.
pub fn endpoints_of(row: &TimerRow) -> (String, String) {
    serde_json::from_str::<SubmitTask>(&row.timer.submission)
        .map(|s| (s.source_endpoint, s.destination_endpoint))
        .unwrap_or_default()
}

/// A timer's latest events, for showing.
pub fn events(store: &dyn Storage, row: &TimerRow) -> Result<Vec<TaskEventRow>, TimerError> {
    Ok(store.timer_events(&row.timer.id, crate::store::MAX_TIMER_EVENTS as usize)?)
}

/// Runs the timers for the life of the runtime; `wake` tells the task
/// scheduler of each run's new task.
pub fn spawn(hub: Arc<Hub>, wake: tasks::Wake) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match pass(&*hub.store, &hub.control, grants::now()) {
                Ok(0) => {}
                Ok(_) => wake.wake(),
                // The next tick tries again: a due time stays due until claimed.
                Err(e) => tracing::warn!(error = %e, "timers: the store did not answer"),
            }
        }
    });
}

/// Handles every due timer once; returns how many runs made a task.
pub fn pass(
    store: &dyn Storage,
    registry: &crate::control::Registry,
    now: i64,
) -> Result<usize, StoreError> {
    let mut made = 0;
    for timer in store.due_timers(now, DUE_PER_PASS)? {
        let id = timer.timer.id.clone();
        let id = id.as_str();
        let previous = match &timer.last_task_id {
            Some(task) => store.task(task)?,
            None => None,
        };
        let previous_active = previous
            .as_ref()
            .is_some_and(|t| t.status == TaskStatus::Active);
        match decide(&timer, now, previous_active) {
            Decision::Wait => {}
            Decision::Finish { due } => {
                if store.claim_timer_run(id, due, None, false)? {
                    store.add_timer_event(id, code::FINISHED, &finished(&timer), now)?;
                }
            }
            Decision::Skip { due, next } => {
                if store.claim_timer_run(id, due, next, true)? {
                    let task = previous.map(|t| t.id).unwrap_or_default();
                    store.add_timer_event(
                        id,
                        code::SKIPPED,
                        &format!(
                            "the run due at {} was skipped: the previous run (task {task}) is still ACTIVE",
                            ferry_proto::human::utc_seconds(due)
                        ),
                        now,
                    )?;
                    if next.is_none() {
                        store.add_timer_event(id, code::FINISHED, &finished(&timer), now)?;
                    }
                }
            }
            Decision::Fire { due, next, missed } => {
                if !store.claim_timer_run(id, due, next, false)? {
                    continue;
                }
                if fire(store, registry, &timer, now, missed)? {
                    made += 1;
                }
                let Some(after) = store.timer(id)? else {
                    continue;
                };
                let ran_out = after.timer.stop_after_runs.is_some_and(|n| after.runs >= n);
                let ends = match next {
                    None => true,
                    Some(next) => ran_out && store.claim_timer_run(id, next, None, false)?,
                };
                if ends {
                    store.add_timer_event(id, code::FINISHED, &finished(&after), now)?;
                }
            }
        }
    }
    Ok(made)
}

fn finished(timer: &TimerRow) -> String {
    let runs = timer.runs;
    format!(
        "the timer has finished after {runs} run{}",
        if runs == 1 { "" } else { "s" }
    )
}

/// Submits a claimed run as the timer's owner; a refusal is the timer's
/// event, not the loop's error. Returns whether a task was made.
fn fire(
    store: &dyn Storage,
    registry: &crate::control::Registry,
    timer: &TimerRow,
    now: i64,
    missed: u64,
) -> Result<bool, StoreError> {
    let t = &timer.timer;
    let run = timer.runs + 1;
    let refused = |why: String| -> Result<bool, StoreError> {
        tracing::info!(timer = %t.id, "timer run refused: {why}");
        store.add_timer_event(
            &t.id,
            code::REFUSED,
            &format!("run {run} refused: {why}"),
            now,
        )?;
        Ok(false)
    };
    let Some(owner) = store.user_by_id(t.owner_id)? else {
        return refused("its owner no longer exists".into());
    };
    let mut submit: SubmitTask = match serde_json::from_str(&t.submission) {
        Ok(submit) => submit,
        Err(e) => return refused(format!("the hub's stored copy of it is unreadable: {e}")),
    };
    submit.label = Some(run_label(t.label.as_deref(), &t.id, run));
    submit.deadline = t.run_deadline.map(|d| now.saturating_add(d));
    // Each run is a task of its own (a timer's stored transfer has none,
    // and one from before must not make every run the first run's task).
    submit.submission_id = None;
    // The owner as a CLI login would be: a run may do what the owner may
    // do now, not what they could when the timer was made.
    let who = Principal {
        user_id: owner.id,
        user_name: owner.name,
        client_id: "timer".into(),
        scopes: vec![SCOPE_TRANSFER.to_string()],
        // No sign-in stands behind a run: an endpoint that requires a
        // recently authenticated identity (--allowed-domains) refuses it,
        // and the refusal is an event of the timer.
        sign_in: Default::default(),
    };
    let task = match task_service::submit(store, registry, &who, submit, now) {
        Ok(task) => task.task_id,
        Err(TaskServiceError::Storage(e)) => return Err(e),
        Err(e) => return refused(e.to_string()),
    };
    store.record_timer_run(&t.id, &task)?;
    let catch_up = match missed {
        0 => String::new(),
        n => format!(
            " (a catch-up run: the hub was down across {} due times)",
            n + 1
        ),
    };
    store.add_timer_event(
        &t.id,
        code::RUN,
        &format!("run {run}: task {task}{catch_up}"),
        now,
    )?;
    tracing::info!(timer = %t.id, %task, run, "timer run submitted");
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One pass with no endpoint connected (what the tests here need of
    /// the control registry: nothing).
    fn pass(store: &dyn Storage, now: i64) -> Result<usize, StoreError> {
        let (registry, _notices) = crate::control::Registry::new();
        super::pass(store, &registry, now)
    }
    use ferry_proto::wire_path::WirePath;

    fn timer(next_run: Option<i64>, runs: u64) -> TimerRow {
        TimerRow {
            timer: NewTimer {
                id: "t".into(),
                owner_id: 1,
                submission: "{}".into(),
                label: None,
                interval: 10,
                start: 100,
                stop_after_runs: None,
                stop_after_date: None,
                run_deadline: None,
                created: 100,
            },
            next_run,
            runs,
            skipped: 0,
            last_task_id: None,
            status: TimerStatus::Active,
        }
    }

    #[test]
    fn a_timer_waits_until_due_then_fires_and_keeps_to_its_grid() {
        let t = timer(Some(100), 0);
        assert_eq!(decide(&t, 99, false), Decision::Wait);
        assert_eq!(
            decide(&t, 100, false),
            Decision::Fire {
                due: 100,
                next: Some(110),
                missed: 0
            }
        );
        // A tick late is still the same grid.
        assert_eq!(
            decide(&t, 103, false),
            Decision::Fire {
                due: 100,
                next: Some(110),
                missed: 0
            }
        );
    }

    #[test]
    fn a_run_is_skipped_while_the_previous_is_active() {
        let t = timer(Some(110), 1);
        assert_eq!(
            decide(&t, 110, true),
            Decision::Skip {
                due: 110,
                next: Some(120)
            }
        );
    }

    #[test]
    fn downtime_across_several_due_times_makes_one_catch_up_run() {
        // Due at 100, the hub back at 135: 100, 110, 120 and 130 passed.
        let t = timer(Some(100), 0);
        let Decision::Fire { due, next, missed } = decide(&t, 135, false) else {
            panic!("no run")
        };
        assert_eq!((due, missed), (100, 3));
        let next = next.unwrap();
        assert!(next > 135, "next_run moves past now: {next}");
        // Claimed at 135, the timer is not due again until then.
        let after = TimerRow {
            next_run: Some(next),
            runs: 1,
            ..t
        };
        assert_eq!(decide(&after, 135, false), Decision::Wait);
        assert_eq!(decide(&after, next - 1, false), Decision::Wait);
    }

    #[test]
    fn a_timer_finishes_after_its_last_run_or_before_its_stop_date() {
        let mut t = timer(Some(100), 2);
        t.timer.stop_after_runs = Some(2);
        assert_eq!(decide(&t, 100, false), Decision::Finish { due: 100 });

        let mut t = timer(Some(100), 0);
        t.timer.stop_after_date = Some(105);
        assert_eq!(
            decide(&t, 100, false),
            Decision::Fire {
                due: 100,
                next: None,
                missed: 0
            }
        );
        assert_eq!(
            decide(&t, 100, true),
            Decision::Skip {
                due: 100,
                next: None
            }
        );
        t.timer.stop_after_date = Some(99);
        assert_eq!(decide(&t, 100, false), Decision::Finish { due: 100 });
    }

    #[test]
    fn a_finished_timer_does_nothing() {
        let mut t = timer(None, 3);
        assert_eq!(decide(&t, i64::MAX, false), Decision::Wait);
        t.next_run = Some(100);
        t.status = TimerStatus::Finished;
        assert_eq!(decide(&t, 200, false), Decision::Wait);
    }

    /// The loop's pass against a real store: a run, a second hub's pass at
    /// the same moment that makes none, a skip, one catch-up run after
    /// downtime, and a refused run that the timer outlives.
    #[test]
    fn a_pass_fires_skips_and_catches_up_once_through_the_store() {
        use crate::store::{AccountStore, EndpointStore, SqliteStore, TaskStore, TimerStore};
        use ferry_proto::task::{TransferItem, TransferOptions};
        let store = SqliteStore::in_memory().unwrap();
        let uid = store.add_user("alice", "h", 0).unwrap();
        store.create_endpoint("e1", uid, "laptop", 0).unwrap();
        store.create_endpoint("e2", uid, "cluster", 0).unwrap();
        let who = Principal {
            user_id: uid,
            user_name: "alice".into(),
            client_id: "test".into(),
            scopes: vec![SCOPE_TRANSFER.into()],
            sign_in: Default::default(),
        };
        let transfer = SubmitTask {
            submission_id: None,
            source_endpoint: "laptop".into(),
            destination_endpoint: "cluster".into(),
            items: vec![TransferItem {
                source: WirePath::from_bytes(b"/~/data".to_vec()),
                destination: WirePath::from_bytes(b"/~/copy".to_vec()),
                recursive: true,
            }],
            options: TransferOptions::default(),
            label: Some("nightly".into()),
            deadline: None,
            notify: None,
        };
        let create_at = |start| CreateTimer {
            transfer: transfer.clone(),
            interval: 10,
            start: Some(start),
            stop_after_runs: Some(3),
            stop_after_date: None,
            run_deadline: Some(600),
        };
        let id = create(&store, &who, create_at(1000), 1000).unwrap();
        let row = || store.timer(&id).unwrap().unwrap();

        assert_eq!(pass(&store, 999).unwrap(), 0, "not yet due");
        assert_eq!(pass(&store, 1000).unwrap(), 1);
        assert_eq!(
            pass(&store, 1000).unwrap(),
            0,
            "a second pass finds it claimed"
        );
        let first = row().last_task_id.unwrap();
        let task = store.task(&first).unwrap().unwrap();
        assert_eq!(
            task.label.as_deref(),
            Some(&*format!("nightly (timer {} run 1)", &id[..8]))
        );
        assert_eq!(task.deadline, Some(1600));
        assert_eq!(
            (task.source_id.as_str(), task.destination_id.as_str()),
            ("e1", "e2")
        );

        assert_eq!(
            pass(&store, 1010).unwrap(),
            0,
            "the first run is still ACTIVE"
        );
        assert_eq!(
            (row().runs, row().skipped, row().next_run),
            (1, 1, Some(1020))
        );

        store
            .finish_task(&first, TaskStatus::Succeeded, None, None, 1011)
            .unwrap();
        // The hub was down from 1011 to 1055: 1020 to 1050 passed.
        assert_eq!(pass(&store, 1055).unwrap(), 1);
        assert_eq!(pass(&store, 1055).unwrap(), 0);
        assert_eq!((row().runs, row().next_run), (2, Some(1065)));

        // The destination is deleted: the run is refused, the timer goes on.
        let second = row().last_task_id.unwrap();
        store
            .finish_task(&second, TaskStatus::Succeeded, None, None, 1056)
            .unwrap();
        store.delete_endpoint("e2").unwrap();
        assert_eq!(pass(&store, 1065).unwrap(), 0);
        assert_eq!((row().runs, row().next_run), (2, Some(1075)));
        // Back again, it makes its third and last run.
        store.create_endpoint("e3", uid, "cluster", 0).unwrap();
        assert_eq!(pass(&store, 1075).unwrap(), 0, "the runs go to e2 by id");
        assert_eq!(row().status, TimerStatus::Active);

        let codes: Vec<String> = events(&store, &row())
            .unwrap()
            .into_iter()
            .map(|e| e.code)
            .collect();
        assert_eq!(
            codes,
            ["CREATED", "RUN", "SKIPPED", "RUN", "REFUSED", "REFUSED"]
        );
        let catch_up = &events(&store, &row()).unwrap()[3].description;
        assert!(catch_up.contains("catch-up"), "{catch_up}");

        // A timer of one run finishes with it.
        let once = CreateTimer {
            transfer: SubmitTask {
                submission_id: None,
                destination_endpoint: "laptop".into(),
                ..transfer.clone()
            },
            stop_after_runs: Some(1),
            ..create_at(3000)
        };
        let once = create(&store, &who, once, 3000).unwrap();
        assert_eq!(pass(&store, 3000).unwrap(), 1);
        let done = store.timer(&once).unwrap().unwrap();
        assert_eq!(
            (done.runs, done.next_run, done.status),
            (1, None, TimerStatus::Finished)
        );
        assert_eq!(
            events(&store, &done).unwrap().last().unwrap().code,
            "FINISHED"
        );
        delete(&store, &who, &once).unwrap();

        // Someone else's timer is not there; the owner's is, until deleted.
        let bob = Principal {
            user_id: store.add_user("bob", "h", 0).unwrap(),
            user_name: "bob".into(),
            ..who.clone()
        };
        assert!(matches!(
            delete(&store, &bob, &id),
            Err(TimerError::NotFound(_))
        ));
        assert!(list(&store, &bob).unwrap().is_empty());
        assert_eq!(list(&store, &who).unwrap().len(), 1);
        delete(&store, &who, &id).unwrap();
        assert_eq!(pass(&store, 2000).unwrap(), 0);
        assert!(list(&store, &who).unwrap().is_empty());
    }

    #[test]
    fn timers_are_refused_with_a_reason() {
        use crate::store::{AccountStore, EndpointStore, SqliteStore};
        use ferry_proto::task::{TransferItem, TransferOptions};
        let store = SqliteStore::in_memory().unwrap();
        let uid = store.add_user("alice", "h", 0).unwrap();
        store.create_endpoint("e1", uid, "laptop", 0).unwrap();
        let who = Principal {
            user_id: uid,
            user_name: "alice".into(),
            client_id: "test".into(),
            scopes: vec![SCOPE_TRANSFER.into()],
            sign_in: Default::default(),
        };
        let good = CreateTimer {
            transfer: SubmitTask {
                submission_id: None,
                source_endpoint: "laptop".into(),
                destination_endpoint: "laptop".into(),
                items: vec![TransferItem {
                    source: WirePath::from_bytes(b"/a".to_vec()),
                    destination: WirePath::from_bytes(b"/b".to_vec()),
                    recursive: false,
                }],
                options: TransferOptions::default(),
                label: None,
                deadline: None,
                notify: None,
            },
            interval: 60,
            start: None,
            stop_after_runs: None,
            stop_after_date: None,
            run_deadline: None,
        };
        let refused = |change: &dyn Fn(&mut CreateTimer)| {
            let mut c = good.clone();
            change(&mut c);
            create(&store, &who, c, 1000).unwrap_err().to_string()
        };
        assert!(refused(&|c| c.interval = 1).contains("interval"));
        assert!(refused(&|c| c.interval = MAX_TIMER_INTERVAL + 1).contains("interval"));
        assert!(refused(&|c| c.stop_after_runs = Some(0)).contains("one run"));
        assert!(refused(&|c| c.stop_after_date = Some(500)).contains("stop date"));
        assert!(refused(&|c| c.start = Some(10)).contains("start"));
        assert!(refused(&|c| c.transfer.deadline = Some(2000)).contains("run_deadline"));
        assert!(
            refused(&|c| c.transfer.destination_endpoint = "nowhere".into()).contains("nowhere")
        );
        assert!(refused(&|c| c.transfer.label = Some("x".repeat(MAX_LABEL))).contains("label"));
        create(&store, &who, good.clone(), 1000).unwrap();
    }

    /// Two hubs (`a` and `b`, two stores on one database), their loops
    /// passing at the same due time from several threads: one run.
    pub(crate) fn two_hubs_make_one_run(a: Arc<dyn Storage>, b: Arc<dyn Storage>) {
        use ferry_proto::task::{TransferItem, TransferOptions};
        let uid = a.add_user("alice", "h", 0).unwrap();
        a.create_endpoint("e1", uid, "laptop", 0).unwrap();
        let who = Principal {
            user_id: uid,
            user_name: "alice".into(),
            client_id: "test".into(),
            scopes: vec![SCOPE_TRANSFER.into()],
            sign_in: Default::default(),
        };
        let timer = CreateTimer {
            transfer: SubmitTask {
                submission_id: None,
                source_endpoint: "laptop".into(),
                destination_endpoint: "laptop".into(),
                items: vec![TransferItem {
                    source: WirePath::from_bytes(b"/a".to_vec()),
                    destination: WirePath::from_bytes(b"/b".to_vec()),
                    recursive: false,
                }],
                options: TransferOptions::default(),
                label: None,
                deadline: None,
                notify: None,
            },
            interval: 60,
            start: Some(1000),
            stop_after_runs: None,
            stop_after_date: None,
            run_deadline: None,
        };
        let id = create(&*a, &who, timer, 1000).unwrap();
        let threads = 8;
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let made: usize = (0..threads)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    pass(&*store, 1000).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(made, 1);
        assert_eq!(b.tasks_of(uid, 10).unwrap().len(), 1);
        let row = b.timer(&id).unwrap().unwrap();
        assert_eq!((row.runs, row.next_run), (1, Some(1060)));
    }

    #[test]
    fn two_hubs_on_one_sqlite_file_make_one_run() {
        use crate::store::SqliteStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let a: Arc<dyn Storage> = Arc::new(SqliteStore::open(&path).unwrap());
        let b: Arc<dyn Storage> = Arc::new(SqliteStore::open(&path).unwrap());
        two_hubs_make_one_run(a, b);
    }

    #[test]
    fn run_labels_name_the_timer_and_the_run() {
        let id = "0123456789abcdef";
        assert_eq!(run_label(None, id, 3), "timer 01234567 run 3");
        assert_eq!(
            run_label(Some("nightly"), id, 1),
            "nightly (timer 01234567 run 1)"
        );
    }
}
