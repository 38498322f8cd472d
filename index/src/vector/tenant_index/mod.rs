//! [`VectorIndex`]: one tenant's searchable vectors, keyed by entity id.
//!
//! Owns: the entity id <-> internal id map, the freshness tail (vectors written but not yet in
//! the ANN engine, with their prepared copies), the current engine (which holds the only copy of
//! every indexed vector), and the index's dump files: `slots.bin` (laid out by `slots_file.rs`)
//! and the engine's directory `engine/`.
//!
//! Invariants:
//! * Dimension and metric are fixed (by options, or by the first vector and again by the next
//!   one whenever no vector is live); every stored vector is finite and prepared by the metric.
//! * Internal ids are never reused: an updated vector gets a fresh id, and the old one becomes
//!   stale. An id is *live* iff it is in `slots`; every engine result whose id is not live is
//!   hidden, so deletes and updates are visible at once.
//! * Every live id is either in the engine (`indexed`) or in `pending` (scanned exactly by every
//!   query), never lost in between: a write is searchable as soon as `upsert` returns.
//! * One in-memory copy per live vector: a slot holds its vector iff its id is pending; once
//!   the engine holds it, exact scans, similarities and rebuilds read it from the engine
//!   ([`AnnEngine::visit_vectors`]).
//! * Queries never wait for an engine build: rebuilds and the indexer insert outside the state
//!   lock and take it only to publish.
//! * Results are ordered by similarity (see [`Metric`]) descending, ties by entity id ascending.
//!
//! Never: block a query on a rebuild, return a stale or deleted entity, panic on caller input.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::vector::engine::{AnnEngine, AnnEngineFactory, EngineParams};
use crate::vector::flat_hnsw::{DistanceFn, FlatHnswFactory, distance_fn};
use crate::vector::metric::Metric;
use slots_file::decode_slots;

mod memo;
mod search;
mod slots_file;

pub use memo::FilterMemo;
pub use search::{TWO_HOP_MIN_SELECTIVITY, TWO_HOP_NARROW_SELECTIVITY};

/// Options of one tenant's vector index. Every field has a working default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorIndexOptions {
    /// Fixed dimension, or `None` to take the first vector's.
    pub dimension: Option<usize>,
    /// Similarity metric.
    pub metric: Metric,
    /// ANN graph parameters (`M` = 16, `ef_construction` = 200 by default).
    pub engine: EngineParams,
    /// Default candidate list size of a search (`ef`), in `1..=4096`; default 64.
    pub ef_search: usize,
    /// Bound of the freshness tail: above it [`VectorIndex::tail_is_full`] asks writers to slow
    /// down (writes are still accepted: they are already durable). Default 20,000.
    pub max_pending: usize,
    /// A filtered search whose allowed count is at most this scans exactly. Default 4,096.
    pub exact_scan_max_allowed: usize,
    /// ... or at most this fraction of the live vectors. Default 0.02.
    pub exact_scan_max_fraction: f64,
}

impl Default for VectorIndexOptions {
    fn default() -> Self {
        Self {
            dimension: None,
            metric: Metric::Cosine,
            engine: EngineParams::default(),
            ef_search: 64,
            max_pending: 20_000,
            exact_scan_max_allowed: 4_096,
            exact_scan_max_fraction: 0.02,
        }
    }
}

/// The part of a tail bound of `max_pending` that bulk loads may fill (half, at least 1).
pub fn bulk_share(max_pending: usize) -> usize {
    max_pending.div_ceil(2)
}

impl VectorIndexOptions {
    /// Checks every option; the message names the option and the accepted range.
    pub fn validate(&self) -> Result<()> {
        self.engine.validate()?;
        validate_ef(self.ef_search)?;
        if self.dimension == Some(0) || self.dimension.is_some_and(|d| d > 65_536) {
            return Err(Error::invalid(format!(
                "dimension must be in 1..=65536, got {:?}",
                self.dimension
            )));
        }
        if self.max_pending == 0 {
            return Err(Error::invalid("max_pending must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.exact_scan_max_fraction) {
            return Err(Error::invalid(format!(
                "exact_scan_max_fraction must be in 0..=1, got {}",
                self.exact_scan_max_fraction
            )));
        }
        Ok(())
    }
}

fn validate_ef(ef: usize) -> Result<()> {
    if !(1..=4096).contains(&ef) {
        return Err(Error::invalid(format!(
            "ef_search must be in 1..=4096, got {ef}"
        )));
    }
    Ok(())
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorHit {
    /// The entity.
    pub entity_id: Arc<str>,
    /// Similarity to the query (see [`Metric`]).
    pub similarity: f32,
}

/// A live vector.
#[derive(Debug)]
struct Slot {
    entity: Arc<str>,
    /// The prepared vector while the id waits in `pending`; `None` once the current engine holds
    /// it (the engine's copy is then the only one).
    vector: Option<Arc<[f32]>>,
    seq: u64,
}

impl Slot {
    /// True when the current engine holds this id.
    fn indexed(&self) -> bool {
        self.vector.is_none()
    }
}

#[derive(Debug)]
struct State {
    dimension: Option<usize>,
    /// Live internal ids only. A hash map: every engine hit of every query is looked up here,
    /// and a B-tree walk costs several cache misses per hit (5.6% of a one-core daemon's query
    /// CPU in a profile, 2.2% as a hash map). Rebuilds and dumps sort by id where order
    /// matters.
    slots: foldhash::HashMap<usize, Slot>,
    /// Each live entity's id. foldhash (seeded per process: the keys are client-chosen), not
    /// SipHash: every similarity lookup of a walked entity hashes its id here.
    by_entity: foldhash::HashMap<Arc<str>, usize>,
    /// Live ids not yet in the engine (the freshness tail).
    pending: BTreeSet<usize>,
    engine: Arc<dyn AnnEngine>,
    /// Number of live ids with `indexed == true`.
    indexed_live: usize,
    next_id: usize,
    applied_seq: u64,
}

/// One tenant's vector index. All methods take `&self` and are safe to call concurrently.
#[derive(Debug)]
pub struct VectorIndex {
    options: VectorIndexOptions,
    factory: Arc<dyn AnnEngineFactory>,
    state: RwLock<State>,
    /// Serialises engine inserts (the indexer) with rebuilds and dumps.
    engine_writer: Mutex<()>,
    /// Vectors the indexer moved from the tail into the engine since this index was made.
    indexed_total: AtomicU64,
    /// The metric's fastest distance kernel, for exact scans.
    distance: DistanceFn,
}

/// How a [`VectorIndex::rebuild`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rebuild {
    /// The new engine replaced the old one; stale points are gone.
    Swapped,
    /// Cancelled before the swap: the old engine is still in place, unchanged.
    Cancelled,
}

/// Size of one engine insert batch taken by the indexer, and of one chunk of vectors copied from
/// the old engine into the new one by a rebuild.
const INDEX_BATCH: usize = 4_096;
/// Vectors a rebuild inserts between two checks of its cancellation flag (a fraction of a second
/// of HNSW insertion, so that a shutdown never waits for a whole rebuild).
const REBUILD_CANCEL_CHECK: usize = 256;
const SLOTS_FILE: &str = "slots.bin";
const ENGINE_DIR: &str = "engine";

impl VectorIndex {
    /// An empty index on the default engine, [`FlatHnswFactory`] (use
    /// [`VectorIndex::with_factory`] with `HnswFactory` for the `hnsw_rs` engine).
    pub fn new(options: VectorIndexOptions) -> Result<Self> {
        Self::with_factory(options, Arc::new(FlatHnswFactory))
    }

    /// An empty index on the engine made by `factory`.
    pub fn with_factory(
        options: VectorIndexOptions,
        factory: Arc<dyn AnnEngineFactory>,
    ) -> Result<Self> {
        options.validate()?;
        let engine: Arc<dyn AnnEngine> = Arc::from(factory.create(options.metric, options.engine)?);
        Ok(Self {
            state: RwLock::new(State {
                dimension: options.dimension,
                slots: foldhash::HashMap::default(),
                by_entity: foldhash::HashMap::default(),
                pending: BTreeSet::new(),
                engine,
                indexed_live: 0,
                next_id: 0,
                applied_seq: 0,
            }),
            options,
            factory,
            engine_writer: Mutex::new(()),
            indexed_total: AtomicU64::new(0),
            distance: distance_fn(options.metric),
        })
    }

    /// The options the index was built with.
    pub fn options(&self) -> &VectorIndexOptions {
        &self.options
    }

    /// The fixed dimension, once known.
    pub fn dimension(&self) -> Option<usize> {
        self.state.read().dimension
    }

    /// Every internal id given so far is below this (the size a [`FilterMemo`] needs).
    pub fn id_bound(&self) -> usize {
        self.state.read().next_id
    }

    /// The live internal ids from `start` on, with their entities, in no particular order.
    pub fn entities_from(&self, start: usize) -> Vec<(usize, Arc<str>)> {
        self.state
            .read()
            .slots
            .iter()
            .filter(|(id, _)| **id >= start)
            .map(|(id, slot)| (*id, slot.entity.clone()))
            .collect()
    }

    /// The entities of internal ids `ids` that are live (`None` for the others), in order.
    pub fn entities_of(&self, ids: &[usize]) -> Vec<Option<Arc<str>>> {
        let state = self.state.read();
        ids.iter()
            .map(|id| state.slots.get(id).map(|slot| slot.entity.clone()))
            .collect()
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.state.read().slots.len()
    }

    /// Number of live vectors of the entities `keep` selects.
    pub fn count_where(&self, keep: &dyn Fn(&str) -> bool) -> usize {
        self.state
            .read()
            .slots
            .values()
            .filter(|slot| keep(&slot.entity))
            .count()
    }

    /// True when no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Highest engine sequence number applied so far.
    pub fn applied_seq(&self) -> u64 {
        self.state.read().applied_seq
    }

    /// Number of vectors in the freshness tail (written, not yet in the engine).
    pub fn pending_len(&self) -> usize {
        self.state.read().pending.len()
    }

    /// True when the tail has reached `max_pending`: writers should wait for the indexer.
    pub fn tail_is_full(&self) -> bool {
        self.pending_len() >= self.options.max_pending
    }

    /// How many more vectors a bulk load (a range stream) may add to the tail now: up to half
    /// of `max_pending`, so that client writers keep the other half.
    pub fn bulk_room(&self) -> usize {
        bulk_share(self.options.max_pending).saturating_sub(self.pending_len())
    }

    /// Vectors the indexer has moved from the tail into the engine since this index was made
    /// (only grows): how a bulk load waiting for room sees the indexer progress.
    pub fn indexed_total(&self) -> u64 {
        self.indexed_total.load(Ordering::Relaxed)
    }

    /// Fraction of the engine's points that are stale (updated or deleted); a rebuild is due
    /// past ~0.2.
    pub fn stale_ratio(&self) -> f64 {
        let state = self.state.read();
        let total = state.engine.len();
        if total == 0 {
            return 0.0;
        }
        total.saturating_sub(state.indexed_live) as f64 / total as f64
    }

    /// Checks a client vector against the tenant's dimension (if fixed) and returns its
    /// prepared copy.
    fn prepare(&self, state_dimension: Option<usize>, vector: &[f32]) -> Result<Vec<f32>> {
        if let Some(expected) = state_dimension
            && vector.len() != expected
        {
            return Err(Error::DimensionMismatch {
                expected,
                got: vector.len(),
            });
        }
        self.options.metric.prepare(vector)
    }

    /// Makes `dimension` the index's dimension if no vector is live (a fresh engine replaces
    /// the one holding the old dimension's stale points); returns the dimension in force.
    fn take_dimension(&self, dimension: usize) -> Result<Option<usize>> {
        // The indexer and rebuilds insert under `engine_writer`: none is running on the old
        // engine once it is held.
        let _writer = self.engine_writer.lock();
        let mut state = self.state.write();
        if state.slots.is_empty() {
            state.engine = Arc::from(
                self.factory
                    .create(self.options.metric, self.options.engine)?,
            );
            state.indexed_live = 0;
            state.dimension = Some(dimension);
        }
        Ok(state.dimension)
    }

    /// "Entity `entity_id` now has vector `vector`", produced by engine write `seq`. The vector
    /// is searchable when this returns (in the tail until the indexer catches up). An update
    /// older than the entity's current vector (`seq` below it) is ignored, so replays are
    /// idempotent; updates of one entity must be applied in `seq` order.
    pub fn upsert(&self, entity_id: &str, vector: &[f32], seq: u64) -> Result<()> {
        if entity_id.is_empty() {
            return Err(Error::invalid("entity id is empty"));
        }
        let mut dimension = self.state.read().dimension;
        if dimension.is_some_and(|d| d != vector.len())
            && self.options.dimension.is_none()
            && self.is_empty()
        {
            dimension = self.take_dimension(vector.len())?;
        }
        let prepared: Arc<[f32]> = self.prepare(dimension, vector)?.into();
        let mut state = self.state.write();
        // The dimension may have been fixed by a concurrent first writer.
        match state.dimension {
            Some(expected) if expected != prepared.len() => {
                return Err(Error::DimensionMismatch {
                    expected,
                    got: prepared.len(),
                });
            }
            Some(_) => {}
            None => state.dimension = Some(prepared.len()),
        }
        if let Some(&old) = state.by_entity.get(entity_id)
            && state.slots.get(&old).is_some_and(|slot| slot.seq > seq)
        {
            return Ok(());
        }
        state.remove_entity(entity_id);
        let id = state.next_id;
        state.next_id += 1;
        let entity: Arc<str> = Arc::from(entity_id);
        state.by_entity.insert(entity.clone(), id);
        state.slots.insert(
            id,
            Slot {
                entity,
                vector: Some(prepared),
                seq,
            },
        );
        state.pending.insert(id);
        state.applied_seq = state.applied_seq.max(seq);
        Ok(())
    }

    /// "Entity `entity_id` deleted (or lost its vector)" at engine write `seq`: it disappears
    /// from results at once. Returns whether it had a vector.
    pub fn delete(&self, entity_id: &str, seq: u64) -> bool {
        let mut state = self.state.write();
        state.applied_seq = state.applied_seq.max(seq);
        state.remove_entity(entity_id)
    }

    /// Moves up to `max` vectors from the tail into the engine (the background indexer's step;
    /// bulk loads call it with `usize::MAX`). Queries keep running meanwhile. Returns how many
    /// vectors were indexed.
    pub fn index_pending(&self, max: usize) -> usize {
        let _writer = self.engine_writer.lock();
        let mut done = 0;
        while done < max {
            let (engine, batch) = {
                let state = self.state.read();
                let batch: Vec<(usize, Arc<[f32]>)> = state
                    .pending
                    .iter()
                    .take((max - done).min(INDEX_BATCH))
                    .filter_map(|id| {
                        let vector = state.slots.get(id)?.vector.clone()?;
                        Some((*id, vector))
                    })
                    .collect();
                (state.engine.clone(), batch)
            };
            if batch.is_empty() {
                break;
            }
            let items: Vec<(usize, &[f32])> = batch.iter().map(|(id, v)| (*id, &v[..])).collect();
            if items.len() >= 64 {
                engine.insert_batch(&items);
            } else {
                for (id, vector) in &items {
                    engine.insert(*id, vector);
                }
            }
            let mut state = self.state.write();
            if Arc::ptr_eq(&state.engine, &engine) {
                for (id, _) in &batch {
                    state.pending.remove(id);
                    if let Some(slot) = state.slots.get_mut(id) {
                        // The engine's copy is now the only one (the batch's is dropped below).
                        slot.vector = None;
                        state.indexed_live += 1;
                    }
                }
            }
            self.indexed_total
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            done += batch.len();
        }
        done
    }

    /// Builds a new engine from the live vectors and swaps it in, dropping every stale point.
    /// Runs in the caller's thread (call it from a background thread): queries and writes go on
    /// meanwhile; vectors written during the build stay in the tail. Indexed vectors are
    /// streamed from the old engine in chunks of [`INDEX_BATCH`], so the peak is the two engines
    /// plus one chunk. `cancelled` is asked every few hundred vectors; once it answers true the
    /// new engine is dropped and the old one kept, unchanged.
    pub fn rebuild(&self, cancelled: &dyn Fn() -> bool) -> Result<Rebuild> {
        let _writer = self.engine_writer.lock();
        // Every live id below `boundary` is in `live`: ids are never reused, and no other
        // engine insert runs while `engine_writer` is held.
        let (old_engine, live, boundary, dimension) = {
            let state = self.state.read();
            let mut live: Vec<(usize, Option<Arc<[f32]>>)> = state
                .slots
                .iter()
                .map(|(id, slot)| (*id, slot.vector.clone()))
                .collect();
            // Oldest first, like the indexer, so a rebuild does not depend on the map's order.
            live.sort_unstable_by_key(|(id, _)| *id);
            (state.engine.clone(), live, state.next_id, state.dimension)
        };
        let params = EngineParams {
            capacity_hint: live.len().max(1),
            ..self.options.engine
        };
        let engine: Arc<dyn AnnEngine> =
            Arc::from(self.factory.create(self.options.metric, params)?);
        let dimension = dimension.unwrap_or(0).max(1);
        let mut copied: Vec<f32> = Vec::new();
        for chunk in live.chunks(INDEX_BATCH) {
            let indexed: Vec<usize> = chunk
                .iter()
                .filter(|(_, vector)| vector.is_none())
                .map(|(id, _)| *id)
                .collect();
            copied.clear();
            let mut found = 0;
            old_engine.visit_vectors(&indexed, &mut |_, vector| {
                copied.extend_from_slice(vector);
                found += 1;
            });
            if found != indexed.len() || copied.len() != found * dimension {
                return Err(Error::Engine {
                    context: "rebuilding the vector index".to_string(),
                    message: format!(
                        "the engine returned {found} of {} indexed vectors; keeping it",
                        indexed.len()
                    ),
                });
            }
            // In id order: indexed vectors come from `copied` (visited in order), pending ones
            // from their slots.
            let mut rows = copied.chunks_exact(dimension);
            let items: Vec<(usize, &[f32])> = chunk
                .iter()
                .filter_map(|(id, vector)| match vector {
                    Some(vector) => Some((*id, &vector[..])),
                    None => rows.next().map(|row| (*id, row)),
                })
                .collect();
            for part in items.chunks(REBUILD_CANCEL_CHECK) {
                if cancelled() {
                    return Ok(Rebuild::Cancelled);
                }
                engine.insert_batch(part);
            }
        }
        let mut state = self.state.write();
        let state = &mut *state;
        let mut indexed_live = 0;
        for (id, slot) in state.slots.iter_mut() {
            if *id < boundary {
                slot.vector = None;
                state.pending.remove(id);
                indexed_live += 1;
            }
        }
        state.indexed_live = indexed_live;
        state.engine = engine;
        Ok(Rebuild::Swapped)
    }

    /// Writes the index into `dir` (created; it must not hold another dump). Engine inserts and
    /// rebuilds wait meanwhile; queries and writes go on. The dump covers every update applied
    /// before it started (see [`VectorIndex::applied_seq`] of the reloaded index).
    pub fn dump(&self, dir: &Path) -> Result<()> {
        let _writer = self.engine_writer.lock();
        let engine_dir = dir.join(ENGINE_DIR);
        fs::create_dir_all(&engine_dir).map_err(|e| Error::io(&engine_dir, e))?;
        let (engine, bytes) = {
            let state = self.state.read();
            (
                state.engine.clone(),
                state.encode_slots(self.options.metric),
            )
        };
        engine.dump(&engine_dir)?;
        let path = dir.join(SLOTS_FILE);
        fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&path, e))
    }

    /// Reloads a dump written by [`VectorIndex::dump`]. The engine's dump holds the only copy of
    /// the indexed vectors, so a missing, damaged or foreign engine dump (or one that lacks an
    /// indexed id) is an [`Error::Corruption`]: the caller rebuilds from the storage engine.
    /// The dumped tail comes back as the tail (call [`VectorIndex::index_pending`] to index it).
    pub fn load(dir: &Path, options: VectorIndexOptions) -> Result<Self> {
        Self::load_with_factory(dir, options, Arc::new(FlatHnswFactory))
    }

    /// [`VectorIndex::load`] with an explicit engine factory.
    pub fn load_with_factory(
        dir: &Path,
        options: VectorIndexOptions,
        factory: Arc<dyn AnnEngineFactory>,
    ) -> Result<Self> {
        let index = Self::with_factory(options, factory.clone())?;
        let path = dir.join(SLOTS_FILE);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let decoded = decode_slots(&bytes, options.metric)
            .map_err(|reason| Error::corruption(&path, reason))?;
        if let (Some(expected), Some(got)) = (options.dimension, decoded.dimension)
            && expected != got
        {
            return Err(Error::DimensionMismatch { expected, got });
        }
        let engine_dir = dir.join(ENGINE_DIR);
        let engine: Arc<dyn AnnEngine> =
            Arc::from(factory.load(&engine_dir, options.metric).map_err(|err| {
                Error::corruption(
                    &engine_dir,
                    format!("engine dump unusable (the indexed vectors are only there): {err}"),
                )
            })?);
        let indexed: Vec<usize> = decoded
            .slots
            .iter()
            .filter(|record| record.vector.is_none())
            .map(|record| record.id)
            .collect();
        let mut held = 0;
        engine.visit_vectors(&indexed, &mut |_, _| held += 1);
        if held != indexed.len() {
            return Err(Error::corruption(
                &engine_dir,
                format!(
                    "the engine dump holds {held} of the {} indexed vectors of {}",
                    indexed.len(),
                    path.display()
                ),
            ));
        }
        {
            let mut state = index.state.write();
            state.dimension = decoded.dimension.or(options.dimension);
            state.next_id = decoded.next_id;
            state.applied_seq = decoded.applied_seq;
            state.engine = engine;
            state.indexed_live = indexed.len();
            for record in decoded.slots {
                if record.vector.is_some() {
                    state.pending.insert(record.id);
                }
                state.by_entity.insert(record.entity.clone(), record.id);
                state.slots.insert(
                    record.id,
                    Slot {
                        entity: record.entity,
                        vector: record.vector,
                        seq: record.seq,
                    },
                );
            }
        }
        // The tail stays pending (searchable by exact scan): the caller's indexer moves it into
        // the engine in the background, so a large tail never delays the load.
        Ok(index)
    }
}

impl State {
    /// Removes the entity's live vector, if any.
    fn remove_entity(&mut self, entity_id: &str) -> bool {
        let Some(id) = self.by_entity.remove(entity_id) else {
            return false;
        };
        if let Some(slot) = self.slots.remove(&id)
            && slot.indexed()
        {
            self.indexed_live -= 1;
        }
        self.pending.remove(&id);
        true
    }
}

#[cfg(test)]
mod tests;
