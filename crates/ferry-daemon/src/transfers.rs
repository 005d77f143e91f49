//! The daemon's share of transfers: the data listener (this endpoint as a
//! destination), sending when the hub says so (as a source), pause, and
//! cancellation. The mover does the work; this module owns its lifetimes.

use crate::PolicyHandle;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ferry_endpoint::{EndpointDir, EndpointIdentity, parse_port_range};
use ferry_mover::dest::{DataAcceptor, Sessions};
use ferry_mover::link::{DataIo, RelayDial, RelayDialer, RelayedIo, Route};
use ferry_mover::source::SendError;
use ferry_mover::{Context, Disposition, Report, channel::Identity};
use ferry_proto::relay::RelayHello;
use ferry_proto::task::{Capability, TaskReport};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const DEFAULT_PORTS: (u16, u16) = (50_000, 51_000);

#[derive(Debug)]
pub(crate) struct Transfers {
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    sending: Mutex<Senders>,
    accepting: watch::Sender<bool>,
    /// Tasks whose data work this endpoint's pause holds back: what ran
    /// when it paused, and what the hub started meanwhile.
    held: Mutex<BTreeSet<String>>,
    /// The hub's welcome said it hears of pauses (and waits for them);
    /// an older hub learns of one only as a fault.
    hub_hears_pause: AtomicBool,
    hub_key: Arc<RwLock<Option<Vec<u8>>>>,
    data_port: Option<u16>,
    /// Takes data connections: the listener's, and those the hub relays.
    acceptor: Arc<DataAcceptor>,
    hub: Arc<HubAt>,
    data_host: Option<String>,
    /// The `[hooks.NAME]` names, for the hub's hello.
    hook_names: Vec<String>,
}

/// Where the hub is and who this endpoint is to it, for dial-backs.
#[derive(Debug)]
struct HubAt {
    url: String,
    dir: EndpointDir,
}

/// Opens relayed data streams of one attempt: a dial to the hub per
/// stream, naming the task, attempt, stream and why.
struct HubRelay {
    hub: Arc<HubAt>,
    task_id: String,
    attempt: u32,
}

impl RelayDialer for HubRelay {
    fn dial(&self, stream: u16, reason: &str) -> RelayDial {
        let hub = self.hub.clone();
        let hello = RelayHello::Relay {
            task_id: self.task_id.clone(),
            attempt: self.attempt,
            stream,
            reason: cut(reason, ferry_proto::relay::MAX_REASON),
        };
        Box::pin(async move {
            crate::hub_dial::dial_hub(&hub.url, &hub.dir, &hello)
                .await
                .map(|tls| Box::new(tls) as Box<dyn RelayedIo>)
                .map_err(|e| e.to_string())
        })
    }
}

/// `text`, cut at a character boundary to at most `max` bytes (what a
/// relay hello may carry).
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What an older hub, deaf to pauses, is told about a paused attempt.
const PAUSED_FAULT: &str = "the endpoint is paused; the task resumes when it is unpaused";

/// Binds the first free port of the range on all interfaces: peers are
/// admitted by mutual TLS and a hub-signed capability, not by address.
async fn bind(range: (u16, u16)) -> Option<TcpListener> {
    for port in range.0..=range.1 {
        if let Ok(l) = TcpListener::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)).await {
            return Some(l);
        }
    }
    None
}

impl Transfers {
    /// Sets up the mover and starts the data listener.
    pub(crate) async fn start(
        dir: &EndpointDir,
        identity: &EndpointIdentity,
        home: PathBuf,
        policy: PolicyHandle,
        metrics: Arc<ferry_mover::metrics::Metrics>,
        hooks: crate::hooks::Configured,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Report>), String> {
        let mover_identity = Identity::load(dir, &identity.id).map_err(|e| e.to_string())?;
        let umask = receiving_umask(dir)?;
        let bwlimit = bwlimit_setting(dir)?;
        log_bwlimit(bwlimit);
        let hub_key: Arc<RwLock<Option<Vec<u8>>>> = Arc::default();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let key_source = hub_key.clone();
        let hooks = Arc::new(crate::hooks::EndpointHooks::new(
            hooks,
            dir,
            home.clone(),
            reports.clone(),
        ));
        let hook_names = hooks.names();
        let ctx = Arc::new(Context {
            identity: mover_identity,
            home,
            state_dir: dir.state_dir(),
            policy: Box::new(move || match policy.read() {
                Ok(p) => p.0.clone(),
                Err(poisoned) => poisoned.into_inner().0.clone(),
            }),
            hub_key: Box::new(move || key_source.read().ok().and_then(|k| k.clone())),
            reports,
            umask,
            liveness: ferry_mover::channel::Liveness::default(),
            tuning: ferry_mover::tuner::Tuning::default(),
            bwlimit: Arc::new(ferry_mover::throttle::Limiter::new(bwlimit)),
            metrics,
            hooks: Some(hooks),
        });
        let range = identity
            .data_ports
            .as_deref()
            .and_then(parse_port_range)
            .unwrap_or(DEFAULT_PORTS);
        let listen = data_listen_setting(dir)?;
        let listener = if listen { bind(range).await } else { None };
        let sessions = Arc::new(Sessions::default());
        let (accepting, accepting_rx) = watch::channel(true);
        let data_port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        // Relayed data connections take the same door as direct ones.
        let acceptor = DataAcceptor::new(ctx.clone(), sessions.clone(), accepting_rx)
            .map_err(|e| format!("cannot accept data connections: {e}"))?;
        match listener {
            Some(listener) => {
                tracing::info!(port = ?data_port, "accepting data connections");
                tokio::spawn(acceptor.clone().serve(listener, shutdown));
            }
            None if !listen => tracing::info!(
                "data_listen = false: no data listener; transfers to this endpoint go through the hub's relay"
            ),
            None => tracing::warn!(
                first = range.0,
                last = range.1,
                "no free data port: this endpoint receives transfers only through the hub's relay"
            ),
        }
        Ok((
            Arc::new(Self {
                ctx,
                sessions,
                sending: Mutex::default(),
                accepting,
                held: Mutex::default(),
                hub_hears_pause: AtomicBool::new(false),
                hub_key,
                data_port,
                acceptor,
                hub: Arc::new(HubAt {
                    url: identity.hub_url.clone(),
                    dir: dir.clone(),
                }),
                data_host: identity.data_address.clone(),
                hook_names,
            }),
            reports_rx,
        ))
    }

    /// `host:port` to advertise, given the local address of the control
    /// connection: the `data_address` setting's host and port where it
    /// names them (a port forwarded to the listener by a NAT), else that
    /// local address and the listener's port. Nothing without a listener.
    pub(crate) fn data_address(&self, local: Option<IpAddr>) -> Option<String> {
        EndpointIdentity::advertised_data_address(self.data_host.as_deref(), self.data_port?, local)
    }

    /// What a task's `--on-success` may name here.
    pub(crate) fn hook_names(&self) -> Vec<String> {
        self.hook_names.clone()
    }

    /// The hub's task-signing key, from its welcome.
    pub(crate) fn set_hub_key(&self, encoded: &str) {
        let key = B64.decode(encoded).ok().filter(|k| !k.is_empty());
        if key.is_none() {
            tracing::warn!("the hub sent no usable task-signing key");
        }
        if let Ok(mut slot) = self.hub_key.write() {
            *slot = key;
        }
    }

    /// Whether the hub now connected hears of pauses (from its welcome).
    pub(crate) fn set_hub_hears_pause(&self, hears: bool) {
        self.hub_hears_pause.store(hears, Ordering::SeqCst);
    }

    /// Starts sending a task attempt, as the hub asked: to `connect_to`,
    /// or (when the hub offers it and that cannot be reached, or there
    /// is none) through the hub's relay.
    pub(crate) fn start_sending(
        self: &Arc<Self>,
        sealed: String,
        connect_to: Option<String>,
        relay: bool,
    ) {
        // The ids are only for reports; the mover verifies the signature.
        let ids = Capability::open(&sealed)
            .ok()
            .and_then(|(body, _)| Capability::parse_verified(&body).ok())
            .map(|c| (c.task_id, c.attempt, c.destination_endpoint, c.shard));
        let Some((task_id, attempt, destination, shard)) = ids else {
            tracing::warn!("the hub sent an unreadable capability");
            return;
        };
        if !*self.accepting.borrow() {
            self.hold(&task_id);
            // The start crossed the pause notice, which ends the attempt at
            // the hub; only a hub deaf to pauses needs telling.
            if self.hub_hears_pause.load(Ordering::SeqCst) {
                tracing::info!(task = %task_id, attempt, "paused: not sending until unpaused");
            } else {
                self.ctx.report(
                    &task_id,
                    attempt,
                    TaskReport::Fault {
                        message: PAUSED_FAULT.into(),
                        side: None,
                    },
                );
            }
            return;
        }
        let started = match self.sending.lock() {
            Ok(mut sending) => sending.start(&task_id, attempt, &destination),
            Err(_) => None,
        };
        let Some((token, cancel_rx)) = started else {
            tracing::warn!(task = %task_id, attempt, "a newer attempt of this task is sending: ignored");
            return;
        };
        let route = Route {
            direct: connect_to,
            relay: relay.then(|| {
                Arc::new(HubRelay {
                    hub: self.hub.clone(),
                    task_id: task_id.clone(),
                    attempt,
                }) as Arc<dyn RelayDialer>
            }),
        };
        let this = self.clone();
        tokio::spawn(async move {
            tracing::info!(task = %task_id, attempt, ?route, shard = ?shard, "sending");
            let result =
                ferry_mover::source::send_via(this.ctx.clone(), sealed, route, cancel_rx).await;
            match result {
                Ok(()) => tracing::info!(task = %task_id, attempt, "sent"),
                Err(SendError::Canceled) => {
                    tracing::info!(task = %task_id, attempt, "sending stopped")
                }
                Err(e @ SendError::PeerStopped(_)) => {
                    tracing::info!(task = %task_id, attempt, reason = %e, "sending stopped")
                }
                // The disposition decides, the same one the destination
                // reports (an abort carries it both ways).
                Err(e) => {
                    let (message, side) = (e.to_string(), e.side());
                    let at = side.map(|s| s.to_string());
                    let report = match e.disposition() {
                        Disposition::FailTask => {
                            tracing::warn!(task = %task_id, %message, ?at, "sending failed");
                            TaskReport::Failed { message, side }
                        }
                        _ => {
                            tracing::warn!(task = %task_id, %message, ?at, "sending interrupted");
                            TaskReport::Fault { message, side }
                        }
                    };
                    this.ctx.report(&task_id, attempt, report);
                }
            }
            if let Ok(mut sending) = this.sending.lock() {
                sending.finished(&task_id, attempt, token);
            }
        });
    }

    /// The hub asks for a relayed data stream into this endpoint: dial it
    /// back and take the stream as any data connection, through the same
    /// admission, TLS handshake and capability check. The hub's `task_id`,
    /// `attempt` and `stream` are only for the log: the capability inside
    /// decides.
    pub(crate) fn relay_dial(
        self: &Arc<Self>,
        token: String,
        task_id: String,
        attempt: u32,
        stream: u16,
        via: Option<String>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let hello = RelayHello::Dialback { token };
            let dialed =
                crate::hub_dial::dial_hub_via(&this.hub.url, via.as_deref(), &this.hub.dir, &hello)
                    .await;
            match dialed {
                Ok(tls) => {
                    let hub = tls
                        .get_ref()
                        .0
                        .peer_addr()
                        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                    tracing::debug!(task = %task_id, attempt, stream, "relayed data stream from the hub");
                    this.acceptor.take(DataIo::Relayed(Box::new(tls)), hub);
                }
                Err(e) => {
                    tracing::warn!(task = %task_id, attempt, stream, error = %e, "cannot dial the hub back for a relayed data stream")
                }
            }
        });
    }

    /// The hub stopped a task's attempts up to `through_attempt`: sending
    /// stops, and as a destination this endpoint refuses those attempts'
    /// data connections from now on, keeping their temporaries for the
    /// next attempt. Absent, every attempt: the task is over, and as a
    /// destination this endpoint also removes what its attempts kept.
    pub(crate) fn cancel(&self, task_id: &str, through_attempt: Option<u32>) {
        if let Ok(sending) = self.sending.lock() {
            sending.cancel(task_id, through_attempt);
        }
        match through_attempt {
            Some(_) => self.sessions.cancel_through(task_id, through_attempt),
            None => {
                self.sessions.end_task(&self.ctx, task_id);
                if let Ok(mut held) = self.held.lock() {
                    held.remove(task_id);
                }
            }
        }
    }

    /// Endpoints the hub revoked (`complete`: the hub's whole list, from
    /// its welcome; else news since): their data connections are refused
    /// and cut, and nothing more is sent to them.
    pub(crate) fn revoked(&self, endpoint_ids: Vec<String>, complete: bool) {
        let ids: HashSet<String> = endpoint_ids.into_iter().collect();
        if !ids.is_empty() {
            tracing::info!(endpoints = ids.len(), "the hub lists revoked endpoints");
        }
        if let Ok(sending) = self.sending.lock() {
            sending.cancel_to(&ids);
        }
        self.sessions.revoke(ids, complete);
    }

    /// Takes up a renewed certificate for new data connections.
    pub(crate) fn reload_identity(&self, dir: &EndpointDir) {
        if let Err(e) = self.ctx.identity.reload(dir) {
            tracing::warn!(error = %e, "data connections keep the previous certificate");
        }
    }

    /// Pause: stop what runs (journals keep it resumable; the peer is
    /// told it is no failure) and take nothing new; unpause: take work
    /// again. The hub hears of either over the control channel and starts
    /// the tasks again; an older hub is told of a pause as a fault.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.accepting.send_replace(!paused);
        if !paused {
            if let Ok(mut held) = self.held.lock() {
                held.clear();
            }
            return;
        }
        let mut stopped = match self.sending.lock() {
            Ok(sending) => sending.cancel_all(),
            Err(_) => Vec::new(),
        };
        stopped.extend(self.sessions.cancel_all());
        let hears = self.hub_hears_pause.load(Ordering::SeqCst);
        for (task_id, attempt) in stopped {
            self.hold(&task_id);
            if !hears {
                let message = PAUSED_FAULT.to_string();
                let side = None;
                self.ctx
                    .report(&task_id, attempt, TaskReport::Fault { message, side });
            }
        }
    }

    fn hold(&self, task_id: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(task_id.to_string());
        }
    }

    /// The tasks a pause holds back, while paused.
    pub(crate) fn held(&self) -> Vec<String> {
        if *self.accepting.borrow() {
            return Vec::new();
        }
        self.held
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Re-reads `bwlimit` from `endpoint.toml` (SIGHUP): running
    /// transfers take the new rate at their next piece. A bad setting
    /// keeps the rate in force.
    pub(crate) fn reload_bwlimit(&self, dir: &EndpointDir) -> Result<String, String> {
        let rate =
            bwlimit_setting(dir).map_err(|e| format!("{e}; keeping the previous bwlimit"))?;
        self.ctx.bwlimit.set_rate(rate);
        Ok(match rate {
            Some(rate) => format!("bwlimit {}", ferry_proto::rate::format_rate(rate)),
            None => "no bwlimit".into(),
        })
    }

    pub(crate) fn active(&self) -> bool {
        self.sessions.active() > 0 || self.sending.lock().map(|s| !s.is_empty()).unwrap_or(false)
    }
}

/// The endpoint's bandwidth cap: `endpoint.toml`'s `bwlimit`, if any.
fn data_listen_setting(dir: &EndpointDir) -> Result<bool, String> {
    let file = dir.identity_file();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    EndpointIdentity::data_listen_in(&text)
        .map_err(|reason| format!("{}: {reason}", file.display()))
}

fn bwlimit_setting(dir: &EndpointDir) -> Result<Option<u64>, String> {
    let file = dir.identity_file();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    EndpointIdentity::bwlimit_in(&text).map_err(|reason| format!("{}: {reason}", file.display()))
}

fn log_bwlimit(rate: Option<u64>) {
    match rate {
        Some(rate) => tracing::info!(
            bwlimit = %ferry_proto::rate::format_rate(rate),
            "data sent and received is capped at this many bytes per second"
        ),
        None => tracing::info!("no bandwidth cap (bwlimit in endpoint.toml)"),
    }
}

/// The umask received files get: `endpoint.toml`'s `umask`, else this
/// process's own (read once, here, at start).
fn receiving_umask(dir: &EndpointDir) -> Result<u32, String> {
    let file = dir.identity_file();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let configured = EndpointIdentity::umask_in(&text)
        .map_err(|reason| format!("{}: {reason}", file.display()))?;
    let (umask, from) = match configured {
        Some(umask) => (umask, "endpoint.toml"),
        None => (process_umask(), "the daemon's umask"),
    };
    tracing::info!(
        umask = format!("{umask:03o}"),
        from,
        "received files and directories are narrowed by this umask"
    );
    Ok(umask)
}

/// This process's umask. Linux shows it in `/proc/self/status`; elsewhere
/// the only way to read it is to set it, so it is set to the strictest
/// value for that instant (a file another thread creates meanwhile is only
/// more private) and put back.
fn process_umask() -> u32 {
    let shown = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|bits| u32::from_str_radix(bits.trim(), 8).ok())
        });
    if let Some(umask) = shown {
        return umask & 0o777;
    }
    use nix::sys::stat::{Mode, umask};
    let old = umask(Mode::from_bits_truncate(0o077));
    umask(old);
    old.bits() & 0o777
}

/// Cancel handles of the attempts this endpoint is sending, by task and
/// attempt: an attempt that ends removes its own entry and no other, so
/// cancel and pause always reach what still runs.
#[derive(Debug, Default)]
struct Senders {
    next_token: u64,
    live: HashMap<(String, u32), Sending>,
}

#[derive(Debug)]
struct Sending {
    /// Tells this start apart from a repeated start of the same attempt.
    token: u64,
    destination: String,
    cancel: watch::Sender<bool>,
}

impl Senders {
    /// Registers a new attempt and stops every other attempt of its task
    /// (they stay listed until they end). `None` if a newer attempt of the
    /// task is already sending.
    fn start(
        &mut self,
        task_id: &str,
        attempt: u32,
        destination: &str,
    ) -> Option<(u64, watch::Receiver<bool>)> {
        let newer = self
            .live
            .keys()
            .any(|(task, running)| task == task_id && *running > attempt);
        if newer {
            return None;
        }
        self.cancel(task_id, None);
        self.next_token += 1;
        let (cancel, cancel_rx) = watch::channel(false);
        let sending = Sending {
            token: self.next_token,
            destination: destination.to_string(),
            cancel,
        };
        if let Some(replaced) = self.live.insert((task_id.to_string(), attempt), sending) {
            replaced.cancel.send_replace(true);
        }
        Some((self.next_token, cancel_rx))
    }

    /// An attempt ended: its own entry goes, if a repeated start of the
    /// same attempt has not replaced it.
    fn finished(&mut self, task_id: &str, attempt: u32, token: u64) {
        let key = (task_id.to_string(), attempt);
        if self.live.get(&key).is_some_and(|s| s.token == token) {
            self.live.remove(&key);
        }
    }

    /// Stops the task's attempts up to `through` (all of them if `None`).
    fn cancel(&self, task_id: &str, through: Option<u32>) {
        let through = through.unwrap_or(u32::MAX);
        for ((task, attempt), sending) in &self.live {
            if task == task_id && *attempt <= through {
                sending.cancel.send_replace(true);
            }
        }
    }

    /// Stops everything sent to these endpoints.
    fn cancel_to(&self, destinations: &HashSet<String>) {
        for sending in self.live.values() {
            if destinations.contains(&sending.destination) {
                sending.cancel.send_replace(true);
            }
        }
    }

    /// Stops everything sent; returns it, by task and attempt.
    fn cancel_all(&self) -> Vec<(String, u32)> {
        self.live
            .iter()
            .map(|((task, attempt), sending)| {
                sending.cancel.send_replace(true);
                (task.clone(), *attempt)
            })
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_to_bytes_at_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        // 'é' is two bytes: a cut inside it leaves it out.
        assert_eq!(cut("aé", 2), "a");
        assert!(cut(&"é".repeat(600), 512).len() <= 512);
    }

    #[test]
    fn an_old_attempt_ending_leaves_the_new_one_cancellable() {
        let mut senders = Senders::default();
        let (first, first_rx) = senders.start("t", 1, "dst").unwrap();
        let (second, second_rx) = senders.start("t", 2, "dst").unwrap();
        assert!(*first_rx.borrow(), "a new attempt stops the old one");
        assert!(!*second_rx.borrow());
        senders.finished("t", 1, first);
        assert!(!senders.is_empty(), "the new attempt is still sending");
        senders.cancel("t", None);
        assert!(*second_rx.borrow(), "cancel reaches the running attempt");
        senders.finished("t", 2, second);
        assert!(senders.is_empty());
    }

    #[test]
    fn cancel_by_task_reaches_every_attempt_up_to_the_one_named() {
        let mut senders = Senders::default();
        let (_, other_rx) = senders.start("other", 1, "dst").unwrap();
        let (_, three_rx) = senders.start("t", 3, "dst").unwrap();
        assert!(senders.start("t", 2, "dst").is_none(), "a stale start");
        senders.cancel("t", Some(2));
        assert!(!*three_rx.borrow(), "attempt 3 is newer than the cancel");
        senders.cancel("t", Some(3));
        assert!(*three_rx.borrow());
        assert!(!*other_rx.borrow(), "another task is untouched");
        senders.cancel_all();
        assert!(*other_rx.borrow());
    }

    #[test]
    fn a_repeated_start_of_one_attempt_replaces_it_and_the_first_ending_keeps_it() {
        let mut senders = Senders::default();
        let (first, first_rx) = senders.start("t", 1, "dst").unwrap();
        let (second, second_rx) = senders.start("t", 1, "dst").unwrap();
        assert!(*first_rx.borrow());
        senders.finished("t", 1, first);
        senders.cancel("t", None);
        assert!(*second_rx.borrow(), "the repeated start is still listed");
        senders.finished("t", 1, second);
        assert!(senders.is_empty());
    }

    #[test]
    fn sending_to_a_revoked_endpoint_stops() {
        let mut senders = Senders::default();
        let (_, to_gone) = senders.start("a", 1, "gone").unwrap();
        let (_, to_kept) = senders.start("b", 1, "kept").unwrap();
        senders.cancel_to(&HashSet::from(["gone".to_string()]));
        assert!(*to_gone.borrow() && !*to_kept.borrow());
    }

    #[test]
    fn the_process_umask_is_read_without_changing_it() {
        let before = process_umask();
        assert_eq!(process_umask(), before);
        assert_eq!(before & !0o777, 0);
    }
}
