//! The daemon's side of the hub link: dial the hub over mutual TLS with the
//! endpoint certificate, run the control protocol (handshake, heartbeats,
//! file operations), and when the link fails say why in words a user can
//! act on, back off with jitter, and dial again.

use crate::PolicyHandle;
use crate::transfers::Transfers;
use ferry_endpoint::{EndpointDir, renewal};
use ferry_mover::Report;
use ferry_paths::Policy;
use ferry_proto::api::FsOutcome;
use ferry_proto::backoff::Backoff;
use ferry_proto::control::{self, ControlError, EndpointConnection, EndpointEvent, RefuseReason};
use ferry_proto::local_api::HubState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The hub has this long to welcome us after the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The link as the status report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubView {
    pub state: HubState,
    pub detail: Option<String>,
}

impl HubView {
    pub fn connecting() -> Self {
        Self {
            state: HubState::Connecting,
            detail: None,
        }
    }
}

fn describe_dial_error(target: &str, port: u16, err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => {
            format!(
                "connection refused by {target} (is the hub running and listening on port {port}?)"
            )
        }
        TimedOut => format!(
            "timed out connecting to {target} (a firewall may drop outbound traffic to port {port})"
        ),
        HostUnreachable | NetworkUnreachable => format!("no route to {target}: {err}"),
        _ => format!("cannot connect to {target}: {err}"),
    }
}

fn jitter_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// One dial: resolve, then try each address. The error is the user's line.
pub(crate) async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> =
        match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve hub host {host:?}: {e}")),
            Err(_) => return Err(format!("timed out resolving hub host {host:?}")),
        };
    let mut last = format!("hub host {host:?} resolved to no addresses");
    for addr in addrs {
        let target = addr.to_string();
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = describe_dial_error(&target, port, &e),
            Err(_) => {
                last = describe_dial_error(&target, port, &std::io::ErrorKind::TimedOut.into())
            }
        }
    }
    Err(last)
}

/// What the link needs from the daemon.
#[derive(Debug, Clone)]
pub(crate) struct LinkContext {
    pub url: String,
    pub dir: EndpointDir,
    pub home: PathBuf,
    pub policy: PolicyHandle,
    pub transfers: Option<Arc<Transfers>>,
    /// Reports from the mover, sent while a session is up.
    pub reports: Arc<tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<Report>>>>,
    /// Whether data work is paused (`ferry -pause`): the hub hears it in
    /// the hello and whenever it changes, and waits instead of retrying.
    pub paused: watch::Receiver<bool>,
}

/// How a session with the hub ended.
struct SessionEnd {
    reason: String,
    was_connected: bool,
    /// The hub turned this endpoint away for good (revoked or deleted):
    /// no later dial can succeed with this certificate.
    revoked: bool,
}

/// What `-status` says once the hub revoked this endpoint: the hub's own
/// words, that dialling stopped, and the commands that make the machine an
/// endpoint again (repeating `-dir` when one was given).
fn revoked_detail(dir: &EndpointDir, hub_url: &str, hub_said: &str) -> String {
    format!(
        "{hub_said}; this daemon no longer dials the hub. To use this machine as an endpoint again: `{}`, then `{}` (or `{}` with a key from `ferry endpoint create`), then `{}`",
        dir.command("-stop"),
        dir.command(&format!("-setup --force --hub {hub_url}")),
        dir.command("-setup KEY --force"),
        dir.command("-start &"),
    )
}

/// Keeps the link up until `shutdown` turns true.
pub(crate) async fn run(
    ctx: LinkContext,
    view: watch::Sender<HubView>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (host, port) = match ferry_proto::api::https_host_port(&ctx.url) {
        Ok(a) => a,
        Err(reason) => {
            tracing::error!(%reason, "hub link disabled");
            view.send_replace(HubView {
                state: HubState::Disconnected,
                detail: Some(reason),
            });
            return;
        }
    };
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
    let mut seed = jitter_seed();
    loop {
        view.send_replace(HubView::connecting());
        let end = tokio::select! {
            end = session(&ctx, &host, port, &view) => end,
            _ = shutdown.changed() => return,
        };
        if end.revoked {
            // Every later dial would be refused the same way: say so once
            // and leave the hub alone until the daemon is stopped.
            let detail = revoked_detail(&ctx.dir, &ctx.url, &end.reason);
            tracing::error!(reason = %detail, "the hub revoked this endpoint; not dialling again");
            view.send_replace(HubView {
                state: HubState::Disconnected,
                detail: Some(detail),
            });
            let _ = shutdown.changed().await;
            return;
        }
        if end.was_connected {
            backoff.reset();
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = backoff.on_failure(seed >> 11);
        tracing::warn!(reason = %end.reason, retry_in = ?wait, "hub not connected");
        view.send_replace(HubView {
            state: HubState::Disconnected,
            detail: Some(format!(
                "{}; next try in {}s",
                end.reason,
                wait.as_secs().max(1)
            )),
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Why dialing is pointless: this endpoint's certificate has expired (it
/// was offline past its renewal), and what to run about it.
pub(crate) fn expired_certificate(dir: &EndpointDir) -> Option<String> {
    let validity = renewal::validity_of_file(&dir.cert_file()).ok()?;
    let now = unix_now();
    validity.expired(now).then(|| {
        format!(
            "this endpoint's certificate expired {} ago (it was offline past its renewal); set it up again with `{}`, or `{}` with a new setup key",
            approximate(now - validity.not_after),
            dir.command("-setup --force"),
            dir.command("-setup KEY --force"),
        )
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `40 seconds`, `3 hours`, `12 days`.
fn approximate(secs: i64) -> String {
    let (n, unit) = match secs.max(0) {
        s if s < 120 => (s, "second"),
        s if s < 7200 => (s / 60, "minute"),
        s if s < 2 * 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// When to ask for the next certificate, from the one in `endpoint.crt`.
fn renewal_deadline(dir: &EndpointDir) -> Option<Instant> {
    let validity = renewal::validity_of_file(&dir.cert_file()).ok()?;
    let wait = (validity.renew_at() - unix_now()).max(0) as u64;
    Some(Instant::now() + Duration::from_secs(wait))
}

/// After a refused or failed renewal: try again in a minute.
const RENEWAL_RETRY: Duration = Duration::from_secs(60);

/// TLS to the hub as this endpoint (its certificate, the hub's CA), for
/// the connection `alpn` names: control, or a dial-back.
pub(crate) fn tls_config(
    dir: &EndpointDir,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = ferry_tls::certs_from_file(&dir.hub_ca_file()).map_err(|e| e.to_string())?;
    let chain = ferry_tls::certs_from_file(&dir.cert_file()).map_err(|e| e.to_string())?;
    let key = ferry_tls::key_from_file(&dir.key_file()).map_err(|e| e.to_string())?;
    ferry_tls::client_config(&roots, Some((chain, key)), &[alpn]).map_err(|e| e.to_string())
}

/// Alerts by which a TLS server refuses the client's certificate.
fn is_certificate_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied
    )
}

/// Words for a TLS failure, telling whose certificate was the problem.
pub(crate) fn describe_tls_error(dir: &EndpointDir, e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "certificate rejected: the hub's certificate does not verify against {} ({why:?})",
            dir.hub_ca_file().display()
        ),
        Some(rustls::Error::AlertReceived(alert)) if is_certificate_alert(*alert) => format!(
            "certificate rejected: the hub refused this endpoint's certificate ({alert:?}); set the endpoint up again with `{}`",
            dir.command("-setup --force")
        ),
        // A damaged or cut record (BadRecordMac, DecodeError, ...) is the
        // network's doing: the link is dialled again, nothing to set up.
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the hub ended the TLS session ({alert:?}): the connection was damaged or interrupted on the way"
        ),
        Some(other) => format!("TLS with the hub failed: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the hub closed the connection".to_string()
        }
        None => format!("connection to the hub failed: {e}"),
    }
}

/// One connection, from dial to its end.
async fn session(
    ctx: &LinkContext,
    host: &str,
    port: u16,
    view: &watch::Sender<HubView>,
) -> SessionEnd {
    let fail = |reason: String| SessionEnd {
        reason,
        was_connected: false,
        revoked: false,
    };
    if let Some(expired) = expired_certificate(&ctx.dir) {
        return fail(expired);
    }
    let server_name = match rustls_pki_types::ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(_) => return fail(format!("{host:?} is not a valid hub host name")),
    };
    // The network first: "refused" or "timed out" is what a user on a new
    // cluster most needs to see.
    let tcp = match dial(host, port).await {
        Ok(t) => t,
        Err(reason) => return fail(reason),
    };
    let config = match tls_config(&ctx.dir, control::ALPN) {
        Ok(c) => c,
        Err(reason) => return fail(format!("cannot load the endpoint's credentials: {reason}")),
    };
    let _ = tcp.set_nodelay(true);
    let data_address = ctx
        .transfers
        .as_ref()
        .and_then(|t| t.data_address(tcp.local_addr().ok().map(|a| a.ip())));
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = match tokio::time::timeout(DIAL_TIMEOUT, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return fail(describe_tls_error(&ctx.dir, &e)),
        Err(_) => return fail(format!("timed out in the TLS handshake with {host}:{port}")),
    };
    drive(ctx, tls, view, data_address).await
}

/// Runs the control protocol over an established TLS stream.
async fn drive<S>(
    ctx: &LinkContext,
    stream: S,
    view: &watch::Sender<HubView>,
    data_address: Option<String>,
) -> SessionEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let software = format!("ferry {}", env!("CARGO_PKG_VERSION"));
    let mut paused = ctx.paused.clone();
    // Without transfers this endpoint runs no hooks either: it names
    // none, so the hub refuses a task that asks for one here.
    let hooks = ctx
        .transfers
        .as_ref()
        .map(|t| t.hook_names())
        .unwrap_or_default();
    // Relayed data streams go through the mover, so only an endpoint
    // that runs transfers offers them.
    let mut features = vec![
        control::FEATURE_FILE_STREAM.to_string(),
        control::FEATURE_FILE_UPLOAD.to_string(),
    ];
    if ctx.transfers.is_some() {
        features.push(ferry_proto::relay::RELAY_FEATURE.to_string());
        features.push(ferry_proto::task::FEATURE_SHARDS.to_string());
        features.push(ferry_proto::task::FEATURE_SPLIT_FILES.to_string());
        features.push(ferry_proto::task::FEATURE_SPLIT_LARGE_FILES.to_string());
    }
    let mut conn = EndpointConnection::with_features(
        Instant::now(),
        &software,
        data_address,
        *paused.borrow_and_update(),
        Some(hooks),
        features,
        HANDSHAKE_TIMEOUT,
    );
    let mut reports_guard = ctx.reports.lock().await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (done_tx, mut done) = mpsc::channel::<(u64, FsOutcome)>(16);
    let mut buf = vec![0u8; 64 * 1024];
    let mut was_connected = false;
    // Certificate renewal: when to ask (once welcomed), and whether an
    // answer is awaited.
    let mut endpoint: Option<String> = None;
    let mut renew_at: Option<Instant> = None;
    let mut renewing = false;
    let mut revoked = false;
    let reason = 'session: loop {
        while let Some(bytes) = conn.poll_transmit() {
            if let Err(e) = writer.write_all(&bytes).await {
                break 'session describe_tls_error(&ctx.dir, &e);
            }
        }
        if let Err(e) = writer.flush().await {
            break 'session describe_tls_error(&ctx.dir, &e);
        }
        let Some(deadline) = conn.poll_timeout() else {
            break "the control connection closed".to_string();
        };
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => break "the hub closed the connection".to_string(),
                Ok(n) => match conn.handle_bytes(Instant::now(), &buf[..n]) {
                    Ok(events) => for event in events {
                        match event {
                            EndpointEvent::Connected { endpoint_id, capability_key, revoked_endpoints, pause_notices } => {
                                if let Some(t) = &ctx.transfers {
                                    t.set_hub_key(&capability_key);
                                    t.revoked(revoked_endpoints, true);
                                    t.set_hub_hears_pause(pause_notices);
                                }
                                was_connected = true;
                                renew_at = renewal_deadline(&ctx.dir);
                                tracing::info!(endpoint = %endpoint_id, "connected to the hub");
                                endpoint = Some(endpoint_id);
                                view.send_replace(HubView { state: HubState::Connected, detail: None });
                            }
                            EndpointEvent::Fs { id, op, grant } => {
                                // Read per request, so a SIGHUP reload counts
                                // for the owner and for every grantee alike.
                                let policy = current_policy(&ctx.policy);
                                let home = ctx.home.clone();
                                let done = done_tx.clone();
                                if let Some(g) = &grant {
                                    // The hub's strings, shown escaped.
                                    tracing::debug!(grantee = ?g.grantee, permission = ?g.permission_id, root = %ferry_paths::show(std::path::Path::new(g.root.as_os_str())), mode = g.mode.as_str(), "file operation for a grantee");
                                }
                                tokio::task::spawn_blocking(move || {
                                    // Who acted, on what, and how it went: the
                                    // owner's to audit, whatever the hub says.
                                    let (action, path, to) = crate::fs_ops::served_as(&op);
                                    let outcome = crate::fs_ops::execute(policy, &home, op, grant.as_ref());
                                    let how = match &outcome {
                                        FsOutcome::Failed { message } => message.as_str(),
                                        _ => "done",
                                    };
                                    ferry_mover::served::operation(grant.as_ref(), action, &path, to.as_deref(), how);
                                    let _ = done.blocking_send((id, outcome));
                                });
                            }
                            EndpointEvent::FileStream { token, path, grant, via } => {
                                tokio::spawn(crate::file_serve::serve(crate::file_serve::FileRequest {
                                    url: ctx.url.clone(),
                                    dir: ctx.dir.clone(),
                                    policy: current_policy(&ctx.policy),
                                    home: ctx.home.clone(),
                                    token,
                                    path,
                                    grant,
                                    via,
                                }));
                            }
                            EndpointEvent::FileUpload { token, path, grant, upload, via } => {
                                tokio::spawn(crate::file_serve::take_upload(crate::file_serve::UploadRequest {
                                    file: crate::file_serve::FileRequest {
                                        url: ctx.url.clone(),
                                        dir: ctx.dir.clone(),
                                        policy: current_policy(&ctx.policy),
                                        home: ctx.home.clone(),
                                        token,
                                        path,
                                        grant,
                                        via,
                                    },
                                    upload,
                                }));
                            }
                            EndpointEvent::TaskStart { capability, connect_to, relay } => match &ctx.transfers {
                                Some(t) => t.start_sending(capability, connect_to, relay),
                                None => tracing::warn!("the hub sent a transfer, but transfers are disabled here (see the start-up log)"),
                            },
                            EndpointEvent::RelayDial { token, task_id, attempt, stream, via } => match &ctx.transfers {
                                Some(t) => t.relay_dial(token, task_id, attempt, stream, via),
                                None => tracing::warn!("the hub asked for a relayed data stream, but transfers are disabled here"),
                            },
                            EndpointEvent::TaskCancel { task_id, through_attempt } => {
                                if let Some(t) = &ctx.transfers {
                                    t.cancel(&task_id, through_attempt);
                                }
                            }
                            EndpointEvent::Certificate { result } => {
                                renewing = false;
                                let installed = match (result, &endpoint) {
                                    (Ok(pem), Some(id)) => renewal::install(&ctx.dir, id, &pem).map_err(|e| e.to_string()),
                                    (Ok(_), None) => Err("no endpoint id yet".to_string()),
                                    (Err(why), _) => Err(format!("the hub refused: {why}")),
                                };
                                match installed {
                                    Ok(validity) => {
                                        if let Some(t) = &ctx.transfers {
                                            t.reload_identity(&ctx.dir);
                                        }
                                        tracing::info!(valid_until = validity.not_after, "endpoint certificate renewed");
                                        renew_at = renewal_deadline(&ctx.dir);
                                    }
                                    Err(reason) => {
                                        tracing::warn!(%reason, "certificate renewal failed; trying again in a minute");
                                        renew_at = Some(Instant::now() + RENEWAL_RETRY);
                                    }
                                }
                            }
                            EndpointEvent::Revoked { endpoint_ids } => {
                                if let Some(t) = &ctx.transfers {
                                    t.revoked(endpoint_ids, false);
                                }
                            }
                        }
                    },
                    Err(e) => {
                        revoked = matches!(e, ControlError::Refused { reason: RefuseReason::Revoked, .. });
                        break describe_control_error(&e);
                    }
                },
                Err(e) => break describe_tls_error(&ctx.dir, &e),
            },
            Some((id, outcome)) = done.recv() => conn.reply_fs(id, outcome),
            Ok(()) = paused.changed() => conn.set_paused(*paused.borrow_and_update()),
            Some((task_id, attempt, report)) = next_report(&mut reports_guard) => {
                conn.report_task(&task_id, attempt, report);
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(renew_at.unwrap_or(deadline))), if renew_at.is_some() && !renewing => {
                match renewal::request(&ctx.dir, endpoint.as_deref().unwrap_or("endpoint")) {
                    Ok(csr) => {
                        tracing::info!("asking the hub to renew this endpoint's certificate");
                        conn.renew_certificate(&csr);
                        renewing = true;
                        renew_at = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask for a certificate renewal; trying again in a minute");
                        renew_at = Some(Instant::now() + RENEWAL_RETRY);
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                if let Err(e) = conn.handle_timeout(Instant::now()) {
                    break describe_control_error(&e);
                }
            }
        }
    };
    let _ = writer.shutdown().await;
    SessionEnd {
        reason,
        was_connected,
        revoked,
    }
}

async fn next_report(reports: &mut Option<mpsc::UnboundedReceiver<Report>>) -> Option<Report> {
    match reports {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn describe_control_error(e: &ControlError) -> String {
    match e {
        ControlError::Refused { message, .. } => {
            format!("the hub refused this endpoint: {message}")
        }
        ControlError::HeartbeatTimeout(d) => format!(
            "no word from the hub for {}s; the link is dead",
            d.as_secs()
        ),
        other => format!("control channel error: {other}"),
    }
}

fn current_policy(handle: &PolicyHandle) -> Arc<Policy> {
    match handle.read() {
        Ok(p) => p.0.clone(),
        Err(poisoned) => poisoned.into_inner().0.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_reported_as_refused_with_a_hint() {
        // Bind then drop, so the port is known to be closed on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = dial("127.0.0.1", port).await.unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
        assert!(err.contains(&port.to_string()), "{err}");
    }
}

/// A compromised hub's forged grants, sent to the daemon's real control
/// loop ([`drive`]) by the smallest hub there is: the control protocol's
/// own hub-side state machine over an in-memory pipe. Whatever the grant
/// claims, the daemon's own config-paths, narrowed by it, decides.
#[cfg(test)]
mod forged_grants {
    use super::*;
    use ferry_proto::api::FsOp;
    use ferry_proto::control::{HubConnection, HubEvent};
    use ferry_proto::local_api::PolicySource;
    use ferry_proto::share::{ShareGrant, ShareMode};
    use ferry_proto::wire_path::WirePath;
    use std::collections::VecDeque;
    use std::sync::RwLock;
    use tokio::io::DuplexStream;

    /// `~/` is the owner's only (SHARING 0); `~/project` is shared, but
    /// not `~/project/private` beneath it.
    const CONFIG_PATHS: &str = "~/,0,1\n~/project,1,1\n~/project/private,0,1\n";

    struct FakeHub {
        conn: HubConnection,
        io: DuplexStream,
        events: VecDeque<HubEvent>,
    }

    impl FakeHub {
        async fn flush(&mut self) {
            while let Some(bytes) = self.conn.poll_transmit() {
                self.io.write_all(&bytes).await.unwrap();
            }
        }

        async fn next_event(&mut self) -> HubEvent {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if let Some(event) = self.events.pop_front() {
                    return event;
                }
                let n = self.io.read(&mut buf).await.unwrap();
                assert!(n > 0, "the daemon closed the control connection");
                let events = self.conn.handle_bytes(Instant::now(), &buf[..n]).unwrap();
                self.events.extend(events);
                // Pongs and the like.
                self.flush().await;
            }
        }

        async fn welcome(&mut self) {
            let hello = self.next_event().await;
            assert!(matches!(hello, HubEvent::Hello { .. }), "{hello:?}");
            self.conn.accept(
                Instant::now(),
                "ep-forged",
                Duration::from_secs(30),
                "",
                vec![],
            );
            self.flush().await;
        }

        /// Asks the daemon for `op` on behalf of `grant` and returns its answer.
        async fn ask(&mut self, op: FsOp, grant: Option<ShareGrant>) -> FsOutcome {
            let id = self.conn.request_fs(op, grant).unwrap();
            self.flush().await;
            loop {
                match self.next_event().await {
                    HubEvent::FsReply {
                        id: answered,
                        outcome,
                    } if answered == id => {
                        return outcome;
                    }
                    _ => {}
                }
            }
        }
    }

    fn grant(root: &str, mode: ShareMode) -> Option<ShareGrant> {
        Some(ShareGrant {
            permission_id: "forged-permission".into(),
            root: WirePath::from_bytes(root),
            mode,
            grantee: "mallory\n(forged)".into(),
        })
    }

    fn wp(path: &str) -> WirePath {
        WirePath::from_bytes(path)
    }

    fn refused(outcome: &FsOutcome, words: &str) {
        match outcome {
            FsOutcome::Failed { message } => {
                assert!(message.contains(words), "{message:?} lacks {words:?}")
            }
            other => panic!("expected a refusal ({words}), got {other:?}"),
        }
    }

    fn listed(outcome: &FsOutcome) -> Vec<String> {
        match outcome {
            FsOutcome::Listing { entries, .. } => entries.iter().map(|e| e.name.encode()).collect(),
            other => panic!("expected a listing, got {other:?}"),
        }
    }

    /// Runs `script` against a daemon whose home is a real directory tree.
    async fn with_daemon<F, Fut>(script: F)
    where
        F: FnOnce(FakeHub, PathBuf) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap().join("home");
        for dir in ["project/results/sub", "project/private", "secret", ".ferry"] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        for file in [
            "project/results/f",
            "project/private/k",
            "secret/x",
            "project/notes",
        ] {
            std::fs::write(home.join(file), file).unwrap();
        }
        let dir = EndpointDir::resolve(Some(&home.join(".ferry")), &home).unwrap();
        let policy = Policy::from_config_paths(CONFIG_PATHS, &home, dir.root()).unwrap();
        let source = PolicySource::ConfigPaths {
            file: "config-paths".into(),
            rules: 3,
        };
        let (_pause, paused) = watch::channel(false);
        let ctx = LinkContext {
            url: "https://hub.invalid".into(),
            dir,
            home: home.clone(),
            policy: Arc::new(RwLock::new((Arc::new(policy), source))),
            transfers: None,
            reports: Arc::default(),
            paused,
        };
        let (view, _) = watch::channel(HubView::connecting());
        let (daemon_io, hub_io) = tokio::io::duplex(1 << 20);
        let mut hub = FakeHub {
            conn: HubConnection::new(Instant::now(), Duration::from_secs(30)),
            io: hub_io,
            events: VecDeque::new(),
        };
        let run = async move {
            hub.welcome().await;
            script(hub, home).await;
        };
        tokio::select! {
            end = drive(&ctx, daemon_io, &view, None) => panic!("the session ended: {}", end.reason),
            () = run => {}
        }
    }

    #[tokio::test]
    async fn a_grant_rooted_under_a_rule_with_sharing_0_reaches_nothing() {
        with_daemon(|mut hub, home| async move {
            let secret = grant("/~/secret", ShareMode::ReadWrite);
            let unshared =
                "config-paths line 1 (~/,0,1) does not allow sharing (its SHARING flag is 0)";
            refused(
                &hub.ask(
                    FsOp::List {
                        path: wp("/~/secret"),
                    },
                    secret.clone(),
                )
                .await,
                unshared,
            );
            refused(
                &hub.ask(
                    FsOp::Mkdir {
                        path: wp("/~/secret/new"),
                    },
                    secret.clone(),
                )
                .await,
                unshared,
            );
            refused(
                &hub.ask(
                    FsOp::Remove {
                        path: wp("/~/secret/x"),
                        recursive: false,
                    },
                    secret,
                )
                .await,
                unshared,
            );
            // A deeper SHARING=0 rule beneath a shared one stays unshared.
            let project = grant("/~/project", ShareMode::ReadWrite);
            refused(
                &hub.ask(
                    FsOp::List {
                        path: wp("/~/project/private"),
                    },
                    project.clone(),
                )
                .await,
                "config-paths line 3 (~/project/private,0,1) does not allow sharing",
            );
            assert_eq!(
                listed(
                    &hub.ask(
                        FsOp::List {
                            path: wp("/~/project")
                        },
                        project
                    )
                    .await
                ),
                ["notes", "results"]
            );
            // The owner (no grant) still reaches it all.
            assert_eq!(
                listed(
                    &hub.ask(
                        FsOp::List {
                            path: wp("/~/secret")
                        },
                        None
                    )
                    .await
                ),
                ["x"]
            );
            assert!(home.join("secret/x").exists() && !home.join("secret/new").exists());
        })
        .await;
    }

    #[tokio::test]
    async fn a_read_only_grant_cannot_mkdir_rename_or_remove() {
        with_daemon(|mut hub, home| async move {
            let read = grant("/~/project/results", ShareMode::Read);
            let read_only = "shared with you read-only";
            assert_eq!(
                listed(
                    &hub.ask(
                        FsOp::List {
                            path: wp("/~/project/results")
                        },
                        read.clone()
                    )
                    .await
                ),
                ["f", "sub"]
            );
            refused(
                &hub.ask(
                    FsOp::Mkdir {
                        path: wp("/~/project/results/new"),
                    },
                    read.clone(),
                )
                .await,
                read_only,
            );
            refused(
                &hub.ask(
                    FsOp::Rename {
                        from: wp("/~/project/results/f"),
                        to: wp("/~/project/results/g"),
                    },
                    read.clone(),
                )
                .await,
                read_only,
            );
            refused(
                &hub.ask(
                    FsOp::Remove {
                        path: wp("/~/project/results/f"),
                        recursive: false,
                    },
                    read.clone(),
                )
                .await,
                read_only,
            );
            refused(
                &hub.ask(
                    FsOp::Remove {
                        path: wp("/~/project/results/sub"),
                        recursive: true,
                    },
                    read,
                )
                .await,
                read_only,
            );
            assert!(home.join("project/results/f").is_file());
            assert!(home.join("project/results/sub").is_dir());
            assert!(!home.join("project/results/new").exists());
        })
        .await;
    }

    #[tokio::test]
    async fn a_grant_on_results_reaches_neither_its_parent_nor_home_nor_through_dot_dot() {
        with_daemon(|mut hub, home| async move {
            let results = grant("/~/project/results", ShareMode::ReadWrite);
            let outside = format!(
                "outside the folder shared with you ({})",
                home.join("project/results").display()
            );
            for path in [
                "/~/project",
                "/~/",
                "/~",
                "/",
                "/~/project/results2",
                "/~/.ferry",
            ] {
                refused(
                    &hub.ask(FsOp::List { path: wp(path) }, results.clone())
                        .await,
                    &outside,
                );
            }
            refused(
                &hub.ask(
                    FsOp::List {
                        path: wp("/~/project/results/.."),
                    },
                    results.clone(),
                )
                .await,
                "`..` components are not allowed",
            );
            refused(
                &hub.ask(
                    FsOp::Rename {
                        from: wp("/~/project/results/f"),
                        to: wp("/~/project/f"),
                    },
                    results.clone(),
                )
                .await,
                &outside,
            );
            refused(
                &hub.ask(
                    FsOp::Remove {
                        path: wp("/~/project/results"),
                        recursive: true,
                    },
                    results.clone(),
                )
                .await,
                "the folder shared with you, which cannot be removed or renamed",
            );
            assert!(
                home.join("project/results/f").is_file(),
                "refused before anything beneath it went"
            );
            // A root that climbs out with `..` is no root at all.
            refused(
                &hub.ask(
                    FsOp::List { path: wp("/~/") },
                    grant("/~/project/results/../..", ShareMode::ReadWrite),
                )
                .await,
                "is not usable: `..` components are not allowed",
            );
            // Inside, a read-write grantee works as the owner would.
            assert_eq!(
                hub.ask(
                    FsOp::Mkdir {
                        path: wp("/~/project/results/new")
                    },
                    results.clone()
                )
                .await,
                FsOutcome::Done
            );
            assert_eq!(
                hub.ask(
                    FsOp::Rename {
                        from: wp("/~/project/results/f"),
                        to: wp("/~/project/results/new/f")
                    },
                    results
                )
                .await,
                FsOutcome::Done
            );
            assert!(home.join("project/results/new/f").is_file());
            assert!(home.join("project/notes").is_file());
        })
        .await;
    }
}
