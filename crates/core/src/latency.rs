//! Latency counters the serving crates share: a histogram with fixed
//! log-scale buckets (powers of two of a microsecond, from 1 µs to about
//! 1 s, then everything longer), the sum of what it counted, and the
//! shortest and longest since they were last taken (for the daily report).
//!
//! Counters a single thread writes ([`Latency::record_own`]: a load and a
//! store, no read-modify-write) and counters many tasks write
//! ([`Latency::record`]: atomic adds) are the same type; a reader adds
//! them up with [`Latency::add_to`]. Times are given in nanoseconds; no
//! clock is read here.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds: `2^i` microseconds for `i` in `0..BOUNDS`.
pub const BOUNDS: usize = 21;
/// Buckets: one per bound, then the one beyond the last.
pub const BUCKETS: usize = BOUNDS + 1;

/// The bucket of a latency of `ns` nanoseconds: the first whose bound
/// (`2^i` µs) it does not exceed.
#[inline]
pub fn bucket(ns: u64) -> usize {
    let us = ns.div_ceil(1000);
    // The bit length of `us - 1`: 1 µs and below in 0, (1, 2] in 1,
    // (2, 4] in 2...
    let bits = (u64::BITS - us.saturating_sub(1).leading_zeros()) as usize;
    bits.min(BOUNDS)
}

/// The upper bound of bucket `i` (below [`BOUNDS`]) in seconds.
pub fn bound_seconds(i: usize) -> f64 {
    (1u64 << i.min(63)) as f64 / 1e6
}

/// A histogram of latencies, their sum, and the extremes since they were
/// last taken.
#[derive(Debug)]
pub struct Latency {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    /// `u64::MAX` when nothing was counted since the last take.
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// Sums of histograms.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LatencyTotals {
    /// Observations by bucket (not cumulative).
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl LatencyTotals {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Shortest and longest latency seen over a time, in nanoseconds (`min` is
/// `u64::MAX` and `max` 0 when nothing was seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extremes {
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Default for Extremes {
    fn default() -> Self {
        Self {
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Extremes {
    /// Widens these to cover `ns`.
    #[inline]
    pub fn cover(&mut self, ns: u64) {
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Widens these to cover `other`.
    pub fn merge(&mut self, other: Extremes) {
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Whether anything was seen.
    pub fn any(&self) -> bool {
        self.min_ns <= self.max_ns
    }
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    // A load and a store, not a read-modify-write: one thread writes.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Latency {
    /// Counts one latency; any thread may call it (atomic adds).
    pub fn record(&self, ns: u64) {
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.min_ns.fetch_min(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Counts one latency into the histogram and the sum, from the one
    /// thread that writes them (a load and a store each); the extremes
    /// follow with [`widen`](Self::widen), once for a batch.
    #[inline]
    pub fn record_own(&self, ns: u64) {
        bump(&self.buckets[bucket(ns)], 1);
        bump(&self.sum_ns, ns);
    }

    /// Widens the extremes to cover `seen` (two atomic operations,
    /// nothing when nothing was seen).
    #[inline]
    pub fn widen(&self, seen: Extremes) {
        if seen.any() {
            self.min_ns.fetch_min(seen.min_ns, Ordering::Relaxed);
            self.max_ns.fetch_max(seen.max_ns, Ordering::Relaxed);
        }
    }

    /// Counts, from the one thread that writes this histogram, the answers
    /// to datagrams that arrived at `arrivals` (nanoseconds since the Unix
    /// epoch, as the kernel stamps them) and are all ready now: `now` is
    /// read once, and only if there is an arrival; the extremes are widened
    /// once. A clock stepped back between the two counts as 0.
    #[inline]
    pub fn record_arrivals(&self, arrivals: impl Iterator<Item = u64>, now: impl FnOnce() -> u64) {
        let mut now = Some(now);
        let mut at = 0;
        let mut seen = Extremes::default();
        for arrived in arrivals {
            if let Some(read) = now.take() {
                at = read();
            }
            let ns = at.saturating_sub(arrived);
            self.record_own(ns);
            seen.cover(ns);
        }
        self.widen(seen);
    }

    /// Adds this histogram to `totals`.
    pub fn add_to(&self, totals: &mut LatencyTotals) {
        for (sum, c) in totals.buckets.iter_mut().zip(&self.buckets) {
            *sum = sum.wrapping_add(c.load(Ordering::Relaxed));
        }
        totals.sum_ns = totals
            .sum_ns
            .wrapping_add(self.sum_ns.load(Ordering::Relaxed));
    }

    /// The extremes since the last take, and starts anew.
    pub fn take_extremes(&self) -> Extremes {
        Extremes {
            min_ns: self.min_ns.swap(u64::MAX, Ordering::Relaxed),
            max_ns: self.max_ns.swap(0, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_a_microsecond() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(2_000), 1);
        assert_eq!(bucket(2_001), 2);
        assert_eq!(bucket(4_000), 2);
        assert_eq!(bucket(1_000_000), 10); // 1 ms <= 1024 µs
        assert_eq!(bucket((1 << 20) * 1000), 20);
        assert_eq!(bucket((1 << 20) * 1000 + 1), BOUNDS);
        assert_eq!(bucket(u64::MAX), BOUNDS);
        for i in 0..BOUNDS {
            let ns = (1u64 << i) * 1000;
            assert!((bound_seconds(i) * 1e9 - ns as f64).abs() < 1e-3);
            assert_eq!(bucket(ns), i, "the bound of bucket {i} is in it");
            assert_eq!(bucket(ns + 1), i + 1, "just past the bound of bucket {i}");
        }
    }

    #[test]
    fn a_batch_is_timed_with_one_clock_read() {
        let l = Latency::default();
        let mut reads = 0;
        l.record_arrivals([1_000, 4_000, 9_000].into_iter(), || {
            reads += 1;
            10_000
        });
        assert_eq!(reads, 1);
        // Nothing arrived: no clock read, nothing counted.
        l.record_arrivals(std::iter::empty(), || unreachable!());
        // A clock behind the arrival counts as 0.
        l.record_arrivals([20_000].into_iter(), || 10_000);
        let mut t = LatencyTotals::default();
        l.add_to(&mut t);
        assert_eq!(t.count(), 4);
        assert_eq!(t.sum_ns, 9_000 + 6_000 + 1_000);
        assert_eq!(
            l.take_extremes(),
            Extremes {
                min_ns: 0,
                max_ns: 9_000
            }
        );
    }

    #[test]
    fn counts_sums_and_extremes() {
        let l = Latency::default();
        l.record(500);
        l.record_own(3_000);
        let mut seen = Extremes::default();
        seen.cover(3_000);
        l.widen(seen);
        l.widen(Extremes::default());
        let mut t = LatencyTotals::default();
        l.add_to(&mut t);
        assert_eq!(t.count(), 2);
        assert_eq!(t.sum_ns, 3_500);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[2], 1);
        assert_eq!(
            l.take_extremes(),
            Extremes {
                min_ns: 500,
                max_ns: 3_000
            }
        );
        assert!(!l.take_extremes().any(), "taken: nothing seen since");
    }
}
