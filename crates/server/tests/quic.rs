//! Handle over QUIC over real loopback sockets, with the in-memory store:
//! the idnode client, and raw quinn connections that misbehave.
//!
//! No assertion here depends on timing: timeouts only guard against hangs.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::HandleService;
use idnode_client::{Client, ClientError, ClientOptions, Query, TlsOptions, Transport};
use idnode_core::{PrefixInfo, Record, Value};
use idnode_handle::{Response, ResponseBody, code};
use idnode_server::{CertificateSource, QuicListener, QuicOptions};
use idnode_store::{MemoryStore, Space, Store};
use quinn::rustls;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
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

fn service() -> Arc<HandleService> {
    let store = MemoryStore::new();
    let mut txn = store.begin().unwrap();
    let mut records = vec![
        Record {
            identifier: "88.100.1/SMALL".into(),
            values: vec![Value::new(1, "URL", "https://example.com/small")],
            version: 0,
        },
        // Too large for one datagram, and for UDP altogether in practice.
        Record {
            identifier: "88.100.1/BIG".into(),
            values: (1..=8)
                .map(|i| Value::new(i, "spec", vec![b'a' + i as u8; 2000]))
                .collect(),
            version: 0,
        },
    ];
    for i in 0..64 {
        records.push(Record {
            identifier: format!("88.100.1/ITEM-{i}"),
            values: vec![Value::new(
                1,
                "URL",
                format!("https://example.com/item/{i}"),
            )],
            version: 0,
        });
    }
    for r in &records {
        txn.put(
            Space::Records,
            r.identifier.to_ascii_uppercase().as_bytes(),
            r.encode().into(),
        );
    }
    // Prefix 88.100.1 homed here, so misses under it are HANDLE_NOT_FOUND.
    let info = PrefixInfo::homed_here("88.100.1", 0);
    txn.put(Space::Prefixes, b"88.100.1", info.encode().into());
    txn.commit().unwrap();
    Arc::new(HandleService::new(Arc::new(store)))
}

fn options() -> QuicOptions {
    QuicOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        max_connections: 16,
        max_streams_per_connection: 256,
        idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        certificate: CertificateSource::default(),
        metrics: true,
    }
}

async fn start(options: &QuicOptions, data_dir: &Path) -> (QuicListener, CancellationToken) {
    let shutdown = CancellationToken::new();
    let listener = QuicListener::start(options, service(), data_dir, shutdown.clone())
        .await
        .unwrap();
    (listener, shutdown)
}

fn pinned(l: &QuicListener) -> TlsOptions {
    TlsOptions::pinned(idnode_client::Fingerprint(l.fingerprint.0))
}

async fn client(l: &QuicListener) -> Client {
    Client::connect(ClientOptions {
        server: l.addr,
        transport: Transport::Quic,
        timeout: GUARD,
        tls: pinned(l),
    })
    .await
    .unwrap()
}

fn query(id: &str) -> Query {
    Query {
        identifier: id.into(),
        ..Default::default()
    }
}

fn values(body: ResponseBody) -> Vec<Value> {
    match body {
        ResponseBody::Resolution { values, .. } => values,
        other => panic!("not a resolution: {other:?}"),
    }
}

/// Checks certificates against the listener's certificate file, and counts
/// the checks: a resumed TLS session presents no certificate.
#[derive(Debug)]
struct CountingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    checks: AtomicUsize,
}

impl rustls::client::danger::ServerCertVerifier for CountingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A raw quinn client endpoint that trusts the listener's certificate file.
fn raw_endpoint(l: &QuicListener) -> (quinn::Endpoint, Arc<CountingVerifier>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&l.certificate).unwrap())
        .unwrap();
    let verifier = Arc::new(CountingVerifier {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap(),
        checks: AtomicUsize::new(0),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"hdl".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    (endpoint, verifier)
}

async fn raw_connect(endpoint: &quinn::Endpoint, l: &QuicListener) -> quinn::Connection {
    guard("raw connect", async {
        endpoint
            .connect(l.addr, "localhost")
            .unwrap()
            .await
            .unwrap()
    })
    .await
}

async fn raw_connection(l: &QuicListener) -> quinn::Connection {
    raw_connect(&raw_endpoint(l).0, l).await
}

/// One request on its own stream of `conn`; the decoded answer.
async fn raw_resolve(conn: &quinn::Connection, request_id: u32, handle: &str) -> Response {
    let (mut send, mut recv) = guard("open", conn.open_bi()).await.unwrap();
    let mut request = Vec::new();
    idnode_handle::encode_resolution_request(
        &mut request,
        &idnode_handle::RequestParams {
            request_id,
            handle: handle.as_bytes(),
            expiration: u32::MAX,
            site_serial: -1,
            ..Default::default()
        },
    );
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    let answer = guard("answer", recv.read_to_end(1 << 20)).await.unwrap();
    idnode_handle::decode_response(&answer).unwrap()
}

#[tokio::test]
async fn resolves_over_quic_including_answers_too_large_for_udp() {
    let dir = tempfile::tempdir().unwrap();
    let (l, shutdown) = start(&options(), dir.path()).await;
    let c = client(&l).await;
    let r = c.resolve(&query("88.100.1/small")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(
        values(r.body)[0].data.as_ref(),
        b"https://example.com/small"
    );
    let r = c.resolve(&query("88.100.1/BIG")).await.unwrap();
    let v = values(r.body);
    assert_eq!(v.len(), 8);
    assert!(v.iter().all(|v| v.data.len() == 2000));
    assert_eq!(v[7].data[0], b'a' + 8);
    let r = c.resolve(&query("88.100.1/NONE")).await.unwrap();
    assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
    assert_eq!(l.connections(), 1, "every request went over one connection");
    // Counted: three requests answered, two of them SUCCESS, each timed.
    let c = l.counts.clone();
    counted("the counts", || c.answered.load(Ordering::Relaxed) == 3).await;
    assert_eq!(c.requests.load(Ordering::Relaxed), 3);
    assert_eq!(c.succeeded.load(Ordering::Relaxed), 2);
    assert_eq!(c.latency_totals().count(), 3);

    // Trusting the generated certificate file as a CA works too (it names
    // 127.0.0.1), and so does insecure mode.
    for tls in [TlsOptions::ca_file(&l.certificate), TlsOptions::insecure()] {
        let c = Client::connect(ClientOptions {
            server: l.addr,
            transport: Transport::Quic,
            timeout: GUARD,
            tls,
        })
        .await
        .unwrap();
        let r = c.resolve(&query("88.100.1/SMALL")).await.unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS);
    }

    // A wrong pin is refused during the handshake.
    let err = Client::connect(ClientOptions {
        server: l.addr,
        transport: Transport::Quic,
        timeout: GUARD,
        tls: TlsOptions::pinned(idnode_client::Fingerprint([7; 32])),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Quic { .. }), "{err}");
    assert!(err.to_string().contains("fingerprint"), "{err}");

    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_streams_on_one_connection_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (l, shutdown) = start(&options(), dir.path()).await;
    let mut c = client(&l).await;
    c.max_in_flight = 64;
    let queries: Vec<Query> = (0..64)
        .map(|i| query(&format!("88.100.1/item-{i}")))
        .collect();
    let results = guard("resolve_many", c.resolve_many(&queries)).await;
    assert_eq!(results.len(), 64);
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        let v = values(r.body);
        assert_eq!(
            v[0].data.as_ref(),
            format!("https://example.com/item/{i}").as_bytes()
        );
    }
    // The same from 64 tasks sharing the client.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let c = c.clone();
        tasks.spawn(async move {
            let r = c
                .resolve(&query(&format!("88.100.1/ITEM-{i}")))
                .await
                .unwrap();
            (i, values(r.body))
        });
    }
    while let Some(done) = guard("tasks", tasks.join_next()).await {
        let (i, v) = done.unwrap();
        assert_eq!(
            v[0].data.as_ref(),
            format!("https://example.com/item/{i}").as_bytes()
        );
    }
    assert_eq!(l.connections(), 1);
    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test]
async fn streams_that_never_finish_cannot_exhaust_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.max_streams_per_connection = 8;
    // Long enough for a well-behaved request even on a loaded machine.
    opts.request_timeout = Duration::from_secs(2);
    let (l, shutdown) = start(&opts, dir.path()).await;

    // A client takes every stream its connection may open and sends half
    // an envelope on each, never finishing.
    let bad = raw_connection(&l).await;
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = guard("open", bad.open_bi()).await.unwrap();
        send.write_all(&[2, 11, 0, 0, 0]).await.unwrap();
        stuck.push((send, recv));
    }

    // A well-behaved client still resolves.
    let good = client(&l).await;
    let r = good.resolve(&query("88.100.1/SMALL")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);

    // The stuck streams are reset with the timeout code...
    for (send, mut recv) in stuck {
        let stopped = guard("stopped", send.stopped()).await;
        assert_eq!(stopped, Ok(Some(quinn::VarInt::from_u32(1))));
        match guard("read", recv.read_to_end(1024)).await {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code, quinn::VarInt::from_u32(1));
            }
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    // ...which gives their stream credit back: the same connection resolves
    // on a new stream.
    let r = raw_resolve(&bad, 77, "88.100.1/SMALL").await;
    assert_eq!(r.envelope.request_id, 77);
    assert_eq!(r.header.response_code, code::SUCCESS);

    // Bytes that are not a Handle message get the stream reset (code 3).
    let (mut send, mut recv) = guard("open", bad.open_bi()).await.unwrap();
    send.write_all(&[0xff; 40]).await.unwrap();
    send.finish().unwrap();
    match guard("read", recv.read_to_end(1024)).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code, quinn::VarInt::from_u32(3));
        }
        other => panic!("expected a reset, got {other:?}"),
    }

    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_the_client_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.idle_timeout = Duration::from_secs(1);
    let (l, shutdown) = start(&opts, dir.path()).await;
    let c = client(&l).await;
    let r = c.resolve(&query("88.100.1/SMALL")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    // The server lets the silent connection go.
    guard("idle close", async {
        while l.connections() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The client notices and opens a new connection for the next request.
    let r = c.resolve(&query("88.100.1/SMALL")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.max_connections = 1;
    let (l, shutdown) = start(&opts, dir.path()).await;
    let first = client(&l).await;
    let err = Client::connect(ClientOptions {
        server: l.addr,
        transport: Transport::Quic,
        timeout: GUARD,
        tls: pinned(&l),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Quic { .. }), "{err}");
    // The first connection is unaffected.
    let r = first.resolve(&query("88.100.1/SMALL")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test]
async fn the_generated_certificate_is_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (l, shutdown) = start(&options(), dir.path()).await;
    let first = l.fingerprint;
    assert_eq!(l.certificate, dir.path().join("tls/cert.pem"));
    shutdown.cancel();
    guard("join", l.join()).await;

    let (l, shutdown) = start(&options(), dir.path()).await;
    assert_eq!(l.fingerprint, first);
    // A client that pinned the first start's fingerprint still connects.
    let c = client(&l).await;
    let r = c.resolve(&query("88.100.1/SMALL")).await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("tls/key.pem");
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    shutdown.cancel();
    guard("join", l.join()).await;
}

#[tokio::test]
async fn a_second_connection_resumes_the_tls_session() {
    let dir = tempfile::tempdir().unwrap();
    let (l, shutdown) = start(&options(), dir.path()).await;
    let (endpoint, verifier) = raw_endpoint(&l);
    let first = raw_connect(&endpoint, &l).await;
    // A round trip, so the session tickets sent after the handshake are in.
    let r = raw_resolve(&first, 1, "88.100.1/SMALL").await;
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(verifier.checks.load(Ordering::SeqCst), 1);
    first.close(quinn::VarInt::from_u32(0), b"done");
    // The resumed handshake skips the certificate, so no second check.
    let second = raw_connect(&endpoint, &l).await;
    let r = raw_resolve(&second, 2, "88.100.1/SMALL").await;
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(
        verifier.checks.load(Ordering::SeqCst),
        1,
        "the session resumed"
    );
    shutdown.cancel();
    guard("join", l.join()).await;
}

/// A client whose address changes (NAT rebinding, a scanner moving between
/// networks) keeps its connection: its packets reach the endpoint that
/// owns the connection by their connection ID, whichever of the node's
/// endpoints the new address would hash to. Eight moves over two
/// endpoints: with the address hash each would go astray half the time.
#[tokio::test]
async fn a_client_that_moves_keeps_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (l, shutdown) = start(&options(), dir.path()).await;
    let (endpoint, _) = raw_endpoint(&l);
    let conn = raw_connect(&endpoint, &l).await;
    let first = raw_resolve(&conn, 1, "88.100.1/SMALL").await;
    assert_eq!(first.header.response_code, code::SUCCESS);
    for n in 0..8u32 {
        let moved = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = moved.local_addr().unwrap().port();
        endpoint.rebind(moved).unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            raw_resolve(&conn, 2 + n, &format!("88.100.1/ITEM-{n}")),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer after move {n} (to port {port})"));
        assert_eq!(answer.header.response_code, code::SUCCESS, "move {n}");
        let url = format!("https://example.com/item/{n}");
        assert_eq!(values(answer.body)[0].data.as_ref(), url.as_bytes());
        assert!(conn.close_reason().is_none(), "move {n}");
    }
    shutdown.cancel();
    l.join().await;
}
