//! The hub's side of the control channel: who is connected, and the driver
//! that runs [`HubConnection`] over each endpoint's TLS stream.
//!
//! An endpoint is admitted when its certificate (already verified against
//! the endpoint CA by TLS) names an endpoint the registry knows, that is not
//! revoked, and whose registered certificate is this very one: the
//! endpoint's own for its primary machine, or, for a certificate naming a
//! node (`ferry_tls::node_of`), that live node's. The check is
//! repeated on every beat of the hub's heartbeat ([`HubTimeout::Beat`], once
//! per interval on a fixed schedule whatever the endpoint sends), so
//! `ferry-hub endpoint revoke` takes effect on a live connection within one
//! interval.

use crate::secrets::hex;
use crate::server::Hub;
use crate::store::NodeLinkRow;
use ferry_proto::api::{FsOp, FsOutcome, PRIMARY_NODE};
use ferry_proto::control::{ControlError, HubConnection, HubEvent, HubTimeout, RefuseReason};
use ferry_proto::setup_key::cert_sha256;
use ferry_proto::share::ShareGrant;
use ferry_proto::task::TaskReport;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A peer has this long to say hello after the TLS handshake.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
// A connected endpoint's admission is decided again from the registry
// every `admission_recheck_secs` (hub.toml, 60 s), not at every
// heartbeat: with 10,000 endpoints that was 2,000 database reads a second,
// and heartbeats went out late (BENCHMARKS.md, "Scale"). A revocation is
// decided at once (the scheduler's revoked-list watch tells every
// instance's links: `Command::Revoked`), and so are a deletion and a
// node's removal on the instance that holds the link (`Command::Recheck`).
/// Requests queued for one endpoint before callers are told it is busy.
const QUEUE: usize = 64;
/// Bytes read from a control stream at a time. Control frames are small and
/// thousands of connections sit idle, so this stays small; a larger frame
/// (up to the protocol's `MAX_FRAME`, checked on its header) accumulates in
/// the connection's frame decoder, which grows only as bytes arrive.
const READ_BUF: usize = 4 * 1024;

/// Something the hub wants an endpoint to do.
#[derive(Debug)]
pub(crate) enum Command {
    Fs {
        op: FsOp,
        grant: Option<ShareGrant>,
        reply: oneshot::Sender<FsOutcome>,
    },
    StartTask {
        capability: String,
        connect_to: Option<String>,
        relay: bool,
    },
    RelayDial {
        token: String,
        task_id: String,
        attempt: u32,
        stream: u16,
        via: Option<String>,
    },
    CancelTask {
        task_id: String,
        through_attempt: Option<u32>,
    },
    Revoked {
        endpoint_ids: Vec<String>,
    },
    /// Decide this connection's admission again now (its node was removed).
    Recheck,
    FileStream {
        token: String,
        path: ferry_proto::wire_path::WirePath,
        grant: Option<ShareGrant>,
        via: Option<String>,
    },
    FileUpload {
        token: String,
        path: ferry_proto::wire_path::WirePath,
        grant: Option<ShareGrant>,
        upload: ferry_proto::file_stream::UploadAsk,
        via: Option<String>,
    },
}

#[derive(Debug)]
struct Handle {
    /// Which machine of the endpoint this is (`PRIMARY_NODE` for its first).
    node: String,
    connection: u64,
    commands: mpsc::Sender<Command>,
    data_address: Option<String>,
    /// Unix seconds when this connection was admitted.
    since: i64,
    /// Its owner paused its data work (`ferry -pause`).
    paused: bool,
    /// The hooks its hello named; `None`: an older endpoint, which runs none.
    hooks: Option<Vec<String>>,
    /// The features its hello named: messages it understands beyond the
    /// first form of the protocol.
    features: Vec<String>,
}

/// What the hub knows of an endpoint's control link, for people to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connected {
        since: i64,
        paused: bool,
    },
    /// Not connected; when this hub process last saw it, if it did.
    Offline {
        last_seen: Option<i64>,
    },
}

/// What the task scheduler hears from the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Connected {
        endpoint_id: String,
        /// Its owner paused its data work (`ferry -pause`).
        paused: bool,
    },
    Disconnected {
        endpoint_id: String,
    },
    /// The owner paused or unpaused the endpoint's data work.
    Paused {
        endpoint_id: String,
        paused: bool,
    },
    Report {
        endpoint_id: String,
        /// Which machine of the endpoint reported (its node).
        node: String,
        task_id: String,
        attempt: u32,
        report: TaskReport,
    },
    /// A node of a still connected endpoint went away (the endpoint's
    /// own connect and disconnect notices say nothing of it): a task
    /// spread over that node lost its part.
    NodeGone {
        endpoint_id: String,
        node: String,
    },
    /// The endpoint's nodes linked here changed (one came or went): for
    /// the record other hub instances read (`cluster::noticed`), not the
    /// scheduler.
    Nodes {
        endpoint_id: String,
    },
}

/// Most hook names the hub keeps of one endpoint's hello.
const MAX_HOOKS: usize = 64;

/// A task's destination ran the task's hook: an event on the task, ended
/// or not (its result comes after the data landed). Only the destination
/// speaks for it, and only about the hook the task named.
fn hook_ran(
    hub: &Hub,
    endpoint_id: &str,
    task_id: &str,
    name: &str,
    ended: &ferry_proto::task::HookEnd,
    output: &[String],
) {
    let asked = match hub.store.task_work(task_id) {
        Ok(Some(work)) => work.options.on_success,
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot read the task a hook report is about");
            return;
        }
    };
    let destination = match hub.store.task(task_id) {
        Ok(Some(row)) => row.destination_id,
        _ => return,
    };
    if destination != endpoint_id || asked.as_deref() != Some(name) {
        tracing::warn!(task = %task_id, endpoint = %endpoint_id, "a hook report from an endpoint or about a hook the task did not name: ignored");
        return;
    }
    let (code, description) = crate::tasks::hook_event(name, ended, output);
    if let Err(e) =
        hub.store
            .add_task_event(task_id, code, &description, crate::grants::now(), true)
    {
        tracing::error!(task = %task_id, error = %e, "cannot record a hook's end");
    }
}

/// Why a request to an endpoint got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the endpoint is not connected to the hub; is its daemon running (`ferry -start`)?")]
    Offline,
    #[error("the endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the endpoint's connection dropped before it answered")]
    Dropped,
    #[error("the endpoint has too many requests queued; try again")]
    Busy,
    #[error("the endpoint's ferry is too old for this; upgrade it")]
    Unsupported,
    #[error("the endpoint's hub instance did not answer; try again")]
    Unanswered,
    /// A dial-back (HTTPS file access) asked of an endpoint whose link
    /// another hub instance holds: its dial-back could land anywhere.
    #[error(
        "the endpoint is connected to another hub instance, and this one listens on no address it can be told to dial back to; set `listen` to this instance's own address (docs/hub.md)"
    )]
    Elsewhere,
}

/// The endpoints connected now: each of an endpoint's machines (nodes)
/// has its own control link. What the hub asks of "the endpoint" goes to
/// one of them, [`chosen`]: the primary when it is connected, else the
/// longest-connected node. The scheduler hears of the endpoint, not of
/// its nodes: connected when the chosen link is a new one, disconnected
/// when the last one goes.
#[derive(Debug)]
pub struct Registry {
    live: Mutex<HashMap<String, Vec<Handle>>>,
    /// When each node that went away was last connected to this process
    /// (memory only: a restarted hub knows none), by endpoint and node.
    last_seen: Mutex<HashMap<(String, String), i64>>,
    next_connection: AtomicU64,
    notices: mpsc::UnboundedSender<Notice>,
}

/// The link that speaks for an endpoint: its primary's if connected, else
/// the node connected longest (the first in the list).
fn chosen(handles: &[Handle]) -> Option<&Handle> {
    handles
        .iter()
        .find(|h| h.node == PRIMARY_NODE)
        .or_else(|| handles.first())
}

/// A node's control link as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLink {
    pub node: String,
    pub link: Link,
}

impl Registry {
    /// A registry and the receiving end of its notices (for the scheduler).
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Notice>) {
        let (notices, rx) = mpsc::unbounded_channel();
        (
            Self {
                live: Mutex::new(HashMap::new()),
                last_seen: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(0),
                notices,
            },
            rx,
        )
    }

    fn notify(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }

    /// A notice heard by another hub instance, for this one's scheduler
    /// (`cluster::forward_report`).
    pub(crate) fn relay_notice(&self, notice: Notice) {
        self.notify(notice);
    }

    /// The endpoint's control link as people read it: connected since when
    /// and whether paused, or when it was last seen.
    pub fn link(&self, endpoint_id: &str) -> Link {
        match self.with_chosen(endpoint_id, |h| (h.since, h.paused)) {
            Some((since, paused)) => Link::Connected { since, paused },
            None => Link::Offline {
                last_seen: self.last_seen.lock().ok().and_then(|m| {
                    m.iter()
                        .filter(|((id, _), _)| id == endpoint_id)
                        .map(|(_, at)| *at)
                        .max()
                }),
            },
        }
    }

    /// The control link of each of `nodes` (names) of an endpoint, and of
    /// any other node of it connected now.
    pub fn node_links(&self, endpoint_id: &str, nodes: &[String]) -> Vec<NodeLink> {
        let live: Vec<(String, i64, bool)> = self
            .live
            .lock()
            .ok()
            .and_then(|m| {
                m.get(endpoint_id).map(|hs| {
                    hs.iter()
                        .map(|h| (h.node.clone(), h.since, h.paused))
                        .collect()
                })
            })
            .unwrap_or_default();
        let seen = self.last_seen.lock().map(|m| m.clone()).unwrap_or_default();
        let mut names: Vec<String> = nodes.to_vec();
        for (node, _, _) in &live {
            if !names.contains(node) {
                names.push(node.clone());
            }
        }
        names
            .into_iter()
            .map(|node| {
                let link = match live.iter().find(|(n, _, _)| *n == node) {
                    Some((_, since, paused)) => Link::Connected {
                        since: *since,
                        paused: *paused,
                    },
                    None => Link::Offline {
                        last_seen: seen.get(&(endpoint_id.to_string(), node.clone())).copied(),
                    },
                };
                NodeLink { node, link }
            })
            .collect()
    }

    /// `f` of the link that speaks for the endpoint ([`chosen`]), if any.
    fn with_chosen<T>(&self, endpoint_id: &str, f: impl FnOnce(&Handle) -> T) -> Option<T> {
        self.live
            .lock()
            .ok()
            .and_then(|m| m.get(endpoint_id).and_then(|hs| chosen(hs)).map(f))
    }

    /// A connected endpoint's owner paused or unpaused it.
    /// A connection a newer one replaced speaks for the endpoint no more.
    /// Only the link that speaks for the endpoint pauses its tasks.
    fn set_paused(&self, endpoint_id: &str, connection: u64, paused: bool) {
        let current = match self.live.lock() {
            Ok(mut live) => match live.get_mut(endpoint_id) {
                Some(hs) => {
                    let speaks = chosen(hs).is_some_and(|h| h.connection == connection);
                    match hs.iter_mut().find(|h| h.connection == connection) {
                        Some(h) => {
                            h.paused = paused;
                            speaks
                        }
                        None => false,
                    }
                }
                None => false,
            },
            Err(_) => false,
        };
        if !current {
            return;
        }
        self.notify(Notice::Paused {
            endpoint_id: endpoint_id.to_string(),
            paused,
        });
    }

    /// Where a connected endpoint accepts data connections, if it does.
    pub fn data_address(&self, endpoint_id: &str) -> Option<String> {
        self.with_chosen(endpoint_id, |h| h.data_address.clone())
            .flatten()
    }

    fn command(&self, endpoint_id: &str, command: Command) -> Result<(), CallError> {
        let sender = self
            .with_chosen(endpoint_id, |h| h.commands.clone())
            .ok_or(CallError::Offline)?;
        sender.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CallError::Busy,
            mpsc::error::TrySendError::Closed(_) => CallError::Offline,
        })
    }

    /// Tells a task's source endpoint to send: to `connect_to` and, with
    /// `relay` (which the scheduler offers only to an endpoint that named
    /// the feature), through the hub when that fails.
    pub fn start_task(
        &self,
        endpoint_id: &str,
        capability: String,
        connect_to: Option<String>,
        relay: bool,
    ) -> Result<(), CallError> {
        self.command(
            endpoint_id,
            Command::StartTask {
                capability,
                connect_to,
                relay,
            },
        )
    }

    /// The connected nodes of an endpoint that move a shard of a task
    /// (their hello named `FEATURE_SHARDS`), the one that speaks for it
    /// first, each with its data address and the features its hello named.
    pub fn shard_nodes(&self, endpoint_id: &str) -> Vec<(String, Option<String>, Vec<String>)> {
        let Ok(live) = self.live.lock() else {
            return Vec::new();
        };
        let Some(handles) = live.get(endpoint_id) else {
            return Vec::new();
        };
        let first = chosen(handles).map(|h| h.connection);
        let mut nodes: Vec<&Handle> = handles
            .iter()
            .filter(|h| {
                h.features
                    .iter()
                    .any(|f| f == ferry_proto::task::FEATURE_SHARDS)
            })
            .collect();
        nodes.sort_by_key(|h| Some(h.connection) != first);
        nodes
            .into_iter()
            .map(|h| (h.node.clone(), h.data_address.clone(), h.features.clone()))
            .collect()
    }

    /// Every node of an endpoint linked here, as other hub instances
    /// must know it to spread a task over it (`instance`: this one).
    pub fn linked_nodes(&self, endpoint_id: &str, instance: &str) -> Vec<NodeLinkRow> {
        let Ok(live) = self.live.lock() else {
            return Vec::new();
        };
        live.get(endpoint_id)
            .map(|handles| {
                handles
                    .iter()
                    .map(|h| NodeLinkRow {
                        endpoint_id: endpoint_id.to_string(),
                        node: h.node.clone(),
                        instance: instance.to_string(),
                        since: h.since,
                        data_address: h.data_address.clone(),
                        features: h.features.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tells node `node` of a task's source to send its shard (the
    /// capability names it) to `connect_to`.
    pub fn start_shard(
        &self,
        endpoint_id: &str,
        node: &str,
        capability: String,
        connect_to: String,
    ) -> Result<(), CallError> {
        let sender = self
            .live
            .lock()
            .ok()
            .and_then(|m| {
                m.get(endpoint_id)
                    .and_then(|hs| hs.iter().find(|h| h.node == node))
                    .map(|h| h.commands.clone())
            })
            .ok_or(CallError::Offline)?;
        sender
            .try_send(Command::StartTask {
                capability,
                connect_to: Some(connect_to),
                relay: false,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CallError::Busy,
                mpsc::error::TrySendError::Closed(_) => CallError::Offline,
            })
    }

    /// Asks a task's destination to dial back for a relayed data stream
    /// (to `via`, this hub instance's own address, when it is one of
    /// several; only one whose hello named the relay feature: the caller
    /// checks).
    pub fn relay_dial(
        &self,
        endpoint_id: &str,
        token: String,
        task_id: &str,
        attempt: u32,
        stream: u16,
        via: Option<String>,
    ) -> Result<(), CallError> {
        self.command(
            endpoint_id,
            Command::RelayDial {
                token,
                task_id: task_id.to_string(),
                attempt,
                stream,
                via,
            },
        )
    }

    /// Asks an endpoint to dial back with `token` (to `via`, this hub
    /// instance's own address, when it is one of several behind a front)
    /// and serve the file at `path` (see `ferry_proto::file_stream`).
    pub fn stream_file(
        &self,
        endpoint_id: &str,
        token: String,
        path: ferry_proto::wire_path::WirePath,
        grant: Option<ShareGrant>,
        via: Option<String>,
    ) -> Result<(), CallError> {
        if self.is_connected(endpoint_id)
            && !self.has_feature(endpoint_id, ferry_proto::control::FEATURE_FILE_STREAM)
        {
            return Err(CallError::Unsupported);
        }
        self.command(
            endpoint_id,
            Command::FileStream {
                token,
                path,
                grant,
                via,
            },
        )
    }

    /// Asks an endpoint to dial back with `token` and take an upload.
    pub fn upload_file(
        &self,
        endpoint_id: &str,
        token: String,
        path: ferry_proto::wire_path::WirePath,
        grant: Option<ShareGrant>,
        upload: ferry_proto::file_stream::UploadAsk,
        via: Option<String>,
    ) -> Result<(), CallError> {
        if self.is_connected(endpoint_id)
            && !self.has_feature(endpoint_id, ferry_proto::control::FEATURE_FILE_UPLOAD)
        {
            return Err(CallError::Unsupported);
        }
        self.command(
            endpoint_id,
            Command::FileUpload {
                token,
                path,
                grant,
                upload,
                via,
            },
        )
    }

    /// Stops a task's data work on an endpoint; a destination also refuses
    /// attempts up to `through_attempt` from then on (`None`: every
    /// attempt, the task is over).
    ///
    /// Every connected node of the endpoint is told: an attempt may have
    /// run on a node that no longer speaks for it.
    pub fn cancel_task(
        &self,
        endpoint_id: &str,
        task_id: &str,
        through_attempt: Option<u32>,
    ) -> Result<(), CallError> {
        let senders: Vec<mpsc::Sender<Command>> = self
            .live
            .lock()
            .ok()
            .and_then(|m| {
                m.get(endpoint_id)
                    .map(|hs| hs.iter().map(|h| h.commands.clone()).collect())
            })
            .unwrap_or_default();
        let mut told = Err(CallError::Offline);
        for sender in senders {
            let sent = sender.try_send(Command::CancelTask {
                task_id: task_id.to_string(),
                through_attempt,
            });
            match sent {
                Ok(()) => told = Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) if told.is_err() => {
                    told = Err(CallError::Busy)
                }
                Err(_) => {}
            }
        }
        told
    }

    /// Tells every connected endpoint that these endpoints were revoked.
    pub fn broadcast_revoked(&self, endpoint_ids: &[String]) {
        let senders: Vec<(String, mpsc::Sender<Command>)> = match self.live.lock() {
            Ok(live) => live
                .iter()
                .flat_map(|(id, hs)| hs.iter().map(|h| (id.clone(), h.commands.clone())))
                .collect(),
            Err(_) => return,
        };
        for (id, sender) in senders {
            let command = Command::Revoked {
                endpoint_ids: endpoint_ids.to_vec(),
            };
            if sender.try_send(command).is_err() {
                // A full queue: that endpoint's link is stuck; the welcome
                // of its next connection carries the list anyway.
                tracing::warn!(endpoint = %id, "cannot tell an endpoint about a revocation now");
            }
        }
    }

    /// Has each connection of the endpoint decide its admission again at
    /// once (a node of it was removed).
    pub fn recheck(&self, endpoint_id: &str) {
        let senders: Vec<mpsc::Sender<Command>> = match self.live.lock() {
            Ok(live) => live
                .get(endpoint_id)
                .map(|hs| hs.iter().map(|h| h.commands.clone()).collect())
                .unwrap_or_default(),
            Err(_) => return,
        };
        for sender in senders {
            // A full queue: the periodic recheck decides it.
            let _ = sender.try_send(Command::Recheck);
        }
    }

    /// How many endpoints are connected now.
    pub fn connected_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_connected(&self, endpoint_id: &str) -> bool {
        self.live
            .lock()
            .map(|m| m.contains_key(endpoint_id))
            .unwrap_or(false)
    }

    /// The hooks a connected endpoint named in its hello: `None` when it
    /// is not connected, `Some(None)` when it is too old to run any.
    pub fn hooks(&self, endpoint_id: &str) -> Option<Option<Vec<String>>> {
        self.with_chosen(endpoint_id, |h| h.hooks.clone())
    }

    /// Whether a connected endpoint's hello named `feature` (an endpoint
    /// that did not must not be sent the messages the feature brings: an
    /// unknown message ends its link).
    pub fn has_feature(&self, endpoint_id: &str, feature: &str) -> bool {
        self.with_chosen(endpoint_id, |h| h.features.iter().any(|f| f == feature))
            .unwrap_or(false)
    }

    /// An endpoint "connected" with the hooks its hello named, for tests
    /// of what the hub does with them; keep the receiver to stay connected.
    #[cfg(test)]
    pub(crate) fn connect_for_tests(
        &self,
        endpoint_id: &str,
        hooks: Option<Vec<String>>,
    ) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.insert(
            endpoint_id,
            PRIMARY_NODE,
            tx,
            None,
            false,
            hooks,
            Vec::new(),
        );
        rx
    }

    /// An endpoint "connected" whose hello named `features`, for tests.
    #[cfg(test)]
    pub(crate) fn connect_with_features(
        &self,
        endpoint_id: &str,
        features: Vec<String>,
    ) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.insert(endpoint_id, PRIMARY_NODE, tx, None, false, None, features);
        rx
    }

    // Each argument is a distinct part of a connection's hello.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        endpoint_id: &str,
        node: &str,
        commands: mpsc::Sender<Command>,
        data_address: Option<String>,
        paused: bool,
        hooks: Option<Vec<String>>,
        features: Vec<String>,
    ) -> u64 {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut replaced = false;
        let speaks = match self.live.lock() {
            Ok(mut live) => {
                let handles = live.entry(endpoint_id.to_string()).or_default();
                // A newer connection of the same node replaces the older
                // one, whose command channel then closes and whose driver
                // ends.
                let before = handles.len();
                handles.retain(|h| h.node != node);
                replaced = handles.len() < before;
                handles.push(Handle {
                    node: node.to_string(),
                    connection,
                    commands,
                    data_address,
                    since: crate::grants::now(),
                    paused,
                    hooks,
                    features,
                });
                chosen(handles).map(|h| (h.connection, h.paused))
            }
            Err(_) => None,
        };
        // The scheduler hears of the endpoint only when this link is the
        // one that speaks for it.
        match speaks {
            Some((chosen, paused)) if chosen == connection => self.notify(Notice::Connected {
                endpoint_id: endpoint_id.to_string(),
                paused,
            }),
            // A node that does not speak for the endpoint came back: what
            // its old link moved of a spread task went with it.
            _ if replaced => self.notify(Notice::NodeGone {
                endpoint_id: endpoint_id.to_string(),
                node: node.to_string(),
            }),
            _ => {}
        }
        self.notify(Notice::Nodes {
            endpoint_id: endpoint_id.to_string(),
        });
        connection
    }

    fn remove(&self, endpoint_id: &str, connection: u64) {
        // What the endpoint is after the removal: gone, spoken for by
        // another link now, or as it was.
        enum After {
            Same,
            Gone,
            Chosen { paused: bool },
        }
        let (node, after) = match self.live.lock() {
            Ok(mut live) => {
                let Some(handles) = live.get_mut(endpoint_id) else {
                    return;
                };
                let Some(at) = handles.iter().position(|h| h.connection == connection) else {
                    return;
                };
                let spoke = chosen(handles).is_some_and(|h| h.connection == connection);
                let node = handles.remove(at).node;
                let after = match chosen(handles) {
                    None => After::Gone,
                    Some(h) if spoke => After::Chosen { paused: h.paused },
                    Some(_) => After::Same,
                };
                if handles.is_empty() {
                    live.remove(endpoint_id);
                }
                (node, after)
            }
            Err(_) => return,
        };
        if let Ok(mut seen) = self.last_seen.lock() {
            seen.insert(
                (endpoint_id.to_string(), node.clone()),
                crate::grants::now(),
            );
        }
        match after {
            After::Same => self.notify(Notice::NodeGone {
                endpoint_id: endpoint_id.to_string(),
                node,
            }),
            After::Gone => self.notify(Notice::Disconnected {
                endpoint_id: endpoint_id.to_string(),
            }),
            // What the old link ran went with it, as on a reconnection.
            After::Chosen { paused } => self.notify(Notice::Connected {
                endpoint_id: endpoint_id.to_string(),
                paused,
            }),
        }
        self.notify(Notice::Nodes {
            endpoint_id: endpoint_id.to_string(),
        });
    }

    /// Asks a connected endpoint to do a file operation.
    pub async fn fs(
        &self,
        endpoint_id: &str,
        op: FsOp,
        grant: Option<ShareGrant>,
        limit: Duration,
    ) -> Result<FsOutcome, CallError> {
        let sender = self
            .with_chosen(endpoint_id, |h| h.commands.clone())
            .ok_or(CallError::Offline)?;
        let (reply, answer) = oneshot::channel();
        sender
            .try_send(Command::Fs { op, grant, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CallError::Busy,
                mpsc::error::TrySendError::Closed(_) => CallError::Offline,
            })?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(CallError::Dropped),
            Err(_) => Err(CallError::Timeout(limit)),
        }
    }
}

/// Whether this endpoint, presenting this certificate, may be connected.
/// The revoked endpoints a welcome carries: every destination refuses data
/// connections from them, whatever capability they still hold.
fn revoked_list(hub: &Hub) -> Vec<String> {
    hub.store
        .revoked_endpoints(ferry_proto::control::MAX_REVOKED_LISTED)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the revoked endpoints for a welcome");
            Vec::new()
        })
}

/// Why an endpoint is not (or no longer) admitted.
#[derive(Debug)]
pub(crate) enum NotAdmitted {
    /// It may not connect: refused with the reason.
    Refused(RefuseReason, String),
    /// The registry could not be read: nothing is known against the
    /// endpoint. A connected one stays (a transient storage error must not
    /// cut live transfers); a new one is asked to dial again later.
    Unknowable,
}

impl From<(RefuseReason, String)> for NotAdmitted {
    fn from((reason, message): (RefuseReason, String)) -> Self {
        NotAdmitted::Refused(reason, message)
    }
}

/// An admitted link: the endpoint and which of its machines (its node;
/// `PRIMARY_NODE` for the machine it was set up on).
pub(crate) type Admitted = (String, String);

pub(crate) fn admission(hub: &Hub, cert: Option<&[u8]>) -> Result<Admitted, NotAdmitted> {
    let cert = cert.ok_or((
        RefuseReason::UnknownEndpoint,
        "no endpoint certificate was presented; run `ferry -setup`".to_string(),
    ))?;
    let id = crate::pki::endpoint_id_of(cert).ok_or((
        RefuseReason::UnknownEndpoint,
        "the certificate names no endpoint".to_string(),
    ))?;
    let node = ferry_tls::node_of(cert);
    let nodes = node.as_ref().map(|_| hub.store.endpoint_nodes(&id));
    admission_of(hub.store.endpoint(&id), nodes, &id, node.as_deref(), cert)
}

/// The admission decision on what the registry said of endpoint `id`
/// and, for a node's certificate (one naming `node`), of its nodes: the
/// presented certificate must be the one registered for that machine.
fn admission_of(
    looked_up: Result<Option<crate::store::EndpointRow>, crate::store::StoreError>,
    nodes: Option<Result<Vec<crate::store::NodeRow>, crate::store::StoreError>>,
    id: &str,
    node: Option<&str>,
    cert: &[u8],
) -> Result<Admitted, NotAdmitted> {
    let row = match looked_up {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err(NotAdmitted::Refused(
                RefuseReason::UnknownEndpoint,
                format!("endpoint {id} is not known to this hub"),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, endpoint = %id, "registry lookup failed");
            return Err(NotAdmitted::Unknowable);
        }
    };
    if row.deleted {
        return Err(NotAdmitted::Refused(
            RefuseReason::Revoked,
            format!("endpoint {id} was deleted by its owner"),
        ));
    }
    if row.revoked {
        return Err(NotAdmitted::Refused(
            RefuseReason::Revoked,
            // No advice here: the daemon knows its config dir and says
            // which commands set the machine up again.
            format!("endpoint {id} was revoked by the hub's admin"),
        ));
    }
    let presented = hex(&cert_sha256(cert));
    let (Some(node), Some(nodes)) = (node, nodes) else {
        if row.cert_sha256.as_deref() != Some(presented.as_str()) {
            return Err(NotAdmitted::Refused(
                RefuseReason::Superseded,
                format!(
                    "endpoint {id} was set up again elsewhere; this certificate is no longer valid"
                ),
            ));
        }
        return Ok((id.to_string(), PRIMARY_NODE.to_string()));
    };
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::error!(error = %e, endpoint = %id, "registry lookup of nodes failed");
            return Err(NotAdmitted::Unknowable);
        }
    };
    let Some(registered) = nodes.into_iter().find(|n| n.name == node) else {
        return Err(NotAdmitted::Refused(
            RefuseReason::Revoked,
            format!("node {node} of endpoint {id} was removed by the endpoint's owner"),
        ));
    };
    if registered.cert_sha256.as_deref() != Some(presented.as_str()) {
        return Err(NotAdmitted::Refused(
            RefuseReason::Superseded,
            format!(
                "node {node} of endpoint {id} was set up again elsewhere; this certificate is no longer valid"
            ),
        ));
    }
    Ok((id.to_string(), node.to_string()))
}

/// Runs one control connection until it ends.
pub async fn serve_connection<S>(
    hub: Arc<Hub>,
    stream: S,
    mut cert: Option<Vec<u8>>,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut conn = HubConnection::new(Instant::now(), HELLO_WITHIN);
    let heartbeat = Duration::from_secs(hub.config.heartbeat_secs);
    let (commands_tx, mut commands) = mpsc::channel::<Command>(QUEUE);
    let mut commands_tx = Some(commands_tx);
    // The endpoint and this link's connection number.
    let mut admitted: Option<(String, u64)> = None;
    // When admission was last decided (the hello's decides it first).
    let mut last_check = Instant::now();
    // Which node of the endpoint this link is, once admitted.
    let mut node_name = PRIMARY_NODE.to_string();
    let mut pending: HashMap<u64, oneshot::Sender<FsOutcome>> = HashMap::new();
    // Read into spare capacity, never zeroed: on reused heap memory a
    // zero-filled buffer would be made resident in full for every
    // connection.
    let mut buf = Vec::with_capacity(READ_BUF);

    let end: Result<(), String> = loop {
        while let Some(bytes) = conn.poll_transmit() {
            if let Err(e) = writer.write_all(&bytes).await {
                break_with(&mut admitted, &hub);
                return tracing::debug!(%peer, error = %e, "control write failed");
            }
        }
        let _ = writer.flush().await;
        // A refused connection is closed once its refusal is written.
        let Some(deadline) = conn.poll_timeout().map(tokio::time::Instant::from_std) else {
            break Err("refused".into());
        };
        buf.clear();
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break Err("the endpoint closed the connection".into()),
                Ok(_) => match conn.handle_bytes(Instant::now(), &buf) {
                    Ok(events) => {
                        for event in events {
                            match event {
                                HubEvent::Hello { software, data_address, paused, hooks, features } => match admission(&hub, cert.as_deref()) {
                                    Ok((id, node)) => {
                                        conn.accept(Instant::now(), &id, heartbeat, &hub.signer.public_key(), revoked_list(&hub));
                                        if let Some(tx) = commands_tx.take() {
                                            let hooks = hooks.map(|h| h.into_iter().filter(|n| ferry_proto::task::check_hook_name(n).is_ok()).take(MAX_HOOKS).collect());
                                            let connection = hub.control.insert(&id, &node, tx, data_address, paused, hooks, features);
                                            tracing::info!(endpoint = %id, %node, %peer, %software, paused, "endpoint connected");
                                            node_name = node;
                                            admitted = Some((id, connection));
                                        }
                                    }
                                    Err(NotAdmitted::Refused(reason, message)) => {
                                        tracing::warn!(%peer, %message, "endpoint refused");
                                        conn.refuse(reason, &message);
                                    }
                                    Err(NotAdmitted::Unknowable) => {
                                        // Dialled again with backoff, as after any refusal but a revocation.
                                        conn.refuse(RefuseReason::UnknownEndpoint, "the hub cannot read its registry now; the endpoint dials again");
                                    }
                                },
                                HubEvent::Paused { paused } => {
                                    if let Some((endpoint_id, connection)) = &admitted {
                                        if paused {
                                            tracing::info!(endpoint = %endpoint_id, "endpoint paused");
                                        } else {
                                            tracing::info!(endpoint = %endpoint_id, "endpoint unpaused");
                                        }
                                        hub.control.set_paused(endpoint_id, *connection, paused);
                                    }
                                }
                                HubEvent::FsReply { id, outcome } => {
                                    if let Some(reply) = pending.remove(&id) {
                                        let _ = reply.send(outcome);
                                    }
                                }
                                HubEvent::TaskReport { task_id, attempt: _, report: TaskReport::Hook { name, ended, output } } => {
                                    if let Some((endpoint_id, _)) = &admitted {
                                        hook_ran(&hub, endpoint_id, &task_id, &name, &ended, &output);
                                    }
                                }
                                HubEvent::TaskReport { task_id, attempt, report } => {
                                    if let Some((endpoint_id, _)) = &admitted {
                                        hub.control.notify(Notice::Report {
                                            endpoint_id: endpoint_id.clone(),
                                            node: node_name.clone(),
                                            task_id,
                                            attempt,
                                            report,
                                        });
                                    }
                                }
                                HubEvent::RenewCertificate { csr } => {
                                    let Some((endpoint_id, _)) = &admitted else { continue };
                                    // Who asks is the certificate this connection holds now (a
                                    // renewal replaces it), judged by the renewal's rule.
                                    let who = cert.as_deref().and_then(crate::grants::EndpointPrincipal::from_certificate);
                                    let renewed = match &who {
                                        Some(who) => crate::endpoints::renew(&*hub.store, &hub.endpoint_ca, who, &csr),
                                        None => Err(crate::endpoints::RegistryError::Refused(crate::authz::Refusal::Hidden)),
                                    };
                                    let answer = match renewed {
                                        Ok(pem) => {
                                            // The new certificate is the registered one now: this
                                            // connection stays admitted under it.
                                            cert = crate::pki::first_cert_der(&pem).or(cert);
                                            tracing::info!(endpoint = %endpoint_id, "endpoint certificate renewed");
                                            Ok(pem)
                                        }
                                        Err(e) => {
                                            tracing::warn!(endpoint = %endpoint_id, error = %e, "certificate renewal refused");
                                            Err(e.to_string())
                                        }
                                    };
                                    if let Err(e) = conn.answer_renewal(answer) {
                                        // Only a closed connection refuses; the loop sees it next.
                                        tracing::debug!(error = %e, "cannot answer a renewal");
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => break Err(e.to_string()),
                },
                Err(e) => break Err(format!("read failed: {e}")),
            },
            command = commands.recv(), if admitted.is_some() => match command {
                Some(Command::Fs { op, grant, reply }) => match conn.request_fs(op, grant) {
                    Ok(id) => { pending.insert(id, reply); }
                    Err(e) => break Err(e.to_string()),
                },
                Some(Command::StartTask { capability, connect_to, relay }) => {
                    if let Err(e) = conn.start_task_via(&capability, connect_to.as_deref(), relay) {
                        break Err(e.to_string());
                    }
                }
                Some(Command::RelayDial { token, task_id, attempt, stream, via }) => {
                    if let Err(e) = conn.relay_dial(&token, &task_id, attempt, stream, via) {
                        break Err(e.to_string());
                    }
                }
                Some(Command::CancelTask { task_id, through_attempt }) => {
                    if let Err(e) = conn.cancel_task(&task_id, through_attempt) {
                        break Err(e.to_string());
                    }
                }
                Some(Command::Revoked { endpoint_ids }) => {
                    let me = admitted.as_ref().is_some_and(|(id, _)| endpoint_ids.contains(id));
                    if let Err(e) = conn.notify_revoked(endpoint_ids) {
                        break Err(e.to_string());
                    }
                    if me {
                        recheck(&hub, &mut conn, cert.as_deref(), peer);
                        last_check = Instant::now();
                    }
                }
                Some(Command::Recheck) => {
                    recheck(&hub, &mut conn, cert.as_deref(), peer);
                    last_check = Instant::now();
                }
                Some(Command::FileStream { token, path, grant, via }) => {
                    if let Err(e) = conn.stream_file(&token, path, grant, via) {
                        break Err(e.to_string());
                    }
                }
                Some(Command::FileUpload { token, path, grant, upload, via }) => {
                    if let Err(e) = conn.upload_file(&token, path, grant, upload, via) {
                        break Err(e.to_string());
                    }
                }
                None => break Err("replaced by a newer connection of the same endpoint node".into()),
            },
            _ = tokio::time::sleep_until(deadline) => match conn.handle_timeout(Instant::now()) {
                Ok(HubTimeout::Nothing) => {}
                Ok(HubTimeout::Beat) => {
                    if last_check.elapsed() >= Duration::from_secs(hub.config.admission_recheck_secs) {
                        recheck(&hub, &mut conn, cert.as_deref(), peer);
                        last_check = Instant::now();
                    }
                }
                Err(e) => break Err(match e { ControlError::Closed => "closed".into(), other => other.to_string() }),
            },
        }
    };
    // Let a refusal reach the endpoint before the socket closes.
    while let Some(bytes) = conn.poll_transmit() {
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    if let Err(reason) = end {
        match &admitted {
            Some((id, _)) => {
                tracing::info!(endpoint = %id, %peer, %reason, "endpoint disconnected")
            }
            None => tracing::debug!(%peer, %reason, "control connection ended before admission"),
        }
    }
    break_with(&mut admitted, &hub);
}

/// Decides a connected endpoint's admission again; refuses it if it may
/// connect no more.
fn recheck(hub: &Hub, conn: &mut HubConnection, cert: Option<&[u8]>, peer: SocketAddr) {
    match admission(hub, cert) {
        Ok(_) => {}
        Err(NotAdmitted::Refused(reason, message)) => {
            tracing::warn!(%peer, %message, "endpoint no longer admitted");
            conn.refuse(reason, &message);
        }
        // Logged where it failed; decided again at the next recheck.
        Err(NotAdmitted::Unknowable) => {}
    }
}

fn break_with(admitted: &mut Option<(String, u64)>, hub: &Hub) {
    if let Some((id, connection)) = admitted.take() {
        hub.control.remove(&id, connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::failing::FailingStorage;
    use ferry_proto::control::{
        EndpointConnection, EndpointEvent, EndpointMessage, HubMessage, MAX_FRAME,
        MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    };
    use ferry_proto::frame::{self, FrameDecoder};

    /// Only the task's destination speaks of its hook, and only of the
    /// hook the task named: anything else leaves no event.
    #[test]
    fn a_hook_report_is_recorded_only_from_the_destination_about_its_own_hook() {
        use ferry_proto::task::HookEnd;
        let hub = crate::web::for_tests();
        let uid = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint("src", uid, "laptop", 0).unwrap();
        hub.store.create_endpoint("dst", uid, "cluster", 0).unwrap();
        let mut task = crate::store::conformance::new_task("t", uid, 0);
        (task.source_id, task.destination_id) = ("src".into(), "dst".into());
        task.options.on_success = Some("analyse".into());
        hub.store.create_task(&task, "SUBMITTED", "x").unwrap();
        let ok = HookEnd::Exited { code: 0 };
        let hooks = |hub: &Hub| {
            hub.store
                .task_events("t", 100)
                .unwrap()
                .into_iter()
                .filter(|e| e.code.starts_with("HOOK_"))
                .count()
        };
        hook_ran(&hub, "src", "t", "analyse", &ok, &[]);
        hook_ran(&hub, "dst", "t", "other", &ok, &[]);
        hook_ran(&hub, "dst", "nosuch", "analyse", &ok, &[]);
        assert_eq!(hooks(&hub), 0);
        hook_ran(&hub, "dst", "t", "analyse", &ok, &["4242".into()]);
        assert_eq!(hooks(&hub), 1);
    }
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll};

    #[test]
    fn the_registry_says_whether_an_endpoint_is_connected_paused_or_when_last_seen() {
        let (registry, mut notices) = Registry::new();
        assert_eq!(registry.link("e1"), Link::Offline { last_seen: None });
        let (commands, _rx) = mpsc::channel(1);
        let first = registry.insert(
            "e1",
            PRIMARY_NODE,
            commands.clone(),
            None,
            false,
            None,
            Vec::new(),
        );
        assert!(matches!(
            registry.link("e1"),
            Link::Connected { paused: false, .. }
        ));
        registry.set_paused("e1", first, true);
        assert!(matches!(
            registry.link("e1"),
            Link::Connected { paused: true, .. }
        ));
        // A newer connection replaced the first: the first's pause and its
        // end are not the endpoint's any more.
        let second = registry.insert("e1", PRIMARY_NODE, commands, None, false, None, Vec::new());
        registry.set_paused("e1", first, true);
        registry.remove("e1", first);
        assert!(matches!(
            registry.link("e1"),
            Link::Connected { paused: false, .. }
        ));
        registry.remove("e1", second);
        assert!(matches!(
            registry.link("e1"),
            Link::Offline { last_seen: Some(_) }
        ));
        let mut heard = Vec::new();
        while let Ok(notice) = notices.try_recv() {
            heard.push(notice);
        }
        assert!(heard.contains(&Notice::Paused {
            endpoint_id: "e1".into(),
            paused: true
        }));
    }

    /// Each node keeps its own link; the scheduler hears of the endpoint
    /// when the link that speaks for it changes, of a node when one that
    /// does not went away, and of the endpoint's end when the last goes.
    #[test]
    fn the_registry_keeps_one_link_per_node_and_the_primary_speaks_first() {
        let (registry, mut notices) = Registry::new();
        // What the scheduler hears; each change of the nodes linked here is
        // also told for the record other instances read.
        let changes = std::cell::Cell::new(0);
        let mut heard = || {
            let mut all = Vec::new();
            while let Ok(n) = notices.try_recv() {
                match n {
                    Notice::Nodes { endpoint_id } => {
                        assert_eq!(endpoint_id, "e1");
                        changes.set(changes.get() + 1);
                    }
                    n => all.push(n),
                }
            }
            all
        };
        let (commands, _rx) = mpsc::channel(1);
        let link = |node: &str, address: &str| {
            registry.insert(
                "e1",
                node,
                commands.clone(),
                Some(address.to_string()),
                false,
                None,
                vec![ferry_proto::task::FEATURE_SHARDS.to_string()],
            )
        };
        let n2 = link("node-2", "n2:1");
        assert!(matches!(heard()[..], [Notice::Connected { .. }]));
        assert_eq!(registry.data_address("e1").as_deref(), Some("n2:1"));
        // The primary comes: it speaks for the endpoint from now on.
        let p = link(PRIMARY_NODE, "p:1");
        assert!(matches!(heard()[..], [Notice::Connected { .. }]));
        assert_eq!(registry.data_address("e1").as_deref(), Some("p:1"));
        let nodes: Vec<String> = registry
            .shard_nodes("e1")
            .into_iter()
            .map(|n| n.0)
            .collect();
        assert_eq!(nodes, [PRIMARY_NODE, "node-2"]);
        // Its hello named `shards` only: its shards split no file.
        let features: Vec<Vec<String>> = registry
            .shard_nodes("e1")
            .into_iter()
            .map(|n| n.2)
            .collect();
        assert_eq!(features[1], [ferry_proto::task::FEATURE_SHARDS]);
        assert!(registry.shard_nodes("e2").is_empty());
        // node-2 dials again: its old link is replaced, which a spread
        // task must hear of; the endpoint's link is the same.
        let n2b = link("node-2", "n2:2");
        assert_eq!(
            heard(),
            [Notice::NodeGone {
                endpoint_id: "e1".into(),
                node: "node-2".into()
            }]
        );
        registry.remove("e1", n2);
        assert_eq!(heard(), [], "the replaced link's end says nothing");
        assert_eq!(registry.node_links("e1", &[]).len(), 2);
        let linked = registry.linked_nodes("e1", "me");
        assert_eq!(
            linked
                .iter()
                .map(|n| (
                    n.node.as_str(),
                    n.data_address.as_deref(),
                    n.instance.as_str()
                ))
                .collect::<Vec<_>>(),
            [
                (PRIMARY_NODE, Some("p:1"), "me"),
                ("node-2", Some("n2:2"), "me")
            ]
        );
        assert_eq!(linked[1].features, [ferry_proto::task::FEATURE_SHARDS]);
        // The primary goes: node-2 speaks for the endpoint.
        registry.remove("e1", p);
        assert!(matches!(heard()[..], [Notice::Connected { .. }]));
        assert_eq!(registry.data_address("e1").as_deref(), Some("n2:2"));
        assert!(registry.is_connected("e1"));
        registry.remove("e1", n2b);
        assert_eq!(
            heard(),
            [Notice::Disconnected {
                endpoint_id: "e1".into()
            }]
        );
        assert!(matches!(
            registry.link("e1"),
            Link::Offline { last_seen: Some(_) }
        ));
        // Three links came and two went; the replaced one's end is none.
        assert_eq!(changes.get(), 5);
    }
    use tokio::io::{DuplexStream, ReadBuf};

    /// An in-memory stream that remembers the largest read it was offered.
    struct Recording {
        inner: DuplexStream,
        largest_read: Arc<AtomicUsize>,
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.largest_read
                .fetch_max(buf.remaining(), Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Runs one control connection of `hub` (no client certificate) over
    /// memory, writes `wire`, and returns what the hub wrote back before it
    /// closed, and the largest read the hub made.
    async fn exchange(wire: Vec<u8>) -> (Vec<u8>, usize) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let largest_read = Arc::new(AtomicUsize::new(0));
        let stream = Recording {
            inner: theirs,
            largest_read: largest_read.clone(),
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let serve = tokio::spawn(serve_connection(
            crate::web::for_tests(),
            stream,
            None,
            peer,
        ));
        let (mut reader, mut writer) = tokio::io::split(ours);
        let (written, answer) = tokio::join!(writer.write_all(&wire), async {
            let mut answer = Vec::new();
            reader.read_to_end(&mut answer).await.map(|_| answer)
        });
        // The hub may close before reading everything it was sent.
        let _ = written;
        serve.await.unwrap();
        (answer.unwrap(), largest_read.load(Ordering::Relaxed))
    }

    /// A registry that cannot be read says nothing against an endpoint: a
    /// connected one is not cut at its next beat (it was, refused as
    /// unknown, taking its transfers with it), and a new one is asked to
    /// dial again rather than told it is unknown.
    #[test]
    fn a_registry_that_cannot_be_read_refuses_no_one() {
        let cert = b"a certificate";
        assert!(matches!(
            admission_of(
                Err(crate::store::StoreError::Unavailable(
                    "disk I/O error".into()
                )),
                None,
                "e1",
                None,
                cert
            ),
            Err(NotAdmitted::Unknowable)
        ));
        assert!(matches!(
            admission_of(Ok(None), None, "e1", None, cert),
            Err(NotAdmitted::Refused(RefuseReason::UnknownEndpoint, _))
        ));
    }

    /// Drives an endpoint's side of a control connection until it ends;
    /// what it hears goes to `events`, and how it ended is returned.
    async fn endpoint_side(
        stream: DuplexStream,
        events: mpsc::UnboundedSender<EndpointEvent>,
    ) -> ControlError {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut conn =
            EndpointConnection::new(Instant::now(), "test", None, Duration::from_secs(10));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(bytes) = conn.poll_transmit() {
                if writer.write_all(&bytes).await.is_err() {
                    return ControlError::Closed;
                }
            }
            let Some(deadline) = conn.poll_timeout() else {
                return ControlError::Closed;
            };
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return ControlError::Closed,
                    Ok(n) => match conn.handle_bytes(Instant::now(), &buf[..n]) {
                        Ok(heard) => heard.into_iter().for_each(|e| { let _ = events.send(e); }),
                        Err(e) => return e,
                    },
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    if let Err(e) = conn.handle_timeout(Instant::now()) {
                        return e;
                    }
                }
            }
        }
    }

    /// The done-when: with the registry unreadable, an admitted
    /// endpoint's beats pass and it stays connected; once storage is back
    /// the checks resume (a revocation then cuts it within a beat).
    #[tokio::test]
    async fn a_heartbeat_survives_a_storage_outage_and_its_checks_resume_after() {
        let failing = Arc::new(FailingStorage::new(Arc::new(
            SqliteStore::in_memory().unwrap(),
        )));
        let mut hub = crate::web::test_hub(failing.clone());
        hub.config.heartbeat_secs = 1;
        hub.config.admission_recheck_secs = 1;
        let hub = Arc::new(hub);
        let id = "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11";
        let owner = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint(id, owner, "laptop", 0).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let (pem, sha) = hub.endpoint_ca.sign_endpoint_csr(&csr, id).unwrap();
        hub.store.set_endpoint_cert(id, &hex(&sha), 0).unwrap();

        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let serve = tokio::spawn(serve_connection(
            hub.clone(),
            theirs,
            crate::pki::first_cert_der(&pem),
            peer,
        ));
        let (heard, mut events) = mpsc::unbounded_channel();
        let endpoint = tokio::spawn(endpoint_side(ours, heard));
        let bound = Duration::from_secs(20);
        let welcome = tokio::time::timeout(bound, events.recv()).await.unwrap();
        assert!(
            matches!(welcome, Some(EndpointEvent::Connected { .. })),
            "{welcome:?}"
        );
        assert!(hub.control.is_connected(id));

        failing.fail("endpoint");
        let beats = async {
            while failing.failures("endpoint") < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(bound, beats)
            .await
            .expect("three beats asked the unreadable registry");
        assert!(hub.control.is_connected(id), "cut while storage failed");
        assert!(!endpoint.is_finished(), "the endpoint's link ended");

        failing.recover();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(hub.control.is_connected(id));
        hub.store.revoke_endpoint(id).unwrap();
        let ended = tokio::time::timeout(bound, endpoint)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                ended,
                ControlError::Refused {
                    reason: RefuseReason::Revoked,
                    ..
                }
            ),
            "{ended:?}"
        );
        tokio::time::timeout(bound, serve).await.unwrap().unwrap();
        assert!(!hub.control.is_connected(id));
    }

    #[tokio::test]
    async fn reads_are_small_yet_a_frame_of_the_maximum_size_still_arrives() {
        // A hello as large as a control frame may be, from a peer without a
        // certificate: the hub must read it whole and answer with a refusal.
        let hello = EndpointMessage::Hello {
            version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            software: "x".repeat(MAX_FRAME - 200),
            data_address: None,
            paused: false,
            hooks: None,
            features: vec![],
        };
        let body = serde_json::to_vec(&hello).unwrap();
        assert!(body.len() > MAX_FRAME - 200 && body.len() <= MAX_FRAME);
        let (answer, largest_read) = exchange(frame::encode(&body, MAX_FRAME).unwrap()).await;
        let mut decoder = FrameDecoder::new(MAX_FRAME);
        decoder.push(&answer);
        let refusal: HubMessage =
            serde_json::from_slice(&decoder.next_frame().unwrap().unwrap()).unwrap();
        assert!(
            matches!(
                refusal,
                HubMessage::Refuse {
                    reason: RefuseReason::UnknownEndpoint,
                    ..
                }
            ),
            "{refusal:?}"
        );
        assert!(
            (1..=READ_BUF).contains(&largest_read),
            "the hub read {largest_read} bytes at a time"
        );
    }

    #[tokio::test]
    async fn a_frame_over_the_maximum_is_refused_on_its_header() {
        let mut wire = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[b'x'; 100]);
        let (answer, _) = exchange(wire).await;
        assert_eq!(answer, b"", "the hub answered an oversized frame");
    }
}
