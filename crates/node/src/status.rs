//! What `idnode status` shows (the gRPC `Node.Status` call): the node's
//! role (the prefixes it homes and delegates, its recursion roots), its
//! listeners, its store (change sequence, bytes on disk), its caches, and
//! the counts of its UDP listeners with their rates over about the last
//! minute. A background task samples the counters every
//! [`SAMPLE_EVERY`]; a rate is the difference between now and the oldest
//! sample of the last [`WINDOW`], divided by the time between them.

use idnode_admin::proto;
use idnode_authority::ResponseCache;
use idnode_registry::Registry;
use idnode_server::metrics::{ListenerCounts, Totals};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The span the rates are taken over, once the node has run that long.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A listener's counts at one moment: its totals and its rate-limited
/// answers.
type Counts = (Totals, u64);

struct Sample {
    at: Instant,
    counts: Vec<Counts>,
}

/// The node's side of `Node.Status`.
pub struct NodeStatus {
    started: Instant,
    registry: Arc<Registry>,
    db_dir: PathBuf,
    recursion_roots: Vec<String>,
    site_servers: usize,
    response_cache: Option<(Arc<ResponseCache>, usize)>,
    counted: Vec<Arc<ListenerCounts>>,
    listeners: OnceLock<Vec<(&'static str, SocketAddr)>>,
    samples: Mutex<VecDeque<Sample>>,
    mirror: Option<Arc<idnode_admin::MirrorState>>,
}

impl std::fmt::Debug for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStatus")
            .field("db_dir", &self.db_dir)
            .finish_non_exhaustive()
    }
}

/// What [`NodeStatus::new`] is made of.
pub struct Parts {
    pub registry: Arc<Registry>,
    pub db_dir: PathBuf,
    pub recursion_roots: Vec<String>,
    pub site_servers: usize,
    /// The response cache and its budget in bytes.
    pub response_cache: Option<(Arc<ResponseCache>, usize)>,
    pub counted: Vec<Arc<ListenerCounts>>,
    /// On a mirror: how it follows its primary.
    pub mirror: Option<Arc<idnode_admin::MirrorState>>,
}

fn counts(listeners: &[Arc<ListenerCounts>]) -> Vec<Counts> {
    listeners
        .iter()
        .map(|l| {
            let limited = l.rate_limited.dropped.load(Ordering::Relaxed)
                + l.rate_limited.slipped.load(Ordering::Relaxed);
            (l.totals(), limited)
        })
        .collect()
}

impl NodeStatus {
    pub fn new(parts: Parts) -> Arc<Self> {
        let now = Instant::now();
        let first = Sample {
            at: now,
            counts: counts(&parts.counted),
        };
        Arc::new(Self {
            started: now,
            registry: parts.registry,
            db_dir: parts.db_dir,
            recursion_roots: parts.recursion_roots,
            site_servers: parts.site_servers,
            response_cache: parts.response_cache,
            counted: parts.counted,
            listeners: OnceLock::new(),
            samples: Mutex::new(VecDeque::from([first])),
            mirror: parts.mirror,
        })
    }

    /// On a mirror: how it follows its primary.
    pub fn mirror(&self) -> Option<&idnode_admin::MirrorState> {
        self.mirror.as_deref()
    }

    /// Where the node listens, once every listener is bound.
    pub fn set_listeners(&self, listeners: Vec<(&'static str, SocketAddr)>) {
        let _ = self.listeners.set(listeners);
    }

    /// Takes a sample of the counters and forgets those older than the
    /// window (keeping at least one).
    pub fn sample(&self) {
        let sample = Sample {
            at: Instant::now(),
            counts: counts(&self.counted),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        keep(&mut samples, sample);
    }

    /// Samples every [`SAMPLE_EVERY`] until `shutdown`.
    pub fn sample_in_background(self: &Arc<Self>, shutdown: CancellationToken) {
        let status = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => status.sample(),
                    () = shutdown.cancelled() => break,
                }
            }
        });
    }

    fn surfaces(&self) -> Vec<proto::SurfaceStatus> {
        let now = Instant::now();
        let current = counts(&self.counted);
        let (since, base) = {
            let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            match samples.front() {
                Some(s) => (s.at, s.counts.clone()),
                None => (self.started, Vec::new()),
            }
        };
        let window = now.duration_since(since).as_secs_f64();
        self.counted
            .iter()
            .zip(current)
            .enumerate()
            .map(|(i, (listener, now))| {
                let then = base.get(i).cloned().unwrap_or_default();
                surface(listener.surface, listener.code_labels, &now, &then, window)
            })
            .collect()
    }
}

/// Adds `sample` and forgets the samples older than [`WINDOW`] before it
/// (keeping at least one).
fn keep(samples: &mut VecDeque<Sample>, sample: Sample) {
    let now = sample.at;
    samples.push_back(sample);
    while samples.len() > 1
        && samples
            .front()
            .is_some_and(|s| now.duration_since(s.at) > WINDOW)
    {
        samples.pop_front();
    }
}

/// One listener's counts `now`, with the rates since `then`, `window`
/// seconds earlier.
fn surface(
    name: &str,
    labels: &[&str],
    now: &Counts,
    then: &Counts,
    window: f64,
) -> proto::SurfaceStatus {
    let rate = |now: u64, then: u64| match window > 0.0 {
        true => now.saturating_sub(then) as f64 / window,
        false => 0.0,
    };
    let ((totals, limited), (before, limited_before)) = (now, then);
    proto::SurfaceStatus {
        surface: name.to_owned(),
        window_secs: window,
        requests: totals.received,
        requests_per_sec: rate(totals.received, before.received),
        responses: labels
            .iter()
            .enumerate()
            .map(|(b, label)| proto::CodeCount {
                code: (*label).to_owned(),
                count: totals.codes[b],
                per_sec: rate(totals.codes[b], before.codes[b]),
            })
            .collect(),
        rate_limited: *limited,
        rate_limited_per_sec: rate(*limited, *limited_before),
    }
}

impl NodeStatus {
    /// The summed lengths of the store's files, 0 when they cannot be read.
    pub fn store_bytes(&self) -> u64 {
        dir_bytes(&self.db_dir).unwrap_or(0)
    }

    /// The response cache (which the DNS answers from too), now.
    pub fn cache(&self) -> proto::CacheStatus {
        match &self.response_cache {
            Some((cache, budget)) => {
                let stats = cache.stats();
                proto::CacheStatus {
                    enabled: true,
                    budget_bytes: *budget as u64,
                    used_bytes: cache.bytes() as u64,
                    entries: cache.len() as u64,
                    hits: stats.hits,
                    misses: stats.misses,
                }
            }
            None => proto::CacheStatus::default(),
        }
    }
}

/// Bytes of the files in `dir` (RocksDB keeps its files in one folder).
/// A file RocksDB deletes while the folder is read (a compaction or a
/// replaced store's old files) is not counted, and is no error.
fn dir_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = match entry.and_then(|e| e.metadata()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

impl idnode_admin::NodeStatus for NodeStatus {
    fn status(&self) -> Result<proto::StatusResponse, String> {
        let prefixes = self
            .registry
            .list_prefixes()
            .map_err(|e| format!("cannot list the prefixes: {e}"))?;
        let (mut homed, mut delegated): (Vec<_>, Vec<_>) =
            prefixes.into_iter().partition(|p| p.homed);
        homed.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        delegated.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let store_bytes = dir_bytes(&self.db_dir)
            .map_err(|e| format!("cannot size {}: {e}", self.db_dir.display()))?;
        let response_cache = self.cache();
        Ok(proto::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            homed_prefixes: homed.into_iter().map(|p| p.prefix).collect(),
            delegated_prefixes: delegated.into_iter().map(|p| p.prefix).collect(),
            recursion_roots: self.recursion_roots.clone(),
            site_servers: u32::try_from(self.site_servers.max(1)).unwrap_or(u32::MAX),
            listeners: self
                .listeners
                .get()
                .map(|l| {
                    l.iter()
                        .map(|(name, addr)| proto::Listener {
                            name: (*name).to_owned(),
                            address: addr.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            change_sequence: self.registry.store().last_sequence(),
            mirror: self
                .mirror
                .as_ref()
                .map(|m| m.status(self.registry.store().last_sequence())),
            store_bytes,
            response_cache: Some(response_cache),
            dns_cache: None,
            surfaces: self.surfaces(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_sized_by_its_files() {
        let dir = std::env::temp_dir().join(format!("idnode-dir-bytes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(&dir).unwrap(), 15);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(dir_bytes(&dir).is_err());
    }

    fn counts(received: u64, ones: u64, limited: u64) -> Counts {
        let mut totals = Totals {
            received,
            ..Totals::default()
        };
        totals.codes[0] = ones;
        (totals, limited)
    }

    #[test]
    fn samples_older_than_the_window_are_forgotten() {
        let start = Instant::now();
        let mut samples = VecDeque::new();
        for i in 0..=20u64 {
            let at = start + SAMPLE_EVERY * u32::try_from(i).unwrap_or(0);
            keep(
                &mut samples,
                Sample {
                    at,
                    counts: vec![counts(i, i, 0)],
                },
            );
        }
        // At 100 s, the oldest kept is the one at 40 s: 60 s back.
        let front = samples.front().map(|s| s.at.duration_since(start));
        assert_eq!(front, Some(Duration::from_secs(40)));
        assert_eq!(samples.len(), 13);
        // A lone sample stays, however old.
        let mut one = VecDeque::new();
        keep(
            &mut one,
            Sample {
                at: start,
                counts: Vec::new(),
            },
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn rates_are_the_difference_over_the_window() {
        let then = counts(1_000, 900, 10);
        let now = counts(7_000, 6_900, 130);
        let s = surface("handle-udp", &["1", "100"], &now, &then, 60.0);
        assert_eq!(s.surface, "handle-udp");
        assert_eq!(s.requests, 7_000);
        assert!((s.requests_per_sec - 100.0).abs() < 1e-9);
        assert_eq!(s.responses.len(), 2);
        assert_eq!(
            (s.responses[0].code.as_str(), s.responses[0].count),
            ("1", 6_900)
        );
        assert!((s.responses[0].per_sec - 100.0).abs() < 1e-9);
        assert_eq!(s.responses[1].per_sec, 0.0);
        assert_eq!(s.rate_limited, 130);
        assert!((s.rate_limited_per_sec - 2.0).abs() < 1e-9);
        // No time between the two: no rate rather than a division by zero.
        assert_eq!(surface("x", &[], &now, &then, 0.0).requests_per_sec, 0.0);
    }
}
