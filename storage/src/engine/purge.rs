//! Dropping whole partitions without tombstones (what `allidb cluster cleanup` does with the
//! partitions of token ranges a node no longer replicates; docs/cluster.md "Cleanup"): every
//! table holding a partition the caller names is rewritten without it, and the rewritten tables
//! replace the old ones in one manifest edit.
//!
//! Invariants: only what the tables hold when the purge starts is dropped (the memtables are
//! flushed first; writes that come later reach newer tables and stay); every version of every
//! cell of a named partition leaves every table of that set, so nothing older comes back from a
//! deeper level; the swap is one durable manifest edit, so a crash leaves either every table or
//! none rewritten. Must never: write a tombstone (it would shadow the same cells streamed back
//! later), drop a cell of a partition the caller keeps (or whose key does not decode), or run
//! beside a compaction (it holds the compaction lock).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::background::remove_partial;
use super::{Engine, Inner, table_path};
use crate::error::{Error, Result};
use crate::key;
use crate::manifest::VersionEdit;
use crate::sstable::{Table, TableBuilder};
use crate::types::Entry;

/// Whether the partition `(tenant, entity id)` is dropped.
pub type PurgeSelector<'a> = &'a (dyn Fn(&str, &str) -> bool + Sync);

/// What [`Engine::purge_partitions`] dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// The partitions dropped, `(tenant, entity id)`, in key order.
    pub partitions: BTreeSet<(String, String)>,
    /// Cell versions dropped (tombstones and markers included).
    pub cells: u64,
    /// Their key and value bytes.
    pub bytes: u64,
    /// Tables rewritten (or removed, when nothing of them stayed).
    pub tables_rewritten: u64,
    /// File bytes of the rewritten tables before, and of what replaced them.
    pub table_bytes_before: u64,
    pub table_bytes_after: u64,
}

/// A partition's key prefix and, when it is dropped, its `(tenant, entity id)`.
type SeenPartition = (Vec<u8>, Option<(String, String)>);

/// Decides entry by entry (in key order) whether its partition is dropped, deciding once per
/// partition.
struct PartitionSelector<'a> {
    selector: PurgeSelector<'a>,
    /// The last partition prefix seen and whether it is dropped.
    last: Option<SeenPartition>,
}

impl<'a> PartitionSelector<'a> {
    fn new(selector: PurgeSelector<'a>) -> Self {
        Self {
            selector,
            last: None,
        }
    }

    /// The partition `entry` belongs to when it is dropped.
    fn dropped(&mut self, entry: &Entry) -> Option<&(String, String)> {
        let Some(prefix) = key::partition_of(&entry.key.user_key) else {
            return None; // a key that does not decode is kept
        };
        if self.last.as_ref().is_none_or(|(last, _)| last != prefix) {
            let decided = decode_partition(prefix).filter(|(t, id)| (self.selector)(t, id));
            self.last = Some((prefix.to_vec(), decided));
        }
        self.last.as_ref().and_then(|(_, decided)| decided.as_ref())
    }
}

/// `(tenant, entity id)` of a partition prefix `tenant 0x00 entity_id 0x00`.
fn decode_partition(prefix: &[u8]) -> Option<(String, String)> {
    let body = prefix.strip_suffix(&[0])?;
    let split = body.iter().position(|b| *b == 0)?;
    let tenant = std::str::from_utf8(&body[..split]).ok()?;
    let id = std::str::from_utf8(&body[split + 1..]).ok()?;
    Some((tenant.to_owned(), id.to_owned()))
}

impl Engine {
    /// Drops every cell of every partition `selector` names from this node's tables, without
    /// tombstones: the memtables are flushed, then each table holding such a partition is
    /// rewritten without it (at its level), and the rewritten tables replace the old ones in
    /// one manifest edit. Writes that come during the purge stay. Readers see the partitions
    /// until the edit, and not after it.
    pub fn purge_partitions(&self, selector: PurgeSelector<'_>) -> Result<Purged> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("the engine is closed".to_owned()));
        }
        self.flush()?;
        self.inner.purge(selector)
    }
}

impl Inner {
    fn purge(&self, selector: PurgeSelector<'_>) -> Result<Purged> {
        let _no_compaction = self.compaction.lock();
        self.check_open()?;
        let version = self.state.read().version.clone();
        let mut purged = Purged::default();
        let mut created = Vec::new();
        let mut removed: Vec<(usize, u64)> = Vec::new();
        let mut added: Vec<(usize, Arc<Table>)> = Vec::new();
        for (level, table) in version.tables() {
            match self.purge_table(table, selector, &mut purged, &mut created) {
                Ok(None) => continue,
                Ok(Some(kept)) => {
                    removed.push((level, table.file_number()));
                    purged.tables_rewritten += 1;
                    purged.table_bytes_before += table.properties().file_size;
                    if let Some(kept) = kept {
                        purged.table_bytes_after += kept.properties().file_size;
                        added.push((level, Arc::new(kept)));
                    }
                }
                Err(error) => {
                    remove_partial(self.fs.as_ref(), &created);
                    return Err(error);
                }
            }
        }
        if removed.is_empty() {
            return Ok(purged);
        }
        if let Err(error) = self.fs.sync_dir(&self.dir) {
            remove_partial(self.fs.as_ref(), &created);
            return Err(error);
        }
        let edit = VersionEdit {
            added: added
                .iter()
                .map(|(l, t)| (*l as u8, t.file_number()))
                .collect(),
            removed: removed.iter().map(|(l, n)| (*l as u8, *n)).collect(),
            next_table_number: Some(self.next_table_number.load(Ordering::Relaxed)),
            ..Default::default()
        };
        self.manifest.lock().commit(edit)?;
        {
            let mut state = self.state.write();
            state.version = Arc::new(state.version.apply(&removed, &added));
        }
        for (_, number) in &removed {
            self.fs.remove(&table_path(&self.dir, *number))?;
        }
        self.fs.sync_dir(&self.dir)?;
        self.work_cv.notify_all();
        Ok(purged)
    }

    /// Rewrites `table` without the partitions `selector` names: `None` when it holds none
    /// (it stays as it is), `Some(None)` when nothing of it stays, `Some(Some(table))` with the
    /// rewritten table otherwise. Counts what it drops into `purged`.
    fn purge_table(
        &self,
        table: &Arc<Table>,
        selector: PurgeSelector<'_>,
        purged: &mut Purged,
        created: &mut Vec<std::path::PathBuf>,
    ) -> Result<Option<Option<Table>>> {
        let mut first_pass = PartitionSelector::new(selector);
        let mut holds_any = false;
        for entry in table.iter() {
            if first_pass.dropped(&entry?).is_some() {
                holds_any = true;
                break;
            }
        }
        if !holds_any {
            return Ok(None);
        }
        let mut selecting = PartitionSelector::new(selector);
        let number = self.next_table_number.fetch_add(1, Ordering::Relaxed);
        let path = table_path(&self.dir, number);
        created.push(path.clone());
        let mut builder = TableBuilder::new(self.fs.create(&path)?, path, self.options.table);
        let mut kept = 0u64;
        for entry in table.iter() {
            let entry = entry?;
            if let Some(partition) = selecting.dropped(&entry) {
                if !purged.partitions.contains(partition) {
                    purged.partitions.insert(partition.clone());
                }
                purged.cells += 1;
                purged.bytes +=
                    (entry.key.user_key.len() + entry.value.as_ref().map_or(0, Vec::len)) as u64;
                continue;
            }
            builder.add(&entry)?;
            kept += 1;
        }
        if kept == 0 {
            // An empty table is never written: what it held is gone.
            drop(builder);
            remove_partial(self.fs.as_ref(), &created[created.len() - 1..]);
            created.pop();
            return Ok(Some(None));
        }
        self.finish_table(number, builder).map(|t| Some(Some(t)))
    }
}
