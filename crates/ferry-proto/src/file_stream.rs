//! A file's bytes over a dial-back connection (HTTPS through the hub).
//!
//! After the hub accepted the endpoint's dial-back ([`crate::relay`]), the
//! endpoint opens the file the `file_stream` control message named and
//! sends one [`StreamHead`] frame: its size and validators, or why not.
//! The hub, having weighed the HTTP request's range and conditions against
//! them, answers one [`StreamSend`] frame, and the endpoint sends exactly
//! `length` raw bytes from `offset`, then closes. A `length` of 0 ends
//! the exchange without bytes (HEAD, 304, 416).

use crate::frame::{self, FrameError};
use serde::{Deserialize, Serialize};

/// Largest head or send frame.
pub const MAX_FRAME: usize = 4 * 1024;

/// The endpoint's first frame: the file it opened, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamHead {
    File {
        size: u64,
        /// Modification time, Unix seconds.
        mtime: i64,
        /// A strong validator: changes when the file's size, modification
        /// time (to the nanosecond) or inode changes.
        etag: String,
    },
    /// Not readable here (missing, refused by config-paths or the grant,
    /// a directory): the endpoint's words, and whether it is "not found".
    Failed { message: String, not_found: bool },
}

/// The hub's answer to a [`StreamHead::File`]: which bytes to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSend {
    pub offset: u64,
    pub length: u64,
}

/// One frame carrying `message`.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message).map_err(|_| FrameError::Empty)?;
    frame::encode(&body, MAX_FRAME)
}

pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed file stream frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let head = StreamHead::File {
            size: 1 << 40,
            mtime: 1_700_000_000,
            etag: "\"1-2-3\"".into(),
        };
        let bytes = encode(&head).unwrap();
        assert_eq!(decode::<StreamHead>(&bytes[4..]).unwrap(), head);
        let send = StreamSend {
            offset: 5,
            length: 10,
        };
        assert_eq!(
            decode::<StreamSend>(&encode(&send).unwrap()[4..]).unwrap(),
            send
        );
        assert!(decode::<StreamSend>(b"{\"offset\":1}").is_err());
    }
}

/// What the hub asks of an upload (`PUT .../files/{path}?upload=ID`): the
/// bytes `offset..offset+length` of a `total`-byte file, or (`offset`
/// absent) only how much has arrived. The endpoint keeps what arrived in
/// the target's temporary, named by `id`, and renames it onto the target
/// once all `total` bytes are there and their SHA-256 is `sha256` (hex),
/// when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAsk {
    pub id: String,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub length: u64,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Most characters of an upload id: ASCII letters and digits only, so it
/// names the temporary as a task id does.
pub const MAX_UPLOAD_ID: usize = 64;

/// Whether `id` may name an upload.
pub fn valid_upload_id(id: &str) -> bool {
    (8..=MAX_UPLOAD_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The endpoint's first frame of an upload: how many bytes arrived so
/// far; the hub sends bytes only when that is the asked offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UploadHead {
    Ready { received: u64 },
    Failed { message: String, not_found: bool },
}

/// The endpoint's last frame, once the bytes were written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UploadEnd {
    /// More is expected.
    Received {
        received: u64,
    },
    /// Every byte is there, checked, and renamed onto the target.
    Complete {
        sha256: String,
    },
    Failed {
        message: String,
    },
}
