//! The relay across a real network boundary: three network namespaces
//! made by the test, one for the hub and one for each endpoint, each
//! endpoint's joined to the hub's by a veth pair, and no route between
//! the endpoints (the hub's namespace does not forward). Each endpoint
//! reaches the hub; neither reaches the other, so the source's direct
//! connection fails at once and the data goes through the hub.
//!
//! Needs root and `ip` (iproute2): skipped with a message otherwise,
//! unless `FERRY_REQUIRE_NETNS=1`, which makes their absence a failure.
//! Nothing outside the test's own namespaces is touched: the veth pairs
//! are created with both ends inside them, and the namespaces (with all
//! they hold) are deleted on drop, whatever the test's end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::relay_checks::{assert_only_ciphertext, marker, wait_for_temp};
use ferry_tests::{
    Daemon, Hub, Ran, User, ferry_bin, in_netns, is_root, line_value, on_path, pattern, skip, tree,
    wait_until,
};
use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;
/// The hub's port inside its own namespace (nothing else listens there).
const HUB_PORT: u16 = 8443;
/// The hub's address on the source's side; the destination reaches it
/// through a host route.
const HUB_ADDR: &str = "10.231.1.1";

/// Why this machine cannot make namespaces, if it cannot; with
/// `FERRY_REQUIRE_NETNS=1` it must.
fn netns_missing() -> Option<&'static str> {
    let missing = if !is_root() {
        Some("needs root (network namespaces)")
    } else if !on_path("ip") {
        Some("needs `ip` (iproute2)")
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("FERRY_REQUIRE_NETNS").is_none_or(|v| v != "1"),
            "FERRY_REQUIRE_NETNS=1 but the netns test cannot run: {why}"
        );
    }
    missing
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's namespaces: `hub`, `src` and `dst`; deleted on drop.
#[derive(Debug)]
struct Net {
    hub: String,
    src: String,
    dst: String,
}

impl Net {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "ferryrl{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let net = Net {
            hub: format!("{tag}-hub"),
            src: format!("{tag}-src"),
            dst: format!("{tag}-dst"),
        };
        // Named before any exists: a failure half-way drops `net`, which
        // deletes what was made.
        net.build();
        net
    }

    fn build(&self) {
        let net = self;
        for ns in [&net.hub, &net.src, &net.dst] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Both ends of each pair are made inside the namespaces.
        for (ns, side, hub_ip, ep_ip) in [
            (&net.src, "1", "10.231.1.1/24", "10.231.1.2/24"),
            (&net.dst, "2", "10.231.2.1/24", "10.231.2.2/24"),
        ] {
            let (hub_end, ep_end) = (format!("h{side}"), format!("e{side}"));
            ip(&[
                "-n", &net.hub, "link", "add", &hub_end, "type", "veth", "peer", "name", &ep_end,
                "netns", ns,
            ]);
            ip(&["-n", &net.hub, "addr", "add", hub_ip, "dev", &hub_end]);
            ip(&["-n", &net.hub, "link", "set", &hub_end, "up"]);
            ip(&["-n", ns, "addr", "add", ep_ip, "dev", &ep_end]);
            ip(&["-n", ns, "link", "set", &ep_end, "up"]);
        }
        // The destination reaches the hub's address on the source's side,
        // and nothing else beyond its own link.
        ip(&[
            "-n",
            &net.dst,
            "route",
            "add",
            "10.231.1.1/32",
            "via",
            "10.231.2.1",
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.hub, &self.src, &self.dst] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A hub in its namespace; alice's endpoints `src` and `dst` in theirs,
/// daemons running. Field order: the daemons and the hub stop before
/// the namespaces go.
struct World {
    src_daemon: Option<Daemon>,
    dst_daemon: Option<Daemon>,
    hub: Hub,
    src: User,
    dst: User,
    token: String,
    net: Net,
    _tee_dir: tempfile::TempDir,
    tee: std::path::PathBuf,
}

impl World {
    fn new() -> Self {
        let net = Net::new();
        let tee_dir = tempfile::tempdir().unwrap();
        let tee = tee_dir.path().join("relayed.bin");
        let hub = Hub::start_in_netns(
            &net.hub,
            HUB_ADDR,
            HUB_PORT,
            "",
            &[("FERRY_HUB_RELAY_TEE", tee.as_os_str())],
        );
        hub.add_user("alice", "correct horse battery");
        let token = hub.token("alice");
        let set_up = |name: &str, ns: &str| {
            let (_, key) = hub.endpoint_key("alice", name, &[]);
            let user = User::new();
            let out: Ran = in_netns(ns, &user.ferry(&["-setup", &key, "--name", name]))
                .output()
                .unwrap()
                .into();
            assert_eq!(out.code, Some(0), "{out:?}");
            user
        };
        let src = set_up("src", &net.src);
        let dst = set_up("dst", &net.dst);
        let mut world = World {
            src_daemon: None,
            dst_daemon: None,
            hub,
            src,
            dst,
            token,
            net,
            _tee_dir: tee_dir,
            tee,
        };
        world.start_src();
        world.start_dst();
        world
    }

    fn start_src(&mut self) {
        let daemon = self
            .src
            .start_with(in_netns(&self.net.src, &self.src.ferry(&["-start"])));
        self.src.wait_hub_state("connected", LIMIT);
        self.src_daemon = Some(daemon);
    }

    fn start_dst(&mut self) {
        let daemon = self
            .dst
            .start_with(in_netns(&self.net.dst, &self.dst.ferry(&["-start"])));
        self.dst.wait_hub_state("connected", LIMIT);
        self.dst_daemon = Some(daemon);
    }

    fn kill(daemon: Option<Daemon>) {
        let daemon = daemon.expect("the daemon is not running");
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        daemon.wait_exit(LIMIT);
    }

    /// `ferry ARGS` as alice, in the source's namespace.
    fn ferry(&self, args: &[&str]) -> Ran {
        let mut command = Command::new(ferry_bin());
        command
            .args(args)
            .env("HOME", &self.src.home)
            .env("FERRY_TOKEN", &self.token)
            .env("FERRY_HUB", &self.hub.url)
            .env("FERRY_HUB_CA", self.hub.ca_cert());
        in_netns(&self.net.src, &command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    fn transfer(&self, args: &[&str]) -> String {
        let mut all = vec!["transfer"];
        all.extend_from_slice(args);
        let out = self.ferry(&all);
        assert_eq!(out.code, Some(0), "{out:?}");
        line_value(&out.stdout, "Task ID: ").unwrap().to_string()
    }

    fn show(&self, id: &str) -> serde_json::Value {
        let out = self.ferry(&["task", "show", id, "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn events(&self, id: &str) -> Vec<serde_json::Value> {
        let out = self.ferry(&["task", "events", id, "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn wait(&self, id: &str) -> serde_json::Value {
        let out = self.ferry(&["task", "wait", id, "--timeout", "300"]);
        let task = self.show(id);
        assert!(
            out.code == Some(0) && task["status"] == "SUCCEEDED",
            "{out:?}\n{task}\n{:?}\nhub log:\n{}",
            self.events(id),
            self.hub.log()
        );
        task
    }
}

#[test]
fn endpoints_that_cannot_reach_each_other_transfer_through_the_hub_and_resume_after_kill_9() {
    if let Some(why) = netns_missing() {
        skip(why);
        return;
    }
    let mut w = World::new();
    // The boundary is real: the source cannot reach the destination.
    let reach = in_netns(
        &w.net.src,
        Command::new("ip").args(["route", "get", "10.231.2.2"]),
    )
    .output()
    .unwrap();
    assert!(
        !reach.status.success(),
        "the endpoints can reach each other"
    );

    let marker = marker();
    let src = w.src.home.join("data");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("secret.txt"), marker.repeat(1000)).unwrap();
    fs::write(src.join("sub/large.bin"), pattern(32 * CHUNK + 3, 5)).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("small-{i}")), pattern(999 + i, i as u32)).unwrap();
    }
    let id = w.transfer(&["-r", "src:/~/data", "dst:/~/data"]);
    wait_for_temp(&w.dst.home.join("data"), LIMIT);
    World::kill(w.dst_daemon.take());
    w.start_dst();
    let started = |w: &World| {
        w.events(&id)
            .iter()
            .filter(|e| e["code"] == "STARTED")
            .count()
    };
    wait_until(LIMIT, "a second attempt", || {
        started(&w) >= 2 || w.show(&id)["status"] != "ACTIVE"
    });
    if w.show(&id)["status"] == "ACTIVE" {
        World::kill(w.src_daemon.take());
        w.start_src();
    }
    let task = w.wait(&id);
    assert_eq!(tree(&w.dst.home.join("data")), tree(&src));
    let events = w.events(&id);
    let relayed: Vec<&str> = events
        .iter()
        .filter(|e| e["code"] == "RELAYED")
        .filter_map(|e| e["description"].as_str())
        .collect();
    // The direct connection was tried, and failed, first.
    assert!(
        relayed
            .iter()
            .any(|d| d.contains("through the hub") && d.contains("cannot connect")),
        "{events:?}"
    );
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert_only_ciphertext(&w.tee, &marker, 32 * CHUNK as u64);
}
