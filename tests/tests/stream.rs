//! Range streaming on a ring of real daemons (docs/cluster.md "Range streaming"): a replica
//! that missed writes and deletes is rebuilt by `allidb cluster rebuild`; the stream survives
//! a SIGKILL of the receiver (the next rebuild resumes from the recorded position) and of its
//! source (the stream goes on from another replica), and ends with the replicas equal; a
//! stream goes at the pace of the receiver's indexer and leaves client writes room; a rebuild
//! streams its groups of ranges at once and reads each group's next chunk while it applies one;
//! the receiver's periodic index dump waits for the end of the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_api::pb::allidb_client::AlliDbClient;
use allidb_cluster::stream::session::{StreamGroup, StreamSession};
use allidb_tests::ring::{
    allidb_json, count, delete, found, json_reply, level, put_texts, ring_of_three_each, status,
    wait_for_states,
};
use allidb_tests::{Daemon, doc_entity, request};
use serde_json::Value;
use tonic::transport::Channel;

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

const ENTITIES: usize = 2000;
/// About 3 MB in all: with 64 KiB chunks at 512 KiB/s, a rebuild takes about 6 s.
const TEXT_BYTES: usize = 1500;

/// `daemon`'s stream session's groups, read with the daemon's own decoder (none without a
/// session).
fn stream_groups(daemon: &Daemon) -> Vec<StreamGroup> {
    StreamSession::load(&daemon.data_dir)
        .expect("the session file is written atomically")
        .map_or_else(Vec::new, |session| session.groups)
}

/// The position of the first group of `daemon`'s stream session, if it has one.
fn stream_position(daemon: &Daemon) -> Option<String> {
    let after = stream_groups(daemon).into_iter().next()?.after?;
    Some(format!("{}:{}", after.tenant, after.entity_id))
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

/// A ring of three at replication factor 2 holding 1,000 texts, and `allidb cluster rebuild`
/// started on n2, whose streams are throttled to 256 KiB/s in 64 KiB chunks (a few seconds);
/// `n2_extra` is appended to n2's configuration.
async fn throttled_rebuild_of_n2(n2_extra: &str) -> (Vec<Daemon>, std::process::Child) {
    let nodes = ring_of_three_each(|i| {
        let mut extra = "replication_factor = 2\n".to_owned();
        if i == 2 {
            extra.push_str("stream_bytes_per_sec = 262144\nstream_chunk_bytes = 65536\n");
            extra.push_str(n2_extra);
        }
        extra
    });
    for first in (0..1000).step_by(200) {
        put_texts(&nodes[0], "e", first..first + 200, TEXT_BYTES, Quorum).await;
    }
    let rebuild = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .spawn()
        .expect("allidb runs");
    (nodes, rebuild)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_streams_its_groups_of_ranges_at_once() {
    // Replication factor 2 on three nodes: n2 shares some ranges with n0 and others with n1,
    // so its rebuild has two groups, each from its own source.
    let (nodes, rebuild) = throttled_rebuild_of_n2("").await;
    // Groups one after the other would never both be open with a position; at once
    // (`cluster.stream_concurrency`, 3 by default) both are after their first chunks.
    // Each group as (done, has a position), as last seen.
    let open_and_moved = |groups: &[(bool, bool)]| {
        groups
            .iter()
            .filter(|(done, moved)| !done && *moved)
            .count()
    };
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        let groups: Vec<(bool, bool)> = stream_groups(&nodes[2])
            .iter()
            .map(|g| (g.done, g.after.is_some()))
            .collect();
        if !groups.is_empty() {
            seen = groups;
        }
        if open_and_moved(&seen) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, reply) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "the rebuild completes: {reply}");
    assert!(
        open_and_moved(&seen) >= 2,
        "two groups streamed at once (done, has a position): {seen:?}; {reply}"
    );
    assert!(
        stream_groups(&nodes[2]).is_empty(),
        "a finished session is removed"
    );
}

/// While the receiver applies a chunk, its group's next chunk is already read. With one group
/// at a time, what the sources have sent beyond what the receiver has received is then up to
/// two chunks; without the read-ahead it is never more than the one chunk being applied (64 KiB
/// and the partition that crosses that budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_the_next_chunk_while_it_applies_one() {
    const CHUNK_BYTES: f64 = 65536.0;
    let (nodes, mut rebuild) = throttled_rebuild_of_n2("stream_concurrency = 1\n").await;
    let sent = || {
        nodes[..2]
            .iter()
            .map(|n| n.metric("allidb_stream_sent_bytes_total", &[]))
            .sum::<f64>()
    };
    let received = || {
        nodes[2].metric(
            "allidb_stream_received_bytes_total",
            &[("purpose", "rebuild")],
        )
    };
    let mut most_ahead = 0.0f64;
    let started = Instant::now();
    while rebuild.try_wait().expect("allidb runs").is_none()
        && started.elapsed() < Duration::from_secs(60)
    {
        // The sources first: what the receiver has received by the second reading can only
        // have grown, so the difference never overstates how far the sources are ahead.
        let sent = sent();
        most_ahead = most_ahead.max(sent - received());
        std::thread::sleep(Duration::from_millis(2));
    }
    let (code, reply) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "the rebuild completes: {reply}");
    assert!(
        most_ahead > 1.5 * CHUNK_BYTES,
        "a second chunk was read while one was applied: the sources were at most \
         {most_ahead} bytes ahead of the receiver"
    );
    assert_eq!(
        sent(),
        received(),
        "nothing read ahead is left over once the stream is done"
    );
}

/// The sequence number `daemon`'s newest index dump covers (0: none yet).
fn newest_dump(daemon: &Daemon) -> u64 {
    std::fs::read_dir(daemon.data_dir.join("index"))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("dump-")?
                        .parse()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_periodic_index_dump_waits_for_the_end_of_its_stream() {
    // n2 dumps its indexes every second once writes came, and receives a rebuild throttled to
    // last several seconds.
    let (nodes, rebuild) = throttled_rebuild_of_n2("[index]\ndump_interval_secs = 1\n").await;
    let streaming = |daemon: &Daemon| stream_groups(daemon).iter().any(|g| !g.done);
    wait_for_progress(&nodes[2], None);
    // A dump begun before the stream may still be written: it ends within this pause.
    std::thread::sleep(Duration::from_millis(1500));
    let held = newest_dump(&nodes[2]);
    let watched = Instant::now();
    let mut during = held;
    let mut watched_for = Duration::ZERO;
    while streaming(&nodes[2]) && watched.elapsed() < Duration::from_secs(60) {
        during = newest_dump(&nodes[2]);
        watched_for = watched.elapsed();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, reply) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "the rebuild completes: {reply}");
    assert!(
        watched_for >= Duration::from_secs(2),
        "the stream lasts two dump intervals after the pause ({watched_for:?}): too short to tell"
    );
    assert_eq!(
        during, held,
        "no periodic dump while the stream was received (watched {watched_for:?})"
    );
    let started = Instant::now();
    while newest_dump(&nodes[2]) == held {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the held dump comes once the stream ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Entities streamed by the pacing test, their dimensions and n2's tail bound.
const PACED_ENTITIES: usize = 4000;
const PACED_DIM: usize = 64;
const PACED_TAIL: usize = 1000;

/// A pseudo-random unit-free vector for entity `i` (HNSW gets real work).
fn paced_vector(i: usize) -> Vec<f32> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PACED_DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Puts `ids` with their vectors through `daemon` at `at` in one batch.
async fn put_vectors(
    daemon: &Daemon,
    ids: std::ops::Range<usize>,
    at: pb::ConsistencyLevel,
) -> Result<(), tonic::Status> {
    put_vectors_with(&mut daemon.client().await, ids, at).await
}

/// [`put_vectors`] on an open client.
async fn put_vectors_with(
    client: &mut AlliDbClient<Channel>,
    ids: std::ops::Range<usize>,
    at: pb::ConsistencyLevel,
) -> Result<(), tonic::Status> {
    let message = pb::BatchPutEntitiesRequest {
        entities: ids
            .map(|i| doc_entity(&format!("v{i:05}"), &paced_vector(i)))
            .collect(),
        consistency_level: level(at),
        ..Default::default()
    };
    let reply = client
        .batch_put_entities(request(message, None))
        .await?
        .into_inner();
    if reply.success {
        Ok(())
    } else {
        Err(tonic::Status::unavailable(reply.error_message))
    }
}

/// A ring of three (hints off) where n2, with `n2_index` appended to its configuration (an
/// `[index]` section), missed the vectors `v00000..` (`missed` of them, written at QUORUM while it
/// was down); all three normal again.
async fn ring_where_n2_missed_vectors(n2_index: &str, missed: usize) -> Vec<Daemon> {
    let mut nodes = ring_of_three_each(|i| {
        let mut extra = "hinted_handoff_enabled = false\n".to_owned();
        if i == 2 {
            extra.push_str(n2_index);
        }
        extra
    });
    nodes[2].kill();
    wait_for_states(
        &nodes[0],
        &[("n0", "normal"), ("n1", "normal"), ("n2", "down")],
        Duration::from_secs(10),
    );
    for first in (0..missed).step_by(500) {
        put_vectors(&nodes[0], first..missed.min(first + 500), Quorum)
            .await
            .expect("a QUORUM batch with one node down");
    }
    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    nodes
}

/// A stream goes at the pace of the receiver's indexer and keeps half of its tail for client
/// writes: n2 (tail bound 1,000, writers refused at once when it is full, a slow HNSW build)
/// rebuilds 4,000 vectors it missed, all in one 4 MiB chunk, while a client writes vectors
/// through it (and a little longer); no client write is refused `RESOURCE_EXHAUSTED`. Without
/// the pacing the stream fills n2's tail at once and the client's writes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_waits_for_the_receivers_indexer_and_leaves_room_to_client_writes() {
    let nodes = ring_where_n2_missed_vectors(
        &format!(
            "[index]\nmax_unindexed_vectors = {PACED_TAIL}\nmax_tail_wait_ms = 0\n\
             m = 32\nef_construction = 400\n"
        ),
        PACED_ENTITIES,
    )
    .await;

    let mut rebuild = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .spawn()
        .expect("allidb runs");
    // The client writes while n2 streams and for 25 writes after (what the stream left in n2's
    // tail is indexed after it ends).
    let (mut written, mut refused) = (0, Vec::new());
    let mut next = PACED_ENTITIES;
    let mut after = 0;
    let started = Instant::now();
    while after < 25 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the rebuild ends"
        );
        if rebuild.try_wait().expect("allidb runs").is_some() {
            after += 1;
        }
        match put_vectors(&nodes[2], next..next + 1, One).await {
            Ok(()) => written += 1,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                refused.push(status.message().to_owned());
            }
            Err(status) => panic!("a client write through n2: {status:?}"),
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, reply) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "{reply}");
    assert!(
        count(&reply, "partitions") >= PACED_ENTITIES as u64,
        "every missed entity is streamed: {reply}"
    );
    assert!(
        refused.is_empty(),
        "{} of {} client writes refused while and after n2 streamed, first: {:?}",
        refused.len(),
        written + refused.len(),
        refused.first()
    );
    assert!(found(&nodes[2], "v03999", One).await.unwrap());
}

/// n2's tail bound in the starvation test, the vectors it missed, and the writers' batch.
const BUSY_TAIL: usize = 3000;
const BUSY_ENTITIES: usize = 9000;
const BUSY_BATCH: usize = 100;
/// Client vectors after which a rebuild still running counts as starved.
const BUSY_WRITES_LIMIT: usize = 60_000;

/// A client load that keeps the receiver's tail full does not starve a stream: n2 (tail bound
/// 3,000, a slow HNSW build, client writers waiting for room as they do by default) rebuilds
/// 9,000 vectors it missed while two clients write batches of vectors through it back to back
/// for as long as the rebuild runs. The rebuild ends, and every client write succeeds. A stream
/// that only used the free half of the tail would wait here for as long as the clients write:
/// they hold the tail above half, and the indexer's steps (1,024 vectors) never empty it below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_load_that_keeps_the_tail_full_does_not_starve_a_stream() {
    let nodes = ring_where_n2_missed_vectors(
        &format!("[index]\nmax_unindexed_vectors = {BUSY_TAIL}\nm = 32\nef_construction = 400\n"),
        BUSY_ENTITIES,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let written_total = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (stop, written_total) = (stop.clone(), written_total.clone());
        let mut client = nodes[2].client().await;
        writers.push(tokio::spawn(async move {
            let mut next = 100_000 * (w + 1);
            while !stop.load(Ordering::Relaxed) {
                put_vectors_with(&mut client, next..next + BUSY_BATCH, One)
                    .await
                    .unwrap_or_else(|status| panic!("a client batch through n2: {status:?}"));
                next += BUSY_BATCH;
                written_total.fetch_add(BUSY_BATCH, Ordering::Relaxed);
            }
        }));
    }
    // The writers have filled n2's tail before the stream starts.
    let started = Instant::now();
    while nodes[2].metric("allidb_vector_index_pending", &[]) < (BUSY_TAIL / 2) as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the client writers fill n2's tail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rebuild = allidb_json(&nodes[2], &["cluster", "rebuild"])
        .spawn()
        .expect("allidb runs");
    // Starvation is measured in the clients' writes, not in time: a fair share streams the
    // 9,000 vectors while the clients write about as many (plus what they write while the
    // rebuild plans and reads); a starved stream waits however many they write.
    let started = Instant::now();
    let (writes_limit, time_limit) = (BUSY_WRITES_LIMIT as f64, Duration::from_secs(600));
    let client_writes = || written_total.load(Ordering::Relaxed) as f64;
    while rebuild.try_wait().expect("allidb runs").is_none()
        && client_writes() < writes_limit
        && started.elapsed() < time_limit
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer task");
    }
    let written = written_total.load(Ordering::Relaxed);
    if rebuild.try_wait().expect("allidb runs").is_none() {
        let _ = rebuild.kill();
        panic!(
            "the rebuild did not end in {took:?} while the clients wrote {written} vectors \
             through n2: the stream was starved"
        );
    }
    let (code, reply) = json_reply(rebuild.wait_with_output().expect("allidb exits"));
    assert_eq!(code, 0, "{reply}");
    assert!(
        count(&reply, "partitions") >= BUSY_ENTITIES as u64,
        "every missed entity is streamed: {reply}"
    );
    assert!(
        written >= BUSY_TAIL,
        "the clients kept writing during the rebuild ({written} vectors in {took:?})"
    );
    assert!(found(&nodes[2], "v08999", One).await.unwrap());
    eprintln!(
        "rebuild of {BUSY_ENTITIES} vectors under the client load: {took:?}, {written} written by the clients"
    );
}
