//! The administrative RPCs of the public service: `HealthCheck`, `Checkpoint`, `ListTenants`,
//! `GetTenantStats`, `Repair`, `Rebuild`, `Compact`, `DropTenant`, `Decommission`,
//! `RemoveNode` and `Cleanup`.
//!
//! Owns only the handlers; roles are checked by each (admin, or operator for ring-wide
//! operations). Must never act on a tenant the caller's key does not cover.

use super::*;
use allidb_cluster::ring::HostId;
use allidb_cluster::topology::leave::MovementEnd;
use allidb_cluster::topology::state::MovementKind;

impl AlliDbService {
    pub(super) async fn health_check_rpc(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        // An engine refusing writes is unhealthy: `status` is its state and why
        // (docs/operations.md "Disk full and I/O errors").
        let status = if self.state.stopping.load(Ordering::Acquire) {
            "stopping".to_owned()
        } else {
            match self.state.store.get() {
                None => "starting".to_owned(),
                Some(store) => {
                    let health = store.engine().health();
                    match health.reason {
                        None => "healthy".to_owned(),
                        Some(reason) => format!("{}: {reason}", health.state.as_str()),
                    }
                }
            }
        };
        Ok(Response::new(pb::HealthCheckResponse {
            healthy: status == "healthy",
            status,
            timestamp_nanos: now_nanos(),
            version: SERVER_VERSION.to_owned(),
        }))
    }

    pub(super) async fn checkpoint_rpc(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let target = admin::checkpoint_target(&request.target_dir)?;
        let written = self
            .blocking("checkpoint", move |store| admin::checkpoint(store, &target))
            .await?;
        Ok(Response::new(admin::checkpoint_response(
            request.target_dir,
            &written,
        )))
    }

    pub(super) async fn list_tenants_rpc(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let per_node = request.into_inner().per_node;
        let scope = admin::tenant_scope(&caller, self.auth.enabled());
        let only = scope.only().map(str::to_owned);
        let listing = self.tenant_listing(only, per_node).await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: listing
                .tenants
                .iter()
                .map(admin::tenant_stats_proto)
                .collect(),
            nodes: listing
                .nodes
                .iter()
                .map(admin::node_tenants_proto)
                .collect(),
        }))
    }

    pub(super) async fn get_tenant_stats_rpc(
        &self,
        request: Request<pb::GetTenantStatsRequest>,
    ) -> Result<Response<pb::GetTenantStatsResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        admin::tenant_scope(&caller, self.auth.enabled()).check(&request.tenant_id)?;
        let listing = self
            .tenant_listing(Some(request.tenant_id), request.per_node)
            .await?;
        Ok(Response::new(pb::GetTenantStatsResponse {
            stats: listing.tenants.first().map(admin::tenant_stats_proto),
            nodes: listing
                .nodes
                .iter()
                .map(admin::node_tenants_proto)
                .collect(),
        }))
    }

    pub(super) async fn repair_rpc(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::RepairResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let (ring, tenant) = self.ring_operation(&caller, request.tenant_id, "a repair")?;
        let options = RepairOptions {
            tenant,
            preview: request.preview,
            ranges: (!request.ranges.is_empty()).then(|| {
                request
                    .ranges
                    .iter()
                    .map(|r| TokenSpan {
                        start: r.start,
                        end: r.end,
                    })
                    .collect()
            }),
        };
        let report = ring
            .repair
            .run(&options)
            .await
            .map_err(|e| errors::cluster_status("repair", e))?;
        Ok(Response::new(convert::repair_response(&report)))
    }

    pub(super) async fn rebuild_rpc(
        &self,
        request: Request<pb::RebuildRequest>,
    ) -> Result<Response<pb::RebuildResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let (ring, tenant) = self.ring_operation(&caller, request.tenant_id, "a rebuild")?;
        let report = ring
            .rebuild
            .run(tenant)
            .await
            .map_err(|e| errors::cluster_status("rebuild", e))?;
        Ok(Response::new(convert::rebuild_response(&report)))
    }

    pub(super) async fn decommission_rpc(
        &self,
        request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let ring = self.ring_change(&caller, "a decommission")?;
        let host = ring.topology.host();
        leave_ring(ring, host, MovementKind::Decommission, false).await
    }

    pub(super) async fn remove_node_rpc(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let ring = self.ring_change(&caller, "a removenode")?;
        let host = request
            .host_id
            .parse()
            .map_err(|e| Status::invalid_argument(format!("host_id: {e}")))?;
        leave_ring(ring, host, MovementKind::RemoveNode, request.ignore_dead).await
    }

    pub(super) async fn cleanup_rpc(
        &self,
        request: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let ring = self.ring_change(&caller, "a cleanup")?;
        let store = self.open_store()?;
        let report = ring
            .topology
            .cleanup(store)
            .await
            .map_err(|e| errors::cluster_status("cleanup", e))?;
        let purged = &report.purged;
        Ok(Response::new(pb::CleanupResponse {
            topology_version: report.topology_version,
            ranges_kept: report.ranges_kept as u64,
            partitions_dropped: purged.partitions.len() as u64,
            cells_dropped: purged.cells,
            bytes_dropped: purged.bytes,
            tables_rewritten: purged.tables_rewritten,
            table_bytes_before: purged.table_bytes_before,
            table_bytes_after: purged.table_bytes_after,
            duration_ms: report.duration.as_millis() as u64,
        }))
    }

    /// The ring membership, for an operator (an admin key of tenant `*`) changing its topology.
    fn ring_change(&self, caller: &Principal, what: &str) -> Result<&RingMember, Status> {
        if admin::tenant_scope(caller, self.auth.enabled()) != admin::TenantScope::All {
            return Err(Status::permission_denied(format!(
                "{what} changes the whole ring: it needs an operator key (an admin key of tenant \"*\")"
            )));
        }
        let (ring, _) = self.ring_operation(caller, String::new(), what)?;
        Ok(ring)
    }

    pub(super) async fn compact_rpc(
        &self,
        request: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        if admin::tenant_scope(&caller, self.auth.enabled()) != admin::TenantScope::All {
            return Err(Status::permission_denied(
                "a compaction rewrites every tenant's files: it needs an operator key (an admin \
                 key of tenant \"*\")",
            ));
        }
        let reply = self.blocking("compact", admin::compact).await?;
        tracing::info!(
            key = %caller.key_id,
            tables_before = reply.tables_before,
            tables_after = reply.tables_after,
            table_bytes_before = reply.table_bytes_before,
            table_bytes_after = reply.table_bytes_after,
            duration_ms = reply.duration_ms,
            "manual compaction done"
        );
        Ok(Response::new(reply))
    }

    pub(super) async fn drop_tenant_rpc(
        &self,
        request: Request<pb::DropTenantRequest>,
    ) -> Result<Response<pb::DropTenantResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        admin::tenant_scope(&caller, self.auth.enabled()).check(&request.tenant_id)?;
        if !request.confirm {
            return Err(Status::invalid_argument(
                "confirm: must be true: a drop erases every entity, edge, chunk and vector of \
                 the tenant and cannot be undone",
            ));
        }
        let level = self.consistency(request.consistency_level)?;
        let tenant = request.tenant_id;
        let dropped = self
            .coordinator()?
            .drop_tenant(&tenant, level)
            .await
            .map_err(|e| errors::cluster_status("drop tenant", e))?;
        metrics::counter!("allidb_tenant_drops_total").increment(1);
        tracing::warn!(
            tenant = %tenant,
            key = %caller.key_id,
            entities = dropped.entities,
            vectors = dropped.vectors,
            dropped_at_micros = dropped.ts,
            "tenant dropped"
        );
        Ok(Response::new(pb::DropTenantResponse {
            dropped_at_micros: dropped.ts,
            entities: dropped.entities as u64,
            vectors: dropped.vectors as u64,
        }))
    }
}

/// Runs a decommission or removenode of `host` and answers how it ended.
async fn leave_ring(
    ring: &RingMember,
    host: HostId,
    kind: MovementKind,
    ignore_dead: bool,
) -> Result<Response<pb::TopologyChangeResponse>, Status> {
    let end = ring
        .topology
        .leave(host, kind, ignore_dead)
        .await
        .map_err(|e| errors::cluster_status(kind.as_str(), e))?;
    let (finished, topology_version) = match end {
        MovementEnd::Finished { topology_version } => (true, topology_version),
        MovementEnd::RolledBack { topology_version } => (false, topology_version),
    };
    Ok(Response::new(pb::TopologyChangeResponse {
        host_id: host.to_string(),
        finished,
        topology_version,
    }))
}
