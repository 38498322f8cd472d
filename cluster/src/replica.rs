//! This node as a replica: applying cells to the local store and answering partition reads,
//! for the local coordinator directly and for other nodes through the `Replica` gRPC service
//! (`proto/replica.proto`).
//!
//! Invariants: cells are applied with the timestamps they arrive with, through the storage
//! engine's batch path, so the index observers see them like local writes; a call is answered
//! only after its cells are as durable as `storage.durability` makes local writes, and its
//! tenant drops are on disk (a drop is always synced) and applied before its cells.
//!
//! Must never: serve a call whose cluster token does not verify or that is addressed to another
//! host (a stale address now served by this node), a stream chunk of a topology movement its
//! log closed, or block an async worker on the store.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use allidb_index::lexical::CorpusStats;
use allidb_index::store::{HopNode, HopRequest, QueryAnswer, SeedCandidates};
use allidb_index::{QueryRequest, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::partition::CellVersion;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::credentials::ClusterCredentials;
use crate::proto;
use crate::proto::replica_server::{Replica, ReplicaServer};
use crate::query::tenants::{self, CountRequest, Counts};
use crate::query::text::{self, CorpusRequest};
use crate::query::wire::{self, IdRange, SeedSearch};
use crate::repair::merkle::MerkleTree;
use crate::repair::pace::ScanPace;
use crate::repair::trees::{self, TreeShape};
use crate::repair::wire as repair_wire;
use crate::ring::{HostId, SpanIndex, token};
use crate::stream::chunk::{Chunk, SCAN_BYTES, read_chunk};
use crate::stream::wire::{self as stream_wire, ChunkRequest};
use crate::topology::fence::TopologyFence;
use crate::topology::refuse_left_sender;
use crate::topology::state::{StreamClosed, TopologyState};
use crate::{ClusterError, PROTOCOL_VERSION};

/// Most partitions one `ReadPartitions` call may ask for, and most nodes one `ExpandHop` call
/// may describe.
pub const MAX_PARTITIONS_PER_READ: usize = 1024;

/// Most ids one `ScanIds` call may ask for.
pub const MAX_SCAN_IDS: usize = 10_000;

/// Most leaf hashes one `MerkleTrees` answer carries (16 bytes each: 16 MiB).
pub const MAX_TREE_LEAVES: usize = 1 << 20;

/// The local store seen as one replica.
#[derive(Clone, Debug)]
pub struct LocalReplica {
    host: HostId,
    store: Arc<UnifiedStore>,
    durability: Durability,
    repair_pace: Arc<ScanPace>,
    /// Admits the writes planned on a ring ([`LocalReplica::apply_planned`]).
    fence: TopologyFence,
}

impl LocalReplica {
    /// The replica of host `host` over `store`, writing with `durability`, taking writes
    /// planned on a ring only through `fence`; its repair scans are not paced (see
    /// [`LocalReplica::with_repair_pace`]).
    pub fn new(
        host: HostId,
        store: Arc<UnifiedStore>,
        durability: Durability,
        fence: TopologyFence,
    ) -> Self {
        Self {
            host,
            store,
            durability,
            repair_pace: Arc::new(ScanPace::default()),
            fence,
        }
    }

    /// This replica with the scans it runs for anti-entropy (Merkle trees, the streams of
    /// differing leaves) reading at most `bytes_per_sec` together (0: no cap).
    pub fn with_repair_pace(mut self, bytes_per_sec: u64) -> Self {
        self.repair_pace = Arc::new(ScanPace::new(bytes_per_sec));
        self
    }

    /// The host this replica is.
    pub fn host(&self) -> HostId {
        self.host
    }

    /// The store.
    pub fn store(&self) -> &Arc<UnifiedStore> {
        &self.store
    }

    /// Applies `mutation` ([`in_place`]): its tenant drops (each durable, indexes rebuilt for
    /// what a drop leaves), then its cells with their own timestamps, as durable as
    /// `storage.durability` makes local writes.
    pub async fn apply(&self, mutation: ReplicaMutation) -> Result<(), ClusterError> {
        self.apply_as(mutation, self.durability).await
    }

    /// [`LocalReplica::apply`] for a write a coordinator planned on topology version
    /// `planned` (this node's own writes as a coordinator too): refused below the topology
    /// fence (`FAILED_PRECONDITION`), and counted as running until applied, so a barrier's
    /// drain waits for it (module [`crate::topology::fence`]).
    pub async fn apply_planned(
        &self,
        mutation: ReplicaMutation,
        planned: u64,
    ) -> Result<(), ClusterError> {
        let admitted = self.fence.admit_write(planned)?;
        let applied = self.apply(mutation).await;
        drop(admitted);
        applied
    }

    /// [`LocalReplica::apply`], the cells synced to disk before it returns whatever
    /// `storage.durability` says (a stream records its position only after this).
    pub async fn apply_synced(&self, mutation: ReplicaMutation) -> Result<(), ClusterError> {
        self.apply_as(mutation, Durability::Sync).await
    }

    async fn apply_as(
        &self,
        mutation: ReplicaMutation,
        durability: Durability,
    ) -> Result<(), ClusterError> {
        if mutation.drops.is_empty() && mutation.cells.is_empty() {
            return Ok(());
        }
        self.on_store("write", move |store| {
            for drop in &mutation.drops {
                store.drop_tenant_at(&drop.tenant, drop.ts)?;
            }
            if !mutation.cells.is_empty() {
                store
                    .engine()
                    .write(cells::versions_batch(mutation.cells), durability)?;
            }
            Ok(())
        })
        .await
    }

    /// What this replica holds of one partition ([`in_place`]).
    pub async fn partition(&self, tenant: &str, id: &str) -> Result<StoredPartition, ClusterError> {
        let partition = (tenant.to_owned(), id.to_owned());
        let mut read = self.partitions(vec![partition], usize::MAX).await?;
        read.pop()
            .expect("a read of one partition with no byte budget answers it")
    }

    /// What this replica holds of each partition `(tenant, id)`, in order ([`in_place`]): one
    /// result per partition (an invalid tenant or id fails only its own). Stops
    /// after the partition that brings the cells read past `byte_budget` (the first is always
    /// read), so the answer may be a prefix.
    pub async fn partitions(
        &self,
        partitions: Vec<(String, String)>,
        byte_budget: usize,
    ) -> Result<Vec<Result<StoredPartition, ClusterError>>, ClusterError> {
        let store = self.store.clone();
        in_place("read", move || {
            let drops = store.engine().tenant_drops();
            let mut read = Vec::with_capacity(partitions.len());
            let mut bytes = 0usize;
            for (tenant, id) in partitions {
                if bytes > byte_budget {
                    break;
                }
                let cells = allidb_storage::key::validate_tenant(&tenant)
                    .and_then(|()| allidb_storage::key::validate_partition_id(&id))
                    .and_then(|()| store.engine().partition_cells(&tenant, &id))
                    .map_err(|e| ClusterError::Store(e.into()));
                read.push(cells.map(|cells| {
                    bytes += cells.iter().map(cells::version_size).sum::<usize>();
                    StoredPartition {
                        cells,
                        tenant_dropped_at: drops.get(&tenant).map_or(0, |drop| drop.ts),
                    }
                }));
            }
            read
        })
        .await
    }
}

/// Runs `call`, which may block on the store (disk reads, fsync), without handing it to
/// another thread where it can: in place on a multi-threaded runtime
/// ([`tokio::task::block_in_place`]: this worker's other tasks move to another thread
/// meanwhile), on the blocking pool on a current-thread runtime (embedders, tests). A
/// coordinator's own replica is called for every read and write of a request (a ring of one's
/// for all of them), and a hand-off per call cost more than most calls; the reads of one
/// request then run one after another, as on a single node.
async fn in_place<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ClusterError> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(call)),
        _ => tokio::task::spawn_blocking(call)
            .await
            .map_err(|e| ClusterError::Protocol(format!("replica {what} task: {e}"))),
    }
}

impl LocalReplica {
    /// Runs `call` on the store ([`in_place`]).
    pub(crate) async fn on_store<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&UnifiedStore) -> allidb_index::Result<T> + Send + 'static,
    ) -> Result<T, ClusterError> {
        let store = self.store.clone();
        in_place(what, move || call(&store))
            .await?
            .map_err(ClusterError::Store)
    }

    /// Runs `read` over the in-memory indexes of `tenant`: right here on the async worker
    /// when the store says they are light to read (handing a light query to another thread
    /// costs more than the read), else as any store call ([`in_place`]).
    async fn on_indexes<T: Send + 'static>(
        &self,
        what: &'static str,
        tenant: &str,
        read: impl FnOnce(&UnifiedStore) -> allidb_index::Result<T> + Send + 'static,
    ) -> Result<T, ClusterError> {
        if self.store.index_reads_are_light(tenant) {
            return read(&self.store).map_err(ClusterError::Store);
        }
        self.on_store(what, read).await
    }

    /// A whole query from this replica's own indexes (for a coordinator holding every range).
    pub async fn answer(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<QueryAnswer, ClusterError> {
        let owned = tenant.to_owned();
        self.on_indexes("query", tenant, move |store| store.answer(&owned, &request))
            .await
    }

    /// A cluster-wide query's candidate search over everything this replica holds, with the
    /// candidates' complete steps when the search asks for them.
    pub async fn search_seeds(
        &self,
        tenant: &str,
        search: SeedSearch,
    ) -> Result<SeedCandidates, ClusterError> {
        let owned = tenant.to_owned();
        self.on_indexes("seed search", tenant, move |store| {
            let mut found = store.search_seeds(
                &owned,
                &search.vector,
                search.text.as_ref(),
                search.count,
                search.ef,
                &search.filter,
            )?;
            if let Some(steps) = &search.steps {
                let ids: BTreeSet<&str> = found
                    .vector
                    .iter()
                    .map(|c| &*c.hit.entity_id)
                    .chain(found.lexical.iter().map(|c| &*c.hit.entity_id))
                    .collect();
                let ids: Vec<&str> = ids.into_iter().collect();
                found.steps = store.complete_steps(&owned, &ids, steps)?;
            }
            Ok(found)
        })
        .await
    }

    /// One hop of a cluster-wide walk: what this replica holds of each node of `hop`.
    pub async fn expand_hop(
        &self,
        tenant: &str,
        hop: HopRequest,
    ) -> Result<Vec<HopNode>, ClusterError> {
        let owned = tenant.to_owned();
        self.on_indexes("hop", tenant, move |store| store.describe_hop(&owned, &hop))
            .await
    }

    /// Up to `limit` live entities this replica holds in `range`, in id order, from one
    /// snapshot of its store.
    pub async fn scan(
        &self,
        tenant: &str,
        range: IdRange,
        limit: usize,
    ) -> Result<Vec<allidb_storage::cell::Entity>, ClusterError> {
        let tenant = tenant.to_owned();
        self.on_store("scan", move |store| {
            store.scan(&tenant, range.start.as_deref(), range.end.as_deref(), limit)
        })
        .await
    }

    /// The ids this replica holds in `range`, in order, at most `limit`.
    pub async fn scan_ids(
        &self,
        tenant: &str,
        range: IdRange,
        limit: usize,
    ) -> Result<Vec<String>, ClusterError> {
        let tenant = tenant.to_owned();
        self.on_store("scan", move |store| {
            store.scan_ids(&tenant, range.start.as_deref(), range.end.as_deref(), limit)
        })
        .await
    }
}

impl LocalReplica {
    /// This replica's corpus statistics of `tenant` for a text query's terms, over the
    /// documents whose token falls in `request.spans`.
    pub async fn corpus_stats(
        &self,
        tenant: &str,
        request: CorpusRequest,
    ) -> Result<CorpusStats, ClusterError> {
        let owned = tenant.to_owned();
        self.on_indexes("corpus statistics", tenant, move |store| {
            let spans = SpanIndex::new(request.spans.iter().copied());
            store.corpus_stats(&owned, &request.terms, &|id| {
                spans.find(token(&owned, id)).is_some()
            })
        })
        .await
    }

    /// This replica's tenant figures over the partitions whose token falls in
    /// `request.spans` (and over everything it holds, when asked).
    pub async fn tenant_counts(&self, request: CountRequest) -> Result<Counts, ClusterError> {
        self.on_store("tenant counts", move |store| {
            let tenant = request.tenant.as_deref();
            let in_spans = match request.spans.is_empty() {
                true => Vec::new(),
                false => {
                    let spans = SpanIndex::new(request.spans.iter().copied());
                    store.tenants_where(tenant, &|t, id| spans.find(token(t, id)).is_some())?
                }
            };
            let node = match (request.node_totals, tenant) {
                (false, _) => None,
                (true, None) => Some(store.tenants()?),
                (true, Some(tenant)) => Some(store.tenant_stats(tenant)?.into_iter().collect()),
            };
            Ok(Counts { in_spans, node })
        })
        .await
    }
}

impl LocalReplica {
    /// This replica's Merkle trees of `shapes` (of `tenant`'s partitions only, when given) and
    /// its tenant drops (of `tenant` only, when given), from one pass over a snapshot.
    pub async fn merkle_trees(
        &self,
        tenant: Option<String>,
        shapes: Vec<TreeShape>,
    ) -> Result<(Vec<MerkleTree>, Vec<DroppedTenant>), ClusterError> {
        let (store, pace) = (self.store.clone(), self.repair_pace.clone());
        tokio::task::spawn_blocking(move || {
            let engine = store.engine();
            let drops = tenant_drops(engine, tenant.as_deref());
            let partitions = engine
                .partitions(tenant.as_deref())
                .map_err(|e| ClusterError::Store(e.into()))?;
            Ok((trees::build_trees(pace.paced(partitions), &shapes)?, drops))
        })
        .await
        .map_err(|e| ClusterError::Protocol(format!("replica Merkle tree task: {e}")))?
    }
}

impl LocalReplica {
    /// One chunk of a range stream from this replica (the partitions it holds in
    /// `request.spans` after `request.after`), from a snapshot taken now, and with the first
    /// chunk (no `after`) its tenant drops. The scan is paced when it serves a repair.
    pub async fn stream_chunk(
        &self,
        request: ChunkRequest,
    ) -> Result<(Chunk, Vec<DroppedTenant>), ClusterError> {
        let store = self.store.clone();
        let pace = match request.repair {
            true => self.repair_pace.clone(),
            false => Arc::new(ScanPace::default()),
        };
        tokio::task::spawn_blocking(move || {
            let engine = store.engine();
            let drops = match request.after {
                None => tenant_drops(engine, request.tenant.as_deref()),
                Some(_) => Vec::new(),
            };
            let after = request
                .after
                .as_ref()
                .map(|p| (p.tenant.as_str(), p.entity_id.as_str()));
            let partitions = engine
                .partitions_after(request.tenant.as_deref(), after)
                .map_err(|e| ClusterError::Store(e.into()))?;
            let spans = SpanIndex::new(request.spans.iter().copied());
            let scan_bytes = pace.chunk_scan_bytes(SCAN_BYTES);
            let partitions = pace.paced(partitions);
            let chunk = read_chunk(partitions, &spans, request.max_bytes, scan_bytes)?;
            Ok((chunk, drops))
        })
        .await
        .map_err(|e| ClusterError::Protocol(format!("replica stream task: {e}")))?
    }
}

/// The tenant drops `engine` holds (of `tenant` only, when given).
fn tenant_drops(engine: &allidb_storage::Engine, tenant: Option<&str>) -> Vec<DroppedTenant> {
    engine
        .tenant_drops()
        .iter()
        .map(|(name, drop)| DroppedTenant {
            tenant: String::from_utf8_lossy(name).into_owned(),
            ts: drop.ts,
        })
        .filter(|drop| tenant.is_none_or(|t| t == drop.tenant))
        .collect()
}

/// What a replica holds of one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPartition {
    /// The newest version of every cell, in key order (the cells its tenant's drop covers are
    /// not among them).
    pub cells: Vec<CellVersion>,
    /// The replica's drop of the partition's tenant (0: never dropped).
    pub tenant_dropped_at: u64,
}

/// The `allidb.cluster.v1.Replica` gRPC service over the local replica; cheap to clone. It is
/// served from the moment the gRPC port opens and answers `UNAVAILABLE` until the store is
/// open ([`ReplicaService::attach`]).
#[derive(Clone, Debug)]
pub struct ReplicaService {
    local: Arc<OnceLock<LocalReplica>>,
    /// The applied topology (attached with the store): which movement's stream chunks it
    /// serves.
    topology: Arc<OnceLock<watch::Receiver<Arc<TopologyState>>>>,
    credentials: Arc<ClusterCredentials>,
    max_clock_skew: Duration,
    fence: TopologyFence,
}

impl ReplicaService {
    /// A service checking `credentials`, refusing cells more than `max_clock_skew` ahead of
    /// this node's wall clock (`cluster.max_clock_skew_ms`) and writes and reads planned on a
    /// topology older than `fence`, with no store yet.
    pub fn new(
        credentials: Arc<ClusterCredentials>,
        max_clock_skew: Duration,
        fence: TopologyFence,
    ) -> Self {
        Self {
            local: Arc::new(OnceLock::new()),
            topology: Arc::new(OnceLock::new()),
            credentials,
            max_clock_skew,
            fence,
        }
    }

    /// The topology fence this service checks.
    pub fn fence(&self) -> &TopologyFence {
        &self.fence
    }

    /// Starts serving from `local`, with the topology this node applied as it changes; an
    /// error returns `local` when a replica is already attached.
    pub fn attach(
        &self,
        local: LocalReplica,
        topology: watch::Receiver<Arc<TopologyState>>,
    ) -> Result<(), LocalReplica> {
        self.local.set(local)?;
        // Set once, with the replica (which is set only once).
        let _ = self.topology.set(topology);
        Ok(())
    }

    /// Refuses a chunk of topology movement `movement` unless this node's log has it at its
    /// stream step (a late chunk of a closed attempt is FAILED_PRECONDITION, counted).
    fn check_movement(&self, movement: u64) -> Result<(), Status> {
        let state = self
            .topology
            .get()
            .map(|topology| topology.borrow().clone())
            .ok_or_else(|| Status::unavailable("the store is still opening; retry shortly"))?;
        match state.stream_open(movement) {
            Ok(()) => Ok(()),
            Err(StreamClosed::NotYet(why)) => Err(Status::unavailable(why)),
            Err(StreamClosed::Closed(why)) => {
                metrics::counter!("allidb_stream_closed_chunks_refused_total").increment(1);
                Err(Status::failed_precondition(why))
            }
        }
    }

    /// The service, ready to be added to the node's gRPC server.
    pub fn server(&self) -> ReplicaServer<ReplicaService> {
        ReplicaServer::new(self.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
    }

    fn local(&self) -> Result<&LocalReplica, Status> {
        self.local
            .get()
            .ok_or_else(|| Status::unavailable("the store is still opening; retry shortly"))
    }

    /// Admits a node-to-node request: its credentials, its header (addressed to this host, in
    /// this protocol) and, for a call planned on a ring (`Fenced::Yes`: writes, reads, query,
    /// repair and stream calls), a topology version at or above this node's fence.
    fn admit<T: HasHeader>(
        &self,
        request: &Request<T>,
        fenced: Fenced,
    ) -> Result<&LocalReplica, Status> {
        self.credentials.check(request.metadata())?;
        let local = self.local()?;
        let header = request.get_ref().header();
        check_header(header, local.host)?;
        if let Some(topology) = self.topology.get() {
            refuse_left_sender(&topology.borrow(), header)?;
        }
        if fenced == Fenced::Yes {
            self.fence.check(header.map_or(0, |h| h.ring_version))?;
        }
        Ok(local)
    }
}

/// Whether a call is checked against the topology fence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fenced {
    /// Checked when admitted (reads, queries, repair and stream calls).
    Yes,
    /// A write: checked and counted as it is applied ([`LocalReplica::apply_planned`]), so a
    /// barrier's drain waits for it.
    OnApply,
    /// Not planned on a ring (a clock reading).
    No,
}

/// A node-to-node request message with a header.
trait HasHeader {
    fn header(&self) -> Option<&proto::RequestHeader>;
}

macro_rules! has_header {
    ($($message:ty),* $(,)?) => {
        $(impl HasHeader for $message {
            fn header(&self) -> Option<&proto::RequestHeader> {
                self.header.as_ref()
            }
        })*
    };
}

has_header!(
    proto::MutateRequest,
    proto::ReadPartitionsRequest,
    proto::SearchSeedsRequest,
    proto::ExpandHopRequest,
    proto::ClockRequest,
    proto::ScanIdsRequest,
    proto::TenantCountsRequest,
    proto::CorpusStatsRequest,
    proto::MerkleTreesRequest,
    proto::StreamRangeRequest,
);

/// Checks the header of a request to the replica on host `local`.
pub(crate) fn check_header(
    header: Option<&proto::RequestHeader>,
    local: HostId,
) -> Result<(), Status> {
    let header = header.ok_or_else(|| Status::invalid_argument("header: required"))?;
    if header.protocol_version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "header.protocol_version: this node speaks replica protocol {PROTOCOL_VERSION}, the sender {}",
            header.protocol_version
        )));
    }
    if header.recipient != local.to_string() {
        return Err(Status::failed_precondition(format!(
            "header.recipient: the request is addressed to host {:?}, this is host {local} \
             (the sender's view of this address is stale)",
            header.recipient
        )));
    }
    Ok(())
}

/// Refuses a mutation whose newest timestamp is more than `max_skew` ahead of this node's wall
/// clock: applying it would move this node's hybrid logical clock (and every later write's
/// timestamp) that far ahead for good. Records the skew seen from `sender` either way.
fn check_skew(
    versions: &[CellVersion],
    drops: &[DroppedTenant],
    max_skew: Duration,
    sender: &str,
) -> Result<(), Status> {
    let newest = versions
        .iter()
        .enumerate()
        .map(|(i, (_, ts, _))| (*ts, format!("cells[{i}].timestamp_micros")))
        .chain(
            drops
                .iter()
                .enumerate()
                .map(|(i, d)| (d.ts, format!("tenant_drops[{i}].timestamp_micros"))),
        )
        .max_by_key(|(ts, _)| *ts);
    let Some((ts, field)) = newest else {
        return Ok(());
    };
    let ahead_ms = ts.saturating_sub(allidb_storage::hlc::wall_micros()) / 1000;
    metrics::gauge!("allidb_cluster_clock_skew_ms", "sender" => sender.to_owned())
        .set(ahead_ms as f64);
    if ahead_ms <= max_skew.as_millis() as u64 {
        return Ok(());
    }
    metrics::counter!("allidb_cluster_clock_skew_refused_total", "sender" => sender.to_owned())
        .increment(1);
    tracing::warn!(
        sender,
        ahead_ms,
        "refused a replica write timestamped ahead of this node's clock"
    );
    Err(Status::failed_precondition(format!(
        "{field}: {ts} is {ahead_ms} ms ahead of this node's clock, more than \
         cluster.max_clock_skew_ms ({}): the sender's clock is off (check NTP on both nodes)",
        max_skew.as_millis()
    )))
}

fn status(error: ClusterError) -> Status {
    match error {
        ClusterError::Store(allidb_index::Error::Storage(
            allidb_storage::Error::InvalidArgument(message),
        ))
        | ClusterError::Store(allidb_index::Error::InvalidArgument(message)) => {
            Status::invalid_argument(message)
        }
        ClusterError::Protocol(message) => Status::invalid_argument(message),
        ClusterError::Fenced(message) => Status::failed_precondition(message),
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    async fn mutate(
        &self,
        request: Request<proto::MutateRequest>,
    ) -> Result<Response<proto::MutateResponse>, Status> {
        let local = self.admit(&request, Fenced::OnApply)?;
        let planned = request
            .get_ref()
            .header
            .as_ref()
            .map_or(0, |h| h.ring_version);
        let request = request.into_inner();
        let versions: Vec<CellVersion> = request.cells.into_iter().map(cells::from_proto).collect();
        for (key, _, _) in &versions {
            cells::partition_of(key).map_err(status)?;
        }
        let drops: Vec<DroppedTenant> = request
            .tenant_drops
            .into_iter()
            .map(DroppedTenant::from_proto)
            .collect();
        for (i, drop) in drops.iter().enumerate() {
            allidb_storage::key::validate_tenant(&drop.tenant)
                .map_err(|e| Status::invalid_argument(format!("tenant_drops[{i}].tenant: {e}")))?;
        }
        let sender = request.header.as_ref().map_or("", |h| h.sender.as_str());
        check_skew(&versions, &drops, self.max_clock_skew, sender)?;
        let mutation = ReplicaMutation {
            drops,
            cells: versions,
        };
        local
            .apply_planned(mutation, planned)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::MutateResponse {}))
    }

    async fn read_partitions(
        &self,
        request: Request<proto::ReadPartitionsRequest>,
    ) -> Result<Response<proto::ReadPartitionsResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        if request.partitions.len() > MAX_PARTITIONS_PER_READ {
            return Err(Status::invalid_argument(format!(
                "partitions: {} partitions in one read, at most {MAX_PARTITIONS_PER_READ}",
                request.partitions.len()
            )));
        }
        let digest_only: Vec<bool> = request.partitions.iter().map(|p| p.digest_only).collect();
        let wanted = request
            .partitions
            .into_iter()
            .map(|p| (p.tenant, p.entity_id))
            .collect();
        let read = local
            .partitions(wanted, crate::MAX_MESSAGE_BYTES / 2)
            .await
            .map_err(status)?;
        let partitions = read
            .into_iter()
            .zip(digest_only)
            .map(|(stored, digest_only)| match stored {
                Ok(stored) => proto::PartitionCells {
                    digest: cells::digest(&stored.cells),
                    cells: match digest_only {
                        true => Vec::new(),
                        false => stored.cells.iter().map(cells::to_proto).collect(),
                    },
                    error: String::new(),
                    tenant_dropped_at_micros: stored.tenant_dropped_at,
                },
                Err(error) => proto::PartitionCells {
                    error: error.to_string(),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(proto::ReadPartitionsResponse { partitions }))
    }

    async fn search_seeds(
        &self,
        request: Request<proto::SearchSeedsRequest>,
    ) -> Result<Response<proto::SearchSeedsResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let mut request = request.into_inner();
        let tenant = std::mem::take(&mut request.tenant);
        let search = wire::seed_search_from_proto(request).map_err(|e| status(e.into()))?;
        let text_searched = search.text.is_some();
        let seeds = local.search_seeds(&tenant, search).await.map_err(status)?;
        Ok(Response::new(wire::seeds_to_proto(&seeds, text_searched)))
    }

    async fn expand_hop(
        &self,
        request: Request<proto::ExpandHopRequest>,
    ) -> Result<Response<proto::ExpandHopResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let mut request = request.into_inner();
        if request.entity_ids.len() > MAX_PARTITIONS_PER_READ {
            return Err(Status::invalid_argument(format!(
                "entity_ids: {} nodes in one hop, at most {MAX_PARTITIONS_PER_READ}",
                request.entity_ids.len()
            )));
        }
        let tenant = std::mem::take(&mut request.tenant);
        let hop = wire::hop_from_proto(request).map_err(|e| status(e.into()))?;
        let text_scored = hop.text.is_some();
        let nodes = local.expand_hop(&tenant, hop).await.map_err(status)?;
        Ok(Response::new(proto::ExpandHopResponse {
            nodes: nodes.iter().map(wire::hop_node_to_proto).collect(),
            text_scored,
        }))
    }

    async fn corpus_stats(
        &self,
        request: Request<proto::CorpusStatsRequest>,
    ) -> Result<Response<proto::CorpusStatsResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let mut request = request.into_inner();
        let tenant = std::mem::take(&mut request.tenant);
        let request = text::request_from_proto(request).map_err(status)?;
        let stats = local.corpus_stats(&tenant, request).await.map_err(status)?;
        Ok(Response::new(text::stats_to_proto(&stats)))
    }

    async fn clock(
        &self,
        request: Request<proto::ClockRequest>,
    ) -> Result<Response<proto::ClockResponse>, Status> {
        // A clock reading is not planned on a ring.
        let local = self.admit(&request, Fenced::No)?;
        Ok(Response::new(proto::ClockResponse {
            now_micros: local.store.engine().clock().now(),
        }))
    }

    async fn scan_ids(
        &self,
        request: Request<proto::ScanIdsRequest>,
    ) -> Result<Response<proto::ScanIdsResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        let limit = request.limit as usize;
        if !(1..=MAX_SCAN_IDS).contains(&limit) {
            return Err(Status::invalid_argument(format!(
                "limit: {limit} ids, expected 1..={MAX_SCAN_IDS}"
            )));
        }
        let range = IdRange {
            start: (!request.start.is_empty()).then_some(request.start),
            end: (!request.end.is_empty()).then_some(request.end),
        };
        let entity_ids = local
            .scan_ids(&request.tenant, range, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ScanIdsResponse { entity_ids }))
    }

    async fn tenant_counts(
        &self,
        request: Request<proto::TenantCountsRequest>,
    ) -> Result<Response<proto::TenantCountsResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        let request = tenants::request_from_proto(request).map_err(status)?;
        let counts = local.tenant_counts(request).await.map_err(status)?;
        Ok(Response::new(tenants::counts_to_proto(&counts)))
    }

    async fn merkle_trees(
        &self,
        request: Request<proto::MerkleTreesRequest>,
    ) -> Result<Response<proto::MerkleTreesResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        let shapes = request
            .trees
            .iter()
            .enumerate()
            .map(|(i, shape)| repair_wire::shape_from_proto(shape, &format!("trees[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let leaves: usize = shapes.iter().map(|s| 1usize << s.depth).sum();
        if leaves > MAX_TREE_LEAVES {
            return Err(Status::invalid_argument(format!(
                "trees: {leaves} leaves in one call, at most {MAX_TREE_LEAVES}"
            )));
        }
        let tenant = (!request.tenant.is_empty()).then_some(request.tenant);
        let (trees, drops) = local.merkle_trees(tenant, shapes).await.map_err(status)?;
        Ok(Response::new(proto::MerkleTreesResponse {
            trees: trees.iter().map(repair_wire::tree_to_proto).collect(),
            tenant_drops: drops.iter().map(DroppedTenant::to_proto).collect(),
        }))
    }

    async fn stream_range(
        &self,
        request: Request<proto::StreamRangeRequest>,
    ) -> Result<Response<proto::StreamRangeResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        let request = stream_wire::request_from_proto(request).map_err(status)?;
        if let Some(movement) = request.movement {
            self.check_movement(movement)?;
        }
        let session = request.session;
        let (chunk, drops) = local.stream_chunk(request).await.map_err(status)?;
        tracing::debug!(
            session = format!("{session:032x}"),
            partitions = chunk.partitions,
            bytes = chunk.bytes,
            done = chunk.done,
            "range stream chunk sent"
        );
        metrics::counter!("allidb_stream_sent_bytes_total").increment(chunk.bytes);
        Ok(Response::new(proto::StreamRangeResponse {
            cells: chunk.cells.iter().map(cells::to_proto).collect(),
            tenant_drops: drops.iter().map(DroppedTenant::to_proto).collect(),
            position: chunk.position.as_ref().map(stream_wire::position_to_proto),
            done: chunk.done,
            partitions: chunk.partitions,
        }))
    }
}
