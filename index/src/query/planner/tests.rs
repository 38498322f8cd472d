//! Unit tests of the query pipeline ([`super::run_query`]): scores and order, expansion with
//! each node's own similarity, the filter before the top k, seeds apart from k, the kept walk,
//! personalized PageRank, and the bounded fact lookups against full scoring.

use super::*;
use crate::graph::EdgeSpec;
use crate::query::PageRankOptions;
use crate::vector::VectorIndexOptions;

fn setup() -> (VectorIndex, GraphIndex) {
    let vectors = VectorIndex::new(VectorIndexOptions::default()).unwrap();
    vectors.upsert("exact", &[1.0, 0.0, 0.0], 1).unwrap();
    vectors.upsert("near", &[0.9, 0.1, 0.0], 2).unwrap();
    vectors.upsert("far", &[0.0, 0.0, 1.0], 3).unwrap();
    vectors.upsert("linked", &[0.0, 1.0, 0.0], 4).unwrap();
    let graph = GraphIndex::new();
    graph
        .add_edges(
            "exact",
            &[EdgeSpec {
                relation: "r".into(),
                to: "linked".into(),
                weight: 0.5,
            }],
            5,
        )
        .unwrap();
    (vectors, graph)
}

const NO_HINT: Seeding<'static> = Seeding::Search(None);

/// `run_query` at time 1,000 without a filter-size hint.
fn query_at_1000(
    vectors: &VectorIndex,
    graph: &GraphIndex,
    query: &[f32],
    plan: &QueryPlan,
    filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
    facts: &dyn Fn(&str) -> Option<EntityFacts>,
) -> Vec<ScoredResult> {
    run_query(vectors, graph, query, plan, filter, NO_HINT, &facts, 1_000)
        .unwrap()
        .results
}

fn fresh(_: &str) -> Option<EntityFacts> {
    Some(EntityFacts {
        importance: 0.0,
        updated_at_micros: 1_000,
    })
}

#[test]
fn identical_entity_scores_one_and_a_half_and_ranks_first() {
    let (vectors, graph) = setup();
    let plan = QueryPlan {
        k: 2,
        expand_factor: 1,
        ..QueryPlan::default()
    };
    let results = query_at_1000(&vectors, &graph, &[2.0, 0.0, 0.0], &plan, None, &fresh);
    assert_eq!(results.len(), 2);
    assert_eq!(&*results[0].entity_id, "exact");
    assert!(
        (results[0].score - 1.5).abs() < 1e-6,
        "{}",
        results[0].score
    );
}

#[test]
fn expanded_nodes_use_their_own_similarity_and_path() {
    let (vectors, graph) = setup();
    let plan = QueryPlan {
        k: 10,
        expand_factor: 1,
        max_candidates: 1,
        ..QueryPlan::default()
    };
    let results = query_at_1000(&vectors, &graph, &[1.0, 0.0, 0.0], &plan, None, &fresh);
    let ids: Vec<&str> = results.iter().map(|r| &*r.entity_id).collect();
    assert_eq!(ids, ["exact", "linked"]);
    let linked = &results[1];
    assert_eq!(linked.depth, 1);
    assert!(linked.similarity.unwrap().abs() < 1e-6);
    // (0+1)/2 + 0.3*0.5 + 0.2*0.5 + 0.1
    assert!((linked.score - (0.5 + 0.15 + 0.1 + 0.1)).abs() < 1e-6);
}

#[test]
fn filter_applies_before_top_k_and_deleted_entities_drop() {
    let (vectors, graph) = setup();
    let plan = QueryPlan {
        k: 2,
        ..QueryPlan::default()
    };
    let not_exact = |id: &str| id != "exact";
    let results = query_at_1000(
        &vectors,
        &graph,
        &[1.0, 0.0, 0.0],
        &plan,
        Some(&not_exact),
        &fresh,
    );
    // "linked" is only a seed now (its link came from "exact"); it ties with "far": id order.
    assert_eq!(
        results.iter().map(|r| &*r.entity_id).collect::<Vec<_>>(),
        ["near", "far"]
    );
    let gone = |id: &str| if id == "near" { None } else { fresh(id) };
    let results = query_at_1000(&vectors, &graph, &[1.0, 0.0, 0.0], &plan, None, &gone);
    assert!(results.iter().all(|r| &*r.entity_id != "near"));
    assert!(
        run_query(
            &vectors,
            &graph,
            &[1.0, 0.0],
            &plan,
            None,
            NO_HINT,
            &fresh,
            0
        )
        .is_err()
    );
    assert!(
        QueryPlan {
            k: 0,
            ..QueryPlan::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn seeds_are_apart_from_k_and_the_walk_is_kept_on_request() {
    let (vectors, graph) = setup();
    let plan = QueryPlan {
        k: 1,
        seeds: Some(3),
        keep_walk: true,
        traversal: TraversalOptions {
            max_hops: 0,
            ..TraversalOptions::default()
        },
        ..QueryPlan::default()
    };
    let answer = run_query(
        &vectors,
        &graph,
        &[1.0, 0.0, 0.0],
        &plan,
        None,
        NO_HINT,
        &fresh,
        1_000,
    )
    .unwrap();
    assert_eq!(answer.results.len(), 1);
    let walk = answer.walk.unwrap();
    let seeds: Vec<&str> = walk.reached.iter().map(|r| &*r.entity_id).collect();
    assert_eq!(seeds, ["exact", "near", "far"]);
    let default = QueryPlan {
        k: 3,
        expand_factor: 2,
        ..QueryPlan::default()
    };
    assert_eq!(default.seed_count(), 6);
    for bad in [0, 1_001] {
        let plan = QueryPlan {
            seeds: Some(bad),
            ..QueryPlan::default()
        };
        let error = plan.validate().unwrap_err().to_string();
        assert!(error.contains("seeds"), "{error}");
    }
    assert!(
        run_query(
            &vectors,
            &graph,
            &[1.0, 0.0, 0.0],
            &default,
            None,
            NO_HINT,
            &fresh,
            0
        )
        .unwrap()
        .walk
        .is_none()
    );
}

#[test]
fn pagerank_ranks_by_mass_with_dangling_mass_back_at_the_seed() {
    // exact -> linked -> far (far has no out-edges), one seed: x_exact = (1-d)/(1-d^3),
    // x_linked = d x_exact, x_far = d^2 x_exact; with d = 0.5: 4/7, 2/7, 1/7.
    let (vectors, graph) = setup();
    graph
        .add_edges(
            "linked",
            &[EdgeSpec {
                relation: "r".into(),
                to: "far".into(),
                weight: 3.0,
            }],
            6,
        )
        .unwrap();
    let options = PageRankOptions {
        damping: 0.5,
        max_iterations: 200,
        tolerance: 1e-15,
        similarity_weight: 0.0,
    };
    let plan = QueryPlan {
        k: 10,
        seeds: Some(1),
        explain: true,
        ranking: Ranking::PersonalizedPageRank(options),
        ..QueryPlan::default()
    };
    let results = query_at_1000(&vectors, &graph, &[1.0, 0.0, 0.0], &plan, None, &fresh);
    let masses: Vec<(&str, f64)> = results
        .iter()
        .map(|r| (&*r.entity_id, r.pagerank.as_ref().unwrap().mass))
        .collect();
    let expected = [
        ("exact", 4.0 / 7.0),
        ("linked", 2.0 / 7.0),
        ("far", 1.0 / 7.0),
    ];
    assert_eq!(masses.len(), 3);
    for ((id, mass), (want_id, want)) in masses.iter().zip(expected) {
        assert_eq!(*id, want_id);
        assert!((mass - want).abs() < 1e-9, "{id}: {mass} vs {want}");
    }
    assert!((results[0].score - 1.0).abs() < 1e-12);
    assert!((results[1].score - 0.5).abs() < 1e-9);
    let explained = results[2].pagerank.as_ref().unwrap();
    assert_eq!(explained.seed_shares.len(), 1);
    assert_eq!(&*explained.seed_shares[0].0, "exact");
    assert!((explained.seed_shares[0].1 - 1.0).abs() < 1e-12);
    assert!(explained.iterations > 1 && explained.iterations < 200);
    // The filter removes results, not mass: "linked" still passes mass on to "far".
    let not_linked = |id: &str| id != "linked";
    let filtered = query_at_1000(
        &vectors,
        &graph,
        &[1.0, 0.0, 0.0],
        &plan,
        Some(&not_linked),
        &fresh,
    );
    let ids: Vec<&str> = filtered.iter().map(|r| &*r.entity_id).collect();
    assert_eq!(ids, ["exact", "far"]);
    let far = filtered[1].pagerank.as_ref().unwrap().mass;
    assert!((far - 1.0 / 7.0).abs() < 1e-9);
    // Mixed with similarity: the identical "exact" scores 1 on both terms.
    let mixed = QueryPlan {
        ranking: Ranking::PersonalizedPageRank(PageRankOptions {
            similarity_weight: 0.5,
            ..options
        }),
        ..plan.clone()
    };
    let results = query_at_1000(&vectors, &graph, &[1.0, 0.0, 0.0], &mixed, None, &fresh);
    assert!((results[0].score - 1.0).abs() < 1e-9);
    let bad = QueryPlan {
        ranking: Ranking::PersonalizedPageRank(PageRankOptions {
            damping: 1.0,
            ..options
        }),
        ..plan
    };
    assert!(bad.validate().unwrap_err().to_string().contains("damping"));
}

/// The old pipeline, kept as the oracle: every candidate looked up and scored, then sorted.
fn score_every_candidate(
    vectors: &VectorIndex,
    graph: &GraphIndex,
    query: &[f32],
    plan: &QueryPlan,
    facts: &dyn Fn(&str) -> Option<EntityFacts>,
    now_micros: u64,
) -> Vec<ScoredResult> {
    let seeds = vectors
        .search(query, plan.seed_count(), plan.ef, None, None)
        .unwrap();
    let seed_ids: Vec<&str> = seeds.iter().map(|hit| &*hit.entity_id).collect();
    let reached = graph.expand(&seed_ids, &plan.traversal).unwrap();
    let ids: Vec<&str> = reached.iter().map(|r| &*r.entity_id).collect();
    let similarities = vectors.similarities(query, &ids).unwrap();
    let mut all: Vec<ScoredResult> = reached
        .iter()
        .zip(similarities)
        .filter_map(|(r, similarity)| {
            let fact = facts(&r.entity_id)?;
            let age = now_micros as i64 - fact.updated_at_micros as i64;
            let breakdown = crate::query::score(
                &plan.weights,
                vectors.options().metric,
                similarity,
                &r.path,
                fact.importance,
                age,
            );
            Some(ScoredResult {
                entity_id: r.entity_id.clone(),
                score: breakdown.total,
                breakdown,
                similarity,
                depth: r.depth,
                path: r.path.clone(),
                pagerank: None,
                lexical: None,
            })
        })
        .collect();
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
    all.truncate(plan.k);
    all
}

/// A fact table for the tests: counts lookups, and gives the table's maxima as the bound
/// when `bounded`.
struct CountingFacts {
    table: std::collections::HashMap<String, EntityFacts>,
    bounded: bool,
    lookups: std::cell::Cell<usize>,
}

impl FactSource for CountingFacts {
    fn facts(&self, entity_id: &str) -> Option<EntityFacts> {
        self.lookups.set(self.lookups.get() + 1);
        self.table.get(entity_id).copied()
    }

    fn bound(&self) -> Option<EntityFacts> {
        self.bounded.then(|| EntityFacts {
            importance: self
                .table
                .values()
                .map(|f| f.importance)
                .fold(0.0, f64::max),
            updated_at_micros: self
                .table
                .values()
                .map(|f| f.updated_at_micros)
                .max()
                .unwrap_or(0),
        })
    }
}

/// Random graphs and facts drawn from `importances` and `updates`; every query's result must
/// equal full scoring. Returns (lookups with the bounded scorer, lookups of full scoring).
fn bounded_against_full_scoring(
    importances: &[f64],
    updates: &[u64],
    bounded: bool,
) -> (usize, usize) {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let mut rng = StdRng::seed_from_u64(7);
    let vectors = VectorIndex::new(VectorIndexOptions::default()).unwrap();
    let graph = GraphIndex::new();
    let mut facts = CountingFacts {
        table: std::collections::HashMap::new(),
        bounded,
        lookups: std::cell::Cell::new(0),
    };
    let now = 100_000_000_000;
    // Few distinct vectors, weights, importances and ages: equal scores (ties broken by id)
    // are common, also at the bound itself.
    let prototypes: Vec<Vec<f32>> = (0..30)
        .map(|_| (0..8).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    for i in 0..300u64 {
        let id = format!("n{i:03}");
        let v = &prototypes[rng.random_range(0..prototypes.len())];
        vectors.upsert(&id, v, i + 1).unwrap();
        let edges: Vec<EdgeSpec> = (0..rng.random_range(2..10))
            .map(|_| EdgeSpec {
                relation: ["a", "b"][rng.random_range(0..2)].into(),
                to: format!("n{:03}", rng.random_range(0..300)),
                weight: f32::from(rng.random_range(1u8..5)) / 4.0,
            })
            .collect();
        graph.add_edges(&id, &edges, 1_000 + i).unwrap();
        // One in ten is "deleted" (unknown to the caller).
        if rng.random_range(0..10) != 0 {
            let fact = EntityFacts {
                importance: importances[rng.random_range(0..importances.len())],
                updated_at_micros: updates[rng.random_range(0..updates.len())],
            };
            facts.table.insert(id, fact);
        }
    }
    vectors.index_pending(usize::MAX);
    let (mut checked, mut looked_up, mut scored) = (0, 0, 0);
    for round in 0..60 {
        let plan = QueryPlan {
            k: [1, 3, 10, 25][round % 4],
            expand_factor: 1 + round % 3,
            traversal: TraversalOptions {
                max_hops: round % 3,
                fan_out: 8,
                ..TraversalOptions::default()
            },
            weights: ScoreWeights {
                importance: [0.2, 0.0, 5.0][round % 3],
                hop_decay: [1.0, 0.5][round % 2],
                ..ScoreWeights::default()
            },
            ..QueryPlan::default()
        };
        let query: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0..1.0)).collect();
        let lookup = |id: &str| facts.facts(id);
        let expected = score_every_candidate(&vectors, &graph, &query, &plan, &lookup, now);
        scored += facts.lookups.replace(0);
        let got = run_query(&vectors, &graph, &query, &plan, None, NO_HINT, &facts, now)
            .unwrap()
            .results;
        looked_up += facts.lookups.replace(0);
        assert_eq!(got, expected, "round {round}, plan {plan:?}");
        checked += got.len();
    }
    assert!(checked > 300, "the comparison covered results: {checked}");
    (looked_up, scored)
}

#[test]
fn bounded_fact_lookups_give_the_full_scoring_result_with_fewer_lookups() {
    let now = 100_000_000_000;
    // Importance 1000 and a future update reach the weights' bound itself.
    let extreme = ([-1.0, 0.0, 1.0, 1_000.0], [0, 50_000_000_000, now, 2 * now]);
    let moderate = ([-1.0, 0.0, 0.5], [0, 50_000_000_000, now / 2]);
    for bounded in [false, true] {
        let (looked_up, scored) = bounded_against_full_scoring(&extreme.0, &extreme.1, bounded);
        assert!(
            looked_up < scored,
            "bounded lookups {looked_up} vs full scoring {scored}"
        );
    }
    // The table's maxima prune more than the weights when no entity is at the extremes.
    let (by_weights, _) = bounded_against_full_scoring(&moderate.0, &moderate.1, false);
    let (by_table, _) = bounded_against_full_scoring(&moderate.0, &moderate.1, true);
    assert!(
        by_table < by_weights,
        "table bound {by_table} vs weights {by_weights}"
    );
}
