//! The backup manifest format (docs/backup.md, "Manifest format", version 1): what one node's
//! backup needs, file by file, with checksums; and the ring manifest that ties the nodes of a
//! ring backup together.
//!
//! An object is a header line, then a JSON document:
//!
//! ```text
//! allidb-backup-manifest 1 sha256=<hex SHA-256 of everything after this line>
//! {"backup_id": "...", "node": "...", ..., "files": [{"path": "lsm/000012.sst", "sha256": "...", "size": 123}]}
//! ```
//!
//! (`allidb-ring-manifest 1 sha256=...` for a ring manifest.) Invariants: [`decode`] accepts only
//! the version it knows and a body whose checksum matches, so a damaged manifest is an error,
//! never a backup with fewer files. Must never: accept a path that leaves the restore directory
//! (absolute, `..`).

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::hex;

/// Version of both manifest formats.
pub const VERSION: u32 = 1;
const BACKUP_MAGIC: &str = "allidb-backup-manifest";
const RING_MAGIC: &str = "allidb-ring-manifest";

/// One backed-up file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the data dir, `/`-separated (`lsm/000012.sst`, `index/...`,
    /// `cluster/identity`).
    pub path: String,
    /// SHA-256 of its bytes, hex: also the name of its blob (`blobs/<sha256>`).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl FileEntry {
    /// The key of the blob holding the file.
    pub fn blob_key(&self) -> String {
        blob_key(&self.sha256)
    }
}

/// The key of the blob with this SHA-256.
pub fn blob_key(sha256: &str) -> String {
    format!("blobs/{sha256}")
}

/// One node's backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The backup id (shared by every node of a ring backup).
    pub backup_id: String,
    /// The node: its host id in a ring, `node` for a single node.
    pub node: String,
    /// When the backup began (Unix microseconds).
    pub started_at_micros: u64,
    /// When its last blob was in the store (Unix microseconds).
    pub finished_at_micros: u64,
    /// Every write at or below this engine sequence number is in the backup.
    pub covered_seq: u64,
    /// Every write at or below this is in the backup's index dump.
    pub index_covered_seq: u64,
    /// Part of a ring backup (then `ring.manifest` lists the nodes).
    pub ring: bool,
    /// Bytes uploaded by this backup (files not already in the store).
    pub uploaded_bytes: u64,
    /// Files uploaded by this backup.
    pub uploaded_files: u64,
    /// Files that were already in the store and reused.
    pub reused_files: u64,
    /// Every file of the node's data dir the backup holds.
    pub files: Vec<FileEntry>,
}

impl BackupManifest {
    /// The manifest's key.
    pub fn key(&self) -> String {
        manifest_key(&self.backup_id, &self.node)
    }

    /// Total size of the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A ring backup: the nodes that make it up, written after every node's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingManifest {
    /// The backup id.
    pub backup_id: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The consistency point: the coordinator's (the CLI's) clock when the backup began, Unix
    /// microseconds. Every write acknowledged before it is in the backup of each of its
    /// replicas that was up.
    pub consistency_point_micros: u64,
    /// The host ids of the nodes backed up.
    pub nodes: Vec<String>,
}

/// The key of a node's manifest.
pub fn manifest_key(backup_id: &str, node: &str) -> String {
    format!("backups/{backup_id}/{node}.manifest")
}

/// The key of a ring manifest.
pub fn ring_manifest_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/ring.manifest")
}

/// The object bytes of `manifest`.
pub fn encode(manifest: &BackupManifest) -> Vec<u8> {
    encode_with(BACKUP_MAGIC, manifest)
}

/// The object bytes of `ring`.
pub fn encode_ring(ring: &RingManifest) -> Vec<u8> {
    encode_with(RING_MAGIC, ring)
}

/// The manifest in `bytes`; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<BackupManifest, String> {
    let manifest: BackupManifest = decode_with(BACKUP_MAGIC, bytes)?;
    for file in &manifest.files {
        check_path(&file.path)?;
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "file {}: sha256 {:?} is not 64 hex digits",
                file.path, file.sha256
            ));
        }
    }
    Ok(manifest)
}

/// The ring manifest in `bytes`.
pub fn decode_ring(bytes: &[u8]) -> Result<RingManifest, String> {
    decode_with(RING_MAGIC, bytes)
}

/// Refuses a path that is empty, absolute or climbs out with `..`.
fn check_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        return Err(format!("file path {path:?} is not a plain relative path"));
    }
    Ok(())
}

fn encode_with<T: Serialize>(magic: &str, value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    let body = serde_json::to_vec_pretty(value).expect("manifests serialise to JSON");
    let mut bytes = format!("{magic} {VERSION} sha256={}\n", sha256_hex(&body)).into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

fn decode_with<T: for<'de> Deserialize<'de>>(magic: &str, bytes: &[u8]) -> Result<T, String> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let body = &bytes[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(magic) {
        return Err(format!("header {header:?} does not start with {magic:?}"));
    }
    let version = words.next().unwrap_or_default();
    if version != VERSION.to_string() {
        return Err(format!(
            "format version {version:?}; this build reads version {VERSION}"
        ));
    }
    let expected = words
        .next()
        .and_then(|w| w.strip_prefix("sha256="))
        .ok_or("header has no sha256=")?;
    let actual = sha256_hex(body);
    if expected != actual {
        return Err(format!(
            "checksum mismatch: header says sha256={expected}, body has sha256={actual}"
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("body: {e}"))
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupManifest {
        BackupManifest {
            backup_id: "20250601T120000Z-0001".into(),
            node: "node".into(),
            started_at_micros: 1,
            finished_at_micros: 2,
            covered_seq: 3,
            index_covered_seq: 3,
            ring: false,
            uploaded_bytes: 5,
            uploaded_files: 1,
            reused_files: 0,
            files: vec![FileEntry {
                path: "lsm/000001.sst".into(),
                sha256: sha256_hex(b"hello"),
                size: 5,
            }],
        }
    }

    #[test]
    fn round_trips_and_every_damage_is_refused() {
        let manifest = sample();
        let bytes = encode(&manifest);
        assert!(bytes.starts_with(b"allidb-backup-manifest 1 sha256="));
        assert_eq!(decode(&bytes).unwrap(), manifest);
        for at in [0, 30, bytes.len() / 2, bytes.len() - 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            assert!(decode(&damaged).is_err(), "flipped byte {at}");
        }
        assert!(
            decode(&bytes[..bytes.len() - 3])
                .unwrap_err()
                .contains("checksum")
        );
        let other_version = String::from_utf8(bytes.clone())
            .unwrap()
            .replacen(" 1 ", " 2 ", 1);
        assert!(
            decode(other_version.as_bytes())
                .unwrap_err()
                .contains("version")
        );
        assert!(
            decode_ring(&bytes).is_err(),
            "a node manifest is not a ring manifest"
        );
    }

    #[test]
    fn paths_that_leave_the_data_dir_are_refused() {
        for path in ["../etc/passwd", "/etc/passwd", "lsm/../../x", ""] {
            let mut manifest = sample();
            manifest.files[0].path = path.into();
            let error = decode(&encode(&manifest)).unwrap_err();
            assert!(error.contains("relative path"), "{path}: {error}");
        }
    }
}
