//! The scheduled repair (`cluster.repair_interval_secs`, off by default) and the tombstone
//! grace alarm (`allidb_repair_ranges_overdue`).
//!
//! Every tick (a sixteenth of the interval, between 1 s and 60 s; every minute when scheduling
//! is off) it sets the alarm gauge and,
//! when scheduling is on, repairs the ranges whose last complete repair (or last attempt) is at
//! least one interval old, oldest first, at most a sixteenth of the node's ranges a tick: after
//! the first interval the ranges come due a few at a time, so the work spreads over the
//! interval instead of arriving at once, and a range that cannot be repaired (a replica down)
//! is tried again an interval later without holding up the others.
//!
//! Invariants: it never runs two repairs at once (a manual repair running makes it skip the
//! tick); it writes nothing itself, the repair does. Must never: stop on a failed repair (the
//! range stays due and is tried again).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{RangeRepair, RepairOptions, unix_secs};
use crate::ring::TokenSpan;

/// What the scheduler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Repair every range at least this often (`Duration::ZERO`: no scheduled repair).
    pub interval: Duration,
    /// `storage.gc_grace_secs`: a range not repaired for longer is overdue.
    pub gc_grace: Duration,
}

/// Parts of the ranges repaired per interval.
const SLICES: u64 = 16;

/// The running scheduler; stopping it aborts a repair it started (the next one finds what is
/// left).
#[derive(Debug)]
pub struct RepairScheduler {
    task: JoinHandle<()>,
}

impl RepairScheduler {
    /// Starts scheduling repairs through `repair`.
    pub fn spawn(repair: RangeRepair, options: ScheduleOptions) -> Self {
        let tick = match options.interval.is_zero() {
            // Only the alarm gauge to keep current.
            true => Duration::from_secs(60),
            false => (options.interval / SLICES as u32)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
        };
        let task = tokio::spawn(async move {
            // When the scheduler last tried each range (in memory): a range it could not repair
            // (a replica down) waits an interval before it is tried again, so it never keeps the
            // others waiting.
            let mut attempted: BTreeMap<TokenSpan, u64> = BTreeMap::new();
            loop {
                tokio::time::sleep(tick).await;
                let current = repair.current_ranges();
                let now = unix_secs();
                let ages = repair
                    .history()
                    .ages(&current, now, options.gc_grace.as_secs());
                metrics::gauge!("allidb_repair_ranges_overdue").set(ages.overdue as f64);
                if options.interval.is_zero() {
                    continue;
                }
                attempted.retain(|span, _| current.contains(span));
                let mut due: Vec<(u64, TokenSpan)> = current
                    .iter()
                    .map(|span| {
                        let repaired = repair.history().repaired_at(span);
                        let tried = attempted.get(span).copied().unwrap_or(0);
                        (repaired.max(tried), *span)
                    })
                    .filter(|(at, _)| now.saturating_sub(*at) >= options.interval.as_secs())
                    .collect();
                if due.is_empty() {
                    continue;
                }
                due.sort();
                due.truncate((current.len() as u64).div_ceil(SLICES) as usize);
                let ranges: Vec<TokenSpan> = due.into_iter().map(|(_, span)| span).collect();
                attempted.extend(ranges.iter().map(|span| (*span, now)));
                let options = RepairOptions {
                    ranges: Some(ranges),
                    ..RepairOptions::default()
                };
                if let Err(error) = repair.run(&options).await {
                    tracing::info!(%error, "scheduled repair did not run; retrying next tick");
                }
            }
        });
        Self { task }
    }

    /// Stops scheduling.
    pub fn stop(self) {
        self.task.abort();
    }
}
