//! Handle administration end to end against an in-memory store and the
//! real registry: admin request, 402 challenge, challenge answer (HS_SECKEY
//! and HS_PUBKEY, made with the codec's client-side encoders and the test
//! keys of the CNRI vectors), result; and the refusals, each leaving the
//! store as it was.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::{HandleService, Outcome, ResponseCache, Scratch};
use idnode_core::{Permissions, Value};
use idnode_handle::admin::{
    AdminPerms, AdminRef, AdminRequest, AdminResponse, AdminResponseBody, decode_admin_response,
    encode_vlist,
};
use idnode_handle::auth::{
    AuthType, ChallengeAnswer, SecretKeyAnswer, VerifyPolicy, pubkey_answer,
};
use idnode_handle::keys::{HashAlg, ServerKey};
use idnode_handle::{
    RequestOptions, RequestParams, ResponseBody, code, decode_response, encode_request,
    encode_resolution_request, flags, opcode,
};
use idnode_registry::{Registry, hs_admin_data};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Store};
use std::sync::Arc;

const NOW: u32 = 1_800_000_000;
const PREFIX_HANDLE: &str = "0.NA/88.100.1";
const SECRET: &[u8] = b"s3cret";
const CLIENT_FLAGS: u32 = flags::REC | flags::CA | flags::PO;

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.bytes().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const RSA_PUBKEY_HEX: &str = include_str!("../../handle/tests/vectors/auth/hs-pubkey-rsa-data.hex");
const RSA_PRIVATE_PEM: &str =
    include_str!("../../handle/tests/vectors/auth/test-only-admin-rsa.pem");
const CREATE_VECTOR: &str =
    include_str!("../../handle/tests/vectors/auth/create-handle-request.hex");

fn admin_value(index: u32, perms: u16, admin: &str, admin_index: u32) -> Value {
    Value::new(index, "HS_ADMIN", hs_admin_data(perms, admin, admin_index))
}

fn secret_value(index: u32, secret: &[u8]) -> Value {
    let mut v = Value::new(index, "HS_SECKEY", secret.to_vec());
    v.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    v
}

struct Node {
    registry: Arc<Registry>,
    service: Arc<HandleService>,
    next_id: std::cell::Cell<u32>,
}

/// A node homing 88.100.1, whose prefix record names these admins:
/// 300 (HS_SECKEY `s3cret`, every permission), 301 (the test RSA key,
/// every permission), 302 (HS_SECKEY `lister`, list handles only), and
/// group 400 (HS_VLIST naming 88.100.1/ADMIN-2:300, add handle).
fn node() -> Node {
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> =
        Arc::new(ObservedStore::new(Arc::new(MemoryStore::new()), observers));
    let registry = Arc::new(Registry::with_clock(store.clone(), || NOW));
    registry.create_prefix("88.100.1").unwrap();
    let mut pubkey = Value::new(301, "HS_PUBKEY", parse_hex(RSA_PUBKEY_HEX));
    pubkey.permissions = Permissions::default();
    registry
        .add_values(
            PREFIX_HANDLE,
            vec![
                admin_value(101, 0x0fff, PREFIX_HANDLE, 300),
                admin_value(102, 0x0fff, PREFIX_HANDLE, 301),
                admin_value(103, AdminPerms::LIST_HANDLES.0, PREFIX_HANDLE, 302),
                admin_value(104, AdminPerms::ADD_HANDLE.0, PREFIX_HANDLE, 400),
                secret_value(300, SECRET),
                pubkey,
                secret_value(302, b"lister"),
                Value::new(
                    400,
                    "HS_VLIST",
                    encode_vlist(&[AdminRef::new("88.100.1/ADMIN-2", 300)]),
                ),
            ],
        )
        .unwrap();
    registry
        .create_identifier(
            "88.100.1/ADMIN-2",
            vec![secret_value(300, b"second")],
            false,
        )
        .unwrap();
    let mut service = HandleService::with_cache(store, cache);
    service.set_registry(registry.clone());
    Node {
        registry,
        service: Arc::new(service),
        next_id: std::cell::Cell::new(1),
    }
}

fn message(op: u32, body: &[u8], request_id: u32, session_id: u32, extra: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(
        &mut out,
        &RequestParams {
            request_id,
            session_id,
            op_flags: CLIENT_FLAGS | extra,
            site_serial: -1,
            expiration: NOW + 60,
            ..RequestParams::default()
        },
        &RequestOptions::default(),
        op,
        body,
    );
    out
}

/// A key to answer with.
enum Key<'a> {
    Secret {
        handle: &'a str,
        index: u32,
        secret: &'a [u8],
        alg: SecretKeyAnswer<'static>,
    },
    Rsa {
        index: u32,
    },
}

const HMAC: SecretKeyAnswer<'static> = SecretKeyAnswer::HmacSha256;
const PBKDF2: SecretKeyAnswer<'static> = SecretKeyAnswer::Pbkdf2HmacSha1 {
    salt: b"PBKDF2-SALT-0001",
    iterations: 10_000,
    bits: 160,
};

fn admin300() -> Key<'static> {
    Key::Secret {
        handle: PREFIX_HANDLE,
        index: 300,
        secret: SECRET,
        alg: HMAC,
    }
}

struct Challenged {
    session_id: u32,
    nonce: Vec<u8>,
    digest: Vec<u8>,
}

impl Node {
    fn id(&self) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Sends `msg` as a TCP transport would: `respond`, then the admin
    /// path when told.
    fn send(&self, msg: &[u8], now: u32) -> Vec<AdminResponse> {
        let mut out = Vec::new();
        let outcome = self
            .service
            .respond(msg, now, &mut out, &mut Scratch::default());
        assert!(matches!(outcome, Outcome::Admin { .. }), "{outcome:?}");
        assert!(out.is_empty());
        self.service
            .respond_admin(msg, now)
            .iter()
            .map(|m| decode_admin_response(m).unwrap())
            .collect()
    }

    fn request(&self, req: &AdminRequest, extra: u32) -> (Vec<u8>, Vec<AdminResponse>) {
        let mut body = Vec::new();
        req.encode_body(&mut body);
        let msg = message(req.opcode(), &body, self.id(), 0, extra);
        let answers = self.send(&msg, NOW);
        (msg, answers)
    }

    /// Sends `req`, expects a 402, and returns it.
    fn challenged(&self, req: &AdminRequest, extra: u32) -> Challenged {
        let (_, answers) = self.request(req, extra);
        assert_eq!(answers.len(), 1);
        let a = &answers[0];
        assert_eq!(a.header.response_code, code::AUTHENTICATION_NEEDED, "{a:?}");
        assert_eq!(a.header.opcode, req.opcode());
        assert_ne!(a.envelope.session_id, 0);
        let AdminResponseBody::Challenge { nonce } = &a.body else {
            panic!("not a challenge: {a:?}");
        };
        Challenged {
            session_id: a.envelope.session_id,
            nonce: nonce.clone(),
            digest: a.digest.unwrap().as_bytes().to_vec(),
        }
    }

    fn answer_message(&self, ch: &Challenged, key: &Key<'_>, request_id: u32) -> Vec<u8> {
        let (auth_type, handle, index, answer) = match key {
            Key::Secret {
                handle,
                index,
                secret,
                alg,
            } => (
                AuthType::SecretKey,
                *handle,
                *index,
                alg.compute(secret, &ch.nonce, &ch.digest, &VerifyPolicy::default())
                    .unwrap(),
            ),
            Key::Rsa { index } => {
                let key = ServerKey::from_pkcs8_pem(RSA_PRIVATE_PEM).unwrap();
                (
                    AuthType::PublicKey,
                    PREFIX_HANDLE,
                    *index,
                    pubkey_answer(&key, HashAlg::Sha256, &ch.nonce, &ch.digest).unwrap(),
                )
            }
        };
        let mut body = Vec::new();
        ChallengeAnswer {
            auth_type,
            key_handle: handle,
            key_index: index,
            answer: &answer,
        }
        .encode_body(&mut body);
        message(
            opcode::CHALLENGE_RESPONSE,
            &body,
            request_id,
            ch.session_id,
            0,
        )
    }

    /// The whole flow; returns the result messages (request id checked).
    fn run(&self, req: &AdminRequest, key: &Key<'_>, extra: u32) -> Vec<AdminResponse> {
        let ch = self.challenged(req, extra);
        let rid = self.id();
        let answers = self.send(&self.answer_message(&ch, key, rid), NOW + 1);
        for a in &answers {
            assert_eq!(a.envelope.request_id, rid);
            assert_eq!(a.header.opcode, req.opcode());
            assert_eq!(a.envelope.session_id, 0);
        }
        answers
    }

    fn run_code(&self, req: &AdminRequest, key: &Key<'_>) -> u32 {
        let answers = self.run(req, key, 0);
        assert_eq!(answers.len(), 1);
        answers[0].header.response_code
    }

    /// The public values a resolution returns now (through the response
    /// cache), or the error code.
    fn resolve(&self, handle: &str) -> Result<Vec<(u32, String)>, u32> {
        let mut msg = Vec::new();
        encode_resolution_request(
            &mut msg,
            &RequestParams {
                request_id: 9,
                handle: handle.as_bytes(),
                expiration: NOW + 60,
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        self.service
            .respond(&msg, NOW, &mut out, &mut Scratch::default());
        let r = decode_response(&out).unwrap();
        match r.body {
            ResponseBody::Resolution { values, .. } => Ok(values
                .iter()
                .map(|v| (v.index, String::from_utf8_lossy(&v.data).into_owned()))
                .collect()),
            _ => Err(r.header.response_code),
        }
    }

    fn snapshot(&self) -> Vec<(String, Vec<Value>)> {
        let mut all = Vec::new();
        for h in ["88.100.1/PUMP-1", PREFIX_HANDLE, "88.100.1/ADMIN-2"] {
            if let Ok(r) = self.registry.get_identifier(h) {
                all.push((h.to_owned(), r.values));
            }
        }
        all
    }
}

fn create(handle: &str, url: &str) -> AdminRequest {
    AdminRequest::CreateHandle {
        handle: handle.to_owned(),
        values: vec![
            admin_value(100, 0x0fff, PREFIX_HANDLE, 300),
            Value::new(1, "URL", url.as_bytes().to_vec()),
        ],
    }
}

#[test]
fn create_add_modify_remove_list_delete_with_a_secret_key() {
    let n = node();
    let pump = "88.100.1/PUMP-1";
    assert_eq!(n.resolve(pump), Err(code::HANDLE_NOT_FOUND));

    let answers = n.run(&create(pump, "https://example.com/pump/1"), &admin300(), 0);
    assert_eq!(answers[0].header.response_code, code::SUCCESS);
    assert_eq!(
        answers[0].body,
        AdminResponseBody::Created {
            handle: pump.to_owned()
        }
    );
    // Resolvable at once, the timestamps the node's.
    let values = n.resolve(pump).unwrap();
    assert!(values.contains(&(1, "https://example.com/pump/1".to_owned())));
    let stored = n.registry.get_identifier(pump).unwrap();
    assert!(stored.values.iter().all(|v| v.timestamp == NOW));

    let add = AdminRequest::AddValue {
        handle: pump.to_owned(),
        values: vec![Value::new(2, "EMAIL", "ops@example.com")],
    };
    assert_eq!(n.run_code(&add, &admin300()), code::SUCCESS);
    assert!(
        n.resolve(pump)
            .unwrap()
            .contains(&(2, "ops@example.com".to_owned()))
    );

    let modify = AdminRequest::ModifyValue {
        handle: pump.to_owned(),
        values: vec![Value::new(1, "URL", "https://example.com/pump/one")],
    };
    assert_eq!(n.run_code(&modify, &admin300()), code::SUCCESS);
    assert!(
        n.resolve(pump)
            .unwrap()
            .contains(&(1, "https://example.com/pump/one".to_owned()))
    );

    let remove = AdminRequest::RemoveValue {
        handle: pump.to_owned(),
        indexes: vec![2],
    };
    assert_eq!(n.run_code(&remove, &admin300()), code::SUCCESS);
    assert!(n.resolve(pump).unwrap().iter().all(|(i, _)| *i != 2));

    let list = AdminRequest::ListHandles {
        prefix: PREFIX_HANDLE.to_owned(),
    };
    let answers = n.run(&list, &admin300(), 0);
    assert_eq!(answers.len(), 1);
    let AdminResponseBody::Handles { handles, more } = &answers[0].body else {
        panic!("{:?}", answers[0]);
    };
    assert!(!more);
    assert_eq!(handles, &["88.100.1/ADMIN-2", pump]);

    let delete = AdminRequest::DeleteHandle {
        handle: pump.to_owned(),
    };
    assert_eq!(n.run_code(&delete, &admin300()), code::SUCCESS);
    assert_eq!(n.resolve(pump), Err(code::HANDLE_NOT_FOUND));
}

#[test]
fn cnri_pbkdf2_answer_and_the_cnri_create_vector() {
    let n = node();
    // The create exactly as CNRI 9.x sends it.
    let msg = parse_hex(CREATE_VECTOR);
    let answers = n.send(&msg, NOW);
    assert_eq!(answers[0].header.response_code, code::AUTHENTICATION_NEEDED);
    let AdminResponseBody::Challenge { nonce } = &answers[0].body else {
        panic!();
    };
    assert_eq!(nonce.len(), 16);
    let digest = answers[0].digest.unwrap();
    assert_eq!(
        idnode_handle::DigestAlgorithm::Sha256,
        digest.algorithm(),
        "SHA-256 at 2.11"
    );
    let ch = Challenged {
        session_id: answers[0].envelope.session_id,
        nonce: nonce.clone(),
        digest: digest.as_bytes().to_vec(),
    };
    let key = Key::Secret {
        handle: PREFIX_HANDLE,
        index: 300,
        secret: SECRET,
        alg: PBKDF2,
    };
    let answers = n.send(&n.answer_message(&ch, &key, 0x2222_2222), NOW + 1);
    assert_eq!(answers[0].header.response_code, code::SUCCESS);
    assert_eq!(answers[0].envelope.request_id, 0x2222_2222);
    assert!(n.resolve("88.100.1/PUMP-1").is_ok());
}

#[test]
fn rsa_key_at_its_index_and_at_index_zero() {
    let n = node();
    let code = n.run_code(
        &create("88.100.1/RSA-1", "https://rsa/1"),
        &Key::Rsa { index: 301 },
    );
    assert_eq!(code, code::SUCCESS);
    let code = n.run_code(
        &create("88.100.1/RSA-2", "https://rsa/2"),
        &Key::Rsa { index: 0 },
    );
    assert_eq!(code, code::SUCCESS);
    assert!(n.resolve("88.100.1/RSA-2").is_ok());
}

#[test]
fn a_group_member_may_create() {
    let n = node();
    let key = Key::Secret {
        handle: "88.100.1/ADMIN-2",
        index: 300,
        secret: b"second",
        alg: HMAC,
    };
    assert_eq!(
        n.run_code(&create("88.100.1/BY-GROUP", "https://g"), &key),
        code::SUCCESS
    );
    // The group grants add handle only.
    let delete = AdminRequest::DeleteHandle {
        handle: "88.100.1/BY-GROUP".to_owned(),
    };
    assert_eq!(n.run_code(&delete, &key), code::INVALID_ADMIN);
}

#[test]
fn wrong_secret_is_403_and_nothing_changes() {
    let n = node();
    let before = n.snapshot();
    let key = Key::Secret {
        handle: PREFIX_HANDLE,
        index: 300,
        secret: b"wrong",
        alg: HMAC,
    };
    let req = create("88.100.1/PUMP-1", "https://example.com/pump/1");
    assert_eq!(n.run_code(&req, &key), code::AUTHENTICATION_FAILED);
    assert_eq!(n.snapshot(), before);
    assert_eq!(n.resolve("88.100.1/PUMP-1"), Err(code::HANDLE_NOT_FOUND));
    // The RSA key against an HS_SECKEY index, and an index with no key.
    assert_eq!(
        n.run_code(&req, &Key::Rsa { index: 300 }),
        code::AUTHENTICATION_FAILED
    );
    assert_eq!(n.snapshot(), before);
}

#[test]
fn admin_without_the_permission_is_400_and_nothing_changes() {
    let n = node();
    let before = n.snapshot();
    let lister = Key::Secret {
        handle: PREFIX_HANDLE,
        index: 302,
        secret: b"lister",
        alg: HMAC,
    };
    let req = create("88.100.1/PUMP-1", "https://example.com/pump/1");
    assert_eq!(n.run_code(&req, &lister), code::INVALID_ADMIN);
    // Refused before the answer is checked: a wrong secret gets 400 too.
    let wrong = Key::Secret {
        handle: PREFIX_HANDLE,
        index: 302,
        secret: b"nope",
        alg: HMAC,
    };
    assert_eq!(n.run_code(&req, &wrong), code::INVALID_ADMIN);
    // An identity no HS_ADMIN names.
    let stranger = Key::Secret {
        handle: "88.100.1/ADMIN-2",
        index: 7,
        secret: b"second",
        alg: HMAC,
    };
    assert_eq!(n.run_code(&req, &stranger), code::INVALID_ADMIN);
    assert_eq!(n.snapshot(), before);
    // What it may do, it does.
    let list = AdminRequest::ListHandles {
        prefix: "88.100.1".to_owned(),
    };
    assert_eq!(n.run_code(&list, &lister), code::SUCCESS);
}

#[test]
fn an_answer_is_one_shot_and_expires() {
    let n = node();
    let req = create("88.100.1/PUMP-1", "https://example.com/pump/1");
    let ch = n.challenged(&req, 0);
    let answer = n.answer_message(&ch, &admin300(), 77);
    assert_eq!(
        n.send(&answer, NOW + 1)[0].header.response_code,
        code::SUCCESS
    );
    // Replayed: the challenge is gone.
    let before = n.snapshot();
    let replay = n.send(&answer, NOW + 2);
    assert_eq!(replay[0].header.response_code, code::SESSION_TIMEOUT);
    assert_eq!(n.snapshot(), before);

    // Answered after its 60 s.
    let req = create("88.100.1/LATE", "https://late");
    let ch = n.challenged(&req, 0);
    let answer = n.answer_message(&ch, &admin300(), 78);
    let late = n.send(&answer, NOW + 61);
    assert_eq!(late[0].header.response_code, code::AUTHEN_TIMEOUT);
    assert_eq!(n.resolve("88.100.1/LATE"), Err(code::HANDLE_NOT_FOUND));
    // And it is gone too.
    assert_eq!(
        n.send(&answer, NOW + 2)[0].header.response_code,
        code::SESSION_TIMEOUT
    );
}

#[test]
fn an_answer_computed_for_another_request_is_403() {
    let n = node();
    let first = n.challenged(&create("88.100.1/ONE", "https://1"), 0);
    let second = n.challenged(&create("88.100.1/TWO", "https://2"), 0);
    // The MAC over the first challenge's nonce and digest, sent under the
    // second's session id.
    let forged = Challenged {
        session_id: second.session_id,
        nonce: first.nonce.clone(),
        digest: first.digest.clone(),
    };
    let answers = n.send(&n.answer_message(&forged, &admin300(), 5), NOW + 1);
    assert_eq!(answers[0].header.response_code, code::AUTHENTICATION_FAILED);
    assert_eq!(n.resolve("88.100.1/ONE"), Err(code::HANDLE_NOT_FOUND));
    assert_eq!(n.resolve("88.100.1/TWO"), Err(code::HANDLE_NOT_FOUND));
}

#[test]
fn checks_before_the_challenge() {
    let n = node();
    let codes = |req: &AdminRequest, extra: u32| n.request(req, extra).1[0].header.response_code;
    // Not homed here.
    assert_eq!(
        codes(&create("99.1/X", "https://x"), 0),
        code::SERVER_NOT_RESP
    );
    // Exists (OW clear), and with OW: challenged.
    let admin2 = create("88.100.1/ADMIN-2", "https://x");
    assert_eq!(codes(&admin2, 0), code::HANDLE_ALREADY_EXISTS);
    assert_eq!(codes(&admin2, flags::OW), code::AUTHENTICATION_NEEDED);
    // Index 0, duplicate index.
    let bad = AdminRequest::CreateHandle {
        handle: "88.100.1/BAD".to_owned(),
        values: vec![Value::new(1, "URL", "a"), Value::new(1, "URL", "b")],
    };
    assert_eq!(codes(&bad, 0), code::VALUE_ALREADY_EXISTS);
    // A handle that may not be written: an invisible character.
    assert_eq!(
        codes(&create("88.100.1/A\u{200b}B", "https://x"), 0),
        code::INVALID_HANDLE
    );
    let mut zero = Value::new(1, "URL", "a");
    zero.index = 0;
    let bad = AdminRequest::AddValue {
        handle: "88.100.1/ADMIN-2".to_owned(),
        values: vec![zero],
    };
    assert_eq!(codes(&bad, 0), code::INVALID_VALUE);
    // Modify: no such handle, no such index.
    let modify = |handle: &str, index: u32| AdminRequest::ModifyValue {
        handle: handle.to_owned(),
        values: vec![Value::new(index, "URL", "a")],
    };
    assert_eq!(
        codes(&modify("88.100.1/NONE", 1), 0),
        code::HANDLE_NOT_FOUND
    );
    assert_eq!(
        codes(&modify("88.100.1/ADMIN-2", 9), 0),
        code::VALUES_NOT_FOUND
    );
    // List of a prefix not homed here.
    let list = AdminRequest::ListHandles {
        prefix: "0.NA/99.1".to_owned(),
    };
    assert_eq!(codes(&list, 0), code::SERVER_NOT_RESP);
    // A session id this node never gave out.
    let mut body = Vec::new();
    create("88.100.1/S", "https://s").encode_body(&mut body);
    let msg = message(opcode::CREATE_HANDLE, &body, 1, 0x101, 0);
    assert_eq!(
        n.send(&msg, NOW)[0].header.response_code,
        code::SESSION_TIMEOUT
    );
}

#[test]
fn checks_after_the_answer() {
    let n = node();
    // Delete of a handle that is not there: 100 after the answer.
    let delete = AdminRequest::DeleteHandle {
        handle: "88.100.1/NONE".to_owned(),
    };
    assert_eq!(n.run_code(&delete, &admin300()), code::HANDLE_NOT_FOUND);
    // Remove of a missing index.
    let remove = AdminRequest::RemoveValue {
        handle: "88.100.1/ADMIN-2".to_owned(),
        indexes: vec![42],
    };
    assert_eq!(n.run_code(&remove, &admin300()), code::VALUES_NOT_FOUND);
    // ADMIN-2 has no HS_ADMIN: nobody but a server admin may change it.
    let add = AdminRequest::AddValue {
        handle: "88.100.1/ADMIN-2".to_owned(),
        values: vec![Value::new(5, "URL", "https://x")],
    };
    assert_eq!(n.run_code(&add, &admin300()), code::INVALID_ADMIN);
    // An unknown auth type: 404 after the admin check.
    let ch = n.challenged(&create("88.100.1/T", "https://t"), 0);
    let mut body = Vec::new();
    ChallengeAnswer {
        auth_type: AuthType::Other(b"HS_OTHER"),
        key_handle: PREFIX_HANDLE,
        key_index: 300,
        answer: b"x",
    }
    .encode_body(&mut body);
    let msg = message(opcode::CHALLENGE_RESPONSE, &body, 3, ch.session_id, 0);
    assert_eq!(
        n.send(&msg, NOW + 1)[0].header.response_code,
        code::INVALID_CREDENTIAL
    );
    // An answer with session id 0.
    let msg = message(opcode::CHALLENGE_RESPONSE, &body, 3, 0, 0);
    assert_eq!(
        n.send(&msg, NOW)[0].header.response_code,
        code::AUTHEN_TIMEOUT
    );
    // An undecodable answer body.
    let ch = n.challenged(&create("88.100.1/T", "https://t"), 0);
    let msg = message(opcode::CHALLENGE_RESPONSE, b"\x00\x00", 3, ch.session_id, 0);
    assert_eq!(
        n.send(&msg, NOW + 1)[0].header.response_code,
        code::PROTOCOL_ERROR
    );
}

#[test]
fn key_handle_elsewhere_is_403() {
    let n = node();
    let key = Key::Secret {
        handle: "0.NA/77.1",
        index: 300,
        secret: SECRET,
        alg: HMAC,
    };
    // Name that identity in the prefix's HS_ADMIN so the admin check passes.
    n.registry
        .add_values(
            PREFIX_HANDLE,
            vec![admin_value(105, 0x0fff, "0.NA/77.1", 300)],
        )
        .unwrap();
    let code = n.run_code(&create("88.100.1/R", "https://r"), &key);
    assert_eq!(code, code::AUTHENTICATION_FAILED);
}

#[test]
fn list_handles_fifty_a_message() {
    let n = node();
    for i in 0..120 {
        n.registry
            .create_identifier(
                &format!("88.100.1/ITEM-{i:03}"),
                vec![Value::new(1, "URL", "https://i")],
                false,
            )
            .unwrap();
    }
    let list = AdminRequest::ListHandles {
        prefix: "88.100.1".to_owned(),
    };
    let answers = n.run(&list, &admin300(), 0);
    assert_eq!(answers.len(), 3);
    let mut all = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let AdminResponseBody::Handles { handles, more } = &a.body else {
            panic!("{a:?}");
        };
        assert_eq!(*more, i < 2);
        assert!(handles.len() <= 50);
        all.extend(handles.clone());
    }
    assert_eq!(all.len(), 121);
}

#[test]
fn admin_opcodes_without_a_registry_and_on_udp() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let plain = HandleService::new(store);
    let mut body = Vec::new();
    create("88.100.1/X", "https://x").encode_body(&mut body);
    let msg = message(opcode::CREATE_HANDLE, &body, 1, 0, 0);
    let mut out = Vec::new();
    let outcome = plain.respond(&msg, NOW, &mut out, &mut Scratch::default());
    assert_eq!(outcome, Outcome::Reply { keep_open: false });
    assert_eq!(
        decode_response(&out).unwrap().header.response_code,
        code::OPERATION_NOT_SUPPORTED
    );
    // A query-only interface answers 4.
    let n = node();
    n.service.refuse_admin(&msg, NOW, &mut out);
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::PROTOCOL_ERROR);
    assert_eq!(r.envelope.request_id, 1);
    assert!(HandleService::is_admin_message(&msg));
}

// Sessions: the setup of the CNRI vector (whose client DH private value
// the vectors' README gives), then requests in the session.

const SETUP_VECTOR: &str =
    include_str!("../../handle/tests/vectors/auth/session-setup-request-dh.hex");

/// The session key the client of the setup vector derives from `reply`.
fn client_session_key(reply: &[u8]) -> (u32, [u8; 32]) {
    use idnode_handle::session;
    use sha2::Digest as _;
    let r = decode_response(reply).unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    let ResponseBody::Other(body) = r.body else {
        panic!("{:?}", r.body);
    };
    let (cipher, server) = session::decode_dh_setup_response(&body).unwrap();
    assert_eq!(cipher, session::cipher::AES);
    let x = sha2::Sha256::digest(b"idnode test DH client private");
    (
        r.envelope.session_id,
        session::session_key(&server, &x).unwrap(),
    )
}

fn in_session(
    n: &Node,
    req: &AdminRequest,
    session_id: u32,
    key: &[u8; 32],
    counter: u32,
) -> Vec<u8> {
    let mut body = Vec::new();
    req.encode_body(&mut body);
    let mut msg = message(req.opcode(), &body, n.id(), session_id, 0);
    idnode_handle::session::add_session_mac(&mut msg, key, counter).unwrap();
    msg
}

#[test]
fn a_cnri_session_is_challenged_once_then_trusted() {
    use idnode_handle::session;
    let n = node();
    let setup = parse_hex(SETUP_VECTOR);
    // Over UDP (a query-only interface) the setup is served too.
    let mut out = Vec::new();
    n.service.refuse_admin(&setup, NOW, &mut out);
    let (udp_session, _) = client_session_key(&out);
    let replies = n.service.respond_admin(&setup, NOW);
    let (sid, key) = client_session_key(&replies[0]);
    assert!(sid != 0 && sid != udp_session);

    // The first request is challenged under the session's id.
    let pump = "88.100.1/PUMP-9";
    let msg = in_session(&n, &create(pump, "https://p/9"), sid, &key, 1);
    let answers = n.send(&msg, NOW);
    assert_eq!(answers[0].header.response_code, code::AUTHENTICATION_NEEDED);
    assert_eq!(answers[0].envelope.session_id, sid);
    let AdminResponseBody::Challenge { nonce } = &answers[0].body else {
        panic!();
    };
    let ch = Challenged {
        session_id: sid,
        nonce: nonce.clone(),
        digest: answers[0].digest.unwrap().as_bytes().to_vec(),
    };
    let answers = n.send(&n.answer_message(&ch, &admin300(), n.id()), NOW + 1);
    assert_eq!(answers[0].header.response_code, code::SUCCESS);
    assert!(n.resolve(pump).is_ok());

    // Authenticated: an encrypted ADD_VALUE needs no challenge.
    let add = AdminRequest::AddValue {
        handle: pump.to_owned(),
        values: vec![Value::new(7, "EMAIL", b"ops@example.com".to_vec())],
    };
    let plain = in_session(&n, &add, sid, &key, 2);
    let sealed = session::encrypt_message(&plain, &key, &[9; 16]).unwrap();
    let answers = n.send(&sealed, NOW + 2);
    assert_eq!(answers[0].header.response_code, code::SUCCESS);
    assert!(n.registry.get_identifier(pump).unwrap().value(7).is_some());

    // The same message again: 505; a bad MAC: 502; none: 404.
    n.registry.remove_values(pump, &[7]).unwrap();
    let answers = n.send(&sealed, NOW + 3);
    assert_eq!(
        answers[0].header.response_code,
        code::SESSION_MESSAGE_REJECTED
    );
    let answers = n.send(&in_session(&n, &add, sid, &[1; 32], 3), NOW + 3);
    assert_eq!(answers[0].header.response_code, code::INVALID_SESSION_KEY);
    let mut body = Vec::new();
    add.encode_body(&mut body);
    let bare = message(opcode::ADD_VALUE, &body, n.id(), sid, 0);
    assert_eq!(
        n.send(&bare, NOW + 3)[0].header.response_code,
        code::INVALID_CREDENTIAL
    );
    assert!(n.registry.get_identifier(pump).unwrap().value(7).is_none());

    // Terminated: 500 afterwards.
    let mut end = Vec::new();
    idnode_core::wire::put_bytes(&mut end, PREFIX_HANDLE.as_bytes());
    let mut msg = message(opcode::SESSION_TERMINATE, &end, n.id(), sid, 0);
    session::add_session_mac(&mut msg, &key, 4).unwrap();
    assert_eq!(n.send(&msg, NOW + 4)[0].header.response_code, code::SUCCESS);
    let answers = n.send(&in_session(&n, &add, sid, &key, 5), NOW + 4);
    assert_eq!(answers[0].header.response_code, code::SESSION_TIMEOUT);
    // The UDP session, never authenticated, times out after two minutes.
    let late = in_session(&n, &add, udp_session, &key, 1);
    let answers = n.send(&late, NOW + 600);
    assert_eq!(answers[0].header.response_code, code::SESSION_TIMEOUT);
}
