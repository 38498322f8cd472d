//! Hosts that left stay out (DESIGN.md §6 rule 8, docs/cluster.md "Topology log"): a
//! decommissioned node's data dir started again is refused at start, naming why; an older copy
//! of it (taken while the node was still `normal`, as a restored disk would be) starts with its
//! stale log, but the ring neither gives it tokens nor sends it writes, its own requests are
//! refused by every member, naming the sender, and it takes no write, not even at ONE.

use std::path::Path;
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{
    cluster_toml, found, free_udp_addr, gossip_addr_of, host_id_of, own_ids, put, put_many,
    ring_json, start_ring, wait_for_states,
};
use allidb_tests::{Daemon, request};

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

const TIMEOUTS: &str = "write_timeout_ms = 1000\nread_timeout_ms = 1000\n";

/// Copies the directory `from` to `to` (which must not exist).
fn copy_dir(from: &Path, to: &Path) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "{} copied", from.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decommissioned_nodes_restored_disk_owns_no_tokens_and_takes_no_writes() {
    let mut nodes = start_ring(4, TIMEOUTS);
    put_many(&nodes[0], "before", 100, Quorum)
        .await
        .expect("QUORUM on a whole ring");
    let n3 = host_id_of(&nodes[0], "n3");

    // A copy of n3's disk while it is a normal member (stopped for the copy).
    let copies = tempfile::tempdir().expect("a temporary directory");
    let restored_dir = copies.path().join("n3");
    nodes[3].stop();
    copy_dir(&nodes[3].data_dir, &restored_dir);
    nodes[3].restart();
    let four = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
    ];
    for node in &nodes {
        wait_for_states(node, &four, Duration::from_secs(30));
    }

    // n3 decommissions and stops.
    let reply = nodes[3]
        .client()
        .await
        .decommission(request(pb::DecommissionRequest {}, None))
        .await
        .expect("a decommission")
        .into_inner();
    assert!(reply.finished, "{reply:?}");
    let mut left = nodes.pop().expect("n3");
    left.stop();
    let three_and_left = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "left"),
    ];
    wait_for_states(&nodes[0], &three_and_left, Duration::from_secs(30));

    // Its own data dir, started again, is refused at start.
    let seed = gossip_addr_of(&nodes[0], "n0");
    let config = format!("{}{TIMEOUTS}", cluster_toml("n3", free_udp_addr(), seed));
    let (code, log) =
        Daemon::start_refused_on_data_dir(&config, &left.data_dir, Duration::from_secs(60));
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("left the ring"), "{log}");

    // The older copy starts (its own log still says normal) but the ring keeps it out.
    let restored = Daemon::start_on_data_dir(&config, &restored_dir);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let owners = ring_json(&nodes[0]).to_string();
    assert!(!owners.contains(&n3), "n3 owns no range: {owners}");
    wait_for_states(&nodes[0], &three_and_left, Duration::from_secs(10));
    put_many(&nodes[0], "after", 100, Quorum)
        .await
        .expect("QUORUM writes without n3");
    let held = own_ids(&restored, &n3).await;
    let reached: Vec<&String> = held.iter().filter(|id| id.starts_with("after")).collect();
    assert!(
        reached.is_empty(),
        "writes reached the left node: {reached:?}"
    );

    // Its requests are refused by every member, naming it: a QUORUM write through it fails.
    let refused = put(&restored, "through-restored", Quorum)
        .await
        .expect_err("a write through a node that left");
    assert!(refused.message().contains("left the ring"), "{refused:?}");
    assert!(
        !found(&nodes[0], "through-restored", One)
            .await
            .expect("a read"),
        "no member took the left node's write"
    );
    // Nor does it take a write at ONE into its own store: the members refuse it, whether it
    // asks them about its ring first (its first write after it started) or about the entity.
    let refused = put(&restored, "one-through-restored", One)
        .await
        .expect_err("a write at ONE through a node that left");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::FailedPrecondition | tonic::Code::Unavailable
        ) && refused.message().contains("left the ring"),
        "{refused:?}"
    );
    let held = own_ids(&restored, &n3).await;
    assert!(
        !held.iter().any(|id| id == "one-through-restored"),
        "the left node took a write at ONE"
    );
    for i in 0..100 {
        for prefix in ["before", "after"] {
            let id = format!("{prefix}{i}");
            assert!(
                found(&nodes[0], &id, Quorum).await.expect("a QUORUM read"),
                "{id} lost"
            );
        }
    }
    wait_for_states(&nodes[0], &three_and_left, Duration::from_secs(10));
}
