//! Calls to other nodes' `Replica` service: one lazily connected gRPC channel per peer address,
//! every request stamped with this node's header and cluster token and bounded by a deadline;
//! partition reads go through one [`read_queue`] per peer, which sends the reads waiting for
//! that peer as one `ReadPartitions` call; the calls of a cluster-wide read tally their bytes
//! for its profile ([`traffic`]).
//!
//! Must never: wait longer than the caller's timeout, or send a request without the token.

mod read_queue;
pub mod topology;
pub mod traffic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use allidb_index::lexical::CorpusStats;
use allidb_index::store::{AttributeClaim, HopRequest, SeedCandidates};
use parking_lot::Mutex;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::coordinator::attribute_types::claims_to_proto;
use crate::credentials::{ClusterCredentials, TOKEN_HEADER};
use crate::proto;
use crate::proto::replica_client::ReplicaClient;
use crate::query::ahead::{HopAhead, HopAnswer};
use crate::query::tenants::{self, CountRequest, Counts};
use crate::query::text::{self, CorpusRequest};
use crate::query::wire::{self, IdRange, SeedSearch};
use crate::repair::merkle::MerkleTree;
use crate::repair::trees::TreeShape;
use crate::repair::wire as repair_wire;
use crate::ring::HostId;
use crate::stream::chunk::Chunk;
use crate::stream::wire::{self as stream_wire, ChunkRequest};
use crate::{ClusterError, PROTOCOL_VERSION};
use read_queue::ReadQueue;

/// What every call to a peer carries: this node's header and the cluster token.
#[derive(Clone, Debug)]
struct Stamp {
    local: HostId,
    credentials: Arc<ClusterCredentials>,
}

impl Stamp {
    fn header(&self, ring_version: u64, recipient: HostId) -> Option<proto::RequestHeader> {
        Some(proto::RequestHeader {
            protocol_version: PROTOCOL_VERSION,
            ring_version,
            sender: self.local.to_string(),
            recipient: recipient.to_string(),
        })
    }

    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request.metadata_mut().insert(
            TOKEN_HEADER,
            self.credentials
                .token()
                .parse()
                .expect("a hex token is valid metadata"),
        );
        request
    }
}

/// Channels to peers, shared by the coordinator and the hint dispatcher.
#[derive(Debug)]
pub struct PeerClients {
    stamp: Stamp,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    reads: Mutex<HashMap<(HostId, SocketAddr), ReadQueue>>,
}

impl PeerClients {
    /// Clients sending as `local`; `tls` (the cluster CA and this node's certificate) when
    /// `tls.enabled`.
    pub fn new(
        local: HostId,
        credentials: Arc<ClusterCredentials>,
        tls: Option<ClientTlsConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            stamp: Stamp { local, credentials },
            tls,
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, addr: SocketAddr) -> Result<Channel, ClusterError> {
        if let Some(channel) = self.channels.lock().get(&addr) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ClusterError::Protocol(format!("peer address {addr}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ClusterError::Protocol(format!("TLS to peer {addr}: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        self.channels.lock().insert(addr, channel.clone());
        Ok(channel)
    }

    /// Sends a mutation (tenant drops and cells) to the replica `recipient` at `addr`.
    pub async fn mutate(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        mutation: &ReplicaMutation,
        reason: &str,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let message = proto::MutateRequest {
            header: self.stamp.header(ring_version, recipient),
            cells: mutation.cells.iter().map(cells::to_proto).collect(),
            reason: reason.to_owned(),
            tenant_drops: mutation.drops.iter().map(DroppedTenant::to_proto).collect(),
        };
        let mut client = self.client(addr)?;
        let call = client.mutate(self.stamp.request(message, timeout));
        answered(addr, timeout, call).await.map(drop)
    }

    fn client(&self, addr: SocketAddr) -> Result<ReplicaClient<Channel>, ClusterError> {
        Ok(ReplicaClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
    }

    /// A cluster-wide read's call to the peer at `addr`: `message` stamped and sent with `send`,
    /// the reply as [`read_answered`] gives it, the bytes of both tallied for the read's
    /// profile ([`traffic`]).
    async fn read_call<M: prost::Message, T: prost::Message, F>(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        message: M,
        send: impl FnOnce(tonic::Request<M>) -> F,
    ) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let sent = traffic::request_size(&message);
        let reply =
            read_answered(addr, timeout, send(self.stamp.request(message, timeout))).await?;
        traffic::add(sent, &reply);
        Ok(reply)
    }

    /// A cluster-wide query's candidate search on the replica `recipient` at `addr`.
    #[allow(clippy::too_many_arguments)]
    pub async fn search_seeds(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        search: &SeedSearch,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<SeedCandidates, ClusterError> {
        let mut message = wire::seed_search_to_proto(search);
        message.header = self.stamp.header(ring_version, recipient);
        message.tenant = tenant.to_owned();
        let mut client = self.client(addr)?;
        let reply = self
            .read_call(addr, timeout, message, |request| {
                client.search_seeds(request)
            })
            .await?;
        wire::seeds_from_proto(reply, search.text.is_some()).map_err(|e| ClusterError::Peer {
            addr,
            reason: e.to_string(),
        })
    }

    /// One hop of a cluster-wide walk on the replica `recipient` at `addr`: one node per id of
    /// `hop`, in order, and the nodes it describes `ahead`.
    #[allow(clippy::too_many_arguments)]
    pub async fn expand_hop(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        hop: &HopRequest,
        ahead: Option<&HopAhead>,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<HopAnswer, ClusterError> {
        let mut message = wire::hop_to_proto(hop, ahead);
        message.header = self.stamp.header(ring_version, recipient);
        message.tenant = tenant.to_owned();
        let mut client = self.client(addr)?;
        let reply = self
            .read_call(addr, timeout, message, |request| client.expand_hop(request))
            .await?;
        let refused = |reason: String| ClusterError::Peer { addr, reason };
        if hop.text.is_some() && !reply.text_scored {
            return Err(refused(
                "did not score the hop's text: it predates text searches on a ring; upgrade it"
                    .to_owned(),
            ));
        }
        if reply.nodes.len() != hop.entity_ids.len() {
            return Err(refused(format!(
                "answered {} nodes of a hop of {}",
                reply.nodes.len(),
                hop.entity_ids.len()
            )));
        }
        if reply.ahead.len() != reply.ahead_ids.len() {
            return Err(refused(format!(
                "described {} nodes ahead for {} ids",
                reply.ahead.len(),
                reply.ahead_ids.len()
            )));
        }
        let nodes = hop
            .entity_ids
            .iter()
            .zip(reply.nodes)
            .map(|(id, node)| wire::hop_node_from_proto(&Arc::from(id.as_str()), node))
            .collect();
        let ahead = reply
            .ahead_ids
            .into_iter()
            .zip(reply.ahead)
            .map(|(id, node)| {
                let id: Arc<str> = Arc::from(id);
                let node = wire::hop_node_from_proto(&id, node);
                (id, node)
            })
            .collect();
        Ok(HopAnswer { nodes, ahead })
    }

    /// The ids the replica `recipient` at `addr` holds in `range`, in order, at most `limit`.
    #[allow(clippy::too_many_arguments)]
    pub async fn scan_ids(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        range: &IdRange,
        limit: usize,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let message = proto::ScanIdsRequest {
            header: self.stamp.header(ring_version, recipient),
            tenant: tenant.to_owned(),
            start: range.start.clone().unwrap_or_default(),
            end: range.end.clone().unwrap_or_default(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let mut client = self.client(addr)?;
        let reply = self
            .read_call(addr, timeout, message, |request| client.scan_ids(request))
            .await?;
        Ok(reply.entity_ids)
    }

    /// The tenant figures of the replica `recipient` at `addr` over the spans of `request`
    /// (and over everything it holds, when asked).
    pub async fn tenant_counts(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: &CountRequest,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<Counts, ClusterError> {
        let mut message = tenants::request_to_proto(request);
        message.header = self.stamp.header(ring_version, recipient);
        let mut client = self.client(addr)?;
        let reply = self
            .read_call(addr, timeout, message, |request| {
                client.tenant_counts(request)
            })
            .await?;
        tenants::counts_from_proto(reply, request.node_totals).map_err(|e| ClusterError::Peer {
            addr,
            reason: e.to_string(),
        })
    }

    /// The corpus statistics of the replica `recipient` at `addr` for a text query, over the
    /// spans of `request`.
    pub async fn corpus_stats(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        request: &CorpusRequest,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<CorpusStats, ClusterError> {
        let mut message = text::request_to_proto(request);
        message.header = self.stamp.header(ring_version, recipient);
        message.tenant = tenant.to_owned();
        let mut client = self.client(addr)?;
        let reply = self
            .read_call(addr, timeout, message, |request| {
                client.corpus_stats(request)
            })
            .await?;
        text::stats_from_proto(reply, request.terms.len()).map_err(|e| ClusterError::Peer {
            addr,
            reason: e.to_string(),
        })
    }

    /// The refusal of `claims` by the replica `recipient` at `addr`, if any (one of its live
    /// entities of `tenant` holds a claimed key as another type).
    pub async fn check_attribute_types(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        claims: &[AttributeClaim],
        ring_version: u64,
        timeout: Duration,
    ) -> Result<Option<String>, ClusterError> {
        let message = proto::CheckAttributeTypesRequest {
            header: self.stamp.header(ring_version, recipient),
            tenant: tenant.to_owned(),
            claims: claims_to_proto(claims),
        };
        let mut client = self.client(addr)?;
        let call = client.check_attribute_types(self.stamp.request(message, timeout));
        let reply = read_answered(addr, timeout, call).await?;
        Ok((!reply.refusal.is_empty()).then_some(reply.refusal))
    }

    /// The clock reading of the node `recipient` at `addr` (every cell it stores is at or
    /// below it).
    pub async fn clock(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<u64, ClusterError> {
        let message = proto::ClockRequest {
            header: self.stamp.header(ring_version, recipient),
        };
        let mut client = self.client(addr)?;
        let call = client.clock(self.stamp.request(message, timeout));
        Ok(answered(addr, timeout, call).await?.now_micros)
    }

    /// The Merkle trees of `shapes` on the replica `recipient` at `addr` (of `tenant` only,
    /// when given), and its tenant drops.
    pub async fn merkle_trees(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: Option<&str>,
        shapes: &[TreeShape],
        ring_version: u64,
        timeout: Duration,
    ) -> Result<(Vec<MerkleTree>, Vec<DroppedTenant>), ClusterError> {
        let message = proto::MerkleTreesRequest {
            header: self.stamp.header(ring_version, recipient),
            tenant: tenant.unwrap_or_default().to_owned(),
            trees: shapes.iter().map(repair_wire::shape_to_proto).collect(),
        };
        let mut client = self.client(addr)?;
        let call = client.merkle_trees(self.stamp.request(message, timeout));
        let reply = answered(addr, timeout, call).await?;
        if reply.trees.len() != shapes.len() {
            return Err(ClusterError::Peer {
                addr,
                reason: format!(
                    "answered {} Merkle trees of {}",
                    reply.trees.len(),
                    shapes.len()
                ),
            });
        }
        let trees = shapes
            .iter()
            .zip(reply.trees)
            .map(|(shape, tree)| repair_wire::tree_from_proto(shape, tree))
            .collect::<Result<Vec<_>, _>>()?;
        let drops = reply
            .tenant_drops
            .into_iter()
            .map(DroppedTenant::from_proto)
            .collect();
        Ok((trees, drops))
    }

    /// One chunk of a range stream from the replica `recipient` at `addr`, and its tenant
    /// drops.
    pub async fn stream_range(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: &ChunkRequest,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<(Chunk, Vec<DroppedTenant>), ClusterError> {
        let message =
            stream_wire::request_to_proto(request, self.stamp.header(ring_version, recipient));
        let mut client = self.client(addr)?;
        let call = client.stream_range(self.stamp.request(message, timeout));
        let reply = answered(addr, timeout, call).await?;
        let cells: Vec<_> = reply.cells.into_iter().map(cells::from_proto).collect();
        for (key, _, _) in &cells {
            cells::partition_of(key).map_err(|e| ClusterError::Peer {
                addr,
                reason: format!("streamed a cell without a partition: {e}"),
            })?;
        }
        let chunk = Chunk {
            bytes: cells.iter().map(cells::version_size).sum::<usize>() as u64,
            cells,
            partitions: reply.partitions,
            position: reply.position.map(stream_wire::position_from_proto),
            done: reply.done,
        };
        let drops = reply
            .tenant_drops
            .into_iter()
            .map(DroppedTenant::from_proto)
            .collect();
        Ok((chunk, drops))
    }

    /// Reads one partition from the replica `recipient` at `addr`: its cells, or only their
    /// digest. Sent together with the other reads waiting for that replica.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_partition(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        tenant: &str,
        entity_id: &str,
        digest_only: bool,
        ring_version: u64,
        timeout: Duration,
    ) -> Result<proto::PartitionCells, ClusterError> {
        let partition = proto::PartitionRead {
            tenant: tenant.to_owned(),
            entity_id: entity_id.to_owned(),
            digest_only,
        };
        let queue = self.read_queue(recipient, addr)?;
        queue.read(partition, ring_version, timeout).await
    }

    fn read_queue(&self, recipient: HostId, addr: SocketAddr) -> Result<ReadQueue, ClusterError> {
        if let Some(queue) = self.reads.lock().get(&(recipient, addr)) {
            return Ok(queue.clone());
        }
        let channel = self.channel(addr)?;
        let queue = self
            .reads
            .lock()
            .entry((recipient, addr))
            .or_insert_with(|| ReadQueue::spawn(self.stamp.clone(), channel, recipient, addr))
            .clone();
        Ok(queue)
    }
}

/// The reply of a call to `addr`, or why there is none (an error status, or no answer within
/// `timeout`).
async fn answered<T>(
    addr: SocketAddr,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClusterError> {
    let reason = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(reply)) => return Ok(reply.into_inner()),
        Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    Err(ClusterError::Peer { addr, reason })
}

/// [`answered`] for the cluster-wide reads: a request the peer refuses as invalid (a vector of
/// another dimension, a bad filter) is the caller's error, reported as the peer words it.
async fn read_answered<T>(
    addr: SocketAddr,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => Err(
            ClusterError::Store(allidb_index::Error::invalid(status.message().to_owned())),
        ),
        Ok(answer) => answered(addr, timeout, std::future::ready(answer)).await,
        Err(_) => Err(ClusterError::Peer {
            addr,
            reason: format!("no answer within {timeout:?}"),
        }),
    }
}
