//! Data connections: mutual TLS between two endpoints with their
//! hub-issued certificates, the capability check, and frame I/O.
//!
//! The destination accepts only a client certificate from the endpoint CA
//! that names the capability's source endpoint, and only a capability the
//! hub signed, unexpired, naming itself as destination. The source accepts
//! only a server certificate naming the destination endpoint. All of it is
//! decided before the filesystem is touched.
//!
//! Once authorised, a stream of version 2 is watched for life (see
//! [`ferry_proto::data`]): [`Watched`] fails a read that waits, or a write
//! that is held, longer than the idle limit, and the sides write
//! [`KEEP_ALIVE`](data::KEEP_ALIVE) frames on streams that are otherwise
//! quiet.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use ferry_endpoint::EndpointDir;
use ferry_proto::data::{self, ChunkHeader, Frame, Message};
use ferry_proto::task::{Capability, CapabilityError};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("invalid frame from the peer: {0}")]
    Frame(#[from] data::DataError),
    #[error("cannot load this endpoint's credentials: {0}")]
    Credentials(String),
    #[error("capability refused: {0}")]
    Capability(#[from] CapabilityError),
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
    /// A [`Watched`] stream waited for the peer longer than its limit.
    #[error("{0}")]
    Stalled(Stall),
}

/// How long a [`Watched`] stream waited for its peer, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Stall {
    /// A read got no byte for this long.
    #[error("no word from the peer for {0:?}")]
    Silent(Duration),
    /// A write could not hand the peer a byte for this long.
    #[error("the peer took nothing for {0:?}")]
    NotReading(Duration),
}

/// An I/O error, a stall of a [`Watched`] stream told apart.
impl From<std::io::Error> for ChannelError {
    fn from(e: std::io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Stall>()) {
            Some(stall) => ChannelError::Stalled(*stall),
            None => ChannelError::Io(e),
        }
    }
}

/// How a data stream tells a busy peer from a stalled connection (data
/// protocol version 2): a side writes a keep-alive on a stream it has
/// written nothing on for `keep_alive_every`, and a wait for the peer
/// (a read with no byte, a write that cannot hand one over) may last
/// `idle`. Tests shorten both; endpoints use the protocol's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub keep_alive_every: Duration,
    pub idle: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            keep_alive_every: data::KEEP_ALIVE_EVERY,
            idle: data::IDLE_LIMIT,
        }
    }
}

impl Liveness {
    /// What a stream whose TLS handshake settled on `alpn` keeps: nothing
    /// with a peer that speaks only version 1 (it knows no keep-alive).
    pub fn on(self, alpn: Option<&[u8]>) -> Option<Liveness> {
        data::negotiated_version(alpn)
            .filter(|v| data::keeps_alive(*v))
            .map(|_| self)
    }
}

/// One half of a data stream (or a whole one) whose every wait for the
/// peer is bounded: a read that gets no byte for the idle limit fails
/// with [`Stall::Silent`], a write or flush that cannot hand over a byte
/// for as long with [`Stall::NotReading`]. Only time spent waiting
/// counts: while this side is busy elsewhere (hashing, committing) and
/// does not read, no clock runs. Without a limit (a version-1 peer) it
/// waits as long as it takes.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    idle: Option<Duration>,
    reading: Option<Pin<Box<tokio::time::Sleep>>>,
    writing: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, idle: Option<Duration>) -> Self {
        Self {
            inner,
            idle,
            reading: None,
            writing: None,
        }
    }
}

/// Whether a wait that has just been told "not yet" has lasted `idle`
/// (the clock starts at the first "not yet" since the last progress).
fn waited_out(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    idle: Duration,
    cx: &mut Context<'_>,
) -> bool {
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
    timer.as_mut().poll(cx).is_ready()
}

fn stalled(stall: Stall) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, stall)
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => match this.idle {
                Some(idle) if waited_out(&mut this.reading, idle, cx) => {
                    this.reading = None;
                    Poll::Ready(Err(stalled(Stall::Silent(idle))))
                }
                _ => Poll::Pending,
            },
            done => {
                this.reading = None;
                done
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Polls a write-side operation, bounding the wait.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Pending => match self.idle {
                Some(idle) if waited_out(&mut self.writing, idle, cx) => {
                    self.writing = None;
                    Poll::Ready(Err(stalled(Stall::NotReading(idle))))
                }
                _ => Poll::Pending,
            },
            done => {
                self.writing = None;
                done
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().bounded(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().bounded(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().bounded(cx, |s, cx| s.poll_shutdown(cx))
    }
}

/// This endpoint's TLS identity for data connections. The certificate is
/// renewed while the daemon runs ([`Identity::reload`]): the listener's
/// config resolves it per handshake, and each send builds its config anew.
#[derive(Debug)]
pub struct Identity {
    pub endpoint_id: String,
    key: PrivateKeyDer<'static>,
    endpoint_ca: Vec<CertificateDer<'static>>,
    current: Arc<CurrentCert>,
    /// The data protocol versions offered in TLS's ALPN, newest first:
    /// all this build speaks ([`data::ALPN_PROTOCOLS`]) but in tests that
    /// pose as an older release ([`Identity::speaking_up_to`]).
    protocols: Vec<&'static [u8]>,
}

/// The certificate presented now, swapped whole on renewal.
#[derive(Debug)]
struct CurrentCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<rustls::sign::CertifiedKey> {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<rustls::sign::CertifiedKey>, ChannelError> {
    let signer = ferry_tls::provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| ChannelError::Credentials(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))
}

impl Identity {
    pub fn load(dir: &EndpointDir, endpoint_id: &str) -> Result<Self, ChannelError> {
        let err = |e: ferry_tls::TlsError| ChannelError::Credentials(e.to_string());
        let key = ferry_tls::key_from_file(&dir.key_file()).map_err(err)?;
        let chain = ferry_tls::certs_from_file(&dir.cert_file()).map_err(err)?;
        let current = certified_key(chain, &key)?;
        Ok(Self {
            endpoint_id: endpoint_id.to_string(),
            key,
            endpoint_ca: ferry_tls::certs_from_file(&dir.endpoint_ca_file()).map_err(err)?,
            current: Arc::new(CurrentCert(std::sync::RwLock::new(current))),
            protocols: data::ALPN_PROTOCOLS.to_vec(),
        })
    }

    /// Offers data protocol versions up to `newest` only, as an older
    /// release would (for tests of mixed versions).
    pub fn speaking_up_to(self, newest: u32) -> Self {
        let protocols = data::ALPN_PROTOCOLS
            .iter()
            .copied()
            .filter(|p| data::negotiated_version(Some(p)).is_some_and(|v| v <= newest))
            .collect();
        Self { protocols, ..self }
    }

    /// Takes up a renewed `endpoint.crt` (same key): new data connections,
    /// both ways, present it from now on.
    pub fn reload(&self, dir: &EndpointDir) -> Result<(), ChannelError> {
        let chain = ferry_tls::certs_from_file(&dir.cert_file())
            .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        let renewed = certified_key(chain, &self.key)?;
        match self.current.0.write() {
            Ok(mut slot) => *slot = renewed,
            Err(poisoned) => *poisoned.into_inner() = renewed,
        }
        Ok(())
    }

    fn roots(&self) -> Result<RootCertStore, ChannelError> {
        let mut roots = RootCertStore::empty();
        for c in &self.endpoint_ca {
            roots
                .add(c.clone())
                .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        }
        Ok(roots)
    }

    /// For accepting data connections: a client certificate is required.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ChannelError> {
        let builder = ferry_tls::server_config_builder()
            .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        let verifier = WebPkiClientVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        let mut config = builder
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = self.protocols.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// For connecting to a destination endpoint.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ChannelError> {
        ferry_tls::client_config(
            &self.endpoint_ca,
            Some((self.current.get().cert.clone(), self.key.clone_key())),
            &self.protocols,
        )
        .map_err(|e| ChannelError::Credentials(e.to_string()))
    }
}

/// Checks a capability's signature against the hub's key and its expiry.
pub fn verify_capability(
    sealed: &str,
    hub_key: &[u8],
    now: i64,
) -> Result<Capability, CapabilityError> {
    let (body, signature) = Capability::open(sealed)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, hub_key)
        .verify(&body, &signature)
        .map_err(|_| CapabilityError::BadSignature)?;
    let capability = Capability::parse_verified(&body)?;
    if capability.expires < now {
        return Err(CapabilityError::Expired);
    }
    Ok(capability)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Reads one frame of an authorised stream; `Ok(None)` at a clean end of
/// stream. Never before the capability verified: see [`read_handshake`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, ChannelError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = data::frame_len(header, data::MAX_AUTHORISED_FRAME)?;
    let kind = reader.read_u8().await?;
    if kind == data::FRAME_CHUNK {
        // Straight into the buffer the chunk lives in from here on.
        let data_len = data::chunk_data_len(len)?;
        let mut header = [0u8; data::CHUNK_HEADER];
        reader.read_exact(&mut header).await?;
        let mut bytes = crate::buffers::take(data_len);
        reader.read_exact(&mut bytes).await?;
        return Ok(Some(Frame::Chunk(ChunkHeader::from_bytes(&header), bytes)));
    }
    let mut body = vec![0u8; len];
    body[0] = kind;
    reader.read_exact(&mut body[1..]).await?;
    Ok(Some(data::decode(body)?))
}

/// Room for `Open` frames above [`data::MAX_HANDSHAKE_FRAME`] (a large
/// `--batch` capability), shared by every stream not yet authorised.
#[derive(Debug)]
pub struct HandshakeBudget {
    kib: Semaphore,
}

impl HandshakeBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            kib: Semaphore::new(bytes / 1024),
        }
    }

    fn take(&self, bytes: usize) -> Option<SemaphorePermit<'_>> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        self.kib.try_acquire_many(kib).ok()
    }
}

/// Reads the one message a stream carries before it is authorised (its
/// `Open`, or the answer to one). A frame above
/// [`data::MAX_HANDSHAKE_FRAME`] is refused on its header, before any of
/// its body is read or any room made for it, unless `large` has room for
/// it now (up to [`data::MAX_OPEN_FRAME`]); a chunk is refused on its type
/// byte; and the body's buffer grows only as its bytes arrive, so a peer
/// that announces much and sends little costs little.
pub async fn read_handshake<R: AsyncRead + Unpin>(
    reader: &mut R,
    large: Option<&HandshakeBudget>,
) -> Result<Message, ChannelError> {
    let mut header = [0u8; 4];
    if let Err(e) = reader.read_exact(&mut header).await {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => closed(),
            _ => e.into(),
        });
    }
    let len = data::frame_len(header, data::MAX_OPEN_FRAME)?;
    let _room = if len > data::MAX_HANDSHAKE_FRAME {
        let room = large.and_then(|budget| budget.take(len));
        Some(room.ok_or(ChannelError::Frame(data::DataError::TooLarge(len)))?)
    } else {
        None
    };
    let kind = reader.read_u8().await?;
    if kind != data::FRAME_MESSAGE {
        return Err(ChannelError::Protocol(
            "data before the stream was accepted".into(),
        ));
    }
    let mut body = Vec::with_capacity(len.min(HANDSHAKE_READ));
    body.push(kind);
    let expected = len as u64 - 1;
    (&mut *reader).take(expected).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(closed());
    }
    match data::decode(body)? {
        Frame::Message(m) => Ok(m),
        Frame::Chunk(..) | Frame::KeepAlive => Err(ChannelError::Protocol(
            "data before the stream was accepted".into(),
        )),
    }
}

/// What a handshake frame's buffer starts with.
const HANDSHAKE_READ: usize = 4096;

fn closed() -> ChannelError {
    ChannelError::Protocol("the peer closed the connection".into())
}

/// A read buffer beneath TLS that starts small and is grown once the
/// stream is authorised: rustls reads the socket a few KiB at a time, and
/// a larger buffer beneath it turns many syscalls into one, but an
/// unauthorised peer gets no large buffer.
#[derive(Debug)]
pub struct ReceiveBuffer<T> {
    inner: T,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl<T> ReceiveBuffer<T> {
    pub fn new(inner: T, capacity: usize) -> Self {
        Self {
            inner,
            buf: vec![0; capacity.max(1)],
            pos: 0,
            filled: 0,
        }
    }

    /// Makes the buffer `capacity` bytes (it never shrinks); buffered bytes
    /// stay.
    pub fn grow(&mut self, capacity: usize) {
        if capacity > self.buf.len() {
            self.buf.resize(capacity, 0);
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReceiveBuffer<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.filled && out.remaining() >= this.buf.len() {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        if this.pos == this.filled {
            let mut fill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            this.filled = fill.filled().len();
            this.pos = 0;
        }
        let n = (this.filled - this.pos).min(out.remaining());
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReceiveBuffer<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<(), ChannelError> {
    writer.write_all(&data::encode_message(message)).await?;
    Ok(())
}

/// Writes a message and pushes it onto the wire at once (TLS streams hold
/// written data until flushed).
pub async fn send_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<(), ChannelError> {
    write_message(writer, message).await?;
    writer.flush().await?;
    Ok(())
}

/// Writes a keep-alive frame and pushes it onto the wire.
pub async fn send_keep_alive<W: AsyncWrite + Unpin>(writer: &mut W) -> Result<(), ChannelError> {
    writer.write_all(&data::KEEP_ALIVE).await?;
    writer.flush().await?;
    Ok(())
}

pub async fn write_chunk<W: AsyncWrite + Unpin>(
    writer: &mut W,
    header: &ChunkHeader,
    bytes: &[u8],
) -> Result<(), ChannelError> {
    writer
        .write_all(&data::chunk_prefix(header, bytes.len()))
        .await?;
    writer.write_all(bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::data::Open;
    use std::time::Duration;

    /// Sends `prefix` and then nothing, keeping the stream open: a reader
    /// that waits for the announced body never returns (the bound only
    /// ends a failing test).
    async fn handshake_after(
        prefix: &[u8],
        large: Option<&HandshakeBudget>,
    ) -> Result<Message, ChannelError> {
        let (mut peer, mut ours) = tokio::io::duplex(1024);
        peer.write_all(prefix).await.unwrap();
        let read =
            tokio::time::timeout(Duration::from_secs(30), read_handshake(&mut ours, large)).await;
        drop(peer);
        read.expect("the reader waited for a body it must refuse")
    }

    fn header(len: usize, kind: u8) -> Vec<u8> {
        let mut wire = (len as u32).to_be_bytes().to_vec();
        wire.push(kind);
        wire
    }

    #[tokio::test]
    async fn before_authorisation_a_large_frame_is_refused_on_its_header() {
        let four_mib = 4 * 1024 * 1024;
        let refused = handshake_after(&header(four_mib, data::FRAME_MESSAGE), None).await;
        assert!(
            matches!(refused, Err(ChannelError::Frame(data::DataError::TooLarge(n))) if n == four_mib),
            "{refused:?}"
        );
        let chunk = header(1 + data::CHUNK_HEADER + four_mib, data::FRAME_CHUNK);
        assert!(handshake_after(&chunk, None).await.is_err());
        // No budget stretches beyond the largest `Open`.
        let budget = HandshakeBudget::new(64 * 1024 * 1024);
        let refused = handshake_after(&header(four_mib, data::FRAME_MESSAGE), Some(&budget)).await;
        assert!(
            matches!(refused, Err(ChannelError::Frame(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn before_authorisation_a_chunk_is_refused_on_its_type() {
        let refused = handshake_after(&header(100, data::FRAME_CHUNK), None).await;
        assert!(
            matches!(refused, Err(ChannelError::Protocol(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_large_open_needs_room_in_the_shared_budget() {
        let open = Message::Open(Open {
            capability: "c".repeat(200 * 1024),
            stream: 0,
            streams: 1,
        });
        let wire = data::encode_message(&open);
        let read = |budget: Option<HandshakeBudget>| {
            let wire = wire.clone();
            async move {
                let (mut peer, mut ours) = tokio::io::duplex(64 * 1024);
                let writer = tokio::spawn(async move { peer.write_all(&wire).await });
                let got = read_handshake(&mut ours, budget.as_ref()).await;
                writer.abort();
                got
            }
        };
        assert!(read(None).await.is_err(), "no budget: refused");
        assert!(
            read(Some(HandshakeBudget::new(100 * 1024))).await.is_err(),
            "too little room: refused"
        );
        assert_eq!(
            read(Some(HandshakeBudget::new(1024 * 1024))).await.unwrap(),
            open
        );
    }

    #[tokio::test]
    async fn a_small_handshake_and_an_early_close_are_told_apart() {
        let accepted = data::encode_message(&Message::Accepted);
        assert_eq!(
            handshake_after(&accepted, None).await.unwrap(),
            Message::Accepted
        );
        let (peer, mut ours) = tokio::io::duplex(1024);
        drop(peer);
        let closed = read_handshake(&mut ours, None).await;
        assert!(
            matches!(closed, Err(ChannelError::Protocol(_))),
            "{closed:?}"
        );
        // A body cut short is not a message.
        let (mut peer, mut ours) = tokio::io::duplex(1024);
        peer.write_all(&accepted[..accepted.len() - 2])
            .await
            .unwrap();
        drop(peer);
        assert!(read_handshake(&mut ours, None).await.is_err());
    }

    /// Far above any idle limit below: it only ends a failing test.
    const HUNG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_read_that_hears_nothing_for_the_idle_limit_fails_as_silent() {
        let (_peer, ours) = tokio::io::duplex(1024);
        let mut watched = Watched::new(ours, Some(Duration::from_millis(200)));
        let read = tokio::time::timeout(HUNG, read_frame(&mut watched))
            .await
            .expect("the read waited for good");
        assert!(
            matches!(
                read,
                Err(ChannelError::Stalled(Stall::Silent(d))) if d == Duration::from_millis(200)
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_trickle_keeps_a_read_alive_and_time_spent_busy_is_not_waiting() {
        let idle = Duration::from_secs(1);
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut watched = Watched::new(ours, Some(idle));
        // Keep-alives a fifth of the limit apart, for twice the limit.
        let writer = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(idle / 5).await;
                peer.write_all(&data::KEEP_ALIVE).await.unwrap();
            }
            // Quiet for longer than the limit, while the reader is busy,
            // then a message.
            tokio::time::sleep(idle * 2).await;
            peer.write_all(&data::encode_message(&Message::Accepted))
                .await
                .unwrap();
            peer
        });
        for _ in 0..10 {
            let frame = tokio::time::timeout(HUNG, read_frame(&mut watched)).await;
            assert!(matches!(frame, Ok(Ok(Some(Frame::KeepAlive)))), "{frame:?}");
        }
        // Busy elsewhere (not reading) for most of the quiet: only the wait
        // that follows counts, and it is short of the limit.
        tokio::time::sleep(idle * 2 - idle / 4).await;
        let frame = tokio::time::timeout(HUNG, read_frame(&mut watched)).await;
        assert!(
            matches!(frame, Ok(Ok(Some(Frame::Message(Message::Accepted))))),
            "{frame:?}"
        );
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_as_not_reading() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, Some(Duration::from_millis(200)));
        let written = tokio::time::timeout(
            HUNG,
            send_message(
                &mut watched,
                &Message::Refused {
                    reason: "x".repeat(1000),
                },
            ),
        )
        .await
        .expect("the write waited for good");
        assert!(
            matches!(written, Err(ChannelError::Stalled(Stall::NotReading(_)))),
            "{written:?}"
        );
    }

    #[tokio::test]
    async fn without_a_limit_a_wait_lasts_as_long_as_it_takes() {
        let (_peer, ours) = tokio::io::duplex(1024);
        let mut watched = Watched::new(ours, None);
        let read = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut watched)).await;
        assert!(
            read.is_err(),
            "a version-1 stream has no deadline: {read:?}"
        );
    }

    #[test]
    fn only_a_version_2_stream_keeps_alive() {
        let liveness = Liveness::default();
        assert_eq!(liveness.on(Some(b"ferry-data/2")), Some(liveness));
        assert_eq!(liveness.on(Some(b"ferry-data/1")), None);
        assert_eq!(liveness.on(None), None);
        assert_eq!(liveness.idle, data::IDLE_LIMIT);
        assert_eq!(liveness.keep_alive_every, data::KEEP_ALIVE_EVERY);
    }

    #[tokio::test]
    async fn the_receive_buffer_passes_bytes_through_and_grows_with_them_buffered() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut peer, ours) = tokio::io::duplex(8 * 1024);
        let sent = bytes.clone();
        let writer = tokio::spawn(async move {
            peer.write_all(&sent).await.unwrap();
        });
        let mut reader = ReceiveBuffer::new(ours, 1024);
        let mut got = vec![0u8; 10];
        reader.read_exact(&mut got).await.unwrap();
        reader.grow(64 * 1024);
        assert_eq!(reader.capacity(), 64 * 1024);
        reader.grow(16);
        assert_eq!(reader.capacity(), 64 * 1024, "it never shrinks");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        writer.await.unwrap();
        assert_eq!(got, bytes);
    }
}
