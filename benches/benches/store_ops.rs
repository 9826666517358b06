//! Store operations through the `MetadataStore` trait on every engine, with
//! the raw engine (plain heed / plain fjall) in the same group as the
//! baseline: get, durable set, batch of 100, scan of 1,000, and snapshot +
//! restore of 100k keys.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meta_benches::{Engine, RAW_ENGINES, entries, open_trait};
use meta_store_api::{Durability, WriteBatch};

const KEYS: usize = 10_000;
const VALUE: usize = 100;

fn get(c: &mut Criterion) {
    let data = entries("/meta/kv/", KEYS, VALUE);
    let keys: Vec<Vec<u8>> = data.iter().map(|(k, _)| k.clone()).collect();
    let mut group = c.benchmark_group("get");
    for name in Engine::ALL {
        let s = open_trait(name);
        load(&*s.store, &data);
        let mut i = 0;
        group.bench_function(format!("{name}/trait"), |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                black_box(s.store.get(&keys[i]).expect("get"))
            })
        });
    }
    for (name, open) in RAW_ENGINES {
        let raw = open();
        data.chunks(1000).for_each(|c| raw.put_all(c, false));
        let mut i = 0;
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                black_box(raw.get(&keys[i]))
            })
        });
    }
    group.finish();
}

fn load(store: &dyn meta_store_api::MetadataStore, data: &[(Vec<u8>, Vec<u8>)]) {
    for chunk in data.chunks(1000) {
        let batch: WriteBatch = chunk
            .iter()
            .map(|(k, v)| meta_store_api::BatchOp::Put {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        store.batch(&batch, Durability::Buffered).expect("load");
    }
    store.sync().expect("sync");
}

/// Durable writes of `n` entries per commit: the trait's batch vs the raw
/// engine's own transaction / batch.
fn durable_writes(c: &mut Criterion, group_name: &str, n: usize) {
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let mut counter = 0u64;
    let mut next = |n: usize| {
        counter += 1;
        entries(&format!("/meta/kv/{counter:010}/"), n, VALUE)
    };
    for name in Engine::ALL {
        let s = open_trait(name);
        group.bench_function(format!("{name}/trait"), |b| {
            b.iter_batched(
                || next(n),
                |data| {
                    let batch: WriteBatch = data
                        .into_iter()
                        .map(|(key, value)| meta_store_api::BatchOp::Put { key, value })
                        .collect();
                    s.store.batch(&batch, Durability::Durable).expect("write")
                },
                BatchSize::SmallInput,
            )
        });
    }
    for (name, open) in RAW_ENGINES {
        let raw = open();
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter_batched(
                || next(n),
                |data| raw.put_all(&data, true),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn durable_set(c: &mut Criterion) {
    durable_writes(c, "durable_set", 1);
}

fn batch_100(c: &mut Criterion) {
    durable_writes(c, "durable_batch_100", 100);
}

fn scan_1000(c: &mut Criterion) {
    let mut data = entries("/meta/kv/", 1000, VALUE);
    data.extend(entries("/meta/shard/", KEYS, VALUE));
    let mut group = c.benchmark_group("scan_1000");
    for name in Engine::ALL {
        let s = open_trait(name);
        load(&*s.store, &data);
        group.bench_function(format!("{name}/trait"), |b| {
            b.iter(|| black_box(s.store.scan(b"/meta/kv/").expect("scan")))
        });
    }
    for (name, open) in RAW_ENGINES {
        let raw = open();
        data.chunks(1000).for_each(|c| raw.put_all(c, false));
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter(|| black_box(raw.scan(b"/meta/kv/")))
        });
    }
    group.finish();
}

/// Copies 100k keys from one store to a fresh one: the trait's portable
/// snapshot + restore vs the raw engine's iterate-and-insert.
fn snapshot_restore_100k(c: &mut Criterion) {
    let data = entries("/meta/kv/", 100_000, VALUE);
    let mut group = c.benchmark_group("snapshot_restore_100k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for name in Engine::ALL {
        let source = open_trait(name);
        load(&*source.store, &data);
        group.bench_function(format!("{name}/trait"), |b| {
            b.iter_batched(
                || open_trait(name),
                |target| {
                    let mut stream = source.store.snapshot(b"/meta/").expect("snapshot");
                    target
                        .store
                        .restore(b"/meta/", &mut stream)
                        .expect("restore");
                    target
                },
                BatchSize::PerIteration,
            )
        });
    }
    for (name, open) in RAW_ENGINES {
        let source = open();
        source.put_all(&data, false);
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter_batched(
                open,
                |target| {
                    target.put_all(&source.scan(b"/meta/"), true);
                    target
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = get, durable_set, batch_100, scan_1000, snapshot_restore_100k
}
criterion_main!(benches);
