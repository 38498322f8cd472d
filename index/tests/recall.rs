//! Recall@10 of the vector index at its DEFAULT options against exact answers: synthetic
//! Gaussian clusters (128-d and 384-d, 20,000 vectors) and the real npm-minilm-20k set.

mod common;

use std::path::Path;

use allidb_index::vector::{Metric, VectorIndex, VectorIndexOptions};
use common::*;

const K: usize = 10;

fn build(base: &[Vec<f32>], metric: Metric) -> VectorIndex {
    let index = VectorIndex::new(VectorIndexOptions {
        metric,
        ..VectorIndexOptions::default()
    })
    .unwrap();
    for (i, v) in base.iter().enumerate() {
        index.upsert(&id(i), v, i as u64 + 1).unwrap();
    }
    assert_eq!(index.index_pending(usize::MAX), base.len());
    assert_eq!(index.pending_len(), 0);
    index
}

fn mean_recall(index: &VectorIndex, queries: &[Vec<f32>], truth: &[Vec<usize>]) -> f64 {
    let total: f64 = queries
        .iter()
        .zip(truth)
        .map(|(q, t)| {
            let hits = index.search(q, K, None, None, None).unwrap();
            let t: Vec<String> = t.iter().take(K).map(|i| id(*i)).collect();
            recall(&hits, &t)
        })
        .sum();
    total / queries.len() as f64
}

fn synthetic(dim: usize, metric: Metric) {
    let base = clustered(20_000, dim, 64, dim as u64, 1);
    let queries = clustered(200, dim, 64, dim as u64, 2);
    let prepared: Vec<Vec<f32>> = base.iter().map(|v| metric.prepare(v).unwrap()).collect();
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| brute_force(metric, &prepared, q, K))
        .collect();
    let index = build(&base, metric);
    let r = mean_recall(&index, &queries, &truth);
    eprintln!("synthetic {dim}-d {metric:?}: recall@10 = {r:.4}");
    assert!(
        r >= 0.95,
        "recall@10 {r} below 0.95 at default ef for {dim}-d {metric:?}"
    );
}

#[test]
fn recall_synthetic_128d_cosine() {
    synthetic(128, Metric::Cosine);
}

#[test]
fn recall_synthetic_384d_l2() {
    synthetic(384, Metric::L2);
}

#[test]
fn recall_npm_minilm_20k() {
    let dir = std::env::var_os("ALLIDB_NPM_MINILM_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k"),
        std::path::PathBuf::from,
    );
    if !dir.join("base.fvecs").exists() {
        eprintln!("npm-minilm-20k not found at {}; skipped", dir.display());
        return;
    }
    let base = read_vecs(&dir.join("base.fvecs"), f32::from_le_bytes);
    let queries = read_vecs(&dir.join("query.fvecs"), f32::from_le_bytes);
    let truth: Vec<Vec<usize>> = read_vecs(&dir.join("groundtruth.ivecs"), |b| {
        i32::from_le_bytes(b) as usize
    });
    assert_eq!((base.len(), queries.len(), truth.len()), (20_000, 500, 500));
    let index = build(&base, Metric::Cosine);
    let r = mean_recall(&index, &queries, &truth);
    eprintln!("npm-minilm-20k: recall@10 = {r:.4}");
    assert!(r >= 0.95, "recall@10 {r} below 0.95 at default ef");
}
