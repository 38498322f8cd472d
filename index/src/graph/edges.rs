//! One node's edges in one direction (its out-edges, or its in-edges), held in two orders.
//!
//! Owns: the edges by `(relation, peer)` (a hash map: lookups, listings, dumps) and, per relation, the same edges heaviest first (ties by peer id): the order in which
//! a walk follows them, so expanding a node with thousands of edges reads only the heaviest few
//! instead of sorting all of them.
//!
//! Invariants: both orders hold exactly the same edges with the same weights; a relation with
//! no edge has no entry. Weights are finite (the graph index validates them).
//! Costs: an insert or a removal is `O(log d)`, a lookup `O(1)`; memory is about twice a single
//! map's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An edge's key: `(relation, peer)`.
pub(super) type EdgeKey = (Arc<str>, Arc<str>);

/// A peer and the weight of the edge to it; ordered heaviest first, then by peer id.
#[derive(Clone, Debug)]
pub(super) struct WeightedPeer {
    pub(super) weight: f32,
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

/// The edges of one node in one direction; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct NodeEdges {
    by_key: HashMap<EdgeKey, f32>,
    by_weight: BTreeMap<Arc<str>, BTreeSet<WeightedPeer>>,
}

impl NodeEdges {
    /// Adds the edge `(relation, peer)` or changes its weight.
    pub(super) fn insert(&mut self, relation: Arc<str>, peer: Arc<str>, weight: f32) {
        let key = (relation, peer);
        let heaviest = self.by_weight.entry(key.0.clone()).or_default();
        if let Some(old) = self.by_key.get(&key) {
            heaviest.remove(&WeightedPeer {
                weight: *old,
                peer: key.1.clone(),
            });
        }
        heaviest.insert(WeightedPeer {
            weight,
            peer: key.1.clone(),
        });
        self.by_key.insert(key, weight);
    }

    /// Removes the edge `key` (`(relation, peer)`); false when there was none.
    pub(super) fn remove(&mut self, key: &EdgeKey) -> bool {
        let Some(weight) = self.by_key.remove(key) else {
            return false;
        };
        if let Some(heaviest) = self.by_weight.get_mut(&key.0) {
            heaviest.remove(&WeightedPeer {
                weight,
                peer: key.1.clone(),
            });
            if heaviest.is_empty() {
                self.by_weight.remove(&key.0);
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

    /// Every edge as `((relation, peer), weight)`, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&EdgeKey, &f32)> {
        self.by_key.iter()
    }

    /// The edge `(relation, peer)`: the stored key and its weight.
    pub(super) fn get(&self, relation: &Arc<str>, peer: &Arc<str>) -> Option<(&EdgeKey, f32)> {
        self.by_key
            .get_key_value(&(relation.clone(), peer.clone()))
            .map(|(key, weight)| (key, *weight))
    }

    /// The edges of `relation`, heaviest first, with the stored relation name.
    pub(super) fn heaviest_of(
        &self,
        relation: &str,
    ) -> Option<(&Arc<str>, &BTreeSet<WeightedPeer>)> {
        self.by_weight.get_key_value(relation)
    }

    /// Every relation's edges, heaviest first, relations in name order.
    pub(super) fn heaviest(&self) -> impl Iterator<Item = (&Arc<str>, &BTreeSet<WeightedPeer>)> {
        self.by_weight.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn heaviest(edges: &NodeEdges, relation: &str) -> Vec<(f32, String)> {
        edges
            .heaviest_of(relation)
            .map(|(_, set)| set.iter().map(|p| (p.weight, p.peer.to_string())).collect())
            .unwrap_or_default()
    }

    #[test]
    fn both_orders_follow_inserts_reweights_and_removals() {
        let mut edges = NodeEdges::default();
        edges.insert(arc("r"), arc("b"), 0.5);
        edges.insert(arc("r"), arc("a"), 0.5);
        edges.insert(arc("r"), arc("c"), 0.9);
        edges.insert(arc("s"), arc("a"), 0.1);
        assert_eq!(
            heaviest(&edges, "r"),
            vec![(0.9, "c".into()), (0.5, "a".into()), (0.5, "b".into())]
        );
        // A re-weight moves the edge; it is not duplicated.
        edges.insert(arc("r"), arc("b"), 1.5);
        assert_eq!(
            heaviest(&edges, "r"),
            vec![(1.5, "b".into()), (0.9, "c".into()), (0.5, "a".into())]
        );
        assert_eq!(edges.len(), 4);
        assert_eq!(edges.get(&arc("r"), &arc("b")).map(|(_, w)| w), Some(1.5));
        assert!(edges.remove(&(arc("r"), arc("c"))));
        assert!(!edges.remove(&(arc("r"), arc("c"))));
        assert!(edges.remove(&(arc("s"), arc("a"))));
        assert!(
            edges.heaviest_of("s").is_none(),
            "an emptied relation leaves no entry"
        );
        let mut keys: Vec<(String, String)> = edges
            .iter()
            .map(|((r, p), _)| (r.to_string(), p.to_string()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![("r".into(), "a".into()), ("r".into(), "b".into())]
        );
        assert_eq!(
            heaviest(&edges, "r"),
            vec![(1.5, "b".into()), (0.5, "a".into())]
        );
        edges.remove(&(arc("r"), arc("a")));
        edges.remove(&(arc("r"), arc("b")));
        assert!(edges.is_empty());
        assert_eq!(edges.heaviest().count(), 0);
    }
}
