//! The seam between the vector index and an approximate-nearest-neighbour engine.
//!
//! Owns: the small interface every ANN engine implements ([`AnnEngine`]) and how engines are
//! created and reloaded ([`AnnEngineFactory`]). Internal ids are opaque `usize`s chosen by the
//! caller; distances are the engine's (smaller = closer), never shown to clients.
//!
//! Invariants: an engine never deletes or updates a point (callers hide stale ids), and it is
//! the only holder of an indexed point's vector (read back with [`AnnEngine::visit_vectors`]);
//! every method takes `&self` and is safe to call from several threads at once (inserts may run
//! while searches run). An engine must never panic or exit the process on validated input: factories
//! validate their parameters before building anything.

use std::fmt::Debug;
use std::path::Path;

use crate::error::{Error, Result};
use crate::vector::metric::Metric;

/// Largest `M` (links per node) accepted; `hnsw_rs` exits the process above 256.
pub const MAX_CONNECTIONS_LIMIT: usize = 256;

/// Build parameters of an ANN graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineParams {
    /// `M`: links kept per node and layer, in `2..=256`.
    pub max_connections: usize,
    /// Candidate list size while inserting, in `1..=4096`.
    pub ef_construction: usize,
    /// Expected number of points (allocation hint only).
    pub capacity_hint: usize,
}

impl Default for EngineParams {
    fn default() -> Self {
        Self {
            max_connections: 16,
            ef_construction: 200,
            capacity_hint: 10_000,
        }
    }
}

impl EngineParams {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(Error::invalid(format!(
                "M (max_connections) must be in 2..={MAX_CONNECTIONS_LIMIT}, got {}",
                self.max_connections
            )));
        }
        if !(1..=4096).contains(&self.ef_construction) {
            return Err(Error::invalid(format!(
                "ef_construction must be in 1..=4096, got {}",
                self.ef_construction
            )));
        }
        Ok(())
    }
}

/// One ANN graph: insert points under caller-chosen ids, search, persist.
pub trait AnnEngine: Send + Sync + Debug {
    /// Inserts one point. The slice length must equal the index dimension (the caller checks).
    fn insert(&self, id: usize, vector: &[f32]);
    /// Inserts many points (bulk builds and rebuilds); an engine may use several cores.
    fn insert_batch(&self, items: &[(usize, &[f32])]);
    /// The `k` nearest points to `query` as `(id, distance)`, nearest first, exploring `ef`
    /// candidates (at least `k`).
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)>;
    /// Like [`AnnEngine::search`], keeping only ids for which `allow` is true (the predicate is
    /// applied inside the graph walk).
    fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<(usize, f32)>;
    /// Like [`AnnEngine::search_filtered`]; `refused` names ids `allow` is already known to
    /// refuse (a cheap test), which an engine may look through rather than score: two-hop
    /// expansion (ACORN-1), considering about `width` nodes per expanded node. The default
    /// ignores both.
    fn search_filtered_refusing(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
        refused: &(dyn Fn(usize) -> bool + Sync),
        width: usize,
    ) -> Vec<(usize, f32)> {
        let _ = (refused, width);
        self.search_filtered(query, k, ef, allow)
    }
    /// Calls `visit(position, vector)` for each `ids[position]` the engine holds, in the order
    /// of `ids`, with the stored (prepared) vector, while holding the engine's read lock (no
    /// copy; inserts wait until it returns). Ids the engine does not hold are skipped. The
    /// vector index keeps no copy of an indexed vector: this is how it reads one back (exact
    /// scans, similarities, rebuilds).
    fn visit_vectors(&self, ids: &[usize], visit: &mut dyn FnMut(usize, &[f32]));
    /// Number of points inserted (live or not).
    fn len(&self) -> usize;
    /// True when nothing was inserted.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes the engine's files into `dir` (which exists); overwrites a previous dump there.
    fn dump(&self, dir: &Path) -> Result<()>;
}

/// Creates and reloads engines of one implementation; the vector index only knows this trait,
/// so the engine can be replaced without touching the rest of the index.
pub trait AnnEngineFactory: Send + Sync + Debug {
    /// A new, empty engine for `metric` (vectors arrive prepared, see [`Metric::prepare`]).
    fn create(&self, metric: Metric, params: EngineParams) -> Result<Box<dyn AnnEngine>>;
    /// Reloads an engine written by [`AnnEngine::dump`] into `dir`; damaged files are an error.
    fn load(&self, dir: &Path, metric: Metric) -> Result<Box<dyn AnnEngine>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validation_names_the_bad_option() {
        assert!(EngineParams::default().validate().is_ok());
        for m in [0usize, 1, 257, 10_000] {
            let params = EngineParams {
                max_connections: m,
                ..EngineParams::default()
            };
            let message = params.validate().unwrap_err().to_string();
            assert!(message.contains("M (max_connections)"), "{message}");
        }
        let params = EngineParams {
            ef_construction: 0,
            ..EngineParams::default()
        };
        assert!(
            params
                .validate()
                .unwrap_err()
                .to_string()
                .contains("ef_construction")
        );
        let params = EngineParams {
            max_connections: 256,
            ..EngineParams::default()
        };
        assert!(params.validate().is_ok());
    }
}
