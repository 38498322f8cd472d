//! The file layer the engine writes through. Everything the engine persists goes through
//! [`FileSystem`], so tests can substitute a file system that loses unsynced bytes on a simulated
//! crash (`sim`, compiled for tests and behind the `sim-fs` feature).
//!
//! Contract the engine relies on (POSIX semantics):
//! * bytes appended to a [`WritableFile`] are durable only after [`WritableFile::sync_data`];
//! * a created, renamed or removed name is durable only after [`FileSystem::sync_dir`] on its
//!   directory;
//! * [`ReadableFile`]s are opened only on immutable files (SSTables, sealed logs).

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

#[cfg(any(test, feature = "sim-fs"))]
pub mod sim;

/// A file open for appending.
pub trait WritableFile: Send + Sync + Debug {
    /// Appends bytes (possibly buffered in the process until [`WritableFile::flush`]).
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Hands buffered bytes to the operating system (survives a process crash).
    fn flush(&mut self) -> Result<()>;
    /// Flushes, then makes the file's contents durable (`fdatasync`).
    fn sync_data(&mut self) -> Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True when nothing has been appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An immutable file readable as one byte slice (memory-mapped on the real file system).
pub trait ReadableFile: Send + Sync + Debug {
    /// The whole file.
    fn bytes(&self) -> &[u8];
}

/// The operations the engine needs from a file system.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an immutable file for reading.
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadableFile>>;
    /// Reads a whole file into memory.
    fn read(&self, path: &Path) -> Result<Vec<u8>>;
    /// Truncates a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> Result<()>;
    /// Atomically renames `from` to `to` (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> Result<()>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// File names (not paths) in a directory.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Creates a hard link `to` pointing at `from` (used by checkpoints).
    fn hard_link(&self, from: &Path, to: &Path) -> Result<()>;
    /// Takes the exclusive lock of `path` (created if missing) for as long as the returned
    /// guard lives; fails at once, without waiting, when another holder has it.
    fn lock_exclusive(&self, path: &Path) -> Result<LockGuard>;
    /// Bytes an unprivileged writer can still use on the volume holding `dir`; `None` when the
    /// file system cannot tell (the low-space watermark is then not enforced).
    fn available_space(&self, dir: &Path) -> Result<Option<u64>>;
}

/// Holds a lock taken by [`FileSystem::lock_exclusive`] until dropped.
pub type LockGuard = Box<dyn Debug + Send + Sync>;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFileSystem;

#[derive(Debug)]
struct OsWritableFile {
    path: PathBuf,
    file: std::io::BufWriter<File>,
    len: u64,
}

impl WritableFile for OsWritableFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn sync_data(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl ReadableFile for MappedFile {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

const WRITE_BUFFER: usize = 256 << 10;

impl FileSystem for OsFileSystem {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(OsWritableFile {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            len: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(Box::new(OsWritableFile {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            len,
        }))
    }

    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Ok(Arc::new(MappedFile { map: None }));
        }
        // SAFETY: the engine maps only immutable files (SSTables and sealed logs are never
        // modified after they are renamed into place, and are deleted only after every reader
        // holding the map has dropped it), so the mapped bytes cannot change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Arc::new(MappedFile { map: Some(map) }))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(len).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io(from, e))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::hard_link(from, to).map_err(|e| Error::io(from, e))
    }

    /// An advisory `flock` on `path`: it conflicts with any other open of the file that
    /// holds it, in this process or another, and the kernel releases it when the holder exits.
    fn lock_exclusive(&self, path: &Path) -> Result<LockGuard> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "locked by another process: another allidbd (or engine) is using this data directory",
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
        }
    }

    /// `statvfs`: free blocks available to unprivileged users times the fragment size (what
    /// `df` shows as available; blocks reserved for root are not counted).
    fn available_space(&self, dir: &Path) -> Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
            Error::InvalidArgument(format!("path {} contains a NUL byte", dir.display()))
        })?;
        // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a writable, properly
        // aligned statvfs that the call fills in; both outlive the call.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(Error::io(dir, std::io::Error::last_os_error()));
        }
        // Both are 32-bit on some targets, 64-bit on others.
        #[allow(clippy::useless_conversion)]
        let available = u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize));
        Ok(Some(available))
    }
}
