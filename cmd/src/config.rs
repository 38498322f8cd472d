//! The daemon's configuration (DESIGN.md §9, docs/configuration.md).
//!
//! Layers, each overriding the one before: built-in defaults, the TOML file (`--config` or
//! `ALLIDB_CONFIG`), environment variables `ALLIDB_<SECTION>_<KEY>` (e.g.
//! `ALLIDB_SERVER_GRPC_ADDR`), then flags (`--set section.key=value`, then the named flags such as
//! `--data-dir`). The defaults give a working single node with no file at all.
//!
//! Invariants: an omitted key means its documented default (every section is
//! `#[serde(default)]`), never `false` or zero by accident; an unknown key, a value of the wrong
//! type or out of range stops startup with an error naming the key (and the variable or flag it
//! came from). A data port that listens beyond loopback without auth and TLS is refused unless
//! `server.allow_insecure_non_loopback` says otherwise. This module reads configuration only: it
//! never opens listeners, files other than the config file, or stores.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use allidb_api::auth::AuthOptions;
use allidb_cluster::ring::HostId;
use allidb_cluster::stream::chunk::MAX_CHUNK_BYTES;
use allidb_storage::types::Durability;
use serde::{Deserialize, Serialize};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "ALLIDB_";

/// The sections of the file; also the only `ALLIDB_<SECTION>_...` variables read as overrides.
pub const SECTIONS: &[&str] = &[
    "server", "tls", "storage", "index", "query", "auth", "log", "cluster", "backup",
];

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// `cluster.repair_scan_bytes_per_sec` by default (docs/cluster.md "Repair pace").
const DEFAULT_REPAIR_SCAN_BYTES_PER_SEC: u64 = 16 * MIB;

/// Everything `allidbd` can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and request limits.
    pub server: ServerConfig,
    /// TLS for the gRPC and HTTP listeners.
    pub tls: TlsConfig,
    /// The storage engine.
    pub storage: StorageConfig,
    /// The vector index.
    pub index: IndexConfig,
    /// Query defaults.
    pub query: QueryConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Membership in a ring of nodes.
    pub cluster: ClusterConfig,
    /// Backups to an object store (docs/backup.md).
    pub backup: crate::backup::schedule::BackupConfig,
}

/// Consistency level of requests that do not name one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyName {
    /// One replica.
    #[default]
    One,
    /// A majority of replicas.
    Quorum,
    /// Every replica.
    All,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listener.
    pub grpc_addr: SocketAddr,
    /// HTTP JSON gateway listener.
    pub http_addr: SocketAddr,
    /// Admin listener (metrics, health, readiness).
    pub admin_addr: SocketAddr,
    /// Allow gRPC/HTTP beyond loopback without auth and TLS.
    pub allow_insecure_non_loopback: bool,
    /// Largest request (gRPC message or HTTP body) in bytes.
    pub max_request_bytes: u64,
    /// How long a graceful shutdown drains requests before it stops them, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Bytes of requests being decoded, applied and indexed at once on this node (0: derived
    /// from the host's memory, docs/configuration.md "Request budget").
    pub max_inflight_request_bytes: u64,
    /// One tenant's share of `max_inflight_request_bytes` (0: all of it with auth disabled,
    /// half of it with auth enabled).
    pub max_inflight_request_bytes_per_tenant: u64,
    /// How long a request waits for room in the request budget before `RESOURCE_EXHAUSTED`.
    pub admission_wait_ms: u64,
    /// Consistency level of requests that do not name one.
    pub default_consistency: ConsistencyName,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 7002)),
            allow_insecure_non_loopback: false,
            max_request_bytes: 16 * MIB,
            shutdown_timeout_secs: 30,
            max_inflight_request_bytes: 0,
            max_inflight_request_bytes_per_tenant: 0,
            admission_wait_ms: 250,
            default_consistency: ConsistencyName::One,
        }
    }
}

/// `[tls]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve gRPC and HTTP over TLS.
    pub enabled: bool,
    /// PEM certificate chain (required when enabled).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (required when enabled).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate signed by one (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

/// How the WAL makes writes durable before acknowledging them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityName {
    /// fdatasync before the acknowledgement (group commit).
    #[default]
    Sync,
    /// Written to the OS before the acknowledgement; survives a process crash only.
    Buffered,
    /// Synced every `storage.periodic_sync_ms`.
    Periodic,
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the WAL, SSTables, manifest and index files.
    pub data_dir: PathBuf,
    /// Default durability of writes.
    pub durability: DurabilityName,
    /// Sync interval of `durability = "periodic"`, in milliseconds.
    pub periodic_sync_ms: u32,
    /// Memtable size before it is flushed, in bytes.
    pub memtable_bytes: u64,
    /// Block cache size, in bytes (0 disables the cache).
    pub block_cache_bytes: u64,
    /// How long tombstones are kept before compaction may drop them, in seconds.
    pub gc_grace_secs: u64,
    /// The low-space watermark: writes are refused while the data volume has fewer bytes
    /// available (0 disables it).
    pub min_free_bytes: u64,
    /// Seconds a memtable holding writes may receive none before it is flushed, so that its
    /// WAL segment can be deleted while idle (0 disables it).
    pub memtable_idle_flush_secs: u32,
    /// Default time to live of each listed tenant's entities, as `tenant=seconds` items
    /// (docs/api.md "Expiry"): an entity written without an expiry of its own expires that
    /// long after its write. Unlisted tenants have none.
    pub tenant_ttl_secs: Vec<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            durability: DurabilityName::Sync,
            periodic_sync_ms: 100,
            memtable_bytes: 64 * MIB,
            block_cache_bytes: 256 * MIB,
            gc_grace_secs: 10 * 24 * 3600,
            min_free_bytes: 256 * MIB,
            memtable_idle_flush_secs: 30,
            tenant_ttl_secs: Vec::new(),
        }
    }
}

impl StorageConfig {
    /// The default TTL of each tenant `tenant_ttl_secs` lists, or why an item is malformed
    /// (not `tenant=seconds`, an invalid tenant id, a tenant listed twice, seconds out of
    /// 1..=`MAX_TTL_SECS`).
    pub fn tenant_ttls(&self) -> Result<BTreeMap<String, u64>, String> {
        let max = allidb_api::validate_expiry::MAX_TTL_SECS as u64;
        let mut ttls = BTreeMap::new();
        for item in &self.tenant_ttl_secs {
            let (tenant, secs) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not tenant=seconds"))?;
            let tenant = tenant.trim();
            allidb_storage::key::validate_tenant(tenant)
                .map_err(|e| format!("{item:?}: tenant id: {e}"))?;
            let secs: u64 = secs
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=max).contains(s))
                .ok_or_else(|| format!("{item:?}: seconds must be an integer in 1..={max}"))?;
            if ttls.insert(tenant.to_owned(), secs).is_some() {
                return Err(format!("tenant {tenant:?} is listed twice"));
            }
        }
        Ok(ttls)
    }

    /// The storage engine's durability setting.
    pub fn durability(&self) -> Durability {
        match self.durability {
            DurabilityName::Sync => Durability::Sync,
            DurabilityName::Buffered => Durability::Buffered,
            DurabilityName::Periodic => Durability::Periodic(self.periodic_sync_ms),
        }
    }
}

/// Vector similarity metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricName {
    /// Cosine similarity.
    #[default]
    Cosine,
    /// Euclidean distance.
    L2,
    /// Dot product.
    Dot,
}

/// `[index]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// HNSW links per node.
    pub m: u32,
    /// HNSW build breadth.
    pub ef_construction: u32,
    /// HNSW search breadth of queries that do not name one.
    pub ef_search: u32,
    /// Similarity metric of new tenants.
    pub metric: MetricName,
    /// Bound of each tenant's exact-scan tail (vectors written but not yet in HNSW); writers
    /// are slowed while it is full.
    pub max_unindexed_vectors: u32,
    /// Longest a write waits for room in a full tail before it fails with RESOURCE_EXHAUSTED
    /// (milliseconds; 0 = fail at once).
    pub max_tail_wait_ms: u32,
    /// Seconds between index dumps while writes come (each dump releases the WAL it covers).
    pub dump_interval_secs: u32,
    /// The indexes are also dumped once this many bytes of WAL were written since the last
    /// dump: it bounds the WAL kept for them and read by a restart to catch them up.
    pub dump_wal_bytes: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            metric: MetricName::Cosine,
            max_unindexed_vectors: 20_000,
            max_tail_wait_ms: 30_000,
            dump_interval_secs: 60,
            dump_wal_bytes: 256 * MIB,
        }
    }
}

/// `[query]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Graph expansion depth of queries that do not name one (0 = no expansion).
    pub max_hops: u32,
    /// Most ANN seeds of one query (caps `k * expand_factor`).
    pub max_candidates: u32,
    /// Most entities one query's graph expansion visits.
    pub max_expansion_nodes: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_hops: 1,
            max_candidates: 1000,
            max_expansion_nodes: 1000,
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require an API key on every request (except health checks).
    pub enabled: bool,
    /// The tenant of every request when auth is disabled.
    pub default_tenant: String,
    /// Key file: `<sha256-hex> <tenant> <role> [expires-unix-secs]` per line.
    pub key_file: Option<PathBuf>,
    /// Environment variable holding key lines (empty = none).
    pub keys_env: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_tenant: "default".to_owned(),
            key_file: None,
            keys_env: "ALLIDB_API_KEYS".to_owned(),
        }
    }
}

impl AuthConfig {
    /// The API crate's authentication options.
    pub fn options(&self) -> AuthOptions {
        AuthOptions {
            enabled: self.enabled,
            default_tenant: self.default_tenant.clone(),
            key_file: self.key_file.clone(),
            keys_env: Some(self.keys_env.clone()).filter(|name| !name.is_empty()),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Level filter: a level, or comma-separated `target=level` directives.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

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
    /// Vnodes of this node (used on its first start only; then persisted).
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
            num_tokens: 16,
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
    fn validate(&self, grpc_addr: SocketAddr, tls_enabled: bool) -> Result<(), ConfigError> {
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
        check_range("cluster.num_tokens", self.num_tokens, 1..=256)?;
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

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a wrongly typed value.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key (from any layer) is unknown, wrongly typed or out of range.
    #[error("config key {key}{origin}: {message}")]
    Key {
        /// `section.key`.
        key: String,
        /// ` (from <variable or flag>)`, or empty when it came from the file or the defaults.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// An override is not of the form `section.key=value`.
    #[error("{origin}: {message}")]
    Override {
        /// The variable or flag.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Where configuration comes from, in increasing priority (after the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The TOML file; `None` = defaults only.
    pub file: Option<PathBuf>,
    /// The process environment (only `ALLIDB_<SECTION>_<KEY>` variables are used).
    pub env: Vec<(String, String)>,
    /// Flag overrides, in order: `(flag, "section.key", value)`.
    pub flags: Vec<(String, String, String)>,
}

/// Configuration flags shared by the binaries (flatten into a clap parser).
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "ALLIDB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides one key, e.g. `--set index.ef_search=128` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Overrides `storage.data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Overrides `server.grpc_addr`.
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// Overrides `server.http_addr`.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Overrides `log.level`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The sources these flags and the process environment describe.
    pub fn sources(&self) -> Result<ConfigSources, ConfigError> {
        let mut flags = Vec::new();
        for set in &self.set {
            let (key, value) = set.split_once('=').ok_or_else(|| ConfigError::Override {
                origin: format!("--set {set}"),
                message: "expected section.key=value".to_owned(),
            })?;
            flags.push(("--set".to_owned(), key.trim().to_owned(), value.to_owned()));
        }
        let named = [
            ("--data-dir", "storage.data_dir", &self.data_dir),
            ("--grpc-addr", "server.grpc_addr", &self.grpc_addr),
            ("--http-addr", "server.http_addr", &self.http_addr),
            ("--log-level", "log.level", &self.log_level),
        ];
        for (flag, key, value) in named {
            if let Some(value) = value {
                flags.push((flag.to_owned(), key.to_owned(), value.clone()));
            }
        }
        Ok(ConfigSources {
            file: self.config.clone(),
            env: std::env::vars().collect(),
            flags,
        })
    }

    /// Loads the configuration these flags and the process environment describe.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.sources()?)
    }
}

/// One override of one key.
struct Override {
    origin: String,
    section: String,
    key: String,
    value: String,
}

impl Override {
    fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

/// The overrides of the environment: `ALLIDB_<SECTION>_<KEY>` with a known section.
fn env_overrides(env: &[(String, String)]) -> Vec<Override> {
    let mut overrides: Vec<Override> = env
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let (section, key) = rest.split_once('_')?;
            let section = section.to_ascii_lowercase();
            SECTIONS.contains(&section.as_str()).then(|| Override {
                origin: name.clone(),
                section,
                key: key.to_ascii_lowercase(),
                value: value.clone(),
            })
        })
        .collect();
    // Environment order is arbitrary; make the result independent of it.
    overrides.sort_by(|a, b| a.origin.cmp(&b.origin));
    overrides
}

fn flag_overrides(flags: &[(String, String, String)]) -> Result<Vec<Override>, ConfigError> {
    flags
        .iter()
        .map(|(flag, path, value)| {
            let origin = format!("{flag} {path}");
            let (section, key) = path.split_once('.').ok_or_else(|| ConfigError::Override {
                origin: origin.clone(),
                message: "the key must be section.key".to_owned(),
            })?;
            if !SECTIONS.contains(&section) {
                return Err(ConfigError::Override {
                    origin,
                    message: format!(
                        "unknown section `{section}`, expected one of {}",
                        SECTIONS.join(", ")
                    ),
                });
            }
            Ok(Override {
                origin,
                section: section.to_owned(),
                key: key.to_owned(),
                value: value.clone(),
            })
        })
        .collect()
}

/// The TOML value of an override, typed like the key's default (a list takes comma-separated
/// items; a key without a default value, i.e. an optional path or address, takes a string; an
/// unknown key is reported by deserialization).
fn typed_value(defaults: &toml::Table, o: &Override) -> Result<toml::Value, ConfigError> {
    let default = defaults
        .get(&o.section)
        .and_then(|section| section.get(&o.key));
    let bad = |expected: &str| ConfigError::Key {
        key: o.path(),
        origin: format!(" (from {})", o.origin),
        message: format!("expected {expected}, got {:?}", o.value),
    };
    let raw = o.value.trim();
    Ok(match default {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().map_err(|_| bad("an integer"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.parse().map_err(|_| bad("a number"))?)
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        Some(toml::Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        _ => toml::Value::String(o.value.clone()),
    })
}

fn check_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Key {
            key: key.to_owned(),
            origin: String::new(),
            message: format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        })
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        origin: String::new(),
        message: message.into(),
    }
}

/// `level` or `target=level` directives separated by commas.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    !filter.trim().is_empty()
        && filter.split(',').all(|directive| {
            let level = match directive.split_once('=') {
                Some((target, level)) if !target.trim().is_empty() => level,
                Some(_) => return false,
                None => directive,
            };
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        })
}

impl Config {
    /// Loads and validates the configuration from `sources` (see the module documentation).
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut table = match &sources.file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file_error = |message: String| ConfigError::File {
                    path: path.clone(),
                    message,
                };
                // Parse as `Config` first: its errors carry the line and column of the key.
                toml::from_str::<Config>(&text).map_err(|e| file_error(e.to_string()))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| file_error(e.to_string()))?
            }
        };

        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| invalid("(defaults)", e.to_string()))?;
        let mut origins: HashMap<String, String> = HashMap::new();
        let overrides = env_overrides(&sources.env)
            .into_iter()
            .chain(flag_overrides(&sources.flags)?);
        for o in overrides {
            let value = typed_value(&defaults, &o)?;
            let section = table
                .entry(o.section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(invalid(&o.section, "must be a table"));
            };
            section.insert(o.key.clone(), value);
            origins.insert(o.path(), o.origin);
        }

        let origin_of = |key: &str| {
            origins
                .get(key)
                .map(|origin| format!(" (from {origin})"))
                .unwrap_or_default()
        };
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Key {
                    origin: origin_of(&key),
                    key,
                    message: e.into_inner().to_string(),
                }
            })?;
        config.validate().map_err(|error| match error {
            ConfigError::Key {
                key,
                origin,
                message,
            } if origin.is_empty() => ConfigError::Key {
                origin: origin_of(&key),
                key,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks ranges and cross-key rules; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backup
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        let server = &self.server;
        check_range(
            "server.max_request_bytes",
            server.max_request_bytes,
            KIB..=GIB,
        )?;
        check_range(
            "server.shutdown_timeout_secs",
            server.shutdown_timeout_secs,
            0..=3600,
        )?;
        for (key, value) in [
            (
                "server.max_inflight_request_bytes",
                server.max_inflight_request_bytes,
            ),
            (
                "server.max_inflight_request_bytes_per_tenant",
                server.max_inflight_request_bytes_per_tenant,
            ),
        ] {
            if value != 0 {
                check_range(key, value, MIB..=1024 * GIB)?;
            }
        }
        if server.max_inflight_request_bytes != 0
            && server.max_inflight_request_bytes_per_tenant > server.max_inflight_request_bytes
        {
            return Err(invalid(
                "server.max_inflight_request_bytes_per_tenant",
                format!(
                    "{} is more than server.max_inflight_request_bytes ({})",
                    server.max_inflight_request_bytes_per_tenant, server.max_inflight_request_bytes
                ),
            ));
        }
        check_range(
            "server.admission_wait_ms",
            server.admission_wait_ms,
            0..=60_000,
        )?;
        let listeners = [
            ("server.grpc_addr", server.grpc_addr),
            ("server.http_addr", server.http_addr),
            ("server.admin_addr", server.admin_addr),
        ];
        for (index, (key, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..index]
                .iter()
                .find(|(_, o)| addr.port() != 0 && o == addr)
            {
                return Err(invalid(key, format!("{addr} is also {other}")));
            }
        }
        let secure = self.auth.enabled && self.tls.enabled;
        if !secure && !server.allow_insecure_non_loopback {
            for (key, addr) in &listeners[..2] {
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        key,
                        format!(
                            "{addr} listens beyond loopback without auth and TLS; enable \
                             auth.enabled and tls.enabled, or set \
                             server.allow_insecure_non_loopback = true"
                        ),
                    ));
                }
            }
        }

        if self.tls.enabled {
            for (key, file) in [
                ("tls.cert_file", &self.tls.cert_file),
                ("tls.key_file", &self.tls.key_file),
            ] {
                if file.is_none() {
                    return Err(invalid(key, "is required when tls.enabled = true"));
                }
            }
        } else if self.tls.client_ca_file.is_some() {
            return Err(invalid(
                "tls.client_ca_file",
                "client certificates need TLS: set tls.enabled = true",
            ));
        }

        let storage = &self.storage;
        if storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        check_range(
            "storage.periodic_sync_ms",
            storage.periodic_sync_ms,
            1..=60_000,
        )?;
        check_range(
            "storage.memtable_bytes",
            storage.memtable_bytes,
            MIB..=4 * GIB,
        )?;
        check_range(
            "storage.block_cache_bytes",
            storage.block_cache_bytes,
            0..=1024 * GIB,
        )?;
        // On a ring, tombstones must also outlive the hint window and the repair interval, or
        // deletes return: checked below, with the cluster settings.
        check_range(
            "storage.gc_grace_secs",
            storage.gc_grace_secs,
            1..=365 * 24 * 3600,
        )?;
        storage
            .tenant_ttls()
            .map_err(|message| invalid("storage.tenant_ttl_secs", message))?;
        check_range(
            "storage.min_free_bytes",
            storage.min_free_bytes,
            0..=1024 * GIB,
        )?;
        check_range(
            "storage.memtable_idle_flush_secs",
            storage.memtable_idle_flush_secs,
            0..=86_400,
        )?;

        let index = &self.index;
        // hnsw_rs exits the process above 256 connections per node.
        check_range("index.m", index.m, 2..=256)?;
        check_range(
            "index.ef_construction",
            index.ef_construction,
            index.m..=4096,
        )?;
        check_range("index.ef_search", index.ef_search, 1..=4096)?;
        check_range(
            "index.max_unindexed_vectors",
            index.max_unindexed_vectors,
            1..=10_000_000,
        )?;
        check_range(
            "index.max_tail_wait_ms",
            index.max_tail_wait_ms,
            0..=600_000,
        )?;
        check_range(
            "index.dump_interval_secs",
            index.dump_interval_secs,
            1..=86_400,
        )?;
        check_range(
            "index.dump_wal_bytes",
            index.dump_wal_bytes,
            MIB..=1024 * GIB,
        )?;

        let query = &self.query;
        check_range(
            "query.max_hops",
            query.max_hops,
            0..=allidb_api::validate::MAX_QUERY_HOPS,
        )?;
        check_range("query.max_candidates", query.max_candidates, 1..=100_000)?;
        check_range(
            "query.max_expansion_nodes",
            query.max_expansion_nodes,
            1..=1_000_000,
        )?;

        allidb_storage::key::validate_tenant(&self.auth.default_tenant)
            .map_err(|e| invalid("auth.default_tenant", e.to_string()))?;
        let keys_env = &self.auth.keys_env;
        if let Some(rest) = keys_env.strip_prefix(ENV_PREFIX)
            && let Some((section, _)) = rest.split_once('_')
            && SECTIONS.contains(&section.to_ascii_lowercase().as_str())
        {
            return Err(invalid(
                "auth.keys_env",
                format!("{keys_env} would be read as a configuration override"),
            ));
        }

        self.cluster
            .validate(self.server.grpc_addr, self.tls.enabled)?;
        if self.cluster.enabled
            && self.cluster.hinted_handoff_enabled
            && self.storage.gc_grace_secs <= self.cluster.hinted_handoff_window_secs
        {
            return Err(invalid(
                "storage.gc_grace_secs",
                format!(
                    "{} s is not longer than cluster.hinted_handoff_window_secs ({} s): a \
                     tombstone purged before a hint older than it is delivered lets the hinted \
                     value come back (docs/cluster.md \"Anti-entropy repair\")",
                    self.storage.gc_grace_secs, self.cluster.hinted_handoff_window_secs
                ),
            ));
        }
        if self.cluster.enabled && self.cluster.repair_interval_secs >= self.storage.gc_grace_secs {
            return Err(invalid(
                "cluster.repair_interval_secs",
                format!(
                    "{} s is not shorter than storage.gc_grace_secs ({} s): every range must be \
                     repaired within the tombstone grace, or a delete one replica missed can \
                     come back (docs/cluster.md \"Anti-entropy repair\")",
                    self.cluster.repair_interval_secs, self.storage.gc_grace_secs
                ),
            ));
        }
        if self.cluster.enabled && self.tls.enabled && self.tls.client_ca_file.is_none() {
            return Err(invalid(
                "tls.client_ca_file",
                "required when cluster.enabled and tls.enabled: it is the cluster CA that every \
                 node's certificate is signed by, for node-to-node mTLS (docs/operations.md, \
                 \"Cluster security\")",
            ));
        }

        if !valid_log_filter(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level (trace, debug, info, warn, error, off) or \
                     comma-separated target=level directives",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(key: &str, value: &str) -> (String, String, String) {
        ("--set".to_owned(), key.to_owned(), value.to_owned())
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let f = file(text);
        Config::load(&ConfigSources {
            file: Some(f.path().to_owned()),
            ..Default::default()
        })
    }

    fn assert_key_error(result: Result<Config, ConfigError>, key: &str, fragment: &str) {
        let message = result.expect_err("must be refused").to_string();
        assert!(message.contains(key), "{message:?} does not name {key}");
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }

    #[test]
    fn cluster_keys_are_checked_only_when_enabled() {
        let config = Config::load(&ConfigSources {
            env: env(&[
                ("ALLIDB_CLUSTER_ENABLED", "true"),
                ("ALLIDB_CLUSTER_SECRET", "0123456789abcdef"),
                ("ALLIDB_CLUSTER_SEEDS", "10.0.0.1:7946, 10.0.0.2:7946"),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert!(config.cluster.enabled);
        assert_eq!(config.cluster.seeds, vec!["10.0.0.1:7946", "10.0.0.2:7946"]);
        assert_eq!(config.cluster.advertise_addr(), config.cluster.listen_addr);

        let enabled = "[cluster]\nenabled = true\nsecret = \"0123456789abcdef\"\n";
        assert_key_error(
            load_file("[cluster]\nenabled = true\n"),
            "cluster.secret",
            "at least 16",
        );
        assert_key_error(
            load_file(&format!("{enabled}replication_factor = 0\n")),
            "cluster.replication_factor",
            "out of range",
        );
        assert_key_error(
            load_file(&format!(
                "{enabled}hinted_handoff_window_secs = 86400\n[storage]\ngc_grace_secs = 86400\n"
            )),
            "storage.gc_grace_secs",
            "not longer than cluster.hinted_handoff_window_secs (86400 s)",
        );
        assert!(
            load_file(&format!(
                "{enabled}hinted_handoff_window_secs = 86400\n[storage]\ngc_grace_secs = 86401\n"
            ))
            .is_ok()
        );
        assert_key_error(
            load_file(&format!(
                "{enabled}repair_interval_secs = 864000\n[storage]\ngc_grace_secs = 864000\n"
            )),
            "cluster.repair_interval_secs",
            "not shorter than storage.gc_grace_secs (864000 s)",
        );
        assert_key_error(
            load_file(&format!("{enabled}stream_chunk_bytes = 1024\n")),
            "cluster.stream_chunk_bytes",
            "out of range",
        );
        assert_key_error(
            load_file(&format!("{enabled}num_tokens = 0\n")),
            "cluster.num_tokens",
            "out of range",
        );
        assert_key_error(
            load_file(&format!(
                "{enabled}listen_addr = \"0.0.0.0:7946\"\nadvertise_addr = \"10.0.0.5:7946\"\n"
            )),
            "cluster.listen_addr",
            "loopback or private",
        );
        assert_key_error(
            load_file(&format!("{enabled}advertise_addr = \"8.8.8.8:7946\"\n")),
            "cluster.advertise_addr",
            "loopback or private",
        );
        assert_key_error(
            load_file(&format!("{enabled}rpc_advertise_addr = \"8.8.8.8:7000\"\n")),
            "cluster.rpc_advertise_addr",
            "loopback or private",
        );
        // Wildcard listeners (a container's): peers need a real address of this node.
        assert_key_error(
            load_file(&format!("{enabled}listen_addr = \"0.0.0.0:7946\"\n")),
            "cluster.listen_addr",
            "set cluster.advertise_addr",
        );
        let wildcard_grpc = format!(
            "{enabled}[server]\ngrpc_addr = \"0.0.0.0:7000\"\nallow_insecure_non_loopback = true\n"
        );
        assert_key_error(
            load_file(&wildcard_grpc),
            "server.grpc_addr",
            "set cluster.rpc_advertise_addr",
        );
        let advertised = load_file(&format!(
            "{enabled}rpc_advertise_addr = \"10.0.0.7:7000\"\n[server]\ngrpc_addr = \"0.0.0.0:7000\"\nallow_insecure_non_loopback = true\n"
        ))
        .unwrap();
        assert_eq!(
            advertised
                .cluster
                .rpc_advertise_addr(SocketAddr::from(([0, 0, 0, 0], 7000))),
            SocketAddr::from(([10, 0, 0, 7], 7000))
        );
        assert_key_error(
            load_file(&format!("{enabled}rpc_advertise_addr = \"10.0.0.7:0\"\n")),
            "cluster.rpc_advertise_addr",
            "not an address peers can call",
        );
        assert_key_error(
            load_file(&format!("{enabled}name = \"a b\"\n")),
            "cluster.name",
            "letters",
        );
        // Disabled: the same values are not checked (a single node never uses them).
        load_file("[cluster]\nreplication_factor = 0\n").unwrap();
    }

    #[test]
    fn no_sources_give_the_defaults_which_are_valid() {
        let config = Config::load(&ConfigSources::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.grpc_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(config.storage.durability(), Durability::Sync);
        assert!(!config.auth.enabled);
        assert_eq!(
            config.auth.options().keys_env.as_deref(),
            Some("ALLIDB_API_KEYS")
        );
    }

    #[test]
    fn the_example_file_holds_exactly_the_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/allidb.toml");
        let config = Config::load(&ConfigSources {
            file: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_docs_name_every_key_and_its_variable() {
        let docs = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
        )
        .unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let optional = [
            ("tls", "cert_file"),
            ("tls", "key_file"),
            ("tls", "client_ca_file"),
            ("auth", "key_file"),
            ("cluster", "advertise_addr"),
            ("cluster", "rpc_advertise_addr"),
        ];
        let mut keys: Vec<(String, String)> = optional
            .iter()
            .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
            .collect();
        for (section, table) in &defaults {
            assert!(SECTIONS.contains(&section.as_str()), "{section}");
            for key in table.as_table().unwrap().keys() {
                keys.push((section.clone(), key.clone()));
            }
        }
        for (section, key) in keys {
            let variable = format!("ALLIDB_{}_{}", section, key).to_ascii_uppercase();
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs miss {section}.{key}"
            );
            assert!(docs.contains(&variable), "docs miss {variable}");
        }
    }

    #[test]
    fn omitted_keys_keep_defaults() {
        let config = load_file("[index]\nm = 32\n").unwrap();
        assert_eq!(config.index.m, 32);
        assert_eq!(config.index.ef_construction, 200);
        assert_eq!(config.server, ServerConfig::default());
    }

    #[test]
    fn layers_override_in_order_file_env_set_flags() {
        let f = file(
            "[server]\ngrpc_addr = \"127.0.0.1:1\"\n[index]\nef_search = 10\n[log]\nlevel = \"warn\"\n",
        );
        let config = Config::load(&ConfigSources {
            file: Some(f.path().to_owned()),
            env: env(&[
                ("ALLIDB_INDEX_EF_SEARCH", "20"),
                ("ALLIDB_LOG_LEVEL", "debug"),
                ("ALLIDB_AUTH_ENABLED", "TRUE"),
                ("ALLIDB_AUTH_KEY_FILE", "/etc/keys"),
                ("ALLIDB_STORAGE_DURABILITY", "periodic"),
                ("ALLIDB_API_KEYS", "not a config key"),
                ("ALLIDB_CONFIG", "/ignored"),
                ("HOME", "/root"),
            ]),
            flags: vec![
                set("index.ef_search", "30"),
                set("log.level", "error"),
                ("--log-level".into(), "log.level".into(), "trace".into()),
            ],
        })
        .unwrap();
        assert_eq!(config.server.grpc_addr.port(), 1); // file
        assert_eq!(config.index.ef_search, 30); // --set over env over file
        assert_eq!(config.log.level, "trace"); // named flag over --set
        assert!(config.auth.enabled);
        assert_eq!(config.auth.key_file, Some(PathBuf::from("/etc/keys")));
        assert_eq!(config.storage.durability(), Durability::Periodic(100));
    }

    #[test]
    fn config_args_build_flag_overrides() {
        let args = ConfigArgs {
            set: vec!["query.max_hops=2".into()],
            data_dir: Some("/var/lib/allidb".into()),
            ..Default::default()
        };
        let sources = args.sources().unwrap();
        assert_eq!(
            sources.flags,
            vec![
                set("query.max_hops", "2"),
                (
                    "--data-dir".into(),
                    "storage.data_dir".into(),
                    "/var/lib/allidb".into()
                )
            ]
        );
        let bad = ConfigArgs {
            set: vec!["query.max_hops".into()],
            ..Default::default()
        };
        assert!(
            bad.sources()
                .unwrap_err()
                .to_string()
                .contains("section.key=value")
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        assert_key_error(
            load_file("[server]\ngrcp_addr = \"x\"\n"),
            "grcp_addr",
            "unknown field",
        );
        assert_key_error(load_file("[serverz]\n"), "serverz", "unknown field");
        let from_env = Config::load(&ConfigSources {
            env: env(&[("ALLIDB_INDEX_EFSEARCH", "3")]),
            ..Default::default()
        });
        assert_key_error(from_env, "index.efsearch", "ALLIDB_INDEX_EFSEARCH");
        let from_flag = Config::load(&ConfigSources {
            flags: vec![set("nosuch.key", "1")],
            ..Default::default()
        });
        assert_key_error(from_flag, "nosuch.key", "unknown section");
    }

    #[test]
    fn wrongly_typed_values_are_refused_with_their_name() {
        assert_key_error(load_file("[index]\nm = \"many\"\n"), "m", "");
        let bad_int = Config::load(&ConfigSources {
            env: env(&[("ALLIDB_INDEX_M", "many")]),
            ..Default::default()
        });
        assert_key_error(bad_int, "index.m", "an integer");
        let bad_bool = Config::load(&ConfigSources {
            flags: vec![set("auth.enabled", "yes")],
            ..Default::default()
        });
        assert_key_error(bad_bool, "auth.enabled", "true or false");
        let bad_addr = Config::load(&ConfigSources {
            flags: vec![set("server.grpc_addr", "nowhere")],
            ..Default::default()
        });
        assert_key_error(bad_addr, "server.grpc_addr", "--set");
        let bad_enum = Config::load(&ConfigSources {
            flags: vec![set("index.metric", "manhattan")],
            ..Default::default()
        });
        assert_key_error(bad_enum, "index.metric", "manhattan");
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_name() {
        let cases = [
            ("index.m", "300", "(from --set index.m)"),
            ("index.m", "1", "out of range"),
            ("index.ef_construction", "8", "out of range"),
            ("index.ef_search", "0", "out of range"),
            ("storage.memtable_bytes", "10", "out of range"),
            ("storage.gc_grace_secs", "0", "out of range"),
            ("storage.tenant_ttl_secs", "sessions", "not tenant=seconds"),
            ("storage.tenant_ttl_secs", "sessions=0", "seconds must be"),
            ("storage.tenant_ttl_secs", "sessions=-3", "seconds must be"),
            (
                "storage.tenant_ttl_secs",
                "sessions=630720001",
                "seconds must be",
            ),
            ("storage.tenant_ttl_secs", "a=5,a=6", "listed twice"),
            ("storage.tenant_ttl_secs", "=5", "tenant id"),
            ("storage.min_free_bytes", "2000000000000", "out of range"),
            ("storage.periodic_sync_ms", "0", "out of range"),
            ("storage.memtable_idle_flush_secs", "86401", "out of range"),
            ("index.dump_interval_secs", "0", "out of range"),
            ("index.dump_wal_bytes", "1024", "out of range"),
            ("server.max_request_bytes", "1", "out of range"),
            ("server.max_inflight_request_bytes", "1000", "out of range"),
            (
                "server.max_inflight_request_bytes_per_tenant",
                "2097152000000000",
                "out of range",
            ),
            ("server.admission_wait_ms", "60001", "out of range"),
            ("query.max_hops", "9", "out of range"),
            ("query.max_candidates", "0", "out of range"),
            ("auth.default_tenant", "", "tenant id"),
            ("auth.keys_env", "ALLIDB_AUTH_KEYS", "override"),
            ("log.level", "loud", "not a level"),
            ("log.level", "allidb=verbose", "not a level"),
            ("storage.data_dir", "", "must not be empty"),
            (
                "server.http_addr",
                "127.0.0.1:7000",
                "also server.grpc_addr",
            ),
        ];
        for (key, value, fragment) in cases {
            let result = Config::load(&ConfigSources {
                flags: vec![set(key, value)],
                ..Default::default()
            });
            assert_key_error(result, key, fragment);
        }
        let fine = Config::load(&ConfigSources {
            flags: vec![
                set("log.level", "info,allidb_storage=debug"),
                set("index.m", "64"),
            ],
            ..Default::default()
        });
        assert!(fine.is_ok(), "{fine:?}");
        let ttls = Config::load(&ConfigSources {
            flags: vec![set(
                "storage.tenant_ttl_secs",
                "sessions=3600, news = 86400",
            )],
            ..Default::default()
        })
        .expect("a valid tenant TTL list");
        assert_eq!(
            ttls.storage.tenant_ttls().unwrap(),
            BTreeMap::from([("news".to_owned(), 86400), ("sessions".to_owned(), 3600)])
        );
        let share_over_budget = Config::load(&ConfigSources {
            flags: vec![
                set("server.max_inflight_request_bytes", "67108864"),
                set("server.max_inflight_request_bytes_per_tenant", "134217728"),
            ],
            ..Default::default()
        });
        assert_key_error(
            share_over_budget,
            "server.max_inflight_request_bytes_per_tenant",
            "more than server.max_inflight_request_bytes",
        );
    }

    #[test]
    fn non_loopback_needs_auth_and_tls_or_an_explicit_opt_in() {
        let with = |flags: &[(&str, &str)]| {
            Config::load(&ConfigSources {
                flags: flags.iter().map(|(k, v)| set(k, v)).collect(),
                ..Default::default()
            })
        };
        assert_key_error(
            with(&[("server.grpc_addr", "0.0.0.0:7000")]),
            "server.grpc_addr",
            "beyond loopback",
        );
        assert_key_error(
            with(&[
                ("server.http_addr", "10.0.0.1:7001"),
                ("auth.enabled", "true"),
            ]),
            "server.http_addr",
            "beyond loopback",
        );
        assert!(
            with(&[
                ("server.grpc_addr", "0.0.0.0:7000"),
                ("server.allow_insecure_non_loopback", "true")
            ])
            .is_ok()
        );
        assert!(
            with(&[
                ("server.grpc_addr", "0.0.0.0:7000"),
                ("auth.enabled", "true"),
                ("tls.enabled", "true"),
                ("tls.cert_file", "/c.pem"),
                ("tls.key_file", "/k.pem"),
            ])
            .is_ok()
        );
        // The admin port may listen anywhere (metrics scrapers).
        assert!(with(&[("server.admin_addr", "0.0.0.0:7002")]).is_ok());
        assert_key_error(
            with(&[("tls.enabled", "true")]),
            "tls.cert_file",
            "required",
        );
        assert_key_error(
            with(&[("tls.client_ca_file", "/ca.pem")]),
            "tls.client_ca_file",
            "tls.enabled",
        );
    }

    #[test]
    fn unreadable_and_malformed_files_name_the_file() {
        let missing = Config::load(&ConfigSources {
            file: Some(PathBuf::from("/nonexistent/allidb.toml")),
            ..Default::default()
        });
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
        assert_key_error(load_file("[server\n"), "config file", "");
    }
}
