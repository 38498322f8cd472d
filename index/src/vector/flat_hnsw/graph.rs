//! The flat HNSW graph (Malkov & Yashunin) in hnswlib's memory layout, and its search and
//! insertion (linking) algorithms.
//!
//! Owns: the vectors (one contiguous `Vec<f32>`, row = node), the callers' ids of the nodes and
//! the map from a caller's id back to its node, each node's top level, level-0 neighbour lists
//! in one flat `Vec<AtomicU32>` with a fixed stride (`1 + 2M` slots: count, then up to `2M`
//! neighbours), the upper-level lists per node (`level * (1 + M)` slots each, empty for the
//! ~94% of nodes that live on level 0 only), each node's level-0 *parent* and one lock per node.
//!
//! Reachability: every node but the entry point has (once its link has claimed one) a parent,
//! a node whose level-0 list holds it and never drops it in a pruning. A node becomes a parent
//! only once it has a parent itself (or is the entry point), so parent links form a tree rooted
//! at the entry point and every parented node stays reachable on level 0, whatever the
//! prunings of concurrent links do.
//!
//! Insertion is two steps. [`Graph::append`] (under `&mut`) stores a node's id, vector and level
//! with empty lists; [`Graph::link`] (under `&`, so several nodes link at once while searches
//! run) finds its neighbours and rewrites lists, each read-modify-write of a list under that
//! node's lock, one lock held at a time (no deadlock). Readers load list slots without locks
//! (relaxed atomics): a list read during a rewrite may mix old and new slots, but every slot
//! always holds a node `< len()`, so a search can only be less precise, never wrong or unsafe.
//!
//! Invariants: every neighbour id is a node `< len()`; a list never holds more than its level's
//! capacity (`2M` on level 0, `M` above); `entry` is `None` iff the graph is empty, otherwise a
//! node whose level is `max_level`; `entry` and `max_level` change only under `&mut`. Never
//! panics on a query of the wrong length (it finds nothing) and never allocates per visited
//! node.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

use parking_lot::Mutex;

use super::kernel::DistanceFn;

/// Highest level a node may get (the draw exceeds ~13 with probability below 1e-16 at M = 16).
pub(super) const MAX_LEVEL: usize = 32;

/// The parent of the entry point and of a node that has not claimed one yet.
const NO_PARENT: u32 = u32::MAX;

/// A node and its distance to the current query; ordered by distance, then node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Scored {
    pub(super) distance: f32,
    pub(super) node: u32,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

/// Per-search working memory, reused across searches: the generation-stamped visited set and
/// the two heaps. One per concurrent search (the engine keeps a pool).
#[derive(Default)]
pub(super) struct Scratch {
    /// `visited[node] == stamp` iff `node` was reached by the current search.
    visited: Vec<u16>,
    stamp: u16,
    /// Nodes to expand, nearest first.
    candidates: BinaryHeap<Reverse<Scored>>,
    /// Best nodes found, farthest on top; at most `ef`.
    results: BinaryHeap<Scored>,
    /// A filtered search's refused neighbours of the node it expands.
    bridges: Vec<u32>,
}

impl Scratch {
    /// Starts a new search over `nodes` nodes: every node becomes unvisited in O(1) (O(n) once
    /// every 65,535 searches, when the stamp wraps).
    fn begin(&mut self, nodes: usize) {
        if self.visited.len() < nodes {
            self.visited.resize(nodes, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Whether `node` was visited.
    #[inline]
    fn is_visited(&self, node: u32) -> bool {
        self.visited[node as usize] == self.stamp
    }

    /// Marks `node` visited; false if it already was.
    #[inline]
    fn visit(&mut self, node: u32) -> bool {
        let slot = &mut self.visited[node as usize];
        if *slot == self.stamp {
            return false;
        }
        *slot = self.stamp;
        true
    }

    /// The results of the last search, nearest first (empties the result heap).
    pub(super) fn take_sorted_results(&mut self) -> Vec<Scored> {
        let mut out: Vec<Scored> = self.results.drain().collect();
        out.sort_unstable();
        out
    }
}

/// Nodes a filtered search knows its filter refuses, and how far it looks through them.
#[derive(Clone, Copy)]
pub(super) struct Refused<'a> {
    /// True for a node the filter is known to refuse.
    pub(super) refused: &'a dyn Fn(u32) -> bool,
    /// Allowed (or unknown) nodes considered per expanded node, direct neighbours first, then
    /// the neighbours of its refused ones.
    pub(super) width: usize,
}

/// What neighbour selection decided about one candidate.
enum Verdict {
    Kept,
    /// A kept node is strictly closer to it than the base.
    Occluded,
    /// Its vector equals a kept node's.
    Redundant,
}

/// The graph; see the module documentation for the layout.
pub(super) struct Graph {
    pub(super) distance: DistanceFn,
    /// `M`: neighbours kept per node on levels above 0 (`2M` on level 0).
    pub(super) max_connections: usize,
    /// Vector length; 0 until the first insert fixes it.
    pub(super) dim: usize,
    pub(super) vectors: Vec<f32>,
    pub(super) labels: Vec<usize>,
    /// `labels` inverted: the node of each caller's id (ids are unique per graph; assigned by
    /// the tenant index, never by a client, so foldhash instead of SipHash is safe).
    pub(super) nodes_by_label: foldhash::HashMap<usize, u32>,
    pub(super) levels: Vec<u8>,
    pub(super) level0: Vec<AtomicU32>,
    pub(super) upper: Vec<Box<[AtomicU32]>>,
    /// Per node: its parent (`NO_PARENT` for the entry point and a node not yet linked). Set
    /// under the parent's lock; a node's children are never pruned from its level-0 list.
    parents: Vec<AtomicU32>,
    /// One per node: held while that node's lists are read-modified-written.
    locks: Vec<Mutex<()>>,
    pub(super) entry: Option<u32>,
    pub(super) max_level: usize,
}

impl Graph {
    pub(super) fn new(distance: DistanceFn, max_connections: usize, capacity: usize) -> Self {
        let mut graph = Self {
            distance,
            max_connections,
            dim: 0,
            vectors: Vec::new(),
            labels: Vec::with_capacity(capacity),
            nodes_by_label: foldhash::HashMap::with_capacity_and_hasher(
                capacity,
                Default::default(),
            ),
            levels: Vec::with_capacity(capacity),
            level0: Vec::new(),
            upper: Vec::with_capacity(capacity),
            parents: Vec::with_capacity(capacity),
            locks: Vec::with_capacity(capacity),
            entry: None,
            max_level: 0,
        };
        graph
            .level0
            .reserve(capacity.saturating_mul(graph.level0_stride()));
        graph
    }

    pub(super) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Slots per node in `level0`: the count, then `2M` neighbours.
    pub(super) fn level0_stride(&self) -> usize {
        1 + 2 * self.max_connections
    }

    /// Slots per level in a node's `upper` list: the count, then `M` neighbours.
    pub(super) fn upper_stride(&self) -> usize {
        1 + self.max_connections
    }

    /// Neighbour capacity of `level`.
    pub(super) fn capacity(&self, level: usize) -> usize {
        if level == 0 {
            2 * self.max_connections
        } else {
            self.max_connections
        }
    }

    #[inline]
    pub(super) fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// The stored vector of the caller's id `label`, if the graph holds it.
    pub(super) fn vector_of_label(&self, label: usize) -> Option<&[f32]> {
        self.nodes_by_label
            .get(&label)
            .map(|node| self.vector(*node))
    }

    /// The count-prefixed slot block of `node` on `level` (which must be `<= levels[node]`).
    #[inline]
    pub(super) fn neighbour_block(&self, node: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let stride = self.level0_stride();
            let start = node as usize * stride;
            &self.level0[start..start + stride]
        } else {
            let stride = self.upper_stride();
            &self.upper[node as usize][(level - 1) * stride..level * stride]
        }
    }

    /// The neighbour slots of `node` on `level` (load each with `Relaxed`).
    #[inline]
    pub(super) fn neighbours(&self, node: u32, level: usize) -> &[AtomicU32] {
        let block = self.neighbour_block(node, level);
        let count = (block[0].load(Relaxed) as usize).min(block.len() - 1);
        &block[1..1 + count]
    }

    /// A copy of the neighbours of `node` on `level`.
    pub(super) fn neighbour_list(&self, node: u32, level: usize) -> Vec<u32> {
        self.neighbours(node, level)
            .iter()
            .map(|slot| slot.load(Relaxed))
            .collect()
    }

    /// Replaces the list of `node` on `level`; callers hold `node`'s lock (or `&mut self`).
    pub(super) fn set_neighbours(&self, node: u32, level: usize, list: &[u32]) {
        let block = self.neighbour_block(node, level);
        for (slot, id) in block[1..].iter().zip(list) {
            slot.store(*id, Relaxed);
        }
        block[0].store(list.len() as u32, Relaxed);
    }

    /// Stores `vector` under the caller's id `label` as a new node of top level `level`, with
    /// empty lists; [`Graph::link`] connects it. The caller checked the id is new and the length.
    pub(super) fn append(&mut self, label: usize, vector: &[f32], level: usize) -> u32 {
        let node = self.len() as u32;
        if self.dim == 0 {
            self.dim = vector.len();
        }
        self.vectors.extend_from_slice(vector);
        self.labels.push(label);
        self.nodes_by_label.insert(label, node);
        self.levels.push(level as u8);
        let level0_stride = self.level0_stride();
        self.level0
            .extend((0..level0_stride).map(|_| AtomicU32::new(0)));
        let upper_slots = level * self.upper_stride();
        self.upper
            .push((0..upper_slots).map(|_| AtomicU32::new(0)).collect());
        self.parents.push(AtomicU32::new(NO_PARENT));
        self.locks.push(Mutex::new(()));
        node
    }

    /// Installs decoded lists: `level0` (`len() * (1 + 2M)` slots) and per node its upper
    /// slots; the caller (the dump decoder) checked their sizes and then calls
    /// [`Graph::derive_parents`] once it has checked the ids too.
    pub(super) fn set_lists(&mut self, level0: Vec<u32>, upper: Vec<Vec<u32>>) {
        self.level0 = level0.into_iter().map(AtomicU32::new).collect();
        self.upper = upper
            .into_iter()
            .map(|slots| slots.into_iter().map(AtomicU32::new).collect())
            .collect();
        self.locks = (0..self.len()).map(|_| Mutex::new(())).collect();
    }

    /// Gives each node reached by a walk of level 0 from the entry point the node it was first
    /// reached from as its parent (a dump does not store parents; the walk's tree keeps the
    /// same promise). Every neighbour id must be a node `< len()`.
    pub(super) fn derive_parents(&mut self) {
        self.parents = self.walk_level0().into_iter().map(AtomicU32::new).collect();
    }

    /// Makes `node` (appended and linked, or the first node) the entry point: the first node of
    /// the graph, or one whose level is above every other's. The new entry links to the old one
    /// on level 0 and becomes its parent, so every parent chain ends at the new entry. Its list
    /// holds at most the `M` nodes it selected (nothing links between its link and this call),
    /// so there is room.
    pub(super) fn promote_entry(&mut self, node: u32) {
        let level = self.levels[node as usize] as usize;
        if let Some(old) = self.entry {
            let mut list = self.neighbour_list(node, 0);
            if !list.contains(&old) {
                list.push(old);
                self.set_neighbours(node, 0, &list);
            }
            self.parents[old as usize].store(node, Relaxed);
        }
        self.parents[node as usize].store(NO_PARENT, Relaxed);
        self.entry = Some(node);
        self.max_level = level;
    }

    /// True when `node` may become a parent: it is the entry point or has a parent itself.
    #[inline]
    fn can_parent(&self, node: u32) -> bool {
        self.entry == Some(node) || self.parents[node as usize].load(Relaxed) != NO_PARENT
    }

    #[inline]
    fn distance_to(&self, query: &[f32], node: u32) -> f32 {
        (self.distance)(query, self.vector(node))
    }

    /// Starts loading what visiting `node` reads: its visited stamp and its vector's first line.
    #[inline(always)]
    fn prefetch_node(&self, node: u32, scratch: &Scratch) {
        if let Some(stamp) = scratch.visited.get(node as usize) {
            prefetch(stamp);
        }
        prefetch(self.vector(node).as_ptr());
    }

    /// True when `node` has finished linking (it links top-down, so a non-empty level-0 list
    /// means every level is linked), or is the entry point.
    #[inline]
    fn is_linked(&self, node: u32) -> bool {
        self.entry == Some(node) || self.neighbour_block(node, 0)[0].load(Relaxed) > 0
    }

    /// Greedy walk on one upper level: moves to a closer neighbour until none is closer. Never
    /// moves to a node still linking (its lower lists may be empty: a dead end for the beam).
    fn greedy_closest(&self, query: &[f32], mut current: Scored, level: usize) -> Scored {
        let mut improved = true;
        while improved {
            improved = false;
            for slot in self.neighbours(current.node, level) {
                let neighbour = slot.load(Relaxed);
                let distance = self.distance_to(query, neighbour);
                if distance < current.distance && self.is_linked(neighbour) {
                    current = Scored {
                        distance,
                        node: neighbour,
                    };
                    improved = true;
                }
            }
        }
        current
    }

    /// Descends from the entry point to `level` greedily; `None` on an empty graph.
    fn descend(&self, query: &[f32], level: usize) -> Option<Scored> {
        let entry = self.entry?;
        let mut current = Scored {
            distance: self.distance_to(query, entry),
            node: entry,
        };
        for upper in (level + 1..=self.max_level).rev() {
            current = self.greedy_closest(query, current, upper);
        }
        Some(current)
    }

    /// Beam search of `level` from `start` keeping the `ef` best nodes `allow`ed (all when
    /// `None`) in `scratch`'s result heap. Disallowed nodes are walked through but never
    /// returned; with a filter the walk only stops once `ef` allowed nodes are held (hnswlib's
    /// rule), so a very selective filter explores much of the graph.
    ///
    /// `refused` (with a filter) names nodes the filter is already known to refuse. Such a
    /// node is neither scored nor queued: the walk looks through it at its own neighbours
    /// instead (ACORN-1's two-hop expansion). Per expanded node, the direct neighbours not
    /// refused come first; then refused ones bridge (each once per search, its whole list)
    /// while fewer than `width` nodes were considered. A node not known to be refused is
    /// walked as without `refused` (scored; queued when close enough; returned if allowed).
    #[allow(clippy::too_many_arguments)]
    fn search_level(
        &self,
        query: &[f32],
        start: Scored,
        level: usize,
        ef: usize,
        scratch: &mut Scratch,
        allow: Option<&dyn Fn(u32) -> bool>,
        refused: Option<Refused<'_>>,
    ) {
        scratch.begin(self.len());
        scratch.visit(start.node);
        let allowed = |node: u32| allow.is_none_or(|f| f(node));
        let mut bound = f32::INFINITY;
        if allowed(start.node) {
            scratch.results.push(start);
            bound = start.distance;
        }
        scratch.candidates.push(Reverse(start));
        let width = refused.map_or(0, |r| r.width);
        let refused = refused.map(|r| r.refused);
        // Refused direct neighbours of the node being expanded (looked through after the
        // direct ones).
        let mut bridges = std::mem::take(&mut scratch.bridges);
        while let Some(Reverse(current)) = scratch.candidates.pop() {
            if current.distance > bound && (scratch.results.len() >= ef || allow.is_none()) {
                break;
            }
            let neighbours = self.neighbours(current.node, level);
            if let Some(first) = neighbours.first() {
                self.prefetch_node(first.load(Relaxed), scratch);
            }
            bridges.clear();
            let mut scored = 0;
            for (position, slot) in neighbours.iter().enumerate() {
                let neighbour = slot.load(Relaxed);
                if let Some(next) = neighbours.get(position + 1) {
                    self.prefetch_node(next.load(Relaxed), scratch);
                }
                if refused.is_some_and(|r| r(neighbour)) {
                    // Marked visited only once it bridges: one left out by `width` here may
                    // bridge from another node.
                    if !scratch.is_visited(neighbour) {
                        bridges.push(neighbour);
                    }
                    continue;
                }
                scored += 1;
                if !scratch.visit(neighbour) {
                    continue;
                }
                self.consider(query, neighbour, level, ef, scratch, &mut bound, &allowed);
            }
            for &bridge in &bridges {
                if scored >= width {
                    break;
                }
                if !scratch.visit(bridge) {
                    continue;
                }
                for slot in self.neighbours(bridge, level) {
                    let neighbour = slot.load(Relaxed);
                    // A refused node is not marked visited here: it may bridge later.
                    if refused.is_some_and(|r| r(neighbour)) {
                        continue;
                    }
                    scored += 1;
                    if !scratch.visit(neighbour) {
                        continue;
                    }
                    self.consider(query, neighbour, level, ef, scratch, &mut bound, &allowed);
                }
            }
        }
        bridges.clear();
        scratch.bridges = bridges;
    }

    /// Scores one newly visited node of a beam search: queued when it may improve the
    /// results, kept in them when `allowed`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &self,
        query: &[f32],
        neighbour: u32,
        level: usize,
        ef: usize,
        scratch: &mut Scratch,
        bound: &mut f32,
        allowed: &dyn Fn(u32) -> bool,
    ) {
        let distance = self.distance_to(query, neighbour);
        if scratch.results.len() < ef || distance < *bound {
            let scored = Scored {
                distance,
                node: neighbour,
            };
            // It may be expanded soon: start loading its neighbour list.
            prefetch(self.neighbour_block(neighbour, level).as_ptr());
            scratch.candidates.push(Reverse(scored));
            if allowed(neighbour) {
                scratch.results.push(scored);
                if scratch.results.len() > ef {
                    scratch.results.pop();
                }
            }
            if let Some(worst) = scratch.results.peek() {
                *bound = worst.distance;
            }
        }
    }

    /// The `k` nearest allowed nodes to `query`, nearest first, exploring `ef` (>= k)
    /// candidates on level 0. Empty for an empty graph or a query of the wrong length.
    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        scratch: &mut Scratch,
        allow: Option<&dyn Fn(u32) -> bool>,
        refused: Option<Refused<'_>>,
    ) -> Vec<Scored> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let Some(start) = self.descend(query, 0) else {
            return Vec::new();
        };
        self.search_level(query, start, 0, ef.max(k), scratch, allow, refused);
        let mut found = scratch.take_sorted_results();
        found.truncate(k);
        found
    }

    /// Chooses at most `max` neighbours for a base point among `candidates` (each scored by its
    /// distance to the base), in three rules (docs/index.md, "Ties and duplicates"):
    /// 1. hnswlib's heuristic, nearest first: a candidate is kept unless a node already kept
    ///    occludes it (is strictly closer to it than the base is). A tie does not occlude, so a
    ///    copy of the base never occludes the base's other neighbours.
    /// 2. A candidate whose vector equals a kept node's is redundant: it is set aside, so a group
    ///    of identical vectors takes one slot of a list, not all of them.
    /// 3. Among equal distances the newest node comes first (hnswlib's order): the newest copy
    ///    of a group is the one its neighbours link to, and each copy links to the previous one.
    ///
    /// When the heuristic keeps fewer than `floor` (<= `max`) nodes, the list is filled up to
    /// that size with the nodes it set aside, occluded ones (nearest first) before redundant
    /// copies, so the list holds at least `min(floor, candidates)` distinct nodes.
    fn select_neighbours(&self, candidates: &[Scored], max: usize, floor: usize) -> Vec<u32> {
        if candidates.len() <= max {
            return candidates.iter().map(|c| c.node).collect();
        }
        let mut ordered = candidates.to_vec();
        ordered
            .sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(b.node.cmp(&a.node)));
        let mut kept: Vec<u32> = Vec::with_capacity(max);
        let mut occluded: Vec<u32> = Vec::new();
        let mut redundant: Vec<u32> = Vec::new();
        for candidate in &ordered {
            if kept.len() >= max {
                break;
            }
            let vector = self.vector(candidate.node);
            let mut verdict = Verdict::Kept;
            for &k in &kept {
                let other = self.vector(k);
                let between = (self.distance)(vector, other);
                if between < candidate.distance {
                    verdict = Verdict::Occluded;
                    break;
                }
                if between == candidate.distance && vector == other {
                    verdict = Verdict::Redundant;
                    break;
                }
            }
            match verdict {
                Verdict::Kept => kept.push(candidate.node),
                Verdict::Occluded => occluded.push(candidate.node),
                Verdict::Redundant => redundant.push(candidate.node),
            }
        }
        let missing = floor.saturating_sub(kept.len());
        kept.extend(occluded.into_iter().chain(redundant).take(missing));
        kept
    }

    /// Links `node` (appended, not the entry point) into the graph: on every level it shares
    /// with the graph, finds its neighbours (beam width `ef`), sets its list and adds it to
    /// theirs, pruning full ones (rules in `select_neighbours`). On level 0 the first neighbour
    /// that can take a child becomes its parent; when none can (each already holds `M`
    /// children, or has no parent yet because it is linking beside this node), the nearest
    /// node found by a search that can does. Returns false when not even that search found one (the
    /// node may then be unreachable; the caller checks).
    pub(super) fn link(&self, node: u32, ef: usize, scratch: &mut Scratch) -> bool {
        let Some(entry) = self.entry else {
            return true;
        };
        let vector = self.vector(node);
        let level = self.levels[node as usize] as usize;
        let mut start = Scored {
            distance: self.distance_to(vector, entry),
            node: entry,
        };
        for upper in (level + 1..=self.max_level).rev() {
            start = self.greedy_closest(vector, start, upper);
        }
        for layer in (0..=level.min(self.max_level)).rev() {
            self.search_level(vector, start, layer, ef, scratch, None, None);
            let mut candidates = scratch.take_sorted_results();
            candidates.retain(|c| c.node != node);
            // The next level starts from the nearest node already linked on every level
            // (a node still linking may have empty lists below).
            if let Some(linked) = candidates.iter().find(|c| self.is_linked(c.node)) {
                start = *linked;
            }
            let m = self.max_connections;
            let selected = self.select_neighbours(&candidates, m, m);
            {
                let _own = self.locks[node as usize].lock();
                self.set_neighbours(node, layer, &selected);
            }
            let mut parented = layer != 0;
            for &neighbour in &selected {
                parented |= self.add_link(neighbour, node, layer, !parented);
            }
            if !parented {
                return self.attach(node, ef, scratch);
            }
        }
        true
    }

    /// Adds `node` to the list of `neighbour` on `layer` under `neighbour`'s lock, pruning a
    /// full list (its children stay, the rest goes through `select_neighbours` with a floor of
    /// `M`). With `claim` (level 0 only), `neighbour` becomes `node`'s parent if it can parent
    /// and holds fewer than `M` children; `node` then stays in its list. Returns whether it did.
    fn add_link(&self, neighbour: u32, node: u32, layer: usize, claim: bool) -> bool {
        let _lock = self.locks[neighbour as usize].lock();
        let existing = self.neighbour_list(neighbour, layer);
        let is_child =
            |other: u32| layer == 0 && self.parents[other as usize].load(Relaxed) == neighbour;
        // Read only when needed: a claim counts them, a pruning keeps them.
        let children = || existing.iter().copied().filter(|&n| is_child(n));
        let adopts =
            claim && children().count() < self.max_connections && self.can_parent(neighbour);
        if adopts {
            self.parents[node as usize].store(neighbour, Relaxed);
        }
        if existing.contains(&node) {
            return adopts;
        }
        let capacity = self.capacity(layer);
        if existing.len() < capacity {
            let mut list = existing;
            list.push(node);
            self.set_neighbours(neighbour, layer, &list);
            return adopts;
        }
        let mut children: Vec<u32> = children().collect();
        if adopts {
            children.push(node);
        }
        let base = self.vector(neighbour);
        let pool: Vec<Scored> = existing
            .iter()
            .chain(std::iter::once(&node))
            .filter(|&&other| !children.contains(&other))
            .map(|&other| Scored {
                distance: (self.distance)(base, self.vector(other)),
                node: other,
            })
            .collect();
        let room = capacity - children.len();
        let floor = self
            .max_connections
            .saturating_sub(children.len())
            .min(room);
        let mut list = children;
        list.extend(self.select_neighbours(&pool, room, floor));
        self.set_neighbours(neighbour, layer, &list);
        adopts
    }

    /// Gives `node` (linked, without a parent) a parent: the nearest node of a level-0 search
    /// that can take it. Returns false when none of the `ef` nodes found can. The entry point
    /// (a node may have become it since its link) needs none.
    pub(super) fn attach(&self, node: u32, ef: usize, scratch: &mut Scratch) -> bool {
        if self.entry == Some(node) {
            return true;
        }
        let vector = self.vector(node);
        let Some(start) = self.descend(vector, 0) else {
            return false;
        };
        self.search_level(vector, start, 0, ef, scratch, None, None);
        scratch
            .take_sorted_results()
            .into_iter()
            .filter(|c| c.node != node)
            .any(|c| self.add_link(c.node, node, 0, true))
    }

    /// Checks the two structural promises of the engine (docs/index.md, "Ties and
    /// duplicates"): every node is reachable from the entry point on level 0, and every level-0
    /// list holds at least `min(M, n - 1)` distinct nodes other than its own. O(n M) time, one
    /// bit per node; the dump loader runs it. Describes the first broken promise.
    pub(super) fn check_structure(&self) -> Result<(), String> {
        let count = self.len();
        let unreachable = self.unreachable();
        if let Some(first) = unreachable.first() {
            return Err(format!(
                "{} of {count} nodes unreachable from the entry point on level 0 (first: node {first})",
                unreachable.len()
            ));
        }
        let floor = self.max_connections.min(count.saturating_sub(1));
        let mut distinct: Vec<u32> = Vec::with_capacity(self.capacity(0));
        for node in 0..count as u32 {
            distinct.clear();
            distinct.extend(
                self.neighbours(node, 0)
                    .iter()
                    .map(|slot| slot.load(Relaxed))
                    .filter(|n| *n != node),
            );
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() < floor {
                return Err(format!(
                    "node {node} has {} distinct level-0 neighbours, fewer than min(M, n - 1) = {floor}",
                    distinct.len()
                ));
            }
        }
        Ok(())
    }

    /// The nodes a walk of level 0 from the entry point does not reach, in node order.
    fn unreachable(&self) -> Vec<u32> {
        let walk = self.walk_level0();
        (0..self.len() as u32)
            .filter(|node| walk[*node as usize] == NO_PARENT && self.entry != Some(*node))
            .collect()
    }

    /// Checks the parent tree (tests only): every node but the entry point has a parent whose
    /// level-0 list holds it, and following parents from any node ends at the entry point.
    /// Describes the first broken promise.
    #[cfg(test)]
    pub(super) fn check_parents(&self) -> Result<(), String> {
        let parent = |node: u32| self.parents[node as usize].load(Relaxed);
        for node in 0..self.len() as u32 {
            if self.entry == Some(node) {
                continue;
            }
            let up = parent(node);
            if up == NO_PARENT {
                return Err(format!("node {node} has no parent"));
            }
            if !self.neighbour_list(up, 0).contains(&node) {
                return Err(format!("node {node}'s parent {up} does not list it"));
            }
            let mut at = node;
            for _ in 0..self.len() {
                if self.entry == Some(at) {
                    break;
                }
                at = parent(at);
                if at == NO_PARENT {
                    return Err(format!(
                        "node {node}'s parent chain ends before the entry point"
                    ));
                }
            }
            if self.entry != Some(at) {
                return Err(format!("node {node}'s parent chain has a cycle"));
            }
        }
        Ok(())
    }

    /// Walks level 0 from the entry point: per node, the node it was first reached from
    /// (`NO_PARENT` for the entry point and for every node the walk does not reach).
    fn walk_level0(&self) -> Vec<u32> {
        let mut reached_from = vec![NO_PARENT; self.len()];
        let Some(entry) = self.entry else {
            return reached_from;
        };
        let mut frontier = vec![entry];
        while let Some(node) = frontier.pop() {
            for slot in self.neighbours(node, 0) {
                let next = slot.load(Relaxed);
                if next != entry && reached_from[next as usize] == NO_PARENT {
                    reached_from[next as usize] = node;
                    frontier.push(next);
                }
            }
        }
        reached_from
    }
}

/// Hints the CPU to start loading the cache line at `pointer` (read a few hundred nanoseconds
/// later: a neighbour's vector, visited stamp or neighbour list). A no-op off x86_64.
#[inline(always)]
fn prefetch<T>(pointer: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is a hint that never faults, whatever the address; SSE is part
        // of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(pointer.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}
