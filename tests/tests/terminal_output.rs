//! What ferry prints for people: names from other machines may hold
//! terminal escapes (a file called `\e]0;owned\a`, a CR that rewrites the
//! line), and none of them may reach the terminal raw. `--json` still
//! carries the exact bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, Ran, line_value};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;

/// Names a hostile colleague could leave in a shared tree.
const HOSTILE: [&[u8]; 4] = [
    b"title\x1b]0;owned\x07.txt",
    b"clear\x1b[2J\x1b[H.txt",
    b"fake\rline.txt",
    b"two\nlines.txt",
];

/// No byte a terminal obeys, but the newline that ends each line.
fn assert_inert(out: &Ran, lines: usize) {
    let raw = out.stdout.as_bytes();
    let bad: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
        .collect();
    assert!(bad.is_empty(), "control bytes {bad:?} in {out:?}");
    assert_eq!(out.stdout.lines().count(), lines, "{out:?}");
    assert!(
        !out.stderr.bytes().any(|b| b == 0x1b || b == 0x07),
        "{out:?}"
    );
}

#[test]
fn listings_and_events_escape_what_a_terminal_would_obey() {
    let lab = Lab::new();

    let data = lab.src.home.join("data");
    fs::create_dir(&data).unwrap();
    for name in HOSTILE {
        fs::write(data.join(OsString::from_vec(name.to_vec())), name).unwrap();
    }
    // A symlink is skipped and reported by name in the task's events.
    std::os::unix::fs::symlink(
        "/etc/passwd",
        data.join(OsString::from_vec(b"link\x1b[31mred\x07".to_vec())),
    )
    .unwrap();

    let ls = lab.ferry(&["ls", "src:/~/data"]);
    assert_eq!(ls.code, Some(0), "{ls:?}");
    assert_inert(&ls, HOSTILE.len() + 1);
    assert!(ls.stdout.contains("title\\x1b]0;owned\\x07.txt"), "{ls:?}");
    assert!(ls.stdout.contains("two\\nlines.txt"), "{ls:?}");
    let long = lab.ferry(&["ls", "-l", "src:/~/data"]);
    assert_eq!(long.code, Some(0), "{long:?}");
    assert_inert(&long, HOSTILE.len() + 1);

    // The exact bytes still travel in JSON.
    let json = lab.ferry(&["ls", "--json", "src:/~/data"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let names: Vec<&str> = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"two\nlines.txt"), "{names:?}");

    let submitted = lab.ferry(&["transfer", "-r", "src:/~/data", "dst:/~/copy", "--wait"]);
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let id = line_value(&submitted.stdout, "Task ID: ")
        .unwrap()
        .to_string();
    for name in HOSTILE {
        let copied = fs::read(
            lab.dst
                .home
                .join("copy")
                .join(OsString::from_vec(name.to_vec())),
        );
        assert_eq!(
            copied.unwrap(),
            name,
            "the bytes of the name travel exactly"
        );
    }
    let events = lab.ferry(&["task", "events", &id]);
    assert_eq!(events.code, Some(0), "{events:?}");
    assert!(
        events.stdout.contains("red"),
        "the skip is reported: {events:?}"
    );
    let lines = events.stdout.lines().count();
    assert_inert(&events, lines);
    let show = lab.ferry(&["task", "show", &id]);
    assert_inert(&show, show.stdout.lines().count());
    // Logs written to a pipe or a file carry no colour codes.
    assert!(!lab.hub.log().contains('\x1b'), "{}", lab.hub.log());
    let src_log = lab.src_daemon().log();
    assert!(!src_log.contains('\x1b'), "{src_log}");

    // A reader that goes away (`ferry task list | head -1`) ends the
    // command quietly: no panic, no "Broken pipe" line, exit 0.
    for args in [
        &["ls", "src:/~/data"][..],
        &["ls", "-l", "src:/~/data"][..],
        &["task", "list"][..],
        &["task", "show", &id][..],
        &["task", "events", &id][..],
        &["endpoint", "search"][..],
    ] {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let out = lab
            .src
            .ferry(args)
            .env("FERRY_TOKEN", &lab.token)
            .env("FERRY_HUB", &lab.hub.url)
            .env("FERRY_HUB_CA", lab.hub.ca_cert())
            .stdout(std::process::Stdio::from(write_end))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
