//! The admin authentication vectors (`tests/vectors/auth/`, CNRI Handle.Net
//! 9.2): admin requests and their results, 402 challenges, every
//! challenge-answer variant, HS_ADMIN / HS_VLIST / HS_PUBKEY data,
//! VERIFY_RESPONSE, and the permission rule on the spec's examples.

use crate::parse_hex;
use idnode_core::{Permissions, Ttl, Value};
use idnode_handle::admin::{
    self, AdminPerms, AdminRef, AdminRequest, AdminResponseBody, HsAdmin, Operation,
    decode_admin_response, decode_vlist, encode_admin_error, encode_admin_success,
    encode_create_success, encode_list_handles_response, encode_vlist, result_context,
};
use idnode_handle::auth::{
    self, AuthType, Challenge, ChallengeAnswer, ChallengeBody, FailReason, KeyValue,
    SecretKeyAnswer, Verification, VerifyPolicy, VerifyRequest, encode_challenge,
    encode_verify_result, pubkey_answer, verify_answer, verify_pubkey, verify_seckey,
};
use idnode_handle::certify::{Credential, HS_MAC, sign_response, verify_response};
use idnode_handle::keys::{HashAlg, PublicKey, ServerKey};
use idnode_handle::*;
use sha2::{Digest as _, Sha256};

macro_rules! vector {
    ($name:literal) => {
        parse_hex(include_str!(concat!("../vectors/auth/", $name)))
    };
}

macro_rules! pem {
    ($name:literal) => {
        include_str!(concat!("../vectors/auth/", $name))
    };
}

/// The expiration of every header in the vectors.
const EXPIRATION: u32 = 0x6553_f100;
/// A `now` whose response expiration is the vectors' (now + 12 h).
const NOW: u32 = EXPIRATION - EXPIRATION_SECS;
const NONCE: [u8; 16] = *b"NONCE-0123456789";
const SECRET: &[u8] = b"s3cret";
const KEY_HANDLE: &str = "0.NA/88.100.1";
const HANDLE: &str = "88.100.1/PUMP-1";
/// REC | CA | PO, what CNRI 9.x clients send.
const CLIENT_FLAGS: u32 = flags::REC | flags::CA | flags::PO;
const CREATE_DIGEST: &str = "3cd4ee0abdd36d2774f4b507a6083b0264cd13c5fe44af23bfedea71d012b958";

fn identity() -> AdminRef {
    AdminRef::new(KEY_HANDLE, 300)
}

fn params(request_id: u32, session_id: u32, site_serial: i16) -> RequestParams<'static> {
    RequestParams {
        request_id,
        session_id,
        op_flags: CLIENT_FLAGS,
        site_serial,
        expiration: EXPIRATION,
        ..RequestParams::default()
    }
}

/// Re-encodes a request message from its opcode and body with our encoder.
fn reencode(message: &[u8], body: &[u8]) -> Vec<u8> {
    let req = decode_request(message).unwrap();
    let p = params(
        req.envelope.request_id,
        req.envelope.session_id,
        req.header.site_serial,
    );
    let mut out = Vec::new();
    encode_request(
        &mut out,
        &p,
        &RequestOptions::default(),
        req.header.opcode,
        body,
    );
    out
}

/// The context of our answer to `request` as a primary with site serial 1.
fn ctx_for(request: &[u8]) -> ResponseContext {
    ResponseContext::for_request(&decode_request(request).unwrap(), NOW).with_site(1, true)
}

fn the_challenge(request: &[u8], session_id: u32) -> Challenge {
    let req = decode_request(request).unwrap();
    Challenge::new(&req, session_id, NONCE, NOW, auth::CHALLENGE_TTL_SECS)
}

fn seckey_values(secret: &[u8]) -> Vec<Value> {
    vec![
        Value::new(100, admin::HS_ADMIN, vector!("hs-admin-data.hex")),
        Value::new(300, "HS_SECKEY", secret.to_vec()),
    ]
}

fn pubkey_values(key_data: Vec<u8>) -> Vec<Value> {
    vec![
        Value::new(1, "HS_SECKEY", SECRET.to_vec()),
        Value::new(300, "HS_PUBKEY", key_data),
    ]
}

fn verify_vector(message: &[u8], challenge: &Challenge, values: &[Value]) -> Verification {
    let req = decode_request(message).unwrap();
    assert_eq!(req.header.opcode, opcode::CHALLENGE_RESPONSE);
    let answer = ChallengeAnswer::decode(req.body).unwrap();
    verify_answer(
        &answer,
        challenge,
        values.iter().map(KeyValue::from),
        &VerifyPolicy::default(),
    )
}

// ---------------------------------------------------------------------------
// Admin requests.

#[test]
fn create_request_decodes_and_reencodes() {
    let m = vector!("create-handle-request.hex");
    let req = decode_request(&m).unwrap();
    assert_eq!(req.header.opcode, opcode::CREATE_HANDLE);
    assert_eq!(req.header.op_flags, CLIENT_FLAGS);
    let body = AdminRequest::decode(req.header.opcode, req.body).unwrap();
    let AdminRequest::CreateHandle { handle, values } = &body else {
        panic!("not a create: {body:?}");
    };
    assert_eq!(handle, HANDLE);
    assert_eq!(values.len(), 2);
    assert_eq!(
        (values[0].index, values[0].kind.as_str()),
        (100, "HS_ADMIN")
    );
    assert_eq!((values[1].index, values[1].kind.as_str()), (1, "URL"));
    assert_eq!(&values[1].data[..], b"https://example.com/pump/1");
    for v in values {
        assert_eq!(v.ttl, Ttl::Relative(86_400));
        assert_eq!(v.permissions, Permissions(0x0e));
        assert_eq!(v.timestamp, 0x6553_e2f0);
    }
    let a = HsAdmin::decode(&values[0].data).unwrap();
    assert_eq!(a.permissions, AdminPerms::ALL);
    assert_eq!(a.admin, identity());
    assert_eq!(body.check_values(), Ok(()));

    let mut encoded = Vec::new();
    body.encode_body(&mut encoded);
    assert_eq!(encoded, req.body);
    assert_eq!(reencode(&m, &encoded), m);

    assert_eq!(
        Sha256::digest(req.digest_input).as_slice(),
        hex::decode(CREATE_DIGEST).unwrap()
    );
}

#[test]
fn other_admin_requests_decode_and_reencode() {
    let cases = [
        (
            vector!("delete-handle-request.hex"),
            AdminRequest::DeleteHandle {
                handle: HANDLE.into(),
            },
        ),
        (
            vector!("remove-value-request.hex"),
            AdminRequest::RemoveValue {
                handle: HANDLE.into(),
                indexes: vec![2],
            },
        ),
        (
            vector!("list-handles-request.hex"),
            AdminRequest::ListHandles {
                prefix: KEY_HANDLE.into(),
            },
        ),
    ];
    for (m, want) in cases {
        let req = decode_request(&m).unwrap();
        let body = AdminRequest::decode(req.header.opcode, req.body).unwrap();
        assert_eq!(body, want);
        let mut encoded = Vec::new();
        body.encode_body(&mut encoded);
        assert_eq!(reencode(&m, &encoded), m);
    }
    for (m, index, kind, data) in [
        (
            vector!("add-value-request.hex"),
            2,
            "EMAIL",
            &b"ops@example.com"[..],
        ),
        (
            vector!("modify-value-request.hex"),
            1,
            "URL",
            &b"https://example.com/pump/1/v2"[..],
        ),
    ] {
        let req = decode_request(&m).unwrap();
        let body = AdminRequest::decode(req.header.opcode, req.body).unwrap();
        assert_eq!(body.handle(), HANDLE);
        assert_eq!(body.values().len(), 1);
        let v = &body.values()[0];
        assert_eq!((v.index, v.kind.as_str(), &v.data[..]), (index, kind, data));
        assert_eq!(body.check_values(), Ok(()));
        let mut encoded = Vec::new();
        body.encode_body(&mut encoded);
        assert_eq!(reencode(&m, &encoded), m);
    }
}

#[test]
fn truncated_admin_bodies_fail_cleanly() {
    for m in [
        vector!("create-handle-request.hex"),
        vector!("add-value-request.hex"),
        vector!("remove-value-request.hex"),
        vector!("modify-value-request.hex"),
        vector!("delete-handle-request.hex"),
        vector!("list-handles-request.hex"),
    ] {
        let req = decode_request(&m).unwrap();
        for cut in 0..req.body.len() {
            let e = AdminRequest::decode(req.header.opcode, &req.body[..cut]).unwrap_err();
            assert_eq!(e.response_code(), code::PROTOCOL_ERROR);
        }
    }
}

// ---------------------------------------------------------------------------
// The 402 challenge.

#[test]
fn challenge_is_reproduced_byte_for_byte() {
    let create = vector!("create-handle-request.hex");
    let challenge = the_challenge(&create, 0x2a);
    assert_eq!(challenge.version, (2, 11));
    assert_eq!(hex::encode(challenge.digest.as_bytes()), CREATE_DIGEST);
    assert_eq!(
        hex::encode(challenge.signed_bytes()),
        format!("4e4f4e43452d30313233343536373839{CREATE_DIGEST}")
    );
    let mut out = Vec::new();
    encode_challenge(
        &mut out,
        &ctx_for(&create),
        opcode::CREATE_HANDLE,
        &challenge,
    );
    assert_eq!(out, vector!("challenge-402-response.hex"));

    // What a client reads from it.
    let r = decode_admin_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::AUTHENTICATION_NEEDED);
    assert_eq!(r.envelope.session_id, 0x2a);
    assert_eq!(r.envelope.request_id, 0x1111_1111);
    assert_eq!(r.digest, Some(challenge.digest));
    assert_eq!(
        r.body,
        AdminResponseBody::Challenge {
            nonce: NONCE.to_vec()
        }
    );
    let body = &out[ENVELOPE_LEN + HEADER_LEN..out.len() - 4];
    let b = ChallengeBody::decode(body, true).unwrap();
    assert_eq!((b.nonce, b.digest), (&NONCE[..], challenge.digest));
}

#[test]
fn session_challenge_keeps_the_session_id() {
    let m = vector!("session-create-handle-request-mac.hex");
    let req = decode_request(&m).unwrap();
    assert_eq!(req.envelope.session_id, 0x101);
    // The HS_MAC credential, and the same header+body as the plain create.
    let cred = Credential::decode(req.credential).unwrap();
    assert_eq!(cred.kind, HS_MAC);
    assert_eq!(cred.signer_index, 1);
    assert_eq!(cred.hash, b"HMAC-SHA256");
    assert_eq!(cred.signature.len(), 32);
    let plain = vector!("create-handle-request.hex");
    assert_eq!(
        req.digest_input,
        decode_request(&plain).unwrap().digest_input
    );
    let challenge = the_challenge(&m, req.envelope.session_id);
    let mut out = Vec::new();
    encode_challenge(&mut out, &ctx_for(&m), opcode::CREATE_HANDLE, &challenge);
    assert_eq!(out, vector!("session-challenge-402-response.hex"));
    // Its answer (no credential) verifies like the plain one.
    let answer = vector!("session-challenge-answer-seckey-pbkdf2.hex");
    assert!(decode_request(&answer).unwrap().credential.is_empty());
    assert_eq!(
        verify_vector(&answer, &challenge, &seckey_values(SECRET)),
        Verification::Verified { key_index: 300 }
    );
}

// ---------------------------------------------------------------------------
// Challenge answers.

const SECKEY_ANSWERS: [(&str, &str); 6] = [
    (
        "pbkdf2",
        include_str!("../vectors/auth/challenge-answer-seckey-pbkdf2-hmac-sha1.hex"),
    ),
    (
        "hmac-sha256",
        include_str!("../vectors/auth/challenge-answer-seckey-hmac-sha256.hex"),
    ),
    (
        "hmac-sha1",
        include_str!("../vectors/auth/challenge-answer-seckey-hmac-sha1.hex"),
    ),
    (
        "sha256",
        include_str!("../vectors/auth/challenge-answer-seckey-sha256.hex"),
    ),
    (
        "sha1",
        include_str!("../vectors/auth/challenge-answer-seckey-sha1.hex"),
    ),
    (
        "md5",
        include_str!("../vectors/auth/challenge-answer-seckey-md5.hex"),
    ),
];

fn seckey_alg(name: &str) -> SecretKeyAnswer<'static> {
    match name {
        "pbkdf2" => SecretKeyAnswer::Pbkdf2HmacSha1 {
            salt: b"PBKDF2-SALT-0001",
            iterations: 10_000,
            bits: 160,
        },
        "hmac-sha256" => SecretKeyAnswer::HmacSha256,
        "hmac-sha1" => SecretKeyAnswer::HmacSha1,
        "sha256" => SecretKeyAnswer::Sha256,
        "sha1" => SecretKeyAnswer::Sha1,
        "md5" => SecretKeyAnswer::Md5,
        other => panic!("{other}"),
    }
}

#[test]
fn every_seckey_answer_verifies_and_reencodes() {
    let challenge = the_challenge(&vector!("create-handle-request.hex"), 0x2a);
    let policy = VerifyPolicy::default();
    for (name, text) in SECKEY_ANSWERS {
        let m = parse_hex(text);
        let req = decode_request(&m).unwrap();
        assert_eq!(req.envelope.session_id, 0x2a, "{name}");
        let answer = ChallengeAnswer::decode(req.body).unwrap();
        assert_eq!(answer.auth_type, AuthType::SecretKey);
        assert_eq!(answer.identity(), identity());

        assert_eq!(
            verify_vector(&m, &challenge, &seckey_values(SECRET)),
            Verification::Verified { key_index: 300 },
            "{name}"
        );
        let wrong = verify_vector(&m, &challenge, &seckey_values(b"wrong"));
        assert_eq!(wrong, Verification::Failed(FailReason::Mismatch), "{name}");
        // Key index 0: every HS_SECKEY of the handle is tried.
        let any = ChallengeAnswer {
            key_index: 0,
            ..answer
        };
        let mut values = seckey_values(b"wrong");
        values.push(Value::new(301, "HS_SECKEY", SECRET.to_vec()));
        assert_eq!(
            verify_answer(&any, &challenge, values.iter().map(KeyValue::from), &policy),
            Verification::Verified { key_index: 301 },
            "{name}"
        );
        // Another challenge (nonce) does not accept it.
        let mut other = challenge.clone();
        other.nonce[0] ^= 1;
        assert!(!verify_vector(&m, &other, &seckey_values(SECRET)).is_verified());

        // Our client side computes the same answer, and the same message.
        let computed = seckey_alg(name)
            .compute(SECRET, &NONCE, challenge.digest.as_bytes(), &policy)
            .unwrap();
        assert_eq!(computed, answer.answer, "{name}");
        let mut body = Vec::new();
        ChallengeAnswer {
            answer: &computed,
            ..answer
        }
        .encode_body(&mut body);
        assert_eq!(reencode(&m, &body), m, "{name}");
    }
}

#[test]
fn the_wrong_secret_answer_fails_with_403() {
    let challenge = the_challenge(&vector!("create-handle-request.hex"), 0x2a);
    let m = vector!("challenge-answer-seckey-hmac-sha256-wrong-secret.hex");
    let v = verify_vector(&m, &challenge, &seckey_values(SECRET));
    let Verification::Failed(reason) = v else {
        panic!("verified: {v:?}");
    };
    assert_eq!(reason, FailReason::Mismatch);
    assert_eq!(reason.response_code(), code::AUTHENTICATION_FAILED);
    // It is the answer of the secret `wrong`.
    assert_eq!(
        verify_vector(&m, &challenge, &seckey_values(b"wrong")),
        Verification::Verified { key_index: 300 }
    );
}

#[test]
fn pbkdf2_check_values_of_the_readme() {
    let policy = VerifyPolicy::default();
    let key = auth::pbkdf2_key(SECRET, b"PBKDF2-SALT-0001", 10_000, 160, &policy).unwrap();
    assert_eq!(hex::encode(key), "fbd2ff4aeddf4cf5210d44a0c1af7fdf1f627bea");
    let quirk = auth::pbkdf2_key(
        &[0x73, 0xe9, 0x33],
        b"PBKDF2-SALT-0001",
        10_000,
        160,
        &policy,
    )
    .unwrap();
    assert_eq!(
        hex::encode(quirk),
        "4e8b9825d5c22216f29d1d66dc056fe45de57a2b"
    );
}

#[test]
fn rsa_answers_verify_and_reencode() {
    let challenge = the_challenge(&vector!("create-handle-request.hex"), 0x2a);
    let key = ServerKey::from_pkcs8_pem(pem!("test-only-admin-rsa.pem")).unwrap();
    let key_data = vector!("hs-pubkey-rsa-data.hex");
    assert_eq!(PublicKey::decode(&key_data).unwrap(), key.public_key());
    assert_eq!(key.public_key().encode(), key_data);
    for (m, hash) in [
        (
            vector!("challenge-answer-pubkey-rsa-sha256.hex"),
            HashAlg::Sha256,
        ),
        (
            vector!("challenge-answer-pubkey-rsa-sha1.hex"),
            HashAlg::Sha1,
        ),
    ] {
        let req = decode_request(&m).unwrap();
        let answer = ChallengeAnswer::decode(req.body).unwrap();
        assert_eq!(answer.auth_type, AuthType::PublicKey);
        assert_eq!(answer.identity(), identity());
        assert_eq!(
            verify_vector(&m, &challenge, &pubkey_values(key_data.clone())),
            Verification::Verified { key_index: 300 }
        );
        // With the DSA key at 300, or another challenge: 403.
        let dsa = pubkey_values(vector!("hs-pubkey-dsa-data.hex"));
        let v = verify_vector(&m, &challenge, &dsa);
        assert_eq!(v, Verification::Failed(FailReason::Mismatch));
        let mut other = challenge.clone();
        other.nonce[15] ^= 1;
        assert!(!verify_vector(&m, &other, &pubkey_values(key_data.clone())).is_verified());
        // Key index 0 learns the index.
        let any = ChallengeAnswer {
            key_index: 0,
            ..answer
        };
        let values = pubkey_values(key_data.clone());
        assert_eq!(
            verify_answer(
                &any,
                &challenge,
                values.iter().map(KeyValue::from),
                &VerifyPolicy::default()
            ),
            Verification::Verified { key_index: 300 }
        );
        // RSA PKCS#1 v1.5 is deterministic: our client side signs the same.
        let signed = pubkey_answer(&key, hash, &NONCE, challenge.digest.as_bytes()).unwrap();
        assert_eq!(signed, answer.answer);
        let mut body = Vec::new();
        ChallengeAnswer {
            answer: &signed,
            ..answer
        }
        .encode_body(&mut body);
        assert_eq!(reencode(&m, &body), m);
    }
}

#[test]
fn dsa_answer_verifies_with_the_dsa_key_only() {
    let challenge = the_challenge(&vector!("create-handle-request.hex"), 0x2a);
    let key = ServerKey::from_pkcs8_pem(pem!("test-only-admin-dsa.pem")).unwrap();
    let key_data = vector!("hs-pubkey-dsa-data.hex");
    let public = PublicKey::decode(&key_data).unwrap();
    assert_eq!(public, key.public_key());
    assert_eq!(public.encode(), key_data);
    let m = vector!("challenge-answer-pubkey-dsa-sha256.hex");
    assert_eq!(
        verify_vector(&m, &challenge, &pubkey_values(key_data.clone())),
        Verification::Verified { key_index: 300 }
    );
    let rsa = pubkey_values(vector!("hs-pubkey-rsa-data.hex"));
    let v = verify_vector(&m, &challenge, &rsa);
    assert_eq!(v, Verification::Failed(FailReason::Mismatch));
    assert_eq!(
        FailReason::Mismatch.response_code(),
        code::AUTHENTICATION_FAILED
    );
    // An HS_SECKEY at the index is not an HS_PUBKEY.
    let v = verify_vector(&m, &challenge, &seckey_values(SECRET));
    assert_eq!(v, Verification::Failed(FailReason::NoKey));
    // Our own DSA answer (deterministic nonces) verifies too.
    let ours = pubkey_answer(&key, HashAlg::Sha256, &NONCE, challenge.digest.as_bytes()).unwrap();
    assert_eq!(
        verify_pubkey(
            &ours,
            &key_data,
            &NONCE,
            challenge.digest.as_bytes(),
            &VerifyPolicy::default()
        ),
        Ok(())
    );
}

// ---------------------------------------------------------------------------
// Protocol 2.0 (legacy layout; `decode_request` refuses 2.0 envelopes, so
// the message is split by hand).

fn split_legacy(m: &[u8]) -> (Header, &[u8], &[u8]) {
    let header = Header::decode(&m[ENVELOPE_LEN..]).unwrap();
    let hb_end = ENVELOPE_LEN + HEADER_LEN + header.body_len as usize;
    (
        header,
        &m[ENVELOPE_LEN..hb_end],
        &m[ENVELOPE_LEN + HEADER_LEN..hb_end],
    )
}

#[test]
fn legacy_challenge_and_answer() {
    let create = vector!("legacy-2.0-create-handle-request.hex");
    assert!(
        decode_request(&create).is_err(),
        "2.0 is refused by default"
    );
    let (header, hb, body) = split_legacy(&create);
    assert_eq!(header.opcode, opcode::CREATE_HANDLE);
    let plain = vector!("create-handle-request.hex");
    assert_eq!(body, decode_request(&plain).unwrap().body);
    let digest = Digest::compute(DigestAlgorithm::Md5Legacy, hb);
    let challenge =
        Challenge::from_parts(0x2a, NONCE, digest, (2, 0), NOW, auth::CHALLENGE_TTL_SECS);
    assert!(challenge.is_legacy());
    let ctx = ResponseContext {
        request_id: 0x1111_1111,
        session_id: 0,
        major: 2,
        minor: 0,
        op_flags: (header.op_flags & (flags::CA | flags::PO)) | flags::REC | flags::AT,
        site_serial: 1,
        recursion: 0,
        expiration: EXPIRATION,
        digest: None,
    };
    let mut out = Vec::new();
    encode_challenge(&mut out, &ctx, opcode::CREATE_HANDLE, &challenge);
    let want = vector!("legacy-2.0-challenge-402-response.hex");
    assert_eq!(out, want);
    let (_, _, body) = split_legacy(&want);
    let b = ChallengeBody::decode(body, false).unwrap();
    assert_eq!((b.nonce, b.digest), (&NONCE[..], digest));

    let answer_msg = vector!("legacy-2.0-challenge-answer-seckey-md5.hex");
    let (_, _, body) = split_legacy(&answer_msg);
    let answer = ChallengeAnswer::decode(body).unwrap();
    assert_eq!(answer.answer.len(), 16);
    let values = seckey_values(SECRET);
    let policy = VerifyPolicy::default();
    assert_eq!(
        verify_answer(
            &answer,
            &challenge,
            values.iter().map(KeyValue::from),
            &policy
        ),
        Verification::Verified { key_index: 300 }
    );
    let wrong = seckey_values(b"wrong");
    assert!(
        !verify_answer(
            &answer,
            &challenge,
            wrong.iter().map(KeyValue::from),
            &policy
        )
        .is_verified()
    );
    let strict = VerifyPolicy {
        allow_md5: false,
        ..policy
    };
    assert_eq!(
        verify_answer(
            &answer,
            &challenge,
            values.iter().map(KeyValue::from),
            &strict
        ),
        Verification::Failed(FailReason::Refused)
    );
    assert_eq!(
        SecretKeyAnswer::LegacyMd5
            .compute(SECRET, &NONCE, digest.as_bytes(), &policy)
            .unwrap(),
        answer.answer
    );
}

// ---------------------------------------------------------------------------
// Results and errors.

#[test]
fn results_and_errors_are_reproduced() {
    let create = vector!("create-handle-request.hex");
    let answer = vector!("challenge-answer-seckey-pbkdf2-hmac-sha1.hex");
    let answer_id = decode_request(&answer).unwrap().envelope.request_id;
    let original = decode_request(&create).unwrap();
    let ctx = result_context(&original, answer_id, NOW).with_site(1, true);
    let mut out = Vec::new();

    encode_create_success(&mut out, &ctx, HANDLE.as_bytes());
    assert_eq!(out, vector!("create-handle-response-success.hex"));
    let r = decode_admin_response(&out).unwrap();
    assert_eq!(
        r.body,
        AdminResponseBody::Created {
            handle: HANDLE.into()
        }
    );

    for (response_code, want) in [
        (code::INVALID_ADMIN, vector!("error-400-invalid-admin.hex")),
        (
            code::AUTHENTICATION_FAILED,
            vector!("error-403-authentication-failed.hex"),
        ),
    ] {
        encode_admin_error(&mut out, &ctx, opcode::CREATE_HANDLE, response_code);
        assert_eq!(out, want);
        let r = decode_admin_response(&out).unwrap();
        assert_eq!(r.header.response_code, response_code);
        assert_eq!(
            r.body,
            AdminResponseBody::Error {
                message: String::new()
            }
        );
    }

    encode_admin_error(
        &mut out,
        &ctx_for(&create),
        opcode::CREATE_HANDLE,
        code::HANDLE_ALREADY_EXISTS,
    );
    assert_eq!(out, vector!("error-101-handle-already-exists.hex"));

    let add = vector!("add-value-request.hex");
    encode_admin_success(&mut out, &ctx_for(&add), opcode::ADD_VALUE);
    assert_eq!(out, vector!("generic-success-response.hex"));
    assert_eq!(
        decode_admin_response(&out).unwrap().body,
        AdminResponseBody::Empty
    );

    let list = vector!("list-handles-request.hex");
    let handles = [&b"88.100.1/PUMP-1"[..], b"88.100.1/PUMP-2"];
    encode_list_handles_response(&mut out, &ctx_for(&list), handles, false);
    assert_eq!(out, vector!("list-handles-response.hex"));
    assert_eq!(
        decode_admin_response(&out).unwrap().body,
        AdminResponseBody::Handles {
            handles: vec!["88.100.1/PUMP-1".into(), "88.100.1/PUMP-2".into()],
            more: false
        }
    );
    encode_list_handles_response(&mut out, &ctx_for(&list), handles, true);
    let r = decode_admin_response(&out).unwrap();
    assert!(r.header.has(flags::CN));
    assert!(matches!(
        r.body,
        AdminResponseBody::Handles { more: true, .. }
    ));
}

// ---------------------------------------------------------------------------
// VERIFY_RESPONSE.

#[test]
fn verify_response_is_checked_and_reproduced() {
    let m = vector!("verify-response-request.hex");
    let req = decode_request(&m).unwrap();
    assert_eq!(req.header.opcode, opcode::VERIFY_RESPONSE);
    let v = VerifyRequest::decode(req.body).unwrap();
    assert_eq!(
        (v.key_handle, v.key_index, v.nonce),
        (KEY_HANDLE, 300, &NONCE[..])
    );
    assert_eq!(hex::encode(v.digest), CREATE_DIGEST);
    let policy = VerifyPolicy::default();
    assert_eq!(
        verify_seckey(v.answer, SECRET, v.nonce, v.digest, false, &policy),
        Ok(())
    );
    assert_eq!(
        verify_seckey(v.answer, b"wrong", v.nonce, v.digest, false, &policy),
        Err(FailReason::Mismatch)
    );
    let mut body = Vec::new();
    v.encode_body(&mut body);
    let p = RequestParams {
        op_flags: req.header.op_flags,
        ..params(req.envelope.request_id, 0, -1)
    };
    let mut again = Vec::new();
    encode_request(
        &mut again,
        &p,
        &RequestOptions::default(),
        opcode::VERIFY_RESPONSE,
        &body,
    );
    assert_eq!(again, m);

    let server = ServerKey::from_pkcs8_pem(pem!("test-only-server-rsa.pem")).unwrap();
    let mut out = Vec::new();
    encode_verify_result(&mut out, &ctx_for(&m), true);
    sign_response(&mut out, &server, HashAlg::Sha256).unwrap();
    let want = vector!("verify-response-response.hex");
    assert_eq!(out, want);
    verify_response(&want, &server.public_key()).unwrap();
    let r = decode_response(&want).unwrap();
    let ResponseBody::Other(result) = r.body else {
        panic!("{:?}", r.body);
    };
    assert_eq!(auth::decode_verify_result(&result), Ok(true));
}

// ---------------------------------------------------------------------------
// Value data and the permission rule.

#[test]
fn value_data_decodes_and_reencodes() {
    let data = vector!("hs-admin-data.hex");
    let a = HsAdmin::decode(&data).unwrap();
    assert_eq!(a.permissions, AdminPerms(0x0fff));
    assert_eq!(a.admin, identity());
    assert!(!a.legacy);
    assert_eq!(a.encode(), data);

    let data = vector!("hs-admin-data-legacy.hex");
    let l = HsAdmin::decode(&data).unwrap();
    assert_eq!(l.permissions, AdminPerms(0x0471));
    assert_eq!(l.admin, identity());
    assert!(l.legacy);
    assert_eq!(l.encode(), data);

    let data = vector!("hs-vlist-data.hex");
    let members = decode_vlist(&data).unwrap();
    assert_eq!(
        members,
        [identity(), AdminRef::new("88.100.1/ADMIN-2", 300)]
    );
    assert_eq!(encode_vlist(&members), data);

    assert_eq!(vector!("hs-seckey-data.hex"), SECRET);

    let rsa = vector!("hs-pubkey-rsa-data.hex");
    let PublicKey::Rsa(_) = PublicKey::decode(&rsa).unwrap() else {
        panic!("not RSA");
    };
    assert_eq!(&rsa[rsa.len() - 4..], &[0; 4]);
    let PublicKey::Dsa(_) = PublicKey::decode(&vector!("hs-pubkey-dsa-data.hex")).unwrap() else {
        panic!("not DSA");
    };
}

fn no_groups(_: &str, _: u32) -> Option<Vec<AdminRef>> {
    None
}

#[test]
fn full_admin_may_do_everything() {
    let full = [HsAdmin::decode(&vector!("hs-admin-data.hex")).unwrap()];
    let me = identity();
    for bit in 0..12 {
        let needed = AdminPerms(1 << bit);
        assert!(
            admin::authorize(&me, needed, &full, no_groups),
            "{needed:?}"
        );
    }
    assert!(admin::authorize(&me, AdminPerms::ALL, &full, no_groups));
    // The prefix handle is compared case-insensitively, the index exactly.
    assert!(admin::authorize(
        &AdminRef::new("0.na/88.100.1", 300),
        AdminPerms::ADD_HANDLE,
        &full,
        no_groups
    ));
    assert!(!admin::authorize(
        &AdminRef::new(KEY_HANDLE, 301),
        AdminPerms::ADD_HANDLE,
        &full,
        no_groups
    ));
    // No HS_ADMIN at all: nobody (server admins aside).
    assert!(!admin::authorize(
        &me,
        AdminPerms::ADD_HANDLE,
        &[],
        no_groups
    ));
}

#[test]
fn legacy_admin_has_only_its_bits() {
    let legacy = [HsAdmin::decode(&vector!("hs-admin-data-legacy.hex")).unwrap()];
    let me = identity();
    let may = |needed| admin::authorize(&me, needed, &legacy, no_groups);
    for granted in [
        AdminPerms::ADD_HANDLE,
        AdminPerms::MODIFY_VALUE,
        AdminPerms::REMOVE_VALUE,
        AdminPerms::ADD_VALUE,
        AdminPerms::READ_VALUE,
    ] {
        assert!(may(granted), "{granted:?}");
    }
    for refused in [
        AdminPerms::DELETE_HANDLE,
        AdminPerms::ADD_DERIVED_PREFIX,
        AdminPerms::DELETE_DERIVED_PREFIX,
        AdminPerms::MODIFY_ADMIN,
        AdminPerms::REMOVE_ADMIN,
        AdminPerms::ADD_ADMIN,
        AdminPerms::LIST_HANDLES,
    ] {
        assert!(!may(refused), "{refused:?}");
    }
    // One value must hold every needed bit.
    assert!(!may(AdminPerms::ADD_VALUE | AdminPerms::ADD_ADMIN));
}

#[test]
fn operations_on_the_spec_examples() {
    // The create of 88.100.1/PUMP-1 is governed by 0.NA/88.100.1's HS_ADMIN.
    let rule = Operation::Create { handle: HANDLE }.rule();
    assert_eq!(rule.governing, KEY_HANDLE);
    assert_eq!(rule.needed, AdminPerms::ADD_HANDLE);
    let prefix_record = [Value::new(
        100,
        admin::HS_ADMIN,
        vector!("hs-admin-data.hex"),
    )];
    let admins = admin::hs_admins(&prefix_record);
    assert!(admin::authorize(
        &identity(),
        rule.needed,
        &admins,
        no_groups
    ));
    // Someone else gets 400.
    assert!(!admin::authorize(
        &AdminRef::new("88.100.1/ADMIN-2", 300),
        rule.needed,
        &admins,
        no_groups
    ));

    // The handle's own HS_ADMIN (from the create) governs the later ops.
    let create = vector!("create-handle-request.hex");
    let req = decode_request(&create).unwrap();
    let body = AdminRequest::decode(req.header.opcode, req.body).unwrap();
    let record = body.values();
    let admins = admin::hs_admins(record);
    let url_only = |index: u32| record.iter().filter(move |v| v.index == index);
    for op in [
        Operation::Delete { handle: HANDLE },
        Operation::AddValue {
            handle: HANDLE,
            needed: admin::needed_for_add(["EMAIL"]),
        },
        Operation::RemoveValue {
            handle: HANDLE,
            needed: admin::needed_for_remove(url_only(1).map(|v| v.kind.as_str())),
        },
        Operation::ModifyValue {
            handle: HANDLE,
            needed: admin::needed_for_modify("URL", false, "URL"),
        },
        Operation::ListHandles { prefix: "88.100.1" },
        Operation::ReadValues { handle: HANDLE },
    ] {
        let rule = op.rule();
        if let Operation::ListHandles { .. } = op {
            assert_eq!(rule.governing, KEY_HANDLE);
        } else {
            assert_eq!(rule.governing, HANDLE);
        }
        assert!(
            admin::authorize(&identity(), rule.needed, &admins, no_groups),
            "{op:?}"
        );
    }
    // Derived prefix: 0.NA/88.100.1 is governed by 0.NA/88.100.
    let rule = Operation::Create { handle: KEY_HANDLE }.rule();
    assert_eq!(rule.governing, "0.NA/88.100");
    assert_eq!(rule.needed, AdminPerms::ADD_DERIVED_PREFIX);
}

#[test]
fn groups_admit_their_members() {
    // An HS_ADMIN pointing at the HS_VLIST value 200 of 88.100.1/GROUP.
    let group_record = [Value::new(
        200,
        admin::HS_VLIST,
        vector!("hs-vlist-data.hex"),
    )];
    let resolve = |handle: &str, index: u32| {
        (handle == "88.100.1/GROUP")
            .then(|| admin::vlist_members(&group_record, index))
            .flatten()
    };
    let to_group = [HsAdmin {
        permissions: AdminPerms(0x0471),
        admin: AdminRef::new("88.100.1/GROUP", 200),
        legacy: false,
    }];
    for member in [identity(), AdminRef::new("88.100.1/ADMIN-2", 300)] {
        assert!(admin::authorize(
            &member,
            AdminPerms::ADD_VALUE,
            &to_group,
            resolve
        ));
        assert!(!admin::authorize(
            &member,
            AdminPerms::DELETE_HANDLE,
            &to_group,
            resolve
        ));
    }
    assert!(!admin::authorize(
        &AdminRef::new("88.100.1/ADMIN-2", 301),
        AdminPerms::ADD_VALUE,
        &to_group,
        resolve
    ));
    assert!(!admin::authorize(
        &AdminRef::new("88.100.1/ADMIN-3", 300),
        AdminPerms::ADD_VALUE,
        &to_group,
        resolve
    ));
    // The wrong index of the group handle is not a group.
    let wrong_index = [HsAdmin {
        admin: AdminRef::new("88.100.1/GROUP", 201),
        ..to_group[0].clone()
    }];
    assert!(!admin::authorize(
        &identity(),
        AdminPerms::ADD_VALUE,
        &wrong_index,
        resolve
    ));
    // Server admins from the config, through the group too.
    let server_admins = [AdminRef::new("88.100.1/GROUP", 200)];
    assert!(admin::is_named(
        &AdminRef::new("88.100.1/ADMIN-2", 300),
        &server_admins,
        resolve
    ));
}

// ---------------------------------------------------------------------------
// The whole flow, as the server wiring will run it.

#[test]
fn the_flow_from_request_to_result() {
    let create = vector!("create-handle-request.hex");
    let mut table = auth::PendingChallenges::new(16);
    // Step 1: challenge, keep the original request.
    let req = decode_request(&create).unwrap();
    let challenge = Challenge::new(&req, 0x2a, NONCE, NOW, auth::CHALLENGE_TTL_SECS);
    table.insert(challenge, create.clone(), NOW).unwrap();
    // Step 3: the answer arrives with session id 0x2a.
    let answer_msg = vector!("challenge-answer-seckey-pbkdf2-hmac-sha1.hex");
    let answer_req = decode_request(&answer_msg).unwrap();
    let (challenge, original) = table.take(answer_req.envelope.session_id, NOW + 5).unwrap();
    let answer = ChallengeAnswer::decode(answer_req.body).unwrap();
    let original = decode_request(&original).unwrap();
    let op = AdminRequest::decode(original.header.opcode, original.body).unwrap();
    let rule = Operation::Create {
        handle: op.handle(),
    }
    .rule();
    let prefix_admins = [HsAdmin::decode(&vector!("hs-admin-data.hex")).unwrap()];
    assert!(admin::authorize(
        &answer.identity(),
        rule.needed,
        &prefix_admins,
        no_groups
    ));
    let keys = seckey_values(SECRET);
    let v = verify_answer(
        &answer,
        &challenge,
        keys.iter().map(KeyValue::from),
        &VerifyPolicy::default(),
    );
    assert_eq!(v, Verification::Verified { key_index: 300 });
    let ctx = result_context(&original, answer_req.envelope.request_id, NOW).with_site(1, true);
    let mut out = Vec::new();
    encode_create_success(&mut out, &ctx, op.handle().as_bytes());
    assert_eq!(out, vector!("create-handle-response-success.hex"));
    // A replayed answer finds nothing: 500; an expired one: 405.
    let e = table.take(0x2a, NOW + 6).unwrap_err();
    assert_eq!(e.response_code(), code::SESSION_TIMEOUT);
    let challenge = Challenge::new(&req, 0x2b, NONCE, NOW, auth::CHALLENGE_TTL_SECS);
    table.insert(challenge, create, NOW).unwrap();
    let e = table
        .take(0x2b, NOW + auth::CHALLENGE_TTL_SECS)
        .unwrap_err();
    assert_eq!(e.response_code(), code::AUTHEN_TIMEOUT);
}

// ---------------------------------------------------------------------------
// Sessions (section 7): DH setup, the session key, HS_MAC.

mod sessions {
    use super::*;
    use idnode_handle::session::{self, DhPublicKey, SessionError, SessionSetupRequest, SetupKey};

    const SESSION_KEY: &str = "bee168634ab5cd86bcef42d7b3bfcc5e66025c88c0aaa4bac6740db35d70c02c";

    fn x(label: &str) -> Vec<u8> {
        Sha256::digest(label.as_bytes()).to_vec()
    }

    fn client_key() -> DhPublicKey {
        let m = vector!("session-setup-request-dh.hex");
        let req = decode_request(&m).unwrap();
        let setup = SessionSetupRequest::decode(req.body).unwrap();
        let SetupKey::Client(data) = setup.key else {
            panic!("{setup:?}");
        };
        DhPublicKey::decode(data).unwrap()
    }

    #[test]
    fn setup_request_decodes_and_reencodes() {
        let m = vector!("session-setup-request-dh.hex");
        let req = decode_request(&m).unwrap();
        assert_eq!(req.header.opcode, opcode::SESSION_SETUP);
        let setup = SessionSetupRequest::decode(req.body).unwrap();
        assert_eq!(setup.mode, session::mode::DIFFIE_HELLMAN);
        assert_eq!(setup.timeout, 86_400);
        assert_eq!(
            AdminRef::new(setup.identity_handle, setup.identity_index),
            identity()
        );
        let key = client_key();
        assert_eq!(key.g, [2]);
        assert_eq!(key.p.len(), 128);
        let mut body = Vec::new();
        setup.encode_body(&mut body);
        assert_eq!(body, req.body);
        let SetupKey::Client(data) = setup.key else {
            unreachable!()
        };
        assert_eq!(key.encode(), data);
        // The client's public value is g^x for the README's client x.
        let ours = session::dh_public(&key, &x("idnode test DH client private")).unwrap();
        assert_eq!(ours, key);
    }

    #[test]
    fn both_sides_derive_the_readme_session_key() {
        let client = client_key();
        let server_x = x("idnode test DH server private");
        let server = session::dh_public(&client, &server_x).unwrap();
        let k_server = session::session_key(&client, &server_x).unwrap();
        assert_eq!(hex::encode(k_server), SESSION_KEY);
        let k_client = session::session_key(&server, &x("idnode test DH client private")).unwrap();
        assert_eq!(k_client, k_server);
    }

    #[test]
    fn setup_response_is_reproduced() {
        let request = vector!("session-setup-request-dh.hex");
        let client = client_key();
        let server = session::dh_public(&client, &x("idnode test DH server private")).unwrap();
        let mut ctx = ctx_for(&request);
        ctx.session_id = 0x101;
        let mut out = Vec::new();
        session::encode_dh_setup_response(&mut out, &ctx, session::cipher::AES, &server);
        let key = ServerKey::from_pkcs8_pem(pem!("test-only-server-rsa.pem")).unwrap();
        sign_response(&mut out, &key, HashAlg::Sha256).unwrap();
        let want = vector!("session-setup-response-dh.hex");
        assert_eq!(out, want);
        verify_response(&want, &key.public_key()).unwrap();
        // The client side reads the cipher and the server key back.
        let r = decode_response(&want).unwrap();
        assert_eq!(r.envelope.session_id, 0x101);
        let ResponseBody::Other(body) = r.body else {
            panic!("{:?}", r.body);
        };
        let (cipher, key) = session::decode_dh_setup_response(&body).unwrap();
        assert_eq!((cipher, key), (session::cipher::AES, server));
    }

    #[test]
    fn session_macs_verify() {
        let key: [u8; 32] = hex::decode(SESSION_KEY).unwrap().try_into().unwrap();
        let m = vector!("session-create-handle-request-mac.hex");
        assert_eq!(session::verify_session_mac(&m, &key), Ok(1));
        let mut wrong = key;
        wrong[0] ^= 1;
        let e = session::verify_session_mac(&m, &wrong).unwrap_err();
        assert_eq!(e, SessionError::BadMac);
        assert_eq!(e.response_code(), code::INVALID_SESSION_KEY);
        let plain = vector!("create-handle-request.hex");
        let e = session::verify_session_mac(&plain, &key).unwrap_err();
        assert_eq!(e, SessionError::MissingMac);
        assert_eq!(e.response_code(), code::INVALID_CREDENTIAL);
        // A changed body breaks the MAC.
        let mut tampered = m.clone();
        tampered[ENVELOPE_LEN + HEADER_LEN + 10] ^= 1;
        assert_eq!(
            session::verify_session_mac(&tampered, &key),
            Err(SessionError::BadMac)
        );
        // Encrypted messages are decrypted first, never read as plain.
        let enc = vector!("session-add-value-request-encrypted.hex");
        assert!(matches!(
            decode_request(&enc),
            Err(DecodeError::UnsupportedFlags(_))
        ));
    }

    fn the_key() -> [u8; 32] {
        hex::decode(SESSION_KEY).unwrap().try_into().unwrap()
    }

    #[test]
    fn the_encrypted_add_value_decrypts_and_its_mac_verifies() {
        let key = the_key();
        let enc = vector!("session-add-value-request-encrypted.hex");
        let plain = session::decrypt_message(&enc, &key).unwrap();
        assert_eq!(plain[2] & flags::ENCRYPTED, 0);
        let req = decode_request(&plain).unwrap();
        assert_eq!(req.envelope.session_id, 0x101);
        assert_eq!(req.envelope.request_id, 0xaaaa_aaaa);
        assert_eq!(req.header.opcode, opcode::ADD_VALUE);
        let AdminRequest::AddValue { handle, values } =
            AdminRequest::decode(req.header.opcode, req.body).unwrap()
        else {
            panic!("not an ADD_VALUE");
        };
        assert_eq!(handle, "88.100.1/PUMP-1");
        assert_eq!(values.len(), 1);
        assert_eq!(
            (values[0].index, values[0].kind.as_str()),
            (301, "HS_SECKEY")
        );
        assert_eq!(&values[0].data[..], b"n3w-s3cret");
        assert_eq!(session::verify_session_mac(&plain, &key), Ok(2));
        // Encrypting it again with the vector's IV gives the vector back.
        let iv: [u8; 16] = enc[ENVELOPE_LEN..ENVELOPE_LEN + 16].try_into().unwrap();
        assert_eq!(session::encrypt_message(&plain, &key, &iv).unwrap(), enc);
        // Another key: refused, not misread.
        let mut wrong = key;
        wrong[3] ^= 0x40;
        assert!(session::decrypt_message(&enc, &wrong).is_err());
        // Every truncation and every flipped ciphertext byte fails cleanly.
        for cut in 0..enc.len() {
            assert!(session::decrypt_message(&enc[..cut], &key).is_err());
        }
        for at in ENVELOPE_LEN..enc.len() {
            let mut bad = enc.clone();
            bad[at] ^= 0x5a;
            if let Ok(p) = session::decrypt_message(&bad, &key) {
                // CBC without a MAC may decrypt to something: the MAC
                // inside then refuses it.
                assert!(session::verify_session_mac(&p, &key).is_err());
            }
        }
    }

    #[test]
    fn an_added_mac_matches_the_vector() {
        let key = the_key();
        let m = vector!("session-create-handle-request-mac.hex");
        let plain = vector!("create-handle-request.hex");
        // The plain create is the same header and body under session 0:
        // put it in session 0x101, then MAC it with counter 1.
        let mut ours = plain.clone();
        ours[4..8].copy_from_slice(&0x101u32.to_be_bytes());
        ours[8..12].copy_from_slice(&0x8888_8888u32.to_be_bytes());
        let parts_len = ours.len();
        session::add_session_mac(&mut ours, &key, 1).unwrap();
        assert!(ours.len() > parts_len);
        assert_eq!(ours, m);
        assert!(session::add_session_mac(&mut ours, &key, 2).is_err());
    }
}
