//! SSTable point-read benchmark: one table of 100k entities with 1.5 KiB values, then random
//! seeks each followed by reading the first entry, with a cache that holds the whole table (hot)
//! and one that holds ~5% of it (mostly misses: mmap read + checksum + parse per seek).
//!
//! Run: `cargo bench -p allidb-storage --bench sstable`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use allidb_storage::fs::{FileSystem, OsFileSystem};
use allidb_storage::key::{CellKey, partition_prefix};
use allidb_storage::sstable::{BlockCache, Table, TableBuilder, TableOptions};
use allidb_storage::types::{Entry, InternalKey};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ENTITIES: usize = 100_000;
const VALUE_BYTES: usize = 1_536;

fn entity_id(i: usize) -> String {
    format!("entity-{i:08}")
}

fn build_table(path: &std::path::Path) {
    let file = OsFileSystem.create(path).expect("create the bench table");
    let mut builder = TableBuilder::new(file, path.to_owned(), TableOptions::default());
    let value = vec![0xabu8; VALUE_BYTES];
    for i in 0..ENTITIES {
        let entry = Entry {
            key: InternalKey::new(CellKey::body("tenant", &entity_id(i)).encode(), 1, i as u64),
            value: Some(value.clone()),
        };
        builder
            .add(&entry)
            .expect("entities are added in key order");
    }
    builder.finish().expect("finish the bench table");
}

fn point_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.sst");
    build_table(&path);
    let file_size = std::fs::metadata(&path).expect("table exists").len();

    let mut group = c.benchmark_group("sstable_point_read");
    for (name, cache_bytes) in [("cache_hot", 2 * file_size), ("cache_5pct", file_size / 20)] {
        let cache = Arc::new(BlockCache::new(cache_bytes));
        let table = Arc::new(Table::open(&OsFileSystem, &path, 1, cache).expect("open"));
        let mut rng = StdRng::seed_from_u64(42);
        group.bench_function(name, |b| {
            b.iter(|| {
                let id = entity_id(rng.random_range(0..ENTITIES));
                let partition = partition_prefix("tenant", &id);
                assert!(table.may_contain_partition(&partition));
                let mut iter = table.iter();
                iter.seek(&partition);
                let entry = iter.next().expect("entity exists").expect("no corruption");
                black_box(entry)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = point_reads
}
criterion_main!(benches);
