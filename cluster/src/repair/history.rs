//! When each token range this node replicates was last repaired completely, persisted in
//! `cluster/repair-history` under the data dir (format: docs/cluster.md "Repair history file",
//! version 1), so status and metrics can say which ranges are overdue for the tombstone grace
//! rule, and the scheduled repair can pick the oldest.
//!
//! Invariants: a range's time only moves forward, and only for a repair that compared every
//! replica of it and wrote everything that differed, of every tenant; a range never repaired
//! counts from when the history began (a new node is not overdue at once). The file is
//! replaced atomically; a damaged file is an error, never an empty history.
//! Must never: record a preview, a tenant-only repair, or a range that was skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, unseal, write_atomically};
use crate::ring::TokenSpan;

const HISTORY_FILE: &str = "repair-history";
const HEADER: &str = "allidb-repair-history 1";

/// How overdue the ranges of a node are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairAges {
    /// Ranges this node replicates.
    pub ranges: u64,
    /// Of them, not repaired completely within the grace period.
    pub overdue: u64,
    /// Seconds since the least recently repaired range was (or since the history began).
    pub oldest_age_secs: u64,
    /// Unix seconds of the last complete repair of any range (`None`: never).
    pub last_repair_secs: Option<u64>,
}

#[derive(Debug)]
struct Recorded {
    /// Unix seconds the history began.
    since: u64,
    /// Unix seconds of each range's last complete repair.
    ranges: BTreeMap<TokenSpan, u64>,
}

/// The repair history of this node; shared by the repair, the scheduler and status.
#[derive(Debug)]
pub struct RepairHistory {
    data_dir: PathBuf,
    recorded: Mutex<Recorded>,
}

impl RepairHistory {
    /// The history stored under `data_dir`, or a new one beginning at `now_secs`.
    pub fn open(data_dir: &Path, now_secs: u64) -> Result<Self, ClusterError> {
        let path = data_dir.join(CLUSTER_DIR).join(HISTORY_FILE);
        let recorded = match fs::read_to_string(&path) {
            Ok(text) => decode(&text)
                .map_err(|reason| ClusterError::CorruptRepairHistory { path, reason })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let recorded = Recorded {
                    since: now_secs,
                    ranges: BTreeMap::new(),
                };
                write_atomically(data_dir, HISTORY_FILE, &encode(&recorded))?;
                recorded
            }
            Err(source) => return Err(ClusterError::Io { path, source }),
        };
        Ok(Self {
            data_dir: data_dir.to_owned(),
            recorded: Mutex::new(recorded),
        })
    }

    /// Records `repaired` as repaired completely at `now_secs`; ranges outside `current` (the
    /// ranges this node replicates now) are forgotten.
    pub fn record(
        &self,
        repaired: &[TokenSpan],
        current: &[TokenSpan],
        now_secs: u64,
    ) -> Result<(), ClusterError> {
        let mut recorded = self.recorded.lock();
        recorded.ranges.retain(|span, _| current.contains(span));
        for span in repaired {
            let at = recorded.ranges.entry(*span).or_default();
            *at = (*at).max(now_secs);
        }
        write_atomically(&self.data_dir, HISTORY_FILE, &encode(&recorded))
    }

    /// When `span` was last repaired completely, or when the history began.
    pub fn repaired_at(&self, span: &TokenSpan) -> u64 {
        let recorded = self.recorded.lock();
        recorded.ranges.get(span).copied().unwrap_or(recorded.since)
    }

    /// How overdue `current` (the ranges this node replicates) are at `now_secs` for a grace
    /// period of `grace_secs`.
    pub fn ages(&self, current: &[TokenSpan], now_secs: u64, grace_secs: u64) -> RepairAges {
        let recorded = self.recorded.lock();
        let mut ages = RepairAges {
            ranges: current.len() as u64,
            last_repair_secs: recorded.ranges.values().max().copied(),
            ..RepairAges::default()
        };
        for span in current {
            let at = recorded.ranges.get(span).copied().unwrap_or(recorded.since);
            let age = now_secs.saturating_sub(at);
            ages.oldest_age_secs = ages.oldest_age_secs.max(age);
            if age > grace_secs {
                ages.overdue += 1;
            }
        }
        ages
    }
}

fn encode(recorded: &Recorded) -> String {
    let mut body = format!("{HEADER}\nsince {}\n", recorded.since);
    for (span, at) in &recorded.ranges {
        let _ = writeln!(body, "range {} {} {at}", span.start, span.end);
    }
    seal(body)
}

fn decode(text: &str) -> Result<Recorded, String> {
    let body = unseal(text)?;
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("unknown header (expected {HEADER:?})"));
    }
    let since_line = lines.next().unwrap_or_default();
    let since = since_line
        .strip_prefix("since ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad since line {since_line:?}"))?;
    let ranges = lines
        .map(|line| {
            let bad = || format!("bad range line {line:?}");
            let fields: Vec<u64> = line
                .strip_prefix("range ")
                .ok_or_else(bad)?
                .split(' ')
                .map(|n| n.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            match fields[..] {
                [start, end, at] => Ok((TokenSpan { start, end }, at)),
                _ => Err(bad()),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Recorded { since, ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    #[test]
    fn ranges_are_overdue_once_unrepaired_past_the_grace_and_the_history_persists() {
        let dir = tempfile::tempdir().unwrap();
        let spans = [
            TokenSpan { start: 1, end: 5 },
            TokenSpan { start: 5, end: 1 },
        ];
        let history = RepairHistory::open(dir.path(), 100 * DAY).unwrap();
        let ages = history.ages(&spans, 105 * DAY, 10 * DAY);
        assert_eq!((ages.overdue, ages.last_repair_secs), (0, None), "new");
        assert_eq!(history.ages(&spans, 111 * DAY, 10 * DAY).overdue, 2);
        history.record(&spans[..1], &spans, 108 * DAY).unwrap();
        let ages = history.ages(&spans, 111 * DAY, 10 * DAY);
        assert_eq!(
            (ages.overdue, ages.oldest_age_secs, ages.last_repair_secs),
            (1, 11 * DAY, Some(108 * DAY))
        );
        // An older record never moves a range back; a range no longer replicated is forgotten.
        history.record(&spans[..1], &spans, 107 * DAY).unwrap();
        assert_eq!(history.repaired_at(&spans[0]), 108 * DAY);
        let reopened = RepairHistory::open(dir.path(), 200 * DAY).unwrap();
        assert_eq!(reopened.repaired_at(&spans[0]), 108 * DAY);
        assert_eq!(
            reopened.repaired_at(&spans[1]),
            100 * DAY,
            "since the start"
        );
        reopened.record(&[], &spans[1..], 120 * DAY).unwrap();
        assert_eq!(reopened.repaired_at(&spans[0]), 100 * DAY);
    }

    #[test]
    fn a_damaged_history_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let history = RepairHistory::open(dir.path(), 7).unwrap();
        history
            .record(
                &[TokenSpan { start: 1, end: 2 }],
                &[TokenSpan { start: 1, end: 2 }],
                9,
            )
            .unwrap();
        let path = dir.path().join(CLUSTER_DIR).join(HISTORY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("range 1 2 9", "range 1 2 8")).unwrap();
        let err = RepairHistory::open(dir.path(), 7).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
