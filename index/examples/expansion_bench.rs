//! Graph-RAG query latency with 2-hop expansion (issue: "Query with 2-hop expansion (k=10,
//! expand 2, fan-out cap 8): p50 / p99"; docs/benchmarks.md, "Graph-RAG query with 2-hop
//! expansion").
//!
//! ```sh
//! cargo run --release -p allidb-index --example expansion_bench -- \
//!     [--entities 100000] [--dim 384] [--queries 1000] [--dir NEW_OR_EMPTY_DIR]
//! ```
//! Builds a store through the public [`UnifiedStore`] API: `entities` clustered unit vectors
//! (clusters of ~100, Gaussian spread around a random centre), each entity with 8-16 out-edges
//! (70% to its own cluster, 30% anywhere; four relations; weights in [0.1, 1.0)) and an importance
//! in [-2, 2), then indexes every pending vector. It then runs `queries` queries (a fresh point of
//! a random cluster each) from one thread, k=10, expand_factor 2, default ef and node budget,
//! first with max_hops 0 (ANN seeds only) and then with max_hops 2 and fan-out 8, and prints
//! latency percentiles, QPS, and how many nodes each expanded query scored.
//!
//! `updated_at` is not varied: the store stamps every write with its own clock, so the recency
//! term is (nearly) the same for all entities; it is still computed per candidate.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use allidb_index::graph::TraversalOptions;
use allidb_index::query::QueryPlan;
use allidb_index::{QueryHit, QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::cell::{Edge, Embedding, EntityBody, EntityWrite};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::Flags;

const TENANT: &str = "bench";
const CLUSTER_SIZE: usize = 100;
const RELATIONS: [&str; 4] = ["cites", "mentions", "related_to", "part_of"];
/// Per-coordinate spread of a point around its cluster centre (noise norm ~0.8 at 384-d).
const SPREAD_AT_384: f32 = 0.8;
const BATCH: usize = 1_000;

struct Args {
    entities: usize,
    dim: usize,
    queries: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let flags = Flags::from_env();
    Args {
        entities: flags.number("--entities", 100_000),
        dim: flags.number("--dim", 384),
        queries: flags.number("--queries", 1_000),
        dir: flags.value("--dir").map(PathBuf::from),
    }
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
    let u: f32 = 1.0 - rng.random::<f32>();
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// A point of the cluster around `centre`.
fn around(centre: &[f32], rng: &mut StdRng) -> Vec<f32> {
    let sigma = SPREAD_AT_384 / (centre.len() as f32).sqrt();
    normalised(centre.iter().map(|c| c + sigma * gaussian(rng)).collect())
}

fn entity_id(i: usize) -> String {
    format!("e{i:08}")
}

/// Entity `i` belongs to cluster `i % clusters`; a random member of cluster `cluster`.
fn member_of(cluster: usize, clusters: usize, entities: usize, rng: &mut StdRng) -> usize {
    let members = (entities - cluster).div_ceil(clusters);
    cluster + clusters * rng.random_range(0..members)
}

fn build(store: &UnifiedStore, centres: &[Vec<f32>], entities: usize, rng: &mut StdRng) {
    let clusters = centres.len();
    let start = Instant::now();
    for first in (0..entities).step_by(BATCH) {
        let writes = (first..(first + BATCH).min(entities))
            .map(|i| EntityWrite {
                id: entity_id(i),
                body: EntityBody {
                    entity_type: "doc".into(),
                    embeddings: vec![Embedding {
                        version: 1,
                        vector: around(&centres[i % clusters], rng),
                        timestamp_nanos: 0,
                    }],
                    importance: rng.random_range(-2.0..2.0),
                    ..EntityBody::default()
                },
                out_edges: vec![],
                in_edges: vec![],
            })
            .collect();
        store
            .put_entities(TENANT, writes, Durability::Buffered)
            .expect("put entities");
        store.index_all_pending();
    }
    let vectors_done = start.elapsed();
    let start = Instant::now();
    let mut edge_count = 0;
    for first in (0..entities).step_by(BATCH) {
        let mut edges = Vec::new();
        for from in first..(first + BATCH).min(entities) {
            for _ in 0..rng.random_range(8..=16) {
                let to = if rng.random_bool(0.7) {
                    member_of(from % clusters, clusters, entities, rng)
                } else {
                    rng.random_range(0..entities)
                };
                if to == from {
                    continue;
                }
                edges.push(Edge {
                    from: entity_id(from),
                    to: entity_id(to),
                    relation: RELATIONS[rng.random_range(0..RELATIONS.len())].to_owned(),
                    weight: rng.random_range(0.1..1.0),
                    timestamp_nanos: 0,
                    sources: Vec::new(),
                });
            }
        }
        edge_count += edges.len();
        store
            .add_edges(TENANT, &edges, Durability::Buffered)
            .expect("add edges");
    }
    println!(
        "built {entities} entities x {}-d in {:.1?} (ingest + HNSW), {edge_count} edges in {:.1?}",
        centres[0].len(),
        vectors_done,
        start.elapsed()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs every query once with `plan`; prints the latency figures; returns each query's hits.
fn measure(
    store: &UnifiedStore,
    label: &str,
    queries: &[Vec<f32>],
    plan: &QueryPlan,
) -> Vec<Vec<QueryHit>> {
    let mut latencies = Vec::with_capacity(queries.len());
    let mut all_hits = Vec::with_capacity(queries.len());
    let start = Instant::now();
    for q in queries {
        let request = QueryRequest {
            vector: q.clone(),
            plan: plan.clone(),
            ..QueryRequest::default()
        };
        let begin = Instant::now();
        let hits = store.query(TENANT, &request).expect("query");
        latencies.push(begin.elapsed());
        all_hits.push(hits);
    }
    let total = start.elapsed();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies[latencies.len() - 1]),
        queries.len() as f64 / total.as_secs_f64()
    );
    all_hits
}

/// Nodes an expanded query scores: the expansion of its seeds (the seeds-only query's hits in
/// similarity order, which is the ANN order), counted outside the timed loop.
fn scored_nodes(
    store: &UnifiedStore,
    seeds_only: &[Vec<QueryHit>],
    traversal: &TraversalOptions,
) -> f64 {
    let total: usize = seeds_only
        .iter()
        .map(|hits| {
            let mut seeds: Vec<&QueryHit> = hits.iter().collect();
            seeds.sort_by(|a, b| {
                b.result
                    .similarity
                    .unwrap_or(f32::NEG_INFINITY)
                    .total_cmp(&a.result.similarity.unwrap_or(f32::NEG_INFINITY))
            });
            let ids: Vec<String> = seeds
                .iter()
                .map(|h| h.result.entity_id.to_string())
                .collect();
            store
                .traverse(TENANT, &ids, traversal, false)
                .expect("traverse")
                .0
                .len()
        })
        .sum();
    total as f64 / seeds_only.len() as f64
}

fn main() {
    let args = parse_args();
    assert!(
        args.entities >= CLUSTER_SIZE && args.dim > 0 && args.queries > 0,
        "need at least {CLUSTER_SIZE} entities, a dimension and a query"
    );
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    assert!(
        std::fs::read_dir(&dir).map_or(true, |mut entries| entries.next().is_none()),
        "--dir {} must be new or empty (the store is built from scratch)",
        dir.display()
    );
    let store = UnifiedStore::open(&dir, StoreOptions::default()).expect("open store");

    let mut rng = StdRng::seed_from_u64(42);
    let clusters = args.entities / CLUSTER_SIZE;
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| normalised((0..args.dim).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    build(&store, &centres, args.entities, &mut rng);

    let queries: Vec<Vec<f32>> = (0..args.queries)
        .map(|_| around(&centres[rng.random_range(0..clusters)], &mut rng))
        .collect();
    let expanded = QueryPlan {
        k: 10,
        expand_factor: 2,
        traversal: TraversalOptions {
            max_hops: 2,
            fan_out: 8,
            ..TraversalOptions::default()
        },
        ..QueryPlan::default()
    };
    let seeds_only = QueryPlan {
        traversal: TraversalOptions {
            max_hops: 0,
            ..expanded.traversal.clone()
        },
        ..expanded.clone()
    };
    println!(
        "{} queries, one thread, k=10, expand_factor 2 (20 seeds), default ef, node budget {}",
        queries.len(),
        expanded.traversal.node_budget
    );
    println!("| query | p50 ms | p95 ms | p99 ms | max ms | QPS |");
    println!("|---|---|---|---|---|---|");
    // Warm-up: page in the index and the allocator's arenas.
    measure(
        &store,
        "warm-up (first 100, max_hops 2)",
        &queries[..queries.len().min(100)],
        &expanded,
    );
    measure(&store, "seeds only (max_hops 0)", &queries, &seeds_only);
    let hits = measure(&store, "2-hop expansion, fan-out 8", &queries, &expanded);

    let from_expansion: usize = hits.iter().flatten().filter(|h| h.result.depth > 0).count();
    let seed_hits = {
        let plan = QueryPlan {
            k: seeds_only.seed_count(),
            expand_factor: 1,
            ..seeds_only.clone()
        };
        queries
            .iter()
            .map(|q| {
                let request = QueryRequest {
                    vector: q.clone(),
                    plan: plan.clone(),
                    ..QueryRequest::default()
                };
                store.query(TENANT, &request).expect("query")
            })
            .collect::<Vec<_>>()
    };
    println!(
        "nodes scored per expanded query: {:.1} on average (seeds included); \
         results reached by expansion: {:.2} of 10 on average",
        scored_nodes(&store, &seed_hits, &expanded.traversal),
        from_expansion as f64 / hits.len() as f64
    );
    store.close().expect("close");
}
