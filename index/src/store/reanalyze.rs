//! The lexical indexes the open left empty because their dump was analyzed by another analyzer
//! than the one now configured for their tenant, or made while their lexical index was off
//! and it is on now (`persist::Loaded::reanalyze`), analyzed again
//! from storage, so a tenant's index never mixes the terms of two analyzers.
//!
//! Invariant: runs once, in the open, after a catch-up from the WAL and before the store
//! serves; each document it writes is the tenant's stored body analyzed by the tenant's
//! configured analyzer. Must never: run after a full rebuild (that analyzed everything with
//! the configured analyzers already).

use std::time::Instant;

use super::{IndexRecovery, UnifiedStore};
use crate::error::Result;

impl UnifiedStore {
    /// Analyzes every stored text document of each of `tenants` into its lexical index, when
    /// `recovery` loaded the dump (see the module documentation).
    pub(super) fn reanalyze(&self, recovery: &IndexRecovery, tenants: &[String]) -> Result<()> {
        if !matches!(recovery, IndexRecovery::CaughtUp { .. }) {
            return Ok(());
        }
        for tenant in tenants {
            let Some(state) = self.indexes.tenant(tenant) else {
                continue;
            };
            let start = Instant::now();
            let mut entities = 0usize;
            for entity in self.engine.scan(tenant, None, None)? {
                let entity = entity?;
                state
                    .indexes
                    .lexical
                    .upsert_body(&entity.id, &entity.body, entity.version_ts);
                entities += 1;
            }
            tracing::info!(%tenant, entities, elapsed = ?start.elapsed(),
                "lexical index rebuilt from storage with the configured analyzer");
        }
        Ok(())
    }
}
