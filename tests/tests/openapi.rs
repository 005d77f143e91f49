//! The hub's OpenAPI description (`GET /api/v1/openapi.json`) against the
//! live hub: a real hub, two real daemons, a real transfer, alice's real
//! token. schemathesis (from PyPI) reads the description and sends each
//! operation generated requests, valid and not, checking that no answer
//! is a server error and that every answer's status, content type and
//! body are what the description says.
//!
//! Without schemathesis (on PATH, or `FERRY_SCHEMATHESIS=/path/to/it`)
//! that part says SKIPPED, unless `FERRY_REQUIRE_SCHEMATHESIS=1` (as in
//! CI), when it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::fault_proxy::{Fault, FaultProxy};
use ferry_tests::{Lab, ferry_bin, on_path, skip};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generated requests per operation and phase: enough to find a 5xx or
/// a mismatch, few enough that the run ends in a few minutes here.
const EXAMPLES: &str = "8";
/// The whole run's bound.
const RUN_WITHIN: Duration = Duration::from_secs(600);

/// schemathesis's settings. A file operation (and a file's download or
/// upload) needs its endpoint connected:
/// when it is not (schemathesis may well delete or disconnect it: it
/// calls every operation) the hub answers 503 `endpoint_offline` or 504
/// `timeout`, which are the endpoint's state, not the hub failing. Every
/// other operation must never answer 5xx. `{task}` is a real task's id,
/// so its answers are checked too, not only the 404s of made-up ids.
fn config(task: &str) -> String {
    format!(
        r#"
[parameters]
"path.task" = "{task}"

[[operations]]
include-path = "/api/v1/endpoints/{{endpoint}}/fs"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "503", "504"]

[[operations]]
include-path = "/api/v1/endpoints/{{endpoint}}/files/{{path}}"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "503", "504"]
"#
    )
}

/// The schemathesis to run, or why there is none.
fn schemathesis() -> Result<String, String> {
    if let Ok(given) = std::env::var("FERRY_SCHEMATHESIS") {
        return Ok(given);
    }
    if on_path("schemathesis") {
        return Ok("schemathesis".into());
    }
    Err("schemathesis is not installed (pip install schemathesis==4.32.5)".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_hub_answers_as_its_openapi_description_says() {
    let required = std::env::var("FERRY_REQUIRE_SCHEMATHESIS").as_deref() == Ok("1");
    let lab = Lab::new();
    // Something for the lists and lookups to show: a finished task.
    let tree = lab.src.home.join("run");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), b"some bytes").unwrap();
    let id = lab.transfer(&["-r", "src:/~/run", "dst:/~/run"]);
    lab.wait(&id);

    let http = lab.hub.web_client();
    let url = format!("{}/api/v1/openapi.json", lab.hub.url);
    // Public, JSON, OpenAPI 3.1, its server the hub itself.
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = answer.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], lab.hub.url.trim_end_matches('/'));
    assert!(doc["paths"]["/api/v1/tasks"]["post"]["requestBody"].is_object());

    let program = match schemathesis() {
        Ok(program) => program,
        Err(why) => {
            assert!(!required, "FERRY_REQUIRE_SCHEMATHESIS=1 but {why}");
            skip(&why);
            return;
        }
    };
    let reports = tempfile::tempdir().unwrap();
    let config = reports.path().join("schemathesis.toml");
    std::fs::write(&config, self::config(&id)).unwrap();
    let mut child = Command::new(&program)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &url])
        .args(["--header", &format!("Authorization: Bearer {}", lab.token)])
        .args(["--tls-verify", lab.hub.ca_cert().to_str().unwrap()])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,\
             status_code_conformance,content_type_conformance",
        ])
        .args(["--max-examples", EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "30"])
        // A kept-alive connection the hub closes as idle (its
        // header_timeout_secs) may meet the next request on the way: a
        // network error to retry, not an answer.
        .args(["--request-retries", "3"])
        .args(["--seed", "1"])
        .arg("--report-dir")
        .arg(reports.path())
        // Its caches (crashes it replays) stay out of the checkout.
        .current_dir(reports.path())
        .env("NO_COLOR", "1")
        // The CA also for its fetch of the description itself.
        .env("REQUESTS_CA_BUNDLE", lab.hub.ca_cert())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_WITHIN {
            let _ = child.kill();
            panic!("schemathesis ran longer than {RUN_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "schemathesis found answers the description does not allow:\n{stdout}\n{}\nhub log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.hub.log()
    );
    // It did test the operations (not, say, zero of them).
    assert!(stdout.contains("passed"), "{stdout}");
}

/// The CLI's list verbs read every page: more tasks than one page holds
/// (100) all show in `ferry task list --json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_verbs_read_every_page() {
    let lab = Lab::builder().dst_offline().start();
    let http = lab.hub.web_client();
    let base = lab.hub.url.trim_end_matches('/').to_string();
    let endpoints: Vec<Value> = http
        .get(format!("{base}/api/v1/endpoints"))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_of = |name: &str| {
        endpoints
            .iter()
            .find(|e| e["display_name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {endpoints:?}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (src, dst) = (id_of("src"), id_of("dst"));
    const TASKS: usize = 130;
    for i in 0..TASKS {
        let answer = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(&lab.token)
            .json(&json!({
                "source_endpoint": src,
                "destination_endpoint": dst,
                "items": [{"source": format!("/~/f{i}"), "destination": format!("/~/f{i}"),
                           "recursive": false}],
                "label": format!("page-test-{i}"),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
    }
    // The API's first page is a page, and says where the next is.
    let first = http
        .get(format!("{base}/api/v1/tasks"))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap();
    let link = first.headers()["link"].to_str().unwrap().to_string();
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.len(), 100);

    let out = lab.ferry(&["task", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut labels: Vec<&str> = listed
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), TASKS, "{labels:?}");
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), TASKS, "a task listed twice");
}

/// The caller's apps come in pages like every other list, and `ferry app
/// list` reads them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_listed_in_pages() {
    let lab = Lab::builder().dst_offline().start();
    for name in ["first", "second", "third"] {
        let out = lab.ferry(&["app", "create", name, "--type", "service"]);
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let http = lab.hub.web_client();
    let base = lab.hub.url.trim_end_matches('/').to_string();
    let first = http
        .get(format!("{base}/api/v1/apps?limit=2"))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap();
    let link = first.headers()["link"].to_str().unwrap().to_string();
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.len(), 2, "{page:?}");
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(url, _)| url.to_string())
        .unwrap_or_else(|| panic!("no next page in {link}"));
    let last = http.get(next).bearer_auth(&lab.token).send().await.unwrap();
    assert!(last.headers().get("link").is_none(), "{:?}", last.headers());
    let rest: Vec<Value> = last.json().await.unwrap();
    assert_eq!(rest.len(), 1, "{rest:?}");

    let out = lab.ferry(&["app", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut names: Vec<&str> = listed.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["first", "second", "third"]);
}

/// A submission id makes one task however often it is sent: the first
/// POST makes it (201), each retry answers it again (200), and the list
/// holds it once. The hub hands out ids too; a malformed one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submission_makes_one_task() {
    let lab = Lab::builder().dst_offline().start();
    let http = lab.hub.web_client();
    let base = lab.hub.url.trim_end_matches('/').to_string();
    let handed: Value = http
        .get(format!("{base}/api/v1/submission_id"))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = handed["value"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{handed}");
    let body = |submission_id: &str| {
        json!({
            "source_endpoint": "src",
            "destination_endpoint": "dst",
            "items": [{"source": "/~/a", "destination": "/~/a", "recursive": false}],
            "submission_id": submission_id,
        })
    };
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(&lab.token)
            .json(&body(&id))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let task: Value = answer.json().await.unwrap();
        answers.push((status, task["task_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [201, 200, 200]
    );
    assert!(
        answers.iter().all(|(_, t)| *t == answers[0].1),
        "{answers:?}"
    );
    let out = lab.ferry(&["task", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Another id is another task; a malformed one is refused in one line.
    let other = http
        .post(format!("{base}/api/v1/tasks"))
        .bearer_auth(&lab.token)
        .json(&body("6f1c1f0e-58a4-4c39-9d52-3d0c6c2d9a01"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), reqwest::StatusCode::CREATED);
    let bad = http
        .post(format!("{base}/api/v1/tasks"))
        .bearer_auth(&lab.token)
        .json(&body("not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"], "invalid", "{error}");
    // The CLI's own submission carries an id of its own.
    let out = lab.ferry(&["transfer", "src:/~/b", "dst:/~/b"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = lab.ferry(&["task", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
}

/// `ferry transfer` sends its submission again when the hub cannot be
/// reached: its first connection is cut before the TLS handshake ends,
/// the next goes through, and one task is made.
#[test]
fn ferry_transfer_submits_again_when_the_hub_cannot_be_reached() {
    let lab = Lab::builder().dst_offline().start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], lab.hub.port).into());
    proxy.set(Fault::Truncate {
        after: 1,
        connections: 1,
    });
    let out: ferry_tests::Ran = Command::new(ferry_bin())
        .args(["transfer", "src:/~/a", "dst:/~/a"])
        .env_clear()
        .env("HOME", &lab.src.home)
        .env("FERRY_TOKEN", &lab.token)
        // The hub's certificate names 127.0.0.1, so TLS verifies through it.
        .env("FERRY_HUB", format!("https://127.0.0.1:{}", proxy.port()))
        .env("FERRY_HUB_CA", lab.hub.ca_cert())
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(proxy.truncated() >= 1, "the first connection was not cut");
    let listed = lab.ferry(&["task", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}
