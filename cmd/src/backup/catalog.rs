//! The backups in a target: [`list_backups`], [`verify`] (re-read every object a backup
//! needs and check its checksum) and [`prune`] (keep the newest N complete backups, delete the
//! rest and every blob no kept backup names).
//!
//! A backup is complete when its manifests are all there: a single node's when its manifest
//! is, a ring's when `ring.manifest` is and every node it lists has one. An interrupted backup
//! has no manifest (or, for a ring, no `ring.manifest`) and is never listed as complete.
//!
//! Invariants: [`prune`] deletes manifests before blobs, and a blob only when no remaining
//! manifest names it, so a crash mid-prune leaves every kept backup whole. Must never: delete
//! a blob a kept backup names, or prune concurrently with a backup into the same target (the
//! running backup's new blobs are named by no manifest yet; docs/backup.md).

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::{self, BackupManifest, RingManifest};
use super::restore::{check_blob, read_manifest};
use super::target::ObjectTarget;
use super::{BackupError, BackupResult};

/// One backup id in the store.
#[derive(Clone, Debug, Default)]
pub struct BackupSummary {
    /// The backup id.
    pub backup_id: String,
    /// The readable node manifests, by node.
    pub nodes: Vec<BackupManifest>,
    /// The ring manifest of a ring backup, once written.
    pub ring: Option<RingManifest>,
    /// Whether every manifest the backup needs is present and readable.
    pub complete: bool,
    /// Manifests that could not be read, with the reason.
    pub problems: Vec<String>,
}

impl BackupSummary {
    /// When the backup began (the earliest node's start).
    pub fn started_at_micros(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.started_at_micros)
            .min()
            .unwrap_or(0)
    }

    /// Bytes of all the files of all its nodes.
    pub fn total_bytes(&self) -> u64 {
        self.nodes.iter().map(BackupManifest::total_bytes).sum()
    }
}

/// The nodes of `backup_id` that have a manifest.
pub async fn nodes_of(target: &ObjectTarget, backup_id: &str) -> BackupResult<Vec<String>> {
    let prefix = format!("backups/{backup_id}/");
    Ok(target
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|(key, _)| {
            let name = key.strip_prefix(&prefix)?.strip_suffix(".manifest")?;
            (name != "ring" && !name.contains('/')).then(|| name.to_owned())
        })
        .collect())
}

/// Every backup in the target, oldest first.
pub async fn list_backups(target: &ObjectTarget) -> BackupResult<Vec<BackupSummary>> {
    let mut by_id: BTreeMap<String, BackupSummary> = BTreeMap::new();
    for (key, _) in target.list("backups/").await? {
        let Some(rest) = key.strip_prefix("backups/") else {
            continue;
        };
        let Some((id, name)) = rest.split_once('/') else {
            continue;
        };
        let Some(node) = name.strip_suffix(".manifest") else {
            continue;
        };
        let summary = by_id.entry(id.to_owned()).or_insert_with(|| BackupSummary {
            backup_id: id.to_owned(),
            ..BackupSummary::default()
        });
        let bytes = target.read(&key).await?.unwrap_or_default();
        if node == "ring" {
            match manifest::decode_ring(&bytes) {
                Ok(ring) => summary.ring = Some(ring),
                Err(reason) => summary.problems.push(format!("{key}: {reason}")),
            }
        } else {
            match manifest::decode(&bytes) {
                Ok(node) => summary.nodes.push(node),
                Err(reason) => summary.problems.push(format!("{key}: {reason}")),
            }
        }
    }
    let mut backups: Vec<BackupSummary> = by_id.into_values().collect();
    for backup in &mut backups {
        let is_ring = backup.ring.is_some() || backup.nodes.iter().any(|n| n.ring);
        backup.complete = backup.problems.is_empty()
            && !backup.nodes.is_empty()
            && match (&backup.ring, is_ring) {
                (_, false) => backup.nodes.len() == 1,
                (None, true) => false,
                (Some(ring), true) => ring
                    .nodes
                    .iter()
                    .all(|host| backup.nodes.iter().any(|n| &n.node == host)),
            };
    }
    backups.sort_by_key(|b| (b.started_at_micros(), b.backup_id.clone()));
    Ok(backups)
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Backups checked.
    pub backups: u64,
    /// Distinct objects re-read.
    pub objects: u64,
    /// Bytes re-read.
    pub bytes: u64,
    /// Every missing or damaged object or manifest, named.
    pub problems: Vec<String>,
}

/// Re-reads every object that `backup_id` (every complete backup when `None`) needs and
/// checks it against its manifest.
pub async fn verify(target: &ObjectTarget, backup_id: Option<&str>) -> BackupResult<VerifyReport> {
    let backups = list_backups(target).await?;
    let mut report = VerifyReport::default();
    let chosen: Vec<&BackupSummary> = backups
        .iter()
        .filter(|b| backup_id.is_none_or(|id| b.backup_id == id))
        .collect();
    if chosen.is_empty() {
        return Err(BackupError::NotFound {
            target: target.url().to_owned(),
            reason: match backup_id {
                Some(id) => format!("no backup {id} (see `allidb backup list`)"),
                None => "holds no backups".to_owned(),
            },
        });
    }
    let mut checked = BTreeSet::new();
    for backup in chosen {
        report.backups += 1;
        report.problems.extend(backup.problems.iter().cloned());
        if !backup.complete && backup.problems.is_empty() {
            report
                .problems
                .push(format!("backup {} is incomplete", backup.backup_id));
        }
        for node in &backup.nodes {
            for file in &node.files {
                if !checked.insert(file.sha256.clone()) {
                    continue;
                }
                report.objects += 1;
                match check_blob(target, file, |_| Ok(())).await {
                    Ok(()) => report.bytes += file.size,
                    Err(
                        error @ (BackupError::MissingObject { .. }
                        | BackupError::DamagedObject { .. }),
                    ) => report.problems.push(format!(
                        "backup {} node {}: {error}",
                        backup.backup_id, node.node
                    )),
                    Err(other) => return Err(other),
                }
            }
        }
    }
    Ok(report)
}

/// What [`prune`] deleted.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Backup ids kept.
    pub kept: Vec<String>,
    /// Backup ids deleted.
    pub deleted: Vec<String>,
    /// Blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes of the blobs deleted.
    pub bytes_freed: u64,
}

/// Keeps the newest `keep` complete backups (and any newer incomplete one, which may still be
/// running); deletes every other backup's manifests, then every blob that no remaining
/// manifest names.
pub async fn prune(target: &ObjectTarget, keep: usize) -> BackupResult<PruneReport> {
    let backups = list_backups(target).await?;
    let complete: Vec<&BackupSummary> = backups.iter().filter(|b| b.complete).collect();
    let kept_complete: BTreeSet<&str> = complete
        .iter()
        .rev()
        .take(keep)
        .map(|b| b.backup_id.as_str())
        .collect();
    // Incomplete backups newer than the oldest kept one may be in progress: left alone.
    let oldest_kept = complete
        .iter()
        .rev()
        .take(keep)
        .map(|b| b.started_at_micros())
        .min();
    let mut report = PruneReport::default();
    for backup in &backups {
        let keep_it = kept_complete.contains(backup.backup_id.as_str())
            || (!backup.complete
                && oldest_kept.is_some_and(|oldest| backup.started_at_micros() >= oldest));
        if keep_it {
            report.kept.push(backup.backup_id.clone());
            continue;
        }
        // The ring manifest first: a crash midway leaves an incomplete backup, never a
        // complete one missing a node.
        target
            .delete(&manifest::ring_manifest_key(&backup.backup_id))
            .await?;
        for (key, _) in target
            .list(&format!("backups/{}/", backup.backup_id))
            .await?
        {
            target.delete(&key).await?;
        }
        report.deleted.push(backup.backup_id.clone());
    }
    let mut needed = BTreeSet::new();
    for id in &report.kept {
        for node in nodes_of(target, id).await? {
            let manifest = read_manifest(target, &manifest::manifest_key(id, &node)).await?;
            needed.extend(manifest.files.into_iter().map(|f| f.blob_key()));
        }
    }
    for (key, size) in target.list("blobs/").await? {
        if !needed.contains(&key) {
            target.delete(&key).await?;
            report.blobs_deleted += 1;
            report.bytes_freed += size;
        }
    }
    tracing::info!(
        target = target.url(),
        kept = report.kept.len(),
        deleted = report.deleted.len(),
        blobs_deleted = report.blobs_deleted,
        bytes_freed = report.bytes_freed,
        "backups pruned"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::create::{CreateOptions, upload_checkpoint};
    use crate::backup::manifest::sha256_hex;
    use std::path::Path;

    /// A `file://` target in `scratch`, and where its backups' checkpoints are written.
    struct Store {
        target: ObjectTarget,
        scratch: std::path::PathBuf,
    }

    impl Store {
        fn new(scratch: &Path) -> Store {
            let url = format!("file://{}", scratch.join("store").display());
            let target =
                ObjectTarget::open(&url, &crate::backup::S3Settings::default(), true).unwrap();
            Store {
                target,
                scratch: scratch.to_owned(),
            }
        }

        /// Backs up a checkpoint holding `files` (each an SSTable's bytes) as backup `id`
        /// begun at `started`.
        async fn backup(&self, id: &str, started: u64, files: &[&[u8]]) {
            self.upload(id, started, false, files).await;
        }

        /// As [`Store::backup`], as one node of a ring backup whose `ring.manifest` is never
        /// written: an incomplete backup.
        async fn ring_node_backup(&self, id: &str, started: u64, files: &[&[u8]]) {
            self.upload(id, started, true, files).await;
        }

        async fn upload(&self, id: &str, started: u64, ring: bool, files: &[&[u8]]) {
            let dir = self.scratch.join(format!("cp-{id}"));
            std::fs::create_dir_all(dir.join("lsm")).unwrap();
            for (i, bytes) in files.iter().enumerate() {
                std::fs::write(dir.join(format!("lsm/{i:06}.sst")), bytes).unwrap();
            }
            let options = CreateOptions {
                backup_id: id.to_owned(),
                node: "node".to_owned(),
                ring,
                started_at_micros: started,
                ..CreateOptions::default()
            };
            upload_checkpoint(&self.target, &dir, &options, &mut |_| {})
                .await
                .unwrap();
        }

        async fn blobs(&self) -> BTreeSet<String> {
            self.keys("blobs/").await.into_iter().collect()
        }

        async fn keys(&self, prefix: &str) -> Vec<String> {
            let listed = self.target.list(prefix).await.unwrap();
            listed.into_iter().map(|(key, _)| key).collect()
        }
    }

    fn blob(bytes: &[u8]) -> String {
        manifest::blob_key(&sha256_hex(bytes))
    }

    /// A blob is deleted once no kept backup names it, and kept while one does, however many
    /// deleted backups named it too.
    #[tokio::test]
    async fn prune_deletes_the_blobs_only_deleted_backups_need_and_keeps_shared_ones() {
        let scratch = tempfile::tempdir().unwrap();
        let store = Store::new(scratch.path());
        let (shared, old1, old2, new): (&[u8], &[u8], &[u8], &[u8]) =
            (b"shared", b"old-1", b"old-2", b"new");
        store.backup("b1", 1, &[shared, old1]).await;
        store.backup("b2", 2, &[shared, old2]).await;
        store.backup("b3", 3, &[shared, new]).await;
        store.backup("b4", 4, &[shared, old2]).await;
        assert_eq!(store.blobs().await.len(), 4);

        let report = prune(&store.target, 2).await.unwrap();
        assert_eq!(report.kept, ["b3", "b4"]);
        assert_eq!(report.deleted, ["b1", "b2"]);
        assert_eq!(
            report.blobs_deleted, 1,
            "only old-1 is named by no kept backup"
        );
        assert_eq!(report.bytes_freed, old1.len() as u64);
        assert_eq!(
            store.blobs().await,
            BTreeSet::from([blob(shared), blob(old2), blob(new)]),
            "a blob a kept backup shares stays (old-2: the deleted b2's and the kept b4's)"
        );
        let listed = list_backups(&store.target).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|b| b.backup_id.as_str()).collect();
        assert_eq!(ids, ["b3", "b4"]);
        let report = verify(&store.target, None).await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        let report = prune(&store.target, 1).await.unwrap();
        assert_eq!(report.deleted, ["b3"]);
        assert_eq!(report.blobs_deleted, 1);
        let left = BTreeSet::from([blob(shared), blob(old2)]);
        assert_eq!(store.blobs().await, left);
    }

    /// docs/backup.md "delete --keep N": an incomplete backup (a ring backup without its
    /// `ring.manifest`) newer than the oldest kept one may still be running: it and its blobs
    /// stay; an older incomplete one is deleted with the blobs only it named. Blobs named by no
    /// manifest at all (a backup that wrote none yet, or was killed before) are deleted: prune
    /// must not run concurrently with a backup into the same target.
    #[tokio::test]
    async fn prune_keeps_a_newer_incomplete_backup_and_its_blobs() {
        let scratch = tempfile::tempdir().unwrap();
        let store = Store::new(scratch.path());
        let (a, b, c, d): (&[u8], &[u8], &[u8], &[u8]) = (b"a", b"b", b"c", b"d");
        store.ring_node_backup("old-ring", 1, &[a]).await;
        store.backup("b2", 2, &[b]).await;
        store.backup("b3", 3, &[c]).await;
        store.ring_node_backup("running-ring", 4, &[d, b]).await;
        // The blob of a backup that has written no manifest (killed, or still uploading).
        let loose = b"no manifest names me";
        store
            .target
            .write(&blob(loose), loose.to_vec())
            .await
            .unwrap();
        let listed = list_backups(&store.target).await.unwrap();
        let states: Vec<(&str, bool)> = listed
            .iter()
            .map(|b| (b.backup_id.as_str(), b.complete))
            .collect();
        let expected = [
            ("old-ring", false),
            ("b2", true),
            ("b3", true),
            ("running-ring", false),
        ];
        assert_eq!(states, expected);

        let report = prune(&store.target, 1).await.unwrap();
        assert_eq!(report.kept, ["b3", "running-ring"]);
        assert_eq!(report.deleted, ["old-ring", "b2"]);
        assert_eq!(
            store.blobs().await,
            BTreeSet::from([blob(b), blob(c), blob(d)]),
            "the newer incomplete backup's blobs stay (b too, which the deleted b2 shared with \
             it); a, only the older incomplete one's, and the loose blob go"
        );
        assert_eq!(report.blobs_deleted, 2);
        let manifests = store.keys("backups/").await;
        let expected = [
            "backups/b3/node.manifest",
            "backups/running-ring/node.manifest",
        ];
        assert_eq!(manifests, expected);
    }
}
