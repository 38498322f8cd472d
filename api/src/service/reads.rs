//! The read RPCs of the public service: `GetEntity`, `GetEntities`, `RangeScan`, `Traverse`
//! and the compatibility `ReplicaRead`.
//!
//! Owns only the handlers; every read but the compatibility `ReplicaRead` (an admin's read of
//! this node's own store) goes through the data path. Must never return another tenant's
//! entity.

use super::*;

impl AlliDbService {
    pub(super) async fn range_scan_rpc(
        &self,
        request: Request<pb::RangeScanRequest>,
    ) -> Result<Response<pb::RangeScanResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let params = validate::range_scan(
            &request,
            &caller.tenant,
            &self.options.page_tokens,
            self.options.default_consistency,
        )?;
        if !request.node_id.is_empty() && request.node_id != self.options.node_id {
            return Err(Status::not_found(format!(
                "node_id {:?} is not a known node (this node is {:?})",
                request.node_id, self.options.node_id
            )));
        }
        let (mut start, mut resume_after, end) = scan_range(&params);
        let tenant = caller.tenant;
        let filter = params.expression.clone().map(|expression| Filter {
            expression: Some(expression),
            ..Filter::default()
        });
        if let Some(filter) = &filter {
            self.check_filter(&tenant, filter)
                .map_err(|e| errors::store_status("range scan", e))?;
        }
        let read = ReadOptions::at(cluster_level(params.level)).routed(&request.routing_key);
        // A filtered page reads on in rounds until it holds one more match than the page (which
        // tells whether another page follows) or the range ends.
        let mut entities = Vec::new();
        loop {
            // One more than the page: it tells whether another page follows.
            let wanted = match &filter {
                None => params.limit + 1,
                Some(_) => FILTERED_SCAN_ROUND,
            };
            let fetch = wanted + usize::from(resume_after.is_some());
            let mut round = self
                .scan_round(&tenant, start.clone(), end.clone(), fetch, read)
                .await?;
            if let Some(after) = &resume_after
                && round.first().is_some_and(|e| &e.id == after)
            {
                round.remove(0);
            }
            let ended = round.len() < wanted;
            let last = round.last().map(|e| e.id.clone());
            match &filter {
                None => entities.extend(round),
                Some(filter) => entities.extend(
                    round
                        .into_iter()
                        .filter(|e| filter.matches(&EntitySubject(e))),
                ),
            }
            match last {
                Some(last) if !ended && entities.len() <= params.limit => {
                    start = Some(last.clone());
                    resume_after = Some(last);
                }
                _ => break,
            }
        }
        let more = entities.len() > params.limit;
        entities.truncate(params.limit);
        let next_page_token = match entities.last() {
            Some(last) if more => self
                .options
                .page_tokens
                .encode(&tenant, params.level, &last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::RangeScanResponse {
            entities: entities.iter().map(convert::entity_to_proto).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn replica_read_rpc(
        &self,
        request: Request<pb::ReplicaReadRequest>,
    ) -> Result<Response<pb::ReplicaReadResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let key = validate::replica_key(&request.key, &request.tenant_id, &caller.tenant)?;
        let entity = self
            .blocking("replica read", move |store| {
                store.get_entity(&key.tenant, &key.entity_id)
            })
            .await?;
        Ok(Response::new(pb::ReplicaReadResponse {
            value: entity
                .map(|e| convert::entity_to_proto(&e).encode_to_vec())
                .unwrap_or_default(),
        }))
    }

    pub(super) async fn get_entity_rpc(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::GetEntityResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        validate::trace_id(&request.trace_id)?;
        let level = self.consistency(request.consistency_level)?;
        validate::entity_id("entity_id", &request.entity_id)?;
        let entity = self
            .coordinator()?
            .get_entity(&caller.tenant, &request.entity_id, level)
            .await
            .map_err(|e| errors::cluster_status("get entity", e))?;
        Ok(Response::new(pb::GetEntityResponse {
            found: entity.is_some(),
            entity: entity.as_ref().map(convert::entity_to_proto),
        }))
    }

    pub(super) async fn get_entities_rpc(
        &self,
        request: Request<pb::GetEntitiesRequest>,
    ) -> Result<Response<pb::GetEntitiesResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        validate::trace_id(&request.trace_id)?;
        let level = self.consistency(request.consistency_level)?;
        validate::id_list("entity_ids", &request.entity_ids)?;
        let coordinator = self.coordinator()?;
        let tenant = caller.tenant;
        let ids: Vec<&str> = request.entity_ids.iter().map(String::as_str).collect();
        let read = coordinator
            .get_entities(&tenant, &ids, level)
            .await
            .map_err(|e| errors::cluster_status("get entities", e))?;
        let mut response = pb::GetEntitiesResponse::default();
        for (id, found) in ids.into_iter().zip(read) {
            match found {
                Some(entity) => response.entities.push(convert::entity_to_proto(&entity)),
                None => response.missing_ids.push(id.to_owned()),
            }
        }
        Ok(Response::new(response))
    }

    pub(super) async fn traverse_rpc(
        &self,
        request: Request<pb::TraverseRequest>,
    ) -> Result<Response<pb::TraverseResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let level = self.consistency(request.consistency_level)?;
        let params = validate::traverse(&request)?;
        let (relations, min_weight) = traversal_filters(&request.relations, request.min_weight);
        let options = TraversalOptions {
            max_hops: params.max_hops as usize,
            fan_out: params.max_fan_out,
            node_budget: params.max_nodes,
            relations,
            direction: graph_direction(params.direction),
            min_weight,
            edge_budget: params.max_edges,
        };
        let tenant = caller.tenant;
        let filter = params.expression.clone().map(|expression| Filter {
            expression: Some(expression),
            ..Filter::default()
        });
        if let Some(filter) = &filter {
            self.check_filter(&tenant, filter)
                .map_err(|e| errors::store_status("traverse", e))?;
        }
        let starts = request.start_ids;
        // A filter reads each reached entity (the walk itself is not pruned).
        let include = params.include_entity || filter.is_some();
        let read = ReadOptions {
            allow_partial: request.allow_partial,
            ..ReadOptions::at(level).routed(&request.routing_key)
        };
        let (hits, truncation, report) = self
            .cluster_reads()?
            .traverse(&tenant, &starts, &options, include, read)
            .await
            .map_err(|e| errors::cluster_status("traverse", e))?;
        let coverage = self
            .reported(&report)
            .map(|report| convert::coverage(&report.coverage));
        let truncated = hits.len() >= params.max_nodes || truncation.any();
        let nodes = hits
            .into_iter()
            .filter(|hit| {
                filter.as_ref().is_none_or(|filter| {
                    hit.entity
                        .as_ref()
                        .is_some_and(|e| filter.matches(&EntitySubject(e)))
                })
            })
            .map(|mut hit| {
                if !params.include_entity {
                    hit.entity = None;
                }
                hit
            })
            .map(|hit| pb::TraversedNode {
                entity_id: hit.reached.entity_id.to_string(),
                depth: convert::count_i32(hit.reached.depth),
                path: Some(convert::graph_path(
                    &hit.reached.entity_id,
                    &hit.reached.path,
                )),
                entity: hit.entity.as_ref().map(convert::entity_to_proto),
            })
            .collect();
        Ok(Response::new(pb::TraverseResponse {
            nodes,
            truncated,
            coverage,
        }))
    }

    /// Up to `fetch` entities of `tenant` with `start <= id < end` in id order, over every
    /// range as `read` says.
    pub(super) async fn scan_round(
        &self,
        tenant: &str,
        start: Option<String>,
        end: Option<String>,
        fetch: usize,
        read: ReadOptions,
    ) -> Result<Vec<allidb_storage::cell::Entity>, Status> {
        self.cluster_reads()?
            .scan(tenant, IdRange { start, end }, fetch, read)
            .await
            .map_err(|e| errors::cluster_status("range scan", e))
    }
}
