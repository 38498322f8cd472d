//! Restoring a backup: [`restore`] writes every file of a node's [`BackupManifest`] into an
//! empty data directory, offline, checking each against its recorded size and SHA-256.
//!
//! How: files are written into a sibling directory `.<name>.restoring`, each streamed from its
//! blob and hashed on the way, then synced; only when every file matched is that directory
//! renamed to the destination (and the parent synced). A missing or damaged object, or a local
//! write error (a full disk), fails the restore naming it, and the destination does not
//! appear: a daemon can never start on half a restore.
//!
//! Invariants: the destination must not exist or be an empty directory; nothing outside it and
//! its sibling staging directory is written. Must never: leave a destination that holds some
//! of the files, or accept a file whose checksum differs from its manifest's.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::manifest::{self, BackupManifest, FileEntry};
use super::target::ObjectTarget;
use super::{BackupError, BackupResult, hex};

/// What a restore wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The manifest of backup `backup_id` of `node` (the only node of the backup when `None`).
pub async fn find_manifest(
    target: &ObjectTarget,
    backup_id: &str,
    node: Option<&str>,
) -> BackupResult<BackupManifest> {
    let nodes = super::catalog::nodes_of(target, backup_id).await?;
    let not_found = |reason: String| BackupError::NotFound {
        target: target.url().to_owned(),
        reason,
    };
    let node = match node {
        Some(node) if nodes.iter().any(|n| n == node) => node.to_owned(),
        Some(node) => {
            return Err(not_found(format!(
                "backup {backup_id} has no node {node} (it has: {})",
                list_or_none(&nodes)
            )));
        }
        None => match nodes.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(not_found(format!(
                    "no complete backup {backup_id} (see `allidb backup list`)"
                )));
            }
            many => {
                return Err(not_found(format!(
                    "backup {backup_id} holds {} nodes; name one with --node ({})",
                    many.len(),
                    many.join(", ")
                )));
            }
        },
    };
    read_manifest(target, &manifest::manifest_key(backup_id, &node)).await
}

fn list_or_none(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "none".to_owned()
    } else {
        nodes.join(", ")
    }
}

/// Reads and checks the manifest at `key`.
pub async fn read_manifest(target: &ObjectTarget, key: &str) -> BackupResult<BackupManifest> {
    let bytes = target
        .read(key)
        .await?
        .ok_or_else(|| BackupError::MissingObject {
            target: target.url().to_owned(),
            key: key.to_owned(),
            file: "the backup manifest".to_owned(),
        })?;
    manifest::decode(&bytes).map_err(|reason| BackupError::Manifest {
        target: target.url().to_owned(),
        key: key.to_owned(),
        reason,
    })
}

/// Streams `file`'s blob into `sink` and checks its size and SHA-256.
pub async fn check_blob(
    target: &ObjectTarget,
    file: &FileEntry,
    mut sink: impl FnMut(&[u8]) -> BackupResult<()>,
) -> BackupResult<()> {
    let key = file.blob_key();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let read = target
        .read_into(&key, |chunk| {
            context.update(chunk);
            sink(chunk)
        })
        .await?;
    let damaged = |reason: String| BackupError::DamagedObject {
        target: target.url().to_owned(),
        key: key.clone(),
        file: file.path.clone(),
        reason,
    };
    match read {
        None => Err(BackupError::MissingObject {
            target: target.url().to_owned(),
            key: key.clone(),
            file: file.path.clone(),
        }),
        Some(size) if size != file.size => Err(damaged(format!(
            "{size} bytes, the manifest records {}",
            file.size
        ))),
        Some(_) => {
            let actual = hex(context.finish().as_ref());
            if actual == file.sha256 {
                Ok(())
            } else {
                Err(damaged(format!("its bytes have sha256 {actual}")))
            }
        }
    }
}

/// Restores `manifest` into `dest` (absent or an empty directory); see the module doc.
pub async fn restore(
    target: &ObjectTarget,
    manifest: &BackupManifest,
    dest: &Path,
) -> BackupResult<RestoreReport> {
    check_destination(dest)?;
    let staging = staging_dir(dest)?;
    if staging.exists() {
        // Left by an interrupted restore into the same destination: it never became `dest`.
        std::fs::remove_dir_all(&staging).map_err(|e| BackupError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| BackupError::io(&staging, e))?;
    match write_files(target, manifest, &staging).await {
        Ok(report) => {
            publish(&staging, dest)?;
            tracing::info!(target = target.url(), backup_id = %manifest.backup_id,
                node = %manifest.node, dest = %dest.display(), files = report.files,
                bytes = report.bytes, "backup restored");
            Ok(report)
        }
        Err(error) => {
            if let Err(cleanup) = std::fs::remove_dir_all(&staging) {
                tracing::warn!(dir = %staging.display(), error = %cleanup,
                    "could not remove the partial restore");
            }
            Err(error)
        }
    }
}

/// Refuses a destination that holds anything.
fn check_destination(dest: &Path) -> BackupResult<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Local {
                    path: dest.to_owned(),
                    reason: "is not empty: restore only into a new or empty data directory"
                        .to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(BackupError::Local {
            path: dest.to_owned(),
            reason: "is a file, not a directory".to_owned(),
        }),
        Err(e) => Err(BackupError::io(dest, e)),
    }
}

/// `.<name>.restoring` beside `dest`.
fn staging_dir(dest: &Path) -> BackupResult<PathBuf> {
    let name = dest.file_name().ok_or_else(|| BackupError::Local {
        path: dest.to_owned(),
        reason: "names no directory (it ends in `..` or is a root)".to_owned(),
    })?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.restoring", name.to_string_lossy())))
}

async fn write_files(
    target: &ObjectTarget,
    manifest: &BackupManifest,
    staging: &Path,
) -> BackupResult<RestoreReport> {
    let mut report = RestoreReport::default();
    let mut dirs = std::collections::BTreeSet::new();
    for file in &manifest.files {
        let path = staging.join(&file.path);
        let parent = path.parent().unwrap_or(staging).to_owned();
        std::fs::create_dir_all(&parent).map_err(|e| BackupError::io(&parent, e))?;
        dirs.insert(parent);
        let mut out = std::fs::File::create(&path).map_err(|e| BackupError::io(&path, e))?;
        check_blob(target, file, |chunk| {
            out.write_all(chunk).map_err(|e| BackupError::io(&path, e))
        })
        .await?;
        out.sync_all().map_err(|e| BackupError::io(&path, e))?;
        report.files += 1;
        report.bytes += file.size;
    }
    for dir in dirs {
        sync_dir(&dir)?;
    }
    Ok(report)
}

/// Renames `staging` to `dest` (replacing an empty `dest`) and syncs the parent.
fn publish(staging: &Path, dest: &Path) -> BackupResult<()> {
    if dest.exists() {
        std::fs::remove_dir(dest).map_err(|e| BackupError::io(dest, e))?;
    }
    std::fs::rename(staging, dest).map_err(|e| BackupError::io(dest, e))?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> BackupResult<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        check_destination(&dir.path().join("new")).unwrap();
        check_destination(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let error = check_destination(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
        let error = check_destination(&dir.path().join("f"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a directory"), "{error}");
        assert_eq!(
            staging_dir(&dir.path().join("data")).unwrap(),
            dir.path().join(".data.restoring")
        );
    }
}
