//! The task scheduler: starts each ACTIVE task's data work when both its
//! endpoints are connected and neither is paused, follows what they
//! report, retries faults with backoff, waits for offline and paused
//! endpoints (no fault, no backoff), and ends tasks (success, failure,
//! deadline).
//!
//! The decisions live in [`Core`], a state machine without I/O: inputs
//! (the ACTIVE tasks in the store, connections, reports, ticks) and `now`
//! go in, [`Action`]s come out. [`spawn`] runs it: it feeds the control
//! channel's notices and a periodic sweep of the store into the core, and
//! carries the actions out on the store and the control channel.
//!
//! The store is the source of truth for which tasks are ACTIVE: the API
//! writes a new or canceled task there and wakes the scheduler, which picks
//! the change up on its next sweep. Every state change in the store is
//! conditional on the task still being ACTIVE (and on the attempt), so a
//! cancel racing a report cannot be undone by it. After a hub restart the
//! sweep loads the ACTIVE tasks again; each starts a fresh attempt once its
//! endpoints reconnect, and reports for older attempts are ignored.

use crate::cluster::ShardNode;
use crate::control::{CallError, Notice};
use crate::server::Hub;
use crate::store::ActiveTask;
use ferry_proto::share::ShareGrant;
use ferry_proto::task::{Capability, Side, TaskCounters, TaskReport, TaskStatus};
use ferry_proto::wire_path::WirePath;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// How often deadlines, retries and the store are looked at.
pub const TICK: Duration = Duration::from_millis(500);
/// How long a source's fault waits for the destination's verdict on the
/// same attempt (seconds). A destination that fails the task tells the
/// source with its last word, but a source still writing may first see
/// the connection close and report a fault the hub would retry; the
/// destination's report decides, as it knows why it stopped.
pub const VERDICT_WITHIN: i64 = 6;
/// After the hub starts, endpoints need a while to reconnect: tasks loaded
/// then do not record "not connected" waits until this many seconds passed.
pub const STARTUP_GRACE: i64 = 30;
/// The longest pause before retrying after a fault, in seconds.
pub const MAX_BACKOFF: i64 = 60;

/// Event codes, as `ferry task events` shows them.
pub mod code {
    pub const SUBMITTED: &str = "SUBMITTED";
    pub const STARTED: &str = "STARTED";
    pub const TRANSFERRING: &str = "TRANSFERRING";
    pub const FAULT: &str = "FAULT";
    pub const ENDPOINT_OFFLINE: &str = "ENDPOINT_OFFLINE";
    /// An endpoint's owner paused it (`ferry -pause`): the task waits.
    pub const PAUSED: &str = "PAUSED";
    pub const SKIPPED: &str = "SKIPPED";
    pub const DELETED: &str = "DELETED";
    pub const RESENT: &str = "RESENT";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const CANCELED: &str = "CANCELED";
    /// The task's `--on-success` hook exited with status 0.
    pub const HOOK_SUCCEEDED: &str = "HOOK_SUCCEEDED";
    /// It exited otherwise, was killed, timed out, or could not run.
    pub const HOOK_FAILED: &str = "HOOK_FAILED";
    /// An attempt's data goes through the hub (and why), or how much did.
    pub const RELAYED: &str = "RELAYED";
}

/// The event a hook's end makes: one line, its end then its last output
/// lines (cut to what a hostile endpoint could send in bounds).
pub fn hook_event(
    name: &str,
    ended: &ferry_proto::task::HookEnd,
    output: &[String],
) -> (&'static str, String) {
    use ferry_proto::task::{MAX_HOOK_LINE, MAX_HOOK_LINES};
    let code = if ended.succeeded() {
        code::HOOK_SUCCEEDED
    } else {
        code::HOOK_FAILED
    };
    let mut description = format!("hook '{name}' {ended}");
    let start = output.len().saturating_sub(MAX_HOOK_LINES);
    let lines: Vec<String> = output[start..]
        .iter()
        .map(|l| l.chars().take(MAX_HOOK_LINE).collect())
        .collect();
    if !lines.is_empty() {
        description.push_str("; output: ");
        description.push_str(&lines.join(" | "));
    }
    (code, description)
}

/// What went wrong in a fault, by what the scheduler saw (never by the
/// words of a message): the `kind` label of the hub's fault counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// An endpoint reported one from its data work.
    Transfer,
    /// The hub could not start the attempt (reach the source, sign).
    Start,
    /// An endpoint of a running attempt went offline.
    EndpointOffline,
    /// An endpoint of a running attempt connected again (its daemon
    /// restarted or re-dialled).
    EndpointReconnected,
    /// The destination advertises no data address.
    NoDataAddress,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        Self::Transfer,
        Self::Start,
        Self::EndpointOffline,
        Self::EndpointReconnected,
        Self::NoDataAddress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Start => "start",
            Self::EndpointOffline => "endpoint_offline",
            Self::EndpointReconnected => "endpoint_reconnected",
            Self::NoDataAddress => "no_data_address",
        }
    }
}

/// A fault: its kind and the words the task's record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

/// Whether an event code reports something that went wrong.
pub fn is_error(code: &str) -> bool {
    matches!(
        code,
        code::FAULT | code::ENDPOINT_OFFLINE | code::FAILED | code::SKIPPED | code::HOOK_FAILED
    )
}

/// Seconds to wait before the next attempt after `in_a_row` faults without
/// progress: 2, 4, 8, ... capped at [`MAX_BACKOFF`].
pub fn backoff(in_a_row: u32) -> i64 {
    1i64.checked_shl(in_a_row.clamp(1, 6))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// What the scheduler learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The ACTIVE tasks in the store now; `initial` on the hub's first sweep.
    Active {
        tasks: Vec<ActiveTask>,
        initial: bool,
    },
    /// What changed since the last sweep (`ClusterStore::claim_changes`):
    /// ACTIVE tasks this instance holds that changed (new claims among
    /// them; one already known stays as it is), and tasks that ended.
    Changed {
        tasks: Vec<ActiveTask>,
        ended: Vec<String>,
    },
    /// ACTIVE tasks another hub instance holds now (`cluster`): this
    /// scheduler forgets them without a word to their endpoints, since the
    /// task goes on there.
    Released {
        task_ids: Vec<String>,
    },
    Connected {
        endpoint_id: String,
        data_address: Option<String>,
        paused: bool,
        /// It can send and receive relayed data streams.
        relay: bool,
    },
    Disconnected {
        endpoint_id: String,
    },
    /// A connected endpoint's owner paused or unpaused its data work.
    Paused {
        endpoint_id: String,
        paused: bool,
    },
    Report {
        endpoint_id: String,
        /// Which machine of the endpoint reported.
        node: String,
        task_id: String,
        attempt: u32,
        report: TaskReport,
    },
    /// A node of a connected endpoint went away.
    NodeGone {
        endpoint_id: String,
        node: String,
    },
    /// The attempt was spread over these pairs of nodes (source node,
    /// destination node), shard `i` on pair `i`.
    Spread {
        task_id: String,
        attempt: u32,
        pairs: Vec<(String, String)>,
    },
    /// The hub could not start an attempt it decided on; `fatal` when no
    /// retry can help (the stored task is unreadable).
    StartFailed {
        task_id: String,
        attempt: u32,
        message: String,
        fatal: bool,
    },
    /// The hub could not record or read an attempt it decided on because
    /// its storage is unavailable now: the attempt did not start, and
    /// nothing is wrong with the task. It starts again at a later tick,
    /// with no fault counted.
    StartDeferred {
        task_id: String,
        attempt: u32,
    },
    /// The hub decided how a task ends but could not record it (its
    /// storage is unavailable now): the end and its event are recorded at
    /// a later tick, and meanwhile the task, still ACTIVE in the store,
    /// does not start again.
    FinishDeferred {
        finish: Box<Action>,
        event: Option<Box<Action>>,
    },
    Tick,
}

/// What the scheduler wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record the new attempt, sign its capability and send it to the source.
    Start {
        task_id: String,
        attempt: u32,
        source: String,
        destination: String,
        /// The destination's data address (tried first), if it has one.
        connect_to: Option<String>,
        /// The hub relays the task's streams when no direct one can be made.
        relay: bool,
    },
    /// Stop the task's data work on an endpoint; the destination refuses
    /// attempts up to `through_attempt` from then on, keeping what a later
    /// attempt resumes from. `None`: every attempt, the task is over (the
    /// destination removes the temporaries its attempts kept).
    Cancel {
        endpoint_id: String,
        task_id: String,
        through_attempt: Option<u32>,
    },
    /// The running attempt's counters.
    Progress {
        task_id: String,
        attempt: u32,
        counters: TaskCounters,
    },
    /// The attempt is over without success: fold its counters into the
    /// totals and count the fault, if any.
    EndAttempt {
        task_id: String,
        attempt: u32,
        fault: Option<Fault>,
    },
    /// A fault outside any attempt.
    NoteFault {
        task_id: String,
        kind: FaultKind,
        message: String,
    },
    Finish {
        task_id: String,
        status: TaskStatus,
        counters: Option<TaskCounters>,
        error: Option<String>,
    },
    /// The task's data began to flow (the first time this hub heard so):
    /// the audit log records what it reads and writes.
    Accessed { task_id: String },
    /// `--delete` removed `path` at the destination: the audit log
    /// records it.
    Removed { task_id: String, path: WirePath },
    /// `always`: kept even when the task has recorded too many events.
    Event {
        task_id: String,
        code: &'static str,
        description: String,
        always: bool,
    },
}

/// Why a task that could run does not, once recorded, so a wait is told once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    Offline(String),
    Paused(String),
    NoDataAddress,
}

#[derive(Debug, Clone)]
struct Live {
    source: String,
    source_name: String,
    destination: String,
    destination_name: String,
    attempt: u32,
    deadline: Option<i64>,
    running: bool,
    /// The running attempt moved data (so a fault after it starts the
    /// backoff over).
    progressed: bool,
    faults_in_a_row: u32,
    retry_at: i64,
    noted: Option<Wait>,
    quiet_until: i64,
    /// A fault the source reported for the running attempt, applied when
    /// the destination's verdict has not come by the given time.
    source_fault: Option<(String, i64)>,
    /// Entries `--delete` removed, as reported since this hub took the
    /// task up (a restart forgets them; their events stay).
    deleted: u64,
    /// Its access is in the audit log (once per task while this hub runs;
    /// a task a restarted hub takes up again is recorded again when its
    /// data flows again).
    accessed: bool,
    /// The running attempt's shards, when it is spread over nodes.
    spread: Option<Spread>,
}

/// A running attempt spread over pairs of nodes: what each shard's
/// destination node last reported, and which shards succeeded.
#[derive(Debug, Clone, Default)]
struct Spread {
    /// (source node, destination node) of shard `i`.
    pairs: Vec<(String, String)>,
    progress: Vec<TaskCounters>,
    succeeded: Vec<Option<TaskCounters>>,
}

impl Spread {
    /// The shard a destination node moves.
    fn shard_of(&self, destination_node: &str) -> Option<usize> {
        self.pairs.iter().position(|(_, d)| d == destination_node)
    }

    fn uses(&self, live: &Live, endpoint_id: &str, node: &str) -> bool {
        self.pairs.iter().any(|(s, d)| {
            (live.source == endpoint_id && s == node)
                || (live.destination == endpoint_id && d == node)
        })
    }
}

/// The counters of all shards as one attempt's.
fn summed(parts: impl Iterator<Item = TaskCounters>) -> TaskCounters {
    let mut all = TaskCounters {
        walk_done: true,
        ..TaskCounters::default()
    };
    for c in parts {
        all.files += c.files;
        all.files_transferred += c.files_transferred;
        all.files_skipped += c.files_skipped;
        all.bytes_transferred += c.bytes_transferred;
        all.bytes += c.bytes;
        all.bytes_skipped += c.bytes_skipped;
        all.bytes_resent += c.bytes_resent;
        all.walk_done &= c.walk_done;
    }
    all
}

impl Live {
    fn name_of(&self, endpoint_id: &str) -> &str {
        if endpoint_id == self.source {
            &self.source_name
        } else {
            &self.destination_name
        }
    }
    fn involves(&self, endpoint_id: &str) -> bool {
        self.source == endpoint_id || self.destination == endpoint_id
    }
    /// What an endpoint reported, naming the endpoint where it happened
    /// when the report says (a destination relays the source's abort), else
    /// the reporter.
    fn words(&self, reporter: &str, message: &str, side: Option<Side>) -> String {
        match side {
            Some(side) => {
                let name = match side {
                    Side::Source => &self.source_name,
                    Side::Destination => &self.destination_name,
                };
                format!("'{name}' (the {side}) {message}")
            }
            None => format!("'{}' reported: {message}", self.name_of(reporter)),
        }
    }
}

/// A connected endpoint, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    /// Where it accepts data connections.
    data_address: Option<String>,
    /// Its owner paused its data work: its tasks wait, as for an offline one.
    paused: bool,
    /// It can send and receive relayed data streams.
    relay: bool,
}

/// The scheduler's decisions, without I/O.
#[derive(Debug, Default)]
pub struct Core {
    /// The hub relays data streams (`[relay] enabled`).
    relay: bool,
    tasks: BTreeMap<String, Live>,
    connected: HashMap<String, Peer>,
    /// Ends decided but not yet recorded, by task: (when to try again,
    /// the `Finish` and its event).
    unrecorded: BTreeMap<String, (i64, Action, Option<Action>)>,
}

impl Core {
    /// A scheduler whose hub relays data streams (or not).
    pub fn relaying(relay: bool) -> Self {
        Self {
            relay,
            ..Self::default()
        }
    }

    pub fn handle(&mut self, input: Input, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Active { tasks, initial } => self.sync(tasks, initial, now, &mut out),
            Input::Changed { tasks, ended } => {
                for id in &ended {
                    self.unrecorded.remove(id);
                }
                self.stop_gone(ended, &mut out);
                self.take_up(tasks, false, now, &mut out);
            }
            Input::Released { task_ids } => {
                for id in &task_ids {
                    self.tasks.remove(id);
                    self.unrecorded.remove(id);
                }
            }
            Input::Connected {
                endpoint_id,
                data_address,
                paused,
                relay,
            } => {
                // A second connection replaces the first without a
                // disconnect notice: the daemon restarted or re-dialled, and
                // whatever it ran for a task went with the old link.
                if self.connected.contains_key(&endpoint_id) {
                    self.interrupt(&endpoint_id, now, Interruption::Reconnected, &mut out);
                }
                self.connected.insert(
                    endpoint_id,
                    Peer {
                        data_address,
                        paused,
                        relay,
                    },
                );
            }
            Input::Disconnected { endpoint_id } => {
                self.connected.remove(&endpoint_id);
                self.interrupt(&endpoint_id, now, Interruption::Offline, &mut out);
            }
            Input::Paused {
                endpoint_id,
                paused,
            } => self.paused(&endpoint_id, paused, now, &mut out),
            Input::Report {
                endpoint_id,
                node,
                task_id,
                attempt,
                report,
            } => self.report(
                &endpoint_id,
                &node,
                &task_id,
                attempt,
                report,
                now,
                &mut out,
            ),
            Input::Spread {
                task_id,
                attempt,
                pairs,
            } => {
                if let Some(live) = self.tasks.get_mut(&task_id)
                    && live.running
                    && live.attempt == attempt
                {
                    let k = pairs.len();
                    let shown: Vec<String> =
                        pairs.iter().map(|(s, d)| format!("{s}->{d}")).collect();
                    live.spread = Some(Spread {
                        pairs,
                        progress: vec![TaskCounters::default(); k],
                        succeeded: vec![None; k],
                    });
                    out.push(Action::Event {
                        task_id: task_id.clone(),
                        code: code::STARTED,
                        description: format!(
                            "attempt {attempt}: spread over {k} nodes of each endpoint ({})",
                            shown.join(", ")
                        ),
                        always: false,
                    });
                }
            }
            Input::NodeGone { endpoint_id, node } => {
                let hit: Vec<(String, String)> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| {
                        t.running
                            && t.spread
                                .as_ref()
                                .is_some_and(|sp| sp.uses(t, &endpoint_id, &node))
                    })
                    .map(|(id, t)| (id.clone(), t.name_of(&endpoint_id).to_string()))
                    .collect();
                for (id, name) in hit {
                    // Its shard is lost: the attempt ends as a fault, and
                    // the next one uses the nodes connected then.
                    self.fault(
                        &id,
                        FaultKind::EndpointOffline,
                        &format!("node {node} of '{name}' went offline"),
                        now,
                        &mut out,
                    );
                }
            }
            Input::StartFailed {
                task_id,
                attempt,
                message,
                fatal,
            } => {
                if fatal {
                    self.finish(&task_id, TaskStatus::Failed, None, Some(message), &mut out);
                } else if self.is_running(&task_id, attempt) {
                    self.fault(&task_id, FaultKind::Start, &message, now, &mut out);
                }
            }
            Input::FinishDeferred { finish, event } => {
                if let Action::Finish { task_id, .. } = finish.as_ref() {
                    // Not at once: the same batch would ask storage again.
                    self.unrecorded
                        .insert(task_id.clone(), (now + 1, *finish, event.map(|e| *e)));
                }
            }
            Input::StartDeferred { task_id, attempt } => {
                if self.is_running(&task_id, attempt) {
                    if let Some(live) = self.tasks.get_mut(&task_id) {
                        live.running = false;
                        // Not at once: the same batch would ask storage again.
                        live.retry_at = now + 1;
                    }
                }
            }
            Input::Tick => {}
        }
        self.schedule(now, &mut out);
        out
    }

    /// A pause ends the endpoint's running attempts without a fault (the
    /// destination keeps what they wrote); its tasks wait, and start again
    /// at once when it is unpaused (no backoff: nothing went wrong).
    fn paused(&mut self, endpoint_id: &str, paused: bool, now: i64, out: &mut Vec<Action>) {
        let Some(peer) = self.connected.get_mut(endpoint_id) else {
            return;
        };
        peer.paused = paused;
        if paused {
            self.interrupt(endpoint_id, now, Interruption::Paused, out);
        } else {
            // A later pause is news again.
            let waited = Some(Wait::Paused(endpoint_id.to_string()));
            for live in self.tasks.values_mut() {
                if live.noted == waited {
                    live.noted = None;
                }
            }
        }
    }

    fn is_running(&self, task_id: &str, attempt: u32) -> bool {
        self.tasks
            .get(task_id)
            .is_some_and(|t| t.running && t.attempt == attempt)
    }

    fn sync(&mut self, tasks: Vec<ActiveTask>, initial: bool, now: i64, out: &mut Vec<Action>) {
        // An end waiting to be recorded stays decided: its task, still
        // ACTIVE in the store, is not taken up again. Ended meanwhile
        // (canceled through the API): nothing left to record.
        let active: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        self.unrecorded.retain(|id, _| active.contains(id.as_str()));
        let tasks: Vec<ActiveTask> = tasks
            .into_iter()
            .filter(|t| !self.unrecorded.contains_key(&t.id))
            .collect();
        let active: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !active.contains(id.as_str()))
            .cloned()
            .collect();
        self.stop_gone(gone, out);
        self.take_up(tasks, initial, now, out);
    }

    /// Tasks that ended outside the scheduler (canceled through the API):
    /// make sure their endpoints stop, even if a start crossed the cancel.
    fn stop_gone(&mut self, gone: Vec<String>, out: &mut Vec<Action>) {
        // Also between attempts: the destination may keep temporaries of
        // an earlier one for a resume that will not come.
        for id in gone {
            if let Some(live) = self.tasks.remove(&id) {
                if live.attempt > 0 {
                    self.cancel_both(&id, &live, Over::Task, out);
                }
            }
        }
    }

    /// ACTIVE tasks this scheduler drives: new ones are taken up, and one
    /// whose endpoint was revoked fails. An end waiting to be recorded
    /// stays decided: its task is not taken up again.
    fn take_up(&mut self, tasks: Vec<ActiveTask>, initial: bool, now: i64, out: &mut Vec<Action>) {
        for row in tasks {
            if self.unrecorded.contains_key(&row.id) {
                continue;
            }
            if row.source_revoked || row.destination_revoked {
                let name = if row.source_revoked {
                    &row.source_name
                } else {
                    &row.destination_name
                };
                let message = format!("endpoint '{name}' was revoked; the task cannot complete");
                if !self.tasks.contains_key(&row.id) {
                    self.tasks
                        .insert(row.id.clone(), live_of(&row, initial, now));
                }
                self.finish(&row.id, TaskStatus::Failed, None, Some(message), out);
                continue;
            }
            self.tasks
                .entry(row.id.clone())
                .or_insert_with(|| live_of(&row, initial, now));
        }
    }

    // Each argument is a distinct part of the report.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        endpoint_id: &str,
        node: &str,
        task_id: &str,
        attempt: u32,
        report: TaskReport,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(live) = self.tasks.get_mut(task_id) else {
            return;
        };
        // Only the task's own endpoints speak for it, and only about the
        // attempt that runs now: an older attempt's late words are stale.
        if !live.involves(endpoint_id) || !live.running || live.attempt != attempt {
            return;
        }
        let from_destination = endpoint_id == live.destination;
        let event = |code: &'static str, description: String| Action::Event {
            task_id: task_id.to_string(),
            code,
            description,
            always: false,
        };
        match report {
            TaskReport::Started => {
                out.push(event(
                    code::TRANSFERRING,
                    format!(
                        "attempt {attempt}: '{}' connected to '{}'; data is flowing",
                        live.source_name, live.destination_name
                    ),
                ));
                if !std::mem::replace(&mut live.accessed, true) {
                    out.push(Action::Accessed {
                        task_id: task_id.to_string(),
                    });
                }
            }
            // The destination counts what it committed; the source's view
            // would count the same files twice.
            TaskReport::Progress { counters } if from_destination => {
                if counters.files_transferred > 0 || counters.bytes_transferred > 0 {
                    live.progressed = true;
                }
                // A shard's counters are its part: the attempt's are the sum.
                let counters = match &mut live.spread {
                    Some(spread) => {
                        let Some(i) = spread.shard_of(node) else {
                            return;
                        };
                        spread.progress[i] = counters;
                        summed(spread.progress.iter().copied())
                    }
                    None => counters,
                };
                out.push(Action::Progress {
                    task_id: task_id.to_string(),
                    attempt,
                    counters,
                });
            }
            TaskReport::Progress { .. } => {}
            TaskReport::Skipped { path, reason } => {
                out.push(event(code::SKIPPED, format!("{path}: {reason}")))
            }
            TaskReport::Resent { path, reason } => out.push(event(
                code::RESENT,
                format!("{path}: {reason}; sending it again"),
            )),
            TaskReport::Deleted { path } if from_destination => {
                live.deleted = live.deleted.saturating_add(1);
                out.push(event(
                    code::DELETED,
                    format!("{path}: not at the source, removed (--delete)"),
                ));
                out.push(Action::Removed {
                    task_id: task_id.to_string(),
                    path,
                });
            }
            // Recorded by the control driver: they come after the task ended.
            TaskReport::Deleted { .. } | TaskReport::Hook { .. } | TaskReport::Unknown => {}
            TaskReport::Fault { message, side } => {
                let message = live.words(endpoint_id, &message, side);
                if !from_destination && self.connected.contains_key(&live.destination) {
                    live.source_fault
                        .get_or_insert((message, now + VERDICT_WITHIN));
                } else {
                    // Both ends saw it: which one saw the cause varies
                    // (a corrupted record is refused by whichever end
                    // received it), so both are told.
                    let message = match live.source_fault.take() {
                        Some((source_said, _)) => format!("{message}; {source_said}"),
                        None => message,
                    };
                    self.fault(task_id, FaultKind::Transfer, &message, now, out);
                }
            }
            TaskReport::Succeeded { counters } if from_destination => {
                // A spread task succeeded once every shard did.
                let counters = match &mut live.spread {
                    Some(spread) => {
                        let Some(i) = spread.shard_of(node) else {
                            return;
                        };
                        spread.succeeded[i] = Some(counters);
                        spread.progress[i] = counters;
                        if spread.succeeded.iter().any(Option::is_none) {
                            let done = spread.succeeded.iter().filter(|s| s.is_some()).count();
                            out.push(event(
                                code::TRANSFERRING,
                                format!(
                                    "attempt {attempt}: node {node} of '{}' finished its part ({done} of {})",
                                    live.destination_name,
                                    spread.pairs.len()
                                ),
                            ));
                            out.push(Action::Progress {
                                task_id: task_id.to_string(),
                                attempt,
                                counters: summed(spread.progress.iter().copied()),
                            });
                            return;
                        }
                        summed(spread.succeeded.iter().flatten().copied())
                    }
                    None => counters,
                };
                self.finish(task_id, TaskStatus::Succeeded, Some(counters), None, out)
            }
            TaskReport::Succeeded { .. } => {}
            TaskReport::Failed { message, side } => {
                let message = live.words(endpoint_id, &message, side);
                self.finish(task_id, TaskStatus::Failed, None, Some(message), out)
            }
        }
    }

    /// The running attempt hit something a later attempt may get past.
    fn fault(
        &mut self,
        task_id: &str,
        kind: FaultKind,
        message: &str,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(live) = self.tasks.get_mut(task_id) else {
            return;
        };
        live.faults_in_a_row = if live.progressed {
            1
        } else {
            live.faults_in_a_row.saturating_add(1)
        };
        let delay = backoff(live.faults_in_a_row);
        live.retry_at = now + delay;
        live.running = false;
        live.source_fault = None;
        let attempt = live.attempt;
        let live = live.clone();
        out.push(Action::EndAttempt {
            task_id: task_id.to_string(),
            attempt,
            fault: Some(Fault {
                kind,
                message: message.to_string(),
            }),
        });
        out.push(Action::Event {
            task_id: task_id.to_string(),
            code: code::FAULT,
            description: format!("attempt {attempt}: {message}; retrying in {delay}s"),
            always: false,
        });
        self.cancel_both(task_id, &live, Over::Attempt, out);
    }

    fn interrupt(&mut self, endpoint_id: &str, now: i64, why: Interruption, out: &mut Vec<Action>) {
        let hit: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.running && t.involves(endpoint_id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in hit {
            let Some(live) = self.tasks.get_mut(&id) else {
                continue;
            };
            live.running = false;
            // A fault the source saw because of it (its data streams
            // closed) is no fault of the task.
            live.source_fault = None;
            // Nothing is wrong with the task itself: start again as soon as
            // both endpoints are there.
            live.retry_at = now;
            let name = live.name_of(endpoint_id).to_string();
            let attempt = live.attempt;
            let (event_code, message) = match why {
                Interruption::Offline => {
                    live.noted = Some(Wait::Offline(endpoint_id.to_string()));
                    (
                        code::ENDPOINT_OFFLINE,
                        format!("endpoint '{name}' went offline; the task waits for it"),
                    )
                }
                Interruption::Paused => {
                    live.noted = Some(Wait::Paused(endpoint_id.to_string()));
                    (code::PAUSED, paused_wait(&name))
                }
                Interruption::Reconnected => (
                    code::FAULT,
                    format!(
                        "endpoint '{name}' reconnected to the hub; the attempt's data work is restarted"
                    ),
                ),
            };
            let live = live.clone();
            // A pause is the owner's choice: the task's fault count and
            // last fault stay as they were.
            let fault = match why {
                Interruption::Paused => None,
                Interruption::Offline => Some(FaultKind::EndpointOffline),
                Interruption::Reconnected => Some(FaultKind::EndpointReconnected),
            }
            .map(|kind| Fault {
                kind,
                message: message.clone(),
            });
            out.push(Action::EndAttempt {
                task_id: id.clone(),
                attempt,
                fault,
            });
            out.push(Action::Event {
                task_id: id.clone(),
                code: event_code,
                description: format!("attempt {attempt}: {message}"),
                always: false,
            });
            self.cancel_both(&id, &live, Over::Attempt, out);
        }
    }

    /// TaskCancel to each of the task's endpoints that is connected: for
    /// the running attempt and those before it, or for every attempt once
    /// the task is over.
    fn cancel_both(&self, task_id: &str, live: &Live, over: Over, out: &mut Vec<Action>) {
        let through_attempt = match over {
            Over::Attempt => Some(live.attempt),
            Over::Task => None,
        };
        let mut endpoints = vec![&live.source];
        if live.destination != live.source {
            endpoints.push(&live.destination);
        }
        for endpoint in endpoints {
            if self.connected.contains_key(endpoint) {
                out.push(Action::Cancel {
                    endpoint_id: endpoint.clone(),
                    task_id: task_id.to_string(),
                    through_attempt,
                });
            }
        }
    }

    fn finish(
        &mut self,
        task_id: &str,
        status: TaskStatus,
        counters: Option<TaskCounters>,
        error: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let Some(live) = self.tasks.remove(task_id) else {
            return;
        };
        let description = match (&status, &counters, &error) {
            (TaskStatus::Succeeded, Some(c), _) => {
                let mut done = format!(
                    "every file is in place: {} transferred, {} skipped, {} bytes",
                    c.files_transferred, c.files_skipped, c.bytes_transferred
                );
                if live.deleted > 0 {
                    done.push_str(&format!(", {} removed (--delete)", live.deleted));
                }
                done
            }
            (_, _, Some(error)) => error.clone(),
            _ => status.as_str().to_lowercase(),
        };
        // Also after success: the destination then refuses a replay of the
        // attempt's capability, which would otherwise stay valid until it
        // expires. Also between attempts (a deadline, a revocation): the
        // destination may keep temporaries for a resume that will not come.
        if live.attempt > 0 {
            self.cancel_both(task_id, &live, Over::Task, out);
        }
        out.push(Action::Finish {
            task_id: task_id.to_string(),
            status,
            counters,
            error,
        });
        out.push(Action::Event {
            task_id: task_id.to_string(),
            code: match status {
                TaskStatus::Succeeded => code::SUCCEEDED,
                TaskStatus::Canceled => code::CANCELED,
                TaskStatus::Failed | TaskStatus::Active => code::FAILED,
            },
            description,
            always: true,
        });
    }

    /// Ends what is past its deadline and starts what can run.
    fn schedule(&mut self, now: i64, out: &mut Vec<Action>) {
        let due: Vec<String> = self
            .unrecorded
            .iter()
            .filter(|(_, (at, ..))| now >= *at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some((_, finish, event)) = self.unrecorded.remove(&id) {
                out.push(finish);
                out.extend(event);
            }
        }
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            let Some(live) = self.tasks.get(&id) else {
                continue;
            };
            if live.deadline.is_some_and(|d| now >= d) {
                self.finish(
                    &id,
                    TaskStatus::Failed,
                    None,
                    Some("deadline passed before the task completed".into()),
                    out,
                );
                continue;
            }
            if let Some((message, due)) = live.source_fault.clone()
                && now >= due
            {
                self.fault(&id, FaultKind::Transfer, &message, now, out);
                continue;
            }
            if live.running || live.retry_at > now {
                continue;
            }
            let offline = [&live.source, &live.destination]
                .into_iter()
                .find(|e| !self.connected.contains_key(*e))
                .cloned();
            let paused = [&live.source, &live.destination]
                .into_iter()
                .find(|e| self.connected.get(*e).is_some_and(|p| p.paused))
                .cloned();
            let relay_possible = self.relay
                && [&live.source, &live.destination]
                    .into_iter()
                    .all(|e| self.connected.get(e).is_some_and(|p| p.relay));
            let route = crate::relay::route(
                self.connected
                    .get(&live.destination)
                    .and_then(|p| p.data_address.as_deref()),
                relay_possible,
            );
            let Some(live) = self.tasks.get_mut(&id) else {
                continue;
            };
            if let Some(endpoint) = offline {
                let wait = Wait::Offline(endpoint.clone());
                if now >= live.quiet_until && live.noted.as_ref() != Some(&wait) {
                    live.noted = Some(wait);
                    out.push(Action::Event {
                        task_id: id.clone(),
                        code: code::ENDPOINT_OFFLINE,
                        description: format!(
                            "endpoint '{}' is not connected to the hub; the task waits for it",
                            live.name_of(&endpoint)
                        ),
                        always: false,
                    });
                }
                continue;
            }
            if let Some(endpoint) = paused {
                let wait = Wait::Paused(endpoint.clone());
                if live.noted.as_ref() != Some(&wait) {
                    out.push(Action::Event {
                        task_id: id.clone(),
                        code: code::PAUSED,
                        description: paused_wait(live.name_of(&endpoint)),
                        always: false,
                    });
                    live.noted = Some(wait);
                }
                continue;
            }
            let Some(route) = route else {
                if live.noted != Some(Wait::NoDataAddress) {
                    live.noted = Some(Wait::NoDataAddress);
                    let message = format!(
                        "destination '{}' accepts no data connections (its daemon advertises no data address); the task waits until it does",
                        live.destination_name
                    );
                    out.push(Action::NoteFault {
                        task_id: id.clone(),
                        kind: FaultKind::NoDataAddress,
                        message: message.clone(),
                    });
                    out.push(Action::Event {
                        task_id: id.clone(),
                        code: code::FAULT,
                        description: message,
                        always: false,
                    });
                }
                continue;
            };
            live.attempt = live.attempt.saturating_add(1);
            live.running = true;
            live.spread = None;
            live.progressed = false;
            live.noted = None;
            out.push(Action::Start {
                task_id: id.clone(),
                attempt: live.attempt,
                source: live.source.clone(),
                destination: live.destination.clone(),
                connect_to: route.connect_to.clone(),
                relay: route.relay,
            });
            let how = match (&route.connect_to, route.relay) {
                (Some(at), false) => format!("at {at}"),
                (Some(at), true) => format!("at {at} (or through the hub's relay)"),
                (None, _) => "through the hub's relay (it takes no direct connections)".into(),
            };
            out.push(Action::Event {
                task_id: id.clone(),
                code: code::STARTED,
                description: format!(
                    "attempt {}: '{}' sends to '{}' {how}",
                    live.attempt, live.source_name, live.destination_name
                ),
                always: false,
            });
        }
    }
}

/// What a cancel ends: the running attempt (another follows), or the task.
#[derive(Debug, Clone, Copy)]
enum Over {
    Attempt,
    Task,
}

#[derive(Debug, Clone, Copy)]
enum Interruption {
    Offline,
    Paused,
    Reconnected,
}

fn paused_wait(name: &str) -> String {
    format!("endpoint '{name}' is paused; the task waits until it is unpaused")
}

fn live_of(row: &ActiveTask, initial: bool, now: i64) -> Live {
    Live {
        source: row.source_id.clone(),
        source_name: row.source_name.clone(),
        destination: row.destination_id.clone(),
        destination_name: row.destination_name.clone(),
        attempt: row.attempt,
        deadline: row.deadline,
        running: false,
        progressed: false,
        faults_in_a_row: 0,
        retry_at: now,
        noted: None,
        source_fault: None,
        deleted: 0,
        accessed: false,
        spread: None,
        quiet_until: if initial {
            now + STARTUP_GRACE
        } else {
            i64::MIN
        },
    }
}

// --- the async glue ---

/// Wakes the scheduler to look at the store now (a task was submitted or
/// canceled) rather than at its next tick.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Runs the scheduler for the life of the runtime.
pub fn spawn(hub: Arc<Hub>, notices: mpsc::UnboundedReceiver<Notice>) -> Wake {
    let wake = Wake::default();
    tokio::spawn(run(hub, notices, wake.clone()));
    wake
}

async fn run(hub: Arc<Hub>, mut notices: mpsc::UnboundedReceiver<Notice>, wake: Wake) {
    let mut core = Core::relaying(hub.relay.enabled());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = Sweeps {
        since: None,
        initial: true,
    };
    let mut revocations = Revocations::default();
    // The links other instances hold of the endpoints of the tasks this
    // one drives (`cluster::remote_peers`).
    let mut remote = HashMap::new();
    loop {
        let input = tokio::select! {
            notice = notices.recv() => match notice {
                Some(notice) => {
                    crate::cluster::noticed(&hub, &notice);
                    if let Notice::Connected { endpoint_id, .. } | Notice::Disconnected { endpoint_id } = &notice {
                        // Its link is (or was) this instance's: if another
                        // instance holds it next, that is news again.
                        remote.remove(endpoint_id);
                    }
                    if crate::cluster::forward_report(&hub, &notice) {
                        continue;
                    }
                    match from_notice(&hub, notice) {
                        Some(input) => vec![input],
                        None => continue,
                    }
                }
                // The registry is gone: the hub is stopping.
                None => return,
            },
            _ = tick.tick() => {
                if revocations.sweep(&hub) {
                    // A revocation changes no task's row: the tasks it
                    // fails are found in the whole picture.
                    sweeps.since = None;
                }
                let mut inputs = sweep(&hub, &mut sweeps);
                // Before the sweep's inputs: a task claimed now sees its
                // remote peers connected when it is scheduled.
                let mut peers = crate::cluster::remote_peers(&hub, &mut remote);
                peers.append(&mut crate::cluster::remote_nodes_gone(&hub));
                peers.append(&mut inputs);
                peers
            }
            _ = wake.0.notified() => sweep(&hub, &mut sweeps),
        };
        // A stack: the first input is handled first.
        let mut inputs: Vec<Input> = input.into_iter().rev().collect();
        while let Some(input) = inputs.pop() {
            let actions = core.handle(input, crate::grants::now());
            inputs.extend(apply(&hub, actions));
        }
    }
}

fn from_notice(hub: &Hub, notice: Notice) -> Option<Input> {
    Some(match notice {
        Notice::Connected {
            endpoint_id,
            paused,
        } => Input::Connected {
            data_address: hub.control.data_address(&endpoint_id),
            relay: hub.control.has_feature(&endpoint_id, crate::relay::FEATURE),
            endpoint_id,
            paused,
        },
        Notice::Disconnected { endpoint_id } => Input::Disconnected { endpoint_id },
        Notice::Paused {
            endpoint_id,
            paused,
        } => Input::Paused {
            endpoint_id,
            paused,
        },
        Notice::Report {
            endpoint_id,
            node,
            task_id,
            attempt,
            report,
        } => Input::Report {
            endpoint_id,
            node,
            task_id,
            attempt,
            report,
        },
        Notice::NodeGone { endpoint_id, node } => Input::NodeGone { endpoint_id, node },
        // For the record other instances read (`cluster::noticed`).
        Notice::Nodes { .. } => return None,
    })
}

/// Revocations made while endpoints are connected (`ferry-hub endpoint
/// revoke` writes the store from another process) reach every connected
/// endpoint within a tick; later connections get the list in their welcome.
#[derive(Debug, Default)]
struct Revocations {
    /// None until the first sweep: what was revoked before the hub started
    /// is in every welcome already.
    known: Option<(u64, HashSet<String>)>,
}

impl Revocations {
    /// Whether endpoints were revoked (or deleted) since the last sweep,
    /// or this is the first (a sweep may have read the tasks before it).
    fn sweep(&mut self, hub: &Hub) -> bool {
        let count = match hub.store.revoked_endpoint_count() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the revoked endpoints");
                return false;
            }
        };
        if self.known.as_ref().is_some_and(|(n, _)| *n == count) {
            return false;
        }
        let listed = match hub
            .store
            .revoked_endpoints(ferry_proto::control::MAX_REVOKED_LISTED)
        {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the revoked endpoints");
                return false;
            }
        };
        let fresh: Vec<String> = match &self.known {
            Some((_, known)) => listed
                .iter()
                .filter(|id| !known.contains(*id))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if !fresh.is_empty() {
            tracing::info!(endpoints = ?fresh, "telling connected endpoints about revoked endpoints");
            hub.control.broadcast_revoked(&fresh);
        }
        self.known = Some((count, listed.into_iter().collect()));
        true
    }
}

/// Where this instance's sweeps are in the store's changes
/// (`ClusterStore::claim_changes`): `None` until the first sweep, and
/// whenever the whole picture must be read again.
#[derive(Debug, Default)]
struct Sweeps {
    since: Option<i64>,
    initial: bool,
}

/// The ACTIVE tasks this hub instance holds (`cluster::claim`), and
/// those it no longer does: what changed since the last sweep, or
/// everything on the first. Claimed and read in one transaction, so a task
/// that ends meanwhile is told as ended, never mistaken for one another
/// instance holds.
fn sweep(hub: &Hub, sweeps: &mut Sweeps) -> Vec<Input> {
    let changes = match crate::cluster::claim(hub, crate::grants::now(), sweeps.since) {
        Ok(changes) => changes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim or renew this instance's tasks");
            return vec![Input::Tick];
        }
    };
    sweeps.since = Some(changes.next);
    let released = Input::Released {
        task_ids: changes.elsewhere,
    };
    if changes.whole {
        vec![
            released,
            Input::Active {
                tasks: changes.held,
                initial: std::mem::take(&mut sweeps.initial),
            },
        ]
    } else {
        vec![
            released,
            Input::Changed {
                tasks: changes.held,
                ended: changes.ended,
            },
        ]
    }
}

/// Carries the actions out; returns what the core must hear about how
/// that went.
fn apply(hub: &Hub, actions: Vec<Action>) -> Vec<Input> {
    let now = crate::grants::now();
    let mut feedback = Vec::new();
    // A task whose stored state refused a change (it ended meanwhile) gets
    // no further events from this batch.
    let mut ended: HashSet<String> = HashSet::new();
    // Ends storage could not take now, with the event that goes with each.
    let mut unrecorded: Vec<(Action, Option<Action>)> = Vec::new();
    // What `--delete` removed, by task, for the audit log.
    let mut removed: BTreeMap<String, Vec<WirePath>> = BTreeMap::new();
    // Told once the batch is recorded, so a message sees the task's last event.
    let mut news: Vec<(String, crate::notify::News)> = Vec::new();
    let stored = |ended: &mut HashSet<String>,
                  task_id: &str,
                  what: &str,
                  result: Result<bool, crate::store::StoreError>| match result {
        Ok(true) => true,
        Ok(false) => {
            ended.insert(task_id.to_string());
            false
        }
        Err(e) => {
            tracing::error!(task = %task_id, error = %e, "cannot record {what}");
            false
        }
    };
    for action in actions {
        match action {
            Action::Start {
                task_id,
                attempt,
                source,
                destination,
                connect_to,
                relay,
            } => {
                match hub.store.begin_attempt(&task_id, attempt) {
                    Ok(true) => hub.notifier.moving(&task_id),
                    Ok(false) => {
                        ended.insert(task_id);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(task = %task_id, error = %e, "cannot record an attempt; retrying");
                        feedback.push(Input::StartDeferred { task_id, attempt });
                        continue;
                    }
                }
                if connect_to.is_some()
                    && let Some(pairs) = spread_plan(hub, &task_id, &source, &destination)
                {
                    match start_spread(hub, &task_id, attempt, &source, &destination, &pairs) {
                        Ok(()) => {
                            tracing::info!(task = %task_id, attempt, shards = pairs.len(), "task attempt started, spread over nodes");
                            // Only what `task show` says: the attempt runs
                            // spread whether or not this is recorded.
                            let nodes = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
                            if let Err(e) = hub.store.spread_attempt(&task_id, attempt, nodes) {
                                tracing::warn!(task = %task_id, error = %e, "cannot record over how many nodes the attempt runs");
                            }
                            feedback.push(Input::Spread {
                                task_id,
                                attempt,
                                pairs: pairs
                                    .into_iter()
                                    .map(|(s, d, _)| (s.node, d.node))
                                    .collect(),
                            });
                        }
                        Err(message) => feedback.push(Input::StartFailed {
                            task_id,
                            attempt,
                            message,
                            fatal: false,
                        }),
                    }
                    continue;
                }
                match capability(hub, &task_id, attempt, &source, &destination, None) {
                    Ok(sealed) => {
                        match hub.control.start_task(&source, sealed, connect_to, relay) {
                            Ok(()) => {
                                tracing::info!(task = %task_id, attempt, "task attempt started")
                            }
                            // A disconnect notice is on its way and ends the attempt.
                            Err(CallError::Offline) => {}
                            Err(e) => feedback.push(Input::StartFailed {
                                task_id,
                                attempt,
                                message: format!("the hub could not reach the source: {e}"),
                                fatal: false,
                            }),
                        }
                    }
                    Err(Unstartable {
                        deferred: true,
                        message,
                        ..
                    }) => {
                        tracing::warn!(task = %task_id, %message, "cannot start the task now; retrying");
                        feedback.push(Input::StartDeferred { task_id, attempt });
                    }
                    Err(Unstartable { message, fatal, .. }) => {
                        tracing::error!(task = %task_id, %message, "cannot start the task");
                        feedback.push(Input::StartFailed {
                            task_id,
                            attempt,
                            message,
                            fatal,
                        });
                    }
                }
            }
            Action::Cancel {
                endpoint_id,
                task_id,
                through_attempt,
            } => {
                if let Err(e) =
                    crate::cluster::cancel_task(hub, &endpoint_id, &task_id, through_attempt)
                {
                    tracing::debug!(task = %task_id, endpoint = %endpoint_id, error = %e, "cannot send a task cancel");
                }
            }
            Action::Progress {
                task_id,
                attempt,
                counters,
            } => {
                stored(
                    &mut ended,
                    &task_id,
                    "progress",
                    hub.store.set_progress(&task_id, attempt, &counters),
                );
            }
            Action::EndAttempt {
                task_id,
                attempt,
                fault,
            } => {
                if let Some(fault) = &fault {
                    hub.metrics.fault(fault.kind);
                }
                stored(
                    &mut ended,
                    &task_id,
                    "the end of an attempt",
                    hub.store
                        .end_attempt(&task_id, attempt, fault.as_ref().map(|f| &*f.message)),
                );
            }
            Action::NoteFault {
                task_id,
                kind,
                message,
            } => {
                hub.metrics.fault(kind);
                stored(
                    &mut ended,
                    &task_id,
                    "a fault",
                    hub.store.note_fault(&task_id, &message),
                );
            }
            Action::Finish {
                ref task_id,
                status,
                ref counters,
                ref error,
            } => {
                let recorded = hub.store.finish_task(
                    task_id,
                    status,
                    counters.as_ref(),
                    error.as_deref(),
                    now,
                );
                match recorded {
                    Err(e) if e.is_transient() => {
                        tracing::warn!(task = %task_id, error = %e, "cannot record the end of a task now; retrying");
                        ended.insert(task_id.clone());
                        unrecorded.push((action, None));
                    }
                    recorded => {
                        if stored(&mut ended, task_id, "the end of a task", recorded) {
                            tracing::info!(task = %task_id, %status, "task ended");
                            hub.task_ended.notify_waiters();
                            news.push((task_id.clone(), crate::notify::News::Ended(status)));
                        }
                    }
                }
            }
            Action::Accessed { task_id } => {
                if !ended.contains(&task_id) {
                    crate::audit::task_accessed(&*hub.store, now, &task_id);
                }
            }
            // Gathered, so a task's many removals cost one lookup and one write.
            Action::Removed { task_id, path } => {
                removed.entry(task_id).or_default().push(path);
            }
            Action::Event {
                ref task_id,
                code,
                ref description,
                always,
            } => {
                if let Some((_, event)) = unrecorded.iter_mut().find(
                    |(finish, _)| matches!(finish, Action::Finish { task_id: t, .. } if t == task_id),
                ) {
                    // Recorded with its end, later.
                    if always && event.is_none() {
                        *event = Some(action);
                    }
                    continue;
                }
                if ended.contains(task_id) {
                    continue;
                }
                match hub
                    .store
                    .add_task_event(task_id, code, description, now, always)
                {
                    Ok(()) if matches!(code, code::ENDPOINT_OFFLINE | code::PAUSED) => news.push((
                        task_id.clone(),
                        crate::notify::News::Inactive(description.clone()),
                    )),
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(task = %task_id, error = %e, "cannot record a task event")
                    }
                }
            }
        }
    }
    for (task_id, paths) in removed {
        crate::audit::task_removed(&*hub.store, now, &task_id, &paths);
    }
    for (task_id, news) in news {
        hub.notifier.tell(&task_id, news);
    }
    feedback.extend(
        unrecorded
            .into_iter()
            .map(|(finish, event)| Input::FinishDeferred {
                finish: Box::new(finish),
                event: event.map(Box::new),
            }),
    );
    feedback
}

#[derive(Debug)]
struct Unstartable {
    message: String,
    fatal: bool,
    /// Storage is unavailable: retry later, with no fault counted.
    deferred: bool,
}

/// The grants each side of a task acts under: none where the task's owner
/// owns the endpoint, else the permission recorded at submission, which
/// must still exist and be live. Fails closed: a task on someone else's
/// endpoint without its permission is never started as the owner.
fn task_grants(
    hub: &Hub,
    task_id: &str,
    source: &str,
    destination: &str,
    now: i64,
) -> Result<(Option<ShareGrant>, Option<ShareGrant>), Unstartable> {
    let unreadable = |e: crate::store::StoreError| Unstartable {
        message: format!("the hub cannot read the task's permissions: {e}"),
        fatal: false,
        deferred: e.is_transient(),
    };
    let lapsed = |why: String| Unstartable {
        message: why,
        fatal: true,
        deferred: false,
    };
    let task = hub
        .store
        .task(task_id)
        .map_err(unreadable)?
        .ok_or_else(|| lapsed("the task vanished from the hub's database".into()))?;
    let recorded = hub.store.task_grants(task_id).map_err(unreadable)?;
    let mut grants = [None, None];
    for (slot, (side, endpoint_id)) in [("source", source), ("destination", destination)]
        .into_iter()
        .enumerate()
    {
        let endpoint = hub
            .store
            .endpoint(endpoint_id)
            .map_err(unreadable)?
            .ok_or_else(|| lapsed(format!("the task's {side} endpoint is gone")))?;
        if endpoint.owner_id == task.owner_id {
            continue;
        }
        let permission = recorded
            .iter()
            .find(|(s, _)| s == side)
            .map(|(_, id)| hub.store.permission(id))
            .transpose()
            .map_err(unreadable)?
            .flatten()
            .filter(|p| p.expires.is_none_or(|e| e >= now))
            .ok_or_else(|| {
                lapsed(format!(
                    "the permission this task used on endpoint '{}' was deleted or expired",
                    endpoint.display_name
                ))
            })?;
        grants[slot] = Some(crate::sharing::grant_of(&permission));
    }
    let [source_grant, destination_grant] = grants;
    Ok((source_grant, destination_grant))
}

/// The signed capability for one attempt of a stored task.
/// The pairs of nodes (source node, destination node and its data
/// address) a task's attempt is spread over: `None` for one machine to
/// move it all. Spread only when both endpoints have two or more nodes
/// that move shards connected to the hub (to this instance or, among
/// several, to any live one: `cluster::shard_nodes`), each destination
/// node listening for data, and the task walks a directory; never with
/// `--delete` (one node's view of the destination is not the task's) or
/// `--on-success` (the hook runs once, where every file landed).
fn spread_plan(
    hub: &Hub,
    task_id: &str,
    source: &str,
    destination: &str,
) -> Option<Vec<(ShardNode, ShardNode, String)>> {
    let sources = crate::cluster::shard_nodes(hub, source);
    let destinations: Vec<(ShardNode, String)> = crate::cluster::shard_nodes(hub, destination)
        .into_iter()
        .filter_map(|node| {
            let address = node.data_address.clone()?;
            Some((node, address))
        })
        .collect();
    let k = sources.len().min(destinations.len());
    if k < 2 {
        return None;
    }
    let work = hub.store.task_work(task_id).ok()??;
    if work.options.delete
        || work.options.on_success.is_some()
        || !work.items.iter().any(|i| i.recursive)
    {
        return None;
    }
    Some(
        sources
            .into_iter()
            .zip(destinations)
            .take(k)
            .map(|(s, (d, address))| (s, d, address))
            .collect(),
    )
}

/// Sends each source node its shard of the attempt, to its paired
/// destination node; the first failure is the attempt's.
fn start_spread(
    hub: &Hub,
    task_id: &str,
    attempt: u32,
    source: &str,
    destination: &str,
    pairs: &[(ShardNode, ShardNode, String)],
) -> Result<(), String> {
    let count = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
    // A large file is split over the pairs only when every node of them
    // knows how (an older node would send or await the file whole), and
    // not at checksum level: each node would hash the whole file there
    // to compare, and the file is unchanged more often than not.
    let every = |feature: &str| {
        pairs
            .iter()
            .all(|(s, d, _)| s.has(feature) && d.has(feature))
    };
    let split = every(ferry_proto::task::FEATURE_SPLIT_FILES)
        && hub
            .store
            .task_work(task_id)
            .ok()
            .flatten()
            .is_some_and(|work| {
                work.options.sync_level != Some(ferry_proto::task::SyncLevel::Checksum)
            });
    for (index, (source_node, destination_node, address)) in (0u32..).zip(pairs) {
        let shard = ferry_proto::task::Shard {
            index,
            count,
            split,
            // Larger files too, where every node cuts them alike.
            large: split && every(ferry_proto::task::FEATURE_SPLIT_LARGE_FILES),
        };
        let sealed = capability(hub, task_id, attempt, source, destination, Some(shard))
            .map_err(|e| e.message)?;
        // Watched before the start: a node that goes at once is heard of.
        crate::cluster::watch(hub, source, source_node);
        crate::cluster::watch(hub, destination, destination_node);
        crate::cluster::start_shard(hub, source, source_node, sealed, address.clone()).map_err(
            |e| {
                format!(
                    "the hub could not reach node {} of the source: {e}",
                    source_node.node
                )
            },
        )?;
    }
    Ok(())
}

fn capability(
    hub: &Hub,
    task_id: &str,
    attempt: u32,
    source: &str,
    destination: &str,
    shard: Option<ferry_proto::task::Shard>,
) -> Result<String, Unstartable> {
    let work = match hub.store.task_work(task_id) {
        Ok(Some(work)) => work,
        Ok(None) => {
            return Err(Unstartable {
                message: "the task vanished from the hub's database".into(),
                fatal: true,
                deferred: false,
            });
        }
        Err(e) => {
            return Err(Unstartable {
                message: format!("the hub cannot read the task: {e}"),
                fatal: false,
                deferred: e.is_transient(),
            });
        }
    };
    // A destination too old to run hooks would land the data and drop
    // the hook without a word: such a task fails instead, saying why.
    let mut label = None;
    if let Some(hook) = &work.options.on_success {
        if let Some(None) = hub.control.hooks(destination) {
            return Err(Unstartable {
                message: format!(
                    "the destination endpoint runs an older ferry that cannot run hooks, so not '{hook}' (--on-success); upgrade it"
                ),
                fatal: true,
                deferred: false,
            });
        }
        label = match hub.store.task(task_id) {
            Ok(row) => row.and_then(|r| r.label),
            Err(e) => {
                return Err(Unstartable {
                    message: format!("the hub cannot read the task: {e}"),
                    fatal: false,
                    deferred: e.is_transient(),
                });
            }
        };
    }
    let now = crate::grants::now();
    let (source_grant, destination_grant) = task_grants(hub, task_id, source, destination, now)?;
    let cap = Capability {
        task_id: task_id.to_string(),
        attempt,
        source_endpoint: source.to_string(),
        destination_endpoint: destination.to_string(),
        items: work.items,
        options: work.options,
        issued: now,
        expires: now + crate::capability::CAPABILITY_TTL,
        source_grant,
        destination_grant,
        label,
        shard,
    };
    hub.signer.sign(&cap).map_err(|e| Unstartable {
        message: format!("the hub cannot sign the task's capability: {e:#}"),
        fatal: false,
        deferred: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_end_is_one_event_cut_to_bounds() {
        use ferry_proto::task::{HookEnd, MAX_HOOK_LINE, MAX_HOOK_LINES};
        let (c, said) = hook_event("analyse", &HookEnd::Exited { code: 0 }, &["4242".into()]);
        assert_eq!(c, code::HOOK_SUCCEEDED);
        assert_eq!(said, "hook 'analyse' exited with status 0; output: 4242");
        let (c, said) = hook_event("x", &HookEnd::Exited { code: 3 }, &[]);
        assert_eq!(
            (c, said.as_str()),
            (code::HOOK_FAILED, "hook 'x' exited with status 3")
        );
        assert!(is_error(code::HOOK_FAILED) && !is_error(code::HOOK_SUCCEEDED));
        // A hostile endpoint's report is cut to what an honest one sends.
        let flood: Vec<String> = (0..1000)
            .map(|i| format!("{i}{}", "y".repeat(5000)))
            .collect();
        let (_, said) = hook_event("x", &HookEnd::Signaled { signal: 9 }, &flood);
        assert!(
            said.len() < (MAX_HOOK_LINE + 3) * MAX_HOOK_LINES + 100,
            "{}",
            said.len()
        );
        assert!(said.contains("killed by signal 9") && said.contains("999y"));
    }
    use ferry_proto::wire_path::WirePath;

    const SRC: &str = "src-id";
    const DST: &str = "dst-id";

    fn row(id: &str, deadline: Option<i64>) -> ActiveTask {
        ActiveTask {
            id: id.into(),
            source_id: SRC.into(),
            source_name: "laptop".into(),
            source_revoked: false,
            destination_id: DST.into(),
            destination_name: "cluster".into(),
            destination_revoked: false,
            attempt: 0,
            deadline,
        }
    }

    fn connect(core: &mut Core, id: &str, now: i64) -> Vec<Action> {
        core.handle(
            Input::Connected {
                endpoint_id: id.into(),
                data_address: Some(format!("{id}.example:50000")),
                paused: false,
                relay: false,
            },
            now,
        )
    }

    fn report(core: &mut Core, from: &str, attempt: u32, r: TaskReport, now: i64) -> Vec<Action> {
        core.handle(
            Input::Report {
                endpoint_id: from.into(),
                node: ferry_proto::api::PRIMARY_NODE.into(),
                task_id: "t".into(),
                attempt,
                report: r,
            },
            now,
        )
    }

    fn starts(actions: &[Action]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    fn codes(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    fn cancels(actions: &[Action]) -> Vec<String> {
        let mut v: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Cancel { endpoint_id, .. } => Some(endpoint_id.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    fn finished(actions: &[Action]) -> Option<(TaskStatus, Option<String>)> {
        actions.iter().find_map(|a| match a {
            Action::Finish { status, error, .. } => Some((*status, error.clone())),
            _ => None,
        })
    }

    fn active(core: &mut Core, tasks: Vec<ActiveTask>, now: i64) -> Vec<Action> {
        core.handle(
            Input::Active {
                tasks,
                initial: false,
            },
            now,
        )
    }

    /// A core with task "t" running attempt 1.
    fn running() -> Core {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        connect(&mut core, DST, 0);
        let out = active(&mut core, vec![row("t", None)], 0);
        assert_eq!(starts(&out), [1]);
        core
    }

    /// A spread attempt: its counters are the shards' sum, it succeeds
    /// once every shard did, and a node of it going away is a fault whose
    /// retry is a new attempt (spread or not, as the nodes then allow).
    #[test]
    fn a_spread_attempt_sums_its_shards_and_succeeds_only_when_all_did() {
        let mut core = running();
        let spread = Input::Spread {
            task_id: "t".into(),
            attempt: 1,
            pairs: vec![
                ("primary".into(), "primary".into()),
                ("node-2".into(), "dtn".into()),
            ],
        };
        let out = core.handle(spread, 1);
        assert!(
            out.iter().any(|a| matches!(a, Action::Event { description, .. } if description.contains("spread over 2 nodes"))),
            "{out:?}"
        );
        let shard = |core: &mut Core, node: &str, r: TaskReport| {
            core.handle(
                Input::Report {
                    endpoint_id: DST.into(),
                    node: node.into(),
                    task_id: "t".into(),
                    attempt: 1,
                    report: r,
                },
                2,
            )
        };
        let part = |files: u64, walk_done: bool| TaskCounters {
            files,
            files_transferred: files,
            bytes_transferred: files * 10,
            walk_done,
            ..TaskCounters::default()
        };
        shard(
            &mut core,
            "primary",
            TaskReport::Progress {
                counters: part(3, true),
            },
        );
        let out = shard(
            &mut core,
            "dtn",
            TaskReport::Progress {
                counters: part(4, false),
            },
        );
        let Some(Action::Progress { counters, .. }) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!((counters.files, counters.bytes_transferred), (7, 70));
        assert!(!counters.walk_done, "one shard still walks");
        // A node outside the spread speaks for no shard.
        assert!(
            shard(
                &mut core,
                "other",
                TaskReport::Succeeded {
                    counters: part(9, true)
                }
            )
            .is_empty()
        );
        let out = shard(
            &mut core,
            "primary",
            TaskReport::Succeeded {
                counters: part(3, true),
            },
        );
        assert_eq!(finished(&out), None, "one shard is still moving: {out:?}");
        let out = shard(
            &mut core,
            "dtn",
            TaskReport::Succeeded {
                counters: part(5, true),
            },
        );
        assert_eq!(
            finished(&out).map(|f| f.0),
            Some(TaskStatus::Succeeded),
            "{out:?}"
        );
        let Some(Action::Finish {
            counters: Some(all),
            ..
        }) = out.iter().find(|a| matches!(a, Action::Finish { .. }))
        else {
            panic!("{out:?}");
        };
        assert_eq!((all.files_transferred, all.walk_done), (8, true));

        // Another run: a node of the spread goes away mid-attempt.
        let mut core = running();
        core.handle(
            Input::Spread {
                task_id: "t".into(),
                attempt: 1,
                pairs: vec![
                    ("primary".into(), "primary".into()),
                    ("n2".into(), "n2".into()),
                ],
            },
            1,
        );
        // A node the attempt does not use changes nothing.
        let out = core.handle(
            Input::NodeGone {
                endpoint_id: DST.into(),
                node: "n9".into(),
            },
            2,
        );
        assert!(out.is_empty(), "{out:?}");
        let out = core.handle(
            Input::NodeGone {
                endpoint_id: DST.into(),
                node: "n2".into(),
            },
            2,
        );
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::EndAttempt { fault: Some(_), .. })),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Cancel { endpoint_id, .. } if endpoint_id == DST)),
            "the other shards are stopped: {out:?}"
        );
        assert_eq!(starts(&core.handle(Input::Tick, 100)), [2]);
    }

    /// A start that storage could not record is no fault of the task: no
    /// fault, no event, and the next tick starts it again.
    #[test]
    fn a_start_storage_could_not_record_is_retried_without_a_fault() {
        let mut core = running();
        let out = core.handle(
            Input::StartDeferred {
                task_id: "t".into(),
                attempt: 1,
            },
            5,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(starts(&core.handle(Input::Tick, 6)), [2]);
    }

    /// The glue: with storage failing, a decided start comes back as
    /// deferred (not as a failed start, which counts a fault), and a task
    /// whose capability cannot be read now is deferred too.
    #[test]
    fn the_scheduler_defers_a_start_while_storage_fails() {
        use crate::store::failing::FailingStorage;
        let failing = Arc::new(FailingStorage::new(Arc::new(
            crate::store::SqliteStore::in_memory().unwrap(),
        )));
        let hub = crate::web::test_hub(failing.clone());
        let uid = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint(SRC, uid, "laptop", 0).unwrap();
        hub.store.create_endpoint(DST, uid, "cluster", 0).unwrap();
        let mut task = crate::store::conformance::new_task("t", uid, 0);
        (task.source_id, task.destination_id) = (SRC.into(), DST.into());
        hub.store.create_task(&task, code::SUBMITTED, "x").unwrap();
        let start = || {
            vec![Action::Start {
                task_id: "t".into(),
                attempt: 1,
                source: SRC.into(),
                destination: DST.into(),
                connect_to: Some("dst.example:50000".into()),
                relay: false,
            }]
        };
        let deferred = [Input::StartDeferred {
            task_id: "t".into(),
            attempt: 1,
        }];
        failing.fail("begin_attempt");
        assert_eq!(apply(&hub, start()), deferred);
        failing.recover();
        failing.fail("task_work");
        assert_eq!(apply(&hub, start()), deferred);
        assert_eq!(failing.failures("task_work"), 1);
        let row = hub.store.task("t").unwrap().unwrap();
        assert_eq!((row.status, row.faults), (TaskStatus::Active, 0));
    }

    /// A task that names a hook carries the name and its label to the
    /// destination, and never starts on one too old to run hooks.
    #[test]
    fn a_hook_travels_in_the_capability_and_an_older_destination_fails_the_task() {
        let hub = crate::web::for_tests();
        let uid = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint(SRC, uid, "laptop", 0).unwrap();
        hub.store.create_endpoint(DST, uid, "cluster", 0).unwrap();
        let mut task = crate::store::conformance::new_task("t", uid, 0);
        (task.source_id, task.destination_id) = (SRC.into(), DST.into());
        task.options.on_success = Some("analyse".into());
        task.label = Some("run7".into());
        hub.store.create_task(&task, code::SUBMITTED, "x").unwrap();

        let _old = hub.control.connect_for_tests(DST, None);
        let refused = capability(&hub, "t", 1, SRC, DST, None).unwrap_err();
        assert!(
            refused.fatal && refused.message.contains("older ferry"),
            "{refused:?}"
        );

        let _new = hub
            .control
            .connect_for_tests(DST, Some(vec!["analyse".into()]));
        let sealed = capability(&hub, "t", 1, SRC, DST, None).unwrap();
        let (body, _) = Capability::open(&sealed).unwrap();
        let cap = Capability::parse_verified(&body).unwrap();
        assert_eq!(cap.options.on_success.as_deref(), Some("analyse"));
        assert_eq!(cap.label.as_deref(), Some("run7"));
    }

    /// An end storage could not take is recorded later, with its event
    /// (once), and until then the task, still ACTIVE in the store, is not
    /// taken up and started again.
    #[test]
    fn an_end_storage_could_not_record_is_recorded_later_and_the_task_never_restarts() {
        use crate::store::failing::FailingStorage;
        let failing = Arc::new(FailingStorage::new(Arc::new(
            crate::store::SqliteStore::in_memory().unwrap(),
        )));
        let hub = crate::web::test_hub(failing.clone());
        let uid = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint(SRC, uid, "laptop", 0).unwrap();
        hub.store.create_endpoint(DST, uid, "cluster", 0).unwrap();
        let mut task = crate::store::conformance::new_task("t", uid, 0);
        (task.source_id, task.destination_id) = (SRC.into(), DST.into());
        hub.store.create_task(&task, code::SUBMITTED, "x").unwrap();

        let mut core = running();
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Succeeded {
                counters: counters(10, 100),
            },
            10,
        );
        failing.fail("finish_task");
        let feedback = apply(&hub, out);
        assert!(
            matches!(
                &feedback[..],
                [Input::FinishDeferred { event: Some(_), .. }]
            ),
            "{feedback:?}"
        );
        assert_eq!(
            hub.store.task("t").unwrap().unwrap().status,
            TaskStatus::Active
        );
        let codes_stored = |hub: &Hub| -> Vec<String> {
            hub.store
                .task_events("t", 100)
                .unwrap()
                .into_iter()
                .map(|e| e.code)
                .collect()
        };
        assert_eq!(
            codes_stored(&hub),
            [code::SUBMITTED],
            "no event before its end"
        );
        for input in feedback {
            assert!(
                core.handle(input, 10).is_empty(),
                "not again in the same second"
            );
        }
        // The store still lists it as ACTIVE: it is not taken up again.
        let still_active = active(&mut core, vec![row("t", None)], 10);
        assert!(starts(&still_active).is_empty(), "{still_active:?}");
        failing.recover();
        let retried = core.handle(Input::Tick, 11);
        assert_eq!(
            finished(&retried).map(|(status, _)| status),
            Some(TaskStatus::Succeeded)
        );
        assert!(apply(&hub, retried).is_empty());
        assert_eq!(
            hub.store.task("t").unwrap().unwrap().status,
            TaskStatus::Succeeded
        );
        assert_eq!(codes_stored(&hub), [code::SUBMITTED, code::SUCCEEDED]);
        assert!(core.handle(Input::Tick, 20).is_empty(), "recorded once");
    }

    fn counters(transferred: u64, bytes: u64) -> TaskCounters {
        TaskCounters {
            files: 10,
            files_transferred: transferred,
            files_skipped: 0,
            bytes_transferred: bytes,
            ..TaskCounters::default()
        }
    }

    #[test]
    fn a_task_starts_when_both_endpoints_are_there_and_tells_the_source_where_to_go() {
        let mut core = Core::default();
        let out = active(&mut core, vec![row("t", None)], 0);
        assert_eq!(codes(&out), [code::ENDPOINT_OFFLINE], "{out:?}");
        assert!(starts(&connect(&mut core, SRC, 1)).is_empty());
        let out = connect(&mut core, DST, 2);
        assert_eq!(
            out[0],
            Action::Start {
                task_id: "t".into(),
                attempt: 1,
                source: SRC.into(),
                destination: DST.into(),
                connect_to: Some("dst-id.example:50000".into()),
                relay: false,
            }
        );
        assert_eq!(codes(&out), [code::STARTED]);
        // Running: ticks start nothing more.
        assert!(core.handle(Input::Tick, 3).is_empty());
    }

    #[test]
    fn an_offline_wait_is_told_once_per_endpoint() {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        let out = active(&mut core, vec![row("t", None)], 0);
        assert_eq!(codes(&out), [code::ENDPOINT_OFFLINE]);
        assert!(core.handle(Input::Tick, 1).is_empty());
        assert!(active(&mut core, vec![row("t", None)], 2).is_empty());
        // Now the source is missing too: that is news.
        let out = core.handle(
            Input::Disconnected {
                endpoint_id: SRC.into(),
            },
            3,
        );
        assert!(
            matches!(&out[..], [Action::Event { code: code::ENDPOINT_OFFLINE, description, .. }] if description.contains("'laptop'")),
            "{out:?}"
        );
        assert!(core.handle(Input::Tick, 4).is_empty());
    }

    #[test]
    fn tasks_loaded_at_hub_start_wait_quietly_for_reconnects() {
        let mut core = Core::default();
        let out = core.handle(
            Input::Active {
                tasks: vec![row("t", None)],
                initial: true,
            },
            100,
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(core.handle(Input::Tick, 100 + STARTUP_GRACE - 1).is_empty());
        assert_eq!(
            codes(&core.handle(Input::Tick, 100 + STARTUP_GRACE)),
            [code::ENDPOINT_OFFLINE]
        );
    }

    #[test]
    fn a_task_loaded_again_after_a_restart_continues_its_attempt_numbering() {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        connect(&mut core, DST, 0);
        let mut t = row("t", None);
        t.attempt = 4;
        let out = core.handle(
            Input::Active {
                tasks: vec![t],
                initial: true,
            },
            0,
        );
        assert_eq!(starts(&out), [5]);
        // The old attempt's late words change nothing.
        assert!(
            report(
                &mut core,
                DST,
                4,
                TaskReport::Succeeded {
                    counters: counters(1, 1)
                },
                1
            )
            .is_empty()
        );
    }

    #[test]
    fn progress_counts_only_from_the_destination_and_for_the_current_attempt() {
        let mut core = running();
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Progress {
                counters: counters(3, 300),
            },
            1,
        );
        assert_eq!(
            out,
            [Action::Progress {
                task_id: "t".into(),
                attempt: 1,
                counters: counters(3, 300)
            }]
        );
        let from_source = TaskReport::Progress {
            counters: counters(9, 900),
        };
        assert!(report(&mut core, SRC, 1, from_source.clone(), 1).is_empty());
        assert!(report(&mut core, DST, 0, from_source.clone(), 1).is_empty());
        assert!(report(&mut core, DST, 2, from_source.clone(), 1).is_empty());
        assert!(
            report(&mut core, "stranger", 1, from_source, 1).is_empty(),
            "another endpoint cannot speak for the task"
        );
    }

    #[test]
    fn skipped_and_resent_files_become_events() {
        let mut core = running();
        let path = WirePath::from_bytes("/data/fifo");
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Skipped {
                path: path.clone(),
                reason: "not a regular file".into(),
            },
            1,
        );
        assert_eq!(codes(&out), [code::SKIPPED]);
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Resent {
                path,
                reason: "digest mismatch".into(),
            },
            1,
        );
        assert_eq!(codes(&out), [code::RESENT]);
        let started = report(&mut core, DST, 1, TaskReport::Started, 1);
        assert_eq!(codes(&started), [code::TRANSFERRING]);
        assert!(
            started.contains(&Action::Accessed {
                task_id: "t".into()
            }),
            "{started:?}"
        );
        let again = report(&mut core, DST, 1, TaskReport::Started, 2);
        assert!(
            !again.iter().any(|a| matches!(a, Action::Accessed { .. })),
            "recorded once per task: {again:?}"
        );
    }

    #[test]
    fn a_failure_names_the_endpoint_where_it_happened_whoever_reports_it() {
        // The destination relays the source's abort: the source is named.
        let mut core = running();
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Failed {
                message: "cannot read /data/x: no such file or directory".into(),
                side: Some(Side::Source),
            },
            1,
        );
        assert_eq!(
            finished(&out).unwrap().1.as_deref(),
            Some("'laptop' (the source) cannot read /data/x: no such file or directory")
        );
        let mut core = running();
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Failed {
                message: "refuses /tmp/x: it is outside the paths this endpoint shares".into(),
                side: Some(Side::Destination),
            },
            1,
        );
        assert_eq!(
            finished(&out).unwrap().1.as_deref(),
            Some(
                "'cluster' (the destination) refuses /tmp/x: it is outside the paths this endpoint shares"
            )
        );
        // An older endpoint does not say: the reporter is named.
        let mut core = running();
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Fault {
                message: "connection reset".into(),
                side: None,
            },
            1,
        );
        assert!(out.iter().any(|a| matches!(a,
            Action::EndAttempt { fault: Some(Fault { message: m, .. }), .. } if m == "'cluster' reported: connection reset")));
    }

    #[test]
    fn deletions_become_events_and_are_counted_at_the_end() {
        let mut core = running();
        let deleted = |path: &str| TaskReport::Deleted {
            path: WirePath::from_bytes(path),
        };
        assert!(
            report(&mut core, SRC, 1, deleted("/d/x"), 1).is_empty(),
            "only the destination deletes"
        );
        for path in ["/d/stale", "/d/old/f", "/d/old"] {
            let out = report(&mut core, DST, 1, deleted(path), 1);
            assert_eq!(codes(&out), [code::DELETED]);
            assert!(
                matches!(&out[0], Action::Event { description, .. } if description.starts_with(path)),
                "{out:?}"
            );
            assert!(
                matches!(&out[1], Action::Removed { path: p, .. } if p.as_bytes() == path.as_bytes()),
                "for the audit log: {out:?}"
            );
        }
        assert!(report(&mut core, DST, 1, TaskReport::Unknown, 1).is_empty());
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Succeeded {
                counters: counters(1, 1),
            },
            2,
        );
        assert!(
            out.iter().any(|a| matches!(a,
                Action::Event { code: code::SUCCEEDED, description, .. } if description.ends_with(", 3 removed (--delete)"))),
            "{out:?}"
        );
    }

    #[test]
    fn faults_end_the_attempt_and_retry_with_growing_backoff() {
        let mut core = running();
        let fault = || TaskReport::Fault {
            message: "connection reset".into(),
            side: None,
        };
        let out = report(&mut core, DST, 1, fault(), 10);
        assert!(matches!(
            &out[0],
            Action::EndAttempt { attempt: 1, fault: Some(Fault { kind: FaultKind::Transfer, message: m }), .. } if m.contains("connection reset")
        ));
        assert_eq!(codes(&out), [code::FAULT]);
        assert_eq!(cancels(&out), [DST, SRC], "both ends stop the attempt");
        // A second fault report of the same attempt is stale.
        assert!(report(&mut core, SRC, 1, fault(), 10).is_empty());
        assert!(core.handle(Input::Tick, 11).is_empty());
        assert_eq!(starts(&core.handle(Input::Tick, 12)), [2], "after 2s");
        report(&mut core, DST, 2, fault(), 20);
        assert!(core.handle(Input::Tick, 23).is_empty());
        assert_eq!(starts(&core.handle(Input::Tick, 24)), [3], "after 4s");
        report(&mut core, DST, 3, fault(), 30);
        assert!(core.handle(Input::Tick, 37).is_empty());
        assert_eq!(starts(&core.handle(Input::Tick, 38)), [4], "after 8s");
        // Progress in an attempt starts the backoff over.
        report(
            &mut core,
            DST,
            4,
            TaskReport::Progress {
                counters: counters(1, 10),
            },
            40,
        );
        report(&mut core, DST, 4, fault(), 40);
        assert_eq!(starts(&core.handle(Input::Tick, 42)), [5]);
    }

    #[test]
    fn a_source_fault_waits_for_the_destinations_verdict() {
        let fault = |m: &str| TaskReport::Fault {
            message: m.into(),
            side: None,
        };
        // The destination failed the task; the source, still writing, saw
        // the connection close first.
        let mut core = running();
        assert!(report(&mut core, SRC, 1, fault("broken pipe"), 10).is_empty());
        assert!(core.handle(Input::Tick, 11).is_empty());
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Failed {
                message: "no permission to write /x".into(),
                side: None,
            },
            12,
        );
        let (status, error) = finished(&out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(error.unwrap().contains("no permission"));
        // The destination's own fault: its words, once.
        let mut core = running();
        report(&mut core, SRC, 1, fault("broken pipe"), 10);
        let out = report(&mut core, DST, 1, fault("disk is full"), 11);
        assert!(matches!(
            &out[0],
            Action::EndAttempt { fault: Some(Fault { message: m, .. }), .. } if m.contains("disk is full") && m.contains("broken pipe")
        ));
        let later = core.handle(Input::Tick, 11 + VERDICT_WITHIN);
        assert!(
            !later.iter().any(|a| matches!(a, Action::EndAttempt { .. })),
            "the attempt ends once: {later:?}"
        );
        // No verdict in time: the source's fault stands.
        let mut core = running();
        report(
            &mut core,
            SRC,
            1,
            fault("cannot read /data/a: I/O error"),
            10,
        );
        assert!(core.handle(Input::Tick, 10 + VERDICT_WITHIN - 1).is_empty());
        let out = core.handle(Input::Tick, 10 + VERDICT_WITHIN);
        assert!(matches!(
            &out[0],
            Action::EndAttempt { attempt: 1, fault: Some(Fault { kind: FaultKind::Transfer, message: m }), .. } if m.contains("I/O error")
        ));
        assert_eq!(cancels(&out), [DST, SRC]);
        // With the destination offline there is no verdict to wait for.
        let mut core = running();
        core.handle(
            Input::Disconnected {
                endpoint_id: DST.into(),
            },
            10,
        );
        assert!(
            report(&mut core, SRC, 1, fault("x"), 10).is_empty(),
            "attempt already over"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let delays: Vec<i64> = (1..=8).map(backoff).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), 2);
        assert_eq!(backoff(u32::MAX), 60);
    }

    #[test]
    fn an_endpoint_going_offline_pauses_the_task_until_it_returns() {
        let mut core = running();
        let out = core.handle(
            Input::Disconnected {
                endpoint_id: DST.into(),
            },
            5,
        );
        assert!(matches!(
            &out[0],
            Action::EndAttempt { attempt: 1, fault: Some(Fault { kind: FaultKind::EndpointOffline, message: m }), .. } if m.contains("'cluster' went offline")
        ));
        assert_eq!(codes(&out), [code::ENDPOINT_OFFLINE], "told once: {out:?}");
        assert_eq!(cancels(&out), [SRC], "only the one still connected");
        assert!(finished(&out).is_none(), "offline never fails a task");
        // Waiting, however long, without repeating itself.
        for now in 6..500 {
            assert!(core.handle(Input::Tick, now).is_empty());
        }
        // A report from the interrupted attempt is stale now.
        assert!(
            report(
                &mut core,
                DST,
                1,
                TaskReport::Succeeded {
                    counters: counters(10, 1)
                },
                500
            )
            .is_empty()
        );
        let out = connect(&mut core, DST, 501);
        assert_eq!(starts(&out), [2], "right away, no backoff");
    }

    fn pause(core: &mut Core, id: &str, paused: bool, now: i64) -> Vec<Action> {
        core.handle(
            Input::Paused {
                endpoint_id: id.into(),
                paused,
            },
            now,
        )
    }

    fn retry_delays(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event {
                    code: code::FAULT,
                    description,
                    ..
                } => description
                    .rsplit("retrying in ")
                    .next()
                    .map(str::to_string),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_pause_ends_the_attempt_without_a_fault_and_unpausing_starts_at_once() {
        let fault = || TaskReport::Fault {
            message: "peer closed connection without sending TLS close_notify".into(),
            side: None,
        };
        for paused in [SRC, DST] {
            let mut core = running();
            // One fault first, so the backoff has something to grow from.
            assert_eq!(
                retry_delays(&report(&mut core, DST, 1, fault(), 10)),
                ["2s"]
            );
            assert_eq!(starts(&core.handle(Input::Tick, 12)), [2]);

            let out = pause(&mut core, paused, true, 13);
            assert!(
                matches!(
                    &out[0],
                    Action::EndAttempt {
                        attempt: 2,
                        fault: None,
                        ..
                    }
                ),
                "a pause is not counted as a fault: {out:?}"
            );
            assert_eq!(codes(&out), [code::PAUSED], "{out:?}");
            assert!(
                matches!(&out[1], Action::Event { description, .. } if description.contains("is paused; the task waits until it is unpaused")),
                "{out:?}"
            );
            assert_eq!(cancels_through(&out), [Some(2), Some(2)]);
            // What either end says about the stopped attempt is stale.
            assert!(report(&mut core, SRC, 2, fault(), 13).is_empty());
            assert!(report(&mut core, DST, 2, fault(), 13).is_empty());
            // Waiting, however long, without a word more or a retry.
            for now in 14..500 {
                assert!(core.handle(Input::Tick, now).is_empty());
            }
            let out = pause(&mut core, paused, false, 500);
            assert_eq!(starts(&out), [3], "at once, no backoff: {out:?}");
            assert_eq!(codes(&out), [code::STARTED]);
            // The pause did not count: the next fault is the second in a row.
            assert_eq!(
                retry_delays(&report(&mut core, DST, 3, fault(), 501)),
                ["4s"]
            );
        }
    }

    #[test]
    fn a_source_fault_awaiting_the_verdict_is_dropped_by_a_pause() {
        // The source saw its streams close before the destination's pause
        // notice reached the hub.
        let mut core = running();
        let fault = TaskReport::Fault {
            message: "the destination closed the connection".into(),
            side: None,
        };
        assert!(report(&mut core, SRC, 1, fault, 10).is_empty());
        let out = pause(&mut core, DST, true, 11);
        assert_eq!(codes(&out), [code::PAUSED]);
        let later = core.handle(Input::Tick, 11 + VERDICT_WITHIN);
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(starts(&pause(&mut core, DST, false, 30)), [2]);
    }

    #[test]
    fn a_task_for_a_paused_endpoint_waits_told_once_and_each_pause_is_news() {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        core.handle(
            Input::Connected {
                endpoint_id: DST.into(),
                data_address: Some("dst.example:50000".into()),
                paused: true,
                relay: false,
            },
            0,
        );
        let out = active(&mut core, vec![row("t", None)], 1);
        assert_eq!(codes(&out), [code::PAUSED], "{out:?}");
        assert!(starts(&out).is_empty());
        assert!(active(&mut core, vec![row("t", None)], 2).is_empty());
        // The source pauses too, and unpauses: the task still waits, for
        // the destination.
        pause(&mut core, SRC, true, 3);
        let out = pause(&mut core, SRC, false, 4);
        assert!(starts(&out).is_empty());
        assert!(
            out.iter().all(|a| matches!(a, Action::Event { code: code::PAUSED, description, .. } if description.contains("'cluster'"))),
            "{out:?}"
        );
        let out = pause(&mut core, DST, false, 5);
        assert_eq!(starts(&out), [1]);
        assert_eq!(codes(&pause(&mut core, DST, true, 6)), [code::PAUSED]);
    }

    #[test]
    fn a_daemon_that_reconnects_without_a_disconnect_restarts_the_attempt() {
        let mut core = running();
        let out = connect(&mut core, SRC, 5);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::EndAttempt {
                attempt: 1,
                fault: Some(Fault {
                    kind: FaultKind::EndpointReconnected,
                    ..
                }),
                ..
            }
        )));
        assert_eq!(starts(&out), [2]);
    }

    #[test]
    fn success_folds_the_destinations_counters_and_ends_the_task() {
        let mut core = running();
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Succeeded {
                counters: counters(1, 1),
            },
            1,
        );
        assert!(out.is_empty(), "the source cannot declare success");
        let out = report(
            &mut core,
            DST,
            1,
            TaskReport::Succeeded {
                counters: counters(10, 1000),
            },
            2,
        );
        assert!(out.contains(&Action::Finish {
            task_id: "t".into(),
            status: TaskStatus::Succeeded,
            counters: Some(counters(10, 1000)),
            error: None
        }));
        assert_eq!(codes(&out), [code::SUCCEEDED]);
        // Both ends hear that attempt 1 is over, so the destination refuses
        // a replay of its capability from now on.
        assert!(out.contains(&Action::Cancel {
            endpoint_id: DST.into(),
            task_id: "t".into(),
            through_attempt: None,
        }));
        assert_eq!(cancels(&out), [DST.to_string(), SRC.to_string()]);
        assert!(core.handle(Input::Tick, 3).is_empty(), "gone from the core");
    }

    #[test]
    fn a_failure_from_either_endpoint_fails_the_task_and_stops_the_other() {
        let mut core = running();
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Failed {
                message: "no such file".into(),
                side: None,
            },
            1,
        );
        let (status, error) = finished(&out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(error.unwrap().contains("no such file"));
        assert_eq!(cancels(&out), [DST, SRC]);
    }

    #[test]
    fn the_deadline_fails_a_waiting_or_running_task() {
        let mut core = Core::default();
        active(&mut core, vec![row("w", Some(50))], 0);
        assert!(core.handle(Input::Tick, 49).is_empty());
        let out = core.handle(Input::Tick, 50);
        let (status, error) = finished(&out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(error.unwrap().contains("deadline"));
        assert!(cancels(&out).is_empty(), "nothing ran");

        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        connect(&mut core, DST, 0);
        active(&mut core, vec![row("r", Some(50))], 0);
        let out = core.handle(Input::Tick, 60);
        assert_eq!(finished(&out).unwrap().0, TaskStatus::Failed);
        assert_eq!(cancels(&out), [DST, SRC]);
    }

    #[test]
    fn a_task_canceled_through_the_api_leaves_the_core_and_its_endpoints_stop() {
        let mut core = running();
        let out = active(&mut core, vec![], 1);
        assert_eq!(cancels(&out), [DST, SRC]);
        assert!(finished(&out).is_none(), "the API recorded the end");
        assert!(core.handle(Input::Tick, 2).is_empty());
    }

    /// Another hub instance took the task (this one's lease ended): this
    /// scheduler lets go without stopping it, and one that takes it up
    /// again continues from the stored attempt with a new one.
    #[test]
    fn a_task_another_instance_holds_is_let_go_without_a_cancel() {
        let mut core = running();
        let out = core.handle(
            Input::Released {
                task_ids: vec!["t".into()],
            },
            1,
        );
        assert!(out.is_empty(), "{out:?}");
        let out = active(&mut core, vec![], 2);
        assert!(cancels(&out).is_empty(), "not ended: {out:?}");
        let mut taken_back = row("t", None);
        taken_back.attempt = 3;
        let out = active(&mut core, vec![taken_back], 3);
        assert_eq!(starts(&out), [4]);
    }

    /// A sweep that tells only what changed: a task it does not mention
    /// goes on, a new one is taken up, one told again stays as it is, and
    /// one that ended stops its endpoints.
    #[test]
    fn a_sweep_of_changes_takes_up_new_tasks_and_stops_ended_ones() {
        let mut core = running();
        let changed = |core: &mut Core, tasks: Vec<ActiveTask>, ended: Vec<String>, now| {
            core.handle(Input::Changed { tasks, ended }, now)
        };
        let out = changed(&mut core, vec![], vec![], 1);
        assert!(out.is_empty(), "{out:?}");
        assert!(core.is_running("t", 1));
        let out = changed(&mut core, vec![row("t", None), row("u", None)], vec![], 2);
        assert!(
            !out.iter()
                .any(|a| matches!(a, Action::Start { task_id, .. } if task_id == "t")),
            "t goes on: {out:?}"
        );
        assert!(core.is_running("t", 1) && core.tasks.contains_key("u"));
        let out = changed(&mut core, vec![], vec!["t".into(), "gone".into()], 3);
        assert_eq!(cancels(&out), [DST, SRC]);
        assert!(finished(&out).is_none(), "the API recorded the end");
        assert!(!core.tasks.contains_key("t") && core.tasks.contains_key("u"));
        // A revoked endpoint, told by a whole picture, fails the task.
        let mut revoked = row("u", None);
        revoked.source_revoked = true;
        let out = active(&mut core, vec![revoked], 4);
        assert_eq!(finished(&out).unwrap().0, TaskStatus::Failed);
    }

    fn cancels_through(actions: &[Action]) -> Vec<Option<u32>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Cancel {
                    through_attempt, ..
                } => Some(*through_attempt),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_retried_attempt_keeps_what_it_left_and_an_ended_task_says_it_is_over() {
        let mut core = running();
        let fault = TaskReport::Fault {
            message: "disk full".into(),
            side: None,
        };
        let out = report(&mut core, DST, 1, fault, 1);
        assert_eq!(
            cancels_through(&out),
            [Some(1), Some(1)],
            "the attempt ends; a later one resumes what it kept"
        );
        // Canceled through the API while it waits for its retry: both
        // endpoints hear that the task is over, though nothing runs.
        let out = active(&mut core, vec![], 2);
        assert_eq!(cancels(&out), [DST, SRC]);
        assert_eq!(cancels_through(&out), [None, None]);

        let mut core = running();
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Failed {
                message: "permission denied".into(),
                side: None,
            },
            1,
        );
        assert_eq!(cancels_through(&out), [None, None], "failed: over");
    }

    #[test]
    fn a_destination_without_a_data_address_is_a_fault_told_once() {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        core.handle(
            Input::Connected {
                endpoint_id: DST.into(),
                data_address: None,
                paused: false,
                relay: false,
            },
            0,
        );
        let out = active(&mut core, vec![row("t", None)], 0);
        assert!(
            matches!(&out[0], Action::NoteFault { kind: FaultKind::NoDataAddress, message, .. } if message.contains("accepts no data connections"))
        );
        assert_eq!(codes(&out), [code::FAULT]);
        assert!(core.handle(Input::Tick, 1).is_empty());
        let out = connect(&mut core, DST, 2);
        assert_eq!(starts(&out), [1]);
    }

    #[test]
    fn a_revoked_endpoint_fails_its_tasks() {
        let mut core = Core::default();
        let mut t = row("t", None);
        t.destination_revoked = true;
        let out = active(&mut core, vec![t], 0);
        let (status, error) = finished(&out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(error.unwrap().contains("'cluster' was revoked"));
    }

    #[test]
    fn a_start_the_hub_could_not_send_is_a_fault_and_an_unreadable_task_fails() {
        let mut core = running();
        let out = core.handle(
            Input::StartFailed {
                task_id: "t".into(),
                attempt: 1,
                message: "busy".into(),
                fatal: false,
            },
            1,
        );
        assert_eq!(codes(&out), [code::FAULT]);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::EndAttempt {
                fault: Some(Fault {
                    kind: FaultKind::Start,
                    ..
                }),
                ..
            }
        )));
        assert_eq!(starts(&core.handle(Input::Tick, 3)), [2]);
        let out = core.handle(
            Input::StartFailed {
                task_id: "t".into(),
                attempt: 2,
                message: "unreadable".into(),
                fatal: true,
            },
            4,
        );
        assert_eq!(finished(&out).unwrap().0, TaskStatus::Failed);
    }

    #[test]
    fn events_from_the_same_endpoint_for_a_copy_within_one_endpoint_cancel_once() {
        let mut core = Core::default();
        connect(&mut core, SRC, 0);
        let mut t = row("t", None);
        t.destination_id = SRC.into();
        let out = active(&mut core, vec![t], 0);
        assert_eq!(starts(&out), [1]);
        let out = report(
            &mut core,
            SRC,
            1,
            TaskReport::Fault {
                message: "x".into(),
                side: None,
            },
            1,
        );
        assert_eq!(cancels(&out), [SRC]);
    }
}
