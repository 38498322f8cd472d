//! Restart time and memory of a store holding many vectors (issue: "ready in <= 20 s, RSS <= 1.5x
//! the raw vector bytes" at 1,000,000 384-d vectors).
//!
//! ```sh
//! cargo build --release -p allidb-index --example store_restart
//! target/release/examples/store_restart build --dir /tmp/allidb-restart --vectors 1000000
//! target/release/examples/store_restart open  --dir /tmp/allidb-restart
//! ```
//! `build` ingests random unit vectors, indexes them all and closes (which dumps the indexes);
//! `open`, in a fresh process, measures the time until the store is open and serving (indexes
//! loaded, WAL caught up), its resident memory, and runs a few queries.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use allidb_index::{QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, EntityWrite};

use common::Flags;

fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20_001) as f32 / 10_000.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn options() -> StoreOptions {
    // A small block cache: the measurement is about the indexes, not about cached table blocks.
    StoreOptions {
        engine: allidb_storage::Options {
            block_cache_bytes: 32 << 20,
            ..Default::default()
        },
        ..StoreOptions::default()
    }
}

fn main() {
    let flags = Flags::from_env();
    let dir = PathBuf::from(flags.value("--dir").unwrap_or("/tmp/allidb-restart"));
    let n: u64 = flags.number("--vectors", 1_000_000);
    let dim: usize = flags.number("--dim", 384);
    match std::env::args().nth(1).as_deref() {
        Some("build") => {
            let _ = std::fs::remove_dir_all(&dir);
            let store = UnifiedStore::open(&dir, options()).expect("open");
            let start = Instant::now();
            for first in (0..n).step_by(1000) {
                let writes = (first..(first + 1000).min(n))
                    .map(|i| EntityWrite {
                        id: format!("e{i:08}"),
                        body: EntityBody {
                            entity_type: "doc".into(),
                            embeddings: vec![Embedding {
                                version: 1,
                                vector: vector(i, dim),
                                timestamp_nanos: 0,
                            }],
                            ..EntityBody::default()
                        },
                        out_edges: vec![],
                        in_edges: vec![],
                    })
                    .collect();
                store
                    .put_entities("bench", writes, Durability::Buffered)
                    .expect("put");
                store.index_all_pending();
            }
            println!("built {n} x {dim}-d in {:.1?}", start.elapsed());
            let start = Instant::now();
            store.close().expect("close");
            println!(
                "closed (indexes dumped, memtable flushed) in {:.1?}",
                start.elapsed()
            );
        }
        Some("open") => {
            let start = Instant::now();
            let store = UnifiedStore::open(&dir, options()).expect("open");
            let ready = start.elapsed();
            let rss = rss_bytes();
            let raw = n * dim as u64 * 4;
            println!(
                "ready in {ready:.2?}; RSS {:.0} MiB = {:.2}x the raw vector bytes ({:.0} MiB)",
                rss as f64 / 1048576.0,
                rss as f64 / raw as f64,
                raw as f64 / 1048576.0
            );
            let q = QueryRequest {
                vector: vector(7, dim),
                ..Default::default()
            };
            let hits = store.query("bench", &q).expect("query");
            assert!(!hits.is_empty(), "the reopened store answers queries");
            println!(
                "first query: {} results, top {}",
                hits.len(),
                hits[0].result.entity_id
            );
        }
        _ => eprintln!(
            "usage: store_restart build|open --dir DIR [--vectors N] [--dim D] (same N and D for both)"
        ),
    }
}
