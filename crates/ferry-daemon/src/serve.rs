//! The running daemon: claims the config dir, serves the local API, keeps
//! the hub link, and stops gracefully on `ferry -stop`, SIGTERM or SIGINT.

use crate::hub_link::{self, HubView};
use crate::local_api::{self, TransportError};
use crate::service_manager;
use crate::transfers::Transfers;
use crate::{DaemonError, DaemonLock, PolicyChoice, PolicyHandle, load_policy};
use ferry_endpoint::{EndpointDir, EndpointIdentity};
use ferry_paths::Policy;
use ferry_proto::local_api::{
    HubState, PolicySource, Request, Response, StatusReport, TransferState,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};

/// Local API clients served at once; more wait for the kernel's backlog.
const MAX_CLIENTS: usize = 32;
/// A client that sends nothing for this long is dropped.
const CLIENT_IDLE: Duration = Duration::from_secs(30);

/// A daemon that has passed every start-up check and holds the lock.
#[derive(Debug)]
pub struct Daemon {
    dir: EndpointDir,
    home: PathBuf,
    identity: EndpointIdentity,
    lock: DaemonLock,
    policy_choice: PolicyChoice,
    policy: (Arc<Policy>, PolicySource),
    hooks: crate::hooks::Configured,
    tightened_dir_mode: Option<u32>,
    /// Bound here, not in `run`: a socket that cannot be bound refuses the
    /// start before `-detach` forks, and the forked child inherits it.
    listener: std::os::unix::net::UnixListener,
    /// The metrics server's, when `endpoint.toml` sets `metrics_listen`;
    /// bound here for the same reason.
    metrics_listener: Option<std::net::TcpListener>,
}

impl Daemon {
    /// Every check that can refuse a start, in the order a user would fix
    /// them: set up, not already running, a valid policy, a usable socket.
    pub fn prepare(
        dir: EndpointDir,
        home: PathBuf,
        policy_choice: PolicyChoice,
    ) -> Result<Self, DaemonError> {
        let identity = dir.load_identity()?;
        if let Some(expired) = crate::hub_link::expired_certificate(&dir) {
            return Err(DaemonError::CertificateExpired(expired));
        }
        let tightened_dir_mode = dir.ensure_private()?;
        let stop = dir.command("-stop");
        let lock = DaemonLock::acquire(&dir.lock_file(), dir.root(), &stop)?;
        let (policy, source) = load_policy(&policy_choice, &dir, &home)?;
        let hooks = crate::hooks::Configured::load(&dir).map_err(DaemonError::Hook)?;
        let listener = local_api::bind(&dir.socket(), &stop)?;
        let metrics_listener = bind_metrics(&dir)?;
        Ok(Self {
            dir,
            home,
            identity,
            lock,
            policy_choice,
            policy: (Arc::new(policy), source),
            hooks,
            tightened_dir_mode,
            listener,
            metrics_listener,
        })
    }

    /// After `-detach` forked: the lock came along, the pid in it did not.
    pub fn adopt_after_fork(&mut self) -> std::io::Result<()> {
        self.lock.record_pid()
    }

    /// In the parent after `-detach` forked: the child now holds the lock
    /// (flock belongs to the shared open file description), and dropping it
    /// here would unlock it for both, so the parent lets it go unreleased.
    pub fn hand_over_to_forked_child(self) {
        std::mem::forget(self.lock);
    }

    /// Serves until stopped. `on_ready` runs once the socket answers.
    pub async fn run(self, on_ready: impl FnOnce(u32)) -> Result<(), DaemonError> {
        if let Some(mode) = self.tightened_dir_mode {
            tracing::warn!(dir = %self.dir.root().display(), old_mode = format!("{mode:04o}"), "config dir was open to others; set it to 0700");
        }
        if let PolicySource::RestrictPaths { spec, .. } = &self.policy.1 {
            tracing::info!(%spec, "-restrict-paths given: config-paths is ignored while this daemon runs");
        }
        raise_open_files_limit();
        let socket = self.dir.socket();
        let listener = tokio::net::UnixListener::from_std(self.listener)
            .map_err(DaemonError::io("listen on", &socket))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (hub_tx, hub_rx) = watch::channel(HubView::connecting());
        let (paused_tx, paused_rx) = watch::channel(false);
        let policy: PolicyHandle = Arc::new(RwLock::new(self.policy));
        let metrics = Arc::new(ferry_mover::metrics::Metrics::default());
        if let Some(listener) = self.metrics_listener {
            tokio::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
                shutdown_rx.clone(),
            ));
        }
        let (transfers, reports) = match Transfers::start(
            &self.dir,
            &self.identity,
            self.home.clone(),
            policy.clone(),
            metrics,
            self.hooks,
            shutdown_rx.clone(),
        )
        .await
        {
            Ok((t, r)) => (Some(t), Some(r)),
            Err(reason) => {
                tracing::warn!(%reason, "transfers disabled");
                (None, None)
            }
        };
        let hub_task = tokio::spawn(hub_link::run(
            hub_link::LinkContext {
                url: self.identity.hub_url.clone(),
                dir: self.dir.clone(),
                home: self.home.clone(),
                policy: policy.clone(),
                transfers: transfers.clone(),
                reports: Arc::new(tokio::sync::Mutex::new(reports)),
                paused: paused_rx,
            },
            hub_tx,
            shutdown_rx.clone(),
        ));
        let shared = Arc::new(Shared {
            transfers,
            started: Instant::now(),
            dir: self.dir,
            home: self.home,
            identity: self.identity,
            policy_choice: self.policy_choice,
            policy,
            paused: paused_tx,
            policy_problem: Mutex::new(None),
            hub: hub_rx,
            shutdown: shutdown_tx,
        });
        let mut sigterm =
            signal(SignalKind::terminate()).map_err(DaemonError::io("handle", "SIGTERM"))?;
        let mut sigint =
            signal(SignalKind::interrupt()).map_err(DaemonError::io("handle", "SIGINT"))?;
        let mut sighup =
            signal(SignalKind::hangup()).map_err(DaemonError::io("handle", "SIGHUP"))?;
        let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
        let mut stop_requested = shutdown_rx.clone();
        let pid = std::process::id();
        tracing::info!(
            pid,
            dir = %shared.dir.root().display(),
            endpoint = %shared.identity.name,
            id = %shared.identity.id,
            hub = %shared.identity.hub_url,
            "ferry daemon ready"
        );
        on_ready(pid);
        service_manager::ready(&shared.hub.borrow());
        tokio::spawn(service_manager::follow_hub(shared.hub.clone()));

        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(permit) = clients.clone().try_acquire_owned() else {
                            tracing::warn!("too many local API clients; dropping one");
                            continue;
                        };
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            serve_client(stream, &shared).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept on local socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = sighup.recv() => {
                    match shared.reload() {
                        Ok(message) => tracing::info!("SIGHUP: {message}"),
                        Err(message) => tracing::error!("SIGHUP: {message}"),
                    }
                }
                _ = stop_requested.changed() => { tracing::info!("stop requested over the local socket"); break; }
            }
        }

        service_manager::stopping();
        shared.shutdown.send_replace(true);
        // Nothing to checkpoint yet but the hub link; give it a bounded moment.
        let _ = tokio::time::timeout(Duration::from_secs(5), hub_task).await;
        if let Err(e) = std::fs::remove_file(&socket) {
            tracing::warn!(socket = %socket.display(), error = %e, "could not remove socket");
        }
        tracing::info!(pid, "ferry daemon stopped");
        Ok(())
    }
}

/// State the local API handlers read and change.
struct Shared {
    transfers: Option<Arc<Transfers>>,
    started: Instant,
    dir: EndpointDir,
    home: PathBuf,
    identity: EndpointIdentity,
    policy_choice: PolicyChoice,
    policy: PolicyHandle,
    /// Data work is paused (`ferry -pause`); the hub link follows it.
    paused: watch::Sender<bool>,
    /// The last failed re-read of config-paths, until one succeeds:
    /// `-status` shows it, since the file on disk is not what is enforced.
    policy_problem: Mutex<Option<String>>,
    hub: watch::Receiver<HubView>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Re-reads config-paths and `endpoint.toml`'s `bwlimit` (SIGHUP and
    /// `ferry -reload` both come here). A bad file keeps the old policy
    /// in force, and `-status` says so until a re-read succeeds.
    fn reload(&self) -> Result<String, String> {
        // The endpoint's settings that may change without a restart.
        if let Some(transfers) = &self.transfers {
            match transfers.reload_bwlimit(&self.dir) {
                Ok(message) => tracing::info!("endpoint.toml re-read: {message}"),
                Err(message) => tracing::error!("endpoint.toml: {message}"),
            }
        }
        if let PolicyChoice::RestrictPaths(_) = self.policy_choice {
            return Ok("policy comes from -restrict-paths; config-paths not re-read".into());
        }
        let outcome = match load_policy(&self.policy_choice, &self.dir, &self.home) {
            Ok((policy, source)) => {
                let rules = policy.rules().len();
                match self.policy.write() {
                    Ok(mut current) => *current = (Arc::new(policy), source),
                    Err(poisoned) => *poisoned.into_inner() = (Arc::new(policy), source),
                }
                Ok(format!("config-paths reloaded ({rules} rules)"))
            }
            Err(e) => Err(format!("{e}; keeping the previous policy")),
        };
        let problem = outcome.as_ref().err().cloned();
        match self.policy_problem.lock() {
            Ok(mut current) => *current = problem,
            Err(poisoned) => *poisoned.into_inner() = problem,
        }
        outcome
    }

    fn status(&self) -> StatusReport {
        let paused = *self.paused.borrow();
        let hub = self.hub.borrow().clone();
        let policy = match self.policy.read() {
            Ok(p) => p.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        };
        let held = match &self.transfers {
            Some(t) if paused => t.held(),
            _ => Vec::new(),
        };
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_dir: self.dir.root().display().to_string(),
            endpoint_id: self.identity.id.clone(),
            endpoint_name: self.identity.name.clone(),
            hub_url: self.identity.hub_url.clone(),
            hub: if paused { HubState::Paused } else { hub.state },
            hub_detail: hub.detail,
            // A task held by the pause is still this endpoint's work in
            // progress, not idleness.
            transfer: if self.transfers.as_ref().is_some_and(|t| t.active()) || !held.is_empty() {
                TransferState::Active
            } else {
                TransferState::Idle
            },
            paused,
            held_tasks: held,
            policy,
            policy_problem: match self.policy_problem.lock() {
                Ok(problem) => problem.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
            uptime_secs: self.started.elapsed().as_secs(),
            node: Some(
                self.identity
                    .node
                    .clone()
                    .unwrap_or_else(|| ferry_proto::api::PRIMARY_NODE.to_string()),
            ),
        }
    }

    fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(Box::new(self.status())),
            Request::Stop => {
                self.shutdown.send_replace(true);
                Response::Done {
                    message: "stopping".into(),
                }
            }
            // The hub link is told before the work stops: the hub's notice
            // of the pause is on its way before the peer sees the end.
            Request::Pause => {
                let was = self.paused.send_replace(true);
                if let Some(t) = self.transfers.as_ref().filter(|_| !was) {
                    t.set_paused(true);
                }
                tracing::info!("paused: taking no data work");
                Response::Done {
                    message: if was { "already paused" } else { "paused" }.into(),
                }
            }
            Request::Unpause => {
                let was = self.paused.send_replace(false);
                if let Some(t) = self.transfers.as_ref().filter(|_| was) {
                    t.set_paused(false);
                }
                tracing::info!("unpaused: taking data work again");
                Response::Done {
                    message: if was { "unpaused" } else { "was not paused" }.into(),
                }
            }
            Request::Reload => match self.reload() {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message },
            },
        }
    }
}

fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let ours = nix::unistd::geteuid().as_raw();
    if cred.uid() == ours || cred.uid() == 0 {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not use the daemon of uid {ours}",
            cred.uid()
        ))
    }
}

async fn serve_client(mut stream: UnixStream, shared: &Shared) {
    // Read before judging the peer, so a refused client gets the reason as
    // the answer to its request instead of a broken pipe.
    let mut authorized = None;
    loop {
        let request = match tokio::time::timeout(
            CLIENT_IDLE,
            local_api::read_message::<Request>(&mut stream),
        )
        .await
        {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Ok(Some(request))) => request,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "invalid local API message; closing");
                if !matches!(e, TransportError::Io(_)) {
                    let _ = local_api::write_message(
                        &mut stream,
                        &Response::Error {
                            message: e.to_string(),
                        },
                    )
                    .await;
                }
                return;
            }
        };
        if let Err(reason) = authorized.get_or_insert_with(|| peer_allowed(&stream)) {
            tracing::warn!(%reason, "refused local API client");
            let message = reason.clone();
            let _ = local_api::write_message(&mut stream, &Response::Error { message }).await;
            return;
        }
        tracing::debug!(?request, "local API request");
        let response = shared.handle(request);
        if local_api::write_message(&mut stream, &response)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A receiving session holds at most `dest::OPEN_DATA_FILES` temporaries
/// open (and up to 64 directories), whatever the source's window, so a
/// transfer works under a low limit; several at once, and the hub link,
/// the local API and the metrics server, want more. The soft limit (often
/// 1024) goes up to the hard one, as the hard limit is there to allow.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    /// A few sessions at once at each end, plus room for the rest.
    const COMFORTABLE: u64 = 4 * (ferry_mover::dest::OPEN_DATA_FILES as u64 + 64) + 256;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => tracing::debug!(error = %e, "cannot raise the open files limit"),
        }
    }
    if hard < COMFORTABLE {
        tracing::warn!(
            limit = hard,
            "the open files limit is low for several transfers at once; raise it (LimitNOFILE= in the unit, or ulimit -Hn)"
        );
    }
}

/// The metrics server's listener, when `endpoint.toml` sets
/// `metrics_listen`; a setting that is wrong or an address that cannot be
/// bound refuses the start.
fn bind_metrics(dir: &EndpointDir) -> Result<Option<std::net::TcpListener>, DaemonError> {
    let file = dir.identity_file();
    let text = std::fs::read_to_string(&file).map_err(DaemonError::io("read", &file))?;
    let Some(address) =
        EndpointIdentity::metrics_listen_in(&text).map_err(|reason| DaemonError::Settings {
            file: file.clone(),
            reason,
        })?
    else {
        return Ok(None);
    };
    let bound = std::net::TcpListener::bind(address).and_then(|l| {
        // tokio takes it over in `run`.
        l.set_nonblocking(true)?;
        Ok(l)
    });
    bound
        .map(Some)
        .map_err(|source| DaemonError::MetricsListen {
            address,
            file,
            source,
        })
}
