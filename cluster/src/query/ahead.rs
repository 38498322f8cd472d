//! The last hop's nodes described with the hop before it (DESIGN.md §6 "Distributed query"):
//! the owners that send the lists a walk's last hop reads also describe, facts only, the
//! neighbours that hop may reach, so the walk usually needs no round of its own for them.
//!
//! Owns: which neighbours count as reachable ([`targets`]: of each list, in walk order, the
//! first `per_node` neighbours not walked yet and not counted from an earlier list, as the walk
//! takes at most `max_fan_out` new nodes from a node), and a replica's answer to a hop with
//! them ([`answer_hop`]).
//! Invariants: a neighbour is described by a replica only when its token falls in the spans the
//! coordinator asks that replica for, or the coordinator names it; a hop's answer describes at
//! most [`MAX_PARTITIONS_PER_READ`] nodes ahead.
//! Never: change what the walk reaches or returns: a node reached but not described ahead (a
//! list read past its first `per_node` new neighbours, a node that predates this, a replica
//! that failed) is described after the hop as before.

use std::collections::HashSet;
use std::sync::Arc;

use allidb_index::graph::NodeSteps;
use allidb_index::store::{HopNode, HopRequest};

use crate::replica::MAX_PARTITIONS_PER_READ;
use crate::ring::{SpanIndex, TokenSpan, token};

/// What a hop's owner also describes, facts only: the nodes the walk's next hop may reach.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HopAhead {
    /// Of each node answered with steps, its first this many new neighbours ([`targets`]) ...
    pub per_node: usize,
    /// ... whose token falls in one of these spans (the ranges the coordinator asks this
    /// replica for) ...
    pub spans: Vec<TokenSpan>,
    /// ... and these entities (neighbours of nodes other replicas described).
    pub entity_ids: Vec<Arc<str>>,
}

/// A replica's answer to a hop: one node per id asked, in order, and the nodes it described
/// ahead, facts only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HopAnswer {
    pub nodes: Vec<HopNode>,
    pub ahead: Vec<(Arc<str>, HopNode)>,
}

impl HopAnswer {
    /// The nodes it describes (a call's rows in a read's profile).
    pub fn rows(&self) -> usize {
        self.nodes.len() + self.ahead.len()
    }
}

/// The neighbours a walk's next hop may reach from `lists` (the frontier's lists in walk
/// order) that `wanted` accepts: of each list, in its order, the first `per_node` neighbours
/// that are not in `walked` and were not counted from an earlier list (accepted or not: the
/// walk takes at most `max_fan_out` new nodes from a node, whoever holds them).
pub(crate) fn targets<'a>(
    lists: impl IntoIterator<Item = &'a NodeSteps>,
    walked: &HashSet<&str>,
    per_node: usize,
    mut wanted: impl FnMut(&str) -> bool,
) -> Vec<Arc<str>> {
    let mut counted: HashSet<&'a str> = HashSet::new();
    let mut found = Vec::new();
    for list in lists {
        let mut taken = 0;
        for step in &list.steps {
            if taken == per_node {
                break;
            }
            let to: &'a str = &step.to;
            if walked.contains(to) || !counted.insert(to) {
                continue;
            }
            taken += 1;
            if wanted(to) {
                found.push(step.to.clone());
            }
        }
    }
    found
}

/// A replica's answer to `hop` and `ahead` for `tenant`, `describe` being its store's
/// description of a hop (one node per id, in order): the hop's nodes, then the neighbours of
/// their lists in `ahead`'s spans and `ahead`'s entities, described facts only, at most
/// [`MAX_PARTITIONS_PER_READ`] of them.
pub(crate) fn answer_hop<E>(
    tenant: &str,
    hop: &HopRequest,
    ahead: Option<&HopAhead>,
    mut describe: impl FnMut(&HopRequest) -> Result<Vec<HopNode>, E>,
) -> Result<HopAnswer, E> {
    let nodes = match hop.entity_ids.is_empty() {
        true => Vec::new(),
        false => describe(hop)?,
    };
    let Some(ahead) = ahead else {
        return Ok(HopAnswer {
            nodes,
            ahead: Vec::new(),
        });
    };
    let mut walked: HashSet<&str> = hop.entity_ids.iter().map(String::as_str).collect();
    if let Some(steps) = &hop.steps {
        walked.extend(steps.walked.iter().map(|id| &**id));
    }
    let spans = SpanIndex::new(ahead.spans.iter().copied());
    let lists = nodes.iter().map(|node| &node.steps);
    let mut ids = targets(lists, &walked, ahead.per_node, |id| {
        spans.find(token(tenant, id)).is_some()
    });
    let mut listed: HashSet<Arc<str>> = ids.iter().cloned().collect();
    for id in &ahead.entity_ids {
        if !walked.contains(&**id) && listed.insert(id.clone()) {
            ids.push(id.clone());
        }
    }
    ids.truncate(MAX_PARTITIONS_PER_READ);
    if ids.is_empty() {
        return Ok(HopAnswer {
            nodes,
            ahead: Vec::new(),
        });
    }
    let facts = HopRequest {
        entity_ids: ids.iter().map(|id| id.to_string()).collect(),
        query: hop.query.clone(),
        filter: hop.filter.clone(),
        steps: None,
        text: hop.text.clone(),
    };
    let described = describe(&facts)?;
    Ok(HopAnswer {
        nodes,
        ahead: ids.into_iter().zip(described).collect(),
    })
}

#[cfg(test)]
mod tests {
    use allidb_index::graph::PathStep;

    use super::*;

    fn list(from: &str, to: &[&str]) -> NodeSteps {
        NodeSteps {
            steps: to
                .iter()
                .map(|to| PathStep {
                    from: Arc::from(from),
                    relation: Arc::from("r"),
                    to: Arc::from(*to),
                    weight: 1.0,
                    reversed: false,
                })
                .collect(),
            cut: false,
        }
    }

    fn names(ids: &[Arc<str>]) -> Vec<&str> {
        ids.iter().map(|id| &**id).collect()
    }

    #[test]
    fn each_list_counts_its_first_new_neighbours_in_walk_order() {
        let lists = [
            list("a", &["x", "b", "y", "z"]),
            list("b", &["x", "y", "w", "v"]),
        ];
        let walked: HashSet<&str> = ["a", "b"].into_iter().collect();
        // a: x, y (b is walked); b: x and y were counted from a, so w, v.
        assert_eq!(
            names(&targets(&lists, &walked, 2, |_| true)),
            ["x", "y", "w", "v"]
        );
        // Neighbours another replica describes still count toward a list's first ones.
        assert_eq!(
            names(&targets(&lists, &walked, 2, |id| id != "x" && id != "w")),
            ["y", "v"]
        );
        assert!(targets(&lists, &walked, 0, |_| true).is_empty());
    }
}
