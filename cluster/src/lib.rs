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

pub mod identity;
pub mod membership;
pub mod peers;
pub mod ring;

use std::path::PathBuf;

pub use ring::token;

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
