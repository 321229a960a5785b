//! The recursive role of an idnode node: it resolves identifiers on its
//! clients' behalf by walking prefix referrals from the root (top-level)
//! node down to the node that homes the identifier.
//!
//! This crate owns that walk and what it remembers:
//! - where to ask: the sites of the longest cached ancestor-or-self prefix
//!   of the identifier's prefix (`88.100.1`, then `88.100`, then `88`),
//!   else the configured root sites; inside a site, the server the HS_SITE
//!   hash rule picks ([`SiteInfo::server_for`]); UDP first, then TCP to the
//!   same server; then the next site (several HS_SITE values are mirrors);
//! - following `303 PREFIX_REFERRAL` answers, whose handle names the
//!   delegated prefix's record (`0.NA/88.100`) and whose HS_SITE /
//!   HS_SITE.PREFIX values are that prefix's sites, with a referral limit
//!   and loop detection;
//! - a cache of whole answers (for their smallest TTL; HANDLE_NOT_FOUND for
//!   [`RecursorOptions::negative_ttl`]) and of referrals (for the smallest
//!   TTL of their site values), bounded by [`RecursorOptions::max_entries`];
//! - coalescing: identical questions in flight at once (same identifier,
//!   ASCII case-insensitively) share one walk;
//! - one [`Client`] per upstream server address and transport.
//!
//! It asks upstream with plain RESOLUTION requests for the whole record
//! (no REC flag, no index or type filter) and hands back the whole record:
//! filtering by index and type, and writing the answer to the client, are
//! the caller's (the server's) job. It knows nothing of the local store:
//! deciding whether an identifier is homed here is the caller's job too.

mod cache;

use cache::Cache;
use idnode_client::{Client, Query, Transport};
use idnode_core::{Identifier, Prefix, Ttl, Value};
use idnode_handle::{InterfaceProtocol, Response, ResponseBody, SiteInfo, code};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest a cached answer or referral is kept, whatever its TTL says.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Most upstream clients kept; past it the map starts over (a hostile
/// upstream could otherwise name ever new servers).
const MAX_CLIENTS: usize = 4096;

/// How the recursor walks and caches.
#[derive(Debug, Clone)]
pub struct RecursorOptions {
    /// The sites of the root (top-level) node, asked when no referral for
    /// the identifier's prefix is cached.
    pub roots: Vec<SiteInfo>,
    /// Time allowed for one upstream attempt (one server, one transport).
    pub timeout: Duration,
    /// Most referrals one resolution follows.
    pub max_depth: u8,
    /// How long a HANDLE_NOT_FOUND answer is cached.
    pub negative_ttl: Duration,
    /// Most cached answers and referrals, together.
    pub max_entries: usize,
}

impl Default for RecursorOptions {
    /// No roots; 2 s per attempt, 10 referrals, 60 s negative TTL, 100 000
    /// entries.
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            timeout: Duration::from_secs(2),
            max_depth: 10,
            negative_ttl: Duration::from_secs(60),
            max_entries: 100_000,
        }
    }
}

/// The outcome of a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The whole record as the homing node sent it.
    Found { handle: String, values: Vec<Value> },
    /// A Handle response code ([`idnode_handle::code`]) and why.
    Failed { code: u32, message: String },
}

impl Answer {
    fn failed(code: u32, message: impl Into<String>) -> Self {
        Answer::Failed {
            code,
            message: message.into(),
        }
    }
}

/// The recursive resolver. Cheap to share: use it behind an `Arc` from
/// many tasks.
pub struct Recursor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursor")
            .field("roots", &self.inner.roots.len())
            .field("timeout", &self.inner.options.timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: RecursorOptions,
    roots: Arc<Vec<SiteInfo>>,
    cache: Mutex<Cache>,
    /// Keyed by address and protocol (`Transport` is not `Hash`).
    clients: Mutex<HashMap<(SocketAddr, InterfaceProtocol), Client>>,
    /// Walks in progress, by normalized identifier; the walk's task sends
    /// its answer, then removes its entry.
    in_flight: Mutex<HashMap<String, watch::Receiver<Option<Answer>>>>,
}

/// What asking one set of sites gave.
enum Reply {
    /// A final answer, and how long it may be cached.
    Done(Answer, Option<Duration>),
    /// Ask elsewhere: `handle` names the delegated prefix's record.
    Referral {
        from: SocketAddr,
        handle: String,
        values: Vec<Value>,
    },
}

impl Recursor {
    pub fn new(options: RecursorOptions) -> Self {
        let roots = Arc::new(options.roots.clone());
        let cache = Cache::new(options.max_entries);
        Self {
            inner: Arc::new(Inner {
                options,
                roots,
                cache: Mutex::new(cache),
                clients: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Resolves `handle`: the whole record (all values), or why not.
    ///
    /// Answers from the cache when it can; otherwise joins the walk already
    /// under way for the same identifier, or starts one. The walk runs in
    /// its own task, so a caller that gives up does not cancel it for the
    /// others.
    pub async fn resolve(&self, handle: &str) -> Answer {
        let identifier = match Identifier::parse(handle) {
            Ok(identifier) => identifier,
            Err(e) => {
                return Answer::failed(
                    code::INVALID_HANDLE,
                    format!("`{handle}` is not a valid identifier: {e}"),
                );
            }
        };
        let key = identifier.key().to_owned();
        if let Some(answer) = lock(&self.inner.cache).answer(&key, Instant::now()) {
            return answer;
        }
        let mut answer = {
            let mut in_flight = lock(&self.inner.in_flight);
            match in_flight.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    // A walk that ended between the first look and now
                    // cached its answer before leaving `in_flight`.
                    if let Some(answer) = lock(&self.inner.cache).answer(&key, Instant::now()) {
                        return answer;
                    }
                    let (tx, rx) = watch::channel(None);
                    in_flight.insert(key.clone(), rx.clone());
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        let leave = Leave {
                            inner: &inner,
                            key: &key,
                        };
                        let answer = inner.walk(&identifier).await;
                        // Out of `in_flight` before the answer is out: a
                        // question asked once this one has its answer must
                        // not be handed the same (maybe uncacheable) answer.
                        drop(leave);
                        tx.send_replace(Some(answer));
                    });
                    rx
                }
            }
        };
        match answer.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(ended_without_answer),
            Err(_) => ended_without_answer(),
        }
    }
}

fn ended_without_answer() -> Answer {
    Answer::failed(code::ERROR, "the resolution ended without an answer")
}

/// Removes a walk's `in_flight` entry when the walk ends, even by panic.
struct Leave<'a> {
    inner: &'a Inner,
    key: &'a str,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        lock(&self.inner.in_flight).remove(self.key);
    }
}

/// Locks a mutex that only guards maps: a poisoned one is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe(place: Option<&Prefix>) -> String {
    match place {
        Some(prefix) => format!("prefix {prefix}"),
        None => "the root".to_owned(),
    }
}

impl Inner {
    /// One walk from the best known starting point down to an answer,
    /// caching what it learns.
    async fn walk(&self, identifier: &Identifier) -> Answer {
        let handle = identifier.as_str();
        let prefix = identifier.prefix_parsed();
        let (mut sites, mut at) = self.start(&prefix);
        let mut followed: Vec<Prefix> = Vec::new();
        loop {
            let (from, referred, values) = match self.ask_sites(&sites, handle, at.as_ref()).await {
                Reply::Done(answer, ttl) => {
                    if let Some(ttl) = ttl {
                        let now = Instant::now();
                        if let Some(expires) = now.checked_add(ttl.min(MAX_CACHE_TTL)) {
                            lock(&self.cache).put_answer(
                                identifier.key().to_owned(),
                                answer.clone(),
                                expires,
                                now,
                            );
                        }
                    }
                    return answer;
                }
                Reply::Referral {
                    from,
                    handle: referred,
                    values,
                } => (from, referred, values),
            };
            if followed.len() >= usize::from(self.options.max_depth) {
                return Answer::failed(
                    code::RECURSION_COUNT_TOO_HIGH,
                    format!(
                        "resolving {handle} took more than {} referrals (the last from {from} to `{referred}`)",
                        self.options.max_depth
                    ),
                );
            }
            let Some(next) = Identifier::parse(&referred)
                .ok()
                .and_then(|r| r.as_prefix_record())
            else {
                return Answer::failed(
                    code::ERROR,
                    format!(
                        "{from} referred {handle} to `{referred}`, which is not a prefix record (0.NA/<prefix>)"
                    ),
                );
            };
            if !next.contains(&prefix) {
                return Answer::failed(
                    code::ERROR,
                    format!(
                        "{from} referred {handle} to prefix {next}, which is neither {prefix} nor above it"
                    ),
                );
            }
            let backwards = at
                .as_ref()
                .is_some_and(|at| next.key().len() <= at.key().len());
            if backwards || followed.iter().any(|p| p.key() == next.key()) {
                let path: Vec<String> = followed.iter().map(|p| p.to_string()).collect();
                return Answer::failed(
                    code::RECURSION_COUNT_TOO_HIGH,
                    format!(
                        "referral loop: {from} referred {handle} to prefix {next} while resolving at {} (followed: [{}])",
                        describe(at.as_ref()),
                        path.join(", ")
                    ),
                );
            }
            let (new_sites, ttl) = sites_of(&values);
            if new_sites.is_empty() {
                return Answer::failed(
                    code::ERROR,
                    format!(
                        "{from} referred {handle} to prefix {next} without a decodable HS_SITE or HS_SITE.PREFIX value (HS_SERV is not followed)"
                    ),
                );
            }
            let new_sites = Arc::new(new_sites);
            if let Some(ttl) = ttl {
                let now = Instant::now();
                if let Some(expires) = now.checked_add(ttl.min(MAX_CACHE_TTL)) {
                    lock(&self.cache).put_referral(
                        next.key().to_owned(),
                        new_sites.clone(),
                        expires,
                        now,
                    );
                }
            }
            tracing::debug!(%handle, %from, prefix = %next, "following a prefix referral");
            sites = new_sites;
            followed.push(next.clone());
            at = Some(next);
        }
    }

    /// The sites of the longest ancestor-or-self of `prefix` with a cached
    /// referral, and that prefix; else the roots.
    fn start(&self, prefix: &Prefix) -> (Arc<Vec<SiteInfo>>, Option<Prefix>) {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        let mut candidate = Some(prefix.clone());
        while let Some(p) = candidate {
            if let Some(sites) = cache.referral(p.key(), now) {
                return (sites, Some(p));
            }
            candidate = p.parent();
        }
        (self.roots.clone(), None)
    }

    /// Asks the sites in turn (the hashed server of each, UDP then TCP)
    /// until one answers.
    async fn ask_sites(&self, sites: &[SiteInfo], handle: &str, at: Option<&Prefix>) -> Reply {
        let mut tried = Vec::new();
        for site in sites {
            let Some(server) = site.server_for(handle) else {
                continue;
            };
            for (protocol, transport) in [
                (InterfaceProtocol::Udp, Transport::Udp),
                (InterfaceProtocol::Tcp, Transport::Tcp),
            ] {
                let Some(addr) = server.query_endpoint(protocol) else {
                    continue;
                };
                let query = Query {
                    identifier: handle.to_owned(),
                    ..Query::default()
                };
                match self.client(addr, protocol, transport).resolve(&query).await {
                    Ok(response) => return self.classify(addr, response),
                    Err(e) => {
                        tracing::debug!(%handle, %addr, error = %e, "upstream attempt failed");
                        tried.push(format!("{}://{addr} ({e})", protocol.scheme()));
                    }
                }
            }
        }
        let message = if tried.is_empty() {
            format!(
                "no site of {} lists a server with a UDP or TCP query interface for {handle}",
                describe(at)
            )
        } else {
            format!(
                "no server of {} answered {handle} within {:?}: {}",
                describe(at),
                self.options.timeout,
                tried.join("; ")
            )
        };
        Reply::Done(Answer::failed(code::SERVER_NOT_RESP, message), None)
    }

    fn classify(&self, from: SocketAddr, response: Response) -> Reply {
        let response_code = response.header.response_code;
        match (response_code, response.body) {
            (code::SUCCESS, ResponseBody::Resolution { handle, values }) => {
                let ttl = min_ttl(&values, unix_now());
                Reply::Done(Answer::Found { handle, values }, ttl)
            }
            (c, ResponseBody::Referral { handle, values }) if code::is_referral(c) => {
                Reply::Referral {
                    from,
                    handle,
                    values,
                }
            }
            (code::HANDLE_NOT_FOUND, body) => Reply::Done(
                Answer::failed(code::HANDLE_NOT_FOUND, upstream_message(from, &body)),
                Some(self.options.negative_ttl),
            ),
            (c, body) => Reply::Done(Answer::failed(c, upstream_message(from, &body)), None),
        }
    }

    /// The client for one upstream server and transport, made on first use.
    fn client(
        &self,
        addr: SocketAddr,
        protocol: InterfaceProtocol,
        transport: Transport,
    ) -> Client {
        let mut clients = lock(&self.clients);
        if let Some(client) = clients.get(&(addr, protocol)) {
            return client.clone();
        }
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        let mut client = Client::new(addr, transport);
        client.timeout = self.options.timeout;
        client.recursion_desired = false;
        clients.insert((addr, protocol), client.clone());
        client
    }
}

fn upstream_message(from: SocketAddr, body: &ResponseBody) -> String {
    match body {
        ResponseBody::Error { message } if !message.is_empty() => format!("{from}: {message}"),
        ResponseBody::Error { .. } => format!("{from}: (no message)"),
        _ => format!("{from}: unexpected response body"),
    }
}

/// The sites carried by a referral's HS_SITE and HS_SITE.PREFIX values
/// (undecodable ones skipped), and the smallest TTL of those values.
fn sites_of(values: &[Value]) -> (Vec<SiteInfo>, Option<Duration>) {
    let now = unix_now();
    let mut sites = Vec::new();
    let mut ttl: Option<Duration> = None;
    for value in values {
        let kind = value.kind.as_str();
        if !kind.eq_ignore_ascii_case("HS_SITE") && !kind.eq_ignore_ascii_case("HS_SITE.PREFIX") {
            continue;
        }
        match SiteInfo::decode(&value.data) {
            Ok(site) => {
                sites.push(site);
                let this = value_ttl(value.ttl, now);
                ttl = Some(ttl.map_or(this, |t| t.min(this)));
            }
            Err(e) => {
                tracing::debug!(index = value.index, error = %e, "skipping an undecodable site value")
            }
        }
    }
    (sites, ttl)
}

/// The smallest TTL among `values`; `None` when there are none.
fn min_ttl(values: &[Value], now_unix: u64) -> Option<Duration> {
    values.iter().map(|v| value_ttl(v.ttl, now_unix)).min()
}

/// How long from now a value may be cached: a relative TTL as is, an
/// absolute one until that unix time (0 when it has passed).
fn value_ttl(ttl: Ttl, now_unix: u64) -> Duration {
    match ttl {
        Ttl::Relative(secs) => Duration::from_secs(u64::from(secs)),
        Ttl::Absolute(until) => Duration::from_secs(u64::from(until).saturating_sub(now_unix)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn ttls_take_the_smallest_and_respect_absolute_times() {
        let mut a = Value::new(1, "URL", "x");
        a.ttl = Ttl::Relative(300);
        let mut b = Value::new(2, "URL", "y");
        b.ttl = Ttl::Absolute(1_000_100);
        assert_eq!(
            min_ttl(&[a.clone(), b.clone()], 1_000_000),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            min_ttl(&[a.clone(), b], 2_000_000),
            Some(Duration::ZERO),
            "an absolute TTL in the past"
        );
        assert_eq!(min_ttl(&[a], 0), Some(Duration::from_secs(300)));
        assert_eq!(min_ttl(&[], 0), None);
    }

    #[test]
    fn only_site_values_make_sites() {
        let site = SiteInfo::single(
            vec![idnode_handle::ServerInfo::from_urls(1, "udp://127.0.0.1:2641").unwrap()],
            idnode_handle::HashOption::Whole,
        );
        let mut good = Value::new(1, "hs_site.prefix", site.encode());
        good.ttl = Ttl::Relative(50);
        let mut other = Value::new(2, "URL", "x");
        other.ttl = Ttl::Relative(1);
        let broken = Value::new(3, "HS_SITE", vec![0u8; 3]);
        let (sites, ttl) = sites_of(&[good, other, broken]);
        assert_eq!(sites, vec![site]);
        assert_eq!(ttl, Some(Duration::from_secs(50)));
    }
}
