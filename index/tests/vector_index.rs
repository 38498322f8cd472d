//! Behaviour of [`VectorIndex`] against a brute-force model: updates, deletes, filters, the
//! freshness tail, rebuilds (concurrent with queries), dumps, and validation errors.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use allidb_index::Error;
use allidb_index::vector::{
    EngineParams, Metric, Rebuild, VectorHit, VectorIndex, VectorIndexOptions,
};
use common::*;

/// The model: entity -> client vector.
type Model = BTreeMap<String, Vec<f32>>;

fn expected(
    metric: Metric,
    model: &Model,
    query: &[f32],
    k: usize,
    allow: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let q = metric.prepare(query).unwrap();
    let mut scored: Vec<(f32, &String)> = model
        .iter()
        .filter(|(id, _)| allow(id))
        .map(|(id, v)| (metric.similarity(&q, &metric.prepare(v).unwrap()), id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

fn ids(hits: &[VectorHit]) -> Vec<String> {
    hits.iter().map(|h| h.entity_id.to_string()).collect()
}

fn options(metric: Metric) -> VectorIndexOptions {
    VectorIndexOptions {
        metric,
        ef_search: 400,
        ..VectorIndexOptions::default()
    }
}

/// Checks 20 queries (with and without a filter) against the model.
fn check(index: &VectorIndex, metric: Metric, model: &Model, queries: &[Vec<f32>]) {
    let odd = |id: &str| id.ends_with(['1', '3', '5', '7', '9']);
    for q in queries {
        let got = index.search(q, 10, None, None, None).unwrap();
        assert_eq!(ids(&got), expected(metric, model, q, 10, &|_| true));
        let filtered = index
            .search(q, 10, None, Some(&odd), Some(model.len() / 2))
            .unwrap();
        assert_eq!(ids(&filtered), expected(metric, model, q, 10, &odd));
        let rare = |id: &str| id.ends_with("77");
        let exact = index
            .search(q, 10, None, Some(&rare), Some(model.len() / 100))
            .unwrap();
        assert_eq!(ids(&exact), expected(metric, model, q, 10, &rare));
        let unhinted = index.search(q, 10, None, Some(&rare), None).unwrap();
        let truth = expected(metric, model, q, 10, &rare);
        if metric == Metric::Dot {
            // Inner product is not a metric: HNSW over-fetch is approximate there.
            let found = truth
                .iter()
                .filter(|id| ids(&unhinted).contains(id))
                .count();
            assert!(found >= 8, "Dot over-fetch found {found}/10");
        } else {
            assert_eq!(ids(&unhinted), truth, "{metric:?}");
        }
    }
}

#[test]
fn updates_deletes_filters_and_tail_match_brute_force() {
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let data = clustered(3_000, 24, 12, 7, 1);
        let queries = clustered(20, 24, 12, 7, 2);
        let index = VectorIndex::new(options(metric)).unwrap();
        let mut model = Model::new();
        let mut seq = 0;
        for (i, v) in data.iter().take(2_000).enumerate() {
            seq += 1;
            index.upsert(&id(i), v, seq).unwrap();
            model.insert(id(i), v.clone());
        }
        // all of it still in the tail: exact answers
        assert_eq!(index.pending_len(), 2_000);
        check(&index, metric, &model, &queries);
        index.index_pending(1_500);
        assert_eq!(index.pending_len(), 500);
        check(&index, metric, &model, &queries);
        index.index_pending(usize::MAX);
        // updates (vector of row i+2000) and deletes, some in the engine, some in the tail
        for i in (0..2_000).step_by(3) {
            seq += 1;
            let v = &data[2_000 + i / 2];
            index.upsert(&id(i), v, seq).unwrap();
            model.insert(id(i), v.clone());
        }
        for i in (1..2_000).step_by(7) {
            seq += 1;
            assert!(index.delete(&id(i), seq));
            model.remove(&id(i));
        }
        assert!(!index.delete("never-written", seq));
        assert!(index.stale_ratio() > 0.3, "{}", index.stale_ratio());
        assert_eq!(index.len(), model.len());
        check(&index, metric, &model, &queries);
        index.index_pending(usize::MAX);
        check(&index, metric, &model, &queries);
        assert_eq!(index.rebuild(&|| false).unwrap(), Rebuild::Swapped);
        assert_eq!(index.stale_ratio(), 0.0);
        check(&index, metric, &model, &queries);
        assert_eq!(index.applied_seq(), seq);
        // an older write of a live entity is ignored (idempotent replay)
        index.upsert(&id(0), &data[1], 1).unwrap();
        check(&index, metric, &model, &queries);
    }
}

#[test]
fn similarities_and_search_among_use_live_vectors() {
    let index = VectorIndex::new(VectorIndexOptions::default()).unwrap();
    index.upsert("a", &[1.0, 0.0], 1).unwrap();
    index.upsert("b", &[0.0, 1.0], 2).unwrap();
    index.upsert("a", &[0.0, 3.0], 3).unwrap();
    let s = index.similarities(&[0.0, 1.0], &["a", "b", "zz"]).unwrap();
    assert!((s[0].unwrap() - 1.0).abs() < 1e-6 && (s[1].unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(s[2], None);
    let among = index.search_among(&[1.0, 0.0], 5, &["b", "zz"]).unwrap();
    assert_eq!(ids(&among), ["b"]);
    let tie = index.search(&[0.0, 1.0], 2, None, None, None).unwrap();
    assert_eq!(ids(&tie), ["a", "b"], "equal similarity: ties by entity id");
}

#[test]
fn validation_errors_are_clear() {
    let index = VectorIndex::new(VectorIndexOptions::default()).unwrap();
    assert!(
        index
            .search(&[1.0, 2.0], 3, None, None, None)
            .unwrap()
            .is_empty()
    );
    index.upsert("a", &[1.0, 2.0, 3.0], 1).unwrap();
    match index.upsert("b", &[1.0, 2.0], 2) {
        Err(Error::DimensionMismatch {
            expected: 3,
            got: 2,
        }) => {}
        other => panic!("expected a dimension mismatch, got {other:?}"),
    }
    let message = index
        .search(&[1.0], 3, None, None, None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("expected 3, got 1"), "{message}");
    assert!(index.upsert("c", &[f32::NAN, 0.0, 0.0], 3).is_err());
    assert!(index.upsert("c", &[f32::INFINITY, 0.0, 0.0], 3).is_err());
    assert!(
        index.upsert("c", &[0.0, 0.0, 0.0], 3).is_err(),
        "zero vector under cosine"
    );
    assert!(
        index
            .search(&[1.0, 1.0, 1.0], 3, Some(0), None, None)
            .is_err()
    );
    let fixed = VectorIndex::new(VectorIndexOptions {
        dimension: Some(4),
        ..VectorIndexOptions::default()
    })
    .unwrap();
    assert!(matches!(
        fixed.upsert("a", &[1.0], 1),
        Err(Error::DimensionMismatch {
            expected: 4,
            got: 1
        })
    ));
    for m in [0, 1, 257, 1_000] {
        let bad = VectorIndexOptions {
            engine: EngineParams {
                max_connections: m,
                ..EngineParams::default()
            },
            ..VectorIndexOptions::default()
        };
        let message = VectorIndex::new(bad).unwrap_err().to_string();
        assert!(
            message.contains("M (max_connections) must be in 2..=256"),
            "{message}"
        );
    }
    let bad_ef = VectorIndexOptions {
        ef_search: 0,
        ..VectorIndexOptions::default()
    };
    assert!(
        VectorIndex::new(bad_ef)
            .unwrap_err()
            .to_string()
            .contains("ef_search")
    );
}

#[test]
fn tail_bound_is_reported() {
    let index = VectorIndex::new(VectorIndexOptions {
        max_pending: 3,
        ..VectorIndexOptions::default()
    })
    .unwrap();
    for i in 0..3 {
        assert!(!index.tail_is_full());
        index
            .upsert(&id(i), &[1.0, i as f32], i as u64 + 1)
            .unwrap();
    }
    assert!(index.tail_is_full());
    assert_eq!(index.index_pending(2), 2);
    assert!(!index.tail_is_full());
}

#[test]
fn dump_and_load_keep_results_and_next_ids() {
    let data = clustered(1_500, 16, 8, 3, 1);
    let queries = clustered(10, 16, 8, 3, 2);
    let index = VectorIndex::new(options(Metric::Cosine)).unwrap();
    let mut model = Model::new();
    for (i, v) in data.iter().take(1_000).enumerate() {
        index.upsert(&id(i), v, i as u64 + 1).unwrap();
        model.insert(id(i), v.clone());
    }
    index.index_pending(usize::MAX);
    for i in 0..100 {
        index.delete(&id(i), 2_000 + i as u64);
        model.remove(&id(i));
    }
    index.upsert(&id(5_000), &data[1_200], 3_000).unwrap(); // left in the tail
    model.insert(id(5_000), data[1_200].clone());
    let dir = tempfile::tempdir().unwrap();
    index.dump(dir.path()).unwrap();
    let loaded = VectorIndex::load(dir.path(), options(Metric::Cosine)).unwrap();
    assert_eq!(loaded.applied_seq(), 3_000);
    assert_eq!(loaded.len(), model.len());
    check(&loaded, Metric::Cosine, &model, &queries);
    // new ids must not collide with stale ids still inside the reloaded engine
    loaded.upsert(&id(9_999), &data[1_300], 3_001).unwrap();
    loaded.index_pending(usize::MAX);
    model.insert(id(9_999), data[1_300].clone());
    check(&loaded, Metric::Cosine, &model, &queries);
    // the engine's dump holds the only copy of the indexed vectors: damaged, it is an error
    // (the store then rebuilds from storage), never a partial index
    let engine_file = dir.path().join("engine/flat_hnsw.bin");
    let intact = std::fs::read(&engine_file).unwrap();
    let mut damaged = intact.clone();
    damaged[100] ^= 1;
    std::fs::write(&engine_file, damaged).unwrap();
    assert!(matches!(
        VectorIndex::load(dir.path(), options(Metric::Cosine)),
        Err(Error::Corruption { .. })
    ));
    std::fs::write(&engine_file, intact).unwrap();
    assert_eq!(
        VectorIndex::load(dir.path(), options(Metric::Cosine))
            .unwrap()
            .len(),
        model.len() - 1
    );
    // a damaged slots file is an error
    let slots = dir.path().join("slots.bin");
    let mut bytes = std::fs::read(&slots).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&slots, bytes).unwrap();
    assert!(matches!(
        VectorIndex::load(dir.path(), options(Metric::Cosine)),
        Err(Error::Corruption { .. })
    ));
    assert!(VectorIndex::load(dir.path(), options(Metric::L2)).is_err());
}

#[test]
fn a_cancelled_rebuild_keeps_the_old_engine() {
    let data = clustered(3_000, 16, 8, 9, 4);
    let queries: Vec<Vec<f32>> = data.iter().step_by(97).cloned().collect();
    let index = VectorIndex::new(options(Metric::L2)).unwrap();
    let mut model = Model::new();
    for (i, v) in data.iter().take(2_000).enumerate() {
        index.upsert(&id(i), v, i as u64 + 1).unwrap();
        model.insert(id(i), v.clone());
    }
    index.index_pending(usize::MAX);
    for i in 0..800 {
        assert!(index.delete(&id(i), 10_000 + i as u64));
        model.remove(&id(i));
    }
    let stale = index.stale_ratio();
    assert!(stale > 0.2, "{stale}");

    // Cancelled on the third check: two batches went into the new engine, which is dropped.
    let checks = std::cell::Cell::new(0);
    let outcome = index
        .rebuild(&|| {
            checks.set(checks.get() + 1);
            checks.get() > 2
        })
        .unwrap();
    assert_eq!(outcome, Rebuild::Cancelled);
    assert_eq!(checks.get(), 3);
    assert_eq!(
        index.stale_ratio(),
        stale,
        "the old engine, stale points included"
    );
    check(&index, Metric::L2, &model, &queries);

    assert_eq!(index.rebuild(&|| false).unwrap(), Rebuild::Swapped);
    assert_eq!(index.stale_ratio(), 0.0);
    check(&index, Metric::L2, &model, &queries);
}

#[test]
fn rebuild_runs_while_queries_and_writes_continue() {
    let data = clustered(4_000, 16, 8, 9, 1);
    let index = Arc::new(VectorIndex::new(options(Metric::L2)).unwrap());
    for (i, v) in data.iter().take(3_000).enumerate() {
        index.upsert(&id(i), v, i as u64 + 1).unwrap();
    }
    index.index_pending(usize::MAX);
    for i in 0..1_000 {
        index.delete(&id(i), 10_000 + i as u64);
    }
    let builder = {
        let index = index.clone();
        std::thread::spawn(move || index.rebuild(&|| false))
    };
    let mut model = Model::new();
    for (i, v) in data.iter().enumerate().take(3_000).skip(1_000) {
        model.insert(id(i), v.clone());
    }
    // writes and queries during the build
    for (i, v) in data.iter().enumerate().skip(3_000) {
        index.upsert(&id(i), v, 20_000 + i as u64).unwrap();
        model.insert(id(i), v.clone());
        if i % 100 == 0 {
            let q = &data[i - 2_500];
            let got = index.search(q, 5, None, None, None).unwrap();
            assert_eq!(ids(&got), expected(Metric::L2, &model, q, 5, &|_| true));
        }
    }
    builder.join().unwrap().unwrap();
    index.index_pending(usize::MAX);
    assert_eq!(index.len(), 3_000);
    assert_eq!(index.pending_len(), 0);
    let q = &data[2_222];
    let got = index.search(q, 10, None, None, None).unwrap();
    assert_eq!(ids(&got), expected(Metric::L2, &model, q, 10, &|_| true));
}

/// Regression: fewer indexed points than `k` (most writes still in the tail) must not panic.
#[test]
fn search_with_fewer_indexed_points_than_k() {
    let index = allidb_index::vector::VectorIndex::new(Default::default()).unwrap();
    for i in 0..3u64 {
        index
            .upsert(&format!("e{i}"), &[1.0, i as f32], i + 1)
            .unwrap();
    }
    index.index_pending(2);
    for i in 3..30u64 {
        index
            .upsert(&format!("e{i}"), &[1.0, i as f32], i + 1)
            .unwrap();
    }
    let hits = index.search(&[1.0, 0.0], 20, None, None, None).unwrap();
    assert_eq!(hits.len(), 20);
}
