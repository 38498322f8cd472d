//! Online backup of the whole store: [`UnifiedStore::checkpoint`] writes a directory that
//! [`UnifiedStore::open`] (and so `allidbd --data-dir`) starts on, while the store keeps
//! serving reads and writes.
//!
//! Layout of a checkpoint (the layout of a store directory):
//!
//! ```text
//! <target>/index/   an index dump (persist.rs), covering `index_covered_seq`
//! <target>/lsm/     the engine checkpoint (allidb_storage::engine::checkpoint): hard-linked
//!                   SSTables, copied WAL segments, a fresh manifest, covering `covered_seq`
//! ```
//!
//! Order, and why it is sound: the index dump is written **first**, the engine checkpoint
//! second. The engine hands a batch to the indexes only after its WAL record is written to the
//! OS, so every write the dump holds (including writes applied while the dump ran, beyond its
//! covered sequence number) is already in the WAL when the engine checkpoint copies it: the dump
//! never holds a write the checkpoint's engine lacks, and `index_covered_seq <= covered_seq`.
//! Opening the checkpoint loads the dump and catches up from the copied WAL: every entity
//! changed after `index_covered_seq` is re-read from the engine, which also corrects anything
//! the dump captured half-way. When the copied WAL does not reach back to `index_covered_seq`
//! (a memtable flush committed between the two steps), open rebuilds the indexes from the
//! engine instead (logged; slower, equally correct). Dumping the indexes makes the common
//! restore fast; the engine stays the source of truth either way.
//!
//! Invariants: every write acknowledged before the call is in the checkpoint (the engine
//! checkpoint's guarantee); the dump written here never pins or releases the live store's WAL
//! (the live store's own dump in `<data dir>/index` is untouched); checkpoints run one at a
//! time in a process.
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

use super::{ENGINE_SUBDIR, INDEX_SUBDIR, UnifiedStore, write_index_dump};
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
                    index_covered_seq = checkpoint.index_covered_seq, elapsed = ?start.elapsed(),
                    "store checkpoint written");
                Ok(checkpoint)
            }
            Err(error) => {
                discard(target, created);
                Err(error)
            }
        }
    }

    /// The index dump, then the engine checkpoint (in that order, see the module
    /// documentation), then the target's directory entries made durable.
    fn write_checkpoint(&self, target: &Path) -> Result<StoreCheckpoint> {
        let (index_covered_seq, index_tenants) =
            write_index_dump(&self.indexes, &target.join(INDEX_SUBDIR))?;
        let engine = self.engine.checkpoint(&target.join(ENGINE_SUBDIR))?;
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
