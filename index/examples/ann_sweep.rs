//! Vector index benchmark on npm-minilm-20k (docs/benchmarks.md, "Vector index").
//!
//! Measures, single-threaded unless said, for both engines (`FlatHnsw` and `hnsw_rs`): build
//! rate (plus `hnsw_rs` parallel inserts), recall@10 / QPS over ef 16..256 (M=16,
//! ef_construction=200), the engines' in-graph filters versus the index's over-fetch at 50/10/1%
//! selectivity, and reload-from-dump versus rebuild time of the default-engine index. Then runs
//! `bench/hnswlib_sweep.py` on the same files when `python3` with `hnswlib` is available.
//!
//! Run: `cargo run --release -p allidb-index --example ann_sweep [-- DATA_DIR]`.

use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../tests/common/texmex.rs"]
mod texmex;

use allidb_index::vector::engine::AnnEngine;
use allidb_index::vector::{
    AnnEngineFactory, EngineParams, FlatHnswFactory, HnswFactory, Metric, VectorIndex,
    VectorIndexOptions,
};
use texmex::read_vecs;

fn recall_at_10(found: &[usize], truth: &[usize]) -> f64 {
    truth.iter().take(10).filter(|t| found.contains(t)).count() as f64 / 10.0
}

fn sweep(
    engine: &dyn AnnEngine,
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
    ef: usize,
) -> (f64, f64) {
    let start = Instant::now();
    let mut total = 0.0;
    for (q, t) in queries.iter().zip(truth) {
        let found: Vec<usize> = engine
            .search(q, 10, ef)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        total += recall_at_10(&found, t);
    }
    (
        total / queries.len() as f64,
        queries.len() as f64 / start.elapsed().as_secs_f64(),
    )
}

/// Builds `factory`'s engine from `items` one insert at a time, then sweeps ef; prints both.
fn bench_engine(
    name: &str,
    factory: &dyn AnnEngineFactory,
    metric: Metric,
    params: EngineParams,
    items: &[(usize, &[f32])],
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> Box<dyn AnnEngine> {
    let engine = factory.create(metric, params).expect("valid params");
    let start = Instant::now();
    for (id, vector) in items {
        engine.insert(*id, vector);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{name} build, 1 thread: {elapsed:.1} s = {:.0} vectors/s",
        items.len() as f64 / elapsed
    );
    println!("| {name} ef | recall@10 | QPS (1 thread) |");
    for ef in [16, 32, 64, 128, 256] {
        let (recall, qps) = sweep(engine.as_ref(), queries, truth, ef);
        println!("| {ef} | {recall:.3} | {qps:.0} |");
    }
    engine
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k")
        });
    let base = read_vecs(&dir.join("base.fvecs"), f32::from_le_bytes);
    let queries = read_vecs(&dir.join("query.fvecs"), f32::from_le_bytes);
    let truth: Vec<Vec<usize>> = read_vecs(&dir.join("groundtruth.ivecs"), |b| {
        i32::from_le_bytes(b) as usize
    });
    let metric = Metric::Cosine;
    let prepared: Vec<Vec<f32>> = base
        .iter()
        .map(|v| metric.prepare(v).expect("finite data"))
        .collect();
    let queries: Vec<Vec<f32>> = queries
        .iter()
        .map(|v| metric.prepare(v).expect("finite data"))
        .collect();
    let params = EngineParams {
        max_connections: 16,
        ef_construction: 200,
        capacity_hint: base.len(),
    };
    println!(
        "data: {} base x {} dims, {} queries",
        base.len(),
        base[0].len(),
        queries.len()
    );

    let items: Vec<(usize, &[f32])> = prepared
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.as_slice()))
        .collect();
    let flat = bench_engine(
        "flat_hnsw",
        &FlatHnswFactory,
        metric,
        params,
        &items,
        &queries,
        &truth,
    );
    let engine = bench_engine(
        "hnsw_rs",
        &HnswFactory,
        metric,
        params,
        &items,
        &queries,
        &truth,
    );
    let parallel_engine = HnswFactory.create(metric, params).expect("valid params");
    let start = Instant::now();
    parallel_engine.insert_batch(&items);
    let parallel = start.elapsed().as_secs_f64();
    println!(
        "hnsw_rs build, parallel_insert (all cores): {:.1} s = {:.0} vectors/s",
        parallel,
        base.len() as f64 / parallel
    );

    println!(
        "filtered search, k=10, ef=64: engines' in-graph filters vs VectorIndex over-fetch (no hint)"
    );
    let index = VectorIndex::new(VectorIndexOptions {
        metric,
        ..VectorIndexOptions::default()
    })
    .expect("valid options");
    for (i, v) in base.iter().enumerate() {
        index
            .upsert(&format!("{i:06}"), v, i as u64 + 1)
            .expect("finite data");
    }
    index.index_pending(usize::MAX);
    println!(
        "| selectivity | hnsw_rs search_filter QPS | flat_hnsw search_filtered QPS | \
         over-fetch QPS | exact scan QPS |"
    );
    for percent in [50usize, 10, 1] {
        let modulus = 100 / percent;
        let allow_id = move |id: usize| id.is_multiple_of(modulus);
        let in_graph = |engine: &dyn AnnEngine| {
            let start = Instant::now();
            for q in &queries {
                std::hint::black_box(engine.search_filtered(q, 10, 64, &allow_id));
            }
            queries.len() as f64 / start.elapsed().as_secs_f64()
        };
        let (hnsw_rs_filter, flat_filter) = (in_graph(engine.as_ref()), in_graph(flat.as_ref()));
        let allow_entity = move |id: &str| id.parse::<usize>().is_ok_and(allow_id);
        let start = Instant::now();
        for q in &queries {
            std::hint::black_box(
                index
                    .search(q, 10, Some(64), Some(&allow_entity), None)
                    .expect("valid query"),
            );
        }
        let overfetch = queries.len() as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for q in &queries {
            std::hint::black_box(
                index
                    .search(q, 10, Some(64), Some(&allow_entity), Some(1))
                    .expect("valid query"),
            );
        }
        let exact = queries.len() as f64 / start.elapsed().as_secs_f64();
        println!(
            "| {percent}% | {hnsw_rs_filter:.0} | {flat_filter:.0} | {overfetch:.0} | {exact:.0} |"
        );
    }

    let dump_dir = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    index.dump(dump_dir.path()).expect("dump");
    println!(
        "dump of the 20k index: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let reloaded = VectorIndex::load(dump_dir.path(), *index.options()).expect("load");
    println!(
        "reload from dump: {:.2} s ({} vectors)",
        start.elapsed().as_secs_f64(),
        reloaded.len()
    );
    let start = Instant::now();
    index.rebuild(&|| false).expect("rebuild");
    println!(
        "rebuild from stored vectors (default engine): {:.2} s",
        start.elapsed().as_secs_f64()
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/hnswlib_sweep.py");
    match std::process::Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .status()
    {
        Ok(status) if status.success() => {}
        other => println!("hnswlib sweep not run ({other:?}); pip install hnswlib numpy"),
    }
}
