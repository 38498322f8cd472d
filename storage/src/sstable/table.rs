//! An open, immutable SSTable and its iterator.
//!
//! At open the footer, filter, properties and index blocks are verified and parsed once; data
//! blocks are read on demand, verified (trailer checksum, then a bounds-checked parse) and shared
//! through the [`BlockCache`].
//!
//! Invariants: every byte handed out came from a block whose checksum passed and whose parse
//! succeeded; any damage is `Error::Corruption` naming the file and the block's offset; nothing
//! here panics on malformed input. A `Table` never writes its file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, ReadableFile};
use crate::types::{Entry, InternalKey, compare_internal};

use super::TableProperties;
use super::block::{Block, BlockCursor};
use super::bloom::{BloomFilter, filter_hash};
use super::cache::BlockCache;
use super::format::{
    BlockHandle, FOOTER_LEN, Footer, Malformed, Parsed, decode_properties, verified_block,
};

/// One data block as described by the index.
#[derive(Debug)]
struct IndexEntry {
    /// `last key of this block <= separator < first key of the next block`.
    separator: InternalKey,
    handle: BlockHandle,
}

/// An open SSTable; share it as `Arc<Table>`.
pub struct Table {
    path: PathBuf,
    file_number: u64,
    file: Arc<dyn ReadableFile>,
    cache: Arc<BlockCache>,
    index: Vec<IndexEntry>,
    filter: BloomFilter,
    properties: TableProperties,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.path)
            .field("file_number", &self.file_number)
            .field("index_entries", &self.index.len())
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens and verifies the table at `path` (footer, filter, properties, index).
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        file_number: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Table> {
        let file = fs.open_read(path)?;
        let bytes = file.bytes();
        let file_len = bytes.len() as u64;
        let corrupt = |offset: u64| move |m: Malformed| Error::corruption(path, offset, m.0);

        let footer_start = bytes.len().checked_sub(FOOTER_LEN).ok_or_else(|| {
            Error::corruption(
                path,
                0,
                format!("{file_len}-byte file is shorter than the {FOOTER_LEN}-byte footer"),
            )
        })?;
        let footer = Footer::decode(&bytes[footer_start..], file_len)
            .map_err(corrupt(footer_start as u64))?;

        let read =
            |handle: BlockHandle| verified_block(bytes, handle).map_err(corrupt(handle.offset));
        let filter =
            BloomFilter::decode(read(footer.filter)?).map_err(corrupt(footer.filter.offset))?;
        let properties = decode_properties(read(footer.properties)?, file_len)
            .map_err(corrupt(footer.properties.offset))?;
        let index = parse_index(read(footer.index)?, footer.filter.offset, &properties)
            .map_err(corrupt(footer.index.offset))?;

        Ok(Table {
            path: path.to_owned(),
            file_number,
            file,
            cache,
            index,
            filter,
            properties,
        })
    }

    /// The table's properties.
    pub fn properties(&self) -> &TableProperties {
        &self.properties
    }

    /// The file number this table was opened with (its block cache namespace).
    pub fn file_number(&self) -> u64 {
        self.file_number
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False only if the table holds no cell of the entity with this partition prefix
    /// (`tenant 0x00 entity_id 0x00`, see `key::partition_of`).
    pub fn may_contain_partition(&self, partition: &[u8]) -> bool {
        self.filter.may_contain_hash(filter_hash(partition))
    }

    /// Memory held by the parsed index and filter (not counting cached blocks).
    pub fn memory_size(&self) -> usize {
        self.filter.memory_size()
            + self
                .index
                .iter()
                .map(|e| e.separator.user_key.len() + std::mem::size_of::<IndexEntry>())
                .sum::<usize>()
    }

    /// An iterator positioned before the first entry.
    pub fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            cursor: None,
            next_block: 0,
            seek_target: None,
            finished: false,
            upper_bound: None,
        }
    }

    /// The verified, parsed data block `index`, from the cache or the file.
    fn data_block(&self, index: usize) -> Result<Arc<Block>> {
        let handle = self.index[index].handle;
        if let Some(block) = self.cache.get(self.file_number, handle.offset) {
            return Ok(block);
        }
        let corrupt = |m: Malformed| Error::corruption(&self.path, handle.offset, m.0);
        let bytes = verified_block(self.file.bytes(), handle).map_err(corrupt)?;
        let block = Arc::new(Block::parse(bytes.into()).map_err(corrupt)?);
        self.cache
            .insert(self.file_number, handle.offset, Arc::clone(&block));
        Ok(block)
    }

    fn corruption_in_block(&self, index: usize, malformed: Malformed) -> Error {
        Error::corruption(&self.path, self.index[index].handle.offset, malformed.0)
    }
}

/// Parses the index block and checks it against the layout: the handles tile
/// `[0, data_end)` in order, separators strictly increase, one entry per data block.
fn parse_index(
    block: &[u8],
    data_end: u64,
    properties: &TableProperties,
) -> Parsed<Vec<IndexEntry>> {
    let block = Arc::new(Block::parse(block.into())?);
    let mut cursor = BlockCursor::new(block);
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut expected_offset = 0u64;
    while cursor.advance()? {
        let handle = BlockHandle::decode(cursor.value().ok_or("index entry without handle")?)?;
        if handle.offset != expected_offset {
            return Err(Malformed(format!(
                "index entry {} names offset {}, expected {expected_offset}",
                entries.len(),
                handle.offset
            )));
        }
        expected_offset = handle
            .end_with_trailer()
            .ok_or("index block handle overflows")?;
        entries.push(IndexEntry {
            separator: cursor.internal_key(),
            handle,
        });
    }
    if expected_offset != data_end {
        return Err(Malformed(format!(
            "data blocks end at {expected_offset}, the filter starts at {data_end}"
        )));
    }
    if entries.len() as u64 != properties.data_blocks {
        return Err(Malformed(format!(
            "index has {} entries, properties say {} data blocks",
            entries.len(),
            properties.data_blocks
        )));
    }
    Ok(entries)
}

/// A forward iterator over a table's entries, owning an `Arc<Table>`.
///
/// Starts before the first entry; [`TableIter::seek`] repositions it. After an error, `next`
/// returns `None` until the next `seek`.
#[derive(Debug)]
pub struct TableIter {
    table: Arc<Table>,
    cursor: Option<BlockCursor>,
    /// The data block to load when the cursor is exhausted.
    next_block: usize,
    /// Set by `seek`: applied to the next block loaded.
    seek_target: Option<Vec<u8>>,
    finished: bool,
    /// Exclusive user-key bound: iteration ends before the first entry at or past it, without
    /// loading a block the index shows to lie wholly past it.
    upper_bound: Option<Vec<u8>>,
}

impl TableIter {
    /// Ends iteration before the first entry whose user key is `>= end` (`None`: unbounded).
    /// A point read bounded by its partition's end neither copies the next partition's entry
    /// nor reads the following block when its partition ends a block.
    pub fn with_upper_bound(mut self, end: Option<Vec<u8>>) -> Self {
        self.upper_bound = end;
        self
    }

    /// True if every entry of data block `index` lies at or past the upper bound: its keys are
    /// greater than the previous block's index separator.
    fn block_past_upper_bound(&self, index: usize) -> bool {
        let Some(bound) = self.upper_bound.as_deref() else {
            return false;
        };
        index > 0 && self.table.index[index - 1].separator.user_key.as_slice() >= bound
    }

    /// Positions the iterator so that `next` yields the first entry with user key `>= user_key`.
    pub fn seek(&mut self, user_key: &[u8]) {
        // The first block whose separator is >= the smallest internal key of `user_key`:
        // every earlier block ends before `user_key`.
        let block = self.table.index.partition_point(|entry| {
            compare_internal(
                &entry.separator.user_key,
                entry.separator.ts,
                entry.separator.seq,
                user_key,
                u64::MAX,
                u64::MAX,
            )
            .is_lt()
        });
        let reusable = self
            .cursor
            .take()
            .filter(|_| self.next_block == block + 1 && !self.finished)
            .map(|cursor| Arc::clone(cursor.block()));
        self.cursor = reusable.map(BlockCursor::new);
        self.next_block = if self.cursor.is_some() {
            block + 1
        } else {
            block
        };
        self.seek_target = Some(user_key.to_vec());
        self.finished = false;
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(cursor) = &mut self.cursor {
                let current_block = self.next_block - 1;
                let positioned = match self.seek_target.take() {
                    Some(target) => cursor.seek(&target),
                    None => cursor.advance(),
                }
                .map_err(|m| self.table.corruption_in_block(current_block, m))?;
                if positioned {
                    let past_bound = self
                        .upper_bound
                        .as_deref()
                        .is_some_and(|bound| cursor.user_key() >= bound);
                    return Ok((!past_bound).then(|| cursor.entry()));
                }
            }
            if self.next_block >= self.table.index.len()
                || self.block_past_upper_bound(self.next_block)
            {
                return Ok(None);
            }
            let block = self.table.data_block(self.next_block)?;
            self.cursor = Some(BlockCursor::new(block));
            self.next_block += 1;
        }
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    /// The next entry, or the error that ended iteration.
    fn next(&mut self) -> Option<Result<Entry>> {
        if self.finished {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                self.cursor = None;
                Some(Err(error))
            }
        }
    }
}
