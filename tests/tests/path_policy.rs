//! The path policy as a user meets it: config-paths checked at start,
//! re-read on SIGHUP, replaced by -restrict-paths, explained by
//! `ferry paths check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::User;
use nix::sys::signal::Signal;
use std::fs;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_malformed_config_paths_stops_the_start_naming_the_line() {
    let user = User::new();
    user.set_up_endpoint("node");
    fs::write(
        user.dir.join("config-paths"),
        "# data\n~/data,0,1\n/scratch,0,2\n",
    )
    .unwrap();
    let out = user.run(&["-start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let first = out.stderr.lines().next().unwrap();
    assert!(first.contains("config-paths line 3"), "{out:?}");
    assert_eq!(user.run(&["-status"]).code, Some(3));
}

#[test]
fn sighup_rereads_config_paths_and_a_bad_file_keeps_the_old_policy() {
    let user = User::new();
    user.set_up_endpoint("node");
    let daemon = user.start_foreground(&[]);
    let rules = |n: usize| {
        let status = user.run(&["-status"]);
        status.stdout.contains(&format!("({n} rule"))
    };
    assert!(rules(1));

    fs::write(user.dir.join("config-paths"), "~/,0,1\n/srv/data,0,0\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("config-paths reloaded (2 rules)", LIMIT);
    assert!(rules(2));

    fs::write(user.dir.join("config-paths"), "~/,0,1\nnot a rule\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("keeping the previous policy", LIMIT);
    assert!(
        daemon.log().contains("config-paths line 2"),
        "{}",
        daemon.log()
    );
    assert!(rules(2), "the old policy must stay in force");
    assert_eq!(
        user.run(&["-status"]).code,
        Some(0),
        "daemon survives a bad file"
    );

    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
}

#[test]
fn restrict_paths_replaces_config_paths_and_says_so() {
    let user = User::new();
    user.set_up_endpoint("node");
    let home = user.home.to_str().unwrap();
    let spec = format!("R{home}/data,N{home}/data/secret,{home}/scratch");
    let daemon = user.start_foreground(&["-restrict-paths", &spec]);
    daemon.wait_for_log("config-paths is ignored", LIMIT);
    let status = user.run(&["-status"]);
    assert!(status.stdout.contains("-restrict-paths"), "{status:?}");

    // `paths check` explains with the running daemon's policy.
    let ro = user.run(&["paths", "check", &format!("{home}/data/run1/out.h5")]);
    assert_eq!(ro.code, Some(0), "{ro:?}");
    assert!(
        ro.stdout.contains("read-only") && ro.stdout.contains("-restrict-paths item 1"),
        "{ro:?}"
    );
    let secret = user.run(&["paths", "check", &format!("{home}/data/secret/key")]);
    assert_eq!(secret.code, Some(1), "{secret:?}");
    assert!(
        secret.stdout.contains("denied by -restrict-paths item 2"),
        "{secret:?}"
    );
    // Home is allowed by config-paths, but config-paths is not in force.
    let other = user.run(&["paths", "check", &format!("{home}/other")]);
    assert_eq!(other.code, Some(1), "{other:?}");

    // SIGHUP does not bring config-paths back.
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("config-paths not re-read", LIMIT);
    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);

    let bad = user.run(&["-start", "-restrict-paths", "Xdata"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("-restrict-paths item 1"), "{bad:?}");
}

#[test]
fn paths_check_explains_lines_dot_entries_and_the_config_dir() {
    let user = User::new();
    user.set_up_endpoint("node");
    fs::write(
        user.dir.join("config-paths"),
        "~/,0,1\n~/data,0,0\n~/.local/share,0,1\n",
    )
    .unwrap();
    let home = user.home.to_str().unwrap();
    let check = |p: &str| user.run(&["paths", "check", &format!("{home}/{p}")]);

    let rw = check("notes.txt");
    assert_eq!(rw.code, Some(0));
    assert!(
        rw.stdout.contains("read-write") && rw.stdout.contains("line 1"),
        "{rw:?}"
    );
    let ro = check("data/x");
    assert!(
        ro.stdout.contains("read-only") && ro.stdout.contains("line 2"),
        "{ro:?}"
    );
    // By component: ~/data does not cover ~/database.
    let db = check("database/x");
    assert!(
        db.stdout.contains("read-write") && db.stdout.contains("line 1"),
        "{db:?}"
    );
    let ssh = check(".ssh/id_ed25519");
    assert_eq!(ssh.code, Some(1));
    assert!(ssh.stdout.contains("dot-entries"), "{ssh:?}");
    let named = check(".local/share/x");
    assert_eq!(named.code, Some(0), "{named:?}");
    let unnamed = check(".local/other");
    assert_eq!(unnamed.code, Some(1), "{unnamed:?}");
    let key = check(".ferry/endpoint.key");
    assert_eq!(key.code, Some(1));
    assert!(key.stdout.contains("config dir"), "{key:?}");
    let outside = user.run(&["paths", "check", "/etc/passwd"]);
    assert_eq!(outside.code, Some(1));
    assert!(
        outside.stdout.contains("no config-paths line"),
        "{outside:?}"
    );
    let dotdot = user.run(&["paths", "check", &format!("{home}/data/../.ssh")]);
    assert_eq!(dotdot.code, Some(1), "{dotdot:?}");

    let json = user.run(&["paths", "check", "--json", &format!("{home}/data/x")]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["access"], "read-only");
    assert_eq!(doc["writable"], false);
}

#[test]
fn status_shows_a_config_paths_that_did_not_reload_and_reload_says_why() {
    let user = User::new();
    user.set_up_endpoint("node");
    let daemon = user.start_foreground(&[]);

    // A bad line, read on SIGHUP: the old policy stays, and -status says
    // so with the line until a re-read succeeds.
    fs::write(user.dir.join("config-paths"), "~/,0,1\n/scratch,0,2\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("keeping the previous policy", LIMIT);
    let status = user.run(&["-status"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    let problem = status
        .stdout
        .lines()
        .find(|l| l.contains("not reloaded"))
        .unwrap_or_else(|| panic!("{status:?}"));
    assert!(problem.contains("config-paths line 2"), "{status:?}");
    assert!(problem.contains("previous policy"), "{status:?}");
    assert!(status.stdout.contains("(1 rule)"), "{status:?}");
    let doc: serde_json::Value =
        serde_json::from_str(&user.run(&["-status", "--json"]).stdout).unwrap();
    assert!(
        doc["policy_problem"].as_str().unwrap().contains("line 2"),
        "{doc}"
    );

    // -reload answers with the same reason, in one line, exit 1.
    let out = user.run(&["-reload"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("config-paths line 2"), "{out:?}");
    assert!(
        out.stderr.contains("keeping the previous policy"),
        "{out:?}"
    );

    // Fixed and reloaded: the new policy, and the problem is gone.
    fs::write(user.dir.join("config-paths"), "~/,0,1\n/scratch,0,1\n").unwrap();
    let out = user.run(&["-reload"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("config-paths reloaded"), "{out:?}");
    let status = user.run(&["-status"]);
    assert!(status.stdout.contains("(2 rules)"), "{status:?}");
    assert!(!status.stdout.contains("not reloaded"), "{status:?}");

    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
    let out = user.run(&["-reload"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("not running"), "{out:?}");
}
