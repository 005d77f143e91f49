//! Notifications end to end: a real SMTP server (aiosmtpd, writing a
//! Maildir) on loopback as the hub's `[smtp]` relay, and a real HTTP
//! receiver as alice's webhook. A task that succeeds and one that fails
//! each reach her address with their label and counts, and her webhook
//! with a signature that checks; `--notify off` mails nothing; a task that
//! waits is mailed once, a hub restart included; with `starttls = true`
//! mail goes over TLS to a relay whose certificate the hub verifies, after
//! logging in with the password from `password_file`.
//!
//! aiosmtpd comes from PyPI (`pip3 install aiosmtpd`); without it the
//! test is skipped, unless `FERRY_REQUIRE_SMTP=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, closed_loopback_port, skip, wait_until};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

/// `python3 -m aiosmtpd` with its Maildir handler, killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether aiosmtpd is there; its absence fails the test under
/// `FERRY_REQUIRE_SMTP=1`.
fn smtp_can_run() -> bool {
    let installed = aiosmtpd_installed();
    assert!(
        installed || std::env::var_os("FERRY_REQUIRE_SMTP").is_none_or(|v| v != "1"),
        "FERRY_REQUIRE_SMTP=1 but python3 cannot import aiosmtpd: pip3 install aiosmtpd"
    );
    installed
}

/// The SMTP server, or `None` when aiosmtpd is missing and not required.
fn smtp_server() -> Option<Smtp> {
    smtp_server_on(closed_loopback_port(), None)
}

/// A relay that offers STARTTLS, takes nothing before it, and takes
/// mail only from a client that logged in as `user` with `password`:
/// aiosmtpd's own SMTP server, its Maildir handler and its AUTH, set up
/// through its Controller (its command line has no AUTH options).
const AUTH_RELAY: &str = r#"
import ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, cert, key, user, password = sys.argv[1:7]
def check(server, session, envelope, mechanism, data):
    ok = (isinstance(data, LoginPassword) and data.login.decode() == user
          and data.password.decode() == password)
    return AuthResult(success=ok)
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port),
           tls_context=tls, require_starttls=True,
           authenticator=check, auth_required=True).start()
threading.Event().wait()
"#;

/// TLS and login for a relay: certificate, key, and the one user it takes.
struct RelaySecurity<'a> {
    cert: &'a Path,
    key: &'a Path,
    login: (&'a str, &'a str),
}

/// The SMTP server on `port`; with `security` it offers STARTTLS, takes
/// no mail before it, and takes mail only after AUTH as its user.
fn smtp_server_on(port: u16, security: Option<RelaySecurity<'_>>) -> Option<Smtp> {
    if !smtp_can_run() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let mut command = Command::new("python3");
    match security {
        None => {
            command
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir);
        }
        Some(RelaySecurity { cert, key, login }) => {
            command
                .args(["-c", AUTH_RELAY])
                .arg(port.to_string())
                .arg(&maildir)
                .arg(cert)
                .arg(key)
                .args([login.0, login.1]);
        }
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let smtp = Smtp {
        child,
        port,
        _dir: dir,
        maildir,
    };
    wait_until(Duration::from_secs(30), "aiosmtpd listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(smtp)
}

/// Every message the SMTP server took, as text: its headers, and its
/// body decoded as a mail reader shows it.
fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries
        .map(|e| readable(&fs::read_to_string(e.unwrap().path()).unwrap()))
        .collect()
}

/// A message with a quoted-printable body (RFC 2045) decoded.
fn readable(message: &str) -> String {
    let message = message.replace("\r\n", "\n");
    let Some((head, body)) = message.split_once("\n\n") else {
        return message;
    };
    if !head.contains("Content-Transfer-Encoding: quoted-printable") {
        return message;
    }
    let joined = body.replace("=\n", "");
    let mut bytes = Vec::new();
    let mut rest = joined.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'=', [hi, lo, after @ ..]) => {
                let hex = std::str::from_utf8(&[*hi, *lo]).unwrap().to_string();
                bytes.push(u8::from_str_radix(&hex, 16).unwrap());
                rest = after;
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    format!("{head}\n\n{}", String::from_utf8(bytes).unwrap())
}

/// One POST the receiver took: its headers (lowercased names) and body.
#[derive(Debug, Clone)]
struct Post {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 server on loopback that answers every request 200 and
/// keeps what it got.
struct Receiver {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let kept = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                assert!(line.starts_with("POST /hook/alice "), "{line}");
                let mut headers = HashMap::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let trimmed = line.trim_end();
                    if trimmed.is_empty() {
                        break;
                    }
                    let (name, value) = trimmed.split_once(':').unwrap();
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
                }
                let length: usize = headers["content-length"].parse().unwrap();
                assert!(length < 1 << 20, "a bounded body: {length}");
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .unwrap();
                kept.lock().unwrap().push(Post { headers, body });
            }
        });
        Self { port, posts }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook/alice", self.port)
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }
}

/// The signature a receiver expects: HMAC-SHA256 of `TIMESTAMP.BODY`.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The mail that names `task_id`, once there is one.
fn mail_of(maildir: &Path, task_id: &str) -> String {
    let mut found = None;
    wait_until(LIMIT, &format!("a mail about task {task_id}"), || {
        found = mails(maildir).into_iter().find(|m| m.contains(task_id));
        found.is_some()
    });
    found.unwrap()
}

/// The webhook POST about `task_id`, once there is one.
fn post_of(receiver: &Receiver, task_id: &str) -> Post {
    let mut found = None;
    wait_until(
        LIMIT,
        &format!("a webhook POST about task {task_id}"),
        || {
            found = receiver.posts().into_iter().find(|p| {
                serde_json::from_slice::<serde_json::Value>(&p.body).unwrap()["task"]["id"]
                    == task_id
            });
            found.is_some()
        },
    );
    found.unwrap()
}

#[test]
fn ends_are_mailed_to_the_owner_and_posted_signed_to_her_webhook() {
    let Some(smtp) = smtp_server() else {
        skip("python3 cannot import aiosmtpd (pip3 install aiosmtpd)");
        return;
    };
    let receiver = Receiver::start();
    let lab = Lab::builder()
        // The receiver is on loopback, which webhooks reach only when
        // the admin allows it.
        .hub_setting("webhook_private_addresses = true")
        .hub_config(&smtp_section(smtp.port, false))
        .alice_email("alice@example.org")
        .start();

    // Her webhook: the secret is shown once, at creation.
    let added = lab.ferry(&[
        "webhook",
        "add",
        &receiver.url(),
        "--events",
        "succeeded,failed",
        "--json",
    ]);
    assert_eq!(added.code, Some(0), "{added:?}");
    let hook: serde_json::Value = serde_json::from_str(&added.stdout).unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 40, "{hook}");
    assert_eq!(hook["events"], "succeeded,failed");
    let listed = lab.ferry(&["webhook", "list", "--json"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], hook["id"]);
    assert_eq!(listed[0]["url"], receiver.url().as_str());
    assert!(listed[0].get("secret").is_none(), "shown once: {listed}");

    fs::write(lab.src.home.join("data.bin"), vec![7u8; 12_345]).unwrap();
    let ok = lab.transfer(&[
        "src:/~/data.bin",
        "dst:/~/data.bin",
        "--label",
        "nightly-run",
    ]);
    lab.wait(&ok);
    let bad = lab.transfer(&["src:/~/no-such-file", "dst:/~/x", "--label", "doomed-run"]);
    lab.wait_failed(&bad);

    let mail = mail_of(&smtp.maildir, &ok);
    for expected in [
        "To: alice@example.org",
        "From: ferry <ferry@hub.test>",
        "Subject: ferry: task \"nightly-run\" SUCCEEDED",
        "Files:     1 transferred, 0 skipped, 1 found",
        "(12345 bytes) transferred",
        &format!("Details: {}/activity/{ok}", lab.hub.url),
    ] {
        assert!(mail.contains(expected), "{expected:?} in:\n{mail}");
    }
    let mail = mail_of(&smtp.maildir, &bad);
    for expected in [
        "To: alice@example.org",
        "Subject: ferry: task \"doomed-run\" FAILED",
        "Files:     0 transferred",
        "no-such-file",
        &format!("Details: {}/activity/{bad}", lab.hub.url),
    ] {
        assert!(mail.contains(expected), "{expected:?} in:\n{mail}");
    }

    for (task, event, label, status) in [
        (&ok, "succeeded", "nightly-run", "SUCCEEDED"),
        (&bad, "failed", "doomed-run", "FAILED"),
    ] {
        let post = post_of(&receiver, task);
        let timestamp = &post.headers["x-ferry-timestamp"];
        assert_eq!(
            post.headers["x-ferry-signature"],
            expected_signature(&secret, timestamp, &post.body),
            "signed with her secret over the timestamp and body"
        );
        assert_ne!(
            post.headers["x-ferry-signature"],
            expected_signature("another secret", timestamp, &post.body)
        );
        assert_eq!(post.headers["x-ferry-event"], event);
        assert_eq!(post.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(body["event"], event, "{body}");
        assert_eq!(body["task"]["label"], label, "{body}");
        assert_eq!(body["task"]["status"], status, "{body}");
        assert_eq!(
            body["task"]["url"],
            format!("{}/activity/{task}", lab.hub.url),
            "{body}"
        );
    }
    let post = post_of(&receiver, &ok);
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["task"]["files_transferred"], 1, "{body}");
    assert_eq!(body["task"]["bytes_transferred"], 12_345, "{body}");

    // --notify off: no mail (the webhook, with events of its own, still
    // hears). A task after it with the default is mailed; the hub prepares
    // each task's news in order, so once the later one's mail is in and
    // the quiet one's POST too, a mail for the quiet one would be as well.
    let quiet = lab.transfer(&["src:/~/data.bin", "dst:/~/quiet.bin", "--notify", "off"]);
    lab.wait(&quiet);
    let after = lab.transfer(&["src:/~/data.bin", "dst:/~/after.bin"]);
    lab.wait(&after);
    post_of(&receiver, &quiet);
    mail_of(&smtp.maildir, &after);
    let all = mails(&smtp.maildir);
    assert!(
        all.iter().all(|m| !m.contains(&quiet)),
        "--notify off mailed: {all:?}"
    );
    assert_eq!(all.len(), 3, "one mail for each task that asked: {all:?}");

    // Deleting the webhook stops it; someone else's id is not found.
    let id = hook["id"].as_str().unwrap();
    let deleted = lab.ferry(&["webhook", "delete", id]);
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    assert!(deleted.stdout.contains(id), "{deleted:?}");
    let again = lab.ferry(&["webhook", "delete", id]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("no webhook"), "{again:?}");
    let listed = lab.ferry(&["webhook", "list"]);
    assert!(listed.stdout.contains("No webhooks"), "{listed:?}");
}

/// `[smtp]` for the relay on `port`.
fn smtp_section(port: u16, starttls: bool) -> String {
    format!(
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"ferry@hub.test\"\nstarttls = {starttls}\n"
    )
}

#[test]
fn with_starttls_and_a_login_mail_goes_over_tls_to_a_relay_the_hub_trusts() {
    let port = closed_loopback_port();
    if !smtp_can_run() {
        skip("python3 cannot import aiosmtpd (pip3 install aiosmtpd)");
        return;
    }
    // The relay's password is in a file of its own, as an admin keeps it.
    let relay_login = ("ferry-relay", "s3cret relay password");
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("smtp-password");
    fs::write(&password_file, format!("{}\n", relay_login.1)).unwrap();
    let mut lab = Lab::builder()
        .hub_config(&format!(
            "{}username = \"{}\"\npassword_file = \"{}\"\n",
            smtp_section(port, true),
            relay_login.0,
            password_file.display()
        ))
        .alice_email("alice@example.org")
        .start();
    // The relay presents the hub's own certificate (it names 127.0.0.1);
    // the hub trusts its CA as the system's (SSL_CERT_FILE). The relay
    // takes no mail before STARTTLS and none before AUTH as its user, so
    // a mail that arrives went over TLS with the password from the file.
    let smtp = smtp_server_on(
        port,
        Some(RelaySecurity {
            cert: &lab.hub.dir.join("server.crt"),
            key: &lab.hub.dir.join("server.key"),
            login: relay_login,
        }),
    )
    .unwrap();
    let ca = lab.hub.ca_cert();
    lab.hub.kill();
    lab.hub.serve_with_env(&[("SSL_CERT_FILE", ca.as_os_str())]);
    fs::write(lab.src.home.join("t.bin"), b"tls").unwrap();
    let id = lab.transfer(&["src:/~/t.bin", "dst:/~/t.bin", "--label", "over-tls"]);
    lab.wait(&id);
    let mail = mail_of(&smtp.maildir, &id);
    assert!(
        mail.contains("Subject: ferry: task \"over-tls\" SUCCEEDED"),
        "{mail}"
    );
}

#[test]
fn a_task_that_waits_is_mailed_once_even_across_a_hub_restart() {
    let Some(smtp) = smtp_server() else {
        skip("python3 cannot import aiosmtpd (pip3 install aiosmtpd)");
        return;
    };
    let mut lab = Lab::builder()
        .hub_config(&smtp_section(smtp.port, false))
        .alice_email("alice@example.org")
        .dst_offline()
        .start();
    fs::write(lab.src.home.join("w.bin"), b"waits").unwrap();
    let id = lab.transfer(&[
        "src:/~/w.bin",
        "dst:/~/w.bin",
        "--label",
        "patient",
        "--notify",
        "inactive,succeeded",
    ]);
    let waiting = mail_of(&smtp.maildir, &id);
    assert!(
        waiting.contains("Subject: ferry: task \"patient\" is waiting"),
        "{waiting}"
    );
    assert!(waiting.contains("'dst'"), "names the endpoint: {waiting}");

    // kill -9 the hub: once its start-up grace is over it records the wait
    // again, and the store remembers it was told.
    lab.hub.kill();
    lab.hub.serve();
    wait_until(LIMIT, "the wait recorded again after the restart", || {
        let events = lab.ferry(&["task", "events", &id]).stdout;
        events.matches("ENDPOINT_OFFLINE").count() >= 2
    });
    lab.start_dst();
    lab.wait(&id);
    let mut ended = None;
    wait_until(LIMIT, "the mail of the task's end", || {
        ended = mails(&smtp.maildir)
            .into_iter()
            .find(|m| m.contains(&id) && m.contains("SUCCEEDED"));
        ended.is_some()
    });
    let about: Vec<String> = mails(&smtp.maildir)
        .into_iter()
        .filter(|m| m.contains(&id))
        .collect();
    assert_eq!(about.len(), 2, "one wait, one end: {about:#?}");
}

#[test]
fn hostile_webhook_urls_and_notify_settings_are_refused_with_what_to_do() {
    let lab = Lab::new();
    for (url, says) in [
        ("file:///etc/passwd", "https://"),
        ("gopher://example.org/", "https://"),
        ("https://", "not a URL"),
    ] {
        let out = lab.ferry(&["webhook", "add", url]);
        assert_eq!(out.code, Some(1), "{url}: {out:?}");
        assert!(out.stderr.contains(says), "{url}: {out:?}");
    }
    // The hub's own host and networks are out of a webhook's reach.
    for url in [
        "http://127.0.0.1:5432/",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let out = lab.ferry(&["webhook", "add", url]);
        assert_eq!(out.code, Some(1), "{url}: {out:?}");
        assert!(
            out.stderr.contains("webhook_private_addresses"),
            "{url}: {out:?}"
        );
    }
    let long = format!("https://example.org/{}", "a".repeat(3000));
    let out = lab.ferry(&["webhook", "add", &long]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("longer than"), "{out:?}");
    let out = lab.ferry(&["transfer", "src:/~/a", "dst:/~/b", "--notify", "sometimes"]);
    assert_eq!(out.code, Some(2), "bad usage: {out:?}");
    assert!(out.stderr.contains("give on, off"), "{out:?}");
}
