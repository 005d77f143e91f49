//! Several hub instances over one database (PostgreSQL): this process's
//! identity among them and the leases on the tasks its scheduler drives.
//!
//! Each `ferry-hub serve` is an instance with an id drawn at its start. Its
//! scheduler drives only the ACTIVE tasks it holds a claim on
//! (`ClusterStore::claim_changes`). A claim holds while the instance's
//! lease does: one row, renewed at every sweep for [`LEASE`] seconds, not
//! a lease per task, so a sweep's cost follows what changed, not how many
//! tasks are queued. An instance that dies stops renewing; once its lease
//! ended, the next instance to sweep frees its tasks and takes them up as
//! a restarted hub does (a new attempt). One that stops cleanly lets go of
//! its claims at once.
//!
//! A task goes to the instance that holds its source's control link
//! (recorded in the database as endpoints connect and go), so the
//! scheduler that drives it can send the source its start directly.
//!
//! A command for an endpoint whose control link another instance holds
//! (a file operation, a permission's probe, a task's cancel, an HTTPS
//! file route's dial-back) goes there through the database ([`fs`],
//! [`cancel_task`], [`dial_back`]): this instance leaves a
//! message in `hub_messages` addressed to that instance and waits for its
//! reply; the addressee's [`spawn_messenger`] takes it (woken by
//! PostgreSQL's NOTIFY, else within [`POLL`]), makes the call over its
//! own link, and writes the reply. An instance that died leaves its
//! messages unanswered: the caller gives up at the call's deadline and
//! says so ([`CallError::Unanswered`]), and expired rows are deleted.
//! A destination's reports on a task go to the instance driving it
//! ([`forward_report`]), and that instance learns from the database where
//! the destination takes data connections ([`remote_peers`]). A relay
//! dial-back for a task (`relay`) is still asked only of an endpoint
//! linked to the driving instance.
//!
//! A SQLite database has one instance (it is a local file): a hub on one
//! forgets every claim when it starts, so a restart resumes its tasks at
//! once, as before claims existed.

use crate::control::{CallError, Notice};
use crate::server::Hub;
use crate::store::StoreError;
use ferry_proto::api::{FsOp, FsOutcome};
use ferry_proto::share::ShareGrant;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long an instance's lease lasts unless renewed, in seconds: how long
/// the tasks of an instance that died wait before another takes them. Each
/// sweep (`tasks::TICK`) renews it, so a slow database or a paused process
/// has many sweeps' margin before it loses what it drives.
pub const LEASE: i64 = 15;

/// This process among the hub instances of its database.
#[derive(Debug, Clone)]
pub struct Instance {
    id: String,
    /// Where others reach this instance itself (its listening socket),
    /// not the front: where an endpoint dials back for a file this
    /// instance serves over HTTPS. Unset while it does not listen, or
    /// when it listens on every address (no one address names it).
    address: std::sync::OnceLock<String>,
    /// The nodes linked to other instances that tasks this one drives were
    /// spread over, by (endpoint, node): the instance and the link (its
    /// start) each was on. A node whose link is no longer that one lost its
    /// part ([`remote_nodes_gone`]).
    spread_over: Arc<std::sync::Mutex<HashMap<NodeKey, LinkKey>>>,
}

/// A node by (endpoint, node name).
type NodeKey = (String, String);
/// A link by (instance holding it, when it started).
type LinkKey = (String, i64);

impl Instance {
    /// A fresh identity: random, so a restarted process never inherits
    /// the claims of the one before it (they end with their leases).
    pub fn new() -> Result<Self, getrandom::Error> {
        Ok(Self {
            id: crate::secrets::random_token(12)?,
            address: std::sync::OnceLock::new(),
            spread_over: Arc::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records the socket this instance listens on (`server`, once bound).
    pub fn listening(&self, local: std::net::SocketAddr) {
        if !local.ip().is_unspecified() {
            let _ = self.address.set(local.to_string());
        }
    }

    fn address(&self) -> Option<String> {
        self.address.get().cloned()
    }
}

/// At the start of `serve`, before the scheduler's first sweep: on a
/// database no other instance can share, the claims a previous process
/// left are its own and need not run out.
pub fn starting(hub: &Hub) {
    if hub.config.database.is_some() {
        tracing::info!(instance = %hub.instance.id(), "hub instance starting; tasks are shared through the database by lease");
        return;
    }
    match hub.store.release_task_claims(None) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            tasks = n,
            "took up the tasks the previous hub process drove"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot release the previous process's task claims"),
    }
}

/// At a clean stop: other instances take this one's tasks at their next
/// sweep instead of after the lease.
pub fn stopping(hub: &Hub) {
    match hub.store.release_task_claims(Some(hub.instance.id())) {
        Ok(n) => tracing::info!(tasks = n, "released this instance's tasks"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release this instance's tasks; others take them when the lease ends")
        }
    }
}

/// Renews this instance's lease and claims what is free: what changed in
/// the ACTIVE tasks its scheduler drives since the sweep that returned
/// `since` (`ClusterStore::claim_changes`).
pub fn claim(
    hub: &Hub,
    now: i64,
    since: Option<i64>,
) -> Result<crate::store::ClaimChanges, StoreError> {
    hub.store
        .claim_changes(hub.instance.id(), now, now + LEASE, since)
}

/// Records which instance holds an endpoint's control link, so that the
/// instance holding a task's source drives the task.
pub fn noticed(hub: &Hub, notice: &Notice) {
    let me = hub.instance.id();
    let details = |endpoint_id: &str, paused: bool| crate::store::LinkDetails {
        data_address: hub.control.data_address(endpoint_id),
        relay: hub.control.has_feature(endpoint_id, crate::relay::FEATURE),
        paused,
    };
    let written = match notice {
        Notice::Connected {
            endpoint_id,
            paused,
        } => hub
            .store
            .set_control_link(endpoint_id, me, crate::grants::now())
            .and_then(|()| {
                hub.store
                    .set_link_details(endpoint_id, me, &details(endpoint_id, *paused))
            }),
        Notice::Disconnected { endpoint_id } => hub
            .store
            .drop_control_link(endpoint_id, me)
            .map(|()| hand_over(hub, endpoint_id)),
        Notice::Paused {
            endpoint_id,
            paused,
        } if shared(hub) => {
            hub.store
                .set_link_details(endpoint_id, me, &details(endpoint_id, *paused))
        }
        Notice::Nodes { endpoint_id } if shared(hub) => {
            hub.store
                .sync_node_links(endpoint_id, me, &hub.control.linked_nodes(endpoint_id, me))
        }
        Notice::Paused { .. }
        | Notice::Report { .. }
        | Notice::NodeGone { .. }
        | Notice::Nodes { .. } => return,
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record which hub instance holds an endpoint's control link");
    }
}

/// The endpoint's last link here went, but a node of it may still be
/// linked to another instance: that instance is asked to record itself as
/// the endpoint's, so commands and tasks find the endpoint there.
fn hand_over(hub: &Hub, endpoint_id: &str) {
    // The newest link: the least likely to be on its way out.
    let Some(heir) = other_nodes(hub, endpoint_id).pop() else {
        return;
    };
    let request = Request::Relink {
        endpoint_id: endpoint_id.to_string(),
    };
    if let Err(e) = post(hub, &heir.instance, &request, NOTICE_WITHIN) {
        tracing::warn!(endpoint = %endpoint_id, error = %e, "cannot hand the endpoint over to the instance holding its other node");
    }
}

/// The key named `name` that every instance of the database uses
/// (`ClusterStore::shared_key`): the sign-in form one instance served must
/// verify on whichever instance the browser posts it to.
pub fn shared_mac_key(
    store: &dyn crate::store::Storage,
    name: &str,
) -> anyhow::Result<crate::secrets::MacKey> {
    use anyhow::Context;
    let candidate = crate::secrets::MacKey::generate().context("no randomness for a key")?;
    let stored = store
        .shared_key(name, &candidate.to_text())
        .with_context(|| format!("cannot read or store the hub's {name} key"))?;
    crate::secrets::MacKey::from_text(&stored).with_context(|| {
        format!("the {name} key stored in the database is damaged; delete its row from hub_secrets and restart every instance")
    })
}

/// How often an instance looks for messages left for it when no NOTIFY
/// woke it, and how often a caller looks for its reply.
pub const POLL: Duration = Duration::from_millis(500);
/// How often a caller looks for the reply to its message.
const REPLY_POLL: Duration = Duration::from_millis(50);
/// What a call through another instance may take beyond the call itself:
/// the message's pickup and the reply's.
const ROUTE_MARGIN: Duration = Duration::from_secs(3);
/// How long a fire-and-forget message (a cancel) waits to be taken.
const NOTICE_WITHIN: Duration = Duration::from_secs(30);
/// Messages an instance takes at once.
const TAKE: usize = 32;
/// Most bytes of a message's payload or reply read back (a listing is the
/// largest: bounded by the control frame it came in).
const MAX_MESSAGE: usize = 4 * ferry_proto::control::MAX_FRAME;

/// A call one instance asks another to make over the control link it holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Request {
    Fs {
        endpoint_id: String,
        op: FsOp,
        #[serde(default)]
        grant: Option<ShareGrant>,
        within_ms: u64,
    },
    Cancel {
        endpoint_id: String,
        task_id: String,
        through_attempt: Option<u32>,
    },
    /// Dial back to `via` (the asking instance) for an HTTPS file route.
    DialBack {
        endpoint_id: String,
        token: String,
        what: DialBack,
        via: String,
    },
    /// A task's report, from the instance holding the reporter's link to
    /// the one driving the task.
    Report {
        endpoint_id: String,
        /// The node that reported (an older instance's message names none:
        /// its tasks were spread over its own nodes only).
        #[serde(default = "primary_node")]
        node: String,
        task_id: String,
        attempt: u32,
        report: ferry_proto::task::TaskReport,
    },
    /// Start a shard of a task on a node linked to the addressee, for the
    /// `driver` instance (told if the node cannot be reached).
    StartShard {
        endpoint_id: String,
        node: String,
        capability: String,
        connect_to: String,
        driver: String,
    },
    /// A node a task of the addressee's was spread over lost its part.
    NodeGone { endpoint_id: String, node: String },
    /// Record this instance as the one holding the endpoint's link, if a
    /// node of it is linked here ([`hand_over`]).
    Relink { endpoint_id: String },
}

fn primary_node() -> String {
    ferry_proto::api::PRIMARY_NODE.to_string()
}

/// How the other instance's call went.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Reply {
    Fs { outcome: FsOutcome },
    Done,
    Failed { error: Failure },
}

/// A [`CallError`] as it crosses between instances.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    Offline,
    Timeout { ms: u64 },
    Dropped,
    Busy,
    Unsupported,
    Unanswered,
    Elsewhere,
}

impl From<&CallError> for Failure {
    fn from(e: &CallError) -> Self {
        match e {
            CallError::Offline => Failure::Offline,
            CallError::Timeout(d) => Failure::Timeout {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            CallError::Dropped => Failure::Dropped,
            CallError::Busy => Failure::Busy,
            CallError::Unsupported => Failure::Unsupported,
            CallError::Unanswered => Failure::Unanswered,
            CallError::Elsewhere => Failure::Elsewhere,
        }
    }
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Offline => CallError::Offline,
            Failure::Timeout { ms } => CallError::Timeout(Duration::from_millis(ms)),
            Failure::Dropped => CallError::Dropped,
            Failure::Busy => CallError::Busy,
            Failure::Unsupported => CallError::Unsupported,
            Failure::Unanswered => CallError::Unanswered,
            Failure::Elsewhere => CallError::Elsewhere,
        }
    }
}

/// Whether other instances may share this one's database: only then can
/// an endpoint's link be elsewhere.
fn shared(hub: &Hub) -> bool {
    hub.config.database.is_some()
}

/// The other instance holding `endpoint_id`'s control link, if one does.
fn elsewhere(hub: &Hub, endpoint_id: &str) -> Result<Option<String>, CallError> {
    if !shared(hub) || hub.control.is_connected(endpoint_id) {
        return Ok(None);
    }
    match hub.store.control_link(endpoint_id, crate::grants::now()) {
        Ok(Some(instance)) if instance != hub.instance.id() => Ok(Some(instance)),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, endpoint = %endpoint_id, "cannot read which hub instance holds an endpoint's link");
            Err(CallError::Unanswered)
        }
    }
}

/// Whether the endpoint is connected to this instance or to another live one.
pub fn is_connected(hub: &Hub, endpoint_id: &str) -> bool {
    hub.control.is_connected(endpoint_id) || matches!(elsewhere(hub, endpoint_id), Ok(Some(_)))
}

/// Asks the endpoint to do a file operation, over this instance's link to
/// it or through the instance holding it: the one seam every file
/// operation and permission probe goes through.
pub async fn fs(
    hub: &Hub,
    endpoint_id: &str,
    op: FsOp,
    grant: Option<ShareGrant>,
    limit: Duration,
) -> Result<FsOutcome, CallError> {
    let Some(instance) = elsewhere(hub, endpoint_id)? else {
        return hub.control.fs(endpoint_id, op, grant, limit).await;
    };
    let request = Request::Fs {
        endpoint_id: endpoint_id.to_string(),
        op,
        grant,
        within_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
    };
    match call(hub, &instance, &request, limit + ROUTE_MARGIN).await? {
        Reply::Fs { outcome } => Ok(outcome),
        Reply::Failed { error } => Err(error.into()),
        Reply::Done => Err(CallError::Dropped),
    }
}

/// Stops a task's data work on an endpoint (`Registry::cancel_task`),
/// wherever its link is; nobody waits for the other instance's answer.
pub fn cancel_task(
    hub: &Hub,
    endpoint_id: &str,
    task_id: &str,
    through_attempt: Option<u32>,
) -> Result<(), CallError> {
    let request = Request::Cancel {
        endpoint_id: endpoint_id.to_string(),
        task_id: task_id.to_string(),
        through_attempt,
    };
    // A spread attempt may run on nodes linked to other instances too.
    let mut told: HashSet<String> = HashSet::new();
    for node in other_nodes(hub, endpoint_id) {
        if told.insert(node.instance.clone()) {
            let _ = post(hub, &node.instance, &request, NOTICE_WITHIN);
        }
    }
    let Some(instance) = elsewhere(hub, endpoint_id)? else {
        return match hub
            .control
            .cancel_task(endpoint_id, task_id, through_attempt)
        {
            Err(CallError::Offline) if !told.is_empty() => Ok(()),
            done => done,
        };
    };
    if told.contains(&instance) {
        return Ok(());
    }
    post(hub, &instance, &request, NOTICE_WITHIN).map(|_| ())
}

/// The endpoint's nodes linked to other live instances, oldest link first
/// (none on SQLite, or when they cannot be read: then only this
/// instance's are used).
pub(crate) fn other_nodes(hub: &Hub, endpoint_id: &str) -> Vec<crate::store::NodeLinkRow> {
    if !shared(hub) {
        return Vec::new();
    }
    hub.store
        .remote_nodes(endpoint_id, hub.instance.id(), crate::grants::now())
        .unwrap_or_else(|e| {
            tracing::warn!(endpoint = %endpoint_id, error = %e, "cannot read the endpoint's nodes linked to other hub instances");
            Vec::new()
        })
}

/// A node a task's attempt can run a shard on: linked to this instance
/// (`instance` is `None`) or to another live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    pub node: String,
    pub instance: Option<String>,
    /// When its link started (a new link of the node is another one).
    pub since: i64,
    pub data_address: Option<String>,
    /// The features its hello named.
    pub features: Vec<String>,
}

impl ShardNode {
    /// Whether its hello named `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// The nodes of an endpoint that move shards of a task (their hello named
/// `FEATURE_SHARDS`): this instance's first, the one speaking for the
/// endpoint before them, then those other instances hold, oldest link
/// first. A node linked to two instances (a redial) counts once, here.
pub fn shard_nodes(hub: &Hub, endpoint_id: &str) -> Vec<ShardNode> {
    let mut nodes: Vec<ShardNode> = hub
        .control
        .shard_nodes(endpoint_id)
        .into_iter()
        .map(|(node, data_address, features)| ShardNode {
            since: 0,
            node,
            instance: None,
            data_address,
            features,
        })
        .collect();
    for link in other_nodes(hub, endpoint_id) {
        let shards = link
            .features
            .iter()
            .any(|f| f == ferry_proto::task::FEATURE_SHARDS);
        if !shards || nodes.iter().any(|n| n.node == link.node) {
            continue;
        }
        nodes.push(ShardNode {
            node: link.node,
            instance: Some(link.instance),
            since: link.since,
            data_address: link.data_address,
            features: link.features,
        });
    }
    nodes
}

/// Watches `node` for as long as a task is spread over it, if it is linked
/// to another instance: no notice of this one's registry says when it
/// goes ([`remote_nodes_gone`]).
pub fn watch(hub: &Hub, endpoint_id: &str, node: &ShardNode) {
    let Some(instance) = &node.instance else {
        return;
    };
    if let Ok(mut watched) = hub.instance.spread_over.lock() {
        watched.insert(
            (endpoint_id.to_string(), node.node.clone()),
            (instance.clone(), node.since),
        );
    }
}

/// Tells source node `node` to send its shard to `connect_to`: over this
/// instance's link, or through the instance holding the node's (which
/// tells this one if the node cannot be reached: [`Request::NodeGone`]).
pub fn start_shard(
    hub: &Hub,
    endpoint_id: &str,
    node: &ShardNode,
    capability: String,
    connect_to: String,
) -> Result<(), CallError> {
    let Some(instance) = &node.instance else {
        return hub
            .control
            .start_shard(endpoint_id, &node.node, capability, connect_to);
    };
    let request = Request::StartShard {
        endpoint_id: endpoint_id.to_string(),
        node: node.node.clone(),
        capability,
        connect_to,
        driver: hub.instance.id().to_string(),
    };
    post(hub, instance, &request, NOTICE_WITHIN).map(|_| ())
}

/// The watched nodes ([`watch`]) whose link is not the one a task was
/// spread over any more (gone, or a new one): each as the scheduler's
/// `NodeGone`, once.
pub fn remote_nodes_gone(hub: &Hub) -> Vec<crate::tasks::Input> {
    let watched: Vec<(NodeKey, LinkKey)> = match hub.instance.spread_over.lock() {
        Ok(w) if !w.is_empty() => w.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => return Vec::new(),
    };
    let endpoints: HashSet<&String> = watched.iter().map(|((e, _), _)| e).collect();
    let mut linked: HashSet<(String, String, String, i64)> = HashSet::new();
    for endpoint_id in endpoints {
        match hub
            .store
            .remote_nodes(endpoint_id, hub.instance.id(), crate::grants::now())
        {
            Ok(nodes) => linked.extend(
                nodes
                    .into_iter()
                    .map(|n| (n.endpoint_id, n.node, n.instance, n.since)),
            ),
            // Unknown: asked again at the next tick.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the nodes other hub instances hold");
                return Vec::new();
            }
        }
    }
    let mut gone = Vec::new();
    if let Ok(mut w) = hub.instance.spread_over.lock() {
        for ((endpoint_id, node), (instance, since)) in watched {
            let key = (endpoint_id, node);
            let still = linked.contains(&(key.0.clone(), key.1.clone(), instance.clone(), since));
            // Rewatched meanwhile (another task's spread): that one counts.
            if still || w.get(&key) != Some(&(instance, since)) {
                continue;
            }
            w.remove(&key);
            gone.push(crate::tasks::Input::NodeGone {
                endpoint_id: key.0,
                node: key.1,
            });
        }
    }
    gone
}

/// A report on a task another instance drives goes to that instance
/// (`true`: it went, or was meant to and is lost; the caller forgets it).
/// Reports on tasks this instance drives, or no one does, stay here.
pub fn forward_report(hub: &Hub, notice: &Notice) -> bool {
    let Notice::Report {
        endpoint_id,
        node,
        task_id,
        attempt,
        report,
    } = notice
    else {
        return false;
    };
    if !shared(hub) {
        return false;
    }
    let driver = match hub.store.task_claim(task_id) {
        Ok(Some(driver)) if driver != hub.instance.id() => driver,
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot read which hub instance drives a task; its report stays here");
            return false;
        }
    };
    let request = Request::Report {
        endpoint_id: endpoint_id.clone(),
        node: node.clone(),
        task_id: task_id.clone(),
        attempt: *attempt,
        report: report.clone(),
    };
    if let Err(e) = post(hub, &driver, &request, NOTICE_WITHIN) {
        tracing::warn!(task = %task_id, error = %e, "cannot pass a task's report to the instance driving it");
    }
    true
}

/// The links other instances hold of the endpoints of the tasks this one
/// drives, as the scheduler's inputs: what changed since `known` (which
/// is updated). An endpoint whose link is this instance's is left to the
/// registry's own notices.
pub fn remote_peers(
    hub: &Hub,
    known: &mut std::collections::HashMap<String, crate::store::RemoteLink>,
) -> Vec<crate::tasks::Input> {
    use crate::tasks::Input;
    if !shared(hub) {
        return Vec::new();
    }
    let links = match hub
        .store
        .remote_links(hub.instance.id(), crate::grants::now())
    {
        Ok(links) => links,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the links other hub instances hold");
            return Vec::new();
        }
    };
    let mut inputs = Vec::new();
    let listed: HashSet<String> = links.iter().map(|l| l.endpoint_id.clone()).collect();
    known.retain(|id, _| {
        let keep = listed.contains(id);
        if !keep && !hub.control.is_connected(id) {
            inputs.push(Input::Disconnected {
                endpoint_id: id.clone(),
            });
        }
        keep
    });
    for link in links {
        if hub.control.is_connected(&link.endpoint_id) {
            known.remove(&link.endpoint_id);
            continue;
        }
        match known.get(&link.endpoint_id) {
            Some(old) if old.since == link.since && old.instance == link.instance => {
                if old.details.paused != link.details.paused {
                    inputs.push(Input::Paused {
                        endpoint_id: link.endpoint_id.clone(),
                        paused: link.details.paused,
                    });
                }
            }
            _ => inputs.push(Input::Connected {
                endpoint_id: link.endpoint_id.clone(),
                data_address: link.details.data_address.clone(),
                paused: link.details.paused,
                relay: link.details.relay,
            }),
        }
        known.insert(link.endpoint_id.clone(), link);
    }
    inputs
}

/// What an endpoint is asked to dial back for: an HTTPS file route's
/// read or upload, or a relayed data stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DialBack {
    Stream {
        path: ferry_proto::wire_path::WirePath,
        #[serde(default)]
        grant: Option<ShareGrant>,
    },
    Upload {
        path: ferry_proto::wire_path::WirePath,
        #[serde(default)]
        grant: Option<ShareGrant>,
        upload: ferry_proto::file_stream::UploadAsk,
    },
    /// A relayed data stream of a task's attempt, into its destination.
    Relay {
        task_id: String,
        attempt: u32,
        stream: u16,
    },
}

/// How long asking for a dial-back through another instance may take.
const DIAL_BACK_WITHIN: Duration = Duration::from_secs(5);

/// Asks the endpoint to dial back with `token` to this instance: over its
/// link here, or through the instance holding it. Among several instances
/// the endpoint is told this instance's own address (`Instance::listening`),
/// since through the front its dial-back could reach another one, which
/// holds no slot for the token.
pub async fn dial_back(
    hub: &Hub,
    endpoint_id: &str,
    token: String,
    what: DialBack,
) -> Result<(), CallError> {
    let via = if shared(hub) {
        hub.instance.address()
    } else {
        None
    };
    let Some(instance) = elsewhere(hub, endpoint_id)? else {
        return ask_dial_back(hub, endpoint_id, token, what, via);
    };
    let Some(via) = via else {
        return Err(CallError::Elsewhere);
    };
    let kind = match &what {
        DialBack::Stream { .. } => "file read",
        DialBack::Upload { .. } => "upload",
        DialBack::Relay { .. } => "relayed stream",
    };
    tracing::info!(endpoint = %endpoint_id, %instance, kind, "a dial-back asked through the instance holding the endpoint's link");
    let request = Request::DialBack {
        endpoint_id: endpoint_id.to_string(),
        token,
        what,
        via,
    };
    match call(hub, &instance, &request, DIAL_BACK_WITHIN).await? {
        Reply::Done => Ok(()),
        Reply::Failed { error } => Err(error.into()),
        Reply::Fs { .. } => Err(CallError::Dropped),
    }
}

fn ask_dial_back(
    hub: &Hub,
    endpoint_id: &str,
    token: String,
    what: DialBack,
    via: Option<String>,
) -> Result<(), CallError> {
    match what {
        DialBack::Stream { path, grant } => {
            hub.control
                .stream_file(endpoint_id, token, path, grant, via)
        }
        DialBack::Upload {
            path,
            grant,
            upload,
        } => hub
            .control
            .upload_file(endpoint_id, token, path, grant, upload, via),
        DialBack::Relay {
            task_id,
            attempt,
            stream,
        } => hub
            .control
            .relay_dial(endpoint_id, token, &task_id, attempt, stream, via),
    }
}

fn post(hub: &Hub, instance: &str, request: &Request, within: Duration) -> Result<i64, CallError> {
    let payload = serde_json::to_string(request).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a message for another hub instance");
        CallError::Unanswered
    })?;
    let now = crate::grants::now();
    let deadline = now + i64::try_from(within.as_secs()).unwrap_or(i64::MAX / 2) + 1;
    hub.store
        .post_message(instance, &payload, now, deadline)
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot leave a message for another hub instance");
            CallError::Unanswered
        })
}

/// Leaves `request` for `instance` and waits up to `within` for its reply.
async fn call(
    hub: &Hub,
    instance: &str,
    request: &Request,
    within: Duration,
) -> Result<Reply, CallError> {
    let id = post(hub, instance, request, within)?;
    let deadline = tokio::time::Instant::now() + within;
    let reply = loop {
        match hub.store.message_reply(id) {
            Ok(Some(reply)) => break Some(reply),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read a reply from another hub instance"),
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(REPLY_POLL).await;
    };
    if let Err(e) = hub.store.drop_message(id) {
        tracing::debug!(error = %e, "cannot delete a message; it goes at its deadline");
    }
    let Some(reply) = reply else {
        tracing::warn!(%instance, "the hub instance holding an endpoint's link did not answer");
        return Err(CallError::Unanswered);
    };
    if reply.len() > MAX_MESSAGE {
        return Err(CallError::Dropped);
    }
    serde_json::from_str(&reply).map_err(|e| {
        tracing::warn!(error = %e, "a reply from another hub instance does not parse");
        CallError::Dropped
    })
}

/// On an instance that may share its database: takes the messages other
/// instances leave for it and answers each, for the life of the runtime.
/// Also deletes expired messages and ended sign-in windows.
pub fn spawn_messenger(hub: Arc<Hub>) {
    if !shared(&hub) {
        return;
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = wake.clone();
    hub.store
        .listen_for_messages(hub.instance.id(), Box::new(move || woken.notify_one()));
    tokio::spawn(async move {
        let mut last_purge = 0;
        loop {
            let now = crate::grants::now();
            match hub.store.take_messages(hub.instance.id(), now, TAKE) {
                Ok(messages) => {
                    for message in messages {
                        tokio::spawn(answer(hub.clone(), message));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the messages left for this hub instance")
                }
            }
            if now - last_purge >= 10 {
                last_purge = now;
                if let Err(e) = hub
                    .store
                    .purge_messages(now, now - crate::web::LOGIN_WINDOW)
                {
                    tracing::debug!(error = %e, "cannot delete expired messages");
                }
            }
            let _ = tokio::time::timeout(POLL, wake.notified()).await;
        }
    });
}

async fn answer(hub: Arc<Hub>, message: crate::store::InstanceMessage) {
    tracing::info!(
        message = message.id,
        "a command for another hub instance, made over this instance's link"
    );
    let reply = match serde_json::from_str::<Request>(&message.payload) {
        Err(e) => {
            tracing::warn!(error = %e, "a message from another hub instance does not parse");
            return;
        }
        Ok(Request::Fs {
            endpoint_id,
            op,
            grant,
            within_ms,
        }) => {
            let left = message.deadline - crate::grants::now();
            let limit = Duration::from_millis(within_ms)
                .min(Duration::from_secs(u64::try_from(left.max(1)).unwrap_or(1)));
            match hub.control.fs(&endpoint_id, op, grant, limit).await {
                Ok(outcome) => Reply::Fs { outcome },
                Err(e) => Reply::Failed { error: (&e).into() },
            }
        }
        Ok(Request::Cancel {
            endpoint_id,
            task_id,
            through_attempt,
        }) => match hub
            .control
            .cancel_task(&endpoint_id, &task_id, through_attempt)
        {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Failed { error: (&e).into() },
        },
        Ok(Request::DialBack {
            endpoint_id,
            token,
            what,
            via,
        }) => match ask_dial_back(&hub, &endpoint_id, token, what, Some(via)) {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Failed { error: (&e).into() },
        },
        Ok(Request::Report {
            endpoint_id,
            node,
            task_id,
            attempt,
            report,
        }) => {
            hub.control.relay_notice(Notice::Report {
                endpoint_id,
                node,
                task_id,
                attempt,
                report,
            });
            Reply::Done
        }
        Ok(Request::StartShard {
            endpoint_id,
            node,
            capability,
            connect_to,
            driver,
        }) => match hub
            .control
            .start_shard(&endpoint_id, &node, capability, connect_to)
        {
            Ok(()) => Reply::Done,
            Err(e) => {
                // Its part will not move: to the driver, the node is gone.
                tracing::warn!(endpoint = %endpoint_id, %node, error = %e, "cannot start a shard on a node linked here");
                let gone = Request::NodeGone { endpoint_id, node };
                if let Err(e) = post(&hub, &driver, &gone, NOTICE_WITHIN) {
                    tracing::warn!(error = %e, "cannot tell the driving instance that a shard did not start");
                }
                Reply::Failed { error: (&e).into() }
            }
        },
        Ok(Request::NodeGone { endpoint_id, node }) => {
            hub.control
                .relay_notice(Notice::NodeGone { endpoint_id, node });
            Reply::Done
        }
        Ok(Request::Relink { endpoint_id }) => {
            if let crate::control::Link::Connected { paused, .. } = hub.control.link(&endpoint_id) {
                noticed(
                    &hub,
                    &Notice::Connected {
                        endpoint_id,
                        paused,
                    },
                );
            }
            Reply::Done
        }
    };
    let written = serde_json::to_string(&reply)
        .map_err(|e| e.to_string())
        .and_then(|reply| {
            hub.store
                .answer_message(message.id, &reply)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot answer another hub instance");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request and a reply survive the trip through the database's text.
    #[test]
    fn requests_and_replies_cross_between_instances_whole() {
        let request = Request::Fs {
            endpoint_id: "e1".into(),
            op: FsOp::Mkdir {
                path: ferry_proto::wire_path::WirePath::from_bytes(b"/~/x".to_vec()),
            },
            grant: None,
            within_ms: 1500,
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(matches!(
            serde_json::from_str::<Request>(&text).unwrap(),
            Request::Fs {
                within_ms: 1500,
                ..
            }
        ));
        for error in [
            CallError::Offline,
            CallError::Timeout(Duration::from_secs(2)),
            CallError::Busy,
            CallError::Unanswered,
        ] {
            let reply = Reply::Failed {
                error: (&error).into(),
            };
            let back: Reply =
                serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            let Reply::Failed { error: failure } = back else {
                panic!("{back:?}");
            };
            assert_eq!(CallError::from(failure).to_string(), error.to_string());
        }
    }

    /// On SQLite every endpoint is this instance's or offline: nothing is
    /// routed, and an endpoint no link holds is offline at once.
    #[tokio::test]
    async fn on_sqlite_a_call_stays_local() {
        let hub = crate::web::for_tests();
        hub.store.claim_tasks("other", 0, i64::MAX / 2).unwrap();
        hub.store.set_control_link("e1", "other", 0).unwrap();
        let op = FsOp::List {
            path: ferry_proto::wire_path::WirePath::from_bytes(b"/".to_vec()),
        };
        let got = fs(&hub, "e1", op, None, Duration::from_secs(1)).await;
        assert!(matches!(got, Err(CallError::Offline)), "{got:?}");
        assert!(!is_connected(&hub, "e1"));
    }
}
