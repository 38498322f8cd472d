//! The topology log's entries and vote on disk (docs/cluster.md "Topology log files", version 1).
//!
//! Owns two files under the data dir's `cluster/`: `topology-log`, an append-only sequence of
//! records (an entry, a truncation, a purge) each framed as `[u32 length][u32 crc32][JSON]`
//! (little-endian), and `topology-vote`, the last vote, replaced atomically. Loading replays the
//! records; a torn last frame (a crash in the middle of an append that was never acknowledged)
//! is cut off, a damaged frame before the end is an error. A purge rewrites the file with what
//! is left, atomically.
//!
//! Invariants: an append is acknowledged to the log only after its frames are fsynced; the vote
//! is durable before `save_vote` returns. Must never: acknowledge an entry it could lose, or
//! start from a damaged file as if it were empty.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::TopologyConfig;
use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, write_atomically};
use crate::ring::HostId;

const LOG_FILE: &str = "topology-log";
const VOTE_FILE: &str = "topology-vote";
const VOTE_HEADER: &str = "allidb-topology-vote 1";
/// The frame header: length and checksum of the JSON body.
const FRAME_HEADER: usize = 8;
/// A frame longer than this is damage, not a record (the largest entry is a ring's tokens).
const MAX_RECORD_BYTES: usize = 64 << 20;

type StoreResult<T> = Result<T, StorageError<HostId>>;

/// One record of the log file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// An entry appended (replacing any entry at its index).
    Entry(Entry<TopologyConfig>),
    /// Entries from this index on were removed (a conflicting suffix).
    Truncate { since: u64 },
    /// Entries up to this log id were removed (they are in the state machine's snapshot).
    Purge { upto: LogId<HostId> },
}

struct LogFile {
    path: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TopologyConfig>>,
    last_purged: Option<LogId<HostId>>,
}

/// The log's storage; clones share it (the log reader is a clone).
#[derive(Clone)]
pub struct TopologyLogStore {
    data_dir: PathBuf,
    log: Arc<Mutex<LogFile>>,
}

impl std::fmt::Debug for TopologyLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyLogStore").finish_non_exhaustive()
    }
}

fn frame(record: &Record) -> Result<Vec<u8>, std::io::Error> {
    let body = serde_json::to_vec(record)?;
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The records of `bytes` and the length of the good prefix; an error names a damaged frame
/// that is not the last.
fn decode(bytes: &[u8]) -> Result<(Vec<Record>, usize), String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes.len() - at < FRAME_HEADER {
            break;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let end = at + FRAME_HEADER + len;
        if len > MAX_RECORD_BYTES {
            return Err(format!("frame at byte {at} claims {len} bytes"));
        }
        if end > bytes.len() {
            break;
        }
        let body = &bytes[at + FRAME_HEADER..end];
        if crc32fast::hash(body) != crc {
            if end == bytes.len() {
                break;
            }
            return Err(format!("frame at byte {at} fails its checksum"));
        }
        let record = serde_json::from_slice(body)
            .map_err(|e| format!("frame at byte {at} is not a record: {e}"))?;
        records.push(record);
        at = end;
    }
    Ok((records, at))
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TopologyLogStore {
    /// Opens (or creates) the log under `data_dir`, cutting off a torn last frame.
    pub fn open(data_dir: &Path) -> Result<TopologyLogStore, ClusterError> {
        let dir = data_dir.join(CLUSTER_DIR);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error(&path))?;
        let (records, good) = decode(&bytes).map_err(|reason| ClusterError::CorruptTopology {
            path: path.clone(),
            reason,
        })?;
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() - good,
                "the topology log ends with a torn record (a crash during an append); cut off"
            );
            file.set_len(good as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path))?;
        }
        let mut log = LogFile {
            path,
            file,
            entries: BTreeMap::new(),
            last_purged: None,
        };
        for record in records {
            log.replay(record);
        }
        Ok(TopologyLogStore {
            data_dir: data_dir.to_path_buf(),
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// The last vote stored, if any.
    fn load_vote(&self) -> Result<Option<Vote<HostId>>, ClusterError> {
        let path = self.data_dir.join(CLUSTER_DIR).join(VOTE_FILE);
        super::read_sealed_json(&path, VOTE_HEADER)
    }
}

impl LogFile {
    fn replay(&mut self, record: Record) {
        match record {
            Record::Entry(entry) => {
                self.entries.insert(entry.get_log_id().index, entry);
            }
            Record::Truncate { since } => {
                self.entries.split_off(&since);
            }
            Record::Purge { upto } => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                self.last_purged = Some(upto);
            }
        }
    }

    /// Appends `records`' frames and fsyncs, then applies them in memory.
    fn write(&mut self, records: Vec<Record>) -> Result<(), std::io::Error> {
        let mut bytes = Vec::new();
        for record in &records {
            bytes.extend(frame(record)?);
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        for record in records {
            self.replay(record);
        }
        Ok(())
    }

    /// Rewrites the file with the purge mark and the entries left, atomically.
    fn rewrite(&mut self) -> Result<(), std::io::Error> {
        let mut bytes = Vec::new();
        if let Some(upto) = self.last_purged {
            bytes.extend(frame(&Record::Purge { upto })?);
        }
        for entry in self.entries.values() {
            bytes.extend(frame(&Record::Entry(entry.clone()))?);
        }
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

impl RaftLogReader<TopologyConfig> for TopologyLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TopologyConfig>>> {
        let log = self.log.lock();
        Ok(log.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TopologyConfig> for TopologyLogStore {
    type LogReader = TopologyLogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TopologyConfig>> {
        let log = self.log.lock();
        let last_log_id = log
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<HostId>) -> StoreResult<()> {
        let json = serde_json::to_string(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_atomically(
            &self.data_dir,
            VOTE_FILE,
            &seal(format!("{VOTE_HEADER}\n{json}\n")),
        )
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<HostId>>> {
        self.load_vote()
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TopologyConfig>,
    ) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TopologyConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<Record> = entries.into_iter().map(Record::Entry).collect();
        let written = self.log.lock().write(records);
        let outcome = match &written {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        callback.log_io_completed(outcome);
        written.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId<HostId>) -> StoreResult<()> {
        self.log
            .lock()
            .write(vec![Record::Truncate {
                since: log_id.index,
            }])
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<HostId>) -> StoreResult<()> {
        let mut log = self.log.lock();
        log.replay(Record::Purge { upto: log_id });
        log.rewrite()
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TopologyConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, HostId::from_u128(1)), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(store: &TopologyLogStore) -> Vec<u64> {
        store.log.lock().entries.keys().copied().collect()
    }

    #[test]
    fn appends_truncations_and_purges_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = TopologyLogStore::open(dir.path()).expect("a new log");
        let records = (1..=5).map(|i| Record::Entry(entry(1, i))).collect();
        store.log.lock().write(records).expect("append");
        store
            .log
            .lock()
            .write(vec![Record::Truncate { since: 4 }])
            .expect("truncate");
        {
            let mut log = store.log.lock();
            log.replay(Record::Purge {
                upto: *entry(1, 1).get_log_id(),
            });
            log.rewrite().expect("purge");
            log.write(vec![Record::Entry(entry(2, 4))]).expect("append");
        }
        let reopened = TopologyLogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&reopened), vec![2, 3, 4]);
        assert_eq!(reopened.log.lock().entries[&4].log_id.leader_id.term, 2);
        assert_eq!(
            reopened.log.lock().last_purged.map(|l| l.index),
            Some(1),
            "the purge mark is kept"
        );
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_earlier_damage_is_an_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = TopologyLogStore::open(dir.path()).expect("a new log");
        let records = (1..=3).map(|i| Record::Entry(entry(1, i))).collect();
        store.log.lock().write(records).expect("append");
        drop(store);
        let path = dir.path().join(CLUSTER_DIR).join(LOG_FILE);
        let whole = fs::read(&path).expect("the log file");
        fs::write(&path, &whole[..whole.len() - 3]).expect("tear the last frame");
        let reopened = TopologyLogStore::open(dir.path()).expect("a torn tail is cut");
        assert_eq!(indexes(&reopened), vec![1, 2]);
        drop(reopened);

        let mut damaged = fs::read(&path).expect("the log file");
        damaged[FRAME_HEADER + 2] ^= 0xff;
        fs::write(&path, &damaged).expect("damage the first frame");
        let error =
            TopologyLogStore::open(dir.path()).expect_err("damage before the end is refused");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
