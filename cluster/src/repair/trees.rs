//! One replica's side of anti-entropy: the Merkle trees of some token ranges, from one pass
//! over a snapshot of its store (writes go on meanwhile). Pure over the partitions it is given.
//!
//! Invariants: a partition counts in the tree of the range its token falls in, with the digest
//! of its cells as `ReadPartitions` digests them (tombstones and the marker included, cells a
//! tenant drop covers left out); one partition's cells are in memory at a time.
//! Must never: count a partition twice or in a range it does not fall in.

use allidb_storage::engine::PartitionVersions;

use super::merkle::{MerkleTree, TreeBuilder};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::merkle::{leaf_of, leaf_span};

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
    fn every_partition_counts_once_in_its_range_and_a_changed_one_is_in_the_differing_leaf() {
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
        let span = leaf_span(&shapes[which].span, 3, leaves[0]).expect("a leaf of 2^61 tokens");
        assert!(
            span.contains(t),
            "the differing leaf's tokens hold the changed partition"
        );
    }
}
