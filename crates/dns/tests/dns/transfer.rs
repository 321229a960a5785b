//! Zone transfers without sockets: the messages `transfer` yields for an
//! AXFR or IXFR query (the zone of one snapshot, however the store changes
//! while they are taken), who gets REFUSED, and TSIG required when keys
//! are set.

use crate::support::*;
use idnode_core::Value;
use idnode_dns::DnsService;
use idnode_dns::hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use idnode_dns::hickory_proto::rr::rdata::SOA;
use idnode_dns::hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use idnode_dns::hickory_proto::serialize::binary::BinEncodable;
use idnode_dns::transfer::{TransferPolicy, transfer};
use idnode_dns::tsig::TsigKey;
use idnode_store::{Space, Store};
use std::net::IpAddr;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn axfr(policy: &TransferPolicy, peer: IpAddr) -> Vec<Message> {
    let node = node();
    let query = query(&name(APEX), RecordType::AXFR, None);
    transfer(node.plain(), &query, 0, peer, policy, NOW, &[])
        .map(|m| Message::from_vec(&m).unwrap())
        .collect()
}

fn allow_loopback() -> TransferPolicy {
    TransferPolicy {
        allow: vec![PEER],
        keys: Vec::new(),
    }
}

#[test]
fn axfr_is_the_zone_between_two_soas() {
    let messages = axfr(&allow_loopback(), PEER);
    assert!(!messages.is_empty());
    for m in &messages {
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative);
    }
    // The question is in the first message only.
    assert_eq!(messages[0].queries.len(), 1);
    assert!(messages[1..].iter().all(|m| m.queries.is_empty()));
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    let serial = |r: &Record| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    };
    let first = serial(records[0]).expect("starts with the SOA");
    let last = serial(records[records.len() - 1]).expect("ends with the SOA");
    assert_eq!(first, last);
    let node = node();
    assert_eq!(first, node.plain().soa_serial());
    // Every record of the zone, and the closing SOA.
    let zone = node.plain().zone(0, NOW).count();
    assert_eq!(records.len(), zone + 1);
    let abc = identifier_name("88.100.1/Abc-123");
    assert!(
        records
            .iter()
            .any(|r| r.name == abc && r.record_type() == RecordType::TXT)
    );
}

#[test]
fn a_peer_outside_the_allow_list_is_refused() {
    let other: IpAddr = "192.0.2.1".parse().unwrap();
    let messages = axfr(&allow_loopback(), other);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].response_code, ResponseCode::Refused);
    assert!(messages[0].answers.is_empty());
}

#[test]
fn with_keys_an_unsigned_transfer_is_refused() {
    let policy = TransferPolicy {
        allow: vec![PEER],
        keys: vec![
            TsigKey::new("xfr-key.", "hmac-sha256", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap(),
        ],
    };
    let messages = axfr(&policy, PEER);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].response_code, ResponseCode::Refused);
    assert!(messages[0].answers.is_empty());
}

/// Identifiers under `88.100.1`, `BULK-<n>` for `n` in `range`, each with
/// a URL and a name, in one transaction per 500.
fn bulk(store: &dyn Store, range: std::ops::Range<usize>, tag: &str) {
    for chunk in range.collect::<Vec<_>>().chunks(500) {
        let mut txn = store.begin().unwrap();
        for n in chunk {
            let id = format!("88.100.1/BULK-{n:06}");
            let record = idnode_core::Record {
                identifier: id.clone(),
                values: vec![
                    Value::new(1, "URL", format!("https://example.com/{tag}/{n}")),
                    Value::new(2, "productName", format!("{tag} {n}")),
                ],
                version: 1,
            };
            txn.put(Space::Records, id.as_bytes(), record.encode().into());
        }
        txn.commit().unwrap();
    }
}

/// The zone as AXFR sent it before it streamed: the apex records with
/// `serial`, every stored record's set in key order, and the SOA again.
fn expected_zone(service: &DnsService, serial: u32) -> Vec<Record> {
    let mut apex = service.apex_records(0);
    if let RData::SOA(soa) = &mut apex[0].data {
        soa.serial = serial;
    }
    let mut out = apex.clone();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = service
            .store()
            .scan(Space::Records, b"", after.as_deref(), 100)
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, stored) in &page {
            out.extend(service.record_set(0, stored, NOW).unwrap());
        }
    }
    out.push(apex[0].clone());
    out
}

/// Checks the framing of a transfer's messages and returns their records.
fn records_of(messages: &[Vec<u8>]) -> Vec<Record> {
    let mut records = Vec::new();
    for (i, bytes) in messages.iter().enumerate() {
        assert!(bytes.len() <= usize::from(u16::MAX));
        let m = Message::from_vec(bytes).unwrap();
        assert_eq!(m.response_code, ResponseCode::NoError, "message {i}");
        assert_eq!(m.id, 0x4242);
        assert!(m.authoritative);
        assert_eq!(m.queries.len(), usize::from(i == 0), "message {i}");
        assert!(!m.answers.is_empty(), "message {i} is empty");
        records.extend(m.answers);
    }
    records
}

fn serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

#[test]
fn a_large_zone_streams_in_full_messages_with_every_record() {
    let node = node();
    bulk(&*node.store, 0..3000, "one");
    let service = node.plain();
    let expected = expected_zone(service, service.soa_serial());
    let query = query(&name(APEX), RecordType::AXFR, None);
    let messages: Vec<Vec<u8>> =
        transfer(service, &query, 0, PEER, &allow_loopback(), NOW, &[]).collect();
    assert!(messages.len() > 2, "{} messages", messages.len());
    // Every message but the last is full: the next record would not fit.
    for m in &messages[..messages.len() - 1] {
        assert!(m.len() > 60_000, "a message of {} octets", m.len());
    }
    assert_eq!(records_of(&messages), expected);
}

#[test]
fn axfr_is_one_snapshot_whatever_is_written_while_it_is_taken() {
    let node = node();
    bulk(&*node.store, 0..3000, "before");
    let service = node.plain();
    let serial_before = service.soa_serial();
    let expected = expected_zone(service, serial_before);
    let query = query(&name(APEX), RecordType::AXFR, None);
    let policy = allow_loopback();
    let mut stream = transfer(service, &query, 0, PEER, &policy, NOW, &[]);
    let mut messages = vec![stream.next().unwrap()];
    // Rewritten, added and deleted while the rest is taken.
    bulk(&*node.store, 0..4000, "after");
    let mut txn = node.store.begin().unwrap();
    txn.delete(Space::Records, b"88.100.1/ABC-123");
    txn.delete(Space::Records, b"88.100.1/BULK-002999");
    txn.commit().unwrap();
    messages.extend(stream);
    let records = records_of(&messages);
    assert_eq!(serial(&records[0]), Some(serial_before));
    assert_eq!(records, expected);
    assert_ne!(service.soa_serial(), serial_before);
}

#[test]
fn axfr_is_one_snapshot_while_another_thread_writes() {
    let node = node();
    bulk(&*node.store, 0..2000, "before");
    let service = node.plain();
    let query = query(&name(APEX), RecordType::AXFR, None);
    let policy = allow_loopback();
    std::thread::scope(|s| {
        let store = node.store.clone();
        let writer = s.spawn(move || {
            for round in 0..5 {
                bulk(&*store, 0..2500, &format!("round-{round}"));
            }
        });
        while !writer.is_finished() {
            let messages: Vec<Vec<u8>> =
                transfer(service, &query, 0, PEER, &policy, NOW, &[]).collect();
            let records = records_of(&messages);
            let first = serial(&records[0]).unwrap();
            assert_eq!(serial(records.last().unwrap()), Some(first));
            // One moment: the writer rewrites the identifiers in key
            // order, 500 per commit, so along the zone the rounds can only
            // step down once, and there are as many as a whole commit left.
            let rounds: Vec<i32> = records
                .iter()
                // URI (type 256) records: one per identifier.
                .filter(|r| u16::from(r.record_type()) == 256)
                .filter_map(|r| {
                    let data = String::from_utf8_lossy(&r.to_bytes().unwrap()).into_owned();
                    let tag = data.split("example.com/").nth(1)?.split('/').next()?;
                    match tag.strip_prefix("round-") {
                        Some(n) => n.parse().ok(),
                        None => (tag == "before").then_some(-1),
                    }
                })
                .collect();
            assert!(
                rounds.len() == 2000 || rounds.len() == 2500,
                "{} identifiers",
                rounds.len()
            );
            assert!(
                rounds.windows(2).all(|w| w[0] >= w[1]),
                "not one moment: {rounds:?}"
            );
            let steps = rounds.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(steps <= 1, "{steps} steps");
            let first = rounds[0];
            assert!(rounds.iter().all(|&r| r == first || r == first - 1));
        }
        writer.join().unwrap();
    });
}

#[test]
fn an_unreadable_record_ends_the_stream_with_servfail() {
    let node = node();
    bulk(&*node.store, 0..3000, "one");
    let mut txn = node.store.begin().unwrap();
    txn.put(Space::Records, b"88.100.1/ZZZ", b"not a record"[..].into());
    txn.commit().unwrap();
    let query = query(&name(APEX), RecordType::AXFR, None);
    let messages: Vec<Message> =
        transfer(node.plain(), &query, 0, PEER, &allow_loopback(), NOW, &[])
            .map(|m| Message::from_vec(&m).unwrap())
            .collect();
    assert!(messages.len() > 2);
    let (last, before) = messages.split_last().unwrap();
    assert!(
        before
            .iter()
            .all(|m| m.response_code == ResponseCode::NoError)
    );
    assert_eq!(last.response_code, ResponseCode::ServFail);
    assert!(last.answers.is_empty());
}

/// An IXFR query from `serial`.
fn ixfr_query(serial: u32) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(APEX), RecordType::IXFR));
    let soa = SOA::new(name(APEX), name(APEX), serial, 1, 1, 1, 1);
    let mut record = Record::from_rdata(name(APEX), 0, RData::SOA(soa));
    record.dns_class = DNSClass::IN;
    m.add_authority(record);
    m.to_vec().unwrap()
}

#[test]
fn a_long_ixfr_streams_one_difference_per_change() {
    let node = node();
    let from = node.plain().soa_serial();
    bulk(&*node.store, 0..3000, "one");
    let service = node.plain();
    let current = service.soa_serial();
    let messages: Vec<Vec<u8>> = transfer(
        service,
        &ixfr_query(from),
        0,
        PEER,
        &allow_loopback(),
        NOW,
        &[],
    )
    .collect();
    assert!(messages.len() > 2, "{} messages", messages.len());
    let records = records_of(&messages);
    let serials: Vec<u32> = records.iter().filter_map(serial).collect();
    // The current SOA, then old and new SOA of each change, then the
    // current SOA again.
    let mut expected = vec![current];
    for sequence in from + 1..=current {
        expected.extend([sequence - 1, sequence]);
    }
    expected.push(current);
    assert_eq!(serials, expected);
    // Each new identifier's records follow its new SOA.
    let txt = records
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .count();
    assert!(txt >= 3000, "{txt} TXT records");
}
