//! The Handle listeners over real loopback sockets, with the in-memory store.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::HandleService;
use idnode_client::{Client, Query, Transport};
use idnode_core::{PrefixInfo, Record, Value};
use idnode_handle::{ResponseBody, code};
use idnode_server::{HandleListenerOptions, HandleListeners};
use idnode_store::{MemoryStore, Space, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn start(max_connections: usize) -> (HandleListeners, CancellationToken) {
    start_counting(max_connections, true).await
}

async fn start_counting(
    max_connections: usize,
    metrics: bool,
) -> (HandleListeners, CancellationToken) {
    let store = MemoryStore::new();
    let mut txn = store.begin().unwrap();
    let small = Record {
        identifier: "88.100.1/SMALL".into(),
        values: vec![Value::new(1, "URL", "https://example.com/small")],
        version: 0,
    };
    let big = Record {
        identifier: "88.100.1/BIG".into(),
        values: (1..=8)
            .map(|i| Value::new(i, "spec", vec![b'a' + i as u8; 2000]))
            .collect(),
        version: 0,
    };
    for r in [&small, &big] {
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
    let shutdown = CancellationToken::new();
    let options = HandleListenerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_workers: 2,
        pin_udp_workers: true,
        tcp_max_connections: max_connections,
        tcp_idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_millis(300),
        rate_limit: Default::default(),
        metrics,
    };
    let service = Arc::new(HandleService::new(Arc::new(store)));
    let listeners = HandleListeners::start(&options, service, shutdown.clone())
        .await
        .unwrap();
    (listeners, shutdown)
}

fn values(body: ResponseBody) -> Vec<Value> {
    match body {
        ResponseBody::Resolution { values, .. } => values,
        other => panic!("not a resolution: {other:?}"),
    }
}

fn query(id: &str) -> Query {
    Query {
        identifier: id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn resolves_over_udp_and_tcp_including_multi_datagram_answers() {
    let (l, shutdown) = start(16).await;
    for (addr, transport) in [(l.udp, Transport::Udp), (l.tcp, Transport::Tcp)] {
        let client = Client::new(addr, transport);
        let r = client.resolve(&query("88.100.1/small")).await.unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS);
        assert_eq!(
            values(r.body)[0].data.as_ref(),
            b"https://example.com/small"
        );
        let r = client.resolve(&query("88.100.1/BIG")).await.unwrap();
        let v = values(r.body);
        assert_eq!(v.len(), 8);
        assert!(v.iter().all(|v| v.data.len() == 2000));
        assert_eq!(v[7].data[0], b'a' + 8);
        let r = client.resolve(&query("88.100.1/NONE")).await.unwrap();
        assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
        // A request too long for one datagram is split by the client and
        // reassembled by the server before it is answered.
        let long = format!("88.100.1/{}", "L".repeat(700));
        let r = client.resolve(&query(&long)).await.unwrap();
        assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
    }
    // UDP: the one-datagram answers are counted and timed from the
    // kernel's receive timestamp (the long answer, sent by the responder
    // itself, is not; the long request came in two datagrams).
    let udp = l.counts.totals();
    assert_eq!(udp.received, 5);
    assert_eq!(udp.answered, 3);
    assert_eq!(udp.codes[0], 1, "one SUCCESS");
    assert_eq!(udp.latency.count(), 3);
    let seen = l.counts.take_extremes();
    assert!(seen.any() && seen.min_ns <= seen.max_ns, "{seen:?}");
    // TCP: every request, answered and timed, the two found ones success.
    use std::sync::atomic::Ordering::Relaxed;
    let tcp = &l.tcp_counts;
    assert_eq!(tcp.requests.load(Relaxed), 4);
    assert_eq!(tcp.answered.load(Relaxed), 4);
    assert_eq!(tcp.succeeded.load(Relaxed), 2);
    assert_eq!(tcp.latency_totals().count(), 4);
    shutdown.cancel();
    l.join().await;
}

/// With metrics off the listeners answer as before and count nothing.
#[tokio::test]
async fn with_metrics_off_nothing_is_counted() {
    let (l, shutdown) = start_counting(16, false).await;
    for (addr, transport) in [(l.udp, Transport::Udp), (l.tcp, Transport::Tcp)] {
        let client = Client::new(addr, transport);
        let r = client.resolve(&query("88.100.1/small")).await.unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS);
    }
    assert!(!l.counts.enabled && !l.tcp_counts.enabled);
    assert_eq!(l.counts.totals(), Default::default());
    assert!(!l.counts.take_extremes().any());
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(l.tcp_counts.requests.load(Relaxed), 0);
    assert_eq!(l.tcp_counts.latency_totals().count(), 0);
    shutdown.cancel();
    l.join().await;
}

/// Many requests in flight at once arrive at a worker together and are
/// answered as one batch (their records read with one multi-get); each
/// answer must still be the one to its own request, whatever else was in
/// the batch: records, misses, answers and requests over one datagram.
#[tokio::test]
async fn requests_answered_in_one_batch_each_get_their_own_answer() {
    let (l, shutdown) = start(16).await;
    let long = format!("88.100.1/{}", "L".repeat(700));
    let kinds = ["88.100.1/small", "88.100.1/NONE", "88.100.1/BIG", &long];
    let queries: Vec<Query> = (0..400).map(|n| query(kinds[n % kinds.len()])).collect();
    // 16 in flight: batches still form, and the answers of the large
    // records in flight at once (about 16 KB each, in 33 datagrams) fit the
    // client's default receive buffer: UDP drops what overflows it.
    let mut client = Client::new(l.udp, Transport::Udp);
    client.max_in_flight = 16;
    let answers = client.resolve_many(&queries).await;
    for (n, answer) in answers.into_iter().enumerate() {
        let r = answer.unwrap_or_else(|e| panic!("query {n}: {e}"));
        match n % kinds.len() {
            0 => assert_eq!(
                values(r.body)[0].data.as_ref(),
                b"https://example.com/small",
                "query {n}"
            ),
            2 => assert_eq!(values(r.body).len(), 8, "query {n}"),
            _ => assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND, "query {n}"),
        }
    }
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn connection_cap_and_slow_requests_are_enforced() {
    let (l, shutdown) = start(1).await;
    // One connection holds the only permit...
    let mut first = tokio::net::TcpStream::connect(l.tcp).await.unwrap();
    first.write_all(&[2, 11]).await.unwrap(); // ...and trickles a request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A second connection is closed at once.
    let mut second = tokio::net::TcpStream::connect(l.tcp).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("the capped connection is closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The slow request is cut off after the request timeout...
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .expect("a slow request is cut off")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // ...which frees the permit for a well-behaved client.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = Client::new(l.tcp, Transport::Tcp)
        .resolve(&query("88.100.1/SMALL"))
        .await
        .unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    shutdown.cancel();
    l.join().await;
}
