//! A small db_bench: durable ingest of entities with a 1.5 KiB body (a 384-d vector) in batches of
//! 256 with `sync` durability and group commit, through flushes and compactions; then random
//! entity reads from SSTables (the memtables are flushed first). Reports entities/s, write and
//! space amplification, and read p50/p99.
//!
//! ```sh
//! cargo run --release -p allidb-storage --example db_bench -- --entities 1000000 --dir /tmp/allidb-bench
//! ```
//! `bench/rocksdb_bench.py` runs the same workload (same keys, values, batches, sync) on RocksDB.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::key::CellKey;
use allidb_storage::{Durability, Engine, Options};

struct Args {
    entities: u64,
    batch: u64,
    writers: u64,
    gets: u64,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        entities: 1_000_000,
        batch: 256,
        writers: 4,
        gets: 100_000,
        dir: std::env::temp_dir().join("allidb-db-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--entities" => args.entities = number(),
            "--batch" => args.batch = number(),
            "--writers" => args.writers = number(),
            "--gets" => args.gets = number(),
            "--dir" => args.dir = PathBuf::from(&value),
            other => {
                panic!("unknown flag {other} (flags: --entities --batch --writers --gets --dir)")
            }
        }
    }
    args
}

/// Entity `i`'s id: a multiplicative permutation of 0..n, so inserts arrive in random key order.
fn id_of(i: u64) -> String {
    format!("e{:010}", i.wrapping_mul(2_654_435_761) % 4_294_967_291)
}

/// Entity `i`'s encoded body: a 384-d vector (1.5 KiB) plus a type and an importance.
fn value_of(i: u64) -> Vec<u8> {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vector = (0..384)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let body = EntityBody {
        entity_type: "doc".to_owned(),
        embeddings: vec![Embedding {
            version: 1,
            vector,
            timestamp_nanos: 1,
        }],
        importance: (i % 10) as f64,
        ..EntityBody::default()
    };
    body.encode().expect("a 1.5 KiB body encodes")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn dir_bytes(dir: &PathBuf, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args = parse_args();
    let _ = std::fs::remove_dir_all(&args.dir);
    let engine = Arc::new(Engine::open(&args.dir, Options::default()).expect("open"));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let writers: Vec<_> = (0..args.writers)
        .map(|_| {
            let (engine, next, n, batch) =
                (engine.clone(), next.clone(), args.entities, args.batch);
            std::thread::spawn(move || {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= n {
                        return;
                    }
                    let mut wb = WriteBatch::new();
                    let ts = engine.clock().now();
                    for i in first..(first + batch).min(n) {
                        wb.put(CellKey::body("bench", &id_of(i)).encode(), ts, value_of(i));
                    }
                    engine.write(wb, Durability::Sync).expect("write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    let ingest = start.elapsed();
    engine.flush().expect("flush");
    let settle = start.elapsed();
    let stats = engine.stats();
    let user_bytes = stats.user_bytes as f64;
    let sst_bytes = dir_bytes(&args.dir, "sst") as f64;
    let logical = args.entities as f64
        * (value_of(0).len() + CellKey::body("bench", &id_of(0)).encode().len()) as f64;
    println!(
        "ingest: {} entities in {:.2?} = {:.0} entities/s (all flushed after {:.2?})",
        args.entities,
        ingest,
        args.entities as f64 / ingest.as_secs_f64(),
        settle
    );
    println!(
        "write amplification (WAL + flush + compaction bytes / user bytes): {:.2}",
        (user_bytes + stats.flush_bytes as f64 + stats.compaction_write_bytes as f64) / user_bytes
    );
    println!(
        "space amplification (SSTable bytes / logical bytes): {:.2}",
        sst_bytes / logical
    );
    println!(
        "tables per level: {:?}; compactions: {}; stalls: {}; slowdowns: {}",
        stats.tables_per_level, stats.compactions, stats.stalls, stats.slowdowns
    );

    let mut samples = Vec::with_capacity(args.gets as usize);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let get_start = Instant::now();
    for _ in 0..args.gets {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = state % args.entities;
        let t = Instant::now();
        let found = engine.get_entity("bench", &id_of(i)).expect("read");
        samples.push(t.elapsed());
        assert_eq!(
            found
                .expect("every ingested entity is found")
                .body
                .importance,
            (i % 10) as f64
        );
    }
    let total = get_start.elapsed();
    samples.sort();
    let stats = engine.stats();
    println!(
        "random get from SSTables: {} reads, {:.0}/s, p50 {:.1?}, p99 {:.1?} (block cache hits {} misses {})",
        args.gets,
        args.gets as f64 / total.as_secs_f64(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        stats.block_cache_hits,
        stats.block_cache_misses
    );
}
