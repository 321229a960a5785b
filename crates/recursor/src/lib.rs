//! The recursive role of an idnode node: it resolves identifiers on its
//! clients' behalf the way CNRI's client library (hdllib 9.2) resolves
//! through the global Handle system (docs/hierarchy.md, "The recursive role"):
//! one prefix lookup, then the identifier itself.
//!
//! The walk for an identifier `P/x`:
//! 1. **The sites homing P.** From the cache (by prefix) while fresh;
//!    otherwise a *prefix lookup*: a RESOLUTION of `0.NA/P` (P upper-cased)
//!    for the types HS_SITE, HS_SITE.6, HS_SERV and HS_NAMESPACE. It goes
//!    first to the homing sites of the longest cached ancestor of P (a node
//!    that homes `88` answers for `0.NA/88.*`), else to the configured
//!    roots; when an ancestor's sites give no sites (other than by an
//!    authoritative 100), once more to the roots.
//!    - `303 PREFIX_REFERRAL` (an empty handle and the prefix-type values of
//!      a delegation above P): the next sites are the referral's
//!      HS_SITE.PREFIX and HS_NA_DELEGATE values, else the sites of the
//!      service handles its HS_SERV.PREFIX values name, else its HS_SITE /
//!      HS_SITE.6 / HS_SERV values (else the sites of the handle it names).
//!      The same lookup is sent there, at most
//!      [`RecursorOptions::max_depth`] times; a referral whose sites were all
//!      asked already in this lookup (same server endpoints) is a loop.
//!    - SUCCESS: the sites are the HS_SITE and HS_SITE.6 values, plus, for
//!      each HS_SERV value (a service handle in UTF-8), the sites of that
//!      handle, resolved the same way for HS_SITE, HS_SITE.6 and HS_SERV
//!      (nested at most [`MAX_SERVICE_DEPTH`] deep, a handle seen before in
//!      the walk skipped, `0.NA/0.NA` meaning the roots). They are cached
//!      under P for the smallest TTL of the values they came from (at most
//!      [`MAX_CACHE_TTL`]; TTL 0 is not cached).
//!    - No usable site: the resolution fails with "unable to find a site for
//!      prefix P" (hdllib's SERVICE_NOT_FOUND, which has no response code).
//!      A 100 from the lookup is authoritative (the prefix does not exist,
//!      so neither does the identifier): HANDLE_NOT_FOUND, cached like any
//!      not-found answer. A 200, a 301, or a SUCCESS without HS_SITE /
//!      HS_SERV is a broken delegation: SERVER_NOT_RESP, not cached. Other
//!      error codes (busy...) are passed on, not cached.
//! 2. **The identifier itself** at those sites: all values, no REC. SUCCESS
//!    is cached for its smallest TTL, HANDLE_NOT_FOUND for
//!    [`RecursorOptions::negative_ttl`], other errors are not cached. A 303
//!    here is an error (only prefix records are referred); a 301 or a 303
//!    also drops P's cached sites, so the next question looks them up again.
//!
//! Identifiers under a `0.` prefix (`0.NA/88.100`, `0.0/0.0`) go straight
//! to the roots, as hdllib sends them to its global sites; a 303 is followed
//! for `0.NA/` handles only. Not done: hdllib's retry with AT after a failed
//! prefix lookup, HS_NAMESPACE (asked for, not used), site attributes
//! (`alt_addr`, `domain`), HTTP interfaces, sessions (HS_MAC).
//!
//! **Certified resolution** ([`Recursor::resolve_certified`],
//! docs/hierarchy.md, "Certified answers and the node's key") is the same walk with CT set on
//! every request (prefix lookups, service handles and the final query),
//! each answer verified ([`certify::verify_response`]) with the public key
//! in the server record the request was sent to: the server of the
//! HS_SITE.PREFIX of the 303 that pointed there, of the HS_SITE of the
//! SUCCESS that named it, or of a root. A root configured without a key
//! has its key fetched with GET_SITE_INFO on first use and kept for the
//! recursor's life (trust on first use, as CNRI's tools bootstrap). An
//! answer that is unsigned or does not verify, or a server record without
//! a usable key, counts as a failed attempt: the next transport or site
//! is tried, and when none gives a verified answer the resolution fails
//! with [`code::ERROR`] saying which signature from which server did not
//! verify. Such an answer is never passed on nor cached. Certified answers
//! and sites are cached apart: an uncertified question may use a certified
//! entry, a certified question never uses an uncertified one, and
//! identical questions share a walk only in the same mode.
//!
//! Around the walk, this crate owns:
//! - where to send: inside a site, the server the HS_SITE hash rule picks
//!   for the handle asked ([`SiteInfo::server_for`]; `0.NA/P` for a prefix
//!   lookup); UDP first, then TCP to the same server; then the next site
//!   (several HS_SITE values are mirrors);
//! - the cache of whole answers and of prefixes' sites (certified entries
//!   apart), bounded by [`RecursorOptions::max_entries`];
//! - the keys of root servers configured without one (fetched once);
//! - coalescing: identical questions in flight at once (same identifier,
//!   ASCII case-insensitively, same mode) share one walk;
//! - one [`Client`] per upstream server address and transport;
//! - bounds on hostile upstreams: referral hops per lookup, service-handle
//!   nesting, and [`MAX_REQUESTS_PER_WALK`] upstream requests per walk.
//!
//! It hands back the whole record: filtering by index and type, and writing
//! the answer to the client, are the caller's (the server's) job. It knows
//! nothing of the local store: deciding whether an identifier is homed here
//! is the caller's job too.

mod cache;

use cache::Cache;
use idnode_client::{Client, Query, Transport};
use idnode_core::{Identifier, Prefix, Ttl, Value};
use idnode_handle::keys::PublicKey;
use idnode_handle::{
    InterfaceProtocol, Response, ResponseBody, ServerInfo, SiteInfo, certify, code,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest a cached answer or a prefix's sites are kept, whatever the TTL
/// says.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Deepest nesting of service handles (HS_SERV naming a handle whose
/// HS_SERV names another...). hdllib allows 20; a few levels is plenty.
pub const MAX_SERVICE_DEPTH: u8 = 4;

/// Most upstream requests (attempts, each transport counted) one walk may
/// send, whatever the referrals and service handles it meets.
pub const MAX_REQUESTS_PER_WALK: usize = 64;

/// Most upstream clients kept; past it the map starts over (a hostile
/// upstream could otherwise name ever new servers).
const MAX_CLIENTS: usize = 4096;

/// The types of a prefix lookup, in hdllib's order.
const PREFIX_LOOKUP_TYPES: &[&str] = &["HS_SITE", "HS_SITE.6", "HS_SERV", "HS_NAMESPACE"];

/// The prefix record whose service handle means "the roots".
const ROOT_SERVICE: &str = "0.NA/0.NA";

/// Which values carry sites, and which name service handles with more.
#[derive(Debug, Clone, Copy)]
struct Kinds {
    sites: &'static [&'static str],
    service: &'static str,
}

/// The sites that home a prefix (its identifiers and prefix records).
const HOMING: Kinds = Kinds {
    sites: &["HS_SITE", "HS_SITE.6"],
    service: "HS_SERV",
};

/// The sites for the prefixes below a prefix (in a 303).
const BELOW: Kinds = Kinds {
    sites: &["HS_SITE.PREFIX", "HS_NA_DELEGATE"],
    service: "HS_SERV.PREFIX",
};

impl Kinds {
    fn is_site(self, kind: &str) -> bool {
        self.sites.iter().any(|k| kind.eq_ignore_ascii_case(k))
    }

    fn is_service(self, kind: &str) -> bool {
        kind.eq_ignore_ascii_case(self.service)
    }

    /// The type list to ask a service handle for.
    fn query_types(self) -> Vec<&'static str> {
        let mut types = self.sites.to_vec();
        types.push(self.service);
        types
    }
}

/// How the recursor walks and caches.
#[derive(Debug, Clone)]
pub struct RecursorOptions {
    /// The sites of the root (top-level) node: where prefix lookups start
    /// when no ancestor's sites are cached, and where `0.*` handles go.
    /// A root server record without a public key gets the key its server
    /// sends to GET_SITE_INFO, on the first certified request to it.
    pub roots: Vec<SiteInfo>,
    /// Time allowed for one upstream attempt (one server, one transport).
    pub timeout: Duration,
    /// Most referrals one lookup follows.
    pub max_depth: u8,
    /// How long a HANDLE_NOT_FOUND answer is cached.
    pub negative_ttl: Duration,
    /// Most cached answers and prefixes' sites, together.
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
    /// The query endpoints of the root servers.
    root_endpoints: HashSet<SocketAddr>,
    /// Keys of root servers configured without one, as their servers sent
    /// them to GET_SITE_INFO (trust on first use), by query endpoint.
    root_keys: Mutex<HashMap<SocketAddr, Arc<PublicKey>>>,
    cache: Mutex<Cache>,
    /// Keyed by address and protocol (`Transport` is not `Hash`).
    clients: Mutex<HashMap<(SocketAddr, InterfaceProtocol), Client>>,
    /// Walks in progress, by normalized identifier and mode (certified or
    /// not); the walk's task sends its answer, then removes its entry.
    in_flight: Mutex<HashMap<WalkKey, watch::Receiver<Option<Answer>>>>,
}

/// What identical questions share a walk by: the normalized identifier and
/// whether the walk is certified.
type WalkKey = (String, bool);

/// Why a step of the walk gave no answer to go on with.
#[derive(Debug)]
struct Failure {
    code: u32,
    message: String,
    /// Cache it for the negative TTL (the identifier does not exist).
    negative: bool,
}

impl Failure {
    fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            negative: false,
        }
    }
}

/// The state of one walk, shared by its lookups: what bounds it.
struct Walk {
    /// The identifier the walk resolves, for messages.
    handle: String,
    /// Every request carries CT and every answer is verified.
    certified: bool,
    /// Upstream requests sent so far.
    requests: usize,
    /// Service handles resolved (or being resolved) in this walk, by key.
    services: HashSet<String>,
    /// Service handles being resolved inside one another right now.
    nesting: u8,
}

/// Why a server's answers cannot be verified.
enum KeyProblem {
    /// No usable key: its answers are refused (why, naming the server).
    None(String),
    /// The walk's request bound was reached while fetching a root's key.
    Bound(Failure),
}

/// A response, and the server that sent it.
struct Asked {
    from: SocketAddr,
    response: Response,
}

/// Sites found in values, the smallest TTL of the values they came from
/// (`None`: no value limits it), and why some values gave none.
#[derive(Debug, Default)]
struct Found {
    sites: Vec<SiteInfo>,
    ttl: Option<Duration>,
    notes: Vec<String>,
}

impl Found {
    fn limit(&mut self, ttl: Option<Duration>) {
        self.ttl = match (self.ttl, ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The notes as a suffix for a message (empty when there are none).
    fn why(&self) -> String {
        if self.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.notes.join("; "))
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Recursor {
    pub fn new(options: RecursorOptions) -> Self {
        let roots = Arc::new(options.roots.clone());
        let root_endpoints = all_endpoints(&roots);
        let cache = Cache::new(options.max_entries);
        Self {
            inner: Arc::new(Inner {
                options,
                roots,
                root_endpoints,
                root_keys: Mutex::new(HashMap::new()),
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
        self.resolve_in(handle, false).await
    }

    /// As [`resolve`](Self::resolve), certified: every upstream request
    /// carries CT and every answer is verified with the key of the server
    /// it was sent to (module documentation). Uses only certified cache
    /// entries; its answers may serve later uncertified questions.
    pub async fn resolve_certified(&self, handle: &str) -> Answer {
        self.resolve_in(handle, true).await
    }

    /// [`resolve`](Self::resolve) in either mode.
    async fn resolve_in(&self, handle: &str, certified: bool) -> Answer {
        let identifier = match Identifier::parse(handle) {
            Ok(identifier) => identifier,
            Err(e) => {
                return Answer::failed(
                    code::INVALID_HANDLE,
                    format!("`{handle}` is not a valid identifier: {e}"),
                );
            }
        };
        let key = (identifier.key().to_owned(), certified);
        if let Some(answer) = lock(&self.inner.cache).answer(&key.0, certified, Instant::now()) {
            return answer;
        }
        let mut answer = {
            let mut in_flight = lock(&self.inner.in_flight);
            match in_flight.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    // A walk that ended between the first look and now
                    // cached its answer before leaving `in_flight`.
                    if let Some(answer) =
                        lock(&self.inner.cache).answer(&key.0, certified, Instant::now())
                    {
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
                        let answer = inner.walk(&identifier, certified).await;
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
    key: &'a WalkKey,
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

/// Whether identifiers under `prefix` go straight to the roots: hdllib
/// sends every `0.<x>/...` and `0/...` handle to its global sites.
fn is_global(prefix: &Prefix) -> bool {
    prefix.segments().next() == Some("0")
}

/// Whether a 303 to a request for `handle` is followed: only for prefix
/// records (`0.NA/...`), as hdllib does.
fn follows_referrals(handle: &str) -> bool {
    handle
        .get(..5)
        .is_some_and(|head| head.eq_ignore_ascii_case("0.NA/"))
}

impl Inner {
    /// One walk: the sites homing the identifier's prefix, then the
    /// identifier at those sites; caches the answer.
    async fn walk(&self, identifier: &Identifier, certified: bool) -> Answer {
        let mut walk = Walk {
            handle: identifier.as_str().to_owned(),
            certified,
            requests: 0,
            services: HashSet::new(),
            nesting: 0,
        };
        let (answer, ttl) = match self.resolve_handle(identifier, &[], &mut walk).await {
            Ok(asked) => self.final_answer(identifier, asked),
            Err(failure) => {
                let ttl = failure.negative.then_some(self.options.negative_ttl);
                (Answer::failed(failure.code, failure.message), ttl)
            }
        };
        if let Some(ttl) = ttl {
            let now = Instant::now();
            if let Some(expires) = now.checked_add(ttl.min(MAX_CACHE_TTL)) {
                lock(&self.cache).put_answer(
                    identifier.key().to_owned(),
                    certified,
                    answer.clone(),
                    expires,
                    now,
                );
            }
        }
        answer
    }

    /// What the identifier's own answer means, and how long it may be
    /// cached.
    fn final_answer(&self, identifier: &Identifier, asked: Asked) -> (Answer, Option<Duration>) {
        let Asked { from, response } = asked;
        let handle = identifier.as_str();
        let prefix = identifier.prefix_parsed();
        match (response.header.response_code, response.body) {
            (code::SUCCESS, ResponseBody::Resolution { handle, values }) => {
                let ttl = min_ttl(&values, unix_now());
                (Answer::Found { handle, values }, ttl)
            }
            (code::HANDLE_NOT_FOUND, body) => (
                Answer::failed(code::HANDLE_NOT_FOUND, upstream_message(from, &body)),
                Some(self.options.negative_ttl),
            ),
            (c, ResponseBody::Referral { handle: named, .. }) if code::is_referral(c) => {
                lock(&self.cache).remove_sites(prefix.key());
                let named = if named.is_empty() {
                    "an empty handle".to_owned()
                } else {
                    format!("`{named}`")
                };
                let message = format!(
                    "{from}, a site of prefix {prefix}, answered {handle} with a {c} referral \
                     (to {named}): referrals are followed for prefix records (0.NA/...) only, \
                     a node homing {prefix} should answer {handle} itself"
                );
                (Answer::failed(code::ERROR, message), None)
            }
            (code::SERVER_NOT_RESP, body) => {
                // The sites no longer home the prefix: look them up anew.
                lock(&self.cache).remove_sites(prefix.key());
                let message = upstream_message(from, &body);
                (Answer::failed(code::SERVER_NOT_RESP, message), None)
            }
            (c, body) => (Answer::failed(c, upstream_message(from, &body)), None),
        }
    }

    /// Resolves `identifier` for `types` (empty: all) as hdllib does: a
    /// `0.*` handle at the roots (following 303s for `0.NA/...`), any
    /// other at the sites homing its prefix. The response is the caller's
    /// to read, whatever its code.
    async fn resolve_handle(
        &self,
        identifier: &Identifier,
        types: &[&str],
        walk: &mut Walk,
    ) -> Result<Asked, Failure> {
        let handle = identifier.as_str();
        let prefix = identifier.prefix_parsed();
        if is_global(&prefix) {
            let roots = self.roots.clone();
            let follow = follows_referrals(handle);
            return self
                .chase(&roots, "the root", handle, types, follow, walk)
                .await;
        }
        let sites = self.homing_sites(&prefix, walk).await?;
        let at = format!("the sites of prefix {prefix}");
        self.chase(&sites, &at, handle, types, false, walk).await
    }

    /// The sites homing `prefix`: cached, or found by a prefix lookup
    /// (then cached).
    async fn homing_sites(
        &self,
        prefix: &Prefix,
        walk: &mut Walk,
    ) -> Result<Arc<Vec<SiteInfo>>, Failure> {
        let now = Instant::now();
        if let Some(sites) = lock(&self.cache).sites(prefix.key(), walk.certified, now) {
            return Ok(sites);
        }
        let (start, ancestor) = self.start(prefix, walk.certified);
        let mut found = match &ancestor {
            Some(at) => {
                let at = format!("the sites of prefix {at}");
                self.prefix_lookup(&start, &at, prefix, walk).await
            }
            None => self.prefix_lookup(&start, "the root", prefix, walk).await,
        };
        // An ancestor's node that says 301 (or fails) may just not hold the
        // prefix records below it (a CNRI server without the `0.NA/0.NA/P`
        // marker): hdllib always starts at the roots, so try them too. Its
        // 100 is authoritative and stands.
        if let (Err(e), Some(at)) = (&found, &ancestor)
            && !e.negative
            && !same_servers(&start, &self.roots)
        {
            tracing::debug!(%prefix, ancestor = %at, error = %e.message,
                "prefix lookup at an ancestor's sites failed; asking the roots");
            let roots = self.roots.clone();
            found = self.prefix_lookup(&roots, "the root", prefix, walk).await;
        }
        let found = found?;
        let sites = Arc::new(found.sites);
        if let Some(ttl) = found.ttl {
            let now = Instant::now();
            if let Some(expires) = now.checked_add(ttl.min(MAX_CACHE_TTL)) {
                lock(&self.cache).put_sites(
                    prefix.key().to_owned(),
                    walk.certified,
                    sites.clone(),
                    expires,
                    now,
                );
            }
        }
        Ok(sites)
    }

    /// The homing sites of the longest strict ancestor of `prefix` with
    /// cached sites (that a walk in this mode may use), and that ancestor;
    /// else the roots.
    fn start(&self, prefix: &Prefix, certified: bool) -> (Arc<Vec<SiteInfo>>, Option<Prefix>) {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        let mut candidate = prefix.parent();
        while let Some(p) = candidate {
            if let Some(sites) = cache.sites(p.key(), certified, now) {
                return (sites, Some(p));
            }
            candidate = p.parent();
        }
        (self.roots.clone(), None)
    }

    /// Looks `0.NA/<prefix>` up starting at `start` (described by `at`),
    /// following 303s: the sites its HS_SITE, HS_SITE.6 and HS_SERV values
    /// give.
    async fn prefix_lookup(
        &self,
        start: &[SiteInfo],
        at: &str,
        prefix: &Prefix,
        walk: &mut Walk,
    ) -> Result<Found, Failure> {
        let record = format!("0.NA/{}", prefix.key());
        let unable = |e: Failure| Failure {
            message: format!("unable to find a site for prefix {prefix}: {}", e.message),
            ..e
        };
        let Asked { from, response } = self
            .chase(start, at, &record, PREFIX_LOOKUP_TYPES, true, walk)
            .await
            .map_err(unable)?;
        let (failure, negative) = match (response.header.response_code, response.body) {
            (code::SUCCESS, ResponseBody::Resolution { values, .. }) => {
                let found = self.sites_from(&values, HOMING, walk).await;
                if !found.sites.is_empty() {
                    return Ok(found);
                }
                let message = format!(
                    "{from} answered {record} without a usable HS_SITE, HS_SITE.6 or HS_SERV value{}",
                    found.why()
                );
                (Failure::new(code::SERVER_NOT_RESP, message), false)
            }
            (code::HANDLE_NOT_FOUND, body) => (
                Failure::new(code::HANDLE_NOT_FOUND, upstream_message(from, &body)),
                true,
            ),
            (c @ (code::SUCCESS | code::VALUES_NOT_FOUND | code::SERVER_NOT_RESP), body) => {
                let message = format!("{record} (code {c}) {}", upstream_message(from, &body));
                (Failure::new(code::SERVER_NOT_RESP, message), false)
            }
            (c, body) => (Failure::new(c, upstream_message(from, &body)), false),
        };
        Err(Failure {
            negative,
            ..unable(failure)
        })
    }

    /// Asks `sites` for `handle` and, when `follow` says so, follows the
    /// referrals it gets; the first other response is returned.
    async fn chase(
        &self,
        sites: &[SiteInfo],
        at: &str,
        handle: &str,
        types: &[&str],
        follow: bool,
        walk: &mut Walk,
    ) -> Result<Asked, Failure> {
        let mut asked: HashSet<SocketAddr> = HashSet::new();
        let mut sites = sites.to_vec();
        let mut at = at.to_owned();
        let mut hops: u8 = 0;
        loop {
            let asked_now = self
                .ask_sites(&sites, &at, handle, types, &mut asked, walk)
                .await?;
            let c = asked_now.response.header.response_code;
            if !follow || !code::is_referral(c) {
                return Ok(asked_now);
            }
            let Asked { from, response } = asked_now;
            let ResponseBody::Referral {
                handle: named,
                values,
            } = response.body
            else {
                return Ok(Asked { from, response });
            };
            if hops >= self.options.max_depth {
                return Err(Failure::new(
                    code::RECURSION_COUNT_TOO_HIGH,
                    format!(
                        "resolving {handle} took more than {} referrals (the last from {from})",
                        self.options.max_depth
                    ),
                ));
            }
            hops += 1;
            let next = self
                .referral_sites(from, handle, &named, &values, walk)
                .await?;
            let (fresh, seen): (Vec<SiteInfo>, Vec<SiteInfo>) = next
                .into_iter()
                .partition(|site| !already_asked(site, handle, &asked));
            if fresh.is_empty() {
                let servers: Vec<String> = seen
                    .iter()
                    .filter_map(|site| site.server_for(handle))
                    .map(|server| server.urls())
                    .collect();
                return Err(Failure::new(
                    code::RECURSION_COUNT_TOO_HIGH,
                    format!(
                        "referral loop: {from} referred {handle} to servers already asked for it \
                         ({}) after {hops} referrals",
                        servers.join("; ")
                    ),
                ));
            }
            tracing::debug!(%handle, %from, sites = fresh.len(), "following a prefix referral");
            at = format!("the sites {from} referred to");
            sites = fresh;
        }
    }

    /// The sites a referral from `from` points to: its prefix sites
    /// (HS_SITE.PREFIX, HS_NA_DELEGATE, HS_SERV.PREFIX), else its homing
    /// sites (HS_SITE, HS_SITE.6, HS_SERV), else the prefix sites of the
    /// handle it names.
    async fn referral_sites(
        &self,
        from: SocketAddr,
        handle: &str,
        named: &str,
        values: &[Value],
        walk: &mut Walk,
    ) -> Result<Vec<SiteInfo>, Failure> {
        let mut below = self.sites_from(values, BELOW, walk).await;
        if !below.sites.is_empty() {
            return Ok(below.sites);
        }
        let homing = self.sites_from(values, HOMING, walk).await;
        if !homing.sites.is_empty() {
            return Ok(homing.sites);
        }
        below.notes.extend(homing.notes);
        if !named.is_empty() {
            match self.service_sites(named, BELOW, walk).await {
                Ok(found) if !found.sites.is_empty() => return Ok(found.sites),
                Ok(found) => below.notes.extend(found.notes),
                Err(e) => below.notes.push(e),
            }
        }
        Err(Failure::new(
            code::ERROR,
            format!(
                "{from} referred {handle} without a usable HS_SITE.PREFIX, HS_NA_DELEGATE, \
                 HS_SERV.PREFIX or HS_SITE value{}",
                below.why()
            ),
        ))
    }

    /// The sites carried by `values`: those of the `kinds.sites` types
    /// (undecodable ones skipped), and those of the service handles the
    /// `kinds.service` values name.
    async fn sites_from(&self, values: &[Value], kinds: Kinds, walk: &mut Walk) -> Found {
        let now = unix_now();
        let mut found = Found::default();
        for value in values.iter().filter(|v| kinds.is_site(&v.kind)) {
            match SiteInfo::decode(&value.data) {
                Ok(site) => {
                    found.sites.push(site);
                    found.limit(Some(value_ttl(value.ttl, now)));
                }
                Err(e) => {
                    tracing::debug!(index = value.index, error = %e, "skipping an undecodable site value");
                    found
                        .notes
                        .push(format!("{} at index {}: {e}", value.kind, value.index));
                }
            }
        }
        for value in values.iter().filter(|v| kinds.is_service(&v.kind)) {
            let Ok(service) = std::str::from_utf8(&value.data) else {
                found.notes.push(format!(
                    "{} at index {} is not UTF-8",
                    value.kind, value.index
                ));
                continue;
            };
            match self.service_sites(service.trim(), kinds, walk).await {
                Ok(more) => {
                    if !more.sites.is_empty() {
                        found.limit(Some(value_ttl(value.ttl, now)));
                        found.limit(more.ttl);
                        found.sites.extend(more.sites);
                    }
                    found.notes.extend(more.notes);
                }
                Err(e) => {
                    tracing::debug!(%service, error = %e, "a service handle gave no site");
                    found.notes.push(e);
                }
            }
        }
        found
    }

    /// The sites of service handle `service`: resolved as any handle for
    /// `kinds`, its site values taken, its service values followed one
    /// level deeper (at most [`MAX_SERVICE_DEPTH`] levels in the whole
    /// walk, prefix lookups of service handles included). A handle seen
    /// before in this walk gives none (a loop); `0.NA/0.NA` gives the roots.
    fn service_sites<'a>(
        &'a self,
        service: &'a str,
        kinds: Kinds,
        walk: &'a mut Walk,
    ) -> BoxFuture<'a, Result<Found, String>> {
        Box::pin(async move {
            if walk.nesting >= MAX_SERVICE_DEPTH {
                return Err(format!(
                    "service handle {service} is nested more than {MAX_SERVICE_DEPTH} deep"
                ));
            }
            walk.nesting += 1;
            let found = self.one_service(service, kinds, walk).await;
            walk.nesting -= 1;
            found
        })
    }

    /// [`Self::service_sites`] inside its nesting bound.
    async fn one_service(
        &self,
        service: &str,
        kinds: Kinds,
        walk: &mut Walk,
    ) -> Result<Found, String> {
        let identifier = Identifier::parse(service)
            .map_err(|e| format!("service handle `{service}` is not valid: {e}"))?;
        if identifier.key() == ROOT_SERVICE {
            return Ok(Found {
                sites: self.roots.to_vec(),
                ..Found::default()
            });
        }
        if !walk.services.insert(identifier.key().to_owned()) {
            tracing::debug!(%service, "service handle seen before in this walk: skipped");
            return Ok(Found::default());
        }
        let types = kinds.query_types();
        let Asked { from, response } = self
            .resolve_handle(&identifier, &types, walk)
            .await
            .map_err(|e| format!("service handle {service}: {}", e.message))?;
        match (response.header.response_code, response.body) {
            (code::SUCCESS, ResponseBody::Resolution { values, .. }) => {
                Ok(self.sites_from(&values, kinds, walk).await)
            }
            (_, body) => Err(format!(
                "service handle {service}: {}",
                upstream_message(from, &body)
            )),
        }
    }

    /// Asks the sites in turn (the hashed server of each, UDP then TCP)
    /// until one answers; in a certified walk, until one answers with a
    /// signature that verifies with that server's key.
    async fn ask_sites(
        &self,
        sites: &[SiteInfo],
        at: &str,
        handle: &str,
        types: &[&str],
        asked: &mut HashSet<SocketAddr>,
        walk: &mut Walk,
    ) -> Result<Asked, Failure> {
        if sites.is_empty() {
            return Err(Failure::new(
                code::SERVER_NOT_RESP,
                format!("no site of {at} is known to ask for {handle}"),
            ));
        }
        let query = Query {
            identifier: handle.to_owned(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            ..Query::default()
        };
        let mut tried = Vec::new();
        // Some answer (or server record) failed the certified checks.
        let mut unverified = false;
        for site in sites {
            let Some(server) = site.server_for(handle) else {
                continue;
            };
            let key = if walk.certified {
                match self.server_key(server, handle, walk).await {
                    Ok(key) => Some(key),
                    Err(KeyProblem::Bound(failure)) => return Err(failure),
                    Err(KeyProblem::None(why)) => {
                        tracing::debug!(%handle, server = %server.urls(), %why, "no key to verify with");
                        tried.push(why);
                        unverified = true;
                        continue;
                    }
                }
            } else {
                None
            };
            for (protocol, transport) in [
                (InterfaceProtocol::Udp, Transport::Udp),
                (InterfaceProtocol::Tcp, Transport::Tcp),
            ] {
                let Some(addr) = server.query_endpoint(protocol) else {
                    continue;
                };
                count_request(walk, handle)?;
                asked.insert(addr);
                let mut client = self.client(addr, protocol, transport);
                client.certified = walk.certified;
                match client.resolve_raw(&query).await {
                    // A server that will not send a large answer over UDP
                    // to an address it has not seen over TCP says so with
                    // 3 SERVER_TOO_BUSY: ask it over TCP.
                    Ok((response, _))
                        if transport == Transport::Udp
                            && response.header.response_code == code::SERVER_TOO_BUSY =>
                    {
                        tracing::debug!(%handle, %addr, "busy over UDP: asking over TCP");
                        tried.push(format!("{}://{addr} (busy over UDP)", protocol.scheme()));
                    }
                    Ok((response, raw)) => {
                        if let Some(key) = &key
                            && let Err(e) = certify::verify_response(&raw, key)
                        {
                            tracing::warn!(%handle, %addr, error = %e,
                                "certified answer refused: its signature does not verify");
                            tried.push(format!(
                                "{}://{addr} (the signature of the answer from {addr} does not \
                                 verify with the key of its server record: {e})",
                                protocol.scheme()
                            ));
                            unverified = true;
                            continue;
                        }
                        return Ok(Asked {
                            from: addr,
                            response,
                        });
                    }
                    Err(e) => {
                        tracing::debug!(%handle, %addr, error = %e, "upstream attempt failed");
                        tried.push(format!("{}://{addr} ({e})", protocol.scheme()));
                    }
                }
            }
        }
        if unverified {
            return Err(Failure::new(
                code::ERROR,
                format!(
                    "no server of {at} gave a verified certified answer to {handle}: {}",
                    tried.join("; ")
                ),
            ));
        }
        let message = if tried.is_empty() {
            format!("no site of {at} lists a server with a UDP or TCP query interface for {handle}")
        } else {
            format!(
                "no server of {at} answered {handle} within {:?}: {}",
                self.options.timeout,
                tried.join("; ")
            )
        };
        Err(Failure::new(code::SERVER_NOT_RESP, message))
    }

    /// The key that answers from `server` (asked for `handle`) are verified
    /// with: the HS_PUBKEY of its record; for a root server configured
    /// without one, the key its server sent to GET_SITE_INFO when first
    /// asked (then kept).
    async fn server_key(
        &self,
        server: &ServerInfo,
        handle: &str,
        walk: &mut Walk,
    ) -> Result<Arc<PublicKey>, KeyProblem> {
        if !server.public_key.is_empty() {
            return PublicKey::decode(&server.public_key)
                .map(Arc::new)
                .map_err(|e| {
                    KeyProblem::None(format!(
                        "{} (the public key in its server record does not decode, so no \
                         signature from it can verify: {e})",
                        server.urls()
                    ))
                });
        }
        let endpoints = server_endpoints(server);
        if !endpoints.iter().any(|e| self.root_endpoints.contains(e)) {
            return Err(KeyProblem::None(format!(
                "{} (its server record has no public key, so no signature from it can verify)",
                server.urls()
            )));
        }
        let known = {
            let keys = lock(&self.root_keys);
            endpoints.iter().find_map(|e| keys.get(e).cloned())
        };
        if let Some(key) = known {
            return Ok(key);
        }
        let key = self.fetch_root_key(server, handle, walk).await?;
        let mut keys = lock(&self.root_keys);
        // Another walk may have fetched it meanwhile: the first one stays.
        let key = endpoints
            .iter()
            .find_map(|e| keys.get(e).cloned())
            .unwrap_or(key);
        for endpoint in endpoints {
            keys.entry(endpoint).or_insert_with(|| key.clone());
        }
        Ok(key)
    }

    /// Asks root server `server` for its site (GET_SITE_INFO, UDP then
    /// TCP) and takes the key of its own record there: the record with the
    /// endpoint asked, or the only record of the site.
    async fn fetch_root_key(
        &self,
        server: &ServerInfo,
        handle: &str,
        walk: &mut Walk,
    ) -> Result<Arc<PublicKey>, KeyProblem> {
        let mut tried = Vec::new();
        for (protocol, transport) in [
            (InterfaceProtocol::Udp, Transport::Udp),
            (InterfaceProtocol::Tcp, Transport::Tcp),
        ] {
            let Some(addr) = server.query_endpoint(protocol) else {
                continue;
            };
            count_request(walk, handle).map_err(KeyProblem::Bound)?;
            let scheme = protocol.scheme();
            let response = match self.client(addr, protocol, transport).site_info().await {
                Ok(response) => response,
                Err(e) => {
                    tried.push(format!("{scheme}://{addr} ({e})"));
                    continue;
                }
            };
            match root_key(addr, &response) {
                Ok(key) => {
                    tracing::info!(%addr, "trusting the key a root server sent on first use");
                    return Ok(Arc::new(key));
                }
                Err(why) => tried.push(format!("{scheme}://{addr} ({why})")),
            }
        }
        Err(KeyProblem::None(format!(
            "{} (a root server configured without a public key, whose key could not be \
             fetched with GET_SITE_INFO: {})",
            server.urls(),
            tried.join("; ")
        )))
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

/// The query endpoints (UDP, TCP) of the server of `site` that serves
/// `handle`.
fn endpoints(site: &SiteInfo, handle: &str) -> Vec<SocketAddr> {
    site.server_for(handle)
        .map(|server| {
            [InterfaceProtocol::Udp, InterfaceProtocol::Tcp]
                .into_iter()
                .filter_map(|p| server.query_endpoint(p))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the server of `site` for `handle` was asked already.
fn already_asked(site: &SiteInfo, handle: &str, asked: &HashSet<SocketAddr>) -> bool {
    endpoints(site, handle).iter().any(|e| asked.contains(e))
}

/// The query endpoints (UDP, TCP) of `server`.
fn server_endpoints(server: &ServerInfo) -> Vec<SocketAddr> {
    [InterfaceProtocol::Udp, InterfaceProtocol::Tcp]
        .into_iter()
        .filter_map(|p| server.query_endpoint(p))
        .collect()
}

/// The query endpoints of every server of `sites`.
fn all_endpoints(sites: &[SiteInfo]) -> HashSet<SocketAddr> {
    sites
        .iter()
        .flat_map(|site| &site.servers)
        .flat_map(server_endpoints)
        .collect()
}

/// Whether two site lists name the same servers (by query endpoints).
fn same_servers(a: &[SiteInfo], b: &[SiteInfo]) -> bool {
    all_endpoints(a) == all_endpoints(b)
}

/// Counts one more upstream request of `walk` (about `handle`), or fails
/// when the walk has sent [`MAX_REQUESTS_PER_WALK`] already.
fn count_request(walk: &mut Walk, handle: &str) -> Result<(), Failure> {
    if walk.requests >= MAX_REQUESTS_PER_WALK {
        return Err(Failure::new(
            code::RECURSION_COUNT_TOO_HIGH,
            format!(
                "resolving {} needed more than {MAX_REQUESTS_PER_WALK} upstream requests (the last for {handle})",
                walk.handle
            ),
        ));
    }
    walk.requests += 1;
    Ok(())
}

/// The key of the server at `addr` in its answer to GET_SITE_INFO: of the
/// record listing `addr` as a query endpoint, or of the only record.
fn root_key(addr: SocketAddr, response: &Response) -> Result<PublicKey, String> {
    let c = response.header.response_code;
    let site = match (&response.body, c) {
        (ResponseBody::Other(data), code::SUCCESS) => {
            SiteInfo::decode(data).map_err(|e| format!("its site does not decode: {e}"))?
        }
        (body, _) => {
            return Err(format!(
                "GET_SITE_INFO answered with code {c}: {}",
                upstream_message(addr, body)
            ));
        }
    };
    let record = site
        .servers
        .iter()
        .find(|s| server_endpoints(s).contains(&addr))
        .or(match site.servers.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| format!("its site has no server record for {addr}"))?;
    if record.public_key.is_empty() {
        return Err("its server record has no public key".to_owned());
    }
    PublicKey::decode(&record.public_key)
        .map_err(|e| format!("the public key of its server record does not decode: {e}"))
}

fn upstream_message(from: SocketAddr, body: &ResponseBody) -> String {
    match body {
        ResponseBody::Error { message } if !message.is_empty() => format!("{from}: {message}"),
        ResponseBody::Error { .. } => format!("{from}: (no message)"),
        _ => format!("{from}: unexpected response body"),
    }
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
    use idnode_handle::{HashOption, ServerInfo};

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

    fn site(port: u16) -> SiteInfo {
        SiteInfo::single(
            vec![ServerInfo::from_urls(1, &format!("udp://127.0.0.1:{port}")).unwrap()],
            HashOption::Whole,
        )
    }

    fn walk() -> Walk {
        Walk {
            handle: "88/x".into(),
            certified: false,
            requests: 0,
            services: HashSet::new(),
            nesting: 0,
        }
    }

    #[tokio::test]
    async fn only_the_asked_kinds_make_sites() {
        let r = Recursor::new(RecursorOptions::default());
        let (homing, below) = (site(2641), site(2642));
        let mut good = Value::new(1, "hs_site", homing.encode());
        good.ttl = Ttl::Relative(50);
        let mut six = Value::new(2, "HS_SITE.6", homing.encode());
        six.ttl = Ttl::Relative(70);
        let mut prefix = Value::new(3, "HS_SITE.PREFIX", below.encode());
        prefix.ttl = Ttl::Relative(10);
        let mut other = Value::new(4, "URL", "x");
        other.ttl = Ttl::Relative(1);
        let broken = Value::new(5, "HS_SITE", vec![0u8; 3]);
        let values = [good, six, prefix, other, broken];

        let found = r.inner.sites_from(&values, HOMING, &mut walk()).await;
        assert_eq!(found.sites, vec![homing.clone(), homing]);
        assert_eq!(found.ttl, Some(Duration::from_secs(50)));
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(found.notes[0].contains("index 5"), "{:?}", found.notes);

        let found = r.inner.sites_from(&values, BELOW, &mut walk()).await;
        assert_eq!(found.sites, vec![below]);
        assert_eq!(found.ttl, Some(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn service_handles_name_the_roots_and_skip_loops() {
        let roots = vec![site(2641)];
        let r = Recursor::new(RecursorOptions {
            roots: roots.clone(),
            ..RecursorOptions::default()
        });
        let mut w = walk();
        // `0.NA/0.NA` means the roots, without asking anyone.
        let found = r.inner.service_sites("0.NA/0.NA", HOMING, &mut w).await;
        assert_eq!(found.unwrap().sites, roots);
        assert_eq!(w.requests, 0);
        // A handle seen before in the walk gives nothing (a loop).
        w.services.insert("88/SVC".into());
        let found = r.inner.service_sites("88/svc", HOMING, &mut w).await;
        assert!(found.unwrap().sites.is_empty());
        assert_eq!(w.requests, 0);
        // Too deep, or not a handle: why.
        w.nesting = MAX_SERVICE_DEPTH;
        let deep = r.inner.service_sites("88/deep", HOMING, &mut w).await;
        assert!(deep.unwrap_err().contains("nested more than"));
        assert_eq!(w.nesting, MAX_SERVICE_DEPTH, "left as it was");
        w.nesting = 0;
        let bad = r.inner.service_sites("no-slash", HOMING, &mut w).await;
        assert!(bad.unwrap_err().contains("not valid"));
    }

    #[test]
    fn which_handles_go_to_the_roots_and_follow_referrals() {
        let global = |h: &str| is_global(&Identifier::parse(h).unwrap().prefix_parsed());
        assert!(global("0.NA/88.100"));
        assert!(global("0/x"));
        assert!(global("0.0/0.0"));
        assert!(!global("88/x"));
        assert!(!global("10.0/x"));
        assert!(follows_referrals("0.NA/88.100"));
        assert!(follows_referrals("0.na/88"));
        assert!(!follows_referrals("0.0/0.0"));
        assert!(!follows_referrals("88.100/x"));
        assert!(!follows_referrals("0.N"));
    }

    #[test]
    fn loops_are_told_by_server_endpoints() {
        let (a, b) = (site(2641), site(2642));
        let asked: HashSet<SocketAddr> = endpoints(&a, "0.NA/88").into_iter().collect();
        assert!(already_asked(&a, "0.NA/88", &asked));
        assert!(!already_asked(&b, "0.NA/88", &asked));
        let mut renumbered = a.clone();
        renumbered.serial = 9;
        assert!(same_servers(std::slice::from_ref(&a), &[renumbered]));
        assert!(!same_servers(&[a], &[b]));
    }
}
