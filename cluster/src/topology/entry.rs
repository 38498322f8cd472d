//! How a node enters the ring (docs/cluster.md "Joining"): a member restarting finds itself in
//! its applied state; a new node asks a node of the formed ring to join, and the log's leader
//! validates the request, allocates its tokens and commits it; with no formed ring in sight, the
//! seed with the smallest host id forms the log. A ring that predates the log (tokens in the
//! identity and peers files) is carried over at one restart of every node: the forming seed puts
//! every host it knew in the log with its tokens, and the others are adopted with theirs.
//!
//! Invariants: a node takes tokens only from the log; a joining node's tokens are allocated on
//! the leader against every token the log holds, one join at a time.
//! Must never: form a second log when a formed one answers, or accept a host that left.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use tonic::Status;

use super::leave::{live, refuse_gaps};
use super::state::{Command, JoinRequest};
use super::{TopologyLog, normal_nodes, raft_node};
use crate::membership::{ClusterView, NodeStatus};
use crate::peer_client::topology::JoinRefusal;
use crate::peers::PeerRecord;
use crate::ring::{HostId, NEW_RING_TOKENS, Ring, Token};
use crate::{ClusterError, PROTOCOL_VERSION, proto};

/// How often a node waiting to join says so in the log.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(10);
/// The deadline of one join call (the leader commits one log entry).
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an accepted node waits for the log to reach it before asking again.
const ACCEPTED_WAIT: Duration = Duration::from_secs(10);

/// What a node knew of its ring before the ring moved into the log.
#[derive(Clone, Debug, Default)]
pub struct LegacyRing {
    /// This node's tokens from its identity file (empty for a node that never had any).
    pub tokens: Vec<Token>,
    /// The hosts of its peers file.
    pub peers: Vec<PeerRecord>,
}

impl TopologyLog {
    /// Waits until this node is in the log (restarted member, accepted join, or the log it
    /// formed); the version that holds it. Fails when the log refuses it for good (another
    /// cluster, a host that left, another protocol).
    pub async fn enter(&self, legacy: LegacyRing) -> Result<u64, ClusterError> {
        let shared = &self.shared;
        let started = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let state = self.state();
            if let Some(node) = state.nodes.get(&shared.host) {
                if node.state == super::state::NodeState::Left {
                    return Err(ClusterError::JoinRefused(format!(
                        "host {} left the ring; start it with an empty data dir to join as a new host",
                        shared.host
                    )));
                }
                return Ok(state.version);
            }
            let view = shared.view.borrow().clone();
            let formed = formed_peers(&view, shared.host);
            if !formed.is_empty() {
                for (peer, addr) in formed {
                    match self.ask_to_join(peer, addr, &legacy).await {
                        Ok(version) => {
                            self.applied(version, ACCEPTED_WAIT).await;
                            break;
                        }
                        Err(JoinRefusal::Refused(reason)) if reason.starts_with("busy") => {
                            if last_log.elapsed() >= WAITING_LOG_EVERY {
                                last_log = Instant::now();
                                tracing::info!(%reason, "join queued behind a running movement");
                            }
                            break;
                        }
                        Err(JoinRefusal::Refused(reason)) => {
                            return Err(ClusterError::JoinRefused(reason));
                        }
                        Err(JoinRefusal::Unavailable(reason)) => {
                            tracing::debug!(%reason, "a join call did not reach the leader");
                        }
                    }
                }
            } else if self.may_form(&view, started) {
                self.form(&legacy).await?;
                continue;
            } else if last_log.elapsed() >= WAITING_LOG_EVERY {
                last_log = Instant::now();
                tracing::warn!(
                    seeds = ?shared.options.seeds,
                    "no node of a formed ring has answered yet (cluster.seeds); still trying"
                );
            }
            tokio::time::sleep(shared.options.poll).await;
        }
    }

    /// Waits until this node has heard from the ring's other members (gossip sees them up) and
    /// applied at least the topology version any of them gossips, or `grace` passed for the
    /// first and twice `grace` for the second (then it goes on, saying so): what a node waits
    /// for before it reports ready, so it neither routes by an old ring nor calls live peers
    /// down.
    pub async fn settle(&self, grace: Duration) {
        let shared = &self.shared;
        let started = Instant::now();
        loop {
            let state = self.state();
            let view = shared.view.borrow().clone();
            let members = state
                .nodes
                .iter()
                .filter(|(host, node)| {
                    **host != shared.host && node.state != super::state::NodeState::Left
                })
                .map(|(host, _)| *host);
            let heard = members.clone().all(|host| {
                view.nodes
                    .get(&host)
                    .is_some_and(|n| n.status != NodeStatus::Down)
            });
            let newest = view
                .nodes
                .values()
                .filter(|n| n.status != NodeStatus::Down)
                .filter_map(|n| n.topology_version)
                .max()
                .unwrap_or(0);
            let elapsed = started.elapsed();
            let caught_up = state.version >= newest;
            if (heard || elapsed >= grace) && caught_up {
                return;
            }
            if elapsed >= grace * 2 {
                tracing::warn!(
                    applied = state.version,
                    newest,
                    unheard = members
                        .filter(|h| view
                            .nodes
                            .get(h)
                            .is_none_or(|n| n.status == NodeStatus::Down))
                        .count(),
                    "ready without having caught up with the ring: the topology log has not reached this node"
                );
                return;
            }
            tokio::time::sleep(shared.options.poll).await;
        }
    }

    async fn ask_to_join(
        &self,
        peer: HostId,
        addr: SocketAddr,
        legacy: &LegacyRing,
    ) -> Result<u64, JoinRefusal> {
        let options = &self.shared.options;
        let request = proto::JoinRequest {
            header: None,
            cluster_name: options.cluster_name.clone(),
            name: options.node_name.clone(),
            rpc_addr: options.rpc_advertise.to_string(),
            num_tokens: options.num_tokens.map_or(0, |count| count as u32),
            tokens: legacy.tokens.clone(),
            forwarded: false,
            replaces: options
                .replace
                .map(|host| host.to_string())
                .unwrap_or_default(),
        };
        self.shared
            .clients
            .join(peer, addr, request, JOIN_TIMEOUT)
            .await
    }

    /// Whether this node forms the log: a seed that waited `settle` without seeing a formed
    /// ring, with the smallest host id of the seeds it sees.
    fn may_form(&self, view: &ClusterView, started: Instant) -> bool {
        let options = &self.shared.options;
        if !options.is_seed || started.elapsed() < options.settle {
            return false;
        }
        !view.nodes.values().any(|n| {
            n.host_id < self.shared.host
                && n.status != NodeStatus::Down
                && options.seeds.contains(&n.gossip_addr)
        })
    }

    /// Forms the log with this node alone (fresh tokens), or, for a ring that predates the log,
    /// with every host it knew and their tokens.
    async fn form(&self, legacy: &LegacyRing) -> Result<(), ClusterError> {
        let shared = &self.shared;
        let options = &shared.options;
        let own_addr = options.rpc_advertise.to_string();
        let members = BTreeMap::from([(shared.host, raft_node(&own_addr))]);
        match shared.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => {
                return Err(ClusterError::Protocol(format!(
                    "the topology log cannot be formed: {e}"
                )));
            }
        }
        let tokens = if legacy.tokens.is_empty() {
            Ring::new(0, Vec::new()).allocate_tokens(
                shared.host,
                options.num_tokens.unwrap_or(NEW_RING_TOKENS),
                options.replication_factor,
                &mut rand::rng(),
            )
        } else {
            legacy.tokens.clone()
        };
        let own = (shared.host, tokens, options.node_name.clone(), own_addr);
        let upgraded = legacy
            .peers
            .iter()
            .filter(|p| {
                p.host_id != shared.host && !p.tokens.is_empty() && !legacy.tokens.is_empty()
            })
            .map(|p| {
                let addr = p.rpc_addr.map(|a| a.to_string()).unwrap_or_default();
                (p.host_id, p.tokens.clone(), p.name.clone(), addr)
            });
        let nodes = normal_nodes(std::iter::once(own).chain(upgraded));
        let hosts = nodes.len();
        let command = Command::Form {
            cluster_name: options.cluster_name.clone(),
            nodes,
        };
        // A single voter elects itself within an election timeout.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match shared.raft.client_write(command.clone()).await {
                Ok(response) => {
                    if let Err(reason) = response.data {
                        tracing::info!(%reason, "the topology log was formed already");
                    } else {
                        tracing::info!(hosts, "formed the topology log");
                    }
                    return Ok(());
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(ClusterError::Protocol(format!(
                        "the topology log cannot be formed: {e}"
                    )));
                }
            }
        }
    }

    /// A node's request to join (`sender`), taken here: validated and committed when this node
    /// leads, forwarded to the leader otherwise (once).
    pub async fn take_join(
        &self,
        sender: HostId,
        request: proto::JoinRequest,
    ) -> Result<u64, Status> {
        let shared = &self.shared;
        if !self.state().formed() {
            return Err(Status::unavailable(
                "this node has not joined a formed ring yet; ask another",
            ));
        }
        if let Some((leader, addr)) = self.leader_for(request.forwarded).await? {
            let forwarded = proto::JoinRequest {
                forwarded: true,
                ..request
            };
            return shared
                .clients
                .join_as(sender, leader, addr, forwarded, JOIN_TIMEOUT)
                .await
                .map_err(JoinRefusal::into_status);
        }
        let _one_at_a_time = shared.joins.lock().await;
        let state = self.state();
        let addr = request.rpc_addr.clone();
        if state.nodes.contains_key(&sender) {
            // Known (a restarted joiner, or an adopted host): the state's own answer, and the
            // log again if it is not a learner yet.
            let command = Command::Join(self.join_request(sender, &request, Vec::new()));
            let outcome = super::state::TopologyState::clone(&state).apply(&command);
            if outcome.is_ok() {
                self.add_learner(sender, &addr).await?;
            }
            return outcome.map_err(Status::failed_precondition);
        }
        let replaces = match request.replaces.as_str() {
            "" => None,
            text => Some(
                text.parse::<HostId>()
                    .map_err(|e| Status::invalid_argument(format!("replaces: {e}")))?,
            ),
        };
        if let Some(dead) = replaces {
            let view = shared.view.borrow().clone();
            if live(&view, dead) {
                return Err(Status::failed_precondition(format!(
                    "host {dead} is up: a replacement takes a dead node's place; decommission \
                     a live one, or stop it first"
                )));
            }
            let rf = shared.options.replication_factor;
            refuse_gaps(
                &state,
                dead,
                rf,
                |h| live(&view, h),
                "replacing",
                "remove it with removenode --ignore-dead and join as a new node",
            )?;
        }
        let tokens = if replaces.is_some() {
            Vec::new()
        } else if request.tokens.is_empty() {
            let members: Vec<(HostId, Vec<Token>)> = state
                .nodes
                .iter()
                .map(|(host, node)| (*host, node.tokens.clone()))
                .collect();
            let requested = request.num_tokens;
            let rf = shared.options.replication_factor;
            // Scoring the candidates builds a ring per candidate: off the async workers.
            tokio::task::spawn_blocking(move || {
                let ring = Ring::new(0, members);
                let count = match requested {
                    0 => ring.tokens_per_host().unwrap_or(NEW_RING_TOKENS),
                    count => count as usize,
                };
                ring.allocate_tokens(sender, count, rf, &mut rand::rng())
            })
            .await
            .map_err(|e| Status::internal(format!("the token allocation failed: {e}")))?
        } else {
            request.tokens.clone()
        };
        let mut join = self.join_request(sender, &request, tokens);
        join.adopt = replaces.is_none() && !request.tokens.is_empty();
        join.replaces = replaces;
        let outcome = self
            .propose(Command::Join(join))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let version = outcome.map_err(Status::failed_precondition)?;
        tracing::info!(host = %sender, name = request.name, ?replaces, version, "join accepted");
        self.add_learner(sender, &addr).await?;
        Ok(version)
    }

    fn join_request(
        &self,
        sender: HostId,
        request: &proto::JoinRequest,
        tokens: Vec<Token>,
    ) -> JoinRequest {
        JoinRequest {
            cluster_name: request.cluster_name.clone(),
            protocol_version: PROTOCOL_VERSION,
            host: sender,
            name: request.name.clone(),
            rpc_addr: request.rpc_addr.clone(),
            tokens,
            adopt: false,
            replaces: None,
        }
    }

    /// Makes `host` a learner of the log (a no-op for a member), without waiting for it to
    /// catch up.
    async fn add_learner(&self, host: HostId, addr: &str) -> Result<(), Status> {
        let membership = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        if membership.membership().get_node(&host).is_some() {
            return Ok(());
        }
        self.shared
            .raft
            .add_learner(host, raft_node(addr), false)
            .await
            .map(drop)
            .map_err(|e| Status::unavailable(format!("the topology log did not add {host}: {e}")))
    }
}

/// The nodes of `view` other than `host` that are up and gossip a formed log, with their
/// node-to-node addresses.
fn formed_peers(view: &ClusterView, host: HostId) -> Vec<(HostId, SocketAddr)> {
    view.nodes
        .values()
        .filter(|n| n.host_id != host && n.status != NodeStatus::Down)
        .filter(|n| n.topology_version.is_some_and(|v| v > 0))
        .filter_map(|n| Some((n.host_id, n.rpc_addr?)))
        .collect()
}
