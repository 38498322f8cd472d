//! The topology log's transport: openraft's messages to other nodes, as JSON inside the
//! node-to-node `Topology.Raft` call (docs/cluster.md "Topology log").
//!
//! Owns the mapping from a raft peer (a host id) to where it can be called: the address gossip
//! last heard from it, or the one it joined with when gossip has none (a restart on new ports
//! is followed). Must never: send a raft message without the cluster token, or wait longer than
//! the deadline openraft gives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetwork, RaftNetworkFactory, Snapshot, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::TopologyConfig;
use super::state::TopologyState;
use crate::membership::ClusterView;
use crate::peer_client::PeerClients;
use crate::proto::RaftMessage;
use crate::ring::HostId;

/// What a full snapshot carries on the wire.
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct SnapshotMessage {
    pub vote: Vote<HostId>,
    pub meta: openraft::SnapshotMeta<HostId, BasicNode>,
    pub image: super::state_machine::TopologyImage,
}

/// Makes a [`TopologyPeer`] per raft peer.
#[derive(Clone)]
pub struct TopologyNetwork {
    clients: Arc<PeerClients>,
    view: watch::Receiver<Arc<ClusterView>>,
    topology: watch::Receiver<Arc<TopologyState>>,
}

impl std::fmt::Debug for TopologyNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyNetwork").finish_non_exhaustive()
    }
}

impl TopologyNetwork {
    pub fn new(
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        topology: watch::Receiver<Arc<TopologyState>>,
    ) -> Self {
        Self {
            clients,
            view,
            topology,
        }
    }
}

/// One raft peer.
pub struct TopologyPeer {
    target: HostId,
    node: BasicNode,
    network: TopologyNetwork,
}

impl std::fmt::Debug for TopologyPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyPeer").finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<TopologyConfig> for TopologyNetwork {
    type Network = TopologyPeer;

    async fn new_client(&mut self, target: HostId, node: &BasicNode) -> TopologyPeer {
        TopologyPeer {
            target,
            node: node.clone(),
            network: self.clone(),
        }
    }
}

/// Why a call did not reach the peer, as openraft wants it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallFailure(String);

impl TopologyPeer {
    fn addr(&self) -> Result<SocketAddr, Unreachable> {
        let gossiped = self
            .network
            .view
            .borrow()
            .nodes
            .get(&self.target)
            .and_then(|n| n.rpc_addr);
        gossiped
            .or_else(|| self.node.addr.parse().ok())
            .ok_or_else(|| {
                Unreachable::new(&CallFailure(format!(
                    "host {} has no known address",
                    self.target
                )))
            })
    }

    /// Sends `request` as `message`; the peer's JSON answer decoded, or why there is none.
    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        message: RaftMessage,
        request: &Q,
        timeout: Duration,
    ) -> Result<A, Unreachable> {
        let addr = self.addr()?;
        let payload = serde_json::to_vec(request)
            .map_err(|e| Unreachable::new(&CallFailure(format!("raft message to JSON: {e}"))))?;
        let version = self.network.topology.borrow().version;
        let answer = self
            .network
            .clients
            .raft(self.target, addr, message, payload, version, timeout)
            .await
            .map_err(|e| Unreachable::new(&e))?;
        serde_json::from_slice(&answer).map_err(|e| {
            Unreachable::new(&CallFailure(format!(
                "raft answer from {addr} is not JSON of the expected message: {e}"
            )))
        })
    }

    fn remote<E: std::error::Error>(&self, error: E) -> RemoteError<HostId, BasicNode, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), error)
    }
}

impl RaftNetwork<TopologyConfig> for TopologyPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TopologyConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<HostId>, RPCError<HostId, BasicNode, RaftError<HostId>>> {
        let answer: Result<AppendEntriesResponse<HostId>, RaftError<HostId>> = self
            .call(RaftMessage::AppendEntries, &rpc, option.hard_ttl())
            .await?;
        answer.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<HostId>,
        option: RPCOption,
    ) -> Result<VoteResponse<HostId>, RPCError<HostId, BasicNode, RaftError<HostId>>> {
        let answer: Result<VoteResponse<HostId>, RaftError<HostId>> = self
            .call(RaftMessage::Vote, &rpc, option.hard_ttl())
            .await?;
        answer.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<HostId>,
        snapshot: Snapshot<TopologyConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<HostId>, StreamingError<TopologyConfig, Fatal<HostId>>> {
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            image: *snapshot.snapshot,
        };
        let answer: Result<SnapshotResponse<HostId>, Fatal<HostId>> = self
            .call(RaftMessage::FullSnapshot, &message, option.hard_ttl())
            .await?;
        answer.map_err(|e| StreamingError::RemoteError(self.remote(e)))
    }
}
