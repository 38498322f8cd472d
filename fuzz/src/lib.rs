//! Helpers shared by the fuzz targets in `fuzz_targets/`: files on a fresh simulated file system
//! and the checks every target makes of an error.
//!
//! Invariant: nothing here touches the real file system; every helper panics (the fuzzer's
//! failure signal) only when the storage crate broke one of its documented promises.

use std::path::{Path, PathBuf};

use allidb_storage::Error;
use allidb_storage::fs::FileSystem;
use allidb_storage::fs::sim::SimFileSystem;

/// The directory every target's files live in.
pub const DIR: &str = "/fuzz";

/// A fresh simulated file system holding `files` (name, bytes) in [`DIR`], all durable.
pub fn sim_dir(files: &[(String, &[u8])]) -> (SimFileSystem, PathBuf) {
    let fs = SimFileSystem::new();
    let dir = PathBuf::from(DIR);
    fs.create_dir_all(&dir)
        .expect("the simulated file system creates directories");
    for (name, bytes) in files {
        write_file(&fs, &dir.join(name), bytes);
    }
    fs.sync_dir(&dir).expect("the directory was just created");
    (fs, dir)
}

/// Creates `path` holding `bytes`, synced.
pub fn write_file(fs: &SimFileSystem, path: &Path, bytes: &[u8]) {
    let mut file = fs.create(path).expect("the parent directory exists");
    file.append(bytes).expect("simulated appends do not fail");
    file.sync_data().expect("simulated syncs do not fail");
}

/// Asserts that an error returned for damaged stored bytes says so: corruption (with a path),
/// never an I/O error or a complaint about the caller's arguments.
pub fn assert_corruption(error: &Error, what: &str) {
    assert!(
        error.is_corruption(),
        "{what}: damaged bytes must be reported as corruption, got {error:?}"
    );
}

/// Asserts that an error returned by a payload decoder is a decoding error.
pub fn assert_decode_error(error: &Error, what: &str) {
    assert!(
        matches!(error, Error::Codec(_) | Error::InvalidArgument(_)),
        "{what}: a malformed payload must be a codec or argument error, got {error:?}"
    );
}
