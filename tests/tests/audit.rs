//! The audit log, as an endpoint's owner reads it: alice shares
//! `/~/project/results` read-only with bob; bob lists it, copies from it,
//! tries a folder outside it and a write into it; `ferry endpoint audit
//! src` shows alice each of these with the identity, the path and the
//! task, and her endpoint's own log names every file it served to him.
//! Bob cannot read her audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User};
use serde_json::Value;
use std::fs;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Events of `action` by `identity` in an audit listing.
fn by<'a>(events: &'a [Value], identity: &str, action: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["identity"] == identity && e["action"] == action)
        .collect()
}

#[test]
fn the_owners_audit_lists_a_grantees_listings_and_reads_and_the_endpoint_logs_what_it_served() {
    let lab = Lab::builder().without_dst().start();
    let results = lab.src.home.join("project/results");
    fs::create_dir_all(results.join("run1")).unwrap();
    fs::write(results.join("run1/data.csv"), b"a,b\n1,2\n").unwrap();
    fs::write(results.join("run1/notes.txt"), b"calibrated").unwrap();
    fs::write(
        lab.src.dir.join("config-paths"),
        "~/,0,1\n~/project/results,1,1\n",
    )
    .unwrap();
    lab.src.run(&["-reload"]).ok();
    let src_id = lab.src.endpoint_id();

    lab.hub.add_user("bob", "bobs password 1");
    let bob = User::new();
    let (_, key) = lab.hub.endpoint_key("bob", "bobs-laptop", &[]);
    bob.setup_with_key(&key, "bobs-laptop").ok();
    let _bobs_daemon = bob.start_foreground(&[]);
    bob.wait_hub_state("connected", LIMIT);
    let bob_token = lab.hub.token("bob");
    let as_bob = |args: &[&str]| bob.run_as(&lab.hub, &bob_token, args);

    lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/project/results",
        "--permissions",
        "r",
        "--identity",
        "bob",
    ])
    .ok();

    // Bob lists the folder, copies from it, and tries one outside it.
    let shared = format!("{src_id}:/~/project/results");
    as_bob(&["ls", &shared]).ok();
    let out = as_bob(&[
        "transfer",
        "-r",
        &format!("{shared}/run1"),
        "bobs-laptop:/~/copy",
    ]);
    let task = ferry_tests::line_value(out.ok(), "Task ID: ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string();
    as_bob(&["task", "wait", &task, "--timeout", "120"]).ok();
    assert_eq!(
        fs::read(bob.home.join("copy/notes.txt")).unwrap(),
        b"calibrated"
    );
    let outside = as_bob(&["ls", &format!("{src_id}:/~/project")]);
    assert_ne!(outside.code, Some(0), "{outside:?}");
    let write = as_bob(&[
        "transfer",
        "bobs-laptop:/~/copy/notes.txt",
        &format!("{shared}/x.txt"),
    ]);
    assert_ne!(write.code, Some(0), "{write:?}");

    // Alice's audit log has it all, with the paths and the task.
    let audit = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["endpoint", "audit", "src", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str::<Value>(lab.ferry(&args).ok())
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let events = audit(&[]);
    let shown = serde_json::to_string_pretty(&events).unwrap();
    let listed = by(&events, "bob", "ls");
    assert_eq!(listed.len(), 1, "{shown}");
    assert_eq!(listed[0]["path"], "/~/project/results", "{shown}");
    assert!(listed[0]["task_id"].is_null(), "{shown}");
    let read = by(&events, "bob", "read");
    assert_eq!(read.len(), 1, "one per item of the task: {shown}");
    assert_eq!(read[0]["path"], "/~/project/results/run1", "{shown}");
    assert_eq!(read[0]["task_id"], task.as_str(), "{shown}");
    assert!(read[0]["time"].as_i64().unwrap() > 1_700_000_000, "{shown}");
    let refused = by(&events, "bob", "refused");
    assert_eq!(refused.len(), 2, "{shown}");
    assert_eq!(refused[0]["path"], "/~/project", "{shown}");
    assert_eq!(refused[1]["path"], "/~/project/results/x.txt", "{shown}");
    assert!(
        refused[1]["detail"].as_str().unwrap().contains("read-only"),
        "{shown}"
    );
    let shared_it = by(&events, "alice", "permission_create");
    assert_eq!(shared_it.len(), 1, "{shown}");
    assert_eq!(shared_it[0]["path"], "/~/project/results", "{shown}");
    // Bob's write went to his own endpoint, not to alice's log.
    assert!(by(&events, "bob", "write").is_empty(), "{shown}");
    // --since: an hour ago has them all; a time to come, none.
    assert_eq!(audit(&["--since", "1h"]), events);
    assert!(audit(&["--since", "2999-01-01T00:00:00Z"]).is_empty());

    // For people: one line per event, in columns.
    let table = lab.ferry(&["endpoint", "audit", "src"]).ok().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), events.len() + 1, "{table}");
    assert!(lines[0].starts_with("Time"), "{table}");
    let read_line = lines
        .iter()
        .find(|l| l.contains(" read ") && l.contains(&task))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        read_line.contains("bob") && read_line.ends_with("/~/project/results/run1 (recursive)"),
        "{table}"
    );
    let task_column = |l: &str| l.find(&task).or_else(|| l.find("  -  ").map(|i| i + 2));
    assert_eq!(
        lines[1..]
            .iter()
            .map(|l| task_column(l))
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1,
        "aligned: {table}"
    );

    // Bob's own endpoint's log has his writes, and what --delete removed
    // there (a file the source does not have).
    fs::write(bob.home.join("copy/stale.txt"), b"old").unwrap();
    let out = as_bob(&[
        "transfer",
        "-r",
        "--delete",
        &format!("{shared}/run1"),
        "bobs-laptop:/~/copy",
    ]);
    let sync = ferry_tests::line_value(out.ok(), "Task ID: ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string();
    as_bob(&["task", "wait", &sync, "--timeout", "120"]).ok();
    assert!(!bob.home.join("copy/stale.txt").exists());
    let his: Value =
        serde_json::from_str(as_bob(&["endpoint", "audit", "bobs-laptop", "--json"]).ok()).unwrap();
    let his = his.as_array().unwrap();
    let removed = by(his, "bob", "delete");
    assert_eq!(removed.len(), 1, "{his:?}");
    assert_eq!(removed[0]["task_id"], sync.as_str(), "{his:?}");
    assert!(
        removed[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/copy/stale.txt"),
        "{his:?}"
    );
    let wrote: Vec<_> = by(his, "bob", "write")
        .into_iter()
        .filter(|e| e["task_id"] == task.as_str())
        .collect();
    assert_eq!(wrote.len(), 1, "{his:?}");
    assert_eq!(
        (&wrote[0]["path"], &wrote[0]["task_id"]),
        (&Value::from("/~/copy"), &Value::from(task.as_str()))
    );

    // The audit log is the owner's: bob is refused, in one line.
    let theirs = as_bob(&["endpoint", "audit", &src_id]);
    assert_eq!(theirs.code, Some(1), "{theirs:?}");
    assert_eq!(theirs.stderr.trim().lines().count(), 1, "{theirs:?}");
    assert!(theirs.stdout.is_empty(), "{theirs:?}");

    // Alice's endpoint logged what it served bob, without the hub's word.
    let log = lab.src_daemon().log();
    let served: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ferry::served"))
        .collect();
    let for_bob = |action: &str, path: &str| {
        served.iter().any(|l| {
            l.contains(&format!("action=\"{action}\""))
                && l.contains(path)
                && l.contains("identity=\"bob\"")
        })
    };
    assert!(for_bob("ls", "project/results"), "{log}");
    for file in ["run1/data.csv", "run1/notes.txt"] {
        assert!(for_bob("read", file), "{file}: {log}");
        assert!(
            served
                .iter()
                .any(|l| l.contains(file) && l.contains(&format!("task={task}"))),
            "{file}: {log}"
        );
    }
}
