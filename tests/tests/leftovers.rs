//! Nothing left behind, parents made: a transfer's temporary files
//! (`.ferry.NAME.TASK.part`) never stand in the way of the file they are
//! for, never outlive a task that is over, and never show in a listing;
//! a file lands where `cp` would put it, making the missing directories
//! above it.
//!
//! A real hub and two real daemons on loopback. Data connections to `dst`
//! go through a fault proxy (as in `faults_network`), so a test can slow a
//! transfer down and act while it is under way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::fault_proxy::{Direction, Fault};
use ferry_tests::{Lab, User, pattern, wait_until};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// A hub with alice's `src` and `dst`; `dst` receives with umask 027, and
/// data connections to it pass a proxy in front of its data listener.
fn lab() -> Lab {
    lab_with_dst(|_| {})
}

/// The same lab, its destination prepared by `prepare` before its daemon
/// starts (its config-paths, its directories).
fn lab_with_dst(prepare: impl FnOnce(&User) + 'static) -> Lab {
    Lab::builder()
        .umask("027")
        .proxy_data()
        .prepare_dst(prepare)
        .start()
}

/// Slows data down (a pause per 64 KiB read: a few MiB a second), so a
/// large file is still arriving when the test acts.
fn slow_down(lab: &Lab) {
    lab.proxy().set(Fault::Delay(Duration::from_millis(10)));
}

/// `.ferry.NAME.TASK.part`: ferry's temporary name for NAME.
fn is_temp(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b".ferry.") && name.ends_with(b".part")
}

/// Every temporary file under `root`, at any depth.
fn temps(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            let kind = entry.file_type().unwrap();
            if is_temp(&entry.file_name()) {
                found.push(entry.path());
            } else if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    found
}

/// Waits until a temporary file exists directly in `dir`.
fn wait_for_temp(dir: &Path) -> PathBuf {
    let mut found = None;
    wait_until(LIMIT, "a temporary file at the destination", || {
        found = fs::read_dir(dir).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .find(|e| is_temp(&e.file_name()))
                .map(|e| e.path())
        });
        found.is_some()
    });
    found.unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_file_sent_to_the_top_of_a_home_directory_arrives() {
    let lab = lab();
    let content = pattern(2 * CHUNK + 11, 1);
    fs::write(lab.src.home.join("x"), &content).unwrap();
    let id = lab.transfer(&["src:/~/x", "dst:/~/x"]);
    lab.wait(&id);
    assert_eq!(fs::read(lab.dst.home.join("x")).unwrap(), content);
    // Into the home as a directory, too.
    fs::write(lab.src.home.join("y"), b"why").unwrap();
    lab.wait(&lab.transfer(&["src:/~/y", "dst:/~/"]));
    assert_eq!(fs::read(lab.dst.home.join("y")).unwrap(), b"why");
    assert_eq!(temps(&lab.dst.home), Vec::<PathBuf>::new());
    // The exemption is the temporary's alone: a real dot-file of that
    // shape at the top of the home stays out of reach.
    fs::write(lab.dst.home.join(".ferry.mine.0000.part"), b"private").unwrap();
    let listing = lab.ferry(&["ls", "dst:/~/.ferry.mine.0000.part"]);
    assert_eq!(listing.code, Some(1), "{listing:?}");
    let id = lab.transfer(&["dst:/~/.ferry.mine.0000.part", "src:/~/stolen"]);
    let (_, events) = lab.wait_failed(&id);
    assert!(events.contains("dot-entries"), "{events}");
    assert!(!lab.src.home.join("stolen").exists());
}

#[test]
fn a_file_into_a_missing_directory_tree_makes_the_parents() {
    let lab = lab();
    fs::write(lab.src.home.join("s2.txt"), b"second").unwrap();
    let id = lab.transfer(&["src:/~/s2.txt", "dst:/~/new/deeper/s2.txt"]);
    lab.wait(&id);
    let home = &lab.dst.home;
    assert_eq!(fs::read(home.join("new/deeper/s2.txt")).unwrap(), b"second");
    // Made as the mover makes directories: the receiving umask (027), the
    // owner keeping full access.
    assert_eq!(mode_of(&home.join("new")), 0o750);
    assert_eq!(mode_of(&home.join("new/deeper")), 0o750);

    // A tree, below two directories that do not exist yet.
    let tree = lab.src.home.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a"), b"a").unwrap();
    fs::write(tree.join("sub/b"), b"b").unwrap();
    let id = lab.transfer(&["-r", "src:/~/tree", "dst:/~/made/up/tree"]);
    lab.wait(&id);
    assert_eq!(fs::read(home.join("made/up/tree/a")).unwrap(), b"a");
    assert_eq!(fs::read(home.join("made/up/tree/sub/b")).unwrap(), b"b");
    assert_eq!(mode_of(&home.join("made")), 0o750);
    assert_eq!(mode_of(&home.join("made/up")), 0o750);
    assert_eq!(temps(home), Vec::<PathBuf>::new());
}

#[test]
fn a_file_onto_an_existing_directory_lands_inside_it() {
    let lab = lab_with_dst(|dst| {
        fs::create_dir_all(dst.home.join("inbox")).unwrap();
        fs::create_dir_all(dst.home.join("clash/g.txt")).unwrap();
        fs::create_dir_all(dst.home.join("t/b")).unwrap();
    });
    fs::write(lab.src.home.join("f.txt"), b"into the directory").unwrap();
    lab.wait(&lab.transfer(&["src:/~/f.txt", "dst:/~/inbox"]));
    let home = &lab.dst.home;
    assert_eq!(
        fs::read(home.join("inbox/f.txt")).unwrap(),
        b"into the directory",
        "as `cp f.txt inbox` does"
    );
    assert!(home.join("inbox").is_dir());

    // Inside it a directory has the file's name: refused before anything
    // is written, in one line that names it.
    fs::write(lab.src.home.join("g.txt"), b"g").unwrap();
    let id = lab.transfer(&["src:/~/g.txt", "dst:/~/clash"]);
    let (task, events) = lab.wait_failed(&id);
    assert!(
        events.contains("clash/g.txt") && events.contains("directory"),
        "{events}"
    );
    assert!(home.join("clash/g.txt").is_dir(), "{task}");

    // In a tree: a file where the destination has a directory.
    let t = lab.src.home.join("t");
    fs::create_dir_all(&t).unwrap();
    fs::write(t.join("a"), b"a").unwrap();
    fs::write(t.join("b"), b"b").unwrap();
    let id = lab.transfer(&["-r", "src:/~/t", "dst:/~/t"]);
    let (_, events) = lab.wait_failed(&id);
    assert!(
        events.contains("t/b") && events.contains("directory"),
        "{events}"
    );
    assert!(home.join("t/b").is_dir());
    assert_eq!(temps(home), Vec::<PathBuf>::new());
}

#[test]
fn a_canceled_transfer_of_a_large_file_leaves_no_temporary() {
    let lab = lab_with_dst(|dst| fs::create_dir_all(dst.home.join("in")).unwrap());
    fs::write(lab.src.home.join("big.bin"), pattern(50 * CHUNK, 7)).unwrap();
    slow_down(&lab);
    let id = lab.transfer(&["src:/~/big.bin", "dst:/~/in/big.bin"]);
    let inbox = lab.dst.home.join("in");
    let temp = wait_for_temp(&inbox);
    wait_until(LIMIT, "8 MiB on their way", || {
        lab.proxy().forwarded(Direction::Upstream) >= 8 * MIB
    });
    assert!(temp.exists());
    let out = lab.ferry(&["task", "cancel", &id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    wait_until(LIMIT, "the temporary file removed", || !temp.exists());
    wait_until(LIMIT, "the task journal removed", || {
        !lab.journal(&id).exists()
    });
    assert_eq!(lab.show(&id)["status"], "CANCELED");
    assert!(!inbox.join("big.bin").exists());
    assert_eq!(temps(&lab.dst.home), Vec::<PathBuf>::new());
    lab.dst_daemon()
        .wait_for_log("temporary files removed", LIMIT);
}

#[test]
fn a_fatal_refusal_leaves_no_temporary() {
    let lab = lab_with_dst(|dst| {
        fs::create_dir_all(dst.home.join("t/ro")).unwrap();
        fs::write(dst.dir.join("config-paths"), "~/,0,1\n~/t/ro,0,0\n").unwrap();
    });
    let t = lab.src.home.join("t");
    fs::create_dir_all(t.join("ro")).unwrap();
    // Sorted first, so its temporary exists when the refusal comes.
    fs::write(t.join("a-big.bin"), pattern(20 * CHUNK, 3)).unwrap();
    fs::write(t.join("ro/x"), b"refused").unwrap();
    slow_down(&lab);
    let id = lab.transfer(&["-r", "src:/~/t", "dst:/~/t"]);
    let (_, events) = lab.wait_failed(&id);
    assert!(events.contains("read-only"), "{events}");
    wait_until(LIMIT, "no temporary file left", || {
        temps(&lab.dst.home).is_empty()
    });
    wait_until(LIMIT, "the task journal removed", || {
        !lab.journal(&id).exists()
    });
    assert!(!lab.dst.home.join("t/ro/x").exists());
    lab.dst_daemon()
        .wait_for_log("temporary files removed", LIMIT);
}

#[test]
fn ferry_ls_does_not_show_a_temporary_of_a_running_transfer() {
    let lab = lab_with_dst(|dst| {
        fs::create_dir_all(dst.home.join("in")).unwrap();
        fs::write(dst.home.join("in/kept.txt"), b"kept").unwrap();
    });
    fs::write(lab.src.home.join("big.bin"), pattern(50 * CHUNK, 5)).unwrap();
    slow_down(&lab);
    let id = lab.transfer(&["src:/~/big.bin", "dst:/~/in/big.bin"]);
    let temp = wait_for_temp(&lab.dst.home.join("in"));
    let plain = lab.ferry(&["ls", "dst:/~/in"]);
    let long = lab.ferry(&["ls", "-l", "dst:/~/in"]);
    let json = lab.ferry(&["ls", "--json", "dst:/~/in"]);
    assert!(temp.exists(), "the temporary file was there all along");
    for out in [&plain, &long, &json] {
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("kept.txt"), "{out:?}");
        assert!(!out.stdout.contains(".ferry."), "{out:?}");
    }
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(lab.ferry(&["task", "cancel", &id]).code, Some(0));
    wait_until(LIMIT, "the temporary file removed", || !temp.exists());
}
