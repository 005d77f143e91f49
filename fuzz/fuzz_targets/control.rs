//! The control channel (`ferry_proto::control`): either side's state
//! machine (`HubConnection` or `EndpointConnection`) driven by a hostile
//! peer, against a model of the protocol written from its documentation.
//!
//! Input: one byte (bit 0: 0 drives the hub's side, 1 the endpoint's), then
//! lines, each one step:
//! - `!t<secs>`: time passes; the timers run (`handle_timeout`);
//! - `!a<secs>`: the local side acts: the hub accepts the hello with that
//!   heartbeat interval; the endpoint replies to a file operation, reports
//!   a task and asks for a certificate;
//! - `!r`: the hub refuses the endpoint;
//! - `!q`: the hub queues a file operation, a task start, a cancel, a
//!   revocation notice and two answers to certificate renewals;
//! - `!x<bytes...>`: everything after `!x` to the end of the input arrives
//!   as raw bytes (any framing, any garbage);
//! - any other line: a JSON body that arrives as one frame.
//!
//! Asserts:
//! - nothing but the handshake is accepted before it completes: no event
//!   other than hello/welcome comes out before it, and each message gets
//!   exactly the event, reply or error the protocol says;
//! - every error closes the connection, and a closed connection stays
//!   closed: no events, no timers, `Closed` from the timers;
//! - everything either side sends is one well-formed frame within
//!   `MAX_FRAME` whose JSON decodes as the peer's message type and re-encodes
//!   to the same bytes; a ping is answered with a pong of the same `seq`;
//! - timers never fire early, `poll_timeout` is always in the future after
//!   `handle_timeout`, and a hostile welcome cannot push the endpoint's
//!   next wake-up further than 1.5 × one hour.
#![no_main]

use ferry_fuzz::Bytes;
use ferry_proto::api::{FsOp, FsOutcome};
use ferry_proto::control::{
    ControlError, EndpointConnection, EndpointEvent, EndpointMessage, HubConnection, HubEvent,
    HubMessage, HubTimeout, MAX_CSR, MAX_FRAME, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    RefuseReason,
};
use ferry_proto::frame;
use ferry_proto::task::TaskReport;
use ferry_proto::wire_path::WirePath;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::{Duration, Instant};

const HANDSHAKE: Duration = Duration::from_secs(30);
/// The furthest an endpoint may sleep: 1.5 × the largest interval a hub
/// may announce (3600 s).
const LONGEST_SLEEP: Duration = Duration::from_secs(5400);

enum Step<'a> {
    Advance(u64),
    Act(u64),
    Refuse,
    Queue,
    Raw(&'a [u8]),
    Message(&'a [u8]),
}

fn number(text: &[u8]) -> u64 {
    text.iter()
        .take_while(|b| b.is_ascii_digit())
        .take(6)
        .fold(0, |n, d| n * 10 + u64::from(d - b'0'))
}

fn steps(mut input: &[u8]) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        if let Some(raw) = input.strip_prefix(b"!x") {
            out.push(Step::Raw(raw));
            break;
        }
        let (line, rest) = match input.iter().position(|b| *b == b'\n') {
            Some(i) => (&input[..i], &input[i + 1..]),
            None => (input, &input[input.len()..]),
        };
        input = rest;
        out.push(match line {
            [] => continue,
            [b'!', b't', n @ ..] => Step::Advance(number(n)),
            [b'!', b'a', n @ ..] => Step::Act(number(n)),
            [b'!', b'r', ..] => Step::Refuse,
            [b'!', b'q', ..] => Step::Queue,
            body => Step::Message(body),
        });
    }
    out
}

/// Checks one outgoing frame and returns its message.
fn sent<T: DeserializeOwned + Serialize + Debug>(wire: &[u8]) -> T {
    let header: [u8; 4] = wire[..4].try_into().expect("a frame header");
    let len = frame::decode_header(header, MAX_FRAME).expect("an outgoing frame within MAX_FRAME");
    assert_eq!(wire.len(), 4 + len, "one poll_transmit, one frame");
    let message: T = serde_json::from_slice(&wire[4..]).expect("outgoing JSON decodes");
    assert_eq!(serde_json::to_vec(&message).unwrap(), &wire[4..]);
    message
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hub {
    ExpectHello,
    Deciding,
    Ready,
    Closed,
}

fn endpoint_name(m: &EndpointMessage) -> &'static str {
    match m {
        EndpointMessage::Hello { .. } => "hello",
        EndpointMessage::Ping { .. } => "ping",
        EndpointMessage::Pong { .. } => "pong",
        EndpointMessage::FsReply { .. } => "fs_reply",
        EndpointMessage::TaskReport { .. } => "task_report",
        EndpointMessage::RenewCertificate { .. } => "renew_certificate",
        EndpointMessage::Paused { .. } => "paused",
    }
}

fn hub_name(m: &HubMessage) -> &'static str {
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

fn drive_hub(t0: Instant, input: &[u8]) {
    let mut now = t0;
    let mut conn = HubConnection::new(now, HANDSHAKE);
    let mut state = Hub::ExpectHello;
    let mut last_request = 0;
    for step in steps(input) {
        // What the hub must send in answer to this step, if modelled.
        let mut expect: Option<Vec<HubMessage>> = Some(Vec::new());
        match step {
            Step::Advance(secs) => {
                now += Duration::from_secs(secs);
                let due = conn.poll_timeout();
                let result = conn.handle_timeout(now);
                match (&result, state) {
                    (_, Hub::Closed) => assert_eq!(result, Err(ControlError::Closed)),
                    (Ok(HubTimeout::Beat), Hub::Ready) => {}
                    (Ok(HubTimeout::Beat), _) => panic!("a beat before the handshake"),
                    (Ok(HubTimeout::Nothing), _) => {}
                    (Err(ControlError::HeartbeatTimeout(_)), _) => {}
                    (Err(e), _) => panic!("handle_timeout gave {e}"),
                }
                if due.is_some_and(|due| now < due) {
                    assert_eq!(result, Ok(HubTimeout::Nothing), "a timer fired early");
                }
                if result.is_err() {
                    state = Hub::Closed;
                }
                // The pings of a beat are not modelled beyond their form.
                expect = match result {
                    Ok(HubTimeout::Beat) => None,
                    _ => Some(Vec::new()),
                };
                if result.is_ok() {
                    let next = conn.poll_timeout().expect("an open connection has a timer");
                    assert!(
                        next > now,
                        "poll_timeout not in the future after handle_timeout"
                    );
                }
            }
            Step::Act(secs) => {
                let interval = Duration::from_secs(secs.clamp(1, 3600));
                conn.accept(now, "ep-1", interval, "key", vec!["gone-1".into()]);
                if state == Hub::Deciding {
                    state = Hub::Ready;
                    expect = Some(vec![HubMessage::Welcome {
                        version: PROTOCOL_VERSION,
                        endpoint_id: "ep-1".into(),
                        heartbeat_secs: interval.as_secs(),
                        capability_key: "key".into(),
                        revoked_endpoints: vec!["gone-1".into()],
                        deleted_reports: true,
                        pause_notices: true,
                    }]);
                    assert_eq!(conn.poll_timeout(), Some(now + interval));
                }
            }
            Step::Refuse => {
                conn.refuse(RefuseReason::Revoked, "revoked");
                state = Hub::Closed;
                expect = Some(vec![HubMessage::Refuse {
                    reason: RefuseReason::Revoked,
                    message: "revoked".into(),
                }]);
            }
            Step::Queue => {
                let op = FsOp::List {
                    path: WirePath::from_bytes("/~/x"),
                };
                let id = conn.request_fs(op.clone(), None);
                let start = conn.start_task("cap", "127.0.0.1:1");
                let cancel = conn.cancel_task("t", Some(2));
                let revoked = conn.notify_revoked(vec!["gone-2".into()]);
                let renewed = conn.answer_renewal(Ok("CERT".into()));
                let refused = conn.answer_renewal(Err("no".into()));
                if state == Hub::Ready {
                    let id = id.expect("request_fs when ready");
                    assert!(id > last_request, "request ids go up");
                    last_request = id;
                    assert_eq!((start, cancel, revoked), (Ok(()), Ok(()), Ok(())));
                    assert_eq!((renewed, refused), (Ok(()), Ok(())));
                    expect = Some(vec![
                        HubMessage::FsRequest { id, op, grant: None },
                        HubMessage::TaskStart {
                            capability: "cap".into(),
                            connect_to: "127.0.0.1:1".into(),
                            relay: false,
                        },
                        HubMessage::TaskCancel {
                            task_id: "t".into(),
                            through_attempt: Some(2),
                        },
                        HubMessage::Revoked {
                            endpoint_ids: vec!["gone-2".into()],
                        },
                        HubMessage::Certificate {
                            cert: Some("CERT".into()),
                            refused: None,
                        },
                        HubMessage::Certificate {
                            cert: None,
                            refused: Some("no".into()),
                        },
                    ]);
                } else {
                    assert_eq!(id, Err(ControlError::Closed));
                    assert_eq!(start, Err(ControlError::Closed));
                    assert_eq!(cancel, Err(ControlError::Closed));
                    assert_eq!(revoked, Err(ControlError::Closed));
                    assert_eq!(renewed, Err(ControlError::Closed));
                    assert_eq!(refused, Err(ControlError::Closed));
                }
            }
            Step::Raw(bytes) => {
                let result = conn.handle_bytes(now, bytes);
                match &result {
                    Ok(events) => {
                        for event in events {
                            match (event, state) {
                                (HubEvent::Hello { .. }, Hub::ExpectHello) => state = Hub::Deciding,
                                (event, Hub::Ready) if !matches!(event, HubEvent::Hello { .. }) => {
                                }
                                (event, state) => panic!("{event:?} in state {state:?}"),
                            }
                        }
                    }
                    Err(_) => state = Hub::Closed,
                }
                expect = None;
            }
            Step::Message(body) => {
                let wire = frame::encode(body, MAX_FRAME).expect("a line fits a frame");
                let result = conn.handle_bytes(now, &wire);
                let message = serde_json::from_slice::<EndpointMessage>(body);
                match (state, message) {
                    (Hub::Closed, _) => assert!(result.is_err(), "a closed link took {result:?}"),
                    (_, Err(_)) => {
                        assert!(
                            matches!(result, Err(ControlError::Malformed(_))),
                            "{result:?}"
                        );
                        state = Hub::Closed;
                    }
                    (
                        Hub::ExpectHello,
                        Ok(EndpointMessage::Hello {
                            version,
                            min_version,
                            software,
                            data_address,
                            paused,
                            hooks,
                            mut features,
                        }),
                    ) => {
                        features.truncate(ferry_proto::control::MAX_FEATURES);
                        if version < MIN_PROTOCOL_VERSION
                            || min_version > PROTOCOL_VERSION
                            || min_version > version
                        {
                            assert_eq!(
                                result,
                                Err(ControlError::IncompatibleVersion {
                                    peer_min: min_version,
                                    peer_max: version
                                })
                            );
                            state = Hub::Closed;
                            expect = None; // a Refuse naming both ranges
                        } else {
                            assert_eq!(
                                result,
                                Ok(vec![HubEvent::Hello {
                                    software,
                                    data_address,
                                    paused,
                                    hooks,
                                    features
                                }])
                            );
                            state = Hub::Deciding;
                        }
                    }
                    (Hub::ExpectHello | Hub::Deciding, Ok(other)) => {
                        assert_eq!(
                            result,
                            Err(ControlError::BeforeHandshake(endpoint_name(&other)))
                        );
                        state = Hub::Closed;
                    }
                    (Hub::Ready, Ok(EndpointMessage::Hello { .. })) => {
                        assert_eq!(result, Err(ControlError::AfterHandshake("hello")));
                        state = Hub::Closed;
                    }
                    (Hub::Ready, Ok(EndpointMessage::Ping { seq })) => {
                        assert_eq!(result, Ok(vec![]));
                        expect = Some(vec![HubMessage::Pong { seq }]);
                    }
                    (Hub::Ready, Ok(EndpointMessage::Pong { .. })) => {
                        assert_eq!(result, Ok(vec![]))
                    }
                    (Hub::Ready, Ok(EndpointMessage::RenewCertificate { csr })) => {
                        if csr.len() > MAX_CSR {
                            assert!(
                                matches!(result, Err(ControlError::Malformed(_))),
                                "{result:?}"
                            );
                            state = Hub::Closed;
                        } else {
                            assert_eq!(result, Ok(vec![HubEvent::RenewCertificate { csr }]));
                        }
                    }
                    (Hub::Ready, Ok(EndpointMessage::Paused { paused })) => {
                        assert_eq!(result, Ok(vec![HubEvent::Paused { paused }]))
                    }
                    (Hub::Ready, Ok(EndpointMessage::FsReply { id, outcome })) => {
                        assert_eq!(result, Ok(vec![HubEvent::FsReply { id, outcome }]))
                    }
                    (
                        Hub::Ready,
                        Ok(EndpointMessage::TaskReport {
                            task_id,
                            attempt,
                            report,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![HubEvent::TaskReport {
                            task_id,
                            attempt,
                            report
                        }])
                    ),
                }
            }
        }
        if state == Hub::Closed {
            assert_eq!(conn.poll_timeout(), None, "a closed link keeps a timer");
        }
        let mut out = Vec::new();
        while let Some(wire) = conn.poll_transmit() {
            out.push(sent::<HubMessage>(&wire));
        }
        if let Some(expect) = expect {
            assert_eq!(out, expect, "the hub sent something else");
        }
    }
    // Closed stays closed.
    if state == Hub::Closed {
        assert_eq!(conn.handle_timeout(now), Err(ControlError::Closed));
        let ping = frame::encode(br#"{"type":"ping","seq":1}"#, MAX_FRAME).unwrap();
        // (Bytes of an unfinished frame may still be waiting: then the
        // ping only adds to them.)
        let after = conn.handle_bytes(now, &ping);
        assert!(
            after.as_ref().is_ok_and(Vec::is_empty) || after.is_err(),
            "{after:?}"
        );
        assert_eq!(conn.poll_timeout(), None);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    ExpectWelcome,
    Ready,
    Closed,
}

fn drive_endpoint(t0: Instant, input: &[u8]) {
    let mut now = t0;
    let mut conn = EndpointConnection::new(now, "ferry fuzz", None, HANDSHAKE);
    let hello = sent::<EndpointMessage>(&conn.poll_transmit().expect("hello first"));
    assert!(matches!(hello, EndpointMessage::Hello { .. }));
    assert_eq!(conn.poll_transmit(), None);
    let mut state = Endpoint::ExpectWelcome;
    for step in steps(input) {
        let mut expect: Option<Vec<EndpointMessage>> = Some(Vec::new());
        match step {
            Step::Advance(secs) => {
                now += Duration::from_secs(secs);
                let due = conn.poll_timeout();
                let result = conn.handle_timeout(now);
                match (&result, state) {
                    (_, Endpoint::Closed) => assert_eq!(result, Err(ControlError::Closed)),
                    (Ok(()), _) | (Err(ControlError::HeartbeatTimeout(_)), _) => {}
                    (Err(e), _) => panic!("handle_timeout gave {e}"),
                }
                if due.is_some_and(|due| now < due) {
                    assert_eq!(result, Ok(()), "a timer fired early");
                    expect = Some(Vec::new());
                } else {
                    expect = None; // maybe a probe, checked below
                }
                match result {
                    Ok(()) => {
                        let next = conn.poll_timeout().expect("an open connection has a timer");
                        assert!(
                            next > now,
                            "poll_timeout not in the future after handle_timeout"
                        );
                    }
                    Err(_) => state = Endpoint::Closed,
                }
            }
            Step::Act(n) => {
                conn.reply_fs(n, FsOutcome::Done);
                conn.report_task("t", n as u32, TaskReport::Started);
                conn.renew_certificate("CSR");
                if state == Endpoint::Ready {
                    expect = Some(vec![
                        EndpointMessage::FsReply {
                            id: n,
                            outcome: FsOutcome::Done,
                        },
                        EndpointMessage::TaskReport {
                            task_id: "t".into(),
                            attempt: n as u32,
                            report: TaskReport::Started,
                        },
                        EndpointMessage::RenewCertificate { csr: "CSR".into() },
                    ]);
                }
            }
            Step::Refuse | Step::Queue => {}
            Step::Raw(bytes) => {
                match conn.handle_bytes(now, bytes) {
                    Ok(events) => {
                        for event in &events {
                            match (event, state) {
                                (EndpointEvent::Connected { .. }, Endpoint::ExpectWelcome) => {
                                    state = Endpoint::Ready
                                }
                                (event, Endpoint::Ready)
                                    if !matches!(event, EndpointEvent::Connected { .. }) => {}
                                (event, state) => panic!("{event:?} in state {state:?}"),
                            }
                        }
                    }
                    Err(_) => state = Endpoint::Closed,
                }
                expect = None;
            }
            Step::Message(body) => {
                let wire = frame::encode(body, MAX_FRAME).expect("a line fits a frame");
                let result = conn.handle_bytes(now, &wire);
                let message = serde_json::from_slice::<HubMessage>(body);
                match (state, message) {
                    (Endpoint::Closed, _) => {
                        assert!(result.is_err(), "a closed link took {result:?}")
                    }
                    (_, Err(_)) => {
                        assert!(
                            matches!(result, Err(ControlError::Malformed(_))),
                            "{result:?}"
                        );
                        state = Endpoint::Closed;
                    }
                    (_, Ok(HubMessage::Refuse { reason, message })) => {
                        assert_eq!(result, Err(ControlError::Refused { reason, message }));
                        state = Endpoint::Closed;
                    }
                    (
                        Endpoint::ExpectWelcome,
                        Ok(HubMessage::Welcome {
                            version,
                            endpoint_id,
                            heartbeat_secs,
                            capability_key,
                            revoked_endpoints,
                            pause_notices,
                            ..
                        }),
                    ) => {
                        if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                            assert_eq!(
                                result,
                                Ok(vec![EndpointEvent::Connected {
                                    endpoint_id,
                                    capability_key,
                                    revoked_endpoints,
                                    pause_notices,
                                }])
                            );
                            state = Endpoint::Ready;
                            let interval = Duration::from_secs(heartbeat_secs.clamp(1, 3600));
                            assert_eq!(conn.poll_timeout(), Some(now + interval.mul_f64(1.5)));
                        } else {
                            assert_eq!(
                                result,
                                Err(ControlError::IncompatibleVersion {
                                    peer_min: version,
                                    peer_max: version
                                })
                            );
                            state = Endpoint::Closed;
                        }
                    }
                    (Endpoint::ExpectWelcome, Ok(other)) => {
                        assert_eq!(result, Err(ControlError::BeforeHandshake(hub_name(&other))));
                        state = Endpoint::Closed;
                    }
                    (Endpoint::Ready, Ok(HubMessage::Welcome { .. })) => {
                        assert_eq!(result, Err(ControlError::AfterHandshake("welcome")));
                        state = Endpoint::Closed;
                    }
                    (Endpoint::Ready, Ok(HubMessage::Ping { seq })) => {
                        assert_eq!(result, Ok(vec![]));
                        expect = Some(vec![EndpointMessage::Pong { seq }]);
                    }
                    (Endpoint::Ready, Ok(HubMessage::Pong { .. })) => {
                        assert_eq!(result, Ok(vec![]))
                    }
                    (Endpoint::Ready, Ok(HubMessage::FsRequest { id, op, grant })) => {
                        assert_eq!(result, Ok(vec![EndpointEvent::Fs { id, op, grant }]))
                    }
                    (
                        Endpoint::Ready,
                        Ok(HubMessage::TaskStart {
                            capability,
                            connect_to,
                            relay,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![EndpointEvent::TaskStart {
                            capability,
                            connect_to: Some(connect_to).filter(|c| !c.is_empty()),
                            relay,
                        }])
                    ),
                    (
                        Endpoint::Ready,
                        Ok(HubMessage::RelayDial {
                            token,
                            task_id,
                            attempt,
                            stream,
                            via,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![EndpointEvent::RelayDial {
                            token,
                            task_id,
                            attempt,
                            stream,
                            via: via.filter(|v| ferry_proto::control::valid_via(v)),
                        }])
                    ),
                    (
                        Endpoint::Ready,
                        Ok(HubMessage::TaskCancel {
                            task_id,
                            through_attempt,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![EndpointEvent::TaskCancel {
                            task_id,
                            through_attempt
                        }])
                    ),
                    (Endpoint::Ready, Ok(HubMessage::Certificate { cert, refused })) => {
                        match (cert, refused) {
                            (Some(cert), None) => assert_eq!(
                                result,
                                Ok(vec![EndpointEvent::Certificate { result: Ok(cert) }])
                            ),
                            (None, Some(why)) => assert_eq!(
                                result,
                                Ok(vec![EndpointEvent::Certificate { result: Err(why) }])
                            ),
                            _ => {
                                assert!(
                                    matches!(result, Err(ControlError::Malformed(_))),
                                    "{result:?}"
                                );
                                state = Endpoint::Closed;
                            }
                        }
                    }
                    (Endpoint::Ready, Ok(HubMessage::Revoked { endpoint_ids })) => {
                        assert_eq!(result, Ok(vec![EndpointEvent::Revoked { endpoint_ids }]))
                    }
                    (
                        Endpoint::Ready,
                        Ok(HubMessage::FileStream {
                            token,
                            path,
                            grant,
                            via,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![EndpointEvent::FileStream {
                            token,
                            path,
                            grant,
                            via: via.filter(|v| ferry_proto::control::valid_via(v)),
                        }])
                    ),
                    (
                        Endpoint::Ready,
                        Ok(HubMessage::FileUpload {
                            token,
                            path,
                            grant,
                            upload,
                            via,
                        }),
                    ) => assert_eq!(
                        result,
                        Ok(vec![EndpointEvent::FileUpload {
                            token,
                            path,
                            grant,
                            upload,
                            via: via.filter(|v| ferry_proto::control::valid_via(v)),
                        }])
                    ),
                }
            }
        }
        match conn.poll_timeout() {
            None => assert_eq!(state, Endpoint::Closed, "an open link without a timer"),
            Some(at) => {
                assert_ne!(state, Endpoint::Closed, "a closed link keeps a timer");
                assert!(
                    at <= now + LONGEST_SLEEP.max(HANDSHAKE),
                    "the endpoint sleeps {:?}",
                    at - now
                );
            }
        }
        let mut out = Vec::new();
        while let Some(wire) = conn.poll_transmit() {
            out.push(sent::<EndpointMessage>(&wire));
        }
        match expect {
            Some(expect) => assert_eq!(out, expect, "the endpoint sent something else"),
            None => {
                for m in &out {
                    match m {
                        EndpointMessage::Ping { .. } | EndpointMessage::Pong { .. } => {
                            assert_eq!(state, Endpoint::Ready, "{m:?} outside the handshake")
                        }
                        EndpointMessage::Hello { .. } => panic!("a second hello"),
                        _ => panic!("unasked-for {m:?}"),
                    }
                }
            }
        }
    }
    if state == Endpoint::Closed {
        assert_eq!(conn.handle_timeout(now), Err(ControlError::Closed));
        let ping = frame::encode(br#"{"type":"ping","seq":1}"#, MAX_FRAME).unwrap();
        // (Bytes of an unfinished frame may still be waiting: then the
        // ping only adds to them.)
        let after = conn.handle_bytes(now, &ping);
        assert!(
            after.as_ref().is_ok_and(Vec::is_empty) || after.is_err(),
            "{after:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let side = input.u8();
    let rest = input.rest();
    let t0 = Instant::now();
    if side & 1 == 0 {
        drive_hub(t0, rest);
    } else {
        drive_endpoint(t0, rest);
    }
});
