//! Dropping a tenant from this node (`allidb tenant drop`, or a ring coordinator's drop at its
//! timestamp): the engine's durable tenant drop, then the tenant's indexes, then its index files
//! (the indexes are dumped again at once).
//!
//! Invariants: the tenants lock is held across the engine's drop and the swap of the tenant's
//! indexes, so no commit is indexed in between into the indexes about to go; cells written
//! after the drop's timestamp stay, and stay indexed; a drop not newer than the tenant's last
//! one changes nothing. Must never: report a drop that is done as failed because the index dump
//! after it failed.

use std::sync::Arc;

use allidb_storage::Timestamp;

use super::{TenantState, UnifiedStore};
use crate::error::Result;

/// What a tenant drop removed from this node's indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantDropped {
    /// Cells of the tenant at or below this timestamp are gone.
    pub ts: Timestamp,
    /// Entities of the tenant the drop removed here (not those written after it).
    pub entities: usize,
    /// Vectors of the tenant the drop removed here.
    pub vectors: usize,
}

impl UnifiedStore {
    /// Drops `tenant`: every entity, edge, chunk and vector written to it up to now, in one
    /// durable step (the engine's tenant drop), then its indexes, then its index files (the
    /// indexes are dumped again at once). Writes that come after it (later timestamps) stay.
    /// A tenant that never existed is dropped all the same (there may be replicas of it
    /// elsewhere); the answer says what this node held of it.
    pub fn drop_tenant(&self, tenant: &str) -> Result<TenantDropped> {
        self.drop_tenant_with(tenant, None)
    }

    /// [`Self::drop_tenant`] at a given timestamp (a coordinator's, on a ring, which may arrive
    /// late or twice): cells written at or before `ts` go, later ones stay and stay indexed.
    /// A drop not newer than the tenant's last one changes nothing (and reports nothing
    /// removed).
    pub fn drop_tenant_at(&self, tenant: &str, ts: Timestamp) -> Result<TenantDropped> {
        self.drop_tenant_with(tenant, Some(ts))
    }

    /// A drop at `ts`, or at this node's clock when `None`.
    fn drop_tenant_with(&self, tenant: &str, ts: Option<Timestamp>) -> Result<TenantDropped> {
        // Held across the engine's drop and the swap, so that no commit is indexed in between
        // into the indexes about to be removed (commits wait for it; queries too, briefly).
        let mut tenants = self.indexes.tenants.write();
        // Read under the lock: every commit stamped later is indexed after the swap.
        let ts = ts.unwrap_or_else(|| self.engine.clock().now());
        if let Some(last) = self.engine.tenant_drops().get(tenant)
            && last.ts >= ts
        {
            return Ok(TenantDropped {
                ts: last.ts,
                entities: 0,
                vectors: 0,
            });
        }
        let drop = self.engine.drop_tenant(tenant, ts)?;
        *self.indexes.drops.write() = self.engine.tenant_drops();
        let removed = tenants.remove(tenant);
        // A replica may hold writes made after the drop (they reached it first): those stay,
        // so the tenant is indexed again from what storage still shows of it.
        let newer_kept = removed.as_ref().is_some_and(|state| {
            state
                .indexes
                .facts
                .read()
                .iter()
                .any(|(_, meta)| meta.body_ts > drop.ts)
        });
        let kept = match newer_kept {
            true => self.tenant_from_storage(tenant)?,
            false => None,
        };
        let count = |state: &Option<Arc<TenantState>>| {
            state.as_ref().map_or((0, 0), |s| {
                (s.indexes.facts.read().len(), s.indexes.vectors.len())
            })
        };
        let (had, still) = (count(&removed), count(&kept));
        if let Some(state) = kept {
            tenants.insert(tenant.to_owned(), state);
        }
        std::mem::drop(tenants);
        let dropped = TenantDropped {
            ts: drop.ts,
            entities: had.0.saturating_sub(still.0),
            vectors: had.1.saturating_sub(still.1),
        };
        std::mem::drop(removed);
        // The drop is done (durable, hidden, indexes gone): a failed dump must not report it
        // as failed. The periodic dump retries; until then the old dump still holds the
        // tenant's index files, and an open rebuilds the tenant instead of loading them.
        if let Err(error) = self.dump_indexes() {
            tracing::warn!(%error, tenant, "tenant dropped, but the index dump that removes its index files failed; the next periodic dump retries");
        }
        Ok(dropped)
    }
}
