//! The hub's HTTP side: web pages (login, consent, the copy-the-code page),
//! the OAuth2 endpoints, and the REST API routes.

use crate::server::Hub;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// Pages render only our own markup and inline styles: no scripts, no
/// frames, no foreign resources. Forms may post only to the hub (the consent
/// page widens this for its loopback redirect target).
pub const DEFAULT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How long failed logins count against an account or address.
pub const LOGIN_WINDOW: i64 = 15 * 60;
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// Bounds the limiter's memory when someone sprays made-up user names.
const MAX_TRACKED: usize = 100_000;

/// Failed logins per account and per client address, for rate limiting.
///
/// Counts are kept for any account name, existing or not, so being limited
/// reveals nothing about which accounts exist.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    accounts: HashMap<String, Window>,
    addresses: HashMap<IpAddr, Window>,
}

/// Failures counted since `start`; the count resets when the window ends.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

impl Window {
    fn live(&self, now: i64) -> bool {
        now < self.start + LOGIN_WINDOW
    }
}

/// One IPv6 host usually owns a whole /64, so it counts as one address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
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

fn count_failure<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Window>, key: K, now: i64) {
    if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
        map.retain(|_, w| w.live(now));
        if map.len() >= MAX_TRACKED
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let window = map.entry(key).or_insert(Window {
        start: now,
        count: 0,
    });
    if !window.live(now) {
        *window = Window {
            start: now,
            count: 0,
        };
    }
    window.count = window.count.saturating_add(1);
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        // The maps stay consistent whatever panicked while holding them.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Seconds until this account (from this address) may try again, or
    /// `None` when it may try now.
    pub fn blocked_for(&self, account: &str, address: Option<IpAddr>, now: i64) -> Option<i64> {
        let failures = self.lock();
        let by_account = blocked(
            &failures.accounts,
            &account.to_string(),
            MAX_FAILURES_PER_ACCOUNT,
            now,
        );
        let by_address = address.and_then(|ip| {
            blocked(
                &failures.addresses,
                &address_key(ip),
                MAX_FAILURES_PER_ADDRESS,
                now,
            )
        });
        by_account.max(by_address)
    }

    pub fn failed(&self, account: &str, address: Option<IpAddr>, now: i64) {
        let mut failures = self.lock();
        count_failure(&mut failures.accounts, account.to_string(), now);
        if let Some(ip) = address {
            count_failure(&mut failures.addresses, address_key(ip), now);
        }
    }

    /// The account's owner got in: their earlier typos stop counting. The
    /// address keeps its count, so one good account cannot launder a
    /// password spray from the same place.
    pub fn succeeded(&self, account: &str) {
        self.lock().accounts.remove(account);
    }
}

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(ferry_proto::api::CA_CERT_PATH, get(ca_cert))
        .merge(crate::oauth::routes().layer(map_response(security_headers)))
        .merge(crate::api::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hub)
}

async fn ca_cert(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        hub.tls_ca_pem.clone(),
    )
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

/// A hub with an in-memory store, for driving the router in tests.
#[cfg(test)]
pub fn for_tests() -> Arc<Hub> {
    let ca = crate::pki::CertificateAuthority::create("ferry test CA").unwrap();
    Arc::new(Hub {
        config: crate::state::HubConfig {
            url: "https://hub.test:8443".into(),
            listen: "127.0.0.1:0".into(),
            tls_cert: "server.crt".into(),
            tls_key: "server.key".into(),
            tls_ca: "ca.crt".into(),
            heartbeat_secs: 15,
            max_connections: 100,
        },
        store: crate::store::Store::in_memory().unwrap(),
        tls_ca_pem: ca.cert_pem.clone(),
        tls_ca_sha256: ca.cert_sha256,
        endpoint_ca: ca,
        control: crate::control::Registry::new().0,
        logins: LoginLimiter::default(),
        signer: crate::capability::TaskSigner::generate(),
        task_ended: tokio::sync::Notify::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn accounts_are_limited_after_five_failures_for_fifteen_minutes() {
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(limiter.blocked_for("alice", None, 1000), None);
            limiter.failed("alice", None, 1000);
        }
        assert_eq!(limiter.blocked_for("alice", None, 1000), Some(LOGIN_WINDOW));
        assert_eq!(
            limiter.blocked_for("alice", None, 1000 + 60),
            Some(LOGIN_WINDOW - 60)
        );
        assert_eq!(
            limiter.blocked_for("bob", None, 1000),
            None,
            "other accounts are not affected"
        );
        assert_eq!(
            limiter.blocked_for("alice", None, 1000 + LOGIN_WINDOW),
            None,
            "the window ends"
        );
        limiter.failed("alice", None, 1000 + LOGIN_WINDOW);
        assert_eq!(
            limiter.blocked_for("alice", None, 1000 + LOGIN_WINDOW),
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
            limiter.failed(&format!("user{i}"), Some(here), 0);
        }
        assert!(limiter.blocked_for("fresh", Some(here), 0).is_some());
        assert!(
            limiter.blocked_for("fresh", Some(neighbour), 0).is_some(),
            "same /64"
        );
        assert_eq!(limiter.blocked_for("fresh", Some(elsewhere), 0), None);
        assert_eq!(limiter.blocked_for("fresh", None, 0), None);
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            limiter.failed("alice", Some(ip), 0);
        }
        assert!(limiter.blocked_for("alice", None, 0).is_some());
        limiter.succeeded("alice");
        assert_eq!(limiter.blocked_for("alice", None, 0), None);
        for _ in MAX_FAILURES_PER_ACCOUNT..MAX_FAILURES_PER_ADDRESS {
            limiter.failed("x", Some(ip), 0);
        }
        assert!(limiter.blocked_for("alice", Some(ip), 0).is_some());
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..MAX_TRACKED + 10 {
            limiter.failed(&format!("spray{i}"), None, 0);
        }
        assert!(limiter.lock().accounts.len() <= MAX_TRACKED);
        limiter.failed("target", None, 0);
        assert_eq!(
            limiter.lock().accounts.get("target").map(|w| w.count),
            Some(1)
        );
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
        assert!(
            body.contains(&ferry_proto::setup_key::format_fingerprint(
                &hub.tls_ca_sha256
            )),
            "{body}"
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
    }
}
