//! The cells of entity-level mutations (DESIGN.md §2): put-replace, delete, edge add/remove,
//! planned as a [`WriteBatch`] from the stored partitions they replace and one timestamp.
//!
//! Owns the rules that keep both ends of an edge in step (an out-edge cell in the source's
//! partition, an in-edge cell in the target's). Pure: no I/O, no clock, no locks. The engine
//! plans under its entity locks with partitions it read itself; a cluster coordinator plans
//! with partitions it read from replicas and sends each partition's cells to its replicas. Both
//! apply the same cells with the same timestamps, so replicas converge cell by cell
//! (last-write-wins by timestamp).
//!
//! Must never: produce a batch that writes one cell twice (each cell gets one deterministic
//! final value), or accept an id, relation or weight the key codec or the scorer cannot hold.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::batch::WriteBatch;
use crate::cell::{Edge, EdgeRef, EdgeValue, EdgeWrite, EntityWrite, MarkerValue};
use crate::error::{Error, Result};
use crate::key::{self, CellKey};
use crate::partition::PartitionState;
use crate::types::Timestamp;

/// Cell writes of one mutation, keyed by encoded cell key so that each cell is written once
/// with a deterministic final value (a later write of the same cell replaces an earlier one).
#[derive(Default)]
pub(crate) struct CellWrites {
    cells: BTreeMap<Vec<u8>, (Timestamp, Option<Vec<u8>>)>,
}

impl CellWrites {
    pub(crate) fn set(&mut self, key: CellKey, ts: Timestamp, value: Option<Vec<u8>>) {
        self.cells.insert(key.encode(), (ts, value));
    }

    /// The marker of `id` at `ts`, keeping the in-edge bound of the marker it replaces.
    fn marker(&mut self, tenant: &str, id: &str, ts: Timestamp, existing: &PartitionState) {
        let value = MarkerValue {
            in_edges_upto: existing.in_edges_hidden_upto,
        };
        self.set(CellKey::marker(tenant, id), ts, Some(value.encode()));
    }

    pub(crate) fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for (key, (ts, value)) in self.cells {
            match value {
                Some(v) => batch.put(key, ts, v),
                None => batch.delete(key, ts),
            }
        }
        batch
    }
}

fn validate_edge(what: &str, relation: &str, other: &str) -> Result<()> {
    key::validate_relation(relation)
        .and_then(|()| key::validate_id(other))
        .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

fn edge_value(e: &EdgeWrite, now_nanos: i64) -> Result<Vec<u8>> {
    if !e.weight.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "edge weight must be finite, got {}",
            e.weight
        )));
    }
    let timestamp_nanos = if e.timestamp_nanos != 0 {
        e.timestamp_nanos
    } else {
        now_nanos
    };
    EdgeValue {
        weight: e.weight,
        timestamp_nanos,
        sources: e.sources.clone(),
    }
    .encode()
}

/// Nanoseconds of a write timestamp (microseconds), the default edge timestamp.
fn nanos(ts: Timestamp) -> i64 {
    (ts as i64).saturating_mul(1000)
}

/// Validates a put's entities and keeps, for each id, its last write (a repeated id: the last
/// write wins). Returns the winners in request order.
pub fn put_winners<'w>(tenant: &str, writes: &'w [EntityWrite]) -> Result<Vec<&'w EntityWrite>> {
    key::validate_tenant(tenant)?;
    if writes.is_empty() {
        return Err(Error::InvalidArgument("no entity to write".to_owned()));
    }
    let mut last_by_id: HashMap<&str, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        key::validate_id(&w.id)?;
        for e in &w.out_edges {
            validate_edge(&format!("out-edge of {}", w.id), &e.relation, &e.other)?;
        }
        for e in &w.in_edges {
            validate_edge(&format!("in-edge of {}", w.id), &e.relation, &e.other)?;
        }
        last_by_id.insert(&w.id, i);
    }
    Ok(writes
        .iter()
        .enumerate()
        .filter(|(i, w)| last_by_id[w.id.as_str()] == *i)
        .map(|(_, w)| w)
        .collect())
}

/// The cells of a put-replace of `winners` (from [`put_winners`]), given each one's stored
/// partition (same order): a marker at `ts - 1` shadows the older body and out-edges, then the
/// body, the out-edges (each also written as its target's in-edge) and the in-edges are written
/// at `ts`. Out-edges the entity had and no longer has are removed from their targets; in-edges
/// written by other entities' out-edges are kept (the marker does not hide them, so a put never
/// rewrites them); `created_at` is kept from the stored body. Each source of a body gets the
/// entity's member cell ([`crate::provenance`]).
pub fn plan_put(
    tenant: &str,
    winners: &[&EntityWrite],
    stored: &[PartitionState],
    ts: Timestamp,
) -> Result<WriteBatch> {
    let mut cells = CellWrites::default();
    put_cells(&mut cells, tenant, winners, stored, ts)?;
    Ok(cells.into_batch())
}

/// Adds the cells of [`plan_put`] to `cells`.
pub(crate) fn put_cells(
    cells: &mut CellWrites,
    tenant: &str,
    winners: &[&EntityWrite],
    stored: &[PartitionState],
    ts: Timestamp,
) -> Result<()> {
    let now_nanos = nanos(ts);
    for (w, existing) in winners.iter().zip(stored) {
        let mut body = w.body.clone();
        if let Some(old) = &existing.body {
            body.created_at_nanos = old.created_at_nanos;
        }
        cells.marker(tenant, &w.id, ts - 1, existing);
        cells.set(CellKey::body(tenant, &w.id), ts, Some(body.encode()?));
        for source in &body.sources {
            cells.set(
                CellKey::source_member(tenant, source, &w.id),
                ts,
                Some(Vec::new()),
            );
        }
        let mut new_out = BTreeSet::new();
        for e in &w.out_edges {
            let value = edge_value(e, now_nanos)?;
            new_out.insert((e.relation.as_str(), e.other.as_str()));
            cells.set(
                CellKey::out_edge(tenant, &w.id, &e.relation, &e.other),
                ts,
                Some(value.clone()),
            );
            cells.set(
                CellKey::in_edge(tenant, &w.id, &e.relation, &e.other),
                ts,
                Some(value),
            );
        }
        for old in &existing.out_edges {
            if !new_out.contains(&(old.relation.as_str(), old.to.as_str())) {
                cells.set(
                    CellKey::in_edge(tenant, &w.id, &old.relation, &old.to),
                    ts,
                    None,
                );
            }
        }
        for e in &w.in_edges {
            cells.set(
                CellKey::in_edge(tenant, &e.other, &e.relation, &w.id),
                ts,
                Some(edge_value(e, now_nanos)?),
            );
        }
    }
    Ok(())
}

/// The cells of a delete of `id` given its stored partition: a marker at `ts` hides its body
/// and out-edges, and both ends of every edge are removed (each out-edge's in-edge at its target,
/// each in-edge here and its out-edge at the source). `None` when no live entity is stored
/// (nothing to write).
pub fn plan_delete(
    tenant: &str,
    id: &str,
    existing: &PartitionState,
    ts: Timestamp,
) -> Option<WriteBatch> {
    existing.body.as_ref()?;
    let mut cells = CellWrites::default();
    delete_cells(&mut cells, tenant, id, existing, ts);
    Some(cells.into_batch())
}

/// Adds the cells of [`plan_delete`] to `cells` (whatever the stored state).
pub(crate) fn delete_cells(
    cells: &mut CellWrites,
    tenant: &str,
    id: &str,
    existing: &PartitionState,
    ts: Timestamp,
) {
    cells.marker(tenant, id, ts, existing);
    for e in &existing.out_edges {
        cells.set(CellKey::in_edge(tenant, id, &e.relation, &e.to), ts, None);
    }
    for e in &existing.in_edges {
        cells.set(CellKey::in_edge(tenant, &e.from, &e.relation, id), ts, None);
        cells.set(
            CellKey::out_edge(tenant, &e.from, &e.relation, id),
            ts,
            None,
        );
    }
}

/// The cells of the expiry of `id` given its stored partition: a marker at the live body's own
/// timestamp, which hides that body and the out-edges written with or before it, exactly what
/// the put that set the expiry wrote (its in-edge bound is carried over, so in-edges that other
/// entities' out-edges wrote stay). A later put (a later timestamp) is never hidden, whichever
/// replica it reaches first, and every replica that expires the same body writes the same
/// cell. `None` when no live body has expired at `now_nanos` (nothing to write).
pub fn plan_expire(
    tenant: &str,
    id: &str,
    existing: &PartitionState,
    now_nanos: i64,
) -> Option<WriteBatch> {
    if !existing.body.as_ref()?.expired_at(now_nanos) {
        return None;
    }
    let mut cells = CellWrites::default();
    cells.marker(tenant, id, existing.body_ts, existing);
    Some(cells.into_batch())
}

/// Validates edges given as `(from, relation, to)`.
pub fn validate_edges<'e>(
    tenant: &str,
    edges: impl Iterator<Item = (&'e str, &'e str, &'e str)>,
) -> Result<()> {
    key::validate_tenant(tenant)?;
    for (from, relation, to) in edges {
        key::validate_id(from)?;
        validate_edge("edge", relation, to)?;
    }
    Ok(())
}

/// The cells of an edge add (or overwrite): each edge's out-edge cell at the source and in-edge
/// cell at the target, without touching either entity's other cells.
pub fn plan_add_edges(tenant: &str, edges: &[Edge], ts: Timestamp) -> Result<WriteBatch> {
    validate_edges(tenant, edges.iter().map(Edge::ends))?;
    let now_nanos = nanos(ts);
    let mut cells = CellWrites::default();
    for e in edges {
        let write = EdgeWrite {
            relation: e.relation.clone(),
            other: e.to.clone(),
            weight: e.weight,
            timestamp_nanos: e.timestamp_nanos,
            sources: e.sources.clone(),
        };
        let value = edge_value(&write, now_nanos)?;
        cells.set(
            CellKey::out_edge(tenant, &e.from, &e.relation, &e.to),
            ts,
            Some(value.clone()),
        );
        cells.set(
            CellKey::in_edge(tenant, &e.from, &e.relation, &e.to),
            ts,
            Some(value),
        );
    }
    Ok(cells.into_batch())
}

/// The cells of an edge removal: tombstones for both cells of each edge.
pub fn plan_remove_edges(tenant: &str, edges: &[EdgeRef], ts: Timestamp) -> Result<WriteBatch> {
    validate_edges(tenant, edges.iter().map(EdgeRef::ends))?;
    let mut cells = CellWrites::default();
    for e in edges {
        cells.set(
            CellKey::out_edge(tenant, &e.from, &e.relation, &e.to),
            ts,
            None,
        );
        cells.set(
            CellKey::in_edge(tenant, &e.from, &e.relation, &e.to),
            ts,
            None,
        );
    }
    Ok(cells.into_batch())
}
