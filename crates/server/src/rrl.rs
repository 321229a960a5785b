//! Response rate limiting for UDP, in the manner of DNS RRL (BIND, Knot,
//! NSD), for the Handle protocol and the DNS alike: a token bucket per
//! source prefix (/24 for IPv4, /56 for IPv6 by default) and answer, and
//! one per source prefix over all its answers (so that a source asking for
//! many names does not get each name's allowance). Over
//! the limit, every `slip`-th answer goes out as a small "ask over TCP"
//! answer (DNS: TC set, no records; Handle: a short error no larger than
//! the question) and the others are dropped, so a spoofed source can draw
//! little from the node and a real client behind it still gets through
//! over TCP. Sources under their limit lose nothing.
//!
//! Each UDP worker keeps its own table (no lock on the answer path); a
//! source whose datagrams reach several workers gets up to that many
//! times the rate. Sources in `exempt` (loopback by default: it cannot be
//! spoofed from outside) are never limited.

use idnode_core::net::contains;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Settings of the limiter.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitOptions {
    pub enabled: bool,
    /// Answers a second per source prefix and answer (the bucket refills
    /// at this rate and holds as many).
    pub responses_per_second: u32,
    /// Answers a second per source prefix over all answers; 0: no such
    /// limit.
    pub all_per_second: u32,
    /// Over the limit, every `slip`-th answer is sent small ("ask over
    /// TCP"); 0 drops them all.
    pub slip: u32,
    /// Prefix length that groups IPv4 sources.
    pub ipv4_prefix: u8,
    /// Prefix length that groups IPv6 sources.
    pub ipv6_prefix: u8,
    /// Sources never limited: (network address, prefix length).
    pub exempt: Vec<(IpAddr, u8)>,
    /// Largest answer to a source not known to receive what is sent to it
    /// (not exempt, no TCP connection lately, no valid DNS cookie), in
    /// multiples of its question's size: a larger answer goes out as the
    /// small "ask over TCP" form. 0: no cap (then such a source still gets
    /// only the first datagram of a Handle answer longer than one). Applies
    /// whether or not rate limiting is enabled.
    pub amplification: u32,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            responses_per_second: 20,
            all_per_second: 200,
            slip: 2,
            amplification: 3,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![
                (IpAddr::from([127, 0, 0, 0]), 8),
                (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
        }
    }
}

/// Counts of the limiter, shared by the workers (for logs and metrics).
#[derive(Debug, Default)]
pub struct RateLimitCounters {
    pub dropped: AtomicU64,
    pub slipped: AtomicU64,
    /// Answers cut to the "ask over TCP" form by the amplification cap.
    pub capped: AtomicU64,
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// Send the small "ask over TCP" form instead.
    Slip,
    Drop,
}

#[derive(Clone)]
struct Bucket {
    tokens: f32,
    last: Instant,
    /// Answers refused since the bucket last had a token (for slip).
    refused: u32,
    /// When this bucket was last logged as over its limit.
    logged: Option<Instant>,
}

/// The tables' hasher: foldhash, seeded at random per table (the keys are
/// the questions of whoever sends them; SipHash cost a fifth of the answer
/// rate of a source whose every answer was checked).
type Fast = foldhash::fast::RandomState;

/// Largest table of source buckets a worker keeps; when full, buckets
/// idle for a second (full again) are dropped, then the table is cleared.
const MAX_BUCKETS: usize = 65_536;

/// The bucket of `key` (full when new); a table grown to [`MAX_BUCKETS`]
/// first drops the buckets idle for a second (full again), then all.
fn bucket_of<K: std::hash::Hash + Eq, S: BuildHasher>(
    table: &mut HashMap<K, Bucket, S>,
    key: K,
    rate: f32,
    now: Instant,
) -> &mut Bucket {
    if table.len() >= MAX_BUCKETS && !table.contains_key(&key) {
        table.retain(|_, b| now.duration_since(b.last).as_secs_f32() * rate < rate);
        if table.len() >= MAX_BUCKETS {
            table.clear();
        }
    }
    table.entry(key).or_insert(Bucket {
        tokens: rate,
        last: now,
        refused: 0,
        logged: None,
    })
}

/// Refills `bucket` at `rate` a second (holding at most `rate`) and takes
/// a token from it if it has one.
fn take(bucket: &mut Bucket, rate: f32, now: Instant) -> bool {
    let elapsed = now.duration_since(bucket.last).as_secs_f32();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        bucket.refused = 0;
        return true;
    }
    false
}

/// Slots of a worker's table of answer buckets (a power of two).
const ANSWER_SLOTS: usize = 8192;

/// A slot of the answer table: the bucket of the (source, answer) whose
/// hash is `tag` (0: empty).
#[derive(Clone)]
struct Slot {
    tag: u64,
    bucket: Bucket,
}

/// One worker's limiter.
pub(crate) struct RateLimiter {
    options: Arc<RateLimitOptions>,
    counters: Arc<RateLimitCounters>,
    /// Answer buckets, direct-mapped by the hash of source and answer, as
    /// NSD keeps them: a slot taken by another answer starts it a full
    /// bucket, so a source asking for many names can push its own buckets
    /// out (it is held by its bucket in `sources` then), but the table
    /// never grows, allocates or is swept, and a lookup is one slot.
    answers: Box<[Slot]>,
    /// One bucket per source prefix, over all its answers.
    sources: HashMap<(u8, u128), Bucket, Fast>,
    hasher: Fast,
}

/// The source prefix a bucket is keyed by: (family, masked address).
fn masked(ip: IpAddr, v4: u8, v6: u8) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => {
            let keep = if v4 >= 32 {
                u32::MAX
            } else {
                !(u32::MAX >> v4)
            };
            (4, u128::from(u32::from(a) & keep))
        }
        IpAddr::V6(a) => {
            let keep = if v6 >= 128 {
                u128::MAX
            } else {
                !(u128::MAX >> v6)
            };
            (6, u128::from(a) & keep)
        }
    }
}

impl RateLimiter {
    pub(crate) fn new(options: Arc<RateLimitOptions>, counters: Arc<RateLimitCounters>) -> Self {
        Self {
            options,
            counters,
            answers: vec![
                Slot {
                    tag: 0,
                    bucket: Bucket {
                        tokens: 0.0,
                        last: Instant::now(),
                        refused: 0,
                        logged: None,
                    },
                };
                ANSWER_SLOTS
            ]
            .into_boxed_slice(),
            sources: HashMap::with_hasher(Fast::default()),
            hasher: Fast::default(),
        }
    }

    /// Whether `ip` is in the exempt ranges (never limited, and sent long
    /// answers whole).
    pub(crate) fn exempt(&self, ip: IpAddr) -> bool {
        self.options.exempt.iter().any(|&net| contains(net, ip))
    }

    /// The largest answer to `question_len` octets that an unverified
    /// source may get (`usize::MAX`: no cap).
    pub(crate) fn amplification_cap(&self, question_len: usize) -> usize {
        match self.options.amplification {
            0 => usize::MAX,
            n => (n as usize).saturating_mul(question_len),
        }
    }

    /// The counters this limiter adds to.
    pub(crate) fn counters(&self) -> Arc<RateLimitCounters> {
        self.counters.clone()
    }

    /// The amplification factor (0: no cap).
    pub(crate) fn amplification(&self) -> u32 {
        self.options.amplification
    }

    /// Counts an answer the amplification cap cut.
    pub(crate) fn count_capped(&self) {
        self.counters.capped.fetch_add(1, Ordering::Relaxed);
    }

    /// The verdict for an answer to `question` (the bytes that name the
    /// answer: the Handle body, the DNS question) for `ip`.
    pub(crate) fn check(&mut self, ip: IpAddr, question: &[u8]) -> Verdict {
        let o = &*self.options;
        if !o.enabled || o.exempt.iter().any(|&net| contains(net, ip)) {
            return Verdict::Send;
        }
        // The clock is read only for a source that is limited.
        self.limit(ip, question, Instant::now())
    }

    /// [`check`](Self::check) at `now`.
    #[cfg(test)]
    fn check_at(&mut self, ip: IpAddr, question: &[u8], now: Instant) -> Verdict {
        let o = &*self.options;
        if !o.enabled || o.exempt.iter().any(|&net| contains(net, ip)) {
            return Verdict::Send;
        }
        self.limit(ip, question, now)
    }

    /// The verdict for a source neither exempt nor with limiting off.
    fn limit(&mut self, ip: IpAddr, question: &[u8], now: Instant) -> Verdict {
        let o = &*self.options;
        let source = masked(ip, o.ipv4_prefix, o.ipv6_prefix);
        let mut h = self.hasher.build_hasher();
        h.write_u8(source.0);
        h.write_u128(source.1);
        h.write(question);
        let tag = h.finish() | 1;
        let rate = o.responses_per_second.max(1) as f32;
        let slot = &mut self.answers[(tag >> 1) as usize & (ANSWER_SLOTS - 1)];
        if slot.tag != tag {
            *slot = Slot {
                tag,
                bucket: Bucket {
                    tokens: rate,
                    last: now,
                    refused: 0,
                    logged: None,
                },
            };
        }
        let bucket = &mut slot.bucket;
        let bucket = match take(bucket, rate, now) {
            false => bucket,
            // Within this answer's limit: then within the source's, over
            // all its answers?
            true if o.all_per_second == 0 => return Verdict::Send,
            true => {
                let all = o.all_per_second as f32;
                let source = bucket_of(&mut self.sources, source, all, now);
                if take(source, all, now) {
                    return Verdict::Send;
                }
                source
            }
        };
        bucket.refused = bucket.refused.wrapping_add(1);
        if bucket
            .logged
            .is_none_or(|at| now.duration_since(at).as_secs() >= 10)
        {
            bucket.logged = Some(now);
            tracing::info!(
                source = %ip,
                limit = o.responses_per_second,
                "UDP answers to this source rate limited (logged once every 10 s per source and answer)"
            );
        }
        let refused = bucket.refused;
        if o.slip > 0 && refused.is_multiple_of(o.slip) {
            self.counters.slipped.fetch_add(1, Ordering::Relaxed);
            Verdict::Slip
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        }
    }
}

/// Sources that have shown they receive what is sent to them (a TCP
/// connection or a QUIC handshake completed from them recently): answers
/// longer than one datagram go to them whole over UDP; to the others only
/// the first datagram goes (the rest would make the node an amplifier:
/// the client's reassembly then times out and it asks over TCP).
#[derive(Debug, Default)]
pub struct VerifiedSources {
    seen: std::sync::RwLock<HashMap<IpAddr, Instant>>,
}

/// How long a source stays verified after its last connection.
const VERIFIED_FOR_SECS: u64 = 3600;
const MAX_VERIFIED: usize = 100_000;

impl VerifiedSources {
    /// Records that `ip` completed a connection.
    pub fn saw(&self, ip: IpAddr) {
        let mut seen = self
            .seen
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_VERIFIED && !seen.contains_key(&ip) {
            let now = Instant::now();
            seen.retain(|_, at| now.duration_since(*at).as_secs() < VERIFIED_FOR_SECS);
            if seen.len() >= MAX_VERIFIED {
                seen.clear();
            }
        }
        seen.insert(ip, Instant::now());
    }

    /// Whether `ip` completed a connection within the last hour.
    pub fn verified(&self, ip: IpAddr) -> bool {
        self.seen
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ip)
            .is_some_and(|at| at.elapsed().as_secs() < VERIFIED_FOR_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rate: u32, slip: u32) -> RateLimiter {
        let options = RateLimitOptions {
            responses_per_second: rate,
            all_per_second: 0,
            slip,
            exempt: vec![(IpAddr::from([10, 9, 0, 0]), 16)],
            ..RateLimitOptions::default()
        };
        RateLimiter::new(Arc::new(options), Arc::default())
    }

    #[test]
    fn a_source_asking_for_many_names_is_held_to_its_total() {
        let options = RateLimitOptions {
            responses_per_second: 5,
            all_per_second: 20,
            slip: 0,
            exempt: Vec::new(),
            ..RateLimitOptions::default()
        };
        let mut l = RateLimiter::new(Arc::new(options), Arc::default());
        let now = Instant::now();
        let (flood, other) = (
            IpAddr::from([192, 0, 2, 1]),
            IpAddr::from([198, 51, 100, 7]),
        );
        // 100 names once each, within every name's limit: 20 answers, the
        // source's total.
        let sent = (0..100u32)
            .filter(|n| l.check_at(flood, &n.to_be_bytes(), now) == Verdict::Send)
            .count();
        assert_eq!(sent, 20);
        // Another source keeps its own total; a second later the first
        // gets its next 20.
        assert_eq!(l.check_at(other, b"x", now), Verdict::Send);
        let later = now + Duration::from_secs(1);
        let sent = (100..200u32)
            .filter(|n| l.check_at(flood, &n.to_be_bytes(), later) == Verdict::Send)
            .count();
        assert_eq!(sent, 20);
    }

    #[test]
    fn a_source_over_its_limit_is_slipped_and_dropped_and_refills() {
        let mut l = limiter(5, 2);
        let t0 = Instant::now();
        let ip = IpAddr::from([192, 0, 2, 7]);
        let verdicts: Vec<Verdict> = (0..9).map(|_| l.check_at(ip, b"q", t0)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5]);
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // Its /24 neighbour shares the bucket for the same answer...
        assert_ne!(
            l.check_at(IpAddr::from([192, 0, 2, 99]), b"q", t0),
            Verdict::Send
        );
        // ...not for another answer, nor another /24.
        assert_eq!(l.check_at(ip, b"other", t0), Verdict::Send);
        assert_eq!(
            l.check_at(IpAddr::from([192, 0, 3, 7]), b"q", t0),
            Verdict::Send
        );
        // A second later the bucket is full again.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(l.check_at(ip, b"q", later), Verdict::Send);
        // Exempt sources are never limited.
        for _ in 0..100 {
            assert_eq!(
                l.check_at(IpAddr::from([10, 9, 1, 1]), b"q", t0),
                Verdict::Send
            );
        }
        assert_eq!(l.counters.slipped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn no_slip_drops_all_and_disabled_sends_all() {
        let mut l = limiter(1, 0);
        let t0 = Instant::now();
        let ip = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(l.check_at(ip, b"q", t0), Verdict::Send);
        for _ in 0..10 {
            assert_eq!(l.check_at(ip, b"q", t0), Verdict::Drop);
        }
        let mut off = RateLimiter::new(
            Arc::new(RateLimitOptions {
                enabled: false,
                ..RateLimitOptions::default()
            }),
            Arc::default(),
        );
        for _ in 0..100 {
            assert_eq!(off.check_at(ip, b"q", t0), Verdict::Send);
        }
    }

    #[test]
    fn ipv6_sources_group_by_56() {
        let mut l = limiter(1, 0);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let b: IpAddr = "2001:db8:0:1:ffff::2"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        let c: IpAddr = "2001:db8:0:100::1"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(l.check_at(a, b"q", t0), Verdict::Send);
        assert_eq!(l.check_at(b, b"q", t0), Verdict::Drop);
        assert_eq!(l.check_at(c, b"q", t0), Verdict::Send);
    }

    #[test]
    fn verified_sources() {
        let v = VerifiedSources::default();
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert!(!v.verified(ip));
        v.saw(ip);
        assert!(v.verified(ip));
    }
}
