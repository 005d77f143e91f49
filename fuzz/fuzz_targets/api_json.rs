//! The hub's REST bodies (`ferry_proto::api`, `ferry_proto::task`) as the
//! hub deserializes requests and the CLI deserializes answers, and the
//! local API's version envelope (`ferry_proto::local_api::decode`).
//!
//! Input: byte 0 selects the type, the rest is the JSON body.
//!
//! Asserts, for every type: decode → encode → decode gives an equal value
//! and the second encoding is byte-identical to the first; for the local
//! API, a message of another version is refused as such, and one that
//! decodes re-encodes (with its envelope) to one that decodes equal.
#![no_main]

use ferry_fuzz::Bytes;
use ferry_proto::api::{
    ApiError, CreateEndpoint, CreateWebhook, CreatedEndpoint, EndpointInfo, FilterScope, FsOp, FsOutcome,
    OAuthError, RegisterEndpoint, RegisteredEndpoint, TokenResponse,
};
use ferry_proto::local_api::{self, DecodeError, Request, Response};
use ferry_proto::task::{
    SubmitTask, SubmittedTask, TaskEvent, TaskInfo, TaskReport, TransferItem, TransferOptions,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let json = serde_json::to_vec(&value).expect("a decoded body encodes");
    let back: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "own encoding {:?} does not decode: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(back, value, "round-trip changed the value");
    assert_eq!(
        serde_json::to_vec(&back).unwrap(),
        json,
        "encoding not canonical"
    );
}

fn local<T: DeserializeOwned + Serialize + PartialEq + Debug>(body: &[u8]) {
    match local_api::decode::<T>(body) {
        Ok(value) => {
            let again = local_api::encode(&value);
            match local_api::decode::<T>(&again) {
                Ok(back) => assert_eq!(back, value),
                Err(e) => panic!("own envelope refused: {e}"),
            }
        }
        Err(DecodeError::Version { theirs, ours }) => {
            assert_ne!(theirs, ours);
            assert_eq!(ours, local_api::VERSION);
        }
        Err(DecodeError::Malformed(_)) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let selector = input.u8();
    let body = input.rest();
    match selector % 21 {
        // Requests the hub reads.
        0 => round_trip::<CreateEndpoint>(body),
        1 => round_trip::<RegisterEndpoint>(body),
        2 => round_trip::<FsOp>(body),
        3 => round_trip::<SubmitTask>(body),
        4 => round_trip::<TransferItem>(body),
        5 => round_trip::<TransferOptions>(body),
        6 => round_trip::<FilterScope>(body),
        // Answers the CLI and the daemon read.
        7 => round_trip::<ApiError>(body),
        8 => round_trip::<OAuthError>(body),
        9 => round_trip::<TokenResponse>(body),
        10 => round_trip::<CreatedEndpoint>(body),
        11 => round_trip::<RegisteredEndpoint>(body),
        12 => round_trip::<EndpointInfo>(body),
        13 => round_trip::<FsOutcome>(body),
        14 => round_trip::<SubmittedTask>(body),
        15 => round_trip::<TaskInfo>(body),
        16 => round_trip::<Vec<TaskEvent>>(body),
        17 => round_trip::<TaskReport>(body),
        // The local API between the CLI and the daemon.
        18 => local::<Request>(body),
        19 => local::<Response>(body),
        // A request the hub reads, added later (kept last so the
        // selectors above keep their meaning for existing corpora).
        _ => round_trip::<CreateWebhook>(body),
    }
});
