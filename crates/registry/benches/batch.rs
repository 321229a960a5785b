//! The bulk registration path in process: `Registry::batch_create` of 1000
//! new identifiers (3 values each) over the in-memory store, and the same
//! batch retried (judged identical, nothing written).
//!
//! Run: `cargo bench -p idnode-registry --bench batch`
//!
//! The target is 100,000 identifiers/s in batches of about 1000, so one
//! batch must take well under 10 ms. This measures the registry's own work
//! (parse, validate, encode, judge); a RocksDB commit adds its WAL sync.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use idnode_core::Value;
use idnode_registry::{BatchItem, Registry};
use idnode_store::MemoryStore;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const BATCH: usize = 1000;

fn batch(first: usize) -> Vec<BatchItem> {
    (first..first + BATCH)
        .map(|n| BatchItem {
            identifier: format!("88.100.1/PART-{n:010}"),
            values: vec![
                Value::new(1, "URL", format!("https://example.com/parts/{n}")),
                Value::new(2, "productName", "CNC lathe spindle bearing"),
                Value::new(3, "batchNumber", format!("B{}", n / 1000)),
            ],
            overwrite: false,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let registry = Registry::new(Arc::new(MemoryStore::new()));
    registry.create_prefix("88.100.1").expect("prefix");
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("batch_create");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000 new", |b| {
        b.iter_batched(
            || batch(next.fetch_add(BATCH, Ordering::Relaxed)),
            |items| black_box(registry.batch_create(items)),
            BatchSize::SmallInput,
        )
    });
    let retried = batch(0);
    group.bench_function("1000 retried", |b| {
        b.iter_batched(
            || retried.clone(),
            |items| black_box(registry.batch_create(items)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
