//! Transfers as a user runs them: a real hub, two real endpoint daemons on
//! loopback, `ferry transfer`, and every way the machines around a transfer
//! can fail under it (kill -9 of either daemon or the hub, a corrupted
//! partial file, a full disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, pattern, tree, wait_until};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 4 * 1024 * 1024;

fn no_temp_files(root: &Path) -> bool {
    tree(root).iter().all(|(p, _)| {
        !Path::new(std::ffi::OsStr::from_bytes(p))
            .file_name()
            .unwrap()
            .as_bytes()
            .starts_with(b".ferry.")
    })
}

/// Waits until the destination has begun a file (its temporary exists).
fn wait_for_temp(dir: &Path) -> PathBuf {
    let mut found = None;
    wait_until(LIMIT, "a temporary file at the destination", || {
        found = fs::read_dir(dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.file_name().unwrap().as_bytes().starts_with(b".ferry."))
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_tree_with_hostile_names_and_chunk_boundary_sizes_arrives_byte_for_byte() {
    let lab = Lab::new();
    let src = lab.src.home.join("data");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for (i, size) in [0, 1, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7]
        .into_iter()
        .enumerate()
    {
        fs::write(src.join(format!("f{size}")), pattern(size, i as u32)).unwrap();
    }
    for name in [
        &b"caf\xe9 \xff"[..],
        b"new\nline",
        b"-rf",
        b" lead and trail ",
        b"%41%",
        b"\\back",
    ] {
        fs::write(src.join("a").join(OsString::from_vec(name.to_vec())), name).unwrap();
    }
    // 30 levels deep, and an empty directory.
    let mut deep = src.join("deep");
    for level in 0..30 {
        deep = deep.join(format!("d{level}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"30 levels down").unwrap();
    fs::create_dir(src.join("empty")).unwrap();
    // Never followed, never recreated, never opened: reported as skipped.
    std::os::unix::fs::symlink("/etc/passwd", src.join("a/link-out")).unwrap();
    std::os::unix::fs::symlink("b", src.join("a/link-in")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();

    let id = lab.transfer(&[
        "-r",
        "src:/~/data",
        "dst:/~/copy",
        "--label",
        "hostile tree",
    ]);
    let task = lab.wait(&id);
    assert_eq!(task["status"], "SUCCEEDED");
    assert_eq!(task["files"], 14);
    assert_eq!(task["files_transferred"], 14);

    let copy = lab.dst.home.join("copy");
    let mut expected = tree(&src);
    expected.retain(|(p, _)| !p.ends_with(b"link-out") && !p.ends_with(b"link-in") && p != b"fifo");
    assert_eq!(tree(&copy), expected);
    assert!(no_temp_files(&copy));
    let events = lab.events(&id);
    assert_eq!(events.matches("SKIPPED").count(), 3, "{events}");
    assert!(
        !copy.join("a/link-out").exists() && fs::symlink_metadata(copy.join("a/link-in")).is_err()
    );

    // A re-run at checksum level sends nothing and changes nothing.
    let again = lab.transfer(&[
        "-r",
        "--sync-level",
        "checksum",
        "src:/~/data",
        "dst:/~/copy",
    ]);
    let task = lab.wait(&again);
    assert_eq!(
        (
            task["files_transferred"].as_u64(),
            task["files_skipped"].as_u64()
        ),
        (Some(0), Some(14))
    );
    assert_eq!(tree(&copy), expected);
}

#[test]
fn sync_levels_delete_and_single_files() {
    let lab = Lab::new();
    let src = lab.src.home.join("d");
    let dst = lab.dst.home.join("d");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("same-size"), b"AAAA").unwrap();
    fs::write(dst.join("same-size"), b"BBBB").unwrap();
    fs::write(src.join("new"), b"new").unwrap();
    fs::write(dst.join("stale"), b"only at the destination").unwrap();

    let t = lab.wait(&lab.transfer(&["-r", "--sync-level", "size", "src:/~/d", "dst:/~/d"]));
    assert_eq!(
        (t["files_transferred"].as_u64(), t["files_skipped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        fs::read(dst.join("same-size")).unwrap(),
        b"BBBB",
        "size level keeps a same-size file"
    );
    assert!(dst.join("stale").exists(), "no --delete: extras stay");

    let t = lab.wait(&lab.transfer(&[
        "-r",
        "--sync-level",
        "checksum",
        "--delete",
        "src:/~/d",
        "dst:/~/d",
    ]));
    assert_eq!(t["files_transferred"].as_u64(), Some(1));
    assert_eq!(fs::read(dst.join("same-size")).unwrap(), b"AAAA");
    assert!(
        !dst.join("stale").exists(),
        "--delete removes what the source lacks"
    );

    // A single file, into a directory, keeping mtime and mode.
    fs::write(lab.src.home.join("one.txt"), b"one").unwrap();
    fs::set_permissions(
        lab.src.home.join("one.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    lab.wait(&lab.transfer(&["src:/~/one.txt", "dst:/~/d/"]));
    let (a, b) = (
        fs::metadata(lab.src.home.join("one.txt")).unwrap(),
        fs::metadata(dst.join("one.txt")).unwrap(),
    );
    assert_eq!(a.modified().unwrap(), b.modified().unwrap());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&b.permissions()) & 0o777,
        0o600
    );
}

/// Runs a task that must fail, and returns its fatal error after
/// checking that `ferry task wait` and the task's last event say the same.
fn fails(lab: &Lab, args: &[&str]) -> String {
    let id = lab.transfer(args);
    let out = lab.ferry(&["task", "wait", &id, "--timeout", "60"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let task = lab.show(&id);
    assert_eq!(task["status"], "FAILED", "{task}");
    let error = task["fatal_error"].as_str().unwrap().to_string();
    assert!(out.stderr.contains(&error), "{out:?}");
    let events = lab.events(&id);
    let last = events.lines().last().unwrap_or_default();
    assert!(
        last.contains("FAILED") && last.ends_with(&error),
        "{events}"
    );
    error
}

#[test]
fn a_refused_item_names_the_endpoint_that_refused_it_and_why() {
    let lab = Lab::new();
    let src_home = lab.src.home.display();
    fs::write(lab.src.home.join("one.txt"), b"one").unwrap();

    // (a) A missing source path: the source says so, and as the task's only
    // item, leaving it out would leave nothing, so that is not advised.
    let error = fails(&lab, &["src:/~/missing", "dst:/~/copy"]);
    assert_eq!(
        error,
        format!("'src' (the source) cannot read {src_home}/missing: no such file or directory")
    );
    let error = fails(&lab, &["-r", "src:/~/missing-dir", "dst:/~/copy"]);
    assert!(
        error.starts_with("'src' (the source) cannot read ")
            && !error.contains("--skip-source-errors"),
        "{error}"
    );

    // (b) A source path outside the source's config-paths.
    let error = fails(&lab, &["src:/etc/passwd", "dst:/~/passwd"]);
    assert_eq!(
        error,
        "'src' (the source) refuses /etc/passwd: it is outside the paths this endpoint shares (no config-paths line covers it)"
    );
    assert!(!lab.dst.home.join("passwd").exists());

    // (c) A destination path outside the destination's config-paths:
    // nothing is written, and the destination is named.
    let outside = Path::new("/tmp/not-allowed-by-config-paths");
    let error = fails(
        &lab,
        &["src:/~/one.txt", "dst:/tmp/not-allowed-by-config-paths"],
    );
    assert_eq!(
        error,
        "'dst' (the destination) refuses /tmp/not-allowed-by-config-paths: it is outside the paths this endpoint shares (no config-paths line covers it)"
    );
    assert!(!outside.exists());
}

#[test]
fn delete_reports_every_entry_it_removes() {
    let lab = Lab::new();
    let src = lab.src.home.join("d");
    let dst = lab.dst.home.join("d");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("kept"), b"kept").unwrap();
    fs::create_dir_all(dst.join("old/deeper")).unwrap();
    fs::write(dst.join("stale"), b"only at the destination").unwrap();
    fs::write(dst.join("old/deeper/f"), b"only at the destination").unwrap();

    let id = lab.transfer(&["-r", "--delete", "src:/~/d", "dst:/~/d"]);
    lab.wait(&id);
    let out = lab.ferry(&["task", "events", &id, "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut deleted: Vec<PathBuf> = events
        .iter()
        .filter(|e| e["code"] == "DELETED")
        .map(|e| {
            let description = e["description"].as_str().unwrap();
            let path = description.strip_suffix(": not at the source, removed (--delete)");
            PathBuf::from(path.unwrap_or(description))
        })
        .collect();
    deleted.sort();
    let gone = ["old", "old/deeper", "old/deeper/f", "stale"].map(|rel| dst.join(rel));
    assert_eq!(deleted, gone, "{events:?}");
    assert!(gone.iter().all(|p| !p.exists()));
    let text = lab.events(&id);
    assert_eq!(text.matches(" DELETED ").count(), 4, "{text}");
    assert!(
        text.contains("4 removed (--delete)"),
        "the end counts them: {text}"
    );
    assert_eq!(fs::read(dst.join("kept")).unwrap(), b"kept");
}

/// The dataset for the crash tests: one large file, some small ones.
fn crash_dataset(lab: &Lab) -> PathBuf {
    let src = lab.src.home.join("big");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("large.bin"), pattern(96 * CHUNK + 12_345, 9)).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("small-{i}")),
            pattern(10_000 + i, i as u32),
        )
        .unwrap();
    }
    src
}

/// The task's counters count every file and byte of `src` once, however
/// many attempts it took: what an earlier attempt committed counts as
/// transferred, not as skipped (a file the crash left committed but not
/// yet journaled is found in place and skipped: it still counts once).
fn assert_counted_once(task: &serde_json::Value, src: &Path) {
    let (files, bytes) = tree(src)
        .iter()
        .filter_map(|(_, content)| content.as_ref())
        .fold((0u64, 0u64), |(n, b), c| (n + 1, b + c.len() as u64));
    let n = |key: &str| {
        task[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {task}"))
    };
    assert_eq!(n("files"), files, "{task}");
    assert_eq!(n("files_transferred") + n("files_skipped"), files, "{task}");
    assert!(n("files_transferred") > 0, "{task}");
    assert_eq!(n("bytes"), bytes, "{task}");
    assert_eq!(n("bytes_transferred") + n("bytes_skipped"), bytes, "{task}");
    assert_eq!(task["walk_done"], true, "{task}");
}

#[test]
fn kill_9_of_the_destination_then_restart_gives_an_identical_tree() {
    let mut lab = Lab::new();
    let src = crash_dataset(&lab);
    let id = lab.transfer(&["-r", "src:/~/big", "dst:/~/big"]);
    wait_for_temp(&lab.dst.home.join("big"));
    lab.kill_dst();
    // Nothing stands under a real name half-written.
    let copy = lab.dst.home.join("big");
    if let Ok(data) = fs::read(copy.join("large.bin")) {
        assert_eq!(data, fs::read(src.join("large.bin")).unwrap());
    }
    lab.start_dst();
    let task = lab.wait(&id);
    assert!(task["faults"].as_u64().unwrap() >= 1, "{task}");
    assert_eq!(tree(&copy), tree(&src));
    assert!(no_temp_files(&copy));
    assert_counted_once(&task, &src);
}

#[test]
fn kill_9_of_the_source_then_restart_gives_an_identical_tree() {
    let mut lab = Lab::new();
    let src = crash_dataset(&lab);
    let id = lab.transfer(&["-r", "src:/~/big", "dst:/~/big"]);
    wait_for_temp(&lab.dst.home.join("big"));
    lab.kill_src();
    lab.start_src();
    let task = lab.wait(&id);
    let copy = lab.dst.home.join("big");
    assert_eq!(tree(&copy), tree(&src));
    assert!(no_temp_files(&copy));
    assert_counted_once(&task, &src);
}

#[test]
fn kill_9_of_the_hub_mid_task_then_restart_finishes_the_task() {
    let mut lab = Lab::new();
    let src = crash_dataset(&lab);
    let id = lab.transfer(&["-r", "src:/~/big", "dst:/~/big"]);
    wait_for_temp(&lab.dst.home.join("big"));
    lab.hub.kill();
    lab.hub.serve();
    let task = lab.wait(&id);
    assert_eq!(tree(&lab.dst.home.join("big")), tree(&src));
    assert_counted_once(&task, &src);
}

#[test]
fn a_corrupted_partial_file_is_detected_on_resume() {
    let mut lab = Lab::new();
    let src = lab.src.home.join("c");
    fs::create_dir_all(&src).unwrap();
    let content = pattern(48 * CHUNK, 3);
    fs::write(src.join("large.bin"), &content).unwrap();
    // Capped so the crash lands mid-file however fast this machine is.
    let id = lab.transfer(&["-r", "--bwlimit", "40M", "src:/~/c", "dst:/~/c"]);
    let temp = wait_for_temp(&lab.dst.home.join("c"));
    // Crash once the journal vouches for some chunks of the partial file.
    let journal = lab.dst.dir.join("state").join(format!("{id}.journal"));
    // (`B` lines: the task hashes with BLAKE3, the default.)
    wait_until(LIMIT, "journaled chunks", || {
        fs::read_to_string(&journal).is_ok_and(|j| j.lines().any(|l| l.starts_with("B ")))
    });
    lab.kill_dst();
    // The partial file is kept across the crash (its journal vouches for
    // some chunks); flip bytes in every chunk already on disk.
    assert!(temp.exists(), "the partial file survives a kill -9");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&temp).unwrap();
        for i in 0..48u64 {
            f.write_all_at(b"corruption", i * CHUNK as u64 + 100)
                .unwrap();
        }
    }
    lab.start_dst();
    lab.wait(&id);
    assert_eq!(fs::read(lab.dst.home.join("c/large.bin")).unwrap(), content);
    // Found by re-hashing the journaled chunks on resume, not only by the
    // final digest (which would also catch it, after sending the file twice).
    let log = lab.dst_daemon().log();
    assert!(log.contains("no longer match"), "{log}");
}

#[test]
fn a_full_destination_disk_is_a_clear_fault_and_leaves_no_file_under_its_name() {
    if !ferry_tests::is_root() {
        ferry_tests::skip("mounting a small tmpfs needs root");
        return;
    }
    let lab = Lab::new();
    let small = lab.dst.home.join("small");
    fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&small)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        ferry_tests::skip("cannot mount a tmpfs here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(small.clone());
    fs::write(lab.src.home.join("too-big.bin"), pattern(5 * CHUNK, 1)).unwrap();
    let id = lab.transfer(&["src:/~/too-big.bin", "dst:/~/small/too-big.bin"]);
    wait_until(LIMIT, "a disk-full fault", || {
        lab.events(&id).contains("disk is full")
    });
    assert_eq!(
        lab.show(&id)["status"],
        "ACTIVE",
        "a full disk waits for space, it does not fail the task"
    );
    assert!(
        !small.join("too-big.bin").exists(),
        "no file under its final name"
    );
    assert_eq!(lab.ferry(&["task", "cancel", &id]).code, Some(0));
}

#[test]
fn a_file_over_4_gib_arrives_whole_and_sparse_content_identical() {
    let lab = Lab::new();
    let src = lab.src.home.join("huge");
    fs::create_dir(&src).unwrap();
    // Mostly a hole, with data at the start, across the 4 GiB line and at the end.
    let size = (4u64 << 30) + 3 * 1024 * 1024 + 17;
    let f = fs::File::create(src.join("sparse.bin")).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    for offset in [0, (4u64 << 30) - 10, size - 100] {
        f.write_all_at(&pattern(100, u32::from(offset as u8)), offset)
            .unwrap();
    }
    drop(f);
    let id = lab.transfer(&["-r", "--streams", "4", "src:/~/huge", "dst:/~/huge"]);
    let task = lab.wait(&id);
    assert_eq!(task["bytes_transferred"].as_u64(), Some(size));
    let (a, b) = (src.join("sparse.bin"), lab.dst.home.join("huge/sparse.bin"));
    assert_eq!(fs::metadata(&b).unwrap().len(), size);
    let (fa, fb) = (fs::File::open(&a).unwrap(), fs::File::open(&b).unwrap());
    let mut buf_a = vec![0u8; 1 << 20];
    let mut buf_b = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(1 << 20) as usize;
        fa.read_exact_at(&mut buf_a[..n], offset).unwrap();
        fb.read_exact_at(&mut buf_b[..n], offset).unwrap();
        assert!(
            buf_a[..n] == buf_b[..n],
            "content differs near offset {offset}"
        );
        offset += n as u64;
    }
    // Zero chunks were left as holes, not written out.
    use std::os::unix::fs::MetadataExt;
    assert!(
        fs::metadata(&b).unwrap().blocks() * 512 < 64 << 20,
        "the copy should stay sparse"
    );
}

/// A destination under `ulimit -n 128` receives thousands of small files:
/// it holds a bounded number of descriptors, not one per file the source
/// has on offer (its window is thousands of files).
#[test]
fn many_small_files_arrive_at_a_destination_under_a_low_open_files_limit() {
    let mut lab = Lab::builder().dst_offline().start();
    let src = lab.src.home.join("many");
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(format!("f{f}")), pattern(4096, d * 1000 + f)).unwrap();
        }
    }
    lab.start_dst_with_open_files_limit(128);
    let limits = fs::read_to_string(format!("/proc/{}/limits", lab.dst_daemon().pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>(),
        ["128", "128"],
        "{open_files}"
    );
    let id = lab.transfer(&["-r", "src:/~/many", "dst:/~/many"]);
    let task = lab.wait(&id);
    assert_eq!(task["files_transferred"], 2000, "{task}");
    let copy = lab.dst.home.join("many");
    assert_eq!(tree(&copy), tree(&src));
    assert!(no_temp_files(&copy));
}
