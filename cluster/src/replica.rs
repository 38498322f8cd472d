//! This node as a replica: applying cells to the local store and answering partition reads,
//! for the local coordinator directly and for other nodes through the `Replica` gRPC service
//! (`proto/replica.proto`).
//!
//! Invariants: cells are applied with the timestamps they arrive with, through the storage
//! engine's batch path, so the index observers see them like local writes; a call is answered
//! only after its cells are as durable as `storage.durability` makes local writes.
//!
//! Must never: serve a call whose cluster token does not verify or that is addressed to another
//! host (a stale address now served by this node), or block an async worker on the store.

use std::sync::{Arc, OnceLock};

use allidb_index::UnifiedStore;
use allidb_storage::Durability;
use allidb_storage::batch::WriteBatch;
use allidb_storage::partition::CellVersion;
use tonic::{Request, Response, Status};

use crate::cells;
use crate::credentials::ClusterCredentials;
use crate::proto;
use crate::proto::replica_server::{Replica, ReplicaServer};
use crate::ring::HostId;
use crate::{ClusterError, PROTOCOL_VERSION};

/// Most partitions one `ReadPartitions` call may ask for.
pub const MAX_PARTITIONS_PER_READ: usize = 1024;

/// The local store seen as one replica.
#[derive(Clone, Debug)]
pub struct LocalReplica {
    host: HostId,
    store: Arc<UnifiedStore>,
    durability: Durability,
}

impl LocalReplica {
    /// The replica of host `host` over `store`, writing with `durability`.
    pub fn new(host: HostId, store: Arc<UnifiedStore>, durability: Durability) -> Self {
        Self {
            host,
            store,
            durability,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<UnifiedStore> {
        &self.store
    }

    /// Applies `batch` (cells with their own timestamps) on the blocking pool.
    pub async fn apply(&self, batch: WriteBatch) -> Result<(), ClusterError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (store, durability) = (self.store.clone(), self.durability);
        tokio::task::spawn_blocking(move || store.engine().write(batch, durability))
            .await
            .map_err(|e| ClusterError::Protocol(format!("replica write task: {e}")))?
            .map(drop)
            .map_err(|e| ClusterError::Store(e.into()))
    }

    /// The newest version of every cell of one partition, on the blocking pool.
    pub async fn cells(&self, tenant: &str, id: &str) -> Result<Vec<CellVersion>, ClusterError> {
        let partition = (tenant.to_owned(), id.to_owned());
        let mut read = self.cells_of(vec![partition], usize::MAX).await?;
        read.pop()
            .expect("a read of one partition with no byte budget answers it")
    }

    /// The newest version of every cell of each partition `(tenant, id)`, in order, on the
    /// blocking pool: one result per partition (an invalid tenant or id fails only its own).
    /// Stops after the partition that brings the cells read past `byte_budget` (the first is
    /// always read), so the answer may be a prefix.
    pub async fn cells_of(
        &self,
        partitions: Vec<(String, String)>,
        byte_budget: usize,
    ) -> Result<Vec<Result<Vec<CellVersion>, ClusterError>>, ClusterError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut read = Vec::with_capacity(partitions.len());
            let mut bytes = 0usize;
            for (tenant, id) in partitions {
                if bytes > byte_budget {
                    break;
                }
                let cells = allidb_storage::key::validate_tenant(&tenant)
                    .and_then(|()| allidb_storage::key::validate_id(&id))
                    .and_then(|()| store.engine().partition_cells(&tenant, &id))
                    .map_err(|e| ClusterError::Store(e.into()));
                if let Ok(cells) = &cells {
                    bytes += cells.iter().map(cells::version_size).sum::<usize>();
                }
                read.push(cells);
            }
            read
        })
        .await
        .map_err(|e| ClusterError::Protocol(format!("replica read task: {e}")))
    }
}

/// The `allidb.cluster.v1.Replica` gRPC service over the local replica; cheap to clone. It is
/// served from the moment the gRPC port opens and answers `UNAVAILABLE` until the store is
/// open ([`ReplicaService::attach`]).
#[derive(Clone, Debug)]
pub struct ReplicaService {
    local: Arc<OnceLock<LocalReplica>>,
    credentials: Arc<ClusterCredentials>,
}

impl ReplicaService {
    /// A service checking `credentials`, with no store yet.
    pub fn new(credentials: Arc<ClusterCredentials>) -> Self {
        Self {
            local: Arc::new(OnceLock::new()),
            credentials,
        }
    }

    /// Starts serving from `local`; an error returns it when a replica is already attached.
    pub fn attach(&self, local: LocalReplica) -> Result<(), LocalReplica> {
        self.local.set(local)
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
}

/// Checks the header of a request to the replica on host `local`.
fn check_header(header: Option<&proto::RequestHeader>, local: HostId) -> Result<(), Status> {
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

fn status(error: ClusterError) -> Status {
    match error {
        ClusterError::Store(allidb_index::Error::Storage(
            allidb_storage::Error::InvalidArgument(message),
        ))
        | ClusterError::Store(allidb_index::Error::InvalidArgument(message)) => {
            Status::invalid_argument(message)
        }
        ClusterError::Protocol(message) => Status::invalid_argument(message),
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    async fn mutate(
        &self,
        request: Request<proto::MutateRequest>,
    ) -> Result<Response<proto::MutateResponse>, Status> {
        self.credentials.check(request.metadata())?;
        let request = request.into_inner();
        let local = self.local()?;
        check_header(request.header.as_ref(), local.host)?;
        let versions: Vec<CellVersion> = request.cells.into_iter().map(cells::from_proto).collect();
        for (key, _, _) in &versions {
            cells::partition_of(key).map_err(status)?;
        }
        local
            .apply(cells::versions_batch(versions))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::MutateResponse {}))
    }

    async fn read_partitions(
        &self,
        request: Request<proto::ReadPartitionsRequest>,
    ) -> Result<Response<proto::ReadPartitionsResponse>, Status> {
        self.credentials.check(request.metadata())?;
        let request = request.into_inner();
        let local = self.local()?;
        check_header(request.header.as_ref(), local.host)?;
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
            .cells_of(wanted, crate::MAX_MESSAGE_BYTES / 2)
            .await
            .map_err(status)?;
        let partitions = read
            .into_iter()
            .zip(digest_only)
            .map(|(cells, digest_only)| match cells {
                Ok(versions) => proto::PartitionCells {
                    digest: cells::digest(&versions),
                    cells: match digest_only {
                        true => Vec::new(),
                        false => versions.iter().map(cells::to_proto).collect(),
                    },
                    error: String::new(),
                },
                Err(error) => proto::PartitionCells {
                    error: error.to_string(),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(proto::ReadPartitionsResponse { partitions }))
    }
}
