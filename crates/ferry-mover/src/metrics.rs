//! What this endpoint's transfers did since the daemon started: counters
//! and gauges the daemon exposes at `metrics_listen`. Plain atomics with
//! relaxed ordering, bumped once per chunk, file, stream or sync (never
//! per byte), so the hot path pays an uncontended add; nothing here knows
//! the exposition format.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared by every transfer of one daemon.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Chunk bytes this endpoint wrote to data streams as a source.
    pub sent_bytes: AtomicU64,
    /// Files whose every needed chunk and digest this endpoint sent.
    pub sent_files: AtomicU64,
    /// Files this endpoint, as a source, hashed while the destination
    /// hashed its copies to compare (`--sync-level checksum`, or a retry
    /// checking what an earlier attempt moved; data protocol 6), and
    /// compared without hashing them again.
    pub hashed_ahead_files: AtomicU64,
    /// Chunk bytes that arrived here, verified, and were written.
    pub received_bytes: AtomicU64,
    /// Files received, verified and committed under their real names.
    pub received_files: AtomicU64,
    /// Chunks whose digest did not match on arrival.
    pub chunk_verify_failures: AtomicU64,
    /// Task journal syncs (each makes journaled chunks and files durable).
    pub journal_syncs: AtomicU64,
    /// Data streams opened, sending or receiving (a source adds streams
    /// to an attempt as its measured throughput asks: `tuner`).
    pub streams_opened: AtomicU64,
    /// Data streams open now, sending or receiving.
    pub streams: AtomicI64,
    /// Files open now for transfers: sources being read, temporaries
    /// being written.
    pub open_files: AtomicI64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn level(gauge: &AtomicI64) -> i64 {
        gauge.load(Ordering::Relaxed)
    }

    /// One more data stream, until the guard drops.
    pub fn stream(self: &Arc<Self>) -> Held {
        Self::add(&self.streams_opened, 1);
        Held::new(self.clone(), Gauge::Streams)
    }

    /// One more open file, until the guard drops.
    pub fn open_file(self: &Arc<Self>) -> Held {
        Held::new(self.clone(), Gauge::OpenFiles)
    }
}

#[derive(Debug, Clone, Copy)]
enum Gauge {
    Streams,
    OpenFiles,
}

/// One unit of a gauge, given back on drop (so every way out of a stream
/// or a file, errors and panics included, counts it down).
#[derive(Debug)]
pub struct Held {
    metrics: Arc<Metrics>,
    gauge: Gauge,
}

impl Held {
    fn new(metrics: Arc<Metrics>, gauge: Gauge) -> Self {
        metrics.gauge(gauge).fetch_add(1, Ordering::Relaxed);
        Self { metrics, gauge }
    }
}

impl Metrics {
    fn gauge(&self, gauge: Gauge) -> &AtomicI64 {
        match gauge {
            Gauge::Streams => &self.streams,
            Gauge::OpenFiles => &self.open_files,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.gauge)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_gauge_counts_down_however_its_holder_ends() {
        let m = Arc::new(Metrics::default());
        let a = m.stream();
        let b = m.open_file();
        let c = m.open_file();
        assert_eq!(
            (Metrics::level(&m.streams), Metrics::level(&m.open_files)),
            (1, 2)
        );
        drop(b);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _c = c;
            panic!("a reader fails");
        }));
        assert_eq!(Metrics::level(&m.open_files), 0);
        drop(a);
        assert_eq!(Metrics::level(&m.streams), 0);
    }
}
