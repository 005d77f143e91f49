//! What the mover needs from the daemon it runs in.

use crate::channel::Identity;
use ferry_paths::{Policy, PolicyError};
use ferry_proto::share::ShareGrant;
use ferry_proto::task::{TaskCounters, TaskReport};
use std::path::{Path, PathBuf};
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
    /// How a sending attempt grows its streams from what it measures
    /// (the protocol's values but in tests).
    pub tuning: crate::tuner::Tuning,
    /// The endpoint's bandwidth cap (`bwlimit` in `endpoint.toml`),
    /// shared by every stream it sends or receives; its rate changes in
    /// place when the daemon re-reads its settings.
    pub bwlimit: std::sync::Arc<crate::throttle::Limiter>,
    /// What this endpoint's transfers did, for the daemon's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The endpoint's `--on-success` hooks (the daemon runs them); `None`:
    /// it has none, and a task that names one fails before data moves.
    pub hooks: Option<Arc<dyn Hooks>>,
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

/// A task whose every file this destination committed and verified, and
/// that names a hook to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub task_id: String,
    pub attempt: u32,
    /// The hook's name (checked by [`Hooks::refuse`] when the attempt began).
    pub hook: String,
    pub label: Option<String>,
    /// Where each item landed, as paths of this host.
    pub destinations: Vec<PathBuf>,
    pub counters: TaskCounters,
}

/// Work after a transfer, as the daemon does it (see `ferry-daemon`'s
/// `hooks`): the mover only asks and hands over.
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// Why this endpoint will not run the hook `name` for a task (acting
    /// for a grantee when `for_grantee`), or `None` if it will.
    fn refuse(&self, name: &str, for_grantee: bool) -> Option<String>;
    /// Every file landed: run the hook (at most once per task).
    fn landed(&self, landed: Landed);
}

impl Context {
    /// Why the destination will not run a task's `--on-success` hook, if
    /// it names one this endpoint will not run.
    pub fn refuse_hook(&self, name: &str, for_grantee: bool) -> Option<String> {
        match &self.hooks {
            Some(hooks) => hooks.refuse(name, for_grantee),
            None => Some(format!(
                "the destination endpoint runs no hooks, so none named '{name}' (--on-success)"
            )),
        }
    }

    pub fn report(&self, task_id: &str, attempt: u32, report: TaskReport) {
        let _ = self.reports.send((task_id.to_string(), attempt, report));
    }

    /// The policy one side of a task attempt applies to every path it
    /// touches: the owner's in force now (a reload counts from the next
    /// attempt), narrowed by the grant the capability carries for this
    /// side when it acts for a grantee.
    pub fn policy_for(&self, grant: Option<&ShareGrant>) -> Result<Arc<Policy>, PolicyError> {
        let owners = (self.policy)();
        match grant {
            None => Ok(owners),
            Some(grant) => narrowed_policy(&owners, grant).map(Arc::new),
        }
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

/// `policy` as the grantee of `grant` gets it: beneath the grant's root
/// (an endpoint path, `/~/` the owner's home), where the owner's rule
/// shares, read-only unless the grant is `rw` ([`Policy::for_grant`]).
/// What the grant claims can only narrow `policy`, never widen it, so a
/// hub that forges one reaches nothing the owner did not share.
pub fn narrowed_policy(policy: &Policy, grant: &ShareGrant) -> Result<Policy, PolicyError> {
    policy.for_grant(Path::new(grant.root.as_os_str()), grant.mode.allows_write())
}
