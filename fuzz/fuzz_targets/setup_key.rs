//! Setup keys (`ferry_proto::setup_key`), as `ferry -setup KEY` reads them
//! from a user's paste, and the hub URL they carry
//! (`ferry_proto::api::https_host_port`, which setup dials).
//!
//! Input: byte 0 even: the key's text as pasted; odd: the parts of a key
//! (`url \0 ca-sha256 (32 bytes) secret`) to encode first.
//!
//! Asserts:
//! - a decoded key has an `https://` URL, a 32-byte CA digest and a secret
//!   of at least 32 characters from the base64url alphabet;
//! - decode → encode gives back exactly the text pasted, less surrounding
//!   whitespace (the encoding is canonical: no two texts for one key);
//! - any key with such parts encodes to a text that decodes to it;
//! - the hub URL's host and port, if they parse, are non-empty, port
//!   non-zero, with no `@`, `/`, `?` or `#` in the host;
//! - fingerprints print as 32 colon-separated upper-case hex pairs.
#![no_main]

use ferry_fuzz::Bytes;
use ferry_proto::api::https_host_port;
use ferry_proto::setup_key::{SetupKey, format_fingerprint};
use libfuzzer_sys::fuzz_target;

fn check_key(key: &SetupKey) {
    assert!(key.hub_url.starts_with("https://"));
    assert!(key.secret.len() >= 32);
    assert!(
        key.secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let fp = format_fingerprint(&key.ca_sha256);
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.split(':').all(|pair| {
        pair.len() == 2
            && pair
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    }));
    if let Ok((host, port)) = https_host_port(&key.hub_url) {
        assert!(!host.is_empty(), "empty host from {:?}", key.hub_url);
        assert_ne!(port, 0);
        assert!(
            !host.contains(['@', '/', '?', '#']),
            "host {host:?} from {:?}",
            key.hub_url
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    if input.u8() % 2 == 0 {
        let Ok(text) = std::str::from_utf8(input.rest()) else {
            return;
        };
        let Ok(key) = SetupKey::decode(text) else {
            return;
        };
        check_key(&key);
        assert_eq!(key.encode(), text.trim(), "decode → encode changed the key");
        assert_eq!(SetupKey::decode(&key.encode()).as_ref(), Ok(&key));
    } else {
        let rest = input.rest();
        let (url, rest) = match rest.iter().position(|b| *b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let mut input = Bytes::new(rest);
        let mut ca_sha256 = [0u8; 32];
        ca_sha256.copy_from_slice(&{
            let mut ca = input.take(32).to_vec();
            ca.resize(32, 0);
            ca
        });
        let key = SetupKey {
            hub_url: format!("https://{}", String::from_utf8_lossy(url)),
            ca_sha256,
            secret: String::from_utf8_lossy(input.rest()).into_owned(),
        };
        let decoded = SetupKey::decode(&key.encode());
        // A paste is trimmed, so trailing white space in the secret goes.
        let secret = key.secret.trim_end().to_string();
        let well_formed = secret.len() >= 32
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if well_formed {
            let expected = SetupKey { secret, ..key };
            assert_eq!(decoded, Ok(expected), "a valid key did not round-trip");
            check_key(decoded.as_ref().unwrap());
        } else {
            assert!(decoded.is_err(), "a bad secret was accepted: {decoded:?}");
        }
    }
});
