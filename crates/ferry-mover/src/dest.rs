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

use crate::channel::{self, ChannelError, read_frame, send_message};
use crate::context::Context;
use crate::digest::{
    CHUNK_SIZE, chunk_count, chunk_hash, file_digest, from_hex, hashing_threads, read_chunk_hashes,
    to_hex,
};
use crate::journal::{ChunkHashes, FileKey, Journal, file_key};
use crate::plan::{self, Verdict};
use ferry_paths::{EntryKind as FsKind, RootedFs, resolve_endpoint_path};
use ferry_proto::data::{ChunkHeader, ChunkSet, Entry, EntryKind, Frame, Message, Need, Open};
use ferry_proto::task::{Capability, TaskCounters, TaskReport};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

/// A connecting peer has this long to open its stream.
const OPEN_WITHIN: Duration = Duration::from_secs(15);
/// A file whose digest does not match is asked for again this many times.
const MAX_RESENDS: u32 = 3;
/// How often partial files are made durable and journaled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// Chunks up to this size are verified and written on the reading task.
const INLINE_CHUNK: usize = 256 * 1024;
/// How often progress goes to the hub.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

type Stream = TlsStream<BufReader<TcpStream>>;
/// rustls reads the socket 4 KiB at a time: a buffer beneath it turns a
/// syscall per 4 KiB into one per this much.
const RECEIVE_BUFFER: usize = 256 * 1024;
/// How many created directories a session remembers (see `State::created_dirs`).
const CREATED_DIRS_KEPT: usize = 4096;

/// Sessions by task: at most one attempt per task runs here.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, SessionHandle>>,
}

#[derive(Debug)]
struct SessionHandle {
    attempt: u32,
    streams: mpsc::UnboundedSender<(u16, Stream)>,
    cancel: watch::Sender<bool>,
}

impl Sessions {
    /// Stops a task's data work here (its journal stays for a resume).
    pub fn cancel(&self, task_id: &str) {
        if let Ok(live) = self.live.lock()
            && let Some(handle) = live.get(task_id)
        {
            handle.cancel.send_replace(true);
        }
    }

    pub fn cancel_all(&self) {
        if let Ok(live) = self.live.lock() {
            for handle in live.values() {
                handle.cancel.send_replace(true);
            }
        }
    }

    pub fn active(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    fn finished(&self, task_id: &str, attempt: u32) {
        if let Ok(mut live) = self.live.lock()
            && live.get(task_id).is_some_and(|h| h.attempt == attempt)
        {
            live.remove(task_id);
        }
    }
}

/// Accepts data connections until `shutdown`.
pub async fn serve(
    ctx: Arc<Context>,
    listener: TcpListener,
    sessions: Arc<Sessions>,
    accepting: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = match ctx.identity.server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "data listener disabled");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
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
        let (ctx, sessions, acceptor, accepting) = (
            ctx.clone(),
            sessions.clone(),
            acceptor.clone(),
            accepting.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = accept_stream(ctx, sessions, acceptor, tcp, accepting).await {
                tracing::warn!(%peer, error = %e, "data connection refused");
            }
        });
    }
}

async fn accept_stream(
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    accepting: watch::Receiver<bool>,
) -> Result<(), ChannelError> {
    let mut tls = tokio::time::timeout(
        OPEN_WITHIN,
        acceptor.accept(BufReader::with_capacity(RECEIVE_BUFFER, tcp)),
    )
    .await
    .map_err(|_| ChannelError::Protocol("TLS handshake timed out".into()))??;
    let peer_id = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| ferry_setup::tls::endpoint_id_of(c))
        .ok_or_else(|| ChannelError::Protocol("the peer's certificate names no endpoint".into()))?;
    let open = match tokio::time::timeout(OPEN_WITHIN, channel::read_message(&mut tls)).await {
        Ok(Ok(Message::Open(open))) => open,
        Ok(Ok(_)) => return Err(ChannelError::Protocol("expected an open".into())),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ChannelError::Protocol("no open within the deadline".into())),
    };
    let verdict = check_open(&ctx, &open, &peer_id, *accepting.borrow());
    let capability = match verdict {
        Ok(c) => c,
        Err(reason) => {
            let _ = send_message(
                &mut tls,
                &Message::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
            let _ = tls.shutdown().await;
            return Err(ChannelError::Protocol(reason));
        }
    };
    send_message(&mut tls, &Message::Accepted).await?;
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
    let Ok(mut live) = sessions.live.lock() else {
        return;
    };
    match live.get(&cap.task_id) {
        Some(h) if h.attempt == cap.attempt => {
            let _ = h.streams.send((stream, tls));
            return;
        }
        Some(h) if h.attempt > cap.attempt => return,
        Some(h) => {
            h.cancel.send_replace(true);
        }
        None => {}
    }
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let _ = streams_tx.send((stream, tls));
    live.insert(
        cap.task_id.clone(),
        SessionHandle {
            attempt: cap.attempt,
            streams: streams_tx,
            cancel: cancel_tx,
        },
    );
    drop(live);
    tokio::spawn(async move {
        let (task_id, attempt) = (cap.task_id.clone(), cap.attempt);
        run_session(ctx, cap, streams, streams_rx, cancel_rx).await;
        sessions.finished(&task_id, attempt);
    });
}

/// A file receiving data.
#[derive(Debug)]
struct InFlight {
    key: FileKey,
    rel: Vec<u8>,
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Arc<File>,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    hashes: Vec<Option<[u8; 32]>>,
    outstanding: u32,
    unjournaled: Vec<u32>,
    source_digest: Option<[u8; 32]>,
    /// Created empty at full length: zero chunks can stay holes.
    fresh: bool,
    resends: u32,
    awaiting_verdict: bool,
}

/// A verified file on its way to its real name.
#[derive(Debug)]
struct Ready {
    file: InFlight,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<u64, InFlight>,
    counters: TaskCounters,
    manifest_done: bool,
    pending_commits: usize,
    /// Every entry of the manifest, kept only for --delete.
    seen: HashSet<FileKey>,
    /// Directories this attempt created (a bounded few): nothing can
    /// stand in them yet, so their files need no lookup first.
    created_dirs: HashSet<PathBuf>,
    failure: Option<String>,
}

struct Session {
    ctx: Arc<Context>,
    cap: Capability,
    fs: RootedFs,
    roots: Vec<PathBuf>,
    state: Mutex<State>,
    /// Taken when the task is over.
    journal: Mutex<Option<Journal>>,
    recovered: Mutex<crate::journal::Recovered>,
    /// Taken when the session ends, which lets the committer thread finish.
    commit_tx: Mutex<Option<std::sync::mpsc::Sender<Ready>>>,
    to_source: mpsc::UnboundedSender<Message>,
    wake: tokio::sync::Notify,
    write_gate: Mutex<()>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn fail(&self, message: String) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some(message);
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// Where an entry lands.
    fn destination(&self, entry: &Entry) -> Result<PathBuf, String> {
        let root = self
            .roots
            .get(entry.item as usize)
            .ok_or("entry for an unknown item")?;
        let rel = plan::relative(entry.path.as_bytes())?;
        Ok(if rel.as_os_str().is_empty() {
            root.clone()
        } else {
            root.join(rel)
        })
    }
}

async fn run_session(
    ctx: Arc<Context>,
    cap: Capability,
    streams: u16,
    mut arriving: mpsc::UnboundedReceiver<(u16, Stream)>,
    mut cancel: watch::Receiver<bool>,
) {
    let (task_id, attempt) = (cap.task_id.clone(), cap.attempt);
    let (journal, recovered) = match Journal::open(&ctx.state_dir, &task_id) {
        Ok(j) => j,
        Err(e) => {
            ctx.report(
                &task_id,
                attempt,
                TaskReport::Fault {
                    message: format!("cannot open the task journal: {e}"),
                },
            );
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
            Err(message) => {
                ctx.report(&task_id, attempt, TaskReport::Failed { message });
                return;
            }
        }
    }
    let (commit_tx, commit_rx) = std::sync::mpsc::channel();
    let (to_source, mut outgoing) = mpsc::unbounded_channel();
    let session = Arc::new(Session {
        fs: RootedFs::with_cached_roots((ctx.policy)()),
        ctx: ctx.clone(),
        cap,
        roots,
        state: Mutex::new(State::default()),
        journal: Mutex::new(Some(journal)),
        recovered: Mutex::new(recovered),
        commit_tx: Mutex::new(Some(commit_tx)),
        to_source,
        wake: tokio::sync::Notify::new(),
        write_gate: Mutex::new(()),
    });
    let committer = {
        let session = session.clone();
        std::thread::spawn(move || committer(session, commit_rx))
    };
    ctx.report(&task_id, attempt, TaskReport::Started);

    let mut writer: Option<WriteHalf<Stream>> = None;
    let mut readers = tokio::task::JoinSet::new();
    let mut connected = 0u16;
    let mut checkpoint = tokio::time::interval(CHECKPOINT_EVERY);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let outcome: Result<(), String> = loop {
        {
            let st = session.lock();
            if let Some(f) = &st.failure {
                break Err(f.clone());
            }
            if st.manifest_done && st.files.is_empty() && st.pending_commits == 0 {
                break Ok(());
            }
        }
        tokio::select! {
            arrived = arriving.recv(), if connected < streams => match arrived {
                Some((index, stream)) => {
                    connected += 1;
                    let (reader, write_half) = tokio::io::split(stream);
                    if index == 0 {
                        writer = Some(write_half);
                    }
                    let session = session.clone();
                    readers.spawn(read_stream(session, reader, index == 0));
                }
                None => break Err("the session was replaced".into()),
            },
            message = outgoing.recv() => {
                let (Some(message), Some(w)) = (message, writer.as_mut()) else { continue };
                if let Err(e) = send_message(w, &message).await {
                    break Err(format!("lost the connection to the source: {e}"));
                }
            }
            done = readers.join_next(), if !readers.is_empty() => {
                if let Some(Ok(Err(e))) = done {
                    break Err(e);
                }
                if readers.is_empty() && connected == streams {
                    let st = session.lock();
                    if !(st.manifest_done && st.files.is_empty() && st.pending_commits == 0) {
                        break Err("the source closed the connection before the end".into());
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
            _ = cancel.changed() => break Err("canceled".into()),
        }
    };
    tracing::debug!(ok = outcome.is_ok(), "session loop over");
    // Partial files stay with their journal for the next attempt.
    {
        let s = session.clone();
        let _ = tokio::task::spawn_blocking(move || checkpoint_partials(&s)).await;
    }
    let result = match outcome {
        Ok(()) => finish(&session)
            .await
            .inspect_err(|e| tracing::debug!(%e, "finish failed")),
        Err(e) => Err(e),
    };
    tracing::debug!(ok = result.is_ok(), "finished");
    let counters = session.lock().counters;
    match result {
        Ok(()) => {
            if let Some(w) = writer.as_mut() {
                let _ = send_message(w, &Message::Done { counters }).await;
                let _ = w.shutdown().await;
            }
            ctx.report(&task_id, attempt, TaskReport::Succeeded { counters });
        }
        Err(reason) if reason == "canceled" => {}
        Err(reason) => {
            if let Some(w) = writer.as_mut() {
                let _ = send_message(
                    w,
                    &Message::Abort {
                        reason: reason.clone(),
                    },
                )
                .await;
            }
            ctx.report(&task_id, attempt, TaskReport::Progress { counters });
            // "fatal: " marks what no retry fixes (a path the policy refuses,
            // a directory where a file must go); the rest is worth a retry.
            let report = match crate::fatal_message(&reason) {
                Some(message) => TaskReport::Failed {
                    message: message.to_string(),
                },
                None => TaskReport::Fault { message: reason },
            };
            ctx.report(&task_id, attempt, report);
        }
    }
    readers.abort_all();
    if let Ok(mut tx) = session.commit_tx.lock() {
        tx.take();
    }
    drop(session);
    let _ = tokio::task::spawn_blocking(move || committer.join()).await;
}

/// After the last commit: `--delete`, then the journal goes.
async fn finish(session: &Arc<Session>) -> Result<(), String> {
    let s = session.clone();
    tokio::task::spawn_blocking(move || {
        if s.cap.options.delete {
            delete_extras(&s)?;
        }
        let journal = s
            .journal
            .lock()
            .map_err(|_| "journal lock poisoned".to_string())?
            .take();
        if let Some(journal) = journal {
            journal
                .finish()
                .map_err(|e| format!("cannot remove the task journal: {e}"))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Reads one stream: the conversation on stream 0, chunks on every stream.
async fn read_stream(
    session: Arc<Session>,
    mut reader: ReadHalf<Stream>,
    conversation: bool,
) -> Result<(), String> {
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("data stream failed: {e}")),
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
                    .map_err(|e| e.to_string())??;
            }
            // Per-file messages travel with the file's data, on any stream.
            Frame::Message(m @ (Message::FileDone { .. } | Message::Unchanged { .. })) => {
                converse(&session, m)?
            }
            Frame::Message(message) if conversation => {
                let s = session.clone();
                tokio::task::spawn_blocking(move || converse(&s, message))
                    .await
                    .map_err(|e| e.to_string())??;
            }
            Frame::Message(other) => {
                return Err(format!("unexpected message on a data stream: {other:?}"));
            }
        }
        session.wake.notify_waiters();
    }
}

/// Handles one conversation message (blocking: it touches the filesystem).
fn converse(s: &Session, message: Message) -> Result<(), String> {
    match message {
        Message::Manifest { entries } => {
            tracing::debug!(entries = entries.len(), "manifest");
            let mut needs = Vec::with_capacity(entries.len());
            for entry in entries {
                if let Some(need) = decide(s, &entry)? {
                    needs.push((entry.id, need));
                }
            }
            if !needs.is_empty() {
                let _ = s.to_source.send(Message::Needs { needs });
            }
        }
        Message::FileDone { id, digest } => {
            let digest = from_hex(&digest).ok_or("malformed digest from the source")?;
            let mut st = s.lock();
            if let Some(f) = st.files.get_mut(&id) {
                f.source_digest = Some(digest);
            }
            complete_if_ready(s, &mut st, id)?;
        }
        Message::Unchanged { id } => {
            let mut st = s.lock();
            if let Some(f) = st.files.remove(&id) {
                let _ = s.fs.remove_file(&f.temp_path);
                st.counters.files_skipped += 1;
            }
        }
        Message::FileChanged { id } => {
            let mut st = s.lock();
            if let Some(f) = st.files.remove(&id) {
                let _ = s.fs.remove_file(&f.temp_path);
                if let Ok(mut j) = s.journal.lock()
                    && let Some(j) = j.as_mut()
                {
                    j.discarded(f.key);
                }
            }
        }
        Message::End { files } => {
            tracing::debug!(files, "end of manifest");
            s.lock().manifest_done = true
        }
        // A source's fatal reason keeps its "fatal: " mark, so the task fails.
        Message::Abort { reason } if reason.starts_with("fatal: ") => return Err(reason),
        Message::Abort { reason } => return Err(format!("the source gave up: {reason}")),
        other => return Err(format!("unexpected message from the source: {other:?}")),
    }
    Ok(())
}

/// What the destination needs of one entry; `None` for directories.
fn decide(s: &Session, entry: &Entry) -> Result<Option<Need>, String> {
    let path = s.destination(entry)?;
    let key = file_key(entry.item, entry.path.as_bytes());
    if s.cap.options.delete {
        s.lock().seen.insert(key);
    }
    if entry.kind == EntryKind::Dir {
        match s.fs.stat(&path) {
            Ok(m) if m.kind == FsKind::Dir => {}
            Ok(_) => {
                return Err(format!(
                    "fatal: {} exists and is not a directory",
                    path.display()
                ));
            }
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                let mode = if s.cap.options.preserve_mode {
                    entry.mode & 0o7777
                } else {
                    0o777
                };
                s.fs.mkdir(&path, mode | 0o700)
                    .map_err(|e| format!("fatal: {e}"))?;
                let mut st = s.lock();
                if st.created_dirs.len() >= CREATED_DIRS_KEPT {
                    st.created_dirs.clear();
                }
                st.created_dirs.insert(path);
            }
            Err(e) => return Err(format!("fatal: {e}")),
        }
        return Ok(None);
    }
    s.lock().counters.files += 1;
    let committed = s
        .recovered
        .lock()
        .map(|r| r.committed.contains(&key))
        .unwrap_or(false);
    if committed {
        s.lock().counters.files_skipped += 1;
        return Ok(Some(Need::Skip));
    }
    let in_new_dir = path
        .parent()
        .is_some_and(|dir| s.lock().created_dirs.contains(dir));
    let existing = if in_new_dir {
        None
    } else {
        match s.fs.stat(&path) {
            Ok(m) => Some(m),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => None,
            Err(e) => return Err(format!("fatal: {e}")),
        }
    };
    let verdict = plan::verdict(s.cap.options.sync_level, entry, existing.as_ref());
    if verdict == Verdict::Skip {
        s.lock().counters.files_skipped += 1;
        return Ok(Some(Need::Skip));
    }
    let compare = if verdict == Verdict::CompareDigest {
        Some(digest_of(&s.fs, &path, entry.size).map_err(|e| format!("fatal: {e}"))?)
    } else {
        None
    };
    let temp_path = plan::temp_path(&path, &s.cap.task_id);
    let partial = s
        .recovered
        .lock()
        .ok()
        .and_then(|mut r| r.partial.remove(&key));
    let count = chunk_count(entry.size);
    let mut hashes = vec![None; count as usize];
    let (file, fresh) =
        match partial.and_then(|chunks| reverify(&s.fs, &temp_path, entry.size, &chunks)) {
            Some((file, verified)) => {
                for (i, h) in verified {
                    if let Some(slot) = hashes.get_mut(i as usize) {
                        *slot = Some(h);
                    }
                }
                (file, false)
            }
            None => (create_temp(&s.fs, &temp_path, entry.size)?, true),
        };
    let missing: Vec<u32> = (0..count)
        .filter(|i| hashes[*i as usize].is_none())
        .collect();
    let need = match compare {
        Some(digest) => Need::SendUnlessDigest {
            digest: to_hex(&digest),
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
            key,
            rel: entry.path.as_bytes().to_vec(),
            final_path: path,
            temp_path,
            file: Arc::new(file),
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            hashes,
            outstanding: missing.len() as u32,
            unjournaled: Vec::new(),
            source_digest: None,
            fresh,
            resends: 0,
            awaiting_verdict: matches!(need, Need::SendUnlessDigest { .. }),
        },
    );
    if let Need::SendUnlessDigest { .. } = need {
        // Whatever the source decides, it sends every chunk.
        if let Some(f) = st.files.get_mut(&entry.id) {
            f.outstanding = count;
            f.hashes = vec![None; count as usize];
        }
    }
    Ok(Some(need))
}

fn create_temp(fs: &RootedFs, temp: &Path, size: u64) -> Result<File, String> {
    // A stale temporary (no journal vouches for it) is replaced; looking
    // for one only when creating fails saves two syscalls per file.
    let file = match fs.create_file(temp, 0o600) {
        Ok(f) => f,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
            fs.remove_file(temp).map_err(|e| format!("fatal: {e}"))?;
            fs.create_file(temp, 0o600)
                .map_err(|e| format!("fatal: {e}"))?
        }
        Err(e) => return Err(format!("fatal: {e}")),
    };
    // Full length up front: chunks land anywhere, and zero chunks stay holes.
    file.set_len(size).map_err(|e| disk_error(temp, &e))?;
    Ok(file)
}

fn disk_error(path: &Path, e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(nix::libc::ENOSPC) {
        format!("the destination disk is full writing {}", path.display())
    } else {
        format!("cannot write {}: {e}", path.display())
    }
}

/// A kept partial file's journaled chunks, re-hashed from disk: only those
/// that still match count.
fn reverify(
    fs: &RootedFs,
    temp: &Path,
    size: u64,
    chunks: &[(u32, [u8; 32])],
) -> Option<(File, ChunkHashes)> {
    let file = fs.open_write(temp).ok()?;
    let reader = fs.open_read(temp).ok()?;
    if reader.metadata().ok()?.len() != size {
        return None;
    }
    let mut verified = Vec::new();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    for &(index, hash) in chunks {
        let offset = u64::from(index) * CHUNK_SIZE;
        let len = (size.saturating_sub(offset)).min(CHUNK_SIZE) as usize;
        if len == 0 || reader.read_exact_at(&mut buf[..len], offset).is_err() {
            continue;
        }
        if chunk_hash(&buf[..len]) == hash {
            verified.push((index, hash));
        }
    }
    Some((file, verified))
}

/// The digest of an existing destination file (for --sync-level checksum).
fn digest_of(fs: &RootedFs, path: &Path, size: u64) -> Result<[u8; 32], String> {
    let file = fs.open_read(path).map_err(|e| e.to_string())?;
    let hashes = read_chunk_hashes(&file, size, hashing_threads())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(file_digest(hashes.iter()))
}

fn receive_chunk(s: &Session, header: ChunkHeader, data: Vec<u8>) -> Result<(), String> {
    let (file, offset, fresh, temp) = {
        let mut st = s.lock();
        let Some(f) = st.files.get_mut(&header.file) else {
            // A file discarded meanwhile (changed at the source): drop its data.
            return Ok(());
        };
        f.awaiting_verdict = false;
        let slot = f
            .hashes
            .get(header.index as usize)
            .ok_or("chunk index out of range")?;
        if slot.is_some() {
            return Ok(());
        }
        let offset = u64::from(header.index) * CHUNK_SIZE;
        let expected = (f.size - offset).min(CHUNK_SIZE) as usize;
        if data.len() != expected {
            return Err(format!(
                "chunk {} of {} has the wrong length",
                header.index,
                f.final_path.display()
            ));
        }
        (f.file.clone(), offset, f.fresh, f.temp_path.clone())
    };
    if chunk_hash(&data) != header.sha256 {
        return Err(format!(
            "a chunk of {} failed verification in transit",
            temp.display()
        ));
    }
    if !(fresh && data.iter().all(|b| *b == 0)) {
        // One writer at a time: concurrent writes to one file spin on its
        // inode lock in the kernel, burning the CPU hashing needs.
        let _gate = s.write_gate.lock();
        file.write_all_at(&data, offset)
            .map_err(|e| disk_error(&temp, &e))?;
    }
    let len = data.len() as u64;
    crate::buffers::give(data);
    let mut st = s.lock();
    st.counters.bytes_transferred += len;
    if let Some(f) = st.files.get_mut(&header.file)
        && let Some(slot) = f.hashes.get_mut(header.index as usize)
        && slot.is_none()
    {
        *slot = Some(header.sha256);
        f.outstanding = f.outstanding.saturating_sub(1);
        f.unjournaled.push(header.index);
    }
    complete_if_ready(s, &mut st, header.file)
}

/// Verifies a file whose chunks and source digest are all in, then hands it
/// to the committer, or asks for it again.
fn complete_if_ready(s: &Session, st: &mut State, id: u64) -> Result<(), String> {
    let Some(f) = st.files.get(&id) else {
        return Ok(());
    };
    if f.outstanding > 0 || f.source_digest.is_none() || f.awaiting_verdict {
        return Ok(());
    }
    let mut hashes = Vec::with_capacity(f.hashes.len());
    for h in &f.hashes {
        hashes.push(h.ok_or("a chunk went missing")?);
    }
    let Some(mut f) = st.files.remove(&id) else {
        return Ok(());
    };
    tracing::debug!(id, "file complete");
    if Some(file_digest(hashes.iter())) == f.source_digest {
        st.pending_commits += 1;
        let sender = s
            .commit_tx
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or("the session is ending")?;
        sender
            .send(Ready { file: f })
            .map_err(|_| "the committer stopped".to_string())?;
        return Ok(());
    }
    let path = String::from_utf8_lossy(&f.rel).into_owned();
    if f.resends >= MAX_RESENDS {
        return Err(format!(
            "fatal: {} did not verify after {MAX_RESENDS} resends",
            f.final_path.display()
        ));
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
    f.hashes = vec![None; count];
    f.outstanding = count as u32;
    f.source_digest = None;
    f.unjournaled.clear();
    if let Ok(mut j) = s.journal.lock()
        && let Some(j) = j.as_mut()
    {
        j.discarded(f.key);
    }
    st.files.insert(id, f);
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

/// Makes chunks of partial files durable and journals them.
fn checkpoint_partials(s: &Session) {
    let pending: Vec<(FileKey, Arc<File>, ChunkHashes)> = {
        let mut st = s.lock();
        st.files
            .values_mut()
            .filter(|f| !f.unjournaled.is_empty())
            .map(|f| {
                let chunks = f
                    .unjournaled
                    .drain(..)
                    .filter_map(|i| f.hashes.get(i as usize).copied().flatten().map(|h| (i, h)))
                    .collect();
                (f.key, f.file.clone(), chunks)
            })
            .collect()
    };
    if pending.is_empty() {
        return;
    }
    let Ok(mut guard) = s.journal.lock() else {
        return;
    };
    let Some(journal) = guard.as_mut() else {
        return;
    };
    for (key, file, chunks) in pending {
        if file.sync_data().is_err() {
            continue;
        }
        for (i, h) in chunks {
            journal.chunk(key, i, &h);
        }
    }
    if let Err(e) = journal.sync() {
        tracing::warn!(error = %e, "cannot sync the task journal");
    }
}

/// Commits verified files in batches: metadata, fdatasync, rename, fsync
/// of each directory once, then the journal.
fn committer(s: Arc<Session>, ready: std::sync::mpsc::Receiver<Ready>) {
    while let Ok(first) = ready.recv() {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match ready.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let n = batch.len();
        tracing::debug!(n, "committing");
        if let Err(e) = commit_batch(&s, batch) {
            s.fail(e);
        }
        let mut st = s.lock();
        st.pending_commits = st.pending_commits.saturating_sub(n);
        drop(st);
        s.wake.notify_waiters();
    }
}

fn commit_batch(s: &Session, batch: Vec<Ready>) -> Result<(), String> {
    let preserve_mtime = s.cap.options.preserve_mtime;
    let preserve_mode = s.cap.options.preserve_mode;
    for Ready { file: f } in &batch {
        let mode = if preserve_mode {
            f.mode & 0o7777
        } else {
            0o644
        };
        f.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| disk_error(&f.temp_path, &e))?;
        if preserve_mtime {
            let mtime = UNIX_EPOCH + Duration::from_nanos(f.mtime_ns.max(0) as u64);
            f.file
                .set_modified(mtime)
                .map_err(|e| disk_error(&f.temp_path, &e))?;
        }
    }
    // Durable before any rename: one fdatasync for a lone file, one syncfs
    // per filesystem for a batch (many small files would otherwise cost a
    // flush each).
    if let [Ready { file: f }] = batch.as_slice() {
        f.file
            .sync_data()
            .map_err(|e| disk_error(&f.temp_path, &e))?;
    } else {
        // Files in one directory share its filesystem: one fstat per directory.
        let mut filesystems: HashMap<u64, &InFlight> = HashMap::new();
        let mut dirs_seen = HashSet::new();
        for Ready { file: f } in &batch {
            if !dirs_seen.insert(f.temp_path.parent()) {
                continue;
            }
            let dev = std::os::unix::fs::MetadataExt::dev(
                &f.file
                    .metadata()
                    .map_err(|e| disk_error(&f.temp_path, &e))?,
            );
            filesystems.entry(dev).or_insert(f);
        }
        for f in filesystems.values() {
            nix::unistd::syncfs(&*f.file)
                .map_err(|e| disk_error(&f.temp_path, &std::io::Error::from(e)))?;
        }
    }
    let mut dirs = HashSet::new();
    for Ready { file: f } in &batch {
        s.fs.rename(&f.temp_path, &f.final_path)
            .map_err(|e| format!("fatal: {e}"))?;
        if let Some(parent) = f.final_path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for dir in dirs {
        if let Ok(fd) = s.fs.open_dir(&dir) {
            let _ = nix::unistd::fsync(&fd);
        }
    }
    let mut guard = s.journal.lock().map_err(|_| "journal lock poisoned")?;
    let journal = guard.as_mut().ok_or("the task journal is closed")?;
    for Ready { file: f } in &batch {
        journal.committed(f.key);
    }
    journal
        .sync()
        .map_err(|e| format!("cannot sync the task journal: {e}"))?;
    drop(guard);
    s.lock().counters.files_transferred += batch.len() as u64;
    Ok(())
}

/// `--delete`: removes destination entries the source did not list,
/// deepest first, never following symlinks.
fn delete_extras(s: &Session) -> Result<(), String> {
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
            let entries = match s.fs.read_dir(&dir) {
                Ok(e) => e,
                Err(e) => return Err(format!("--delete cannot list {}: {e}", dir.display())),
            };
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
                let listed = seen.contains(&file_key(item as u32, &child_rel));
                match (entry.metadata.kind, listed) {
                    (FsKind::Dir, true) => stack.push((child, child_rel, false)),
                    (FsKind::Dir, false) => remove_tree(&s.fs, &child)?,
                    (_, false) => {
                        s.fs.remove_file(&child)
                            .map_err(|e| format!("--delete: {e}"))?
                    }
                    (_, true) => {}
                }
            }
        }
    }
    Ok(())
}

fn remove_tree(fs: &RootedFs, path: &Path) -> Result<(), String> {
    let mut stack = vec![(path.to_path_buf(), false)];
    while let Some((dir, emptied)) = stack.pop() {
        if emptied {
            fs.remove_dir(&dir).map_err(|e| format!("--delete: {e}"))?;
            continue;
        }
        stack.push((dir.clone(), true));
        for entry in fs.read_dir(&dir).map_err(|e| format!("--delete: {e}"))? {
            let child = dir.join(&entry.name);
            if entry.metadata.kind == FsKind::Dir {
                stack.push((child, false));
            } else {
                fs.remove_file(&child)
                    .map_err(|e| format!("--delete: {e}"))?;
            }
        }
    }
    Ok(())
}
