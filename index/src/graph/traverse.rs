//! Bounded breadth-first expansion over the adjacency maps of [`super::GraphIndex`], or over
//! any other source of each expanded node's steps in walk order ([`StepSource`]: the step lists
//! a ring's coordinator walks, [`super::HopWalk`]).
//!
//! Invariants: a node is reported once, at its smallest depth, with the first path found in
//! deterministic order (frontier in discovery order; each node's edges by weight descending,
//! then neighbour id, then relation); seeds come first at depth 0 with an empty path. Limits are
//! hard: never more than `node_budget` nodes, `edge_budget` recorded edges, `max_hops` hops, and
//! from each expanded node at most `fan_out` edges to new nodes plus `fan_out` edges back into
//! the walk, heaviest first. Every recorded edge is a stored edge, recorded once.
//!
//! Cost: a node's edges are kept heaviest first per relation (`edges.rs`), so expanding it
//! merges its followed relations' lists lazily and reads edges only until `fan_out` new nodes
//! are followed and `fan_out` edges back into the walk are recorded: each read borrows from the
//! adjacency (no allocation, no reference count), and a [`PathStep`] is built only for an edge
//! the walk records. Once `fan_out` new nodes are followed, only edges back into the walk can
//! still be recorded: when the node has many more edges left than the walk has nodes, those
//! edges are found by looking each walked node up in the node's edges (`O(walk log d)`)
//! instead of reading the rest. So a hub with tens of thousands of edges costs
//! `O((fan_out + walk) log d)` and adds at most `2 * fan_out` edges.
//!
//! Everything inside a walk is on the graph's dense ids: the expanded node's edges are a
//! vector index away, the visited set is an array of generation stamps, recorded edges are
//! triples of integers, and lookups of a walked node in a hub's edges hash two integers. Both
//! sets live in a per-thread [`Scratch`] reused by every walk on that thread (no allocation
//! once warm). Strings are touched only for the walk's starts (one lookup each), for tie
//! order between equal weights, and to build what the walk returns.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::btree_set;
use std::sync::Arc;

use super::Adjacency;
use super::edges::{NodeEdges, RelationEdges, WeightedPeer};
use super::ids::{Names, NodeId, RelationId};
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
pub(super) struct Candidate<'a> {
    /// The expanded node (the adjacency's copy of its id).
    pub(super) node: &'a Arc<str>,
    pub(super) node_id: NodeId,
    pub(super) relation: &'a Arc<str>,
    pub(super) relation_id: RelationId,
    /// The neighbour.
    pub(super) to: &'a Arc<str>,
    pub(super) to_id: NodeId,
    pub(super) weight: f32,
    /// True when the stored edge is `to -> node`.
    pub(super) reversed: bool,
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

    /// The stored edge as `(from, relation, to)` ids.
    fn stored(&self) -> StoredEdge {
        if self.reversed {
            (self.to_id, self.relation_id, self.node_id)
        } else {
            (self.node_id, self.relation_id, self.to_id)
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

/// A stored edge `(from, relation, to)` by ids.
type StoredEdge = (NodeId, RelationId, NodeId);

/// Why a walk stopped before its frontier emptied.
pub(super) struct Stopped;

/// The sets of one walk, kept per thread and reused: `stamps[node] == generation` iff the node
/// is visited by the current walk (a new walk bumps the generation instead of clearing), and
/// the recorded edges (cleared, keeping their capacity).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    stamps: Vec<u32>,
    generation: u32,
    recorded: foldhash::HashSet<StoredEdge>,
}

impl Scratch {
    /// Starts a walk over a graph of `nodes` node ids: nothing visited, nothing recorded.
    pub(super) fn begin(&mut self, nodes: usize) {
        if self.generation == u32::MAX {
            self.stamps.fill(0);
            self.generation = 0;
        }
        self.generation += 1;
        self.fit(nodes);
        self.recorded.clear();
    }

    /// Makes room for node ids below `nodes` (a graph that grew during the walk).
    pub(super) fn fit(&mut self, nodes: usize) {
        if self.stamps.len() < nodes {
            self.stamps.resize(nodes, 0);
        }
    }

    fn visited(&self, node: NodeId) -> bool {
        self.stamps[node as usize] == self.generation
    }

    fn visit(&mut self, node: NodeId) {
        self.stamps[node as usize] = self.generation;
    }
}

thread_local! {
    /// This thread's walk sets (see [`Scratch`]); a walk never starts another walk, so the
    /// borrow is never contended.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Past the point where an expanded node followed `fan_out` new nodes, its remaining steps
/// are looked for by walked node (a lookup per walked node and stream) instead of read one by
/// one, when they outnumber those lookups by this factor (a lookup costs a few reads).
const LOOKUP_FACTOR: usize = 4;

/// An expanded node's eligible steps in walk order, as [`WalkState::expand`] reads them.
pub(super) trait StepSource<'a> {
    /// Takes the next step in walk order.
    fn next(&mut self) -> Option<Candidate<'a>>;

    /// Whether a step is left.
    fn has_next(&self) -> bool;

    /// The steps not taken yet back into the walk (whose nodes are `walked`), in walk order,
    /// when finding them by walked node is cheaper than reading every remaining step (`None`:
    /// read them). Asked once `fan_out` new nodes are followed.
    fn back_steps_by_lookup(&self, walked: &[Option<NodeId>]) -> Option<Vec<Candidate<'a>>>;
}

/// The edges of one relation in one direction of an expanded node, heaviest first.
struct Stream<'a> {
    /// The expanded node (the adjacency's copy of its id).
    node: &'a Arc<str>,
    node_id: NodeId,
    relation: &'a Arc<str>,
    relation_id: RelationId,
    reversed: bool,
    /// All the node's edges in this direction (for lookups by peer).
    edges: &'a NodeEdges,
    rest: btree_set::Iter<'a, WeightedPeer>,
    /// The next eligible step of the stream, taken from `rest`; `None` once it is exhausted.
    head: Option<Candidate<'a>>,
}

/// The eligible steps of an expanded node in walk order, produced lazily: a merge of its
/// streams (one per followed relation and direction, so usually one or two), each heaviest
/// first. Expanding a hub reads only as many of its edges as the walk uses.
struct Steps<'a> {
    /// The graph's node names (for steps found by lookup).
    names: &'a Names,
    streams: Vec<Stream<'a>>,
    min_weight: f32,
    /// Edges of the streams, eligible or not, and how many of them were taken.
    total: usize,
    taken: usize,
    /// The last step taken: every step before it in walk order was taken, none after it.
    last: Option<Candidate<'a>>,
}

impl<'a> Steps<'a> {
    fn new(names: &'a Names, min_weight: f32) -> Self {
        Self {
            names,
            streams: Vec::new(),
            min_weight,
            total: 0,
            taken: 0,
            last: None,
        }
    }

    /// Starts on the eligible steps out of node `node_id` in the walk's direction; `relations`
    /// are the followed relation names (sorted, distinct), `None` for all.
    fn start(
        &mut self,
        adjacency: &'a Adjacency,
        node_id: NodeId,
        direction: Direction,
        relations: Option<&[&str]>,
    ) {
        self.streams.clear();
        self.total = 0;
        self.taken = 0;
        self.last = None;
        let node = adjacency.nodes.name(node_id);
        for (map, reversed, wanted) in [
            (&adjacency.out, false, direction != Direction::In),
            (&adjacency.incoming, true, direction != Direction::Out),
        ] {
            let Some(edges) = wanted.then(|| Adjacency::edges_of(map, node_id)).flatten() else {
                continue;
            };
            let mut add = |relation: &'a Arc<str>, set: &'a RelationEdges| {
                self.total += set.heaviest.len();
                self.streams.push(Stream {
                    node,
                    node_id,
                    relation,
                    relation_id: set.id,
                    reversed,
                    edges,
                    rest: set.heaviest.iter(),
                    head: None,
                });
            };
            match relations {
                None => edges.heaviest().for_each(|(r, set)| add(r, set)),
                Some(names) => names
                    .iter()
                    .filter_map(|name| edges.heaviest_of(name))
                    .for_each(|(r, set)| add(r, set)),
            }
        }
        for stream in 0..self.streams.len() {
            self.advance(stream);
        }
    }

    /// Loads the next eligible step of `stream` into its head; none once the weights fall
    /// below the minimum (they come heaviest first).
    fn advance(&mut self, stream: usize) {
        let min_weight = self.min_weight;
        let stream = &mut self.streams[stream];
        stream.head = stream
            .rest
            .next()
            .filter(|edge| edge.weight >= min_weight)
            .map(|edge| Candidate {
                node: stream.node,
                node_id: stream.node_id,
                relation: stream.relation,
                relation_id: stream.relation_id,
                to: &edge.peer,
                to_id: edge.id,
                weight: edge.weight,
                reversed: stream.reversed,
            });
    }

    /// Whether looking the remaining steps up by walked node (`walked` nodes) is cheaper than
    /// reading them.
    fn cheaper_by_lookup(&self, walked: usize) -> bool {
        let lookups = walked.saturating_mul(self.streams.len());
        (self.total - self.taken) > lookups.saturating_mul(LOOKUP_FACTOR)
    }

    /// The steps not taken yet whose neighbour is one of `walked` (node ids), in stream order
    /// then `walked` order: each walked node is looked up in each stream's edges.
    fn remaining_to(&self, walked: impl Iterator<Item = NodeId> + Clone) -> Vec<Candidate<'a>> {
        let mut found = Vec::new();
        for stream in &self.streams {
            for peer in walked.clone() {
                let Some(weight) = stream.edges.weight(stream.relation_id, peer) else {
                    continue;
                };
                let step = Candidate {
                    node: stream.node,
                    node_id: stream.node_id,
                    relation: stream.relation,
                    relation_id: stream.relation_id,
                    to: self.names.name(peer),
                    to_id: peer,
                    weight,
                    reversed: stream.reversed,
                };
                let untaken = self.last.is_none_or(|last| last.walk_order(&step).is_lt());
                if weight >= self.min_weight && untaken {
                    found.push(step);
                }
            }
        }
        found
    }
}

impl<'a> StepSource<'a> for Steps<'a> {
    fn next(&mut self) -> Option<Candidate<'a>> {
        let (stream, step) = self
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, stream)| stream.head.map(|head| (i, head)))
            .min_by(|a, b| a.1.walk_order(&b.1))?;
        self.advance(stream);
        self.taken += 1;
        self.last = Some(step);
        Some(step)
    }

    fn has_next(&self) -> bool {
        self.streams.iter().any(|stream| stream.head.is_some())
    }

    fn back_steps_by_lookup(&self, walked: &[Option<NodeId>]) -> Option<Vec<Candidate<'a>>> {
        if !self.cheaper_by_lookup(walked.len()) {
            return None;
        }
        let mut back = self.remaining_to(walked.iter().flatten().copied());
        back.sort_by(Candidate::walk_order);
        Some(back)
    }
}

/// One walk in progress: what it reached and recorded, and the sets it checks against.
pub(super) struct WalkState<'o, 's> {
    pub(super) options: &'o TraversalOptions,
    /// The visited nodes and the recorded edges (as stored `(from, relation, to)`).
    pub(super) scratch: &'s mut Scratch,
    pub(super) walk: &'s mut Walk,
    /// The id of each node of `walk.reached` (`None`: a start the graph does not know, which
    /// has no edge).
    pub(super) reached_ids: &'s mut Vec<Option<NodeId>>,
}

impl WalkState<'_, '_> {
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

    /// Puts the distinct `starts` in the walk at depth 0, each with its id and name from
    /// `resolve` (`None`: a start without edges, kept by its own name); `Err` when the node
    /// budget stopped it.
    pub(super) fn add_starts(
        &mut self,
        starts: &[&str],
        mut resolve: impl FnMut(&str) -> Option<(NodeId, Arc<str>)>,
    ) -> Result<(), Stopped> {
        // Starts without edges: deduplicated by name.
        let mut unknown_starts: foldhash::HashSet<&str> = foldhash::HashSet::default();
        for &start in starts {
            let resolved = resolve(start);
            let seen = match &resolved {
                Some((id, _)) => self.scratch.visited(*id),
                None => unknown_starts.contains(start),
            };
            if seen {
                continue;
            }
            if self.walk.reached.len() >= self.options.node_budget {
                self.walk.truncation.node_budget = true;
                return Err(Stopped);
            }
            let (id, entity_id) = match resolved {
                Some((id, name)) => {
                    self.scratch.visit(id);
                    (Some(id), name)
                }
                None => {
                    unknown_starts.insert(start);
                    (None, Arc::from(start))
                }
            };
            self.reached_ids.push(id);
            self.walk.reached.push(Reached {
                entity_id,
                depth: 0,
                path: Vec::new(),
            });
        }
        Ok(())
    }

    /// Records `step`, an edge back into the walk, unless it is recorded already; false when
    /// it was.
    fn cross(&mut self, step: &Candidate<'_>) -> Result<bool, Stopped> {
        let key = step.stored();
        if self.scratch.recorded.contains(&key) {
            return Ok(false);
        }
        self.edge_room()?;
        self.scratch.recorded.insert(key);
        self.walk.edges.push(step.step());
        Ok(true)
    }

    /// Follows or records the steps of the node at `index` in walk order, within the fan-out
    /// and budgets.
    pub(super) fn expand<'c>(
        &mut self,
        index: usize,
        steps: &mut impl StepSource<'c>,
    ) -> Result<(), Stopped> {
        let fan_out = self.options.fan_out;
        let (mut followed, mut crossed) = (0, 0);
        let depth = self.walk.reached[index].depth + 1;
        loop {
            if followed >= fan_out {
                if crossed >= fan_out {
                    if steps.has_next() {
                        self.walk.truncation.fan_out = true;
                    }
                    return Ok(());
                }
                if let Some(back) = steps.back_steps_by_lookup(self.reached_ids) {
                    return self.cross_rest(steps, back, crossed);
                }
            }
            let Some(step) = steps.next() else {
                return Ok(());
            };
            if self.scratch.visited(step.to_id) {
                if self.scratch.recorded.contains(&step.stored()) {
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
            self.scratch.recorded.insert(step.stored());
            self.scratch.visit(step.to_id);
            self.reached_ids.push(Some(step.to_id));
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
    }

    /// The steps left once `fan_out` new nodes are followed: no node joins the walk any more,
    /// so only the steps back into it (`back`, in walk order) can still be recorded. They were
    /// found by looking each walked node up (not by reading the rest of a hub's edges) and are
    /// recorded in walk order, exactly as [`WalkState::expand`] would; a step to a new node just
    /// sets the fan-out flag (when the loop of `expand` would have passed it: before a stop, or
    /// with any step left after the last one recorded).
    fn cross_rest<'c>(
        &mut self,
        steps: &mut impl StepSource<'c>,
        back: Vec<Candidate<'c>>,
        mut crossed: usize,
    ) -> Result<(), Stopped> {
        let fan_out = self.options.fan_out;
        let mut first_new = None;
        while let Some(step) = steps.next() {
            if !self.scratch.visited(step.to_id) {
                first_new = Some(step);
                break;
            }
        }
        for (position, step) in back.iter().enumerate() {
            if first_new.is_some_and(|first: Candidate<'c>| first.walk_order(step).is_lt()) {
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

/// The followed relation names of `options`, sorted and distinct (`None`: all).
fn followed_relations(options: &TraversalOptions) -> Option<Vec<&str>> {
    options.relations.as_ref().map(|names| {
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    })
}

/// The eligible steps out of one node, as a remote walk needs them ([`super::GraphIndex::steps_from_each`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSteps {
    /// In walk order: every eligible step up to the one that would bring a `limit + 1`-th
    /// distinct neighbour outside the walked nodes given, then every later eligible step whose
    /// neighbour is a walked node or one of those `limit` neighbours.
    pub steps: Vec<PathStep>,
    /// Some eligible step was left out.
    pub cut: bool,
}

/// The walked nodes of a remote walk that this adjacency knows, resolved once per hop.
pub(super) struct WalkedSet(foldhash::HashSet<NodeId>);

impl WalkedSet {
    /// `walked`'s nodes known to `adjacency` (the others have no edges here to step back to).
    pub(super) fn resolve(adjacency: &Adjacency, walked: &[Arc<str>]) -> Self {
        Self(
            walked
                .iter()
                .filter_map(|peer| adjacency.nodes.get(peer))
                .collect(),
        )
    }
}

/// [`NodeSteps`] of `node` under `options` (its direction, relations and minimum weight).
///
/// Why distinct neighbours: a walk expanding `node` follows at most `fan_out` new neighbours
/// and skips the ones visited meanwhile (at most `node_budget`), so with `limit = fan_out +
/// node_budget` the neighbours it can follow are among the first `limit` distinct ones outside
/// the walk; parallel edges (several relations, both directions) to one neighbour must not use
/// up the limit, and the later ones to a neighbour it may follow are edges it may record back
/// into the walk.
pub(super) fn node_steps(
    adjacency: &Adjacency,
    node: &str,
    options: &TraversalOptions,
    limit: usize,
    walked: &WalkedSet,
) -> NodeSteps {
    let Some(node) = adjacency.nodes.get(node) else {
        return NodeSteps::default();
    };
    let relations = followed_relations(options);
    let mut steps = Steps::new(&adjacency.nodes, options.min_weight);
    steps.start(adjacency, node, options.direction, relations.as_deref());
    let walked = &walked.0;
    let mut fresh: foldhash::HashSet<NodeId> = foldhash::HashSet::default();
    let mut found = NodeSteps::default();
    loop {
        let Some(step) = steps.next() else {
            return found;
        };
        if !walked.contains(&step.to_id) && !fresh.contains(&step.to_id) {
            if fresh.len() == limit {
                found.cut = true;
                break;
            }
            fresh.insert(step.to_id);
        }
        found.steps.push(step.step());
    }
    let mut later = steps.remaining_to(walked.iter().chain(fresh.iter()).copied());
    later.sort_by(Candidate::walk_order);
    later.dedup_by(|a, b| a.walk_order(b).is_eq());
    found.steps.extend(later.iter().map(Candidate::step));
    found
}

pub(super) fn walk(adjacency: &Adjacency, starts: &[&str], options: &TraversalOptions) -> Walk {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.begin(adjacency.nodes.len());
        walk_with(scratch, adjacency, starts, options)
    })
}

fn walk_with(
    scratch: &mut Scratch,
    adjacency: &Adjacency,
    starts: &[&str],
    options: &TraversalOptions,
) -> Walk {
    let mut walk = Walk::default();
    let mut reached_ids = Vec::new();
    let mut state = WalkState {
        options,
        scratch,
        walk: &mut walk,
        reached_ids: &mut reached_ids,
    };
    // `Err`: a budget stopped the walk, and set its flag.
    let _stopped = walk_hops(&mut state, adjacency, starts);
    walk
}

/// The walk of `state` from `starts`, hop by hop over `adjacency`, until its frontier empties,
/// its hops are taken or a budget stops it.
fn walk_hops(state: &mut WalkState, adjacency: &Adjacency, starts: &[&str]) -> Result<(), Stopped> {
    let options = state.options;
    state.add_starts(starts, |start| {
        let id = adjacency.nodes.get(start)?;
        Some((id, adjacency.nodes.name(id).clone()))
    })?;
    let relations = followed_relations(options);
    let mut steps = Steps::new(&adjacency.nodes, options.min_weight);
    let mut frontier_start = 0;
    for _ in 1..=options.max_hops {
        let frontier_end = state.walk.reached.len();
        for index in frontier_start..frontier_end {
            let Some(node) = state.reached_ids[index] else {
                continue;
            };
            steps.start(adjacency, node, options.direction, relations.as_deref());
            state.expand(index, &mut steps)?;
        }
        if state.walk.reached.len() == frontier_end {
            break;
        }
        frontier_start = frontier_end;
    }
    Ok(())
}
