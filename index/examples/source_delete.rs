//! `DeleteBySource` on one node (issue 39): how long the delete of a source that supports many
//! entities takes in a large tenant, and what it does to the latency of concurrent queries.
//!
//! ```sh
//! cargo build --release -p allidb-index --example source_delete
//! target/release/examples/source_delete --dir /tmp/allidb-sources --entities 1000000 \
//!     --members 10000 --dim 32
//! ```
//! Writes `--entities` entities (random unit vectors of `--dim`), of which `--members` carry
//! source `big` (every other one of them also source `other`, so half are deleted and half
//! only lose `big`); waits until everything is indexed; then runs queries (the default plan) on one
//! thread for `--seconds` alone, and again while `DeleteBySource(big)` runs (from its start to
//! its end), and prints the delete's time and both query latency distributions.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allidb_index::{QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::provenance::PutMode;
use allidb_storage::{Durability, EntityWrite};

use common::Flags;

const TENANT: &str = "bench";

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

fn entity(i: u64, dim: usize, sources: Vec<String>) -> EntityWrite {
    EntityWrite {
        id: format!("e{i:08}"),
        body: EntityBody {
            entity_type: "doc".into(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vector(i, dim),
                timestamp_nanos: 0,
            }],
            sources,
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    }
}

/// Query latencies on one thread until `stop` (at least `min` long).
fn query_latencies(
    store: &UnifiedStore,
    dim: usize,
    stop: &AtomicBool,
    min: Duration,
) -> Vec<Duration> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut seed = 1u64;
    while !stop.load(Ordering::Relaxed) || started.elapsed() < min {
        let request = QueryRequest {
            vector: vector(seed, dim),
            ..Default::default()
        };
        seed += 1;
        let t = Instant::now();
        store.query(TENANT, &request).expect("the query succeeds");
        latencies.push(t.elapsed());
    }
    latencies
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    format!(
        "{} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    )
}

fn main() {
    let flags = Flags::from_env();
    let dir = PathBuf::from(flags.value("--dir").unwrap_or("/tmp/allidb-sources"));
    let n: u64 = flags.number("--entities", 1_000_000);
    let members: u64 = flags.number("--members", 10_000);
    let dim: usize = flags.number("--dim", 32);
    let seconds: u64 = flags.number("--seconds", 3);
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(UnifiedStore::open(&dir, StoreOptions::default()).expect("open"));
    let started = Instant::now();
    // Members are spread over the id space: every (n / members)-th entity.
    let stride = (n / members.max(1)).max(1);
    for first in (0..n).step_by(1000) {
        let writes: Vec<EntityWrite> = (first..(first + 1000).min(n))
            .map(|i| {
                let sources = match (i % stride == 0 && i / stride < members, i / stride % 2) {
                    (true, 0) => vec!["big".to_owned()],
                    (true, _) => vec!["big".to_owned(), "other".to_owned()],
                    (false, _) => Vec::new(),
                };
                entity(i, dim, sources)
            })
            .collect();
        store
            .put_entities_as(TENANT, writes, PutMode::MergeSources, Durability::Buffered)
            .expect("the batch is written");
    }
    store.index_all_pending();
    println!(
        "loaded {n} entities ({members} with source big) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let stop = AtomicBool::new(true);
    let mut alone = query_latencies(&store, dim, &stop, Duration::from_secs(seconds));
    println!("queries alone: {}", summary(&mut alone));

    let stop = Arc::new(AtomicBool::new(false));
    let querying = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || query_latencies(&store, dim, &stop, Duration::ZERO))
    };
    let t = Instant::now();
    let done = store
        .delete_by_source(TENANT, "big", Durability::Sync)
        .expect("the source is deleted");
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut during = querying.join().expect("the query thread ends");
    println!(
        "DeleteBySource(big): {} deleted, {} updated in {:.3} s",
        done.deleted,
        done.updated,
        took.as_secs_f64()
    );
    println!("queries during the delete: {}", summary(&mut during));
}
