//! Cells and tenant drops on the wire, and the merge of cells (docs/cluster.md "Internal
//! protocol"). Pure.
//!
//! A partition's state on a replica is the newest version of each of its cells
//! ([`allidb_storage::partition::CellVersion`]). Versions from several replicas merge cell by
//! cell, last-write-wins: the higher timestamp wins; on equal timestamps a tombstone beats a
//! value, and of two values the greater bytes win, so every node picks the same winner whatever
//! order the answers arrive in. A tenant drop ([`DroppedTenant`]) removes every cell of its
//! tenant at or before its timestamp, whichever replica answered the cell.
//!
//! Must never: accept a cell whose key has no partition (it could not be routed), or let the
//! merge depend on the order of its inputs.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{MarkerShadow, Shadowed};
use allidb_storage::key::CellKey;
use allidb_storage::partition::CellVersion;
use xxhash_rust::xxh3::Xxh3;

use crate::ClusterError;
use crate::proto;

/// A tenant drop: every cell of `tenant` written at or before `ts` is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTenant {
    /// The tenant id.
    pub tenant: String,
    /// The coordinator's timestamp of the drop (microseconds, hybrid logical clock).
    pub ts: u64,
}

impl DroppedTenant {
    /// The wire form.
    pub fn to_proto(&self) -> proto::TenantDrop {
        proto::TenantDrop {
            tenant: self.tenant.clone(),
            timestamp_micros: self.ts,
        }
    }

    /// From the wire form.
    pub fn from_proto(drop: proto::TenantDrop) -> Self {
        Self {
            tenant: drop.tenant,
            ts: drop.timestamp_micros,
        }
    }
}

/// What one replica is sent to apply: tenant drops, then cells, each with its own timestamp.
#[derive(Clone, Debug, Default)]
pub struct ReplicaMutation {
    /// Applied first, each durable before the cells.
    pub drops: Vec<DroppedTenant>,
    /// Applied as one batch.
    pub cells: Vec<CellVersion>,
}

impl ReplicaMutation {
    /// Cells only.
    pub fn cells(cells: Vec<CellVersion>) -> Self {
        Self {
            drops: Vec::new(),
            cells,
        }
    }
}

/// The versions of `versions` (cells of one partition of a tenant dropped at `dropped_at`, 0:
/// never) that the drop leaves.
pub fn without_dropped(versions: Vec<CellVersion>, dropped_at: u64) -> Vec<CellVersion> {
    match dropped_at {
        0 => versions,
        _ => versions
            .into_iter()
            .filter(|(_, ts, _)| *ts > dropped_at)
            .collect(),
    }
}

/// The partition a cell belongs to: `(tenant, entity id)`.
pub fn partition_of(key: &[u8]) -> Result<(String, String), ClusterError> {
    let cell = CellKey::decode(key)
        .map_err(|e| ClusterError::Protocol(format!("a cell key does not decode: {e}")))?;
    Ok((cell.tenant, cell.entity_id))
}

/// The wire form of one cell version.
pub fn to_proto((key, ts, value): &CellVersion) -> proto::Cell {
    proto::Cell {
        key: key.clone(),
        timestamp_micros: *ts,
        tombstone: value.is_none(),
        value: value.clone().unwrap_or_default(),
    }
}

/// About how many bytes one cell version takes on the wire (key, value and timestamp).
pub fn version_size((key, _, value): &CellVersion) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + 8
}

/// A cell version from its wire form.
pub fn from_proto(cell: proto::Cell) -> CellVersion {
    let value = (!cell.tombstone).then_some(cell.value);
    (cell.key, cell.timestamp_micros, value)
}

/// The cells of a batch, in batch order.
pub fn batch_versions(batch: &WriteBatch) -> Vec<CellVersion> {
    batch
        .ops()
        .iter()
        .map(|op| (op.key.clone(), op.ts, op.value.clone()))
        .collect()
}

/// A batch writing `versions` with their own timestamps.
pub fn versions_batch(versions: impl IntoIterator<Item = CellVersion>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (key, ts, value) in versions {
        match value {
            Some(value) => batch.put(key, ts, value),
            None => batch.delete(key, ts),
        }
    }
    batch
}

/// Orders two versions of one cell: `Greater` when `a` wins.
fn precedence(a: &CellVersion, b: &CellVersion) -> Ordering {
    a.1.cmp(&b.1).then_with(|| match (&a.2, &b.2) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

/// The newest version of every cell found in any of `answers`, in key order.
pub fn merge<'a>(answers: impl IntoIterator<Item = &'a [CellVersion]>) -> Vec<CellVersion> {
    let mut merged: BTreeMap<&[u8], &CellVersion> = BTreeMap::new();
    for answer in answers {
        for version in answer {
            merged
                .entry(&version.0)
                .and_modify(|kept| {
                    if precedence(version, kept) == Ordering::Greater {
                        *kept = version;
                    }
                })
                .or_insert(version);
        }
    }
    merged.into_values().cloned().collect()
}

/// The versions of `merged` that `own` lacks or holds an older or different version of: what
/// a replica that answered `own` must be sent to catch up. Cells the partition's marker hides
/// are never sent (the marker is, when the replica lacks it).
pub fn missing_from(merged: &[CellVersion], own: &[CellVersion]) -> Vec<CellVersion> {
    let own: BTreeMap<&[u8], &CellVersion> = own.iter().map(|v| (v.0.as_slice(), v)).collect();
    let mut shadow = MarkerShadow::default();
    merged
        .iter()
        .filter(|version| {
            shadow.next(&version.0, version.1, version.2.as_deref()) != Shadowed::Hidden
                && own.get(version.0.as_slice()) != Some(version)
        })
        .cloned()
        .collect()
}

/// The partition digest (docs/cluster.md "Partition digest", version 2): xxh3-128 over each
/// cell in key order as `key_len:u32 key ts:u64 kind:u8 [value_len:u32 value]`, little endian,
/// kind 0 = tombstone, 1 = value; 16 bytes, big endian. Cells the partition's marker hides are
/// left out: compaction drops them on its own schedule on each replica.
pub fn digest(versions: &[CellVersion]) -> Vec<u8> {
    let mut hasher = Xxh3::new();
    let mut shadow = MarkerShadow::default();
    for (key, ts, value) in versions {
        if shadow.next(key, *ts, value.as_deref()) == Shadowed::Hidden {
            continue;
        }
        hasher.update(&(key.len() as u32).to_le_bytes());
        hasher.update(key);
        hasher.update(&ts.to_le_bytes());
        match value {
            None => hasher.update(&[0]),
            Some(value) => {
                hasher.update(&[1]);
                hasher.update(&(value.len() as u32).to_le_bytes());
                hasher.update(value);
            }
        }
    }
    hasher.digest128().to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, ts: u64, value: Option<&str>) -> CellVersion {
        (
            key.as_bytes().to_vec(),
            ts,
            value.map(|v| v.as_bytes().to_vec()),
        )
    }

    #[test]
    fn the_newest_version_of_each_cell_wins_in_any_order() {
        let a = vec![v("a", 5, Some("old")), v("b", 9, Some("b9"))];
        let b = vec![v("a", 7, Some("new")), v("c", 1, None)];
        let c = vec![v("a", 7, None), v("b", 9, Some("b9"))];
        let expected = vec![v("a", 7, None), v("b", 9, Some("b9")), v("c", 1, None)];
        let orders: [[&[CellVersion]; 3]; 3] = [[&a, &b, &c], [&c, &b, &a], [&b, &a, &c]];
        for order in orders {
            assert_eq!(merge(order), expected);
        }
        assert_eq!(
            merge([&[v("k", 3, Some("x"))][..], &[v("k", 3, Some("y"))][..]]),
            vec![v("k", 3, Some("y"))],
            "equal timestamps: the greater value wins"
        );
    }

    #[test]
    fn a_drop_leaves_only_cells_written_after_it() {
        let cells = vec![v("a", 5, Some("x")), v("b", 9, None), v("c", 10, Some("y"))];
        assert_eq!(without_dropped(cells.clone(), 0), cells, "never dropped");
        assert_eq!(
            without_dropped(cells, 9),
            vec![v("c", 10, Some("y"))],
            "a cell at the drop's timestamp goes with it"
        );
    }

    #[test]
    fn a_replica_is_sent_only_what_it_lacks() {
        let own = vec![v("a", 5, Some("old")), v("b", 9, Some("b9"))];
        let merged = vec![
            v("a", 7, Some("new")),
            v("b", 9, Some("b9")),
            v("c", 1, None),
        ];
        assert_eq!(
            missing_from(&merged, &own),
            vec![v("a", 7, Some("new")), v("c", 1, None)]
        );
        assert!(missing_from(&merged, &merged).is_empty());
    }

    #[test]
    fn digests_differ_exactly_when_the_cells_do() {
        let cells = vec![v("a", 5, Some("x")), v("b", 9, None)];
        assert_eq!(digest(&cells), digest(&cells.clone()));
        assert_eq!(digest(&cells).len(), 16);
        for other in [
            vec![v("a", 5, Some("y")), v("b", 9, None)],
            vec![v("a", 6, Some("x")), v("b", 9, None)],
            vec![v("a", 5, Some("x")), v("b", 9, Some(""))],
            vec![v("a", 5, Some("x"))],
        ] {
            assert_ne!(digest(&cells), digest(&other), "{other:?}");
        }
    }

    #[test]
    fn cells_a_marker_hides_count_in_no_digest_and_are_never_sent() {
        use allidb_storage::cell::MarkerValue;
        let marker = (
            CellKey::marker("t", "a").encode(),
            20,
            Some(MarkerValue { in_edges_upto: 20 }.encode()),
        );
        let body = (CellKey::body("t", "a").encode(), 10, Some(b"old".to_vec()));
        let compacted = vec![marker.clone()];
        let not_yet = vec![marker.clone(), body.clone()];
        assert_eq!(
            digest(&compacted),
            digest(&not_yet),
            "compaction state is not a difference"
        );
        let newer_body = (CellKey::body("t", "a").encode(), 30, Some(b"new".to_vec()));
        assert_ne!(digest(&compacted), digest(&[marker.clone(), newer_body]));
        assert_eq!(
            missing_from(&not_yet, &compacted),
            Vec::<CellVersion>::new()
        );
        assert_eq!(missing_from(&not_yet, &[]), vec![marker]);
    }
}
