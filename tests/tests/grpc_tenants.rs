//! End-to-end tests of tenant isolation through the gRPC API against a real `allidbd` (WIRE.md
//! §1), with two tenants' keys: missing and unknown keys are refused on every RPC but
//! `HealthCheck`, the key's role decides what it may call, and one tenant can neither read nor
//! write the other's entities, edges or replica keys. The rest of the API is in `grpc.rs`.

use allidb_api::pb;
use allidb_tests::grpc::{assert_healthy, code, get, put, put_request, query, query_for, scan_ids};
use allidb_tests::{Daemon, doc_entity, request};
use tonic::Code;

const TENANT_KEYS: &[(&str, &str, &str)] = &[
    ("key-a-write", "tenant-a", "write"),
    ("key-a-read", "tenant-a", "read"),
    ("key-b-admin", "tenant-b", "admin"),
    ("key-b-write", "tenant-b", "write"),
];

fn start_with_tenants() -> Daemon {
    Daemon::start_with_keys(TENANT_KEYS)
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
