//! Hostile input: never a panic, FORMERR when the header is readable, else
//! nothing.

use crate::support::*;
use idnode_dns::hickory_proto::op::{Message, ResponseCode};
use idnode_dns::hickory_proto::rr::RecordType;
use idnode_dns::{Outcome, Transport};
use proptest::prelude::*;
use std::sync::OnceLock;

fn shared() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(node)
}

/// Answers `bytes` on every service and transport; checks that whatever
/// comes back is a DNS message for the same id.
fn probe(bytes: &[u8]) -> Option<Message> {
    let mut last = None;
    for service in &shared().services {
        for transport in [Transport::Udp, Transport::Stream] {
            let mut out = Vec::new();
            match service.respond(bytes, transport, NOW, &mut out) {
                Outcome::Drop => assert!(out.is_empty()),
                Outcome::Reply | Outcome::Transfer { .. } => {
                    let m = Message::from_vec(&out).expect("answers decode");
                    assert_eq!(out[0..2], bytes[0..2]);
                    if transport == Transport::Udp {
                        assert!(out.len() <= 1232);
                    }
                    last = Some(m);
                }
            }
        }
    }
    last
}

fn formerr(bytes: &[u8]) {
    let m = probe(bytes).expect("an answer");
    assert_eq!(m.response_code, ResponseCode::FormErr);
    assert!(m.answers.is_empty());
}

fn good_query() -> Vec<u8> {
    query(
        &name("abc-123._.1.100.88.idnode.internal."),
        RecordType::TXT,
        Some(1232),
    )
}

#[test]
fn truncated_queries() {
    let full = good_query();
    for cut in 0..full.len() {
        let answer = probe(&full[..cut]);
        if cut < 12 {
            assert!(answer.is_none(), "cut at {cut}");
        } else {
            assert_eq!(
                answer.unwrap().response_code,
                ResponseCode::FormErr,
                "cut at {cut}"
            );
        }
    }
    assert_eq!(probe(&full).unwrap().response_code, ResponseCode::NoError);
}

#[test]
fn compression_pointer_loops() {
    // The question name is a pointer to itself.
    let mut m = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
    formerr(&m);
    // A label, then a pointer back to it.
    let mut m = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 16, 0, 1]);
    formerr(&m);
    // Pointers in the additional section are skipped, not followed, even
    // when they loop.
    let mut m = good_query();
    m[11] = 2;
    m.extend_from_slice(&[0xc0, 0x40, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(probe(&m).unwrap().response_code, ResponseCode::NoError);
}

#[test]
fn oversized_counts() {
    let mut m = good_query();
    m[4..12].copy_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    formerr(&m);
    let mut m = good_query();
    m[4..6].copy_from_slice(&[0xff, 0xff]);
    formerr(&m);
    let mut m = good_query();
    m[4..6].copy_from_slice(&[0, 0]);
    formerr(&m);
}

#[test]
fn responses_and_other_opcodes() {
    let mut m = good_query();
    m[2] |= 0x80;
    assert!(probe(&m).is_none());
    let mut m = good_query();
    m[2] |= 5 << 3; // UPDATE
    assert_eq!(probe(&m).unwrap().response_code, ResponseCode::NotImp);
    // OPT as the question type.
    let mut m = good_query();
    let at = m.len() - 11 - 4;
    m[at..at + 2].copy_from_slice(&41u16.to_be_bytes());
    formerr(&m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        probe(&bytes);
    }

    #[test]
    fn mutated_queries_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = good_query();
        for (at, byte) in edits {
            let at = at.index(m.len());
            m[at] = byte;
        }
        let cut = cut.index(m.len() + 1).max(1);
        m.truncate(cut);
        probe(&m);
    }

    #[test]
    fn random_names_under_the_apex_never_panic(labels in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 1..64), 0..4)) {
        let mut message = vec![0x11, 0x22, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in &labels {
            message.push(label.len() as u8);
            message.extend_from_slice(label);
        }
        message.extend_from_slice(b"\x06idnode\x08internal\x00\x00\x10\x00\x01");
        if let Some(m) = probe(&message) {
            prop_assert!(m.authoritative || m.response_code == ResponseCode::FormErr);
        }
    }
}
