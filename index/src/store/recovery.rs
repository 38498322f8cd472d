//! How the open brings the indexes up to the engine: the loaded dump caught up from the
//! engine's retained WAL (`changes_since`), or, without a usable dump or when the WAL no longer
//! reaches back to it, every tenant's indexes rebuilt from storage; and one tenant's indexes
//! built from its stored entities (for a tenant a loaded dump may hold dropped cells of, and
//! for a tenant drop that keeps newer writes).
//!
//! Invariants: the engine's tenant drops are installed before anything is indexed; a tenant
//! dropped at or after what the loaded dump covers is rebuilt from storage, not caught up; a
//! catch-up or rebuild ends with `applied_seq` at what it read. Must never: fail the open
//! because the WAL no longer reaches the dump (that is a rebuild, logged).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use allidb_storage::SeqNo;
use allidb_storage::cell::Entity;
use allidb_storage::partition::PartitionState;
use rayon::prelude::*;

use super::{TenantIndexes, TenantState, UnifiedStore};
use crate::error::Result;

/// How [`UnifiedStore::open`] brought the indexes up to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexRecovery {
    /// Loaded from the dump covering writes up to `covered`, then caught up from the retained
    /// WAL with `entities` changed entities (up to `upto`).
    CaughtUp {
        /// What the dump covered.
        covered: SeqNo,
        /// The engine's last sequence number after the catch-up.
        upto: SeqNo,
        /// Entities re-read from the engine.
        entities: usize,
    },
    /// Rebuilt from every stored entity (no usable dump, or the WAL no longer reached it).
    Rebuilt {
        /// Entities indexed.
        entities: usize,
    },
}

/// Partitions the restart catch-up reads at once (in parallel) before indexing them.
const CATCH_UP_CHUNK: usize = 1024;

/// The partition state of a stored live entity (what a rebuild indexes; the body's own
/// timestamp, which the read model does not carry and the indexes do not use, stays 0).
fn stored_state(entity: Entity) -> PartitionState {
    PartitionState {
        version_ts: entity.version_ts,
        body: Some(entity.body),
        out_edges: entity.out_edges,
        in_edges: entity.in_edges,
        ..PartitionState::default()
    }
}

impl UnifiedStore {
    /// Brings loaded indexes up to the engine (or rebuilds them all).
    pub(super) fn catch_up(&self, covered: Option<SeqNo>) -> Result<IndexRecovery> {
        let start = std::time::Instant::now();
        let drops = self.engine.tenant_drops();
        *self.indexes.drops.write() = drops.clone();
        if let Some(covered) = covered {
            // A dump that may predate a tenant's drop (a crash before the drop's own dump)
            // holds what the drop removed: that tenant is rebuilt from storage instead.
            for (tenant, drop) in drops.iter() {
                if drop.seq >= covered {
                    let tenant = String::from_utf8_lossy(tenant);
                    self.rebuild_tenant(&tenant)?;
                }
            }
            match self.engine.changes_since(covered)? {
                Some((changed, upto)) => {
                    // The partitions are read on every core (the restart time is mostly these
                    // reads), a bounded chunk at a time, and applied in order.
                    for chunk in changed.chunks(CATCH_UP_CHUNK) {
                        let states = chunk
                            .par_iter()
                            .map(|c| self.engine.read_partition(&c.tenant, &c.entity_id))
                            .collect::<allidb_storage::Result<Vec<_>>>()?;
                        for (c, state) in chunk.iter().zip(&states) {
                            self.indexes
                                .apply_state(&c.tenant, &c.entity_id, state, upto)?;
                        }
                    }
                    self.indexes.applied_seq.fetch_max(upto, Ordering::AcqRel);
                    tracing::info!(from = covered, to = upto, entities = changed.len(), elapsed = ?start.elapsed(),
                        "indexes loaded and caught up from the WAL");
                    return Ok(IndexRecovery::CaughtUp {
                        covered,
                        upto,
                        entities: changed.len(),
                    });
                }
                None => tracing::warn!(
                    covered,
                    "the WAL no longer reaches back to the index dump; rebuilding"
                ),
            }
        }
        self.indexes.tenants.write().clear();
        let (entities, snapshot) = self.engine.all_entities();
        let mut count = 0usize;
        for entity in entities {
            let entity = entity?;
            let (tenant, id) = (entity.tenant.clone(), entity.id.clone());
            self.indexes
                .apply_state(&tenant, &id, &stored_state(entity), snapshot)?;
            count += 1;
        }
        self.indexes
            .applied_seq
            .fetch_max(snapshot, Ordering::AcqRel);
        tracing::info!(entities = count, elapsed = ?start.elapsed(), "indexes rebuilt from storage");
        Ok(IndexRecovery::Rebuilt { entities: count })
    }

    /// Replaces `tenant`'s indexes by ones built from its stored entities.
    fn rebuild_tenant(&self, tenant: &str) -> Result<()> {
        let rebuilt = self.tenant_from_storage(tenant)?;
        let mut tenants = self.indexes.tenants.write();
        match rebuilt {
            Some(state) => tenants.insert(tenant.to_owned(), state),
            None => tenants.remove(tenant),
        };
        Ok(())
    }

    /// Indexes of `tenant` built from its live stored entities (`None`: it has none). Touches
    /// no shared index state, so callers may hold the tenants lock.
    pub(super) fn tenant_from_storage(&self, tenant: &str) -> Result<Option<Arc<TenantState>>> {
        let snapshot = self.engine.last_seq();
        let mut state = None;
        for entity in self.engine.scan(tenant, None, None)? {
            let entity = entity?;
            let state = match &mut state {
                Some(state) => state,
                None => state.insert(TenantState::new(
                    TenantIndexes::new(self.indexes.options, self.indexes.lexical.of(tenant))?,
                    self.indexes.options.dimension,
                )),
            };
            let id = entity.id.clone();
            state
                .indexes
                .apply_state(&id, &stored_state(entity), snapshot)?;
        }
        Ok(state)
    }
}
