//! The daemon's metrics: the process-wide Prometheus recorder ([`install_recorder`]) and the
//! scrape ([`Scrape`]) that sets the gauges read from the store and the authenticator, then
//! renders every series in the Prometheus text format.
//!
//! Who records what: the API layer records per-request series (`allidb_api::observe`), the
//! storage engine its WAL histograms (`allidb_storage::telemetry`), the index its query stages
//! and rebuilds (`allidb_index::telemetry`); this module turns counters the engine and the index
//! already keep ([`allidb_storage::Stats`], [`UnifiedStore::index_sizes`],
//! [`Authenticator::failed_authentications`]) into series at scrape time, so hot paths pay
//! nothing for them. The list of every series is in `docs/operations.md` ("Metrics").
//!
//! Invariants: the recorder is installed before the store opens (the WAL writer takes its
//! handles when it starts); labels come from fixed sets (RPC names, codes, route templates,
//! LSM levels, query stages): per-tenant values are summed, never labelled. Must never: export
//! a tenant, entity id, key or trace id as a label, or block an async worker on the store.

use std::sync::Arc;
use std::time::Duration;

use allidb_api::auth::Authenticator;
use allidb_api::service::AlliDbService;
use allidb_index::UnifiedStore;
use allidb_storage::engine::EngineState;
use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of every `*_seconds` series: 50 µs to 10 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Histogram buckets of the WAL group sizes (batches per group commit).
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// How often histogram samples are folded into their buckets between scrapes (bounds the
/// memory of samples recorded while nobody scrapes).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const MEMTABLE_BYTES: &str = "allidb_memtable_bytes";
const WAL_BYTES: &str = "allidb_wal_bytes";
const WAL_SEGMENTS: &str = "allidb_wal_segments";
const WAL_OLDEST_SEGMENT_AGE_SECONDS: &str = "allidb_wal_oldest_segment_age_seconds";
const IMMUTABLE_MEMTABLES: &str = "allidb_immutable_memtables";
const SSTABLES: &str = "allidb_sstables";
const SSTABLE_BYTES: &str = "allidb_sstable_bytes";
const FLUSHES_TOTAL: &str = "allidb_flushes_total";
const FLUSH_BYTES_TOTAL: &str = "allidb_flush_bytes_total";
const COMPACTIONS_TOTAL: &str = "allidb_compactions_total";
const COMPACTION_READ_BYTES_TOTAL: &str = "allidb_compaction_read_bytes_total";
const COMPACTION_WRITE_BYTES_TOTAL: &str = "allidb_compaction_write_bytes_total";
const WRITE_STALLS_TOTAL: &str = "allidb_write_stalls_total";
const WRITE_SLOWDOWNS_TOTAL: &str = "allidb_write_slowdowns_total";
const BLOCK_CACHE_HITS_TOTAL: &str = "allidb_block_cache_hits_total";
const BLOCK_CACHE_MISSES_TOTAL: &str = "allidb_block_cache_misses_total";
const BLOCK_CACHE_HIT_RATIO: &str = "allidb_block_cache_hit_ratio";
const VECTOR_INDEX_VECTORS: &str = "allidb_vector_index_vectors";
const VECTOR_INDEX_PENDING: &str = "allidb_vector_index_pending";
const VECTOR_INDEX_TENANTS: &str = "allidb_vector_index_tenants";
const VECTOR_INDEX_MAX_STALE_RATIO: &str = "allidb_vector_index_max_stale_ratio";
const INDEX_APPLY_ERRORS_TOTAL: &str = "allidb_index_apply_errors_total";
const INDEX_VECTORS_UNINDEXED: &str = "allidb_index_vectors_unindexed";
const FAILED_AUTHENTICATIONS_TOTAL: &str = "allidb_failed_authentications_total";
const STORE_READY: &str = "allidb_store_ready";
const ENGINE_STATE: &str = "allidb_engine_state";

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("metrics recorder: {0}")]
pub struct TelemetryError(String);

/// Builds the Prometheus recorder (no listener of its own: the admin server renders it),
/// installs it as the process's `metrics` recorder, registers every help text and starts the
/// periodic upkeep. Call once per process, inside the Tokio runtime.
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let bucket_error = |e: metrics_exporter_prometheus::BuildError| TelemetryError(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            LATENCY_BUCKETS_SECONDS,
        )
        .map_err(bucket_error)?
        .set_buckets_for_metric(
            Matcher::Full(allidb_storage::telemetry::WAL_GROUP_BATCHES.to_owned()),
            GROUP_SIZE_BUCKETS,
        )
        .map_err(bucket_error)?
        .install_recorder()
        .map_err(|e| TelemetryError(e.to_string()))?;
    allidb_api::observe::describe();
    allidb_api::admission::metrics::describe();
    allidb_storage::telemetry::describe();
    allidb_index::telemetry::describe();
    describe_scraped();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            interval.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe_scraped() {
    describe_gauge!(
        ENGINE_STATE,
        Unit::Count,
        "1 for the storage engine's current state (label state: healthy, low_space, degraded, \
         stopped), 0 for the others; every state but healthy refuses writes."
    );
    describe_gauge!(
        MEMTABLE_BYTES,
        Unit::Bytes,
        "Bytes in the mutable memtable."
    );
    describe_gauge!(
        IMMUTABLE_MEMTABLES,
        Unit::Count,
        "Immutable memtables waiting for flush."
    );
    describe_gauge!(
        WAL_BYTES,
        Unit::Bytes,
        "Bytes of the WAL segments on disk (the one being written included)."
    );
    describe_gauge!(
        WAL_SEGMENTS,
        Unit::Count,
        "WAL segments on disk (the one being written included)."
    );
    describe_gauge!(
        WAL_OLDEST_SEGMENT_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest WAL segment on disk holding records (0: none but an empty one being \
         written); a segment found at start counts from the start."
    );
    describe_gauge!(SSTABLES, Unit::Count, "SSTables per LSM level.");
    describe_gauge!(
        SSTABLE_BYTES,
        Unit::Bytes,
        "SSTable file bytes per LSM level."
    );
    describe_counter!(FLUSHES_TOTAL, Unit::Count, "Memtable flushes.");
    describe_counter!(
        FLUSH_BYTES_TOTAL,
        Unit::Bytes,
        "SSTable bytes written by flushes."
    );
    describe_counter!(COMPACTIONS_TOTAL, Unit::Count, "Compactions run.");
    describe_counter!(
        COMPACTION_READ_BYTES_TOTAL,
        Unit::Bytes,
        "SSTable bytes read by compactions."
    );
    describe_counter!(
        COMPACTION_WRITE_BYTES_TOTAL,
        Unit::Bytes,
        "SSTable bytes written by compactions."
    );
    describe_counter!(
        WRITE_STALLS_TOTAL,
        Unit::Count,
        "Times writers stalled (memtables or L0 full)."
    );
    describe_counter!(
        WRITE_SLOWDOWNS_TOTAL,
        Unit::Count,
        "Writes delayed because L0 is large."
    );
    describe_counter!(
        BLOCK_CACHE_HITS_TOTAL,
        Unit::Count,
        "SSTable block cache hits."
    );
    describe_counter!(
        BLOCK_CACHE_MISSES_TOTAL,
        Unit::Count,
        "SSTable block cache misses."
    );
    describe_gauge!(
        BLOCK_CACHE_HIT_RATIO,
        "Block cache hits / (hits + misses) since start; 0 before the first lookup."
    );
    describe_gauge!(
        VECTOR_INDEX_VECTORS,
        Unit::Count,
        "Vectors in the vector indexes, summed over tenants."
    );
    describe_gauge!(
        VECTOR_INDEX_PENDING,
        Unit::Count,
        "Vectors written but not yet in the ANN graph (the pending tail), summed over tenants."
    );
    describe_gauge!(
        VECTOR_INDEX_TENANTS,
        Unit::Count,
        "Tenants with a vector index."
    );
    describe_gauge!(
        VECTOR_INDEX_MAX_STALE_RATIO,
        "Largest fraction of stale points in any tenant's vector index (rebuild trigger)."
    );
    describe_counter!(
        INDEX_APPLY_ERRORS_TOTAL,
        Unit::Count,
        "Committed batches whose indexing failed."
    );
    describe_gauge!(
        INDEX_VECTORS_UNINDEXED,
        Unit::Count,
        "Entities whose stored vector the index refused: its dimension differs from its tenant's index (replicas that diverged)."
    );
    describe_counter!(
        FAILED_AUTHENTICATIONS_TOTAL,
        Unit::Count,
        "Requests refused as unauthenticated (missing, empty, unknown or expired API key)."
    );
    describe_gauge!(
        STORE_READY,
        "1 while the store is open and serving, else 0."
    );
}

/// What a scrape reads besides the recorder: the service (its store, once open) and the keys.
#[derive(Clone, Debug)]
pub struct Scrape {
    handle: PrometheusHandle,
    service: AlliDbService,
    auth: Arc<Authenticator>,
}

impl Scrape {
    /// A scrape of `handle`'s series plus the gauges of `service`'s store and `auth`.
    pub fn new(handle: PrometheusHandle, service: AlliDbService, auth: Arc<Authenticator>) -> Self {
        Self {
            handle,
            service,
            auth,
        }
    }

    /// Sets the scraped gauges and renders every series (Prometheus text format 0.0.4). Reads
    /// engine and index state under their locks: call it on the blocking pool.
    pub fn render(&self) -> String {
        counter!(FAILED_AUTHENTICATIONS_TOTAL).absolute(self.auth.failed_authentications());
        let store = self.service.store();
        gauge!(STORE_READY).set(if store.is_some() { 1.0 } else { 0.0 });
        if let Some(store) = store {
            record_store(&store);
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

fn record_store(store: &UnifiedStore) {
    let current = store.engine().health().state;
    for state in EngineState::ALL {
        gauge!(ENGINE_STATE, "state" => state.as_str()).set(if state == current {
            1.0
        } else {
            0.0
        });
    }
    let stats = store.engine().stats();
    gauge!(MEMTABLE_BYTES).set(stats.memtable_bytes as f64);
    gauge!(IMMUTABLE_MEMTABLES).set(stats.immutable_memtables as f64);
    gauge!(WAL_BYTES).set(stats.wal_bytes as f64);
    gauge!(WAL_SEGMENTS).set(stats.wal_segments as f64);
    gauge!(WAL_OLDEST_SEGMENT_AGE_SECONDS).set(stats.wal_oldest_segment_age.as_secs_f64());
    for (level, tables) in stats.tables_per_level.iter().enumerate() {
        gauge!(SSTABLES, "level" => level.to_string()).set(*tables as f64);
    }
    for (level, bytes) in stats.bytes_per_level.iter().enumerate() {
        gauge!(SSTABLE_BYTES, "level" => level.to_string()).set(*bytes as f64);
    }
    counter!(FLUSHES_TOTAL).absolute(stats.flushes);
    counter!(FLUSH_BYTES_TOTAL).absolute(stats.flush_bytes);
    counter!(COMPACTIONS_TOTAL).absolute(stats.compactions);
    counter!(COMPACTION_READ_BYTES_TOTAL).absolute(stats.compaction_read_bytes);
    counter!(COMPACTION_WRITE_BYTES_TOTAL).absolute(stats.compaction_write_bytes);
    counter!(WRITE_STALLS_TOTAL).absolute(stats.stalls);
    counter!(WRITE_SLOWDOWNS_TOTAL).absolute(stats.slowdowns);
    counter!(BLOCK_CACHE_HITS_TOTAL).absolute(stats.block_cache_hits);
    counter!(BLOCK_CACHE_MISSES_TOTAL).absolute(stats.block_cache_misses);
    let lookups = stats.block_cache_hits + stats.block_cache_misses;
    let hit_ratio = if lookups == 0 {
        0.0
    } else {
        stats.block_cache_hits as f64 / lookups as f64
    };
    gauge!(BLOCK_CACHE_HIT_RATIO).set(hit_ratio);

    let sizes = store.index_sizes();
    let (vectors, pending, max_stale) = sizes.iter().fold(
        (0_usize, 0_usize, 0.0_f64),
        |(vectors, pending, max_stale), (_tenant, len, tail, stale)| {
            (vectors + len, pending + tail, max_stale.max(*stale))
        },
    );
    gauge!(VECTOR_INDEX_VECTORS).set(vectors as f64);
    gauge!(VECTOR_INDEX_PENDING).set(pending as f64);
    gauge!(VECTOR_INDEX_TENANTS).set(sizes.len() as f64);
    gauge!(VECTOR_INDEX_MAX_STALE_RATIO).set(max_stale);
    counter!(INDEX_APPLY_ERRORS_TOTAL).absolute(store.index_apply_errors());
    gauge!(INDEX_VECTORS_UNINDEXED).set(store.unindexed_vectors() as f64);
}
