//! What the UDP listeners count, for the node's metrics: each worker
//! thread writes its own counters (relaxed atomics no other thread
//! writes, so counting costs no contention on the answer path), and a
//! scrape adds them up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most response-code buckets a responder distinguishes.
pub const CODE_BUCKETS: usize = 8;

/// One worker's counts.
#[derive(Debug, Default)]
pub struct WorkerCounts {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub codes: [AtomicU64; CODE_BUCKETS],
}

/// The counts of one UDP listener (its workers), and the labels of its
/// response-code buckets.
#[derive(Debug)]
pub struct ListenerCounts {
    /// `handle-udp`, `dns-udp`.
    pub surface: &'static str,
    pub code_labels: &'static [&'static str],
    workers: Mutex<Vec<Arc<WorkerCounts>>>,
    /// Answers the response rate limiter dropped or slipped.
    pub rate_limited: Arc<crate::rrl::RateLimitCounters>,
}

/// Sums over a listener's workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub received: u64,
    pub answered: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub codes: [u64; CODE_BUCKETS],
}

impl ListenerCounts {
    pub(crate) fn new(
        surface: &'static str,
        code_labels: &'static [&'static str],
        rate_limited: Arc<crate::rrl::RateLimitCounters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            surface,
            code_labels,
            workers: Mutex::new(Vec::new()),
            rate_limited,
        })
    }

    /// A new worker's counters, counted in this listener's totals.
    pub(crate) fn worker(&self) -> Arc<WorkerCounts> {
        let counts = Arc::new(WorkerCounts::default());
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(counts.clone());
        counts
    }

    /// The sums over every worker, now.
    pub fn totals(&self) -> Totals {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut t = Totals::default();
        for w in workers.iter() {
            t.received += w.received.load(Ordering::Relaxed);
            t.answered += w.answered.load(Ordering::Relaxed);
            t.bytes_in += w.bytes_in.load(Ordering::Relaxed);
            t.bytes_out += w.bytes_out.load(Ordering::Relaxed);
            for (sum, c) in t.codes.iter_mut().zip(&w.codes) {
                *sum += c.load(Ordering::Relaxed);
            }
        }
        t
    }
}

/// Adds one to a counter only this thread writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    // A load and a store, not a read-modify-write: no other thread writes.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}
