//! The local API: what `ferry` (the CLI) and the endpoint daemon say to each
//! other over the Unix socket in the config dir.
//!
//! One request and one response per frame, JSON bodies in [`crate::frame`]s
//! of at most [`MAX_FRAME`] bytes. Every message carries [`VERSION`]; a peer
//! speaking another version gets an error response naming both versions, so
//! an upgraded CLI facing an old daemon says "restart the daemon" rather than
//! failing to parse.
//!
//! Version history:
//! - 1 (2026-11): status, stop, pause, unpause, reload. Later additions
//!   within 1 are optional fields a peer may leave out (`policy_problem`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The local API version this build speaks.
pub const VERSION: u32 = 1;

/// Largest frame either side accepts. Requests are tiny; a status report is a
/// few hundred bytes. The limit keeps a hostile local client from making the
/// daemon buffer much.
pub const MAX_FRAME: usize = 64 * 1024;

/// What the CLI may ask. A closed set: the daemon has no generic "run this".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Report hub link, transfer activity and policy.
    Status,
    /// Checkpoint and exit; the reply comes before the exit.
    Stop,
    /// Stop taking data work; checkpoint what runs.
    Pause,
    /// Resume data work.
    Unpause,
    /// Re-read config-paths, as SIGHUP does.
    Reload,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Box<StatusReport>),
    /// The request was accepted and carried out (stop: the daemon is exiting).
    Done {
        message: String,
    },
    /// The request was refused; `message` is one line for the user.
    Error {
        message: String,
    },
}

/// The hub link as the user sees it in `ferry -status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubState {
    Connected,
    Connecting,
    Disconnected,
    Paused,
}

impl HubState {
    /// The word the contract prints after `Hub: `.
    pub fn as_str(self) -> &'static str {
        match self {
            HubState::Connected => "connected",
            HubState::Connecting => "connecting",
            HubState::Disconnected => "disconnected",
            HubState::Paused => "paused",
        }
    }
}

/// Whether data work is running, as printed after `Transfer Status: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    Idle,
    Active,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Idle => "idle",
            TransferState::Active => "active",
        }
    }
}

/// Where the daemon's path policy came from, so `ferry paths check` can
/// explain decisions with the policy the daemon really enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PolicySource {
    /// The config-paths file (as last loaded successfully).
    ConfigPaths { file: String, rules: usize },
    /// `-restrict-paths SPEC` given at start; config-paths is ignored.
    RestrictPaths { spec: String, rules: usize },
}

/// The daemon's answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub version: String,
    pub config_dir: String,
    pub endpoint_id: String,
    pub endpoint_name: String,
    pub hub_url: String,
    pub hub: HubState,
    /// Why the link is not connected, in words a user can act on.
    pub hub_detail: Option<String>,
    pub transfer: TransferState,
    pub paused: bool,
    /// While paused: the tasks whose data work the pause holds back (they
    /// wait at the hub until `ferry -unpause`).
    #[serde(default)]
    pub held_tasks: Vec<String>,
    pub policy: PolicySource,
    /// Why the last re-read of config-paths failed (naming the line), while
    /// the policy before it stays in force; none once a re-read succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_problem: Option<String>,
    pub uptime_secs: u64,
    /// Which machine of its endpoint this daemon is: `primary`, or the
    /// node it joined as (`ferry endpoint add-node`); absent from an
    /// older daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Why a local API message could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(
        "local API version {theirs} is not spoken here (this ferry speaks {ours}); restart the daemon after upgrading ferry"
    )]
    Version { theirs: u32, ours: u32 },
    #[error("malformed local API message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Serializes a request or response with the version envelope.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    // Serializing these plain enums cannot fail: no maps with non-string
    // keys, no custom serializers. Fall back to an empty body if it ever did,
    // which the peer reports as malformed rather than us panicking.
    serde_json::to_vec(&Envelope { v: VERSION, body }).unwrap_or_default()
}

/// Parses a request or response, checking the version first so a mismatch
/// is reported as such and not as a parse error.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let VersionOnly { v } = serde_json::from_slice(bytes)?;
    if v != VERSION {
        return Err(DecodeError::Version {
            theirs: v,
            ours: VERSION,
        });
    }
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            pid: 42,
            version: "0.1.0".into(),
            config_dir: "/home/u/.ferry".into(),
            endpoint_id: "e".into(),
            endpoint_name: "laptop".into(),
            hub_url: "https://hub:8443".into(),
            hub: HubState::Disconnected,
            hub_detail: Some("connection refused".into()),
            transfer: TransferState::Idle,
            paused: false,
            held_tasks: vec![],
            policy: PolicySource::ConfigPaths {
                file: "/home/u/.ferry/config-paths".into(),
                rules: 1,
            },
            policy_problem: None,
            uptime_secs: 3,
            node: None,
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for req in [
            Request::Status,
            Request::Stop,
            Request::Pause,
            Request::Unpause,
            Request::Reload,
        ] {
            assert_eq!(decode::<Request>(&encode(&req)).unwrap(), req);
        }
        let resp = Response::Status(Box::new(report()));
        assert_eq!(decode::<Response>(&encode(&resp)).unwrap(), resp);
    }

    #[test]
    fn wire_form_is_stable() {
        assert_eq!(encode(&Request::Stop), br#"{"v":1,"op":"stop"}"#);
    }

    #[test]
    fn another_version_is_named_not_misparsed() {
        let err = decode::<Request>(br#"{"v":2,"op":"teleport"}"#).unwrap_err();
        assert!(matches!(err, DecodeError::Version { theirs: 2, ours: 1 }));
        assert!(err.to_string().contains("restart the daemon"));
    }

    #[test]
    fn unknown_operations_and_garbage_are_malformed() {
        assert!(matches!(
            decode::<Request>(br#"{"v":1,"op":"exec","cmd":"sh"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Request>(b"\xff\x00"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
