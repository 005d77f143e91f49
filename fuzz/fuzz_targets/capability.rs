//! Capabilities: the sealed, hub-signed authorisation of one task attempt
//! (`ferry_proto::task::Capability::{open, seal, parse_verified}`) and the
//! destination's check of one (`ferry_mover::channel::verify_capability`),
//! with a P-256 key made for the run.
//!
//! Input: byte 0 selects a mode:
//! - 0: `sealed text` as a peer sends it;
//! - 1: `now (8 bytes) | tamper position (2) | tamper char (1) | body`:
//!   the body is signed with the run's key, sealed, verified, then one
//!   character of the sealed text is changed and it is verified again;
//! - 2: `key length (1) | verifying key | sealed text`: a hostile key.
//!
//! Asserts:
//! - `open` → `seal` gives back exactly the sealed text (base64url without
//!   padding is canonical), and nothing over `MAX_CAPABILITY` is opened;
//! - a parsed body re-encodes (`body`) to one that parses equal;
//! - a capability signed by the hub's key verifies exactly when its body
//!   is a capability that has not expired, and then verifies to that body;
//! - a sealed text whose body was changed never verifies (`BadSignature`),
//!   nor does a capability checked against another key;
//! - a hostile verifying key makes nothing panic, and whatever verifies is
//!   the capability its body spells.
#![no_main]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use ferry_fuzz::Bytes;
use ferry_mover::channel::verify_capability;
use ferry_proto::task::{Capability, CapabilityError, MAX_CAPABILITY};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

struct Keys {
    hub: EcdsaKeyPair,
    other: EcdsaKeyPair,
    rng: SystemRandom,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        hub: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("a key"),
        other: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("a key"),
        rng: SystemRandom::new(),
    })
}

/// Checks `open`, `seal` and `parse_verified` on a sealed text.
fn check_open(sealed: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let opened = Capability::open(sealed);
    if sealed.len() > MAX_CAPABILITY {
        assert_eq!(opened, Err(CapabilityError::TooLarge));
        return None;
    }
    let (body, sig) = opened.ok()?;
    assert_eq!(
        Capability::seal(&body, &sig),
        sealed,
        "open → seal changed it"
    );
    if let Ok(cap) = Capability::parse_verified(&body) {
        let again = cap.body();
        assert_eq!(Capability::parse_verified(&again).as_ref(), Ok(&cap));
        assert_eq!(cap.body(), again, "body() is not stable");
    }
    Some((body, sig))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let keys = keys();
    let hub_key = keys.hub.public_key().as_ref();
    let other_key = keys.other.public_key().as_ref();
    match input.u8() % 3 {
        0 => {
            let Ok(sealed) = std::str::from_utf8(input.rest()) else {
                return;
            };
            let opened = check_open(sealed);
            if let Ok(cap) = verify_capability(sealed, hub_key, 0) {
                let (body, _) = opened.expect("a verified capability opens");
                assert_eq!(Capability::parse_verified(&body).as_ref(), Ok(&cap));
                assert!(cap.expires >= 0);
            }
        }
        1 => {
            let now = i64::from_be_bytes(input.take(8).try_into().unwrap_or_default());
            let position = usize::from(input.u16());
            let with = ALPHABET[usize::from(input.u8()) % ALPHABET.len()];
            let body = input.rest();
            let signature = keys.hub.sign(&keys.rng, body).expect("signing");
            let sealed = Capability::seal(body, signature.as_ref());
            assert_eq!(
                check_open(&sealed),
                Some((body.to_vec(), signature.as_ref().to_vec()))
            );

            let verdict = verify_capability(&sealed, hub_key, now);
            let expected = match Capability::parse_verified(body) {
                Err(e) => Err(e),
                Ok(cap) if cap.expires < now => Err(CapabilityError::Expired),
                Ok(cap) => Ok(cap),
            };
            assert_eq!(verdict, expected, "a signed capability");
            assert_eq!(
                verify_capability(&sealed, other_key, now).err(),
                Some(CapabilityError::BadSignature),
                "verified with another key"
            );

            let mut tampered = sealed.clone().into_bytes();
            let at = position % tampered.len();
            tampered[at] = with;
            let tampered = String::from_utf8(tampered).expect("ASCII");
            if tampered == sealed {
                return;
            }
            let verdict = verify_capability(&tampered, hub_key, now);
            match Capability::open(&tampered) {
                Ok((b, _)) if b != body => assert_eq!(
                    verdict.err(),
                    Some(CapabilityError::BadSignature),
                    "a changed body verified"
                ),
                // Only the signature changed: it may not verify, and if it
                // does, it says what was signed.
                Ok(_) => assert!(verdict.is_err() || verdict == expected),
                Err(e) => assert_eq!(verdict.err(), Some(e)),
            }
        }
        _ => {
            let n = usize::from(input.u8());
            let key = input.take(n);
            let Ok(sealed) = std::str::from_utf8(input.rest()) else {
                return;
            };
            check_open(sealed);
            // Whatever key a hostile hub announces: no panic, and anything
            // accepted is the capability its body spells.
            if let Ok(cap) = verify_capability(sealed, key, i64::MIN) {
                let (body, _) = Capability::open(sealed).expect("it opened");
                assert_eq!(Capability::parse_verified(&body).as_ref(), Ok(&cap));
            }
        }
    }
});
