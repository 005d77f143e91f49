//! Paths and names as they travel in JSON: bytes, exactly.
//!
//! POSIX names are bytes, JSON strings are Unicode. A [`WirePath`] is sent
//! as a string in which every byte that is not part of valid UTF-8, and
//! every `%`, is written `%XX`. Ordinary names read as themselves; odd ones
//! round-trip exactly.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::{OsStr, OsString};
use std::fmt::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct WirePath(Vec<u8>);

impl WirePath {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
    pub fn to_path_buf(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.0.clone()))
    }

    /// The escaped text form (what JSON carries).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '%' {
                    out.push_str("%25");
                } else {
                    out.push(c);
                }
            }
            for b in chunk.invalid() {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    }

    /// Parses the escaped text form.
    pub fn decode(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!("bad %-escape in path {text:?}: use %25 for a literal %")
                    })?;
                out.push(hex);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Ok(Self(out))
    }
}

impl From<&Path> for WirePath {
    fn from(p: &Path) -> Self {
        Self(p.as_os_str().as_bytes().to_vec())
    }
}

impl From<&OsStr> for WirePath {
    fn from(p: &OsStr) -> Self {
        Self(p.as_bytes().to_vec())
    }
}

impl std::fmt::Display for WirePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

impl Serialize for WirePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for WirePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        WirePath::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// A string: bytes that are not UTF-8, and `%`, written `%XX`.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for WirePath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WirePath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_names_read_as_themselves() {
        assert_eq!(
            WirePath::from_bytes("/data/run 1/é.h5").encode(),
            "/data/run 1/é.h5"
        );
        assert_eq!(WirePath::from_bytes("100%").encode(), "100%25");
        assert_eq!(WirePath::from_bytes(b"a\xffb".to_vec()).encode(), "a%FFb");
        assert!(WirePath::decode("bad%zz").is_err());
        assert!(WirePath::decode("trailing%2").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_through_json(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let p = WirePath::from_bytes(bytes);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<WirePath>(&json).unwrap(), p);
        }
    }
}
