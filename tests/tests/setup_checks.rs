//! `ferry -setup` (without a key) and `ferry login` reach the hub and check
//! its certificate before they print a login URL: a URL that cannot work,
//! a hub that is not there and a hub whose CA is not trusted are refused in
//! one line that says what to do, and nobody is sent to a browser first.
//! `FERRY_HUB` and `FERRY_HUB_CA`, as a site's modulefile sets them, are
//! the defaults for `--hub` and `--hub-ca`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Hub, Ran, User, closed_loopback_port, ferry_bin};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than any check may take (the hub check gives up after 10 s).
const LIMIT: Duration = Duration::from_secs(90);

/// The two ways into the login dialogue.
const VERBS: [&[&str]; 2] = [&["-setup"], &["login"]];

/// Runs `ferry ARGS` as `user` with stdin closed and only `env` set besides
/// HOME and PATH; kills it and fails the test if it runs past [`LIMIT`].
fn run(user: &User, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let out_dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut command = Command::new(ferry_bin());
    command
        .args(args)
        .arg("-dir")
        .arg(&user.dir)
        .env_clear()
        .env("HOME", &user.home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry {args:?} ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

fn with(verb: &[&str], rest: &[&str]) -> Vec<String> {
    verb.iter().chain(rest).map(|s| s.to_string()).collect()
}

fn run_verb(user: &User, verb: &[&str], rest: &[&str], env: &[(&str, &str)]) -> Ran {
    let args = with(verb, rest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(user, &args, env)
}

/// Refused before any login URL, in one line on stderr, with this exit code.
#[track_caller]
fn refused_before_login(out: &Ran, code: i32) -> &str {
    assert!(
        !out.stdout.contains("Login here:") && !out.stderr.contains("Login here:"),
        "a login URL was printed before the hub was checked: {out:?}"
    );
    assert!(
        !out.stdout.contains("Enter the auth code"),
        "prompted before the hub was checked: {out:?}"
    );
    assert_eq!(out.code, Some(code), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    out.stderr.trim_end()
}

#[test]
fn an_http_url_is_refused_and_the_https_form_given() {
    let hub = Hub::start();
    let user = User::new();
    let http = hub.url.replacen("https://", "http://", 1);
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &http, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 2);
        assert!(line.contains("speaks only https"), "{verb:?}: {line}");
        assert!(line.contains(&hub.url), "{verb:?}: {line}");
    }
}

#[test]
fn a_url_without_a_scheme_is_refused_with_the_https_form() {
    let hub = Hub::start();
    let user = User::new();
    let bare = hub.url.trim_start_matches("https://").to_string();
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &bare, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 2);
        assert!(line.contains("no scheme"), "{verb:?}: {line}");
        assert!(
            line.contains(&format!("https://{bare}")),
            "{verb:?}: {line}"
        );
    }
}

#[test]
fn a_port_where_nothing_listens_is_refused() {
    let hub = Hub::start();
    let user = User::new();
    let port = closed_loopback_port();
    let url = format!("https://127.0.0.1:{port}");
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &url, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 1);
        assert!(
            line.contains(&format!(
                "connection refused at 127.0.0.1:{port}: is the hub running, and is this its port?"
            )),
            "{verb:?}: {line}"
        );
    }
}

#[test]
fn a_name_that_does_not_resolve_is_refused() {
    let hub = Hub::start();
    let user = User::new();
    // A label longer than DNS allows (63 bytes): the resolver refuses it
    // without sending a query, so this stays on the machine.
    let name = format!("{}.invalid", "n".repeat(64));
    let url = format!("https://{name}:8443");
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &url, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 1);
        assert!(line.contains("does not resolve"), "{verb:?}: {line}");
        assert!(line.contains(&name), "{verb:?}: {line}");
    }
}

#[test]
fn a_port_that_never_answers_times_out() {
    let hub = Hub::start();
    let user = User::new();
    // Connections complete in the listen backlog; nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &url, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 1);
        assert!(
            line.contains(&format!("no answer from 127.0.0.1:{port} within")),
            "{verb:?}: {line}"
        );
    }
    drop(silent);
}

#[test]
fn a_port_that_speaks_plain_http_is_named() {
    let hub = Hub::start();
    let user = User::new();
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    plain.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    // An HTTP server's answer to a TLS hello, until the test is done.
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match plain.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let _ = stream.read(&mut [0u8; 1024]);
                    let _ = stream.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let url = format!("https://127.0.0.1:{port}");
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &["--hub", &url, "--hub-ca", hub.ca_cert().to_str().unwrap()],
            &[],
        );
        let line = refused_before_login(&out, 1);
        assert!(
            line.contains(&format!("127.0.0.1:{port} answered, but not with TLS")),
            "{verb:?}: {line}"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn a_hub_with_its_own_ca_shows_the_fingerprint_and_the_flag_then_proceeds_with_it() {
    let hub = Hub::start();
    let user = User::new();
    for verb in VERBS {
        let out = run_verb(&user, verb, &["--hub", &hub.url], &[]);
        let line = refused_before_login(&out, 1);
        assert!(line.contains(&hub.ca_fingerprint), "{verb:?}: {line}");
        assert!(line.contains("--hub-ca FILE"), "{verb:?}: {line}");
        assert!(
            line.contains(&format!("{}/ca.crt", hub.url)),
            "{verb:?}: {line}"
        );

        // With the CA that init wrote, the dialogue starts (and ends at
        // the prompt: stdin is closed).
        let ca_cert = hub.ca_cert();
        let ca = ca_cert.to_str().unwrap();
        let out = run_verb(&user, verb, &["--hub", &hub.url, "--hub-ca", ca], &[]);
        assert!(
            out.stdout.starts_with("Login here:\n-----\n"),
            "{verb:?}: {out:?}"
        );
        assert!(
            out.stdout.contains(&format!("{}/authorize?", hub.url)),
            "{verb:?}: {out:?}"
        );
        assert_eq!(out.code, Some(1), "{verb:?}: {out:?}");
    }
}

#[test]
fn another_hubs_ca_is_refused_and_the_real_fingerprint_shown() {
    let hub = Hub::start();
    let other = Hub::start();
    let user = User::new();
    for verb in VERBS {
        let out = run_verb(
            &user,
            verb,
            &[
                "--hub",
                &hub.url,
                "--hub-ca",
                other.ca_cert().to_str().unwrap(),
            ],
            &[],
        );
        let line = refused_before_login(&out, 1);
        assert!(line.contains("did not issue"), "{verb:?}: {line}");
        assert!(line.contains(&hub.ca_fingerprint), "{verb:?}: {line}");
        assert!(line.contains("--hub-ca FILE"), "{verb:?}: {line}");
    }
}

#[test]
fn a_site_sets_the_hub_and_its_ca_in_the_environment() {
    let hub = Hub::start();
    let user = User::new();
    let url = hub.url.as_str();
    let ca_cert = hub.ca_cert();
    let ca = ca_cert.to_str().unwrap();
    for verb in VERBS {
        // FERRY_HUB alone: the hub is checked, and the missing CA named.
        let out = run_verb(&user, verb, &[], &[("FERRY_HUB", url)]);
        let line = refused_before_login(&out, 1);
        assert!(line.contains(&hub.ca_fingerprint), "{verb:?}: {line}");
        assert!(line.contains("FERRY_HUB_CA"), "{verb:?}: {line}");

        // Both, as a modulefile sets them: no flags needed.
        let out = run_verb(
            &user,
            verb,
            &[],
            &[("FERRY_HUB", url), ("FERRY_HUB_CA", ca)],
        );
        assert!(
            out.stdout.starts_with("Login here:\n-----\n"),
            "{verb:?}: {out:?}"
        );
        assert!(
            out.stdout.contains(&format!("{}/authorize?", hub.url)),
            "{verb:?}: {out:?}"
        );
    }
}

#[test]
fn without_a_hub_it_says_how_to_name_one() {
    let user = User::new();
    for verb in VERBS {
        let out = run_verb(&user, verb, &[], &[]);
        let line = refused_before_login(&out, 2);
        assert!(line.contains("--hub https://"), "{verb:?}: {line}");
        assert!(line.contains("FERRY_HUB=https://"), "{verb:?}: {line}");
    }
}

#[test]
fn a_setup_key_names_its_hub_over_the_sites_defaults() {
    let hub = Hub::start();
    hub.add_user("alice", "correct horse battery");
    let (id, key) = hub.endpoint_key("alice", "laptop", &[]);
    let user = User::new();
    // A site's module points elsewhere; the key still names its own hub
    // and the CA fingerprint to trust.
    let elsewhere = format!("https://127.0.0.1:{}", closed_loopback_port());
    let no_ca = user.home.join("no-such-ca.crt");
    let no_ca = no_ca.to_str().unwrap();
    let out = run(
        &user,
        &["-setup", &key, "--name", "laptop"],
        &[("FERRY_HUB", &elsewhere), ("FERRY_HUB_CA", no_ca)],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("registered new endpoint, id: {id}")),
        "{out:?}"
    );
}
