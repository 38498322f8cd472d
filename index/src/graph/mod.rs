//! Per-tenant graph index: adjacency in both directions and bounded breadth-first expansion
//! (DESIGN.md §4).
//!
//! Owns: the in-memory edge set of one tenant, indexed by source (out) and by target (in); each
//! node's edges by `(relation, peer)` and, per relation, heaviest first (`edges.rs`); the dense
//! integer ids of its nodes and relations (`ids.rs`): the adjacency is a vector indexed by node
//! id, and walks run on ids, so entity id strings are hashed only where they enter (writes, walk
//! starts) and copied only where they leave (the walk's reached nodes and steps). The walk
//! itself (`traverse.rs`) expands a node from any source of its steps in walk order: the
//! adjacency, or the step lists a ring's coordinator gathers hop by hop ([`HopWalk`],
//! `hop_walk.rs`).
//! Invariants: every edge `(from, relation, to)` appears exactly once in `out[from]` and once in
//! `in[to]`, with the same weight; weights are finite; `out` and `incoming` have one entry per
//! node id. Expansion is deterministic: the same graph and options always give the same nodes,
//! depths and paths (whatever ids the nodes got).
//! Never: follow an edge of a deleted entity, exceed a traversal limit, panic on caller input.

mod edges;
mod hop_walk;
mod ids;
mod traverse;

pub use hop_walk::HopWalk;
pub use traverse::{Direction, NodeSteps, PathStep, Reached, TraversalOptions, Truncation, Walk};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use edges::NodeEdges;
use ids::{Names, NodeId};

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

/// One direction of the adjacency: each node id's edges (`None`: none in this direction).
type Edges = Vec<Option<Box<NodeEdges>>>;

/// One tenant's graph. All methods take `&self`; writers take a short exclusive lock.
#[derive(Debug, Default)]
pub struct GraphIndex {
    adjacency: RwLock<Adjacency>,
}

#[derive(Debug, Default)]
struct Adjacency {
    nodes: Names,
    relations: Names,
    out: Edges,
    incoming: Edges,
    applied_seq: u64,
}

fn validate(from: &str, edges: &[EdgeSpec]) -> Result<()> {
    if from.is_empty() {
        return Err(Error::invalid("edge source entity id is empty"));
    }
    edges
        .iter()
        .try_for_each(|edge| validate_edge(from, &edge.relation, &edge.to, edge.weight))
}

/// Refuses an edge `from -[relation]-> to` without both ends or with a non-finite weight.
fn validate_edge(from: &str, relation: &str, to: &str, weight: f32) -> Result<()> {
    if from.is_empty() {
        return Err(Error::invalid("edge source entity id is empty"));
    }
    if to.is_empty() {
        return Err(Error::invalid(format!(
            "edge from {from:?} -[{relation}]-> has an empty target"
        )));
    }
    if !weight.is_finite() {
        return Err(Error::invalid(format!(
            "edge {from:?} -[{relation}]-> {to:?} has a non-finite weight {weight}"
        )));
    }
    Ok(())
}

impl Adjacency {
    /// The id of node `name`, given one (with empty adjacency) if it has none.
    fn node(&mut self, name: &str) -> NodeId {
        let id = self.nodes.intern(name);
        if self.out.len() < self.nodes.len() {
            self.out.resize_with(self.nodes.len(), || None);
            self.incoming.resize_with(self.nodes.len(), || None);
        }
        id
    }

    /// The edges of node `id` in one direction (`out` or `incoming`).
    fn edges_of(edges: &Edges, id: NodeId) -> Option<&NodeEdges> {
        edges.get(id as usize).and_then(|e| e.as_deref())
    }

    fn insert(&mut self, from: &str, relation: &str, to: &str, weight: f32) {
        let from = self.node(from);
        let to = self.node(to);
        let relation = self.relations.intern(relation);
        let relation_name = self.relations.name(relation);
        let (from_name, to_name) = (self.nodes.name(from), self.nodes.name(to));
        self.out[from as usize]
            .get_or_insert_with(Box::default)
            .insert((relation, relation_name), (to, to_name), weight);
        self.incoming[to as usize]
            .get_or_insert_with(Box::default)
            .insert((relation, relation_name), (from, from_name), weight);
    }

    fn remove(&mut self, from: &str, relation: &str, to: &str) -> bool {
        let (Some(from), Some(relation_id), Some(to)) = (
            self.nodes.get(from),
            self.relations.get(relation),
            self.nodes.get(to),
        ) else {
            return false;
        };
        let (from_name, to_name) = (self.nodes.name(from), self.nodes.name(to));
        let removed = remove_from(&mut self.out, from, (relation_id, relation), (to, to_name));
        remove_from(
            &mut self.incoming,
            to,
            (relation_id, relation),
            (from, from_name),
        );
        removed
    }

    fn remove_all_out(&mut self, from: &str) {
        let Some(from) = self.nodes.get(from) else {
            return;
        };
        if let Some(edges) = self.out[from as usize].take() {
            let from_name = self.nodes.name(from);
            for (relation, relation_id, peer) in edges.iter() {
                remove_from(
                    &mut self.incoming,
                    peer.id,
                    (relation_id, relation),
                    (from, from_name),
                );
            }
        }
    }

    fn remove_all_in(&mut self, to: &str) {
        let Some(to) = self.nodes.get(to) else {
            return;
        };
        if let Some(edges) = self.incoming[to as usize].take() {
            let to_name = self.nodes.name(to);
            for (relation, relation_id, peer) in edges.iter() {
                remove_from(
                    &mut self.out,
                    peer.id,
                    (relation_id, relation),
                    (to, to_name),
                );
            }
        }
    }
}

/// Removes the edge `(relation, peer)` from `edges[node]`, dropping the node's edges when they
/// empty.
fn remove_from(
    edges: &mut Edges,
    node: NodeId,
    relation: (u32, &str),
    peer: (NodeId, &Arc<str>),
) -> bool {
    let Some(Some(node_edges)) = edges.get_mut(node as usize) else {
        return false;
    };
    let removed = node_edges.remove(relation, peer);
    if node_edges.is_empty() {
        edges[node as usize] = None;
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
            adjacency.insert(from, &edge.relation, &edge.to, edge.weight);
        }
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
        Ok(())
    }

    /// Adds (or re-weights) out-edges of `from`.
    pub fn add_edges(&self, from: &str, edges: &[EdgeSpec], seq: u64) -> Result<()> {
        validate(from, edges)?;
        let mut adjacency = self.adjacency.write();
        for edge in edges {
            adjacency.insert(from, &edge.relation, &edge.to, edge.weight);
        }
        adjacency.applied_seq = adjacency.applied_seq.max(seq);
        Ok(())
    }

    /// "Entity `to` now has exactly these in-edges", each `(from, edge to `to`)`, at engine
    /// write `seq` (an entity's stored in-edge cells, indexed where its sources are not held).
    pub fn replace_in_edges(&self, to: &str, edges: &[(&str, EdgeSpec)], seq: u64) -> Result<()> {
        for (from, edge) in edges {
            validate(from, std::slice::from_ref(edge))?;
            if edge.to != to {
                return Err(Error::invalid(format!(
                    "in-edge {from:?} -[{}]-> {:?} does not end at {to:?}",
                    edge.relation, edge.to
                )));
            }
        }
        let mut adjacency = self.adjacency.write();
        adjacency.remove_all_in(to);
        for (from, edge) in edges {
            adjacency.insert(from, &edge.relation, &edge.to, edge.weight);
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
        let adjacency = self.adjacency.read();
        listing(&adjacency, &adjacency.out, entity)
    }

    /// In-edges of `entity` as `(relation, from, weight)`, ordered by relation then source.
    pub fn in_edges(&self, entity: &str) -> Vec<(String, String, f32)> {
        let adjacency = self.adjacency.read();
        listing(&adjacency, &adjacency.incoming, entity)
    }

    /// Total number of edges.
    pub fn edge_count(&self) -> usize {
        self.adjacency
            .read()
            .out
            .iter()
            .flatten()
            .map(|edges| edges.len())
            .sum()
    }

    /// Every entity's out-edges, sorted by entity, then relation and target (what a dump
    /// persists).
    pub fn export(&self) -> Vec<(String, Vec<EdgeSpec>)> {
        let adjacency = self.adjacency.read();
        let mut all: Vec<(String, Vec<EdgeSpec>)> = adjacency
            .out
            .iter()
            .enumerate()
            .filter_map(|(from, edges)| Some((from, edges.as_deref()?)))
            .map(|(from, edges)| {
                let mut specs: Vec<EdgeSpec> = edges
                    .iter()
                    .map(|(relation, _, peer)| EdgeSpec {
                        relation: relation.to_string(),
                        to: peer.peer.to_string(),
                        weight: peer.weight,
                    })
                    .collect();
                specs.sort_by(|a, b| (&a.relation, &a.to).cmp(&(&b.relation, &b.to)));
                let from = NodeId::try_from(from).expect("node ids fit in u32 (Names::intern)");
                (adjacency.nodes.name(from).to_string(), specs)
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
        Ok(traverse::walk(&adjacency, starts, options))
    }

    /// The eligible steps out of each of `nodes` under `options` (direction, relations,
    /// minimum weight) that a walk running elsewhere needs: in walk order, those to the first
    /// `limit` distinct neighbours outside `walked` and to walked nodes ([`NodeSteps`]; a ring's
    /// coordinator walks one hop at a time over the steps the owners of the frontier send it).
    /// One read of the adjacency serves the whole hop, and `walked` is resolved once.
    pub fn steps_from_each(
        &self,
        nodes: &[&str],
        options: &TraversalOptions,
        limit: usize,
        walked: &[Arc<str>],
    ) -> Result<Vec<NodeSteps>> {
        options.validate()?;
        let adjacency = self.adjacency.read();
        let walked = traverse::WalkedSet::resolve(&adjacency, walked);
        Ok(nodes
            .iter()
            .map(|node| traverse::node_steps(&adjacency, node, options, limit, &walked))
            .collect())
    }

    /// Every eligible step (under `options`' direction, relations and minimum weight), in walk
    /// order, of each of `nodes` that has at most `limit` distinct eligible neighbours outside
    /// `walked`; the others (cut, [`NodeSteps::cut`]) are left out. Such a list holds every
    /// step [`GraphIndex::steps_from_each`] could send for the node, whatever the walk so far.
    pub fn complete_steps(
        &self,
        nodes: &[&str],
        options: &TraversalOptions,
        limit: usize,
        walked: &[Arc<str>],
    ) -> Result<HashMap<Arc<str>, Vec<PathStep>>> {
        let steps = self.steps_from_each(nodes, options, limit, walked)?;
        Ok(nodes
            .iter()
            .zip(steps)
            .filter(|(_, steps)| !steps.cut)
            .map(|(node, steps)| (Arc::from(*node), steps.steps))
            .collect())
    }

    /// The nodes of [`GraphIndex::walk`].
    pub fn expand(&self, starts: &[&str], options: &TraversalOptions) -> Result<Vec<Reached>> {
        Ok(self.walk(starts, options)?.reached)
    }
}

/// The edges of `entity` in one direction as `(relation, peer, weight)`, ordered by relation
/// then peer.
fn listing(adjacency: &Adjacency, edges: &Edges, entity: &str) -> Vec<(String, String, f32)> {
    let mut listed: Vec<(String, String, f32)> = adjacency
        .nodes
        .get(entity)
        .and_then(|id| Adjacency::edges_of(edges, id))
        .map(|edges| {
            edges
                .iter()
                .map(|(relation, _, peer)| {
                    (relation.to_string(), peer.peer.to_string(), peer.weight)
                })
                .collect()
        })
        .unwrap_or_default();
    listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    listed
}

#[cfg(test)]
mod tests;
