//! The hub's certificate authorities: one for its TLS server certificate,
//! one that signs endpoint certificates from their CSRs.
//!
//! A CSR is hostile input: only its public key (and its self-signature,
//! checked by the parser) is used. Names, extensions and validity all come
//! from the hub.

use anyhow::{Context, bail};
use ferry_proto::api::ENDPOINT_URI_PREFIX;
use ferry_proto::setup_key::cert_sha256;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Largest CSR accepted, in bytes of PEM.
pub const MAX_CSR_PEM: usize = 16 * 1024;

/// An issued certificate and its private key.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct CertificateAuthority {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_sha256: [u8; 32],
    issuer: Issuer<'static, KeyPair>,
    /// How long the endpoint certificates this CA signs stay valid.
    endpoint_lifetime: Duration,
}

/// The default life of an endpoint certificate. Endpoints renew over the
/// control channel when a third of it remains, so a daemon that is online
/// at least once a month never notices.
pub const DEFAULT_ENDPOINT_CERT_LIFETIME_SECS: u64 = 90 * 24 * 3600;

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

pub fn new_key_pem() -> anyhow::Result<String> {
    Ok(KeyPair::generate()
        .context("cannot generate a key")?
        .serialize_pem())
}

fn validity(params: &mut CertificateParams, days: i64) {
    validity_for(params, Duration::days(days));
}

fn validity_for(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    // Slack for clocks that run a little behind the hub's: an hour, or a
    // tenth of a short life.
    params.not_before = now - (lifetime / 10i32).min(Duration::hours(1));
    params.not_after = now + lifetime;
}

fn serial(params: &mut CertificateParams) -> anyhow::Result<()> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).context("no randomness for a serial number")?;
    bytes[0] &= 0x7f;
    params.serial_number = Some(bytes.to_vec().into());
    Ok(())
}

impl CertificateAuthority {
    pub fn create(common_name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate().context("cannot generate the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        serial(&mut params)?;
        let cert = params
            .self_signed(&key)
            .context("cannot sign the CA certificate")?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_sha256: cert_sha256(cert.der()),
            issuer: Issuer::new(params, key),
            endpoint_lifetime: Duration::seconds(DEFAULT_ENDPOINT_CERT_LIFETIME_SECS as i64),
        })
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read_to_string(cert_path)
            .with_context(|| format!("cannot read {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a usable key", key_path.display()))?;
        let der = first_cert_der(&cert_pem)
            .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .with_context(|| format!("{} is not a usable CA certificate", cert_path.display()))?;
        Ok(Self {
            cert_sha256: cert_sha256(&der),
            cert_pem,
            key_pem,
            issuer,
            endpoint_lifetime: Duration::seconds(DEFAULT_ENDPOINT_CERT_LIFETIME_SECS as i64),
        })
    }

    /// Endpoint certificates signed from now on live `secs` seconds.
    pub fn with_endpoint_lifetime(mut self, secs: u64) -> Self {
        self.endpoint_lifetime = Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
        self
    }

    /// A TLS server certificate for `host` (a DNS name or an IP address).
    pub fn issue_server_cert(&self, host: &str) -> anyhow::Result<Issued> {
        let key = KeyPair::generate().context("cannot generate the server key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .with_context(|| format!("{host:?} is not a valid host name"))?,
            ),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 825);
        serial(&mut params)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot sign the server certificate")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs an endpoint's CSR: the certificate names the endpoint (URI SAN
    /// and CN) and may authenticate as client and server (the data channel
    /// listens on one side).
    pub fn sign_endpoint_csr(
        &self,
        csr_pem: &str,
        endpoint_id: &str,
    ) -> anyhow::Result<(String, [u8; 32])> {
        self.sign_node_csr(csr_pem, endpoint_id, None)
    }

    /// Signs the CSR of one machine of an endpoint: as
    /// [`Self::sign_endpoint_csr`], and a node other than the primary is
    /// named in a second URI SAN (`NODE_URI_PREFIX`), so admission knows
    /// which of the endpoint's registered certificates to compare.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        endpoint_id: &str,
        node: Option<&str>,
    ) -> anyhow::Result<(String, [u8; 32])> {
        if csr_pem.len() > MAX_CSR_PEM {
            bail!("the certificate request is over {MAX_CSR_PEM} bytes");
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("the certificate request is invalid: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, endpoint_id);
        params.distinguished_name = dn;
        let uri = format!("{ENDPOINT_URI_PREFIX}{endpoint_id}");
        // The DNS name lets a peer endpoint verify this certificate with
        // standard name checks on the data channel; `.invalid` never resolves.
        let dns = ferry_proto::api::endpoint_dns_name(endpoint_id);
        params.subject_alt_names = vec![
            SanType::URI(
                uri.as_str()
                    .try_into()
                    .context("endpoint id is not URI-safe")?,
            ),
            SanType::DnsName(
                dns.as_str()
                    .try_into()
                    .context("endpoint id is not DNS-safe")?,
            ),
        ];
        if let Some(node) = node {
            let uri = format!("{}{node}", ferry_proto::api::NODE_URI_PREFIX);
            params.subject_alt_names.push(SanType::URI(
                uri.as_str()
                    .try_into()
                    .context("node name is not URI-safe")?,
            ));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        validity_for(&mut params, self.endpoint_lifetime);
        serial(&mut params)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .context("cannot sign the endpoint certificate")?;
        Ok((cert.pem(), cert_sha256(cert.der())))
    }
}

/// DER of the first certificate in a PEM bundle.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|c| c.to_vec())
}

pub use ferry_tls::endpoint_id_of;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_csr_becomes_a_certificate_naming_the_endpoint_only() {
        let ca = CertificateAuthority::create("test CA").unwrap();
        // A hostile CSR asking for the hub's own name.
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["hub.example.org".to_string()]).unwrap();
        asked.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let (pem, sha) = ca
            .sign_endpoint_csr(&csr, "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11")
            .unwrap();
        let der = first_cert_der(&pem).unwrap();
        assert_eq!(cert_sha256(&der), sha);
        assert_eq!(
            endpoint_id_of(&der).as_deref(),
            Some("0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11")
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca(), "a CSR must not make itself a CA");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2, "only the hub's names");
        assert_eq!(ferry_tls::node_of(&der), None, "the primary names no node");
    }

    #[test]
    fn a_node_certificate_names_its_endpoint_and_its_node() {
        let ca = CertificateAuthority::create("test CA").unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let id = "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11";
        let (pem, _) = ca.sign_node_csr(&csr, id, Some("node-2")).unwrap();
        let der = first_cert_der(&pem).unwrap();
        assert_eq!(endpoint_id_of(&der).as_deref(), Some(id));
        assert_eq!(ferry_tls::node_of(&der).as_deref(), Some("node-2"));
    }

    #[test]
    fn garbage_and_oversized_csrs_are_refused() {
        let ca = CertificateAuthority::create("test CA").unwrap();
        assert!(
            ca.sign_endpoint_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "x"
            )
            .is_err()
        );
        assert!(
            ca.sign_endpoint_csr(&"A".repeat(MAX_CSR_PEM + 1), "x")
                .is_err()
        );
    }

    #[test]
    fn a_saved_ca_loads_and_still_signs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create("test CA").unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.key"), &ca.key_pem).unwrap();
        let loaded =
            CertificateAuthority::load(&dir.path().join("ca.crt"), &dir.path().join("ca.key"))
                .unwrap();
        assert_eq!(loaded.cert_sha256, ca.cert_sha256);
        loaded.issue_server_cert("127.0.0.1").unwrap();
        loaded.issue_server_cert("hub.example.org").unwrap();
    }
}
