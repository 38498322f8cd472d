//! The node-local unified store (DESIGN.md §4): the storage engine plus, per tenant, a vector
//! index, a graph index and a table of entity facts, kept in step with every write.
//!
//! * **Writes** go to the engine; the engine hands every committed batch, in commit order and
//!   before the writer is acknowledged, to [`Indexes`] (a [`CommitObserver`]), which updates the
//!   tenant's indexes. A write is therefore searchable as soon as it is acknowledged: new vectors
//!   sit in the vector index's exact-scan tail until the background indexer moves them into HNSW.
//! * **Restart**: the indexes are loaded from their last dump and caught up from the engine's
//!   retained WAL (`changes_since`); a missing or damaged dump, or a WAL that no longer reaches
//!   back far enough, means a full rebuild from the engine (logged, never a failed start;
//!   module `recovery`). How it went is [`UnifiedStore::recovery`].
//! * **WAL retention**: the engine keeps WAL segments until an index dump covers them
//!   (`retain_wal_until_pinned`, forced on). Every dump pins the WAL at what it covers, and so
//!   does the open (for the dump it loaded), so a segment goes as soon as it is both flushed and
//!   dumped; the indexer dumps on a time and a WAL-size trigger (module `indexer`), which bounds
//!   the WAL kept for the indexes and read by a restart. Must never: pin past what a complete
//!   dump on disk covers.
//! * **Tenants** never share an index: every lookup goes through the caller's tenant first, so
//!   another tenant's entities can be neither returned nor ranked.
//!
//! The engine is the source of truth; everything under `index/` can be deleted and is rebuilt.
//! [`UnifiedStore::checkpoint`] (module `checkpoint`) copies both while serving, for backups.

mod answer;
mod checkpoint;
mod expiry;
mod facts;
mod indexer;
mod persist;
pub mod planning;
mod prepared;
mod provenance;
mod purge;
mod reads;
mod reanalyze;
mod recovery;
mod ring_reads;
mod slot_ordinals;
mod stats;
mod tail_room;
mod tenant;
mod tenant_drop;
#[cfg(test)]
mod wal_tests;
mod writes;

pub use answer::{QueryAnswer, WalkContext};
pub use checkpoint::StoreCheckpoint;
pub use facts::{EntityMeta, Filter, MetaSubject};
pub use planning::PlanReport;
pub use reads::{LIGHT_QUERY_MAX_TAIL, check_filter, edges_between};
pub use recovery::IndexRecovery;
pub use ring_reads::{
    HopNode, HopRequest, SeedCandidate, SeedCandidates, StepRequest, TextCandidate, TextSearch,
};
pub use stats::TenantStats;
pub use tail_room::BulkRoom;
pub use tenant::TenantIndexes;
pub use tenant_drop::TenantDropped;
pub use writes::AttributeClaim;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use allidb_storage::batch::{Prepared, WriteBatch};
use allidb_storage::cell::{Entity, EntityBody};
use allidb_storage::fs::OsFileSystem;
use allidb_storage::key::CellKey;
use allidb_storage::partition::PartitionState;
use allidb_storage::tenant_drops::TenantDrops;
use allidb_storage::{CommitObserver, Engine, SeqNo};
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::graph::{PathStep, Reached, Truncation};
use crate::lexical::{LexicalSettings, ResolvedDoc};
use crate::query::{QueryPlan, ScoredResult};
use crate::vector::VectorIndexOptions;
use prepared::{PreparedBatch, PreparedOp};

/// Store tuning. Every field has a production default.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The storage engine's options (`retain_wal_until_pinned` is forced on).
    pub engine: allidb_storage::Options,
    /// Vector index options of every tenant (dimension `None`: fixed by the first vector).
    pub vectors: VectorIndexOptions,
    /// Lexical (BM25) index options of each tenant.
    pub lexical: LexicalSettings,
    /// How often the indexes are dumped when writes happened (default 60 s).
    pub dump_interval: Duration,
    /// The indexes are also dumped as soon as this many bytes of WAL were written since the
    /// last dump (default 256 MiB): the WAL a restart reads to catch them up stays below it
    /// whatever the write rate.
    pub dump_wal_bytes: u64,
    /// Vectors the background indexer moves from the tail into HNSW per step (default 1,024).
    pub indexer_batch: usize,
    /// Stale fraction of a vector index above which it is rebuilt in the background (0.2).
    pub rebuild_stale_ratio: f64,
    /// Longest a write waits for room in its tenant's full vector tail before it fails with
    /// [`Error::ResourceExhausted`] (default 30 s; zero: fail at once).
    pub max_tail_wait: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            engine: allidb_storage::Options::default(),
            vectors: VectorIndexOptions::default(),
            lexical: LexicalSettings::default(),
            dump_interval: Duration::from_secs(60),
            dump_wal_bytes: 256 << 20,
            indexer_batch: 1024,
            rebuild_stale_ratio: 0.2,
            max_tail_wait: Duration::from_secs(30),
        }
    }
}

/// A query: the vector and/or the text, the plan (k, expansion, weights, ef), a filter, and
/// whether to return the entities.
#[derive(Clone, Debug, Default)]
pub struct QueryRequest {
    /// The query vector (any metric; validated against the tenant's dimension). May be empty
    /// when `text` is given (a text-only query).
    pub vector: Vec<f32>,
    /// The query text, searched by BM25 and fused with the vector hits (`None`: vector only).
    pub text: Option<String>,
    /// How a query with both a vector and a text fuses them.
    pub hybrid: crate::query::HybridOptions,
    /// k, expand factor, traversal limits, weights, ef.
    pub plan: QueryPlan,
    /// Filter applied to seeds and expanded nodes before the top k.
    pub filter: Filter,
    /// Return each result's stored entity.
    pub include_entities: bool,
}

/// One query result.
#[derive(Clone, Debug)]
pub struct QueryHit {
    /// Score, components, path.
    pub result: ScoredResult,
    /// The stored entity, when asked for.
    pub entity: Option<Entity>,
}

/// What a query returns: the ranked hits and, when the plan keeps the walk, its context.
#[derive(Clone, Debug)]
pub struct QueryReply {
    /// The ranked results.
    pub hits: Vec<QueryHit>,
    /// The subgraph the walk visited (when `plan.keep_walk`).
    pub context: Option<QueryContext>,
    /// How the seeds were searched (when `plan.explain` and the query has a filter).
    pub plan: Option<PlanReport>,
}

/// The subgraph a query's walk visited, as returned: the walked entities that are live and pass
/// the query's filter, and the recorded edges between two of them.
#[derive(Clone, Debug)]
pub struct QueryContext {
    /// Nodes in walk order (seeds first), each with its hop and best path, and its stored
    /// entity when asked for.
    pub nodes: Vec<TraverseHit>,
    /// Recorded edges between returned nodes, each once, in the order the walk recorded them.
    pub edges: Vec<PathStep>,
    /// The limits that cut the walk.
    pub truncation: Truncation,
}

/// One node reached by a traversal.
#[derive(Clone, Debug)]
pub struct TraverseHit {
    /// Depth and path.
    pub reached: Reached,
    /// The stored entity, when asked for.
    pub entity: Option<Entity>,
}

/// All tenants' indexes: the engine's commit observer.
#[derive(Debug)]
pub struct Indexes {
    tenants: RwLock<HashMap<String, Arc<TenantState>>>,
    /// The engine's tenant drops: committed cells they cover are not indexed (a write racing
    /// a drop, or a replica's late write of older cells).
    drops: RwLock<Arc<TenantDrops>>,
    /// One dump at a time (the periodic one, a drop's, a purge's, the one at close); a
    /// checkpoint holds it too, so the dump it links stays current and the WAL pin stays put.
    dumping: Mutex<()>,
    options: VectorIndexOptions,
    lexical: LexicalSettings,
    /// Every write at or below this sequence number is in the indexes.
    applied_seq: AtomicU64,
    /// Batches whose index update failed (logged); they are in the engine, not in the index.
    apply_errors: AtomicU64,
    /// Live [`DumpHold`]s: while any is, the indexer's periodic dump waits (the WAL bound
    /// still dumps).
    dump_holds: AtomicUsize,
}

/// One tenant: its indexes plus the vector dimension its writes are validated against.
#[derive(Debug)]
pub struct TenantState {
    /// The indexes.
    pub indexes: TenantIndexes,
    /// Fixed by the first vector; set again by the next vector while no vector is live (and
    /// never when `index.dimension` is configured).
    dimension: Mutex<Option<usize>>,
}

impl TenantState {
    fn new(indexes: TenantIndexes, configured: Option<usize>) -> Arc<Self> {
        let dimension = Mutex::new(indexes.vectors.dimension().or(configured));
        Arc::new(Self { indexes, dimension })
    }

    /// The dimension of the tenant's vectors: the one writes are validated against, else the
    /// one its vector index holds (a replica's tenant, written only through replication, never
    /// validated a write but indexes vectors all the same).
    fn dimension(&self) -> Option<usize> {
        let validated = *self.dimension.lock();
        validated.or_else(|| self.indexes.vectors.dimension())
    }

    /// [`TenantIndexes::retry_unindexed`]; writes and queries are then validated against the
    /// dimension the vector index took.
    fn retry_unindexed(&self, tenant: &str, engine: &Engine) -> Result<usize> {
        let indexed = self.indexes.retry_unindexed(tenant, engine)?;
        if indexed > 0 {
            *self.dimension.lock() = self.indexes.vectors.dimension();
        }
        Ok(indexed)
    }
}

impl Indexes {
    fn new(options: VectorIndexOptions, lexical: LexicalSettings) -> Self {
        Self {
            tenants: RwLock::default(),
            drops: RwLock::default(),
            dumping: Mutex::new(()),
            options,
            lexical,
            applied_seq: AtomicU64::new(0),
            apply_errors: AtomicU64::new(0),
            dump_holds: AtomicUsize::new(0),
        }
    }

    fn tenant(&self, tenant: &str) -> Option<Arc<TenantState>> {
        self.tenants.read().get(tenant).cloned()
    }

    fn tenant_or_create(&self, tenant: &str) -> Result<Arc<TenantState>> {
        if let Some(t) = self.tenant(tenant) {
            return Ok(t);
        }
        let mut tenants = self.tenants.write();
        if let Some(t) = tenants.get(tenant) {
            return Ok(t.clone());
        }
        let state = TenantState::new(
            TenantIndexes::new(self.options, self.lexical.of(tenant))?,
            self.options.dimension,
        );
        tenants.insert(tenant.to_owned(), state.clone());
        Ok(state)
    }

    fn all(&self) -> Vec<(String, Arc<TenantState>)> {
        let mut all: Vec<_> = self
            .tenants
            .read()
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn apply_state(
        &self,
        tenant: &str,
        id: &str,
        state: &PartitionState,
        seq: SeqNo,
    ) -> Result<()> {
        self.tenant_or_create(tenant)?
            .indexes
            .apply_state(id, state, seq)
    }
}

impl CommitObserver for Indexes {
    fn prepare(&self, batch: &WriteBatch) -> Option<Prepared> {
        // A batch is nearly always one tenant's: the first op's is looked up once.
        let first = batch
            .ops()
            .first()
            .and_then(|op| allidb_storage::key::CellKey::decode(&op.key).ok())
            .and_then(|key| Some((self.tenant(&key.tenant)?, key.tenant)));
        let analyze = |tenant: &str, body: &EntityBody, body_ts: u64| {
            let looked_up;
            let state = match &first {
                Some((state, first)) if first == tenant => Some(state),
                _ => {
                    looked_up = self.tenant(tenant);
                    looked_up.as_ref()
                }
            };
            match state {
                Some(state) => state.indexes.lexical.resolve_body(body, body_ts),
                None => ResolvedDoc::unresolved(self.lexical.of(tenant).document(body, body_ts)),
            }
        };
        Some(Box::new(PreparedBatch::analyzed(batch, &analyze)))
    }

    fn committed(&self, base_seq: SeqNo, batch: &WriteBatch, prepared: Option<Prepared>) {
        let mut prepared = PreparedBatch::from_prepared(prepared);
        // The batch's ops by tenant, in order of first appearance (`at`: where each tenant's
        // ops are); a tenant's name is copied once per batch, not once per op.
        let mut by_tenant: Vec<(String, Vec<tenant::CommittedOp<'_>>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let drops = self.drops.read().clone();
        for (i, op) in batch.ops().iter().enumerate() {
            if drops.hides(&op.key, op.ts) {
                continue;
            }
            let (key, body) = match prepared.as_mut().and_then(|p| p.take(i)) {
                Some(PreparedOp { key, body }) => (Ok(key), body),
                None => (CellKey::decode(&op.key), None),
            };
            match key {
                Ok(key) => {
                    let group = match by_tenant.last() {
                        Some((last, _)) if *last == key.tenant => by_tenant.len() - 1,
                        _ => match at.get(&key.tenant) {
                            Some(&group) => group,
                            None => {
                                at.insert(key.tenant.clone(), by_tenant.len());
                                by_tenant.push((key.tenant.clone(), Vec::new()));
                                by_tenant.len() - 1
                            }
                        },
                    };
                    by_tenant[group].1.push(tenant::CommittedOp {
                        seq: base_seq + i as u64,
                        key,
                        ts: op.ts,
                        value: op.value.as_deref(),
                        body,
                    })
                }
                Err(e) => {
                    self.apply_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "committed cell with a malformed key; not indexed");
                }
            }
        }
        for (tenant, ops) in by_tenant {
            let result = self
                .tenant_or_create(&tenant)
                .and_then(|t| t.indexes.apply_batch(ops.into_iter()));
            if let Err(e) = result {
                self.apply_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "indexing a committed batch failed; the data is stored but not indexed");
            }
        }
        self.applied_seq
            .fetch_max(base_seq + batch.len() as u64 - 1, Ordering::AcqRel);
    }
}

/// What [`UnifiedStore::close`] could not do without losing anything.
#[derive(Debug, Default)]
pub struct Closed {
    /// The final index dump failed (the next open catches the indexes up from the WAL).
    pub dump_error: Option<Error>,
}

/// The storage engine with its indexes.
#[derive(Debug)]
pub struct UnifiedStore {
    engine: Arc<Engine>,
    indexes: Arc<Indexes>,
    index_dir: PathBuf,
    options: StoreOptions,
    indexer: Mutex<Option<indexer::IndexerHandle>>,
    recovery: Mutex<Option<IndexRecovery>>,
}

/// The engine's subdirectory of a store directory.
const ENGINE_SUBDIR: &str = "lsm";
/// The index dumps' subdirectory of a store directory.
const INDEX_SUBDIR: &str = "index";

/// Writes a dump of every tenant's indexes into `index_dir`, covering everything applied so far;
/// returns the covered sequence number and the number of tenants dumped.
fn write_index_dump(indexes: &Indexes, index_dir: &Path) -> Result<(SeqNo, usize)> {
    let covered = indexes.applied_seq.load(Ordering::Acquire);
    let tenants = indexes.all();
    let views: Vec<(String, &TenantIndexes)> = tenants
        .iter()
        .map(|(n, s)| (n.clone(), &s.indexes))
        .collect();
    persist::dump(index_dir, covered, &views)?;
    Ok((covered, views.len()))
}

/// Dumps every tenant's indexes, covering everything applied so far, then releases the WAL.
fn dump_indexes(indexes: &Indexes, engine: &Engine, index_dir: &Path) -> Result<SeqNo> {
    let _one_at_a_time = indexes.dumping.lock();
    let (covered, _) = write_index_dump(indexes, index_dir)?;
    engine.pin_wal(covered)?;
    Ok(covered)
}

impl UnifiedStore {
    /// Whether `dir` holds a store's storage engine (a database was created there), without
    /// opening it.
    pub fn holds_data(dir: &Path) -> bool {
        dir.join(ENGINE_SUBDIR)
            .join(allidb_storage::manifest::CURRENT)
            .exists()
    }

    /// Opens the store in `dir` (`dir/lsm`: the engine, `dir/index`: index dumps).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        options.vectors.validate()?;
        options.lexical.validate()?;
        let dir = dir.as_ref();
        let index_dir = dir.join(INDEX_SUBDIR);
        let indexes = Arc::new(Indexes::new(options.vectors, options.lexical.clone()));
        let loaded = match persist::load(&index_dir, |_| options.vectors, &options.lexical) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "index dump unusable; rebuilding the indexes from storage");
                None
            }
        };
        let covered = loaded.as_ref().map(|l| l.covered);
        let reanalyze = loaded.as_ref().map_or(Vec::new(), |l| l.reanalyze.clone());
        if let Some(loaded) = loaded {
            let mut tenants = indexes.tenants.write();
            for (tenant, t) in loaded.tenants {
                tenants.insert(tenant, TenantState::new(t, options.vectors.dimension));
            }
        }
        let engine_options = allidb_storage::Options {
            retain_wal_until_pinned: true,
            ..options.engine.clone()
        };
        let observer: Arc<dyn CommitObserver> = indexes.clone();
        let engine = Arc::new(Engine::open_observed(
            Arc::new(OsFileSystem),
            &dir.join(ENGINE_SUBDIR),
            engine_options,
            Some(observer),
        )?);
        let store = Self {
            engine,
            indexes,
            index_dir,
            options,
            indexer: Mutex::new(None),
            recovery: Mutex::new(None),
        };
        let recovery = store.catch_up(covered)?;
        store.reanalyze(&recovery, &reanalyze)?;
        *store.recovery.lock() = Some(recovery);
        if let Some(covered) = covered {
            // The loaded dump is complete on disk: the flushed segments it covers are not
            // needed by any restart (a crash after a dump, before its WAL deletion, left them).
            store.engine.pin_wal(covered)?;
        }
        // What the catch-up read from the WAL (or a rebuild) is dumped by the first due dump,
        // which then releases the WAL it read.
        let handle = indexer::IndexerHandle::start(
            store.indexes.clone(),
            store.engine.clone(),
            store.index_dir.clone(),
            store.options.clone(),
            covered.unwrap_or(0),
        )?;
        *store.indexer.lock() = Some(handle);
        Ok(store)
    }

    /// How the open brought the indexes up to the engine.
    pub fn recovery(&self) -> Option<IndexRecovery> {
        *self.recovery.lock()
    }

    /// The storage engine (stats, flush, compaction).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Moves every pending vector into HNSW now (bulk loads, benchmarks, tests).
    pub fn index_all_pending(&self) {
        for (_, t) in self.indexes.all() {
            t.indexes.vectors.index_pending(usize::MAX);
        }
    }

    /// Dumps the indexes now and lets the engine release the WAL they cover.
    pub fn dump_indexes(&self) -> Result<SeqNo> {
        dump_indexes(&self.indexes, &self.engine, &self.index_dir)
    }

    /// Holds the indexer's periodic dump (the one [`StoreOptions::dump_interval`] asks for)
    /// until the returned guard is dropped: for a bulk receive, such as a range stream, whose
    /// writes would make a dump taken in its middle stale by its end while the dump's CPU
    /// slows the receive itself. The dump [`StoreOptions::dump_wal_bytes`] asks for still
    /// happens, so the WAL a restart reads stays bounded; explicit dumps (close, checkpoints,
    /// tenant drops) are not held. Holds nest: the dump waits until the last one is dropped,
    /// and is due at once then if the interval passed.
    pub fn hold_periodic_dumps(&self) -> DumpHold {
        self.indexes.dump_holds.fetch_add(1, Ordering::AcqRel);
        DumpHold {
            indexes: Arc::clone(&self.indexes),
        }
    }

    /// Stops the indexer, dumps the indexes and closes the engine (also done on drop).
    ///
    /// A failed dump does not stop the close: the engine keeps the WAL the last dump does not
    /// cover, and the next open catches the indexes up from it, so nothing is lost. It is
    /// logged and returned in [`Closed::dump_error`]; an error is the engine's close failing.
    pub fn close(&self) -> Result<Closed> {
        let mut closed = Closed::default();
        if let Some(indexer) = self.indexer.lock().take() {
            indexer.stop();
            if let Err(error) = self.dump_indexes() {
                tracing::error!(%error, "the index dump at close failed; the next start catches the indexes up from the WAL");
                closed.dump_error = Some(error);
            }
        }
        self.engine.close()?;
        Ok(closed)
    }
}

/// Holds a store's periodic index dump while it lives ([`UnifiedStore::hold_periodic_dumps`]).
#[derive(Debug)]
#[must_use = "the periodic dump is held only while the guard lives"]
pub struct DumpHold {
    indexes: Arc<Indexes>,
}

impl Drop for DumpHold {
    fn drop(&mut self) {
        self.indexes.dump_holds.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for UnifiedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}
