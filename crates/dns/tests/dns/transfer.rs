//! Zone transfers without sockets: the messages `transfer` returns for an
//! AXFR query, who gets REFUSED, and TSIG required when keys are set.

use crate::support::*;
use idnode_dns::hickory_proto::op::{Message, ResponseCode};
use idnode_dns::hickory_proto::rr::{RData, Record, RecordType};
use idnode_dns::transfer::{TransferPolicy, transfer};
use idnode_dns::tsig::TsigKey;
use std::net::IpAddr;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn axfr(policy: &TransferPolicy, peer: IpAddr) -> Vec<Message> {
    let node = node();
    let query = query(&name(APEX), RecordType::AXFR, None);
    transfer(node.plain(), &query, 0, peer, policy, NOW, &[])
        .iter()
        .map(|m| Message::from_vec(m).unwrap())
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
