//! `allidb backup create | list | verify | delete | restore` and `allidb cluster backup`:
//! backups of a node (or of every node of a ring) in an S3-compatible bucket or a directory
//! (docs/backup.md), over the library in [`crate::backup`].
//!
//! `create` asks the daemon for a checkpoint (the `Checkpoint` RPC, admin key) into a staging
//! directory on its host, uploads it and removes it: run it on the node's host (or with a
//! `--staging` path both see). `--checkpoint DIR` uploads an existing checkpoint instead, with
//! no daemon. `restore` is offline: it needs only the store and an empty directory.
//!
//! Invariants: credentials come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`) and are never printed; a staging directory this command created is
//! removed whether the upload succeeded or not. Must never: restore into a non-empty directory.

use std::path::{Path, PathBuf};

use allidb_api::pb;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::Context;
use super::connect::{ConnectOptions, connect};
use super::error::{CliError, CliResult, Outcome};
use super::output::{human_bytes, timestamp};
use crate::backup::catalog::{self, BackupSummary};
use crate::backup::manifest::{self, RingManifest};
use crate::backup::restore::{find_manifest, restore};
use crate::backup::schedule::{copy_identity, node_name};
use crate::backup::target::DEFAULT_RETRY_TIMEOUT;
use crate::backup::{
    BackupManifest, CreateOptions, DEFAULT_MAX_BYTES_PER_SEC, ObjectTarget, Progress, S3Settings,
    new_backup_id, now_micros, upload_checkpoint,
};

/// `allidb backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: BackupAction,
}

/// Where backups are and how to reach them.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// `s3://bucket[/prefix]` or `file:///absolute/dir`.
    #[arg(long = "target", visible_aliases = ["to", "from"], value_name = "URL")]
    pub target: String,
    /// S3-compatible endpoint (path-style requests), e.g. `http://127.0.0.1:9000`.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// How long each request to an S3 server is retried (exponential backoff, at most 10
    /// times) after a network failure or a server error before the command fails, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RETRY_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_timeout_secs: u64,
}

impl TargetArgs {
    /// Opens the target and checks that it answers (credentials, bucket).
    async fn open(&self, create_dir: bool) -> CliResult<ObjectTarget> {
        let settings = S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            retry_timeout: Some(std::time::Duration::from_secs(self.retry_timeout_secs)),
            ..S3Settings::default()
        };
        let target = ObjectTarget::open(&self.target, &settings, create_dir)?;
        target.probe().await?;
        Ok(target)
    }
}

/// The actions of `allidb backup`.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Back up the daemon at --addr (or a checkpoint directory); only files not already in
    /// the target are uploaded.
    Create(CreateArgs),
    /// Every backup in the target: id, time, nodes, size, complete or not.
    List {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Re-read every object a backup needs and check its checksum; names each missing or
    /// damaged one.
    Verify {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// Only this backup (default: all).
        #[arg(long)]
        backup: Option<String>,
    },
    /// Delete all but the newest N complete backups, and every object only they needed.
    Delete {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// Complete backups to keep (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
    },
    /// Restore a backup into an empty data directory (offline), checking every file.
    Restore {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// The backup id (`allidb backup list`).
        #[arg(long)]
        backup: String,
        /// The node (host id) of a ring backup.
        #[arg(long)]
        node: Option<String>,
        /// The data directory to create (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// `allidb backup create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Upload this existing checkpoint directory (`allidb checkpoint`) instead of asking the
    /// daemon for one.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Absolute directory on the daemon's host for its checkpoint (default: a new directory
    /// under the system temporary directory); removed after the upload.
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// The node's data directory, read only for `cluster/identity` (a ring node's host id and
    /// tokens, so a restore rejoins as the same node).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The backup id (default: the current UTC time, e.g. `20250601T120000Z-1a2b`).
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Upload bandwidth cap, bytes per second (0: none; the default, 16 MiB/s, keeps the
    /// daemon's writes going while a backup runs on its host).
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES_PER_SEC)]
    pub max_bytes_per_sec: u64,
    /// The hash cache: the SHA-256 of files an earlier backup hashed, so they are not read
    /// again (default: `$XDG_CACHE_HOME/allidb/backup-hashes`, else
    /// `~/.cache/allidb/backup-hashes`).
    #[arg(long, value_name = "FILE")]
    pub hash_cache: Option<PathBuf>,
    /// Hash every file, with no hash cache.
    #[arg(long, conflicts_with = "hash_cache")]
    pub no_hash_cache: bool,
}

/// `allidb cluster backup`.
#[derive(Debug, Args)]
pub struct ClusterBackupArgs {
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Absolute directory for the nodes' checkpoints, visible to this command and every node
    /// (default: a new directory under the system temporary directory).
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// The backup id (default: the current UTC time).
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Upload bandwidth cap, bytes per second (0: none; the default, 16 MiB/s, keeps the
    /// daemon's writes going while a backup runs on its host).
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES_PER_SEC)]
    pub max_bytes_per_sec: u64,
    /// The hash cache: the SHA-256 of files an earlier backup hashed, so they are not read
    /// again (default: `$XDG_CACHE_HOME/allidb/backup-hashes`, else
    /// `~/.cache/allidb/backup-hashes`).
    #[arg(long, value_name = "FILE")]
    pub hash_cache: Option<PathBuf>,
    /// Hash every file, with no hash cache.
    #[arg(long, conflicts_with = "hash_cache")]
    pub no_hash_cache: bool,
}

/// Runs `allidb backup ...`.
pub async fn run(context: &mut Context, args: BackupArgs) -> CliResult<Outcome> {
    match args.action {
        BackupAction::Create(args) => create(context, args).await,
        BackupAction::List { target } => {
            let target = target.open(false).await?;
            let backups = catalog::list_backups(&target).await?;
            let value: Vec<Value> = backups.iter().map(summary_json).collect();
            context.printer.reply(&value, |_| list_text(&backups))?;
            Ok(Outcome::Complete)
        }
        BackupAction::Verify { target, backup } => {
            let target = target.open(false).await?;
            let report = catalog::verify(&target, backup.as_deref()).await?;
            let value = json!({
                "backups": report.backups,
                "objects": report.objects,
                "bytes": report.bytes,
                "problems": report.problems,
            });
            context.printer.reply(&value, |_| {
                let mut text = format!(
                    "verified {} backups: {} objects, {} re-read\n",
                    report.backups,
                    report.objects,
                    human_bytes(report.bytes)
                );
                for problem in &report.problems {
                    text.push_str(&format!("PROBLEM {problem}\n"));
                }
                if report.problems.is_empty() {
                    text.push_str("every object matches its checksum\n");
                }
                text
            })?;
            Ok(Outcome::from_complete(report.problems.is_empty()))
        }
        BackupAction::Delete { target, keep } => {
            let target = target.open(false).await?;
            let report =
                catalog::prune(&target, usize::try_from(keep).unwrap_or(usize::MAX)).await?;
            let value = json!({
                "kept": report.kept,
                "deleted": report.deleted,
                "blobs_deleted": report.blobs_deleted,
                "bytes_freed": report.bytes_freed,
            });
            context.printer.reply(&value, |_| {
                format!(
                    "kept {} backups, deleted {} ({}); {} objects removed, {} freed\n",
                    report.kept.len(),
                    report.deleted.len(),
                    report.deleted.join(", "),
                    report.blobs_deleted,
                    human_bytes(report.bytes_freed)
                )
            })?;
            Ok(Outcome::Complete)
        }
        BackupAction::Restore {
            target,
            backup,
            node,
            data_dir,
        } => {
            let target = target.open(false).await?;
            let manifest = find_manifest(&target, &backup, node.as_deref()).await?;
            let report = restore(&target, &manifest, &data_dir).await?;
            let value = json!({
                "backup_id": manifest.backup_id,
                "node": manifest.node,
                "data_dir": data_dir,
                "files": report.files,
                "bytes": report.bytes,
                "covered_seq": manifest.covered_seq,
            });
            context.printer.reply(&value, |_| {
                format!(
                    "restored backup {} (node {}) into {}: {} files, {}, every file checked\n\
                     covers every write up to sequence {}\nstart: allidbd --data-dir {}\n",
                    manifest.backup_id,
                    manifest.node,
                    data_dir.display(),
                    report.files,
                    human_bytes(report.bytes),
                    manifest.covered_seq,
                    data_dir.display()
                )
            })?;
            Ok(Outcome::Complete)
        }
    }
}

/// The hash cache file of `allidb backup create` and `allidb cluster backup`: `given`, else
/// `$XDG_CACHE_HOME/allidb/backup-hashes`, else `$HOME/.cache/allidb/backup-hashes`; `None`
/// with `--no-hash-cache` or when neither variable is set.
fn hash_cache_file(given: Option<&Path>, off: bool) -> Option<PathBuf> {
    if off {
        return None;
    }
    if let Some(file) = given {
        return Some(file.to_owned());
    }
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let root = set("XDG_CACHE_HOME").or_else(|| set("HOME").map(|home| home.join(".cache")))?;
    Some(root.join("allidb").join("backup-hashes"))
}

/// A staging directory for backup `backup_id`, node `node`: absolute, new. The default one is
/// in the temporary directory, named after the backup id and this process (its id and start
/// time), so a run killed before it removed its staging directory never blocks a later run.
fn staging_for(given: Option<&Path>, backup_id: &str, node: &str) -> CliResult<PathBuf> {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{started:x}", std::process::id())
    });
    let root = match given {
        Some(dir) => dir.to_owned(),
        None => std::env::temp_dir().join(format!("allidb-backup-{backup_id}-{run}")),
    };
    let root = std::path::absolute(&root).map_err(|e| CliError::io(&root, e))?;
    Ok(root.join(node))
}

/// Asks the daemon at `connect_options` for a checkpoint into `dir`.
async fn remote_checkpoint(
    connect_options: &ConnectOptions,
    dir: &Path,
) -> CliResult<pb::CheckpointResponse> {
    let mut client = connect(connect_options).await?;
    Ok(client
        .checkpoint(pb::CheckpointRequest {
            target_dir: dir.display().to_string(),
        })
        .await
        .map_err(|status| CliError::rpc("Checkpoint", status))?
        .into_inner())
}

/// Uploads the checkpoint in `dir`, with a progress bar on a terminal; the manifest written
/// and the upload's last progress.
async fn upload_with_progress(
    target: &ObjectTarget,
    dir: &Path,
    options: &CreateOptions,
) -> CliResult<(BackupManifest, Progress)> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("node {}", options.node));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut last = Progress::default();
    let mut on_progress = |p: &Progress| {
        bar.set_length(p.bytes_to_upload);
        bar.set_position(p.bytes_uploaded);
        last = *p;
    };
    let uploaded = upload_checkpoint(target, dir, options, &mut on_progress).await;
    bar.finish_and_clear();
    Ok((uploaded?, last))
}

/// Removes a staging directory this command created (a failure is only reported).
fn remove_staging(dir: &Path) {
    if dir.exists()
        && let Err(error) = std::fs::remove_dir_all(dir)
    {
        eprintln!(
            "warning: could not remove the staging directory {}: {error}",
            dir.display()
        );
    }
}

/// `allidb backup create`.
async fn create(context: &mut Context, args: CreateArgs) -> CliResult<Outcome> {
    let target = args.target.open(true).await?;
    let started_at_micros = now_micros();
    let backup_id = args
        .backup_id
        .clone()
        .unwrap_or_else(|| new_backup_id(std::time::SystemTime::now()));
    check_backup_id(&backup_id)?;
    let node = args
        .data_dir
        .as_deref()
        .map(node_name)
        .unwrap_or_else(|| "node".to_owned());
    let mut options = CreateOptions {
        backup_id,
        node,
        ring: false,
        started_at_micros,
        max_bytes_per_sec: args.max_bytes_per_sec,
        hash_cache: hash_cache_file(args.hash_cache.as_deref(), args.no_hash_cache),
        ..CreateOptions::default()
    };
    let (manifest, progress) = match &args.checkpoint {
        Some(dir) => upload_with_progress(&target, dir, &options).await?,
        None => {
            let staging = staging_for(args.staging.as_deref(), &options.backup_id, &options.node)?;
            let outcome = async {
                let written = remote_checkpoint(&context.connect, &staging).await?;
                options.covered_seq = written.covered_seq;
                options.index_covered_seq = written.index_covered_seq;
                if let Some(data_dir) = &args.data_dir {
                    copy_identity(data_dir, &staging)?;
                }
                upload_with_progress(&target, &staging, &options).await
            }
            .await;
            remove_staging(&staging);
            if args.staging.is_none()
                && let Some(root) = staging.parent()
            {
                remove_staging(root);
            }
            outcome?
        }
    };
    let mut reply = manifest_json(&manifest);
    reply["hash_cache_hits"] = json!(progress.hash_cache_hits);
    reply["hashed_bytes"] = json!(progress.hashed_bytes);
    context
        .printer
        .reply(&reply, |_| created_text(&target, &manifest, &progress))?;
    Ok(Outcome::Complete)
}

/// Refuses an id that is not a plain name (it becomes part of object keys).
fn check_backup_id(id: &str) -> CliResult<()> {
    let plain = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !id.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(CliError::input(
            "--backup-id",
            format!("{id:?}: use letters, digits, `-`, `_` and `.` only"),
        ))
    }
}

/// `allidb cluster backup`: every node of the ring `admin` belongs to, under one backup id.
pub async fn cluster_backup(
    context: &mut Context,
    admin: &str,
    args: ClusterBackupArgs,
) -> CliResult<Outcome> {
    let target = args.target.open(true).await?;
    let consistency_point_micros = now_micros();
    let backup_id = args
        .backup_id
        .clone()
        .unwrap_or_else(|| new_backup_id(std::time::SystemTime::now()));
    check_backup_id(&backup_id)?;
    let status = super::cluster::admin_get(admin, "/cluster/status").await?;
    let ring = super::cluster::admin_get(admin, "/cluster/ring").await?;
    let cluster_name = status["cluster_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    if nodes.is_empty() {
        return Err(CliError::input(
            format!("--admin {admin}"),
            "/cluster/status lists no node",
        ));
    }
    let mut manifests = Vec::new();
    for node in &nodes {
        let host_id = node["host_id"].as_str().unwrap_or_default().to_owned();
        let rpc_addr = node["rpc_addr"].as_str().ok_or_else(|| {
            CliError::input(
                format!("--admin {admin}"),
                format!("node {host_id} has no gRPC address in /cluster/status"),
            )
        })?;
        let identity = node_identity(&ring, &host_id, &cluster_name)?;
        let staging = staging_for(args.staging.as_deref(), &backup_id, &host_id)?;
        let mut connect_options = context.connect.clone();
        connect_options.addr = rpc_addr.to_owned();
        let options = CreateOptions {
            backup_id: backup_id.clone(),
            node: host_id.clone(),
            ring: true,
            started_at_micros: now_micros(),
            max_bytes_per_sec: args.max_bytes_per_sec,
            hash_cache: hash_cache_file(args.hash_cache.as_deref(), args.no_hash_cache),
            ..CreateOptions::default()
        };
        let outcome = async {
            let written = remote_checkpoint(&connect_options, &staging).await?;
            identity
                .store(&staging)
                .map_err(|e| CliError::input(staging.display().to_string(), e.to_string()))?;
            let options = CreateOptions {
                covered_seq: written.covered_seq,
                index_covered_seq: written.index_covered_seq,
                ..options
            };
            upload_with_progress(&target, &staging, &options).await
        }
        .await;
        remove_staging(&staging);
        manifests.push(outcome?.0);
    }
    if args.staging.is_none()
        && let Some(root) = staging_for(None, &backup_id, "x")?.parent()
    {
        remove_staging(root);
    }
    let ring_manifest = RingManifest {
        backup_id: backup_id.clone(),
        cluster_name,
        consistency_point_micros,
        nodes: manifests.iter().map(|m| m.node.clone()).collect(),
    };
    target
        .write(
            &manifest::ring_manifest_key(&backup_id),
            manifest::encode_ring(&ring_manifest),
        )
        .await?;
    let value = json!({
        "backup_id": backup_id,
        "consistency_point_micros": consistency_point_micros,
        "nodes": manifests.iter().map(manifest_json).collect::<Vec<_>>(),
    });
    context.printer.reply(&value, |_| {
        let mut text = format!(
            "ring backup {backup_id} of {} nodes in {} (consistency point {})\n",
            manifests.len(),
            target.url(),
            timestamp(micros_to_nanos(consistency_point_micros))
        );
        for m in &manifests {
            text.push_str(&format!(
                "  node {}: {} files, {} uploaded ({} files), {} reused\n",
                m.node,
                m.files.len(),
                human_bytes(m.uploaded_bytes),
                m.uploaded_files,
                m.reused_files
            ));
        }
        text
    })?;
    Ok(Outcome::Complete)
}

/// The identity of `host_id` from a `/cluster/ring` reply: its tokens are the ends of the
/// ranges it owns.
fn node_identity(
    ring: &Value,
    host_id: &str,
    cluster_name: &str,
) -> CliResult<allidb_cluster::identity::NodeIdentity> {
    let bad = |reason: String| CliError::input("/cluster/ring", reason);
    let mut tokens = Vec::new();
    for range in ring["ranges"].as_array().into_iter().flatten() {
        if range["host_id"].as_str() == Some(host_id) {
            let end = range["end"].as_str().unwrap_or_default();
            tokens.push(
                end.parse::<u64>()
                    .map_err(|_| bad(format!("token {end:?} is not a number")))?,
            );
        }
    }
    tokens.sort_unstable();
    Ok(allidb_cluster::identity::NodeIdentity {
        host_id: host_id
            .parse()
            .map_err(|_| bad(format!("host id {host_id:?} does not parse")))?,
        cluster_name: cluster_name.to_owned(),
        tokens,
    })
}

fn micros_to_nanos(micros: u64) -> i64 {
    i64::try_from(micros)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

fn manifest_json(m: &BackupManifest) -> Value {
    json!({
        "backup_id": m.backup_id,
        "node": m.node,
        "files": m.files.len(),
        "total_bytes": m.total_bytes(),
        "uploaded_files": m.uploaded_files,
        "uploaded_bytes": m.uploaded_bytes,
        "reused_files": m.reused_files,
        "covered_seq": m.covered_seq,
        "index_covered_seq": m.index_covered_seq,
    })
}

fn created_text(target: &ObjectTarget, m: &BackupManifest, progress: &Progress) -> String {
    format!(
        "backup {} (node {}) written to {}\n  {} files, {}: {} uploaded ({}), {} already in the \
         store; {} hashed, {} files' hashes from the hash cache\n  covers every write up to \
         sequence {}\nrestore: allidb backup restore --from {} --backup {} --data-dir DIR\n",
        m.backup_id,
        m.node,
        target.url(),
        m.files.len(),
        human_bytes(m.total_bytes()),
        m.uploaded_files,
        human_bytes(m.uploaded_bytes),
        m.reused_files,
        human_bytes(progress.hashed_bytes),
        progress.hash_cache_hits,
        m.covered_seq,
        target.url(),
        m.backup_id
    )
}

fn summary_json(b: &BackupSummary) -> Value {
    json!({
        "backup_id": b.backup_id,
        "complete": b.complete,
        "started_at_micros": b.started_at_micros(),
        "nodes": b.nodes.iter().map(|n| n.node.clone()).collect::<Vec<_>>(),
        "ring": b.ring.is_some(),
        "total_bytes": b.total_bytes(),
        "problems": b.problems,
    })
}

fn list_text(backups: &[BackupSummary]) -> String {
    let mut text = format!(
        "{:<24} {:<30} {:>5} {:>10} {}\n",
        "backup", "started", "nodes", "bytes", "state"
    );
    for b in backups {
        let state = if b.complete {
            "complete".to_owned()
        } else if b.problems.is_empty() {
            "INCOMPLETE".to_owned()
        } else {
            format!("DAMAGED: {}", b.problems.join("; "))
        };
        text.push_str(&format!(
            "{:<24} {:<30} {:>5} {:>10} {state}\n",
            b.backup_id,
            timestamp(micros_to_nanos(b.started_at_micros())),
            b.nodes.len(),
            human_bytes(b.total_bytes()),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn commands_parse_and_targets_take_to_or_from() {
        let cli = Cli::try_parse_from([
            "allidb",
            "backup",
            "restore",
            "--from",
            "s3://b/p",
            "--backup",
            "x",
            "--data-dir",
            "/d",
        ])
        .unwrap();
        let Command::Backup(BackupArgs {
            action: BackupAction::Restore { target, backup, .. },
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((target.target.as_str(), backup.as_str()), ("s3://b/p", "x"));
        assert!(Cli::try_parse_from(["allidb", "backup", "create", "--to", "file:///b"]).is_ok());
        assert!(
            Cli::try_parse_from([
                "allidb",
                "backup",
                "delete",
                "--from",
                "file:///b",
                "--keep",
                "0"
            ])
            .is_err(),
            "--keep 0 would delete every backup"
        );
        assert!(check_backup_id("../x").is_err());
        assert!(check_backup_id("20250601T120000Z-00ab").is_ok());
    }

    #[test]
    fn a_node_identity_is_rebuilt_from_the_ring() {
        let ring = json!({"ranges": [
            {"start": "5", "end": "10", "host_id": "00000000000000000000000000000001"},
            {"start": "10", "end": "20", "host_id": "00000000000000000000000000000002"},
            {"start": "20", "end": "5", "host_id": "00000000000000000000000000000001"},
        ]});
        let host = "00000000000000000000000000000001";
        let identity = node_identity(&ring, host, "c").unwrap();
        assert_eq!(identity.tokens, vec![5, 10]);
        assert_eq!(identity.cluster_name, "c");
    }
}
