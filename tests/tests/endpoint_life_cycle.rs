//! A user's session with the endpoint verbs: start, status, pause, stop,
//! and every way a start is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{User, line_value, wait_until};
use nix::sys::signal::Signal;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

const EXIT: Duration = Duration::from_secs(30);

#[test]
fn start_status_pause_stop_like_a_user() {
    let user = User::new();
    user.set_up_endpoint("laptop");
    let daemon = user.start_foreground(&[]);

    let status = user.run(&["-status"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    let hub = line_value(&status.stdout, "Hub: ").unwrap();
    assert!(hub == "connecting" || hub == "disconnected", "{status:?}");
    assert_eq!(
        line_value(&status.stdout, "Transfer Status: "),
        Some("idle")
    );
    assert!(status.stdout.contains("laptop"), "{status:?}");

    // The hub URL points at a closed port: once tried, -status says why.
    wait_until(EXIT, "a refused dial to be reported", || {
        user.run(&["-status"]).stdout.contains("connection refused")
    });

    let json = user.run(&["-status", "--json"]);
    assert_eq!(json.code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["running"], true);
    assert_eq!(doc["transfer"], "idle");
    assert_eq!(doc["pid"], daemon.pid());

    let second = user.run(&["-start"]);
    assert_eq!(second.code, Some(1), "{second:?}");
    let first_line = second.stderr.lines().next().unwrap();
    assert!(
        first_line.contains(&format!("already running (pid {})", daemon.pid())),
        "{second:?}"
    );

    assert_eq!(user.run(&["-pause"]).code, Some(0));
    let paused = user.run(&["-status"]);
    assert_eq!(
        line_value(&paused.stdout, "Hub: "),
        Some("paused"),
        "{paused:?}"
    );
    assert_eq!(user.run(&["-unpause"]).code, Some(0));
    let unpaused = user.run(&["-status"]);
    assert_ne!(line_value(&unpaused.stdout, "Hub: "), Some("paused"));

    let stop = user.run(&["-stop"]);
    assert_eq!(stop.code, Some(0), "{stop:?}");
    // -stop returns only after the daemon's process ended (a zombie: this
    // test, its parent, has not reaped it yet), not only its lock.
    let state = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid()))
        .map(|stat| {
            stat.rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .unwrap_or_default();
    assert!(
        state.is_empty() || state == "Z",
        "the daemon still runs (state {state}) after -stop returned"
    );
    // So this wait is immediate.
    let exited = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(exited.code, Some(0), "{exited:?}");
    assert!(!user.socket().exists(), "socket left behind");

    let again = user.run(&["-stop"]);
    assert_eq!(again.code, Some(0));
    assert!(again.stdout.contains("not running"), "{again:?}");
    let gone = user.run(&["-status"]);
    assert_eq!(gone.code, Some(3));
    assert_eq!(gone.stdout.trim(), "ferry is not running");
    let gone_json = user.run(&["-status", "--json"]);
    assert_eq!(gone_json.code, Some(3));
    let doc: serde_json::Value = serde_json::from_str(&gone_json.stdout).unwrap();
    assert_eq!(doc["running"], false);
}

#[test]
fn detach_returns_once_the_daemon_answers() {
    let user = User::new();
    user.set_up_endpoint("server");
    let started = user.run(&["-start", "-detach"]);
    // Whatever happens below, leave no daemon behind.
    struct StopOnDrop<'a>(&'a User);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.run(&["-stop"]);
        }
    }
    let _guard = StopOnDrop(&user);
    assert_eq!(started.code, Some(0), "{started:?}");
    assert!(
        started.stdout.contains("ferry started (pid "),
        "{started:?}"
    );

    // Ready means ready: no polling needed before the first -status.
    let status = user.run(&["-status", "--json"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let pid = doc["pid"].as_u64().unwrap();
    assert!(
        started.stdout.contains(&format!("pid {pid}")),
        "{started:?}"
    );
    // The lock names the daemon, not the parent that forked it.
    let lock = fs::read_to_string(user.dir.join("ferry.lock")).unwrap();
    assert_eq!(lock.trim(), pid.to_string());

    let refused = user.run(&["-start", "-detach"]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .contains(&format!("already running (pid {pid})")),
        "{refused:?}"
    );

    assert_eq!(user.run(&["-stop"]).code, Some(0));
    assert_eq!(user.run(&["-status"]).code, Some(3));
    let log = fs::read_to_string(user.dir.join("ferry.log")).unwrap();
    assert!(log.contains("ferry daemon ready"), "{log}");
    assert!(log.contains("ferry daemon stopped"), "{log}");
}

#[test]
fn a_dir_never_set_up_is_refused_in_one_line() {
    let user = User::new();
    for args in [&["-start"][..], &["-start", "-detach"][..]] {
        let out = user.run(args);
        assert_eq!(out.code, Some(1), "{out:?}");
        let first = out.stderr.lines().next().unwrap();
        assert!(
            first.contains("not set up") && first.contains("ferry -setup"),
            "{out:?}"
        );
    }
    assert!(!user.dir.join("ferry.sock").exists());
    // -status keeps its contract (exit 3, "ferry is not running") and says why.
    let status = user.run(&["-status"]);
    assert_eq!(status.code, Some(3), "{status:?}");
    assert_eq!(status.stdout.trim(), "ferry is not running");
    assert!(
        status.stderr.contains("not set up") && status.stderr.contains("ferry -setup"),
        "{status:?}"
    );
    // A two-dash habit gets the contract's spelling as a hint.
    let habit = user.run(&["--start"]);
    assert_eq!(habit.code, Some(2), "{habit:?}");
    assert!(habit.stderr.contains("`ferry -start`"), "{habit:?}");
}

#[test]
fn sigterm_and_sigint_stop_gracefully() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let user = User::new();
        user.set_up_endpoint("node");
        let daemon = user.start_foreground(&[]);
        daemon.signal(signal);
        let out = daemon.wait_exit(EXIT);
        assert_eq!(out.code, Some(0), "{signal}: {out:?}");
        assert!(out.stderr.contains("stopping"), "{out:?}");
        assert!(!user.socket().exists());
        assert_eq!(user.run(&["-status"]).code, Some(3));
    }
}

#[test]
fn after_kill_9_the_stale_socket_is_replaced_on_the_next_start() {
    let user = User::new();
    user.set_up_endpoint("node");
    let daemon = user.start_foreground(&[]);
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(EXIT);
    let meta = fs::symlink_metadata(user.socket()).unwrap();
    assert!(meta.file_type().is_socket(), "kill -9 leaves the socket");
    assert_eq!(user.run(&["-status"]).code, Some(3));
    assert!(user.run(&["-stop"]).stdout.contains("not running"));

    let daemon = user.start_foreground(&[]);
    assert_eq!(user.run(&["-status"]).code, Some(0));
    assert_eq!(user.run(&["-stop"]).code, Some(0));
    daemon.wait_exit(EXIT);
}

#[test]
fn the_socket_and_dir_are_private() {
    let user = User::new();
    user.set_up_endpoint("node");
    // A loose dir is tightened at start: it holds the key and the socket.
    fs::set_permissions(&user.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = user.start_foreground(&[]);
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&user.dir), 0o700);
    assert_eq!(mode(&user.socket()), 0o600);
    user.run(&["-stop"]);
    daemon.wait_exit(EXIT);
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let user = User::new();
    user.set_up_endpoint("node");
    let key = user.dir.join("endpoint.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = user.run(&["-start"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
}

#[test]
fn ferry_dir_from_the_environment_selects_the_endpoint() {
    let user = User::new();
    user.set_up_endpoint("env-selected");
    let daemon = user.start_foreground(&[]);
    let status = std::process::Command::new(ferry_tests::ferry_bin())
        .arg("-status")
        .env_clear()
        .env("HOME", &user.home)
        .env("FERRY_DIR", &user.dir)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stdout).contains("env-selected"));
    user.run(&["-stop"]);
    daemon.wait_exit(EXIT);
}

#[test]
fn a_live_socket_is_never_replaced() {
    let user = User::new();
    user.set_up_endpoint("node");
    // Something answers on ferry.sock without holding the lock (say, a
    // daemon of an older ferry): the new daemon must not steal its socket.
    let squatter = std::os::unix::net::UnixListener::bind(user.socket()).unwrap();
    for args in [&["-start"][..], &["-start", "-detach"][..]] {
        let out = user.run(args);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains("never replaced"), "{out:?}");
        assert!(user.socket().exists());
    }
    // Refused in the foreground, before `-detach` forked: no daemon was
    // started that could have written a log.
    assert!(!user.dir.join("ferry.log").exists());
    drop(squatter);
}

#[test]
fn under_systemd_the_daemon_notifies_ready_status_and_stopping() {
    let user = User::new();
    user.set_up_endpoint("service");
    let notify_path = user.home.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(EXIT)).unwrap();
    let mut start = user.ferry(&["-start"]);
    start.env("NOTIFY_SOCKET", &notify_path);
    let daemon = user.start_with(start);

    let mut received = String::new();
    let mut buf = [0u8; 4096];
    while !received.contains("READY=1") {
        let n = notify.recv(&mut buf).expect("no READY=1 from the daemon");
        received.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(received.contains("STATUS=Hub: "), "{received}");

    user.run(&["-stop"]);
    while !received.contains("STOPPING=1") {
        let n = notify
            .recv(&mut buf)
            .expect("no STOPPING=1 from the daemon");
        received.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    daemon.wait_exit(EXIT);
}

#[test]
fn every_hint_names_the_dir_it_was_given() {
    // A second endpoint on the same account, in its own dir.
    let mut user = User::new();
    user.dir = user.home.join(".ferry-cluster");
    user.set_up_endpoint("cluster");
    let daemon = user.start_foreground(&[]);
    let again = user.run(&["-start"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    let stop = format!("ferry -stop -dir {}", user.dir.display());
    assert!(again.stderr.contains(&format!("`{stop}`")), "{again:?}");
    // The hint, run as printed, stops this endpoint and no other.
    let words: Vec<&str> = stop.split(' ').skip(1).collect();
    let ran = std::process::Command::new(ferry_tests::ferry_bin())
        .args(&words)
        .env_clear()
        .env("HOME", &user.home)
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    daemon.wait_exit(EXIT);

    let mut fresh = User::new();
    fresh.dir = fresh.home.join("elsewhere");
    let out = fresh.run(&["-start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let setup = format!("`ferry -setup -dir {}`", fresh.dir.display());
    assert!(out.stderr.contains(&setup), "{out:?}");
    let paused = fresh.run(&["-unpause"]);
    let start = format!("`ferry -start -dir {} &`", fresh.dir.display());
    assert!(paused.stderr.contains(&start), "{paused:?}");
}

#[test]
fn on_a_terminal_the_foreground_daemon_shows_warnings_only_and_says_where_the_log_is() {
    if !ferry_tests::on_path("script") {
        ferry_tests::skip("needs script(1) from util-linux for a pseudo-terminal");
        return;
    }
    let user = User::new();
    user.set_up_endpoint("login-node");
    // `ferry -start &` on a login node: stderr is the user's terminal.
    let command = format!(
        "{} -start -dir {}",
        ferry_tests::ferry_bin().display(),
        user.dir.display()
    );
    let terminal = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_clear()
        .env("HOME", &user.home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(EXIT, "the daemon to answer", || {
        user.run(&["-status"]).code == Some(0)
    });
    // Its dial to the (closed) hub fails and is logged at INFO meanwhile.
    wait_until(EXIT, "a refused dial to be reported", || {
        user.run(&["-status"]).stdout.contains("connection refused")
    });
    assert_eq!(user.run(&["-stop"]).code, Some(0));
    let out = terminal.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains(" INFO "),
        "INFO lines on the terminal: {shown}"
    );
    let log = user.dir.join("ferry.log");
    assert!(
        shown.contains(&format!("the full log is in {}", log.display())),
        "{shown}"
    );
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("ferry daemon ready"), "{logged}");
}
