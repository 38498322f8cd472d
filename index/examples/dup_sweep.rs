//! Recall / QPS / build-rate benchmark on a duplicate-heavy corpus made from npm-minilm-20k
//! (docs/benchmarks.md, "Duplicates"): groups of identical vectors, near-duplicates and queries
//! aimed at them (`index/tests/common/duplicates.rs`, the same data as the recall test).
//!
//! Builds `FlatHnsw` (M=16, ef_construction=200) one insert at a time and with `insert_batch` on
//! `--threads` threads (default: all cores), sweeps ef with tie-aware recall@10, and writes the
//! corpus as TEXMEX files into `--out DIR` (default: a temporary directory) so that
//! `bench/hnswlib_sweep.py DIR` measures hnswlib on exactly the same rows; the script is run when
//! `--python` names an interpreter with `hnswlib` and `numpy`.
//!
//! With `--clean yes` the corpus is npm-minilm-20k unchanged (the clean baseline).
//!
//! Run: `cargo run --release -p allidb-index --example dup_sweep [-- --data DIR] [--python PY]
//! [--threads N] [--out DIR] [--clean yes]`.

mod common;
#[path = "../tests/common/duplicates.rs"]
mod duplicates;
#[path = "../tests/common/texmex.rs"]
mod texmex;

use std::path::{Path, PathBuf};
use std::time::Instant;

use allidb_index::vector::engine::AnnEngine;
use allidb_index::vector::{AnnEngineFactory, EngineParams, FlatHnswFactory, Metric};
use common::Flags;
use duplicates::DuplicateCorpus;
use texmex::{read_vecs, write_vecs};

fn sweep(engine: &dyn AnnEngine, corpus: &DuplicateCorpus) {
    println!("| ef | tie-aware recall@10 | QPS (1 thread) |");
    for ef in [16, 32, 64, 128, 256] {
        // Only the searches are timed (as in `bench/hnswlib_sweep.py`); recall is scored after.
        let start = Instant::now();
        let found: Vec<Vec<(usize, f32)>> = corpus
            .queries
            .iter()
            .map(|q| engine.search(q, 10, ef))
            .collect();
        let qps = corpus.queries.len() as f64 / start.elapsed().as_secs_f64();
        let total: f64 = found
            .iter()
            .enumerate()
            .map(|(i, hits)| {
                let ids: Vec<usize> = hits.iter().map(|h| h.0).collect();
                corpus.recall(i, &ids, 10)
            })
            .sum();
        println!(
            "| {ef} | {:.3} | {qps:.0} |",
            total / corpus.queries.len() as f64
        );
    }
}

fn main() {
    let flags = Flags::from_env();
    let data = flags.value("--data").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k"),
        PathBuf::from,
    );
    let threads = flags.number(
        "--threads",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let metric = Metric::Cosine;
    let prepare = |rows: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|v| metric.prepare(v).expect("finite data"))
            .collect()
    };
    let real = prepare(read_vecs(&data.join("base.fvecs"), f32::from_le_bytes));
    let real_queries = prepare(read_vecs(&data.join("query.fvecs"), f32::from_le_bytes));
    let corpus = if flags.value("--clean").is_some() {
        DuplicateCorpus::unchanged(&real, &real_queries)
    } else {
        DuplicateCorpus::from_real(&real, &real_queries, 7)
    };
    println!(
        "data: {} base rows ({} copies of others) x {} dims, {} queries",
        corpus.base.len(),
        corpus.copies,
        corpus.base[0].len(),
        corpus.queries.len()
    );
    let params = EngineParams {
        max_connections: 16,
        ef_construction: 200,
        capacity_hint: corpus.base.len(),
    };
    let items: Vec<(usize, &[f32])> = corpus
        .base
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.as_slice()))
        .collect();

    let serial = FlatHnswFactory
        .create(metric, params)
        .expect("valid params");
    let start = Instant::now();
    for (id, vector) in &items {
        serial.insert(*id, vector);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "flat_hnsw build, 1 thread: {elapsed:.1} s = {:.0} vectors/s",
        items.len() as f64 / elapsed
    );
    sweep(serial.as_ref(), &corpus);

    let parallel = FlatHnswFactory
        .create(metric, params)
        .expect("valid params");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let start = Instant::now();
    pool.install(|| parallel.insert_batch(&items));
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "flat_hnsw build, insert_batch on {threads} threads: {elapsed:.1} s = {:.0} vectors/s",
        items.len() as f64 / elapsed
    );
    sweep(parallel.as_ref(), &corpus);

    let scratch = tempfile::tempdir().expect("temp dir");
    let out = flags
        .value("--out")
        .map_or_else(|| scratch.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&out).expect("output dir");
    write_vecs(&out.join("base.fvecs"), &corpus.base, f32::to_le_bytes);
    write_vecs(&out.join("query.fvecs"), &corpus.queries, f32::to_le_bytes);
    let truth: Vec<Vec<i32>> = corpus
        .truth
        .iter()
        .map(|t| t.iter().map(|&(_, row)| row as i32).collect())
        .collect();
    write_vecs(&out.join("groundtruth.ivecs"), &truth, i32::to_le_bytes);
    println!("corpus written to {}", out.display());
    if let Some(python) = flags.value("--python") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/hnswlib_sweep.py");
        let status = std::process::Command::new(python)
            .arg(&script)
            .arg(&out)
            .arg(threads.to_string())
            .status();
        println!("hnswlib sweep: {status:?}");
    }
}
