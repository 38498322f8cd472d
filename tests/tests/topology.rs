//! Topology changes on a ring of real daemons (docs/cluster.md "Topology log"): a node joining a
//! loaded ring is validated by the log, streams its ranges from the replicas it displaces while
//! writes go to both rings, and serves reads only once it is `normal`, without losing a write a
//! QUORUM acknowledged, also one that a replica missed; a node decommissions and a dead one is
//! removed, each leaving every entity on its replicas, and refusals say why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::ring::{
    allidb_json, cluster_toml, found, free_udp_addr, gossip_addr_of, held_per_node, host_id_of,
    json_reply, put_many, quorum_writer, ring_json, ring_of_three, start_ring, status,
    wait_for_states,
};
use allidb_tests::{Daemon, request};

use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};

/// Every node's `[cluster]` here: no hints, so a node that was down misses what it missed.
const NO_HINTS: &str = "hinted_handoff_enabled = false\n";
/// What `ring_of_three` adds to its nodes' `[cluster]`, for the node started here.
const TIMEOUTS: &str = "write_timeout_ms = 1000\nread_timeout_ms = 1000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_streams_from_the_replicas_it_displaces_and_no_acknowledged_write_is_lost() {
    let mut nodes = ring_of_three(NO_HINTS);
    // n2 misses 300 QUORUM writes: down, and no hints for it.
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    put_many(&nodes[0], "missed", 300, Quorum)
        .await
        .expect("QUORUM with one node down");
    nodes[2].restart();
    let three = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &three, Duration::from_secs(30));
    }

    // A writer keeps writing at QUORUM through n0 while a fourth node joins.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = quorum_writer(&nodes[0], "live", stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seed = gossip_addr_of(&nodes[0], "n0");
    let n3_config = format!(
        "{}{TIMEOUTS}{NO_HINTS}",
        cluster_toml("n3", free_udp_addr(), seed)
    );
    let n3 = tokio::task::spawn_blocking(move || Daemon::start(&n3_config))
        .await
        .expect("the fourth node starts and reports ready once normal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("the writer task");
    assert!(
        acked.len() > 10,
        "writes went on during the join: {}",
        acked.len()
    );

    let four = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
    ];
    for node in nodes.iter().chain(std::iter::once(&n3)) {
        wait_for_states(node, &four, Duration::from_secs(30));
    }
    let versions: Vec<u64> = nodes
        .iter()
        .chain(std::iter::once(&n3))
        .map(|node| {
            status(node)["ring_version"]
                .as_u64()
                .expect("a ring version")
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] == w[1]),
        "every node routes by the same topology version: {versions:?}"
    );
    let settled = status(&n3);
    assert!(
        settled.get("movement").is_some_and(|m| m.is_null()),
        "no movement runs once the join finished: {settled}"
    );

    // Through the new node, at QUORUM, every acknowledged write is found: the ones n2 missed
    // (streamed from the replica each range's new owner displaced), and the ones written
    // during the join (written to both rings).
    let mut lost = Vec::new();
    let ids = (0..300)
        .map(|i| format!("missed{i}"))
        .chain(acked.iter().cloned());
    for id in ids {
        if !found(&n3, &id, Quorum).await.expect("a QUORUM read") {
            lost.push(id);
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes not found: {lost:?}",
        lost.len()
    );
}

/// Whether every id of `ids` is in `daemon`'s own store (a read at ONE through a replica is
/// answered by its own store first).
async fn holds_all(daemon: &Daemon, ids: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in ids {
        if !found(daemon, id, One).await.expect("a read at ONE") {
            missing.push(id.clone());
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_decommissions_a_dead_one_is_removed_and_each_refusal_names_its_reason() {
    let mut nodes = start_ring(5, TIMEOUTS);
    let ids: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
    put_many(&nodes[0], "e", 200, Quorum)
        .await
        .expect("QUORUM on a whole ring");

    // n4 decommissions itself through the CLI: its ranges go to the others, it is left.
    let (code, reply) = json_reply(
        allidb_json(&nodes[4], &["cluster", "decommission"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(
        (code, reply["finished"].as_bool()),
        (0, Some(true)),
        "{reply}"
    );
    let after_leave = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "normal"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &after_leave, Duration::from_secs(10));
    nodes[4].kill();

    // A removenode of a live node is refused, and so is one that could lose what a QUORUM
    // acknowledged: n3 dead and n2 down leave ranges with one surviving replica of two.
    let n3_host = host_id_of(&nodes[0], "n3");
    let mut client = nodes[0].client().await;
    let remove = |ignore_dead| pb::RemoveNodeRequest {
        host_id: n3_host.clone(),
        ignore_dead,
    };
    // Bad input: a host id that is not one, and one the ring does not hold.
    let bad = pb::RemoveNodeRequest {
        host_id: "not-a-host".to_owned(),
        ignore_dead: false,
    };
    let bad = client
        .remove_node(request(bad, None))
        .await
        .expect_err("not a host id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().starts_with("host_id:"), "{}", bad.message());
    let unknown = pb::RemoveNodeRequest {
        host_id: "00000000-0000-0000-0000-000000000001".to_owned(),
        ignore_dead: false,
    };
    let unknown = client
        .remove_node(request(unknown, None))
        .await
        .expect_err("a host the ring does not hold");
    assert_eq!(
        unknown.code(),
        tonic::Code::FailedPrecondition,
        "{unknown:?}"
    );
    assert!(
        unknown.message().contains("not in the ring"),
        "{}",
        unknown.message()
    );
    let live = client
        .remove_node(request(remove(false), None))
        .await
        .expect_err("n3 is up");
    assert_eq!(live.code(), tonic::Code::FailedPrecondition, "{live:?}");
    assert!(live.message().contains("is up"), "{}", live.message());
    nodes[3].kill();
    nodes[2].kill();
    let two_down = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "down"),
        ("n3", "down"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &two_down, Duration::from_secs(10));
    let short = client
        .remove_node(request(remove(false), None))
        .await
        .expect_err("a second replica is down");
    assert_eq!(short.code(), tonic::Code::FailedPrecondition, "{short:?}");
    assert!(
        short.message().contains("--ignore-dead"),
        "{}",
        short.message()
    );

    // With n2 back, n3 is removed: its ranges are streamed from every surviving replica.
    nodes[2].restart();
    let three_up = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "down"),
        ("n4", "left"),
    ];
    wait_for_states(&nodes[0], &three_up, Duration::from_secs(30));
    let removed = client
        .remove_node(request(remove(false), None))
        .await
        .expect("a removal of a dead node")
        .into_inner();
    assert!(removed.finished, "{removed:?}");
    for node in &nodes[..3] {
        let missing = holds_all(node, &ids).await;
        assert!(
            missing.is_empty(),
            "{} lacks {} entities after the movements: {missing:?}",
            node.grpc_url(),
            missing.len()
        );
    }

    // Three nodes left with RF 3: another leave is refused, naming the factor.
    let refused = allidb_json(&nodes[2], &["cluster", "decommission"])
        .output()
        .expect("allidb runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("replication factor 3"),
        "the refusal names the replication factor: {stderr}"
    );
}

/// The tokens of node `name` in `daemon`'s ring (the ends of the ranges it owns).
fn tokens_of(daemon: &Daemon, name: &str) -> Vec<String> {
    let ring = ring_json(daemon);
    let tokens: Vec<String> = ring["ranges"]
        .as_array()
        .expect("ranges is an array")
        .iter()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["end"].as_str().map(str::to_owned))
        .collect();
    assert!(!tokens.is_empty(), "{name} owns ranges in {ring}");
    tokens
}

/// `(name, tokens)` of every node in `daemon`'s status, sorted by name.
fn token_counts(daemon: &Daemon) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = status(daemon)["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .map(|n| {
            let name = n["name"].as_str().unwrap_or_default().to_owned();
            (name, n["tokens"].as_u64().unwrap_or_default())
        })
        .collect();
    counts.sort();
    counts
}

/// A node with `cluster.num_tokens` = 0 (the default) takes as many tokens as the ring's nodes hold, 4 when it
/// forms the ring; a node that sets it takes that many.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_num_tokens_takes_as_many_as_the_rings_nodes_hold() {
    let fresh = start_ring(2, "");
    let counts = token_counts(&fresh[0]);
    assert_eq!(counts, [("n0".to_owned(), 4), ("n1".to_owned(), 4)]);
    drop(fresh);
    let gossip: Vec<_> = (0..3).map(|_| free_udp_addr()).collect();
    let node = |i: usize, extra: &str| {
        let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
        Daemon::start(&format!("{toml}{extra}"))
    };
    let n0 = node(0, "num_tokens = 6\n");
    let n1 = node(1, "");
    let both = [("n0", "normal"), ("n1", "normal")];
    wait_for_states(&n0, &both, Duration::from_secs(60));
    let n2 = node(2, "num_tokens = 2\n");
    let all = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for daemon in [&n0, &n1, &n2] {
        wait_for_states(daemon, &all, Duration::from_secs(60));
    }
    let expected = [("n0", 6), ("n1", 6), ("n2", 2)].map(|(n, c)| (n.to_owned(), c));
    assert_eq!(token_counts(&n1), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_replaces_a_dead_one_taking_its_tokens_and_streaming_its_data() {
    let extra = format!("{TIMEOUTS}{NO_HINTS}");
    let mut nodes = start_ring(4, &extra);
    put_many(&nodes[0], "e", 200, Quorum)
        .await
        .expect("QUORUM on a whole ring");
    let dead = host_id_of(&nodes[0], "n3");
    let dead_tokens = tokens_of(&nodes[0], "n3");
    nodes[3].kill();
    let n3_down = [
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "down"),
    ];
    wait_for_states(&nodes[0], &n3_down, Duration::from_secs(10));
    // What n3 never saw: only the surviving replicas hold these.
    put_many(&nodes[0], "late", 100, Quorum)
        .await
        .expect("QUORUM with one node down");

    let seed = gossip_addr_of(&nodes[0], "n0");
    let replacing = |name: &str, host: &str| {
        format!(
            "{}{extra}replace_host = \"{host}\"\n",
            cluster_toml(name, free_udp_addr(), seed)
        )
    };
    // A live node is not replaced, and a replace_host that is no host id is a config error.
    let live = host_id_of(&nodes[0], "n1");
    let (code, log) = Daemon::start_refused(&replacing("bad", &live), Duration::from_secs(30));
    assert!(code != Some(0) && log.contains("is up"), "({code:?}) {log}");
    let (code, log) = Daemon::start_refused(&replacing("bad", "n3"), Duration::from_secs(30));
    assert!(
        code == Some(2) && log.contains("cluster.replace_host"),
        "({code:?}) {log}"
    );

    let config = replacing("n4", &dead);
    let n4 = tokio::task::spawn_blocking(move || Daemon::start(&config))
        .await
        .expect("the replacement starts and reports ready once normal");
    // The refused node gossiped before it stopped: the others list it down.
    let replaced = [
        ("bad", "down"),
        ("n0", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("n3", "left"),
        ("n4", "normal"),
    ];
    for node in nodes[..3].iter().chain(std::iter::once(&n4)) {
        wait_for_states(node, &replaced, Duration::from_secs(30));
    }
    assert_eq!(
        tokens_of(&n4, "n4"),
        dead_tokens,
        "the replacement holds n3's tokens"
    );

    // Every entity is on exactly RF = 3 replicas again: n4 streamed what n3 held and what it
    // missed from the surviving replicas.
    let held = held_per_node(&n4).await;
    let names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["n0", "n1", "n2", "n4"], "{held:?}");
    let total: u64 = held.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3 * 300, "each entity on 3 replicas: {held:?}");
    for i in 0..100 {
        let id = format!("late{i}");
        assert!(
            found(&n4, &id, Quorum).await.expect("a QUORUM read"),
            "{id} through the replacement"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_metadata_quorum_topology_commands_fail_fast_and_data_goes_on() {
    let mut nodes = ring_of_three("");
    let n2_host = host_id_of(&nodes[0], "n2");
    // Two of the log's three voters down: no metadata quorum.
    nodes[1].kill();
    nodes[2].kill();
    wait_for_states(
        &nodes[0],
        &[("n0", "normal"), ("n1", "down"), ("n2", "down")],
        Duration::from_secs(10),
    );
    let mut client = nodes[0].client().await;
    let started = std::time::Instant::now();
    let refused = client
        .remove_node(request(
            pb::RemoveNodeRequest {
                host_id: n2_host,
                ignore_dead: true,
            },
            None,
        ))
        .await
        .expect_err("no metadata quorum");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("topology log"),
        "{}",
        refused.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed fast: {:?}",
        started.elapsed()
    );
    // Reads and writes at ONE go on.
    let put = pb::PutEntityRequest {
        entity: Some(allidb_tests::doc_entity("alone", &[1.0, 0.0, 0.5])),
        consistency_level: allidb_tests::ring::level(One),
        ..Default::default()
    };
    client
        .put_entity(request(put, None))
        .await
        .expect("a write at ONE");
    assert!(found(&nodes[0], "alone", One).await.expect("a read at ONE"));
}

/// The internal `Join` and `Leave` calls a joining node or an operator's node sends, each with
/// one bad field: refused with the status and a message naming that field (docs/cluster.md
/// "Topology log"), and nothing enters the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_join_and_leave_requests_with_a_bad_field_are_refused_naming_it() {
    use allidb_cluster::credentials::{ClusterCredentials, TOKEN_HEADER};
    use allidb_cluster::proto as internal;
    use allidb_tests::ring::SECRET;

    /// `answer` is a refusal with `code` whose message contains `named`.
    fn assert_refused_naming<T: std::fmt::Debug>(
        answer: Result<T, tonic::Status>,
        code: tonic::Code,
        named: &str,
        label: &str,
    ) {
        let refused = answer.expect_err("a request with a bad field is refused");
        assert_eq!(refused.code(), code, "{label}: {refused:?}");
        assert!(
            refused.message().contains(named),
            "{label} names {named:?}: {refused:?}"
        );
    }

    /// `message` with the ring's credentials.
    fn signed<T>(message: T) -> tonic::Request<T> {
        let mut call = tonic::Request::new(message);
        let credentials = ClusterCredentials::new("e2e", SECRET);
        let token = credentials.token().parse().expect("a token is ASCII");
        call.metadata_mut().insert(TOKEN_HEADER, token);
        call
    }

    let nodes = tokio::task::block_in_place(|| start_ring(1, TIMEOUTS));
    let n0 = &nodes[0];
    let version_before = status(n0)["ring_version"].as_u64();
    let header = |sender: &str| internal::RequestHeader {
        protocol_version: allidb_cluster::PROTOCOL_VERSION,
        ring_version: 0,
        sender: sender.to_owned(),
        recipient: host_id_of(n0, "n0"),
    };
    let newcomer = "0123456789abcdef0123456789abcdef";
    let good_join = internal::JoinRequest {
        header: Some(header(newcomer)),
        cluster_name: "e2e".to_owned(),
        name: "n9".to_owned(),
        rpc_addr: "127.0.0.1:9".to_owned(),
        num_tokens: 16,
        ..Default::default()
    };
    let mut client = internal::topology_client::TopologyClient::new(n0.channel().await);
    let mut other_protocol = header(newcomer);
    other_protocol.protocol_version += 1;
    let mut other_recipient = header(newcomer);
    other_recipient.recipient = newcomer.to_owned();
    let joins: Vec<(internal::JoinRequest, tonic::Code, &str)> = vec![
        (
            internal::JoinRequest {
                header: None,
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "header: required",
        ),
        (
            internal::JoinRequest {
                header: Some(header("not-a-host")),
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "header.sender",
        ),
        (
            internal::JoinRequest {
                header: Some(other_protocol),
                ..good_join.clone()
            },
            tonic::Code::FailedPrecondition,
            "header.protocol_version",
        ),
        (
            internal::JoinRequest {
                header: Some(other_recipient),
                ..good_join.clone()
            },
            tonic::Code::FailedPrecondition,
            "header.recipient",
        ),
        (
            internal::JoinRequest {
                cluster_name: String::new(),
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "cluster_name: required",
        ),
        (
            internal::JoinRequest {
                cluster_name: "another".to_owned(),
                ..good_join.clone()
            },
            tonic::Code::FailedPrecondition,
            "cluster name \"another\"",
        ),
        (
            internal::JoinRequest {
                rpc_addr: "nowhere".to_owned(),
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "rpc_addr",
        ),
        (
            internal::JoinRequest {
                num_tokens: 257,
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "num_tokens: 257 is outside 0..=256",
        ),
        (
            internal::JoinRequest {
                tokens: vec![1; 100_000],
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "tokens",
        ),
        (
            internal::JoinRequest {
                replaces: "zz".to_owned(),
                ..good_join.clone()
            },
            tonic::Code::InvalidArgument,
            "replaces",
        ),
    ];
    for (i, (join, code, named)) in joins.into_iter().enumerate() {
        let refused = client.join(signed(join)).await;
        assert_refused_naming(refused, code, named, &format!("join {i}"));
    }
    let good_leave = internal::LeaveRequest {
        header: Some(header(&host_id_of(n0, "n0"))),
        host: host_id_of(n0, "n0"),
        kind: internal::LeaveKind::Removenode as i32,
        ..Default::default()
    };
    let leaves: Vec<(internal::LeaveRequest, tonic::Code, &str)> = vec![
        (
            internal::LeaveRequest {
                host: "not-a-host".to_owned(),
                ..good_leave.clone()
            },
            tonic::Code::InvalidArgument,
            "host: ",
        ),
        (
            internal::LeaveRequest {
                kind: internal::LeaveKind::Unspecified as i32,
                ..good_leave.clone()
            },
            tonic::Code::InvalidArgument,
            "kind",
        ),
        (
            internal::LeaveRequest {
                host: newcomer.to_owned(),
                ..good_leave.clone()
            },
            tonic::Code::FailedPrecondition,
            "not in the ring",
        ),
    ];
    for (i, (leave, code, named)) in leaves.into_iter().enumerate() {
        let refused = client.leave(signed(leave)).await;
        assert_refused_naming(refused, code, named, &format!("leave {i}"));
    }
    // Without the ring's credentials: refused before any field is read.
    let unsigned = client
        .join(tonic::Request::new(good_join))
        .await
        .expect_err("an unsigned join is refused");
    assert_eq!(
        unsigned.code(),
        tonic::Code::Unauthenticated,
        "{unsigned:?}"
    );
    assert_eq!(
        status(n0)["ring_version"].as_u64(),
        version_before,
        "nothing entered the log"
    );
}
