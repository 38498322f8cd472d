//! A network partition of a ring of real daemons, each in its own network namespace on a
//! bridge the test makes (root needed; skipped with a `SKIPPED partition test` line otherwise):
//! the majority still writes at QUORUM, the minority cannot, and after healing every node holds
//! both sides' writes.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::Daemon;
use allidb_tests::ring::{cluster_toml, found, hints_pending, put, wait_for_states, wait_until};
use tonic::Code;

/// Three network namespaces on one bridge, for partition tests: host `i` is `10.77.0.(11 + i)`
/// in namespace `allidb-p<i>`, the test reaches every host through the bridge
/// (`10.77.0.1`). Removed on drop.
struct Hosts {
    count: usize,
}

const BRIDGE: &str = "allidb-pbr";

/// The root namespace's rule letting the bridge forward between its ports (`-D` removes it;
/// setup inserts it with `-I`).
const FORWARD_RULE: &[&str] = &[
    "iptables", "-D", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT",
];

fn sh(args: &[&str]) -> bool {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Hosts {
    /// The namespaces, or `None` (with the reason printed) where this machine does not allow
    /// creating them (not root, no `ip`).
    fn create(count: usize) -> Option<Hosts> {
        let hosts = Hosts { count };
        hosts.remove();
        let mut steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "add", BRIDGE, "type", "bridge"],
            vec!["ip", "addr", "add", "10.77.0.1/24", "dev", BRIDGE],
            vec!["ip", "link", "set", BRIDGE, "up"],
            // Docker's FORWARD policy drops bridged traffic when br_netfilter is loaded.
            FORWARD_RULE
                .iter()
                .copied()
                .map(|arg| if arg == "-D" { "-I" } else { arg })
                .collect(),
        ]
        .into_iter()
        .map(|s| s.into_iter().map(str::to_owned).collect())
        .collect();
        for i in 0..count {
            let (ns, veth, ip) = (hosts.netns(i), format!("allidb-pv{i}"), hosts.ip(i));
            for step in [
                format!("ip netns add {ns}"),
                format!("ip link add {veth} type veth peer name eth0 netns {ns}"),
                format!("ip link set {veth} master {BRIDGE} up"),
                format!("ip netns exec {ns} ip addr add {ip}/24 dev eth0"),
                format!("ip netns exec {ns} ip link set eth0 up"),
                format!("ip netns exec {ns} ip link set lo up"),
            ] {
                steps.push(step.split(' ').map(str::to_owned).collect());
            }
        }
        for step in &steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if !sh(&args) {
                eprintln!(
                    "SKIPPED partition test: `{}` failed (needs root and iproute2)",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(hosts)
    }

    fn netns(&self, i: usize) -> String {
        format!("allidb-p{i}")
    }

    fn ip(&self, i: usize) -> std::net::IpAddr {
        std::net::IpAddr::from([10, 77, 0, 11 + i as u8])
    }

    /// Drops every packet between host `i` and the other hosts (the test still reaches it).
    fn isolate(&self, i: usize) {
        for j in (0..self.count).filter(|j| *j != i) {
            let other = self.ip(j).to_string();
            for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let ns = self.netns(i);
                let rule = [
                    "ip", "netns", "exec", &ns, "iptables", "-A", chain, flag, &other, "-j", "DROP",
                ];
                assert!(sh(&rule), "iptables in {ns}");
            }
        }
    }

    /// Removes the rules [`Hosts::isolate`] added to host `i`.
    fn heal(&self, i: usize) {
        let ns = self.netns(i);
        for chain in ["INPUT", "OUTPUT"] {
            assert!(sh(&["ip", "netns", "exec", &ns, "iptables", "-F", chain]));
        }
    }

    fn remove(&self) {
        for i in 0..self.count {
            sh(&["ip", "netns", "del", &self.netns(i)]);
            sh(&["ip", "link", "del", &format!("allidb-pv{i}")]);
        }
        sh(&["ip", "link", "del", BRIDGE]);
        while sh(FORWARD_RULE) {}
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_reach_quorum_and_converges_after_healing() {
    use allidb_tests::NetHost;
    use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};
    let Some(hosts) = Hosts::create(3) else {
        return;
    };
    let gossip: Vec<SocketAddr> = (0..3).map(|i| SocketAddr::new(hosts.ip(i), 7946)).collect();
    let nodes: Vec<Daemon> = (0..3)
        .map(|i| {
            let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
            let host = NetHost {
                netns: hosts.netns(i),
                ip: hosts.ip(i),
            };
            Daemon::start_in(
                host,
                &format!(
                    "[server]\nallow_insecure_non_loopback = true\n{toml}write_timeout_ms = 1000\nread_timeout_ms = 1000\n"
                ),
            )
        })
        .collect();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }

    hosts.isolate(2);
    let split = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &split, Duration::from_secs(15));
    let alone = [("n0", "down"), ("n1", "down"), ("n2", "normal")];
    wait_for_states(&nodes[2], &alone, Duration::from_secs(15));
    put(&nodes[0], "majority", Quorum)
        .await
        .expect("the majority reaches QUORUM");
    let minority = put(&nodes[2], "minority", Quorum).await.unwrap_err();
    assert_eq!(minority.code(), Code::Unavailable, "{minority:?}");
    put(&nodes[2], "minority-one", One)
        .await
        .expect("ONE on the minority side");

    hosts.heal(2);
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered both ways", Duration::from_secs(30), || {
        nodes.iter().all(|node| hints_pending(node) == 0)
    });
    for node in &nodes {
        for id in ["majority", "minority-one"] {
            assert!(
                found(node, id, One).await.unwrap(),
                "{id} on every node after healing"
            );
        }
    }
}
