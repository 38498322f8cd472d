//! Creating a backup: [`upload_checkpoint`] uploads a checkpoint directory (the store's
//! `lsm/` and `index/`, plus `cluster/identity` when present) to an [`ObjectTarget`] and
//! writes the node's [`BackupManifest`] last.
//!
//! Incremental: each file is hashed (SHA-256) and stored as `blobs/<sha256>`; a blob already
//! in the store with the right size (from an earlier backup, or uploaded by one that was
//! interrupted) is reused, not uploaded again. SSTables are immutable, so after the first
//! backup only new tables, the WAL tail, the small manifest files and the index dump move.
//!
//! Invariants: the manifest is written after every blob it names is in the store; an existing
//! manifest of the same backup id and node is never overwritten. Must never: modify the
//! checkpoint directory it reads.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::{self, BackupManifest, FileEntry};
use super::target::ObjectTarget;
use super::{BackupError, BackupResult, hex, now_micros};
use allidb_cluster::stream::Throttle;

/// What to record about the backup being created.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// The backup id.
    pub backup_id: String,
    /// The node name in the manifest (host id, or `node`).
    pub node: String,
    /// Part of a ring backup.
    pub ring: bool,
    /// From the checkpoint: every write at or below this is in it.
    pub covered_seq: u64,
    /// From the checkpoint: every write at or below this is in its index dump.
    pub index_covered_seq: u64,
    /// When the backup began (Unix microseconds).
    pub started_at_micros: u64,
    /// Bandwidth cap of the uploads, bytes per second (0: none).
    pub max_bytes_per_sec: u64,
}

/// How far an upload is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files in the checkpoint.
    pub files: u64,
    /// Files found already in the store.
    pub reused_files: u64,
    /// Bytes that need uploading (files not in the store).
    pub bytes_to_upload: u64,
    /// Bytes uploaded so far.
    pub bytes_uploaded: u64,
}

/// Uploads the checkpoint in `dir` as backup `options.backup_id` of `options.node`; `progress`
/// is called as the upload advances. Returns the manifest written.
pub async fn upload_checkpoint(
    target: &ObjectTarget,
    dir: &Path,
    options: &CreateOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> BackupResult<BackupManifest> {
    let manifest_key = manifest::manifest_key(&options.backup_id, &options.node);
    if target.size_of(&manifest_key).await?.is_some() {
        return Err(BackupError::Local {
            path: dir.to_owned(),
            reason: format!(
                "backup {} of node {} already exists in {} ({manifest_key})",
                options.backup_id,
                options.node,
                target.url()
            ),
        });
    }
    let local = list_files(dir)?;
    let mut files = Vec::with_capacity(local.len());
    for (relative, path) in &local {
        let path = path.clone();
        let (sha256, size) = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| BackupError::Checkpoint(format!("hashing task failed: {e}")))??;
        files.push(FileEntry {
            path: relative.clone(),
            sha256,
            size,
        });
    }
    let mut state = Progress {
        files: files.len() as u64,
        ..Progress::default()
    };
    let mut to_upload: Vec<(usize, String)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, file) in files.iter().enumerate() {
        if !seen.insert(file.sha256.clone()) {
            state.reused_files += 1;
            continue;
        }
        let key = file.blob_key();
        match target.size_of(&key).await? {
            Some(size) if size == file.size => state.reused_files += 1,
            _ => {
                state.bytes_to_upload += file.size;
                to_upload.push((index, key));
            }
        }
    }
    progress(&state);
    let mut throttle = Throttle::new(options.max_bytes_per_sec);
    for (index, key) in &to_upload {
        let path = &local[*index].1;
        let mut sent = |bytes: u64| {
            state.bytes_uploaded += bytes;
            metrics::counter!("allidb_backup_uploaded_bytes_total").increment(bytes);
            progress(&state);
        };
        target
            .upload_file(key, path, &mut throttle, &mut sent)
            .await?;
        metrics::counter!("allidb_backup_uploaded_files_total").increment(1);
    }
    metrics::counter!("allidb_backup_reused_files_total").increment(state.reused_files);
    let manifest = BackupManifest {
        backup_id: options.backup_id.clone(),
        node: options.node.clone(),
        started_at_micros: options.started_at_micros,
        finished_at_micros: now_micros(),
        covered_seq: options.covered_seq,
        index_covered_seq: options.index_covered_seq,
        ring: options.ring,
        uploaded_bytes: state.bytes_uploaded,
        uploaded_files: to_upload.len() as u64,
        reused_files: state.reused_files,
        files,
    };
    target
        .write(&manifest_key, manifest::encode(&manifest))
        .await?;
    tracing::info!(target = target.url(), backup_id = %manifest.backup_id, node = %manifest.node,
        files = manifest.files.len(), uploaded_files = manifest.uploaded_files,
        uploaded_bytes = manifest.uploaded_bytes, reused_files = manifest.reused_files,
        "backup written");
    Ok(manifest)
}

/// Every regular file under `dir`, as (`/`-separated relative path, path), sorted.
fn list_files(dir: &Path) -> BackupResult<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| BackupError::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BackupError::io(&current, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| BackupError::io(&path, e))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(dir)
                    .map_err(|_| BackupError::Local {
                        path: path.clone(),
                        reason: "not under the checkpoint directory".to_owned(),
                    })?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((relative, path));
            }
        }
    }
    if files.is_empty() {
        return Err(BackupError::Local {
            path: dir.to_owned(),
            reason: "holds no files: not a checkpoint".to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

/// The hex SHA-256 and size of the file at `path`, read in pieces.
fn hash_file(path: &Path) -> BackupResult<(String, u64)> {
    let io = |e| BackupError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex(context.finish().as_ref()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_listed_relative_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lsm")).unwrap();
        std::fs::write(dir.path().join("lsm/000001.sst"), b"hello").unwrap();
        std::fs::write(dir.path().join("CURRENT"), b"x").unwrap();
        let files = list_files(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["CURRENT", "lsm/000001.sst"]);
        let (sha, size) = hash_file(&files[1].1).unwrap();
        assert_eq!(size, 5);
        assert_eq!(sha, manifest::sha256_hex(b"hello"));
        let empty = tempfile::tempdir().unwrap();
        assert!(
            list_files(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no files")
        );
    }
}
