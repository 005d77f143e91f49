//! A hub, endpoints set up against it, and file operations through it, as
//! a lab would run them: all real processes on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Hub, User, line_value};
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn registered_id(out: &ferry_tests::Ran) -> String {
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = line_value(&out.stdout, "registered new endpoint, id: ")
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(
        out.stdout.lines().last(),
        Some("setup completed successfully"),
        "{out:?}"
    );
    id.to_string()
}

#[test]
fn setup_by_key_then_files_on_the_endpoint_through_the_hub() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (id, key) = hub.endpoint_key("alice", "laptop", &[]);
    let user = User::new();

    // Setup with a key asks nothing: stdin is /dev/null here.
    let out = user.setup_with_key(&key, "laptop");
    assert_eq!(registered_id(&out), id);
    let mode = |f: &str| fs::metadata(user.dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("endpoint.key"), 0o600);
    assert_eq!(
        fs::read_to_string(user.dir.join("config-paths"))
            .unwrap()
            .lines()
            .last(),
        Some("~/,0,1")
    );
    let toml = fs::read_to_string(user.dir.join("endpoint.toml")).unwrap();
    assert!(toml.contains(&id) && toml.contains(&hub.url), "{toml}");

    let daemon = user.start_foreground(&[]);
    user.wait_hub_state("connected", LIMIT);

    let token = hub.token("alice");
    let search = user.run_as(&hub, &token, &["endpoint", "search", "--json"]);
    assert_eq!(search.code, Some(0), "{search:?}");
    let found: serde_json::Value = serde_json::from_str(&search.stdout).unwrap();
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(found[0]["display_name"], "laptop");
    assert_eq!(found[0]["owner"], "alice");
    assert_eq!(found[0]["connected"], true);
    let table = user.run_as(&hub, &token, &["endpoint", "search"]);
    assert!(
        table.stdout.contains("laptop") && table.stdout.contains("yes"),
        "{table:?}"
    );

    // Files, by display name and by id, under the owner's home.
    fs::create_dir(user.home.join("data")).unwrap();
    fs::write(user.home.join("data/run1.txt"), "results").unwrap();
    let ls = user.run_as(&hub, &token, &["ls", "laptop:/~/data"]);
    assert_eq!(ls.code, Some(0), "{ls:?}");
    assert_eq!(ls.stdout, "run1.txt\n");
    let long = user.run_as(&hub, &token, &["ls", "-l", &format!("{id}:/~/data")]);
    assert!(
        long.stdout.starts_with("-rw") && long.stdout.contains("       7 "),
        "{long:?}"
    );

    assert_eq!(
        user.run_as(&hub, &token, &["mkdir", "laptop:/~/data/new"])
            .code,
        Some(0)
    );
    assert!(user.home.join("data/new").is_dir());
    let renamed = user.run_as(
        &hub,
        &token,
        &["rename", "laptop:/~/data/run1.txt", "/~/data/new/run1.txt"],
    );
    assert_eq!(renamed.code, Some(0), "{renamed:?}");
    assert_eq!(
        fs::read_to_string(user.home.join("data/new/run1.txt")).unwrap(),
        "results"
    );
    let not_recursive = user.run_as(&hub, &token, &["rm", "laptop:/~/data/new"]);
    assert_eq!(not_recursive.code, Some(1));
    assert!(not_recursive.stderr.contains("rm -r"), "{not_recursive:?}");
    assert_eq!(
        user.run_as(&hub, &token, &["rm", "-r", "laptop:/~/data/new"])
            .code,
        Some(0)
    );
    assert!(!user.home.join("data/new").exists());

    // Names are bytes: a non-UTF-8 name lists and round-trips exactly.
    let odd = OsString::from_vec(b"caf\xe9 \xff.dat".to_vec());
    fs::write(user.home.join("data").join(&odd), "x").unwrap();
    let listed = user.run_as(&hub, &token, &["ls", "laptop:/~/data"]);
    assert_eq!(listed.code, Some(0));
    let bytes_out = std::process::Command::new(ferry_tests::ferry_bin())
        .args(["ls", "laptop:/~/data"])
        .env_clear()
        .env("HOME", &user.home)
        .env("FERRY_TOKEN", &token)
        .env("FERRY_HUB", &hub.url)
        .env("FERRY_HUB_CA", hub.ca_cert())
        .output()
        .unwrap();
    assert_eq!(bytes_out.stdout, [odd.as_bytes(), b"\n"].concat());
    let json = user.run_as(&hub, &token, &["ls", "--json", "laptop:/~/data"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["entries"][0]["name"], "caf%E9 %FF.dat");
    let mut rm_target = OsString::from("laptop:/~/data/");
    rm_target.push(&odd);
    let removed = user.run_as(&hub, &token, &[OsString::from("rm"), rm_target]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    assert!(!user.home.join("data").join(&odd).exists());

    // The daemon enforces config-paths, whatever the hub asks.
    let outside = user.run_as(&hub, &token, &["ls", "laptop:/etc"]);
    assert_eq!(outside.code, Some(1));
    assert!(
        outside.stderr.contains("path not allowed by config-paths"),
        "{outside:?}"
    );
    let ssh = user.run_as(&hub, &token, &["mkdir", "laptop:/~/.ssh"]);
    assert_eq!(ssh.code, Some(1));
    assert!(ssh.stderr.contains("path not allowed"), "{ssh:?}");
    let key = user.run_as(&hub, &token, &["ls", "laptop:/~/.ferry"]);
    assert_eq!(key.code, Some(1), "{key:?}");

    // Another user's token cannot reach alice's endpoint.
    hub.add_user("mallory", "another long password");
    let foreign = user.run_as(&hub, &hub.token("mallory"), &["ls", &format!("{id}:/~/")]);
    assert_eq!(foreign.code, Some(1));
    assert!(foreign.stderr.contains("no endpoint"), "{foreign:?}");

    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
    let offline = user.run_as(&hub, &token, &["ls", "laptop:/~/"]);
    assert_eq!(offline.code, Some(1));
    assert!(offline.stderr.contains("not connected"), "{offline:?}");
}

#[test]
fn a_setup_key_works_once_and_wrong_keys_say_why() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (_, key) = hub.endpoint_key("alice", "server", &[]);
    let first = User::new();
    registered_id(&first.setup_with_key(&key, "server"));

    // A set-up dir is kept unless --force, and the key is not spent on it.
    let again = first.setup_with_key(&key, "server");
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already set up") && again.stderr.contains("--force"),
        "{again:?}"
    );

    let second = User::new();
    let used = second.setup_with_key(&key, "server");
    assert_eq!(used.code, Some(1), "{used:?}");
    assert_eq!(used.stderr.lines().count(), 1, "{used:?}");
    assert!(used.stderr.contains("already used"), "{used:?}");
    assert!(!second.dir.join("endpoint.toml").exists());

    let damaged = second.setup_with_key(&key[..key.len() - 10], "server");
    assert_eq!(damaged.code, Some(1));
    assert!(damaged.stderr.contains("setup key"), "{damaged:?}");
    let not_a_key = second.setup_with_key("hello", "server");
    assert_eq!(not_a_key.code, Some(1));
    assert!(
        not_a_key.stderr.contains("not a ferry setup key"),
        "{not_a_key:?}"
    );

    let (_, short_lived) = hub.endpoint_key("alice", "later", &["--expires", "1"]);
    std::thread::sleep(Duration::from_millis(2100));
    let expired = second.setup_with_key(&short_lived, "later");
    assert_eq!(expired.code, Some(1));
    assert!(expired.stderr.contains("expired"), "{expired:?}");
}

#[test]
fn a_key_whose_ca_does_not_match_the_hub_is_refused() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (_, key) = hub.endpoint_key("alice", "node", &[]);
    // Another hub's CA, as a man in the middle would present.
    let other = tempfile::tempdir().unwrap();
    let init = ferry_tests::run_command(
        std::process::Command::new(ferry_tests::hub_bin())
            .args(["init", "--url", "https://127.0.0.1:1", "--dir"])
            .arg(other.path().join("h")),
    );
    assert_eq!(init.code, Some(0));
    let user = User::new();
    let out = user.run(&[
        "-setup",
        &key,
        "--hub-ca",
        other.path().join("h/ca.crt").to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("refusing to trust"), "{out:?}");
    // The key was not spent: the right CA still works.
    registered_id(&user.setup_with_key(&key, "node"));
}

#[test]
fn daemons_reconnect_by_themselves_after_the_hub_is_killed() {
    let mut hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (_, key) = hub.endpoint_key("alice", "node", &[]);
    let user = User::new();
    registered_id(&user.setup_with_key(&key, "node"));
    let daemon = user.start_foreground(&[]);
    user.wait_hub_state("connected", LIMIT);

    hub.kill();
    let status = user.wait_hub_state("disconnected", LIMIT);
    assert!(
        status.stdout.contains("connection refused") || status.stdout.contains("closed"),
        "{status:?}"
    );
    hub.serve();
    user.wait_hub_state("connected", Duration::from_secs(90));
    // And the link carries work again.
    let ls = user.run_as(&hub, &hub.token("alice"), &["ls", "node:/~/"]);
    assert_eq!(ls.code, Some(0), "{ls:?}");

    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(LIMIT);
}

#[test]
fn a_revoked_endpoint_is_locked_out_and_status_says_why() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (id, key) = hub.endpoint_key("alice", "node", &[]);
    // Not the default dir, so every command it is told to run names it.
    let mut user = User::new();
    user.dir = user.home.join("ferry-node");
    registered_id(&user.setup_with_key(&key, "node"));
    let daemon = user.start_foreground(&[]);
    user.wait_hub_state("connected", LIMIT);

    let revoke = hub.admin(&["endpoint", "revoke", &id]);
    assert_eq!(revoke.code, Some(0), "{revoke:?}");
    let token = hub.token("alice");

    // -status says it was revoked, that the daemon gave up, and the exact
    // commands (with this -dir) that make the machine an endpoint again.
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        let status = user.run(&["-status"]);
        if status.stdout.contains("no longer dials") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never said the daemon stopped dialling: {status:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(line_value(&status.stdout, "Hub: "), Some("disconnected"));
    assert!(status.stdout.contains("revoked"), "{status:?}");
    let ls = user.run_as(&hub, &token, &["ls", "node:/~/"]);
    assert_eq!(ls.code, Some(1));
    let dir = user.dir.display();
    for command in [
        format!("ferry -stop -dir {dir}"),
        format!("ferry -setup --force --hub {} -dir {dir}", hub.url),
        format!("ferry -start -dir {dir} &"),
    ] {
        assert!(status.stdout.contains(&command), "{command}: {status:?}");
    }

    // It stops dialling: the hub refuses it no more after that, and the
    // daemon said why once. Without the fix it redials every 1-3 s.
    let refusals = |log: &str| {
        log.matches("endpoint refused").count() + log.matches("no longer admitted").count()
    };
    let before = refusals(&hub.log());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(refusals(&hub.log()), before, "{}", hub.log());
    assert_eq!(
        daemon.log().matches("not dialling again").count(),
        1,
        "{}",
        daemon.log()
    );

    // The owner sees it marked in the endpoint list.
    let search = user.run_as(&hub, &token, &["endpoint", "search", "--json"]);
    assert_eq!(search.code, Some(0), "{search:?}");
    let found: serde_json::Value = serde_json::from_str(&search.stdout).unwrap();
    assert_eq!(found[0]["id"], id.as_str(), "{found}");
    assert_eq!(found[0]["revoked"], true, "{found}");
    let search = user.run_as(&hub, &token, &["endpoint", "search"]);
    let row = search.stdout.lines().find(|l| l.contains(&id)).unwrap();
    assert!(row.contains("revoked"), "{search:?}");

    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
}

#[test]
fn owners_rename_and_delete_their_endpoints() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    hub.add_user("bob", "another horse battery");
    let (id, key) = hub.endpoint_key("alice", "laptop", &[]);
    hub.endpoint_key("alice", "cluster", &[]);
    let mut user = User::new();
    user.dir = user.home.join("ferry-laptop");
    registered_id(&user.setup_with_key(&key, "laptop"));
    let daemon = user.start_foreground(&[]);
    user.wait_hub_state("connected", LIMIT);
    let (alice, bob) = (hub.token("alice"), hub.token("bob"));
    let run = |token: &str, args: &[&str]| user.run_as(&hub, token, args);
    let one_line_error = |out: &ferry_tests::Ran| {
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        out.stderr.clone()
    };

    // Only the owner may.
    for args in [
        &["endpoint", "update", &id, "--display-name", "mine"][..],
        &["endpoint", "delete", &id],
    ] {
        let line = one_line_error(&run(&bob, args));
        assert!(line.contains("no endpoint"), "{line}");
    }

    // Renamed, it answers to the new name only.
    let out = run(
        &alice,
        &[
            "endpoint",
            "update",
            "laptop",
            "--display-name",
            "lab",
            "--json",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (doc["id"].as_str(), doc["display_name"].as_str()),
        (Some(id.as_str()), Some("lab"))
    );
    assert_eq!(run(&alice, &["ls", "lab:/~/"]).code, Some(0));
    assert_eq!(run(&alice, &["ls", "laptop:/~/"]).code, Some(1));
    let line = one_line_error(&run(
        &alice,
        &["endpoint", "update", "lab", "--display-name", "cluster"],
    ));
    assert!(line.contains("already have an endpoint named"), "{line}");

    // A task ACTIVE on it (its peer is offline) holds the deletion back,
    // and the refusal names the task.
    fs::write(user.home.join("f"), b"x").unwrap();
    let out = run(&alice, &["transfer", "lab:/~/f", "cluster:/~/f"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let task = line_value(&out.stdout, "Task ID: ").unwrap().to_string();
    let line = one_line_error(&run(&alice, &["endpoint", "delete", "lab"]));
    assert!(line.contains(&task) && line.contains("ACTIVE"), "{line}");
    assert_eq!(run(&alice, &["task", "cancel", &task]).code, Some(0));

    let out = run(&alice, &["endpoint", "delete", "lab"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("deleted"), "{out:?}");
    let search = run(&alice, &["endpoint", "search", "--json"]);
    assert!(!search.stdout.contains(&id), "{search:?}");
    assert_eq!(run(&alice, &["ls", &format!("{id}:/~/")]).code, Some(1));

    // Its certificate no longer connects: the daemon is refused as revoked
    // and stops dialling.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let status = user.run(&["-status"]);
        if status.stdout.contains("no longer dials") {
            assert!(status.stdout.contains("deleted by its owner"), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted endpoint's daemon was not refused: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The name is free again.
    let out = run(&alice, &["endpoint", "create", "--personal", "lab"]);
    assert_eq!(out.code, Some(0), "{out:?}");

    user.run(&["-stop"]);
    daemon.wait_exit(LIMIT);
}
