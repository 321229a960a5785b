//! Zone transfers (AXFR, IXFR) over TCP and NOTIFY over UDP, over real
//! loopback sockets with the in-memory store; read with hickory-proto.
//!
//! No assertion here depends on timing: timeouts only guard against hangs.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::ResponseCache;
use idnode_core::{Permissions, Record as StoredRecord, Value};
use idnode_dns::hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use idnode_dns::hickory_proto::rr::rdata::SOA;
use idnode_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use idnode_dns::transfer::MAX_IXFR_CHANGES;
use idnode_dns::{Cuts, DnsConfig, DnsService, Zones};
use idnode_server::{DnsListenerOptions, DnsListeners};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Space, Store};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const GUARD: Duration = Duration::from_secs(60);
const APEX: &str = "idnode.internal.";
const SMALL: &str = "SMALL._.1.100.88.idnode.internal.";

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within {GUARD:?}"),
    }
}

fn put(store: &dyn Store, identifier: &str, values: Vec<Value>) {
    let record = StoredRecord {
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

fn delete(store: &dyn Store, identifier: &str) {
    let mut txn = store.begin().unwrap();
    txn.delete(Space::Records, identifier.to_ascii_uppercase().as_bytes());
    txn.commit().unwrap();
}

struct Node {
    store: Arc<dyn Store>,
    service: Arc<DnsService>,
}

/// SMALL (one public URL, one secret value) and `many` identifiers with a
/// 600-octet public value each.
fn node(many: usize) -> Node {
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
    for i in 0..many {
        put(
            &*store,
            &format!("88.100.1/M{i:04}"),
            vec![Value::new(1, "spec", vec![b'a' + (i % 26) as u8; 600])],
        );
    }
    let service = Arc::new(DnsService::with_cache(store.clone(), zones, cache, cuts));
    Node { store, service }
}

async fn start(
    service: Arc<DnsService>,
    allow: &[&str],
    notify: Vec<SocketAddr>,
) -> (DnsListeners, CancellationToken) {
    let shutdown = CancellationToken::new();
    let options = DnsListenerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_workers: 1,
        pin_udp_workers: true,
        tcp_max_connections: 16,
        tcp_idle_timeout: Duration::from_secs(30),
        allow_transfer: allow.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
        tsig_keys: Vec::new(),
        notify,
        rate_limit: Default::default(),
        metrics: true,
    };
    let listeners = DnsListeners::start(&options, service, shutdown.clone())
        .await
        .unwrap();
    (listeners, shutdown)
}

fn soa_rr(serial: u32) -> Record {
    let apex = Name::from_ascii(APEX).unwrap();
    Record::from_rdata(
        apex.clone(),
        0,
        RData::SOA(SOA::new(apex.clone(), apex, serial, 0, 0, 0, 0)),
    )
}

fn xfr_query(id: u16, qtype: RecordType, client_serial: Option<u32>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(APEX).unwrap(), qtype));
    if let Some(serial) = client_serial {
        m.add_authority(soa_rr(serial));
    }
    let bytes = m.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
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

fn serial_of(r: &Record) -> Option<u32> {
    match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// The messages of one transfer: read until the answer's records end with
/// the SOA they started with (or a lone SOA, or an error answer).
async fn transfer(
    server: SocketAddr,
    id: u16,
    qtype: RecordType,
    client: Option<u32>,
) -> (Vec<Message>, Vec<Record>) {
    let mut stream = guard("connect", TcpStream::connect(server)).await.unwrap();
    stream
        .write_all(&xfr_query(id, qtype, client))
        .await
        .unwrap();
    let mut messages = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    loop {
        let m = read_framed(&mut stream).await;
        assert_eq!(m.metadata.id, id);
        let error = m.metadata.response_code != ResponseCode::NoError;
        records.extend(m.answers.iter().cloned());
        messages.push(m);
        if error {
            break;
        }
        let first = records.first().and_then(serial_of);
        let last = records.last().and_then(serial_of);
        let lone = records.len() == 1 && qtype == RecordType::IXFR;
        if lone || (records.len() > 1 && first.is_some() && first == last) {
            break;
        }
    }
    (messages, records)
}

fn txt_names(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| r.name.to_ascii())
        .collect()
}

fn txt_text(records: &[Record]) -> String {
    let mut all = String::new();
    for r in records {
        if let RData::TXT(txt) = &r.data {
            for s in &txt.txt_data {
                all.push_str(&String::from_utf8_lossy(s));
                all.push('|');
            }
        }
    }
    all
}

#[tokio::test]
async fn axfr_streams_every_public_record_between_two_soas() {
    let n = node(300);
    let (l, shutdown) = start(n.service.clone(), &["127.0.0.1"], Vec::new()).await;
    let serial = n.service.soa_serial();
    let (messages, records) = transfer(l.tcp, 7, RecordType::AXFR, None).await;
    // 300 records of 600 octets do not fit one message.
    assert!(messages.len() > 1, "{} messages", messages.len());
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.queries.len(), usize::from(i == 0));
    }
    assert_eq!(serial_of(&records[0]), Some(serial));
    assert_eq!(serial_of(records.last().unwrap()), Some(serial));
    assert_eq!(records.iter().filter(|r| serial_of(r).is_some()).count(), 2);
    assert!(records.iter().any(|r| r.record_type() == RecordType::NS));
    let names = txt_names(&records);
    assert!(names.iter().any(|n| n == SMALL), "{names:?}");
    for i in 0..300 {
        let name = format!("M{i:04}._.1.100.88.idnode.internal.");
        assert!(names.contains(&name), "{name} missing");
    }
    // URI and NAPTR of the URL value; never the secret value.
    assert!(records.iter().any(|r| r.record_type() == RecordType::NAPTR));
    let text = txt_text(&records);
    assert!(text.contains("https://example.com/small"));
    assert!(!text.contains("costPrice") && !text.contains("12.00 CNY"));
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_refused() {
    let n = node(1);
    let (l, shutdown) = start(n.service.clone(), &["192.0.2.1"], Vec::new()).await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let (messages, records) = transfer(l.tcp, 9, qtype, Some(1)).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].metadata.response_code, ResponseCode::Refused);
        assert!(records.is_empty());
    }
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn ixfr_with_the_current_serial_is_one_soa() {
    let n = node(2);
    let (l, shutdown) = start(n.service.clone(), &["127.0.0.1"], Vec::new()).await;
    let serial = n.service.soa_serial();
    let (messages, records) = transfer(l.tcp, 11, RecordType::IXFR, Some(serial)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(records.len(), 1);
    assert_eq!(serial_of(&records[0]), Some(serial));
    // Without the client's SOA: FORMERR.
    let (messages, _) = transfer(l.tcp, 12, RecordType::IXFR, None).await;
    assert_eq!(messages[0].metadata.response_code, ResponseCode::FormErr);
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn ixfr_after_writes_sends_the_differences() {
    let n = node(3);
    let (l, shutdown) = start(n.service.clone(), &["127.0.0.1"], Vec::new()).await;
    let from = n.service.soa_serial();
    put(
        &*n.store,
        "88.100.1/NEW",
        vec![Value::new(1, "URL", "https://example.com/new")],
    );
    put(
        &*n.store,
        "88.100.1/SMALL",
        vec![Value::new(1, "URL", "https://example.com/small-2")],
    );
    delete(&*n.store, "88.100.1/M0001");
    let current = n.service.soa_serial();
    assert_eq!(current, from + 3);
    let (_, records) = transfer(l.tcp, 13, RecordType::IXFR, Some(from)).await;
    let soas: Vec<u32> = records.iter().filter_map(serial_of).collect();
    // current, then (old, new) per change, then current.
    assert_eq!(
        soas,
        [
            current,
            from,
            from + 1,
            from + 1,
            from + 2,
            from + 2,
            from + 3,
            current
        ]
    );
    // Split at the SOAs: [deleted, added] per change.
    let mut sections: Vec<Vec<Record>> = Vec::new();
    for r in &records[1..records.len() - 1] {
        if serial_of(r).is_some() {
            sections.push(Vec::new());
        } else {
            sections.last_mut().unwrap().push(r.clone());
        }
    }
    assert_eq!(sections.len(), 6);
    let new_name = "NEW._.1.100.88.idnode.internal.".to_string();
    // 1: NEW added, nothing deleted.
    assert!(txt_names(&sections[0]).is_empty());
    assert_eq!(txt_names(&sections[1]), [new_name]);
    // 2: SMALL's old records deleted, its new ones added.
    assert_eq!(txt_names(&sections[2]), [SMALL]);
    assert!(txt_text(&sections[2]).contains("https://example.com/small|"));
    assert_eq!(txt_names(&sections[3]), [SMALL]);
    assert!(txt_text(&sections[3]).contains("https://example.com/small-2"));
    // 3: M0001 deleted, nothing added.
    assert_eq!(
        txt_names(&sections[4]),
        ["M0001._.1.100.88.idnode.internal."]
    );
    assert!(sections[5].is_empty());
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn ixfr_the_log_cannot_serve_falls_back_to_the_full_zone() {
    let n = node(2);
    let (l, shutdown) = start(n.service.clone(), &["127.0.0.1"], Vec::new()).await;
    let current = n.service.soa_serial();
    let too_old = current.wrapping_sub(MAX_IXFR_CHANGES as u32 + 5);
    let (_, records) = transfer(l.tcp, 15, RecordType::IXFR, Some(too_old)).await;
    // The AXFR form: SOA, the zone (NS next, not an SOA), SOA.
    assert_eq!(serial_of(&records[0]), Some(current));
    assert_eq!(records[1].record_type(), RecordType::NS);
    assert_eq!(serial_of(records.last().unwrap()), Some(current));
    let names = txt_names(&records);
    assert!(names.iter().any(|n| n == SMALL));
    assert!(names.iter().any(|n| n.starts_with("M0001._")));
    shutdown.cancel();
    l.join().await;
}

#[tokio::test]
async fn a_write_sends_notify_to_the_configured_secondaries() {
    let n = node(1);
    let secondary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = secondary.local_addr().unwrap();
    let (l, shutdown) = start(n.service.clone(), &["127.0.0.1"], vec![target]).await;
    put(
        &*n.store,
        "88.100.1/NOTIFIED",
        vec![Value::new(1, "URL", "https://example.com/n")],
    );
    let serial = n.service.soa_serial();
    let mut buf = vec![0u8; 4096];
    // Skip any NOTIFY of an older serial.
    loop {
        let (len, from) = guard("NOTIFY", secondary.recv_from(&mut buf))
            .await
            .unwrap();
        let m = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(m.metadata.op_code, OpCode::Notify);
        assert_eq!(m.metadata.message_type, MessageType::Query);
        assert!(m.metadata.authoritative);
        assert_eq!(m.queries[0].query_type(), RecordType::SOA);
        assert_eq!(m.queries[0].name().to_ascii(), APEX);
        let got = serial_of(&m.answers[0]).unwrap();
        // Acknowledge, as a secondary does.
        let mut ack = Message::response(m.metadata.id, OpCode::Notify);
        ack.metadata.authoritative = true;
        ack.queries = m.queries.clone();
        secondary
            .send_to(&ack.to_vec().unwrap(), from)
            .await
            .unwrap();
        if got == serial {
            break;
        }
    }
    shutdown.cancel();
    l.join().await;
}
