//! Topology changes on a ring of real daemons (docs/cluster.md "Topology log"): a node joining a
//! loaded ring is validated by the log, streams its ranges from the replicas it displaces while
//! writes go to both rings, and serves reads only once it is `normal`, without losing a write a
//! QUORUM acknowledged, also one that a replica missed; a node decommissions and a dead one is
//! removed, each leaving every entity on its replicas, and refusals say why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{
    allidb_json, cluster_toml, found, free_udp_addr, json_reply, level, put_many, ring_of_three,
    start_ring, status, wait_for_states,
};
use allidb_tests::{Daemon, doc_entity, request};

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

/// Every node's `[cluster]` here: no hints, so a node that was down misses what it missed.
const NO_HINTS: &str = "hinted_handoff_enabled = false\n";
/// What `ring_of_three` adds to its nodes' `[cluster]`, for the node started here.
const TIMEOUTS: &str = "write_timeout_ms = 1000\nread_timeout_ms = 1000\n";

/// The gossip address of node `name` as `daemon` reports it.
fn gossip_addr_of(daemon: &Daemon, name: &str) -> SocketAddr {
    let status = status(daemon);
    let node = status["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"));
    node["gossip_addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("a gossip address for {name} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_streams_from_the_replicas_it_displaces_and_no_acknowledged_write_is_lost() {
    let mut nodes = ring_of_three(NO_HINTS);
    // n2 misses 300 QUORUM writes: down, and no hints for it.
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    put_many(&nodes[0], "missed", 300, Quorum)
        .await
        .expect("QUORUM with one node down");
    nodes[2].restart();
    let three = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &three, Duration::from_secs(30));
    }

    // A writer keeps writing at QUORUM through n0 while a fourth node joins.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut n0) = (stop.clone(), nodes[0].client().await);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("live{i}");
                let message = pb::PutEntityRequest {
                    entity: Some(doc_entity(&id, &[0.5, 1.0, 0.25])),
                    consistency_level: level(Quorum),
                    ..Default::default()
                };
                if n0.put_entity(request(message, None)).await.is_ok() {
                    acked.push(id);
                }
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seed = gossip_addr_of(&nodes[0], "n0");
    let n3_config = format!(
        "{}{TIMEOUTS}{NO_HINTS}",
        cluster_toml("n3", free_udp_addr(), seed)
    );
    let n3 = tokio::task::spawn_blocking(move || Daemon::start(&n3_config))
        .await
        .expect("the fourth node starts and reports ready once normal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("the writer task");
    assert!(
        acked.len() > 10,
        "writes went on during the join: {}",
        acked.len()
    );

    let four = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
    ];
    for node in nodes.iter().chain(std::iter::once(&n3)) {
        wait_for_states(node, &four, Duration::from_secs(30));
    }
    let versions: Vec<u64> = nodes
        .iter()
        .chain(std::iter::once(&n3))
        .map(|node| {
            status(node)["ring_version"]
                .as_u64()
                .expect("a ring version")
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] == w[1]),
        "every node routes by the same topology version: {versions:?}"
    );
    let settled = status(&n3);
    assert!(
        settled.get("movement").is_some_and(|m| m.is_null()),
        "no movement runs once the join finished: {settled}"
    );

    // Through the new node, at QUORUM, every acknowledged write is found: the ones n2 missed
    // (streamed from the replica each range's new owner displaced), and the ones written
    // during the join (written to both rings).
    let mut lost = Vec::new();
    let ids = (0..300)
        .map(|i| format!("missed{i}"))
        .chain(acked.iter().cloned());
    for id in ids {
        if !found(&n3, &id, Quorum).await.expect("a QUORUM read") {
            lost.push(id);
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes not found: {lost:?}",
        lost.len()
    );
}

/// Whether every id of `ids` is in `daemon`'s own store (a read at ONE through a replica is
/// answered by its own store first).
async fn holds_all(daemon: &Daemon, ids: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in ids {
        if !found(daemon, id, One).await.expect("a read at ONE") {
            missing.push(id.clone());
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_decommissions_a_dead_one_is_removed_and_each_refusal_names_its_reason() {
    let mut nodes = start_ring(5, TIMEOUTS);
    let ids: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
    put_many(&nodes[0], "e", 200, Quorum)
        .await
        .expect("QUORUM on a whole ring");

    // n4 decommissions itself through the CLI: its ranges go to the others, it is left.
    let (code, reply) = json_reply(
        allidb_json(&nodes[4], &["cluster", "decommission"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(
        (code, reply["finished"].as_bool()),
        (0, Some(true)),
        "{reply}"
    );
    let after_leave = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &after_leave, Duration::from_secs(10));
    nodes[4].kill();

    // A removenode of a live node is refused, and so is one that could lose what a QUORUM
    // acknowledged: n3 dead and n2 down leave ranges with one surviving replica of two.
    let n3_host = host_id_of(&nodes[0], "n3");
    let mut client = nodes[0].client().await;
    let remove = |ignore_dead| pb::RemoveNodeRequest {
        host_id: n3_host.clone(),
        ignore_dead,
    };
    // Bad input: a host id that is not one, and one the ring does not hold.
    let bad = pb::RemoveNodeRequest {
        host_id: "not-a-host".to_owned(),
        ignore_dead: false,
    };
    let bad = client
        .remove_node(request(bad, None))
        .await
        .expect_err("not a host id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().starts_with("host_id:"), "{}", bad.message());
    let unknown = pb::RemoveNodeRequest {
        host_id: "00000000-0000-0000-0000-000000000001".to_owned(),
        ignore_dead: false,
    };
    let unknown = client
        .remove_node(request(unknown, None))
        .await
        .expect_err("a host the ring does not hold");
    assert_eq!(
        unknown.code(),
        tonic::Code::FailedPrecondition,
        "{unknown:?}"
    );
    assert!(
        unknown.message().contains("not in the ring"),
        "{}",
        unknown.message()
    );
    let live = client
        .remove_node(request(remove(false), None))
        .await
        .expect_err("n3 is up");
    assert_eq!(live.code(), tonic::Code::FailedPrecondition, "{live:?}");
    assert!(live.message().contains("is up"), "{}", live.message());
    nodes[3].kill();
    nodes[2].kill();
    let two_down = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "down"),
        ("n3", "down"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &two_down, Duration::from_secs(10));
    let short = client
        .remove_node(request(remove(false), None))
        .await
        .expect_err("a second replica is down");
    assert_eq!(short.code(), tonic::Code::FailedPrecondition, "{short:?}");
    assert!(
        short.message().contains("--ignore-dead"),
        "{}",
        short.message()
    );

    // With n2 back, n3 is removed: its ranges are streamed from every surviving replica.
    nodes[2].restart();
    let three_up = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "down"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &three_up, Duration::from_secs(30));
    let removed = client
        .remove_node(request(remove(false), None))
        .await
        .expect("a removal of a dead node")
        .into_inner();
    assert!(removed.finished, "{removed:?}");
    for node in &nodes[..3] {
        let missing = holds_all(node, &ids).await;
        assert!(
            missing.is_empty(),
            "{} lacks {} entities after the movements: {missing:?}",
            node.grpc_url(),
            missing.len()
        );
    }

    // Three nodes left with RF 3: another leave is refused, naming the factor.
    let refused = allidb_json(&nodes[2], &["cluster", "decommission"])
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("replication factor 3"),
        "the refusal names the replication factor: {stderr}"
    );
}

/// The host id of node `name` as `daemon` reports it.
fn host_id_of(daemon: &Daemon, name: &str) -> String {
    let status = status(daemon);
    status["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["host_id"].as_str())
        .unwrap_or_else(|| panic!("{name} in {status}"))
        .to_owned()
}
