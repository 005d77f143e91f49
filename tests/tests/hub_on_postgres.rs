//! A hub moved to PostgreSQL, as an admin moves one: a hub on SQLite with
//! a finished task is stopped, `ferry-hub migrate-store` copies it into
//! the server `FERRY_TEST_POSTGRES` names (a fresh schema of it), the
//! `database` line goes into `hub.toml`, and the restarted hub serves the
//! old task, runs a new transfer with names that are not UTF-8 across a
//! kill -9 of the hub just after its submission, and keeps the admin verbs
//! working: all on PostgreSQL, with nothing more written to SQLite's file.
//!
//! Without `FERRY_TEST_POSTGRES` the test says SKIPPED; with
//! `FERRY_REQUIRE_POSTGRES=1` (as in CI) that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::postgres::{self, Schema};
use ferry_tests::{Lab, pattern, skip, tree};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;

#[test]
fn a_hub_moved_to_postgres_serves_its_old_tasks_and_runs_new_ones() {
    let server = match postgres::test_server() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    let schema = Schema::create(&server);
    let mut lab = Lab::builder().hub_setting(ferry_tests::ON_SQLITE).start();

    // A task on SQLite, finished.
    fs::write(lab.src.home.join("before"), b"moved with the hub").unwrap();
    let before = lab.transfer(&["src:/~/before", "dst:/~/before"]);
    lab.wait(&before);

    // Stopped, moved, configured, restarted.
    lab.hub.kill();
    let url = schema.url();
    let moved = lab.hub.admin(&["migrate-store", "--to", &url]);
    assert_eq!(moved.code, Some(0), "{moved:?}");
    assert!(
        moved.stdout.contains("counts and checksums match"),
        "{moved:?}"
    );
    let config = lab.hub.dir.join("hub.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!("database = {}\n{text}", toml::Value::String(url.clone())),
    )
    .unwrap();
    let sqlite = fs::read(lab.hub.dir.join("hub.db")).unwrap();
    lab.hub.serve();

    // The old task, from PostgreSQL.
    let old = lab.show(&before);
    assert_eq!(old["status"], "SUCCEEDED", "{old}");
    assert_eq!(old["files_transferred"], 1, "{old}");

    // A new one, with names that are not UTF-8, across a kill -9 of the
    // hub (the task and its items must come back from PostgreSQL).
    let src = lab.src.home.join("data");
    fs::create_dir_all(&src).unwrap();
    for name in [&b"caf\xe9 \xff"[..], b"new\nline", b"%41%"] {
        fs::write(src.join(OsString::from_vec(name.to_vec())), name).unwrap();
    }
    fs::write(src.join("big"), pattern(24 * 1024 * 1024, 7)).unwrap();
    let new = lab.transfer(&["-r", "src:/~/data", "dst:/~/data"]);
    lab.hub.kill();
    lab.hub.serve();
    let task = lab.wait(&new);
    assert_eq!(tree(&lab.dst.home.join("data")), tree(&src));
    assert_eq!(task["files_transferred"], 4, "{task}");

    // The admin verbs work on PostgreSQL too.
    lab.hub.add_user("bob", "another good password");
    assert!(!lab.hub.token("bob").is_empty());
    assert_eq!(schema.count("users"), 2);
    assert_eq!(schema.count("tasks"), 2);
    assert!(schema.count("task_events") >= 4);
    assert_eq!(
        fs::read(lab.hub.dir.join("hub.db")).unwrap(),
        sqlite,
        "the SQLite file is no longer written"
    );
}
