//! One daemon per config dir, enforced by `flock` on `ferry.lock`.
//!
//! The kernel drops the lock when the holder exits however it exits, so a
//! crashed daemon never blocks the next start the way a stale pid file
//! would. The pid inside is only for messages.

use crate::DaemonError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    file: Flock<File>,
}

/// What a probe of the lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held by a live daemon; its pid if the file names one.
    Held {
        pid: Option<u32>,
    },
}

fn open(path: &Path) -> Result<File, DaemonError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(DaemonError::io("open", path))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl DaemonLock {
    /// Takes the lock for this process and writes our pid into it.
    /// `stop` is the command that stops the holder, for the refusal.
    pub fn acquire(path: &Path, dir: &Path, stop: &str) -> Result<Self, DaemonError> {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => {
                let mut lock = Self { file: locked };
                lock.record_pid().map_err(DaemonError::io("write", path))?;
                Ok(lock)
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => Err(DaemonError::AlreadyRunning {
                pid: read_pid(&mut file).unwrap_or(0),
                dir: dir.to_path_buf(),
                stop: stop.to_string(),
            }),
            Err((_, errno)) => Err(DaemonError::io("lock", path)(errno.into())),
        }
    }

    /// Rewrites the pid after `-detach` forked: the lock (an open file
    /// description) passed to the child, but the pid in it is the parent's.
    pub fn record_pid(&mut self) -> std::io::Result<()> {
        let file = &mut *self.file;
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()
    }

    /// Whether a daemon holds the lock, without taking it for longer than
    /// the probe itself.
    pub fn probe(path: &Path) -> Result<LockState, DaemonError> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Free),
            Err(e) => return Err(DaemonError::io("open", path)(e)),
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_released_on_drop) => Ok(LockState::Free),
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => Ok(LockState::Held {
                pid: read_pid(&mut file),
            }),
            Err((_, errno)) => Err(DaemonError::io("lock", path)(errno.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_the_first_pid_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.lock");
        assert_eq!(DaemonLock::probe(&path).unwrap(), LockState::Free);
        let held = DaemonLock::acquire(&path, dir.path(), "ferry -stop").unwrap();
        // flock locks belong to open file descriptions, so a second open in
        // the same process contends like another process would.
        match DaemonLock::acquire(&path, dir.path(), "ferry -stop") {
            Err(DaemonError::AlreadyRunning { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert_eq!(
            DaemonLock::probe(&path).unwrap(),
            LockState::Held {
                pid: Some(std::process::id())
            }
        );
        drop(held);
        assert_eq!(DaemonLock::probe(&path).unwrap(), LockState::Free);
        DaemonLock::acquire(&path, dir.path(), "ferry -stop").unwrap();
    }
}
