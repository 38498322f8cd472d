//! The anti-entropy messages of the replica protocol (`MerkleTrees`, `LeafPartitions`) to and
//! from their Rust forms. Pure.
//!
//! Must never: accept a tree shape deeper than [`MAX_DEPTH`] or leaves that do not fit it.

use std::collections::BTreeSet;

use super::merkle::{MAX_DEPTH, MerkleTree};
use super::trees::{PartitionDigest, TreeShape};
use crate::ClusterError;
use crate::proto;
use crate::ring::TokenSpan;

/// The wire form of a shape.
pub fn shape_to_proto(shape: &TreeShape) -> proto::TreeShape {
    proto::TreeShape {
        start: shape.span.start,
        end: shape.span.end,
        depth: u32::from(shape.depth),
    }
}

/// A shape from its wire form (`field` names it in the error).
pub fn shape_from_proto(shape: &proto::TreeShape, field: &str) -> Result<TreeShape, ClusterError> {
    let depth = u8::try_from(shape.depth)
        .ok()
        .filter(|d| *d <= MAX_DEPTH)
        .ok_or_else(|| {
            ClusterError::Protocol(format!(
                "{field}.depth: {} is deeper than {MAX_DEPTH}",
                shape.depth
            ))
        })?;
    Ok(TreeShape {
        span: TokenSpan {
            start: shape.start,
            end: shape.end,
        },
        depth,
    })
}

/// The wire form of a tree.
pub fn tree_to_proto(tree: &MerkleTree) -> proto::MerkleTree {
    proto::MerkleTree {
        leaves: tree.leaves().iter().flat_map(|l| l.to_be_bytes()).collect(),
        partitions: tree.partitions(),
    }
}

/// A tree of `shape` from its wire form.
pub fn tree_from_proto(
    shape: &TreeShape,
    tree: proto::MerkleTree,
) -> Result<MerkleTree, ClusterError> {
    if !tree.leaves.len().is_multiple_of(16) {
        return Err(ClusterError::Protocol(format!(
            "a Merkle tree's leaves take {} bytes, not a multiple of 16",
            tree.leaves.len()
        )));
    }
    let leaves = tree
        .leaves
        .chunks_exact(16)
        .map(|bytes| {
            let mut leaf = [0u8; 16];
            leaf.copy_from_slice(bytes);
            u128::from_be_bytes(leaf)
        })
        .collect();
    MerkleTree::from_leaves(shape.span, shape.depth, leaves, tree.partitions)
}

/// The wire form of some leaves of a tree.
pub fn leaf_set_to_proto(shape: &TreeShape, leaves: &BTreeSet<usize>) -> proto::LeafSet {
    proto::LeafSet {
        tree: Some(shape_to_proto(shape)),
        leaves: leaves.iter().map(|l| *l as u32).collect(),
    }
}

/// Leaf sets from their wire form.
pub fn leaf_sets_from_proto(
    sets: &[proto::LeafSet],
) -> Result<Vec<(TreeShape, BTreeSet<usize>)>, ClusterError> {
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let field = format!("sets[{i}].tree");
            let tree = set
                .tree
                .as_ref()
                .ok_or_else(|| ClusterError::Protocol(format!("{field}: required")))?;
            let shape = shape_from_proto(tree, &field)?;
            let leaves: BTreeSet<usize> = set.leaves.iter().map(|l| *l as usize).collect();
            if let Some(leaf) = leaves.iter().find(|l| **l >= 1 << shape.depth) {
                return Err(ClusterError::Protocol(format!(
                    "sets[{i}].leaves: leaf {leaf} is past a tree of depth {}",
                    shape.depth
                )));
            }
            Ok((shape, leaves))
        })
        .collect()
}

/// The wire form of a partition's digest.
pub fn digest_to_proto(partition: &PartitionDigest) -> proto::PartitionDigest {
    proto::PartitionDigest {
        tenant: partition.tenant.clone(),
        entity_id: partition.entity_id.clone(),
        digest: partition.digest.to_be_bytes().to_vec(),
    }
}

/// A partition's digest from its wire form.
pub fn digest_from_proto(
    partition: proto::PartitionDigest,
) -> Result<PartitionDigest, ClusterError> {
    let bytes: [u8; 16] = partition.digest.as_slice().try_into().map_err(|_| {
        ClusterError::Protocol(format!(
            "the digest of partition {:?} takes {} bytes, not 16",
            partition.entity_id,
            partition.digest.len()
        ))
    })?;
    Ok(PartitionDigest {
        tenant: partition.tenant,
        entity_id: partition.entity_id,
        digest: u128::from_be_bytes(bytes),
    })
}
