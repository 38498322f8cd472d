//! Background work: the flush thread (oldest immutable memtable -> L0 table -> manifest edit ->
//! obsolete WAL segments deleted) and the compaction thread, plus the manual flush/compact
//! entry points that wait for them.
//!
//! Invariant: a table becomes live only after its manifest edit is durable, and input tables
//! and WAL segments are deleted only after the edit that makes them obsolete is durable.
//!
//! Failures: an I/O error fails the step, which is retried with backoff (`health`) while writes
//! are refused; the files the step was writing are removed first, so retries on a full volume
//! do not fill it further. (Tables whose manifest commit failed are kept: the edit may have
//! become durable anyway; the next open removes them if it did not.) Any other error — damaged
//! data — stops the engine until a restart.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::health::{self, BackgroundTask};
use super::{Inner, Options, STALL_POLL, table_path};
use crate::cell::{MarkerShadow, Shadowed};
use crate::compaction::{self, CompactionFilter, CompactionJob};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::hlc::wall_micros;
use crate::manifest::VersionEdit;
use crate::memtable::{Memtable, MemtableIter};
use crate::merge::{MergeIter, Source};
use crate::sstable::{BlockCache, Table, TableBuilder};
use crate::tenant_drops::TenantDrops;
use crate::types::Timestamp;
use crate::version::NUM_LEVELS;

/// Writes the newest version of every cell of `mem` as table `number`, less the cells a tenant
/// drop covers and the cells an entity marker of the same memtable hides (the compaction rule:
/// the marker stays), so that a full compaction that only moves the table down a level leaves
/// no file holding them; `None` if nothing is left (no file is left).
pub(super) fn write_table(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    options: &Options,
    cache: &Arc<BlockCache>,
    mem: &Arc<Memtable>,
    drops: &TenantDrops,
) -> Result<Option<Table>> {
    if mem.is_empty() {
        return Ok(None);
    }
    let path = table_path(dir, number);
    let written = (|| {
        let mut builder = TableBuilder::new(fs.create(&path)?, path.clone(), options.table);
        let mut iter = MemtableIter::new(mem.clone());
        let mut last: Option<Vec<u8>> = None;
        let mut shadow = MarkerShadow::default();
        let mut kept = 0usize;
        while let Some(entry) = iter.next_entry() {
            if last.as_deref() == Some(entry.key.user_key.as_slice()) {
                continue;
            }
            last = Some(entry.key.user_key.clone());
            if drops.hides(&entry.key.user_key, entry.key.ts) {
                continue;
            }
            let key = &entry.key;
            if shadow.next(&key.user_key, key.ts, entry.value.as_deref()) == Shadowed::Hidden {
                continue;
            }
            builder.add(&entry)?;
            kept += 1;
        }
        if kept == 0 {
            return Ok(false);
        }
        builder.finish()?;
        fs.sync_dir(dir).map(|()| true)
    })();
    match written {
        Ok(true) => Table::open(fs, &path, number, cache.clone()).map(Some),
        Ok(false) => {
            remove_partial(fs, &[path]);
            Ok(None)
        }
        Err(error) => {
            remove_partial(fs, &[path]);
            Err(error)
        }
    }
}

/// Removes the files of a failed step (best effort: what remains is an orphan the next open
/// removes).
pub(super) fn remove_partial(fs: &dyn FileSystem, paths: &[std::path::PathBuf]) {
    for path in paths {
        if fs.exists(path)
            && let Err(error) = fs.remove(path)
        {
            tracing::warn!(%error, "cannot remove the file of a failed background step");
        }
    }
}

pub(super) fn spawn(inner: &Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let spawn_loop = |name: &str, task: BackgroundTask, body: fn(&Inner) -> Result<bool>| {
        let inner = inner.clone();
        let dir = inner.dir.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || inner.background_loop(task, body))
            .map_err(|e| Error::io(dir, e))
    };
    Ok(vec![
        spawn_loop("allidb-flush", BackgroundTask::Flush, Inner::flush_one)?,
        spawn_loop(
            "allidb-compact",
            BackgroundTask::Compaction,
            Inner::compact_one,
        )?,
    ])
}

impl Inner {
    /// Runs `step` until shutdown; `step` returns whether it did work (if not, wait for a
    /// signal). An I/O failure is retried with backoff (see the module doc); any other failure
    /// stops the engine and ends the loop.
    fn background_loop(&self, task: BackgroundTask, step: fn(&Inner) -> Result<bool>) {
        let mut failures = 0u32;
        loop {
            if self.work.lock().shutdown {
                return;
            }
            match step(self) {
                Ok(worked) => {
                    if failures > 0 {
                        failures = 0;
                        self.health.recovered(task);
                        self.work_cv.notify_all();
                    }
                    if !worked {
                        let mut work = self.work.lock();
                        if !work.shutdown {
                            self.work_cv.wait_for(&mut work, STALL_POLL);
                        }
                    }
                }
                Err(error @ Error::Io { .. }) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(task = task.as_str(), %error, attempt = failures, "background I/O failed");
                    self.health
                        .fault(task, error.is_no_space(), &error.cause(), failures);
                    self.work_cv.notify_all();
                    self.sleep_unless_shutdown(health::backoff(failures));
                }
                Err(error) => {
                    self.health.stop(task.as_str(), &error);
                    self.work_cv.notify_all();
                    return;
                }
            }
        }
    }

    /// Waits `wait`, or less if the engine shuts down meanwhile.
    fn sleep_unless_shutdown(&self, wait: std::time::Duration) {
        let deadline = std::time::Instant::now() + wait;
        let mut work = self.work.lock();
        while !work.shutdown && !self.work_cv.wait_until(&mut work, deadline).timed_out() {}
    }

    /// Flushes the oldest immutable memtable, if any.
    fn flush_one(&self) -> Result<bool> {
        let (mem, next_first_segment, drops) = {
            let state = self.state.read();
            let Some(mem) = state.imm.front().cloned() else {
                return Ok(false);
            };
            let next = state.imm.get(1).unwrap_or(&state.mem).first_segment();
            (mem, next, state.drops.clone())
        };
        let number = self.next_table_number.fetch_add(1, Ordering::Relaxed);
        let table = write_table(
            self.fs.as_ref(),
            &self.dir,
            number,
            &self.options,
            &self.cache,
            &mem,
            &drops,
        )?;
        let mut edit = VersionEdit {
            log_number: Some(next_first_segment),
            next_table_number: Some(number + 1),
            last_seq: Some(mem.max_seq()),
            ..Default::default()
        };
        let added: Vec<(usize, Arc<Table>)> = table.map(|t| (0, Arc::new(t))).into_iter().collect();
        edit.added = added
            .iter()
            .map(|(l, t)| (*l as u8, t.file_number()))
            .collect();
        self.manifest.lock().commit(edit)?;
        let bytes: u64 = added.iter().map(|(_, t)| t.properties().file_size).sum();
        {
            let mut state = self.state.write();
            state.imm.pop_front();
            state.version = Arc::new(state.version.apply(&[], &added));
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.delete_obsolete_wal(next_first_segment)?;
        self.work_cv.notify_all();
        Ok(true)
    }

    /// Deletes WAL segments below `log_number` whose writes the WAL pin also covers.
    pub(super) fn delete_obsolete_wal(&self, log_number: u64) -> Result<()> {
        let pin = self.wal_pin.load(Ordering::Acquire);
        let mut segments = self.wal_segments.lock();
        let obsolete: Vec<u64> = segments
            .iter()
            .filter(|(n, s)| **n < log_number && s.max_seq.is_some_and(|m| m <= pin))
            .map(|(n, _)| *n)
            .collect();
        for n in &obsolete {
            segments.remove(n);
        }
        drop(segments);
        // Segments never tracked (retention off) are deleted by number.
        let untracked_below = if self.options.retain_wal_until_pinned {
            0
        } else {
            log_number
        };
        for name in self.fs.list(&self.dir)? {
            if let Some(n) = crate::wal::parse_segment_name(&name)
                && (obsolete.contains(&n) || n < untracked_below)
            {
                self.fs.remove(&self.dir.join(&name))?;
            }
        }
        Ok(())
    }

    /// Waits until every immutable memtable present now has been flushed.
    pub(super) fn wait_flushed(&self) -> Result<()> {
        loop {
            self.check_open()?;
            if self.state.read().imm.is_empty() {
                return Ok(());
            }
            let mut work = self.work.lock();
            self.work_cv.wait_for(&mut work, STALL_POLL);
        }
    }

    /// Runs one background compaction, if the tree needs one.
    fn compact_one(&self) -> Result<bool> {
        let mut pointers = self.compaction.lock();
        let version = self.state.read().version.clone();
        let o = &self.options;
        let Some(job) = compaction::pick(
            &version,
            &mut pointers,
            o.l0_compaction_trigger,
            o.level1_bytes,
            o.level_multiplier,
        ) else {
            return Ok(false);
        };
        self.run_compaction(&job)?;
        Ok(true)
    }

    /// Manual full compaction: every level merged into the next, down to the deepest level
    /// holding data.
    pub(super) fn compact_all(&self) -> Result<()> {
        let _pointers = self.compaction.lock();
        loop {
            self.check_open()?;
            let version = self.state.read().version.clone();
            let deepest = (0..NUM_LEVELS)
                .rev()
                .find(|l| !version.level(*l).is_empty());
            let Some(deepest) = deepest else {
                return Ok(());
            };
            let level = (0..deepest.max(1)).find(|l| !version.level(*l).is_empty());
            let Some(level) = level else {
                return self.rewrite_deepest(&version, deepest);
            };
            let job = compaction::pick_whole_level(&version, level).expect("the level has tables");
            self.run_compaction(&job)?;
        }
    }

    /// Rewrites in place the tables of `level` (the deepest holding data) that may hold
    /// something a bottommost merge drops: cells of a dropped tenant, or entries older than the
    /// tombstone grace (an expired tombstone or entity marker, or a cell one hides), so that
    /// those leave every file.
    fn rewrite_deepest(&self, version: &crate::version::Version, level: usize) -> Result<()> {
        let drops = self.state.read().drops.clone();
        let gc_cutoff = self.gc_cutoff();
        let covered: Vec<Arc<Table>> = version
            .level(level)
            .iter()
            .filter(|t| {
                let p = t.properties();
                p.min_ts < gc_cutoff
                    || drops.may_cover(&p.smallest.user_key, &p.largest.user_key, p.min_ts)
            })
            .cloned()
            .collect();
        match CompactionJob::rewrite_in_place(version, level, covered) {
            Some(job) => self.run_compaction(&job),
            None => Ok(()),
        }
    }

    /// Entries older than this (wall clock minus `gc_grace`) may be purged by a bottommost
    /// merge when they are tombstones or markers.
    fn gc_cutoff(&self) -> Timestamp {
        wall_micros().saturating_sub(self.options.gc_grace.as_micros() as u64)
    }

    /// Merges a job's inputs into new tables at its output level and commits the swap.
    fn run_compaction(&self, job: &CompactionJob) -> Result<()> {
        let drops = self.state.read().drops.clone();
        if job.is_trivial_move(&drops) {
            return self.move_table(job);
        }
        let mut created = Vec::new();
        let outputs = match self.write_compaction_outputs(job, &mut created) {
            Ok(outputs) => outputs,
            Err(error) => {
                remove_partial(self.fs.as_ref(), &created);
                return Err(error);
            }
        };
        self.commit_compaction(job, outputs)
    }

    /// Writes a job's output tables (durable, directory synced); `created` collects the path
    /// of every file opened, so that a failure can remove them.
    fn write_compaction_outputs(
        &self,
        job: &CompactionJob,
        created: &mut Vec<std::path::PathBuf>,
    ) -> Result<Vec<Table>> {
        let sources: Vec<Source> = job.tables().map(|t| Source::Table(t.iter())).collect();
        let drops = self.state.read().drops.clone();
        let mut filter = CompactionFilter::new(job.bottommost, self.gc_cutoff(), drops);
        let mut outputs: Vec<Table> = Vec::new();
        let mut builder: Option<(u64, TableBuilder)> = None;
        let target = self.options.target_file_bytes;
        for entry in MergeIter::new(sources) {
            let entry = entry?;
            let split = builder.as_ref().is_some_and(|(_, b)| {
                let size = b.estimated_size();
                (size >= target && filter.at_partition_start(&entry)) || size >= 2 * target
            });
            if !filter.keep(&entry) {
                continue;
            }
            if split {
                let (number, b) = builder.take().expect("split implies an open builder");
                outputs.push(self.finish_table(number, b)?);
            }
            if builder.is_none() {
                let number = self.next_table_number.fetch_add(1, Ordering::Relaxed);
                let path = table_path(&self.dir, number);
                created.push(path.clone());
                builder = Some((
                    number,
                    TableBuilder::new(self.fs.create(&path)?, path, self.options.table),
                ));
            }
            builder.as_mut().expect("opened above").1.add(&entry)?;
        }
        if let Some((number, b)) = builder.take() {
            outputs.push(self.finish_table(number, b)?);
        }
        self.fs.sync_dir(&self.dir)?;
        Ok(outputs)
    }

    /// Commits a compaction's outputs in place of its inputs, then deletes the inputs.
    fn commit_compaction(&self, job: &CompactionJob, outputs: Vec<Table>) -> Result<()> {
        let removed = job.removed();
        let added: Vec<(usize, Arc<Table>)> = outputs
            .into_iter()
            .map(|t| (job.output_level, Arc::new(t)))
            .collect();
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
        let read: u64 = job.tables().map(|t| t.properties().file_size).sum();
        let written: u64 = added.iter().map(|(_, t)| t.properties().file_size).sum();
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .compaction_read_bytes
            .fetch_add(read, Ordering::Relaxed);
        self.stats
            .compaction_write_bytes
            .fetch_add(written, Ordering::Relaxed);
        for (_, number) in removed {
            self.fs.remove(&table_path(&self.dir, number))?;
        }
        self.fs.sync_dir(&self.dir)?;
        self.work_cv.notify_all();
        tracing::debug!(
            level = job.level,
            inputs = job.inputs.len() + job.lower.len(),
            read,
            written,
            "compaction done"
        );
        Ok(())
    }

    /// Moves a job's single input down to its output level by a manifest edit alone.
    fn move_table(&self, job: &CompactionJob) -> Result<()> {
        let table = job.inputs[0].clone();
        let edit = VersionEdit {
            added: vec![(job.output_level as u8, table.file_number())],
            removed: vec![(job.level as u8, table.file_number())],
            ..Default::default()
        };
        self.manifest.lock().commit(edit)?;
        {
            let mut state = self.state.write();
            state.version = Arc::new(state.version.apply(
                &[(job.level, table.file_number())],
                &[(job.output_level, table)],
            ));
        }
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        self.work_cv.notify_all();
        tracing::debug!(level = job.level, "trivial move");
        Ok(())
    }

    pub(super) fn finish_table(&self, number: u64, builder: TableBuilder) -> Result<Table> {
        builder.finish()?;
        Table::open(
            self.fs.as_ref(),
            &table_path(&self.dir, number),
            number,
            self.cache.clone(),
        )
    }
}
