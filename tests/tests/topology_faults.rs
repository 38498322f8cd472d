//! Topology movements under crashes (docs/cluster.md "Topology log"): a join whose joining
//! node, one of whose streaming sources, or whose log leader is SIGKILLed while it streams ends
//! finished, with every write a QUORUM acknowledged found and every entity on exactly RF
//! replicas. The joining node resumes its persisted stream session, the coordinator retries a
//! source that failed, and a new leader picks the movement up where the log says it stands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::Daemon;
use allidb_tests::ring::{
    cluster_toml, found, free_udp_addr, gossip_addr_of, log_leader, put_many, quorum_writer,
    replicas_of, ring_of_three, status, wait_for_states,
};

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

/// No hints, so what a movement misses is not brought by them; a joining node's streams are
/// throttled so that each join streams for a few seconds.
const NO_HINTS: &str = "hinted_handoff_enabled = false\n";
const TIMEOUTS: &str = "write_timeout_ms = 1000\nread_timeout_ms = 1000\n";
const SLOW_STREAM: &str = "stream_bytes_per_sec = 40000\nstream_chunk_bytes = 65536\n";

/// Entities written before the joins.
const LOADED: usize = 1500;

/// Starts node `name` joining the ring seeded by `seed`; returns once it streams (it has
/// received its first chunk).
fn join_streaming(name: &str, seed: std::net::SocketAddr) -> Daemon {
    let config = format!(
        "{}{TIMEOUTS}{NO_HINTS}{SLOW_STREAM}",
        cluster_toml(name, free_udp_addr(), seed)
    );
    let joiner = Daemon::start_until(&config, "joining");
    let started = Instant::now();
    while joiner.metric("allidb_stream_received_bytes_total", &[]) == 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} received nothing in 30 s; log:\n{}",
            joiner.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    joiner
}

/// `names` all `normal`, as `daemon` sees them.
fn all_normal(daemon: &Daemon, names: &[&str]) {
    let expected: Vec<(&str, &str)> = names.iter().map(|n| (*n, "normal")).collect();
    wait_for_states(daemon, &expected, Duration::from_secs(90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_finish_when_the_joiner_a_source_or_the_log_leader_is_killed_while_streaming() {
    let mut nodes = ring_of_three(NO_HINTS);
    put_many(&nodes[0], "e", LOADED, Quorum)
        .await
        .expect("QUORUM on a whole ring");
    let leader = log_leader(&nodes[0]).expect("a formed ring has a leader");
    let index = |name: &str| {
        (0..3)
            .find(|i| format!("n{i}") == name)
            .expect("one of n0..n2")
    };
    let leader_at = index(&leader);
    // The writer goes through a node that is never killed here; the source killed is the third.
    let writer_at = (leader_at + 1) % 3;
    let source_at = (leader_at + 2) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = quorum_writer(&nodes[writer_at], "live", stop.clone()).await;
    let seed = gossip_addr_of(&nodes[writer_at], &format!("n{writer_at}"));

    // 1. The joining node is killed while it streams, and restarted: it resumes and finishes.
    let mut n3 = tokio::task::block_in_place(|| join_streaming("n3", seed));
    n3.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| n3.restart());
    tokio::task::block_in_place(|| all_normal(&nodes[writer_at], &["n0", "n1", "n2", "n3"]));

    // 2. A node the next joiner streams from is killed, and restarted 2 s later.
    let n4 = tokio::task::block_in_place(|| join_streaming("n4", seed));
    nodes[source_at].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| nodes[source_at].restart());
    let five = ["n0", "n1", "n2", "n3", "n4"];
    tokio::task::block_in_place(|| all_normal(&nodes[writer_at], &five));

    // 3. The log's leader is killed while a third node streams; the others elect a new one,
    // which drives the join on. The old leader returns 2 s later.
    let leader = log_leader(&nodes[writer_at]).expect("a leader after two joins");
    let n5 = tokio::task::block_in_place(|| join_streaming("n5", seed));
    let killed = if leader == "n3" {
        &mut n3
    } else {
        assert_ne!(leader, format!("n{writer_at}"), "the writer's node leads");
        &mut nodes[index(&leader)]
    };
    killed.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| killed.restart());
    let six = ["n0", "n1", "n2", "n3", "n4", "n5"];
    tokio::task::block_in_place(|| all_normal(&nodes[writer_at], &six));

    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("the writer task");
    assert!(acked.len() > 10, "writes went on: {}", acked.len());
    let ring_status = status(&n5);
    assert!(
        ring_status["movement"].is_null(),
        "no movement left running: {ring_status}"
    );

    // Every acknowledged write is found at QUORUM through the last node to join.
    let mut lost = Vec::new();
    let ids = (0..LOADED)
        .map(|i| format!("e{i}"))
        .chain(acked.iter().cloned());
    for id in ids {
        if !found(&n5, &id, Quorum).await.expect("a QUORUM read") {
            lost.push(id);
        }
    }
    assert!(lost.is_empty(), "{} lost: {lost:?}", lost.len());
    // Every entity loaded before the joins is in the own store of each of its 3 replicas in
    // the final ring (a read at ONE through a replica answers from its own store).
    let mut by_name: Vec<(String, &Daemon)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (format!("n{i}"), node))
        .collect();
    by_name.extend([
        ("n3".to_owned(), &n3),
        ("n4".to_owned(), &n4),
        ("n5".to_owned(), &n5),
    ]);
    let mut missing = Vec::new();
    for i in 0..LOADED {
        let id = format!("e{i}");
        let replicas = replicas_of(&n5, &id);
        assert_eq!(replicas.len(), 3, "{id}: {replicas:?}");
        for replica in replicas {
            let (_, node) = by_name
                .iter()
                .find(|(name, _)| *name == replica)
                .unwrap_or_else(|| panic!("{replica} is one of n0..n5"));
            if !found(node, &id, One).await.expect("a read at ONE") {
                missing.push(format!("{id} on {replica}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} replica copies missing: {missing:?}",
        missing.len()
    );
}
