//! Two endpoints' movers talking over real TLS on loopback, without a hub:
//! certificates from a test CA, a capability signed by a test key. Shared
//! by the mover's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use ferry_endpoint::EndpointDir;
use ferry_mover::channel::{Identity, Liveness};
use ferry_mover::dest::Sessions;
use ferry_mover::tuner::Tuning;
use ferry_mover::{Context, Report};
use ferry_paths::Policy;
use ferry_proto::share::ShareGrant;
use ferry_proto::task::{Capability, TaskReport, TransferItem, TransferOptions};
use ferry_proto::wire_path::WirePath;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType, SigningKey,
};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

pub const CHUNK: usize = ferry_proto::data::CHUNK_SIZE as usize;

pub struct Endpoint {
    _tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub ctx: Arc<Context>,
    pub reports: mpsc::UnboundedReceiver<Report>,
    /// The policy the mover reads for each attempt (`~/,0,1` at first).
    policy: Arc<RwLock<Arc<Policy>>>,
}

impl Endpoint {
    /// Replaces the owner's config-paths, as a SIGHUP reload does.
    pub fn set_config_paths(&self, text: &str) {
        let policy =
            Policy::from_config_paths(text, &self.home, &self.home.join(".ferry")).unwrap();
        *self.policy.write().unwrap() = Arc::new(policy);
    }
}

pub struct World {
    /// The sending endpoint.
    pub a: Endpoint,
    /// The receiving endpoint.
    pub b: Endpoint,
    pub signer: KeyPair,
    /// Where b accepts data connections.
    pub addr: String,
    /// The destination's sessions (b's).
    pub sessions: Arc<Sessions>,
    _shutdown: watch::Sender<bool>,
}

#[allow(clippy::too_many_arguments)] // a test helper: each is one knob of the world
fn endpoint(
    id: &str,
    ca: &Issuer<'static, KeyPair>,
    ca_pem: &str,
    signer_pub: Vec<u8>,
    umask: u32,
    liveness: Liveness,
    speaks_up_to: u32,
    tuning: Tuning,
) -> Endpoint {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let dir = EndpointDir::resolve(Some(&home.join(".ferry")), &home).unwrap();
    dir.ensure_private().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, id);
    params.subject_alt_names = vec![
        SanType::URI(
            format!("urn:ferry:endpoint:{id}")
                .as_str()
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName(
            ferry_proto::api::endpoint_dns_name(id)
                .as_str()
                .try_into()
                .unwrap(),
        ),
    ];
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(dir.cert_file(), cert.pem()).unwrap();
    std::fs::write(dir.key_file(), key.serialize_pem()).unwrap();
    std::fs::write(dir.endpoint_ca_file(), ca_pem).unwrap();
    let identity = Identity::load(&dir, id)
        .unwrap()
        .speaking_up_to(speaks_up_to);
    let policy = Arc::new(Policy::from_config_paths("~/,0,1\n", &home, dir.root()).unwrap());
    let policy = Arc::new(RwLock::new(policy));
    let current = policy.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        identity,
        home: home.clone(),
        state_dir: dir.state_dir(),
        policy: Box::new(move || current.read().unwrap().clone()),
        hub_key: Box::new(move || Some(signer_pub.clone())),
        reports: tx,
        umask,
        liveness,
        tuning,
        bwlimit: Arc::default(),
        metrics: Arc::default(),
        hooks: None,
    });
    Endpoint {
        _tmp: tmp,
        home,
        ctx,
        reports: rx,
        policy,
    }
}

/// Two endpoints; the receiving one (b) with umask 022.
pub async fn world() -> World {
    world_with_umask(0o022).await
}

pub async fn world_with_umask(umask: u32) -> World {
    world_with(umask, Liveness::default()).await
}

/// Two endpoints whose data streams keep `liveness`; the receiving one
/// (b) with `umask`.
pub async fn world_with(umask: u32, liveness: Liveness) -> World {
    let newest = ferry_proto::data::PROTOCOL_VERSION;
    world_of(umask, liveness, [newest, newest], Tuning::default()).await
}

/// Two endpoints whose sending side grows its streams by `tuning`.
#[allow(dead_code)]
pub async fn world_tuned(tuning: Tuning) -> World {
    let newest = ferry_proto::data::PROTOCOL_VERSION;
    world_of(0o022, Liveness::default(), [newest, newest], tuning).await
}

/// As [`world_tuned`], the destination speaking data protocols up to
/// `destination`.
#[allow(dead_code)]
pub async fn world_tuned_speaking(tuning: Tuning, destination: u32) -> World {
    let newest = ferry_proto::data::PROTOCOL_VERSION;
    world_of(0o022, Liveness::default(), [newest, destination], tuning).await
}

/// Two endpoints of which the source (a) speaks data protocols up to
/// `source` and the destination (b) up to `destination`, as releases
/// of different ages do.
#[allow(dead_code)]
pub async fn world_speaking(source: u32, destination: u32) -> World {
    world_of(
        0o022,
        Liveness::default(),
        [source, destination],
        Tuning::default(),
    )
    .await
}

async fn world_of(umask: u32, liveness: Liveness, speaks_up_to: [u32; 2], tuning: Tuning) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test endpoint CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let signer = KeyPair::generate().unwrap();
    let public = rcgen::PublicKeyData::der_bytes(&signer).to_vec();
    let a = endpoint(
        "aaaaaaaa-0000-4000-8000-000000000001",
        &ca,
        &ca_cert.pem(),
        public.clone(),
        0o022,
        liveness,
        speaks_up_to[0],
        tuning,
    );
    let b = endpoint(
        "bbbbbbbb-0000-4000-8000-000000000002",
        &ca,
        &ca_cert.pem(),
        public,
        umask,
        liveness,
        speaks_up_to[1],
        tuning,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (_accepting_tx, accepting) = watch::channel(true);
    let sessions = Arc::new(Sessions::default());
    tokio::spawn(ferry_mover::dest::serve(
        b.ctx.clone(),
        listener,
        sessions.clone(),
        accepting,
        shutdown_rx,
    ));
    std::mem::forget(_accepting_tx);
    World {
        a,
        b,
        signer,
        addr,
        sessions,
        _shutdown: shutdown,
    }
}

impl World {
    pub fn capability(
        &self,
        attempt: u32,
        items: Vec<TransferItem>,
        options: TransferOptions,
    ) -> String {
        self.capability_with_grants(attempt, items, options, None, None)
    }

    /// A capability whose sides act for grantees (as the hub signs it).
    pub fn capability_with_grants(
        &self,
        attempt: u32,
        items: Vec<TransferItem>,
        options: TransferOptions,
        source_grant: Option<ShareGrant>,
        destination_grant: Option<ShareGrant>,
    ) -> String {
        let now = ferry_mover::channel::now();
        let cap = Capability {
            task_id: "11111111-2222-4333-8444-555555555555".into(),
            attempt,
            source_endpoint: self.a.ctx.identity.endpoint_id.clone(),
            destination_endpoint: self.b.ctx.identity.endpoint_id.clone(),
            items,
            options,
            issued: now,
            expires: now + 600,
            source_grant,
            destination_grant,
            label: None,
            shard: None,
        };
        let body = cap.body();
        Capability::seal(&body, &self.signer.sign(&body).unwrap())
    }

    /// Sends, then waits for the destination's verdict.
    pub async fn transfer(
        &mut self,
        attempt: u32,
        items: Vec<TransferItem>,
        options: TransferOptions,
    ) -> (TaskReport, Vec<TaskReport>) {
        let sealed = self.capability(attempt, items, options);
        let (_cancel, cancel_rx) = watch::channel(false);
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            ferry_mover::source::send(self.a.ctx.clone(), sealed, self.addr.clone(), cancel_rx),
        )
        .await;
        sent.expect("transfer timed out").expect("send failed");
        let mut reports = Vec::new();
        let verdict = loop {
            let (_, _, r) =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.b.reports.recv())
                    .await
                    .unwrap()
                    .unwrap();
            match r {
                TaskReport::Succeeded { .. }
                | TaskReport::Failed { .. }
                | TaskReport::Fault { .. } => break r,
                other => reports.push(other),
            }
        };
        while let Ok((_, _, r)) = self.a.reports.try_recv() {
            reports.push(r);
        }
        (verdict, reports)
    }
}

pub fn item(src: &str, dst: &str, recursive: bool) -> TransferItem {
    TransferItem {
        source: WirePath::from_bytes(src),
        destination: WirePath::from_bytes(dst),
        recursive,
    }
}

/// Every regular file and directory under `root`, with contents.
pub fn snapshot(root: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
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
                out.push((rel, Some(std::fs::read(e.path()).unwrap())));
            }
        }
    }
    out.sort();
    out
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends `sealed` and returns how the source's attempt ended and the
/// destination's verdict, if it gave one (a source that refuses before
/// connecting leaves the destination without any).
pub async fn attempt(
    w: &mut World,
    sealed: String,
) -> (
    Result<(), ferry_mover::source::SendError>,
    Option<TaskReport>,
) {
    let (_cancel, cancel_rx) = watch::channel(false);
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        ferry_mover::source::send(w.a.ctx.clone(), sealed, w.addr.clone(), cancel_rx),
    )
    .await
    .expect("transfer timed out");
    let verdict = loop {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(5), w.b.reports.recv()).await;
        match next {
            Ok(Some((
                _,
                _,
                r @ (TaskReport::Succeeded { .. }
                | TaskReport::Failed { .. }
                | TaskReport::Fault { .. }),
            ))) => break Some(r),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    (sent, verdict)
}
