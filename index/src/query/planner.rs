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
use crate::graph::{GraphIndex, PathStep, Reached, TraversalOptions, Walk};
use crate::lexical::{CorpusStats, LexicalHit, LexicalIndex};
use crate::query::fusion::{FusedLists, HybridOptions};
use crate::query::pagerank::PageRankOptions;
use crate::query::ranking::score_candidates;
use crate::query::scorer::{ScoreBreakdown, ScoreWeights};
use crate::telemetry;
use crate::vector::{FilterMemo, VectorIndex};

pub use crate::query::ranking::{
    HybridRanking, Ranked, SimilaritySource, check_text_ranking, rank,
};

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

#[cfg(test)]
mod tests;
