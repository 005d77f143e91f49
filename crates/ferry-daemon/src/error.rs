//! Why the daemon could not start or had to stop.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(#[from] ferry_endpoint::SetupError),
    #[error("already running (pid {pid}) for {dir}; stop it with `{stop}`")]
    AlreadyRunning {
        pid: u32,
        dir: PathBuf,
        stop: String,
    },
    #[error("{file}: {source}")]
    Policy {
        file: String,
        #[source]
        source: ferry_paths::PolicyError,
    },
    #[error("another daemon answers on {path}; it is never replaced: stop it with `{stop}` first")]
    SocketInUse { path: PathBuf, stop: String },
    #[error("{0}")]
    CertificateExpired(String),
    /// A `[hooks.NAME]` table of `endpoint.toml` that cannot run.
    #[error("{0}")]
    Hook(String),
    #[error("{path} exists and is not a socket; move it away and start again")]
    NotASocket { path: PathBuf },
    #[error(
        "socket path {path} is {len} bytes, over the {max} the kernel allows; choose a shorter -dir"
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error(
        "cannot serve metrics on {address} (metrics_listen in {file}): {source}; choose another port or remove the line"
    )]
    MetricsListen {
        address: std::net::SocketAddr,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Settings { file: PathBuf, reason: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DaemonError::Io { op, path, source }
    }
}
