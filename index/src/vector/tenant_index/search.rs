//! The read side of [`VectorIndex`]: top-k searches (exact scans, filtered and unfiltered
//! walks of the ANN engine merged with the exact scan of the tail, the filter memo, two-hop
//! expansion), searches among a known set of entities, and the similarities of given entities.
//!
//! Invariants: every result is a live id, and a hit's similarity comes from the metric's
//! distance kernel (a seed's and a looked-up similarity agree to the bit); results are ordered
//! by similarity descending, ties by entity id ascending, at most `k`; a filtered walk that ends
//! short of `k` while more entities may pass falls back to an exact scan. Must never: change
//! the index (searches hold only the state's read lock), or return an id the filter refuses.

use super::{FilterMemo, Slot, State, VectorHit, VectorIndex, VectorIndexOptions, validate_ef};
use crate::error::Result;
use crate::vector::flat_hnsw::DistanceFn;
use crate::vector::metric::Metric;

/// Filters keeping less than this fraction of the live vectors (by the caller's bound) are
/// walked without two-hop expansion: at 1% two hops do not keep the allowed nodes connected
/// (recall@10 0.92 on npm-minilm-20k, docs/benchmarks.md), at 10% they do (0.99).
pub const TWO_HOP_MIN_SELECTIVITY: f64 = 0.1;
/// From this fraction on, the direct neighbours mostly suffice: two-hop expansion considers
/// `M` nodes per expanded node instead of `2M` (the scored nodes then stay near an unfiltered
/// search's).
pub const TWO_HOP_NARROW_SELECTIVITY: f64 = 0.3;

/// How many nodes a filtered walk considers per expanded node when it looks through the
/// nodes its filter is known to refuse (`None`: it should not, the filter is too selective),
/// for a filter keeping at most `allowed` of `live` vectors.
fn two_hop_width(options: &VectorIndexOptions, allowed: usize, live: usize) -> Option<usize> {
    let selectivity = allowed as f64 / live.max(1) as f64;
    let m = options.engine.max_connections;
    if selectivity < TWO_HOP_MIN_SELECTIVITY {
        None
    } else if selectivity < TWO_HOP_NARROW_SELECTIVITY {
        Some(2 * m)
    } else {
        Some(m)
    }
}

impl VectorIndex {
    /// The `k` most similar live vectors to `query`, among entities passing `filter` (if any).
    ///
    /// `ef` overrides the default `ef_search`. `allowed_hint` is the caller's estimate of how
    /// many entities pass `filter`; a small one (see [`VectorIndexOptions`]) makes the search an
    /// exact scan. Otherwise a filtered search walks the engine's graph with the filter applied
    /// inside the walk (disallowed nodes are walked through and never returned, and the beam
    /// stops only once `ef` allowed nodes are held), and scans exactly when the walk ends short
    /// of `k` allowed results while more may exist. The tail is always scanned exactly and
    /// merged.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
        allowed_hint: Option<usize>,
    ) -> Result<Vec<VectorHit>> {
        self.search_memo(query, k, ef, filter, allowed_hint, None)
    }

    /// [`VectorIndex::search`], with the filter's answers inside the graph walk read from (and
    /// written to) `memo` when given: a node the filter already refused costs a bit test
    /// instead of a lookup of its entity and an evaluation. The caller guarantees that `filter`
    /// gives the same answers as when the memo was filled.
    pub fn search_memo(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
        allowed_hint: Option<usize>,
        memo: Option<&FilterMemo>,
    ) -> Result<Vec<VectorHit>> {
        let ef = ef.unwrap_or(self.options.ef_search);
        validate_ef(ef)?;
        let state = self.state.read();
        let Some(query) = self.prepare_query(&state, query)? else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let allows = |slot: &Slot| filter.is_none_or(|f| f(&slot.entity));
        let live = state.slots.len();
        let exact = filter.is_some()
            && allowed_hint.is_some_and(|allowed| {
                allowed <= self.options.exact_scan_max_allowed
                    || (allowed as f64) <= self.options.exact_scan_max_fraction * live as f64
            });
        let ranker = Ranker {
            metric: self.options.metric,
            distance: self.distance,
            query: &query,
            k,
        };
        if exact {
            return Ok(ranker.rank(&state, state.slots.keys().copied(), &allows));
        }
        // The tail and the engine's points are disjoint (an id is either pending or indexed):
        // the top k of each, merged, are the top k of all.
        let mut hits = ranker.rank(&state, state.pending.iter().copied(), &allows);
        let engine_len = state.engine.len();
        if engine_len > 0 {
            let to_hit = |(id, distance): &(usize, f32)| {
                state.slots.get(id).map(|slot| VectorHit {
                    entity_id: slot.entity.clone(),
                    similarity: self.options.metric.similarity_from_distance(*distance),
                })
            };
            match filter {
                Some(filter) => {
                    let allow = |id: usize| {
                        if memo.is_some_and(|m| m.known(id) == Some(false)) {
                            return false;
                        }
                        state.slots.get(&id).is_some_and(|slot| {
                            slot.indexed()
                                && match memo {
                                    Some(memo) => memo.get_or(id, || filter(&slot.entity)),
                                    None => filter(&slot.entity),
                                }
                        })
                    };
                    let width = allowed_hint
                        .and_then(|allowed| two_hop_width(&self.options, allowed, live));
                    let raw = match (memo, width) {
                        (Some(memo), Some(width)) => {
                            let refused = |id: usize| memo.known(id) == Some(false);
                            state.engine.search_filtered_refusing(
                                &query,
                                k,
                                ef.max(k),
                                &allow,
                                &refused,
                                width,
                            )
                        }
                        _ => state.engine.search_filtered(&query, k, ef.max(k), &allow),
                    };
                    let found = raw.len() + hits.len();
                    if found < k && allowed_hint.is_none_or(|allowed| allowed > found) {
                        // The walk found fewer allowed nodes than may exist: scan exactly.
                        return Ok(ranker.rank(&state, state.slots.keys().copied(), &allows));
                    }
                    hits.extend(raw.iter().filter_map(to_hit));
                }
                None => {
                    // Over-fetch to make up for stale points.
                    let stale_factor = engine_len as f64 / state.indexed_live.max(1) as f64;
                    let mut fetch = ((k as f64 * stale_factor).ceil() as usize)
                        .max(k)
                        .min(engine_len);
                    loop {
                        // ef at twice the fetch keeps the tail of an over-fetched list accurate.
                        let raw =
                            state
                                .engine
                                .search(&query, fetch, ef.max(fetch.saturating_mul(2)));
                        let exhausted = raw.len() < fetch || fetch >= engine_len;
                        // The engine's distances are exact: its live hits need no second look
                        // at their vectors.
                        let accepted: Vec<VectorHit> = raw
                            .iter()
                            .filter(|(id, _)| state.slots.get(id).is_some_and(Slot::indexed))
                            .filter_map(to_hit)
                            .collect();
                        if accepted.len() >= k || exhausted {
                            hits.extend(accepted);
                            break;
                        }
                        fetch = fetch.saturating_mul(2).min(engine_len);
                    }
                }
            }
        }
        sort_hits(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }

    /// Exact search restricted to `entity_ids` (for filters that already know the allowed set).
    pub fn search_among(
        &self,
        query: &[f32],
        k: usize,
        entity_ids: &[&str],
    ) -> Result<Vec<VectorHit>> {
        let state = self.state.read();
        let Some(query) = self.prepare_query(&state, query)? else {
            return Ok(Vec::new());
        };
        let ids: Vec<usize> = entity_ids
            .iter()
            .filter_map(|e| state.by_entity.get(*e).copied())
            .collect();
        let ranker = Ranker {
            metric: self.options.metric,
            distance: self.distance,
            query: &query,
            k,
        };
        Ok(ranker.rank(&state, ids.into_iter(), &|_| true))
    }

    /// Similarity of each entity's live vector to `query` (`None`: no vector). Used to score
    /// graph-expanded candidates with their own similarity.
    pub fn similarities(&self, query: &[f32], entity_ids: &[&str]) -> Result<Vec<Option<f32>>> {
        let state = self.state.read();
        let Some(query) = self.prepare_query(&state, query)? else {
            return Ok(vec![None; entity_ids.len()]);
        };
        let mut positions = Vec::with_capacity(entity_ids.len());
        let mut found = Vec::with_capacity(entity_ids.len());
        for (position, entity) in entity_ids.iter().enumerate() {
            if let Some((id, slot)) = state
                .by_entity
                .get(*entity)
                .and_then(|id| state.slots.get_key_value(id))
            {
                positions.push(position);
                found.push((*id, slot));
            }
        }
        let mut similarities = vec![None; entity_ids.len()];
        state.visit_vectors(&found, &mut |at, vector| {
            // Through the default engine's distance kernel, like every similarity its searches
            // report, so a seed's similarity and a looked-up one agree to the bit.
            let distance = (self.distance)(&query, vector);
            similarities[positions[at]] =
                Some(self.options.metric.similarity_from_distance(distance));
        });
        Ok(similarities)
    }

    /// Validates and prepares a query; `None` when the index has no dimension yet (empty).
    fn prepare_query(&self, state: &State, query: &[f32]) -> Result<Option<Vec<f32>>> {
        match state.dimension {
            None => {
                self.options.metric.prepare(query)?;
                Ok(None)
            }
            Some(_) => self.prepare(state.dimension, query).map(Some),
        }
    }
}

impl State {
    /// Calls `visit(position, vector)` for each `slots[position]` (live ids and their slots):
    /// pending vectors from their slots, indexed ones from the engine under its read lock.
    fn visit_vectors(&self, slots: &[(usize, &Slot)], visit: &mut dyn FnMut(usize, &[f32])) {
        let mut engine_ids = Vec::new();
        let mut engine_positions = Vec::new();
        for (position, (id, slot)) in slots.iter().enumerate() {
            match &slot.vector {
                Some(vector) => visit(position, vector),
                None => {
                    engine_ids.push(*id);
                    engine_positions.push(position);
                }
            }
        }
        if !engine_ids.is_empty() {
            self.engine.visit_vectors(&engine_ids, &mut |at, vector| {
                visit(engine_positions[at], vector);
            });
        }
    }
}

/// Exact top-k selection over a set of live ids: the engine's SIMD distance ranks them (it
/// orders like the metric's similarity), and the k selected get their similarity from it.
struct Ranker<'q> {
    metric: Metric,
    distance: DistanceFn,
    query: &'q [f32],
    k: usize,
}

impl Ranker<'_> {
    /// The top `k` of the live, allowed ids among `ids` (which must not repeat an id),
    /// similarity descending, ties by entity id. Indexed vectors are read from the engine.
    fn rank(
        &self,
        state: &State,
        ids: impl Iterator<Item = usize>,
        allows: &dyn Fn(&Slot) -> bool,
    ) -> Vec<VectorHit> {
        let candidates: Vec<(usize, &Slot)> = ids
            .filter_map(|id| state.slots.get_key_value(&id))
            .filter(|(_, slot)| allows(slot))
            .map(|(id, slot)| (*id, slot))
            .collect();
        // (distance, position in `candidates`)
        let mut scored: Vec<(f32, usize)> = Vec::with_capacity(candidates.len());
        state.visit_vectors(&candidates, &mut |at, vector| {
            scored.push(((self.distance)(self.query, vector), at));
        });
        let closer = |a: &(f32, usize), b: &(f32, usize)| {
            a.0.total_cmp(&b.0)
                .then_with(|| candidates[a.1].1.entity.cmp(&candidates[b.1].1.entity))
        };
        if scored.len() > self.k {
            scored.select_nth_unstable_by(self.k, closer);
            scored.truncate(self.k);
        }
        let mut hits: Vec<VectorHit> = scored
            .iter()
            .map(|(distance, at)| VectorHit {
                entity_id: candidates[*at].1.entity.clone(),
                similarity: self.metric.similarity_from_distance(*distance),
            })
            .collect();
        sort_hits(&mut hits);
        hits
    }
}

/// Similarity descending, then entity id ascending.
pub(crate) fn sort_hits(hits: &mut [VectorHit]) {
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
}
