//! A daemon with API keys of one tenant, as the auth tests (`tests/auth.rs`,
//! `tests/auth_keys.rs`, `tests/checkpoint_restore.rs`) start it: the tenant's read, write,
//! admin and expired keys, the config naming the key file, a [`Fixture`] keeping that file
//! beside the daemon with a scratch directory for checkpoint targets, and whether a key is
//! accepted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use allidb_api::auth::hash_key;
use allidb_api::pb;
use tonic::Code;

use crate::{Client, Daemon, key_line, request};

/// The tenant of every key.
pub const TENANT: &str = "acme";
/// A read key of [`TENANT`].
pub const READ_KEY: &str = "acme-read-key";
/// A write key of [`TENANT`].
pub const WRITE_KEY: &str = "acme-write-key";
/// An admin key of [`TENANT`].
pub const ADMIN_KEY: &str = "acme-admin-key";
/// An admin key that expired in 1970.
pub const EXPIRED_KEY: &str = "acme-expired-admin-key";

/// The config of a daemon with auth on and keys from `key_file`.
pub fn config(key_file: &Path) -> String {
    format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n\n[storage]\nmemtable_bytes = 1048576\n",
        key_file.display().to_string()
    )
}

/// A key file with the read, write, admin and expired keys of [`TENANT`].
pub fn standard_keys() -> String {
    let expired = format!("{} {TENANT} admin 1\n", hash_key(EXPIRED_KEY));
    [
        key_line(READ_KEY, TENANT, "read"),
        key_line(WRITE_KEY, TENANT, "write"),
        key_line(ADMIN_KEY, TENANT, "admin"),
        expired,
    ]
    .concat()
}

/// A daemon on a key file it shares with the test (kept in `keys_dir`).
#[derive(Debug)]
pub struct Fixture {
    /// The daemon, with auth on and its keys from `key_file`.
    pub daemon: Daemon,
    /// The key file: rewritten and reloaded on [`Daemon::hangup`] by the reload tests.
    pub key_file: PathBuf,
    /// Checkpoint targets are created here, outside the data directory.
    scratch: tempfile::TempDir,
    targets: AtomicUsize,
    _keys_dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts a daemon on a new key file holding `keys`.
    pub fn start(keys: &str) -> Fixture {
        let keys_dir = tempfile::tempdir().expect("a temporary directory");
        let key_file = keys_dir.path().join("keys");
        std::fs::write(&key_file, keys).expect("the key file is written");
        Fixture {
            daemon: Daemon::start(&config(&key_file)),
            key_file,
            scratch: tempfile::tempdir().expect("a temporary directory"),
            targets: AtomicUsize::new(0),
            _keys_dir: keys_dir,
        }
    }

    /// A fresh checkpoint target path (not created).
    pub fn next_target(&self) -> PathBuf {
        let n = self.targets.fetch_add(1, Ordering::Relaxed);
        self.scratch.path().join(format!("checkpoint-{n}"))
    }
}

/// Whether `key` is accepted now (a read RPC succeeds; unauthenticated = refused).
pub async fn accepted(client: &mut Client, key: &str) -> bool {
    match client
        .range_scan(request(pb::RangeScanRequest::default(), Some(key)))
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == Code::Unauthenticated => false,
        Err(status) => panic!("unexpected status {status:?}"),
    }
}
