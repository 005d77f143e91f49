//! `Lab`: the setting most end-to-end tests start from. A real hub; alice
//! with two endpoints, `src` and `dst`, each on its own "machine" (home
//! directory), set up with a key and running their daemons; and the verbs
//! she runs against them (`ferry transfer`, `task wait`, `task show`,
//! `task events`), so a test reads as her session:
//!
//! ```no_run
//! # use ferry_tests::Lab;
//! let lab = Lab::new();
//! std::fs::write(lab.src.home.join("a"), b"a").unwrap();
//! let id = lab.transfer(&["src:/~/a", "dst:/~/b"]);
//! let task = lab.wait(&id);
//! assert_eq!(task["files"], 1, "{}", lab.events(&id));
//! ```
//!
//! [`Lab::builder`] covers the variations the tests use: a fault proxy in
//! front of `dst`'s data listener or between `src` and the hub, a umask
//! and other files for `dst` before its daemon starts, and a `dst` that
//! is not running (or was never set up at all).

use crate::fault_proxy::FaultProxy;
use crate::haproxy::Front;
use crate::{Daemon, Hub, Ran, User, closed_loopback_port, edit_config, line_value};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bound on every wait the lab does itself (daemons connecting,
/// exiting).
const LIMIT: Duration = Duration::from_secs(120);

/// `--timeout` of `ferry task wait` in [`Lab::wait`] and [`Lab::wait_end`]:
/// long enough for the largest transfer a test makes (4 GiB, sparse).
const TASK_WAIT_SECS: &str = "300";

/// A hub, alice's endpoints `src` and `dst`, their daemons, and a token
/// for alice's user verbs (run on `src`'s machine).
#[derive(Debug)]
pub struct Lab {
    pub hub: Hub,
    pub src: User,
    pub dst: User,
    /// An access token for alice, as `ferry-hub token create` prints it.
    pub token: String,
    proxy: Option<FaultProxy>,
    /// `dst`'s data listener, behind the proxy (`proxy_data`).
    data_listener: Option<u16>,
    src_daemon: Option<Daemon>,
    dst_daemon: Option<Daemon>,
    /// The hub instances after the first (`LabBuilder::instances`), by
    /// their ports; `None` once killed.
    instances: Vec<(u16, Option<Daemon>)>,
    /// HAProxy in front of the instances (`LabBuilder::instances`).
    pub front: Option<Front>,
}

/// What becomes of `dst` at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dst {
    /// Set up, daemon running.
    Running,
    /// Set up, daemon not started.
    Offline,
    /// Created on the hub (a setup key made), never set up anywhere.
    NeverSetUp,
    /// No such endpoint.
    Absent,
}

/// Where the fault proxy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxied {
    /// In front of `dst`'s data listener: `dst` advertises the proxy as
    /// its `data_address`, with `data_ports` pinned to the one port the
    /// proxy forwards to (as an endpoint behind a port-forwarding NAT).
    Data,
    /// Between `src`'s daemon and the hub: `src`'s `hub_url` names the
    /// proxy (the hub's certificate names 127.0.0.1, so TLS still verifies).
    Control,
}

/// Something done to `dst`'s machine before its daemon starts.
type Prepare = Box<dyn FnOnce(&User)>;

/// The variations of a [`Lab`]; [`LabBuilder::start`] makes it.
pub struct LabBuilder {
    dst: Dst,
    proxy: Option<Proxied>,
    umask: Option<String>,
    prepare_dst: Vec<Prepare>,
    hub_settings: String,
    hub_env: Vec<(String, std::ffi::OsString)>,
    src_settings: String,
    dst_settings: String,
    alice_email: Option<String>,
    instances: usize,
    balance: &'static str,
}

impl std::fmt::Debug for LabBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabBuilder")
            .field("dst", &self.dst)
            .field("proxy", &self.proxy)
            .field("umask", &self.umask)
            .field("prepare_dst", &self.prepare_dst.len())
            .field("hub_settings", &self.hub_settings)
            .field("hub_env", &self.hub_env)
            .field("src_settings", &self.src_settings)
            .field("dst_settings", &self.dst_settings)
            .field("alice_email", &self.alice_email)
            .field("instances", &self.instances)
            .finish()
    }
}

impl LabBuilder {
    /// Data connections to `dst` pass a [`FaultProxy`] ([`Lab::proxy`]).
    pub fn proxy_data(mut self) -> Self {
        assert!(self.proxy.is_none(), "one proxy per lab");
        self.proxy = Some(Proxied::Data);
        self
    }

    /// `src`'s daemon reaches the hub only through a [`FaultProxy`]
    /// ([`Lab::proxy`]).
    pub fn proxy_control(mut self) -> Self {
        assert!(self.proxy.is_none(), "one proxy per lab");
        self.proxy = Some(Proxied::Control);
        self
    }

    /// `n` `ferry-hub serve` instances of the hub over its database (a
    /// PostgreSQL `database` the test sets with [`LabBuilder::hub_setting`]),
    /// behind HAProxy ([`Lab::front`]); the daemons and alice's verbs reach
    /// the hub only through it. Needs `haproxy` ([`Front::available`]).
    pub fn instances(mut self, n: usize) -> Self {
        assert!(n >= 1, "at least one instance");
        assert!(self.proxy != Some(Proxied::Control), "one way to the hub");
        self.instances = n;
        self
    }

    /// The front's `balance` algorithm over the instances (default
    /// `first`: one instance serves while it lives).
    pub fn balance(mut self, how: &'static str) -> Self {
        self.balance = how;
        self
    }

    /// `extra` appended to the hub's `hub.toml` before it serves (an
    /// `[smtp]` section, say: after any [`Lab::hub_setting`] keys, which a
    /// table would otherwise swallow).
    pub fn hub_config(mut self, extra: &str) -> Self {
        self.hub_settings.push_str(extra);
        self.hub_settings.push('\n');
        self
    }

    /// `NAME=VALUE` in the environment of `ferry-hub serve`.
    pub fn hub_env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.hub_env
            .push((name.to_string(), value.as_ref().to_os_string()));
        self
    }

    /// Alice's account has this address (`ferry-hub user add --email`).
    pub fn alice_email(mut self, address: &str) -> Self {
        self.alice_email = Some(address.to_string());
        self
    }

    /// `umask = "UMASK"` in `dst`'s `endpoint.toml`: what it receives with.
    pub fn umask(mut self, umask: &str) -> Self {
        self.umask = Some(umask.to_string());
        self
    }

    /// A line for `hub.toml` (`metrics_token = "..."`), before it serves.
    pub fn hub_setting(mut self, line: &str) -> Self {
        self.hub_settings.push_str(line);
        self.hub_settings.push('\n');
        self
    }

    /// A line for `src`'s `endpoint.toml`, before its daemon starts.
    pub fn src_setting(mut self, line: &str) -> Self {
        self.src_settings.push_str(line);
        self.src_settings.push('\n');
        self
    }

    /// A line for `dst`'s `endpoint.toml`, before its daemon starts.
    pub fn dst_setting(mut self, line: &str) -> Self {
        self.dst_settings.push_str(line);
        self.dst_settings.push('\n');
        self
    }

    /// Runs `prepare` on `dst` after its setup, before its daemon starts
    /// (its `config-paths`, directories in its home).
    pub fn prepare_dst(mut self, prepare: impl FnOnce(&User) + 'static) -> Self {
        self.prepare_dst.push(Box::new(prepare));
        self
    }

    /// `dst` is set up but its daemon is not started
    /// ([`Lab::start_dst`] starts it).
    pub fn dst_offline(mut self) -> Self {
        self.dst = Dst::Offline;
        self
    }

    /// `dst` is created on the hub, and no machine is ever set up with its
    /// key: tasks to it wait for an endpoint that never comes.
    pub fn dst_never_set_up(mut self) -> Self {
        self.dst = Dst::NeverSetUp;
        self
    }

    /// There is no endpoint `dst` (`lab.dst` is a user with a home and
    /// nothing else).
    pub fn without_dst(mut self) -> Self {
        self.dst = Dst::Absent;
        self
    }

    /// Starts the hub, sets up the endpoints, starts the daemons, and
    /// returns once each running daemon says `Hub: connected` (and, with
    /// a data proxy, once `dst` listens behind it).
    pub fn start(self) -> Lab {
        let env: Vec<(&str, &OsStr)> = self
            .hub_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_os_str()))
            .collect();
        let mut hub = Hub::start_with_env(&self.hub_settings, &env);
        match &self.alice_email {
            Some(address) => {
                hub.add_user_with("alice", "correct horse battery", &["--email", address])
            }
            None => hub.add_user("alice", "correct horse battery"),
        }
        let src = set_up(&hub, "src");
        let dst = match self.dst {
            Dst::Running | Dst::Offline => set_up(&hub, "dst"),
            Dst::NeverSetUp => {
                hub.endpoint_key("alice", "dst", &[]);
                User::new()
            }
            Dst::Absent => User::new(),
        };
        let (mut proxy, mut data_listener) = (None, None);
        let mut dst_settings = self.dst_settings.clone();
        if !self.src_settings.is_empty() {
            fs::OpenOptions::new()
                .append(true)
                .open(src.dir.join("endpoint.toml"))
                .unwrap()
                .write_all(self.src_settings.as_bytes())
                .unwrap();
        }
        if let Some(umask) = &self.umask {
            dst_settings.push_str(&format!("umask = \"{umask}\"\n"));
        }
        match self.proxy {
            Some(Proxied::Data) => {
                let listener = closed_loopback_port();
                let p = FaultProxy::start(loopback(listener));
                dst_settings.push_str(&format!(
                    "data_ports = \"{listener}-{listener}\"\ndata_address = \"127.0.0.1:{}\"\n",
                    p.port()
                ));
                (proxy, data_listener) = (Some(p), Some(listener));
            }
            Some(Proxied::Control) => {
                let p = FaultProxy::start(loopback(hub.port));
                edit_config(
                    &src.dir.join("endpoint.toml"),
                    &format!("hub_url = \"https://127.0.0.1:{}\"", hub.port),
                    &format!("hub_url = \"https://127.0.0.1:{}\"", p.port()),
                );
                proxy = Some(p);
            }
            None => {}
        }
        if !dst_settings.is_empty() {
            assert!(
                matches!(self.dst, Dst::Running | Dst::Offline),
                "dst settings for a dst that is never set up"
            );
            fs::OpenOptions::new()
                .append(true)
                .open(dst.dir.join("endpoint.toml"))
                .unwrap()
                .write_all(dst_settings.as_bytes())
                .unwrap();
        }
        for prepare in self.prepare_dst {
            prepare(&dst);
        }
        let (mut instances, mut front) = (Vec::new(), None);
        if self.instances > 1 {
            for _ in 1..self.instances {
                let port = closed_loopback_port();
                instances.push((port, Some(hub.serve_instance(port))));
            }
            let mut backends = vec![hub.port];
            backends.extend(instances.iter().map(|(port, _)| *port));
            let f = Front::balanced(&backends, self.balance);
            // The hub's certificate names 127.0.0.1, so TLS verifies
            // through the front as it does directly.
            for user in [&src, &dst] {
                let config = user.dir.join("endpoint.toml");
                if config.exists() {
                    edit_config(
                        &config,
                        &format!("hub_url = \"https://127.0.0.1:{}\"", hub.port),
                        &format!("hub_url = \"https://127.0.0.1:{}\"", f.port),
                    );
                }
            }
            hub.url = format!("https://127.0.0.1:{}", f.port);
            front = Some(f);
        }
        let token = hub.token("alice");
        let mut lab = Lab {
            hub,
            src,
            dst,
            token,
            proxy,
            data_listener,
            src_daemon: None,
            dst_daemon: None,
            instances,
            front,
        };
        lab.start_src();
        if self.proxy == Some(Proxied::Control) {
            assert!(
                lab.proxy().accepted() >= 1,
                "the link goes through the proxy"
            );
        }
        if self.dst == Dst::Running {
            lab.start_dst();
        }
        lab
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `ferry -setup KEY --name NAME` for a new endpoint of alice's, on a
/// machine of its own.
fn set_up(hub: &Hub, name: &str) -> User {
    let (_, key) = hub.endpoint_key("alice", name, &[]);
    let user = User::new();
    let out = user.setup_with_key(&key, name);
    assert_eq!(out.code, Some(0), "{out:?}");
    user
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// Both endpoints set up and running, nothing in between.
    pub fn new() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> LabBuilder {
        LabBuilder {
            dst: Dst::Running,
            proxy: None,
            umask: None,
            prepare_dst: Vec::new(),
            hub_settings: String::new(),
            hub_env: Vec::new(),
            src_settings: String::new(),
            dst_settings: String::new(),
            alice_email: None,
            instances: 1,
            balance: "first",
        }
    }

    /// The fault proxy of `proxy_data` or `proxy_control`.
    pub fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("no proxy: Lab::builder().proxy_data() or .proxy_control()")
    }

    /// kill -9 hub instance `n` (0: `lab.hub`, the first).
    pub fn kill_instance(&mut self, n: usize) {
        if n == 0 {
            self.hub.kill();
        } else if let Some(daemon) = self.instances[n - 1].1.take() {
            daemon.signal(nix::sys::signal::Signal::SIGKILL);
            daemon.wait_exit(Duration::from_secs(10));
        }
    }

    /// Instance `n`'s own address (0: `lab.hub`'s port), not the front's.
    pub fn instance_url(&self, n: usize) -> String {
        let port = match n {
            0 => self.hub.port,
            n => self.instances[n - 1].0,
        };
        format!("https://127.0.0.1:{port}")
    }

    /// Instance `n`'s log (0: `lab.hub`'s); empty once it was killed.
    pub fn instance_log(&self, n: usize) -> String {
        match n {
            0 => self.hub.log(),
            n => self.instances[n - 1]
                .1
                .as_ref()
                .map(|d| d.log())
                .unwrap_or_default(),
        }
    }

    /// The logs of every hub instance still running, for a failure's message.
    pub fn hub_logs(&self) -> String {
        let mut all = format!("instance 0:\n{}", self.hub.log());
        for (n, (_, daemon)) in self.instances.iter().enumerate() {
            if let Some(daemon) = daemon {
                all.push_str(&format!("\ninstance {}:\n{}", n + 1, daemon.log()));
            }
        }
        all
    }

    /// `ferry ARGS` on `src`'s machine as alice (`FERRY_TOKEN`, `FERRY_HUB`).
    pub fn ferry(&self, args: &[impl AsRef<OsStr>]) -> Ran {
        self.src.run_as(&self.hub, &self.token, args)
    }

    /// `ferry transfer ARGS`, which must be accepted; the task's id.
    pub fn transfer(&self, args: &[&str]) -> String {
        let mut all = vec!["transfer"];
        all.extend_from_slice(args);
        let out = self.ferry(&all);
        assert_eq!(out.code, Some(0), "{out:?}");
        line_value(&out.stdout, "Task ID: ")
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_string()
    }

    /// `ferry endpoint add-node ENDPOINT [ARGS] --json` as alice: the
    /// endpoint's id, the node's name and its setup key.
    pub fn add_node(&self, endpoint: &str, args: &[&str]) -> (String, String, String) {
        let mut all = vec!["endpoint", "add-node", endpoint];
        all.extend_from_slice(args);
        all.push("--json");
        let out = self.ferry(&all);
        let doc: Value = serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        let field = |key: &str| {
            doc[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key}: {doc}"))
                .to_string()
        };
        (field("endpoint_id"), field("node"), field("setup_key"))
    }

    /// A second machine joins `endpoint` as a node (docs/nodes.md): `ferry
    /// endpoint add-node`, then `ferry -setup KEY` as a user sharing `of`'s
    /// home, `settings` added to its `endpoint.toml`, and `-start`, once
    /// connected; the node's user and daemon.
    pub fn join_node(&self, endpoint: &str, of: &User, settings: &str) -> (User, Daemon) {
        self.join_node_edited(endpoint, of, |text| text + settings)
    }

    /// As [`Lab::join_node`], the node's `hub_url` naming hub instance `n`
    /// itself rather than the front: among several instances, its control
    /// link lands there whatever the front would choose.
    pub fn join_node_at_instance(&self, endpoint: &str, of: &User, n: usize) -> (User, Daemon) {
        let url = self.instance_url(n);
        self.join_node_edited(endpoint, of, |text| {
            text.lines()
                .map(|line| match line.starts_with("hub_url") {
                    true => format!("hub_url = \"{url}\"\n"),
                    false => format!("{line}\n"),
                })
                .collect()
        })
    }

    fn join_node_edited(
        &self,
        endpoint: &str,
        of: &User,
        edit: impl FnOnce(String) -> String,
    ) -> (User, Daemon) {
        let (_, _, key) = self.add_node(endpoint, &[]);
        let node = User::sharing_home(of);
        node.run(&["-setup", &key]).ok();
        let config = node.dir.join("endpoint.toml");
        let text = edit(fs::read_to_string(&config).unwrap());
        fs::write(&config, text).unwrap();
        let daemon = node.start_foreground(&[]);
        node.wait_hub_state("connected", LIMIT);
        (node, daemon)
    }

    /// `ferry app create NAME --type portal --redirect-uri CALLBACK` as
    /// alice: the app's (client id, client secret).
    pub fn create_portal(&self, name: &str, callback: &str) -> (String, String) {
        let out = self.ferry(&[
            "app",
            "create",
            name,
            "--type",
            "portal",
            "--redirect-uri",
            callback,
            "--json",
        ]);
        let made: Value = serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        let field = |key: &str| {
            made[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key}: {made}"))
                .to_string()
        };
        (field("client_id"), field("client_secret"))
    }

    /// `ferry task show ID --json`.
    pub fn show(&self, id: &str) -> Value {
        let out = self.ferry(&["task", "show", id, "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    /// `ferry task events ID`, as the table a person reads.
    pub fn events(&self, id: &str) -> String {
        self.ferry(&["task", "events", id]).stdout
    }

    /// `ferry task events ID --json`.
    pub fn events_json(&self, id: &str) -> Vec<Value> {
        let out = self.ferry(&["task", "events", id, "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        let doc: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        doc.as_array().unwrap().clone()
    }

    /// `ferry task wait ID`, which must say the task SUCCEEDED; then what
    /// `task show` says of it.
    pub fn wait(&self, id: &str) -> Value {
        let out = self.ferry(&["task", "wait", id, "--timeout", TASK_WAIT_SECS]);
        let task = self.show(id);
        assert!(
            out.code == Some(0) && task["status"] == "SUCCEEDED",
            "task did not succeed: {out:?}\n{task}\nevents: {}\ndestination log:\n{}",
            self.events(id),
            self.dst_log()
        );
        task
    }

    /// `ferry task wait ID`, however it ends; then what `task show` says.
    pub fn wait_end(&self, id: &str) -> Value {
        self.ferry(&["task", "wait", id, "--timeout", TASK_WAIT_SECS]);
        self.show(id)
    }

    /// Waits for a task that must end FAILED: the task and its events.
    pub fn wait_failed(&self, id: &str) -> (Value, String) {
        let task = self.wait_end(id);
        let events = self.events(id);
        assert_eq!(task["status"], "FAILED", "{task}\nevents: {events}");
        (task, events)
    }

    /// The destination's journal of task `id` (it exists while the task
    /// has something to resume).
    pub fn journal(&self, id: &str) -> PathBuf {
        self.dst.dir.join("state").join(format!("{id}.journal"))
    }

    /// `src`'s running daemon.
    pub fn src_daemon(&self) -> &Daemon {
        self.src_daemon
            .as_ref()
            .expect("src's daemon is not running")
    }

    /// `dst`'s running daemon.
    pub fn dst_daemon(&self) -> &Daemon {
        self.dst_daemon
            .as_ref()
            .expect("dst's daemon is not running")
    }

    fn dst_log(&self) -> String {
        self.dst_daemon
            .as_ref()
            .map_or_else(|| "(not running)".to_string(), Daemon::log)
    }

    /// `ferry -start` for `src`, returning once it is connected.
    pub fn start_src(&mut self) {
        assert!(self.src_daemon.is_none(), "src's daemon runs already");
        let daemon = self.src.start_foreground(&[]);
        self.src.wait_hub_state("connected", LIMIT);
        self.src_daemon = Some(daemon);
    }

    /// `ferry -start` for `dst`, returning once it is connected (and, with
    /// a data proxy, listens behind it).
    pub fn start_dst(&mut self) {
        let command = self.dst.ferry(&["-start"]);
        self.start_dst_with(command);
    }

    /// `umask UMASK && ferry -start` for `dst`: the daemon's own umask, for
    /// when `endpoint.toml` sets none.
    pub fn start_dst_under_umask(&mut self, umask: &str) {
        self.start_dst_after(&format!("umask {umask}"));
    }

    /// `ulimit -n LIMIT && ferry -start` for `dst`: its daemon under a low
    /// open-files limit, soft and hard (so it cannot raise it).
    pub fn start_dst_with_open_files_limit(&mut self, limit: u32) {
        self.start_dst_after(&format!("ulimit -n {limit}"));
    }

    /// `SHELL_COMMAND && ferry -start` for `dst`, the daemon in the shell's stead.
    fn start_dst_after(&mut self, shell_command: &str) {
        let plain = self.dst.ferry(&["-start"]);
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{shell_command} && exec \"$0\" \"$@\""))
            .arg(plain.get_program())
            .args(plain.get_args())
            .env_clear()
            .envs(plain.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(std::process::Stdio::null());
        self.start_dst_with(command);
    }

    fn start_dst_with(&mut self, command: std::process::Command) {
        assert!(self.dst_daemon.is_none(), "dst's daemon runs already");
        let daemon = self.dst.start_with(command);
        self.dst.wait_hub_state("connected", LIMIT);
        if let Some(listener) = self.data_listener {
            daemon.wait_for_log(&format!("Some({listener})"), LIMIT);
        }
        self.dst_daemon = Some(daemon);
    }

    /// `ferry -stop` for `dst`, which must succeed; returns once its daemon
    /// exited.
    pub fn stop_dst(&mut self) {
        let daemon = self.dst_daemon.take().expect("dst's daemon is not running");
        let out = self.dst.run(&["-stop"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        daemon.wait_exit(LIMIT);
    }

    /// kill -9 of `src`'s daemon.
    pub fn kill_src(&mut self) {
        kill(self.src_daemon.take().expect("src's daemon is not running"));
    }

    /// kill -9 of `dst`'s daemon.
    pub fn kill_dst(&mut self) {
        kill(self.dst_daemon.take().expect("dst's daemon is not running"));
    }
}

fn kill(daemon: Daemon) {
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait_exit(LIMIT);
}

/// `len` bytes of a xorshift sequence from `seed`: file contents that
/// differ from chunk to chunk and from file to file.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Regular files and directories under `root` (with contents), sorted by
/// relative path; symlinks and other kinds are left out.
pub fn tree(root: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.push((rel, None));
                stack.push(e.path());
            } else if t.is_file() {
                out.push((rel, Some(fs::read(e.path()).unwrap())));
            }
        }
    }
    out.sort();
    out
}
