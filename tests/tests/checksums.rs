//! Choosing how transfers are verified, as a user does: BLAKE3 by
//! default, SHA-256 with `--checksum-algorithm sha256` (a site whose
//! policy names it). Either way every byte is verified, `ferry task show`
//! says which algorithm a task uses, and a re-run at checksum level
//! compares contents with the task's own algorithm and sends nothing
//! when they match.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, pattern, tree};
use std::fs;

const CHUNK: usize = 4 * 1024 * 1024;

#[test]
fn a_tree_moves_with_either_checksum_algorithm_and_a_checksum_rerun_sends_nothing() {
    let lab = Lab::new();
    let src = lab.src.home.join("data");
    fs::create_dir_all(src.join("sub")).unwrap();
    for (i, size) in [0, 1, CHUNK, 2 * CHUNK + 7].into_iter().enumerate() {
        fs::write(src.join(format!("f{size}")), pattern(size, i as u32)).unwrap();
    }
    fs::write(src.join("sub/notes.txt"), b"run 7: calibrated").unwrap();
    let files = 5;

    // (what `task show` names, the flags that choose it)
    for (algorithm, flags) in [
        ("blake3", &[][..]),
        ("sha256", &["--checksum-algorithm", "sha256"][..]),
        ("blake3", &["--checksum-algorithm", "blake3"][..]),
    ] {
        let copy = format!("copy-{algorithm}-{}", flags.len());
        let destination = format!("dst:/~/{copy}");
        let mut args = vec!["-r", "src:/~/data", destination.as_str()];
        args.extend_from_slice(flags);
        let id = lab.transfer(&args);
        let task = lab.wait(&id);
        assert_eq!(task["checksum_algorithm"], algorithm, "{task}");
        assert_eq!(task["files_transferred"], files, "{task}");
        assert_eq!(tree(&lab.dst.home.join(&copy)), tree(&src));
        let shown = lab.ferry(&["task", "show", &id]);
        assert!(
            shown
                .stdout
                .lines()
                .any(|l| l.starts_with("Checksum:") && l.ends_with(algorithm)),
            "{shown:?}"
        );

        // Again at checksum level: each file is hashed on both ends with
        // the task's algorithm, found equal, and not sent.
        args.extend_from_slice(&["--sync-level", "checksum"]);
        let again = lab.transfer(&args);
        let task = lab.wait(&again);
        assert_eq!(task["checksum_algorithm"], algorithm, "{task}");
        assert_eq!(
            (
                task["files_transferred"].as_u64(),
                task["files_skipped"].as_u64(),
                task["bytes_transferred"].as_u64()
            ),
            (Some(0), Some(files), Some(0)),
            "{task}"
        );
    }

    // One file changed behind the same size: the checksum re-run by
    // SHA-256 finds and sends just that one.
    let copy = lab.dst.home.join("copy-sha256-2");
    fs::write(copy.join("sub/notes.txt"), b"run 7: CALIBRATED").unwrap();
    let again = lab.transfer(&[
        "-r",
        "src:/~/data",
        "dst:/~/copy-sha256-2",
        "--sync-level",
        "checksum",
        "--checksum-algorithm",
        "sha256",
    ]);
    let task = lab.wait(&again);
    assert_eq!(
        (
            task["files_transferred"].as_u64(),
            task["files_skipped"].as_u64()
        ),
        (Some(1), Some(files - 1)),
        "{task}"
    );
    assert_eq!(tree(&copy), tree(&src));

    // A misspelt algorithm is a usage error that lists the choices.
    let out = lab.ferry(&[
        "transfer",
        "src:/~/data",
        "dst:/~/x",
        "-r",
        "--checksum-algorithm",
        "md5",
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("sha256") && out.stderr.contains("blake3"),
        "{out:?}"
    );
}
