//! Replaying WAL segments: at open ([`recover`]) and for followers of the log ([`read_segment`]).
//!
//! Invariants: batches are handed to `apply` whole, in log order, each exactly once per call, and
//! only while every earlier byte of the replayed segments was valid; sequence numbers must
//! strictly increase, and a record that breaks that (or does not decode although its checksum
//! holds) is damage like any other.
//!
//! Must never: modify a file except to truncate the damaged suffix (and, in point-in-time mode,
//! delete the segments after it); skip damage silently; call `apply` for bytes past damage.

use std::path::Path;

use super::format::{LogEnd, LogReader};
use super::{
    RecoveryMode, RecoveryReport, SegmentInfo, TornTail, WAL_MAGIC, last_seq_of, list_segments,
    segment_path,
};
use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::types::SeqNo;

/// Where a segment stopped being valid.
struct Damage {
    /// End of the last good record: the length to truncate to.
    good_len: u64,
    /// Offset of the damage.
    bad_offset: u64,
    reason: String,
    /// True when nothing valid follows the damage (a torn write, not a hole in the middle).
    is_tail: bool,
}

/// The outcome of replaying one segment.
struct Replayed {
    max_seq: Option<SeqNo>,
    records: u64,
    damage: Option<Damage>,
}

/// Replays the batches of one segment's bytes until the end or the first damage.
/// `last_seq` is the highest sequence number replayed so far and is advanced.
fn replay_segment(
    path: &Path,
    bytes: &[u8],
    last_seq: &mut Option<SeqNo>,
    apply: &mut impl FnMut(SeqNo, WriteBatch) -> Result<()>,
) -> Result<Replayed> {
    let mut reader = LogReader::new(bytes, WAL_MAGIC);
    let mut replayed = Replayed {
        max_seq: None,
        records: 0,
        damage: None,
    };
    let mut good_len = reader.position();
    while let Some((offset, record)) = reader.next() {
        let checked = WriteBatch::decode(&record).and_then(|(base_seq, batch)| {
            check_sequence(base_seq, &batch, *last_seq)?;
            Ok((base_seq, batch))
        });
        let (base_seq, batch) = match checked {
            Ok(decoded) => decoded,
            Err(error) => {
                replayed.damage = Some(Damage {
                    good_len,
                    bad_offset: offset,
                    reason: format!("record with a valid checksum is not a valid batch: {error}"),
                    is_tail: false,
                });
                return Ok(replayed);
            }
        };
        let batch_last_seq = last_seq_of(base_seq, &batch);
        apply(base_seq, batch)?;
        *last_seq = Some(batch_last_seq);
        replayed.max_seq = Some(batch_last_seq);
        replayed.records += 1;
        good_len = reader.position();
    }
    replayed.damage = match reader.end() {
        None | Some(LogEnd::Clean) => None,
        Some(LogEnd::TornTail {
            good_len,
            bad_offset,
            reason,
        }) => Some(Damage {
            good_len: *good_len,
            bad_offset: *bad_offset,
            reason: reason.clone(),
            is_tail: true,
        }),
        Some(LogEnd::Corrupt {
            good_len,
            bad_offset,
            reason,
        }) => Some(Damage {
            good_len: *good_len,
            bad_offset: *bad_offset,
            reason: reason.clone(),
            is_tail: false,
        }),
        // Never truncate a file this build does not understand, whatever the mode.
        Some(LogEnd::BadHeader { reason }) => return Err(Error::corruption(path, 0, reason)),
    };
    Ok(replayed)
}

fn check_sequence(base_seq: SeqNo, batch: &WriteBatch, last_seq: Option<SeqNo>) -> Result<()> {
    if batch.is_empty() {
        return Err(Error::Codec("empty batch".to_owned()));
    }
    if base_seq.checked_add(batch.len() as u64 - 1).is_none() {
        return Err(Error::Codec(format!(
            "batch at seq {base_seq} with {} ops overflows the sequence space",
            batch.len()
        )));
    }
    match last_seq {
        Some(last) if base_seq <= last => Err(Error::Codec(format!(
            "sequence numbers go back: batch at seq {base_seq} after seq {last}"
        ))),
        _ => Ok(()),
    }
}

/// Replays every batch of segments `>= min_segment`, in order, calling `apply(base_seq, batch)`.
///
/// [`RecoveryMode::TolerateTornTail`]: a torn or corrupt tail of the LAST segment is truncated at
/// the last good record (file truncated and synced; logged with `tracing::warn` and reported in
/// `torn_tail`); damage anywhere else (an earlier segment, or the middle of the last one) is
/// `Error::Corruption` naming the file and offset.
/// [`RecoveryMode::PointInTime`]: stops at the first damage anywhere, truncates there, deletes the
/// later segments (then syncs the directory) and reports it.
/// A record whose bytes are intact but whose batch does not decode, is empty, or does not
/// continue the sequence numbers is damage too. A segment whose intact file header names another
/// format is always refused. An error from `apply` is returned as is.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    min_segment: u64,
    mode: RecoveryMode,
    mut apply: impl FnMut(SeqNo, WriteBatch) -> Result<()>,
) -> Result<RecoveryReport> {
    let segments: Vec<u64> = list_segments(fs, dir)?
        .into_iter()
        .filter(|&number| number >= min_segment)
        .collect();
    let mut report = RecoveryReport::default();
    for (index, &number) in segments.iter().enumerate() {
        let path = segment_path(dir, number);
        let bytes = fs.read(&path)?;
        let replayed = replay_segment(&path, &bytes, &mut report.last_seq, &mut apply)?;
        report.records += replayed.records;
        report.segments.push(SegmentInfo {
            number,
            max_seq: replayed.max_seq,
            bytes: bytes.len() as u64,
        });
        let Some(damage) = replayed.damage else {
            continue;
        };
        if let Some(last) = report.segments.last_mut() {
            last.bytes = damage.good_len;
        }
        let later = &segments[index + 1..];
        let tolerated = match mode {
            RecoveryMode::TolerateTornTail => later.is_empty() && damage.is_tail,
            RecoveryMode::PointInTime => true,
        };
        if !tolerated {
            return Err(Error::corruption(&path, damage.bad_offset, damage.reason));
        }
        fs.truncate(&path, damage.good_len)?;
        let mut dropped_bytes = bytes.len() as u64 - damage.good_len;
        for &number in later {
            let later_path = segment_path(dir, number);
            dropped_bytes += fs.read(&later_path)?.len() as u64;
            fs.remove(&later_path)?;
        }
        if !later.is_empty() {
            fs.sync_dir(dir)?;
        }
        let reason = format!("{} at offset {}", damage.reason, damage.bad_offset);
        tracing::warn!(
            segment = %path.display(),
            truncated_to = damage.good_len,
            dropped_bytes,
            deleted_segments = later.len(),
            %reason,
            "WAL recovery dropped a damaged log suffix"
        );
        report.torn_tail = Some(TornTail {
            segment: number,
            offset: damage.good_len,
            dropped_bytes,
            reason,
        });
        break;
    }
    Ok(report)
}

/// Reads the batches of segment `number` in order (to serve "changes after seq N" to followers
/// such as the indexes); returns the bytes read. Stops quietly at an incomplete tail, since the
/// segment may be the one being written; damage followed by valid data is `Error::Corruption`.
pub fn read_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    mut apply: impl FnMut(SeqNo, WriteBatch) -> Result<()>,
) -> Result<u64> {
    let path = segment_path(dir, number);
    let bytes = fs.read(&path)?;
    let replayed = replay_segment(&path, &bytes, &mut None, &mut apply)?;
    match replayed.damage {
        Some(damage) if !damage.is_tail => {
            Err(Error::corruption(&path, damage.bad_offset, damage.reason))
        }
        _ => Ok(bytes.len() as u64),
    }
}
