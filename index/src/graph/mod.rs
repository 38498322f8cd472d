//! Per-tenant graph index: adjacency in both directions and bounded breadth-first expansion
//! (DESIGN.md §4).
//!
//! Owns: the in-memory edge set of one tenant, indexed by source (out) and by target (in); each
//! node's edges by `(relation, peer)` and, per relation, heaviest first (`edges.rs`).
//! Invariants: every edge `(from, relation, to)` appears exactly once in `out[from]` and once in
//! `in[to]`, with the same weight; weights are finite. Expansion is deterministic: the same graph
//! and options always give the same nodes, depths and paths.
//! Never: follow an edge of a deleted entity, exceed a traversal limit, panic on caller input.

mod edges;
mod traverse;

pub use traverse::{Direction, NodeSteps, PathStep, Reached, TraversalOptions, Truncation, Walk};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use edges::NodeEdges;

/// One edge as written by a client: `from -[relation]-> to` with a weight.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeSpec {
    /// Relation name.
    pub relation: String,
    /// Target entity (for out-edges) or source entity (for in-edges).
    pub to: String,
    /// Weight, finite.
    pub weight: f32,
}

#[derive(Debug, Default)]
struct Adjacency {
    out: HashMap<Arc<str>, NodeEdges>,
    incoming: HashMap<Arc<str>, NodeEdges>,
    applied_seq: u64,
}

/// One tenant's graph. All methods take `&self`; writers take a short exclusive lock.
#[derive(Debug, Default)]
pub struct GraphIndex {
    adjacency: RwLock<Adjacency>,
}

fn validate(from: &str, edges: &[EdgeSpec]) -> Result<()> {
    if from.is_empty() {
        return Err(Error::invalid("edge source entity id is empty"));
    }
    for edge in edges {
        if edge.to.is_empty() {
            return Err(Error::invalid(format!(
                "edge from {from:?} -[{}]-> has an empty target",
                edge.relation
            )));
        }
        if !edge.weight.is_finite() {
            return Err(Error::invalid(format!(
                "edge {from:?} -[{}]-> {:?} has a non-finite weight {}",
                edge.relation, edge.to, edge.weight
            )));
        }
    }
    Ok(())
}

impl Adjacency {
    fn insert(&mut self, from: &str, edge: &EdgeSpec) {
        let from: Arc<str> = Arc::from(from);
        let relation: Arc<str> = Arc::from(edge.relation.as_str());
        let to: Arc<str> = Arc::from(edge.to.as_str());
        self.out
            .entry(from.clone())
            .or_default()
            .insert(relation.clone(), to.clone(), edge.weight);
        self.incoming
            .entry(to)
            .or_default()
            .insert(relation, from, edge.weight);
    }

    fn remove(&mut self, from: &str, relation: &str, to: &str) -> bool {
        let key = (Arc::<str>::from(relation), Arc::<str>::from(to));
        let removed = remove_from(&mut self.out, from, &key);
        let mirror = (key.0, Arc::<str>::from(from));
        remove_from(&mut self.incoming, to, &mirror);
        removed
    }

    fn remove_all_out(&mut self, from: &str) {
        if let Some(edges) = self.out.remove(from) {
            for ((relation, to), _) in edges.iter() {
                remove_from(&mut self.incoming, to, &(relation.clone(), Arc::from(from)));
            }
        }
    }

    fn remove_all_in(&mut self, to: &str) {
        if let Some(edges) = self.incoming.remove(to) {
            for ((relation, from), _) in edges.iter() {
                remove_from(&mut self.out, from, &(relation.clone(), Arc::from(to)));
            }
        }
    }
}

/// Removes `key` from `map[node]`, dropping the node's map when it empties.
fn remove_from(
    map: &mut HashMap<Arc<str>, NodeEdges>,
    node: &str,
    key: &(Arc<str>, Arc<str>),
) -> bool {
    let Some(edges) = map.get_mut(node) else {
        return false;
    };
    let removed = edges.remove(key);
    if edges.is_empty() {
        map.remove(node);
    }
    removed
}

impl GraphIndex {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// "Entity `from` now has exactly these out-edges" (a `PutEntity`), at engine write `seq`.
    pub fn replace_out_edges(&self, from: &str, edges: &[EdgeSpec], seq: u64) -> Result<()> {
        validate(from, edges)?;
        let mut adjacency = self.adjacency.write();
        adjacency.remove_all_out(from);
        for edge in edges {
            adjacency.insert(from, edge);
        }
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
        Ok(())
    }

    /// Adds (or re-weights) out-edges of `from`.
    pub fn add_edges(&self, from: &str, edges: &[EdgeSpec], seq: u64) -> Result<()> {
        validate(from, edges)?;
        let mut adjacency = self.adjacency.write();
        for edge in edges {
            adjacency.insert(from, edge);
        }
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
        Ok(())
    }

    /// Removes the edges `from -[relation]-> to`; returns how many existed.
    pub fn remove_edges(&self, from: &str, edges: &[(&str, &str)], seq: u64) -> usize {
        let mut adjacency = self.adjacency.write();
        let removed = edges
            .iter()
            .filter(|(relation, to)| adjacency.remove(from, relation, to))
            .count();
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
        removed
    }

    /// "Entity deleted": every edge touching it, in either direction, stops being followed.
    pub fn delete_entity(&self, entity: &str, seq: u64) {
        let mut adjacency = self.adjacency.write();
        adjacency.remove_all_out(entity);
        adjacency.remove_all_in(entity);
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
    }

    /// Out-edges of `entity` as `(relation, to, weight)`, ordered by relation then target.
    pub fn out_edges(&self, entity: &str) -> Vec<(String, String, f32)> {
        edges_of(&self.adjacency.read().out, entity)
    }

    /// In-edges of `entity` as `(relation, from, weight)`, ordered by relation then source.
    pub fn in_edges(&self, entity: &str) -> Vec<(String, String, f32)> {
        edges_of(&self.adjacency.read().incoming, entity)
    }

    /// Total number of edges.
    pub fn edge_count(&self) -> usize {
        self.adjacency.read().out.values().map(NodeEdges::len).sum()
    }

    /// Every entity's out-edges, sorted by entity, then relation and target (what a dump
    /// persists).
    pub fn export(&self) -> Vec<(String, Vec<EdgeSpec>)> {
        let adjacency = self.adjacency.read();
        let mut all: Vec<(String, Vec<EdgeSpec>)> = adjacency
            .out
            .iter()
            .map(|(from, edges)| {
                let mut specs: Vec<EdgeSpec> = edges
                    .iter()
                    .map(|((relation, to), weight)| EdgeSpec {
                        relation: relation.to_string(),
                        to: to.to_string(),
                        weight: *weight,
                    })
                    .collect();
                specs.sort_by(|a, b| (&a.relation, &a.to).cmp(&(&b.relation, &b.to)));
                (from.to_string(), specs)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Highest engine sequence number applied.
    pub fn applied_seq(&self) -> u64 {
        self.adjacency.read().applied_seq
    }

    /// Bounded breadth-first walk from `starts` (see [`TraversalOptions`]): the nodes reached
    /// and the edges recorded between them.
    pub fn walk(&self, starts: &[&str], options: &TraversalOptions) -> Result<Walk> {
        options.validate()?;
        let adjacency = self.adjacency.read();
        Ok(traverse::walk(
            &adjacency.out,
            &adjacency.incoming,
            starts,
            options,
        ))
    }

    /// The eligible steps out of `node` under `options` (direction, relations, minimum
    /// weight) that a walk running elsewhere needs: the first `limit` in walk order, plus every
    /// later one back to a node of `walked` (a ring's coordinator walks one hop at a time over
    /// the steps the owners of the frontier send it).
    pub fn steps_from(
        &self,
        node: &str,
        options: &TraversalOptions,
        limit: usize,
        walked: &[Arc<str>],
    ) -> Result<NodeSteps> {
        options.validate()?;
        let adjacency = self.adjacency.read();
        Ok(traverse::node_steps(
            &adjacency.out,
            &adjacency.incoming,
            node,
            options,
            limit,
            walked,
        ))
    }

    /// Adds the stored edge of each step (`from -[relation]-> to`, or the reverse for a
    /// reversed step), as [`GraphIndex::add_edges`] would.
    pub fn add_steps(&self, steps: &[PathStep]) -> Result<()> {
        let mut adjacency = self.adjacency.write();
        for step in steps {
            let (from, relation, to) = step.stored();
            let edge = EdgeSpec {
                relation: relation.to_string(),
                to: to.to_string(),
                weight: step.weight,
            };
            validate(from, std::slice::from_ref(&edge))?;
            adjacency.insert(from, &edge);
        }
        Ok(())
    }

    /// The nodes of [`GraphIndex::walk`].
    pub fn expand(&self, starts: &[&str], options: &TraversalOptions) -> Result<Vec<Reached>> {
        Ok(self.walk(starts, options)?.reached)
    }
}

fn edges_of(map: &HashMap<Arc<str>, NodeEdges>, entity: &str) -> Vec<(String, String, f32)> {
    let mut edges: Vec<(String, String, f32)> = map
        .get(entity)
        .map(|edges| {
            edges
                .iter()
                .map(|((relation, peer), weight)| (relation.to_string(), peer.to_string(), *weight))
                .collect()
        })
        .unwrap_or_default();
    edges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    edges
}

#[cfg(test)]
mod tests;
