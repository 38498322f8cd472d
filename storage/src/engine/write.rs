//! The write side of the engine: the commit sink the WAL writer applies batches through, write
//! throttling, and the entity-level mutations (put-replace, delete, edge add/remove): each takes
//! the entity locks it needs, reads the stored partitions under them and writes the cells
//! [`crate::mutation`] plans.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::entity_locks::EntityLockGuard;
use super::{Engine, Inner, STALL_POLL};
use crate::batch::{Prepared, WriteBatch};
use crate::cell::{EdgeRef, EntityWrite};
use crate::error::{Error, Result};
use crate::key;
use crate::memtable::Memtable;
use crate::mutation;
use crate::partition::PartitionState;
use crate::provenance::{self, PutMode};
use crate::types::{Durability, Entry, InternalKey, SeqNo};
use crate::version::NUM_LEVELS;
use crate::wal::CommitSink;

pub use crate::compaction::CompactionPointers;

/// Monotonic counters (exported as metrics by the daemon).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub user_bytes: AtomicU64,
    pub batches: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_read_bytes: AtomicU64,
    pub compaction_write_bytes: AtomicU64,
    pub slowdowns: AtomicU64,
    pub stalls: AtomicU64,
    pub torn_tails: AtomicU64,
    /// Bytes of WAL segments read at open (replayed, or scanned for the pin).
    pub wal_replayed_bytes: AtomicU64,
    /// Bytes of the WAL segments finished (rotated) since open.
    pub wal_finished_bytes: AtomicU64,
}

/// A point-in-time view of the engine's counters and shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Highest visible sequence number.
    pub last_seq: SeqNo,
    /// Bytes in the mutable memtable.
    pub memtable_bytes: u64,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: u64,
    /// Tables per level.
    pub tables_per_level: Vec<u64>,
    /// File bytes per level.
    pub bytes_per_level: Vec<u64>,
    /// Bytes of batches written by users (keys + values).
    pub user_bytes: u64,
    /// Batches written.
    pub batches: u64,
    /// Memtable flushes and the table bytes they wrote.
    pub flushes: u64,
    /// Table bytes written by flushes.
    pub flush_bytes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Table bytes read by compactions.
    pub compaction_read_bytes: u64,
    /// Table bytes written by compactions.
    pub compaction_write_bytes: u64,
    /// Writes delayed because L0 is large.
    pub slowdowns: u64,
    /// Times writers stalled (memtables or L0 full).
    pub stalls: u64,
    /// Torn WAL tails truncated at open.
    pub torn_tails: u64,
    /// Bytes of the WAL segments on disk (the one being written included).
    pub wal_bytes: u64,
    /// WAL segments on disk (the one being written included).
    pub wal_segments: u64,
    /// Age of the oldest WAL segment on disk (zero when the only one is the segment being
    /// written and it holds no record yet). A segment found at open counts from the open.
    pub wal_oldest_segment_age: Duration,
    /// Bytes appended to the WAL since open (segment file headers included).
    pub wal_written_bytes: u64,
    /// Bytes of WAL read at open: the segments replayed and the retained ones scanned.
    pub wal_replayed_bytes: u64,
    /// Block cache hits.
    pub block_cache_hits: u64,
    /// Block cache misses.
    pub block_cache_misses: u64,
}

impl CommitSink for Inner {
    fn apply(&self, base_seq: SeqNo, batch: WriteBatch, prepared: Option<Prepared>) -> Result<()> {
        let mem = self.state.read().mem.clone();
        let ops = batch.len() as u64;
        self.stats
            .user_bytes
            .fetch_add(batch.approximate_size() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let insert = |entry: Entry| {
            self.clock.observe(entry.key.ts);
            mem.insert(entry);
        };
        let last_seq = base_seq + ops - 1;
        match &self.observer {
            None => {
                batch.into_entries(base_seq).for_each(insert);
                self.visible_seq.store(last_seq, Ordering::Release);
            }
            Some(observer) => {
                // The observer needs the batch after it is visible: insert copies.
                batch.ops().iter().enumerate().for_each(|(i, op)| {
                    insert(Entry {
                        key: InternalKey::new(op.key.clone(), op.ts, base_seq + i as u64),
                        value: op.value.clone(),
                    })
                });
                self.visible_seq.store(last_seq, Ordering::Release);
                observer.committed(base_seq, &batch, prepared);
            }
        }
        Ok(())
    }

    fn wants_rotation(&self) -> bool {
        let state = self.state.read();
        state.mem.approximate_bytes() >= self.options.memtable_bytes
            && state.imm.len() < self.options.max_immutable_memtables
    }

    fn idle_rotation(&self) -> Option<Duration> {
        self.options.memtable_idle_flush
    }

    fn rotated(&self, new_segment: u64, old_segment_bytes: u64) -> Result<()> {
        let last = self.visible_seq.load(Ordering::Acquire);
        {
            let mut segments = self.wal_segments.lock();
            if let Some((_, old)) = segments.iter_mut().next_back() {
                old.max_seq = Some(last);
                old.bytes = old_segment_bytes;
            }
            segments.insert(new_segment, super::WalSegment::live(Instant::now()));
        }
        self.stats
            .wal_finished_bytes
            .fetch_add(old_segment_bytes, Ordering::Relaxed);
        let mut state = self.state.write();
        let old = std::mem::replace(&mut state.mem, Arc::new(Memtable::new(new_segment)));
        state.imm.push_back(old);
        drop(state);
        self.work_cv.notify_all();
        Ok(())
    }

    fn writer_failed(&self, error: &Error) {
        self.health.stop(crate::wal::WAL_WRITE, error);
        self.work_cv.notify_all();
    }
}

impl Inner {
    /// Slows writers when L0 grows, and stalls them while the memtables or L0 are full, until
    /// the background threads catch up; fails them as soon as the engine refuses writes (a
    /// flush that keeps failing refuses them: see `health`).
    fn throttle(&self) -> Result<()> {
        let mut stalled = false;
        loop {
            self.check_writable()?;
            let (mem_full, imm_full, l0) = {
                let state = self.state.read();
                (
                    state.mem.approximate_bytes() >= self.options.memtable_bytes,
                    state.imm.len() >= self.options.max_immutable_memtables,
                    state.version.level(0).len(),
                )
            };
            if (mem_full && imm_full) || l0 >= self.options.l0_stop_trigger {
                if !stalled {
                    stalled = true;
                    self.stats.stalls.fetch_add(1, Ordering::Relaxed);
                }
                let mut work = self.work.lock();
                self.work_cv.wait_for(&mut work, STALL_POLL);
                continue;
            }
            if l0 >= self.options.l0_slowdown_trigger {
                self.stats.slowdowns.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            return Ok(());
        }
    }
}

impl Engine {
    /// Writes a raw batch of cells with the given durability; returns its first sequence number.
    /// Empty batches are rejected.
    pub fn write(&self, batch: WriteBatch, durability: Durability) -> Result<SeqNo> {
        self.inner.check_writable()?;
        if batch.is_empty() {
            return Err(Error::InvalidArgument("empty write batch".to_owned()));
        }
        self.inner.throttle()?;
        let prepared = self.inner.observer.as_ref().and_then(|o| o.prepare(&batch));
        self.writer.write(batch, prepared, durability)
    }

    /// Replaces entities (`PutEntity`): for each, a marker at `T-1` shadows the older body and
    /// out-edges, then the body, the out-edges (each also written as its target's in-edge) and
    /// the in-edges are written at `T`. Out-edges the entity had before and no longer has are
    /// removed from their targets. In-edges written by other entities' out-edges are kept. `created_at` is
    /// kept from the stored body. One atomic batch; if an id repeats, the last write wins.
    /// Returns the batch's first sequence number.
    pub fn put_entities(
        &self,
        tenant: &str,
        writes: Vec<EntityWrite>,
        durability: Durability,
    ) -> Result<SeqNo> {
        self.put_entities_as(tenant, writes, PutMode::Replace, durability)
    }

    /// [`Engine::put_entities`] in `mode`: with [`PutMode::MergeSources`] each write is merged
    /// into the stored entity first ([`provenance::merge_write`]). The sources' member
    /// partitions are locked too, so a put never interleaves with a source delete.
    pub fn put_entities_as(
        &self,
        tenant: &str,
        writes: Vec<EntityWrite>,
        mode: PutMode,
        durability: Durability,
    ) -> Result<SeqNo> {
        let winners = mutation::put_winners(tenant, &writes)?;
        let ids: Vec<&str> = winners.iter().map(|w| w.id.as_str()).collect();
        let source_partitions = provenance::source_partitions(&winners);
        let new_neighbours = winners
            .iter()
            .flat_map(|w| w.out_edges.iter().chain(&w.in_edges))
            .map(|e| e.other.as_str())
            .chain(source_partitions.iter().map(String::as_str));
        let (_locks, stored) =
            self.lock_with_neighbours(tenant, &ids, new_neighbours, Neighbours::Targets)?;
        let ts = self.inner.clock.now();
        let batch = match mode {
            PutMode::Replace => mutation::plan_put(tenant, &winners, &stored, ts)?,
            PutMode::MergeSources => {
                let merged: Vec<EntityWrite> = winners
                    .iter()
                    .zip(&stored)
                    .map(|(w, old)| provenance::merge_write(w, old))
                    .collect();
                let merged: Vec<&EntityWrite> = merged.iter().collect();
                mutation::plan_put(tenant, &merged, &stored, ts)?
            }
        };
        self.write(batch, durability)
    }

    /// Locks what a put-replace or delete of `ids` must hold while it reads and writes: the ids
    /// and the entities whose partitions the mutation writes — the new neighbours
    /// (`new_neighbours`) and the stored ones `stored` names, read under the lock (in-edges at
    /// targets; for a delete also out-edges at sources). Stored edges found outside the locked
    /// set make it retry with a larger set. Returns the guard and each id's stored partition,
    /// in the order of `ids`.
    pub(super) fn lock_with_neighbours<'a>(
        &self,
        tenant: &str,
        ids: &[&str],
        new_neighbours: impl Iterator<Item = &'a str>,
        stored_neighbours: Neighbours,
    ) -> Result<(EntityLockGuard<'_>, Vec<PartitionState>)> {
        let mut neighbours: BTreeSet<String> = new_neighbours.map(str::to_owned).collect();
        let own: HashSet<&str> = ids.iter().copied().collect();
        loop {
            let guard = self.inner.entity_locks.lock(
                tenant,
                ids.iter()
                    .copied()
                    .chain(neighbours.iter().map(String::as_str)),
            );
            let stored = ids
                .iter()
                .map(|id| self.read_partition(tenant, id))
                .collect::<Result<Vec<_>>>()?;
            let unlocked: Vec<String> = stored
                .iter()
                .flat_map(|p| {
                    let targets = p.out_edges.iter().map(|e| &e.to);
                    let sources = match stored_neighbours {
                        Neighbours::Targets => &[][..],
                        Neighbours::TargetsAndSources => &p.in_edges[..],
                    };
                    targets.chain(sources.iter().map(|e| &e.from))
                })
                .filter(|n| !neighbours.contains(*n) && !own.contains(n.as_str()))
                .cloned()
                .collect();
            if unlocked.is_empty() {
                return Ok((guard, stored));
            }
            drop(guard);
            neighbours.extend(unlocked);
        }
    }

    /// Deletes an entity: a marker at `T` hides its body and out-edges, and both ends of its
    /// edges are removed (the in-edge at each target, the out-edge at each source). Returns
    /// whether a live entity existed (nothing is written when it did not).
    pub fn delete_entity(&self, tenant: &str, id: &str, durability: Durability) -> Result<bool> {
        key::validate_tenant(tenant)?;
        key::validate_id(id)?;
        let (_locks, stored) = self.lock_with_neighbours(
            tenant,
            &[id],
            std::iter::empty(),
            Neighbours::TargetsAndSources,
        )?;
        let existing = stored
            .into_iter()
            .next()
            .expect("lock_with_neighbours reads one partition per id");
        let ts = self.inner.clock.now();
        match mutation::plan_delete(tenant, id, &existing, ts) {
            None => Ok(false),
            Some(batch) => self.write(batch, durability).map(|_| true),
        }
    }

    /// Expires those of `ids` whose live body has expired at `now_nanos`: each gets a marker at
    /// its body's own timestamp ([`mutation::plan_expire`]), all in one batch written under
    /// their locks, so a put racing the expiry is either hidden with the body it replaced or
    /// written after it. Returns the ids expired (the others had no live body, or a body that
    /// has not expired: a newer put replaced it).
    pub fn expire_entities(
        &self,
        tenant: &str,
        ids: &[&str],
        now_nanos: i64,
        durability: Durability,
    ) -> Result<Vec<String>> {
        key::validate_tenant(tenant)?;
        for id in ids {
            key::validate_id(id)?;
        }
        let _locks = self.inner.entity_locks.lock(tenant, ids.iter().copied());
        let mut batch = WriteBatch::new();
        let mut expired = Vec::new();
        for id in ids {
            let stored = self.read_partition(tenant, id)?;
            if let Some(cells) = mutation::plan_expire(tenant, id, &stored, now_nanos) {
                batch.extend(cells);
                expired.push((*id).to_owned());
            }
        }
        if !batch.is_empty() {
            self.write(batch, durability)?;
        }
        Ok(expired)
    }

    /// Validates edges given as `(from, relation, to)` and locks both ends of each (an edge
    /// operation races with a put or delete of either end: see `entity_locks`).
    fn lock_edge_ends<'e>(
        &self,
        tenant: &str,
        edges: impl Iterator<Item = (&'e str, &'e str, &'e str)> + Clone,
    ) -> Result<EntityLockGuard<'_>> {
        mutation::validate_edges(tenant, edges.clone())?;
        let ends = edges.flat_map(|(from, _, to)| [from, to]);
        Ok(self.inner.entity_locks.lock(tenant, ends))
    }

    /// Adds (or overwrites) edges: each writes the source's out-edge cell and the target's
    /// in-edge cell, without touching either entity's other cells.
    pub fn add_edges(
        &self,
        tenant: &str,
        edges: &[crate::cell::Edge],
        durability: Durability,
    ) -> Result<SeqNo> {
        let _locks = self.lock_edge_ends(tenant, edges.iter().map(crate::cell::Edge::ends))?;
        let batch = mutation::plan_add_edges(tenant, edges, self.inner.clock.now())?;
        self.write(batch, durability)
    }

    /// Removes edges (both cells of each).
    pub fn remove_edges(
        &self,
        tenant: &str,
        edges: &[EdgeRef],
        durability: Durability,
    ) -> Result<SeqNo> {
        let _locks = self.lock_edge_ends(tenant, edges.iter().map(EdgeRef::ends))?;
        let batch = mutation::plan_remove_edges(tenant, edges, self.inner.clock.now())?;
        self.write(batch, durability)
    }

    /// The engine's counters and shape.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.stats;
        let state = self.inner.state.read();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (hits, misses) = (self.inner.cache.hits(), self.inner.cache.misses());
        let live_bytes = self.writer.segment_bytes();
        let wal = self.wal_on_disk(live_bytes, !state.mem.is_empty());
        Stats {
            last_seq: self.last_seq(),
            memtable_bytes: state.mem.approximate_bytes() as u64,
            immutable_memtables: state.imm.len() as u64,
            tables_per_level: (0..NUM_LEVELS)
                .map(|l| state.version.level(l).len() as u64)
                .collect(),
            bytes_per_level: (0..NUM_LEVELS)
                .map(|l| state.version.level_bytes(l))
                .collect(),
            user_bytes: load(&c.user_bytes),
            batches: load(&c.batches),
            flushes: load(&c.flushes),
            flush_bytes: load(&c.flush_bytes),
            compactions: load(&c.compactions),
            compaction_read_bytes: load(&c.compaction_read_bytes),
            compaction_write_bytes: load(&c.compaction_write_bytes),
            slowdowns: load(&c.slowdowns),
            stalls: load(&c.stalls),
            torn_tails: load(&c.torn_tails),
            wal_bytes: wal.bytes,
            wal_segments: wal.segments,
            wal_oldest_segment_age: wal.oldest_age,
            wal_written_bytes: self.wal_written_bytes(),
            wal_replayed_bytes: load(&c.wal_replayed_bytes),
            block_cache_hits: hits,
            block_cache_misses: misses,
        }
    }

    /// Bytes appended to the WAL since open ([`Stats::wal_written_bytes`]), cheaply.
    pub fn wal_written_bytes(&self) -> u64 {
        self.inner.stats.wal_finished_bytes.load(Ordering::Relaxed) + self.writer.segment_bytes()
    }

    /// Bytes of the WAL segments on disk whose writes are all in SSTables: what only the pin
    /// ([`Engine::pin_wal`]) keeps, for a follower that has not persisted past them yet.
    pub fn wal_bytes_kept_for_pin(&self) -> u64 {
        let log_number = self.inner.manifest.lock().state().log_number;
        self.inner
            .wal_segments
            .lock()
            .range(..log_number)
            .map(|(_, segment)| segment.bytes)
            .sum()
    }

    /// The WAL segments on disk, the one being written being `live_bytes` long (holding
    /// records when `live_holds_records`: its memtable is not empty).
    fn wal_on_disk(&self, live_bytes: u64, live_holds_records: bool) -> WalOnDisk {
        let segments = self.inner.wal_segments.lock();
        let now = Instant::now();
        let mut wal = WalOnDisk {
            segments: segments.len() as u64,
            ..WalOnDisk::default()
        };
        for segment in segments.values() {
            let (bytes, holds_records) = match segment.max_seq {
                Some(_) => (segment.bytes, true),
                None => (live_bytes, live_holds_records),
            };
            wal.bytes += bytes;
            if holds_records {
                wal.oldest_age = wal
                    .oldest_age
                    .max(now.saturating_duration_since(segment.since));
            }
        }
        wal
    }

    /// Pins the WAL for a follower (the index): segments whose writes are all at or below `seq`
    /// are deleted once flushed (those already flushed at once); later ones are kept for
    /// [`Engine::changes_since`]. Has effect only with
    /// [`super::Options::retain_wal_until_pinned`].
    pub fn pin_wal(&self, seq: SeqNo) -> Result<()> {
        if self.inner.options.retain_wal_until_pinned {
            self.inner.wal_pin.store(seq, Ordering::Release);
            let log_number = self.inner.manifest.lock().state().log_number;
            self.inner.delete_obsolete_wal(log_number)?;
            self.inner.work_cv.notify_all();
        }
        Ok(())
    }
}

/// What [`Engine::wal_on_disk`] counts.
#[derive(Debug, Default)]
struct WalOnDisk {
    bytes: u64,
    segments: u64,
    oldest_age: Duration,
}

/// Which stored neighbours a put or delete writes cells of, and so must lock.
#[derive(Clone, Copy, Debug)]
pub(super) enum Neighbours {
    /// The targets of the stored out-edges (a put removes the in-edges of dropped out-edges).
    Targets,
    /// The targets and the sources of the stored in-edges (a delete removes both ends).
    TargetsAndSources,
}
