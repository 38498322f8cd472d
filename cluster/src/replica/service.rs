//! [`ReplicaService`]: the `allidb.cluster.v1.Replica` gRPC service over the [`LocalReplica`]:
//! every call's token, header (protocol version, recipient), clock skew and topology fence
//! checked before it reaches the store.
//!
//! Must never: serve a call whose cluster token does not verify or that is addressed to another
//! host (a stale address now served by this node), a stream chunk of a topology movement its
//! log closed, or a write planned on a topology older than the fence.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use allidb_storage::partition::CellVersion;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::coordinator::attribute_types::claims_from_proto;
use crate::credentials::ClusterCredentials;
use crate::proto;
use crate::proto::replica_server::{Replica, ReplicaServer};
use crate::query::tenants;
use crate::query::text;
use crate::query::wire::{self, IdRange};
use crate::repair::wire as repair_wire;
use crate::ring::HostId;
use crate::stream::wire as stream_wire;
use crate::topology::fence::TopologyFence;
use crate::topology::refuse_left_sender;
use crate::topology::state::{StreamClosed, TopologyState};
use crate::{ClusterError, PROTOCOL_VERSION};

use super::{LocalReplica, MAX_PARTITIONS_PER_READ, MAX_SCAN_IDS, MAX_TREE_LEAVES};

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
    proto::CheckAttributeTypesRequest,
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
        let (hop, ahead) = wire::hop_from_proto(request).map_err(|e| status(e.into()))?;
        let text_scored = hop.text.is_some();
        let answer = local
            .expand_hop(&tenant, hop, ahead)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ExpandHopResponse {
            nodes: answer.nodes.iter().map(wire::hop_node_to_proto).collect(),
            text_scored,
            ahead_ids: answer.ahead.iter().map(|(id, _)| id.to_string()).collect(),
            ahead: answer
                .ahead
                .iter()
                .map(|(_, node)| wire::hop_node_to_proto(node))
                .collect(),
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

    async fn check_attribute_types(
        &self,
        request: Request<proto::CheckAttributeTypesRequest>,
    ) -> Result<Response<proto::CheckAttributeTypesResponse>, Status> {
        let local = self.admit(&request, Fenced::Yes)?;
        let request = request.into_inner();
        let claims = claims_from_proto(request.claims).map_err(Status::invalid_argument)?;
        let refusal = local
            .check_attribute_types(&request.tenant, claims)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::CheckAttributeTypesResponse {
            refusal: refusal.unwrap_or_default(),
        }))
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
