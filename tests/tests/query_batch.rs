//! End-to-end tests of `QueryBatch` (docs/api.md) against a real `allidbd` with two tenants:
//! every reply equals what `Query` returns for the same vector and options; each query of a
//! batch sees only the caller's tenant; the batch limits and bad vectors are `INVALID_ARGUMENT`
//! naming the field; the RPC goes through the same key check, size limit and metrics as `Query`,
//! over gRPC and the HTTP gateway.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, http_call, request};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = AlliDbClient<Channel>;

const A_WRITE: &str = "batch-a-write";
const A_READ: &str = "batch-a-read";
const B_WRITE: &str = "batch-b-write";
const DIM: usize = 8;
/// Entities per tenant; both tenants use the same ids with different vectors.
const ENTITIES: usize = 200;
/// Vectors per batch: more than one blocking task's share on any machine with 2+ cores.
const BATCH: usize = 40;

fn start() -> Daemon {
    Daemon::start_with_keys(&[
        (A_WRITE, "tenant-a", "write"),
        (A_READ, "tenant-a", "read"),
        (B_WRITE, "tenant-b", "write"),
    ])
}

/// A deterministic pseudo-random vector in [-1, 1)^DIM.
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..DIM)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn entity_id(index: usize) -> String {
    format!("doc-{index:03}")
}

/// Writes `ENTITIES` entities for `key`'s tenant: vectors from `seed`, two types, a `lang`
/// attribute, and a `cites` edge to the next entity.
async fn load(client: &mut Client, key: &str, seed: u64) {
    let entities = (0..ENTITIES)
        .map(|i| pb::Entity {
            entity_id: entity_id(i),
            entity_type: if i % 3 == 0 { "note" } else { "doc" }.to_owned(),
            embeddings: vec![pb::VectorEmbedding {
                vector: vector(seed + i as u64),
                ..Default::default()
            }],
            outgoing_edges: vec![pb::GraphEdge {
                to_entity: entity_id((i + 1) % ENTITIES),
                relation: "cites".to_owned(),
                weight: 1.0,
                ..Default::default()
            }],
            importance: (i % 7) as f64 / 7.0,
            attributes: BTreeMap::from([(
                "lang".to_owned(),
                if i % 2 == 0 { "en" } else { "de" }.to_owned(),
            )]),
            ..Default::default()
        })
        .collect();
    let reply = client
        .batch_put_entities(request(
            pb::BatchPutEntitiesRequest {
                entities,
                ..Default::default()
            },
            Some(key),
        ))
        .await
        .expect("the load succeeds")
        .into_inner();
    assert!(reply.success, "{reply:?}");
}

/// Waits until the background indexer has moved every vector into HNSW, so the index answers
/// the same search the same way for the rest of the test.
fn wait_until_indexed(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.metric("allidb_vector_index_pending", &[]) > 0.0 {
        assert!(Instant::now() < deadline, "the indexer did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn query_batch(
    client: &mut Client,
    key: &str,
    options: &pb::QueryRequest,
    vectors: &[Vec<f32>],
) -> Result<pb::QueryBatchResponse, Status> {
    let batch = pb::QueryBatchRequest {
        options: Some(options.clone()),
        vectors: vectors
            .iter()
            .map(|values| pb::QueryVector {
                values: values.clone(),
            })
            .collect(),
        texts: Vec::new(),
    };
    Ok(client
        .query_batch(request(batch, Some(key)))
        .await?
        .into_inner())
}

async fn query_one(
    client: &mut Client,
    key: &str,
    options: &pb::QueryRequest,
    vector: &[f32],
) -> pb::QueryResponse {
    let single = pb::QueryRequest {
        query_vector: vector.to_vec(),
        ..options.clone()
    };
    client
        .query(request(single, Some(key)))
        .await
        .expect("the query succeeds")
        .into_inner()
}

/// Asserts `result` failed with `INVALID_ARGUMENT` and a message starting with `prefix`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, prefix: &str) {
    let status = result.expect_err("the batch must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().starts_with(prefix),
        "message {:?} does not start with {prefix:?}",
        status.message()
    );
}

/// The batch's vectors: every fifth one is a stored vector of tenant A (an exact match there),
/// the rest are new.
fn batch_vectors() -> Vec<Vec<f32>> {
    (0..BATCH)
        .map(|i| {
            if i % 5 == 0 {
                vector(1_000 + i as u64)
            } else {
                vector(50_000 + i as u64)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_like_one_query_per_vector_within_the_callers_tenant() {
    let daemon = start();
    let mut client = daemon.client().await;
    load(&mut client, A_WRITE, 1_000).await;
    load(&mut client, B_WRITE, 9_000).await;
    wait_until_indexed(&daemon);
    let vectors = batch_vectors();

    // Option sets covering every part of a query. The recency term changes with the clock
    // between two calls, so these give it weight 0 and compare whole replies bit for bit.
    let no_recency = pb::ScoringWeights {
        recency: Some(0.0),
        ..Default::default()
    };
    let option_sets = [
        pb::QueryRequest {
            k: 7,
            ef: 40,
            max_hops: Some(1),
            explain: true,
            weights: Some(no_recency),
            filter: Some(pb::QueryFilter {
                entity_types: vec!["doc".to_owned()],
                attributes: BTreeMap::from([("lang".to_owned(), "en".to_owned())]),
            }),
            trace_id: "batch-1".to_owned(),
            ..Default::default()
        },
        pb::QueryRequest {
            k: 3,
            expand_factor: 4,
            max_hops: Some(2),
            relations: vec!["cites".to_owned()],
            direction: pb::Direction::Both as i32,
            hop_decay: Some(0.5),
            include_entity: Some(false),
            weights: Some(pb::ScoringWeights {
                graph: Some(1.0),
                ..no_recency
            }),
            ..Default::default()
        },
    ];
    for options in &option_sets {
        let mut replies_by_tenant = Vec::new();
        for (key, tenant) in [(A_READ, "tenant-a"), (B_WRITE, "tenant-b")] {
            let batch = query_batch(&mut client, key, options, &vectors)
                .await
                .expect("the batch succeeds");
            assert_eq!(batch.trace_id, options.trace_id);
            assert_eq!(batch.replies.len(), vectors.len());
            for (i, vector) in vectors.iter().enumerate() {
                let single = query_one(&mut client, key, options, vector).await;
                assert_eq!(batch.replies[i], single, "{tenant}, query {i}: {options:?}");
                assert!(!single.results.is_empty(), "{tenant}, query {i}");
                for result in &single.results {
                    if let Some(entity) = &result.entity {
                        assert_eq!(entity.tenant_id, tenant, "query {i}");
                    }
                }
            }
            replies_by_tenant.push(batch.replies);
        }
        // Same ids, different vectors: each tenant's queries ranked its own entities.
        assert_ne!(replies_by_tenant[0], replies_by_tenant[1]);
    }
    // The exact matches of tenant A rank first for A only.
    let exact = pb::QueryRequest {
        k: 3,
        max_hops: Some(0),
        weights: Some(pb::ScoringWeights {
            importance: Some(0.0),
            ..no_recency
        }),
        ..Default::default()
    };
    let a = query_batch(&mut client, A_READ, &exact, &vectors)
        .await
        .unwrap();
    let b = query_batch(&mut client, B_WRITE, &exact, &vectors)
        .await
        .unwrap();
    for i in (0..BATCH).step_by(5) {
        assert_eq!(a.replies[i].results[0].entity_id, entity_id(i), "query {i}");
        assert!(
            a.replies[i].results[0].score > b.replies[i].results[0].score,
            "query {i}"
        );
    }

    // With the default weights (recency on) the same ids come back in the same order.
    let defaults = pb::QueryRequest::default();
    let batch = query_batch(&mut client, A_READ, &defaults, &vectors)
        .await
        .unwrap();
    for (i, vector) in vectors.iter().enumerate() {
        let single = query_one(&mut client, A_READ, &defaults, vector).await;
        let ids = |reply: &pb::QueryResponse| -> Vec<String> {
            reply.results.iter().map(|r| r.entity_id.clone()).collect()
        };
        assert_eq!(ids(&batch.replies[i]), ids(&single), "query {i}");
        assert_eq!(batch.replies[i].results.len(), 10);
        for (from_batch, alone) in batch.replies[i].results.iter().zip(&single.results) {
            assert!((from_batch.score - alone.score).abs() < 1e-6, "query {i}");
            assert_eq!(from_batch.entity, alone.entity, "query {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_keys_size_and_metrics_are_the_querys() {
    let daemon = start();
    let mut client = daemon.client().await;
    load(&mut client, A_WRITE, 1_000).await;
    let options = pb::QueryRequest {
        k: 5,
        ..Default::default()
    };
    let ok_labels = [("rpc", "QueryBatch"), ("code", "OK"), ("transport", "grpc")];
    let invalid_labels = [
        ("rpc", "QueryBatch"),
        ("code", "INVALID_ARGUMENT"),
        ("transport", "grpc"),
    ];
    let ok_before = daemon.metric("allidb_rpc_requests_total", &ok_labels);
    let invalid_before = daemon.metric("allidb_rpc_requests_total", &invalid_labels);

    // Keys: none or unknown -> UNAUTHENTICATED; a read key is enough, as for Query.
    for key in [None, Some("no-such-key")] {
        let batch = pb::QueryBatchRequest {
            options: Some(options.clone()),
            vectors: vec![pb::QueryVector { values: vector(1) }],
            texts: Vec::new(),
        };
        let status = client
            .query_batch(request(batch, key))
            .await
            .expect_err("a batch without a valid key is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    }
    let batch = query_batch(&mut client, A_READ, &options, &[vector(1), vector(2)])
        .await
        .expect("a read key may query in batches");
    assert_eq!(batch.replies.len(), 2);
    assert_eq!(batch.replies[0].results.len(), 5);

    // Limits, each naming its field.
    let many = |count: usize, dim: usize| vec![vec![0.5f32; dim]; count];
    assert_invalid(
        query_batch(&mut client, A_READ, &options, &[]).await,
        "vectors must not be empty",
    );
    assert_invalid(
        query_batch(&mut client, A_READ, &options, &many(1001, DIM)).await,
        "vectors has 1001 entries, the maximum is 1000",
    );
    assert_invalid(
        query_batch(&mut client, A_READ, &options, &many(1000, 2100)).await,
        "vectors hold 2100000 values in total, the maximum is 2097152",
    );
    let k1000 = pb::QueryRequest {
        k: 1000,
        ..Default::default()
    };
    assert_invalid(
        query_batch(&mut client, A_READ, &k1000, &many(101, DIM)).await,
        "vectors x options.k = 101 x 1000 = 101000 results, the maximum is 100000",
    );
    let too_many_k = pb::QueryRequest {
        k: 1001,
        ..Default::default()
    };
    assert_invalid(
        query_batch(&mut client, A_READ, &too_many_k, &many(1, DIM)).await,
        "options.k is 1001, the maximum is 1000",
    );
    let with_vector = pb::QueryRequest {
        query_vector: vector(3),
        ..Default::default()
    };
    assert_invalid(
        query_batch(&mut client, A_READ, &with_vector, &many(1, DIM)).await,
        "options.query_vector must be empty",
    );
    let bad_level = pb::QueryRequest {
        consistency_level: 7,
        ..Default::default()
    };
    assert_invalid(
        query_batch(&mut client, A_READ, &bad_level, &many(1, DIM)).await,
        "options.consistency_level 7",
    );
    // Bad vectors: the first bad one is named, whether the API or the index finds it.
    let mut vectors = many(30, DIM);
    vectors[12][3] = f32::NAN;
    assert_invalid(
        query_batch(&mut client, A_READ, &options, &vectors).await,
        "vectors[12].values[3] must be finite",
    );
    let mut vectors = many(30, DIM);
    vectors[17] = vec![0.5; DIM + 1];
    vectors[29] = vec![0.5; DIM - 1];
    assert_invalid(
        query_batch(&mut client, A_READ, &options, &vectors).await,
        "vectors[17]: ",
    );

    // A message over `server.max_request_bytes` (default 16 MiB) is refused before the service,
    // with Query's code, and counted under QueryBatch.
    let oversized_before = daemon.metric(
        "allidb_rpc_requests_total",
        &[("rpc", "QueryBatch"), ("code", "OUT_OF_RANGE")],
    );
    let status = query_batch(&mut client, A_READ, &options, &many(1000, 4300))
        .await
        .expect_err("an oversized batch is refused");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());

    // The gateway serves the same RPC: same replies, same errors.
    let http = daemon.http_addr.expect("the daemon serves HTTP");
    let body = serde_json::json!({
        "options": {"k": 5, "include_entity": false},
        "vectors": [{"values": vector(1)}, {"values": vector(2)}],
    });
    let reply = http_call(
        http,
        "POST",
        "/query/batch",
        Some(A_READ),
        &body.to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON reply");
    let http_ids: Vec<Vec<String>> = json["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .map(|reply| {
            reply["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["entity_id"].as_str().expect("an id").to_owned())
                .collect()
        })
        .collect();
    let grpc_ids: Vec<Vec<String>> = batch
        .replies
        .iter()
        .map(|reply| reply.results.iter().map(|r| r.entity_id.clone()).collect())
        .collect();
    assert_eq!(http_ids, grpc_ids);
    let reply = http_call(
        http,
        "POST",
        "/query/batch",
        Some(A_READ),
        r#"{"options": {"k": 5000}, "vectors": [{"values": [1]}]}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("options.k is 5000"), "{}", reply.body);
    let reply = http_call(http, "POST", "/query/batch", None, &body.to_string());
    assert_eq!(reply.status, 401, "{}", reply.body);

    // Every call above was counted under QueryBatch with its code and transport.
    assert_eq!(
        daemon.metric("allidb_rpc_requests_total", &ok_labels) - ok_before,
        1.0
    );
    assert_eq!(
        daemon.metric("allidb_rpc_requests_total", &invalid_labels) - invalid_before,
        9.0
    );
    assert_eq!(
        daemon.metric(
            "allidb_rpc_requests_total",
            &[("rpc", "QueryBatch"), ("code", "OUT_OF_RANGE")]
        ) - oversized_before,
        1.0
    );
    let http_labels = |code| [("rpc", "QueryBatch"), ("code", code), ("transport", "http")];
    assert_eq!(
        daemon.metric("allidb_rpc_requests_total", &http_labels("OK")),
        1.0
    );
    assert_eq!(
        daemon.metric(
            "allidb_rpc_requests_total",
            &http_labels("INVALID_ARGUMENT")
        ),
        1.0
    );
    assert_eq!(
        daemon.metric("allidb_rpc_requests_total", &http_labels("UNAUTHENTICATED")),
        1.0
    );
}
