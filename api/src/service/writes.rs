//! The write RPCs of the public service: `PutEntity`, `BatchPutEntities`, `BulkPutEntities`,
//! `DeleteEntity`, `AddEdges`, `RemoveEdges` and the compatibility `ReplicaWrite`.
//!
//! Owns only the handlers; the shared steps (authentication, validation, the data path's
//! coordinator) are the parent module's. Every write but the compatibility `ReplicaWrite` (an
//! admin's write to this node's own store) goes through the coordinator, a ring of one's too.
//! Must never write for a tenant other than the caller's.

use super::*;

impl AlliDbService {
    pub(super) async fn put_entity_rpc(
        &self,
        request: Request<pb::PutEntityRequest>,
    ) -> Result<Response<pb::PutEntityResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let (level, write) = validation_stage(|| {
            validate::trace_id(&request.trace_id)?;
            let level = self.consistency(request.consistency_level)?;
            let entity = validate::require_entity(request.entity.as_ref())?;
            let write = convert::entity_write(
                "entity",
                entity,
                &caller.tenant,
                now_nanos(),
                self.default_ttl_secs(&caller.tenant),
            )?;
            Ok((level, write))
        })?;
        let mode = validate_provenance::write_mode(request.mode)?;
        let entity_id = write.id.clone();
        self.coordinator()?
            .put_entities_as(&caller.tenant, vec![write], mode, level)
            .await
            .map_err(|e| errors::cluster_status("put entity", e))?;
        tracing::debug!(trace_id = %request.trace_id, %entity_id, "entity written");
        Ok(Response::new(pb::PutEntityResponse {
            success: true,
            error_message: String::new(),
            entity_id,
        }))
    }

    pub(super) async fn batch_put_entities_rpc(
        &self,
        request: Request<pb::BatchPutEntitiesRequest>,
    ) -> Result<Response<pb::BatchPutEntitiesResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        validate::trace_id(&request.trace_id)?;
        let level = self.consistency(request.consistency_level)?;
        validate::batch_len("entities", request.entities.len())?;
        let mode = validate_provenance::write_mode(request.mode)?;
        let outcome = self
            .write_entities(&caller.tenant, "entities", &request.entities, mode, level)
            .await?;
        let error_message = match outcome.failures.as_slice() {
            [] => String::new(),
            [(id, reason)] => failure_message(id, reason),
            [(id, reason), rest @ ..] => format!(
                "{} (and {} more failed entities)",
                failure_message(id, reason),
                rest.len()
            ),
        };
        Ok(Response::new(pb::BatchPutEntitiesResponse {
            success: outcome.failures.is_empty(),
            error_message,
            success_count: convert::count_i32(outcome.written.len()),
            failure_count: convert::count_i32(outcome.failures.len()),
            entity_ids: outcome.written,
        }))
    }

    pub(super) async fn replica_write_rpc(
        &self,
        request: Request<pb::ReplicaWriteRequest>,
    ) -> Result<Response<pb::ReplicaWriteResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let key = validate::replica_key(&request.key, &request.tenant_id, &caller.tenant)?;
        let entity = validate::replica_value(&request.value, &key)?;
        let write = convert::entity_write(
            "value",
            &entity,
            &key.tenant,
            now_nanos(),
            self.default_ttl_secs(&key.tenant),
        )?;
        let durability = self.options.durability;
        self.blocking("replica write", move |store| {
            store.put_entities(&key.tenant, vec![write], durability)
        })
        .await?;
        Ok(Response::new(pb::ReplicaWriteResponse { success: true }))
    }

    pub(super) async fn delete_entity_rpc(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> Result<Response<pb::DeleteEntityResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        validate::trace_id(&request.trace_id)?;
        let level = self.consistency(request.consistency_level)?;
        validate::entity_id("entity_id", &request.entity_id)?;
        let found = self
            .coordinator()?
            .delete_entity(&caller.tenant, &request.entity_id, level)
            .await
            .map_err(|e| errors::cluster_status("delete entity", e))?;
        Ok(Response::new(pb::DeleteEntityResponse {
            success: true,
            found,
        }))
    }

    pub(super) async fn add_edges_rpc(
        &self,
        request: Request<pb::AddEdgesRequest>,
    ) -> Result<Response<pb::AddEdgesResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let level = self.consistency(request.consistency_level)?;
        let edges = convert::add_edges(&request)?;
        let edge_count = convert::count_i32(edges.len());
        self.coordinator()?
            .add_edges(&caller.tenant, &edges, level)
            .await
            .map_err(|e| errors::cluster_status("add edges", e))?;
        Ok(Response::new(pb::AddEdgesResponse {
            success: true,
            edge_count,
        }))
    }

    pub(super) async fn remove_edges_rpc(
        &self,
        request: Request<pb::RemoveEdgesRequest>,
    ) -> Result<Response<pb::RemoveEdgesResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let level = self.consistency(request.consistency_level)?;
        let edges = convert::remove_edges(&request)?;
        let edge_count = convert::count_i32(edges.len());
        self.coordinator()?
            .remove_edges(&caller.tenant, &edges, level)
            .await
            .map_err(|e| errors::cluster_status("remove edges", e))?;
        Ok(Response::new(pb::RemoveEdgesResponse {
            success: true,
            edge_count,
        }))
    }

    pub(super) async fn bulk_put_entities_rpc(
        &self,
        request: Request<Streaming<pb::BulkPutEntitiesRequest>>,
    ) -> Result<Response<pb::BulkPutEntitiesResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let mut stream = request.into_inner();
        let mut level = None;
        let mut response = pb::BulkPutEntitiesResponse::default();
        while let Some(chunk) = stream.message().await? {
            validate::trace_id(&chunk.trace_id)?;
            let level = match level {
                Some(level) => level,
                None => *level.insert(self.consistency(chunk.consistency_level)?),
            };
            if chunk.entities.is_empty() {
                continue;
            }
            validate::batch_len("entities", chunk.entities.len())?;
            let outcome = self
                .write_entities(
                    &caller.tenant,
                    "entities",
                    &chunk.entities,
                    PutMode::Replace,
                    level,
                )
                .await?;
            response.success_count += convert::count_i64(outcome.written.len());
            response.failure_count += convert::count_i64(outcome.failures.len());
            let room = MAX_BULK_FAILURES_LISTED.saturating_sub(response.failures.len());
            response
                .failures
                .extend(outcome.failures.into_iter().take(room).map(
                    |(entity_id, error_message)| pb::BulkPutFailure {
                        entity_id,
                        error_message,
                    },
                ));
        }
        Ok(Response::new(response))
    }
}
