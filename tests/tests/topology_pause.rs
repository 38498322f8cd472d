//! A node frozen across a finished movement (DESIGN.md §6 rule 4, docs/cluster.md "A paused
//! node"): a node of four is stopped with SIGSTOP, the ring removes it as dead (`removenode`), then it
//! resumes and is asked at once to write at ONE. It must not take those writes into its own
//! store on the ring it knew before the pause: each is refused, naming why, or is on the
//! replicas of the ring after the removal (hints are off, so nothing else would bring it there).

use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{
    found, host_id_of, level, log_leader, own_ids, remove_dead_node, start_ring, wait_for_states,
};
use allidb_tests::{doc_entity, request};

use pb::ConsistencyLevel::{ConsistencyAll as All, ConsistencyOne as One};

const CONFIG: &str =
    "write_timeout_ms = 1000\nread_timeout_ms = 1000\nhinted_handoff_enabled = false\n";

/// Entities written through the resumed node.
const WRITES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_removed_while_frozen_takes_no_write_once_resumed() {
    let nodes = start_ring(4, CONFIG);
    let names = ["n0", "n1", "n2", "n3"];
    // The frozen node does not lead the log (a frozen leader is replaced first, a longer test).
    let leader = log_leader(&nodes[0]).expect("a formed ring has a leader");
    let frozen_at = (0..4)
        .find(|i| names[*i] != leader)
        .expect("three of four nodes follow");
    let via_at = (0..4).find(|i| *i != frozen_at).expect("another node");
    let (frozen, via) = (&nodes[frozen_at], &nodes[via_at]);
    let frozen_name = names[frozen_at];
    let frozen_host = host_id_of(via, frozen_name);
    // Connected before the pause, so its first request after it is sent at once.
    let client = frozen.client().await;

    frozen.signal(libc::SIGSTOP);
    let mut down: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, if *n == frozen_name { "down" } else { "normal" }))
        .collect();
    wait_for_states(via, &down, Duration::from_secs(30));

    // The ring removes the frozen node as dead; the survivors re-replicate its ranges.
    remove_dead_node(via, &frozen_host).await;
    for state in &mut down {
        if state.0 == frozen_name {
            state.1 = "left";
        }
    }
    tokio::task::block_in_place(|| wait_for_states(via, &down, Duration::from_secs(30)));
    let ids: Vec<String> = (0..WRITES).map(|i| format!("after-pause{i}")).collect();

    // The writes are sent while it is still frozen (they wait in its socket), so it handles
    // them the moment it resumes, before anything else can tell it about the removal.
    let writes: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut client = client.clone();
            let message = pb::PutEntityRequest {
                entity: Some(doc_entity(id, &[1.0, 0.5, 0.25])),
                consistency_level: level(One),
                ..Default::default()
            };
            let id = id.clone();
            tokio::spawn(async move { (id, client.put_entity(request(message, None)).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    frozen.signal(libc::SIGCONT);
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for write in writes {
        match write.await.expect("a write task") {
            (id, Ok(_)) => acked.push(id),
            (id, Err(status)) => refused.push((id, status)),
        }
    }
    println!(
        "right after the pause: {} acknowledged, {} refused, e.g. {:?}",
        acked.len(),
        refused.len(),
        refused.first()
    );
    // Refused because a peer says it left, or because its reads found no live replica.
    for (id, status) in &refused {
        let left = status.code() == tonic::Code::FailedPrecondition
            && status.message().contains("left the ring");
        assert!(
            left || status.code() == tonic::Code::Unavailable,
            "{id} refused with another reason: {status:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let held = own_ids(frozen, &frozen_host).await;
    let written_here: Vec<&String> = ids.iter().filter(|id| held.contains(id)).collect();
    assert!(
        written_here.is_empty(),
        "{frozen_name} wrote {} entities it no longer replicates into its own store: \
         {written_here:?}",
        written_here.len()
    );
    let mut lost = Vec::new();
    for id in &acked {
        if !found(via, id, All).await.expect("a read at ALL") {
            lost.push(id.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes are on no replica of the ring: {lost:?}",
        lost.len()
    );
}
