//! `FlatHnsw`: our own HNSW engine (Malkov & Yashunin) with hnswlib's flat memory layout,
//! implementing [`AnnEngine`]; the default engine of the vector index.
//!
//! Owns: one graph per engine (`graph.rs`: contiguous vectors, the id -> node map, fixed-stride
//! level-0 lists, generation-stamped visited sets, hnswlib's neighbour heuristic), its distance
//! kernels (`kernel.rs`, AVX2+FMA when the CPU has them) and its dump file `flat_hnsw.bin`
//! (`persist.rs`, versioned and CRC-checked).
//!
//! Concurrency: the graph sits behind a read-write lock. Searches share it. An insert (or a
//! batch) appends its nodes under the write lock (copies only), then links them holding the
//! upgradable read lock, so searches continue: a batch links its nodes on all cores (rayon's
//! pool) with per-node locks, as hnswlib's `add_items` does; nodes of a graph below
//! [`SERIAL_LINK_BELOW`] nodes and new entry points link one at a time. One batch links at a
//! time. A node is visible to searches once a neighbour links to it.
//!
//! Never: panic on input (a vector of the wrong length or an id already held is logged and
//! skipped, a query of the wrong length finds nothing, a damaged dump is an error), allocate
//! per visited node.

mod graph;
mod kernel;

pub(crate) use kernel::{DistanceFn, distance_fn};
mod persist;

use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::vector::engine::{AnnEngine, AnnEngineFactory, EngineParams};
use crate::vector::metric::Metric;
use graph::{Graph, MAX_LEVEL, Refused, Scored, Scratch};

/// Graphs below this many nodes link new nodes one at a time (see `insert_batch`).
const SERIAL_LINK_BELOW: usize = 1_024;

/// The dump file written into the engine's directory.
const DUMP_FILE: &str = "flat_hnsw.bin";
/// Seed of the level draws (fixed: builds are reproducible for a given insertion order).
const LEVEL_SEED: u64 = 0x5EED_0FF1_A74E_5700;
/// Nodes reserved up front at most, whatever the capacity hint: the default hint (10,000) would
/// otherwise pin ~1.6 MB of link lists per empty tenant; growth past it is amortised doubling.
const RESERVE_LIMIT: usize = 1_024;
/// Scratch spaces kept for reuse (one per concurrent search; more are freed after use).
const SCRATCH_POOL_LIMIT: usize = 32;

/// Factory of [`FlatHnswEngine`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlatHnswFactory;

impl AnnEngineFactory for FlatHnswFactory {
    fn create(&self, metric: Metric, params: EngineParams) -> Result<Box<dyn AnnEngine>> {
        params.validate()?;
        let graph = Graph::new(
            kernel::distance_fn(metric),
            params.max_connections,
            params.capacity_hint.min(RESERVE_LIMIT),
        );
        Ok(Box::new(FlatHnswEngine::from_graph(metric, params, graph)))
    }

    fn load(&self, dir: &Path, metric: Metric) -> Result<Box<dyn AnnEngine>> {
        let path = dir.join(DUMP_FILE);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let decoded = persist::decode(&bytes, &path, metric, kernel::distance_fn(metric))?;
        let engine = FlatHnswEngine::from_graph(metric, decoded.params, decoded.graph);
        let problem = engine.graph.read().check_structure();
        match problem {
            Ok(()) => Ok(Box::new(engine)),
            Err(problem) => {
                // A dump written before the tie rules of `select_neighbours` (or damaged in a
                // way its CRC cannot see) still holds every vector: link them again.
                tracing::warn!(
                    path = %path.display(),
                    problem,
                    "flat HNSW dump fails its structure check; relinking its vectors"
                );
                Ok(Box::new(engine.relink()))
            }
        }
    }
}

/// A flat HNSW graph for one metric; see the module documentation.
pub struct FlatHnswEngine {
    metric: Metric,
    params: EngineParams,
    graph: RwLock<Graph>,
    /// Counter of the SplitMix64 stream the node levels are drawn from.
    level_draws: AtomicU64,
    /// `1 / ln(M)`: the level distribution's scale.
    level_scale: f64,
    scratch_pool: Mutex<Vec<Scratch>>,
}

impl FlatHnswEngine {
    fn from_graph(metric: Metric, params: EngineParams, graph: Graph) -> Self {
        // A reloaded engine continues a distinct stream rather than replaying the first draws.
        let draws = LEVEL_SEED ^ (graph.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            metric,
            params,
            level_scale: 1.0 / (params.max_connections as f64).ln(),
            graph: RwLock::new(graph),
            level_draws: AtomicU64::new(draws),
            scratch_pool: Mutex::new(Vec::new()),
        }
    }

    /// Appends every valid new item to the graph (under the write lock: copies and allocations
    /// only) and returns their nodes; the first node of an empty graph becomes its entry point.
    /// An item of the wrong length or an id already held is logged and skipped.
    fn append_all(&self, items: &[(usize, &[f32])]) -> Vec<u32> {
        let mut graph = self.graph.write();
        let mut appended = Vec::with_capacity(items.len());
        for &(id, vector) in items {
            let refusal = if vector.is_empty() || (graph.dim != 0 && vector.len() != graph.dim) {
                Some("vector length differs from the graph's dimension")
            } else if graph.len() >= u32::MAX as usize - 1 {
                Some("graph is full (u32 node ids)")
            } else if graph.nodes_by_label.contains_key(&id) {
                Some("id already in the graph")
            } else {
                None
            };
            if let Some(reason) = refusal {
                tracing::error!(
                    id,
                    len = vector.len(),
                    dim = graph.dim,
                    reason,
                    "flat HNSW insert skipped"
                );
                continue;
            }
            let node = graph.append(id, vector, self.draw_level());
            if graph.entry.is_none() {
                graph.promote_entry(node);
            }
            appended.push(node);
        }
        appended
    }

    /// Gives the nodes whose link found no parent (see `Graph::link`) one now that the batch
    /// has linked; a node that still finds none is logged (it may be unreachable, and the next
    /// load of a dump relinks the graph).
    fn attach_orphans(&self, graph: &Graph, orphans: &[u32], ef: usize) {
        for &node in orphans {
            if !self.with_scratch(|scratch| graph.attach(node, ef, scratch)) {
                tracing::warn!(
                    node,
                    "flat HNSW: no node near a new node can take it as a child"
                );
            }
        }
    }

    /// A new engine holding the same ids and vectors, linked again from scratch in node order.
    fn relink(&self) -> Self {
        let graph = self.graph.read();
        let empty = Graph::new(graph.distance, self.params.max_connections, graph.len());
        let fresh = Self::from_graph(self.metric, self.params, empty);
        let items: Vec<(usize, &[f32])> = (0..graph.len() as u32)
            .map(|node| (graph.labels[node as usize], graph.vector(node)))
            .collect();
        fresh.insert_batch(&items);
        fresh
    }

    /// Draws a node level: `floor(-ln(U) / ln(M))` for U uniform in (0, 1], capped.
    fn draw_level(&self) -> usize {
        let counter = self
            .level_draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = counter;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
        ((-uniform.ln() * self.level_scale) as usize).min(MAX_LEVEL)
    }

    /// Links `nodes` on every thread of the current rayon pool, as hnswlib's `add_items` does:
    /// each worker takes the next node in order from a shared counter, so the graph grows in
    /// insertion order (a node links into a graph holding about every node before it) and a
    /// slow node never leaves a thread idle. One scratch space per worker. Returns the nodes
    /// whose link found no parent.
    fn link_in_order(&self, graph: &Graph, nodes: &[u32], ef: usize) -> Vec<u32> {
        if nodes.is_empty() {
            return Vec::new();
        }
        let next = AtomicUsize::new(0);
        let orphans = Mutex::new(Vec::new());
        let work = || {
            self.with_scratch(|scratch| {
                while let Some(&node) = nodes.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if !graph.link(node, ef, scratch) {
                        orphans.lock().push(node);
                    }
                }
            })
        };
        let workers = rayon::current_num_threads().min(nodes.len());
        if workers == 1 {
            // No hand-off to the pool for one worker: it would cost a thread wake-up per
            // single insert.
            work();
        } else {
            rayon::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|_| work());
                }
            });
        }
        orphans.into_inner()
    }

    /// Runs `work` with a scratch space from the pool (or a new one), then returns it.
    fn with_scratch<T>(&self, work: impl FnOnce(&mut Scratch) -> T) -> T {
        let mut scratch = self.scratch_pool.lock().pop().unwrap_or_default();
        let out = work(&mut scratch);
        let mut pool = self.scratch_pool.lock();
        if pool.len() < SCRATCH_POOL_LIMIT {
            pool.push(scratch);
        }
        out
    }

    fn search_with(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: Option<&(dyn Fn(usize) -> bool + Sync)>,
        refused: Option<(&(dyn Fn(usize) -> bool + Sync), usize)>,
    ) -> Vec<(usize, f32)> {
        let graph = self.graph.read();
        let allow_node = allow.map(|allow| {
            let graph = &*graph;
            move |node: u32| allow(graph.labels[node as usize])
        });
        let allow_node: Option<&dyn Fn(u32) -> bool> = allow_node.as_ref().map(|f| f as _);
        let refused_node = refused.map(|(refused, _)| {
            let graph = &*graph;
            move |node: u32| refused(graph.labels[node as usize])
        });
        let refused_node = refused_node
            .as_ref()
            .zip(refused)
            .map(|(f, (_, width))| Refused {
                refused: f as &dyn Fn(u32) -> bool,
                width,
            });
        let found: Vec<Scored> = self
            .with_scratch(|scratch| graph.search(query, k, ef, scratch, allow_node, refused_node));
        found
            .into_iter()
            .map(|s| (graph.labels[s.node as usize], s.distance))
            .collect()
    }
}

impl fmt::Debug for FlatHnswEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let graph = self.graph.read();
        f.debug_struct("FlatHnswEngine")
            .field("metric", &self.metric)
            .field("params", &self.params)
            .field("points", &graph.len())
            .field("dim", &graph.dim)
            .field("max_level", &graph.max_level)
            .finish()
    }
}

impl AnnEngine for FlatHnswEngine {
    fn insert(&self, id: usize, vector: &[f32]) {
        self.insert_batch(&[(id, vector)]);
    }

    fn insert_batch(&self, items: &[(usize, &[f32])]) {
        let appended = self.append_all(items);
        if appended.is_empty() {
            return;
        }
        // A beam narrower than M could not fill a list to M.
        let ef = self.params.ef_construction.max(self.params.max_connections);
        let mut graph = self.graph.upgradable_read();
        // Nodes link in batch order. Those of a small graph link one at a time (a node linking
        // beside others cannot see them, and in a small graph that would leave lists short of
        // M), and so does each node above the top level, which then becomes the entry point
        // (under the write lock); the runs between them link on all cores.
        let mut orphans = Vec::new();
        let mut run = 0;
        for (position, &node) in appended.iter().enumerate() {
            let promotes = graph.levels[node as usize] as usize > graph.max_level;
            if (node as usize) >= SERIAL_LINK_BELOW && !promotes {
                continue;
            }
            orphans.extend(self.link_in_order(&graph, &appended[run..position], ef));
            run = position + 1;
            if graph.entry != Some(node)
                && !self.with_scratch(|scratch| graph.link(node, ef, scratch))
            {
                orphans.push(node);
            }
            if promotes {
                let mut writer = RwLockUpgradableReadGuard::upgrade(graph);
                writer.promote_entry(node);
                graph = RwLockWriteGuard::downgrade_to_upgradable(writer);
            }
        }
        orphans.extend(self.link_in_order(&graph, &appended[run..], ef));
        self.attach_orphans(&graph, &orphans, ef);
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        self.search_with(query, k, ef, None, None)
    }

    fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<(usize, f32)> {
        self.search_with(query, k, ef, Some(allow), None)
    }

    fn search_filtered_refusing(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
        refused: &(dyn Fn(usize) -> bool + Sync),
        width: usize,
    ) -> Vec<(usize, f32)> {
        self.search_with(query, k, ef, Some(allow), Some((refused, width)))
    }

    fn visit_vectors(&self, ids: &[usize], visit: &mut dyn FnMut(usize, &[f32])) {
        let graph = self.graph.read();
        for (position, id) in ids.iter().enumerate() {
            if let Some(vector) = graph.vector_of_label(*id) {
                visit(position, vector);
            }
        }
    }

    fn len(&self) -> usize {
        self.graph.read().len()
    }

    fn dump(&self, dir: &Path) -> Result<()> {
        let bytes = persist::encode(&self.graph.read(), self.metric, self.params);
        let path = dir.join(DUMP_FILE);
        let tmp = dir.join(format!("{DUMP_FILE}.tmp"));
        fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests;
