//! The anti-entropy messages of the replica protocol (`MerkleTrees`) to and from their Rust
//! forms. Pure.
//!
//! Must never: accept a tree shape deeper than [`MAX_DEPTH`] or leaves that do not fit it.

use super::merkle::{MAX_DEPTH, MerkleTree};
use super::trees::TreeShape;
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
