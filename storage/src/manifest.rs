//! The manifest: an append-only log of [`VersionEdit`]s (framed with the WAL's log format) that
//! says which SSTables are live, plus the `CURRENT` file naming the manifest in use.
//!
//! Protocol (see docs/storage.md "fsync protocol"):
//! * an edit is appended and `fdatasync`ed before the engine acts on it: a flush or compaction
//!   exists only once its edit is durable;
//! * at open the engine writes a fresh manifest holding one snapshot edit, syncs it, then points
//!   `CURRENT` at it by write-temp / fsync / rename / fsync-dir, then deletes the old manifest;
//! * a torn last record (a crash mid-append) is an edit that never committed and is ignored;
//!   damage before the last record refuses to open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::wal::format::{LogEnd, LogReader, LogWriter, MAGIC_LEN};

/// Magic in the manifest log's file header.
pub const MANIFEST_MAGIC: &[u8; MAGIC_LEN] = b"ALLIMAN\0";

/// Name of the pointer file.
pub const CURRENT: &str = "CURRENT";

/// One atomic change to the set of live files.
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct VersionEdit {
    /// Tables added, as `(level, file number)`.
    pub added: Vec<(u8, u64)>,
    /// Tables removed, as `(level, file number)`.
    pub removed: Vec<(u8, u64)>,
    /// WAL segments below this number are covered by tables.
    pub log_number: Option<u64>,
    /// The next table file number to allocate.
    pub next_table_number: Option<u64>,
    /// The highest sequence number ever assigned (recorded at flushes and at open).
    pub last_seq: Option<u64>,
}

/// The state a manifest replays to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Live tables, `(level, file number)`, in edit order.
    pub tables: Vec<(u8, u64)>,
    /// WAL segments below this number are covered by tables.
    pub log_number: u64,
    /// The next table file number to allocate.
    pub next_table_number: u64,
    /// The highest sequence number recorded.
    pub last_seq: u64,
}

impl ManifestState {
    fn apply(&mut self, edit: &VersionEdit) {
        self.tables.retain(|t| !edit.removed.contains(t));
        self.tables.extend(edit.added.iter().copied());
        if let Some(n) = edit.log_number {
            self.log_number = self.log_number.max(n);
        }
        if let Some(n) = edit.next_table_number {
            self.next_table_number = self.next_table_number.max(n);
        }
        if let Some(s) = edit.last_seq {
            self.last_seq = self.last_seq.max(s);
        }
    }

    /// The snapshot edit that recreates this state.
    pub fn snapshot(&self) -> VersionEdit {
        VersionEdit {
            added: self.tables.clone(),
            removed: Vec::new(),
            log_number: Some(self.log_number),
            next_table_number: Some(self.next_table_number),
            last_seq: Some(self.last_seq),
        }
    }
}

/// File name of manifest number `n`.
pub fn manifest_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

/// The manifest number named by a file name, if it is one.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-")?.parse().ok()
}

/// Reads `CURRENT` and replays the manifest it names. `Ok(None)` when there is no database.
pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<(u64, ManifestState)>> {
    let current = dir.join(CURRENT);
    if !fs.exists(&current) {
        return Ok(None);
    }
    let pointer = fs.read(&current)?;
    let name = std::str::from_utf8(&pointer)
        .ok()
        .map(str::trim)
        .filter(|n| parse_manifest_name(n).is_some())
        .ok_or_else(|| Error::corruption(&current, 0, "CURRENT does not name a manifest"))?;
    let number = parse_manifest_name(name).expect("filtered to valid manifest names above");
    let path = dir.join(name);
    let bytes = fs.read(&path)?;
    let mut state = ManifestState::default();
    let mut reader = LogReader::new(&bytes, MANIFEST_MAGIC);
    for (offset, payload) in reader.by_ref() {
        let edit: VersionEdit = codec::decode(&payload).map_err(|e| {
            Error::corruption(&path, offset, format!("undecodable version edit: {e}"))
        })?;
        state.apply(&edit);
    }
    match reader.end() {
        None | Some(LogEnd::Clean) => {}
        Some(LogEnd::TornTail {
            bad_offset, reason, ..
        }) => {
            tracing::warn!(manifest = %path.display(), offset = bad_offset, %reason,
                "ignoring a torn manifest tail (an edit that never committed)");
        }
        Some(LogEnd::Corrupt {
            bad_offset, reason, ..
        }) => {
            return Err(Error::corruption(&path, *bad_offset, reason.clone()));
        }
        Some(LogEnd::BadHeader { reason }) => {
            return Err(Error::corruption(&path, 0, reason.clone()));
        }
    }
    Ok(Some((number, state)))
}

/// An open manifest accepting edits.
///
/// After a failed commit its log may end in a partial record, after which nothing may be
/// appended (recovery would stop at it): the next commit first rolls to a new manifest holding
/// the state, each attempt under a new number, so `CURRENT` only ever names a complete file.
#[derive(Debug)]
pub struct ManifestWriter {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    log: LogWriter,
    state: ManifestState,
    /// The number the next roll tries.
    next_number: u64,
    /// A commit failed: roll before the next one.
    broken: bool,
}

impl ManifestWriter {
    /// Writes manifest `number` holding `state`, makes it durable and points `CURRENT` at it.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        number: u64,
        state: ManifestState,
    ) -> Result<Self> {
        let path = dir.join(manifest_name(number));
        let mut log = LogWriter::new(fs.create(&path)?, MANIFEST_MAGIC)?;
        log.add_record(&codec::encode(&state.snapshot())?)?;
        log.sync()?;
        fs.sync_dir(dir)?;
        let tmp = dir.join(format!("{CURRENT}.tmp"));
        let mut pointer = fs.create(&tmp)?;
        pointer.append(format!("{}\n", manifest_name(number)).as_bytes())?;
        pointer.sync_data()?;
        drop(pointer);
        fs.rename(&tmp, &dir.join(CURRENT))?;
        fs.sync_dir(dir)?;
        Ok(Self {
            fs,
            path,
            log,
            state,
            next_number: number + 1,
            broken: false,
        })
    }

    /// Appends an edit and makes it durable; only then is it part of the state. After a
    /// failure the edit is not part of the state, and the next commit rolls the manifest first.
    pub fn commit(&mut self, edit: VersionEdit) -> Result<()> {
        if self.broken {
            self.roll()?;
        }
        let payload = codec::encode(&edit)?;
        let written = self.log.add_record(&payload).and_then(|()| self.log.sync());
        if let Err(error) = written {
            self.broken = true;
            return Err(error);
        }
        self.state.apply(&edit);
        Ok(())
    }

    /// Replaces this manifest by a new one holding the same state (see the type's doc).
    fn roll(&mut self) -> Result<()> {
        let number = self.next_number;
        self.next_number += 1;
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let next = Self::create(self.fs.clone(), &dir, number, self.state.clone())?;
        let old = std::mem::replace(self, next);
        self.next_number = old.next_number.max(number + 1);
        tracing::info!(manifest = %self.path.display(), "rolled the manifest after a failed commit");
        if let Err(error) = self.fs.remove(&old.path) {
            tracing::warn!(%error, "removing the old manifest failed; the next start removes it");
        }
        Ok(())
    }

    /// The state after every committed edit.
    pub fn state(&self) -> &ManifestState {
        &self.state
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system it writes through.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::SimFileSystem;

    fn edit(number: u64) -> VersionEdit {
        VersionEdit {
            added: vec![(0, number)],
            next_table_number: Some(number + 1),
            ..VersionEdit::default()
        }
    }

    #[test]
    fn a_failed_commit_rolls_the_manifest_before_the_next_one() {
        let fs = SimFileSystem::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let state = ManifestState {
            next_table_number: 1,
            log_number: 1,
            ..ManifestState::default()
        };
        let mut writer = ManifestWriter::create(Arc::new(fs.clone()), dir, 1, state).unwrap();
        writer.commit(edit(1)).unwrap();
        fs.set_no_space_for(Some(""));
        assert!(writer.commit(edit(2)).unwrap_err().is_no_space());
        assert_eq!(
            writer.state().tables,
            vec![(0, 1)],
            "a failed edit is not applied"
        );
        fs.set_no_space_for(None);
        writer.commit(edit(3)).unwrap();
        assert_eq!(writer.path(), dir.join(manifest_name(2)));
        assert!(
            !fs.exists(&dir.join(manifest_name(1))),
            "the old manifest is removed"
        );

        fs.crash();
        let (number, loaded) = load(&fs, dir).unwrap().expect("CURRENT names a manifest");
        assert_eq!(number, 2);
        assert_eq!(loaded.tables, vec![(0, 1), (0, 3)]);
        assert_eq!(loaded.next_table_number, 4);
    }
}
