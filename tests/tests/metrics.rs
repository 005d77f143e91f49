//! Prometheus metrics, scraped as a Prometheus server would: the hub's
//! `/metrics` behind its `metrics_token`, and each daemon's at its
//! `metrics_listen`, after a real transfer. Each exposition is parsed by
//! the Prometheus project's own Python client (`prometheus_client.parser`,
//! which raises on a line it cannot read), and its counters must equal the
//! task's as `ferry task show --json` gives them.
//!
//! Without python3 and `prometheus_client` the test says SKIPPED, unless
//! `FERRY_REQUIRE_PROMETHEUS_PARSER=1` (as in CI), when it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, closed_loopback_port, skip};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "a-metrics-token-for-the-scraper-0123456789";

/// Reads an exposition with `prometheus_client.parser` and prints every
/// sample as JSON, with its family's type.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type,
                    "name": s.name, "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
"#;

/// Why the parser cannot run here, if it cannot.
fn missing_parser() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .output();
    match out {
        Err(e) => Some(format!("no python3 ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 has no prometheus_client (pip install prometheus_client): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// One sample as the parser read it.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition's samples, read by the Prometheus parser, which must
/// accept it whole.
fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|s| Sample {
            kind: s["type"].as_str().unwrap().to_string(),
            name: s["name"].as_str().unwrap().to_string(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the one sample `name` with `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {samples:#?}");
    found[0].value
}

fn kind_of(samples: &[Sample], name: &str) -> String {
    samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .kind
        .clone()
}

/// `GET http://ADDRESS/metrics` from a daemon: status line and body.
fn scrape_daemon(port: u16) -> (String, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn counter(task: &Value, key: &str) -> f64 {
    task[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {task}")) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_the_hub_and_both_daemons_match_the_tasks_counters() {
    let required = std::env::var("FERRY_REQUIRE_PROMETHEUS_PARSER").as_deref() == Ok("1");
    if let Some(why) = missing_parser() {
        assert!(!required, "FERRY_REQUIRE_PROMETHEUS_PARSER=1 but {why}");
        skip(&why);
        return;
    }
    let (src_port, dst_port) = (closed_loopback_port(), closed_loopback_port());
    let lab = Lab::builder()
        .hub_setting(&format!("metrics_token = \"{TOKEN}\""))
        .src_setting(&format!("metrics_listen = \"127.0.0.1:{src_port}\""))
        .dst_setting(&format!("metrics_listen = \"127.0.0.1:{dst_port}\""))
        .start();
    // A few files, one of them over a 4 MiB chunk, and an empty one.
    let tree = lab.src.home.join("run");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("big"), ferry_tests::pattern(5 << 20, 1)).unwrap();
    std::fs::write(tree.join("small"), b"small file").unwrap();
    std::fs::write(tree.join("sub/empty"), b"").unwrap();
    std::fs::write(tree.join("sub/more"), ferry_tests::pattern(70_000, 2)).unwrap();
    let id = lab.transfer(&["-r", "src:/~/run", "dst:/~/run"]);
    let task = lab.wait(&id);
    let (files, bytes) = (
        counter(&task, "files_transferred"),
        counter(&task, "bytes_transferred"),
    );
    assert_eq!((files, bytes), (4.0, (5 << 20) as f64 + 10.0 + 70_000.0));

    // The hub: without the token, with a wrong one, with it.
    let http = lab.hub.web_client();
    let url = format!("{}/metrics", lab.hub.url);
    let open = http.get(&url).send().await.unwrap();
    assert_eq!(open.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(&url)
        .bearer_auth("not-the-metrics-token-at-all-000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let answer = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let hub = parse(&answer.text().await.unwrap());
    assert_eq!(value(&hub, "ferry_hub_moved_bytes_total", &[]), bytes);
    assert_eq!(value(&hub, "ferry_hub_moved_files_total", &[]), files);
    assert_eq!(kind_of(&hub, "ferry_hub_moved_bytes_total"), "counter");
    assert_eq!(
        value(&hub, "ferry_hub_tasks", &[("state", "succeeded")]),
        1.0
    );
    assert_eq!(value(&hub, "ferry_hub_tasks", &[("state", "active")]), 0.0);
    assert_eq!(kind_of(&hub, "ferry_hub_tasks"), "gauge");
    assert_eq!(value(&hub, "ferry_hub_connected_endpoints", &[]), 2.0);
    assert_eq!(value(&hub, "ferry_hub_relay_bytes_total", &[]), 0.0);
    assert_eq!(
        value(&hub, "ferry_hub_faults_total", &[("kind", "transfer")]),
        counter(&task, "faults")
    );
    // HTTP requests by route template: the CLI's task calls were counted
    // under the template, never under a path with the task's id in it.
    let requests: Vec<&Sample> = hub
        .iter()
        .filter(|s| s.name == "ferry_hub_http_requests_total")
        .collect();
    assert!(
        requests
            .iter()
            .any(|s| s.labels["route"].contains('{') && s.labels["status"] == "200"),
        "{requests:#?}"
    );
    assert!(
        requests.iter().all(|s| !s.labels["route"].contains(&id)),
        "{requests:#?}"
    );
    // The refused scrapes were counted too, under their route.
    assert_eq!(
        value(
            &hub,
            "ferry_hub_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        kind_of(&hub, "ferry_hub_http_request_duration_seconds_bucket"),
        "histogram"
    );
    // A made-up path is one label value, whatever the path.
    let made_up = http
        .get(format!("{}/no/such/{id}", lab.hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(made_up.status(), reqwest::StatusCode::NOT_FOUND);
    let again = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    let hub = parse(&again.text().await.unwrap());
    assert_eq!(
        value(
            &hub,
            "ferry_hub_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );

    // The daemons: the source sent what the destination received, and
    // both are the task's counters.
    let (status, text) = scrape_daemon(src_port);
    assert!(status.contains(" 200 "), "{status}");
    let src = parse(&text);
    let (status, text) = scrape_daemon(dst_port);
    assert!(status.contains(" 200 "), "{status}");
    let dst = parse(&text);
    assert_eq!(value(&src, "ferry_endpoint_sent_bytes_total", &[]), bytes);
    assert_eq!(value(&src, "ferry_endpoint_sent_files_total", &[]), files);
    assert_eq!(
        value(&dst, "ferry_endpoint_received_bytes_total", &[]),
        bytes
    );
    assert_eq!(
        value(&dst, "ferry_endpoint_received_files_total", &[]),
        files
    );
    assert_eq!(value(&src, "ferry_endpoint_received_bytes_total", &[]), 0.0);
    assert_eq!(value(&dst, "ferry_endpoint_sent_bytes_total", &[]), 0.0);
    assert_eq!(
        value(&dst, "ferry_endpoint_chunk_verify_failures_total", &[]),
        0.0
    );
    assert!(value(&dst, "ferry_endpoint_journal_syncs_total", &[]) >= 1.0);
    assert_eq!(kind_of(&dst, "ferry_endpoint_data_streams"), "gauge");
    // The task is over: no stream or file is held any longer.
    for daemon in [&src, &dst] {
        assert_eq!(value(daemon, "ferry_endpoint_open_files", &[]), 0.0);
    }

    // Only GET /metrics is served there.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", dst_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(tcp, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
}

/// A daemon that cannot serve its metrics where `endpoint.toml` says does
/// not start: one line, exit 1, nothing left running.
#[test]
fn a_metrics_listen_that_is_taken_or_open_to_all_refuses_the_start() {
    let user = ferry_tests::User::new();
    user.set_up_endpoint("laptop");
    let toml = user.dir.join("endpoint.toml");
    let setup = std::fs::read_to_string(&toml).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (setting, says) in [
        (
            format!("127.0.0.1:{port}"),
            format!("cannot serve metrics on 127.0.0.1:{port}"),
        ),
        (
            "0.0.0.0:9464".to_string(),
            "`metrics_listen` must name one interface's address".to_string(),
        ),
        (
            "localhost:9464".to_string(),
            "`metrics_listen` must be IP:PORT".to_string(),
        ),
    ] {
        std::fs::write(&toml, format!("{setup}metrics_listen = \"{setting}\"\n")).unwrap();
        let refused = user.run(&["-start", "-detach"]);
        assert_eq!(refused.code, Some(1), "{setting}: {refused:?}");
        assert_eq!(refused.stderr.trim().lines().count(), 1, "{refused:?}");
        assert!(refused.stderr.contains(&says), "{setting}: {refused:?}");
        assert_eq!(user.run(&["-status"]).code, Some(3), "{setting}");
    }
}
