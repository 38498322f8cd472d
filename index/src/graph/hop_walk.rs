//! A bounded walk advanced one hop at a time over the step lists its caller supplies: a ring's
//! coordinator walks over the steps the owners of each hop's frontier send it
//! ([`super::GraphIndex::steps_from_each`]), with no graph of its own.
//!
//! Owns: one walk in progress, dense ids of the names its lists brought (its own, not a
//! graph's), and its visited and recorded sets.
//! Invariants: a frontier node is expanded from its list by the same code that expands a node
//! of a [`super::GraphIndex`] from its adjacency ([`WalkState::expand`]), so given the node's
//! eligible steps in walk order it follows, records and cuts exactly what that walk would, under
//! the same limits; each hop is expanded once, in breadth-first order (earlier hops are never
//! walked again); a list marked cut counts as having steps left past its end.
//! Never: read a step outside the lists given, expand a node twice, or go past `max_hops`.

use super::ids::{Names, NodeId, RelationId};
use super::traverse::{Candidate, Scratch, StepSource, WalkState};
use super::{NodeSteps, Reached, TraversalOptions, Walk};
use crate::error::Result;

/// A walk whose steps arrive hop by hop (see the module doc).
#[derive(Debug)]
pub struct HopWalk {
    options: TraversalOptions,
    nodes: Names,
    relations: Names,
    scratch: Scratch,
    walk: Walk,
    /// The id of each node of `walk.reached`.
    reached_ids: Vec<Option<NodeId>>,
    /// The next hop expands `walk.reached[frontier..]`.
    frontier: usize,
    hops: usize,
    /// A budget stopped the walk.
    stopped: bool,
}

impl HopWalk {
    /// The walk's seeds: the distinct `starts` (up to the node budget), no hop taken yet.
    pub fn new(starts: &[&str], options: &TraversalOptions) -> Result<Self> {
        options.validate()?;
        let mut hop_walk = Self {
            options: options.clone(),
            nodes: Names::default(),
            relations: Names::default(),
            scratch: Scratch::default(),
            walk: Walk::default(),
            reached_ids: Vec::new(),
            frontier: 0,
            hops: 0,
            stopped: false,
        };
        for start in starts {
            hop_walk.nodes.intern(start);
        }
        hop_walk.scratch.begin(hop_walk.nodes.len());
        let nodes = &hop_walk.nodes;
        let mut state = WalkState {
            options: &hop_walk.options,
            scratch: &mut hop_walk.scratch,
            walk: &mut hop_walk.walk,
            reached_ids: &mut hop_walk.reached_ids,
        };
        let added = state.add_starts(starts, |start| {
            let id = nodes.get(start)?;
            Some((id, nodes.name(id).clone()))
        });
        hop_walk.stopped = added.is_err();
        Ok(hop_walk)
    }

    /// The nodes the next hop expands, in walk order (none once the walk is over: every hop
    /// taken, a budget reached, or a hop that reached no new node).
    pub fn frontier(&self) -> &[Reached] {
        let over = self.stopped || self.hops >= self.options.max_hops;
        match over {
            true => &[],
            false => &self.walk.reached[self.frontier..],
        }
    }

    /// Whether the next hop is the walk's last (`max_hops`): the nodes it reaches are never
    /// expanded.
    pub fn next_hop_is_last(&self) -> bool {
        self.hops + 1 >= self.options.max_hops
    }

    /// The nodes reached so far, in walk order.
    pub fn reached(&self) -> &[Reached] {
        &self.walk.reached
    }

    /// Takes the next hop: each frontier node expanded over `steps_of(node)`, its eligible
    /// steps in walk order (`None`: it has none). Nothing happens once the walk is over.
    pub fn expand<'s>(&mut self, steps_of: impl Fn(&str) -> Option<&'s NodeSteps>) {
        let end = self.walk.reached.len();
        if self.frontier().is_empty() {
            return;
        }
        let mut lists: Vec<(usize, &'s NodeSteps, usize)> = Vec::new();
        let mut ids: Vec<StepIds> = Vec::new();
        for index in self.frontier..end {
            let Some(list) = steps_of(&self.walk.reached[index].entity_id) else {
                continue;
            };
            lists.push((index, list, ids.len()));
            ids.extend(list.steps.iter().map(|step| StepIds {
                from: self.nodes.intern_shared(&step.from),
                relation: self.relations.intern_shared(&step.relation),
                to: self.nodes.intern_shared(&step.to),
            }));
        }
        self.scratch.fit(self.nodes.len());
        let mut state = self.state();
        for (index, list, at) in lists {
            let mut source = ListSteps {
                list,
                ids: &ids[at..at + list.steps.len()],
                next: 0,
            };
            if state.expand(index, &mut source).is_err() {
                self.stopped = true;
                break;
            }
        }
        self.hops += 1;
        self.frontier = end;
        if self.walk.reached.len() == end {
            self.stopped = true;
        }
    }

    /// The walk: its nodes, recorded edges and the limits that cut it.
    pub fn finish(self) -> Walk {
        self.walk
    }

    fn state(&mut self) -> WalkState<'_, '_> {
        WalkState {
            options: &self.options,
            scratch: &mut self.scratch,
            walk: &mut self.walk,
            reached_ids: &mut self.reached_ids,
        }
    }
}

/// A step's names by this walk's ids.
#[derive(Clone, Copy)]
struct StepIds {
    from: NodeId,
    relation: RelationId,
    to: NodeId,
}

/// A frontier node's steps, read in the order its owner listed them (walk order).
struct ListSteps<'a> {
    list: &'a NodeSteps,
    ids: &'a [StepIds],
    next: usize,
}

impl<'a> StepSource<'a> for ListSteps<'a> {
    fn next(&mut self) -> Option<Candidate<'a>> {
        let step = self.list.steps.get(self.next)?;
        let ids = self.ids[self.next];
        self.next += 1;
        Some(Candidate {
            node: &step.from,
            node_id: ids.from,
            relation: &step.relation,
            relation_id: ids.relation,
            to: &step.to,
            to_id: ids.to,
            weight: step.weight,
            reversed: step.reversed,
        })
    }

    fn has_next(&self) -> bool {
        self.next < self.list.steps.len() || self.list.cut
    }

    /// A list is bounded (at most `fan_out + node_budget` neighbours): it is read, not looked
    /// up.
    fn back_steps_by_lookup(&self, _walked: &[Option<NodeId>]) -> Option<Vec<Candidate<'a>>> {
        None
    }
}
