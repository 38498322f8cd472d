//! Hinted handoff (DESIGN.md §6): mutations a replica missed, kept by the coordinator until the
//! replica is back ([`dispatcher`] delivers them).
//!
//! Owns `<data dir>/cluster/hints/<host id>/<number>.hints`: per target host, numbered segment
//! files in the WAL's block framing and checksums (`allidb_storage::wal::format`, file magic
//! `ALLIHINT`), one record per hint (docs/cluster.md "Hint log", version 2; version 1 records,
//! without tenant drops, are still read):
//!
//! ```text
//! version:u8=2  created_unix_ms:u64  ring_version:u64
//!   drops:u32  drops x (tenant_len:u16 tenant ts:u64)
//!   batch (WriteBatch encoding, base_seq 0)
//! ```
//!
//! Invariants: a hint is synced before [`HintLog::store`] returns, so a hint survives a crash
//! of the coordinator; segments are append-only, and only sealed segments (no longer appended
//! to) are delivered and deleted; a target's hints never exceed the size cap (over it, new
//! hints are dropped and counted, and Merkle repair, a later issue, must catch the replica up).
//!
//! Must never: delete a segment before every hint in it was acknowledged or expired, or count
//! a hint toward a consistency level (the coordinator does not).

pub mod dispatcher;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allidb_storage::batch::WriteBatch;
use allidb_storage::fs::{FileSystem, OsFileSystem};
use allidb_storage::wal::format::{LogEnd, LogReader, LogWriter, MAGIC_LEN};
use parking_lot::Mutex;

use crate::ClusterError;
use crate::cells::DroppedTenant;
use crate::ring::HostId;

/// Magic of a hint segment's file header.
pub const HINT_MAGIC: &[u8; MAGIC_LEN] = b"ALLIHINT";

/// Version of the hint records written (version 1, without tenant drops, is still read).
pub const HINT_RECORD_VERSION: u8 = 2;

const SUFFIX: &str = ".hints";
/// Appended to a damaged segment's name when it is set aside.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// One stored hint.
#[derive(Debug)]
pub struct Hint {
    /// When the coordinator stored it (Unix milliseconds).
    pub created_unix_ms: u64,
    /// The ring version the mutation was routed with.
    pub ring_version: u64,
    /// Tenant drops the replica missed (applied before `batch`).
    pub drops: Vec<DroppedTenant>,
    /// The cells, with their original timestamps.
    pub batch: WriteBatch,
}

impl Hint {
    fn encode(&self) -> Vec<u8> {
        let drops_len: usize = self.drops.iter().map(|d| 10 + d.tenant.len()).sum();
        let mut out = Vec::with_capacity(21 + drops_len + self.batch.approximate_size());
        out.push(HINT_RECORD_VERSION);
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.ring_version.to_le_bytes());
        out.extend_from_slice(&(self.drops.len() as u32).to_le_bytes());
        for drop in &self.drops {
            // A tenant id is at most 256 bytes (allidb_storage::key::validate_tenant).
            out.extend_from_slice(&(drop.tenant.len() as u16).to_le_bytes());
            out.extend_from_slice(drop.tenant.as_bytes());
            out.extend_from_slice(&drop.ts.to_le_bytes());
        }
        self.batch.encode(0, &mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        fn split<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if rest.len() < n {
                return Err("truncated hint record".to_owned());
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Ok(head)
        }
        let mut rest = bytes;
        let mut take = |n: usize| split(&mut rest, n);
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes were taken"));
        let version = take(1)?[0];
        if !(1..=HINT_RECORD_VERSION).contains(&version) {
            return Err(format!("unknown hint record version {version}"));
        }
        let created_unix_ms = u64_of(take(8)?);
        let ring_version = u64_of(take(8)?);
        let mut drops = Vec::new();
        if version >= 2 {
            let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes were taken"));
            for _ in 0..count {
                let len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes were taken"));
                let tenant = String::from_utf8(take(usize::from(len))?.to_vec())
                    .map_err(|_| "a dropped tenant id is not UTF-8".to_owned())?;
                let ts = u64_of(take(8)?);
                drops.push(DroppedTenant { tenant, ts });
            }
        }
        let (_, batch) = WriteBatch::decode(rest).map_err(|e| e.to_string())?;
        Ok(Self {
            created_unix_ms,
            ring_version,
            drops,
            batch,
        })
    }

    /// About how many bytes the hint sends.
    pub fn size(&self) -> usize {
        self.batch.approximate_size() + self.drops.iter().map(|d| d.tenant.len() + 8).sum::<usize>()
    }

    /// Whether the hint is older than `window` at `now_ms`.
    pub fn expired(&self, window: Duration, now_ms: u64) -> bool {
        self.created_unix_ms
            .saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
            < now_ms
    }
}

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The hints of one target host.
#[derive(Debug, Default)]
struct TargetHints {
    /// Segment numbers, oldest first; the last is being appended to when `writer` is set.
    segments: BTreeMap<u64, u64>,
    writer: Option<(u64, LogWriter)>,
}

impl TargetHints {
    fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }
}

/// One target's hints behind their own lock (held across file creation and fsync, so only that
/// target's writers wait), with their byte count readable without it.
#[derive(Debug, Default)]
struct Target {
    bytes: AtomicU64,
    hints: Mutex<TargetHints>,
}

impl Target {
    fn new(hints: TargetHints) -> Self {
        Self {
            bytes: AtomicU64::new(hints.bytes()),
            hints: Mutex::new(hints),
        }
    }

    /// Publishes the byte count of `hints` (held locked by the caller).
    fn publish(&self, hints: &TargetHints) {
        self.bytes.store(hints.bytes(), Ordering::Release);
    }
}

/// The hint logs of every target host, under one directory.
#[derive(Debug)]
pub struct HintLog {
    dir: PathBuf,
    fs: OsFileSystem,
    max_bytes_per_host: u64,
    /// Held only to find or add a target, never across I/O.
    targets: Mutex<HashMap<HostId, Arc<Target>>>,
}

fn io(path: &Path, error: allidb_storage::Error) -> ClusterError {
    ClusterError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(error.to_string()),
    }
}

impl HintLog {
    /// Opens (creating) the hint directory `dir`; every segment found is sealed and pending.
    pub fn open(dir: &Path, max_bytes_per_host: u64) -> Result<Self, ClusterError> {
        let fs = OsFileSystem;
        fs.create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut targets = HashMap::new();
        for name in fs.list(dir).map_err(|e| io(dir, e))? {
            let Ok(host) = name.parse::<HostId>() else {
                continue;
            };
            let host_dir = dir.join(&name);
            let mut hints = TargetHints::default();
            for file in fs.list(&host_dir).map_err(|e| io(&host_dir, e))? {
                let Some(number) = file.strip_suffix(SUFFIX).and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let path = host_dir.join(&file);
                let len = std::fs::metadata(&path)
                    .map_err(|source| ClusterError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                hints.segments.insert(number, len);
            }
            targets.insert(host, Arc::new(Target::new(hints)));
        }
        Ok(Self {
            dir: dir.to_owned(),
            fs,
            max_bytes_per_host,
            targets: Mutex::new(targets),
        })
    }

    fn segment_path(&self, host: HostId, number: u64) -> PathBuf {
        self.dir
            .join(host.to_string())
            .join(format!("{number:06}{SUFFIX}"))
    }

    /// Stores a hint for `host` (synced before returning). `Ok(false)` when the host's hints
    /// are at the size cap and this one was dropped. Only writers of the same host wait for
    /// each other; [`HintLog::pending`] never waits for a store.
    pub fn store(&self, host: HostId, hint: &Hint) -> Result<bool, ClusterError> {
        let record = hint.encode();
        let target = self.target(host);
        let mut hints = target.hints.lock();
        let stored = self.append(host, &mut hints, &record);
        target.publish(&hints);
        stored
    }

    /// The target of `host`, added when new.
    fn target(&self, host: HostId) -> Arc<Target> {
        self.targets.lock().entry(host).or_default().clone()
    }

    /// [`HintLog::store`] under the target's lock.
    fn append(
        &self,
        host: HostId,
        target: &mut TargetHints,
        record: &[u8],
    ) -> Result<bool, ClusterError> {
        if target.bytes() + record.len() as u64 > self.max_bytes_per_host {
            return Ok(false);
        }
        if target.writer.is_none() {
            let number = target.segments.keys().next_back().map_or(1, |n| n + 1);
            let path = self.segment_path(host, number);
            let host_dir = self.dir.join(host.to_string());
            self.fs
                .create_dir_all(&host_dir)
                .map_err(|e| io(&host_dir, e))?;
            let file = self.fs.create(&path).map_err(|e| io(&path, e))?;
            let writer = LogWriter::new(file, HINT_MAGIC).map_err(|e| io(&path, e))?;
            self.fs.sync_dir(&host_dir).map_err(|e| io(&host_dir, e))?;
            target.segments.insert(number, writer.len());
            target.writer = Some((number, writer));
        }
        let (number, writer) = target
            .writer
            .as_mut()
            .expect("a writer was just opened when there was none");
        let path = self.segment_path(host, *number);
        let written = writer.add_record(record).and_then(|()| writer.sync());
        let len = writer.len();
        let number = *number;
        target.segments.insert(number, len);
        if let Err(error) = written {
            // The segment may end in a partial record: seal it (readers stop at the torn tail).
            target.writer = None;
            return Err(io(&path, error));
        }
        Ok(true)
    }

    /// Hosts with pending hints and their bytes.
    pub fn pending(&self) -> BTreeMap<HostId, u64> {
        self.targets
            .lock()
            .iter()
            .map(|(host, target)| (*host, target.bytes.load(Ordering::Acquire)))
            .filter(|(_, bytes)| *bytes > 0)
            .collect()
    }

    /// Seals the segment being appended to for `host` and returns every segment to deliver,
    /// oldest first. New hints go to a new segment.
    pub fn seal(&self, host: HostId) -> Vec<u64> {
        let Some(target) = self.targets.lock().get(&host).cloned() else {
            return Vec::new();
        };
        let mut hints = target.hints.lock();
        hints.writer = None;
        hints.segments.keys().copied().collect()
    }

    /// The hints of a sealed segment, in order. A torn tail ends the segment (its last hint
    /// was never acknowledged to a client as hinted); damage in the middle is an error.
    pub fn read(&self, host: HostId, number: u64) -> Result<Vec<Hint>, ClusterError> {
        let path = self.segment_path(host, number);
        let bytes = self.fs.read(&path).map_err(|e| io(&path, e))?;
        let mut reader = LogReader::new(&bytes, HINT_MAGIC);
        let mut hints = Vec::new();
        for (_, record) in reader.by_ref() {
            hints.push(
                Hint::decode(&record).map_err(|reason| ClusterError::CorruptHints {
                    path: path.clone(),
                    reason,
                })?,
            );
        }
        match reader.end() {
            Some(LogEnd::Corrupt { reason, .. }) | Some(LogEnd::BadHeader { reason }) => {
                Err(ClusterError::CorruptHints {
                    path,
                    reason: reason.clone(),
                })
            }
            _ => Ok(hints),
        }
    }

    /// Sets a damaged sealed segment of `host` aside (renamed with [`DAMAGED_SUFFIX`], no longer
    /// pending or delivered, kept for an operator); the path it is kept at.
    pub fn quarantine(&self, host: HostId, number: u64) -> Result<PathBuf, ClusterError> {
        let path = self.segment_path(host, number);
        let mut kept = path.clone().into_os_string();
        kept.push(DAMAGED_SUFFIX);
        let kept = PathBuf::from(kept);
        if let Some(target) = self.targets.lock().get(&host).cloned() {
            let mut hints = target.hints.lock();
            if hints.writer.as_ref().is_some_and(|(n, _)| *n == number) {
                hints.writer = None;
            }
            hints.segments.remove(&number);
            target.publish(&hints);
        }
        self.fs.rename(&path, &kept).map_err(|e| io(&path, e))?;
        let host_dir = self.dir.join(host.to_string());
        self.fs.sync_dir(&host_dir).map_err(|e| io(&host_dir, e))?;
        Ok(kept)
    }

    /// Deletes a sealed segment of `host` whose hints were all delivered or expired.
    pub fn remove(&self, host: HostId, number: u64) -> Result<(), ClusterError> {
        let path = self.segment_path(host, number);
        if let Some(target) = self.targets.lock().get(&host).cloned() {
            let mut hints = target.hints.lock();
            if hints.writer.as_ref().is_some_and(|(n, _)| *n == number) {
                return Ok(());
            }
            hints.segments.remove(&number);
            target.publish(&hints);
        }
        self.fs.remove(&path).map_err(|e| io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(created_unix_ms: u64, value: &[u8]) -> Hint {
        let mut batch = WriteBatch::new();
        batch.put(b"k".to_vec(), 7, value.to_vec());
        batch.delete(b"j".to_vec(), 8);
        Hint {
            created_unix_ms,
            ring_version: 3,
            drops: Vec::new(),
            batch,
        }
    }

    #[test]
    fn hints_survive_a_reopen_and_are_delivered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::from_u128(42);
        let log = HintLog::open(dir.path(), 1 << 20).unwrap();
        assert!(log.store(host, &hint(1, b"a")).unwrap());
        assert!(log.store(host, &hint(2, b"b")).unwrap());
        drop(log);

        let log = HintLog::open(dir.path(), 1 << 20).unwrap();
        assert!(log.pending()[&host] > 0);
        assert!(
            log.store(host, &hint(3, b"c")).unwrap(),
            "appends go to a new segment"
        );
        let segments = log.seal(host);
        assert_eq!(segments.len(), 2);
        let read: Vec<u64> = segments
            .iter()
            .flat_map(|n| log.read(host, *n).unwrap())
            .map(|h| {
                assert_eq!(h.ring_version, 3);
                assert_eq!(h.batch.len(), 2);
                h.created_unix_ms
            })
            .collect();
        assert_eq!(read, vec![1, 2, 3]);
        for n in segments {
            log.remove(host, n).unwrap();
        }
        assert!(log.pending().is_empty());
        drop(log);
        assert!(
            HintLog::open(dir.path(), 1 << 20)
                .unwrap()
                .pending()
                .is_empty()
        );
    }

    #[test]
    fn a_hint_keeps_its_tenant_drops_and_version_1_records_still_read() {
        let mut with_drops = hint(5, b"v");
        with_drops.drops = vec![
            DroppedTenant {
                tenant: "acme".to_owned(),
                ts: 77,
            },
            DroppedTenant {
                tenant: "b".to_owned(),
                ts: u64::MAX,
            },
        ];
        let read = Hint::decode(&with_drops.encode()).unwrap();
        assert_eq!(read.drops, with_drops.drops);
        assert_eq!((read.created_unix_ms, read.ring_version), (5, 3));
        assert_eq!(read.batch.len(), 2);

        // Version 1: no drop count between the ring version and the batch.
        let plain = hint(6, b"w");
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&plain.created_unix_ms.to_le_bytes());
        v1.extend_from_slice(&plain.ring_version.to_le_bytes());
        plain.batch.encode(0, &mut v1);
        let read = Hint::decode(&v1).unwrap();
        assert!(read.drops.is_empty());
        assert_eq!((read.created_unix_ms, read.batch.len()), (6, 2));

        let mut unknown = with_drops.encode();
        unknown[0] = 3;
        assert!(Hint::decode(&unknown).unwrap_err().contains("version 3"));
        let encoded = with_drops.encode();
        assert!(Hint::decode(&encoded[..30]).is_err(), "a truncated record");
    }

    #[test]
    fn a_store_for_one_target_waits_for_no_other_and_pending_for_none() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(HintLog::open(dir.path(), 1 << 20).unwrap());
        let (slow, other) = (HostId::from_u128(1), HostId::from_u128(2));
        assert!(log.store(slow, &hint(1, b"a")).unwrap());
        // The slow target's lock held, as during its segment's fsync, and a second store for it
        // waiting behind that.
        let target = log.target(slow);
        let held = target.hints.lock();
        let waiting = log.clone();
        let queued = std::thread::spawn(move || waiting.store(slow, &hint(3, b"c")).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let (done, finished) = std::sync::mpsc::channel();
        let writer = log.clone();
        std::thread::spawn(move || {
            let stored = writer.store(other, &hint(2, b"b")).unwrap();
            let pending = writer.pending();
            done.send((stored, pending)).unwrap();
        });
        let (stored, pending) = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("neither the other target's store nor pending waits for the held one");
        assert!(stored);
        assert!(pending[&slow] > 0 && pending[&other] > 0, "{pending:?}");
        drop(held);
        assert!(
            queued.join().unwrap(),
            "the waiting store goes on once the lock is free"
        );
    }

    #[test]
    fn hints_over_the_cap_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::from_u128(7);
        let log = HintLog::open(dir.path(), 200).unwrap();
        assert!(log.store(host, &hint(1, &[0; 64])).unwrap());
        assert!(!log.store(host, &hint(2, &[0; 128])).unwrap());
        assert!(log.pending()[&host] <= 200);
    }

    #[test]
    fn a_torn_tail_keeps_the_whole_hints_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::from_u128(9);
        let log = HintLog::open(dir.path(), 1 << 20).unwrap();
        log.store(host, &hint(1, b"a")).unwrap();
        log.store(host, &hint(2, b"b")).unwrap();
        let number = log.seal(host)[0];
        let path = log.segment_path(host, number);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let read = log.read(host, number).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].created_unix_ms, 1);
    }

    #[test]
    fn expiry_follows_the_window() {
        let h = hint(1_000, b"a");
        assert!(!h.expired(Duration::from_secs(1), 2_000));
        assert!(h.expired(Duration::from_secs(1), 2_001));
    }
}
