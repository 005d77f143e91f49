//! Clients that hold the hub's resources without authenticating: bodies
//! dribbled a byte at a time, large bodies sent without a token, many
//! connections from one address. A real `ferry-hub serve` on loopback,
//! driven over raw TLS so the test decides exactly which bytes go out when.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long any one answer from the hub may take before the test gives up.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// The address the start-up probe connects from, so that its connection
/// (which the hub may still count for a moment) is not the tests'.
const PROBE_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// `ferry-hub serve` on a loopback port with its own state dir.
struct TestHub {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addr: SocketAddr,
    child: Child,
    tls: TlsConnector,
}

impl TestHub {
    /// `init`, then `serve` with `settings` (`key = value` lines) replacing
    /// the defaults `init` wrote.
    async fn start(settings: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hub");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let init = Command::new(env!("CARGO_BIN_EXE_ferry-hub"))
            .args(["init", "--url", &format!("https://{addr}"), "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let config = dir.join("hub.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        for (key, value) in settings {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("hub.toml has no {key}:\n{text}"))
                .to_string();
            text = text.replace(&line, &format!("{key} = {value}"));
        }
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(tmp.path().join("hub.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-hub"))
            .args(["serve", "--dir"])
            .arg(&dir)
            .env("FERRY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = TcpSocket::new_v4().unwrap();
            probe.bind(SocketAddr::from((PROBE_FROM, 0))).unwrap();
            if probe.connect(addr).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ferry-hub exited with {status}: {}", log_of(tmp.path()));
            }
            assert!(
                Instant::now() < deadline,
                "ferry-hub did not listen within 20 s: {}",
                log_of(tmp.path())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestHub {
            _tmp: tmp,
            dir,
            addr,
            child,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    fn log(&self) -> String {
        log_of(self.dir.parent().unwrap())
    }

    /// A TCP connection to the hub from `from` (a loopback address).
    async fn tcp_from(&self, from: Ipv4Addr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(self.addr).await.unwrap()
    }

    async fn tls_over(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::IpAddress(IpAddr::from(Ipv4Addr::LOCALHOST).into());
        tokio::time::timeout(ANSWER_WITHIN, self.tls.connect(name, tcp))
            .await
            .unwrap_or_else(|_| panic!("no TLS handshake within {ANSWER_WITHIN:?}"))
    }

    async fn tls_from(&self, from: Ipv4Addr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp_from(from).await;
        self.tls_over(tcp).await
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(tmp: &Path) -> String {
    std::fs::read_to_string(tmp.join("hub.log")).unwrap_or_default()
}

/// Reads until the end of a response head (or EOF), within [`ANSWER_WITHIN`].
async fn response_head(tls: &mut TlsStream<TcpStream>) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(ANSWER_WITHIN, read).await.is_err() {
        panic!(
            "no answer within {ANSWER_WITHIN:?}; so far: {:?}",
            String::from_utf8_lossy(&head)
        );
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn get_root(hub: &TestHub, tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            hub.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    response_head(tls).await
}

#[tokio::test]
async fn a_request_body_dribbled_a_byte_at_a_time_is_cut_off() {
    let hub = TestHub::start(&[("body_timeout_secs", "2")]).await;
    let mut tls = hub.tls_from(Ipv4Addr::LOCALHOST).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n",
        hub.addr
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    // One byte at a time, each followed by a short look for an answer: the
    // body would take 100 minutes this way, and the loop stops far sooner.
    let mut buf = [0u8; 4096];
    let mut sent = 0;
    let outcome = loop {
        assert!(
            sent < 300,
            "the hub still waited for the body after {sent} bytes sent one at a time; its log:\n{}",
            hub.log()
        );
        if tls.write_all(b"a").await.is_err() || tls.flush().await.is_err() {
            break String::new();
        }
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break String::new(),
            Ok(Ok(n)) => break String::from_utf8_lossy(&buf[..n]).into_owned(),
        }
    };
    assert!(
        outcome.is_empty() || outcome.starts_with("HTTP/1.1 408"),
        "{outcome}"
    );
    // The hub serves others as before.
    let mut other = hub.tls_from(Ipv4Addr::LOCALHOST).await.unwrap();
    let answer = get_root(&hub, &mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn api_bodies_are_not_read_before_the_caller_is_authenticated() {
    let hub = TestHub::start(&[]).await;
    for (path, length) in [
        ("/api/v1/tasks", 1_000_000),
        ("/api/v1/endpoints", 60_000),
        ("/api/v1/endpoints/register", 60_000),
        ("/api/v1/endpoints/laptop/fs", 60_000),
    ] {
        let mut tls = hub.tls_from(Ipv4Addr::LOCALHOST).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            hub.addr
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // A start of the body; the rest never comes.
        tls.write_all(&[b' '; 16 * 1024]).await.unwrap();
        tls.flush().await.unwrap();
        let answer = response_head(&mut tls).await;
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{path}: {answer}\nthe hub's log:\n{}",
            hub.log()
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let hub = TestHub::start(&[
        ("max_connections_per_address", "2"),
        // The held connections must outlast the test, however slow the machine.
        ("header_timeout_secs", "600"),
    ])
    .await;
    let here = Ipv4Addr::LOCALHOST;
    // Two connections that never even start TLS take this address's share.
    let first = hub.tcp_from(here).await;
    let _second = hub.tcp_from(here).await;
    let third = hub.tls_from(here).await;
    assert!(
        third.is_err(),
        "a third connection from one address was served; the hub's log:\n{}",
        hub.log()
    );
    // Another address is not affected.
    let elsewhere = Ipv4Addr::new(127, 0, 0, 2);
    let mut other = hub.tls_from(elsewhere).await.unwrap();
    let answer = get_root(&hub, &mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Closing one frees its place (once the hub has seen the close).
    drop(first);
    let mut served = None;
    for _ in 0..100 {
        if let Ok(tls) = hub.tls_from(here).await {
            served = Some(tls);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tls = served.expect("a place freed by a closed connection is given again");
    let answer = get_root(&hub, &mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
