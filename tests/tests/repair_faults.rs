//! Anti-entropy repair against the faults it exists for, on rings of real daemons
//! (docs/cluster.md "Anti-entropy repair", "A wiped replica"): a replica restored from a
//! checkpoint older than the ring's latest writes, deletes and edge removal is repaired without
//! a delete coming back; the same replica wiped (identity kept, storage gone) is refused at
//! start; a repair survives SIGKILL of the replica it writes to and of the node running it,
//! under concurrent QUORUM writers, and a second repair meanwhile is refused.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::ring::{
    allidb_json, count, delete, edges_of, found, level, put, put_hub, put_many, remove_edge,
    repair, ring_of_three, status, wait_for_states,
};
use allidb_tests::{Daemon, doc_entity, request};
use serde_json::Value;

use pb::ConsistencyLevel::{
    ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
};

const ALL_NORMAL: [(&str, &str); 3] = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];

/// Copies the directory tree `from` to `to` (which must not exist).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("the target directory is created");
    for entry in std::fs::read_dir(from).expect("the source is a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a file is copied");
        }
    }
}

/// Removes the storage engine and the index dumps of a (stopped) daemon's data dir; its
/// cluster files (identity, history) stay.
fn remove_storage(data_dir: &Path) {
    for sub in ["lsm", "index"] {
        let dir = data_dir.join(sub);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("the storage is removed");
        }
    }
}

fn wait_all_normal(nodes: &[Daemon]) {
    for node in nodes {
        wait_for_states(node, &ALL_NORMAL, Duration::from_secs(30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restored_from_an_old_checkpoint_is_repaired_and_a_wiped_one_refused() {
    let mut nodes = ring_of_three("hinted_handoff_enabled = false\n");
    for i in 0..20 {
        put(&nodes[0], &format!("d{i}"), All)
            .await
            .expect("ALL on a whole ring");
    }
    put_hub(&nodes[0], All).await;
    let saved = tempfile::tempdir().expect("a temporary directory");
    let checkpoint = saved.path().join("n2");
    let output = allidb_json(&nodes[2], &["checkpoint", checkpoint.to_str().unwrap()])
        .output()
        .expect("allidb runs");
    assert!(output.status.success(), "{output:?}");

    // Written on every replica after the checkpoint, then undone on n2 by restoring it.
    for i in 0..10 {
        put(&nodes[0], &format!("new{i}"), All).await.expect("ALL");
    }
    for i in 0..5 {
        delete(&nodes[0], &format!("d{i}"), All)
            .await
            .expect("a delete at ALL");
    }
    remove_edge(&nodes[0], ("hub", "links", "d11"), All)
        .await
        .expect("an edge removal at ALL");
    nodes[2].kill();
    let data_dir = nodes[2].data_dir.clone();
    remove_storage(&data_dir);
    copy_tree(&checkpoint.join("lsm"), &data_dir.join("lsm"));
    copy_tree(&checkpoint.join("index"), &data_dir.join("index"));
    nodes[2].restart();
    wait_all_normal(&nodes);
    assert!(!found(&nodes[2], "new3", One).await.unwrap(), "restored");
    assert!(found(&nodes[2], "d3", One).await.unwrap(), "restored");
    // A read at QUORUM through the restored node: the newer tombstone wins, and read repair
    // does not bring the value back anywhere.
    assert!(!found(&nodes[2], "d0", Quorum).await.unwrap());
    assert!(!found(&nodes[0], "d0", Quorum).await.unwrap());

    let (code, repaired) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert!(
        count(&repaired, "partitions_repaired") >= 10 + 4 + 2,
        "{repaired}"
    );
    for i in 0..10 {
        assert!(found(&nodes[2], &format!("new{i}"), One).await.unwrap());
    }
    for i in 0..5 {
        assert!(
            !found(&nodes[2], &format!("d{i}"), One).await.unwrap(),
            "d{i} stays deleted"
        );
        assert!(
            !found(&nodes[0], &format!("d{i}"), One).await.unwrap(),
            "the checkpoint's d{i} is not copied back to n0"
        );
    }
    assert_eq!(edges_of(&nodes[2], "hub", One).await, ["d10", "d12"]);
    let (_, again) = repair(&nodes[1], &["--preview"]);
    assert_eq!(
        (
            count(&again, "ranges_differing"),
            count(&again, "partitions_differing")
        ),
        (0, 0),
        "every replica holds the same cells, tombstones included: {again}"
    );

    // Wiped: the identity kept, the storage gone. The node refuses to start.
    nodes[2].kill();
    remove_storage(&data_dir);
    let mut command = nodes[2].command();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("allidbd starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("allidbd can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a wiped replica started as the same host");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().expect("stderr piped")).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("holds the identity of host") && stderr.contains("no storage"),
        "{stderr}"
    );
}

/// Writes `w{writer}-{i}` at QUORUM through `client` until `stop`; the acknowledged ids.
async fn write_until(
    mut client: pb::allidb_client::AlliDbClient<tonic::transport::Channel>,
    writer: usize,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{writer}-{i}");
        i += 1;
        let message = pb::PutEntityRequest {
            entity: Some(doc_entity(&id, &[0.25, 0.5, 1.0])),
            consistency_level: level(Quorum),
            ..Default::default()
        };
        let written = tokio::time::timeout(
            Duration::from_secs(5),
            client.put_entity(request(message, None)),
        )
        .await;
        if matches!(written, Ok(Ok(_))) {
            acked.push(id);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    acked
}

/// `allidb cluster repair` against `daemon`, started in the background.
/// Waits until a repair preview through `daemon` reaches every replica of every range: a node
/// gossip shows normal again may still be unreachable at its new address for a moment, and a
/// repair then skips its ranges (exit 3) instead of running.
fn wait_reachable(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, reply) = repair(daemon, &["--preview"]);
        if code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "replicas unreachable: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_repair(daemon: &Daemon) -> Child {
    allidb_json(daemon, &["cluster", "repair"])
        .spawn()
        .expect("allidb starts")
}

/// Waits until the repair running on `daemon` has repaired `partitions` partitions (its status
/// shows it), failing if `repair` exits first.
fn wait_repairing(daemon: &Daemon, repair: &mut Child, partitions: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = status(daemon)["repair"]["running"].clone();
        if running["partitions_repaired"]
            .as_u64()
            .is_some_and(|n| n >= partitions)
        {
            return running;
        }
        if let Some(exit) = repair.try_wait().expect("allidb can be waited for") {
            panic!("the repair ended ({exit}) before {partitions} partitions were repaired");
        }
        assert!(Instant::now() < deadline, "no repair progress: {running}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_survives_sigkill_of_either_side_under_quorum_writers() {
    // Small, throttled chunks: the differing leaves (the 3,000 missed entities) stream for some
    // seconds, so each repair is still running when a node is killed.
    let mut nodes = ring_of_three(
        "hinted_handoff_enabled = false\nnum_tokens = 16\nstream_chunk_bytes = 65536\nstream_bytes_per_sec = 262144\n",
    );
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    put_many(&nodes[0], "miss", 3000, Quorum)
        .await
        .expect("QUORUM with one node down");
    nodes[2].restart();
    wait_all_normal(&nodes);

    let stop = Arc::new(AtomicBool::new(false));
    let writers = vec![
        tokio::spawn(write_until(nodes[0].client().await, 0, stop.clone())),
        tokio::spawn(write_until(nodes[1].client().await, 1, stop.clone())),
    ];

    // The replica being written to is killed mid-repair; a second repair meanwhile is refused.
    wait_reachable(&nodes[0]);
    let mut first = spawn_repair(&nodes[0]);
    let running = wait_repairing(&nodes[0], &mut first, 100);
    assert_eq!(running["step"], "partitions", "{running}");
    assert_eq!(count(&running, "ranges"), 48, "{running}");
    let second = allidb_json(&nodes[0], &["cluster", "repair"])
        .output()
        .expect("allidb runs");
    let refused = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && refused.contains("a repair is already running"),
        "{refused}"
    );
    nodes[2].kill();
    let first = first.wait_with_output().expect("the repair ends");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(3), "incomplete: {stdout}");
    nodes[2].restart();
    wait_all_normal(&nodes);

    // The node running the repair is killed mid-way.
    wait_reachable(&nodes[1]);
    let mut third = spawn_repair(&nodes[1]);
    wait_repairing(&nodes[1], &mut third, 100);
    nodes[1].kill();
    assert!(!third.wait().expect("the CLI ends").success());
    nodes[1].restart();
    wait_all_normal(&nodes);

    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<String> = (0..3000).map(|i| format!("miss{i}")).collect();
    for writer in writers {
        acked.extend(writer.await.expect("a writer ends"));
    }
    assert!(acked.len() > 3000, "the writers were acknowledged");
    wait_reachable(&nodes[0]);
    let (code, last) = repair(&nodes[0], &[]);
    assert_eq!(code, 0, "{last}");
    let (_, preview) = repair(&nodes[2], &["--preview"]);
    assert_eq!(
        (
            count(&preview, "ranges_differing"),
            count(&preview, "partitions_differing")
        ),
        (0, 0),
        "every replica holds the same cells: {preview}"
    );
    let mut client = nodes[2].client().await;
    for ids in acked.chunks(500) {
        let message = pb::GetEntitiesRequest {
            entity_ids: ids.to_vec(),
            consistency_level: level(One),
            ..Default::default()
        };
        let reply = client
            .get_entities(request(message, None))
            .await
            .expect("a read at ONE")
            .into_inner();
        assert!(
            reply.missing_ids.is_empty(),
            "acknowledged writes lost: {:?}",
            reply.missing_ids
        );
    }
}
