//! The control channel between an endpoint daemon and the hub, as two state
//! machines without I/O (in the manner of quinn-proto): bytes and `now` go
//! in, frames to send, deadlines and events come out. The daemon and the
//! hub each own a socket and drive one side.
//!
//! The endpoint speaks first (`Hello` with the versions it speaks); the hub
//! answers `Welcome` or `Refuse`. Before that exchange completes, nothing but
//! the handshake is accepted. Afterwards the hub keeps the beat: it pings
//! once per heartbeat interval on a fixed schedule (its replies and requests
//! do not move it), and each beat is also when the hub re-checks the
//! endpoint's admission ([`HubTimeout::Beat`]). The endpoint answers, and
//! pings on its own only when the hub has been quiet for 1.5 intervals, so
//! an idle link costs one round per interval. Either side declares the link
//! dead when it has heard nothing for [`DEAD_AFTER_INTERVALS`] intervals.
//!
//! Protocol versions (one number, dated history):
//! - 1 (2026-11): hello/welcome/refuse, ping/pong, file operations.
//!   Later additions within 1, each optional on the wire so either side may
//!   be older: the welcome's `revoked_endpoints`, `revoked`, and
//!   `task_cancel`'s `through_attempt`; `renew_certificate` and its answer
//!   `certificate` (2026-11-29); a task report's `side`, and the
//!   `deleted` report with the welcome's `deleted_reports` (2026-11-29:
//!   an older hub would drop the link on a report kind it does not know,
//!   so it is sent none; a hub from then on ignores one); the hello's
//!   `paused`, the welcome's `pause_notices`, and `paused`, which an
//!   endpoint sends only to a hub whose welcome asked for it (an older
//!   hub would refuse the unknown message).

use crate::api::{FsOp, FsOutcome};
use crate::frame::{self, FrameDecoder, FrameError};
use crate::share::ShareGrant;
use crate::task::TaskReport;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The ALPN id that sends a TLS connection to the control channel rather
/// than to the web/API side of the hub's one port.
pub const ALPN: &[u8] = b"ferry-control/1";
/// Largest control frame: a directory listing is the biggest message.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;
/// Silence, in heartbeat intervals, after which the link is declared dead.
pub const DEAD_AFTER_INTERVALS: u32 = 3;
/// The default heartbeat interval the hub announces.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Most feature names the hub keeps of one hello.
pub const MAX_FEATURES: usize = 64;
/// The feature of an endpoint that serves `file_stream` (a file's bytes
/// over a dial-back connection, for HTTPS through the hub).
pub const FEATURE_FILE_STREAM: &str = "file_stream";
/// The feature of an endpoint that takes `file_upload`.
pub const FEATURE_FILE_UPLOAD: &str = "file_upload";

/// Why the hub turned an endpoint away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseReason {
    Revoked,
    UnknownEndpoint,
    IncompatibleVersion,
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndpointMessage {
    Hello {
        version: u32,
        min_version: u32,
        software: String,
        /// `host:port` where this endpoint accepts data connections, if it does.
        #[serde(default)]
        data_address: Option<String>,
        /// Its owner paused its data work (`ferry -pause`): its tasks wait.
        #[serde(default)]
        paused: bool,
        /// The names of the hooks its `endpoint.toml` configures (what a
        /// task's `--on-success` may name). Absent from an older endpoint,
        /// which runs none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hooks: Option<Vec<String>>,
        /// What this endpoint understands beyond protocol 1's first form,
        /// by name: the hub sends a message an
        /// older endpoint would not know only to one that names it here,
        /// because an unknown message ends the link.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// The owner paused or unpaused this endpoint's data work since the
    /// hello (only to a hub whose welcome set `pause_notices`).
    Paused {
        paused: bool,
    },
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
    FsReply {
        id: u64,
        outcome: FsOutcome,
    },
    TaskReport {
        task_id: String,
        attempt: u32,
        report: TaskReport,
    },
    /// Before this connection's certificate ages out: a CSR (PEM) for the
    /// same endpoint, signed by its key.
    RenewCertificate {
        csr: String,
    },
}

/// Largest CSR a renewal may carry, in bytes of PEM.
pub const MAX_CSR: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    Welcome {
        version: u32,
        endpoint_id: String,
        heartbeat_secs: u64,
        /// The hub's task-signing public key (SEC1 point, base64url).
        #[serde(default)]
        capability_key: String,
        /// Endpoints whose certificates the hub revoked: a destination
        /// refuses data connections from them, whatever capability they hold.
        #[serde(default)]
        revoked_endpoints: Vec<String>,
        /// The hub takes `deleted` task reports.
        #[serde(default)]
        deleted_reports: bool,
        /// This hub takes `paused` notices, and waits for a paused endpoint
        /// instead of retrying its tasks as faults.
        #[serde(default)]
        pause_notices: bool,
    },
    Refuse {
        reason: RefuseReason,
        message: String,
    },
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
    FsRequest {
        id: u64,
        op: FsOp,
        /// On a grantee's behalf (absent: the owner's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<ShareGrant>,
    },
    /// To a task's source: send, connecting to the destination at
    /// `connect_to` (empty: it takes no direct connections); with `relay`
    /// (only to an endpoint whose hello named [`crate::relay::RELAY_FEATURE`]),
    /// through the hub when that cannot be done.
    TaskStart {
        capability: String,
        connect_to: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        relay: bool,
    },
    /// To a task's destination (only one whose hello named
    /// [`crate::relay::RELAY_FEATURE`]): dial the hub back with `token`
    /// for a relayed data stream of this attempt.
    RelayDial {
        token: String,
        task_id: String,
        attempt: u32,
        stream: u16,
        /// As for `FileStream`: the hub instance waiting for the dial-back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
    /// To both endpoints of a task: stop its data work now, and (at the
    /// destination) refuse every data connection for attempts up to
    /// `through_attempt` from now on, so a capability cannot be replayed
    /// after its attempt ended; another attempt may follow and resume what
    /// this one left. Absent: every attempt, the task is over (succeeded,
    /// failed, canceled), so the destination also removes the temporaries
    /// its attempts kept.
    TaskCancel {
        task_id: String,
        #[serde(default)]
        through_attempt: Option<u32>,
    },
    /// To every connected endpoint: these endpoints were revoked since the
    /// welcome; their data connections are refused and cut.
    Revoked {
        endpoint_ids: Vec<String>,
    },
    /// Dial back with `token` (see [`crate::relay`]) and serve the file at
    /// `path` over that connection as [`crate::file_stream`] says; for a
    /// grantee when `grant` is present. Sent only to an endpoint whose
    /// hello named [`FEATURE_FILE_STREAM`].
    FileStream {
        token: String,
        path: crate::wire_path::WirePath,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<ShareGrant>,
        /// Where to dial back (`HOST:PORT`) instead of the hub URL's
        /// address, still verifying the hub's certificate by the URL's
        /// name: the hub instance waiting for the connection, when several
        /// serve behind one front. Absent: the hub URL's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
    /// Dial back with `token` and take (part of) an upload to `path` over
    /// that connection. Sent only to an endpoint whose hello named
    /// [`FEATURE_FILE_UPLOAD`].
    FileUpload {
        token: String,
        path: crate::wire_path::WirePath,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<ShareGrant>,
        upload: crate::file_stream::UploadAsk,
        /// As for `FileStream`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
    /// The answer to `renew_certificate`: the new certificate (PEM), or why not.
    Certificate {
        #[serde(default)]
        cert: Option<String>,
        #[serde(default)]
        refused: Option<String>,
    },
}

/// Most revoked endpoints a welcome or a notice carries (the newest):
/// bounds the frame; 36 bytes an id, well inside [`MAX_FRAME`].
pub const MAX_REVOKED_LISTED: usize = 20_000;

/// One variant per rule a peer can break, plus the ways a link ends.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} sent before the handshake completed")]
    BeforeHandshake(&'static str),
    #[error("{0} sent after the handshake completed")]
    AfterHandshake(&'static str),
    #[error(
        "incompatible protocol versions: peer speaks {peer_min}..={peer_max}, this build {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; upgrade the older side"
    )]
    IncompatibleVersion { peer_min: u32, peer_max: u32 },
    #[error("the hub refused this endpoint: {message}")]
    Refused {
        reason: RefuseReason,
        message: String,
    },
    #[error("heard nothing for {0:?}: the link is dead")]
    HeartbeatTimeout(Duration),
    #[error("the connection is closed")]
    Closed,
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Plain enums of strings and numbers always serialize; an empty body would
    // be refused by the peer as an empty frame rather than panic here.
    let body = serde_json::to_vec(message).unwrap_or_default();
    frame::encode(&body, MAX_FRAME).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::Malformed(e.to_string()))
}

/// Silence, in heartbeat intervals, after which an endpoint probes the hub
/// with its own ping: half an interval past the hub's missed beat, so a
/// beat that is merely late does not bring a second round.
const PROBE_AFTER_INTERVALS: f64 = 1.5;

/// Who pings when.
#[derive(Debug, Clone, Copy)]
enum Beat {
    /// The handshake: nobody pings; only its deadline runs.
    Handshake,
    /// The hub: one ping per interval on a fixed schedule, whatever else is
    /// sent or received; `next` is the next one.
    Lead { next: Instant },
    /// The endpoint: answers the hub's pings and probes only a hub that has
    /// been quiet for [`PROBE_AFTER_INTERVALS`], then at most once per
    /// interval; `last_probe` is its last own ping.
    Follow { last_probe: Option<Instant> },
}

/// One side's keep-alive: when to ping, when to give up. Sending never
/// moves a timer (a reply is not a beat); receiving anything moves only the
/// silence that declares the link dead and, on the endpoint, its probe.
#[derive(Debug, Clone)]
struct Heartbeat {
    interval: Duration,
    dead_after: Duration,
    last_received: Instant,
    beat: Beat,
    seq: u64,
}

impl Heartbeat {
    /// Until the handshake completes: no pings, closed after `timeout`.
    fn handshake(now: Instant, timeout: Duration) -> Self {
        Self {
            interval: timeout,
            dead_after: timeout,
            last_received: now,
            beat: Beat::Handshake,
            seq: 0,
        }
    }
    fn lead(now: Instant, interval: Duration) -> Self {
        Self {
            interval,
            dead_after: interval * DEAD_AFTER_INTERVALS,
            last_received: now,
            beat: Beat::Lead {
                next: now + interval,
            },
            seq: 0,
        }
    }
    fn follow(now: Instant, interval: Duration) -> Self {
        Self {
            interval,
            dead_after: interval * DEAD_AFTER_INTERVALS,
            last_received: now,
            beat: Beat::Follow { last_probe: None },
            seq: 0,
        }
    }
    /// When this side pings next, if it pings at all.
    fn ping_at(&self) -> Option<Instant> {
        match self.beat {
            Beat::Handshake => None,
            Beat::Lead { next } => Some(next),
            Beat::Follow { last_probe } => {
                let quiet = self.last_received + self.interval.mul_f64(PROBE_AFTER_INTERVALS);
                Some(match last_probe {
                    Some(probe) => quiet.max(probe + self.interval),
                    None => quiet,
                })
            }
        }
    }
    fn deadline(&self) -> Instant {
        let dead = self.last_received + self.dead_after;
        self.ping_at().map_or(dead, |ping| ping.min(dead))
    }
    /// `Ok(Some(seq))` when a ping is due; the ping is then taken as sent.
    fn on_timeout(&mut self, now: Instant) -> Result<Option<u64>, ControlError> {
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= self.dead_after {
            return Err(ControlError::HeartbeatTimeout(silent));
        }
        if self.ping_at().is_none_or(|at| now < at) {
            return Ok(None);
        }
        self.beat = match self.beat {
            Beat::Handshake => Beat::Handshake,
            // Keep the schedule, so a late wake-up does not push every later
            // beat back; after a stall longer than an interval, start afresh
            // rather than catch up with a burst.
            Beat::Lead { next } => Beat::Lead {
                next: Some(next + self.interval)
                    .filter(|n| *n > now)
                    .unwrap_or(now + self.interval),
            },
            Beat::Follow { .. } => Beat::Follow {
                last_probe: Some(now),
            },
        };
        self.seq += 1;
        Ok(Some(self.seq))
    }
}

/// What the endpoint side learned from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    Connected {
        endpoint_id: String,
        capability_key: String,
        revoked_endpoints: Vec<String>,
        /// The hub hears of pauses (see [`EndpointConnection::set_paused`]).
        pause_notices: bool,
    },
    /// More endpoints revoked while connected.
    Revoked { endpoint_ids: Vec<String> },
    /// The hub's answer to [`EndpointConnection::renew_certificate`].
    Certificate { result: Result<String, String> },
    Fs {
        id: u64,
        op: FsOp,
        grant: Option<ShareGrant>,
    },
    TaskStart {
        capability: String,
        /// The destination's data address; `None` when it has none.
        connect_to: Option<String>,
        /// The hub relays the attempt's streams when `connect_to` cannot
        /// be reached (or there is none).
        relay: bool,
    },
    /// Dial the hub back (to `via` when there is one) for a relayed data
    /// stream into this endpoint.
    RelayDial {
        token: String,
        task_id: String,
        attempt: u32,
        stream: u16,
        via: Option<String>,
    },
    TaskCancel {
        task_id: String,
        through_attempt: Option<u32>,
    },
    /// Dial back with `token` (to `via` when there is one) and serve the
    /// file at `path`.
    FileStream {
        token: String,
        path: crate::wire_path::WirePath,
        grant: Option<ShareGrant>,
        via: Option<String>,
    },
    /// Dial back with `token` and take an upload to `path`.
    FileUpload {
        token: String,
        path: crate::wire_path::WirePath,
        grant: Option<ShareGrant>,
        upload: crate::file_stream::UploadAsk,
        via: Option<String>,
    },
}

/// Most bytes of a dial-back address (`HOST:PORT`).
pub const MAX_VIA: usize = 300;

/// A dial-back address an endpoint will use: `HOST:PORT`, short, printable,
/// with a port; anything else is dropped and the endpoint dials the hub
/// URL's address as before.
pub fn valid_via(via: &str) -> bool {
    via.len() <= MAX_VIA
        && via.bytes().all(|b| b.is_ascii_graphic())
        && via.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
}

#[derive(Debug)]
enum EndpointState {
    ExpectWelcome,
    Ready,
    Closed,
}

/// The endpoint's side of one control connection.
#[derive(Debug)]
pub struct EndpointConnection {
    state: EndpointState,
    decoder: FrameDecoder,
    outbox: VecDeque<Vec<u8>>,
    heartbeat: Heartbeat,
    /// The hub's welcome said it takes `deleted` task reports.
    deleted_reports: bool,
    /// Whether data work is paused here, and what the hub was last told.
    paused: bool,
    told_paused: bool,
    /// The hub's welcome asked for `paused` notices.
    pause_notices: bool,
}

impl EndpointConnection {
    /// A new connection of an endpoint whose data work runs; its `Hello`
    /// is ready to send. Until the hub's welcome names an interval,
    /// `handshake_timeout` bounds the wait.
    pub fn new(
        now: Instant,
        software: &str,
        data_address: Option<String>,
        handshake_timeout: Duration,
    ) -> Self {
        Self::with_pause(now, software, data_address, false, handshake_timeout)
    }

    /// As [`Self::new`], saying in the hello whether data work is paused.
    pub fn with_pause(
        now: Instant,
        software: &str,
        data_address: Option<String>,
        paused: bool,
        handshake_timeout: Duration,
    ) -> Self {
        Self::with_hooks(now, software, data_address, paused, None, handshake_timeout)
    }

    /// As [`Self::with_pause`], naming the endpoint's hooks in the hello.
    pub fn with_hooks(
        now: Instant,
        software: &str,
        data_address: Option<String>,
        paused: bool,
        hooks: Option<Vec<String>>,
        handshake_timeout: Duration,
    ) -> Self {
        Self::with_features(
            now,
            software,
            data_address,
            paused,
            hooks,
            Vec::new(),
            handshake_timeout,
        )
    }

    /// As [`Self::with_hooks`], naming in the hello the features this
    /// endpoint understands.
    pub fn with_features(
        now: Instant,
        software: &str,
        data_address: Option<String>,
        paused: bool,
        hooks: Option<Vec<String>>,
        features: Vec<String>,
        handshake_timeout: Duration,
    ) -> Self {
        let mut conn = Self {
            state: EndpointState::ExpectWelcome,
            decoder: FrameDecoder::new(MAX_FRAME),
            outbox: VecDeque::new(),
            heartbeat: Heartbeat::handshake(now, handshake_timeout),
            deleted_reports: false,
            paused,
            told_paused: paused,
            pause_notices: false,
        };
        conn.send(&EndpointMessage::Hello {
            version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            software: software.to_string(),
            data_address,
            paused,
            hooks,
            features,
        });
        conn
    }

    /// The owner paused or unpaused data work. A hub that takes notices
    /// hears of it at once (after its welcome, if that is still awaited);
    /// an older hub never does, and its next hello says it.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.tell_pause();
    }

    fn tell_pause(&mut self) {
        if matches!(self.state, EndpointState::Ready)
            && self.pause_notices
            && self.told_paused != self.paused
        {
            self.told_paused = self.paused;
            self.send(&EndpointMessage::Paused {
                paused: self.paused,
            });
        }
    }

    fn send(&mut self, message: &EndpointMessage) {
        self.outbox.push_back(encode(message));
    }

    /// Feeds received bytes; returns what they meant, in order. An error
    /// ends the connection: the caller logs it and closes the socket.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<Vec<EndpointEvent>, ControlError> {
        self.decoder.push(bytes);
        let mut events = Vec::new();
        loop {
            let body = match self.decoder.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => return Ok(events),
                Err(e) => return Err(self.close(e.into())),
            };
            self.heartbeat.last_received = now;
            let message = match decode::<HubMessage>(&body) {
                Ok(m) => m,
                Err(e) => return Err(self.close(e)),
            };
            match self.on_message(now, message) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(e) => return Err(self.close(e)),
            }
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        message: HubMessage,
    ) -> Result<Option<EndpointEvent>, ControlError> {
        match (&self.state, message) {
            (EndpointState::Closed, _) => Err(ControlError::Closed),
            (_, HubMessage::Refuse { reason, message }) => {
                Err(ControlError::Refused { reason, message })
            }
            (
                EndpointState::ExpectWelcome,
                HubMessage::Welcome {
                    version,
                    endpoint_id,
                    heartbeat_secs,
                    capability_key,
                    revoked_endpoints,
                    deleted_reports,
                    pause_notices,
                },
            ) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                    return Err(ControlError::IncompatibleVersion {
                        peer_min: version,
                        peer_max: version,
                    });
                }
                let interval = Duration::from_secs(heartbeat_secs.clamp(1, 3600));
                self.heartbeat = Heartbeat::follow(now, interval);
                self.deleted_reports = deleted_reports;
                self.state = EndpointState::Ready;
                self.pause_notices = pause_notices;
                // Paused or unpaused while the welcome was on its way.
                self.tell_pause();
                Ok(Some(EndpointEvent::Connected {
                    endpoint_id,
                    capability_key,
                    revoked_endpoints,
                    pause_notices,
                }))
            }
            (EndpointState::ExpectWelcome, other) => {
                Err(ControlError::BeforeHandshake(hub_message_name(&other)))
            }
            (EndpointState::Ready, HubMessage::Welcome { .. }) => {
                Err(ControlError::AfterHandshake("welcome"))
            }
            (EndpointState::Ready, HubMessage::Ping { seq }) => {
                self.send(&EndpointMessage::Pong { seq });
                Ok(None)
            }
            (EndpointState::Ready, HubMessage::Pong { .. }) => Ok(None),
            (EndpointState::Ready, HubMessage::FsRequest { id, op, grant }) => {
                Ok(Some(EndpointEvent::Fs { id, op, grant }))
            }
            (
                EndpointState::Ready,
                HubMessage::TaskStart {
                    capability,
                    connect_to,
                    relay,
                },
            ) => Ok(Some(EndpointEvent::TaskStart {
                capability,
                connect_to: Some(connect_to).filter(|c| !c.is_empty()),
                relay,
            })),
            (
                EndpointState::Ready,
                HubMessage::RelayDial {
                    token,
                    task_id,
                    attempt,
                    stream,
                    via,
                },
            ) => Ok(Some(EndpointEvent::RelayDial {
                token,
                task_id,
                attempt,
                stream,
                via: via.filter(|v| valid_via(v)),
            })),
            (
                EndpointState::Ready,
                HubMessage::TaskCancel {
                    task_id,
                    through_attempt,
                },
            ) => Ok(Some(EndpointEvent::TaskCancel {
                task_id,
                through_attempt,
            })),
            (EndpointState::Ready, HubMessage::Revoked { endpoint_ids }) => {
                Ok(Some(EndpointEvent::Revoked { endpoint_ids }))
            }
            (
                EndpointState::Ready,
                HubMessage::FileStream {
                    token,
                    path,
                    grant,
                    via,
                },
            ) => Ok(Some(EndpointEvent::FileStream {
                token,
                path,
                grant,
                via: via.filter(|v| valid_via(v)),
            })),
            (
                EndpointState::Ready,
                HubMessage::FileUpload {
                    token,
                    path,
                    grant,
                    upload,
                    via,
                },
            ) => Ok(Some(EndpointEvent::FileUpload {
                token,
                path,
                grant,
                upload,
                via: via.filter(|v| valid_via(v)),
            })),
            (EndpointState::Ready, HubMessage::Certificate { cert, refused }) => {
                let result = match (cert, refused) {
                    (Some(cert), None) => Ok(cert),
                    (None, Some(why)) => Err(why),
                    _ => {
                        return Err(ControlError::Malformed(
                            "a certificate answer needs exactly one of cert and refused".into(),
                        ));
                    }
                };
                Ok(Some(EndpointEvent::Certificate { result }))
            }
        }
    }

    /// Queues the answer to a file operation.
    pub fn reply_fs(&mut self, id: u64, outcome: FsOutcome) {
        if matches!(self.state, EndpointState::Ready) {
            self.send(&EndpointMessage::FsReply { id, outcome });
        }
    }

    /// Queues a report about a task; one the hub would not understand is
    /// left out (it only informs).
    pub fn report_task(&mut self, task_id: &str, attempt: u32, report: TaskReport) {
        let understood = match report {
            TaskReport::Deleted { .. } => self.deleted_reports,
            _ => true,
        };
        if matches!(self.state, EndpointState::Ready) && understood {
            self.send(&EndpointMessage::TaskReport {
                task_id: task_id.to_string(),
                attempt,
                report,
            });
        }
    }

    /// Asks the hub for a new certificate (a CSR in PEM for this endpoint).
    pub fn renew_certificate(&mut self, csr: &str) {
        if matches!(self.state, EndpointState::Ready) {
            self.send(&EndpointMessage::RenewCertificate {
                csr: csr.to_string(),
            });
        }
    }

    /// The next frame to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            EndpointState::Closed => None,
            _ => Some(self.heartbeat.deadline()),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ControlError> {
        if matches!(self.state, EndpointState::Closed) {
            return Err(ControlError::Closed);
        }
        match self.heartbeat.on_timeout(now) {
            Ok(Some(seq)) if matches!(self.state, EndpointState::Ready) => {
                self.send(&EndpointMessage::Ping { seq });
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.close(e)),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, EndpointState::Ready)
    }

    /// Closes the link: it sends nothing more, not even what frames that
    /// came in the same read as the fault queued (a pong to a ping before a
    /// bad frame; found by the `control` fuzz target).
    fn close(&mut self, e: ControlError) -> ControlError {
        self.state = EndpointState::Closed;
        self.outbox.clear();
        e
    }
}

fn hub_message_name(m: &HubMessage) -> &'static str {
    match m {
        HubMessage::Welcome { .. } => "welcome",
        HubMessage::Refuse { .. } => "refuse",
        HubMessage::Ping { .. } => "ping",
        HubMessage::Pong { .. } => "pong",
        HubMessage::FsRequest { .. } => "fs_request",
        HubMessage::TaskStart { .. } => "task_start",
        HubMessage::RelayDial { .. } => "relay_dial",
        HubMessage::TaskCancel { .. } => "task_cancel",
        HubMessage::Revoked { .. } => "revoked",
        HubMessage::Certificate { .. } => "certificate",
        HubMessage::FileStream { .. } => "file_stream",
        HubMessage::FileUpload { .. } => "file_upload",
    }
}

fn endpoint_message_name(m: &EndpointMessage) -> &'static str {
    match m {
        EndpointMessage::Hello { .. } => "hello",
        EndpointMessage::Paused { .. } => "paused",
        EndpointMessage::Ping { .. } => "ping",
        EndpointMessage::Pong { .. } => "pong",
        EndpointMessage::FsReply { .. } => "fs_reply",
        EndpointMessage::TaskReport { .. } => "task_report",
        EndpointMessage::RenewCertificate { .. } => "renew_certificate",
    }
}

/// What the hub side learned from an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// The endpoint said hello with compatible versions; the hub must now
    /// [`HubConnection::accept`] or [`HubConnection::refuse`] it.
    Hello {
        software: String,
        data_address: Option<String>,
        paused: bool,
        /// Its hooks' names; `None` from an endpoint too old to run any.
        hooks: Option<Vec<String>>,
        /// The features its hello named (at most [`MAX_FEATURES`]).
        features: Vec<String>,
    },
    /// The endpoint's owner paused (or unpaused) its data work.
    Paused {
        paused: bool,
    },
    FsReply {
        id: u64,
        outcome: FsOutcome,
    },
    TaskReport {
        task_id: String,
        attempt: u32,
        report: TaskReport,
    },
    /// The endpoint asks for a new certificate; answer with
    /// [`HubConnection::answer_renewal`].
    RenewCertificate {
        csr: String,
    },
}

/// What a hub's [`HubConnection::handle_timeout`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum HubTimeout {
    Nothing,
    /// A heartbeat interval passed: check that the endpoint is still
    /// admitted (not revoked, not superseded) and
    /// [`HubConnection::refuse`] it if not.
    Beat,
}

#[derive(Debug)]
enum HubState {
    ExpectHello,
    /// Hello received; waiting for the hub's own decision.
    Deciding,
    Ready,
    Closed,
}

/// The hub's side of one control connection.
#[derive(Debug)]
pub struct HubConnection {
    state: HubState,
    decoder: FrameDecoder,
    outbox: VecDeque<Vec<u8>>,
    heartbeat: Heartbeat,
    next_request: u64,
}

impl HubConnection {
    /// `handshake_timeout` bounds how long a silent peer may hold the
    /// connection before saying hello.
    pub fn new(now: Instant, handshake_timeout: Duration) -> Self {
        Self {
            state: HubState::ExpectHello,
            decoder: FrameDecoder::new(MAX_FRAME),
            outbox: VecDeque::new(),
            heartbeat: Heartbeat::handshake(now, handshake_timeout),
            next_request: 0,
        }
    }

    fn send(&mut self, message: &HubMessage) {
        self.outbox.push_back(encode(message));
    }

    pub fn handle_bytes(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<Vec<HubEvent>, ControlError> {
        self.decoder.push(bytes);
        let mut events = Vec::new();
        loop {
            let body = match self.decoder.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => return Ok(events),
                Err(e) => return Err(self.close(e.into())),
            };
            self.heartbeat.last_received = now;
            let message = match decode::<EndpointMessage>(&body) {
                Ok(m) => m,
                Err(e) => return Err(self.close(e)),
            };
            match self.on_message(message) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(e) => return Err(self.close(e)),
            }
        }
    }

    fn on_message(&mut self, message: EndpointMessage) -> Result<Option<HubEvent>, ControlError> {
        match (&self.state, message) {
            (HubState::Closed, _) => Err(ControlError::Closed),
            (
                HubState::ExpectHello,
                EndpointMessage::Hello {
                    version,
                    min_version,
                    software,
                    data_address,
                    paused,
                    hooks,
                    mut features,
                },
            ) => {
                features.truncate(MAX_FEATURES);
                if version < MIN_PROTOCOL_VERSION
                    || min_version > PROTOCOL_VERSION
                    || min_version > version
                {
                    self.send(&HubMessage::Refuse {
                            reason: RefuseReason::IncompatibleVersion,
                            message: format!(
                                "this hub speaks control protocol {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}, the endpoint {min_version}..={version}; upgrade the older side"
                            ),
                        },
                    );
                    return Err(ControlError::IncompatibleVersion {
                        peer_min: min_version,
                        peer_max: version,
                    });
                }
                self.state = HubState::Deciding;
                Ok(Some(HubEvent::Hello {
                    software,
                    data_address,
                    paused,
                    hooks,
                    features,
                }))
            }
            (HubState::ExpectHello | HubState::Deciding, other) => {
                Err(ControlError::BeforeHandshake(endpoint_message_name(&other)))
            }
            (HubState::Ready, EndpointMessage::Hello { .. }) => {
                Err(ControlError::AfterHandshake("hello"))
            }
            (HubState::Ready, EndpointMessage::Ping { seq }) => {
                self.send(&HubMessage::Pong { seq });
                Ok(None)
            }
            (HubState::Ready, EndpointMessage::Pong { .. }) => Ok(None),
            (HubState::Ready, EndpointMessage::Paused { paused }) => {
                Ok(Some(HubEvent::Paused { paused }))
            }
            (HubState::Ready, EndpointMessage::FsReply { id, outcome }) => {
                Ok(Some(HubEvent::FsReply { id, outcome }))
            }
            (
                HubState::Ready,
                EndpointMessage::TaskReport {
                    task_id,
                    attempt,
                    report,
                },
            ) => Ok(Some(HubEvent::TaskReport {
                task_id,
                attempt,
                report,
            })),
            (HubState::Ready, EndpointMessage::RenewCertificate { csr }) => {
                if csr.len() > MAX_CSR {
                    return Err(ControlError::Malformed(format!(
                        "a certificate request over {MAX_CSR} bytes"
                    )));
                }
                Ok(Some(HubEvent::RenewCertificate { csr }))
            }
        }
    }

    /// Answers a renewal: the new certificate (PEM) or why not.
    pub fn answer_renewal(&mut self, result: Result<String, String>) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        let (cert, refused) = match result {
            Ok(cert) => (Some(cert), None),
            Err(why) => (None, Some(why)),
        };
        self.send(&HubMessage::Certificate { cert, refused });
        Ok(())
    }

    /// Admits the endpoint after its hello (identity checked by the caller).
    pub fn accept(
        &mut self,
        now: Instant,
        endpoint_id: &str,
        heartbeat: Duration,
        capability_key: &str,
        revoked_endpoints: Vec<String>,
    ) {
        if matches!(self.state, HubState::Deciding) {
            self.send(&HubMessage::Welcome {
                version: PROTOCOL_VERSION,
                endpoint_id: endpoint_id.to_string(),
                heartbeat_secs: heartbeat.as_secs().max(1),
                capability_key: capability_key.to_string(),
                revoked_endpoints,
                deleted_reports: true,
                pause_notices: true,
            });
            self.heartbeat = Heartbeat::lead(now, heartbeat);
            self.state = HubState::Ready;
        }
    }

    /// Turns the endpoint away; the caller flushes, then closes.
    pub fn refuse(&mut self, reason: RefuseReason, message: &str) {
        self.send(&HubMessage::Refuse {
            reason,
            message: message.to_string(),
        });
        self.state = HubState::Closed;
    }

    /// Queues a file operation, for the owner or (with `grant`) a
    /// grantee; returns its id for matching the reply.
    pub fn request_fs(&mut self, op: FsOp, grant: Option<ShareGrant>) -> Result<u64, ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.next_request += 1;
        let id = self.next_request;
        self.send(&HubMessage::FsRequest { id, op, grant });
        Ok(id)
    }

    /// Asks the endpoint to dial back with `token` (to `via` if given)
    /// and serve `path`.
    pub fn stream_file(
        &mut self,
        token: &str,
        path: crate::wire_path::WirePath,
        grant: Option<ShareGrant>,
        via: Option<String>,
    ) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::FileStream {
            token: token.to_string(),
            path,
            grant,
            via,
        });
        Ok(())
    }

    /// Asks the endpoint to dial back with `token` and take an upload.
    pub fn upload_file(
        &mut self,
        token: &str,
        path: crate::wire_path::WirePath,
        grant: Option<ShareGrant>,
        upload: crate::file_stream::UploadAsk,
        via: Option<String>,
    ) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::FileUpload {
            token: token.to_string(),
            path,
            grant,
            upload,
            via,
        });
        Ok(())
    }

    /// Tells a task's source to start sending.
    pub fn start_task(&mut self, capability: &str, connect_to: &str) -> Result<(), ControlError> {
        self.start_task_via(capability, Some(connect_to), false)
    }

    /// Tells a task's source to start sending, to `connect_to` when there
    /// is one and, with `relay`, through the hub when that fails (the
    /// caller sends `relay` only to an endpoint that named the feature).
    pub fn start_task_via(
        &mut self,
        capability: &str,
        connect_to: Option<&str>,
        relay: bool,
    ) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::TaskStart {
            capability: capability.to_string(),
            connect_to: connect_to.unwrap_or_default().to_string(),
            relay,
        });
        Ok(())
    }

    /// Asks a destination (which named the relay feature) to dial back
    /// for a relayed data stream.
    pub fn relay_dial(
        &mut self,
        token: &str,
        task_id: &str,
        attempt: u32,
        stream: u16,
        via: Option<String>,
    ) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::RelayDial {
            token: token.to_string(),
            task_id: task_id.to_string(),
            attempt,
            stream,
            via,
        });
        Ok(())
    }

    pub fn cancel_task(
        &mut self,
        task_id: &str,
        through_attempt: Option<u32>,
    ) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::TaskCancel {
            task_id: task_id.to_string(),
            through_attempt,
        });
        Ok(())
    }

    /// Tells the endpoint about endpoints revoked since its welcome.
    pub fn notify_revoked(&mut self, endpoint_ids: Vec<String>) -> Result<(), ControlError> {
        if !matches!(self.state, HubState::Ready) {
            return Err(ControlError::Closed);
        }
        self.send(&HubMessage::Revoked { endpoint_ids });
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            HubState::Closed => None,
            _ => Some(self.heartbeat.deadline()),
        }
    }

    /// Runs the timers. On every beat (once per interval once the endpoint
    /// is admitted, whatever else goes over the link) a ping is queued and
    /// the caller is asked to check the endpoint's admission again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<HubTimeout, ControlError> {
        if matches!(self.state, HubState::Closed) {
            return Err(ControlError::Closed);
        }
        match self.heartbeat.on_timeout(now) {
            Ok(Some(seq)) if matches!(self.state, HubState::Ready) => {
                self.send(&HubMessage::Ping { seq });
                Ok(HubTimeout::Beat)
            }
            Ok(_) => Ok(HubTimeout::Nothing),
            Err(e) => Err(self.close(e)),
        }
    }

    fn close(&mut self, e: ControlError) -> ControlError {
        self.state = HubState::Closed;
        e
    }
}

#[cfg(test)]
mod tests {
    /// A dial-back address is `HOST:PORT` or nothing: anything else would
    /// send an endpoint somewhere the hub did not mean.
    #[test]
    fn only_a_host_and_port_is_a_dial_back_address() {
        for good in ["127.0.0.1:8443", "hub-2.example.org:443", "[::1]:9000"] {
            assert!(valid_via(good), "{good}");
        }
        for bad in [
            "",
            "hub",
            "hub:",
            ":443",
            "hub:0",
            "hub:99999",
            "a b:1",
            &"h".repeat(MAX_VIA),
        ] {
            assert!(!valid_via(bad), "{bad}");
        }
    }
    use super::*;
    use crate::api::FsOutcome;
    use crate::wire_path::WirePath;

    const HB: Duration = Duration::from_secs(10);

    /// Moves every queued frame from one side to the other, in memory.
    fn pump_to_hub(
        ep: &mut EndpointConnection,
        hub: &mut HubConnection,
        now: Instant,
    ) -> Result<Vec<HubEvent>, ControlError> {
        let mut events = Vec::new();
        while let Some(bytes) = ep.poll_transmit() {
            events.extend(hub.handle_bytes(now, &bytes)?);
        }
        Ok(events)
    }

    fn pump_to_endpoint(
        hub: &mut HubConnection,
        ep: &mut EndpointConnection,
        now: Instant,
    ) -> Result<Vec<EndpointEvent>, ControlError> {
        let mut events = Vec::new();
        while let Some(bytes) = hub.poll_transmit() {
            events.extend(ep.handle_bytes(now, &bytes)?);
        }
        Ok(events)
    }

    fn connected(now: Instant) -> (EndpointConnection, HubConnection) {
        let mut ep = EndpointConnection::new(
            now,
            "ferry test",
            Some("127.0.0.1:50000".into()),
            Duration::from_secs(30),
        );
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
        assert_eq!(
            events,
            vec![HubEvent::Hello {
                software: "ferry test".into(),
                data_address: Some("127.0.0.1:50000".into()),
                paused: false,
                hooks: None,
                features: vec![],
            }]
        );
        hub.accept(now, "ep-1", HB, "key", vec!["gone-1".into()]);
        let events = pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            events,
            vec![EndpointEvent::Connected {
                endpoint_id: "ep-1".into(),
                capability_key: "key".into(),
                revoked_endpoints: vec!["gone-1".into()],
                pause_notices: true,
            }]
        );
        (ep, hub)
    }

    #[test]
    fn handshake_then_file_operation_round_trip() {
        let now = Instant::now();
        let (mut ep, mut hub) = connected(now);
        let op = FsOp::List {
            path: WirePath::from_bytes("/home/u"),
        };
        let id = hub.request_fs(op.clone(), None).unwrap();
        let events = pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            events,
            vec![EndpointEvent::Fs {
                id,
                op,
                grant: None
            }]
        );
        ep.reply_fs(id, FsOutcome::Done);
        let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
        assert_eq!(
            events,
            vec![HubEvent::FsReply {
                id,
                outcome: FsOutcome::Done
            }]
        );
    }

    #[test]
    fn a_relayed_start_and_a_dial_back_request_reach_the_endpoint() {
        let now = Instant::now();
        let (mut ep, mut hub) = connected(now);
        hub.start_task_via("cap", None, true).unwrap();
        hub.start_task_via("cap", Some("10.0.0.2:50000"), true)
            .unwrap();
        hub.relay_dial("tok", "t1", 2, 7, None).unwrap();
        hub.relay_dial("tok", "t1", 2, 8, Some("10.0.0.9:443".into()))
            .unwrap();
        hub.relay_dial("tok", "t1", 2, 9, Some("no port".into()))
            .unwrap();
        let events = pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            events,
            vec![
                EndpointEvent::TaskStart {
                    capability: "cap".into(),
                    connect_to: None,
                    relay: true,
                },
                EndpointEvent::TaskStart {
                    capability: "cap".into(),
                    connect_to: Some("10.0.0.2:50000".into()),
                    relay: true,
                },
                EndpointEvent::RelayDial {
                    token: "tok".into(),
                    task_id: "t1".into(),
                    attempt: 2,
                    stream: 7,
                    via: None,
                },
                EndpointEvent::RelayDial {
                    token: "tok".into(),
                    task_id: "t1".into(),
                    attempt: 2,
                    stream: 8,
                    via: Some("10.0.0.9:443".into()),
                },
                // An address the endpoint would not dial is dropped: it
                // dials the hub URL's.
                EndpointEvent::RelayDial {
                    token: "tok".into(),
                    task_id: "t1".into(),
                    attempt: 2,
                    stream: 9,
                    via: None,
                },
            ]
        );
        // A direct start is the message an older endpoint knows.
        let plain = encode(&HubMessage::TaskStart {
            capability: "c".into(),
            connect_to: "h:1".into(),
            relay: false,
        });
        assert!(!String::from_utf8_lossy(&plain).contains("relay"));
    }

    #[test]
    fn tasks_start_cancel_and_report() {
        let now = Instant::now();
        let (mut ep, mut hub) = connected(now);
        hub.start_task("cap", "127.0.0.1:50001").unwrap();
        hub.cancel_task("t1", Some(3)).unwrap();
        hub.notify_revoked(vec!["gone-2".into()]).unwrap();
        let events = pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            events,
            vec![
                EndpointEvent::TaskStart {
                    capability: "cap".into(),
                    connect_to: Some("127.0.0.1:50001".into()),
                    relay: false,
                },
                EndpointEvent::TaskCancel {
                    task_id: "t1".into(),
                    through_attempt: Some(3),
                },
                EndpointEvent::Revoked {
                    endpoint_ids: vec!["gone-2".into()]
                },
            ]
        );
        ep.renew_certificate("CSR");
        let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
        assert_eq!(
            events,
            vec![HubEvent::RenewCertificate { csr: "CSR".into() }]
        );
        hub.answer_renewal(Ok("CERT".into())).unwrap();
        hub.answer_renewal(Err("no".into())).unwrap();
        let events = pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            events,
            vec![
                EndpointEvent::Certificate {
                    result: Ok("CERT".into())
                },
                EndpointEvent::Certificate {
                    result: Err("no".into())
                },
            ]
        );
        ep.report_task("t1", 2, TaskReport::Started);
        let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
        assert_eq!(
            events,
            vec![HubEvent::TaskReport {
                task_id: "t1".into(),
                attempt: 2,
                report: TaskReport::Started
            }]
        );
    }

    #[test]
    fn a_deleted_report_goes_only_to_a_hub_that_takes_it() {
        let now = Instant::now();
        let deleted = TaskReport::Deleted {
            path: WirePath::from_bytes("/d/stale"),
        };
        let (mut ep, mut hub) = connected(now);
        ep.report_task("t1", 1, deleted.clone());
        assert_eq!(
            pump_to_hub(&mut ep, &mut hub, now).unwrap(),
            vec![HubEvent::TaskReport {
                task_id: "t1".into(),
                attempt: 1,
                report: deleted.clone()
            }]
        );
        // An older hub's welcome does not say; it would drop the link.
        let mut ep = EndpointConnection::new(now, "ferry test", None, HB);
        while ep.poll_transmit().is_some() {}
        let older = br#"{"type":"welcome","version":1,"endpoint_id":"e","heartbeat_secs":10}"#;
        ep.handle_bytes(now, &frame::encode(older, MAX_FRAME).unwrap())
            .unwrap();
        ep.report_task("t1", 1, deleted);
        ep.report_task("t1", 1, TaskReport::Started);
        let sent: Vec<EndpointMessage> = std::iter::from_fn(|| ep.poll_transmit())
            .map(|bytes| decode(&bytes[frame::HEADER_LEN..]).unwrap())
            .collect();
        assert_eq!(
            sent,
            vec![EndpointMessage::TaskReport {
                task_id: "t1".into(),
                attempt: 1,
                report: TaskReport::Started
            }]
        );
    }

    /// A welcome and a ping, then a bad frame header, in one read: the
    /// link closes and sends nothing, not the pong the ping queued (the
    /// `control` fuzz target's finding).
    #[test]
    fn a_closed_link_sends_nothing_queued_in_the_read_that_closed_it() {
        let now = Instant::now();
        let mut ep = EndpointConnection::new(now, "ferry test", None, HB);
        while ep.poll_transmit().is_some() {}
        let welcome = br#"{"type":"welcome","version":1,"endpoint_id":"e","heartbeat_secs":10}"#;
        let mut read = frame::encode(welcome, MAX_FRAME).unwrap();
        read.extend(frame::encode(br#"{"type":"ping","seq":9}"#, MAX_FRAME).unwrap());
        read.extend(b"\xff\xff\xff\xff");
        assert!(ep.handle_bytes(now, &read).is_err());
        assert_eq!(ep.poll_transmit(), None);
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn a_pause_reaches_a_hub_that_asked_for_it_in_the_hello_and_as_it_changes() {
        let now = Instant::now();
        let (mut ep, mut hub) = connected(now);
        ep.set_paused(true);
        ep.set_paused(true);
        assert_eq!(
            pump_to_hub(&mut ep, &mut hub, now).unwrap(),
            vec![HubEvent::Paused { paused: true }],
            "told once"
        );
        ep.set_paused(false);
        assert_eq!(
            pump_to_hub(&mut ep, &mut hub, now).unwrap(),
            vec![HubEvent::Paused { paused: false }]
        );
        // Reconnecting while paused: the hello says so; a change while the
        // welcome is on its way follows it.
        let mut ep = EndpointConnection::with_pause(now, "t", None, true, HB);
        let mut hub = HubConnection::new(now, HB);
        let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
        assert!(
            matches!(&events[..], [HubEvent::Hello { paused: true, .. }]),
            "{events:?}"
        );
        ep.set_paused(false);
        assert_eq!(
            ep.poll_transmit(),
            None,
            "nothing but the hello before the welcome"
        );
        hub.accept(now, "ep-1", HB, "key", vec![]);
        pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        assert_eq!(
            pump_to_hub(&mut ep, &mut hub, now).unwrap(),
            vec![HubEvent::Paused { paused: false }]
        );
    }

    #[test]
    fn an_older_hub_is_never_sent_a_pause_and_an_older_hello_is_not_paused() {
        let now = Instant::now();
        let mut ep = EndpointConnection::new(now, "t", None, HB);
        while ep.poll_transmit().is_some() {}
        // A welcome as a hub before pause notices wrote it.
        let welcome = frame::encode(
            br#"{"type":"welcome","version":1,"endpoint_id":"e","heartbeat_secs":10}"#,
            MAX_FRAME,
        )
        .unwrap();
        let events = ep.handle_bytes(now, &welcome).unwrap();
        assert!(
            matches!(
                &events[..],
                [EndpointEvent::Connected {
                    pause_notices: false,
                    ..
                }]
            ),
            "{events:?}"
        );
        ep.set_paused(true);
        assert_eq!(ep.poll_transmit(), None, "an older hub would refuse it");

        let mut hub = HubConnection::new(now, HB);
        let hello = frame::encode(
            br#"{"type":"hello","version":1,"min_version":1,"software":"old"}"#,
            MAX_FRAME,
        )
        .unwrap();
        assert_eq!(
            hub.handle_bytes(now, &hello).unwrap(),
            vec![HubEvent::Hello {
                software: "old".into(),
                data_address: None,
                paused: false,
                hooks: None,
                features: vec![],
            }]
        );
        // A newer endpoint names the features it understands; an older
        // hub ignores the field, an older endpoint sends none.
        let mut ep = EndpointConnection::with_features(
            now,
            "new",
            None,
            false,
            None,
            vec!["dialback".to_string()],
            Duration::from_secs(30),
        );
        let mut newer = HubConnection::new(now, Duration::from_secs(30));
        let events = pump_to_hub(&mut ep, &mut newer, now).unwrap();
        assert!(
            matches!(&events[..], [HubEvent::Hello { features, .. }] if *features == ["dialback"]),
            "{events:?}"
        );
        // A newer endpoint names its hooks (none is an empty list, not
        // an older endpoint's silence).
        for hooks in [vec![], vec!["slurm".to_string()]] {
            let mut ep = EndpointConnection::with_hooks(
                now,
                "new",
                None,
                false,
                Some(hooks.clone()),
                Duration::from_secs(30),
            );
            let mut hub = HubConnection::new(now, Duration::from_secs(30));
            let events = pump_to_hub(&mut ep, &mut hub, now).unwrap();
            assert!(
                matches!(&events[..], [HubEvent::Hello { hooks: Some(h), .. }] if *h == hooks),
                "{events:?}"
            );
        }
    }

    #[test]
    fn heartbeats_keep_a_quiet_link_alive_and_silence_kills_it() {
        let t0 = Instant::now();
        let (mut ep, mut hub) = connected(t0);
        // Drive both sides through a minute of quiet, one second at a time.
        for s in 1..=60 {
            let now = t0 + Duration::from_secs(s);
            ep.handle_timeout(now).unwrap();
            let _ = hub.handle_timeout(now).unwrap();
            pump_to_hub(&mut ep, &mut hub, now).unwrap();
            pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        }
        // Now the hub goes silent: the endpoint gives up within 3 intervals.
        let silent_from = t0 + Duration::from_secs(60);
        let mut dead_at = None;
        for s in 1..=60 {
            let now = silent_from + Duration::from_secs(s);
            if let Err(e) = ep.handle_timeout(now) {
                assert!(matches!(e, ControlError::HeartbeatTimeout(_)), "{e}");
                dead_at = Some(s);
                break;
            }
            while ep.poll_transmit().is_some() {}
        }
        let dead_at = dead_at.expect("silence was never detected");
        assert!(dead_at <= 30 + 1, "detected after {dead_at}s");
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn poll_timeout_says_when_to_wake() {
        let t0 = Instant::now();
        let (ep, hub) = connected(t0);
        // The hub beats after one interval; the endpoint would probe only
        // if that beat were half an interval late.
        assert_eq!(hub.poll_timeout(), Some(t0 + HB));
        assert_eq!(ep.poll_timeout(), Some(t0 + HB + HB / 2));
    }

    #[test]
    fn nothing_but_the_handshake_before_it_completes() {
        let now = Instant::now();
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        let ping = encode(&EndpointMessage::Ping { seq: 1 });
        assert_eq!(
            hub.handle_bytes(now, &ping),
            Err(ControlError::BeforeHandshake("ping"))
        );
        // And a closed connection stays closed.
        assert_eq!(hub.handle_timeout(now), Err(ControlError::Closed));

        let mut ep = EndpointConnection::new(now, "t", None, Duration::from_secs(30));
        let req = encode(&HubMessage::FsRequest {
            id: 1,
            op: FsOp::Mkdir {
                path: WirePath::from_bytes("/x"),
            },
            grant: None,
        });
        assert_eq!(
            ep.handle_bytes(now, &req),
            Err(ControlError::BeforeHandshake("fs_request"))
        );
    }

    #[test]
    fn hello_between_accept_decisions_is_refused() {
        let now = Instant::now();
        let mut ep = EndpointConnection::new(now, "t", None, Duration::from_secs(30));
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        pump_to_hub(&mut ep, &mut hub, now).unwrap();
        // Still deciding: a reply to a request never sent is a violation.
        let reply = encode(&EndpointMessage::FsReply {
            id: 9,
            outcome: FsOutcome::Done,
        });
        assert_eq!(
            hub.handle_bytes(now, &reply),
            Err(ControlError::BeforeHandshake("fs_reply"))
        );
    }

    #[test]
    fn incompatible_versions_are_refused_with_a_reason() {
        let now = Instant::now();
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        let hello = encode(&EndpointMessage::Hello {
            version: 7,
            min_version: 5,
            software: "future".into(),
            data_address: None,
            paused: false,
            hooks: None,
            features: vec![],
        });
        let err = hub.handle_bytes(now, &hello).unwrap_err();
        assert_eq!(
            err,
            ControlError::IncompatibleVersion {
                peer_min: 5,
                peer_max: 7
            }
        );
        let refusal = hub.poll_transmit().unwrap();
        let mut ep = EndpointConnection::new(now, "t", None, Duration::from_secs(30));
        match ep.handle_bytes(now, &refusal) {
            Err(ControlError::Refused {
                reason: RefuseReason::IncompatibleVersion,
                message,
            }) => {
                assert!(message.contains("upgrade"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_revoked_endpoint_learns_why() {
        let now = Instant::now();
        let mut ep = EndpointConnection::new(now, "t", None, Duration::from_secs(30));
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        pump_to_hub(&mut ep, &mut hub, now).unwrap();
        hub.refuse(RefuseReason::Revoked, "endpoint revoked by the hub admin");
        let err = pump_to_endpoint(&mut hub, &mut ep, now).unwrap_err();
        assert!(matches!(
            err,
            ControlError::Refused {
                reason: RefuseReason::Revoked,
                ..
            }
        ));
        assert!(
            hub.request_fs(
                FsOp::Mkdir {
                    path: WirePath::from_bytes("/x")
                },
                None
            )
            .is_err()
        );
    }

    #[test]
    fn oversized_and_malformed_frames_close_the_connection() {
        let now = Instant::now();
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            hub.handle_bytes(now, &huge),
            Err(ControlError::Frame(_))
        ));
        let mut hub = HubConnection::new(now, Duration::from_secs(30));
        let junk = frame::encode(b"{not json", MAX_FRAME).unwrap();
        assert!(matches!(
            hub.handle_bytes(now, &junk),
            Err(ControlError::Malformed(_))
        ));
    }

    #[test]
    fn a_silent_peer_cannot_hold_the_handshake_open() {
        let t0 = Instant::now();
        let mut hub = HubConnection::new(t0, Duration::from_secs(30));
        let deadline = hub.poll_timeout().unwrap();
        assert!(deadline <= t0 + Duration::from_secs(30));
        let mut now = t0;
        let mut result = Ok(HubTimeout::Nothing);
        for _ in 0..100 {
            now += Duration::from_secs(1);
            result = hub.handle_timeout(now);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(ControlError::HeartbeatTimeout(_))));
        assert!(now <= t0 + Duration::from_secs(31));
    }

    /// The frames one side has queued, decoded.
    fn drain<T: for<'de> Deserialize<'de>>(
        mut next: impl FnMut() -> Option<Vec<u8>>,
    ) -> Vec<(Vec<u8>, T)> {
        let mut out = Vec::new();
        while let Some(bytes) = next() {
            let message = decode(&bytes[frame::HEADER_LEN..]).unwrap();
            out.push((bytes, message));
        }
        out
    }

    fn is_hub_ping(m: &HubMessage) -> bool {
        matches!(m, HubMessage::Ping { .. })
    }

    #[test]
    fn the_hub_beats_and_rechecks_every_interval_even_when_the_endpoint_pings_first() {
        // An endpoint (say an older build, or one whose timer fires first
        // on a loaded hub) pings a little before each of the hub's beats.
        // The hub's pongs must not push its beat back, or the admission
        // re-check that rides on it would never run.
        let t0 = Instant::now();
        let (_ep, mut hub) = connected(t0);
        let mut beats = Vec::new();
        let mut seq = 0;
        for s in 1..=60 {
            let now = t0 + Duration::from_secs(s);
            if s % 9 == 0 {
                seq += 1;
                let ping = encode(&EndpointMessage::Ping { seq });
                assert_eq!(hub.handle_bytes(now, &ping), Ok(vec![]));
                let sent = drain::<HubMessage>(|| hub.poll_transmit());
                assert!(
                    matches!(sent.as_slice(), [(_, HubMessage::Pong { seq: s })] if *s == seq),
                    "{sent:?}"
                );
            }
            if now >= hub.poll_timeout().unwrap() {
                let timeout = hub.handle_timeout(now).unwrap();
                let sent = drain::<HubMessage>(|| hub.poll_transmit());
                if sent.iter().any(|(_, m)| is_hub_ping(m)) {
                    assert_eq!(timeout, HubTimeout::Beat);
                    beats.push(s);
                } else {
                    assert_eq!(timeout, HubTimeout::Nothing);
                }
            }
        }
        assert_eq!(beats, [10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn an_idle_link_costs_one_round_per_interval_on_the_hubs_beat() {
        // Both sides driven as their drivers do, the endpoint on time and
        // the hub waking late by up to 0.4 of an interval (a loaded hub).
        let t0 = Instant::now();
        let (mut ep, mut hub) = connected(t0);
        let lags = [0, 4000, 1500, 3000, 500, 3900, 0, 2500].map(Duration::from_millis);
        let (mut hub_pings, mut ep_pings, mut beats) = (Vec::new(), 0, 0);
        let step = Duration::from_millis(100);
        let mut now = t0;
        while now < t0 + Duration::from_secs(120) {
            now += step;
            if now >= ep.poll_timeout().unwrap() {
                ep.handle_timeout(now).unwrap();
            }
            let lag = lags[hub_pings.len() % lags.len()];
            if now >= hub.poll_timeout().unwrap() + lag {
                beats += usize::from(hub.handle_timeout(now).unwrap() == HubTimeout::Beat);
            }
            for (bytes, m) in drain::<EndpointMessage>(|| ep.poll_transmit()) {
                ep_pings += usize::from(matches!(m, EndpointMessage::Ping { .. }));
                hub.handle_bytes(now, &bytes).unwrap();
            }
            for (bytes, m) in drain::<HubMessage>(|| hub.poll_transmit()) {
                if is_hub_ping(&m) {
                    hub_pings.push(now - t0);
                }
                ep.handle_bytes(now, &bytes).unwrap();
            }
            // Pongs to the hub's pings.
            for (bytes, _) in drain::<EndpointMessage>(|| ep.poll_transmit()) {
                hub.handle_bytes(now, &bytes).unwrap();
            }
        }
        assert_eq!(
            ep_pings, 0,
            "the endpoint pinged although the hub kept the beat"
        );
        assert_eq!(beats, hub_pings.len());
        // On schedule: late wake-ups do not push later beats back.
        assert!(hub_pings.len() >= 11, "{hub_pings:?}");
        let mut last = Duration::ZERO;
        for at in &hub_pings {
            assert!(*at - last <= HB + Duration::from_secs(4), "{hub_pings:?}");
            last = *at;
        }
    }

    #[test]
    fn the_endpoint_probes_a_quiet_hub_and_its_answers_keep_the_link() {
        // A hub that answers but never pings (its timer stuck, or an older
        // build whose pongs delay its pings): the endpoint probes after 1.5
        // intervals of silence, and the answers keep both sides alive.
        let t0 = Instant::now();
        let (mut ep, mut hub) = connected(t0);
        let mut probes = Vec::new();
        for s in 1..=120 {
            let now = t0 + Duration::from_secs(s);
            ep.handle_timeout(now).unwrap();
            for (bytes, m) in drain::<EndpointMessage>(|| ep.poll_transmit()) {
                assert!(matches!(m, EndpointMessage::Ping { .. }), "{m:?}");
                probes.push(s);
                hub.handle_bytes(now, &bytes).unwrap();
            }
            pump_to_endpoint(&mut hub, &mut ep, now).unwrap();
        }
        assert_eq!(probes, [15, 30, 45, 60, 75, 90, 105, 120]);
    }

    #[test]
    fn the_hub_declares_a_silent_endpoint_dead_within_three_intervals() {
        let t0 = Instant::now();
        let (_ep, mut hub) = connected(t0);
        let mut beats = Vec::new();
        let (err, dead_at) = loop {
            let now = hub.poll_timeout().unwrap();
            match hub.handle_timeout(now) {
                Ok(HubTimeout::Beat) => beats.push(now - t0),
                Ok(HubTimeout::Nothing) => panic!("woken for nothing at {:?}", now - t0),
                Err(e) => break (e, now),
            }
            assert!(hub.poll_transmit().is_some());
        };
        assert!(matches!(err, ControlError::HeartbeatTimeout(_)), "{err}");
        assert_eq!(beats, [HB, 2 * HB]);
        assert_eq!(dead_at - t0, 3 * HB);
        assert_eq!(hub.poll_timeout(), None);
    }

    #[test]
    fn during_the_handshake_only_its_deadline_wakes_either_side() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let mut hub = HubConnection::new(t0, limit);
        let mut ep = EndpointConnection::new(t0, "t", None, limit);
        while ep.poll_transmit().is_some() {}
        // A deadline that is due and handled must move on, or the driver
        // would wake at once, again and again, until the handshake expires.
        for s in 0..30 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(hub.poll_timeout(), Some(t0 + limit));
            assert_eq!(ep.poll_timeout(), Some(t0 + limit));
            assert_eq!(hub.handle_timeout(now), Ok(HubTimeout::Nothing));
            assert_eq!(ep.handle_timeout(now), Ok(()));
            assert_eq!(hub.poll_transmit(), None);
            assert_eq!(ep.poll_transmit(), None);
        }
        assert!(matches!(
            hub.handle_timeout(t0 + limit),
            Err(ControlError::HeartbeatTimeout(_))
        ));
        assert!(matches!(
            ep.handle_timeout(t0 + limit),
            Err(ControlError::HeartbeatTimeout(_))
        ));
    }

    #[test]
    fn a_hub_stalled_past_a_beat_pings_once_then_keeps_a_full_interval() {
        let t0 = Instant::now();
        let (mut ep, mut hub) = connected(t0);
        // Woken 2.5 intervals late: one beat, not a burst of catch-up pings;
        // the next one interval after it.
        let late = t0 + HB * 5 / 2;
        assert_eq!(hub.handle_timeout(late), Ok(HubTimeout::Beat));
        assert_eq!(hub.handle_timeout(late), Ok(HubTimeout::Nothing));
        pump_to_endpoint(&mut hub, &mut ep, late).unwrap();
        pump_to_hub(&mut ep, &mut hub, late).unwrap();
        assert_eq!(hub.poll_timeout(), Some(late + HB));
    }
}
