//! The storage-free query pipeline: ANN seeds -> bounded graph walk -> unified score or
//! personalized PageRank -> top k (DESIGN.md §4, docs/index.md).
//!
//! Invariants: the filter is applied before the top k is taken (to seeds and to expanded
//! nodes alike); every candidate is scored with its own similarity to the query, never its
//! seed's; results are ordered by score descending, ties by entity id, at most `k` of them.
//! Entity facts (importance, `updated_at`) come from the caller, so this module never touches
//! storage; a candidate the caller no longer knows (deleted meanwhile) is dropped. Facts are
//! looked up best bound first and only while a candidate's exact score bound
//! ([`PartialScore::upper_bound`]) can still reach the top k, so the result is the one full
//! scoring would give, without a lookup per expanded node. The PageRank ranking runs over the
//! walked nodes the caller still knows and the walk's edges between them; the filter does not
//! prune the walk (mass flows through nodes it rejects), it only removes results.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Direction, GraphIndex, PathStep, Reached, TraversalOptions, Walk};
use crate::lexical::{CorpusStats, LexicalHit, LexicalIndex};
use crate::query::fusion::{FusedLists, HybridOptions};
use crate::query::pagerank::{PageRankOptions, Transition, restart_distribution};
use crate::query::scorer::{
    PartialScore, ScoreBreakdown, ScoreWeights, scored_importance, vector_term,
};
use crate::telemetry;
use crate::vector::{FilterMemo, Metric, VectorHit, VectorIndex};

/// Per-request parameters of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPlan {
    /// Results wanted (>= 1).
    pub k: usize,
    /// Seeds = `k * expand_factor` (>= 1) unless `seeds` is given ...
    pub expand_factor: usize,
    /// ... ANN seeds asked for apart from `k` (1..=`max_candidates`) ...
    pub seeds: Option<usize>,
    /// ... capped by this (>= 1).
    pub max_candidates: usize,
    /// HNSW candidate list size (`None`: the index default).
    pub ef: Option<usize>,
    /// Graph expansion limits (`max_hops = 0` disables expansion).
    pub traversal: TraversalOptions,
    /// Score weights and hop decay (the unified ranking).
    pub weights: ScoreWeights,
    /// How candidates are ranked.
    pub ranking: Ranking,
    /// Return the walk with the results (the query context).
    pub keep_walk: bool,
    /// Report each PageRank result's share per seed (one more iteration run per seed).
    pub explain: bool,
}

/// How a query ranks its candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Ranking {
    /// The unified score ([`crate::query::score`]).
    #[default]
    Unified,
    /// Personalized PageRank from the seeds over the walked subgraph.
    PersonalizedPageRank(PageRankOptions),
}

impl Default for QueryPlan {
    fn default() -> Self {
        Self {
            k: 10,
            expand_factor: 2,
            seeds: None,
            max_candidates: 1_000,
            ef: None,
            traversal: TraversalOptions::default(),
            weights: ScoreWeights::default(),
            ranking: Ranking::Unified,
            keep_walk: false,
            explain: false,
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
        if let Some(seeds) = self.seeds
            && !(1..=self.max_candidates).contains(&seeds)
        {
            return Err(Error::invalid(format!(
                "seeds must be 1..={}, got {seeds}",
                self.max_candidates
            )));
        }
        if let Ranking::PersonalizedPageRank(options) = &self.ranking {
            options.validate()?;
        }
        self.traversal.validate()?;
        self.weights.validate()
    }

    /// Number of ANN seeds: `seeds` when given, else `k * expand_factor` capped by
    /// `max_candidates`.
    pub fn seed_count(&self) -> usize {
        self.seeds.unwrap_or_else(|| {
            self.k
                .saturating_mul(self.expand_factor)
                .min(self.max_candidates)
        })
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

/// Where the scorer gets entity facts from. Any `Fn(&str) -> Option<EntityFacts>` is one (with
/// no bound).
pub trait FactSource {
    /// One entity's facts (`None`: gone).
    fn facts(&self, entity_id: &str) -> Option<EntityFacts>;
    /// Facts no entity exceeds, if known: an importance none is above and an update time none
    /// is after. The scorer then stops looking candidates up as soon as the best possible
    /// completion of the next one cannot reach the top k; `None` bounds the importance and
    /// recency terms by their weights.
    fn bound(&self) -> Option<EntityFacts> {
        None
    }
}

impl<F: Fn(&str) -> Option<EntityFacts>> FactSource for F {
    fn facts(&self, entity_id: &str) -> Option<EntityFacts> {
        self(entity_id)
    }
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
    /// How the PageRank ranking reached the score (`None` under the unified score).
    pub pagerank: Option<PageRankExplanation>,
    /// The entity's BM25 score and matched query terms (`None`: the query has no text, or
    /// the entity holds none of its terms).
    pub lexical: Option<LexicalHit>,
}

/// A PageRank result's mass and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRankExplanation {
    /// The node's PageRank mass (all walked nodes' masses sum to 1).
    pub mass: f64,
    /// Power iterations run.
    pub iterations: usize,
    /// `(seed, share)`: the fraction of the mass that restarted at each seed, seeds in ANN
    /// order, when the plan asked to explain (else empty).
    pub seed_shares: Vec<(Arc<str>, f64)>,
}

/// What a query found: the ranked results and, when the plan keeps it, the walk.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryAnswer {
    /// At most `k` results, best first.
    pub results: Vec<ScoredResult>,
    /// The walk from the seeds (unfiltered: the caller removes what it must not return).
    pub walk: Option<Walk>,
}

/// How the seeds of a query are searched (the store's filter planner decides).
#[derive(Clone, Copy, Debug)]
pub enum Seeding<'a> {
    /// The vector index searches, `filter` applied; the hint (how many entities pass, when
    /// known) lets it scan exactly when that is small.
    Search(Option<usize>),
    /// Exactly these entities pass: they are ranked exactly.
    Among(&'a [&'a str]),
    /// Like `Search`, remembering the filter's answers in the memo (valid for this filter while
    /// the facts it reads do not change; the store keys it).
    SearchMemo(Option<usize>, &'a FilterMemo),
}

/// Runs the pipeline. `facts` looks an entity up (`None`: gone); `now_micros` is query time.
#[allow(clippy::too_many_arguments)]
pub fn run_query(
    vectors: &VectorIndex,
    graph: &GraphIndex,
    query: &[f32],
    plan: &QueryPlan,
    filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
    seeding: Seeding<'_>,
    facts: &dyn FactSource,
    now_micros: u64,
) -> Result<QueryAnswer> {
    plan.validate()?;
    let seeds = telemetry::query_stage(telemetry::STAGE_ANN_SEARCH, || {
        let seeds = match seeding {
            Seeding::Search(hint) => {
                vectors.search(query, plan.seed_count(), plan.ef, filter, hint)
            }
            Seeding::Among(ids) => vectors.search_among(query, plan.seed_count(), ids),
            Seeding::SearchMemo(hint, memo) => {
                vectors.search_memo(query, plan.seed_count(), plan.ef, filter, hint, Some(memo))
            }
        };
        if let Ok(seeds) = &seeds {
            tracing::debug!(seeds = seeds.len(), "ANN search done");
        }
        seeds
    })?;
    let seed_ids: Vec<&str> = seeds.iter().map(|hit| &*hit.entity_id).collect();
    let walk = telemetry::query_stage(telemetry::STAGE_EXPANSION, || {
        let walk = graph.walk(&seed_ids, &plan.traversal)?;
        tracing::debug!(
            nodes = walk.reached.len(),
            edges = walk.edges.len(),
            "graph walk done"
        );
        Ok::<_, Error>(walk)
    })?;
    let results = telemetry::query_stage(telemetry::STAGE_SCORING, || {
        let ranked = Ranked {
            metric: vectors.options().metric,
            similarities: vectors,
            facts,
        };
        let filter = filter.map(|f| f as &dyn Fn(&str) -> bool);
        rank(
            &ranked, query, plan, &seeds, &walk, filter, now_micros, None,
        )
    })?;
    Ok(QueryAnswer {
        results,
        walk: plan.keep_walk.then_some(walk),
    })
}

/// A query's text: its analyzed terms, the tenant's lexical index and how to fuse.
#[derive(Debug)]
pub struct TextQuery<'a> {
    /// The tenant's BM25 index.
    pub lexical: &'a LexicalIndex,
    /// The analyzed query terms (not empty).
    pub terms: &'a [String],
    /// Fusion and lexical weight (used when the query also has a vector).
    pub options: HybridOptions,
    /// The corpus statistics BM25 scores with (`None`: the lexical index's own).
    pub corpus: Option<&'a CorpusStats>,
}

/// [`run_query`] for a query with a text, with or without a vector (`query` empty: text
/// only): the seeds are the fused vector and lexical lists (module [`crate::query::fusion`]),
/// then the same walk, and the unified score with the relevance term in place of the vector
/// term. The filter applies to both lists. The PageRank ranking does not take a text.
#[allow(clippy::too_many_arguments)]
pub fn run_hybrid_query(
    vectors: &VectorIndex,
    graph: &GraphIndex,
    query: &[f32],
    text: &TextQuery<'_>,
    plan: &QueryPlan,
    filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
    seeding: Seeding<'_>,
    facts: &dyn FactSource,
    now_micros: u64,
) -> Result<QueryAnswer> {
    plan.validate()?;
    text.options.validate()?;
    check_text_ranking(plan)?;
    let n = plan.seed_count();
    let vector_hits = if query.is_empty() {
        Vec::new()
    } else {
        telemetry::query_stage(telemetry::STAGE_ANN_SEARCH, || match seeding {
            Seeding::Search(hint) => vectors.search(query, n, plan.ef, filter, hint),
            Seeding::Among(ids) => vectors.search_among(query, n, ids),
            Seeding::SearchMemo(hint, memo) => {
                vectors.search_memo(query, n, plan.ef, filter, hint, Some(memo))
            }
        })?
    };
    let lexical_hits = telemetry::query_stage(telemetry::STAGE_LEXICAL_SEARCH, || {
        let allows = filter.map(|f| f as &dyn Fn(&str) -> bool);
        text.lexical.search(text.terms, n, allows, text.corpus)
    });
    let lists = FusedLists::new(
        vectors.options().metric,
        text.options,
        (!query.is_empty()).then_some(&vector_hits[..]),
        Some(&lexical_hits),
    );
    let seeds = lists.seeds(&vector_hits, &lexical_hits, n);
    tracing::debug!(
        vector = vector_hits.len(),
        lexical = lexical_hits.len(),
        seeds = seeds.len(),
        "hybrid seeds fused"
    );
    let seed_ids: Vec<&str> = seeds.iter().map(|(id, _)| &**id).collect();
    let walk = telemetry::query_stage(telemetry::STAGE_EXPANSION, || {
        graph.walk(&seed_ids, &plan.traversal)
    })?;
    let listed: foldhash::HashMap<&str, &LexicalHit> = lexical_hits
        .iter()
        .map(|hit| (&*hit.entity_id, hit))
        .collect();
    let lexical_of = |id: &str| -> Option<LexicalHit> {
        match listed.get(id) {
            Some(hit) => Some((*hit).clone()),
            None => text.lexical.score_of(text.terms, id, text.corpus),
        }
    };
    let results = telemetry::query_stage(telemetry::STAGE_SCORING, || {
        let ranked = Ranked {
            metric: vectors.options().metric,
            similarities: vectors,
            facts,
        };
        let candidates: Vec<&Reached> = walk
            .reached
            .iter()
            .filter(|r| filter.is_none_or(|f| f(&r.entity_id)))
            .collect();
        let hybrid = HybridRanking {
            lists: &lists,
            lexical: &lexical_of,
        };
        score_candidates(
            &ranked,
            query,
            plan,
            &vector_hits,
            &candidates,
            now_micros,
            Some(&hybrid),
        )
    })?;
    Ok(QueryAnswer {
        results,
        walk: plan.keep_walk.then_some(walk),
    })
}

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
/// keeps the best `plan.k` that pass `filter`: the last stage of [`run_query`], also run by a
/// ring's coordinator over the walk it gathered from the owners. With `hybrid` (a text query)
/// the relevance term takes the vector term's place, as in [`run_hybrid_query`].
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
fn score_candidates(
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

#[cfg(test)]
mod tests {
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
}
