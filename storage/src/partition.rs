//! Resolution of one entity's cells into its live state (DESIGN.md §2): the rule every read and
//! every compaction agrees on.
//!
//! Given the newest visible version of each cell of one partition:
//! * the marker's timestamp `M` (if any) shadows the body and out-edge cells with `ts <= M`,
//!   and in-edge cells up to the bound its value carries ([`MarkerValue`]: `M` for markers
//!   written before format 1, otherwise the bound carried from older markers);
//! * a tombstone removes its cell;
//! * the entity exists iff its body is live; edge cells may outlive the body (an in-edge of an
//!   entity not written yet), which is why writers read a [`PartitionState`], not an `Entity`.

use crate::cell::{Edge, EdgeValue, Entity, EntityBody, MarkerValue};
use crate::error::Result;
use crate::key::{CellKey, CellSuffix};
use crate::types::Timestamp;

/// The newest visible version of one cell: `(encoded key, timestamp, value or tombstone)`.
pub type CellVersion = (Vec<u8>, Timestamp, Option<Vec<u8>>);

/// Bytes of the cells of `cells` that hold a value (keys and values, before compression;
/// tombstones count nothing): what a tenant's `bytes` figure adds up.
pub fn live_bytes(cells: &[CellVersion]) -> u64 {
    cells
        .iter()
        .filter_map(|(key, _, value)| value.as_ref().map(|v| (key.len() + v.len()) as u64))
        .sum()
}

/// The live cells of one partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionState {
    /// Timestamp of the newest marker, if any.
    pub marker_ts: Option<Timestamp>,
    /// In-edge cells at or before this timestamp are hidden (0: none; see [`MarkerValue`]).
    pub in_edges_hidden_upto: Timestamp,
    /// The live body.
    pub body: Option<EntityBody>,
    /// Timestamp of the live body's cell (0 without one).
    pub body_ts: Timestamp,
    /// Live out-edges, by (relation, to).
    pub out_edges: Vec<Edge>,
    /// Live in-edges, by (relation, from).
    pub in_edges: Vec<Edge>,
    /// Newest timestamp among live cells.
    pub version_ts: Timestamp,
    /// Live source-member cells (only in a source's member partition), in id order.
    pub members: Vec<String>,
}

impl PartitionState {
    /// Resolves the newest versions of one partition's cells (given in key order, all of the same
    /// partition, marker first if present).
    pub fn resolve(cells: impl IntoIterator<Item = CellVersion>) -> Result<Self> {
        let mut state = PartitionState::default();
        for (key, ts, value) in cells {
            let key = CellKey::decode(&key)?;
            if key.suffix == CellSuffix::Marker {
                if let Some(value) = value {
                    state.marker_ts = Some(ts);
                    state.in_edges_hidden_upto = MarkerValue::decode(ts, &value).in_edges_upto;
                }
                continue;
            }
            let Some(value) = value else { continue };
            let hidden = match key.suffix {
                CellSuffix::InEdge { .. } => ts <= state.in_edges_hidden_upto,
                _ => state.marker_ts.is_some_and(|m| ts <= m),
            };
            if hidden {
                continue;
            }
            state.version_ts = state.version_ts.max(ts);
            match key.suffix {
                CellSuffix::Marker => {}
                CellSuffix::SourceMember { member } => state.members.push(member),
                CellSuffix::Body => {
                    state.body = Some(EntityBody::decode(&value)?);
                    state.body_ts = ts;
                }
                CellSuffix::OutEdge { relation, to } => {
                    let v = EdgeValue::decode(&value)?;
                    state.out_edges.push(Edge {
                        from: key.entity_id.clone(),
                        to,
                        relation,
                        weight: v.weight,
                        timestamp_nanos: v.timestamp_nanos,
                        sources: v.sources,
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
                        sources: v.sources,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::EdgeValue;

    fn edge() -> Option<Vec<u8>> {
        Some(
            EdgeValue {
                weight: 1.0,
                timestamp_nanos: 0,
                sources: Vec::new(),
            }
            .encode()
            .expect("an edge value encodes"),
        )
    }

    fn cells(marker: Vec<u8>) -> Vec<CellVersion> {
        let body = EntityBody::default().encode().expect("a body encodes");
        vec![
            (CellKey::marker("t", "a").encode(), 10, Some(marker)),
            (CellKey::body("t", "a").encode(), 11, Some(body)),
            (CellKey::out_edge("t", "a", "r", "b").encode(), 9, edge()),
            (CellKey::in_edge("t", "x", "r", "a").encode(), 9, edge()),
            (CellKey::in_edge("t", "y", "r", "a").encode(), 3, edge()),
        ]
    }

    fn in_edge_sources(state: &PartitionState) -> Vec<&str> {
        state.in_edges.iter().map(|e| e.from.as_str()).collect()
    }

    #[test]
    fn a_marker_hides_in_edges_only_up_to_its_bound() {
        let marker = MarkerValue { in_edges_upto: 3 }.encode();
        let state = PartitionState::resolve(cells(marker)).expect("valid cells");
        assert!(state.body.is_some());
        assert!(
            state.out_edges.is_empty(),
            "the out-edge at 9 <= 10 is hidden"
        );
        assert_eq!(in_edge_sources(&state), vec!["x"]);
        assert_eq!(state.in_edges_hidden_upto, 3);
    }

    #[test]
    fn a_marker_of_format_0_hides_every_older_cell() {
        let state = PartitionState::resolve(cells(Vec::new())).expect("valid cells");
        assert!(state.out_edges.is_empty());
        assert!(state.in_edges.is_empty());
        assert_eq!(state.in_edges_hidden_upto, 10);
    }
}
