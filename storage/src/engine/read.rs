//! The read side: consistent snapshots, entity reads, entity range scans, and the change feed
//! the indexes follow.
//!
//! A snapshot is the visible sequence number read *before* the memtables and version are cloned
//! under the state lock: every write with a sequence number at or below it is in one of them.
//! Entries newer than the snapshot are skipped, so a batch is seen whole or not at all, and so
//! are cells a tenant drop covers ([`crate::tenant_drops`]), with the drops as of the snapshot.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Engine, Inner};
use crate::cell::Entity;
use crate::error::Result;
use crate::key::{self, CellKey};
use crate::memtable::MemtableIter;
use crate::merge::{LevelIter, MergeIter, Source};
use crate::partition::{CellVersion, PartitionState, live_bytes};
use crate::sstable::Table;
use crate::tenant_drops::TenantDrops;
use crate::types::{Entry, SeqNo};
use crate::wal;

/// One partition touched by a write, as the change feed reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangedPartition {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub entity_id: String,
}

impl Inner {
    /// A merge over everything visible at the returned snapshot. With `partition`, tables that
    /// cannot hold it (bloom filter, key range) are left out.
    fn snapshot(&self, partition: Option<&[u8]>) -> (MergeIter, SeqNo, Arc<TenantDrops>) {
        let seq = self.visible_seq.load(Ordering::Acquire);
        let state = self.state.read();
        let drops = state.drops.clone();
        let mut sources = vec![Source::Mem(MemtableIter::new(state.mem.clone()))];
        sources.extend(
            state
                .imm
                .iter()
                .rev()
                .map(|m| Source::Mem(MemtableIter::new(m.clone()))),
        );
        let version = state.version.clone();
        drop(state);
        let partition_end = partition.and_then(key::prefix_successor);
        for level in 0..crate::version::NUM_LEVELS {
            let tables = version.level(level);
            match partition {
                Some(p) => {
                    let overlaps = |t: &Table| {
                        let props = t.properties();
                        props.largest.user_key.as_slice() >= p
                            && partition_end
                                .as_ref()
                                .is_none_or(|end| props.smallest.user_key < *end)
                    };
                    // L0 tables may all overlap; in deeper levels the overlapping tables are
                    // contiguous, starting at the first whose largest key reaches `p`.
                    let first = if level == 0 {
                        0
                    } else {
                        tables.partition_point(|t| t.properties().largest.user_key.as_slice() < p)
                    };
                    for t in &tables[first..] {
                        if !overlaps(t) {
                            if level == 0 {
                                continue;
                            }
                            break;
                        }
                        if t.may_contain_partition(p) {
                            sources.push(Source::Table(
                                t.iter().with_upper_bound(partition_end.clone()),
                            ));
                        }
                    }
                }
                None if level == 0 => {
                    sources.extend(tables.iter().map(|t| Source::Table(t.iter())))
                }
                None if !tables.is_empty() => {
                    sources.push(Source::Level(LevelIter::new(tables.to_vec())))
                }
                None => {}
            }
        }
        (MergeIter::new(sources), seq, drops)
    }
}

/// Groups a merged stream into partitions and resolves each one.
#[derive(Debug)]
pub struct EntityIter {
    merge: MergeIter,
    seq: SeqNo,
    drops: Arc<TenantDrops>,
    end: Option<Vec<u8>>,
    pending: Option<Entry>,
    done: bool,
}

impl EntityIter {
    fn new(
        (mut merge, seq, drops): (MergeIter, SeqNo, Arc<TenantDrops>),
        start: &[u8],
        end: Option<Vec<u8>>,
    ) -> Self {
        merge.seek(start);
        Self {
            merge,
            seq,
            drops,
            end,
            pending: None,
            done: false,
        }
    }

    fn next_visible(&mut self) -> Option<Result<Entry>> {
        if let Some(e) = self.pending.take() {
            return Some(Ok(e));
        }
        loop {
            let entry = match self.merge.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            if self
                .end
                .as_ref()
                .is_some_and(|end| entry.key.user_key >= *end)
            {
                return None;
            }
            if entry.key.seq <= self.seq && !self.drops.hides(&entry.key.user_key, entry.key.ts) {
                return Some(Ok(entry));
            }
        }
    }

    /// The next partition's newest visible cell versions: `(partition prefix, cells)`.
    fn next_partition(&mut self) -> Option<Result<(Vec<u8>, Vec<CellVersion>)>> {
        let first = match self.next_visible()? {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        let Some(partition) = key::partition_of(&first.key.user_key).map(<[u8]>::to_vec) else {
            return Some(Err(crate::Error::Codec(
                "stored key without a partition".to_owned(),
            )));
        };
        let mut cells: Vec<CellVersion> = vec![(first.key.user_key, first.key.ts, first.value)];
        loop {
            let entry = match self.next_visible() {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(e)) => e,
            };
            if !entry.key.user_key.starts_with(&partition) {
                self.pending = Some(entry);
                break;
            }
            // Versions of one cell arrive newest first: keep only the first.
            if cells
                .last()
                .is_some_and(|(k, _, _)| *k == entry.key.user_key)
            {
                continue;
            }
            cells.push((entry.key.user_key, entry.key.ts, entry.value));
        }
        Some(Ok((partition, cells)))
    }
}

/// Every partition of a scan with the newest visible version of each of its cells, tombstones
/// and the marker included (what anti-entropy hashes and compares), over one snapshot, in key
/// order; one partition in memory at a time.
#[derive(Debug)]
pub struct PartitionIter(EntityIter);

/// One partition as [`PartitionIter`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionVersions {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub entity_id: String,
    /// The newest visible version of each cell, in key order (never empty).
    pub cells: Vec<CellVersion>,
}

impl PartitionIter {
    /// An iterator that yields nothing.
    fn empty(snapshot: (MergeIter, SeqNo, Arc<TenantDrops>)) -> Self {
        let mut iter = EntityIter::new(snapshot, &[], None);
        iter.done = true;
        Self(iter)
    }
}

impl Iterator for PartitionIter {
    type Item = Result<PartitionVersions>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.done {
            return None;
        }
        let step = self.0.next_partition()?.and_then(|(_, cells)| {
            let key = CellKey::decode(&cells[0].0)?;
            Ok(PartitionVersions {
                tenant: key.tenant,
                entity_id: key.entity_id,
                cells,
            })
        });
        if step.is_err() {
            self.0.done = true;
        }
        Some(step)
    }
}

impl Iterator for EntityIter {
    type Item = Result<Entity>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let step = self.next_partition().map(|r| {
                r.and_then(|(partition, cells)| {
                    let tenant_and_id = CellKey::decode(&cells[0].0)?;
                    let state = PartitionState::resolve(cells)?;
                    Ok(state.into_entity(&tenant_and_id.tenant, &tenant_and_id.entity_id))
                        .map(|e| (partition, e))
                })
            });
            match step {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok((_, Some(entity)))) => return Some(Ok(entity)),
                Some(Ok((_, None))) => {}
            }
        }
        None
    }
}

impl Engine {
    /// The live cells of one partition (even when it has no body).
    pub fn read_partition(&self, tenant: &str, id: &str) -> Result<PartitionState> {
        PartitionState::resolve(self.partition_cells(tenant, id)?)
    }

    /// The newest stored version of every cell of one partition, tombstones and the marker
    /// included, in key order: what a replica answers a coordinator's read with, so versions
    /// from several replicas can be merged cell by cell.
    pub fn partition_cells(&self, tenant: &str, id: &str) -> Result<Vec<CellVersion>> {
        let prefix = key::partition_prefix(tenant, id);
        let snapshot = self.inner.snapshot(Some(&prefix));
        let end = key::prefix_successor(&prefix);
        let mut iter = EntityIter::new(snapshot, &prefix, end);
        match iter.next_partition() {
            None => Ok(Vec::new()),
            Some(r) => Ok(r?.1),
        }
    }

    /// One entity by id, its cells merged across memtables and levels.
    pub fn get_entity(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        key::validate_tenant(tenant)?;
        key::validate_id(id)?;
        Ok(self.read_partition(tenant, id)?.into_entity(tenant, id))
    }

    /// Entities of `tenant` with `start <= id < end` (`None` = unbounded) in id order, over one
    /// consistent snapshot taken now.
    pub fn scan(&self, tenant: &str, start: Option<&str>, end: Option<&str>) -> Result<EntityIter> {
        key::validate_tenant(tenant)?;
        let begin = match start {
            Some(s) => key::partition_prefix(tenant, s),
            None => key::tenant_prefix(tenant),
        };
        let end = match end {
            Some(e) => Some(key::partition_prefix(tenant, e)),
            None => key::prefix_successor(&key::tenant_prefix(tenant)),
        };
        Ok(EntityIter::new(self.inner.snapshot(None), &begin, end))
    }

    /// The bytes (keys and values) of `tenant`'s newest visible cell versions, tombstones left
    /// out: what the tenant stores before compression. One scan of the tenant.
    pub fn tenant_bytes(&self, tenant: &str) -> Result<u64> {
        key::validate_tenant(tenant)?;
        let begin = key::tenant_prefix(tenant);
        let end = key::prefix_successor(&begin);
        let mut iter = EntityIter::new(self.inner.snapshot(None), &begin, end);
        let mut bytes = 0u64;
        while let Some(partition) = iter.next_partition() {
            bytes += live_bytes(&partition?.1);
        }
        Ok(bytes)
    }

    /// Every partition of `tenant` (`None`: of every tenant) with its cells as stored,
    /// tombstones included, over one snapshot taken now (writes go on meanwhile).
    pub fn partitions(&self, tenant: Option<&str>) -> Result<PartitionIter> {
        self.partitions_after(tenant, None)
    }

    /// [`Engine::partitions`] from the first partition after `after` (`(tenant, entity id)`,
    /// in key order; `None`: from the start), so a scan stopped at a partition can go on from
    /// there over a later snapshot.
    pub fn partitions_after(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> Result<PartitionIter> {
        let (mut begin, end) = match tenant {
            Some(tenant) => {
                key::validate_tenant(tenant)?;
                let begin = key::tenant_prefix(tenant);
                let end = key::prefix_successor(&begin);
                (begin, end)
            }
            None => (Vec::new(), None),
        };
        if let Some((tenant, id)) = after {
            key::validate_tenant(tenant)?;
            key::validate_id(id)?;
            match key::prefix_successor(&key::partition_prefix(tenant, id)) {
                Some(next) => begin = begin.max(next),
                None => return Ok(PartitionIter::empty(self.inner.snapshot(None))),
            }
        }
        Ok(PartitionIter(EntityIter::new(
            self.inner.snapshot(None),
            &begin,
            end,
        )))
    }

    /// Every live entity of every tenant, in key order, over one snapshot (index rebuilds), and
    /// the sequence number of that snapshot.
    pub fn all_entities(&self) -> (EntityIter, SeqNo) {
        let snapshot = self.inner.snapshot(None);
        let seq = snapshot.1;
        (EntityIter::new(snapshot, &[], None), seq)
    }

    /// The partitions written after sequence number `after` (up to the visible sequence number),
    /// read from the retained WAL, deduplicated, with the highest sequence number covered.
    /// `Ok(None)` when the WAL no longer holds every write after `after` (the follower must
    /// rebuild from [`Engine::all_entities`]). Needs [`super::Options::retain_wal_until_pinned`].
    pub fn changes_since(&self, after: SeqNo) -> Result<Option<(Vec<ChangedPartition>, SeqNo)>> {
        let upto = self.last_seq();
        if after >= upto {
            return Ok(Some((Vec::new(), upto)));
        }
        let segments: Vec<(u64, Option<SeqNo>)> = self
            .inner
            .wal_segments
            .lock()
            .iter()
            .map(|(n, s)| (*n, s.max_seq))
            .collect();
        let mut changed = BTreeSet::new();
        let mut lowest_seen: Option<SeqNo> = None;
        for (number, max_seq) in segments {
            if max_seq.is_some_and(|m| m <= after) {
                continue;
            }
            wal::read_segment(
                self.inner.fs.as_ref(),
                &self.inner.dir,
                number,
                |base, batch| {
                    let last = base + batch.len() as u64 - 1;
                    if last <= after || base > upto {
                        return Ok(());
                    }
                    lowest_seen = Some(lowest_seen.map_or(base, |l: SeqNo| l.min(base)));
                    for (i, op) in batch.ops().iter().enumerate() {
                        let seq = base + i as u64;
                        if seq > after && seq <= upto {
                            let key = CellKey::decode(&op.key)?;
                            changed.insert(ChangedPartition {
                                tenant: key.tenant,
                                entity_id: key.entity_id,
                            });
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if lowest_seen.is_none_or(|l| l > after + 1) {
            return Ok(None);
        }
        Ok(Some((changed.into_iter().collect(), upto)))
    }
}
