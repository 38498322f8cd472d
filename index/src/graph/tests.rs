//! Expansion limits, filters and paths on hand-built graphs.

use super::*;

fn edge(relation: &str, to: &str, weight: f32) -> EdgeSpec {
    EdgeSpec {
        relation: relation.to_string(),
        to: to.to_string(),
        weight,
    }
}

/// a -> b (0.9, knows), a -> c (0.5, knows), a -> d (0.5, cites), b -> e (0.8, knows),
/// c -> f (1.0, knows), e -> g (0.7, knows), x -> a (0.6, knows)
fn sample() -> GraphIndex {
    let graph = GraphIndex::new();
    graph
        .add_edges(
            "a",
            &[
                edge("knows", "b", 0.9),
                edge("knows", "c", 0.5),
                edge("cites", "d", 0.5),
            ],
            1,
        )
        .unwrap();
    graph.add_edges("b", &[edge("knows", "e", 0.8)], 2).unwrap();
    graph.add_edges("c", &[edge("knows", "f", 1.0)], 3).unwrap();
    graph.add_edges("e", &[edge("knows", "g", 0.7)], 4).unwrap();
    graph.add_edges("x", &[edge("knows", "a", 0.6)], 5).unwrap();
    graph
}

fn ids(reached: &[Reached]) -> Vec<(String, usize)> {
    reached
        .iter()
        .map(|r| (r.entity_id.to_string(), r.depth))
        .collect()
}

fn opts() -> TraversalOptions {
    TraversalOptions {
        max_hops: 10,
        fan_out: 10,
        node_budget: 100,
        ..TraversalOptions::default()
    }
}

#[test]
fn bfs_orders_by_depth_then_weight_then_id_and_records_paths() {
    let reached = sample().expand(&["a"], &opts()).unwrap();
    let expected: Vec<(String, usize)> = [
        ("a", 0),
        ("b", 1),
        ("c", 1),
        ("d", 1),
        ("e", 2),
        ("f", 2),
        ("g", 3),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), *d))
    .collect();
    assert_eq!(ids(&reached), expected);
    let g = reached.iter().find(|r| &*r.entity_id == "g").unwrap();
    let path: Vec<(&str, &str, &str, f32)> = g
        .path
        .iter()
        .map(|s| (&*s.from, &*s.relation, &*s.to, s.weight))
        .collect();
    assert_eq!(
        path,
        vec![
            ("a", "knows", "b", 0.9),
            ("b", "knows", "e", 0.8),
            ("e", "knows", "g", 0.7)
        ]
    );
    assert!(reached[0].path.is_empty());
}

#[test]
fn hop_limit_fan_out_and_budget_are_hard() {
    let graph = sample();
    let one_hop = graph
        .expand(
            &["a"],
            &TraversalOptions {
                max_hops: 1,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&one_hop)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    let zero = graph
        .expand(
            &["a"],
            &TraversalOptions {
                max_hops: 0,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(zero.len(), 1);
    // fan-out 2 from a: b (0.9), then c (0.5, id "c" < "d")
    let fan = graph
        .expand(
            &["a"],
            &TraversalOptions {
                fan_out: 2,
                max_hops: 1,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&fan)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let budget = graph
        .expand(
            &["a"],
            &TraversalOptions {
                node_budget: 3,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&budget)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let seeds_only = graph
        .expand(
            &["a", "b", "c"],
            &TraversalOptions {
                node_budget: 2,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(seeds_only.len(), 2);
}

#[test]
fn relation_min_weight_and_direction_filters() {
    let graph = sample();
    let cites = graph
        .expand(
            &["a"],
            &TraversalOptions {
                relations: Some(vec!["cites".into()]),
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&cites)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "d"]
    );
    let heavy = graph
        .expand(
            &["a"],
            &TraversalOptions {
                min_weight: 0.75,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&heavy)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "e"]
    );
    let backwards = graph
        .expand(
            &["e"],
            &TraversalOptions {
                direction: Direction::In,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&backwards)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["e", "b", "a", "x"]
    );
    let step = &backwards[1].path[0];
    assert!(step.reversed && &*step.from == "e" && &*step.to == "b");
    let both = graph
        .expand(
            &["a"],
            &TraversalOptions {
                direction: Direction::Both,
                max_hops: 1,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(
        ids(&both)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "x", "c", "d"]
    );
    assert!(
        graph
            .expand(
                &["a"],
                &TraversalOptions {
                    min_weight: f32::NAN,
                    ..opts()
                }
            )
            .is_err()
    );
}

#[test]
fn updates_replace_remove_and_delete() {
    let graph = sample();
    graph
        .replace_out_edges("a", &[edge("knows", "z", 0.1)], 6)
        .unwrap();
    assert_eq!(
        graph.out_edges("a"),
        vec![("knows".into(), "z".into(), 0.1)]
    );
    assert!(graph.in_edges("b").is_empty());
    assert_eq!(graph.in_edges("z"), vec![("knows".into(), "a".into(), 0.1)]);
    assert_eq!(
        graph.remove_edges("b", &[("knows", "e"), ("knows", "nope")], 7),
        1
    );
    assert!(graph.in_edges("e").is_empty());
    graph.delete_entity("a", 8);
    assert!(
        graph.out_edges("x").is_empty(),
        "edges into a deleted entity are not followed"
    );
    assert!(graph.in_edges("z").is_empty());
    let reached = graph.expand(&["x"], &opts()).unwrap();
    assert_eq!(reached.len(), 1);
    assert_eq!(graph.applied_seq(), 8);
    assert!(
        graph
            .add_edges("a", &[edge("r", "b", f32::NAN)], 9)
            .is_err()
    );
    assert!(graph.add_edges("", &[edge("r", "b", 1.0)], 9).is_err());
}

#[test]
fn expansion_is_deterministic_on_a_larger_graph() {
    let graph = GraphIndex::new();
    for i in 0..300u32 {
        let edges: Vec<EdgeSpec> = (1..6u32)
            .map(|j| {
                edge(
                    if j % 2 == 0 { "r1" } else { "r2" },
                    &format!("n{}", (i * 7 + j * 13) % 300),
                    ((i + j) % 5) as f32 / 5.0,
                )
            })
            .collect();
        graph
            .add_edges(&format!("n{i}"), &edges, u64::from(i))
            .unwrap();
    }
    let options = TraversalOptions {
        max_hops: 3,
        fan_out: 3,
        node_budget: 50,
        ..TraversalOptions::default()
    };
    let first = graph.expand(&["n1", "n2"], &options).unwrap();
    for _ in 0..5 {
        assert_eq!(graph.expand(&["n1", "n2"], &options).unwrap(), first);
    }
    assert_eq!(first.len(), 50);
    for r in &first {
        assert_eq!(r.path.len(), r.depth);
        assert!(r.depth <= 3);
    }
}
