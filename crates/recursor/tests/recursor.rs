//! The recursor against small fake Handle servers on 127.0.0.1: a root
//! that refers to a middle node, which refers to a leaf that answers.
//! Each fake counts the requests it receives, so the tests can tell a
//! cached or coalesced answer from an upstream walk.
//!
//! Timing: upstream timeouts are short (300 ms) so failure paths stay
//! quick; the bounds asserted on elapsed time are loose (seconds) so a
//! loaded machine does not fail them. Only the TTL-expiry test sleeps.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_core::wire::encode_value;
use idnode_core::{Ttl, Value};
use idnode_handle::{
    HashOption, ResolutionQuery, ResponseBuilder, ResponseContext, ServerInfo, SiteInfo, code,
    decode_request, encode_error_response, flags, for_each_datagram, frame_len, opcode,
    server_index,
};
use idnode_recursor::{Answer, Recursor, RecursorOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const GUARD: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(300);
const PATIENT: Duration = Duration::from_secs(5);

/// What a fake server answers to a RESOLUTION of a handle.
#[derive(Debug, Clone)]
enum Reply {
    Values(Vec<Value>),
    /// 303 PREFIX_REFERRAL naming this prefix record, with these values.
    Refer(String, Vec<Value>),
    Error(u32, String),
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

struct Fake {
    udp: SocketAddr,
    tcp: SocketAddr,
    udp_hits: Arc<AtomicUsize>,
    tcp_hits: Arc<AtomicUsize>,
    /// Op flags of the last request received.
    last_flags: Arc<AtomicU32>,
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

    fn server(&self, id: u32) -> ServerInfo {
        ServerInfo::from_urls(id, &format!("udp://{},tcp://{}", self.udp, self.tcp)).unwrap()
    }

    fn site(&self) -> SiteInfo {
        SiteInfo::single(vec![self.server(1)], HashOption::Whole)
    }
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// The response to one request, or `None` for bytes that are not a
/// RESOLUTION request.
fn respond(handler: &Handler, last_flags: &AtomicU32, message: &[u8]) -> Option<Vec<u8>> {
    let req = decode_request(message).ok()?;
    last_flags.store(req.header.op_flags, Ordering::SeqCst);
    let query = ResolutionQuery::decode(req.body).ok()?;
    let handle = std::str::from_utf8(query.handle).ok()?.to_owned();
    let ctx = ResponseContext::for_request(&req, now());
    let mut out = Vec::new();
    let (response_code, name, values) = match handler(&handle) {
        Reply::Values(values) => (code::SUCCESS, handle, values),
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
async fn fake(
    handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    udp_silent: bool,
    delay: Duration,
) -> Fake {
    let handler: Handler = Arc::new(handler);
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp_hits = Arc::new(AtomicUsize::new(0));
    let tcp_hits = Arc::new(AtomicUsize::new(0));
    let last_flags = Arc::new(AtomicU32::new(0));
    let mut fake = Fake {
        udp: udp.local_addr().unwrap(),
        tcp: tcp.local_addr().unwrap(),
        udp_hits: udp_hits.clone(),
        tcp_hits: tcp_hits.clone(),
        last_flags: last_flags.clone(),
        tasks: Vec::new(),
    };
    let (h, flags_seen) = (handler.clone(), last_flags.clone());
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
            let (udp, h, flags_seen) = (udp.clone(), h.clone(), flags_seen.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let Some(out) = respond(&h, &flags_seen, &message) else {
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
            let (h, hits, flags_seen) = (handler.clone(), tcp_hits.clone(), last_flags.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 4096];
                loop {
                    while let Ok(Some(total)) = frame_len(&buf) {
                        let message: Vec<u8> = buf.drain(..total).collect();
                        hits.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        if let Some(out) = respond(&h, &flags_seen, &message)
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

fn site_value(site: &SiteInfo, ttl: u32) -> Value {
    let mut v = Value::new(1, "HS_SITE.PREFIX", site.encode());
    v.ttl = Ttl::Relative(ttl);
    v
}

/// A handler that refers every handle to `prefix_record` served by `to`.
fn refer(
    prefix_record: &str,
    to: &Fake,
    ttl: u32,
) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    let record = prefix_record.to_owned();
    let value = site_value(&to.site(), ttl);
    move |_| Reply::Refer(record.clone(), vec![value.clone()])
}

fn answers(ttl: u32) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    move |h| Reply::Values(vec![url(h, ttl)])
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

/// root (refers `88.*` to middle) -> middle (refers to leaf for
/// `88.100`) -> leaf (answers, TTL one hour).
async fn chain() -> (Fake, Fake, Fake) {
    let leaf = fake(answers(3600), false, Duration::ZERO).await;
    let middle = fake(refer("0.NA/88.100", &leaf, 3600), false, Duration::ZERO).await;
    let root = fake(refer("0.NA/88", &middle, 3600), false, Duration::ZERO).await;
    (root, middle, leaf)
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
        assert_eq!(
            leaf.last_flags.load(Ordering::SeqCst) & flags::REC,
            0,
            "upstream requests do not ask for recursion"
        );

        // Another identifier under 88.100: straight to the leaf.
        assert_found(&r.resolve("88.100.2/xyz").await, "88.100.2/xyz");
        assert_eq!((root.hits(), middle.hits(), leaf.hits()), (1, 1, 2));

        // The answer itself is cached too (TTL one hour), by key.
        assert_found(&r.resolve("88.100.1/abc-123").await, "88.100.1/ABC-123");
        assert_eq!(leaf.hits(), 2);

        // Under 88 but not 88.100: the cached referral for 88 sends it to
        // the middle node, whose referral to 88.100 is not above 88.7.
        let (c, message) = failed(r.resolve("88.7/Q").await);
        assert_eq!(c, code::ERROR);
        assert!(message.contains("neither 88.7 nor above it"), "{message}");
        assert_eq!((root.hits(), middle.hits()), (1, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_referrals_fail() {
    guarded(async {
        let (root, _middle, leaf) = chain().await;
        let r = Recursor::new(RecursorOptions {
            max_depth: 1,
            ..options(vec![root.site()])
        });
        let (c, message) = failed(r.resolve("88.100.1/x").await);
        assert_eq!(c, code::RECURSION_COUNT_TOO_HIGH);
        assert!(message.contains("more than 1 referrals"), "{message}");
        assert_eq!(leaf.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_answers_and_referrals_are_asked_again() {
    guarded(async {
        let leaf = fake(answers(1), false, Duration::ZERO).await;
        let root = fake(refer("0.NA/88", &leaf, 1), false, Duration::ZERO).await;
        let r = Recursor::new(options(vec![root.site()]));
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_found(&r.resolve("88/a").await, "88/a");
        assert_eq!((root.hits(), leaf.hits()), (1, 1));
        // The referral to 88 is cached as well: the root is not asked.
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
        let leaf = fake(answers(0), false, Duration::ZERO).await;
        let r = Recursor::new(options(vec![leaf.site()]));
        for _ in 0..3 {
            assert_found(&r.resolve("88/a").await, "88/a");
        }
        assert_eq!(leaf.hits(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_cached_other_errors_are_not() {
    guarded(async {
        let leaf = fake(
            |h| match h {
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
        assert_eq!(leaf.hits(), 1);
        for _ in 0..2 {
            let (c, message) = failed(r.resolve("88/busy").await);
            assert_eq!(c, code::SERVER_TOO_BUSY);
            assert_eq!(message, format!("{}: busy", leaf.udp));
        }
        assert_eq!(leaf.hits(), 3);

        let no_negative = Recursor::new(RecursorOptions {
            negative_ttl: Duration::ZERO,
            ..options(vec![leaf.site()])
        });
        no_negative.resolve("88/missing").await;
        no_negative.resolve("88/missing").await;
        assert_eq!(leaf.hits(), 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_picks_the_server_inside_a_site() {
    guarded(async {
        let live = fake(answers(0), false, Duration::ZERO).await;
        // A port nobody listens on (bound, then released).
        let dead_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = ServerInfo::from_urls(
            2,
            &format!("udp://127.0.0.1:{dead_port},tcp://127.0.0.1:{dead_port}"),
        )
        .unwrap();
        let site = SiteInfo::single(vec![live.server(1), dead], HashOption::Whole);
        let pick = |want: usize| {
            (0..)
                .map(|i| format!("88/item-{i}"))
                .find(|h| server_index(h.as_bytes(), 2) == want)
                .unwrap()
        };
        let (to_live, to_dead) = (pick(0), pick(1));
        let r = Recursor::new(impatient(vec![site]));

        let started = Instant::now();
        let (c, message) = failed(r.resolve(&to_dead).await);
        assert_eq!(c, code::SERVER_NOT_RESP);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(message.contains("the root"), "{message}");
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
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_tcp_when_udp_is_silent() {
    guarded(async {
        let leaf = fake(answers(60), true, Duration::ZERO).await;
        let r = Recursor::new(impatient(vec![leaf.site()]));
        assert_found(&r.resolve("88/over-tcp").await, "88/over-tcp");
        assert!(leaf.udp_hits.load(Ordering::SeqCst) >= 1);
        assert_eq!(leaf.tcp_hits.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_turn() {
    guarded(async {
        let dead_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = ServerInfo::from_urls(1, &format!("udp://127.0.0.1:{dead_port}")).unwrap();
        let live = fake(answers(0), false, Duration::ZERO).await;
        let sites = vec![SiteInfo::single(vec![dead], HashOption::Whole), live.site()];
        let r = Recursor::new(impatient(sites));
        assert_found(&r.resolve("88/mirrored").await, "88/mirrored");
        assert_eq!(live.hits(), 1);
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
            move |_| Reply::Refer("0.NA/88".into(), vec![to_b.get().unwrap().clone()]),
            false,
            Duration::ZERO,
        )
        .await;
        let b = fake(
            move |_| Reply::Refer("0.NA/88".into(), vec![to_a.get().unwrap().clone()]),
            false,
            Duration::ZERO,
        )
        .await;
        a_site.set(site_value(&a.site(), 3600)).unwrap();
        b_site.set(site_value(&b.site(), 3600)).unwrap();
        let r = Recursor::new(options(vec![a.site()]));
        let started = Instant::now();
        let (c, message) = failed(r.resolve("88/x").await);
        assert_eq!(c, code::RECURSION_COUNT_TOO_HIGH);
        assert!(message.starts_with("referral loop: "), "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!((a.hits(), b.hits()), (1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_questions_share_one_walk() {
    guarded(async {
        // TTL 0: nothing is cached, so one request means one shared walk.
        let leaf = fake(answers(0), false, Duration::from_millis(300)).await;
        let r = Arc::new(Recursor::new(RecursorOptions {
            timeout: Duration::from_secs(3),
            ..options(vec![leaf.site()])
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
        assert_eq!(leaf.hits(), 1);
        // And once it is done, the next question walks again.
        assert_found(&r.resolve("88/same").await, "88/same");
        assert_eq!(leaf.hits(), 2);
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
}
