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
/// The feature (in the control hello) of an endpoint that sends and
/// receives relayed data streams: the hub may offer it the relay in a
/// task start and ask it to dial back for one (`relay_dial`).
pub const RELAY_FEATURE: &str = "relay";
/// Longest reason a relay hello may give, in bytes.
pub const MAX_REASON: usize = 512;
/// Longest task id a relay hello may name, in bytes (they are UUIDs).
pub const MAX_TASK_ID: usize = 64;

/// The endpoint's first frame on a dial-back connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayHello {
    /// The answer to the hub's request for a stream: the token it sent.
    Dialback { token: String },
    /// A task's source asks for data stream `stream` of `attempt` to be
    /// relayed to the destination, which it could not reach directly
    /// (`reason`, for the task's events). The endpoints' own TLS runs
    /// inside, end to end, once the hub answers `accepted`.
    Relay {
        task_id: String,
        attempt: u32,
        stream: u16,
        #[serde(default)]
        reason: String,
    },
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
        RelayHello::Relay { task_id, .. } if task_id.is_empty() || task_id.len() > MAX_TASK_ID => {
            Err(RelayError::Malformed(format!(
                "a task id must be 1 to {MAX_TASK_ID} bytes"
            )))
        }
        RelayHello::Relay { reason, .. } if reason.len() > MAX_REASON => Err(
            RelayError::Malformed(format!("a reason must be at most {MAX_REASON} bytes")),
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
        let relay = |task: &str, reason: &str| {
            format!(
                r#"{{"kind":"relay","task_id":"{task}","attempt":1,"stream":0,"reason":"{reason}"}}"#
            )
        };
        assert!(decode_hello(relay("", "").as_bytes()).is_err());
        assert!(decode_hello(relay(&"t".repeat(MAX_TASK_ID + 1), "").as_bytes()).is_err());
        assert!(decode_hello(relay("t", &"r".repeat(MAX_REASON + 1)).as_bytes()).is_err());
        assert_eq!(
            decode_hello(relay("t", "cannot connect").as_bytes()).unwrap(),
            RelayHello::Relay {
                task_id: "t".into(),
                attempt: 1,
                stream: 0,
                reason: "cannot connect".into()
            }
        );
    }
}
