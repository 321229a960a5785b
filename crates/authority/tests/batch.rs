//! Answering without a store read per request: a batch of requests at once
//! (`respond_batch`: the same bytes as one by one, the records read with
//! one multi-get), and a response cache filled before the first request
//! (`prewarm`).
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use bytes::Bytes;
use idnode_authority::{Batch, HandleService, Outcome, Prewarmed, ResponseCache, Scratch};
use idnode_core::{PrefixInfo, Record, Value};
use idnode_handle::{RequestParams, code, decode_response, encode_resolution_request, flags};
use idnode_store::{
    Change, CommitObserver, MemoryStore, ObservedStore, Space, Store, StoreError, WriteTxn,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const NOW: u32 = 1_800_000_000;

/// A store that counts the record reads and can be told to fail them.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    gets: AtomicUsize,
    multi_gets: AtomicUsize,
    fail: AtomicBool,
}

impl Counting {
    fn read(&self, space: Space) -> idnode_store::Result<()> {
        if space == Space::Records && self.fail.load(Ordering::Relaxed) {
            return Err(StoreError::Corrupt("the disk is on fire".into()));
        }
        Ok(())
    }
}

impl Store for Counting {
    fn get(&self, space: Space, key: &[u8]) -> idnode_store::Result<Option<Bytes>> {
        if space == Space::Records {
            self.gets.fetch_add(1, Ordering::Relaxed);
        }
        self.read(space)?;
        self.inner.get(space, key)
    }

    fn multi_get(&self, space: Space, keys: &[&[u8]]) -> idnode_store::Result<Vec<Option<Bytes>>> {
        if space == Space::Records {
            self.multi_gets.fetch_add(1, Ordering::Relaxed);
        }
        self.read(space)?;
        self.inner.multi_get(space, keys)
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> idnode_store::Result<Vec<(Vec<u8>, Bytes)>> {
        self.inner.scan(space, prefix, after, limit)
    }

    fn snapshot(&self) -> idnode_store::Result<Box<dyn idnode_store::Snapshot + '_>> {
        self.inner.snapshot()
    }

    fn begin(&self) -> idnode_store::Result<Box<dyn WriteTxn + '_>> {
        self.inner.begin()
    }

    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }

    fn changes_since(&self, after: u64, limit: usize) -> idnode_store::Result<Vec<Change>> {
        self.inner.changes_since(after, limit)
    }
    fn trim_changes(&self, upto: u64) -> idnode_store::Result<u64> {
        self.inner.trim_changes(upto)
    }
}

/// A filled counting store, and a service over it with a response cache
/// (`cached`) or without.
fn setup(cached: bool) -> (Arc<Counting>, HandleService) {
    let counting = Arc::new(Counting::default());
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> = Arc::new(ObservedStore::new(counting.clone(), observers));
    let mut txn = store.begin().unwrap();
    let info = PrefixInfo::homed_here("88.100.1", 0);
    txn.put(Space::Prefixes, b"88.100.1", info.encode().into());
    for n in 0..4 {
        let record = Record {
            identifier: format!("88.100.1/P-{n}"),
            values: vec![
                Value::new(1, "URL", format!("https://example.com/{n}")),
                Value::new(2, "productName", "Pump"),
            ],
            version: 1,
        };
        let key = format!("88.100.1/P-{n}");
        txn.put(Space::Records, key.as_bytes(), record.encode().into());
    }
    txn.commit().unwrap();
    counting.gets.store(0, Ordering::Relaxed);
    let service = if cached {
        HandleService::with_cache(store, cache)
    } else {
        HandleService::new(store)
    };
    (counting, service)
}

fn request(id: u32, handle: &str, indexes: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_resolution_request(
        &mut out,
        &RequestParams {
            request_id: id,
            op_flags: flags::PO,
            handle: handle.as_bytes(),
            indexes,
            expiration: NOW + 60,
            ..Default::default()
        },
    );
    out
}

/// Every kind of question a batch can hold: records (some twice, in other
/// case, filtered), an identifier that does not exist under a prefix homed
/// here, one under an unknown prefix, an invalid handle, a body that does
/// not decode, and bytes that are no message at all.
fn mixed() -> Vec<Vec<u8>> {
    let mut truncated = request(7, "88.100.1/P-1", &[]);
    truncated[40..44].copy_from_slice(&0xffffu32.to_be_bytes());
    vec![
        request(1, "88.100.1/P-0", &[]),
        request(2, "88.100.1/p-1", &[2]),
        request(3, "88.100.1/NOPE", &[]),
        request(4, "99.9/P-0", &[]),
        request(5, "no-slash", &[]),
        request(6, "88.100.1/P-0", &[1]),
        truncated,
        b"not a message".to_vec(),
        request(9, "88.100.1/P-3", &[]),
        request(10, "88.100.1/p-0", &[]),
    ]
}

fn one_by_one(service: &HandleService, messages: &[Vec<u8>]) -> Vec<(Outcome, Vec<u8>)> {
    let mut scratch = Scratch::default();
    messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            let outcome = service.respond(m, NOW, &mut out, &mut scratch);
            (outcome, out)
        })
        .collect()
}

fn batched(
    service: &HandleService,
    messages: &[Vec<u8>],
    batch: &mut Batch,
) -> Vec<(Outcome, Vec<u8>)> {
    let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    // Answer buffers holding an older answer, as a worker's do.
    let mut outs = vec![b"stale".to_vec(); messages.len()];
    let mut outcomes = vec![Outcome::Drop; messages.len()];
    service.respond_batch(&slices, NOW, &mut outs, &mut outcomes, batch);
    outcomes.into_iter().zip(outs).collect()
}

#[test]
fn a_batch_is_answered_as_its_requests_one_by_one() {
    for cached in [false, true] {
        let (_, alone) = setup(cached);
        let (_, together) = setup(cached);
        let mut batch = Batch::default();
        // Twice: with a cache, the second time answers from it.
        for round in 0..2 {
            let expected = one_by_one(&alone, &mixed());
            let got = batched(&together, &mixed(), &mut batch);
            assert_eq!(got.len(), expected.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g, e, "message {i}, round {round}, cache {cached}");
            }
            // And the answers are the right ones, not just equal.
            let codes: Vec<Option<u32>> = got
                .iter()
                .map(|(_, out)| decode_response(out).ok().map(|r| r.header.response_code))
                .collect();
            let found = Some(code::SUCCESS);
            assert_eq!(
                codes,
                [
                    found,
                    found,
                    Some(code::HANDLE_NOT_FOUND),
                    Some(code::SERVER_NOT_RESP),
                    Some(code::INVALID_HANDLE),
                    found,
                    Some(code::PROTOCOL_ERROR),
                    None,
                    found,
                    found,
                ]
            );
        }
    }
}

#[test]
fn the_records_of_a_batch_are_read_with_one_multi_get() {
    let (counting, service) = setup(true);
    let mut batch = Batch::default();
    let messages = mixed();
    batched(&service, &messages, &mut batch);
    assert_eq!(counting.multi_gets.load(Ordering::Relaxed), 1);
    assert_eq!(counting.gets.load(Ordering::Relaxed), 0);
    // Every answer, a missing record's included, is in the cache now.
    batched(&service, &messages, &mut batch);
    assert_eq!(counting.multi_gets.load(Ordering::Relaxed), 1);
    assert_eq!(counting.gets.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failed_read_answers_each_waiting_request_with_an_error() {
    let (counting, service) = setup(true);
    let mut batch = Batch::default();
    counting.fail.store(true, Ordering::Relaxed);
    let messages = vec![
        request(1, "88.100.1/P-0", &[]),
        request(2, "88.100.1/P-1", &[]),
        request(3, "no-slash", &[]),
    ];
    let got = batched(&service, &messages, &mut batch);
    let answers: Vec<(u32, u32)> = got
        .iter()
        .map(|(_, out)| {
            let r = decode_response(out).unwrap();
            (r.envelope.request_id, r.header.response_code)
        })
        .collect();
    let expected = [
        (1, code::ERROR),
        (2, code::ERROR),
        (3, code::INVALID_HANDLE),
    ];
    assert_eq!(answers, expected);
    // One at a time (`respond`, the store's `get_with`): the same.
    let single: Vec<(u32, u32)> = one_by_one(&service, &messages)
        .iter()
        .map(|(_, out)| {
            let r = decode_response(out).unwrap();
            (r.envelope.request_id, r.header.response_code)
        })
        .collect();
    assert_eq!(single, expected);
    // Nothing was cached from the failure: once the store reads again,
    // the records are there.
    counting.fail.store(false, Ordering::Relaxed);
    let got = batched(&service, &messages, &mut batch);
    let first = decode_response(&got[0].1).unwrap();
    assert_eq!(first.header.response_code, code::SUCCESS);
}

#[test]
fn a_prewarmed_cache_answers_without_reading_the_store() {
    let (counting, service) = setup(true);
    let (_, uncached) = setup(false);
    let done = service.prewarm(|| true).unwrap();
    assert_eq!(
        done,
        Prewarmed {
            records: 4,
            cached: 4
        }
    );
    let messages: Vec<Vec<u8>> = (0..4)
        .map(|n| request(n, &format!("88.100.1/p-{n}"), &[]))
        .collect();
    let reads = counting.gets.load(Ordering::Relaxed);
    let answers = one_by_one(&service, &messages);
    assert_eq!(
        counting.gets.load(Ordering::Relaxed),
        reads,
        "read the store"
    );
    assert_eq!(answers, one_by_one(&uncached, &messages));
    // A second pass finds everything cached and adds nothing.
    let again = service.prewarm(|| true).unwrap();
    assert_eq!(again.cached, 0);
    // Told to stop: reads nothing.
    let (_, fresh) = setup(true);
    assert_eq!(fresh.prewarm(|| false).unwrap(), Prewarmed::default());
}
