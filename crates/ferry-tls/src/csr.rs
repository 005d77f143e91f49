//! The endpoint's key pair and certificate request. The private key is made
//! here and never leaves the machine; the hub only sees the request.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// A fresh key (PEM, PKCS#8) and a CSR (PEM) for it.
pub fn key_and_csr(display_name: &str) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let csr = csr_for(&key, display_name)?;
    Ok((key.serialize_pem(), csr))
}

/// A CSR (PEM) for the key this endpoint already has: a renewal keeps it.
pub fn csr_for_key(key_pem: &str, display_name: &str) -> Result<String, rcgen::Error> {
    csr_for(&KeyPair::from_pem(key_pem)?, display_name)
}

fn csr_for(key: &KeyPair, display_name: &str) -> Result<String, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, display_name);
    params.distinguished_name = dn;
    params.serialize_request(key)?.pem()
}
