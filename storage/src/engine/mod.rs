//! The LSM engine: the public entry point that ties the WAL, memtables, SSTables, manifest and
//! compaction together (DESIGN.md §3).
//!
//! Write path: `throttle` (slow down / stall when flushes or compactions fall behind) ->
//! [`GroupCommitWriter`] (one thread: WAL append, one `fdatasync` per group, then the memtable
//! insert through [`CommitSink`]) -> acknowledged.
//! Read path: a consistent snapshot = the visible sequence number plus the memtables and the
//! [`Version`] taken under one lock; reads merge them newest first.
//! Background: one flush thread (immutable memtable -> L0 table -> manifest edit) and one
//! compaction thread; an I/O failure of either is retried with backoff while writes are refused
//! (module `health`: also the WAL failures that stop the engine, and the low-space watermark).
//!
//! WAL retention: a segment is deleted as soon as every write in it is in a live table (and, when
//! the WAL is pinned for the indexes, once they have persisted past it): after the flush that
//! covers it or the [`Engine::pin_wal`] that releases it, whichever comes last. A memtable that
//! holds writes but receives none for [`Options::memtable_idle_flush`] is rotated and flushed,
//! so its segment goes too while the node is idle; the WAL on disk is then bounded by the
//! memtables (`memtable_bytes` x (1 + `max_immutable_memtables`)) plus what the pin retains.
//!
//! Invariants: a write is acknowledged only after its WAL record is durable at the requested
//! level and it is visible to reads; a table is live only once its manifest edit is durable; a WAL
//! segment is deleted only once every write in it is in a live table (and, when the WAL is pinned
//! for the indexes, once they have persisted past it). Must never: delete a segment holding a
//! write that no live table holds.

mod background;
mod checkpoint;
mod entity_locks;
mod health;
mod provenance;
mod purge;
mod read;
mod write;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wal_retention_tests;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::{Prepared, WriteBatch};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, LockGuard, OsFileSystem};
use crate::hlc::HybridClock;
use crate::manifest::{self, ManifestState, ManifestWriter};
use crate::memtable::Memtable;
use crate::sstable::{BlockCache, Table, TableOptions};
use crate::tenant_drops::{TenantDrop, TenantDrops};
use crate::types::{SeqNo, Timestamp};
use crate::version::{NUM_LEVELS, Version};
use crate::wal::{self, GroupCommitWriter, RecoveryMode};
use entity_locks::EntityLocks;
use health::HealthMonitor;

pub use checkpoint::CheckpointInfo;
pub use health::{BackgroundTask, EngineState, Health};
pub use purge::{PurgeSelector, Purged};
pub use read::{ChangedPartition, EntityIter, PartitionIter, PartitionVersions};

/// Sees every committed batch exactly once, in sequence order, on the WAL writer thread: after
/// the batch is durable as asked and visible to reads, before its writer is acknowledged. The
/// indexes follow the engine through this, so a write is searchable when acknowledged.
///
/// Must be quick and must not call back into the engine's write path (it runs on the writer
/// thread); a panic fails the writer for good.
pub trait CommitObserver: Send + Sync + std::fmt::Debug + 'static {
    /// Work that needs nothing but `batch` itself (decoding, analysis), done on the thread
    /// that writes the batch before it is queued: writers do it side by side, and the one
    /// writer thread does less. What it returns comes back with the batch to
    /// [`CommitObserver::committed`] (which must not rely on getting it). Nothing by default.
    fn prepare(&self, _batch: &WriteBatch) -> Option<Prepared> {
        None
    }

    /// Batch `batch` was committed with its first operation at `base_seq`; `prepared` is what
    /// [`CommitObserver::prepare`] returned for it, if anything.
    fn committed(&self, base_seq: SeqNo, batch: &WriteBatch, prepared: Option<Prepared>);
}
pub use write::Stats;

/// Engine tuning. Every field has a production default ([`Options::default`]).
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes a memtable may hold before it is rotated and flushed (default 64 MiB).
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush before writers stall (default 2).
    pub max_immutable_memtables: usize,
    /// SSTable block size and bloom bits.
    pub table: TableOptions,
    /// Target size of a compaction output table (default 64 MiB).
    pub target_file_bytes: u64,
    /// L0 tables that trigger a compaction into L1 (default 4).
    pub l0_compaction_trigger: usize,
    /// L0 tables at which each write is delayed by 1 ms (default 12).
    pub l0_slowdown_trigger: usize,
    /// L0 tables at which writes stall until compaction catches up (default 20).
    pub l0_stop_trigger: usize,
    /// Target bytes of L1; each deeper level is `level_multiplier` times larger (default 256 MiB).
    pub level1_bytes: u64,
    /// Size ratio between adjacent levels (default 10).
    pub level_multiplier: u64,
    /// Bytes of decoded blocks kept in the block cache (default 256 MiB).
    pub block_cache_bytes: u64,
    /// How long tombstones and markers must be kept before the bottom level may drop them
    /// (default 10 days; must exceed the hint window and the repair interval).
    pub gc_grace: Duration,
    /// How to treat a damaged WAL at open.
    pub recovery: RecoveryMode,
    /// Keep WAL segments until [`Engine::pin_wal`] says a follower (the index) has persisted
    /// past them, so it can catch up with [`Engine::changes_since`] after a restart.
    pub retain_wal_until_pinned: bool,
    /// A memtable holding writes that receives none for this long is rotated and flushed, so
    /// that its WAL segment can be deleted while the node is idle (default 30 s; `None`: only
    /// when full or on [`Engine::flush`]).
    pub memtable_idle_flush: Option<Duration>,
    /// The low-space watermark: writes are refused while the data volume has fewer bytes
    /// available, so that flushes, compactions and index dumps still have room (default
    /// 256 MiB; 0 disables it). See [`Health`].
    pub min_free_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 2,
            table: TableOptions::default(),
            target_file_bytes: 64 << 20,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            level1_bytes: 256 << 20,
            level_multiplier: 10,
            block_cache_bytes: 256 << 20,
            gc_grace: Duration::from_secs(10 * 24 * 3600),
            recovery: RecoveryMode::default(),
            retain_wal_until_pinned: false,
            memtable_idle_flush: Some(Duration::from_secs(30)),
            min_free_bytes: 256 << 20,
        }
    }
}

impl Options {
    /// Checks the options are usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_owned()));
        if self.memtable_bytes < 64 << 10 {
            return bad("memtable_bytes must be at least 64 KiB");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.l0_compaction_trigger == 0
            || self.l0_slowdown_trigger < self.l0_compaction_trigger
            || self.l0_stop_trigger < self.l0_slowdown_trigger
        {
            return bad("need 0 < l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger");
        }
        if self.level_multiplier < 2 {
            return bad("level_multiplier must be at least 2");
        }
        if self.target_file_bytes < 64 << 10 || self.level1_bytes < self.target_file_bytes {
            return bad("need 64 KiB <= target_file_bytes <= level1_bytes");
        }
        if self.table.block_size < 256 || self.table.bloom_bits_per_key == 0 {
            return bad("table.block_size must be >= 256 and bloom_bits_per_key >= 1");
        }
        if self.memtable_idle_flush.is_some_and(|idle| idle.is_zero()) {
            return bad("memtable_idle_flush must be positive (None disables it)");
        }
        Ok(())
    }
}

/// The memtables and tables a read sees, swapped as a whole under one lock.
#[derive(Debug)]
struct LsmState {
    mem: Arc<Memtable>,
    /// Oldest first.
    imm: VecDeque<Arc<Memtable>>,
    version: Arc<Version>,
    /// The tenant drops reads, flushes and compactions apply.
    drops: Arc<TenantDrops>,
}

/// One WAL segment on disk, as the engine tracks it.
#[derive(Clone, Copy, Debug)]
struct WalSegment {
    /// Highest sequence number in it (`None` while it is being written).
    max_seq: Option<SeqNo>,
    /// Its length once finished (0 while it is being written: the writer knows that one).
    bytes: u64,
    /// When it was created (for a segment found at open: when the engine opened).
    since: Instant,
}

impl WalSegment {
    fn finished(max_seq: SeqNo, bytes: u64, since: Instant) -> Self {
        Self {
            max_seq: Some(max_seq),
            bytes,
            since,
        }
    }

    fn live(since: Instant) -> Self {
        Self {
            max_seq: None,
            bytes: 0,
            since,
        }
    }
}

/// Background coordination: what the flush and compaction threads wait on.
#[derive(Debug, Default)]
struct WorkState {
    shutdown: bool,
}

/// Shared engine internals (the [`wal::CommitSink`] and the background threads hold it).
#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    options: Options,
    clock: HybridClock,
    state: RwLock<LsmState>,
    visible_seq: AtomicU64,
    manifest: Mutex<ManifestWriter>,
    cache: Arc<BlockCache>,
    next_table_number: AtomicU64,
    work: Mutex<WorkState>,
    /// Signalled when there is background work, or when it finished (stalled writers wait here).
    work_cv: Condvar,
    /// One compaction at a time (background or manual).
    compaction: Mutex<write::CompactionPointers>,
    /// The WAL segments on disk, by number.
    wal_segments: Mutex<BTreeMap<u64, WalSegment>>,
    wal_pin: AtomicU64,
    /// Held while the tenant drops file is rewritten.
    drops_file: Mutex<()>,
    entity_locks: EntityLocks,
    observer: Option<Arc<dyn CommitObserver>>,
    stats: write::Counters,
    health: HealthMonitor,
    closed: AtomicBool,
}

/// The storage engine. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    writer: GroupCommitWriter,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The data directory's `LOCK`: one engine per directory at a time. Held until
    /// [`Engine::close`] has stopped every thread that writes files.
    lock: Mutex<Option<LockGuard>>,
}

/// The lock file of a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Kinds of files in the data directory.
fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

fn parse_table_name(name: &str) -> Option<u64> {
    name.strip_suffix(".sst")?.parse().ok()
}

impl Engine {
    /// Opens (or creates) the database in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        Self::open_with_fs(Arc::new(OsFileSystem), dir.as_ref(), options)
    }

    /// Opens (or creates) the database in `dir` through `fs`.
    ///
    /// Recovery: replay the manifest, open its tables, replay WAL segments not yet covered by
    /// tables (truncating a torn tail of the last one), flush what was replayed, write a fresh
    /// manifest, delete orphans, then start the writer and background threads.
    pub fn open_with_fs(fs: Arc<dyn FileSystem>, dir: &Path, options: Options) -> Result<Self> {
        Self::open_observed(fs, dir, options, None)
    }

    /// [`Engine::open_with_fs`] with a [`CommitObserver`] that sees every later commit.
    /// (Writes recovered from the WAL at open are not replayed to it: followers catch up with
    /// [`Engine::changes_since`].)
    pub fn open_observed(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: Options,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Self> {
        options.validate()?;
        fs.create_dir_all(dir)?;
        let lock = fs.lock_exclusive(&dir.join(LOCK_FILE))?;
        let loaded = manifest::load(fs.as_ref(), dir)?;
        let (old_manifest, mut mstate) = match loaded {
            Some((n, s)) => (Some(n), s),
            None => (
                None,
                ManifestState {
                    next_table_number: 1,
                    log_number: 1,
                    ..Default::default()
                },
            ),
        };
        let cache = Arc::new(BlockCache::new(options.block_cache_bytes));
        let mut version = Version::default();
        let mut added = Vec::new();
        for &(level, number) in &mstate.tables {
            if usize::from(level) >= NUM_LEVELS {
                return Err(Error::corruption(
                    dir.join(manifest::CURRENT),
                    0,
                    format!("table {number} at level {level} beyond the last level"),
                ));
            }
            let table = Table::open(fs.as_ref(), &table_path(dir, number), number, cache.clone())?;
            added.push((usize::from(level), Arc::new(table)));
        }
        version = version.apply(&[], &added);
        let clock = HybridClock::new();
        for (_, t) in version.tables() {
            clock.observe(t.properties().max_ts);
        }
        // Writes after a restart must come after every drop, whatever the wall clock did.
        let drops = TenantDrops::load(fs.as_ref(), dir)?;
        for (_, drop) in drops.iter() {
            clock.observe(drop.ts);
        }

        // Replay the WAL into one memtable.
        let replayed = Arc::new(Memtable::new(0));
        let report = wal::recover(
            fs.as_ref(),
            dir,
            mstate.log_number,
            options.recovery,
            |base, batch| {
                for entry in batch.into_entries(base) {
                    clock.observe(entry.key.ts);
                    replayed.insert(entry);
                }
                Ok(())
            },
        )?;
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(segment = torn.segment, offset = torn.offset, dropped_bytes = torn.dropped_bytes,
                reason = %torn.reason, "truncated a torn WAL tail");
        }
        let last_seq = mstate
            .last_seq
            .max(version.max_seq())
            .max(report.last_seq.unwrap_or(0));
        let next_segment = report
            .segments
            .iter()
            .map(|s| s.number + 1)
            .max()
            .unwrap_or(1)
            .max(mstate.log_number);
        let opened = Instant::now();
        let mut replayed_bytes: u64 = report.segments.iter().map(|s| s.bytes).sum();
        let mut wal_segments: BTreeMap<u64, WalSegment> = report
            .segments
            .iter()
            .map(|s| {
                let segment = WalSegment::finished(s.max_seq.unwrap_or(0), s.bytes, opened);
                (s.number, segment)
            })
            .collect();

        // Persist what the WAL replay rebuilt, so the new manifest covers every old segment.
        if !replayed.is_empty() {
            let number = mstate.next_table_number;
            mstate.next_table_number += 1;
            let table = background::write_table(
                fs.as_ref(),
                dir,
                number,
                &options,
                &cache,
                &replayed,
                &drops,
            )?;
            if let Some(table) = table {
                mstate.tables.push((0, number));
                version = version.apply(&[], &[(0, Arc::new(table))]);
            }
        }
        mstate.log_number = next_segment;
        mstate.last_seq = last_seq;
        let manifest_number = old_manifest.map_or(1, |n| n + 1);
        let manifest = ManifestWriter::create(fs.clone(), dir, manifest_number, mstate.clone())?;

        let pin = if options.retain_wal_until_pinned {
            0
        } else {
            u64::MAX
        };
        if options.retain_wal_until_pinned {
            // Segments already covered by tables but kept for followers: learn what they hold.
            for number in wal::list_segments(fs.as_ref(), dir)? {
                if wal_segments.contains_key(&number) {
                    continue;
                }
                let mut max_seq = 0;
                let bytes = wal::read_segment(fs.as_ref(), dir, number, |base, batch| {
                    max_seq = max_seq.max(base + batch.len() as u64 - 1);
                    Ok(())
                })?;
                replayed_bytes += bytes;
                wal_segments.insert(number, WalSegment::finished(max_seq, bytes, opened));
            }
        } else {
            wal_segments.clear();
        }
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            fs: fs.clone(),
            clock,
            state: RwLock::new(LsmState {
                mem: Arc::new(Memtable::new(next_segment)),
                imm: VecDeque::new(),
                version: Arc::new(version),
                drops: Arc::new(drops),
            }),
            visible_seq: AtomicU64::new(last_seq),
            manifest: Mutex::new(manifest),
            cache,
            next_table_number: AtomicU64::new(mstate.next_table_number),
            work: Mutex::new(WorkState::default()),
            work_cv: Condvar::new(),
            compaction: Mutex::new(write::CompactionPointers::default()),
            wal_segments: Mutex::new(wal_segments),
            wal_pin: AtomicU64::new(pin),
            drops_file: Mutex::new(()),
            entity_locks: EntityLocks::default(),
            observer,
            stats: write::Counters::default(),
            health: HealthMonitor::default(),
            options,
            closed: AtomicBool::new(false),
        });
        inner
            .stats
            .torn_tails
            .fetch_add(u64::from(report.torn_tail.is_some()), Ordering::Relaxed);
        inner
            .stats
            .wal_replayed_bytes
            .store(replayed_bytes, Ordering::Relaxed);
        inner.delete_orphans(old_manifest, manifest_number)?;
        inner
            .wal_segments
            .lock()
            .insert(next_segment, WalSegment::live(Instant::now()));
        let writer = GroupCommitWriter::start(
            fs,
            dir.to_owned(),
            next_segment,
            last_seq + 1,
            inner.clone(),
        )?;
        let threads = background::spawn(&inner)?;
        Ok(Self {
            inner,
            writer,
            threads: Mutex::new(threads),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The node's hybrid logical clock (timestamps for writes).
    pub fn clock(&self) -> &HybridClock {
        &self.inner.clock
    }

    /// Whether the engine accepts writes and, if not, why (re-reads the free space of the data
    /// volume when the last check is older than 10 ms).
    pub fn health(&self) -> Health {
        self.inner.check_space();
        self.inner.health.health()
    }

    /// Records that a background task run outside the engine (the index dump) failed on its
    /// `attempt`-th try in a row, because the volume is full (`no_space`) or with the path-free
    /// `cause`: writes are refused until [`Engine::task_recovered`]. The caller retries after
    /// [`Engine::retry_backoff`].
    pub fn task_failed(&self, task: BackgroundTask, no_space: bool, cause: &str, attempt: u32) {
        self.inner.health.fault(task, no_space, cause, attempt);
    }

    /// Clears the fault [`Engine::task_failed`] recorded for `task`.
    pub fn task_recovered(&self, task: BackgroundTask) {
        self.inner.health.recovered(task);
    }

    /// The wait before retry `attempt` (1-based) of a failed background task.
    pub fn retry_backoff(attempt: u32) -> Duration {
        health::backoff(attempt)
    }

    /// The highest sequence number visible to reads.
    pub fn last_seq(&self) -> SeqNo {
        self.inner.visible_seq.load(Ordering::Acquire)
    }

    /// Drops every cell of `tenant` written at or before `ts` (a tenant-wide range tombstone,
    /// [`crate::tenant_drops`]): durable when this returns, hidden from reads at once, left out
    /// of flushes and compactions from then on. Cells written later (above `ts`) stay.
    pub fn drop_tenant(&self, tenant: &str, ts: Timestamp) -> Result<TenantDrop> {
        crate::key::validate_tenant(tenant)?;
        // Allowed below the free-space watermark: dropping data is how space comes back.
        self.inner.check_open()?;
        // One drop at a time: each writes the whole file.
        let _writing = self.inner.drops_file.lock();
        self.inner.clock.observe(ts);
        let drop = TenantDrop {
            ts,
            seq: self.last_seq(),
        };
        let next = self.inner.state.read().drops.with(tenant, drop);
        next.store(self.inner.fs.as_ref(), &self.inner.dir)?;
        let recorded = next.get(tenant).expect("the tenant was just added");
        self.inner.state.write().drops = Arc::new(next);
        Ok(recorded)
    }

    /// Every tenant drop recorded.
    pub fn tenant_drops(&self) -> Arc<TenantDrops> {
        self.inner.state.read().drops.clone()
    }

    /// Flushes every memtable to L0 and waits until it is durable in the manifest.
    pub fn flush(&self) -> Result<()> {
        if !self.inner.state.read().mem.is_empty() {
            self.writer.rotate()?;
        }
        self.inner.wait_flushed()
    }

    /// Flushes, then compacts every level down until all data is in one sorted run at the
    /// deepest level holding data (a full, manual compaction); tables there that may hold
    /// cells of a dropped tenant or entries older than `gc_grace` are rewritten in place too,
    /// so no file keeps a dropped tenant's cells, an expired tombstone or marker, or a cell
    /// one hides.
    pub fn compact(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("the engine is closed".to_owned()));
        }
        self.flush()?;
        self.inner.compact_all()
    }

    /// Stops the writer (draining and syncing queued writes), then the background threads,
    /// then releases the directory lock. Later writes fail with [`Error::Unavailable`].
    /// Dropping the engine closes it too.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.writer.close();
        self.inner.work.lock().shutdown = true;
        self.inner.work_cv.notify_all();
        for handle in self.threads.lock().drain(..) {
            if handle.join().is_err() {
                tracing::error!("a storage background thread panicked");
            }
        }
        self.lock.lock().take();
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the storage engine failed");
        }
    }
}

impl Inner {
    /// Deletes files that no live state refers to: tables not in the manifest, WAL segments
    /// already covered (unless retained for followers), old manifests and temp files.
    fn delete_orphans(&self, old_manifest: Option<u64>, current_manifest: u64) -> Result<()> {
        let live: std::collections::HashSet<u64> = self
            .state
            .read()
            .version
            .tables()
            .map(|(_, t)| t.file_number())
            .collect();
        let log_number = self.manifest.lock().state().log_number;
        let retained = self.wal_segments.lock();
        for name in self.fs.list(&self.dir)? {
            let path = self.dir.join(&name);
            let orphan = if let Some(n) = parse_table_name(&name) {
                !live.contains(&n)
            } else if let Some(n) = manifest::parse_manifest_name(&name) {
                n != current_manifest
                    && (old_manifest.is_none_or(|old| n <= old) || n < current_manifest)
            } else if let Some(n) = wal::parse_segment_name(&name) {
                n < log_number && !retained.contains_key(&n)
            } else {
                name.ends_with(".tmp")
            };
            if orphan {
                tracing::info!(file = %path.display(), "removing orphan file");
                self.fs.remove(&path)?;
            }
        }
        drop(retained);
        self.fs.sync_dir(&self.dir)
    }

    /// Fails when the engine is closed, stopped, or a background task is failing (what a
    /// manual flush or compaction waiting on the background threads must not wait through).
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("the engine is closed".to_owned()));
        }
        match self.health.background_refusal() {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// [`Inner::check_open`], and fails too while the data volume is below the watermark.
    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("the engine is closed".to_owned()));
        }
        self.check_space();
        match self.health.refusal() {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Re-reads the free space of the data volume (at most every few milliseconds).
    fn check_space(&self) {
        self.health.check_space(self.options.min_free_bytes, || {
            self.fs.available_space(&self.dir)
        });
    }
}

/// How long stalled writers wait between re-checks (also bounds shutdown latency).
const STALL_POLL: Duration = Duration::from_millis(50);
