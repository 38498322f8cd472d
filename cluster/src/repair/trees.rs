//! One replica's side of anti-entropy: the Merkle trees of some token ranges, and the
//! partitions in some of their leaves, each from one pass over a snapshot of its store (writes
//! go on meanwhile). Pure over the partitions it is given.
//!
//! Invariants: a partition counts in the tree of the range its token falls in, with the digest
//! of its cells as `ReadPartitions` digests them (tombstones and the marker included, cells a
//! tenant drop covers left out); one partition's cells are in memory at a time.
//! Must never: count a partition twice or in a range it does not fall in.

use std::collections::BTreeSet;

use allidb_storage::engine::PartitionVersions;

use super::merkle::{MerkleTree, TreeBuilder, leaf_of};
use crate::ClusterError;
use crate::cells;
use crate::ring::{SpanIndex, Token, TokenSpan, token};

/// A range's tree as asked for: its tokens and depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    /// The range.
    pub span: TokenSpan,
    /// The depth (at most [`super::merkle::MAX_DEPTH`]).
    pub depth: u8,
}

/// One partition and the digest of its cells.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionDigest {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub entity_id: String,
    /// The partition digest (docs/cluster.md "Partition digest").
    pub digest: u128,
}

/// A partition's token and digest.
fn token_and_digest(partition: &PartitionVersions) -> (Token, u128) {
    let digest = cells::digest(&partition.cells);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    (
        token(&partition.tenant, &partition.entity_id),
        u128::from_be_bytes(bytes),
    )
}

/// The trees of `shapes` (disjoint ranges) over `partitions`, in the order of `shapes`.
pub fn build_trees(
    partitions: impl Iterator<Item = allidb_storage::Result<PartitionVersions>>,
    shapes: &[TreeShape],
) -> Result<Vec<MerkleTree>, ClusterError> {
    let index = SpanIndex::new(shapes.iter().map(|s| s.span));
    let mut builders: Vec<TreeBuilder> = shapes.iter().map(|s| TreeBuilder::new(s.span)).collect();
    for partition in partitions {
        let partition = partition.map_err(|e| ClusterError::Store(e.into()))?;
        let (t, digest) = token_and_digest(&partition);
        if let Some(i) = index.find(t) {
            builders[i].add(t, digest);
        }
    }
    Ok(builders
        .iter()
        .zip(shapes)
        .map(|(builder, shape)| builder.finish(shape.depth))
        .collect())
}

/// The partitions of `partitions` that fall in one of the listed leaves of `sets`' trees, with
/// their digests, in key order; stops once `max` are listed (then `true`: truncated).
pub fn leaf_partitions(
    partitions: impl Iterator<Item = allidb_storage::Result<PartitionVersions>>,
    sets: &[(TreeShape, BTreeSet<usize>)],
    max: usize,
) -> Result<(Vec<PartitionDigest>, bool), ClusterError> {
    let index = SpanIndex::new(sets.iter().map(|(shape, _)| shape.span));
    let mut found = Vec::new();
    for partition in partitions {
        let partition = partition.map_err(|e| ClusterError::Store(e.into()))?;
        let t = token(&partition.tenant, &partition.entity_id);
        let Some(i) = index.find(t) else {
            continue;
        };
        let (shape, leaves) = &sets[i];
        if !leaves.contains(&leaf_of(&shape.span, shape.depth, t)) {
            continue;
        }
        if found.len() == max {
            return Ok((found, true));
        }
        let (_, digest) = token_and_digest(&partition);
        found.push(PartitionDigest {
            tenant: partition.tenant,
            entity_id: partition.entity_id,
            digest,
        });
    }
    Ok((found, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(tenant: &str, id: &str, value: &str) -> PartitionVersions {
        let key = allidb_storage::key::partition_prefix(tenant, id);
        PartitionVersions {
            tenant: tenant.to_owned(),
            entity_id: id.to_owned(),
            cells: vec![(key, 7, Some(value.as_bytes().to_vec()))],
        }
    }

    fn halves() -> [TreeShape; 2] {
        [
            TreeShape {
                span: TokenSpan {
                    start: u64::MAX / 2,
                    end: 0,
                },
                depth: 3,
            },
            TreeShape {
                span: TokenSpan {
                    start: 0,
                    end: u64::MAX / 2,
                },
                depth: 3,
            },
        ]
    }

    #[test]
    fn every_partition_counts_once_in_its_range_and_a_changed_one_is_listed() {
        let ids: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
        let stored = |changed: Option<&str>| -> Vec<allidb_storage::Result<PartitionVersions>> {
            ids.iter()
                .map(|id| {
                    let value = if Some(id.as_str()) == changed {
                        "new"
                    } else {
                        "v"
                    };
                    Ok(partition("t", id, value))
                })
                .collect()
        };
        let shapes = halves();
        let a = build_trees(stored(None).into_iter(), &shapes).unwrap();
        assert_eq!(a[0].partitions() + a[1].partitions(), 100);
        let b = build_trees(stored(Some("e42")).into_iter(), &shapes).unwrap();
        let t = token("t", "e42");
        let which = usize::from(!shapes[0].span.contains(t));
        let leaves = a[which].differing_leaves(&b[which]).unwrap();
        assert_eq!(leaves, vec![leaf_of(&shapes[which].span, 3, t)]);
        assert!(
            a[1 - which]
                .differing_leaves(&b[1 - which])
                .unwrap()
                .is_empty()
        );
        let sets = vec![(shapes[which], leaves.into_iter().collect())];
        let (listed, truncated) =
            leaf_partitions(stored(Some("e42")).into_iter(), &sets, 1000).unwrap();
        assert!(!truncated);
        assert!(listed.iter().any(|p| p.entity_id == "e42"));
        assert!(listed.iter().all(|p| {
            let t = token(&p.tenant, &p.entity_id);
            sets[0].0.span.contains(t) && sets[0].1.contains(&leaf_of(&sets[0].0.span, 3, t))
        }));
        let (first, truncated) = leaf_partitions(stored(None).into_iter(), &sets, 1).unwrap();
        assert_eq!((first.len(), truncated || listed.len() == 1), (1, true));
    }
}
