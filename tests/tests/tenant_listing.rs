//! Tenant listings on a ring with real `allidbd` processes on loopback (docs/api.md "Tenants",
//! docs/cluster.md "Tenant figures"): on a 5-node ring with replication factor 3, where each
//! node holds only some token ranges, `ListTenants` and `GetTenantStats` through every node
//! count each entity of two tenants exactly once, the per-node detail lists every node (their
//! own figures adding up to three copies), an admin key still sees only its own tenant, and
//! the answer stays exact with a node killed (other replicas count its ranges, the detail says
//! it did not answer), and scans, queries and traversals through the ring see the caller's
//! tenant only; on a 2-node ring with replication factor 1 and a node down, both fail
//! `UNAVAILABLE` naming the ranges and the node (and the HTTP gateway takes `per_node`).

use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{start_ring, wait_for_states};
use allidb_tests::{Daemon, doc_entity, http_get_with_headers, key_line, request};
use tonic::Code;

const OPERATOR: &str = "operator-key";
const ALPHA: &str = "alpha-admin-key";
const BETA: &str = "beta-admin-key";

/// Entities written per tenant; the last `BARE` of each have no vector.
const COUNTS: [(&str, &str, u64); 2] = [("alpha", ALPHA, 150), ("beta", BETA, 90)];
const BARE: u64 = 10;

/// The key file (an admin key per tenant, an operator key) and the `[auth]` section naming it.
fn auth() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("keys");
    let keys = [
        key_line(OPERATOR, "*", "admin"),
        key_line(ALPHA, "alpha", "admin"),
        key_line(BETA, "beta", "admin"),
    ]
    .concat();
    std::fs::write(&file, keys).expect("the key file is written");
    let section = format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n",
        file.display().to_string()
    );
    (dir, section)
}

/// Writes `count` entities of the key's tenant through `node` at ALL (every replica holds
/// each, so any replica's count is exact).
async fn load(node: &Daemon, key: &str, count: u64) {
    let entities = (0..count)
        .map(|i| {
            let mut entity = doc_entity(&format!("e{i:04}"), &[1.0, i as f32, 0.5]);
            if i >= count - BARE {
                entity.embeddings.clear();
            }
            entity
        })
        .collect();
    let message = pb::BatchPutEntitiesRequest {
        entities,
        consistency_level: pb::ConsistencyLevel::ConsistencyAll as i32,
        trace_id: String::new(),
        mode: 0,
    };
    let reply = node
        .client()
        .await
        .batch_put_entities(request(message, Some(key)))
        .await
        .expect("a batch put")
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
}

async fn list(
    node: &Daemon,
    key: &str,
    per_node: bool,
) -> Result<pb::ListTenantsResponse, tonic::Status> {
    node.client()
        .await
        .list_tenants(request(pb::ListTenantsRequest { per_node }, Some(key)))
        .await
        .map(tonic::Response::into_inner)
}

async fn stats(
    node: &Daemon,
    key: &str,
    tenant: &str,
    per_node: bool,
) -> Result<pb::GetTenantStatsResponse, tonic::Status> {
    let message = pb::GetTenantStatsRequest {
        tenant_id: tenant.to_owned(),
        per_node,
    };
    node.client()
        .await
        .get_tenant_stats(request(message, Some(key)))
        .await
        .map(tonic::Response::into_inner)
}

/// `(tenant, entities, vectors)` of a listing.
fn counts(tenants: &[pb::TenantStats]) -> Vec<(String, u64, u64)> {
    tenants
        .iter()
        .map(|t| (t.tenant_id.clone(), t.entities, t.vectors))
        .collect()
}

fn expected() -> Vec<(String, u64, u64)> {
    COUNTS
        .iter()
        .map(|(tenant, _, n)| ((*tenant).to_owned(), *n, n - BARE))
        .collect()
}

/// Checks the listing through `node`: exact ring-wide counts, the same `bytes` as `bytes`
/// (when given), and per-node detail naming `names`, those in `down` with an error; returns
/// the tenants' bytes.
async fn check_listing(
    node: &Daemon,
    names: &[&str],
    down: &[&str],
    bytes: Option<&[u64]>,
) -> Vec<u64> {
    let listing = list(node, OPERATOR, false).await.expect("ListTenants");
    assert_eq!(counts(&listing.tenants), expected());
    assert!(listing.nodes.is_empty(), "no per-node detail unless asked");
    let total: Vec<u64> = listing.tenants.iter().map(|t| t.bytes).collect();
    assert!(total.iter().all(|b| *b > 0), "{total:?}");
    if let Some(bytes) = bytes {
        assert_eq!(
            total, bytes,
            "one replica's bytes per range, whichever node answers"
        );
    }
    for t in &listing.tenants {
        assert_eq!((t.dimension, t.metric.as_str()), (3, "cosine"), "{t:?}");
    }

    let detailed = list(node, OPERATOR, true)
        .await
        .expect("ListTenants per node");
    assert_eq!(counts(&detailed.tenants), expected());
    let listed: Vec<&str> = detailed.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(listed, names, "every node, in name order");
    for (tenant, _, written) in COUNTS {
        let mut held = 0;
        for n in &detailed.nodes {
            if down.contains(&n.node.as_str()) {
                assert!(!n.error.is_empty() && n.tenants.is_empty(), "{n:?}");
                continue;
            }
            assert!(n.error.is_empty(), "{n:?}");
            let own = n
                .tenants
                .iter()
                .find(|t| t.tenant_id == tenant)
                .map_or(0, |t| t.entities);
            assert!(
                own < written,
                "{} holds only some ranges of {tenant}: {own}",
                n.node
            );
            held += own;
        }
        if down.is_empty() {
            assert_eq!(
                held,
                3 * written,
                "three replicas of each entity of {tenant}"
            );
        }
    }

    for (tenant, key, written) in COUNTS {
        let reply = stats(node, key, tenant, true)
            .await
            .expect("GetTenantStats");
        let got = reply.stats.expect("the tenant is held");
        assert_eq!(
            (got.entities, got.vectors),
            (written, written - BARE),
            "{tenant}"
        );
        assert_eq!(reply.nodes.len(), names.len());
        for n in reply.nodes.iter().filter(|n| n.error.is_empty()) {
            assert!(n.tenants.iter().all(|t| t.tenant_id == tenant), "{n:?}");
        }
    }
    total
}

/// Scans, queries and traversals through `node` see the caller's tenant only: both tenants
/// hold the same ids, alpha 150 of them and beta 90 (`e0000`..), each `e{i}` with the vector
/// `[1, i, 0.5]` but for the last ten.
async fn check_isolation(node: &Daemon) {
    let quorum = pb::ConsistencyLevel::ConsistencyQuorum as i32;
    for (tenant, key, written) in COUNTS {
        let mut client = node.client().await;
        let scan = client
            .range_scan(request(
                pb::RangeScanRequest {
                    limit: 1000,
                    consistency_level: quorum,
                    ..Default::default()
                },
                Some(key),
            ))
            .await
            .expect("RangeScan")
            .into_inner();
        assert_eq!(scan.entities.len() as u64, written, "{tenant}");
        // The nearest to alpha's e0120, which beta does not hold (the vectors' directions
        // converge as i grows, so scores near it tie and the order among them is by id).
        let reply = client
            .query(request(
                pb::QueryRequest {
                    query_vector: vec![1.0, 120.0, 0.5],
                    k: 5,
                    max_hops: Some(0),
                    consistency_level: quorum,
                    ..Default::default()
                },
                Some(key),
            ))
            .await
            .expect("Query")
            .into_inner();
        let ids: Vec<&str> = reply.results.iter().map(|r| r.entity_id.as_str()).collect();
        let last_vector = format!("e{:04}", written - BARE - 1);
        assert_eq!(ids.len(), 5, "{tenant}: {ids:?}");
        // Alpha's nearest are its own near e0120 (beta has no vector past e0079); beta's are
        // all among its own vectors.
        let lowest = if tenant == "alpha" { "e0100" } else { "e0000" };
        assert!(
            ids.iter()
                .all(|id| *id >= lowest && *id <= last_vector.as_str()),
            "{tenant}: {ids:?}"
        );
        let walk = client
            .traverse(request(
                pb::TraverseRequest {
                    start_ids: vec!["e0120".to_owned()],
                    max_hops: 1,
                    consistency_level: quorum,
                    ..Default::default()
                },
                Some(key),
            ))
            .await
            .expect("Traverse")
            .into_inner();
        let reached = usize::from(written > 120);
        assert_eq!(walk.nodes.len(), reached, "{tenant}: {:?}", walk.nodes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_five_counts_every_entity_once_through_any_node_also_with_a_node_down() {
    let (_keys, section) = auth();
    let mut ring = start_ring(5, &format!("replication_factor = 3\n{section}"));
    for (i, (_, key, count)) in COUNTS.iter().enumerate() {
        load(&ring[i], key, *count).await;
    }
    let names = ["n0", "n1", "n2", "n3", "n4"];
    let bytes = check_listing(&ring[0], &names, &[], None).await;
    for node in &ring[1..] {
        check_listing(node, &names, &[], Some(&bytes)).await;
    }

    // An admin key of one tenant: that tenant only, also per node; another's is refused.
    let own = list(&ring[2], ALPHA, true)
        .await
        .expect("ListTenants of alpha");
    assert_eq!(counts(&own.tenants), expected()[..1]);
    assert!(
        own.nodes
            .iter()
            .all(|n| n.tenants.iter().all(|t| t.tenant_id == "alpha"))
    );
    let refused = stats(&ring[2], ALPHA, "beta", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = stats(&ring[2], ALPHA, "bad\0tenant", false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("tenant_id: "), "{refused:?}");

    // The cluster-wide reads fan out with the caller's tenant.
    for node in &ring[3..] {
        check_isolation(node).await;
    }

    // n4 killed: its ranges are counted on other replicas, at once (the call to it fails and
    // is replaced in the same request) and once the ring sees it down.
    ring[4].kill();
    for node in &ring[..4] {
        check_listing(node, &names, &["n4"], Some(&bytes)).await;
    }
    let seen = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
        ("n4", "down"),
    ];
    wait_for_states(&ring[0], &seen, Duration::from_secs(30));
    check_listing(&ring[0], &names, &["n4"], Some(&bytes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_with_one_replica_and_a_node_down_names_the_ranges_it_cannot_count() {
    let (_keys, section) = auth();
    let mut ring = start_ring(2, &format!("replication_factor = 1\n{section}"));
    load(&ring[0], ALPHA, 40).await;
    for node in &ring {
        let listing = list(node, OPERATOR, true).await.expect("ListTenants");
        assert_eq!(counts(&listing.tenants), [("alpha".to_owned(), 40, 30)]);
        let held: u64 = listing.nodes.iter().map(|n| n.tenants[0].entities).sum();
        assert_eq!(held, 40, "one replica of each entity");
    }
    // The HTTP gateway: `per_node` as a query parameter.
    let http = ring[1].http_addr.expect("allidbd prints its HTTP address");
    let key = [("x-allidb-api-key", OPERATOR)];
    let (code, body) = http_get_with_headers(http, "/admin/tenants?per_node=true", &key);
    assert_eq!(code, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("a JSON reply");
    assert_eq!(reply["tenants"][0]["entities"], 40, "{reply}");
    let nodes: Vec<&str> = reply["nodes"]
        .as_array()
        .expect("per-node detail")
        .iter()
        .map(|n| n["node"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(nodes, ["n0", "n1"], "{reply}");
    let (code, body) = http_get_with_headers(http, "/admin/tenants?per_node=maybe", &key);
    assert_eq!(code, 400, "{body}");
    ring[1].kill();
    wait_for_states(
        &ring[0],
        &[("n0", "normal"), ("n1", "down")],
        Duration::from_secs(30),
    );
    let listed = list(&ring[0], OPERATOR, false).await.unwrap_err();
    let counted = stats(&ring[0], ALPHA, "alpha", false).await.unwrap_err();
    for refused in [listed, counted] {
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("token ranges have no live replica")
                && refused.message().contains("n1"),
            "{}",
            refused.message()
        );
    }
}
