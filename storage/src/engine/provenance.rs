//! Source deletes on one node (issue 39): `DeleteBySource` and `ReplaceSource` lock the
//! source's member partition, its members and their neighbours, read them under the lock and
//! write the cells [`crate::provenance`] plans as one atomic batch (one WAL record: after a
//! crash it has happened entirely or not at all, and a retry is idempotent).

use std::collections::HashMap;

use super::Engine;
use super::write::Neighbours;
use crate::cell::EntityWrite;
use crate::error::Result;
use crate::key;
use crate::mutation;
use crate::partition::PartitionState;
use crate::provenance::{self, Member, SourceDeleted};
use crate::types::Durability;

impl Engine {
    /// The ids listed in `source`'s member partition (a superset of the entities carrying it).
    pub fn source_members(&self, tenant: &str, source: &str) -> Result<Vec<String>> {
        key::validate_tenant(tenant)?;
        key::validate_source(source)?;
        Ok(self
            .read_partition(tenant, &key::source_partition_id(source))?
            .members)
    }

    /// `DeleteBySource(source)`: see [`provenance::plan_source_delete`]. Idempotent: a source
    /// without members writes nothing.
    pub fn delete_by_source(
        &self,
        tenant: &str,
        source: &str,
        durability: Durability,
    ) -> Result<SourceDeleted> {
        self.replace_source(tenant, source, Vec::new(), durability)
    }

    /// `ReplaceSource(source, writes)`: the source delete and the writes (given exactly that
    /// source, merged into what the delete leaves) in one batch, so no reader sees neither
    /// version. With no writes it is [`Engine::delete_by_source`].
    pub fn replace_source(
        &self,
        tenant: &str,
        source: &str,
        mut writes: Vec<EntityWrite>,
        durability: Durability,
    ) -> Result<SourceDeleted> {
        key::validate_tenant(tenant)?;
        provenance::assign_source(&mut writes, source)?;
        let winners = match writes.is_empty() {
            true => Vec::new(),
            false => mutation::put_winners(tenant, &writes)?,
        };
        let partition = key::source_partition_id(source);
        loop {
            let members = self.source_members(tenant, source)?;
            let mut ids: Vec<&str> = vec![partition.as_str()];
            ids.extend(members.iter().map(String::as_str));
            let fresh: Vec<&str> = winners
                .iter()
                .map(|w| w.id.as_str())
                .filter(|id| members.binary_search_by(|m| m.as_str().cmp(id)).is_err())
                .collect();
            ids.extend(&fresh);
            let new_neighbours = winners
                .iter()
                .flat_map(|w| w.out_edges.iter().chain(&w.in_edges))
                .map(|e| e.other.as_str());
            let (_locks, stored) = self.lock_with_neighbours(
                tenant,
                &ids,
                new_neighbours,
                Neighbours::TargetsAndSources,
            )?;
            if stored[0].members != members {
                // A put added a member between the read and the lock: read again.
                continue;
            }
            let at: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            let by_id = |id: &str| -> PartitionState {
                stored[*at.get(id).expect("every member and winner id was read")].clone()
            };
            let member_states: Vec<Member> =
                members.iter().map(|id| (id.clone(), by_id(id))).collect();
            let winner_states: Vec<PartitionState> = winners.iter().map(|w| by_id(&w.id)).collect();
            let delete_ts = self.inner.clock.now();
            if winners.is_empty() {
                return match provenance::plan_source_delete(
                    tenant,
                    source,
                    &member_states,
                    delete_ts,
                )? {
                    None => Ok(SourceDeleted::default()),
                    Some((batch, done)) => self.write(batch, durability).map(|_| done),
                };
            }
            let put_ts = self.inner.clock.now();
            let (batch, done) = provenance::plan_replace_source(
                tenant,
                source,
                &member_states,
                &winners,
                &winner_states,
                delete_ts,
                put_ts,
            )?;
            return self.write(batch, durability).map(|_| done);
        }
    }
}
