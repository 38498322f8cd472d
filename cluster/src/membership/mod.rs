//! Membership and failure detection: chitchat gossip over [`transport`], node states, and the
//! ring built from what gossip tells (docs/cluster.md, "Membership").
//!
//! Owns this node's gossip identity (host id, generation, advertised addresses, tokens, status)
//! and the [`ClusterView`]: every host ever seen, its status, and the current [`Ring`], rebuilt
//! and swapped whole when the set of hosts or tokens changes.
//!
//! Invariants: a host, once seen, stays in the view and the ring (and in the peers file, so across
//! restarts too) until an operator removes it (a later issue): gossip alone never removes one; when chitchat garbage-collects a dead node's
//! state after `dead_node_grace_period`, the host stays, `Down`, with its tokens. A restarted node
//! gossips a higher generation, so its new state supersedes the old. A node's tokens are
//! allocated once, after it has seen the ring (or, for a seed alone, after a short wait), and are
//! persisted before they are gossiped.
//! Never stores or serves user data; never trusts a datagram the transport did not authenticate.

pub mod transport;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use transport::{AuthenticatedUdpTransport, GossipCounters};

/// Gossip keys this node publishes (docs/cluster.md, "Gossip keys", schema 1).
const KEY_SCHEMA: &str = "schema";
const KEY_NAME: &str = "name";
const KEY_RPC_ADDR: &str = "rpc_addr";
const KEY_TOKENS: &str = "tokens";
const KEY_STATUS: &str = "status";
const KEY_LOAD: &str = "load";
const KEY_ENGINE: &str = "engine";
const SCHEMA_VERSION: &str = "1";

/// A seed starting for the first time waits this many gossip intervals for peers before it
/// allocates its tokens against the ring it has seen (possibly only itself).
const SEED_SETTLE_INTERVALS: u32 = 5;
/// How often a node waiting for its seeds says so in the log.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(10);

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
    /// Vnodes of this node, used on its first start only.
    pub num_tokens: usize,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Phi above which a peer is down. chitchat's phi is `elapsed / mean heartbeat gap` (no
    /// `1/ln 10` factor, unlike Cassandra's), so 8 means about 8 mean gaps without news.
    pub phi_threshold: f64,
    /// How long chitchat keeps a dead node's gossip state before garbage-collecting it.
    pub dead_node_grace_period: Duration,
}

/// A node's state as every node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Started for the first time and has not taken its tokens yet.
    Joining,
    /// Serving its ranges.
    Normal,
    /// Handing its ranges over before leaving the ring (decommission, a later issue).
    Leaving,
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
            NodeStatus::Down => "down",
        }
    }

    /// A status a node gossips about itself (never `down`: that is the observer's verdict).
    fn from_gossip(value: &str) -> Option<NodeStatus> {
        match value {
            "joining" => Some(NodeStatus::Joining),
            "normal" => Some(NodeStatus::Normal),
            "leaving" => Some(NodeStatus::Leaving),
            _ => None,
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
}

impl NodeView {
    /// Whether writes may be sent to it: up, and its engine not refusing writes (a node that has
    /// not gossiped its engine state yet is given the benefit of the doubt).
    pub fn accepts_writes(&self) -> bool {
        self.status != NodeStatus::Down
            && self
                .engine_state
                .is_none_or(|state| state == EngineState::Healthy)
    }

    /// Why writes are not sent to it, when they are not.
    pub fn refusal(&self) -> Option<String> {
        match (self.status, self.engine_state) {
            (NodeStatus::Down, _) => Some("down".to_owned()),
            (_, Some(state)) if state != EngineState::Healthy => {
                Some(format!("refusing writes: engine {}", state.as_str()))
            }
            _ => None,
        }
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
    pub ring: Arc<Ring>,
}

impl ClusterView {
    /// The RPC address of peer `host`, or why it cannot be asked now (down, or no address
    /// gossiped yet).
    pub fn peer_address(&self, host: HostId) -> Result<SocketAddr, ClusterError> {
        let label = crate::hints::dispatcher::peer_label(self, host);
        match self.nodes.get(&host).map(|n| (n.status, n.rpc_addr)) {
            Some((NodeStatus::Down, _)) => Err(ClusterError::Unavailable(format!(
                "replica {label} is down"
            ))),
            Some((_, Some(addr))) => Ok(addr),
            _ => Err(ClusterError::Unavailable(format!(
                "replica {label} has not gossiped its address"
            ))),
        }
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
    if options.num_tokens == 0 {
        return Err(invalid("cluster.num_tokens", "must be at least 1"));
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

fn tokens_text(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_tokens(text: &str) -> Option<Vec<Token>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

impl Membership {
    /// Joins the cluster: loads or creates this node's identity, starts gossip, and, on the first
    /// start, waits to see the ring before allocating and persisting its tokens. A node that is not
    /// a seed waits for a seed as long as it takes, saying so in the log every 10 s.
    pub async fn start(options: MembershipOptions) -> Result<Membership, ClusterError> {
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
        let mut keys = vec![
            (KEY_SCHEMA.to_string(), SCHEMA_VERSION.to_string()),
            (KEY_NAME.to_string(), options.node_name.clone()),
            (KEY_RPC_ADDR.to_string(), options.rpc_advertise.to_string()),
        ];
        let first_start = identity.tokens.is_empty();
        if first_start {
            keys.push((KEY_STATUS.to_string(), "joining".to_string()));
        } else {
            keys.push((KEY_TOKENS.to_string(), tokens_text(&identity.tokens)));
            keys.push((KEY_STATUS.to_string(), "normal".to_string()));
        }
        let handle = spawn_chitchat(config, keys, &transport)
            .await
            .map_err(|e| gossip_error("cannot start gossip", e))?;
        info!(
            host_id = %identity.host_id,
            generation,
            gossip = %options.gossip_advertise,
            "gossip started"
        );
        let mut identity = identity;
        if first_start {
            take_tokens(&handle, &mut identity, &options).await?;
        }
        let chitchat = handle.chitchat();
        let mut known = KnownHosts::load(&options.data_dir, identity.host_id)?;
        let (tx, view) = watch::channel(known.refresh(&chitchat).await);
        let interval = options.gossip_interval;
        let refresher = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                let next = known.refresh(&chitchat).await;
                tx.send_if_modified(|current| {
                    let changed = current.nodes != next.nodes
                        || current.ring.version() != next.ring.version();
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

    /// This node's host id.
    pub fn host_id(&self) -> HostId {
        self.identity.host_id
    }

    /// This node's tokens.
    pub fn tokens(&self) -> &[Token] {
        &self.identity.tokens
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

    /// Stops gossiping. Peers mark this node down after their failure detection delay.
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

/// First start: wait for the ring, allocate tokens against it, persist, then gossip them.
async fn take_tokens(
    handle: &ChitchatHandle,
    identity: &mut NodeIdentity,
    options: &MembershipOptions,
) -> Result<(), ClusterError> {
    let own = options.gossip_advertise.to_string();
    let is_seed = options.seeds.is_empty()
        || options
            .seeds
            .iter()
            .any(|s| *s == own || s.parse::<SocketAddr>().ok() == Some(options.gossip_advertise));
    let settle = options.gossip_interval * SEED_SETTLE_INTERVALS;
    let started = Instant::now();
    let mut last_log = Instant::now();
    let ring = loop {
        let ring = handle
            .with_chitchat(|c| {
                let members = c.node_states().iter().filter_map(|(id, state)| {
                    if id == c.self_chitchat_id() || state.get(KEY_STATUS) != Some("normal") {
                        return None;
                    }
                    let host = id.node_id.parse::<HostId>().ok()?;
                    let tokens = parse_tokens(state.get(KEY_TOKENS)?)?;
                    Some((host, tokens))
                });
                Ring::new(0, members.collect::<Vec<_>>())
            })
            .await;
        if ring.host_count() > 0 || (is_seed && started.elapsed() >= settle) {
            break ring;
        }
        if last_log.elapsed() >= WAITING_LOG_EVERY {
            last_log = Instant::now();
            warn!(
                seeds = ?options.seeds,
                "first start: no seed has answered yet (cluster.seeds); still trying"
            );
        }
        tokio::time::sleep(options.gossip_interval).await;
    };
    let tokens = ring.allocate_tokens(options.num_tokens, &mut rand::rng());
    identity.tokens = tokens.clone();
    identity.store(&options.data_dir)?;
    info!(
        tokens = tokens.len(),
        peers = ring.host_count(),
        "first start: tokens allocated and persisted"
    );
    handle
        .with_chitchat(|c| {
            let state = c.self_node_state();
            state.set(KEY_TOKENS, tokens_text(&tokens));
            state.set(KEY_STATUS, "normal");
        })
        .await;
    Ok(())
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

    /// Folds chitchat's current state into the known hosts and returns the view.
    async fn refresh(
        &mut self,
        chitchat: &Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    ) -> Arc<ClusterView> {
        let mut in_gossip: HashSet<HostId> = HashSet::new();
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
                let known = self.nodes.get(&host);
                if known.is_some_and(|n| n.generation > id.generation_id) {
                    // The state of an older start, not yet collected: superseded.
                    continue;
                }
                let tokens = state
                    .get(KEY_TOKENS)
                    .and_then(parse_tokens)
                    .or_else(|| known.map(|n| n.tokens.clone()))
                    .unwrap_or_default();
                let status = state
                    .get(KEY_STATUS)
                    .and_then(NodeStatus::from_gossip)
                    .unwrap_or(NodeStatus::Joining);
                self.nodes.insert(
                    host,
                    NodeView {
                        host_id: host,
                        name: state.get(KEY_NAME).unwrap_or_default().to_string(),
                        status,
                        gossip_addr: id.gossip_advertise_addr,
                        rpc_addr: state.get(KEY_RPC_ADDR).and_then(|a| a.parse().ok()),
                        generation: id.generation_id,
                        tokens,
                        in_gossip: true,
                        load_bytes: state.get(KEY_LOAD).and_then(|l| l.parse().ok()),
                        engine_state: state.get(KEY_ENGINE).and_then(|name| {
                            EngineState::ALL.into_iter().find(|s| s.as_str() == name)
                        }),
                    },
                );
            }
        }
        for node in self.nodes.values_mut() {
            node.in_gossip = in_gossip.contains(&node.host_id);
            if !live.contains(&(node.host_id, node.generation)) {
                node.status = NodeStatus::Down;
            }
        }
        let members: Vec<(HostId, Vec<Token>)> = self
            .nodes
            .values()
            .filter(|n| !n.tokens.is_empty())
            .map(|n| (n.host_id, n.tokens.clone()))
            .collect();
        let ring = match &self.ring {
            Some(current) if Ring::new(current.version(), members.clone()) == **current => {
                current.clone()
            }
            current => Arc::new(Ring::new(
                current.as_ref().map_or(1, |r| r.version() + 1),
                members,
            )),
        };
        self.ring = Some(ring.clone());
        self.persist().await;
        Arc::new(ClusterView {
            nodes: self.nodes.clone(),
            ring,
        })
    }
}
