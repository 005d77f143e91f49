//! Test harness for ferry's end-to-end tests: finds the built binaries,
//! makes throwaway homes and endpoint dirs, runs commands as a user would,
//! and waits for conditions with a bound on every wait.
//!
//! The binaries come from the workspace's target dir; build them first with
//! `cargo build --workspace --bins` (the README's test command does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The dir holding the built binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is inside target/<profile>/deps")
        .to_path_buf();
    assert!(
        dir.join("ferry").is_file(),
        "{} has no ferry binary: run `cargo build --workspace --bins` before the tests",
        dir.display()
    );
    dir
}

pub fn ferry_bin() -> PathBuf {
    bin_dir().join("ferry")
}

/// Waits until `cond` holds, polling, for at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// What a finished command printed, for assertions that show it on failure.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        Ran {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A user with a throwaway home directory and an endpoint config dir in it.
#[derive(Debug)]
pub struct User {
    _tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub dir: PathBuf,
}

impl Default for User {
    fn default() -> Self {
        Self::new()
    }
}

impl User {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-e2e")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        fs::create_dir(&home).unwrap();
        let dir = home.join(".ferry");
        User {
            _tmp: tmp,
            home,
            dir,
        }
    }

    /// Writes the files `ferry -setup` would, pointing at a hub URL that
    /// nothing serves, until the hub exists.
    pub fn set_up_endpoint(&self, name: &str) {
        fs::create_dir_all(&self.dir).unwrap();
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).unwrap();
        let port = closed_loopback_port();
        fs::write(
            self.dir.join("endpoint.toml"),
            format!(
                "id = \"0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11\"\nname = \"{name}\"\nhub_url = \"https://127.0.0.1:{port}\"\n"
            ),
        )
        .unwrap();
        for f in ["endpoint.key", "endpoint.crt", "hub-ca.crt"] {
            let path = self.dir.join(f);
            fs::write(&path, "-----BEGIN PLACEHOLDER-----\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(self.dir.join("config-paths"), "~/,0,1\n").unwrap();
    }

    /// `ferry ARGS -dir DIR` as this user, with a clean environment.
    pub fn ferry(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(args)
            .arg("-dir")
            .arg(&self.dir)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ferry ARGS` to completion (bounded by the command itself).
    pub fn run(&self, args: &[&str]) -> Ran {
        self.ferry(args).output().unwrap().into()
    }

    /// `ferry -start` in the foreground, as `ferry -start &` would run it,
    /// returning once `-status` answers.
    pub fn start_foreground(&self, extra: &[&str]) -> Daemon {
        let mut args = vec!["-start"];
        args.extend_from_slice(extra);
        self.start_with(self.ferry(&args))
    }

    /// Spawns a prepared `ferry -start` command; returns once `-status`
    /// answers.
    pub fn start_with(&self, mut command: Command) -> Daemon {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut daemon = Daemon::watch(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.run(&["-status"]).code == Some(0) {
                return daemon;
            }
            if let Some(status) = daemon.child_mut().try_wait().unwrap() {
                panic!("daemon exited during start with {status}: {}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer within 20s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("ferry.sock")
    }
}

/// A foreground daemon process; killed if the test ends without stopping it.
/// Its stderr (the log, in the foreground) is collected as it comes.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn watch(mut child: Child) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "daemon did not log {text:?} within {limit:?}; log so far:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits (bounded) for the process to exit; returns its code and log.
    pub fn wait_exit(mut self, limit: Duration) -> Ran {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ran {
            code: status.code(),
            stdout: String::new(),
            stderr: self.log(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value after `prefix` on the first line that starts with it.
pub fn line_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn on_path(program: impl AsRef<OsStr>) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program.as_ref()).is_file()))
        .unwrap_or(false)
}
