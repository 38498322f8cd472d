//! Translation of the validated daemon [`Config`] into the options of the store
//! ([`StoreOptions`]), of the gRPC service ([`ServiceOptions`]), of cluster membership
//! ([`MembershipOptions`]) and of the topology log ([`TopologyOptions`]).
//!
//! Invariant: every `[storage]`, `[index]`, `[query]` and `[cluster]` key that has a counterpart
//! in the store, the service or membership is carried over here and nowhere else; values were range-checked by
//! [`Config::validate`], so conversions only widen integers.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use allidb_api::admission::BudgetOptions;
use allidb_api::page_token::PageTokenKey;
use allidb_api::pb::ConsistencyLevel;
use allidb_api::service::{DEFAULT_NODE_ID, ServiceOptions};
use allidb_cluster::membership::{MembershipOptions, SEED_SETTLE_INTERVALS};
use allidb_cluster::topology::TopologyOptions;
use allidb_index::StoreOptions;
use allidb_index::vector::Metric;

use crate::config::{ClusterConfig, Config, ConsistencyName, MetricName};

fn usize_from(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The membership options of `config` (`[cluster]`), for a node whose data dir is `data_dir` and
/// whose gRPC listener is bound on `grpc_addr` (its RPC address unless
/// `cluster.rpc_advertise_addr` names another).
pub fn membership_options(
    config: &Config,
    data_dir: &Path,
    grpc_addr: SocketAddr,
) -> MembershipOptions {
    let cluster = &config.cluster;
    let advertise = cluster.advertise_addr();
    MembershipOptions {
        cluster_name: cluster.name.clone(),
        node_name: if cluster.node_name.is_empty() {
            advertise.to_string()
        } else {
            cluster.node_name.clone()
        },
        cluster_secret: cluster.secret.clone(),
        data_dir: data_dir.to_path_buf(),
        gossip_listen: cluster.listen_addr,
        gossip_advertise: advertise,
        rpc_advertise: cluster.rpc_advertise_addr(grpc_addr),
        seeds: cluster.seeds.clone(),
        gossip_interval: Duration::from_millis(cluster.gossip_interval_ms),
        phi_threshold: cluster.phi_threshold,
        dead_node_grace_period: Duration::from_secs(cluster.dead_node_grace_period_secs),
    }
}

/// How long a start waits for seed names that do not resolve yet (a seed container or pod
/// that is not up yet has no DNS record).
pub const SEED_RESOLVE_WAIT: Duration = Duration::from_secs(10);

/// How often an unresolved seed name is asked again while [`resolve_seeds`] waits.
const SEED_RESOLVE_RETRY: Duration = Duration::from_millis(250);

/// `cluster.seeds` resolved to gossip addresses, and whether one of them is this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedSeeds {
    /// Every address the seeds resolved to.
    pub addrs: BTreeSet<SocketAddr>,
    /// Whether a seed names this node (see [`resolve_seeds`]).
    pub includes_self: bool,
}

/// Resolves `cluster.seeds` (IP addresses or DNS names), retrying names that do not resolve yet
/// for up to `wait`. A seed is this node's own when it is its gossip address
/// (`cluster.advertise_addr`), resolves to it, resolves to an address of this host with the
/// gossip port, or names this host: its first DNS label is the host name and its port the
/// gossip port (a StatefulSet pod `allidb-0` and the seed `allidb-0.allidb.ns.svc:7946`, whose
/// record may only appear once the pod is up). Names still unresolved after `wait` are logged
/// and left to gossip, which keeps resolving them.
pub async fn resolve_seeds(
    cluster: &ClusterConfig,
    host_name: Option<&str>,
    wait: Duration,
) -> ResolvedSeeds {
    let advertise = cluster.advertise_addr();
    let gossip_ports = [advertise.port(), cluster.listen_addr.port()];
    let names_this_host = |seed: &str| {
        let Some((host, port)) = seed.rsplit_once(':') else {
            return false;
        };
        let label = host.split('.').next().unwrap_or_default();
        host_name.is_some_and(|name| !name.is_empty() && label.eq_ignore_ascii_case(name))
            && port
                .parse()
                .is_ok_and(|port: u16| gossip_ports.contains(&port))
    };
    let mut resolved = ResolvedSeeds::default();
    let mut pending: Vec<&str> = Vec::new();
    for seed in &cluster.seeds {
        let seed = seed.trim();
        if seed
            .parse::<SocketAddr>()
            .is_ok_and(|addr| addr == advertise)
            || names_this_host(seed)
        {
            resolved.includes_self = true;
        }
        pending.push(seed);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut unresolved = Vec::new();
        for seed in pending {
            match tokio::net::lookup_host(seed).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if addr == advertise
                            || (gossip_ports.contains(&addr.port()) && is_local_address(addr))
                        {
                            resolved.includes_self = true;
                        }
                        resolved.addrs.insert(addr);
                    }
                }
                Err(error) => unresolved.push((seed, error)),
            }
        }
        if unresolved.is_empty() {
            return resolved;
        }
        if tokio::time::Instant::now() >= deadline {
            for (seed, error) in unresolved {
                tracing::warn!(
                    seed,
                    %error,
                    "a seed (cluster.seeds) does not resolve; gossip keeps trying it"
                );
            }
            return resolved;
        }
        pending = unresolved.into_iter().map(|(seed, _)| seed).collect();
        tokio::time::sleep(SEED_RESOLVE_RETRY).await;
    }
}

/// Whether `addr`'s IP address is one of this host's: a socket can be bound on it.
fn is_local_address(addr: SocketAddr) -> bool {
    !addr.ip().is_unspecified() && std::net::UdpSocket::bind((addr.ip(), 0)).is_ok()
}

/// This host's name (a container's or pod's name in a container), when the system tells it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// The topology log options of `config` (`[cluster]`) for a node whose gRPC listener is bound
/// on `grpc_addr` and whose seeds resolved to `seeds`.
pub fn topology_options(
    config: &Config,
    grpc_addr: SocketAddr,
    seeds: ResolvedSeeds,
) -> TopologyOptions {
    let cluster = &config.cluster;
    let advertise = cluster.advertise_addr();
    let gossip_interval = Duration::from_millis(cluster.gossip_interval_ms);
    TopologyOptions {
        cluster_name: cluster.name.clone(),
        node_name: if cluster.node_name.is_empty() {
            advertise.to_string()
        } else {
            cluster.node_name.clone()
        },
        rpc_advertise: cluster.rpc_advertise_addr(grpc_addr),
        num_tokens: (cluster.num_tokens > 0).then_some(cluster.num_tokens as usize),
        replace: cluster
            .replace_host()
            .expect("cluster.replace_host is checked when the configuration is loaded"),
        replication_factor: cluster.replication_factor as usize,
        is_seed: cluster.seeds.is_empty() || seeds.includes_self,
        seeds: seeds.addrs,
        settle: gossip_interval * SEED_SETTLE_INTERVALS,
        poll: gossip_interval.max(Duration::from_millis(100)),
    }
}

/// The store options of `config` (`[storage]` and `[index]`).
pub fn store_options(config: &Config) -> StoreOptions {
    let defaults = StoreOptions::default();
    let storage = &config.storage;
    let index = &config.index;
    let mut vectors = defaults.vectors;
    vectors.metric = match index.metric {
        MetricName::Cosine => Metric::Cosine,
        MetricName::L2 => Metric::L2,
        MetricName::Dot => Metric::Dot,
    };
    vectors.engine.max_connections = index.m as usize;
    vectors.engine.ef_construction = index.ef_construction as usize;
    vectors.ef_search = index.ef_search as usize;
    vectors.max_pending = index.max_unindexed_vectors as usize;
    StoreOptions {
        engine: allidb_storage::Options {
            memtable_bytes: usize_from(storage.memtable_bytes),
            block_cache_bytes: storage.block_cache_bytes,
            gc_grace: Duration::from_secs(storage.gc_grace_secs),
            min_free_bytes: storage.min_free_bytes,
            memtable_idle_flush: (storage.memtable_idle_flush_secs > 0)
                .then(|| Duration::from_secs(u64::from(storage.memtable_idle_flush_secs))),
            ..defaults.engine
        },
        vectors,
        lexical: index
            .lexical()
            .expect("Config::validate refuses malformed index.lexical_* keys"),
        max_tail_wait: Duration::from_millis(u64::from(index.max_tail_wait_ms)),
        dump_interval: Duration::from_secs(u64::from(index.dump_interval_secs)),
        dump_wal_bytes: index.dump_wal_bytes,
        ..defaults
    }
}

/// The service options of `config` (`[storage] durability`, `[server]`, `[query]`), page
/// tokens signed with `page_tokens`.
pub fn service_options(config: &Config, page_tokens: PageTokenKey) -> ServiceOptions {
    ServiceOptions {
        node_id: DEFAULT_NODE_ID.to_owned(),
        durability: config.storage.durability(),
        default_consistency: match config.server.default_consistency {
            ConsistencyName::One => ConsistencyLevel::ConsistencyOne,
            ConsistencyName::Quorum => ConsistencyLevel::ConsistencyQuorum,
            ConsistencyName::All => ConsistencyLevel::ConsistencyAll,
        },
        query_max_hops: config.query.max_hops,
        query_max_candidates: config.query.max_candidates as usize,
        query_max_expansion_nodes: config.query.max_expansion_nodes as usize,
        page_tokens,
        tenant_ttl_secs: config
            .storage
            .tenant_ttls()
            .expect("Config::validate refuses a malformed storage.tenant_ttl_secs"),
    }
}

/// The node's request budget when the host's memory is known: this fraction of it.
pub const REQUEST_BUDGET_MEMORY_FRACTION: u64 = 64;
/// Bounds of the derived request budget.
pub const REQUEST_BUDGET_DERIVED_BYTES: std::ops::RangeInclusive<u64> = (64 << 20)..=(1 << 30);
/// The node's request budget when the host's memory cannot be read.
pub const REQUEST_BUDGET_FALLBACK_BYTES: u64 = 256 << 20;

/// The request budget of `config` (`[server]`), on a host with `memory_limit` bytes of memory
/// (see docs/configuration.md "Request budget").
pub fn budget_options(config: &Config, memory_limit: Option<u64>) -> BudgetOptions {
    let server = &config.server;
    let node_bytes = match server.max_inflight_request_bytes {
        0 => memory_limit.map_or(REQUEST_BUDGET_FALLBACK_BYTES, |memory| {
            (memory / REQUEST_BUDGET_MEMORY_FRACTION).clamp(
                *REQUEST_BUDGET_DERIVED_BYTES.start(),
                *REQUEST_BUDGET_DERIVED_BYTES.end(),
            )
        }),
        configured => configured,
    };
    let tenant_bytes = match server.max_inflight_request_bytes_per_tenant {
        0 if config.auth.enabled => node_bytes / 2,
        0 => node_bytes,
        configured => configured.min(node_bytes),
    };
    BudgetOptions {
        node_bytes,
        tenant_bytes,
        wait: Duration::from_millis(server.admission_wait_ms),
    }
}

#[cfg(test)]
mod tests {
    use allidb_storage::Durability;

    use super::*;
    use crate::config::DurabilityName;

    #[test]
    fn the_request_budget_is_derived_from_memory_unless_configured() {
        let mut config = Config::default();
        let derived = budget_options(&config, Some(24 << 30));
        assert_eq!(derived.node_bytes, 384 << 20);
        assert_eq!(derived.tenant_bytes, 384 << 20, "one tenant without auth");
        assert_eq!(derived.wait, Duration::from_millis(250));
        assert_eq!(budget_options(&config, Some(2 << 30)).node_bytes, 64 << 20);
        assert_eq!(budget_options(&config, Some(1 << 40)).node_bytes, 1 << 30);
        assert_eq!(budget_options(&config, None).node_bytes, 256 << 20);
        config.auth.enabled = true;
        assert_eq!(
            budget_options(&config, Some(24 << 30)).tenant_bytes,
            192 << 20
        );
        config.server.max_inflight_request_bytes = 100 << 20;
        config.server.max_inflight_request_bytes_per_tenant = 10 << 20;
        let configured = budget_options(&config, Some(24 << 30));
        assert_eq!(
            (configured.node_bytes, configured.tenant_bytes),
            (100 << 20, 10 << 20)
        );
    }

    fn cluster(advertise: &str, seeds: &[&str]) -> ClusterConfig {
        ClusterConfig {
            enabled: true,
            listen_addr: "0.0.0.0:7946".parse().unwrap(),
            advertise_addr: Some(advertise.parse().unwrap()),
            seeds: seeds.iter().map(|s| (*s).to_owned()).collect(),
            ..ClusterConfig::default()
        }
    }

    #[tokio::test]
    async fn seeds_resolve_and_find_this_node() {
        let wait = Duration::from_millis(300);
        // Its own address among IP seeds.
        let own = cluster("10.9.0.2:7946", &["10.9.0.1:7946", "10.9.0.2:7946"]);
        let resolved = resolve_seeds(&own, None, wait).await;
        assert!(resolved.includes_self);
        assert_eq!(resolved.addrs.len(), 2);
        // Another node's seed.
        let other = cluster("10.9.0.3:7946", &["10.9.0.1:7946"]);
        assert!(!resolve_seeds(&other, None, wait).await.includes_self);
        // A DNS name that resolves to an address of this host with the gossip port.
        let local = cluster("10.9.0.3:7946", &["localhost:7946"]);
        let resolved = resolve_seeds(&local, None, wait).await;
        assert!(resolved.includes_self, "{resolved:?}");
        assert!(resolved.addrs.iter().all(|a| a.ip().is_loopback()));
        // ... but on another port it is another node on this host.
        let other_port = cluster("10.9.0.3:7946", &["localhost:7100"]);
        assert!(!resolve_seeds(&other_port, None, wait).await.includes_self);
        // A name that does not resolve (yet): this node's own by its host name (a pod's first
        // DNS label), after waiting at most `wait`.
        let pod = cluster("10.9.0.3:7946", &["allidb-0.allidb.invalid:7946"]);
        let started = std::time::Instant::now();
        let resolved = resolve_seeds(&pod, Some("allidb-0"), wait).await;
        assert!(resolved.includes_self && resolved.addrs.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            !resolve_seeds(&pod, Some("allidb-1"), wait)
                .await
                .includes_self
        );
        let options = topology_options(
            &Config {
                cluster: pod.clone(),
                ..Config::default()
            },
            "0.0.0.0:7000".parse().unwrap(),
            resolve_seeds(&pod, Some("allidb-0"), wait).await,
        );
        assert!(options.is_seed);
    }

    #[test]
    fn the_rpc_address_is_the_advertised_one_when_set() {
        let mut config = Config {
            cluster: cluster("10.9.0.3:7946", &[]),
            ..Config::default()
        };
        let bound: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        config.cluster.rpc_advertise_addr = Some("10.9.0.3:7000".parse().unwrap());
        let membership = membership_options(&config, Path::new("data"), bound);
        assert_eq!(membership.rpc_advertise.to_string(), "10.9.0.3:7000");
        let topology = topology_options(&config, bound, ResolvedSeeds::default());
        assert_eq!(topology.rpc_advertise.to_string(), "10.9.0.3:7000");
        assert!(topology.is_seed, "no seeds: it may form a ring alone");
        config.cluster.rpc_advertise_addr = None;
        let loopback: SocketAddr = "127.0.0.1:7100".parse().unwrap();
        let membership = membership_options(&config, Path::new("data"), loopback);
        assert_eq!(membership.rpc_advertise, loopback);
    }

    #[test]
    fn defaults_match_the_store_defaults() {
        let config = Config::default();
        let store = store_options(&config);
        let defaults = StoreOptions::default();
        assert_eq!(store.engine.memtable_bytes, defaults.engine.memtable_bytes);
        assert_eq!(
            store.engine.block_cache_bytes,
            defaults.engine.block_cache_bytes
        );
        assert_eq!(store.engine.gc_grace, defaults.engine.gc_grace);
        assert_eq!(store.engine.min_free_bytes, defaults.engine.min_free_bytes);
        assert_eq!(
            store.engine.memtable_idle_flush,
            defaults.engine.memtable_idle_flush
        );
        assert_eq!(store.dump_interval, defaults.dump_interval);
        assert_eq!(store.dump_wal_bytes, defaults.dump_wal_bytes);
        assert_eq!(store.lexical, defaults.lexical);
        assert_eq!(store.vectors.ef_search, defaults.vectors.ef_search);
        assert_eq!(store.vectors.max_pending, defaults.vectors.max_pending);
        assert_eq!(store.max_tail_wait, defaults.max_tail_wait);
        assert_eq!(
            store.vectors.engine.max_connections,
            defaults.vectors.engine.max_connections
        );
        let defaults = ServiceOptions::default();
        assert_eq!(
            service_options(&config, defaults.page_tokens.clone()),
            defaults
        );
    }

    #[test]
    fn every_mapped_key_is_carried_over() {
        let mut config = Config::default();
        config.storage.memtable_bytes = 8 << 20;
        config.storage.block_cache_bytes = 0;
        config.storage.gc_grace_secs = 4 * 3600;
        config.storage.min_free_bytes = 0;
        config.storage.memtable_idle_flush_secs = 0;
        config.index.dump_interval_secs = 5;
        config.index.dump_wal_bytes = 8 << 20;
        config.storage.durability = DurabilityName::Periodic;
        config.storage.periodic_sync_ms = 250;
        config.index.m = 32;
        config.index.ef_construction = 300;
        config.index.ef_search = 99;
        config.index.metric = MetricName::Dot;
        config.index.max_unindexed_vectors = 5_000;
        config.index.max_tail_wait_ms = 1_500;
        config.query.max_hops = 3;
        config.query.max_candidates = 77;
        config.query.max_expansion_nodes = 55;
        config.server.default_consistency = ConsistencyName::Quorum;

        let store = store_options(&config);
        assert_eq!(store.engine.memtable_bytes, 8 << 20);
        assert_eq!(store.engine.block_cache_bytes, 0);
        assert_eq!(store.engine.gc_grace, Duration::from_secs(4 * 3600));
        assert_eq!(store.engine.min_free_bytes, 0);
        assert_eq!(store.engine.memtable_idle_flush, None);
        assert_eq!(store.dump_interval, Duration::from_secs(5));
        assert_eq!(store.dump_wal_bytes, 8 << 20);
        assert_eq!(store.vectors.engine.max_connections, 32);
        assert_eq!(store.vectors.engine.ef_construction, 300);
        assert_eq!(store.vectors.ef_search, 99);
        assert_eq!(store.vectors.metric, Metric::Dot);
        assert_eq!(store.vectors.max_pending, 5_000);
        assert_eq!(store.max_tail_wait, Duration::from_millis(1_500));

        let service = service_options(&config, PageTokenKey::default());
        assert_eq!(service.durability, Durability::Periodic(250));
        assert_eq!(service.query_max_hops, 3);
        assert_eq!(service.query_max_candidates, 77);
        assert_eq!(service.query_max_expansion_nodes, 55);
        assert_eq!(
            service.default_consistency,
            ConsistencyLevel::ConsistencyQuorum
        );
    }
}
