//! Certificates that age: when an endpoint's certificate is due for
//! renewal (a third of its life left), a CSR for the key it already has,
//! and taking up the certificate the hub sends back. The hub signs it over
//! the control channel, where the endpoint has just proved itself with the
//! certificate it replaces; the key never changes and never leaves.

use crate::EndpointDir;
use ferry_tls::write_atomic;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RenewalError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0} holds no readable certificate")]
    Unreadable(String),
    #[error("cannot make a certificate request: {0}")]
    Request(String),
    #[error("the hub sent a certificate {0}")]
    Rejected(&'static str),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate's life, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// When to ask for the next one: with a third of the life left.
    pub fn renew_at(&self) -> i64 {
        let life = (self.not_after - self.not_before).max(0);
        self.not_after - life / 3
    }

    pub fn due(&self, now: i64) -> bool {
        now >= self.renew_at()
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }
}

fn validity_of_der(der: &[u8]) -> Option<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

fn first_der(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

/// The validity of the certificate in `path` (PEM).
pub fn validity_of_file(path: &Path) -> Result<Validity, RenewalError> {
    let pem = std::fs::read(path).map_err(|e| RenewalError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    first_der(&pem)
        .and_then(|der| validity_of_der(&der))
        .ok_or_else(|| RenewalError::Unreadable(path.display().to_string()))
}

/// A CSR for this endpoint's own key.
pub fn request(dir: &EndpointDir, display_name: &str) -> Result<String, RenewalError> {
    let key_file = dir.key_file();
    let key = std::fs::read_to_string(&key_file).map_err(|e| RenewalError::Read {
        path: key_file.display().to_string(),
        reason: e.to_string(),
    })?;
    ferry_tls::csr::csr_for_key(&key, display_name)
        .map_err(|e| RenewalError::Request(e.to_string()))
}

/// Takes up a certificate from the hub after checking that it names this
/// endpoint, carries this endpoint's own key and lives longer than the
/// one it replaces; written atomically over `endpoint.crt`.
pub fn install(
    dir: &EndpointDir,
    endpoint_id: &str,
    cert_pem: &str,
) -> Result<Validity, RenewalError> {
    let der = first_der(cert_pem.as_bytes()).ok_or(RenewalError::Rejected("that is not PEM"))?;
    if ferry_tls::endpoint_id_of(&der).as_deref() != Some(endpoint_id) {
        return Err(RenewalError::Rejected("for another endpoint"));
    }
    let new = validity_of_der(&der).ok_or(RenewalError::Rejected("that does not parse"))?;
    let old_file = dir.cert_file();
    let old_pem = std::fs::read(&old_file).map_err(|e| RenewalError::Read {
        path: old_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let old = first_der(&old_pem)
        .ok_or_else(|| RenewalError::Unreadable(old_file.display().to_string()))?;
    if public_key(&old) != public_key(&der) || public_key(&der).is_none() {
        return Err(RenewalError::Rejected("for another key"));
    }
    if validity_of_der(&old).is_some_and(|v| new.not_after <= v.not_after) {
        return Err(RenewalError::Rejected(
            "that expires no later than the current one",
        ));
    }
    write_atomic(&old_file, cert_pem.as_bytes(), 0o644).map_err(|source| RenewalError::Write {
        path: old_file.display().to_string(),
        source,
    })?;
    Ok(new)
}

fn public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.public_key().raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_of_the_life_left() {
        let v = Validity {
            not_before: 1000,
            not_after: 1900,
        };
        assert_eq!(v.renew_at(), 1600);
        assert!(!v.due(1599));
        assert!(v.due(1600));
        assert!(!v.expired(1899));
        assert!(v.expired(1900));
        // A nonsensical life (ends before it starts) is due at its end.
        let odd = Validity {
            not_before: 2000,
            not_after: 1000,
        };
        assert_eq!(odd.renew_at(), 1000);
    }
}
