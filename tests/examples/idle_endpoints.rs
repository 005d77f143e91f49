//! Load generator for `bench/hub-idle.sh`: does a hub hold N idle endpoints
//! (default 10,000) in at most 1 GiB of RSS, with every heartbeat kept?
//!
//! Every endpoint is a real one as far as the hub can tell: it registers
//! over `POST /api/v1/endpoints/register` with a fresh key and CSR and a
//! token (what `ferry -setup` does after a login), then dials the control
//! channel with its own certificate and runs `EndpointConnection` exactly as
//! the daemon's `hub_link` does. All connections live in this one process.
//!
//! While the connections are held the hub's `/proc/PID/status` is sampled.
//!
//! Several instances of one hub over one PostgreSQL database (`--hub-pid`
//! and `--port` once for each, in the same order) share the endpoints:
//! endpoint i dials instance i mod K directly (round robin in this load
//! generator, no front in between), and each instance's memory is
//! sampled and reported on its own. Registration goes through the hub's
//! URL.
//! The report ends with a verdict; the exit status is non-zero when a
//! connection was lost or refused, a heartbeat round was missed, or the
//! hub's peak RSS went over the limit.
//!
//! It registers with the CLI's REST client (ferry-setup), which the hub
//! does not link, so it is an example of this package rather than the hub's.
//!
//! ```text
//! cargo build --release -p ferry-hub --bins
//! cargo build --release -p ferry-tests --example idle_endpoints
//! FERRY_TOKEN=$(ferry-hub token create --dir D --user U) \
//!   target/release/examples/idle_endpoints --hub-dir D --hub-pid PID
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use ferry_proto::api::{RegisterEndpoint, RegisteredEndpoint};
use ferry_proto::control::{
    self, EndpointConnection, EndpointEvent, EndpointMessage, HubMessage, MAX_FRAME,
};
use ferry_proto::frame::{FrameDecoder, HEADER_LEN};
use ferry_setup::hub_client::{Auth, HubClient, Trust};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

/// The same bounds the daemon puts on a dial and on the hub's welcome.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The daemon reads the control stream through a buffer this size.
const READ_BUF: usize = 64 * 1024;
/// Descriptors kept free beyond one per connection (HTTP pool, /proc reads).
const SPARE_FDS: u64 = 256;
/// A round late by up to half an interval is scheduling jitter; a gap of
/// 1.5 intervals or more means a round was skipped.
const LATE_FACTOR: f64 = 1.5;
/// Linux reports times in /proc in USER_HZ, which is 100 on every ABI.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(about = "hold N idle endpoints on a running ferry-hub and measure its memory")]
struct Args {
    /// The hub's state dir: hub.toml (URL, heartbeat, max_connections) and its CA.
    #[arg(long, value_name = "DIR")]
    hub_dir: PathBuf,
    /// Pid of the running `ferry-hub serve`, whose memory is sampled; once
    /// per instance when several serve one database.
    #[arg(long, value_name = "PID", required = true)]
    hub_pid: Vec<u32>,
    /// The loopback port each instance listens on, in `--hub-pid`'s order
    /// (default: the port of the hub's URL, for one instance).
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// Access token with the endpoint:setup scope (`ferry-hub token create`).
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    token: String,
    /// Endpoints to register and connect.
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Seconds to hold every connection once all are up.
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// TLS handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 128)]
    connect_parallel: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 8)]
    register_parallel: usize,
    /// Times to connect every endpoint, hold, and disconnect them all: later
    /// waves show what a reconnect storm costs the hub.
    #[arg(long, default_value_t = 1)]
    waves: u32,
    /// The hub's peak RSS must stay at or under this many MiB.
    #[arg(long, default_value_t = 1024)]
    limit_mib: u64,
}

/// The parts of `hub.toml` the bench needs; the hub's own defaults apply
/// where a field is absent.
#[derive(Debug, serde::Deserialize)]
struct HubToml {
    url: String,
    tls_ca: PathBuf,
    #[serde(default = "default_heartbeat")]
    heartbeat_secs: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
}

fn default_heartbeat() -> u64 {
    control::DEFAULT_HEARTBEAT.as_secs()
}
fn default_max_connections() -> usize {
    20_000
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("idle_endpoints: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    if args.endpoints == 0
        || args.connect_parallel == 0
        || args.register_parallel == 0
        || args.waves == 0
    {
        bail!(
            "--endpoints, --connect-parallel, --register-parallel and --waves must be at least 1"
        );
    }
    let config_path = args.hub_dir.join("hub.toml");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let hub: HubToml =
        toml::from_str(&text).with_context(|| format!("{} is invalid", config_path.display()))?;
    let (host, port) = ferry_proto::api::https_host_port(&hub.url).map_err(anyhow::Error::msg)?;
    if host != "127.0.0.1" {
        bail!(
            "the hub's URL is {}; this bench only ever connects to 127.0.0.1 (init the hub with --url https://127.0.0.1:PORT)",
            hub.url
        );
    }
    let ports = if args.port.is_empty() {
        vec![port]
    } else {
        args.port.clone()
    };
    if ports.len() != args.hub_pid.len() {
        bail!(
            "{} --hub-pid but {} --port: give one port for each instance, in the same order",
            args.hub_pid.len(),
            ports.len()
        );
    }
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, *p)))
        .collect();
    // Each endpoint holds one connection; registration needs a few more.
    let wanted = args.endpoints + args.register_parallel + 16;
    if hub.max_connections < wanted {
        bail!(
            "the hub serves at most max_connections = {} connections at once; set it to at least {wanted} in {} and restart the hub",
            hub.max_connections,
            config_path.display()
        );
    }
    if Duration::from_secs(args.hold_secs) < Duration::from_secs(2 * hub.heartbeat_secs) {
        bail!(
            "--hold-secs {} is under two heartbeat intervals ({} s each): nothing would show that heartbeats are kept; hold longer or lower heartbeat_secs in {}",
            args.hold_secs,
            hub.heartbeat_secs,
            config_path.display()
        );
    }
    let need_fds = args.endpoints as u64 + SPARE_FDS;
    raise_fd_limit(need_fds)?;
    // Each instance holds its share of the connections.
    let per_instance = args.endpoints.div_ceil(args.hub_pid.len()) as u64 + SPARE_FDS;
    for &pid in &args.hub_pid {
        let hub_status = ProcStatus::read(pid).with_context(|| {
            format!("cannot read /proc/{pid}/status; is the hub running with that pid?")
        })?;
        if !hub_status.name.starts_with("ferry-hub") {
            bail!(
                "pid {pid} is {:?}, not ferry-hub; pass the pid of `ferry-hub serve`",
                hub_status.name
            );
        }
        if let Some(hub_fds) = open_files_limit(pid)?
            && hub_fds < per_instance
        {
            bail!(
                "hub pid {pid} may open only {hub_fds} files (its RLIMIT_NOFILE); start it after `ulimit -n {per_instance}`"
            );
        }
    }
    let ca_path = args.hub_dir.join(&hub.tls_ca);
    let roots = ferry_tls::certs_from_file(&ca_path)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bench(args, hub, addrs, roots))
}

/// Raises this process's soft RLIMIT_NOFILE as far as the hard limit allows.
fn raise_fd_limit(need: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open files limit")?;
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        bail!(
            "this process may open at most {hard} files (hard RLIMIT_NOFILE) but needs {need}; raise the hard limit (limits.conf, or `ulimit -Hn {need}` as root) or use fewer --endpoints"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, need, hard)
        .with_context(|| format!("cannot raise the open files limit from {soft} to {need}"))
}

/// The soft "Max open files" of another process; `None` if unlimited.
fn open_files_limit(pid: u32) -> anyhow::Result<Option<u64>> {
    let path = format!("/proc/{pid}/limits");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .with_context(|| format!("{path} has no \"Max open files\" line"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .with_context(|| format!("{path}: cannot parse {line:?}"))?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse()
        .map(Some)
        .with_context(|| format!("{path}: cannot parse {line:?}"))
}

/// The lines of `/proc/PID/status` and `/proc/PID/stat` the report uses.
#[derive(Debug, Clone, Default)]
struct ProcStatus {
    name: String,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

impl ProcStatus {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let mut status = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let number = || {
                value
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match key {
                "Name" => status.name = value.to_string(),
                "VmRSS" => status.rss_kib = number(),
                "VmHWM" => status.hwm_kib = number(),
                "Threads" => status.threads = number(),
                _ => {}
            }
        }
        if status.rss_kib == 0 {
            bail!("{path} shows no VmRSS (is the process a zombie?)");
        }
        Ok(status)
    }
}

/// User plus system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name may hold spaces and parentheses; fields count from
    // the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("cannot parse {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at 3.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("cannot parse {path}"))
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What an endpoint needs to dial the hub.
#[derive(Debug)]
struct Credential {
    id: String,
    tls: Arc<rustls::ClientConfig>,
}

/// A fresh key and a CSR for it, made as `ferry -setup` makes them.
fn key_and_csr(name: &str) -> anyhow::Result<(PrivateKeyDer<'static>, String)> {
    let (key_pem, csr) = ferry_tls::csr::key_and_csr(name)
        .context("cannot make an endpoint key and certificate request")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .context("cannot read back the endpoint key")?;
    Ok((key, csr))
}

/// Registers `n` endpoints through the REST API, `parallel` at a time.
async fn register_all(
    url: &str,
    token: &str,
    roots: &[CertificateDer<'static>],
    n: usize,
    parallel: usize,
) -> anyhow::Result<Vec<Credential>> {
    let client = HubClient::new(url, &Trust::Ca(roots.to_vec()))?;
    let token: Arc<str> = token.into();
    let roots = Arc::new(roots.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // Unique per run, so a second run against the same hub does not collide
    // with the first one's (owner, name) pairs.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel.min(n) {
        let (client, token, roots, next, done) = (
            client.clone(),
            token.clone(),
            roots.clone(),
            next.clone(),
            done.clone(),
        );
        workers.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(made);
                }
                let name = format!("idle-{run:x}-{i}");
                let (key, csr_pem) = key_and_csr(&name)?;
                let registered: RegisteredEndpoint = client
                    .post_json(
                        "/api/v1/endpoints/register",
                        &RegisterEndpoint {
                            csr_pem,
                            display_name: Some(name.clone()),
                        },
                        Auth::Bearer(&token),
                    )
                    .await
                    .with_context(|| format!("cannot register endpoint {name}"))?;
                let chain = ferry_tls::certs_from_pem(&registered.cert_pem, "the hub's answer")?;
                let config =
                    ferry_tls::client_config(&roots, Some((chain, key)), &[control::ALPN])?;
                made.push(Credential {
                    id: registered.id,
                    tls: config,
                });
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 1000 == 0 {
                    eprintln!("  registered {finished} of {n}");
                }
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("a registration worker panicked")??);
    }
    Ok(all)
}

/// Heartbeat rounds as one connection saw them: a hub ping answered by our
/// pong, or our ping answered by the hub's pong. The state machine keeps
/// heartbeats to itself, so frames are decoded a second time here, only to
/// watch.
#[derive(Debug)]
struct Watcher {
    incoming: FrameDecoder,
    interval: Option<Duration>,
    hub_rounds: u64,
    own_rounds: u64,
    own_pings: u64,
    last_round: Option<Instant>,
    max_gap: Duration,
    /// The hub re-checks an endpoint's admission only when its own
    /// heartbeat timer fires, which is when it pings: a long stretch
    /// without a hub ping is a stretch without that check.
    last_hub_ping: Option<Instant>,
    max_hub_ping_gap: Duration,
}

impl Watcher {
    fn new() -> Self {
        Self {
            incoming: FrameDecoder::new(MAX_FRAME),
            interval: None,
            hub_rounds: 0,
            own_rounds: 0,
            own_pings: 0,
            last_round: None,
            max_gap: Duration::ZERO,
            last_hub_ping: None,
            max_hub_ping_gap: Duration::ZERO,
        }
    }

    fn mark(&mut self, now: Instant) {
        if let Some(last) = self.last_round {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
        }
        self.last_round = Some(now);
    }

    fn received(&mut self, now: Instant, bytes: &[u8]) {
        self.incoming.push(bytes);
        // A broken stream is the state machine's to report.
        while let Ok(Some(body)) = self.incoming.next_frame() {
            match serde_json::from_slice::<HubMessage>(&body) {
                Ok(HubMessage::Welcome { heartbeat_secs, .. }) => {
                    self.interval = Some(Duration::from_secs(heartbeat_secs.max(1)));
                    self.last_round = Some(now);
                    self.last_hub_ping = Some(now);
                }
                Ok(HubMessage::Ping { .. }) => {
                    if let Some(last) = self.last_hub_ping {
                        self.max_hub_ping_gap = self
                            .max_hub_ping_gap
                            .max(now.saturating_duration_since(last));
                    }
                    self.last_hub_ping = Some(now);
                }
                Ok(HubMessage::Pong { .. }) => {
                    self.own_rounds += 1;
                    self.mark(now);
                }
                _ => {}
            }
        }
    }

    /// Called once `frame` is written: our pong completes the hub's round.
    fn sent(&mut self, now: Instant, frame: &[u8]) {
        match frame
            .get(HEADER_LEN..)
            .and_then(|body| serde_json::from_slice::<EndpointMessage>(body).ok())
        {
            Some(EndpointMessage::Pong { .. }) => {
                self.hub_rounds += 1;
                self.mark(now);
            }
            Some(EndpointMessage::Ping { .. }) => self.own_pings += 1,
            _ => {}
        }
    }
}

/// How one endpoint fared.
#[derive(Debug)]
struct Outcome {
    /// The instance it dialled (index into the instances).
    instance: usize,
    /// Set once the hub welcomed it.
    connected: bool,
    /// Why it ended before the hold was over, if it did.
    lost: Option<String>,
    watcher: Watcher,
}

/// What each connection tells the main task as it goes.
#[derive(Debug)]
enum Progress {
    Welcomed,
    Failed(String),
}

/// One endpoint: dial, TLS, the control protocol until `stop`, as
/// `ferry_daemon::hub_link` runs it.
async fn endpoint(
    index: usize,
    credential: Arc<Credential>,
    // The instance it dials (its index) and where.
    (instance, addr): (usize, SocketAddr),
    handshakes: Arc<Semaphore>,
    progress: mpsc::UnboundedSender<Progress>,
    alive: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut watcher = Watcher::new();
    let mut permit = handshakes.acquire_owned().await.ok();
    let fail = |watcher: Watcher, reason: String| {
        let _ = progress.send(Progress::Failed(reason.clone()));
        Outcome {
            instance,
            connected: false,
            lost: Some(reason),
            watcher,
        }
    };
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return fail(watcher, format!("cannot connect to {addr}: {e}")),
        Err(_) => return fail(watcher, format!("timed out connecting to {addr}")),
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::IpAddress(addr.ip().into());
    let connector = tokio_rustls::TlsConnector::from(credential.tls.clone());
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, connector.connect(server_name, tcp)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return fail(watcher, format!("TLS handshake failed: {e}")),
        Err(_) => return fail(watcher, "timed out in the TLS handshake".into()),
    };
    let software = format!("ferry {} (idle_endpoints bench)", env!("CARGO_PKG_VERSION"));
    // A daemon with transfers on announces where it listens; nobody dials
    // it here, since no task is ever started.
    let data_address = Some(format!("127.0.0.1:{}", 50_000 + index % 10_000));
    let mut conn =
        EndpointConnection::new(Instant::now(), &software, data_address, HANDSHAKE_TIMEOUT);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_BUF];
    let mut connected = false;
    let end: Result<(), String> = 'session: loop {
        while let Some(bytes) = conn.poll_transmit() {
            if let Err(e) = writer.write_all(&bytes).await {
                break 'session Err(format!("write failed: {e}"));
            }
            watcher.sent(Instant::now(), &bytes);
        }
        if let Err(e) = writer.flush().await {
            break Err(format!("write failed: {e}"));
        }
        let Some(deadline) = conn.poll_timeout() else {
            break Err("the control connection closed".into());
        };
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => break Err("the hub closed the connection".into()),
                Ok(n) => {
                    let now = Instant::now();
                    watcher.received(now, &buf[..n]);
                    match conn.handle_bytes(now, &buf[..n]) {
                        Ok(events) => {
                            for event in events {
                                // File operations and tasks never come to an
                                // endpoint nobody uses.
                                if let EndpointEvent::Connected { endpoint_id, .. } = event {
                                    if endpoint_id != credential.id {
                                        break 'session Err(format!(
                                            "welcomed as {endpoint_id}, registered as {}",
                                            credential.id
                                        ));
                                    }
                                    connected = true;
                                    permit = None;
                                    alive.fetch_add(1, Ordering::Relaxed);
                                    let _ = progress.send(Progress::Welcomed);
                                }
                            }
                        }
                        Err(e) => break Err(format!("control channel error: {e}")),
                    }
                }
                Err(e) => break Err(format!("read failed: {e}")),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                if let Err(e) = conn.handle_timeout(Instant::now()) {
                    break Err(format!("control channel error: {e}"));
                }
            }
            _ = stop.changed(), if connected => break Ok(()),
        }
    };
    drop(permit);
    // The hub's messages name the endpoint; without its id, equal reasons
    // group into one report line.
    let end = end.map_err(|reason| reason.replace(&credential.id, "ID"));
    match end {
        Ok(()) => {
            // The round that would have come next is not a missed one.
            if let Some(last) = watcher.last_round {
                watcher.max_gap = watcher.max_gap.max(last.elapsed());
            }
            if let Some(last) = watcher.last_hub_ping {
                watcher.max_hub_ping_gap = watcher.max_hub_ping_gap.max(last.elapsed());
            }
            Outcome {
                instance,
                connected,
                lost: None,
                watcher,
            }
        }
        Err(reason) if connected => {
            alive.fetch_sub(1, Ordering::Relaxed);
            Outcome {
                instance,
                connected,
                lost: Some(reason),
                watcher,
            }
        }
        Err(reason) => fail(watcher, reason),
    }
}

/// One wave: every endpoint connects, holds, and lets go.
#[derive(Debug)]
struct Wave {
    /// Each hub instance, in `--hub-pid`'s order.
    instances: Vec<Sampled>,
    welcomed: usize,
    connect_time: Duration,
    failed: BTreeMap<String, usize>,
    lost: BTreeMap<String, usize>,
    end_alive: usize,
    min_alive: usize,
    hold_time: Duration,
    hub_gone: Option<String>,
    heartbeats: Heartbeats,
}

/// One hub instance's process over a wave.
#[derive(Debug)]
struct Sampled {
    pid: u32,
    addr: SocketAddr,
    before: ProcStatus,
    connected: ProcStatus,
    /// The last sample of the hold.
    end: ProcStatus,
    peak_rss_kib: u64,
    /// Connections it welcomed.
    welcomed: usize,
    cpu: Option<f64>,
    end_fds: usize,
}

impl Wave {
    fn passed(&self, n: usize) -> bool {
        self.welcomed == n
            && self.lost.is_empty()
            && self.end_alive == self.welcomed
            && self.hub_gone.is_none()
            && self.heartbeats.kept(self.welcomed)
    }
}

/// Heartbeat rounds over the connections the hub welcomed.
#[derive(Debug, Default)]
struct Heartbeats {
    interval: Duration,
    late: usize,
    no_round: usize,
    unchecked: usize,
    max_gap: Duration,
    max_hub_ping_gap: Duration,
    /// Rounds per connection, sorted.
    rounds: Vec<u64>,
    hub_rounds: u64,
    own_rounds: u64,
    endpoint_driven: usize,
}

impl Heartbeats {
    fn of(outcomes: &[Outcome], configured: Duration) -> Self {
        let mut h = Heartbeats {
            interval: configured,
            ..Default::default()
        };
        for w in outcomes.iter().filter(|o| o.connected).map(|o| &o.watcher) {
            if let Some(i) = w.interval {
                h.interval = i;
            }
            let limit = h.interval.mul_f64(LATE_FACTOR);
            let total = w.hub_rounds + w.own_rounds;
            h.no_round += usize::from(total == 0);
            h.late += usize::from(w.max_gap > limit);
            h.unchecked += usize::from(w.max_hub_ping_gap > limit);
            h.endpoint_driven += usize::from(w.own_pings > 0);
            h.max_gap = h.max_gap.max(w.max_gap);
            h.max_hub_ping_gap = h.max_hub_ping_gap.max(w.max_hub_ping_gap);
            h.hub_rounds += w.hub_rounds;
            h.own_rounds += w.own_rounds;
            h.rounds.push(total);
        }
        h.rounds.sort_unstable();
        h
    }

    fn limit(&self) -> Duration {
        self.interval.mul_f64(LATE_FACTOR)
    }

    fn kept(&self, welcomed: usize) -> bool {
        welcomed > 0 && self.late == 0 && self.no_round == 0
    }

    fn percentile(&self, p: usize) -> u64 {
        self.rounds
            .get(self.rounds.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    }
}

async fn run_wave(
    args: &Args,
    addrs: &[SocketAddr],
    configured_heartbeat: Duration,
    credentials: &[Arc<Credential>],
) -> anyhow::Result<Wave> {
    let pids = &args.hub_pid;
    let n = credentials.len();
    let before = pids
        .iter()
        .map(|&pid| ProcStatus::read(pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let alive = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(Semaphore::new(args.connect_parallel));
    eprintln!(
        "connecting {n} endpoints to {} ({} handshakes at a time)",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.connect_parallel
    );
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (index, credential) in credentials.iter().enumerate() {
        // Round robin: endpoint i to instance i mod K.
        let instance = index % addrs.len();
        tasks.push(tokio::spawn(endpoint(
            index,
            credential.clone(),
            (instance, addrs[instance]),
            handshakes.clone(),
            progress_tx.clone(),
            alive.clone(),
            stop_rx.clone(),
        )));
    }
    drop(progress_tx);
    let (mut welcomed, mut failed) = (0usize, BTreeMap::<String, usize>::new());
    while welcomed + failed.values().sum::<usize>() < n {
        match progress_rx.recv().await {
            Some(Progress::Welcomed) => {
                welcomed += 1;
                if welcomed % 1000 == 0 {
                    eprintln!(
                        "  {welcomed} connected after {:.1} s",
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
            Some(Progress::Failed(reason)) => *failed.entry(reason).or_default() += 1,
            None => break,
        }
    }
    let connect_time = t0.elapsed();
    let connected = pids
        .iter()
        .map(|&pid| ProcStatus::read(pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cpu_at_hold = pids
        .iter()
        .map(|&pid| cpu_secs(pid))
        .collect::<anyhow::Result<Vec<_>>>()?;

    eprintln!("holding {welcomed} connections for {} s", args.hold_secs);
    let mut peak_rss_kib: Vec<u64> = connected
        .iter()
        .zip(&before)
        .map(|(c, b)| c.rss_kib.max(b.rss_kib))
        .collect();
    let mut end = connected.clone();
    let mut min_alive = alive.load(Ordering::Relaxed);
    let hold = Duration::from_secs(args.hold_secs);
    let hold_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut hub_gone = None;
    'hold: while hold_start.elapsed() < hold {
        tick.tick().await;
        for (i, &pid) in pids.iter().enumerate() {
            match ProcStatus::read(pid) {
                Ok(status) => {
                    peak_rss_kib[i] = peak_rss_kib[i].max(status.rss_kib);
                    end[i] = status;
                }
                Err(e) => {
                    hub_gone = Some(format!("{e:#}"));
                    break 'hold;
                }
            }
        }
        let now_alive = alive.load(Ordering::Relaxed);
        min_alive = min_alive.min(now_alive);
        let secs = hold_start.elapsed().as_secs();
        if secs % 10 == 0 && secs > 0 {
            eprintln!(
                "  {secs} s: {now_alive} connected, hub RSS {} MiB",
                end.iter()
                    .map(|s| format!("{:.1}", mib(s.rss_kib)))
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
        }
    }
    let hold_time = hold_start.elapsed();
    let cpu: Vec<Option<f64>> = pids
        .iter()
        .zip(&cpu_at_hold)
        .map(|(&pid, at)| cpu_secs(pid).map(|c| c - at).ok())
        .collect();
    let end_fds: Vec<usize> = pids.iter().map(|&pid| open_fds(pid)).collect();
    let end_alive = alive.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);

    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.context("a connection task panicked")?);
    }
    let mut lost = BTreeMap::<String, usize>::new();
    let mut per_instance = vec![0usize; pids.len()];
    for outcome in outcomes.iter().filter(|o| o.connected) {
        per_instance[outcome.instance] += 1;
        if let Some(reason) = &outcome.lost {
            *lost.entry(reason.clone()).or_default() += 1;
        }
    }
    let mut instances = Vec::with_capacity(pids.len());
    for (i, ((((before, connected), end), cpu), end_fds)) in before
        .into_iter()
        .zip(connected)
        .zip(end)
        .zip(cpu)
        .zip(end_fds)
        .enumerate()
    {
        instances.push(Sampled {
            pid: pids[i],
            addr: addrs[i],
            before,
            connected,
            end,
            peak_rss_kib: peak_rss_kib[i],
            welcomed: per_instance[i],
            cpu,
            end_fds,
        });
    }
    Ok(Wave {
        instances,
        welcomed,
        connect_time,
        failed,
        lost,
        end_alive,
        min_alive,
        hold_time,
        hub_gone,
        heartbeats: Heartbeats::of(&outcomes, configured_heartbeat),
    })
}

/// The report lines for one wave.
fn describe(out: &mut String, w: &Wave, n: usize, connect_parallel: usize) {
    use std::fmt::Write;
    let h = &w.heartbeats;
    let _ = writeln!(
        out,
        "  connected                   {} of {n} in {:.1} s ({:.0}/s, {connect_parallel} TLS handshakes at a time)",
        w.welcomed,
        w.connect_time.as_secs_f64(),
        w.welcomed as f64 / w.connect_time.as_secs_f64().max(1e-9),
    );
    for (reason, count) in &w.failed {
        let _ = writeln!(out, "    not connected ({count}): {reason}");
    }
    let _ = writeln!(
        out,
        "  still connected at the end  {} (fewest during the hold: {}) after {:.1} s",
        w.end_alive,
        w.min_alive,
        w.hold_time.as_secs_f64()
    );
    for (reason, count) in &w.lost {
        let _ = writeln!(out, "    lost ({count}): {reason}");
    }
    if let Some(reason) = &w.hub_gone {
        let _ = writeln!(out, "    the hub went away: {reason}");
    }
    let _ = writeln!(
        out,
        "  heartbeats kept             {}: longest gap between rounds {:.2} s (limit {:.1} s); {} connections late, {} without a round",
        if h.kept(w.welcomed) { "yes" } else { "NO" },
        h.max_gap.as_secs_f64(),
        h.limit().as_secs_f64(),
        h.late,
        h.no_round
    );
    let _ = writeln!(
        out,
        "    rounds per connection     min {} / median {} / max {} (hub pinged {}, endpoints pinged {}; {} connections pinged the hub themselves)",
        h.percentile(0),
        h.percentile(50),
        h.percentile(100),
        h.hub_rounds,
        h.own_rounds,
        h.endpoint_driven
    );
    let _ = writeln!(
        out,
        "    hub's own timer           {} connections went over {:.1} s without a ping from the hub (longest {:.1} s): its per-interval admission re-check did not run there",
        h.unchecked,
        h.limit().as_secs_f64(),
        h.max_hub_ping_gap.as_secs_f64()
    );
    let several = w.instances.len() > 1;
    let (mut grown_total, mut peak_total) = (0u64, 0u64);
    for (i, inst) in w.instances.iter().enumerate() {
        let indent = if several {
            let _ = writeln!(
                out,
                "  instance {i} (pid {}, {})    {} connections",
                inst.pid, inst.addr, inst.welcomed
            );
            "  "
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {indent}hub RSS                   before {:.1} MiB, all connected {:.1} MiB, end of hold {:.1} MiB, highest sample {:.1} MiB",
            mib(inst.before.rss_kib),
            mib(inst.connected.rss_kib),
            mib(inst.end.rss_kib),
            mib(inst.peak_rss_kib)
        );
        let grown = inst
            .end
            .rss_kib
            .max(inst.connected.rss_kib)
            .saturating_sub(inst.before.rss_kib);
        grown_total += grown;
        peak_total += inst.peak_rss_kib;
        if inst.welcomed > 0 {
            let _ = writeln!(
                out,
                "  {indent}per connection            {:.1} KiB of hub RSS (growth over \"before\" / connections)",
                grown as f64 / inst.welcomed as f64
            );
        }
        let _ = writeln!(
            out,
            "  {indent}hub threads / open fds    {} / {}",
            inst.end.threads, inst.end_fds
        );
        if let Some(cpu) = inst.cpu {
            let _ = writeln!(
                out,
                "  {indent}hub CPU while holding     {:.1} s in {:.0} s ({:.1}% of one core)",
                cpu,
                w.hold_time.as_secs_f64(),
                100.0 * cpu / w.hold_time.as_secs_f64().max(1e-9)
            );
        }
    }
    if several && w.welcomed > 0 {
        let _ = writeln!(
            out,
            "  all instances               highest samples {:.1} MiB together; {:.1} KiB of RSS per connection over all",
            mib(peak_total),
            grown_total as f64 / w.welcomed as f64
        );
    }
}

async fn bench(
    args: Args,
    hub: HubToml,
    addrs: Vec<SocketAddr>,
    roots: Vec<CertificateDer<'static>>,
) -> anyhow::Result<bool> {
    use std::fmt::Write;
    let n = args.endpoints;
    eprintln!(
        "registering {n} endpoints with the hub at {} ({} at a time)",
        hub.url, args.register_parallel
    );
    let t0 = Instant::now();
    let credentials: Vec<Arc<Credential>> =
        register_all(&hub.url, &args.token, &roots, n, args.register_parallel)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
    let register_time = t0.elapsed();
    // Let the HTTP connections the registration used close on the hub.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let configured = Duration::from_secs(hub.heartbeat_secs);
    let mut report = String::new();
    let mut passed = true;
    let mut interval = configured;
    for wave in 1..=args.waves {
        if args.waves > 1 {
            let _ = writeln!(report, " wave {wave} of {}", args.waves);
        }
        let w = run_wave(&args, &addrs, configured, &credentials).await?;
        describe(&mut report, &w, n, args.connect_parallel);
        passed &= w.passed(n);
        interval = w.heartbeats.interval;
        if wave < args.waves {
            // The hub frees a connection once it reads the close.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    // VmHWM covers each instance's whole life, registration included;
    // the limit holds for each.
    let hwm: Vec<u64> = args
        .hub_pid
        .iter()
        .map(|&pid| ProcStatus::read(pid).map(|s| s.hwm_kib).unwrap_or(0))
        .collect();
    let hwm_kib = hwm.iter().copied().max().unwrap_or(0);
    let within = hwm.iter().all(|&h| h > 0 && h <= args.limit_mib * 1024);
    println!(
        "ferry-hub, {n} idle endpoints{} ({} cores, loopback, mutual TLS, heartbeat {} s, hold {} s{})",
        if addrs.len() > 1 {
            format!(
                " over {} instances (round robin by the load generator)",
                addrs.len()
            )
        } else {
            String::new()
        },
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1),
        interval.as_secs(),
        args.hold_secs,
        if args.waves > 1 {
            format!(", {} waves", args.waves)
        } else {
            String::new()
        }
    );
    println!(
        "  registered                  {n} in {:.1} s (REST register with a token, {} at a time)",
        register_time.as_secs_f64(),
        args.register_parallel
    );
    print!("{report}");
    println!(
        "  verdict                     {}: hub peak RSS (VmHWM{}) {:.1} MiB {} {} MiB{}",
        if within && passed { "PASS" } else { "FAIL" },
        if hwm.len() > 1 {
            format!(
                ", each instance: {} MiB",
                hwm.iter()
                    .map(|&h| format!("{:.1}", mib(h)))
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        } else {
            String::new()
        },
        mib(hwm_kib),
        if within { "<=" } else { ">" },
        args.limit_mib,
        if passed {
            ""
        } else {
            "; connections or heartbeats were lost (see above)"
        }
    );
    Ok(within && passed)
}
