//! Translation of the validated daemon [`Config`] into the options of the store
//! ([`StoreOptions`]), of the gRPC service ([`ServiceOptions`]), of cluster membership
//! ([`MembershipOptions`]) and of the topology log ([`TopologyOptions`]).
//!
//! Invariant: every `[storage]`, `[index]`, `[query]` and `[cluster]` key that has a counterpart
//! in the store, the service or membership is carried over here and nowhere else; values were range-checked by
//! [`Config::validate`], so conversions only widen integers.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use allidb_api::admission::BudgetOptions;
use allidb_api::pb::ConsistencyLevel;
use allidb_api::service::{DEFAULT_NODE_ID, ServiceOptions};
use allidb_cluster::membership::{MembershipOptions, SEED_SETTLE_INTERVALS};
use allidb_cluster::topology::TopologyOptions;
use allidb_index::StoreOptions;
use allidb_index::vector::Metric;

use crate::config::{Config, ConsistencyName, MetricName};

fn usize_from(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The membership options of `config` (`[cluster]`), for a node whose data dir is `data_dir` and
/// whose gRPC listener is bound on `grpc_addr` (gossiped as its RPC address).
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
        rpc_advertise: grpc_addr,
        seeds: cluster.seeds.clone(),
        gossip_interval: Duration::from_millis(cluster.gossip_interval_ms),
        phi_threshold: cluster.phi_threshold,
        dead_node_grace_period: Duration::from_secs(cluster.dead_node_grace_period_secs),
    }
}

/// The topology log options of `config` (`[cluster]`) for a node whose gRPC listener is bound
/// on `grpc_addr`. Seeds given by name are resolved once, here.
pub fn topology_options(config: &Config, grpc_addr: SocketAddr) -> TopologyOptions {
    let cluster = &config.cluster;
    let advertise = cluster.advertise_addr();
    let seeds: BTreeSet<SocketAddr> = cluster
        .seeds
        .iter()
        .filter_map(|seed| seed.to_socket_addrs().ok())
        .flatten()
        .collect();
    let gossip_interval = Duration::from_millis(cluster.gossip_interval_ms);
    TopologyOptions {
        cluster_name: cluster.name.clone(),
        node_name: if cluster.node_name.is_empty() {
            advertise.to_string()
        } else {
            cluster.node_name.clone()
        },
        rpc_advertise: grpc_addr,
        num_tokens: cluster.num_tokens as usize,
        replace: cluster
            .replace_host()
            .expect("cluster.replace_host is checked when the configuration is loaded"),
        replication_factor: cluster.replication_factor as usize,
        is_seed: cluster.seeds.is_empty()
            || seeds.contains(&advertise)
            || cluster.seeds.iter().any(|s| *s == advertise.to_string()),
        seeds,
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
        max_tail_wait: Duration::from_millis(u64::from(index.max_tail_wait_ms)),
        dump_interval: Duration::from_secs(u64::from(index.dump_interval_secs)),
        dump_wal_bytes: index.dump_wal_bytes,
        ..defaults
    }
}

/// The service options of `config` (`[storage] durability`, `[server]`, `[query]`).
pub fn service_options(config: &Config) -> ServiceOptions {
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
        assert_eq!(store.vectors.ef_search, defaults.vectors.ef_search);
        assert_eq!(store.vectors.max_pending, defaults.vectors.max_pending);
        assert_eq!(store.max_tail_wait, defaults.max_tail_wait);
        assert_eq!(
            store.vectors.engine.max_connections,
            defaults.vectors.engine.max_connections
        );
        assert_eq!(service_options(&config), ServiceOptions::default());
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

        let service = service_options(&config);
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
