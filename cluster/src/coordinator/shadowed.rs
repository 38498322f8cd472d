//! In-edges left behind by a racing write: the step that closes the dangling-edge race of
//! docs/cluster.md "Edges across partitions".
//!
//! A put or delete of `a` removes the in-edges of the out-edges it read; an out-edge written by a
//! concurrent write its read missed ends up shadowed by its marker while that edge's in-edge cell
//! in the target's partition stays live. So every write that sets a marker or out-edges of `a`
//! re-reads `a` at its level once it is written, and tombstones, one microsecond after the
//! marker, the in-edge of every out-edge cell the marker shadows that is newer than the marker
//! its own read saw (older ones were handled by the writes that saw them). Of two racing writes,
//! the one that re-reads last sees both (each is at its level before its re-read), so at QUORUM
//! (R + W > N) at least one of them finds the shadowed cell.
//!
//! Safe whatever it finds: a shadowed out-edge cell is the newest version of its cell, so the
//! edge does not exist; an in-edge of the same edge written later than the marker (the edge
//! added again) is newer than the tombstone and wins.
//!
//! Must never: tombstone an in-edge whose out-edge is live.

use std::collections::BTreeSet;

use allidb_storage::Edge;
use allidb_storage::Timestamp;
use allidb_storage::batch::WriteBatch;
use allidb_storage::key::{CellKey, CellSuffix};
use allidb_storage::partition::PartitionState;

use super::Coordinator;
use super::read::Purpose;
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;

/// One source partition a write set a marker or out-edges of.
#[derive(Debug)]
pub(super) struct WrittenSource {
    /// Entity id of the source.
    id: String,
    /// Out-edge cells at or below this timestamp were handled by earlier writes (the marker the
    /// write's own read saw, or one below the write's timestamp for an edge write).
    handled_upto: Timestamp,
    /// Out-edges `(relation, to)` whose in-edges the write itself removed.
    handled: BTreeSet<(String, String)>,
}

impl WrittenSource {
    /// `id` after a put or delete that read `stored` and removed the stored out-edges for which
    /// `removed` is true.
    pub fn after_replace(
        id: &str,
        stored: &PartitionState,
        removed: impl Fn(&Edge) -> bool,
    ) -> Self {
        Self {
            id: id.to_owned(),
            handled_upto: stored.marker_ts.unwrap_or(0),
            handled: stored
                .out_edges
                .iter()
                .filter(|e| removed(e))
                .map(|e| (e.relation.clone(), e.to.clone()))
                .collect(),
        }
    }

    /// `id` after an edge write at `ts` that added out-edges to it.
    pub fn after_edge_write(id: &str, ts: Timestamp) -> Self {
        Self {
            id: id.to_owned(),
            handled_upto: ts.saturating_sub(1),
            handled: BTreeSet::new(),
        }
    }
}

impl Coordinator {
    /// Re-reads each of `sources` at `level` and writes at `level` the in-edge tombstones of
    /// the out-edges shadowed since `handled_upto` (see the module doc).
    pub(super) async fn remove_shadowed_in_edges(
        &self,
        tenant: &str,
        sources: &[WrittenSource],
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let ids: Vec<&str> = sources.iter().map(|source| source.id.as_str()).collect();
        let read = self
            .read_cells_of(tenant, &ids, level, Purpose::Recheck)
            .await?;
        let mut batch = WriteBatch::new();
        for (source, cells) in sources.iter().zip(read) {
            // Cells come in key order: the marker first.
            let mut marker = None;
            for (key, ts, value) in cells {
                let key = CellKey::decode(&key).map_err(allidb_index::Error::from)?;
                match (key.suffix, marker, value) {
                    (CellSuffix::Marker, _, Some(_)) => marker = Some(ts),
                    (CellSuffix::OutEdge { relation, to }, Some(m), Some(_))
                        if ts > source.handled_upto
                            && ts <= m
                            && !source.handled.contains(&(relation.clone(), to.clone())) =>
                    {
                        let in_edge = CellKey::in_edge(tenant, &source.id, &relation, &to);
                        batch.delete(in_edge.encode(), m + 1);
                    }
                    _ => {}
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        metrics::counter!("allidb_cluster_shadowed_in_edges_removed_total")
            .increment(batch.len() as u64);
        self.write(batch, level).await
    }
}
