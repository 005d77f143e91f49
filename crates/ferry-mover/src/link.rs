//! What a data connection's TLS runs over: a TCP connection straight to
//! the peer, or a stream the hub relays. Either way the endpoints' own
//! mutual TLS and the capability check run inside it, end to end, so the
//! hub carries only ciphertext; the mover treats both alike.
//!
//! An enum rather than a boxed trait object for both: the direct path
//! stays a plain `TcpStream` under TLS, with no virtual call per read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A relayed stream: the endpoint's own TLS connection to the hub
/// (ALPN `ferry-relay/1`), after the hub paired it with the peer's.
pub trait RelayedIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> RelayedIo for T {}

/// A data connection's transport.
pub enum DataIo {
    Direct(TcpStream),
    Relayed(Box<dyn RelayedIo>),
}

impl std::fmt::Debug for DataIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataIo::Direct(tcp) => f.debug_tuple("Direct").field(tcp).finish(),
            DataIo::Relayed(_) => f.write_str("Relayed"),
        }
    }
}

impl DataIo {
    pub fn is_relayed(&self) -> bool {
        matches!(self, DataIo::Relayed(_))
    }
}

impl AsyncRead for DataIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataIo::Direct(t) => Pin::new(t).poll_read(cx, buf),
            DataIo::Relayed(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            DataIo::Direct(t) => Pin::new(t).poll_write(cx, buf),
            DataIo::Relayed(r) => Pin::new(r).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            DataIo::Direct(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            DataIo::Relayed(r) => Pin::new(r).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            DataIo::Direct(t) => t.is_write_vectored(),
            DataIo::Relayed(r) => r.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataIo::Direct(t) => Pin::new(t).poll_flush(cx),
            DataIo::Relayed(r) => Pin::new(r).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DataIo::Direct(t) => Pin::new(t).poll_shutdown(cx),
            DataIo::Relayed(r) => Pin::new(r).poll_shutdown(cx),
        }
    }
}

/// A relay dial's future: the relayed stream, or why the hub would not
/// (or could not) pair it, in one line.
pub type RelayDial = Pin<Box<dyn Future<Output = Result<Box<dyn RelayedIo>, String>> + Send>>;

/// Opens a relayed stream to the destination for stream `stream` of the
/// attempt the capability names; `reason` says why (the hub records it).
pub trait RelayDialer: Send + Sync {
    fn dial(&self, stream: u16, reason: &str) -> RelayDial;
}

/// How the source reaches the destination, as the hub's task start says.
#[derive(Clone, Default)]
pub struct Route {
    /// `host:port` of the destination's data listener; `None` when it
    /// listens nowhere (`data_listen = false`).
    pub direct: Option<String>,
    /// Through the hub, when the hub relays this task: tried only when
    /// the direct connection cannot be made (or there is none).
    pub relay: Option<Arc<dyn RelayDialer>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("direct", &self.direct)
            .field("relay", &self.relay.is_some())
            .finish()
    }
}

impl Route {
    pub fn direct(connect_to: impl Into<String>) -> Self {
        Self {
            direct: Some(connect_to.into()),
            relay: None,
        }
    }
}
