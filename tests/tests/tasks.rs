//! Transfer tasks on a real hub, without data moving: a task whose
//! destination is offline waits (and says so), survives a hub kill -9,
//! can be canceled, and fails at its deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, Ran, line_value, wait_until};
use std::fs;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn json(out: &Ran) -> serde_json::Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// A hub, alice's running endpoint "src" with `~/data/a.txt`, and her
/// endpoint "dst" whose daemon never runs.
fn lab() -> Lab {
    let lab = Lab::builder().dst_never_set_up().start();
    fs::create_dir(lab.src.home.join("data")).unwrap();
    fs::write(lab.src.home.join("data/a.txt"), "a").unwrap();
    lab
}

#[test]
fn a_task_waits_for_an_offline_endpoint_survives_a_hub_restart_and_can_be_canceled() {
    let mut lab = lab();
    let id = lab.transfer(&[
        "src:/~/data",
        "dst:/~/copy",
        "-r",
        "--label",
        "run 7",
        "--sync-level",
        "checksum",
    ]);

    let shown = lab.show(&id);
    assert_eq!(shown["task_id"], id.as_str());
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["label"], "run 7");
    for key in [
        "files",
        "files_transferred",
        "files_skipped",
        "bytes_transferred",
        "faults",
    ] {
        assert_eq!(shown[key], 0, "{key}: {shown}");
    }
    assert!(
        shown["waiting_for"].as_str().unwrap().contains("'dst'"),
        "{shown}"
    );
    wait_until(LIMIT, "an ENDPOINT_OFFLINE event", || {
        lab.events_json(&id).iter().any(|e| {
            e["code"] == "ENDPOINT_OFFLINE" && e["description"].as_str().unwrap().contains("'dst'")
        })
    });
    let text = lab.ferry(&["task", "events", &id]);
    assert!(
        text.stdout.contains("SUBMITTED") && text.stdout.contains("ENDPOINT_OFFLINE"),
        "{text:?}"
    );
    let table = lab.ferry(&["task", "show", &id]);
    assert_eq!(
        line_value(&table.stdout, "Status:"),
        Some("            ACTIVE")
    );
    assert!(table.stdout.contains("Waiting For:"), "{table:?}");

    // kill -9 the hub: the task is in its database, as it was.
    lab.hub.kill();
    lab.hub.serve();
    let again = lab.show(&id);
    assert_eq!(again["status"], "ACTIVE");
    assert_eq!(again["created"], shown["created"]);
    assert_eq!(again["label"], "run 7");

    let waited = lab.ferry(&["task", "wait", &id, "--timeout", "1"]);
    assert_eq!(waited.code, Some(1), "{waited:?}");
    assert!(waited.stderr.contains("still ACTIVE"), "{waited:?}");

    let canceled = lab.ferry(&["task", "cancel", &id]);
    assert_eq!(canceled.code, Some(0), "{canceled:?}");
    assert!(canceled.stdout.contains("CANCELED"), "{canceled:?}");
    let shown = lab.show(&id);
    assert_eq!(shown["status"], "CANCELED");
    assert!(shown["completed"].is_i64(), "{shown}");
    let waited = lab.ferry(&["task", "wait", &id]);
    assert_eq!(waited.code, Some(1), "{waited:?}");
    assert!(waited.stderr.contains("CANCELED"), "{waited:?}");
    assert_eq!(
        lab.events_json(&id).last().unwrap()["code"],
        "CANCELED",
        "{:?}",
        lab.events_json(&id)
    );
    // Canceling again is harmless.
    assert_eq!(lab.ferry(&["task", "cancel", &id]).code, Some(0));

    let list = json(&lab.ferry(&["task", "list", "--json"]));
    assert_eq!(list[0]["task_id"], id.as_str());
    let table = lab.ferry(&["task", "list"]);
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("src -> dst"),
        "{table:?}"
    );
}

#[test]
fn a_task_fails_at_its_deadline_and_wait_says_so() {
    let lab = lab();
    let out = lab.ferry(&[
        "transfer",
        "src:/~/data",
        "dst:/~/copy",
        "-r",
        "--deadline",
        "2s",
        "--json",
    ]);
    let id = json(&out)["task_id"].as_str().unwrap().to_string();
    let waited = lab.ferry(&["task", "wait", &id, "--timeout", "60"]);
    assert_eq!(waited.code, Some(1), "{waited:?}");
    assert!(
        waited.stderr.contains("FAILED") && waited.stderr.contains("deadline"),
        "{waited:?}"
    );
    assert_eq!(waited.stderr.lines().count(), 1, "{waited:?}");
    let shown = lab.show(&id);
    assert_eq!(shown["status"], "FAILED");
    assert!(
        shown["fatal_error"].as_str().unwrap().contains("deadline"),
        "{shown}"
    );
    assert_eq!(lab.events_json(&id).last().unwrap()["code"], "FAILED");

    // --wait follows the task to its end and exits 1 unless it SUCCEEDED.
    let out = lab.ferry(&[
        "transfer",
        "src:/~/data",
        "dst:/~/copy",
        "-r",
        "--deadline",
        "3s",
        "--wait",
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(line_value(&out.stdout, "Task ID: ").is_some(), "{out:?}");
    assert!(out.stdout.contains("Status: FAILED"), "{out:?}");
    assert!(out.stderr.contains("deadline"), "{out:?}");
}

#[test]
fn batches_and_refusals_from_the_command_line() {
    let lab = lab();
    let batch = lab.src.home.join("batch.txt");
    fs::write(
        &batch,
        "# two items\na.txt a-copy.txt\n-r /~/data '/~/all of it'\n",
    )
    .unwrap();
    let id = lab.transfer(&[
        "src:/~/data",
        "dst:/~/copy",
        "-r",
        "--batch",
        batch.to_str().unwrap(),
    ]);
    assert_eq!(lab.show(&id)["item_count"], 2);

    let bad_level = lab.ferry(&["transfer", "src:/~/a", "dst:/~/b", "--sync-level", "fast"]);
    assert_eq!(bad_level.code, Some(2), "{bad_level:?}");
    let relative = lab.ferry(&["transfer", "src:data", "dst:/~/b"]);
    assert_eq!(relative.code, Some(1), "{relative:?}");
    assert!(relative.stderr.contains("not absolute"), "{relative:?}");
    let unknown = lab.ferry(&["transfer", "nowhere:/a", "dst:/~/b"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(unknown.stderr.contains("no endpoint"), "{unknown:?}");
    let deadline = lab.ferry(&["transfer", "src:/a", "dst:/b", "--deadline", "soon"]);
    assert_eq!(deadline.code, Some(2), "{deadline:?}");

    // Another user sees neither alice's endpoints nor her tasks.
    lab.hub.add_user("mallory", "another long password");
    let mallory = lab.hub.token("mallory");
    let foreign = lab
        .src
        .run_as(&lab.hub, &mallory, &["transfer", "src:/~/a", "dst:/~/b"]);
    assert_eq!(foreign.code, Some(1), "{foreign:?}");
    let peek = lab.src.run_as(&lab.hub, &mallory, &["task", "show", &id]);
    assert_eq!(peek.code, Some(1), "{peek:?}");
    assert!(peek.stderr.contains("no task"), "{peek:?}");
    let not_an_id = lab.ferry(&["task", "show", "../../etc"]);
    assert_eq!(not_an_id.code, Some(1), "{not_an_id:?}");
}

#[test]
fn ctrl_c_during_wait_stops_following_and_says_the_task_runs_on() {
    use std::io::{BufRead, BufReader};
    let lab = lab();
    // dst never connects, so the task waits as long as we like.
    let mut child = lab
        .src
        .ferry(&["transfer", "src:/~/data", "dst:/~/copy", "-r", "--wait"])
        .env("FERRY_TOKEN", &lab.token)
        .env("FERRY_HUB", &lab.hub.url)
        .env("FERRY_HUB_CA", lab.hub.ca_cert())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = line_value(first.trim_end(), "Task ID: ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    // Following has begun once the task is visible; then the user presses Ctrl-C.
    wait_until(LIMIT, "the task to be listed", || {
        lab.show(&id)["status"] == "ACTIVE"
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("runs on") && stderr.contains(&format!("ferry task cancel {id}")),
        "{stderr}"
    );
    assert_eq!(lab.show(&id)["status"], "ACTIVE", "the task itself goes on");
}

#[test]
fn a_stale_ferry_token_says_to_replace_or_unset_it() {
    let lab = lab();
    let out = lab
        .src
        .run_as(&lab.hub, "not-a-real-token", &["task", "list"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("FERRY_TOKEN") && first.contains("unset"),
        "{out:?}"
    );
}

#[test]
fn tasks_are_named_by_a_unique_prefix_of_their_id() {
    let lab = lab();
    let id = lab.transfer(&["src:/~/data", "dst:/~/copy", "-r", "--label", "prefixed"]);
    let prefix = &id[..8];
    // show, events, cancel and wait all take it, as git takes a short id.
    assert_eq!(lab.show(prefix)["task_id"], id.as_str());
    assert_eq!(lab.show(&prefix.to_uppercase())["task_id"], id.as_str());
    assert!(!lab.events_json(prefix).is_empty());
    let cancel = lab.ferry(&["task", "cancel", prefix]);
    assert_eq!(cancel.code, Some(0), "{cancel:?}");
    assert!(cancel.stdout.contains(&id), "{cancel:?}");
    let wait = lab.ferry(&["task", "wait", prefix]);
    assert_eq!(wait.code, Some(1), "{wait:?}");
    assert!(wait.stderr.contains("CANCELED"), "{wait:?}");
    // Too short is refused in one line that says how long it must be.
    let short = lab.ferry(&["task", "show", &id[..3]]);
    assert_eq!(short.code, Some(1), "{short:?}");
    assert_eq!(short.stderr.lines().count(), 1, "{short:?}");
    assert!(short.stderr.contains("at least 4"), "{short:?}");
    // A prefix of nobody's task is simply not found.
    let other = if id.starts_with("0000") {
        "ffff"
    } else {
        "0000"
    };
    let none = lab.ferry(&["task", "show", other]);
    assert_eq!(none.code, Some(1), "{none:?}");
    assert!(none.stderr.contains("no task"), "{none:?}");
}

#[test]
fn task_show_says_which_paths_a_task_copies() {
    let lab = lab();
    let batch = lab.src.home.join("batch.txt");
    fs::write(&batch, "a.txt 'a copy.txt'\n-r /~/data /~/all\n").unwrap();
    let out = lab.ferry(&[
        "transfer",
        "src:/~/data",
        "dst:/~/copy",
        "--batch",
        batch.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = line_value(&out.stdout, "Task ID: ").unwrap().to_string();

    let shown = lab.ferry(&["task", "show", &id]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    for line in [
        "src:/~/data/a.txt -> dst:/~/copy/a copy.txt",
        "src:/~/data -> dst:/~/all (-r)",
    ] {
        assert!(
            shown.stdout.lines().any(|l| l.trim() == line),
            "{line}: {shown:?}"
        );
    }
    let doc = lab.show(&id);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{doc}");
    assert_eq!(items[0]["source"], "/~/data/a.txt", "{doc}");
    assert_eq!(items[0]["destination"], "/~/copy/a copy.txt", "{doc}");
    assert_eq!(items[1]["recursive"], true, "{doc}");
    // The list stays light: no items there.
    let list = json(&lab.ferry(&["task", "list", "--json"]));
    assert!(list[0].get("items").is_none(), "{list}");
}
