//! Timers, as a user runs them: `ferry timer create transfer` on a real
//! hub with two real daemons; each run an ordinary task that moves real
//! files; a run skipped while the previous one is still ACTIVE; a hub
//! down across several due times making one catch-up run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, line_value, pattern, tree};
use serde_json::Value;
use std::fs;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// `ferry timer show ID --json`.
fn timer(lab: &Lab, id: &str) -> Value {
    let out = lab.ferry(&["timer", "show", id, "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// Polls the timer until `done` holds (bounded by [`LIMIT`]).
fn wait_timer(lab: &Lab, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + LIMIT;
    loop {
        let t = timer(lab, id);
        if done(&t) {
            return t;
        }
        assert!(Instant::now() < until, "the timer never {what}: {t:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The tasks the timer's runs made, oldest first (`ferry task list`).
fn runs_of(lab: &Lab, id: &str) -> Vec<Value> {
    let out = lab.ferry(&["task", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let tasks: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mark = format!("timer {} run ", &id[..8]);
    let mut runs: Vec<Value> = tasks
        .into_iter()
        .filter(|t| t["label"].as_str().is_some_and(|l| l.contains(&mark)))
        .collect();
    runs.sort_by_key(|t| t["created"].as_i64());
    runs
}

fn create(lab: &Lab, args: &[&str]) -> String {
    let mut all = vec!["timer", "create", "transfer"];
    all.extend_from_slice(args);
    let out = lab.ferry(&all);
    assert_eq!(out.code, Some(0), "{out:?}");
    line_value(&out.stdout, "Timer ID: ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string()
}

/// The nightly backup, every few seconds: two runs, each a task that
/// succeeds with the files at the destination, and a due time between
/// them skipped because the first run (held to 50 kB/s) was still going.
#[test]
fn a_timer_makes_its_runs_and_skips_one_that_would_overlap() {
    let lab = Lab::new();
    let data = lab.src.home.join("data");
    fs::create_dir(&data).unwrap();
    // About six seconds at the cap: longer than the interval.
    fs::write(data.join("big.bin"), pattern(300_000, 7)).unwrap();
    fs::write(data.join("notes.txt"), b"run me nightly\n").unwrap();

    let out = lab.ferry(&[
        "timer",
        "create",
        "transfer",
        "src:/~/data",
        "dst:/~/backup",
        "-r",
        "--interval",
        "3s",
        "--stop-after-runs",
        "2",
        "--bwlimit",
        "50K",
        "--label",
        "nightly",
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();

    let listed = lab.ferry(&["timer", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    for key in [
        "id",
        "interval",
        "next_run",
        "runs",
        "last_task_id",
        "status",
    ] {
        assert!(listed[0].get(key).is_some(), "no {key}: {:#}", listed[0]);
    }
    assert_eq!(listed[0]["interval"], 3);

    let t = wait_timer(&lab, &id, "finished", |t| t["status"] == "finished");
    assert_eq!(t["runs"], 2, "{t:#}");
    assert!(t["next_run"].is_null(), "{t:#}");
    assert!(t["skipped"].as_u64().unwrap() >= 1, "{t:#}");
    let events = t["events"].as_array().unwrap();
    let skipped = events
        .iter()
        .find(|e| e["code"] == "SKIPPED")
        .unwrap_or_else(|| panic!("no skip: {t:#}"));
    assert!(
        skipped["description"]
            .as_str()
            .unwrap()
            .contains("still ACTIVE"),
        "{skipped}"
    );

    let runs = runs_of(&lab, &id);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(
        runs[1]["task_id"], t["last_task_id"],
        "the newest run is the last task"
    );
    for run in &runs {
        let task = lab.wait(run["task_id"].as_str().unwrap());
        assert_eq!(task["files"], 2, "{task}");
        assert!(
            task["label"]
                .as_str()
                .unwrap()
                .starts_with("nightly (timer ")
        );
    }
    assert_eq!(tree(&lab.dst.home.join("backup")), tree(&data));

    // Text for people.
    let shown = lab.ferry(&["timer", "show", &id]);
    assert!(shown.stdout.contains("Status:       finished"), "{shown:?}");
    assert!(shown.stdout.contains("SKIPPED"), "{shown:?}");
}

/// A deleted timer makes no more runs and is gone; one that never was is
/// refused with the way to find one's timers.
#[test]
fn a_deleted_timer_stops() {
    let lab = Lab::new();
    fs::write(lab.src.home.join("a.txt"), b"a").unwrap();
    let id = create(&lab, &["src:/~/a.txt", "dst:/~/a.txt", "--interval", "3s"]);
    wait_timer(&lab, &id, "ran", |t| t["runs"] == 1);
    let out = lab.ferry(&["timer", "delete", &id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let made = runs_of(&lab, &id).len();
    for run in runs_of(&lab, &id) {
        lab.wait(run["task_id"].as_str().unwrap());
    }
    // Past a due time: nothing more.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(runs_of(&lab, &id).len(), made);
    let out = lab.ferry(&["timer", "show", &id]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("ferry timer list"), "{out:?}");
    let listed = lab.ferry(&["timer", "list", "--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "{listed:?}");

    // Bad usage is said before the hub is asked.
    for (args, words) in [
        (vec!["src:/~/a", "dst:/~/a", "--interval", "1s"], "interval"),
        (vec!["src:/~/a", "dst:/~/a"], "--interval"),
        (
            vec![
                "src:/~/a",
                "dst:/~/a",
                "--interval",
                "1h",
                "--deadline",
                "2026-12-01T00:00:00Z",
            ],
            "each run's",
        ),
    ] {
        let mut all = vec!["timer", "create", "transfer"];
        all.extend(args.iter().copied());
        let out = lab.ferry(&all);
        assert_eq!(out.code, Some(2), "{all:?}: {out:?}");
        assert!(out.stderr.contains(words), "{all:?}: {out:?}");
    }
}

/// The hub is down across several due times: when it is back, the timer
/// makes one catch-up run, is next due an interval later, and its runs
/// are still ordinary tasks that succeed.
#[test]
fn a_hub_down_across_due_times_makes_one_catch_up_run() {
    let mut lab = Lab::new();
    fs::write(lab.src.home.join("log.txt"), b"line\n").unwrap();
    let id = create(
        &lab,
        &[
            "src:/~/log.txt",
            "dst:/~/log.txt",
            "--interval",
            "4s",
            "--stop-after-runs",
            "3",
        ],
    );
    let first = wait_timer(&lab, &id, "ran", |t| t["runs"] == 1);
    // Done before the hub goes, so the run due after it is not one
    // skipped for a run still ACTIVE.
    lab.wait(first["last_task_id"].as_str().unwrap());
    lab.hub.kill();
    // Two due times or more pass while it is down.
    std::thread::sleep(Duration::from_secs(10));
    let back = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    lab.hub.serve();

    let t = wait_timer(&lab, &id, "caught up", |t| t["runs"].as_u64() >= Some(2));
    let catch_up = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["description"].as_str().unwrap().contains("catch-up"))
        .unwrap_or_else(|| panic!("no catch-up run: {t:#}"))
        .clone();
    assert!(
        catch_up["description"]
            .as_str()
            .unwrap()
            .starts_with("run 2:"),
        "{catch_up}"
    );

    let t = wait_timer(&lab, &id, "finished", |t| t["status"] == "finished");
    assert_eq!(t["runs"], 3, "{t:#}");
    let runs = runs_of(&lab, &id);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let created: Vec<i64> = runs
        .iter()
        .map(|r| r["created"].as_i64().unwrap())
        .collect();
    assert!(
        created[1] >= back - 1,
        "the catch-up run came after the restart: {created:?}"
    );
    // One catch-up run, not one per missed due time: the next run keeps an
    // interval from it (the hub's own clock, in whole seconds).
    assert!(created[2] - created[1] >= 3, "{created:?}");
    for run in &runs {
        lab.wait(run["task_id"].as_str().unwrap());
    }
    assert_eq!(fs::read(lab.dst.home.join("log.txt")).unwrap(), b"line\n");
}
