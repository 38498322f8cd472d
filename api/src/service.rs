//! The `allidb.AlliDB` gRPC service (WIRE.md §1): every RPC of `proto/allidb.proto` on top of the
//! node-local [`UnifiedStore`].
//!
//! Each handler runs the same steps: authenticate the `x-allidb-api-key` metadata and check the
//! role the RPC needs (read: gets, scans, queries, traversals; write: puts, deletes, edges;
//! admin: the compatibility `Replica*` RPCs, `Checkpoint` and `Compact` ([`crate::admin`]); `HealthCheck`
//! needs no key), validate the request
//! ([`crate::validate`], [`crate::convert`]), then call the store on the blocking thread pool
//! (store calls block on I/O and fsync) and map its errors ([`crate::errors`]). `Query` and
//! `QueryBatch` share their validation, store request and reply conversion; a batch runs its
//! queries in chunks on the blocking pool, one chunk per core.
//!
//! Invariants: the tenant of every store call is the authenticated caller's, never a request
//! field (tenant fields are only checked against it); writes use the configured durability, so
//! a reply means the write is durable at that level (a single node satisfies every consistency
//! level with its local write). While the store is still opening every RPC but `HealthCheck`
//! answers `UNAVAILABLE`.
//!
//! Must never: block an async worker on the store, answer another tenant's data, or put server
//! internals (paths, other tenants' keys) into a status message.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use allidb_cluster::consistency::ConsistencyLevel;
use allidb_cluster::coordinator::Coordinator;
use allidb_cluster::query::report::ReadReport;
use allidb_cluster::query::tenants::{NodeTenants, RingTenants};
use allidb_cluster::query::wire::IdRange;
use allidb_cluster::query::{ClusterQuery, ReadOptions};
use allidb_cluster::repair::{RangeRepair, RepairOptions};
use allidb_cluster::ring::TokenSpan;
use allidb_cluster::stream::rebuild::ReplicaRebuild;
use allidb_cluster::topology::TopologyLog;
use allidb_cluster::topology::leave::MovementEnd;
use allidb_cluster::topology::state::MovementKind;
use allidb_index::filter::EntitySubject;
use allidb_index::graph::{self, TraversalOptions};
use allidb_index::query::{QueryPlan, ScoreWeights};
use allidb_index::{Filter, PlanReport, QueryHit, QueryReply, QueryRequest, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::cell::EntityWrite;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Principal, Role};
use crate::pb::allidb_server::AlliDb;
use crate::{admin, context, convert, errors, pb, validate};
use tokio::runtime::RuntimeFlavor;

/// The version `HealthCheck` reports: the API crate's (the server's) version.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The id of this node when the configuration names none.
pub const DEFAULT_NODE_ID: &str = "local";

/// Most failures a `BulkPutEntities` reply lists (the counts cover all of them).
pub const MAX_BULK_FAILURES_LISTED: usize = 100;

/// Fewest queries of a `QueryBatch` per blocking task (see [`query_batch_tasks`]).
const MIN_QUERIES_PER_TASK: usize = 4;

/// Entities a filtered `RangeScan` reads per round until its page is full.
const FILTERED_SCAN_ROUND: usize = 1000;

/// The configuration values the service needs (filled by `allidbd` from its config).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceOptions {
    /// This node's id: `RangeScan.node_id` must be empty or this.
    pub node_id: String,
    /// Durability of every write (`storage.durability`).
    pub durability: Durability,
    /// Consistency level of requests that name none (`server.default_consistency`).
    pub default_consistency: pb::ConsistencyLevel,
    /// Graph expansion depth of queries that name none (`query.max_hops`).
    pub query_max_hops: u32,
    /// Most ANN seeds of one query (`query.max_candidates`).
    pub query_max_candidates: usize,
    /// Most entities one query's expansion visits (`query.max_expansion_nodes`).
    pub query_max_expansion_nodes: usize,
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
        }
    }
}

/// Lifecycle of the store behind the service.
#[derive(Debug, Default)]
struct ServiceState {
    /// Set once the store is open.
    store: OnceLock<Arc<UnifiedStore>>,
    /// Set when the node is part of a ring (`[cluster] enabled`): writes and point reads go
    /// through the coordinator at the request's consistency level, queries, traversals and
    /// scans through the cluster-wide reads.
    ring: OnceLock<RingAccess>,
    /// Set when a graceful shutdown began.
    stopping: AtomicBool,
}

/// How this node reaches the ring it is part of.
#[derive(Clone, Debug)]
pub struct RingAccess {
    /// Writes and point reads at a consistency level.
    pub coordinator: Coordinator,
    /// Queries, traversals and scans over every range.
    pub reads: ClusterQuery,
    /// Anti-entropy repair of the ranges this node replicates.
    pub repair: RangeRepair,
    /// Rebuilds of this node's replicas by range streaming.
    pub rebuild: ReplicaRebuild,
    /// The topology log: decommission and removenode.
    pub topology: TopologyLog,
}

/// The gRPC service; cheap to clone (every clone shares the store, keys and state).
#[derive(Clone, Debug)]
pub struct AlliDbService {
    state: Arc<ServiceState>,
    auth: Arc<Authenticator>,
    options: Arc<ServiceOptions>,
}

/// How a write must be acknowledged: the local durability, and on a ring the consistency level.
#[derive(Clone, Copy, Debug)]
struct WriteConsistency {
    durability: Durability,
    level: ConsistencyLevel,
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

/// Hits of the vectors of one `QueryBatch`, in order, or the first failure with the index of
/// its vector.
type BatchHits = Result<Vec<QueryReply>, (usize, allidb_index::Error)>;

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
    /// A service over an open store.
    pub fn new(
        store: Arc<UnifiedStore>,
        auth: Arc<Authenticator>,
        options: ServiceOptions,
    ) -> Self {
        let service = Self::starting(auth, options);
        // A fresh state has no store yet, so this set cannot fail.
        let _ = service.state.store.set(store);
        service
    }

    /// A service whose store is still opening: every RPC but `HealthCheck` answers
    /// `UNAVAILABLE` until [`AlliDbService::attach_store`].
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

    /// Makes this node a coordinator of a ring: from now on writes and point reads are
    /// replicated at their consistency level, and queries, traversals and scans read every
    /// range. An error returns the access when one is already attached.
    pub fn attach_ring(&self, ring: RingAccess) -> Result<(), Box<RingAccess>> {
        self.state.ring.set(ring).map_err(Box::new)
    }

    fn coordinator(&self) -> Option<&Coordinator> {
        self.state.ring.get().map(|ring| &ring.coordinator)
    }

    fn cluster_reads(&self) -> Option<&ClusterQuery> {
        self.state.ring.get().map(|ring| &ring.reads)
    }

    /// The checked consistency level of a read (a single node satisfies every level).
    fn read_level(&self, level: i32) -> Result<ConsistencyLevel, Status> {
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

    /// The ring and the tenant (`None`: every tenant) of an operator action over the ranges
    /// this node replicates (`what` names it in messages, e.g. "a repair"): every tenant needs
    /// an operator key, and a node without `[cluster]` has no replicas.
    /// Runs a decommission or removenode of `host` and answers how it ended.
    async fn leave_ring(
        &self,
        ring: &RingAccess,
        host: allidb_cluster::ring::HostId,
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

    fn ring_operation(
        &self,
        caller: &Principal,
        tenant_id: String,
        what: &str,
    ) -> Result<(&RingAccess, Option<String>), Status> {
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
        let ring = self.state.ring.get().ok_or_else(|| {
            Status::failed_precondition(format!(
                "this node is not part of a ring ([cluster] is off): {what} needs replicas, \
                 a single node has none"
            ))
        })?;
        Ok((ring, tenant))
    }

    /// The figures of `tenant` (`None`: of every tenant): on a ring, of the whole ring (each
    /// entity counted once); on a single node, of its store; with every node's own figures
    /// when `per_node` (a single node: itself, named by `server.node_id`).
    async fn tenant_listing(
        &self,
        tenant: Option<String>,
        per_node: bool,
    ) -> Result<RingTenants, Status> {
        if let Some(reads) = self.cluster_reads() {
            return reads
                .tenants(tenant.as_deref(), per_node)
                .await
                .map_err(|e| errors::cluster_status("tenant stats", e));
        }
        let tenants = self
            .blocking("tenant stats", move |store| match tenant {
                Some(tenant) => Ok(store.tenant_stats(&tenant)?.into_iter().collect()),
                None => store.tenants(),
            })
            .await?;
        let nodes = match per_node {
            true => vec![NodeTenants {
                node: self.options.node_id.clone(),
                tenants: Ok(tenants.clone()),
            }],
            false => Vec::new(),
        };
        Ok(RingTenants { tenants, nodes })
    }

    /// How a write that asked for consistency level `level` (checked to be a known level) is
    /// acknowledged: a single node satisfies every level with its local durable write.
    fn write_consistency(&self, level: i32) -> Result<WriteConsistency, Status> {
        Ok(WriteConsistency {
            durability: self.options.durability,
            level: self.read_level(level)?,
        })
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
    /// current-thread runtime (embedders, tests) it goes to the blocking pool. Calls known to be
    /// short and free of I/O use [`Self::on_worker`] instead.
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

    /// Runs `call` on the store right on the async worker, inside a `store` span: only for
    /// calls that read in-memory indexes alone and take about a millisecond at most (see
    /// [`UnifiedStore::query_is_light`]). Handing those to another thread
    /// ([`Self::blocking`]) cost more than the call itself: a light query served 26% more
    /// queries per second on one core (docs/benchmarks-e2e.md).
    fn on_worker<T>(
        operation: &'static str,
        store: &UnifiedStore,
        call: impl FnOnce(&UnifiedStore) -> allidb_index::Result<T>,
    ) -> Result<T, Status> {
        tracing::debug_span!("store", operation)
            .in_scope(|| call(store))
            .map_err(|e| errors::store_status(operation, e))
    }

    /// Validates and writes `entities` (request path `field`) for `tenant`, each on its own: an
    /// invalid entity fails alone. The valid ones go to the store in one batch; when the store
    /// refuses that batch for one entity's content (e.g. a dimension mismatch), each is retried
    /// alone so only the offending ones fail. A server failure fails the whole call.
    async fn write_entities(
        &self,
        tenant: &str,
        field: &str,
        entities: &[pb::Entity],
        consistency: WriteConsistency,
    ) -> Result<WriteOutcome, Status> {
        let now = now_nanos();
        let mut outcome = WriteOutcome::default();
        let mut writes: Vec<EntityWrite> = Vec::with_capacity(entities.len());
        tracing::debug_span!("validate").in_scope(|| {
            for (index, entity) in entities.iter().enumerate() {
                match convert::entity_write(&format!("{field}[{index}]"), entity, tenant, now) {
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
        if let Some(coordinator) = self.coordinator() {
            let stored = replicate_entities(coordinator, tenant, writes, consistency.level).await?;
            outcome.written = stored.written;
            outcome.failures.extend(stored.failures);
            return Ok(outcome);
        }
        let durability = consistency.durability;
        let tenant = tenant.to_owned();
        let stored = self
            .blocking("write entities", move |store| {
                let mut stored = WriteOutcome::default();
                let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
                match store.put_entities(&tenant, writes.clone(), durability) {
                    Ok(_) => stored.written = ids,
                    Err(e) if is_caller_error(&e) && writes.len() > 1 => {
                        for write in writes {
                            let id = write.id.clone();
                            match store.put_entities(&tenant, vec![write], durability) {
                                Ok(_) => stored.written.push(id),
                                Err(e) if is_caller_error(&e) => {
                                    stored.failures.push((id, e.to_string()));
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Err(e) if is_caller_error(&e) => {
                        stored.failures.push((ids[0].clone(), e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
                Ok(stored)
            })
            .await?;
        outcome.written = stored.written;
        outcome.failures.extend(stored.failures);
        Ok(outcome)
    }

    /// The store's form of a validated `Query` (or of a `QueryBatch`'s options), without its
    /// vector: the plan with the server's defaults and limits, the filter and whether to return
    /// entities. `Query` and `QueryBatch` both build their store requests here, so one query
    /// means the same whichever way it is sent.
    /// Checks a query's seed count and node budget against the server's limits.
    fn check_query_budgets(&self, params: &validate::QueryParams) -> Result<(), Status> {
        let options = &self.options;
        if let Some(seeds) = params.seeds {
            validate::within_server_limit("seeds", seeds, options.query_max_candidates)?;
        }
        let node_budget = params
            .max_nodes
            .unwrap_or(options.query_max_expansion_nodes);
        validate::within_server_limit("max_nodes", node_budget, options.query_max_expansion_nodes)
    }

    fn store_query(
        &self,
        request: &pb::QueryRequest,
        params: &validate::QueryParams,
    ) -> QueryRequest {
        let options = &self.options;
        let (relations, min_weight) = traversal_filters(&request.relations, request.min_weight);
        let defaults = ScoreWeights::default();
        let plan = QueryPlan {
            k: params.k,
            expand_factor: params.expand_factor,
            seeds: params.seeds,
            max_candidates: options.query_max_candidates,
            ef: params.ef,
            traversal: TraversalOptions {
                max_hops: params.max_hops.unwrap_or(options.query_max_hops) as usize,
                fan_out: params.max_fan_out,
                node_budget: params
                    .max_nodes
                    .unwrap_or(options.query_max_expansion_nodes),
                relations,
                direction: graph_direction(params.direction),
                min_weight,
                edge_budget: params.max_edges,
            },
            weights: ScoreWeights {
                vector: params.weights.vector.unwrap_or(defaults.vector),
                graph: params.weights.graph.unwrap_or(defaults.graph),
                importance: params.weights.importance.unwrap_or(defaults.importance),
                recency: params.weights.recency.unwrap_or(defaults.recency),
                hop_decay: params.weights.hop_decay.unwrap_or(defaults.hop_decay),
            },
            ranking: params.ranking,
            keep_walk: params.include_context,
            explain: params.explain,
        };
        let filter = request.filter.clone().unwrap_or_default();
        QueryRequest {
            vector: Vec::new(),
            plan,
            filter: Filter {
                entity_types: filter.entity_types,
                attributes: filter.attributes,
                expression: params.expression.clone(),
            },
            include_entities: params.include_entity,
        }
    }

    /// Up to `fetch` entities of `tenant` with `start <= id < end` in id order: from the
    /// ring at `level` when there is one, else from the local store.
    async fn scan_round(
        &self,
        tenant: &str,
        start: Option<String>,
        end: Option<String>,
        fetch: usize,
        level: Option<ConsistencyLevel>,
    ) -> Result<Vec<allidb_storage::cell::Entity>, Status> {
        match (self.cluster_reads(), level) {
            (Some(reads), Some(level)) => reads
                .scan(tenant, IdRange { start, end }, fetch, level)
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

    /// Runs `template` once per vector of `vectors` for `tenant`: the vectors are cut into
    /// [`query_batch_tasks`] consecutive chunks, each run on the blocking pool (so the chunks
    /// search on different cores and no async worker is held), inside a `store` span each. The
    /// hits come back in vector order; a failed query fails the call, its status naming the
    /// vector (`vectors[i]: ...`).
    async fn query_vectors(
        &self,
        tenant: String,
        template: QueryRequest,
        vectors: Vec<Vec<f32>>,
    ) -> Result<Vec<QueryReply>, Status> {
        const OPERATION: &str = "query batch";
        let store = self.open_store()?;
        let total = vectors.len();
        let chunk_len = total.div_ceil(query_batch_tasks(total)).max(1);
        let tenant: Arc<str> = tenant.into();
        let mut vectors = vectors.into_iter();
        let mut tasks = Vec::new();
        for first in (0..total).step_by(chunk_len) {
            let chunk: Vec<Vec<f32>> = vectors.by_ref().take(chunk_len).collect();
            let (store, tenant) = (Arc::clone(&store), Arc::clone(&tenant));
            let mut request = template.clone();
            let span = tracing::debug_span!("store", operation = OPERATION);
            tasks.push(tokio::task::spawn_blocking(move || -> BatchHits {
                span.in_scope(|| {
                    let mut hits = Vec::with_capacity(chunk.len());
                    for (offset, vector) in chunk.into_iter().enumerate() {
                        request.vector = vector;
                        let found = store
                            .query_with_context(&tenant, &request, false)
                            .map_err(|error| (first + offset, error))?;
                        hits.push(found);
                    }
                    Ok(hits)
                })
            }));
        }
        let mut hits = Vec::with_capacity(total);
        for task in tasks {
            let chunk = task
                .await
                .map_err(|error| errors::internal(OPERATION, &error))?
                .map_err(|(index, error)| {
                    let status = errors::store_status(OPERATION, error);
                    Status::new(
                        status.code(),
                        format!("vectors[{index}]: {}", status.message()),
                    )
                })?;
            hits.extend(chunk);
        }
        Ok(hits)
    }
}

/// A `QueryBatch` on a ring: the queries run over every range concurrently; a failed query
/// fails the call, its status naming the vector (`vectors[i]: ...`).
async fn ring_query_batch(
    reads: &ClusterQuery,
    tenant: &str,
    template: QueryRequest,
    vectors: Vec<Vec<f32>>,
    read: ReadOptions,
) -> Result<Vec<(Vec<QueryHit>, Option<ReadReport>)>, Status> {
    let queries = vectors.into_iter().map(|vector| {
        let request = QueryRequest {
            vector,
            ..template.clone()
        };
        async move { reads.query(tenant, &request, read, false).await }
    });
    futures_util::future::join_all(queries)
        .await
        .into_iter()
        .enumerate()
        .map(|(index, reply)| {
            reply
                .map(|(reply, report)| (reply.hits, Some(report)))
                .map_err(|error| {
                    let status = errors::cluster_status("query batch", error);
                    Status::new(
                        status.code(),
                        format!("vectors[{index}]: {}", status.message()),
                    )
                })
        })
        .collect()
}

/// Adds a ring read's coverage to `response`, and its profile when the request asked to
/// `explain`.
fn with_report(response: &mut pb::QueryResponse, report: Option<&ReadReport>, explain: bool) {
    if let Some(report) = report {
        response.coverage = Some(convert::coverage(&report.coverage));
        response.profile = explain.then(|| convert::read_profile(report));
    }
}

/// How many blocking tasks a batch of `queries` queries is spread over: one per core, but at
/// least [`MIN_QUERIES_PER_TASK`] queries each (below that the hand-off costs more than the
/// parallelism gains).
fn query_batch_tasks(queries: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    cores.min(queries.div_ceil(MIN_QUERIES_PER_TASK)).max(1)
}

/// The reply of one query: its hits as results (with their explanation when `explain`), and
/// the request's `trace_id`.
fn query_response(hits: Vec<QueryHit>, explain: bool, trace_id: String) -> pb::QueryResponse {
    let results: Vec<pb::QueryResult> = hits
        .into_iter()
        .map(|hit| {
            let result = hit.result;
            let explanation = explain.then(|| pb::QueryExplanation {
                vector_score: result.breakdown.vector,
                graph_score: result.breakdown.graph,
                importance_score: result.breakdown.importance,
                recency_score: result.breakdown.recency,
                path: Some(convert::graph_path(&result.entity_id, &result.path)),
                pagerank: result
                    .pagerank
                    .as_ref()
                    .map(|pagerank| pb::PageRankExplanation {
                        mass: pagerank.mass,
                        iterations: convert::count_i32(pagerank.iterations),
                        seed_shares: pagerank
                            .seed_shares
                            .iter()
                            .map(|(seed, share)| pb::SeedShare {
                                entity_id: seed.to_string(),
                                share: *share,
                            })
                            .collect(),
                    }),
            });
            pb::QueryResult {
                entity_id: result.entity_id.to_string(),
                score: result.score,
                entity: hit.entity.as_ref().map(convert::entity_to_proto),
                explanation,
            }
        })
        .collect();
    pb::QueryResponse {
        total_results: convert::count_i32(results.len()),
        results,
        trace_id,
        context: None,
        coverage: None,
        profile: None,
        filter_plan: None,
    }
}

/// [`AlliDbService::write_entities`] on a ring: the valid entities go to the coordinator in
/// one batch; when it refuses the batch for one entity's content, each is retried alone so only
/// the offending ones fail. A replication failure fails the whole call.
async fn replicate_entities(
    coordinator: &Coordinator,
    tenant: &str,
    writes: Vec<EntityWrite>,
    level: ConsistencyLevel,
) -> Result<WriteOutcome, Status> {
    let caller_error = |e: &allidb_cluster::ClusterError| matches!(e, allidb_cluster::ClusterError::Store(e) if is_caller_error(e));
    let mut stored = WriteOutcome::default();
    let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
    match coordinator
        .put_entities(tenant, writes.clone(), level)
        .await
    {
        Ok(()) => stored.written = ids,
        Err(e) if caller_error(&e) && writes.len() > 1 => {
            for write in writes {
                let id = write.id.clone();
                match coordinator.put_entities(tenant, vec![write], level).await {
                    Ok(()) => stored.written.push(id),
                    Err(e) if caller_error(&e) => stored.failures.push((id, e.to_string())),
                    Err(e) => return Err(errors::cluster_status("write entities", e)),
                }
            }
        }
        Err(e) if caller_error(&e) => stored.failures.push((ids[0].clone(), e.to_string())),
        Err(e) => return Err(errors::cluster_status("write entities", e)),
    }
    Ok(stored)
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
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let (consistency, write) = validation_stage(|| {
            validate::trace_id(&request.trace_id)?;
            let consistency = self.write_consistency(request.consistency_level)?;
            let entity = validate::require_entity(request.entity.as_ref())?;
            let write = convert::entity_write("entity", entity, &caller.tenant, now_nanos())?;
            Ok((consistency, write))
        })?;
        let entity_id = write.id.clone();
        let tenant = caller.tenant;
        match self.coordinator() {
            Some(coordinator) => coordinator
                .put_entities(&tenant, vec![write], consistency.level)
                .await
                .map_err(|e| errors::cluster_status("put entity", e))?,
            None => {
                self.blocking("put entity", move |store| {
                    store.put_entities(&tenant, vec![write], consistency.durability)
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

    async fn batch_put_entities(
        &self,
        request: Request<pb::BatchPutEntitiesRequest>,
    ) -> Result<Response<pb::BatchPutEntitiesResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        validate::trace_id(&request.trace_id)?;
        let consistency = self.write_consistency(request.consistency_level)?;
        validate::batch_len("entities", request.entities.len())?;
        let outcome = self
            .write_entities(&caller.tenant, "entities", &request.entities, consistency)
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

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let mut request = request.into_inner();
        let (level, params) = validation_stage(|| {
            let level = self.read_level(request.consistency_level)?;
            Ok((level, validate::query(&request)?))
        })?;
        validation_stage(|| self.check_query_budgets(&params))?;
        let mut store_request = self.store_query(&request, &params);
        store_request.vector = std::mem::take(&mut request.query_vector);
        let tenant = caller.tenant;
        let chunks = params.include_context && params.context_chunks;
        let (reply, report) = if let Some(reads) = self.cluster_reads() {
            let read = ReadOptions {
                level,
                allow_partial: request.allow_partial,
            };
            if let Some(store) = self.store() {
                store
                    .check_filter(&tenant, &store_request.filter)
                    .map_err(|e| errors::store_status("query", e))?;
            }
            let (reply, report) = reads
                .query(&tenant, &store_request, read, chunks)
                .await
                .map_err(|e| errors::cluster_status("query", e))?;
            (reply, Some(report))
        } else {
            let store = self.open_store()?;
            let reply = if !chunks && store.query_is_light(&tenant, &store_request) {
                Self::on_worker("query", &store, |store| {
                    store.query_with_context(&tenant, &store_request, false)
                })?
            } else {
                self.blocking("query", move |store| {
                    store.query_with_context(&tenant, &store_request, chunks)
                })
                .await?
            };
            (reply, None)
        };
        let mut response = query_response(reply.hits, params.explain, request.trace_id);
        with_report(&mut response, report.as_ref(), params.explain);
        response.filter_plan = reply.plan.as_ref().map(crate::filter::plan_to_proto);
        response.context = reply
            .context
            .map(|context| context::to_proto(context, params.max_context_bytes));
        tracing::debug!(trace_id = %response.trace_id, results = response.results.len(), "query served");
        Ok(Response::new(response))
    }

    async fn range_scan(
        &self,
        request: Request<pb::RangeScanRequest>,
    ) -> Result<Response<pb::RangeScanResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let params = validate::range_scan(&request, &caller.tenant)?;
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
        let level = match self.cluster_reads() {
            Some(_) => Some(self.read_level(request.consistency_level)?),
            None => None,
        };
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
                .scan_round(&tenant, start.clone(), end.clone(), fetch, level)
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
            Some(last) if more => validate::encode_page_token(&last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::RangeScanResponse {
            entities: entities.iter().map(convert::entity_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn replica_read(
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

    async fn replica_write(
        &self,
        request: Request<pb::ReplicaWriteRequest>,
    ) -> Result<Response<pb::ReplicaWriteResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let key = validate::replica_key(&request.key, &request.tenant_id, &caller.tenant)?;
        let entity = validate::replica_value(&request.value, &key)?;
        let write = convert::entity_write("value", &entity, &key.tenant, now_nanos())?;
        let durability = self.options.durability;
        self.blocking("replica write", move |store| {
            store.put_entities(&key.tenant, vec![write], durability)
        })
        .await?;
        Ok(Response::new(pb::ReplicaWriteResponse { success: true }))
    }

    async fn health_check(
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

    async fn get_entity(
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

    async fn get_entities(
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

    async fn delete_entity(
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

    async fn add_edges(
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

    async fn remove_edges(
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

    async fn traverse(
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
                    level,
                    allow_partial: request.allow_partial,
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

    async fn bulk_put_entities(
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
                .write_entities(&caller.tenant, "entities", &chunk.entities, consistency)
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

    async fn checkpoint(
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

    async fn list_tenants(
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

    async fn get_tenant_stats(
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

    async fn repair(
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

    async fn rebuild(
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

    async fn decommission(
        &self,
        request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let (ring, _) = self.ring_operation(&caller, String::new(), "a decommission")?;
        let host = ring.topology.host();
        self.leave_ring(ring, host, MovementKind::Decommission, false)
            .await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let caller = self.authorize(&request, Role::Admin)?;
        let request = request.into_inner();
        let (ring, _) = self.ring_operation(&caller, String::new(), "a removenode")?;
        let host = request
            .host_id
            .parse()
            .map_err(|e| Status::invalid_argument(format!("host_id: {e}")))?;
        self.leave_ring(ring, host, MovementKind::RemoveNode, request.ignore_dead)
            .await
    }

    async fn compact(
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

    async fn drop_tenant(
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
        let consistency = self.write_consistency(request.consistency_level)?;
        let tenant = request.tenant_id;
        let dropping = tenant.clone();
        let dropped = match self.coordinator() {
            Some(coordinator) => coordinator
                .drop_tenant(&tenant, consistency.level)
                .await
                .map_err(|e| errors::cluster_status("drop tenant", e))?,
            None => {
                self.blocking("drop tenant", move |store| store.drop_tenant(&dropping))
                    .await?
            }
        };
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

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchRequest>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let options = request.options.unwrap_or_default();
        let (level, params) = validation_stage(|| {
            let level = self
                .read_level(options.consistency_level)
                .map_err(|status| validate::in_field("options", status))?;
            let params = validate::query_batch(&options, &request.vectors)?;
            self.check_query_budgets(&params)
                .map_err(|status| validate::in_field("options", status))?;
            if params.include_context {
                return Err(Status::invalid_argument(
                    "options.include_context is not supported by QueryBatch: send one Query per \
                     question for a context reply",
                ));
            }
            Ok((level, params))
        })?;
        let template = self.store_query(&options, &params);
        let vectors = request.vectors.into_iter().map(|v| v.values).collect();
        let read = ReadOptions {
            level,
            allow_partial: options.allow_partial,
        };
        type Answer = (Vec<QueryHit>, Option<ReadReport>, Option<PlanReport>);
        let answers: Vec<Answer> = match self.cluster_reads() {
            Some(reads) => {
                if let Some(store) = self.store() {
                    store
                        .check_filter(&caller.tenant, &template.filter)
                        .map_err(|e| {
                            validate::in_field("options", errors::store_status("query batch", e))
                        })?;
                }
                ring_query_batch(reads, &caller.tenant, template, vectors, read)
                    .await?
                    .into_iter()
                    .map(|(hits, report)| (hits, report, None))
                    .collect()
            }
            None => self
                .query_vectors(caller.tenant, template, vectors)
                .await?
                .into_iter()
                .map(|reply| (reply.hits, None, reply.plan))
                .collect(),
        };
        let replies: Vec<pb::QueryResponse> = answers
            .into_iter()
            .map(|(hits, report, plan)| {
                let mut reply = query_response(hits, params.explain, options.trace_id.clone());
                with_report(&mut reply, report.as_ref(), params.explain);
                reply.filter_plan = plan.as_ref().map(crate::filter::plan_to_proto);
                reply
            })
            .collect();
        tracing::debug!(trace_id = %options.trace_id, queries = replies.len(), "query batch served");
        Ok(Response::new(pb::QueryBatchResponse {
            replies,
            trace_id: options.trace_id,
        }))
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
