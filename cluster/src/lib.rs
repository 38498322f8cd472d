//! Cluster layer (DESIGN.md §6): the token ring, node identity, membership and replication.
//!
//! Owns everything that makes several `allidbd` processes one database. It sits between the
//! node-local store (`allidb-index`) and the public API (`allidb-api`): it never knows about the
//! public protocol, configuration files or processes; `cmd` builds its options.
//!
//! Modules, one concept each:
//! - [`ring`]: tokens, vnodes, the replica walk and ownership (pure).
//! - [`identity`]: the host id, cluster name and tokens persisted in the data dir.
//! - [`peers`]: the hosts this node has seen, persisted so the ring survives restarts.
//! - [`membership`]: chitchat gossip over an authenticated transport, node states, the live ring.
//! - [`consistency`]: consistency levels (pure).
//! - [`cells`]: cells on the wire, their last-write-wins merge and digest (pure).
//! - [`credentials`]: the cluster token every node-to-node call carries.
//! - [`replica`]: this node as a replica, and the `Replica` gRPC service (`proto/replica.proto`).
//! - [`peer_client`]: calls to other nodes' replica service.
//! - [`latency`]: measured latency per peer, for replica selection and speculative reads.
//! - [`coordinator`]: writes and point reads at a consistency level, read repair.
//! - [`hints`]: hinted handoff: the per-target hint log and its dispatcher.
//! - [`query`]: cluster-wide reads: Graph-RAG queries, traversals and scans over every range.
//! - [`repair`]: anti-entropy: Merkle trees per token range, repair of what differs.
//! - [`stream`]: range streaming: every cell of some ranges from a replica, resumable.
//! - [`standalone`]: a ring of one: the coordinator and reads of a node without `[cluster]`.
//! - [`topology`]: the topology log: hosts, tokens and movements in a replicated raft log.

pub mod cells;
pub mod consistency;
pub mod coordinator;
pub mod credentials;
pub mod hints;
pub mod identity;
pub mod latency;
pub mod membership;
pub mod peer_client;
pub mod peers;
pub mod query;
pub mod repair;
pub mod replica;
pub mod ring;
pub mod standalone;
pub mod stream;
pub mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

pub use ring::token;

/// The node-to-node protocol (`proto/replica.proto`), generated.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("allidb.cluster.v1");
}

/// Version of the node-to-node protocol this build speaks (`RequestHeader.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 10;

/// Largest node-to-node message: a replica batch is at most a client's largest request.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The message of a request that could not reach its consistency level: what failed, how many
/// replicas were needed, which answered and which did not (with why).
pub(crate) fn replica_failure(
    what: &str,
    required: usize,
    replicas: &[ring::HostId],
    answered: &BTreeSet<ring::HostId>,
    failed: &BTreeMap<ring::HostId, impl std::fmt::Display>,
    view: &membership::ClusterView,
) -> String {
    let label = |host: &ring::HostId| hints::dispatcher::peer_label(view, *host);
    let ok: Vec<String> = replicas
        .iter()
        .filter(|h| answered.contains(h))
        .map(label)
        .collect();
    let missing: Vec<String> = replicas
        .iter()
        .filter(|h| !answered.contains(h))
        .map(|h| match failed.get(h) {
            Some(reason) => format!("{} ({reason})", label(h)),
            None => format!("{} (no answer)", label(h)),
        })
        .collect();
    format!(
        "{what}: {required} of {} replicas needed, {} answered [{}], not answered [{}]",
        replicas.len(),
        ok.len(),
        ok.join(", "),
        missing.join(", ")
    )
}

/// Every error of the cluster layer, with the context an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A host id that is not 32 hex digits (dashes allowed).
    #[error("invalid host id {0:?}: expected 32 hex digits, as 8-4-4-4-12 or without dashes")]
    InvalidHostId(String),
    /// A file of the cluster layer could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the cluster layer could not be started.
    #[error("starting thread {name}: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The node identity file exists but cannot be trusted.
    #[error(
        "node identity file {path} is damaged ({reason}); restore it from a backup, or move the data dir away to start this node as a new host"
    )]
    CorruptIdentity { path: PathBuf, reason: String },
    /// A membership option out of range; `key` is the configuration key.
    #[error("{key}: {reason}")]
    InvalidOption { key: &'static str, reason: String },
    /// Gossip could not start or stop.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The peers file exists but cannot be trusted.
    #[error(
        "peers file {path} is damaged ({reason}); delete it to relearn the peers from gossip (hosts dead for longer than cluster.dead_node_grace_period_secs are then forgotten)"
    )]
    CorruptPeers { path: PathBuf, reason: String },
    /// A request could not reach its consistency level (the message names the level, the
    /// replicas that answered and those that did not).
    #[error("{0}")]
    Unavailable(String),
    /// A node-to-node message that does not make sense (bad cell key, task failure).
    #[error("replica protocol: {0}")]
    Protocol(String),
    /// A peer did not apply or answer a node-to-node call.
    #[error("replica {addr}: {reason}")]
    Peer { addr: SocketAddr, reason: String },
    /// The local store refused or failed a replica operation.
    #[error(transparent)]
    Store(#[from] allidb_index::Error),
    /// The repair history file exists but cannot be trusted.
    #[error(
        "repair history file {path} is damaged ({reason}); delete it to start the history afresh (every range then counts as repaired when the node starts)"
    )]
    CorruptRepairHistory { path: PathBuf, reason: String },
    /// A token range an operator named that this node does not replicate.
    #[error("{0}")]
    InvalidRange(String),
    /// The stream session file exists but cannot be trusted.
    #[error(
        "stream session file {path} is damaged ({reason}); delete it to start the next rebuild over from the beginning"
    )]
    CorruptStreamSession { path: PathBuf, reason: String },
    /// A hint segment fails its checksums in the middle.
    #[error("hint segment {path} is damaged ({reason}); its hints are kept for an operator")]
    CorruptHints { path: PathBuf, reason: String },
    /// A topology log file exists but cannot be trusted.
    #[error(
        "topology log file {path} is damaged ({reason}); move this node's cluster/topology-* files away and restart it: it is given the log again by the other nodes"
    )]
    CorruptTopology { path: PathBuf, reason: String },
    /// A request planned on a topology version below this node's fence (the message names
    /// both versions): the sender retries on the newer ring.
    #[error("{0}")]
    Fenced(String),
    /// The topology log refused a movement (busy, a host in the wrong state, a removal that
    /// could lose acknowledged writes): the message says why.
    #[error("{0}")]
    TopologyRefused(String),
    /// The topology log refused this node's join for good (the message says why).
    #[error("the ring refused this node's join: {0}")]
    JoinRefused(String),
    /// The data dir keeps this node's identity but its storage is gone (wiped or lost).
    #[error(
        "data dir {data_dir} holds the identity of host {host_id} but no storage: the node would come back as that replica holding nothing. Restore its data (a checkpoint or backup, then `allidb cluster repair`), or move the whole data dir away to start a new host (docs/cluster.md \"A wiped replica\")"
    )]
    StorageLost {
        data_dir: PathBuf,
        host_id: ring::HostId,
    },
    /// The data dir was created for another cluster.
    #[error(
        "data dir {data_dir} belongs to cluster {stored:?}, but cluster.name is {configured:?}: refusing to join another cluster with this data"
    )]
    WrongCluster {
        data_dir: PathBuf,
        stored: String,
        configured: String,
    },
}
