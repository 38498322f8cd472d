//! Fuzzes the WAL: the block-framed [`LogReader`] and [`wal::recover`].
//!
//! Two kinds of input:
//! * `Raw`: arbitrary bytes read as a log and recovered as a WAL segment. Checked: no panic;
//!   records come back at increasing offsets inside the input; every record round-trips through
//!   [`LogWriter`]; recovery is `Ok` or a corruption error, and recovering its result again
//!   replays the same batches with nothing left to truncate.
//! * `Written`: valid segments written by [`LogWriter`] from generated batches, then damaged (bit
//!   flips, zeroed ranges) and torn (the last segment cut and optionally zero-filled, as a power
//!   loss leaves it). Checked: the reader returns exactly a prefix of the written records; a torn
//!   tail alone is never reported as corruption; recovery replays exactly a prefix of the written
//!   batches (all of them but the torn ones when nothing else is damaged), in both modes.

#![no_main]

use std::path::Path;

use allidb_fuzz::{assert_corruption, sim_dir, write_file};
use allidb_storage::batch::WriteBatch;
use allidb_storage::fs::FileSystem;
use allidb_storage::fs::sim::SimFileSystem;
use allidb_storage::types::SeqNo;
use allidb_storage::wal::format::{LogEnd, LogReader, LogWriter};
use allidb_storage::wal::{self, RecoveryMode, WAL_MAGIC};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Written {
        segments: Vec<Vec<BatchSpec>>,
        damage: Vec<Damage>,
        tear: Option<Tear>,
    },
}

/// A generated batch: `ops % 4 + 1` cells, keys padded by `key_len % 32` bytes, values of
/// `value_len % 4096` bytes (the first one 40 000 bytes longer when `spans_blocks`, so the
/// record is split across 32 KiB log blocks).
#[derive(Arbitrary, Debug)]
struct BatchSpec {
    ops: u8,
    key_len: u8,
    value_len: u16,
    spans_blocks: bool,
}

#[derive(Arbitrary, Debug)]
enum Damage {
    FlipBit { segment: u8, at: u32, bit: u8 },
    Zero { segment: u8, at: u32, len: u16 },
}

/// The last segment is cut at `at` (modulo its length) and `zero_fill` zero bytes are appended.
#[derive(Arbitrary, Debug)]
struct Tear {
    at: u32,
    zero_fill: u16,
}

const MAX_SEGMENTS: usize = 3;
const MAX_BATCHES_PER_SEGMENT: usize = 6;

type Batches = Vec<(SeqNo, WriteBatch)>;

fuzz_target!(|input: Input| match input {
    Input::Raw(bytes) => check_raw(&bytes),
    Input::Written {
        segments,
        damage,
        tear,
    } => check_written(&segments, &damage, tear.as_ref()),
});

/// Reads `bytes` as a WAL log, checking the reader's own invariants.
fn read_log(bytes: &[u8]) -> (Vec<Vec<u8>>, LogEnd) {
    let mut reader = LogReader::new(bytes, WAL_MAGIC);
    let mut records = Vec::new();
    let mut last_offset = None;
    while let Some((offset, record)) = reader.next() {
        assert!(
            last_offset.is_none_or(|last| offset > last),
            "record offsets must increase"
        );
        assert!(offset < bytes.len() as u64, "record offset past the input");
        assert!(reader.position() <= bytes.len() as u64);
        last_offset = Some(offset);
        records.push(record.into_owned());
    }
    assert!(reader.next().is_none(), "the reader is fused");
    let end = reader
        .end()
        .cloned()
        .expect("the end is known once the reader returned None");
    if let LogEnd::TornTail { good_len, .. } | LogEnd::Corrupt { good_len, .. } = &end {
        assert!(*good_len <= bytes.len() as u64);
    }
    (records, end)
}

/// Writes `records` as a fresh WAL log and returns its bytes.
fn write_log(fs: &SimFileSystem, path: &Path, records: &[Vec<u8>]) -> Vec<u8> {
    let mut log = LogWriter::new(fs.create(path).expect("the directory exists"), WAL_MAGIC)
        .expect("a simulated file accepts the header");
    for record in records {
        log.add_record(record)
            .expect("simulated appends do not fail");
    }
    log.sync().expect("simulated syncs do not fail");
    fs.read(path).expect("the log was just written")
}

/// Recovers `dir` in `mode`, collecting the batches replayed.
fn recover(
    fs: &SimFileSystem,
    dir: &Path,
    mode: RecoveryMode,
) -> allidb_storage::Result<(Batches, wal::RecoveryReport)> {
    let mut batches = Vec::new();
    let report = wal::recover(fs, dir, 0, mode, |base, batch| {
        batches.push((base, batch));
        Ok(())
    })?;
    Ok((batches, report))
}

/// Recovering what a successful recovery left must replay the same batches and drop nothing.
fn assert_recovery_is_idempotent(fs: &SimFileSystem, dir: &Path, first: &Batches) {
    let (again, report) =
        recover(fs, dir, RecoveryMode::TolerateTornTail).expect("a recovered log recovers again");
    assert_eq!(&again, first, "a second recovery replays something else");
    assert_eq!(
        report.torn_tail, None,
        "a recovered log still had a torn tail"
    );
}

fn check_raw(bytes: &[u8]) {
    let (records, _) = read_log(bytes);
    let (fs, dir) = sim_dir(&[]);
    let rewritten = write_log(&fs, &dir.join("rewritten"), &records);
    let (reread, end) = read_log(&rewritten);
    assert_eq!(
        reread, records,
        "records do not round-trip through LogWriter"
    );
    assert_eq!(end, LogEnd::Clean);

    let segment = wal::segment_path(&dir, 1);
    write_file(&fs, &segment, bytes);
    match recover(&fs, &dir, RecoveryMode::TolerateTornTail) {
        Ok((batches, report)) => {
            let len = fs.read(&segment).expect("recovery keeps the segment").len() as u64;
            if let Some(torn) = &report.torn_tail {
                assert_eq!(
                    len, torn.offset,
                    "truncated to another length than reported"
                );
            }
            assert_recovery_is_idempotent(&fs, &dir, &batches);
        }
        Err(error) => assert_corruption(&error, "WAL recovery of arbitrary bytes"),
    }
}

/// The batch a spec describes, keyed by its position so every batch differs.
fn batch_of(spec: &BatchSpec, index: usize) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in 0..usize::from(spec.ops % 4) + 1 {
        let spans_blocks = spec.spans_blocks && op == 0;
        let value_len = usize::from(spec.value_len % 4096) + if spans_blocks { 40_000 } else { 0 };
        let mut key = format!("k{index}-{op}").into_bytes();
        key.resize(key.len() + usize::from(spec.key_len % 32), b'x');
        if (index + op) % 5 == 4 {
            batch.delete(key, op as u64);
        } else {
            batch.put(key, op as u64, vec![(index + op) as u8; value_len]);
        }
    }
    batch
}

fn check_written(specs: &[Vec<BatchSpec>], damage: &[Damage], tear: Option<&Tear>) {
    let (fs, dir) = sim_dir(&[]);
    let mut all: Batches = Vec::new();
    // Per segment: its written bytes, and the records in it.
    let mut segments: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    let mut next_seq: SeqNo = 1;
    for (number, segment_specs) in specs.iter().take(MAX_SEGMENTS).enumerate() {
        let mut records = Vec::new();
        for spec in segment_specs.iter().take(MAX_BATCHES_PER_SEGMENT) {
            let batch = batch_of(spec, all.len());
            let mut record = Vec::new();
            batch.encode(next_seq, &mut record);
            let ops = batch.len() as u64;
            all.push((next_seq, batch));
            next_seq += ops;
            records.push(record);
        }
        let path = wal::segment_path(&dir, number as u64 + 1);
        segments.push((write_log(&fs, &path, &records), records));
    }
    if segments.is_empty() {
        return;
    }

    let mut damaged = vec![false; segments.len()];
    for d in damage.iter().take(4) {
        let (segment, at) = match *d {
            Damage::FlipBit { segment, at, .. } | Damage::Zero { segment, at, .. } => {
                (usize::from(segment) % segments.len(), at as usize)
            }
        };
        let bytes = &mut segments[segment].0;
        if bytes.is_empty() {
            continue;
        }
        let at = at % bytes.len();
        let before = bytes.clone();
        match *d {
            Damage::FlipBit { bit, .. } => bytes[at] ^= 1 << (bit % 8),
            Damage::Zero { len, .. } => {
                let end = bytes.len().min(at + usize::from(len) + 1);
                bytes[at..end].fill(0);
            }
        }
        damaged[segment] |= *bytes != before;
    }
    let last = segments.len() - 1;
    if let Some(tear) = tear {
        let bytes = &mut segments[last].0;
        let cut = tear.at as usize % (bytes.len() + 1);
        bytes.truncate(cut);
        bytes.resize(cut + usize::from(tear.zero_fill % 2048), 0);
    }

    // The reader, segment by segment.
    for (index, (bytes, records)) in segments.iter().enumerate() {
        let (read, end) = read_log(bytes);
        assert!(
            records.starts_with(&read),
            "segment {index}: the reader returned records that were never written"
        );
        if !damaged[index] {
            if index != last || tear.is_none() {
                assert_eq!(
                    read.len(),
                    records.len(),
                    "segment {index}: intact records lost"
                );
                assert_eq!(
                    end,
                    LogEnd::Clean,
                    "segment {index}: an intact log is not clean"
                );
            } else {
                assert!(
                    matches!(end, LogEnd::Clean | LogEnd::TornTail { .. }),
                    "a torn (cut, zero-filled) log must be a torn tail, got {end:?}"
                );
            }
        }
    }

    // Recovery, in both modes, from the same damaged files.
    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime] {
        for (number, (bytes, _)) in segments.iter().enumerate() {
            write_file(&fs, &wal::segment_path(&dir, number as u64 + 1), bytes);
        }
        let any_damage = damaged.iter().any(|d| *d);
        match recover(&fs, &dir, mode) {
            Ok((batches, _)) => {
                assert!(
                    all.starts_with(&batches),
                    "{mode:?}: recovery replayed batches that are not a prefix of those written"
                );
                if !any_damage {
                    let whole_segments: usize = segments[..last].iter().map(|s| s.1.len()).sum();
                    assert!(
                        batches.len() >= whole_segments,
                        "{mode:?}: intact segments lost"
                    );
                    if tear.is_none() {
                        assert_eq!(batches.len(), all.len(), "{mode:?}: intact batches lost");
                    }
                }
                assert_recovery_is_idempotent(&fs, &dir, &batches);
            }
            Err(error) => {
                assert!(
                    any_damage && mode == RecoveryMode::TolerateTornTail,
                    "{mode:?}: recovery refused a log that was only torn: {error}"
                );
                assert_corruption(&error, "WAL recovery of a damaged log");
            }
        }
    }
}
