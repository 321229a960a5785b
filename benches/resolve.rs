//! The resolution hot path in process, against RocksDB holding 1,000,000
//! identifiers: store point lookups (block cache cold and warm), a cache
//! hit (its 10,000 questions asked in the order they were cached, and in
//! another), and whole resolutions (decode, lookup, filter, encode) with
//! and without the response cache, and with every identifier cached (as on
//! a node in service) and the questions spread over all of them.
//!
//! Run: `source scripts/env.sh && cargo bench --bench resolve`
//!
//! The first run loads 1,000,000 records (5 values each, like the seeds)
//! into `$CARGO_TARGET_DIR/bench-data/rocks-1m` and keeps them for later
//! runs, compacted once into one sorted run (as `idnode import --compact`
//! leaves a node's store). "cold" opens that store with a 1 MiB block
//! cache and reads random identifiers, so most reads go to the page cache
//! and decompress a block; "warm" uses the default 256 MiB cache over a
//! working set of 100,000 identifiers read once beforehand. Figures and
//! the machine: PERFORMANCE.md.

// The node's allocator (src/main.rs), so allocation and memory layout
// are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use idnode_authority::{Batch, HandleService, Outcome, ResponseCache, Scratch};
use idnode_core::{Record, Value};
use idnode_handle::{RequestParams, encode_resolution_request, flags};
use idnode_store::{Space, Store};
use idnode_store_rocksdb::{RocksOptions, RocksStore};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const RECORDS: usize = 1_000_000;
const LOADED: &[u8] = b"bench-loaded-1m";
const COMPACTED: &[u8] = b"bench-compacted";

fn identifier(n: usize) -> String {
    format!("88.100.{}/BENCH-{n:08}", n % 100)
}

fn key(n: usize) -> Vec<u8> {
    identifier(n).to_ascii_uppercase().into_bytes()
}

fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IDNODE_BENCH_DATA") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-data").join("rocks-1m")
}

fn open(cache_bytes: usize) -> RocksStore {
    let options = RocksOptions {
        block_cache_bytes: cache_bytes,
        ..RocksOptions::default()
    };
    let store = RocksStore::open(&data_dir(), &options).expect("open bench store");
    once(
        &store,
        LOADED,
        &format!("loading {RECORDS} records into"),
        |store| {
            for start in (0..RECORDS).step_by(20_000) {
                let mut txn = store.begin().expect("begin");
                for n in start..(start + 20_000).min(RECORDS) {
                    let record = Record {
                        identifier: identifier(n),
                        values: vec![
                            Value::new(1, "URL", format!("https://example.com/p/{n}")),
                            Value::new(2, "productName", "Servo motor 200 series"),
                            Value::new(3, "manufacturer", "Huaxin Precision Machinery Co., Ltd."),
                            Value::new(4, "batch", "B260324-26"),
                            Value::new(5, "productionDate", "2026-03-24"),
                        ],
                        version: 0,
                    };
                    txn.put(Space::Records, &key(n), record.encode().into());
                }
                txn.commit().expect("commit");
            }
        },
    );
    // What an operator does after a bulk load (`idnode import --compact`,
    // `idnode compact`): the records in one sorted run.
    once(&store, COMPACTED, "compacting", |store| {
        store.compact().expect("compact")
    });
    store
}

/// Runs `step` on the bench store unless an earlier run did (the store
/// then holds `marker` in its meta space).
fn once(store: &RocksStore, marker: &[u8], what: &str, step: impl FnOnce(&RocksStore)) {
    if store.get(Space::Meta, marker).expect("read").is_some() {
        return;
    }
    eprintln!("{what} {} (once)", data_dir().display());
    step(store);
    let mut txn = store.begin().expect("begin");
    txn.put(Space::Meta, marker, bytes::Bytes::from_static(b"1"));
    txn.commit().expect("commit");
}

fn request(n: usize) -> Vec<u8> {
    let id = identifier(n);
    let mut out = Vec::new();
    encode_resolution_request(
        &mut out,
        &RequestParams {
            request_id: n as u32,
            op_flags: flags::PO,
            handle: id.as_bytes(),
            expiration: 2_000_000_000,
            ..Default::default()
        },
    );
    out
}

/// The next index of a working set: a compare, not the division of `%`,
/// which would cost a measurable part of a cache hit.
fn next(i: usize, len: usize) -> usize {
    if i + 1 >= len { 0 } else { i + 1 }
}

/// A cheap deterministic spread over the identifiers.
fn spread(i: usize, range: usize) -> usize {
    (i.wrapping_mul(2_654_435_761)) % range
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("resolve-1m");
    g.throughput(Throughput::Elements(1));

    {
        let cold = open(1 << 20);
        let keys: Vec<Vec<u8>> = (0..65_536).map(|i| key(spread(i, RECORDS))).collect();
        let mut i = 0;
        g.bench_function("store get, cold (1 MiB block cache, random keys)", |b| {
            b.iter(|| {
                i = (i + 1) & 65_535;
                black_box(cold.get(Space::Records, &keys[i]).expect("get"))
            })
        });
    }

    let store: Arc<dyn Store> = Arc::new(open(256 << 20));
    let working: Vec<usize> = (0..100_000).map(|i| spread(i, RECORDS)).collect();
    let keys: Vec<Vec<u8>> = working.iter().map(|&n| key(n)).collect();
    for k in &keys {
        black_box(store.get(Space::Records, k).expect("get"));
    }
    let mut i = 0;
    g.bench_function("store get, warm (256 MiB block cache)", |b| {
        b.iter(|| {
            i = next(i, keys.len());
            black_box(store.get(Space::Records, &keys[i]).expect("get"))
        })
    });

    g.throughput(Throughput::Elements(32));
    let mut j = 0;
    g.bench_function("store multi-get of 32, warm", |b| {
        b.iter(|| {
            j = next(j, keys.len() / 32);
            let batch: Vec<&[u8]> = keys[j * 32..j * 32 + 32]
                .iter()
                .map(Vec::as_slice)
                .collect();
            black_box(store.multi_get(Space::Records, &batch).expect("get"))
        })
    });
    g.bench_function("store 32 gets, warm", |b| {
        b.iter(|| {
            j = next(j, keys.len() / 32);
            for k in &keys[j * 32..j * 32 + 32] {
                black_box(store.get(Space::Records, k).expect("get"));
            }
        })
    });
    g.throughput(Throughput::Elements(1));

    let requests: Vec<Vec<u8>> = working.iter().take(10_000).map(|&n| request(n)).collect();
    let uncached = HandleService::new(store.clone());
    one_at_a_time(
        &mut g,
        "resolution, no response cache (decode+rocksdb+encode)",
        &uncached,
        &requests,
    );
    // The UDP workers' way: a received batch answered together, the
    // records read with one multi-get.
    in_batches(
        &mut g,
        "resolution, no response cache, batches of 32 (one multi-get)",
        &uncached,
        &requests,
    );

    let cached =
        HandleService::with_cache(store.clone(), Arc::new(ResponseCache::new(64 << 20, 64)));
    let (mut out, mut scratch) = (Vec::with_capacity(4096), Scratch::default());
    for r in &requests {
        cached.respond(r, NOW, &mut out, &mut scratch);
    }
    one_at_a_time(&mut g, "resolution, response cache hit", &cached, &requests);
    // The UDP path on the same hot entries: the batch's prefetch pass
    // gains nothing here (they are in the CPU caches), so this shows what
    // it costs.
    in_batches(
        &mut g,
        "resolution, response cache hit, batches of 32",
        &cached,
        &requests,
    );
    // The same questions in another order than the one they were cached in.
    let shuffled: Vec<Vec<u8>> = (0..requests.len())
        .map(|i| requests[spread(i, requests.len())].clone())
        .collect();
    one_at_a_time(
        &mut g,
        "resolution, response cache hit, shuffled",
        &cached,
        &shuffled,
    );
    drop(cached);

    // As on a node in service: every identifier cached (the node's default
    // budget and shards, filled by the start-up prewarm), questions spread
    // over all of them, so a hit finds its slot and entry in memory, not in
    // the CPU caches.
    let full =
        HandleService::with_cache(store.clone(), Arc::new(ResponseCache::new(512 << 20, 64)));
    let warmed = full.prewarm(|| true).expect("prewarm");
    assert_eq!(warmed.cached, RECORDS, "every record cached: {warmed:?}");
    let spread_requests: Vec<Vec<u8>> = (0..65_536).map(|i| request(spread(i, RECORDS))).collect();
    one_at_a_time(
        &mut g,
        "resolution, response cache hit, all 1M cached, random",
        &full,
        &spread_requests,
    );
    in_batches(
        &mut g,
        "resolution, response cache hit, all 1M cached, random, batches of 32",
        &full,
        &spread_requests,
    );
    g.finish();
}

/// The clock the resolutions answer at (Unix seconds).
const NOW: u32 = 1_800_000_000;

/// `service` answering `requests` one after another (TCP, QUIC).
fn one_at_a_time(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    service: &HandleService,
    requests: &[Vec<u8>],
) {
    let (mut out, mut scratch) = (Vec::with_capacity(4096), Scratch::default());
    let mut i = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter(|| {
            i = next(i, requests.len());
            black_box(service.respond(&requests[i], NOW, &mut out, &mut scratch))
        })
    });
}

/// `service` answering `requests` 32 at a time, as a UDP worker answers a
/// received batch; the figure is per resolution.
fn in_batches(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    service: &HandleService,
    requests: &[Vec<u8>],
) {
    let slices: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let mut outs: Vec<Vec<u8>> = (0..32).map(|_| Vec::with_capacity(4096)).collect();
    let mut outcomes = vec![Outcome::Drop; 32];
    let mut batch = Batch::default();
    let mut j = 0;
    g.throughput(Throughput::Elements(32));
    g.bench_function(name, |b| {
        b.iter(|| {
            j = next(j, slices.len() / 32);
            service.respond_batch(
                &slices[j * 32..j * 32 + 32],
                NOW,
                &mut outs,
                &mut outcomes,
                &mut batch,
            );
            black_box(&outs);
        })
    });
    g.throughput(Throughput::Elements(1));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
