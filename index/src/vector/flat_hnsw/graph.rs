//! The flat HNSW graph (Malkov & Yashunin) in hnswlib's memory layout, and its search and
//! insertion-planning algorithms.
//!
//! Owns: the vectors (one contiguous `Vec<f32>`, row = node), the callers' ids of the nodes and
//! the map from a caller's id back to its node, each node's top level, level-0 neighbour lists in one flat `Vec<u32>` with a fixed stride
//! (`1 + 2M` slots: count, then up to `2M` neighbours) and the upper-level lists per node
//! (`level * (1 + M)` slots each, empty for the ~94% of nodes that live on level 0 only).
//!
//! Invariants: every neighbour id is a node `< len()`; a list never holds more than its level's
//! capacity (`2M` on level 0, `M` above); `entry` is `None` iff the graph is empty, otherwise a
//! node whose level is `max_level`. Insertion is split into a read-only plan (the expensive
//! searches, done while queries run) and a short apply step, so a plan must be applied to the
//! graph it was made on, unchanged. Never panics on a query of the wrong length (it finds
//! nothing) and never allocates per visited node.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::kernel::DistanceFn;

/// Highest level a node may get (the draw exceeds ~13 with probability below 1e-16 at M = 16).
pub(super) const MAX_LEVEL: usize = 32;

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

/// What inserting one node changes: computed read-only by [`Graph::plan_insert`], applied by
/// [`Graph::apply_insert`].
#[derive(Debug)]
pub(super) struct InsertPlan {
    level: usize,
    /// The new node's neighbours on levels `0..links.len()`.
    links: Vec<Vec<u32>>,
    /// New neighbour lists of existing nodes: `(node, level, list)`.
    updates: Vec<(u32, usize, Vec<u32>)>,
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
    /// `labels` inverted: the node of each caller's id (ids are unique per graph).
    pub(super) nodes_by_label: HashMap<usize, u32>,
    pub(super) levels: Vec<u8>,
    pub(super) level0: Vec<u32>,
    pub(super) upper: Vec<Vec<u32>>,
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
            nodes_by_label: HashMap::with_capacity(capacity),
            levels: Vec::with_capacity(capacity),
            level0: Vec::new(),
            upper: Vec::with_capacity(capacity),
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
    pub(super) fn neighbour_block(&self, node: u32, level: usize) -> &[u32] {
        if level == 0 {
            let stride = self.level0_stride();
            let start = node as usize * stride;
            &self.level0[start..start + stride]
        } else {
            let stride = self.upper_stride();
            &self.upper[node as usize][(level - 1) * stride..level * stride]
        }
    }

    fn block_mut(&mut self, node: u32, level: usize) -> &mut [u32] {
        if level == 0 {
            let stride = self.level0_stride();
            let start = node as usize * stride;
            &mut self.level0[start..start + stride]
        } else {
            let stride = self.upper_stride();
            &mut self.upper[node as usize][(level - 1) * stride..level * stride]
        }
    }

    /// The neighbours of `node` on `level`.
    #[inline]
    pub(super) fn neighbours(&self, node: u32, level: usize) -> &[u32] {
        let block = self.neighbour_block(node, level);
        &block[1..1 + block[0] as usize]
    }

    fn set_neighbours(&mut self, node: u32, level: usize, list: &[u32]) {
        let block = self.block_mut(node, level);
        block[0] = list.len() as u32;
        block[1..1 + list.len()].copy_from_slice(list);
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

    /// Greedy walk on one upper level: moves to a closer neighbour until none is closer.
    fn greedy_closest(&self, query: &[f32], mut current: Scored, level: usize) -> Scored {
        let mut improved = true;
        while improved {
            improved = false;
            for &neighbour in self.neighbours(current.node, level) {
                let distance = self.distance_to(query, neighbour);
                if distance < current.distance {
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
    fn search_level(
        &self,
        query: &[f32],
        start: Scored,
        level: usize,
        ef: usize,
        scratch: &mut Scratch,
        allow: Option<&dyn Fn(u32) -> bool>,
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
        while let Some(Reverse(current)) = scratch.candidates.pop() {
            if current.distance > bound && (scratch.results.len() >= ef || allow.is_none()) {
                break;
            }
            let neighbours = self.neighbours(current.node, level);
            if let Some(&first) = neighbours.first() {
                self.prefetch_node(first, scratch);
            }
            for (position, &neighbour) in neighbours.iter().enumerate() {
                if let Some(&next) = neighbours.get(position + 1) {
                    self.prefetch_node(next, scratch);
                }
                if !scratch.visit(neighbour) {
                    continue;
                }
                let distance = self.distance_to(query, neighbour);
                if scratch.results.len() < ef || distance < bound {
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
                        bound = worst.distance;
                    }
                }
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
    ) -> Vec<Scored> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let Some(start) = self.descend(query, 0) else {
            return Vec::new();
        };
        self.search_level(query, start, 0, ef.max(k), scratch, allow);
        let mut found = scratch.take_sorted_results();
        found.truncate(k);
        found
    }

    /// hnswlib's neighbour-selection heuristic: walking `candidates` nearest first (sorted
    /// ascending), keeps a candidate only if it is closer to the base point than to every one
    /// already kept, up to `max` nodes. `vector_of` resolves a node's vector (the node being
    /// inserted is not stored yet).
    fn select_neighbours<'a>(
        &'a self,
        candidates: &[Scored],
        max: usize,
        vector_of: &dyn Fn(u32) -> &'a [f32],
    ) -> Vec<u32> {
        if candidates.len() <= max {
            return candidates.iter().map(|c| c.node).collect();
        }
        let mut kept: Vec<Scored> = Vec::with_capacity(max);
        for candidate in candidates {
            if kept.len() >= max {
                break;
            }
            let vector = vector_of(candidate.node);
            let diverse = kept
                .iter()
                .all(|k| (self.distance)(vector, vector_of(k.node)) >= candidate.distance);
            if diverse {
                kept.push(*candidate);
            }
        }
        kept.into_iter().map(|k| k.node).collect()
    }

    /// Plans the insertion of `vector` as node `len()` with top level `level`: finds its
    /// neighbours on every level it shares with the graph (beam width `ef_construction`) and
    /// the pruned lists of the neighbours that link back. Reads the graph only.
    pub(super) fn plan_insert(
        &self,
        vector: &[f32],
        level: usize,
        ef_construction: usize,
        scratch: &mut Scratch,
    ) -> InsertPlan {
        let new_node = self.len() as u32;
        let mut plan = InsertPlan {
            level,
            links: Vec::new(),
            updates: Vec::new(),
        };
        let Some(mut start) = self.descend(vector, level) else {
            return plan;
        };
        let vector_of = |node: u32| {
            if node == new_node {
                vector
            } else {
                self.vector(node)
            }
        };
        let top = level.min(self.max_level);
        plan.links = vec![Vec::new(); top + 1];
        for layer in (0..=top).rev() {
            self.search_level(vector, start, layer, ef_construction, scratch, None);
            let candidates = scratch.take_sorted_results();
            let selected = self.select_neighbours(&candidates, self.max_connections, &vector_of);
            start = candidates[0];
            let capacity = self.capacity(layer);
            for &neighbour in &selected {
                let existing = self.neighbours(neighbour, layer);
                let updated = if existing.len() < capacity {
                    let mut list = existing.to_vec();
                    list.push(new_node);
                    list
                } else {
                    let base = self.vector(neighbour);
                    let mut pool: Vec<Scored> = existing
                        .iter()
                        .chain(std::iter::once(&new_node))
                        .map(|&node| Scored {
                            distance: (self.distance)(base, vector_of(node)),
                            node,
                        })
                        .collect();
                    pool.sort_unstable();
                    self.select_neighbours(&pool, capacity, &vector_of)
                };
                plan.updates.push((neighbour, layer, updated));
            }
            plan.links[layer] = selected;
        }
        plan
    }

    /// Appends `vector` under the caller's id `label` and applies `plan` (made by
    /// [`Graph::plan_insert`] on this graph, unchanged since).
    pub(super) fn apply_insert(&mut self, label: usize, vector: &[f32], plan: InsertPlan) {
        let node = self.len() as u32;
        if self.dim == 0 {
            self.dim = vector.len();
        }
        self.vectors.extend_from_slice(vector);
        self.labels.push(label);
        self.nodes_by_label.insert(label, node);
        self.levels.push(plan.level as u8);
        let level0_stride = self.level0_stride();
        self.level0.resize(self.level0.len() + level0_stride, 0);
        self.upper.push(vec![0; plan.level * self.upper_stride()]);
        for (layer, list) in plan.links.iter().enumerate() {
            self.set_neighbours(node, layer, list);
        }
        for (neighbour, layer, list) in &plan.updates {
            self.set_neighbours(*neighbour, *layer, list);
        }
        if self.entry.is_none() || plan.level > self.max_level {
            self.entry = Some(node);
            self.max_level = plan.level;
        }
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
