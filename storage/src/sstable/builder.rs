//! Writes one SSTable (format in docs/storage.md §7) from entries added in strictly
//! increasing internal-key order.
//!
//! Invariants: entries are accepted only in strictly increasing order (anything else is
//! `InvalidArgument`, and nothing is written for it); a table is complete only once `finish`
//! returned `Ok` (it syncs the data). After an error the builder must be dropped and the file
//! removed by the caller: a partial file is never a valid table (its footer is missing).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::key::partition_of;
use crate::types::{Entry, InternalKey};

use super::block::{BlockBuilder, DATA_RESTART_INTERVAL};
use super::bloom::{build_filter, filter_hash};
use super::format::{BLOCK_TRAILER_LEN, BlockHandle, Footer, block_trailer, encode_properties};
use super::{TableOptions, TableProperties};

/// Largest block the format can describe (restart offsets are `u32`).
const MAX_BLOCK_BYTES: usize = u32::MAX as usize;

/// Running statistics of the entries added so far (the properties block).
#[derive(Debug)]
struct Stats {
    smallest: InternalKey,
    largest: InternalKey,
    entries: u64,
    tombstones: u64,
    min_ts: u64,
    max_ts: u64,
    min_seq: u64,
    max_seq: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
}

impl Stats {
    fn first(entry: &Entry) -> Self {
        Self {
            smallest: entry.key.clone(),
            largest: entry.key.clone(),
            entries: 0,
            tombstones: 0,
            min_ts: entry.key.ts,
            max_ts: entry.key.ts,
            min_seq: entry.key.seq,
            max_seq: entry.key.seq,
            raw_key_bytes: 0,
            raw_value_bytes: 0,
        }
    }

    fn record(&mut self, entry: &Entry) {
        self.largest.clone_from(&entry.key);
        self.entries += 1;
        self.tombstones += u64::from(entry.value.is_none());
        self.min_ts = self.min_ts.min(entry.key.ts);
        self.max_ts = self.max_ts.max(entry.key.ts);
        self.min_seq = self.min_seq.min(entry.key.seq);
        self.max_seq = self.max_seq.max(entry.key.seq);
        self.raw_key_bytes += entry.key.user_key.len() as u64;
        self.raw_value_bytes += entry.value.as_ref().map_or(0, |v| v.len() as u64);
    }
}

/// Builds one SSTable through a [`WritableFile`] that must start empty.
#[derive(Debug)]
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    options: TableOptions,
    /// Bytes written so far (the offset of the next block).
    offset: u64,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    /// The last written data block, waiting for the next key to choose its index separator.
    pending_index_handle: Option<BlockHandle>,
    data_blocks: u64,
    /// Filter hashes of the distinct partitions (entries are sorted, so a partition's entries are
    /// contiguous and comparing with the previous partition deduplicates).
    partition_hashes: Vec<u64>,
    last_partition: Vec<u8>,
    stats: Option<Stats>,
}

impl TableBuilder {
    /// A builder writing to `file` (named `path` in errors).
    pub fn new(file: Box<dyn WritableFile>, path: PathBuf, options: TableOptions) -> Self {
        Self {
            file,
            path,
            options,
            offset: 0,
            data_block: BlockBuilder::new(DATA_RESTART_INTERVAL),
            index_block: BlockBuilder::new(1),
            pending_index_handle: None,
            data_blocks: 0,
            partition_hashes: Vec::new(),
            last_partition: Vec::new(),
            stats: None,
        }
    }

    /// Adds the next entry; its key must be strictly greater than the previous one.
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        let value_len = entry.value.as_ref().map_or(0, Vec::len);
        let entry_bound = BlockBuilder::entry_size_bound(entry.key.user_key.len(), value_len);
        if self.data_block.encoded_size().saturating_add(entry_bound) > MAX_BLOCK_BYTES {
            return Err(Error::InvalidArgument(format!(
                "entry of {value_len} value bytes does not fit an SSTable block ({}): key {:?}",
                self.path.display(),
                entry.key
            )));
        }
        if let Some(stats) = &self.stats
            && entry.key <= stats.largest
        {
            return Err(Error::InvalidArgument(format!(
                "SSTable entries must strictly increase ({}): {:?} after {:?}",
                self.path.display(),
                entry.key,
                stats.largest
            )));
        }
        if let Some(handle) = self.pending_index_handle.take() {
            // Keys strictly increase, so `stats` holds the previous block's last key.
            if let Some(stats) = &self.stats {
                let separator = shortest_separator(&stats.largest, &entry.key);
                self.add_index_entry(&separator, handle);
            }
        }
        let filter_key = partition_of(&entry.key.user_key).unwrap_or(entry.key.user_key.as_slice());
        if self.stats.is_none() || filter_key != self.last_partition.as_slice() {
            self.partition_hashes.push(filter_hash(filter_key));
            self.last_partition.clear();
            self.last_partition.extend_from_slice(filter_key);
        }
        self.data_block.add(
            &entry.key.user_key,
            entry.key.ts,
            entry.key.seq,
            entry.value.as_deref(),
        );
        self.stats
            .get_or_insert_with(|| Stats::first(entry))
            .record(entry);
        if self.data_block.encoded_size() >= self.options.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Approximate size of the file if finished now.
    pub fn estimated_size(&self) -> u64 {
        let filter_bytes = self.partition_hashes.len() * self.options.bloom_bits_per_key / 8;
        self.offset
            + (self.data_block.encoded_size()
                + self.index_block.encoded_size()
                + filter_bytes
                + 256) as u64
    }

    /// Writes the last data block, the filter, properties and index blocks and the footer, then
    /// syncs the file. A table needs at least one entry.
    pub fn finish(mut self) -> Result<TableProperties> {
        let Some(stats) = self.stats.take() else {
            return Err(Error::InvalidArgument(format!(
                "an SSTable needs at least one entry ({})",
                self.path.display()
            )));
        };
        if !self.data_block.is_empty() {
            self.flush_data_block()?;
        }
        if let Some(handle) = self.pending_index_handle.take() {
            self.add_index_entry(&stats.largest, handle);
        }
        let filter = build_filter(&self.partition_hashes, self.options.bloom_bits_per_key);
        let filter_handle = self.write_block(&filter)?;
        let mut properties = TableProperties {
            smallest: stats.smallest,
            largest: stats.largest,
            entries: stats.entries,
            tombstones: stats.tombstones,
            min_ts: stats.min_ts,
            max_ts: stats.max_ts,
            min_seq: stats.min_seq,
            max_seq: stats.max_seq,
            raw_key_bytes: stats.raw_key_bytes,
            raw_value_bytes: stats.raw_value_bytes,
            data_blocks: self.data_blocks,
            file_size: 0,
        };
        let properties_handle = self.write_block(&encode_properties(&properties))?;
        let index = self.index_block.finish();
        let index_handle = self.write_block(&index)?;
        let footer = Footer {
            filter: filter_handle,
            properties: properties_handle,
            index: index_handle,
        };
        self.append(&footer.encode())?;
        self.file.sync_data()?;
        properties.file_size = self.offset;
        Ok(properties)
    }

    fn add_index_entry(&mut self, separator: &InternalKey, handle: BlockHandle) {
        let mut value = Vec::with_capacity(20);
        handle.encode_to(&mut value);
        self.index_block.add(
            &separator.user_key,
            separator.ts,
            separator.seq,
            Some(&value),
        );
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let block = self.data_block.finish();
        let handle = self.write_block(&block)?;
        self.pending_index_handle = Some(handle);
        self.data_blocks += 1;
        Ok(())
    }

    /// Appends a block and its trailer; returns the block's handle.
    fn write_block(&mut self, block: &[u8]) -> Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size: block.len() as u64,
        };
        self.append(block)?;
        self.append(&block_trailer(block))?;
        debug_assert_eq!(
            Some(self.offset),
            handle.end_with_trailer(),
            "a block is followed by its {BLOCK_TRAILER_LEN}-byte trailer"
        );
        Ok(handle)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.append(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// A key `S` with `last <= S < next` (requires `last < next`), no longer than `last`.
///
/// When the user keys differ at byte `d` and `last[d] + 1 < next[d]`, `S` is `last[..d]` then
/// `last[d] + 1`. Otherwise the first byte of `last` after `d` below `0xff` is incremented and
/// the rest cut (`S` stays below `next`, whose byte `d` is larger). Either way `S` sorts after
/// every version of `last`'s user key when possible, so a read bounded just past that key (a
/// partition read, see `TableIter::with_upper_bound`) can tell from the index that the next
/// block holds nothing for it.
fn shortest_separator(last: &InternalKey, next: &InternalKey) -> InternalKey {
    let common = last
        .user_key
        .iter()
        .zip(&next.user_key)
        .take_while(|(a, b)| a == b)
        .count();
    let (Some(&last_byte), Some(&next_byte)) =
        (last.user_key.get(common), next.user_key.get(common))
    else {
        return last.clone();
    };
    let increment_at = if last_byte < 0xff && last_byte + 1 < next_byte {
        Some(common).filter(|&d| d + 1 < last.user_key.len())
    } else {
        (common + 1..last.user_key.len()).find(|&i| last.user_key[i] < 0xff)
    };
    match increment_at {
        Some(i) => {
            let mut user_key = last.user_key[..=i].to_vec();
            user_key[i] += 1;
            // The smallest internal key of that user key: ts and seq sort descending.
            InternalKey::new(user_key, u64::MAX, u64::MAX)
        }
        None => last.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn separator_lies_between(
            a in proptest::collection::vec(any::<u8>(), 0..8),
            b in proptest::collection::vec(any::<u8>(), 0..8),
            ts in any::<u64>(), seq in any::<u64>(), ts2 in any::<u64>(), seq2 in any::<u64>(),
        ) {
            let x = InternalKey::new(a, ts, seq);
            let y = InternalKey::new(b, ts2, seq2);
            let (last, next) = if x < y { (x, y) } else if y < x { (y, x) } else { return Ok(()) };
            let separator = shortest_separator(&last, &next);
            prop_assert!(last <= separator);
            prop_assert!(separator < next);
            prop_assert!(separator.user_key.len() <= last.user_key.len());
        }
    }

    #[test]
    fn separator_shortens_distant_keys() {
        let last = InternalKey::new(b"t\0apple\0\x01".to_vec(), 5, 5);
        let next = InternalKey::new(b"t\0cherry\0\x01".to_vec(), 5, 5);
        assert_eq!(shortest_separator(&last, &next).user_key, b"t\0b");
    }

    #[test]
    fn separator_of_adjacent_ids_ends_the_partition() {
        let last = InternalKey::new(b"t\0e010\0\x01".to_vec(), 5, 5);
        let next = InternalKey::new(b"t\0e011\0\x01".to_vec(), 5, 5);
        assert_eq!(shortest_separator(&last, &next).user_key, b"t\0e010\x01");
    }
}
