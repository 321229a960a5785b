//! The answers of the three nodes of a hierarchy, byte for byte against
//! the vectors made with CNRI's reference implementation
//! (`crates/handle/tests/vectors/hierarchy/`): the top-level node's 303 for
//! a prefix lookup, the secondary's answer with the enterprise's site, the
//! enterprise's answer (plain, certified, certified with a request digest)
//! and its GET_SITE_INFO, each through `HandleService` from a store holding
//! what the vectors' README says each node holds.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use bytes::Bytes;
use idnode_authority::{HandleService, Outcome, ResponseCache, Scratch};
use idnode_core::{Permissions, PrefixInfo, Record, Ttl, Value};
use idnode_handle::ServerKey;
use idnode_handle::certify::verify_response;
use idnode_handle::keys::PublicKey;
use idnode_registry::hs_admin_data;
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Space, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Every header's expiration in the vectors, 12 hours after "now".
const EXPIRATION: u32 = 0x6553_f100;
const NOW: u32 = EXPIRATION - 12 * 60 * 60;
const TIMESTAMP: u32 = 0x6553_e2f0;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../handle/tests/vectors/hierarchy")
}

/// A vector's bytes: hex digits, whitespace and `#` comment lines ignored.
fn vector(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn key(name: &str) -> Arc<ServerKey> {
    let pem = std::fs::read_to_string(dir().join(name)).unwrap();
    Arc::new(ServerKey::from_pkcs8_pem(&pem).unwrap())
}

fn value(index: u32, kind: &str, data: impl Into<Bytes>) -> Value {
    let mut v = Value::new(index, kind, data);
    v.timestamp = TIMESTAMP;
    v.ttl = Ttl::Relative(86_400);
    v.permissions = Permissions(0x0e);
    v
}

fn put_record(store: &dyn Store, identifier: &str, values: Vec<Value>) {
    let record = Record {
        identifier: identifier.into(),
        values,
        version: store.last_sequence() + 1,
    };
    let mut txn = store.begin().unwrap();
    txn.put(
        Space::Records,
        identifier.as_bytes(),
        record.encode().into(),
    );
    txn.commit().unwrap();
}

fn put_prefix(store: &dyn Store, prefix: &str, homed: bool) {
    let info = PrefixInfo {
        prefix: prefix.into(),
        homed,
        created: TIMESTAMP,
        template: None,
    };
    let mut txn = store.begin().unwrap();
    txn.put(Space::Prefixes, prefix.as_bytes(), info.encode().into());
    txn.commit().unwrap();
}

/// A node over `fill`'s records, with `site` as its own site and `key` as
/// its signing key: without and with a response cache.
fn node(site: &str, key_file: &str, fill: impl Fn(&dyn Store)) -> Vec<HandleService> {
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> =
        Arc::new(ObservedStore::new(Arc::new(MemoryStore::new()), observers));
    fill(&*store);
    let signer = key(key_file);
    [
        HandleService::new(store.clone()),
        HandleService::with_cache(store, cache),
    ]
    .into_iter()
    .map(|mut s| {
        s.set_signer(signer.clone());
        assert!(s.set_site_info(vector(site)));
        s
    })
    .collect()
}

/// T: homes 88, delegated 88.100 to S.
fn top() -> Vec<HandleService> {
    node("hs-site-top-rsa.hex", "test-only-top-rsa.pem", |store| {
        put_prefix(store, "88", true);
        put_prefix(store, "88.100", false);
        let s = vector("hs-site-prefix-secondary-dsa.hex");
        put_record(
            store,
            "0.NA/88.100",
            vec![
                value(1, "HS_SITE", s.clone()),
                value(2, "HS_SITE.PREFIX", s),
                value(100, "HS_ADMIN", hs_admin_data(0x0fff, "0.NA/88.100", 300)),
            ],
        );
    })
}

/// E: homes 88.100.1, holds 88.100.1/PUMP-1.
fn enterprise() -> Vec<HandleService> {
    node(
        "hs-site-enterprise-rsa.hex",
        "test-only-enterprise-rsa.pem",
        |store| {
            put_prefix(store, "88.100.1", true);
            put_record(
                store,
                "88.100.1/PUMP-1",
                vec![
                    value(1, "URL", "https://example.com/pump/1"),
                    value(100, "HS_ADMIN", hs_admin_data(0x0fff, "0.NA/88.100.1", 300)),
                ],
            );
        },
    )
}

fn answer(service: &HandleService, request: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Twice: the second may come from the response cache.
    for _ in 0..2 {
        let outcome = service.respond(request, NOW, &mut out, &mut Scratch::default());
        assert!(matches!(outcome, Outcome::Reply { .. }));
    }
    out
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {at}");
    }
}

#[test]
fn the_top_level_node_refers_a_prefix_lookup_as_cnri_does() {
    for t in top() {
        assert_same(
            &answer(&t, &vector("seq-1-top-request.hex")),
            &vector("seq-1-top-response-303.hex"),
            "303",
        );
        assert_same(
            &answer(&t, &vector("cert-1-top-request.hex")),
            &vector("cert-1-top-response-303-rsa.hex"),
            "signed 303",
        );
    }
}

#[test]
fn the_secondary_answers_the_prefix_record_with_the_enterprise_site() {
    let secondary = node(
        "hs-site-prefix-secondary-dsa.hex",
        "test-only-secondary-dsa.pem",
        |store| {
            put_prefix(store, "88.100", true);
            put_prefix(store, "88.100.1", false);
            put_record(
                store,
                "0.NA/88.100.1",
                vec![
                    value(1, "HS_SITE", vector("hs-site-enterprise-rsa.hex")),
                    value(100, "HS_ADMIN", hs_admin_data(0x0fff, "0.NA/88.100.1", 300)),
                ],
            );
        },
    );
    let site_key = PublicKey::decode(
        &idnode_handle::SiteInfo::decode(&vector("hs-site-prefix-secondary-dsa.hex"))
            .unwrap()
            .servers[0]
            .public_key,
    )
    .unwrap();
    for s in &secondary {
        // The same bytes the top-level node got, its serial and request id.
        assert_same(
            &answer(s, &vector("seq-2-secondary-request.hex")),
            &vector("seq-2-secondary-response.hex"),
            "prefix record",
        );
        // DSA signatures are randomized: same message, valid signature.
        let signed = answer(s, &vector("cert-2-secondary-request.hex"));
        verify_response(&signed, &site_key).unwrap();
        let want = vector("cert-2-secondary-response-dsa.hex");
        let unsigned_len = signed.len().min(want.len()) - 120;
        assert_eq!(&signed[24..unsigned_len], &want[24..unsigned_len]);
    }
}

#[test]
fn the_enterprise_answers_plain_certified_and_with_a_digest() {
    for e in enterprise() {
        for (request, response) in [
            (
                "seq-3-enterprise-request.hex",
                "seq-3-enterprise-response.hex",
            ),
            (
                "cert-3-enterprise-request.hex",
                "cert-3-enterprise-response-rsa.hex",
            ),
            (
                "certrd-3-enterprise-request.hex",
                "certrd-3-enterprise-response-rsa.hex",
            ),
            ("get-site-info-request.hex", "get-site-info-response.hex"),
        ] {
            assert_same(&answer(&e, &vector(request)), &vector(response), response);
        }
    }
}

#[test]
fn a_certified_answer_fails_against_another_key_or_when_tampered() {
    let top_key = PublicKey::decode(
        &idnode_handle::SiteInfo::decode(&vector("hs-site-top-rsa.hex"))
            .unwrap()
            .servers[0]
            .public_key,
    )
    .unwrap();
    let e = &enterprise()[0];
    let signed = answer(e, &vector("cert-3-enterprise-request.hex"));
    assert!(verify_response(&signed, &top_key).is_err(), "a stale key");
    let own = key("test-only-enterprise-rsa.pem").public_key();
    verify_response(&signed, &own).unwrap();
    let mut tampered = signed.clone();
    tampered[60] ^= 1;
    assert!(verify_response(&tampered, &own).is_err());
    // Without CT, no signature.
    let plain = answer(e, &vector("seq-3-enterprise-request.hex"));
    assert!(verify_response(&plain, &own).is_err());
}
