//! The resolver against the in-memory store, through the codec both ways.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::{HandleService, Outcome, ResponseCache, Scratch};
use idnode_core::{Permissions, PrefixInfo, Record, Value};
use idnode_handle::{
    RequestParams, ResponseBody, code, decode_response, encode_resolution_request, flags,
};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Space, Store};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const NOW: u32 = 1_800_000_000;

/// The same service twice: reading the store each time, and through a cache.
fn services() -> [HandleService; 2] {
    setup().1
}

/// The store and the two services over it.
fn setup() -> (Arc<dyn Store>, [HandleService; 2]) {
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> =
        Arc::new(ObservedStore::new(Arc::new(MemoryStore::new()), observers));
    fill(&*store);
    let services = [
        HandleService::new(store.clone()),
        HandleService::with_cache(store.clone(), cache),
    ];
    (store, services)
}

fn fill(store: &dyn Store) {
    let mut secret = Value::new(7, "costPrice", "12.00 CNY");
    secret.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    let record = Record {
        identifier: "88.100.1/Abc-123".into(),
        values: vec![
            Value::new(1, "URL", "https://example.com/abc"),
            Value::new(2, "productName", "Pump"),
            Value::new(3, "HS_SITE.PREFIX", "site"),
            secret,
        ],
        version: 1,
    };
    let mut txn = store.begin().unwrap();
    // The prefix, homed here.
    let info = PrefixInfo::homed_here("88.100.1", 0);
    txn.put(Space::Prefixes, b"88.100.1", info.encode().into());
    txn.put(Space::Records, b"88.100.1/ABC-123", record.encode().into());
    txn.commit().unwrap();
}

fn ask(
    service: &HandleService,
    handle: &str,
    indexes: &[u32],
    types: &[&str],
) -> idnode_handle::Response {
    let types: Vec<&[u8]> = types.iter().map(|t| t.as_bytes()).collect();
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            request_id: 42,
            op_flags: flags::PO,
            handle: handle.as_bytes(),
            indexes,
            types: &types,
            expiration: NOW + 60,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    let outcome = service.respond(&request, NOW, &mut out, &mut Scratch::default());
    assert_eq!(outcome, Outcome::Reply { keep_open: false });
    let response = decode_response(&out).unwrap();
    assert_eq!(response.envelope.request_id, 42);
    assert!(response.header.expiration > NOW);
    response
}

fn indexes(r: &idnode_handle::Response) -> Vec<u32> {
    match &r.body {
        ResponseBody::Resolution { values, .. } => values.iter().map(|v| v.index).collect(),
        other => panic!("not a resolution: {other:?}"),
    }
}

#[test]
fn resolves_case_insensitively_with_public_values_only() {
    for s in services() {
        // Twice: the second answer comes from the cache when there is one.
        for _ in 0..2 {
            resolves_with_public_values_only(&s);
        }
    }
}

fn resolves_with_public_values_only(s: &HandleService) {
    let r = ask(s, "88.100.1/abc-123", &[], &[]);
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(indexes(&r), [1, 2, 3]);
    match r.body {
        ResponseBody::Resolution { handle, values } => {
            assert_eq!(handle, "88.100.1/abc-123");
            assert_eq!(values[0].data.as_ref(), b"https://example.com/abc");
        }
        _ => unreachable!(),
    }
}

#[test]
fn filters_by_index_and_type_family() {
    for s in &services() {
        for _ in 0..2 {
            filters(s);
        }
    }
}

fn filters(s: &HandleService) {
    assert_eq!(indexes(&ask(s, "88.100.1/ABC-123", &[2], &[])), [2]);
    assert_eq!(indexes(&ask(s, "88.100.1/ABC-123", &[], &["url"])), [1]);
    assert_eq!(
        indexes(&ask(s, "88.100.1/ABC-123", &[], &["HS_SITE."])),
        [3]
    );
    // Asking for the non-public value by index still does not reveal it.
    let r = ask(s, "88.100.1/ABC-123", &[7], &[]);
    assert_eq!(r.header.response_code, code::VALUES_NOT_FOUND);
}

#[test]
fn unknown_and_invalid_handles() {
    for s in &services() {
        for _ in 0..2 {
            unknown_and_invalid(s);
        }
    }
}

fn unknown_and_invalid(s: &HandleService) {
    let r = ask(s, "88.100.1/NOPE", &[], &[]);
    assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
    assert!(matches!(r.body, ResponseBody::Error { .. }));
    let r = ask(s, "no-slash", &[], &[]);
    assert_eq!(r.header.response_code, code::INVALID_HANDLE);
    // A prefix this node knows nothing about: not responsible.
    let r = ask(s, "99.1/ABC-123", &[], &[]);
    assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
    match r.body {
        ResponseBody::Error { message } => assert!(message.contains("99.1"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_refused_or_dropped() {
    let [s, _] = services();
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    assert_eq!(s.respond(b"xx", NOW, &mut out, &mut scratch), Outcome::Drop);
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            request_id: 9,
            handle: b"88.100.1/ABC-123",
            ..Default::default()
        },
    );
    // Claim a body longer than the message: the envelope still decodes, so
    // the client gets PROTOCOL_ERROR with its request id.
    let body_len_at = 20 + 20;
    request[body_len_at..body_len_at + 4].copy_from_slice(&0xffffu32.to_be_bytes());
    assert_eq!(
        s.respond(&request, NOW, &mut out, &mut scratch),
        Outcome::Reply { keep_open: false }
    );
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::PROTOCOL_ERROR);
    assert_eq!(r.envelope.request_id, 9);
}

#[test]
fn a_write_is_seen_by_the_next_resolve_through_the_cache() {
    let (store, [_, s]) = setup();
    // Cache a miss and a hit.
    for _ in 0..2 {
        let r = ask(&s, "88.100.1/NEW", &[], &[]);
        assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
        assert_eq!(indexes(&ask(&s, "88.100.1/ABC-123", &[], &[])), [1, 2, 3]);
    }
    assert_eq!(s.cache().unwrap().stats().hits, 2);
    let mut txn = store.begin().unwrap();
    let new = Record {
        identifier: "88.100.1/NEW".into(),
        values: vec![Value::new(1, "URL", "https://example.com/new")],
        version: 0,
    };
    txn.put(Space::Records, b"88.100.1/NEW", new.encode().into());
    txn.delete(Space::Records, b"88.100.1/ABC-123");
    txn.commit().unwrap();
    assert_eq!(indexes(&ask(&s, "88.100.1/NEW", &[], &[])), [1]);
    assert_eq!(
        ask(&s, "88.100.1/ABC-123", &[], &[]).header.response_code,
        code::HANDLE_NOT_FOUND
    );
}

/// Concurrent writers and readers: once a write is acknowledged, no later
/// answer may carry an older version.
#[test]
fn no_stale_answer_after_a_write_is_acknowledged() {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    let (store, [_, s]) = setup();
    let s = Arc::new(s);
    let acknowledged = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Checks made by all readers; the writer goes on until there are enough,
    // however the threads are scheduled.
    let total = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s, acknowledged, stop) = (s.clone(), acknowledged.clone(), stop.clone());
            let total = total.clone();
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let floor = acknowledged.load(Ordering::Acquire);
                    let r = ask(&s, "88.100.1/HOT", &[], &[]);
                    if floor == 0 {
                        continue;
                    }
                    let ResponseBody::Resolution { values, .. } = r.body else {
                        panic!("missing after version {floor} was acknowledged");
                    };
                    let seen: u32 = std::str::from_utf8(&values[0].data)
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(
                        seen >= floor,
                        "saw version {seen} after {floor} was acknowledged"
                    );
                    checked += 1;
                    total.fetch_add(1, Ordering::Relaxed);
                }
                checked
            })
        })
        .collect();
    let mut version = 0u32;
    while version < 2000 || total.load(Ordering::Relaxed) < 2000 {
        version += 1;
        let record = Record {
            identifier: "88.100.1/HOT".into(),
            values: vec![Value::new(1, "version", version.to_string())],
            version: 0,
        };
        let mut txn = store.begin().unwrap();
        txn.put(Space::Records, b"88.100.1/HOT", record.encode().into());
        txn.commit().unwrap();
        acknowledged.store(version, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    let checked: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(checked >= 2000);
}
