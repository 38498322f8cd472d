//! `[cluster]` with real `allidbd` processes on loopback: three daemons form one ring through
//! gossip, every node reports the same ring and replicas on its admin port, a SIGKILLed node is
//! marked down and comes back with its host id and tokens, a SIGTERMed one is down on its peers
//! at once (it announces its shutdown in gossip); a data dir of another cluster stops
//! startup. Reads and writes on a ring of three (RF 3): blocking read repair, reads around a
//! frozen replica (speculative reads, before gossip shows it down), an edge removal through a
//! lagging coordinator winning, a tenant drop reaching a node that was down (by read repair and
//! by hint) without bringing dropped data back, a ring with one replica naming the ranges of a
//! dead node, and, with TLS, node-to-node mTLS with the cluster CA (a certificate of another CA
//! refused). Consistency levels, hinted handoff and the internal service's refusals:
//! `replication.rs`; concurrency and chaos: `ring_chaos.rs`; a network partition: `partition.rs`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use allidb_api::pb;
use allidb_cluster::proto as internal;
use allidb_tests::certs::Ca;
use allidb_tests::ring::{
    cluster_toml, drop_default, e2e_token, found, free_udp_addr, held_by, hints_pending,
    host_id_of, internal_read, level, put, put_many, remove_edge, ring_of_three,
    ring_of_three_each, start_ring, states, status, topology_version, wait_for_states, wait_until,
    with_token,
};
use allidb_tests::{Daemon, allidbd_binary, doc_entity, http_get, request};
use internal::replica_client::ReplicaClient;
use serde_json::Value;
use tonic::Code;

#[test]
fn three_daemons_form_one_ring_and_track_a_killed_node() {
    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let mut nodes: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&cluster_toml(&format!("n{i}"), gossip[i], gossip[0])))
        .collect();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }

    // One ring everywhere: same ranges, same replicas of an entity. (`ring_version` counts the
    // changes each node saw, so it is node-local.)
    let ring = |d: &Daemon| {
        let body = http_get(d.admin_addr.unwrap(), "/cluster/ring").1;
        serde_json::from_str::<Value>(&body).unwrap()["ranges"].clone()
    };
    let endpoints = |d: &Daemon| {
        let (code, body) = http_get(d.admin_addr.unwrap(), "/cluster/endpoints?tenant=t&id=e");
        assert_eq!(code, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        reply["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["host_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first_ring = ring(&nodes[0]);
    assert_eq!(
        first_ring.as_array().unwrap().len(),
        12,
        "3 nodes x 4 tokens (cluster.num_tokens unset)"
    );
    let replicas = endpoints(&nodes[0]);
    assert_eq!(replicas.len(), 3, "RF 3 on 3 nodes: every node");
    for node in &nodes[1..] {
        assert_eq!(ring(node), first_ring);
        assert_eq!(endpoints(node), replicas);
    }
    // RF 3 on 3 nodes: each owns the whole ring once.
    for n in status(&nodes[0])["nodes"].as_array().unwrap() {
        assert!((n["owns"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{n}");
    }
    // Every node gossips its load (bytes of SSTables), every 10 gossip intervals.
    wait_until("every node's load heard", Duration::from_secs(10), || {
        let reply = status(&nodes[1]);
        let nodes = reply["nodes"].as_array().unwrap();
        nodes.len() == 3 && nodes.iter().all(|n| n["load_bytes"].is_u64())
    });

    let killed_id = host_id_of(&nodes[0], "n2");
    nodes[2].kill();
    let down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let took = wait_for_states(&nodes[0], &down, Duration::from_secs(10));
    eprintln!("a SIGKILLed node was marked down after {took:?} (gossip every 100 ms)");
    wait_for_states(&nodes[1], &down, Duration::from_secs(10));
    assert_eq!(ring(&nodes[0]), first_ring, "a down node stays in the ring");

    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    assert_eq!(host_id_of(&nodes[0], "n2"), killed_id, "same host id");
    assert_eq!(ring(&nodes[2]), first_ring, "same tokens");
}

/// A node stopped gracefully (SIGTERM) announces it in gossip before it closes its listeners:
/// its peers count it down within a few gossip rounds, long before their failure detector (set
/// here to about 4 s) would; a restart (a new generation) is normal again.
#[test]
fn a_stopping_node_is_down_on_its_peers_at_once() {
    let mut nodes = ring_of_three("phi_threshold = 40.0\n");
    let down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    nodes[2].signal(libc::SIGTERM);
    let took = wait_for_states(&nodes[0], &down, Duration::from_secs(20));
    eprintln!("a stopping node was down on a peer after {took:?} (gossip every 100 ms)");
    assert!(
        took < Duration::from_millis(1500),
        "a stopping node was counted down after {took:?}, as late as its failure detector"
    );
    wait_for_states(&nodes[1], &down, Duration::from_secs(2));
    assert!(nodes[2].stop().success(), "log:\n{}", nodes[2].log());
    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
}

#[test]
fn a_single_node_has_no_cluster_routes() {
    let daemon = Daemon::start("");
    let (code, body) = http_get(daemon.admin_addr.unwrap(), "/cluster/status");
    assert_eq!((code, body.as_str()), (404, "cluster disabled\n"));
}

#[test]
fn a_data_dir_of_another_cluster_stops_startup() {
    let gossip = free_udp_addr();
    let mut daemon = Daemon::start(&cluster_toml("n0", gossip, gossip));
    assert!(daemon.stop().success());
    let other = daemon.dir().join("other.toml");
    std::fs::write(
        &other,
        cluster_toml("n0", gossip, gossip).replace("name = \"e2e\"", "name = \"other\""),
    )
    .unwrap();
    let output = std::process::Command::new(allidbd_binary())
        .arg("--config")
        .arg(&other)
        .arg("--data-dir")
        .arg(&daemon.data_dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--set", "server.admin_addr=127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("allidbd runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("belongs to cluster \"e2e\"") && stderr.contains("cluster.name"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_read_repairs_a_stale_replica() {
    use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};
    let mut nodes = ring_of_three("hinted_handoff_enabled = false\n");
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    put(&nodes[0], "missed", Quorum)
        .await
        .expect("QUORUM with one node down");
    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    // Without hints the returning replica is stale ...
    assert!(
        !found(&nodes[2], "missed", One).await.unwrap(),
        "n2 missed the write"
    );
    // ... until a QUORUM read through it (its own stale answer plus a digest that differs).
    assert!(found(&nodes[2], "missed", Quorum).await.unwrap());
    assert!(
        found(&nodes[2], "missed", One).await.unwrap(),
        "repaired before the read returned"
    );
    let (_, metrics) = http_get(nodes[2].admin_addr.unwrap(), "/metrics");
    assert!(
        metrics.contains("allidb_cluster_read_repairs_total"),
        "counted"
    );
}

/// Reads and writes through n0 while n2 is frozen (SIGSTOP: its connections stay open and
/// nothing answers, as a host whose address vanished) and not yet shown down: each must be
/// answered by n0 and n1 long before n0 would give up on n2 (`read_timeout_ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_answering_is_read_around_at_once() {
    use pb::ConsistencyLevel::{
        ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
    };
    const READ_TIMEOUT: Duration = Duration::from_secs(20);
    // Gossip shows n2 down only after about 64 heartbeat gaps (6.4 s).
    let nodes = start_ring(
        3,
        &format!(
            "read_timeout_ms = {}\nphi_threshold = 64\n",
            READ_TIMEOUT.as_millis()
        ),
    );
    // Written through n1, so n0 has measured no replica yet. The entities read are those
    // whose ring walk (the order n0 asks unmeasured peers in) has n2 before n1, so n0 asks n2
    // first, or has measured it first: its own first write, at ONE, reads only its own
    // replica, unless that read is slow and n0 reads around it, which asks n2. That first
    // write checks the ring with every peer after n0's start, as after a pause.
    put_many(&nodes[1], "frozen", 200, All)
        .await
        .expect("every replica is up");
    let ids: Vec<String> = (0..200)
        .map(|i| format!("frozen{i}"))
        .filter(|id| {
            let peers: Vec<String> = replica_names(&nodes[0], id)
                .into_iter()
                .filter(|n| n != "n0")
                .collect();
            peers == ["n2", "n1"]
        })
        .take(20)
        .collect();
    assert!(
        ids.len() >= 5,
        "too few entities with n2 before n1: {ids:?}"
    );
    put(&nodes[0], &ids[0], One)
        .await
        .expect("n0 writes once every peer answered its check");
    nodes[2].signal(libc::SIGSTOP);
    let mut slowest = Duration::ZERO;
    for id in &ids {
        let started = std::time::Instant::now();
        assert!(
            found(&nodes[0], id, Quorum)
                .await
                .expect("n0 and n1 answer")
        );
        slowest = slowest.max(started.elapsed());
    }
    for i in 0..10 {
        let started = std::time::Instant::now();
        put(&nodes[0], &format!("while-frozen{i}"), Quorum)
            .await
            .expect("n0 and n1 acknowledge");
        slowest = slowest.max(started.elapsed());
    }
    let read_around = nodes[0].metric("allidb_cluster_speculative_reads_total", &[("peer", "n2")]);
    let down = states(&nodes[0]).contains(&("n2".to_owned(), "down".to_owned()));
    nodes[2].signal(libc::SIGCONT);
    assert!(
        slowest < READ_TIMEOUT / 4,
        "a request through n0 took {slowest:?} while n2 was frozen: it waited for n2"
    );
    assert!(read_around >= 1.0, "n0 never read around n2: {read_around}");
    eprintln!(
        "slowest request {slowest:?}, {read_around} reads around n2, n2 shown down at the end: {down}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_drop_at_quorum_reaches_a_node_that_was_down_by_read_repair_and_by_hint() {
    use pb::ConsistencyLevel::{
        ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
    };
    // n0 keeps no hints (what n2 misses through it comes back only by read repair); n1 does.
    let mut nodes = ring_of_three_each(|i| match i {
        0 => "hinted_handoff_enabled = false\n".to_owned(),
        _ => String::new(),
    });
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for id in ["old1", "old2"] {
        put(&nodes[0], id, All).await.expect("ALL on a whole ring");
    }

    // Read repair: n2 misses a drop made through n0.
    nodes[2].kill();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    wait_for_states(&nodes[1], &one_down, Duration::from_secs(10));
    let all = drop_default(&nodes[0], All).await.unwrap_err();
    assert_eq!(all.code(), Code::Unavailable, "{all:?}");
    assert!(
        all.message()
            .contains("drop of tenant \"default\" at consistency ALL")
            && all.message().contains("n2 (down)"),
        "{}",
        all.message()
    );
    let dropped_at = drop_default(&nodes[0], Quorum)
        .await
        .expect("a QUORUM drop with one node down");
    put(&nodes[0], "after", Quorum)
        .await
        .expect("a write after the drop");
    assert!(!found(&nodes[1], "old1", Quorum).await.unwrap());
    assert!(found(&nodes[1], "after", Quorum).await.unwrap());
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    assert!(
        found(&nodes[2], "old1", One).await.unwrap(),
        "n2 missed the drop (no hint through n0)"
    );
    assert!(
        !found(&nodes[2], "old1", Quorum).await.unwrap(),
        "a QUORUM read through the stale node does not bring the dropped entity back"
    );
    assert!(
        !found(&nodes[2], "old2", One).await.unwrap(),
        "the read repair sent n2 the drop itself, which covers every entity of the tenant"
    );
    assert!(found(&nodes[2], "after", Quorum).await.unwrap());
    for node in &nodes[..2] {
        assert!(
            !found(node, "old1", One).await.unwrap(),
            "the stale answer repaired no replica back to the dropped state"
        );
    }

    // Hinted handoff: n2 misses a later drop and a write after it, both made through n1.
    put(&nodes[1], "b1", All)
        .await
        .expect("ALL on a whole ring");
    nodes[2].kill();
    wait_for_states(&nodes[1], &one_down, Duration::from_secs(10));
    let second = drop_default(&nodes[1], Quorum)
        .await
        .expect("a QUORUM drop with one node down");
    assert!(second > dropped_at, "a later drop has a later timestamp");
    put(&nodes[1], "b2", Quorum)
        .await
        .expect("a write after the drop");
    assert!(hints_pending(&nodes[1]) > 0, "hints kept for n2");
    nodes[2].restart();
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered", Duration::from_secs(30), || {
        hints_pending(&nodes[1]) == 0
    });
    // Every node, n2 from its own store, holds exactly what was written after the last drop.
    for node in &nodes {
        assert_eq!(held_by(node).await, (vec!["b2".to_owned()], 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_nodes_replicate_over_mtls_and_refuse_a_certificate_of_another_ca() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let ca = Ca::new("e2e cluster CA");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("the file is written");
        format!("{:?}", path.to_str().expect("a UTF-8 path"))
    };
    let ca_file = write("ca.pem", &ca.pem());
    let tls: Vec<String> = (0..3)
        .map(|i| {
            let node = ca.node();
            let cert = write(&format!("n{i}-cert.pem"), &node.cert);
            let key = write(&format!("n{i}-key.pem"), &node.key);
            format!(
                "\n[tls]\nenabled = true\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {ca_file}\n"
            )
        })
        .collect();
    let nodes = ring_of_three_each(|i| tls[i].clone());
    let trusting = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    let presenting = |pem: &allidb_tests::certs::Pem| {
        trusting
            .clone()
            .identity(Identity::from_pem(&pem.cert, &pem.key))
    };
    let app = ca.client();
    let channel = |i: usize| nodes[i].tls_channel(presenting(&app));

    // ALL: both peers acknowledged the write, over their mTLS connections.
    let mut client = pb::allidb_client::AlliDbClient::new(channel(0).await.expect("a TLS client"));
    client
        .put_entity(request(
            pb::PutEntityRequest {
                entity: Some(doc_entity("over-mtls", &[1.0, 0.5, 0.25])),
                consistency_level: level(pb::ConsistencyLevel::ConsistencyAll),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("a write at ALL through node-to-node mTLS");
    let mut on_n2 = pb::allidb_client::AlliDbClient::new(channel(2).await.expect("a TLS client"));
    let reply = on_n2
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: "over-mtls".to_owned(),
                consistency_level: level(pb::ConsistencyLevel::ConsistencyOne),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("a read at ONE");
    assert!(
        reply.into_inner().found,
        "n2 holds the replica it acknowledged"
    );

    // The internal service with the right token: answered for a certificate of the cluster CA,
    // refused for one of another CA.
    let n1 = host_id_of(&nodes[0], "n1");
    let version = topology_version(&nodes[1]);
    let member = ReplicaClient::new(
        nodes[1]
            .tls_channel(presenting(&ca.node()))
            .await
            .expect("a member's TLS connection"),
    )
    .read_partitions(internal_read(&n1, version, "over-mtls", Some(e2e_token())))
    .await
    .expect("a member's call")
    .into_inner();
    assert!(!member.partitions[0].cells.is_empty());
    let stranger = Ca::new("another CA").node();
    let stranger_call = match nodes[1].tls_channel(presenting(&stranger)).await {
        Err(handshake) => Err(format!("{handshake:?}")),
        Ok(channel) => ReplicaClient::new(channel)
            .read_partitions(internal_read(&n1, version, "over-mtls", Some(e2e_token())))
            .await
            .map(drop)
            .map_err(|status| format!("{status:?}")),
    };
    assert!(
        stranger_call.is_err(),
        "a peer presenting a certificate of another CA is refused, even with the cluster token"
    );
}

/// The names of the replicas of `id` (tenant `default`) as `daemon` sees them.
fn replica_names(daemon: &Daemon, id: &str) -> Vec<String> {
    let admin = daemon.admin_addr.expect("allidbd prints its admin address");
    let (code, body) = http_get(admin, &format!("/cluster/endpoints?tenant=default&id={id}"));
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("JSON");
    reply["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Applies `batch` (planned by a coordinator whose clock runs ahead) straight to the replicas
/// of `id` other than n0, through their internal service: n0 never sees its timestamps.
async fn write_around_n0(nodes: &[Daemon], id: &str, batch: &allidb_storage::batch::WriteBatch) {
    let cells: Vec<internal::Cell> = allidb_cluster::cells::batch_versions(batch)
        .iter()
        .map(allidb_cluster::cells::to_proto)
        .collect();
    for i in 1..nodes.len() {
        let host = host_id_of(&nodes[0], &format!("n{i}"));
        let call = with_token(internal::MutateRequest {
            header: internal_read(&host, topology_version(&nodes[i]), id, None)
                .into_inner()
                .header,
            cells: cells.clone(),
            ..Default::default()
        });
        ReplicaClient::new(nodes[i].channel().await)
            .mutate(call)
            .await
            .expect("the replica applies the cells");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_removal_and_a_tenant_drop_through_a_lagging_coordinator_win_over_earlier_writes() {
    use pb::ConsistencyLevel::ConsistencyAll as All;
    let nodes = allidb_tests::ring::start_ring(4, "hinted_handoff_enabled = false\n");
    let names: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
    // Entities none of which n0 replicates (RF 3 of 4 nodes).
    let pick = |prefix: &str| {
        (0..200)
            .map(|i| format!("{prefix}{i}"))
            .find(|id| !replica_names(&nodes[0], id).contains(&names[0]))
            .expect("an entity n0 does not replicate")
    };
    let (from, to) = (pick("from"), pick("to"));
    for id in [&from, &to] {
        put(&nodes[0], id, All).await.expect("ALL on a whole ring");
    }
    // The edge as a coordinator whose clock runs 5 s ahead of n0's writes it (within
    // cluster.max_clock_skew_ms): straight to the replicas of both ends, never to n0.
    let ahead = allidb_storage::hlc::wall_micros() + 5_000_000;
    let edge = allidb_storage::cell::Edge {
        from: from.clone(),
        relation: "cites".to_owned(),
        to: to.clone(),
        weight: 1.0,
        timestamp_nanos: 0,
        sources: Vec::new(),
    };
    let batch = allidb_storage::mutation::plan_add_edges("default", &[edge], ahead).unwrap();
    write_around_n0(&nodes, &from, &batch).await;
    // Removed through n0 at once: its own clock is 5 s behind the addition.
    remove_edge(&nodes[0], (&from, "cites", &to), All)
        .await
        .expect("an ALL removal");
    let read = pb::GetEntityRequest {
        entity_id: from.clone(),
        consistency_level: level(All),
        ..Default::default()
    };
    let entity = nodes[0]
        .client()
        .await
        .get_entity(request(read, None))
        .await
        .expect("a read")
        .into_inner()
        .entity
        .expect("found");
    assert!(
        entity.outgoing_edges.is_empty(),
        "the later removal wins: {:?}",
        entity.outgoing_edges
    );

    // An entity written 5 s ahead the same way, then its tenant dropped through n0 at once: n0
    // reads the other nodes' clocks before it takes the drop's timestamp.
    let late = pick("late");
    let write = allidb_storage::EntityWrite {
        id: late.clone(),
        body: allidb_storage::EntityBody {
            entity_type: "doc".to_owned(),
            ..Default::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    };
    let ahead = allidb_storage::hlc::wall_micros() + 5_000_000;
    let stored = [allidb_storage::partition::PartitionState::default()];
    let batch = allidb_storage::mutation::plan_put("default", &[&write], &stored, ahead).unwrap();
    write_around_n0(&nodes, &late, &batch).await;
    assert!(found(&nodes[0], &late, All).await.unwrap(), "written");
    let dropped_at = drop_default(&nodes[0], All).await.expect("a drop at ALL");
    assert!(
        dropped_at > ahead,
        "the drop ({dropped_at}) is later than the write ({ahead})"
    );
    for node in &nodes {
        assert!(
            !found(node, &late, All).await.unwrap(),
            "the later drop wins on every node"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_with_one_replica_reads_every_range_and_names_the_ranges_of_a_dead_node() {
    use pb::ConsistencyLevel::ConsistencyOne as One;
    let gossip: Vec<SocketAddr> = (0..2).map(|_| free_udp_addr()).collect();
    let mut nodes: Vec<Daemon> = (0..2)
        .map(|i| {
            let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
            Daemon::start(&format!(
                "{toml}replication_factor = 1
"
            ))
        })
        .collect();
    for node in &nodes {
        wait_for_states(
            node,
            &[("n0", "normal"), ("n1", "normal")],
            Duration::from_secs(30),
        );
    }
    // Writes and point reads are routed to the one replica of each entity, from either node.
    let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for id in ids {
        put(&nodes[0], id, One).await.expect("RF 1 write");
        assert!(
            found(&nodes[1], id, One).await.unwrap(),
            "{id} through the other node"
        );
    }
    // Queries, scans and traversals see the entities of both nodes, through either.
    let query = pb::QueryRequest {
        query_vector: vec![1.0, 0.5, 0.25],
        k: 8,
        ..Default::default()
    };
    let scan = pb::RangeScanRequest::default();
    for node in &nodes {
        let mut client = node.client().await;
        let reply = client
            .query(request(query.clone(), None))
            .await
            .expect("query")
            .into_inner();
        let mut got: Vec<String> = reply.results.into_iter().map(|r| r.entity_id).collect();
        got.sort();
        assert_eq!(got, ids);
        let reply = client
            .range_scan(request(scan.clone(), None))
            .await
            .expect("scan")
            .into_inner();
        let got: Vec<String> = reply.entities.into_iter().map(|e| e.entity_id).collect();
        assert_eq!(got, ids);
        let traverse = pb::TraverseRequest {
            start_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            max_hops: 1,
            ..Default::default()
        };
        let reply = client
            .traverse(request(traverse, None))
            .await
            .expect("traverse")
            .into_inner();
        assert_eq!(reply.nodes.len(), ids.len());
    }
    // With n1 down, the ranges only it replicates have no live replica.
    nodes[1].kill();
    wait_for_states(
        &nodes[0],
        &[("n0", "normal"), ("n1", "down")],
        Duration::from_secs(30),
    );
    let mut client = nodes[0].client().await;
    let refused = client
        .query(request(query.clone(), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("token ranges have no live replica")
            && refused.message().contains("n1"),
        "{}",
        refused.message()
    );
    let scan = client.range_scan(request(scan, None)).await.unwrap_err();
    assert_eq!(scan.code(), Code::Unavailable, "{scan:?}");
    // A partial answer when asked for: n0's entities, and the coverage says what is missing.
    let partial = pb::QueryRequest {
        allow_partial: true,
        ..query
    };
    let reply = client
        .query(request(partial, None))
        .await
        .expect("a partial query")
        .into_inner();
    let coverage = reply.coverage.expect("a ring reports its coverage");
    assert!(
        0 < coverage.ranges_answered && coverage.ranges_answered < coverage.ranges_total,
        "{coverage:?}"
    );
    assert_eq!(coverage.nodes_asked, ["n0"]);
    assert!(
        !coverage.missing.is_empty()
            && coverage
                .missing
                .iter()
                .all(|m| m.contains("no live replica")),
        "{coverage:?}"
    );
    let held = reply.results.len();
    assert!(
        0 < held && held < ids.len(),
        "{held} of {} entities",
        ids.len()
    );
    let traverse = pb::TraverseRequest {
        start_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        max_hops: 1,
        allow_partial: true,
        ..Default::default()
    };
    let reply = client
        .traverse(request(traverse, None))
        .await
        .expect("a partial traversal")
        .into_inner();
    assert_eq!(reply.nodes.len(), held, "the same entities as the query");
    let coverage = reply.coverage.expect("a ring reports its coverage");
    assert!(
        coverage
            .missing
            .iter()
            .any(|m| m.contains("no live replica of entity")),
        "{coverage:?}"
    );
}
