//! Calls to other nodes' `Topology` service: the topology log's raft messages, joins, barriers,
//! bootstrap requests, leaves and cleanups, stamped like every node-to-node call.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

use super::{PeerClients, answered};
use crate::proto::topology_client::TopologyClient;
use crate::ring::HostId;
use crate::stream::StreamRun;
use crate::{ClusterError, proto};

/// Why a join, a leave or a cleanup was not taken.
#[derive(Debug)]
pub enum JoinRefusal {
    /// The log refused it (the message says why); asking again will not help unless the reason
    /// is a movement in progress.
    Refused(String),
    /// The node asked could not take it now (no leader, unreachable): ask again.
    Unavailable(String),
}

impl JoinRefusal {
    /// The refusal as this node's own answer to the request it forwarded.
    pub fn into_status(self) -> tonic::Status {
        match self {
            JoinRefusal::Refused(reason) => tonic::Status::failed_precondition(reason),
            JoinRefusal::Unavailable(reason) => tonic::Status::unavailable(reason),
        }
    }
}

/// A refusal from `addr`'s answer `status`: FAILED_PRECONDITION is the log's refusal.
fn refusal(addr: SocketAddr, status: tonic::Status) -> JoinRefusal {
    if status.code() == tonic::Code::FailedPrecondition {
        JoinRefusal::Refused(status.message().to_owned())
    } else {
        JoinRefusal::Unavailable(format!("{addr}: {:?}: {}", status.code(), status.message()))
    }
}

impl PeerClients {
    fn topology_client(&self, addr: SocketAddr) -> Result<TopologyClient<Channel>, ClusterError> {
        Ok(TopologyClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
    }

    /// One raft message (`payload`, JSON) to the log on `recipient` at `addr`; its JSON answer.
    pub async fn raft(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        message: proto::RaftMessage,
        payload: Vec<u8>,
        topology_version: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        let request = proto::RaftRequest {
            header: self.stamp.header(topology_version, recipient),
            message: message as i32,
            payload,
        };
        let mut client = self.topology_client(addr)?;
        let call = client.raft(self.stamp.request(request, timeout));
        Ok(answered(addr, timeout, call).await?.payload)
    }

    /// Asks the node `recipient` at `addr` to have this node join; the topology version that
    /// holds the join.
    pub async fn join(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: proto::JoinRequest,
        timeout: Duration,
    ) -> Result<u64, JoinRefusal> {
        self.join_as(self.stamp.local, recipient, addr, request, timeout)
            .await
    }

    /// [`Self::join`] on behalf of the joining node `sender` (a join forwarded to the leader).
    pub async fn join_as(
        &self,
        sender: HostId,
        recipient: HostId,
        addr: SocketAddr,
        request: proto::JoinRequest,
        timeout: Duration,
    ) -> Result<u64, JoinRefusal> {
        let mut header = self.stamp.header(0, recipient);
        if let Some(header) = &mut header {
            header.sender = sender.to_string();
        }
        let request = proto::JoinRequest { header, ..request };
        let reply = self
            .leader_call(addr, request, timeout, |mut client, request| async move {
                client.join(request).await
            })
            .await?;
        Ok(reply.topology_version)
    }

    /// Sends `request` (stamped) to the node at `addr` with `call`, for the log's leader to
    /// commit: its answer, or why it was not taken.
    async fn leader_call<Q, A, F, Fut>(
        &self,
        addr: SocketAddr,
        request: Q,
        timeout: Duration,
        call: F,
    ) -> Result<A, JoinRefusal>
    where
        F: FnOnce(TopologyClient<Channel>, tonic::Request<Q>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        let client = self
            .topology_client(addr)
            .map_err(|e| JoinRefusal::Unavailable(e.to_string()))?;
        match tokio::time::timeout(timeout, call(client, self.stamp.request(request, timeout)))
            .await
        {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(refusal(addr, status)),
            Err(_) => Err(JoinRefusal::Unavailable(format!(
                "{addr}: no answer within {timeout:?}"
            ))),
        }
    }

    /// Asks the node `recipient` at `addr` to start `request`'s leave; (topology version,
    /// movement id) once committed.
    pub async fn leave(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: proto::LeaveRequest,
        timeout: Duration,
    ) -> Result<(u64, u64), JoinRefusal> {
        let request = proto::LeaveRequest {
            header: self.stamp.header(0, recipient),
            ..request
        };
        let reply = self
            .leader_call(addr, request, timeout, |mut client, request| async move {
                client.leave(request).await
            })
            .await?;
        Ok((reply.topology_version, reply.movement))
    }

    /// Asks the node `recipient` at `addr` to start or end `request`'s cleanup; (topology
    /// version, cleanup id) once committed.
    pub async fn cleanup(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: proto::CleanupRequest,
        timeout: Duration,
    ) -> Result<(u64, u64), JoinRefusal> {
        let request = proto::CleanupRequest {
            header: self.stamp.header(0, recipient),
            ..request
        };
        let reply = self
            .leader_call(addr, request, timeout, |mut client, request| async move {
                client.cleanup(request).await
            })
            .await?;
        Ok((reply.topology_version, reply.cleanup))
    }

    /// Asks the node `recipient` at `addr` to record `request`'s attribute types in the log;
    /// its answer once committed or refused.
    pub async fn record_attribute_types(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        request: proto::RecordAttributeTypesRequest,
        timeout: Duration,
    ) -> Result<proto::RecordAttributeTypesResponse, JoinRefusal> {
        let request = proto::RecordAttributeTypesRequest {
            header: self.stamp.header(0, recipient),
            ..request
        };
        self.leader_call(addr, request, timeout, |mut client, request| async move {
            client.record_attribute_types(request).await
        })
        .await
    }

    /// Waits until `recipient` at `addr` has applied `topology_version` and the records of
    /// attribute types up to `attribute_types_version` (0: not asked); the topology version it
    /// has.
    pub async fn barrier(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        topology_version: u64,
        attribute_types_version: u64,
        timeout: Duration,
    ) -> Result<u64, ClusterError> {
        let request = proto::BarrierRequest {
            header: self.stamp.header(topology_version, recipient),
            topology_version,
            attribute_types_version,
        };
        let mut client = self.topology_client(addr)?;
        let call = client.barrier(self.stamp.request(request, timeout));
        Ok(answered(addr, timeout, call).await?.applied_version)
    }

    /// The topology version `recipient` at `addr` has applied, asked without waiting (a
    /// barrier at version 0); `Ok(Err(why))` when it refuses this node because it left the
    /// ring, `Err` when it did not answer.
    pub async fn applied_version(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Result<u64, String>, ClusterError> {
        let request = proto::BarrierRequest {
            header: self.stamp.header(0, recipient),
            topology_version: 0,
            attribute_types_version: 0,
        };
        let mut client = self.topology_client(addr)?;
        let call = client.barrier(self.stamp.request(request, timeout));
        let answer = tokio::time::timeout(timeout, call).await;
        if let Ok(Err(status)) = &answer
            && status.code() == tonic::Code::FailedPrecondition
            && status.message().starts_with(crate::topology::LEFT_SENDER)
        {
            return Ok(Err(status.message().to_owned()));
        }
        match answer {
            Ok(answer) => Ok(Ok(answered(addr, timeout, std::future::ready(answer))
                .await?
                .applied_version)),
            Err(_) => Err(ClusterError::Peer {
                addr,
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// Has the node `recipient` at `addr` stream the ranges it takes in `movement`.
    pub async fn stream_movement(
        &self,
        recipient: HostId,
        addr: SocketAddr,
        movement: u64,
        topology_version: u64,
        timeout: Duration,
    ) -> Result<StreamRun, ClusterError> {
        let request = proto::StreamMovementRequest {
            header: self.stamp.header(topology_version, recipient),
            movement,
        };
        let mut client = self.topology_client(addr)?;
        let call = client.stream_movement(self.stamp.request(request, timeout));
        let reply = answered(addr, timeout, call).await?;
        Ok(StreamRun {
            partitions: reply.partitions,
            cells: reply.cells,
            bytes: reply.bytes,
            ..StreamRun::default()
        })
    }
}
