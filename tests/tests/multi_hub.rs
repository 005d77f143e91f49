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

#[test]
fn killing_the_instance_driving_tasks_leaves_them_to_another_and_all_succeed() {
    let server = match postgres::test_server() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    if !Front::available() {
        assert!(
            std::env::var("FERRY_REQUIRE_HAPROXY").as_deref() != Ok("1"),
            "FERRY_REQUIRE_HAPROXY=1 but haproxy is not installed"
        );
        skip("no haproxy (Debian: apt-get install haproxy)");
        return;
    }
    let schema = Schema::create(&server);
    let mut lab = Lab::builder()
        .hub_setting(&format!("database = \"{}\"", schema.url()))
        .instances(2)
        .start();

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
    let server = match postgres::test_server() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    if !Front::available() {
        assert!(
            std::env::var("FERRY_REQUIRE_HAPROXY").as_deref() != Ok("1"),
            "FERRY_REQUIRE_HAPROXY=1 but haproxy is not installed"
        );
        skip("no haproxy (Debian: apt-get install haproxy)");
        return;
    }
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
    let server = match postgres::test_server() {
        Ok(server) => server,
        Err(why) => {
            skip(why);
            return;
        }
    };
    if !Front::available() {
        assert!(
            std::env::var("FERRY_REQUIRE_HAPROXY").as_deref() != Ok("1"),
            "FERRY_REQUIRE_HAPROXY=1 but haproxy is not installed"
        );
        skip("no haproxy (Debian: apt-get install haproxy)");
        return;
    }
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
