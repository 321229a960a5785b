//! The answer cache: same bytes as the store would give, forgotten on
//! writes.

use crate::support::*;
use idnode_dns::Transport;
use idnode_dns::hickory_proto::op::ResponseCode;
use idnode_dns::hickory_proto::rr::RecordType;
use std::sync::atomic::Ordering;

#[test]
fn hits_answer_without_the_store() {
    let node = node();
    let owner = name("abc-123._.1.100.88.idnode.internal.");
    let bytes = query(&owner, RecordType::TXT, Some(1232));
    raw(node.cached(), &bytes, Transport::Udp);
    let hits = node.cache.stats.hits.load(Ordering::Relaxed);
    raw(node.cached(), &bytes, Transport::Udp);
    assert_eq!(node.cache.stats.hits.load(Ordering::Relaxed), hits + 1);
    assert!(!node.cache.is_empty());
}

#[test]
fn writes_are_seen_at_once() {
    let node = node();
    let service = node.cached();
    let owner = name("fresh._.1.100.88.idnode.internal.");
    assert_eq!(
        ask(service, &owner, RecordType::TXT).response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(service, &owner, RecordType::TXT).response_code,
        ResponseCode::NXDomain
    );
    put(
        &*node.store,
        "88.100.1/FRESH",
        vec![idnode_core::Value::new(1, "URL", "https://e/1")],
    );
    let m = ask(service, &owner, RecordType::TXT);
    assert_eq!(
        txt_strings(&m),
        [vec!["idx=1", "type=URL", "data=https://e/1"]]
    );
    put(
        &*node.store,
        "88.100.1/FRESH",
        vec![idnode_core::Value::new(2, "URL", "https://e/2")],
    );
    let m = ask(service, &owner, RecordType::TXT);
    assert_eq!(txt_strings(&m)[0][0], "idx=2");

    // Names above it: a new prefix's identifiers make its nodes exist.
    let above = name("7.100.88.idnode.internal.");
    let separator = name("_.7.100.88.idnode.internal.");
    assert_eq!(
        ask(service, &above, RecordType::A).response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(service, &separator, RecordType::A).response_code,
        ResponseCode::NXDomain
    );
    put(
        &*node.store,
        "88.100.7/x",
        vec![idnode_core::Value::new(1, "URL", "u")],
    );
    assert_eq!(
        ask(service, &above, RecordType::A).response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        ask(service, &separator, RecordType::A).response_code,
        ResponseCode::NoError
    );

    // Homing a prefix.
    let homed = name("9.100.88.idnode.internal.");
    assert_eq!(
        ask(service, &homed, RecordType::A).response_code,
        ResponseCode::NXDomain
    );
    home(&*node.store, "88.100.9");
    assert_eq!(
        ask(service, &homed, RecordType::A).response_code,
        ResponseCode::NoError
    );

    // GTIN and OID names.
    let ons = name("0.0.0.0.0.0.0.0.0.0.0.0.0.gtin.gs1.id.idnode.internal.");
    assert_eq!(
        ask(service, &ons, RecordType::NAPTR).response_code,
        ResponseCode::NXDomain
    );
    put(
        &*node.store,
        "88.100.3/00000000000000",
        vec![idnode_core::Value::new(1, "URL", "u")],
    );
    assert_eq!(ask(service, &ons, RecordType::NAPTR).answers.len(), 1);
    let oid = name("5.oid-res.idnode.internal.");
    assert_eq!(
        ask(service, &oid, RecordType::NAPTR).response_code,
        ResponseCode::NXDomain
    );
    put(
        &*node.store,
        "88.100.4/5.1",
        vec![idnode_core::Value::new(1, "URL", "u")],
    );
    assert_eq!(
        ask(service, &oid, RecordType::NAPTR).response_code,
        ResponseCode::NoError
    );
}

#[test]
fn cached_answers_equal_fresh_ones_byte_for_byte() {
    let node = node();
    let names = [
        "abc-123._.1.100.88.idnode.internal.",
        "ABC-123._.1.100.88.idnode.internal.",
        "nope._.1.100.88.idnode.internal.",
        "1.100.88.idnode.internal.",
        "idnode.internal.",
        "ns1.idnode.internal.",
        "0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.",
    ];
    let types = [
        RecordType::TXT,
        RecordType::NAPTR,
        RecordType::Unknown(256),
        RecordType::SOA,
        RecordType::NS,
        RecordType::A,
        RecordType::ANY,
    ];
    for text in names {
        for qtype in types {
            for edns in [None, Some(1232)] {
                let bytes = query(&name(text), qtype, edns);
                let fresh = raw(node.plain(), &bytes, Transport::Udp);
                raw(node.cached(), &bytes, Transport::Udp);
                let cached = raw(node.cached(), &bytes, Transport::Udp);
                assert_eq!(cached, fresh, "{text} {qtype} {edns:?}");
            }
        }
    }
}

#[test]
fn services_and_caches_are_shared_between_workers() {
    fn shared<T: Send + Sync>() {}
    shared::<idnode_dns::DnsService>();
    shared::<idnode_dns::AnswerCache>();
    shared::<idnode_dns::Zones>();
}
