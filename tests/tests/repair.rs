//! Anti-entropy repair on a ring of real daemons (docs/cluster.md "Anti-entropy repair"): a
//! replica that missed writes, deletes, an edge removal and a tenant drop (no hints, no reads
//! through it) is brought back by `allidb cluster repair`, a preview writes nothing, and a
//! second repair finds nothing to do.

use std::process::{Command, Stdio};
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{
    allidb_json, count, delete, drop_default, edges_of, found, held_by, put, put_hub, put_texts,
    remove_edge, repair, ring_of_three, ring_of_three_each, status, wait_for_states, wait_until,
};
use allidb_tests::{Daemon, allidb_binary};

use pb::ConsistencyLevel::{
    ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_back_a_replica_that_missed_writes_deletes_edges_and_a_drop() {
    let mut nodes = ring_of_three("hinted_handoff_enabled = false\nnum_tokens = 16\n");
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for i in 0..20 {
        put(&nodes[0], &format!("d{i}"), All)
            .await
            .expect("ALL on a whole ring");
    }
    put_hub(&nodes[0], All).await;
    let (code, clean) = repair(&nodes[0], &[]);
    assert_eq!((code, count(&clean, "ranges_differing")), (0, 0), "{clean}");
    assert_eq!(
        count(&clean, "ranges"),
        48,
        "3 nodes x 16 tokens, all replicated here"
    );

    // n2 misses puts, deletes and an edge removal (no hints; nothing reads through it).
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    for i in 0..10 {
        put(&nodes[0], &format!("new{i}"), Quorum)
            .await
            .expect("QUORUM with one node down");
    }
    for i in 0..5 {
        delete(&nodes[0], &format!("d{i}"), Quorum)
            .await
            .expect("a QUORUM delete with one node down");
    }
    remove_edge(&nodes[0], ("hub", "links", "d11"), Quorum)
        .await
        .expect("a QUORUM edge removal with one node down");
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    assert!(
        !found(&nodes[2], "new3", One).await.unwrap(),
        "n2 missed the put"
    );
    assert!(
        found(&nodes[2], "d3", One).await.unwrap(),
        "n2 missed the delete"
    );

    // A preview reports the difference and writes nothing.
    let (code, preview) = repair(&nodes[1], &["--preview"]);
    assert_eq!(code, 0, "{preview}");
    assert!(count(&preview, "ranges_differing") > 0, "{preview}");
    assert_eq!(
        count(&preview, "partitions_differing"),
        10 + 5 + 2,
        "every missed put and delete, and both ends of the removed edge: {preview}"
    );
    assert_eq!(count(&preview, "partitions_repaired"), 0, "{preview}");
    assert!(
        !found(&nodes[2], "new3", One).await.unwrap(),
        "a preview writes nothing"
    );

    // The repair brings n2 back, tombstones included.
    let (code, repaired) = repair(&nodes[1], &[]);
    assert_eq!(code, 0, "complete: {repaired}");
    assert_eq!(
        count(&repaired, "partitions_repaired"),
        count(&preview, "partitions_differing"),
        "{repaired}"
    );
    assert!(count(&repaired, "cells_streamed") > 0, "{repaired}");
    for i in 0..10 {
        assert!(
            found(&nodes[2], &format!("new{i}"), One).await.unwrap(),
            "new{i}"
        );
    }
    for i in 0..5 {
        assert!(
            !found(&nodes[2], &format!("d{i}"), One).await.unwrap(),
            "d{i} stays deleted"
        );
    }
    assert_eq!(edges_of(&nodes[2], "hub", One).await, ["d10", "d12"]);
    let (code, again) = repair(&nodes[2], &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (
            count(&again, "ranges_differing"),
            count(&again, "cells_streamed")
        ),
        (0, 0),
        "the replicas hold the same cells: {again}"
    );

    // n2 misses a tenant drop and a write after it.
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    drop_default(&nodes[0], Quorum)
        .await
        .expect("a QUORUM drop with one node down");
    put(&nodes[0], "after", Quorum)
        .await
        .expect("a write after the drop");
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    assert!(
        found(&nodes[2], "d10", One).await.unwrap(),
        "n2 missed the drop"
    );
    let (_, preview) = repair(&nodes[0], &["--preview"]);
    assert_eq!(
        count(&preview, "drops_sent"),
        1,
        "the drops are compared first, apart from any cell: {preview}"
    );
    let (code, repaired) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert!(count(&repaired, "drops_sent") >= 1, "{repaired}");
    for node in &nodes {
        assert_eq!(held_by(node).await, (vec!["after".to_owned()], 1));
    }
    let (_, again) = repair(&nodes[0], &[]);
    assert_eq!(count(&again, "ranges_differing"), 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_with_a_replica_down_skips_its_ranges_and_a_single_node_refuses() {
    let mut nodes = ring_of_three("hinted_handoff_enabled = false\nnum_tokens = 16\n");
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    let (code, reply) = repair(&nodes[0], &[]);
    assert_eq!(code, 3, "partial: {reply}");
    let skipped = reply["skipped"].as_array().expect("skipped ranges listed");
    assert_eq!(skipped.len(), 48, "{reply}");
    assert!(
        skipped[0].as_str().unwrap().contains("n2 is down"),
        "{reply}"
    );

    // One range: only it is compared (and skipped); a range the node does not replicate is
    // refused, naming the field.
    let ring = allidb_tests::ring::ring_json(&nodes[0]);
    let first = &ring["ranges"][0];
    let range = format!(
        "{}:{}",
        first["start"].as_str().unwrap(),
        first["end"].as_str().unwrap()
    );
    let (code, reply) = repair(&nodes[0], &["--range", &range]);
    assert_eq!(code, 3, "partial: {reply}");
    assert_eq!(count(&reply, "ranges"), 1, "{reply}");
    assert_eq!(
        reply["skipped"].as_array().map(Vec::len),
        Some(1),
        "{reply}"
    );
    let output = allidb_json(&nodes[0], &["cluster", "repair", "--range", "1:2"])
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("ranges: (1, 2] is not a token range"),
        "{stderr}"
    );

    let single = Daemon::start("");
    let output = Command::new(allidb_binary())
        .env_remove("ALLIDB_API_KEY")
        .args(["--addr", &single.grpc_url(), "cluster", "repair"])
        .stdin(Stdio::null())
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr.contains("FailedPrecondition") || stderr.contains("not part of a ring"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_repair_brings_back_a_replica_and_status_shows_the_repair_ages() {
    let mut nodes = ring_of_three_each(|i| {
        let schedule = if i == 0 {
            "repair_interval_secs = 2\n"
        } else {
            ""
        };
        format!("hinted_handoff_enabled = false\nnum_tokens = 16\n{schedule}")
    });
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    let repair_status = status(&nodes[1])["repair"].clone();
    assert_eq!(
        (
            count(&repair_status, "ranges"),
            count(&repair_status, "overdue_ranges")
        ),
        (48, 0),
        "a new node counts its ranges as repaired when it starts: {repair_status}"
    );
    assert!(repair_status["last_repair_unix_secs"].is_null());
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    for i in 0..10 {
        put(&nodes[0], &format!("late{i}"), Quorum)
            .await
            .expect("QUORUM with one node down");
    }
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    // n0's scheduler repairs every range within the interval plus 16 ticks; nothing else
    // writes n2 (no hints, no reads through it).
    wait_until("the scheduled repair", Duration::from_secs(60), || {
        let (_, preview) = repair(&nodes[1], &["--preview"]);
        count(&preview, "partitions_differing") == 0
    });
    assert!(
        nodes[0].metric("allidb_repairs_total", &[("outcome", "ok")]) >= 1.0,
        "the scheduler ran complete repairs"
    );
    let repaired = status(&nodes[0])["repair"].clone();
    assert!(
        repaired["last_repair_unix_secs"].as_u64().is_some(),
        "{repaired}"
    );
    assert!(
        status(&nodes[1])["repair"]["last_repair_unix_secs"].is_null(),
        "n1 ran no repair of its own"
    );
}

/// Text bytes of each entity of the chunked repair test: its cells' bytes are this plus at
/// most [`ENTITY_OVERHEAD`] (keys, marker, body, vector).
const TEXT_BYTES: usize = 3_000;
const ENTITY_OVERHEAD: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_larger_than_a_chunk_streams_in_chunks_and_sends_only_what_differs() {
    // Chunks of 64 KiB (the smallest): the 300 missed entities (about 1 MB) take many.
    let mut nodes = ring_of_three("hinted_handoff_enabled = false\nstream_chunk_bytes = 65536\n");
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for i in 0..200 {
        put(&nodes[0], &format!("same{i}"), All)
            .await
            .expect("ALL on a whole ring");
    }
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    let missed = 300;
    for first in (0..missed).step_by(50) {
        put_texts(&nodes[0], "big", first..first + 50, TEXT_BYTES, Quorum).await;
    }
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }

    // The preview says what would be sent; the repair sends exactly that.
    let (code, preview) = repair(&nodes[0], &["--preview"]);
    assert_eq!(code, 0, "{preview}");
    assert_eq!(
        count(&preview, "partitions_differing"),
        missed as u64,
        "{preview}"
    );
    let chunks_before = nodes[0].metric("allidb_repair_chunks_total", &[]);
    let (code, repaired) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(
        count(&repaired, "partitions_repaired"),
        missed as u64,
        "{repaired}"
    );
    for field in ["cells_streamed", "bytes_streamed"] {
        assert_eq!(count(&repaired, field), count(&preview, field), "{field}");
    }
    // The true difference: the missed entities' cells, between their text bytes and that plus
    // the overhead each; at most twice that may be sent.
    let (least, most) = (missed * TEXT_BYTES, missed * (TEXT_BYTES + ENTITY_OVERHEAD));
    let sent = count(&repaired, "bytes_streamed") as usize;
    assert!(
        sent >= least && sent <= 2 * most,
        "{sent} bytes sent for a difference of {least} to {most}: {repaired}"
    );
    // Each replica streamed the differing leaves in chunks of at most 64 KiB (one partition
    // past it): three replicas, about 1 MB from each of the two that hold it.
    let chunks = nodes[0].metric("allidb_repair_chunks_total", &[]) - chunks_before;
    assert!(
        chunks >= 2.0 * 10.0,
        "{chunks} chunks for about 1 MB from each source"
    );
    for i in [0, 149, 299] {
        assert!(
            found(&nodes[2], &format!("big{i:05}"), One).await.unwrap(),
            "big{i:05}"
        );
    }
    let (code, again) = repair(&nodes[1], &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (
            count(&again, "ranges_differing"),
            count(&again, "cells_streamed")
        ),
        (0, 0),
        "{again}"
    );
}
