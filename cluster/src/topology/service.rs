//! The `Topology` gRPC service (`proto/replica.proto`): raft messages for this node's log,
//! joins, barriers, bootstrap requests, leaves and cleanups, on the node-to-node port beside
//! `Replica`.
//!
//! Every call is checked like a replica call (the cluster token, the header's protocol version
//! and recipient) before it reaches the log. Must never: hand the log a message it could not
//! decode, or block a barrier longer than its deadline.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tonic::{Request, Response, Status};

use super::network::SnapshotMessage;
use super::{TopologyConfig, TopologyLog};
use crate::ClusterError;
use crate::credentials::ClusterCredentials;
use crate::proto::topology_server::{Topology, TopologyServer};
use crate::proto::{self, RaftMessage};
use crate::replica::check_header;
use crate::ring::HostId;

/// The longest a barrier waits for this node to apply a version.
const BARRIER_WAIT: Duration = Duration::from_secs(10);
/// The most tokens a node may ask for (`cluster.num_tokens`' range).
const MAX_TOKENS: u32 = 256;

/// The service; the log is attached once it started.
#[derive(Clone)]
pub struct TopologyService {
    log: Arc<OnceLock<TopologyLog>>,
    credentials: Arc<ClusterCredentials>,
}

impl std::fmt::Debug for TopologyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyService").finish_non_exhaustive()
    }
}

impl TopologyService {
    /// A service checking `credentials`, with no log yet (calls are UNAVAILABLE until then).
    pub fn new(credentials: Arc<ClusterCredentials>) -> Self {
        Self {
            log: Arc::new(OnceLock::new()),
            credentials,
        }
    }

    /// Starts serving `log`; an error returns it when one is already attached.
    pub fn attach(&self, log: TopologyLog) -> Result<(), TopologyLog> {
        self.log.set(log)
    }

    /// The service, ready to be added to the node's gRPC server.
    pub fn server(&self) -> TopologyServer<TopologyService> {
        TopologyServer::new(self.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
    }

    fn log(&self) -> Result<&TopologyLog, Status> {
        self.log
            .get()
            .ok_or_else(|| Status::unavailable("the topology log is still starting; retry shortly"))
    }

    /// The log, once the call's token and header are checked.
    fn checked<T>(
        &self,
        request: &Request<T>,
        header: Option<&proto::RequestHeader>,
    ) -> Result<&TopologyLog, Status> {
        self.credentials.check(request.metadata())?;
        let log = self.log()?;
        check_header(header, log.host())?;
        super::refuse_left_sender(&log.state(), header)?;
        Ok(log)
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(payload)
        .map_err(|e| Status::invalid_argument(format!("payload: not the raft message named: {e}")))
}

fn encode<T: serde::Serialize>(answer: &T) -> Result<Response<proto::RaftResponse>, Status> {
    serde_json::to_vec(answer)
        .map(|payload| Response::new(proto::RaftResponse { payload }))
        .map_err(|e| Status::internal(format!("raft answer to JSON: {e}")))
}

#[tonic::async_trait]
impl Topology for TopologyService {
    async fn raft(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let request = request.into_inner();
        let raft = &log.shared.raft;
        match RaftMessage::try_from(request.message) {
            Ok(RaftMessage::AppendEntries) => {
                let rpc: AppendEntriesRequest<TopologyConfig> = decode(&request.payload)?;
                encode(&raft.append_entries(rpc).await)
            }
            Ok(RaftMessage::Vote) => {
                let rpc: VoteRequest<HostId> = decode(&request.payload)?;
                encode(&raft.vote(rpc).await)
            }
            Ok(RaftMessage::FullSnapshot) => {
                let message: SnapshotMessage = decode(&request.payload)?;
                let snapshot = openraft::Snapshot {
                    meta: message.meta,
                    snapshot: Box::new(message.image),
                };
                encode(&raft.install_full_snapshot(message.vote, snapshot).await)
            }
            Ok(RaftMessage::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
                "message: {} is not a raft message kind",
                request.message
            ))),
        }
    }

    async fn join(
        &self,
        request: Request<proto::JoinRequest>,
    ) -> Result<Response<proto::JoinResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let request = request.into_inner();
        let sender: HostId = request
            .header
            .as_ref()
            .map(|h| h.sender.as_str())
            .unwrap_or_default()
            .parse()
            .map_err(|e: ClusterError| Status::invalid_argument(format!("header.sender: {e}")))?;
        if request.cluster_name.is_empty() {
            return Err(Status::invalid_argument("cluster_name: required"));
        }
        request.rpc_addr.parse::<SocketAddr>().map_err(|e| {
            Status::invalid_argument(format!(
                "rpc_addr: {:?} is not an address: {e}",
                request.rpc_addr
            ))
        })?;
        if request.tokens.is_empty() && request.num_tokens > MAX_TOKENS {
            return Err(Status::invalid_argument(format!(
                "num_tokens: {} is outside 0..={MAX_TOKENS} (0: as many as the ring's nodes hold)",
                request.num_tokens
            )));
        }
        if request.tokens.len() > MAX_TOKENS as usize {
            return Err(Status::invalid_argument(format!(
                "tokens: {} tokens, more than {MAX_TOKENS}",
                request.tokens.len()
            )));
        }
        let topology_version = log.take_join(sender, request).await?;
        Ok(Response::new(proto::JoinResponse { topology_version }))
    }

    async fn barrier(
        &self,
        request: Request<proto::BarrierRequest>,
    ) -> Result<Response<proto::BarrierResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let request = request.into_inner();
        let records = request.attribute_types_version;
        let applied_records = log.applied_attribute_types(records, BARRIER_WAIT).await;
        if applied_records < records {
            return Err(Status::unavailable(format!(
                "attribute_types_version: this node applied {applied_records}, not yet {records}"
            )));
        }
        let wanted = request.topology_version;
        let applied_version = log.applied(wanted, BARRIER_WAIT).await;
        if applied_version < wanted {
            return Err(Status::unavailable(format!(
                "topology_version: this node applied {applied_version}, not yet {wanted}"
            )));
        }
        // From now on this replica takes nothing planned on a ring older than `wanted`, and
        // answers once the writes it admitted on one have finished.
        log.shared.fence.raise(wanted);
        if let Err(running) = log.shared.fence.drained(wanted, BARRIER_WAIT).await {
            return Err(Status::unavailable(format!(
                "topology_version: {running} writes planned on a version older than {wanted} \
                 are still running on this node"
            )));
        }
        Ok(Response::new(proto::BarrierResponse { applied_version }))
    }

    async fn stream_movement(
        &self,
        request: Request<proto::StreamMovementRequest>,
    ) -> Result<Response<proto::StreamMovementResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let movement = request.into_inner().movement;
        match log.stream_movement(movement).await {
            Ok(run) => Ok(Response::new(proto::StreamMovementResponse {
                partitions: run.partitions,
                cells: run.cells,
                bytes: run.bytes,
            })),
            Err(ClusterError::InvalidRange(message)) => Err(Status::failed_precondition(message)),
            Err(other) => Err(Status::unavailable(other.to_string())),
        }
    }

    async fn leave(
        &self,
        request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let request = request.into_inner();
        let (topology_version, movement) = log.take_leave(request).await?;
        Ok(Response::new(proto::LeaveResponse {
            topology_version,
            movement,
        }))
    }

    async fn cleanup(
        &self,
        request: Request<proto::CleanupRequest>,
    ) -> Result<Response<proto::CleanupResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let (topology_version, cleanup) = log.take_cleanup(request.into_inner()).await?;
        Ok(Response::new(proto::CleanupResponse {
            topology_version,
            cleanup,
        }))
    }

    async fn record_attribute_types(
        &self,
        request: Request<proto::RecordAttributeTypesRequest>,
    ) -> Result<Response<proto::RecordAttributeTypesResponse>, Status> {
        let log = self.checked(&request, request.get_ref().header.as_ref())?;
        let recorded = log.take_attribute_types(request.into_inner()).await?;
        Ok(Response::new(super::attribute_types::recorded_to_proto(
            &recorded,
        )))
    }
}
