//! Backups of a node's data to an object store (an S3-compatible bucket or a directory), and
//! restores from them (docs/backup.md).
//!
//! What it owns: the object layout under a target's prefix and the backup manifest format
//! ([`manifest`], version 1), uploading a checkpoint directory incrementally ([`create`]),
//! listing, verifying and pruning backups ([`catalog`]), restoring one into an empty data dir
//! ([`restore`]), the target itself ([`target`]), the daemon's scheduled backups
//! ([`schedule`]) and the local cache of file hashes that spares a backup re-reading the files
//! an earlier one hashed ([`hash_cache`], format version 1).
//!
//! Layout under the target's prefix:
//!
//! ```text
//! blobs/<sha256>                      the bytes of one backed-up file, named by their SHA-256
//! backups/<backup id>/<node>.manifest one per node: every file the node's backup needs
//! backups/<backup id>/ring.manifest   a ring backup's list of nodes, written after theirs
//! ```
//!
//! Invariants: a blob's name is the SHA-256 of its bytes, so a file already in the store (from
//! any earlier backup, or from an interrupted one) is never uploaded again; a manifest is
//! written only after every blob it names is in the store, so a backup that did not finish has
//! no manifest and never lists as complete; a restore writes into a sibling directory and
//! renames it into place only after every file matched its checksum.
//!
//! Must never: write into a live data directory, overwrite an existing backup's manifest, or
//! delete a blob that a kept backup names.

pub mod catalog;
pub mod create;
pub mod hash_cache;
pub mod manifest;
pub mod restore;
pub mod schedule;
pub mod target;

use std::path::PathBuf;

/// A backup's upload bandwidth cap unless one is given, in bytes per second (16 MiB/s: the
/// daemon kept 0.85x of its writes during a full backup to an S3 server on its own host, 0.74x
/// at 40 MiB/s): uncapped, a backup hashes and sends as fast as a core allows and takes it from
/// the daemon's writes (docs/backup.md "Pacing"); 0 lifts the cap.
pub const DEFAULT_MAX_BYTES_PER_SEC: u64 = 16 << 20;

pub use self::create::{CreateOptions, Progress, upload_checkpoint};
pub use self::manifest::{BackupManifest, FileEntry, RingManifest};
pub use self::target::{ObjectTarget, S3Settings};

/// Why a backup, a restore, a listing, a verification or a prune failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target URL is not `s3://bucket[/prefix]` or `file:///absolute/path`.
    #[error("backup target {url:?}: {reason}")]
    InvalidTarget {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store refused or failed a request (after its retries).
    #[error("{target}: {operation} {key}: {cause}")]
    Store {
        /// The target URL.
        target: String,
        /// What was being done: `upload`, `read`, `list`, `delete`.
        operation: &'static str,
        /// The object key (or prefix).
        key: String,
        /// The cause, in words (wrong credentials, missing bucket, unreachable endpoint...).
        cause: String,
    },
    /// An object a backup needs is not in the store.
    #[error("{target}: object {key} is missing (needed for {file})")]
    MissingObject {
        /// The target URL.
        target: String,
        /// The object key.
        key: String,
        /// The backed-up file it holds.
        file: String,
    },
    /// An object's bytes do not match the checksum or size its manifest records.
    #[error("{target}: object {key} is damaged (needed for {file}): {reason}")]
    DamagedObject {
        /// The target URL.
        target: String,
        /// The object key.
        key: String,
        /// The backed-up file it holds.
        file: String,
        /// Expected and found checksum or size.
        reason: String,
    },
    /// A manifest object is unreadable: wrong header, version, checksum or JSON.
    #[error("{target}: manifest {key}: {reason}")]
    Manifest {
        /// The target URL.
        target: String,
        /// The manifest's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No complete backup with this id (and node) is in the store.
    #[error("{target}: {reason}")]
    NotFound {
        /// The target URL.
        target: String,
        /// Which backup or node is missing, and what exists.
        reason: String,
    },
    /// A local file or directory could not be read or written (e.g. a full disk on restore).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A restore destination or a checkpoint source is unusable.
    #[error("{path}: {reason}")]
    Local {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file's bytes, read for its upload, do not hash to what its hashing (or the hash
    /// cache) said: it changed after it was hashed. Nothing was stored for it.
    #[error(
        "{path}: changed after it was hashed (expected sha256 {expected}, its bytes have \
         sha256 {actual}); nothing was uploaded for it, run the backup again"
    )]
    Changed {
        /// The checkpoint file.
        path: PathBuf,
        /// The SHA-256 it was to be stored under.
        expected: String,
        /// The SHA-256 of the bytes read.
        actual: String,
    },
    /// The node's checkpoint (the store's) failed.
    #[error("checkpoint for the backup failed: {0}")]
    Checkpoint(String),
}

impl BackupError {
    /// An [`BackupError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of backup operations.
pub type BackupResult<T> = Result<T, BackupError>;

/// The lowercase hex form of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new backup id: the UTC time to the second, sortable (`20250601T120000Z`), plus four hex
/// digits of the nanoseconds so two backups in one second differ.
pub fn new_backup_id(now: std::time::SystemTime) -> String {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = crate::cli::output::timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    // "2025-06-01T12:00:00.123456789Z" -> "20250601T120000Z"
    let compact: String = stamp[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}Z-{:04x}", since.subsec_nanos() & 0xffff)
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_sort_by_time_and_name_it() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_748_779_200, 5);
        let id = new_backup_id(at);
        assert!(id.starts_with("20250601T120000Z-"), "{id}");
        let later = new_backup_id(at + std::time::Duration::from_secs(1));
        assert!(later > id);
    }
}
