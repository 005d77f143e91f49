//! The hub's web app in a real browser: a [`Lab`] (hub, alice's `src` and
//! `dst` with their daemons) and mallory, driven by `tests/web/suite.mjs`
//! (playwright-core and Chromium) through sign-in, Endpoints, the File
//! Manager, Activity, a task's page and cancel, an endpoint's Nodes (`dst`
//! has a second machine), as alice and as mallory;
//! then the files the browser sent are checked on `dst`'s disk, and the
//! setup key the browser was shown is used by `ferry -setup`.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/web`; without
//! them the test says SKIPPED, unless `FERRY_REQUIRE_BROWSER=1` (as in CI),
//! when it fails. Screenshots of every page it visits go to
//! `target/web-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User, bin_dir, line_value, on_path, pattern, skip, tree};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The bound on the whole browser run (the suite bounds itself tighter).
const SUITE_LIMIT: Duration = Duration::from_secs(15 * 60);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// What is missing to run the browser suite here, if anything.
fn missing_browser() -> Option<String> {
    let mut missing = Vec::new();
    if !on_path("node") {
        missing.push("node is not on PATH".to_string());
    }
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let module = web_dir().join("node_modules/playwright-core");
    if !module.is_dir() {
        missing.push(format!(
            "{} is missing (npm ci in tests/web)",
            module.display()
        ));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// Files in `src`'s tree: names with a space and non-ASCII, a directory
/// two deep, sizes from empty to a few chunks.
fn make_tree(root: &Path) -> Vec<String> {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    fs::write(root.join("b.bin"), pattern(3 << 20, 7)).unwrap();
    fs::write(root.join("notes 2024.txt"), b"with a space\n").unwrap();
    fs::write(root.join("r\u{e9}sum\u{e9}.txt"), b"non-ASCII name\n").unwrap();
    fs::write(root.join("sub/empty"), b"").unwrap();
    fs::write(root.join("sub/c.txt"), pattern(70_000, 3)).unwrap();
    fs::write(root.join("sub/deeper/d.bin"), pattern(1 << 20, 11)).unwrap();
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Runs `node suite.mjs` with `envs`, bounded; (success, what it printed).
fn run_suite(envs: &[(&str, String)], log: &Path) -> (bool, String) {
    let out = fs::File::create(log).unwrap();
    let mut child = Command::new("node")
        .arg("suite.mjs")
        .current_dir(web_dir())
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + SUITE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(status) => (status.success(), printed),
        None => (false, format!("{printed}\n(killed after {SUITE_LIMIT:?})")),
    }
}

/// Prints past libtest's capture, as `skip` does: the page weight shows
/// in every run's log.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[test]
fn the_web_app_moves_files_and_keeps_users_apart() {
    let required = std::env::var("FERRY_REQUIRE_BROWSER").as_deref() == Ok("1");
    if let Some(why) = missing_browser() {
        assert!(!required, "FERRY_REQUIRE_BROWSER=1 but {why}");
        skip(&why);
        return;
    }

    let lab = Lab::new();
    lab.hub.add_user("mallory", "mallory's own password");
    let entries = make_tree(&lab.src.home.join("tree"));
    // The tree may be shared: Get link makes a link to one of its files.
    fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/tree,1,1\n").unwrap();
    assert_eq!(lab.src.run(&["-reload"]).code, Some(0));
    // Where the files land; `sub/extra` is for Delete extra files to remove.
    let arrived = lab.dst.home.join("arrived");
    fs::create_dir_all(arrived.join("sub")).unwrap();
    fs::write(arrived.join("sub/extra"), b"not in the source").unwrap();

    // `dst` is two machines (docs/nodes.md): its page lists both under Nodes.
    let (_dst2, _dst2_daemon) = lab.join_node("dst", &lab.dst, "");

    let shots = bin_dir().parent().unwrap().join("web-screenshots");
    let _ = fs::remove_dir_all(&shots);
    fs::create_dir_all(&shots).unwrap();
    let envs = [
        ("FERRY_HUB_URL", lab.hub.url.clone()),
        ("FERRY_USER", "alice".to_string()),
        ("FERRY_PASSWORD", "correct horse battery".to_string()),
        ("FERRY_OTHER_USER", "mallory".to_string()),
        ("FERRY_OTHER_PASSWORD", "mallory's own password".to_string()),
        ("FERRY_SRC", "src".to_string()),
        ("FERRY_DST", "dst".to_string()),
        ("FERRY_SRC_DIR", "/~/tree/".to_string()),
        (
            "FERRY_SRC_ENTRIES",
            serde_json::to_string(&entries).unwrap(),
        ),
        ("FERRY_DST_DIR", "/~/arrived/".to_string()),
        ("FERRY_REFUSED_DIR", "/etc/".to_string()),
        ("FERRY_LINK_ENTRY", "a.txt".to_string()),
        ("FERRY_LINK_BODY", "alpha\n".to_string()),
        ("FERRY_NEW_ENDPOINT", "web-made".to_string()),
        ("FERRY_NODES_ENDPOINT", "dst".to_string()),
        ("FERRY_NODES", r#"["primary","node-2"]"#.to_string()),
        ("FERRY_SCREENSHOTS", shots.display().to_string()),
        ("FERRY_CHROMIUM", CHROMIUM.to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ];
    let (passed, printed) = run_suite(&envs, &shots.join("suite.log"));
    println!("{printed}");
    if let Some(weight) = printed
        .lines()
        .find(|l| l.starts_with("page-weight files-first-load: "))
    {
        report(weight);
    }
    assert!(
        passed,
        "the browser suite failed (screenshots in {}):\n{printed}\nhub log:\n{}",
        shots.display(),
        lab.hub.log()
    );

    // What the browser sent arrived, byte for byte; Delete extra files
    // removed what the source does not have.
    let id = line_value(&printed, "task-id: ").expect("the suite prints task-id");
    let task = lab.show(id);
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert!(
        !arrived.join("sub/extra").exists(),
        "Delete extra files was ticked, yet dst:/~/arrived/sub/extra is still there; events:\n{}",
        lab.events(id)
    );
    assert!(
        tree(&lab.src.home.join("tree")) == tree(&arrived),
        "dst:/~/arrived/ differs from src:/~/tree/; events:\n{}",
        lab.events(id)
    );

    // The link the File Manager showed answers anyone, and the owner's
    // audit log has the read.
    let url = line_value(&printed, "link-url: ").expect("the suite prints link-url");
    let audit = lab.ferry(&["endpoint", "audit", "src", "--json"]);
    assert!(
        audit.stdout.contains("\"action\":\"link\"") && audit.stdout.contains("anonymous (link "),
        "no anonymous link read of {url} in the audit log: {audit:?}"
    );

    let canceled = line_value(&printed, "canceled-task-id: ").expect("the suite prints it");
    assert_eq!(lab.show(canceled)["status"], "CANCELED");

    // The key the Endpoints page showed sets up an endpoint for real.
    let key = line_value(&printed, "setup-key: ").expect("the suite prints setup-key");
    let machine = User::new();
    let setup = machine.setup_with_key(key, "web-made");
    assert_eq!(
        setup.code,
        Some(0),
        "ferry -setup with the page's key: {setup:?}"
    );
}
