//! Source deletes on a ring (issue 39): `DeleteBySource` and `ReplaceSource` read the source's
//! member partition and then its members at the request's level, plan the cells with
//! `allidb_storage::provenance` and one timestamp of this node's clock (past everything read),
//! and write them through the ordinary write fan-out: each partition's replicas get its cells at
//! the level, a replica that misses them gets a hint, and read repair and Merkle repair carry
//! them like any write (no replica call of its own).
//!
//! Atomic per node (each replica applies its share of the cells as one batch), not across the
//! ring: docs/api.md "Sources" states what a reader may see while the write spreads.

use std::collections::{BTreeSet, HashMap};

use allidb_storage::cell::EntityWrite;
use allidb_storage::key;
use allidb_storage::mutation;
use allidb_storage::partition::PartitionState;
use allidb_storage::provenance::{self, Member, SourceDeleted, Stripped};

use super::shadowed::WrittenSource;
use super::{Coordinator, replaced_sources};
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;

impl Coordinator {
    /// The ids `source`'s member partition lists at `level`.
    pub async fn source_members(
        &self,
        tenant: &str,
        source: &str,
        level: ConsistencyLevel,
    ) -> Result<Vec<String>, ClusterError> {
        key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        key::validate_source(source).map_err(allidb_index::Error::from)?;
        let partition = key::source_partition_id(source);
        let mut read = self
            .read_partitions(tenant, vec![&partition], level)
            .await?;
        Ok(std::mem::take(&mut read[0].members))
    }

    /// `DeleteBySource(source)` at `level` (see the module doc).
    pub async fn delete_by_source(
        &self,
        tenant: &str,
        source: &str,
        level: ConsistencyLevel,
    ) -> Result<SourceDeleted, ClusterError> {
        self.replace_source(tenant, source, Vec::new(), level).await
    }

    /// `ReplaceSource(source, writes)` at `level`: the delete and the writes in one set of
    /// cells (see `allidb_storage::provenance::plan_replace_source`).
    pub async fn replace_source(
        &self,
        tenant: &str,
        source: &str,
        writes: Vec<EntityWrite>,
        level: ConsistencyLevel,
    ) -> Result<SourceDeleted, ClusterError> {
        let members = self.source_members(tenant, source, level).await?;
        let mut writes = match writes.is_empty() {
            true => writes,
            false => self.prepared(tenant, writes).await?,
        };
        provenance::assign_source(&mut writes, source).map_err(allidb_index::Error::from)?;
        let winners = match writes.is_empty() {
            true => Vec::new(),
            false => mutation::put_winners(tenant, &writes).map_err(allidb_index::Error::from)?,
        };
        let member_set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let mut ids: Vec<&str> = members.iter().map(String::as_str).collect();
        ids.extend(
            winners
                .iter()
                .map(|w| w.id.as_str())
                .filter(|id| !member_set.contains(id)),
        );
        let stored = self.read_partitions(tenant, ids.clone(), level).await?;
        let at: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let state_of = |id: &str| -> PartitionState {
            stored[*at.get(id).expect("every member and winner id was read")].clone()
        };
        let member_states: Vec<Member> = members
            .iter()
            .map(|id| (id.clone(), state_of(id)))
            .collect();
        let winner_states: Vec<PartitionState> = winners.iter().map(|w| state_of(&w.id)).collect();
        let clock = self.store().engine().clock();
        let delete_ts = clock.now();
        let planned = match winners.is_empty() {
            true => provenance::plan_source_delete(tenant, source, &member_states, delete_ts),
            false => provenance::plan_replace_source(
                tenant,
                source,
                &member_states,
                &winners,
                &winner_states,
                delete_ts,
                clock.now(),
            )
            .map(Some),
        }
        .map_err(allidb_index::Error::from)?;
        let Some((batch, done)) = planned else {
            return Ok(SourceDeleted::default());
        };
        self.write(batch, level).await?;
        let rewritten: BTreeSet<&str> = winners.iter().map(|w| w.id.as_str()).collect();
        let mut sources: Vec<WrittenSource> = member_states
            .iter()
            .filter(|(id, stored)| {
                !rewritten.contains(id.as_str()) && strip_deletes(stored, source)
            })
            .map(|(id, stored)| WrittenSource::after_replace(id, stored, |_| true))
            .collect();
        sources.extend(replaced_sources(&winners, &winner_states));
        self.remove_shadowed_in_edges(tenant, &sources, level)
            .await
            .map(|()| done)
    }
}

/// Whether a source delete removes the entity `stored` holds.
fn strip_deletes(stored: &PartitionState, source: &str) -> bool {
    provenance::strip_source(stored, source) == Stripped::Deleted
}
