//! The background indexer: one thread that moves vectors from each tenant's exact-scan tail
//! into HNSW, rebuilds a tenant's index when too many of its points are stale, expires the
//! entities whose expiry time has come (module `expiry`; a failed sweep is logged and retried
//! with the engine's backoff), and dumps the
//! indexes (after which the engine releases the WAL they cover) when writes came since the last
//! dump and either [`StoreOptions::dump_interval`] has passed (not while a bulk receive holds
//! it: [`super::UnifiedStore::hold_periodic_dumps`]), or the engine has written
//! [`StoreOptions::dump_wal_bytes`] of WAL since then, or that much WAL already in SSTables is
//! kept only for the indexes (a segment outgrows its memtable when flushes fall behind, so the
//! bytes written since a dump can understate what it pins): the WAL kept for the indexes, and so the
//! WAL a restart reads to catch them up, stays near that bound whatever the write rate or
//! uptime. A failed dump is reported to the engine (writes are refused meanwhile: the WAL it
//! pins keeps growing) and retried with the engine's backoff instead of either trigger; the
//! first success clears it.
//!
//! Never blocks writers or queries for long: each step indexes a bounded batch, and rebuilds
//! build a new graph beside the old one before swapping it in. A stop request cancels a running
//! rebuild within a few hundred insertions (the old graph stays), so closing the store never
//! waits for one. The thread runs at a lower CPU priority (nice +10 on Linux), like RocksDB's
//! low-priority compaction pool, and so do the threads of its own pool on which a batch links on
//! every core: HNSW insertion is the most CPU-hungry work of the node, and it only gets the
//! cycles writers and queries leave, so an ingest burst runs at the write path's
//! speed until the tail bound slows it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use allidb_storage::engine::BackgroundTask;
use allidb_storage::{Engine, SeqNo};
use parking_lot::{Condvar, Mutex};

use super::{Indexes, StoreOptions, dump_indexes};
use crate::error::{Error, Result};
use crate::telemetry;
use crate::vector::Rebuild;

/// Nice value of the indexer thread (0 is normal, 19 the lowest priority).
const INDEXER_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`INDEXER_NICE`]; a failure is logged, never
/// fatal (the indexer then competes with writers at normal priority).
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its three integer arguments. On Linux, PRIO_PROCESS
        // with who = 0 names the calling thread alone (threads are tasks with their own nice
        // value), so no other thread of the daemon is affected.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, INDEXER_NICE) };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the indexer's CPU priority");
        }
    }
}

/// Idle wait between passes when there is nothing to index.
const IDLE: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

/// Handle of the running indexer thread.
#[derive(Debug)]
pub struct IndexerHandle {
    stop: Arc<Stop>,
    thread: JoinHandle<()>,
}

impl IndexerHandle {
    /// Starts the thread; the index dump on disk covers the writes up to `dumped_seq`.
    pub fn start(
        indexes: Arc<Indexes>,
        engine: Arc<Engine>,
        index_dir: PathBuf,
        options: StoreOptions,
        dumped_seq: SeqNo,
    ) -> Result<Self> {
        let stop = Arc::new(Stop::default());
        let thread_stop = stop.clone();
        let dumps = Dumps::new(&engine, dumped_seq);
        let thread = std::thread::Builder::new()
            .name("allidb-indexer".to_owned())
            .spawn(move || run(&indexes, &engine, &index_dir, &options, &thread_stop, dumps))
            .map_err(|e| Error::io(PathBuf::from("allidb-indexer thread"), e))?;
        Ok(Self { stop, thread })
    }

    /// Asks the thread to stop and waits for it.
    pub fn stop(self) {
        *self.stop.requested.lock() = true;
        self.stop.wake.notify_all();
        if self.thread.join().is_err() {
            tracing::error!("the indexer thread panicked");
        }
    }
}

fn run(
    indexes: &Indexes,
    engine: &Engine,
    index_dir: &std::path::Path,
    options: &StoreOptions,
    stop: &Stop,
    dumps: Dumps,
) {
    lower_own_priority();
    // Batches link on all cores (`FlatHnsw::insert_batch`) in this pool, whose threads run at
    // the indexer's low priority too.
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("allidb-indexer-{i}"))
        .start_handler(|_| lower_own_priority())
        .build();
    match pool {
        Ok(pool) => pool.install(|| passes(indexes, engine, index_dir, options, stop, dumps)),
        Err(err) => {
            tracing::warn!(%err, "no indexer thread pool; batches link on the shared pool");
            passes(indexes, engine, index_dir, options, stop, dumps);
        }
    }
}

/// When the indexes were last dumped, and what the dump covers.
#[derive(Debug)]
struct Dumps {
    /// When the last dump (or the last failed attempt) ended, or the indexer started.
    last: Instant,
    /// The dump on disk covers every write up to this sequence number.
    covered: SeqNo,
    /// The engine's [`allidb_storage::Stats::wal_written_bytes`] when the last dump began.
    wal_written: u64,
    /// Failed attempts in a row.
    failures: u32,
}

impl Dumps {
    fn new(engine: &Engine, covered: SeqNo) -> Self {
        Self {
            last: Instant::now(),
            covered,
            wal_written: engine.wal_written_bytes(),
            failures: 0,
        }
    }

    /// Whether a dump is due: writes the dump does not cover were applied, and the interval
    /// passed (unless `held`: a bulk receive holds the periodic dump), or the WAL written
    /// since the last dump or the flushed WAL kept only for the indexes reached its bound
    /// (after a failure: the retry backoff passed).
    fn due(&self, applied: SeqNo, engine: &Engine, options: &StoreOptions, held: bool) -> bool {
        if applied <= self.covered {
            return false;
        }
        if self.failures > 0 {
            return self.last.elapsed() >= Engine::retry_backoff(self.failures);
        }
        (!held && self.last.elapsed() >= options.dump_interval)
            || engine.wal_written_bytes().saturating_sub(self.wal_written) >= options.dump_wal_bytes
            || engine.wal_bytes_kept_for_pin() >= options.dump_wal_bytes
    }
}

/// The indexer's loop: index, rebuild and dump passes until a stop is requested.
fn passes(
    indexes: &Indexes,
    engine: &Engine,
    index_dir: &std::path::Path,
    options: &StoreOptions,
    stop: &Stop,
    mut dumps: Dumps,
) {
    let mut sweep_failures = 0u32;
    let mut next_sweep = Instant::now();
    loop {
        if *stop.requested.lock() {
            return;
        }
        let mut worked = false;
        if Instant::now() >= next_sweep {
            match indexes.sweep_expired(engine) {
                Ok(swept) => {
                    worked |= swept > 0;
                    sweep_failures = 0;
                }
                Err(e) => {
                    sweep_failures = sweep_failures.saturating_add(1);
                    next_sweep = Instant::now() + Engine::retry_backoff(sweep_failures);
                    tracing::warn!(error = %e, attempt = sweep_failures, "expiring entities failed; will retry");
                }
            }
        }
        for (tenant, state) in indexes.all() {
            let vectors = &state.indexes.vectors;
            worked |= vectors.index_pending(options.indexer_batch) > 0;
            match state.retry_unindexed(&tenant, engine) {
                Ok(0) => {}
                Ok(indexed) => {
                    tracing::info!(%tenant, indexed, "vectors of a new dimension indexed");
                    worked = true;
                }
                Err(e) => {
                    tracing::error!(%tenant, error = %e, "indexing refused vectors again failed")
                }
            }
            if vectors.stale_ratio() > options.rebuild_stale_ratio {
                tracing::info!(%tenant, stale = vectors.stale_ratio(), "rebuilding a vector index");
                match vectors.rebuild(&|| *stop.requested.lock()) {
                    Ok(Rebuild::Swapped) => telemetry::rebuild_finished(true),
                    Ok(Rebuild::Cancelled) => {
                        tracing::info!(%tenant, "vector index rebuild cancelled: the store is closing");
                        return;
                    }
                    Err(e) => {
                        telemetry::rebuild_finished(false);
                        tracing::error!(%tenant, error = %e, "vector index rebuild failed");
                    }
                }
                worked = true;
            }
        }
        let applied = indexes.applied_seq.load(Ordering::Acquire);
        let held = indexes.dump_holds.load(Ordering::Acquire) > 0;
        if dumps.due(applied, engine, options, held) {
            let wal_written = engine.wal_written_bytes();
            match dump_indexes(indexes, engine, index_dir) {
                Ok(covered) => {
                    dumps.covered = covered;
                    dumps.wal_written = wal_written;
                    if dumps.failures > 0 {
                        dumps.failures = 0;
                        engine.task_recovered(BackgroundTask::IndexDump);
                    }
                }
                Err(e) => {
                    dumps.failures = dumps.failures.saturating_add(1);
                    tracing::error!(error = %e, attempt = dumps.failures, "index dump failed; will retry");
                    engine.task_failed(
                        BackgroundTask::IndexDump,
                        e.is_no_space(),
                        &e.cause(),
                        dumps.failures,
                    );
                }
            }
            dumps.last = Instant::now();
        }
        if !worked {
            let mut requested = stop.requested.lock();
            if !*requested {
                stop.wake.wait_for(&mut requested, IDLE);
            }
        }
    }
}
