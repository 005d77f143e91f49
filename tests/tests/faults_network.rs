//! The network failing under ferry: a fault proxy (`ferry_tests::fault_proxy`)
//! between a daemon and its hub, and between two endpoints, drops, stalls,
//! truncates, delays and flips bits. After each fault the link comes back
//! by itself, and a transfer ends SUCCEEDED once the fault clears (the
//! faults it met are in its events); no wrong or half file ever stands
//! under a real name.
//!
//! Data connections reach the proxy because the destination advertises it:
//! `data_address = "127.0.0.1:PROXY"` in its `endpoint.toml`, as an
//! endpoint behind a port-forwarding NAT would, with `data_ports` pinned to
//! the one port the proxy forwards to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::fault_proxy::{Direction, Fault};
use ferry_tests::{Lab, Ran, line_value, pattern, wait_until};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// The line under `Hub: ...` in `ferry -status`: why it is not connected.
fn hub_detail(status: &Ran) -> Option<&str> {
    let mut lines = status.stdout.lines();
    lines.find(|l| l.starts_with("Hub: "))?;
    lines.next().and_then(|l| l.strip_prefix("  "))
}

// ---------------------------------------------------------------------------
// The control channel

/// One endpoint, `src`, whose daemon reaches the hub only through a proxy,
/// with a file in its home.
fn control_lab() -> Lab {
    let lab = Lab::builder().without_dst().proxy_control().start();
    fs::write(lab.src.home.join("notes.txt"), b"still here").unwrap();
    lab
}

/// `ferry ls src:/~/` works: the link carries file operations.
fn assert_files_reachable(lab: &Lab) {
    let ls = lab.ferry(&["ls", "src:/~/"]);
    assert_eq!(ls.code, Some(0), "{ls:?}\n{}", lab.src_daemon().log());
    assert!(ls.stdout.contains("notes.txt"), "{ls:?}");
}

#[test]
fn a_dropped_control_link_says_why_and_comes_back_when_the_network_does() {
    let lab = control_lab();
    lab.proxy().set(Fault::Drop);
    let status = lab.src.wait_hub_state("disconnected", LIMIT);
    let why = hub_detail(&status).unwrap_or_else(|| panic!("no reason given: {status:?}"));
    assert!(why.contains("closed the connection"), "{status:?}");
    assert!(why.contains("next try in"), "{status:?}");
    // Re-dialled, and refused by the dead network, while it lasts.
    wait_until(LIMIT, "a re-dial into the dropped network", || {
        lab.proxy().refused() >= 1
    });
    assert_ne!(
        line_value(&lab.src.run(&["-status"]).stdout, "Hub: "),
        Some("connected")
    );

    lab.proxy().clear();
    lab.src.wait_hub_state("connected", LIMIT);
    assert_files_reachable(&lab);
}

#[test]
fn a_stalled_control_link_is_declared_dead_by_silence_and_redialled_after() {
    let lab = control_lab();
    let dials = lab.proxy().accepted();
    // Nothing passes, yet the connection stays open: only silence tells.
    lab.proxy().set(Fault::Stall);
    wait_until(LIMIT, "the daemon to leave `Hub: connected`", || {
        line_value(&lab.src.run(&["-status"]).stdout, "Hub: ") != Some("connected")
    });
    let daemon = lab.src_daemon();
    // Three heartbeat intervals (1s in the harness) of silence.
    daemon.wait_for_log("no word from the hub for 3s; the link is dead", LIMIT);
    wait_until(LIMIT, "a new dial into the stalled network", || {
        lab.proxy().accepted() > dials
    });

    lab.proxy().clear();
    lab.src.wait_hub_state("connected", LIMIT);
    assert_files_reachable(&lab);
}

#[test]
fn a_flipped_bit_on_the_control_link_is_rejected_by_tls_and_the_link_redialled() {
    let lab = control_lab();

    // From the hub: the daemon's TLS layer refuses the record.
    let dials = lab.proxy().accepted();
    lab.proxy().set(Fault::Flip {
        direction: Direction::Downstream,
        offset: 10,
    });
    wait_until(LIMIT, "a heartbeat to carry the flipped bit", || {
        lab.proxy().flipped() == 1
    });
    lab.src_daemon()
        .wait_for_log("TLS with the hub failed", LIMIT);
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy().accepted() > dials
    });
    lab.src.wait_hub_state("connected", LIMIT);
    assert_files_reachable(&lab);

    // To the hub: the hub refuses the record and ends the connection.
    let dials = lab.proxy().accepted();
    lab.proxy().set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 10,
    });
    wait_until(LIMIT, "a heartbeat to carry the flipped bit", || {
        lab.proxy().flipped() == 2
    });
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy().accepted() > dials
    });
    lab.src.wait_hub_state("connected", LIMIT);
    assert_files_reachable(&lab);
}

#[test]
fn a_record_corrupted_on_the_way_to_the_hub_is_not_blamed_on_the_certificate() {
    let lab = control_lab();
    let dials = lab.proxy().accepted();
    lab.proxy().set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 10,
    });
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy().flipped() == 1 && lab.proxy().accepted() > dials
    });
    lab.src.wait_hub_state("connected", LIMIT);
    let log = lab.src_daemon().log();
    assert!(
        !log.contains("certificate rejected") && !log.contains("-setup --force"),
        "a corrupted record is not a reason to set the endpoint up again:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// The data channel

/// A hub with alice's `src` and `dst`; data connections to `dst` go through
/// a proxy in front of its data listener.
fn data_lab() -> Lab {
    Lab::builder().proxy_data().start()
}

/// `ferry transfer -r --streams 2 src:/~/data dst:/~/data`.
fn submit(lab: &Lab) -> String {
    lab.transfer(&["-r", "--streams", "2", "src:/~/data", "dst:/~/data"])
}

/// Waits until the task's events show a fault, and returns them.
fn wait_fault(lab: &Lab, id: &str) -> String {
    let mut events = String::new();
    wait_until(LIMIT, "a FAULT in the task's events", || {
        events = lab.events(id);
        events.contains("FAULT")
    });
    events
}

fn source(lab: &Lab) -> PathBuf {
    lab.src.home.join("data")
}

fn copy(lab: &Lab) -> PathBuf {
    lab.dst.home.join("data")
}

/// The copy is the source, byte for byte, with no temporary left.
fn assert_identical(lab: &Lab) {
    let copy = copy(lab);
    assert!(tree(&copy) == tree(&source(lab)), "the trees differ");
    assert!(no_temp_files(&copy), "a temporary file was left");
}

/// Whatever stands under a real name at the destination is whole.
fn assert_only_whole_files(lab: &Lab) {
    for (rel, content) in tree(&copy(lab)) {
        let name = Path::new(std::ffi::OsStr::from_bytes(&rel));
        if is_temp(name) {
            continue;
        }
        if let Some(content) = content {
            let original = fs::read(source(lab).join(name)).unwrap();
            assert!(
                content == original,
                "{} stands under its real name but is not the source's",
                name.display()
            );
        }
    }
}

/// 300 small files in 10 directories, and one file of about six chunks.
fn dataset(lab: &Lab) -> u64 {
    let root = source(lab);
    let mut bytes = 0;
    for i in 0..300u32 {
        let dir = root.join(format!("dir-{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        let len = (i as usize * 977) % 20_000;
        fs::write(dir.join(format!("file-{i}")), pattern(len, i)).unwrap();
        bytes += len as u64;
    }
    let large = 6 * CHUNK + 4321;
    fs::write(root.join("large.bin"), pattern(large, 999)).unwrap();
    bytes + large as u64
}

/// Regular files and directories under `root` (with contents), sorted.
fn tree(root: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.push((rel, None));
                stack.push(e.path());
            } else if t.is_file() {
                // A file may be renamed away while the copy is in flight.
                if let Ok(content) = fs::read(e.path()) {
                    out.push((rel, Some(content)));
                }
            }
        }
    }
    out.sort();
    out
}

/// `.ferry.NAME.TASK.part`: a file not yet under its real name.
fn is_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b".ferry."))
}

fn no_temp_files(root: &Path) -> bool {
    tree(root)
        .iter()
        .all(|(p, _)| !is_temp(Path::new(std::ffi::OsStr::from_bytes(p))))
}

/// Slows the data down (a pause per read), submits, and returns once the
/// transfer is well under way: 8 MiB of about 30 went through.
fn submit_and_wait_until_mid_transfer(lab: &Lab) -> String {
    lab.proxy().set(Fault::Delay(Duration::from_millis(10)));
    let id = submit(lab);
    wait_until(LIMIT, "8 MiB through the data connections", || {
        lab.proxy().forwarded(Direction::Upstream) >= 8 * MIB
    });
    id
}

#[test]
fn a_bit_flipped_in_a_data_stream_fails_the_attempt_and_a_retry_succeeds() {
    let lab = data_lab();
    let total = dataset(&lab);
    lab.proxy().set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 6 * MIB,
    });
    let id = submit(&lab);
    let task = lab.wait(&id);
    assert_eq!(lab.proxy().flipped(), 1);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    // The receiving TLS layer refused the record and closed. The other
    // end may see only a broken pipe, and may report first: the hub
    // waits for both ends' words, and the refusal is among them.
    let events = lab.events(&id);
    assert!(
        events.contains("FAULT") && (events.contains("BadRecordMac") || events.contains("decrypt")),
        "{events}"
    );
    assert_identical(&lab);
    assert!(
        lab.proxy().forwarded(Direction::Upstream) >= total,
        "the data went through the proxy"
    );
}

#[test]
fn data_connections_dropped_mid_transfer_fault_and_the_task_succeeds_after() {
    let lab = data_lab();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy().set(Fault::Drop);
    let events = wait_fault(&lab, &id);
    // The hub retries into the dead network, and the task waits.
    wait_until(LIMIT, "a retry refused by the dropped network", || {
        lab.proxy().refused() >= 1
    });
    assert_eq!(lab.show(&id)["status"], "ACTIVE", "{events}");
    assert_only_whole_files(&lab);

    lab.proxy().clear();
    let task = lab.wait(&id);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert_identical(&lab);
}

#[test]
fn truncated_data_connections_fault_and_the_task_succeeds_after() {
    let lab = data_lab();
    dataset(&lab);
    // Both streams of the first attempt are cut after 5 MiB.
    lab.proxy().set(Fault::Truncate {
        after: 5 * MIB,
        connections: 2,
    });
    let id = submit(&lab);
    let task = lab.wait(&id);
    assert!(lab.proxy().truncated() >= 1);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert!(lab.events(&id).contains("FAULT"));
    assert_identical(&lab);
}

#[test]
fn a_data_stall_that_clears_lets_the_task_finish() {
    let lab = data_lab();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy().set(Fault::Stall);
    let held_at = lab.proxy().forwarded(Direction::Upstream);
    // The network holds everything for a while.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.proxy().forwarded(Direction::Upstream), held_at);
    assert_eq!(lab.show(&id)["status"], "ACTIVE");
    assert_only_whole_files(&lab);

    lab.proxy().clear();
    lab.wait(&id);
    assert_identical(&lab);
}

#[test]
fn a_data_stall_that_never_clears_is_reported_not_waited_on_forever() {
    let lab = data_lab();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy().set(Fault::Stall);
    // The connections stay open and silent; one of the endpoints must
    // notice and fault the attempt, so the hub can retry (into the stall,
    // then past it once the network heals).
    let events = wait_fault(&lab, &id);
    assert_eq!(lab.show(&id)["status"], "ACTIVE", "{events}");
    assert_only_whole_files(&lab);
    lab.proxy().clear();
    lab.wait(&id);
    assert_identical(&lab);
}
