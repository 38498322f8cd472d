//! Online backup of the whole store: [`UnifiedStore::checkpoint`] writes a directory that
//! [`UnifiedStore::open`] (and so `allidbd --data-dir`) starts on, while the store keeps
//! serving reads and writes.
//!
//! Layout of a checkpoint (the layout of a store directory):
//!
//! ```text
//! <target>/index/   the store's current index dump (persist.rs), hard-linked, covering
//!                   `index_covered_seq`
//! <target>/lsm/     the engine checkpoint (allidb_storage::engine::checkpoint): hard-linked
//!                   SSTables, copied WAL segments, the older WAL segments kept for the indexes
//!                   (hard-linked), a fresh manifest, covering `covered_seq`
//! ```
//!
//! How, and why it is sound: a checkpoint writes no index dump of its own (that is, at 1M
//! entities, some 200 MB of CPU and I/O taken from the writes, and as many bytes for every
//! incremental backup to upload again). It takes the dump the store itself last wrote, as it
//! is, and with the engine checkpoint the WAL segments the store keeps for that dump (the WAL
//! is pinned at what the current dump covers): the checkpoint holds exactly what a restart of
//! the store would find, and opens the same way, loading the dump and catching up from the WAL
//! (every entity changed after `index_covered_seq` is re-read from the engine, which also
//! corrects anything the dump captured beyond it). Both steps hold the store's dump lock, so
//! no dump (periodic, a tenant drop's, a purge's) replaces the dump or moves the WAL pin in
//! between. A store that has no current dump yet (none written since it was created, or one
//! invalidated by a purge) gets one written into the checkpoint instead, first, as before: the
//! engine hands a batch to the indexes only after its WAL record is written to the OS, so every
//! write that dump holds is in the engine checkpoint taken after it, and `index_covered_seq
//! <= covered_seq`. Should the copied WAL not reach back to `index_covered_seq` anyway, open
//! rebuilds the indexes from the engine (logged; slower, equally correct): the engine stays the
//! source of truth either way.
//!
//! Invariants: every write acknowledged before the call is in the checkpoint (the engine
//! checkpoint's guarantee); a checkpoint never pins or releases the live store's WAL, and never
//! changes the live store's own dump in `<data dir>/index` (the files it links are never
//! written again); checkpoints run one at a time in a process.
//!
//! Must never: write into a non-empty target, into the store's own directory, or leave a
//! half-written checkpoint behind on failure (what it wrote is removed, and the error returned).

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use allidb_storage::SeqNo;
use allidb_storage::engine::CheckpointInfo;
use parking_lot::Mutex;

use super::{ENGINE_SUBDIR, INDEX_SUBDIR, UnifiedStore, persist, write_index_dump};
use crate::error::{Error, Result};

/// Serialises checkpoints: two checkpoints into the same target must not interleave.
static CHECKPOINTS: Mutex<()> = Mutex::new(());

/// What [`UnifiedStore::checkpoint`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreCheckpoint {
    /// The engine checkpoint: every write at or below `engine.covered_seq` is in it.
    pub engine: CheckpointInfo,
    /// Every write at or below this is in the checkpoint's index dump (at most
    /// `engine.covered_seq`; later writes are caught up from the copied WAL on open).
    pub index_covered_seq: SeqNo,
    /// Tenants in the index dump.
    pub index_tenants: usize,
    /// Whether the index dump is the store's own current one, linked (else: written for the
    /// checkpoint, the store having none).
    pub index_dump_linked: bool,
}

/// Whether the target existed before the checkpoint (decides what a failure removes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Created by this checkpoint: removed as a whole on failure.
    Created,
    /// An empty directory that existed: only what the checkpoint put in it is removed.
    ExistedEmpty,
}

impl UnifiedStore {
    /// Writes a checkpoint of the store into `target`, which must not exist or be an empty
    /// directory, outside the store's directory (see the module documentation).
    ///
    /// Errors: [`Error::InvalidArgument`] when `target` has a `..` component or lies inside the
    /// store's directory; [`Error::FailedPrecondition`] when it exists and is not an empty
    /// directory; I/O and engine errors otherwise (what was written is removed first).
    pub fn checkpoint(&self, target: &Path) -> Result<StoreCheckpoint> {
        let _one_at_a_time = CHECKPOINTS.lock();
        let start = Instant::now();
        let data_dir = self.index_dir.parent().unwrap_or(Path::new("."));
        let created = prepare_target(target, data_dir)?;
        match self.write_checkpoint(target) {
            Ok(checkpoint) => {
                tracing::info!(target = %target.display(), covered_seq = checkpoint.engine.covered_seq,
                    index_covered_seq = checkpoint.index_covered_seq,
                    index_dump_linked = checkpoint.index_dump_linked, elapsed = ?start.elapsed(),
                    "store checkpoint written");
                Ok(checkpoint)
            }
            Err(error) => {
                discard(target, created);
                Err(error)
            }
        }
    }

    /// The store's current index dump linked (or, without one, a dump written), then the
    /// engine checkpoint with the WAL that dump needs, under the dump lock (see the module
    /// documentation), then the target's directory entries made durable.
    fn write_checkpoint(&self, target: &Path) -> Result<StoreCheckpoint> {
        let _no_dump_meanwhile = self.indexes.dumping.lock();
        let index_target = target.join(INDEX_SUBDIR);
        let (index_covered_seq, index_tenants, index_dump_linked) =
            match persist::link_current(&self.index_dir, &index_target)? {
                Some(linked) => (linked.covered, linked.tenants, true),
                None => {
                    let (covered, tenants) = write_index_dump(&self.indexes, &index_target)?;
                    (covered, tenants, false)
                }
            };
        let engine = self
            .engine
            .checkpoint_with_wal_after(&target.join(ENGINE_SUBDIR), index_covered_seq)?;
        sync_dir(target)?;
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
        Ok(StoreCheckpoint {
            engine,
            index_covered_seq,
            index_tenants,
            index_dump_linked,
        })
    }
}

/// Checks `target` (see [`UnifiedStore::checkpoint`]) and creates it when it does not exist.
fn prepare_target(target: &Path, data_dir: &Path) -> Result<Target> {
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid(format!(
            "checkpoint target {} must not contain `..`",
            target.display()
        )));
    }
    let resolved = resolve(target)?;
    let data_dir = resolve(data_dir)?;
    if resolved.starts_with(&data_dir) {
        return Err(Error::invalid(format!(
            "checkpoint target {} is inside the data directory",
            target.display()
        )));
    }
    match fs::metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(target).map_err(|e| Error::io(target, e))?;
            if entries.next().is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "checkpoint target {} is not empty",
                    target.display()
                )));
            }
            Ok(Target::ExistedEmpty)
        }
        Ok(_) => Err(Error::FailedPrecondition(format!(
            "checkpoint target {} exists and is not a directory",
            target.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
            Ok(Target::Created)
        }
        Err(e) => Err(Error::io(target, e)),
    }
}

/// `path` made absolute, with its longest existing prefix resolved through symbolic links and
/// the missing rest appended (so a target that does not exist yet compares like one that does).
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .map_err(|e| Error::io(existing, e))?;
    resolved.extend(missing.into_iter().rev());
    Ok(resolved)
}

/// Removes what a failed checkpoint wrote into `target` (best effort; failures are logged).
fn discard(target: &Path, created: Target) {
    let leftovers = match created {
        Target::Created => vec![target.to_owned()],
        Target::ExistedEmpty => vec![target.join(INDEX_SUBDIR), target.join(ENGINE_SUBDIR)],
    };
    for path in leftovers {
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(error) => tracing::error!(path = %path.display(), %error,
                "cannot remove a failed checkpoint's files; remove them by hand"),
        }
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(path, e))
}
