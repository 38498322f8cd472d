//! Engine benchmarks at small scale (the full-size run is `examples/db_bench.rs`):
//! - `engine_ingest/sync_batches_256`: 20k entities (1.5 KiB bodies) into a fresh engine in
//!   `Durability::Sync` batches of 256 from 4 writer threads (group commit), per iteration;
//! - `engine_get/random_after_flush`: random `get_entity` of those entities once flushed to
//!   SSTables (block cache as configured by default: the tables fit in it once warm).
//!
//! Run: `cargo bench -p allidb-storage --bench engine`

#[path = "common/workload.rs"]
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allidb_storage::{Engine, Options};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use workload::{TENANT, XorShift, id_of};

const ENTITIES: u64 = 20_000;
const BATCH: u64 = 256;
const WRITERS: u64 = 4;

fn fresh_engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    Arc::new(Engine::open(dir.path(), Options::default()).expect("open the bench engine"))
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(ENTITIES));
    group.bench_function("sync_batches_256", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let engine = fresh_engine(&dir);
                (dir, engine)
            },
            |(dir, engine)| {
                workload::ingest(&engine, ENTITIES, BATCH, WRITERS);
                (dir, engine)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn random_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = fresh_engine(&dir);
    workload::ingest(&engine, ENTITIES, BATCH, WRITERS);
    engine.flush().expect("flush");
    let stats = engine.stats();
    assert_eq!(
        (stats.memtable_bytes, stats.immutable_memtables),
        (0, 0),
        "reads are served from SSTables"
    );

    let mut group = c.benchmark_group("engine_get");
    group
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    let mut rng = XorShift::for_reads();
    group.bench_function("random_after_flush", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let i = rng.next_u64() % ENTITIES;
                workload::check(engine.get_entity(TENANT, &id_of(i)).expect("read"), i);
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, ingest, random_get);
criterion_main!(benches);
