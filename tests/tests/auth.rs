//! End-to-end tests of API key authorization and operator actions against a real `allidbd`:
//! the role every RPC and HTTP route needs (one table each, checked against every key kind),
//! expired keys, key file reload on SIGHUP (add, remove, broken file), the counting and
//! rate-limited logging of failed authentications, `allidb keys generate`, and the `Checkpoint`
//! operation under concurrent writes, restored by starting a second daemon on the copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allidb_api::auth::{Role, hash_key};
use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, allidb_binary, doc_entity, http_call, key_line, request};
use prost::Message;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = AlliDbClient<Channel>;

const TENANT: &str = "acme";
const READ_KEY: &str = "acme-read-key";
const WRITE_KEY: &str = "acme-write-key";
const ADMIN_KEY: &str = "acme-admin-key";
/// An admin key that expired in 1970.
const EXPIRED_KEY: &str = "acme-expired-admin-key";
const UNKNOWN_KEY: &str = "nobody-knows-this-key";

/// How long a SIGHUP reload may take to show.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// The config of a daemon with auth on and keys from `key_file`.
fn config(key_file: &Path) -> String {
    format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n\n[storage]\nmemtable_bytes = 1048576\n",
        key_file.display().to_string()
    )
}

/// A key file with the read, write, admin and expired keys of [`TENANT`].
fn standard_keys() -> String {
    let expired = format!("{} {TENANT} admin 1\n", hash_key(EXPIRED_KEY));
    [
        key_line(READ_KEY, TENANT, "read"),
        key_line(WRITE_KEY, TENANT, "write"),
        key_line(ADMIN_KEY, TENANT, "admin"),
        expired,
    ]
    .concat()
}

/// A daemon on a key file it shares with the test (kept in `keys_dir`).
struct Fixture {
    daemon: Daemon,
    key_file: PathBuf,
    /// Checkpoint targets are created here, outside the data directory.
    scratch: tempfile::TempDir,
    targets: AtomicUsize,
    _keys_dir: tempfile::TempDir,
}

impl Fixture {
    fn start(keys: &str) -> Fixture {
        let keys_dir = tempfile::tempdir().expect("a temporary directory");
        let key_file = keys_dir.path().join("keys");
        std::fs::write(&key_file, keys).expect("the key file is written");
        Fixture {
            daemon: Daemon::start(&config(&key_file)),
            key_file,
            scratch: tempfile::tempdir().expect("a temporary directory"),
            targets: AtomicUsize::new(0),
            _keys_dir: keys_dir,
        }
    }

    /// A fresh checkpoint target path (not created).
    fn next_target(&self) -> PathBuf {
        let n = self.targets.fetch_add(1, Ordering::Relaxed);
        self.scratch.path().join(format!("checkpoint-{n}"))
    }
}

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

/// Whether `key` is accepted now (a read RPC succeeds; unauthenticated = refused).
async fn accepted(client: &mut Client, key: &str) -> bool {
    match client
        .range_scan(request(pb::RangeScanRequest::default(), Some(key)))
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == Code::Unauthenticated => false,
        Err(status) => panic!("unexpected status {status:?}"),
    }
}

/// Polls `condition` until it holds or [`RELOAD_TIMEOUT`] passes.
async fn eventually(what: &str, daemon: &Daemon, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_file_reloads_on_sighup_and_a_broken_file_keeps_the_old_keys() {
    const FIRST: &str = "first-key";
    const SECOND: &str = "second-key";
    let fx = Fixture::start(&key_line(FIRST, TENANT, "read"));
    let mut client = fx.daemon.client().await;
    assert!(accepted(&mut client, FIRST).await);
    assert!(!accepted(&mut client, SECOND).await);

    let both = format!(
        "{}{}",
        key_line(FIRST, TENANT, "read"),
        key_line(SECOND, TENANT, "read")
    );
    std::fs::write(&fx.key_file, both).unwrap();
    fx.daemon.hangup();
    eventually("adding a key", &fx.daemon, async || {
        accepted(&mut client, SECOND).await
    })
    .await;
    assert!(accepted(&mut client, FIRST).await);

    std::fs::write(&fx.key_file, key_line(SECOND, TENANT, "read")).unwrap();
    fx.daemon.hangup();
    eventually("removing a key", &fx.daemon, async || {
        !accepted(&mut client, FIRST).await
    })
    .await;
    let addr = fx.daemon.http_addr.expect("allidbd serves HTTP");
    assert_eq!(
        http_call(addr, "GET", "/entities", Some(FIRST), "").status,
        401
    );
    assert_eq!(
        http_call(addr, "GET", "/entities", Some(SECOND), "").status,
        200
    );

    std::fs::write(&fx.key_file, "this is not a key line\n").unwrap();
    fx.daemon.hangup();
    eventually("logging the failed reload", &fx.daemon, async || {
        fx.daemon.log().contains("API key reload failed")
    })
    .await;
    assert!(
        accepted(&mut client, SECOND).await,
        "the old keys stay in force"
    );
    assert!(!accepted(&mut client, FIRST).await);
    assert!(fx.daemon.pid().is_some(), "SIGHUP must not stop the daemon");
}

/// `(suppressed, failed_total)` of each failed-authentication log line.
fn failure_lines(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        let start = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} missing in {line}"))
            + name.len()
            + 1;
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
    };
    log.lines()
        .filter(|line| line.contains("API key authentication failed"))
        .map(|line| (field(line, "suppressed"), field(line, "failed_total")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_counted_and_logged_at_most_once_a_second() {
    const BURST: u64 = 200;
    let fx = Fixture::start(&key_line(READ_KEY, TENANT, "read"));
    let mut client = fx.daemon.client().await;
    let addr = fx.daemon.http_addr.expect("allidbd serves HTTP");
    let started = Instant::now();
    for i in 0..BURST {
        let key = format!("wrong-key-{i}");
        if i % 10 == 0 {
            assert_eq!(
                http_call(addr, "GET", "/entities", Some(&key), "").status,
                401
            );
        } else {
            assert!(!accepted(&mut client, &key).await);
        }
    }
    let burst_secs = started.elapsed().as_secs();
    assert!(
        accepted(&mut client, READ_KEY).await,
        "successes are not failures"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!accepted(&mut client, "one-more-wrong-key").await);
    let total = BURST + 1;

    eventually("logging the last failure", &fx.daemon, async || {
        failure_lines(&fx.daemon.log())
            .last()
            .is_some_and(|&(_, failed_total)| failed_total == total)
    })
    .await;
    let log = fx.daemon.log();
    let lines = failure_lines(&log);
    assert!(
        lines.len() as u64 <= burst_secs + 3,
        "{} lines for a {burst_secs} s burst:\n{log}",
        lines.len()
    );
    let represented: u64 = lines.iter().map(|&(suppressed, _)| suppressed + 1).sum();
    assert_eq!(
        represented, total,
        "every failure is logged or counted:\n{log}"
    );
    assert!(!log.contains("wrong-key"), "a key was logged");
    assert!(
        !log.contains(&hash_key("wrong-key-0")),
        "a key hash was logged"
    );
}

/// Runs the `allidb` CLI with `args` (no `ALLIDB_*` variable from the environment).
fn allidb(args: &[&str]) -> Output {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().expect("allidb runs")
}

fn labelled<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_keys_authenticate_and_the_cli_checkpoints_with_an_admin_key() {
    let admin = allidb(&[
        "keys",
        "generate",
        "--tenant",
        TENANT,
        "--role",
        "admin",
        "--expires-in",
        "1d",
    ]);
    assert!(admin.status.success(), "{admin:?}");
    let stdout = String::from_utf8(admin.stdout).unwrap();
    let stderr = String::from_utf8(admin.stderr).unwrap();
    let admin_key = labelled(&stdout, "api_key: ").to_owned();
    let admin_line = labelled(&stdout, "key_file_line: ").to_owned();
    assert!(admin_key.starts_with("allidb_"), "{admin_key}");
    assert!(stderr.contains("only this once"), "{stderr}");
    assert!(!stderr.contains(&admin_key), "the key is printed once");
    assert!(
        admin_line.starts_with(&hash_key(&admin_key)),
        "{admin_line}"
    );

    let reader = allidb(&[
        "--json", "keys", "generate", "--tenant", TENANT, "--role", "read",
    ]);
    assert!(reader.status.success(), "{reader:?}");
    let reader: Value = serde_json::from_slice(&reader.stdout).unwrap();
    let reader_key = reader["api_key"].as_str().unwrap().to_owned();
    assert_eq!(reader["role"], "read");
    assert!(reader["expires_at"].is_null());
    assert_ne!(reader_key, admin_key);

    let bad_tenant = allidb(&[
        "keys",
        "generate",
        "--tenant",
        "two words",
        "--role",
        "read",
    ]);
    assert_eq!(bad_tenant.status.code(), Some(1), "{bad_tenant:?}");
    assert!(String::from_utf8_lossy(&bad_tenant.stderr).contains("tenant"));
    let bad_role = allidb(&["keys", "generate", "--tenant", TENANT, "--role", "root"]);
    assert_eq!(bad_role.status.code(), Some(2), "{bad_role:?}");

    let keys = format!(
        "{admin_line}\n{}\n",
        reader["key_file_line"].as_str().unwrap()
    );
    let fx = Fixture::start(&keys);
    let mut client = fx.daemon.client().await;
    assert!(accepted(&mut client, &admin_key).await);
    assert!(accepted(&mut client, &reader_key).await);

    let addr = fx.daemon.grpc_url();
    let target = fx.next_target();
    let target_arg = target.display().to_string();
    let refused = allidb(&[
        "--addr",
        &addr,
        "--api-key",
        &reader_key,
        "checkpoint",
        &target_arg,
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
    assert!(!target.exists());
    let written = allidb(&[
        "--addr",
        &addr,
        "--api-key",
        &admin_key,
        "checkpoint",
        &target_arg,
    ]);
    assert!(written.status.success(), "{written:?}");
    assert!(String::from_utf8_lossy(&written.stdout).contains("checkpoint written to"));
    assert!(target.join("lsm/CURRENT").exists());
    assert!(target.join("index/CURRENT").exists());
}

/// Acknowledged writes in acknowledgement order: entity id and vector.
type AckedWrites = Arc<Mutex<Vec<(String, Vec<f32>)>>>;

fn vector_of(writer: usize, n: usize) -> Vec<f32> {
    (0..8)
        .map(|d| ((writer * 7919 + n * 31 + d * 17) as f32 * 0.618).sin())
        .collect()
}

/// Puts entities until `stop`, recording each acknowledged id (after its reply) in `acked`.
async fn write_until_stopped(
    mut client: Client,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: AckedWrites,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{writer}-{n:06}");
        let vector = vector_of(writer, n);
        let message = pb::PutEntityRequest {
            entity: Some(doc_entity(&id, &vector)),
            ..Default::default()
        };
        client
            .put_entity(request(message, Some(WRITE_KEY)))
            .await
            .expect("writes succeed during the checkpoint");
        acked.lock().unwrap().push((id, vector));
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_under_concurrent_writes_restores_every_acknowledged_write() {
    let fx = Fixture::start(&standard_keys());
    let mut client = fx.daemon.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: AckedWrites = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..3 {
        let client = fx.daemon.client().await;
        writers.push(tokio::spawn(write_until_stopped(
            client,
            writer,
            stop.clone(),
            acked.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for key in [READ_KEY, WRITE_KEY] {
        let target = fx.next_target();
        let message = pb::CheckpointRequest {
            target_dir: target.display().to_string(),
        };
        let denied = client.checkpoint(request(message, Some(key))).await;
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied, "{key}");
        assert!(!target.exists());
    }

    let target = fx.next_target();
    let before: Vec<(String, Vec<f32>)> = acked.lock().unwrap().clone();
    let reply = client
        .checkpoint(request(
            pb::CheckpointRequest {
                target_dir: target.display().to_string(),
            },
            Some(ADMIN_KEY),
        ))
        .await
        .expect("the checkpoint is written")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("the writer finishes");
    }
    assert!(
        before.len() > 100,
        "only {} writes before the checkpoint",
        before.len()
    );
    assert!(reply.covered_seq >= before.len() as u64, "{reply:?}");
    assert!(reply.index_covered_seq <= reply.covered_seq, "{reply:?}");
    assert!(
        acked.lock().unwrap().len() > before.len(),
        "writes went on meanwhile"
    );

    // Refusals name the field: a target that is now not empty, a relative path (gRPC and HTTP).
    for (target_dir, code, needle) in [
        (
            target.display().to_string(),
            Code::FailedPrecondition,
            "not empty",
        ),
        ("relative/dir".to_owned(), Code::InvalidArgument, "absolute"),
    ] {
        let status = client
            .checkpoint(request(
                pb::CheckpointRequest {
                    target_dir: target_dir.clone(),
                },
                Some(ADMIN_KEY),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains("target_dir"), "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    let http = fx.daemon.http_addr.expect("allidbd serves HTTP");
    let body = serde_json::json!({ "target_dir": target }).to_string();
    let reply_412 = http_call(http, "POST", "/admin/checkpoint", Some(ADMIN_KEY), &body);
    assert_eq!(reply_412.status, 412, "{}", reply_412.body);

    // Restore: a second daemon on the checkpoint has every acknowledged write, searchable.
    let restored = Daemon::start_on_data_dir(&config(&fx.key_file), &target);
    let mut restored_client = restored.client().await;
    for (id, vector) in &before {
        let found = restored_client
            .get_entity(request(
                pb::GetEntityRequest {
                    entity_id: id.clone(),
                    ..Default::default()
                },
                Some(READ_KEY),
            ))
            .await
            .expect("get succeeds")
            .into_inner();
        let stored = found.entity.unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(&stored.embeddings[0].vector, vector, "{id}");
        let hits = restored_client
            .query(request(
                pb::QueryRequest {
                    query_vector: vector.clone(),
                    k: 10,
                    max_hops: Some(0),
                    ef: 200,
                    include_entity: Some(false),
                    ..Default::default()
                },
                Some(READ_KEY),
            ))
            .await
            .expect("query succeeds")
            .into_inner();
        assert!(
            hits.results.iter().any(|hit| &hit.entity_id == id),
            "{id} not found by its vector"
        );
    }
    // The source keeps serving after the checkpoint.
    assert!(accepted(&mut client, READ_KEY).await);
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
