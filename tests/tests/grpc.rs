//! End-to-end tests of the gRPC API against a real `allidbd` (WIRE.md §1): every RPC and its
//! error cases, durability across SIGKILL, tenant isolation with two tenants' keys, bad input
//! (the daemon keeps serving after each), the health and reflection services, and startup
//! refusals of bad configuration.

use std::collections::BTreeMap;
use std::process::Stdio;

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, doc_entity, key_line, request};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

type Client = AlliDbClient<Channel>;

fn put_request(entity: pb::Entity) -> pb::PutEntityRequest {
    pb::PutEntityRequest {
        entity: Some(entity),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<Response<T>, Status>) -> Code {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status.code(),
    }
}

/// Asserts `result` failed with `expected`; returns the message.
fn expect_code<T: std::fmt::Debug>(result: Result<Response<T>, Status>, expected: Code) -> String {
    match result {
        Ok(response) => panic!("expected {expected:?}, got {:?}", response.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), expected, "{}", status.message());
            status.message().to_owned()
        }
    }
}

async fn put(client: &mut Client, key: Option<&str>, e: pb::Entity) -> Result<(), Status> {
    let response = client.put_entity(request(put_request(e), key)).await?;
    assert!(response.get_ref().success);
    Ok(())
}

async fn get(client: &mut Client, key: Option<&str>, id: &str) -> Option<pb::Entity> {
    let response = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: id.to_owned(),
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("get succeeds")
        .into_inner();
    assert_eq!(response.found, response.entity.is_some());
    response.entity
}

async fn scan_ids(client: &mut Client, key: Option<&str>, limit: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .range_scan(request(
                pb::RangeScanRequest {
                    limit,
                    page_token: token,
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("scan succeeds")
            .into_inner();
        let page_size = usize::try_from(limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(100);
        assert!(page.entities.len() <= page_size);
        ids.extend(page.entities.into_iter().map(|e| e.entity_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

async fn query(client: &mut Client, key: Option<&str>, q: pb::QueryRequest) -> pb::QueryResponse {
    client
        .query(request(q, key))
        .await
        .expect("query succeeds")
        .into_inner()
}

fn query_for(vector: &[f32], k: i32) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vector.to_vec(),
        k,
        ..Default::default()
    }
}

async fn assert_healthy(client: &mut Client) {
    let health = client
        .health_check(pb::HealthCheckRequest {})
        .await
        .expect("HealthCheck answers")
        .into_inner();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.status, "healthy");
}

/// A unit vector along axis `i` of 4 dimensions, slightly tilted so entities are distinct.
fn axis(i: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![tilt; 4];
    v[i % 4] = 1.0;
    v
}

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

const TENANT_KEYS: &[(&str, &str, &str)] = &[
    ("key-a-write", "tenant-a", "write"),
    ("key-a-read", "tenant-a", "read"),
    ("key-b-admin", "tenant-b", "admin"),
    ("key-b-write", "tenant-b", "write"),
];

fn start_with_tenants() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let keys: String = TENANT_KEYS
        .iter()
        .map(|(key, tenant, role)| key_line(key, tenant, role))
        .collect();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, keys).unwrap();
    let daemon = Daemon::start(&format!(
        "[auth]\nenabled = true\nkey_file = {:?}\nkeys_env = \"\"\n",
        key_file.display().to_string()
    ));
    // The key file was read at startup; the directory may go.
    drop(dir);
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_decide_tenant_and_role_and_tenants_are_isolated() {
    let daemon = start_with_tenants();
    let mut client = daemon.client().await;
    let a = Some("key-a-write");
    let a_read = Some("key-a-read");
    let b = Some("key-b-write");
    let b_admin = Some("key-b-admin");

    // Missing, empty and unknown keys: UNAUTHENTICATED on every RPC but HealthCheck.
    for key in [None, Some(""), Some("no-such-key")] {
        assert_eq!(
            code(
                client
                    .put_entity(request(put_request(doc_entity("x", &[1.0; 4])), key))
                    .await
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                client
                    .get_entity(request(
                        pb::GetEntityRequest {
                            entity_id: "x".into(),
                            ..Default::default()
                        },
                        key
                    ))
                    .await
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(client.query(request(query_for(&[1.0; 4], 1), key)).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                client
                    .range_scan(request(pb::RangeScanRequest::default(), key))
                    .await
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                client
                    .replica_read(request(
                        pb::ReplicaReadRequest {
                            key: "tenant-a:x".into(),
                            ..Default::default()
                        },
                        key
                    ))
                    .await
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                client
                    .bulk_put_entities(request(
                        tokio_stream::iter(Vec::<pb::BulkPutEntitiesRequest>::new()),
                        key
                    ))
                    .await
            ),
            Code::Unauthenticated
        );
    }
    assert_healthy(&mut client).await;

    // Roles: read cannot write; write cannot use the replica RPCs.
    assert_eq!(
        code(
            client
                .put_entity(request(put_request(doc_entity("x", &[1.0; 4])), a_read))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            client
                .replica_read(request(
                    pb::ReplicaReadRequest {
                        key: "tenant-a:x".into(),
                        ..Default::default()
                    },
                    a
                ))
                .await
        ),
        Code::PermissionDenied
    );

    // Tenant A writes; its read key sees the data.
    let mut secret = doc_entity("secret", &[1.0, 0.0, 0.0, 0.0]);
    secret.outgoing_edges.push(pb::GraphEdge {
        to_entity: "shared".into(),
        relation: "r".into(),
        weight: 1.0,
        ..Default::default()
    });
    put(&mut client, a, secret).await.unwrap();
    put(&mut client, a, doc_entity("shared", &[0.0, 1.0, 0.0, 0.0]))
        .await
        .unwrap();
    assert_eq!(
        get(&mut client, a_read, "secret").await.unwrap().tenant_id,
        "tenant-a"
    );

    // Tenant B cannot read, scan, query or traverse A's entities.
    assert!(get(&mut client, b, "secret").await.is_none());
    assert!(scan_ids(&mut client, b, 10).await.is_empty());
    assert_eq!(
        code(
            client
                .range_scan(request(
                    pb::RangeScanRequest {
                        tenant_id: "tenant-a".into(),
                        ..Default::default()
                    },
                    b
                ))
                .await
        ),
        Code::PermissionDenied
    );
    assert!(
        query(&mut client, b, query_for(&[1.0, 0.0, 0.0, 0.0], 10))
            .await
            .results
            .is_empty()
    );
    let traversal = client
        .traverse(request(
            pb::TraverseRequest {
                start_ids: vec!["secret".into()],
                max_hops: 3,
                ..Default::default()
            },
            b,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(traversal.nodes.is_empty(), "{traversal:?}");

    // ... nor write into A: tenant_id fields and replica keys naming A are refused.
    let mut into_a = doc_entity("secret", &[0.5; 4]);
    into_a.tenant_id = "tenant-a".into();
    assert_eq!(
        code(
            client
                .put_entity(request(put_request(into_a.clone()), b))
                .await
        ),
        Code::PermissionDenied
    );
    let batch = client
        .batch_put_entities(request(
            pb::BatchPutEntitiesRequest {
                entities: vec![into_a],
                ..Default::default()
            },
            b,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((batch.success_count, batch.failure_count), (0, 1));
    for (key, tenant_id) in [("tenant-a:secret", ""), ("tenant-b:secret", "tenant-a")] {
        assert_eq!(
            code(
                client
                    .replica_read(request(
                        pb::ReplicaReadRequest {
                            key: key.into(),
                            tenant_id: tenant_id.into()
                        },
                        b_admin
                    ))
                    .await
            ),
            Code::PermissionDenied
        );
        assert_eq!(
            code(
                client
                    .replica_write(request(
                        pb::ReplicaWriteRequest {
                            key: key.into(),
                            value: prost::Message::encode_to_vec(&doc_entity("secret", &[0.5; 4])),
                            tenant_id: tenant_id.into(),
                        },
                        b_admin,
                    ))
                    .await
            ),
            Code::PermissionDenied
        );
    }

    // Shadowing: B writes the same id in its own tenant; A's entity is untouched.
    let mut shadow = doc_entity("secret", &[0.0, 0.0, 0.0, 1.0]);
    shadow.entity_type = "shadow".into();
    put(&mut client, b, shadow).await.unwrap();
    let deleted = client
        .delete_entity(request(
            pb::DeleteEntityRequest {
                entity_id: "shared".into(),
                ..Default::default()
            },
            b,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!deleted.found);
    client
        .add_edges(request(
            pb::AddEdgesRequest {
                edges: vec![pb::GraphEdge {
                    from_entity: "shared".into(),
                    to_entity: "secret".into(),
                    relation: "r".into(),
                    weight: 1.0,
                    ..Default::default()
                }],
                ..Default::default()
            },
            b,
        ))
        .await
        .unwrap();
    client
        .remove_edges(request(
            pb::RemoveEdgesRequest {
                edges: vec![pb::EdgeKey {
                    from_entity: "secret".into(),
                    to_entity: "shared".into(),
                    relation: "r".into(),
                }],
                ..Default::default()
            },
            b,
        ))
        .await
        .unwrap();
    let a_secret = get(&mut client, a, "secret").await.unwrap();
    assert_eq!(a_secret.entity_type, "doc");
    assert_eq!(a_secret.embeddings[0].vector, [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(a_secret.outgoing_edges.len(), 1);
    assert!(a_secret.incoming_edges.is_empty(), "{a_secret:?}");
    assert!(get(&mut client, a, "shared").await.is_some());
    assert_eq!(scan_ids(&mut client, a, 10).await, ["secret", "shared"]);
    // B's edge write created no entity "shared" in B.
    assert_eq!(scan_ids(&mut client, b, 10).await, ["secret"]);
    let b_secret = get(&mut client, b, "secret").await.unwrap();
    assert_eq!(
        (b_secret.tenant_id.as_str(), b_secret.entity_type.as_str()),
        ("tenant-b", "shadow")
    );
    // A's query ranks only A's entities.
    let results = query(&mut client, a, query_for(&[0.0, 0.0, 0.0, 1.0], 10)).await;
    assert!(
        results
            .results
            .iter()
            .all(|r| r.entity.as_ref().unwrap().tenant_id == "tenant-a")
    );
    // B's admin key reads its own entity through the replica RPC.
    let own = client
        .replica_read(request(
            pb::ReplicaReadRequest {
                key: "tenant-b:secret".into(),
                ..Default::default()
            },
            b_admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let decoded = <pb::Entity as prost::Message>::decode(own.value.as_slice()).unwrap();
    assert_eq!(decoded.entity_type, "shadow");
    assert_healthy(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start("[server]\nmax_request_bytes = 65536\n");
    let mut client = daemon.client().await;
    put(&mut client, None, doc_entity("ok", &[1.0, 0.0, 0.0]))
        .await
        .unwrap();

    let mut huge = doc_entity("huge", &[1.0, 0.0, 0.0]);
    huge.chunks.push(pb::TextChunk {
        chunk_id: "c".into(),
        text: "x".repeat(100_000),
        ..Default::default()
    });
    let long_id = "i".repeat(513);
    let cases: Vec<(&str, pb::PutEntityRequest, Code)> = vec![
        ("oversized message", put_request(huge), Code::OutOfRange),
        (
            "NaN",
            put_request(doc_entity("n", &[f32::NAN, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "infinity",
            put_request(doc_entity("n", &[f32::INFINITY, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "wrong dimension",
            put_request(doc_entity("n", &[1.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "empty id",
            put_request(doc_entity("", &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "oversized id",
            put_request(doc_entity(&long_id, &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "NUL in id",
            put_request(doc_entity("a\0b", &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
    ];
    for (what, put_request, expected) in cases {
        let message = expect_code(client.put_entity(put_request).await, expected);
        assert!(!message.is_empty(), "{what}");
        assert_healthy(&mut client).await;
    }
    let dimension = expect_code(
        client
            .put_entity(put_request(doc_entity("n", &[1.0, 0.0])))
            .await,
        Code::InvalidArgument,
    );
    assert!(dimension.contains("dimension"), "{dimension}");

    let queries = [
        query_for(&[f32::NAN, 0.0, 0.0], 1),
        query_for(&[f32::NEG_INFINITY, 0.0, 0.0], 1),
        query_for(&[1.0, 0.0], 1),
        query_for(&[1.0, 0.0, 0.0], 1_000_000),
    ];
    for q in queries {
        expect_code(client.query(q).await, Code::InvalidArgument);
        assert_healthy(&mut client).await;
    }
    for token in ["%%%", "AA", "Ag"] {
        expect_code(
            client
                .range_scan(pb::RangeScanRequest {
                    page_token: token.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
        assert_healthy(&mut client).await;
    }
    expect_code(
        client
            .get_entity(pb::GetEntityRequest {
                entity_id: long_id.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(get(&mut client, None, "ok").await.is_some());
    assert_healthy(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_graceful_restart() {
    const N: usize = 120;
    let mut daemon = Daemon::start("[storage]\ndurability = \"sync\"\n");
    let mut client = daemon.client().await;
    for i in 0..N {
        put(
            &mut client,
            None,
            doc_entity(&format!("e{i:04}"), &axis(i, i as f32 / N as f32)),
        )
        .await
        .unwrap();
    }
    daemon.kill();
    daemon.restart();

    let mut client = daemon.client().await;
    for i in 0..N {
        let id = format!("e{i:04}");
        let found = get(&mut client, None, &id)
            .await
            .unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(found.embeddings[0].vector, axis(i, i as f32 / N as f32));
    }
    let ids = scan_ids(&mut client, None, 50).await;
    assert_eq!(ids.len(), N);
    let probe = axis(7, 7.0 / N as f32);
    let top = query(
        &mut client,
        None,
        pb::QueryRequest {
            max_hops: Some(0),
            ..query_for(&probe, 3)
        },
    )
    .await;
    assert_eq!(top.results[0].entity_id, "e0007");

    // A graceful stop exits 0 and keeps everything too.
    put(
        &mut client,
        None,
        doc_entity("after-restart", &axis(0, 0.9)),
    )
    .await
    .unwrap();
    let status = daemon.stop();
    assert!(status.success(), "{status:?}; log:\n{}", daemon.log());
    daemon.restart();
    let mut client = daemon.client().await;
    assert!(get(&mut client, None, "after-restart").await.is_some());
    assert_eq!(scan_ids(&mut client, None, 1000).await.len(), N + 1);
}

/// Runs `allidbd` with `args` (and no config file), expecting it to refuse to start.
fn refused_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(allidb_tests::allidbd_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    let unknown = refused_start(&["--set", "index.bogus=1"]);
    assert!(unknown.contains("index.bogus"), "{unknown}");
    let range = refused_start(&["--set", "index.m=1"]);
    assert!(range.contains("index.m"), "{range}");
    let open = refused_start(&["--grpc-addr", "0.0.0.0:0"]);
    assert!(open.contains("server.grpc_addr"), "{open}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_vector_tail_refuses_writes_until_the_indexer_makes_room() {
    let daemon = Daemon::start("[index]\nmax_unindexed_vectors = 1\nmax_tail_wait_ms = 0\n");
    let mut client = daemon.client().await;
    let batch = |prefix: &str| pb::BatchPutEntitiesRequest {
        entities: (0..256)
            .map(|i| {
                let vector: Vec<f32> = (0..384).map(|d| ((i * 7 + d) % 13) as f32).collect();
                doc_entity(&format!("{prefix}{i:03}"), &vector)
            })
            .collect(),
        ..Default::default()
    };
    // 256 vectors fill a tail of 1 until the indexer has inserted them into HNSW.
    let first = client.batch_put_entities(request(batch("a"), None)).await;
    assert!(first.unwrap().into_inner().success);
    let message = expect_code(
        client.batch_put_entities(request(batch("b"), None)).await,
        Code::ResourceExhausted,
    );
    assert!(
        message.contains("index.max_unindexed_vectors") && message.contains("retry later"),
        "{message}"
    );
    assert!(
        get(&mut client, None, "b000").await.is_none(),
        "a refused batch writes nothing"
    );
    // Writes without a vector never wait for the index.
    let no_vector = pb::Entity {
        entity_id: "plain".to_owned(),
        ..Default::default()
    };
    put(&mut client, None, no_vector).await.unwrap();
    // Once the indexer has caught up, the same batch goes through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match client.batch_put_entities(request(batch("b"), None)).await {
            Ok(reply) => {
                assert!(reply.into_inner().success);
                break;
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the tail never drained"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert!(get(&mut client, None, "b255").await.is_some());
}
