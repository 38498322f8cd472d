//! The `allidb.AlliDB` gRPC service (WIRE.md §1): every RPC of `proto/allidb.proto`.
//!
//! Each handler runs the same steps: authenticate the `x-allidb-api-key` metadata and check the
//! role the RPC needs (read: gets, scans, queries, traversals; write: puts, deletes, edges;
//! admin: the compatibility `Replica*` RPCs, `Checkpoint` and `Compact` ([`crate::admin`]); `HealthCheck`
//! needs no key), validate the request
//! ([`crate::validate`], [`crate::convert`]), then serve it and map its errors
//! ([`crate::errors`]).
//!
//! One data path for a ring of any size (DESIGN.md §6): every data RPC (writes, point reads,
//! scans, traversals, queries, tenant figures and drops, source and filter deletes) goes
//! through the node's [`DataPath`], a cluster [`Coordinator`] and [`ClusterQuery`]. On a
//! member of a ring (`[cluster]`) they reach the ring's replicas; a node without `[cluster]` is
//! a ring of one ([`allidb_cluster::standalone`]) whose coordinator calls the local store
//! directly and whose queries its own indexes answer in one call. Only the operator actions
//! over replicas (repair, rebuild, decommission, removenode, cleanup) need a [`RingMember`],
//! and answer `FAILED_PRECONDITION` on a node without `[cluster]`. `Query` and `QueryBatch`
//! share their validation, store request and reply conversion; a batch runs its queries in
//! chunks, one task per core.
//!
//! Invariants: the tenant of every store call is the authenticated caller's, never a request
//! field (tenant fields are only checked against it); a write's reply means its consistency
//! level acknowledged it, each replica durable as `storage.durability` says (a ring of one
//! satisfies every level with its local write). While the store is still opening every RPC but
//! `HealthCheck` answers `UNAVAILABLE`.
//!
//! Must never: serve a data RPC around the data path, block an async worker on a store call
//! that does I/O, answer another tenant's data, or put server internals (paths, other
//! tenants' keys) into a status message.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use allidb_cluster::consistency::ConsistencyLevel;
use allidb_cluster::coordinator::Coordinator;
use allidb_cluster::query::report::ReadReport;
use allidb_cluster::query::tenants::RingTenants;
use allidb_cluster::query::wire::IdRange;
use allidb_cluster::query::{ClusterQuery, ReadOptions};
use allidb_cluster::repair::{RangeRepair, RepairOptions};
use allidb_cluster::ring::TokenSpan;
use allidb_cluster::standalone::RingOfOne;
use allidb_cluster::stream::rebuild::ReplicaRebuild;
use allidb_cluster::topology::TopologyLog;
use allidb_index::filter::EntitySubject;
use allidb_index::graph::{self, TraversalOptions};
use allidb_index::query::{QueryPlan, ScoreWeights};
use allidb_index::{Filter, PlanReport, QueryHit, QueryRequest, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::cell::EntityWrite;
use allidb_storage::provenance::PutMode;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Principal, Role};
use crate::page_token::PageTokenKey;
use crate::pb::allidb_server::AlliDb;
use crate::{admin, context, convert, errors, pb, validate, validate_provenance};
use tokio::runtime::RuntimeFlavor;

mod delete_filter;
mod operations;
mod provenance;
mod queries;
mod reads;
mod writes;

/// The version `HealthCheck` reports: the API crate's (the server's) version.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The id of this node when the configuration names none.
pub const DEFAULT_NODE_ID: &str = "local";

/// Most failures a `BulkPutEntities` reply lists (the counts cover all of them).
pub const MAX_BULK_FAILURES_LISTED: usize = 100;

/// Fewest queries of a `QueryBatch` per task (see [`query_batch_tasks`]).
const MIN_QUERIES_PER_TASK: usize = 4;

/// Entities a filtered `RangeScan` reads per round until its page is full.
const FILTERED_SCAN_ROUND: usize = 1000;

/// The configuration values the service needs (filled by `allidbd` from its config).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceOptions {
    /// This node's id: `RangeScan.node_id` must be empty or this; a node without `[cluster]`
    /// is named so in per-node figures and messages.
    pub node_id: String,
    /// Durability of every write (`storage.durability`): a ring of one's, and the
    /// compatibility `ReplicaWrite`'s.
    pub durability: Durability,
    /// Consistency level of requests that name none (`server.default_consistency`).
    pub default_consistency: pb::ConsistencyLevel,
    /// Graph expansion depth of queries that name none (`query.max_hops`).
    pub query_max_hops: u32,
    /// Most ANN seeds of one query (`query.max_candidates`).
    pub query_max_candidates: usize,
    /// Most entities one query's expansion visits (`query.max_expansion_nodes`).
    pub query_max_expansion_nodes: usize,
    /// Signs and checks `RangeScan` page tokens (the ring's key, or the node's own).
    pub page_tokens: PageTokenKey,
    /// Default time to live, in seconds, of the entities written to a tenant without an expiry
    /// of their own (`storage.tenant_ttl_secs`; a tenant not listed has none).
    pub tenant_ttl_secs: BTreeMap<String, u64>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            node_id: DEFAULT_NODE_ID.to_owned(),
            durability: Durability::Sync,
            default_consistency: pb::ConsistencyLevel::ConsistencyOne,
            query_max_hops: 1,
            query_max_candidates: 1000,
            query_max_expansion_nodes: 1000,
            page_tokens: PageTokenKey::default(),
            tenant_ttl_secs: BTreeMap::new(),
        }
    }
}

/// Lifecycle of the store behind the service.
#[derive(Debug, Default)]
struct ServiceState {
    /// Set once the store is open.
    store: OnceLock<Arc<UnifiedStore>>,
    /// Set once the store is open: what every data RPC goes through.
    data: OnceLock<DataPath>,
    /// Set when the node is a member of a ring (`[cluster] enabled`).
    member: OnceLock<RingMember>,
    /// Set when a graceful shutdown began.
    stopping: AtomicBool,
}

/// What every node serves its data through: writes and point reads through the coordinator at
/// the request's consistency level, queries, traversals, scans and tenant figures through the
/// cluster-wide reads. On a node without `[cluster]`, a ring of one ([`DataPath::ring_of_one`]).
#[derive(Clone, Debug)]
pub struct DataPath {
    /// Writes and point reads at a consistency level.
    coordinator: Coordinator,
    /// Queries, traversals, scans and tenant figures over every range.
    reads: ClusterQuery,
    /// Whether query and traversal replies carry the read's coverage (and, with `explain`, its
    /// profile): a ring member's do; a ring of one's do not, its one range being always its
    /// own (the replies of a node without `[cluster]` keep their shape, WIRE.md).
    reports_coverage: bool,
}

impl DataPath {
    /// The data path of a member of a ring: its coordinator and cluster-wide reads.
    pub fn ring(coordinator: Coordinator, reads: ClusterQuery) -> Self {
        Self {
            coordinator,
            reads,
            reports_coverage: true,
        }
    }

    /// The data path of a node without `[cluster]`: a ring of one over `store`, named by
    /// `options.node_id`, writing with `options.durability`.
    pub fn ring_of_one(store: Arc<UnifiedStore>, options: &ServiceOptions) -> Self {
        let RingOfOne { coordinator, reads } =
            RingOfOne::new(&options.node_id, store, options.durability);
        Self {
            coordinator,
            reads,
            reports_coverage: false,
        }
    }
}

/// What only a member of a ring (`[cluster]`) has: the operator actions over the replicas it
/// holds and over the ring's topology.
#[derive(Clone, Debug)]
pub struct RingMember {
    /// Anti-entropy repair of the ranges this node replicates.
    pub repair: RangeRepair,
    /// Rebuilds of this node's replicas by range streaming.
    pub rebuild: ReplicaRebuild,
    /// The topology log: decommission, removenode and cleanup.
    pub topology: TopologyLog,
}

/// The gRPC service; cheap to clone (every clone shares the store, keys and state).
#[derive(Clone, Debug)]
pub struct AlliDbService {
    state: Arc<ServiceState>,
    auth: Arc<Authenticator>,
    options: Arc<ServiceOptions>,
}

fn cluster_level(level: pb::ConsistencyLevel) -> ConsistencyLevel {
    match level {
        pb::ConsistencyLevel::ConsistencyOne => ConsistencyLevel::One,
        pb::ConsistencyLevel::ConsistencyQuorum => ConsistencyLevel::Quorum,
        pb::ConsistencyLevel::ConsistencyAll => ConsistencyLevel::All,
    }
}

/// What a multi-entity write did: the ids written and `(entity id, reason)` per failure.
#[derive(Debug, Default)]
struct WriteOutcome {
    written: Vec<String>,
    failures: Vec<(String, String)>,
}

impl AlliDbService {
    /// The default time to live of `tenant`'s entities, in seconds (0: none).
    fn default_ttl_secs(&self, tenant: &str) -> u64 {
        self.options
            .tenant_ttl_secs
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }
}

fn now_nanos() -> i64 {
    i64::try_from(allidb_storage::hlc::wall_micros())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

/// True when the store refused the request itself (the caller's fault), not the server.
fn is_caller_error(error: &allidb_index::Error) -> bool {
    matches!(
        error,
        allidb_index::Error::InvalidArgument(_)
            | allidb_index::Error::DimensionMismatch { .. }
            | allidb_index::Error::Storage(allidb_storage::Error::InvalidArgument(_))
    )
}

fn graph_direction(direction: pb::Direction) -> graph::Direction {
    match direction {
        pb::Direction::Out => graph::Direction::Out,
        pb::Direction::In => graph::Direction::In,
        pb::Direction::Both => graph::Direction::Both,
    }
}

/// Traversal filters of a request: an empty relation list follows every relation, and a zero
/// `min_weight` (proto3's "unset") sets no minimum.
fn traversal_filters(relations: &[String], min_weight: f64) -> (Option<Vec<String>>, f32) {
    let relations = (!relations.is_empty()).then(|| relations.to_vec());
    let min_weight = if min_weight == 0.0 {
        f32::NEG_INFINITY
    } else {
        min_weight as f32
    };
    (relations, min_weight)
}

/// The `(start, resume_after, end)` store arguments of a validated scan range: the store scans
/// `start <= id < end`; an exclusive lower bound is read inclusively and its first id skipped.
fn scan_range(params: &validate::ScanParams) -> (Option<String>, Option<String>, Option<String>) {
    let (start, resume_after) = match &params.lower {
        Bound::Included(id) => (Some(id.clone()), None),
        Bound::Excluded(id) => (Some(id.clone()), Some(id.clone())),
        Bound::Unbounded => (None, None),
    };
    let end = match &params.upper {
        Bound::Included(id) | Bound::Excluded(id) => Some(id.clone()),
        Bound::Unbounded => None,
    };
    (start, resume_after, end)
}

impl AlliDbService {
    /// A service over an open store, as a node without `[cluster]` (a ring of one).
    pub fn new(
        store: Arc<UnifiedStore>,
        auth: Arc<Authenticator>,
        options: ServiceOptions,
    ) -> Self {
        let service = Self::starting(auth, options);
        let data = DataPath::ring_of_one(store.clone(), &service.options);
        // A fresh state has no store and no data path yet, so these sets cannot fail.
        let _ = service.state.store.set(store);
        let _ = service.state.data.set(data);
        service
    }

    /// A service whose store is still opening: every RPC but `HealthCheck` answers
    /// `UNAVAILABLE` until [`AlliDbService::attach_store`] (and, for the data RPCs,
    /// [`AlliDbService::attach_data_path`]).
    pub fn starting(auth: Arc<Authenticator>, options: ServiceOptions) -> Self {
        Self {
            state: Arc::new(ServiceState::default()),
            auth,
            options: Arc::new(options),
        }
    }

    /// Starts serving from `store`; an error returns the store when one is already attached.
    pub fn attach_store(&self, store: Arc<UnifiedStore>) -> Result<(), Arc<UnifiedStore>> {
        self.state.store.set(store)
    }

    /// The store, once attached.
    pub fn store(&self) -> Option<Arc<UnifiedStore>> {
        self.state.store.get().cloned()
    }

    /// Starts serving the data RPCs through `data` (a ring's coordinator, or a node's ring of
    /// one). An error returns the path when one is already attached.
    pub fn attach_data_path(&self, data: DataPath) -> Result<(), Box<DataPath>> {
        self.state.data.set(data).map_err(Box::new)
    }

    /// Makes this node a member of a ring for the operator actions (repair, rebuild, topology
    /// changes). An error returns the member when one is already attached.
    pub fn attach_ring_member(&self, member: RingMember) -> Result<(), Box<RingMember>> {
        self.state.member.set(member).map_err(Box::new)
    }

    /// The data path, or `UNAVAILABLE` while the store is still opening.
    fn data_path(&self) -> Result<&DataPath, Status> {
        self.state
            .data
            .get()
            .ok_or_else(|| Status::unavailable("the store is still opening; retry shortly"))
    }

    fn coordinator(&self) -> Result<&Coordinator, Status> {
        self.data_path().map(|data| &data.coordinator)
    }

    /// Checks a request's `filter` against the tenant's attribute types, on a ring also
    /// against the types its log recorded ([`Coordinator::check_filter`]); nothing to check
    /// before the data path is attached (the request then fails on it).
    fn check_filter(
        &self,
        tenant: &str,
        filter: &allidb_index::Filter,
    ) -> allidb_index::Result<()> {
        match self.data_path() {
            Ok(data) => data.coordinator.check_filter(tenant, filter),
            Err(_) => Ok(()),
        }
    }

    fn cluster_reads(&self) -> Result<&ClusterQuery, Status> {
        self.data_path().map(|data| &data.reads)
    }

    /// `report` when replies carry the read's coverage ([`DataPath`]).
    fn reported<'a>(&self, report: &'a ReadReport) -> Option<&'a ReadReport> {
        self.data_path()
            .is_ok_and(|data| data.reports_coverage)
            .then_some(report)
    }

    /// The checked consistency level of a request (`level` 0: the server's default).
    fn consistency(&self, level: i32) -> Result<ConsistencyLevel, Status> {
        validate::consistency(level, self.options.default_consistency).map(cluster_level)
    }

    /// Marks the service as shutting down: `HealthCheck` reports it; requests are still served
    /// so in-flight work can finish.
    pub fn begin_shutdown(&self) {
        self.state.stopping.store(true, Ordering::Release);
    }

    /// The service's options.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The caller of `request`, who must hold `role`.
    fn authorize<T>(&self, request: &Request<T>, role: Role) -> Result<Principal, Status> {
        let key = Authenticator::key_from_metadata(request.metadata());
        let caller = self.auth.authenticate(key)?;
        caller.require(role)?;
        Ok(caller)
    }

    /// The ring membership and the tenant (`None`: every tenant) of an operator action over
    /// the ranges this node replicates (`what` names it in messages, e.g. "a repair"): every
    /// tenant needs an operator key, and a node without `[cluster]` has no replicas.
    fn ring_operation(
        &self,
        caller: &Principal,
        tenant_id: String,
        what: &str,
    ) -> Result<(&RingMember, Option<String>), Status> {
        let scope = admin::tenant_scope(caller, self.auth.enabled());
        let tenant = match tenant_id.is_empty() {
            true if scope != admin::TenantScope::All => {
                return Err(Status::permission_denied(format!(
                    "tenant_id: {what} of every tenant needs an operator key (an admin key of \
                     tenant \"*\"); name this key's tenant to limit it to that tenant"
                )));
            }
            true => None,
            false => {
                scope.check(&tenant_id)?;
                Some(tenant_id)
            }
        };
        let ring = self.state.member.get().ok_or_else(|| {
            Status::failed_precondition(format!(
                "this node is not part of a ring ([cluster] is off): {what} needs replicas, \
                 a single node has none"
            ))
        })?;
        Ok((ring, tenant))
    }

    /// The figures of `tenant` (`None`: of every tenant) over the whole ring (each entity
    /// counted once), with every node's own figures when `per_node` (a node without
    /// `[cluster]`: itself, named by `server.node_id`).
    async fn tenant_listing(
        &self,
        tenant: Option<String>,
        per_node: bool,
    ) -> Result<RingTenants, Status> {
        self.cluster_reads()?
            .tenants(tenant.as_deref(), per_node)
            .await
            .map_err(|e| errors::cluster_status("tenant stats", e))
    }

    /// The open store, or `UNAVAILABLE` while it is still opening.
    fn open_store(&self) -> Result<Arc<UnifiedStore>, Status> {
        self.store()
            .ok_or_else(|| Status::unavailable("the store is still opening; retry shortly"))
    }

    /// Runs `call` on the store, which may block (fsync, disk reads, index search), inside a
    /// `store` span (a stage of the request's trace). On the daemon's multi-threaded runtime it
    /// runs in place ([`tokio::task::block_in_place`]: the worker's other tasks move to another
    /// thread), which saves the two thread hand-offs of `spawn_blocking` on every request; on a
    /// current-thread runtime (embedders, tests) it goes to the blocking pool. Only for what
    /// acts on this node's store itself (checkpoints, compactions, the compatibility
    /// `Replica*` RPCs): data RPCs go through the data path.
    async fn blocking<T, F>(&self, operation: &'static str, call: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&UnifiedStore) -> allidb_index::Result<T> + Send + 'static,
    {
        let store = self.open_store()?;
        let span = tracing::debug_span!("store", operation);
        let result = match tokio::runtime::Handle::current().runtime_flavor() {
            RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(move || span.in_scope(|| call(&store)))
            }
            _ => tokio::task::spawn_blocking(move || span.in_scope(|| call(&store)))
                .await
                .map_err(|e| errors::internal(operation, &e))?,
        };
        result.map_err(|e| errors::store_status(operation, e))
    }

    /// Validates and writes `entities` (request path `field`) for `tenant` at `level`, each on
    /// its own: an invalid entity fails alone. The valid ones go to the coordinator in one
    /// batch; when it refuses the batch for one entity's content (e.g. a dimension mismatch),
    /// each is retried alone so only the offending ones fail. A server or replication failure
    /// fails the whole call.
    async fn write_entities(
        &self,
        tenant: &str,
        field: &str,
        entities: &[pb::Entity],
        mode: PutMode,
        level: ConsistencyLevel,
    ) -> Result<WriteOutcome, Status> {
        let coordinator = self.coordinator()?;
        let now = now_nanos();
        let mut outcome = WriteOutcome::default();
        let mut writes: Vec<EntityWrite> = Vec::with_capacity(entities.len());
        tracing::debug_span!("validate").in_scope(|| {
            for (index, entity) in entities.iter().enumerate() {
                let written = convert::entity_write(
                    &format!("{field}[{index}]"),
                    entity,
                    tenant,
                    now,
                    self.default_ttl_secs(tenant),
                );
                match written {
                    Ok(write) => writes.push(write),
                    Err(status) => outcome
                        .failures
                        .push((entity.entity_id.clone(), status.message().to_owned())),
                }
            }
        });
        if writes.is_empty() {
            return Ok(outcome);
        }
        let caller_error = |e: &allidb_cluster::ClusterError| matches!(e, allidb_cluster::ClusterError::Store(e) if is_caller_error(e));
        let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
        match coordinator
            .put_entities_as(tenant, writes.clone(), mode, level)
            .await
        {
            Ok(()) => outcome.written = ids,
            Err(e) if caller_error(&e) && writes.len() > 1 => {
                for write in writes {
                    let id = write.id.clone();
                    match coordinator
                        .put_entities_as(tenant, vec![write], mode, level)
                        .await
                    {
                        Ok(()) => outcome.written.push(id),
                        Err(e) if caller_error(&e) => outcome.failures.push((id, e.to_string())),
                        Err(e) => return Err(errors::cluster_status("write entities", e)),
                    }
                }
            }
            Err(e) if caller_error(&e) => outcome.failures.push((ids[0].clone(), e.to_string())),
            Err(e) => return Err(errors::cluster_status("write entities", e)),
        }
        Ok(outcome)
    }
}

/// Runs a request's validation inside a `validate` span (a stage of the request's trace).
fn validation_stage<T>(validate: impl FnOnce() -> Result<T, Status>) -> Result<T, Status> {
    tracing::debug_span!("validate").in_scope(validate)
}

/// `entity "id": reason` for one failed entity of a multi-entity write.
fn failure_message(id: &str, reason: &str) -> String {
    format!("entity {id:?}: {reason}")
}

#[tonic::async_trait]
impl AlliDb for AlliDbService {
    async fn put_entity(
        &self,
        request: Request<pb::PutEntityRequest>,
    ) -> Result<Response<pb::PutEntityResponse>, Status> {
        self.put_entity_rpc(request).await
    }

    async fn batch_put_entities(
        &self,
        request: Request<pb::BatchPutEntitiesRequest>,
    ) -> Result<Response<pb::BatchPutEntitiesResponse>, Status> {
        self.batch_put_entities_rpc(request).await
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        self.query_rpc(request).await
    }

    async fn range_scan(
        &self,
        request: Request<pb::RangeScanRequest>,
    ) -> Result<Response<pb::RangeScanResponse>, Status> {
        self.range_scan_rpc(request).await
    }

    async fn replica_read(
        &self,
        request: Request<pb::ReplicaReadRequest>,
    ) -> Result<Response<pb::ReplicaReadResponse>, Status> {
        self.replica_read_rpc(request).await
    }

    async fn replica_write(
        &self,
        request: Request<pb::ReplicaWriteRequest>,
    ) -> Result<Response<pb::ReplicaWriteResponse>, Status> {
        self.replica_write_rpc(request).await
    }

    async fn health_check(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        self.health_check_rpc(_request).await
    }

    async fn get_entity(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::GetEntityResponse>, Status> {
        self.get_entity_rpc(request).await
    }

    async fn get_entities(
        &self,
        request: Request<pb::GetEntitiesRequest>,
    ) -> Result<Response<pb::GetEntitiesResponse>, Status> {
        self.get_entities_rpc(request).await
    }

    async fn delete_entity(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> Result<Response<pb::DeleteEntityResponse>, Status> {
        self.delete_entity_rpc(request).await
    }

    async fn add_edges(
        &self,
        request: Request<pb::AddEdgesRequest>,
    ) -> Result<Response<pb::AddEdgesResponse>, Status> {
        self.add_edges_rpc(request).await
    }

    async fn remove_edges(
        &self,
        request: Request<pb::RemoveEdgesRequest>,
    ) -> Result<Response<pb::RemoveEdgesResponse>, Status> {
        self.remove_edges_rpc(request).await
    }

    async fn traverse(
        &self,
        request: Request<pb::TraverseRequest>,
    ) -> Result<Response<pb::TraverseResponse>, Status> {
        self.traverse_rpc(request).await
    }

    async fn bulk_put_entities(
        &self,
        request: Request<Streaming<pb::BulkPutEntitiesRequest>>,
    ) -> Result<Response<pb::BulkPutEntitiesResponse>, Status> {
        self.bulk_put_entities_rpc(request).await
    }

    async fn checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        self.checkpoint_rpc(request).await
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.list_tenants_rpc(request).await
    }

    async fn get_tenant_stats(
        &self,
        request: Request<pb::GetTenantStatsRequest>,
    ) -> Result<Response<pb::GetTenantStatsResponse>, Status> {
        self.get_tenant_stats_rpc(request).await
    }

    async fn repair(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::RepairResponse>, Status> {
        self.repair_rpc(request).await
    }

    async fn rebuild(
        &self,
        request: Request<pb::RebuildRequest>,
    ) -> Result<Response<pb::RebuildResponse>, Status> {
        self.rebuild_rpc(request).await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        self.compact_rpc(request).await
    }

    async fn decommission(
        &self,
        request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        self.decommission_rpc(request).await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        self.remove_node_rpc(request).await
    }

    async fn cleanup(
        &self,
        request: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        self.cleanup_rpc(request).await
    }

    async fn drop_tenant(
        &self,
        request: Request<pb::DropTenantRequest>,
    ) -> Result<Response<pb::DropTenantResponse>, Status> {
        self.drop_tenant_rpc(request).await
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchRequest>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        self.query_batch_rpc(request).await
    }

    async fn delete_by_source(
        &self,
        request: Request<pb::DeleteBySourceRequest>,
    ) -> Result<Response<pb::DeleteBySourceResponse>, Status> {
        self.delete_by_source_rpc(request).await
    }

    async fn replace_source(
        &self,
        request: Request<pb::ReplaceSourceRequest>,
    ) -> Result<Response<pb::ReplaceSourceResponse>, Status> {
        self.replace_source_rpc(request).await
    }

    async fn delete_by_filter(
        &self,
        request: Request<pb::DeleteByFilterRequest>,
    ) -> Result<Response<pb::DeleteByFilterResponse>, Status> {
        self.delete_by_filter_rpc(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_ranges_resume_after_the_token_id() {
        let params = validate::ScanParams {
            lower: Bound::Excluded("k".into()),
            upper: Bound::Excluded("z".into()),
            limit: 5,
            expression: None,
            level: pb::ConsistencyLevel::ConsistencyOne,
        };
        assert_eq!(
            scan_range(&params),
            (Some("k".into()), Some("k".into()), Some("z".into()))
        );
        let params = validate::ScanParams {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            limit: 5,
            expression: None,
            level: pb::ConsistencyLevel::ConsistencyOne,
        };
        assert_eq!(scan_range(&params), (None, None, None));
    }

    #[test]
    fn traversal_filters_treat_zero_as_unset() {
        assert_eq!(traversal_filters(&[], 0.0), (None, f32::NEG_INFINITY));
        assert_eq!(
            traversal_filters(&["r".to_owned()], 0.5),
            (Some(vec!["r".to_owned()]), 0.5)
        );
    }
}
