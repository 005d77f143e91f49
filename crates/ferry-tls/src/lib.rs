//! TLS and PKI helpers shared by the endpoints and the hub: the crypto
//! provider and its cipher preferences, client configs trusting exactly a
//! given CA, the start of every server config, reading PEM certificates and
//! keys, endpoint ids from certificates, (in [`csr`]) the endpoint's key
//! pair and certificate requests, and [`write_atomic`], which puts keys,
//! certificates and tokens on disk whole and with their mode.
//!
//! The daemon's control channel, the CLI's REST calls, the mover's data
//! connections and the hub's one TLS port build their configs here, so all
//! of them trust the same things and prefer the same ciphers.

mod atomic;
pub mod csr;

pub use atomic::write_atomic;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{what} holds no certificate")]
    NoCertificate { what: String },
    #[error("unusable TLS configuration: {0}")]
    Config(String),
}

/// Uses aws-lc-rs as rustls' crypto everywhere in the process. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// aws-lc-rs with AES-128-GCM preferred: as safe, and faster per byte than
/// AES-256 on the data path, where encryption is a large part of the CPU
/// cost. Servers follow the client's order.
pub fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
            _ => 2,
        });
    provider
}

/// The start of every server config: [`provider`], so a server (the hub's
/// port, an endpoint's data listener) has the same cipher preferences as
/// the clients, with rustls' safe protocol versions.
pub fn server_config_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TlsError> {
    install_crypto_provider();
    rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Certificates from PEM text.
pub fn certs_from_pem(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_string(),
        });
    }
    Ok(certs)
}

pub fn certs_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read_to_string(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    certs_from_pem(&pem, &path.display().to_string())
}

pub fn key_from_file(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A client config trusting exactly `roots`, presenting `identity` if given,
/// offering `alpn`.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    install_crypto_provider();
    let mut store = RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(store);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The endpoint id a certificate names in its URI SAN.
pub fn endpoint_id_of(cert_der: &[u8]) -> Option<String> {
    uri_san(cert_der, ferry_proto::api::ENDPOINT_URI_PREFIX)
}

/// The node of its endpoint a certificate names in its second URI SAN;
/// `None`: the endpoint's primary machine (every certificate signed before
/// endpoints had nodes).
pub fn node_of(cert_der: &[u8]) -> Option<String> {
    uri_san(cert_der, ferry_proto::api::NODE_URI_PREFIX)
}

/// The rest of the first URI SAN that starts with `prefix`.
fn uri_san(cert_der: &[u8], prefix: &str) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(prefix).map(str::to_string)
        }
        _ => None,
    })
}
