//! Cleanup on a ring of real daemons (docs/cluster.md "Cleanup"): after a fourth node joined a
//! 3-node RF 3 ring, `allidb cluster cleanup` on the old nodes drops what they no longer
//! replicate, so every entity and every edge is on exactly RF nodes (counted in each node's own
//! store, by its per-node figures while it runs and by opening its storage once it stopped), and
//! nothing acknowledged is lost, also under a concurrent QUORUM writer. A cleanup is refused
//! while a movement runs, and a source refuses the stream chunks of a movement its log closed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use allidb_api::pb;
use allidb_cluster::credentials::TOKEN_HEADER;
use allidb_cluster::proto as internal;
use allidb_tests::ring::{
    SECRET, allidb_json, cluster_toml, found, free_udp_addr, gossip_addr_of, held_per_node,
    host_id_of, internal_header, json_reply, level, quorum_writer, ring_of_three, status,
    wait_for_states,
};
use allidb_tests::{Daemon, doc_entity, request};
use internal::replica_client::ReplicaClient;
use serde_json::Value;
use tonic::Code;

use pb::ConsistencyLevel::ConsistencyQuorum as Quorum;

/// The entities loaded before the join, each with an edge to the one before.
const LOADED: usize = 600;
/// The joining node streams slowly, so that a cleanup can be tried while it joins.
const SLOW_STREAM: &str = "stream_bytes_per_sec = 20000\nstream_chunk_bytes = 65536\n";
const TIMEOUTS: &str = "write_timeout_ms = 1000\nread_timeout_ms = 1000\n";

/// Puts `c0..c{LOADED}` at QUORUM through `daemon`, `c{i}` with an edge `next` to `c{i-1}`.
async fn load_chain(daemon: &Daemon) {
    let mut client = daemon.client().await;
    let ids: Vec<usize> = (0..LOADED).collect();
    for batch in ids.chunks(200) {
        let entities = batch
            .iter()
            .map(|i| {
                let mut entity = doc_entity(&format!("c{i}"), &[1.0, 0.5, *i as f32]);
                if *i > 0 {
                    entity.outgoing_edges.push(pb::GraphEdge {
                        to_entity: format!("c{}", i - 1),
                        relation: "next".to_owned(),
                        weight: 1.0,
                        ..Default::default()
                    });
                }
                entity
            })
            .collect();
        let message = pb::BatchPutEntitiesRequest {
            entities,
            consistency_level: level(Quorum),
            ..Default::default()
        };
        let reply = client
            .batch_put_entities(request(message, None))
            .await
            .expect("a QUORUM batch on a whole ring")
            .into_inner();
        assert!(reply.success, "{}", reply.error_message);
    }
}

/// `allidb --json cluster cleanup` against `daemon`: its exit code and JSON reply, or the error
/// it printed.
fn cleanup(daemon: &Daemon) -> (i32, Value) {
    let output = allidb_json(daemon, &["cluster", "cleanup"])
        .output()
        .expect("allidb runs");
    match output.status.code() {
        Some(0) => json_reply(output),
        code => (
            code.unwrap_or(-1),
            Value::String(String::from_utf8_lossy(&output.stderr).into_owned()),
        ),
    }
}

/// What a stopped node's storage holds: each live entity of tenant `default` and its
/// out-edges' targets.
fn stored(data_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let engine = allidb_storage::Engine::open(data_dir.join("lsm"), Default::default())
        .expect("a stopped node's storage opens");
    let (entities, _) = engine.all_entities();
    let held = entities
        .map(|entity| entity.expect("a stored entity reads"))
        .filter(|entity| entity.tenant == "default")
        .map(|entity| {
            let targets = entity.out_edges.iter().map(|e| e.to.clone()).collect();
            (entity.id, targets)
        })
        .collect();
    engine.close().expect("the storage closes");
    held
}

/// A `StreamRange` call to host `recipient` planned on `version` for topology `movement`.
fn stream_call(
    recipient: &str,
    version: u64,
    movement: Option<u64>,
) -> tonic::Request<internal::StreamRangeRequest> {
    let mut call = tonic::Request::new(internal::StreamRangeRequest {
        header: Some(internal_header(recipient, version)),
        session_id: "0".repeat(32),
        tenant: String::new(),
        spans: vec![internal::TokenSpan { start: 0, end: 0 }],
        after: None,
        max_bytes: 1 << 20,
        repair: false,
        movement,
    });
    let token = allidb_cluster::credentials::ClusterCredentials::new("e2e", SECRET);
    call.metadata_mut().insert(
        TOKEN_HEADER,
        token.token().parse().expect("a token is ASCII"),
    );
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_join_cleanup_leaves_every_entity_and_edge_on_exactly_rf_nodes() {
    let nodes = ring_of_three("");
    load_chain(&nodes[0]).await;

    // A fourth node joins, streaming slowly: a cleanup meanwhile is refused.
    let seed = gossip_addr_of(&nodes[0], "n0");
    let n3_config = format!(
        "{}{TIMEOUTS}{SLOW_STREAM}",
        cluster_toml("n3", free_udp_addr(), seed)
    );
    let joining = tokio::task::spawn_blocking(move || Daemon::start(&n3_config));
    let mut movement = None;
    for _ in 0..600 {
        movement = status(&nodes[0])["movement"]["id"].as_u64();
        if movement.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let movement = movement.expect("the join's movement shows in the status");
    let (code, refused) = cleanup(&nodes[1]);
    assert_ne!(code, 0, "a cleanup while a movement runs: {refused}");
    assert!(
        refused.to_string().contains("while a movement runs"),
        "{refused}"
    );
    let n3 = joining.await.expect("the fourth node joins");
    let four = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
    ];
    for node in nodes.iter().chain(std::iter::once(&n3)) {
        wait_for_states(node, &four, Duration::from_secs(60));
    }
    let counts = held_per_node(&nodes[0]).await;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert!(
        total > 3 * LOADED as u64,
        "before a cleanup the old nodes still hold what n3 took: {counts:?}"
    );

    // The join's movement is closed in every log: a late chunk of it is refused by a source,
    // naming the field; a rebuild's chunk (no movement) is served.
    let version = status(&nodes[0])["ring_version"]
        .as_u64()
        .expect("a ring version");
    let mut internal = ReplicaClient::new(nodes[0].channel().await);
    let n0 = host_id_of(&nodes[0], "n0");
    let late = internal
        .stream_range(stream_call(&n0, version, Some(movement)))
        .await
        .expect_err("a chunk of a finished movement");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert!(late.message().starts_with("movement:"), "{late:?}");
    internal
        .stream_range(stream_call(&n0, version, None))
        .await
        .expect("a rebuild's chunk is served");

    // Cleanups on the three old nodes, under a QUORUM writer.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = quorum_writer(&nodes[0], "live", stop.clone()).await;
    let mut dropped = 0;
    for node in &nodes {
        let (code, reply) = cleanup(node);
        assert_eq!(code, 0, "{reply}");
        dropped += reply["partitions_dropped"].as_u64().expect("a count");
        assert_eq!(reply["ranges_kept"].as_u64().map(|n| n > 0), Some(true));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("the writer task");
    assert!(dropped > 0, "the old nodes dropped what n3 took");
    let (code, again) = cleanup(&nodes[0]);
    assert_eq!(
        (code, again["partitions_dropped"].as_u64()),
        (0, Some(0)),
        "a second cleanup finds nothing to drop: {again}"
    );
    assert_eq!(
        status(&nodes[0])["cleanups"].as_array().map(Vec::len),
        Some(0),
        "no cleanup is left in the log"
    );

    // Nothing acknowledged is lost, and each node's own figures now add up to RF copies.
    let mut lost = Vec::new();
    let ids = (0..LOADED).map(|i| format!("c{i}")).chain(acked.clone());
    for id in ids {
        if !found(&n3, &id, Quorum).await.expect("a QUORUM read") {
            lost.push(id);
        }
    }
    assert!(lost.is_empty(), "{} lost: {lost:?}", lost.len());
    let written = (LOADED + acked.len()) as u64;
    let counts = held_per_node(&nodes[0]).await;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total,
        3 * written,
        "each entity on exactly 3 nodes: {counts:?}"
    );

    // Each node's storage, opened once it stopped: every entity and every edge exactly 3 times.
    let mut all = nodes;
    all.push(n3);
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut edge_copies: BTreeMap<(String, String), usize> = BTreeMap::new();
    for node in &mut all {
        node.stop();
        for (id, targets) in stored(&node.data_dir) {
            *copies.entry(id.clone()).or_default() += 1;
            for to in targets {
                *edge_copies.entry((id.clone(), to)).or_default() += 1;
            }
        }
    }
    let wrong: Vec<_> = copies.iter().filter(|(_, n)| **n != 3).collect();
    assert!(
        wrong.is_empty(),
        "entities not on exactly 3 nodes: {wrong:?}"
    );
    assert_eq!(copies.len() as u64, written);
    let wrong: Vec<_> = edge_copies.iter().filter(|(_, n)| **n != 3).collect();
    assert!(wrong.is_empty(), "edges not on exactly 3 nodes: {wrong:?}");
    assert_eq!(edge_copies.len(), LOADED - 1);
}
