//! One node's edges in one direction (its out-edges, or its in-edges), held in two orders.
//!
//! Owns: the edges by `(relation, peer)` dense ids (a hash map of integers: lookups) and, per
//! relation name, the same edges heaviest first (ties by peer id string): the order in which a
//! walk follows them, so expanding a node with thousands of edges reads only the heaviest few
//! instead of sorting all of them. Each peer is held as its dense id (what the walk's visited
//! set and edge lookups use) beside its name (what the tie order and the replies use; the
//! graph's own `Arc`, so no copy of the string).
//!
//! Invariants: both orders hold exactly the same edges with the same weights; a relation with
//! no edge has no entry. Weights are finite (the graph index validates them). Ids are the
//! graph's (`super::ids`): a peer's id and name always name the same node.
//! Costs: an insert or a removal is `O(log d)`, a lookup `O(1)` without hashing a string;
//! memory is about twice a single map's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ids::{NodeId, RelationId};

/// A peer and the weight of the edge to it; ordered heaviest first, then by peer name.
#[derive(Clone, Debug)]
pub(super) struct WeightedPeer {
    pub(super) weight: f32,
    /// The peer's dense id.
    pub(super) id: NodeId,
    /// The peer's name (the graph's shared copy).
    pub(super) peer: Arc<str>,
}

impl PartialEq for WeightedPeer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for WeightedPeer {}

impl PartialOrd for WeightedPeer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WeightedPeer {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .weight
            .total_cmp(&self.weight)
            .then_with(|| self.peer.cmp(&other.peer))
    }
}

/// The edges of one relation of a node in one direction, heaviest first.
#[derive(Debug)]
pub(super) struct RelationEdges {
    /// The relation's dense id.
    pub(super) id: RelationId,
    pub(super) heaviest: BTreeSet<WeightedPeer>,
}

/// The edges of one node in one direction; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct NodeEdges {
    by_key: foldhash::HashMap<(RelationId, NodeId), f32>,
    by_weight: BTreeMap<Arc<str>, RelationEdges>,
}

impl NodeEdges {
    /// Adds the edge `(relation, peer)` or changes its weight.
    pub(super) fn insert(
        &mut self,
        relation: (RelationId, &Arc<str>),
        peer: (NodeId, &Arc<str>),
        weight: f32,
    ) {
        let edges = self
            .by_weight
            .entry(relation.1.clone())
            .or_insert_with(|| RelationEdges {
                id: relation.0,
                heaviest: BTreeSet::new(),
            });
        let key = (relation.0, peer.0);
        if let Some(old) = self.by_key.get(&key) {
            edges.heaviest.remove(&WeightedPeer {
                weight: *old,
                id: peer.0,
                peer: peer.1.clone(),
            });
        }
        edges.heaviest.insert(WeightedPeer {
            weight,
            id: peer.0,
            peer: peer.1.clone(),
        });
        self.by_key.insert(key, weight);
    }

    /// Removes the edge `(relation, peer)`; false when there was none.
    pub(super) fn remove(
        &mut self,
        relation: (RelationId, &str),
        peer: (NodeId, &Arc<str>),
    ) -> bool {
        let Some(weight) = self.by_key.remove(&(relation.0, peer.0)) else {
            return false;
        };
        if let Some(edges) = self.by_weight.get_mut(relation.1) {
            edges.heaviest.remove(&WeightedPeer {
                weight,
                id: peer.0,
                peer: peer.1.clone(),
            });
            if edges.heaviest.is_empty() {
                self.by_weight.remove(relation.1);
            }
        }
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every edge as `(relation name, relation id, peer)`, relations in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, RelationId, &WeightedPeer)> {
        self.by_weight.iter().flat_map(|(relation, edges)| {
            edges
                .heaviest
                .iter()
                .map(move |peer| (relation, edges.id, peer))
        })
    }

    /// The weight of the edge `(relation, peer)`.
    pub(super) fn weight(&self, relation: RelationId, peer: NodeId) -> Option<f32> {
        self.by_key.get(&(relation, peer)).copied()
    }

    /// The edges of `relation`, heaviest first, with the stored relation name.
    pub(super) fn heaviest_of(&self, relation: &str) -> Option<(&Arc<str>, &RelationEdges)> {
        self.by_weight.get_key_value(relation)
    }

    /// Every relation's edges, heaviest first, relations in name order.
    pub(super) fn heaviest(&self) -> impl Iterator<Item = (&Arc<str>, &RelationEdges)> {
        self.by_weight.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heaviest(edges: &NodeEdges, relation: &str) -> Vec<(f32, String)> {
        edges
            .heaviest_of(relation)
            .map(|(_, set)| {
                set.heaviest
                    .iter()
                    .map(|p| (p.weight, p.peer.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn both_orders_follow_inserts_reweights_and_removals() {
        let (r, s): (Arc<str>, Arc<str>) = (Arc::from("r"), Arc::from("s"));
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        let mut edges = NodeEdges::default();
        edges.insert((0, &r), (1, &b), 0.5);
        edges.insert((0, &r), (0, &a), 0.5);
        edges.insert((0, &r), (2, &c), 0.9);
        edges.insert((1, &s), (0, &a), 0.1);
        assert_eq!(
            heaviest(&edges, "r"),
            vec![(0.9, "c".into()), (0.5, "a".into()), (0.5, "b".into())]
        );
        // A re-weight moves the edge; it is not duplicated.
        edges.insert((0, &r), (1, &b), 1.5);
        assert_eq!(
            heaviest(&edges, "r"),
            vec![(1.5, "b".into()), (0.9, "c".into()), (0.5, "a".into())]
        );
        assert_eq!(edges.len(), 4);
        assert_eq!(edges.weight(0, 1), Some(1.5));
        assert!(edges.remove((0, "r"), (2, &c)));
        assert!(!edges.remove((0, "r"), (2, &c)));
        assert!(edges.remove((1, "s"), (0, &a)));
        assert!(
            edges.heaviest_of("s").is_none(),
            "an emptied relation leaves no entry"
        );
        let keys: Vec<(String, String)> = edges
            .iter()
            .map(|(relation, _, peer)| (relation.to_string(), peer.peer.to_string()))
            .collect();
        assert_eq!(
            keys,
            vec![("r".into(), "b".into()), ("r".into(), "a".into())]
        );
        edges.remove((0, "r"), (0, &a));
        edges.remove((0, "r"), (1, &b));
        assert!(edges.is_empty());
        assert_eq!(edges.heaviest().count(), 0);
    }
}
