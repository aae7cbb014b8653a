//! Micro-benchmarks of hot paths: `cargo bench --bench hot_paths`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::lease::LeaderLease;
use tessera::region::{initial_regions, keys};
use tessera::router::table::RoutingTable;

fn lease_check(c: &mut Criterion) {
    let lease = LeaderLease::new();
    lease.renew(std::time::Instant::now(), std::time::Duration::from_secs(3600));
    c.bench_function("leader_lease_is_valid", |b| b.iter(|| black_box(lease.is_valid())));
}

fn router_lookup(c: &mut Criterion) {
    let splits: Vec<Vec<u8>> = (1..10_000).map(|i| format!("key{i:08}").into_bytes()).collect();
    let table = RoutingTable::new(initial_regions(&splits, 1));
    let mut i = 0u64;
    c.bench_function("router_locate_10k_regions", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            black_box(table.locate(format!("key{i:08}x").as_bytes()).map(|r| r.id))
        })
    });
}

fn mvcc_encoding(c: &mut Criterion) {
    let key = b"/registry/pods/default/nginx-7c5ddbdf54-abcde";
    c.bench_function("mvcc_key_encode", |b| b.iter(|| black_box(keys::encode(black_box(key), 123_456))));
    let encoded = keys::encode(key, 123_456);
    c.bench_function("mvcc_key_decode", |b| b.iter(|| black_box(keys::decode(black_box(&encoded)))));
}

criterion_group!(benches, lease_check, router_lookup, mvcc_encoding);
criterion_main!(benches);
