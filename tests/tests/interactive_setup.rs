//! `ferry -setup` without a key: the CLI prints a login URL and waits for
//! the code; a browser (driven here over HTTP, as one would be) logs in on
//! the hub's own pages, approves, and reads the code off the final page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::browser::{Browser, auth_code};
use ferry_tests::{Hub, User, ferry_bin};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_setup_through_the_hubs_login_pages() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let user = User::new();
    let mut setup = Command::new(ferry_bin())
        .args(["-setup", "--hub", &hub.url, "--hub-ca"])
        .arg(hub.ca_cert())
        .arg("-dir")
        .arg(&user.dir)
        .env_clear()
        .env("HOME", &user.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(setup.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line.trim_end().to_string());
    }
    assert_eq!(lines[0], "Login here:");
    assert_eq!(lines[1], "-----");
    assert_eq!(lines[3], "-----");
    let login_url = lines[2].clone();
    assert!(
        login_url.starts_with(&format!("{}/authorize?", hub.url)),
        "{login_url}"
    );

    // The user's browser: log in, approve, read the code.
    let mut browser = Browser::new(&hub);
    let login = browser.get(&login_url).await;
    assert!(
        login.contains("name=\"password\""),
        "not a login page: {login}"
    );
    let wrong = browser
        .submit(
            &login,
            &[("username", "alice"), ("password", "wrong password")],
        )
        .await;
    assert!(
        wrong.contains("name=\"password\""),
        "a wrong password shows the login page again"
    );
    let consent = browser
        .submit(
            &wrong,
            &[("username", "alice"), ("password", "correct horse battery")],
        )
        .await;
    assert!(
        consent.contains("value=\"approve\""),
        "not a consent page: {consent}"
    );
    let code_page = browser.submit(&consent, &[("decision", "approve")]).await;
    let code = auth_code(&code_page);
    assert!(code.len() >= 20, "{code}");

    let mut stdin = setup.stdin.take().unwrap();
    writeln!(stdin, "{code}").unwrap();
    writeln!(stdin, "laptop").unwrap();
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = setup.wait().unwrap();
    let mut stderr = String::new();
    setup
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "setup failed: {rest}\n{stderr}");
    assert!(
        rest.starts_with("Enter the auth code: Input a value for the Endpoint Name: "),
        "{rest}"
    );
    assert!(rest.contains("registered new endpoint, id: "), "{rest}");
    assert_eq!(rest.lines().last(), Some("setup completed successfully"));

    // The login is saved: user commands work without FERRY_TOKEN.
    let search = Command::new(ferry_bin())
        .args(["endpoint", "search", "--json"])
        .env_clear()
        .env("HOME", &user.home)
        .output()
        .unwrap();
    assert!(search.status.success(), "{search:?}");
    let found: serde_json::Value = serde_json::from_slice(&search.stdout).unwrap();
    assert_eq!(found[0]["display_name"], "laptop");

    // The same code, pasted again: refused, in one line, exit 1.
    let mut again = Command::new(ferry_bin())
        .args(["login", "--hub", &hub.url, "--hub-ca"])
        .arg(hub.ca_cert())
        .env_clear()
        .env("HOME", user.home.join("elsewhere"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(again.stdin.take().unwrap(), "{code}").unwrap();
    let again = again.wait_with_output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("invalid_grant"), "{err}");
}
