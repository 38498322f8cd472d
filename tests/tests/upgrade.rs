//! The in-place upgrade of a ring from a release before the topology log (node-to-node protocol
//! 7: tokens in each node's identity and peers files, the ring in gossip) to this one, at one
//! restart of every node (docs/operations.md "Upgrades"): a 3-node ring of the older release is
//! loaded at QUORUM and stopped; the same data directories started with this build carry the
//! ring into the topology log (the seed forms it with every host it knew, the others are
//! adopted) with the same hosts and tokens, without streaming anything, and serve every
//! acknowledged write at QUORUM through every node.
//!
//! Opt-in: it needs the older release's `allidbd`, named by `ALLIDB_UPGRADE_FROM_BIN` (built from
//! commit 5b0d8ca, the last one before the log: docs/operations.md says how); without it the
//! test says so and passes without running.

use std::path::PathBuf;

use allidb_api::pb;
use allidb_tests::Daemon;
use allidb_tests::ring::{
    cluster_toml, found, free_udp_addr, held_per_node, host_id_of, put_many, ring_json, status,
    wait_all_normal,
};

/// Entities written through the older release.
const BEFORE: usize = 600;
/// Entities written after the upgrade.
const AFTER: usize = 200;

/// `(start, end, owner host id)` of every range `daemon` routes by.
fn ranges(daemon: &Daemon) -> Vec<(String, String, String)> {
    let ring = ring_json(daemon);
    ring["ranges"]
        .as_array()
        .unwrap_or_else(|| panic!("ranges in {ring}"))
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
            (field("start"), field("end"), field("host_id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_before_the_topology_log_upgrades_in_place_with_its_tokens_and_data() {
    let Some(older) = std::env::var_os("ALLIDB_UPGRADE_FROM_BIN").map(PathBuf::from) else {
        eprintln!(
            "upgrade: skipped: set ALLIDB_UPGRADE_FROM_BIN to an allidbd built from commit \
             5b0d8ca (docs/operations.md \"Upgrades\")"
        );
        return;
    };
    let gossip: Vec<_> = (0..3).map(|_| free_udp_addr()).collect();
    let mut nodes: Vec<Daemon> = (0..3)
        .map(|i| {
            Daemon::start_binary(
                &older,
                &cluster_toml(&format!("n{i}"), gossip[i], gossip[0]),
            )
        })
        .collect();
    wait_all_normal(&nodes);
    assert!(
        status(&nodes[0])["topology_log"].is_null(),
        "the older release has no topology log: is ALLIDB_UPGRADE_FROM_BIN a build of 5b0d8ca?"
    );
    put_many(
        &nodes[0],
        "u-",
        BEFORE,
        pb::ConsistencyLevel::ConsistencyQuorum,
    )
    .await
    .expect("QUORUM writes through the older release");
    let ring_before = ranges(&nodes[0]);
    let hosts_before: Vec<String> = (0..3)
        .map(|i| host_id_of(&nodes[0], &format!("n{i}")))
        .collect();
    assert!(!ring_before.is_empty());
    for node in &mut nodes {
        assert!(node.stop().success(), "log:\n{}", node.log());
        node.set_binary(None);
    }

    // One restart of every node with this build, all at once (as an operator restarts a ring).
    std::thread::scope(|scope| {
        for node in &mut nodes {
            scope.spawn(move || node.restart());
        }
    });
    wait_all_normal(&nodes);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            ranges(node),
            ring_before,
            "n{i} routes by another ring than the older release's"
        );
        for (j, host) in hosts_before.iter().enumerate() {
            assert_eq!(
                &host_id_of(node, &format!("n{j}")),
                host,
                "n{j}'s host id, seen by n{i}"
            );
        }
        assert!(
            status(node)["topology_log"]["leader"]["name"].is_string(),
            "n{i} knows the log's leader: {}",
            status(node)
        );
        assert_eq!(
            node.metric("allidb_stream_received_bytes_total", &[]),
            0.0,
            "n{i} streamed data it held already"
        );
    }
    let versions: Vec<u64> = nodes
        .iter()
        .map(|n| status(n)["ring_version"].as_u64().expect("a ring version"))
        .collect();
    assert!(
        versions.iter().all(|v| *v == versions[0] && *v > 0),
        "every node on the same topology version: {versions:?}"
    );

    put_many(
        &nodes[1],
        "v-",
        AFTER,
        pb::ConsistencyLevel::ConsistencyQuorum,
    )
    .await
    .expect("QUORUM writes after the upgrade");
    let ids = (0..BEFORE)
        .map(|i| format!("u-{i}"))
        .chain((0..AFTER).map(|i| format!("v-{i}")));
    for (n, id) in ids.enumerate() {
        let through = &nodes[n % 3];
        let at = pb::ConsistencyLevel::ConsistencyQuorum;
        assert!(
            found(through, &id, at).await.expect("a QUORUM read"),
            "{id} not found at QUORUM"
        );
    }
    let mut held = held_per_node(&nodes[2]).await;
    held.sort();
    let every: Vec<(String, u64)> = (0..3)
        .map(|i| (format!("n{i}"), (BEFORE + AFTER) as u64))
        .collect();
    assert_eq!(held, every, "every entity on each of the 3 replicas");

    // The log is the ring's source from now on: a member restarted alone finds itself in it.
    nodes[2].restart();
    wait_all_normal(&nodes);
    assert_eq!(ranges(&nodes[2]), ring_before);
}
