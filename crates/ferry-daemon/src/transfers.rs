//! The daemon's share of transfers: the data listener (this endpoint as a
//! destination), sending when the hub says so (as a source), pause, and
//! cancellation. The mover does the work; this module owns its lifetimes.

use crate::PolicyHandle;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ferry_mover::dest::Sessions;
use ferry_mover::source::SendError;
use ferry_mover::{Context, Report, channel::Identity};
use ferry_proto::task::{Capability, TaskReport};
use ferry_setup::{EndpointDir, EndpointIdentity, parse_port_range};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const DEFAULT_PORTS: (u16, u16) = (50_000, 51_000);

#[derive(Debug)]
pub(crate) struct Transfers {
    ctx: Arc<Context>,
    sessions: Arc<Sessions>,
    sending: Mutex<HashMap<String, watch::Sender<bool>>>,
    accepting: watch::Sender<bool>,
    hub_key: Arc<RwLock<Option<Vec<u8>>>>,
    data_port: Option<u16>,
    data_host: Option<String>,
}

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
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Report>), String> {
        let mover_identity = Identity::load(dir, &identity.id).map_err(|e| e.to_string())?;
        let hub_key: Arc<RwLock<Option<Vec<u8>>>> = Arc::default();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let key_source = hub_key.clone();
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
        });
        let range = identity
            .data_ports
            .as_deref()
            .and_then(parse_port_range)
            .unwrap_or(DEFAULT_PORTS);
        let listener = bind(range).await;
        let sessions = Arc::new(Sessions::default());
        let (accepting, accepting_rx) = watch::channel(true);
        let data_port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        match listener {
            Some(listener) => {
                tracing::info!(port = ?data_port, "accepting data connections");
                tokio::spawn(ferry_mover::dest::serve(
                    ctx.clone(),
                    listener,
                    sessions.clone(),
                    accepting_rx,
                    shutdown,
                ));
            }
            None => tracing::warn!(
                first = range.0,
                last = range.1,
                "no free data port: this endpoint cannot receive transfers"
            ),
        }
        Ok((
            Arc::new(Self {
                ctx,
                sessions,
                sending: Mutex::new(HashMap::new()),
                accepting,
                hub_key,
                data_port,
                data_host: identity.data_address.clone(),
            }),
            reports_rx,
        ))
    }

    /// `host:port` to advertise, given the local address of the control connection.
    pub(crate) fn data_address(&self, local: Option<IpAddr>) -> Option<String> {
        let port = self.data_port?;
        let host = match (&self.data_host, local) {
            (Some(h), _) => h.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return None,
        };
        Some(format!("{host}:{port}"))
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

    /// Starts sending a task attempt, as the hub asked.
    pub(crate) fn start_sending(self: &Arc<Self>, sealed: String, connect_to: String) {
        // The ids are only for reports; the mover verifies the signature.
        let ids = Capability::open(&sealed)
            .ok()
            .and_then(|(body, _)| Capability::parse_verified(&body).ok())
            .map(|c| (c.task_id, c.attempt));
        let Some((task_id, attempt)) = ids else {
            tracing::warn!("the hub sent an unreadable capability");
            return;
        };
        if !*self.accepting.borrow() {
            self.ctx.report(
                &task_id,
                attempt,
                TaskReport::Fault {
                    message: "the source endpoint is paused".into(),
                },
            );
            return;
        }
        let (cancel, cancel_rx) = watch::channel(false);
        if let Ok(mut sending) = self.sending.lock()
            && let Some(old) = sending.insert(task_id.clone(), cancel)
        {
            old.send_replace(true);
        }
        let this = self.clone();
        tokio::spawn(async move {
            tracing::info!(task = %task_id, attempt, %connect_to, "sending");
            let result =
                ferry_mover::source::send(this.ctx.clone(), sealed, connect_to, cancel_rx).await;
            match result {
                Ok(()) => tracing::info!(task = %task_id, attempt, "sent"),
                Err(SendError::Canceled) => {
                    tracing::info!(task = %task_id, attempt, "sending stopped")
                }
                Err(SendError::Fatal(message)) => {
                    tracing::warn!(task = %task_id, %message, "sending failed");
                    this.ctx
                        .report(&task_id, attempt, TaskReport::Failed { message });
                }
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e, "sending interrupted");
                    this.ctx.report(
                        &task_id,
                        attempt,
                        TaskReport::Fault {
                            message: e.to_string(),
                        },
                    );
                }
            }
            if let Ok(mut sending) = this.sending.lock() {
                sending.remove(&task_id);
            }
        });
    }

    pub(crate) fn cancel(&self, task_id: &str) {
        if let Ok(sending) = self.sending.lock()
            && let Some(cancel) = sending.get(task_id)
        {
            cancel.send_replace(true);
        }
        self.sessions.cancel(task_id);
    }

    /// Pause: stop what runs (journals keep it resumable) and take nothing
    /// new; unpause: take work again (the hub restarts the tasks).
    pub(crate) fn set_paused(&self, paused: bool) {
        self.accepting.send_replace(!paused);
        if paused {
            if let Ok(sending) = self.sending.lock() {
                for cancel in sending.values() {
                    cancel.send_replace(true);
                }
            }
            self.sessions.cancel_all();
        }
    }

    pub(crate) fn active(&self) -> bool {
        self.sessions.active() > 0 || self.sending.lock().map(|s| !s.is_empty()).unwrap_or(false)
    }
}
