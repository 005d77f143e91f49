//! The hub's HTTP side: web pages (login, consent, the copy-the-code page),
//! the OAuth2 endpoints, and the REST API routes; the headers every answer
//! carries; the bounds on what an unauthenticated client can make the hub
//! hold (request bodies, password checks, failed logins).

use crate::server::Hub;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// Pages render only our own markup and inline styles: no scripts, no
/// frames, no foreign resources. Forms may post only to the hub (the consent
/// page widens this for its loopback redirect target).
pub const DEFAULT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Browsers that have seen the hub use only HTTPS with it for a year. The
/// hub serves nothing but HTTPS, so this costs nothing; it names no
/// subdomains, which may be other services'.
pub const HSTS: &str = "max-age=31536000";

/// How long failed logins count against an account or address.
pub const LOGIN_WINDOW: i64 = 15 * 60;
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// Bounds the limiter's memory when someone sprays made-up user names.
const MAX_TRACKED: usize = 100_000;

/// Failed logins per account and per client address, for rate limiting.
///
/// An attempt is counted when it is admitted, before its password is
/// checked ([`LoginLimiter::begin`]), so attempts sent in parallel cannot
/// all pass the check before any of them is counted. What the check found
/// settles the count: a failure stays, a success takes its own count back.
///
/// Counts are kept for any account name, existing or not, so being limited
/// reveals nothing about which accounts exist.
///
/// Instances sharing one database ([`LoginLimiter::shared`]) also count
/// each settled failure there, per account and per address, and refuse
/// once the database's count reaches the same limits: a guesser spreading
/// attempts over the instances behind a front meets one limit. The
/// database counts only settled failures; attempts in flight at once are
/// counted by each instance in memory, as on a single hub.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<Failures>,
    shared: Option<Arc<dyn crate::store::Storage>>,
}

/// The database's key for an account's or an address's failures.
fn account_row(account: &AccountKey) -> String {
    format!("account:{}", crate::secrets::hex(account))
}

fn address_row(ip: &IpAddr) -> String {
    format!("address:{ip}")
}

/// Account names are kept as their SHA-256: a user name may be 2 KiB, and
/// a spray of long made-up names would otherwise cost 2 KiB an entry.
type AccountKey = [u8; 32];

#[derive(Debug, Default)]
struct Failures {
    accounts: HashMap<AccountKey, Window>,
    addresses: HashMap<IpAddr, Window>,
}

/// Attempts counted since `start`; the count resets when the window ends.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    /// Failed attempts, and admitted ones whose check has not ended.
    count: u32,
    /// Admitted attempts whose check has not ended.
    in_flight: u32,
    /// Attempts admitted in this window, numbering each.
    admitted: u64,
}

impl Window {
    fn new(now: i64) -> Self {
        Self {
            start: now,
            count: 0,
            in_flight: 0,
            admitted: 0,
        }
    }

    fn live(&self, now: i64) -> bool {
        now < self.start + LOGIN_WINDOW
    }
}

/// One admitted attempt's place in one window.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    start: i64,
    number: u64,
    /// No other attempt's check was running when this one was admitted.
    alone: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    /// Refused before the password was checked (the hub was busy).
    Unchecked,
}

/// One IPv6 host usually owns a whole /64, so it counts as one address.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

fn account_key(account: &str) -> AccountKey {
    Sha256::digest(account.as_bytes()).into()
}

fn blocked<K: std::hash::Hash + Eq>(
    map: &HashMap<K, Window>,
    key: &K,
    max: u32,
    now: i64,
) -> Option<i64> {
    map.get(key)
        .filter(|w| w.live(now) && w.count >= max)
        .map(|w| w.start + LOGIN_WINDOW - now)
}

fn admit<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: i64,
) -> Admitted {
    if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
        map.retain(|_, w| w.live(now) || w.in_flight > 0);
        if map.len() >= MAX_TRACKED
            && let Some(oldest) = map
                .iter()
                .filter(|(_, w)| w.in_flight == 0)
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let window = map.entry(key).or_insert(Window::new(now));
    if !window.live(now) {
        *window = Window::new(now);
    }
    let alone = window.in_flight == 0;
    window.count = window.count.saturating_add(1);
    window.in_flight = window.in_flight.saturating_add(1);
    window.admitted += 1;
    Admitted {
        start: window.start,
        number: window.admitted,
        alone,
    }
}

/// Ends one admitted attempt in its window. A success clears the window
/// (`may_clear`) only when no other attempt overlapped it: failures
/// counted before it was admitted are then all settled ones, and no
/// attempt admitted while it ran can have its count wiped. Otherwise a
/// success only takes back its own count. Whether it cleared the window.
fn settle<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    key: &K,
    admitted: Admitted,
    outcome: Outcome,
    may_clear: bool,
) -> bool {
    let Some(window) = map.get_mut(key) else {
        return false;
    };
    if window.start != admitted.start {
        // The window ended and another began; this attempt is not in it.
        return false;
    }
    window.in_flight = window.in_flight.saturating_sub(1);
    match outcome {
        Outcome::Failed => false,
        Outcome::Succeeded if may_clear && admitted.alone && window.admitted == admitted.number => {
            map.remove(key);
            true
        }
        Outcome::Succeeded | Outcome::Unchecked => {
            window.count = window.count.saturating_sub(1);
            false
        }
    }
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        // The maps stay consistent whatever panicked while holding them.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A limiter whose counts every hub instance of `store` shares.
    pub fn shared(store: Arc<dyn crate::store::Storage>) -> Self {
        Self {
            failures: Mutex::default(),
            shared: Some(store),
        }
    }

    /// How long until the database's count of `key`'s failures falls
    /// under `max`, if it is not under. A database that cannot be read
    /// says nothing: this instance's own counts still limit.
    fn shared_block(&self, key: &str, max: u32, now: i64) -> Option<i64> {
        let store = self.shared.as_ref()?;
        match store.login_failures(key, now, LOGIN_WINDOW) {
            Ok(Some((count, start))) if count >= max => Some(start + LOGIN_WINDOW - now),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared count of failed sign-ins");
                None
            }
        }
    }

    /// Admits one attempt for this account from this address and counts it
    /// at once, or says in how many seconds they may try again. Checking
    /// and counting happen under one lock.
    pub fn begin(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<LoginAttempt<'_>, i64> {
        let account = account_key(account);
        let address = address.map(address_key);
        let shared = self
            .shared_block(&account_row(&account), MAX_FAILURES_PER_ACCOUNT, now)
            .max(address.and_then(|ip| {
                self.shared_block(&address_row(&ip), MAX_FAILURES_PER_ADDRESS, now)
            }));
        let mut failures = self.lock();
        let by_account = blocked(&failures.accounts, &account, MAX_FAILURES_PER_ACCOUNT, now);
        let by_address =
            address.and_then(|ip| blocked(&failures.addresses, &ip, MAX_FAILURES_PER_ADDRESS, now));
        if let Some(wait) = by_account.max(by_address).max(shared) {
            return Err(wait);
        }
        let in_account = admit(&mut failures.accounts, account, now);
        let in_address = address.map(|ip| (ip, admit(&mut failures.addresses, ip, now)));
        Ok(LoginAttempt {
            limiter: self,
            now,
            account,
            in_account,
            in_address,
            settled: false,
        })
    }
}

/// An admitted login attempt, counted as a failure unless it is settled
/// otherwise: dropped (the client went away mid-check, or anything failed)
/// it stays a failure.
#[derive(Debug)]
#[must_use = "an attempt dropped unsettled counts as a failure"]
pub struct LoginAttempt<'a> {
    limiter: &'a LoginLimiter,
    /// When it was admitted: its failure counts in the shared window then.
    now: i64,
    account: AccountKey,
    in_account: Admitted,
    in_address: Option<(IpAddr, Admitted)>,
    settled: bool,
}

impl LoginAttempt<'_> {
    /// The password was wrong (or the account unknown).
    pub fn failed(mut self) {
        self.settle(Outcome::Failed);
    }

    /// The account's owner got in: their earlier typos stop counting, unless
    /// other attempts overlapped this one (see [`settle`]). The address
    /// keeps its count, so one good account cannot launder a password spray
    /// from the same place.
    pub fn succeeded(mut self) {
        self.settle(Outcome::Succeeded);
    }

    /// No password was checked: the attempt does not count.
    pub fn unchecked(mut self) {
        self.settle(Outcome::Unchecked);
    }

    fn settle(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let cleared = {
            let mut failures = self.limiter.lock();
            let cleared = settle(
                &mut failures.accounts,
                &self.account,
                self.in_account,
                outcome,
                true,
            );
            if let Some((ip, admitted)) = self.in_address {
                settle(&mut failures.addresses, &ip, admitted, outcome, false);
            }
            cleared
        };
        let Some(store) = &self.limiter.shared else {
            return;
        };
        let now = self.now;
        let written = match outcome {
            Outcome::Failed => store
                .add_login_failure(&account_row(&self.account), now, LOGIN_WINDOW)
                .and_then(|_| match self.in_address {
                    Some((ip, _)) => store
                        .add_login_failure(&address_row(&ip), now, LOGIN_WINDOW)
                        .map(|_| ()),
                    None => Ok(()),
                }),
            // The same rule as in memory: only a success no other attempt
            // overlapped here clears the account's shared count.
            Outcome::Succeeded if cleared => {
                store.clear_login_failures(&account_row(&self.account))
            }
            Outcome::Succeeded | Outcome::Unchecked => Ok(()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot count a sign-in in the shared database");
        }
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        self.settle(Outcome::Failed);
    }
}

/// Bounds what password checks cost: argon2 holds about 19 MiB while it
/// runs, so only a few run at once and a few more may wait; others are
/// told at once to come back rather than queued without end.
#[derive(Debug)]
pub struct PasswordChecks {
    places: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// A place among the checks running or waiting.
#[derive(Debug)]
pub struct CheckPlace {
    place: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

/// The right to run one check now; hold it until the check has ended.
#[derive(Debug)]
pub struct CheckTurn {
    _place: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl PasswordChecks {
    pub fn new(running: usize, queued: usize) -> Self {
        Self {
            places: Arc::new(Semaphore::new(running.saturating_add(queued))),
            running: Arc::new(Semaphore::new(running)),
        }
    }

    /// A place in line, or `None` when every place is taken.
    pub fn admit(&self) -> Option<CheckPlace> {
        let place = self.places.clone().try_acquire_owned().ok()?;
        Some(CheckPlace {
            place,
            running: self.running.clone(),
        })
    }
}

impl CheckPlace {
    /// Waits for a turn to run.
    pub async fn turn(self) -> Option<CheckTurn> {
        let running = self.running.acquire_owned().await.ok()?;
        Some(CheckTurn {
            _place: self.place,
            _running: running,
        })
    }
}

pub fn router(hub: Arc<Hub>) -> Router {
    let body_within = Duration::from_secs(hub.config.body_timeout_secs);
    Router::new()
        .route(ferry_proto::api::CA_CERT_PATH, get(ca_cert))
        .route("/metrics", get(crate::metrics::serve))
        .route(
            "/l/{token}",
            get(link_root).layer(map_response(link_headers)),
        )
        .route(
            "/l/{token}/",
            get(link_dir).layer(map_response(link_headers)),
        )
        .route(
            "/l/{token}/{*rest}",
            get(link_beneath).layer(map_response(link_headers)),
        )
        .route(
            ferry_proto::api::OPENAPI_PATH,
            get(crate::openapi::serve).layer(map_response(api_headers)),
        )
        .merge(crate::oauth::routes().layer(map_response(security_headers)))
        .merge(crate::oidc_provider::routes().layer(map_response(api_headers)))
        .merge(crate::app::routes())
        .merge(crate::api::routes().layer(map_response(api_headers)))
        .fallback(crate::api::no_route)
        .layer(from_fn_with_state(hub.clone(), crate::metrics::record))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(body_within, body_deadline))
        .layer(map_response(transport_headers))
        .with_state(hub)
}

// Links: anyone holding the URL reads through it (`crate::links`); `get`
// answers `HEAD` too.
async fn link_root(
    State(hub): State<Arc<Hub>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    crate::links::serve(&hub, &token, "", false, &method, &headers).await
}

async fn link_dir(
    State(hub): State<Arc<Hub>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    crate::links::serve(&hub, &token, "", true, &method, &headers).await
}

async fn link_beneath(
    State(hub): State<Arc<Hub>>,
    Path((token, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let dir_url = rest.ends_with('/');
    crate::links::serve(&hub, &token, &rest, dir_url, &method, &headers).await
}

/// What a link answers is anyone's file, on the hub's origin: never run
/// (a sandbox of its own, no sniffing), never framed, never cached, and
/// the URL (the token) never sent on as a referrer.
async fn link_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    response
}

async fn ca_cert(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        hub.tls_ca_pem.clone(),
    )
}

/// Headers every answer carries, whatever route (or none) made it.
async fn transport_headers(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    response
}

/// API answers hold tokens' results and users' file names: never cached,
/// never taken for anything but what their type says.
async fn api_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Headers every page and OAuth response carries. Pages hold CSRF tokens,
/// codes and tokens, so nothing is cached, framed or leaked as a referrer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A request body must have arrived whole within `limit` of its head: a
/// client sending a byte now and then would otherwise hold its connection
/// (and a place under the connection limits) for as long as it liked.
/// When the time is up the body reads fail, the answer becomes 408 and the
/// connection is closed.
async fn body_deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: expired.clone(),
            limit,
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    tracing::debug!(?limit, "a request body did not arrive in time");
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(ferry_proto::api::ApiError {
            error: "timeout".into(),
            message: format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The request body read through [`body_deadline`]'s deadline.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
    limit: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A hub with an in-memory store, for driving the router in tests.
#[cfg(test)]
pub fn for_tests() -> Arc<Hub> {
    Arc::new(test_hub(Arc::new(
        crate::store::SqliteStore::in_memory().unwrap(),
    )))
}

/// A hub on `store`, for tests that need to change it before sharing it.
#[cfg(test)]
pub fn test_hub(store: Arc<dyn crate::store::Storage>) -> Hub {
    let ca = crate::pki::CertificateAuthority::create("ferry test CA").unwrap();
    Hub {
        config: crate::state::HubConfig {
            url: "https://hub.test:8443".into(),
            listen: "127.0.0.1:0".into(),
            tls_cert: "server.crt".into(),
            tls_key: "server.key".into(),
            tls_ca: "ca.crt".into(),
            heartbeat_secs: 15,
            admission_recheck_secs: 60,
            max_connections: 100,
            max_connections_per_address: crate::state::default_max_connections_per_address(),
            header_timeout_secs: crate::state::default_header_timeout(),
            body_timeout_secs: crate::state::default_body_timeout(),
            max_streams_per_endpoint: crate::state::default_max_streams_per_endpoint(),
            max_password_checks: crate::state::default_password_checks(),
            max_password_checks_queued: crate::state::default_password_checks_queued(),
            endpoint_cert_lifetime_secs: crate::pki::DEFAULT_ENDPOINT_CERT_LIFETIME_SECS,
            database: None,
            metrics_token: None,
            audit_retention_days: crate::state::default_audit_retention_days(),
            webhook_private_addresses: false,
            smtp: None,
            local_domain: None,
            identity_max_age_hours: crate::state::default_identity_max_age_hours(),
            identity_providers: Vec::new(),
            relay: crate::state::RelayConfig::default(),
        },
        identity_rules: crate::identities::IdentityRules {
            local_domain: "hub.test".into(),
            max_age_secs: 24 * 3600,
            link_page: "https://hub.test:8443/account".into(),
        },
        oidc: crate::oidc::Providers::default(),
        rendezvous: crate::rendezvous::Rendezvous::default(),
        file_streams: crate::https_files::Streams::default(),
        link_streams: crate::https_files::Streams::default(),
        relay: crate::relay::Relay::new(&crate::state::RelayConfig::default()),
        store,
        tls_ca_pem: ca.cert_pem.clone(),
        tls_ca_sha256: ca.cert_sha256,
        endpoint_ca: ca,
        control: crate::control::Registry::new().0,
        logins: LoginLimiter::default(),
        password_checks: PasswordChecks::new(
            crate::state::default_password_checks(),
            crate::state::default_password_checks_queued(),
        ),
        login_csrf: crate::secrets::MacKey::generate().unwrap(),
        link_key: crate::secrets::MacKey::generate().unwrap(),
        signer: crate::capability::TaskSigner::generate(),
        oidc_key: crate::oidc_provider::ProviderKey::generate(),
        task_ended: tokio::sync::Notify::new(),
        metrics: crate::metrics::HubMetrics::new(),
        notifier: crate::notify::Notifier::new(),
        instance: crate::cluster::Instance::new().unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// Seconds to wait, or `None` when an attempt would be admitted now
    /// (the look itself does not count).
    fn blocked_for(
        limiter: &LoginLimiter,
        account: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Option<i64> {
        match limiter.begin(account, ip, now) {
            Ok(attempt) => {
                attempt.unchecked();
                None
            }
            Err(wait) => Some(wait),
        }
    }

    fn fail(limiter: &LoginLimiter, account: &str, ip: Option<IpAddr>, now: i64) {
        limiter.begin(account, ip, now).unwrap().failed();
    }

    #[test]
    fn limiters_sharing_a_database_count_failures_together() {
        let store: Arc<dyn crate::store::Storage> =
            Arc::new(crate::store::SqliteStore::in_memory().unwrap());
        let (a, b) = (
            LoginLimiter::shared(store.clone()),
            LoginLimiter::shared(store.clone()),
        );
        for n in 0..MAX_FAILURES_PER_ACCOUNT {
            let limiter = if n % 2 == 0 { &a } else { &b };
            assert_eq!(blocked_for(limiter, "alice", None, 1000), None);
            fail(limiter, "alice", None, 1000);
        }
        // Neither counted five in memory; the database did.
        let fresh = LoginLimiter::shared(store.clone());
        for limiter in [&a, &b, &fresh] {
            assert!(blocked_for(limiter, "alice", None, 1001).is_some());
        }
        assert_eq!(blocked_for(&fresh, "bob", None, 1001), None);
        assert_eq!(
            blocked_for(&fresh, "alice", None, 1000 + LOGIN_WINDOW),
            None
        );
        // A success alone clears the account everywhere.
        let c = LoginLimiter::shared(store);
        fail(&c, "carol", None, 2000);
        c.begin("carol", None, 2001).unwrap().succeeded();
        assert_eq!(
            fresh.shared_block(&account_row(&account_key("carol")), 1, 2002),
            None
        );
    }

    #[test]
    fn accounts_are_limited_after_five_failures_for_fifteen_minutes() {
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(blocked_for(&limiter, "alice", None, 1000), None);
            fail(&limiter, "alice", None, 1000);
        }
        assert_eq!(
            blocked_for(&limiter, "alice", None, 1000),
            Some(LOGIN_WINDOW)
        );
        assert_eq!(
            blocked_for(&limiter, "alice", None, 1000 + 60),
            Some(LOGIN_WINDOW - 60)
        );
        assert_eq!(
            blocked_for(&limiter, "bob", None, 1000),
            None,
            "other accounts are not affected"
        );
        assert_eq!(
            blocked_for(&limiter, "alice", None, 1000 + LOGIN_WINDOW),
            None,
            "the window ends"
        );
        fail(&limiter, "alice", None, 1000 + LOGIN_WINDOW);
        assert_eq!(
            blocked_for(&limiter, "alice", None, 1000 + LOGIN_WINDOW),
            None,
            "a new window starts at one"
        );
    }

    #[test]
    fn addresses_are_limited_across_accounts_and_ipv6_by_prefix() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let neighbour: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::10".parse().unwrap();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            fail(&limiter, &format!("user{i}"), Some(here), 0);
        }
        assert!(blocked_for(&limiter, "fresh", Some(here), 0).is_some());
        assert!(
            blocked_for(&limiter, "fresh", Some(neighbour), 0).is_some(),
            "same /64"
        );
        assert_eq!(blocked_for(&limiter, "fresh", Some(elsewhere), 0), None);
        assert_eq!(blocked_for(&limiter, "fresh", None, 0), None);
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 1 {
            fail(&limiter, "alice", Some(ip), 0);
        }
        limiter.begin("alice", Some(ip), 0).unwrap().succeeded();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 1 {
            fail(&limiter, "alice", Some(ip), 0);
        }
        assert_eq!(
            blocked_for(&limiter, "alice", None, 0),
            None,
            "the typos before the success stopped counting"
        );
        let counted = 2 * (MAX_FAILURES_PER_ACCOUNT - 1);
        for i in counted..MAX_FAILURES_PER_ADDRESS {
            fail(&limiter, &format!("x{i}"), Some(ip), 0);
        }
        assert!(
            blocked_for(&limiter, "bob", Some(ip), 0).is_some(),
            "the address kept every failure, and not the success"
        );
    }

    #[test]
    fn attempts_count_when_admitted_not_when_checked() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        // Five checks running at once for one account: a sixth must wait,
        // though none has failed yet.
        let running: Vec<_> = (0..MAX_FAILURES_PER_ACCOUNT)
            .map(|_| limiter.begin("alice", Some(ip), 0).unwrap())
            .collect();
        assert!(limiter.begin("alice", Some(ip), 0).is_err());
        // One of them turns out right: it takes back only its own count,
        // since others ran beside it.
        let mut running = running.into_iter();
        running.next().unwrap().succeeded();
        let sixth = limiter.begin("alice", Some(ip), 0).unwrap();
        assert!(limiter.begin("alice", Some(ip), 0).is_err());
        for attempt in running {
            attempt.failed();
        }
        drop(sixth); // a client gone mid-check counts as a failure
        assert!(limiter.begin("alice", Some(ip), 0).is_err());

        // Per address alike: twenty running at once over many names.
        let spray = LoginLimiter::default();
        let running: Vec<_> = (0..MAX_FAILURES_PER_ADDRESS)
            .map(|i| spray.begin(&format!("u{i}"), Some(ip), 0).unwrap())
            .collect();
        assert!(spray.begin("fresh", Some(ip), 0).is_err());
        // An attempt refused before its check gives its place back.
        let mut running = running.into_iter();
        running.next().unwrap().unchecked();
        assert!(spray.begin("fresh", Some(ip), 0).is_ok_and(|a| {
            a.unchecked();
            true
        }));
    }

    #[test]
    fn a_success_clears_only_failures_settled_before_it_was_admitted() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        // A guess admitted before the right password, failing after it.
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 2 {
            fail(&limiter, "alice", Some(ip), 0);
        }
        let guess = limiter.begin("alice", Some(ip), 0).unwrap();
        let right = limiter.begin("alice", Some(ip), 0).unwrap();
        right.succeeded();
        guess.failed();
        fail(&limiter, "alice", Some(ip), 0);
        assert!(
            limiter.begin("alice", Some(ip), 0).is_err(),
            "earlier failures and the overlapping guess still count"
        );

        // A guess admitted while the right password was being checked,
        // failing before it ends.
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 2 {
            fail(&limiter, "alice", Some(ip), 0);
        }
        let right = limiter.begin("alice", Some(ip), 0).unwrap();
        fail(&limiter, "alice", Some(ip), 0);
        right.succeeded();
        fail(&limiter, "alice", Some(ip), 0);
        assert!(limiter.begin("alice", Some(ip), 0).is_err());

        // Alone, a success clears the account as before.
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 1 {
            fail(&limiter, "alice", Some(ip), 0);
        }
        limiter.begin("alice", Some(ip), 0).unwrap().succeeded();
        assert!(limiter.lock().accounts.is_empty());
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..MAX_TRACKED + 10 {
            fail(&limiter, &format!("spray{i}"), None, 0);
        }
        assert!(limiter.lock().accounts.len() <= MAX_TRACKED);
        fail(&limiter, "target", None, 0);
        assert_eq!(
            limiter
                .lock()
                .accounts
                .get(&account_key("target"))
                .map(|w| w.count),
            Some(1)
        );
    }

    #[tokio::test]
    async fn password_checks_run_a_few_at_once_and_queue_a_few_more() {
        let checks = PasswordChecks::new(2, 1);
        let first = checks.admit().unwrap().turn().await.unwrap();
        let _second = checks.admit().unwrap().turn().await.unwrap();
        let waiting = checks.admit().unwrap();
        assert!(checks.admit().is_none(), "every place is taken");
        let turn = tokio::spawn(waiting.turn());
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), turn)
            .await
            .expect("a waiting check runs once one ends")
            .unwrap();
        assert!(third.is_some());
        assert!(checks.admit().is_some(), "the first check's place is free");
    }

    #[tokio::test]
    async fn pages_carry_the_security_headers_and_the_api_is_still_routed() {
        let hub = for_tests();
        let response = router(hub.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], DEFAULT_CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains("ferry hub"), "{body}");
        // The fingerprint is one 95-character word: it sits in a code
        // element, and code elements wrap anywhere, so it stays in the card.
        let fingerprint = ferry_proto::setup_key::format_fingerprint(&hub.tls_ca_sha256);
        assert!(
            body.contains(&format!("<code>{fingerprint}</code>")),
            "{body}"
        );
        let style = body
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(style, _)| style)
            .unwrap();
        let code_rules: Vec<&str> = style
            .split('}')
            .filter_map(|rule| rule.split_once('{'))
            .filter(|(selectors, _)| selectors.split(',').any(|s| s.trim() == "code"))
            .map(|(_, declarations)| declarations)
            .collect();
        assert!(
            code_rules
                .iter()
                .any(|d| d.split(';').any(|d| d.trim() == "overflow-wrap:anywhere")),
            "{style}"
        );

        let ca = router(hub.clone())
            .oneshot(
                Request::get(ferry_proto::api::CA_CERT_PATH)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(ca.status(), StatusCode::OK);
        let api = router(hub)
            .oneshot(
                Request::get("/api/v1/endpoints")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            api.status(),
            StatusCode::UNAUTHORIZED,
            "the API routes are merged too"
        );
        let h = api.headers();
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
