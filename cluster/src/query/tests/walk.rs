//! The walk across owners over the fake ring, against the walk of one graph holding
//! everything: random graphs under many traversal options, seeds bringing their complete
//! steps, the last hop's nodes described with the hop before it, a hub bounded in one round
//! per hop, a failing host replaced by another replica and a
//! range without one unavailable.

use super::*;

/// The walk from `starts` gathered through `fanout`, without a query, filter or text.
fn gather(
    fanout: &Fanout<'_>,
    starts: &[&str],
    options: &TraversalOptions,
) -> Result<GatheredWalk, ClusterError> {
    runtime().block_on(walk_across(
        fanout,
        starts,
        options,
        &[],
        &Filter::default(),
        None,
        KnownSeeds::default(),
    ))
}

/// The walk over the fake ring, through host 1.
fn ring_walk(fake: &FakeRing, starts: &[&str], options: &TraversalOptions) -> Walk {
    let latency = PeerLatency::default();
    let fanout = fanout(fake, &latency, HostId::from_u128(1));
    let gathered = gather(&fanout, starts, options).unwrap();
    for reached in &gathered.walk.reached {
        assert!(
            gathered.nodes.contains_key(&reached.entity_id),
            "{} was described",
            reached.entity_id
        );
    }
    gathered.walk
}

/// Random edges between `nodes` nodes: three relations, weights from a few values (ties),
/// self-loops and parallel edges of different relations included.
fn random_edges(
    rng: &mut StdRng,
    nodes: usize,
    edges: usize,
) -> Vec<(usize, &'static str, usize, f32)> {
    (0..edges)
        .map(|_| {
            let relation = ["a", "b", "c"][rng.random_range(0..3)];
            let weight = [0.25, 0.5, 0.75, 1.0][rng.random_range(0..4)];
            (
                rng.random_range(0..nodes),
                relation,
                rng.random_range(0..nodes),
                weight,
            )
        })
        .collect()
}

fn whole_graph(edges: &[(usize, &str, usize, f32)]) -> GraphIndex {
    let graph = GraphIndex::new();
    for (from, relation, to, weight) in edges {
        let spec = EdgeSpec {
            relation: (*relation).to_owned(),
            to: format!("n{to}"),
            weight: *weight,
        };
        graph.add_edges(&format!("n{from}"), &[spec], 0).unwrap();
    }
    graph
}

#[test]
fn a_walk_across_owners_equals_the_walk_of_one_node_holding_everything() {
    let mut rng = StdRng::seed_from_u64(42);
    let nodes = 200;
    let edges = random_edges(&mut rng, nodes, 1_200);
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 2, nodes, &edges);
    let mut compared = 0;
    for direction in [Direction::Out, Direction::In, Direction::Both] {
        for (fan_out, node_budget, edge_budget) in [
            (16, 256, None),
            (2, 40, None),
            (3, 1_000, Some(25)),
            (1, 7, None),
        ] {
            for max_hops in 0..=3 {
                for relations in [None, Some(vec!["a".to_owned(), "c".to_owned()])] {
                    let options = TraversalOptions {
                        max_hops,
                        fan_out,
                        node_budget,
                        relations,
                        direction,
                        min_weight: 0.5,
                        edge_budget,
                    };
                    let starts = ["n3", "n77", "n3", "n150"];
                    let expected = whole.walk(&starts, &options).unwrap();
                    let got = ring_walk(&fake, &starts, &options);
                    assert_eq!(got, expected, "{options:?}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 3 * 4 * 4 * 2);
}

#[test]
fn seeds_bring_their_complete_steps_and_the_first_hop_asks_only_for_the_others() {
    let mut rng = StdRng::seed_from_u64(11);
    let nodes = 200;
    let mut edges = random_edges(&mut rng, nodes, 1_200);
    // n199, the best candidate (similarity 199/200), has more neighbours than a hop sends.
    edges.extend((0..150).map(|i| (199, "a", i, 1.0)));
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 3, nodes, &edges);
    let latency = PeerLatency::default();
    let runtime = runtime();
    for (max_hops, fan_out, node_budget, direction) in [
        (1, 4, 100, Direction::Out),
        (2, 3, 60, Direction::Both),
        (3, 16, 1_000, Direction::In),
    ] {
        let options = TraversalOptions {
            max_hops,
            fan_out,
            node_budget,
            relations: None,
            direction,
            min_weight: 0.5,
            edge_budget: None,
        };
        let fanout = fanout(&fake, &latency, HostId::from_u128(1));
        let search = SeedSearch {
            steps: first_hop_steps(&options),
            ..vector_search(10)
        };
        let mut candidates = runtime.block_on(fanout.seeds(search.clone())).unwrap();
        let complete = std::mem::take(&mut candidates.steps);
        let seeds: Vec<String> = candidates
            .vector
            .iter()
            .map(|c| c.hit.entity_id.to_string())
            .collect();
        let cut: Vec<&String> = seeds
            .iter()
            .filter(|id| !complete.contains_key(id.as_str()))
            .collect();
        let expect_cut = match direction {
            Direction::In => Vec::<&String>::new(),
            _ => vec![&seeds[0]],
        };
        assert_eq!(cut, expect_cut, "{options:?}");
        let starts: Vec<&str> = seeds.iter().map(String::as_str).collect();
        fake.asked_steps.lock().clear();
        let gathered = runtime
            .block_on(walk_across(
                &fanout,
                &starts,
                &options,
                &[],
                &Filter::default(),
                None,
                KnownSeeds {
                    steps: complete,
                    ..KnownSeeds::from(candidates)
                },
            ))
            .unwrap();
        assert_eq!(
            gathered.walk,
            whole.walk(&starts, &options).unwrap(),
            "{options:?}"
        );
        let asked_seeds: Vec<String> = fake
            .asked_steps
            .lock()
            .iter()
            .filter(|id| seeds.contains(id))
            .cloned()
            .collect();
        assert_eq!(
            asked_seeds.iter().collect::<Vec<_>>(),
            expect_cut,
            "only the seeds without complete steps are asked for them ({options:?})"
        );
    }
}

#[test]
fn a_hub_walk_across_owners_stops_at_the_same_bounds_in_one_round_per_hop() {
    // n0 has 5,000 out-edges (and n1..n20 link back to it); the walk keeps the same bound.
    let mut edges: Vec<(usize, &str, usize, f32)> = (1..=5_000)
        .map(|i| (0, "r", i, 1.0 + (i % 97) as f32))
        .collect();
    edges.extend((1..=20).map(|i| (i, "r", 0, 0.5)));
    edges.extend((1..=20).map(|i| (i, "r", 4_000 + i, 2.0)));
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 3, 5_001, &edges);
    for direction in [Direction::Out, Direction::Both] {
        let options = TraversalOptions {
            max_hops: 2,
            fan_out: 8,
            node_budget: 50,
            relations: None,
            direction,
            min_weight: f32::NEG_INFINITY,
            edge_budget: Some(60),
        };
        let before = fake.total_calls();
        let got = ring_walk(&fake, &["n0", "n3"], &options);
        assert_eq!(
            got,
            whole.walk(&["n0", "n3"], &options).unwrap(),
            "{direction:?}"
        );
        assert!(got.reached.len() <= 50 && got.edges.len() <= 60);
        // Two hops and the facts of the last one: at most three calls per host.
        assert!(
            fake.total_calls() - before <= 3 * 5,
            "{} calls",
            fake.total_calls() - before
        );
    }
}

#[test]
fn the_last_hops_nodes_come_with_the_hop_before_it() {
    // Every node has at most 8 out-edges and the walk follows up to 8 from each, and host 1
    // asks itself and host 2 (which cover every range): the owners of the frontier before the
    // last hop describe every node that hop reaches, so the walk takes one round per hop and
    // none for the last hop's facts. (With more hosts asked, a neighbour in one host's list
    // that another host answers for still waits for the last round.)
    let mut rng = StdRng::seed_from_u64(5);
    let nodes = 300;
    let edges: Vec<(usize, &str, usize, f32)> = (0..nodes)
        .flat_map(|from| {
            let degree = rng.random_range(0..=8);
            (0..degree)
                .map(|_| (from, "r", rng.random_range(0..nodes), 1.0))
                .collect::<Vec<_>>()
        })
        .collect();
    let whole = whole_graph(&edges);
    let latency = PeerLatency::default();
    for (hosts, rf) in [(4, 3), (3, 2), (2, 1)] {
        let fake = FakeRing::new(hosts, rf, nodes, &edges);
        for max_hops in 1..=3 {
            let options = TraversalOptions {
                max_hops,
                fan_out: 8,
                node_budget: 10_000,
                relations: None,
                direction: Direction::Out,
                min_weight: 0.0,
                edge_budget: None,
            };
            let starts = ["n1", "n42", "n100", "n250"];
            let fanout = fanout(&fake, &latency, HostId::from_u128(1));
            *fanout.cover.lock() = [1, 2].map(HostId::from_u128).into();
            let gathered = gather(&fanout, &starts, &options).unwrap();
            assert_eq!(gathered.walk, whole.walk(&starts, &options).unwrap());
            for reached in &gathered.walk.reached {
                assert!(gathered.nodes.contains_key(&reached.entity_id));
            }
            assert_eq!(
                fanout.finish().rounds,
                max_hops,
                "{hosts} hosts, rf {rf}, {max_hops} hops: one round per hop"
            );
        }
    }
}

#[test]
fn describing_ahead_needs_no_live_replica_of_ranges_the_walk_does_not_reach() {
    // RF 1 and host 3 failed earlier in the request: its ranges have no live replica. A walk
    // among nodes the other hosts hold still answers, its last hop described ahead; only a
    // node in those ranges would fail it (the test above).
    let dead = HostId::from_u128(3);
    let layout = FakeRing::new(5, 1, 100, &[]);
    let alive = |n: &usize| layout.replicas(&format!("n{n}")) != [dead];
    let mut rng = StdRng::seed_from_u64(9);
    let edges: Vec<(usize, &str, usize, f32)> = random_edges(&mut rng, 100, 500)
        .into_iter()
        .filter(|(from, _, to, _)| alive(from) && alive(to))
        .collect();
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 1, 100, &edges);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(1));
    fanout.failed.lock().insert(dead);
    let starts: Vec<String> = edges.iter().take(2).map(|e| format!("n{}", e.0)).collect();
    let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
    let options = TraversalOptions {
        max_hops: 2,
        ..TraversalOptions::default()
    };
    let gathered = gather(&fanout, &starts, &options).unwrap();
    assert_eq!(gathered.walk, whole.walk(&starts, &options).unwrap());
    assert!(
        gathered.walk.reached.len() > starts.len(),
        "the walk went somewhere"
    );
}

#[test]
fn a_failing_host_is_replaced_by_another_replica_and_a_range_without_one_is_unavailable() {
    let mut rng = StdRng::seed_from_u64(9);
    let edges = random_edges(&mut rng, 100, 500);
    let whole = whole_graph(&edges);
    let mut fake = FakeRing::new(5, 3, 100, &edges);
    fake.failing.insert(HostId::from_u128(2));
    let options = TraversalOptions {
        max_hops: 3,
        ..TraversalOptions::default()
    };
    let got = ring_walk(&fake, &["n1", "n2"], &options);
    assert_eq!(got, whole.walk(&["n1", "n2"], &options).unwrap());
    assert!(
        fake.calls.lock()[&HostId::from_u128(2)] >= 1,
        "the failing host was tried"
    );

    // RF 1 with a failing host: the ids it owns have no other replica.
    let mut single = FakeRing::new(5, 1, 100, &edges);
    single.failing.insert(HostId::from_u128(3));
    let latency = PeerLatency::default();
    let fanout = fanout(&single, &latency, HostId::from_u128(1));
    let owned: Vec<String> = (0..100)
        .map(|i| format!("n{i}"))
        .filter(|id| single.replicas(id) == [HostId::from_u128(3)])
        .collect();
    let starts: Vec<&str> = owned.iter().take(1).map(String::as_str).collect();
    let runtime = runtime();
    let error = gather(&fanout, &starts, &options).unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("no live replica") && m.contains("h3")),
        "{error}"
    );
    let search = vector_search(5);
    let error = runtime.block_on(fanout.seeds(search.clone())).unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("token ranges have no live replica") && m.contains("h3")),
        "{error}"
    );
}
