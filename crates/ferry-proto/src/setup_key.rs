//! Setup keys: one-time credentials for `ferry -setup KEY` that also say
//! which hub to talk to and which CA to trust, as `kubeadm join` carries a
//! CA hash. With one, setup needs nothing else and trusts no one blindly.
//!
//! Form: `FSK1.<hub URL, base64url>.<CA SHA-256, base64url>.<secret>`.
//! The hub stores only a hash of the whole key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use thiserror::Error;

const PREFIX: &str = "FSK1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupKey {
    pub hub_url: String,
    /// SHA-256 of the DER of the CA the hub's TLS certificate chains to.
    pub ca_sha256: [u8; 32],
    /// The random part (base64url).
    pub secret: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetupKeyError {
    #[error(
        "not a ferry setup key (it should start with {PREFIX}.); copy it again from `ferry endpoint create` or the hub admin"
    )]
    NotAKey,
    #[error("the setup key is damaged ({0}); copy it again in full")]
    Damaged(&'static str),
}

impl SetupKey {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}.{}.{}.{}",
            B64.encode(self.hub_url.as_bytes()),
            B64.encode(self.ca_sha256),
            self.secret
        )
    }

    pub fn decode(text: &str) -> Result<Self, SetupKeyError> {
        let text = text.trim();
        let mut parts = text.split('.');
        if parts.next() != Some(PREFIX) {
            return Err(SetupKeyError::NotAKey);
        }
        let (Some(url), Some(ca), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SetupKeyError::Damaged("wrong number of parts"));
        };
        let url = B64
            .decode(url)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .filter(|u| u.starts_with("https://"))
            .ok_or(SetupKeyError::Damaged("hub URL unreadable"))?;
        let ca_sha256: [u8; 32] = B64
            .decode(ca)
            .ok()
            .and_then(|c| c.try_into().ok())
            .ok_or(SetupKeyError::Damaged("CA fingerprint unreadable"))?;
        if secret.len() < 32
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SetupKeyError::Damaged("secret unreadable"));
        }
        Ok(Self {
            hub_url: url,
            ca_sha256,
            secret: secret.to_string(),
        })
    }
}

/// `AB:CD:...`, as `openssl x509 -noout -fingerprint -sha256` prints it, so
/// an operator can compare with standard tools.
pub fn format_fingerprint(sha256: &[u8; 32]) -> String {
    sha256
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of a certificate's DER.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SetupKey {
        SetupKey {
            hub_url: "https://hub.example.org:8443".into(),
            ca_sha256: [7; 32],
            secret: "x".repeat(43),
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let k = key();
        assert_eq!(SetupKey::decode(&k.encode()).unwrap(), k);
        assert_eq!(SetupKey::decode(&format!("  {}\n", k.encode())).unwrap(), k);
        assert_eq!(SetupKey::decode("hello"), Err(SetupKeyError::NotAKey));
        let text = k.encode();
        assert!(SetupKey::decode(&text[..text.len() - 20]).is_err());
        assert!(SetupKey::decode(&format!("{text}.extra")).is_err());
        assert!(SetupKey::decode(&text.replace("FSK1.", "FSK1.!!")).is_err());
    }

    #[test]
    fn fingerprints_look_like_openssl() {
        assert!(format_fingerprint(&[0xab; 32]).starts_with("AB:AB:"));
        assert_eq!(format_fingerprint(&[0; 32]).len(), 32 * 3 - 1);
    }
}
