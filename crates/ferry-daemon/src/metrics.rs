//! The daemon's Prometheus metrics, served at `metrics_listen` from
//! `endpoint.toml`: what this endpoint's transfers did since it started
//! (the mover's [`Metrics`]), encoded by prometheus-client in the
//! Prometheus text format 0.0.4.
//!
//! A tiny HTTP/1 server that answers `GET /metrics` and nothing else. It
//! has no authentication (the setting must name one interface's address),
//! so it takes little from whoever reaches it: a few connections at once,
//! one small request each, answered within a deadline, then closed.

use ferry_mover::metrics::Metrics;
use hyper::body::Incoming;
use hyper::http::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Every metric's name starts so.
const PREFIX: &str = "ferry_endpoint";
/// Connections served at once; more are closed on arrival.
const MAX_CONNECTIONS: usize = 8;
/// Largest request head buffered.
const MAX_REQUEST: usize = 8 * 1024;
/// A connection's whole life: its request head, the answer, the close.
const CONNECTION_WITHIN: Duration = Duration::from_secs(10);

/// The exposition of `metrics` now.
pub fn encode(metrics: &Metrics) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 8] = [
        (
            "sent_bytes",
            "Chunk bytes this endpoint wrote to data streams as a source",
            &metrics.sent_bytes,
        ),
        (
            "received_bytes",
            "Chunk bytes that arrived at this endpoint, verified, and were written",
            &metrics.received_bytes,
        ),
        (
            "sent_files",
            "Files this endpoint sent in full as a source",
            &metrics.sent_files,
        ),
        (
            "hashed_ahead_files",
            "Files this endpoint hashed as a source while the destination hashed its copies to compare (--sync-level checksum, or a retry checking what an earlier attempt moved)",
            &metrics.hashed_ahead_files,
        ),
        (
            "received_files",
            "Files this endpoint received, verified and committed",
            &metrics.received_files,
        ),
        (
            "chunk_verify_failures",
            "Chunks whose digest did not match on arrival",
            &metrics.chunk_verify_failures,
        ),
        (
            "journal_syncs",
            "Task journal syncs (each makes journaled chunks and files durable)",
            &metrics.journal_syncs,
        ),
        (
            "data_streams_opened",
            "Data streams opened, sending or receiving",
            &metrics.streams_opened,
        ),
    ];
    for (name, help, counter) in counters {
        registry.register(name, help, ConstCounter::new(Metrics::get(counter)));
    }
    registry.register(
        "data_streams",
        "Data streams open now, sending or receiving",
        ConstGauge::new(Metrics::level(&metrics.streams)),
    );
    registry.register(
        "open_files",
        "Files open now for transfers (sources being read, temporaries being written)",
        ConstGauge::new(Metrics::level(&metrics.open_files)),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut text, &registry);
    text
}

/// The answer to one request.
fn answer(metrics: &Metrics, request: &Request<Incoming>) -> Response<String> {
    let plain = |status: StatusCode, body: &str| {
        let mut response = Response::new(body.to_string());
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(encode(metrics));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

/// Serves `listener` (bound by `Daemon::prepare`) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics server disabled");
            return;
        }
    };
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics server busy; closing a connection");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&metrics, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_WITHIN)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(CONNECTION_WITHIN, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_and_gauge_is_exposed_by_name() {
        let metrics = Arc::new(Metrics::default());
        Metrics::add(&metrics.sent_bytes, 4_194_304);
        Metrics::add(&metrics.received_files, 3);
        let _stream = metrics.stream();
        let text = encode(&metrics);
        for line in [
            "# TYPE ferry_endpoint_sent_bytes_total counter",
            "ferry_endpoint_sent_bytes_total 4194304",
            "ferry_endpoint_received_bytes_total 0",
            "ferry_endpoint_sent_files_total 0",
            "ferry_endpoint_hashed_ahead_files_total 0",
            "ferry_endpoint_received_files_total 3",
            "ferry_endpoint_chunk_verify_failures_total 0",
            "ferry_endpoint_journal_syncs_total 0",
            "ferry_endpoint_data_streams_opened_total 1",
            "# TYPE ferry_endpoint_data_streams gauge",
            "ferry_endpoint_data_streams 1",
            "ferry_endpoint_open_files 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
