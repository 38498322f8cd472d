//! The `[backup]` configuration section and the daemon's scheduled backups: every
//! `backup.interval_secs` the daemon checkpoints its store into a staging directory, uploads it
//! to `backup.target` ([`super::upload_checkpoint`]), prunes to `backup.keep` backups and
//! removes the staging copy. Its hash cache ([`super::hash_cache`]) is the file
//! [`HASH_CACHE_FILE`] in the staging root, kept across backups and restarts.
//!
//! What it owns: [`BackupConfig`], [`backup_store`] (one backup of a local store, also what a
//! schedule runs) and [`ScheduledBackups`]. Metrics: `allidb_backups_total{outcome}`,
//! `allidb_backup_last_success_timestamp_seconds`, `allidb_backup_duration_seconds` (plus the
//! upload counters of [`super::create`]).
//!
//! Invariants: off by default (`interval_secs = 0`); one backup at a time; a failed backup is
//! logged and counted, and the next one runs at the next interval (its blobs already uploaded
//! are reused). Must never: stop the daemon because a backup failed, or stage inside the data
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allidb_index::UnifiedStore;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::catalog::prune;
use super::create::{CreateOptions, upload_checkpoint};
use super::manifest::BackupManifest;
use super::target::{DEFAULT_RETRY_TIMEOUT, ObjectTarget, S3Settings};
use super::{BackupError, BackupResult, new_backup_id, now_micros};

/// The name of the schedule's hash cache file in the staging root.
pub const HASH_CACHE_FILE: &str = "hash-cache";

/// `[backup]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Where scheduled backups go: `s3://bucket/prefix` or `file:///dir` (empty: none).
    pub target: String,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000` (empty: `AWS_ENDPOINT_URL`, or AWS).
    pub endpoint: String,
    /// S3 region (empty: `AWS_REGION`, or `us-east-1`).
    pub region: String,
    /// S3 access key id (empty: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// S3 secret access key (empty: `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// Seconds between scheduled backups (0: no schedule).
    pub interval_secs: u64,
    /// Complete backups kept after each scheduled backup (0: keep all).
    pub keep: u64,
    /// Upload bandwidth cap in bytes per second (0: none).
    pub max_bytes_per_sec: u64,
    /// Directory for the checkpoint a backup uploads, outside the data dir (empty:
    /// `<data_dir>.backup-staging`).
    pub staging_dir: String,
    /// How long each request to the S3 server is retried (exponential backoff) after a network
    /// failure or a server error before the backup fails, in seconds (the CLI's
    /// `--retry-timeout-secs`).
    pub retry_timeout_secs: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            target: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            interval_secs: 0,
            keep: 0,
            max_bytes_per_sec: super::DEFAULT_MAX_BYTES_PER_SEC,
            staging_dir: String::new(),
            retry_timeout_secs: DEFAULT_RETRY_TIMEOUT.as_secs(),
        }
    }
}

impl BackupConfig {
    /// The S3 settings of the section (empty keys fall back to the environment).
    pub fn s3_settings(&self) -> S3Settings {
        let set = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        S3Settings {
            endpoint: set(&self.endpoint),
            region: set(&self.region),
            access_key_id: set(&self.access_key_id),
            secret_access_key: set(&self.secret_access_key),
            retry_timeout: Some(Duration::from_secs(self.retry_timeout_secs)),
        }
    }

    /// The staging directory for a daemon whose data dir is `data_dir`.
    pub fn staging_root(&self, data_dir: &Path) -> PathBuf {
        if self.staging_dir.is_empty() {
            let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
            name.push(".backup-staging");
            data_dir.with_file_name(name)
        } else {
            PathBuf::from(&self.staging_dir)
        }
    }

    /// Checks the section: a schedule needs a target that parses. Errors name the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval_secs > 0 && self.target.is_empty() {
            return Err((
                "backup.target",
                "is required when backup.interval_secs is set".to_owned(),
            ));
        }
        if !self.target.is_empty() {
            let valid = self.target.starts_with("s3://")
                || self
                    .target
                    .strip_prefix("file://")
                    .is_some_and(|p| p.starts_with('/'));
            if !valid {
                return Err((
                    "backup.target",
                    format!(
                        "{:?}: expected s3://bucket[/prefix] or file:///absolute/dir",
                        self.target
                    ),
                ));
            }
        }
        if !self.staging_dir.is_empty() && !Path::new(&self.staging_dir).is_absolute() {
            return Err(("backup.staging_dir", "must be an absolute path".to_owned()));
        }
        if self.retry_timeout_secs == 0 {
            return Err((
                "backup.retry_timeout_secs",
                "must be at least 1 (seconds)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The node name of a data dir's backups: its host id when it belongs to a ring, else `node`.
pub fn node_name(data_dir: &Path) -> String {
    match allidb_cluster::identity::NodeIdentity::load(data_dir) {
        Ok(Some(identity)) => identity.host_id.to_string(),
        _ => "node".to_owned(),
    }
}

/// Copies `<data_dir>/cluster/identity` (a ring node's host id and tokens) into the checkpoint
/// at `staging`, when there is one.
pub fn copy_identity(data_dir: &Path, staging: &Path) -> BackupResult<()> {
    let from = allidb_cluster::identity::NodeIdentity::path(data_dir);
    if !from.exists() {
        return Ok(());
    }
    let to = allidb_cluster::identity::NodeIdentity::path(staging);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BackupError::io(parent, e))?;
    }
    std::fs::copy(&from, &to)
        .map(|_| ())
        .map_err(|e| BackupError::io(&from, e))
}

/// One backup of `store` (whose data dir is `data_dir`) to `target`: checkpoint into a fresh
/// directory under `staging_root`, upload (with the hash cache [`HASH_CACHE_FILE`] there),
/// remove the staging copy (also on failure).
pub async fn backup_store(
    store: &Arc<UnifiedStore>,
    data_dir: &Path,
    staging_root: &Path,
    target: &ObjectTarget,
    max_bytes_per_sec: u64,
) -> BackupResult<BackupManifest> {
    let started_at_micros = now_micros();
    let backup_id = new_backup_id(std::time::SystemTime::now());
    let staging = staging_root.join(&backup_id);
    let checkpoint_store = store.clone();
    let checkpoint_dir = staging.clone();
    let outcome = async {
        let written =
            tokio::task::spawn_blocking(move || checkpoint_store.checkpoint(&checkpoint_dir))
                .await
                .map_err(|e| BackupError::Checkpoint(format!("checkpoint task failed: {e}")))?
                .map_err(|e| BackupError::Checkpoint(e.to_string()))?;
        copy_identity(data_dir, &staging)?;
        let options = CreateOptions {
            backup_id,
            node: node_name(data_dir),
            ring: false,
            covered_seq: written.engine.covered_seq,
            index_covered_seq: written.index_covered_seq,
            started_at_micros,
            max_bytes_per_sec,
            hash_cache: Some(staging_root.join(HASH_CACHE_FILE)),
        };
        upload_checkpoint(target, &staging, &options, &mut |_| {}).await
    }
    .await;
    if staging.exists()
        && let Err(error) = std::fs::remove_dir_all(&staging)
    {
        tracing::warn!(dir = %staging.display(), %error, "could not remove the backup staging copy");
    }
    outcome
}

/// Removes what a backup the daemon did not finish (a crash) left in `staging_root`: every
/// entry but the hash cache. Its blobs already uploaded stay reusable.
fn remove_leftovers(staging_root: &Path) -> BackupResult<()> {
    let entries = match std::fs::read_dir(staging_root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BackupError::io(staging_root, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io(staging_root, e))?;
        let path = entry.path();
        if entry.file_name() == HASH_CACHE_FILE {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| BackupError::io(&path, e))?;
    }
    Ok(())
}

/// The daemon's backup schedule; [`ScheduledBackups::stop`] ends it.
#[derive(Debug)]
pub struct ScheduledBackups {
    task: JoinHandle<()>,
}

impl ScheduledBackups {
    /// Starts the schedule of `config` (`None` when `interval_secs` is 0); the first backup
    /// runs one interval after the start.
    pub fn start(
        config: &BackupConfig,
        store: Arc<UnifiedStore>,
        data_dir: PathBuf,
    ) -> BackupResult<Option<Self>> {
        if config.interval_secs == 0 {
            return Ok(None);
        }
        let target = ObjectTarget::open(&config.target, &config.s3_settings(), true)?;
        let staging_root = config.staging_root(&data_dir);
        remove_leftovers(&staging_root)?;
        let interval = Duration::from_secs(config.interval_secs);
        let keep = usize::try_from(config.keep).unwrap_or(usize::MAX);
        let max_bytes_per_sec = config.max_bytes_per_sec;
        tracing::info!(
            target = target.url(),
            ?interval,
            keep,
            "scheduled backups on"
        );
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let start = Instant::now();
                let result = async {
                    let manifest =
                        backup_store(&store, &data_dir, &staging_root, &target, max_bytes_per_sec)
                            .await?;
                    if keep > 0 {
                        prune(&target, keep).await?;
                    }
                    Ok::<_, BackupError>(manifest)
                }
                .await;
                metrics::histogram!("allidb_backup_duration_seconds")
                    .record(start.elapsed().as_secs_f64());
                match result {
                    Ok(manifest) => {
                        metrics::counter!("allidb_backups_total", "outcome" => "ok").increment(1);
                        metrics::gauge!("allidb_backup_last_success_timestamp_seconds")
                            .set(manifest.finished_at_micros as f64 / 1e6);
                    }
                    Err(error) => {
                        metrics::counter!("allidb_backups_total", "outcome" => "error")
                            .increment(1);
                        tracing::error!(%error, "scheduled backup failed; the next one runs at the next interval");
                    }
                }
            }
        });
        Ok(Some(Self { task }))
    }

    /// Stops the schedule (a backup in progress is abandoned: it has no manifest yet).
    pub fn stop(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_needs_a_valid_target_and_staging_defaults_beside_the_data_dir() {
        let mut config = BackupConfig {
            interval_secs: 60,
            ..BackupConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().0, "backup.target");
        config.target = "ftp://x".into();
        assert_eq!(config.validate().unwrap_err().0, "backup.target");
        config.target = "file:///backups".into();
        config.validate().unwrap();
        config.staging_dir = "relative".into();
        assert_eq!(config.validate().unwrap_err().0, "backup.staging_dir");
        config.staging_dir = String::new();
        config.retry_timeout_secs = 0;
        assert_eq!(
            config.validate().unwrap_err().0,
            "backup.retry_timeout_secs"
        );
        config.retry_timeout_secs = 1;
        assert_eq!(
            config.s3_settings().retry_timeout,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            config.staging_root(Path::new("/var/lib/allidb")),
            PathBuf::from("/var/lib/allidb.backup-staging")
        );
        assert!(BackupConfig::default().validate().is_ok());
    }

    #[test]
    fn leftovers_of_an_unfinished_backup_go_and_the_hash_cache_stays() {
        let root = tempfile::tempdir().unwrap();
        let staging = root.path().join("data.backup-staging");
        std::fs::create_dir_all(staging.join("20250601T120000Z-0001/lsm")).unwrap();
        std::fs::write(staging.join("20250601T120000Z-0001/lsm/1.sst"), b"t").unwrap();
        std::fs::write(staging.join("stray"), b"x").unwrap();
        std::fs::write(staging.join(HASH_CACHE_FILE), b"cache").unwrap();
        remove_leftovers(&staging).unwrap();
        let left: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [HASH_CACHE_FILE]);
        remove_leftovers(&root.path().join("missing")).unwrap();
    }
}
