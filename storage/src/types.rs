//! Primitive types shared by every layer of the engine: sequence numbers, timestamps and the
//! internal key that orders the versions of one cell.
//!
//! Invariant: for one user key, versions sort newest first — highest timestamp first, then
//! highest sequence number first. The timestamp (hybrid logical clock, microseconds) decides which
//! version wins; the sequence number only breaks ties between writes with equal timestamps and
//! orders the log.

use std::cmp::Ordering;

/// Local, strictly increasing number of a write (one per cell written).
pub type SeqNo = u64;

/// Hybrid-logical-clock timestamp in microseconds since the Unix epoch.
pub type Timestamp = u64;

/// A versioned key: the user key (an encoded [`crate::key::CellKey`]) plus its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InternalKey {
    /// The encoded cell key.
    pub user_key: Vec<u8>,
    /// Write timestamp of this version.
    pub ts: Timestamp,
    /// Sequence number of this version.
    pub seq: SeqNo,
}

impl InternalKey {
    /// Builds an internal key.
    pub fn new(user_key: impl Into<Vec<u8>>, ts: Timestamp, seq: SeqNo) -> Self {
        Self {
            user_key: user_key.into(),
            ts,
            seq,
        }
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(
            &self.user_key,
            self.ts,
            self.seq,
            &other.user_key,
            other.ts,
            other.seq,
        )
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The one ordering of versions: user key ascending, then timestamp descending, then sequence
/// number descending (newest version first).
pub fn compare_internal(
    a_key: &[u8],
    a_ts: Timestamp,
    a_seq: SeqNo,
    b_key: &[u8],
    b_ts: Timestamp,
    b_seq: SeqNo,
) -> Ordering {
    a_key
        .cmp(b_key)
        .then_with(|| b_ts.cmp(&a_ts))
        .then_with(|| b_seq.cmp(&a_seq))
}

/// One stored version of a cell: `None` value = tombstone (the cell is removed at `ts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The versioned key.
    pub key: InternalKey,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Durability a caller asks for one write batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge only after the batch is `fdatasync`ed (group-committed with other writers).
    #[default]
    Sync,
    /// Acknowledge after the batch is written to the OS page cache: survives a process crash,
    /// not a machine crash.
    Buffered,
    /// Acknowledge after the write to the OS; the WAL writer syncs at most this many
    /// milliseconds later: a machine crash loses at most that window.
    Periodic(u32),
}
