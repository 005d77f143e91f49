//! HAProxy in front of several `ferry-hub serve` instances, as
//! `docs/hub.md` deploys it: TCP mode, so TLS passes through and the hub
//! still sees each endpoint's client certificate; `balance first` (every
//! connection to the first live instance, the others stand by) or another
//! algorithm ([`Front::balanced`]); a health check that finds a dead instance within a second or two.

use crate::Daemon;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy (Debian's `haproxy`), stopped with this.
#[derive(Debug)]
pub struct Front {
    _dir: tempfile::TempDir,
    pub port: u16,
    process: Daemon,
}

impl Front {
    /// Whether `haproxy` is installed.
    pub fn available() -> bool {
        crate::on_path("haproxy")
    }

    /// HAProxy on a free loopback port, forwarding to the instances on
    /// `backends` (loopback ports), in that order of preference.
    pub fn start(backends: &[u16]) -> Self {
        Self::balanced(backends, "first")
    }

    /// As [`Front::start`], spreading connections by HAProxy's `balance`
    /// algorithm `how` (`roundrobin`: each new connection to the next
    /// instance, so one user's commands and the endpoints' links land on
    /// different instances).
    pub fn balanced(backends: &[u16], how: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::closed_loopback_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(n, backend)| {
                format!("    server hub{n} 127.0.0.1:{backend} check inter 300ms fall 2 rise 2\n")
            })
            .collect();
        let config = format!(
            "global\n    maxconn 512\n\
             defaults\n    mode tcp\n    option redispatch\n    retries 3\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n\
             frontend hub\n    bind 127.0.0.1:{port}\n    default_backend hubs\n\
             backend hubs\n    balance {how}\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut process = Daemon::watch(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = process.child_mut().try_wait().unwrap() {
                panic!("haproxy exited with {status}: {}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen within 20s: {}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Front {
            _dir: dir,
            port,
            process,
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}
