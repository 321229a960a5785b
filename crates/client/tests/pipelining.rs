//! The client against small fake servers that answer with the real
//! resolver, but out of order: many requests in flight on one socket or
//! connection must each get their own answer.
//!
//! No assertion here depends on timing: timeouts only guard against hangs.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::{HandleService, Outcome, Scratch};
use idnode_client::{Client, ClientError, ClientOptions, Query, Transport};
use idnode_core::{Record, Value};
use idnode_handle::{ResponseBody, code, flags, for_each_datagram, frame_len};
use idnode_store::{MemoryStore, Space, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const GUARD: Duration = Duration::from_secs(60);
const N: usize = 32;

fn service() -> Arc<HandleService> {
    let store = MemoryStore::new();
    let mut txn = store.begin().unwrap();
    for i in 0..N {
        // Every fourth record spans several datagrams.
        let values = if i.is_multiple_of(4) {
            (1..=3)
                .map(|k| Value::new(k, "spec", vec![b'a' + (i % 26) as u8; 700]))
                .collect()
        } else {
            vec![Value::new(1, "URL", format!("https://example.com/{i}"))]
        };
        let r = Record {
            identifier: format!("88.100.1/ITEM-{i}"),
            values,
            version: 0,
        };
        txn.put(
            Space::Records,
            r.identifier.to_ascii_uppercase().as_bytes(),
            r.encode().into(),
        );
    }
    txn.commit().unwrap();
    Arc::new(HandleService::new(Arc::new(store)))
}

fn answer(service: &HandleService, request: &[u8]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut out = Vec::new();
    let outcome = service.respond(request, now, &mut out, &mut Scratch::default());
    assert_ne!(outcome, Outcome::Drop);
    out
}

fn queries() -> Vec<Query> {
    (0..N)
        .map(|i| Query {
            identifier: format!("88.100.1/ITEM-{i}"),
            ..Default::default()
        })
        .collect()
}

fn check(i: usize, body: ResponseBody) {
    let ResponseBody::Resolution { handle, values } = body else {
        panic!("not a resolution: {body:?}");
    };
    assert_eq!(handle, format!("88.100.1/ITEM-{i}"));
    if i.is_multiple_of(4) {
        assert_eq!(values.len(), 3);
        assert!(
            values
                .iter()
                .all(|v| v.data.as_ref() == vec![b'a' + (i % 26) as u8; 700])
        );
    } else {
        assert_eq!(
            values[0].data.as_ref(),
            format!("https://example.com/{i}").as_bytes()
        );
    }
}

async fn client(server: SocketAddr, transport: Transport) -> Client {
    let mut c = Client::connect(ClientOptions {
        server,
        transport,
        timeout: GUARD,
        ..Default::default()
    })
    .await
    .unwrap();
    c.max_in_flight = N;
    c
}

/// Waits for `N` requests, then answers them last first, interleaving the
/// datagrams of the answers that span several.
async fn reversing_udp_server(socket: UdpSocket, service: Arc<HandleService>) {
    let mut buf = vec![0u8; 65536];
    let mut requests = Vec::new();
    let mut peer = None;
    while requests.len() < N {
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        peer = Some(from);
        requests.push(buf[..n].to_vec());
    }
    let peer = peer.unwrap();
    let mut answers: Vec<Vec<Vec<u8>>> = requests
        .iter()
        .rev()
        .map(|r| {
            let mut datagrams = Vec::new();
            for_each_datagram(&answer(&service, r), |d| datagrams.push(d.to_vec()));
            datagrams
        })
        .collect();
    while answers.iter().any(|a| !a.is_empty()) {
        for a in answers.iter_mut().filter(|a| !a.is_empty()) {
            socket.send_to(&a.remove(0), peer).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_out_of_order_reach_their_requests() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = tokio::spawn(reversing_udp_server(socket, service()));
    let c = client(addr, Transport::Udp).await;
    let results = tokio::time::timeout(GUARD, c.resolve_many(&queries()))
        .await
        .unwrap();
    for (i, r) in results.into_iter().enumerate() {
        check(i, r.unwrap().body);
    }
    server.await.unwrap();
}

#[tokio::test]
async fn udp_sends_once_more_when_the_first_request_is_lost() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let service = service();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        // Drop the first copy, answer the second.
        let _ = socket.recv_from(&mut buf).await.unwrap();
        let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
        let reply = answer(&service, &buf[..n]);
        socket.send_to(&reply, peer).await.unwrap();
    });
    let mut c = Client::new(addr, Transport::Udp);
    // The retry goes out after half of this.
    c.timeout = Duration::from_secs(2);
    let r = tokio::time::timeout(GUARD, c.resolve(&queries()[1]))
        .await
        .unwrap()
        .unwrap();
    check(1, r.body);
    server.await.unwrap();
}

#[tokio::test]
async fn udp_to_a_closed_port_fails_with_the_icmp_error() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    let mut c = Client::new(addr, Transport::Udp);
    c.timeout = GUARD;
    let err = c.resolve(&queries()[0]).await.unwrap_err();
    match err {
        ClientError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected connection refused, got {other}"),
    }
}

/// Accepts one connection, waits for `N` requests on it, answers them last
/// first, then answers the rest in order until the client closes.
async fn reversing_tcp_server(listener: TcpListener, service: Arc<HandleService>) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut requests = Vec::new();
    loop {
        while let Ok(Some(total)) = frame_len(&buf) {
            requests.push(buf.drain(..total).collect::<Vec<u8>>());
        }
        if requests.len() >= N {
            break;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the client closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    for r in requests.iter().rev() {
        let header = idnode_handle::Header::decode(&r[20..]).unwrap();
        assert!(
            header.has(flags::KC),
            "pipelined requests keep the connection"
        );
        stream.write_all(&answer(&service, r)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelines_on_one_connection_and_matches_answers_by_id() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(reversing_tcp_server(listener, service()));
    let c = client(addr, Transport::Tcp).await;
    // From many tasks at once, on clones sharing the connection.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, q) in queries().into_iter().enumerate() {
        let c = c.clone();
        tasks.spawn(async move { (i, c.resolve(&q).await) });
    }
    while let Some(done) = tokio::time::timeout(GUARD, tasks.join_next())
        .await
        .unwrap()
    {
        let (i, r) = done.unwrap();
        check(i, r.unwrap().body);
    }
    server.await.unwrap();
}

#[tokio::test]
async fn tcp_reconnects_after_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = service();
    let server = tokio::spawn(async move {
        // Two connections, one request each, then close.
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 4096];
            let total = loop {
                if let Ok(Some(total)) = frame_len(&buf) {
                    break total;
                }
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            };
            stream
                .write_all(&answer(&service, &buf[..total]))
                .await
                .unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    let c = Client::new(addr, Transport::Tcp);
    for i in [2, 3] {
        let r = tokio::time::timeout(GUARD, c.resolve(&queries()[i]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS);
        check(i, r.body);
    }
    server.await.unwrap();
}
