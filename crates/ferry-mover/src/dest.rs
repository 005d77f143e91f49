//! The destination side: accepts data connections, decides what it needs,
//! writes chunks into recognisable temporary files, verifies every file
//! end to end, and commits it under its real name.
//!
//! ```text
//!  stream 0 ──▶ conversation: manifest → decide (sync level, journal)
//!     │                         needs  ◀─┘      FileDone/End
//!  stream k ──▶ chunk: verify hash → pwrite temp ─┐
//!                                                 ▼
//!               all chunks + source digest → file digest matches?
//!                    no: discard, ask again (bounded)     yes ▼
//!               committer: mode/mtime, fdatasync, rename, fsync dir,
//!                          journal "committed"
//! ```
//!
//! **Invariant:** nothing stands under a real name before its digest
//! verified; a crash at any moment leaves real names either old or whole.
//!
//! **Invariant:** the journal never claims more than the disk holds: a
//! failed fsync (of a file, a directory, the journal) fails the attempt as
//! a fault, and what it would have vouched for is not journaled.
//!
//! Failures are [`MoveError`]s, handled by their [`Disposition`]: an
//! interrupted call is made again at once; an I/O error writing a file
//! starts that file over once (a fresh temporary file, its data asked for
//! again); whatever else ends the attempt, reported to the hub and told to
//! the source (`Abort`) as a fault to retry later or as the task's failure.
//!
//! **Invariant:** before a stream's capability verifies, the peer gets a
//! small receive buffer, a small frame limit, a deadline, and one of few
//! places per address ([`crate::admission`]).
//!
//! Liveness (data protocol version 2): every stream is read with the idle
//! limit (a wait with no byte, not even the source's keep-alives, ends the
//! attempt: [`MoveError::PeerSilent`]); stream 0 is written by a task of
//! its own, which sends a keep-alive whenever it has sent nothing for a
//! while (the session loop may wait on a commit batch, a reader on a
//! checksum) and fails a write the network holds for the idle limit (the
//! source always reads stream 0: [`MoveError::PeerNotReading`]).

use crate::admission::{Admission, Unauthorised};
use crate::channel::{
    self, ChannelError, HandshakeBudget, Liveness, ReceiveBuffer, Watched, read_frame,
    send_keep_alive, send_message,
};
use crate::context::Context;
use crate::digest::{
    CHUNK_SIZE, ChecksumAlgorithm, chunk_count, chunk_hash, file_digest, from_hex, hashing_threads,
    map_parallel, read_chunk_hashes, to_hex,
};
use crate::faults::{Faults, Op};
use crate::journal::{ChunkHashes, FileKey, Journal, file_key};
use crate::link::DataIo;
use crate::metrics::{Held, Metrics};
use crate::plan::{self, Attributes, Verdict};
use crate::throttle::Throttled;
use crate::{Disposition, MoveError, Side, at_once};
use ferry_paths::{EntryKind as FsKind, RootedFs, Temporary, resolve_endpoint_path};
use ferry_proto::data::{
    self, ChunkHeader, ChunkSet, Entry, EntryKind, Frame, Message, Need, Open,
};
use ferry_proto::filter::FilterSet;
use ferry_proto::task::{
    Capability, KeptChunks, Part, SplitPart, TaskCounters, TaskReport, shard_of,
};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::server::TlsStream;

pub use crate::admission::{UNAUTHORISED_PER_PEER, UNAUTHORISED_TOTAL};

/// A connecting peer has this long for its TLS handshake and its `Open`.
const OPEN_WITHIN: Duration = Duration::from_secs(15);
/// A refusal or acceptance is sent within this, or the connection is dropped.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// A file whose digest does not match is asked for again this many times.
const MAX_RESENDS: u32 = 3;
/// A file whose temporary file failed with an I/O error is started over
/// this many times before the attempt ends (to be retried later).
const MAX_FILE_RETRIES: u32 = 1;
/// How often partial files are made durable and journaled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// Chunks up to this size are verified and written on the reading task.
const INLINE_CHUNK: usize = 256 * 1024;
/// How often progress goes to the hub.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

type Stream = TlsStream<ReceiveBuffer<DataIo>>;
/// rustls reads the socket 4 KiB at a time: a buffer beneath it turns a
/// syscall per 4 KiB into one per this much, once the stream is authorised.
const RECEIVE_BUFFER: usize = 256 * 1024;
/// The receive buffer of a stream not yet authorised.
const HANDSHAKE_BUFFER: usize = 8 * 1024;
/// Room for `Open`s above the handshake frame limit (capabilities of large
/// `--batch` tasks), all unauthorised streams together.
const LARGE_HANDSHAKES: usize = 8 * 1024 * 1024;
/// Directories created and not yet durable that a session remembers before
/// it makes them all durable at once (see `Disk::unsynced_dirs`).
const UNSYNCED_DIRS_KEPT: usize = 4096;

/// How many created directories a session remembers (see `State::created_dirs`).
const CREATED_DIRS_KEPT: usize = 4096;
/// Files asked of the source and not yet committed, at most: past it,
/// manifest batches wait ([`State::waiting`]) until files commit. The
/// source's window bounds only entries awaiting a verdict; without this a
/// committer slower than the streams let answered files pile up (150
/// bytes and more each: 171 MiB through a million small files). Small in
/// this crate's tests, so that every transfer test goes through the wait.
pub(crate) const ADMITTED_MAX: usize = if cfg!(test) { 1024 } else { 8192 };
/// Temporary files a session holds open at once, whatever the source's
/// window: past this, a file is created when its first chunk comes and
/// its descriptor is closed after each use (opened again, through a held
/// directory, when needed), so a low `ulimit -n` does not starve the
/// destination. With the held directories, sockets and journal the
/// endpoint stays under 256 descriptors. Under a lower open-files limit,
/// a quarter of it ([`data_files_budget`]).
pub const OPEN_DATA_FILES: usize = 128;

/// Temporary files a session holds open at once: [`OPEN_DATA_FILES`], or
/// a quarter of the process's open-files limit if that is less (the rest
/// is for other sessions, sockets and directories).
fn data_files_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let quarter = usize::try_from(soft / 4).unwrap_or(usize::MAX);
    quarter.clamp(4, OPEN_DATA_FILES)
}

/// Descriptors of temporary files a session holds, and how many it may.
#[derive(Debug)]
struct OpenData {
    count: AtomicUsize,
    max: usize,
}

/// How long an ended or canceled attempt stays refused here: far longer
/// than a capability lives (the hub signs them for minutes).
const ENDED_KEPT: Duration = Duration::from_secs(3600);
/// Most tasks whose ended attempts are remembered (the oldest go first).
const ENDED_MAX: usize = 100_000;

/// Sessions by task: at most one attempt per task runs here. Also what no
/// longer gets a session: attempts that ended here or that the hub
/// canceled (so a capability cannot be replayed), and revoked endpoints.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, SessionHandle>>,
    ended: Mutex<Ended>,
    revoked: Mutex<HashSet<String>>,
}

#[derive(Debug)]
struct SessionHandle {
    attempt: u32,
    source: String,
    streams: mpsc::UnboundedSender<(u16, Stream)>,
    cancel: watch::Sender<Stop>,
    /// Turns true once the session has stopped touching files.
    done: watch::Receiver<bool>,
}

/// What a session is told: run on, or stop, keeping what a later attempt
/// of its task may resume from, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    No,
    /// This attempt ends and another may follow (a fault the hub retries,
    /// a pause, a newer attempt, a revoked peer): the temporaries and the
    /// journal stay for it.
    Attempt,
    /// The task is over (it succeeded, failed or was canceled): nothing
    /// will resume its temporaries, and they go with its journal.
    Task,
}

/// Tells a session to stop `how`, never less than it was told before.
fn stop(cancel: &watch::Sender<Stop>, how: Stop) {
    cancel.send_if_modified(|told| {
        let more = how > *told;
        if more {
            *told = how;
        }
        more
    });
}

/// How long a newer attempt waits for the one it replaces to stop (a
/// canceled session ends its current commit batch first).
const SUPERSEDED_WITHIN: Duration = Duration::from_secs(120);

/// Per task, the newest attempt that may no longer connect, and since when.
#[derive(Debug, Default)]
struct Ended {
    by_task: HashMap<String, (u32, std::time::Instant)>,
}

impl Ended {
    fn record(&mut self, task_id: &str, through: u32, now: std::time::Instant) {
        self.by_task
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < ENDED_KEPT);
        if self.by_task.len() >= ENDED_MAX
            && !self.by_task.contains_key(task_id)
            && let Some(oldest) = self
                .by_task
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(task, _)| task.clone())
        {
            self.by_task.remove(&oldest);
        }
        let entry = self
            .by_task
            .entry(task_id.to_string())
            .or_insert((through, now));
        *entry = (entry.0.max(through), now);
    }

    fn refuses(&self, task_id: &str, attempt: u32) -> bool {
        self.by_task
            .get(task_id)
            .is_some_and(|(through, _)| attempt <= *through)
    }
}

impl Sessions {
    /// Stops a task's attempts up to `through` (all if `None`) here, and
    /// refuses their data connections from now on (their journal stays for
    /// a resume by a later attempt).
    pub fn cancel_through(&self, task_id: &str, through: Option<u32>) {
        let through = through.unwrap_or(u32::MAX);
        if let Ok(mut ended) = self.ended.lock() {
            ended.record(task_id, through, std::time::Instant::now());
        }
        if let Ok(live) = self.live.lock()
            && let Some(handle) = live.get(task_id)
            && handle.attempt <= through
        {
            stop(&handle.cancel, Stop::Attempt);
        }
    }

    /// The hub says the task is over (it succeeded, failed or was
    /// canceled: a cancel naming no attempt). No attempt of it runs here
    /// again, and what its attempts kept for a resume goes: the running
    /// session removes its temporaries and journal as it stops; with none
    /// running, the temporaries its journal names are removed here (off
    /// this thread). No newer attempt can race that: every attempt of the
    /// task is refused from now on.
    pub fn end_task(&self, ctx: &Arc<Context>, task_id: &str) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.record(task_id, u32::MAX, std::time::Instant::now());
        }
        let running = match self.live.lock() {
            Ok(live) => live.get(task_id).map(|h| stop(&h.cancel, Stop::Task)),
            // A session may run: leave its files to it.
            Err(_) => Some(()),
        };
        if running.is_none() {
            let (ctx, task_id) = (ctx.clone(), task_id.to_string());
            tokio::task::spawn_blocking(move || discard_kept(&ctx, &task_id));
        }
    }

    /// Endpoints the hub revoked (`complete`: the whole list, replacing
    /// what was known; else additions): their data connections are
    /// refused, and their running sessions cut.
    pub fn revoke(&self, endpoint_ids: HashSet<String>, complete: bool) {
        let Ok(mut revoked) = self.revoked.lock() else {
            return;
        };
        if complete {
            *revoked = endpoint_ids;
        } else {
            revoked.extend(endpoint_ids);
        }
        if let Ok(live) = self.live.lock() {
            for handle in live.values() {
                if revoked.contains(&handle.source) {
                    stop(&handle.cancel, Stop::Attempt);
                }
            }
        }
    }

    /// Stops every running attempt, keeping what a later one resumes from
    /// (a pause); returns them, by task and attempt.
    pub fn cancel_all(&self) -> Vec<(String, u32)> {
        let Ok(live) = self.live.lock() else {
            return Vec::new();
        };
        live.iter()
            .map(|(task, handle)| {
                stop(&handle.cancel, Stop::Attempt);
                (task.clone(), handle.attempt)
            })
            .collect()
    }

    pub fn active(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Why a verified capability gets no session here, if it does not.
    fn refusal(&self, cap: &Capability) -> Option<String> {
        if self
            .revoked
            .lock()
            .map_or(true, |r| r.contains(&cap.source_endpoint))
        {
            return Some("the source endpoint was revoked".into());
        }
        if self
            .ended
            .lock()
            .map_or(true, |e| e.refuses(&cap.task_id, cap.attempt))
        {
            return Some(format!(
                "attempt {} of this task has ended here; the hub starts a new one",
                cap.attempt
            ));
        }
        let live = self.live.lock().ok()?;
        match live.get(&cap.task_id) {
            Some(h) if h.attempt > cap.attempt => Some(format!(
                "a newer attempt ({}) of this task runs here",
                h.attempt
            )),
            _ => None,
        }
    }

    /// A session stopped touching files; whether it was told, by then,
    /// that its task is over (`told` is what it is told). Read under the
    /// lock `end_task` tells under: a later `end_task` finds no session
    /// and cleans up itself.
    fn finished(&self, task_id: &str, attempt: u32, told: &watch::Receiver<Stop>) -> bool {
        if let Ok(mut ended) = self.ended.lock() {
            ended.record(task_id, attempt, std::time::Instant::now());
        }
        let live = self.live.lock();
        if let Ok(mut live) = live
            && live.get(task_id).is_some_and(|h| h.attempt == attempt)
        {
            live.remove(task_id);
            return *told.borrow() == Stop::Task;
        }
        *told.borrow() == Stop::Task
    }
}

/// Accepts data connections until `shutdown`.
pub async fn serve(
    ctx: Arc<Context>,
    listener: TcpListener,
    sessions: Arc<Sessions>,
    accepting: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    match DataAcceptor::new(ctx, sessions, accepting) {
        Ok(acceptor) => acceptor.serve(listener, shutdown).await,
        Err(e) => tracing::error!(error = %e, "data listener disabled"),
    }
}

/// Takes data connections, direct from a listener or relayed by the hub,
/// through the same admission, TLS handshake and capability check.
pub struct DataAcceptor {
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    acceptor: tokio_rustls::TlsAcceptor,
    admission: Arc<Admission>,
    budget: Arc<HandshakeBudget>,
    accepting: watch::Receiver<bool>,
}

impl std::fmt::Debug for DataAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataAcceptor").finish_non_exhaustive()
    }
}

impl DataAcceptor {
    pub fn new(
        ctx: Arc<Context>,
        sessions: Arc<Sessions>,
        accepting: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, ChannelError> {
        let config = ctx.identity.server_config()?;
        Ok(Arc::new(Self {
            ctx,
            sessions,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            admission: Arc::new(Admission::default()),
            budget: Arc::new(HandshakeBudget::new(LARGE_HANDSHAKES)),
            accepting,
        }))
    }

    /// Accepts direct connections until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "data accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            self.take(DataIo::Direct(tcp), peer.ip());
        }
    }

    /// Serves one connection: `peer` is who it comes from (for a relayed
    /// one, the hub), whose share of unauthorised connections it takes.
    pub fn take(self: &Arc<Self>, io: DataIo, peer: std::net::IpAddr) {
        // Before the TLS handshake costs anything: a peer over its share of
        // unauthorised connections is closed at once.
        let Some(place) = self.admission.admit(peer) else {
            tracing::debug!(%peer, held = self.admission.held(), relayed = io.is_relayed(), "data connection closed: too many unauthorised connections");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let relayed = io.is_relayed();
            let arrival = Arrival {
                io,
                place,
                budget: this.budget.clone(),
            };
            if let Err(e) = accept_stream(
                this.ctx.clone(),
                this.sessions.clone(),
                this.acceptor.clone(),
                arrival,
                this.accepting.clone(),
            )
            .await
            {
                tracing::warn!(%peer, relayed, error = %e, "data connection refused");
            }
        });
    }
}

/// A connection not yet authorised, with its place among those.
struct Arrival {
    io: DataIo,
    place: Unauthorised,
    budget: Arc<HandshakeBudget>,
}

async fn accept_stream(
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    acceptor: tokio_rustls::TlsAcceptor,
    arrival: Arrival,
    accepting: watch::Receiver<bool>,
) -> Result<(), ChannelError> {
    let Arrival { io, place, budget } = arrival;
    let handshake = async {
        let mut tls = acceptor
            .accept(ReceiveBuffer::new(io, HANDSHAKE_BUFFER))
            .await?;
        let peer_id = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| ferry_tls::endpoint_id_of(c))
            .ok_or_else(|| {
                ChannelError::Protocol("the peer's certificate names no endpoint".into())
            })?;
        match channel::read_handshake(&mut tls, Some(&budget)).await? {
            Message::Open(open) => Ok((tls, peer_id, open)),
            _ => Err(ChannelError::Protocol("expected an open".into())),
        }
    };
    let (mut tls, peer_id, open) = tokio::time::timeout(OPEN_WITHIN, handshake)
        .await
        .map_err(|_| {
            ChannelError::Protocol("no TLS handshake and open within the deadline".into())
        })??;
    let version = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol());
    let verdict = check_open(&ctx, &open, &peer_id, *accepting.borrow(), version).and_then(|cap| {
        match sessions.refusal(&cap) {
            Some(reason) => Err(reason),
            None => Ok(cap),
        }
    });
    let capability = match verdict {
        Ok(c) => c,
        Err(reason) => {
            let refuse = async {
                let refused = Message::Refused {
                    reason: reason.clone(),
                };
                let _ = send_message(&mut tls, &refused).await;
                let _ = tls.shutdown().await;
            };
            let _ = tokio::time::timeout(ANSWER_WITHIN, refuse).await;
            return Err(ChannelError::Protocol(reason));
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, send_message(&mut tls, &Message::Accepted))
        .await
        .map_err(|_| ChannelError::Protocol("the peer does not read".into()))??;
    // Authorised: chunk-sized frames and a full receive buffer from here on.
    drop(place);
    tls.get_mut().0.grow(RECEIVE_BUFFER);
    tracing::debug!(task = %capability.task_id, stream = open.stream, "data stream accepted");
    attach(ctx, sessions, capability, open.stream, open.streams, tls);
    Ok(())
}

/// Everything that must hold before a stream is accepted.
fn check_open(
    ctx: &Context,
    open: &Open,
    peer_id: &str,
    accepting: bool,
    version: Option<u32>,
) -> Result<Capability, String> {
    if !accepting {
        return Err("this endpoint is paused; the task resumes when it is unpaused".into());
    }
    let key = (ctx.hub_key)()
        .ok_or("this endpoint has no hub signing key yet (not connected to the hub)")?;
    let cap = channel::verify_capability(&open.capability, &key, channel::now())
        .map_err(|e| e.to_string())?;
    if cap.destination_endpoint != ctx.identity.endpoint_id {
        return Err("the capability names another destination endpoint".into());
    }
    if cap.source_endpoint != peer_id {
        return Err("the capability names another source endpoint".into());
    }
    if open.streams == 0 || open.streams > 64 || open.stream >= open.streams {
        return Err("invalid stream numbering".into());
    }
    FilterSet::new(&cap.options.filters).map_err(|e| e.to_string())?;
    // An older source would send what the filters exclude.
    if !cap.options.filters.is_empty() && !version.is_some_and(data::honours_filters) {
        return Err(
            "the source runs an older ferry that does not honour --include/--exclude; upgrade it to transfer with filters".into(),
        );
    }
    Ok(cap)
}

fn attach(
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    cap: Capability,
    stream: u16,
    streams: u16,
    tls: Stream,
) {
    // Refused meanwhile (an end, a cancel, a revocation): dropped, and the
    // source hears the stream close.
    if sessions.refusal(&cap).is_some() {
        return;
    }
    let Ok(mut live) = sessions.live.lock() else {
        return;
    };
    // Its task ended between that look and this lock: `end_task` found no
    // session to tell and cleans up itself, so none may start now.
    if sessions
        .ended
        .lock()
        .map_or(true, |e| e.refuses(&cap.task_id, cap.attempt))
    {
        return;
    }
    // A newer attempt (the hub restarted, or an endpoint re-dialled while
    // the old data connections lived on) replaces the running one; it
    // starts only once the old one stopped: both would write the same
    // temporaries and the same journal.
    let superseded = match live.get(&cap.task_id) {
        Some(h) if h.attempt == cap.attempt => {
            let _ = h.streams.send((stream, tls));
            return;
        }
        Some(h) if h.attempt > cap.attempt => return,
        Some(h) => {
            stop(&h.cancel, Stop::Attempt);
            Some(h.done.clone())
        }
        None => None,
    };
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    let (cancel_tx, mut cancel_rx) = watch::channel(Stop::No);
    let (done_tx, done_rx) = watch::channel(false);
    let algorithm = algorithm_on(&cap, &tls);
    let version = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol());
    let rehash = version.is_some_and(ferry_proto::data::rehashes_held_chunks);
    let grows = version.is_some_and(ferry_proto::data::grows_streams);
    let announce_comparisons = version.is_some_and(ferry_proto::data::announces_comparisons);
    let _ = streams_tx.send((stream, tls));
    live.insert(
        cap.task_id.clone(),
        SessionHandle {
            attempt: cap.attempt,
            source: cap.source_endpoint.clone(),
            streams: streams_tx,
            cancel: cancel_tx,
            done: done_rx,
        },
    );
    drop(live);
    tokio::spawn(async move {
        let (task_id, attempt) = (cap.task_id.clone(), cap.attempt);
        let told = cancel_rx.clone();
        let ready = match superseded.clone() {
            Some(mut old) => {
                let stopped = async {
                    tokio::select! {
                        // Done, or its task is gone (the sender dropped): either way stopped.
                        _ = old.wait_for(|d| *d) => true,
                        _ = cancel_rx.wait_for(|c| *c != Stop::No) => false,
                    }
                };
                match tokio::time::timeout(SUPERSEDED_WITHIN, stopped).await {
                    Ok(true) => true,
                    Ok(false) => false,
                    Err(_) => {
                        tracing::warn!(task = %task_id, attempt, "the attempt before this one did not stop in time; this one ends (the hub retries)");
                        false
                    }
                }
            }
            None => true,
        };
        if ready {
            let arriving = Arriving {
                streams,
                grows,
                algorithm,
                rehash,
                announce_comparisons,
                rx: streams_rx,
            };
            run_session(ctx.clone(), cap, arriving, cancel_rx).await;
        }
        // Told that the task is over only once the session had kept its
        // temporaries for a resume (or before it ran): they go now, before
        // anything else of the task may run here, and once the attempt
        // this one replaced (told to keep them) has stopped too.
        if sessions.finished(&task_id, attempt, &told) {
            if let Some(mut older) = superseded {
                let _ = tokio::time::timeout(SUPERSEDED_WITHIN, older.wait_for(|d| *d)).await;
            }
            let _ = tokio::task::spawn_blocking(move || discard_kept(&ctx, &task_id)).await;
        }
        done_tx.send_replace(true);
    });
}

/// The digests' algorithm of an attempt whose stream settled TLS's ALPN
/// on `tls`: the task's, unless the source speaks a data protocol older
/// than 3 (then SHA-256, which it hashes with).
fn algorithm_on(cap: &Capability, tls: &Stream) -> ChecksumAlgorithm {
    let version = ferry_proto::data::negotiated_version(tls.get_ref().1.alpn_protocol())
        .unwrap_or(ferry_proto::data::MIN_PROTOCOL_VERSION);
    ferry_proto::data::digest_algorithm(cap.options.checksum_algorithm, version)
}

/// An attempt's streams as they arrive, and what the first one settled.
struct Arriving {
    /// How many the source opens (or, when it `grows`, at most).
    streams: u16,
    /// Whether the source may open them while the attempt runs
    /// (`ferry_proto::data::grows_streams`).
    grows: bool,
    /// The digests' algorithm (see [`algorithm_on`]).
    algorithm: ChecksumAlgorithm,
    /// Whether the source compares chunks a kept temporary holds
    /// unjournaled (`ferry_proto::data::rehashes_held_chunks`).
    rehash: bool,
    /// Whether the source hashes, as this side does, the files this side
    /// names before comparing them
    /// (`ferry_proto::data::announces_comparisons`).
    announce_comparisons: bool,
    rx: mpsc::UnboundedReceiver<(u16, Stream)>,
}

/// A file receiving data.
#[derive(Debug)]
struct InFlight {
    key: FileKey,
    rel: Vec<u8>,
    final_path: PathBuf,
    temp_path: PathBuf,
    file: DataFile,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    hashes: Vec<Option<[u8; 32]>>,
    outstanding: u32,
    unjournaled: Vec<u32>,
    /// Chunks a kept temporary holds that no journal vouched for: their
    /// slot in `hashes` is this side's digest of them, offered to the
    /// source as held; they count only once its `FileDone` did not reject
    /// them (and the file's digest checks them all the same).
    unconfirmed: Vec<u32>,
    source_digest: Option<[u8; 32]>,
    /// Created empty at full length: zero chunks can stay holes.
    fresh: bool,
    resends: u32,
    awaiting_verdict: bool,
    /// Which temporary file `file` is: a chunk written into an earlier one
    /// (before the file was started over) does not count.
    generation: u32,
    /// Times the file was started over after an I/O error.
    retries: u32,
    /// Bytes of it counted as transferred: they move to `bytes_resent` if
    /// the file is sent again.
    counted: u64,
    /// This node's part of a file split over the nodes of a spread task.
    split: Option<Split>,
}

/// A file split over the nodes of a spread task, as one node sees it:
/// each destination node writes its chunks into the file's one shared
/// temporary ([`Disk::split`]), makes them durable and leaves a sidecar
/// naming their digests ([`SplitPart`]); the node of the file's own shard
/// commits it once every other part's sidecar is there and fits.
#[derive(Debug, Clone)]
struct Split {
    /// The chunks this node writes.
    range: std::ops::Range<u32>,
    /// This node's shard is the file's own ([`shard_of`]): it commits it.
    owner: bool,
    index: u32,
    count: u32,
}

/// How long a split retry's node waits for the nodes of the attempt
/// before to keep their shared temporary ([`Disk::adopt_kept`]).
const KEPT_WITHIN: Duration = Duration::from_secs(10);

/// A kept split file's records are looked for by part index below this
/// (a split over more nodes is resumed from the records of these parts).
const KEPT_RECORDS: u32 = 64;

/// Whether a file of `size` bytes may be split over the nodes (at least
/// two chunks for each of two).
fn splittable(size: u64) -> bool {
    use ferry_proto::task::{SPLIT_MIN_CHUNKS_PER_SHARD, chunks_of};
    chunks_of(size) >= 2 * SPLIT_MIN_CHUNKS_PER_SHARD
}

/// Of a kept temporary of `size` bytes, the chunks within `within` that
/// `recorded` names (by a journal or a kept split file's record) and that
/// still hash to their digest; and, with `others`, this side's digests of
/// at most [`data::MAX_HELD`] more chunks within `within` that hold data
/// and no record names, to compare with the source's
/// (`Need::SendUnlessHeld`).
fn rehash_kept(
    file: &File,
    size: u64,
    algorithm: ChecksumAlgorithm,
    recorded: &[(u32, [u8; 32])],
    others: bool,
    within: std::ops::Range<u32>,
) -> (ChunkHashes, ChunkHashes) {
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut hash_at = |index: u32| {
        let len = chunk_len(size, index) as usize;
        let offset = u64::from(index) * CHUNK_SIZE;
        (len > 0 && file.read_exact_at(&mut buf[..len], offset).is_ok())
            .then(|| chunk_hash(algorithm, &buf[..len]))
    };
    let verified: ChunkHashes = recorded
        .iter()
        .filter(|(i, _)| within.contains(i))
        .filter(|&&(i, digest)| hash_at(i) == Some(digest))
        .copied()
        .collect();
    let mut held = Vec::new();
    if others {
        let named: HashSet<u32> = recorded.iter().map(|(i, _)| *i).collect();
        for index in written_chunks(file, size) {
            if held.len() >= data::MAX_HELD {
                break;
            }
            if !within.contains(&index) || named.contains(&index) {
                continue;
            }
            if let Some(digest) = hash_at(index) {
                held.push((index, digest));
            }
        }
    }
    (verified, held)
}

/// What this node verified of its part of a split file that it had not
/// finished when the attempt ended: the file's version as its source
/// offered it, and the digests of the chunks in (see [`Disk::drop_split`]).
#[derive(Debug)]
struct OwnPart {
    size: u64,
    mtime_ns: i64,
    digests: Vec<(u32, [u8; 32])>,
}

impl OwnPart {
    fn of(f: &InFlight) -> Option<(PathBuf, OwnPart)> {
        let split = f.split.as_ref()?;
        let digests = split
            .range
            .clone()
            .filter(|i| !f.unconfirmed.contains(i))
            .filter_map(|i| Some((i, (*f.hashes.get(i as usize)?)?)))
            .collect();
        Some((
            f.final_path.clone(),
            OwnPart {
                size: f.size,
                mtime_ns: f.mtime_ns,
                digests,
            },
        ))
    }
}

/// How often a node that commits a split file looks for the other
/// parts' sidecars.
const PART_POLL: Duration = Duration::from_millis(20);
/// How long it waits for them once its own part is in while nothing is
/// written into the file's shared temporary: a node whose part makes no
/// progress for this long is stuck (one that went away ends the attempt
/// at once: the hub hears of it). The attempt then ends as a fault, and
/// the hub retries it. A slower part that still moves is waited for.
const PART_WAIT: Duration = Duration::from_secs(600);

impl InFlight {
    /// `entry` admitted to arrive in `file` (the temporary at
    /// `temp_path`), nothing of it received or counted yet: every chunk
    /// outstanding.
    fn admitted(
        entry: &Entry,
        key: FileKey,
        final_path: PathBuf,
        temp_path: PathBuf,
        file: DataFile,
        fresh: bool,
    ) -> Self {
        let count = chunk_count(entry.size);
        InFlight {
            key,
            rel: entry.path.as_bytes().to_vec(),
            final_path,
            temp_path,
            file,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            hashes: vec![None; count as usize],
            outstanding: count,
            unjournaled: Vec::new(),
            unconfirmed: Vec::new(),
            source_digest: None,
            fresh,
            resends: 0,
            awaiting_verdict: false,
            generation: 0,
            retries: 0,
            counted: 0,
            split: None,
        }
    }

    /// The chunks this node receives of it, and how it asks for them all.
    fn all_chunks(&self) -> (u32, ChunkSet) {
        match &self.split {
            Some(split) => (
                split.range.len() as u32,
                ChunkSet::Only(split.range.clone().collect()),
            ),
            None => (self.hashes.len() as u32, ChunkSet::All),
        }
    }
}

impl InFlight {
    /// Its bytes arrive again (from the start): those counted so far were
    /// sent in vain.
    fn recount(&mut self, counters: &mut TaskCounters) {
        counters.bytes_transferred = counters.bytes_transferred.saturating_sub(self.counted);
        counters.bytes_resent = counters.bytes_resent.saturating_add(self.counted);
        self.counted = 0;
    }
}

/// A verified file on its way to its real name.
#[derive(Debug)]
struct Ready {
    file: InFlight,
}

impl State {
    /// Every entry answered, every file asked for committed.
    fn finished(&self) -> bool {
        self.manifest_done
            && self.waiting.is_empty()
            && self.files.is_empty()
            && self.pending_commits == 0
    }

    /// Whether the files asked for and not yet committed leave room to
    /// answer a batch of `entries` (one larger than the room is answered
    /// alone).
    fn room_for(&self, entries: usize) -> bool {
        let admitted = self.files.len() + self.pending_commits;
        admitted + entries <= ADMITTED_MAX || admitted == 0
    }
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<u64, InFlight>,
    counters: TaskCounters,
    manifest_done: bool,
    pending_commits: usize,
    /// Manifest batches received and not yet answered, in order: at most
    /// the source's window of entries, as it offers no more unanswered.
    waiting: std::collections::VecDeque<Vec<Entry>>,
    /// Every entry of the manifest, kept only for --delete.
    seen: HashSet<FileKey>,
    /// Directories this attempt created (a bounded few): nothing can
    /// stand in them yet, so their files need no lookup first.
    created_dirs: HashSet<PathBuf>,
    failure: Option<MoveError>,
}

struct Session {
    ctx: Arc<Context>,
    cap: Capability,
    /// The task's `--include`/`--exclude`: what the source may offer, and
    /// what `--delete` spares.
    filters: FilterSet,
    disk: Disk,
    roots: Vec<PathBuf>,
    state: Mutex<State>,
    /// Taken when the task is over.
    journal: Mutex<Option<Journal>>,
    recovered: Mutex<crate::journal::Recovered>,
    /// The source compares what kept temporaries hold unjournaled (data
    /// protocol 4): such chunks are offered as held, not asked for.
    rehash: bool,
    /// The source takes `Comparing` (data protocol 6): files this side
    /// hashes to compare are named to it first.
    announce_comparisons: bool,
    /// Taken when the session ends, which lets the committer thread finish.
    commit_tx: Mutex<Option<std::sync::mpsc::Sender<Ready>>>,
    to_source: mpsc::UnboundedSender<Message>,
    wake: tokio::sync::Notify,
    write_gate: Mutex<()>,
    /// The committer made room and asked for the waiting batches to be
    /// answered; not yet begun.
    answer_scheduled: AtomicBool,
    /// Held while manifest batches are answered: one at a time, in order,
    /// by the conversation's reader or by the committer that made room.
    answering: Mutex<()>,
    /// `true` while the attempt may touch the disk. Every piece of work a
    /// stream hands over (a chunk, a manifest batch) holds it shared; the
    /// session closes it exclusively when it stops, so nothing of this
    /// attempt writes once a newer one may run. Aborting a reader does
    /// not stop work it sent to a blocking thread, and work still running
    /// after its session ended would create or remove temporaries by
    /// name beneath the next attempt.
    open: std::sync::RwLock<bool>,
    /// Set before `open` is closed: a long manifest batch stops at its next entry.
    closing: std::sync::atomic::AtomicBool,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Leave to touch the disk for one piece of work; none once the
    /// attempt stopped (its streams are still drained until its last word
    /// is out: a socket closed with data unread resets the connection,
    /// and the source would hear that instead of the last word).
    fn working(&self) -> Option<std::sync::RwLockReadGuard<'_, bool>> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        (*open).then_some(open)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for every piece of work in progress, and lets none start.
    fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        *self.open.write().unwrap_or_else(|p| p.into_inner()) = false;
    }

    fn fail(&self, error: MoveError) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some(error);
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// Where an entry lands.
    fn destination(&self, entry: &Entry) -> Result<PathBuf, MoveError> {
        let root = self
            .roots
            .get(entry.item as usize)
            .ok_or_else(|| MoveError::Protocol("entry for an unknown item".into()))?;
        let rel = plan::relative(entry.path.as_bytes()).map_err(MoveError::Protocol)?;
        Ok(if rel.as_os_str().is_empty() {
            root.clone()
        } else {
            root.join(rel)
        })
    }

    /// The name under which `entry` lands inside a directory standing at
    /// its destination path, if one may take it: an item that is a single
    /// file, its destination written without a trailing `/` (with one,
    /// the name is already part of it), takes the source's name, as
    /// `cp FILE DIR` does.
    fn name_inside_a_directory(&self, entry: &Entry) -> Option<std::ffi::OsString> {
        let item = self.cap.items.get(entry.item as usize)?;
        if item.recursive
            || !entry.path.as_bytes().is_empty()
            || item.destination.as_bytes().ends_with(b"/")
        {
            return None;
        }
        Path::new(item.source.as_os_str())
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
    }

    /// This node's part of `entry` if it is a file split over the nodes
    /// of a spread task.
    fn split_of(&self, entry: &Entry) -> Option<Split> {
        let shard = self.cap.shard?;
        if entry.kind != EntryKind::File {
            return None;
        }
        let rel = entry.path.as_bytes();
        match shard.part(entry.item, rel, entry.size) {
            Part::Chunks(range) => Some(Split {
                range,
                owner: shard_of(entry.item, rel, shard.count) == shard.index,
                index: shard.index,
                count: shard.count,
            }),
            Part::Whole | Part::None => None,
        }
    }

    /// Directories this attempt made: nothing can stand in them yet.
    fn created(&self, dirs: Vec<PathBuf>) {
        let mut st = self.lock();
        for dir in dirs {
            if st.created_dirs.len() >= CREATED_DIRS_KEPT {
                st.created_dirs.clear();
            }
            st.created_dirs.insert(dir);
        }
    }
}

/// The directory `path` is in (a destination path always has one).
fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

async fn run_session(
    ctx: Arc<Context>,
    cap: Capability,
    arriving: Arriving,
    mut cancel: watch::Receiver<Stop>,
) {
    let Arriving {
        streams,
        grows,
        algorithm,
        rehash,
        announce_comparisons,
        rx: mut arriving,
    } = arriving;
    let (task_id, attempt) = (cap.task_id.clone(), cap.attempt);
    if algorithm != cap.options.checksum_algorithm {
        tracing::info!(task = %task_id, attempt, asked = %cap.options.checksum_algorithm, "the source speaks an older data protocol: digests are SHA-256");
    }
    let (journal, recovered) = match Journal::open(&ctx.state_dir, &task_id, algorithm) {
        Ok(j) => j,
        Err(e) => {
            let path = Journal::path_for(&ctx.state_dir, &task_id);
            let error = MoveError::os(Side::Destination, "open the task journal", &path, e);
            ctx.report(&task_id, attempt, error.report());
            return;
        }
    };
    let mut roots = Vec::new();
    for item in &cap.items {
        match resolve_endpoint_path(&ctx.home, item.destination.as_bytes()) {
            Ok(mut root) => {
                // `DST/` for a single file means "into this directory".
                if !item.recursive && item.destination.as_bytes().ends_with(b"/") {
                    let source = Path::new(item.source.as_os_str());
                    if let Some(name) = source.file_name() {
                        root.push(name);
                    }
                }
                roots.push(root)
            }
            Err(reason) => {
                let error = MoveError::Unusable {
                    side: Side::Destination,
                    reason,
                };
                ctx.report(&task_id, attempt, error.report());
                return;
            }
        }
    }
    // Checked when the stream was accepted; a failure here is a bug.
    let filters = match FilterSet::new(&cap.options.filters) {
        Ok(f) => f,
        Err(e) => {
            let error = MoveError::Unusable {
                side: Side::Destination,
                reason: e.to_string(),
            };
            ctx.report(&task_id, attempt, error.report());
            return;
        }
    };
    // For a grantee, every write, mkdir, removal (`--delete`) and
    // temporary of this attempt is decided by the owner's policy narrowed
    // by the signed grant.
    let policy = match ctx.policy_for(cap.destination_grant.as_ref()) {
        Ok(policy) => policy,
        Err(e) => {
            let error = MoveError::Unusable {
                side: Side::Destination,
                reason: e.to_string(),
            };
            ctx.report(&task_id, attempt, error.report());
            return;
        }
    };
    // A hook this endpoint will not run fails the task before any data
    // moves: landing the data and then not doing what was asked of it
    // would be a success in name only.
    if let Some(hook) = &cap.options.on_success
        && let Some(reason) = ctx.refuse_hook(hook, cap.destination_grant.is_some())
    {
        let error = MoveError::Unusable {
            side: Side::Destination,
            reason,
        };
        ctx.report(&task_id, attempt, error.report());
        return;
    }
    if let Some(grant) = &cap.destination_grant {
        tracing::info!(task = %task_id, attempt, grantee = ?grant.grantee, permission = ?grant.permission_id, mode = grant.mode.as_str(), "receiving for a grantee");
    }
    let (commit_tx, commit_rx) = std::sync::mpsc::channel();
    let (to_source, outgoing) = mpsc::unbounded_channel();
    let mut outgoing = Some(outgoing);
    let session = Arc::new(Session {
        disk: Disk::new(
            RootedFs::with_cached_roots(policy).holding_dirs(),
            Attributes {
                preserve_mode: cap.options.preserve_mode,
                preserve_mtime: cap.options.preserve_mtime,
                umask: ctx.umask,
            },
            ctx.faults(),
            &cap.task_id,
        )
        .hashing(algorithm)
        .counting(ctx.metrics.clone()),
        ctx: ctx.clone(),
        filters,
        cap,
        roots,
        state: Mutex::new(State::default()),
        journal: Mutex::new(Some(journal)),
        recovered: Mutex::new(recovered),
        rehash,
        announce_comparisons,
        commit_tx: Mutex::new(Some(commit_tx)),
        to_source,
        wake: tokio::sync::Notify::new(),
        write_gate: Mutex::new(()),
        answer_scheduled: AtomicBool::new(false),
        answering: Mutex::new(()),
        open: std::sync::RwLock::new(true),
        closing: std::sync::atomic::AtomicBool::new(false),
    });
    let committer = {
        let session = session.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || committer(session, commit_rx, runtime))
    };
    ctx.report(&task_id, attempt, TaskReport::Started);

    let mut writer: Option<ToSource> = None;
    let mut readers = tokio::task::JoinSet::new();
    let mut connected = 0u16;
    let mut checkpoint = tokio::time::interval(CHECKPOINT_EVERY);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let outcome: Result<(), Outcome> = loop {
        {
            let mut st = session.lock();
            if let Some(failure) = st.failure.take() {
                break Err(Outcome::Failed(failure));
            }
            if st.finished() {
                break Ok(());
            }
        }
        tokio::select! {
            arrived = arriving.recv(), if connected < streams => match arrived {
                Some((index, stream)) => {
                    connected += 1;
                    if algorithm_on(&session.cap, &stream) != algorithm {
                        break Err(Outcome::Failed(MoveError::Protocol("the source's streams speak different data protocols".into())));
                    }
                    // A source that speaks only version 1 gets no keep-alive and no deadline.
                    let liveness = ctx.liveness.on(stream.get_ref().1.alpn_protocol());
                    let (reader, write_half) = tokio::io::split(stream);
                    if index == 0
                        && let Some(messages) = outgoing.take()
                    {
                        writer = Some(ToSource::start(write_half, messages, liveness));
                    }
                    let session = session.clone();
                    // The endpoint's cap holds for what it receives too.
                    let reader = Throttled::new(reader, vec![ctx.bwlimit.clone()]);
                    let reader = Watched::new(reader, liveness.map(|l| l.idle));
                    readers.spawn(read_stream(session, reader, index == 0));
                }
                None => break Err(Outcome::Failed(MoveError::Connection("the session was replaced".into()))),
            },
            written = async {
                match writer.as_mut() {
                    Some(w) => (&mut w.task).await,
                    None => std::future::pending().await,
                }
            } => {
                // It ends only on the last word, or when it failed.
                writer = None;
                break Err(Outcome::Failed(match written {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => MoveError::Internal("the writer to the source stopped".into()),
                    Err(e) => MoveError::Internal(format!("the writer to the source stopped: {e}")),
                }));
            }
            done = readers.join_next(), if !readers.is_empty() => {
                match done {
                    Some(Ok(Err(e))) => break Err(Outcome::Failed(e)),
                    Some(Err(e)) => break Err(Outcome::Failed(MoveError::Internal(format!("a stream's reader stopped: {e}")))),
                    _ => {}
                }
                // A source that may open more streams later opens none
                // once every one it opened has closed.
                if readers.is_empty() && (connected == streams || grows) {
                    let st = session.lock();
                    if !st.finished() {
                        break Err(Outcome::Failed(MoveError::Connection("the source closed the connection before the end".into())));
                    }
                }
            }
            _ = session.wake.notified() => {}
            _ = checkpoint.tick() => {
                let s = session.clone();
                let _ = tokio::task::spawn_blocking(move || checkpoint_partials(&s)).await;
            }
            _ = progress.tick() => {
                let counters = session.lock().counters;
                ctx.report(&task_id, attempt, TaskReport::Progress { counters });
            }
            _ = cancel.changed() => break Err(Outcome::Canceled),
        }
    };
    tracing::debug!(ok = outcome.is_ok(), "session loop over");
    // The hub ended the attempt, or this endpoint paused (and told the
    // hub): no report, and the source is told to make none either, so a
    // pause is no fault. Told before the streams close under the source's
    // writers, whose errors would otherwise speak first.
    if let Err(Outcome::Canceled) = &outcome
        && let Some(w) = writer.take()
    {
        let stopped = Message::Abort {
            reason: "the destination endpoint paused, or the hub ended the attempt".into(),
            disposition: Disposition::RetryLater,
            side: None,
            stopped: true,
        };
        w.last_word(stopped, ANSWER_WITHIN).await;
    }
    {
        let s = session.clone();
        let _ = tokio::task::spawn_blocking(move || s.close()).await;
    }
    // Partial files stay with their journal for the next attempt.
    {
        let s = session.clone();
        let _ = tokio::task::spawn_blocking(move || checkpoint_partials(&s)).await;
    }
    let result = match outcome {
        Ok(()) => finish(&session)
            .await
            .inspect_err(|e| tracing::debug!(%e, "finish failed"))
            .map_err(Outcome::Failed),
        Err(e) => Err(e),
    };
    tracing::debug!(ok = result.is_ok(), "finished");
    let fate = Fate::of(&result);
    let counters = session.lock().counters;
    match result {
        Ok(()) => {
            if let Some(w) = writer.take() {
                w.last_word(Message::Done { counters }, ctx.liveness.idle)
                    .await;
            }
            // Which part of a task spread over nodes landed here.
            tracing::info!(
                task = %task_id,
                attempt,
                shard = ?session.cap.shard,
                files = counters.files_transferred,
                bytes = counters.bytes_transferred,
                "received"
            );
            ctx.report(&task_id, attempt, TaskReport::Succeeded { counters });
            if let (Some(hook), Some(hooks)) = (&session.cap.options.on_success, &ctx.hooks) {
                hooks.landed(crate::context::Landed {
                    task_id: task_id.clone(),
                    attempt,
                    hook: hook.clone(),
                    label: session.cap.label.clone(),
                    destinations: session.roots.clone(),
                    counters,
                });
            }
        }
        // Told to stop, and the source told (above).
        Err(Outcome::Canceled) => {}
        // The source stopped (it paused, or the hub ended the attempt): its
        // endpoint tells the hub.
        Err(Outcome::Failed(MoveError::PeerStopped { reason, .. })) => {
            tracing::info!(task = %task_id, attempt, %reason, "the source stopped the attempt");
            if let Some(w) = writer.take() {
                w.task.abort();
            }
        }
        Err(Outcome::Failed(error)) => {
            // The source reports the same disposition: whichever report
            // reaches the hub first, the task's fate is the same.
            if let Some(w) = writer.take() {
                w.last_word(error.abort(), ANSWER_WITHIN).await;
            }
            ctx.report(&task_id, attempt, TaskReport::Progress { counters });
            ctx.report(&task_id, attempt, error.report());
        }
    }
    // The source closes its streams once it has the last word; until then
    // they are drained, not dropped: a socket closed with data unread
    // resets the connection, and the source, still writing, would hear
    // that instead of the last word.
    {
        let drained = async { while readers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(ANSWER_WITHIN, drained).await;
    }
    readers.abort_all();
    if let Ok(mut tx) = session.commit_tx.lock() {
        tx.take();
    }
    let _ = tokio::task::spawn_blocking(move || committer.join()).await;
    settle(session, fate, &cancel).await;
}

/// How an attempt ended, for what it leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Succeeded,
    /// The task fails (a fail-task error, here or at the source).
    Failed,
    /// Canceled, or a fault the hub retries.
    Interrupted,
}

impl Fate {
    fn of(result: &Result<(), Outcome>) -> Fate {
        match result {
            Ok(()) => Fate::Succeeded,
            Err(Outcome::Failed(e)) if e.disposition().at_end() == Disposition::FailTask => {
                Fate::Failed
            }
            Err(_) => Fate::Interrupted,
        }
    }
}

/// What an attempt leaves behind, once nothing of it touches files any
/// more (its committer stopped): its temporaries stay, each named in the
/// journal, only while a later attempt may resume them (a fault the hub
/// retries, a pause, a newer attempt; a crash leaves them too, named at
/// the last checkpoint). After a success, a failure of the task, or once
/// the hub said the task is over, they are removed (with any an earlier
/// attempt kept) and so is the journal. Either is logged.
async fn settle(session: Arc<Session>, fate: Fate, told: &watch::Receiver<Stop>) {
    let over = *told.borrow() == Stop::Task;
    let _ = tokio::task::spawn_blocking(move || {
        let s = &session;
        let (task, attempt) = (&s.cap.task_id, s.cap.attempt);
        // Sidecars of split files are of this attempt only: unless it
        // succeeded (a part another node commits stays for it), they go,
        // and the shared temporaries with them, or, for a retry, become
        // plain temporaries the next attempt resumes.
        if fate != Fate::Succeeded {
            let keep = fate == Fate::Interrupted && !over;
            let own: HashMap<PathBuf, OwnPart> = match keep {
                true => s.lock().files.values().filter_map(OwnPart::of).collect(),
                false => HashMap::new(),
            };
            let dropped = s.disk.drop_splits(keep, &own);
            if dropped > 0 {
                tracing::info!(%task, attempt, dropped, keep, "parts of split files ended with the attempt");
            }
        }
        let why = match (fate, over) {
            (Fate::Interrupted, false) => {
                match s.disk.keep(&s.journal) {
                    Ok(0) => {}
                    Ok(kept) => tracing::info!(%task, attempt, kept, "temporary files kept for the next attempt"),
                    Err(e) => tracing::warn!(%task, attempt, error = %e, "temporary files kept, but the journal does not name them all"),
                }
                return;
            }
            (Fate::Failed, _) => "the task failed",
            (Fate::Succeeded, _) => "the task succeeded",
            (Fate::Interrupted, true) => "the task is over",
        };
        let earlier = match s.recovered.lock() {
            Ok(r) => r.temporaries.clone(),
            Err(p) => p.into_inner().temporaries.clone(),
        };
        let removed = s.disk.discard(&s.journal, &earlier);
        if removed > 0 {
            tracing::info!(%task, attempt, removed, why, "temporary files removed");
        }
    })
    .await;
}

/// A task is over with no attempt running here: removes the temporaries
/// its journal names, then the journal.
fn discard_kept(ctx: &Context, task_id: &str) {
    let recovered = match Journal::recover(&ctx.state_dir, task_id) {
        Ok(Some(recovered)) => recovered,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot read the task journal to remove its temporary files");
            return;
        }
    };
    // The owner's policy, also for a grantee's task: only the temporaries
    // the journal names go, and each was made by this endpoint under the
    // narrowed policy, beside a target it allowed.
    let disk = Disk::new(
        RootedFs::new((ctx.policy)()),
        Attributes {
            preserve_mode: false,
            preserve_mtime: false,
            umask: ctx.umask,
        },
        ctx.faults(),
        task_id,
    );
    let removed = disk.discard(&Mutex::new(None), &recovered.temporaries);
    if let Err(e) = Journal::remove(&ctx.state_dir, task_id) {
        tracing::warn!(task = %task_id, error = %e, "cannot remove the task journal");
    }
    if removed > 0 {
        tracing::info!(task = %task_id, removed, why = "the task is over", "temporary files removed");
    }
}

/// Stream 0's writer, a task of its own: the session's messages to the
/// source, keep-alives when there are none (the session loop may wait on
/// a commit batch, the stream's reader on a checksum), and the last word.
#[derive(Debug)]
struct ToSource {
    task: tokio::task::JoinHandle<Result<(), MoveError>>,
    last_word: oneshot::Sender<Message>,
}

impl ToSource {
    fn start(
        writer: WriteHalf<Stream>,
        messages: mpsc::UnboundedReceiver<Message>,
        liveness: Option<Liveness>,
    ) -> Self {
        let (last_word, last_rx) = oneshot::channel();
        let task = tokio::spawn(write_to_source(writer, messages, last_rx, liveness));
        ToSource { task, last_word }
    }

    /// Sends `message` last and closes the stream, waiting `within` at
    /// most.
    async fn last_word(mut self, message: Message, within: Duration) {
        let _ = self.last_word.send(message);
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Writes to the source on stream 0 until the last word (see
/// [`ToSource`]). With `liveness`, a write the network holds for the idle
/// limit fails it.
async fn write_to_source(
    writer: WriteHalf<Stream>,
    mut messages: mpsc::UnboundedReceiver<Message>,
    mut last_word: oneshot::Receiver<Message>,
    liveness: Option<Liveness>,
) -> Result<(), MoveError> {
    let mut writer = Watched::new(writer, liveness.map(|l| l.idle));
    let lost = |e: ChannelError| match e {
        ChannelError::Stalled(stall) => MoveError::stalled(Side::Source, stall),
        e => MoveError::Connection(format!("lost the connection to the source: {e}")),
    };
    loop {
        let quiet_until = liveness.map(|l| tokio::time::Instant::now() + l.keep_alive_every);
        tokio::select! {
            biased;
            last = &mut last_word => {
                if let Ok(message) = last {
                    send_message(&mut writer, &message).await.map_err(lost)?;
                    let _ = writer.shutdown().await;
                }
                return Ok(());
            }
            message = messages.recv() => match message {
                Some(message) => send_message(&mut writer, &message).await.map_err(lost)?,
                None => return Ok(()),
            },
            () = async {
                match quiet_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => send_keep_alive(&mut writer).await.map_err(lost)?,
        }
    }
}

/// How a session's loop ended, short of success.
#[derive(Debug)]
enum Outcome {
    /// The hub canceled the attempt (or this endpoint paused).
    Canceled,
    Failed(MoveError),
}

/// An error of `op` on `path` on this (the destination's) disk, by errno.
fn on_disk(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MoveError {
    let path = path.to_path_buf();
    move |e| MoveError::os(Side::Destination, op, &path, e)
}

fn poisoned<T>(_: T) -> MoveError {
    MoveError::Internal("the task journal's lock is poisoned".into())
}

/// After the last commit: `--delete`, then the journal goes.
async fn finish(session: &Arc<Session>) -> Result<(), MoveError> {
    let s = session.clone();
    tokio::task::spawn_blocking(move || {
        if s.cap.options.delete {
            delete_extras(&s)?;
        }
        let journal = s.journal.lock().map_err(poisoned)?.take();
        if let Some(journal) = journal {
            let path = journal.path().to_path_buf();
            journal.finish().map_err(|e| {
                MoveError::os(Side::Destination, "remove the task journal", &path, e)
            })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| MoveError::Internal(e.to_string()))?
}

/// Reads one stream: the conversation on stream 0, chunks on every stream.
async fn read_stream(
    session: Arc<Session>,
    mut reader: Watched<Throttled<ReadHalf<Stream>>>,
    conversation: bool,
) -> Result<(), MoveError> {
    let _stream = session.ctx.metrics.stream();
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(Some(Frame::KeepAlive)) => continue,
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(ChannelError::Stalled(stall)) => {
                return Err(MoveError::stalled(Side::Source, stall));
            }
            Err(e) => return Err(MoveError::Connection(format!("data stream failed: {e}"))),
        };
        // A hop to the blocking pool costs more than hashing and writing a
        // small chunk, and small files are where every microsecond per file
        // counts: small work runs right here.
        match frame {
            Frame::Chunk(header, data) if data.len() <= INLINE_CHUNK => {
                receive_chunk(&session, header, data)?
            }
            Frame::Chunk(header, data) => {
                let s = session.clone();
                tokio::task::spawn_blocking(move || receive_chunk(&s, header, data))
                    .await
                    .map_err(|e| MoveError::Internal(e.to_string()))??;
            }
            // Per-file messages travel with the file's data, on any stream.
            Frame::Message(m @ (Message::FileDone { .. } | Message::Unchanged { .. })) => {
                converse(&session, m)?
            }
            Frame::Message(message) if conversation => {
                let s = session.clone();
                tokio::task::spawn_blocking(move || converse(&s, message))
                    .await
                    .map_err(|e| MoveError::Internal(e.to_string()))??;
            }
            Frame::Message(other) => {
                return Err(MoveError::Protocol(format!(
                    "unexpected message on a data stream: {other:?}"
                )));
            }
            Frame::KeepAlive => {}
        }
        session.wake.notify_waiters();
    }
}

/// Handles one conversation message (blocking: it touches the filesystem).
fn converse(s: &Session, message: Message) -> Result<(), MoveError> {
    let Some(_working) = s.working() else {
        return Ok(());
    };
    match message {
        Message::Manifest { entries } => {
            tracing::debug!(entries = entries.len(), "manifest");
            s.lock().waiting.push_back(entries);
            answer_waiting(s)?;
        }
        Message::FileDone {
            id,
            digest,
            rejected,
        } => {
            let digest = from_hex(&digest)
                .ok_or_else(|| MoveError::Protocol("malformed digest from the source".into()))?;
            // Never more than were offered as held.
            if rejected.len() > data::MAX_HELD {
                return Err(MoveError::Protocol(
                    "the source rejected more chunks than were held".into(),
                ));
            }
            let mut guard = s.lock();
            let st = &mut *guard;
            if let Some(f) = st.files.get_mut(&id) {
                f.source_digest = Some(digest);
                settle_held(f, &rejected, &mut st.counters);
            }
            complete_if_ready(s, st, id)?;
        }
        Message::Unchanged { id } => {
            let mut st = s.lock();
            if let Some(f) = st.files.remove(&id) {
                // None was made, and no earlier attempt left one behind.
                if f.file.is_made() || s.cap.attempt > 1 {
                    s.disk.remove_temp(&f.final_path);
                }
                // A split file counts with its own shard only.
                if f.split.is_some() {
                    s.disk.drop_split(&f.final_path, false, None);
                }
                if f.split.as_ref().is_some_and(|split| !split.owner) {
                    // Counted by the node of its own shard.
                } else if s.cap.options.sync_level.is_none() {
                    // With no sync level, only a retry compares: the file
                    // is one an earlier attempt moved (`plan::verdict`),
                    // and counts as moved, as a journaled one does.
                    st.counters.files_transferred += 1;
                    st.counters.bytes_transferred =
                        st.counters.bytes_transferred.saturating_add(f.size);
                } else {
                    st.counters.files_skipped += 1;
                    st.counters.bytes_skipped = st.counters.bytes_skipped.saturating_add(f.size);
                }
            }
        }
        Message::FileChanged { id } => {
            let mut st = s.lock();
            if let Some(mut f) = st.files.remove(&id) {
                f.recount(&mut st.counters);
                if f.split.is_some() {
                    // Its other parts are of no use either.
                    s.disk.drop_split(&f.final_path, false, None);
                } else {
                    s.disk.remove_temp(&f.final_path);
                }
                if let Ok(mut j) = s.journal.lock()
                    && let Some(j) = j.as_mut()
                {
                    j.discarded(f.key);
                }
            }
        }
        Message::End { files } => {
            tracing::debug!(files, "end of manifest");
            let mut st = s.lock();
            st.manifest_done = true;
            st.counters.walk_done = true;
        }
        Message::Abort {
            reason,
            stopped: true,
            ..
        } => {
            return Err(MoveError::PeerStopped {
                peer: Side::Source,
                reason,
            });
        }
        Message::Abort {
            reason,
            disposition,
            side,
            ..
        } => {
            return Err(MoveError::PeerGaveUp {
                peer: Side::Source,
                reason,
                disposition,
                side,
            });
        }
        other => {
            return Err(MoveError::Protocol(format!(
                "unexpected message from the source: {other:?}"
            )));
        }
    }
    Ok(())
}

/// Answers the manifest batches waiting, in order, while the files asked
/// for and not yet committed leave room ([`ADMITTED_MAX`]). Called when a
/// batch comes and when files commit: whoever holds `answering` re-checks
/// the room after each batch, and the other waits for it, so no batch is
/// left waiting with room free.
fn answer_waiting(s: &Session) -> Result<(), MoveError> {
    let _one = s.answering.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let entries = {
            let mut st = s.lock();
            match st.waiting.front() {
                Some(next) if st.room_for(next.len()) => {}
                _ => return Ok(()),
            }
            match st.waiting.pop_front() {
                Some(entries) => entries,
                None => return Ok(()),
            }
        };
        if !answer_manifest(s, &entries)? {
            return Ok(());
        }
    }
}

/// Decides one manifest batch and tells the source what it needs; `false`
/// if the session is closing.
fn answer_manifest(s: &Session, entries: &[Entry]) -> Result<bool, MoveError> {
    let mut decided = Vec::with_capacity(entries.len());
    for entry in entries {
        if s.is_closing() {
            return Ok(false);
        }
        decided.push(decide(s, entry)?);
    }
    // The batch's copies to compare, hashed together: on every core.
    let (ids, to_hash): (Vec<u64>, Vec<(&Path, u64)>) = entries
        .iter()
        .zip(&decided)
        .filter_map(|(entry, d)| match d {
            Decided::Compare(landed, _) => Some((entry.id, (landed.path.as_path(), entry.size))),
            Decided::Need(_) => None,
        })
        .unzip();
    // Named first, so the source hashes its copies while this side does.
    if s.announce_comparisons && !ids.is_empty() {
        let _ = s.to_source.send(Message::Comparing { ids });
    }
    let mut digests = digests_of(&s.disk.fs, s.disk.algorithm, &to_hash).into_iter();
    let mut needs = Vec::with_capacity(entries.len());
    for (entry, d) in entries.iter().zip(decided) {
        if s.is_closing() {
            return Ok(false);
        }
        let need = match d {
            Decided::Need(need) => need,
            Decided::Compare(landed, split) => {
                let digest = digests.next().ok_or_else(|| {
                    MoveError::Internal("a digest of the batch is missing".into())
                })??;
                match split {
                    Some(split) => admit_part_compared(s, entry, landed, split, digest),
                    None => admit(s, entry, landed, Some(digest))?,
                }
            }
        };
        if let Some(need) = need {
            needs.push((entry.id, need));
        }
    }
    for message in data::needs_messages(needs) {
        let _ = s.to_source.send(message);
    }
    Ok(true)
}

/// Where deciding an entry stands.
enum Decided {
    /// What the destination needs of it; `None` for directories.
    Need(Option<Need>),
    /// At checksum level, a file of its size is where it lands: the
    /// digest of that copy goes to the source ([`admit`] once hashed). With
    /// a split, this node's part of a split file a retry compares
    /// ([`admit_part_compared`]).
    Compare(Landed, Option<Split>),
}

/// Where a file lands, decided.
struct Landed {
    path: PathBuf,
    key: FileKey,
    /// Something is there now.
    existing: bool,
}

/// What the destination needs of one entry, or that its copy is to be
/// hashed first.
///
/// Everything about where the entry lands is decided here, before
/// anything of it is written: a single file sent onto an existing
/// directory lands inside it (as `cp FILE DIR` does), a file never
/// replaces a directory (refused in one line, as `cp` refuses it), and
/// missing directories above the destination are made.
fn decide(s: &Session, entry: &Entry) -> Result<Decided, MoveError> {
    // The source walks only what the filters include; an entry they
    // exclude is a source that does not keep them (or lies).
    if !s
        .filters
        .reachable(entry.path.as_bytes(), entry.kind == EntryKind::Dir)
    {
        return Err(MoveError::Protocol(format!(
            "the source offered {}, which the task's --include/--exclude exclude",
            entry.path
        )));
    }
    let mut path = s.destination(entry)?;
    let key = file_key(entry.item, entry.path.as_bytes());
    if s.cap.options.delete {
        s.lock().seen.insert(key);
    }
    if entry.kind == EntryKind::Dir {
        match s.disk.fs.stat(&path) {
            Ok(m) if m.kind == FsKind::Dir => {}
            Ok(_) => {
                return Err(MoveError::Unusable {
                    side: Side::Destination,
                    reason: format!("{} exists and is not a directory", ferry_paths::show(&path)),
                });
            }
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                let (mut made, this) = match s.disk.make_dir(&path, entry.mode) {
                    Err(MoveError::Missing(_)) => {
                        let parents = s.disk.make_parents(parent_of(&path))?;
                        let this = s.disk.make_dir(&path, entry.mode)?;
                        (parents, this)
                    }
                    done => (Vec::new(), done?),
                };
                if this {
                    made.push(path);
                }
                s.created(made);
            }
            Err(e) => return Err(MoveError::fs(Side::Destination, e)),
        }
        return Ok(Decided::Need(None));
    }
    // A split file counts once, with its own shard (its bytes as each
    // node receives them); the hub sums the shards.
    let split = s.split_of(entry);
    let counts = split.as_ref().is_none_or(|sp| sp.owner);
    if counts {
        let mut st = s.lock();
        st.counters.files += 1;
        st.counters.bytes = st.counters.bytes.saturating_add(entry.size);
    }
    // Only the node that committed a file journals it: a split file is
    // decided by what stands on the shared filesystem, as every node of
    // it sees it alike.
    let committed = split.is_none()
        && s.recovered
            .lock()
            .map(|r| r.committed.contains(&key))
            .unwrap_or(false);
    if committed {
        // An earlier attempt of this task moved it.
        let mut st = s.lock();
        st.counters.files_transferred += 1;
        st.counters.bytes_transferred = st.counters.bytes_transferred.saturating_add(entry.size);
        return Ok(Decided::Need(Some(Need::Skip)));
    }
    let in_new_dir = path
        .parent()
        .is_some_and(|dir| s.lock().created_dirs.contains(dir));
    let lookup = |path: &Path| match s.disk.fs.stat(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(MoveError::fs(Side::Destination, e)),
    };
    let mut existing = if in_new_dir { None } else { lookup(&path)? };
    let into = s.name_inside_a_directory(entry);
    if let plan::Landing::Inside(name) = plan::landing(existing.map(|m| m.kind), into.as_deref()) {
        path.push(name);
        existing = lookup(&path)?;
    }
    if plan::landing(existing.map(|m| m.kind), None) == plan::Landing::OntoDirectory {
        return Err(MoveError::Unusable {
            side: Side::Destination,
            reason: format!(
                "{} is a directory; a file does not replace a directory",
                ferry_paths::show(&path)
            ),
        });
    }
    let verdict = plan::verdict(
        s.cap.options.sync_level,
        entry,
        existing.as_ref(),
        s.cap.attempt,
    );
    if verdict == Verdict::Skip {
        if counts {
            let mut st = s.lock();
            st.counters.files_skipped += 1;
            st.counters.bytes_skipped = st.counters.bytes_skipped.saturating_add(entry.size);
        }
        return Ok(Decided::Need(Some(Need::Skip)));
    }
    let landed = Landed {
        path,
        key,
        existing: existing.is_some(),
    };
    if verdict == Verdict::CompareDigest {
        // The hub splits no file at checksum level; a retry compares one it
        // finds as the source has it, on every node alike.
        return Ok(Decided::Compare(landed, split));
    }
    if let Some(split) = split {
        return admit_part(s, entry, landed, split).map(Decided::Need);
    }
    admit(s, entry, landed, None).map(Decided::Need)
}

/// [`admit`] for this node's part of a split file: the file's shared
/// temporary of this attempt, made or opened (never resumed: an earlier
/// attempt's parts may have been anyone's), and this part's chunks.
fn admit_part(
    s: &Session,
    entry: &Entry,
    landed: Landed,
    split: Split,
) -> Result<Option<Need>, MoveError> {
    let Landed {
        path,
        key,
        existing,
    } = landed;
    let temp = s.disk.split(&path, s.cap.attempt, split.count, split.index);
    if let Ok(mut r) = s.recovered.lock() {
        r.partial.remove(&key);
    }
    // An earlier attempt's kept temporary becomes this attempt's shared
    // one, unless a node of this attempt made that first.
    let kept = match s.cap.attempt > 1 {
        true => s
            .disk
            .adopt_kept(&path, &temp, s.cap.attempt, entry.size, entry.mtime_ns),
        false => Vec::new(),
    };
    let file = match DataFile::create(&s.disk, &path, entry.size) {
        Err(MoveError::Missing(_)) if !existing => {
            s.created(s.disk.make_parents(parent_of(&path))?);
            DataFile::create(&s.disk, &path, entry.size)?
        }
        done => done?,
    };
    // Of this part's chunks, those the kept records name that are still
    // there, hashed again: in, not sent. Any other this part holds (a
    // record that came late, or none), with a source that compares them:
    // this side's digests, at most `data::MAX_HELD`, counted once the
    // source's agree (`Need::SendUnlessHeld`).
    let mut hashes = vec![None; chunk_count(entry.size) as usize];
    let mut kept_bytes = 0u64;
    let mut unconfirmed = Vec::new();
    if s.cap.attempt > 1 {
        let on_disk = file.get(&s.disk)?;
        let (verified, held) = rehash_kept(
            &on_disk,
            entry.size,
            s.disk.algorithm,
            &kept,
            s.rehash,
            split.range.clone(),
        );
        for (index, digest) in verified {
            hashes[index as usize] = Some(digest);
            kept_bytes += chunk_len(entry.size, index);
        }
        for (index, digest) in held {
            hashes[index as usize] = Some(digest);
            unconfirmed.push(index);
        }
    }
    let missing: Vec<u32> = split
        .range
        .clone()
        .filter(|i| hashes[*i as usize].is_none())
        .collect();
    if kept_bytes > 0 || !unconfirmed.is_empty() {
        tracing::info!(file = %String::from_utf8_lossy(entry.path.as_bytes()), held = split.range.len() - missing.len() - unconfirmed.len(), compared = unconfirmed.len(), of = split.range.len(), "chunks of this part an earlier attempt kept, hashed again: not sent again");
    }
    tracing::debug!(file = %String::from_utf8_lossy(entry.path.as_bytes()), chunks = ?split.range, owner = split.owner, "a part of a split file");
    let mut st = s.lock();
    let temp_path = temp.path().to_path_buf();
    st.counters.bytes_transferred = st.counters.bytes_transferred.saturating_add(kept_bytes);
    let need = match unconfirmed.is_empty() {
        true => Need::Send {
            missing: ChunkSet::Only(missing.clone()),
        },
        false => Need::SendUnlessHeld {
            missing: ChunkSet::Only(missing.clone()),
            held: unconfirmed
                .iter()
                .filter_map(|&i| Some((i, to_hex(&hashes[i as usize]?))))
                .collect(),
        },
    };
    st.files.insert(
        entry.id,
        InFlight {
            outstanding: missing.len() as u32,
            hashes,
            unconfirmed,
            counted: kept_bytes,
            split: Some(split),
            // Another node may have made the temporary: nothing in it
            // is known to be a hole.
            ..InFlight::admitted(entry, key, path, temp_path, file, false)
        },
    );
    Ok(Some(need))
}

/// This node's part of a split file that a retry finds where it lands with
/// its source's size and modification time (probably an earlier attempt's
/// commit, which only the committing node's journal names): the digest of
/// the whole copy goes to the source, which answers `Unchanged` if it is
/// the same, and otherwise sends its part. Every node of the attempt
/// hashes the same copy and its source node the same file, so all decide
/// alike: either the file stays as it is, or every part moves and the
/// file's own node commits it. The part's temporary is made only if a
/// chunk comes.
fn admit_part_compared(
    s: &Session,
    entry: &Entry,
    landed: Landed,
    split: Split,
    digest: [u8; 32],
) -> Option<Need> {
    let Landed { path, key, .. } = landed;
    let temp = s.disk.split(&path, s.cap.attempt, split.count, split.index);
    let file = DataFile::later(&s.disk, &path, entry.size);
    let mut st = s.lock();
    st.files.insert(
        entry.id,
        InFlight {
            outstanding: split.range.len() as u32,
            awaiting_verdict: true,
            split: Some(split),
            ..InFlight::admitted(entry, key, path, temp.path().to_path_buf(), file, false)
        },
    );
    Some(Need::SendUnlessDigest {
        digest: to_hex(&digest),
    })
}

/// What the destination needs of a file that lands at `landed`, given the
/// digest of the copy there to compare (`--sync-level checksum`): its
/// temporary file (a resumed one, or one to make) and the chunks to send.
fn admit(
    s: &Session,
    entry: &Entry,
    landed: Landed,
    compare: Option<[u8; 32]>,
) -> Result<Option<Need>, MoveError> {
    let Landed {
        path,
        key,
        existing,
    } = landed;
    let temp_path = plan::temp_path(&path, &s.cap.task_id);
    let mut partial = s
        .recovered
        .lock()
        .ok()
        .and_then(|mut r| r.partial.remove(&key));
    // A file an earlier attempt split over the nodes and kept: what its
    // nodes knew of its chunks, whichever node's journal names it.
    if s.cap.attempt > 1 && splittable(entry.size) {
        let kept = s.disk.read_kept(&path, entry.size, entry.mtime_ns);
        if !kept.is_empty() {
            let chunks = partial.get_or_insert_with(Vec::new);
            let journaled: HashSet<u32> = chunks.iter().map(|(i, _)| *i).collect();
            chunks.extend(kept.into_iter().filter(|(i, _)| !journaled.contains(i)));
        }
    }
    let count = chunk_count(entry.size);
    let mut hashes = vec![None; count as usize];
    // A temporary of an earlier attempt may hold chunks written after its
    // last checkpoint, named in no journal line (nor, if it was begun
    // then, itself): with a source that compares them it is looked for.
    let look_unjournaled = s.rehash && s.cap.attempt > 1 && compare.is_none();
    let resumed = if partial.is_some() || look_unjournaled {
        s.disk.resume_temp(
            &path,
            entry.size,
            &partial.unwrap_or_default(),
            look_unjournaled,
        )
    } else {
        None
    };
    let mut unconfirmed = Vec::new();
    let (file, fresh) = match resumed {
        Some((file, verified, held)) => {
            for (i, h) in verified {
                if let Some(slot) = hashes.get_mut(i as usize) {
                    *slot = Some(h);
                }
            }
            for (i, h) in held {
                if let Some(slot @ None) = hashes.get_mut(i as usize) {
                    *slot = Some(h);
                    unconfirmed.push(i);
                }
            }
            (DataFile::opened(&s.disk, &path, file), false)
        }
        // At checksum level the source most likely finds the file
        // unchanged: its temporary is made only if a chunk comes, not
        // created and removed again for every file of a re-sync.
        None if compare.is_some() => (DataFile::later(&s.disk, &path, entry.size), true),
        None => {
            let file = match DataFile::create(&s.disk, &path, entry.size) {
                // Its directory is missing (a file into a new tree):
                // made, as `cp --parents` and Globus do.
                Err(MoveError::Missing(_)) if !existing => {
                    s.created(s.disk.make_parents(parent_of(&path))?);
                    DataFile::create(&s.disk, &path, entry.size)?
                }
                done => done?,
            };
            (file, true)
        }
    };
    let missing: Vec<u32> = (0..count)
        .filter(|i| hashes[*i as usize].is_none())
        .collect();
    // What an earlier attempt moved and kept counts as moved by this task.
    let kept: u64 = (0..count)
        .filter(|i| hashes[*i as usize].is_some() && !unconfirmed.contains(i))
        .map(|i| chunk_len(entry.size, i))
        .sum();
    let need = match compare {
        Some(digest) => Need::SendUnlessDigest {
            digest: to_hex(&digest),
        },
        None if !unconfirmed.is_empty() => Need::SendUnlessHeld {
            missing: ChunkSet::Only(missing.clone()),
            held: unconfirmed
                .iter()
                .filter_map(|&i| Some((i, to_hex(&hashes[i as usize]?))))
                .collect(),
        },
        None if missing.len() == count as usize => Need::Send {
            missing: ChunkSet::All,
        },
        None => Need::Send {
            missing: ChunkSet::Only(missing.clone()),
        },
    };
    let mut st = s.lock();
    st.files.insert(
        entry.id,
        InFlight {
            hashes,
            outstanding: missing.len() as u32,
            unconfirmed,
            awaiting_verdict: matches!(need, Need::SendUnlessDigest { .. }),
            counted: kept,
            ..InFlight::admitted(entry, key, path, temp_path, file, fresh)
        },
    );
    st.counters.bytes_transferred = st.counters.bytes_transferred.saturating_add(kept);
    if let Need::SendUnlessDigest { .. } = need {
        // Whatever the source decides, it sends every chunk.
        let st = &mut *st;
        if let Some(f) = st.files.get_mut(&entry.id) {
            f.outstanding = count;
            f.hashes = vec![None; count as usize];
            f.unconfirmed.clear();
            f.recount(&mut st.counters);
        }
    }
    Ok(Some(need))
}

/// The digests of existing destination files of the given sizes (for
/// --sync-level checksum), by the attempt's algorithm (the source
/// compares each with its own by the same), in order. Files of one chunk
/// hash side by side on every core; a larger one has its chunks spread
/// over the cores, one file at a time.
fn digests_of(
    fs: &RootedFs,
    algorithm: ChecksumAlgorithm,
    files: &[(&Path, u64)],
) -> Vec<Result<[u8; 32], MoveError>> {
    let one = |(path, size): &(&Path, u64), threads| {
        let file = fs
            .open_read(path)
            .map_err(|e| MoveError::fs(Side::Destination, e))?;
        let hashes = read_chunk_hashes(algorithm, &file, *size, threads)
            .map_err(|e| MoveError::os(Side::Destination, "read", path, e))?;
        Ok(file_digest(algorithm, hashes.iter()))
    };
    let small = map_parallel(files, hashing_threads(), |f| {
        (f.1 <= CHUNK_SIZE).then(|| one(f, 1))
    });
    small
        .into_iter()
        .zip(files)
        .map(|(digest, f)| digest.unwrap_or_else(|| one(f, hashing_threads())))
        .collect()
}

/// The source's word on the chunks a kept temporary held unjournaled: the
/// `rejected` ones differ from its own and are on their way (unless here
/// already); the rest match its digests and count as held, to be
/// journaled at the next checkpoint like any received chunk.
fn settle_held(f: &mut InFlight, rejected: &[u32], counters: &mut TaskCounters) {
    if f.unconfirmed.is_empty() {
        return;
    }
    let mut differ = 0usize;
    for index in rejected {
        if let Some(at) = f.unconfirmed.iter().position(|i| i == index) {
            f.unconfirmed.swap_remove(at);
            if let Some(slot) = f.hashes.get_mut(*index as usize) {
                *slot = None;
            }
            f.outstanding += 1;
            differ += 1;
        }
    }
    let held: u64 = f.unconfirmed.iter().map(|&i| chunk_len(f.size, i)).sum();
    tracing::debug!(
        file = %String::from_utf8_lossy(&f.rel),
        held = f.unconfirmed.len(),
        differ,
        "unjournaled chunks of a kept temporary compared with the source's"
    );
    if differ > 0 {
        tracing::info!(
            temp = %f.temp_path.display(),
            differ,
            "unjournaled chunks of a kept temporary differ from the source's; they are sent again"
        );
    }
    f.unjournaled.append(&mut f.unconfirmed);
    f.counted += held;
    counters.bytes_transferred = counters.bytes_transferred.saturating_add(held);
}

/// The length of chunk `index` of a file of `size` bytes.
fn chunk_len(size: u64, index: u32) -> u64 {
    size.saturating_sub(u64::from(index) * CHUNK_SIZE)
        .min(CHUNK_SIZE)
}

/// The chunks of a temporary of `size` bytes that hold data: it was
/// made at full length as a hole, so with `SEEK_DATA` those never written
/// are passed over (a filesystem without it reports all as data).
fn written_chunks(file: &File, size: u64) -> Vec<u32> {
    use nix::unistd::{Whence, lseek};
    let mut chunks = Vec::new();
    let mut at: i64 = 0;
    let end = i64::try_from(size).unwrap_or(i64::MAX);
    while at < end {
        let Ok(data) = lseek(file, at, Whence::SeekData) else {
            break;
        };
        let hole = lseek(file, data, Whence::SeekHole).unwrap_or(end).min(end);
        if hole <= data {
            break;
        }
        let (first, last) = (data as u64 / CHUNK_SIZE, (hole as u64 - 1) / CHUNK_SIZE);
        for index in first..=last {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if chunks.last() != Some(&index) {
                chunks.push(index);
            }
        }
        at = hole;
    }
    chunks
}

fn receive_chunk(s: &Session, header: ChunkHeader, data: Vec<u8>) -> Result<(), MoveError> {
    let Some(_working) = s.working() else {
        return Ok(());
    };
    let (file, offset, fresh, temp, generation, last) = {
        let mut st = s.lock();
        let Some(f) = st.files.get_mut(&header.file) else {
            // A file discarded meanwhile (changed at the source): drop its data.
            return Ok(());
        };
        f.awaiting_verdict = false;
        let slot = f
            .hashes
            .get(header.index as usize)
            .ok_or_else(|| MoveError::Protocol("chunk index out of range".into()))?;
        if f.split
            .as_ref()
            .is_some_and(|sp| !sp.range.contains(&header.index))
        {
            return Err(MoveError::Protocol(format!(
                "chunk {} of {} is another node's part",
                header.index,
                ferry_paths::show(&f.final_path)
            )));
        }
        // A held chunk the source sent: it differs from the source's.
        if slot.is_some() && !f.unconfirmed.contains(&header.index) {
            st.counters.bytes_resent = st.counters.bytes_resent.saturating_add(data.len() as u64);
            return Ok(());
        }
        let offset = u64::from(header.index) * CHUNK_SIZE;
        let expected = (f.size - offset).min(CHUNK_SIZE) as usize;
        if data.len() != expected {
            return Err(MoveError::Protocol(format!(
                "chunk {} of {} has the wrong length",
                header.index,
                ferry_paths::show(&f.final_path)
            )));
        }
        let file = f.file.clone();
        // The file's last chunk: see below. A split file's other parts
        // may still be written: its own shard sets them at its commit.
        let last = (f.outstanding == 1 && f.split.is_none()).then_some((f.mode, f.mtime_ns));
        (
            file,
            offset,
            f.fresh,
            f.temp_path.clone(),
            f.generation,
            last,
        )
    };
    if chunk_hash(s.disk.algorithm, &data) != header.digest {
        Metrics::add(&s.ctx.metrics.chunk_verify_failures, 1);
        return Err(MoveError::Protocol(format!(
            "a chunk of {} failed verification in transit",
            ferry_paths::show(&temp)
        )));
    }
    if !(fresh && data.iter().all(|b| *b == 0)) {
        // One writer at a time: concurrent writes to one file spin on its
        // inode lock in the kernel, burning the CPU hashing needs.
        let _gate = s.write_gate.lock();
        let written = at_once(|| {
            let fd = file.get(&s.disk)?;
            s.disk
                .faults
                .check(Op::Write, &temp)
                .and_then(|()| fd.write_all_at(&data, offset))
                .map_err(|e| MoveError::os(Side::Destination, "write", &temp, e))?;
            // Past the open-files bound this descriptor closes now: the
            // complete file gets its mode and mtime while it is open, not
            // opened again for them at its commit.
            match last {
                Some((mode, mtime_ns)) if !file.is_held() => {
                    s.disk.set_attributes(&temp, &fd, mode, mtime_ns)?;
                    file.settle();
                    Ok(())
                }
                _ => Ok(()),
            }
        });
        match written {
            Ok(()) => {}
            Err(e) if e.disposition() == Disposition::RetryFile => {
                return start_over(s, header.file, generation, e);
            }
            Err(e) => return Err(e),
        }
    }
    let len = data.len() as u64;
    Metrics::add(&s.ctx.metrics.received_bytes, len);
    crate::buffers::give(data);
    let mut guard = s.lock();
    let st = &mut *guard;
    let counters = &mut st.counters;
    match st.files.get_mut(&header.file) {
        Some(f) if f.generation == generation && f.unconfirmed.contains(&header.index) => {
            f.unconfirmed.retain(|i| *i != header.index);
            f.hashes[header.index as usize] = Some(header.digest);
            f.unjournaled.push(header.index);
            f.counted += len;
            counters.bytes_transferred = counters.bytes_transferred.saturating_add(len);
        }
        Some(f)
            if f.generation == generation
                && f.hashes
                    .get(header.index as usize)
                    .is_some_and(Option::is_none) =>
        {
            f.hashes[header.index as usize] = Some(header.digest);
            f.outstanding = f.outstanding.saturating_sub(1);
            f.unjournaled.push(header.index);
            f.counted += len;
            counters.bytes_transferred = counters.bytes_transferred.saturating_add(len);
        }
        // Another writer filled it meanwhile, or the file started over.
        _ => counters.bytes_resent = counters.bytes_resent.saturating_add(len),
    }
    complete_if_ready(s, st, header.file)
}

/// Starts a file over after an I/O error in its temporary file (whose
/// blocks are suspect): a fresh temporary file, nothing of the old one
/// journaled, and every chunk asked for again. A file that failed so
/// before fails the attempt with `cause`.
fn start_over(s: &Session, id: u64, generation: u32, cause: MoveError) -> Result<(), MoveError> {
    let mut guard = s.lock();
    let st = &mut *guard;
    let Some(f) = st.files.get_mut(&id) else {
        return Ok(());
    };
    if f.generation != generation {
        // Another chunk's failure started it over already.
        return Ok(());
    }
    // A split file's temporary holds other nodes' parts: it is not
    // started over here, the attempt is.
    if f.retries >= MAX_FILE_RETRIES || f.split.is_some() {
        return Err(cause);
    }
    tracing::warn!(error = %cause, "starting the file over");
    f.recount(&mut st.counters);
    s.disk.remove_temp(&f.final_path);
    let file = s.disk.create_temp_retried(&f.final_path, f.size)?;
    let count = f.hashes.len();
    f.file = DataFile::opened(&s.disk, &f.final_path, file);
    f.generation += 1;
    f.retries += 1;
    f.fresh = true;
    f.hashes = vec![None; count];
    f.outstanding = count as u32;
    f.source_digest = None;
    f.awaiting_verdict = false;
    f.unjournaled.clear();
    f.unconfirmed.clear();
    let (key, rel) = (f.key, f.rel.clone());
    drop(guard);
    if let Ok(mut j) = s.journal.lock()
        && let Some(j) = j.as_mut()
    {
        j.discarded(key);
    }
    s.ctx.report(
        &s.cap.task_id,
        s.cap.attempt,
        TaskReport::Resent {
            path: ferry_proto::wire_path::WirePath::from_bytes(rel),
            reason: cause.to_string(),
        },
    );
    let _ = s.to_source.send(Message::Needs {
        needs: vec![(
            id,
            Need::Send {
                missing: ChunkSet::All,
            },
        )],
    });
    Ok(())
}

/// Verifies a file whose chunks and source digest are all in, then hands it
/// to the committer, or asks for it again.
fn complete_if_ready(s: &Session, st: &mut State, id: u64) -> Result<(), MoveError> {
    let Some(f) = st.files.get(&id) else {
        return Ok(());
    };
    if f.outstanding > 0
        || f.source_digest.is_none()
        || f.awaiting_verdict
        || !f.unconfirmed.is_empty()
    {
        return Ok(());
    }
    // A part of a split file: its own chunks, whose digest is the one
    // its source sent for them.
    let chunks = match &f.split {
        Some(split) => &f.hashes[split.range.start as usize..split.range.end as usize],
        None => &f.hashes[..],
    };
    let mut hashes = Vec::with_capacity(chunks.len());
    for h in chunks {
        hashes.push(h.ok_or_else(|| MoveError::Internal("a chunk went missing".into()))?);
    }
    let Some(mut f) = st.files.remove(&id) else {
        return Ok(());
    };
    tracing::debug!(id, "file complete");
    let digest = file_digest(s.disk.algorithm, hashes.iter());
    if Some(digest) == f.source_digest {
        // What the README's `b3sum` or `sha256sum` pipeline gives for it.
        tracing::debug!(file = %String::from_utf8_lossy(&f.rel), algorithm = %s.disk.algorithm, digest = %to_hex(&digest), "verified");
        st.pending_commits += 1;
        let sender = s
            .commit_tx
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| MoveError::Internal("the session is ending".into()))?;
        sender
            .send(Ready { file: f })
            .map_err(|_| MoveError::Internal("the committer stopped".into()))?;
        return Ok(());
    }
    let path = String::from_utf8_lossy(&f.rel).into_owned();
    if f.resends >= MAX_RESENDS {
        return Err(MoveError::DidNotVerify {
            path: f.final_path.clone(),
            resends: MAX_RESENDS,
        });
    }
    f.resends += 1;
    s.ctx.report(
        &s.cap.task_id,
        s.cap.attempt,
        TaskReport::Resent {
            path: ferry_proto::wire_path::WirePath::from_bytes(f.rel.clone()),
            reason: "file digest mismatch".into(),
        },
    );
    tracing::warn!(file = %path, "digest mismatch; asking for the file again");
    let count = f.hashes.len();
    let (outstanding, missing) = f.all_chunks();
    f.hashes = vec![None; count];
    f.outstanding = outstanding;
    f.source_digest = None;
    f.unjournaled.clear();
    f.unconfirmed.clear();
    f.recount(&mut st.counters);
    // What the first sending wrote stays where the second may skip a zero
    // chunk: nothing here is a hole any more.
    f.fresh = false;
    if let Ok(mut j) = s.journal.lock()
        && let Some(j) = j.as_mut()
    {
        j.discarded(f.key);
    }
    st.files.insert(id, f);
    let _ = s.to_source.send(Message::Needs {
        needs: vec![(id, Need::Send { missing })],
    });
    Ok(())
}

/// Makes chunks of partial files durable and journals them (see
/// [`Disk::checkpoint`]); a failure fails the attempt.
fn checkpoint_partials(s: &Session) {
    let pending: Vec<Partial> = {
        let mut st = s.lock();
        // A split file's part is not resumed (see `admit_part`): nothing
        // of it is journaled.
        for f in st.files.values_mut().filter(|f| f.split.is_some()) {
            f.unjournaled.clear();
        }
        st.files
            .values_mut()
            .filter(|f| !f.unjournaled.is_empty())
            .map(|f| {
                let chunks = f
                    .unjournaled
                    .drain(..)
                    .filter_map(|i| f.hashes.get(i as usize).copied().flatten().map(|h| (i, h)))
                    .collect();
                Partial {
                    key: f.key,
                    file: f.file.clone(),
                    temp_path: f.temp_path.clone(),
                    chunks,
                }
            })
            .collect()
    };
    if let Err(e) = s.disk.checkpoint(&s.journal, pending) {
        s.fail(e);
    }
}

/// Chunks of a partial file written since its last checkpoint.
#[derive(Debug)]
struct Partial {
    key: FileKey,
    file: DataFile,
    temp_path: PathBuf,
    chunks: ChunkHashes,
}

/// Commits verified files in batches (see [`Disk::commit`]). A part of
/// a split file is made durable and its sidecar left ([`Disk::write_part`]);
/// a split file of this node's own shard waits, without holding up the
/// others, until every other part is in ([`Disk::gather_parts`]), then is
/// committed like any file.
fn committer(
    s: Arc<Session>,
    ready: std::sync::mpsc::Receiver<Ready>,
    runtime: tokio::runtime::Handle,
) {
    use std::sync::mpsc::RecvTimeoutError;
    // Each with when its wait (re)started and the shared temporary's
    // modification time then.
    let mut awaiting_parts: Vec<(Ready, std::time::Instant, Option<std::time::SystemTime>)> =
        Vec::new();
    let written_at = |r: &Ready| {
        r.file
            .file
            .get(&s.disk)
            .ok()
            .and_then(|f| f.metadata().ok())
            .and_then(|m| m.modified().ok())
    };
    loop {
        let first = if awaiting_parts.is_empty() {
            match ready.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            }
        } else {
            match ready.recv_timeout(PART_POLL) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut batch: Vec<Ready> = first.into_iter().collect();
        while !batch.is_empty() && batch.len() < 512 {
            match ready.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut finished = 0usize;
        let mut whole = Vec::with_capacity(batch.len());
        for r in batch {
            match r.file.split.as_ref().map(|split| split.owner) {
                None => whole.push(r),
                // Its own part's sidecar too: should the attempt end
                // before the file commits, the node that keeps the file
                // for the retry records every finished part's digests.
                Some(true) => match r
                    .file
                    .split
                    .as_ref()
                    .map(|split| s.disk.write_part(&s.cap, &r.file, split))
                {
                    Some(Err(e)) => {
                        s.fail(e);
                        finished += 1;
                    }
                    _ => {
                        let at = written_at(&r);
                        awaiting_parts.push((r, std::time::Instant::now(), at));
                    }
                },
                Some(false) => {
                    let Some(split) = &r.file.split else {
                        continue;
                    };
                    match s.disk.write_part(&s.cap, &r.file, split) {
                        Ok(()) => {
                            tracing::debug!(file = %String::from_utf8_lossy(&r.file.rel), "part of a split file written")
                        }
                        Err(e) => s.fail(e),
                    }
                    finished += 1;
                }
            }
        }
        let mut still = Vec::with_capacity(awaiting_parts.len());
        for (r, since, at) in awaiting_parts.drain(..) {
            let Some(split) = &r.file.split else {
                continue;
            };
            match s.disk.gather_parts(&s.cap, &r.file, split) {
                Ok(Some(digest)) => {
                    tracing::debug!(file = %String::from_utf8_lossy(&r.file.rel), parts = split.count, algorithm = %s.disk.algorithm, digest = %to_hex(&digest), "split file verified");
                    whole.push(r);
                }
                Ok(None) if since.elapsed() < PART_WAIT => still.push((r, since, at)),
                // The other nodes still write into the shared temporary
                // (a slower part of a large file): another wait.
                Ok(None) if written_at(&r) != at => {
                    let now = written_at(&r);
                    still.push((r, std::time::Instant::now(), now));
                }
                Ok(None) => {
                    s.fail(MoveError::SplitFile(format!(
                        "the other nodes' parts of {} made no progress in {}s",
                        ferry_paths::show(&r.file.final_path),
                        PART_WAIT.as_secs()
                    )));
                    finished += 1;
                }
                Err(e) => {
                    s.fail(e);
                    finished += 1;
                }
            }
        }
        awaiting_parts = still;
        let n = whole.len();
        if n > 0 {
            tracing::debug!(n, "committing");
            match s.disk.commit(&s.journal, &whole) {
                Ok(()) => {
                    Metrics::add(&s.ctx.metrics.received_files, n as u64);
                    for ready in &whole {
                        crate::served::file(
                            &s.cap.task_id,
                            s.cap.destination_grant.as_ref(),
                            "write",
                            &ready.file.final_path,
                        );
                        if ready.file.split.is_some() {
                            s.disk.drop_split(&ready.file.final_path, false, None);
                        }
                        if s.cap.attempt > 1 {
                            let split = ready.file.split.is_some();
                            s.disk
                                .sweep_parts(&ready.file.final_path, ready.file.size, split);
                        }
                    }
                    s.lock().counters.files_transferred += n as u64;
                }
                Err(e) => s.fail(e),
            }
        }
        if n + finished > 0 {
            let mut st = s.lock();
            st.pending_commits = st.pending_commits.saturating_sub(n + finished);
            let batches_wait = !st.waiting.is_empty();
            drop(st);
            // Room was made: batches held back for it are answered now,
            // elsewhere (at checksum level answering hashes, and commits
            // must not wait for that).
            if batches_wait && !s.answer_scheduled.swap(true, Ordering::AcqRel) {
                let s = s.clone();
                runtime.spawn_blocking(move || {
                    // Cleared first: room made from now on schedules
                    // another look, and `answer_waiting` re-checks the
                    // room after each batch it answers.
                    s.answer_scheduled.store(false, Ordering::Release);
                    if let Some(_working) = s.working()
                        && let Err(e) = answer_waiting(&s)
                    {
                        s.fail(e);
                    }
                });
            }
            s.wake.notify_waiters();
        }
    }
}

/// A temporary file's descriptor, held while the session has room for it
/// ([`data_files_budget`]) and otherwise opened for each use and closed
/// after it. Clones share it.
#[derive(Debug, Clone)]
struct DataFile(Arc<DataSlot>);

#[derive(Debug)]
struct DataSlot {
    /// The temporary's target: the temporary is reached by it.
    target: PathBuf,
    state: Mutex<DataState>,
    /// Its mode and mtime are set already.
    settled: AtomicBool,
    /// The session's count of held descriptors, this one's included.
    held: Arc<OpenData>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
enum DataState {
    /// Counted in the endpoint's open-files gauge while held.
    Held { file: Arc<File>, _gauge: Held },
    /// On disk, its descriptor closed.
    Closed,
    /// Not created yet: made at full length (a hole) when first needed.
    Later { size: u64 },
}

impl DataFile {
    /// An opened temporary, held if there is room.
    fn opened(disk: &Disk, target: &Path, file: File) -> Self {
        let slot = DataSlot {
            target: target.to_path_buf(),
            state: Mutex::new(DataState::Closed),
            settled: AtomicBool::new(false),
            held: disk.open_data.clone(),
            metrics: disk.metrics.clone(),
        };
        let mut state = lock(&slot.state);
        *state = slot.hold(Arc::new(file));
        drop(state);
        DataFile(Arc::new(slot))
    }

    /// A temporary of `size` bytes for `target`, created now if there is
    /// room to hold it, else when first needed.
    fn create(disk: &Disk, target: &Path, size: u64) -> Result<Self, MoveError> {
        if disk.open_data.count.load(Ordering::Relaxed) < disk.open_data.max {
            let file = disk.create_temp_retried(target, size)?;
            return Ok(Self::opened(disk, target, file));
        }
        Ok(Self::later(disk, target, size))
    }

    /// A temporary of `size` bytes for `target`, created when first needed.
    fn later(disk: &Disk, target: &Path, size: u64) -> Self {
        DataFile(Arc::new(DataSlot {
            target: target.to_path_buf(),
            state: Mutex::new(DataState::Later { size }),
            settled: AtomicBool::new(false),
            held: disk.open_data.clone(),
            metrics: disk.metrics.clone(),
        }))
    }

    /// Whether its temporary is on disk (made by this attempt).
    fn is_made(&self) -> bool {
        !matches!(&*lock(&self.0.state), DataState::Later { .. })
    }

    fn is_held(&self) -> bool {
        matches!(&*lock(&self.0.state), DataState::Held { .. })
    }

    /// Its mode and mtime are set (see [`Disk::set_attributes`]).
    fn settle(&self) {
        self.0.settled.store(true, Ordering::Relaxed);
    }

    fn settled(&self) -> bool {
        self.0.settled.load(Ordering::Relaxed)
    }

    /// Its descriptor: the one held, or the temporary opened (or created)
    /// now, held if there is room. One not held is closed when the caller
    /// drops it.
    fn get(&self, disk: &Disk) -> Result<Arc<File>, MoveError> {
        let slot = &*self.0;
        let mut state = lock(&slot.state);
        let file = match &*state {
            DataState::Held { file, .. } => return Ok(file.clone()),
            DataState::Closed => disk
                .fs
                .open_temporary(&disk.temporary(&slot.target))
                .map_err(|e| MoveError::fs(Side::Destination, e))?,
            DataState::Later { size } => {
                match disk.create_temp_retried(&slot.target, *size) {
                    // Its directory went missing meanwhile: made, as when
                    // created at once.
                    Err(MoveError::Missing(_)) => {
                        disk.make_parents(parent_of(&slot.target))?;
                        disk.create_temp_retried(&slot.target, *size)?
                    }
                    done => done?,
                }
            }
        };
        let file = Arc::new(file);
        *state = slot.hold(file.clone());
        Ok(file)
    }
}

impl DataSlot {
    /// `Held` if the session has room for one more descriptor, else `Closed`.
    fn hold(&self, file: Arc<File>) -> DataState {
        if self.held.count.fetch_add(1, Ordering::Relaxed) < self.held.max {
            DataState::Held {
                file,
                _gauge: self.metrics.open_file(),
            }
        } else {
            self.held.count.fetch_sub(1, Ordering::Relaxed);
            DataState::Closed
        }
    }
}

impl Drop for DataSlot {
    fn drop(&mut self) {
        if matches!(&*lock(&self.state), DataState::Held { .. }) {
            self.held.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A session's disk side: the rooted filesystem, what received entries
/// get, which created directories are not durable yet, the temporaries
/// this attempt has, and (in tests) injected failures. Apart from the
/// network side, so a test drives commits over a real directory.
#[derive(Debug)]
struct Disk {
    fs: RootedFs,
    attributes: Attributes,
    faults: Faults,
    /// Directories this attempt created whose entries in their parents are
    /// not durable yet: a file committed beneath one makes them durable
    /// first. Past [`UNSYNCED_DIRS_KEPT`] all are made durable at once.
    unsynced_dirs: Mutex<HashSet<PathBuf>>,
    /// The task whose temporaries these are (their names carry its id).
    task_id: String,
    /// Targets whose temporary this attempt made (or took over from an
    /// earlier attempt) and has neither committed nor removed; `true` once
    /// a journal line names it (see [`Disk::keep`]).
    temporaries: Mutex<HashMap<PathBuf, bool>>,
    /// The attempt's digests' algorithm (see `ferry_proto::data::digest_algorithm`).
    algorithm: ChecksumAlgorithm,
    /// Where its journal syncs are counted.
    metrics: Arc<Metrics>,
    /// Temporary files' descriptors held now (see [`DataFile`]).
    open_data: Arc<OpenData>,
    /// Targets of files split over nodes that this attempt writes a part
    /// of: their shared temporary, how many parts they have and which one
    /// is this node's.
    splits: Mutex<HashMap<PathBuf, (Temporary, u32, u32)>>,
    /// Until when a split retry waits for the attempt before it to keep
    /// its split files ([`Disk::adopt_kept`]): set at the first wait.
    kept_until: std::sync::OnceLock<std::time::Instant>,
}

impl Disk {
    fn new(fs: RootedFs, attributes: Attributes, faults: Faults, task_id: &str) -> Self {
        Self {
            fs,
            attributes,
            faults,
            unsynced_dirs: Mutex::default(),
            task_id: task_id.to_string(),
            temporaries: Mutex::default(),
            algorithm: ChecksumAlgorithm::Sha256,
            metrics: Arc::default(),
            open_data: Arc::new(OpenData {
                count: AtomicUsize::new(0),
                max: data_files_budget(),
            }),
            splits: Mutex::default(),
            kept_until: std::sync::OnceLock::new(),
        }
    }

    /// Counts its journal syncs in `metrics` (the endpoint's).
    fn counting(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// Digests by `algorithm` (an attempt's; SHA-256 unless told).
    fn hashing(self, algorithm: ChecksumAlgorithm) -> Self {
        Self { algorithm, ..self }
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        match self.unsynced_dirs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn temporaries(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, bool>> {
        match self.temporaries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The temporary of `target` in this task (in this attempt, for a
    /// split file).
    fn temporary(&self, target: &Path) -> Temporary {
        if let Some((temp, _, _)) = lock(&self.splits).get(target) {
            return temp.clone();
        }
        Temporary::new(target, &self.task_id)
    }

    /// Makes `target` a file split into `count` parts in `attempt`, of
    /// which this node writes part `index`: its temporary is the one every
    /// node of the attempt names alike (`.ferry.NAME.TAG.aATTEMPT.part`).
    fn split(&self, target: &Path, attempt: u32, count: u32, index: u32) -> Temporary {
        let temp = Temporary::new(target, &self.task_id).labelled(&format!("a{attempt}"));
        lock(&self.splits).insert(target.to_path_buf(), (temp.clone(), count, index));
        temp
    }

    /// The sidecar of part `index` of a split file whose temporary is `temp`.
    fn sidecar(temp: &Temporary, index: u32) -> Temporary {
        temp.labelled(&format!("s{index}"))
    }

    /// Removes every part's sidecar of a split file, and its shared
    /// temporary if still there; the target is no longer split. With
    /// `keep`, the temporary is not removed but becomes the target's
    /// plain temporary of the task, kept for the next attempt like any
    /// (journaled by name): what every node wrote into it is verified
    /// chunks (or a chunk cut short by a node's end), which that attempt
    /// compares with its source's digests before counting any
    /// (`Need::SendUnlessHeld`), so a lost node costs only its chunks in
    /// flight. Each node that keeps it leaves beside it what it knew of
    /// the file's chunks ([`KeptChunks`]: `own`, its digests of a part it
    /// had not finished, and, on the node that renamed the temporary,
    /// every finished part's sidecar), so the retry's nodes take those
    /// chunks as held once they have hashed them again; without `keep`
    /// those records go too. Returns whether anything was there.
    fn drop_split(&self, target: &Path, keep: bool, own: Option<&OwnPart>) -> bool {
        let Some((temp, count, index)) = lock(&self.splits).remove(target) else {
            return false;
        };
        let mut removed = false;
        let mut names: Vec<Temporary> = (0..count).map(|i| Self::sidecar(&temp, i)).collect();
        if keep {
            let plain = Temporary::new(target, &self.task_id);
            match self.fs.rename_temporary(&temp, &plain) {
                Ok(()) => {
                    self.temporaries()
                        .entry(target.to_path_buf())
                        .or_insert(false);
                    self.record_kept(target, index, own, Some((&temp, count)));
                    removed = true;
                }
                // Another node of the attempt kept it already (which
                // recorded the finished parts), or it was committed.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                    self.record_kept(target, index, own, None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot keep the temporary of a split file");
                    names.push(temp);
                }
            }
        } else {
            names.push(temp);
            names.extend((0..KEPT_RECORDS).map(|i| self.kept_record(target, i)));
        }
        for t in names {
            match self.fs.remove_temporary(&t) {
                Ok(()) => removed = true,
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove a temporary file"),
            }
        }
        removed
    }

    /// [`Disk::drop_split`] for every split file of this attempt not
    /// committed here, with this node's digests of the parts it had not
    /// finished (by target); how many had something there.
    fn drop_splits(&self, keep: bool, own: &HashMap<PathBuf, OwnPart>) -> usize {
        let targets: Vec<PathBuf> = lock(&self.splits).keys().cloned().collect();
        targets
            .iter()
            .filter(|t| self.drop_split(t, keep, own.get(*t)))
            .count()
    }

    /// An earlier attempt's kept temporary of `target` becomes `temp`, a
    /// split file's shared temporary of this attempt, unless something has
    /// that name already (a node of this attempt made it, or took it
    /// first); the digests its record names for this file version
    /// ([`Disk::read_kept`]) when it was taken, by this node or another,
    /// else none (a fresh temporary holds none of them).
    fn adopt_kept(
        &self,
        target: &Path,
        temp: &Temporary,
        attempt: u32,
        size: u64,
        mtime_ns: i64,
    ) -> Vec<(u32, [u8; 32])> {
        let plain = Temporary::new(target, &self.task_id);
        // The nodes of the attempt before this one may be stopping still
        // (the hub starts the next once it heard of the end): their shared
        // temporary is kept (renamed) by the first of them to settle.
        // Taken over while they still wrote into it, a chunk could change
        // under this attempt's feet, so this waits for it, a while.
        let before = plain.labelled(&format!("a{}", attempt.saturating_sub(1)));
        while self.fs.open_temporary(&before).is_ok() {
            // One wait for the whole attempt, not one for each file.
            let until = *self
                .kept_until
                .get_or_init(|| std::time::Instant::now() + KEPT_WITHIN);
            if std::time::Instant::now() >= until {
                tracing::warn!(temp = %before.path().display(), "the attempt before this one never kept its split file; its chunks are sent again");
                return Vec::new();
            }
            std::thread::sleep(PART_POLL);
        }
        match self.fs.adopt_temporary(&plain, temp) {
            Ok(()) => {
                tracing::info!(temp = %temp.path().display(), "an earlier attempt's kept temporary taken up");
            }
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {}
            Err(e) => {
                tracing::debug!(error = %e, "an earlier attempt's kept temporary is not taken up");
                return Vec::new();
            }
        }
        self.read_kept(target, size, mtime_ns)
    }

    /// The record of what part `index`'s node knew of a kept split file's
    /// chunks ([`KeptChunks`]), beside its kept temporary.
    fn kept_record(&self, target: &Path, index: u32) -> Temporary {
        Temporary::new(target, &self.task_id).labelled(&format!("kept{index}"))
    }

    /// Writes this node's record of a split file just kept
    /// ([`Disk::drop_split`]), of part `index`: `own`'s digests and, with
    /// `parts` (the attempt's shared temporary and its number of parts),
    /// those in every part's sidecar, over those of an earlier record of
    /// the same file version. Best effort: a record lost or torn costs
    /// only chunks sent again.
    fn record_kept(
        &self,
        target: &Path,
        index: u32,
        own: Option<&OwnPart>,
        parts: Option<(&Temporary, u32)>,
    ) {
        use std::io::{Read, Write};
        let mut version = own.map(|o| (o.size, o.mtime_ns));
        let mut known: std::collections::BTreeMap<u32, String> = own
            .map(|o| o.digests.iter().map(|(i, h)| (*i, to_hex(h))).collect())
            .unwrap_or_default();
        let (temp, count) = match parts {
            Some((temp, count)) => (Some(temp), count),
            None => (None, 0),
        };
        for part_index in 0..count {
            let Some(Ok(file)) =
                temp.map(|t| self.fs.open_temporary(&Self::sidecar(t, part_index)))
            else {
                continue;
            };
            let mut body = Vec::new();
            // Until a part says the file's size: the largest split.
            let largest = ferry_proto::task::MAX_SPLIT_CHUNKS_LARGE * CHUNK_SIZE;
            let limit = SplitPart::max_len(version.map_or(largest, |(size, _)| size));
            if file.take(limit).read_to_end(&mut body).is_err() {
                continue;
            }
            let Ok(part) = serde_json::from_slice::<SplitPart>(&body) else {
                continue;
            };
            let (size, mtime_ns) = *version.get_or_insert((part.size, part.mtime_ns));
            if !part.matches(
                &self.task_id,
                part.attempt,
                part_index,
                count,
                size,
                mtime_ns,
            ) {
                continue;
            }
            let range = ferry_proto::task::chunk_range(
                part_index,
                count,
                ferry_proto::task::chunks_of(size),
            );
            known.extend(range.zip(part.digests));
        }
        let Some((size, mtime_ns)) = version else {
            return;
        };
        if known.is_empty() {
            return;
        }
        for (chunk, digest) in self.read_record(&self.kept_record(target, index), size, mtime_ns) {
            known.entry(chunk).or_insert_with(|| to_hex(&digest));
        }
        let record = KeptChunks {
            task_id: self.task_id.clone(),
            size,
            mtime_ns,
            digests: known.into_iter().collect(),
        };
        let name = self.kept_record(target, index);
        let written = serde_json::to_vec(&record)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                let _ = self.fs.remove_temporary(&name);
                let mut out = self
                    .fs
                    .create_temporary(&name, 0o600)
                    .map_err(|e| e.to_string())?;
                out.write_all(&body)
                    .and_then(|()| out.sync_all())
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => {
                tracing::debug!(temp = %name.path().display(), chunks = record.digests.len(), "what the attempt knew of a kept split file recorded")
            }
            Err(e) => {
                tracing::warn!(temp = %name.path().display(), error = %e, "cannot record what the attempt knew of a kept split file; its chunks are compared or sent again")
            }
        }
    }

    /// The digests the records of a kept split file name (those of every
    /// node that kept it: [`Disk::record_kept`]), of this file version
    /// (`size`, `mtime_ns`); nothing if there are none.
    fn read_kept(&self, target: &Path, size: u64, mtime_ns: i64) -> Vec<(u32, [u8; 32])> {
        let mut known: HashMap<u32, [u8; 32]> = HashMap::new();
        for index in 0..KEPT_RECORDS {
            known.extend(self.read_record(&self.kept_record(target, index), size, mtime_ns));
        }
        let mut known: Vec<(u32, [u8; 32])> = known.into_iter().collect();
        known.sort_unstable_by_key(|(i, _)| *i);
        known
    }

    /// The digests one kept record names, if it is of this file version.
    fn read_record(&self, name: &Temporary, size: u64, mtime_ns: i64) -> Vec<(u32, [u8; 32])> {
        use std::io::Read;
        let Ok(file) = self.fs.open_temporary(name) else {
            return Vec::new();
        };
        let mut body = Vec::new();
        if file
            .take(KeptChunks::max_len(size))
            .read_to_end(&mut body)
            .is_err()
        {
            return Vec::new();
        }
        let Ok(record) = serde_json::from_slice::<KeptChunks>(&body) else {
            return Vec::new();
        };
        if !record.matches(&self.task_id, size, mtime_ns) {
            return Vec::new();
        }
        let count = ferry_proto::task::chunks_of(size);
        record
            .digests
            .iter()
            .filter(|(i, _)| u64::from(*i) < count)
            .filter_map(|(i, hex)| Some((*i, from_hex(hex)?)))
            .collect()
    }

    /// Removes what earlier attempts' split parts of `target` (of `size`
    /// bytes) left beside it: a node that went away mid-attempt (kill -9)
    /// leaves its part's sidecar, or the shared temporary, and no journal
    /// names them. Looked for only where one can be (a file large enough
    /// to be split, in a retry). With `plain`, the file was committed
    /// from a split temporary: a plain one an earlier attempt kept of it
    /// is of no use any more either.
    fn sweep_parts(&self, target: &Path, size: u64, plain: bool) {
        if !splittable(size) {
            return;
        }
        let Some(dir) = target.parent() else {
            return;
        };
        let base = Temporary::new(target, &self.task_id);
        if plain {
            match self.fs.remove_temporary(&base) {
                Ok(()) => {
                    tracing::info!(temp = %base.path().display(), "removed a temporary an earlier attempt kept")
                }
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove a temporary file"),
            }
        }
        let Some(stem) = base.name().as_bytes().strip_suffix(b".part") else {
            return;
        };
        let Ok(entries) = self.fs.read_dir(dir) else {
            return;
        };
        for entry in entries {
            let name = entry.name.as_bytes();
            let Some(labels) = name
                .strip_prefix(stem)
                .and_then(|rest| rest.strip_prefix(b"."))
                .and_then(|rest| rest.strip_suffix(b".part"))
            else {
                continue;
            };
            // `aN` (a shared temporary), `aN.sM` (a sidecar) or `keptM`
            // (what a node knew of a kept one) only.
            let labels: Vec<&[u8]> = labels.split(|b| *b == b'.').collect();
            let shaped = |label: &[u8], first: u8| {
                label.len() > 1 && label[0] == first && label[1..].iter().all(u8::is_ascii_digit)
            };
            let temp = match labels.as_slice() {
                [kept] if kept.starts_with(b"kept") && kept[4..].iter().all(u8::is_ascii_digit) => {
                    base.labelled(&String::from_utf8_lossy(kept))
                }
                [a] if shaped(a, b'a') => base.labelled(&String::from_utf8_lossy(a)),
                [a, sm] if shaped(a, b'a') && shaped(sm, b's') => base
                    .labelled(&String::from_utf8_lossy(a))
                    .labelled(&String::from_utf8_lossy(sm)),
                _ => continue,
            };
            match self.fs.remove_temporary(&temp) {
                Ok(()) => {
                    tracing::info!(temp = %temp.path().display(), "removed what an earlier attempt's split file left")
                }
                Err(e) => tracing::warn!(error = %e, "cannot remove a temporary file"),
            }
        }
    }

    /// This node's part of a split file is in and verified: made durable,
    /// then its sidecar written (and made durable) for the node that
    /// commits the file.
    fn write_part(&self, cap: &Capability, f: &InFlight, split: &Split) -> Result<(), MoveError> {
        use std::io::Write;
        let file = f.file.get(self)?;
        self.faults
            .check(Op::SyncFile, &f.temp_path)
            .and_then(|()| file.sync_data())
            .map_err(on_disk("sync", &f.temp_path))?;
        let part = SplitPart {
            task_id: cap.task_id.clone(),
            attempt: cap.attempt,
            shard: split.index,
            count: split.count,
            size: f.size,
            mtime_ns: f.mtime_ns,
            digests: f.hashes[split.range.start as usize..split.range.end as usize]
                .iter()
                .map(|h| h.map(|h| to_hex(&h)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| MoveError::Internal("a chunk went missing".into()))?,
        };
        let body = serde_json::to_vec(&part).map_err(|e| MoveError::Internal(e.to_string()))?;
        let sidecar = Self::sidecar(&self.temporary(&f.final_path), split.index);
        let err = |e| MoveError::fs(Side::Destination, e);
        let mut out = match self.fs.create_temporary(&sidecar, 0o600) {
            Ok(out) => out,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
                self.fs.remove_temporary(&sidecar).map_err(err)?;
                self.fs.create_temporary(&sidecar, 0o600).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        out.write_all(&body)
            .and_then(|()| out.sync_all())
            .map_err(on_disk("write", sidecar.path()))
    }

    /// Every other part of a split file this node commits, read from
    /// their sidecars: `None` while one is missing (or half written);
    /// else the file's digest over all its chunks' digests in order,
    /// each part verified by the node that wrote it against its source's
    /// digests, and all of the file as this node's source offered it. A
    /// sidecar that is complete but not this attempt's part fails the
    /// attempt.
    fn gather_parts(
        &self,
        cap: &Capability,
        f: &InFlight,
        split: &Split,
    ) -> Result<Option<[u8; 32]>, MoveError> {
        use std::io::Read;
        let temp = self.temporary(&f.final_path);
        let mut digests = f.hashes.clone();
        for index in (0..split.count).filter(|i| *i != split.index) {
            let sidecar = Self::sidecar(&temp, index);
            let file = match self.fs.open_temporary(&sidecar) {
                Ok(file) => file,
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
                Err(e) => return Err(MoveError::fs(Side::Destination, e)),
            };
            let mut body = Vec::new();
            file.take(SplitPart::max_len(f.size))
                .read_to_end(&mut body)
                .map_err(on_disk("read", sidecar.path()))?;
            let Ok(part) = serde_json::from_slice::<SplitPart>(&body) else {
                return Ok(None);
            };
            let fits = part.matches(
                &cap.task_id,
                cap.attempt,
                index,
                split.count,
                f.size,
                f.mtime_ns,
            );
            let range = ferry_proto::task::chunk_range(
                index,
                split.count,
                ferry_proto::task::chunks_of(f.size),
            );
            if !fits {
                return Err(MoveError::SplitFile(format!(
                    "part {index} of {} is not this attempt's (its source file changed between the nodes' reads?)",
                    ferry_paths::show(&f.final_path)
                )));
            }
            for (slot, hex) in digests[range.start as usize..range.end as usize]
                .iter_mut()
                .zip(&part.digests)
            {
                *slot = Some(from_hex(hex).ok_or_else(|| {
                    MoveError::SplitFile(format!(
                        "part {index} of {} names a malformed digest",
                        ferry_paths::show(&f.final_path)
                    ))
                })?);
            }
        }
        let all = digests
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| MoveError::Internal("a chunk of a split file went missing".into()))?;
        Ok(Some(file_digest(self.algorithm, all.iter())))
    }

    /// A fresh temporary file of `size` bytes (a hole) for `target`,
    /// replacing a stale one (no journal vouches for it). An I/O error is
    /// worth one more try: nothing of the file is there yet.
    fn create_temp_retried(&self, target: &Path, size: u64) -> Result<File, MoveError> {
        match at_once(|| self.create_temp(target, size)) {
            Err(e) if e.disposition() == Disposition::RetryFile => {
                tracing::warn!(error = %e, "creating a temporary file failed; trying once more");
                at_once(|| self.create_temp(target, size))
            }
            done => done,
        }
    }

    fn create_temp(&self, target: &Path, size: u64) -> Result<File, MoveError> {
        let temp = self.temporary(target);
        let err = |e| MoveError::fs(Side::Destination, e);
        self.faults
            .check(Op::CreateTemp, temp.path())
            .map_err(|e| MoveError::os(Side::Destination, "create", temp.path(), e))?;
        if lock(&self.splits).contains_key(target) {
            return self.open_split_temp(&temp, size);
        }
        // Looking for a stale temporary only when creating fails saves two
        // syscalls per file.
        let file = match self.fs.create_temporary(&temp, 0o600) {
            Ok(f) => f,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
                self.fs.remove_temporary(&temp).map_err(err)?;
                self.fs.create_temporary(&temp, 0o600).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        self.temporaries()
            .entry(target.to_path_buf())
            .or_insert(false);
        // Full length up front: chunks land anywhere, and zero chunks stay holes.
        file.set_len(size)
            .map_err(|e| MoveError::os(Side::Destination, "size", temp.path(), e))?;
        Ok(file)
    }

    /// The shared temporary of a split file: made by whichever node comes
    /// first, opened by the others, never replaced (it holds their parts).
    /// Its length only grows to `size`: every node of the attempt sizes it
    /// alike, so none cuts another's chunks off.
    fn open_split_temp(&self, temp: &Temporary, size: u64) -> Result<File, MoveError> {
        let err = |e| MoveError::fs(Side::Destination, e);
        let file = match self.fs.create_temporary(temp, 0o600) {
            Ok(f) => f,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
                self.fs.open_temporary(temp).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let len = file
            .metadata()
            .map_err(|e| MoveError::os(Side::Destination, "stat", temp.path(), e))?
            .len();
        if len > size {
            return Err(MoveError::SplitFile(format!(
                "{} is longer than the file split over the nodes",
                ferry_paths::show(temp.path())
            )));
        }
        if len < size {
            file.set_len(size)
                .map_err(|e| MoveError::os(Side::Destination, "size", temp.path(), e))?;
        }
        Ok(file)
    }

    /// The temporary an earlier attempt kept for `target`, its journaled
    /// chunks re-hashed from disk: only those that still match count.
    /// With `unjournaled`, also this side's digests of the chunks it holds
    /// that no journal line vouches for (data written after the last
    /// checkpoint, which a kill -9 leaves in place), at most
    /// [`data::MAX_HELD`]: nothing of them counts until the source's
    /// digests agree.
    fn resume_temp(
        &self,
        target: &Path,
        size: u64,
        chunks: &[(u32, [u8; 32])],
        unjournaled: bool,
    ) -> Option<(File, ChunkHashes, ChunkHashes)> {
        use std::os::unix::fs::MetadataExt;
        let temp = self.temporary(target);
        let file = self.fs.open_temporary(&temp).ok()?;
        let meta = file.metadata().ok()?;
        // A temporary of this task's name that no journal line named is
        // adopted only as a plain file of its own: one linked elsewhere
        // would have its other name written through.
        if unjournaled && chunks.is_empty() && meta.nlink() != 1 {
            return None;
        }
        self.temporaries()
            .entry(target.to_path_buf())
            .or_insert(false);
        if meta.len() != size {
            return None;
        }
        let all = 0..chunk_count(size);
        let (verified, held) = rehash_kept(&file, size, self.algorithm, chunks, unjournaled, all);
        let stale = chunks.len() - verified.len();
        if stale > 0 {
            tracing::warn!(
                temp = %temp.path().display(),
                journaled = chunks.len(),
                stale,
                "journaled chunks no longer match their hashes on disk; they are sent again"
            );
        }
        if !held.is_empty() {
            tracing::debug!(temp = %temp.path().display(), held = held.len(), journaled = verified.len(), "unjournaled chunks to compare with the source's");
        }
        Some((file, verified, held))
    }

    /// Removes the temporary of `target`, if it is there.
    fn remove_temp(&self, target: &Path) -> bool {
        // The plain temporary: a split file's shared one holds other
        // nodes' parts and goes only with [`Disk::drop_split`].
        let temp = Temporary::new(target, &self.task_id);
        // A large one may be a split file kept, with its nodes' records.
        let large = match self.fs.open_temporary(&temp) {
            Ok(file) => file.metadata().is_ok_and(|m| splittable(m.len())),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                self.temporaries().remove(target);
                return false;
            }
            // Not a file of ours (a symlink at its name): removed as such.
            Err(_) => false,
        };
        let removed = match self.fs.remove_temporary(&temp) {
            Ok(()) => {
                if large {
                    for index in 0..KEPT_RECORDS {
                        let _ = self.fs.remove_temporary(&self.kept_record(target, index));
                    }
                }
                true
            }
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove a temporary file");
                false
            }
        };
        self.temporaries().remove(target);
        removed
    }

    /// Names in the journal every temporary it does not name yet (written
    /// with its next sync), so that one kept when an attempt stops can be
    /// removed when the task is over, with no attempt running. Returns the
    /// targets, to be marked once the journal is durable.
    fn name_temporaries(&self, journal: &mut Journal) -> Vec<PathBuf> {
        let unnamed: Vec<PathBuf> = self
            .temporaries()
            .iter()
            .filter(|(_, named)| !**named)
            .map(|(target, _)| target.clone())
            .collect();
        for target in &unnamed {
            journal.temporary(target);
        }
        unnamed
    }

    fn named(&self, targets: Vec<PathBuf>) {
        let mut temporaries = self.temporaries();
        for target in targets {
            if let Some(named) = temporaries.get_mut(&target) {
                *named = true;
            }
        }
    }

    /// The attempt stopped, and a later one may resume its temporaries (a
    /// fault the hub retries, a pause, a newer attempt): they stay, every
    /// one named in the journal. Returns how many there are.
    fn keep(&self, journal: &Mutex<Option<Journal>>) -> Result<usize, MoveError> {
        let mut guard = journal.lock().map_err(poisoned)?;
        let Some(journal) = guard.as_mut() else {
            return Ok(0);
        };
        let unnamed = self.name_temporaries(journal);
        self.sync_journal(journal)?;
        self.named(unnamed);
        Ok(self.temporaries().len())
    }

    /// Nothing will resume this task's temporaries (it succeeded, failed,
    /// or is over): this attempt's and those earlier attempts kept for
    /// `earlier` targets are removed, and so is the journal. Returns how
    /// many were removed.
    fn discard(&self, journal: &Mutex<Option<Journal>>, earlier: &HashSet<PathBuf>) -> usize {
        let mut targets: HashSet<PathBuf> = self.temporaries().keys().cloned().collect();
        targets.extend(earlier.iter().cloned());
        let removed = targets.iter().filter(|t| self.remove_temp(t)).count();
        let taken = match journal.lock() {
            Ok(mut j) => j.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(journal) = taken {
            let path = journal.path().to_path_buf();
            if let Err(e) = journal.finish() {
                tracing::warn!(journal = %path.display(), error = %e, "cannot remove the task journal");
            }
        }
        removed
    }

    /// Makes the directories above `dir` and `dir` itself where missing,
    /// outermost first, each decided by the policy (so beneath an allowed
    /// rule only) and given [`Attributes::parent_dir_mode`]. Returns those
    /// it made.
    fn make_parents(&self, dir: &Path) -> Result<Vec<PathBuf>, MoveError> {
        let mut existing = None;
        // Bounded by the path's depth.
        for ancestor in dir.ancestors() {
            match self.fs.stat(ancestor) {
                // A symlink is resolved beneath its rule's root by the
                // creation below, which fails if it leads nowhere usable.
                Ok(m) if matches!(m.kind, FsKind::Dir | FsKind::Symlink) => {
                    existing = Some(ancestor);
                    break;
                }
                Ok(_) => {
                    return Err(MoveError::Unusable {
                        side: Side::Destination,
                        reason: format!(
                            "{} exists and is not a directory",
                            ferry_paths::show(ancestor)
                        ),
                    });
                }
                // Not there, or a file above it: look further up.
                Err(e)
                    if matches!(
                        e.io_kind(),
                        Some(std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
                    ) => {}
                Err(e) => return Err(MoveError::fs(Side::Destination, e)),
            }
        }
        let Some(existing) = existing else {
            return Ok(Vec::new());
        };
        let made = plan::dirs_to_make(existing, dir);
        for path in &made {
            self.make_dir_once(path, self.attributes.parent_dir_mode())?;
        }
        Ok(made)
    }

    /// Creates a directory the source has, with the mode it gets here;
    /// whether this call made it (see [`Disk::make_dir_once`]).
    fn make_dir(&self, path: &Path, source_mode: u32) -> Result<bool, MoveError> {
        self.make_dir_once(path, self.attributes.dir_mode(source_mode))
    }

    /// [`Disk::make_dir_exact`], unless a directory is at `path` by the
    /// time it tries: made meanwhile (by another node of a spread
    /// attempt, which makes every directory too). Whether this call made it.
    fn make_dir_once(&self, path: &Path, mode: u32) -> Result<bool, MoveError> {
        match self.make_dir_exact(path, mode) {
            Ok(()) => Ok(true),
            Err(MoveError::Io(f))
                if f.source.kind() == std::io::ErrorKind::AlreadyExists
                    && self.fs.stat(path).is_ok_and(|m| m.kind == FsKind::Dir) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a directory with exactly `mode`, to be made durable before
    /// anything relies on it.
    fn make_dir_exact(&self, path: &Path, mode: u32) -> Result<(), MoveError> {
        at_once(|| {
            self.faults
                .check(Op::MakeDir, path)
                .map_err(|e| MoveError::os(Side::Destination, "create directory", path, e))?;
            self.fs
                .mkdir_exact(path, mode)
                .map_err(|e| MoveError::fs(Side::Destination, e))
        })?;
        let mut unsynced = self.unsynced();
        unsynced.insert(path.to_path_buf());
        if unsynced.len() < UNSYNCED_DIRS_KEPT {
            return Ok(());
        }
        let all: Vec<PathBuf> = unsynced.iter().cloned().collect();
        drop(unsynced);
        self.sync_dirs(HashSet::new(), all)
    }

    /// fsyncs `contents` (directories whose entries must be durable), and
    /// the parent of every directory this attempt created that lies on the
    /// way up from them or from `entries` (directories whose own entry must
    /// be durable), so nothing relies on an entry that is not on disk.
    fn sync_dirs(
        &self,
        contents: HashSet<PathBuf>,
        entries: impl IntoIterator<Item = PathBuf>,
    ) -> Result<(), MoveError> {
        let mut sync = contents.clone();
        let mut made_durable = HashSet::new();
        {
            let unsynced = self.unsynced();
            for start in contents.into_iter().chain(entries) {
                let mut dir = start.as_path();
                while unsynced.contains(dir) && made_durable.insert(dir.to_path_buf()) {
                    let Some(parent) = dir.parent() else { break };
                    sync.insert(parent.to_path_buf());
                    dir = parent;
                }
            }
        }
        for dir in &sync {
            at_once(|| {
                self.faults
                    .check(Op::SyncDir, dir)
                    .map_err(|e| MoveError::os(Side::Destination, "sync directory", dir, e))?;
                self.fs
                    .sync_dir(dir)
                    .map_err(|e| MoveError::fs(Side::Destination, e))
            })?;
        }
        let mut unsynced = self.unsynced();
        for dir in &made_durable {
            unsynced.remove(dir);
        }
        Ok(())
    }

    /// Makes partial files durable and journals their new chunks, and
    /// names in the journal the temporaries it does not name yet (see
    /// [`Disk::keep`]: one a crash leaves stays removable). A failed
    /// fsync is an error, and what it was to vouch for is not journaled:
    /// the data may be lost, and a later fsync of the same file would not
    /// report it again.
    fn checkpoint(
        &self,
        journal: &Mutex<Option<Journal>>,
        pending: Vec<Partial>,
    ) -> Result<(), MoveError> {
        let mut guard = journal.lock().map_err(poisoned)?;
        let Some(journal) = guard.as_mut() else {
            return Ok(());
        };
        let unnamed = self.name_temporaries(journal);
        if pending.is_empty() && unnamed.is_empty() {
            return Ok(());
        }
        for partial in pending {
            let file = partial.file.get(self)?;
            self.faults
                .check(Op::SyncFile, &partial.temp_path)
                .and_then(|()| file.sync_data())
                .map_err(|e| MoveError::os(Side::Destination, "sync", &partial.temp_path, e))?;
            for (i, h) in partial.chunks {
                journal.chunk(partial.key, i, &h);
            }
        }
        self.sync_journal(journal)?;
        self.named(unnamed);
        Ok(())
    }

    /// Makes what was journaled durable.
    fn sync_journal(&self, journal: &mut Journal) -> Result<(), MoveError> {
        self.faults
            .check(Op::SyncJournal, journal.path())
            .and_then(|()| journal.sync())
            .inspect(|()| Metrics::add(&self.metrics.journal_syncs, 1))
            .map_err(|e| {
                MoveError::os(
                    Side::Destination,
                    "sync the task journal",
                    journal.path(),
                    e,
                )
            })
    }

    /// Gives a complete temporary file the mode (and mtime) it is to have.
    fn set_attributes(
        &self,
        temp_path: &Path,
        file: &File,
        source_mode: u32,
        mtime_ns: i64,
    ) -> Result<(), MoveError> {
        let mode = self.attributes.file_mode(source_mode);
        self.faults
            .check(Op::SetMode, temp_path)
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
            .map_err(on_disk("set the mode of", temp_path))?;
        if self.attributes.preserve_mtime {
            let mtime = UNIX_EPOCH + Duration::from_nanos(mtime_ns.max(0) as u64);
            self.faults
                .check(Op::SetMtime, temp_path)
                .and_then(|()| file.set_modified(mtime))
                .map_err(on_disk("set the mtime of", temp_path))?;
        }
        Ok(())
    }

    /// Commits verified files: mode and mtime, made durable (one fdatasync
    /// for a lone file, one syncfs per filesystem for a batch: many small
    /// files would otherwise cost a flush each), renamed, each directory
    /// fsynced once, then journaled as committed. An error leaves every
    /// file of the batch unjournaled.
    fn commit(&self, journal: &Mutex<Option<Journal>>, batch: &[Ready]) -> Result<(), MoveError> {
        // Held directories are resolved again once per commit batch.
        self.fs.next_batch();
        let faults = &self.faults;
        // A descriptor not held is closed again after its file's use.
        for Ready { file: f } in batch {
            if !f.file.settled() {
                let file = f.file.get(self)?;
                self.set_attributes(&f.temp_path, &file, f.mode, f.mtime_ns)?;
            }
        }
        if let [Ready { file: f }] = batch {
            let file = f.file.get(self)?;
            faults
                .check(Op::SyncFile, &f.temp_path)
                .and_then(|()| file.sync_data())
                .map_err(on_disk("sync", &f.temp_path))?;
        } else {
            // Files in one directory share its filesystem: one fstat per
            // directory, one descriptor kept per filesystem.
            let mut filesystems: HashMap<u64, (&InFlight, Arc<File>)> = HashMap::new();
            let mut dirs_seen = HashSet::new();
            // A file whose descriptor is held stands for its directory
            // first: none is opened again for this.
            let (held, closed): (Vec<&Ready>, Vec<&Ready>) =
                batch.iter().partition(|r| r.file.file.is_held());
            for Ready { file: f } in held.into_iter().chain(closed) {
                if !dirs_seen.insert(f.temp_path.parent()) {
                    continue;
                }
                let file = f.file.get(self)?;
                let meta = file.metadata().map_err(on_disk("stat", &f.temp_path))?;
                filesystems
                    .entry(std::os::unix::fs::MetadataExt::dev(&meta))
                    .or_insert((f, file));
            }
            for (f, file) in filesystems.values() {
                faults
                    .check(Op::SyncFilesystem, &f.temp_path)
                    .and_then(|()| nix::unistd::syncfs(&**file).map_err(std::io::Error::from))
                    .map_err(on_disk("sync the filesystem of", &f.temp_path))?;
            }
        }
        let mut dirs = HashSet::new();
        for Ready { file: f } in batch {
            at_once(|| {
                faults
                    .check(Op::Rename, &f.temp_path)
                    .map_err(on_disk("rename", &f.temp_path))?;
                self.fs
                    .commit_temporary(&self.temporary(&f.final_path))
                    .map_err(|e| MoveError::fs(Side::Destination, e))
            })?;
            self.temporaries().remove(&f.final_path);
            if let Some(parent) = f.final_path.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        self.sync_dirs(dirs, [])?;
        let mut guard = journal.lock().map_err(poisoned)?;
        let journal = guard
            .as_mut()
            .ok_or_else(|| MoveError::Internal("the task journal is closed".into()))?;
        for Ready { file: f } in batch {
            journal.committed(f.key);
        }
        self.sync_journal(journal)
    }
}

/// `--delete`: removes destination entries the source did not list,
/// deepest first, never following symlinks.
fn delete_extras(s: &Session) -> Result<(), MoveError> {
    let seen = std::mem::take(&mut s.lock().seen);
    for (item, spec) in s.cap.items.iter().enumerate() {
        if !spec.recursive {
            continue;
        }
        let root = &s.roots[item];
        let mut stack = vec![(root.clone(), Vec::<u8>::new(), false)];
        while let Some((dir, rel, emptied)) = stack.pop() {
            if emptied {
                continue;
            }
            let entries = s
                .disk
                .fs
                .read_dir(&dir)
                .map_err(|e| MoveError::fs(Side::Destination, e))?;
            for entry in entries {
                let name = entry.name.as_bytes();
                if plan::is_temp_name(name) {
                    continue;
                }
                let child_rel = if rel.is_empty() {
                    name.to_vec()
                } else {
                    [rel.as_slice(), b"/", name].concat()
                };
                let child = dir.join(&entry.name);
                // Excluded: never deleted, and (a directory) not looked in.
                if !s
                    .filters
                    .included(&child_rel, entry.metadata.kind == FsKind::Dir)
                {
                    continue;
                }
                let listed = seen.contains(&file_key(item as u32, &child_rel));
                match (entry.metadata.kind, listed) {
                    (FsKind::Dir, true) => stack.push((child, child_rel, false)),
                    (FsKind::Dir, false) => {
                        remove_tree(&s.disk.fs, &child, &mut |p| removed(s, p))?
                    }
                    (_, false) => {
                        s.disk
                            .fs
                            .remove_file(&child)
                            .map_err(|e| MoveError::fs(Side::Destination, e))?;
                        removed(s, &child);
                    }
                    (_, true) => {}
                }
            }
        }
    }
    Ok(())
}

/// `--delete` removed `path`: the user hears of every entry that went.
fn removed(s: &Session, path: &Path) {
    crate::served::file(
        &s.cap.task_id,
        s.cap.destination_grant.as_ref(),
        "delete",
        path,
    );
    s.ctx.report(
        &s.cap.task_id,
        s.cap.attempt,
        TaskReport::Deleted {
            path: ferry_proto::wire_path::WirePath::from(path),
        },
    );
}

/// Removes the tree at `path`, each entry after what it holds, telling
/// `removed` of each once it is gone.
fn remove_tree(
    fs: &RootedFs,
    path: &Path,
    removed: &mut dyn FnMut(&Path),
) -> Result<(), MoveError> {
    let err = |e| MoveError::fs(Side::Destination, e);
    let mut stack = vec![(path.to_path_buf(), false)];
    while let Some((dir, emptied)) = stack.pop() {
        if emptied {
            fs.remove_dir(&dir).map_err(err)?;
            removed(&dir);
            continue;
        }
        stack.push((dir.clone(), true));
        for entry in fs.read_dir(&dir).map_err(err)? {
            let child = dir.join(&entry.name);
            if entry.metadata.kind == FsKind::Dir {
                stack.push((child, false));
            } else {
                fs.remove_file(&child).map_err(err)?;
                removed(&child);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Recovered;
    use ferry_paths::Policy;
    use std::io::Write;

    const TASK: &str = "11111111-2222-4333-8444-555555555555";

    /// A directory in a home, a task journal, and the disk side of a
    /// session receiving into that directory.
    struct Bench {
        _tmp: tempfile::TempDir,
        home: PathBuf,
        state: PathBuf,
        disk: Disk,
        journal: Mutex<Option<Journal>>,
    }

    fn bench(umask: u32) -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let state = tmp.path().join("state");
        let policy = Policy::from_config_paths("~/,0,1\n", &home, &tmp.path().join("cfg")).unwrap();
        // The top of the home: temporaries there are dot-entries directly
        // under home, which only the temporary-file operations may reach.
        let disk = Disk::new(
            RootedFs::new(Arc::new(policy)),
            Attributes {
                preserve_mode: true,
                preserve_mtime: true,
                umask,
            },
            Faults::default(),
            TASK,
        );
        let (journal, _) = Journal::open(&state, TASK, ChecksumAlgorithm::Sha256).unwrap();
        Bench {
            _tmp: tmp,
            home,
            state,
            disk,
            journal: Mutex::new(Some(journal)),
        }
    }

    impl Bench {
        /// A verified file waiting in its temporary beside `rel`.
        fn ready(&self, rel: &str, mode: u32) -> Ready {
            let final_path = self.home.join(rel);
            let temp_path = plan::temp_path(&final_path, TASK);
            let mut file = self
                .disk
                .create_temp(&final_path, rel.len() as u64)
                .unwrap();
            file.write_all(rel.as_bytes()).unwrap();
            let file = DataFile::opened(&self.disk, &final_path, file);
            let entry = Entry {
                id: 0,
                item: 0,
                path: ferry_proto::wire_path::WirePath::from_bytes(rel.as_bytes().to_vec()),
                kind: EntryKind::File,
                size: rel.len() as u64,
                mtime_ns: 1_600_000_000_000_000_000,
                mode,
            };
            let key = file_key(0, rel.as_bytes());
            Ready {
                file: InFlight {
                    hashes: Vec::new(),
                    outstanding: 0,
                    ..InFlight::admitted(&entry, key, final_path, temp_path, file, true)
                },
            }
        }

        /// What a later attempt would read back from the journal.
        fn journaled(&self) -> Recovered {
            Journal::open(&self.state, TASK, ChecksumAlgorithm::Sha256)
                .unwrap()
                .1
        }

        fn synced_dirs(&self) -> Vec<PathBuf> {
            let mut dirs: Vec<_> = self
                .disk
                .faults
                .ran()
                .into_iter()
                .filter(|(op, _)| *op == Op::SyncDir)
                .map(|(_, path)| path)
                .collect();
            dirs.sort();
            dirs
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_failed_directory_fsync_fails_the_commit_as_a_fault_and_journals_nothing() {
        let b = bench(0o022);
        std::fs::create_dir(b.home.join("d")).unwrap();
        let batch = [b.ready("d/one", 0o644), b.ready("d/two", 0o644)];
        b.disk
            .faults
            .fail(Op::SyncDir, Some(&b.home.join("d")), nix::libc::EIO, 1);
        let err = b.disk.commit(&b.journal, &batch).unwrap_err();
        assert_eq!(err.disposition().at_end(), Disposition::RetryLater, "{err}");
        assert!(err.to_string().contains("input/output error"), "{err}");
        assert!(
            b.journaled().committed.is_empty(),
            "the journal claims files whose directory entry may not be on disk"
        );
        // The same failure for a lone file.
        let lone = [b.ready("d/three", 0o644)];
        b.disk.faults.fail(Op::SyncDir, None, nix::libc::EIO, 1);
        assert!(b.disk.commit(&b.journal, &lone).is_err());
        assert!(b.journaled().committed.is_empty());
        // Once the disk is well, a commit is journaled.
        let later = [b.ready("d/four", 0o644)];
        b.disk.commit(&b.journal, &later).unwrap();
        let journaled = b.journaled().committed;
        assert!(journaled.contains(&file_key(0, b"d/four")) && journaled.len() == 1);
    }

    #[test]
    fn every_failed_sync_of_a_commit_fails_it_and_journals_nothing() {
        for op in [
            Op::SetMode,
            Op::SetMtime,
            Op::SyncFile,
            Op::SyncFilesystem,
            Op::Rename,
            Op::SyncDir,
            Op::SyncJournal,
        ] {
            let b = bench(0o022);
            let batch = if op == Op::SyncFilesystem {
                vec![b.ready("a", 0o644), b.ready("b", 0o644)]
            } else {
                vec![b.ready("a", 0o644)]
            };
            b.disk.faults.fail(op, None, nix::libc::EIO, 1);
            let err = b.disk.commit(&b.journal, &batch).unwrap_err();
            assert_eq!(
                err.disposition().at_end(),
                Disposition::RetryLater,
                "{op:?}: {err}"
            );
            assert!(b.journaled().committed.is_empty(), "{op:?}");
        }
    }

    /// Two nodes of a spread attempt make every directory: the one that
    /// comes second finds it made, which is no fault, and says it did not
    /// make it; a file in the way still is one.
    #[test]
    fn a_directory_made_meanwhile_is_no_fault() {
        let b = bench(0o022);
        assert!(b.disk.make_dir(&b.home.join("both"), 0o755).unwrap());
        assert!(!b.disk.make_dir(&b.home.join("both"), 0o755).unwrap());
        std::fs::write(b.home.join("file"), b"x").unwrap();
        assert!(b.disk.make_dir(&b.home.join("file"), 0o755).is_err());
        assert_eq!(
            b.disk.make_parents(&b.home.join("both/a/b")).unwrap().len(),
            2
        );
    }

    #[test]
    fn a_file_in_a_created_directory_makes_the_directory_durable_first() {
        let b = bench(0o022);
        b.disk.make_dir(&b.home.join("new"), 0o755).unwrap();
        b.disk.make_dir(&b.home.join("new/deeper"), 0o755).unwrap();
        b.disk
            .commit(&b.journal, &[b.ready("new/deeper/f", 0o644)])
            .unwrap();
        assert_eq!(
            b.synced_dirs(),
            vec![
                b.home.clone(),
                b.home.join("new"),
                b.home.join("new/deeper")
            ],
            "the file's directory, and the entries of both created directories"
        );
        // Once durable, only the file's own directory is synced again.
        b.disk
            .commit(&b.journal, &[b.ready("new/deeper/g", 0o644)])
            .unwrap();
        assert_eq!(b.synced_dirs().len(), 4);

        // A failure to make a created directory durable fails the commit.
        let b = bench(0o022);
        b.disk.make_dir(&b.home.join("new"), 0o755).unwrap();
        b.disk
            .faults
            .fail(Op::SyncDir, Some(&b.home), nix::libc::EIO, 1);
        assert!(
            b.disk
                .commit(&b.journal, &[b.ready("new/f", 0o644)])
                .is_err()
        );
        assert!(b.journaled().committed.is_empty());
        b.disk
            .commit(&b.journal, &[b.ready("new/g", 0o644)])
            .unwrap();
        assert_eq!(
            b.synced_dirs().iter().filter(|d| **d == b.home).count(),
            2,
            "still not durable after the failure: synced again"
        );
    }

    #[test]
    fn too_many_created_directories_are_made_durable_at_once() {
        let b = bench(0o022);
        b.disk.make_dir(&b.home.join("top"), 0o755).unwrap();
        for i in 0..UNSYNCED_DIRS_KEPT - 1 {
            b.disk
                .make_dir(&b.home.join(format!("top/{i}")), 0o755)
                .unwrap();
        }
        assert_eq!(b.synced_dirs(), vec![b.home.clone(), b.home.join("top")]);
        assert!(b.disk.unsynced().is_empty());
    }

    #[test]
    fn committed_files_and_created_directories_get_the_receiving_modes() {
        let b = bench(0o027);
        let batch = [
            b.ready("setuid", 0o4755),
            b.ready("setgid", 0o2755),
            b.ready("open", 0o666),
        ];
        b.disk.commit(&b.journal, &batch).unwrap();
        assert_eq!(mode_of(&b.home.join("setuid")), 0o750);
        assert_eq!(mode_of(&b.home.join("setgid")), 0o750);
        assert_eq!(mode_of(&b.home.join("open")), 0o640);
        b.disk.make_dir(&b.home.join("dir"), 0o3777).unwrap();
        assert_eq!(mode_of(&b.home.join("dir")), 0o750);
    }

    #[test]
    fn a_failed_fsync_of_a_partial_file_fails_the_checkpoint_and_journals_none_of_it() {
        let b = bench(0o022);
        let ready = b.ready("part", 0o644);
        let partial = |index: u32| Partial {
            key: ready.file.key,
            file: ready.file.file.clone(),
            temp_path: ready.file.temp_path.clone(),
            chunks: vec![(index, [index as u8; 32])],
        };
        b.disk.checkpoint(&b.journal, vec![partial(0)]).unwrap();
        b.disk.faults.fail(Op::SyncFile, None, nix::libc::EIO, 1);
        assert!(b.disk.checkpoint(&b.journal, vec![partial(1)]).is_err());
        b.disk.faults.fail(Op::SyncJournal, None, nix::libc::EIO, 1);
        assert!(b.disk.checkpoint(&b.journal, vec![partial(2)]).is_err());
        let journaled = b.journaled().partial;
        assert_eq!(
            journaled.get(&ready.file.key),
            Some(&vec![(0, [0; 32])]),
            "only the chunk whose fsync succeeded"
        );
    }

    #[test]
    fn past_the_open_files_bound_descriptors_close_after_each_use_and_files_still_commit() {
        let b = bench(0o022);
        let max = b.disk.open_data.max;
        assert!(max > 0 && max <= OPEN_DATA_FILES);
        let n = max + 72;
        std::fs::create_dir(b.home.join("many")).unwrap();
        let batch: Vec<Ready> = (0..n)
            .map(|i| b.ready(&format!("many/f{i}"), 0o640))
            .collect();
        assert_eq!(b.disk.open_data.count.load(Ordering::Relaxed), max);
        // Created when first needed: nothing of it is there before.
        let later = DataFile::create(&b.disk, &b.home.join("many/later"), 3).unwrap();
        assert!(temps_in(&b.home.join("many")).len() == n, "not created yet");
        later.get(&b.disk).unwrap().write_all_at(b"abc", 0).unwrap();
        assert_eq!(b.disk.open_data.count.load(Ordering::Relaxed), max);
        drop(later);
        b.disk.remove_temp(&b.home.join("many/later"));
        b.disk.commit(&b.journal, &batch).unwrap();
        for i in [0, n - 1] {
            let path = b.home.join(format!("many/f{i}"));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                format!("many/f{i}").as_bytes()
            );
            assert_eq!(mode_of(&path), 0o640);
        }
        assert!(temps_in(&b.home.join("many")).is_empty());
        drop(batch);
        assert_eq!(b.disk.open_data.count.load(Ordering::Relaxed), 0);
    }

    fn temps_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| plan::is_temp_name(n.as_bytes()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_at_the_top_of_a_home_are_committed_through_their_temporaries() {
        let b = bench(0o022);
        let batch = [b.ready("x", 0o644), b.ready("y", 0o600)];
        assert_eq!(temps_in(&b.home).len(), 2);
        b.disk.commit(&b.journal, &batch).unwrap();
        assert_eq!(std::fs::read(b.home.join("x")).unwrap(), b"x");
        assert_eq!(mode_of(&b.home.join("y")), 0o600);
        assert!(temps_in(&b.home).is_empty());
        assert!(
            b.disk.temporaries().is_empty(),
            "committed: nothing to keep"
        );
    }

    #[test]
    fn kept_temporaries_are_named_in_the_journal_and_go_once_the_task_is_over() {
        let b = bench(0o022);
        std::fs::create_dir(b.home.join("d")).unwrap();
        let kept = [b.ready("x", 0o644), b.ready("d/y", 0o644)];
        let committed = b.ready("d/z", 0o644);
        // A checkpoint names what is there so far.
        b.disk.checkpoint(&b.journal, Vec::new()).unwrap();
        b.disk.commit(&b.journal, &[committed]).unwrap();
        assert_eq!(b.disk.keep(&b.journal).unwrap(), 2);
        let named = b.journaled().temporaries;
        for f in &kept {
            assert!(named.contains(&f.file.final_path), "{named:?}");
        }
        // Another process, with only the journal: the task is over.
        let later = Disk::new(
            b.disk.fs.clone(),
            b.disk.attributes,
            Faults::default(),
            TASK,
        );
        assert_eq!(later.discard(&Mutex::new(None), &named), 2);
        assert!(temps_in(&b.home).is_empty() && temps_in(&b.home.join("d")).is_empty());
        assert_eq!(std::fs::read(b.home.join("d/z")).unwrap(), b"d/z");
        // The session's own discard removes its journal too.
        let again = b.ready("w", 0o644);
        assert_eq!(b.disk.discard(&b.journal, &HashSet::new()), 1);
        assert!(!again.file.temp_path.exists());
        assert!(!Journal::path_for(&b.state, TASK).exists());
    }

    #[test]
    fn missing_parents_are_made_with_the_receiving_mode_and_only_where_allowed() {
        let b = bench(0o027);
        let made = b.disk.make_parents(&b.home.join("new/deeper")).unwrap();
        assert_eq!(made, [b.home.join("new"), b.home.join("new/deeper")]);
        assert_eq!(mode_of(&b.home.join("new")), 0o750);
        assert_eq!(mode_of(&b.home.join("new/deeper")), 0o750);
        assert!(b.disk.make_parents(&b.home.join("new")).unwrap().is_empty());
        // Durable before a file beneath them is journaled.
        b.disk
            .commit(&b.journal, &[b.ready("new/deeper/f", 0o644)])
            .unwrap();
        assert!(b.synced_dirs().contains(&b.home), "{:?}", b.synced_dirs());
        std::fs::write(b.home.join("file"), b"").unwrap();
        let blocked = b.disk.make_parents(&b.home.join("file/sub")).unwrap_err();
        assert!(
            blocked.to_string().contains("is not a directory"),
            "{blocked}"
        );
        assert_eq!(blocked.disposition(), Disposition::FailTask);
        let outside = b
            .disk
            .make_parents(Path::new("/nonexistent-ferry-test/a/b"));
        assert!(
            matches!(outside, Err(MoveError::NotAllowed { .. })),
            "{outside:?}"
        );
        assert!(!Path::new("/nonexistent-ferry-test").exists());
    }
}
