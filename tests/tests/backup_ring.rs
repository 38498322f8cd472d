//! End-to-end test of a ring's backup (docs/backup.md "A ring"): a 3-node ring (RF 3) backed up
//! with `allidb cluster backup` under one id, stopped, restored node by node into fresh data
//! directories and started again: the same host ids come back, every replica holds exactly what
//! it held (its own store, read through its replica service), the data equals what was written
//! (entities with vectors, edges and chunks; deletes stay deleted), and `allidb cluster repair`
//! finds no difference between the replicas.

use std::net::SocketAddr;
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::backup::{allidb, allidb_command, entity, restore};
use allidb_tests::ring::{
    cluster_toml, count, delete, free_udp_addr, host_id_of, level, own_ids, repair, ring_of_three,
    wait_for_states,
};
use allidb_tests::{Daemon, request};

use pb::ConsistencyLevel::ConsistencyAll as All;

const WRITTEN: usize = 300;
const DELETED: usize = 20;

/// Every entity of tenant `default` as `daemon` scans it (RF 3: a node holds every range).
async fn scan(daemon: &Daemon) -> Vec<pb::Entity> {
    let mut client = daemon.client().await;
    let reply = client
        .range_scan(request(
            pb::RangeScanRequest {
                limit: 1000,
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("a scan")
        .into_inner();
    assert!(reply.next_page_token.is_empty(), "one page holds them all");
    reply.entities
}

/// The own ids of each of `nodes` (named `n0`, `n1`, ...), sorted, by position.
async fn own_ids_of(nodes: &[Daemon]) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut ids = own_ids(node, &host_id_of(node, &format!("n{i}"))).await;
        ids.sort();
        all.push(ids);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_restored_node_by_node_holds_its_data_and_repairs_with_no_difference() {
    let scratch = tempfile::tempdir().unwrap();
    let nodes = ring_of_three("num_tokens = 16\n");
    let hosts: Vec<String> = (0..3)
        .map(|i| host_id_of(&nodes[0], &format!("n{i}")))
        .collect();
    let mut client = nodes[0].client().await;
    let entities: Vec<pb::Entity> = (0..WRITTEN).map(|i| entity("r", i)).collect();
    for batch in entities.chunks(100) {
        let reply = client
            .batch_put_entities(request(
                pb::BatchPutEntitiesRequest {
                    entities: batch.to_vec(),
                    consistency_level: level(All),
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("writes at ALL")
            .into_inner();
        assert!(reply.success, "{reply:?}");
    }
    for i in 0..DELETED {
        delete(&nodes[0], &format!("r{i:05}"), All)
            .await
            .expect("a delete at ALL");
    }
    let written = scan(&nodes[0]).await;
    assert_eq!(written.len(), WRITTEN - DELETED);
    let held = own_ids_of(&nodes).await;
    for ids in &held {
        assert_eq!(
            ids.len(),
            WRITTEN - DELETED,
            "RF 3: every node holds every entity"
        );
    }

    let target = format!("file://{}", scratch.path().join("ring-store").display());
    let admin = nodes[0].admin_addr.unwrap().to_string();
    let staging = scratch.path().join("staging").display().to_string();
    let mut backup = allidb_command(
        None,
        &[
            "--json",
            "cluster",
            "--admin",
            &admin,
            "backup",
            "--to",
            &target,
            "--staging",
            &staging,
            "--backup-id",
            "ring-1",
        ],
    );
    backup.env_remove("ALLIDB_API_KEY");
    let output = backup.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list = allidb(None, &["--json", "backup", "list", "--from", &target])
        .expect(0)
        .json();
    assert_eq!(list[0]["complete"], true, "{list}");
    assert_eq!(list[0]["nodes"].as_array().unwrap().len(), 3, "{list}");
    drop(client);
    drop(nodes);

    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let mut restored = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let dest = scratch.path().join(format!("restored-{i}"));
        restore(None, &target, "ring-1", &dest, &["--node", host]).expect(0);
        let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
        restored.push(Daemon::start_on_data_dir(&toml, &dest));
    }
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &restored {
        wait_for_states(node, &all_normal, Duration::from_secs(60));
    }
    let restored_hosts: Vec<String> = (0..3)
        .map(|i| host_id_of(&restored[0], &format!("n{i}")))
        .collect();
    assert_eq!(restored_hosts, hosts, "the same host ids come back");
    assert_eq!(
        own_ids_of(&restored).await,
        held,
        "every replica holds exactly what it held"
    );
    for node in &restored {
        assert!(
            scan(node).await == written,
            "every entity, vector, edge and chunk as written; deletes stay deleted"
        );
    }

    let (code, repaired) = repair(&restored[1], &[]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(
        count(&repaired, "ranges"),
        48,
        "3 nodes x 16 tokens: {repaired}"
    );
    assert_eq!(
        (
            count(&repaired, "ranges_differing"),
            count(&repaired, "cells_streamed")
        ),
        (0, 0),
        "the restored replicas hold the same cells: {repaired}"
    );
}
