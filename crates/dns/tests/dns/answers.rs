//! The answers of docs/dns-mapping.md, "Records", through both services.

use crate::support::*;
use idnode_core::Ttl;
use idnode_dns::hickory_proto::op::{Message, ResponseCode};
use idnode_dns::hickory_proto::rr::{RData, RecordType};
use idnode_dns::{Outcome, Transport};
use std::net::Ipv4Addr;

const URI: RecordType = RecordType::Unknown(256);

/// The SOA of the authority section of a negative answer.
fn assert_negative(message: &Message, code: ResponseCode) {
    assert_eq!(message.response_code, code);
    assert!(message.authoritative);
    assert!(message.answers.is_empty());
    assert_eq!(message.authorities.len(), 1);
    let RData::SOA(soa) = &message.authorities[0].data else {
        panic!("no SOA: {message:?}");
    };
    assert_eq!(message.authorities[0].name, name(APEX));
    assert_eq!(soa.minimum, 300);
    assert!(message.authorities[0].ttl <= 300);
}

#[test]
fn txt_records_hold_the_public_values() {
    let node = node();
    let m = ask_all(
        &node,
        &name("Abc-123._.1.100.88.idnode.internal."),
        RecordType::TXT,
    );
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative && !m.recursion_available);
    let mut strings = txt_strings(&m);
    strings.sort();
    assert_eq!(
        strings,
        [
            vec!["idx=1", "type=URL", "data=https://example.com/abc"],
            vec!["idx=2", "type=productName", "data=Pump"],
            vec!["idx=4", "type=blob", "b64=AAEC/w=="],
            vec![
                "idx=70000",
                "type=URL",
                "data=https://example.com/big-index"
            ],
        ]
    );
    // The TTL is the values' (the default one day).
    assert!(m.answers.iter().all(|r| r.ttl == 86_400));
}

#[test]
fn values_without_public_read_never_appear() {
    let node = node();
    let owner = name("abc-123._.1.100.88.idnode.internal.");
    for qtype in [RecordType::TXT, URI, RecordType::NAPTR, RecordType::ANY] {
        let bytes = query(&owner, qtype, Some(4096));
        let out = raw(node.plain(), &bytes, Transport::Stream);
        let text = String::from_utf8_lossy(&out);
        assert!(
            !text.contains("costPrice") && !text.contains("12.00"),
            "{qtype}"
        );
    }
    // A record with no public value: the name exists, with nothing in it.
    let hidden = name("hidden._.1.100.88.idnode.internal.");
    for qtype in [RecordType::TXT, URI, RecordType::NAPTR] {
        let m = ask_all(&node, &hidden, qtype);
        assert_negative(&m, ResponseCode::NoError);
    }
}

#[test]
fn uri_records_follow_rfc_7553() {
    let node = node();
    let m = ask_all(&node, &name("Abc-123._.1.100.88.idnode.internal."), URI);
    assert_eq!(m.answers.len(), 2);
    let mut seen = Vec::new();
    for r in &m.answers {
        assert_eq!(r.record_type(), URI);
        let RData::Unknown { rdata, .. } = &r.data else {
            panic!("not raw: {r:?}");
        };
        let b = &rdata.anything;
        let priority = u16::from_be_bytes([b[0], b[1]]);
        let weight = u16::from_be_bytes([b[2], b[3]]);
        seen.push((
            priority,
            weight,
            String::from_utf8(b[4..].to_vec()).unwrap(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (1, 1, "https://example.com/abc".to_owned()),
            (65535, 1, "https://example.com/big-index".to_owned()),
        ]
    );
}

#[test]
fn naptr_records_per_url_value() {
    let node = node();
    let m = ask_all(
        &node,
        &name("ABC-123._.1.100.88.IDNODE.INTERNAL."),
        RecordType::NAPTR,
    );
    let mut seen: Vec<_> = m
        .answers
        .iter()
        .map(|r| {
            let RData::NAPTR(n) = &r.data else {
                panic!("not NAPTR: {r:?}");
            };
            assert_eq!(n.preference, 0);
            assert_eq!(&*n.flags, b"u");
            assert_eq!(&*n.services, b"URL");
            assert!(n.replacement.is_root());
            (n.order, String::from_utf8(n.regexp.to_vec()).unwrap())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (1, "!^.*$!https://example.com/abc!".to_owned()),
            (65535, "!^.*$!https://example.com/big-index!".to_owned()),
        ]
    );
}

#[test]
fn suffixes_with_dots_slashes_and_long_suffixes() {
    let node = node();
    let m = ask_all(&node, &identifier_name("88.100.1/a.b/c:d"), RecordType::TXT);
    assert_eq!(txt_strings(&m)[0][2], "data=https://example.com/dots");
    let long = identifier_name(&format!("88.100.1/{LONG_SUFFIX}"));
    assert_eq!(long.iter().next().unwrap().len(), 63);
    let m = ask_all(&node, &long, RecordType::TXT);
    assert_eq!(txt_strings(&m)[0][2], "data=long");
}

#[test]
fn soa_and_ns_at_the_apex() {
    let node = node();
    let m = ask_all(&node, &name("IDNODE.internal."), RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("no SOA");
    };
    assert_eq!(soa.mname, name("ns1.idnode.internal."));
    assert_eq!(soa.rname, name("hostmaster.idnode.internal."));
    assert_eq!(soa.serial, node.store.last_sequence() as u32);
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 1_209_600, 300)
    );
    let m = ask_all(&node, &name(APEX), RecordType::NS);
    let RData::NS(ns) = &m.answers[0].data else {
        panic!("no NS");
    };
    assert_eq!(ns.0, name("ns1.idnode.internal."));
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(m.additionals[0].data, RData::A(Ipv4Addr::LOCALHOST.into()));
    let m = ask_all(&node, &name("ns1.idnode.internal."), RecordType::A);
    assert_eq!(m.answers[0].data, RData::A(Ipv4Addr::LOCALHOST.into()));
    assert_negative(
        &ask_all(&node, &name("ns1.idnode.internal."), RecordType::AAAA),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask_all(&node, &name(APEX), RecordType::TXT),
        ResponseCode::NoError,
    );
}

#[test]
fn soa_serial_rises_after_a_write() {
    let node = node();
    for service in &node.services {
        let before = ask(service, &name(APEX), RecordType::SOA);
        put(
            &*node.store,
            "88.100.1/new",
            vec![idnode_core::Value::new(1, "URL", "x")],
        );
        let after = ask(service, &name(APEX), RecordType::SOA);
        let serial = |m: &Message| match &m.answers[0].data {
            RData::SOA(soa) => soa.serial,
            _ => panic!("no SOA"),
        };
        assert!(serial(&after) > serial(&before));
        assert_eq!(service.soa_serial(), serial(&after));
        // Negative answers carry the current serial too, cached or not.
        let missing = name("nope._.1.100.88.idnode.internal.");
        ask(service, &missing, RecordType::TXT);
        put(
            &*node.store,
            "88.100.1/other",
            vec![idnode_core::Value::new(1, "URL", "y")],
        );
        let m = ask(service, &missing, RecordType::TXT);
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("no SOA");
        };
        assert_eq!(soa.serial, service.soa_serial());
    }
}

#[test]
fn nxdomain_for_names_without_records() {
    let node = node();
    for text in [
        "nope._.1.100.88.idnode.internal.",
        // Not how a suffix is cut: `a` is no 63-octet label.
        "a.b._.1.100.88.idnode.internal.",
        // `_` with no prefix; a prefix nothing is under.
        "x._.idnode.internal.",
        "9.9.idnode.internal.",
        "_.2.100.88.idnode.internal.",
        "x.ns1.idnode.internal.",
    ] {
        for qtype in [RecordType::TXT, RecordType::A, RecordType::ANY] {
            assert_negative(&ask_all(&node, &name(text), qtype), ResponseCode::NXDomain);
        }
    }
}

#[test]
fn nodata_where_a_name_exists() {
    let node = node();
    for text in [
        // A homed prefix, the prefixes above it, its `_` node.
        "1.100.88.idnode.internal.",
        "100.88.idnode.internal.",
        "88.idnode.internal.",
        "_.1.100.88.idnode.internal.",
        // An identifier, asked for a type it has not.
        "abc-123._.1.100.88.idnode.internal.",
    ] {
        for qtype in [RecordType::A, RecordType::MX] {
            assert_negative(&ask_all(&node, &name(text), qtype), ResponseCode::NoError);
        }
    }
    // An empty homed prefix exists too.
    home(&*node.store, "88.200");
    assert_negative(
        &ask_all(&node, &name("200.88.idnode.internal."), RecordType::TXT),
        ResponseCode::NoError,
    );
}

#[test]
fn any_is_answered_minimally() {
    let node = node();
    for text in [
        "abc-123._.1.100.88.idnode.internal.",
        "1.100.88.idnode.internal.",
        APEX,
    ] {
        let m = ask_all(&node, &name(text), RecordType::ANY);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "{text}");
        let RData::HINFO(hinfo) = &m.answers[0].data else {
            panic!("no HINFO");
        };
        assert_eq!(&*hinfo.cpu, b"RFC8482");
        assert!(m.additionals.is_empty());
    }
}

#[test]
fn refused_outside_every_apex_and_for_other_classes() {
    let node = node();
    for service in &node.services {
        let m = ask(service, &name("example.com."), RecordType::A);
        assert_eq!(m.response_code, ResponseCode::Refused);
        assert!(!m.authoritative);
        assert!(m.edns.is_some());
        let m = ask(service, &name("internal."), RecordType::SOA);
        assert_eq!(m.response_code, ResponseCode::Refused);
        let mut bytes = query(&name(APEX), RecordType::TXT, None);
        let class_at = bytes.len() - 2;
        bytes[class_at..].copy_from_slice(&3u16.to_be_bytes()); // CH
        let m = Message::from_vec(&raw(service, &bytes, Transport::Udp)).unwrap();
        assert_eq!(m.response_code, ResponseCode::Refused);
    }
}

#[test]
fn large_answers_are_truncated_over_udp_only() {
    let node = node();
    let values = (1..=40)
        .map(|i| idnode_core::Value::new(i, "productName", "x".repeat(100)))
        .collect();
    put(&*node.store, "88.100.1/BIG", values);
    let owner = name("big._.1.100.88.idnode.internal.");
    for service in &node.services {
        for edns in [None, Some(512), Some(4096)] {
            let bytes = query(&owner, RecordType::TXT, edns);
            let out = raw(service, &bytes, Transport::Udp);
            assert!(out.len() <= edns.map_or(512, |e| usize::from(e.min(1232))));
            let m = Message::from_vec(&out).unwrap();
            assert!(m.truncation && m.authoritative);
            assert!(m.answers.is_empty());
            assert_eq!(m.queries.len(), 1);
            assert_eq!(m.edns.is_some(), edns.is_some());
            let out = raw(service, &bytes, Transport::Stream);
            let m = Message::from_vec(&out).unwrap();
            assert!(!m.truncation);
            assert_eq!(m.answers.len(), 40);
        }
    }
}

#[test]
fn answers_larger_than_a_tcp_message_keep_what_fits() {
    let node = node();
    let values = (1..=6)
        .map(|i| idnode_core::Value::new(i, "text", "y".repeat(60_000)))
        .collect();
    put(&*node.store, "88.100.1/HUGE", values);
    let owner = name("huge._.1.100.88.idnode.internal.");
    let bytes = query(&owner, RecordType::TXT, Some(4096));
    for service in &node.services {
        let out = raw(service, &bytes, Transport::Stream);
        assert!(out.len() <= 65_535);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.truncation);
        assert_eq!(m.answers.len(), 1);
        assert!(m.edns.is_some());
    }
}

#[test]
fn edns_is_echoed_with_our_size_and_the_do_bit() {
    let node = node();
    let owner = name("abc-123._.1.100.88.idnode.internal.");
    for service in &node.services {
        let plain = Message::from_vec(&raw(
            service,
            &query(&owner, RecordType::TXT, None),
            Transport::Udp,
        ))
        .unwrap();
        assert!(plain.edns.is_none());
        let mut m = Message::from_vec(&query(&owner, RecordType::TXT, Some(4096))).unwrap();
        let mut edns = m.edns.clone().unwrap();
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        let answer =
            Message::from_vec(&raw(service, &m.to_vec().unwrap(), Transport::Udp)).unwrap();
        let edns = answer.edns.unwrap();
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);
        // An EDNS version we do not speak: BADVERS.
        let mut m = Message::from_vec(&query(&owner, RecordType::TXT, Some(4096))).unwrap();
        let mut edns = m.edns.clone().unwrap();
        edns.set_version(1);
        m.set_edns(edns);
        let out = raw(service, &m.to_vec().unwrap(), Transport::Udp);
        let answer = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(answer.response_code), 16);
        assert!(answer.answers.is_empty());
    }
}

#[test]
fn the_question_is_echoed_as_spelled() {
    let node = node();
    for spelling in [
        "aBc-123._.1.100.88.iDnOdE.InTeRnAl.",
        "ABC-123._.1.100.88.IDNODE.INTERNAL.",
    ] {
        for service in &node.services {
            let bytes = query(&name(spelling), RecordType::TXT, Some(4096));
            let out = raw(service, &bytes, Transport::Udp);
            let question_len = bytes.len() - 12 - 11;
            assert_eq!(out[12..12 + question_len], bytes[12..12 + question_len]);
            assert_eq!(out[0..2], [0x42, 0x42]);
            assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 4);
        }
    }
}

#[test]
fn absolute_ttls_count_down() {
    let node = node();
    let value = with_ttl(
        idnode_core::Value::new(1, "URL", "https://example.com/until"),
        Ttl::Absolute(NOW + 100),
    );
    put(&*node.store, "88.100.1/until", vec![value]);
    let owner = name("until._.1.100.88.idnode.internal.");
    for service in &node.services {
        for now in [NOW, NOW + 40, NOW + 500] {
            let mut out = Vec::new();
            service.respond(
                &query(&owner, RecordType::TXT, None),
                Transport::Udp,
                now,
                &mut out,
            );
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.answers[0].ttl, (NOW + 100).saturating_sub(now));
        }
    }
}

#[test]
fn zone_transfers_are_handed_to_the_listener() {
    let node = node();
    for service in &node.services {
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            let mut out = Vec::new();
            let outcome = service.respond(
                &query(&name(APEX), qtype, None),
                Transport::Stream,
                NOW,
                &mut out,
            );
            assert_eq!(outcome, Outcome::Transfer { apex: 0 });
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.response_code, ResponseCode::NotImp);
            let below = query(&name("88.idnode.internal."), qtype, None);
            let outcome = service.respond(&below, Transport::Stream, NOW, &mut out);
            assert_eq!(outcome, Outcome::Reply);
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.response_code, ResponseCode::NotAuth);
        }
    }
}
