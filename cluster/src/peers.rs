//! The hosts this node has seen, persisted in `cluster/peers` under the data dir (format:
//! docs/cluster.md, "Peers file", version 1).
//!
//! Owns the on-disk list that keeps the ring whole across restarts: gossip forgets a dead node
//! after its grace period, and a node restarted after that would otherwise lose the host and its
//! tokens. A host leaves this list only by an operator's command (a later issue), never because
//! gossip stopped mentioning it.
//!
//! Invariants: the file is replaced atomically; a damaged file is an error, never an empty list.
//! Never decides liveness: a loaded host is `down` until gossip says otherwise.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, unseal, write_atomically};
use crate::ring::{HostId, Token};

const PEERS_FILE: &str = "peers";
const HEADER: &str = "allidb-peers 1";

/// One known host as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    pub host_id: HostId,
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub rpc_addr: Option<SocketAddr>,
    pub tokens: Vec<Token>,
    pub name: String,
}

/// The hosts stored under `data_dir` (none before the first store).
pub fn load_peers(data_dir: &Path) -> Result<Vec<PeerRecord>, ClusterError> {
    let path = data_dir.join(CLUSTER_DIR).join(PEERS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ClusterError::Io { path, source }),
    };
    decode(&text).map_err(|reason| ClusterError::CorruptPeers { path, reason })
}

/// Replaces the stored hosts with `peers`.
pub fn store_peers(data_dir: &Path, peers: &[PeerRecord]) -> Result<(), ClusterError> {
    write_atomically(data_dir, PEERS_FILE, &encode(peers))
}

fn encode(peers: &[PeerRecord]) -> String {
    let mut body = format!("{HEADER}\n");
    for p in peers {
        let tokens: Vec<String> = p.tokens.iter().map(u64::to_string).collect();
        let rpc = p
            .rpc_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        // The name is last and may hold spaces; line breaks would split the record.
        let name = p.name.replace(['\n', '\r'], " ");
        body.push_str(&format!(
            "{} {} {} {} {} {}\n",
            p.host_id,
            p.generation,
            p.gossip_addr,
            rpc,
            if tokens.is_empty() {
                "-".to_string()
            } else {
                tokens.join(",")
            },
            name
        ));
    }
    seal(body)
}

fn decode(text: &str) -> Result<Vec<PeerRecord>, String> {
    let body = unseal(text)?;
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("unknown header (expected {HEADER:?})"));
    }
    lines
        .map(|line| {
            let bad = || format!("bad peer line {line:?}");
            let mut fields = line.splitn(6, ' ');
            let mut next = || fields.next().ok_or_else(bad);
            let host_id = next()?.parse::<HostId>().map_err(|_| bad())?;
            let generation = next()?.parse().map_err(|_| bad())?;
            let gossip_addr = next()?.parse().map_err(|_| bad())?;
            let rpc_addr = match next()? {
                "-" => None,
                addr => Some(addr.parse().map_err(|_| bad())?),
            };
            let tokens = match next()? {
                "-" => Vec::new(),
                list => list
                    .split(',')
                    .map(|t| t.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            };
            let name = next().unwrap_or_default().to_string();
            Ok(PeerRecord {
                host_id,
                generation,
                gossip_addr,
                rpc_addr,
                tokens,
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128, name: &str, tokens: Vec<Token>) -> PeerRecord {
        PeerRecord {
            host_id: HostId::from_u128(n),
            generation: 7,
            gossip_addr: "10.0.0.1:7946".parse().unwrap(),
            rpc_addr: n
                .is_multiple_of(2)
                .then(|| "10.0.0.1:7000".parse().unwrap()),
            tokens,
            name: name.to_string(),
        }
    }

    #[test]
    fn peers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_peers(dir.path()).unwrap().is_empty());
        let peers = vec![
            peer(1, "rack 1 node", vec![1, u64::MAX]),
            peer(2, "", vec![]),
        ];
        store_peers(dir.path(), &peers).unwrap();
        assert_eq!(load_peers(dir.path()).unwrap(), peers);
    }

    #[test]
    fn a_damaged_peers_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        store_peers(dir.path(), &[peer(1, "a", vec![5])]).unwrap();
        let path = dir.path().join(CLUSTER_DIR).join(PEERS_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace(" 5 ", " 6 ")).unwrap();
        let err = load_peers(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
