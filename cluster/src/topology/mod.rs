//! The topology log (DESIGN.md §6, docs/cluster.md "Topology log"): the ring's hosts, their
//! tokens and states, and the movement in progress live in a raft log (`openraft`) replicated
//! to every node; gossip keeps only liveness, addresses, load and each node's applied version.
//!
//! - [`state`]: the topology and the commands that change it (pure).
//! - [`log_store`]: the log's entries and vote on disk.
//! - [`state_machine`]: applies committed commands, persists and publishes the state.
//! - [`network`]: raft messages to other nodes over the node-to-node service.
//! - [`entry`]: how a node enters the ring: forming the log, or a validated join.
//! - [`leave`]: decommission and removenode requests.
//! - [`attribute_types`]: recording a tenant's attribute types through the leader.
//! - [`cleanup`]: dropping the data of ranges this node no longer replicates.
//! - [`fence`]: the oldest topology version node-to-node requests may be planned on.
//! - [`coordinator`]: the one driver of movements, on the log's leader.
//! - [`streaming`]: a gaining node's side of a movement: streaming the ranges it takes.
//! - [`service`]: the `Topology` gRPC service.
//!
//! Invariants: tokens and node states come from the log only; every node routes by the state
//! it applied, which it persisted first; the ring's version is the log's `topology_version`.
//! Must never: change the topology outside a committed command.

pub mod attribute_types;
pub mod cleanup;
pub mod coordinator;
pub mod entry;
pub mod fence;
pub mod leave;
pub mod log_store;
pub mod network;
pub mod service;
pub mod state;
pub mod state_machine;
pub mod streaming;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::{BasicNode, Raft};
use tokio::sync::watch;
use tonic::Status;

use crate::ClusterError;
use crate::membership::{ClusterView, NodeStatus};
use crate::peer_client::PeerClients;
use crate::ring::HostId;
use crate::stream::RangeStream;
use fence::TopologyFence;
use log_store::TopologyLogStore;
use network::TopologyNetwork;
pub use state::LEFT_SENDER;
use state::{Command, NodeState, Outcome, TopologyState};
use state_machine::{TopologyImage, TopologyMachine};

openraft::declare_raft_types!(
    /// The topology log's types: commands in, outcomes out, hosts as raft nodes.
    pub TopologyConfig:
        D = Command,
        R = Outcome,
        NodeId = HostId,
        Node = BasicNode,
        SnapshotData = TopologyImage,
);

/// How long a proposal waits to be committed before it fails `UNAVAILABLE`.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How this node takes part in the log; `cmd` builds it from `[cluster]`.
#[derive(Clone, Debug)]
pub struct TopologyOptions {
    /// `cluster.name`.
    pub cluster_name: String,
    /// `cluster.node_name`.
    pub node_name: String,
    /// The node-to-node address this node gives when it joins.
    pub rpc_advertise: SocketAddr,
    /// `cluster.num_tokens`: tokens asked for on the first join; `None` asks for as many as the
    /// ring's nodes hold ([`crate::ring::NEW_RING_TOKENS`] when this node forms the ring).
    pub num_tokens: Option<usize>,
    /// `cluster.replace_host`: the dead host whose tokens this node takes when it first joins
    /// (a replace instead of a bootstrap).
    pub replace: Option<HostId>,
    /// `cluster.replication_factor`: what the bootstrap plan streams.
    pub replication_factor: usize,
    /// Whether this node is one of `cluster.seeds` (only a seed may form a new log).
    pub is_seed: bool,
    /// Gossip addresses of the seeds: among the seeds seen, the one with the smallest host id
    /// forms the log.
    pub seeds: BTreeSet<SocketAddr>,
    /// How long a seed waits for a formed log before it may form one.
    pub settle: Duration,
    /// How often a node waiting to join or a coordinator without news looks again.
    pub poll: Duration,
}

/// The log's files, opened before gossip starts so that membership can follow the state.
pub struct TopologyFiles {
    log: TopologyLogStore,
    machine: TopologyMachine,
    state: watch::Receiver<Arc<TopologyState>>,
}

impl std::fmt::Debug for TopologyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyFiles").finish_non_exhaustive()
    }
}

impl TopologyFiles {
    /// Opens (or creates) the log, vote and state files under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<TopologyFiles, ClusterError> {
        let (published, state) = watch::channel(Arc::new(TopologyState::default()));
        let machine = TopologyMachine::open(data_dir, published)?;
        let log = TopologyLogStore::open(data_dir)?;
        Ok(TopologyFiles {
            log,
            machine,
            state,
        })
    }

    /// The applied state, as it changes.
    pub fn state(&self) -> watch::Receiver<Arc<TopologyState>> {
        self.state.clone()
    }
}

struct Shared {
    host: HostId,
    raft: Raft<TopologyConfig>,
    state: watch::Receiver<Arc<TopologyState>>,
    clients: Arc<PeerClients>,
    view: watch::Receiver<Arc<ClusterView>>,
    options: TopologyOptions,
    /// Joins are handled one at a time on the leader (token allocation reads the state).
    joins: tokio::sync::Mutex<()>,
    /// Held while this node runs a cleanup (one at a time).
    cleaning: tokio::sync::Mutex<()>,
    /// The stream a joining node bootstraps with, once its store is open.
    stream: OnceLock<RangeStream>,
    /// Raised by every barrier this node answers or (as the coordinator) completes.
    fence: TopologyFence,
}

/// This node's member of the log; cheap to clone.
#[derive(Clone)]
pub struct TopologyLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TopologyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyLog")
            .field("host", &self.shared.host)
            .finish_non_exhaustive()
    }
}

/// The raft timing: heartbeats well inside the election timeout, elections in about a second.
fn raft_config(cluster_name: &str) -> Result<openraft::Config, ClusterError> {
    openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 200,
        election_timeout_min: 1_000,
        election_timeout_max: 2_000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ClusterError::Protocol(format!("topology log configuration: {e}")))
}

impl TopologyLog {
    /// Starts this node's member of the log over `files`, raising `fence` at every barrier;
    /// the coordinator runs from now on (it acts only while this node leads).
    pub async fn start(
        files: TopologyFiles,
        host: HostId,
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        options: TopologyOptions,
        fence: TopologyFence,
    ) -> Result<TopologyLog, ClusterError> {
        let config = Arc::new(raft_config(&options.cluster_name)?);
        let network = TopologyNetwork::new(clients.clone(), view.clone(), files.state.clone());
        let raft = Raft::new(host, config, network, files.log, files.machine)
            .await
            .map_err(|e| ClusterError::Protocol(format!("topology log did not start: {e}")))?;
        let log = TopologyLog {
            shared: Arc::new(Shared {
                host,
                raft,
                state: files.state,
                clients,
                view,
                options,
                joins: tokio::sync::Mutex::new(()),
                cleaning: tokio::sync::Mutex::new(()),
                stream: OnceLock::new(),
                fence,
            }),
        };
        coordinator::spawn(log.clone());
        Ok(log)
    }

    /// This node.
    pub fn host(&self) -> HostId {
        self.shared.host
    }

    /// The applied state now.
    pub fn state(&self) -> Arc<TopologyState> {
        self.shared.state.borrow().clone()
    }

    /// The applied state, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TopologyState>> {
        self.shared.state.clone()
    }

    /// Gives the log the stream this node bootstraps with (once its store is open).
    pub fn attach_stream(&self, stream: RangeStream) {
        // A second attach keeps the first: both stream into the same store.
        let _ = self.shared.stream.set(stream);
    }

    /// The log's leader as this node knows it.
    pub async fn leader(&self) -> Option<HostId> {
        self.shared.raft.current_leader().await
    }

    /// The leader this node knows of now (none while an election runs or without a quorum),
    /// without waiting.
    pub fn known_leader(&self) -> Option<HostId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// The voters of the log's current membership.
    pub fn voters(&self) -> BTreeSet<HostId> {
        self.shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Where a request this node cannot take goes: `None` when this node leads, the leader and
    /// its address otherwise; UNAVAILABLE without a leader or for a request already forwarded
    /// once (a leader never forwards).
    async fn leader_for(&self, forwarded: bool) -> Result<Option<(HostId, SocketAddr)>, Status> {
        let leader = self.leader().await;
        if leader == Some(self.shared.host) {
            return Ok(None);
        }
        let Some(leader) = leader.filter(|_| !forwarded) else {
            return Err(Status::unavailable(
                "the topology log has no leader now (no metadata quorum); retry",
            ));
        };
        let addr = self
            .shared
            .view
            .borrow()
            .peer_address(leader)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Some((leader, addr)))
    }

    /// Proposes `command` (this node must lead); its outcome once committed and applied here.
    /// Fails after [`PROPOSE_TIMEOUT`] without a commit (no quorum of voters answers): the
    /// command may then still be committed once they are back.
    async fn propose(&self, command: Command) -> Result<Outcome, ClusterError> {
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.shared.raft.client_write(command)).await {
            Ok(written) => written.map(|response| response.data).map_err(|e| {
                ClusterError::Unavailable(format!("the topology log did not commit: {e}"))
            }),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "the topology log did not commit within {PROPOSE_TIMEOUT:?}: no quorum of its \
                 voters ({}) answers; the command may still take effect once they are back \
                 (see allidb cluster status)",
                self.voter_names()
            ))),
        }
    }

    /// Whether the log has a leader backed by a quorum of voters now: this node leads and a
    /// quorum answered a heartbeat within `timeout`, or it follows a leader it heard from
    /// (a follower that stops hearing one starts an election and knows no leader meanwhile).
    pub async fn has_quorum(&self, timeout: Duration) -> bool {
        match self.known_leader() {
            None => false,
            Some(leader) if leader == self.shared.host => matches!(
                tokio::time::timeout(timeout, self.shared.raft.ensure_linearizable()).await,
                Ok(Ok(_))
            ),
            Some(_) => true,
        }
    }

    /// The voters by name (gossip's), for messages.
    fn voter_names(&self) -> String {
        let view = self.shared.view.borrow().clone();
        self.voters()
            .into_iter()
            .map(|host| {
                view.nodes
                    .get(&host)
                    .map_or_else(|| host.to_string(), |n| n.name.clone())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Waits until this node applied `version` (or `timeout` passes), in its log and in the
    /// cluster view its coordinator plans requests by; the version it has in both.
    pub async fn applied(&self, version: u64, timeout: Duration) -> u64 {
        applied_in_both(
            self.shared.state.clone(),
            self.shared.view.clone(),
            version,
            timeout,
        )
        .await
    }

    /// Waits until this node applied the records of attribute types up to `version` (or
    /// `timeout` passes); the count it has.
    pub async fn applied_attribute_types(&self, version: u64, timeout: Duration) -> u64 {
        let mut state = self.shared.state.clone();
        // A closed watch (the node stopping) ends the wait with what it has.
        let _ = tokio::time::timeout(
            timeout,
            state.wait_for(|s| s.attribute_types_version >= version),
        )
        .await;
        state.borrow().attribute_types_version
    }

    /// The members of `state` other than this node that gossip does not hold down and that
    /// have not left, with their addresses (a barrier asks each).
    fn live_peers(&self, state: &TopologyState) -> Vec<(HostId, Result<SocketAddr, ClusterError>)> {
        let view = self.shared.view.borrow().clone();
        state
            .nodes
            .iter()
            .filter(|(host, node)| node.state != NodeState::Left && **host != self.shared.host)
            .filter(|(host, _)| {
                view.nodes
                    .get(host)
                    .is_some_and(|n| n.status != NodeStatus::Down)
            })
            .map(|(host, _)| (*host, view.peer_address(*host)))
            .collect()
    }

    /// Stops the log's tasks.
    pub async fn shutdown(&self) {
        if let Err(error) = self.shared.raft.shutdown().await {
            tracing::warn!(%error, "the topology log did not stop cleanly");
        }
    }
}

/// Waits until `version` is applied in the log's `state` and in the `view` the coordinator plans
/// requests by (the view follows the state a moment later: a barrier answered on the state alone
/// would raise the fence while this node's coordinator still plans on the older ring, and its
/// own writes would be refused), or until `timeout` passes; the version both have.
async fn applied_in_both(
    mut state: watch::Receiver<Arc<TopologyState>>,
    mut view: watch::Receiver<Arc<ClusterView>>,
    version: u64,
    timeout: Duration,
) -> u64 {
    let both = async {
        // A closed watch (the node stopping) ends the wait with what it has.
        let _ = state.wait_for(|s| s.version >= version).await;
        let _ = view.wait_for(|v| v.ring.version() >= version).await;
    };
    let _ = tokio::time::timeout(timeout, both).await;
    let logged = state.borrow().version;
    logged.min(view.borrow().ring.version())
}

/// Refuses (`FAILED_PRECONDITION`, counted) a node-to-node request from a host that left the
/// ring, by the sender its `header` names ([`TopologyState::check_sender`]).
pub fn refuse_left_sender(
    state: &TopologyState,
    header: Option<&crate::proto::RequestHeader>,
) -> Result<(), Status> {
    let sender = header.map_or("", |h| h.sender.as_str());
    state.check_sender(sender).map_err(|why| {
        metrics::counter!("allidb_topology_left_requests_refused_total").increment(1);
        Status::failed_precondition(why)
    })
}

/// A topology request's refusal or failure (from this node's log or the leader's) as an error:
/// FAILED_PRECONDITION is the log's refusal.
fn status_error(status: Status) -> ClusterError {
    match status.code() {
        tonic::Code::FailedPrecondition => {
            ClusterError::TopologyRefused(status.message().to_owned())
        }
        tonic::Code::InvalidArgument => ClusterError::InvalidRange(status.message().to_owned()),
        _ => ClusterError::Unavailable(status.message().to_owned()),
    }
}

/// The JSON body of the sealed file `path` whose first line is `header` (`None`: no file).
fn read_sealed_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    header: &str,
) -> Result<Option<T>, ClusterError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ClusterError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |reason: String| ClusterError::CorruptTopology {
        path: path.to_path_buf(),
        reason,
    };
    let body = crate::identity::unseal(&text).map_err(corrupt)?;
    let json = body
        .strip_prefix(header)
        .and_then(|rest| rest.strip_prefix('\n'))
        .ok_or_else(|| corrupt(format!("the first line is not {header:?}")))?;
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// The raft node of `host` at `addr`.
fn raft_node(addr: &str) -> BasicNode {
    BasicNode {
        addr: addr.to_owned(),
    }
}

/// The hosts of `state` keyed for a `Form`, from (host, tokens, name, address) rows.
fn normal_nodes(
    rows: impl IntoIterator<Item = (HostId, Vec<crate::ring::Token>, String, String)>,
) -> BTreeMap<HostId, state::TopologyNode> {
    rows.into_iter()
        .map(|(host, mut tokens, name, rpc_addr)| {
            tokens.sort_unstable();
            let node = state::TopologyNode {
                name,
                rpc_addr,
                tokens,
                state: state::NodeState::Normal,
            };
            (host, node)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn view(version: u64) -> Arc<ClusterView> {
        ClusterView::all_up(Ring::new(
            version,
            [(HostId::from_u128(1), vec![1u64 << 60])],
        ))
    }

    fn state(version: u64) -> Arc<TopologyState> {
        Arc::new(TopologyState {
            version,
            ..TopologyState::default()
        })
    }

    #[tokio::test]
    async fn a_version_is_applied_once_the_view_the_coordinator_plans_by_has_it_too() {
        // The log applied version 2; the view still routes by version 1.
        let (_states, state_rx) = watch::channel(state(2));
        let (views, view_rx) = watch::channel(view(1));
        let timeout = Duration::from_secs(10);
        let waiting = tokio::spawn(applied_in_both(
            state_rx.clone(),
            view_rx.clone(),
            2,
            timeout,
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "answered before the view had version 2"
        );
        views.send_replace(view(2));
        let applied = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends once the view has the version")
            .expect("the wait does not panic");
        assert_eq!(applied, 2);
        // Without the view in time: the version both have.
        let short = Duration::from_millis(50);
        assert_eq!(applied_in_both(state_rx, view_rx, 3, short).await, 2);
    }
}
