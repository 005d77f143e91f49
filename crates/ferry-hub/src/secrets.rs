//! Random secrets, how they are stored (hashed), and how they are compared
//! (in constant time). Passwords get argon2; tokens, codes and setup keys
//! are long random strings, so a plain SHA-256 is the right stored form.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

/// A random URL-safe secret of `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(B64.encode(buf))
}

/// The stored form of a token: SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordVerifier::<str>::verify_password(
        &argon2::Argon2::default(),
        password.as_bytes(),
        stored,
    )
    .is_ok()
}

/// A key only this hub process knows, for tagging what it hands out and
/// must recognise when it comes back (the sign-in form's CSRF token).
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }

    /// The key as text (URL-safe base64), to store where other hub
    /// instances read it (`cluster::shared_mac_key`).
    pub fn to_text(&self) -> String {
        B64.encode(self.0)
    }

    /// A key [`MacKey::to_text`] wrote; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        B64.decode(text).ok()?.try_into().ok().map(Self)
    }

    /// HMAC-SHA256 (RFC 2104) over `purpose`, a NUL, then `message`, so a
    /// tag made for one purpose never verifies for another.
    pub fn tag(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        const BLOCK: usize = 64;
        let mut inner = [0x36u8; BLOCK];
        let mut outer = [0x5cu8; BLOCK];
        for (i, k) in self.0.iter().enumerate() {
            inner[i] ^= k;
            outer[i] ^= k;
        }
        let inner_hash = Sha256::new()
            .chain_update(inner)
            .chain_update(purpose.as_bytes())
            .chain_update([0u8])
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(outer)
            .chain_update(inner_hash)
            .finalize()
            .into()
    }

    /// [`MacKey::tag`], URL-safe base64.
    pub fn tag_text(&self, purpose: &str, message: &[u8]) -> String {
        B64.encode(self.tag(purpose, message))
    }
}

/// RFC 7636 S256: the challenge for `verifier`, BASE64URL(SHA256(verifier)).
pub fn pkce_s256_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_key_read_back_from_its_text_tags_alike() {
        let key = MacKey::generate().unwrap();
        let again = MacKey::from_text(&key.to_text()).unwrap();
        assert_eq!(key.tag("p", b"m"), again.tag("p", b"m"));
        assert!(MacKey::from_text("short").is_none());
        assert!(MacKey::from_text("not base64 !").is_none());
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let stored = hash_password("correct horse").unwrap();
        assert!(stored.starts_with("$argon2"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("correct horse ", &stored));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        // RFC 7636 appendix B.
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "other",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn mac_tags_are_hmac_sha256_over_purpose_nul_message() {
        // HMAC zero-pads keys to the block, so the 4-byte key "Jefe" of
        // RFC 4231 test case 2 equals "Jefe" and 28 zero bytes. Expected
        // value computed independently:
        // hmac.new(b"Jefe", b"p\0what do ya want for nothing?", "sha256").
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let key = MacKey(key);
        assert_eq!(
            hex(&key.tag("p", b"what do ya want for nothing?")),
            "e6884d94356713ca0ed92d13ba82a7ab2bb88331e2c8a3ca7af2da40572e91f4"
        );
        assert_ne!(
            key.tag("q", b"what do ya want for nothing?"),
            key.tag("p", b"what do ya want for nothing?")
        );
        assert_ne!(
            MacKey::generate().unwrap().tag("p", b"x"),
            MacKey::generate().unwrap().tag("p", b"x")
        );
        assert_eq!(format!("{key:?}"), "MacKey(..)");
    }

    #[test]
    fn tokens_are_random_and_compare_exactly() {
        let a = random_token(32).unwrap();
        assert_ne!(a, random_token(32).unwrap());
        assert_eq!(a.len(), 43);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), &a.as_bytes()[1..]));
    }
}
