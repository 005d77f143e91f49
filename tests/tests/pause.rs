//! `ferry -pause` in the middle of a transfer, on either endpoint: the hub
//! records that the task waits for the paused endpoint (a `PAUSED` event,
//! no fault, no backoff), `-status` says so, the destination keeps what it
//! wrote, and `-unpause` starts the next attempt at once, which resumes
//! and ends with an identical tree.
//!
//! Data connections to `dst` go through a fault proxy that slows them down
//! (a pause per read), so the transfer is surely in flight when the pause
//! comes: `dst` advertises the proxy as its `data_address`, with
//! `data_ports` pinned to the one port the proxy forwards to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::fault_proxy::{Direction, Fault};
use ferry_tests::{Lab, User, line_value, pattern, tree, wait_until};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// The task's events as `(code, description)`.
fn task_events(lab: &Lab, id: &str) -> Vec<(String, String)> {
    lab.events_json(id)
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn codes(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(code, _)| code.as_str()).collect()
}

/// Pauses `paused` once the transfer is well under way (8 MiB of about 40
/// went through), checks what the hub, `-status` and the destination show
/// while it waits, unpauses, and checks that the task ends as if nothing
/// went wrong.
fn pause_mid_transfer_then_unpause(paused: fn(&Lab) -> &User, name: &str) {
    // A hub with alice's `src` and `dst`, both daemons running; data to
    // `dst` goes through the proxy.
    let lab = Lab::builder().proxy_data().start();
    let root = lab.src.home.join("data");
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..100u32 {
        let len = (i as usize * 977) % 20_000;
        fs::write(root.join("small").join(format!("f-{i}")), pattern(len, i)).unwrap();
    }
    fs::write(root.join("large.bin"), pattern(10 * CHUNK + 4321, 999)).unwrap();

    lab.proxy().set(Fault::Delay(Duration::from_millis(10)));
    let id = lab.transfer(&["-r", "--streams", "2", "src:/~/data", "dst:/~/data"]);
    wait_until(LIMIT, "8 MiB through the data connections", || {
        lab.proxy().forwarded(Direction::Upstream) >= 8 * MIB
    });

    let endpoint = paused(&lab);
    let out = endpoint.run(&["-pause"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut events = Vec::new();
    wait_until(
        LIMIT,
        "the pause (or a fault) among the task's events",
        || {
            events = task_events(&lab, &id);
            codes(&events)
                .iter()
                .any(|c| *c == "PAUSED" || *c == "FAULT")
        },
    );
    let paused_event = events
        .iter()
        .find(|(code, _)| code == "PAUSED")
        .unwrap_or_else(|| panic!("no PAUSED event: {events:?}"));
    assert!(
        paused_event.1.contains(&format!(
            "endpoint '{name}' is paused; the task waits until it is unpaused"
        )),
        "{events:?}"
    );

    // The paused endpoint says what waits for it.
    let status = endpoint.run(&["-status"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(
        line_value(&status.stdout, "Hub: "),
        Some("paused"),
        "{status:?}"
    );
    assert_eq!(
        line_value(&status.stdout, "Transfer Status: "),
        Some("active"),
        "a task waits for this endpoint: {status:?}"
    );
    assert!(
        status
            .stdout
            .contains("paused: 1 task waits until `ferry -unpause")
            && status.stdout.contains(&id),
        "{status:?}"
    );
    let json = endpoint.run(&["-status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["held_tasks"], serde_json::json!([id]), "{doc}");

    // The destination keeps what it wrote for the next attempt.
    let journal = lab.journal(&id);
    assert!(journal.exists(), "the journal went with the pause");
    let task = lab.show(&id);
    assert_eq!(task["status"], "ACTIVE", "{task}");

    let out = endpoint.run(&["-unpause"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    lab.proxy().set(Fault::Pass);
    let out = lab.ferry(&["task", "wait", &id, "--timeout", "120"]);
    let events = task_events(&lab, &id);
    assert_eq!(out.code, Some(0), "{out:?}\n{events:?}");
    let task = lab.show(&id);
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert_eq!(task["faults"], 0, "a pause is no fault: {task}\n{events:?}");
    assert!(
        !codes(&events).contains(&"FAULT"),
        "no fault, so no backoff before the next attempt: {events:?}"
    );
    assert_eq!(
        codes(&events).iter().filter(|c| **c == "PAUSED").count(),
        1,
        "{events:?}"
    );
    // The attempt after the pause is the next one: the hub tried nothing
    // while the endpoint was paused.
    assert_eq!(
        codes(&events).iter().filter(|c| **c == "STARTED").count(),
        2,
        "{events:?}"
    );
    assert!(
        tree(&lab.dst.home.join("data")) == tree(&root),
        "the trees differ"
    );
    assert!(!journal.exists(), "the journal outlived the task");
    assert!(
        tree(&lab.dst.home.join("data"))
            .iter()
            .all(|(p, _)| !Path::new(std::ffi::OsStr::from_bytes(p))
                .file_name()
                .unwrap()
                .as_bytes()
                .starts_with(b".ferry.")),
        "a temporary file was left"
    );
    let status = endpoint.run(&["-status"]);
    assert_ne!(
        line_value(&status.stdout, "Hub: "),
        Some("paused"),
        "{status:?}"
    );
}

#[test]
fn pausing_the_source_mid_transfer_is_no_fault_and_unpause_resumes_at_once() {
    pause_mid_transfer_then_unpause(|lab| &lab.src, "src");
}

#[test]
fn pausing_the_destination_mid_transfer_is_no_fault_and_unpause_resumes_at_once() {
    pause_mid_transfer_then_unpause(|lab| &lab.dst, "dst");
}
