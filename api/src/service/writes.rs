//! The write RPCs of the public service: `PutEntity`, `BatchPutEntities`, `BulkPutEntities`,
//! `DeleteEntity`, `AddEdges`, `RemoveEdges` and the compatibility `ReplicaWrite`.
//!
//! Owns only the handlers; the shared steps (authentication, validation, the blocking pool,
//! the ring's coordinator) are the parent module's. Must never write for a tenant other than
//! the caller's.

use super::*;

impl AlliDbService {
    pub(super) async fn put_entity_rpc(
        &self,
        request: Request<pb::PutEntityRequest>,
    ) -> Result<Response<pb::PutEntityResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let (consistency, write) = validation_stage(|| {
            validate::trace_id(&request.trace_id)?;
            let consistency = self.write_consistency(request.consistency_level)?;
            let entity = validate::require_entity(request.entity.as_ref())?;
            let write = convert::entity_write(
                "entity",
                entity,
                &caller.tenant,
                now_nanos(),
                self.default_ttl_secs(&caller.tenant),
            )?;
            Ok((consistency, write))
        })?;
        let mode = validate_provenance::write_mode(request.mode)?;
        let entity_id = write.id.clone();
        let tenant = caller.tenant;
        match self.coordinator() {
            Some(coordinator) => coordinator
                .put_entities_as(&tenant, vec![write], mode, consistency.level)
                .await
                .map_err(|e| errors::cluster_status("put entity", e))?,
            None => {
                self.blocking("put entity", move |store| {
                    store.put_entities_as(&tenant, vec![write], mode, consistency.durability)
                })
                .await?;
            }
        }
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
        let consistency = self.write_consistency(request.consistency_level)?;
        validate::batch_len("entities", request.entities.len())?;
        let mode = validate_provenance::write_mode(request.mode)?;
        let outcome = self
            .write_entities(
                &caller.tenant,
                "entities",
                &request.entities,
                mode,
                consistency,
            )
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
        let consistency = self.write_consistency(request.consistency_level)?;
        validate::entity_id("entity_id", &request.entity_id)?;
        let tenant = caller.tenant;
        let found = match self.coordinator() {
            Some(coordinator) => coordinator
                .delete_entity(&tenant, &request.entity_id, consistency.level)
                .await
                .map_err(|e| errors::cluster_status("delete entity", e))?,
            None => {
                self.blocking("delete entity", move |store| {
                    store.delete_entity(&tenant, &request.entity_id, consistency.durability)
                })
                .await?
            }
        };
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
        let consistency = self.write_consistency(request.consistency_level)?;
        let edges = convert::add_edges(&request)?;
        let edge_count = convert::count_i32(edges.len());
        let tenant = caller.tenant;
        match self.coordinator() {
            Some(coordinator) => coordinator
                .add_edges(&tenant, &edges, consistency.level)
                .await
                .map_err(|e| errors::cluster_status("add edges", e))?,
            None => {
                self.blocking("add edges", move |store| {
                    store.add_edges(&tenant, &edges, consistency.durability)
                })
                .await?;
            }
        }
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
        let consistency = self.write_consistency(request.consistency_level)?;
        let edges = convert::remove_edges(&request)?;
        let edge_count = convert::count_i32(edges.len());
        let tenant = caller.tenant;
        match self.coordinator() {
            Some(coordinator) => coordinator
                .remove_edges(&tenant, &edges, consistency.level)
                .await
                .map_err(|e| errors::cluster_status("remove edges", e))?,
            None => {
                self.blocking("remove edges", move |store| {
                    store.remove_edges(&tenant, &edges, consistency.durability)
                })
                .await?;
            }
        }
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
        let mut consistency = None;
        let mut response = pb::BulkPutEntitiesResponse::default();
        while let Some(chunk) = stream.message().await? {
            validate::trace_id(&chunk.trace_id)?;
            let consistency = match consistency {
                Some(consistency) => consistency,
                None => *consistency.insert(self.write_consistency(chunk.consistency_level)?),
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
                    consistency,
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
