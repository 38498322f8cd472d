//! The Merkle tree of one token range (docs/cluster.md "Anti-entropy repair"): `2^depth`
//! leaves splitting the range into equal token spans; a leaf is the wrapping sum of the
//! digests of the partitions whose token falls in it, so it does not depend on the order the
//! partitions are read in (storage is in key order, not token order); an inner node is the
//! xxh3-128 of its two children. Pure.
//!
//! Invariants: `depth <= MAX_DEPTH`; two replicas holding the same cells for the partitions of
//! a leaf have equal leaves; a tree built at depth 16 folds exactly into any smaller depth.
//! Must never: depend on the order partitions are added in.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_128;

use crate::ClusterError;
use crate::ring::{Token, TokenSpan};

/// The deepest tree: 65,536 leaves, 1 MiB of leaf hashes.
pub const MAX_DEPTH: u8 = 16;

/// The depth that gives about one partition per leaf for a range holding `partitions`.
pub fn depth_for(partitions: u64) -> u8 {
    let bits = u64::BITS - partitions.saturating_sub(1).leading_zeros();
    (bits as u8).min(MAX_DEPTH)
}

/// The leaf of a tree of `depth` over `range` that token `t` (in the range) falls in.
pub fn leaf_of(range: &TokenSpan, depth: u8, t: Token) -> usize {
    // Offsets run from 0 (the token after the exclusive start) to size - 1 (the end).
    let offset = u128::from(t.wrapping_sub(range.start).wrapping_sub(1));
    ((offset << depth) / range.size()) as usize
}

/// The tokens of leaf `leaf` of a tree of `depth` over `range`: exactly the tokens
/// [`leaf_of`] puts in it, or `None` when it holds none (a range of fewer tokens than leaves).
pub fn leaf_span(range: &TokenSpan, depth: u8, leaf: usize) -> Option<TokenSpan> {
    // Leaf i holds the offsets o with floor(o * 2^depth / size) = i: from
    // ceil(i * size / 2^depth) to ceil((i + 1) * size / 2^depth) - 1.
    let size = range.size();
    let first_offset = |i: u128| (i * size).div_ceil(1u128 << depth);
    let (first, next) = (first_offset(leaf as u128), first_offset(leaf as u128 + 1));
    // A token is start + 1 + offset, so the exclusive start is start + first.
    (next > first).then(|| TokenSpan {
        start: range.start.wrapping_add(first as u64),
        end: range.start.wrapping_add(next as u64),
    })
}

/// The leaves of one range's tree while partitions are added: kept at [`MAX_DEPTH`] and sparse
/// (only leaves holding a partition), folded to the depth wanted once every partition is in.
#[derive(Clone, Debug)]
pub struct TreeBuilder {
    range: TokenSpan,
    leaves: BTreeMap<usize, u128>,
    partitions: u64,
}

impl TreeBuilder {
    /// An empty tree over `range`.
    pub fn new(range: TokenSpan) -> Self {
        Self {
            range,
            leaves: BTreeMap::new(),
            partitions: 0,
        }
    }

    /// Adds the partition at token `t` (in the range) whose cells digest to `digest`.
    pub fn add(&mut self, t: Token, digest: u128) {
        let leaf = leaf_of(&self.range, MAX_DEPTH, t);
        let sum = self.leaves.entry(leaf).or_default();
        *sum = sum.wrapping_add(digest);
        self.partitions += 1;
    }

    /// Partitions added so far.
    pub fn partitions(&self) -> u64 {
        self.partitions
    }

    /// The tree at `depth` (at most [`MAX_DEPTH`]).
    pub fn finish(&self, depth: u8) -> MerkleTree {
        let depth = depth.min(MAX_DEPTH);
        let mut leaves = vec![0u128; 1 << depth];
        for (leaf, sum) in &self.leaves {
            let folded = &mut leaves[leaf >> (MAX_DEPTH - depth)];
            *folded = folded.wrapping_add(*sum);
        }
        MerkleTree {
            range: self.range,
            depth,
            leaves,
            partitions: self.partitions,
        }
    }
}

/// One range's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    range: TokenSpan,
    depth: u8,
    leaves: Vec<u128>,
    partitions: u64,
}

impl MerkleTree {
    /// A tree from its leaves as another replica sent them (`2^depth` of them).
    pub fn from_leaves(
        range: TokenSpan,
        depth: u8,
        leaves: Vec<u128>,
        partitions: u64,
    ) -> Result<Self, ClusterError> {
        if depth > MAX_DEPTH || leaves.len() != 1 << depth {
            return Err(ClusterError::Protocol(format!(
                "a Merkle tree of depth {depth} arrived with {} leaves",
                leaves.len()
            )));
        }
        Ok(Self {
            range,
            depth,
            leaves,
            partitions,
        })
    }

    /// The range it covers.
    pub fn range(&self) -> &TokenSpan {
        &self.range
    }

    /// Its depth.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// Its leaves, in token order.
    pub fn leaves(&self) -> &[u128] {
        &self.leaves
    }

    /// The partitions it was built from.
    pub fn partitions(&self) -> u64 {
        self.partitions
    }

    /// Every level, the leaves first and the root (one hash) last.
    fn levels(&self) -> Vec<Vec<u128>> {
        let mut levels = vec![self.leaves.clone()];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().expect("a level exists: checked above");
            let above = below
                .chunks(2)
                .map(|pair| {
                    let mut bytes = [0u8; 32];
                    bytes[..16].copy_from_slice(&pair[0].to_be_bytes());
                    bytes[16..].copy_from_slice(&pair[1].to_be_bytes());
                    xxh3_128(&bytes)
                })
                .collect();
            levels.push(above);
        }
        levels
    }

    /// The leaves where `self` and `other` (same range and depth) differ, compared top-down:
    /// a subtree whose hashes agree is not descended into.
    pub fn differing_leaves(&self, other: &MerkleTree) -> Result<Vec<usize>, ClusterError> {
        if self.range != other.range || self.depth != other.depth {
            return Err(ClusterError::Protocol(format!(
                "Merkle trees of different shapes compared: ({}, {}] at depth {} and ({}, {}] at \
                 depth {}",
                self.range.start,
                self.range.end,
                self.depth,
                other.range.start,
                other.range.end,
                other.depth
            )));
        }
        let (mine, theirs) = (self.levels(), other.levels());
        let mut differing = vec![0usize];
        for level in (0..mine.len()).rev() {
            differing.retain(|node| mine[level][*node] != theirs[level][*node]);
            if level > 0 {
                differing = differing
                    .iter()
                    .flat_map(|node| [node * 2, node * 2 + 1])
                    .collect();
            }
        }
        Ok(differing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn range(start: Token, end: Token) -> TokenSpan {
        TokenSpan { start, end }
    }

    #[test]
    fn leaves_split_the_range_evenly_including_a_wrapping_one() {
        let r = range(100, 164);
        assert_eq!(leaf_of(&r, 2, 101), 0);
        assert_eq!(leaf_of(&r, 2, 116), 0);
        assert_eq!(leaf_of(&r, 2, 117), 1);
        assert_eq!(leaf_of(&r, 2, 164), 3);
        let wrapping = range(u64::MAX - 1, 2);
        assert_eq!(leaf_of(&wrapping, 2, u64::MAX), 0);
        assert_eq!(leaf_of(&wrapping, 2, 2), 3);
        let whole = range(7, 7);
        assert_eq!(leaf_of(&whole, 16, 7), 65_535);
        assert_eq!(leaf_of(&whole, 16, 8), 0);
        assert_eq!(depth_for(0), 0);
        assert_eq!(depth_for(1), 0);
        assert_eq!(depth_for(2), 1);
        assert_eq!(depth_for(1000), 10);
        assert_eq!(depth_for(u64::MAX), MAX_DEPTH);
    }

    #[test]
    fn a_leaf_span_holds_exactly_the_tokens_of_its_leaf() {
        let ranges = [
            range(100, 164),
            range(u64::MAX - 1, 2),
            range(7, 7),
            range(1_000, 1_003),
            range(u64::MAX - 1_000_000_007, 5_000_000_009),
        ];
        for r in ranges {
            for depth in [0u8, 1, 2, 5, 16] {
                let spans: Vec<Option<TokenSpan>> = (0..1usize << depth)
                    .map(|i| leaf_span(&r, depth, i))
                    .collect();
                // The leaves tile the range in order: each starts where the one before ends.
                let tiles: Vec<&TokenSpan> = spans.iter().flatten().collect();
                assert_eq!(tiles[0].start, r.start, "{r:?} {depth}");
                assert_eq!(tiles[tiles.len() - 1].end, r.end, "{r:?} {depth}");
                assert!(
                    tiles.windows(2).all(|w| w[0].end == w[1].start),
                    "{r:?} {depth}"
                );
                let held: u128 = tiles.iter().map(|s| s.size()).sum();
                assert_eq!(
                    held,
                    r.size(),
                    "the leaves cover the range once: {r:?} {depth}"
                );
                let probes = (0..2_000u64).map(|i| {
                    let offset = (u128::from(i) * 0x9E37_79B9_7F4A_7C15) % r.size();
                    r.start.wrapping_add(1).wrapping_add(offset as u64)
                });
                for t in probes.chain([r.start.wrapping_add(1), r.end]) {
                    let leaf = leaf_of(&r, depth, t);
                    let span = spans[leaf].expect("the leaf of a token holds it");
                    assert!(
                        span.contains(t),
                        "{r:?} depth {depth} token {t} leaf {leaf}"
                    );
                }
            }
        }
    }

    #[test]
    fn trees_do_not_depend_on_order_and_fold_exactly() {
        let r = range(0, 1 << 40);
        let parts: Vec<(Token, u128)> = (1..200u64)
            .map(|i| (i * 5_000_000_007 % (1 << 40), u128::from(i) * 0x9E37_79B9))
            .collect();
        let mut forward = TreeBuilder::new(r);
        let mut backward = TreeBuilder::new(r);
        for (t, d) in &parts {
            forward.add(*t, *d);
        }
        for (t, d) in parts.iter().rev() {
            backward.add(*t, *d);
        }
        for depth in [0, 3, 8, 16] {
            assert_eq!(forward.finish(depth), backward.finish(depth));
        }
        assert_eq!(forward.finish(8).partitions(), 199);
        let eight = forward.finish(8);
        let sum: u128 = eight.leaves().iter().fold(0, |a, l| a.wrapping_add(*l));
        assert_eq!(forward.finish(0).leaves(), &[sum]);
    }

    #[test]
    fn the_comparison_finds_exactly_the_differing_leaves() {
        let r = range(0, 1 << 20);
        let mut a = TreeBuilder::new(r);
        let mut b = TreeBuilder::new(r);
        for i in 1..500u64 {
            a.add(i * 2_000, u128::from(i));
            b.add(i * 2_000, u128::from(i));
        }
        let (ta, tb) = (a.finish(6), b.finish(6));
        assert!(ta.differing_leaves(&tb).unwrap().is_empty());
        b.add(3_000, 77);
        b.add(900_000, 78);
        let tb = b.finish(6);
        assert_eq!(
            ta.differing_leaves(&tb).unwrap(),
            vec![leaf_of(&r, 6, 3_000), leaf_of(&r, 6, 900_000)]
        );
        assert!(ta.differing_leaves(&b.finish(5)).is_err());
        assert!(MerkleTree::from_leaves(r, 2, vec![0; 3], 0).is_err());
    }
}
