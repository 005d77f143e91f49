//! `ferry-hub serve`: one TLS port for everything. ALPN tells a control
//! connection (`ferry-control/1`, endpoint certificate required) from the
//! web pages and REST API (`http/1.1`), so an endpoint needs exactly one
//! outbound port.
//!
//! Every connection is bounded: a limit on how many are served at once, and
//! on how many one client address holds; a deadline for the TLS handshake,
//! for each request head and for each request body; a cap on header and
//! body sizes.

use crate::control::Registry;
use crate::pki::{CertificateAuthority, first_cert_der};
use crate::secrets::MacKey;
use crate::state::{HubConfig, HubDir};
use crate::store::Storage;
use crate::web::{LoginLimiter, PasswordChecks, address_key};
use anyhow::{Context, bail};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Largest request head (line + headers) and buffered body chunk.
const MAX_HTTP_BUF: usize = 64 * 1024;

/// Everything a request or a control connection may need.
#[derive(Debug)]
pub struct Hub {
    pub config: HubConfig,
    pub store: Arc<dyn Storage>,
    pub endpoint_ca: CertificateAuthority,
    /// PEM of the CA endpoints must trust for this hub (served at /ca.crt).
    pub tls_ca_pem: String,
    pub tls_ca_sha256: [u8; 32],
    pub control: Registry,
    pub logins: LoginLimiter,
    /// Bounds the argon2 checks sign-ins run at once.
    pub password_checks: PasswordChecks,
    /// Tags the sign-in form's CSRF tokens, so the hub knows its own.
    pub login_csrf: MacKey,
    /// Makes each link's token from its id ([`crate::links::token`]), so a
    /// link's URL can be shown again while only its hash is stored.
    pub link_key: MacKey,
    pub signer: crate::capability::TaskSigner,
    /// Woken whenever a task ends, for clients waiting on one.
    pub task_ended: tokio::sync::Notify,
    pub metrics: crate::metrics::HubMetrics,
    /// Takes news of tasks to e-mail and webhooks without waiting.
    pub notifier: crate::notify::Notifier,
    /// What `hub.toml` says about identities (local domain, age limit).
    pub identity_rules: crate::identities::IdentityRules,
    /// The upstream OpenID providers and the sign-ins under way with them.
    pub oidc: crate::oidc::Providers,
    /// Signs the ID tokens the hub issues as an OpenID provider.
    pub oidc_key: crate::oidc_provider::ProviderKey,
    /// This process among the hub instances sharing its database.
    pub instance: crate::cluster::Instance,
    /// The dial-back connections the hub awaits from endpoints.
    pub rendezvous: crate::rendezvous::Rendezvous,
    /// The files each endpoint serves over HTTPS now (bounded).
    pub file_streams: crate::https_files::Streams,
    /// The files each link serves now (bounded per link).
    pub link_streams: crate::https_files::Streams,
    /// Relayed data streams between endpoints that cannot connect directly.
    pub relay: crate::relay::Relay,
}

impl Hub {
    /// Tasks a service failed outside the scheduler (a deleted permission
    /// fails the tasks that used it): wakes those waiting on them and tells
    /// their owners, as the scheduler does for the tasks it ends.
    pub fn tasks_failed(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        self.task_ended.notify_waiters();
        for id in ids {
            self.notifier.tell(
                id,
                crate::notify::News::Ended(ferry_proto::task::TaskStatus::Failed),
            );
        }
    }
}

/// How many connections each client address holds (an IPv6 /64 counts as
/// one address), so that one client cannot take every place under the
/// global limit with connections it never uses.
#[derive(Debug)]
struct AddressSlots {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under its address's bound, given back on drop.
#[derive(Debug)]
struct AddressSlot {
    slots: Arc<AddressSlots>,
    address: IpAddr,
}

impl AddressSlots {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts stay consistent whatever panicked while holding them.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more connection from `ip`, if its address has one.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let address = address_key(ip);
        let mut held = self.lock();
        let count = held.entry(address).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(count) = held.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// SHA-256 of the CA certificate the hub tells endpoints to trust.
pub fn tls_ca_sha256(dir: &HubDir, config: &HubConfig) -> anyhow::Result<[u8; 32]> {
    let path = config.resolve(dir, &config.tls_ca);
    let pem = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let der =
        first_cert_der(&pem).with_context(|| format!("{} holds no certificate", path.display()))?;
    Ok(ferry_proto::setup_key::cert_sha256(&der))
}

fn tls_config(dir: &HubDir, config: &HubConfig) -> anyhow::Result<rustls::ServerConfig> {
    let cert_path = config.resolve(dir, &config.tls_cert);
    let key_path = config.resolve(dir, &config.tls_key);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read the key {}", key_path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.endpoint_ca_cert())
        .with_context(|| format!("cannot read {}", dir.endpoint_ca_cert().display()))?
    {
        roots
            .add(cert.context("bad endpoint CA certificate")?)
            .context("unusable endpoint CA certificate")?;
    }
    // Browsers and the CLI present no certificate; endpoints must, and the
    // control channel refuses connections without one.
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")?;
    // The endpoints' provider and cipher preferences (AES-128-GCM first).
    let mut tls = ferry_tls::server_config_builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not match")?;
    tls.alpn_protocols = vec![
        ferry_proto::control::ALPN.to_vec(),
        ferry_proto::relay::ALPN.to_vec(),
        b"http/1.1".to_vec(),
    ];
    Ok(tls)
}

pub fn serve(dir: HubDir, listen: Option<String>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .ok();
    ferry_tls::install_crypto_provider();
    let config = dir.load_config()?;
    let tls = tls_config(&dir, &config)?;
    let tls_ca_path = config.resolve(&dir, &config.tls_ca);
    let tls_ca_pem = std::fs::read_to_string(&tls_ca_path)
        .with_context(|| format!("cannot read {}", tls_ca_path.display()))?;
    let (control, notices) = Registry::new();
    let identity_rules = crate::identities::IdentityRules {
        local_domain: config.local_domain()?,
        max_age_secs: config.identity_max_age_hours as i64 * 3600,
        link_page: format!("{}/account", config.url.trim_end_matches('/')),
    };
    let oidc = crate::oidc::Providers::load(&dir, &config)?;
    let store = dir.open_store_with(&config)?;
    let hub = Arc::new(Hub {
        identity_rules,
        oidc,
        signer: crate::capability::TaskSigner::load(&dir.signing_key())?,
        oidc_key: crate::oidc_provider::ProviderKey::load_or_create(&dir.oidc_signing_key())?,
        tls_ca_sha256: tls_ca_sha256(&dir, &config)?,
        tls_ca_pem,
        endpoint_ca: CertificateAuthority::load(&dir.endpoint_ca_cert(), &dir.endpoint_ca_key())?
            .with_endpoint_lifetime(config.endpoint_cert_lifetime_secs),
        store: store.clone(),
        control,
        // Instances sharing a database share their counts of failed
        // sign-ins; one hub on SQLite keeps them in memory, as it always did.
        logins: if config.database.is_some() {
            LoginLimiter::shared(store.clone())
        } else {
            LoginLimiter::default()
        },
        password_checks: PasswordChecks::new(
            config.max_password_checks,
            config.max_password_checks_queued,
        ),
        login_csrf: crate::cluster::shared_mac_key(&*store, "login_csrf")?,
        link_key: crate::cluster::shared_mac_key(&*store, "link")?,
        relay: crate::relay::Relay::new(&config.relay),
        config,
        task_ended: tokio::sync::Notify::new(),
        metrics: crate::metrics::HubMetrics::new(),
        notifier: crate::notify::Notifier::new(),
        instance: crate::cluster::Instance::new()
            .context("no randomness for the hub instance's id")?,
        rendezvous: crate::rendezvous::Rendezvous::default(),
        file_streams: crate::https_files::Streams::default(),
        link_streams: crate::https_files::Streams::default(),
    });
    let listen = listen.unwrap_or_else(|| hub.config.listen.clone());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    crate::cluster::starting(&hub);
    let served = runtime.block_on(async {
        // Before the scheduler, so no news waits for a reader.
        crate::notify::spawn(hub.clone(), &dir)?;
        // Before the listener, so it hears every endpoint's first connect.
        let wake = crate::tasks::spawn(hub.clone(), notices);
        crate::timers::spawn(hub.clone(), wake.clone());
        crate::cluster::spawn_messenger(hub.clone());
        accept_loop(hub.clone(), Arc::new(tls), listen, wake).await
    });
    // The scheduler stops with the runtime, so nothing claims again after
    // the release.
    drop(runtime);
    crate::cluster::stopping(&hub);
    served
}

async fn accept_loop(
    hub: Arc<Hub>,
    tls: Arc<rustls::ServerConfig>,
    listen: String,
    wake: crate::tasks::Wake,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let Ok(local) = listener.local_addr() {
        hub.instance.listening(local);
    }
    let acceptor = TlsAcceptor::from(tls);
    // The task routes wake the scheduler when they change a task.
    let router = crate::web::router(hub.clone()).layer(axum::Extension(wake));
    let slots = Arc::new(Semaphore::new(hub.config.max_connections));
    let per_address = AddressSlots::new(hub.config.max_connections_per_address);
    let within = Duration::from_secs(hub.config.header_timeout_secs);
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen), url = %hub.config.url, "ferry-hub serving");
    let purge_hub = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = purge_hub.store.purge_expired(crate::grants::now()) {
                tracing::warn!(error = %e, "purging expired state failed");
            }
            let days = purge_hub.config.audit_retention_days;
            match crate::audit::prune(&*purge_hub.store, crate::grants::now(), days) {
                Ok(0) => {}
                Ok(gone) => tracing::info!(gone, days, "audit events past their retention removed"),
                Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
            }
        }
    });
    // A permission's expiry reaches its endpoint's audit log within a minute.
    let expiry_hub = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = crate::audit::record_expiries(&*expiry_hub.store, crate::grants::now())
            {
                tracing::warn!(error = %e, "recording expired permissions in the audit log failed");
            }
        }
    });
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        // Before the global limit, so an address over its share takes
        // nothing from anyone else.
        let Some(address_slot) = per_address.take(peer.ip()) else {
            tracing::debug!(%peer, "this address holds its share of connections; dropping one");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; dropping a connection");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, hub, router) = (acceptor.clone(), hub.clone(), router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(within, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let (_, conn) = tls.get_ref();
            if conn.alpn_protocol() == Some(ferry_proto::control::ALPN) {
                let cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                // The endpoint CA signed this certificate (TLS verified it):
                // many endpoints may share an address, and each is admitted
                // or refused by the control channel itself.
                if cert.is_some() {
                    drop(address_slot);
                }
                crate::control::serve_connection(hub, tls, cert, peer).await;
            } else if conn.alpn_protocol() == Some(ferry_proto::relay::ALPN) {
                let cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                // As for control: the certificate is the admission, and
                // endpoints behind one address may dial back many times.
                if cert.is_some() {
                    drop(address_slot);
                }
                crate::rendezvous::serve_connection(hub, tls, cert).await;
            } else {
                // The peer address feeds the per-address login limit.
                let router = router.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                let service = hyper_util::service::TowerToHyperService::new(router);
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(within)
                    .max_buf_size(MAX_HTTP_BUF)
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
            drop(slot);
        });
    }
    tracing::info!("ferry-hub stopping");
    Ok(())
}
