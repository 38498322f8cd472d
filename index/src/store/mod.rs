//! The node-local unified store (DESIGN.md §4): the storage engine plus, per tenant, a vector
//! index, a graph index and a table of entity facts, kept in step with every write.
//!
//! * **Writes** go to the engine; the engine hands every committed batch, in commit order and
//!   before the writer is acknowledged, to [`Indexes`] (a [`CommitObserver`]), which updates the
//!   tenant's indexes. A write is therefore searchable as soon as it is acknowledged: new vectors
//!   sit in the vector index's exact-scan tail until the background indexer moves them into HNSW.
//! * **Restart**: the indexes are loaded from their last dump and caught up from the engine's
//!   retained WAL (`changes_since`); a missing or damaged dump, or a WAL that no longer reaches
//!   back far enough, means a full rebuild from the engine (logged, never a failed start).
//!   How it went is [`UnifiedStore::recovery`].
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
mod reanalyze;
mod ring_reads;
mod slot_ordinals;
mod tail_room;
mod tenant;
#[cfg(test)]
mod wal_tests;

pub use answer::{QueryAnswer, WalkContext};
pub use checkpoint::StoreCheckpoint;
pub use facts::{EntityMeta, Filter, MetaSubject};
pub use planning::PlanReport;
pub use ring_reads::{
    HopNode, HopRequest, SeedCandidate, SeedCandidates, StepRequest, TextCandidate, TextSearch,
};
pub use tail_room::BulkRoom;
pub use tenant::TenantIndexes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allidb_storage::batch::{Prepared, WriteBatch};
use allidb_storage::cell::{Edge, EdgeRef, Entity, EntityWrite};
use allidb_storage::fs::OsFileSystem;
use allidb_storage::hlc::wall_nanos;
use allidb_storage::key::CellKey;
use allidb_storage::partition::PartitionState;
use allidb_storage::tenant_drops::TenantDrops;
use allidb_storage::{CommitObserver, Durability, Engine, SeqNo, Timestamp};
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::filter::{AttrType, Expr};
use crate::graph::{PathStep, Reached, TraversalOptions, Truncation};
use crate::lexical::{DocTerms, LexicalHit, LexicalSettings};
use crate::query::{QueryPlan, ScoredResult};
use crate::vector::{Metric, VectorIndexOptions};
use prepared::{PreparedBatch, PreparedOp};

/// Most vectors a tenant's exact-scan tail may hold for its queries to count as light
/// ([`UnifiedStore::query_is_light`]): scanning them takes about 0.75 ms (a 20,000-vector tail
/// of 384-d vectors measured 7.3 ms in process).
pub const LIGHT_QUERY_MAX_TAIL: usize = 2_048;

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
        Some(Box::new(PreparedBatch::of(batch, &self.lexical)))
    }

    fn committed(&self, base_seq: SeqNo, batch: &WriteBatch, prepared: Option<Prepared>) {
        let mut prepared = PreparedBatch::from_prepared(prepared);
        let mut by_tenant: HashMap<String, Vec<tenant::CommittedOp<'_>>> = HashMap::new();
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
                    by_tenant
                        .entry(key.tenant.clone())
                        .or_default()
                        .push(tenant::CommittedOp {
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

/// How [`UnifiedStore::open`] brought the indexes up to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexRecovery {
    /// Loaded from the dump covering writes up to `covered`, then caught up from the retained
    /// WAL with `entities` changed entities (up to `upto`).
    CaughtUp {
        /// What the dump covered.
        covered: SeqNo,
        /// The engine's last sequence number after the catch-up.
        upto: SeqNo,
        /// Entities re-read from the engine.
        entities: usize,
    },
    /// Rebuilt from every stored entity (no usable dump, or the WAL no longer reached it).
    Rebuilt {
        /// Entities indexed.
        entities: usize,
    },
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

/// Partitions the restart catch-up reads at once (in parallel) before indexing them.
const CATCH_UP_CHUNK: usize = 1024;

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

/// The partition state of a stored live entity (what a rebuild indexes; the body's own
/// timestamp, which the read model does not carry and the indexes do not use, stays 0).
fn stored_state(entity: Entity) -> PartitionState {
    PartitionState {
        version_ts: entity.version_ts,
        body: Some(entity.body),
        out_edges: entity.out_edges,
        in_edges: entity.in_edges,
        ..PartitionState::default()
    }
}

/// What a tenant drop removed from this node's indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantDropped {
    /// Cells of the tenant at or below this timestamp are gone.
    pub ts: Timestamp,
    /// Entities of the tenant the drop removed here (not those written after it).
    pub entities: usize,
    /// Vectors of the tenant the drop removed here.
    pub vectors: usize,
}

/// What this node holds of one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantStats {
    /// The tenant id.
    pub tenant: String,
    /// Live entities.
    pub entities: usize,
    /// Live vectors (entities with an embedding).
    pub vectors: usize,
    /// The dimension its vectors have (`None`: not fixed, no vector yet).
    pub dimension: Option<usize>,
    /// The similarity metric of its vector index.
    pub metric: Metric,
    /// Bytes of its live cells (keys and values, before compression).
    pub bytes: u64,
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

    /// Brings loaded indexes up to the engine (or rebuilds them all).
    fn catch_up(&self, covered: Option<SeqNo>) -> Result<IndexRecovery> {
        let start = std::time::Instant::now();
        let drops = self.engine.tenant_drops();
        *self.indexes.drops.write() = drops.clone();
        if let Some(covered) = covered {
            // A dump that may predate a tenant's drop (a crash before the drop's own dump)
            // holds what the drop removed: that tenant is rebuilt from storage instead.
            for (tenant, drop) in drops.iter() {
                if drop.seq >= covered {
                    let tenant = String::from_utf8_lossy(tenant);
                    self.rebuild_tenant(&tenant)?;
                }
            }
            match self.engine.changes_since(covered)? {
                Some((changed, upto)) => {
                    // The partitions are read on every core (the restart time is mostly these
                    // reads), a bounded chunk at a time, and applied in order.
                    for chunk in changed.chunks(CATCH_UP_CHUNK) {
                        let states = chunk
                            .par_iter()
                            .map(|c| self.engine.read_partition(&c.tenant, &c.entity_id))
                            .collect::<allidb_storage::Result<Vec<_>>>()?;
                        for (c, state) in chunk.iter().zip(&states) {
                            self.indexes
                                .apply_state(&c.tenant, &c.entity_id, state, upto)?;
                        }
                    }
                    self.indexes.applied_seq.fetch_max(upto, Ordering::AcqRel);
                    tracing::info!(from = covered, to = upto, entities = changed.len(), elapsed = ?start.elapsed(),
                        "indexes loaded and caught up from the WAL");
                    return Ok(IndexRecovery::CaughtUp {
                        covered,
                        upto,
                        entities: changed.len(),
                    });
                }
                None => tracing::warn!(
                    covered,
                    "the WAL no longer reaches back to the index dump; rebuilding"
                ),
            }
        }
        self.indexes.tenants.write().clear();
        let (entities, snapshot) = self.engine.all_entities();
        let mut count = 0usize;
        for entity in entities {
            let entity = entity?;
            let (tenant, id) = (entity.tenant.clone(), entity.id.clone());
            self.indexes
                .apply_state(&tenant, &id, &stored_state(entity), snapshot)?;
            count += 1;
        }
        self.indexes
            .applied_seq
            .fetch_max(snapshot, Ordering::AcqRel);
        tracing::info!(entities = count, elapsed = ?start.elapsed(), "indexes rebuilt from storage");
        Ok(IndexRecovery::Rebuilt { entities: count })
    }

    /// Replaces `tenant`'s indexes by ones built from its stored entities.
    fn rebuild_tenant(&self, tenant: &str) -> Result<()> {
        let rebuilt = self.tenant_from_storage(tenant)?;
        let mut tenants = self.indexes.tenants.write();
        match rebuilt {
            Some(state) => tenants.insert(tenant.to_owned(), state),
            None => tenants.remove(tenant),
        };
        Ok(())
    }

    /// Indexes of `tenant` built from its live stored entities (`None`: it has none). Touches
    /// no shared index state, so callers may hold the tenants lock.
    fn tenant_from_storage(&self, tenant: &str) -> Result<Option<Arc<TenantState>>> {
        let snapshot = self.engine.last_seq();
        let mut state = None;
        for entity in self.engine.scan(tenant, None, None)? {
            let entity = entity?;
            let state = match &mut state {
                Some(state) => state,
                None => state.insert(TenantState::new(
                    TenantIndexes::new(self.indexes.options, self.indexes.lexical.of(tenant))?,
                    self.indexes.options.dimension,
                )),
            };
            let id = entity.id.clone();
            state
                .indexes
                .apply_state(&id, &stored_state(entity), snapshot)?;
        }
        Ok(state)
    }

    /// Drops `tenant`: every entity, edge, chunk and vector written to it up to now, in one
    /// durable step (the engine's tenant drop), then its indexes, then its index files (the
    /// indexes are dumped again at once). Writes that come after it (later timestamps) stay.
    /// A tenant that never existed is dropped all the same (there may be replicas of it
    /// elsewhere); the answer says what this node held of it.
    pub fn drop_tenant(&self, tenant: &str) -> Result<TenantDropped> {
        self.drop_tenant_with(tenant, None)
    }

    /// [`Self::drop_tenant`] at a given timestamp (a coordinator's, on a ring, which may arrive
    /// late or twice): cells written at or before `ts` go, later ones stay and stay indexed.
    /// A drop not newer than the tenant's last one changes nothing (and reports nothing
    /// removed).
    pub fn drop_tenant_at(&self, tenant: &str, ts: Timestamp) -> Result<TenantDropped> {
        self.drop_tenant_with(tenant, Some(ts))
    }

    /// A drop at `ts`, or at this node's clock when `None`.
    fn drop_tenant_with(&self, tenant: &str, ts: Option<Timestamp>) -> Result<TenantDropped> {
        // Held across the engine's drop and the swap, so that no commit is indexed in between
        // into the indexes about to be removed (commits wait for it; queries too, briefly).
        let mut tenants = self.indexes.tenants.write();
        // Read under the lock: every commit stamped later is indexed after the swap.
        let ts = ts.unwrap_or_else(|| self.engine.clock().now());
        if let Some(last) = self.engine.tenant_drops().get(tenant)
            && last.ts >= ts
        {
            return Ok(TenantDropped {
                ts: last.ts,
                entities: 0,
                vectors: 0,
            });
        }
        let drop = self.engine.drop_tenant(tenant, ts)?;
        *self.indexes.drops.write() = self.engine.tenant_drops();
        let removed = tenants.remove(tenant);
        // A replica may hold writes made after the drop (they reached it first): those stay,
        // so the tenant is indexed again from what storage still shows of it.
        let newer_kept = removed.as_ref().is_some_and(|state| {
            state
                .indexes
                .facts
                .read()
                .iter()
                .any(|(_, meta)| meta.body_ts > drop.ts)
        });
        let kept = match newer_kept {
            true => self.tenant_from_storage(tenant)?,
            false => None,
        };
        let count = |state: &Option<Arc<TenantState>>| {
            state.as_ref().map_or((0, 0), |s| {
                (s.indexes.facts.read().len(), s.indexes.vectors.len())
            })
        };
        let (had, still) = (count(&removed), count(&kept));
        if let Some(state) = kept {
            tenants.insert(tenant.to_owned(), state);
        }
        std::mem::drop(tenants);
        let dropped = TenantDropped {
            ts: drop.ts,
            entities: had.0.saturating_sub(still.0),
            vectors: had.1.saturating_sub(still.1),
        };
        std::mem::drop(removed);
        // The drop is done (durable, hidden, indexes gone): a failed dump must not report it
        // as failed. The periodic dump retries; until then the old dump still holds the
        // tenant's index files, and an open rebuilds the tenant instead of loading them.
        if let Err(error) = self.dump_indexes() {
            tracing::warn!(%error, tenant, "tenant dropped, but the index dump that removes its index files failed; the next periodic dump retries");
        }
        Ok(dropped)
    }

    /// What this node holds of every tenant with indexes, in tenant order. Counts come from the
    /// indexes; `bytes` from one scan of each tenant's cells.
    pub fn tenants(&self) -> Result<Vec<TenantStats>> {
        self.indexes
            .all()
            .into_iter()
            .map(|(name, state)| self.stats_of(name, &state))
            .collect()
    }

    /// What this node holds of `tenant` (`None`: nothing).
    pub fn tenant_stats(&self, tenant: &str) -> Result<Option<TenantStats>> {
        allidb_storage::key::validate_tenant(tenant)?;
        self.indexes
            .tenant(tenant)
            .map(|state| self.stats_of(tenant.to_owned(), &state))
            .transpose()
    }

    /// What this node holds of every tenant with indexes (of `tenant` only, when given), in
    /// tenant order, counting only the entities `keep(tenant, entity_id)` selects: their live
    /// entities, live vectors and the bytes of their live cells (a ring's coordinator counts
    /// each token range once this way, `keep` selecting the ranges it asked this node for). A
    /// tenant is listed even when `keep` selects none of its entities.
    pub fn tenants_where(
        &self,
        tenant: Option<&str>,
        keep: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Vec<TenantStats>> {
        if let Some(tenant) = tenant {
            allidb_storage::key::validate_tenant(tenant)?;
        }
        self.indexes
            .all()
            .into_iter()
            .filter(|(name, _)| tenant.is_none_or(|t| t == name))
            .map(|(name, state)| {
                let kept = |id: &str| keep(&name, id);
                let entities = state
                    .indexes
                    .facts
                    .read()
                    .iter()
                    .filter(|(id, _)| kept(id))
                    .count();
                let mut bytes = 0u64;
                for partition in self.engine.partitions(Some(&name))? {
                    let partition = partition?;
                    if kept(&partition.entity_id) {
                        bytes += allidb_storage::partition::live_bytes(&partition.cells);
                    }
                }
                Ok(TenantStats {
                    entities,
                    vectors: state.indexes.vectors.count_where(&kept),
                    dimension: state.dimension(),
                    metric: self.options.vectors.metric,
                    bytes,
                    tenant: name.clone(),
                })
            })
            .collect()
    }

    fn stats_of(&self, tenant: String, state: &TenantState) -> Result<TenantStats> {
        let bytes = self.engine.tenant_bytes(&tenant)?;
        Ok(TenantStats {
            entities: state.indexes.facts.read().len(),
            vectors: state.indexes.vectors.len(),
            dimension: state.dimension(),
            metric: self.options.vectors.metric,
            bytes,
            tenant,
        })
    }

    /// The storage engine (stats, flush, compaction).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Number of committed batches whose indexing failed since start.
    pub fn index_apply_errors(&self) -> u64 {
        self.indexes.apply_errors.load(Ordering::Relaxed)
    }

    /// Entities, over every tenant, whose stored vector the index refused (its dimension
    /// differs from its tenant's index: replicas that diverged), for metrics.
    pub fn unindexed_vectors(&self) -> usize {
        self.indexes
            .all()
            .iter()
            .map(|(_, s)| s.indexes.unindexed_len())
            .sum()
    }

    /// Per-tenant vector count, pending tail and stale ratio (for metrics).
    pub fn index_sizes(&self) -> Vec<(String, usize, usize, f64)> {
        self.indexes
            .all()
            .into_iter()
            .map(|(t, s)| {
                (
                    t,
                    s.indexes.vectors.len(),
                    s.indexes.vectors.pending_len(),
                    s.indexes.vectors.stale_ratio(),
                )
            })
            .collect()
    }

    /// Replaces entities (see [`Engine::put_entities`]) after [`Self::prepare_put`].
    pub fn put_entities(
        &self,
        tenant: &str,
        mut writes: Vec<EntityWrite>,
        durability: Durability,
    ) -> Result<SeqNo> {
        self.prepare_put(tenant, &mut writes)?;
        Ok(self.engine.put_entities(tenant, writes, durability)?)
    }

    /// What every put of entities goes through before its cells are planned, here or by a
    /// cluster coordinator: the vectors are validated against the tenant's dimension (the first
    /// vector a tenant accepts fixes it), `created_at`/`updated_at` are set to now
    /// (`created_at` is then kept from the stored entity), and the caller is slowed while the
    /// tenant's not-yet-indexed tail is full.
    pub fn prepare_put(&self, tenant: &str, writes: &mut [EntityWrite]) -> Result<()> {
        allidb_storage::key::validate_tenant(tenant)?;
        let state = self.indexes.tenant_or_create(tenant)?;
        let now = wall_nanos();
        // One request's vectors share one dimension.
        let mut batch_dimension = None;
        for w in writes.iter_mut() {
            for e in &w.body.embeddings {
                if e.vector.is_empty() {
                    return Err(Error::invalid(format!(
                        "entity {}: embedding version {} is empty",
                        w.id, e.version
                    )));
                }
                if let Some(bad) = e.vector.iter().position(|x| !x.is_finite()) {
                    return Err(Error::invalid(format!(
                        "entity {}: embedding version {} has a non-finite value at index {bad}",
                        w.id, e.version
                    )));
                }
            }
            if let Some(e) = w.body.current_embedding() {
                let got = e.vector.len();
                if let Some(first) = batch_dimension
                    && first != got
                {
                    return Err(Error::DimensionMismatch {
                        expected: first,
                        got,
                    });
                }
                batch_dimension = Some(got);
                let mut dimension = state.dimension.lock();
                // A tenant rebuilt from storage knows its dimension from its vector index.
                match dimension.or_else(|| state.indexes.vectors.dimension()) {
                    Some(expected)
                        if expected != got
                            && (self.options.vectors.dimension.is_some()
                                || !state.indexes.vectors.is_empty()) =>
                    {
                        return Err(Error::invalid(format!(
                            "entity {}: vector dimension mismatch: expected {expected}, got {got}; \
                             tenant {tenant:?} holds {expected}-dimensional vectors: to store \
                             {got}-dimensional ones, drop the tenant (`allidb tenant drop \
                             {tenant}` erases all its data) or delete its entities with vectors \
                             first (a tenant without vectors takes the next vector's dimension)",
                            w.id
                        )));
                    }
                    Some(expected) if expected == got => {}
                    _ => *dimension = Some(got),
                }
            }
            if !w.body.importance.is_finite() {
                return Err(Error::invalid(format!(
                    "entity {}: importance must be finite",
                    w.id
                )));
            }
            w.body.created_at_nanos = now;
            w.body.updated_at_nanos = now;
            allidb_storage::provenance::normalise_sources(w)?;
        }
        check_attribute_types(tenant, &state.indexes.facts.read(), writes)?;
        if writes.iter().any(|w| w.body.current_embedding().is_some()) {
            tail_room::wait_for_tail_room(
                tenant,
                &state.indexes.vectors,
                self.options.max_tail_wait,
            )?;
        }
        Ok(())
    }

    /// Deletes an entity; returns whether it existed.
    pub fn delete_entity(&self, tenant: &str, id: &str, durability: Durability) -> Result<bool> {
        Ok(self.engine.delete_entity(tenant, id, durability)?)
    }

    /// Adds edges (both cells of each).
    pub fn add_edges(&self, tenant: &str, edges: &[Edge], durability: Durability) -> Result<SeqNo> {
        Ok(self.engine.add_edges(tenant, edges, durability)?)
    }

    /// Removes edges.
    pub fn remove_edges(
        &self,
        tenant: &str,
        edges: &[EdgeRef],
        durability: Durability,
    ) -> Result<SeqNo> {
        Ok(self.engine.remove_edges(tenant, edges, durability)?)
    }

    /// One live entity (an expired one is not returned, even before the expiry sweep).
    pub fn get_entity(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        let now = wall_nanos();
        Ok(self
            .engine
            .get_entity(tenant, id)?
            .filter(|e| !e.body.expired_at(now)))
    }

    /// Up to `limit` live entities with `start <= id < end`, in id order, from one snapshot.
    pub fn scan(
        &self,
        tenant: &str,
        start: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>> {
        let now = wall_nanos();
        let iter = self.engine.scan(tenant, start, end)?;
        Ok(iter
            .filter(|e| e.as_ref().map_or(true, |e| !e.body.expired_at(now)))
            .take(limit)
            .collect::<allidb_storage::Result<Vec<_>>>()?)
    }

    /// Checks `filter` against `tenant`'s attribute types (what a scan or a traversal does
    /// before filtering what it reads; a query checks its own).
    pub fn check_filter(&self, tenant: &str, filter: &Filter) -> Result<()> {
        match self.indexes.tenant(tenant) {
            Some(state) => check_filter(&state.indexes.facts.read(), filter),
            None => Ok(()),
        }
    }

    /// The indexes of `tenant` for a query by `vector` (`None`: the tenant has none), once
    /// the vector is checked: not empty (unless `!vector_needed`: a text-only query), finite,
    /// of the tenant's dimension.
    fn query_tenant(
        &self,
        tenant: &str,
        vector: &[f32],
        vector_needed: bool,
    ) -> Result<Option<Arc<TenantState>>> {
        allidb_storage::key::validate_tenant(tenant)?;
        if vector.is_empty() && vector_needed {
            return Err(Error::invalid("query vector is empty"));
        }
        if let Some(bad) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "query vector has a non-finite value at index {bad}"
            )));
        }
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok(None);
        };
        if let Some(expected) = *state.dimension.lock()
            && !vector.is_empty()
            && expected != vector.len()
        {
            return Err(Error::DimensionMismatch {
                expected,
                got: vector.len(),
            });
        }
        Ok(Some(state))
    }

    /// `reached` nodes with their stored entities when `include_entities` (a node deleted
    /// meanwhile is dropped).
    fn with_entities(
        &self,
        tenant: &str,
        reached: Vec<Reached>,
        include_entities: bool,
    ) -> Result<Vec<TraverseHit>> {
        let mut hits = Vec::with_capacity(reached.len());
        for reached in reached {
            let entity = if include_entities {
                match self.get_entity(tenant, &reached.entity_id)? {
                    Some(e) => Some(e),
                    None => continue,
                }
            } else {
                None
            };
            hits.push(TraverseHit { reached, entity });
        }
        Ok(hits)
    }

    /// True when `request` only reads in-memory indexes and is cheap: it returns no entities
    /// (which are read from the engine, possibly from disk) and `tenant`'s exact-scan tail
    /// holds at most [`LIGHT_QUERY_MAX_TAIL`] vectors. The rest of a query is bounded by its
    /// plan (HNSW breadth, expansion node budget, exact filter scans of a few thousand
    /// vectors), so such a query takes about a millisecond at most and a caller may run it on an
    /// async worker thread instead of handing it to a blocking one.
    pub fn query_is_light(&self, tenant: &str, request: &QueryRequest) -> bool {
        !request.include_entities && self.index_reads_are_light(tenant)
    }

    /// True when a read of `tenant`'s in-memory indexes alone (a query answer, a ring's
    /// candidate search or hop) is light in the sense of [`UnifiedStore::query_is_light`]:
    /// its exact-scan tail holds at most [`LIGHT_QUERY_MAX_TAIL`] vectors.
    pub fn index_reads_are_light(&self, tenant: &str) -> bool {
        self.indexes
            .tenant(tenant)
            .is_none_or(|t| t.indexes.vectors.pending_len() <= LIGHT_QUERY_MAX_TAIL)
    }

    /// Graph-only traversal from `starts`; only live entities are returned, with the limits
    /// that cut the walk.
    pub fn traverse(
        &self,
        tenant: &str,
        starts: &[String],
        options: &TraversalOptions,
        include_entities: bool,
    ) -> Result<(Vec<TraverseHit>, Truncation)> {
        allidb_storage::key::validate_tenant(tenant)?;
        options.validate()?;
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok((Vec::new(), Truncation::default()));
        };
        let t = &state.indexes;
        let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
        let (reached, truncation) = {
            let facts = t.facts.read();
            let walk = t.graph.walk(&starts, options)?;
            let reached: Vec<Reached> = walk
                .reached
                .into_iter()
                .filter(|r| facts.get(&r.entity_id).is_some())
                .collect();
            (reached, walk.truncation)
        };
        Ok((
            self.with_entities(tenant, reached, include_entities)?,
            truncation,
        ))
    }

    /// The best `n` entities of `tenant` for `text` by BM25 alone (no filter, no graph): the
    /// lexical index's own answer, for diagnostics, benchmarks and tests. A text without a
    /// searchable word is `InvalidArgument`.
    pub fn lexical_search(&self, tenant: &str, text: &str, n: usize) -> Result<Vec<LexicalHit>> {
        allidb_storage::key::validate_tenant(tenant)?;
        let terms = self.options.lexical.of(tenant).query_terms(text)?;
        Ok(self
            .indexes
            .tenant(tenant)
            .map(|state| {
                let facts = state.indexes.facts.read();
                let live = |id: &str| facts.get(id).is_some();
                let allows: Option<&dyn Fn(&str) -> bool> =
                    facts.has_expired(wall_nanos()).then_some(&live);
                state.indexes.lexical.search(&terms, n, allows, None)
            })
            .unwrap_or_default())
    }

    /// Every analyzed document of `tenant`'s lexical index, in entity order (consistency
    /// checks: after any crash it equals a rebuild's).
    pub fn lexical_documents(&self, tenant: &str) -> Vec<(String, DocTerms)> {
        self.indexes
            .tenant(tenant)
            .map(|state| state.indexes.lexical.export())
            .unwrap_or_default()
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

/// Refuses a write whose attribute gives a key another type family than the tenant's live
/// entities give it (or than an earlier entity of the same request), naming the entity, the
/// key and both types. The entity being replaced does not count against its own new value.
/// A key in both the untyped and the typed map, or a float that is not finite, is refused too.
fn check_attribute_types(
    tenant: &str,
    facts: &facts::FactTable,
    writes: &[EntityWrite],
) -> Result<()> {
    let mut in_request: HashMap<&str, (AttrType, &str)> = HashMap::new();
    for w in writes {
        let own = facts.get(&w.id);
        let untyped = w.body.attributes.keys().map(|k| (k, AttrType::String));
        let typed = w
            .body
            .typed_attributes
            .iter()
            .map(|(k, v)| (k, AttrType::of(v)));
        for (key, family) in untyped.chain(typed) {
            if w.body.attributes.contains_key(key) && w.body.typed_attributes.contains_key(key) {
                return Err(Error::invalid(format!(
                    "entity {}: attribute {key:?} is both in attributes and in typed_attributes",
                    w.id
                )));
            }
            if let Some(allidb_storage::cell::AttributeValue::Float(f)) =
                w.body.typed_attributes.get(key)
                && !f.is_finite()
            {
                return Err(Error::invalid(format!(
                    "entity {}: attribute {key:?} must be finite, got {f}",
                    w.id
                )));
            }
            for (held, count) in facts.payload().key_types(key) {
                let own_holds = own.is_some_and(|m| {
                    m.attributes
                        .get(key)
                        .is_some_and(|v| AttrType::of(v) == held)
                });
                if held == family || (count == 1 && own_holds) {
                    continue;
                }
                return Err(Error::invalid(format!(
                    "entity {}: attribute {key:?} is a {} but tenant {tenant:?} holds it as {} \
                     ({count} entities); a key keeps one type (integers and floats are both \
                     numbers) while any live entity holds it",
                    w.id,
                    family.name(),
                    held.name()
                )));
            }
            match in_request.get(key.as_str()) {
                Some((earlier, other)) if *earlier != family => {
                    return Err(Error::invalid(format!(
                        "entity {}: attribute {key:?} is a {} but entity {other} of the same \
                         request gives it as {}",
                        w.id,
                        family.name(),
                        earlier.name()
                    )));
                }
                _ => {
                    in_request.insert(key, (family, &w.id));
                }
            }
        }
    }
    Ok(())
}

/// Checks `filter`'s expression against the attribute types of the tenant whose facts are
/// `facts` (the request field is `where`): `InvalidArgument` naming the condition's path.
pub fn check_filter(facts: &facts::FactTable, filter: &Filter) -> Result<()> {
    match &filter.expression {
        Some(expression) => check_expression(facts, expression),
        None => Ok(()),
    }
}

fn check_expression(facts: &facts::FactTable, expression: &Expr) -> Result<()> {
    let types = |key: &str| -> Option<AttrType> { facts.payload().key_type(key) };
    expression.check("where", &types)
}

/// The recorded `edges` of a walk of `walked` nodes whose both ends are among `nodes` (what a
/// query context returns once removed nodes are gone).
pub fn edges_between(nodes: &[TraverseHit], walked: usize, edges: Vec<PathStep>) -> Vec<PathStep> {
    // Every recorded edge joins two walked nodes: only a removed node removes edges.
    if nodes.len() == walked {
        return edges;
    }
    let kept: std::collections::HashSet<&str> =
        nodes.iter().map(|n| &*n.reached.entity_id).collect();
    edges
        .into_iter()
        .filter(|e| kept.contains(&*e.from) && kept.contains(&*e.to))
        .collect()
}

impl Drop for UnifiedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}
