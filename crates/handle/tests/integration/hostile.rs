//! Hostile input: truncations, huge lengths and counts, random bytes. No
//! decoder may panic, and none may allocate in proportion to a length it
//! was told rather than bytes it was given.

use crate::{SITE_REQUEST, allocations, parse_hex};
use idnode_core::Value;
use idnode_core::wire::encode_value;
use idnode_handle::*;
use proptest::prelude::*;

/// Feeds `bytes` to every decoder; returns nothing, must not panic. Checks
/// that the server-side decoders never allocate and the client-side ones
/// allocate at most a small multiple of the input.
fn feed_everything(bytes: &[u8]) {
    let ((), n, _) = allocations(|| {
        let _ = Envelope::decode(bytes);
        let _ = Header::decode(bytes);
        let _ = frame_len(bytes);
        if let Ok(req) = decode_request(bytes) {
            let _ = ResponseContext::for_request(&req, 0);
        }
        let _ = ResponseContext::for_undecodable(bytes, 0);
        if let Ok(q) = ResolutionQuery::decode(bytes) {
            let _ = q.indexes().count() + q.types().count();
            let _ = q.wants(1, b"URL");
        }
        let body = bytes.get(44..).unwrap_or(&[]);
        if let Ok(q) = ResolutionQuery::decode(body) {
            let _ = q.wants(1, b"HS_SITE.PREFIX");
        }
    });
    assert_eq!(n, 0, "a server-side decoder allocated");

    let (_, _, largest) = allocations(|| {
        let _ = decode_response(bytes);
        if let Ok(mut r) = Reassembly::new(bytes) {
            let _ = r.insert(bytes);
        }
    });
    assert!(
        largest <= 64 * bytes.len() + 1024,
        "allocated {largest} bytes for {} input bytes",
        bytes.len()
    );
}

fn valid_messages() -> Vec<Vec<u8>> {
    let request = parse_hex(SITE_REQUEST);
    let mut filtered = Vec::new();
    encode_resolution_request(
        &mut filtered,
        &RequestParams {
            handle: b"88.100.1/x",
            indexes: &[1, 2, 3],
            types: &[b"URL", b"HS_SITE."],
            op_flags: flags::RD,
            ..RequestParams::default()
        },
    );
    let req = decode_request(&filtered).unwrap();
    let ctx = ResponseContext::for_request(&req, 10);
    let mut raw = Vec::new();
    let mut v = Value::new(1, "URL", "https://example.com");
    v.references.push(idnode_core::Reference {
        identifier: "88/ref".into(),
        index: 3,
    });
    encode_value(&mut raw, &v);
    let mut response = Vec::new();
    encode_resolution_response(
        &mut response,
        &ctx,
        b"88.100.1/x",
        [raw.as_slice(), raw.as_slice()],
    );
    let mut error = Vec::new();
    encode_error_response(&mut error, &ctx, 1, code::HANDLE_NOT_FOUND, "nope");
    vec![request, filtered, response, error]
}

#[test]
fn every_truncation_fails_cleanly() {
    for message in valid_messages() {
        for cut in 0..message.len() {
            let prefix = &message[..cut];
            feed_everything(prefix);
            assert!(decode_request(prefix).is_err());
            assert!(decode_response(prefix).is_err());
            assert_eq!(frame_len(prefix).unwrap(), None);
        }
        // Also with the envelope's length fixed up to the cut, so the
        // inner lengths are what lies.
        for cut in 44..message.len() {
            let mut m = message[..cut].to_vec();
            m[16..20].copy_from_slice(&((cut - 20) as u32).to_be_bytes());
            feed_everything(&m);
        }
    }
}

#[test]
fn huge_lengths_and_counts_are_refused() {
    for message in valid_messages() {
        // Overwrite every 4-byte window after the envelope in turn.
        for at in (20..message.len().saturating_sub(3)).step_by(1) {
            for word in [u32::MAX, 0x8000_0000, MAX_MESSAGE_LEN as u32, 0x0001_0000] {
                let mut m = message.clone();
                m[at..at + 4].copy_from_slice(&word.to_be_bytes());
                feed_everything(&m);
            }
        }
    }
    let mut envelope = parse_hex(SITE_REQUEST);
    envelope[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        frame_len(&envelope),
        Err(DecodeError::TooLong("message length", u32::MAX))
    ));
    assert!(Reassembly::new(&envelope).is_err());
    // A reassembly told 256 KiB is coming holds only what arrived.
    envelope[16..20].copy_from_slice(&(MAX_MESSAGE_LEN as u32).to_be_bytes());
    envelope[2] |= flags::TRUNCATED;
    envelope.truncate(20 + UDP_PAYLOAD);
    envelope.resize(20 + UDP_PAYLOAD, 0);
    let (_, _, largest) = allocations(|| {
        let mut r = Reassembly::new(&envelope).unwrap();
        r.insert(&envelope).unwrap()
    });
    assert!(
        largest < 4096,
        "reassembly allocated {largest} bytes up front"
    );
}

#[test]
fn undecodable_requests_get_an_answer_only_when_safe() {
    assert_eq!(ResponseContext::for_undecodable(b"garbage", 0), None);
    assert_eq!(ResponseContext::for_undecodable(&[0u8; 64], 0), None);
    let mut m = parse_hex(SITE_REQUEST);
    m[20 + 23] = 0xff; // body length lies
    assert!(decode_request(&m).is_err());
    let ctx = ResponseContext::for_undecodable(&m, 100).unwrap();
    assert_eq!(ctx.request_id, 0x1234_5678);
    assert!(ctx.expiration > 100);
    // A response is never answered.
    m[20 + 7] = code::ERROR as u8;
    assert_eq!(ResponseContext::for_undecodable(&m, 100), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        feed_everything(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_envelope_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..700),
        minor in 1u8..=11,
    ) {
        let envelope = Envelope {
            major: 2, minor, flags: 0, suggested_major: 2, suggested_minor: 11,
            session_id: 0, request_id: 1, sequence: 0, message_length: body.len() as u32,
        };
        let mut m = envelope.to_bytes().to_vec();
        m.extend_from_slice(&body);
        feed_everything(&m);
        // And with a plausible header in front of random body bytes.
        if body.len() >= 24 {
            let mut m2 = m.clone();
            let body_len = (body.len() - 24) as u32;
            m2[20 + 4..20 + 8].copy_from_slice(&[0, 0, 0, (body[0] % 3)]);
            m2[20 + 20..20 + 24].copy_from_slice(&body_len.to_be_bytes());
            feed_everything(&m2);
        }
    }
}
