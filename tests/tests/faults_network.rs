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

use ferry_tests::fault_proxy::{Direction, Fault, FaultProxy};
use ferry_tests::{Daemon, Hub, Ran, User, edit_config, line_value, wait_until};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn new_endpoint(hub: &Hub, name: &str) -> User {
    let (_, key) = hub.endpoint_key("alice", name, &[]);
    let user = User::new();
    let out = user.setup_with_key(&key, name);
    assert_eq!(out.code, Some(0), "{out:?}");
    user
}

/// The line under `Hub: ...` in `ferry -status`: why it is not connected.
fn hub_detail(status: &Ran) -> Option<&str> {
    let mut lines = status.stdout.lines();
    lines.find(|l| l.starts_with("Hub: "))?;
    lines.next().and_then(|l| l.strip_prefix("  "))
}

// ---------------------------------------------------------------------------
// The control channel

/// One endpoint, `node`, whose daemon reaches the hub only through a proxy.
struct ControlLab {
    hub: Hub,
    user: User,
    proxy: FaultProxy,
    daemon: Option<Daemon>,
    token: String,
}

impl ControlLab {
    fn new() -> Self {
        let hub = Hub::start();
        hub.add_user("alice", "correct horse battery");
        let user = new_endpoint(&hub, "node");
        let proxy = FaultProxy::start(loopback(hub.port));
        // The hub's certificate names 127.0.0.1, so TLS still verifies.
        edit_config(
            &user.dir.join("endpoint.toml"),
            &format!("hub_url = \"https://127.0.0.1:{}\"", hub.port),
            &format!("hub_url = \"https://127.0.0.1:{}\"", proxy.port()),
        );
        fs::write(user.home.join("notes.txt"), b"still here").unwrap();
        let token = hub.token("alice");
        let daemon = Some(user.start_foreground(&[]));
        user.wait_hub_state("connected", LIMIT);
        assert!(proxy.accepted() >= 1, "the link goes through the proxy");
        ControlLab {
            hub,
            user,
            proxy,
            daemon,
            token,
        }
    }

    fn log(&self) -> String {
        self.daemon.as_ref().unwrap().log()
    }

    /// `ferry ls node:/~/` works: the link carries file operations.
    fn assert_files_reachable(&self) {
        let ls = self
            .user
            .run_as(&self.hub, &self.token, &["ls", "node:/~/"]);
        assert_eq!(ls.code, Some(0), "{ls:?}\n{}", self.log());
        assert!(ls.stdout.contains("notes.txt"), "{ls:?}");
    }
}

#[test]
fn a_dropped_control_link_says_why_and_comes_back_when_the_network_does() {
    let lab = ControlLab::new();
    lab.proxy.set(Fault::Drop);
    let status = lab.user.wait_hub_state("disconnected", LIMIT);
    let why = hub_detail(&status).unwrap_or_else(|| panic!("no reason given: {status:?}"));
    assert!(why.contains("closed the connection"), "{status:?}");
    assert!(why.contains("next try in"), "{status:?}");
    // Re-dialled, and refused by the dead network, while it lasts.
    wait_until(LIMIT, "a re-dial into the dropped network", || {
        lab.proxy.refused() >= 1
    });
    assert_ne!(
        line_value(&lab.user.run(&["-status"]).stdout, "Hub: "),
        Some("connected")
    );

    lab.proxy.clear();
    lab.user.wait_hub_state("connected", LIMIT);
    lab.assert_files_reachable();
}

#[test]
fn a_stalled_control_link_is_declared_dead_by_silence_and_redialled_after() {
    let lab = ControlLab::new();
    let dials = lab.proxy.accepted();
    // Nothing passes, yet the connection stays open: only silence tells.
    lab.proxy.set(Fault::Stall);
    wait_until(LIMIT, "the daemon to leave `Hub: connected`", || {
        line_value(&lab.user.run(&["-status"]).stdout, "Hub: ") != Some("connected")
    });
    let daemon = lab.daemon.as_ref().unwrap();
    // Three heartbeat intervals (1s in the harness) of silence.
    daemon.wait_for_log("no word from the hub for 3s; the link is dead", LIMIT);
    wait_until(LIMIT, "a new dial into the stalled network", || {
        lab.proxy.accepted() > dials
    });

    lab.proxy.clear();
    lab.user.wait_hub_state("connected", LIMIT);
    lab.assert_files_reachable();
}

#[test]
fn a_flipped_bit_on_the_control_link_is_rejected_by_tls_and_the_link_redialled() {
    let lab = ControlLab::new();

    // From the hub: the daemon's TLS layer refuses the record.
    let dials = lab.proxy.accepted();
    lab.proxy.set(Fault::Flip {
        direction: Direction::Downstream,
        offset: 10,
    });
    wait_until(LIMIT, "a heartbeat to carry the flipped bit", || {
        lab.proxy.flipped() == 1
    });
    lab.daemon
        .as_ref()
        .unwrap()
        .wait_for_log("TLS with the hub failed", LIMIT);
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy.accepted() > dials
    });
    lab.user.wait_hub_state("connected", LIMIT);
    lab.assert_files_reachable();

    // To the hub: the hub refuses the record and ends the connection.
    let dials = lab.proxy.accepted();
    lab.proxy.set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 10,
    });
    wait_until(LIMIT, "a heartbeat to carry the flipped bit", || {
        lab.proxy.flipped() == 2
    });
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy.accepted() > dials
    });
    lab.user.wait_hub_state("connected", LIMIT);
    lab.assert_files_reachable();
}

#[test]
fn a_record_corrupted_on_the_way_to_the_hub_is_not_blamed_on_the_certificate() {
    let lab = ControlLab::new();
    let dials = lab.proxy.accepted();
    lab.proxy.set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 10,
    });
    wait_until(LIMIT, "the link to be re-dialled", || {
        lab.proxy.flipped() == 1 && lab.proxy.accepted() > dials
    });
    lab.user.wait_hub_state("connected", LIMIT);
    let log = lab.log();
    assert!(
        !log.contains("certificate rejected") && !log.contains("-setup --force"),
        "a corrupted record is not a reason to set the endpoint up again:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// The data channel

/// A hub with alice's `src` and `dst`; data connections to `dst` go through
/// a proxy in front of its data listener.
struct DataLab {
    hub: Hub,
    src: User,
    dst: User,
    proxy: FaultProxy,
    _daemons: [Daemon; 2],
    token: String,
}

impl DataLab {
    fn new() -> Self {
        let hub = Hub::start();
        hub.add_user("alice", "correct horse battery");
        let src = new_endpoint(&hub, "src");
        let dst = new_endpoint(&hub, "dst");
        let listener = ferry_tests::closed_loopback_port();
        let proxy = FaultProxy::start(loopback(listener));
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(dst.dir.join("endpoint.toml"))
            .unwrap();
        write!(
            config,
            "data_ports = \"{listener}-{listener}\"\ndata_address = \"127.0.0.1:{}\"\n",
            proxy.port()
        )
        .unwrap();
        let token = hub.token("alice");
        let daemons = [src.start_foreground(&[]), dst.start_foreground(&[])];
        src.wait_hub_state("connected", LIMIT);
        dst.wait_hub_state("connected", LIMIT);
        daemons[1].wait_for_log(&format!("Some({listener})"), LIMIT);
        DataLab {
            hub,
            src,
            dst,
            proxy,
            _daemons: daemons,
            token,
        }
    }

    fn ferry(&self, args: &[&str]) -> Ran {
        self.src.run_as(&self.hub, &self.token, args)
    }

    /// `ferry transfer -r --streams 2 src:/~/data dst:/~/data`.
    fn submit(&self) -> String {
        let out = self.ferry(&[
            "transfer",
            "-r",
            "--streams",
            "2",
            "src:/~/data",
            "dst:/~/data",
        ]);
        assert_eq!(out.code, Some(0), "{out:?}");
        line_value(&out.stdout, "Task ID: ")
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_string()
    }

    fn show(&self, id: &str) -> serde_json::Value {
        let out = self.ferry(&["task", "show", id, "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn events(&self, id: &str) -> String {
        self.ferry(&["task", "events", id]).stdout
    }

    /// `ferry task wait`: the task SUCCEEDED.
    fn wait_succeeded(&self, id: &str) -> serde_json::Value {
        let out = self.ferry(&["task", "wait", id, "--timeout", "120"]);
        let task = self.show(id);
        assert_eq!(
            out.code,
            Some(0),
            "task did not succeed: {out:?}\n{task}\nevents: {}",
            self.events(id)
        );
        assert_eq!(task["status"], "SUCCEEDED", "{task}");
        task
    }

    /// Waits until the task's events show a fault, and returns them.
    fn wait_fault(&self, id: &str) -> String {
        let mut events = String::new();
        wait_until(LIMIT, "a FAULT in the task's events", || {
            events = self.events(id);
            events.contains("FAULT")
        });
        events
    }

    fn source(&self) -> PathBuf {
        self.src.home.join("data")
    }

    fn copy(&self) -> PathBuf {
        self.dst.home.join("data")
    }

    /// The copy is the source, byte for byte, with no temporary left.
    fn assert_identical(&self) {
        let copy = self.copy();
        assert!(tree(&copy) == tree(&self.source()), "the trees differ");
        assert!(no_temp_files(&copy), "a temporary file was left");
    }

    /// Whatever stands under a real name at the destination is whole.
    fn assert_only_whole_files(&self) {
        for (rel, content) in tree(&self.copy()) {
            let name = Path::new(std::ffi::OsStr::from_bytes(&rel));
            if is_temp(name) {
                continue;
            }
            if let Some(content) = content {
                let original = fs::read(self.source().join(name)).unwrap();
                assert!(
                    content == original,
                    "{} stands under its real name but is not the source's",
                    name.display()
                );
            }
        }
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// 300 small files in 10 directories, and one file of about six chunks.
fn dataset(lab: &DataLab) -> u64 {
    let root = lab.source();
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
fn submit_and_wait_until_mid_transfer(lab: &DataLab) -> String {
    lab.proxy.set(Fault::Delay(Duration::from_millis(10)));
    let id = lab.submit();
    wait_until(LIMIT, "8 MiB through the data connections", || {
        lab.proxy.forwarded(Direction::Upstream) >= 8 * MIB
    });
    id
}

#[test]
fn a_bit_flipped_in_a_data_stream_fails_the_attempt_and_a_retry_succeeds() {
    let lab = DataLab::new();
    let total = dataset(&lab);
    lab.proxy.set(Fault::Flip {
        direction: Direction::Upstream,
        offset: 6 * MIB,
    });
    let id = lab.submit();
    let task = lab.wait_succeeded(&id);
    assert_eq!(lab.proxy.flipped(), 1);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    // The receiving TLS layer refused the record and closed. The other
    // end may see only a broken pipe, and may report first: the hub
    // waits for both ends' words, and the refusal is among them.
    let events = lab.events(&id);
    assert!(
        events.contains("FAULT") && (events.contains("BadRecordMac") || events.contains("decrypt")),
        "{events}"
    );
    lab.assert_identical();
    assert!(
        lab.proxy.forwarded(Direction::Upstream) >= total,
        "the data went through the proxy"
    );
}

#[test]
fn data_connections_dropped_mid_transfer_fault_and_the_task_succeeds_after() {
    let lab = DataLab::new();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy.set(Fault::Drop);
    let events = lab.wait_fault(&id);
    // The hub retries into the dead network, and the task waits.
    wait_until(LIMIT, "a retry refused by the dropped network", || {
        lab.proxy.refused() >= 1
    });
    assert_eq!(lab.show(&id)["status"], "ACTIVE", "{events}");
    lab.assert_only_whole_files();

    lab.proxy.clear();
    let task = lab.wait_succeeded(&id);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    lab.assert_identical();
}

#[test]
fn truncated_data_connections_fault_and_the_task_succeeds_after() {
    let lab = DataLab::new();
    dataset(&lab);
    // Both streams of the first attempt are cut after 5 MiB.
    lab.proxy.set(Fault::Truncate {
        after: 5 * MIB,
        connections: 2,
    });
    let id = lab.submit();
    let task = lab.wait_succeeded(&id);
    assert!(lab.proxy.truncated() >= 1);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert!(lab.events(&id).contains("FAULT"));
    lab.assert_identical();
}

#[test]
fn a_data_stall_that_clears_lets_the_task_finish() {
    let lab = DataLab::new();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy.set(Fault::Stall);
    let held_at = lab.proxy.forwarded(Direction::Upstream);
    // The network holds everything for a while.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.proxy.forwarded(Direction::Upstream), held_at);
    assert_eq!(lab.show(&id)["status"], "ACTIVE");
    lab.assert_only_whole_files();

    lab.proxy.clear();
    lab.wait_succeeded(&id);
    lab.assert_identical();
}

#[test]
fn a_data_stall_that_never_clears_is_reported_not_waited_on_forever() {
    let lab = DataLab::new();
    dataset(&lab);
    let id = submit_and_wait_until_mid_transfer(&lab);
    lab.proxy.set(Fault::Stall);
    // The connections stay open and silent; one of the endpoints must
    // notice and fault the attempt, so the hub can retry (into the stall,
    // then past it once the network heals).
    let events = lab.wait_fault(&id);
    assert_eq!(lab.show(&id)["status"], "ACTIVE", "{events}");
    lab.assert_only_whole_files();
    lab.proxy.clear();
    lab.wait_succeeded(&id);
    lab.assert_identical();
}
