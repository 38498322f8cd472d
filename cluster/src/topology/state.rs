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
//! movement runs at a time; no two hosts hold the same token; a joining host holds its tokens
//! from the moment it is accepted (they are allocated by the leader before the command is
//! proposed, never while it is applied: applying must be deterministic).
//! Must never: do I/O, read a clock or draw random numbers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ring::{HostId, Ring, Token};

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
    /// The id the next movement gets.
    pub next_movement: u64,
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
        }
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
        match &self.movement {
            Some(movement) => Err(format!(
                "busy: {} {} of {} is running (movements are serialized; retry when it ends)",
                movement.kind.as_str(),
                movement.id,
                movement.host
            )),
            None => Ok(()),
        }
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

    /// Whether `host` may send node-to-node requests: known and not `left`.
    pub fn admits(&self, host: HostId) -> bool {
        self.nodes
            .get(&host)
            .is_some_and(|n| n.state != NodeState::Left)
    }
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
mod tests {
    use super::*;

    fn host(n: u128) -> HostId {
        HostId::from_u128(n)
    }

    fn node(tokens: Vec<Token>) -> TopologyNode {
        TopologyNode {
            name: "n".to_owned(),
            rpc_addr: "127.0.0.1:1".to_owned(),
            tokens,
            state: NodeState::Normal,
        }
    }

    fn formed() -> TopologyState {
        let mut state = TopologyState::default();
        let nodes = BTreeMap::from([(host(1), node(vec![10, 20]))]);
        state
            .apply(&Command::Form {
                cluster_name: "c".to_owned(),
                nodes,
            })
            .expect("a first form is accepted");
        state
    }

    fn join(h: u128, tokens: Vec<Token>) -> Command {
        Command::Join(JoinRequest {
            cluster_name: "c".to_owned(),
            protocol_version: crate::PROTOCOL_VERSION,
            host: host(h),
            name: "new".to_owned(),
            rpc_addr: "127.0.0.1:2".to_owned(),
            tokens,
            adopt: false,
            replaces: None,
        })
    }

    #[test]
    fn a_bootstrap_moves_through_its_steps_and_the_rings_follow() {
        let mut state = formed();
        assert_eq!(state.version, 1);
        assert_eq!(state.apply(&join(2, vec![15])), Ok(2));
        let movement = state.movement.clone().expect("the join starts a bootstrap");
        assert_eq!(movement.step, MovementStep::Stream);
        assert_eq!(
            state.read_ring().host_count(),
            1,
            "reads stay on the old ring"
        );
        let other = state.other_write_ring().expect("a movement runs");
        assert_eq!(other.host_count(), 2, "writes reach the joining host too");
        let finish = Command::Finish {
            movement: movement.id,
        };
        assert!(state.apply(&finish).is_err(), "no finish before read_new");
        let advance = Command::Advance {
            movement: movement.id,
            step: MovementStep::ReadNew,
        };
        assert_eq!(state.apply(&advance), Ok(3));
        assert_eq!(state.read_ring().host_count(), 2);
        assert_eq!(
            state.other_write_ring().map(|r| r.host_count()),
            Some(1),
            "the old replicas still take writes"
        );
        assert!(state.apply(&advance).is_err(), "a step is taken once");
        assert_eq!(state.apply(&finish), Ok(4));
        assert_eq!(state.nodes[&host(2)].state, NodeState::Normal);
        assert!(state.movement.is_none() && state.other_write_ring().is_none());
    }

    #[test]
    fn joins_are_validated_and_serialized() {
        let mut state = formed();
        assert!(
            state
                .apply(&join(2, vec![10]))
                .unwrap_err()
                .contains("already")
        );
        assert!(
            state
                .apply(&join(2, vec![]))
                .unwrap_err()
                .contains("without tokens")
        );
        let Command::Join(mut other_cluster) = join(2, vec![15]) else {
            unreachable!("join builds a Join")
        };
        other_cluster.cluster_name = "d".to_owned();
        assert!(
            state
                .apply(&Command::Join(other_cluster))
                .unwrap_err()
                .contains("cluster name")
        );
        state.apply(&join(2, vec![15])).expect("a valid join");
        assert_eq!(
            state.apply(&join(2, vec![15])),
            Ok(2),
            "the same host asking again changes nothing"
        );
        assert!(
            state
                .apply(&join(3, vec![16]))
                .unwrap_err()
                .contains("busy"),
            "a second join waits for the first"
        );
        assert_eq!(state.version, 2, "refused commands change nothing");
    }

    #[test]
    fn an_aborted_bootstrap_forgets_the_host_and_left_is_permanent() {
        let mut state = formed();
        state.apply(&join(2, vec![15])).expect("a valid join");
        let id = state.movement.as_ref().map(|m| m.id).expect("a bootstrap");
        state
            .apply(&Command::Abort {
                movement: id,
                reason: "test".to_owned(),
            })
            .expect("the running movement aborts");
        assert!(!state.nodes.contains_key(&host(2)) && state.movement.is_none());
        state.apply(&join(2, vec![15])).expect("it may ask again");
        assert_ne!(state.movement.as_ref().map(|m| m.id), Some(id), "a new id");

        state
            .nodes
            .get_mut(&host(1))
            .expect("formed with host 1")
            .state = NodeState::Left;
        assert!(!state.admits(host(1)));
        let again = state.apply(&join(1, vec![30])).unwrap_err();
        assert!(again.contains("never accepted again"), "{again}");
    }

    #[test]
    fn an_adopted_host_is_normal_at_once_and_form_is_taken_once() {
        let mut state = formed();
        let Command::Join(mut adopted) = join(2, vec![15]) else {
            unreachable!("join builds a Join")
        };
        adopted.adopt = true;
        state.apply(&Command::Join(adopted)).expect("adopted");
        assert_eq!(state.nodes[&host(2)].state, NodeState::Normal);
        assert!(state.movement.is_none());
        let again = Command::Form {
            cluster_name: "c".to_owned(),
            nodes: BTreeMap::new(),
        };
        assert!(state.apply(&again).unwrap_err().contains("already formed"));
    }

    #[test]
    fn a_leaving_host_reads_until_read_new_and_then_is_left_without_tokens() {
        let mut state = formed();
        let Command::Join(mut adopted) = join(2, vec![15]) else {
            unreachable!("join builds a Join")
        };
        adopted.adopt = true;
        state.apply(&Command::Join(adopted)).expect("adopted");
        let leave = |host| Command::Leave {
            host,
            kind: MovementKind::Decommission,
            replication_factor: 1,
        };
        let too_few = Command::Leave {
            host: host(2),
            kind: MovementKind::RemoveNode,
            replication_factor: 2,
        };
        assert!(state.apply(&too_few).unwrap_err().contains("fewer than"));
        state.apply(&leave(host(2))).expect("a decommission starts");
        let second = state.apply(&leave(host(1))).unwrap_err();
        assert!(second.contains("busy"), "one movement at a time: {second}");
        let id = state.movement.as_ref().map(|m| m.id).expect("a movement");
        assert_eq!(state.read_ring().host_count(), 2, "it still serves reads");
        assert_eq!(state.other_write_ring().map(|r| r.host_count()), Some(1));
        state
            .apply(&Command::Advance {
                movement: id,
                step: MovementStep::ReadNew,
            })
            .expect("read_new");
        assert_eq!(state.read_ring().host_count(), 1, "reads leave it");
        assert_eq!(
            state.other_write_ring().map(|r| r.host_count()),
            Some(2),
            "it still takes writes"
        );
        state
            .apply(&Command::Finish { movement: id })
            .expect("finish");
        assert_eq!(state.nodes[&host(2)].state, NodeState::Left);
        assert!(state.nodes[&host(2)].tokens.is_empty());
        assert!(!state.admits(host(2)));
        assert_eq!(state.read_ring().host_count(), 1);
    }

    fn replace(h: u128, replaced: u128) -> Command {
        let Command::Join(mut request) = join(h, Vec::new()) else {
            unreachable!("join builds a Join")
        };
        request.replaces = Some(host(replaced));
        Command::Join(request)
    }

    #[test]
    fn a_replacement_takes_the_dead_hosts_tokens_and_an_abort_gives_them_back() {
        let mut state = formed();
        assert!(
            state
                .apply(&replace(2, 9))
                .unwrap_err()
                .contains("not in the ring")
        );
        let Command::Join(mut with_tokens) = replace(2, 1) else {
            unreachable!("replace builds a Join")
        };
        with_tokens.tokens = vec![15];
        assert!(
            state
                .apply(&Command::Join(with_tokens))
                .unwrap_err()
                .contains("tokens of its own")
        );
        state.apply(&replace(2, 1)).expect("a replace starts");
        let movement = state.movement.clone().expect("a replace runs");
        assert_eq!(
            (movement.kind, movement.host, movement.departed()),
            (MovementKind::Replace, host(2), Some(host(1)))
        );
        assert_eq!(state.nodes[&host(2)].tokens, vec![10, 20]);
        assert_eq!(state.nodes[&host(1)].state, NodeState::Leaving);
        let hosts = |ring: Ring| ring.hosts().iter().copied().collect::<Vec<_>>();
        assert_eq!(hosts(state.read_ring()), vec![host(1)], "reads stay on it");
        assert_eq!(
            state.other_write_ring().map(hosts),
            Some(vec![host(2)]),
            "writes reach the replacement"
        );
        assert!(state.apply(&replace(3, 1)).unwrap_err().contains("busy"));
        state
            .apply(&Command::Abort {
                movement: movement.id,
                reason: "test".to_owned(),
            })
            .expect("the replace aborts");
        assert!(!state.nodes.contains_key(&host(2)));
        assert_eq!(state.nodes[&host(1)].state, NodeState::Normal);

        state.apply(&replace(3, 1)).expect("another replace starts");
        let id = state.movement.as_ref().map(|m| m.id).expect("a replace");
        for command in [
            Command::Advance {
                movement: id,
                step: MovementStep::ReadNew,
            },
            Command::Finish { movement: id },
        ] {
            state.apply(&command).expect("the replace goes on");
        }
        assert_eq!(state.nodes[&host(3)].state, NodeState::Normal);
        assert_eq!(state.nodes[&host(1)].state, NodeState::Left);
        assert!(state.nodes[&host(1)].tokens.is_empty());
        assert_eq!(hosts(state.read_ring()), vec![host(3)]);
        let again = state.apply(&replace(4, 1)).unwrap_err();
        assert!(again.contains("left"), "{again}");
    }

    #[test]
    fn an_aborted_leave_keeps_the_host_normal() {
        let mut state = formed();
        let Command::Join(mut adopted) = join(2, vec![15]) else {
            unreachable!("join builds a Join")
        };
        adopted.adopt = true;
        state.apply(&Command::Join(adopted)).expect("adopted");
        state
            .apply(&Command::Leave {
                host: host(1),
                kind: MovementKind::RemoveNode,
                replication_factor: 1,
            })
            .expect("a removal starts");
        let id = state.movement.as_ref().map(|m| m.id).expect("a movement");
        state
            .apply(&Command::Abort {
                movement: id,
                reason: "test".to_owned(),
            })
            .expect("abort");
        assert_eq!(state.nodes[&host(1)].state, NodeState::Normal);
        assert_eq!(state.read_ring().host_count(), 2);
    }
}
