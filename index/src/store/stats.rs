//! What this node holds, for the admin API and metrics: each tenant's live entities, live
//! vectors, dimension, metric and bytes (of all its entities, or of those a ring's coordinator
//! selects), the indexes' sizes, and what the indexes could not take (failed commits, refused
//! vectors).
//!
//! Invariants: counts come from the in-memory indexes, bytes from a scan of the tenant's
//! cells; tenants are listed in tenant order. Must never: change an index or the engine.

use std::sync::atomic::Ordering;

use super::{TenantState, UnifiedStore};
use crate::error::Result;
use crate::vector::Metric;

/// What this node holds of one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantStats {
    /// The tenant id.
    pub tenant: String,
    /// Live entities.
    pub entities: usize,
    /// Live vectors (entities with an embedding).
    pub vectors: usize,
    /// The dimension its vectors have (`None`: not fixed, no vector yet).
    pub dimension: Option<usize>,
    /// The similarity metric of its vector index.
    pub metric: Metric,
    /// Bytes of its live cells (keys and values, before compression).
    pub bytes: u64,
}

impl UnifiedStore {
    /// What this node holds of every tenant with indexes, in tenant order. Counts come from the
    /// indexes; `bytes` from one scan of each tenant's cells.
    pub fn tenants(&self) -> Result<Vec<TenantStats>> {
        self.indexes
            .all()
            .into_iter()
            .map(|(name, state)| self.stats_of(name, &state))
            .collect()
    }

    /// What this node holds of `tenant` (`None`: nothing).
    pub fn tenant_stats(&self, tenant: &str) -> Result<Option<TenantStats>> {
        allidb_storage::key::validate_tenant(tenant)?;
        self.indexes
            .tenant(tenant)
            .map(|state| self.stats_of(tenant.to_owned(), &state))
            .transpose()
    }

    /// What this node holds of every tenant with indexes (of `tenant` only, when given), in
    /// tenant order, counting only the entities `keep(tenant, entity_id)` selects: their live
    /// entities, live vectors and the bytes of their live cells (a ring's coordinator counts
    /// each token range once this way, `keep` selecting the ranges it asked this node for). A
    /// tenant is listed even when `keep` selects none of its entities.
    pub fn tenants_where(
        &self,
        tenant: Option<&str>,
        keep: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Vec<TenantStats>> {
        if let Some(tenant) = tenant {
            allidb_storage::key::validate_tenant(tenant)?;
        }
        self.indexes
            .all()
            .into_iter()
            .filter(|(name, _)| tenant.is_none_or(|t| t == name))
            .map(|(name, state)| {
                let kept = |id: &str| keep(&name, id);
                let entities = state
                    .indexes
                    .facts
                    .read()
                    .iter()
                    .filter(|(id, _)| kept(id))
                    .count();
                let mut bytes = 0u64;
                for partition in self.engine.partitions(Some(&name))? {
                    let partition = partition?;
                    if kept(&partition.entity_id) {
                        bytes += allidb_storage::partition::live_bytes(&partition.cells);
                    }
                }
                Ok(TenantStats {
                    entities,
                    vectors: state.indexes.vectors.count_where(&kept),
                    dimension: state.dimension(),
                    metric: self.options.vectors.metric,
                    bytes,
                    tenant: name.clone(),
                })
            })
            .collect()
    }

    fn stats_of(&self, tenant: String, state: &TenantState) -> Result<TenantStats> {
        let bytes = self.engine.tenant_bytes(&tenant)?;
        Ok(TenantStats {
            entities: state.indexes.facts.read().len(),
            vectors: state.indexes.vectors.len(),
            dimension: state.dimension(),
            metric: self.options.vectors.metric,
            bytes,
            tenant,
        })
    }

    /// Number of committed batches whose indexing failed since start.
    pub fn index_apply_errors(&self) -> u64 {
        self.indexes.apply_errors.load(Ordering::Relaxed)
    }

    /// Entities, over every tenant, whose stored vector the index refused (its dimension
    /// differs from its tenant's index: replicas that diverged), for metrics.
    pub fn unindexed_vectors(&self) -> usize {
        self.indexes
            .all()
            .iter()
            .map(|(_, s)| s.indexes.unindexed_len())
            .sum()
    }

    /// Per-tenant vector count, pending tail and stale ratio (for metrics).
    pub fn index_sizes(&self) -> Vec<(String, usize, usize, f64)> {
        self.indexes
            .all()
            .into_iter()
            .map(|(t, s)| {
                (
                    t,
                    s.indexes.vectors.len(),
                    s.indexes.vectors.pending_len(),
                    s.indexes.vectors.stale_ratio(),
                )
            })
            .collect()
    }
}
