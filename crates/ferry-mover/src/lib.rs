//! The data mover: parallel, checksummed, restartable transfers between two
//! endpoints over mutual-TLS data connections.
//!
//! [`source::send`] runs a task attempt on the sending endpoint;
//! [`dest::serve`] accepts attempts on the receiving one. Every file
//! operation goes through the rooted filesystem, so config-paths bounds
//! both sides whatever the hub or the peer asks; for a side that acts for
//! a grantee, config-paths narrowed by the capability's grant for it
//! ([`Context::policy_for`]).
//!
//! Every failure is a [`MoveError`], whose variant decides its
//! [`Disposition`]: retried at once, the file again, the task later by the
//! hub, the entry skipped, or the task failed. Nothing is decided from a
//! message's text.

pub mod admission;
pub mod buffers;
pub mod channel;
mod context;
pub mod dest;
pub mod digest;
mod faults;
pub mod journal;
pub mod link;
pub mod metrics;
pub mod plan;
mod prehash;
pub mod served;
pub mod source;
pub mod throttle;
pub mod tuner;

pub use context::{Context, Hooks, Landed, Report, narrowed_policy};
pub use ferry_proto::data::Disposition;
pub use ferry_proto::task::Side;

use ferry_paths::{FsError, show};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An operating-system error of one operation on one path.
#[derive(Debug)]
pub struct OsFailure {
    pub side: Side,
    /// What was being done, as a verb: "create", "write", "sync".
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for OsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.op,
            show(&self.path),
            describe(&self.source)
        )
    }
}

/// An OS error as words that continue a sentence ("no such file or
/// directory"), without Rust's "(os error 2)" tail.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let Some(errno) = error.raw_os_error() else {
        return text;
    };
    let Some(words) = text.strip_suffix(&format!(" (os error {errno})")) else {
        return text;
    };
    let mut chars = words.chars();
    match (chars.next(), chars.next()) {
        // "No such file", not "I/O error" or "EOF".
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(words.chars().skip(1)).collect()
        }
        _ => words.to_string(),
    }
}

/// Why part of a transfer failed. The variant decides the
/// [`Disposition`] ([`MoveError::disposition`]); an operating-system error
/// becomes a variant by its errno ([`MoveError::os`]):
///
/// | errno | variant | disposition |
/// | --- | --- | --- |
/// | `ENOSPC` | [`DiskFull`](MoveError::DiskFull) | retry later |
/// | `EDQUOT` | [`QuotaExceeded`](MoveError::QuotaExceeded) | retry later |
/// | `EMFILE`, `ENFILE` | [`TooManyOpenFiles`](MoveError::TooManyOpenFiles) | retry later |
/// | `ESTALE` | [`StaleHandle`](MoveError::StaleHandle) | retry later |
/// | `EIO` | [`DeviceError`](MoveError::DeviceError) | retry the file, then later |
/// | `EINTR` | [`Interrupted`](MoveError::Interrupted) | retry at once, then later |
/// | `EACCES`, `EPERM`, `EROFS` | [`Denied`](MoveError::Denied) | fail the task (skip at the source with `--skip-source-errors`) |
/// | `ENOENT` | [`Missing`](MoveError::Missing) | fail the task (skip at the source with `--skip-source-errors`) |
/// | `ENOTDIR`, `EISDIR`, `ENAMETOOLONG`, `ELOOP` | [`BadPath`](MoveError::BadPath) | fail the task (skip at the source with `--skip-source-errors`) |
/// | any other | [`Io`](MoveError::Io) | retry later |
///
/// The words say what was refused and why, as a predicate of the endpoint
/// where it happened ("cannot stat /d/x: no such file or directory"), and
/// never name that endpoint: [`MoveError::side`] says which it was, and
/// the hub, which knows the endpoints' names, puts the two together.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0} (the disk is full)")]
    DiskFull(OsFailure),
    #[error("{0} (blocks or inodes)")]
    QuotaExceeded(OsFailure),
    #[error("{0}")]
    TooManyOpenFiles(OsFailure),
    #[error("{0} (NFS)")]
    StaleHandle(OsFailure),
    #[error("{0}")]
    DeviceError(OsFailure),
    #[error("{0}")]
    Interrupted(OsFailure),
    #[error("{0}")]
    Denied(OsFailure),
    #[error("{0}")]
    Missing(OsFailure),
    #[error("{0}")]
    BadPath(OsFailure),
    #[error("{0}")]
    Io(OsFailure),
    /// The policy (config-paths) refuses the path.
    #[error("{}", refusal(.source))]
    NotAllowed { side: Side, source: FsError },
    /// The path is not the kind of object the operation works on.
    #[error("{source}")]
    WrongKind { side: Side, source: FsError },
    /// What the task asks cannot be done with what is there (a file where
    /// a directory must go, `-r` missing or superfluous).
    #[error("cannot do as asked: {reason}")]
    Unusable { side: Side, reason: String },
    /// A file's digest did not match the source's, however often it came.
    #[error("{} did not verify after {resends} resends", show(.path))]
    DidNotVerify { path: PathBuf, resends: u32 },
    /// A source file changed every time it was read.
    #[error("cannot send {}: it kept changing while it was read", show(.path))]
    KeptChanging { path: PathBuf },
    /// A source entry that fails the task where `--skip-source-errors`
    /// would have left it out and let the rest go on: inside a recursive
    /// item, or one item of several. (The root of a task's only item is
    /// not wrapped: without it there is nothing to go on with.)
    #[error("{0} (use --skip-source-errors to go on without it)")]
    SourceEntry(Box<MoveError>),
    /// The peer sent what the protocol does not allow.
    #[error("{0}")]
    Protocol(String),
    /// A data connection broke.
    #[error("{0}")]
    Connection(String),
    /// Nothing came from the peer for the idle limit, not even a
    /// keep-alive: the data connection stalled (the network holds the
    /// bytes, or the peer is gone without closing it).
    #[error("no word from the {peer} for {idle:?}: the data connection stalled")]
    PeerSilent { peer: Side, idle: Duration },
    /// Nothing written to the peer could leave for the idle limit.
    #[error("nothing could be sent to the {peer} for {idle:?}: the data connection stalled")]
    PeerNotReading { peer: Side, idle: Duration },
    /// Something inside this endpoint stopped (a worker, a lock).
    #[error("{0}")]
    Internal(String),
    /// The peer ended the attempt: why, its disposition, and where the
    /// failure happened if the peer said (then its words are the whole
    /// story, as the peer reported them).
    #[error("{}", gave_up(*.peer, .reason, *.side))]
    PeerGaveUp {
        peer: Side,
        reason: String,
        disposition: Disposition,
        side: Option<Side>,
    },
    /// A file split over the nodes of a spread task cannot be put
    /// together in this attempt (its source changed between the nodes'
    /// reads, another node's part never came or does not fit): the hub
    /// retries it, with the nodes connected then.
    #[error("{0}")]
    SplitFile(String),
    /// The peer was told to stop the attempt (its endpoint paused, or the
    /// hub ended the attempt) and said so: nothing failed, and the hub
    /// hears of it from the peer's endpoint, so this side reports nothing.
    #[error("the {peer} stopped the attempt: {reason}")]
    PeerStopped { peer: Side, reason: String },
}

/// A policy refusal, as a predicate of the refusing endpoint.
fn refusal(error: &FsError) -> String {
    match error {
        FsError::NotAllowed { path, reason } => format!("refuses {}: {reason}", show(path)),
        other => other.to_string(),
    }
}

fn gave_up(peer: Side, reason: &str, side: Option<Side>) -> String {
    match side {
        Some(_) => reason.to_string(),
        None => format!("the {peer} gave up: {reason}"),
    }
}

impl MoveError {
    /// An operating-system error of `op` on `path`, classified by errno.
    pub fn os(side: Side, op: &'static str, path: &Path, source: io::Error) -> Self {
        use nix::libc;
        let errno = source.raw_os_error();
        let failure = OsFailure {
            side,
            op,
            path: path.to_path_buf(),
            source,
        };
        match errno {
            Some(libc::ENOSPC) => MoveError::DiskFull(failure),
            Some(libc::EDQUOT) => MoveError::QuotaExceeded(failure),
            Some(libc::EMFILE | libc::ENFILE) => MoveError::TooManyOpenFiles(failure),
            Some(libc::ESTALE) => MoveError::StaleHandle(failure),
            Some(libc::EIO) => MoveError::DeviceError(failure),
            Some(libc::EINTR) => MoveError::Interrupted(failure),
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => MoveError::Denied(failure),
            Some(libc::ENOENT) => MoveError::Missing(failure),
            Some(libc::ENOTDIR | libc::EISDIR | libc::ENAMETOOLONG | libc::ELOOP) => {
                MoveError::BadPath(failure)
            }
            Some(_) => MoveError::Io(failure),
            None => match failure.source.kind() {
                io::ErrorKind::Interrupted => MoveError::Interrupted(failure),
                io::ErrorKind::NotFound => MoveError::Missing(failure),
                _ => MoveError::Io(failure),
            },
        }
    }

    /// A data stream to or from `peer` that waited out its idle limit.
    pub fn stalled(peer: Side, stall: channel::Stall) -> Self {
        match stall {
            channel::Stall::Silent(idle) => MoveError::PeerSilent { peer, idle },
            channel::Stall::NotReading(idle) => MoveError::PeerNotReading { peer, idle },
        }
    }

    /// A rooted-filesystem error: a policy refusal, a wrong kind of
    /// object, or an operating-system error classified by errno.
    pub fn fs(side: Side, error: FsError) -> Self {
        match error {
            FsError::Io { op, path, source } => MoveError::os(side, op, &path, source),
            FsError::NotAllowed { .. } => MoveError::NotAllowed {
                side,
                source: error,
            },
            FsError::WrongKind { .. } => MoveError::WrongKind {
                side,
                source: error,
            },
        }
    }

    /// The endpoint where this happened, when it is one of the two:
    /// a refusal or an OS error is the side that met it; a peer's abort,
    /// where the peer said; a broken connection or a protocol error, not
    /// known (the reporting endpoint is named then).
    pub fn side(&self) -> Option<Side> {
        match self {
            MoveError::DiskFull(f)
            | MoveError::QuotaExceeded(f)
            | MoveError::TooManyOpenFiles(f)
            | MoveError::StaleHandle(f)
            | MoveError::DeviceError(f)
            | MoveError::Interrupted(f)
            | MoveError::Denied(f)
            | MoveError::Missing(f)
            | MoveError::BadPath(f)
            | MoveError::Io(f) => Some(f.side),
            MoveError::NotAllowed { side, .. }
            | MoveError::WrongKind { side, .. }
            | MoveError::Unusable { side, .. } => Some(*side),
            MoveError::SourceEntry(inner) => inner.side(),
            MoveError::PeerGaveUp { side, .. } => *side,
            MoveError::KeptChanging { .. } => Some(Side::Source),
            MoveError::DidNotVerify { .. }
            | MoveError::Protocol(_)
            | MoveError::Connection(_)
            | MoveError::PeerSilent { .. }
            | MoveError::PeerNotReading { .. }
            | MoveError::PeerStopped { .. }
            | MoveError::SplitFile(_)
            | MoveError::Internal(_) => None,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            MoveError::DiskFull(_)
            | MoveError::QuotaExceeded(_)
            | MoveError::TooManyOpenFiles(_)
            | MoveError::StaleHandle(_)
            | MoveError::Io(_)
            | MoveError::Protocol(_)
            | MoveError::Connection(_)
            | MoveError::PeerSilent { .. }
            | MoveError::PeerNotReading { .. }
            | MoveError::PeerStopped { .. }
            | MoveError::SplitFile(_)
            | MoveError::Internal(_) => Disposition::RetryLater,
            MoveError::DeviceError(_) => Disposition::RetryFile,
            MoveError::Interrupted(_) => Disposition::RetryChunk,
            MoveError::Denied(_)
            | MoveError::Missing(_)
            | MoveError::BadPath(_)
            | MoveError::NotAllowed { .. }
            | MoveError::WrongKind { .. }
            | MoveError::Unusable { .. }
            | MoveError::DidNotVerify { .. }
            | MoveError::KeptChanging { .. }
            | MoveError::SourceEntry(_) => Disposition::FailTask,
            MoveError::PeerGaveUp { disposition, .. } => *disposition,
        }
    }

    /// What this error calls for when reading one source entry (a file or
    /// a directory to list): what would fail the task leaves the entry
    /// out, reported, if the task says `--skip-source-errors`; nothing
    /// else is skipped (a full table of open files is no reason to leave a
    /// file out).
    pub fn at_source_entry(&self, skip_source_errors: bool) -> Disposition {
        match self.disposition() {
            Disposition::FailTask if skip_source_errors => Disposition::SkipFile,
            other => other,
        }
    }

    /// The end of an attempt on this error, as a report for the hub.
    pub fn report(&self) -> ferry_proto::task::TaskReport {
        use ferry_proto::task::TaskReport;
        let (message, side) = (self.to_string(), self.side());
        match self.disposition().at_end() {
            Disposition::FailTask => TaskReport::Failed { message, side },
            _ => TaskReport::Fault { message, side },
        }
    }

    /// The end of an attempt on this error, as the last word to the peer,
    /// so that both endpoints report the same end to the hub.
    pub fn abort(&self) -> ferry_proto::data::Message {
        ferry_proto::data::Message::Abort {
            reason: self.to_string(),
            disposition: self.disposition().at_end(),
            side: self.side(),
            stopped: false,
        }
    }
}

/// How often an operation is done again at once
/// ([`Disposition::RetryChunk`]) before its error stands.
const AGAIN_AT_ONCE: u32 = 3;

/// Runs `op`, and again at once (a few times at most) while it fails with
/// an error that asks for that.
pub(crate) fn at_once<T>(mut op: impl FnMut() -> Result<T, MoveError>) -> Result<T, MoveError> {
    let mut left = AGAIN_AT_ONCE;
    loop {
        match op() {
            Err(e) if e.disposition() == Disposition::RetryChunk && left > 0 => left -= 1,
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc;

    fn classified(errno: i32) -> (Disposition, String) {
        let e = MoveError::os(
            Side::Destination,
            "write",
            Path::new("/home/u/data/.ferry.f.1111.part"),
            io::Error::from_raw_os_error(errno),
        );
        (e.disposition(), e.to_string())
    }

    #[test]
    fn an_os_error_is_classified_by_its_errno() {
        use Disposition::*;
        for (errno, disposition, says) in [
            (
                libc::ENOSPC,
                RetryLater,
                "no space left on device (the disk is full)",
            ),
            (
                libc::EDQUOT,
                RetryLater,
                "disk quota exceeded (blocks or inodes)",
            ),
            (libc::EMFILE, RetryLater, "too many open files"),
            (libc::ENFILE, RetryLater, "too many open files"),
            (libc::ESTALE, RetryLater, "stale file handle (NFS)"),
            (libc::EIO, RetryFile, "input/output error"),
            (libc::EINTR, RetryChunk, "interrupted"),
            (libc::EACCES, FailTask, "permission denied"),
            (libc::EPERM, FailTask, "operation not permitted"),
            (libc::EROFS, FailTask, "read-only file system"),
            (libc::ENOENT, FailTask, "no such file or directory"),
            (libc::ENOTDIR, FailTask, "not a directory"),
            (libc::ENAMETOOLONG, FailTask, "file name too long"),
            (libc::EXDEV, RetryLater, "invalid cross-device link"),
        ] {
            let (got, message) = classified(errno);
            assert_eq!(got, disposition, "{message}");
            assert!(message.contains(says), "{message}");
            assert!(
                message.starts_with("cannot write /home/u/data/.ferry.f.1111.part: "),
                "says what was refused, then why: {message}"
            );
            assert!(!message.contains("os error"), "{message}");
        }
    }

    #[test]
    fn the_words_leave_the_side_to_whoever_knows_its_name() {
        use ferry_proto::task::TaskReport;
        let missing = MoveError::os(
            Side::Source,
            "stat",
            Path::new("/data/x"),
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            missing.to_string(),
            "cannot stat /data/x: no such file or directory"
        );
        assert_eq!(missing.side(), Some(Side::Source));
        assert_eq!(
            missing.report(),
            TaskReport::Failed {
                message: "cannot stat /data/x: no such file or directory".into(),
                side: Some(Side::Source),
            }
        );
        let outside = MoveError::fs(
            Side::Destination,
            FsError::NotAllowed {
                path: "/tmp/x".into(),
                reason: "it is outside the paths this endpoint shares".into(),
            },
        );
        assert_eq!(
            outside.to_string(),
            "refuses /tmp/x: it is outside the paths this endpoint shares"
        );
        assert_eq!(outside.side(), Some(Side::Destination));
        // The destination relays the source's abort as the source said it.
        let ferry_proto::data::Message::Abort {
            reason,
            disposition,
            side,
            ..
        } = missing.abort()
        else {
            panic!("an abort");
        };
        let relayed = MoveError::PeerGaveUp {
            peer: Side::Source,
            reason,
            disposition,
            side,
        };
        assert_eq!(relayed.report(), missing.report());
        // A peer that did not say where: its giving up is what is known.
        let older = MoveError::PeerGaveUp {
            peer: Side::Source,
            reason: "anything".into(),
            disposition: Disposition::FailTask,
            side: None,
        };
        assert_eq!(older.to_string(), "the source gave up: anything");
        assert_eq!(older.side(), None);
        let broken = MoveError::Connection("the data streams closed".into());
        assert!(matches!(
            broken.report(),
            TaskReport::Fault { side: None, .. }
        ));
    }

    #[test]
    fn a_full_disk_ends_the_attempt_as_a_fault_and_a_refusal_fails_the_task() {
        use ferry_proto::task::TaskReport;
        let full = MoveError::os(
            Side::Destination,
            "write",
            Path::new("/d/f"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(
            matches!(full.report(), TaskReport::Fault { message, .. } if message.contains("disk is full"))
        );
        let eio = MoveError::os(
            Side::Source,
            "read",
            Path::new("/s/f"),
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(
            matches!(eio.report(), TaskReport::Fault { .. }),
            "a retry of the file that did not help: later"
        );
        let denied = MoveError::SourceEntry(Box::new(MoveError::os(
            Side::Source,
            "open",
            Path::new("/s/f"),
            io::Error::from_raw_os_error(libc::EACCES),
        )));
        assert!(
            matches!(denied.report(), TaskReport::Failed { message, .. } if message.contains("--skip-source-errors"))
        );
        let peer = MoveError::PeerGaveUp {
            peer: Side::Destination,
            reason: "fatal: anything".into(),
            disposition: Disposition::RetryLater,
            side: None,
        };
        assert!(
            matches!(peer.report(), TaskReport::Fault { .. }),
            "the words decide nothing"
        );
    }

    #[test]
    fn a_stalled_data_connection_ends_the_attempt_to_be_retried_later() {
        use ferry_proto::task::TaskReport;
        let silent = MoveError::stalled(
            Side::Destination,
            channel::Stall::Silent(Duration::from_secs(60)),
        );
        assert_eq!(silent.disposition(), Disposition::RetryLater);
        assert_eq!(
            silent.to_string(),
            "no word from the destination for 60s: the data connection stalled"
        );
        assert!(matches!(silent.report(), TaskReport::Fault { .. }));
        let deaf = MoveError::stalled(
            Side::Source,
            channel::Stall::NotReading(Duration::from_secs(60)),
        );
        assert_eq!(deaf.disposition(), Disposition::RetryLater);
        assert_eq!(
            deaf.to_string(),
            "nothing could be sent to the source for 60s: the data connection stalled"
        );
    }

    #[test]
    fn only_what_would_fail_the_task_is_skipped_at_the_source() {
        use Disposition::*;
        let at_source = |errno| {
            MoveError::os(
                Side::Source,
                "open for reading",
                Path::new("/s/f"),
                io::Error::from_raw_os_error(errno),
            )
        };
        for (errno, without, with) in [
            (libc::EACCES, FailTask, SkipFile),
            (libc::ENOENT, FailTask, SkipFile),
            (libc::EMFILE, RetryLater, RetryLater),
            (libc::EIO, RetryFile, RetryFile),
            (libc::ESTALE, RetryLater, RetryLater),
        ] {
            let e = at_source(errno);
            assert_eq!(e.at_source_entry(false), without, "{e}");
            assert_eq!(e.at_source_entry(true), with, "{e}");
        }
    }

    #[test]
    fn an_interrupted_operation_is_done_again_at_once_a_few_times() {
        let eintr = || {
            MoveError::os(
                Side::Source,
                "open",
                Path::new("/s/f"),
                io::Error::from_raw_os_error(libc::EINTR),
            )
        };
        let mut calls = 0;
        let done = at_once(|| {
            calls += 1;
            if calls < 3 { Err(eintr()) } else { Ok(calls) }
        });
        assert_eq!(done.unwrap(), 3);
        let mut calls = 0;
        let stuck: Result<(), _> = at_once(|| {
            calls += 1;
            Err(eintr())
        });
        assert!(stuck.is_err());
        assert_eq!(calls, 1 + AGAIN_AT_ONCE, "bounded");
    }
}
