//! Work after a transfer: a destination's `[hooks.NAME]` run once a
//! task's files landed (`ferry transfer --on-success NAME`), its end and
//! last lines of output as task events; a name the destination does not
//! configure is refused at submission; and, with a real one-node Slurm
//! (`.ci/slurm.sh`), a hook that submits the analysis job, which runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The bound on waiting for a hook's event, or a Slurm job's output.
const LIMIT: Duration = Duration::from_secs(120);

/// Appends `tables` to `dst`'s endpoint.toml (before its daemon starts).
fn configure(user: &User, tables: &str) {
    fs::OpenOptions::new()
        .append(true)
        .open(user.dir.join("endpoint.toml"))
        .unwrap()
        .write_all(tables.as_bytes())
        .unwrap();
}

/// A TOML string of `text` (paths of the test's temp dirs).
fn toml_str(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Polls `ferry task events ID --json` until an event with one of
/// `codes` appears; returns it.
fn hook_event(lab: &Lab, id: &str, codes: &[&str]) -> Value {
    let start = Instant::now();
    loop {
        let events = lab.events_json(id);
        if let Some(e) = events
            .iter()
            .find(|e| codes.iter().any(|c| e["code"] == *c))
        {
            return e.clone();
        }
        assert!(
            start.elapsed() < LIMIT,
            "no {codes:?} event for task {id}: {events:?}\ndestination log:\n{}",
            lab.dst_daemon().log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write_files(home: &Path) {
    fs::create_dir_all(home.join("run7")).unwrap();
    fs::write(home.join("run7/a.dat"), b"alpha").unwrap();
    fs::write(home.join("run7/b.dat"), b"beta!").unwrap();
}

#[test]
fn a_hook_runs_after_the_files_landed_and_its_end_and_output_become_events() {
    let lab = Lab::builder()
        .prepare_dst(|dst| {
            let listing = dst.home.join("hook-saw");
            let script = format!(
                "echo task=$FERRY_TASK_ID; echo files=$FERRY_FILES bytes=$FERRY_BYTES; \
                 echo dest=$FERRY_DESTINATION_PATH; echo label=$FERRY_LABEL site=$SITE; \
                 ls \"$FERRY_DESTINATION_PATH\" > {}; echo trouble >&2; exit 3",
                listing.display()
            );
            configure(
                dst,
                &format!(
                    "[hooks.report]\ncommand = [\"/bin/sh\", \"-c\", {}]\nenv = {{ SITE = \"ci\" }}\n\
                     [hooks.slow]\ncommand = [\"sh\", \"-c\", \"echo started; sleep 317 & wait\"]\ntimeout = 1\n",
                    toml_str(&script)
                ),
            );
        })
        .start();
    write_files(&lab.src.home);

    // A name the destination does not configure: refused at submission,
    // naming the ones it does.
    let out = lab.ferry(&[
        "transfer",
        "src:/~/run7",
        "dst:/~/in",
        "-r",
        "--on-success",
        "nosuch",
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("no hook named 'nosuch'")
            && out.stderr.contains("hooks 'report', 'slow'"),
        "{out:?}"
    );
    // A name no endpoint could configure is bad usage before any request.
    let out = lab.ferry(&[
        "transfer",
        "src:/~/run7",
        "dst:/~/in",
        "-r",
        "--on-success",
        "a b",
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");

    let id = lab.transfer(&[
        "src:/~/run7",
        "dst:/~/in",
        "-r",
        "--label",
        "run7",
        "--on-success",
        "report",
    ]);
    // The task is about the data: it succeeded once the files landed,
    // whatever the hook then does.
    let task = lab.wait(&id);
    assert_eq!(task["files_transferred"], 2, "{task}");
    assert_eq!(task["on_success"], "report", "{task}");
    let shown = lab.ferry(&["task", "show", &id]).stdout;
    assert!(
        shown.contains("On Success:        hook 'report'"),
        "{shown}"
    );
    let event = hook_event(&lab, &id, &["HOOK_SUCCEEDED", "HOOK_FAILED"]);
    assert_eq!(event["code"], "HOOK_FAILED", "{event}");
    let said = event["description"].as_str().unwrap();
    let dest = lab.dst.home.join("in");
    for expected in [
        "hook 'report' exited with status 3".to_string(),
        format!("task={id}"),
        "files=2 bytes=10".to_string(),
        format!("dest={}", dest.display()),
        "label=run7 site=ci".to_string(),
        "trouble".to_string(),
    ] {
        assert!(said.contains(&expected), "{expected:?} in {said:?}");
    }
    // It ran after every file landed, as the endpoint's user.
    let saw = fs::read_to_string(lab.dst.home.join("hook-saw")).unwrap();
    assert_eq!(saw, "a.dat\nb.dat\n");
    assert!(lab.events(&id).contains("HOOK_FAILED"));

    // A hook past its timeout is killed with what it started.
    let id = lab.transfer(&["src:/~/run7", "dst:/~/in2", "-r", "--on-success", "slow"]);
    lab.wait(&id);
    let event = hook_event(&lab, &id, &["HOOK_SUCCEEDED", "HOOK_FAILED"]);
    let said = event["description"].as_str().unwrap();
    assert!(
        said.contains("hook 'slow' timed out after 1s and was killed") && said.contains("started"),
        "{event}"
    );
    let sleeping = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 317$"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        sleeping.is_empty(),
        "the hook's process lives on: {sleeping}"
    );
}

#[test]
fn a_destination_without_the_hook_fails_the_task_before_data_moves() {
    // The hub cannot check an endpoint that is offline at submission: the
    // destination does, when the attempt begins.
    let mut lab = Lab::builder().dst_offline().start();
    write_files(&lab.src.home);
    let id = lab.transfer(&["src:/~/run7", "dst:/~/in", "-r", "--on-success", "later"]);
    // A hook that cannot run refuses the start, in one line that names it.
    let toml = lab.dst.dir.join("endpoint.toml");
    let good = fs::read_to_string(&toml).unwrap();
    configure(
        &lab.dst,
        "[hooks.later]\ncommand = [\"no-such-program-of-ferrys\"]\n",
    );
    let refused = lab.dst.run(&["-start"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.trim().lines().count() == 1
            && refused.stderr.contains("[hooks.later]")
            && refused.stderr.contains("not on the daemon's PATH"),
        "{refused:?}"
    );
    fs::write(&toml, good).unwrap();
    lab.start_dst();
    let (_, events) = lab.wait_failed(&id);
    assert!(
        events.contains("no hook named 'later'") && events.contains("no hooks"),
        "{events}"
    );
    assert!(!lab.dst.home.join("in").exists(), "no data moved");
}

/// With `FERRY_TEST_SLURM` set (`eval "$(bash .ci/slurm.sh start)"`), the
/// hook submits a batch job with `sbatch`; the job lists the landed files.
/// `FERRY_REQUIRE_SLURM=1` (CI) makes a missing Slurm a failure.
#[test]
fn a_hook_submits_a_slurm_job_that_runs() {
    let conf = std::env::var("SLURM_CONF").ok();
    if std::env::var_os("FERRY_TEST_SLURM").is_none() || conf.is_none() {
        assert!(
            std::env::var("FERRY_REQUIRE_SLURM").as_deref() != Ok("1"),
            "FERRY_REQUIRE_SLURM=1 but no Slurm: run `eval \"$(bash .ci/slurm.sh start)\"` first"
        );
        ferry_tests::skip("no Slurm (eval \"$(bash .ci/slurm.sh start)\" to run it)");
        return;
    }
    let conf = conf.unwrap();
    let lab = Lab::builder()
        .prepare_dst(move |dst| {
            let marker = dst.home.join("job-saw");
            let job = format!(
                "ls \"$FERRY_DESTINATION_PATH\" > {}.part && mv {0}.part {0}",
                marker.display()
            );
            configure(
                dst,
                &format!(
                    "[hooks.analyse]\ncommand = [\"sbatch\", \"--parsable\", \"--job-name\", \"ferry-hook\", \"--output\", {}, \"--wrap\", {}]\n\
                     timeout = 60\nenv = {{ SLURM_CONF = {} }}\n",
                    toml_str(&dst.home.join("job-%j.out").display().to_string()),
                    toml_str(&job),
                    toml_str(&conf)
                ),
            );
        })
        .start();
    write_files(&lab.src.home);
    let id = lab.transfer(&["src:/~/run7", "dst:/~/in", "-r", "--on-success", "analyse"]);
    lab.wait(&id);
    let event = hook_event(&lab, &id, &["HOOK_SUCCEEDED", "HOOK_FAILED"]);
    assert_eq!(event["code"], "HOOK_SUCCEEDED", "{event}");
    let said = event["description"].as_str().unwrap();
    // `sbatch --parsable` prints the job id (and, with several clusters, `;CLUSTER`).
    let job_id = said
        .rsplit("output: ")
        .next()
        .and_then(|o| o.split(';').next())
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains("hook 'analyse' exited with status 0")
            && !job_id.is_empty()
            && job_id.bytes().all(|b| b.is_ascii_digit()),
        "{said}"
    );
    let marker = lab.dst.home.join("job-saw");
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < LIMIT,
            "job {job_id} did not run: squeue says {}",
            String::from_utf8_lossy(
                &std::process::Command::new("squeue")
                    .arg("-a")
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            )
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(fs::read_to_string(&marker).unwrap(), "a.dat\nb.dat\n");
}
