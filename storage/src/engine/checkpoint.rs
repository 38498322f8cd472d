//! Online checkpoints: a consistent copy of the database in another directory, taken while the
//! engine keeps serving writes (the backup primitive; see docs/operations.md "Backup and
//! restore").
//!
//! What it owns: [`Engine::checkpoint`] and the files it creates under the destination.
//!
//! How: under the manifest mutex (which every flush and compaction holds to commit, and which
//! they must hold again before a table or a WAL segment its state refers to can become obsolete),
//! every table of the manifest state is hard-linked into the destination (copied when linking
//! fails, e.g. across devices), a fresh manifest holding that state plus `CURRENT` is written, and
//! the WAL segments at or above the state's `log_number` are copied byte for byte, and the tenant
//! drops are written to the destination's `TENANT_DROPS`. Opening the
//! destination then replays those segments on top of the tables like any restart.
//! [`Engine::checkpoint_with_wal_after`] also hard-links the older segments the WAL pin retains
//! that hold writes after a given sequence number (already in tables, kept for
//! [`Engine::changes_since`]): the destination, opened with
//! [`super::Options::retain_wal_until_pinned`], keeps them for the same follower, as a restart
//! of the source would (an index dump covering that sequence number catches up from them).
//!
//! Invariants:
//! * every write acknowledged before the call is in the checkpoint: it is either in a table the
//!   manifest state lists or in a WAL segment `>= log_number` (acknowledged writes are in the OS
//!   page cache, which the copy reads); a later write may be there too, as a whole batch or not
//!   at all (a copy of the live segment cut mid-record is a torn tail that the destination's
//!   recovery truncates, and only the last copied segment can be cut: the writer creates segment
//!   `n + 1` only after it has finished and synced segment `n`);
//! * only immutable files are linked (tables, and retained segments below `log_number`, which
//!   the writer finished before the flush that covers them); the segments at or above
//!   `log_number` (the live one among them) are always copied, never linked, so later appends
//!   (or a recovery truncation in the destination) cannot reach the other side;
//! * a retained segment is linked only while the pin keeps it: the caller holds the pin at or
//!   below the sequence number it asks for (a segment it needs never goes meanwhile; one
//!   deleted anyway fails the checkpoint, never silently shortens its WAL);
//! * the destination is durable (files synced, directory and its parent synced) before `Ok`.
//!
//! Must never: write into the source directory, overwrite an existing destination, or let a
//! table or segment it still needs be deleted while it works (flush and compaction commits wait
//! for it; writers do not, unless memtables fill up meanwhile).

use std::path::Path;

use super::{Engine, table_path};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::manifest::ManifestWriter;
use crate::types::SeqNo;
use crate::wal;

/// The manifest number a checkpoint's fresh manifest gets (the destination is a new database;
/// the next open replaces it with number 2).
const CHECKPOINT_MANIFEST_NUMBER: u64 = 1;

/// What [`Engine::checkpoint`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Every write with a sequence number at or below this was acknowledged before the
    /// checkpoint began and is in it.
    pub covered_seq: SeqNo,
    /// SSTables hard-linked into the destination.
    pub tables_linked: usize,
    /// SSTables copied because hard-linking failed.
    pub tables_copied: usize,
    /// Total size of the tables (linked or copied).
    pub table_bytes: u64,
    /// WAL segments copied (those at or above `log_number`).
    pub wal_segments: usize,
    /// Total bytes of WAL copied.
    pub wal_bytes: u64,
    /// Retained WAL segments below `log_number` hard-linked (or copied when linking failed)
    /// for a follower's catch-up ([`Engine::checkpoint_with_wal_after`]).
    pub retained_wal_segments: usize,
    /// Total bytes of those retained segments.
    pub retained_wal_bytes: u64,
    /// WAL segments below this number are covered by the checkpoint's tables.
    pub log_number: u64,
    /// Tenant drops written to the destination's `TENANT_DROPS`.
    pub tenant_drops: usize,
}

impl Engine {
    /// Writes a consistent, openable copy of the database to `dest`, which must not exist,
    /// while writes continue. See the module documentation for what it contains.
    ///
    /// Errors: [`Error::InvalidArgument`] if `dest` exists, [`Error::Unavailable`] if the engine
    /// is closed or failed, and any I/O error (the partial destination is then left for the
    /// caller to remove: it has no `CURRENT` unless the manifest was fully written).
    pub fn checkpoint(&self, dest: &Path) -> Result<CheckpointInfo> {
        self.write_checkpoint(dest, None)
    }

    /// [`Engine::checkpoint`], plus the retained WAL segments below the state's `log_number`
    /// that hold writes after `after` (see the module documentation), so that the destination's
    /// [`Engine::changes_since`]`(after)` answers as the source's does. The caller keeps the
    /// WAL pin at or below `after` until this returns.
    ///
    /// Errors: those of [`Engine::checkpoint`].
    pub fn checkpoint_with_wal_after(&self, dest: &Path, after: SeqNo) -> Result<CheckpointInfo> {
        self.write_checkpoint(dest, Some(after))
    }

    fn write_checkpoint(&self, dest: &Path, wal_after: Option<SeqNo>) -> Result<CheckpointInfo> {
        let inner = &self.inner;
        inner.check_open()?;
        let fs = inner.fs.as_ref();
        if fs.exists(dest) {
            return Err(Error::InvalidArgument(format!(
                "checkpoint destination {} already exists",
                dest.display()
            )));
        }
        // Read before anything is copied: every write acknowledged so far is at or below it.
        let covered_seq = self.last_seq();
        fs.create_dir_all(dest)?;

        let manifest = inner.manifest.lock();
        let state = manifest.state().clone();
        let mut info = CheckpointInfo {
            covered_seq,
            log_number: state.log_number,
            ..CheckpointInfo::default()
        };
        for &(_, number) in &state.tables {
            let from = table_path(&inner.dir, number);
            let to = table_path(dest, number);
            let table = fs.open_read(&from)?;
            match fs.hard_link(&from, &to) {
                Ok(()) => info.tables_linked += 1,
                Err(error) => {
                    tracing::debug!(table = %from.display(), %error,
                        "hard link failed; copying the table instead");
                    copy_bytes(fs, table.bytes(), &to)?;
                    info.tables_copied += 1;
                }
            }
            info.table_bytes += table.bytes().len() as u64;
        }
        if let Some(after) = wal_after {
            let retained: Vec<u64> = inner
                .wal_segments
                .lock()
                .iter()
                .filter(|(n, s)| **n < state.log_number && s.max_seq.is_some_and(|m| m > after))
                .map(|(n, _)| *n)
                .collect();
            for number in retained {
                let from = wal::segment_path(&inner.dir, number);
                let to = wal::segment_path(dest, number);
                let segment = fs.open_read(&from)?;
                if let Err(error) = fs.hard_link(&from, &to) {
                    tracing::debug!(segment = %from.display(), %error,
                        "hard link failed; copying the WAL segment instead");
                    copy_bytes(fs, segment.bytes(), &to)?;
                }
                info.retained_wal_segments += 1;
                info.retained_wal_bytes += segment.bytes().len() as u64;
            }
        }
        let segments: Vec<u64> = wal::list_segments(fs, &inner.dir)?
            .into_iter()
            .filter(|&number| number >= state.log_number)
            .collect();
        for number in segments {
            let bytes = fs.read(&wal::segment_path(&inner.dir, number))?;
            copy_bytes(fs, &bytes, &wal::segment_path(dest, number))?;
            info.wal_segments += 1;
            info.wal_bytes += bytes.len() as u64;
        }
        // Tenant drops: without them a restored copy would show a dropped tenant's cells again
        // (those still in tables). Taken under the drop writers' lock: a drop acknowledged
        // before the checkpoint is in the file written here.
        {
            let _drops = inner.drops_file.lock();
            let drops = inner.state.read().drops.clone();
            if !drops.is_empty() {
                drops.store(fs, dest)?;
                info.tenant_drops = drops.len();
            }
        }
        // Creating the manifest syncs `dest` (after the links and copies) and publishes CURRENT.
        ManifestWriter::create(inner.fs.clone(), dest, CHECKPOINT_MANIFEST_NUMBER, state)?;
        drop(manifest);

        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs.sync_dir(parent)?;
        tracing::info!(dest = %dest.display(), ?info, "checkpoint written");
        Ok(info)
    }
}

/// Writes `bytes` as a new file `to` and syncs it.
fn copy_bytes(fs: &dyn FileSystem, bytes: &[u8], to: &Path) -> Result<()> {
    let mut file = fs.create(to)?;
    file.append(bytes)?;
    file.sync_data()
}
