//! The hash cache: the SHA-256 of checkpoint files an earlier backup already hashed, kept in a
//! local file so that a backup does not read them again (docs/backup.md, "Hash cache").
//!
//! A checkpoint hard-links the store's immutable files (SSTables, the index dump, finished WAL
//! segments), so the same file shows up in every backup's checkpoint with the same relative
//! path, size, modification time and inode. An entry is keyed by all of these ([`FileKey`]: the
//! `/`-separated path relative to the checkpoint, size, modification time in nanoseconds,
//! device, inode and birth time) and also records a probe: the SHA-256 of the file's first and
//! last [`PROBE_BYTES`] (of the whole file when it is smaller), read again on every lookup.
//!
//! What it owns: the cache file's format (version [`VERSION`]), loading it, looking files up,
//! recording new hashes and writing the file back (to a temporary file renamed into place, so a
//! crash leaves the old file or the new one, whole).
//!
//! ```text
//! allidb-backup-hash-cache 1 sha256=<hex SHA-256 of every byte after this line>
//! <sha256> <size> <mtime ns> <device> <inode> <birth ns> <probe sha256> <last used, Unix s> <path>
//! ```
//!
//! Invariants: a hash is served only for a file whose key and probe both match what was hashed;
//! a file modified less than [`SETTLE`] before it was hashed is not recorded (a write within the
//! file system's timestamp granularity could leave its modification time unchanged); a cache
//! file that is missing, of another version, fails its checksum or does not parse is ignored
//! whole (every file is hashed again, and the file is rewritten after the backup). Must never:
//! serve a hash for a file whose size, modification time, inode, birth time or first or last
//! bytes differ from the hashed file's; fail a backup because the cache cannot be read or written
//! (that is logged, and the backup hashes every file).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manifest::sha256_hex;
use super::{BackupError, BackupResult};

/// Version of the cache file format.
pub const VERSION: u32 = 1;
const MAGIC: &str = "allidb-backup-hash-cache";
/// Bytes read at each end of a file for its probe.
pub const PROBE_BYTES: u64 = 4096;
/// A file modified less than this before its hashing began is not recorded.
pub const SETTLE: Duration = Duration::from_secs(2);
/// Entries kept at most: the most recently used ones.
const MAX_ENTRIES: usize = 50_000;
/// An entry no backup used for this long is dropped when the file is written.
const MAX_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What identifies one file as hashed: unchanged key, unchanged bytes (within the limits the
/// module documentation states).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// `/`-separated, relative to the checkpoint directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_nanos: i128,
    /// The file system's device number.
    pub device: u64,
    /// The inode number.
    pub inode: u64,
    /// Birth (creation) time in nanoseconds since the Unix epoch, 0 where the file system does
    /// not record it.
    pub birth_nanos: i128,
}

impl FileKey {
    /// The key of the file at `relative` whose metadata is `metadata`.
    pub fn new(relative: &str, metadata: &std::fs::Metadata) -> FileKey {
        FileKey {
            path: relative.to_owned(),
            size: metadata.len(),
            mtime_nanos: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            device: metadata.dev(),
            inode: metadata.ino(),
            birth_nanos: metadata.created().map_or(0, nanos_since_epoch),
        }
    }

    fn modified(&self) -> SystemTime {
        match u64::try_from(self.mtime_nanos) {
            Ok(nanos) => UNIX_EPOCH + Duration::from_nanos(nanos),
            Err(_) => UNIX_EPOCH,
        }
    }
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    sha256: String,
    probe: String,
    used_secs: u64,
}

/// The cache as loaded from its file, with the lookups and new hashes of this backup.
#[derive(Debug)]
pub struct HashCache {
    file: PathBuf,
    entries: HashMap<FileKey, Entry>,
    now_secs: u64,
}

impl HashCache {
    /// The cache in `file`; empty when the file is missing or unusable (then logged).
    pub fn load(file: &Path) -> HashCache {
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entries = match std::fs::read(file) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|reason| {
                tracing::warn!(file = %file.display(), %reason,
                    "backup hash cache unusable: every file is hashed again");
                HashMap::new()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error,
                    "backup hash cache unreadable: every file is hashed again");
                HashMap::new()
            }
        };
        HashCache {
            file: file.to_owned(),
            entries,
            now_secs,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The SHA-256 recorded for the file at `path` with key `key`, when its probe still
    /// matches (the probe reads at most 2 x [`PROBE_BYTES`]).
    pub fn get(&mut self, key: &FileKey, path: &Path) -> BackupResult<Option<String>> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(None);
        };
        if probe(path, key.size)? != entry.probe {
            return Ok(None);
        }
        let entry = self.entries.get_mut(key).expect("looked up above");
        entry.used_secs = self.now_secs;
        Ok(Some(entry.sha256.clone()))
    }

    /// Records `sha256` for the file at `path`, whose key was `key` before its hashing began at
    /// `hashed_at` and is `after` now. Not recorded when the file changed meanwhile, was modified
    /// less than [`SETTLE`] before `hashed_at`, or its path holds a line break.
    pub fn insert(
        &mut self,
        key: FileKey,
        after: &FileKey,
        path: &Path,
        sha256: String,
        hashed_at: SystemTime,
    ) -> BackupResult<()> {
        let settled = key.modified() + SETTLE <= hashed_at;
        if key != *after || !settled || key.path.contains(['\n', '\r']) {
            return Ok(());
        }
        let probe = probe(path, key.size)?;
        self.entries.insert(
            key,
            Entry {
                sha256,
                probe,
                used_secs: self.now_secs,
            },
        );
        Ok(())
    }

    /// Forgets the entry of `key` (its file did not hash to what the entry said).
    pub fn forget(&mut self, key: &FileKey) {
        self.entries.remove(key);
    }

    /// Writes the cache back to its file (created with its directory when missing), keeping the
    /// entries used within the last 30 days, at most the 50,000 most recently used.
    pub fn save(&self) -> BackupResult<()> {
        let mut kept: Vec<(&FileKey, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| self.now_secs.saturating_sub(e.used_secs) <= MAX_IDLE.as_secs())
            .collect();
        kept.sort_by(|a, b| {
            b.1.used_secs
                .cmp(&a.1.used_secs)
                .then(a.0.path.cmp(&b.0.path))
        });
        kept.truncate(MAX_ENTRIES);
        let bytes = encode(kept);
        let io = |e| BackupError::io(&self.file, e);
        if let Some(parent) = self.file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BackupError::io(parent, e))?;
        }
        let mut name = self.file.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let temporary = self.file.with_file_name(name);
        let written = std::fs::File::create(&temporary)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temporary, &self.file));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(io)
    }
}

/// The hex SHA-256 of the first and last [`PROBE_BYTES`] of the file at `path` (of all of it
/// when it is at most twice that), whose size is `size`.
fn probe(path: &Path, size: u64) -> BackupResult<String> {
    let io = |e| BackupError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(2 * PROBE_BYTES as usize);
    if size <= 2 * PROBE_BYTES {
        file.read_to_end(&mut bytes).map_err(io)?;
    } else {
        let mut part = vec![0u8; PROBE_BYTES as usize];
        file.read_exact(&mut part).map_err(io)?;
        bytes.extend_from_slice(&part);
        file.seek(SeekFrom::Start(size - PROBE_BYTES)).map_err(io)?;
        file.read_exact(&mut part).map_err(io)?;
        bytes.extend_from_slice(&part);
    }
    Ok(sha256_hex(&bytes))
}

fn encode(entries: Vec<(&FileKey, &Entry)>) -> Vec<u8> {
    let mut body = String::new();
    for (key, entry) in entries {
        body.push_str(&format!(
            "{} {} {} {} {} {} {} {} {}\n",
            entry.sha256,
            key.size,
            key.mtime_nanos,
            key.device,
            key.inode,
            key.birth_nanos,
            entry.probe,
            entry.used_secs,
            key.path
        ));
    }
    let mut bytes = format!("{MAGIC} {VERSION} sha256={}\n", sha256_hex(body.as_bytes()));
    bytes.push_str(&body);
    bytes.into_bytes()
}

fn decode(bytes: &[u8]) -> Result<HashMap<FileKey, Entry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let (header, body) = text.split_once('\n').ok_or("no header line")?;
    let expected_header = format!("{MAGIC} {VERSION} sha256=");
    let checksum = header
        .strip_prefix(&expected_header)
        .ok_or_else(|| format!("header {header:?} is not {expected_header:?}..."))?;
    if checksum != sha256_hex(body.as_bytes()) {
        return Err("checksum mismatch".to_owned());
    }
    let mut entries = HashMap::new();
    for (number, line) in body.lines().enumerate() {
        let bad = || format!("line {}: {line:?}", number + 2);
        let fields: Vec<&str> = line.splitn(9, ' ').collect();
        let &[sha256, size, mtime, device, inode, birth, probe, used, path] = fields.as_slice()
        else {
            return Err(bad());
        };
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(sha256) || !hex64(probe) || path.is_empty() {
            return Err(bad());
        }
        let key = FileKey {
            path: path.to_owned(),
            size: size.parse().map_err(|_| bad())?,
            mtime_nanos: mtime.parse().map_err(|_| bad())?,
            device: device.parse().map_err(|_| bad())?,
            inode: inode.parse().map_err(|_| bad())?,
            birth_nanos: birth.parse().map_err(|_| bad())?,
        };
        let entry = Entry {
            sha256: sha256.to_owned(),
            probe: probe.to_owned(),
            used_secs: used.parse().map_err(|_| bad())?,
        };
        entries.insert(key, entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets the modification time of the file at `path`.
    fn set_time(path: &Path, time: SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }

    /// Writes `bytes` to `path` with a modification time `age` ago.
    fn aged(path: &Path, bytes: &[u8], age: Duration) {
        std::fs::write(path, bytes).unwrap();
        set_time(path, SystemTime::now() - age);
    }

    fn key_of(path: &Path) -> FileKey {
        FileKey::new("lsm/000001.sst", &std::fs::metadata(path).unwrap())
    }

    /// Hashes `path` and records it in `cache`, as a backup does.
    fn record(cache: &mut HashCache, path: &Path) -> String {
        let key = key_of(path);
        let sha = sha256_hex(&std::fs::read(path).unwrap());
        cache
            .insert(key.clone(), &key, path, sha.clone(), SystemTime::now())
            .unwrap();
        sha
    }

    #[test]
    fn a_hashed_file_is_served_from_the_file_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (data, cache_file) = (dir.path().join("t.sst"), dir.path().join("c/hashes"));
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        aged(&data, &bytes, Duration::from_secs(60));
        let mut cache = HashCache::load(&cache_file);
        assert!(cache.is_empty());
        let sha = record(&mut cache, &data);
        cache.save().unwrap();
        let mut reloaded = HashCache::load(&cache_file);
        assert_eq!(reloaded.len(), 1);
        assert_eq!(reloaded.get(&key_of(&data), &data).unwrap(), Some(sha));
    }

    #[test]
    fn a_changed_file_is_never_taken_for_the_hashed_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("t.sst");
        let original: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::write(&data, &original).unwrap();
        set_time(&data, old);
        let original_key = key_of(&data);
        let mut cache = HashCache::load(&dir.path().join("hashes"));
        let sha = record(&mut cache, &data);
        assert_eq!(cache.get(&original_key, &data).unwrap(), Some(sha));

        // Rewritten in place, same size: a new modification time, a new key.
        let mut middle = original.clone();
        middle[10_000] ^= 1;
        std::fs::write(&data, &middle).unwrap();
        assert_eq!(cache.get(&key_of(&data), &data).unwrap(), None);

        // Rewritten in place with the old modification time put back (the same key), but the
        // last bytes differ: the probe tells.
        let mut tail = original.clone();
        *tail.last_mut().unwrap() ^= 1;
        std::fs::write(&data, &tail).unwrap();
        set_time(&data, old);
        assert_eq!(
            key_of(&data),
            original_key,
            "size, time and inode as hashed"
        );
        assert_eq!(cache.get(&key_of(&data), &data).unwrap(), None);

        // Replaced by another file with the same size, time and first and last bytes: another
        // inode (the old one is kept busy by a link).
        std::fs::hard_link(&data, dir.path().join("aside")).unwrap();
        std::fs::remove_file(&data).unwrap();
        std::fs::write(&data, &middle).unwrap();
        set_time(&data, old);
        let replaced = key_of(&data);
        assert_ne!(replaced, original_key);
        assert_eq!(cache.get(&replaced, &data).unwrap(), None);
    }

    #[test]
    fn files_modified_just_before_hashing_or_changed_meanwhile_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("wal.log");
        std::fs::write(&data, b"fresh").unwrap();
        let mut cache = HashCache::load(&dir.path().join("hashes"));
        record(&mut cache, &data);
        assert!(cache.is_empty(), "modified within SETTLE of the hashing");

        aged(&data, b"settled", Duration::from_secs(60));
        let before = key_of(&data);
        let after = FileKey {
            size: before.size + 1,
            ..before.clone()
        };
        let sha = sha256_hex(b"settled");
        cache
            .insert(before, &after, &data, sha, SystemTime::now())
            .unwrap();
        assert!(cache.is_empty(), "changed while it was hashed");
    }

    #[test]
    fn a_damaged_or_foreign_cache_file_is_ignored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (data, cache_file) = (dir.path().join("t.sst"), dir.path().join("hashes"));
        aged(&data, b"table bytes", Duration::from_secs(60));
        let mut cache = HashCache::load(&cache_file);
        record(&mut cache, &data);
        cache.save().unwrap();
        let good = std::fs::read(&cache_file).unwrap();
        assert_eq!(HashCache::load(&cache_file).len(), 1);
        let mut damages: Vec<Vec<u8>> = Vec::new();
        for at in [0, 30, good.len() - 2] {
            let mut damaged = good.clone();
            damaged[at] ^= 0x04;
            damages.push(damaged);
        }
        damages.push(good[..good.len() - 5].to_vec());
        damages.push(
            String::from_utf8(good.clone())
                .unwrap()
                .replacen(" 1 ", " 2 ", 1)
                .into_bytes(),
        );
        damages.push(b"not a cache".to_vec());
        for (n, damaged) in damages.iter().enumerate() {
            std::fs::write(&cache_file, damaged).unwrap();
            assert!(HashCache::load(&cache_file).is_empty(), "damage {n}");
        }
    }

    #[test]
    fn save_keeps_the_recently_used_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache_file = dir.path().join("hashes");
        let mut cache = HashCache::load(&cache_file);
        let entry = |used_secs| Entry {
            sha256: "a".repeat(64),
            probe: "b".repeat(64),
            used_secs,
        };
        let key = |inode| FileKey {
            path: "lsm/000001.sst".into(),
            size: 1,
            mtime_nanos: 1,
            device: 1,
            inode,
            birth_nanos: 0,
        };
        cache.entries.insert(key(1), entry(cache.now_secs));
        cache.entries.insert(key(2), entry(0));
        cache.save().unwrap();
        let reloaded = HashCache::load(&cache_file);
        assert!(reloaded.entries.contains_key(&key(1)));
        assert!(!reloaded.entries.contains_key(&key(2)), "idle for decades");
    }
}
