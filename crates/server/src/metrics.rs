//! What the UDP listeners count, for the node's metrics: each worker
//! thread writes its own counters (relaxed atomics no other thread
//! writes, so counting costs no contention on the answer path), and a
//! scrape adds them up. Each worker also keeps a histogram of how long its
//! answers took, from the kernel's receive timestamp of the datagram to
//! the moment the batch's answers were ready (one clock read a batch).
//!
//! The stream listeners (Handle over TCP and QUIC, DNS over TCP and QUIC)
//! count in a [`StreamCounts`] of their own: atomic adds, a request costing
//! far more there than counting it.
//!
//! With metrics off (`[metrics] enabled = false`) the UDP workers count
//! nothing and the kernel does not stamp their datagrams; the stream
//! listeners count nothing either.

use idnode_core::latency::{Extremes, Latency, LatencyTotals};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// From arrival to answer, of the answers sent with their batch.
    pub latency: Latency,
}

/// The counts of one UDP listener (its workers), and the labels of its
/// response-code buckets.
#[derive(Debug)]
pub struct ListenerCounts {
    /// `handle-udp`, `dns-udp`.
    pub surface: &'static str,
    pub code_labels: &'static [&'static str],
    /// False: the workers count nothing (`[metrics] enabled = false`).
    pub enabled: bool,
    workers: idnode_core::workers::Workers<WorkerCounts>,
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
    pub latency: LatencyTotals,
}

impl ListenerCounts {
    pub(crate) fn new(
        surface: &'static str,
        code_labels: &'static [&'static str],
        rate_limited: Arc<crate::rrl::RateLimitCounters>,
        enabled: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            surface,
            code_labels,
            enabled,
            workers: Default::default(),
            rate_limited,
        })
    }

    /// A new worker's counters, counted in this listener's totals.
    pub(crate) fn worker(&self) -> Arc<WorkerCounts> {
        self.workers.add()
    }

    /// The sums over every worker, now.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        self.workers.each(|w| {
            t.received += w.received.load(Ordering::Relaxed);
            t.answered += w.answered.load(Ordering::Relaxed);
            t.bytes_in += w.bytes_in.load(Ordering::Relaxed);
            t.bytes_out += w.bytes_out.load(Ordering::Relaxed);
            for (sum, c) in t.codes.iter_mut().zip(&w.codes) {
                *sum += c.load(Ordering::Relaxed);
            }
            w.latency.add_to(&mut t.latency);
        });
        t
    }

    /// The shortest and longest answer time of every worker since the
    /// last call, and starts anew (the daily report's sampler calls it).
    pub fn take_extremes(&self) -> Extremes {
        let mut seen = Extremes::default();
        self.workers.each(|w| seen.merge(w.latency.take_extremes()));
        seen
    }
}

/// What a stream listener counts: requests (resolutions and queries,
/// administration aside), the answers sent and the successful ones among
/// them, and how long each answer took from its request's last byte to
/// the answer written.
#[derive(Debug)]
pub struct StreamCounts {
    /// `handle-tcp`, `handle-quic`, `dns-tcp`, `dns-quic`.
    pub surface: &'static str,
    /// False: nothing is counted (`[metrics] enabled = false`).
    pub enabled: bool,
    pub requests: AtomicU64,
    pub answered: AtomicU64,
    /// Answers with a success code (Handle 1, DNS NOERROR).
    pub succeeded: AtomicU64,
    pub latency: Latency,
}

impl StreamCounts {
    pub fn new(surface: &'static str, enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            surface,
            enabled,
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            latency: Latency::default(),
        })
    }

    /// The time to measure a request from, when counting.
    #[inline]
    pub(crate) fn start(&self) -> Option<std::time::Instant> {
        self.enabled.then(std::time::Instant::now)
    }

    /// Counts a request whose answer was sent (`since`: from
    /// [`start`](Self::start)).
    pub(crate) fn answered(&self, since: Option<std::time::Instant>, succeeded: bool) {
        let Some(since) = since else { return };
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
        if succeeded {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(ns);
    }

    /// Counts a request that got no answer.
    pub(crate) fn unanswered(&self) {
        if self.enabled {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The latency histogram's sums.
    pub fn latency_totals(&self) -> LatencyTotals {
        let mut t = LatencyTotals::default();
        self.latency.add_to(&mut t);
        t
    }
}

/// Whether a Handle answer (envelope, header...) says SUCCESS.
pub(crate) fn handle_succeeded(answer: &[u8]) -> bool {
    use idnode_handle::ENVELOPE_LEN;
    answer
        .get(ENVELOPE_LEN + 4..ENVELOPE_LEN + 8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(|b| u32::from_be_bytes(b) == idnode_handle::code::SUCCESS)
}

/// Whether a DNS answer (unframed) says NOERROR and is not truncated.
pub(crate) fn dns_succeeded(answer: &[u8]) -> bool {
    matches!((answer.get(2), answer.get(3)), (Some(flags), Some(rcode)) if flags & 0x02 == 0 && rcode & 0x0f == 0)
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
