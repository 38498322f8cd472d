//! End-to-end tests of the gRPC API against a real `allidbd` (WIRE.md §1): every RPC and its
//! error cases, and the health and reflection services. Tenant isolation with two tenants' keys
//! is in `grpc_tenants.rs`; bad input, durability across SIGKILL, startup refusals of bad
//! configuration and a full vector tail in `grpc_robustness.rs`; the helpers they share in
//! `allidb_tests::grpc`.

use std::collections::BTreeMap;

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::grpc::{
    assert_healthy, axis, expect_code, get, put, put_request, query, query_for, scan_ids,
};
use allidb_tests::{Daemon, doc_entity};
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_behaves_per_the_wire_contract() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;

    // HealthCheck needs no key and reports the crate version.
    let health = client
        .health_check(pb::HealthCheckRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.healthy);
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    assert!(health.timestamp_nanos > 0);

    // PutEntity: replaces, fills versions, keeps created_at, mirrors out-edges as in-edges.
    let mut a = doc_entity("a", &[1.0, 0.0, 0.0, 0.0]);
    a.outgoing_edges.push(pb::GraphEdge {
        to_entity: "b".into(),
        relation: "cites".into(),
        weight: 1.0,
        ..Default::default()
    });
    a.attributes.insert("lang".into(), "en".into());
    let reply = client
        .put_entity(put_request(a.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.success, reply.entity_id.as_str()), (true, "a"));
    put(&mut client, None, doc_entity("b", &[0.0, 1.0, 0.0, 0.0]))
        .await
        .unwrap();
    let stored_a = get(&mut client, None, "a").await.unwrap();
    assert_eq!(stored_a.tenant_id, "default");
    assert_eq!(stored_a.embeddings[0].version, 1);
    assert!(stored_a.created_at_nanos > 0);
    assert_eq!(stored_a.outgoing_edges.len(), 1);
    let stored_b = get(&mut client, None, "b").await.unwrap();
    assert_eq!(stored_b.incoming_edges.len(), 1, "{stored_b:?}");
    assert_eq!(stored_b.incoming_edges[0].from_entity, "a");
    put(&mut client, None, a.clone()).await.unwrap();
    let again = get(&mut client, None, "a").await.unwrap();
    assert_eq!(again.created_at_nanos, stored_a.created_at_nanos);
    assert!(again.updated_at_nanos >= stored_a.updated_at_nanos);

    // PutEntity errors.
    expect_code(
        client.put_entity(pb::PutEntityRequest::default()).await,
        Code::InvalidArgument,
    );
    expect_code(
        client
            .put_entity(put_request(doc_entity("", &[1.0; 4])))
            .await,
        Code::InvalidArgument,
    );
    let mut foreign = doc_entity("f", &[1.0; 4]);
    foreign.tenant_id = "someone-else".into();
    expect_code(
        client.put_entity(put_request(foreign)).await,
        Code::PermissionDenied,
    );
    let mut bad_level = put_request(doc_entity("c", &[1.0; 4]));
    bad_level.consistency_level = 9;
    expect_code(client.put_entity(bad_level).await, Code::InvalidArgument);

    // BatchPutEntities: per-entity outcome; empty list is INVALID_ARGUMENT.
    expect_code(
        client
            .batch_put_entities(pb::BatchPutEntitiesRequest::default())
            .await,
        Code::InvalidArgument,
    );
    let mut mismatched = doc_entity("m", &[1.0; 4]);
    mismatched.tenant_id = "other".into();
    let batch = client
        .batch_put_entities(pb::BatchPutEntitiesRequest {
            entities: vec![
                doc_entity("c", &axis(2, 0.1)),
                doc_entity("", &[1.0; 4]),
                mismatched,
                doc_entity("wrongdim", &[1.0; 3]),
                doc_entity("d", &axis(3, 0.1)),
            ],
            consistency_level: pb::ConsistencyLevel::ConsistencyQuorum as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (batch.success_count, batch.failure_count),
        (2, 3),
        "{batch:?}"
    );
    assert!(!batch.success);
    assert_eq!(batch.entity_ids, ["c", "d"]);
    assert!(
        batch.error_message.contains("entity_id"),
        "{}",
        batch.error_message
    );
    assert!(get(&mut client, None, "wrongdim").await.is_none());

    // Query: identical vector scores 1.5 with defaults; trace id echoed; k results at most.
    let response = query(
        &mut client,
        None,
        pb::QueryRequest {
            trace_id: "trace-1".into(),
            max_hops: Some(0),
            ..query_for(&axis(2, 0.1), 1)
        },
    )
    .await;
    assert_eq!(response.trace_id, "trace-1");
    assert_eq!(response.total_results, 1);
    let top = &response.results[0];
    assert_eq!(top.entity_id, "c");
    assert!((top.score - 1.5).abs() < 1e-3, "score {}", top.score);
    assert_eq!(top.entity.as_ref().unwrap().entity_id, "c");
    assert!(top.explanation.is_none());
    // k <= 0 means 10 (there are 4 entities); results sorted by score descending.
    let all = query(&mut client, None, query_for(&[1.0, 0.0, 0.0, 0.0], 0)).await;
    assert_eq!(all.results.len(), 4);
    assert_eq!(all.results[0].entity_id, "a");
    assert!(all.results.windows(2).all(|w| w[0].score >= w[1].score));
    // The filter applies before the top k: the best "en" match is found with k = 1 even when
    // unfiltered candidates are closer.
    let filtered = query(
        &mut client,
        None,
        pb::QueryRequest {
            filter: Some(pb::QueryFilter {
                attributes: BTreeMap::from([("lang".into(), "en".into())]),
                ..Default::default()
            }),
            include_entity: Some(false),
            explain: true,
            ..query_for(&[0.0, 1.0, 0.0, 0.0], 1)
        },
    )
    .await;
    assert_eq!(filtered.results.len(), 1);
    assert_eq!(filtered.results[0].entity_id, "a");
    assert!(filtered.results[0].entity.is_none());
    let explanation = filtered.results[0].explanation.as_ref().unwrap();
    assert_eq!(explanation.path.as_ref().unwrap().entity_ids, ["a"]);
    // Graph expansion reaches b from a with max_hops 1 and explains the path.
    let expanded = query(
        &mut client,
        None,
        pb::QueryRequest {
            max_hops: Some(1),
            explain: true,
            expand_factor: 1,
            filter: Some(pb::QueryFilter {
                entity_types: vec!["doc".into()],
                ..Default::default()
            }),
            ..query_for(&[1.0, 0.0, 0.0, 0.0], 10)
        },
    )
    .await;
    let b = expanded
        .results
        .iter()
        .find(|r| r.entity_id == "b")
        .expect("b is reached");
    assert!(b.explanation.as_ref().unwrap().graph_score > 0.0 || b.score > 0.0);
    expect_code(client.query(query_for(&[], 3)).await, Code::InvalidArgument);
    expect_code(
        client.query(query_for(&[1.0, 2.0], 3)).await,
        Code::InvalidArgument,
    );

    // RangeScan: ordered pages, tokens, bounds, node and tenant checks.
    assert_eq!(scan_ids(&mut client, None, 1).await, ["a", "b", "c", "d"]);
    assert_eq!(scan_ids(&mut client, None, 0).await, ["a", "b", "c", "d"]);
    let bounded = client
        .range_scan(pb::RangeScanRequest {
            start_key: "b".into(),
            end_key: "d".into(),
            node_id: allidb_api::service::DEFAULT_NODE_ID.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = bounded
        .entities
        .iter()
        .map(|e| e.entity_id.as_str())
        .collect();
    assert_eq!(ids, ["b", "c"]);
    assert!(bounded.next_page_token.is_empty());
    let refused = [
        (
            pb::RangeScanRequest {
                page_token: "!!not-a-token!!".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            pb::RangeScanRequest {
                node_id: "node-9".into(),
                ..Default::default()
            },
            Code::NotFound,
        ),
        (
            pb::RangeScanRequest {
                tenant_id: "other".into(),
                ..Default::default()
            },
            Code::PermissionDenied,
        ),
    ];
    for (request, code) in refused {
        expect_code(client.range_scan(request).await, code);
    }

    // GetEntities: request order, missing ids.
    let many = client
        .get_entities(pb::GetEntitiesRequest {
            entity_ids: vec!["d".into(), "zz".into(), "a".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = many.entities.iter().map(|e| e.entity_id.as_str()).collect();
    assert_eq!(ids, ["d", "a"]);
    assert_eq!(many.missing_ids, ["zz"]);
    expect_code(
        client.get_entities(pb::GetEntitiesRequest::default()).await,
        Code::InvalidArgument,
    );
    expect_code(
        client.get_entity(pb::GetEntityRequest::default()).await,
        Code::InvalidArgument,
    );

    // AddEdges / RemoveEdges / Traverse.
    let added = client
        .add_edges(pb::AddEdgesRequest {
            edges: vec![pb::GraphEdge {
                from_entity: "b".into(),
                to_entity: "c".into(),
                relation: "links".into(),
                weight: 0.5,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.success, added.edge_count), (true, 1));
    let traversal = client
        .traverse(pb::TraverseRequest {
            start_ids: vec!["a".into()],
            max_hops: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reached: Vec<_> = traversal
        .nodes
        .iter()
        .map(|n| (n.entity_id.as_str(), n.depth))
        .collect();
    assert_eq!(reached, [("a", 0), ("b", 1), ("c", 2)]);
    let c_path = traversal.nodes[2].path.as_ref().unwrap();
    assert_eq!(c_path.entity_ids, ["a", "b", "c"]);
    assert_eq!(traversal.nodes[2].entity.as_ref().unwrap().entity_id, "c");
    let backwards = client
        .traverse(pb::TraverseRequest {
            start_ids: vec!["c".into()],
            max_hops: 3,
            direction: pb::Direction::In as i32,
            relations: vec!["links".into()],
            include_entity: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reached: Vec<_> = backwards
        .nodes
        .iter()
        .map(|n| n.entity_id.as_str())
        .collect();
    assert_eq!(reached, ["c", "b"]);
    assert!(backwards.nodes[1].entity.is_none());
    let removed = client
        .remove_edges(pb::RemoveEdgesRequest {
            edges: vec![pb::EdgeKey {
                from_entity: "b".into(),
                to_entity: "c".into(),
                relation: "links".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.edge_count, 1);
    let traversal = client
        .traverse(pb::TraverseRequest {
            start_ids: vec!["a".into()],
            max_hops: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(traversal.nodes.len(), 2);
    expect_code(
        client.add_edges(pb::AddEdgesRequest::default()).await,
        Code::InvalidArgument,
    );
    expect_code(
        client.traverse(pb::TraverseRequest::default()).await,
        Code::InvalidArgument,
    );

    // DeleteEntity: gone from get, scan, query and traversal.
    let deleted = client
        .delete_entity(pb::DeleteEntityRequest {
            entity_id: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.success && deleted.found);
    let again = client
        .delete_entity(pb::DeleteEntityRequest {
            entity_id: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.found);
    assert!(get(&mut client, None, "b").await.is_none());
    assert_eq!(scan_ids(&mut client, None, 10).await, ["a", "c", "d"]);
    let results = query(&mut client, None, query_for(&[0.0, 1.0, 0.0, 0.0], 10)).await;
    assert!(results.results.iter().all(|r| r.entity_id != "b"));
    let traversal = client
        .traverse(pb::TraverseRequest {
            start_ids: vec!["a".into()],
            max_hops: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reached: Vec<_> = traversal
        .nodes
        .iter()
        .map(|n| n.entity_id.as_str())
        .collect();
    assert_eq!(reached, ["a"]);

    // BulkPutEntities: a client stream of chunks, one summary.
    let chunks = vec![
        pb::BulkPutEntitiesRequest {
            entities: (0..50)
                .map(|i| doc_entity(&format!("bulk-{i:03}"), &axis(i, 0.2)))
                .collect(),
            ..Default::default()
        },
        pb::BulkPutEntitiesRequest {
            entities: vec![
                doc_entity("bulk-bad", &[f32::NAN; 4]),
                doc_entity("bulk-050", &axis(1, 0.3)),
            ],
            ..Default::default()
        },
    ];
    let summary = client
        .bulk_put_entities(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.success_count, summary.failure_count), (51, 1));
    assert_eq!(summary.failures[0].entity_id, "bulk-bad");
    assert_eq!(scan_ids(&mut client, None, 1000).await.len(), 3 + 51);

    // ReplicaRead / ReplicaWrite (auth disabled = default tenant, admin role).
    let value = client
        .replica_read(pb::ReplicaReadRequest {
            key: "default:a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    let decoded = <pb::Entity as prost::Message>::decode(value.as_slice()).unwrap();
    assert_eq!(decoded.entity_id, "a");
    let missing = client
        .replica_read(pb::ReplicaReadRequest {
            key: "default:nope".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.value.is_empty());
    let written = client
        .replica_write(pb::ReplicaWriteRequest {
            key: "default:r1".into(),
            value: prost::Message::encode_to_vec(&doc_entity("", &axis(0, 0.5))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(written.success);
    assert!(get(&mut client, None, "r1").await.is_some());
    for (key, value, expected) in [
        ("", vec![], Code::InvalidArgument),
        ("no-colon", vec![], Code::InvalidArgument),
        ("other:a", vec![], Code::PermissionDenied),
        (
            "default:r2",
            b"\xff\xff\xff garbage".to_vec(),
            Code::InvalidArgument,
        ),
    ] {
        expect_code(
            client
                .replica_write(pb::ReplicaWriteRequest {
                    key: key.into(),
                    value,
                    ..Default::default()
                })
                .await,
            expected,
        );
    }
    expect_code(
        client
            .replica_read(pb::ReplicaReadRequest {
                key: "default:a".into(),
                tenant_id: "other".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    assert_healthy(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_services_answer() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let daemon = Daemon::start("[auth]\nenabled = true\n");
    let channel = daemon.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "allidb.AlliDB"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    // The AlliDB HealthCheck needs no key even with auth enabled.
    let mut client = AlliDbClient::new(channel.clone());
    assert_healthy(&mut client).await;

    let mut reflection = ServerReflectionClient::new(channel);
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in ["allidb.AlliDB", "grpc.health.v1.Health"] {
        assert!(names.contains(&expected), "{names:?}");
    }
}
