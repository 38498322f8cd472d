//! Bounded breadth-first expansion over the adjacency maps of [`super::GraphIndex`].
//!
//! Invariants: a node is reported once, at its smallest depth, with the first path found in
//! deterministic order (frontier in discovery order; each node's edges by weight descending,
//! then neighbour id, then relation); seeds come first at depth 0 with an empty path. Limits are
//! hard: never more than `node_budget` nodes, `edge_budget` recorded edges, `max_hops` hops, and
//! from each expanded node at most `fan_out` edges to new nodes plus `fan_out` edges back into
//! the walk, heaviest first. Every recorded edge is a stored edge, recorded once.
//!
//! Cost: expanding a node with `d` eligible edges is one pass over them plus a partial
//! selection of the heaviest (`O(d + fan_out log fan_out)`), so a hub with tens of thousands of
//! edges costs one scan of its adjacency, never a sort of it, and adds at most `2 * fan_out`
//! edges.

use std::cmp::Ordering;
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
    /// At most this many edges are recorded (`None`: no limit beyond the others, which imply
    /// at most `2 * fan_out` per expanded node).
    pub edge_budget: Option<usize>,
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
            edge_budget: None,
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
        if self.fan_out == 0 {
            return Err(Error::invalid("fan_out must be at least 1"));
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

impl PathStep {
    /// The stored edge as `(from, relation, to)`, whatever the direction of travel.
    pub fn stored(&self) -> (&Arc<str>, &Arc<str>, &Arc<str>) {
        if self.reversed {
            (&self.to, &self.relation, &self.from)
        } else {
            (&self.from, &self.relation, &self.to)
        }
    }

    /// Step order of an expanded node: weight descending, then neighbour id, relation and
    /// direction.
    fn walk_order(&self, other: &Self) -> Ordering {
        other
            .weight
            .total_cmp(&self.weight)
            .then_with(|| self.to.cmp(&other.to))
            .then_with(|| self.relation.cmp(&other.relation))
            .then_with(|| self.reversed.cmp(&other.reversed))
    }
}

/// Which limits cut a walk short (several can).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Truncation {
    /// Some node had more eligible edges than `fan_out` (to new nodes, or back into the walk).
    pub fan_out: bool,
    /// A new node was refused because the walk held `node_budget` nodes.
    pub node_budget: bool,
    /// An edge was refused because the walk held `edge_budget` edges.
    pub edge_budget: bool,
}

impl Truncation {
    /// True when any limit cut the walk.
    pub fn any(&self) -> bool {
        self.fan_out || self.node_budget || self.edge_budget
    }
}

/// What a bounded walk visited: its nodes and the edges it recorded between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Walk {
    /// Nodes in breadth-first order, seeds first.
    pub reached: Vec<Reached>,
    /// Each recorded edge once, in the order recorded, as the step that recorded it: the edge
    /// that reached a node (the last step of its path) or an edge from an expanded node to a
    /// node already in the walk (cycles, self-loops, parallel edges, edges between branches).
    pub edges: Vec<PathStep>,
    /// The limits that cut the walk.
    pub truncation: Truncation,
}

/// Why a walk stopped before its frontier emptied.
struct Stopped;

struct WalkState<'a> {
    options: &'a TraversalOptions,
    visited: HashSet<Arc<str>>,
    recorded: HashSet<(Arc<str>, Arc<str>, Arc<str>)>,
    walk: Walk,
}

impl WalkState<'_> {
    fn edge_room(&mut self) -> Result<(), Stopped> {
        if self
            .options
            .edge_budget
            .is_some_and(|budget| self.walk.edges.len() >= budget)
        {
            self.walk.truncation.edge_budget = true;
            return Err(Stopped);
        }
        Ok(())
    }

    /// Follows or records `node`'s steps in walk order, within the fan-out and budgets.
    fn expand(&mut self, index: usize, mut steps: Vec<PathStep>) -> Result<(), Stopped> {
        let fan_out = self.options.fan_out;
        // Only a prefix of the heaviest steps can be used unless duplicates use it up: select
        // it in linear time and order the rest only if the walk gets that far.
        let prefix = fan_out.saturating_mul(4).saturating_add(8).min(steps.len());
        if prefix < steps.len() {
            steps.select_nth_unstable_by(prefix - 1, PathStep::walk_order);
        }
        steps[..prefix].sort_by(PathStep::walk_order);
        let (mut followed, mut crossed) = (0, 0);
        let depth = self.walk.reached[index].depth + 1;
        for position in 0..steps.len() {
            if followed >= fan_out && crossed >= fan_out {
                if position < steps.len() {
                    self.walk.truncation.fan_out = true;
                }
                break;
            }
            if position == prefix {
                steps[prefix..].sort_by(PathStep::walk_order);
            }
            let step = &steps[position];
            if self.visited.contains(&step.to) {
                let (from, relation, to) = step.stored();
                let key = (from.clone(), relation.clone(), to.clone());
                if self.recorded.contains(&key) {
                    continue;
                }
                if crossed >= fan_out {
                    self.walk.truncation.fan_out = true;
                    continue;
                }
                self.edge_room()?;
                crossed += 1;
                self.recorded.insert(key);
                self.walk.edges.push(step.clone());
                continue;
            }
            if followed >= fan_out {
                self.walk.truncation.fan_out = true;
                continue;
            }
            if self.walk.reached.len() >= self.options.node_budget {
                self.walk.truncation.node_budget = true;
                return Err(Stopped);
            }
            self.edge_room()?;
            followed += 1;
            let (from, relation, to) = step.stored();
            self.recorded
                .insert((from.clone(), relation.clone(), to.clone()));
            self.visited.insert(step.to.clone());
            self.walk.edges.push(step.clone());
            let mut path = self.walk.reached[index].path.clone();
            path.push(step.clone());
            self.walk.reached.push(Reached {
                entity_id: step.to.clone(),
                depth,
                path,
            });
        }
        Ok(())
    }
}

/// The eligible steps out of `node` in the walk's direction (unordered).
fn steps_of(
    out: &HashMap<Arc<str>, EdgeMap>,
    incoming: &HashMap<Arc<str>, EdgeMap>,
    node: &Arc<str>,
    options: &TraversalOptions,
    relations: Option<&HashSet<&str>>,
) -> Vec<PathStep> {
    let mut steps: Vec<PathStep> = Vec::new();
    let mut collect = |map: &HashMap<Arc<str>, EdgeMap>, reversed: bool| {
        let Some(edges) = map.get(node) else { return };
        for ((relation, peer), weight) in edges {
            if *weight >= options.min_weight && relations.is_none_or(|r| r.contains(&**relation)) {
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
    steps
}

pub(super) fn walk(
    out: &HashMap<Arc<str>, EdgeMap>,
    incoming: &HashMap<Arc<str>, EdgeMap>,
    starts: &[&str],
    options: &TraversalOptions,
) -> Walk {
    let relations: Option<HashSet<&str>> = options
        .relations
        .as_ref()
        .map(|names| names.iter().map(String::as_str).collect());
    let mut state = WalkState {
        options,
        visited: HashSet::new(),
        recorded: HashSet::new(),
        walk: Walk::default(),
    };
    for start in starts {
        let id: Arc<str> = Arc::from(*start);
        if state.visited.contains(&id) {
            continue;
        }
        if state.walk.reached.len() >= options.node_budget {
            state.walk.truncation.node_budget = true;
            return state.walk;
        }
        state.visited.insert(id.clone());
        state.walk.reached.push(Reached {
            entity_id: id,
            depth: 0,
            path: Vec::new(),
        });
    }
    let mut frontier_start = 0;
    for _ in 1..=options.max_hops {
        let frontier_end = state.walk.reached.len();
        for index in frontier_start..frontier_end {
            let node = state.walk.reached[index].entity_id.clone();
            let steps = steps_of(out, incoming, &node, options, relations.as_ref());
            if state.expand(index, steps).is_err() {
                return state.walk;
            }
        }
        if state.walk.reached.len() == frontier_end {
            break;
        }
        frontier_start = frontier_end;
    }
    state.walk
}
