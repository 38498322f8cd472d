//! What the repair running on this node has done so far, for `allidb cluster status` and the
//! metrics while it runs (its final [`RepairReport`] is the answer to the call that started it).
//!
//! Invariants: at most one repair is shown (a node runs one at a time); the shown state is
//! cleared when the repair ends, however it ends (the [`ShownRepair`] guard). Must never: be
//! read by the repair itself (it only writes here).

use parking_lot::Mutex;

use super::{RepairReport, unix_secs};

/// The step a running repair is at (docs/cluster.md "Anti-entropy repair").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairStep {
    /// Comparing and sending tenant drops.
    Drops,
    /// Comparing the ranges' roots.
    Roots,
    /// Comparing the differing ranges' trees.
    Trees,
    /// Streaming the differing leaves and sending each replica what it lacks.
    Partitions,
}

impl RepairStep {
    /// The step's name in status replies.
    pub fn as_str(self) -> &'static str {
        match self {
            RepairStep::Drops => "drops",
            RepairStep::Roots => "roots",
            RepairStep::Trees => "trees",
            RepairStep::Partitions => "partitions",
        }
    }
}

/// The running repair as last recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningRepair {
    /// When it started (Unix seconds).
    pub started_unix_secs: u64,
    /// Compare only.
    pub preview: bool,
    /// Its step.
    pub step: RepairStep,
    /// Ranges it compares.
    pub ranges: u64,
    /// Ranges whose groups are done (compared, and repaired unless in preview).
    pub ranges_done: u64,
    /// What it found and did so far (the final report's counters).
    pub ranges_differing: u64,
    /// Partitions found differing so far.
    pub partitions_differing: u64,
    /// Partitions repaired so far.
    pub partitions_repaired: u64,
    /// Cells sent so far.
    pub cells_streamed: u64,
    /// Their bytes.
    pub bytes_streamed: u64,
}

/// The repair running on this node, if any; shared by the repair and the status page.
#[derive(Debug, Default)]
pub struct RepairProgress {
    current: Mutex<Option<RunningRepair>>,
}

impl RepairProgress {
    /// The running repair, if one runs.
    pub fn current(&self) -> Option<RunningRepair> {
        self.current.lock().clone()
    }

    /// Shows a repair of `ranges` ranges starting; it is cleared when the guard drops.
    pub(super) fn start(&self, ranges: u64, preview: bool) -> ShownRepair<'_> {
        *self.current.lock() = Some(RunningRepair {
            started_unix_secs: unix_secs(),
            preview,
            step: RepairStep::Drops,
            ranges,
            ranges_done: 0,
            ranges_differing: 0,
            partitions_differing: 0,
            partitions_repaired: 0,
            cells_streamed: 0,
            bytes_streamed: 0,
        });
        metrics::gauge!("allidb_repair_running").set(1.0);
        metrics::gauge!("allidb_repair_ranges_done").set(0.0);
        ShownRepair(self)
    }

    /// Records the running repair at `step`, `ranges_done` ranges done, with the counters of
    /// `report` so far.
    pub(super) fn record(&self, step: RepairStep, ranges_done: u64, report: &RepairReport) {
        if let Some(running) = self.current.lock().as_mut() {
            running.step = step;
            running.ranges_done = ranges_done;
            running.ranges_differing = report.ranges_differing;
            running.partitions_differing = report.partitions_differing;
            running.partitions_repaired = report.partitions_repaired;
            running.cells_streamed = report.cells_streamed;
            running.bytes_streamed = report.bytes_streamed;
        }
        metrics::gauge!("allidb_repair_ranges_done").set(ranges_done as f64);
    }
}

/// Keeps a repair shown until dropped.
#[derive(Debug)]
pub(super) struct ShownRepair<'a>(&'a RepairProgress);

impl Drop for ShownRepair<'_> {
    fn drop(&mut self) {
        *self.0.current.lock() = None;
        metrics::gauge!("allidb_repair_running").set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repair_is_shown_while_it_runs_and_cleared_however_it_ends() {
        let progress = RepairProgress::default();
        assert_eq!(progress.current(), None);
        {
            let _shown = progress.start(48, false);
            let report = RepairReport {
                partitions_repaired: 7,
                ..RepairReport::default()
            };
            progress.record(RepairStep::Partitions, 16, &report);
            let running = progress.current().expect("shown while it runs");
            assert_eq!(
                (running.step, running.ranges, running.ranges_done),
                (RepairStep::Partitions, 48, 16)
            );
            assert_eq!(running.partitions_repaired, 7);
        }
        assert_eq!(progress.current(), None, "cleared when the guard drops");
    }
}
