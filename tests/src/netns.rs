//! Hosts of their own for partition tests: network namespaces on a bridge the test makes (root
//! needed; [`Hosts::create`] prints a `SKIPPED partition test` line and returns `None`
//! otherwise).
//!
//! Each set of hosts has a tag: host `i` of tag `t` on subnet `s` is `10.s.0.(11 + i)` in
//! namespace `allidb-<t><i>`, on bridge `allidb-<t>br` (`10.s.0.1`, which is how the test reaches
//! every host). Tests of one test binary run at once, so each uses its own tag and subnet.
//!
//! Invariants: everything a set creates (namespaces, links, the bridge, its FORWARD rule) is
//! removed on drop, and also before creating, in case an earlier run was killed.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use crate::ring::{cluster_toml, wait_all_normal};
use crate::{Daemon, NetHost};

/// Network namespaces on one bridge; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    tag: &'static str,
    subnet: u8,
    count: usize,
}

/// Runs a command quietly; whether it succeeded.
fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Hosts {
    /// `count` hosts tagged `tag` (one or two letters, so interface names stay within 15
    /// bytes) on subnet `10.subnet.0.0/24`, or `None` (with the reason printed) where this
    /// machine does not allow creating them (not root, no `ip`).
    pub fn create(tag: &'static str, subnet: u8, count: usize) -> Option<Hosts> {
        assert!(
            (1..=2).contains(&tag.len()) && count <= 32,
            "a short tag and a few hosts"
        );
        let hosts = Hosts { tag, subnet, count };
        hosts.remove();
        let bridge = hosts.bridge();
        let mut steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "add", &bridge, "type", "bridge"],
            vec![
                "ip",
                "addr",
                "add",
                &format!("10.{subnet}.0.1/24"),
                "dev",
                &bridge,
            ],
            vec!["ip", "link", "set", &bridge, "up"],
        ]
        .into_iter()
        .map(|s| s.into_iter().map(str::to_owned).collect())
        .collect();
        // Docker's FORWARD policy drops bridged traffic when br_netfilter is loaded.
        steps.push(hosts.forward_rule("-I"));
        for i in 0..count {
            let (ns, veth, ip) = (hosts.netns(i), hosts.veth(i), hosts.ip(i));
            for step in [
                format!("ip netns add {ns}"),
                format!("ip link add {veth} type veth peer name eth0 netns {ns}"),
                format!("ip link set {veth} master {bridge} up"),
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

    fn bridge(&self) -> String {
        format!("allidb-{}br", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("allidb-{}v{i}", self.tag)
    }

    /// The root namespace's rule letting the bridge forward between its ports (`action`: `-I`
    /// inserts it, `-D` deletes it).
    fn forward_rule(&self, action: &str) -> Vec<String> {
        let bridge = self.bridge();
        [
            "iptables", action, "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// Host `i`'s namespace.
    pub fn netns(&self, i: usize) -> String {
        format!("allidb-{}{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::from([10, self.subnet, 0, 11 + i as u8])
    }

    /// Host `i`, to start a daemon in ([`crate::Daemon::start_in`]).
    pub fn host(&self, i: usize) -> NetHost {
        NetHost {
            netns: self.netns(i),
            ip: self.ip(i),
        }
    }

    /// A ring of `count` daemons, `n<i>` on host `i` (`n0` is the seed, gossip on port 7946),
    /// the cluster section followed by `extra`; returned once every node sees every node
    /// normal.
    pub fn start_ring(&self, count: usize, extra: &str) -> Vec<Daemon> {
        assert!(
            count <= self.count,
            "{count} daemons on {} hosts",
            self.count
        );
        let gossip: Vec<SocketAddr> = (0..count)
            .map(|i| SocketAddr::new(self.ip(i), 7946))
            .collect();
        let nodes: Vec<Daemon> = (0..count)
            .map(|i| {
                let toml = cluster_toml(&format!("n{i}"), gossip[i], gossip[0]);
                Daemon::start_in(
                    self.host(i),
                    &format!("[server]\nallow_insecure_non_loopback = true\n{toml}{extra}"),
                )
            })
            .collect();
        wait_all_normal(&nodes);
        nodes
    }

    /// Drops every packet between host `i` and the other hosts (the test still reaches it).
    pub fn isolate(&self, i: usize) {
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
    pub fn heal(&self, i: usize) {
        let ns = self.netns(i);
        for chain in ["INPUT", "OUTPUT"] {
            assert!(sh(&["ip", "netns", "exec", &ns, "iptables", "-F", chain]));
        }
    }

    fn remove(&self) {
        for i in 0..self.count {
            sh(&["ip", "netns", "del", &self.netns(i)]);
            sh(&["ip", "link", "del", &self.veth(i)]);
        }
        sh(&["ip", "link", "del", &self.bridge()]);
        let rule = self.forward_rule("-D");
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        while sh(&rule) {}
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}
