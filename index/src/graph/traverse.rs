//! Bounded breadth-first expansion over the adjacency maps of [`super::GraphIndex`].
//!
//! Invariants: a node is reported once, at its smallest depth, with the first path found in
//! deterministic order (frontier in discovery order; each node's edges by weight descending,
//! then neighbour id, then relation); seeds come first at depth 0 with an empty path. Limits are
//! hard: never more than `node_budget` nodes, `edge_budget` recorded edges, `max_hops` hops, and
//! from each expanded node at most `fan_out` edges to new nodes plus `fan_out` edges back into
//! the walk, heaviest first. Every recorded edge is a stored edge, recorded once.
//!
//! Cost: expanding a node with `d` eligible edges is one pass over them that borrows each from
//! the adjacency (no allocation, no reference count; with a relation filter only the ranges of
//! those relations are read), a linear-time selection of the heaviest `4 * fan_out + 8` and an
//! ordering of those: `O(d + fan_out log fan_out)`. A [`PathStep`] is built only for an edge the
//! walk records. Past that prefix (when edges back into the walk and duplicates used it up):
//! once `fan_out` new nodes are followed, only the remaining edges back into the walk are
//! ordered, after one hash lookup per remaining edge; otherwise the remaining edges are sorted.
//! So a hub with tens of thousands of edges costs about one scan of its adjacency and adds at
//! most `2 * fan_out` edges.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use foldhash::HashSet;

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

/// One eligible edge of an expanded node, borrowed from the adjacency: the walk orders and
/// selects these and builds a [`PathStep`] only for the edges it records.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    /// The expanded node (the adjacency's copy of its id).
    node: &'a Arc<str>,
    relation: &'a Arc<str>,
    /// The neighbour.
    to: &'a Arc<str>,
    weight: f32,
    /// True when the stored edge is `to -> node`.
    reversed: bool,
}

impl<'a> Candidate<'a> {
    /// Step order of an expanded node: weight descending, then neighbour id, relation and
    /// direction.
    fn walk_order(&self, other: &Self) -> Ordering {
        other
            .weight
            .total_cmp(&self.weight)
            .then_with(|| self.to.cmp(other.to))
            .then_with(|| self.relation.cmp(other.relation))
            .then_with(|| self.reversed.cmp(&other.reversed))
    }

    /// The stored edge as `(from, relation, to)`.
    fn stored(&self) -> (&'a str, &'a str, &'a str) {
        if self.reversed {
            (self.to, self.relation, self.node)
        } else {
            (self.node, self.relation, self.to)
        }
    }

    fn step(&self) -> PathStep {
        PathStep {
            from: self.node.clone(),
            relation: self.relation.clone(),
            to: self.to.clone(),
            weight: self.weight,
            reversed: self.reversed,
        }
    }
}

/// Why a walk stopped before its frontier emptied.
struct Stopped;

struct WalkState<'a> {
    options: &'a TraversalOptions,
    visited: HashSet<&'a str>,
    /// Recorded edges as stored `(from, relation, to)`.
    recorded: HashSet<(&'a str, &'a str, &'a str)>,
    walk: Walk,
}

impl<'a> WalkState<'a> {
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

    /// Records `step`, an edge back into the walk, unless it is recorded already; false when
    /// it was.
    fn cross(&mut self, step: &Candidate<'a>) -> Result<bool, Stopped> {
        let key = step.stored();
        if self.recorded.contains(&key) {
            return Ok(false);
        }
        self.edge_room()?;
        self.recorded.insert(key);
        self.walk.edges.push(step.step());
        Ok(true)
    }

    /// Follows or records the steps of the node at `index` in walk order, within the fan-out
    /// and budgets.
    fn expand(&mut self, index: usize, steps: &mut [Candidate<'a>]) -> Result<(), Stopped> {
        let fan_out = self.options.fan_out;
        // Only a prefix of the heaviest steps can be used unless duplicates use it up: select
        // it in linear time and look at the rest only if the walk gets that far.
        let prefix = fan_out.saturating_mul(4).saturating_add(8).min(steps.len());
        if prefix < steps.len() {
            steps.select_nth_unstable_by(prefix - 1, Candidate::walk_order);
        }
        steps[..prefix].sort_by(Candidate::walk_order);
        let (mut followed, mut crossed) = (0, 0);
        let depth = self.walk.reached[index].depth + 1;
        for position in 0..steps.len() {
            if followed >= fan_out && crossed >= fan_out {
                self.walk.truncation.fan_out = true;
                break;
            }
            if position == prefix {
                if followed >= fan_out {
                    return self.cross_rest(&mut steps[prefix..], crossed);
                }
                steps[prefix..].sort_by(Candidate::walk_order);
            }
            let step = steps[position];
            if self.visited.contains(&**step.to) {
                if self.recorded.contains(&step.stored()) {
                    continue;
                }
                if crossed >= fan_out {
                    self.walk.truncation.fan_out = true;
                    continue;
                }
                self.cross(&step)?;
                crossed += 1;
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
            self.recorded.insert(step.stored());
            self.visited.insert(step.to);
            let step = step.step();
            let entity_id = step.to.clone();
            let mut path = Vec::with_capacity(depth);
            path.extend_from_slice(&self.walk.reached[index].path);
            path.push(step.clone());
            self.walk.edges.push(step);
            self.walk.reached.push(Reached {
                entity_id,
                depth,
                path,
            });
        }
        Ok(())
    }

    /// The steps after the ordered prefix once `fan_out` new nodes are followed: no node joins
    /// the walk any more, so only the steps back into it can still be recorded and only those
    /// are ordered; a step to a new node just sets the fan-out flag (when the loop of
    /// [`WalkState::expand`] would have passed it: before a stop, or with any step left after
    /// the last one recorded).
    fn cross_rest(
        &mut self,
        rest: &mut [Candidate<'a>],
        mut crossed: usize,
    ) -> Result<(), Stopped> {
        let fan_out = self.options.fan_out;
        let mut back = 0;
        let mut first_new: Option<Candidate<'a>> = None;
        for position in 0..rest.len() {
            let step = rest[position];
            if self.visited.contains(&**step.to) {
                rest.swap(back, position);
                back += 1;
            } else if first_new.is_none_or(|first| step.walk_order(&first).is_lt()) {
                first_new = Some(step);
            }
        }
        let back = &mut rest[..back];
        back.sort_by(Candidate::walk_order);
        for (position, step) in back.iter().enumerate() {
            if first_new.is_some_and(|first| first.walk_order(step).is_lt()) {
                self.walk.truncation.fan_out = true;
            }
            if !self.cross(step)? {
                continue;
            }
            crossed += 1;
            if crossed >= fan_out {
                if position + 1 < back.len() {
                    self.walk.truncation.fan_out = true;
                }
                break;
            }
        }
        if first_new.is_some() {
            self.walk.truncation.fan_out = true;
        }
        Ok(())
    }
}

/// Puts the eligible steps out of `node` in the walk's direction into `steps` (unordered).
/// `relations` holds, per followed relation, the smallest adjacency key of that relation.
fn collect_steps<'a>(
    out: &'a HashMap<Arc<str>, EdgeMap>,
    incoming: &'a HashMap<Arc<str>, EdgeMap>,
    node: &str,
    options: &TraversalOptions,
    relations: Option<&[(Arc<str>, Arc<str>)]>,
    steps: &mut Vec<Candidate<'a>>,
) {
    steps.clear();
    for (map, reversed, wanted) in [
        (out, false, options.direction != Direction::In),
        (incoming, true, options.direction != Direction::Out),
    ] {
        let Some((node, edges)) = map.get_key_value(node).filter(|_| wanted) else {
            continue;
        };
        let eligible = |(key, weight): (&'a (Arc<str>, Arc<str>), &'a f32)| {
            (*weight >= options.min_weight).then_some(Candidate {
                node,
                relation: &key.0,
                to: &key.1,
                weight: *weight,
                reversed,
            })
        };
        match relations {
            None => steps.extend(edges.iter().filter_map(eligible)),
            Some(starts) => {
                for start in starts {
                    steps.extend(
                        edges
                            .range((Bound::Included(start), Bound::Unbounded))
                            .take_while(|(key, _)| key.0 == start.0)
                            .filter_map(eligible),
                    );
                }
            }
        }
    }
}

pub(super) fn walk<'a>(
    out: &'a HashMap<Arc<str>, EdgeMap>,
    incoming: &'a HashMap<Arc<str>, EdgeMap>,
    starts: &[&'a str],
    options: &'a TraversalOptions,
) -> Walk {
    // The adjacency is ordered by relation: each followed relation is one range of it.
    let relations: Option<Vec<(Arc<str>, Arc<str>)>> = options.relations.as_ref().map(|names| {
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| (Arc::from(name), Arc::from("")))
            .collect()
    });
    let mut state = WalkState {
        options,
        visited: HashSet::default(),
        recorded: HashSet::default(),
        walk: Walk::default(),
    };
    for &start in starts {
        if state.visited.contains(start) {
            continue;
        }
        if state.walk.reached.len() >= options.node_budget {
            state.walk.truncation.node_budget = true;
            return state.walk;
        }
        state.visited.insert(start);
        state.walk.reached.push(Reached {
            entity_id: Arc::from(start),
            depth: 0,
            path: Vec::new(),
        });
    }
    let mut steps = Vec::new();
    let mut frontier_start = 0;
    for _ in 1..=options.max_hops {
        let frontier_end = state.walk.reached.len();
        for index in frontier_start..frontier_end {
            collect_steps(
                out,
                incoming,
                &state.walk.reached[index].entity_id,
                options,
                relations.as_deref(),
                &mut steps,
            );
            if state.expand(index, &mut steps).is_err() {
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
