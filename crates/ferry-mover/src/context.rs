//! What the mover needs from the daemon it runs in.

use crate::channel::Identity;
use ferry_paths::Policy;
use ferry_proto::task::TaskReport;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A report for the hub: task id, attempt, report.
pub type Report = (String, u32, TaskReport);

/// Shared by every transfer this endpoint takes part in.
pub struct Context {
    pub identity: Identity,
    /// The endpoint owner's home (`/~/`).
    pub home: PathBuf,
    /// Where task journals live (the config dir's `state/`).
    pub state_dir: PathBuf,
    /// The path policy in force now (it may be reloaded).
    pub policy: Box<dyn Fn() -> Arc<Policy> + Send + Sync>,
    /// The hub's task-signing key, once the control channel has it.
    pub hub_key: Box<dyn Fn() -> Option<Vec<u8>> + Send + Sync>,
    pub reports: mpsc::UnboundedSender<Report>,
    /// The receiving endpoint's umask: permission bits received files and
    /// directories never get (from `endpoint.toml`, else the daemon's own).
    pub umask: u32,
    /// Keep-alives and the idle limit of data streams (the protocol's
    /// values but in tests).
    pub liveness: crate::channel::Liveness,
    /// The endpoint's bandwidth cap (`bwlimit` in `endpoint.toml`),
    /// shared by every stream it sends or receives; its rate changes in
    /// place when the daemon re-reads its settings.
    pub bwlimit: std::sync::Arc<crate::throttle::Limiter>,
    /// Failures a test plans for this endpoint's disk operations.
    #[cfg(test)]
    pub(crate) faults: crate::faults::Faults,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("endpoint", &self.identity.endpoint_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn report(&self, task_id: &str, attempt: u32, report: TaskReport) {
        let _ = self.reports.send((task_id.to_string(), attempt, report));
    }

    /// The fault-injection seam of this endpoint's disk operations (see
    /// [`crate::faults`]): nothing outside tests.
    pub(crate) fn faults(&self) -> crate::faults::Faults {
        #[cfg(test)]
        return self.faults.clone();
        #[cfg(not(test))]
        crate::faults::Faults::default()
    }
}
