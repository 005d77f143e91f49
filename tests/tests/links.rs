//! Links, as users share with people who have no account: alice makes a
//! link to a file under a SHARING=1 line of her endpoint and a link to a
//! folder, anyone `curl`s them (whole, a range, the folder's index and
//! the files it links), nothing outside the link's path is reachable,
//! a path the endpoint does not share gets no link (and the endpoint
//! itself refuses it at each read once its config-paths change), an
//! expired, deleted or used-up link answers 410, and the owner's audit
//! log names each anonymous read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, on_path, run_command, skip};
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

/// `curl` with no credentials at all, trusting the hub's CA; `-i` so
/// headers come first; `--path-as-is` so `..` reaches the hub as typed.
fn curl(lab: &Lab, url: &str, extra: &[&str]) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--path-as-is", "--max-time", "120", "--cacert"])
        .arg(lab.hub.ca_cert());
    cmd.args(extra).arg(url);
    let ran = run_command(&mut cmd);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (mut head, mut body) = ran.stdout.split_once("\r\n\r\n").unwrap();
    // With -L, each redirect's head comes before the answer's.
    while body.starts_with("HTTP/") {
        (head, body) = body.split_once("\r\n\r\n").unwrap();
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// `ferry link create ARGS --json`, which must succeed.
fn create(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["link", "create"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(lab.ferry(&all).ok()).unwrap()
}

#[test]
fn anyone_with_a_link_reads_beneath_its_path_until_it_expires_is_deleted_or_used_up() {
    if !on_path("curl") {
        skip("curl is not installed");
        return;
    }
    let mut lab = Lab::new();
    let public = lab.src.home.join("public");
    fs::create_dir_all(public.join("sub")).unwrap();
    let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    fs::write(public.join("data.txt"), &text).unwrap();
    fs::write(public.join("sub/a b&<c>.txt"), b"in the subfolder\n").unwrap();
    fs::write(lab.src.home.join("secret.txt"), b"not shared\n").unwrap();
    fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/public,1,0\n").unwrap();
    lab.src.run(&["-reload"]).ok();
    let src_id = lab.src.endpoint_id();

    // A file: the URL is all anyone needs.
    let file = create(&lab, &["src:/~/public/data.txt"]);
    let url = file["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/l/", lab.hub.url)), "{file}");
    assert_eq!(file["endpoint_id"], src_id.as_str());
    assert_eq!(file["path"], "/~/public/data.txt");
    assert_eq!(file["expires"], Value::Null);
    assert!(file["created"].as_i64().unwrap() > 0);
    let file_id = file["id"].as_str().unwrap().to_string();
    let (status, head, body) = curl(&lab, &url, &[]);
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(body, text);
    assert_eq!(header(&head, "accept-ranges").as_deref(), Some("bytes"));
    // Anyone's bytes on the hub's origin: never run, sniffed or leaked.
    assert_eq!(
        header(&head, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        header(&head, "content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(
        header(&head, "referrer-policy").as_deref(),
        Some("no-referrer")
    );
    let (status, head, body) = curl(&lab, &url, &["-r", "100-199"]);
    assert_eq!(status, 206);
    assert_eq!(body, text[100..200]);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 100-199/{}", text.len()))
    );
    // Beneath a file's link there is nothing.
    let (status, _, _) = curl(&lab, &format!("{url}/x"), &[]);
    assert_eq!(status, 404);
    // The human form prints the id and the URL.
    let human = lab.ferry(&["link", "create", "src:/~/public/data.txt"]);
    assert!(human.ok().contains("Link ID: "), "{human:?}");
    assert!(human.stdout.contains(&format!("{}/l/", lab.hub.url)));

    // A folder: its index links each entry, and the links work.
    let folder = create(&lab, &["src:/~/public"]);
    let dir_url = folder["url"].as_str().unwrap().to_string();
    let (status, head, _) = curl(&lab, &dir_url, &[]);
    assert_eq!(status, 301, "{head}");
    let (status, head, index) = curl(&lab, &dir_url, &["-L"]);
    assert_eq!(status, 200, "{head}{index}");
    let (status, _, index_too) = curl(&lab, &format!("{dir_url}/"), &[]);
    assert_eq!((status, &index_too), (200, &index));
    assert!(index.contains(r#"href="data.txt""#), "{index}");
    assert!(index.contains(r#"href="sub/""#), "{index}");
    assert!(!index.contains("secret"), "{index}");
    let (status, _, sub) = curl(&lab, &format!("{dir_url}/sub/"), &[]);
    assert_eq!(status, 200);
    // The odd name is escaped in the page and encoded in its link.
    assert!(sub.contains("a b&amp;&lt;c&gt;.txt"), "{sub}");
    assert!(sub.contains(r#"href="a%20b%26%3Cc%3E.txt""#), "{sub}");
    let (status, _, body) = curl(&lab, &format!("{dir_url}/sub/a%20b%26%3Cc%3E.txt"), &[]);
    assert_eq!((status, body.as_str()), (200, "in the subfolder\n"));
    let (status, _, body) = curl(&lab, &format!("{dir_url}/data.txt"), &["-r", "0-4"]);
    assert_eq!((status, body.as_str()), (206, "line "));

    // Nothing outside the link's path, however it is spelled.
    for escape in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/%2E%2E/%2e%2e/secret.txt",
        "/..%2f..%2fsecret.txt",
        "/%2fetc%2fpasswd",
    ] {
        let (status, _, body) = curl(&lab, &format!("{dir_url}{escape}"), &[]);
        assert!(status == 404 || status == 400, "{escape}: {status} {body}");
        assert!(!body.contains("not shared"), "{escape}: {body}");
    }
    let (status, _, _) = curl(&lab, &format!("{}/l/not-a-real-token", lab.hub.url), &[]);
    assert_eq!(status, 404);

    // A path under a SHARING=0 line gets no link.
    let refused = lab.ferry(&["link", "create", "src:/~/secret.txt"]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("will not share"), "{refused:?}");

    // Listed, then deleted: 410 from then on.
    let listed: Vec<Value> =
        serde_json::from_str(lab.ferry(&["link", "list", "--json"]).ok()).unwrap();
    let ids: Vec<&str> = listed.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&file_id.as_str()), "{listed:?}");
    // The list says each URL again, the same as when it was made.
    let listed_url = listed
        .iter()
        .find(|l| l["id"] == file_id.as_str())
        .and_then(|l| l["url"].as_str());
    assert_eq!(listed_url, Some(url.as_str()), "{listed:?}");
    let human = lab.ferry(&["link", "list"]).ok().to_string();
    assert!(human.contains(&url), "{human}");
    lab.ferry(&["link", "delete", &file_id]).ok();
    let (status, _, body) = curl(&lab, &url, &[]);
    assert_eq!(status, 410, "{body}");
    let listed = lab.ferry(&["link", "list", "--json"]).ok().to_string();
    assert!(!listed.contains(&file_id), "{listed}");
    let again = lab.ferry(&["link", "delete", &file_id]);
    assert_ne!(again.code, Some(0), "{again:?}");

    // A short expiry: 410 once it has passed.
    let brief = create(&lab, &["src:/~/public/data.txt", "--expires", "2s"]);
    assert!(brief["expires"].as_i64().is_some(), "{brief}");
    let brief_url = brief["url"].as_str().unwrap();
    let start = Instant::now();
    loop {
        let (status, _, body) = curl(&lab, brief_url, &["-r", "0-0"]);
        if status == 410 {
            assert!(body.contains("expired"), "{body}");
            break;
        }
        assert_eq!(status, 206);
        assert!(start.elapsed() < Duration::from_secs(30), "never expired");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A byte budget: what fits is served, then nothing more.
    let budget = create(&lab, &["src:/~/public/data.txt", "--max-bytes", "150"]);
    let budget_url = budget["url"].as_str().unwrap();
    let (status, _, body) = curl(&lab, budget_url, &[]);
    assert_eq!(
        status, 429,
        "the whole file is more than the budget: {body}"
    );
    let (status, _, body) = curl(&lab, budget_url, &["-r", "0-99"]);
    assert_eq!((status, body.as_str()), (206, &text[..100]));
    let (status, _, _) = curl(&lab, budget_url, &["-r", "100-149"]);
    assert_eq!(status, 206);
    let (status, _, body) = curl(&lab, budget_url, &["-r", "150-150"]);
    assert_eq!(status, 410, "{body}");

    // The owner's audit log names each anonymous read.
    let audit: Vec<Value> =
        serde_json::from_str(lab.ferry(&["endpoint", "audit", "src", "--json"]).ok()).unwrap();
    let reads: Vec<&Value> = audit
        .iter()
        .filter(|e| {
            e["action"] == "link" && e["identity"] == format!("anonymous (link {file_id})").as_str()
        })
        .collect();
    assert!(!reads.is_empty(), "{audit:?}");
    assert!(
        reads.iter().any(|e| e["path"] == "/~/public/data.txt"),
        "{reads:?}"
    );

    // The endpoint decides at each read: once ~/public is no longer
    // shared, its links read nothing, whatever the hub holds.
    fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/public,0,0\n").unwrap();
    lab.src.run(&["-reload"]).ok();
    let (status, _, body) = curl(&lab, &format!("{dir_url}/data.txt"), &[]);
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("line 0"), "{body}");
    let (status, _, body) = curl(&lab, &format!("{dir_url}/"), &[]);
    assert!(status == 403 || status == 404, "{status} {body}");
    assert!(!body.contains("data.txt"), "{body}");

    // An endpoint that is not connected: 503.
    lab.kill_src();
    let start = Instant::now();
    loop {
        let (status, _, _) = curl(&lab, &format!("{dir_url}/data.txt"), &[]);
        if status == 503 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "still {status}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_link_serves_four_downloads_at_once_and_the_fifth_is_told_to_try_again() {
    if !on_path("curl") {
        skip("curl is not installed");
        return;
    }
    let lab = Lab::new();
    let public = lab.src.home.join("public");
    fs::create_dir_all(&public).unwrap();
    // Large enough that a slow reader holds its download for the whole test.
    let big = public.join("big.bin");
    fs::File::create(&big)
        .unwrap()
        .set_len(256 * 1024 * 1024)
        .unwrap();
    fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/public,1,0\n").unwrap();
    lab.src.run(&["-reload"]).ok();
    let link = create(&lab, &["src:/~/public/big.bin"]);
    let url = link["url"].as_str().unwrap().to_string();

    // Four downloads read at 50 KB/s: each holds one of the link's streams.
    let bodies = tempfile::tempdir().unwrap();
    let mut slow: Vec<_> = (0..4)
        .map(|i| {
            Command::new("curl")
                .args(["-sS", "--fail", "--limit-rate", "50K", "-o"])
                .arg(bodies.path().join(format!("body-{i}")))
                .arg("--cacert")
                .arg(lab.hub.ca_cert())
                .arg(&url)
                .spawn()
                .unwrap()
        })
        .collect();
    // Each of the four is being served (curl writes a body only for a
    // success with --fail, in stdio's buffers' worth): all four hold a
    // stream now.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..4)
        .all(|i| fs::metadata(bodies.path().join(format!("body-{i}"))).is_ok_and(|m| m.len() > 0))
    {
        assert!(
            slow.iter_mut().all(|c| c.try_wait().unwrap().is_none()),
            "a download of the four ended (refused?) before all four got bytes"
        );
        assert!(
            Instant::now() < deadline,
            "the four downloads did not all get bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A fifth, even of one byte, is told to try again.
    let (status, head, body) = curl(&lab, &url, &["-r", "0-0"]);
    assert_eq!(status, 503, "{head}{body}");
    assert!(
        body.contains("as many downloads as it may at once; try again shortly"),
        "{body}"
    );
    // Once they stop, the link serves again.
    for child in &mut slow {
        let _ = child.kill();
        let _ = child.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, head, body) = curl(&lab, &url, &["-r", "0-0"]);
        if status == 206 {
            assert_eq!(body, "\0");
            break;
        }
        assert_eq!(status, 503, "{head}{body}");
        assert!(
            Instant::now() < deadline,
            "the link's streams were never given back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
