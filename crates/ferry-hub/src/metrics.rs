//! The hub's Prometheus metrics at `GET /metrics`: what the hub counts as
//! it runs (HTTP requests and their latency, faults by kind, relay bytes)
//! in one registry, and what its storage and control registry know (tasks
//! by state, bytes and files moved, connected endpoints), read at each
//! scrape, so those are true across restarts and cost nothing between
//! scrapes. `metrics_token` in `hub.toml` guards the route.
//!
//! Encoded by prometheus-client (the Prometheus project's Rust client) in
//! the Prometheus text format 0.0.4.

use crate::server::Hub;
use crate::store::StoreError;
use crate::tasks::FaultKind;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_proto::task::TaskStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// Every metric's name starts so.
const PREFIX: &str = "ferry_hub";

/// The `route` of a request no route matched: one label value for every
/// path a client may make up, so the label's values stay bounded.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route's template (`/api/v1/tasks/{id}`), never the raw path.
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// What the hub counts while it runs (since this process started).
#[derive(Debug)]
pub struct HubMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    faults: Family<KindLabels, Counter>,
    relay_bytes: Counter<u64>,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HubMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        // 1 ms to about 16 s: a page, an API call, a long poll's wait.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 15))) as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer's head, by route template",
            latency.clone(),
        );
        let faults = Family::<KindLabels, Counter>::default();
        registry.register(
            "faults",
            "Task faults (retried attempts) by kind",
            faults.clone(),
        );
        // Every kind from the start, so a rate over it has a series to start from.
        for kind in FaultKind::ALL {
            let _ = faults.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        let relay_bytes = Counter::<u64>::default();
        registry.register(
            "relay_bytes",
            "Bytes of task data (encrypted end to end) the hub relayed between endpoints that could not connect directly",
            relay_bytes.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            faults,
            relay_bytes,
        }
    }

    /// Counts bytes the relay passed on (either way).
    pub fn relayed(&self, bytes: u64) {
        self.relay_bytes.inc_by(bytes);
    }

    pub fn fault(&self, kind: FaultKind) {
        self.faults
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    fn request(&self, route: &str, method: &'static str, status: StatusCode, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method,
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The exposition: these counters, then what `hub`'s storage and
    /// control registry say now.
    pub fn encode(&self, hub: &Hub) -> Result<String, StoreError> {
        let stats = hub.store.task_stats()?;
        let mut now = Registry::with_prefix(PREFIX);
        let tasks = Family::<StateLabels, Gauge>::default();
        let (mut bytes, mut files) = (0u64, 0u64);
        for status in [
            TaskStatus::Active,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Canceled,
        ] {
            let of = stats.iter().find(|s| s.status == status);
            let count = of.map_or(0, |s| s.tasks);
            tasks
                .get_or_create(&StateLabels {
                    state: state_label(status),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            if let Some(s) = of {
                bytes = bytes.saturating_add(s.bytes_transferred);
                files = files.saturating_add(s.files_transferred);
            }
        }
        now.register("tasks", "Tasks by state", tasks);
        now.register(
            "moved_bytes",
            "Bytes tasks moved into files (each task's bytes_transferred, summed over every task)",
            ConstCounter::new(bytes),
        );
        now.register(
            "moved_files",
            "Files tasks committed (each task's files_transferred, summed over every task)",
            ConstCounter::new(files),
        );
        let connected = Gauge::<i64>::default();
        connected.set(i64::try_from(hub.control.connected_count()).unwrap_or(i64::MAX));
        now.register(
            "connected_endpoints",
            "Endpoints whose control connection is up",
            connected,
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        let _ = prometheus_text::encode(&mut text, &now);
        Ok(text)
    }
}

fn state_label(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Active => "active",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::Failed => "failed",
        TaskStatus::Canceled => "canceled",
    }
}

/// Methods as a label: the ones the hub serves, and `other` for whatever
/// else a client sends, so the label's values stay bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request and times it to its answer's head. A layer of the
/// whole router: it runs after routing, so the matched route's template
/// is there (none for the fallback).
pub async fn record(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |m| m.as_str())
        .to_string();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    hub.metrics.request(
        &route,
        method,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn serve(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Some(token) = &hub.config.metrics_token {
        let given = crate::api::credential(&headers, "Bearer").unwrap_or_default();
        // Hashes of equal length, so not even the token's length shows.
        let matches = crate::secrets::constant_time_eq(
            crate::secrets::token_hash(given).as_bytes(),
            crate::secrets::token_hash(token).as_bytes(),
        );
        if !matches {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "/metrics needs `Authorization: Bearer TOKEN` with the hub's metrics_token\n",
            )
                .into_response();
        }
    }
    let scrape = hub.clone();
    let encoded = tokio::task::spawn_blocking(move || scrape.metrics.encode(&scrape)).await;
    match encoded {
        Ok(Ok(text)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the task counts for /metrics");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's storage is unavailable; try again\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "the /metrics scrape panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::{router, test_hub};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(hub: &Arc<Hub>, path: &str, bearer: Option<&str>) -> (StatusCode, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router(hub.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn hub_with_token(token: Option<&str>) -> Arc<Hub> {
        let mut hub = test_hub(Arc::new(crate::store::SqliteStore::in_memory().unwrap()));
        hub.config.metrics_token = token.map(str::to_string);
        Arc::new(hub)
    }

    #[tokio::test]
    async fn a_metrics_token_is_required_when_set_and_compared_whole() {
        let token = "0123456789abcdef0123456789abcdef";
        let hub = hub_with_token(Some(token));
        for bearer in [
            None,
            Some(""),
            Some("0123456789abcdef"),
            Some("0123456789abcdef0123456789abcdeF"),
            Some("0123456789abcdef0123456789abcdef0"),
        ] {
            let (status, body) = get(&hub, "/metrics", bearer).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
            assert!(!body.contains("ferry_hub_"), "{body}");
        }
        let (status, body) = get(&hub, "/metrics", Some(token)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("# TYPE ferry_hub_tasks gauge"), "{body}");
        // Without a token set, /metrics is open.
        let (status, _) = get(&hub_with_token(None), "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_by_path() {
        let hub = hub_with_token(None);
        for id in ["id-7f3a01", "id-7f3a02", "id-7f3a03"] {
            get(&hub, &format!("/api/v1/tasks/{id}"), None).await;
            get(&hub, &format!("/made/up/{id}"), None).await;
        }
        let (_, body) = get(&hub, "/metrics", None).await;
        let line = |start: &str| {
            body.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in\n{body}"))
                .to_string()
        };
        assert!(
            line("ferry_hub_http_requests_total{route=\"/api/v1/tasks/{task}\",method=\"GET\",status=\"401\"}")
                .ends_with(" 3"),
            "{body}"
        );
        assert!(
            line(
                "ferry_hub_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"
            )
            .ends_with(" 3"),
            "{body}"
        );
        assert!(
            line("ferry_hub_http_request_duration_seconds_count{route=\"unmatched\"}")
                .ends_with(" 3"),
            "{body}"
        );
        for id in ["id-7f3a01", "id-7f3a02", "id-7f3a03"] {
            assert!(!body.contains(id), "{body}");
        }
    }

    #[test]
    fn the_exposition_counts_tasks_by_state_and_faults_by_kind() {
        let hub = hub_with_token(None);
        hub.metrics.fault(FaultKind::EndpointOffline);
        hub.metrics.fault(FaultKind::EndpointOffline);
        hub.metrics.relayed(700);
        hub.metrics.relayed(42);
        let text = hub.metrics.encode(&hub).unwrap();
        for line in [
            "ferry_hub_faults_total{kind=\"endpoint_offline\"} 2",
            "ferry_hub_faults_total{kind=\"transfer\"} 0",
            "ferry_hub_tasks{state=\"active\"} 0",
            "ferry_hub_tasks{state=\"canceled\"} 0",
            "ferry_hub_moved_bytes_total 0",
            "ferry_hub_moved_files_total 0",
            "ferry_hub_connected_endpoints 0",
            "ferry_hub_relay_bytes_total 742",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
