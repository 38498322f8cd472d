//! `[cluster]` with real `allidbd` processes on loopback: three daemons form one ring through
//! gossip, every node reports the same ring and replicas on its admin port, a SIGKILLed node is
//! marked down and comes back with its host id and tokens; a data dir of another cluster stops
//! startup.

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use allidb_tests::{Daemon, allidbd_binary, http_get};
use serde_json::Value;

const SECRET: &str = "e2e-cluster-secret-0123456789";

fn free_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    socket.local_addr().expect("bound socket has an address")
}

fn cluster_toml(name: &str, gossip: SocketAddr, seed: SocketAddr) -> String {
    format!(
        "[cluster]\nenabled = true\nname = \"e2e\"\nnode_name = \"{name}\"\nsecret = \"{SECRET}\"\n\
         listen_addr = \"{gossip}\"\nseeds = [\"{seed}\"]\ngossip_interval_ms = 100\n"
    )
}

fn status(daemon: &Daemon) -> Value {
    let admin = daemon.admin_addr.expect("allidbd prints its admin address");
    let (code, body) = http_get(admin, "/cluster/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// `(name, status)` of every node in `daemon`'s status, sorted by name.
fn states(daemon: &Daemon) -> Vec<(String, String)> {
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

fn wait_for_states(daemon: &Daemon, expected: &[(&str, &str)], limit: Duration) -> Duration {
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

fn host_id_of(daemon: &Daemon, name: &str) -> String {
    status(daemon)["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["host_id"].as_str())
        .expect("the node is listed")
        .to_owned()
}

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
        48,
        "3 nodes x 16 tokens"
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
