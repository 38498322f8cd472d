//! ANN recall of a ring against one node on real vectors (issue 32, docs/cluster.md
//! "Cluster-wide reads"): the first vectors of `npm-minilm-20k` (384-d MiniLM embeddings of npm
//! package summaries, `../shared/data` beside the repository, or `$ALLIDB_NPM_MINILM_DIR`)
//! loaded into one node and into a 5-node ring with replication factor 3; recall@10 of 100 of
//! its queries against the exact top 10 (brute force over the loaded vectors) through the
//! ring is within 0.01 of the single node's. Requests with one routing key get the same answer
//! through any node. 4,000 vectors by default; `ALLIDB_RING_RECALL_VECTORS=20000` loads all
//! of them. Skipped (with a message) when the data set is not there.

#[path = "../../index/tests/common/texmex.rs"]
mod texmex;

use std::collections::HashSet;
use std::path::PathBuf;

use allidb_api::pb;
use allidb_tests::ring::start_ring;
use allidb_tests::{Daemon, request};

const QUERIES: usize = 100;
const K: usize = 10;

fn data_dir() -> PathBuf {
    std::env::var_os("ALLIDB_NPM_MINILM_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/npm-minilm-20k"),
        PathBuf::from,
    )
}

/// The exact top `K` of `query` among `base` by inner product (the vectors are normalised).
fn exact_top(base: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(K).map(|(_, i)| i).collect()
}

async fn load(node: &Daemon, base: &[Vec<f32>]) {
    let mut client = node.client().await;
    for (chunk, rows) in base.chunks(500).enumerate() {
        let entities = rows
            .iter()
            .enumerate()
            .map(|(i, vector)| pb::Entity {
                entity_id: format!("v{}", chunk * 500 + i),
                entity_type: "package".to_owned(),
                embeddings: vec![pb::VectorEmbedding {
                    vector: vector.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let reply = client
            .batch_put_entities(request(
                pb::BatchPutEntitiesRequest {
                    entities,
                    consistency_level: pb::ConsistencyLevel::ConsistencyQuorum as i32,
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("batch put")
            .into_inner();
        assert!(reply.success, "{}", reply.error_message);
    }
}

/// The ids `node` answers for `vector` (seeds only), routed by `routing_key`.
async fn top(node: &Daemon, vector: &[f32], routing_key: &str) -> Vec<String> {
    let reply = node
        .client()
        .await
        .query(request(
            pb::QueryRequest {
                query_vector: vector.to_vec(),
                k: K as i32,
                max_hops: Some(0),
                include_entity: Some(false),
                routing_key: routing_key.to_owned(),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("query")
        .into_inner();
    reply.results.into_iter().map(|r| r.entity_id).collect()
}

fn recall(found: &[String], exact: &[usize]) -> f64 {
    let exact: HashSet<String> = exact.iter().map(|i| format!("v{i}")).collect();
    found.iter().filter(|id| exact.contains(*id)).count() as f64 / K as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_finds_the_nearest_neighbours_of_real_vectors_as_well_as_one_node() {
    let dir = data_dir();
    if !dir.join("base.fvecs").exists() {
        eprintln!("npm-minilm-20k not found at {}; skipped", dir.display());
        return;
    }
    let vectors: usize = std::env::var("ALLIDB_RING_RECALL_VECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    let mut base = texmex::read_vecs(&dir.join("base.fvecs"), f32::from_le_bytes);
    base.truncate(vectors);
    let queries = texmex::read_vecs(&dir.join("query.fvecs"), f32::from_le_bytes);
    let single = Daemon::start("");
    let ring = start_ring(5, "replication_factor = 3\n");
    load(&single, &base).await;
    load(&ring[0], &base).await;

    let (mut on_single, mut on_ring) = (0.0, 0.0);
    for (i, query) in queries.iter().take(QUERIES).enumerate() {
        let exact = exact_top(&base, query);
        on_single += recall(&top(&single, query, "").await, &exact);
        on_ring += recall(&top(&ring[i % ring.len()], query, "").await, &exact);
        if i % 10 == 0 {
            let key = format!("user-{i}");
            let first = top(&ring[1], query, &key).await;
            let second = top(&ring[3], query, &key).await;
            assert_eq!(first, second, "query {i}: one routing key, one answer");
        }
    }
    let (on_single, on_ring) = (on_single / QUERIES as f64, on_ring / QUERIES as f64);
    eprintln!("recall@{K} over {vectors} vectors: one node {on_single:.4}, ring {on_ring:.4}");
    assert!(on_single >= 0.9, "one node's recall {on_single}");
    assert!(
        on_ring >= on_single - 0.01,
        "the ring's recall {on_ring} is more than 0.01 below one node's {on_single}"
    );
}
