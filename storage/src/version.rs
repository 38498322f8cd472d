//! The set of live SSTables, by level: an immutable [`Version`] that readers clone cheaply
//! (an `Arc`) and the engine replaces as a whole after every committed manifest edit.
//!
//! Invariants:
//! * level 0 holds flushed tables, newest first; their key ranges may overlap;
//! * every level `n >= 1` is one sorted run: tables ordered by key range, never overlapping in
//!   user keys, and a user key lives in at most one table of the level.

use std::sync::Arc;

use crate::sstable::Table;

/// Number of levels (L0..L6).
pub const NUM_LEVELS: usize = 7;

/// An immutable snapshot of the live tables.
#[derive(Clone, Debug)]
pub struct Version {
    levels: Vec<Vec<Arc<Table>>>,
}

impl Default for Version {
    fn default() -> Self {
        Self {
            levels: vec![Vec::new(); NUM_LEVELS],
        }
    }
}

impl Version {
    /// Tables of `level` (L0 newest first, others by key range).
    pub fn level(&self, level: usize) -> &[Arc<Table>] {
        &self.levels[level]
    }

    /// Every table with its level.
    pub fn tables(&self) -> impl Iterator<Item = (usize, &Arc<Table>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t)))
    }

    /// Total file bytes of a level.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level]
            .iter()
            .map(|t| t.properties().file_size)
            .sum()
    }

    /// Highest sequence number stored in any table (0 if none).
    pub fn max_seq(&self) -> u64 {
        self.tables()
            .map(|(_, t)| t.properties().max_seq)
            .max()
            .unwrap_or(0)
    }

    /// Tables of `level` whose user-key range intersects `[smallest, largest]`.
    pub fn overlapping(&self, level: usize, smallest: &[u8], largest: &[u8]) -> Vec<Arc<Table>> {
        self.levels[level]
            .iter()
            .filter(|t| {
                let p = t.properties();
                p.smallest.user_key.as_slice() <= largest
                    && p.largest.user_key.as_slice() >= smallest
            })
            .cloned()
            .collect()
    }

    /// The version after removing and adding tables.
    pub fn apply(&self, removed: &[(usize, u64)], added: &[(usize, Arc<Table>)]) -> Version {
        let mut next = self.clone();
        for (level, number) in removed {
            next.levels[*level].retain(|t| t.file_number() != *number);
        }
        for (level, table) in added {
            next.levels[*level].push(table.clone());
        }
        // L0: newest (highest sequence numbers) first; other levels: by key range.
        next.levels[0].sort_by_key(|t| std::cmp::Reverse(t.properties().max_seq));
        for level in next.levels.iter_mut().skip(1) {
            level.sort_by(|a, b| a.properties().smallest.cmp(&b.properties().smallest));
        }
        next
    }
}
