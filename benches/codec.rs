//! The codec pieces of the resolution hot path, without any store:
//! identifier normalization, request decode, response encode.
//!
//! Run: `source scripts/env.sh && cargo bench --bench codec`
//! Figures and the machine: PERFORMANCE.md.

// The node's allocator (src/main.rs), so allocation and memory layout
// are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idnode_core::{Value, normalize_into, wire};
use idnode_handle::{
    RequestParams, ResolutionQuery, ResponseContext, decode_request, encode_resolution_request,
    encode_resolution_response, flags,
};
use std::hint::black_box;

const HANDLE: &str = "88.100.1/CNC-LATHE-202600042";

fn request(op_flags: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_resolution_request(
        &mut out,
        &RequestParams {
            request_id: 7,
            op_flags,
            handle: HANDLE.as_bytes(),
            expiration: 2_000_000_000,
            ..Default::default()
        },
    );
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let mut key = Vec::with_capacity(64);
    g.bench_function("normalize identifier", |b| {
        b.iter(|| {
            normalize_into(black_box(HANDLE.as_bytes()), &mut key);
            black_box(key.len())
        })
    });
    let plain = request(flags::PO);
    g.bench_function("decode request", |b| {
        b.iter(|| {
            let r = decode_request(black_box(&plain)).expect("valid");
            let q = ResolutionQuery::decode(r.body).expect("valid");
            black_box(q.handle.len())
        })
    });
    let values: Vec<Vec<u8>> = [
        (
            "URL",
            "https://hxpm.example.com/products/CNC-LATHE-202600042",
        ),
        ("productName", "Cnc Lathe 300 series"),
        ("manufacturer", "Huaxin Precision Machinery Co., Ltd."),
        ("batch", "B260324-26"),
        ("productionDate", "2026-03-24"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (t, d))| {
        let mut raw = Vec::new();
        wire::encode_value(&mut raw, &Value::new(i as u32 + 1, *t, *d));
        raw
    })
    .collect();
    let mut out = Vec::with_capacity(1024);
    for (name, op_flags) in [
        ("encode response", flags::PO),
        ("encode response with SHA-256 digest", flags::PO | flags::RD),
    ] {
        let req = request(op_flags);
        let decoded = decode_request(&req).expect("valid");
        g.bench_function(name, |b| {
            b.iter(|| {
                let ctx = ResponseContext::for_request(&decoded, 1_800_000_000);
                let n = encode_resolution_response(
                    &mut out,
                    &ctx,
                    HANDLE.as_bytes(),
                    values.iter().map(Vec::as_slice),
                );
                black_box((n, out.len()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
