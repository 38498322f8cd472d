//! Merged iteration over every place a version can live: memtables, L0 tables (which overlap),
//! and the sorted runs of levels 1.. (whose tables do not overlap).
//!
//! Invariant: [`MergeIter`] yields entries in strict internal-key order (user key ascending,
//! newest version first); an entry present in two sources (identical key, timestamp and sequence
//! number) is yielded once. After an error it yields nothing more.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::Result;
use crate::memtable::MemtableIter;
use crate::sstable::{Table, TableIter};
use crate::types::Entry;

/// One sorted input of a merge.
#[derive(Debug)]
pub enum Source {
    /// A memtable.
    Mem(MemtableIter),
    /// One SSTable.
    Table(TableIter),
    /// A level's non-overlapping tables, ordered by key range.
    Level(LevelIter),
}

impl Source {
    fn seek(&mut self, user_key: &[u8]) {
        match self {
            Source::Mem(it) => it.seek(user_key),
            Source::Table(it) => it.seek(user_key),
            Source::Level(it) => it.seek(user_key),
        }
    }

    fn next_entry(&mut self) -> Option<Result<Entry>> {
        match self {
            Source::Mem(it) => it.next_entry().map(Ok),
            Source::Table(it) => it.next(),
            Source::Level(it) => it.next_entry(),
        }
    }
}

/// Concatenated iteration over the non-overlapping tables of one level, opening each table's
/// iterator only when the cursor reaches it.
#[derive(Debug)]
pub struct LevelIter {
    tables: Vec<Arc<Table>>,
    index: usize,
    current: Option<TableIter>,
}

impl LevelIter {
    /// `tables` must be sorted by key range and must not overlap.
    pub fn new(tables: Vec<Arc<Table>>) -> Self {
        Self {
            tables,
            index: 0,
            current: None,
        }
    }

    fn seek(&mut self, user_key: &[u8]) {
        self.index = self
            .tables
            .partition_point(|t| t.properties().largest.user_key.as_slice() < user_key);
        self.current = self.tables.get(self.index).map(|t| {
            let mut it = t.iter();
            it.seek(user_key);
            it
        });
    }

    fn next_entry(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.current.is_none() {
                let table = self.tables.get(self.index)?;
                self.current = Some(table.iter());
            }
            let it = self.current.as_mut().expect("current was set just above");
            match it.next() {
                Some(item) => return Some(item),
                None => {
                    self.current = None;
                    self.index += 1;
                }
            }
        }
    }
}

#[derive(Debug)]
struct HeapItem {
    entry: Entry,
    source: usize,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    // BinaryHeap is a max-heap: reverse so the smallest key (then the lowest source) pops first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .entry
            .key
            .cmp(&self.entry.key)
            .then_with(|| other.source.cmp(&self.source))
    }
}

/// A k-way merge of [`Source`]s.
#[derive(Debug)]
pub struct MergeIter {
    sources: Vec<Source>,
    heap: BinaryHeap<HeapItem>,
    primed: bool,
    failed: bool,
    last: Option<crate::types::InternalKey>,
}

impl MergeIter {
    /// Merges `sources`, newest first (only matters for reporting duplicates once).
    pub fn new(sources: Vec<Source>) -> Self {
        Self {
            sources,
            heap: BinaryHeap::new(),
            primed: false,
            failed: false,
            last: None,
        }
    }

    /// Positions every source at the first version of the first user key `>= user_key`.
    pub fn seek(&mut self, user_key: &[u8]) {
        for source in &mut self.sources {
            source.seek(user_key);
        }
        self.heap.clear();
        self.primed = false;
        self.last = None;
    }

    fn pull(&mut self, source: usize) -> Result<()> {
        if let Some(item) = self.sources[source].next_entry() {
            self.heap.push(HeapItem {
                entry: item?,
                source,
            });
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        if !self.primed {
            self.primed = true;
            for source in 0..self.sources.len() {
                self.pull(source)?;
            }
        }
        while let Some(HeapItem { entry, source }) = self.heap.pop() {
            self.pull(source)?;
            if self.last.as_ref() == Some(&entry.key) {
                continue;
            }
            self.last = Some(entry.key.clone());
            return Ok(Some(entry));
        }
        Ok(None)
    }
}

impl Iterator for MergeIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
