//! A removed node hidden by a partition (DESIGN.md §6 rule 8, docs/cluster.md "A node cut off
//! from its peers"): a node of four, each on its own network namespace, is cut off from the
//! others; they see it down and remove it (`removenode`) while it runs on, alone, still
//! routing by the ring it knew. Once the partition heals it must neither own tokens nor take
//! writes: the ring sends it none, and every write it is asked to coordinate, even at ONE, is
//! refused, naming why, or lands on the replicas of the ring after the removal (hints are off,
//! so nothing else would bring it there). Root needed (skipped with a `SKIPPED partition test`
//! line otherwise).

use std::time::Duration;

use allidb_api::pb;
use allidb_tests::netns::Hosts;
use allidb_tests::ring::{
    found, host_id_of, log_leader, own_ids, put, put_many, remove_dead_node, ring_json, status,
    wait_for_states, wait_until,
};

use pb::ConsistencyLevel::{
    ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
};

const CONFIG: &str =
    "write_timeout_ms = 1000\nread_timeout_ms = 1000\nhinted_handoff_enabled = false\n";

/// Entities written through the removed node once the partition healed.
const WRITES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_removed_while_partitioned_takes_no_write_once_healed() {
    let Some(hosts) = Hosts::create("r", 78, 4) else {
        return;
    };
    let nodes = hosts.start_ring(4, CONFIG);
    let names = ["n0", "n1", "n2", "n3"];
    // The cut-off node does not lead the log (a lost leader is replaced first, a longer test).
    let leader = log_leader(&nodes[0]).expect("a formed ring has a leader");
    let cut_at = (0..4)
        .find(|i| names[*i] != leader)
        .expect("three of four nodes follow");
    let via_at = (0..4).find(|i| *i != cut_at).expect("another node");
    let (cut, via) = (&nodes[cut_at], &nodes[via_at]);
    let cut_name = names[cut_at];
    let cut_host = host_id_of(via, cut_name);
    // Through the node about to be cut off, so that its start (which counts as a pause) is
    // checked before the partition: what it does after it is the partition's doing alone.
    put_many(cut, "before", 100, Quorum)
        .await
        .expect("QUORUM on a whole ring");

    hosts.isolate(cut_at);
    let mut states: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, if *n == cut_name { "down" } else { "normal" }))
        .collect();
    wait_for_states(via, &states, Duration::from_secs(30));
    let alone: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, if *n == cut_name { "normal" } else { "down" }))
        .collect();
    wait_for_states(cut, &alone, Duration::from_secs(30));

    // The ring removes the cut-off node as dead; the survivors re-replicate its ranges.
    remove_dead_node(via, &cut_host).await;
    for state in &mut states {
        if state.0 == cut_name {
            state.1 = "left";
        }
    }
    tokio::task::block_in_place(|| wait_for_states(via, &states, Duration::from_secs(30)));
    put_many(via, "during", 100, Quorum)
        .await
        .expect("QUORUM writes without the removed node");
    // The log's leader drops the removed node from the log's voters, then from its learners (it
    // is down, so it is not waited for; only the voters show in the status, hence the margin):
    // once healed, the log tells it nothing, only its own check can.
    wait_until(
        "the removed node out of the log's voters",
        Duration::from_secs(30),
        || {
            let voters = status(via)["topology_log"]["voters"].to_string();
            !voters.contains(&format!("\"{cut_name}\""))
        },
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    hosts.heal(cut_at);
    // Longer than the failure detector needs to see a node again: whatever the healed node
    // learns from the others, it has had the time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = (0..WRITES).map(|i| format!("after-heal{i}")).collect();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for id in &ids {
        match put(cut, id, One).await {
            Ok(()) => acked.push(id.clone()),
            Err(status) => {
                refused.push(status.message().to_owned());
                let left = status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("left the ring");
                assert!(
                    left || status.code() == tonic::Code::Unavailable,
                    "{id} refused with another reason: {status:?}"
                );
            }
        }
    }
    println!(
        "after healing: {} of {WRITES} writes through the removed node acknowledged, \
         refused e.g. {:?}",
        acked.len(),
        refused.first()
    );
    let held = own_ids(cut, &cut_host).await;
    let written_here: Vec<&String> = ids.iter().filter(|id| held.contains(id)).collect();
    assert!(
        written_here.is_empty(),
        "{cut_name} wrote {} entities into its own store after it was removed: {written_here:?}",
        written_here.len()
    );
    for id in &acked {
        assert!(
            found(via, id, All).await.expect("a read at ALL"),
            "{id} was acknowledged and is on no replica of the ring"
        );
    }

    // The ring gives it no tokens and sends it no writes.
    let owners = ring_json(via).to_string();
    assert!(
        !owners.contains(&cut_host),
        "{cut_name} owns no range: {owners}"
    );
    put_many(via, "after", 100, Quorum)
        .await
        .expect("QUORUM writes after healing");
    let held = own_ids(cut, &cut_host).await;
    let reached: Vec<&String> = held.iter().filter(|id| id.starts_with("after")).collect();
    assert!(
        reached.is_empty(),
        "writes reached the removed node: {reached:?}"
    );
    wait_for_states(via, &states, Duration::from_secs(10));
    for prefix in ["before", "during", "after"] {
        for i in 0..100 {
            let id = format!("{prefix}{i}");
            assert!(
                found(via, &id, Quorum).await.expect("a QUORUM read"),
                "{id} lost"
            );
        }
    }
}
