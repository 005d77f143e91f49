//! What received files are like on disk: a real hub, two real endpoint
//! daemons on loopback, `ferry transfer`. Ownership is not preserved, so
//! no setuid, setgid or sticky bit ever arrives, and the receiving
//! endpoint's umask (from `endpoint.toml`, else the daemon's own) narrows
//! the source's permissions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Daemon, Hub, User, line_value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn mode_of(path: &Path) -> String {
    let mode = fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    format!("{mode:04o}")
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Source files and directories with special bits and open permissions.
fn make_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("world-writable", 0o666),
        ("private", 0o600),
    ] {
        fs::write(root.join(name), name).unwrap();
        set_mode(&root.join(name), mode);
    }
    for (name, mode) in [("setgid-dir", 0o2775), ("sticky-dir", 0o1777)] {
        fs::create_dir(root.join(name)).unwrap();
        fs::write(root.join(name).join("inside"), name).unwrap();
        set_mode(&root.join(name), mode);
    }
}

/// The modes things arrived with, in `make_tree`'s order.
fn arrived(root: &Path) -> Vec<(&'static str, String)> {
    [
        "setuid",
        "setgid",
        "world-writable",
        "private",
        "setgid-dir",
        "sticky-dir",
    ]
    .into_iter()
    .map(|name| (name, mode_of(&root.join(name))))
    .collect()
}

fn expect(modes: [(&'static str, &str); 6]) -> Vec<(&'static str, String)> {
    modes.map(|(n, m)| (n, m.to_string())).to_vec()
}

/// `umask = "…"` in an endpoint's `endpoint.toml` (`None`: no such line).
fn set_umask_setting(user: &User, umask: Option<&str>) {
    let file = user.dir.join("endpoint.toml");
    let text = fs::read_to_string(&file).unwrap();
    let mut kept: String = text
        .lines()
        .filter(|l| !l.starts_with("umask"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(umask) = umask {
        kept.push_str(&format!("umask = \"{umask}\"\n"));
    }
    fs::write(&file, kept).unwrap();
}

/// `ferry -start` in the foreground under a process umask of `umask`.
fn start_under_umask(user: &User, umask: &str) -> Daemon {
    let plain = user.ferry(&["-start"]);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(plain.get_program())
        .args(plain.get_args())
        .env_clear()
        .envs(plain.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null());
    user.start_with(command)
}

struct Lab {
    hub: Hub,
    src: User,
    dst: User,
    _src_daemon: Daemon,
    token: String,
}

impl Lab {
    fn new() -> Self {
        let hub = Hub::start();
        hub.add_user("alice", "correct horse battery");
        let endpoint = |name: &str| {
            let (_, key) = hub.endpoint_key("alice", name, &[]);
            let user = User::new();
            let out = user.setup_with_key(&key, name);
            assert_eq!(out.code, Some(0), "{out:?}");
            user
        };
        let (src, dst) = (endpoint("src"), endpoint("dst"));
        let token = hub.token("alice");
        let src_daemon = src.start_foreground(&[]);
        src.wait_hub_state("connected", LIMIT);
        Lab {
            hub,
            src,
            dst,
            _src_daemon: src_daemon,
            token,
        }
    }

    /// Transfers `src:/~/FROM` to `dst:/~/TO` recursively and waits for success.
    fn transfer(&self, from: &str, to: &str) {
        let (from, to) = (format!("src:/~/{from}"), format!("dst:/~/{to}"));
        let out = self
            .src
            .run_as(&self.hub, &self.token, &["transfer", "-r", &from, &to]);
        assert_eq!(out.code, Some(0), "{out:?}");
        let id = line_value(&out.stdout, "Task ID: ").unwrap().to_string();
        let waited = self.src.run_as(
            &self.hub,
            &self.token,
            &["task", "wait", &id, "--timeout", "120"],
        );
        let events = self
            .src
            .run_as(&self.hub, &self.token, &["task", "events", &id]);
        assert_eq!(
            waited.code,
            Some(0),
            "{waited:?}\nevents: {}",
            events.stdout
        );
    }

    /// Runs the destination's daemon for one transfer, then stops it.
    fn receive(&self, daemon: Daemon, from: &str, to: &str) {
        self.dst.wait_hub_state("connected", LIMIT);
        self.transfer(from, to);
        let out = self.dst.run(&["-stop"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        daemon.wait_exit(LIMIT);
    }
}

#[test]
fn received_files_lose_special_bits_and_follow_the_receiving_umask() {
    let lab = Lab::new();
    make_tree(&lab.src.home.join("tree"));

    // umask 022 from endpoint.toml, whatever the daemon's own.
    set_umask_setting(&lab.dst, Some("022"));
    lab.receive(start_under_umask(&lab.dst, "077"), "tree", "u022");
    assert_eq!(
        arrived(&lab.dst.home.join("u022")),
        expect([
            ("setuid", "0755"),
            ("setgid", "0755"),
            ("world-writable", "0644"),
            ("private", "0600"),
            ("setgid-dir", "0755"),
            ("sticky-dir", "0755"),
        ])
    );

    // umask 027 from endpoint.toml.
    set_umask_setting(&lab.dst, Some("027"));
    lab.receive(start_under_umask(&lab.dst, "022"), "tree", "u027");
    assert_eq!(
        arrived(&lab.dst.home.join("u027")),
        expect([
            ("setuid", "0750"),
            ("setgid", "0750"),
            ("world-writable", "0640"),
            ("private", "0600"),
            ("setgid-dir", "0750"),
            ("sticky-dir", "0750"),
        ])
    );

    // No setting: the daemon's own umask.
    set_umask_setting(&lab.dst, None);
    lab.receive(start_under_umask(&lab.dst, "077"), "tree", "own");
    assert_eq!(
        arrived(&lab.dst.home.join("own")),
        expect([
            ("setuid", "0700"),
            ("setgid", "0700"),
            ("world-writable", "0600"),
            ("private", "0600"),
            ("setgid-dir", "0700"),
            ("sticky-dir", "0700"),
        ])
    );
}

#[test]
fn a_malformed_umask_setting_refuses_the_start_in_one_line() {
    let user = User::new();
    user.set_up_endpoint("laptop");
    set_umask_setting(&user, Some("0999"));
    let out = user.run(&["-start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = out.stderr.trim();
    assert!(
        !line.contains('\n') && line.contains("umask") && line.contains("022"),
        "{out:?}"
    );
}
