//! The topology as the log holds it (DESIGN.md §6, docs/cluster.md "Topology log"): every
//! host's state and tokens, the movement in progress and the `topology_version`; pure.
//!
//! Owns [`TopologyState`] and the [`Command`]s the log commits. [`TopologyState::apply`] is the
//! only way the state changes: it either applies a command whole (and bumps the version when
//! anything a node routes by changed) or refuses it with a reason and changes nothing. Every
//! node applies the same commands in the same order, so every node holds the same state for the
//! same version.
//!
//! Invariants: `left` is permanent (a host that left is never accepted again); at most one
//! movement runs at a time, and never beside a cleanup (DESIGN.md §6 rule 7: a cleanup starts
//! only while no movement runs, and no movement starts while one runs); no two hosts hold the
//! same token; a joining host holds its tokens
//! from the moment it is accepted (they are allocated by the leader before the command is
//! proposed, never while it is applied: applying must be deterministic).
//! Must never: do I/O, read a clock or draw random numbers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use allidb_index::filter::AttrType;

use crate::ring::{HostId, Ring, Token};
pub use attribute_types::AttributeTypeChange;

mod attribute_types;

/// How a node's refusal of a request from a host that left the ring begins (its
/// FAILED_PRECONDITION message), so the sender can tell it from other refusals.
pub const LEFT_SENDER: &str = "header.sender: host";

/// A host's state in the ring, as the log holds it (liveness is gossip's, not the log's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Accepted with its tokens; receives writes for its future ranges while it streams them,
    /// takes reads only once `normal`.
    Joining,
    /// Owns its tokens.
    Normal,
    /// Hands its ranges over before leaving.
    Leaving,
    /// Gone for good: never an owner again, its requests refused.
    Left,
}

impl NodeState {
    /// The lowercase name used in status output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "joining",
            NodeState::Normal => "normal",
            NodeState::Leaving => "leaving",
            NodeState::Left => "left",
        }
    }
}

/// One host as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// `cluster.node_name`, for people.
    pub name: String,
    /// The node-to-node address it gave when it joined (gossip has the current one).
    pub rpc_addr: String,
    /// Its vnode tokens, sorted.
    pub tokens: Vec<Token>,
    pub state: NodeState,
}

/// The kinds of movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A new host takes its tokens and streams its ranges in.
    Bootstrap,
    /// A live host hands its ranges to their new owners, which stream them from it, and leaves.
    Decommission,
    /// A dead host is removed: its ranges' new owners stream them from the surviving replicas.
    RemoveNode,
    /// A new host takes a dead host's tokens and streams its ranges from the surviving
    /// replicas; the dead host is `left` once it finishes.
    Replace,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Bootstrap => "bootstrap",
            MovementKind::Decommission => "decommission",
            MovementKind::RemoveNode => "removenode",
            MovementKind::Replace => "replace",
        }
    }
}

/// Where a movement stands. Writes go to the old and the new replicas in both steps; reads
/// follow the old ring until `ReadNew`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementStep {
    /// Write both, read old: the ranges are being streamed to their new replicas.
    Stream,
    /// Write both, read new: streaming finished; the old replicas still take writes until
    /// every node reads from the new ones.
    ReadNew,
}

impl MovementStep {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementStep::Stream => "stream",
            MovementStep::ReadNew => "read_new",
        }
    }
}

/// The movement in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Unique in the log; stream sessions carry it so late chunks of a closed one are refused.
    pub id: u64,
    pub kind: MovementKind,
    /// The host that joins (or leaves).
    pub host: HostId,
    pub step: MovementStep,
    /// In a replace, the dead host whose tokens `host` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<HostId>,
}

impl Movement {
    /// The host whose data is gone (dead) and whose ranges are rebuilt from the surviving
    /// replicas: the removed one in a removenode, the replaced one in a replace.
    pub fn departed(&self) -> Option<HostId> {
        match self.kind {
            MovementKind::RemoveNode => Some(self.host),
            MovementKind::Replace => self.replaced,
            MovementKind::Bootstrap | MovementKind::Decommission => None,
        }
    }
}

/// A host asking to join, as the leader proposes it (tokens already allocated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub cluster_name: String,
    pub protocol_version: u32,
    pub host: HostId,
    pub name: String,
    pub rpc_addr: String,
    pub tokens: Vec<Token>,
    /// The host already owned these tokens before the ring moved into the log (an upgraded
    /// ring): it becomes `normal` at once, nothing to stream.
    pub adopt: bool,
    /// The dead host whose tokens it takes (a replace; `tokens` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<HostId>,
}

/// What the log commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The first entry: the cluster's name and its hosts (the first seed alone, or, for a ring
    /// upgraded in place, every host with its tokens as the seed knew them).
    Form {
        cluster_name: String,
        nodes: BTreeMap<HostId, TopologyNode>,
    },
    /// A validated join: the host becomes `joining` with its tokens and a bootstrap starts (or,
    /// adopted, it is `normal` at once).
    Join(JoinRequest),
    /// A host asks to leave (`Decommission`) or an operator removes a dead one (`RemoveNode`):
    /// it becomes `leaving` and the movement starts. Refused when it would leave fewer `normal`
    /// hosts than `replication_factor`.
    Leave {
        host: HostId,
        kind: MovementKind,
        replication_factor: usize,
    },
    /// Moves the movement `movement` to `step`.
    Advance { movement: u64, step: MovementStep },
    /// Ends the movement `movement`: a bootstrapped host becomes `normal`, a leaving one `left`
    /// (its tokens dropped).
    Finish { movement: u64 },
    /// Rolls the movement `movement` back: a bootstrapping host is forgotten (it never owned
    /// anything; it may ask to join again), a leaving one is `normal` again.
    Abort { movement: u64, reason: String },
    /// `host` starts dropping the data of ranges it no longer replicates (refused while a
    /// movement runs; movements wait until it ends). A cleanup of `host` already recorded is
    /// replaced: only `host` asks for its own, one at a time, so that one is over.
    StartCleanup { host: HostId },
    /// Ends the cleanup `cleanup` of `host` (finished, failed, or abandoned: its host is down).
    EndCleanup { host: HostId, cleanup: u64 },
    /// Records the types of attribute keys of `tenant`, all or none: refused when some key's
    /// recorded type is not the change's `expected` one (another coordinator recorded first).
    /// Routing does not change: the version stays.
    RecordAttributeTypes {
        tenant: String,
        changes: Vec<AttributeTypeChange>,
    },
}

/// What applying a command gave: the version after it, or why it was refused.
pub type Outcome = Result<u64, String>;

/// The whole topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyState {
    /// Empty until the log is formed.
    pub cluster_name: String,
    /// `topology_version`: bumped by every applied command that changes what nodes route by.
    pub version: u64,
    pub nodes: BTreeMap<HostId, TopologyNode>,
    pub movement: Option<Movement>,
    /// The id the next movement (or cleanup) gets.
    pub next_movement: u64,
    /// The cleanups running, by host: their ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cleanups: BTreeMap<HostId, u64>,
    /// The recorded type of each attribute key, by tenant ([`attribute_types`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attribute_types: BTreeMap<String, BTreeMap<String, AttrType>>,
    /// How many records of attribute types applied (a barrier waits for a node to see one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attribute_types_version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TopologyState {
    /// Whether the log has been formed.
    pub fn formed(&self) -> bool {
        !self.cluster_name.is_empty()
    }

    /// Applies `command`, or refuses it and changes nothing.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Form {
                cluster_name,
                nodes,
            } => self.form(cluster_name, nodes),
            Command::Join(request) => self.join(request),
            Command::Leave {
                host,
                kind,
                replication_factor,
            } => self.leave(*host, *kind, *replication_factor),
            Command::Advance { movement, step } => {
                let current = self.movement_mut(*movement)?;
                if *step <= current.step {
                    return Err(format!(
                        "movement {movement} is already at step {}",
                        current.step.as_str()
                    ));
                }
                current.step = *step;
                Ok(self.bump())
            }
            Command::Finish { movement } => {
                let current = self.movement_mut(*movement)?.clone();
                if current.step != MovementStep::ReadNew {
                    return Err(format!(
                        "movement {movement} cannot finish from step {}",
                        current.step.as_str()
                    ));
                }
                let (joined, left) = match current.kind {
                    MovementKind::Bootstrap => (Some(current.host), None),
                    MovementKind::Replace => (Some(current.host), current.replaced),
                    MovementKind::Decommission | MovementKind::RemoveNode => {
                        (None, Some(current.host))
                    }
                };
                if let Some(node) = joined.and_then(|h| self.nodes.get_mut(&h)) {
                    node.state = NodeState::Normal;
                }
                if let Some(node) = left.and_then(|h| self.nodes.get_mut(&h)) {
                    node.state = NodeState::Left;
                    node.tokens.clear();
                }
                self.movement = None;
                Ok(self.bump())
            }
            Command::Abort { movement, .. } => {
                let current = self.movement_mut(*movement)?.clone();
                let (forgotten, restored) = match current.kind {
                    MovementKind::Bootstrap => (Some(current.host), None),
                    MovementKind::Replace => (Some(current.host), current.replaced),
                    MovementKind::Decommission | MovementKind::RemoveNode => {
                        (None, Some(current.host))
                    }
                };
                if let Some(host) = forgotten {
                    self.nodes.remove(&host);
                }
                if let Some(node) = restored.and_then(|h| self.nodes.get_mut(&h)) {
                    node.state = NodeState::Normal;
                }
                self.movement = None;
                Ok(self.bump())
            }
            Command::StartCleanup { host } => self.start_cleanup(*host),
            Command::EndCleanup { host, cleanup } => match self.cleanups.get(host) {
                Some(running) if running == cleanup => {
                    self.cleanups.remove(host);
                    Ok(self.version)
                }
                _ => Err(format!("cleanup {cleanup} of {host} is not running")),
            },
            Command::RecordAttributeTypes { tenant, changes } => {
                self.record_attribute_types(tenant, changes)
            }
        }
    }

    /// Records a cleanup of `host` (nothing a node routes by changes: no new version).
    fn start_cleanup(&mut self, host: HostId) -> Outcome {
        match self.nodes.get(&host).map(|n| n.state) {
            Some(NodeState::Normal) => {}
            Some(state) => {
                return Err(format!(
                    "host {host} is {}: only a normal host cleans up",
                    state.as_str()
                ));
            }
            None => return Err(format!("host {host} is not in the ring")),
        }
        if let Some(movement) = &self.movement {
            return Err(format!(
                "busy: a cleanup is refused while a movement runs ({} {} of {}): the ranges it \
                 moves are not settled; retry when it ends",
                movement.kind.as_str(),
                movement.id,
                movement.host
            ));
        }
        self.cleanups.insert(host, self.next_movement);
        self.next_movement += 1;
        Ok(self.version)
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn movement_mut(&mut self, id: u64) -> Result<&mut Movement, String> {
        match self.movement.as_ref() {
            Some(running) if running.id == id => {}
            Some(other) => return Err(format!("movement {id} is not running ({other} is)")),
            None => return Err(format!("movement {id} is not running (none is)")),
        }
        Ok(self
            .movement
            .as_mut()
            .expect("checked just above: the movement of this id runs"))
    }

    fn form(&mut self, cluster_name: &str, nodes: &BTreeMap<HostId, TopologyNode>) -> Outcome {
        if self.formed() {
            return Err(format!(
                "the topology log of cluster {:?} is already formed",
                self.cluster_name
            ));
        }
        if cluster_name.is_empty() {
            return Err("the cluster name is empty".to_owned());
        }
        let mut owners: BTreeMap<Token, HostId> = BTreeMap::new();
        for (host, node) in nodes {
            if let Some(token) = node.tokens.iter().find(|t| owners.contains_key(t)) {
                return Err(format!(
                    "token {token} is given to both {} and {host}",
                    owners[token]
                ));
            }
            owners.extend(node.tokens.iter().map(|t| (*t, *host)));
        }
        self.cluster_name = cluster_name.to_owned();
        self.nodes = nodes.clone();
        Ok(self.bump())
    }

    fn busy(&self) -> Result<(), String> {
        if let Some(movement) = &self.movement {
            return Err(format!(
                "busy: {} {} of {} is running (movements are serialized; retry when it ends)",
                movement.kind.as_str(),
                movement.id,
                movement.host
            ));
        }
        if !self.cleanups.is_empty() {
            let hosts: Vec<String> = self.cleanups.keys().map(HostId::to_string).collect();
            return Err(format!(
                "busy: a cleanup runs on {} (movements wait for it; retry when it ends)",
                hosts.join(", ")
            ));
        }
        Ok(())
    }

    fn start_movement(&mut self, kind: MovementKind, host: HostId, replaced: Option<HostId>) {
        self.movement = Some(Movement {
            id: self.next_movement,
            kind,
            host,
            step: MovementStep::Stream,
            replaced,
        });
        self.next_movement += 1;
    }

    fn leave(&mut self, host: HostId, kind: MovementKind, replication_factor: usize) -> Outcome {
        if matches!(kind, MovementKind::Bootstrap | MovementKind::Replace) {
            return Err(format!(
                "a {} starts with a join, not a leave",
                kind.as_str()
            ));
        }
        let Some(node) = self.nodes.get(&host) else {
            return Err(format!("host {host} is not in the ring"));
        };
        if node.state != NodeState::Normal {
            return Err(format!(
                "host {host} is {}, not normal: only a normal host can leave",
                node.state.as_str()
            ));
        }
        self.busy()?;
        let remaining = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Normal)
            .count()
            - 1;
        if remaining < replication_factor.max(1) {
            return Err(format!(
                "{} of {host} would leave {remaining} normal host(s), fewer than the replication \
                 factor {replication_factor}: add a node first",
                kind.as_str()
            ));
        }
        self.start_movement(kind, host, None);
        if let Some(node) = self.nodes.get_mut(&host) {
            node.state = NodeState::Leaving;
        }
        Ok(self.bump())
    }

    fn join(&mut self, request: &JoinRequest) -> Outcome {
        if request.cluster_name != self.cluster_name {
            return Err(format!(
                "cluster name {:?} is not this cluster's ({:?})",
                request.cluster_name, self.cluster_name
            ));
        }
        if request.protocol_version != crate::PROTOCOL_VERSION {
            return Err(format!(
                "host {} speaks node-to-node protocol {}, this cluster {}",
                request.host,
                request.protocol_version,
                crate::PROTOCOL_VERSION
            ));
        }
        if let Some(known) = self.nodes.get(&request.host) {
            return match known.state {
                NodeState::Left => Err(format!(
                    "host {} left the ring and is never accepted again; start it with an empty \
                     data dir to join as a new host",
                    request.host
                )),
                // A restarted joiner asking again: what it holds stands.
                _ => Ok(self.version),
            };
        }
        self.busy()?;
        if let Some(replaced) = request.replaces {
            return self.replace(request, replaced);
        }
        if request.tokens.is_empty() {
            return Err(format!("host {} asks to join without tokens", request.host));
        }
        if let Some((token, owner)) = request.tokens.iter().find_map(|t| {
            self.nodes
                .iter()
                .find(|(_, n)| n.tokens.contains(t))
                .map(|(h, _)| (*t, *h))
        }) {
            return Err(format!("token {token} is already {owner}'s"));
        }
        let mut tokens = request.tokens.clone();
        tokens.sort_unstable();
        let state = if request.adopt {
            NodeState::Normal
        } else {
            self.start_movement(MovementKind::Bootstrap, request.host, None);
            NodeState::Joining
        };
        self.nodes.insert(
            request.host,
            TopologyNode {
                name: request.name.clone(),
                rpc_addr: request.rpc_addr.clone(),
                tokens,
                state,
            },
        );
        Ok(self.bump())
    }

    /// A new host taking the tokens of `replaced`, a `normal` host (the leader checked it is
    /// down): it joins with those tokens while `replaced` is `leaving`, so the ring before holds
    /// only `replaced` and the ring after only the new host at each of them.
    fn replace(&mut self, request: &JoinRequest, replaced: HostId) -> Outcome {
        if !request.tokens.is_empty() || request.adopt {
            return Err(format!(
                "host {} asks to replace {replaced} with tokens of its own",
                request.host
            ));
        }
        let Some(node) = self.nodes.get_mut(&replaced) else {
            return Err(format!("host {replaced} (to replace) is not in the ring"));
        };
        if node.state != NodeState::Normal {
            return Err(format!(
                "host {replaced} is {}: only a normal host can be replaced",
                node.state.as_str()
            ));
        }
        node.state = NodeState::Leaving;
        let tokens = node.tokens.clone();
        self.start_movement(MovementKind::Replace, request.host, Some(replaced));
        self.nodes.insert(
            request.host,
            TopologyNode {
                name: request.name.clone(),
                rpc_addr: request.rpc_addr.clone(),
                tokens,
                state: NodeState::Joining,
            },
        );
        Ok(self.bump())
    }

    /// The ring before the movement in progress (the current one without a movement): the
    /// `normal` and `leaving` hosts.
    pub fn ring_before(&self) -> Ring {
        self.ring(|_, node| matches!(node.state, NodeState::Normal | NodeState::Leaving))
    }

    /// The ring after the movement in progress (`None` without one): the `normal` hosts and a
    /// bootstrapping (or replacing) one.
    pub fn ring_after(&self) -> Option<Ring> {
        let movement = self.movement.as_ref()?;
        Some(self.ring(|host, node| match node.state {
            NodeState::Normal => true,
            NodeState::Joining => *host == movement.host,
            NodeState::Leaving | NodeState::Left => false,
        }))
    }

    /// The ring reads are routed by: the one after the movement once it reads from the new
    /// replicas (`read_new`), the one before it otherwise.
    pub fn read_ring(&self) -> Ring {
        match &self.movement {
            Some(m) if m.step == MovementStep::ReadNew => {
                self.ring_after().unwrap_or_else(|| self.ring_before())
            }
            _ => self.ring_before(),
        }
    }

    /// While a movement runs, the other ring whose replicas also take every write (write both):
    /// the one after it while reads use the one before, and the other way round.
    pub fn other_write_ring(&self) -> Option<Ring> {
        let movement = self.movement.as_ref()?;
        match movement.step {
            MovementStep::Stream => self.ring_after(),
            MovementStep::ReadNew => Some(self.ring_before()),
        }
    }

    fn ring(&self, member: impl Fn(&HostId, &TopologyNode) -> bool) -> Ring {
        Ring::new(
            self.version,
            self.nodes
                .iter()
                .filter(|(host, node)| member(host, node))
                .map(|(host, node)| (*host, node.tokens.clone())),
        )
    }

    /// Whether this node, holding this state, serves a chunk of movement `id`'s stream: only
    /// while that movement runs at its stream step (a late chunk of a rolled back, finished or
    /// superseded attempt is refused), and not before it applied the movement.
    pub fn stream_open(&self, id: u64) -> Result<(), StreamClosed> {
        match &self.movement {
            Some(m) if m.id == id && m.step == MovementStep::Stream => Ok(()),
            _ if id >= self.next_movement => Err(StreamClosed::NotYet(format!(
                "movement: movement {id} is not in this node's log yet (topology version {}); \
                 retry once it applied it",
                self.version
            ))),
            _ => Err(StreamClosed::Closed(format!(
                "movement: movement {id} is no longer at its stream step in this node's log \
                 (topology version {}): a chunk of a closed attempt is not served",
                self.version
            ))),
        }
    }

    /// Refuses a node-to-node request whose header names `sender` (a host id) when that host
    /// left the ring: it is never a member again (DESIGN.md §6 rule 8), whatever its own copy
    /// of the log says (an old data dir of it started again). A sender that does not parse is
    /// left to the header checks.
    pub fn check_sender(&self, sender: &str) -> Result<(), String> {
        let Ok(host) = sender.parse::<HostId>() else {
            return Ok(());
        };
        if self.admits(host) || !self.nodes.contains_key(&host) {
            return Ok(());
        }
        Err(format!(
            "{LEFT_SENDER} {host} left the ring; its requests are refused (a node that left \
             joins again only as a new host, with an empty data dir)"
        ))
    }

    /// Whether `host` may send node-to-node requests: known and not `left`.
    pub fn admits(&self, host: HostId) -> bool {
        self.nodes
            .get(&host)
            .is_some_and(|n| n.state != NodeState::Left)
    }
}

/// Why a source does not serve a chunk of a movement's stream
/// ([`TopologyState::stream_open`]); each message names the field `movement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamClosed {
    /// The movement is not in this node's applied log yet: ask again.
    NotYet(String),
    /// The movement is no longer at its stream step: never served again.
    Closed(String),
}

impl fmt::Display for Movement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of {} at step {}",
            self.kind.as_str(),
            self.id,
            self.host,
            self.step.as_str()
        )
    }
}

#[cfg(test)]
mod tests;
