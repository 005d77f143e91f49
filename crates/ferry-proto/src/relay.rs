//! Endpoint → hub dial-back connections ("rendezvous").
//!
//! When the hub needs a stream of bytes with an endpoint (an HTTPS download
//! or upload, a relayed transfer), it cannot open a connection to the
//! endpoint: endpoints dial out only. So the hub asks over the control
//! channel, and the endpoint opens a new TLS connection to the hub's one
//! port with its own certificate and ALPN [`ALPN`]. Its first frame is a
//! [`RelayHello`] naming the single-use token the hub handed out; the hub
//! answers one [`RelayAnswer`] frame, after which the stream belongs to
//! whatever the token was for.

use crate::frame::{self, FrameError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The ALPN id of a dial-back connection on the hub's port.
pub const ALPN: &[u8] = b"ferry-relay/1";
/// Largest hello or answer frame.
pub const MAX_FRAME: usize = 4 * 1024;
/// Largest token a hello may carry (the hub's are 64 hex digits).
pub const MAX_TOKEN: usize = 128;

/// The endpoint's first frame on a dial-back connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayHello {
    /// The answer to the hub's request for a stream: the token it sent.
    Dialback { token: String },
}

/// The hub's one answer to a [`RelayHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayAnswer {
    Accepted,
    Refused { reason: String },
}

/// Why a hello or an answer could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelayError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("malformed relay frame: {0}")]
    Malformed(String),
}

/// The frame (header and body) that carries `message`.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, RelayError> {
    let body = serde_json::to_vec(message).map_err(|e| RelayError::Malformed(e.to_string()))?;
    Ok(frame::encode(&body, MAX_FRAME)?)
}

/// A frame body's message. A hello's token is bounded here, so callers
/// never look up an oversized one.
pub fn decode_hello(body: &[u8]) -> Result<RelayHello, RelayError> {
    let hello: RelayHello =
        serde_json::from_slice(body).map_err(|e| RelayError::Malformed(e.to_string()))?;
    match &hello {
        RelayHello::Dialback { token } if token.is_empty() || token.len() > MAX_TOKEN => Err(
            RelayError::Malformed(format!("a token must be 1 to {MAX_TOKEN} bytes")),
        ),
        _ => Ok(hello),
    }
}

pub fn decode_answer(body: &[u8]) -> Result<RelayAnswer, RelayError> {
    serde_json::from_slice(body).map_err(|e| RelayError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;

    fn body(frame: Vec<u8>) -> Vec<u8> {
        let mut dec = FrameDecoder::new(MAX_FRAME);
        dec.push(&frame);
        dec.next_frame().unwrap().unwrap()
    }

    #[test]
    fn hello_and_answer_round_trip() {
        let hello = RelayHello::Dialback {
            token: "ab".repeat(32),
        };
        assert_eq!(decode_hello(&body(encode(&hello).unwrap())).unwrap(), hello);
        let refused = RelayAnswer::Refused {
            reason: "expired".into(),
        };
        assert_eq!(
            decode_answer(&body(encode(&refused).unwrap())).unwrap(),
            refused
        );
        assert_eq!(
            String::from_utf8(body(encode(&RelayAnswer::Accepted).unwrap())).unwrap(),
            r#"{"kind":"accepted"}"#
        );
    }

    #[test]
    fn hostile_hellos_are_refused() {
        assert!(decode_hello(br#"{"kind":"dialback","token":""}"#).is_err());
        let long = format!(
            r#"{{"kind":"dialback","token":"{}"}}"#,
            "a".repeat(MAX_TOKEN + 1)
        );
        assert!(decode_hello(long.as_bytes()).is_err());
        assert!(decode_hello(br#"{"kind":"unheard_of"}"#).is_err());
        assert!(decode_hello(b"\xff").is_err());
    }
}
