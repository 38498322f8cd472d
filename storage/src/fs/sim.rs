//! An in-memory [`FileSystem`] that models what a machine crash does to files, for crash tests.
//!
//! What it owns: a namespace (paths -> inodes) and the inodes' bytes, each in two versions — what
//! the operating system currently shows, and what would survive a power loss.
//!
//! Crash model (the POSIX contract of `fs/mod.rs`, taken pessimistically):
//! * bytes appended through a [`WritableFile`] sit in the handle's process buffer until
//!   [`WritableFile::flush`]; flushed bytes are visible to readers but durable only after
//!   [`WritableFile::sync_data`] (or [`FileSystem::truncate`], which syncs the whole file);
//! * a name created, renamed, linked or removed is durable only after [`FileSystem::sync_dir`] on
//!   its parent directory; directories themselves are durable as soon as they are created (a
//!   simplification: the engine creates its directories once, before anything else);
//! * [`SimFileSystem::crash`] (power loss) reverts every file to its durable bytes and the
//!   namespace to its durable names; an inode no durable name reaches disappears;
//! * [`SimFileSystem::kill_process`] (process crash) keeps everything the OS has, but drops the
//!   unflushed buffers of open handles.
//!
//! After either, the "old process" is dead: every [`WritableFile`] opened before it fails every
//! call, and so does every `SimFileSystem` value other than the one the crash was called on (and
//! clones made from that one afterwards). Give the engine a clone, keep your own handle, crash
//! through your handle, and reopen with a fresh clone of it: the old engine's background threads
//! then cannot touch the "rebooted" file system.
//!
//! Must never: lose a synced byte or a synced name, or keep an unsynced one across `crash`.
//! All state sits behind one mutex, so each operation is atomic with respect to a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::{FileSystem, ReadableFile, WritableFile};
use crate::error::{Error, Result};

type InodeId = u64;

#[derive(Debug, Default)]
struct Inode {
    /// The bytes as the operating system shows them.
    data: Vec<u8>,
    /// The bytes a power loss leaves.
    durable: Vec<u8>,
    /// `data[..synced_prefix] == durable[..synced_prefix]`, so a sync copies only the rest.
    synced_prefix: usize,
}

impl Inode {
    fn sync(&mut self) {
        self.durable.truncate(self.synced_prefix);
        self.durable
            .extend_from_slice(&self.data[self.synced_prefix..]);
        self.synced_prefix = self.data.len();
    }

    fn set_len(&mut self, len: usize) {
        self.data.resize(len, 0);
        self.synced_prefix = self.synced_prefix.min(len);
    }

    fn revert_to_durable(&mut self) {
        self.data.clone_from(&self.durable);
        self.synced_prefix = self.data.len();
    }
}

#[derive(Debug, Default)]
struct State {
    /// Incremented by every crash; handles and file-system values from an older epoch are dead.
    epoch: u64,
    next_inode: InodeId,
    inodes: HashMap<InodeId, Inode>,
    names: BTreeMap<PathBuf, InodeId>,
    durable_names: BTreeMap<PathBuf, InodeId>,
    dirs: BTreeSet<PathBuf>,
    sync_data_calls: u64,
    sync_dir_calls: u64,
    /// The error kind injected into writes to paths ending with the suffix, if any.
    fail_writes: Option<(ErrorKind, String)>,
    /// What [`FileSystem::available_space`] reports (`None`: unknown).
    available_space: Option<u64>,
}

impl State {
    fn dir_exists(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir == Path::new("/") || self.dirs.contains(dir)
    }

    fn require_parent(&self, path: &Path) -> Result<()> {
        match path.parent() {
            Some(parent) if !self.dir_exists(parent) => Err(sim_error(
                path,
                ErrorKind::NotFound,
                "parent directory does not exist",
            )),
            _ => Ok(()),
        }
    }

    fn inode_of(&self, path: &Path) -> Result<InodeId> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| sim_error(path, ErrorKind::NotFound, "no such file"))
    }

    fn inode_mut(&mut self, path: &Path) -> Result<&mut Inode> {
        let id = self.inode_of(path)?;
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| sim_error(path, ErrorKind::NotFound, "dangling inode"))
    }

    /// Forgets an inode once no live or durable name reaches it (open handles then write into
    /// the void, as they would into an unlinked file).
    fn collect_if_unreachable(&mut self, id: InodeId) {
        let reachable =
            self.names.values().any(|&i| i == id) || self.durable_names.values().any(|&i| i == id);
        if !reachable {
            self.inodes.remove(&id);
        }
    }

    fn check_writable(&self, epoch: u64, path: &Path) -> Result<()> {
        if epoch != self.epoch {
            return Err(stale_error(path));
        }
        match &self.fail_writes {
            Some((kind, suffix)) if path.as_os_str().to_string_lossy().ends_with(suffix) => {
                Err(sim_error(path, *kind, "injected write failure"))
            }
            _ => Ok(()),
        }
    }
}

fn sim_error(path: &Path, kind: ErrorKind, message: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(kind, format!("simulated file system: {message}")),
    )
}

fn stale_error(path: &Path) -> Error {
    sim_error(
        path,
        ErrorKind::BrokenPipe,
        "handle belongs to a process that died in a simulated crash",
    )
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Latency added to every `sync_data`, in nanoseconds (models a slow disk).
    sync_delay_nanos: AtomicU64,
}

/// The crash-simulating file system (see the module doc). Clones share the same files.
#[derive(Debug, Default)]
pub struct SimFileSystem {
    shared: Arc<Shared>,
    /// The epoch this value belongs to; it stops working when a crash moves past it.
    epoch: AtomicU64,
}

impl Clone for SimFileSystem {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            epoch: AtomicU64::new(self.epoch.load(Ordering::Acquire)),
        }
    }
}

impl SimFileSystem {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Power loss: every file reverts to its durable bytes, the namespace to its durable names,
    /// and everything opened before (handles, other `SimFileSystem` values) stops working.
    pub fn crash(&self) {
        let mut state = self.shared.state.lock();
        state.names = state.durable_names.clone();
        for inode in state.inodes.values_mut() {
            inode.revert_to_durable();
        }
        let reachable: BTreeSet<InodeId> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| reachable.contains(id));
        self.start_new_epoch(&mut state);
    }

    /// Process crash: what the OS has is kept; unflushed handle buffers are lost and everything
    /// opened before stops working.
    pub fn kill_process(&self) {
        let mut state = self.shared.state.lock();
        self.start_new_epoch(&mut state);
    }

    fn start_new_epoch(&self, state: &mut State) {
        state.epoch += 1;
        self.epoch.store(state.epoch, Ordering::Release);
    }

    /// Number of successful [`WritableFile::sync_data`] calls so far.
    pub fn sync_data_calls(&self) -> u64 {
        self.shared.state.lock().sync_data_calls
    }

    /// Number of successful [`FileSystem::sync_dir`] calls so far.
    pub fn sync_dir_calls(&self) -> u64 {
        self.shared.state.lock().sync_dir_calls
    }

    /// While `fail` is true, appends, flushes, syncs and creates fail with an I/O error.
    pub fn set_fail_writes(&self, fail: bool) {
        self.shared.state.lock().fail_writes = fail.then(|| (ErrorKind::Other, String::new()));
    }

    /// While `suffix` is set, appends, flushes, syncs and creates of files whose path ends with
    /// it (`""`: every file) fail as on a full volume (`StorageFull`, what `ENOSPC` maps to).
    pub fn set_no_space_for(&self, suffix: Option<&str>) {
        self.shared.state.lock().fail_writes =
            suffix.map(|suffix| (ErrorKind::StorageFull, suffix.to_owned()));
    }

    /// Sets what [`FileSystem::available_space`] reports (`None`: unknown, the default).
    pub fn set_available_space(&self, bytes: Option<u64>) {
        self.shared.state.lock().available_space = bytes;
    }

    /// Makes every `sync_data` take at least `delay` (the lock is not held meanwhile, so a crash
    /// can land during a sync, which then fails).
    pub fn set_sync_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared.sync_delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The durable bytes of a file (what a crash now would leave), or `None` if its name is not
    /// durable.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.shared.state.lock();
        let id = state.durable_names.get(path)?;
        state.inodes.get(id).map(|inode| inode.durable.clone())
    }

    /// Locks the state after checking this value survived every crash so far.
    fn live_state(&self, path: &Path) -> Result<MutexGuard<'_, State>> {
        let state = self.shared.state.lock();
        if state.epoch != self.epoch.load(Ordering::Acquire) {
            return Err(stale_error(path));
        }
        Ok(state)
    }

    fn handle(&self, path: &Path, inode: InodeId, epoch: u64, len: u64) -> Box<dyn WritableFile> {
        Box::new(SimWritableFile {
            shared: Arc::clone(&self.shared),
            path: path.to_owned(),
            inode,
            epoch,
            buffer: Vec::new(),
            len,
        })
    }
}

impl FileSystem for SimFileSystem {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut state = self.live_state(path)?;
        let epoch = state.epoch;
        state.check_writable(epoch, path)?;
        state.require_parent(path)?;
        let id = match state.names.get(path) {
            Some(&id) => {
                if let Some(inode) = state.inodes.get_mut(&id) {
                    inode.set_len(0);
                }
                id
            }
            None => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.names.insert(path.to_owned(), id);
                id
            }
        };
        Ok(self.handle(path, id, epoch, 0))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut state = self.live_state(path)?;
        let epoch = state.epoch;
        let id = state.inode_of(path)?;
        let len = state.inode_mut(path)?.data.len() as u64;
        Ok(self.handle(path, id, epoch, len))
    }

    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        let bytes = self.read(path)?;
        Ok(Arc::new(SimReadableFile { bytes }))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let mut state = self.live_state(path)?;
        Ok(state.inode_mut(path)?.data.clone())
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        let mut state = self.live_state(path)?;
        let len = usize::try_from(len)
            .map_err(|_| sim_error(path, ErrorKind::InvalidInput, "length too large"))?;
        let inode = state.inode_mut(path)?;
        inode.set_len(len);
        inode.sync();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.live_state(from)?;
        let id = state.inode_of(from)?;
        state.require_parent(to)?;
        state.names.remove(from);
        if let Some(replaced) = state.names.insert(to.to_owned(), id) {
            state.collect_if_unreachable(replaced);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut state = self.live_state(path)?;
        let id = state.inode_of(path)?;
        state.names.remove(path);
        state.collect_if_unreachable(id);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.live_state(path)
            .is_ok_and(|state| state.names.contains_key(path) || state.dir_exists(path))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let state = self.live_state(dir)?;
        if !state.dir_exists(dir) {
            return Err(sim_error(dir, ErrorKind::NotFound, "no such directory"));
        }
        let in_dir = |path: &&PathBuf| path.parent() == Some(dir);
        let mut names: Vec<String> = state
            .names
            .keys()
            .filter(in_dir)
            .chain(state.dirs.iter().filter(in_dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut state = self.live_state(dir)?;
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_owned());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut state = self.live_state(dir)?;
        if !state.dir_exists(dir) {
            return Err(sim_error(dir, ErrorKind::NotFound, "no such directory"));
        }
        state
            .durable_names
            .retain(|path, _| path.parent() != Some(dir));
        let live: Vec<(PathBuf, InodeId)> = state
            .names
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &id)| (path.clone(), id))
            .collect();
        state.durable_names.extend(live);
        let orphans: Vec<InodeId> = state.inodes.keys().copied().collect();
        for id in orphans {
            state.collect_if_unreachable(id);
        }
        state.sync_dir_calls += 1;
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.live_state(from)?;
        let id = state.inode_of(from)?;
        state.require_parent(to)?;
        if state.names.contains_key(to) {
            return Err(sim_error(
                to,
                ErrorKind::AlreadyExists,
                "link target exists",
            ));
        }
        state.names.insert(to.to_owned(), id);
        Ok(())
    }

    /// Always granted: the simulation runs in one process, and a simulated crash must be able
    /// to reopen the directory while the crashed engine's values still exist.
    fn lock_exclusive(&self, _path: &Path) -> Result<crate::fs::LockGuard> {
        Ok(Box::new(()))
    }

    fn available_space(&self, _dir: &Path) -> Result<Option<u64>> {
        Ok(self.shared.state.lock().available_space)
    }
}

#[derive(Debug)]
struct SimReadableFile {
    bytes: Vec<u8>,
}

impl ReadableFile for SimReadableFile {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[derive(Debug)]
struct SimWritableFile {
    shared: Arc<Shared>,
    path: PathBuf,
    inode: InodeId,
    /// The epoch the handle was opened in; a crash kills it.
    epoch: u64,
    /// Appended bytes not yet handed to the "OS".
    buffer: Vec<u8>,
    len: u64,
}

impl SimWritableFile {
    fn flush_locked(&mut self, state: &mut State) -> Result<()> {
        state.check_writable(self.epoch, &self.path)?;
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.data.extend_from_slice(&self.buffer);
        }
        self.buffer.clear();
        Ok(())
    }
}

impl WritableFile for SimWritableFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.shared
            .state
            .lock()
            .check_writable(self.epoch, &self.path)?;
        self.buffer.extend_from_slice(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.state.lock();
        self.flush_locked(&mut state)
    }

    fn sync_data(&mut self) -> Result<()> {
        self.flush()?;
        let delay = self.shared.sync_delay_nanos.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_nanos(delay));
        }
        let mut state = self.shared.state.lock();
        state.check_writable(self.epoch, &self.path)?;
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.sync();
        }
        state.sync_data_calls += 1;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/db")
    }

    fn file(name: &str) -> PathBuf {
        dir().join(name)
    }

    fn new_fs() -> SimFileSystem {
        let fs = SimFileSystem::new();
        fs.create_dir_all(&dir()).unwrap();
        fs
    }

    fn write_file(fs: &SimFileSystem, name: &str, bytes: &[u8], sync: bool) {
        let mut f = fs.create(&file(name)).unwrap();
        f.append(bytes).unwrap();
        if sync {
            f.sync_data().unwrap();
        } else {
            f.flush().unwrap();
        }
    }

    #[test]
    fn appended_bytes_are_visible_only_after_flush() {
        let fs = new_fs();
        let mut f = fs.create(&file("a")).unwrap();
        f.append(b"hello").unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(fs.read(&file("a")).unwrap(), b"");
        f.flush().unwrap();
        assert_eq!(fs.read(&file("a")).unwrap(), b"hello");
    }

    #[test]
    fn crash_keeps_synced_bytes_and_drops_the_rest() {
        let fs = new_fs();
        let mut f = fs.create(&file("a")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        f.append(b"durable").unwrap();
        f.sync_data().unwrap();
        f.append(b" lost").unwrap();
        f.flush().unwrap();
        assert_eq!(fs.read(&file("a")).unwrap(), b"durable lost");
        fs.crash();
        assert_eq!(fs.read(&file("a")).unwrap(), b"durable");
        assert_eq!(fs.sync_data_calls(), 1);
    }

    #[test]
    fn a_name_never_synced_disappears_in_a_crash() {
        let fs = new_fs();
        write_file(&fs, "a", b"data", true);
        assert!(fs.exists(&file("a")));
        fs.crash();
        assert!(!fs.exists(&file("a")));
        assert_eq!(fs.list(&dir()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn rename_and_remove_are_durable_only_after_sync_dir() {
        let fs = new_fs();
        write_file(&fs, "a", b"one", true);
        write_file(&fs, "b", b"two", true);
        fs.sync_dir(&dir()).unwrap();

        fs.rename(&file("a"), &file("c")).unwrap();
        fs.remove(&file("b")).unwrap();
        assert_eq!(fs.list(&dir()).unwrap(), vec!["c".to_owned()]);
        fs.crash();
        assert_eq!(
            fs.list(&dir()).unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(fs.read(&file("b")).unwrap(), b"two");

        fs.rename(&file("a"), &file("c")).unwrap();
        fs.remove(&file("b")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        fs.crash();
        assert_eq!(fs.list(&dir()).unwrap(), vec!["c".to_owned()]);
        assert_eq!(fs.read(&file("c")).unwrap(), b"one");
    }

    #[test]
    fn truncate_is_durable_and_create_over_a_file_is_not() {
        let fs = new_fs();
        write_file(&fs, "a", b"0123456789", true);
        fs.sync_dir(&dir()).unwrap();
        fs.truncate(&file("a"), 4).unwrap();
        fs.crash();
        assert_eq!(fs.read(&file("a")).unwrap(), b"0123");

        write_file(&fs, "a", b"xy", false);
        assert_eq!(fs.read(&file("a")).unwrap(), b"xy");
        fs.crash();
        assert_eq!(fs.read(&file("a")).unwrap(), b"0123");
    }

    #[test]
    fn crash_kills_old_handles_and_other_file_system_values() {
        let fs = new_fs();
        let engine_fs = fs.clone();
        let mut f = engine_fs.create(&file("a")).unwrap();
        engine_fs.sync_dir(&dir()).unwrap();
        fs.crash();
        assert!(f.append(b"x").is_err());
        assert!(f.sync_data().is_err());
        assert!(engine_fs.create(&file("b")).is_err());
        assert!(engine_fs.list(&dir()).is_err());
        // The handle the crash was called on, and its later clones, still work.
        let reopened = fs.clone();
        assert_eq!(reopened.list(&dir()).unwrap(), vec!["a".to_owned()]);
        reopened.create(&file("b")).unwrap();
    }

    #[test]
    fn kill_process_keeps_flushed_bytes_but_not_buffered_ones() {
        let fs = new_fs();
        let mut f = fs.create(&file("a")).unwrap();
        f.append(b"flushed").unwrap();
        f.flush().unwrap();
        f.append(b" buffered").unwrap();
        fs.kill_process();
        assert!(f.flush().is_err());
        assert_eq!(fs.read(&file("a")).unwrap(), b"flushed");
    }

    #[test]
    fn hard_links_share_bytes_and_survive_removal_of_the_original() {
        let fs = new_fs();
        write_file(&fs, "a", b"shared", true);
        fs.hard_link(&file("a"), &file("b")).unwrap();
        assert!(fs.hard_link(&file("a"), &file("b")).is_err());
        fs.remove(&file("a")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        fs.crash();
        assert_eq!(fs.list(&dir()).unwrap(), vec!["b".to_owned()]);
        assert_eq!(fs.read(&file("b")).unwrap(), b"shared");
    }

    #[test]
    fn injected_failures_and_missing_parents_are_errors() {
        let fs = new_fs();
        assert!(fs.create(Path::new("/nowhere/a")).is_err());
        let mut f = fs.create(&file("a")).unwrap();
        fs.set_fail_writes(true);
        assert!(f.append(b"x").is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.create(&file("b")).is_err());
        fs.set_fail_writes(false);
        f.append(b"x").unwrap();
        f.sync_data().unwrap();
    }

    #[test]
    fn durable_contents_reports_what_a_crash_would_leave() {
        let fs = new_fs();
        write_file(&fs, "a", b"abc", true);
        assert_eq!(fs.durable_contents(&file("a")), None);
        fs.sync_dir(&dir()).unwrap();
        assert_eq!(fs.durable_contents(&file("a")), Some(b"abc".to_vec()));
        assert_eq!(fs.sync_dir_calls(), 1);
    }
}
