//! Query scoring and the storage-free part of the query planner (DESIGN.md §4).
//!
//! * [`scorer`]: the unified score and its explanation;
//! * [`planner`]: ANN seeds -> graph walk -> score every candidate -> top k;
//! * `ranking`: the pipeline's last stage, a finished walk ranked and cut to the top k (its
//!   items are re-exported by [`planner`] and here);
//! * [`pagerank`]: personalized PageRank over a walked subgraph;
//! * [`fusion`]: hybrid relevance (vector and BM25 lists fused by RRF or DBSF).

pub mod fusion;
pub mod pagerank;
pub mod planner;
mod ranking;
pub mod scorer;

pub use fusion::{FusedLists, Fusion, HybridOptions, Relevance};
pub use pagerank::PageRankOptions;
pub use planner::{
    EntityFacts, FactSource, HybridRanking, PageRankExplanation, QueryAnswer, QueryPlan, Ranked,
    Ranking, ScoredResult, Seeding, SimilaritySource, TextQuery, check_text_ranking, rank,
    run_hybrid_query, run_query,
};
pub use scorer::{ScoreBreakdown, ScoreWeights, score};
