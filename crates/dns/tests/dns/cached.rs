//! Answers through the response cache: the same answers as the store
//! would give, writes seen at once.

use crate::support::*;
use idnode_dns::Transport;
use idnode_dns::hickory_proto::op::Message;
use idnode_dns::hickory_proto::op::ResponseCode;
use idnode_dns::hickory_proto::rr::RecordType;

#[test]
fn hits_answer_without_the_store() {
    let node = node();
    let owner = name("abc-123._.1.100.88.idnode.internal.");
    let bytes = query(&owner, RecordType::TXT, Some(1232));
    raw(node.cached(), &bytes, Transport::Udp);
    let hits = node.cache.stats().hits;
    raw(node.cached(), &bytes, Transport::Udp);
    assert_eq!(node.cache.stats().hits, hits + 1);
    assert!(!node.cache.is_empty());
    // A missing identifier is held too, and other questions are not.
    let missing = query(
        &name("nope._.1.100.88.idnode.internal."),
        RecordType::TXT,
        None,
    );
    raw(node.cached(), &missing, Transport::Udp);
    raw(node.cached(), &missing, Transport::Udp);
    assert_eq!(node.cache.stats().hits, hits + 2);
    let entries = node.cache.len();
    let soa = query(&name("idnode.internal."), RecordType::SOA, None);
    raw(node.cached(), &soa, Transport::Udp);
    assert_eq!(node.cache.len(), entries);
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

/// Two answers say the same: header, sections, records, OPT. (Names may
/// be compressed differently.)
#[track_caller]
fn assert_same(cached: &[u8], fresh: &[u8], what: &str) {
    let (a, b) = (
        Message::from_vec(cached).unwrap(),
        Message::from_vec(fresh).unwrap(),
    );
    assert_eq!(a, b, "{what}");
    // Case too (`Name` compares without it).
    assert_eq!(a.to_string(), b.to_string(), "{what}");
}

#[test]
fn cached_answers_equal_fresh_ones() {
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
                let filled = raw(node.cached(), &bytes, Transport::Udp);
                let cached = raw(node.cached(), &bytes, Transport::Udp);
                let what = format!("{text} {qtype} {edns:?}");
                assert_same(&filled, &fresh, &what);
                assert_same(&cached, &fresh, &what);
            }
        }
    }
}

#[test]
fn services_and_caches_are_shared_between_workers() {
    fn shared<T: Send + Sync>() {}
    shared::<idnode_dns::DnsService>();
    shared::<idnode_dns::Cuts>();
    shared::<idnode_dns::Zones>();
}

mod written_straight {
    //! The TXT answers written straight from the cached values say what
    //! the general encoder says, for any values.
    use super::*;
    use idnode_core::{Permissions, Ttl, Value};
    use proptest::prelude::*;

    fn arb_data() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[ -~]{0,40}".prop_map(String::into_bytes),
            // Past one character-string, cut between characters.
            "[a-zé€😀]{200,700}".prop_map(String::into_bytes),
            "[a-z\\x00-\\x1f]{0,20}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..400),
            // Too long for a message: left out of the answer.
            Just(vec![0xff; 50_000]),
            Just(vec![b'x'; 65_000]),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        (
            any::<u32>(),
            prop_oneof![Just("URL".to_owned()), "[A-Za-z_.]{1,12}", "[A-Z]{251,260}"],
            arb_data(),
            prop_oneof![
                (0u32..200_000).prop_map(Ttl::Relative),
                (NOW - 10..NOW + 100_000).prop_map(Ttl::Absolute),
            ],
            any::<bool>(),
        )
            .prop_map(|(index, kind, data, ttl, public)| {
                let mut v = Value::new(index, &kind, data);
                v.ttl = ttl;
                if !public {
                    v.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn same_answers(values in proptest::collection::vec(arb_value(), 0..5)) {
            let node = node();
            put(&*node.store, "88.100.1/PROP", values);
            let owner = name("Prop._.1.100.88.idnode.internal.");
            for edns in [None, Some(1232), Some(4096)] {
                let bytes = query(&owner, RecordType::TXT, edns);
                for transport in [Transport::Udp, Transport::Stream] {
                    let fresh = raw(node.plain(), &bytes, transport);
                    let filled = raw(node.cached(), &bytes, transport);
                    let cached = raw(node.cached(), &bytes, transport);
                    let what = format!("{edns:?} {transport:?}");
                    assert_same(&filled, &fresh, &what);
                    assert_same(&cached, &fresh, &what);
                }
            }
        }
    }
}

#[test]
fn a_batch_is_answered_as_its_messages_one_by_one() {
    let node = node();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for text in [
        "abc-123._.1.100.88.idnode.internal.",
        "ABC-123._.1.100.88.idnode.internal.",
        "nope._.1.100.88.idnode.internal.",
        "1.100.88.idnode.internal.",
        "idnode.internal.",
        "x._.7.7.idnode.internal.",
        "example.org.",
    ] {
        for qtype in [RecordType::TXT, RecordType::NAPTR, RecordType::SOA] {
            for edns in [None, Some(1232)] {
                messages.push(query(&name(text), qtype, edns));
            }
        }
    }
    // Not queries at all: too short, and a response.
    messages.push(vec![0x42; 5]);
    let mut response = messages[0].clone();
    response[2] |= 0x80;
    messages.push(response);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let mut scratch = idnode_dns::BatchScratch::default();
    // Twice: the cache empty, then filled by the first batch.
    for _ in 0..2 {
        let mut outs = vec![Vec::new(); refs.len()];
        let mut outcomes = vec![idnode_dns::Outcome::Drop; refs.len()];
        node.cached().respond_batch(
            &refs,
            Transport::Udp,
            NOW,
            &mut outs,
            &mut outcomes,
            &mut scratch,
        );
        for (i, message) in refs.iter().enumerate() {
            let mut one = Vec::new();
            let outcome = node.plain().respond(message, Transport::Udp, NOW, &mut one);
            assert_eq!(outcomes[i], outcome, "message {i}");
            assert_eq!(outs[i], one, "message {i}");
        }
    }
    assert!(node.cache.stats().hits > 0);
}
