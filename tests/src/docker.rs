//! What the container tests (`tests/containers.rs`, `tests/deploy.rs`) share: whether the
//! Docker tests run at all (`ALLIDB_CONTAINER_TESTS=1`), the lock that keeps them one at a
//! time, the repository and target directories, running a program, and polling until a
//! condition holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::allidbd_binary;

/// One Docker test at a time: they share the engine, the image tag and host ports. (A lock of
/// one test binary; `cargo test` runs the binaries one after another.)
pub static DOCKER: Mutex<()> = Mutex::new(());

/// The repository: the parent of `tests/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// Whether the Docker tests run; prints why not.
pub fn docker_tests_enabled(test: &str) -> bool {
    let enabled = std::env::var("ALLIDB_CONTAINER_TESTS").is_ok_and(|v| v == "1");
    if !enabled {
        eprintln!(
            "{test}: skipped: set ALLIDB_CONTAINER_TESTS=1 to run the container tests (they need \
             Docker Engine, docker-compose and root; .ci/run sets it)"
        );
    }
    enabled
}

/// Runs `program args`, returning its output (never panics on a failure exit).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e}"))
}

/// Runs `program args` and returns its standard output; panics with both outputs on failure.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The target directory whose `debug/` holds the binaries under test.
pub fn target_dir() -> PathBuf {
    allidbd_binary()
        .parent()
        .and_then(Path::parent)
        .expect("allidbd is in target/<profile>/")
        .to_owned()
}

/// Polls `done` every 250 ms until it holds, panicking after `limit`; how long it took.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    started.elapsed()
}
