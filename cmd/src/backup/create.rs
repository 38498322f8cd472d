//! Creating a backup: [`upload_checkpoint`] uploads a checkpoint directory (the store's
//! `lsm/` and `index/`, plus `cluster/identity` when present) to an [`ObjectTarget`] and
//! writes the node's [`BackupManifest`] last.
//!
//! Incremental: each file is hashed (SHA-256) and stored as `blobs/<sha256>`; a blob already
//! in the store with the right size (from an earlier backup, or uploaded by one that was
//! interrupted) is reused, not uploaded again. SSTables are immutable, so after the first
//! backup only new tables, the WAL tail, the small manifest files and the index dump move.
//! With a [`HashCache`] ([`CreateOptions::hash_cache`]), a file an earlier backup hashed (the
//! same hard-linked table, dump file or WAL segment) is not read again: its hash comes from
//! the cache.
//!
//! Invariants: the manifest is written after every blob it names is in the store; an existing
//! manifest of the same backup id and node is never overwritten; every uploaded blob's bytes
//! are hashed as they are read for the upload and committed only when they match its name
//! (so a wrong hash, from the cache or a file changed since its hashing, fails the backup and
//! is forgotten by the cache, never stored under a wrong name). Must never: modify the
//! checkpoint directory it reads.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::hash_cache::{FileKey, HashCache};
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
    /// The hash cache file (`None`: every file is hashed).
    pub hash_cache: Option<PathBuf>,
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
    /// Files whose hash came from the hash cache (not read to hash them).
    pub hash_cache_hits: u64,
    /// Bytes read to hash the files the cache did not know.
    pub hashed_bytes: u64,
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
    let cache = options.hash_cache.as_deref().map(HashCache::load);
    let hashing = local.clone();
    let hashed = tokio::task::spawn_blocking(move || hash_files(&hashing, cache))
        .await
        .map_err(|e| BackupError::Checkpoint(format!("hashing task failed: {e}")))??;
    let Hashed {
        files,
        keys,
        mut cache,
        hash_cache_hits,
        hashed_bytes,
    } = hashed;
    save(cache.as_ref());
    let mut state = Progress {
        files: files.len() as u64,
        hash_cache_hits,
        hashed_bytes,
        ..Progress::default()
    };
    metrics::counter!("allidb_backup_hashed_bytes_total").increment(hashed_bytes);
    metrics::counter!("allidb_backup_hash_cache_hits_total").increment(hash_cache_hits);
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
        let uploaded = target
            .upload_file(key, path, &files[*index].sha256, &mut throttle, &mut sent)
            .await;
        match uploaded {
            Err(error @ BackupError::Changed { .. }) => {
                if let Some(cache) = cache.as_mut() {
                    cache.forget(&keys[*index]);
                }
                save(cache.as_ref());
                return Err(error);
            }
            other => other?,
        }
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

/// The checkpoint's files hashed: their manifest entries and keys (in the order of the files
/// given) and the cache that served and recorded them.
struct Hashed {
    files: Vec<FileEntry>,
    keys: Vec<FileKey>,
    cache: Option<HashCache>,
    hash_cache_hits: u64,
    hashed_bytes: u64,
}

/// The manifest entry of every file in `local` (relative path, path): its hash from `cache`
/// when the cache knows the file, else read and hashed (and recorded in `cache`).
fn hash_files(local: &[(String, PathBuf)], mut cache: Option<HashCache>) -> BackupResult<Hashed> {
    let mut hashed = Hashed {
        files: Vec::with_capacity(local.len()),
        keys: Vec::with_capacity(local.len()),
        cache: None,
        hash_cache_hits: 0,
        hashed_bytes: 0,
    };
    for (relative, path) in local {
        let key_now = || {
            std::fs::metadata(path)
                .map(|m| FileKey::new(relative, &m))
                .map_err(|e| BackupError::io(path, e))
        };
        let key = key_now()?;
        let cached = match cache.as_mut() {
            Some(cache) => cache.get(&key, path)?,
            None => None,
        };
        let (sha256, size) = match cached {
            Some(sha256) => {
                hashed.hash_cache_hits += 1;
                (sha256, key.size)
            }
            None => {
                let hashed_at = std::time::SystemTime::now();
                let (sha256, size) = hash_file(path)?;
                hashed.hashed_bytes += size;
                if let Some(cache) = cache.as_mut() {
                    cache.insert(key.clone(), &key_now()?, path, sha256.clone(), hashed_at)?;
                }
                (sha256, size)
            }
        };
        hashed.files.push(FileEntry {
            path: relative.clone(),
            sha256,
            size,
        });
        hashed.keys.push(key);
    }
    hashed.cache = cache;
    Ok(hashed)
}

/// Writes `cache` back to its file; a failure is logged, never the backup's.
fn save(cache: Option<&HashCache>) {
    if let Some(cache) = cache
        && let Err(error) = cache.save()
    {
        tracing::warn!(%error, "could not write the backup hash cache");
    }
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

    /// A checkpoint directory of `files` (relative path, bytes), modified a minute ago.
    fn checkpoint(dir: &Path, files: &[(&str, Vec<u8>)]) {
        for (relative, bytes) in files {
            let path = dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            set_time(
                &path,
                std::time::SystemTime::now() - std::time::Duration::from_secs(60),
            );
        }
    }

    fn set_time(path: &Path, time: std::time::SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Uploads `dir` as backup `id` with the hash cache `cache`; the manifest and the last
    /// progress.
    async fn upload(
        target: &ObjectTarget,
        dir: &Path,
        id: &str,
        cache: Option<&Path>,
    ) -> BackupResult<(BackupManifest, Progress)> {
        let options = CreateOptions {
            backup_id: id.to_owned(),
            node: "node".to_owned(),
            hash_cache: cache.map(Path::to_owned),
            ..CreateOptions::default()
        };
        let mut last = Progress::default();
        let manifest =
            upload_checkpoint(target, dir, &options, &mut |p: &Progress| last = *p).await?;
        Ok((manifest, last))
    }

    fn store(dir: &Path, name: &str) -> ObjectTarget {
        let url = format!("file://{}", dir.join(name).display());
        ObjectTarget::open(&url, &super::super::S3Settings::default(), true).unwrap()
    }

    #[tokio::test]
    async fn unchanged_files_are_hashed_once_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, cache) = (dir.path().join("cp"), dir.path().join("hashes"));
        checkpoint(
            &cp,
            &[
                ("lsm/000001.sst", bytes(100_000, 1)),
                ("lsm/000002.sst", bytes(20_000, 2)),
                ("lsm/CURRENT", b"MANIFEST-000003".to_vec()),
            ],
        );
        let total = 100_000 + 20_000 + 15;
        let target = store(dir.path(), "store");
        let (first, progress) = upload(&target, &cp, "b1", Some(&cache)).await.unwrap();
        assert_eq!(
            (progress.hashed_bytes, progress.hash_cache_hits),
            (total, 0)
        );
        let (second, progress) = upload(&target, &cp, "b2", Some(&cache)).await.unwrap();
        assert_eq!(
            (progress.hashed_bytes, progress.hash_cache_hits),
            (0, 3),
            "every file's hash from the cache"
        );
        assert_eq!(second.files, first.files);

        // Rewritten in place, same size: hashed again, its new hash in the manifest.
        let changed = bytes(20_000, 7);
        std::fs::write(cp.join("lsm/000002.sst"), &changed).unwrap();
        let (third, progress) = upload(&target, &cp, "b3", Some(&cache)).await.unwrap();
        assert_eq!(
            (progress.hashed_bytes, progress.hash_cache_hits),
            (20_000, 2)
        );
        assert_eq!(third.files[1].sha256, manifest::sha256_hex(&changed));
        assert_eq!(third.uploaded_files, 1);

        let (_, progress) = upload(&target, &cp, "b4", None).await.unwrap();
        assert_eq!(
            (progress.hashed_bytes, progress.hash_cache_hits),
            (total, 0),
            "no cache: every file read"
        );
    }

    /// The cache's limit (docs/backup.md): a file rewritten in place keeping its size, its first
    /// and last bytes, and its modification time set back is taken for the hashed one. Its
    /// upload checks the bytes against the hash, fails, and the cache forgets the entry.
    #[tokio::test]
    async fn a_wrong_hash_from_the_cache_is_caught_by_the_upload_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, cache) = (dir.path().join("cp"), dir.path().join("hashes"));
        let original = bytes(3 * PROBE + 100, 1);
        checkpoint(&cp, &[("lsm/000001.sst", original.clone())]);
        let table = cp.join("lsm/000001.sst");
        let modified = std::fs::metadata(&table).unwrap().modified().unwrap();
        upload(&store(dir.path(), "a"), &cp, "b1", Some(&cache))
            .await
            .unwrap();

        let mut middle = original.clone();
        middle[PROBE + 50] ^= 1;
        std::fs::write(&table, &middle).unwrap();
        set_time(&table, modified);
        let fresh = store(dir.path(), "fresh");
        let error = upload(&fresh, &cp, "b2", Some(&cache)).await.unwrap_err();
        assert!(
            matches!(&error, BackupError::Changed { expected, actual, .. }
                if *expected == manifest::sha256_hex(&original)
                    && *actual == manifest::sha256_hex(&middle)),
            "{error}"
        );
        assert!(
            fresh.list("blobs/").await.unwrap().is_empty(),
            "nothing stored under a wrong name"
        );
        let (manifest, progress) = upload(&fresh, &cp, "b3", Some(&cache)).await.unwrap();
        assert_eq!(progress.hash_cache_hits, 0, "the entry was forgotten");
        assert_eq!(manifest.files[0].sha256, manifest::sha256_hex(&middle));
    }

    const PROBE: usize = super::super::hash_cache::PROBE_BYTES as usize;
}
