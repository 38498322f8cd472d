//! End-to-end tests of tenant administration (docs/api.md "Tenants") against a real `allidbd`
//! with API keys: the README walkthrough's 3-d vectors, a drop, then 384-d vectors accepted;
//! a drop under concurrent writes to the same and another tenant; a drop killed (SIGKILL) at
//! moments spread over its run, complete or not started after the restart; who may list, see
//! and drop what; the `allidb tenant` commands.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, allidb_binary, doc_entity, http_get, key_line, request};
use tonic::Code;
use tonic::transport::Channel;

const ADMIN: &str = "default-admin-key";
const OTHER_ADMIN: &str = "other-admin-key";
const WRITER: &str = "default-write-key";
const OPERATOR: &str = "operator-key";

/// A daemon with admin keys of `default` and `other`, a write key of `default` and an
/// operator key (an admin key of tenant `*`).
fn daemon() -> (Daemon, tempfile::TempDir) {
    let keys_dir = tempfile::tempdir().expect("a temporary directory");
    let key_file = keys_dir.path().join("keys");
    let keys = [
        key_line(ADMIN, "default", "admin"),
        key_line(OTHER_ADMIN, "other", "admin"),
        key_line(WRITER, "default", "write"),
        key_line(OPERATOR, "*", "admin"),
    ]
    .concat();
    std::fs::write(&key_file, keys).expect("the key file is written");
    let config = format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n",
        key_file.display().to_string()
    );
    (Daemon::start(&config), keys_dir)
}

async fn put(client: &mut AlliDbClient<Channel>, key: &str, id: &str, vector: &[f32]) {
    let message = pb::PutEntityRequest {
        entity: Some(doc_entity(id, vector)),
        ..Default::default()
    };
    client
        .put_entity(request(message, Some(key)))
        .await
        .unwrap_or_else(|status| panic!("put {id}: {status:?}"));
}

async fn ids(client: &mut AlliDbClient<Channel>, key: &str) -> Vec<String> {
    let message = pb::RangeScanRequest {
        limit: 1000,
        ..Default::default()
    };
    client
        .range_scan(request(message, Some(key)))
        .await
        .expect("a scan")
        .into_inner()
        .entities
        .into_iter()
        .map(|e| e.entity_id)
        .collect()
}

async fn drop_tenant(
    client: &mut AlliDbClient<Channel>,
    key: &str,
    tenant: &str,
    confirm: bool,
) -> Result<pb::DropTenantResponse, tonic::Status> {
    let message = pb::DropTenantRequest {
        tenant_id: tenant.to_owned(),
        confirm,
        ..Default::default()
    };
    client
        .drop_tenant(request(message, Some(key)))
        .await
        .map(tonic::Response::into_inner)
}

async fn listed(client: &mut AlliDbClient<Channel>, key: &str) -> Vec<String> {
    client
        .list_tenants(request(pb::ListTenantsRequest::default(), Some(key)))
        .await
        .expect("ListTenants")
        .into_inner()
        .tenants
        .into_iter()
        .map(|t| t.tenant_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newcomer_drops_the_walkthrough_tenant_and_loads_384_d_vectors() {
    let (daemon, _keys) = daemon();
    let mut client = daemon.client().await;
    for (id, v) in [("a", [1.0, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0])] {
        put(&mut client, ADMIN, id, &v).await;
    }
    put(&mut client, OTHER_ADMIN, "kept", &[0.5; 8]).await;
    let wide = vec![0.25_f32; 384];
    let message = pb::PutEntityRequest {
        entity: Some(doc_entity("wide", &wide)),
        ..Default::default()
    };
    let refused = client
        .put_entity(request(message, Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("expected 3, got 384")
            && refused.message().contains("allidb tenant drop default"),
        "{}",
        refused.message()
    );

    // A full compaction rewrites every tenant's files: the operator only.
    let refused = client
        .compact(request(pb::CompactRequest {}, Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("operator key"), "{refused:?}");
    let compacted = client
        .compact(request(pb::CompactRequest {}, Some(OPERATOR)))
        .await
        .expect("the operator compacts")
        .into_inner();
    assert!(compacted.tables_after >= 1, "{compacted:?}");

    // Who sees and drops what: a tenant's admin key its own tenant only, the operator all;
    // a write key nothing; a drop needs `confirm`.
    assert_eq!(listed(&mut client, ADMIN).await, ["default"]);
    assert_eq!(listed(&mut client, OPERATOR).await, ["default", "other"]);
    let stats = client
        .get_tenant_stats(request(
            pb::GetTenantStatsRequest {
                tenant_id: "default".to_owned(),
                ..Default::default()
            },
            Some(ADMIN),
        ))
        .await
        .expect("GetTenantStats")
        .into_inner()
        .stats
        .expect("default holds data");
    assert_eq!((stats.entities, stats.vectors, stats.dimension), (2, 2, 3));
    assert_eq!(stats.metric, "cosine");
    assert!(stats.bytes > 0);
    for (key, tenant, code) in [
        (OTHER_ADMIN, "default", Code::PermissionDenied),
        (WRITER, "default", Code::PermissionDenied),
        (ADMIN, "", Code::InvalidArgument),
    ] {
        let status = drop_tenant(&mut client, key, tenant, true)
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{key} dropping {tenant:?}: {status:?}");
    }
    let unconfirmed = drop_tenant(&mut client, ADMIN, "default", false)
        .await
        .unwrap_err();
    assert_eq!(unconfirmed.code(), Code::InvalidArgument);
    assert!(
        unconfirmed.message().starts_with("confirm:"),
        "{unconfirmed:?}"
    );
    assert_eq!(
        ids(&mut client, ADMIN).await,
        ["a", "b"],
        "nothing dropped yet"
    );

    let dropped = drop_tenant(&mut client, ADMIN, "default", true)
        .await
        .expect("the tenant's admin drops it");
    assert_eq!((dropped.entities, dropped.vectors), (2, 2));
    assert!(ids(&mut client, ADMIN).await.is_empty());
    assert!(
        daemon.log().contains("tenant dropped") && daemon.log().contains("keys:1"),
        "the drop is logged with the key line that asked for it:\n{}",
        daemon.log()
    );
    put(&mut client, ADMIN, "wide", &wide).await;
    let query = pb::QueryRequest {
        query_vector: wide.clone(),
        k: 1,
        ..Default::default()
    };
    let found = client
        .query(request(query, Some(ADMIN)))
        .await
        .expect("a 384-d query")
        .into_inner()
        .results;
    assert_eq!(found[0].entity_id, "wide");
    assert_eq!(ids(&mut client, OTHER_ADMIN).await, ["kept"]);
    let (_, metrics) = http_get(daemon.admin_addr.expect("an admin port"), "/metrics");
    assert!(
        metrics.contains("allidb_tenant_drops_total 1"),
        "a drop is counted:\n{metrics}"
    );

    // The CLI: list and stats as a table, drop refused without --yes.
    let cli = |args: &[&str]| {
        Command::new(allidb_binary())
            .args([
                "--addr",
                &daemon.grpc_addr.to_string(),
                "--api-key",
                OPERATOR,
            ])
            .args(args)
            .output()
            .expect("allidb runs")
    };
    let list = cli(&["tenant", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{list:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("default ") && l.contains(" 384 ")),
        "{text}"
    );
    let stats = cli(&["--json", "tenant", "stats", "other"]);
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains("\"entities\":1"),
        "{stats:?}"
    );
    let unconfirmed = cli(&["tenant", "drop", "other"]);
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    assert_eq!(ids(&mut client, OTHER_ADMIN).await, ["kept"]);
    let dropped = cli(&["tenant", "drop", "other", "--yes"]);
    assert!(dropped.status.success(), "{dropped:?}");
    assert!(ids(&mut client, OTHER_ADMIN).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_under_concurrent_writes_leaves_other_tenants_and_later_writes() {
    let (daemon, _keys) = daemon();
    let mut client = daemon.client().await;
    for i in 0..50 {
        put(
            &mut client,
            OTHER_ADMIN,
            &format!("o{i:03}"),
            &[i as f32, 1.0],
        )
        .await;
        put(&mut client, ADMIN, &format!("d{i:03}"), &[1.0, i as f32]).await;
    }
    let other_before = client
        .range_scan(request(
            pb::RangeScanRequest {
                limit: 1000,
                ..Default::default()
            },
            Some(OTHER_ADMIN),
        ))
        .await
        .unwrap()
        .into_inner();

    // Writers to both tenants while the drop runs; reads of the other tenant stay whole.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [(ADMIN, "w"), (OTHER_ADMIN, "x")]
        .into_iter()
        .map(|(key, prefix)| {
            let (stop, url) = (stop.clone(), daemon.grpc_url());
            tokio::spawn(async move {
                let mut client = AlliDbClient::connect(url).await.expect("a connection");
                let mut written = 0;
                while !stop.load(Ordering::Relaxed) {
                    put(
                        &mut client,
                        key,
                        &format!("{prefix}{written:05}"),
                        &[1.0, 2.0],
                    )
                    .await;
                    written += 1;
                }
                written
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop_tenant(&mut client, ADMIN, "default", true)
        .await
        .expect("the drop");
    put(&mut client, ADMIN, "after", &[3.0, 4.0]).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.push(writer.await.expect("a writer"));
    }
    assert!(
        written.iter().all(|n| *n > 0),
        "both writers ran: {written:?}"
    );

    // The dropped tenant: nothing from before the drop, the write after it kept.
    let left = ids(&mut client, ADMIN).await;
    assert!(left.iter().all(|id| !id.starts_with('d')), "{left:?}");
    assert!(left.contains(&"after".to_owned()), "{left:?}");
    let get = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: "d001".to_owned(),
                ..Default::default()
            },
            Some(ADMIN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!get.found);
    // The other tenant: everything from before, byte for byte, plus its concurrent writes.
    let other_after = client
        .range_scan(request(
            pb::RangeScanRequest {
                limit: 1000,
                end_key: "p".to_owned(),
                ..Default::default()
            },
            Some(OTHER_ADMIN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other_after.entities, other_before.entities);
    assert_eq!(
        ids(&mut client, OTHER_ADMIN)
            .await
            .iter()
            .filter(|id| id.starts_with('x'))
            .count(),
        written[1]
    );
}

/// The ids `key`'s tenant finds by vector search (k = 1,000), sorted.
async fn searched(client: &mut AlliDbClient<Channel>, key: &str) -> Vec<String> {
    let query = pb::QueryRequest {
        query_vector: vec![1.0, 1.0],
        k: 1000,
        expand_factor: 1,
        max_hops: Some(0),
        ..Default::default()
    };
    let mut found: Vec<String> = client
        .query(request(query, Some(key)))
        .await
        .expect("a query")
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.entity_id)
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_killed_at_any_moment_is_complete_or_not_started_after_a_restart() {
    let (mut daemon, _keys) = daemon();
    let mut client = daemon.client().await;
    put(&mut client, OTHER_ADMIN, "kept", &[0.5, 0.5]).await;
    // What tenant `default` holds: everything written since its last complete drop.
    let mut live: Vec<String> = Vec::new();
    let (mut complete, mut not_started) = (0, 0);
    for (round, delay_ms) in [0u64, 1, 2, 4, 8, 16, 32].into_iter().enumerate() {
        let entities: Vec<pb::Entity> = (0..100)
            .map(|i| doc_entity(&format!("r{round}-{i:03}"), &[1.0, i as f32]))
            .collect();
        live.extend(entities.iter().map(|e| e.entity_id.clone()));
        live.sort();
        let batch = pb::BatchPutEntitiesRequest {
            entities,
            ..Default::default()
        };
        client
            .batch_put_entities(request(batch, Some(ADMIN)))
            .await
            .expect("a batch put");
        let url = daemon.grpc_url();
        let dropping = tokio::spawn(async move {
            let mut client = AlliDbClient::connect(url).await.expect("a connection");
            drop_tenant(&mut client, ADMIN, "default", true).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        daemon.kill();
        let acknowledged = dropping.await.expect("the drop task").is_ok();
        daemon.restart();
        client = daemon.client().await;

        let stored = ids(&mut client, ADMIN).await;
        if stored.is_empty() {
            complete += 1;
            live.clear();
        } else {
            not_started += 1;
            assert!(
                !acknowledged,
                "round {round}: an acknowledged drop was undone"
            );
            assert_eq!(stored, live, "round {round}: a drop half done");
        }
        assert_eq!(
            searched(&mut client, ADMIN).await,
            stored,
            "round {round}: the vector index agrees with storage"
        );
        assert_eq!(ids(&mut client, OTHER_ADMIN).await, ["kept"]);
    }
    println!("drops killed: {complete} complete, {not_started} not started after the restart");
}
