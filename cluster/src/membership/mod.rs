//! Membership and failure detection: chitchat gossip over [`transport`], liveness and addresses,
//! joined with the topology log's state into the view every other module routes by
//! (docs/cluster.md, "Membership").
//!
//! Owns this node's gossip identity (host id, generation, advertised addresses, status, load,
//! engine state, the topology version it applied) and the [`ClusterView`]: every host ever seen
//! or in the log, its status, the current [`Ring`] and, while a movement runs, the ring after it;
//! rebuilt and swapped whole when any of it changes.
//!
//! Invariants: tokens and node states come from the topology log only (gossip says who is up
//! and where); the ring's version is the log's `topology_version`. A host seen in gossip stays in
//! the view (and in the peers file, so across restarts too): when chitchat garbage-collects a dead
//! node's state after `dead_node_grace_period`, the host stays, `Down`. A restarted node gossips a
//! higher generation, so its new state supersedes the old.
//! Never stores or serves user data; never trusts a datagram the transport did not authenticate.

pub mod transport;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use allidb_storage::engine::EngineState;

use crate::ClusterError;
use crate::identity::{NodeIdentity, next_generation};
use crate::peers::{PeerRecord, load_peers, store_peers};
use crate::ring::{HostId, Ring, Token};
use crate::topology::entry::LegacyRing;
use crate::topology::state::{NodeState, TopologyState};
use transport::{AuthenticatedUdpTransport, GossipCounters};

/// Gossip keys this node publishes (docs/cluster.md, "Gossip keys", schema 2).
const KEY_SCHEMA: &str = "schema";
const KEY_NAME: &str = "name";
const KEY_RPC_ADDR: &str = "rpc_addr";
const KEY_LOAD: &str = "load";
const KEY_ENGINE: &str = "engine";
/// The topology version this node applied (0: not in a formed ring yet).
const KEY_TOPOLOGY: &str = "topology";
/// Set by a node that is shutting down (SIGTERM): peers count it down from then on.
const KEY_STOPPING: &str = "stopping";
const SCHEMA_VERSION: &str = "2";

/// A seed starting for the first time waits this many gossip intervals for a formed ring before
/// it may form one (`TopologyOptions::settle`).
pub const SEED_SETTLE_INTERVALS: u32 = 5;

/// What membership needs to know; `cmd` builds it from `[cluster]`.
#[derive(Clone, Debug)]
pub struct MembershipOptions {
    /// `cluster.name`: nodes of different clusters never exchange gossip.
    pub cluster_name: String,
    /// `cluster.node_name`: a human name shown in status; the host id is the identity.
    pub node_name: String,
    /// `cluster.secret`: authenticates every gossip datagram.
    pub cluster_secret: String,
    /// The data dir; the node's identity lives under `cluster/` in it.
    pub data_dir: PathBuf,
    /// The UDP address gossip binds.
    pub gossip_listen: SocketAddr,
    /// The UDP address peers gossip to (differs from `gossip_listen` behind NAT or `0.0.0.0`).
    pub gossip_advertise: SocketAddr,
    /// The node-to-node RPC address peers call, published in gossip.
    pub rpc_advertise: SocketAddr,
    /// Gossip addresses (`host:port`) of the seeds; may include this node's own.
    pub seeds: Vec<String>,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Phi above which a peer is down. chitchat's phi is `elapsed / mean heartbeat gap` (no
    /// `1/ln 10` factor, unlike Cassandra's), so 8 means about 8 mean gaps without news.
    pub phi_threshold: f64,
    /// How long chitchat keeps a dead node's gossip state before garbage-collecting it.
    pub dead_node_grace_period: Duration,
}

/// A node's state as this node sees it: the log's state for a node that is up, `Down` for one
/// the failure detector has no recent heartbeat from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Not in the log yet, or accepted and streaming its ranges in (bootstrap).
    Joining,
    /// Serving its ranges.
    Normal,
    /// Handing its ranges over before leaving the ring.
    Leaving,
    /// Gone from the ring for good (it owns nothing and its requests are refused).
    Left,
    /// The failure detector has no recent heartbeat from it.
    Down,
}

impl NodeStatus {
    /// The lowercase name used in gossip, status output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Joining => "joining",
            NodeStatus::Normal => "normal",
            NodeStatus::Leaving => "leaving",
            NodeStatus::Left => "left",
            NodeStatus::Down => "down",
        }
    }

    /// The status of a node that is up, in the log's state `state` (`None`: not in the log).
    fn of_member(state: Option<NodeState>) -> NodeStatus {
        match state {
            None | Some(NodeState::Joining) => NodeStatus::Joining,
            Some(NodeState::Normal) => NodeStatus::Normal,
            Some(NodeState::Leaving) => NodeStatus::Leaving,
            Some(NodeState::Left) => NodeStatus::Left,
        }
    }
}

/// One host as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub host_id: HostId,
    pub name: String,
    pub status: NodeStatus,
    pub gossip_addr: SocketAddr,
    /// Its node-to-node RPC address, once gossiped.
    pub rpc_addr: Option<SocketAddr>,
    /// The generation of its latest start seen.
    pub generation: u64,
    pub tokens: Vec<Token>,
    /// Whether chitchat still holds its gossip state (false once a dead node was collected).
    pub in_gossip: bool,
    /// Bytes of data on its disk (its SSTables), as it last gossiped them.
    pub load_bytes: Option<u64>,
    /// Its storage engine's state, as it last gossiped it (`None` until heard).
    pub engine_state: Option<EngineState>,
    /// The topology version it applied, as it last gossiped it (`None` until heard; 0 before it
    /// is in a formed ring).
    pub topology_version: Option<u64>,
}

/// What a call to a peer carries: the one rule of [`NodeView::address_for`] decides whether it
/// may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A read: replica reads, the cluster-wide reads' calls, clock reads.
    Read,
    /// A write a coordinator sends now.
    Write,
    /// The delivery of hints kept for the node.
    Hint,
}

impl NodeView {
    /// The address to send a `kind` call to, or why the node must not get one: nothing goes
    /// to a node that is down or left the ring, or whose address is not gossiped yet; writes
    /// and hints go only to a node whose engine accepts them (one that has not gossiped its
    /// engine state yet is given the benefit of the doubt); hints wait while the node is
    /// leaving (they are dropped once it has left).
    pub fn address_for(&self, kind: CallKind) -> Result<SocketAddr, String> {
        match (self.status, self.engine_state) {
            (NodeStatus::Down, _) => return Err("down".to_owned()),
            (NodeStatus::Left, _) => return Err("left the ring".to_owned()),
            (NodeStatus::Leaving, _) if kind == CallKind::Hint => {
                return Err("leaving the ring".to_owned());
            }
            (_, Some(state)) if kind != CallKind::Read && state != EngineState::Healthy => {
                return Err(format!("refusing writes: engine {}", state.as_str()));
            }
            _ => {}
        }
        self.rpc_addr
            .ok_or_else(|| "no RPC address gossiped yet".to_owned())
    }
}

/// Sets this node's own gossip keys from other tasks; cheap to clone.
#[derive(Clone)]
pub struct OwnKeys {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
}

impl std::fmt::Debug for OwnKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnKeys").finish_non_exhaustive()
    }
}

impl OwnKeys {
    /// Gossips the storage engine's state: peers stop sending writes to a node whose engine
    /// refuses them (they keep hints for it instead) and send them again once it is healthy.
    pub async fn set_engine_state(&self, state: EngineState) {
        self.set(KEY_ENGINE, state.as_str()).await;
    }

    async fn set(&self, key: &str, value: &str) {
        self.chitchat.lock().await.self_node_state().set(key, value);
    }
}

/// Every host this node knows and the ring they form.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// By host id.
    pub nodes: BTreeMap<HostId, NodeView>,
    /// The ring reads are routed by (its version is the topology version).
    pub ring: Arc<Ring>,
    /// While a movement runs, the other ring whose replicas also take every write (the ring
    /// after the movement while reads use the one before, the one before once reads moved).
    pub pending: Option<Arc<Ring>>,
}

impl ClusterView {
    /// A view of `ring` in which every host is normal, in gossip and reachable (at a
    /// placeholder address nothing listens on), named `h<id>`: the unit tests' ring.
    #[cfg(test)]
    pub(crate) fn all_up(ring: Ring) -> Arc<ClusterView> {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("a literal address");
        let nodes = ring
            .hosts()
            .iter()
            .map(|h| {
                let node = NodeView {
                    host_id: *h,
                    name: format!("h{}", h.as_u128()),
                    status: NodeStatus::Normal,
                    gossip_addr: addr,
                    rpc_addr: Some(addr),
                    generation: 1,
                    tokens: ring.tokens_of(*h),
                    in_gossip: true,
                    load_bytes: None,
                    engine_state: None,
                    topology_version: Some(1),
                };
                (*h, node)
            })
            .collect();
        Arc::new(ClusterView {
            nodes,
            ring: Arc::new(ring),
            pending: None,
        })
    }

    /// The RPC address of peer `host` for a `kind` call, or why it must not get one (unknown
    /// to gossip, or [`NodeView::address_for`]): the one rule every sender follows.
    pub fn address_for(&self, host: HostId, kind: CallKind) -> Result<SocketAddr, String> {
        self.nodes
            .get(&host)
            .ok_or_else(|| "unknown to gossip".to_owned())?
            .address_for(kind)
    }

    /// [`ClusterView::address_for`] a read-like call (repair, streaming, topology), as an
    /// `UNAVAILABLE` error naming the host.
    pub fn peer_address(&self, host: HostId) -> Result<SocketAddr, ClusterError> {
        self.address_for(host, CallKind::Read).map_err(|why| {
            let label = crate::hints::dispatcher::peer_label(self, host);
            ClusterError::Unavailable(match why.as_str() {
                "down" => format!("replica {label} is down"),
                _ => format!("host {label}: {why}"),
            })
        })
    }
}

/// A running membership: gossip, failure detection and the current view.
pub struct Membership {
    identity: NodeIdentity,
    handle: ChitchatHandle,
    view: watch::Receiver<Arc<ClusterView>>,
    refresher: JoinHandle<()>,
    load_publisher: Option<JoinHandle<()>>,
    counters: Arc<GossipCounters>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ClusterError {
    ClusterError::InvalidOption {
        key,
        reason: reason.into(),
    }
}

fn validate(options: &MembershipOptions) -> Result<(), ClusterError> {
    if options.cluster_name.is_empty() {
        return Err(invalid("cluster.name", "must not be empty"));
    }
    if options.cluster_secret.len() < 16 {
        return Err(invalid(
            "cluster.secret",
            "must be at least 16 characters: it authenticates every gossip message",
        ));
    }
    if options.gossip_interval.is_zero() {
        return Err(invalid("cluster.gossip_interval_ms", "must be at least 1"));
    }
    if !(options.phi_threshold.is_finite() && options.phi_threshold > 0.0) {
        return Err(invalid(
            "cluster.phi_threshold",
            "must be a positive number",
        ));
    }
    Ok(())
}

fn gossip_error(context: &str, err: impl std::fmt::Display) -> ClusterError {
    ClusterError::Gossip(format!("{context}: {err}"))
}

impl Membership {
    /// Starts gossip: loads or creates this node's identity and publishes its addresses; the
    /// view joins what gossip tells with the topology log's applied state (`topology`).
    pub async fn start(
        options: MembershipOptions,
        topology: watch::Receiver<Arc<TopologyState>>,
    ) -> Result<Membership, ClusterError> {
        validate(&options)?;
        let identity =
            NodeIdentity::load_or_create(&options.data_dir, &options.cluster_name, || {
                NodeIdentity {
                    host_id: HostId::generate(&mut rand::rng()),
                    cluster_name: options.cluster_name.clone(),
                    tokens: Vec::new(),
                }
            })?;
        let now_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let generation = next_generation(&options.data_dir, now_millis)?;
        let transport =
            AuthenticatedUdpTransport::new(&options.cluster_secret, &options.cluster_name);
        let counters = transport.counters();
        let chitchat_id = ChitchatId::new(
            identity.host_id.to_string(),
            generation,
            options.gossip_advertise,
        );
        let config = ChitchatConfig {
            chitchat_id,
            cluster_id: options.cluster_name.clone(),
            gossip_interval: options.gossip_interval,
            listen_addr: options.gossip_listen,
            seed_nodes: options.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: options.phi_threshold,
                sampling_window_size: 1_000,
                // Gaps longer than this are outages, not samples of the normal gap.
                max_interval: options.gossip_interval * 10,
                initial_interval: options.gossip_interval,
                dead_node_grace_period: options.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: options.dead_node_grace_period,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let applied = topology.borrow().version;
        let keys = vec![
            (KEY_SCHEMA.to_string(), SCHEMA_VERSION.to_string()),
            (KEY_NAME.to_string(), options.node_name.clone()),
            (KEY_RPC_ADDR.to_string(), options.rpc_advertise.to_string()),
            (KEY_TOPOLOGY.to_string(), applied.to_string()),
        ];
        let handle = spawn_chitchat(config, keys, &transport)
            .await
            .map_err(|e| gossip_error("cannot start gossip", e))?;
        info!(
            host_id = %identity.host_id,
            generation,
            gossip = %options.gossip_advertise,
            "gossip started"
        );
        let chitchat = handle.chitchat();
        let mut known = KnownHosts::load(&options.data_dir, identity.host_id)?;
        let mut topology = topology;
        let initial = topology.borrow().clone();
        let (tx, view) = watch::channel(known.refresh(&chitchat, &initial).await);
        let interval = options.gossip_interval;
        let refresher = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            let mut published = applied;
            let mut log_running = true;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    // A stopped log (shutdown) leaves its last state.
                    changed = topology.changed(), if log_running => log_running = changed.is_ok(),
                }
                let state = topology.borrow_and_update().clone();
                if state.version != published {
                    published = state.version;
                    chitchat
                        .lock()
                        .await
                        .self_node_state()
                        .set(KEY_TOPOLOGY, published.to_string());
                }
                let next = known.refresh(&chitchat, &state).await;
                tx.send_if_modified(|current| {
                    let changed = current.nodes != next.nodes
                        || current.ring != next.ring
                        || current.pending != next.pending;
                    if changed {
                        *current = next;
                    }
                    changed
                });
            }
        });
        Ok(Membership {
            identity,
            handle,
            view,
            refresher,
            load_publisher: None,
            counters,
        })
    }

    /// The peers file and the tokens of the identity file: what a ring that predates the
    /// topology log knew, carried into the log at its first start with one.
    pub fn legacy_ring(&self, data_dir: &std::path::Path) -> Result<LegacyRing, ClusterError> {
        Ok(LegacyRing {
            tokens: self.identity.tokens.clone(),
            peers: load_peers(data_dir)?,
        })
    }

    /// This node's host id.
    pub fn host_id(&self) -> HostId {
        self.identity.host_id
    }

    /// The current view (cheap: a shared pointer).
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Gossip transport counters (rejected datagrams, absorbed socket errors).
    pub fn counters(&self) -> Arc<GossipCounters> {
        self.counters.clone()
    }

    /// A handle setting this node's own gossip keys.
    pub fn own_keys(&self) -> OwnKeys {
        OwnKeys {
            chitchat: self.handle.chitchat(),
        }
    }

    /// Gossips this node's load (`load()`, bytes of data on disk) now and then every `every`,
    /// until shutdown; replaces an earlier publisher.
    pub fn publish_load(&mut self, every: Duration, load: impl Fn() -> u64 + Send + 'static) {
        let keys = self.own_keys();
        let publisher = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                keys.set(KEY_LOAD, &load().to_string()).await;
            }
        });
        if let Some(earlier) = self.load_publisher.replace(publisher) {
            earlier.abort();
        }
    }

    /// Announces that this node is shutting down (the gossip key `stopping`): every peer that
    /// hears it counts this node down at once, so it keeps hints for it and stops sending it
    /// requests, instead of timing out on a node that is gone until its failure detector notices.
    /// A restart gossips a new generation without the key.
    pub async fn announce_shutdown(&self) {
        self.own_keys().set(KEY_STOPPING, "1").await;
        info!("shutting down: announced in gossip");
    }

    /// Stops gossiping. Peers mark this node down after their failure detection delay, at once
    /// if it announced its shutdown first ([`Membership::announce_shutdown`]).
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        self.refresher.abort();
        if let Some(publisher) = &self.load_publisher {
            publisher.abort();
        }
        self.handle
            .shutdown()
            .await
            .map_err(|e| gossip_error("gossip did not stop cleanly", e))
    }
}

/// Every host ever seen (persisted in the peers file), kept when chitchat forgets a dead one.
struct KnownHosts {
    nodes: BTreeMap<HostId, NodeView>,
    ring: Option<Arc<Ring>>,
    data_dir: PathBuf,
    /// What the peers file holds.
    persisted: Vec<PeerRecord>,
}

impl KnownHosts {
    /// The hosts of the peers file, `down` until gossip says otherwise; this node is left to
    /// gossip.
    fn load(data_dir: &std::path::Path, self_id: HostId) -> Result<KnownHosts, ClusterError> {
        let persisted = load_peers(data_dir)?;
        let nodes = persisted
            .iter()
            .filter(|p| p.host_id != self_id)
            .map(|p| {
                let view = NodeView {
                    host_id: p.host_id,
                    name: p.name.clone(),
                    status: NodeStatus::Down,
                    gossip_addr: p.gossip_addr,
                    rpc_addr: p.rpc_addr,
                    generation: p.generation,
                    tokens: p.tokens.clone(),
                    in_gossip: false,
                    load_bytes: None,
                    engine_state: None,
                    topology_version: None,
                };
                (p.host_id, view)
            })
            .collect();
        Ok(KnownHosts {
            nodes,
            ring: None,
            data_dir: data_dir.to_path_buf(),
            persisted,
        })
    }

    /// Stores the known hosts if they changed (not their liveness: that is never persisted).
    async fn persist(&mut self) {
        let records: Vec<PeerRecord> = self
            .nodes
            .values()
            .map(|n| PeerRecord {
                host_id: n.host_id,
                generation: n.generation,
                gossip_addr: n.gossip_addr,
                rpc_addr: n.rpc_addr,
                tokens: n.tokens.clone(),
                name: n.name.clone(),
            })
            .collect();
        if records == self.persisted {
            return;
        }
        let data_dir = self.data_dir.clone();
        let to_store = records.clone();
        match tokio::task::spawn_blocking(move || store_peers(&data_dir, &to_store)).await {
            Ok(Ok(())) => self.persisted = records,
            Ok(Err(error)) => warn!(%error, "cannot store the peers file; will retry"),
            Err(error) => warn!(%error, "storing the peers file panicked; will retry"),
        }
    }

    /// Folds chitchat's current state and the log's `topology` into the known hosts and
    /// returns the view.
    async fn refresh(
        &mut self,
        chitchat: &Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
        topology: &TopologyState,
    ) -> Arc<ClusterView> {
        let mut in_gossip: HashSet<HostId> = HashSet::new();
        let mut stopping: HashSet<(HostId, u64)> = HashSet::new();
        let live: HashSet<(HostId, u64)>;
        {
            let c = chitchat.lock().await;
            live = c
                .live_nodes()
                .filter_map(|id| Some((id.node_id.parse().ok()?, id.generation_id)))
                .collect();
            for (id, state) in c.node_states() {
                let Ok(host) = id.node_id.parse::<HostId>() else {
                    continue;
                };
                in_gossip.insert(host);
                if state.get(KEY_STOPPING).is_some() {
                    stopping.insert((host, id.generation_id));
                }
                if self
                    .nodes
                    .get(&host)
                    .is_some_and(|n| n.generation > id.generation_id)
                {
                    // The state of an older start, not yet collected: superseded.
                    continue;
                }
                self.nodes.insert(
                    host,
                    NodeView {
                        host_id: host,
                        name: state.get(KEY_NAME).unwrap_or_default().to_string(),
                        status: NodeStatus::Joining,
                        gossip_addr: id.gossip_advertise_addr,
                        rpc_addr: state.get(KEY_RPC_ADDR).and_then(|a| a.parse().ok()),
                        generation: id.generation_id,
                        tokens: Vec::new(),
                        in_gossip: true,
                        load_bytes: state.get(KEY_LOAD).and_then(|l| l.parse().ok()),
                        engine_state: state.get(KEY_ENGINE).and_then(|name| {
                            EngineState::ALL.into_iter().find(|s| s.as_str() == name)
                        }),
                        topology_version: state.get(KEY_TOPOLOGY).and_then(|v| v.parse().ok()),
                    },
                );
            }
        }
        for (host, member) in &topology.nodes {
            // A member never heard in gossip (nor in the peers file): down until it is.
            self.nodes.entry(*host).or_insert_with(|| NodeView {
                host_id: *host,
                name: member.name.clone(),
                status: NodeStatus::Down,
                gossip_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                rpc_addr: member.rpc_addr.parse().ok(),
                generation: 0,
                tokens: Vec::new(),
                in_gossip: false,
                load_bytes: None,
                engine_state: None,
                topology_version: None,
            });
        }
        for node in self.nodes.values_mut() {
            let member = topology.nodes.get(&node.host_id);
            node.tokens = member.map(|m| m.tokens.clone()).unwrap_or_default();
            node.in_gossip = in_gossip.contains(&node.host_id);
            // `left` is for good, whether the host still runs or not.
            node.status = match member.map(|m| m.state) {
                Some(NodeState::Left) => NodeStatus::Left,
                // Up: heard by the failure detector and not shutting down.
                state
                    if live.contains(&(node.host_id, node.generation))
                        && !stopping.contains(&(node.host_id, node.generation)) =>
                {
                    NodeStatus::of_member(state)
                }
                _ => NodeStatus::Down,
            };
        }
        let ring = match &self.ring {
            Some(current) if current.version() == topology.version => current.clone(),
            _ => Arc::new(topology.read_ring()),
        };
        self.ring = Some(ring.clone());
        self.persist().await;
        Arc::new(ClusterView {
            nodes: self.nodes.clone(),
            ring,
            pending: topology.other_write_ring().map(Arc::new),
        })
    }
}
