//! Request digests (RD) and response version capping, checked against
//! digests computed here with the hash crates directly.

use crate::{DIRECT_REQUEST, NOW, SITE_REQUEST, parse_hex};
use idnode_handle::*;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A captured request with RD set and the given envelope/suggested version.
fn request_with_rd(vector: &str, version: (u8, u8), suggested: (u8, u8)) -> Vec<u8> {
    let mut m = parse_hex(vector);
    m[0] = version.0;
    m[1] = version.1;
    m[2] = suggested.0;
    m[3] = suggested.1;
    m[20 + 9] |= 0x80;
    m
}

/// Encodes a response and returns (response bytes, header+body of request).
fn respond(request: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let req = decode_request(request).unwrap();
    assert!(req.header.has(flags::RD));
    let ctx = ResponseContext::for_request(&req, NOW);
    let mut out = Vec::new();
    encode_error_response(
        &mut out,
        &ctx,
        opcode::RESOLUTION,
        code::HANDLE_NOT_FOUND,
        "x",
    );
    (out, request[20..20 + 24 + 28].to_vec())
}

#[test]
fn sha256_from_2_7_on() {
    for minor in [7, 8, 11] {
        let (out, input) = respond(&request_with_rd(SITE_REQUEST, (2, 11), (2, minor)));
        assert_eq!((out[0], out[1]), (2, minor));
        assert_ne!(out[20 + 9] & 0x80, 0, "RD echoed");
        let body = &out[44..];
        assert_eq!(body[0], 3);
        assert_eq!(&body[1..33], Sha256::digest(&input).as_slice());
        assert_eq!(
            &body[33..37],
            &1u32.to_be_bytes(),
            "message follows the digest"
        );
        let decoded = decode_response(&out).unwrap();
        let digest = decoded.digest.unwrap();
        assert_eq!(digest.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(digest.as_bytes(), Sha256::digest(&input).as_slice());
    }
}

#[test]
fn sha1_from_2_1_to_2_6() {
    for minor in [1, 3, 6] {
        let (out, input) = respond(&request_with_rd(SITE_REQUEST, (2, minor), (2, minor)));
        assert_eq!((out[0], out[1]), (2, minor));
        let body = &out[44..];
        assert_eq!(body[0], 2);
        assert_eq!(&body[1..21], Sha1::digest(&input).as_slice());
        assert_eq!(
            decode_response(&out).unwrap().digest.unwrap().as_bytes(),
            Sha1::digest(&input).as_slice()
        );
    }
}

#[test]
fn md5_old_format_is_length_prefixed() {
    let input = b"header and body";
    let d = Digest::for_version(2, 0, input);
    assert_eq!(d.algorithm(), DigestAlgorithm::Md5Legacy);
    let mut out = Vec::new();
    d.write(&mut out);
    assert_eq!(&out[..4], &16u32.to_be_bytes());
    assert_eq!(&out[4..], Md5::digest(input).as_slice());
}

#[test]
fn digest_covers_header_and_body_not_credential() {
    let m = request_with_rd(SITE_REQUEST, (2, 11), (2, 11));
    let req = decode_request(&m).unwrap();
    assert_eq!(req.digest_input.len(), 24 + 28);
    assert_eq!(req.digest_input, &m[20..m.len() - 4]);
}

#[test]
fn no_digest_without_rd() {
    let m = parse_hex(SITE_REQUEST);
    let ctx = ResponseContext::for_request(&decode_request(&m).unwrap(), NOW);
    assert_eq!(ctx.digest, None);
    let mut out = Vec::new();
    let mut forced = ctx;
    forced.op_flags |= flags::RD; // RD without a digest is cleared
    encode_error_response(&mut out, &forced, 1, code::ERROR, "x");
    assert_eq!(out[20 + 9] & 0x80, 0);
    assert_eq!(decode_response(&out).unwrap().digest, None);
}

#[test]
fn response_version_is_the_suggestion_capped_at_ours() {
    let cases = [
        // (envelope, suggested bytes, response)
        ((2, 11), (2, 11), (2, 11)),
        ((2, 3), (2, 11), (2, 11)),
        ((2, 3), (2, 5), (2, 5)),
        ((2, 11), (2, 40), (2, 11)),
        ((2, 11), (3, 0), (2, 11)),
        ((2, 11), (31, 255), (2, 11)),
        ((2, 3), (0, 0), (2, 3)),
        ((2, 6), (0, 9), (2, 6)),
        ((2, 5), (1, 9), (2, 5)),
        ((2, 5), (2, 0), (2, 5)),
    ];
    for (envelope, suggested, expected) in cases {
        let m = request_with_rd(DIRECT_REQUEST, envelope, suggested);
        let req = decode_request(&m).unwrap();
        assert_eq!(
            response_version(&req.envelope),
            expected,
            "{envelope:?} {suggested:?}"
        );
        let ctx = ResponseContext::for_request(&req, NOW);
        assert_eq!((ctx.major, ctx.minor), expected);
        assert_eq!(
            ctx.digest.unwrap().algorithm(),
            DigestAlgorithm::for_version(expected.0, expected.1)
        );
        let mut out = Vec::new();
        encode_error_response(&mut out, &ctx, 1, code::ERROR, "x");
        assert_eq!(
            &out[..4],
            &[expected.0, expected.1, 2, 11],
            "response suggests 2.11"
        );
    }
}

#[test]
fn response_flags_echo_what_cnri_echoes() {
    let mut m = parse_hex(SITE_REQUEST);
    let asked = flags::AT | flags::CT | flags::CA | flags::PO | flags::KC | flags::DNR | flags::OW;
    m[20 + 8..20 + 12].copy_from_slice(&asked.to_be_bytes());
    m[20 + 14] = 3; // recursion count
    let ctx = ResponseContext::for_request(&decode_request(&m).unwrap(), NOW);
    assert_eq!(
        ctx.op_flags,
        flags::CT | flags::CA | flags::PO | flags::DNR | flags::REC
    );
    assert_eq!(ctx.recursion, 3);
    assert_eq!(ctx.expiration, NOW + EXPIRATION_SECS);
    assert_eq!(ctx.site_serial, -1);
}
