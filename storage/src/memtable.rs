//! The memtable: a concurrent skiplist of versioned cells (`crossbeam-skiplist`), bounded in
//! bytes by the engine, which rotates it to immutable when full and flushes it in the background.
//!
//! Invariants:
//! * entries are never modified or removed; a memtable only grows until it is flushed and dropped;
//! * it holds every version written to it (readers pick by snapshot sequence number);
//! * `first_segment` is the WAL segment that holds its oldest entry: once the memtable is in an
//!   SSTable, WAL segments before the next memtable's `first_segment` are no longer needed.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;

use crate::types::{Entry, InternalKey, SeqNo};

/// Fixed per-entry overhead counted against the byte bound (skiplist node, key fields).
const ENTRY_OVERHEAD: usize = 64;

/// A concurrent, append-only sorted map of cell versions.
#[derive(Debug)]
pub struct Memtable {
    map: SkipMap<InternalKey, Option<Vec<u8>>>,
    bytes: AtomicUsize,
    max_seq: AtomicU64,
    first_segment: u64,
}

impl Memtable {
    /// An empty memtable whose entries will be logged in WAL segment `first_segment` onwards.
    pub fn new(first_segment: u64) -> Self {
        Self {
            map: SkipMap::new(),
            bytes: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            first_segment,
        }
    }

    /// Inserts one version.
    pub fn insert(&self, entry: Entry) {
        let size =
            entry.key.user_key.len() + entry.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        self.max_seq.fetch_max(entry.key.seq, Ordering::Relaxed);
        self.map.insert(entry.key, entry.value);
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Approximate bytes held.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of versions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Highest sequence number inserted (0 when empty).
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq.load(Ordering::Relaxed)
    }

    /// The WAL segment holding this memtable's oldest entry.
    pub fn first_segment(&self) -> u64 {
        self.first_segment
    }

    /// The first entry strictly after / at-or-after `bound`, if any.
    fn next_after(&self, bound: &Bound<InternalKey>) -> Option<Entry> {
        let found = match bound {
            Bound::Unbounded => self.map.front(),
            Bound::Included(key) => self.map.lower_bound(Bound::Included(key)),
            Bound::Excluded(key) => self.map.lower_bound(Bound::Excluded(key)),
        }?;
        Some(Entry {
            key: found.key().clone(),
            value: found.value().clone(),
        })
    }
}

/// A cursor over a memtable that owns its `Arc`, so it can outlive the engine lock it was
/// created under. Each step is one skiplist search: cheap, and safe against concurrent inserts.
#[derive(Debug)]
pub struct MemtableIter {
    mem: Arc<Memtable>,
    position: Bound<InternalKey>,
}

impl MemtableIter {
    /// A cursor before the first entry.
    pub fn new(mem: Arc<Memtable>) -> Self {
        Self {
            mem,
            position: Bound::Unbounded,
        }
    }

    /// Positions before the first version of the first user key `>= user_key`.
    pub fn seek(&mut self, user_key: &[u8]) {
        self.position = Bound::Included(InternalKey::new(user_key, u64::MAX, u64::MAX));
    }

    /// The next entry in internal-key order.
    pub fn next_entry(&mut self) -> Option<Entry> {
        let entry = self.mem.next_after(&self.position)?;
        self.position = Bound::Excluded(entry.key.clone());
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, ts: u64, seq: u64) -> Entry {
        Entry {
            key: InternalKey::new(key.as_bytes(), ts, seq),
            value: Some(vec![seq as u8]),
        }
    }

    #[test]
    fn iterates_newest_version_first_and_seeks() {
        let mem = Arc::new(Memtable::new(1));
        mem.insert(entry("b", 5, 1));
        mem.insert(entry("a", 1, 2));
        mem.insert(entry("b", 9, 3));
        mem.insert(entry("b", 9, 4));
        let mut it = MemtableIter::new(mem.clone());
        let got: Vec<_> = std::iter::from_fn(|| it.next_entry())
            .map(|e| (e.key.user_key, e.key.ts, e.key.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 1, 2),
                (b"b".to_vec(), 9, 4),
                (b"b".to_vec(), 9, 3),
                (b"b".to_vec(), 5, 1)
            ]
        );
        it.seek(b"b");
        assert_eq!(it.next_entry().unwrap().key.seq, 4);
        it.seek(b"c");
        assert!(it.next_entry().is_none());
        assert_eq!(mem.max_seq(), 4);
        assert!(mem.approximate_bytes() >= 4 * ENTRY_OVERHEAD);
    }
}
