//! Query scoring and the storage-free part of the query planner (DESIGN.md §4).
//!
//! * [`scorer`]: the unified score and its explanation;
//! * [`planner`]: ANN seeds -> graph walk -> score every candidate -> top k;
//! * [`pagerank`]: personalized PageRank over a walked subgraph.

pub mod pagerank;
pub mod planner;
pub mod scorer;

pub use pagerank::PageRankOptions;
pub use planner::{
    EntityFacts, FactSource, PageRankExplanation, QueryAnswer, QueryPlan, Ranked, Ranking,
    ScoredResult, Seeding, SimilaritySource, rank, run_query,
};
pub use scorer::{ScoreBreakdown, ScoreWeights, score};
