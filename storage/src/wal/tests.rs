//! WAL tests: torn tails at every offset, damage in earlier segments, simulated crashes under
//! concurrent writers, group commit, periodic durability and writer failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::format::{LogReader, LogWriter};
use super::*;
use crate::batch::Prepared;
use crate::error::Error;
use crate::fs::sim::SimFileSystem;
use crate::types::Durability;

fn wal_dir() -> PathBuf {
    PathBuf::from("/db/wal")
}

fn new_fs() -> SimFileSystem {
    let fs = SimFileSystem::new();
    fs.create_dir_all(&wal_dir()).unwrap();
    fs
}

/// A batch identified by `id` (its first key) with one to three ops: about `value_len` bytes
/// of values spread over its puts, and a tombstone as second op when it has one.
fn batch_of(id: u64, value_len: usize) -> WriteBatch {
    let mut batch = WriteBatch::new();
    let ops = 1 + (id % 3) as usize;
    let puts = if ops == 1 { 1 } else { ops - 1 };
    for op in 0..ops {
        let mut key = id.to_be_bytes().to_vec();
        key.push(op as u8);
        if op == 1 {
            batch.delete(key, id);
        } else {
            let value = (0..value_len / puts)
                .map(|i| (i as u64 ^ id) as u8)
                .collect();
            batch.put(key, id, value);
        }
    }
    batch
}

fn id_of(batch: &WriteBatch) -> u64 {
    u64::from_be_bytes(batch.ops()[0].key[..8].try_into().unwrap())
}

/// Records what the writer applies and asks for a rotation every `rotate_every` batches.
#[derive(Default)]
struct RecordingSink {
    applied: Mutex<Vec<(SeqNo, WriteBatch)>>,
    rotations: Mutex<Vec<u64>>,
    /// What `writer_failed` was told, path-free.
    failures: Mutex<Vec<String>>,
    rotate_every: Option<usize>,
    since_rotation: AtomicUsize,
    fail_apply: AtomicBool,
}

impl RecordingSink {
    fn rotating_every(batches: usize) -> Self {
        Self {
            rotate_every: Some(batches),
            ..Self::default()
        }
    }

    fn applied(&self) -> Vec<(SeqNo, WriteBatch)> {
        self.applied.lock().clone()
    }
}

impl CommitSink for RecordingSink {
    fn apply(&self, base_seq: SeqNo, batch: WriteBatch, _: Option<Prepared>) -> Result<()> {
        if self.fail_apply.load(Ordering::SeqCst) {
            return Err(Error::InvalidArgument("memtable refused".to_owned()));
        }
        self.applied.lock().push((base_seq, batch));
        self.since_rotation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn wants_rotation(&self) -> bool {
        self.rotate_every
            .is_some_and(|n| self.since_rotation.load(Ordering::SeqCst) >= n)
    }

    fn rotated(&self, new_segment: u64, _old_segment_bytes: u64) -> Result<()> {
        self.since_rotation.store(0, Ordering::SeqCst);
        self.rotations.lock().push(new_segment);
        Ok(())
    }

    fn writer_failed(&self, error: &Error) {
        self.failures.lock().push(error.cause());
    }
}

fn start(fs: &SimFileSystem, sink: &Arc<RecordingSink>) -> GroupCommitWriter {
    GroupCommitWriter::start(
        Arc::new(fs.clone()),
        wal_dir(),
        1,
        1,
        Arc::clone(sink) as Arc<dyn CommitSink>,
    )
    .unwrap()
}

fn recover_all(
    fs: &SimFileSystem,
    mode: RecoveryMode,
) -> Result<(Vec<(SeqNo, WriteBatch)>, RecoveryReport)> {
    let mut batches = Vec::new();
    let report = recover(fs, &wal_dir(), 0, mode, |seq, batch| {
        batches.push((seq, batch));
        Ok(())
    })?;
    Ok((batches, report))
}

fn overwrite(fs: &SimFileSystem, path: &Path, bytes: &[u8]) {
    let mut file = fs.create(path).unwrap();
    file.append(bytes).unwrap();
    file.sync_data().unwrap();
}

/// The base sequence numbers of `batches` (compact to print).
fn seqs(batches: &[(SeqNo, WriteBatch)]) -> Vec<SeqNo> {
    batches.iter().map(|(seq, _)| *seq).collect()
}

/// Ends of the file header and of each record of a segment, ascending.
fn record_ends(bytes: &[u8]) -> Vec<u64> {
    let mut reader = LogReader::new(bytes, WAL_MAGIC);
    let mut ends = vec![reader.position()];
    while reader.next().is_some() {
        ends.push(reader.position());
    }
    ends
}

/// Three segments written with `Sync`: two small ones, then a last one whose batches have varied
/// sizes, two of them spanning block boundaries. Returns the batches in seq order.
fn write_three_segments(fs: &SimFileSystem) -> Vec<(SeqNo, WriteBatch)> {
    let sink = Arc::new(RecordingSink::default());
    let writer = start(fs, &sink);
    let segments: [&[usize]; 3] = [
        &[10, 200, 3000],
        &[50, 700, 5],
        &[10, 300, 2000, 33_000, 20, 5000, 100, 3000],
    ];
    let mut id = 0;
    for (index, value_lens) in segments.iter().enumerate() {
        if index > 0 {
            assert_eq!(writer.rotate().unwrap(), index as u64 + 1);
        }
        for &len in *value_lens {
            id += 1;
            writer
                .write(batch_of(id, len), None, Durability::Sync)
                .unwrap();
        }
    }
    writer.close().unwrap();
    assert_eq!(*sink.rotations.lock(), vec![2, 3]);
    sink.applied()
}

#[test]
fn torn_tail_at_every_offset_recovers_exactly_the_whole_records() {
    let fs = new_fs();
    let written = write_three_segments(&fs);
    let last = segment_path(&wal_dir(), 3);
    let original = fs.read(&last).unwrap();
    assert!(original.len() > 40_000, "the last segment spans blocks");
    let ends = record_ends(&original);
    let earlier = written.len() - (ends.len() - 1);
    let zeros = vec![0u8; original.len()];
    let mut rng = StdRng::seed_from_u64(7);
    let garbage: Vec<u8> = (0..original.len()).map(|_| rng.random()).collect();
    let mut bytes = Vec::with_capacity(original.len());

    for cut in 0..=original.len() {
        for (variant, tail) in [
            ("cut", &[][..]),
            ("zeros", &zeros[cut..]),
            ("garbage", &garbage[cut..]),
        ] {
            bytes.clear();
            bytes.extend_from_slice(&original[..cut]);
            bytes.extend_from_slice(tail);
            // The damage starts where the bytes first differ (an overwrite may repeat some).
            let damage = cut
                + tail
                    .iter()
                    .zip(&original[cut..])
                    .take_while(|(a, b)| a == b)
                    .count();
            let kept_end = ends.iter().rev().find(|&&e| e <= damage as u64).copied();
            let whole = earlier + ends[1..].iter().filter(|&&e| e <= damage as u64).count();
            overwrite(&fs, &last, &bytes);
            let context = format!("{variant} at offset {cut}");
            let (recovered, report) = recover_all(&fs, RecoveryMode::TolerateTornTail)
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(seqs(&recovered), seqs(&written[..whole]), "{context}");
            assert!(
                recovered == written[..whole],
                "{context}: batch contents differ"
            );
            assert_eq!(report.records, whole as u64, "{context}");
            let expected_len = kept_end.unwrap_or(0);
            assert_eq!(
                fs.read(&last).unwrap().len() as u64,
                expected_len,
                "{context}"
            );
            match &report.torn_tail {
                None => assert_eq!(expected_len, bytes.len() as u64, "{context}"),
                Some(torn) => {
                    assert_eq!(torn.segment, 3, "{context}");
                    assert_eq!(torn.offset, expected_len, "{context}");
                    assert_eq!(
                        torn.dropped_bytes,
                        bytes.len() as u64 - expected_len,
                        "{context}"
                    );
                }
            }
            if cut % 101 == 0 {
                let (again, report) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
                assert_eq!(again, recovered, "{context}: recovery is idempotent");
                assert_eq!(report.torn_tail, None, "{context}");
            }
        }
    }
}

#[test]
fn damage_in_an_earlier_segment_is_refused_unless_point_in_time() {
    let fs = new_fs();
    let written = write_three_segments(&fs);
    let first = segment_path(&wal_dir(), 1);
    let bytes = fs.read(&first).unwrap();
    let ends = record_ends(&bytes);
    // A payload byte of the segment's third record.
    let mut damaged = bytes.clone();
    damaged[ends[2] as usize + 20] ^= 0x10;
    overwrite(&fs, &first, &damaged);

    match recover_all(&fs, RecoveryMode::TolerateTornTail) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, first);
            assert_eq!(offset, ends[2]);
        }
        other => panic!("expected corruption in {}, got {other:?}", first.display()),
    }
    assert_eq!(
        fs.read(&first).unwrap(),
        damaged,
        "refusing leaves the file untouched"
    );

    let (recovered, report) = recover_all(&fs, RecoveryMode::PointInTime).unwrap();
    assert_eq!(recovered, written[..2]);
    let torn = report.torn_tail.unwrap();
    assert_eq!((torn.segment, torn.offset), (1, ends[2]));
    assert_eq!(list_segments(&fs, &wal_dir()).unwrap(), vec![1]);
    assert_eq!(fs.read(&first).unwrap().len() as u64, ends[2]);
    assert_eq!(
        report.last_seq,
        Some(written[1].0 + written[1].1.len() as u64 - 1)
    );
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_refused() {
    let fs = new_fs();
    let written = write_three_segments(&fs);
    let last = segment_path(&wal_dir(), 3);
    let bytes = fs.read(&last).unwrap();
    let ends = record_ends(&bytes);
    let mut damaged = bytes.clone();
    damaged[ends[1] as usize + 10] ^= 0x01;
    overwrite(&fs, &last, &damaged);
    match recover_all(&fs, RecoveryMode::TolerateTornTail) {
        Err(Error::Corruption { path, offset, .. }) => assert_eq!((path, offset), (last, ends[1])),
        other => panic!("expected corruption, got {other:?}"),
    }
    let (recovered, _) = recover_all(&fs, RecoveryMode::PointInTime).unwrap();
    assert_eq!(recovered, written[..written.len() - (ends.len() - 2)]);
}

/// Writes a segment whose records are the given raw payloads.
fn write_raw_segment(fs: &SimFileSystem, number: u64, records: &[Vec<u8>]) -> Vec<u64> {
    let path = segment_path(&wal_dir(), number);
    let mut log = LogWriter::new(fs.create(&path).unwrap(), WAL_MAGIC).unwrap();
    for record in records {
        log.add_record(record).unwrap();
    }
    log.sync().unwrap();
    record_ends(&fs.read(&path).unwrap())
}

fn encoded(base_seq: SeqNo, batch: &WriteBatch) -> Vec<u8> {
    let mut out = Vec::new();
    batch.encode(base_seq, &mut out);
    out
}

#[test]
fn an_intact_record_that_is_not_a_valid_batch_is_corruption() {
    let good = encoded(10, &batch_of(1, 10));
    let cases = [
        ("undecodable", b"not a batch".to_vec()),
        ("sequence going back", encoded(5, &batch_of(2, 10))),
        ("empty batch", encoded(20, &WriteBatch::new())),
    ];
    for (name, bad) in cases {
        let fs = new_fs();
        let ends = write_raw_segment(&fs, 1, &[good.clone(), bad, encoded(30, &batch_of(3, 1))]);
        match recover_all(&fs, RecoveryMode::TolerateTornTail) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, ends[1], "{name}"),
            other => panic!("{name}: expected corruption, got {other:?}"),
        }
        let (recovered, report) = recover_all(&fs, RecoveryMode::PointInTime).unwrap();
        assert_eq!(recovered, vec![(10, batch_of(1, 10))], "{name}");
        assert_eq!(report.torn_tail.unwrap().offset, ends[1], "{name}");
    }
}

#[test]
fn recovery_skips_segments_below_the_minimum_and_reports_each_segment() {
    let fs = new_fs();
    let written = write_three_segments(&fs);
    let mut batches = Vec::new();
    let report = recover(
        &fs,
        &wal_dir(),
        2,
        RecoveryMode::TolerateTornTail,
        |seq, batch| {
            batches.push((seq, batch));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(batches, written[3..]);
    let numbers: Vec<u64> = report.segments.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![2, 3]);
    let last = written.last().unwrap();
    assert_eq!(
        report.segments[1].max_seq,
        Some(last.0 + last.1.len() as u64 - 1)
    );
    assert_eq!(report.last_seq, report.segments[1].max_seq);
}

#[test]
fn read_segment_stops_quietly_at_a_torn_tail_but_not_at_corruption() {
    let fs = new_fs();
    let written = write_three_segments(&fs);
    let last = segment_path(&wal_dir(), 3);
    let bytes = fs.read(&last).unwrap();
    let ends = record_ends(&bytes);
    overwrite(&fs, &last, &bytes[..ends[3] as usize + 5]);
    let mut seen = Vec::new();
    read_segment(&fs, &wal_dir(), 3, |seq, batch| {
        seen.push((seq, batch));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, written[6..9]);

    let mut damaged = bytes.clone();
    damaged[ends[1] as usize + 10] ^= 0x01;
    overwrite(&fs, &last, &damaged);
    assert!(
        read_segment(&fs, &wal_dir(), 3, |_, _| Ok(()))
            .unwrap_err()
            .is_corruption()
    );
}

#[test]
fn segments_split_exactly_at_rotation() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::rotating_every(3));
    let writer = start(&fs, &sink);
    for id in 1..=10 {
        writer
            .write(batch_of(id, 20), None, Durability::Buffered)
            .unwrap();
    }
    assert_eq!(writer.rotate().unwrap(), 5);
    writer.close().unwrap();
    assert_eq!(*sink.rotations.lock(), vec![2, 3, 4, 5]);
    let mut per_segment = Vec::new();
    for number in list_segments(&fs, &wal_dir()).unwrap() {
        let mut ids = Vec::new();
        read_segment(&fs, &wal_dir(), number, |_, batch| {
            ids.push(id_of(&batch));
            Ok(())
        })
        .unwrap();
        per_segment.push(ids);
    }
    assert_eq!(
        per_segment,
        vec![
            vec![1, 2, 3],
            vec![4, 5, 6],
            vec![7, 8, 9],
            vec![10],
            vec![]
        ]
    );
}

#[test]
fn sequence_numbers_are_contiguous_and_last_seq_follows_them() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = GroupCommitWriter::start(
        Arc::new(fs.clone()),
        wal_dir(),
        7,
        100,
        Arc::clone(&sink) as Arc<dyn CommitSink>,
    )
    .unwrap();
    assert_eq!(writer.last_seq(), 99);
    let mut expected = 100;
    for id in 1..=6 {
        let batch = batch_of(id, 5);
        let len = batch.len() as u64;
        assert_eq!(
            writer.write(batch, None, Durability::Sync).unwrap(),
            expected
        );
        expected += len;
        assert_eq!(writer.last_seq(), expected - 1);
    }
    writer.close().unwrap();
    let (recovered, report) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(recovered, sink.applied());
    assert_eq!(report.last_seq, Some(expected - 1));
}

#[test]
fn invalid_writes_are_refused_and_closing_stops_the_writer() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    assert!(matches!(
        writer.write(WriteBatch::new(), None, Durability::Sync),
        Err(Error::InvalidArgument(_))
    ));
    let mut huge = WriteBatch::new();
    huge.put(b"k".to_vec(), 1, vec![0; MAX_BATCH_BYTES]);
    assert!(matches!(
        writer.write(huge, None, Durability::Sync),
        Err(Error::InvalidArgument(_))
    ));
    writer
        .write(batch_of(1, 1), None, Durability::Sync)
        .unwrap();
    writer.close().unwrap();
    writer.close().unwrap();
    assert!(matches!(
        writer.write(batch_of(2, 1), None, Durability::Sync),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(writer.rotate(), Err(Error::Unavailable(_))));
    // Starting over an existing segment is refused.
    assert!(matches!(
        GroupCommitWriter::start(
            Arc::new(fs.clone()),
            wal_dir(),
            1,
            5,
            Arc::clone(&sink) as Arc<dyn CommitSink>
        ),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_failed_wal_write_fails_the_writer_for_good() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    writer
        .write(batch_of(1, 10), None, Durability::Sync)
        .unwrap();
    fs.set_fail_writes(true);
    assert!(matches!(
        writer.write(batch_of(2, 10), None, Durability::Sync),
        Err(Error::Io { .. })
    ));
    fs.set_fail_writes(false);
    assert!(matches!(
        writer.write(batch_of(3, 10), None, Durability::Sync),
        Err(Error::Unavailable(_))
    ));
    assert!(writer.close().is_err());
    assert_eq!(
        sink.applied().len(),
        1,
        "the failed batch never reached the sink"
    );
    assert_eq!(
        *sink.failures.lock(),
        vec!["simulated file system: injected write failure".to_owned()],
        "the sink is told once, without the path"
    );
}

#[test]
fn a_full_volume_fails_the_writer_with_no_space_until_restart() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    fs.set_no_space_for(Some(""));
    let failed = writer
        .write(batch_of(1, 10), None, Durability::Sync)
        .unwrap_err();
    assert!(failed.is_no_space(), "{failed}");
    fs.set_no_space_for(None);
    let refused = writer
        .write(batch_of(2, 10), None, Durability::Sync)
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "no space left on device on the data volume: the WAL write failed; writes are refused \
         until allidbd is restarted (acknowledged writes are safe; unacknowledged ones may or \
         may not have been applied)"
    );
    assert!(sink.applied().is_empty());
}

#[test]
fn a_failing_sink_fails_the_writer() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    sink.fail_apply.store(true, Ordering::SeqCst);
    assert!(matches!(
        writer.write(batch_of(1, 10), None, Durability::Buffered),
        Err(Error::InvalidArgument(_))
    ));
    sink.fail_apply.store(false, Ordering::SeqCst);
    assert!(matches!(
        writer.write(batch_of(2, 10), None, Durability::Sync),
        Err(Error::Unavailable(_))
    ));
}

/// A writer on `fs` that wrote one batch synced, then one buffered.
fn write_synced_then_buffered(fs: &SimFileSystem, sink: &Arc<RecordingSink>) -> GroupCommitWriter {
    let writer = start(fs, sink);
    writer
        .write(batch_of(1, 10), None, Durability::Sync)
        .unwrap();
    writer
        .write(batch_of(2, 10), None, Durability::Buffered)
        .unwrap();
    writer
}

#[test]
fn buffered_writes_survive_a_process_crash_but_not_a_power_loss() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = write_synced_then_buffered(&fs, &sink);
    fs.kill_process();
    drop(writer);
    let (recovered, _) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(recovered.len(), 2, "flushed to the OS before the ack");

    let fs = new_fs();
    let writer = write_synced_then_buffered(&fs, &sink);
    fs.crash();
    drop(writer);
    let (recovered, _) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(recovered.len(), 1, "never synced");
}

#[test]
fn periodic_writes_become_durable_within_the_window() {
    let fs = new_fs();
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    let syncs_before = fs.sync_data_calls();
    let segment = segment_path(&wal_dir(), 1);
    let durable_before = fs.durable_contents(&segment).unwrap().len();
    let written = Instant::now();
    writer
        .write(batch_of(1, 100), None, Durability::Periodic(50))
        .unwrap();
    let deadline = written + Duration::from_secs(5);
    while fs.durable_contents(&segment).unwrap().len() == durable_before {
        assert!(Instant::now() < deadline, "the periodic sync never came");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        written.elapsed() >= Duration::from_millis(50),
        "synced before the window: the write should have been acknowledged unsynced"
    );
    assert_eq!(fs.sync_data_calls(), syncs_before + 1);
    fs.crash();
    drop(writer);
    let (recovered, _) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(recovered, sink.applied());
}

#[test]
fn concurrent_sync_writers_share_syncs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 25;
    let fs = new_fs();
    fs.set_sync_delay(Duration::from_millis(1));
    let sink = Arc::new(RecordingSink::default());
    let writer = start(&fs, &sink);
    let syncs_before = fs.sync_data_calls();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let writer = &writer;
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let batch = batch_of(thread * 1000 + i, 64);
                    writer.write(batch, None, Durability::Sync).unwrap();
                }
            });
        }
    });
    let syncs = fs.sync_data_calls() - syncs_before;
    let batches = THREADS * PER_THREAD;
    assert!(
        syncs < batches / 2,
        "{syncs} syncs for {batches} batches: group commit did not group"
    );
    writer.close().unwrap();
    let (recovered, _) = recover_all(&fs, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(recovered.len() as u64, batches);
}

/// What one writer thread of the crash test submitted and what was acknowledged.
struct ThreadLog {
    durability: Durability,
    submitted: Vec<WriteBatch>,
    acked: Vec<(SeqNo, u64)>,
}

#[test]
fn simulated_crash_keeps_every_synced_write_and_invents_nothing() {
    for round in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(round);
        let fs = new_fs();
        fs.set_sync_delay(Duration::from_micros(200));
        let sink = Arc::new(RecordingSink::rotating_every(40));
        let writer = start(&fs, &sink);
        let durabilities = [
            Durability::Sync,
            Durability::Sync,
            Durability::Buffered,
            Durability::Periodic(3),
        ];
        // Crash at a random point of progress (not of wall time, which a loaded machine skews).
        // Also wait for one acknowledged sync write: on a loaded machine the buffered writers
        // can collect every ack before a sync writer's first group commit.
        let crash_after_acks = rng.random_range(10..300);
        let acks = AtomicUsize::new(0);
        let sync_acks = AtomicUsize::new(0);
        let logs: Vec<ThreadLog> = std::thread::scope(|scope| {
            let handles: Vec<_> = durabilities
                .iter()
                .enumerate()
                .map(|(thread, &durability)| {
                    let (writer, acks, sync_acks) = (&writer, &acks, &sync_acks);
                    scope.spawn(move || {
                        let mut log = ThreadLog {
                            durability,
                            submitted: Vec::new(),
                            acked: Vec::new(),
                        };
                        for i in 0.. {
                            let id = thread as u64 * 1_000_000 + i;
                            let batch = batch_of(id, (id as usize * 7919) % 3000);
                            log.submitted.push(batch.clone());
                            match writer.write(batch, None, durability) {
                                Ok(seq) => {
                                    log.acked.push((seq, id));
                                    acks.fetch_add(1, Ordering::SeqCst);
                                    if durability == Durability::Sync {
                                        sync_acks.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                        log
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while acks.load(Ordering::SeqCst) < crash_after_acks
                || sync_acks.load(Ordering::SeqCst) == 0
            {
                assert!(Instant::now() < deadline, "writers made no progress");
                std::thread::sleep(Duration::from_micros(100));
            }
            fs.crash();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        drop(writer);

        let (recovered, _) = recover_all(&fs, RecoveryMode::TolerateTornTail)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let context = format!("round {round}, crash after {crash_after_acks} acks");
        // A prefix of the log, in seq order, with contiguous sequence numbers.
        let mut next_seq = 1;
        for (seq, batch) in &recovered {
            assert_eq!(*seq, next_seq, "{context}");
            next_seq += batch.len() as u64;
        }
        let applied = sink.applied();
        let common = applied.len().min(recovered.len());
        assert_eq!(recovered[..common], applied[..common], "{context}");
        // Nothing invented: every recovered batch is one that was submitted.
        let submitted: HashMap<u64, &WriteBatch> = logs
            .iter()
            .flat_map(|log| log.submitted.iter().map(|b| (id_of(b), b)))
            .collect();
        let recovered_seqs: HashMap<u64, SeqNo> = recovered
            .iter()
            .map(|(seq, batch)| {
                let id = id_of(batch);
                assert_eq!(submitted.get(&id), Some(&batch), "{context}: batch {id}");
                (id, *seq)
            })
            .collect();
        assert_eq!(
            recovered_seqs.len(),
            recovered.len(),
            "{context}: duplicates"
        );
        // Every acknowledged Sync write survived, at the seq it was acknowledged with; any
        // other acknowledged write that survived did so at its seq too.
        let mut synced_acks = 0;
        for log in &logs {
            for &(seq, id) in &log.acked {
                match recovered_seqs.get(&id) {
                    Some(&recovered_seq) => assert_eq!(recovered_seq, seq, "{context}"),
                    None => assert_ne!(
                        log.durability,
                        Durability::Sync,
                        "{context}: acknowledged sync write {id} (seq {seq}) lost"
                    ),
                }
                synced_acks += usize::from(log.durability == Durability::Sync);
            }
        }
        assert!(
            synced_acks > 0,
            "{context}: the crash came before any write"
        );
    }
}

#[test]
#[ignore = "throughput measurement on the real file system; run with --ignored --nocapture"]
fn measure_group_commit_throughput() {
    use crate::fs::OsFileSystem;
    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, Durability, u64, u64); 3] = [
        ("buffered, 1 thread", Durability::Buffered, 1, 200_000),
        ("sync, 1 thread", Durability::Sync, 1, 2_000),
        ("sync, 16 threads", Durability::Sync, 16, 1_000),
    ];
    for (index, (name, durability, threads, per_thread)) in runs.into_iter().enumerate() {
        let sink = Arc::new(RecordingSink::default());
        let writer = GroupCommitWriter::start(
            Arc::new(OsFileSystem),
            dir.path().to_owned(),
            index as u64 + 1,
            1,
            Arc::clone(&sink) as Arc<dyn CommitSink>,
        )
        .unwrap();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let writer = &writer;
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let mut batch = WriteBatch::new();
                        batch.put(
                            (thread * per_thread + i).to_be_bytes().to_vec(),
                            i,
                            vec![7; 100],
                        );
                        writer.write(batch, None, durability).unwrap();
                    }
                });
            }
        });
        let elapsed = started.elapsed();
        writer.close().unwrap();
        let batches = threads * per_thread;
        println!(
            "{name}: {batches} batches of one 100-byte put in {elapsed:?} = {:.0} batches/s",
            batches as f64 / elapsed.as_secs_f64()
        );
    }
}
