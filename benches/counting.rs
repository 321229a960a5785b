//! What the UDP workers' latency counting adds to a batch
//! (`Latency::record_arrivals`, as `Worker::count` in
//! crates/server/src/udp.rs calls it): one clock read a batch, a bucket
//! and a sum per answer, the extremes widened once.
//!
//! Run: `source scripts/env.sh && cargo bench --bench counting`
//! Figures and the machine: PERFORMANCE.md ("Counting: metrics on and
//! off").

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idnode_core::latency::Latency;
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

fn epoch_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn bench(c: &mut Criterion) {
    let latency = Latency::default();
    let start = epoch_nanos();
    let arrivals: Vec<u64> = (0..32).map(|i| start - 1_000 * i).collect();
    let mut g = c.benchmark_group("counting");
    for batch in [32usize, 1] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("latency of a batch of {batch}"), |b| {
            b.iter(|| {
                latency.record_arrivals(black_box(&arrivals[..batch]).iter().copied(), epoch_nanos)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
