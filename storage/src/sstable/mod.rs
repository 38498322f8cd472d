//! SSTables: immutable sorted files of versioned entries (DESIGN.md §3; the byte format is
//! specified in docs/storage.md §7).
//!
//! * [`TableBuilder`] writes a table from entries in strictly increasing [`InternalKey`] order;
//! * [`Table`] opens one (memory-mapped through [`crate::fs::FileSystem::open_read`]), verifying
//!   its footer, index, filter and properties once; [`TableIter`] reads it in order or from a
//!   seek position;
//! * [`BlockCache`] holds verified, parsed data blocks shared by all tables, bounded in bytes.
//!
//! Invariants: every block carries a CRC-32 checked on every read; damaged or malformed bytes are
//! `Error::Corruption` with the file and offset, never wrong data and never a panic. The bloom
//! filter is keyed by entity partition (`key::partition_of`) and has no false negatives. This
//! module never modifies a finished table.

mod block;
mod bloom;
mod builder;
mod cache;
mod format;
mod table;

#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub use block::decode_block;
pub use builder::TableBuilder;
pub use cache::BlockCache;
pub use table::{Table, TableIter};

use crate::types::InternalKey;

/// How tables are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Target data block size in bytes: a block is cut once it reaches this size.
    pub block_size: usize,
    /// Bloom filter bits per distinct partition (0 disables the filter).
    pub bloom_bits_per_key: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            block_size: 4096,
            bloom_bits_per_key: 10,
        }
    }
}

/// What a table holds (its properties block, plus the file size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProperties {
    /// The first entry's key.
    pub smallest: InternalKey,
    /// The last entry's key.
    pub largest: InternalKey,
    /// Number of entries.
    pub entries: u64,
    /// Number of tombstones among them.
    pub tombstones: u64,
    /// Smallest timestamp of any entry.
    pub min_ts: u64,
    /// Largest timestamp of any entry.
    pub max_ts: u64,
    /// Smallest sequence number of any entry.
    pub min_seq: u64,
    /// Largest sequence number of any entry.
    pub max_seq: u64,
    /// User key bytes before prefix compression.
    pub raw_key_bytes: u64,
    /// Value bytes.
    pub raw_value_bytes: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Size of the whole file in bytes.
    pub file_size: u64,
}
