//! Choosing what a transfer moves (`--include`, `--exclude`) and how fast
//! (`--bwlimit`, and an endpoint's own `bwlimit`), as a user runs them: a
//! real hub, two real daemons on loopback, `ferry transfer`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, pattern, tree};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// The relative paths under `root`, sorted, as text (`\xNN` for bytes
/// that are not UTF-8).
fn names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = tree(root)
        .into_iter()
        .map(|(rel, _)| rel.escape_ascii().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn excluded_files_and_directories_are_not_sent_and_delete_keeps_them_at_the_destination() {
    let lab = Lab::new();
    let src = lab.src.home.join("run7");
    fs::create_dir_all(src.join("scratch/deep")).unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("data.h5"), pattern(100_000, 1)).unwrap();
    fs::write(src.join("partial.tmp"), b"half").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"r\xe9sum\xe9.tmp")), b"latin-1").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"r\xe9sum\xe9.txt")), b"latin-1").unwrap();
    fs::write(src.join("scratch/deep/big"), pattern(50_000, 2)).unwrap();
    fs::write(src.join("sub/notes.txt"), b"notes").unwrap();
    fs::write(src.join("sub/also.tmp"), b"tmp").unwrap();
    // What the destination holds already: an excluded file and directory
    // that --delete must leave, and an extra that it removes.
    let dst = lab.dst.home.join("run7");
    fs::create_dir_all(dst.join("scratch")).unwrap();
    fs::write(dst.join("mine.tmp"), b"the destination's own").unwrap();
    fs::write(dst.join("scratch/results"), b"the destination's own").unwrap();
    fs::write(dst.join("stale.txt"), b"not in the source").unwrap();

    let id = lab.transfer(&[
        "src:/~/run7",
        "dst:/~/run7",
        "-r",
        "--exclude",
        "*.tmp",
        "--exclude",
        "scratch/",
        "--delete",
    ]);
    let task = lab.wait(&id);

    assert_eq!(
        names(&dst),
        [
            "data.h5",
            "mine.tmp",
            "r\\xe9sum\\xe9.txt",
            "scratch",
            "scratch/results",
            "sub",
            "sub/notes.txt",
        ],
        "{}",
        lab.events(&id)
    );
    assert_eq!(fs::read(dst.join("data.h5")).unwrap(), pattern(100_000, 1));
    // Excluded files were never offered: the task counts only what was sent.
    assert_eq!(task["files"], 3, "{task}");
    assert_eq!(task["files_transferred"], 3, "{task}");
    // The task says how it filtered, in order, in JSON and to a person.
    assert_eq!(task["filters"].as_array().map(Vec::len), Some(2), "{task}");
    let shown = lab.ferry(&["task", "show", &id]);
    assert!(
        shown
            .stdout
            .contains("Filters:           --exclude '*.tmp' --exclude 'scratch/'"),
        "{shown:?}"
    );
    let events = lab.events(&id);
    assert!(events.contains("stale.txt"), "{events}");
    assert!(
        !events.contains("mine.tmp") && !events.contains("results"),
        "{events}"
    );
}

#[test]
fn include_then_exclude_everything_moves_only_csv_files_and_descends_only_included_directories() {
    let lab = Lab::new();
    let src = lab.src.home.join("survey");
    fs::create_dir_all(src.join("2025/raw")).unwrap();
    fs::write(src.join("summary.csv"), b"a,b\n1,2\n").unwrap();
    fs::write(src.join("README"), b"read me").unwrap();
    fs::write(src.join("2025/jan.csv"), b"c,d\n").unwrap();
    fs::write(src.join("2025/jan.json"), b"{}").unwrap();
    fs::write(src.join("2025/raw/feb.csv"), b"e,f\n").unwrap();

    // rsync's rule: `*` excludes the directories too, and an excluded
    // directory is not looked into, so only the top level's csv files go.
    let id = lab.transfer(&[
        "src:/~/survey",
        "dst:/~/top-only",
        "-r",
        "--include",
        "*.csv",
        "--exclude",
        "*",
    ]);
    lab.wait(&id);
    assert_eq!(names(&lab.dst.home.join("top-only")), ["summary.csv"]);

    // Including every directory first lets the walk reach them all.
    let id = lab.transfer(&[
        "src:/~/survey",
        "dst:/~/every-level",
        "-r",
        "--include",
        "*/",
        "--include",
        "*.csv",
        "--exclude",
        "*",
    ]);
    lab.wait(&id);
    assert_eq!(
        names(&lab.dst.home.join("every-level")),
        [
            "2025",
            "2025/jan.csv",
            "2025/raw",
            "2025/raw/feb.csv",
            "summary.csv"
        ]
    );
}

#[test]
fn filters_that_could_not_work_are_refused_before_anything_runs() {
    let lab = Lab::new();
    for (args, words) in [
        (
            vec!["src:/~/a", "dst:/~/a", "-r", "--exclude", "[abc"],
            "no closing ']'",
        ),
        (vec!["src:/~/a", "dst:/~/a", "--exclude", "*.tmp"], "add -r"),
        (
            vec!["src:/~/a", "dst:/~/a", "--bwlimit", "fast"],
            "not a rate",
        ),
        (
            vec!["src:/~/a", "dst:/~/a", "--bwlimit", "1K"],
            "lowest cap",
        ),
    ] {
        let mut all = vec!["transfer"];
        all.extend(args.iter().copied());
        let out = lab.ferry(&all);
        assert_eq!(out.code, Some(2), "{all:?}: {out:?}");
        assert!(out.stderr.contains(words), "{all:?}: {out:?}");
        assert!(!out.stdout.contains("Task ID"), "{out:?}");
    }
    let many: Vec<String> = (0..65)
        .flat_map(|i| ["--exclude".into(), format!("x{i}")])
        .collect();
    let mut all = vec!["transfer", "src:/~/a", "dst:/~/a", "-r"];
    all.extend(many.iter().map(String::as_str));
    let out = lab.ferry(&all);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("at most 64"), "{out:?}");
}

/// A capped transfer completes and says so; how close it keeps to its
/// cap is measured by `bench/bwlimit.sh`, not here (no timing asserts).
#[test]
fn a_transfer_under_a_task_cap_and_an_endpoint_cap_completes() {
    let lab = Lab::new();
    let size = 6 * 1024 * 1024 + 123;
    fs::write(lab.src.home.join("big.bin"), pattern(size, 3)).unwrap();
    // The sending endpoint's own cap, taken up without a restart.
    let toml = lab.src.dir.join("endpoint.toml");
    let mut text = fs::read_to_string(&toml).unwrap();
    text.push_str("bwlimit = \"20M\"\n");
    fs::write(&toml, text).unwrap();
    lab.src_daemon().signal(nix::sys::signal::Signal::SIGHUP);
    lab.src_daemon()
        .wait_for_log("endpoint.toml re-read: bwlimit 20M", LIMIT);

    let started = std::time::Instant::now();
    let id = lab.transfer(&["src:/~/big.bin", "dst:/~/big.bin", "--bwlimit", "2M"]);
    let task = lab.wait(&id);
    let took = started.elapsed();
    assert_eq!(task["bytes_transferred"], size as u64, "{task}");
    assert_eq!(task["bwlimit"], 2_000_000, "{task}");
    let shown = lab.ferry(&["task", "show", &id]);
    assert!(
        shown.stdout.contains("Bandwidth Limit:   2MB/s"),
        "{shown:?}"
    );
    assert_eq!(
        fs::read(lab.dst.home.join("big.bin")).unwrap(),
        pattern(size, 3)
    );
    // For the record, not asserted: 6.3 MB at 2 MB/s is about 3 s.
    eprintln!("6.3 MB under --bwlimit 2M took {took:?}");
    let events = lab.events(&id);
    assert!(events.contains("SUCCEEDED"), "{events}");
}
