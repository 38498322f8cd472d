//! The lexical index through the store and on the real corpus: BM25 scores on
//! `npm-minilm-20k/texts.jsonl` against a naive reference, restart from a dump + WAL catch-up,
//! a `kill -9` during ingest (the index then equals a rebuild from storage), and a restart with
//! a tenant's analyzer changed (its index then equals a rebuild with the new analyzer).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use allidb_index::lexical::analyzer::{Analyzer, Stemming, StopWords};
use allidb_index::lexical::{LexicalIndex, LexicalOptions, analyzer};
use allidb_index::store::IndexRecovery;
use allidb_index::{StoreOptions, UnifiedStore};
use allidb_storage::cell::{EntityBody, TextChunk};
use allidb_storage::{Durability, EntityWrite};

const CHILD_VAR: &str = "ALLIDB_LEXICAL_CHILD";

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k/texts.jsonl")
}

/// `(id, text)` of the corpus rows.
fn corpus() -> Vec<(String, String)> {
    let file =
        std::fs::File::open(corpus_path()).expect("../shared/data/npm-minilm-20k/texts.jsonl");
    BufReader::new(file)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            (
                row["id"].as_str().unwrap().to_owned(),
                row["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn text_body(text: &str) -> EntityBody {
    EntityBody {
        chunks: vec![TextChunk {
            chunk_id: "c0".into(),
            text: text.to_owned(),
            metadata: BTreeMap::new(),
            sources: Vec::new(),
        }],
        ..EntityBody::default()
    }
}

/// Lucene BM25 (k1 1.2, b 0.75) of the documents holding a query term, recomputed naively.
fn reference(docs: &[Vec<String>], query: &[String]) -> Vec<(usize, f64)> {
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|d| d.len() as f64).sum::<f64>() / n;
    let mut distinct: Vec<&String> = Vec::new();
    for q in query {
        if !distinct.contains(&q) {
            distinct.push(q);
        }
    }
    let df: Vec<f64> = distinct
        .iter()
        .map(|q| docs.iter().filter(|d| d.contains(q)).count() as f64)
        .collect();
    let mut scores = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let mut score = 0.0;
        let mut matched = false;
        for (q, df) in distinct.iter().zip(&df) {
            let tf = d.iter().filter(|t| t == q).count() as f64;
            if tf > 0.0 {
                matched = true;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                score += idf * tf / (tf + 1.2 * (0.25 + 0.75 * d.len() as f64 / avgdl));
            }
        }
        if matched {
            scores.push((i, score));
        }
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

#[test]
fn bm25_on_the_npm_corpus_matches_the_reference() {
    let rows = corpus();
    let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
    let mut docs = Vec::with_capacity(rows.len());
    for (i, (id, text)) in rows.iter().enumerate() {
        index.upsert_body(id, &text_body(text), i as u64);
        docs.push(analyzer::analyze(text));
    }
    assert_eq!(index.len(), rows.len());
    // Queries: package names (identifiers), words of summaries, and mixes, every 199th row.
    let mut checked = 0;
    for (i, (id, text)) in rows.iter().enumerate().step_by(199) {
        let summary_words: Vec<&str> = text.split_whitespace().skip(1).take(3).collect();
        for query in [
            id.clone(),
            summary_words.join(" "),
            format!("{id} {}", summary_words.join(" ")),
        ] {
            let q = analyzer::analyze(&query);
            if q.is_empty() {
                continue;
            }
            let want = reference(&docs, &q);
            let got = index.search(&q, 10, None, None);
            assert_eq!(got.len(), want.len().min(10), "query {query:?}");
            for (hit, (row, score)) in got.iter().zip(&want) {
                assert!(
                    (hit.score - score).abs() < 1e-4,
                    "query {query:?}: {} {} vs {} {score}",
                    hit.entity_id,
                    hit.score,
                    rows[*row].0
                );
            }
            checked += 1;
        }
        let _ = i;
    }
    assert!(checked > 250, "{checked} queries checked");
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: allidb_storage::Options {
            memtable_bytes: 64 << 10,
            ..Default::default()
        },
        dump_interval: Duration::from_millis(150),
        ..StoreOptions::default()
    }
}

/// Batch `b` of the ingest: 20 entities with texts, some rewriting or deleting earlier ones.
fn write_batch(store: &UnifiedStore, rows: &[(String, String)], b: usize) {
    let writes: Vec<EntityWrite> = (0..20)
        .map(|i| {
            let (id, _) = &rows[(b * 20 + i) % 600];
            let (_, text) = &rows[(b * 7 + i * 13) % rows.len()];
            EntityWrite {
                id: id.clone(),
                body: text_body(text),
                out_edges: vec![],
                in_edges: vec![],
            }
        })
        .collect();
    store.put_entities("t", writes, Durability::Sync).unwrap();
    if b.is_multiple_of(3) {
        let (id, _) = &rows[(b * 11) % 600];
        store.delete_entity("t", id, Durability::Sync).unwrap();
    }
}

/// The child process: ingests batches until killed (index dumps at batch 20 and then every
/// 150 ms), printing each acknowledged one.
#[test]
#[ignore = "the child process of the kill -9 test below, which runs it itself (cargo test -p allidb-index --test lexical)"]
fn child() {
    let Ok(dir) = std::env::var(CHILD_VAR) else {
        return;
    };
    let rows = corpus();
    let store = UnifiedStore::open(&dir, options()).unwrap();
    for b in 0.. {
        write_batch(&store, &rows, b);
        if b == 20 {
            // A dump mid-ingest: the restart loads it and catches up from the WAL.
            store.dump_indexes().unwrap();
        }
        println!("ALLIDB acked {b}");
    }
}

fn run_child_and_kill(dir: &Path, kill_after: usize) {
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_VAR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ALLIDB acked ")
            && n.parse::<usize>().unwrap() >= kill_after
        {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn after_a_kill_during_ingest_the_lexical_index_equals_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let rows = corpus();
    for (round, kill_after) in [40, 90].into_iter().enumerate() {
        run_child_and_kill(dir.path(), kill_after);
        let store = UnifiedStore::open(dir.path(), options()).unwrap();
        assert!(
            matches!(store.recovery(), Some(IndexRecovery::CaughtUp { entities, .. }) if entities > 0),
            "round {round}: {:?}",
            store.recovery()
        );
        let caught_up = store.lexical_documents("t");
        let stored = store.scan("t", None, None, usize::MAX).unwrap();
        assert_eq!(caught_up.len(), stored.len());
        let probe = store.lexical_search("t", &rows[3].0, 10).unwrap();
        store.close().unwrap();
        drop(store);
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        let store = UnifiedStore::open(dir.path(), options()).unwrap();
        assert!(matches!(
            store.recovery(),
            Some(IndexRecovery::Rebuilt { .. })
        ));
        assert_eq!(store.lexical_documents("t"), caught_up, "round {round}");
        assert_eq!(store.lexical_search("t", &rows[3].0, 10).unwrap(), probe);
        store.close().unwrap();
    }
}

#[test]
fn a_restart_from_the_dump_answers_as_before_and_a_damaged_lexical_file_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let rows = corpus();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    for b in 0..10 {
        write_batch(&store, &rows, b);
    }
    let before = store.lexical_documents("t");
    let answer = store.lexical_search("t", "react hooks", 10).unwrap();
    store.close().unwrap();
    drop(store);
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.recovery(),
        Some(IndexRecovery::CaughtUp { entities: 0, .. })
    ));
    assert_eq!(store.lexical_documents("t"), before);
    assert_eq!(
        store.lexical_search("t", "react hooks", 10).unwrap(),
        answer
    );
    store.close().unwrap();
    drop(store);
    let current = std::fs::read_to_string(dir.path().join("index/CURRENT")).unwrap();
    let lexical = dir
        .path()
        .join("index")
        .join(current.trim())
        .join("t-74/lexical");
    let mut bytes = std::fs::read(&lexical).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&lexical, bytes).unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.recovery(),
        Some(IndexRecovery::Rebuilt { .. })
    ));
    assert_eq!(store.lexical_documents("t"), before);
    assert!(store.lexical_search("t", " ,. ", 10).is_err());
}

/// Store options where tenant `t` has `lexical` as its lexical options.
fn options_of_t(lexical: LexicalOptions) -> StoreOptions {
    let mut options = StoreOptions::default();
    options.lexical.tenants.insert("t".to_owned(), lexical);
    options
}

/// Store options where tenant `t` analyzes with English stemming and stop words.
fn stemmed_options() -> StoreOptions {
    options_of_t(LexicalOptions {
        analyzer: Analyzer {
            stemming: Stemming::English,
            stop_words: StopWords::English,
        },
        ..LexicalOptions::default()
    })
}

#[test]
fn a_restart_with_another_analyzer_analyzes_the_tenant_again_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let rows = corpus();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    for b in 0..10 {
        write_batch(&store, &rows, b);
    }
    let plain = store.lexical_documents("t");
    assert!(
        plain
            .iter()
            .any(|(_, d)| d.terms().any(|(t, _)| t == "the"))
    );
    store.close().unwrap();
    drop(store);
    // The dump holds documents of the default analyzer: tenant t's are analyzed again, and
    // equal what a rebuild with stemming gives.
    for round in 0..2 {
        let store = UnifiedStore::open(dir.path(), stemmed_options()).unwrap();
        assert!(
            matches!(store.recovery(), Some(IndexRecovery::CaughtUp { .. })),
            "round {round}: the dump is loaded: {:?}",
            store.recovery()
        );
        let stemmed = store.lexical_documents("t");
        assert_eq!(stemmed.len(), plain.len());
        assert!(
            !stemmed
                .iter()
                .any(|(_, d)| d.terms().any(|(t, _)| t == "the")),
            "round {round}: no stop word left"
        );
        store.close().unwrap();
        drop(store);
        let index = dir.path().join("index");
        let dumped = dir.path().join("index-dumped");
        std::fs::rename(&index, &dumped).unwrap();
        let rebuilt = UnifiedStore::open(dir.path(), stemmed_options()).unwrap();
        assert!(matches!(
            rebuilt.recovery(),
            Some(IndexRecovery::Rebuilt { .. })
        ));
        assert_eq!(rebuilt.lexical_documents("t"), stemmed, "round {round}");
        rebuilt.close().unwrap();
        drop(rebuilt);
        std::fs::remove_dir_all(&index).unwrap();
        std::fs::rename(&dumped, &index).unwrap();
    }
    // And back to the default analyzer.
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.recovery(),
        Some(IndexRecovery::CaughtUp { .. })
    ));
    assert_eq!(store.lexical_documents("t"), plain);
    store.close().unwrap();
}

/// Store options where tenant `t` has no lexical index.
fn lexical_off_options() -> StoreOptions {
    options_of_t(LexicalOptions {
        enabled: false,
        ..LexicalOptions::default()
    })
}

#[test]
fn a_tenant_with_its_lexical_index_off_holds_none_and_gets_it_back_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let rows = corpus();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    for b in 0..5 {
        write_batch(&store, &rows, b);
    }
    assert!(!store.lexical_documents("t").is_empty());
    store.close().unwrap();
    drop(store);
    // Off: the dump's documents are not loaded, writes are not analyzed, text is refused.
    let store = UnifiedStore::open(dir.path(), lexical_off_options()).unwrap();
    assert!(matches!(
        store.recovery(),
        Some(IndexRecovery::CaughtUp { .. })
    ));
    for b in 5..10 {
        write_batch(&store, &rows, b);
    }
    assert!(store.lexical_documents("t").is_empty());
    assert!(matches!(
        store.lexical_search("t", "react", 10),
        Err(allidb_index::Error::FailedPrecondition(_))
    ));
    store.close().unwrap();
    drop(store);
    // On again: the dump made while off is not trusted; the index equals a rebuild, the
    // entities written while it was off included.
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.recovery(),
        Some(IndexRecovery::CaughtUp { .. })
    ));
    let reanalyzed = store.lexical_documents("t");
    store.close().unwrap();
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let rebuilt = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        rebuilt.recovery(),
        Some(IndexRecovery::Rebuilt { .. })
    ));
    let expected = rebuilt.lexical_documents("t");
    assert_eq!(reanalyzed, expected);
    let (_, doc) = expected.first().expect("documents");
    let (term, _) = doc.terms().next().expect("a document has terms");
    assert!(!rebuilt.lexical_search("t", term, 10).unwrap().is_empty());
    rebuilt.close().unwrap();
}

fn entity(id: &str, kind: &str, text: &str, vector: [f32; 3], edges: &[&str]) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: kind.to_owned(),
            embeddings: vec![allidb_storage::cell::Embedding {
                version: 1,
                vector: vector.to_vec(),
                timestamp_nanos: 0,
            }],
            ..text_body(text)
        },
        out_edges: edges
            .iter()
            .map(|to| allidb_storage::EdgeWrite {
                relation: "uses".into(),
                other: (*to).into(),
                weight: 1.0,
                timestamp_nanos: 0,
                sources: Vec::new(),
            })
            .collect(),
        in_edges: vec![],
    }
}

fn hybrid_store(dir: &Path) -> UnifiedStore {
    let store = UnifiedStore::open(dir, StoreOptions::default()).unwrap();
    let writes = vec![
        entity(
            "left-pad",
            "pkg",
            "left-pad: String left pad",
            [1.0, 0.0, 0.0],
            &["core"],
        ),
        entity(
            "pad-right",
            "pkg",
            "pad-right: pad a string on the right",
            [0.0, 1.0, 0.0],
            &[],
        ),
        entity(
            "lodash",
            "pkg",
            "lodash: modular utilities",
            [0.0, 0.0, 1.0],
            &[],
        ),
        entity("core", "lib", "core: no match here", [0.5, 0.5, 0.0], &[]),
        entity(
            "doc",
            "doc",
            "a document about left-pad",
            [0.0, 0.6, 0.8],
            &[],
        ),
    ];
    store.put_entities("t", writes, Durability::Sync).unwrap();
    store
}

fn text_request(text: &str, vector: Vec<f32>, hops: usize) -> allidb_index::QueryRequest {
    allidb_index::QueryRequest {
        vector,
        text: Some(text.to_owned()),
        plan: allidb_index::query::QueryPlan {
            k: 10,
            traversal: allidb_index::graph::TraversalOptions {
                max_hops: hops,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ids(hits: &[allidb_index::QueryHit]) -> Vec<&str> {
    hits.iter().map(|h| &*h.result.entity_id).collect()
}

#[test]
fn text_queries_seed_the_graph_rag_pipeline_and_explain_their_terms() {
    let dir = tempfile::tempdir().unwrap();
    let store = hybrid_store(dir.path());
    // Text only, no expansion: only the entities holding a term, BM25 order.
    let hits = store
        .query("t", &text_request("left-pad", vec![], 0))
        .unwrap();
    assert_eq!(ids(&hits), ["left-pad", "doc", "pad-right"]);
    let top = &hits[0].result;
    assert_eq!((top.breakdown.vector, top.breakdown.lexical), (0.0, 1.0));
    assert!((top.score - 1.5).abs() < 1e-6, "{}", top.score);
    let lexical = top.lexical.as_ref().unwrap();
    let terms: Vec<&str> = lexical.matched.iter().map(|(t, _)| &**t).collect();
    assert_eq!(terms, ["left-pad", "left", "pad"]);
    assert_eq!(
        store.lexical_search("t", "left-pad", 10).unwrap()[0].score,
        lexical.score
    );
    // One hop: `core` (no term) is reached from the seed `left-pad` and ranked by its path.
    let hits = store
        .query("t", &text_request("left-pad", vec![], 1))
        .unwrap();
    let core = hits
        .iter()
        .find(|h| &*h.result.entity_id == "core")
        .unwrap();
    assert_eq!(core.result.depth, 1);
    assert!(core.result.lexical.is_none() && core.result.breakdown.lexical == 0.0);
    // Filters apply to the lexical candidates.
    let mut filtered = text_request("left-pad", vec![], 0);
    filtered.filter.entity_types = vec!["doc".into()];
    assert_eq!(ids(&store.query("t", &filtered).unwrap()), ["doc"]);
    // Hybrid: the vector's nearest (lodash) and the text's best (left-pad) are both seeds;
    // an entity first in both lists scores as an identical vector-only seed would (1.5).
    let hybrid = store
        .query("t", &text_request("left-pad", vec![0.0, 0.0, 1.0], 0))
        .unwrap();
    let found = ids(&hybrid);
    assert!(
        found.contains(&"lodash") && found.contains(&"left-pad"),
        "{found:?}"
    );
    let both = store
        .query("t", &text_request("left-pad", vec![1.0, 0.0, 0.0], 0))
        .unwrap();
    assert_eq!(&*both[0].result.entity_id, "left-pad");
    assert!((both[0].result.score - 1.5).abs() < 1e-6);
    let b = &both[0].result.breakdown;
    assert!((b.vector - 0.5).abs() < 1e-12 && (b.lexical - 0.5).abs() < 1e-12);
    // Bad text.
    assert!(store.query("t", &text_request("  ?! ", vec![], 0)).is_err());
    // Without the text the same vector query is the vector-only one, unchanged.
    let mut plain = text_request("x", vec![1.0, 0.0, 0.0], 0);
    plain.text = None;
    let plain = store.query("t", &plain).unwrap();
    assert_eq!(plain[0].result.breakdown.lexical, 0.0);
    assert!(plain[0].result.lexical.is_none());
}
