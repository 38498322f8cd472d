//! The query pipeline's last stage: a finished walk from its seeds ranked by the plan's ranking
//! (the unified score, with the relevance term in place of the vector term for a text query, or
//! personalized PageRank over the walked subgraph), keeping the best `k` that pass the filter.
//! Run by [`super::run_query`] and [`super::run_hybrid_query`], and ([`rank`]) by a ring's
//! coordinator over the walk it gathered from the owners.
//!
//! Invariants: every candidate is scored with its own similarity to the query (the search's for
//! a seed, looked up for the others), never its seed's; results are ordered by score
//! descending, ties by entity id, at most `k` of them; facts are looked up best bound first and
//! only while a candidate's bound can still reach the top k, so the result is the one full
//! scoring gives; the filter removes PageRank results, never mass. Must never: return a
//! candidate its fact source no longer knows, or touch storage.

use crate::error::{Error, Result};
use crate::graph::{Direction, Reached, Walk};
use crate::lexical::LexicalHit;
use crate::query::fusion::FusedLists;
use crate::query::pagerank::{PageRankOptions, Transition, restart_distribution};
use crate::query::planner::{FactSource, PageRankExplanation, QueryPlan, Ranking, ScoredResult};
use crate::query::scorer::{PartialScore, ScoreBreakdown, scored_importance, vector_term};
use crate::vector::{Metric, VectorHit, VectorIndex};

/// Where the ranking looks up a walked entity's own similarity to the query (seeds carry
/// theirs): the tenant's vector index on one node, what the owners sent on a ring.
pub trait SimilaritySource {
    /// The similarity of each of `entity_ids` to `query`, in order (`None`: no vector).
    fn similarities(&self, query: &[f32], entity_ids: &[&str]) -> Result<Vec<Option<f32>>>;
}

impl SimilaritySource for VectorIndex {
    fn similarities(&self, query: &[f32], entity_ids: &[&str]) -> Result<Vec<Option<f32>>> {
        VectorIndex::similarities(self, query, entity_ids)
    }
}

/// What the ranking reads besides the walk: the metric, similarities and entity facts.
pub struct Ranked<'a> {
    /// The tenant's metric (turns a similarity into a vector term).
    pub metric: Metric,
    /// Own similarities of walked entities that are not seeds.
    pub similarities: &'a dyn SimilaritySource,
    /// Entity facts (`None`: gone, the candidate is dropped).
    pub facts: &'a dyn FactSource,
}

impl std::fmt::Debug for Ranked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranked")
            .field("metric", &self.metric)
            .finish_non_exhaustive()
    }
}

/// Ranks a finished walk from `seeds` (the ANN hits, best first) by the plan's ranking and
/// keeps the best `plan.k` that pass `filter`: the last stage of
/// [`run_query`](super::run_query), also run by a ring's coordinator over the walk it gathered
/// from the owners. With `hybrid` (a text query) the relevance term takes the vector term's
/// place, as in [`run_hybrid_query`](super::run_hybrid_query).
#[allow(clippy::too_many_arguments)]
pub fn rank(
    ranked: &Ranked<'_>,
    query: &[f32],
    plan: &QueryPlan,
    seeds: &[VectorHit],
    walk: &Walk,
    filter: Option<&dyn Fn(&str) -> bool>,
    now_micros: u64,
    hybrid: Option<&HybridRanking<'_>>,
) -> Result<Vec<ScoredResult>> {
    match plan.ranking {
        Ranking::Unified => {
            let candidates: Vec<&Reached> = walk
                .reached
                .iter()
                .filter(|r| filter.is_none_or(|f| f(&r.entity_id)))
                .collect();
            score_candidates(ranked, query, plan, seeds, &candidates, now_micros, hybrid)
        }
        Ranking::PersonalizedPageRank(_) if hybrid.is_some() => Err(text_ranking_error()),
        Ranking::PersonalizedPageRank(options) => {
            rank_by_pagerank(ranked, query, plan, &options, seeds, walk, filter)
        }
    }
}

/// Refuses a ranking that cannot rank a query with a text (PageRank does not take one yet).
pub fn check_text_ranking(plan: &QueryPlan) -> Result<()> {
    match plan.ranking {
        Ranking::PersonalizedPageRank(_) => Err(text_ranking_error()),
        Ranking::Unified => Ok(()),
    }
}

fn text_ranking_error() -> Error {
    Error::invalid("ranking PAGERANK does not take a text yet: use the unified ranking with text")
}

/// Each entity's own similarity to `query`: the search's for `seeds`, looked up for the others.
fn similarities_of(
    vectors: &dyn SimilaritySource,
    query: &[f32],
    seeds: &[VectorHit],
    ids: &[&str],
) -> Result<Vec<Option<f32>>> {
    let seed_similarity: foldhash::HashMap<&str, f32> = seeds
        .iter()
        .map(|hit| (&*hit.entity_id, hit.similarity))
        .collect();
    let others: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !seed_similarity.contains_key(id))
        .collect();
    // Without walked entities (seeds only) there is nothing to look up: the query vector is
    // not prepared a second time.
    let mut looked_up = if others.is_empty() {
        Vec::new().into_iter()
    } else {
        vectors.similarities(query, &others)?.into_iter()
    };
    Ok(ids
        .iter()
        .map(|id| match seed_similarity.get(id) {
            Some(similarity) => Some(*similarity),
            None => looked_up
                .next()
                .expect("one looked-up similarity per id that is not a seed"),
        })
        .collect())
}

/// Ranks the walked nodes the caller still knows by personalized PageRank from the seeds
/// (restart weights: their vector terms), mixed with their own vector term by
/// `similarity_weight`; keeps the best `plan.k` that pass the filter.
fn rank_by_pagerank(
    ranked: &Ranked<'_>,
    query: &[f32],
    plan: &QueryPlan,
    options: &PageRankOptions,
    seeds: &[VectorHit],
    walk: &Walk,
    filter: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<ScoredResult>> {
    let facts = ranked.facts;
    let live: Vec<&Reached> = walk
        .reached
        .iter()
        .filter(|r| facts.facts(&r.entity_id).is_some())
        .collect();
    let index: foldhash::HashMap<&str, usize> = live
        .iter()
        .enumerate()
        .map(|(i, r)| (&*r.entity_id, i))
        .collect();
    let mut flows: Vec<(usize, usize, f64)> = Vec::with_capacity(walk.edges.len() * 2);
    for step in &walk.edges {
        let (Some(&from), Some(&to)) = (index.get(&*step.from), index.get(&*step.to)) else {
            continue;
        };
        let weight = f64::from(step.weight);
        flows.push((from, to, weight));
        if plan.traversal.direction == Direction::Both && from != to {
            flows.push((to, from, weight));
        }
    }
    let metric = ranked.metric;
    let seed_nodes: Vec<(usize, f64)> = seeds
        .iter()
        .filter_map(|hit| {
            let node = *index.get(&*hit.entity_id)?;
            Some((node, vector_term(metric, Some(hit.similarity))))
        })
        .collect();
    if seed_nodes.is_empty() {
        return Ok(Vec::new());
    }
    let restart = restart_distribution(live.len(), &seed_nodes);
    let transition = Transition::new(live.len(), &flows);
    let pagerank = transition.pagerank(&restart, options);
    tracing::debug!(
        nodes = live.len(),
        edges = flows.len(),
        iterations = pagerank.iterations,
        "personalized PageRank done"
    );
    let columns = if plan.explain {
        let nodes: Vec<usize> = seed_nodes.iter().map(|(node, _)| *node).collect();
        transition.seed_columns(&restart, &nodes, pagerank.iterations, options.damping)
    } else {
        Vec::new()
    };
    let most = pagerank.mass.iter().copied().fold(0.0, f64::max);
    let candidates: Vec<(usize, &Reached)> = live
        .iter()
        .enumerate()
        .filter(|(_, r)| filter.is_none_or(|f| f(&r.entity_id)))
        .map(|(i, r)| (i, *r))
        .collect();
    let ids: Vec<&str> = candidates.iter().map(|(_, r)| &*r.entity_id).collect();
    let similarities = similarities_of(ranked.similarities, query, seeds, &ids)?;
    let lambda = options.similarity_weight;
    let mut results: Vec<ScoredResult> = candidates
        .into_iter()
        .zip(similarities)
        .map(|((node, reached), similarity)| {
            let mass = pagerank.mass[node];
            let vector = lambda * vector_term(metric, similarity);
            let graph = if most > 0.0 {
                (1.0 - lambda) * (mass / most)
            } else {
                0.0
            };
            let column_total: f64 = columns.iter().map(|c| c[node]).sum();
            let seed_shares = seed_nodes
                .iter()
                .zip(&columns)
                .map(|((seed, _), column)| {
                    let share = if column_total > 0.0 {
                        column[node] / column_total
                    } else {
                        0.0
                    };
                    (live[*seed].entity_id.clone(), share)
                })
                .collect();
            ScoredResult {
                entity_id: reached.entity_id.clone(),
                score: vector + graph,
                breakdown: ScoreBreakdown {
                    vector,
                    lexical: 0.0,
                    graph,
                    importance: 0.0,
                    recency: 0.0,
                    total: vector + graph,
                },
                similarity,
                depth: reached.depth,
                path: reached.path.clone(),
                pagerank: Some(PageRankExplanation {
                    mass,
                    iterations: pagerank.iterations,
                    seed_shares,
                }),
                lexical: None,
            }
        })
        .collect();
    results.sort_by(result_order);
    results.truncate(plan.k);
    Ok(results)
}

/// What a text (or hybrid) query ranks with besides the vector: the fused lists and each
/// candidate's BM25 score.
pub struct HybridRanking<'a> {
    /// The query's vector and lexical lists.
    pub lists: &'a FusedLists,
    /// The BM25 score and matched terms of any entity (`None`: it holds no query term).
    pub lexical: &'a dyn Fn(&str) -> Option<LexicalHit>,
}

impl std::fmt::Debug for HybridRanking<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridRanking")
            .field("lists", &self.lists)
            .finish_non_exhaustive()
    }
}

/// Scores `candidates` (with their own similarity to `query`: the search's for `seeds`, looked
/// up for the others; none without a query vector) and keeps the best `plan.k`. With
/// `hybrid`, the relevance term (vector and lexical parts) takes the vector term's place.
pub(super) fn score_candidates(
    ranked: &Ranked<'_>,
    query: &[f32],
    plan: &QueryPlan,
    seeds: &[VectorHit],
    candidates: &[&Reached],
    now_micros: u64,
    hybrid: Option<&HybridRanking<'_>>,
) -> Result<Vec<ScoredResult>> {
    let facts = ranked.facts;
    let ids: Vec<&str> = candidates.iter().map(|r| &*r.entity_id).collect();
    let similarities = if query.is_empty() {
        vec![None; ids.len()]
    } else {
        similarities_of(ranked.similarities, query, seeds, &ids)?
    };
    let lexical: Vec<Option<LexicalHit>> = match hybrid {
        Some(h) => ids.iter().map(|id| (h.lexical)(id)).collect(),
        None => vec![None; ids.len()],
    };
    let metric = ranked.metric;
    let now = i64::try_from(now_micros).unwrap_or(i64::MAX);
    let age = |updated_at_micros: u64| now - i64::try_from(updated_at_micros).unwrap_or(i64::MAX);
    let most = facts.bound().map(|bound| {
        (
            scored_importance(bound.importance),
            age(bound.updated_at_micros),
        )
    });
    type Bounded<'r> = (
        f64,
        PartialScore,
        &'r Reached,
        Option<f32>,
        Option<LexicalHit>,
    );
    let mut bounded: Vec<Bounded<'_>> = candidates
        .iter()
        .copied()
        .zip(similarities)
        .zip(lexical)
        .map(|((reached, similarity), lexical)| {
            let partial = match hybrid {
                Some(h) => {
                    let bm25 = lexical.as_ref().map(|l| l.score);
                    let relevance = h.lists.relevance(&reached.entity_id, similarity, bm25);
                    PartialScore::with_relevance(&plan.weights, relevance, &reached.path)
                }
                None => PartialScore::new(&plan.weights, metric, similarity, &reached.path),
            };
            (
                partial.upper_bound(&plan.weights, most),
                partial,
                reached,
                similarity,
                lexical,
            )
        })
        .collect();
    bounded.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut results: Vec<ScoredResult> = Vec::with_capacity(plan.k.min(bounded.len()) + 1);
    for (upper_bound, partial, reached, similarity, lexical) in bounded {
        // Candidates come in descending bound order: once the k-th result beats a bound
        // strictly, no later candidate can enter the top k (a tie could, on its id).
        if results.len() == plan.k && results.last().is_some_and(|kth| upper_bound < kth.score) {
            break;
        }
        let Some(fact) = facts.facts(&reached.entity_id) else {
            continue;
        };
        let breakdown =
            partial.complete(&plan.weights, fact.importance, age(fact.updated_at_micros));
        // Where the result goes in `result_order`; built only if it makes the top k.
        let position = results.partition_point(|r| {
            breakdown
                .total
                .total_cmp(&r.score)
                .then_with(|| r.entity_id.cmp(&reached.entity_id))
                .is_lt()
        });
        if position < plan.k {
            let result = ScoredResult {
                entity_id: reached.entity_id.clone(),
                score: breakdown.total,
                breakdown,
                similarity,
                depth: reached.depth,
                path: reached.path.clone(),
                pagerank: None,
                lexical,
            };
            results.insert(position, result);
            results.truncate(plan.k);
        }
    }
    tracing::debug!(results = results.len(), "scoring done");
    Ok(results)
}

/// Result order: score descending, ties by entity id (ids are unique among candidates).
fn result_order(a: &ScoredResult, b: &ScoredResult) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.entity_id.cmp(&b.entity_id))
}
