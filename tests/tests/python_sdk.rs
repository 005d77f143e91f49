//! The Python SDK (`python/`, module `ferry_sdk`) against a real hub and
//! real daemons: `python3 -m pytest python/tests` runs with a [`Lab`]'s
//! hub URL, CA, alice's token, password and a confidential client of
//! hers, and both endpoints' ids and home directories in its environment.
//! The suite logs in through PKCE (driving the hub's login and consent
//! forms as a browser would) and with client credentials, lists and
//! changes files, moves real files and checks their bytes on disk, and
//! runs the example notebook `python/examples/transfer.ipynb` headless.
//!
//! The SDK is taken from the source tree (`PYTHONPATH=python`), so the
//! test needs only pytest, requests, nbclient, nbformat and ipykernel.
//! Without them it says SKIPPED, unless `FERRY_REQUIRE_PYTHON_SDK=1` (as
//! in CI), when it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, User, skip};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the suite and the notebook import besides the SDK itself.
const MODULES: &str = "pytest, requests, nbclient, nbformat, ipykernel";

/// Why the suite cannot run here, if it cannot.
fn missing_python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", &format!("import {MODULES}")])
        .output();
    match out {
        Err(e) => Some(format!("no python3 ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 lacks a module the SDK's tests need (pip install pytest requests nbclient nbformat ipykernel): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )),
        Ok(_) => None,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A hook on `dst` that leaves the task's label in `hook-ran`, so the
/// suite sees `on_success` travel.
fn add_hook(dst: &User) {
    let script = format!(
        "printf %s \"$FERRY_LABEL\" > {}",
        dst.home.join("hook-ran").display()
    );
    fs::OpenOptions::new()
        .append(true)
        .open(dst.dir.join("endpoint.toml"))
        .unwrap()
        .write_all(
            format!(
                "[hooks.mark]\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
                Value::String(script)
            )
            .as_bytes(),
        )
        .unwrap();
}

#[test]
fn the_python_sdk_logs_in_browses_and_moves_files_against_a_real_hub() {
    let required = std::env::var("FERRY_REQUIRE_PYTHON_SDK").as_deref() == Ok("1");
    if let Some(why) = missing_python() {
        assert!(!required, "FERRY_REQUIRE_PYTHON_SDK=1 but {why}");
        skip(&why);
        return;
    }
    let lab = Lab::builder().prepare_dst(add_hook).start();

    let out = lab
        .hub
        .admin(&["client", "add", "sdk-tests", "--user", "alice", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let client: Value = serde_json::from_str(&out.stdout).unwrap();

    let search = lab.ferry(&["endpoint", "search", "--json"]);
    assert_eq!(search.code, Some(0), "{search:?}");
    let endpoints: Value = serde_json::from_str(&search.stdout).unwrap();
    let id_of = |name: &str| {
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["display_name"] == name)
            .unwrap_or_else(|| panic!("no endpoint {name}: {endpoints}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let root = repo_root();
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "python/tests",
            "-q",
            "--tb=short",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&root)
        .env("PYTHONPATH", root.join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("FERRY_HUB_URL", &lab.hub.url)
        .env("FERRY_HUB_CA", lab.hub.ca_cert())
        .env("FERRY_TOKEN", &lab.token)
        .env("FERRY_USER", "alice")
        .env("FERRY_PASSWORD", "correct horse battery")
        .env("FERRY_CLIENT_ID", client["client_id"].as_str().unwrap())
        .env(
            "FERRY_CLIENT_SECRET",
            client["client_secret"].as_str().unwrap(),
        )
        .env("FERRY_SRC_ENDPOINT", id_of("src"))
        .env("FERRY_DST_ENDPOINT", id_of("dst"))
        .env("FERRY_SRC_HOME", &lab.src.home)
        .env("FERRY_DST_HOME", &lab.dst.home)
        .env("FERRY_HOOK", "mark")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pytest failed ({:?}):\n{stdout}\n{stderr}\nhub log:\n{}",
        out.status,
        lab.hub.log()
    );
    println!("{stdout}");
    // pytest exits 0 with every test skipped too: the suite must have run.
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "{stdout}\n{stderr}"
    );
}
