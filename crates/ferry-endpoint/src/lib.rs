//! An endpoint's files: the config dir's layout, `endpoint.toml`, the
//! credential files, the default `config-paths`, and taking
//! up a renewed certificate.
//!
//! `ferry -setup` (in ferry-setup) writes these files; the daemon and the
//! mover read them. Keeping both sides in this crate keeps the format in
//! one place, and keeps the hub client out of the daemon and the mover.

mod dir;
mod identity;
pub mod renewal;

pub use dir::{EndpointDir, user_home};
pub use ferry_tls::write_atomic;
pub use identity::{EndpointIdentity, Hook, parse_port_range};

use std::path::PathBuf;
use thiserror::Error;

/// The `config-paths` written at setup when none exists: the owner's home,
/// not shared, read-write (as Globus Connect Personal does).
pub const DEFAULT_CONFIG_PATHS: &str = "\
# ferry config-paths: which paths on this machine transfers may reach.
# One rule per line: PATH,SHARING,RW
#   PATH     absolute, or ~ for your home directory
#   SHARING  0 or 1 (kept for sharing; 0 = not shared)
#   RW       1 = read-write, 0 = read-only
# The most specific matching line decides. Paths no line covers are denied.
# Dot-entries directly under ~ (~/.ssh, ~/.ferry, ...) stay denied unless a
# line names them. After editing, reload with: kill -HUP <daemon pid>
~/,0,1
";

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("{dir} is not set up as a ferry endpoint (no endpoint.toml); run `{setup}` first")]
    NotSetUp { dir: PathBuf, setup: String },
    #[error("{file} is missing; the endpoint's setup is incomplete: run `{setup}` again")]
    MissingFile { file: PathBuf, setup: String },
    #[error("{file} is readable by other users (mode {mode:04o}); fix it with: chmod 600 {file}")]
    KeyTooOpen { file: PathBuf, mode: u32 },
    #[error("{file} is invalid: {reason}")]
    InvalidIdentity { file: PathBuf, reason: String },
    #[error(
        "cannot find the home directory: $HOME is unset and the password database has no entry for uid {uid}"
    )]
    NoHome { uid: u32 },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    /// A [`SetupError::Io`] for `op` on `path`, for `map_err`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SetupError::Io { op, path, source }
    }
}
