//! A node without `[cluster]` is a ring of one (DESIGN.md §6, issue 32 point 7): every data
//! RPC goes through the same coordinator and cluster-wide reads as on a ring, and answers
//! without a single node-to-node call.
//!
//! What proves the path: the coordinator's write fan-out counts each replica write
//! (`allidb_cluster_replica_writes_total`, this node by its `server.node_id`) and the
//! cluster-wide reads count each read by kind (`allidb_cluster_queries_total`); a call to
//! another node would count in `allidb_cluster_query_calls_total`. The replies keep a single
//! node's shape (no coverage: the one range is always this node's). With the mechanism
//! switched off (a node without `[cluster]` serving from its store directly, as before) none
//! of these counters moves, so the test fails at its first metric.

use allidb_api::pb;
use allidb_tests::{Daemon, doc_entity};
use tonic::Code;

/// The one node's name in metrics and replies (`server.node_id`'s default).
const NODE: &str = "local";

fn edge(from: &str, to: &str) -> pb::GraphEdge {
    pb::GraphEdge {
        from_entity: from.to_owned(),
        to_entity: to.to_owned(),
        relation: "links".to_owned(),
        weight: 1.0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_cluster_serves_every_data_rpc_through_its_coordinator() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let writes = || {
        daemon.metric(
            "allidb_cluster_replica_writes_total",
            &[("peer", NODE), ("outcome", "ok")],
        )
    };
    let reads = |kind: &str| daemon.metric("allidb_cluster_queries_total", &[("kind", kind)]);

    // Writes: one fan-out to this node, the only replica, per RPC.
    let entities: Vec<pb::Entity> = (0..4)
        .map(|i| doc_entity(&format!("e{i}"), &[1.0, i as f32, 0.5]))
        .collect();
    client
        .batch_put_entities(pb::BatchPutEntitiesRequest {
            entities,
            ..Default::default()
        })
        .await
        .expect("a batch put");
    assert_eq!(
        writes(),
        1.0,
        "the batch went through the coordinator's fan-out"
    );
    client
        .add_edges(pb::AddEdgesRequest {
            edges: vec![edge("e0", "e1"), edge("e1", "e2")],
            ..Default::default()
        })
        .await
        .expect("edges added");
    client
        .put_entity(pb::PutEntityRequest {
            entity: Some(doc_entity("e4", &[0.0, 1.0, 1.0])),
            consistency_level: pb::ConsistencyLevel::ConsistencyAll as i32,
            ..Default::default()
        })
        .await
        .expect("ALL is this node's own write on a ring of one");
    client
        .delete_entity(pb::DeleteEntityRequest {
            entity_id: "e3".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a delete");
    assert_eq!(writes(), 4.0, "batch put, edges, put and delete");

    // Point reads at every level are this node's own.
    let got = client
        .get_entity(pb::GetEntityRequest {
            entity_id: "e0".to_owned(),
            consistency_level: pb::ConsistencyLevel::ConsistencyQuorum as i32,
            ..Default::default()
        })
        .await
        .expect("a read")
        .into_inner();
    assert!(got.found);

    // Queries: answered by this node's own indexes in one call.
    let reply = client
        .query(pb::QueryRequest {
            query_vector: vec![1.0, 0.0, 0.5],
            k: 3,
            max_hops: Some(1),
            explain: true,
            include_context: true,
            ..Default::default()
        })
        .await
        .expect("a query")
        .into_inner();
    assert_eq!(reads("query"), 1.0);
    assert_eq!(reply.results[0].entity_id, "e0");
    assert!(reply.results[0].explanation.is_some());
    assert!(reply.context.is_some());
    assert!(
        reply.coverage.is_none() && reply.profile.is_none(),
        "a single node's reply: {reply:?}"
    );

    // Traversals, scans and tenant figures: the cluster-wide reads too.
    let traversed = client
        .traverse(pb::TraverseRequest {
            start_ids: vec!["e0".to_owned()],
            max_hops: 2,
            ..Default::default()
        })
        .await
        .expect("a traversal")
        .into_inner();
    assert_eq!(reads("traverse"), 1.0);
    let reached: Vec<&str> = traversed.nodes.iter().map(|n| &*n.entity_id).collect();
    assert_eq!(reached, ["e0", "e1", "e2"]);
    let page = client
        .range_scan(pb::RangeScanRequest {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("a scan")
        .into_inner();
    assert!(reads("scan") >= 1.0);
    let ids: Vec<&str> = page.entities.iter().map(|e| &*e.entity_id).collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e4"], "e3 was deleted");
    let listing = client
        .list_tenants(pb::ListTenantsRequest { per_node: true })
        .await
        .expect("a listing")
        .into_inner();
    assert_eq!(reads("tenants"), 1.0);
    assert_eq!(listing.tenants[0].entities, 4);
    let nodes: Vec<&str> = listing.nodes.iter().map(|n| &*n.node).collect();
    assert_eq!(nodes, [NODE]);

    // Not one call crossed to another node.
    assert_eq!(daemon.metric("allidb_cluster_query_calls_total", &[]), 0.0);

    // Operator actions over replicas still need `[cluster]`.
    let refused = client
        .repair(pb::RepairRequest::default())
        .await
        .expect_err("a node without [cluster] has no replicas to repair");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("this node is not part of a ring ([cluster] is off)"),
        "{}",
        refused.message()
    );
}
