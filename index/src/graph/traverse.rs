//! Bounded breadth-first expansion over the adjacency maps of [`super::GraphIndex`].
//!
//! Invariants: a node is reported once, at its smallest depth, with the first path found in
//! deterministic order (frontier in discovery order; each node's edges by weight descending,
//! then neighbour id, then relation); seeds come first at depth 0 with an empty path. Limits are
//! hard: never more than `node_budget` nodes, `max_hops` hops or `fan_out` followed edges per node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::EdgeMap;
use crate::error::{Error, Result};

/// Which edges to follow from a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Edges leaving the node.
    #[default]
    Out,
    /// Edges arriving at the node (followed backwards).
    In,
    /// Both.
    Both,
}

/// Limits and filters of one expansion.
#[derive(Clone, Debug, PartialEq)]
pub struct TraversalOptions {
    /// Maximum number of hops from a seed (0 = seeds only).
    pub max_hops: usize,
    /// At most this many edges are followed from each node, highest weight first.
    pub fan_out: usize,
    /// At most this many nodes are returned, seeds included.
    pub node_budget: usize,
    /// Only these relations are followed (`None`: all).
    pub relations: Option<Vec<String>>,
    /// Which edges to follow.
    pub direction: Direction,
    /// Edges lighter than this are not followed.
    pub min_weight: f32,
}

impl Default for TraversalOptions {
    fn default() -> Self {
        Self {
            max_hops: 2,
            fan_out: 16,
            node_budget: 256,
            relations: None,
            direction: Direction::Out,
            min_weight: f32::NEG_INFINITY,
        }
    }
}

impl TraversalOptions {
    /// Checks the options (a NaN minimum weight would silently reject every edge).
    pub fn validate(&self) -> Result<()> {
        if self.min_weight.is_nan() {
            return Err(Error::invalid("min_weight is NaN"));
        }
        if self.node_budget == 0 {
            return Err(Error::invalid("node_budget must be at least 1"));
        }
        Ok(())
    }
}

/// One followed edge. `from` -> `to` is the direction of travel; `reversed` is true when the
/// stored edge points the other way (followed as an in-edge).
#[derive(Clone, Debug, PartialEq)]
pub struct PathStep {
    /// Node the step leaves.
    pub from: Arc<str>,
    /// Relation of the edge.
    pub relation: Arc<str>,
    /// Node the step reaches.
    pub to: Arc<str>,
    /// Edge weight.
    pub weight: f32,
    /// True when the stored edge is `to -> from`.
    pub reversed: bool,
}

/// A node reached by an expansion.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    /// The entity.
    pub entity_id: Arc<str>,
    /// Hops from its seed (0 for a seed).
    pub depth: usize,
    /// Edges from the seed to this node (empty for a seed).
    pub path: Vec<PathStep>,
}

pub(super) fn bfs(
    out: &HashMap<Arc<str>, EdgeMap>,
    incoming: &HashMap<Arc<str>, EdgeMap>,
    starts: &[&str],
    options: &TraversalOptions,
) -> Vec<Reached> {
    let relations: Option<HashSet<&str>> = options
        .relations
        .as_ref()
        .map(|names| names.iter().map(String::as_str).collect());
    let mut visited: HashSet<Arc<str>> = HashSet::new();
    let mut reached: Vec<Reached> = Vec::new();
    for start in starts {
        if reached.len() >= options.node_budget {
            return reached;
        }
        let id: Arc<str> = Arc::from(*start);
        if visited.insert(id.clone()) {
            reached.push(Reached {
                entity_id: id,
                depth: 0,
                path: Vec::new(),
            });
        }
    }
    let mut frontier_start = 0;
    for depth in 1..=options.max_hops {
        let frontier_end = reached.len();
        for index in frontier_start..frontier_end {
            let node = reached[index].entity_id.clone();
            let mut steps: Vec<PathStep> = Vec::new();
            let mut collect = |map: &HashMap<Arc<str>, EdgeMap>, reversed: bool| {
                let Some(edges) = map.get(&node) else { return };
                for ((relation, peer), weight) in edges {
                    let followed = *weight >= options.min_weight
                        && relations.as_ref().is_none_or(|r| r.contains(&**relation))
                        && !visited.contains(peer);
                    if followed {
                        steps.push(PathStep {
                            from: node.clone(),
                            relation: relation.clone(),
                            to: peer.clone(),
                            weight: *weight,
                            reversed,
                        });
                    }
                }
            };
            if matches!(options.direction, Direction::Out | Direction::Both) {
                collect(out, false);
            }
            if matches!(options.direction, Direction::In | Direction::Both) {
                collect(incoming, true);
            }
            steps.sort_by(|a, b| {
                b.weight
                    .total_cmp(&a.weight)
                    .then_with(|| a.to.cmp(&b.to))
                    .then_with(|| a.relation.cmp(&b.relation))
                    .then_with(|| a.reversed.cmp(&b.reversed))
            });
            let mut followed = 0;
            for step in steps {
                if followed >= options.fan_out {
                    break;
                }
                if reached.len() >= options.node_budget {
                    return reached;
                }
                if !visited.insert(step.to.clone()) {
                    continue;
                }
                followed += 1;
                let mut path = reached[index].path.clone();
                let to = step.to.clone();
                path.push(step);
                reached.push(Reached {
                    entity_id: to,
                    depth,
                    path,
                });
            }
        }
        if reached.len() == frontier_end {
            break;
        }
        frontier_start = frontier_end;
    }
    reached
}
