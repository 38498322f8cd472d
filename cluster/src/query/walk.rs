//! A bounded walk across owners, one round per hop (DESIGN.md §6 "Distributed query").
//!
//! The coordinator keeps the walk ([`HopWalk`]); the owners of each hop's frontier send, in one
//! batched call per owner, each node's facts and its next steps in walk order (the first
//! `max_fan_out + max_nodes` eligible ones, plus every later one back into the walk so far).
//! The walk expands each frontier node over its list by the code a node holding everything
//! walks its adjacency with, so it makes the choices that node would make, and every limit
//! (`max_fan_out`, `max_nodes`, `max_edges`, `max_hops`) stops it at the same place; no graph is
//! built for the request and no hop is walked twice.
//! Nodes of the last hop, never expanded, are described with the hop before it where they can
//! be ([`super::ahead`]: the owners of that hop's frontier describe the first `max_fan_out` new
//! neighbours of each list, in the ranges the read asks them for), the others in one more
//! round. The seeds' steps
//! usually come with the candidate search (complete lists, `first_hop_steps`): then the first
//! hop asks only for the seeds without one.
//!
//! Where it can differ from one node: a node with more eligible steps than the ones sent whose
//! walk reads past them (only when it has more than `max_fan_out + max_nodes` eligible edges and
//! a neighbour found earlier in the same hop sits beyond them); its `cut` flag counts as steps
//! left, so the walk's fan-out flag is set as one node would set it.

use std::collections::HashMap;
use std::sync::Arc;

use allidb_index::Filter;
use allidb_index::graph::{HopWalk, NodeSteps, PathStep, TraversalOptions, Walk};
use allidb_index::store::{HopNode, StepRequest, TextSearch};

use super::Fanout;
use super::fanout::Described;
use crate::ClusterError;

/// A walk gathered from the owners and what they told of each of its nodes.
#[derive(Debug)]
pub(super) struct GatheredWalk {
    /// The walk, as one node holding everything would walk.
    pub walk: Walk,
    /// Every walked node's facts, similarity, filter verdict and BM25 score (steps left out).
    pub nodes: HashMap<Arc<str>, HopNode>,
}

/// What the candidate search told of the seeds, so the walk does not ask for it again.
#[derive(Debug, Default)]
pub(super) struct KnownSeeds {
    /// Each candidate's facts, similarity, filter verdict and BM25 score.
    pub nodes: HashMap<Arc<str>, HopNode>,
    /// The complete steps of the candidates that have a complete list ([`first_hop_steps`]).
    pub steps: HashMap<Arc<str>, Vec<PathStep>>,
}

/// Most eligible steps an owner sends per expanded node besides those back into the walk.
fn steps_per_node(options: &TraversalOptions) -> usize {
    options.fan_out.saturating_add(options.node_budget)
}

/// The steps a candidate search sends with its candidates for a walk under `options` (`None`:
/// the walk has no hop): each candidate's complete list, when it has at most as many distinct
/// neighbours as a hop would send ([`steps_per_node`]).
pub(super) fn first_hop_steps(options: &TraversalOptions) -> Option<StepRequest> {
    (options.max_hops > 0).then(|| StepRequest {
        options: options.clone(),
        limit: steps_per_node(options),
        walked: Vec::new(),
    })
}

/// Walks from `starts` under `options`, asking the owners hop by hop; `query`, `filter` and
/// `text` are what each node's similarity, filter verdict and BM25 score are reported for;
/// `known` is what the candidate search told of the seeds: a described node is not described
/// again, and a frontier node with complete steps is not asked for its steps again (a complete
/// list holds every step a hop could send, whatever the walk so far).
pub(super) async fn walk_across(
    fanout: &Fanout<'_>,
    starts: &[&str],
    options: &TraversalOptions,
    query: &[f32],
    filter: &Filter,
    text: Option<&TextSearch>,
    known: KnownSeeds,
) -> Result<GatheredWalk, ClusterError> {
    let KnownSeeds {
        mut nodes,
        steps: mut complete,
    } = known;
    let mut walk = HopWalk::new(starts, options)?;
    while !walk.frontier().is_empty() {
        let mut lists: HashMap<Arc<str>, NodeSteps> = HashMap::new();
        let mut asked: Vec<Arc<str>> = Vec::new();
        for reached in walk.frontier() {
            let id = &reached.entity_id;
            match complete.remove(id) {
                Some(steps) if nodes.contains_key(id) => {
                    lists.insert(id.clone(), NodeSteps { steps, cut: false });
                }
                _ => asked.push(id.clone()),
            }
        }
        if !asked.is_empty() {
            let steps = StepRequest {
                options: options.clone(),
                limit: steps_per_node(options),
                walked: walk.reached().iter().map(|r| r.entity_id.clone()).collect(),
            };
            let described = match walk.next_hop_is_last() {
                true => {
                    fanout
                        .describe_ahead(&asked, query, filter, text, steps, options.fan_out)
                        .await?
                }
                false => Described {
                    nodes: fanout
                        .describe(&asked, query, filter, text, Some(steps), "hop")
                        .await?,
                    ahead: Vec::new(),
                },
            };
            for (id, mut node) in described.nodes {
                lists.insert(id.clone(), std::mem::take(&mut node.steps));
                nodes.insert(id, node);
            }
            for (id, node) in described.ahead {
                nodes.entry(id).or_insert(node);
            }
        }
        walk.expand(|id| lists.get(id));
    }
    let walk = walk.finish();
    let undescribed: Vec<Arc<str>> = walk
        .reached
        .iter()
        .filter(|r| !nodes.contains_key(&r.entity_id))
        .map(|r| r.entity_id.clone())
        .collect();
    if !undescribed.is_empty() {
        for (id, node) in fanout
            .describe(&undescribed, query, filter, text, None, "facts")
            .await?
        {
            nodes.insert(
                id,
                HopNode {
                    steps: NodeSteps::default(),
                    ..node
                },
            );
        }
    }
    Ok(GatheredWalk { walk, nodes })
}
