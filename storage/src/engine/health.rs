//! The engine's health: whether it accepts writes and, when it does not, why.
//!
//! Three conditions refuse writes, reported in this order of severity:
//! * **stopped**: a failure that may have lost durability — the WAL writer failed (an append,
//!   sync or segment creation), or a background task found damaged data. It lasts until the
//!   process restarts: after a failed `fsync` the kernel may have dropped the unsynced pages, so
//!   only a restart (WAL replay) knows what is durable.
//! * **degraded**: a background task (memtable flush, compaction, index dump) failed on I/O.
//!   Nothing acknowledged depends on it (the WAL holds every write it had not persisted yet), so
//!   it retries with a backoff of [`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`], and its fault
//!   clears on its first success — RocksDB's "soft error" with automatic recovery.
//! * **low space**: the data volume has less than `Options::min_free_bytes` available. Checked
//!   on each write and each health read, at most every [`SPACE_CHECK_INTERVAL`]. Background
//!   tasks keep running: the reserve is what lets a flush and an index dump finish.
//!
//! Reads are served in every state. Refusals are [`Error::NoSpace`] when the volume is full (or
//! low), [`Error::Unavailable`] otherwise; their messages name the operation, never a path.
//!
//! Must never: accept a write while any condition holds, or clear a stop before a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, NO_SPACE, stopped_message};

/// First wait before a failed background task retries.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries of a failed background task.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Free space is asked of the file system at most this often.
pub const SPACE_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Whether the engine accepts writes (bounded: the daemon exports it as a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineState {
    /// Accepting writes.
    Healthy,
    /// Refusing writes: the data volume is below the low-space watermark.
    LowSpace,
    /// Refusing writes: a background task failed on I/O and is retrying.
    Degraded,
    /// Refusing writes until a restart.
    Stopped,
}

impl EngineState {
    /// Every state, for exporting one gauge per state.
    pub const ALL: [EngineState; 4] = [
        EngineState::Healthy,
        EngineState::LowSpace,
        EngineState::Degraded,
        EngineState::Stopped,
    ];

    /// The state's name (`healthy`, `low_space`, `degraded`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Healthy => "healthy",
            EngineState::LowSpace => "low_space",
            EngineState::Degraded => "degraded",
            EngineState::Stopped => "stopped",
        }
    }
}

/// The engine's health at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The most severe condition holding.
    pub state: EngineState,
    /// Why writes are refused, as clients are told (`None` when healthy).
    pub reason: Option<String>,
}

impl Health {
    /// True when the engine accepts writes.
    pub fn is_healthy(&self) -> bool {
        self.state == EngineState::Healthy
    }
}

/// A background task whose failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackgroundTask {
    /// Writing an immutable memtable as an L0 table.
    Flush,
    /// Merging tables into the next level.
    Compaction,
    /// Dumping the indexes (done by the index crate, which reports here).
    IndexDump,
}

impl BackgroundTask {
    const COUNT: usize = 3;

    /// What the task does, as messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundTask::Flush => "memtable flush",
            BackgroundTask::Compaction => "compaction",
            BackgroundTask::IndexDump => "index dump",
        }
    }

    fn slot(self) -> usize {
        match self {
            BackgroundTask::Flush => 0,
            BackgroundTask::Compaction => 1,
            BackgroundTask::IndexDump => 2,
        }
    }
}

/// One reason to refuse writes: whether the volume is full, and the path-free message.
#[derive(Clone, Debug)]
struct Refusal {
    no_space: bool,
    message: String,
}

impl Refusal {
    fn error(&self) -> Error {
        if self.no_space {
            Error::NoSpace(self.message.clone())
        } else {
            Error::Unavailable(self.message.clone())
        }
    }

    fn reason(&self) -> String {
        if self.no_space {
            format!("{NO_SPACE}: {}", self.message)
        } else {
            self.message.clone()
        }
    }
}

#[derive(Debug, Default)]
struct Conditions {
    stopped: Option<Refusal>,
    faults: [Option<Refusal>; BackgroundTask::COUNT],
    low_space: Option<Refusal>,
}

impl Conditions {
    fn worst(&self) -> Option<(EngineState, &Refusal)> {
        if let Some(stop) = &self.stopped {
            return Some((EngineState::Stopped, stop));
        }
        if let Some(fault) = self.faults.iter().flatten().next() {
            return Some((EngineState::Degraded, fault));
        }
        self.low_space
            .as_ref()
            .map(|low| (EngineState::LowSpace, low))
    }
}

/// The conditions that refuse writes (see the module doc).
///
/// The write path reads two atomics only while the engine is healthy: `refusing` (set under
/// the lock whenever the conditions change) and the time of the next space check.
#[derive(Debug)]
pub(super) struct HealthMonitor {
    conditions: Mutex<Conditions>,
    /// Some condition holds (`conditions.worst()` is `Some`).
    refusing: AtomicBool,
    /// Nanoseconds after `epoch` before which free space is not asked again.
    next_space_check: AtomicU64,
    epoch: Instant,
}

impl Default for HealthMonitor {
    fn default() -> Self {
        Self {
            conditions: Mutex::default(),
            refusing: AtomicBool::new(false),
            next_space_check: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl HealthMonitor {
    /// Changes the conditions under the lock and republishes `refusing`.
    fn update<R>(&self, change: impl FnOnce(&mut Conditions) -> R) -> R {
        let mut conditions = self.conditions.lock();
        let result = change(&mut conditions);
        self.refusing
            .store(conditions.worst().is_some(), Ordering::Release);
        result
    }

    /// The current health.
    pub(super) fn health(&self) -> Health {
        match self.conditions.lock().worst() {
            None => Health {
                state: EngineState::Healthy,
                reason: None,
            },
            Some((state, refusal)) => Health {
                state,
                reason: Some(refusal.reason()),
            },
        }
    }

    /// The error a write gets now, if refused.
    pub(super) fn refusal(&self) -> Option<Error> {
        if !self.refusing.load(Ordering::Acquire) {
            return None;
        }
        self.conditions
            .lock()
            .worst()
            .map(|(_, refusal)| refusal.error())
    }

    /// The error a background wait (a manual flush or compaction) gets now: a stop or a fault,
    /// not low space (background work may use the reserve).
    pub(super) fn background_refusal(&self) -> Option<Error> {
        let conditions = self.conditions.lock();
        let stopped = conditions.stopped.as_ref();
        stopped
            .or_else(|| conditions.faults.iter().flatten().next())
            .map(Refusal::error)
    }

    /// Stops the engine until a restart; the first stop's reason is kept.
    pub(super) fn stop(&self, operation: &str, error: &Error) {
        let no_space = error.is_no_space();
        let cause = error.cause();
        let refusal = Refusal {
            no_space,
            message: stopped_message(operation, (!no_space).then_some(cause.as_str())),
        };
        tracing::error!(operation, %error, "storage engine stopped: writes are refused until a restart");
        self.update(|conditions| {
            conditions.stopped.get_or_insert(refusal);
        });
    }

    /// Records that `task` failed on its `attempt`-th try in a row: because the volume is full
    /// (`no_space`), or with the path-free `cause`.
    pub(super) fn fault(&self, task: BackgroundTask, no_space: bool, cause: &str, attempt: u32) {
        let what = task.as_str();
        let refusal = if no_space {
            Refusal {
                no_space: true,
                message: format!(
                    "the {what} cannot write its files; writes are refused until space is \
                     freed, then resume by themselves"
                ),
            }
        } else {
            Refusal {
                no_space: false,
                message: format!(
                    "the {what} failed ({cause}); writes are refused while it retries"
                ),
            }
        };
        let first =
            self.update(|conditions| conditions.faults[task.slot()].replace(refusal).is_none());
        if first {
            tracing::error!(
                task = what,
                cause,
                "background task failed; refusing writes and retrying with backoff"
            );
        } else {
            tracing::warn!(
                task = what,
                cause,
                attempt,
                "background task failed again; retrying"
            );
        }
    }

    /// Clears `task`'s fault after a success.
    pub(super) fn recovered(&self, task: BackgroundTask) {
        let cleared = self.update(|conditions| conditions.faults[task.slot()].take());
        if cleared.is_some() {
            tracing::info!(
                task = task.as_str(),
                "background task succeeded again; its fault is cleared"
            );
        }
    }

    /// Re-reads the free space of the data volume if the last check is older than
    /// [`SPACE_CHECK_INTERVAL`], and sets or clears the low-space condition. `available`
    /// returns the free bytes (`None`: unknown); its failure is logged and keeps the last state.
    pub(super) fn check_space(
        &self,
        min_free_bytes: u64,
        available: impl FnOnce() -> crate::Result<Option<u64>>,
    ) {
        if min_free_bytes == 0 {
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_space_check.load(Ordering::Acquire);
        let next = now.saturating_add(SPACE_CHECK_INTERVAL.as_nanos() as u64);
        // One caller per interval asks; the others keep the last answer.
        if now < due
            || self
                .next_space_check
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let free = match available() {
            Ok(Some(free)) => free,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot read the free space of the data volume");
                return;
            }
        };
        let low = (free < min_free_bytes).then(|| Refusal {
            no_space: true,
            message: format!(
                "{} available, below the low-space watermark of {} (storage.min_free_bytes); \
                 writes are refused until space is freed, then resume by themselves",
                mib(free, f64::floor),
                mib(min_free_bytes, f64::ceil)
            ),
        });
        let was_low =
            self.update(|conditions| std::mem::replace(&mut conditions.low_space, low).is_some());
        match (was_low, free < min_free_bytes) {
            (false, true) => {
                tracing::warn!(
                    free,
                    min_free_bytes,
                    "free space is below the watermark; refusing writes"
                )
            }
            (true, false) => {
                tracing::info!(
                    free,
                    min_free_bytes,
                    "free space is above the watermark again; accepting writes"
                )
            }
            _ => {}
        }
    }
}

/// `bytes` in MiB to a tenth, `round`ed there: the free space is rounded down and the
/// watermark up, so a refusal never shows the free space equal to the watermark (15.98 MiB
/// free under 16 MiB once read "16.0 MiB available, below ... 16.0 MiB").
fn mib(bytes: u64, round: fn(f64) -> f64) -> String {
    let tenths = round(bytes as f64 / f64::from(1u32 << 20) * 10.0);
    format!("{:.1} MiB", tenths / 10.0)
}

/// The wait before retry `attempt` (1-based): [`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`].
pub(super) fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(5), BACKOFF_MIN * 16);
        assert_eq!(backoff(6), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn the_worst_condition_wins_and_a_stop_is_kept() {
        let monitor = HealthMonitor::default();
        assert!(monitor.health().is_healthy());
        monitor.check_space(100, || Ok(Some(10)));
        assert_eq!(monitor.health().state, EngineState::LowSpace);
        monitor.fault(BackgroundTask::Flush, true, "disk full", 1);
        let health = monitor.health();
        assert_eq!(health.state, EngineState::Degraded);
        assert_eq!(
            health.reason.as_deref(),
            Some(
                "no space left on device on the data volume: the memtable flush cannot write \
                 its files; writes are refused until space is freed, then resume by themselves"
            )
        );
        assert!(matches!(monitor.refusal(), Some(Error::NoSpace(_))));
        monitor.recovered(BackgroundTask::Flush);
        assert_eq!(monitor.health().state, EngineState::LowSpace);
        let eio = Error::io("x", std::io::Error::from_raw_os_error(libc::EIO));
        monitor.stop("WAL write", &eio);
        assert_eq!(monitor.health().state, EngineState::Stopped);
        assert!(
            matches!(monitor.refusal(), Some(Error::Unavailable(m)) if m.contains("restarted"))
        );
        monitor.recovered(BackgroundTask::Flush);
        assert_eq!(monitor.health().state, EngineState::Stopped);
    }
}
