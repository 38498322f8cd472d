//! `[cluster]`: membership in a ring, its timeouts, hints, streaming and repair, with the
//! checks that need only this section (the rest is [`super::Config::validate`]'s).

use std::net::SocketAddr;

use allidb_cluster::ring::HostId;
use allidb_cluster::stream::chunk::MAX_CHUNK_BYTES;
use serde::{Deserialize, Serialize};

use super::{ConfigError, MIB, check_range, invalid};

/// `cluster.repair_scan_bytes_per_sec` by default (docs/cluster.md "Repair pace").
const DEFAULT_REPAIR_SCAN_BYTES_PER_SEC: u64 = 16 * MIB;

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Join a ring of nodes (gossip); without it the daemon is a single node, as before.
    pub enabled: bool,
    /// The cluster's name: nodes of different clusters never gossip, and a data dir created
    /// for one cluster is refused by another.
    pub name: String,
    /// A human name of this node for status output (empty = its gossip address).
    pub node_name: String,
    /// Shared secret that authenticates gossip (at least 16 characters; required when enabled).
    pub secret: String,
    /// UDP address gossip binds.
    pub listen_addr: SocketAddr,
    /// UDP address peers gossip to (unset = `listen_addr`; required when `listen_addr` is
    /// `0.0.0.0` or `[::]`).
    pub advertise_addr: Option<SocketAddr>,
    /// gRPC address peers call for node-to-node requests, gossiped and written into the
    /// topology log (unset = the bound `server.grpc_addr`; required when that is `0.0.0.0` or
    /// `[::]`, as in a container).
    pub rpc_advertise_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of the seed nodes; may include this node's own.
    pub seeds: Vec<String>,
    /// Vnodes of this node (used on its first start only; then persisted). 0: as many as the
    /// ring's nodes hold, 4 for the node that forms a new ring.
    pub num_tokens: u32,
    /// Replicas of each partition (capped by the number of nodes).
    pub replication_factor: u32,
    /// Time between gossip rounds, in milliseconds.
    pub gossip_interval_ms: u64,
    /// Phi above which a peer is marked down (chitchat's phi: about this many mean gaps).
    pub phi_threshold: f64,
    /// How long a dead node's gossip state is kept before chitchat collects it, in seconds.
    pub dead_node_grace_period_secs: u64,
    /// Deadline of one replica write, in milliseconds.
    pub write_timeout_ms: u64,
    /// Deadline of one replica read, in milliseconds.
    pub read_timeout_ms: u64,
    /// Keep hints for replicas that miss a write, and deliver them when they are back.
    pub hinted_handoff_enabled: bool,
    /// Hints older than this are dropped instead of delivered, in seconds.
    pub hinted_handoff_window_secs: u64,
    /// Most bytes of hints kept for one node; over it, new hints for it are dropped.
    pub max_hint_bytes_per_node: u64,
    /// Most hint bytes delivered per second (0 = unthrottled).
    pub hint_delivery_bytes_per_sec: u64,
    /// Most cell bytes one range stream (a rebuild) receives per second (0 = unthrottled).
    pub stream_bytes_per_sec: u64,
    /// The cell bytes a range stream asks for in one chunk (64 KiB to 4 MiB): its position is
    /// recorded after each.
    pub stream_chunk_bytes: u64,
    /// Groups of token ranges (each from its own sources) one range stream receives at once.
    pub stream_concurrency: u64,
    /// Repair every range this node replicates at least this often (0 = no scheduled repair).
    pub repair_interval_secs: u64,
    /// Most bytes of partitions per second this node's scans for anti-entropy read together
    /// (Merkle trees, streams of differing leaves), whichever node's repair asked (0 = no cap).
    pub repair_scan_bytes_per_sec: u64,
    /// Replica writes timestamped further ahead of this node's wall clock are refused.
    pub max_clock_skew_ms: u64,
    /// The host id of a dead node whose place this new node takes on its first join (a
    /// replace: it takes that node's tokens and streams its ranges); empty for a bootstrap.
    pub replace_host: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            name: "allidb".to_owned(),
            node_name: String::new(),
            secret: String::new(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            advertise_addr: None,
            rpc_advertise_addr: None,
            seeds: Vec::new(),
            num_tokens: 0,
            replication_factor: 3,
            gossip_interval_ms: 1000,
            phi_threshold: 8.0,
            dead_node_grace_period_secs: 24 * 3600,
            write_timeout_ms: 2000,
            read_timeout_ms: 2000,
            hinted_handoff_enabled: true,
            hinted_handoff_window_secs: 3 * 3600,
            max_hint_bytes_per_node: 1 << 30,
            hint_delivery_bytes_per_sec: 16 << 20,
            stream_bytes_per_sec: 64 << 20,
            stream_chunk_bytes: MAX_CHUNK_BYTES as u64,
            stream_concurrency: 3,
            repair_interval_secs: 0,
            repair_scan_bytes_per_sec: DEFAULT_REPAIR_SCAN_BYTES_PER_SEC,
            max_clock_skew_ms: 10_000,
            replace_host: String::new(),
        }
    }
}

impl ClusterConfig {
    /// The gossip address peers use.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise_addr.unwrap_or(self.listen_addr)
    }

    /// `cluster.replace_host`, parsed (`None` when empty).
    pub fn replace_host(&self) -> Result<Option<HostId>, ConfigError> {
        if self.replace_host.is_empty() {
            return Ok(None);
        }
        self.replace_host
            .parse::<HostId>()
            .map(Some)
            .map_err(|e| invalid("cluster.replace_host", e.to_string()))
    }

    /// The gRPC address peers call: `rpc_advertise_addr`, else the address the gRPC listener
    /// bound (`bound`, its real port when configured as 0).
    pub fn rpc_advertise_addr(&self, bound: SocketAddr) -> SocketAddr {
        self.rpc_advertise_addr.unwrap_or(bound)
    }

    /// Checks the keys of an enabled cluster on a node whose gRPC listener is `grpc_addr`;
    /// `tls_enabled` decides which addresses may be used.
    pub(super) fn validate(
        &self,
        grpc_addr: SocketAddr,
        tls_enabled: bool,
    ) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        // An address every interface is bound on names no host: peers given it would call
        // themselves.
        let wildcard = |addr: SocketAddr, advertise: &str| {
            format!(
                "{addr} listens on every interface, which is no address a peer can call: set \
                 {advertise} to this node's own address (e.g. the container's or pod's IP)"
            )
        };
        if self.advertise_addr.is_none() && self.listen_addr.ip().is_unspecified() {
            return Err(invalid(
                "cluster.listen_addr",
                wildcard(self.listen_addr, "cluster.advertise_addr"),
            ));
        }
        if self.rpc_advertise_addr.is_none() && grpc_addr.ip().is_unspecified() {
            return Err(invalid(
                "server.grpc_addr",
                wildcard(grpc_addr, "cluster.rpc_advertise_addr"),
            ));
        }
        for (key, advertised) in [
            ("cluster.advertise_addr", self.advertise_addr),
            ("cluster.rpc_advertise_addr", self.rpc_advertise_addr),
        ] {
            if let Some(addr) = advertised
                && (addr.ip().is_unspecified() || addr.port() == 0)
            {
                return Err(invalid(
                    key,
                    format!(
                        "{addr} is not an address peers can call: name this node's IP and port"
                    ),
                ));
            }
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "cluster.name",
                format!(
                    "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        if self.secret.len() < 16 {
            return Err(invalid(
                "cluster.secret",
                "must be at least 16 characters when cluster.enabled = true (set it in the file \
                 or in ALLIDB_CLUSTER_SECRET)",
            ));
        }
        check_range("cluster.num_tokens", self.num_tokens, 0..=256)?;
        self.replace_host()?;
        check_range(
            "cluster.replication_factor",
            self.replication_factor,
            1..=16,
        )?;
        check_range(
            "cluster.gossip_interval_ms",
            self.gossip_interval_ms,
            10..=60_000,
        )?;
        check_range("cluster.phi_threshold", self.phi_threshold, 1.0..=64.0)?;
        check_range(
            "cluster.dead_node_grace_period_secs",
            self.dead_node_grace_period_secs,
            1..=365 * 24 * 3600,
        )?;
        check_range(
            "cluster.write_timeout_ms",
            self.write_timeout_ms,
            10..=600_000,
        )?;
        check_range(
            "cluster.read_timeout_ms",
            self.read_timeout_ms,
            10..=600_000,
        )?;
        check_range(
            "cluster.hinted_handoff_window_secs",
            self.hinted_handoff_window_secs,
            1..=7 * 24 * 3600,
        )?;
        check_range(
            "cluster.max_hint_bytes_per_node",
            self.max_hint_bytes_per_node,
            (1 << 20)..=(1 << 40),
        )?;
        check_range(
            "cluster.max_clock_skew_ms",
            self.max_clock_skew_ms,
            100..=3_600_000,
        )?;
        check_range(
            "cluster.stream_chunk_bytes",
            self.stream_chunk_bytes,
            (64 << 10)..=(MAX_CHUNK_BYTES as u64),
        )?;
        check_range(
            "cluster.stream_concurrency",
            self.stream_concurrency,
            1..=16,
        )?;
        if !tls_enabled {
            for (key, addr) in [
                ("cluster.listen_addr", self.listen_addr),
                ("cluster.advertise_addr", self.advertise_addr()),
                (
                    "cluster.rpc_advertise_addr",
                    self.rpc_advertise_addr(grpc_addr),
                ),
            ] {
                if !is_private(addr.ip()) {
                    return Err(invalid(
                        key,
                        format!(
                            "{addr} is not a loopback or private address: without tls.enabled, \
                             node-to-node traffic must stay on loopback or private networks \
                             (docs/operations.md, \"Cluster security\")"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Loopback, RFC 1918, link-local, or IPv6 unique-local: never the unspecified address, which
/// binds every interface.
fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}
