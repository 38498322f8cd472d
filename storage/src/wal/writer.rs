//! Group commit: the one thread that appends to the WAL.
//!
//! What it owns: the current segment, the sequence counter and the queue of pending writes.
//! Callers enqueue a batch and block; the writer thread drains everything queued, assigns
//! sequence numbers in queue order, appends the records, then makes the group as durable as its
//! most demanding member asked — ONE `sync_data` if any asked [`Durability::Sync`], otherwise a
//! flush to the OS (and, for [`Durability::Periodic`], a sync no later than the window after) —
//! then applies the batches to the [`CommitSink`] in sequence order and wakes their callers.
//! It starts a new segment when the sink asks after a group (its memtable is full), on request,
//! and when the current segment holds records but nothing was appended for the sink's
//! [`CommitSink::idle_rotation`] (so an idle node's last segment can be flushed and deleted).
//!
//! Invariants:
//! * sequence numbers are contiguous and increase in the order batches are applied;
//! * a batch reaches the sink only after its record is in the log (synced when asked), and a
//!   caller is woken only after its batch reached the sink;
//! * after any log or sink failure the writer is failed for good: the failing group's callers get
//!   the error, every later call gets `Error::Unavailable`.
//!
//! Must never: acknowledge a batch whose record may not be durable as asked; keep writing after a
//! failure (the log may end in a partial record); leave a caller waiting forever (a request
//! dropped unanswered — even by a panic — answers its caller with `Error::Unavailable`).
//!
//! The sink is called on the writer thread and must not call back into the writer.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::format::LogWriter;
use super::{WAL_MAGIC, last_seq_of, segment_path};
use crate::batch::{Prepared, WriteBatch};
use crate::error::{Error, Result, stopped_message};
use crate::fs::FileSystem;
use crate::telemetry::WalMetrics;
use crate::types::{Durability, SeqNo};

/// Largest encoded batch the WAL accepts.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// The engine side of a commit: where committed batches go.
pub trait CommitSink: Send + Sync + 'static {
    /// Applies a committed batch to the memtable; called on the writer thread in seq order after
    /// the batch is in the WAL (and synced when asked) and before its writer is acknowledged.
    /// `prepared` is what the batch's writer handed in with it.
    fn apply(&self, base_seq: SeqNo, batch: WriteBatch, prepared: Option<Prepared>) -> Result<()>;
    /// Asked after each group: true when the sink wants a new segment (its memtable is full).
    fn wants_rotation(&self) -> bool;
    /// How long the current segment may go without an append, once it holds records, before
    /// the writer rotates it anyway (so that the sink can flush what it holds and the segment
    /// can be deleted while no write comes). Asked once, when the writer starts; `None`: a
    /// segment is rotated only when [`CommitSink::wants_rotation`] asks or on request.
    fn idle_rotation(&self) -> Option<Duration> {
        None
    }
    /// Called on the writer thread after the old segment (now `old_segment_bytes` long) is
    /// synced and segment `new_segment` created: every batch applied before this call is in
    /// segments < new_segment, every later one in >= it.
    fn rotated(&self, new_segment: u64, old_segment_bytes: u64) -> Result<()>;
    /// Called once, on the writer thread, when the writer fails for good with `error`: every
    /// later write is refused until the process restarts (the log may end in a partial record,
    /// and after a failed sync the kernel may have dropped unsynced pages).
    fn writer_failed(&self, error: &Error);
}

/// A caller's rendezvous with the writer thread. Each calling thread reuses its own (a thread
/// waits for one request at a time), so a write allocates nothing here.
#[derive(Debug, Default)]
struct Completion {
    result: Mutex<Option<Result<u64>>>,
    ready: Condvar,
}

impl Completion {
    fn wait(&self) -> Result<u64> {
        let mut result = self.result.lock();
        loop {
            if let Some(result) = result.take() {
                return result;
            }
            self.ready.wait(&mut result);
        }
    }
}

thread_local! {
    static COMPLETION: Arc<Completion> = Arc::new(Completion::default());
}

/// The obligation to answer one caller: answered explicitly with [`Reply::send`], or with
/// `Error::Unavailable` when dropped unanswered.
#[derive(Debug)]
struct Reply(Option<Arc<Completion>>);

impl Reply {
    fn send(mut self, result: Result<u64>) {
        if let Some(completion) = self.0.take() {
            *completion.result.lock() = Some(result);
            completion.ready.notify_one();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(completion) = self.0.take() {
            *completion.result.lock() = Some(Err(Error::Unavailable(
                "the WAL writer stopped before finishing this request".to_owned(),
            )));
            completion.ready.notify_one();
        }
    }
}

#[derive(Debug)]
enum Command {
    Write {
        batch: WriteBatch,
        prepared: Option<Prepared>,
        durability: Durability,
    },
    Rotate,
}

#[derive(Debug)]
struct Request {
    command: Command,
    reply: Reply,
}

#[derive(Debug)]
enum Lifecycle {
    Running,
    /// `close` was called: the queue is drained, then the thread stops.
    Closing,
    Closed,
    /// Failed for good: `reason` is path-free; `no_space` when the volume was full.
    Failed {
        reason: String,
        no_space: bool,
    },
}

#[derive(Debug)]
struct Queue {
    requests: Vec<Request>,
    lifecycle: Lifecycle,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer thread (new request, or close).
    work: Condvar,
    last_seq: AtomicU64,
    /// Bytes of the segment being written (its header and every record appended so far).
    segment_bytes: AtomicU64,
}

impl Shared {
    fn unavailable(lifecycle: &Lifecycle) -> Error {
        match lifecycle {
            Lifecycle::Failed { no_space: true, .. } => {
                Error::NoSpace(stopped_message(WAL_WRITE, None))
            }
            Lifecycle::Failed { reason, .. } => {
                Error::Unavailable(stopped_message(WAL_WRITE, Some(reason)))
            }
            _ => Error::Unavailable("WAL writer is closed".to_owned()),
        }
    }
}

/// The operation a WAL failure names (an append, a sync or a new segment).
pub const WAL_WRITE: &str = "WAL write";

/// The WAL's group-commit writer (see the module doc). Dropping it closes it.
#[derive(Debug)]
pub struct GroupCommitWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommitWriter {
    /// Creates segment `first_segment` in `dir` (synced, directory synced) and starts the writer
    /// thread. The first batch gets sequence number `next_seq` (at least 1). Refuses to
    /// overwrite an existing segment.
    pub fn start(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        first_segment: u64,
        next_seq: SeqNo,
        sink: Arc<dyn CommitSink>,
    ) -> Result<Self> {
        if next_seq == 0 {
            return Err(Error::InvalidArgument(
                "WAL sequence numbers start at 1".to_owned(),
            ));
        }
        let log = create_segment(fs.as_ref(), &dir, first_segment)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                requests: Vec::new(),
                lifecycle: Lifecycle::Running,
            }),
            work: Condvar::new(),
            last_seq: AtomicU64::new(next_seq - 1),
            segment_bytes: AtomicU64::new(log.len()),
        });
        let idle_rotation = sink.idle_rotation();
        let thread_path = segment_path(&dir, first_segment);
        let writer_thread = WriterThread {
            fs,
            dir,
            segment: first_segment,
            log,
            next_seq,
            sink,
            shared: Arc::clone(&shared),
            encode_buffer: Vec::new(),
            staged: Vec::new(),
            staged_needs_sync: false,
            staged_sync_window: None,
            sync_deadline: None,
            idle_rotation,
            last_append: None,
            metrics: WalMetrics::register(),
        };
        let thread = std::thread::Builder::new()
            .name("allidb-wal-writer".to_owned())
            .spawn(move || writer_thread.run())
            .map_err(|e| Error::io(thread_path, e))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Bytes of the segment being written (header and records appended so far).
    pub fn segment_bytes(&self) -> u64 {
        self.shared.segment_bytes.load(Ordering::Relaxed)
    }

    /// Commits `batch` with the durability asked and returns its base sequence number (its op
    /// `i` has `base + i`). Blocks until the batch is in the log and applied to the sink, which
    /// gets `prepared` with it.
    pub fn write(
        &self,
        batch: WriteBatch,
        prepared: Option<Prepared>,
        durability: Durability,
    ) -> Result<SeqNo> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("empty write batch".to_owned()));
        }
        let size = encoded_len(&batch);
        if size > MAX_BATCH_BYTES {
            return Err(Error::InvalidArgument(format!(
                "write batch of {size} bytes exceeds the {MAX_BATCH_BYTES}-byte limit"
            )));
        }
        self.submit(Command::Write {
            batch,
            prepared,
            durability,
        })
    }

    /// Forces a new segment (the engine flushes its memtable) and returns its number.
    pub fn rotate(&self) -> Result<u64> {
        self.submit(Command::Rotate)
    }

    /// Last sequence number applied to the sink (`next_seq - 1` before any write; 0 if none).
    pub fn last_seq(&self) -> SeqNo {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    /// Drains queued writes, syncs the log and stops the thread. Later calls get
    /// `Error::Unavailable`. Returns the writer's failure if it failed (now or earlier).
    pub fn close(&self) -> Result<()> {
        {
            let mut queue = self.shared.queue.lock();
            if matches!(queue.lifecycle, Lifecycle::Running) {
                queue.lifecycle = Lifecycle::Closing;
                self.shared.work.notify_one();
            }
        }
        // Held while joining, so a concurrent `close` waits for the outcome.
        let mut thread = self.thread.lock();
        if let Some(handle) = thread.take()
            && handle.join().is_err()
        {
            return Err(Error::Unavailable("WAL writer thread panicked".to_owned()));
        }
        match &self.shared.queue.lock().lifecycle {
            Lifecycle::Closed => Ok(()),
            other => Err(Shared::unavailable(other)),
        }
    }

    fn submit(&self, command: Command) -> Result<u64> {
        let completion = COMPLETION.with(Arc::clone);
        {
            let mut queue = self.shared.queue.lock();
            if !matches!(queue.lifecycle, Lifecycle::Running) {
                return Err(Shared::unavailable(&queue.lifecycle));
            }
            queue.requests.push(Request {
                command,
                reply: Reply(Some(Arc::clone(&completion))),
            });
            self.shared.work.notify_one();
        }
        completion.wait()
    }
}

impl Drop for GroupCommitWriter {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(%error, "WAL writer closed with an error");
        }
    }
}

/// Exact size of `batch.encode(..)`'s output.
fn encoded_len(batch: &WriteBatch) -> usize {
    const BATCH_HEADER: usize = 1 + 8 + 4;
    const OP_FIXED: usize = 4 + 8 + 1;
    BATCH_HEADER
        + batch
            .ops()
            .iter()
            .map(|op| OP_FIXED + op.key.len() + op.value.as_ref().map_or(0, |v| 4 + v.len()))
            .sum::<usize>()
}

/// Creates segment `number` with its file header, durable (file synced, directory synced).
fn create_segment(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<LogWriter> {
    let path = segment_path(dir, number);
    if fs.exists(&path) {
        return Err(Error::InvalidArgument(format!(
            "WAL segment {} already exists",
            path.display()
        )));
    }
    let mut log = LogWriter::new(fs.create(&path)?, WAL_MAGIC)?;
    log.sync()?;
    fs.sync_dir(dir)?;
    Ok(log)
}

/// A copy of an error for each waiter of a failed group (`Error` is not `Clone` because
/// `std::io::Error` is not).
fn duplicate(error: &Error) -> Error {
    match error {
        Error::Io { path, source } => Error::io(
            path.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
        Error::Corruption {
            path,
            offset,
            reason,
        } => Error::corruption(path.clone(), *offset, reason.clone()),
        Error::InvalidArgument(message) => Error::InvalidArgument(message.clone()),
        Error::Codec(message) => Error::Codec(message.clone()),
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        Error::NoSpace(message) => Error::NoSpace(message.clone()),
    }
}

/// A batch appended to the log, waiting for the group's sync and its turn at the sink.
struct Staged {
    base_seq: SeqNo,
    batch: WriteBatch,
    prepared: Option<Prepared>,
    reply: Reply,
}

/// Marks the writer failed if its thread ends without closing (a panic), so callers stop
/// waiting and later calls are refused.
struct StopGuard(Arc<Shared>, Arc<dyn CommitSink>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let reason = "the WAL writer thread stopped unexpectedly";
        let abandoned = {
            let mut queue = self.0.queue.lock();
            if !matches!(queue.lifecycle, Lifecycle::Running | Lifecycle::Closing) {
                return;
            }
            queue.lifecycle = Lifecycle::Failed {
                reason: reason.into(),
                no_space: false,
            };
            std::mem::take(&mut queue.requests)
        };
        // Dropping the requests answers their callers.
        drop(abandoned);
        self.1.writer_failed(&Error::Unavailable(reason.into()));
    }
}

/// State owned by the writer thread.
struct WriterThread {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment: u64,
    log: LogWriter,
    next_seq: SeqNo,
    sink: Arc<dyn CommitSink>,
    shared: Arc<Shared>,
    /// Reused for every record.
    encode_buffer: Vec<u8>,
    /// Appended, not yet applied; in sequence order.
    staged: Vec<Staged>,
    staged_needs_sync: bool,
    /// Shortest periodic-sync window asked by a staged batch.
    staged_sync_window: Option<Duration>,
    /// When the flushed-but-unsynced tail of the log must be synced (periodic durability).
    sync_deadline: Option<Instant>,
    /// [`CommitSink::idle_rotation`].
    idle_rotation: Option<Duration>,
    /// When the last record was appended to the current segment (`None`: none yet).
    last_append: Option<Instant>,
    metrics: WalMetrics,
}

impl WriterThread {
    fn run(mut self) {
        let _stop_guard = StopGuard(Arc::clone(&self.shared), Arc::clone(&self.sink));
        let mut group = Vec::new();
        loop {
            let closing = self.next_group(&mut group);
            match self.process(&mut group, closing) {
                Ok(true) => {
                    self.shared.queue.lock().lifecycle = Lifecycle::Closed;
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    self.fail(error, &mut group);
                    return;
                }
            }
        }
    }

    /// Waits for requests, close, or the periodic sync deadline; moves the queued requests into
    /// `group` (oldest first). Returns whether the writer is closing.
    fn next_group(&mut self, group: &mut Vec<Request>) -> bool {
        let mut queue = self.shared.queue.lock();
        loop {
            if !queue.requests.is_empty() || matches!(queue.lifecycle, Lifecycle::Closing) {
                break;
            }
            match self
                .sync_deadline
                .into_iter()
                .chain(self.idle_deadline())
                .min()
            {
                Some(deadline) if Instant::now() >= deadline => break,
                Some(deadline) => {
                    self.shared.work.wait_until(&mut queue, deadline);
                }
                None => self.shared.work.wait(&mut queue),
            }
        }
        std::mem::swap(&mut queue.requests, group);
        matches!(queue.lifecycle, Lifecycle::Closing)
    }

    /// Commits one group. Returns `Ok(true)` once the writer closed cleanly. On error, requests
    /// not yet answered are left in `group` and `self.staged`.
    fn process(&mut self, group: &mut Vec<Request>, closing: bool) -> Result<bool> {
        let mut wrote = false;
        // Popping from the reversed group serves requests oldest first and leaves the
        // unanswered ones in `group` if this returns early.
        group.reverse();
        while let Some(Request { command, reply }) = group.pop() {
            match command {
                Command::Write {
                    batch,
                    prepared,
                    durability,
                } => {
                    wrote = true;
                    self.stage(batch, prepared, durability, reply)?;
                }
                Command::Rotate => match self.commit().and_then(|()| self.rotate_segment()) {
                    Ok(segment) => reply.send(Ok(segment)),
                    Err(error) => {
                        reply.send(Err(duplicate(&error)));
                        return Err(error);
                    }
                },
            }
        }
        self.commit()?;
        if wrote && self.call_sink(|sink| Ok(sink.wants_rotation()))? {
            self.rotate_segment()?;
        }
        if closing {
            self.sync_log()?;
            return Ok(true);
        }
        if self
            .sync_deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.sync_log()?;
            self.sync_deadline = None;
        }
        if self
            .idle_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.rotate_segment()?;
        }
        Ok(false)
    }

    /// When the current segment, idle since its last append, is due for rotation (`None`: it
    /// holds no record, or idle rotation is off).
    fn idle_deadline(&self) -> Option<Instant> {
        self.last_append
            .zip(self.idle_rotation)
            .map(|(last, idle)| last + idle)
    }

    /// Assigns the batch its sequence numbers and appends its record.
    fn stage(
        &mut self,
        batch: WriteBatch,
        prepared: Option<Prepared>,
        durability: Durability,
        reply: Reply,
    ) -> Result<()> {
        let base_seq = self.next_seq;
        let next_seq = base_seq
            .checked_add(batch.len() as u64)
            .ok_or_else(|| Error::Unavailable("WAL sequence numbers exhausted".to_owned()))?;
        self.encode_buffer.clear();
        batch.encode(base_seq, &mut self.encode_buffer);
        match durability {
            Durability::Sync => self.staged_needs_sync = true,
            Durability::Buffered => {}
            Durability::Periodic(millis) => {
                let window = Duration::from_millis(u64::from(millis));
                self.staged_sync_window =
                    Some(self.staged_sync_window.map_or(window, |w| w.min(window)));
            }
        }
        self.staged.push(Staged {
            base_seq,
            batch,
            prepared,
            reply,
        });
        let append_start = Instant::now();
        self.log.add_record(&self.encode_buffer)?;
        self.metrics.appended(append_start.elapsed());
        self.last_append = Some(append_start);
        self.shared
            .segment_bytes
            .store(self.log.len(), Ordering::Relaxed);
        self.next_seq = next_seq;
        Ok(())
    }

    /// Makes the staged records as durable as asked, then applies and acknowledges them.
    fn commit(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.metrics.group_committed(self.staged.len());
        if self.staged_needs_sync {
            self.sync_log()?;
            self.sync_deadline = None;
        } else {
            self.log.flush()?;
            if let Some(window) = self.staged_sync_window {
                let due = Instant::now() + window;
                self.sync_deadline = Some(self.sync_deadline.map_or(due, |d| d.min(due)));
            }
        }
        self.staged_needs_sync = false;
        self.staged_sync_window = None;
        self.staged.reverse();
        while let Some(Staged {
            base_seq,
            batch,
            prepared,
            reply,
        }) = self.staged.pop()
        {
            let last_seq = last_seq_of(base_seq, &batch);
            match self.call_sink(|sink| sink.apply(base_seq, batch, prepared)) {
                Ok(()) => {
                    self.shared.last_seq.store(last_seq, Ordering::Release);
                    reply.send(Ok(base_seq));
                }
                Err(error) => {
                    reply.send(Err(duplicate(&error)));
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Syncs the current segment (timed for [`WalMetrics`]).
    fn sync_log(&mut self) -> Result<()> {
        let sync_start = Instant::now();
        self.log.sync()?;
        self.metrics.synced(sync_start.elapsed());
        Ok(())
    }

    /// Syncs the current segment, creates the next one and tells the sink.
    fn rotate_segment(&mut self) -> Result<u64> {
        self.sync_log()?;
        self.sync_deadline = None;
        let new_segment = self
            .segment
            .checked_add(1)
            .ok_or_else(|| Error::Unavailable("WAL segment numbers exhausted".to_owned()))?;
        let old_segment_bytes = self.log.len();
        self.log = create_segment(self.fs.as_ref(), &self.dir, new_segment)?;
        self.segment = new_segment;
        self.last_append = None;
        self.shared
            .segment_bytes
            .store(self.log.len(), Ordering::Relaxed);
        self.call_sink(|sink| sink.rotated(new_segment, old_segment_bytes))?;
        Ok(new_segment)
    }

    /// Calls the sink, turning a panic into an error (the writer then fails instead of
    /// leaving its callers waiting).
    fn call_sink<T>(&self, call: impl FnOnce(&dyn CommitSink) -> Result<T>) -> Result<T> {
        let sink = self.sink.as_ref();
        std::panic::catch_unwind(AssertUnwindSafe(|| call(sink))).unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the WAL commit sink panicked".to_owned(),
            ))
        })
    }

    /// Fails the writer for good: the failing group's callers get `error`, queued ones
    /// `Error::Unavailable`.
    fn fail(&mut self, error: Error, group: &mut Vec<Request>) {
        tracing::error!(%error, segment = self.segment, "WAL writer failed; refusing further writes");
        let (queued, unavailable) = {
            let mut queue = self.shared.queue.lock();
            queue.lifecycle = Lifecycle::Failed {
                reason: error.cause(),
                no_space: error.is_no_space(),
            };
            (
                std::mem::take(&mut queue.requests),
                Shared::unavailable(&queue.lifecycle),
            )
        };
        for staged in self.staged.drain(..) {
            staged.reply.send(Err(duplicate(&error)));
        }
        for request in group.drain(..) {
            request.reply.send(Err(duplicate(&error)));
        }
        for request in queued {
            request.reply.send(Err(duplicate(&unavailable)));
        }
        let notified = self.call_sink(|sink| {
            sink.writer_failed(&error);
            Ok(())
        });
        if let Err(panic) = notified {
            tracing::error!(error = %panic, "the commit sink failed to record the WAL failure");
        }
    }
}
