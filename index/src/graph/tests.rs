//! Expansion limits, filters and paths on hand-built graphs.

use std::collections::HashMap;

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

/// The stored edge of a step as owned strings.
fn stored(step: &PathStep) -> (String, String, String) {
    let (from, relation, to) = step.stored();
    (from.to_string(), relation.to_string(), to.to_string())
}

/// The walk's rules restated on a full sort of every node's eligible steps: from each expanded
/// node, up to `fan_out` steps to new nodes and `fan_out` edges back into the walk, each stored
/// edge once; the fan-out flag is set by a step skipped for a full cap or left over when both
/// caps are full, a budget's flag by the refusal that stops the walk.
fn reference_walk(graph: &GraphIndex, starts: &[&str], options: &TraversalOptions) -> Walk {
    let mut reached: Vec<Reached> = Vec::new();
    let mut edges: Vec<PathStep> = Vec::new();
    let mut seen: std::collections::HashSet<(String, String, String)> = Default::default();
    let mut truncation = Truncation::default();
    let edge_budget = options.edge_budget.unwrap_or(usize::MAX);
    for start in starts {
        if !reached.iter().any(|r| &*r.entity_id == *start) {
            if reached.len() == options.node_budget {
                truncation.node_budget = true;
                return Walk {
                    reached,
                    edges,
                    truncation,
                };
            }
            reached.push(Reached {
                entity_id: Arc::from(*start),
                depth: 0,
                path: Vec::new(),
            });
        }
    }
    let mut begin = 0;
    for depth in 1..=options.max_hops {
        let end = reached.len();
        for index in begin..end {
            let node = reached[index].entity_id.clone();
            let mut steps: Vec<PathStep> = Vec::new();
            let mut add = |list: Vec<(String, String, f32)>, reversed: bool| {
                for (relation, peer, weight) in list {
                    let relation_ok = options
                        .relations
                        .as_ref()
                        .is_none_or(|r| r.contains(&relation));
                    if weight >= options.min_weight && relation_ok {
                        steps.push(PathStep {
                            from: node.clone(),
                            relation: Arc::from(relation.as_str()),
                            to: Arc::from(peer.as_str()),
                            weight,
                            reversed,
                        });
                    }
                }
            };
            if options.direction != Direction::In {
                add(graph.out_edges(&node), false);
            }
            if options.direction != Direction::Out {
                add(graph.in_edges(&node), true);
            }
            steps.sort_by(|a, b| {
                b.weight
                    .total_cmp(&a.weight)
                    .then_with(|| a.to.cmp(&b.to))
                    .then_with(|| a.relation.cmp(&b.relation))
                    .then_with(|| a.reversed.cmp(&b.reversed))
            });
            let (mut followed, mut crossed) = (0, 0);
            for step in steps {
                if followed == options.fan_out && crossed == options.fan_out {
                    truncation.fan_out = true;
                    break;
                }
                let known = reached.iter().any(|r| r.entity_id == step.to);
                if known {
                    if seen.contains(&stored(&step)) {
                        continue;
                    }
                    if crossed == options.fan_out {
                        truncation.fan_out = true;
                        continue;
                    }
                    if edges.len() == edge_budget {
                        truncation.edge_budget = true;
                        return Walk {
                            reached,
                            edges,
                            truncation,
                        };
                    }
                    crossed += 1;
                } else {
                    if followed == options.fan_out {
                        truncation.fan_out = true;
                        continue;
                    }
                    if reached.len() == options.node_budget {
                        truncation.node_budget = true;
                        return Walk {
                            reached,
                            edges,
                            truncation,
                        };
                    }
                    if edges.len() == edge_budget {
                        truncation.edge_budget = true;
                        return Walk {
                            reached,
                            edges,
                            truncation,
                        };
                    }
                    followed += 1;
                    let mut path = reached[index].path.clone();
                    path.push(step.clone());
                    reached.push(Reached {
                        entity_id: step.to.clone(),
                        depth,
                        path,
                    });
                }
                seen.insert(stored(&step));
                edges.push(step);
            }
        }
        begin = end;
    }
    Walk {
        reached,
        edges,
        truncation,
    }
}

/// A random graph with hubs (thousands of in-edges and tens of out-edges), cycles, self-loops,
/// parallel edges of two relations, and deleted nodes.
fn hub_graph(seed: u64) -> GraphIndex {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let graph = GraphIndex::new();
    let n = 400u32;
    for i in 0..n {
        let mut edges: Vec<EdgeSpec> = (0..rng.random_range(0..6))
            .map(|_| {
                let to = if rng.random_range(0..3) == 0 {
                    format!("n{}", rng.random_range(0..3)) // the hubs n0..n2
                } else {
                    format!("n{}", rng.random_range(0..n))
                };
                edge(
                    ["r", "s"][rng.random_range(0..2)],
                    &to,
                    f32::from(rng.random_range(0u8..5)) / 4.0,
                )
            })
            .collect();
        if i % 17 == 0 {
            edges.push(edge("r", &format!("n{i}"), 0.5)); // self-loop
        }
        if i % 11 == 0 {
            let to = format!("n{}", (i + 1) % n);
            edges.push(edge("r", &to, 0.25)); // parallel edges
            edges.push(edge("s", &to, 0.75));
        }
        graph.add_edges(&format!("n{i}"), &edges, 1).unwrap();
    }
    for hub in 0..3 {
        let edges: Vec<EdgeSpec> = (0..2_000)
            .map(|j| {
                edge(
                    "r",
                    &format!("n{}", (j * 7 + hub) % n),
                    (j % 9) as f32 / 8.0,
                )
            })
            .collect();
        graph.add_edges(&format!("n{hub}"), &edges, 2).unwrap();
    }
    for deleted in [5, 50, 150] {
        graph.delete_entity(&format!("n{deleted}"), 3);
    }
    graph
}

#[test]
fn walk_edges_match_the_reference_on_graphs_with_hubs_cycles_and_parallel_edges() {
    let mut compared = 0;
    for seed in 0..6 {
        let graph = hub_graph(seed);
        for (round, direction) in [Direction::Out, Direction::In, Direction::Both]
            .into_iter()
            .enumerate()
        {
            let options = TraversalOptions {
                max_hops: 1 + round % 3,
                fan_out: [3, 8, 40][round],
                node_budget: [60, 300, 1_000][(seed as usize) % 3],
                direction,
                relations: (seed == 4).then(|| vec!["r".to_owned()]),
                min_weight: if seed == 5 { 0.3 } else { f32::NEG_INFINITY },
                edge_budget: (seed == 3).then_some(30 + 40 * round),
            };
            let starts = ["n0", "n7", "n33", "n7", "n5"];
            let walk = graph.walk(&starts, &options).unwrap();
            let expected = reference_walk(&graph, &starts, &options);
            assert_eq!(walk.reached, expected.reached, "seed {seed} {direction:?}");
            assert_eq!(walk.edges, expected.edges, "seed {seed} {direction:?}");
            assert_eq!(
                walk.truncation, expected.truncation,
                "seed {seed} {direction:?}"
            );
            assert_eq!(graph.expand(&starts, &options).unwrap(), walk.reached);
            // Every reached node's last step is a recorded edge; every edge is stored once.
            let recorded: std::collections::HashSet<_> = walk.edges.iter().map(stored).collect();
            assert_eq!(recorded.len(), walk.edges.len());
            for node in &walk.reached {
                if let Some(last) = node.path.last() {
                    assert!(recorded.contains(&stored(last)));
                }
            }
            // Hubs cost at most 2 * fan_out edges each.
            for hub in ["n0", "n1", "n2"] {
                let from_hub = walk.edges.iter().filter(|e| &*e.from == hub).count();
                assert!(from_hub <= 2 * options.fan_out, "{hub}: {from_hub}");
            }
            compared += walk.edges.len();
        }
    }
    assert!(compared > 1_000, "edges compared: {compared}");
}

#[test]
fn truncation_names_the_fan_out_and_the_budgets() {
    let graph = hub_graph(1);
    let options = TraversalOptions {
        max_hops: 2,
        fan_out: 4,
        node_budget: 1_000,
        direction: Direction::In,
        ..TraversalOptions::default()
    };
    let walk = graph.walk(&["n0"], &options).unwrap();
    assert_eq!(
        walk.truncation,
        Truncation {
            fan_out: true,
            ..Truncation::default()
        }
    );
    // The hub's heaviest in-edges are the ones followed.
    let lightest_followed = walk
        .edges
        .iter()
        .filter(|e| &*e.from == "n0" && !walk.reached[..1].iter().any(|r| r.entity_id == e.to))
        .map(|e| e.weight)
        .fold(f32::INFINITY, f32::min);
    let heaviest_in = graph
        .in_edges("n0")
        .iter()
        .map(|e| e.2)
        .fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(lightest_followed, heaviest_in);
    let nodes = graph
        .walk(
            &["n0"],
            &TraversalOptions {
                node_budget: 3,
                ..options.clone()
            },
        )
        .unwrap();
    assert!(nodes.truncation.node_budget && !nodes.truncation.edge_budget);
    assert_eq!(nodes.reached.len(), 3);
    let edges = graph
        .walk(
            &["n0"],
            &TraversalOptions {
                edge_budget: Some(5),
                ..options.clone()
            },
        )
        .unwrap();
    assert!(edges.truncation.edge_budget);
    assert_eq!(edges.edges.len(), 5);
    let whole = sample()
        .walk(&["a"], &TraversalOptions { ..opts() })
        .unwrap();
    assert!(!whole.truncation.any());
    assert!(
        sample()
            .walk(
                &["a"],
                &TraversalOptions {
                    fan_out: 0,
                    ..opts()
                }
            )
            .is_err()
    );
}

/// The walk of `graph` taken as a ring's coordinator takes it: one hop at a time over the
/// steps `steps_from_each` lists for each frontier node, `limit` distinct neighbours each; and
/// how many lists were cut.
fn hop_walk(
    graph: &GraphIndex,
    starts: &[&str],
    options: &TraversalOptions,
    limit: usize,
) -> (Walk, usize) {
    let mut walk = HopWalk::new(starts, options).unwrap();
    let mut cut = 0;
    while !walk.frontier().is_empty() {
        let frontier: Vec<Arc<str>> = walk
            .frontier()
            .iter()
            .map(|r| r.entity_id.clone())
            .collect();
        let frontier: Vec<&str> = frontier.iter().map(|id| &**id).collect();
        let walked: Vec<Arc<str>> = walk.reached().iter().map(|r| r.entity_id.clone()).collect();
        let lists = graph
            .steps_from_each(&frontier, options, limit, &walked)
            .unwrap();
        cut += lists.iter().filter(|list| list.cut).count();
        let lists: HashMap<&str, NodeSteps> = frontier.into_iter().zip(lists).collect();
        walk.expand(|id| lists.get(id));
    }
    (walk.finish(), cut)
}

/// Over every node's whole list, the walk hop by hop is the graph's walk, hubs, cycles,
/// parallel edges, budgets and flags included. Over lists of `fan_out + node_budget`
/// neighbours (what owners send), it is too wherever no list was cut; a cut list can differ
/// where a late edge of a hub reaches a node found in the same hop (docs/cluster.md
/// "Expansion, one round per hop").
#[test]
fn a_walk_hop_by_hop_over_each_nodes_listed_steps_equals_the_walk_of_the_graph() {
    let (mut compared, mut compared_listed, mut cut) = (0, 0, 0);
    for seed in 0..6 {
        let graph = hub_graph(seed);
        for (round, direction) in [Direction::Out, Direction::In, Direction::Both]
            .into_iter()
            .enumerate()
        {
            for max_hops in 0..=3 {
                let options = TraversalOptions {
                    max_hops,
                    fan_out: [3, 8, 40][round],
                    node_budget: [60, 300, 1_000][(seed as usize) % 3],
                    direction,
                    relations: (seed == 4).then(|| vec!["r".to_owned()]),
                    min_weight: if seed == 5 { 0.3 } else { f32::NEG_INFINITY },
                    edge_budget: (seed == 3).then_some(30 + 40 * round),
                };
                for starts in [&["n0", "n7", "n33", "n7", "n5"][..], &["n9", "unknown"]] {
                    let expected = graph.walk(starts, &options).unwrap();
                    let (whole, _) = hop_walk(&graph, starts, &options, usize::MAX);
                    assert_eq!(whole, expected, "seed {seed} {options:?} from {starts:?}");
                    compared += whole.edges.len();
                    let limit = options.fan_out + options.node_budget;
                    let (listed, lists_cut) = hop_walk(&graph, starts, &options, limit);
                    if lists_cut == 0 {
                        assert_eq!(listed, expected, "seed {seed} {options:?} from {starts:?}");
                        compared_listed += listed.edges.len();
                    }
                    cut += lists_cut;
                }
            }
        }
    }
    assert!(compared > 2_000, "edges compared: {compared}");
    assert!(
        compared_listed > 1_000,
        "edges compared over listed steps: {compared_listed}"
    );
    assert!(cut > 10, "lists cut (hubs): {cut}");
}

#[test]
fn a_walk_hop_by_hop_stops_at_its_hops_budgets_and_an_empty_frontier() {
    let graph = sample();
    let options = TraversalOptions {
        max_hops: 5,
        ..opts()
    };
    let (walk, _) = hop_walk(&graph, &["a"], &options, usize::MAX);
    assert_eq!(walk, graph.walk(&["a"], &options).unwrap());
    // Seeds beyond the node budget: the walk is over before its first hop.
    let tight = TraversalOptions {
        node_budget: 1,
        ..opts()
    };
    let walk = HopWalk::new(&["a", "b"], &tight).unwrap();
    assert!(walk.frontier().is_empty());
    assert!(walk.finish().truncation.node_budget);
    // A node listed as cut has steps left past its list: once its fan-out is used up both
    // ways, the fan-out flag is set; a list that is not cut ends the node's steps.
    let step = |to: &str| PathStep {
        from: Arc::from("a"),
        relation: Arc::from("r"),
        to: Arc::from(to),
        weight: 1.0,
        reversed: false,
    };
    let one = TraversalOptions {
        fan_out: 1,
        ..opts()
    };
    for cut in [false, true] {
        let list = NodeSteps {
            steps: vec![step("b"), step("c")],
            cut,
        };
        let mut walk = HopWalk::new(&["a", "b"], &one).unwrap();
        walk.expand(|id| (id == "a").then_some(&list));
        let walk = walk.finish();
        assert_eq!(
            ids(&walk.reached),
            [("a".into(), 0), ("b".into(), 0), ("c".into(), 1)]
        );
        assert_eq!(walk.edges.len(), 2);
        assert_eq!(walk.truncation.fan_out, cut);
    }
    assert!(
        HopWalk::new(
            &["a"],
            &TraversalOptions {
                fan_out: 0,
                ..opts()
            }
        )
        .is_err()
    );
}
