//! Hybrid search on npm-minilm-20k (docs/benchmarks.md, "Lexical and hybrid search"):
//! known-item success@10 of vector-only, text-only and hybrid queries, their latency, the BM25
//! query rate and the indexing rates with and without chunk texts.
//!
//! ```text
//! cargo run --profile test -p allidb-index --example hybrid_known_item -- [--queries 500] \
//!     [--lexical-only 1] [--ingest-rounds N]
//! ```
//!
//! `--lexical-only 1`: only the lexical index's indexing rate and its BM25 top-10 queries/s on
//! the name queries (no store, no vectors). `--ingest-rounds N`: only the store ingest, N rounds
//! of three (texts with the lexical index on, the same texts with it off, no texts; the order
//! rotating; each in a fresh store, the HNSW build left out), each round's ratios and the
//! medians.
//!
//! Known items: the data set has no query texts and no embedding model runs here, so query i
//! pairs the held-out query vector `query.fvecs[i]` with its exact nearest base row
//! (`groundtruth.ivecs[i][0]`) as the known item, and two texts made from that item: its
//! package name, and the rarest word of its summary (the summary term with the fewest
//! documents, ties by text order, terms of the name left out). The vector arm is thus an
//! upper bound (its target is its exact nearest neighbour; only HNSW misses lose it). One
//! thread, k = 10, no graph expansion, default weights (all entities fresh, importance 0).

#[path = "common/allocator.rs"]
mod allocator;
mod common;
#[path = "common/median.rs"]
mod median;
#[path = "../tests/common/texmex.rs"]
mod texmex;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use allidb_index::graph::TraversalOptions;
use allidb_index::lexical::{LexicalIndex, LexicalOptions, analyzer};
use allidb_index::query::{Fusion, HybridOptions, QueryPlan};
use allidb_index::{QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody, TextChunk};
use allidb_storage::{Durability, EntityWrite};
use common::Flags;
use median::median;
use texmex::read_vecs;

fn id(row: usize) -> String {
    format!("e{row:06}")
}

fn body(vector: &[f32], text: Option<&str>) -> EntityBody {
    EntityBody {
        embeddings: vec![Embedding {
            version: 1,
            vector: vector.to_vec(),
            timestamp_nanos: 0,
        }],
        chunks: text
            .map(|t| {
                vec![TextChunk {
                    chunk_id: "summary".into(),
                    text: t.to_owned(),
                    metadata: Default::default(),
                    sources: Vec::new(),
                }]
            })
            .unwrap_or_default(),
        ..EntityBody::default()
    }
}

/// Opens a store in `dir` (its lexical index on or off) and writes every row (with its text
/// when `texts` is given); returns the store and the entities written per second (writes only;
/// the HNSW build is the caller's).
fn ingest(
    dir: &Path,
    base: &[Vec<f32>],
    texts: Option<&[String]>,
    lexical_on: bool,
) -> (UnifiedStore, f64) {
    let mut options = StoreOptions::default();
    options.lexical.default.enabled = lexical_on;
    let store = UnifiedStore::open(dir, options).expect("the store opens");
    let start = Instant::now();
    for (c, chunk) in base.chunks(1000).enumerate() {
        let writes = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let row = c * 1000 + j;
                EntityWrite {
                    id: id(row),
                    body: body(v, texts.map(|t| t[row].as_str())),
                    out_edges: Vec::new(),
                    in_edges: Vec::new(),
                }
            })
            .collect();
        store
            .put_entities("t", writes, Durability::Buffered)
            .expect("the write succeeds");
    }
    let rate = base.len() as f64 / start.elapsed().as_secs_f64();
    (store, rate)
}

/// What one ingest of a round writes, and whether the lexical index is on.
#[derive(Clone, Copy)]
enum Side {
    /// Texts, lexical index on.
    Indexed,
    /// The same texts, lexical index off (`index.lexical_enabled = false`).
    NotIndexed,
    /// No texts.
    NoTexts,
}

/// `rounds` rounds of three ingests (texts with the lexical index on, texts with it off, no
/// texts), the order rotating round by round; prints each round's rates and ratios and the
/// medians. The issue's goal is the first ratio (index on against off, the same writes).
fn ingest_rounds(base: &[Vec<f32>], texts: &[String], rounds: usize) {
    let sides = [Side::Indexed, Side::NotIndexed, Side::NoTexts];
    let (mut rates, mut on_off, mut on_none) =
        ([(); 3].map(|()| Vec::new()), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut rate = [0.0f64; 3];
        for k in 0..3 {
            let side = sides[(round + k) % 3];
            let dir = tempfile::tempdir().expect("a temp dir");
            let (store, r) = match side {
                Side::Indexed => ingest(dir.path(), base, Some(texts), true),
                Side::NotIndexed => ingest(dir.path(), base, Some(texts), false),
                Side::NoTexts => ingest(dir.path(), base, None, true),
            };
            store.close().expect("the store closes");
            rate[side as usize] = r;
        }
        let [on, off, none] = rate;
        println!(
            "round {round}: texts indexed {on:.0} entities/s, texts not indexed {off:.0}, no \
             texts {none:.0}; indexed/not indexed {:.2}x, indexed/no texts {:.2}x",
            on / off,
            on / none
        );
        for (all, r) in rates.iter_mut().zip(rate) {
            all.push(r);
        }
        on_off.push(on / off);
        on_none.push(on / none);
    }
    let [on, off, none] = rates.map(median);
    println!(
        "median of {rounds} rounds: texts indexed {on:.0} entities/s, not indexed {off:.0}, no \
         texts {none:.0}; median ratios indexed/not indexed {:.2}x, indexed/no texts {:.2}x",
        median(on_off),
        median(on_none)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn plan() -> QueryPlan {
    QueryPlan {
        k: 10,
        traversal: TraversalOptions {
            max_hops: 0,
            ..TraversalOptions::default()
        },
        ..QueryPlan::default()
    }
}

/// Runs one arm over every known item: (success@10, p50, p99, queries/s).
fn arm(
    store: &UnifiedStore,
    items: &[(usize, Vec<f32>, String)],
    vector: bool,
    text: bool,
    hybrid: HybridOptions,
) -> (f64, Duration, Duration, f64) {
    let mut found = 0usize;
    let mut latencies = Vec::with_capacity(items.len());
    let start = Instant::now();
    for (target, query, words) in items {
        let request = QueryRequest {
            vector: if vector { query.clone() } else { Vec::new() },
            text: text.then(|| words.clone()),
            hybrid,
            plan: plan(),
            ..QueryRequest::default()
        };
        let t = Instant::now();
        let hits = store.query("t", &request).expect("the query succeeds");
        latencies.push(t.elapsed());
        let want = id(*target);
        if hits.iter().any(|h| *h.result.entity_id == *want) {
            found += 1;
        }
    }
    let rate = items.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    (
        found as f64 / items.len() as f64,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        rate,
    )
}

fn main() {
    let flags = Flags::from_env();
    let queries_wanted: usize = flags.number("--queries", 500);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k");
    let base = read_vecs(&dir.join("base.fvecs"), f32::from_le_bytes);
    let queries = read_vecs(&dir.join("query.fvecs"), f32::from_le_bytes);
    let truth = read_vecs(&dir.join("groundtruth.ivecs"), i32::from_le_bytes);
    let file = std::fs::File::open(dir.join("texts.jsonl")).expect("texts.jsonl");
    let rows: Vec<(String, String)> = std::io::BufReader::new(file)
        .lines()
        .map(|line| {
            let row: serde_json::Value =
                serde_json::from_str(&line.expect("a line")).expect("a JSON row");
            (
                row["id"].as_str().expect("id").to_owned(),
                row["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect();
    let texts: Vec<String> = rows.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(texts.len(), base.len());

    // Indexing: the lexical index alone, then the store with and without texts.
    let lexical = LexicalIndex::new(LexicalOptions::default()).expect("valid options");
    let start = Instant::now();
    for (row, text) in texts.iter().enumerate() {
        lexical.upsert_body(&id(row), &body(&[], Some(text)), 1);
    }
    let lexical_rate = texts.len() as f64 / start.elapsed().as_secs_f64();
    if flags.number("--lexical-only", 0) == 1 {
        let names: Vec<Vec<String>> = truth
            .iter()
            .take(queries_wanted)
            .map(|row| analyzer::analyze(&rows[usize::try_from(row[0]).expect("a row")].0))
            .collect();
        let start = Instant::now();
        let mut hits = 0usize;
        for _ in 0..5 {
            for terms in &names {
                hits += lexical.search(terms, 10, None, None).len();
            }
        }
        println!(
            "lexical index alone: {lexical_rate:.0} docs/s; BM25 top-10 {:.0} queries/s \
             (analyzed name queries, {hits} hits over 5 rounds)",
            5.0 * names.len() as f64 / start.elapsed().as_secs_f64()
        );
        return;
    }
    let rounds = flags.number("--ingest-rounds", 0);
    if rounds > 0 {
        ingest_rounds(&base, &texts, rounds);
        return;
    }
    // Without texts first, then with them, then without again (the order's effect shows).
    let without_dir = tempfile::tempdir().expect("a temp dir");
    let (without, plain_rate) = ingest(without_dir.path(), &base, None, true);
    drop(without);
    let with_dir = tempfile::tempdir().expect("a temp dir");
    let (store, text_rate) = ingest(with_dir.path(), &base, Some(&texts), true);
    store.index_all_pending();
    let again_dir = tempfile::tempdir().expect("a temp dir");
    let (again, plain_again) = ingest(again_dir.path(), &base, None, true);
    drop(again);
    println!("ingest without texts, after the store with texts: {plain_again:.0} entities/s");
    println!(
        "indexing: lexical index alone {lexical_rate:.0} docs/s; store ingest with texts \
         {text_rate:.0} entities/s, without texts {plain_rate:.0} entities/s ({:.2}x)",
        text_rate / plain_rate
    );

    // Known items.
    let mut df: HashMap<String, usize> = HashMap::new();
    for text in &texts {
        let mut terms = analyzer::analyze(text);
        terms.sort();
        terms.dedup();
        for t in terms {
            *df.entry(t).or_default() += 1;
        }
    }
    let mut by_name = Vec::new();
    let mut by_word = Vec::new();
    for (query, row) in queries.iter().zip(&truth).take(queries_wanted) {
        let target = usize::try_from(row[0]).expect("a row index");
        let (name, text) = &rows[target];
        by_name.push((target, query.clone(), name.clone()));
        let name_terms = analyzer::analyze(name);
        let summary = text.split_once(": ").map_or(text.as_str(), |(_, s)| s);
        let rare = analyzer::analyze(summary)
            .into_iter()
            .filter(|t| !name_terms.contains(t))
            .min_by_key(|t| df.get(t).copied().unwrap_or(usize::MAX));
        if let Some(word) = rare {
            by_word.push((target, query.clone(), word));
        }
    }
    println!(
        "known items: {} by name, {} by a rare summary word",
        by_name.len(),
        by_word.len()
    );
    let rrf = HybridOptions::default();
    let arms: Vec<(&str, bool, bool, HybridOptions)> = vec![
        ("vector only", true, false, rrf),
        ("text only", false, true, rrf),
        ("hybrid RRF (c 60, w 0.5, default)", true, true, rrf),
        (
            "hybrid RRF (c 60, w 0.7)",
            true,
            true,
            HybridOptions {
                lexical_weight: 0.7,
                ..rrf
            },
        ),
        (
            "hybrid DBSF (w 0.5)",
            true,
            true,
            HybridOptions {
                fusion: Fusion::Dbsf,
                lexical_weight: 0.5,
            },
        ),
    ];
    for (label, items) in [("package name", &by_name), ("rare summary word", &by_word)] {
        println!("\ntext = {label}");
        println!("| arm | success@10 | p50 ms | p99 ms | queries/s |");
        println!("|---|---|---|---|---|");
        for (name, vector, text, hybrid) in &arms {
            let (success, p50, p99, rate) = arm(&store, items, *vector, *text, *hybrid);
            println!(
                "| {name} | {success:.3} | {:.3} | {:.3} | {rate:.0} |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    }

    // BM25 alone (no store query path): top-10 queries/s over the name queries.
    let start = Instant::now();
    let mut hits = 0usize;
    for (_, _, name) in &by_name {
        hits += store
            .lexical_search("t", name, 10)
            .expect("a searchable name")
            .len();
    }
    println!(
        "\nBM25 top-10 alone: {:.0} queries/s ({hits} hits)",
        by_name.len() as f64 / start.elapsed().as_secs_f64()
    );
}
