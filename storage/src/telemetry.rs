//! The storage engine's own metrics, recorded through the `metrics` facade: names, their help
//! texts ([`describe`]) and the WAL writer's cached handles ([`WalMetrics`]).
//!
//! Everything else the engine could export (memtable bytes, flushes, compactions, tables per
//! level, block-cache hits) is already counted in [`crate::Stats`]; the daemon reads those at
//! scrape time instead of recording them twice.
//!
//! Invariants: no metric carries a label (the series count is fixed); recording is a handle
//! call with no registry lookup, so the WAL writer thread pays a few atomic operations per
//! group. With no recorder installed every handle is a no-op. Must never: label a metric with a
//! tenant, entity id, key or path.

use std::time::Duration;

use metrics::{Histogram, Unit, describe_histogram, histogram};

/// Seconds to append one batch's record to the current WAL segment (encoding excluded; the
/// write reaches the segment's buffer or the OS, not necessarily the disk).
pub const WAL_APPEND_SECONDS: &str = "allidb_wal_append_seconds";
/// Seconds of one WAL `sync_data` (group commit, periodic sync, rotation or close).
pub const WAL_FSYNC_SECONDS: &str = "allidb_wal_fsync_seconds";
/// Batches committed together by one group commit.
pub const WAL_GROUP_BATCHES: &str = "allidb_wal_group_batches";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    describe_histogram!(
        WAL_APPEND_SECONDS,
        Unit::Seconds,
        "Time to append one write batch's record to the WAL segment."
    );
    describe_histogram!(
        WAL_FSYNC_SECONDS,
        Unit::Seconds,
        "Time of one WAL fsync (sync_data)."
    );
    describe_histogram!(
        WAL_GROUP_BATCHES,
        Unit::Count,
        "Write batches committed together by one WAL group commit."
    );
}

/// Handles of the WAL writer's histograms, registered once when the writer starts.
#[derive(Clone, Debug)]
pub(crate) struct WalMetrics {
    append: Histogram,
    fsync: Histogram,
    group_batches: Histogram,
}

impl WalMetrics {
    /// The handles from the recorder installed now (no-ops when none is).
    pub(crate) fn register() -> Self {
        Self {
            append: histogram!(WAL_APPEND_SECONDS),
            fsync: histogram!(WAL_FSYNC_SECONDS),
            group_batches: histogram!(WAL_GROUP_BATCHES),
        }
    }

    pub(crate) fn appended(&self, took: Duration) {
        self.append.record(took.as_secs_f64());
    }

    pub(crate) fn synced(&self, took: Duration) {
        self.fsync.record(took.as_secs_f64());
    }

    pub(crate) fn group_committed(&self, batches: usize) {
        self.group_batches.record(batches as f64);
    }
}
