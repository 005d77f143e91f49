//! A user's session with an endpoint of two machines (transfer nodes):
//! alice adds a node to `dst`, sets up a second machine sharing its home
//! directory as it, sees both connected, moves data while either one is
//! the endpoint, and removes the node again, which locks it out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User, line_value, pattern, tree, wait_until};
use serde_json::Value;
use std::fs;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn json(out: &ferry_tests::Ran) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The nodes `ferry endpoint nodes EP --json` lists: name and connected.
fn nodes(lab: &Lab, endpoint: &str) -> Vec<(String, bool)> {
    json(&lab.ferry(&["endpoint", "nodes", endpoint, "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["connected"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn wait_nodes(lab: &Lab, endpoint: &str, want: &[(&str, bool)]) {
    let want: Vec<(String, bool)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = nodes(lab, endpoint);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "nodes {got:?}, never {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_machine_joins_an_endpoint_as_a_node_and_is_removed_again() {
    let mut lab = Lab::new();
    let dst_id = json(&lab.ferry(&["endpoint", "show", "dst", "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // One machine: the endpoint shows its primary only.
    wait_nodes(&lab, "dst", &[("primary", true)]);

    // Alice asks for a node key and sets a second machine up with it; it
    // shares dst's home directory, as a second DTN shares a filesystem.
    let (endpoint_id, node, key) = lab.add_node("dst", &[]);
    assert_eq!(
        (endpoint_id.as_str(), node.as_str()),
        (dst_id.as_str(), "node-2")
    );
    let second = User::sharing_home(&lab.dst);
    let setup = second.run(&["-setup", &key]);
    assert_eq!(setup.code, Some(0), "{setup:?}");
    assert!(
        setup
            .stdout
            .contains(&format!("joined endpoint {dst_id} as node node-2")),
        "{setup:?}"
    );
    assert!(
        setup.stdout.contains("setup completed successfully"),
        "{setup:?}"
    );
    assert!(
        !setup.stdout.contains("registered new endpoint"),
        "{setup:?}"
    );
    // The key worked once.
    let again = User::sharing_home(&lab.dst).run(&["-setup", &key]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("already used"), "{again:?}");
    // A new node is what it needs, not a new endpoint.
    assert!(
        again
            .stderr
            .contains(&format!("`ferry endpoint add-node {dst_id}`"))
            && !again.stderr.contains("endpoint create"),
        "{again:?}"
    );

    let daemon = second.start_foreground(&[]);
    let status = second.wait_hub_state("connected", LIMIT);
    assert_eq!(
        line_value(&status.stdout, "Node: "),
        Some("node-2"),
        "{status:?}"
    );
    assert_eq!(
        line_value(&status.stdout, "Transfer Status: "),
        Some("idle")
    );
    let doc = json(&second.run(&["-status", "--json"]));
    assert_eq!(doc["node"], "node-2", "{doc}");
    assert_eq!(doc["endpoint_id"], dst_id.as_str(), "{doc}");
    // The primary says nothing of nodes on its status lines.
    let primary = lab.dst.run(&["-status"]);
    assert_eq!(line_value(&primary.stdout, "Node: "), None, "{primary:?}");
    assert_eq!(
        json(&lab.dst.run(&["-status", "--json"]))["node"],
        "primary"
    );

    // Both machines are connected, and the endpoint is one endpoint.
    wait_nodes(&lab, "dst", &[("primary", true), ("node-2", true)]);
    let shown = json(&lab.ferry(&["endpoint", "show", "dst", "--json"]));
    assert_eq!(shown["connected"], true, "{shown}");
    assert_eq!(shown["nodes"].as_array().unwrap().len(), 2, "{shown}");
    let table = lab.ferry(&["endpoint", "nodes", "dst"]);
    assert!(table.stdout.contains("node-2"), "{table:?}");
    let search = json(&lab.ferry(&["endpoint", "search", "--json"]));
    assert_eq!(
        search.as_array().unwrap().len(),
        2,
        "still two endpoints: {search}"
    );

    // Data moves to and from the endpoint of two machines.
    fs::create_dir_all(lab.src.home.join("in")).unwrap();
    for i in 0..4u32 {
        fs::write(
            lab.src.home.join("in").join(format!("f{i}")),
            pattern(300_000 + i as usize, i),
        )
        .unwrap();
    }
    let id = lab.transfer(&["-r", "src:/~/in", "dst:/~/got"]);
    // One machine of `src`: not spread, and `task show` says nothing of nodes.
    assert_eq!(lab.wait(&id)["nodes"], 1);
    let shown = lab.ferry(&["task", "show", &id]);
    assert!(!shown.stdout.contains("Nodes:"), "{shown:?}");
    assert_eq!(
        tree(&lab.src.home.join("in")),
        tree(&lab.dst.home.join("got"))
    );
    let id = lab.transfer(&["-r", "dst:/~/got", "src:/~/back"]);
    lab.wait(&id);
    assert_eq!(
        tree(&lab.src.home.join("in")),
        tree(&lab.src.home.join("back"))
    );

    // With its primary stopped, the node is the endpoint: still
    // connected, and data still moves (to the shared directory).
    lab.stop_dst();
    wait_nodes(&lab, "dst", &[("primary", false), ("node-2", true)]);
    let id = lab.transfer(&["-r", "src:/~/in", "dst:/~/through-node"]);
    lab.wait(&id);
    assert_eq!(
        tree(&lab.src.home.join("in")),
        tree(&lab.dst.home.join("through-node"))
    );
    assert!(
        daemon.log().contains(&id),
        "the node received the task: {}",
        daemon.log()
    );

    // A node key whose node was removed before it was used registers
    // nothing; a made-up key is refused too.
    let (_, node3, key3) = lab.add_node("dst", &["--name", "dtn3"]);
    assert_eq!(node3, "dtn3");
    let removed = lab.ferry(&["endpoint", "remove-node", "dst", "dtn3"]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    let late = User::sharing_home(&lab.dst).run(&["-setup", &key3]);
    assert_eq!(late.code, Some(1), "{late:?}");
    let forged = format!("{}x", &key3[..key3.len() - 1]);
    let forged = User::sharing_home(&lab.dst).run(&["-setup", &forged]);
    assert_eq!(forged.code, Some(1), "{forged:?}");
    // Names are checked and unique per endpoint.
    let bad = lab.ferry(&["endpoint", "add-node", "dst", "--name", "Bad Name"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("not valid"), "{bad:?}");
    let taken = lab.ferry(&["endpoint", "add-node", "dst", "--name", "node-2"]);
    assert_eq!(taken.code, Some(1), "{taken:?}");
    assert!(taken.stderr.contains("already"), "{taken:?}");

    // Removing node-2 locks its machine out: refused at its next beat,
    // and its status says so.
    let removed = lab.ferry(&["endpoint", "remove-node", "dst", "node-2"]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        let status = second.run(&["-status"]);
        if status
            .stdout
            .contains("was removed by the endpoint's owner")
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "status never said the node was removed: {status:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(line_value(&status.stdout, "Hub: "), Some("disconnected"));
    wait_nodes(&lab, "dst", &[("primary", false)]);
    let gone = lab.ferry(&["endpoint", "remove-node", "dst", "node-2"]);
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(gone.stderr.contains("no node"), "{gone:?}");
    // The primary comes back as the endpoint.
    lab.start_dst();
    wait_nodes(&lab, "dst", &[("primary", true)]);
}

/// Someone else's endpoint takes no node of alice's, and alice cannot add
/// a node to an endpoint that is not hers.
#[test]
fn only_an_endpoints_owner_adds_or_lists_its_nodes() {
    let lab = Lab::new();
    lab.hub.add_user("bob", "another horse battery");
    let bob = lab.hub.token("bob");
    let dst_id = json(&lab.ferry(&["endpoint", "show", "dst", "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["endpoint", "add-node", dst_id.as_str()],
        vec!["endpoint", "nodes", dst_id.as_str()],
        vec!["endpoint", "remove-node", dst_id.as_str(), "primary"],
    ] {
        let out = lab.src.run_as(&lab.hub, &bob, &args);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(out.stderr.contains("no endpoint"), "{args:?}: {out:?}");
    }
}

/// A second machine sharing `of`'s home joins `endpoint` as a node.
fn join(lab: &Lab, endpoint: &str, of: &User) -> (User, ferry_tests::Daemon) {
    lab.join_node(endpoint, of, "")
}

/// Two nodes per side: the task is spread over both pairs, each moves a
/// part, and the destination's tree is the source's.
#[test]
fn a_task_between_two_endpoints_of_two_nodes_is_spread_over_both() {
    let lab = Lab::new();
    let (_src2, src2) = join(&lab, "src", &lab.src);
    let (_dst2, dst2) = join(&lab, "dst", &lab.dst);
    wait_nodes(&lab, "src", &[("primary", true), ("node-2", true)]);
    wait_nodes(&lab, "dst", &[("primary", true), ("node-2", true)]);

    let root = lab.src.home.join("data");
    for d in 0..4u32 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..15u32 {
            fs::write(
                dir.join(format!("f{f}")),
                pattern(1000 + (d * 15 + f) as usize * 37, d * 100 + f),
            )
            .unwrap();
        }
    }
    for (i, size) in [3_000_000usize, 5_000_001, 4_194_304]
        .into_iter()
        .enumerate()
    {
        fs::write(
            root.join(format!("large{i}")),
            pattern(size, 9000 + i as u32),
        )
        .unwrap();
    }
    fs::create_dir_all(root.join("empty")).unwrap();

    let id = lab.transfer(&["-r", "src:/~/data", "dst:/~/copy"]);
    let task = lab.wait(&id);
    assert_eq!(tree(&root), tree(&lab.dst.home.join("copy")));
    assert_eq!(task["files_transferred"], 63, "{task}");
    let events = lab.events(&id);
    assert!(events.contains("spread over 2 nodes"), "{events}");
    // `task show` says so too: JSON `nodes`, and a line a person reads.
    assert_eq!(task["nodes"], 2, "{task}");
    let shown = lab.ferry(&["task", "show", &id]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert_eq!(
        line_value(&shown.stdout, "Nodes:").map(str::trim),
        Some("2 per endpoint"),
        "{shown:?}"
    );

    // Each pair moved a part: both destination machines received files,
    // and both source machines sent.
    let received = |log: &str| {
        log.lines()
            .filter(|l| l.contains(&id) && l.contains("received"))
            .any(|l| !l.contains("files=0"))
    };
    assert!(
        received(&lab.dst_daemon().log()),
        "{}",
        lab.dst_daemon().log()
    );
    assert!(received(&dst2.log()), "{}", dst2.log());
    for log in [lab.src_daemon().log(), src2.log()] {
        assert!(
            log.lines()
                .any(|l| l.contains(&id) && l.contains("sending") && l.contains("count: 2")),
            "{log}"
        );
    }
}

/// kill -9 of one destination node mid-task: the attempt ends as a fault,
/// the next runs on the nodes still there, and what the surviving node
/// had committed is not sent again. Every file (4 chunks) is split over
/// both pairs: the survivor keeps their shared temporaries, and the next
/// attempt sends only the chunks that differ from what they hold. What
/// the lost node committed is sent again: its journal was in its own
/// config dir.
#[test]
fn a_destination_node_killed_mid_task_costs_only_its_part_in_flight() {
    let (port1, port2) = (
        ferry_tests::closed_loopback_port(),
        ferry_tests::closed_loopback_port(),
    );
    let lab = Lab::builder()
        .src_setting(&format!("metrics_listen = \"127.0.0.1:{port1}\"\n"))
        .start();
    let (_src2, _src2_daemon) = lab.join_node(
        "src",
        &lab.src,
        &format!("metrics_listen = \"127.0.0.1:{port2}\"\n"),
    );
    let (_dst2, dst2) = join(&lab, "dst", &lab.dst);
    wait_nodes(&lab, "src", &[("primary", true), ("node-2", true)]);
    wait_nodes(&lab, "dst", &[("primary", true), ("node-2", true)]);

    let root = lab.src.home.join("big");
    fs::create_dir_all(&root).unwrap();
    const FILES: u32 = 12;
    const SIZE: usize = 16 << 20;
    for i in 0..FILES {
        fs::write(root.join(format!("f{i:02}")), pattern(SIZE, 500 + i)).unwrap();
    }
    let dataset = u64::from(FILES) * SIZE as u64;

    // A cap on the task's pace, so the kill lands mid-task.
    let id = lab.transfer(&["-r", "--bwlimit", "40M", "src:/~/big", "dst:/~/big"]);
    let deadline = Instant::now() + LIMIT;
    loop {
        let task = lab.show(&id);
        let moved = task["bytes_transferred"].as_u64().unwrap_or(0);
        if moved > dataset / 2 {
            assert_eq!(task["status"], "ACTIVE", "{task}");
            break;
        }
        assert!(Instant::now() < deadline, "never moved: {task}");
        std::thread::sleep(Duration::from_millis(20));
    }
    dst2.signal(nix::sys::signal::Signal::SIGKILL);
    dst2.wait_exit(LIMIT);

    let task = lab.wait(&id);
    assert_eq!(tree(&root), tree(&lab.dst.home.join("big")));
    let events = lab.events(&id);
    assert!(
        events.contains("node node-2 of 'dst' went offline"),
        "{events}"
    );
    let log = lab.dst_daemon().log();
    assert!(
        log.contains("parts of split files ended with the attempt"),
        "{log}"
    );
    // The attempt that finished ran on one machine of each endpoint.
    assert_eq!(task["nodes"], 1, "{task}");
    // What both source machines sent, by their own count: the dataset
    // and the chunks in flight when the attempt ended. Not the files the
    // lost node committed (its journal went with it: the retry compares
    // their digests), nor what its open files held (re-hashed and
    // compared), nor its part again (before the first: the dataset and
    // 92 to 108 MiB more; now 12 to 20).
    let sent = sent_bytes(port1) + sent_bytes(port2);
    println!("dataset {dataset}, sent {sent}: {task}");
    assert!(sent >= dataset, "{sent}: {task}");
    assert!(sent < dataset + dataset / 4, "{sent}: {task}\n{events}");
}

/// Two machines (nodes) on each side, all connected; the destination's
/// serve metrics at `ports` (primary, node-2).
struct TwoByTwo {
    lab: Lab,
    ports: [u16; 2],
    src2: (User, ferry_tests::Daemon),
    dst2: (User, ferry_tests::Daemon),
}

fn two_by_two_counting_dst() -> TwoByTwo {
    let ports = [
        ferry_tests::closed_loopback_port(),
        ferry_tests::closed_loopback_port(),
    ];
    let metrics = |port: u16| format!("metrics_listen = \"127.0.0.1:{port}\"\n");
    let lab = Lab::builder().dst_setting(&metrics(ports[0])).start();
    let src2 = join(&lab, "src", &lab.src);
    let dst2 = lab.join_node("dst", &lab.dst, &metrics(ports[1]));
    wait_nodes(&lab, "src", &[("primary", true), ("node-2", true)]);
    wait_nodes(&lab, "dst", &[("primary", true), ("node-2", true)]);
    TwoByTwo {
        lab,
        ports,
        src2,
        dst2,
    }
}

/// One large file in a spread task: each pair of nodes moves a part of
/// it (both destination machines receive bytes of it, by their own
/// count), the node of its own shard commits it, byte for byte the
/// source's, and no temporary or sidecar of the parts stays behind.
#[test]
fn a_large_file_of_a_spread_task_is_split_over_both_pairs() {
    let TwoByTwo {
        lab,
        ports: [port1, port2],
        src2: (_src2, src2),
        dst2: (_dst2, dst2),
    } = two_by_two_counting_dst();

    const CHUNK: usize = 4 << 20;
    // Eleven chunks, the last one short: parts of six and five.
    let size = 10 * CHUNK + 12_345;
    let root = lab.src.home.join("split");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("large"), pattern(size, 4242)).unwrap();
    fs::write(root.join("small"), pattern(1000, 1)).unwrap();
    fs::write(root.join("sub/other"), pattern(70_000, 2)).unwrap();
    let dataset = (size + 1000 + 70_000) as u64;

    let id = lab.transfer(&["-r", "src:/~/split", "dst:/~/split"]);
    let task = lab.wait(&id);
    // `tree` lists dot-files too: no `.ferry.*` temporary or sidecar is left.
    let copy = lab.dst.home.join("split");
    assert_eq!(tree(&root), tree(&copy));
    assert_eq!(task["files_transferred"], 3, "{task}");
    assert_eq!(task["bytes_transferred"], dataset, "{task}");
    let events = lab.events(&id);
    assert!(events.contains("spread over 2 nodes"), "{events}");

    // Each destination machine received at least its part of the large
    // file: five of its eleven chunks (the last one short), or six.
    for (port, node) in [(port1, "primary"), (port2, "node-2")] {
        let received = metric(port, "ferry_endpoint_received_bytes_total");
        assert!(
            received >= 4 * CHUNK as u64 + 12_345,
            "{node} received {received}\n{}\n{}",
            lab.dst_daemon().log(),
            dst2.log()
        );
    }
    for log in [lab.src_daemon().log(), src2.log()] {
        assert!(
            log.lines().any(|l| l.contains(&id)
                && l.contains("sending")
                && l.contains("split: true, large: true")),
            "{log}"
        );
    }
}

/// A large file split over both pairs whose attempt stops midway (the
/// destination paused), then spread again: each destination node of the
/// next attempt takes up what the nodes of the first had written (their
/// records beside the kept temporary, each chunk hashed again), so what
/// was in at the pause is not written again.
#[test]
fn a_split_file_stopped_midway_is_taken_up_by_the_next_split_attempt() {
    let TwoByTwo {
        lab,
        ports: [port1, port2],
        src2: _src2,
        dst2: (_dst2, dst2),
    } = two_by_two_counting_dst();

    // 32 chunks: sixteen for each pair.
    const SIZE: usize = 128 << 20;
    let root = lab.src.home.join("one");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("large"), pattern(SIZE, 31)).unwrap();
    let dataset = SIZE as u64;
    let id = lab.transfer(&["-r", "--bwlimit", "16M", "src:/~/one", "dst:/~/one"]);
    let deadline = Instant::now() + LIMIT;
    loop {
        let task = lab.show(&id);
        if task["bytes_transferred"].as_u64().unwrap_or(0) > dataset / 3 {
            break;
        }
        assert_eq!(task["status"], "ACTIVE", "{task}");
        assert!(Instant::now() < deadline, "never moved: {task}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = pause_then_unpause(&lab, &id, &[port1, port2]);

    let task = lab.wait(&id);
    assert_eq!(tree(&root), tree(&lab.dst.home.join("one")));
    let events = lab.events(&id);
    // Spread again after the pause.
    assert!(
        events.matches("spread over 2 nodes").count() >= 2,
        "{events}"
    );
    assert_eq!(task["nodes"], 2, "{task}");
    // What the destination machines received in the retry: what was not
    // in at the pause (a third or more was: the hub had counted that
    // much), not the whole file again (without the records). What was in
    // flight at the pause is lost with the first attempt.
    let received = received_bytes(port1) + received_bytes(port2);
    let retry = received - before;
    println!("dataset {dataset}, received {received}, {before} before the pause: {task}");
    let logs = format!("{}\n{}", lab.dst_daemon().log(), dst2.log());
    assert!(
        retry < dataset * 3 / 4,
        "{retry} in the retry: {task}\n{events}\n{logs}"
    );
    assert!(
        logs.contains("chunks of this part an earlier attempt kept"),
        "{logs}"
    );
}

/// A split file the first attempt committed (on the node of its own
/// shard, whose journal alone names it) before the attempt stopped: the
/// retry finds it with its source's size and modification time, every
/// node compares the whole file's digest with its source node's, and
/// none sends it again.
#[test]
fn a_split_file_committed_before_a_retry_is_compared_not_sent_again() {
    let TwoByTwo {
        lab,
        ports: [port1, port2],
        src2: _src2,
        dst2: (_dst2, dst2),
    } = two_by_two_counting_dst();

    let root = lab.src.home.join("two");
    fs::create_dir_all(root.join("b")).unwrap();
    fs::write(root.join("a"), pattern(64 << 20, 51)).unwrap();
    fs::write(root.join("b/later"), pattern(64 << 20, 52)).unwrap();
    let dataset = 128u64 << 20;
    let id = lab.transfer(&["-r", "--bwlimit", "16M", "src:/~/two", "dst:/~/two"]);
    let first = lab.dst.home.join("two/a");
    wait_until(LIMIT, "the first file committed", || {
        fs::metadata(&first).is_ok_and(|m| m.len() == 64 << 20)
    });
    assert_eq!(lab.show(&id)["status"], "ACTIVE");
    let before = pause_then_unpause(&lab, &id, &[port1, port2]);

    let task = lab.wait(&id);
    assert_eq!(tree(&root), tree(&lab.dst.home.join("two")));
    assert_eq!(task["files_transferred"], 2, "{task}");
    assert_eq!(task["bytes_transferred"], dataset, "{task}");
    // The retry moves at most the second file (what of it was not in at
    // the pause); without the comparison, the first file again too.
    let received = received_bytes(port1) + received_bytes(port2);
    let retry = received - before;
    println!("dataset {dataset}, received {received}, {before} before the pause: {task}");
    let logs = format!("{}\n{}", lab.dst_daemon().log(), dst2.log());
    assert!(
        retry <= dataset / 2,
        "{retry} in the retry: {task}\n{}\n{logs}",
        lab.events(&id)
    );
}

/// Pauses `dst` mid-task and unpauses it once the attempt stopped: what
/// the destination nodes serving metrics at `ports` had received by then.
fn pause_then_unpause(lab: &Lab, id: &str, ports: &[u16]) -> u64 {
    let paused = lab.dst.run(&["-pause"]);
    assert_eq!(paused.code, Some(0), "{paused:?}");
    wait_until(LIMIT, "the pause among the task's events", || {
        lab.events(id).contains("PAUSED")
    });
    // The first attempt stops writing: its count stops.
    let received = || ports.iter().map(|p| received_bytes(*p)).sum::<u64>();
    let mut last = received();
    wait_until(LIMIT, "the first attempt's writing over", || {
        std::thread::sleep(Duration::from_millis(300));
        let now = received();
        std::mem::replace(&mut last, now) == now
    });
    let unpaused = lab.dst.run(&["-unpause"]);
    assert_eq!(unpaused.code, Some(0), "{unpaused:?}");
    last
}

/// `ferry_endpoint_received_bytes_total` of the daemon serving metrics at
/// `port`: the chunk bytes it wrote.
fn received_bytes(port: u16) -> u64 {
    metric(port, "ferry_endpoint_received_bytes_total")
}

/// `ferry_endpoint_sent_bytes_total` of the daemon serving metrics at `port`.
fn sent_bytes(port: u16) -> u64 {
    metric(port, "ferry_endpoint_sent_bytes_total")
}

/// The value of the metric `name` of the daemon serving metrics at `port`.
fn metric(port: u16, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{answer}"))
        .trim()
        .parse()
        .unwrap()
}

/// CPU seconds (user + system) a process used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime
    // are the 12th and 13th of them, in clock ticks (100 per second).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Not a test: the figures of one node against two per side (run with
/// `cargo test -p ferry-tests --test nodes -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement: prints figures, asserts nothing about speed"]
fn measure_one_node_against_two_per_side() {
    let lab = Lab::new();
    let many = lab.src.home.join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..256u32 {
        fs::write(many.join(format!("f{i:03}")), pattern(1 << 20, i)).unwrap();
    }
    let one = lab.src.home.join("one");
    fs::create_dir_all(&one).unwrap();
    fs::write(one.join("large"), pattern(1 << 30, 77)).unwrap();

    let run = |what: &str, dir: &str, pids: &[u32], logs: &[&ferry_tests::Daemon]| {
        let before: f64 = pids.iter().map(|p| cpu_secs(*p)).sum();
        let started = Instant::now();
        let id = lab.transfer(&[
            "-r",
            &format!("src:/~/{dir}"),
            &format!("dst:/~/{what}-{dir}"),
        ]);
        let task = lab.wait(&id);
        let secs = started.elapsed().as_secs_f64();
        let cpu: f64 = pids.iter().map(|p| cpu_secs(*p)).sum::<f64>() - before;
        let bytes = task["bytes_transferred"].as_u64().unwrap() as f64;
        println!(
            "{what} {dir}: {:.0} MiB in {secs:.1}s = {:.0} MiB/s; daemons' CPU {cpu:.1}s ({:.2} cores); spread: {}",
            bytes / 1048576.0,
            bytes / 1048576.0 / secs,
            cpu / secs,
            lab.events(&id).contains("spread over")
        );
        // What each destination machine received of it, by its own log.
        for log in logs.iter().map(|d| d.log()) {
            for line in log
                .lines()
                .filter(|l| l.contains(&id) && l.contains("received"))
            {
                println!("  {}", line.split("INFO ").last().unwrap_or(line));
            }
        }
        fs::remove_dir_all(lab.dst.home.join(format!("{what}-{dir}"))).unwrap();
    };
    let primaries = [lab.src_daemon().pid(), lab.dst_daemon().pid()];
    run("one-node", "many", &primaries, &[lab.dst_daemon()]);
    run("one-node", "one", &primaries, &[lab.dst_daemon()]);
    let (_s2, s2) = join(&lab, "src", &lab.src);
    let (_d2, d2) = join(&lab, "dst", &lab.dst);
    wait_nodes(&lab, "dst", &[("primary", true), ("node-2", true)]);
    let all = [primaries[0], primaries[1], s2.pid(), d2.pid()];
    run("two-nodes", "many", &all, &[lab.dst_daemon(), &d2]);
    run("two-nodes", "one", &all, &[lab.dst_daemon(), &d2]);
}
