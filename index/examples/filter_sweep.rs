//! Filtered search benchmark on npm-minilm-20k (docs/benchmarks.md, "Filtered search"):
//! queries/s and recall@10 of the store's query at each selectivity (0.1% .. 90%, a numeric
//! range on a synthetic attribute), against the same query unfiltered, with the planner's
//! choice and with the filtered HNSW walk forced (exact-scan thresholds at zero).
//!
//! ```text
//! cargo run --profile test -p allidb-index --example filter_sweep -- [--n 20000] [--queries 200]
//! ```
//!
//! One thread, `k` = 10, no graph expansion, the vector term only, default `ef` (64).

mod common;
#[path = "../tests/common/texmex.rs"]
mod texmex;

use std::path::Path;
use std::time::Instant;

use allidb_index::filter::{Cmp, Expr, Field};
use allidb_index::graph::TraversalOptions;
use allidb_index::query::{QueryPlan, ScoreWeights};
use allidb_index::vector::VectorIndexOptions;
use allidb_index::{Filter, QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{AttributeValue, Embedding, EntityBody};
use allidb_storage::{Durability, EntityWrite};
use common::Flags;
use texmex::read_vecs;

fn open(dir: &Path, base: &[Vec<f32>], vectors: VectorIndexOptions) -> UnifiedStore {
    let store = UnifiedStore::open(
        dir,
        StoreOptions {
            vectors,
            ..StoreOptions::default()
        },
    )
    .expect("the store opens");
    for (c, chunk) in base.chunks(1000).enumerate() {
        let writes = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = c * 1000 + j;
                EntityWrite {
                    id: format!("e{i:06}"),
                    body: EntityBody {
                        embeddings: vec![Embedding {
                            version: 1,
                            vector: v.clone(),
                            timestamp_nanos: 0,
                        }],
                        typed_attributes: [(
                            "bucket".to_owned(),
                            AttributeValue::Int((i % 1000) as i64),
                        )]
                        .into(),
                        ..EntityBody::default()
                    },
                    out_edges: Vec::new(),
                    in_edges: Vec::new(),
                }
            })
            .collect();
        store
            .put_entities("t", writes, Durability::Buffered)
            .expect("the write succeeds");
    }
    store.index_all_pending();
    store
}

fn request(vector: &[f32], filter: &Filter) -> QueryRequest {
    QueryRequest {
        vector: vector.to_vec(),
        plan: QueryPlan {
            k: 10,
            traversal: TraversalOptions {
                max_hops: 0,
                ..TraversalOptions::default()
            },
            weights: ScoreWeights {
                vector: 1.0,
                graph: 0.0,
                importance: 0.0,
                recency: 0.0,
                hop_decay: 1.0,
            },
            ..QueryPlan::default()
        },
        filter: filter.clone(),
        include_entities: false,
        ..QueryRequest::default()
    }
}

/// (queries/s, recall@10, plan) of `bucket < below` (`None`: unfiltered).
fn run(
    store: &UnifiedStore,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    below: Option<i64>,
) -> (f64, f64, String) {
    let filter = Filter {
        expression: below.map(|b| Expr::Compare {
            op: Cmp::Lt,
            field: Field::Attribute("bucket".to_owned()),
            value: AttributeValue::Int(b),
        }),
        ..Filter::default()
    };
    let start = Instant::now();
    let answers: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            store
                .query("t", &request(q, &filter))
                .expect("the query succeeds")
                .into_iter()
                .map(|h| h.result.entity_id.to_string())
                .collect()
        })
        .collect();
    let qps = queries.len() as f64 / start.elapsed().as_secs_f64();
    let mut recall = 0.0;
    for (q, got) in queries.iter().zip(&answers) {
        let mut scored: Vec<(f32, usize)> = base
            .iter()
            .enumerate()
            .filter(|(i, _)| below.is_none_or(|b| ((i % 1000) as i64) < b))
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let truth: Vec<String> = scored
            .iter()
            .take(10)
            .map(|(_, i)| format!("e{i:06}"))
            .collect();
        recall += truth.iter().filter(|t| got.contains(t)).count() as f64 / truth.len() as f64;
    }
    let mut explained = request(&queries[0], &filter);
    explained.plan.explain = true;
    let plan = store
        .query_with_context("t", &explained, false)
        .expect("the query succeeds")
        .plan
        .map_or_else(|| "unfiltered".to_owned(), |p| p.plan.to_owned());
    (qps, recall / queries.len() as f64, plan)
}

fn main() {
    let flags = Flags::from_env();
    let n: usize = flags.number("--n", 20_000);
    let q: usize = flags.number("--queries", 200);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k");
    let mut base = read_vecs(&dir.join("base.fvecs"), f32::from_le_bytes);
    base.truncate(n);
    let mut queries = read_vecs(&dir.join("query.fvecs"), f32::from_le_bytes);
    queries.truncate(q);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    for (label, options) in [
        ("planner", VectorIndexOptions::default()),
        (
            "filtered HNSW forced",
            VectorIndexOptions {
                exact_scan_max_allowed: 0,
                exact_scan_max_fraction: 0.0,
                ..VectorIndexOptions::default()
            },
        ),
    ] {
        let store = open(&tmp.path().join(label.replace(' ', "-")), &base, options);
        let (unfiltered, recall, _) = run(&store, &base, &queries, None);
        println!(
            "{label}, {n} vectors, {q} queries: unfiltered {unfiltered:.0} q/s, recall@10 {recall:.3}"
        );
        println!("| selectivity | plan | recall@10 | queries/s | x unfiltered |");
        println!("|---|---|---|---|---|");
        for (below, name) in [
            (1, "0.1%"),
            (10, "1%"),
            (100, "10%"),
            (500, "50%"),
            (900, "90%"),
        ] {
            let (qps, recall, plan) = run(&store, &base, &queries, Some(below));
            println!(
                "| {name} | {plan} | {recall:.3} | {qps:.0} | {:.2} |",
                qps / unfiltered
            );
        }
    }
}
