//! Filtered search benchmark on npm-minilm-20k (docs/benchmarks.md, "Filtered search"):
//! queries/s and recall@10 of the store's query at each selectivity (0.1% .. 90%, a numeric
//! range on a synthetic attribute), against the same query unfiltered, with the planner's
//! choice, with the exact scan of the matching set forced (thresholds at their maximum: the
//! "never below an exact scan" reference) and with the filtered HNSW walk forced (thresholds at
//! zero). `bench/filter_vs_hnswlib.py` runs this binary beside hnswlib's filter callback.
//!
//! ```text
//! cargo run --profile test -p allidb-index --example filter_sweep -- [--n 20000] [--queries 200]
//!     [--repeat 3] [--stores planner,exact,walk] [--only 10%] [--distinct 1]
//! ```
//!
//! One thread, `k` = 10, no graph expansion, the vector term only, default `ef` (64).

mod common;
#[path = "common/median.rs"]
mod median;
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
use median::median;
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

/// The filter of query `position`: `bucket < below` (`None`: no filter); with `distinct`, AND
/// an always-true `bucket > -(position + 1)` so that no two queries send the same filter (no
/// memo of an earlier query's filter applies).
fn filter_for(below: Option<i64>, distinct: bool, position: usize) -> Filter {
    let lt = below.map(|b| Expr::Compare {
        op: Cmp::Lt,
        field: Field::Attribute("bucket".to_owned()),
        value: AttributeValue::Int(b),
    });
    let expression = match lt {
        Some(lt) if distinct => Some(Expr::And(vec![
            lt,
            Expr::Compare {
                op: Cmp::Gt,
                field: Field::Attribute("bucket".to_owned()),
                value: AttributeValue::Int(-(position as i64) - 1),
            },
        ])),
        other => other,
    };
    Filter {
        expression,
        ..Filter::default()
    }
}

/// Runs every query once: (queries/s, each query's ids).
fn timed(
    store: &UnifiedStore,
    queries: &[Vec<f32>],
    below: Option<i64>,
    distinct: bool,
) -> (f64, Vec<Vec<String>>) {
    let filters: Vec<Filter> = (0..queries.len())
        .map(|i| filter_for(below, distinct, i))
        .collect();
    let start = Instant::now();
    let answers: Vec<Vec<String>> = queries
        .iter()
        .zip(&filters)
        .map(|(q, filter)| {
            store
                .query("t", &request(q, filter))
                .expect("the query succeeds")
                .into_iter()
                .map(|h| h.result.entity_id.to_string())
                .collect()
        })
        .collect();
    (
        queries.len() as f64 / start.elapsed().as_secs_f64(),
        answers,
    )
}

/// Mean recall@10 of `answers` against the exact filtered top 10.
fn recall(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    below: Option<i64>,
    answers: &[Vec<String>],
) -> f64 {
    let mut recall = 0.0;
    for (q, got) in queries.iter().zip(answers) {
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
    recall / queries.len() as f64
}

/// The plan `explain` names for the first query's filter.
fn plan_of(
    store: &UnifiedStore,
    queries: &[Vec<f32>],
    below: Option<i64>,
    distinct: bool,
) -> String {
    let mut explained = request(&queries[0], &filter_for(below, distinct, 0));
    explained.plan.explain = true;
    store
        .query_with_context("t", &explained, false)
        .expect("the query succeeds")
        .plan
        .map_or_else(|| "unfiltered".to_owned(), |p| p.plan.to_owned())
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
    // Each rate is the median of `--repeat` passes over the queries (the machine is shared).
    let repeat: usize = flags.number("--repeat", 3);
    // `--stores planner,exact,walk` (default: all three) and `--only 10%` (one selectivity).
    let stores = flags
        .value("--stores")
        .unwrap_or("planner,exact,walk")
        .to_owned();
    let only = flags.value("--only").map(str::to_owned);
    // `--distinct 1`: no two queries send the same filter (see `filter_for`).
    let distinct = flags.number("--distinct", 0u8) == 1;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    for (label, options) in [
        ("planner", VectorIndexOptions::default()),
        (
            "exact forced",
            VectorIndexOptions {
                exact_scan_max_allowed: usize::MAX,
                exact_scan_max_fraction: 1.0,
                ..VectorIndexOptions::default()
            },
        ),
        (
            "filtered HNSW forced",
            VectorIndexOptions {
                exact_scan_max_allowed: 0,
                exact_scan_max_fraction: 0.0,
                ..VectorIndexOptions::default()
            },
        ),
    ] {
        let short = label.split(' ').next().unwrap_or(label);
        let short = if short == "filtered" { "walk" } else { short };
        if !stores.split(',').any(|s| s == short) {
            continue;
        }
        let store = open(&tmp.path().join(label.replace(' ', "-")), &base, options);
        let (_, answers) = timed(&store, &queries, None, false);
        let unfiltered_recall = recall(&base, &queries, None, &answers);
        println!(
            "{label}, {n} vectors, {q} queries, {repeat} passes, distinct filters: {distinct}"
        );
        println!("| selectivity | plan | recall@10 | queries/s | x unfiltered |");
        println!("|---|---|---|---|---|");
        let mut rows = Vec::new();
        let mut unfiltered_rates = Vec::new();
        for (below, name) in [
            (1, "0.1%"),
            (10, "1%"),
            (100, "10%"),
            (500, "50%"),
            (900, "90%"),
        ] {
            if only.as_ref().is_some_and(|o| o != name) {
                continue;
            }
            // Each pass times the unfiltered queries and then the filtered ones, back to back:
            // the ratio is the median of the passes' ratios (load drifts between passes).
            let mut rates = Vec::new();
            let mut ratios = Vec::new();
            let mut first_answers = None;
            for _ in 0..repeat.max(1) {
                let (unfiltered, _) = timed(&store, &queries, None, false);
                let (rate, answers) = timed(&store, &queries, Some(below), distinct);
                unfiltered_rates.push(unfiltered);
                rates.push(rate);
                ratios.push(rate / unfiltered);
                first_answers.get_or_insert(answers);
            }
            let recall = recall(
                &base,
                &queries,
                Some(below),
                &first_answers.unwrap_or_default(),
            );
            let plan = plan_of(&store, &queries, Some(below), distinct);
            rows.push(format!(
                "| {name} | {plan} | {recall:.3} | {:.0} | {:.2} |",
                median(rates),
                median(ratios)
            ));
        }
        if unfiltered_rates.is_empty() {
            unfiltered_rates.push(timed(&store, &queries, None, false).0);
        }
        println!(
            "| none | unfiltered | {unfiltered_recall:.3} | {:.0} | 1.00 |",
            median(unfiltered_rates)
        );
        for row in rows {
            println!("{row}");
        }
    }
}
