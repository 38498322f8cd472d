//! The per-tenant vector index (DESIGN.md §4): metrics, the ANN engine seam, two engines
//! (`flat_hnsw`, the default, and `hnsw`, wrapping `hnsw_rs`) and [`VectorIndex`], which adds ids, updates, deletes, a freshness tail, filtered
//! search and background rebuilds on top of an engine.

pub mod engine;
pub mod flat_hnsw;
pub mod hnsw;
pub mod metric;
pub mod tenant_index;

pub use engine::{AnnEngine, AnnEngineFactory, EngineParams};
pub use flat_hnsw::FlatHnswFactory;
pub use hnsw::HnswFactory;
pub use metric::Metric;
pub use tenant_index::{FilterMemo, Rebuild, VectorHit, VectorIndex, VectorIndexOptions};
