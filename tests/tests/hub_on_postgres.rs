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

use ferry_tests::{Lab, on_path, pattern, run_command, skip, tree};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

/// A schema of its own on the test server, dropped afterwards.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn create(server: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("ferry_e2e_{}_{nanos}", std::process::id());
        psql(server, &format!("CREATE SCHEMA {name}"));
        Schema {
            server: server.to_string(),
            name,
        }
    }

    /// The server's URL with this schema as the place for the hub's tables.
    fn url(&self) -> String {
        let join = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{join}options=-c%20search_path%3D{}",
            self.server, self.name
        )
    }

    /// How many rows `table` of this schema holds.
    fn count(&self, table: &str) -> u64 {
        psql(
            &self.server,
            &format!("SELECT count(*) FROM {}.{table}", self.name),
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", &self.server, "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}

fn psql(server: &str, sql: &str) -> String {
    let out = run_command(
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                server,
                "-c",
            ])
            .arg(sql),
    );
    assert_eq!(out.code, Some(0), "psql {sql}: {out:?}");
    out.stdout
}

#[test]
fn a_hub_moved_to_postgres_serves_its_old_tasks_and_runs_new_ones() {
    let required = std::env::var("FERRY_REQUIRE_POSTGRES").as_deref() == Ok("1");
    let server = match std::env::var("FERRY_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() && on_path("psql") => url,
        _ => {
            assert!(
                !required,
                "FERRY_REQUIRE_POSTGRES=1 but FERRY_TEST_POSTGRES or psql is missing"
            );
            skip(
                "no PostgreSQL server (FERRY_TEST_POSTGRES=postgres://..., and psql): `bash .ci/postgres.sh start` starts one",
            );
            return;
        }
    };
    let schema = Schema::create(&server);
    let mut lab = Lab::new();

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
