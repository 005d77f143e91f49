//! The source side: walks the items as a stream, offers entries in
//! manifest batches, reads and hashes what the destination needs, and
//! spreads the chunks over several TLS streams.
//!
//! ```text
//!  walker ──manifest batches──▶ stream 0 ──▶ destination
//!                needs ◀────────────────────────┘
//!  reader: open, hash every chunk, queue the needed ones, FileDone
//!     └──▶ outgoing queue ──▶ stream 0..n (whichever is free)
//! ```
//!
//! Memory stays flat: the walker holds one directory listing per level,
//! at most [`WINDOW`] offered entries wait for their verdict, and the last
//! [`SENT_KEPT`] files sent are remembered for a destination that asks for
//! one again (its digest did not match, or its temporary file failed).
//!
//! Liveness (data protocol version 2): every stream's writer sends a
//! keep-alive when it has written nothing for a while, so a destination
//! waiting on a stream hears a source that is busy reading a slow disk;
//! stream 0 is read for the destination's keep-alives, and a destination
//! silent for the idle limit ends the attempt ([`MoveError::PeerSilent`]),
//! the writers held by a stalled network with it. A destination that
//! talks but does not read is busy (hashing, committing), not stalled.
//!
//! Failures are [`MoveError`]s, handled by their [`Disposition`]: an
//! interrupted call is made again at once; an I/O error reading a file
//! reads it once more; an entry that would fail the task is left out and
//! reported with `--skip-source-errors`; whatever else ends the attempt,
//! told to the destination (`Abort`, with the disposition) so that both
//! endpoints report the same to the hub.

use crate::channel::{
    self, ChannelError, Liveness, Watched, read_frame, send_keep_alive, write_chunk, write_message,
};
use crate::context::Context;
use crate::digest::{
    CHUNK_SIZE, ChecksumAlgorithm, chunk_count, chunk_hash, file_digest, from_hex, hashing_threads,
    map_parallel, read_chunk_hashes, to_hex,
};
use crate::faults::{Faults, Op};
use crate::link::{DataIo, Route};
use crate::metrics::Metrics;
use crate::throttle::{Limiter, Throttled};
use crate::{Disposition, MoveError, Side, at_once};
use ferry_paths::{EntryKind as FsKind, FsError, Metadata, RootedFs, resolve_endpoint_path};
use ferry_proto::data::{ChunkHeader, ChunkSet, Entry, EntryKind, Frame, Message, Need, Open};
use ferry_proto::filter::FilterSet;
use ferry_proto::task::{Capability, Part, TaskReport};
use ferry_proto::wire_path::WirePath;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// Offered entries awaiting the destination's verdict.
pub const WINDOW: usize = 16_384;
/// Files sent that the destination may ask for again, the newest first.
pub const SENT_KEPT: usize = WINDOW;
/// Entries per manifest message.
const BATCH: usize = 512;
/// Bytes of chunk data queued for the streams (memory stays bounded by
/// this); counted in units of [`QUEUE_UNIT`] bytes.
const QUEUED_BYTES: usize = 32 * 1024 * 1024;
const QUEUE_UNIT: usize = 4096;
/// Items queued for the streams: many small files pipeline deep.
const QUEUED_ITEMS: usize = 4096;
/// What one stream takes off the queue at once, and what the reader
/// gathers into one batch, to write with one flush.
const COALESCE_BYTES: usize = 256 * 1024;
/// Items up to this size are batched.
const SMALL_ITEM: usize = 64 * 1024;
/// A file that keeps changing while read is offered this many times.
const MAX_REOFFERS: u32 = 3;
/// Opening one stream (TCP, TLS, and the destination's answer to its
/// `Open`) is given this long.
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
/// A direct TCP connection the hub would relay instead is given this
/// long: enough for two SYN retransmissions (at 1 s and 3 s) on a lossy
/// path, short enough that a firewall which drops silently costs an
/// attempt seconds, not [`CONNECT_WITHIN`].
const DIRECT_WITHIN_ELSE_RELAY: Duration = Duration::from_secs(5);
/// Frames from the destination's stream 0 waiting for the send loop.
const FROM_DESTINATION: usize = 64;

/// Streams for large files when the task does not say.
pub const DEFAULT_STREAMS: u16 = 4;
/// Streams for small files when the task does not say.
pub const SMALL_FILE_STREAMS: u16 = 8;
/// Entries sampled to judge a tree's file sizes.
const SAMPLE: usize = 256;

/// Streams from the file-size mix. Large files are CPU-bound (TLS and
/// hashing on both ends), and four streams spread their chunks over the
/// cores. Small files are latency-bound: each stream handles its frames in
/// order, so more streams overlap more per-file work (measured on 2 cores,
/// 20,000 x 4 KiB: 1 stream 9.3k files/s, 2: 15.3k, 4-8: 16-17k). A quick
/// sample of the items' top levels decides; the walk itself comes later.
fn choose_streams(fs: &RootedFs, home: &Path, cap: &Capability) -> u16 {
    let (mut bytes, mut files) = (0u64, 0u64);
    for item in &cap.items {
        let Ok(root) = resolve_endpoint_path(home, item.source.as_bytes()) else {
            continue;
        };
        if item.recursive {
            if let Ok(entries) = fs.read_dir(&root) {
                for e in entries
                    .iter()
                    .filter(|e| e.metadata.kind == FsKind::File)
                    .take(SAMPLE)
                {
                    bytes += e.metadata.size;
                    files += 1;
                }
            }
        } else if let Ok(m) = fs.stat(&root) {
            bytes += m.size;
            files += 1;
        }
        if files as usize >= SAMPLE {
            break;
        }
    }
    let mean = bytes.checked_div(files).unwrap_or(0);
    if mean >= CHUNK_SIZE {
        DEFAULT_STREAMS
    } else {
        SMALL_FILE_STREAMS
    }
}

/// How an attempt ended at the source, short of success.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The destination refused the data connection (an ended attempt, a
    /// revoked endpoint, a pause): a later attempt may be served.
    #[error("{0}")]
    Refused(String),
    /// A data connection failed.
    #[error("{0}")]
    Channel(#[from] ChannelError),
    /// The attempt failed here or at the destination (then
    /// [`MoveError::PeerGaveUp`], with the destination's disposition).
    #[error(transparent)]
    Move(#[from] MoveError),
    /// The hub (or a pause) stopped the attempt: nothing to report.
    #[error("the attempt was stopped")]
    Canceled,
    /// The destination was told to stop the attempt (it paused, or the hub
    /// ended the attempt) and said so: its endpoint tells the hub, this
    /// one reports nothing.
    #[error("the destination stopped the attempt: {0}")]
    PeerStopped(String),
}

impl SendError {
    /// The endpoint where the attempt's end happened, when known (see
    /// [`MoveError::side`]).
    pub fn side(&self) -> Option<Side> {
        match self {
            SendError::Move(e) => e.side(),
            SendError::Refused(_)
            | SendError::Channel(_)
            | SendError::Canceled
            | SendError::PeerStopped(_) => None,
        }
    }

    /// What the attempt's end asks of the hub: [`Disposition::FailTask`]
    /// or [`Disposition::RetryLater`] (a canceled attempt asks nothing;
    /// it says retry later if asked).
    pub fn disposition(&self) -> Disposition {
        match self {
            SendError::Move(e) => e.disposition().at_end(),
            SendError::Refused(_)
            | SendError::Channel(_)
            | SendError::Canceled
            | SendError::PeerStopped(_) => Disposition::RetryLater,
        }
    }
}

/// The queue to the data streams is gone: every stream's writer ended
/// (its own error says why).
fn streams_closed() -> SendError {
    MoveError::Connection("the data streams closed".into()).into()
}

/// An error of `op` on `path` on this (the source's) disk, by errno.
fn on_disk(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MoveError {
    let path = path.to_path_buf();
    move |e| MoveError::os(Side::Source, op, &path, e)
}

/// An offered file, remembered until its verdict arrives.
#[derive(Debug, Clone)]
struct Offered {
    path: PathBuf,
    entry: Entry,
    offers: u32,
}

enum Outgoing {
    /// The permit holds the chunk's share of [`QUEUED_BYTES`] until written.
    Chunk(ChunkHeader, Vec<u8>, tokio::sync::OwnedSemaphorePermit),
    Message(Message),
    /// Many small files' chunks and messages, written under one flush.
    Batch(Vec<Outgoing>),
}

impl Outgoing {
    fn wire_bytes(&self) -> usize {
        match self {
            Outgoing::Chunk(_, data, _) => data.len() + 64,
            Outgoing::Message(_) => 128,
            Outgoing::Batch(items) => items.iter().map(Outgoing::wire_bytes).sum(),
        }
    }
}

/// The reader's side of the send queue. Small items gather into a batch
/// while more work is waiting, so a stream writes many small files with
/// one TLS flush and syscall instead of one each; the batch goes as soon as
/// the reader runs out of work, so nothing waits on a timer.
struct Outbox {
    queue: mpsc::Sender<Outgoing>,
    batch: Vec<Outgoing>,
    batch_bytes: usize,
}

impl Outbox {
    fn new(queue: mpsc::Sender<Outgoing>) -> Self {
        Outbox {
            queue,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    fn push(&mut self, item: Outgoing) -> Result<(), SendError> {
        let bytes = item.wire_bytes();
        if bytes > SMALL_ITEM {
            self.send_batch()?;
            return self.send(item);
        }
        self.batch.push(item);
        self.batch_bytes += bytes;
        if self.batch_bytes >= COALESCE_BYTES {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<(), SendError> {
        self.batch_bytes = 0;
        match self.batch.len() {
            0 => Ok(()),
            1 => {
                let item = self.batch.pop().ok_or_else(streams_closed)?;
                self.send(item)
            }
            _ => {
                let items = std::mem::take(&mut self.batch);
                self.send(Outgoing::Batch(items))
            }
        }
    }

    fn send(&self, item: Outgoing) -> Result<(), SendError> {
        self.queue.blocking_send(item).map_err(|_| streams_closed())
    }
}

struct Shared {
    fs: RootedFs,
    faults: Faults,
    offered: Mutex<HashMap<u64, Offered>>,
    sent: Mutex<Sent>,
    window: Semaphore,
    queued_bytes: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    next_id: std::sync::atomic::AtomicU64,
    ctx: Arc<Context>,
    cap: Capability,
    /// The task's `--include`/`--exclude`, compiled once.
    filters: FilterSet,
    /// The digests' algorithm: the task's, unless the destination speaks a
    /// data protocol older than 3 (then SHA-256, which it verifies with).
    algorithm: ChecksumAlgorithm,
    /// Digests of the files the destination said it compares, hashed
    /// while it hashes its copies (data protocol 6).
    prehashed: crate::prehash::Prehashed,
}

impl Shared {
    fn report(&self, report: TaskReport) {
        self.ctx.report(&self.cap.task_id, self.cap.attempt, report);
    }
}

/// The last [`SENT_KEPT`] files sent, by id.
#[derive(Debug, Default)]
struct Sent {
    by_id: HashMap<u64, Offered>,
    order: VecDeque<u64>,
}

impl Sent {
    fn keep(&mut self, id: u64, offered: Offered) {
        if self.order.len() >= SENT_KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_id.remove(&oldest);
        }
        if self.by_id.insert(id, offered).is_none() {
            self.order.push_back(id);
        }
    }

    fn get(&self, id: u64) -> Option<Offered> {
        self.by_id.get(&id).cloned()
    }
}

/// Runs one attempt of a task as its source, until the destination says
/// every file is committed, or something fails.
pub async fn send(
    ctx: Arc<Context>,
    sealed: String,
    connect_to: String,
    cancel: watch::Receiver<bool>,
) -> Result<(), SendError> {
    send_via(ctx, sealed, Route::direct(connect_to), cancel).await
}

/// As [`send`], reaching the destination by `route`: directly when it
/// can, else (when the hub relays the task) through the hub.
pub async fn send_via(
    ctx: Arc<Context>,
    sealed: String,
    route: Route,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), SendError> {
    let key = (ctx.hub_key)().ok_or_else(|| SendError::Refused("no hub signing key yet".into()))?;
    let cap = channel::verify_capability(&sealed, &key, channel::now())
        .map_err(|e| SendError::Refused(e.to_string()))?;
    if cap.source_endpoint != ctx.identity.endpoint_id {
        return Err(SendError::Refused(
            "the capability names another source endpoint".into(),
        ));
    }
    let filters = FilterSet::new(&cap.options.filters).map_err(|e| MoveError::Unusable {
        side: Side::Source,
        reason: e.to_string(),
    })?;
    // The task's cap, shared by its streams, and the endpoint's, shared
    // by all it sends and receives (see `throttle`).
    let limiters = vec![
        Arc::new(Limiter::new(cap.options.bwlimit)),
        ctx.bwlimit.clone(),
    ];
    // For a grantee, every path of this attempt is decided by the owner's
    // policy narrowed by the signed grant: the walk, the sample, each read.
    let policy = ctx
        .policy_for(cap.source_grant.as_ref())
        .map_err(|e| MoveError::Unusable {
            side: Side::Source,
            reason: e.to_string(),
        })?;
    if let Some(grant) = &cap.source_grant {
        tracing::info!(task = %cap.task_id, attempt = cap.attempt, grantee = ?grant.grantee, permission = ?grant.permission_id, mode = grant.mode.as_str(), "sending for a grantee");
    }
    let streams = match cap.options.streams {
        Some(n) => n.clamp(1, 64) as u16,
        None => choose_streams(&RootedFs::new(policy.clone()), &ctx.home, &cap),
    };
    tracing::debug!(task = %cap.task_id, attempt = cap.attempt, streams, ?route, "connecting");
    let config = ctx.identity.client_config()?;
    let server = rustls_pki_types::ServerName::try_from(ferry_proto::api::endpoint_dns_name(
        &cap.destination_endpoint,
    ))
    .map_err(|_| MoveError::Unusable {
        side: Side::Source,
        reason: "the destination id is not usable as a TLS name".into(),
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut conns = Vec::new();
    // Why the streams go through the hub, once they do: the rest follow.
    let mut relaying = route
        .direct
        .is_none()
        .then(|| "the destination takes no direct connections".to_string());
    // What each `Open` says of the stream count, once stream 0 settled
    // the protocol: the most this attempt will open, when the
    // destination takes streams later (and the task fixed no count).
    let tuned = cap.options.streams.is_none();
    let mut declared = None;
    for index in 0..streams {
        let io = connect(&route, &mut relaying, index).await?;
        let open = async {
            let tls = handshake(&connector, &server, io).await?;
            let grows = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol())
                .is_some_and(ferry_proto::data::grows_streams);
            let most = *declared.get_or_insert(if tuned && grows {
                ctx.tuning.max_streams.clamp(streams, 64)
            } else {
                streams
            });
            open_on(tls, &sealed, index, most).await
        };
        let tls = tokio::time::timeout(CONNECT_WITHIN, open)
            .await
            .map_err(|_| {
                SendError::Channel(ChannelError::Protocol(
                    "timed out opening a data stream to the destination".into(),
                ))
            })??;
        check_stream(&tls, &filters)?;
        conns.push(tls);
    }
    let most = declared.unwrap_or(streams);
    let mut tuner = crate::tuner::StreamTuner::new(
        streams,
        crate::tuner::Tuning {
            max_streams: most,
            ..ctx.tuning
        },
        !tuned,
    );
    let opener = Opener {
        connector: connector.clone(),
        server: server.clone(),
        route: route.clone(),
        relaying: relaying.clone(),
        sealed: sealed.clone(),
        filters: filters.clone(),
        most,
    };

    let algorithm = conns.first().map_or(ChecksumAlgorithm::Sha256, |tls| {
        let version = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol())
            .unwrap_or(ferry_proto::data::MIN_PROTOCOL_VERSION);
        ferry_proto::data::digest_algorithm(cap.options.checksum_algorithm, version)
    });
    if algorithm != cap.options.checksum_algorithm {
        tracing::info!(task = %cap.task_id, attempt = cap.attempt, asked = %cap.options.checksum_algorithm, "the destination speaks an older data protocol: digests are SHA-256");
    }
    let shared = Arc::new(Shared {
        fs: RootedFs::with_cached_roots(policy).holding_dirs(),
        faults: ctx.faults(),
        offered: Mutex::new(HashMap::new()),
        sent: Mutex::default(),
        window: Semaphore::new(WINDOW),
        queued_bytes: Arc::new(Semaphore::new(QUEUED_BYTES / QUEUE_UNIT)),
        runtime: tokio::runtime::Handle::current(),
        next_id: std::sync::atomic::AtomicU64::new(0),
        ctx: ctx.clone(),
        cap,
        filters,
        algorithm,
        prehashed: Default::default(),
    });
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Message>();
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(QUEUED_ITEMS);
    let out_rx = Arc::new(tokio::sync::Mutex::new(out_rx));
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<(u64, Need)>();

    let mut tasks = tokio::task::JoinSet::new();
    // Walker: a blocking thread feeding manifest batches.
    {
        let shared = shared.clone();
        let control = control_tx.clone();
        let handle = tokio::runtime::Handle::current();
        tasks.spawn_blocking(move || walk(&shared, &control, &handle));
    }
    // Reader: a blocking thread reading what the destination needs.
    {
        let shared = shared.clone();
        let out = out_tx.clone();
        let control = control_tx.clone();
        tasks.spawn_blocking(move || read_needed(&shared, jobs_rx, Outbox::new(out), &control));
    }
    drop(out_tx);
    // Hasher: a blocking thread hashing ahead the files the destination
    // says it compares.
    let (comparing_tx, comparing_rx) = std::sync::mpsc::channel::<Vec<Announced>>();
    {
        let shared = shared.clone();
        tasks.spawn_blocking(move || {
            hash_ahead(&shared, comparing_rx);
            Ok(())
        });
    }

    // Bytes this attempt's streams sent, for the tuner.
    let sent = Arc::new(AtomicU64::new(0));
    let mut stream0 = None;
    for (index, tls) in conns.into_iter().enumerate() {
        if index == 0 {
            let liveness = ctx.liveness.on(tls.get_ref().1.alpn_protocol());
            let (reader, writer) = tokio::io::split(tls);
            let writer = Throttled::new(writer, limiters.clone());
            stream0 = Some((reader, writer, liveness));
        } else {
            spawn_stream(&mut tasks, tls, &ctx, &limiters, &out_rx, &sent);
        }
    }
    let Some((reader0, writer0, liveness0)) = stream0 else {
        return Err(MoveError::Internal("no data streams".into()).into());
    };
    let (prio_tx, prio_rx) = mpsc::unbounded_channel::<Urgent>();
    {
        let out = out_rx.clone();
        let keep_alive = liveness0.map(|l| l.keep_alive_every);
        let metrics = ctx.metrics.clone();
        let sent = sent.clone();
        tasks.spawn(async move {
            write_stream(writer0, out, Some(prio_rx), keep_alive, metrics, sent).await
        });
    }
    // Stream 0 is read on a task of its own: a frame is never cut short
    // by the loop below attending to something else.
    let (from_dest_tx, mut from_dest) = mpsc::channel(FROM_DESTINATION);
    tasks.spawn(read_destination(reader0, liveness0, from_dest_tx));

    // The tuner's samples: the queue's fill looked at a few times a
    // period (it swings with each chunk taken), the rate once.
    let mut look = tokio::time::interval(ctx.tuning.sample_every / LOOKS_PER_SAMPLE);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut period = Period::new(0);
    let mut growing = tokio::task::JoinSet::new();
    let mut asked = 0u16;

    let outcome = loop {
        tokio::select! {
            _ = look.tick(), if !tuner.settled() => {
                let in_use = 1.0 - shared.queued_bytes.available_permits() as f64 / (QUEUED_BYTES / QUEUE_UNIT) as f64;
                if let Some(sample) = period.look(in_use, sent.load(Ordering::Relaxed)) {
                    if let Some(more) = tuner.sample(sample) {
                        let first = tuner.streams();
                        tracing::info!(task = %shared.cap.task_id, attempt = shared.cap.attempt, from = first, to = first + more, mb_per_s = sample.rate / 1e6, "adding data streams");
                        asked = more;
                        growing.spawn(opener.clone().open(first, more));
                    }
                }
            }
            grown = growing.join_next(), if !growing.is_empty() => {
                let opened = grown.and_then(Result::ok).unwrap_or_default();
                let n = opened.len() as u16;
                for tls in opened {
                    spawn_stream(&mut tasks, tls, &ctx, &limiters, &out_rx, &sent);
                }
                tuner.opened(asked, n);
                period = Period::new(sent.load(Ordering::Relaxed));
            }
            message = control_rx.recv() => {
                if let Some(m) = message {
                    let _ = prio_tx.send(Urgent::Message(m));
                }
            }
            frame = from_dest.recv() => match frame {
                Some(Ok(Frame::Message(Message::Needs { needs }))) => {
                    tracing::debug!(needs = needs.len(), "needs");
                    for (id, need) in needs {
                        if jobs_tx.send((id, need)).is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Frame::Message(Message::Comparing { ids }))) => {
                    let announced = announced(&shared, ids);
                    if !announced.is_empty() {
                        let _ = comparing_tx.send(announced);
                    }
                }
                Some(Ok(Frame::Message(Message::Done { .. }))) => {
                    tracing::debug!("destination done");
                    break Ok(());
                }
                // Told to stop there (a pause, the hub's cancel): its
                // endpoint tells the hub.
                Some(Ok(Frame::Message(Message::Abort { reason, stopped: true, .. }))) => {
                    break Err(SendError::PeerStopped(reason));
                }
                // The destination's disposition is this side's too, whichever
                // report reaches the hub first.
                Some(Ok(Frame::Message(Message::Abort { reason, disposition, side, .. }))) => {
                    break Err(MoveError::PeerGaveUp { peer: Side::Destination, reason, disposition, side }.into());
                }
                Some(Ok(other)) => break Err(SendError::Channel(ChannelError::Protocol(format!("unexpected {other:?} from the destination")))),
                Some(Err(ChannelError::Stalled(stall))) => break Err(MoveError::stalled(Side::Destination, stall).into()),
                Some(Err(e)) => break Err(SendError::Channel(e)),
                None => break Err(SendError::Channel(ChannelError::Protocol("the destination closed the connection".into()))),
            },
            done = tasks.join_next(), if !tasks.is_empty() => match done {
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(e)) => break Err(MoveError::Internal(format!("a transfer worker failed: {e}")).into()),
                _ => {}
            },
            _ = cancel.changed() => break Err(SendError::Canceled),
        }
    };
    drop(jobs_tx);
    drop(comparing_tx);
    // The walker and the reader may wait for room that nothing makes now.
    shared.window.close();
    shared.queued_bytes.close();
    // A failure here travels to the destination as an abort with its
    // disposition, so both endpoints report the same end to the hub; a
    // stop (a pause, the hub's cancel) as an abort that asks for no report,
    // so a pause is no fault. We wait (a little) until the destination
    // closes: cut streams would be a fault of their own there.
    let last_word = match &outcome {
        Err(SendError::Move(e)) if !matches!(e, MoveError::PeerGaveUp { .. }) => Some(e.abort()),
        Err(SendError::Canceled) => Some(Message::Abort {
            reason: "the source endpoint paused, or the hub ended the attempt".into(),
            disposition: Disposition::RetryLater,
            side: None,
            stopped: true,
        }),
        _ => None,
    };
    if let Some(abort) = last_word {
        let (written, written_rx) = oneshot::channel();
        let _ = prio_tx.send(Urgent::Last(abort, written));
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            // On the wire (or its writer gone), then read until the
            // destination closes (or its stream has ended already).
            let _ = written_rx.await;
            while let Some(Ok(_)) = from_dest.recv().await {}
        })
        .await;
    }
    tasks.abort_all();
    outcome
}

/// Makes stream `index`'s transport: a TCP connection to the
/// destination, unless none can be made (or there is none to make) and
/// the hub relays this task; then a stream relayed by the hub, and the
/// streams after it too (`relaying` keeps why).
async fn connect(
    route: &Route,
    relaying: &mut Option<String>,
    index: u16,
) -> Result<DataIo, SendError> {
    if relaying.is_none()
        && let Some(addr) = &route.direct
    {
        let within = if route.relay.is_some() {
            DIRECT_WITHIN_ELSE_RELAY
        } else {
            CONNECT_WITHIN
        };
        let why = match tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(DataIo::Direct(tcp));
            }
            Ok(Err(e)) => format!("cannot connect to the destination at {addr}: {e}"),
            Err(_) => format!("timed out connecting to the destination at {addr}"),
        };
        if route.relay.is_none() {
            return Err(SendError::Channel(ChannelError::Protocol(why)));
        }
        tracing::info!(stream = index, reason = %why, "relaying through the hub");
        *relaying = Some(why);
    }
    let Some(relay) = &route.relay else {
        return Err(SendError::Refused(
            "the destination takes no direct connections and the hub relays none for this task"
                .into(),
        ));
    };
    let reason = relaying.as_deref().unwrap_or_default();
    let io = tokio::time::timeout(CONNECT_WITHIN, relay.dial(index, reason))
        .await
        .map_err(|_| {
            SendError::Channel(ChannelError::Protocol(
                "timed out waiting for the hub to relay a data stream".into(),
            ))
        })?
        .map_err(|e| {
            SendError::Channel(ChannelError::Protocol(format!(
                "the hub did not relay a data stream: {e}"
            )))
        })?;
    Ok(DataIo::Relayed(io))
}

/// A data stream's TLS over `io`.
async fn handshake(
    connector: &tokio_rustls::TlsConnector,
    server: &rustls_pki_types::ServerName<'static>,
    io: DataIo,
) -> Result<tokio_rustls::client::TlsStream<DataIo>, SendError> {
    Ok(connector
        .connect(server.clone(), io)
        .await
        .map_err(ChannelError::from)?)
}

/// Opens stream `index` of (at most) `streams` on `tls`: `Open`, and the
/// destination's answer.
async fn open_on(
    mut tls: tokio_rustls::client::TlsStream<DataIo>,
    sealed: &str,
    index: u16,
    streams: u16,
) -> Result<tokio_rustls::client::TlsStream<DataIo>, SendError> {
    channel::send_message(
        &mut tls,
        &Message::Open(Open {
            capability: sealed.to_string(),
            stream: index,
            streams,
        }),
    )
    .await?;
    match channel::read_handshake(&mut tls, None).await? {
        Message::Accepted => Ok(tls),
        Message::Refused { reason } => Err(SendError::Refused(format!(
            "the destination refused: {reason}"
        ))),
        other => Err(SendError::Channel(ChannelError::Protocol(format!(
            "unexpected {other:?}"
        )))),
    }
}

/// Refuses a stream whose protocol cannot carry this attempt: an older
/// destination would delete what the filters exclude.
fn check_stream(
    tls: &tokio_rustls::client::TlsStream<DataIo>,
    filters: &FilterSet,
) -> Result<(), SendError> {
    let version = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol());
    if !filters.is_empty() && !version.is_some_and(ferry_proto::data::honours_filters) {
        return Err(MoveError::Unusable {
            side: Side::Destination,
            reason: "runs an older ferry that does not honour --include/--exclude; upgrade it to transfer with filters".into(),
        }
        .into());
    }
    Ok(())
}

/// Looks at the queue to the streams per tuner sample.
const LOOKS_PER_SAMPLE: u32 = 8;

/// One tuner period being measured.
struct Period {
    started: std::time::Instant,
    sent_before: u64,
    looks: u32,
    in_use: f64,
}

impl Period {
    fn new(sent: u64) -> Self {
        Self {
            started: std::time::Instant::now(),
            sent_before: sent,
            looks: 0,
            in_use: 0.0,
        }
    }

    /// One look at the queue's fill and the bytes sent so far; the
    /// period's sample at its last look (and the next period begins).
    fn look(&mut self, in_use: f64, sent: u64) -> Option<crate::tuner::Sample> {
        self.looks += 1;
        self.in_use += in_use;
        if self.looks < LOOKS_PER_SAMPLE {
            return None;
        }
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let sample = crate::tuner::Sample {
            rate: sent.saturating_sub(self.sent_before) as f64 / seconds,
            backlog: self.in_use / f64::from(self.looks),
        };
        *self = Self::new(sent);
        Some(sample)
    }
}

/// What opening streams while an attempt runs needs, owned.
#[derive(Clone)]
struct Opener {
    connector: tokio_rustls::TlsConnector,
    server: rustls_pki_types::ServerName<'static>,
    route: Route,
    relaying: Option<String>,
    sealed: String,
    filters: FilterSet,
    /// What every `Open` of the attempt says of the stream count.
    most: u16,
}

impl Opener {
    /// Streams `first..first + more`, in order, until one cannot be
    /// opened (the destination or the hub's relay takes no more): those
    /// opened. A stream that fails here costs the attempt nothing.
    async fn open(mut self, first: u16, more: u16) -> Vec<tokio_rustls::client::TlsStream<DataIo>> {
        let mut opened = Vec::new();
        for index in first..first.saturating_add(more) {
            let open = async {
                let io = connect(&self.route, &mut self.relaying, index).await?;
                let tls = handshake(&self.connector, &self.server, io).await?;
                check_stream(&tls, &self.filters)?;
                open_on(tls, &self.sealed, index, self.most).await
            };
            match tokio::time::timeout(CONNECT_WITHIN, open).await {
                Ok(Ok(tls)) => opened.push(tls),
                Ok(Err(e)) => {
                    tracing::info!(stream = index, error = %e, "no further data stream");
                    break;
                }
                Err(_) => {
                    tracing::info!(
                        stream = index,
                        "no further data stream: timed out opening it"
                    );
                    break;
                }
            }
        }
        opened
    }
}

/// Starts a data stream other than 0: it takes from the shared queue,
/// and its reader only watches for the destination closing it.
fn spawn_stream(
    tasks: &mut tokio::task::JoinSet<Result<(), SendError>>,
    tls: tokio_rustls::client::TlsStream<DataIo>,
    ctx: &Context,
    limiters: &[Arc<Limiter>],
    out: &Arc<tokio::sync::Mutex<mpsc::Receiver<Outgoing>>>,
    sent: &Arc<AtomicU64>,
) {
    // A peer that speaks only version 1 gets no keep-alive and no deadline.
    let keep_alive = ctx
        .liveness
        .on(tls.get_ref().1.alpn_protocol())
        .map(|l| l.keep_alive_every);
    let (reader, writer) = tokio::io::split(tls);
    let writer = Throttled::new(writer, limiters.to_vec());
    let (out, metrics, sent) = (out.clone(), ctx.metrics.clone(), sent.clone());
    tasks.spawn(async move { write_stream(writer, out, None, keep_alive, metrics, sent).await });
    // The destination never writes on data streams; their readers only watch for closing.
    tasks.spawn(async move { drain(reader).await });
}

/// Reads the destination's stream 0 and hands its frames to the send
/// loop, keep-alives aside; its last item says how the stream ended (an
/// error, or the channel closing at its clean end). With `liveness`, a
/// wait of its idle limit with no byte is an error.
async fn read_destination<R: tokio::io::AsyncRead + Unpin>(
    reader: R,
    liveness: Option<Liveness>,
    frames: mpsc::Sender<Result<Frame, ChannelError>>,
) -> Result<(), SendError> {
    let mut reader = Watched::new(reader, liveness.map(|l| l.idle));
    loop {
        let next = match read_frame(&mut reader).await {
            Ok(Some(Frame::KeepAlive)) => continue,
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return Ok(()),
            Err(e) => Err(e),
        };
        let failed = next.is_err();
        if frames.send(next).await.is_err() || failed {
            return Ok(());
        }
    }
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(mut reader: R) -> Result<(), SendError> {
    let mut buf = [0u8; 64];
    loop {
        match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// A conversation message for stream 0, ahead of anything queued.
enum Urgent {
    Message(Message),
    /// The attempt's last word: told once it is on the wire.
    Last(Message, oneshot::Sender<()>),
}

/// How soon an item goes onto the wire.
enum Haste {
    /// With whatever else is queued, flushed when the queue runs dry.
    Queued,
    /// At once (a conversation message).
    Urgent,
    /// At once, alone, and told when done.
    Last(oneshot::Sender<()>),
}

/// What a stream's writer does next.
enum Next {
    Item(Outgoing, Haste),
    /// Nothing more will be queued.
    QueueClosed,
    /// Quiet for the keep-alive interval.
    KeepAlive,
}

/// Writes queued chunks (and, on stream 0, conversation messages first);
/// with `keep_alive`, a keep-alive whenever it has written nothing for
/// that long, until the attempt ends.
async fn write_stream<W: tokio::io::AsyncWrite + Unpin>(
    writer: W,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Outgoing>>>,
    mut priority: Option<mpsc::UnboundedReceiver<Urgent>>,
    keep_alive: Option<Duration>,
    metrics: Arc<Metrics>,
    sent: Arc<AtomicU64>,
) -> Result<(), SendError> {
    let _stream = metrics.stream();
    // A large buffer coalesces many small files into few TLS records and syscalls.
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, writer);
    let mut queue_open = true;
    loop {
        let quiet_until = keep_alive.map(|every| tokio::time::Instant::now() + every);
        // Stream 0 must never wait behind the shared queue's lock (another
        // stream holds it while idle): conversation messages go first.
        let next = tokio::select! {
            biased;
            m = async {
                match priority.as_mut() {
                    Some(prio) => prio.recv().await,
                    None => std::future::pending().await,
                }
            } => match m {
                Some(Urgent::Message(m)) => Next::Item(Outgoing::Message(m), Haste::Urgent),
                Some(Urgent::Last(m, written)) => Next::Item(Outgoing::Message(m), Haste::Last(written)),
                // The attempt is over.
                None => return Ok(()),
            },
            o = async { queue.lock().await.recv().await }, if queue_open => match o {
                Some(o) => Next::Item(o, Haste::Queued),
                None => Next::QueueClosed,
            },
            () = async {
                match quiet_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => Next::KeepAlive,
        };
        let (item, haste) = match next {
            Next::Item(item, haste) => (item, haste),
            Next::KeepAlive => {
                send_keep_alive(&mut writer).await?;
                continue;
            }
            Next::QueueClosed => {
                writer.flush().await.map_err(ChannelError::from)?;
                queue_open = false;
                // Stream 0 stays open for the destination's Done; every
                // stream keeps the destination's wait alive.
                if priority.is_none() && keep_alive.is_none() {
                    return Ok(());
                }
                continue;
            }
        };
        // Whatever else is queued goes out with it, under one flush: many
        // small files per TLS record and syscall.
        let mut batch = vec![item];
        let last = matches!(haste, Haste::Last(_));
        if !last && let Ok(mut queued) = queue.try_lock() {
            let mut bytes = batch[0].wire_bytes();
            while bytes < COALESCE_BYTES {
                let Ok(more) = queued.try_recv() else { break };
                bytes += more.wire_bytes();
                batch.push(more);
            }
        }
        for item in batch {
            let bytes = write_item(&mut writer, item, &metrics).await?;
            sent.fetch_add(bytes, Ordering::Relaxed);
        }
        // Flush conversation messages at once, and data when no more is
        // queued (a locked queue means another stream is waiting: empty).
        let idle = queue.try_lock().map(|q| q.is_empty()).unwrap_or(true);
        if !matches!(haste, Haste::Queued) || idle {
            writer.flush().await.map_err(ChannelError::from)?;
        }
        if let Haste::Last(written) = haste {
            let _ = written.send(());
        }
    }
}

/// Writes one queued item; the file bytes it carried.
async fn write_item<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    item: Outgoing,
    metrics: &Metrics,
) -> Result<u64, SendError> {
    let mut pending = vec![item];
    let mut bytes = 0;
    while let Some(item) = pending.pop() {
        match item {
            Outgoing::Chunk(header, data, _room) => {
                write_chunk(writer, &header, &data).await?;
                Metrics::add(&metrics.sent_bytes, data.len() as u64);
                bytes += data.len() as u64;
                crate::buffers::give(data);
            }
            Outgoing::Message(m) => write_message(writer, &m).await?,
            Outgoing::Batch(items) => pending.extend(items.into_iter().rev()),
        }
    }
    Ok(bytes)
}

fn mtime_ns(m: &Metadata) -> i64 {
    match m.mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// Walks every item depth first, offering entries in batches.
fn walk(
    s: &Shared,
    control: &mpsc::UnboundedSender<Message>,
    rt: &tokio::runtime::Handle,
) -> Result<(), SendError> {
    let mut batch = Vec::new();
    let mut files = 0u64;
    for (item_index, item) in s.cap.items.iter().enumerate() {
        let item_index = item_index as u32;
        let root =
            resolve_endpoint_path(&s.ctx.home, item.source.as_bytes()).map_err(|reason| {
                MoveError::Unusable {
                    side: Side::Source,
                    reason,
                }
            })?;
        let stat = || {
            s.fs.stat(&root)
                .map_err(|e| MoveError::fs(Side::Source, as_read(e)))
        };
        let meta = match at_once(stat) {
            Ok(m) => m,
            Err(e) => {
                source_error(s, &root, b"", e)?;
                continue;
            }
        };
        if item.recursive {
            if meta.kind != FsKind::Dir {
                return Err(unusable(
                    &root,
                    "is not a directory (drop -r to send a file)",
                ));
            }
            offer(
                s,
                control,
                rt,
                &mut batch,
                &mut files,
                item_index,
                Vec::new(),
                root.clone(),
                &meta,
            )?;
            // Depth first with an explicit stack: one listing per level.
            let mut stack = vec![(root.clone(), Vec::<u8>::new())];
            while let Some((dir, rel)) = stack.pop() {
                let listed = at_once(|| {
                    s.faults
                        .check(Op::ListSource, &dir)
                        .map_err(on_disk("list directory", &dir))?;
                    s.fs.read_dir(&dir)
                        .map_err(|e| MoveError::fs(Side::Source, e))
                });
                let entries = match listed {
                    Ok(e) => e,
                    Err(e) => {
                        source_error(s, &dir, &rel, e)?;
                        continue;
                    }
                };
                let mut subdirs = Vec::new();
                for entry in entries {
                    let name = entry.name.as_bytes();
                    if crate::plan::is_temp_name(name) {
                        continue;
                    }
                    let child_rel = if rel.is_empty() {
                        name.to_vec()
                    } else {
                        [rel.as_slice(), b"/", name].concat()
                    };
                    // Excluded: not offered, not reported, and (a
                    // directory) not listed; it costs nothing more.
                    if !s
                        .filters
                        .included(&child_rel, entry.metadata.kind == FsKind::Dir)
                    {
                        continue;
                    }
                    // Another node's part of a task spread over nodes:
                    // directories are every shard's (each makes those
                    // its files land in), a large file's chunks are cut
                    // among all, the rest only its own.
                    if entry.metadata.kind != FsKind::Dir
                        && !is_ours(s, item_index, &child_rel, &entry.metadata)
                    {
                        continue;
                    }
                    let child = dir.join(&entry.name);
                    match entry.metadata.kind {
                        FsKind::File | FsKind::Dir => {
                            offer(
                                s,
                                control,
                                rt,
                                &mut batch,
                                &mut files,
                                item_index,
                                child_rel.clone(),
                                child.clone(),
                                &entry.metadata,
                            )?;
                            if entry.metadata.kind == FsKind::Dir {
                                subdirs.push((child, child_rel));
                            }
                        }
                        FsKind::Symlink => skipped(
                            s,
                            &child_rel,
                            "a symbolic link (not followed, not recreated)",
                        ),
                        FsKind::Other => skipped(
                            s,
                            &child_rel,
                            "not a regular file or directory (FIFO, socket or device)",
                        ),
                    }
                }
                // Reverse so the first subdirectory is walked first.
                stack.extend(subdirs.into_iter().rev());
            }
        } else if is_ours(s, item_index, b"", &meta) {
            match meta.kind {
                FsKind::File => offer(
                    s,
                    control,
                    rt,
                    &mut batch,
                    &mut files,
                    item_index,
                    Vec::new(),
                    root.clone(),
                    &meta,
                )?,
                FsKind::Dir => {
                    return Err(unusable(&root, "is a directory: transfer it with -r"));
                }
                _ => return Err(unusable(&root, "is not a regular file")),
            }
        }
    }
    flush_batch(control, &mut batch);
    let _ = control.send(Message::End { files });
    Ok(())
}

/// Whether this node sends (some of) the entry at `rel` of item `item`:
/// all of a task not spread over nodes; else its shard's entries and its
/// part of every large file ([`ferry_proto::task::Shard::part`]).
fn is_ours(s: &Shared, item: u32, rel: &[u8], meta: &Metadata) -> bool {
    let size = if meta.kind == FsKind::File {
        meta.size
    } else {
        0
    };
    s.cap
        .shard
        .is_none_or(|sh| sh.part(item, rel, size) != Part::None)
}

/// The chunks this node sends of a file split over the nodes of a spread
/// task; `None` for a file it sends whole.
fn split_range(s: &Shared, entry: &Entry) -> Option<std::ops::Range<u32>> {
    match s
        .cap
        .shard?
        .part(entry.item, entry.path.as_bytes(), entry.size)
    {
        Part::Chunks(range) => Some(range),
        Part::Whole | Part::None => None,
    }
}

/// An item that cannot be looked at could not be read, in a user's words
/// ("stat" is a system call's name).
fn as_read(error: FsError) -> FsError {
    match error {
        FsError::Io { path, source, .. } => FsError::Io {
            op: "read",
            path,
            source,
        },
        other => other,
    }
}

fn skipped(s: &Shared, rel: &[u8], reason: &str) {
    s.report(TaskReport::Skipped {
        path: WirePath::from_bytes(rel),
        reason: reason.into(),
    });
}

/// A source item the task cannot be done with.
fn unusable(path: &Path, why: &str) -> SendError {
    MoveError::Unusable {
        side: Side::Source,
        reason: format!("{} {why}", ferry_paths::show(path)),
    }
    .into()
}

/// A source entry that could not be read: left out and reported, or the
/// attempt's end (see [`MoveError::at_source_entry`]). `rel` is the
/// entry's path within its item, empty for the item itself.
fn source_error(s: &Shared, path: &Path, rel: &[u8], error: MoveError) -> Result<(), SendError> {
    match error.at_source_entry(s.cap.options.skip_source_errors) {
        Disposition::SkipFile => {
            s.report(TaskReport::Skipped {
                path: WirePath::from(path),
                reason: error.to_string(),
            });
            Ok(())
        }
        // Advice only where following it would leave something to send.
        Disposition::FailTask if !rel.is_empty() || s.cap.items.len() > 1 => {
            Err(MoveError::SourceEntry(Box::new(error)).into())
        }
        _ => Err(error.into()),
    }
}

#[allow(clippy::too_many_arguments)]
fn offer(
    s: &Shared,
    control: &mpsc::UnboundedSender<Message>,
    rt: &tokio::runtime::Handle,
    batch: &mut Vec<Entry>,
    files: &mut u64,
    item: u32,
    rel: Vec<u8>,
    path: PathBuf,
    meta: &Metadata,
) -> Result<(), SendError> {
    let kind = if meta.kind == FsKind::Dir {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    let id = s.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let entry = Entry {
        id,
        item,
        path: WirePath::from_bytes(rel),
        kind,
        size: if kind == EntryKind::File {
            meta.size
        } else {
            0
        },
        mtime_ns: mtime_ns(meta),
        mode: meta.mode,
    };
    if kind == EntryKind::File {
        *files += 1;
        // Wait for room in the window: the destination answers in order.
        let permit = rt
            .block_on(s.window.acquire())
            .map_err(|_| streams_closed())?;
        permit.forget();
        if let Ok(mut offered) = s.offered.lock() {
            offered.insert(
                id,
                Offered {
                    path,
                    entry: entry.clone(),
                    offers: 1,
                },
            );
        }
    }
    batch.push(entry);
    if batch.len() >= BATCH {
        flush_batch(control, batch);
    }
    Ok(())
}

fn flush_batch(control: &mpsc::UnboundedSender<Message>, batch: &mut Vec<Entry>) {
    if !batch.is_empty() {
        let _ = control.send(Message::Manifest {
            entries: std::mem::take(batch),
        });
    }
}

/// Reads, hashes and queues the files the destination needs (again, if
/// it asks for one again).
fn read_needed(
    s: &Shared,
    jobs: std::sync::mpsc::Receiver<(u64, Need)>,
    mut out: Outbox,
    control: &mpsc::UnboundedSender<Message>,
) -> Result<(), SendError> {
    loop {
        let first = match jobs.try_recv() {
            Ok(job) => job,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                // Out of work for now: what is gathered goes, and the
                // next files are a new batch for held directories.
                out.send_batch()?;
                s.fs.next_batch();
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < READ_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut asked = Vec::with_capacity(batch.len());
        for (id, need) in batch {
            if let Some(job) = asked_for(s, id, need)? {
                asked.push(job);
            }
        }
        // Files to compare that were hashed ahead, as the destination
        // hashed its copies; the rest that are small hashed now, side by
        // side on every core.
        let ahead: Vec<Option<bool>> = asked
            .iter()
            .map(|job| {
                let theirs = job.compare?;
                s.prehashed.take(job.id).map(|ours| ours == theirs)
            })
            .collect();
        let small = |job: &Asked, ahead: &Option<bool>| {
            job.compare.is_some() && ahead.is_none() && job.offered.entry.size <= CHUNK_SIZE
        };
        let threads = match asked
            .iter()
            .zip(&ahead)
            .filter(|(j, a)| small(j, a))
            .count()
        {
            0 | 1 => 1,
            _ => hashing_threads(),
        };
        let hashed_ahead = ahead.iter().filter(|a| a.is_some()).count();
        Metrics::add(&s.ctx.metrics.hashed_ahead_files, hashed_ahead as u64);
        let jobs: Vec<(Asked, Option<bool>)> = asked.into_iter().zip(ahead).collect();
        let same = map_parallel(&jobs, threads, |(job, ahead)| {
            if ahead.is_some() {
                return *ahead;
            }
            job.compare
                .filter(|_| small(job, ahead))
                .and_then(|theirs| {
                    let offered = &job.offered;
                    whole_digest(s, &offered.path, offered.entry.size, 1).map(|ours| ours == theirs)
                })
        });
        for ((job, _), same) in jobs.into_iter().zip(same) {
            read_one(s, job, same, &mut out, control)?;
        }
    }
    out.send_batch()
}

/// Files the reader takes from the destination's needs at once, to hash
/// side by side when it asks to compare them.
const READ_BATCH: usize = 256;

/// One file the destination asked for.
struct Asked {
    id: u64,
    offered: Offered,
    missing: ChunkSet,
    /// Its digest of what it has, for `--sync-level checksum`.
    compare: Option<[u8; 32]>,
    /// Chunks it holds unjournaled, with its digests, sorted by index.
    held: Vec<(u32, [u8; 32])>,
}

/// What the destination asks of file `id`: its window slot is free again,
/// and the file is remembered in case it asks again; `None` if it needs
/// nothing.
fn asked_for(s: &Shared, id: u64, need: Need) -> Result<Option<Asked>, SendError> {
    let verdict = s.offered.lock().ok().and_then(|mut o| o.remove(&id));
    if verdict.is_some() {
        s.window.add_permits(1);
    }
    if !matches!(need, Need::SendUnlessDigest { .. }) {
        s.prehashed.forget(id);
    }
    let (missing, compare, held) = match need {
        Need::Skip => return Ok(None),
        Need::Send { missing } => (missing, None, Vec::new()),
        Need::SendUnlessDigest { digest } => (ChunkSet::All, from_hex(&digest), Vec::new()),
        Need::SendUnlessHeld { missing, held } => (missing, None, held_chunks(held)?),
    };
    let offered = match verdict {
        Some(offered) => {
            if let Ok(mut sent) = s.sent.lock() {
                sent.keep(id, offered.clone());
            }
            offered
        }
        // Asked again: its digest did not match, or its temporary file failed.
        None => match s.sent.lock().ok().and_then(|sent| sent.get(id)) {
            Some(offered) => offered,
            None => {
                return Err(MoveError::Protocol(format!(
                    "the destination asked for file {id}, which this source no longer knows"
                ))
                .into());
            }
        },
    };
    Ok(Some(Asked {
        id,
        offered,
        missing,
        compare,
        held,
    }))
}

/// The digest of an offered file read whole at its offered size, on
/// `threads`, or `None` if that cannot be had (an error, a file that
/// changed): [`send_file`] then reads it the careful way, with its errors
/// and retries.
fn whole_digest(s: &Shared, path: &Path, size: u64, threads: usize) -> Option<[u8; 32]> {
    s.faults.check(Op::OpenSource, path).ok()?;
    let (file, metadata) = s.fs.open_read_with_metadata(path).ok()?;
    let _open = s.ctx.metrics.open_file();
    if metadata.len() != size {
        return None;
    }
    s.faults.check(Op::ReadSource, path).ok()?;
    let hashes = read_chunk_hashes(s.algorithm, &file, size, threads).ok()?;
    Some(file_digest(s.algorithm, hashes.iter()))
}

/// A file the destination said it compares: its id, path and offered size.
struct Announced {
    id: u64,
    path: PathBuf,
    size: u64,
}

/// Which of the files the destination says it compares are to be hashed
/// ahead: those offered and not yet answered, each once, and none a part
/// of a split file (whose digest covers only its chunks). Anything else
/// named is the destination's mistake and means nothing: the need that
/// follows decides.
fn announced(s: &Shared, ids: Vec<u64>) -> Vec<Announced> {
    let Ok(offered) = s.offered.lock() else {
        return Vec::new();
    };
    ids.into_iter()
        .filter_map(|id| {
            let o = offered.get(&id)?;
            if o.entry.kind != EntryKind::File || split_range(s, &o.entry).is_some() {
                return None;
            }
            s.prehashed.queue(id).then(|| Announced {
                id,
                path: o.path.clone(),
                size: o.entry.size,
            })
        })
        .collect()
}

/// Hashes the announced files the reader has not taken yet, a batch at a
/// time, until the attempt ends: the small ones side by side on every
/// core, settled together; then each large one, claimed just before it
/// is hashed and settled as soon as it is, so the reader sends or passes
/// over the first while the next is hashed, and takes itself one it
/// reaches still queued.
fn hash_ahead(s: &Shared, batches: std::sync::mpsc::Receiver<Vec<Announced>>) {
    while let Ok(batch) = batches.recv() {
        let (small, large): (Vec<&Announced>, Vec<&Announced>) =
            batch.iter().partition(|a| a.size <= CHUNK_SIZE);
        let claim = s.prehashed.claim(small.iter().map(|a| a.id));
        // The claim keeps the batch's order: its ids are a subsequence.
        let mut ids = claim.ids().iter().peekable();
        let claimed: Vec<&Announced> = small
            .into_iter()
            .filter(|a| ids.next_if_eq(&&a.id).is_some())
            .collect();
        let digests = map_parallel(&claimed, hashing_threads(), |a| {
            whole_digest(s, &a.path, a.size, 1)
        });
        claim.settle(digests);
        for a in large {
            let claim = s.prehashed.claim([a.id]);
            if !claim.ids().is_empty() {
                claim.settle([whole_digest(s, &a.path, a.size, hashing_threads())]);
            }
        }
    }
}

/// Sends (or finds unchanged) one file the destination asked for; `same`
/// is whether its digest, hashed already, matched the destination's.
fn read_one(
    s: &Shared,
    job: Asked,
    same: Option<bool>,
    out: &mut Outbox,
    control: &mpsc::UnboundedSender<Message>,
) -> Result<(), SendError> {
    let Asked {
        id,
        offered,
        missing,
        compare,
        held,
    } = job;
    if same == Some(true) {
        return send_message(out, Message::Unchanged { id });
    }
    let wants = Wants {
        missing: &missing,
        // Known to differ: no need to hash it again before sending it.
        compare: compare.filter(|_| same.is_none()),
        held: &held,
    };
    let mut sent = send_file(s, &offered, &wants, out);
    if let Err(SendError::Move(e)) = &sent
        && e.disposition() == Disposition::RetryFile
    {
        tracing::warn!(error = %e, "reading the file once more");
        sent = send_file(s, &offered, &wants, out);
    }
    let outcome = match sent {
        Ok(outcome) => outcome,
        Err(SendError::Move(e)) => {
            source_error(s, &offered.path, offered.entry.path.as_bytes(), e)?;
            FileOutcome::Skipped
        }
        Err(e) => return Err(e),
    };
    match outcome {
        FileOutcome::Sent => {
            Metrics::add(&s.ctx.metrics.sent_files, 1);
            crate::served::file(
                &s.cap.task_id,
                s.cap.source_grant.as_ref(),
                "read",
                &offered.path,
            );
        }
        FileOutcome::Unchanged => {}
        // The destination must not wait for it.
        FileOutcome::Skipped => {
            let _ = control.send(Message::FileChanged { id });
        }
        // A split file's other parts were read (or are being read) by
        // other nodes as it was: offered again here, it could be put
        // together from two versions. The attempt ends instead, and the
        // next one offers it anew on every node.
        FileOutcome::Changed if split_range(s, &offered.entry).is_some() => {
            return Err(MoveError::SplitFile(format!(
                "{} changed while the nodes read it",
                ferry_paths::show(&offered.path)
            ))
            .into());
        }
        FileOutcome::Changed => {
            let _ = control.send(Message::FileChanged { id });
            reoffer(s, control, offered)?;
        }
    }
    Ok(())
}

enum FileOutcome {
    Sent,
    Unchanged,
    Changed,
    /// Left out (`--skip-source-errors`), reported.
    Skipped,
}

/// The chunks a destination held that it asks to be compared (see
/// `Need::SendUnlessHeld`), by index; a malformed or oversized list is
/// the destination's error.
fn held_chunks(held: Vec<(u32, String)>) -> Result<Vec<(u32, [u8; 32])>, SendError> {
    if held.len() > ferry_proto::data::MAX_HELD {
        return Err(
            MoveError::Protocol("the destination named too many held chunks".into()).into(),
        );
    }
    let mut chunks = held
        .into_iter()
        .map(|(index, digest)| from_hex(&digest).map(|d| (index, d)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| MoveError::Protocol("malformed digest of a held chunk".into()))?;
    chunks.sort_unstable_by_key(|(index, _)| *index);
    Ok(chunks)
}

/// What the destination asked of one file.
struct Wants<'a> {
    missing: &'a ChunkSet,
    /// Its digest of what it has, for `--sync-level checksum`.
    compare: Option<[u8; 32]>,
    /// Chunks it holds unjournaled, with its digests, sorted by index.
    held: &'a [(u32, [u8; 32])],
}

/// Sends a file's wanted chunks and its digest. A disk error is a
/// [`SendError::Move`]; the file may be partly sent by then.
fn send_file(
    s: &Shared,
    offered: &Offered,
    wants: &Wants<'_>,
    out: &mut Outbox,
) -> Result<FileOutcome, SendError> {
    let (missing, compare) = (wants.missing, wants.compare);
    let entry = &offered.entry;
    let path = offered.path.as_path();
    let (file, before) = at_once(|| {
        s.faults
            .check(Op::OpenSource, path)
            .map_err(on_disk("open for reading", path))?;
        s.fs.open_read_with_metadata(path)
            .map_err(|e| MoveError::fs(Side::Source, e))
    })?;
    let _open = s.ctx.metrics.open_file();
    if before.len() != entry.size {
        return Ok(FileOutcome::Changed);
    }
    let wanted = |i: u32| match missing {
        ChunkSet::All => true,
        ChunkSet::Only(list) => list.binary_search(&i).is_ok(),
    };
    let count = chunk_count(entry.size);
    // A part of a split file: its chunks and the digest over theirs. The
    // other parts are read by other nodes, maybe a moment later: each
    // reads only the file as it was offered, so all read one version.
    let split = split_range(s, entry);
    if split.is_some()
        && std::os::unix::fs::MetadataExt::mtime(&before)
            .saturating_mul(1_000_000_000)
            .saturating_add(std::os::unix::fs::MetadataExt::mtime_nsec(&before))
            != entry.mtime_ns
    {
        return Ok(FileOutcome::Changed);
    }
    let chunks = split.unwrap_or(0..count);
    // With a digest to compare, hash everything first and send only if different.
    if let Some(theirs) = compare {
        let hashed = s
            .faults
            .check(Op::ReadSource, path)
            .and_then(|()| read_chunk_hashes(s.algorithm, &file, entry.size, hashing_threads()));
        let hashes = match hashed {
            Ok(hashes) => hashes,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(FileOutcome::Changed);
            }
            Err(e) => return Err(MoveError::os(Side::Source, "read", path, e).into()),
        };
        if file_digest(s.algorithm, hashes.iter()) == theirs {
            return send_message(out, Message::Unchanged { id: entry.id })
                .map(|()| FileOutcome::Unchanged);
        }
    }
    // Chunks are read straight into the buffers that travel: no copy.
    let mut hashes = Vec::with_capacity(chunks.len());
    let mut rejected = Vec::new();
    for index in chunks {
        let (offset, len) = span(entry.size, index);
        let Some(data) = read_span(s, &file, path, offset, len)? else {
            return Ok(FileOutcome::Changed);
        };
        let hash = chunk_hash(s.algorithm, &data);
        hashes.push(hash);
        // A held chunk that differs from ours is sent, and named as such.
        let differs = wants
            .held
            .binary_search_by_key(&index, |(i, _)| *i)
            .is_ok_and(|at| wants.held[at].1 != hash);
        if differs {
            rejected.push(index);
        }
        if wanted(index) || differs {
            let header = ChunkHeader {
                file: entry.id,
                index,
                digest: hash,
            };
            let units = data.len().div_ceil(QUEUE_UNIT).max(1) as u32;
            let room = s
                .runtime
                .block_on(s.queued_bytes.clone().acquire_many_owned(units))
                .map_err(|_| streams_closed())?;
            out.push(Outgoing::Chunk(header, data, room))?;
        }
    }
    // Mixed content must never be committed: if the file moved under us,
    // the destination discards it and it is offered again.
    let after = file.metadata().map_err(on_disk("stat", path))?;
    let stable = after.len() == before.len()
        && after.modified().ok() == before.modified().ok()
        && std::os::unix::fs::MetadataExt::ctime_nsec(&after)
            == std::os::unix::fs::MetadataExt::ctime_nsec(&before);
    if !stable {
        return Ok(FileOutcome::Changed);
    }
    send_message(
        out,
        Message::FileDone {
            id: entry.id,
            digest: to_hex(&file_digest(s.algorithm, hashes.iter())),
            rejected,
        },
    )?;
    Ok(FileOutcome::Sent)
}

fn send_message(out: &mut Outbox, message: Message) -> Result<(), SendError> {
    out.push(Outgoing::Message(message))
}

/// `len` bytes at `offset` of the file at `path`, in a reused buffer;
/// `None` if the file is shorter now.
fn read_span(
    s: &Shared,
    file: &File,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Option<Vec<u8>>, MoveError> {
    let mut data = crate::buffers::take(len);
    let whole = at_once(|| {
        s.faults
            .check(Op::ReadSource, path)
            .map_err(on_disk("read", path))?;
        match file.read_exact_at(&mut data, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(MoveError::os(Side::Source, "read", path, e)),
        }
    })?;
    Ok(whole.then_some(data))
}

fn span(size: u64, index: u32) -> (u64, usize) {
    let offset = u64::from(index) * CHUNK_SIZE;
    (offset, (size - offset).min(CHUNK_SIZE) as usize)
}

/// Offers a changed file again with its new size, a few times at most.
fn reoffer(
    s: &Shared,
    control: &mpsc::UnboundedSender<Message>,
    old: Offered,
) -> Result<(), SendError> {
    if old.offers >= MAX_REOFFERS {
        let error = MoveError::KeptChanging {
            path: old.path.clone(),
        };
        return source_error(s, &old.path, old.entry.path.as_bytes(), error);
    }
    let meta = match s.fs.stat(&old.path) {
        Ok(m) if m.kind == FsKind::File => m,
        Ok(m) => {
            let error = MoveError::Unusable {
                side: Side::Source,
                reason: format!(
                    "{} was replaced by a {} while it was sent",
                    ferry_paths::show(&old.path),
                    m.kind
                ),
            };
            return source_error(s, &old.path, old.entry.path.as_bytes(), error);
        }
        Err(e) => {
            let error = MoveError::fs(Side::Source, e);
            return source_error(s, &old.path, old.entry.path.as_bytes(), error);
        }
    };
    let id = s.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let entry = Entry {
        id,
        size: meta.size,
        mtime_ns: mtime_ns(&meta),
        mode: meta.mode,
        ..old.entry
    };
    if let Ok(mut offered) = s.offered.lock() {
        offered.insert(
            id,
            Offered {
                path: old.path,
                entry: entry.clone(),
                offers: old.offers + 1,
            },
        );
    }
    let _ = control.send(Message::Manifest {
        entries: vec![entry],
    });
    Ok(())
}
