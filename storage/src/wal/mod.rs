//! The write-ahead log (DESIGN.md §3 "WAL" and "Recovery").
//!
//! What it owns: the segment files `{number:06}.wal` of one directory. Each segment is a log in
//! the block format of [`format`] whose file header carries [`WAL_MAGIC`]; each record is one
//! [`WriteBatch`] encoded with its base sequence number ([`WriteBatch::encode`]).
//!
//! Invariants:
//! * sequence numbers strictly increase through the records of all segments, in segment order;
//! * a segment is only ever appended to by the one [`GroupCommitWriter`] thread while it is the
//!   current segment; once the writer moves on it is synced and never written again;
//! * a batch is acknowledged only after its record is in the log (and synced when asked).
//!
//! Must never: acknowledge a write that may not be durable, skip a damaged record silently
//! (recovery either truncates a torn tail, reporting it, or refuses with `Error::Corruption`), or
//! replay a batch twice or out of order.
//!
//! Submodules: [`format`] (block framing, shared with the manifest), `recovery` (replay at open,
//! reading segments for followers), `writer` (group commit).

pub mod format;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use recovery::{read_segment, recover};
pub use writer::{CommitSink, GroupCommitWriter, MAX_BATCH_BYTES, WAL_WRITE};

use crate::batch::WriteBatch;
use crate::error::Result;
use crate::fs::FileSystem;
use crate::types::SeqNo;

/// Magic in the file header of every WAL segment.
pub const WAL_MAGIC: &[u8; format::MAGIC_LEN] = b"ALLIWAL\0";

const SEGMENT_SUFFIX: &str = ".wal";

/// Path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}{SEGMENT_SUFFIX}"))
}

/// Numbers of the segments in `dir`, ascending. Names that are not exactly what
/// [`segment_path`] produces are ignored.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u64>> {
    let mut numbers: Vec<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    (format!("{number:06}") == digits).then_some(number)
}

/// What recovery does with a damaged log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Truncate a torn or corrupt tail of the last segment; refuse any other damage.
    #[default]
    TolerateTornTail,
    /// Stop at the first damage anywhere, truncate there and delete every later segment: the
    /// database comes back as of that point (an operator's explicit choice).
    PointInTime,
}

/// The log suffix recovery dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was truncated.
    pub segment: u64,
    /// The length it was truncated to (end of its last good record).
    pub offset: u64,
    /// Bytes dropped: the segment's suffix plus, in point-in-time mode, every later segment.
    pub dropped_bytes: u64,
    /// What was wrong at the damaged spot (and its offset).
    pub reason: String,
}

/// One segment replayed by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment number.
    pub number: u64,
    /// Highest sequence number of any op replayed from it (`None` if it held no batch).
    pub max_seq: Option<SeqNo>,
    /// Its length in bytes after recovery (a truncated torn tail excluded).
    pub bytes: u64,
}

/// What [`recover`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Highest sequence number replayed (`None` if no batch was).
    pub last_seq: Option<SeqNo>,
    /// The dropped suffix, if recovery truncated the log.
    pub torn_tail: Option<TornTail>,
    /// The segments replayed, ascending.
    pub segments: Vec<SegmentInfo>,
    /// Number of batches replayed.
    pub records: u64,
}

/// Highest sequence number of a batch starting at `base_seq` (batches are never empty).
fn last_seq_of(base_seq: SeqNo, batch: &WriteBatch) -> SeqNo {
    base_seq.saturating_add(batch.len().saturating_sub(1) as u64)
}

#[cfg(test)]
mod naming_tests {
    use super::*;
    use crate::fs::sim::SimFileSystem;

    #[test]
    fn segment_names_round_trip_and_strangers_are_ignored() {
        let fs = SimFileSystem::new();
        let dir = Path::new("/wal");
        fs.create_dir_all(dir).unwrap();
        for number in [3, 1, 1_234_567] {
            fs.create(&segment_path(dir, number)).unwrap();
        }
        for stranger in [
            "1.wal",
            "000002.log",
            "00000x.wal",
            "000004.wal.tmp",
            "CURRENT",
        ] {
            fs.create(&dir.join(stranger)).unwrap();
        }
        assert_eq!(
            segment_path(dir, 7),
            PathBuf::from("/wal/000007.wal"),
            "six digits, zero padded"
        );
        assert_eq!(list_segments(&fs, dir).unwrap(), vec![1, 3, 1_234_567]);
    }
}
