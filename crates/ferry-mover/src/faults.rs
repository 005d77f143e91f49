//! Injected disk failures, so every failure path of a transfer can be a
//! test (in the manner of syncthing's `lib/fs/errorfs.go` and SQLite's
//! I/O-error tests).
//!
//! Each disk operation of either side passes [`Faults::check`] with its
//! [`Op`] and path just before it runs, and an error the check returns
//! takes the same way as the operation's own error would (the same
//! classification by errno, the same disposition). In a build for use
//! `Faults` holds nothing and the check is a no-op the compiler removes;
//! in this crate's tests a test plans failures (an operation, optionally a
//! path, an errno, how many times) on an endpoint's [`crate::Context`] and
//! reads back which operations ran. A test may also make an operation slow
//! (it waits before it runs: a slow disk, a long commit). `matrix` runs
//! real transfers over loopback TLS against a table of faults.

use std::io;
use std::path::Path;

/// The operations a failure can be injected at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// Destination: creating a temporary file (and giving it its length).
    CreateTemp,
    /// Destination: writing a chunk into a temporary file (pwrite).
    Write,
    /// Destination: creating a directory the source has.
    MakeDir,
    /// Destination: giving a verified temporary file its mode.
    SetMode,
    /// Destination: giving a verified temporary file its mtime.
    SetMtime,
    /// Destination: fdatasync of one temporary file.
    SyncFile,
    /// Destination: syncfs of a filesystem holding a batch of temporary files.
    SyncFilesystem,
    /// Destination: renaming a temporary file to its real name.
    Rename,
    /// Destination: fsync of a directory (after renames into it, or after
    /// creating a directory in it).
    SyncDir,
    /// Destination: fsync of the task journal.
    SyncJournal,
    /// Source: opening a file to send.
    OpenSource,
    /// Source: reading a chunk of a file to send.
    ReadSource,
    /// Source: listing a directory of the walk.
    ListSource,
}

/// Where failures are planned; empty outside tests. Clones share the plan.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    #[cfg(test)]
    plan: std::sync::Arc<std::sync::Mutex<Plan>>,
}

impl Faults {
    /// Fails if a failure is planned for `op` on `path`.
    #[cfg_attr(not(test), inline(always), allow(unused_variables))]
    pub(crate) fn check(&self, op: Op, path: &Path) -> io::Result<()> {
        #[cfg(test)]
        if let Ok(mut plan) = self.plan.lock() {
            let wait = plan.delay(op, path);
            let checked = plan.check(op, path);
            drop(plan);
            // Outside the lock: other operations go on meanwhile.
            if let Some(wait) = wait {
                std::thread::sleep(wait);
            }
            return checked;
        }
        Ok(())
    }
}

#[cfg(test)]
use planned::Plan;

#[cfg(test)]
mod planned {
    use super::{Faults, Op};
    use std::io;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    #[derive(Debug, Default)]
    pub(crate) struct Plan {
        failures: Vec<Failure>,
        delays: Vec<Delay>,
        ran: Vec<(Op, PathBuf)>,
    }

    #[derive(Debug)]
    struct Delay {
        op: Op,
        path: Option<PathBuf>,
        wait: Duration,
        times: u32,
    }

    #[derive(Debug)]
    struct Failure {
        op: Op,
        path: Option<PathBuf>,
        errno: i32,
        times: u32,
    }

    impl Plan {
        /// How long `op` waits before it runs, if a test made it slow.
        pub(super) fn delay(&mut self, op: Op, path: &Path) -> Option<Duration> {
            let due = self.delays.iter_mut().find(|d| {
                d.times > 0 && d.op == op && d.path.as_deref().is_none_or(|p| p == path)
            })?;
            due.times -= 1;
            Some(due.wait)
        }

        pub(super) fn check(&mut self, op: Op, path: &Path) -> io::Result<()> {
            self.ran.push((op, path.to_path_buf()));
            let due = self
                .failures
                .iter_mut()
                .find(|f| f.times > 0 && f.op == op && f.path.as_deref().is_none_or(|p| p == path));
            match due {
                Some(failure) => {
                    failure.times -= 1;
                    Err(io::Error::from_raw_os_error(failure.errno))
                }
                None => Ok(()),
            }
        }
    }

    impl Faults {
        /// Makes the next `times` runs of `op` (on `path`, or on any path)
        /// fail with `errno`.
        pub(crate) fn fail(&self, op: Op, path: Option<&Path>, errno: i32, times: u32) {
            if let Ok(mut plan) = self.plan.lock() {
                plan.failures.push(Failure {
                    op,
                    path: path.map(Path::to_path_buf),
                    errno,
                    times,
                });
            }
        }

        /// Makes the next `times` runs of `op` wait `wait` first (on the
        /// thread that runs it: only operations of blocking threads).
        pub(crate) fn delay(&self, op: Op, wait: Duration, times: u32) {
            self.delay_on(op, None, wait, times);
        }

        /// Makes the next `times` runs of `op` on `path` (or on any path) wait `wait` first.
        pub(crate) fn delay_on(&self, op: Op, path: Option<&Path>, wait: Duration, times: u32) {
            if let Ok(mut plan) = self.plan.lock() {
                plan.delays.push(Delay {
                    op,
                    path: path.map(Path::to_path_buf),
                    wait,
                    times,
                });
            }
        }

        /// The fault clears: nothing planned fails any more.
        pub(crate) fn clear(&self) {
            if let Ok(mut plan) = self.plan.lock() {
                plan.failures.clear();
            }
        }

        /// The operations checked so far, in order, failed ones included.
        pub(crate) fn ran(&self) -> Vec<(Op, PathBuf)> {
            self.plan.lock().map(|p| p.ran.clone()).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod matrix;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_failure_hits_its_operation_and_path_as_often_as_planned() {
        let faults = Faults::default();
        let (a, b) = (Path::new("/d/a"), Path::new("/d/b"));
        faults.fail(Op::SyncDir, Some(a), nix::libc::EIO, 1);
        assert!(faults.check(Op::SyncDir, b).is_ok(), "another path");
        assert!(faults.check(Op::SyncFile, a).is_ok(), "another operation");
        let err = faults.check(Op::SyncDir, a).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO));
        assert!(faults.check(Op::SyncDir, a).is_ok(), "only once");
        assert_eq!(faults.ran().len(), 4);
    }

    #[test]
    fn clones_share_the_plan_and_a_cleared_fault_fails_nothing() {
        let faults = Faults::default();
        let shared = faults.clone();
        faults.fail(Op::Write, None, nix::libc::ENOSPC, u32::MAX);
        assert!(shared.check(Op::Write, Path::new("/x")).is_err());
        shared.clear();
        assert!(faults.check(Op::Write, Path::new("/x")).is_ok());
        assert_eq!(faults.ran().len(), 2);
    }
}
