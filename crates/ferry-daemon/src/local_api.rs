//! The local API's socket side: binding the daemon's socket safely, reading
//! and writing bounded frames, and the client the CLI uses.
//!
//! What may be said is defined in [`ferry_proto::local_api`]; this module
//! only moves it.

use crate::DaemonError;
use ferry_proto::frame::{self, FrameError, HEADER_LEN};
use ferry_proto::local_api::{self, DecodeError, MAX_FRAME, Request, Response};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one message; `Ok(None)` on a clean end of stream between frames.
pub async fn read_message<T: for<'de> serde::Deserialize<'de>>(
    stream: &mut UnixStream,
) -> Result<Option<T>, TransportError> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame::decode_header(header, MAX_FRAME)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(local_api::decode(&body)?))
}

pub async fn write_message<T: serde::Serialize>(
    stream: &mut UnixStream,
    message: &T,
) -> Result<(), TransportError> {
    let bytes = frame::encode(&local_api::encode(message), MAX_FRAME)?;
    stream.write_all(&bytes).await?;
    Ok(())
}

/// Why the CLI got no answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No socket, or nobody listening on it.
    #[error("ferry is not running")]
    NotRunning,
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the daemon closed the connection without answering")]
    NoAnswer,
    #[error("cannot talk to the daemon at {path}")]
    Transport {
        path: PathBuf,
        #[source]
        source: TransportError,
    },
}

/// Sends one request to the daemon of `socket` and waits for its answer.
pub async fn call(
    socket: &Path,
    request: &Request,
    limit: Duration,
) -> Result<Response, ClientError> {
    let exchange = async {
        let mut stream = match UnixStream::connect(socket).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning);
            }
            Err(e) => return Err(transport(socket, e.into())),
        };
        write_message(&mut stream, request)
            .await
            .map_err(|e| transport(socket, e))?;
        read_message::<Response>(&mut stream)
            .await
            .map_err(|e| transport(socket, e))?
            .ok_or(ClientError::NoAnswer)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

fn transport(path: &Path, source: TransportError) -> ClientError {
    ClientError::Transport {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the daemon's socket with mode 0600. The caller holds the daemon
/// lock, so a socket file found here is normally stale and is removed; but
/// one that still answers belongs to a live daemon and is never replaced.
/// `stop` is the command that stops a daemon found answering, for the refusal.
pub(crate) fn bind(
    path: &Path,
    stop: &str,
) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DaemonError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(DaemonError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(DaemonError::SocketInUse {
                    path: path.to_path_buf(),
                    stop: stop.to_string(),
                });
            }
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale socket");
                std::fs::remove_file(path).map_err(DaemonError::io("remove stale socket", path))?;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DaemonError::io("inspect", path)(e)),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(DaemonError::io("listen on", path))?;
    // tokio takes it over in `Daemon::run`, which requires non-blocking.
    listener
        .set_nonblocking(true)
        .map_err(DaemonError::io("listen on", path))?;
    // The config dir is 0700, so nobody else can reach the socket in the
    // moment between bind and chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(DaemonError::io("chmod 600", path))?;
    Ok(listener)
}
