//! This node as a replica: applying cells to the local store and answering partition reads,
//! for the local coordinator directly ([`LocalReplica`]) and for other nodes through the
//! `Replica` gRPC service ([`ReplicaService`], `service.rs`, `proto/replica.proto`).
//!
//! Invariants: cells are applied with the timestamps they arrive with, through the storage
//! engine's batch path, so the index observers see them like local writes; a call is answered
//! only after its cells are as durable as `storage.durability` makes local writes, and its
//! tenant drops are on disk (a drop is always synced) and applied before its cells.
//!
//! Must never: block an async worker on the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use allidb_index::lexical::CorpusStats;
use allidb_index::store::{AttributeClaim, HopRequest, QueryAnswer, SeedCandidates};
use allidb_index::{QueryRequest, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::partition::CellVersion;

use crate::ClusterError;
use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::query::ahead::{self, HopAhead, HopAnswer};
use crate::query::tenants::{CountRequest, Counts};
use crate::query::text::CorpusRequest;
use crate::query::wire::{IdRange, SeedSearch};
use crate::repair::merkle::MerkleTree;
use crate::repair::pace::ScanPace;
use crate::repair::trees::{self, TreeShape};
use crate::ring::{HostId, SpanIndex, token};
use crate::stream::chunk::{Chunk, SCAN_BYTES, read_chunk};
use crate::stream::wire::ChunkRequest;
use crate::topology::fence::TopologyFence;

mod service;

pub use service::ReplicaService;
pub(crate) use service::check_header;

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
    /// `storage.durability` says (a stream records its position only after this). Runs on the
    /// blocking pool, not in place: a stream applies the chunks of several groups at once, each
    /// up to 4 MiB (far more than the hand-off costs), and one applied in place would hold up
    /// the others' futures polled beside it.
    pub async fn apply_synced(&self, mutation: ReplicaMutation) -> Result<(), ClusterError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || write(&store, mutation, Durability::Sync))
            .await
            .map_err(|e| ClusterError::Protocol(format!("replica write task: {e}")))?
            .map_err(ClusterError::Store)
    }

    async fn apply_as(
        &self,
        mutation: ReplicaMutation,
        durability: Durability,
    ) -> Result<(), ClusterError> {
        self.on_store("write", move |store| write(store, mutation, durability))
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

/// Applies `mutation` to `store`: its tenant drops (each durable, indexes rebuilt for what a
/// drop leaves), then its cells with their own timestamps, as durable as `durability` says.
fn write(
    store: &UnifiedStore,
    mutation: ReplicaMutation,
    durability: Durability,
) -> allidb_index::Result<()> {
    if mutation.drops.is_empty() && mutation.cells.is_empty() {
        return Ok(());
    }
    for drop in &mutation.drops {
        store.drop_tenant_at(&drop.tenant, drop.ts)?;
    }
    if !mutation.cells.is_empty() {
        store
            .engine()
            .write(cells::versions_batch(mutation.cells), durability)?;
    }
    Ok(())
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

    /// One hop of a cluster-wide walk: what this replica holds of each node of `hop`, and of
    /// the nodes the next hop may reach in `ahead`'s spans ([`ahead::answer_hop`]).
    pub async fn expand_hop(
        &self,
        tenant: &str,
        hop: HopRequest,
        ahead: Option<HopAhead>,
    ) -> Result<HopAnswer, ClusterError> {
        let owned = tenant.to_owned();
        self.on_indexes("hop", tenant, move |store| {
            ahead::answer_hop(&owned, &hop, ahead.as_ref(), |hop| {
                store.describe_hop(&owned, hop)
            })
        })
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

    /// This replica's refusal of `claims` (one of its live entities of `tenant` holds a
    /// claimed key as another type), if any: the ring-wide check of attribute types asks it.
    pub async fn check_attribute_types(
        &self,
        tenant: &str,
        claims: Vec<AttributeClaim>,
    ) -> Result<Option<String>, ClusterError> {
        let owned = tenant.to_owned();
        let checked = self
            .on_indexes("attribute types", tenant, move |store| {
                Ok(store.check_attribute_claims(&owned, &claims))
            })
            .await?;
        match checked {
            Ok(()) => Ok(None),
            Err(allidb_index::Error::InvalidArgument(refusal)) => Ok(Some(refusal)),
            Err(other) => Err(ClusterError::Store(other)),
        }
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
