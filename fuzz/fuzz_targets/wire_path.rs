//! Wire paths (`ferry_proto::wire_path::WirePath`): names as bytes in JSON
//! strings, `%XX` for every byte outside valid UTF-8 and for `%` itself;
//! and `ferry_paths::resolve_endpoint_path`, which spells `/~/` on the
//! endpoint for the paths that arrive this way.
//!
//! Input: byte 0 even: any bytes as a name; odd: a wire text as received.
//!
//! Asserts:
//! - bytes → encode → decode gives back exactly the bytes, through JSON
//!   too; the encoding is valid UTF-8 in which every `%` starts a `%XX`
//!   escape with upper-case hex;
//! - a wire text that decodes re-encodes to a text that decodes to the same
//!   bytes (decode → encode → decode), and the JSON form does the same;
//! - a resolved endpoint path is absolute; `/~/...` and `~/...` land under
//!   home, everything else is used as given.
#![no_main]

use ferry_fuzz::Bytes;
use ferry_paths::resolve_endpoint_path;
use ferry_proto::wire_path::WirePath;
use libfuzzer_sys::fuzz_target;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const HOME: &str = "/home/u";

fn check_encoding(path: &WirePath) -> String {
    let text = path.encode();
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3).expect("a whole escape");
            assert!(
                hex.iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape {:?} in {text:?}",
                String::from_utf8_lossy(hex)
            );
        }
    }
    assert_eq!(
        WirePath::decode(&text).as_ref(),
        Ok(path),
        "encode → decode"
    );
    let json = serde_json::to_string(path).unwrap();
    assert_eq!(
        serde_json::from_str::<WirePath>(&json).ok().as_ref(),
        Some(path)
    );
    assert_eq!(path.to_string(), text);
    text
}

fn check_resolve(path: &WirePath) {
    let bytes = path.as_bytes();
    let Ok(resolved) = resolve_endpoint_path(Path::new(HOME), bytes) else {
        assert!(bytes.first() != Some(&b'/') && bytes != b"~" && !bytes.starts_with(b"~/"));
        return;
    };
    assert!(resolved.is_absolute(), "{resolved:?}");
    if bytes.starts_with(b"/~/") || bytes.starts_with(b"~/") || bytes == b"/~" || bytes == b"~" {
        assert!(resolved.starts_with(HOME), "{resolved:?} not under home");
    } else {
        assert_eq!(resolved.as_os_str().as_bytes(), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    if input.u8() % 2 == 0 {
        let path = WirePath::from_bytes(input.rest());
        check_encoding(&path);
        check_resolve(&path);
    } else {
        let Ok(text) = std::str::from_utf8(input.rest()) else {
            return;
        };
        let Ok(path) = WirePath::decode(text) else {
            assert!(text.contains('%'), "{text:?} refused without a %");
            return;
        };
        let again = check_encoding(&path);
        if !text.contains('%') {
            assert_eq!(again, text, "a text without escapes reads as itself");
        }
        let json = serde_json::to_string(text).unwrap();
        assert_eq!(
            serde_json::from_str::<WirePath>(&json).ok(),
            Some(path.clone())
        );
        check_resolve(&path);
    }
});
