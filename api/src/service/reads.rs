//! The read RPCs of the public service: `GetEntity`, `GetEntities`, `RangeScan`, `Traverse`
//! and the compatibility `ReplicaRead`.
//!
//! Owns only the handlers; must never return another tenant's entity.

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
        if let (Some(filter), Some(store)) = (&filter, self.store()) {
            store
                .check_filter(&tenant, filter)
                .map_err(|e| errors::store_status("range scan", e))?;
        }
        let read = self
            .cluster_reads()
            .map(|_| ReadOptions::at(cluster_level(params.level)).routed(&request.routing_key));
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
        let level = self.read_level(request.consistency_level)?;
        validate::entity_id("entity_id", &request.entity_id)?;
        let tenant = caller.tenant;
        let entity = match self.coordinator() {
            Some(coordinator) => coordinator
                .get_entity(&tenant, &request.entity_id, level)
                .await
                .map_err(|e| errors::cluster_status("get entity", e))?,
            None => {
                self.blocking("get entity", move |store| {
                    store.get_entity(&tenant, &request.entity_id)
                })
                .await?
            }
        };
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
        let level = self.read_level(request.consistency_level)?;
        validate::id_list("entity_ids", &request.entity_ids)?;
        let tenant = caller.tenant;
        let ids = request.entity_ids;
        if let Some(coordinator) = self.coordinator() {
            let reads = ids
                .iter()
                .map(|id| coordinator.get_entity(&tenant, id, level));
            let mut response = pb::GetEntitiesResponse::default();
            for (id, read) in ids.iter().zip(futures_util::future::join_all(reads).await) {
                match read.map_err(|e| errors::cluster_status("get entities", e))? {
                    Some(entity) => response.entities.push(convert::entity_to_proto(&entity)),
                    None => response.missing_ids.push(id.clone()),
                }
            }
            return Ok(Response::new(response));
        }
        let response = self
            .blocking("get entities", move |store| {
                let mut response = pb::GetEntitiesResponse::default();
                for id in ids {
                    match store.get_entity(&tenant, &id)? {
                        Some(entity) => response.entities.push(convert::entity_to_proto(&entity)),
                        None => response.missing_ids.push(id),
                    }
                }
                Ok(response)
            })
            .await?;
        Ok(Response::new(response))
    }

    pub(super) async fn traverse_rpc(
        &self,
        request: Request<pb::TraverseRequest>,
    ) -> Result<Response<pb::TraverseResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let level = self.read_level(request.consistency_level)?;
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
        if let (Some(filter), Some(store)) = (&filter, self.store()) {
            store
                .check_filter(&tenant, filter)
                .map_err(|e| errors::store_status("traverse", e))?;
        }
        let starts = request.start_ids;
        // A filter reads each reached entity (the walk itself is not pruned).
        let include = params.include_entity || filter.is_some();
        let (hits, truncation, coverage) = match self.cluster_reads() {
            Some(reads) => {
                let read = ReadOptions {
                    allow_partial: request.allow_partial,
                    ..ReadOptions::at(level).routed(&request.routing_key)
                };
                let (hits, truncation, report) = reads
                    .traverse(&tenant, &starts, &options, include, read)
                    .await
                    .map_err(|e| errors::cluster_status("traverse", e))?;
                (hits, truncation, Some(convert::coverage(&report.coverage)))
            }
            None => {
                let (hits, truncation) = self
                    .blocking("traverse", move |store| {
                        store.traverse(&tenant, &starts, &options, include)
                    })
                    .await?;
                (hits, truncation, None)
            }
        };
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

    /// Up to `fetch` entities of `tenant` with `start <= id < end` in id order: from the
    /// ring as `read` says when there is one, else from the local store.
    pub(super) async fn scan_round(
        &self,
        tenant: &str,
        start: Option<String>,
        end: Option<String>,
        fetch: usize,
        read: Option<ReadOptions>,
    ) -> Result<Vec<allidb_storage::cell::Entity>, Status> {
        match (self.cluster_reads(), read) {
            (Some(reads), Some(read)) => reads
                .scan(tenant, IdRange { start, end }, fetch, read)
                .await
                .map_err(|e| errors::cluster_status("range scan", e)),
            _ => {
                let tenant = tenant.to_owned();
                self.blocking("range scan", move |store| {
                    store.scan(&tenant, start.as_deref(), end.as_deref(), fetch)
                })
                .await
            }
        }
    }
}
