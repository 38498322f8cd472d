//! A node's persisted identity: its host id, the cluster it belongs to, its vnode tokens, and the
//! gossip generation of its latest start.
//!
//! Owns the file `cluster/identity` under the data dir (format: docs/cluster.md, "Node identity
//! file", version 1). The identity is created once, on the first start with the cluster enabled,
//! and never changes afterwards: a restarted node comes back with the same host id and tokens, and
//! a data dir that belonged to another cluster is refused rather than silently joined.
//!
//! Invariants: the file is replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves either the old identity or the new one; a file that fails its
//! checksum or names an unknown version is an error, never a fresh identity.
//! Never talks to the network.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ClusterError;
use crate::ring::{HostId, Token};

/// The directory under the data dir that holds the cluster's files.
pub const CLUSTER_DIR: &str = "cluster";
/// The identity file's name inside [`CLUSTER_DIR`].
const IDENTITY_FILE: &str = "identity";
/// The first line of the file, with the format version.
const HEADER: &str = "allidb-node-identity 1";
/// The file, inside [`CLUSTER_DIR`], saying that this identity's storage was created.
const STORAGE_FILE: &str = "storage";
/// Its contents (format version 1).
const STORAGE_HEADER: &str = "allidb-node-storage 1\n";
/// The file holding the last gossip generation used, inside [`CLUSTER_DIR`].
const GENERATION_FILE: &str = "generation";

/// The gossip generation for this start: the wall clock in milliseconds, or one more than the
/// previous start's if the clock reads earlier, so a restarted node always supersedes its old
/// gossip state. Persisted before it is used.
pub fn next_generation(data_dir: &Path, now_millis: u64) -> Result<u64, ClusterError> {
    let path = data_dir.join(CLUSTER_DIR).join(GENERATION_FILE);
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| ClusterError::CorruptIdentity {
                path: path.clone(),
                reason: format!("generation file holds {:?}, not a number", text.trim()),
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => return Err(ClusterError::Io { path, source }),
    };
    let generation = now_millis.max(previous + 1);
    write_atomically(data_dir, GENERATION_FILE, &format!("{generation}\n"))?;
    Ok(generation)
}

/// Refuses a data dir whose identity outlived its storage: the storage engine's files are gone
/// (`storage_exists` false) while the identity says they were created. Such a node would come
/// back as the same replica holding nothing, answer reads at ONE with nothing, and count towards
/// QUORUM without the data. A first start that stopped between the identity and the storage
/// (never recorded) starts normally.
pub fn check_storage(data_dir: &Path, storage_exists: bool) -> Result<(), ClusterError> {
    if storage_exists || !data_dir.join(CLUSTER_DIR).join(STORAGE_FILE).exists() {
        return Ok(());
    }
    let host_id = NodeIdentity::load(data_dir)?.map(|identity| identity.host_id);
    match host_id {
        Some(host_id) => Err(ClusterError::StorageLost {
            data_dir: data_dir.to_path_buf(),
            host_id,
        }),
        None => Ok(()),
    }
}

/// Records, once, that this identity's storage exists (after the store opened).
pub fn record_storage(data_dir: &Path) -> Result<(), ClusterError> {
    if data_dir.join(CLUSTER_DIR).join(STORAGE_FILE).exists() {
        return Ok(());
    }
    write_atomically(data_dir, STORAGE_FILE, STORAGE_HEADER)
}

/// Replaces `CLUSTER_DIR/name` with `contents`: temporary file, fsync, rename, fsync directory.
pub(crate) fn write_atomically(
    data_dir: &Path,
    name: &str,
    contents: &str,
) -> Result<(), ClusterError> {
    let dir = data_dir.join(CLUSTER_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClusterError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))
}

/// `body` followed by its checksum line (`crc32 <8 hex digits>`): how every small file of the
/// cluster layer ends.
pub(crate) fn seal(body: String) -> String {
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc32 {crc:08x}\n")
}

/// The body of a [`seal`]ed file, or why its checksum line does not match it.
pub(crate) fn unseal(text: &str) -> Result<&str, String> {
    let crc_at = text.rfind("crc32 ").ok_or("no crc32 line")?;
    let (body, crc_line) = text.split_at(crc_at);
    let stored = u32::from_str_radix(crc_line["crc32 ".len()..].trim_end(), 16)
        .map_err(|_| format!("bad crc32 line {crc_line:?}"))?;
    if crc32fast::hash(body.as_bytes()) != stored {
        return Err("checksum mismatch".to_string());
    }
    Ok(body)
}

/// Who this node is, permanently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Generated once; never reused by another node.
    pub host_id: HostId,
    /// The `cluster.name` this data dir was created for.
    pub cluster_name: String,
    /// This node's vnode tokens, sorted; empty only between the first start's identity and the
    /// moment the node has seen the ring and allocated its tokens (written once, then fixed).
    pub tokens: Vec<Token>,
}

impl NodeIdentity {
    /// The identity file's path under `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(CLUSTER_DIR).join(IDENTITY_FILE)
    }

    /// The identity stored under `data_dir`, if there is one.
    pub fn load(data_dir: &Path) -> Result<Option<NodeIdentity>, ClusterError> {
        let path = Self::path(data_dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ClusterError::Io { path, source }),
        };
        Self::decode(&text)
            .map(Some)
            .map_err(|reason| ClusterError::CorruptIdentity { path, reason })
    }

    /// The identity stored under `data_dir`, or, on the first start, a new one made by `create`
    /// (called only then) and stored before returning. A stored identity of another cluster is
    /// refused with [`ClusterError::WrongCluster`].
    pub fn load_or_create(
        data_dir: &Path,
        cluster_name: &str,
        create: impl FnOnce() -> NodeIdentity,
    ) -> Result<NodeIdentity, ClusterError> {
        if let Some(identity) = Self::load(data_dir)? {
            if identity.cluster_name != cluster_name {
                return Err(ClusterError::WrongCluster {
                    data_dir: data_dir.to_path_buf(),
                    stored: identity.cluster_name,
                    configured: cluster_name.to_string(),
                });
            }
            return Ok(identity);
        }
        let identity = create();
        identity.store(data_dir)?;
        Ok(identity)
    }

    /// Writes the identity under `data_dir`, atomically.
    pub fn store(&self, data_dir: &Path) -> Result<(), ClusterError> {
        write_atomically(data_dir, IDENTITY_FILE, &self.encode())
    }

    fn encode(&self) -> String {
        let tokens: Vec<String> = self.tokens.iter().map(u64::to_string).collect();
        let body = format!(
            "{HEADER}\nhost_id {}\ncluster_name {}\ntokens {}\n",
            self.host_id,
            self.cluster_name,
            tokens.join(",")
        );
        seal(body)
    }

    fn decode(text: &str) -> Result<NodeIdentity, String> {
        let body = unseal(text)?;
        let mut lines = body.lines();
        match lines.next() {
            Some(HEADER) => {}
            other => return Err(format!("unknown header {other:?} (expected {HEADER:?})")),
        }
        let mut field = |name: &str| -> Result<String, String> {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| format!("expected field {name:?}, found {line:?}"))
        };
        let host_id = field("host_id")?
            .parse::<HostId>()
            .map_err(|e| e.to_string())?;
        let cluster_name = field("cluster_name")?;
        let tokens_text = field("tokens")?;
        let mut tokens = tokens_text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Token>().map_err(|_| format!("bad token {s:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        tokens.sort_unstable();
        Ok(NodeIdentity {
            host_id,
            cluster_name,
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeIdentity {
        NodeIdentity {
            host_id: HostId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            cluster_name: "prod-east".to_string(),
            tokens: vec![1, 99, u64::MAX],
        }
    }

    #[test]
    fn created_once_then_loaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::load_or_create(dir.path(), "prod-east", sample).unwrap();
        assert_eq!(first, sample());
        let again = NodeIdentity::load_or_create(dir.path(), "prod-east", || {
            panic!("an identity already exists: create must not run")
        })
        .unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn another_clusters_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path()).unwrap();
        let err = NodeIdentity::load_or_create(dir.path(), "staging", sample).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("prod-east") && msg.contains("staging") && msg.contains("cluster.name"),
            "{msg}"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path()).unwrap();
        let path = NodeIdentity::path(dir.path());
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("prod-east", "prod-west")).unwrap();
        let err = NodeIdentity::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        fs::write(&path, "allidb-node-identity 9\n").unwrap();
        assert!(NodeIdentity::load(dir.path()).is_err());
    }

    #[test]
    fn an_identity_whose_storage_is_gone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path(), "prod-east", sample).unwrap();
        check_storage(dir.path(), false).expect("a first start that stopped before the storage");
        record_storage(dir.path()).unwrap();
        check_storage(dir.path(), true).expect("storage and identity together");
        let err = check_storage(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains(&sample().host_id.to_string()) && err.contains("no storage"),
            "{err}"
        );
        std::fs::remove_file(NodeIdentity::path(dir.path())).unwrap();
        check_storage(dir.path(), false).expect("no identity: a new host");
    }

    #[test]
    fn generations_always_increase() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_generation(dir.path(), 1_000).unwrap(), 1_000);
        // The clock went back: the generation still moves forward.
        assert_eq!(next_generation(dir.path(), 500).unwrap(), 1_001);
        assert_eq!(next_generation(dir.path(), 5_000).unwrap(), 5_000);
    }
}
