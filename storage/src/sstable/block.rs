//! Prefix-compressed blocks with restart points (data blocks and the index block): the builder,
//! the parsed block and a cursor over it (format in docs/storage.md §7).
//!
//! Invariants: a built block holds at least one entry, its keys strictly increase, and the entry
//! at every restart point stores its full user key. The cursor bounds-checks every read and
//! checks the key order while decoding, so a malformed block (even one whose checksum passes) is
//! a [`Malformed`] error, never a panic and never out-of-order entries.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use crate::types::{Entry, InternalKey, SeqNo, Timestamp, compare_internal};

use super::format::{ByteReader, Malformed, Parsed, put_varint};

/// Entries between restart points in data blocks.
pub(crate) const DATA_RESTART_INTERVAL: usize = 16;

const KIND_TOMBSTONE: u8 = 0;
const KIND_VALUE: u8 = 1;

/// Accumulates entries into one block's bytes.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buffer: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    entries_since_restart: usize,
    last_user_key: Vec<u8>,
}

impl BlockBuilder {
    pub(crate) fn new(restart_interval: usize) -> Self {
        Self {
            buffer: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            entries_since_restart: 0,
            last_user_key: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// Bytes the block would have if finished now.
    pub(crate) fn encoded_size(&self) -> usize {
        self.buffer.len() + 4 * self.restarts.len() + 4
    }

    /// Bytes `add` would append for an entry (upper bound: the key is counted whole).
    pub(crate) fn entry_size_bound(user_key_len: usize, value_len: usize) -> usize {
        3 * 10 + user_key_len + 8 + 8 + 1 + value_len + 4
    }

    /// Appends an entry; the caller guarantees keys strictly increase and that the block stays
    /// below 4 GiB (restart offsets are `u32`).
    pub(crate) fn add(&mut self, user_key: &[u8], ts: Timestamp, seq: SeqNo, value: Option<&[u8]>) {
        let shared =
            if self.restarts.is_empty() || self.entries_since_restart == self.restart_interval {
                // Offsets fit: the caller keeps blocks below u32::MAX bytes.
                self.restarts.push(self.buffer.len() as u32);
                self.entries_since_restart = 0;
                0
            } else {
                common_prefix_len(&self.last_user_key, user_key)
            };
        let value_bytes = value.unwrap_or_default();
        put_varint(&mut self.buffer, shared as u64);
        put_varint(&mut self.buffer, (user_key.len() - shared) as u64);
        put_varint(&mut self.buffer, value_bytes.len() as u64);
        self.buffer.extend_from_slice(&user_key[shared..]);
        self.buffer.extend_from_slice(&ts.to_le_bytes());
        self.buffer.extend_from_slice(&seq.to_le_bytes());
        self.buffer.push(if value.is_some() {
            KIND_VALUE
        } else {
            KIND_TOMBSTONE
        });
        self.buffer.extend_from_slice(value_bytes);
        self.last_user_key.clear();
        self.last_user_key.extend_from_slice(user_key);
        self.entries_since_restart += 1;
    }

    /// Appends the restart array and returns the block bytes; the builder is then reset.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut block = std::mem::take(&mut self.buffer);
        for restart in &self.restarts {
            block.extend_from_slice(&restart.to_le_bytes());
        }
        block.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.entries_since_restart = 0;
        self.last_user_key.clear();
        block
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A checksum-verified block with its restart array parsed and validated.
#[derive(Debug)]
pub(crate) struct Block {
    data: Box<[u8]>,
    /// Where the restart array starts = end of the entries.
    entries_end: usize,
    restarts: Box<[u32]>,
}

impl Block {
    /// Parses the restart array of a block: at least one restart, the first at 0, all strictly
    /// increasing and inside the entry region.
    pub(crate) fn parse(data: Box<[u8]>) -> Parsed<Block> {
        let count_start = data
            .len()
            .checked_sub(4)
            .ok_or("block shorter than its restart count")?;
        let count = ByteReader::new(&data[count_start..]).u32()? as usize;
        let entries_end = count
            .checked_mul(4)
            .and_then(|array_len| count_start.checked_sub(array_len))
            .ok_or_else(|| Malformed(format!("restart count {count} exceeds the block")))?;
        if count == 0 || entries_end == 0 {
            return Err("block without entries".into());
        }
        let mut reader = ByteReader::new(&data[entries_end..count_start]);
        let mut restarts = Vec::with_capacity(count);
        for i in 0..count {
            let restart = reader.u32()?;
            let in_order = match restarts.last() {
                None => restart == 0,
                Some(previous) => restart > *previous,
            };
            if !in_order || restart as usize >= entries_end {
                return Err(Malformed(format!(
                    "restart {i} at {restart} is out of place"
                )));
            }
            restarts.push(restart);
        }
        Ok(Block {
            data,
            entries_end,
            restarts: restarts.into_boxed_slice(),
        })
    }

    /// Memory the block occupies (for the cache's weigher).
    pub(crate) fn memory_size(&self) -> usize {
        self.data.len() + 4 * self.restarts.len() + std::mem::size_of::<Self>()
    }

    /// The full user key of the entry at restart point `index` (which must store no shared bytes).
    fn restart_key(&self, index: usize) -> Parsed<&[u8]> {
        let offset = self.restarts[index] as usize;
        let mut reader = ByteReader::new(&self.data[offset..self.entries_end]);
        let shared = reader.varint()?;
        if shared != 0 {
            return Err(Malformed(format!(
                "entry at restart {index} shares {shared} key bytes"
            )));
        }
        let unshared = reader.varint_len()?;
        reader.varint()?;
        reader.bytes(unshared)
    }
}

/// A position inside one block. Starts before the first entry.
#[derive(Debug)]
pub(crate) struct BlockCursor {
    block: Arc<Block>,
    /// Offset of the entry after the current one.
    next_offset: usize,
    /// The current entry (valid when `positioned`).
    user_key: Vec<u8>,
    ts: Timestamp,
    seq: SeqNo,
    value: Option<Range<usize>>,
    positioned: bool,
}

impl BlockCursor {
    pub(crate) fn new(block: Arc<Block>) -> Self {
        Self {
            block,
            next_offset: 0,
            user_key: Vec::new(),
            ts: 0,
            seq: 0,
            value: None,
            positioned: false,
        }
    }

    pub(crate) fn block(&self) -> &Arc<Block> {
        &self.block
    }

    /// Decodes the next entry; `Ok(false)` past the last one.
    pub(crate) fn advance(&mut self) -> Parsed<bool> {
        let data = &self.block.data;
        if self.next_offset >= self.block.entries_end {
            self.positioned = false;
            return Ok(false);
        }
        let entry_offset = self.next_offset;
        let at = |reason: Malformed| Malformed(format!("entry at {entry_offset}: {}", reason.0));
        let mut reader = ByteReader::new(&data[entry_offset..self.block.entries_end]);
        let shared = reader.varint_len().map_err(at)?;
        let unshared = reader.varint_len().map_err(at)?;
        let value_len = reader.varint_len().map_err(at)?;
        let previous_len = if self.positioned {
            self.user_key.len()
        } else {
            0
        };
        if shared > previous_len {
            return Err(at(Malformed(format!(
                "shares {shared} bytes of a {previous_len}-byte key"
            ))));
        }
        let delta = reader.bytes(unshared).map_err(at)?;
        let ts = reader.u64().map_err(at)?;
        let seq = reader.u64().map_err(at)?;
        let kind = reader.u8().map_err(at)?;
        let value_start = entry_offset + reader.position();
        reader.bytes(value_len).map_err(at)?;
        let value = match kind {
            KIND_VALUE => Some(value_start..value_start + value_len),
            KIND_TOMBSTONE if value_len == 0 => None,
            KIND_TOMBSTONE => return Err(at("tombstone with a value".into())),
            other => return Err(at(Malformed(format!("unknown entry kind {other}")))),
        };
        if self.positioned {
            let order = delta
                .cmp(&self.user_key[shared..])
                .then_with(|| compare_internal(b"", ts, seq, b"", self.ts, self.seq));
            if order != Ordering::Greater {
                return Err(at("keys out of order".into()));
            }
        }
        self.user_key.truncate(shared);
        self.user_key.extend_from_slice(delta);
        self.ts = ts;
        self.seq = seq;
        self.value = value;
        self.next_offset = entry_offset + reader.position();
        self.positioned = true;
        Ok(true)
    }

    /// Positions on the first entry whose user key is `>= target`; `Ok(false)` if there is none
    /// in this block.
    pub(crate) fn seek(&mut self, target: &[u8]) -> Parsed<bool> {
        // The last restart point whose key is < target (or the first restart point).
        let (mut left, mut right) = (0, self.block.restarts.len() - 1);
        while left < right {
            let middle = (left + right).div_ceil(2);
            if self.block.restart_key(middle)? < target {
                left = middle;
            } else {
                right = middle - 1;
            }
        }
        self.next_offset = self.block.restarts[left] as usize;
        self.positioned = false;
        while self.advance()? {
            if self.user_key.as_slice() >= target {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The current user key (only meaningful after `advance`/`seek` returned true).
    pub(crate) fn user_key(&self) -> &[u8] {
        &self.user_key
    }

    /// The current entry's internal key.
    pub(crate) fn internal_key(&self) -> InternalKey {
        InternalKey {
            user_key: self.user_key.clone(),
            ts: self.ts,
            seq: self.seq,
        }
    }

    /// The current value bytes (`None` for a tombstone).
    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.value.clone().map(|range| &self.block.data[range])
    }

    /// The current entry, copied out.
    pub(crate) fn entry(&self) -> Entry {
        Entry {
            key: self.internal_key(),
            value: self.value().map(<[u8]>::to_vec),
        }
    }
}

/// Parses `data` as one block's contents (trailer stripped) and decodes every entry in order,
/// then positions a fresh cursor with `seek(seek_target)`: the block parser's entry point for
/// fuzzing (fuzz/fuzz_targets/sstable_block_reader.rs). Returns the entries and the entry the
/// seek landed on. Malformed bytes are [`crate::Error::Corruption`] (path `<block>`), never a
/// panic.
#[cfg(feature = "fuzzing")]
pub fn decode_block(data: &[u8], seek_target: &[u8]) -> crate::Result<(Vec<Entry>, Option<Entry>)> {
    let corrupt = |m: Malformed| crate::Error::corruption("<block>", 0, m.0);
    let block = Arc::new(Block::parse(data.into()).map_err(corrupt)?);
    let mut cursor = BlockCursor::new(block.clone());
    let mut entries = Vec::new();
    while cursor.advance().map_err(corrupt)? {
        entries.push(cursor.entry());
    }
    let mut seeker = BlockCursor::new(block);
    let found = seeker.seek(seek_target).map_err(corrupt)?;
    Ok((entries, found.then(|| seeker.entry())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(keys: &[Vec<u8>], interval: usize) -> Arc<Block> {
        let mut builder = BlockBuilder::new(interval);
        for (i, key) in keys.iter().enumerate() {
            let value = (i % 3 != 0).then_some(key.as_slice());
            builder.add(key, 7, i as u64, value);
        }
        Arc::new(Block::parse(builder.finish().into_boxed_slice()).unwrap())
    }

    fn sorted_keys() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::btree_set(proptest::collection::vec(0u8..4, 0..12), 1..80)
            .prop_map(|set| set.into_iter().collect())
    }

    proptest! {
        #[test]
        fn block_round_trips_and_seeks(keys in sorted_keys(), interval in 1usize..20, target in proptest::collection::vec(0u8..4, 0..12)) {
            let block = build(&keys, interval);
            let mut cursor = BlockCursor::new(block.clone());
            let mut decoded = Vec::new();
            while cursor.advance().unwrap() {
                decoded.push(cursor.user_key().to_vec());
                let i = decoded.len() - 1;
                prop_assert_eq!(cursor.value().is_some(), i % 3 != 0);
            }
            prop_assert_eq!(&decoded, &keys);
            let mut cursor = BlockCursor::new(block);
            let expected = keys.iter().find(|k| k.as_slice() >= target.as_slice());
            let found = cursor.seek(&target).unwrap();
            prop_assert_eq!(found, expected.is_some());
            if let Some(expected) = expected {
                prop_assert_eq!(cursor.user_key(), expected.as_slice());
            }
        }

        #[test]
        fn mutated_blocks_never_panic(keys in sorted_keys(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), target in proptest::collection::vec(0u8..4, 0..12)) {
            let mut builder = BlockBuilder::new(4);
            for key in &keys {
                builder.add(key, 1, 1, Some(b"v"));
            }
            let mut bytes = builder.finish();
            for (position, value) in flips {
                let index = position % bytes.len();
                bytes[index] = value;
            }
            if let Ok(block) = Block::parse(bytes.into_boxed_slice()) {
                let block = Arc::new(block);
                let mut cursor = BlockCursor::new(block.clone());
                while let Ok(true) = cursor.advance() {}
                let _ = BlockCursor::new(block).seek(&target);
            }
        }
    }

    #[test]
    fn out_of_order_entries_are_malformed() {
        let mut builder = BlockBuilder::new(16);
        builder.add(b"b", 1, 1, None);
        builder.add(b"a", 1, 1, None);
        let block = Arc::new(Block::parse(builder.finish().into_boxed_slice()).unwrap());
        let mut cursor = BlockCursor::new(block);
        assert!(cursor.advance().unwrap());
        assert!(cursor.advance().is_err());
    }
}
