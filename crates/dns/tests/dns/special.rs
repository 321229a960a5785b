//! GS1 ONS and OID ORS names.

use crate::support::*;
use idnode_dns::hickory_proto::op::ResponseCode;
use idnode_dns::hickory_proto::rr::{RData, RecordType};

fn naptrs(node: &Node, text: &str) -> Vec<(u16, String, String)> {
    let m = ask_all(node, &name(text), RecordType::NAPTR);
    assert_eq!(m.response_code, ResponseCode::NoError, "{text}");
    let mut out: Vec<_> = m
        .answers
        .iter()
        .map(|r| {
            let RData::NAPTR(n) = &r.data else {
                panic!("not NAPTR: {r:?}");
            };
            assert_eq!(&*n.flags, b"u");
            (
                n.order,
                String::from_utf8(n.services.to_vec()).unwrap(),
                String::from_utf8(n.regexp.to_vec()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

const ONS: &str = "0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.";

#[test]
fn gtins_answer_naptr_from_their_url_values() {
    let node = node();
    assert_eq!(
        naptrs(&node, ONS),
        [(
            1,
            "URL".to_owned(),
            "!^.*$!https://example.com/gtin!".to_owned()
        )]
    );
    // Upper case is the same name.
    assert_eq!(naptrs(&node, &ONS.to_ascii_uppercase()).len(), 1);
    // Other types: NODATA; ANY: HINFO.
    let m = ask_all(&node, &name(ONS), RecordType::TXT);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(ask_all(&node, &name(ONS), RecordType::ANY).answers.len(), 1);
}

#[test]
fn ons_names_without_a_gtin() {
    let node = node();
    for (text, code) in [
        // Another GTIN: none registered.
        (
            "1.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.",
            ResponseCode::NXDomain,
        ),
        // Too many digits, or no digit.
        (
            "9.0.0.4.1.7.3.3.9.9.6.6.8.0.gtin.gs1.id.idnode.internal.",
            ResponseCode::NXDomain,
        ),
        ("x.gtin.gs1.id.idnode.internal.", ResponseCode::NXDomain),
        ("x.gs1.id.idnode.internal.", ResponseCode::NXDomain),
        // The nodes above full names exist.
        ("8.0.gtin.gs1.id.idnode.internal.", ResponseCode::NoError),
        ("gtin.gs1.id.idnode.internal.", ResponseCode::NoError),
        ("gs1.id.idnode.internal.", ResponseCode::NoError),
        ("id.idnode.internal.", ResponseCode::NoError),
    ] {
        let m = ask_all(&node, &name(text), RecordType::NAPTR);
        assert_eq!(m.response_code, code, "{text}");
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
    }
}

#[test]
fn oids_answer_naptr_with_ors_services() {
    let node = node();
    assert_eq!(
        naptrs(&node, "100.156.2.1.oid-res.idnode.internal."),
        [
            (
                1,
                "UINF".to_owned(),
                "!^.*$!https://example.com/oid!".to_owned()
            ),
            (
                2,
                "CINF".to_owned(),
                "!^.*$!https://example.com/oid/children!".to_owned()
            ),
        ]
    );
    for (text, code) in [
        // Above a registered OID: exists.
        ("156.2.1.oid-res.idnode.internal.", ResponseCode::NoError),
        ("1.oid-res.idnode.internal.", ResponseCode::NoError),
        ("oid-res.idnode.internal.", ResponseCode::NoError),
        // Unknown, or not an OID.
        ("7.156.2.1.oid-res.idnode.internal.", ResponseCode::NXDomain),
        ("3.oid-res.idnode.internal.", ResponseCode::NXDomain),
        ("01.oid-res.idnode.internal.", ResponseCode::NXDomain),
    ] {
        let m = ask_all(&node, &name(text), RecordType::NAPTR);
        assert_eq!(m.response_code, code, "{text}");
        assert!(m.answers.is_empty());
    }
}

#[test]
fn without_configuration_the_subtrees_are_plain_prefixes() {
    let node = empty(&idnode_dns::DnsConfig::default());
    fill(&*node.store);
    let m = ask_all(&node, &name(ONS), RecordType::NAPTR);
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    let m = ask_all(
        &node,
        &name("100.156.2.1.oid-res.idnode.internal."),
        RecordType::NAPTR,
    );
    assert_eq!(m.response_code, ResponseCode::NXDomain);
}
