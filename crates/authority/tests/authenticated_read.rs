//! Authenticated resolution against an in-memory store, the real registry
//! and the response cache: a RESOLUTION with PO clear over an admin
//! interface (`respond_stream`, as TCP and QUIC call it) for a record with
//! values without public read is challenged (402); an admin with read
//! value on the identifier gets every value it asked for, anybody else
//! the spec's code and no private byte; UDP (`respond`, `respond_batch`)
//! and PO keep answering public values only, and the response cache never
//! holds a private value.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::cache::Entry;
use idnode_authority::{Batch, HandleService, Outcome, ResponseCache, Scratch};
use idnode_core::{Permissions, Value, normalize_into};
use idnode_handle::admin::{AdminPerms, AdminResponseBody, decode_admin_response};
use idnode_handle::auth::{AuthType, ChallengeAnswer, SecretKeyAnswer, VerifyPolicy};
use idnode_handle::keys::ServerKey;
use idnode_handle::{
    RequestOptions, RequestParams, ResponseBody, code, decode_response, encode_request,
    encode_resolution_request, flags, opcode,
};
use idnode_registry::{Registry, hs_admin_data};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Store};
use std::sync::Arc;

const NOW: u32 = 1_800_000_000;
const NA: &str = "0.NA/88.100.1";
const SECRET_ID: &str = "88.100.1/SECRET-1";
const MARKER: &[u8] = b"PRIVATE-MARKER-7f3a";
const PUBLIC_URL: &[u8] = b"https://public.example/secret-1";
/// REC CA, PO clear: asks for every value.
const ALL_VALUES: u32 = flags::REC | flags::CA;
const PUBLIC_ONLY: u32 = flags::REC | flags::CA | flags::PO;

fn admin_value(index: u32, perms: u16, admin: &str, admin_index: u32) -> Value {
    Value::new(index, "HS_ADMIN", hs_admin_data(perms, admin, admin_index))
}

fn with_perms(mut v: Value, perms: u8) -> Value {
    v.permissions = Permissions(perms);
    v
}

const ADMIN_ONLY: u8 = Permissions::ADMIN_READ | Permissions::ADMIN_WRITE;

struct Node {
    service: Arc<HandleService>,
    cache: Arc<ResponseCache>,
    registry: Arc<Registry>,
}

/// A node homing 88.100.1. Keys on `0.NA/88.100.1`: 300 (`reader`), 301
/// (`writer`), 302 (`prefix-admin`). 88.100.1/SECRET-1 holds a public URL
/// (1), a private costPrice (7), a private URL (8), a value without any
/// read bit (9), and HS_ADMIN values: 100 gives 300 read value (and
/// nothing else), 101 gives 301 every permission but read value. The
/// prefix record's own HS_ADMIN names 302 with every permission.
fn node() -> Node {
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> =
        Arc::new(ObservedStore::new(Arc::new(MemoryStore::new()), observers));
    let registry = Arc::new(Registry::with_clock(store.clone(), || NOW));
    registry.create_prefix("88.100.1").unwrap();
    registry
        .add_values(
            NA,
            vec![
                admin_value(110, 0x0fff, NA, 302),
                with_perms(Value::new(300, "HS_SECKEY", b"reader".to_vec()), ADMIN_ONLY),
                with_perms(Value::new(301, "HS_SECKEY", b"writer".to_vec()), ADMIN_ONLY),
                with_perms(
                    Value::new(302, "HS_SECKEY", b"prefix-admin".to_vec()),
                    ADMIN_ONLY,
                ),
            ],
        )
        .unwrap();
    let private = [MARKER, b"-cost"].concat();
    let private_url = [b"https://private.example/".as_slice(), MARKER].concat();
    registry
        .create_identifier(
            SECRET_ID,
            vec![
                Value::new(1, "URL", PUBLIC_URL.to_vec()),
                with_perms(Value::new(7, "costPrice", private), ADMIN_ONLY),
                with_perms(Value::new(8, "URL", private_url), ADMIN_ONLY),
                with_perms(
                    Value::new(9, "note", [MARKER, b"-unreadable"].concat()),
                    Permissions::ADMIN_WRITE,
                ),
                admin_value(100, AdminPerms::READ_VALUE.0, NA, 300),
                admin_value(101, 0x0fff & !AdminPerms::READ_VALUE.0, NA, 301),
            ],
            false,
        )
        .unwrap();
    registry
        .create_identifier(
            "88.100.1/PLAIN",
            vec![Value::new(1, "URL", b"https://plain.example/".to_vec())],
            false,
        )
        .unwrap();
    let mut service = HandleService::with_cache(store, cache.clone());
    service.set_registry(registry.clone());
    Node {
        service: Arc::new(service),
        cache,
        registry,
    }
}

fn resolution(handle: &str, request_id: u32, op_flags: u32, indexes: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_resolution_request(
        &mut out,
        &RequestParams {
            request_id,
            op_flags,
            site_serial: -1,
            expiration: NOW + 60,
            handle: handle.as_bytes(),
            indexes,
            ..RequestParams::default()
        },
    );
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The indexes of a SUCCESS answer, or its error code.
fn indexes(answer: &[u8]) -> Result<Vec<u32>, u32> {
    let r = decode_response(answer).unwrap();
    match r.body {
        ResponseBody::Resolution { values, .. } => Ok(values.iter().map(|v| v.index).collect()),
        _ => Err(r.header.response_code),
    }
}

struct Key {
    index: u32,
    secret: &'static [u8],
}

const READER: Key = Key {
    index: 300,
    secret: b"reader",
};
const WRITER: Key = Key {
    index: 301,
    secret: b"writer",
};
const PREFIX_ADMIN: Key = Key {
    index: 302,
    secret: b"prefix-admin",
};

impl Node {
    /// A message over TCP or QUIC: `respond_stream`, then `respond_admin`
    /// when told. Every message sent back.
    fn stream(&self, msg: &[u8], now: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self
            .service
            .respond_stream(msg, now, &mut out, &mut Scratch::default())
        {
            Outcome::Reply { .. } => vec![out],
            Outcome::Admin { .. } => {
                assert!(out.is_empty());
                assert!(self.service.defers_to_admin(msg));
                self.service.respond_admin(msg, now)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A message over UDP, one at a time (reassembled messages).
    fn udp(&self, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let outcome = self
            .service
            .respond(msg, NOW, &mut out, &mut Scratch::default());
        assert!(matches!(outcome, Outcome::Reply { .. }), "{outcome:?}");
        out
    }

    /// A message over UDP in a batch.
    fn udp_batch(&self, msg: &[u8]) -> Vec<u8> {
        let mut outs = vec![Vec::new(), Vec::new()];
        let mut outcomes = [Outcome::Drop; 2];
        self.service.respond_batch(
            &[msg, msg],
            NOW,
            &mut outs,
            &mut outcomes,
            &mut Batch::default(),
        );
        assert_eq!(outs[0], outs[1]);
        assert!(matches!(outcomes[0], Outcome::Reply { .. }));
        outs.swap_remove(0)
    }

    /// Resolution with PO clear over the stream path: the 402, answered
    /// with `key` (a key of `0.NA/88.100.1`), and the result message.
    fn authenticated(&self, handle: &str, indexes: &[u32], key: &Key, extra: u32) -> Vec<u8> {
        let msg = resolution(handle, 41, ALL_VALUES | extra, indexes);
        let first = self.stream(&msg, NOW);
        assert_eq!(first.len(), 1);
        let challenge = decode_admin_response(&first[0]).unwrap();
        assert_eq!(
            challenge.header.response_code,
            code::AUTHENTICATION_NEEDED,
            "{challenge:?}"
        );
        assert_eq!(challenge.header.opcode, opcode::RESOLUTION);
        assert_eq!(challenge.envelope.request_id, 41);
        assert_ne!(challenge.envelope.session_id, 0);
        assert!(!contains(&first[0], MARKER));
        let AdminResponseBody::Challenge { nonce } = &challenge.body else {
            panic!("not a challenge: {challenge:?}");
        };
        let digest = challenge.digest.unwrap();
        let answer = SecretKeyAnswer::HmacSha256
            .compute(
                key.secret,
                nonce,
                digest.as_bytes(),
                &VerifyPolicy::default(),
            )
            .unwrap();
        let mut body = Vec::new();
        ChallengeAnswer {
            auth_type: AuthType::SecretKey,
            key_handle: NA,
            key_index: key.index,
            answer: &answer,
        }
        .encode_body(&mut body);
        let mut reply = Vec::new();
        encode_request(
            &mut reply,
            &RequestParams {
                request_id: 42,
                session_id: challenge.envelope.session_id,
                op_flags: ALL_VALUES,
                site_serial: -1,
                expiration: NOW + 60,
                ..RequestParams::default()
            },
            &RequestOptions::default(),
            opcode::CHALLENGE_RESPONSE,
            &body,
        );
        let mut results = self.stream(&reply, NOW + 1);
        assert_eq!(results.len(), 1);
        let result = results.swap_remove(0);
        let r = decode_response(&result).unwrap();
        assert_eq!(r.envelope.request_id, 42);
        assert_eq!(r.envelope.session_id, 0);
        assert_eq!(r.header.opcode, opcode::RESOLUTION);
        result
    }

    /// The cached public projection of `handle`, if cached.
    fn cached(&self, handle: &str) -> Option<Vec<u8>> {
        let mut key = Vec::new();
        normalize_into(handle.as_bytes(), &mut key);
        self.cache
            .with(&key, |e| match e {
                Entry::Found { values, .. } => values.to_vec(),
                Entry::Missing => Vec::new(),
            })
            .ok()
    }
}

#[test]
fn an_admin_with_read_value_gets_the_private_values() {
    let n = node();
    // Cached first, as a public projection.
    assert_eq!(
        indexes(&n.udp(&resolution(SECRET_ID, 1, PUBLIC_ONLY, &[]))),
        Ok(vec![1, 100, 101])
    );
    let result = n.authenticated(SECRET_ID, &[], &READER, 0);
    // Every value with public or admin read; index 9 has neither.
    assert_eq!(indexes(&result), Ok(vec![1, 7, 8, 100, 101]));
    assert!(contains(&result, MARKER));
    assert!(!contains(&result, b"-unreadable"));
    let r = decode_response(&result).unwrap();
    assert_eq!(r.header.op_flags & flags::PO, 0);
    // Filters apply: by index, by type.
    let result = n.authenticated(SECRET_ID, &[7], &READER, 0);
    assert_eq!(indexes(&result), Ok(vec![7]));
}

#[test]
fn the_prefix_admin_reads_only_when_the_identifier_names_it() {
    // Spec section 5: resolution is governed by the identifier's own
    // HS_ADMIN values; 302 is an admin of 0.NA/88.100.1 only.
    let n = node();
    let result = n.authenticated(SECRET_ID, &[], &PREFIX_ADMIN, 0);
    assert_eq!(indexes(&result), Err(code::INVALID_ADMIN));
    assert!(!contains(&result, MARKER));
    // Named on the identifier with read value: it reads.
    n.registry
        .add_values(
            SECRET_ID,
            vec![admin_value(102, AdminPerms::READ_VALUE.0, NA, 302)],
        )
        .unwrap();
    let result = n.authenticated(SECRET_ID, &[8], &PREFIX_ADMIN, 0);
    assert_eq!(indexes(&result), Ok(vec![8]));
}

#[test]
fn without_read_value_or_the_right_key_nothing_private_is_sent() {
    let n = node();
    // Every permission but read value: 400 INVALID_ADMIN.
    let result = n.authenticated(SECRET_ID, &[], &WRITER, 0);
    assert_eq!(indexes(&result), Err(code::INVALID_ADMIN));
    assert!(!contains(&result, MARKER));
    // The reader's identity with a wrong secret: 403.
    let wrong = Key {
        index: 300,
        secret: b"guess",
    };
    let result = n.authenticated(SECRET_ID, &[], &wrong, 0);
    assert_eq!(indexes(&result), Err(code::AUTHENTICATION_FAILED));
    assert!(!contains(&result, MARKER));
    // Only the value without any read bit asked for: 401.
    let result = n.authenticated(SECRET_ID, &[9], &READER, 0);
    assert_eq!(indexes(&result), Err(code::INSUFFICIENT_PERMISSIONS));
    assert!(!contains(&result, MARKER));
}

#[test]
fn without_authentication_public_values_only() {
    let n = node();
    for op_flags in [PUBLIC_ONLY, ALL_VALUES, 0, flags::AT | flags::CT] {
        for idx in [&[][..], &[7], &[1, 7, 8, 9]] {
            let msg = resolution(SECRET_ID, 5, op_flags, idx);
            // UDP: never challenged, whatever the flags.
            for answer in [n.udp(&msg), n.udp_batch(&msg)] {
                assert!(!contains(&answer, MARKER), "UDP, flags {op_flags:#x}");
                let got = indexes(&answer);
                assert!(
                    got == Ok(vec![1])
                        || got == Ok(vec![1, 100, 101])
                        || got == Err(code::VALUES_NOT_FOUND),
                    "{got:?}"
                );
            }
            // TCP/QUIC with PO: answered at once, public values only.
            if op_flags & flags::PO != 0 {
                let answers = n.stream(&msg, NOW);
                assert_eq!(answers.len(), 1);
                assert!(!contains(&answers[0], MARKER));
                assert_ne!(
                    decode_response(&answers[0]).unwrap().header.response_code,
                    code::AUTHENTICATION_NEEDED
                );
            }
        }
    }
}

#[test]
fn po_clear_over_a_stream_is_challenged_only_when_a_private_value_is_asked_for() {
    let n = node();
    let mut out = Vec::new();
    // Only the public index: answered at once.
    let msg = resolution(SECRET_ID, 5, ALL_VALUES, &[1]);
    let outcome = n
        .service
        .respond_stream(&msg, NOW, &mut out, &mut Scratch::default());
    assert!(matches!(outcome, Outcome::Reply { .. }));
    assert_eq!(indexes(&out), Ok(vec![1]));
    assert!(!n.service.defers_to_admin(&msg));
    // A record without private values: answered at once.
    let msg = resolution("88.100.1/PLAIN", 5, ALL_VALUES, &[]);
    let outcome = n
        .service
        .respond_stream(&msg, NOW, &mut out, &mut Scratch::default());
    assert!(matches!(outcome, Outcome::Reply { .. }));
    assert_eq!(indexes(&out), Ok(vec![1]));
    // No such record: 100, no challenge.
    let msg = resolution("88.100.1/NONE", 5, ALL_VALUES, &[]);
    let outcome = n
        .service
        .respond_stream(&msg, NOW, &mut out, &mut Scratch::default());
    assert!(matches!(outcome, Outcome::Reply { .. }));
    assert_eq!(indexes(&out), Err(code::HANDLE_NOT_FOUND));
    // A node without administration: public values only, no challenge.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = Registry::with_clock(store.clone(), || NOW);
    registry.create_prefix("88.100.1").unwrap();
    registry
        .create_identifier(
            SECRET_ID,
            vec![
                Value::new(1, "URL", PUBLIC_URL.to_vec()),
                with_perms(Value::new(7, "costPrice", MARKER.to_vec()), ADMIN_ONLY),
            ],
            false,
        )
        .unwrap();
    let plain = HandleService::new(store);
    let msg = resolution(SECRET_ID, 5, ALL_VALUES, &[]);
    let outcome = plain.respond_stream(&msg, NOW, &mut out, &mut Scratch::default());
    assert!(matches!(outcome, Outcome::Reply { .. }));
    assert_eq!(indexes(&out), Ok(vec![1]));
    assert!(!contains(&out, MARKER));
}

#[test]
fn the_response_cache_never_holds_a_private_value() {
    let n = node();
    let result = n.authenticated(SECRET_ID, &[], &READER, 0);
    assert!(contains(&result, MARKER));
    // Asked again without authentication, over UDP and with PO over TCP:
    // public values only, and the cache holds the public projection.
    for msg in [
        resolution(SECRET_ID, 6, ALL_VALUES, &[]),
        resolution(SECRET_ID, 6, PUBLIC_ONLY, &[]),
    ] {
        let answer = n.udp(&msg);
        assert_eq!(indexes(&answer), Ok(vec![1, 100, 101]));
        assert!(!contains(&answer, MARKER));
    }
    let answers = n.stream(&resolution(SECRET_ID, 7, PUBLIC_ONLY, &[]), NOW);
    assert_eq!(indexes(&answers[0]), Ok(vec![1, 100, 101]));
    let cached = n
        .cached(SECRET_ID)
        .expect("cached after a public resolution");
    assert!(contains(&cached, PUBLIC_URL));
    assert!(!contains(&cached, MARKER));
    // Authenticated again: still right (not served from the cache).
    let result = n.authenticated(SECRET_ID, &[7, 8], &READER, 0);
    assert_eq!(indexes(&result), Ok(vec![7, 8]));
    let cached = n.cached(SECRET_ID).unwrap();
    assert!(!contains(&cached, MARKER));
}

#[test]
fn a_challenge_is_answered_once() {
    let n = node();
    let msg = resolution(SECRET_ID, 41, ALL_VALUES, &[]);
    let first = n.stream(&msg, NOW);
    let challenge = decode_admin_response(&first[0]).unwrap();
    let AdminResponseBody::Challenge { nonce } = &challenge.body else {
        panic!("{challenge:?}");
    };
    let answer = SecretKeyAnswer::HmacSha256
        .compute(
            READER.secret,
            nonce,
            challenge.digest.unwrap().as_bytes(),
            &VerifyPolicy::default(),
        )
        .unwrap();
    let mut body = Vec::new();
    ChallengeAnswer {
        auth_type: AuthType::SecretKey,
        key_handle: NA,
        key_index: 300,
        answer: &answer,
    }
    .encode_body(&mut body);
    let mut reply = Vec::new();
    encode_request(
        &mut reply,
        &RequestParams {
            request_id: 42,
            session_id: challenge.envelope.session_id,
            op_flags: ALL_VALUES,
            expiration: NOW + 60,
            ..RequestParams::default()
        },
        &RequestOptions::default(),
        opcode::CHALLENGE_RESPONSE,
        &body,
    );
    let ok = n.stream(&reply, NOW + 1);
    assert_eq!(indexes(&ok[0]), Ok(vec![1, 7, 8, 100, 101]));
    let again = n.stream(&reply, NOW + 2);
    assert_eq!(indexes(&again[0]), Err(code::SESSION_TIMEOUT));
    assert!(!contains(&again[0], MARKER));
}

#[test]
fn a_certified_authenticated_resolution_is_signed() {
    const PEM: &str = include_str!("../../handle/tests/vectors/auth/test-only-admin-rsa.pem");
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let n = node();
    // The same records, with a signing key.
    let mut service = HandleService::with_cache(n.registry.store().clone(), cache.clone());
    service.set_registry(n.registry.clone());
    let key = Arc::new(ServerKey::from_pkcs8_pem(PEM).unwrap());
    service.set_signer(key.clone());
    let n = Node {
        service: Arc::new(service),
        cache,
        registry: n.registry,
    };
    let result = n.authenticated(SECRET_ID, &[7], &READER, flags::CT);
    assert_eq!(indexes(&result), Ok(vec![7]));
    let r = decode_response(&result).unwrap();
    assert_ne!(r.header.op_flags & flags::CT, 0);
    idnode_handle::certify::verify_response(&result, &key.public_key()).unwrap();
}
