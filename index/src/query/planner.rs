//! The storage-free query pipeline: ANN seeds -> bounded graph expansion -> unified score ->
//! top k (DESIGN.md §4).
//!
//! Invariants: the filter is applied before the top k is taken (to seeds and to expanded
//! nodes alike); every candidate is scored with its own similarity to the query, never its
//! seed's; results are ordered by score descending, ties by entity id, at most `k` of them.
//! Entity facts (importance, `updated_at`) come from the caller, so this module never touches
//! storage; a candidate the caller no longer knows (deleted meanwhile) is dropped.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{GraphIndex, PathStep, Reached, TraversalOptions};
use crate::query::scorer::{ScoreBreakdown, ScoreWeights, score};
use crate::telemetry;
use crate::vector::VectorIndex;

/// Per-request parameters of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPlan {
    /// Results wanted (>= 1).
    pub k: usize,
    /// Seeds = `k * expand_factor` (>= 1) ...
    pub expand_factor: usize,
    /// ... capped by this (>= 1).
    pub max_candidates: usize,
    /// HNSW candidate list size (`None`: the index default).
    pub ef: Option<usize>,
    /// Graph expansion limits (`max_hops = 0` disables expansion).
    pub traversal: TraversalOptions,
    /// Score weights and hop decay.
    pub weights: ScoreWeights,
}

impl Default for QueryPlan {
    fn default() -> Self {
        Self {
            k: 10,
            expand_factor: 2,
            max_candidates: 1_000,
            ef: None,
            traversal: TraversalOptions::default(),
            weights: ScoreWeights::default(),
        }
    }
}

impl QueryPlan {
    /// Checks every parameter, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("k", self.k),
            ("expand_factor", self.expand_factor),
            ("max_candidates", self.max_candidates),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!("{name} must be at least 1")));
            }
        }
        self.traversal.validate()?;
        self.weights.validate()
    }

    /// Number of ANN seeds: `k * expand_factor`, capped by `max_candidates`.
    pub fn seed_count(&self) -> usize {
        self.k
            .saturating_mul(self.expand_factor)
            .min(self.max_candidates)
    }
}

/// What the scorer needs to know about an entity besides its vector and path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntityFacts {
    /// Client-given importance (the sigmoid's input).
    pub importance: f64,
    /// Last update time, microseconds since the Unix epoch.
    pub updated_at_micros: u64,
}

/// One ranked result with its explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredResult {
    /// The entity.
    pub entity_id: Arc<str>,
    /// The unified score (`breakdown.total`).
    pub score: f64,
    /// Its components.
    pub breakdown: ScoreBreakdown,
    /// The entity's own similarity to the query (`None`: it has no vector).
    pub similarity: Option<f32>,
    /// Hops from its seed.
    pub depth: usize,
    /// Edges from the seed (empty for a seed).
    pub path: Vec<PathStep>,
}

/// Runs the pipeline. `facts` looks an entity up (`None`: gone); `now_micros` is query time.
#[allow(clippy::too_many_arguments)]
pub fn run_query(
    vectors: &VectorIndex,
    graph: &GraphIndex,
    query: &[f32],
    plan: &QueryPlan,
    filter: Option<&dyn Fn(&str) -> bool>,
    allowed_hint: Option<usize>,
    facts: &dyn Fn(&str) -> Option<EntityFacts>,
    now_micros: u64,
) -> Result<Vec<ScoredResult>> {
    plan.validate()?;
    let seeds = telemetry::query_stage(telemetry::STAGE_ANN_SEARCH, || {
        let seeds = vectors.search(query, plan.seed_count(), plan.ef, filter, allowed_hint);
        if let Ok(seeds) = &seeds {
            tracing::debug!(seeds = seeds.len(), "ANN search done");
        }
        seeds
    })?;
    let seed_ids: Vec<&str> = seeds.iter().map(|hit| &*hit.entity_id).collect();
    let candidates: Vec<_> = telemetry::query_stage(telemetry::STAGE_EXPANSION, || {
        let reached = graph.expand(&seed_ids, &plan.traversal)?;
        let candidates: Vec<_> = reached
            .into_iter()
            .filter(|r| filter.is_none_or(|f| f(&r.entity_id)))
            .collect();
        tracing::debug!(candidates = candidates.len(), "graph expansion done");
        Ok::<_, Error>(candidates)
    })?;
    telemetry::query_stage(telemetry::STAGE_SCORING, || {
        score_candidates(vectors, query, plan, &candidates, facts, now_micros)
    })
}

/// Scores `candidates` (with their own similarity to `query`) and keeps the best `plan.k`.
fn score_candidates(
    vectors: &VectorIndex,
    query: &[f32],
    plan: &QueryPlan,
    candidates: &[Reached],
    facts: &dyn Fn(&str) -> Option<EntityFacts>,
    now_micros: u64,
) -> Result<Vec<ScoredResult>> {
    let candidate_ids: Vec<&str> = candidates.iter().map(|r| &*r.entity_id).collect();
    let similarities = vectors.similarities(query, &candidate_ids)?;
    let metric = vectors.options().metric;
    let mut results: Vec<ScoredResult> = candidates
        .iter()
        .zip(similarities)
        .filter_map(|(reached, similarity)| {
            let fact = facts(&reached.entity_id)?;
            let age = i64::try_from(now_micros).unwrap_or(i64::MAX)
                - i64::try_from(fact.updated_at_micros).unwrap_or(i64::MAX);
            let breakdown = score(
                &plan.weights,
                metric,
                similarity,
                &reached.path,
                fact.importance,
                age,
            );
            Some(ScoredResult {
                entity_id: reached.entity_id.clone(),
                score: breakdown.total,
                breakdown,
                similarity,
                depth: reached.depth,
                path: reached.path.clone(),
            })
        })
        .collect();
    results.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
    results.truncate(plan.k);
    tracing::debug!(results = results.len(), "scoring done");
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::EdgeSpec;
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
        let results = run_query(
            &vectors,
            &graph,
            &[2.0, 0.0, 0.0],
            &plan,
            None,
            None,
            &fresh,
            1_000,
        )
        .unwrap();
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
        let results = run_query(
            &vectors,
            &graph,
            &[1.0, 0.0, 0.0],
            &plan,
            None,
            None,
            &fresh,
            1_000,
        )
        .unwrap();
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
        let results = run_query(
            &vectors,
            &graph,
            &[1.0, 0.0, 0.0],
            &plan,
            Some(&not_exact),
            None,
            &fresh,
            1_000,
        )
        .unwrap();
        // "linked" is only a seed now (its link came from "exact"); it ties with "far": id order.
        assert_eq!(
            results.iter().map(|r| &*r.entity_id).collect::<Vec<_>>(),
            ["near", "far"]
        );
        let gone = |id: &str| if id == "near" { None } else { fresh(id) };
        let results = run_query(
            &vectors,
            &graph,
            &[1.0, 0.0, 0.0],
            &plan,
            None,
            None,
            &gone,
            1_000,
        )
        .unwrap();
        assert!(results.iter().all(|r| &*r.entity_id != "near"));
        assert!(run_query(&vectors, &graph, &[1.0, 0.0], &plan, None, None, &fresh, 0).is_err());
        assert!(
            QueryPlan {
                k: 0,
                ..QueryPlan::default()
            }
            .validate()
            .is_err()
        );
    }
}
