//! Byte-for-byte vectors: captured CNRI requests, hand-built responses.

use crate::{DIRECT_REQUEST, ERROR_RESPONSE, NOW, RESOLUTION_RESPONSE, SITE_REQUEST, parse_hex};
use idnode_core::Value;
use idnode_core::wire::encode_value;
use idnode_handle::*;

const HANDLE: &[u8] = b"88.100.1/ABC-123";

#[test]
fn site_request_decodes_to_the_captured_fields() {
    let bytes = parse_hex(SITE_REQUEST);
    assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
    let req = decode_request(&bytes).unwrap();
    assert_eq!(
        req.envelope,
        Envelope {
            major: 2,
            minor: 11,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 0,
            request_id: 0x1234_5678,
            sequence: 0,
            message_length: 0x38,
        }
    );
    assert_eq!(
        req.header,
        Header {
            opcode: opcode::RESOLUTION,
            response_code: 0,
            op_flags: 0x1900_0000,
            site_serial: 0,
            recursion: 0,
            expiration: 0x6553_f100,
            body_len: 0x1c,
        }
    );
    assert_eq!(req.header.op_flags, flags::REC | flags::CA | flags::PO);
    assert_eq!(req.credential, b"");
    assert_eq!(req.digest_input, &bytes[20..20 + 24 + 28]);
    let query = ResolutionQuery::decode(req.body).unwrap();
    assert_eq!(query.handle, HANDLE);
    assert_eq!(query.indexes().len(), 0);
    assert_eq!(query.types().len(), 0);
    assert!(!query.has_filters());
}

#[test]
fn direct_request_decodes_with_version_2_3_and_serial_minus_one() {
    let bytes = parse_hex(DIRECT_REQUEST);
    let req = decode_request(&bytes).unwrap();
    assert_eq!((req.envelope.major, req.envelope.minor), (2, 3));
    assert_eq!(req.envelope.suggested_version(), (2, 11));
    assert_eq!(req.envelope.request_id, 0x1234_5678);
    assert_eq!(req.header.site_serial, -1);
    assert_eq!(req.header.op_flags, 0x1900_0000);
    assert_eq!(req.header.expiration, 0x6553_f100);
    assert_eq!(ResolutionQuery::decode(req.body).unwrap().handle, HANDLE);
    assert_eq!(response_version(&req.envelope), (2, 11));
}

fn cnri_params(site_serial: i16) -> RequestParams<'static> {
    RequestParams {
        request_id: 0x1234_5678,
        session_id: 0,
        op_flags: flags::REC | flags::CA | flags::PO,
        site_serial,
        expiration: 0x6553_f100,
        handle: HANDLE,
        indexes: &[],
        types: &[],
    }
}

#[test]
fn encoder_reproduces_the_captured_requests() {
    let mut out = Vec::new();
    let len = encode_resolution_request(&mut out, &cnri_params(0));
    assert_eq!(len, out.len());
    assert_eq!(hex::encode(&out), hex::encode(parse_hex(SITE_REQUEST)));
    let direct = RequestOptions {
        minor: 3,
        ..RequestOptions::default()
    };
    encode_resolution_request_with(&mut out, &cnri_params(-1), &direct);
    assert_eq!(hex::encode(&out), hex::encode(parse_hex(DIRECT_REQUEST)));
    // The generic encoder writes the same bytes given the same body.
    let body = decode_request(&parse_hex(SITE_REQUEST))
        .unwrap()
        .body
        .to_vec();
    let mut generic = Vec::new();
    encode_request(
        &mut generic,
        &cnri_params(0),
        &RequestOptions::default(),
        opcode::RESOLUTION,
        &body,
    );
    assert_eq!(generic, parse_hex(SITE_REQUEST));
}

fn url_value() -> Vec<u8> {
    let mut v = Value::new(1, "URL", "https://example.com");
    v.timestamp = 0x6500_0000;
    let mut raw = Vec::new();
    encode_value(&mut raw, &v);
    raw
}

#[test]
fn resolution_response_matches_the_hand_built_bytes() {
    let bytes = parse_hex(SITE_REQUEST);
    let req = decode_request(&bytes).unwrap();
    let ctx = ResponseContext::for_request(&req, NOW);
    let raw = url_value();
    let mut out = Vec::with_capacity(600);
    let count = encode_resolution_response(&mut out, &ctx, HANDLE, [raw.as_slice()]);
    assert_eq!(count, 1);
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(RESOLUTION_RESPONSE))
    );

    let response = decode_response(&out).unwrap();
    assert_eq!(response.envelope.request_id, 0x1234_5678);
    assert!(response.header.expiration > NOW);
    assert_eq!(response.digest, None);
    let mut expected = Value::new(1, "URL", "https://example.com");
    expected.timestamp = 0x6500_0000;
    assert_eq!(
        response.body,
        ResponseBody::Resolution {
            handle: "88.100.1/ABC-123".into(),
            values: vec![expected],
        }
    );
}

#[test]
fn error_response_matches_the_hand_built_bytes() {
    let bytes = parse_hex(DIRECT_REQUEST);
    let req = decode_request(&bytes).unwrap();
    let ctx = ResponseContext::for_request(&req, NOW);
    let mut out = vec![0xaa; 7];
    let len = encode_error_response(
        &mut out,
        &ctx,
        opcode::RESOLUTION,
        code::HANDLE_NOT_FOUND,
        "handle not found",
    );
    assert_eq!(len, out.len());
    assert_eq!(hex::encode(&out), hex::encode(parse_hex(ERROR_RESPONSE)));
    let response = decode_response(&out).unwrap();
    assert_eq!(response.header.response_code, code::HANDLE_NOT_FOUND);
    assert_eq!(
        response.body,
        ResponseBody::Error {
            message: "handle not found".into()
        }
    );
}

#[test]
fn server_path_does_not_allocate() {
    let bytes = parse_hex(SITE_REQUEST);
    let raw = url_value();
    let mut out = Vec::with_capacity(4096);
    let mut rd = bytes.clone();
    rd[20 + 9] |= 0x80; // RD in the op flags
    for message in [&bytes, &rd] {
        let ((), n, _) = crate::allocations(|| {
            let req = decode_request(message).unwrap();
            let query = ResolutionQuery::decode(req.body).unwrap();
            assert!(query.wants(1, b"URL"));
            let ctx = ResponseContext::for_request(&req, NOW);
            encode_resolution_response(&mut out, &ctx, query.handle, [raw.as_slice()]);
            let mut datagrams = 0;
            for_each_datagram(&out, |_| datagrams += 1);
            assert_eq!(datagrams, 1);
        });
        assert_eq!(n, 0, "the resolution hot path allocated");
    }
}
