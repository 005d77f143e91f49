//! Relayed data streams: when a task's source cannot reach its
//! destination (or the destination never listens, `data_listen = false`),
//! each data stream goes through the hub's one port instead.
//!
//! The source dials the hub (ALPN `ferry-relay/1`) and says
//! [`RelayHello::Relay`] with the task, attempt and stream; the hub checks
//! that the certificate is the task's source, that the attempt is the one
//! running, and that the relay's bounds have room; it asks the destination
//! over its control link to dial back (a rendezvous token), and once both
//! connections are there it copies bytes between them. Inside, the two
//! endpoints run their own mutual TLS and the capability check end to
//! end, exactly as on a direct connection: the hub carries ciphertext
//! only, and cannot read or alter a file.
//!
//! Direct is tried first and preferred: the hub only offers the relay
//! ([`route`]); the source falls back to it when it cannot connect.

use crate::server::Hub;
use crate::state::RelayConfig;
use ferry_proto::rate::TokenBucket;
use ferry_proto::task::TaskStatus;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The feature an endpoint's hello names when it can dial back for a
/// relayed data stream and send through one.
pub const FEATURE: &str = ferry_proto::relay::RELAY_FEATURE;

/// How long the destination has to dial back for one stream.
const DIAL_BACK_WITHIN: Duration = Duration::from_secs(10);
/// Bytes copied at a time, each way.
const COPY_BUF: usize = 256 * 1024;
/// A running task's relayed bytes reach its stored count at least this
/// often (and at each stream's end), so `task show` follows a long relay.
const SAVE_EVERY: u64 = 64 * 1024 * 1024;

/// How a task's source is told to reach its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination's data address, tried first.
    pub connect_to: Option<String>,
    /// The hub relays this task's streams when the direct connection
    /// cannot be made (or there is none).
    pub relay: bool,
}

/// Whether, and how, a task can start: direct when the destination has a
/// data address, with the relay as fallback when the hub relays and both
/// endpoints can use it; through the relay alone when it has no address;
/// `None` (the task waits) when neither works.
pub fn route(data_address: Option<&str>, relay_possible: bool) -> Option<Route> {
    match (data_address, relay_possible) {
        (None, false) => None,
        (address, relay) => Some(Route {
            connect_to: address.map(str::to_string),
            relay,
        }),
    }
}

/// Relayed streams now, counted against `[relay]`'s bounds: pure, so the
/// limits are tested without sockets.
#[derive(Debug, Default)]
pub struct Streams {
    total: usize,
    by_task: HashMap<String, TaskStreams>,
}

#[derive(Debug)]
struct TaskStreams {
    streams: usize,
    attempt: u32,
    /// Bytes relayed for this attempt so far (both ways).
    bytes: u64,
    /// Bytes relayed and not yet added to the task's stored count.
    unsaved: u64,
    bucket: Option<TokenBucket>,
}

impl Streams {
    /// Takes a place for one more stream of `task_id`'s `attempt`, or says
    /// which bound refuses it. `first` when it is the attempt's first.
    pub fn open(
        &mut self,
        task_id: &str,
        attempt: u32,
        max_total: usize,
        max_per_task: usize,
        task_rate: Option<u64>,
        now: Instant,
    ) -> Result<bool, String> {
        if self.total >= max_total {
            return Err(format!(
                "the hub relays {max_total} streams already ([relay] max_streams); try again later"
            ));
        }
        let task = self
            .by_task
            .entry(task_id.to_string())
            .or_insert_with(|| TaskStreams {
                streams: 0,
                attempt,
                bytes: 0,
                unsaved: 0,
                bucket: task_rate.map(|r| TokenBucket::new(r, now)),
            });
        if task.streams >= max_per_task {
            return Err(format!(
                "this task has {max_per_task} relayed streams already ([relay] max_streams_per_task)"
            ));
        }
        let first = task.streams == 0 || task.attempt != attempt;
        if task.attempt != attempt {
            task.attempt = attempt;
            task.bytes = 0;
        }
        task.streams += 1;
        self.total += 1;
        Ok(first)
    }

    /// Counts `bytes` relayed for `task_id`; how long to wait before
    /// passing them on, under the task's cap.
    pub fn relayed(&mut self, task_id: &str, bytes: u64, now: Instant) -> Duration {
        match self.by_task.get_mut(task_id) {
            Some(task) => {
                task.bytes = task.bytes.saturating_add(bytes);
                task.unsaved = task.unsaved.saturating_add(bytes);
                task.bucket
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.reserve(bytes, now))
            }
            None => Duration::ZERO,
        }
    }

    /// The bytes of `task_id` relayed since the last call, once they are
    /// `at_least`; else 0 (they wait for a later call).
    pub fn take_unsaved(&mut self, task_id: &str, at_least: u64) -> u64 {
        match self.by_task.get_mut(task_id) {
            Some(task) if task.unsaved >= at_least.max(1) => std::mem::take(&mut task.unsaved),
            _ => 0,
        }
    }

    /// A stream of `task_id` ended; when it was the task's last, its
    /// attempt and the bytes relayed for it.
    pub fn close(&mut self, task_id: &str) -> Option<(u32, u64)> {
        self.total = self.total.saturating_sub(1);
        let task = self.by_task.get_mut(task_id)?;
        task.streams = task.streams.saturating_sub(1);
        if task.streams > 0 {
            return None;
        }
        let task = self.by_task.remove(task_id)?;
        Some((task.attempt, task.bytes))
    }

    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.total
    }
}

/// The hub's relay: its bounds and what it carries now.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    task_rate: Option<u64>,
    hub_bucket: Mutex<Option<TokenBucket>>,
    streams: Mutex<Streams>,
}

impl Relay {
    /// `config` was checked when `hub.toml` was loaded; a rate that does
    /// not parse here (it cannot) means no cap.
    pub fn new(config: &RelayConfig) -> Self {
        let (rate, task_rate) = config.rates().unwrap_or((None, None));
        Self {
            config: config.clone(),
            task_rate,
            hub_bucket: Mutex::new(rate.map(|r| TokenBucket::new(r, Instant::now()))),
            streams: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` of `task_id`; how long to wait under both caps.
    fn pace(&self, task_id: &str, bytes: u64) -> Duration {
        let now = Instant::now();
        let task = self.streams().relayed(task_id, bytes, now);
        let hub = self
            .hub_bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map_or(Duration::ZERO, |b| b.reserve(bytes, now));
        task.max(hub)
    }
}

/// A place among the relayed streams, given back on drop (with an event
/// on the task when it was the attempt's last).
struct Place {
    hub: Arc<Hub>,
    task_id: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let (unsaved, ended) = {
            let mut streams = self.hub.relay.streams();
            (
                streams.take_unsaved(&self.task_id, 0),
                streams.close(&self.task_id),
            )
        };
        save(&self.hub, &self.task_id, unsaved);
        // Nothing relayed (the pairing failed): nothing to tell.
        if let Some((attempt, bytes)) = ended.filter(|(_, bytes)| *bytes > 0) {
            record(
                &self.hub,
                &self.task_id,
                &format!(
                    "attempt {attempt}: the hub relayed {} of encrypted data",
                    ferry_proto::human::bytes(bytes)
                ),
            );
        }
    }
}

/// Adds relayed bytes to the task's count (`task show`'s Bytes Relayed).
fn save(hub: &Hub, task_id: &str, bytes: u64) {
    if bytes == 0 {
        return;
    }
    if let Err(e) = hub.store.add_task_bytes_relayed(task_id, bytes) {
        tracing::warn!(task = %task_id, error = %e, "cannot count relayed bytes");
    }
}

fn record(hub: &Hub, task_id: &str, description: &str) {
    if let Err(e) = hub.store.add_task_event(
        task_id,
        crate::tasks::code::RELAYED,
        description,
        crate::grants::now(),
        false,
    ) {
        tracing::warn!(task = %task_id, error = %e, "cannot record a relay event");
    }
}

/// What a source's relay hello asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub task_id: String,
    pub attempt: u32,
    pub stream: u16,
    pub reason: String,
}

/// Decides a source's ask; the destination to dial back on success.
fn check(hub: &Hub, source: &str, ask: &Ask) -> Result<String, String> {
    if !hub.relay.enabled() {
        return Err("this hub relays no data ([relay] enabled = false)".into());
    }
    let row = match hub.store.task(&ask.task_id) {
        Ok(Some(row)) => row,
        Ok(None) => return Err("no such task".into()),
        Err(e) => {
            tracing::warn!(task = %ask.task_id, error = %e, "cannot read a task to relay");
            return Err("the hub cannot read its tasks now; try again".into());
        }
    };
    if row.source_id != source {
        return Err("this endpoint is not the task's source".into());
    }
    if row.status != TaskStatus::Active || row.attempt != ask.attempt {
        return Err(format!(
            "attempt {} of this task is not running",
            ask.attempt
        ));
    }
    // Linked to another hub instance: the task's driver gave the source a
    // relay route only for a destination that relays (it read the link's
    // features from the database), and that instance asks it to dial back.
    let linked_elsewhere = !hub.control.is_connected(&row.destination_id)
        && crate::cluster::is_connected(hub, &row.destination_id);
    if !hub.control.has_feature(&row.destination_id, FEATURE) && !linked_elsewhere {
        return Err(
            "the destination is not connected, or runs an older ferry that cannot take relayed streams"
                .into(),
        );
    }
    Ok(row.destination_id)
}

/// Serves a source's relayed stream: checks, the destination's dial-back,
/// the answer, then the copy until either side closes.
pub async fn serve_source<S>(hub: Arc<Hub>, mut source: S, endpoint_id: String, ask: Ask)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let paired = pair(&hub, &endpoint_id, &ask).await;
    let answer = match &paired {
        Ok(_) => ferry_proto::relay::RelayAnswer::Accepted,
        Err(reason) => ferry_proto::relay::RelayAnswer::Refused {
            reason: reason.clone(),
        },
    };
    let written = match ferry_proto::relay::encode(&answer) {
        Ok(bytes) => source.write_all(&bytes).await.and(source.flush().await),
        Err(e) => return tracing::warn!(error = %e, "cannot encode a relay answer"),
    };
    let (destination, place) = match (paired, written) {
        (Ok(p), Ok(())) => p,
        (Ok(_), Err(e)) => return tracing::debug!(error = %e, "relay answer not delivered"),
        (Err(reason), _) => {
            return tracing::info!(task = %ask.task_id, attempt = ask.attempt, stream = ask.stream, %reason, "relay refused");
        }
    };
    tracing::debug!(task = %ask.task_id, attempt = ask.attempt, stream = ask.stream, "relaying");
    splice(&hub, &ask.task_id, source, destination).await;
    drop(place);
}

async fn pair(
    hub: &Arc<Hub>,
    source: &str,
    ask: &Ask,
) -> Result<(crate::rendezvous::RelayStream, Place), String> {
    let destination = check(hub, source, ask)?;
    let first = hub.relay.streams().open(
        &ask.task_id,
        ask.attempt,
        hub.relay.config.max_streams,
        hub.relay.config.max_streams_per_task,
        hub.relay.task_rate,
        Instant::now(),
    )?;
    let place = Place {
        hub: hub.clone(),
        task_id: ask.task_id.clone(),
    };
    let (token, arrival) = hub
        .rendezvous
        .expect(&destination, DIAL_BACK_WITHIN)
        .map_err(|e| e.to_string())?;
    crate::cluster::dial_back(
        hub,
        &destination,
        token,
        crate::cluster::DialBack::Relay {
            task_id: ask.task_id.clone(),
            attempt: ask.attempt,
            stream: ask.stream,
        },
    )
    .await
    .map_err(|e| format!("cannot reach the destination: {e}"))?;
    let stream = arrival.wait().await.map_err(|e| e.to_string())?;
    if first {
        record(
            hub,
            &ask.task_id,
            &format!(
                "attempt {}: data goes through the hub, encrypted end to end ({})",
                ask.attempt,
                if ask.reason.is_empty() {
                    "no direct connection"
                } else {
                    &ask.reason
                }
            ),
        );
    }
    Ok((stream, place))
}

/// Copies both ways until each side has closed its sending half (or one
/// fails), paced by the task's and the hub's caps.
async fn splice<A, B>(hub: &Arc<Hub>, task_id: &str, a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let tee = Tee::open();
    let there = copy(hub, task_id, a_read, b_write, tee.clone());
    let back = copy(hub, task_id, b_read, a_write, tee);
    tokio::pin!(there, back);
    let (mut there_done, mut back_done) = (false, false);
    // A clean end one way leaves the other running (a half-close); a
    // failure either way ends both, and the endpoints see the stream cut.
    while !(there_done && back_done) {
        let failed = tokio::select! {
            r = &mut there, if !there_done => { there_done = true; r.is_err() }
            r = &mut back, if !back_done => { back_done = true; r.is_err() }
        };
        if failed {
            break;
        }
    }
}

async fn copy<R, W>(
    hub: &Hub,
    task_id: &str,
    mut from: R,
    mut to: W,
    tee: Tee,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUF];
    let result = async {
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            tee.write(&buf[..n]);
            hub.metrics.relayed(n as u64);
            let wait = hub.relay.pace(task_id, n as u64);
            let unsaved = hub.relay.streams().take_unsaved(task_id, SAVE_EVERY);
            save(hub, task_id, unsaved);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            to.write_all(&buf[..n]).await?;
            to.flush().await?;
        }
    }
    .await;
    let _ = to.shutdown().await;
    result
}

/// In debug builds only, with `FERRY_HUB_RELAY_TEE=FILE`: every relayed
/// byte is appended to FILE, so a test can show the hub never held a
/// plaintext byte. Release builds have no such door.
#[derive(Clone, Default)]
struct Tee(#[cfg(debug_assertions)] Option<Arc<Mutex<std::fs::File>>>);

impl Tee {
    #[cfg(debug_assertions)]
    fn open() -> Self {
        let file = std::env::var_os("FERRY_HUB_RELAY_TEE").and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        Self(file.map(|f| Arc::new(Mutex::new(f))))
    }

    #[cfg(not(debug_assertions))]
    fn open() -> Self {
        Self::default()
    }

    #[cfg(debug_assertions)]
    fn write(&self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(file) = &self.0 {
            let _ = file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(bytes);
        }
    }

    #[cfg(not(debug_assertions))]
    fn write(&self, _bytes: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "src-id";
    const DST: &str = "dst-id";

    fn ask(attempt: u32) -> Ask {
        Ask {
            task_id: "t".into(),
            attempt,
            stream: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn only_the_sources_running_attempt_to_a_destination_that_relays_is_relayed() {
        let store = Arc::new(crate::store::SqliteStore::in_memory().unwrap());
        let mut hub = crate::web::test_hub(store);
        let uid = hub.store.add_user("alice", "h", 0).unwrap();
        hub.store.create_endpoint(SRC, uid, "laptop", 0).unwrap();
        hub.store.create_endpoint(DST, uid, "cluster", 0).unwrap();
        let mut task = crate::store::conformance::new_task("t", uid, 0);
        (task.source_id, task.destination_id) = (SRC.into(), DST.into());
        hub.store
            .create_task(&task, crate::tasks::code::SUBMITTED, "x")
            .unwrap();
        assert!(hub.store.begin_attempt("t", 1).unwrap());
        let refused = |hub: &Hub, from: &str, a: Ask| check(hub, from, &a).unwrap_err();
        assert!(refused(&hub, DST, ask(1)).contains("not the task's source"));
        assert!(refused(&hub, SRC, ask(2)).contains("not running"));
        let unknown = Ask {
            task_id: "nope".into(),
            ..ask(1)
        };
        assert!(refused(&hub, SRC, unknown).contains("no such task"));
        // A destination that is not connected, or whose hello did not
        // name the feature, is never asked to dial back.
        assert!(refused(&hub, SRC, ask(1)).contains("older ferry"));
        let _old = hub.control.connect_with_features(DST, vec![]);
        assert!(refused(&hub, SRC, ask(1)).contains("older ferry"));
        let _new = hub
            .control
            .connect_with_features(DST, vec![FEATURE.to_string()]);
        assert_eq!(check(&hub, SRC, &ask(1)), Ok(DST.to_string()));
        hub.relay = Relay::new(&RelayConfig {
            enabled: false,
            ..RelayConfig::default()
        });
        assert!(refused(&hub, SRC, ask(1)).contains("enabled = false"));
    }

    #[test]
    fn direct_is_preferred_and_the_relay_is_the_fallback() {
        assert_eq!(
            route(Some("10.0.0.2:50000"), true),
            Some(Route {
                connect_to: Some("10.0.0.2:50000".into()),
                relay: true
            })
        );
        assert_eq!(
            route(Some("10.0.0.2:50000"), false),
            Some(Route {
                connect_to: Some("10.0.0.2:50000".into()),
                relay: false
            })
        );
        // No data address: the relay alone, or the task waits.
        assert_eq!(
            route(None, true),
            Some(Route {
                connect_to: None,
                relay: true
            })
        );
        assert_eq!(route(None, false), None);
    }

    #[test]
    fn streams_are_bounded_per_task_and_in_all() {
        let now = Instant::now();
        let mut s = Streams::default();
        assert_eq!(s.open("t1", 1, 3, 2, None, now), Ok(true));
        assert_eq!(s.open("t1", 1, 3, 2, None, now), Ok(false));
        let refused = s.open("t1", 1, 3, 2, None, now).unwrap_err();
        assert!(refused.contains("max_streams_per_task"), "{refused}");
        assert_eq!(s.open("t2", 4, 3, 2, None, now), Ok(true));
        let refused = s.open("t3", 1, 3, 2, None, now).unwrap_err();
        assert!(refused.contains("max_streams"), "{refused}");
        assert_eq!(s.total(), 3);
        // Bytes are counted per attempt; the last stream's close says them.
        assert_eq!(s.relayed("t1", 1000, now), Duration::ZERO);
        assert_eq!(s.take_unsaved("t1", 1001), 0, "not enough to save yet");
        assert_eq!(s.take_unsaved("t1", 1000), 1000);
        assert_eq!(s.take_unsaved("t1", 0), 0, "saved once");
        assert_eq!(s.relayed("t1", 24, now), Duration::ZERO);
        assert_eq!(s.take_unsaved("t1", 0), 24);
        assert_eq!(s.close("t1"), None);
        assert_eq!(s.close("t1"), Some((1, 1024)));
        assert_eq!(s.close("t2"), Some((4, 0)));
        assert_eq!(s.total(), 0);
        assert_eq!(s.open("t3", 1, 3, 2, None, now), Ok(true));
    }

    #[test]
    fn a_task_cap_paces_its_streams() {
        let now = Instant::now();
        let mut s = Streams::default();
        s.open("t", 1, 10, 10, Some(1_000_000), now).unwrap();
        // The first tenth of a second's worth passes at once; a second's
        // worth more waits about a second.
        assert_eq!(s.relayed("t", 100_000, now), Duration::ZERO);
        let wait = s.relayed("t", 1_000_000, now);
        assert!(wait >= Duration::from_millis(900), "{wait:?}");
    }
}
