//! End-to-end tests of API key authorization against a real `allidbd`: the role every RPC and
//! HTTP route needs (one table each, checked against every key kind, and the table against the
//! service's descriptor), and expired keys. Key file reload, failed-authentication logging and
//! `allidb keys generate` are in `auth_keys.rs`; the `Checkpoint` operation under concurrent
//! writes in `checkpoint_restore.rs`; the daemon with its keys they share in
//! `allidb_tests::auth`.

use allidb_api::auth::Role;
use allidb_api::pb;
use allidb_tests::auth::{
    ADMIN_KEY, EXPIRED_KEY, Fixture, READ_KEY, TENANT, WRITE_KEY, standard_keys,
};
use allidb_tests::{Client, doc_entity, http_call, request};
use prost::Message;
use tonic::{Code, Status};

const UNKNOWN_KEY: &str = "nobody-knows-this-key";

fn edge(from: &str, to: &str) -> pb::GraphEdge {
    pb::GraphEdge {
        from_entity: from.to_owned(),
        to_entity: to.to_owned(),
        relation: "cites".to_owned(),
        weight: 1.0,
        timestamp_nanos: 0,
        source_ids: Vec::new(),
    }
}

/// Every RPC of `allidb.AlliDB` that needs a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    PutEntity,
    BatchPutEntities,
    BulkPutEntities,
    DeleteEntity,
    DeleteBySource,
    ReplaceSource,
    DeleteByFilter,
    AddEdges,
    RemoveEdges,
    Query,
    QueryBatch,
    RangeScan,
    GetEntity,
    GetEntities,
    Traverse,
    ReplicaRead,
    ReplicaWrite,
    Checkpoint,
    ListTenants,
    GetTenantStats,
    Repair,
    Rebuild,
    Compact,
    Decommission,
    RemoveNode,
    Cleanup,
    DropTenant,
}

/// In call order: `DropTenant` last (it erases the tenant the others read).
const RPCS: &[Rpc] = &[
    Rpc::PutEntity,
    Rpc::BatchPutEntities,
    Rpc::BulkPutEntities,
    Rpc::DeleteEntity,
    Rpc::DeleteBySource,
    Rpc::ReplaceSource,
    Rpc::DeleteByFilter,
    Rpc::AddEdges,
    Rpc::RemoveEdges,
    Rpc::Query,
    Rpc::QueryBatch,
    Rpc::RangeScan,
    Rpc::GetEntity,
    Rpc::GetEntities,
    Rpc::Traverse,
    Rpc::ReplicaRead,
    Rpc::ReplicaWrite,
    Rpc::Checkpoint,
    Rpc::ListTenants,
    Rpc::GetTenantStats,
    Rpc::Repair,
    Rpc::Rebuild,
    Rpc::Compact,
    Rpc::Decommission,
    Rpc::RemoveNode,
    Rpc::Cleanup,
    Rpc::DropTenant,
];

impl Rpc {
    /// The role the RPC needs (docs/operations.md "Key management").
    fn needs(self) -> Role {
        match self {
            Rpc::Query
            | Rpc::QueryBatch
            | Rpc::RangeScan
            | Rpc::GetEntity
            | Rpc::GetEntities
            | Rpc::Traverse => Role::Read,
            Rpc::PutEntity
            | Rpc::BatchPutEntities
            | Rpc::BulkPutEntities
            | Rpc::DeleteEntity
            | Rpc::DeleteBySource
            | Rpc::ReplaceSource
            | Rpc::DeleteByFilter
            | Rpc::AddEdges
            | Rpc::RemoveEdges => Role::Write,
            Rpc::ReplicaRead
            | Rpc::ReplicaWrite
            | Rpc::Checkpoint
            | Rpc::ListTenants
            | Rpc::GetTenantStats
            | Rpc::Repair
            | Rpc::Rebuild
            | Rpc::Compact
            | Rpc::Decommission
            | Rpc::RemoveNode
            | Rpc::Cleanup
            | Rpc::DropTenant => Role::Admin,
        }
    }

    /// One valid call of the RPC with `key`.
    async fn call(
        self,
        client: &mut Client,
        key: Option<&str>,
        fx: &Fixture,
    ) -> Result<(), Status> {
        match self {
            Rpc::PutEntity => {
                let message = pb::PutEntityRequest {
                    entity: Some(doc_entity("p", &[1.0, 0.0, 0.0])),
                    ..Default::default()
                };
                client.put_entity(request(message, key)).await.map(drop)
            }
            Rpc::BatchPutEntities => {
                let message = pb::BatchPutEntitiesRequest {
                    entities: vec![doc_entity("b1", &[0.0, 1.0, 0.0])],
                    ..Default::default()
                };
                client
                    .batch_put_entities(request(message, key))
                    .await
                    .map(drop)
            }
            Rpc::BulkPutEntities => {
                let chunk = pb::BulkPutEntitiesRequest {
                    entities: vec![doc_entity("bulk1", &[0.0, 0.0, 1.0])],
                    ..Default::default()
                };
                let stream = tokio_stream::iter(vec![chunk]);
                client
                    .bulk_put_entities(request(stream, key))
                    .await
                    .map(drop)
            }
            Rpc::DeleteEntity => {
                let message = pb::DeleteEntityRequest {
                    entity_id: "gone".to_owned(),
                    ..Default::default()
                };
                client.delete_entity(request(message, key)).await.map(drop)
            }
            Rpc::DeleteBySource => {
                let message = pb::DeleteBySourceRequest {
                    source_id: "doc-gone".to_owned(),
                    ..Default::default()
                };
                client
                    .delete_by_source(request(message, key))
                    .await
                    .map(drop)
            }
            Rpc::ReplaceSource => {
                let message = pb::ReplaceSourceRequest {
                    source_id: "doc-r".to_owned(),
                    entities: vec![doc_entity("r1", &[0.5, 0.5, 0.0])],
                    ..Default::default()
                };
                client.replace_source(request(message, key)).await.map(drop)
            }
            Rpc::DeleteByFilter => {
                let message = pb::DeleteByFilterRequest {
                    filter: Some(pb::QueryFilter {
                        entity_types: vec!["nothing-has-this-type".to_owned()],
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                client
                    .delete_by_filter(request(message, key))
                    .await
                    .map(drop)
            }
            Rpc::AddEdges => {
                let message = pb::AddEdgesRequest {
                    edges: vec![edge("a", "b")],
                    ..Default::default()
                };
                client.add_edges(request(message, key)).await.map(drop)
            }
            Rpc::RemoveEdges => {
                let message = pb::RemoveEdgesRequest {
                    edges: vec![pb::EdgeKey {
                        from_entity: "b".to_owned(),
                        to_entity: "a".to_owned(),
                        relation: "cites".to_owned(),
                    }],
                    ..Default::default()
                };
                client.remove_edges(request(message, key)).await.map(drop)
            }
            Rpc::Query => {
                let message = pb::QueryRequest {
                    query_vector: vec![1.0, 0.0, 0.0],
                    k: 3,
                    ..Default::default()
                };
                client.query(request(message, key)).await.map(drop)
            }
            Rpc::QueryBatch => {
                let message = pb::QueryBatchRequest {
                    options: Some(pb::QueryRequest {
                        k: 2,
                        ..Default::default()
                    }),
                    vectors: vec![pb::QueryVector {
                        values: vec![1.0, 0.0, 0.0],
                    }],
                    texts: Vec::new(),
                };
                client.query_batch(request(message, key)).await.map(drop)
            }
            Rpc::RangeScan => client
                .range_scan(request(pb::RangeScanRequest::default(), key))
                .await
                .map(drop),
            Rpc::GetEntity => {
                let message = pb::GetEntityRequest {
                    entity_id: "a".to_owned(),
                    ..Default::default()
                };
                client.get_entity(request(message, key)).await.map(drop)
            }
            Rpc::GetEntities => {
                let message = pb::GetEntitiesRequest {
                    entity_ids: vec!["a".to_owned(), "b".to_owned()],
                    ..Default::default()
                };
                client.get_entities(request(message, key)).await.map(drop)
            }
            Rpc::Traverse => {
                let message = pb::TraverseRequest {
                    start_ids: vec!["a".to_owned()],
                    ..Default::default()
                };
                client.traverse(request(message, key)).await.map(drop)
            }
            Rpc::ReplicaRead => {
                let message = pb::ReplicaReadRequest {
                    key: format!("{TENANT}:a"),
                    tenant_id: String::new(),
                };
                client.replica_read(request(message, key)).await.map(drop)
            }
            Rpc::ReplicaWrite => {
                let message = pb::ReplicaWriteRequest {
                    key: format!("{TENANT}:rw"),
                    value: doc_entity("rw", &[0.5, 0.5, 0.0]).encode_to_vec(),
                    tenant_id: String::new(),
                };
                client.replica_write(request(message, key)).await.map(drop)
            }
            Rpc::Checkpoint => {
                let target = fx.next_target();
                let message = pb::CheckpointRequest {
                    target_dir: target.display().to_string(),
                };
                let result = client.checkpoint(request(message, key)).await.map(drop);
                assert_eq!(
                    result.is_ok(),
                    target.join("lsm/CURRENT").exists(),
                    "a checkpoint is written exactly when the RPC succeeds ({result:?})"
                );
                result
            }
            Rpc::ListTenants => client
                .list_tenants(request(pb::ListTenantsRequest::default(), key))
                .await
                .map(drop),
            Rpc::GetTenantStats => {
                let message = pb::GetTenantStatsRequest {
                    tenant_id: TENANT.to_owned(),
                    ..Default::default()
                };
                client
                    .get_tenant_stats(request(message, key))
                    .await
                    .map(drop)
            }
            // Past the role and tenant checks, a node without [cluster] has nothing to repair
            // or rebuild: that refusal is the authorized outcome here.
            Rpc::Repair => {
                let message = pb::RepairRequest {
                    tenant_id: TENANT.to_owned(),
                    preview: true,
                    ..Default::default()
                };
                not_a_ring_is_authorized(client.repair(request(message, key)).await)
            }
            Rpc::Rebuild => {
                let message = pb::RebuildRequest {
                    tenant_id: TENANT.to_owned(),
                };
                not_a_ring_is_authorized(client.rebuild(request(message, key)).await)
            }
            // Past the role check, an admin key of one tenant may not compact every tenant's
            // files (docs/api.md "Compact"): that refusal is the authorized outcome here.
            Rpc::Compact => {
                let result = client.compact(request(pb::CompactRequest {}, key)).await;
                match result {
                    Err(status)
                        if status.code() == Code::PermissionDenied && key == Some(ADMIN_KEY) =>
                    {
                        assert!(status.message().contains("operator key"), "{status:?}");
                        Ok(())
                    }
                    other => other.map(drop),
                }
            }
            // Past the role check, an admin key of one tenant may not change the ring, and a
            // single node has no ring to change: both refusals are the authorized outcome.
            Rpc::Decommission => operator_ring_change_is_authorized(
                client
                    .decommission(request(pb::DecommissionRequest {}, key))
                    .await,
                key,
            ),
            Rpc::RemoveNode => {
                let message = pb::RemoveNodeRequest {
                    host_id: "00000000-0000-0000-0000-000000000001".to_owned(),
                    ignore_dead: false,
                };
                operator_ring_change_is_authorized(
                    client.remove_node(request(message, key)).await,
                    key,
                )
            }
            Rpc::Cleanup => operator_ring_change_is_authorized(
                client.cleanup(request(pb::CleanupRequest {}, key)).await,
                key,
            ),
            Rpc::DropTenant => {
                let message = pb::DropTenantRequest {
                    tenant_id: TENANT.to_owned(),
                    confirm: true,
                    ..Default::default()
                };
                client.drop_tenant(request(message, key)).await.map(drop)
            }
        }
    }

    /// The RPC's name in the proto.
    fn name(self) -> String {
        format!("{self:?}")
    }
}

/// Every HTTP route that needs a key.
#[derive(Clone, Copy, Debug)]
enum Route {
    PutEntity,
    BatchPut,
    Query,
    QueryBatch,
    GetEntity,
    GetEntities,
    DeleteEntity,
    Scan,
    Traverse,
    AddEdges,
    RemoveEdges,
    Checkpoint,
    ListTenants,
    TenantStats,
    DropTenant,
}

/// In call order: `DropTenant` last.
const ROUTES: &[Route] = &[
    Route::PutEntity,
    Route::BatchPut,
    Route::Query,
    Route::QueryBatch,
    Route::GetEntity,
    Route::GetEntities,
    Route::DeleteEntity,
    Route::Scan,
    Route::Traverse,
    Route::AddEdges,
    Route::RemoveEdges,
    Route::Checkpoint,
    Route::ListTenants,
    Route::TenantStats,
    Route::DropTenant,
];

impl Route {
    /// The route's method, path, body and the role it needs.
    fn request(self, fx: &Fixture) -> (&'static str, &'static str, String, Role) {
        let post = |path, body: &str, role| ("POST", path, body.to_owned(), role);
        match self {
            Route::PutEntity => post(
                "/entity",
                r#"{"entity": {"entity_id": "hp", "embeddings": [{"vector": [1, 0, 0]}]}}"#,
                Role::Write,
            ),
            Route::BatchPut => post(
                "/entities/batch",
                r#"{"entities": [{"entity_id": "hb", "embeddings": [{"vector": [0, 1, 0]}]}]}"#,
                Role::Write,
            ),
            Route::Query => post(
                "/query",
                r#"{"query_vector": [1, 0, 0], "k": 2}"#,
                Role::Read,
            ),
            Route::QueryBatch => post(
                "/query/batch",
                r#"{"options": {"k": 2}, "vectors": [{"values": [1, 0, 0]}]}"#,
                Role::Read,
            ),
            Route::GetEntity => ("GET", "/entity/a", String::new(), Role::Read),
            Route::GetEntities => post("/entities/get", r#"{"entity_ids": ["a"]}"#, Role::Read),
            Route::DeleteEntity => ("DELETE", "/entity/gone", String::new(), Role::Write),
            Route::Scan => ("GET", "/entities?limit=5", String::new(), Role::Read),
            Route::Traverse => post("/traverse", r#"{"start_ids": ["a"]}"#, Role::Read),
            Route::AddEdges => post(
                "/edges",
                r#"{"edges": [{"from_entity": "a", "to_entity": "b", "relation": "r"}]}"#,
                Role::Write,
            ),
            Route::RemoveEdges => post(
                "/edges/remove",
                r#"{"edges": [{"from_entity": "a", "to_entity": "b", "relation": "r"}]}"#,
                Role::Write,
            ),
            Route::Checkpoint => {
                let body = serde_json::json!({ "target_dir": fx.next_target() }).to_string();
                ("POST", "/admin/checkpoint", body, Role::Admin)
            }
            Route::ListTenants => ("GET", "/admin/tenants", String::new(), Role::Admin),
            Route::TenantStats => post(
                "/admin/tenants/stats",
                r#"{"tenant_id": "acme"}"#,
                Role::Admin,
            ),
            Route::DropTenant => post(
                "/admin/tenants/drop",
                r#"{"tenant_id": "acme", "confirm": true}"#,
                Role::Admin,
            ),
        }
    }
}

/// The key kinds every RPC and route is called with, and the role each holds (`None`: the
/// call must be refused as unauthenticated).
const CALLERS: &[(Option<&str>, Option<Role>)] = &[
    (Some(READ_KEY), Some(Role::Read)),
    (Some(WRITE_KEY), Some(Role::Write)),
    (Some(ADMIN_KEY), Some(Role::Admin)),
    (None, None),
    (Some(UNKNOWN_KEY), None),
    (Some(EXPIRED_KEY), None),
];

/// What a caller holding `held` (no role = not authenticated) must get from an RPC that
/// `needs` a role.
fn expected_code(held: Option<Role>, needs: Role) -> Code {
    match held {
        None => Code::Unauthenticated,
        Some(role) if role >= needs => Code::Ok,
        Some(_) => Code::PermissionDenied,
    }
}

fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        other => panic!("no HTTP status expected for {other:?}"),
    }
}

async fn seed(client: &mut Client) {
    for (id, vector) in [("a", vec![1.0, 0.0, 0.0]), ("b", vec![0.0, 1.0, 0.0])] {
        let message = pb::PutEntityRequest {
            entity: Some(doc_entity(id, &vector)),
            ..Default::default()
        };
        client
            .put_entity(request(message, Some(ADMIN_KEY)))
            .await
            .expect("seeding succeeds");
    }
}

/// The RPC names of the service, from its descriptor.
fn service_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let file = set
        .file
        .iter()
        .find(|f| f.package() == "allidb")
        .expect("the allidb package");
    file.service[0]
        .method
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_and_route_enforces_its_role() {
    let fx = Fixture::start(&standard_keys());
    let mut client = fx.daemon.client().await;
    seed(&mut client).await;

    // The table covers every RPC of the service (HealthCheck needs no key, checked below).
    let mut listed: Vec<String> = RPCS.iter().map(|rpc| rpc.name()).collect();
    listed.push("HealthCheck".to_owned());
    listed.sort();
    let mut served = service_methods();
    served.sort();
    assert_eq!(listed, served, "the role table must list every RPC");

    for &rpc in RPCS {
        for &(key, held) in CALLERS {
            let expected = expected_code(held, rpc.needs());
            let code = match rpc.call(&mut client, key, &fx).await {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            };
            assert_eq!(code, expected, "{rpc:?} with key {key:?}");
        }
    }
    for &(key, _) in CALLERS {
        let health = client
            .health_check(request(pb::HealthCheckRequest {}, key))
            .await
            .expect("HealthCheck needs no key");
        assert!(health.get_ref().healthy);
    }

    // The RPC table ended with a drop of the tenant the routes read: write it again.
    seed(&mut client).await;
    let addr = fx.daemon.http_addr.expect("allidbd serves HTTP");
    for &route in ROUTES {
        for &(key, held) in CALLERS {
            let (method, path, body, needs) = route.request(&fx);
            let reply = http_call(addr, method, path, key, &body);
            let expected = http_status(expected_code(held, needs));
            assert_eq!(
                reply.status, expected,
                "{method} {path} with key {key:?}: {}",
                reply.body
            );
            if expected == 403 {
                assert!(reply.body.contains("PermissionDenied"), "{}", reply.body);
            }
        }
    }
    assert_eq!(http_call(addr, "GET", "/health", None, "").status, 200);

    let expired = client
        .range_scan(request(pb::RangeScanRequest::default(), Some(EXPIRED_KEY)))
        .await
        .unwrap_err();
    assert!(expired.message().contains("expired"), "{expired:?}");
}

/// A ring-only operator action's outcome on a node without `[cluster]`: its refusal there
/// (FAILED_PRECONDITION) counts as authorized.
/// A topology change past the role check: refused to an admin key of one tenant (it needs an
/// operator key), refused on a single node (no ring).
fn operator_ring_change_is_authorized<T>(
    result: Result<T, tonic::Status>,
    key: Option<&str>,
) -> Result<(), tonic::Status> {
    match result {
        Err(status) if status.code() == Code::PermissionDenied && key == Some(ADMIN_KEY) => {
            assert!(status.message().contains("operator key"), "{status:?}");
            Ok(())
        }
        other => not_a_ring_is_authorized(other),
    }
}

fn not_a_ring_is_authorized<T>(result: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    match result {
        Err(status) if status.code() == Code::FailedPrecondition => {
            assert!(
                status.message().contains("not part of a ring"),
                "{status:?}"
            );
            Ok(())
        }
        other => other.map(drop),
    }
}
