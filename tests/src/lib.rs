//! Test harness for ferry's end-to-end tests: finds the built binaries,
//! makes throwaway homes and endpoint dirs, runs commands as a user would,
//! and waits for conditions with a bound on every wait.
//!
//! The binaries come from the workspace's target dir; build them first with
//! `cargo build --workspace --bins` (the README's test command does).
//!
//! [`Lab`] is the setting most tests start from (a hub, two endpoints,
//! their daemons); [`Hub`], [`User`] and [`Daemon`] are its parts, for
//! tests that need something else.
//!
//! A test that cannot run here (not root, a tool missing) calls
//! [`skip`] before it returns, which prints `SKIPPED: TEST: WHY` on the
//! process's stderr past libtest's capture, so the line shows in every
//! `cargo test` run and CI log, with or without `--nocapture`; the test
//! still counts as passed. `tidy` fails on an early return from a test
//! that does not call `skip`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod fault_proxy;
pub mod haproxy;
pub mod lab;
pub mod postgres;
pub mod relay_checks;

pub use lab::{Lab, pattern, tree};

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
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

pub fn hub_bin() -> PathBuf {
    bin_dir().join("ferry-hub")
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

impl Ran {
    /// Its output, once it exited 0 (else the test fails with all of it).
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        &self.stdout
    }
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

    /// The id `ferry -setup` wrote to this user's `endpoint.toml`.
    pub fn endpoint_id(&self) -> String {
        let toml = fs::read_to_string(self.dir.join("endpoint.toml")).unwrap();
        line_value(&toml, "id = ")
            .unwrap()
            .trim_matches('"')
            .to_string()
    }

    /// A second machine of `other`'s endpoint (a transfer node): the same
    /// home directory (a shared filesystem), so the same `~/` and the
    /// same default config-paths, but a config dir of its own.
    pub fn sharing_home(other: &User) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-e2e-node")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("ferry");
        User {
            _tmp: tmp,
            home: other.home.clone(),
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

    /// Runs a user verb against `hub` with an access token in the
    /// environment, as a script would (no -dir: user verbs do not need it).
    pub fn run_as(&self, hub: &Hub, token: &str, args: &[impl AsRef<OsStr>]) -> Ran {
        Command::new(ferry_bin())
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("FERRY_TOKEN", token)
            .env("FERRY_HUB", &hub.url)
            .env("FERRY_HUB_CA", hub.ca_cert())
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// `ferry -setup KEY` for this user's dir.
    pub fn setup_with_key(&self, key: &str, name: &str) -> Ran {
        self.run(&["-setup", key, "--name", name])
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

/// A loopback port nothing listens on (bound, then released), for a
/// daemon to listen on later. Below the kernel's ephemeral range (32768
/// and up by default): a port from that range could meanwhile become the
/// local end of some outgoing connection, and the daemon's bind would
/// fail ("Address already in use").
pub fn closed_loopback_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PICKED: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..2000 {
        let n = PICKED.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7_919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000")
}

/// The value after `prefix` on the first line that starts with it.
pub fn line_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix))
}

/// Replaces `from` with `to` in a config file, and fails the test when
/// `from` is not there: an edit that silently did nothing would leave the
/// test running against defaults it believes it changed.
pub fn edit_config(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} should hold {from:?} exactly once:\n{text}",
        path.display()
    );
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A test that cannot run here says so where the person running the tests
/// sees it, as `SKIPPED: TEST: REASON`; call it, then return. libtest
/// captures `eprintln!` (only the macros), so this writes to the process's
/// stderr handle directly. TEST is the running test's name, which libtest
/// gives the thread it runs the test on.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("(a test)");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn on_path(program: impl AsRef<OsStr>) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program.as_ref()).is_file()))
        .unwrap_or(false)
}

/// Text of an HTML page as a browser shows it: the hub's templates escape
/// these five.
pub fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `command` (its program, arguments, and only the variables it sets,
/// with `PATH`) run inside network namespace `netns` by `ip netns exec`.
pub fn in_netns(netns: &str, command: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["netns", "exec", netns])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Runs a command to completion and returns what it printed.
pub fn run_command(cmd: &mut Command) -> Ran {
    cmd.stdin(Stdio::null()).output().unwrap().into()
}

/// A line for a hub's settings that keeps it on SQLite when the suite
/// runs every other hub on PostgreSQL ([`postgres::every_hub`]): for a
/// test of SQLite itself, or of moving off it.
pub const ON_SQLITE: &str = "# ferry-tests: this hub stays on SQLite";

/// A real `ferry-hub` serving on a loopback port, with its own state dir.
#[derive(Debug)]
pub struct Hub {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub url: String,
    pub port: u16,
    /// The SHA-256 of the hub's CA certificate as `ferry-hub init` printed
    /// it (`AB:CD:...`): what a user is told to compare.
    pub ca_fingerprint: String,
    process: Option<Daemon>,
    /// Added to the environment of each `ferry-hub serve`.
    env: Vec<(String, std::ffi::OsString)>,
    /// The network namespace it serves in, if not the test's own.
    netns: Option<String>,
    /// Its PostgreSQL schema, when the suite runs every hub on PostgreSQL
    /// ([`postgres::every_hub`]); dropped with the hub.
    _schema: Option<postgres::Schema>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::start()
    }
}

impl Hub {
    /// `ferry-hub init` then `serve`, with one-second heartbeats so link
    /// failures and revocations show quickly.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// As [`Hub::start`], with `settings` (TOML lines) added to
    /// `hub.toml` before it serves.
    pub fn start_with(settings: &str) -> Self {
        Self::start_with_env(settings, &[])
    }

    /// As [`Hub::start_with`], with these variables in the environment of
    /// every `ferry-hub serve` it runs (this one and restarts).
    pub fn start_with_env(settings: &str, env: &[(&str, &OsStr)]) -> Self {
        let port = closed_loopback_port();
        Self::start_at("127.0.0.1", port, None, settings, env)
    }

    /// A hub serving inside network namespace `netns` (made by the
    /// test), reached (and listening) at `https://HOST:PORT`.
    pub fn start_in_netns(
        netns: &str,
        host: &str,
        port: u16,
        settings: &str,
        env: &[(&str, &OsStr)],
    ) -> Self {
        Self::start_at(host, port, Some(netns), settings, env)
    }

    fn start_at(
        host: &str,
        port: u16,
        netns: Option<&str>,
        settings: &str,
        env: &[(&str, &OsStr)],
    ) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-hub-e2e")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("hub");
        let url = format!("https://{host}:{port}");
        let init = run_command(
            Command::new(hub_bin())
                .args(["init", "--url", &url, "--json", "--dir"])
                .arg(&dir),
        );
        assert_eq!(init.code, Some(0), "hub init failed: {init:?}");
        let doc: serde_json::Value = serde_json::from_str(&init.stdout)
            .unwrap_or_else(|e| panic!("hub init --json: {e}: {init:?}"));
        let ca_fingerprint = doc["ca_fingerprint"].as_str().unwrap().to_string();
        assert!(ca_fingerprint.len() == 95, "{ca_fingerprint}");
        assert_eq!(
            doc["ca_cert"].as_str().map(PathBuf::from),
            Some(dir.join("ca.crt")),
            "{init:?}"
        );
        edit_config(
            &dir.join("hub.toml"),
            "heartbeat_secs = 15",
            "heartbeat_secs = 1",
        );
        // A test that names its database (or SQLite's, `ON_SQLITE`) keeps
        // it, and a hub in a network namespace of its own cannot reach the
        // server on this one's loopback; any other hub is on PostgreSQL
        // when the suite runs that way.
        let schema =
            (!settings.contains("database =") && !settings.contains(ON_SQLITE) && netns.is_none())
                .then(postgres::every_hub)
                .flatten();
        let database = schema
            .as_ref()
            .map(|schema| format!("database = \"{}\"\n", schema.url()))
            .unwrap_or_default();
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join("hub.toml"))
            .unwrap()
            .write_all(format!("{database}{settings}").as_bytes())
            .unwrap();
        let mut hub = Hub {
            _schema: schema,
            _tmp: tmp,
            dir,
            url,
            port,
            ca_fingerprint,
            process: None,
            netns: netns.map(str::to_string),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_os_string()))
                .collect(),
        };
        hub.serve();
        hub
    }

    /// (Re)starts `ferry-hub serve`, returning once its port accepts.
    pub fn serve(&mut self) {
        self.serve_with_env(&[]);
    }

    /// [`Hub::serve`] with these variables in its environment
    /// (`SSL_CERT_FILE`, say, for the CAs it trusts outbound).
    pub fn serve_with_env(&mut self, env: &[(&str, &OsStr)]) {
        self.process = Some(self.spawn_serve(None, env));
    }

    /// Another `ferry-hub serve` of this hub's state dir, on `port`: an
    /// instance sharing the hub's database (which must be PostgreSQL's for
    /// the two to work together), returning once it accepts.
    pub fn serve_instance(&self, port: u16) -> Daemon {
        self.spawn_serve(Some(port), &[])
    }

    fn spawn_serve(&self, port: Option<u16>, env: &[(&str, &OsStr)]) -> Daemon {
        let mut command = Command::new(hub_bin());
        command
            .args(["serve", "--dir"])
            .arg(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(port) = port {
            command.arg("--listen").arg(format!("127.0.0.1:{port}"));
        }
        command.envs(env.iter().copied()).env("FERRY_LOG", "info");
        if let Some(netns) = &self.netns {
            command = in_netns(netns, &command);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let port = port.unwrap_or(self.port);
        let mut daemon = Daemon::watch(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = |daemon: &Daemon| match &self.netns {
            // Its port is in another namespace: its log says it listens.
            Some(_) => daemon.log().contains("ferry-hub serving"),
            None => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        };
        while !listening(&daemon) {
            if let Some(status) = daemon.child_mut().try_wait().unwrap() {
                panic!("ferry-hub exited with {status}: {}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "ferry-hub did not listen within 20s: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// kill -9 the hub process.
    pub fn kill(&mut self) {
        if let Some(daemon) = self.process.take() {
            daemon.signal(nix::sys::signal::Signal::SIGKILL);
            daemon.wait_exit(Duration::from_secs(10));
        }
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Daemon::log).unwrap_or_default()
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// An HTTPS client for the hub's pages, as a browser that was given
    /// the hub's CA: it trusts that CA only, and leaves redirects to the
    /// test.
    pub fn web_client(&self) -> reqwest::Client {
        let pem = fs::read(self.ca_cert()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Runs `ferry-hub ARGS --dir DIR`.
    pub fn admin(&self, args: &[&str]) -> Ran {
        run_command(
            Command::new(hub_bin())
                .args(args)
                .arg("--dir")
                .arg(&self.dir),
        )
    }

    pub fn add_user(&self, name: &str, password: &str) {
        self.add_user_with(name, password, &[]);
    }

    /// `ferry-hub user add NAME --password-stdin EXTRA...`.
    pub fn add_user_with(&self, name: &str, password: &str, extra: &[&str]) {
        let mut child = Command::new(hub_bin())
            .args(["user", "add", name, "--password-stdin"])
            .args(extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out: Ran = child.wait_with_output().unwrap().into();
        assert_eq!(out.code, Some(0), "user add failed: {out:?}");
    }

    /// An access token for `user`, as `ferry-hub token create` prints it.
    pub fn token(&self, user: &str) -> String {
        let out = self.admin(&["token", "create", "--user", user]);
        assert_eq!(out.code, Some(0), "{out:?}");
        out.stdout.trim().to_string()
    }

    /// (endpoint id, setup key) from `ferry-hub endpoint create`.
    pub fn endpoint_key(&self, owner: &str, name: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "endpoint", "create", "--owner", owner, "--name", name, "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.admin(&args);
        assert_eq!(out.code, Some(0), "{out:?}");
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        (
            doc["id"].as_str().unwrap().to_string(),
            doc["setup_key"].as_str().unwrap().to_string(),
        )
    }
}

impl User {
    /// Waits (bounded) until `-status` says `Hub: STATE`.
    pub fn wait_hub_state(&self, state: &str, limit: Duration) -> Ran {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.run(&["-status"]);
            if line_value(&status.stdout, "Hub: ") == Some(state) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hub state never became {state:?}; last status: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
