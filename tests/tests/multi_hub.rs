//! Several hub instances over one PostgreSQL database behind HAProxy in
//! TCP mode, as `docs/hub.md` deploys them: two `ferry-hub serve`
//! processes of one state dir, the endpoints' daemons and alice's verbs
//! reaching them only through the front. With `balance first` the second
//! instance stands by; the instance driving the tasks is killed with -9
//! while their data flows; the daemons reconnect through the front to the
//! other instance, which takes the tasks over once their leases end, and
//! every task succeeds with the trees identical. With `balance
//! roundrobin` the endpoints and alice's commands are spread over both
//! instances: each command reaches the endpoint through whichever holds
//! its link, and a kill -9 mid-task still leaves every task SUCCEEDED.
//!
//! Without `FERRY_TEST_POSTGRES` (and psql) the test says SKIPPED, a
//! failure with `FERRY_REQUIRE_POSTGRES=1`; without `haproxy` likewise,
//! a failure with `FERRY_REQUIRE_HAPROXY=1` (both set in CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::haproxy::Front;
use ferry_tests::postgres::{self, Schema};
use ferry_tests::{Lab, pattern, skip, tree, wait_until};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Two hub instances over `schema` behind the front (`balance first`).
fn two_instances(schema: &Schema) -> Lab {
    Lab::builder()
        .hub_setting(&format!("database = \"{}\"", schema.url()))
        .instances(2)
        .start()
}

/// The PostgreSQL server to test on, if it and HAProxy are here; else
/// why not, for the test to say SKIPPED (a failure where CI requires
/// HAProxy).
fn prerequisites() -> Result<String, &'static str> {
    let server = postgres::test_server()?;
    if !Front::available() {
        assert!(
            std::env::var("FERRY_REQUIRE_HAPROXY").as_deref() != Ok("1"),
            "FERRY_REQUIRE_HAPROXY=1 but haproxy is not installed"
        );
        return Err("no haproxy (Debian: apt-get install haproxy)");
    }
    Ok(server)
}

#[test]
fn killing_the_instance_driving_tasks_leaves_them_to_another_and_all_succeed() {
    let server = match prerequisites() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    let schema = Schema::create(&server);
    let mut lab = two_instances(&schema);

    // A browser's sign-in form from one instance signs in on the other:
    // the form's key is shared through the database.
    let signed_in = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sign_in_across(&lab, 1, 0));
    assert_eq!(
        signed_in,
        reqwest::StatusCode::SEE_OTHER,
        "{}",
        lab.hub_logs()
    );

    // Three transfers, slowed so that they are in flight at the kill.
    let mut tasks = Vec::new();
    for n in 0..3u32 {
        let dir = lab.src.home.join(format!("set-{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("large.bin"), pattern(3_000_000 + n as usize, n)).unwrap();
        for i in 0..5u32 {
            fs::write(
                dir.join(format!("small-{i}")),
                pattern(1000 + i as usize, i),
            )
            .unwrap();
        }
        let from = format!("src:/~/set-{n}");
        let to = format!("dst:/~/set-{n}");
        let id = lab.transfer(&["-r", &from, &to, "--bwlimit", "1M"]);
        tasks.push((dir, id));
    }
    let first = lab.dst.home.join("set-0");
    wait_until(
        LIMIT,
        "data flowing into the first task's destination",
        || {
            fs::read_dir(&first).is_ok_and(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().as_bytes().starts_with(b".ferry."))
            })
        },
    );
    // Every connection went to the first instance: it drives the tasks.
    lab.kill_instance(0);

    // The daemons find the link dead and redial through the front.
    lab.src.wait_hub_state("connected", LIMIT);
    lab.dst.wait_hub_state("connected", LIMIT);
    for (dir, id) in &tasks {
        let task = lab.wait(id);
        assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
        let name = dir.file_name().unwrap();
        assert_eq!(tree(&lab.dst.home.join(name)), tree(dir), "task {id}");
    }
    let taken_over = tasks.iter().any(|(_, id)| {
        lab.events(id)
            .lines()
            .filter(|l| l.contains("attempt"))
            .count()
            >= 2
    });
    assert!(
        taken_over,
        "the kill came while a task ran, so one started again:\n{}",
        lab.events(&tasks[0].1)
    );

    // The surviving instance serves new work alone.
    fs::write(lab.src.home.join("after"), b"after the kill").unwrap();
    let id = lab.transfer(&["src:/~/after", "dst:/~/after"]);
    lab.wait(&id);
    assert_eq!(
        fs::read(lab.dst.home.join("after")).unwrap(),
        b"after the kill"
    );
    drop(lab);
    drop(schema);
}

/// HAProxy's `balance roundrobin`: every new connection goes to the next
/// instance, so alice's commands alternate between the instances and
/// reach the one not holding the endpoint's control link every other
/// time. Listings, directories made and permissions' probes still answer,
/// each time; failed sign-ins count across instances.
#[test]
fn round_robin_routes_each_command_to_the_instance_holding_the_endpoint() {
    let server = match prerequisites() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    let schema = Schema::create(&server);
    let lab = Lab::builder()
        .hub_setting(&format!("database = \"{}\"", schema.url()))
        .instances(2)
        .balance("roundrobin")
        .start();
    lab.src.wait_hub_state("connected", LIMIT);
    lab.dst.wait_hub_state("connected", LIMIT);
    wait_until(LIMIT, "both endpoints' links recorded", || {
        schema.count("control_links") == 2
    });
    let links = schema.query("SELECT instance_id FROM control_links ORDER BY endpoint_id");
    eprintln!("control links on instances: {links:?}");

    fs::create_dir_all(lab.src.home.join("listed")).unwrap();
    fs::write(lab.src.home.join("listed/marker"), b"here").unwrap();
    for n in 0..10 {
        let listed = lab.ferry(&["ls", "src:/~/listed"]);
        assert_eq!(
            listed.code,
            Some(0),
            "ls #{n}: {}\n{}",
            listed.stderr,
            lab.hub_logs()
        );
        assert!(
            listed.stdout.contains("marker"),
            "ls #{n}: {}",
            listed.stdout
        );
        // Three commands a round: each lands on either instance in turn.
        let other = lab.ferry(&["ls", "dst:/~/"]);
        assert_eq!(other.code, Some(0), "ls dst #{n}: {}", other.stderr);
        let made = lab.ferry(&["mkdir", &format!("dst:/~/made-{n}")]);
        assert_eq!(made.code, Some(0), "mkdir #{n}: {}", made.stderr);
        assert!(
            lab.dst.home.join(format!("made-{n}")).is_dir(),
            "mkdir #{n}"
        );
    }
    // Both instances served some of them, each over the other's link.
    let routed = |n: usize| {
        lab.instance_log(n)
            .matches("made over this instance's link")
            .count()
    };
    assert!(
        routed(0) + routed(1) >= 5,
        "commands routed: {} and {}\n{}",
        routed(0),
        routed(1),
        lab.hub_logs()
    );

    // HTTPS file reads: the endpoint dials back to the instance serving
    // the request, told its own address, wherever its link is.
    fs::write(lab.src.home.join("fetched.txt"), b"fetched over https").unwrap();
    for n in 0..10 {
        let got = lab.ferry(&["get", "src:/~/fetched.txt", "-"]);
        assert_eq!(
            got.code,
            Some(0),
            "get #{n}: {}\n{}",
            got.stderr,
            lab.hub_logs()
        );
        assert_eq!(got.stdout, "fetched over https", "get #{n}");
    }

    // Transfers, each driven by the instance holding its source's link,
    // its destination's reports passed to it from the other instance.
    for n in 0..10u32 {
        let name = format!("small-{n}");
        fs::write(lab.src.home.join(&name), pattern(10_000 + n as usize, n)).unwrap();
        let id = lab.transfer(&[&format!("src:/~/{name}"), &format!("dst:/~/{name}")]);
        let task = lab.wait(&id);
        assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
        assert_eq!(
            fs::read(lab.dst.home.join(&name)).unwrap(),
            pattern(10_000 + n as usize, n)
        );
    }

    // Five wrong passwords spread over both instances lock alice's
    // account on each: neither instance saw five in its own memory.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for n in 0..5 {
        let status = runtime.block_on(sign_in_with(&lab, n % 2, n % 2, "wrong"));
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "failure #{n}");
    }
    for to in 0..2 {
        let status = runtime.block_on(sign_in_with(&lab, to, to, "correct horse battery"));
        assert_eq!(
            status,
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            "instance {to} let alice in after five failures elsewhere"
        );
    }
    assert!(schema.count("login_failures") >= 1);

    // kill -9 one instance while tasks run: whichever of source and
    // destination it held, the daemons redial through the front and every
    // task still succeeds.
    let mut lab = lab;
    let mut tasks = Vec::new();
    for n in 0..2u32 {
        let dir = lab.src.home.join(format!("killed-{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("large.bin"), pattern(2_000_000 + n as usize, n)).unwrap();
        fs::write(dir.join("small"), pattern(1000, n)).unwrap();
        let id = lab.transfer(&[
            "-r",
            &format!("src:/~/killed-{n}"),
            &format!("dst:/~/killed-{n}"),
            "--bwlimit",
            "1M",
        ]);
        tasks.push((dir, id));
    }
    let first = lab.dst.home.join("killed-0");
    wait_until(LIMIT, "data flowing into the first task", || {
        fs::read_dir(&first).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().as_bytes().starts_with(b".ferry."))
        })
    });
    lab.kill_instance(0);
    lab.src.wait_hub_state("connected", LIMIT);
    lab.dst.wait_hub_state("connected", LIMIT);
    for (dir, id) in &tasks {
        let task = lab.wait(id);
        assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
        let name = dir.file_name().unwrap();
        assert_eq!(tree(&lab.dst.home.join(name)), tree(dir), "task {id}");
    }
    drop(lab);
    drop(schema);
}

/// Fetches the sign-in form from instance `from`, posts it with alice's
/// password to instance `to`; the answer's status.
/// Under round-robin a relayed task's streams reach either instance: the
/// one a stream lands on asks the destination to dial back to it, over
/// its own link or through the instance holding it.
#[test]
fn under_round_robin_relayed_streams_are_paired_on_whichever_instance_they_reach() {
    let server = match prerequisites() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    let schema = Schema::create(&server);
    let lab = Lab::builder()
        .hub_setting(&format!("database = \"{}\"", schema.url()))
        .instances(2)
        .balance("roundrobin")
        .dst_setting("data_listen = false")
        .start();
    lab.src.wait_hub_state("connected", LIMIT);
    lab.dst.wait_hub_state("connected", LIMIT);
    wait_until(LIMIT, "both endpoints' links recorded", || {
        schema.count("control_links") == 2
    });
    let src = lab.src.home.join("tree");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8u32 {
        fs::write(src.join(format!("f{i}")), pattern(300_000 + i as usize, i)).unwrap();
    }
    for n in 0..4 {
        let to = format!("dst:/~/tree-{n}");
        let id = lab.transfer(&["-r", "src:/~/tree", &to, "--streams", "4"]);
        let task = lab.wait(&id);
        assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
        // Counted as the hub's streams close, which may follow the end.
        wait_until(LIMIT, "relayed bytes counted", || {
            lab.show(&id)["bytes_relayed"].as_u64().unwrap_or(0) > 0
        });
        assert_eq!(tree(&lab.dst.home.join(format!("tree-{n}"))), tree(&src));
    }
    // Streams landed on the instance not holding the destination's link,
    // which asked through the database for its dial-back.
    let routed: usize = (0..2)
        .map(|n| {
            lab.instance_log(n)
                .lines()
                .filter(|l| {
                    l.contains("asked through the instance holding") && l.contains("relayed stream")
                })
                .count()
        })
        .sum();
    assert!(routed >= 1, "no dial-back was routed\n{}", lab.hub_logs());
}

/// The nodes of one endpoint linked to different instances: the second
/// machine of each endpoint dials instance 1 itself, while the front
/// (`balance first`) took the primaries to instance 0. The newest link of
/// the source is on instance 1, which drives the task; it spreads it over
/// both pairs all the same, the primary's shard started through the
/// database by instance 0, and the destination primary's reports passed
/// back. Then the destination's primary is killed -9 mid-task: the driver
/// hears of it from the database, and its next attempt runs on what is
/// left.
#[test]
fn a_task_is_spread_over_nodes_linked_to_another_instance() {
    let server = match prerequisites() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    let schema = Schema::create(&server);
    let mut lab = two_instances(&schema);
    let (_src2, src2) = lab.join_node_at_instance("src", &lab.src, 1);
    let (_dst2, dst2) = lab.join_node_at_instance("dst", &lab.dst, 1);
    wait_until(LIMIT, "four node links recorded", || {
        schema.count("node_links") == 4
    });
    let on = schema.query("SELECT node, instance_id FROM node_links ORDER BY endpoint_id, node");
    eprintln!("node links: {on:?}");
    // Whichever instance answers, every machine is connected.
    for endpoint in ["src", "dst"] {
        let listed = lab.ferry(&["endpoint", "nodes", endpoint, "--json"]);
        let nodes: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
        let connected: Vec<(&str, bool)> = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap(), n["connected"] == true))
            .collect();
        assert_eq!(
            connected,
            [("primary", true), ("node-2", true)],
            "{endpoint}"
        );
    }

    let root = lab.src.home.join("spread");
    for d in 0..3u32 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10u32 {
            let n = d * 10 + f;
            fs::write(
                dir.join(format!("f{f}")),
                pattern(2000 + n as usize * 51, n),
            )
            .unwrap();
        }
    }
    // Split over both pairs (4 chunks).
    fs::write(root.join("large"), pattern(16 << 20, 77)).unwrap();
    let id = lab.transfer(&["-r", "src:/~/spread", "dst:/~/spread"]);
    let task = lab.wait(&id);
    assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
    assert_eq!(tree(&root), tree(&lab.dst.home.join("spread")));
    assert_eq!(task["nodes"], 2, "{task}\n{}", lab.events(&id));
    assert!(lab.events(&id).contains("spread over 2 nodes"));
    // Every machine moved a part.
    for log in [lab.dst_daemon().log(), dst2.log()] {
        let received = log
            .lines()
            .any(|l| l.contains(&id) && l.contains("received") && !l.contains("files=0"));
        assert!(received, "{log}");
    }
    for log in [lab.src_daemon().log(), src2.log()] {
        let sent = log
            .lines()
            .any(|l| l.contains(&id) && l.contains("sending") && l.contains("count: 2"));
        assert!(sent, "{log}");
    }
    // Instance 1 drove it; instance 0 started the primary's shard for it.
    assert!(
        lab.instance_log(1).contains("spread over nodes"),
        "{}",
        lab.hub_logs()
    );
    assert!(
        lab.instance_log(0)
            .contains("made over this instance's link"),
        "{}",
        lab.hub_logs()
    );

    // kill -9 of the destination's primary, linked to instance 0, mid-task.
    let big = lab.src.home.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..8u32 {
        fs::write(big.join(format!("f{i}")), pattern(4 << 20, 300 + i)).unwrap();
    }
    let id = lab.transfer(&["-r", "--bwlimit", "4M", "src:/~/big", "dst:/~/big"]);
    wait_until(LIMIT, "the primary receiving", || {
        lab.dst_daemon().log().contains(&id)
    });
    lab.kill_dst();
    let task = lab.wait(&id);
    assert_eq!(task["status"], "SUCCEEDED", "{task}\n{}", lab.hub_logs());
    assert_eq!(tree(&big), tree(&lab.dst.home.join("big")));
    let events = lab.events(&id);
    assert!(
        events.contains("node primary of 'dst' went offline"),
        "{events}\n{}",
        lab.hub_logs()
    );
    assert_eq!(task["nodes"], 1, "{task}");
    drop(src2);
    drop(dst2);
    drop(lab);
    drop(schema);
}

async fn sign_in_across(lab: &Lab, from: usize, to: usize) -> reqwest::StatusCode {
    sign_in_with(lab, from, to, "correct horse battery").await
}

/// As [`sign_in_across`], with `password`.
async fn sign_in_with(lab: &Lab, from: usize, to: usize, password: &str) -> reqwest::StatusCode {
    let http = lab.hub.web_client();
    let page = http
        .get(format!("{}/login", lab.instance_url(from)))
        .send()
        .await
        .unwrap();
    let cookie: Vec<String> = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let text = page.text().await.unwrap();
    let mut fields: Vec<(String, String)> = text
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|piece| {
            let (name, rest) = piece.split_once("\" value=\"").unwrap();
            (
                name.to_string(),
                rest.split_once('"').unwrap().0.to_string(),
            )
        })
        .collect();
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), password.into()));
    http.post(format!("{}/login", lab.instance_url(to)))
        .header("cookie", cookie.join("; "))
        .header("sec-fetch-site", "same-origin")
        .form(&fields)
        .send()
        .await
        .unwrap()
        .status()
}
