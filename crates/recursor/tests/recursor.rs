//! The recursor against small fake Handle servers on 127.0.0.1 that answer
//! as idnode's authoritative side does (and as CNRI's client expects,
//! docs/hierarchy.md, "How a node answers"): a root homing `88` that holds the prefix
//! records it delegated and refers the prefix records below them (303,
//! empty handle, HS_SITE.PREFIX), a middle node homing `88.100` that holds
//! `0.NA/88.100.N`, and a leaf homing those prefixes. Identifiers under a
//! prefix a fake does not home get 301. Each fake counts and logs the
//! requests it receives, so the tests can tell a cached or coalesced answer
//! from an upstream walk and see what was asked.
//!
//! Fakes may sign the answers to requests with CT (certified) with a key
//! from the hierarchy test vectors, publish a key in their server record
//! (the same or another), and answer GET_SITE_INFO with their site.
//!
//! Timing: upstream timeouts are short (300 ms) so failure paths stay
//! quick; the bounds asserted on elapsed time are loose (seconds) so a
//! loaded machine does not fail them. Only the TTL-expiry test sleeps.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_core::wire::encode_value;
use idnode_core::{Ttl, Value};
use idnode_handle::certify::{hash_for, sign_response};
use idnode_handle::keys::ServerKey;
use idnode_handle::{
    HashOption, ResolutionQuery, ResponseBuilder, ResponseContext, ServerInfo, SiteInfo, code,
    decode_request, encode_error_response, flags, for_each_datagram, frame_len, opcode,
    server_index,
};
use idnode_recursor::{Answer, Recursor, RecursorOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const GUARD: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(300);
const PATIENT: Duration = Duration::from_secs(5);

/// The types of a prefix lookup, as hdllib sends them.
const LOOKUP_TYPES: [&str; 4] = ["HS_SITE", "HS_SITE.6", "HS_SERV", "HS_NAMESPACE"];

/// One request a fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    handle: String,
    types: Vec<String>,
}

impl Req {
    /// The handle, upper-cased (as servers compare handles).
    fn key(&self) -> String {
        self.handle.to_ascii_uppercase()
    }
}

/// What a fake server answers to a RESOLUTION.
#[derive(Debug, Clone)]
enum Reply {
    /// SUCCESS with these values (filtered by the request's type list).
    Values(Vec<Value>),
    /// 303 PREFIX_REFERRAL naming this handle, with these values.
    Refer(String, Vec<Value>),
    Error(u32, String),
}

/// Answers a request; gets the fake's own site.
type Handler = Arc<dyn Fn(&Req, &SiteInfo) -> Reply + Send + Sync>;

/// The test-only keys of the hierarchy vectors.
fn key(name: &str) -> Arc<ServerKey> {
    static KEYS: OnceLock<[Arc<ServerKey>; 3]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let load = |pem: &str| Arc::new(ServerKey::from_pkcs8_pem(pem).unwrap());
        [
            load(include_str!(
                "../../handle/tests/vectors/hierarchy/test-only-top-rsa.pem"
            )),
            load(include_str!(
                "../../handle/tests/vectors/hierarchy/test-only-secondary-dsa.pem"
            )),
            load(include_str!(
                "../../handle/tests/vectors/hierarchy/test-only-enterprise-rsa.pem"
            )),
        ]
    });
    match name {
        "top" => keys[0].clone(),
        "secondary" => keys[1].clone(),
        "enterprise" => keys[2].clone(),
        other => panic!("no key {other}"),
    }
}

/// How a fake treats certified requests (CT set).
#[derive(Clone, Default)]
struct Signing {
    /// The key that signs its answers to CT requests (none: unsigned).
    signs_with: Option<Arc<ServerKey>>,
    /// The HS_PUBKEY data in its server record (empty: none).
    publishes: Vec<u8>,
    /// After signing, changes `example.com` to `exampl3.com` in the answer.
    tamper: bool,
}

impl Signing {
    /// Signs with `name` and publishes its public half.
    fn honest(name: &str) -> Self {
        let key = key(name);
        Self {
            publishes: key.public_key().encode(),
            signs_with: Some(key),
            tamper: false,
        }
    }
}

struct Fake {
    udp: SocketAddr,
    tcp: SocketAddr,
    /// Published in its server record.
    public_key: Vec<u8>,
    udp_hits: Arc<AtomicUsize>,
    tcp_hits: Arc<AtomicUsize>,
    /// Op flags of the last request received.
    last_flags: Arc<AtomicU32>,
    /// Every request decoded, in order.
    seen: Arc<Mutex<Vec<Req>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Fake {
    fn hits(&self) -> usize {
        self.udp_hits.load(Ordering::SeqCst) + self.tcp_hits.load(Ordering::SeqCst)
    }

    /// Its server record, with the key it publishes.
    fn server(&self, id: u32) -> ServerInfo {
        let mut server = server_at(id, self.udp, self.tcp);
        server.public_key = self.public_key.clone();
        server
    }

    fn site(&self) -> SiteInfo {
        SiteInfo::single(vec![self.server(1)], HashOption::Whole)
    }

    fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }

    /// The handles received, upper-cased, in order.
    fn handles(&self) -> Vec<String> {
        self.seen().iter().map(Req::key).collect()
    }
}

fn server_at(id: u32, udp: SocketAddr, tcp: SocketAddr) -> ServerInfo {
    ServerInfo::from_urls(id, &format!("udp://{udp},tcp://{tcp}")).unwrap()
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// What a fake shares between its listeners.
struct Shared {
    handler: Handler,
    me: SiteInfo,
    signing: Signing,
    last_flags: Arc<AtomicU32>,
    seen: Arc<Mutex<Vec<Req>>>,
}

/// The response to one request, signed when it set CT and the fake signs,
/// or `None` for bytes that are not a RESOLUTION or GET_SITE_INFO request.
fn respond(shared: &Shared, message: &[u8]) -> Option<Vec<u8>> {
    let req = decode_request(message).ok()?;
    let mut out = answer(
        &shared.handler,
        &shared.me,
        &shared.last_flags,
        &shared.seen,
        message,
    )?;
    if req.header.op_flags & flags::CT != 0
        && let Some(key) = &shared.signing.signs_with
    {
        let envelope = idnode_handle::Envelope::decode(&out).unwrap();
        let hash = hash_for((envelope.major, envelope.minor), key.kind());
        sign_response(&mut out, key, hash).unwrap();
        if shared.signing.tamper
            && let Some(at) = out.windows(11).position(|w| w == b"example.com")
        {
            out[at + 6] = b'3';
        }
    }
    Some(out)
}

/// The unsigned response to one request (GET_SITE_INFO: the fake's site).
fn answer(
    handler: &Handler,
    me: &SiteInfo,
    last_flags: &AtomicU32,
    seen: &Mutex<Vec<Req>>,
    message: &[u8],
) -> Option<Vec<u8>> {
    let req = decode_request(message).ok()?;
    last_flags.store(req.header.op_flags, Ordering::SeqCst);
    if req.header.opcode == opcode::GET_SITE_INFO {
        seen.lock().unwrap().push(Req {
            handle: "(GET_SITE_INFO)".into(),
            types: Vec::new(),
        });
        let ctx = ResponseContext::for_request(&req, now());
        let mut out = Vec::new();
        let mut b = ResponseBuilder::start(&mut out, &ctx, opcode::GET_SITE_INFO, code::SUCCESS);
        b.buffer().extend_from_slice(&me.encode());
        b.finish();
        return Some(out);
    }
    let query = ResolutionQuery::decode(req.body).ok()?;
    let asked = Req {
        handle: std::str::from_utf8(query.handle).ok()?.to_owned(),
        types: query
            .types()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect(),
    };
    seen.lock().unwrap().push(asked.clone());
    let ctx = ResponseContext::for_request(&req, now());
    let mut out = Vec::new();
    let (response_code, name, values) = match handler(&asked, me) {
        Reply::Values(values) => {
            let values = values
                .into_iter()
                .filter(|v| query.wants(v.index, v.kind.as_bytes()))
                .collect::<Vec<_>>();
            (code::SUCCESS, asked.handle, values)
        }
        Reply::Refer(to, values) => (code::PREFIX_REFERRAL, to, values),
        Reply::Error(c, message) => {
            encode_error_response(&mut out, &ctx, opcode::RESOLUTION, c, &message);
            return Some(out);
        }
    };
    let mut b = ResponseBuilder::start(&mut out, &ctx, opcode::RESOLUTION, response_code);
    b.put_bytes(name.as_bytes());
    b.put_u32(values.len() as u32);
    for v in &values {
        encode_value(b.buffer(), v);
    }
    b.finish();
    Some(out)
}

/// A fake server on UDP and TCP (separate ports). With `udp_silent` it
/// counts UDP requests but never answers them; every answer waits `delay`.
/// It never signs.
async fn fake(
    handler: impl Fn(&Req, &SiteInfo) -> Reply + Send + Sync + 'static,
    udp_silent: bool,
    delay: Duration,
) -> Fake {
    signing_fake(handler, udp_silent, delay, Signing::default()).await
}

/// [`fake`], treating certified requests as `signing` says.
async fn signing_fake(
    handler: impl Fn(&Req, &SiteInfo) -> Reply + Send + Sync + 'static,
    udp_silent: bool,
    delay: Duration,
    signing: Signing,
) -> Fake {
    let handler: Handler = Arc::new(handler);
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp_hits = Arc::new(AtomicUsize::new(0));
    let tcp_hits = Arc::new(AtomicUsize::new(0));
    let last_flags = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut fake = Fake {
        udp: udp.local_addr().unwrap(),
        tcp: tcp.local_addr().unwrap(),
        public_key: signing.publishes.clone(),
        udp_hits: udp_hits.clone(),
        tcp_hits: tcp_hits.clone(),
        last_flags: last_flags.clone(),
        seen: seen.clone(),
        tasks: Vec::new(),
    };
    let shared = Arc::new(Shared {
        handler,
        me: fake.site(),
        signing,
        last_flags,
        seen,
    });
    let on_udp = shared.clone();
    fake.tasks.push(tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            udp_hits.fetch_add(1, Ordering::SeqCst);
            if udp_silent {
                continue;
            }
            let message = buf[..n].to_vec();
            let (udp, shared) = (udp.clone(), on_udp.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let Some(out) = respond(&shared, &message) else {
                    return;
                };
                let mut datagrams = Vec::new();
                for_each_datagram(&out, |d| datagrams.push(d.to_vec()));
                for d in datagrams {
                    let _ = udp.send_to(&d, peer).await;
                }
            });
        }
    }));
    fake.tasks.push(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                return;
            };
            let (hits, shared) = (tcp_hits.clone(), shared.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 4096];
                loop {
                    while let Ok(Some(total)) = frame_len(&buf) {
                        let message: Vec<u8> = buf.drain(..total).collect();
                        hits.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        if let Some(out) = respond(&shared, &message)
                            && stream.write_all(&out).await.is_err()
                        {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    }));
    fake
}

fn url(handle: &str, ttl: u32) -> Value {
    let mut v = Value::new(1, "URL", format!("https://example.com/{handle}"));
    v.ttl = Ttl::Relative(ttl);
    v
}

/// A site value of `kind` (HS_SITE, HS_SITE.PREFIX...).
fn site_value(index: u32, kind: &str, site: &SiteInfo, ttl: u32) -> Value {
    let mut v = Value::new(index, kind, site.encode());
    v.ttl = Ttl::Relative(ttl);
    v
}

/// A service-handle value (HS_SERV, HS_SERV.PREFIX) naming `handle`.
fn service_value(index: u32, kind: &str, handle: &str, ttl: u32) -> Value {
    let mut v = Value::new(index, kind, handle.as_bytes().to_vec());
    v.ttl = Ttl::Relative(ttl);
    v
}

fn not_homed(req: &Req) -> Reply {
    Reply::Error(
        code::SERVER_NOT_RESP,
        format!("this node is not responsible for {}", req.handle),
    )
}

/// A node homing every prefix it is asked about: `0.NA/<p>` gives its own
/// HS_SITE (TTL `site_ttl`), any other identifier a URL (TTL `ttl`).
fn home(site_ttl: u32, ttl: u32) -> impl Fn(&Req, &SiteInfo) -> Reply + Send + Sync + 'static {
    move |req, me| {
        if req.key().starts_with("0.NA/") {
            Reply::Values(vec![site_value(1, "HS_SITE", me, site_ttl)])
        } else {
            Reply::Values(vec![url(&req.handle, ttl)])
        }
    }
}

/// A node that homes `0.NA/*` (any prefix record gives `sites` as HS_SITE,
/// TTL `ttl`) and no identifier.
fn points_to(sites: SiteInfo, ttl: u32) -> impl Fn(&Req, &SiteInfo) -> Reply + Send + Sync {
    move |req, _| {
        if req.key().starts_with("0.NA/") {
            Reply::Values(vec![site_value(1, "HS_SITE", &sites, ttl)])
        } else {
            not_homed(req)
        }
    }
}

/// root (homes `88`, delegated `88.100` to middle) -> middle (homes
/// `88.100`, delegated each `88.100.N` to leaf) -> leaf (homes the rest).
/// Every TTL one hour. None signs.
async fn chain() -> (Fake, Fake, Fake) {
    chain_signing([Signing::default(), Signing::default(), Signing::default()]).await
}

/// [`chain`], the root, middle and leaf signing as `signing` says.
async fn chain_signing(signing: [Signing; 3]) -> (Fake, Fake, Fake) {
    let [root_signing, middle_signing, leaf_signing] = signing;
    let leaf = signing_fake(home(3600, 3600), false, Duration::ZERO, leaf_signing).await;
    let leaf_site = leaf.site();
    let middle = signing_fake(
        move |req, me| {
            let key = req.key();
            match key.strip_prefix("0.NA/88.100.") {
                // A delegation this node made: the leaf homes it.
                Some(rest) if !rest.contains('.') => {
                    Reply::Values(vec![site_value(1, "HS_SITE", &leaf_site, 3600)])
                }
                // Below a delegation: refer to the leaf's prefix sites.
                Some(_) => Reply::Refer(
                    String::new(),
                    vec![site_value(2, "HS_SITE.PREFIX", &leaf_site, 3600)],
                ),
                None if key == "0.NA/88.100" => {
                    Reply::Values(vec![site_value(1, "HS_SITE", me, 3600)])
                }
                None if key.starts_with("0.NA/88.100") => Reply::Error(
                    code::HANDLE_NOT_FOUND,
                    format!("no prefix record {}", req.handle),
                ),
                None if key.starts_with("88.100/") => Reply::Values(vec![url(&req.handle, 3600)]),
                None => not_homed(req),
            }
        },
        false,
        Duration::ZERO,
        middle_signing,
    )
    .await;
    let middle_site = middle.site();
    let root = signing_fake(
        move |req, me| {
            let key = req.key();
            match key.as_str() {
                "0.NA/88" => Reply::Values(vec![site_value(1, "HS_SITE", me, 3600)]),
                "0.NA/88.100" => Reply::Values(vec![
                    site_value(1, "HS_SITE", &middle_site, 3600),
                    site_value(2, "HS_SITE.PREFIX", &middle_site, 3600),
                ]),
                k if k.starts_with("0.NA/88.100.") => Reply::Refer(
                    String::new(),
                    vec![site_value(2, "HS_SITE.PREFIX", &middle_site, 3600)],
                ),
                k if k.starts_with("0.NA/88.") => Reply::Error(
                    code::HANDLE_NOT_FOUND,
                    format!("no prefix record {}", req.handle),
                ),
                k if k.starts_with("88/") => Reply::Values(vec![url(&req.handle, 3600)]),
                _ => not_homed(req),
            }
        },
        false,
        Duration::ZERO,
        root_signing,
    )
    .await;
    (root, middle, leaf)
}

/// Options with a patient per-attempt timeout, so that a loaded machine
/// does not make the client send a request again (the tests count requests
/// at the fake servers).
fn options(roots: Vec<SiteInfo>) -> RecursorOptions {
    RecursorOptions {
        roots,
        timeout: PATIENT,
        ..RecursorOptions::default()
    }
}

/// Options for the tests where a server is dead or silent: [`SHORT`].
fn impatient(roots: Vec<SiteInfo>) -> RecursorOptions {
    RecursorOptions {
        timeout: SHORT,
        ..options(roots)
    }
}

fn assert_found(answer: &Answer, handle: &str) {
    match answer {
        Answer::Found { handle: h, values } => {
            assert!(h.eq_ignore_ascii_case(handle), "{h} for {handle}");
            assert_eq!(values.len(), 1);
            assert_eq!(
                values[0].data.as_ref(),
                format!("https://example.com/{h}").as_bytes()
            );
        }
        other => panic!("{handle}: expected Found, got {other:?}"),
    }
}

fn failed(answer: Answer) -> (u32, String) {
    match answer {
        Answer::Failed { code, message } => (code, message),
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn lookup(handle: &str) -> Req {
    Req {
        handle: handle.into(),
        types: LOOKUP_TYPES.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn whole(handle: &str) -> Req {
    Req {
        handle: handle.into(),
        types: Vec::new(),
    }
}

/// A port nobody listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_referrals_down_and_caches_them() {
    guarded(async {
        let (root, middle, leaf) = chain().await;
        let r = Recursor::new(options(vec![root.site()]));
        let answer = r.resolve("88.100.1/ABC-123").await;
        assert_eq!(
            answer,
            Answer::Found {
                handle: "88.100.1/ABC-123".into(),
                values: vec![url("88.100.1/ABC-123", 3600)],
            }
        );
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 1));
        // The root refers the prefix lookup (303), the middle node answers
        // it, the leaf is asked the identifier itself for every value.
        assert_eq!(root.seen(), vec![lookup("0.NA/88.100.1")]);
        assert_eq!(middle.seen(), vec![lookup("0.NA/88.100.1")]);
        assert_eq!(leaf.seen(), vec![whole("88.100.1/ABC-123")]);
        for fake in [&root, &leaf] {
            assert_eq!(
                fake.last_flags.load(Ordering::SeqCst) & flags::REC,
                0,
                "upstream requests do not ask for recursion"
            );
        }

        // Another identifier under 88.100.1: straight to the leaf.
        assert_found(&r.resolve("88.100.1/xyz").await, "88.100.1/xyz");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 2));

        // The answer itself is cached too (TTL one hour), by key.
        assert_found(&r.resolve("88.100.1/abc-123").await, "88.100.1/ABC-123");
        assert_eq!(leaf.hits(), 2);

        // A sibling prefix: no cached ancestor, so the root again.
        assert_found(&r.resolve("88.100.2/q").await, "88.100.2/q");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (2, 2, 3));

        // An identifier of 88.100 itself: the root holds 0.NA/88.100.
        assert_found(&r.resolve("88.100/m").await, "88.100/m");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (3, 3, 3));
        assert_eq!(root.seen().last(), Some(&lookup("0.NA/88.100")));

        // Now 88.100's sites are cached: its node is asked for the prefix
        // records below it, the root is not.
        assert_found(&r.resolve("88.100.3/q").await, "88.100.3/q");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (3, 4, 4));
        assert_eq!(middle.seen().last(), Some(&lookup("0.NA/88.100.3")));

        // A prefix record asked as an identifier goes to the roots, and its
        // 303 is followed: the whole record from the middle node.
        match r.resolve("0.NA/88.100.4").await {
            Answer::Found { handle, values } => {
                assert_eq!(handle, "0.NA/88.100.4");
                assert_eq!(values, vec![site_value(1, "HS_SITE", &leaf.site(), 3600)]);
            }
            other => panic!("expected Found, got {other:?}"),
        }
        assert_eq!((root.hits(), middle.hits()), (4, 5));
        assert_eq!(root.seen().last(), Some(&whole("0.NA/88.100.4")));
        assert_eq!(middle.seen().last(), Some(&whole("0.NA/88.100.4")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_lookup_carries_the_type_list() {
    guarded(async {
        let node = fake(home(3600, 3600), false, Duration::ZERO).await;
        let r = Recursor::new(options(vec![node.site()]));
        assert_found(&r.resolve("88.abc/Item-1").await, "88.abc/Item-1");
        // hdllib's prefix lookup: the prefix upper-cased, four types, no
        // index list; then the identifier as spelled, for every value.
        assert_eq!(
            node.seen(),
            vec![lookup("0.NA/88.ABC"), whole("88.abc/Item-1")]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeper_prefixes_take_more_referrals_and_too_many_fail() {
    guarded(async {
        let (root, middle, leaf) = chain().await;
        // 88.100.1.5: the root refers to the middle node, which refers to
        // the leaf (the leaf homes 88.100.1 and the prefixes below it).
        let r = Recursor::new(options(vec![root.site()]));
        assert_found(&r.resolve("88.100.1.5/x").await, "88.100.1.5/x");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 2));
        assert_eq!(
            leaf.seen(),
            vec![lookup("0.NA/88.100.1.5"), whole("88.100.1.5/x")]
        );

        let r = Recursor::new(RecursorOptions {
            max_depth: 1,
            ..options(vec![root.site()])
        });
        let (c, message) = failed(r.resolve("88.100.1.5/y").await);
        assert_eq!(c, code::RECURSION_COUNT_TOO_HIGH);
        assert!(message.contains("more than 1 referrals"), "{message}");
        assert!(message.contains("prefix 88.100.1.5"), "{message}");
        assert!(message.contains(&middle.udp.to_string()), "{message}");
        assert_eq!(leaf.hits(), 2, "the leaf is not reached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_prefixes_fail_and_only_a_not_found_prefix_is_cached() {
    guarded(async {
        let (root, _middle, _leaf) = chain().await;
        let r = Recursor::new(options(vec![root.site()]));
        // The root homes 88 but has no 0.NA/88.7: the prefix does not
        // exist, so neither does the identifier.
        for _ in 0..2 {
            let (c, message) = failed(r.resolve("88.7/Q").await);
            assert_eq!(c, code::HANDLE_NOT_FOUND);
            assert!(
                message.contains("unable to find a site for prefix 88.7"),
                "{message}"
            );
            assert!(message.contains("no prefix record 0.NA/88.7"), "{message}");
        }
        assert_eq!(root.hits(), 1, "the not-found answer is cached");

        // The root is not responsible for 99 (301): not cached.
        for _ in 0..2 {
            let (c, message) = failed(r.resolve("99/x").await);
            assert_eq!(c, code::SERVER_NOT_RESP);
            assert!(
                message.contains("unable to find a site for prefix 99"),
                "{message}"
            );
        }
        assert_eq!(root.hits(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ancestor_that_does_not_answer_for_the_prefix_falls_back_to_the_roots() {
    guarded(async {
        let leaf = fake(home(3600, 3600), false, Duration::ZERO).await;
        // Homes the identifiers of 88 but not the prefix records below it
        // (as a CNRI server without the 0.NA/0.NA/88 marker): 301 for
        // 0.NA/88.5, 100 for 0.NA/88.6.
        let node = fake(
            |req, _| match req.key().as_str() {
                "0.NA/88.6" => Reply::Error(code::HANDLE_NOT_FOUND, "no 0.NA/88.6".into()),
                k if k.starts_with("0.NA/") => not_homed(req),
                _ => Reply::Values(vec![url(&req.handle, 3600)]),
            },
            false,
            Duration::ZERO,
        )
        .await;
        let (node_site, leaf_site) = (node.site(), leaf.site());
        let root = fake(
            move |req, _| match req.key().as_str() {
                "0.NA/88" => Reply::Values(vec![site_value(1, "HS_SITE", &node_site, 3600)]),
                "0.NA/88.5" | "0.NA/88.6" => {
                    Reply::Values(vec![site_value(1, "HS_SITE", &leaf_site, 3600)])
                }
                _ => not_homed(req),
            },
            false,
            Duration::ZERO,
        )
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_eq!((root.hits(), node.hits()), (1, 1));
        // 88's sites are cached: asked first for 0.NA/88.5, they say 301;
        // the roots know.
        assert_found(&r.resolve("88.5/b").await, "88.5/b");
        assert_eq!(node.handles()[1..], ["0.NA/88.5"]);
        assert_eq!(root.handles()[1..], ["0.NA/88.5"]);
        assert_eq!(leaf.handles(), ["88.5/B"]);
        // Their 100 is authoritative: the roots are not asked.
        let (c, message) = failed(r.resolve("88.6/c").await);
        assert_eq!(c, code::HANDLE_NOT_FOUND);
        assert!(message.contains("no 0.NA/88.6"), "{message}");
        assert_eq!(root.hits(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_answers_and_prefix_sites_are_asked_again() {
    guarded(async {
        let leaf = fake(home(1, 1), false, Duration::ZERO).await;
        let root = fake(points_to(leaf.site(), 1), false, Duration::ZERO).await;
        let r = Recursor::new(options(vec![root.site()]));
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_eq!((root.hits(), leaf.hits()), (1, 1));
        // The sites of 88 are cached as well: the root is not asked.
        assert_found(&r.resolve("88/b").await, "88/b");
        assert_eq!((root.hits(), leaf.hits()), (1, 2));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_eq!((root.hits(), leaf.hits()), (2, 3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_is_never_cached() {
    guarded(async {
        let leaf = fake(home(0, 0), false, Duration::ZERO).await;
        let r = Recursor::new(options(vec![leaf.site()]));
        for _ in 0..3 {
            assert_found(&r.resolve("88/a").await, "88/a");
        }
        // Neither the sites of 88 nor the answer were kept.
        assert_eq!(leaf.hits(), 6);
        assert_eq!(
            leaf.handles(),
            ["0.NA/88", "88/A"].repeat(3),
            "a prefix lookup and the identifier, each time"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_cached_other_errors_are_not() {
    guarded(async {
        let leaf = fake(
            |req, me| match req.handle.as_str() {
                "0.NA/88" => Reply::Values(vec![site_value(1, "HS_SITE", me, 3600)]),
                "88/missing" => Reply::Error(code::HANDLE_NOT_FOUND, "no such handle".into()),
                _ => Reply::Error(code::SERVER_TOO_BUSY, "busy".into()),
            },
            false,
            Duration::ZERO,
        )
        .await;
        let r = Recursor::new(options(vec![leaf.site()]));
        for _ in 0..2 {
            let (c, message) = failed(r.resolve("88/missing").await);
            assert_eq!(c, code::HANDLE_NOT_FOUND);
            assert!(message.contains("no such handle"), "{message}");
            assert!(message.contains(&leaf.udp.to_string()), "{message}");
        }
        assert_eq!(leaf.hits(), 2, "one prefix lookup, one question");
        // Busy over UDP sends the question to TCP (a server that will not
        // send a large answer over UDP to an address it has not seen over
        // TCP says so this way); busy there too is the answer, not cached.
        for _ in 0..2 {
            let (c, message) = failed(r.resolve("88/busy").await);
            assert_eq!(c, code::SERVER_TOO_BUSY);
            assert_eq!(message, format!("{}: busy", leaf.tcp));
        }
        assert_eq!(leaf.hits(), 6);

        let no_negative = Recursor::new(RecursorOptions {
            negative_ttl: Duration::ZERO,
            ..options(vec![leaf.site()])
        });
        no_negative.resolve("88/missing").await;
        no_negative.resolve("88/missing").await;
        assert_eq!(leaf.hits(), 9);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_picks_the_server_inside_a_site() {
    guarded(async {
        let live = fake(home(3600, 0), false, Duration::ZERO).await;
        let dead_port = dead_port();
        let dead = ServerInfo::from_urls(
            2,
            &format!("udp://127.0.0.1:{dead_port},tcp://127.0.0.1:{dead_port}"),
        )
        .unwrap();
        let site = SiteInfo::single(vec![live.server(1), dead], HashOption::Whole);
        let root = fake(points_to(site, 3600), false, Duration::ZERO).await;
        let pick = |want: usize| {
            (0..)
                .map(|i| format!("88/item-{i}"))
                .find(|h| server_index(h.as_bytes(), 2) == want)
                .unwrap()
        };
        let (to_live, to_dead) = (pick(0), pick(1));
        let r = Recursor::new(impatient(vec![root.site()]));

        let started = Instant::now();
        let (c, message) = failed(r.resolve(&to_dead).await);
        assert_eq!(c, code::SERVER_NOT_RESP);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(message.contains("the sites of prefix 88"), "{message}");
        assert!(
            message.contains(&format!("udp://127.0.0.1:{dead_port}")),
            "{message}"
        );
        assert!(
            message.contains(&format!("tcp://127.0.0.1:{dead_port}")),
            "{message}"
        );
        assert!(message.contains("within 300ms"), "{message}");
        assert_eq!(live.hits(), 0, "the live server does not serve it");

        assert_found(&r.resolve(&to_live).await, &to_live);
        assert_eq!(live.hits(), 1);
        assert_eq!(root.hits(), 1, "the sites of 88 stay cached");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_tcp_when_udp_is_silent() {
    guarded(async {
        let node = fake(home(60, 60), true, Duration::ZERO).await;
        let r = Recursor::new(impatient(vec![node.site()]));
        assert_found(&r.resolve("88/over-tcp").await, "88/over-tcp");
        // The prefix lookup and the question, each UDP first, then TCP.
        assert!(node.udp_hits.load(Ordering::SeqCst) >= 2);
        assert_eq!(node.tcp_hits.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_turn() {
    guarded(async {
        let dead_port = dead_port();
        let dead = ServerInfo::from_urls(1, &format!("udp://127.0.0.1:{dead_port}")).unwrap();
        let live = fake(home(3600, 0), false, Duration::ZERO).await;
        let sites = vec![SiteInfo::single(vec![dead], HashOption::Whole), live.site()];
        let r = Recursor::new(impatient(sites));
        assert_found(&r.resolve("88/mirrored").await, "88/mirrored");
        assert_eq!(live.hits(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_referring_to_each_other_fail_quickly() {
    guarded(async {
        let a_site: Arc<OnceLock<Value>> = Arc::new(OnceLock::new());
        let b_site: Arc<OnceLock<Value>> = Arc::new(OnceLock::new());
        let (to_b, to_a) = (b_site.clone(), a_site.clone());
        let a = fake(
            move |_, _| Reply::Refer(String::new(), vec![to_b.get().unwrap().clone()]),
            false,
            Duration::ZERO,
        )
        .await;
        let b = fake(
            move |_, _| Reply::Refer(String::new(), vec![to_a.get().unwrap().clone()]),
            false,
            Duration::ZERO,
        )
        .await;
        a_site
            .set(site_value(1, "HS_SITE.PREFIX", &a.site(), 3600))
            .unwrap();
        b_site
            .set(site_value(1, "HS_SITE.PREFIX", &b.site(), 3600))
            .unwrap();
        let r = Recursor::new(options(vec![a.site()]));
        let started = Instant::now();
        let (c, message) = failed(r.resolve("88.1/x").await);
        assert_eq!(c, code::RECURSION_COUNT_TOO_HIGH);
        assert!(message.contains("referral loop: "), "{message}");
        assert!(message.contains("0.NA/88.1"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!((a.hits(), b.hits()), (1, 1));

        // A node referring to itself: one request.
        let r = Recursor::new(options(vec![b.site()]));
        let (c, message) = failed(r.resolve("88.1/x").await);
        assert_eq!(c, code::RECURSION_COUNT_TOO_HIGH);
        assert!(message.contains("referral loop: "), "{message}");
        assert_eq!((a.hits(), b.hits()), (2, 2));
        let to_self = fake(
            |_, me| Reply::Refer(String::new(), vec![site_value(1, "HS_SITE.PREFIX", me, 1)]),
            false,
            Duration::ZERO,
        )
        .await;
        let r = Recursor::new(options(vec![to_self.site()]));
        let (_, message) = failed(r.resolve("88.2/x").await);
        assert!(message.contains("referral loop: "), "{message}");
        assert_eq!(to_self.hits(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_questions_share_one_walk() {
    guarded(async {
        // Answers with TTL 0: nothing but the sites is cached, so one
        // question upstream means one shared walk.
        let node = fake(home(3600, 0), false, Duration::from_millis(300)).await;
        let r = Arc::new(Recursor::new(RecursorOptions {
            timeout: Duration::from_secs(3),
            ..options(vec![node.site()])
        }));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let r = r.clone();
            let spelling = if i % 2 == 0 { "88/Same" } else { "88/SAME" };
            tasks.push(tokio::spawn(async move { r.resolve(spelling).await }));
        }
        for task in tasks {
            assert_found(&task.await.unwrap(), "88/same");
        }
        assert_eq!(node.hits(), 2, "one prefix lookup, one question");
        // And once it is done, the next question walks again (the sites of
        // 88 are cached by now).
        assert_found(&r.resolve("88/same").await, "88/same");
        assert_eq!(node.hits(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_handles_are_followed() {
    guarded(async {
        let leaf = fake(home(3600, 3600), false, Duration::ZERO).await;
        let leaf_site = leaf.site();
        // The root homes 88. 0.NA/88.200 delegates by HS_SERV to the
        // service handle 88/service, which holds the leaf's HS_SITE (and an
        // HS_SERV naming itself: a loop, skipped). Prefixes below 88.300
        // are referred by HS_SERV.PREFIX to 88/below, which holds the
        // leaf's HS_SITE.PREFIX.
        let root = fake(
            move |req, me| match req.key().as_str() {
                "0.NA/88" => Reply::Values(vec![site_value(1, "HS_SITE", me, 3600)]),
                "0.NA/88.200" => {
                    Reply::Values(vec![service_value(1, "HS_SERV", "88/service", 3600)])
                }
                k if k.starts_with("0.NA/88.300.") => Reply::Refer(
                    String::new(),
                    vec![service_value(1, "HS_SERV.PREFIX", "88/below", 3600)],
                ),
                "88/SERVICE" => Reply::Values(vec![
                    site_value(1, "HS_SITE", &leaf_site, 3600),
                    service_value(2, "HS_SERV", "88/service", 3600),
                ]),
                "88/BELOW" => {
                    Reply::Values(vec![site_value(1, "HS_SITE.PREFIX", &leaf_site, 3600)])
                }
                k if k.starts_with("88/") => Reply::Values(vec![url(&req.handle, 3600)]),
                _ => not_homed(req),
            },
            false,
            Duration::ZERO,
        )
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        assert_found(&r.resolve("88.200/x").await, "88.200/x");
        let service = Req {
            handle: "88/service".into(),
            types: vec!["HS_SITE".into(), "HS_SITE.6".into(), "HS_SERV".into()],
        };
        // The prefix lookup, the service handle's own prefix lookup, the
        // service handle for its site types; then the leaf.
        assert_eq!(
            root.seen(),
            vec![lookup("0.NA/88.200"), lookup("0.NA/88"), service]
        );
        assert_eq!(leaf.seen(), vec![whole("88.200/x")]);

        // Both prefixes' sites are cached now.
        assert_found(&r.resolve("88.200/y").await, "88.200/y");
        assert_found(&r.resolve("88/z").await, "88/z");
        assert_eq!((root.hits(), leaf.hits()), (4, 2));

        // A 303 that names a service handle for the prefix sites.
        assert_found(&r.resolve("88.300.1/k").await, "88.300.1/k");
        let below = Req {
            handle: "88/below".into(),
            types: vec![
                "HS_SITE.PREFIX".into(),
                "HS_NA_DELEGATE".into(),
                "HS_SERV.PREFIX".into(),
            ],
        };
        assert_eq!(
            root.seen()[4..],
            [lookup("0.NA/88.300.1"), below],
            "88's sites are cached, so the service handle goes straight there"
        );
        assert_eq!(
            leaf.seen()[2..],
            [lookup("0.NA/88.300.1"), whole("88.300.1/k")]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_for_an_identifier_is_an_error() {
    guarded(async {
        // An old-style node: refers identifiers (303) instead of 301.
        let old = fake(
            |req, me| {
                if req.key().starts_with("0.NA/") {
                    Reply::Values(vec![site_value(1, "HS_SITE", me, 3600)])
                } else {
                    Reply::Refer(
                        "0.NA/88".into(),
                        vec![site_value(1, "HS_SITE.PREFIX", me, 3600)],
                    )
                }
            },
            false,
            Duration::ZERO,
        )
        .await;
        let r = Recursor::new(options(vec![old.site()]));
        let (c, message) = failed(r.resolve("88/x").await);
        assert_eq!(c, code::ERROR);
        assert!(message.contains("303 referral"), "{message}");
        assert!(
            message.contains("prefix records (0.NA/...) only"),
            "{message}"
        );
        assert!(message.contains(&old.udp.to_string()), "{message}");
        assert_eq!(old.handles(), ["0.NA/88", "88/X"]);
        // Not cached, and the sites of 88 were dropped: looked up again.
        failed(r.resolve("88/x").await);
        assert_eq!(old.handles()[2..], ["0.NA/88", "88/X"]);
    })
    .await;
}

#[tokio::test]
async fn bad_identifiers_and_no_roots_fail_without_network() {
    let r = Recursor::new(RecursorOptions::default());
    let (c, message) = failed(r.resolve("no-slash").await);
    assert_eq!(c, code::INVALID_HANDLE);
    assert!(message.contains("no-slash"), "{message}");
    let (c, message) = failed(r.resolve("88/x").await);
    assert_eq!(c, code::SERVER_NOT_RESP);
    assert!(message.contains("the root"), "{message}");
    assert!(
        message.contains("unable to find a site for prefix 88"),
        "{message}"
    );
}

/// The chain with every node signing with its own key and publishing it.
async fn certified_chain() -> (Fake, Fake, Fake) {
    chain_signing([
        Signing::honest("top"),
        Signing::honest("secondary"),
        Signing::honest("enterprise"),
    ])
    .await
}

fn ct_set(fake: &Fake) -> bool {
    fake.last_flags.load(Ordering::SeqCst) & flags::CT != 0
}

/// A certified failure: code ERROR, a message about a signature from
/// `from` that does not verify (or no key to verify with).
fn refused(answer: Answer, from: &Fake, why: &str) -> String {
    let (c, message) = failed(answer);
    assert_eq!(c, code::ERROR, "{message}");
    assert!(message.contains(&from.udp.to_string()), "{message}");
    assert!(message.contains(why), "{message}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_chain_verifies_every_hop() {
    guarded(async {
        let (root, middle, leaf) = certified_chain().await;
        // The root's key comes with its configured site record.
        let r = Recursor::new(options(vec![root.site()]));
        // Two referrals: the root (RSA) refers to the middle (DSA, the key
        // in the 303's HS_SITE.PREFIX), which refers to the leaf (RSA).
        assert_found(&r.resolve_certified("88.100.1.5/x").await, "88.100.1.5/x");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 2));
        assert!(ct_set(&root) && ct_set(&middle) && ct_set(&leaf));
        assert!(
            !root.handles().contains(&"(GET_SITE_INFO)".to_owned()),
            "a configured key is not fetched"
        );
        // A 303 then a SUCCESS whose HS_SITE names the leaf (its key).
        let answer = r.resolve_certified("88.100.1/ABC-123").await;
        assert_found(&answer, "88.100.1/ABC-123");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (2, 2, 3));
        // The cached sites of 88.100.1 serve a certified question.
        assert_found(&r.resolve_certified("88.100.1/y").await, "88.100.1/y");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (2, 2, 4));
        // A 0.NA handle straight at the root, its 303 followed.
        assert!(matches!(
            r.resolve_certified("0.NA/88.100.4").await,
            Answer::Found { .. }
        ));
        assert_eq!((root.hits(), middle.hits()), (3, 3));
        // Not-found answers are signed and verified too, and cached.
        let (c, _) = failed(r.resolve_certified("88.7/q").await);
        assert_eq!(c, code::HANDLE_NOT_FOUND);
        failed(r.resolve_certified("88.7/q").await);
        assert_eq!(root.hits(), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_key_is_fetched_on_first_use() {
    guarded(async {
        let (root, middle, leaf) = certified_chain().await;
        // Configured by URLs only: no key in the record.
        let bare = SiteInfo::single(vec![server_at(1, root.udp, root.tcp)], HashOption::Whole);
        let r = Recursor::new(options(vec![bare.clone()]));
        // Uncertified: no key needed, none fetched.
        assert_found(&r.resolve("88.100.1/plain").await, "88.100.1/plain");
        assert_eq!(root.handles(), ["0.NA/88.100.1"]);
        assert!(!ct_set(&root));
        assert_found(&r.resolve_certified("88.100.2/a").await, "88.100.2/a");
        assert_eq!(root.handles()[1..], ["(GET_SITE_INFO)", "0.NA/88.100.2"]);
        assert!(ct_set(&root) && ct_set(&middle) && ct_set(&leaf));
        // Kept: the next certified walk does not ask again.
        assert_found(&r.resolve_certified("88.100.3/b").await, "88.100.3/b");
        assert_eq!(root.handles()[3..], ["0.NA/88.100.3"]);

        // A root whose site publishes no key: certified answers from it
        // cannot be verified, uncertified ones still work.
        let keyless = signing_fake(
            home(3600, 3600),
            false,
            Duration::ZERO,
            Signing {
                signs_with: Some(key("top")),
                ..Signing::default()
            },
        )
        .await;
        let r = Recursor::new(options(vec![keyless.site()]));
        let message = refused(
            r.resolve_certified("88/x").await,
            &keyless,
            "could not be fetched",
        );
        assert!(message.contains("no public key"), "{message}");
        assert_found(&r.resolve("88/x").await, "88/x");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_signing_with_a_stale_key_is_refused() {
    guarded(async {
        // The middle publishes the secondary key but signs with another
        // (a key rolled over without updating the record that points
        // there).
        let (root, middle, leaf) = chain_signing([
            Signing::honest("top"),
            Signing {
                signs_with: Some(key("enterprise")),
                publishes: key("secondary").public_key().encode(),
                tamper: false,
            },
            Signing::honest("enterprise"),
        ])
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        let message = refused(
            r.resolve_certified("88.100.1/x").await,
            &middle,
            "does not verify",
        );
        assert!(message.contains("signature"), "{message}");
        assert!(
            message.contains("unable to find a site for prefix 88.100.1"),
            "{message}"
        );
        // UDP, then TCP: both refused; the leaf is never asked.
        assert_eq!(middle.hits(), 2);
        assert_eq!(leaf.hits(), 0);
        // Nothing was cached: asked again, refused again.
        refused(
            r.resolve_certified("88.100.1/x").await,
            &middle,
            "does not verify",
        );
        assert_eq!(middle.hits(), 4);
        // Uncertified, nothing is signed or checked.
        assert_found(&r.resolve("88.100.1/x").await, "88.100.1/x");

        // A root configured with a key other than its own.
        let stale = SiteInfo::single(
            vec![{
                let mut s = root.server(1);
                s.public_key = key("enterprise").public_key().encode();
                s
            }],
            HashOption::Whole,
        );
        let r = Recursor::new(options(vec![stale]));
        refused(
            r.resolve_certified("88.100.2/x").await,
            &root,
            "does not verify",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_answer_is_refused() {
    guarded(async {
        let (root, _middle, leaf) = chain_signing([
            Signing::honest("top"),
            Signing::honest("secondary"),
            Signing {
                tamper: true,
                ..Signing::honest("enterprise")
            },
        ])
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        let message = refused(
            r.resolve_certified("88.100.1/x").await,
            &leaf,
            "does not verify",
        );
        assert!(message.contains("signature"), "{message}");
        assert!(!message.contains("exampl3"), "{message}");
        assert_eq!(leaf.hits(), 2, "UDP, then TCP");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_answer_to_a_certified_request_is_refused() {
    guarded(async {
        // The leaf publishes a key but does not sign.
        let (root, _middle, leaf) = chain_signing([
            Signing::honest("top"),
            Signing::honest("secondary"),
            Signing {
                signs_with: None,
                publishes: key("enterprise").public_key().encode(),
                tamper: false,
            },
        ])
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        let message = refused(r.resolve_certified("88.100.1/x").await, &leaf, "not signed");
        assert!(message.contains("signature"), "{message}");
        assert!(ct_set(&leaf));
        // An uncertified walk against the same unsigned fakes still works.
        assert_found(&r.resolve("88.100.1/x").await, "88.100.1/x");
        assert!(!ct_set(&leaf));

        // A leaf that publishes no key at all: not even asked.
        let (root, _middle, leaf) = chain_signing([
            Signing::honest("top"),
            Signing::honest("secondary"),
            Signing::default(),
        ])
        .await;
        let r = Recursor::new(options(vec![root.site()]));
        let message = refused(
            r.resolve_certified("88.100.1/x").await,
            &leaf,
            "no public key",
        );
        assert!(message.contains("verif"), "{message}");
        assert_eq!(leaf.handles(), Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_answers_serve_uncertified_questions_not_the_reverse() {
    guarded(async {
        let (root, middle, leaf) = certified_chain().await;
        let r = Recursor::new(options(vec![root.site()]));
        // Certified first: an uncertified question is served from it.
        assert_found(&r.resolve_certified("88.100.1/c").await, "88.100.1/c");
        let hits = (root.hits(), middle.hits(), leaf.hits());
        assert_eq!(hits, (1, 1, 1));
        assert_found(&r.resolve("88.100.1/c").await, "88.100.1/c");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), hits);
        // So are the certified sites of 88.100.1.
        assert_found(&r.resolve("88.100.1/d").await, "88.100.1/d");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 2));
        assert!(!ct_set(&leaf));

        // Uncertified first: a certified question walks again, prefix
        // lookup included (the sites of 88.100.2 are not certified).
        assert_found(&r.resolve("88.100.2/u").await, "88.100.2/u");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (2, 2, 3));
        assert_found(&r.resolve_certified("88.100.2/u").await, "88.100.2/u");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (3, 3, 4));
        assert!(ct_set(&root) && ct_set(&middle) && ct_set(&leaf));
        // Both cached now.
        assert_found(&r.resolve("88.100.2/u").await, "88.100.2/u");
        assert_found(&r.resolve_certified("88.100.2/u").await, "88.100.2/u");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (3, 3, 4));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_in_different_modes_do_not_share_a_walk() {
    guarded(async {
        // TTL 0 answers: only shared walks save requests.
        let node = signing_fake(
            home(3600, 0),
            false,
            Duration::from_millis(300),
            Signing::honest("top"),
        )
        .await;
        let r = Arc::new(Recursor::new(RecursorOptions {
            timeout: Duration::from_secs(3),
            ..options(vec![node.site()])
        }));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    r.resolve("88/same").await
                } else {
                    r.resolve_certified("88/same").await
                }
            }));
        }
        for task in tasks {
            assert_found(&task.await.unwrap(), "88/same");
        }
        let questions = node.handles().iter().filter(|h| *h == "88/SAME").count();
        assert_eq!(questions, 2, "one walk per mode: {:?}", node.handles());
    })
    .await;
}
