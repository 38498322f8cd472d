//! `RangeScan` across a ring with real `allidbd` processes on loopback (docs/api.md "RangeScan
//! page tokens", docs/cluster.md "Cluster-wide reads"): a 5-node ring with replication factor 3,
//! hints off, where one replica missed 60 QUORUM writes, is paged through at QUORUM, each page
//! through another node (the token is good on every node of the ring) while nodes are killed
//! and restarted: every entity is listed exactly once, in id order, the stale replica
//! included as coordinator (the ids of each range come from a quorum of its replicas). A token
//! is refused for another level, another tenant, or after being altered.

use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{put_many, start_ring, wait_for_states};
use allidb_tests::{Daemon, request};
use tonic::Code;

const QUORUM: pb::ConsistencyLevel = pb::ConsistencyLevel::ConsistencyQuorum;

/// One page of the default tenant through `node`.
async fn page(
    node: &Daemon,
    limit: i32,
    page_token: &str,
    level: pb::ConsistencyLevel,
) -> Result<pb::RangeScanResponse, tonic::Status> {
    node.client()
        .await
        .range_scan(request(
            pb::RangeScanRequest {
                limit,
                page_token: page_token.to_owned(),
                consistency_level: level as i32,
                ..Default::default()
            },
            None,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Every id through `node` alone at QUORUM, 50 to a page.
async fn scan_through(node: &Daemon) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let reply = page(node, 50, &token, QUORUM).await.expect("a page");
        ids.extend(reply.entities.into_iter().map(|e| e.entity_id));
        if reply.next_page_token.is_empty() {
            return ids;
        }
        token = reply.next_page_token;
    }
}

fn wait_for(ring: &[Daemon], states: &[(&str, &str)]) {
    for (i, node) in ring.iter().enumerate() {
        if states[i].1 != "down" {
            wait_for_states(node, states, Duration::from_secs(30));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_paged_through_every_node_while_nodes_die_and_return_lists_each_entity_once() {
    let mut ring = start_ring(
        5,
        "replication_factor = 3\nhinted_handoff_enabled = false\n",
    );
    put_many(&ring[0], "a", 240, QUORUM).await.expect("loaded");
    // n4 misses 60 writes a quorum acknowledged, and comes back without them (no hints).
    ring[4].kill();
    put_many(&ring[1], "b", 60, QUORUM)
        .await
        .expect("written at QUORUM with n4 down");
    ring[4].restart();
    let names = ["n0", "n1", "n2", "n3", "n4"];
    let normal: Vec<(&str, &str)> = names.iter().map(|n| (*n, "normal")).collect();
    wait_for(&ring, &normal);
    let mut expected: Vec<String> = (0..240)
        .map(|i| format!("a{i}"))
        .chain((0..60).map(|i| format!("b{i}")))
        .collect();
    expected.sort();

    // Through the stale replica alone: its own ranges are read from a quorum of replicas.
    assert_eq!(scan_through(&ring[4]).await, expected);

    // Paged 7 at a time, each page through the next live node; every 4 pages the node killed
    // before is restarted, and once the others see it up, another is killed (one down at a
    // time: every range keeps a quorum).
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut down: Option<usize> = None;
    let mut pages = 0usize;
    loop {
        if pages % 4 == 3 {
            if let Some(back) = down.take() {
                ring[back].restart();
                wait_for(&ring, &normal);
            }
            let victim = 1 + (pages / 4) % 4;
            ring[victim].kill();
            down = Some(victim);
        }
        let through = (0..ring.len())
            .map(|offset| (pages + offset) % ring.len())
            .find(|i| Some(*i) != down)
            .expect("four nodes are up");
        let reply = page(&ring[through], 7, &token, QUORUM)
            .await
            .unwrap_or_else(|e| panic!("page {pages} through n{through}: {e:?}"));
        assert!(reply.entities.len() <= 7);
        seen.extend(reply.entities.into_iter().map(|e| e.entity_id));
        pages += 1;
        if reply.next_page_token.is_empty() {
            break;
        }
        token = reply.next_page_token;
    }
    assert_eq!(
        seen, expected,
        "every entity once, in id order, over {pages} pages"
    );
    if let Some(back) = down.take() {
        ring[back].restart();
    }
    wait_for(&ring, &normal);

    // A token is bound to its level and tenant, and cannot be altered.
    let first = page(&ring[0], 5, "", QUORUM).await.expect("a first page");
    let token = first.next_page_token;
    let other_level = page(&ring[1], 5, &token, pb::ConsistencyLevel::ConsistencyOne)
        .await
        .expect_err("another level");
    assert_eq!(other_level.code(), Code::InvalidArgument);
    assert!(
        other_level.message().starts_with("consistency_level"),
        "{other_level:?}"
    );
    let mut altered = token.clone().into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("base64 is ASCII");
    let refused = page(&ring[2], 5, &altered, QUORUM)
        .await
        .expect_err("an altered token");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("page_token"), "{refused:?}");
    let next = page(&ring[3], 5, &token, QUORUM)
        .await
        .expect("the token is good on another node");
    assert_eq!(next.entities[0].entity_id, expected[5]);
    let long_key = pb::RangeScanRequest {
        routing_key: "k".repeat(257),
        ..Default::default()
    };
    let refused = ring[0]
        .client()
        .await
        .range_scan(request(long_key, None))
        .await
        .expect_err("a routing key over 256 bytes");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("routing_key"), "{refused:?}");
}
