//! Rings of real daemons on loopback for the cluster tests: gossip ports, the `[cluster]`
//! section, the nodes' states as their admin port reports them, a ring started whole, and the
//! writes and reads the cluster tests make through one node at a level.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use allidb_api::pb;
use allidb_cluster::credentials::{ClusterCredentials, TOKEN_HEADER};
use allidb_cluster::proto as internal;

use crate::{Daemon, allidb_binary, doc_entity, http_get, request};

/// The cluster secret every test ring shares.
pub const SECRET: &str = "e2e-cluster-secret-0123456789";

/// A free loopback UDP address for a gossip listener, below the kernel's ephemeral port range.
/// A port chosen by binding port 0 is released until its daemon binds it, and every daemon
/// binds four helper sockets on ephemeral loopback ports (the gossip transport's codec), so a
/// daemon started first could take a port chosen for the next one.
pub fn free_udp_addr() -> SocketAddr {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral_low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|low| low.parse().ok())
        .unwrap_or(32768);
    assert!(
        ephemeral_low > 2048,
        "ephemeral ports start at {ephemeral_low}"
    );
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(1024..ephemeral_low);
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", port)) {
            return socket.local_addr().expect("bound socket has an address");
        }
    }
    panic!("no free loopback UDP port below {ephemeral_low} in 1000 tries");
}

/// The `[cluster]` section of node `name` gossiping on `gossip`, seeded by `seed`.
pub fn cluster_toml(name: &str, gossip: SocketAddr, seed: SocketAddr) -> String {
    format!(
        "[cluster]\nenabled = true\nname = \"e2e\"\nnode_name = \"{name}\"\nsecret = \"{SECRET}\"\n\
         listen_addr = \"{gossip}\"\nseeds = [\"{seed}\"]\ngossip_interval_ms = 100\n"
    )
}

/// `daemon`'s `/cluster/status`.
pub fn status(daemon: &Daemon) -> Value {
    admin_json(daemon, "/cluster/status")
}

/// `daemon`'s `/cluster/ring`.
pub fn ring_json(daemon: &Daemon) -> Value {
    admin_json(daemon, "/cluster/ring")
}

fn admin_json(daemon: &Daemon, path: &str) -> Value {
    let admin = daemon.admin_addr.expect("allidbd prints its admin address");
    let (code, body) = http_get(admin, path);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("an admin answer is JSON")
}

/// `(name, status)` of every node in `daemon`'s status, sorted by name.
pub fn states(daemon: &Daemon) -> Vec<(String, String)> {
    let mut states: Vec<_> = status(daemon)["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_owned(),
                n["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    states.sort();
    states
}

/// Waits until `daemon` reports exactly `expected` (sorted by name); the time it took.
pub fn wait_for_states(daemon: &Daemon, expected: &[(&str, &str)], limit: Duration) -> Duration {
    let started = Instant::now();
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
        .collect();
    loop {
        let now = states(daemon);
        if now == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "expected {expected:?} within {limit:?}, have {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A ring of `count` nodes `n0..` seeded by `n0`, each with `extra` appended to its
/// `[cluster]` section (it may open further sections), once every node sees all normal.
pub fn start_ring(count: usize, extra: &str) -> Vec<Daemon> {
    let gossip: Vec<SocketAddr> = (0..count).map(|_| free_udp_addr()).collect();
    let nodes: Vec<Daemon> = (0..count)
        .map(|i| {
            let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
            Daemon::start(&format!("{toml}{extra}"))
        })
        .collect();
    wait_all_normal(&nodes);
    nodes
}

/// Waits until each of `nodes` (named `n0`, `n1`, ... in order) sees every one of them normal.
pub fn wait_all_normal(nodes: &[Daemon]) {
    let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
    let all_normal: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "normal")).collect();
    for node in nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(60));
    }
}

/// Has `via` remove the down node `host_id` (`removenode`, without `ignore_dead`) and asserts
/// that the removal finished.
pub async fn remove_dead_node(via: &Daemon, host_id: &str) {
    let reply = via
        .client()
        .await
        .remove_node(request(
            pb::RemoveNodeRequest {
                host_id: host_id.to_owned(),
                ignore_dead: false,
            },
            None,
        ))
        .await
        .expect("a removal of a down node")
        .into_inner();
    assert!(reply.finished, "{reply:?}");
}

/// A consistency level on the wire.
pub fn level(level: pb::ConsistencyLevel) -> i32 {
    level as i32
}

/// Puts entity `id` (a small vector) through `daemon` at `at`.
pub async fn put(daemon: &Daemon, id: &str, at: pb::ConsistencyLevel) -> Result<(), tonic::Status> {
    let message = pb::PutEntityRequest {
        entity: Some(doc_entity(id, &[1.0, 0.5, 0.25])),
        consistency_level: level(at),
        ..Default::default()
    };
    daemon
        .client()
        .await
        .put_entity(request(message, None))
        .await
        .map(drop)
}

/// Puts entities `{prefix}{i}` for `i` in `0..count` through `daemon` at `at`, 200 to a batch.
pub async fn put_many(
    daemon: &Daemon,
    prefix: &str,
    count: usize,
    at: pb::ConsistencyLevel,
) -> Result<(), tonic::Status> {
    let mut client = daemon.client().await;
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    for batch in ids.chunks(200) {
        let message = pb::BatchPutEntitiesRequest {
            entities: batch
                .iter()
                .map(|id| doc_entity(id, &[1.0, 0.5, 0.25]))
                .collect(),
            consistency_level: level(at),
            ..Default::default()
        };
        let reply = client
            .batch_put_entities(request(message, None))
            .await?
            .into_inner();
        if !reply.success {
            return Err(tonic::Status::unavailable(reply.error_message));
        }
    }
    Ok(())
}

/// Puts entities `{prefix}{i:05}` for `i` in `indexes` through `daemon` at `at` in one batch, each
/// with a small vector and one text chunk of `text_bytes` bytes (a multiple of 5); fails the
/// test unless every entity is written.
pub async fn put_texts(
    daemon: &Daemon,
    prefix: &str,
    indexes: std::ops::Range<usize>,
    text_bytes: usize,
    at: pb::ConsistencyLevel,
) {
    let entities = indexes
        .map(|i| {
            let mut entity = doc_entity(&format!("{prefix}{i:05}"), &[1.0, i as f32, 0.5]);
            entity.chunks = vec![pb::TextChunk {
                chunk_id: "c0".to_owned(),
                text: format!("{i:05}").repeat(text_bytes / 5),
                ..Default::default()
            }];
            entity
        })
        .collect();
    let message = pb::BatchPutEntitiesRequest {
        entities,
        consistency_level: level(at),
        ..Default::default()
    };
    let reply = daemon
        .client()
        .await
        .batch_put_entities(request(message, None))
        .await
        .unwrap_or_else(|status| panic!("a batch at {at:?}: {status:?}"))
        .into_inner();
    assert!(reply.success, "{reply:?}");
}

/// Deletes entity `id` through `daemon` at `at`.
pub async fn delete(
    daemon: &Daemon,
    id: &str,
    at: pb::ConsistencyLevel,
) -> Result<(), tonic::Status> {
    let message = pb::DeleteEntityRequest {
        entity_id: id.to_owned(),
        consistency_level: level(at),
        ..Default::default()
    };
    daemon
        .client()
        .await
        .delete_entity(request(message, None))
        .await
        .map(drop)
}

/// Removes the edge `from -relation-> to` through `daemon` at `at`.
pub async fn remove_edge(
    daemon: &Daemon,
    (from, relation, to): (&str, &str, &str),
    at: pb::ConsistencyLevel,
) -> Result<(), tonic::Status> {
    let message = pb::RemoveEdgesRequest {
        edges: vec![pb::EdgeKey {
            from_entity: from.to_owned(),
            to_entity: to.to_owned(),
            relation: relation.to_owned(),
        }],
        consistency_level: level(at),
        ..Default::default()
    };
    daemon
        .client()
        .await
        .remove_edges(request(message, None))
        .await
        .map(drop)
}

/// Entity `id` read through `daemon` at `at`.
pub async fn get(
    daemon: &Daemon,
    id: &str,
    at: pb::ConsistencyLevel,
) -> Result<pb::GetEntityResponse, tonic::Status> {
    let message = pb::GetEntityRequest {
        entity_id: id.to_owned(),
        consistency_level: level(at),
        ..Default::default()
    };
    let reply = daemon
        .client()
        .await
        .get_entity(request(message, None))
        .await?;
    Ok(reply.into_inner())
}

/// Whether `id` is found reading through `daemon` at `at`.
pub async fn found(
    daemon: &Daemon,
    id: &str,
    at: pb::ConsistencyLevel,
) -> Result<bool, tonic::Status> {
    Ok(get(daemon, id, at).await?.found)
}

/// A 3-node ring with RF 3 (`extra` appended to every node's `[cluster]`), all nodes normal.
pub fn ring_of_three(extra: &str) -> Vec<Daemon> {
    ring_of_three_each(|_| extra.to_owned())
}

/// A 3-node ring with RF 3, `extra(i)` appended to node `i`'s `[cluster]` (it may open further
/// sections), all nodes normal.
pub fn ring_of_three_each(extra: impl Fn(usize) -> String) -> Vec<Daemon> {
    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let nodes: Vec<Daemon> = (0..3)
        .map(|i| {
            let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
            Daemon::start(&format!(
                "{toml}write_timeout_ms = 1000\nread_timeout_ms = 1000\n{}",
                extra(i)
            ))
        })
        .collect();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    nodes
}

/// The targets of `id`'s out-edges as `daemon` reads them at `at`.
pub async fn edges_of(daemon: &Daemon, id: &str, at: pb::ConsistencyLevel) -> Vec<String> {
    let reply = get(daemon, id, at).await.expect("a read");
    let mut edges: Vec<String> = reply
        .entity
        .map(|e| e.outgoing_edges.into_iter().map(|e| e.to_entity).collect())
        .unwrap_or_default();
    edges.sort();
    edges
}

/// Puts entity `hub` with out-edges `links` to `d10`, `d11` and `d12` through `daemon` at `at`.
pub async fn put_hub(daemon: &Daemon, at: pb::ConsistencyLevel) {
    let mut hub = doc_entity("hub", &[0.5, 0.5, 0.5]);
    hub.outgoing_edges = ["d10", "d11", "d12"]
        .iter()
        .map(|to| pb::GraphEdge {
            to_entity: (*to).to_owned(),
            relation: "links".to_owned(),
            weight: 0.5,
            ..Default::default()
        })
        .collect();
    let message = pb::PutEntityRequest {
        entity: Some(hub),
        consistency_level: level(at),
        ..Default::default()
    };
    daemon
        .client()
        .await
        .put_entity(request(message, None))
        .await
        .expect("the hub is written");
}

/// Waits until `condition` holds, failing after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops tenant `default` through `daemon` at `at`; the drop's timestamp.
pub async fn drop_default(daemon: &Daemon, at: pb::ConsistencyLevel) -> Result<u64, tonic::Status> {
    let message = pb::DropTenantRequest {
        tenant_id: "default".to_owned(),
        confirm: true,
        consistency_level: level(at),
    };
    let reply = daemon
        .client()
        .await
        .drop_tenant(request(message, None))
        .await?;
    Ok(reply.into_inner().dropped_at_micros)
}

/// The ids of tenant `default` that `daemon` holds in its own store, and its entity count.
pub async fn held_by(daemon: &Daemon) -> (Vec<String>, u64) {
    let mut client = daemon.client().await;
    let scan = pb::RangeScanRequest {
        limit: 1000,
        ..Default::default()
    };
    let ids = client
        .range_scan(request(scan, None))
        .await
        .expect("a scan of a node holding every range")
        .into_inner()
        .entities
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    let stats = pb::GetTenantStatsRequest {
        tenant_id: "default".to_owned(),
        ..Default::default()
    };
    let entities = client
        .get_tenant_stats(request(stats, None))
        .await
        .expect("tenant stats")
        .into_inner()
        .stats
        .map_or(0, |s| s.entities);
    (ids, entities)
}

/// `allidb --json --addr DAEMON ARGS` (no API key), to run or spawn.
pub fn allidb_json(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = Command::new(allidb_binary());
    command
        .env_remove("ALLIDB_API_KEY")
        .args(["--json", "--addr", &daemon.grpc_url()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `allidb --json cluster repair ARGS` against `daemon`: its exit code and JSON reply.
pub fn repair(daemon: &Daemon, args: &[&str]) -> (i32, Value) {
    let mut command = allidb_json(daemon, &["cluster", "repair"]);
    json_reply(command.args(args).output().expect("allidb runs"))
}

/// The exit code and JSON reply of an `allidb --json` run.
pub fn json_reply(output: Output) -> (i32, Value) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reply = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "a JSON reply ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("allidb exits"), reply)
}

/// A number field of a JSON reply.
pub fn count(reply: &Value, field: &str) -> u64 {
    reply[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {reply}"))
}

/// Bytes of hints `daemon` holds for all nodes.
pub fn hints_pending(daemon: &Daemon) -> u64 {
    status(daemon)["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .map(|n| n["hints_pending_bytes"].as_u64().expect("hints are listed"))
        .sum()
}

/// The bytes of hints `daemon` keeps for node `name`.
pub fn hints_for(daemon: &Daemon, name: &str) -> u64 {
    status(daemon)["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["hints_pending_bytes"].as_u64())
        .expect("the node is listed with its hints")
}

/// Field `field` (a string) of node `name` in `daemon`'s status.
fn node_field(daemon: &Daemon, name: &str, field: &str) -> String {
    let status = status(daemon);
    status["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n[field].as_str())
        .unwrap_or_else(|| panic!("{field} of {name} in {status}"))
        .to_owned()
}

/// The host id of node `name` as `daemon` reports it.
pub fn host_id_of(daemon: &Daemon, name: &str) -> String {
    node_field(daemon, name, "host_id")
}

/// The gossip address of node `name` as `daemon` reports it.
pub fn gossip_addr_of(daemon: &Daemon, name: &str) -> SocketAddr {
    node_field(daemon, name, "gossip_addr")
        .parse()
        .expect("a gossip address")
}

/// The name of the topology log's leader as `daemon` knows it (`None` without one).
pub fn log_leader(daemon: &Daemon) -> Option<String> {
    status(daemon)["topology_log"]["leader"]["name"]
        .as_str()
        .map(str::to_owned)
}

/// The names of the replicas of entity `id` of tenant `default`, in walk order, as `daemon`
/// routes by now.
pub fn replicas_of(daemon: &Daemon, id: &str) -> Vec<String> {
    let reply = admin_json(
        daemon,
        &format!("/cluster/endpoints?tenant=default&id={id}"),
    );
    reply["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("replicas in {reply}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The entities of tenant `default` each node holds in its own store, through `daemon`'s
/// per-node stats, by node name (a node that did not answer is left out).
pub async fn held_per_node(daemon: &Daemon) -> Vec<(String, u64)> {
    let message = pb::GetTenantStatsRequest {
        tenant_id: "default".to_owned(),
        per_node: true,
    };
    let reply = daemon
        .client()
        .await
        .get_tenant_stats(request(message, None))
        .await
        .expect("per-node tenant stats")
        .into_inner();
    reply
        .nodes
        .iter()
        .filter(|n| n.error.is_empty())
        .map(|n| (n.node.clone(), n.tenants.iter().map(|t| t.entities).sum()))
        .collect()
}

/// Puts `<prefix>0`, `<prefix>1`, ... at QUORUM through `daemon`, one at a time, until `stop`;
/// the task answers the ids acknowledged.
pub async fn quorum_writer(
    daemon: &Daemon,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let mut client = daemon.client().await;
    let prefix = prefix.to_owned();
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = format!("{prefix}{i}");
            let message = pb::PutEntityRequest {
                entity: Some(doc_entity(&id, &[0.5, 1.0, 0.25])),
                consistency_level: level(pb::ConsistencyLevel::ConsistencyQuorum),
                ..Default::default()
            };
            if client.put_entity(request(message, None)).await.is_ok() {
                acked.push(id);
            }
            i += 1;
        }
        acked
    })
}

/// The entity ids of tenant `default` in the own store of `node` (host `host`, 8-4-4-4-12 hex),
/// through its replica service's `ScanIds`, which reads only that node's store.
pub async fn own_ids(node: &Daemon, host: &str) -> Vec<String> {
    let mut call = tonic::Request::new(internal::ScanIdsRequest {
        header: Some(internal_header(
            host,
            status(node)["ring_version"].as_u64().unwrap_or(0),
        )),
        tenant: "default".to_owned(),
        start: String::new(),
        end: String::new(),
        limit: 10_000,
    });
    let token = ClusterCredentials::new("e2e", SECRET);
    call.metadata_mut().insert(
        TOKEN_HEADER,
        token.token().parse().expect("a token is ASCII"),
    );
    internal::replica_client::ReplicaClient::new(node.channel().await)
        .scan_ids(call)
        .await
        .unwrap_or_else(|e| panic!("the own ids of {host}: {e:?}"))
        .into_inner()
        .entity_ids
}

// Calls to the internal (replica) service of the test rings.

/// `count` disjoint one-token ranges.
pub fn disjoint_spans(count: u64) -> Vec<internal::TokenSpan> {
    (0..count)
        .map(|i| internal::TokenSpan {
            start: 2 * i,
            end: 2 * i + 1,
        })
        .collect()
}

/// `message` with the test rings' cluster token.
pub fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut call = tonic::Request::new(message);
    call.metadata_mut()
        .insert(TOKEN_HEADER, e2e_token().parse().expect("a token is ASCII"));
    call
}

/// The cluster token of the test rings.
pub fn e2e_token() -> String {
    ClusterCredentials::new("e2e", SECRET).token().to_owned()
}

/// The topology version `daemon` applied (what its peers plan their calls to it on).
pub fn topology_version(daemon: &Daemon) -> u64 {
    status(daemon)["ring_version"]
        .as_u64()
        .expect("a ring version in the status")
}

/// The header of a call to the internal service of host `recipient`, planned on topology
/// `version` (no sender: the test is no ring node).
pub fn internal_header(recipient: &str, version: u64) -> internal::RequestHeader {
    internal::RequestHeader {
        protocol_version: allidb_cluster::PROTOCOL_VERSION,
        ring_version: version,
        sender: String::new(),
        recipient: recipient.to_owned(),
    }
}

/// A read of `id` through the internal service of host `recipient`, planned on topology
/// `version`, with `token` if given.
pub fn internal_read(
    recipient: &str,
    version: u64,
    id: &str,
    token: Option<String>,
) -> tonic::Request<internal::ReadPartitionsRequest> {
    let mut call = tonic::Request::new(internal::ReadPartitionsRequest {
        header: Some(internal_header(recipient, version)),
        partitions: vec![internal::PartitionRead {
            tenant: "default".to_owned(),
            entity_id: id.to_owned(),
            digest_only: false,
        }],
    });
    if let Some(token) = token {
        call.metadata_mut()
            .insert(TOKEN_HEADER, token.parse().expect("a token is ASCII"));
    }
    call
}
