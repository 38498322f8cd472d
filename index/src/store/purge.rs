//! Dropping partitions from this node without tombstones (`allidb cluster cleanup`: the token
//! ranges a node no longer replicates; docs/cluster.md "Cleanup"): the engine's purge, then the
//! vector, graph, fact and lexical indexes forget what it dropped.
//!
//! Invariants: the indexes end up describing what storage holds of each dropped partition
//! (nothing, unless a write reached it during the purge); the edges kept entities hold to a
//! dropped one stay (they are in the kept entities' partitions); a crash between the purge and
//! the index dump that follows it makes the next open rebuild the indexes from storage (the
//! purge writes no WAL record a catch-up could replay). Must never: leave a loadable dump that
//! predates the purge.

use allidb_storage::engine::{PurgeSelector, Purged};

use super::{UnifiedStore, persist, write_index_dump};
use crate::error::Result;

/// Partitions re-read and re-indexed per hold of the tenants lock (commits wait meanwhile).
const REINDEX_CHUNK: usize = 1024;

impl UnifiedStore {
    /// Drops every partition `selector` names from storage (the engine's
    /// [`allidb_storage::Engine::purge_partitions`]: no tombstone) and from the indexes, then
    /// dumps the indexes.
    pub fn purge_partitions(&self, selector: PurgeSelector<'_>) -> Result<Purged> {
        let _no_other_dump = self.indexes.dumping.lock();
        persist::invalidate(&self.index_dir)?;
        let purged = self.engine.purge_partitions(selector)?;
        let partitions: Vec<&(String, String)> = purged.partitions.iter().collect();
        for chunk in partitions.chunks(REINDEX_CHUNK) {
            // Held while each partition is re-read and re-indexed: a commit to it waits, and is
            // either in what is read (and applied again after, harmlessly) or applied after.
            let tenants = self.indexes.tenants.write();
            let snapshot = self.engine.last_seq();
            for (tenant, id) in chunk {
                let Some(indexes) = tenants.get(tenant.as_str()) else {
                    continue;
                };
                let stored = self.engine.read_partition(tenant, id)?;
                indexes.indexes.apply_purged(id, &stored, snapshot)?;
            }
        }
        let (covered, _) = write_index_dump(&self.indexes, &self.index_dir)?;
        self.engine.pin_wal(covered)?;
        Ok(purged)
    }
}
