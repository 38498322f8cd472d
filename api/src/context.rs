//! The wire form of a query's context (`QueryResponse.context`, docs/api.md "Graph-RAG in one
//! call"): [`to_proto`] builds it from the store's context within the reply size cap, and
//! [`node_paths`] rebuilds each listed entity's full path from it.
//!
//! Owns how a path travels: a listed entity reached from another listed entity carries only
//! the last step of its path (`ContextNode.step`: the parent's index and the edge followed);
//! one whose parent is not listed (the filter removed it) carries its whole path
//! (`ContextNode.path`); a seed carries neither. So a context of n entities carries n steps,
//! not n paths of up to `max_hops` edges each.
//!
//! Invariants: entities are listed in walk order, so a step's parent index is always smaller
//! than its entity's, and the size cap keeps a prefix of the entities: a kept entity's listed
//! parent is kept too. Never reorders the store's entities or edges.

use allidb_index::QueryContext;
use foldhash::{HashMap, HashMapExt};
use prost::Message;

use crate::{convert, pb};

/// The context of a query reply: entities in walk order while the encoded context stays within
/// `max_bytes`, then the edges between kept entities while it still does. `truncated_by` names
/// the walk's limits that cut it, then `max_context_bytes` when the size cap dropped anything.
pub fn to_proto(context: QueryContext, max_bytes: usize) -> pb::QueryContext {
    let mut truncated_by: Vec<String> = Vec::new();
    let cut = context.truncation;
    for (hit, name) in [
        (cut.fan_out, "max_fan_out"),
        (cut.node_budget, "max_nodes"),
        (cut.edge_budget, "max_edges"),
    ] {
        if hit {
            truncated_by.push(name.to_owned());
        }
    }
    // Room for the flags and the bound names, whatever is dropped below.
    let mut size = truncated_by.iter().map(|n| n.len() + 2).sum::<usize>() + 2 + 32;
    let mut over = false;
    let mut nodes: Vec<pb::ContextNode> = Vec::with_capacity(context.nodes.len());
    // Listed entity -> its index in `nodes`.
    let mut listed: HashMap<&str, u32> = HashMap::with_capacity(context.nodes.len());
    for hit in &context.nodes {
        let reached = &hit.reached;
        let step = reached.path.last().and_then(|last| {
            listed.get(&*last.from).map(|&parent| pb::ContextStep {
                parent,
                relation: String::from(&*last.relation),
                weight: f64::from(last.weight),
                reversed: last.reversed,
            })
        });
        let path = (step.is_none() && !reached.path.is_empty())
            .then(|| convert::graph_path(&reached.entity_id, &reached.path));
        let node = pb::ContextNode {
            entity_id: String::from(&*reached.entity_id),
            hop: convert::count_i32(reached.depth),
            path,
            chunks: hit.entity.as_ref().map_or_else(Vec::new, |entity| {
                entity
                    .body
                    .chunks
                    .iter()
                    .map(convert::chunk_to_proto)
                    .collect()
            }),
            step,
        };
        let framed = framed_len(&node);
        if size + framed > max_bytes {
            over = true;
            break;
        }
        size += framed;
        let index = u32::try_from(nodes.len())
            .expect("a context lists at most query.max_expansion_nodes (a u32) entities");
        listed.insert(&reached.entity_id, index);
        nodes.push(node);
    }
    // The store returns only edges between its entities: unless the size cap dropped some,
    // every edge joins two kept ones.
    let mut edges: Vec<pb::GraphEdge> = Vec::new();
    for step in &context.edges {
        if over && !(listed.contains_key(&*step.from) && listed.contains_key(&*step.to)) {
            continue;
        }
        let edge = convert::stored_edge(step);
        let framed = framed_len(&edge);
        if size + framed > max_bytes {
            over = true;
            break;
        }
        size += framed;
        edges.push(edge);
    }
    if over {
        truncated_by.push("max_context_bytes".to_owned());
    }
    pb::QueryContext {
        nodes,
        edges,
        truncated: !truncated_by.is_empty(),
        truncated_by,
    }
}

/// The encoded size of `message` as a repeated field's element: tag, length and body.
fn framed_len(message: &impl Message) -> usize {
    let len = message.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// Every listed entity's full path, in `context.nodes` order: seed first, with the stored edges
/// followed (as `Traverse` reports paths). A step is resolved through its parent's path. `None`
/// when a step names a parent that is not listed before its entity (not a reply of this
/// server).
pub fn node_paths(context: &pb::QueryContext) -> Option<Vec<pb::GraphPath>> {
    let mut paths: Vec<pb::GraphPath> = Vec::with_capacity(context.nodes.len());
    for node in &context.nodes {
        let path = match (&node.step, &node.path) {
            (Some(step), _) => {
                let parent = usize::try_from(step.parent).ok()?;
                let parent_path = paths.get(parent)?;
                let parent_node = &context.nodes[parent];
                let (from, to) = if step.reversed {
                    (&node.entity_id, &parent_node.entity_id)
                } else {
                    (&parent_node.entity_id, &node.entity_id)
                };
                let mut path = parent_path.clone();
                path.entity_ids.push(node.entity_id.clone());
                path.edges.push(pb::GraphEdge {
                    from_entity: from.clone(),
                    to_entity: to.clone(),
                    relation: step.relation.clone(),
                    weight: step.weight,
                    timestamp_nanos: 0,
                    source_ids: Vec::new(),
                });
                path
            }
            (None, Some(path)) => path.clone(),
            (None, None) => pb::GraphPath {
                entity_ids: vec![node.entity_id.clone()],
                edges: Vec::new(),
            },
        };
        paths.push(path);
    }
    Some(paths)
}

#[cfg(test)]
mod tests {
    use allidb_index::graph::{PathStep, Reached, Truncation};
    use allidb_index::store::TraverseHit;

    use super::*;

    fn step(from: &str, relation: &str, to: &str, weight: f32, reversed: bool) -> PathStep {
        PathStep {
            from: from.into(),
            relation: relation.into(),
            to: to.into(),
            weight,
            reversed,
        }
    }

    fn hit(entity_id: &str, path: Vec<PathStep>) -> TraverseHit {
        TraverseHit {
            reached: Reached {
                entity_id: entity_id.into(),
                depth: path.len(),
                path,
            },
            entity: None,
        }
    }

    /// Each node's path as the store gives it (and `Traverse` reports it).
    fn store_paths(context: &QueryContext) -> Vec<pb::GraphPath> {
        context
            .nodes
            .iter()
            .map(|hit| convert::graph_path(&hit.reached.entity_id, &hit.reached.path))
            .collect()
    }

    /// A walk a -> b -> c, a <- d (followed backwards), b -> e, where the filter removed b:
    /// c and e keep their whole paths, d gets a step.
    fn filtered_context() -> QueryContext {
        let ab = step("a", "dep", "b", 0.5, false);
        let bc = step("b", "dep", "c", 0.25, false);
        let ad = step("a", "dep", "d", 2.0, true);
        let be = step("b", "uses", "e", 1.0, false);
        QueryContext {
            nodes: vec![
                hit("a", vec![]),
                hit("d", vec![ad.clone()]),
                hit("c", vec![ab.clone(), bc.clone()]),
                hit("e", vec![ab.clone(), be.clone()]),
            ],
            edges: vec![ad],
            truncation: Truncation::default(),
        }
    }

    #[test]
    fn listed_parents_give_steps_and_paths_rebuild_as_traverse_reports_them() {
        let context = filtered_context();
        let expected = store_paths(&context);
        let reply = to_proto(context, usize::MAX);
        let d = &reply.nodes[1];
        let d_step = d.step.as_ref().expect("d's parent a is listed");
        assert_eq!(
            (d_step.parent, d_step.reversed, d_step.weight),
            (0, true, 2.0)
        );
        assert!(d.path.is_none());
        assert!(reply.nodes[0].step.is_none() && reply.nodes[0].path.is_none());
        for node in &reply.nodes[2..] {
            assert!(
                node.step.is_none(),
                "{}'s parent b is not listed",
                node.entity_id
            );
            assert!(node.path.is_some());
        }
        let rebuilt = node_paths(&reply).expect("steps from earlier nodes");
        assert_eq!(rebuilt, expected);
        assert_eq!(
            (
                rebuilt[1].edges[0].from_entity.as_str(),
                rebuilt[1].edges[0].to_entity.as_str()
            ),
            ("d", "a"),
            "a step followed backwards is rebuilt in the stored direction"
        );
    }

    #[test]
    fn a_chain_of_steps_rebuilds_every_hop() {
        let ab = step("a", "r", "b", 1.0, false);
        let bc = step("b", "s", "c", 0.5, false);
        let cd = step("c", "t", "d", 0.25, true);
        let context = QueryContext {
            nodes: vec![
                hit("a", vec![]),
                hit("b", vec![ab.clone()]),
                hit("c", vec![ab.clone(), bc.clone()]),
                hit("d", vec![ab.clone(), bc.clone(), cd.clone()]),
            ],
            edges: vec![ab, bc, cd],
            truncation: Truncation::default(),
        };
        let expected = store_paths(&context);
        let reply = to_proto(context, usize::MAX);
        let parents: Vec<Option<u32>> = reply
            .nodes
            .iter()
            .map(|n| n.step.as_ref().map(|s| s.parent))
            .collect();
        assert_eq!(parents, [None, Some(0), Some(1), Some(2)]);
        assert!(reply.nodes.iter().all(|n| n.path.is_none()));
        assert_eq!(
            node_paths(&reply).expect("steps from earlier nodes"),
            expected
        );
    }

    #[test]
    fn the_size_cap_keeps_a_prefix_whose_steps_resolve() {
        let full = to_proto(filtered_context(), usize::MAX);
        let first_two: usize = full.nodes[..2].iter().map(framed_len).sum();
        let capped = to_proto(filtered_context(), first_two + 2 + 32 + 1);
        assert_eq!(capped.nodes.len(), 2);
        assert!(capped.edges.is_empty());
        assert_eq!(capped.truncated_by, ["max_context_bytes"]);
        assert_eq!(
            node_paths(&capped).expect("steps from earlier nodes").len(),
            2
        );
    }

    #[test]
    fn a_step_from_a_later_or_missing_node_is_an_error() {
        let mut reply = to_proto(filtered_context(), usize::MAX);
        reply.nodes[1].step.as_mut().expect("d has a step").parent = 1;
        assert_eq!(node_paths(&reply), None, "a step from the node itself");
        reply.nodes[1].step.as_mut().expect("d has a step").parent = 9;
        assert_eq!(node_paths(&reply), None, "a step from past the list");
    }
}
