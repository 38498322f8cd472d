//! Leveled compaction (DESIGN.md §3; the choice is argued in docs/storage.md): which tables to
//! merge next, and the rule for what a merge keeps.
//!
//! Picking: L0 -> L1 once L0 holds `l0_compaction_trigger` tables (all of L0 plus the L1 tables
//! they overlap); otherwise the level furthest over its byte target (`level1_bytes *
//! level_multiplier^(n-1)`) gives one table, chosen round-robin through its key space, merged with
//! the tables it overlaps one level down.
//!
//! Keeping ([`CompactionFilter`]), over entries in internal-key order:
//! * only the newest version (highest timestamp) of each cell survives;
//! * a cell its entity marker hides is dropped (the marker stays): the body and out-edges at or
//!   below the marker's timestamp, in-edges at or below the marker's in-edge bound
//!   ([`crate::cell::MarkerValue`]);
//! * a cell a tenant drop covers ([`crate::tenant_drops`]) is dropped, whatever the level;
//! * tombstones and markers are dropped only when the output is the bottommost level for the key
//!   range and they are older than `gc_grace` — never earlier, or a delete could come back.
//!
//! A job whose single input overlaps nothing below and holds no tombstone is a *trivial move*:
//! the table changes level by a manifest edit alone, without being rewritten.

use std::sync::Arc;

use crate::cell::{MarkerShadow, Shadowed};
use crate::key;
use crate::sstable::Table;
use crate::tenant_drops::TenantDrops;
use crate::types::{Entry, Timestamp};
use crate::version::{NUM_LEVELS, Version};

/// Round-robin positions: the largest key compacted last, per level.
#[derive(Debug, Default)]
pub struct CompactionPointers {
    next_key: [Option<Vec<u8>>; NUM_LEVELS],
}

/// One merge to run.
#[derive(Debug)]
pub struct CompactionJob {
    /// Level the inputs come from.
    pub level: usize,
    /// Level the outputs go to (`level + 1`).
    pub output_level: usize,
    /// Tables taken from `level`.
    pub inputs: Vec<Arc<Table>>,
    /// Tables of `output_level` overlapping the inputs.
    pub lower: Vec<Arc<Table>>,
    /// True when no deeper level holds keys in the inputs' range.
    pub bottommost: bool,
}

impl CompactionJob {
    /// A job merging `inputs` (tables of `level`) with what they overlap one level down.
    pub fn with_inputs(version: &Version, level: usize, inputs: Vec<Arc<Table>>) -> Option<Self> {
        let (smallest, largest) = key_span(&inputs)?;
        let output_level = level + 1;
        let lower = version.overlapping(output_level, &smallest, &largest);
        let bottommost = nothing_below(version, output_level, &smallest, &largest);
        Some(Self {
            level,
            output_level,
            inputs,
            lower,
            bottommost,
        })
    }

    /// A job rewriting `inputs` (tables of `level`) into new tables of the same level: for the
    /// deepest level holding data, whose tables overlap nothing below, so the merge is
    /// bottommost and drops what it may (expired tombstones and markers, the cells they hide,
    /// cells of dropped tenants). Never a trivial move.
    pub fn rewrite_in_place(
        version: &Version,
        level: usize,
        inputs: Vec<Arc<Table>>,
    ) -> Option<Self> {
        let (smallest, largest) = key_span(&inputs)?;
        let bottommost = nothing_below(version, level, &smallest, &largest);
        Some(Self {
            level,
            output_level: level,
            inputs,
            lower: Vec::new(),
            bottommost,
        })
    }

    /// Every input table with its level, for the manifest edit.
    pub fn removed(&self) -> Vec<(usize, u64)> {
        let upper = self.inputs.iter().map(|t| (self.level, t.file_number()));
        let lower = self
            .lower
            .iter()
            .map(|t| (self.output_level, t.file_number()));
        upper.chain(lower).collect()
    }

    /// True when the job can move its one input table down a level without rewriting it:
    /// nothing overlaps it below, and it holds no tombstone a merge might have to keep or drop
    /// and no cell a tenant drop may cover.
    pub fn is_trivial_move(&self, drops: &TenantDrops) -> bool {
        let Some(table) = self.inputs.first() else {
            return false;
        };
        let p = table.properties();
        self.inputs.len() == 1
            && self.output_level != self.level
            && self.lower.is_empty()
            && p.tombstones == 0
            && !drops.may_cover(&p.smallest.user_key, &p.largest.user_key, p.min_ts)
    }

    /// All input tables (upper first).
    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.inputs.iter().chain(self.lower.iter())
    }
}

/// The smallest and largest user keys of `tables` (`None` when there are none).
fn key_span(tables: &[Arc<Table>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let smallest = tables
        .iter()
        .map(|t| t.properties().smallest.user_key.clone())
        .min()?;
    let largest = tables
        .iter()
        .map(|t| t.properties().largest.user_key.clone())
        .max()?;
    Some((smallest, largest))
}

/// True when no level below `level` holds a key of `smallest..=largest`: a merge writing to
/// `level` is then bottommost for those keys.
fn nothing_below(version: &Version, level: usize, smallest: &[u8], largest: &[u8]) -> bool {
    (level + 1..NUM_LEVELS).all(|l| version.overlapping(l, smallest, largest).is_empty())
}

/// Byte target of a level (`level >= 1`).
pub fn level_target(level1_bytes: u64, multiplier: u64, level: usize) -> u64 {
    let exponent = u32::try_from(level.saturating_sub(1)).unwrap_or(u32::MAX);
    level1_bytes.saturating_mul(multiplier.saturating_pow(exponent))
}

/// The next compaction the tree needs, if any.
pub fn pick(
    version: &Version,
    pointers: &mut CompactionPointers,
    l0_trigger: usize,
    level1_bytes: u64,
    multiplier: u64,
) -> Option<CompactionJob> {
    if version.level(0).len() >= l0_trigger {
        return CompactionJob::with_inputs(version, 0, version.level(0).to_vec());
    }
    let (level, score) = (1..NUM_LEVELS - 1)
        .map(|l| {
            (
                l,
                version.level_bytes(l) as f64 / level_target(level1_bytes, multiplier, l) as f64,
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if score < 1.0 {
        return None;
    }
    let tables = version.level(level);
    let after = pointers.next_key[level].as_deref();
    let table = tables
        .iter()
        .find(|t| after.is_none_or(|k| t.properties().smallest.user_key.as_slice() > k))
        .or_else(|| tables.first())?
        .clone();
    pointers.next_key[level] = Some(table.properties().largest.user_key.clone());
    CompactionJob::with_inputs(version, level, vec![table])
}

/// A job merging all of `level` into `level + 1` (manual full compaction), if `level` has tables.
pub fn pick_whole_level(version: &Version, level: usize) -> Option<CompactionJob> {
    if level + 1 >= NUM_LEVELS {
        return None;
    }
    CompactionJob::with_inputs(version, level, version.level(level).to_vec())
}

/// Decides, entry by entry in internal-key order, what a merge keeps (see the module doc).
#[derive(Debug)]
pub struct CompactionFilter {
    bottommost: bool,
    gc_cutoff: Timestamp,
    drops: Arc<TenantDrops>,
    shadow: MarkerShadow,
    last_key: Option<Vec<u8>>,
}

impl CompactionFilter {
    /// A filter for one merge; `gc_cutoff` = now - gc_grace; `drops`: the tenant drops.
    pub fn new(bottommost: bool, gc_cutoff: Timestamp, drops: Arc<TenantDrops>) -> Self {
        Self {
            bottommost,
            gc_cutoff,
            drops,
            shadow: MarkerShadow::default(),
            last_key: None,
        }
    }

    /// True if `entry` survives.
    pub fn keep(&mut self, entry: &Entry) -> bool {
        let user_key = &entry.key.user_key;
        if self.last_key.as_deref() == Some(user_key.as_slice()) {
            return false; // an older version of a cell already decided
        }
        self.last_key = Some(user_key.clone());
        if self.drops.hides(user_key, entry.key.ts) {
            return false; // its tenant was dropped after it was written
        }
        let expired = self.bottommost && entry.key.ts < self.gc_cutoff;
        match self
            .shadow
            .next(user_key, entry.key.ts, entry.value.as_deref())
        {
            Shadowed::Marker => !expired,
            Shadowed::Hidden => false,
            Shadowed::Visible => entry.value.is_some() || !expired,
        }
    }

    /// True when `entry` starts a new partition compared with the last kept or dropped entry
    /// (outputs are split only there, so one entity's cells stay in one table where possible).
    pub fn at_partition_start(&self, entry: &Entry) -> bool {
        let partition = key::partition_of(&entry.key.user_key).unwrap_or(&entry.key.user_key);
        let last = self
            .last_key
            .as_deref()
            .map(|k| key::partition_of(k).unwrap_or(k));
        last != Some(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::MarkerValue;
    use crate::key::CellKey;
    use crate::types::InternalKey;

    fn entry(key: CellKey, ts: u64, seq: u64, value: Option<&[u8]>) -> Entry {
        Entry {
            key: InternalKey::new(key.encode(), ts, seq),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn keeps_newest_and_drops_shadowed_cells() {
        let mut f = CompactionFilter::new(false, 0, Arc::default());
        let kept: Vec<bool> = [
            entry(CellKey::marker("t", "a"), 10, 5, Some(b"")),
            entry(CellKey::body("t", "a"), 11, 6, Some(b"new")),
            entry(CellKey::body("t", "a"), 9, 2, Some(b"old")),
            entry(CellKey::out_edge("t", "a", "r", "b"), 8, 1, Some(b"e")),
            entry(CellKey::out_edge("t", "a", "r", "c"), 12, 7, None),
            entry(CellKey::body("t", "b"), 3, 3, Some(b"b")),
        ]
        .iter()
        .map(|e| f.keep(e))
        .collect();
        assert_eq!(kept, vec![true, true, false, false, true, true]);
    }

    #[test]
    fn a_format_1_marker_keeps_in_edges_above_its_bound() {
        let marker = MarkerValue { in_edges_upto: 4 }.encode();
        let mut f = CompactionFilter::new(false, 0, Arc::default());
        let kept: Vec<bool> = [
            entry(CellKey::marker("t", "a"), 10, 5, Some(&marker)),
            entry(CellKey::out_edge("t", "a", "r", "b"), 8, 1, Some(b"e")),
            entry(CellKey::in_edge("t", "x", "r", "a"), 8, 2, Some(b"e")),
            entry(CellKey::in_edge("t", "y", "r", "a"), 4, 3, Some(b"e")),
            // A marker of format 0 (empty) hides in-edges up to its own timestamp.
            entry(CellKey::marker("t", "b"), 10, 6, Some(b"")),
            entry(CellKey::in_edge("t", "x", "r", "b"), 8, 4, Some(b"e")),
        ]
        .iter()
        .map(|e| f.keep(e))
        .collect();
        assert_eq!(kept, vec![true, false, true, false, true, false]);
    }

    #[test]
    fn a_tenant_drop_removes_its_older_cells_at_any_level() {
        use crate::tenant_drops::TenantDrop;
        let drops = Arc::new(TenantDrops::default().with("t", TenantDrop { ts: 10, seq: 1 }));
        let mut f = CompactionFilter::new(false, 0, drops);
        let kept: Vec<bool> = [
            entry(CellKey::body("s", "a"), 5, 1, Some(b"another tenant")),
            entry(CellKey::marker("t", "a"), 9, 2, Some(b"")),
            entry(CellKey::body("t", "a"), 11, 3, Some(b"after the drop")),
            entry(CellKey::body("t", "b"), 10, 4, Some(b"at the drop")),
            entry(
                CellKey::body("tt", "b"),
                1,
                5,
                Some(b"a tenant extending its id"),
            ),
        ]
        .iter()
        .map(|e| f.keep(e))
        .collect();
        assert_eq!(kept, vec![true, false, true, false, true]);
    }

    #[test]
    fn drops_tombstones_only_at_bottom_after_grace() {
        let tomb = entry(CellKey::out_edge("t", "a", "r", "b"), 5, 1, None);
        let marker = entry(CellKey::marker("t", "z"), 5, 2, Some(b""));
        assert!(CompactionFilter::new(false, 100, Arc::default()).keep(&tomb));
        assert!(CompactionFilter::new(true, 5, Arc::default()).keep(&tomb));
        assert!(!CompactionFilter::new(true, 6, Arc::default()).keep(&tomb));
        assert!(CompactionFilter::new(false, 100, Arc::default()).keep(&marker));
        assert!(!CompactionFilter::new(true, 100, Arc::default()).keep(&marker));
    }
}
