//! Range streaming on a ring of real daemons (docs/cluster.md "Range streaming"): a replica
//! that missed writes and deletes is rebuilt by `allidb cluster rebuild`; the stream survives
//! a SIGKILL of the receiver (the next rebuild resumes from the recorded position) and of its
//! source (the stream goes on from another replica), and ends with the replicas equal.

use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::Daemon;
use allidb_tests::ring::{
    allidb_json, count, delete, found, json_reply, put_texts, ring_of_three_each, status,
    wait_for_states,
};
use serde_json::Value;

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

const ENTITIES: usize = 2000;
/// About 3 MB in all: with 64 KiB chunks at 512 KiB/s, a rebuild takes about 6 s.
const TEXT_BYTES: usize = 1500;

/// The position of the first group of `daemon`'s stream session, if it has one.
fn stream_position(daemon: &Daemon) -> Option<String> {
    let text = std::fs::read_to_string(daemon.data_dir.join("cluster/stream-session")).ok()?;
    let group = text.lines().find(|l| l.starts_with("group "))?;
    let after = group.rsplit(' ').next()?;
    (after != "-").then(|| after.to_owned())
}

/// Waits until `daemon`'s stream position is set and differs from `from`.
fn wait_for_progress(daemon: &Daemon, from: Option<&str>) -> String {
    let started = Instant::now();
    loop {
        if let Some(position) = stream_position(daemon).filter(|p| Some(p.as_str()) != from) {
            return position;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stream records a position"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn repair_preview(daemon: &Daemon) -> Value {
    let (code, reply) = json_reply(
        allidb_json(daemon, &["cluster", "repair", "--preview"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(code, 0, "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_streams_what_a_replica_missed_and_survives_kills_of_either_side() {
    let mut nodes = ring_of_three_each(|i| {
        let mut extra = "hinted_handoff_enabled = false\n".to_owned();
        if i == 2 {
            extra.push_str("stream_bytes_per_sec = 524288\nstream_chunk_bytes = 65536\n");
        }
        extra
    });
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];

    // n2 misses every write and some deletes (no hints, nothing read through it).
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    for first in (0..ENTITIES).step_by(200) {
        put_texts(&nodes[0], "e", first..first + 200, TEXT_BYTES, Quorum).await;
    }
    for i in 0..10 {
        delete(&nodes[0], &format!("e{i:05}"), Quorum)
            .await
            .expect("a QUORUM delete with one node down");
    }
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    let before = repair_preview(&nodes[2]);
    assert_eq!(
        count(&before, "partitions_differing"),
        ENTITIES as u64,
        "n2 lacks every entity (the 10 deleted ones as tombstones): {before}"
    );

    // The receiver is killed once the stream has recorded a position.
    let rebuild = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .spawn()
        .expect("allidb runs");
    wait_for_progress(&nodes[2], None);
    nodes[2].kill();
    let died = rebuild.wait_with_output().expect("allidb exits");
    assert!(!died.status.success(), "the rebuild's node died under it");
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    let recorded = stream_position(&nodes[2]);
    assert!(recorded.is_some(), "the position survives the crash");

    // The next rebuild resumes there; its first source is killed while it streams.
    let rebuild = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .spawn()
        .expect("allidb runs");
    wait_for_progress(&nodes[2], recorded.as_deref());
    let second = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && stderr.contains("a rebuild is already running"),
        "one rebuild at a time: {stderr}"
    );
    let first_source = (0..2)
        .min_by_key(|i| status(&nodes[*i])["host_id"].as_str().unwrap().to_owned())
        .expect("two sources");
    nodes[first_source].kill();
    let (code, resumed) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "complete from the other source: {resumed}");
    assert_eq!(resumed["resumed"], Value::Bool(true), "{resumed}");
    assert!(
        count(&resumed, "partitions") < ENTITIES as u64,
        "what the killed run received is not streamed again: {resumed}"
    );
    assert!(
        stream_position(&nodes[2]).is_none(),
        "a finished session is removed"
    );
    nodes[first_source].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }

    // The replicas hold the same cells, tombstones included.
    let after = repair_preview(&nodes[2]);
    assert_eq!(
        (
            count(&after, "ranges_differing"),
            count(&after, "partitions_differing")
        ),
        (0, 0),
        "{after}"
    );
    assert!(found(&nodes[2], "e01999", One).await.unwrap());
    assert!(!found(&nodes[2], "e00003", One).await.unwrap());
    let (code, again) = json_reply(
        allidb_json(&nodes[2], &["cluster", "rebuild"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["resumed"], Value::Bool(false), "{again}");
    let long = "t".repeat(200);
    let refused = allidb_json(&nodes[2], &["cluster", "rebuild", "--tenant", &long])
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("InvalidArgument")
            && stderr.contains("tenant id must be 1..=128 bytes"),
        "a bad tenant is named: {stderr}"
    );
}
