//! One tenant's indexes (vectors, graph, facts, lexical) and the two ways they are brought up to date:
//! from a committed write batch (live, in commit order) and from an entity's stored state
//! (catch-up after a restart, full rebuilds).
//!
//! Invariant: after either path, the indexes describe exactly the entity's live state in the
//! engine as of that write — a deleted entity has no vector, no facts, no text document and no
//! edges; an entity's in-edge cells are indexed like its sources' out-edge cells (the same
//! edges, written together), so a node answers the incoming edges of what it holds — with
//! one counted exception: a stored vector whose dimension differs from the one the tenant's
//! vector index holds (replicas that diverged, docs/index.md "Vectors the index refuses") is
//! left out and its entity listed in [`TenantIndexes::unindexed`]; its facts and edges are
//! indexed all the same, and one entity never keeps the rest of a batch from the indexes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use allidb_storage::Engine;
use allidb_storage::cell::{AttributeValue, EdgeValue, EntityBody};
use allidb_storage::key::{CellKey, CellSuffix};
use allidb_storage::partition::PartitionState;
use allidb_storage::types::SeqNo;
use parking_lot::{Mutex, RwLock};

use super::facts::{EntityMeta, FactTable, Filter};
use super::prepared::PreparedBody;
use super::slot_ordinals::{self, SlotOrdinals};
use crate::error::{Error, Result};
use crate::filter::PayloadIndex;
use crate::graph::{EdgeSpec, GraphIndex};
use crate::lexical::{LexicalIndex, LexicalOptions, ResolvedDoc};
use crate::vector::{FilterMemo, VectorIndex, VectorIndexOptions};

/// The indexes of one tenant.
#[derive(Debug)]
pub struct TenantIndexes {
    /// Nearest-neighbour index over each entity's current embedding.
    pub vectors: VectorIndex,
    /// Adjacency of the tenant's edges.
    pub graph: GraphIndex,
    /// Type, attributes, importance, update time.
    pub facts: RwLock<FactTable>,
    /// BM25 over the chunk texts.
    pub lexical: LexicalIndex,
    /// Entities whose stored current vector the vector index refused (its dimension is not
    /// the one in force): indexed without it until the dimension frees up.
    unindexed: Mutex<BTreeSet<String>>,
    /// The filter memos of the latest filtered graph searches, most recent last (see
    /// [`TenantIndexes::filter_memo`]).
    filter_memos: Mutex<Vec<MemoEntry>>,
    /// Internal vector id -> payload ordinal, for per-query filter bitmaps (see
    /// [`TenantIndexes::slot_ordinals`]).
    slot_ordinals: Mutex<Option<Arc<SlotOrdinals>>>,
}

/// Filter memos kept per tenant at most (each holds 2 bits per internal vector id).
const FILTER_MEMOS: usize = 8;

/// A filter's memo, valid while the facts stay at `generation`.
#[derive(Debug)]
struct MemoEntry {
    filter: Filter,
    generation: u64,
    memo: Arc<FilterMemo>,
}

/// One committed cell write.
#[derive(Debug)]
pub struct CommittedOp<'a> {
    pub seq: SeqNo,
    pub key: CellKey,
    pub ts: u64,
    /// The value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// The value decoded and analyzed on the writing thread, when it is an entity body
    /// (`None`: decoded here).
    pub body: Option<PreparedBody>,
}

/// What one batch wrote to one partition.
#[derive(Default)]
struct PartitionWrites {
    marker: bool,
    /// `Some(None)`: the body was removed.
    body: Option<(Option<EntityBody>, u64)>,
    /// The body's lexical document, when it was analyzed on the writing thread.
    doc: Option<ResolvedDoc>,
    /// `(relation, to, weight)`; no weight: the edge was removed.
    out_edges: Vec<(String, String, Option<f32>)>,
    /// `(relation, from, weight)` of the partition's in-edge cells; no weight: removed.
    in_edges: Vec<(String, String, Option<f32>)>,
}

impl PartitionWrites {
    /// Whether the batch removed some in-edge cell of the partition (a delete removes them
    /// all; an expiry, a marker alone, leaves them).
    fn in_edges_removed(&self) -> bool {
        self.in_edges.iter().any(|(_, _, weight)| weight.is_none())
    }

    /// Whether the batch deletes the entity (a marker without a body, or a removed body).
    fn deletes(&self) -> bool {
        match &self.body {
            None => self.marker,
            Some((body, _)) => body.is_none(),
        }
    }

    /// Adds one committed cell write of the partition (`prepared`: its body, decoded).
    fn record(
        &mut self,
        suffix: CellSuffix,
        ts: u64,
        value: Option<&[u8]>,
        prepared: Option<PreparedBody>,
    ) -> Result<()> {
        match suffix {
            CellSuffix::Marker => self.marker |= value.is_some(),
            CellSuffix::Body => {
                let (body, doc) = match prepared {
                    Some(PreparedBody { body, doc }) => (Some(body), Some(doc)),
                    None => (value.map(EntityBody::decode).transpose()?, None),
                };
                self.body = Some((body, ts));
                self.doc = doc;
            }
            CellSuffix::OutEdge { relation, to } => {
                self.out_edges.push((relation, to, edge_weight(value)?));
            }
            CellSuffix::InEdge { relation, from } => {
                self.in_edges.push((relation, from, edge_weight(value)?));
            }
            CellSuffix::SourceMember { .. } => {}
        }
        Ok(())
    }
}

/// The weight of an edge cell's value (`None`: a tombstone, the edge removed).
fn edge_weight(value: Option<&[u8]>) -> Result<Option<f32>> {
    Ok(value
        .map(EdgeValue::decode)
        .transpose()?
        .map(|v| v.weight as f32))
}

fn meta_of(body: &EntityBody, body_ts: u64) -> EntityMeta {
    let updated = u64::try_from(body.updated_at_nanos / 1000).unwrap_or(0);
    EntityMeta {
        entity_type: body.entity_type.clone(),
        attributes: attributes_of(body),
        importance: body.importance,
        updated_at_micros: if updated > 0 { updated } else { body_ts },
        body_ts,
        expires_at_nanos: body.expires_at_nanos,
    }
}

/// Every attribute of a body, untyped ones as strings (a key in both maps, which validation
/// refuses, keeps its typed value).
pub fn attributes_of(body: &EntityBody) -> BTreeMap<String, AttributeValue> {
    let mut attributes: BTreeMap<String, AttributeValue> = body
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), AttributeValue::String(v.clone())))
        .collect();
    attributes.extend(
        body.typed_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    attributes
}

fn spec(relation: &str, to: &str, weight: f64) -> EdgeSpec {
    EdgeSpec {
        relation: relation.to_owned(),
        to: to.to_owned(),
        weight: weight as f32,
    }
}

impl TenantIndexes {
    /// Empty indexes.
    pub fn new(options: VectorIndexOptions, lexical: &LexicalOptions) -> Result<Self> {
        Self::with_vectors(VectorIndex::new(options)?, lexical)
    }

    /// Indexes with a reloaded vector index (the others empty).
    pub fn with_vectors(vectors: VectorIndex, lexical: &LexicalOptions) -> Result<Self> {
        Ok(Self {
            vectors,
            graph: GraphIndex::new(),
            facts: RwLock::default(),
            lexical: LexicalIndex::new(lexical.clone())?,
            unindexed: Mutex::default(),
            filter_memos: Mutex::default(),
            slot_ordinals: Mutex::default(),
        })
    }

    /// The memo of `filter`'s answers for the facts at `generation` (the caller holds the
    /// facts' read lock, so they stay there while it searches): the one kept from an earlier
    /// search of the same filter at the same generation, or a new empty one (replacing the
    /// least recently used of [`FILTER_MEMOS`]). A filter's answer for an internal vector id
    /// depends only on that id's entity (never another: ids are not reused) and its facts, so
    /// it holds while the generation does. Callers must not use it when answers depend on the
    /// clock (entities with expiry times).
    pub fn filter_memo(&self, filter: &Filter, generation: u64) -> Arc<FilterMemo> {
        self.filter_memo_or(filter, generation, || {
            FilterMemo::new(self.vectors.id_bound())
        })
    }

    /// [`TenantIndexes::filter_memo`], a new one made by `make` (which must hold only the
    /// filter's answers at `generation`).
    pub fn filter_memo_or(
        &self,
        filter: &Filter,
        generation: u64,
        make: impl FnOnce() -> FilterMemo,
    ) -> Arc<FilterMemo> {
        let mut memos = self.filter_memos.lock();
        if let Some(at) = memos
            .iter()
            .position(|e| e.generation == generation && e.filter == *filter)
        {
            let entry = memos.remove(at);
            let memo = entry.memo.clone();
            memos.push(entry);
            return memo;
        }
        memos.retain(|e| e.generation == generation);
        if memos.len() >= FILTER_MEMOS {
            memos.remove(0);
        }
        let memo = Arc::new(make());
        memos.push(MemoEntry {
            filter: filter.clone(),
            generation,
            memo: memo.clone(),
        });
        memo
    }

    /// The filter memo a filtered graph walk of `filter` reads (`None`: none, the walk checks
    /// each node). With `bitmap`, a bitmap over the vector slots filled from the filter's
    /// membership (built only when the filter has no kept memo; kept among the filter memos
    /// unless answers depend on the clock, then built per query with no member certain while
    /// an expired entity awaits the sweep); without, the filter's kept memo, never for
    /// entities with expiry times.
    pub fn seed_memo(
        &self,
        facts: &FactTable,
        filter: &Filter,
        bitmap: bool,
    ) -> Option<Arc<FilterMemo>> {
        let timed = facts.has_expiry_times();
        let filled = || {
            let ids = self.vectors.id_bound();
            let membership = filter
                .as_expression()
                .and_then(|e| facts.payload().membership(&e));
            match membership {
                Some(mut membership) => {
                    if facts.has_expired(allidb_storage::hlc::wall_nanos()) {
                        membership.demote();
                    }
                    self.slot_ordinals(facts.payload()).memo(&membership, ids)
                }
                None => FilterMemo::new(ids),
            }
        };
        match (bitmap, timed) {
            (true, true) => Some(Arc::new(filled())),
            (true, false) => Some(self.filter_memo_or(filter, facts.generation(), filled)),
            (false, true) => None,
            (false, false) => Some(self.filter_memo(filter, facts.generation())),
        }
    }

    /// The map from internal vector ids to `payload`'s ordinals (the tenant's facts, read-locked
    /// by the caller), refreshed if ids were created or ordinals moved since it was made.
    pub fn slot_ordinals(&self, payload: &PayloadIndex) -> Arc<SlotOrdinals> {
        slot_ordinals::current(&self.slot_ordinals, payload, &self.vectors)
    }

    /// Entities whose stored vector is not indexed (its dimension differs from the index's),
    /// in id order.
    pub fn unindexed(&self) -> Vec<String> {
        self.unindexed.lock().iter().cloned().collect()
    }

    /// How many entities' stored vectors are not indexed.
    pub fn unindexed_len(&self) -> usize {
        self.unindexed.lock().len()
    }

    /// Indexes `id`'s current vector; a vector of another dimension than the index's is left
    /// out (its old one removed, so no search finds a vector the entity no longer has) and
    /// the entity listed as unindexed.
    fn apply_vector(&self, id: &str, vector: &[f32], seq: SeqNo) -> Result<()> {
        match self.vectors.upsert(id, vector, seq) {
            Ok(()) => {
                self.unindexed.lock().remove(id);
                Ok(())
            }
            Err(Error::DimensionMismatch { expected, got }) => {
                self.vectors.delete(id, seq);
                if self.unindexed.lock().insert(id.to_owned()) {
                    tracing::warn!(
                        entity = id,
                        expected,
                        got,
                        "a stored vector's dimension differs from its tenant's index: the entity is indexed without it"
                    );
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Indexes again, from `engine`, the entities whose vectors were refused, once the vector
    /// index holds none and no dimension is configured (the first of them then fixes it): a
    /// tenant whose stored vectors all changed dimension converges to an index of the new
    /// one. Returns how many were indexed.
    pub fn retry_unindexed(&self, tenant: &str, engine: &Engine) -> Result<usize> {
        if self.unindexed_len() == 0
            || self.vectors.options().dimension.is_some()
            || !self.vectors.is_empty()
        {
            return Ok(0);
        }
        let ids = self.unindexed();
        let snapshot = engine.last_seq();
        for id in &ids {
            let state = engine.read_partition(tenant, id)?;
            self.apply_state(id, &state, snapshot)?;
        }
        Ok(ids.len().saturating_sub(self.unindexed_len()))
    }

    /// Removes `id`'s vector (deleted, or its body has none).
    fn remove_vector(&self, id: &str, seq: SeqNo) {
        self.vectors.delete(id, seq);
        self.unindexed.lock().remove(id);
    }

    /// Applies the body of one entity: vector, facts and text (`doc`: the body's lexical
    /// document when it was analyzed already).
    fn apply_body(
        &self,
        id: &str,
        body: Option<&EntityBody>,
        body_ts: u64,
        seq: SeqNo,
        doc: Option<ResolvedDoc>,
    ) -> Result<()> {
        match body {
            Some(body) => {
                match body.current_embedding() {
                    Some(e) => self.apply_vector(id, &e.vector, seq)?,
                    None => self.remove_vector(id, seq),
                }
                self.facts.write().upsert(id, meta_of(body, body_ts));
                match doc {
                    Some(doc) => self.lexical.upsert_resolved(id, doc),
                    None => self.lexical.upsert_body(id, body, body_ts),
                }
            }
            None => {
                self.remove_vector(id, seq);
                self.facts.write().remove(id);
                self.lexical.remove(id);
            }
        }
        Ok(())
    }

    /// Brings the indexes up to date with one committed batch (every op of this tenant).
    /// `ops` are `(seq, key, ts, value)`. Every partition is applied even when another fails
    /// (a cell that does not decode): the first failure is returned after the rest.
    pub fn apply_batch<'a>(&self, ops: impl Iterator<Item = CommittedOp<'a>>) -> Result<()> {
        let mut partitions: BTreeMap<String, (SeqNo, Result<PartitionWrites>)> = BTreeMap::new();
        for CommittedOp {
            seq,
            key,
            ts,
            value,
            body,
        } in ops
        {
            let (last_seq, writes) = partitions
                .entry(key.entity_id)
                .or_insert_with(|| (seq, Ok(PartitionWrites::default())));
            *last_seq = (*last_seq).max(seq);
            if let Ok(w) = writes
                && let Err(e) = w.record(key.suffix, ts, value, body)
            {
                *writes = Err(e);
            }
        }
        // Deletions last: a reader of the indexes during the batch may see an entity the
        // batch writes and one it deletes side by side, never neither (a `ReplaceSource`
        // swapping a document's version, docs/index.md "Freshness").
        let (deletes, writes): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .partition(|(_, (_, w))| w.as_ref().is_ok_and(PartitionWrites::deletes));
        let mut first_error = None;
        for (id, (seq, writes)) in writes.into_iter().chain(deletes) {
            if let Err(e) = writes.and_then(|w| self.apply_writes(&id, seq, w)) {
                tracing::error!(entity = %id, error = %e, "a committed partition could not be indexed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies what one batch wrote to partition `id` (`seq`: its last write in the batch).
    fn apply_writes(&self, id: &str, seq: SeqNo, mut writes: PartitionWrites) -> Result<()> {
        if writes.marker && writes.body.is_none() {
            // Delete: the entity and every edge leaving or entering it. An expiry leaves the
            // in-edges that other entities' out-edges wrote, as storage keeps them.
            self.apply_body(id, None, 0, seq, None)?;
            match writes.in_edges_removed() {
                true => self.graph.delete_entity(id, seq),
                false => self.graph.replace_out_edges(id, &[], seq)?,
            }
            return Ok(());
        }
        if let Some((body, ts)) = &writes.body {
            self.apply_body(id, body.as_ref(), *ts, seq, writes.doc.take())?;
        }
        let added: Vec<EdgeSpec> = writes
            .out_edges
            .iter()
            .filter_map(|(r, to, w)| w.map(|w| spec(r, to, f64::from(w))))
            .collect();
        if writes.marker {
            // Replace: the batch carries the entity's complete new out-edge list.
            self.graph.replace_out_edges(id, &added, seq)?;
        } else {
            let removed: Vec<(&str, &str)> = writes
                .out_edges
                .iter()
                .filter(|(_, _, w)| w.is_none())
                .map(|(r, to, _)| (r.as_str(), to.as_str()))
                .collect();
            if !removed.is_empty() {
                self.graph.remove_edges(id, &removed, seq);
            }
            if !added.is_empty() {
                self.graph.add_edges(id, &added, seq)?;
            }
        }
        // In-edge cells: the owner of `id` answers its incoming edges even where it holds no
        // partition of their sources (a ring whose nodes outnumber its replication factor).
        for (relation, from, weight) in &writes.in_edges {
            match weight {
                Some(weight) => {
                    let edge = spec(relation, id, f64::from(*weight));
                    self.graph
                        .add_edges(from, std::slice::from_ref(&edge), seq)?;
                }
                None => {
                    self.graph
                        .remove_edges(from, &[(relation.as_str(), id)], seq);
                }
            }
        }
        Ok(())
    }

    /// Makes the indexes describe `state`, the stored state of entity `id` at snapshot `seq`.
    pub fn apply_state(&self, id: &str, state: &PartitionState, seq: SeqNo) -> Result<()> {
        self.apply_purged(id, state, seq)?;
        // Its in-edge cells as stored: an expiry (a marker alone) leaves them, a delete has
        // removed them with tombstones.
        let incoming: Vec<(&str, EdgeSpec)> = state
            .in_edges
            .iter()
            .map(|e| (e.from.as_str(), spec(&e.relation, id, e.weight)))
            .collect();
        self.graph.replace_in_edges(id, &incoming, seq)
    }

    /// Makes the indexes describe `state`, what storage still holds of partition `id` (at
    /// snapshot `seq`) after a purge dropped it from this node (usually nothing): its body and
    /// out-edges. Unlike a delete, the edges into `id` stay in the graph: those whose sources
    /// this node keeps are their out-edge cells; the others this node is no longer asked about
    /// (it replicates neither end), and a rebuild from storage drops them.
    pub fn apply_purged(&self, id: &str, state: &PartitionState, seq: SeqNo) -> Result<()> {
        self.apply_body(id, state.body.as_ref(), state.version_ts, seq, None)?;
        let edges: Vec<EdgeSpec> = state
            .out_edges
            .iter()
            .map(|e| spec(&e.relation, &e.to, e.weight))
            .collect();
        self.graph.replace_out_edges(id, &edges, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Cmp, Expr, Field};
    use crate::store::planning;

    fn below(n: i64) -> Filter {
        Filter {
            expression: Some(Expr::Compare {
                op: Cmp::Lt,
                field: Field::Attribute("bucket".to_owned()),
                value: AttributeValue::Int(n),
            }),
            ..Filter::default()
        }
    }

    /// A memo is shared by the searches of one filter at one facts generation, and never
    /// across filters or generations (its answers would be another filter's, or stale).
    #[test]
    fn filter_memos_are_keyed_by_filter_and_generation() {
        let indexes =
            TenantIndexes::new(VectorIndexOptions::default(), &LexicalOptions::default()).unwrap();
        let a = indexes.filter_memo(&below(5), 7);
        assert!(Arc::ptr_eq(&a, &indexes.filter_memo(&below(5), 7)));
        assert!(!Arc::ptr_eq(&a, &indexes.filter_memo(&below(6), 7)));
        let newer = indexes.filter_memo(&below(5), 8);
        assert!(!Arc::ptr_eq(&a, &newer));
        assert!(Arc::ptr_eq(&newer, &indexes.filter_memo(&below(5), 8)));
        // Older generations are dropped; at most FILTER_MEMOS are kept.
        for n in 0..2 * FILTER_MEMOS as i64 {
            indexes.filter_memo(&below(n), 8);
        }
        assert!(indexes.filter_memos.lock().len() <= FILTER_MEMOS);
        assert!(
            indexes
                .filter_memos
                .lock()
                .iter()
                .all(|e| e.generation == 8)
        );
    }

    /// A filtered walk's memo comes filled from the payload index when the planner built a
    /// membership: every slot known but the bound's posting; kept for the filter without expiry
    /// times, one per query with them.
    #[test]
    fn a_planned_walk_gets_the_slot_bitmap() {
        let options = VectorIndexOptions {
            exact_scan_max_allowed: 0,
            exact_scan_max_fraction: 0.0,
            ..VectorIndexOptions::default()
        };
        let indexes = TenantIndexes::new(options, &LexicalOptions::default()).unwrap();
        let meta = |bucket: i64, expires_at_nanos: i64| EntityMeta {
            entity_type: "doc".to_owned(),
            attributes: [("bucket".to_owned(), AttributeValue::Int(bucket))].into(),
            importance: 0.0,
            updated_at_micros: 0,
            body_ts: 1,
            expires_at_nanos,
        };
        for i in 0..8i64 {
            let id = format!("e{i}");
            indexes
                .vectors
                .upsert(&id, &[1.0, i as f32], i as u64 + 1)
                .unwrap();
            indexes.facts.write().upsert(&id, meta(i, 0));
        }
        let filter = below(4);
        let facts = indexes.facts.read();
        let (plan, _) = planning::plan(&facts, &filter, &options, false);
        assert_eq!(
            plan,
            planning::SeedPlan::Filtered {
                upper: 5,
                bitmap: true
            }
        );
        let memo = indexes.seed_memo(&facts, &filter, true).unwrap();
        let known: Vec<Option<bool>> = (0..8).map(|id| memo.known(id)).collect();
        let mut expected = vec![Some(true); 4];
        expected.push(None);
        expected.extend([Some(false); 3]);
        assert_eq!(known, expected);
        let again = indexes.seed_memo(&facts, &filter, true).unwrap();
        assert!(Arc::ptr_eq(&memo, &again));
        drop(facts);

        indexes.facts.write().upsert(
            "e7",
            meta(7, allidb_storage::hlc::wall_nanos() + 1_000_000_000_000),
        );
        let facts = indexes.facts.read();
        let first = indexes.seed_memo(&facts, &filter, true).unwrap();
        let second = indexes.seed_memo(&facts, &filter, true).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(first.known(0), Some(true));
        assert!(indexes.seed_memo(&facts, &filter, false).is_none());
    }
}
