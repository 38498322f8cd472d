//! The provenance RPCs of the public service (issue 39, docs/api.md "Sources"):
//! `DeleteBySource` and `ReplaceSource`: the coordinator writes their cells at the request's
//! level (each replica applies its share as one atomic batch; a ring of one applies them all
//! as one).
//!
//! Owns only the handlers; must never write for a tenant other than the caller's.

use allidb_storage::provenance::SourceDeleted;

use super::*;

impl AlliDbService {
    pub(super) async fn delete_by_source_rpc(
        &self,
        request: Request<pb::DeleteBySourceRequest>,
    ) -> Result<Response<pb::DeleteBySourceResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let level = validation_stage(|| {
            validate_provenance::delete_by_source(&request)?;
            self.consistency(request.consistency_level)
        })?;
        let done = self
            .replace_source_with(&caller.tenant, &request.source_id, Vec::new(), level)
            .await?;
        tracing::debug!(trace_id = %request.trace_id, deleted = done.deleted, updated = done.updated, "source deleted");
        Ok(Response::new(pb::DeleteBySourceResponse {
            deleted: done.deleted,
            updated: done.updated,
        }))
    }

    pub(super) async fn replace_source_rpc(
        &self,
        request: Request<pb::ReplaceSourceRequest>,
    ) -> Result<Response<pb::ReplaceSourceResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let (level, writes) = validation_stage(|| {
            validate_provenance::replace_source(&request)?;
            let level = self.consistency(request.consistency_level)?;
            let now = now_nanos();
            let default_ttl = self.default_ttl_secs(&caller.tenant);
            let writes = request
                .entities
                .iter()
                .enumerate()
                .map(|(index, entity)| {
                    // Every entity carries exactly the replaced source (checked above).
                    let sourced = pb::Entity {
                        source_ids: vec![request.source_id.clone()],
                        ..entity.clone()
                    };
                    let field = format!("entities[{index}]");
                    convert::entity_write(&field, &sourced, &caller.tenant, now, default_ttl)
                })
                .collect::<Result<Vec<EntityWrite>, Status>>()?;
            Ok((level, writes))
        })?;
        let written = writes.len() as u64;
        let done = self
            .replace_source_with(&caller.tenant, &request.source_id, writes, level)
            .await?;
        tracing::debug!(trace_id = %request.trace_id, deleted = done.deleted, updated = done.updated, written, "source replaced");
        Ok(Response::new(pb::ReplaceSourceResponse {
            deleted: done.deleted,
            updated: done.updated,
            written,
        }))
    }

    /// `ReplaceSource` (a `DeleteBySource` when `writes` is empty) through the coordinator.
    async fn replace_source_with(
        &self,
        tenant: &str,
        source: &str,
        writes: Vec<EntityWrite>,
        level: ConsistencyLevel,
    ) -> Result<SourceDeleted, Status> {
        self.coordinator()?
            .replace_source(tenant, source, writes, level)
            .await
            .map_err(|e| errors::cluster_status("replace source", e))
    }
}
