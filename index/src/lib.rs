//! Node-local unified store: vector index, graph index, query executor (DESIGN.md §4).
//!
//! Module map:
//! * [`filter`]: filter expressions, typed attribute checks and the payload index;
//! * [`vector`]: per-tenant ANN index (HNSW behind our own engine trait) with updates, deletes,
//!   a freshness tail and filtered search;
//! * [`graph`]: per-tenant adjacency and bounded breadth-first expansion;
//! * [`lexical`]: per-tenant BM25 index over chunk texts (analyzer, inverted index, search);
//! * [`query`]: the unified scorer and the storage-free parts of the query planner;
//! * [`store`]: the unified store — the storage engine plus every tenant's indexes, kept in step;
//! * [`telemetry`]: query stage latencies and rebuild counts (metrics).

pub mod error;
pub mod filter;
pub mod graph;
pub mod lexical;
pub mod query;
pub mod store;
pub mod telemetry;
pub mod vector;

pub use error::{Error, Result};
pub use store::{
    Closed, DumpHold, Filter, PlanReport, QueryContext, QueryHit, QueryReply, QueryRequest,
    StoreOptions, TenantDropped, TenantStats, TraverseHit, UnifiedStore,
};
