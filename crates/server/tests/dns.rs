//! DNS over UDP, TCP and QUIC over real loopback sockets, with the
//! in-memory store behind an answer cache; answers read with hickory-proto.
//!
//! No assertion here depends on timing: timeouts only guard against hangs.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::ResponseCache;
use idnode_core::{Permissions, Record, Value};
use idnode_dns::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use idnode_dns::hickory_proto::rr::{Name, RData, RecordType};
use idnode_dns::{Cuts, DnsConfig, DnsService, Zones};
use idnode_server::dns::{DOQ_ALPN, doq_error};
use idnode_server::{
    CertificateSource, DnsListenerOptions, DnsListeners, QuicListener, QuicOptions,
};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Space, Store};
use quinn::rustls;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Hang guard: far longer than any test needs, even on a loaded machine.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within {GUARD:?}"),
    }
}

/// Waits (within the guard) until `done` holds: a listener counts an
/// answer once it has handed it over, which may be just after the client
/// has it.
async fn counted(what: &str, done: impl Fn() -> bool) {
    guard(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

const SMALL: &str = "SMALL._.1.100.88.idnode.internal.";
const BIG: &str = "BIG._.1.100.88.idnode.internal.";
const APEX: &str = "idnode.internal.";

fn put(store: &dyn Store, identifier: &str, values: Vec<Value>) {
    let record = Record {
        identifier: identifier.into(),
        values,
        version: store.last_sequence() + 1,
    };
    let mut txn = store.begin().unwrap();
    txn.put(
        Space::Records,
        identifier.to_ascii_uppercase().as_bytes(),
        record.encode().into(),
    );
    txn.commit().unwrap();
}

struct Node {
    store: Arc<dyn Store>,
    service: Arc<DnsService>,
}

fn node() -> Node {
    let zones = Arc::new(Zones::from_config(&DnsConfig::default()).unwrap());
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cuts = Arc::new(Cuts::load(inner.clone()).unwrap());
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone(), cuts.clone()];
    let store: Arc<dyn Store> = Arc::new(ObservedStore::new(inner, observers));
    let mut txn = store.begin().unwrap();
    let info = idnode_core::PrefixInfo::homed_here("88.100.1", 0);
    txn.put(Space::Prefixes, b"88.100.1", info.encode().into());
    txn.commit().unwrap();
    let mut secret = Value::new(2, "costPrice", "12.00 CNY");
    secret.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    put(
        &*store,
        "88.100.1/SMALL",
        vec![Value::new(1, "URL", "https://example.com/small"), secret],
    );
    // Far too large for a UDP answer of 1232 octets.
    put(
        &*store,
        "88.100.1/BIG",
        (1..=8)
            .map(|i| Value::new(i, "spec", vec![b'a' + i as u8; 600]))
            .collect(),
    );
    let service = Arc::new(DnsService::with_cache(store.clone(), zones, cache, cuts));
    Node { store, service }
}

async fn start_udp_tcp(
    service: Arc<DnsService>,
    max_connections: usize,
) -> (DnsListeners, CancellationToken) {
    let shutdown = CancellationToken::new();
    let options = DnsListenerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_workers: 2,
        pin_udp_workers: true,
        tcp_max_connections: max_connections,
        tcp_idle_timeout: Duration::from_secs(30),
        allow_transfer: vec!["127.0.0.1".parse().unwrap()],
        tsig_keys: Vec::new(),
        notify: Vec::new(),
        rate_limit: Default::default(),
        metrics: true,
    };
    let listeners = DnsListeners::start(&options, service, shutdown.clone())
        .await
        .unwrap();
    (listeners, shutdown)
}

fn query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// One query over UDP from a blocking socket (on a blocking thread).
async fn udp_ask(server: SocketAddr, message: Vec<u8>) -> Message {
    let raw = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(GUARD)).unwrap();
        socket.send_to(&message, server).unwrap();
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    })
    .await
    .unwrap();
    Message::from_vec(&raw).unwrap()
}

async fn read_framed(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    guard("tcp answer length", stream.read_exact(&mut len))
        .await
        .unwrap();
    let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
    guard("tcp answer", stream.read_exact(&mut raw))
        .await
        .unwrap();
    Message::from_vec(&raw).unwrap()
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut f = (message.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(message);
    f
}

fn txt_strings(message: &Message) -> Vec<Vec<String>> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(txt) => txt
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect()
}

fn soa_serial(message: &Message) -> u32 {
    let soa = message
        .answers
        .iter()
        .chain(&message.authorities)
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
    soa.expect("an SOA record")
}

#[tokio::test]
async fn answers_over_udp_with_truncation_and_the_serial_of_the_last_write() {
    let node = node();
    let (l, shutdown) = start_udp_tcp(node.service.clone(), 16).await;

    let m = udp_ask(l.udp, query(7, SMALL, RecordType::TXT, Some(1232))).await;
    assert_eq!(m.id, 7);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative && !m.truncation);
    assert_eq!(
        txt_strings(&m),
        [["idx=1", "type=URL", "data=https://example.com/small"]]
    );
    // The same question again is served from the answer cache, with the
    // new id.
    let again = udp_ask(l.udp, query(8, SMALL, RecordType::TXT, Some(1232))).await;
    assert_eq!(again.id, 8);
    assert_eq!(again.answers, m.answers);

    let m = udp_ask(l.udp, query(9, BIG, RecordType::TXT, Some(1232))).await;
    assert!(m.truncation && m.answers.is_empty());
    let m = udp_ask(l.udp, query(10, BIG, RecordType::TXT, None)).await;
    assert!(m.truncation, "512 octets without EDNS");

    let m = udp_ask(
        l.udp,
        query(
            11,
            "NOPE._.1.100.88.idnode.internal.",
            RecordType::TXT,
            None,
        ),
    )
    .await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    let before = soa_serial(&m);
    assert_eq!(before, node.store.last_sequence() as u32);

    put(
        &*node.store,
        "88.100.1/NEW",
        vec![Value::new(1, "URL", "https://example.com/new")],
    );
    let m = udp_ask(l.udp, query(12, APEX, RecordType::SOA, None)).await;
    assert!(soa_serial(&m) > before);
    let m = udp_ask(
        l.udp,
        query(
            13,
            "new._.1.100.88.IDNODE.internal.",
            RecordType::Unknown(256),
            None,
        ),
    )
    .await;
    assert_eq!(m.answers.len(), 1);

    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn tcp_answers_pipelined_queries_in_order_and_whole() {
    let node = node();
    let (l, shutdown) = start_udp_tcp(node.service.clone(), 16).await;
    let mut stream = guard("connect", TcpStream::connect(l.tcp)).await.unwrap();
    // Two queries in one write, then a third split across writes.
    let mut both = framed(&query(1, BIG, RecordType::TXT, None));
    both.extend(framed(&query(2, SMALL, RecordType::TXT, None)));
    stream.write_all(&both).await.unwrap();
    let first = read_framed(&mut stream).await;
    let second = read_framed(&mut stream).await;
    assert_eq!((first.id, second.id), (1, 2));
    assert!(!first.truncation);
    let strings = txt_strings(&first);
    assert_eq!(strings.len(), 8);
    assert!(
        strings
            .iter()
            .all(|s| s[2..].concat().len() == "data=".len() + 600)
    );
    assert_eq!(
        txt_strings(&second),
        [["idx=1", "type=URL", "data=https://example.com/small"]]
    );

    let third = framed(&query(3, APEX, RecordType::NS, None));
    let (a, b) = third.split_at(5);
    stream.write_all(a).await.unwrap();
    stream.flush().await.unwrap();
    stream.write_all(b).await.unwrap();
    let m = read_framed(&mut stream).await;
    assert_eq!(m.id, 3);
    assert_eq!(m.answers[0].record_type(), RecordType::NS);

    // Something that is no query closes the connection.
    stream.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut rest = Vec::new();
    guard("close", stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    // Counted: four requests, three answered (NOERROR), the last closed.
    let c = &l.tcp_counts;
    assert_eq!(c.requests.load(Relaxed), 4);
    assert_eq!(c.answered.load(Relaxed), 3);
    assert_eq!(c.succeeded.load(Relaxed), 3);
    assert_eq!(c.latency_totals().count(), 3);

    // A zone transfer over UDP is not served: NOTIMP.
    let m = udp_ask(l.udp, query(4, APEX, RecordType::AXFR, None)).await;
    assert_eq!(m.response_code, ResponseCode::NotImp);

    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn tcp_connections_over_the_cap_are_closed() {
    let node = node();
    let (l, shutdown) = start_udp_tcp(node.service.clone(), 1).await;
    let mut first = guard("connect", TcpStream::connect(l.tcp)).await.unwrap();
    first
        .write_all(&framed(&query(1, SMALL, RecordType::TXT, None)))
        .await
        .unwrap();
    assert_eq!(read_framed(&mut first).await.id, 1); // it holds the permit
    let mut second = guard("connect", TcpStream::connect(l.tcp)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = guard("capped connection closed", second.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(first);
    // The permit comes back once the server sees the close.
    guard("a connection after the first closed", async {
        loop {
            let mut s = TcpStream::connect(l.tcp).await.unwrap();
            if s.write_all(&framed(&query(2, SMALL, RecordType::TXT, None)))
                .await
                .is_ok()
            {
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).await.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    shutdown.cancel();
    l.join().await;
}

/// Sends a valid query with `marker_id` after a burst and collects the
/// answers that come before its own. The kernel hashes one client socket
/// to one worker, which takes its datagrams in order, so every answer to
/// the burst precedes the marker's. The marker is sent again while its
/// answer does not come (a datagram may be dropped under a burst).
fn drain_until_marker(socket: &UdpSocket, server: SocketAddr, marker_id: u16) -> Vec<Vec<u8>> {
    let marker = query(marker_id, APEX, RecordType::SOA, None);
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 65535];
    for _ in 0..60 {
        socket.send_to(&marker, server).unwrap();
        while let Ok(n) = socket.recv(&mut buf) {
            let answer = &buf[..n];
            if answer.starts_with(&marker_id.to_be_bytes())
                && let Ok(m) = Message::from_vec(answer)
                && m.response_code == ResponseCode::NoError
                && !m.answers.is_empty()
            {
                return answers;
            }
            answers.push(answer.to_vec());
        }
    }
    panic!("the node stopped answering");
}

#[tokio::test]
async fn hostile_datagrams_do_not_stop_the_workers() {
    let node = node();
    let (l, shutdown) = start_udp_tcp(node.service.clone(), 16).await;
    let server = l.udp;
    let answers = tokio::task::spawn_blocking(move || {
        let valid = query(5, SMALL, RecordType::TXT, None);
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            valid[..11].to_vec(),
            valid[..valid.len() - 3].to_vec(),
        ];
        // A question name that points at itself, and one that points past
        // the end.
        let mut looped = valid[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
        junk.push(looped);
        let mut past = valid[..12].to_vec();
        past.extend_from_slice(&[0xc0, 0xff, 0, 16, 0, 1]);
        junk.push(past);
        // A response, which must not be answered.
        let mut response = valid.clone();
        response[2] |= 0x80;
        junk.push(response);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 600) as usize;
            junk.push((0..len).map(|i| (seed >> (i % 56)) as u8).collect());
        }
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut answers = Vec::new();
        for (n, burst) in junk.chunks(50).enumerate() {
            for j in burst {
                socket.send_to(j, server).unwrap();
            }
            answers.extend(drain_until_marker(&socket, server, 0x4a00 + n as u16));
        }
        answers
    })
    .await
    .unwrap();
    let mut formerr = 0;
    for a in &answers {
        // Whatever came back is a well-formed response.
        let m = Message::from_vec(a).unwrap();
        assert_eq!(m.message_type, MessageType::Response);
        formerr += usize::from(m.response_code == ResponseCode::FormErr);
    }
    // At least the pointer loop and the name past the end, whose headers
    // are readable, get FORMERR.
    assert!(formerr >= 2, "{formerr} FORMERR answers");
    let m = udp_ask(l.udp, query(6, SMALL, RecordType::TXT, None)).await;
    assert_eq!(m.answers.len(), 1);
    shutdown.cancel();
    l.join().await;
}

fn quic_options() -> QuicOptions {
    QuicOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        max_connections: 16,
        max_streams_per_connection: 64,
        idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        certificate: CertificateSource::default(),
        metrics: true,
    }
}

/// A quinn client endpoint that trusts the listener's certificate file and
/// offers `alpn`.
fn doq_endpoint(l: &QuicListener, alpn: &[u8]) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&l.certificate).unwrap())
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// One DoQ exchange on its own stream: the raw answer bytes (length
/// prefix included).
async fn doq_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = guard("open", conn.open_bi())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    guard("answer", recv.read_to_end(70_000))
        .await
        .map_err(|e| e.to_string())
}

async fn doq_ask(conn: &quinn::Connection, name: &str, qtype: RecordType) -> Message {
    let raw = doq_exchange(conn, &framed(&query(0, name, qtype, None)))
        .await
        .unwrap();
    let len = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
    assert_eq!(len, raw.len() - 2, "one length-prefixed answer");
    Message::from_vec(&raw[2..]).unwrap()
}

#[tokio::test]
async fn answers_over_quic_one_query_per_stream() {
    let node = node();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let l = QuicListener::start_dns(
        &quic_options(),
        node.service.clone(),
        dir.path(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let endpoint = doq_endpoint(&l, DOQ_ALPN);
    let conn = guard("connect", async {
        endpoint
            .connect(l.addr, "localhost")
            .unwrap()
            .await
            .unwrap()
    })
    .await;

    let m = doq_ask(&conn, SMALL, RecordType::TXT).await;
    assert_eq!(m.id, 0);
    assert_eq!(
        txt_strings(&m),
        [["idx=1", "type=URL", "data=https://example.com/small"]]
    );
    // Too large for UDP, whole over QUIC.
    let m = doq_ask(&conn, BIG, RecordType::TXT).await;
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 8);
    // Many streams at once on the one connection.
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let conn = conn.clone();
        asks.spawn(async move { doq_ask(&conn, APEX, RecordType::SOA).await });
    }
    while let Some(m) = asks.join_next().await {
        assert_eq!(soa_serial(&m.unwrap()), node.store.last_sequence() as u32);
    }
    let m = doq_ask(&conn, "NOPE._.1.100.88.idnode.internal.", RecordType::TXT).await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    // Counted: 19 queries answered, all NOERROR but the last, each timed.
    let c = l.counts.clone();
    counted("the counts", || c.answered.load(Relaxed) == 19).await;
    assert_eq!(c.requests.load(Relaxed), 19);
    assert_eq!(c.succeeded.load(Relaxed), 18);
    assert_eq!(c.latency_totals().count(), 19);

    // A message id other than 0 is a protocol error: the connection is
    // closed with DOQ_PROTOCOL_ERROR.
    let err = doq_exchange(&conn, &framed(&query(9, SMALL, RecordType::TXT, None)))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let reason = guard("close", conn.closed()).await;
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(doq_error::PROTOCOL_ERROR)
            );
        }
        other => panic!("closed otherwise: {other}"),
    }

    // So is a length prefix that disagrees with the stream.
    let conn = guard("connect", async {
        endpoint
            .connect(l.addr, "localhost")
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    let mut bytes = framed(&query(0, SMALL, RecordType::TXT, None));
    bytes[1] += 1;
    assert!(doq_exchange(&conn, &bytes).await.is_err());
    assert!(matches!(
        guard("close", conn.closed()).await,
        quinn::ConnectionError::ApplicationClosed(_)
    ));

    // A client that offers only another protocol is not served.
    let hdl = doq_endpoint(&l, b"hdl");
    let refused = guard("handshake", async {
        hdl.connect(l.addr, "localhost").unwrap().await
    })
    .await;
    assert!(refused.is_err());

    shutdown.cancel();
    l.join().await;
}
