//! The hub's relay on loopback: a destination that never listens
//! (`data_listen = false`) still receives, its data streams going through
//! the hub, which carries only the endpoints' own TLS records. The tests
//! that cross a real network boundary (network namespaces) are in
//! `relay_netns.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::relay_checks::{assert_only_ciphertext, marker, wait_for_temp};
use ferry_tests::{Lab, pattern, tree, wait_until};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;

/// A lab whose `dst` opens no data listener, and whose hub (a debug
/// build) appends every byte it relays to the returned file.
fn relay_lab() -> (Lab, tempfile::TempDir, PathBuf) {
    let tee_dir = tempfile::tempdir().unwrap();
    let tee = tee_dir.path().join("relayed.bin");
    let lab = Lab::builder()
        .dst_setting("data_listen = false")
        .hub_env("FERRY_HUB_RELAY_TEE", &tee)
        .start();
    (lab, tee_dir, tee)
}

/// A tree with the marker many times over in a text file, and data
/// spanning several chunks.
fn dataset(root: &Path, marker: &str) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("secret.txt"), marker.repeat(1000)).unwrap();
    fs::write(root.join("sub/large.bin"), pattern(3 * CHUNK + 17, 4)).unwrap();
    for i in 0..20 {
        fs::write(root.join(format!("small-{i}")), pattern(1000 + i, i as u32)).unwrap();
    }
}

fn relayed_events(lab: &Lab, id: &str) -> Vec<String> {
    lab.events_json(id)
        .iter()
        .filter(|e| e["code"] == "RELAYED")
        .map(|e| e["description"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_destination_that_never_listens_receives_through_the_hub_which_sees_only_ciphertext() {
    let (lab, _tee_dir, tee) = relay_lab();
    assert!(
        lab.dst_daemon().log().contains("data_listen = false"),
        "{}",
        lab.dst_daemon().log()
    );
    let marker = marker();
    let src = lab.src.home.join("data");
    dataset(&src, &marker);
    let id = lab.transfer(&["-r", "src:/~/data", "dst:/~/data"]);
    let task = lab.wait(&id);
    assert_eq!(tree(&lab.dst.home.join("data")), tree(&src));
    let events = relayed_events(&lab, &id);
    assert!(
        events
            .iter()
            .any(|e| e.contains("through the hub") && e.contains("no direct connections")),
        "{events:?}\n{}",
        lab.events(&id)
    );
    let bytes = task["bytes"].as_u64().unwrap();
    assert_only_ciphertext(&tee, &marker, bytes);
    // The task counts what the hub carried for it: every relayed byte,
    // once its streams closed (they may outlive the task's end briefly).
    let carried = fs::metadata(&tee).unwrap().len();
    wait_until(LIMIT, "the task's relayed bytes to be counted", || {
        lab.show(&id)["bytes_relayed"].as_u64() == Some(carried)
    });
    let show = lab.ferry(&["task", "show", &id]);
    assert!(
        show.stdout
            .lines()
            .any(|l| l.starts_with("Bytes Relayed") && l.contains(&carried.to_string())),
        "{}",
        show.stdout
    );
}

#[test]
fn a_relayed_transfer_resumes_after_kill_9_of_either_endpoint() {
    let (mut lab, _tee_dir, tee) = relay_lab();
    let marker = marker();
    let src = lab.src.home.join("big");
    dataset(&src, &marker);
    fs::write(src.join("huge.bin"), pattern(32 * CHUNK + 5, 8)).unwrap();
    let id = lab.transfer(&["-r", "src:/~/big", "dst:/~/big"]);
    wait_for_temp(&lab.dst.home.join("big"), LIMIT);
    lab.kill_dst();
    lab.start_dst();
    let started = |lab: &Lab| {
        lab.events_json(&id)
            .iter()
            .filter(|e| e["code"] == "STARTED")
            .count()
    };
    wait_until(LIMIT, "a second attempt", || {
        started(&lab) >= 2 || lab.show(&id)["status"] != "ACTIVE"
    });
    if lab.show(&id)["status"] == "ACTIVE" {
        lab.kill_src();
        lab.start_src();
    }
    let task = lab.wait(&id);
    assert_eq!(tree(&lab.dst.home.join("big")), tree(&src));
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert_only_ciphertext(&tee, &marker, 32 * CHUNK as u64);
}
