//! Data connections: mutual TLS between two endpoints with their
//! hub-issued certificates, the capability check, and frame I/O.
//!
//! The destination accepts only a client certificate from the endpoint CA
//! that names the capability's source endpoint, and only a capability the
//! hub signed, unexpired, naming itself as destination. The source accepts
//! only a server certificate naming the destination endpoint. All of it is
//! decided before the filesystem is touched.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use ferry_proto::data::{self, ChunkHeader, Frame, Message};
use ferry_proto::task::{Capability, CapabilityError};
use ferry_setup::EndpointDir;
use ferry_setup::tls;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid frame from the peer: {0}")]
    Frame(#[from] data::DataError),
    #[error("cannot load this endpoint's credentials: {0}")]
    Credentials(String),
    #[error("capability refused: {0}")]
    Capability(#[from] CapabilityError),
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
}

/// This endpoint's TLS identity for data connections.
#[derive(Debug)]
pub struct Identity {
    pub endpoint_id: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    endpoint_ca: Vec<CertificateDer<'static>>,
}

impl Identity {
    pub fn load(dir: &EndpointDir, endpoint_id: &str) -> Result<Self, ChannelError> {
        let err = |e: tls::TlsError| ChannelError::Credentials(e.to_string());
        Ok(Self {
            endpoint_id: endpoint_id.to_string(),
            chain: tls::certs_from_file(&dir.cert_file()).map_err(err)?,
            key: tls::key_from_file(&dir.key_file()).map_err(err)?,
            endpoint_ca: tls::certs_from_file(&dir.endpoint_ca_file()).map_err(err)?,
        })
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
        tls::install_crypto_provider();
        let verifier = WebPkiClientVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| ChannelError::Credentials(e.to_string()))?;
        config.alpn_protocols = vec![data::ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// For connecting to a destination endpoint.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ChannelError> {
        tls::client_config(
            &self.endpoint_ca,
            Some((self.chain.clone(), self.key.clone_key())),
            &[data::ALPN],
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

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, ChannelError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = data::frame_len(header)?;
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

pub async fn read_message<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Message, ChannelError> {
    match read_frame(reader).await? {
        Some(Frame::Message(m)) => Ok(m),
        Some(Frame::Chunk(..)) => Err(ChannelError::Protocol(
            "a chunk where a message was due".into(),
        )),
        None => Err(ChannelError::Protocol(
            "the peer closed the connection".into(),
        )),
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
