//! What the web listener counts, for the node's metrics: answers by status
//! class and how long the handlers took. Each worker thread writes its own
//! counters (no other thread writes them: no contention on the answer
//! path) and a scrape adds them up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket,
/// beyond them, is unbounded).
pub const LATENCY_BOUNDS_US: [u64; 8] = [50, 100, 250, 500, 1_000, 5_000, 25_000, 100_000];

/// Status classes counted: 1xx to 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One worker's counters.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounts {
    by_class: [AtomicU64; 5],
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_ns: AtomicU64,
}

impl WorkerCounts {
    /// Counts one answer; only this worker's thread calls it.
    pub(crate) fn record(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&self.by_class[class], 1);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        bump(&self.latency[bucket], 1);
        bump(
            &self.latency_sum_ns,
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    // A load and a store, not a read-modify-write: one thread writes.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// The counters of the listener's workers, and its resolutions.
#[derive(Debug, Default)]
pub struct HttpCounts {
    workers: idnode_core::workers::Workers<WorkerCounts>,
    /// Identifiers resolved through the REST API and the proxy.
    pub resolutions: Resolutions,
}

/// Resolutions through the web: requests, those that found values, and
/// how long each took to resolve (atomic adds: a handler runs on any of
/// the runtime's threads).
#[derive(Debug, Default)]
pub struct Resolutions {
    pub requests: AtomicU64,
    pub succeeded: AtomicU64,
    pub latency: idnode_core::latency::Latency,
}

impl Resolutions {
    /// Counts a resolution begun at `started`.
    pub(crate) fn count(&self, started: std::time::Instant, succeeded: bool) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if succeeded {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(ns);
    }
}

/// Sums over the workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpTotals {
    /// Answers by status class ([`CLASSES`]).
    pub by_class: [u64; 5],
    /// Answers by latency bucket ([`LATENCY_BOUNDS_US`], then the rest).
    pub latency: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Handler time of every answer together, in nanoseconds.
    pub latency_sum_ns: u64,
}

impl HttpCounts {
    /// A new worker's counters, counted in the totals.
    pub(crate) fn worker(&self) -> Arc<WorkerCounts> {
        self.workers.add()
    }

    /// The sums now.
    pub fn totals(&self) -> HttpTotals {
        let mut t = HttpTotals::default();
        self.workers.each(|w| {
            for (sum, c) in t.by_class.iter_mut().zip(&w.by_class) {
                *sum += c.load(Ordering::Relaxed);
            }
            for (sum, c) in t.latency.iter_mut().zip(&w.latency) {
                *sum += c.load(Ordering::Relaxed);
            }
            t.latency_sum_ns += w.latency_sum_ns.load(Ordering::Relaxed);
        });
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_and_latency() {
        let counts = HttpCounts::default();
        let (a, b) = (counts.worker(), counts.worker());
        a.record(200, Duration::from_micros(40));
        a.record(302, Duration::from_micros(300));
        b.record(404, Duration::from_secs(1));
        b.record(999, Duration::from_micros(100));
        let t = counts.totals();
        assert_eq!(t.by_class, [0, 1, 1, 1, 1]);
        assert_eq!(t.latency, [1, 1, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(t.latency_sum_ns, 1_000_440_000);
    }
}
