//! The endpoint's key pair and certificate request. The private key is made
//! here and never leaves the machine; the hub only sees the request.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// A fresh key (PEM, PKCS#8) and a CSR (PEM) for it.
pub fn key_and_csr(display_name: &str) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, display_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}
