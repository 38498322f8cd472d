//! Source provenance (issue 39, docs/storage.md "Provenance"): the rules that merge the support
//! of entities written from several sources, and the cells of `DeleteBySource` and
//! `ReplaceSource`, planned from stored partitions and timestamps like every mutation in
//! [`crate::mutation`]. Pure: no I/O, no clock, no locks.
//!
//! Invariants:
//! * every source list (of a body, a chunk, an edge) is sorted and without repeats, and the
//!   lists of a body's chunks and out/in-edges name only sources of the body
//!   ([`normalise_sources`]); so the entities written with a source cover everything it
//!   supports;
//! * every entity stored with a source has a live member cell in that source's member partition
//!   (written by the same batch as its body); the members are a superset (an entity rewritten
//!   without the source keeps a stale member cell, which a delete skips and removes);
//! * a source delete removes what only that source supports (the entity with both ends of every
//!   edge; a chunk; an edge's two cells) and takes the source off what others support too; every
//!   cell it writes carries one timestamp, so replicas, hints and repair converge on it by
//!   last-write-wins like on any write.

use std::collections::{BTreeMap, BTreeSet};

use crate::batch::WriteBatch;
use crate::cell::{Edge, EdgeValue, EdgeWrite, EntityBody, EntityWrite, TextChunk};
use crate::error::{Error, Result};
use crate::key::{self, CellKey};
use crate::mutation::{self, CellWrites};
use crate::partition::PartitionState;
use crate::types::Timestamp;

/// How a put treats the stored entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PutMode {
    /// The put replaces the entity (the default, `PutEntity`'s contract).
    #[default]
    Replace,
    /// The put merges into the stored entity ([`merge_write`]): sources, chunks, edges and
    /// attributes are unioned.
    MergeSources,
}

/// Sorts and dedups a source list, validating each id.
fn normalise_list(what: &str, sources: &mut Vec<String>) -> Result<()> {
    for s in sources.iter() {
        key::validate_source(s).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
    }
    sources.sort_unstable();
    sources.dedup();
    Ok(())
}

/// A part's sources: empty inherits the body's; otherwise they must be among the body's.
fn normalise_part(what: &str, sources: &mut Vec<String>, body: &[String]) -> Result<()> {
    if sources.is_empty() {
        sources.extend_from_slice(body);
        return Ok(());
    }
    normalise_list(what, sources)?;
    match sources.iter().find(|s| body.binary_search(s).is_err()) {
        Some(s) => Err(Error::InvalidArgument(format!(
            "{what}: source {s:?} is not among the entity's sources"
        ))),
        None => Ok(()),
    }
}

/// Validates and normalises the sources of a write (see the module invariants): the body's are
/// sorted and deduplicated; a chunk or edge without sources takes the body's.
pub fn normalise_sources(write: &mut EntityWrite) -> Result<()> {
    let unsourced = write.body.sources.is_empty()
        && write.body.chunks.iter().all(|c| c.sources.is_empty())
        && write
            .out_edges
            .iter()
            .chain(&write.in_edges)
            .all(|e| e.sources.is_empty());
    if unsourced {
        return Ok(());
    }
    let id = write.id.clone();
    normalise_list(&format!("entity {id}"), &mut write.body.sources)?;
    let body = write.body.sources.clone();
    for c in &mut write.body.chunks {
        normalise_part(
            &format!("entity {id} chunk {:?}", c.chunk_id),
            &mut c.sources,
            &body,
        )?;
    }
    for e in write.out_edges.iter_mut().chain(&mut write.in_edges) {
        normalise_part(
            &format!("entity {id} edge {:?} {:?}", e.relation, e.other),
            &mut e.sources,
            &body,
        )?;
    }
    Ok(())
}

/// The member partition ids of every source the writes' bodies carry, sorted, no repeats.
pub fn source_partitions(writes: &[&EntityWrite]) -> Vec<String> {
    let ids: BTreeSet<String> = writes
        .iter()
        .flat_map(|w| &w.body.sources)
        .map(|s| key::source_partition_id(s))
        .collect();
    ids.into_iter().collect()
}

/// The sorted union of two sorted source lists.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = a.iter().chain(b).cloned().collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn without(sources: &[String], source: &str) -> Vec<String> {
    sources.iter().filter(|s| *s != source).cloned().collect()
}

fn edge_write(e: &Edge, other: &str) -> EdgeWrite {
    EdgeWrite {
        relation: e.relation.clone(),
        other: other.to_owned(),
        weight: e.weight,
        timestamp_nanos: e.timestamp_nanos,
        sources: e.sources.clone(),
    }
}

/// Merges a list of parts keyed by `key`: the stored ones first, a new one replacing the stored
/// one of its key with the union of both source lists.
fn merge_keyed<T: Clone, K: Ord>(
    stored: Vec<T>,
    new: &[T],
    key: impl Fn(&T) -> K,
    sources: impl Fn(&mut T) -> &mut Vec<String>,
) -> Vec<T> {
    let mut by_key: BTreeMap<K, T> = stored.into_iter().map(|t| (key(&t), t)).collect();
    for n in new {
        let mut merged = n.clone();
        if let Some(old) = by_key.get_mut(&key(n)) {
            let both = union(sources(old), sources(&mut merged));
            *sources(&mut merged) = both;
        }
        by_key.insert(key(n), merged);
    }
    by_key.into_values().collect()
}

/// The write a [`PutMode::MergeSources`] put of `new` makes over the `stored` partition: scalar
/// fields (type, importance, and the embeddings when the new write has any) come from the new
/// write; attributes merge key by key (the new value wins); chunks merge by chunk id and edges by
/// (relation, other end), a part in both taking the new value and the union of both source lists;
/// the body's sources are the union. Without a stored body the write is `new` itself.
pub fn merge_write(new: &EntityWrite, stored: &PartitionState) -> EntityWrite {
    let Some(old) = &stored.body else {
        return new.clone();
    };
    let mut body: EntityBody = new.body.clone();
    if body.embeddings.is_empty() {
        body.embeddings = old.embeddings.clone();
    }
    if body.entity_type.is_empty() {
        body.entity_type = old.entity_type.clone();
    }
    for (k, v) in &old.attributes {
        if !body.typed_attributes.contains_key(k) {
            body.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
    for (k, v) in &old.typed_attributes {
        if !body.attributes.contains_key(k) {
            body.typed_attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
    body.sources = union(&old.sources, &new.body.sources);
    body.chunks = merge_keyed(
        old.chunks.clone(),
        &new.body.chunks,
        |c: &TextChunk| c.chunk_id.clone(),
        |c| &mut c.sources,
    );
    let stored_out: Vec<EdgeWrite> = stored
        .out_edges
        .iter()
        .map(|e| edge_write(e, &e.to))
        .collect();
    let out_edges = merge_keyed(
        stored_out,
        &new.out_edges,
        |e: &EdgeWrite| (e.relation.clone(), e.other.clone()),
        |e| &mut e.sources,
    );
    // Stored in-edges stay (a put never hides them); only the ones the write names are merged.
    let in_edges = new
        .in_edges
        .iter()
        .map(|n| {
            let mut merged = n.clone();
            if let Some(old) = stored
                .in_edges
                .iter()
                .find(|e| e.relation == n.relation && e.from == n.other)
            {
                merged.sources = union(&old.sources, &n.sources);
            }
            merged
        })
        .collect();
    EntityWrite {
        id: new.id.clone(),
        body,
        out_edges,
        in_edges,
    }
}

/// What a source delete does to one stored entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Stripped {
    /// The entity does not carry the source (a stale member): nothing changes.
    Untouched,
    /// Only the source supports the entity: it goes, with its edges both ways.
    Deleted,
    /// Others support it too: it stays with this state (the source taken off the body, its
    /// chunks and edges; what only the source supported removed).
    Kept(Box<PartitionState>),
}

/// `stored` with `source` taken off its body, chunks and edges, and the chunks and edges only
/// it supported removed (the body stays, even when its sources become empty).
fn strip_parts(stored: &PartitionState, source: &str) -> PartitionState {
    let strip_edges = |edges: &[Edge]| -> Vec<Edge> {
        edges
            .iter()
            .filter(|e| e.sources != [source])
            .map(|e| Edge {
                sources: without(&e.sources, source),
                ..e.clone()
            })
            .collect()
    };
    let mut kept = stored.clone();
    if let Some(body) = kept.body.as_mut() {
        body.sources = without(&body.sources, source);
        body.chunks = std::mem::take(&mut body.chunks)
            .into_iter()
            .filter(|c| c.sources != [source])
            .map(|c| TextChunk {
                sources: without(&c.sources, source),
                ..c
            })
            .collect();
    }
    kept.out_edges = strip_edges(&stored.out_edges);
    kept.in_edges = strip_edges(&stored.in_edges);
    kept
}

/// `stored` with `source` taken off (see [`Stripped`]).
pub fn strip_source(stored: &PartitionState, source: &str) -> Stripped {
    let Some(body) = &stored.body else {
        return Stripped::Untouched;
    };
    if body
        .sources
        .binary_search_by(|s| s.as_str().cmp(source))
        .is_err()
    {
        return Stripped::Untouched;
    }
    if body.sources.len() == 1 {
        return Stripped::Deleted;
    }
    Stripped::Kept(Box::new(strip_parts(stored, source)))
}

/// What a source delete changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceDeleted {
    /// Entities removed (only that source supported them).
    pub deleted: u64,
    /// Entities kept with the source taken off.
    pub updated: u64,
}

/// One member of a source: its id and stored partition.
pub type Member = (String, PartitionState);

fn edge_cell(e: &Edge) -> Result<Vec<u8>> {
    EdgeValue {
        weight: e.weight,
        timestamp_nanos: e.timestamp_nanos,
        sources: e.sources.clone(),
    }
    .encode()
}

/// Sets the edge cells of `id` that changed from `stored` to `kept`: both cells of a changed
/// out-edge, the in-edge cell of a changed in-edge (a tombstone for one that went).
fn changed_edge_cells(
    cells: &mut CellWrites,
    tenant: &str,
    id: &str,
    stored: &PartitionState,
    kept: &PartitionState,
    ts: Timestamp,
) -> Result<()> {
    for old in &stored.out_edges {
        let new = kept
            .out_edges
            .iter()
            .find(|e| e.relation == old.relation && e.to == old.to);
        if new.is_some_and(|n| n.sources == old.sources) {
            continue;
        }
        let value = new.map(edge_cell).transpose()?;
        cells.set(
            CellKey::out_edge(tenant, id, &old.relation, &old.to),
            ts,
            value.clone(),
        );
        cells.set(
            CellKey::in_edge(tenant, id, &old.relation, &old.to),
            ts,
            value,
        );
    }
    for old in &stored.in_edges {
        let new = kept
            .in_edges
            .iter()
            .find(|e| e.relation == old.relation && e.from == old.from);
        if new.is_some_and(|n| n.sources == old.sources) {
            continue;
        }
        let value = new.map(edge_cell).transpose()?;
        cells.set(
            CellKey::in_edge(tenant, &old.from, &old.relation, id),
            ts,
            value,
        );
    }
    Ok(())
}

/// Adds the cells of a delete of `source` at `ts` to `cells`: the kept entities' changed cells
/// first, then the deleted entities' (their tombstones win over a kept neighbour's rewrite of
/// the same edge), then a tombstone for every member cell. An entity only the source supports
/// but that `rewritten` names (`ReplaceSource` writes it again in the same step) is not deleted:
/// only its chunks and edges lose the source, its body being replaced by the new version.
fn source_delete_cells(
    cells: &mut CellWrites,
    tenant: &str,
    source: &str,
    members: &[Member],
    rewritten: &BTreeSet<&str>,
    ts: Timestamp,
) -> Result<SourceDeleted> {
    let mut done = SourceDeleted::default();
    let mut deleted = Vec::new();
    for (id, stored) in members {
        match strip_source(stored, source) {
            Stripped::Untouched => {}
            Stripped::Deleted if !rewritten.contains(id.as_str()) => deleted.push((id, stored)),
            Stripped::Deleted => {
                done.updated += 1;
                changed_edge_cells(cells, tenant, id, stored, &strip_parts(stored, source), ts)?;
            }
            Stripped::Kept(kept) => {
                done.updated += 1;
                let body = kept.body.as_ref().expect("a kept entity has a body");
                cells.set(CellKey::body(tenant, id), ts, Some(body.encode()?));
                changed_edge_cells(cells, tenant, id, stored, &kept, ts)?;
            }
        }
    }
    for (id, stored) in deleted {
        done.deleted += 1;
        mutation::delete_cells(cells, tenant, id, stored, ts);
    }
    for (id, _) in members {
        cells.set(CellKey::source_member(tenant, source, id), ts, None);
    }
    Ok(done)
}

/// The cells of `DeleteBySource(source)` at `ts`, given every member of the source with its
/// stored partition (see [`source_delete_cells`]); `None` when there is nothing to write.
pub fn plan_source_delete(
    tenant: &str,
    source: &str,
    members: &[Member],
    ts: Timestamp,
) -> Result<Option<(WriteBatch, SourceDeleted)>> {
    key::validate_tenant(tenant)?;
    key::validate_source(source)?;
    if members.is_empty() {
        return Ok(None);
    }
    let mut cells = CellWrites::default();
    let done = source_delete_cells(&mut cells, tenant, source, members, &BTreeSet::new(), ts)?;
    Ok(Some((cells.into_batch(), done)))
}

/// The partition a write merges into after the source delete of the same step.
fn after_delete(stored: &PartitionState, source: &str) -> PartitionState {
    match strip_source(stored, source) {
        Stripped::Untouched => stored.clone(),
        Stripped::Deleted => PartitionState {
            body: None,
            ..strip_parts(stored, source)
        },
        Stripped::Kept(kept) => *kept,
    }
}

/// Gives every write exactly `source` (the body, each chunk and each edge): a write naming
/// another source anywhere is refused.
pub fn assign_source(writes: &mut [EntityWrite], source: &str) -> Result<()> {
    key::validate_source(source)?;
    for w in writes.iter_mut() {
        let chunks = w.body.chunks.iter().map(|c| &c.sources);
        let edges = w.out_edges.iter().chain(&w.in_edges).map(|e| &e.sources);
        let mut named = std::iter::once(&w.body.sources)
            .chain(chunks)
            .chain(edges)
            .flatten();
        if let Some(other) = named.find(|s| *s != source) {
            return Err(Error::InvalidArgument(format!(
                "entity {}: a ReplaceSource entity may carry only the replaced source \
                 {source:?}, not {other:?}",
                w.id
            )));
        }
        w.body.sources = vec![source.to_owned()];
        normalise_sources(w)?;
    }
    Ok(())
}

/// The cells of `ReplaceSource(source, writes)`: the source delete at `delete_ts`, then the
/// writes (already given the source by [`assign_source`]) merged into what the delete leaves
/// and put at `put_ts > delete_ts`, in one batch. `winners` come from
/// [`mutation::put_winners`]; `stored` holds each winner's stored partition (same order).
pub fn plan_replace_source(
    tenant: &str,
    source: &str,
    members: &[Member],
    winners: &[&EntityWrite],
    stored: &[PartitionState],
    delete_ts: Timestamp,
    put_ts: Timestamp,
) -> Result<(WriteBatch, SourceDeleted)> {
    debug_assert!(put_ts > delete_ts);
    let mut cells = CellWrites::default();
    let rewritten: BTreeSet<&str> = winners.iter().map(|w| w.id.as_str()).collect();
    let done = source_delete_cells(&mut cells, tenant, source, members, &rewritten, delete_ts)?;
    let bases: Vec<PartitionState> = stored.iter().map(|p| after_delete(p, source)).collect();
    let merged: Vec<EntityWrite> = winners
        .iter()
        .zip(&bases)
        .map(|(w, base)| merge_write(w, base))
        .collect();
    let merged: Vec<&EntityWrite> = merged.iter().collect();
    mutation::put_cells(&mut cells, tenant, &merged, &bases, put_ts)?;
    Ok((cells.into_batch(), done))
}

#[cfg(test)]
mod tests;
