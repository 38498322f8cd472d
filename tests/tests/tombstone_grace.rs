//! Tombstone grace on a ring of real daemons (docs/cluster.md "Anti-entropy repair", rule
//! "Tombstone grace"; docs/operations.md "Manual compaction"). Kept: a delete one replica
//! missed stays deleted when the other replicas compact within the grace and the replica is
//! repaired within it, and once every replica has purged it no path (reads at ONE and ALL with
//! read repair, a repair, a rebuild's streaming) brings it back. Broken: a replica kept away
//! past the grace while the others purge the tombstone brings the deleted value back.
//!
//! The two cases overlap so that the test waits out one grace only: `x*` are deleted and
//! repaired within the grace, `y*` are deleted while n2 is down and stays down past it.

use std::time::{Duration, Instant};

use allidb_tests::Daemon;
use allidb_tests::ring::{
    allidb_json, count, delete, found, json_reply, put, repair, ring_of_three, status,
    wait_for_states,
};

use allidb_api::pb::ConsistencyLevel::{
    ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
};

/// `storage.gc_grace_secs` of every node: long enough for a restart and a repair within it.
const GRACE: Duration = Duration::from_secs(8);
const DELETED: usize = 5;
const ALL_NORMAL: [(&str, &str); 3] = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];

/// `allidb --json compact` against `daemon`, checked to succeed.
fn compact(daemon: &Daemon) {
    let (code, reply) = json_reply(
        allidb_json(daemon, &["compact"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(code, 0, "{reply}");
}

fn restart(nodes: &mut [Daemon], i: usize) {
    nodes[i].restart();
    for node in nodes.iter() {
        wait_for_states(node, &ALL_NORMAL, Duration::from_secs(30));
    }
}

/// Deletes `{prefix}0..` at QUORUM through n0 while n2 is down, then compacts n0 and n1 at
/// once (within the grace: their tombstones stay). Returns when the deletes were done.
async fn delete_while_n2_is_down(nodes: &mut [Daemon], prefix: &str) -> Instant {
    nodes[2].kill();
    let deleted_at = Instant::now();
    for i in 0..DELETED {
        delete(&nodes[0], &format!("{prefix}{i}"), Quorum)
            .await
            .expect("a delete at QUORUM with one replica down");
    }
    for node in &nodes[..2] {
        compact(node);
    }
    deleted_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_delete_stays_deleted_within_the_grace_and_comes_back_past_it() {
    let mut nodes = ring_of_three(&format!(
        "hinted_handoff_enabled = false\n[storage]\ngc_grace_secs = {}\n",
        GRACE.as_secs()
    ));
    for prefix in ["x", "y"] {
        for i in 0..DELETED {
            put(&nodes[0], &format!("{prefix}{i}"), All)
                .await
                .expect("ALL on a whole ring");
        }
    }
    put(&nodes[0], "stays", All).await.expect("ALL");

    // Kept: n2 misses the x deletes and is repaired within the grace, although the others
    // compacted meanwhile.
    let x_deleted = delete_while_n2_is_down(&mut nodes, "x").await;
    restart(&mut nodes, 2);
    assert!(found(&nodes[2], "x0", One).await.unwrap(), "n2 missed it");
    let (code, repaired) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(
        count(&repaired, "partitions_repaired"),
        DELETED as u64,
        "the compacted replicas still held the tombstones: {repaired}"
    );
    assert!(
        x_deleted.elapsed() < GRACE,
        "the test's premise: repaired within the grace ({:?} after the deletes)",
        x_deleted.elapsed()
    );

    // Broken: n2 misses the y deletes and stays down past the grace, while the others purge.
    let y_deleted = delete_while_n2_is_down(&mut nodes, "y").await;
    tokio::time::sleep(GRACE.saturating_sub(y_deleted.elapsed()) + Duration::from_secs(1)).await;
    for node in &nodes[..2] {
        compact(node);
    }
    assert!(
        status(&nodes[0])["repair"]["overdue_ranges"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the grace alarm is on: {}",
        status(&nodes[0])["repair"]
    );
    restart(&mut nodes, 2);
    compact(&nodes[2]);

    // Every replica purged the x tombstones: no path brings an x back.
    for i in 0..DELETED {
        let id = format!("x{i}");
        for node in &nodes {
            assert!(!found(node, &id, One).await.unwrap(), "{id} is back");
        }
    }
    for node in &nodes {
        assert!(!found(node, "x1", All).await.unwrap(), "read repair");
        assert!(found(node, "stays", All).await.unwrap());
    }
    let (code, preview) = repair(&nodes[1], &["--preview"]);
    assert_eq!(code, 0, "{preview}");
    assert_eq!(
        count(&preview, "partitions_differing"),
        DELETED as u64,
        "only the y partitions differ: {preview}"
    );
    let rebuilt = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .output()
        .expect("allidb runs");
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    for i in 0..DELETED {
        let id = format!("x{i}");
        assert!(
            !found(&nodes[2], &id, One).await.unwrap(),
            "{id} streamed back"
        );
    }

    // Past the rule the y values come back: n2's copies are the only cells left, and the repair
    // (as a read repair would) copies them to the replicas that purged the tombstones.
    assert!(found(&nodes[2], "y0", One).await.unwrap());
    assert!(!found(&nodes[0], "y0", One).await.unwrap());
    let (code, repaired) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(
        count(&repaired, "partitions_repaired"),
        DELETED as u64,
        "{repaired}"
    );
    for i in 0..DELETED {
        let id = format!("y{i}");
        for node in &nodes {
            assert!(
                found(node, &id, One).await.unwrap(),
                "{id}: a delete older than the grace is lost when a replica that missed it \
                 was not repaired in time"
            );
        }
    }
}
