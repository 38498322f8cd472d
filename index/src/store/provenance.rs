//! Source provenance on one node (issue 39): puts that merge support, `DeleteBySource` and
//! `ReplaceSource`, validated like every put ([`UnifiedStore::prepare_put`]) and applied by the
//! engine as one atomic batch each; the indexes follow through the commit observer as for any
//! write.

use allidb_storage::cell::EntityWrite;
use allidb_storage::provenance::{PutMode, SourceDeleted};
use allidb_storage::{Durability, SeqNo};

use super::UnifiedStore;
use crate::error::Result;

impl UnifiedStore {
    /// Puts entities in `mode` (see [`allidb_storage::Engine::put_entities_as`]) after [`Self::prepare_put`].
    pub fn put_entities_as(
        &self,
        tenant: &str,
        mut writes: Vec<EntityWrite>,
        mode: PutMode,
        durability: Durability,
    ) -> Result<SeqNo> {
        self.prepare_put(tenant, &mut writes)?;
        Ok(self
            .engine
            .put_entities_as(tenant, writes, mode, durability)?)
    }

    /// `DeleteBySource` (see [`Engine::delete_by_source`]).
    pub fn delete_by_source(
        &self,
        tenant: &str,
        source: &str,
        durability: Durability,
    ) -> Result<SourceDeleted> {
        Ok(self.engine.delete_by_source(tenant, source, durability)?)
    }

    /// `ReplaceSource` (see [`Engine::replace_source`]) after [`Self::prepare_put`].
    pub fn replace_source(
        &self,
        tenant: &str,
        source: &str,
        mut writes: Vec<EntityWrite>,
        durability: Durability,
    ) -> Result<SourceDeleted> {
        if !writes.is_empty() {
            self.prepare_put(tenant, &mut writes)?;
        }
        Ok(self
            .engine
            .replace_source(tenant, source, writes, durability)?)
    }
}
