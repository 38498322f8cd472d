//! The sections of the configuration other than `[cluster]` (`[server]`, `[tls]`, `[storage]`,
//! `[index]`, `[query]`, `[auth]`, `[log]`): their keys, documented defaults and the values
//! derived from them. Validation across keys is [`super::Config::validate`]'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use allidb_api::auth::AuthOptions;
use allidb_storage::types::Durability;
use serde::{Deserialize, Serialize};

use super::MIB;
use super::lexical::{StemmingName, StopWordsName};

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
    /// Whether the tenants `lexical_tenants` does not list have a lexical index (text search);
    /// off, chunk texts are stored but not analyzed, and text queries are refused.
    pub lexical_enabled: bool,
    /// BM25 term frequency saturation of the tenants `lexical_tenants` does not list.
    pub lexical_k1: f64,
    /// BM25 length normalization of the tenants `lexical_tenants` does not list.
    pub lexical_b: f64,
    /// Stemming of the lexical analyzer of the tenants `lexical_tenants` does not list.
    pub lexical_stemming: StemmingName,
    /// Stop words of the lexical analyzer of the tenants `lexical_tenants` does not list.
    pub lexical_stop_words: StopWordsName,
    /// Tenants with lexical settings of their own, as `tenant=setting:value ...` items
    /// (`enabled`, `k1`, `b`, `stemming`, `stop_words`; what an item omits is the default
    /// above).
    pub lexical_tenants: Vec<String>,
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
            lexical_enabled: true,
            lexical_k1: 1.2,
            lexical_b: 0.75,
            lexical_stemming: StemmingName::None,
            lexical_stop_words: StopWordsName::None,
            lexical_tenants: Vec::new(),
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
