//! A network partition of a ring of real daemons, each in its own network namespace on a
//! bridge the test makes (root needed; skipped with a `SKIPPED partition test` line otherwise):
//! the majority still writes at QUORUM, the minority cannot, and after healing every node holds
//! both sides' writes.

use std::time::Duration;

use allidb_api::pb;
use allidb_tests::netns::Hosts;
use allidb_tests::ring::{found, hints_pending, put, wait_for_states, wait_until};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_reach_quorum_and_converges_after_healing() {
    use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};
    let Some(hosts) = Hosts::create("p", 77, 3) else {
        return;
    };
    let nodes = hosts.start_ring(3, "write_timeout_ms = 1000\nread_timeout_ms = 1000\n");
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];

    hosts.isolate(2);
    let split = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &split, Duration::from_secs(15));
    let alone = [("n0", "down"), ("n1", "down"), ("n2", "normal")];
    wait_for_states(&nodes[2], &alone, Duration::from_secs(15));
    put(&nodes[0], "majority", Quorum)
        .await
        .expect("the majority reaches QUORUM");
    let minority = put(&nodes[2], "minority", Quorum).await.unwrap_err();
    assert_eq!(minority.code(), Code::Unavailable, "{minority:?}");
    put(&nodes[2], "minority-one", One)
        .await
        .expect("ONE on the minority side");

    hosts.heal(2);
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered both ways", Duration::from_secs(30), || {
        nodes.iter().all(|node| hints_pending(node) == 0)
    });
    for node in &nodes {
        for id in ["majority", "minority-one"] {
            assert!(
                found(node, id, One).await.unwrap(),
                "{id} on every node after healing"
            );
        }
    }
}
