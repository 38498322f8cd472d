//! Query scoring and the storage-free part of the query planner (DESIGN.md §4).
//!
//! * [`scorer`]: the unified score and its explanation;
//! * [`planner`]: ANN seeds -> graph expansion -> score every candidate -> top k.

pub mod planner;
pub mod scorer;

pub use planner::{EntityFacts, FactSource, QueryPlan, ScoredResult, run_query};
pub use scorer::{ScoreBreakdown, ScoreWeights, score};
