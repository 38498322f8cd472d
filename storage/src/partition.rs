//! Resolution of one entity's cells into its live state (DESIGN.md §2): the rule every read and
//! every compaction agrees on.
//!
//! Given the newest visible version of each cell of one partition:
//! * the marker's timestamp `M` (if any) shadows every cell with `ts <= M`;
//! * a tombstone removes its cell;
//! * the entity exists iff its body is live; edge cells may outlive the body (an in-edge of an
//!   entity not written yet), which is why writers read a [`PartitionState`], not an `Entity`.

use crate::cell::{Edge, EdgeValue, Entity, EntityBody};
use crate::error::Result;
use crate::key::{CellKey, CellSuffix};
use crate::types::Timestamp;

/// The newest visible version of one cell: `(encoded key, timestamp, value or tombstone)`.
pub type CellVersion = (Vec<u8>, Timestamp, Option<Vec<u8>>);

/// The live cells of one partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionState {
    /// Timestamp of the newest marker, if any.
    pub marker_ts: Option<Timestamp>,
    /// The live body.
    pub body: Option<EntityBody>,
    /// Live out-edges, by (relation, to).
    pub out_edges: Vec<Edge>,
    /// Live in-edges, by (relation, from).
    pub in_edges: Vec<Edge>,
    /// Newest timestamp among live cells.
    pub version_ts: Timestamp,
}

impl PartitionState {
    /// Resolves the newest versions of one partition's cells (given in key order, all of the same
    /// partition, marker first if present).
    pub fn resolve(cells: impl IntoIterator<Item = CellVersion>) -> Result<Self> {
        let mut state = PartitionState::default();
        for (key, ts, value) in cells {
            let key = CellKey::decode(&key)?;
            if key.suffix == CellSuffix::Marker {
                if value.is_some() {
                    state.marker_ts = Some(ts);
                }
                continue;
            }
            let Some(value) = value else { continue };
            if state.marker_ts.is_some_and(|m| ts <= m) {
                continue;
            }
            state.version_ts = state.version_ts.max(ts);
            match key.suffix {
                CellSuffix::Marker => {}
                CellSuffix::Body => state.body = Some(EntityBody::decode(&value)?),
                CellSuffix::OutEdge { relation, to } => {
                    let v = EdgeValue::decode(&value)?;
                    state.out_edges.push(Edge {
                        from: key.entity_id.clone(),
                        to,
                        relation,
                        weight: v.weight,
                        timestamp_nanos: v.timestamp_nanos,
                    });
                }
                CellSuffix::InEdge { relation, from } => {
                    let v = EdgeValue::decode(&value)?;
                    state.in_edges.push(Edge {
                        from,
                        to: key.entity_id.clone(),
                        relation,
                        weight: v.weight,
                        timestamp_nanos: v.timestamp_nanos,
                    });
                }
            }
        }
        Ok(state)
    }

    /// The entity, if its body is live.
    pub fn into_entity(self, tenant: &str, id: &str) -> Option<Entity> {
        let body = self.body?;
        Some(Entity {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            body,
            out_edges: self.out_edges,
            in_edges: self.in_edges,
            version_ts: self.version_ts,
        })
    }
}
