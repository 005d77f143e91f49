//! What this endpoint served, for its own log: one line per file
//! operation and per file a transfer read or wrote, at info level under
//! the target [`TARGET`], with whom it acted for and the task. A site can
//! audit its endpoints from these alone, without trusting the hub's log
//! (`ferry endpoint audit`); journald or the daemon's log file keeps them.
//!
//! Who acted is what the hub's signed grant names (`bob`, `group lab`),
//! or `owner` without one; it is the hub's text, so it is logged
//! escaped (`?`), as paths are ([`ferry_paths::show`]).

use ferry_paths::show;
use ferry_proto::share::ShareGrant;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The tracing target of every line: filter on it (`RUST_LOG`, journald's
/// fields) to keep the served log apart.
pub const TARGET: &str = "ferry::served";

/// Who the endpoint acted for: the grant's grantee, or its owner.
pub fn identity(grant: Option<&ShareGrant>) -> &str {
    grant.map_or("owner", |g| g.grantee.as_str())
}

/// A file of a transfer was read (`read`, the source) or written
/// (`write`, the destination).
pub fn file(task_id: &str, grant: Option<&ShareGrant>, action: &'static str, path: &Path) {
    tracing::info!(
        target: TARGET,
        action,
        path = %show(path),
        identity = ?identity(grant),
        permission = ?grant.map(|g| g.permission_id.as_str()),
        task = %task_id,
        "served"
    );
}

/// A file operation the hub asked for (`ls`, `mkdir`, `rename` to `to`,
/// `delete`): `outcome` is `done` or the refusal.
pub fn operation(
    grant: Option<&ShareGrant>,
    action: &'static str,
    path: &[u8],
    to: Option<&[u8]>,
    outcome: &str,
) {
    let shown = |p: &[u8]| show(Path::new(std::ffi::OsStr::from_bytes(p))).to_string();
    tracing::info!(
        target: TARGET,
        action,
        path = %shown(path),
        to = to.map(shown),
        identity = ?identity(grant),
        permission = ?grant.map(|g| g.permission_id.as_str()),
        outcome,
        "served"
    );
}
