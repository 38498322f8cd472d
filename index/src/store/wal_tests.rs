//! WAL retention with the indexes (issue 21): the size trigger bounds the WAL kept for them, an
//! idle store keeps none, and a `kill -9` at any point — during a stream of writes, between a
//! flush and the next dump, between a dump and the deletion of the WAL it covers — loses nothing
//! and leaves a restart at most the configured WAL to read.
//!
//! The crashes are real: the test binary runs itself as a child process (the ignored test
//! [`child`], told what to do by the `ALLIDB_WAL_CHILD` variable), which writes, reports each
//! acknowledged batch on stdout, and is killed with SIGKILL; the parent then reopens the
//! directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, EntityWrite};

use super::{IndexRecovery, StoreOptions, UnifiedStore, write_index_dump};

const TENANT: &str = "t";
const MEMTABLE_BYTES: usize = 128 << 10;
const DUMP_WAL_BYTES: u64 = 512 << 10;
/// Entities per batch, each with about 4 KB of payload: a batch is about 41 KB of WAL.
const BATCH: u64 = 10;
const BATCH_WAL_BYTES: u64 = 48 << 10;
/// What the engine and the indexes may keep: the memtable and two immutable ones not yet
/// flushed, `DUMP_WAL_BYTES` flushed but not yet dumped, and one batch of slack each.
const WAL_BOUND: u64 =
    DUMP_WAL_BYTES + 3 * MEMTABLE_BYTES as u64 + BATCH_WAL_BYTES * 4 + 2 * BATCH_WAL_BYTES;
const CHILD_VAR: &str = "ALLIDB_WAL_CHILD";

fn options(dump_interval: Duration, idle: Option<Duration>, dump_wal_bytes: u64) -> StoreOptions {
    StoreOptions {
        engine: allidb_storage::Options {
            memtable_bytes: MEMTABLE_BYTES,
            memtable_idle_flush: idle,
            ..allidb_storage::Options::default()
        },
        dump_interval,
        dump_wal_bytes,
        ..StoreOptions::default()
    }
}

/// Only the size trigger dumps (the interval is an hour) and memtables flush only when full.
fn size_only() -> StoreOptions {
    options(Duration::from_secs(3600), None, DUMP_WAL_BYTES)
}

/// No dump but the ones a test asks for (and the one at close).
fn no_dumps() -> StoreOptions {
    options(Duration::from_secs(3600), None, u64::MAX)
}

fn id(batch: u64, i: u64) -> String {
    format!("b{batch:05}-{i}")
}

fn put_batch(store: &UnifiedStore, batch: u64) {
    let writes = (0..BATCH)
        .map(|i| EntityWrite {
            id: id(batch, i),
            body: EntityBody {
                entity_type: "x".repeat(4000),
                embeddings: vec![Embedding {
                    version: 1,
                    vector: (0..8)
                        .map(|d| ((batch * BATCH + i) * 8 + d) as f32)
                        .collect(),
                    timestamp_nanos: 0,
                }],
                ..EntityBody::default()
            },
            out_edges: Vec::new(),
            in_edges: Vec::new(),
        })
        .collect();
    store
        .put_entities(TENANT, writes, Durability::Sync)
        .expect("the write is acknowledged");
}

/// Waits up to `within` for `done`; false if it never held (the waits are generous: a loaded
/// machine may delay the background dump and flush threads by seconds).
fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(super::ENGINE_SUBDIR))
        .expect("the engine directory exists")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count()
}

/// Every entity of `batches` is stored, and the indexes hold exactly what the engine holds.
fn assert_complete(store: &UnifiedStore, batches: impl IntoIterator<Item = u64>) {
    let mut count = 0;
    for batch in batches {
        count += 1;
        for i in [0, BATCH - 1] {
            assert!(
                store.get_entity(TENANT, &id(batch, i)).unwrap().is_some(),
                "acknowledged entity {} is missing",
                id(batch, i)
            );
        }
    }
    let stored = store.engine().scan(TENANT, None, None).unwrap().count();
    assert!(stored as u64 >= count * BATCH);
    let stats = store
        .tenant_stats(TENANT)
        .unwrap()
        .expect("the tenant has entities");
    assert_eq!(stats.entities, stored, "facts index vs storage");
    assert_eq!(stats.vectors, stored, "vector index vs storage");
}

#[test]
fn the_size_trigger_bounds_the_wal_kept_for_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), size_only()).unwrap();
    let batches = 4 * WAL_BOUND / BATCH_WAL_BYTES;
    for batch in 0..batches {
        put_batch(&store, batch);
        let within = eventually(Duration::from_secs(30), || {
            store.engine().stats().wal_bytes <= WAL_BOUND
        });
        assert!(
            within,
            "after batch {batch}: {} bytes of WAL on disk, bound {WAL_BOUND}",
            store.engine().stats().wal_bytes
        );
    }
    assert!(store.engine().stats().wal_written_bytes > 3 * WAL_BOUND);
    assert_complete(&store, 0..batches);
}

#[test]
fn an_idle_store_keeps_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Some(Duration::from_millis(150));
    let dumps_often = options(Duration::from_millis(200), idle, DUMP_WAL_BYTES);
    let store = UnifiedStore::open(dir.path(), dumps_often).unwrap();
    for batch in 0..2 {
        put_batch(&store, batch);
    }
    let stats = store.engine().stats();
    assert_eq!(stats.wal_segments, 1);
    assert!(stats.wal_bytes > BATCH_WAL_BYTES, "{stats:?}");
    // No write comes any more: the memtable is flushed when idle, the next dump covers it, and
    // only the empty segment being written is left.
    let emptied = eventually(Duration::from_secs(30), || {
        let stats = store.engine().stats();
        stats.wal_segments == 1
            && stats.wal_bytes < 1024
            && stats.wal_oldest_segment_age.is_zero()
            && wal_files(dir.path()) == 1
    });
    assert!(emptied, "{:?}", store.engine().stats());
    assert_complete(&store, 0..2);
}

/// The sequence number the newest index dump on disk covers (0: none yet).
fn newest_dump(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join(super::INDEX_SUBDIR))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("dump-")?
                        .parse()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn a_held_periodic_dump_waits_for_the_hold_and_the_wal_bound_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // Dumps every 50 ms once writes came; the WAL bound is DUMP_WAL_BYTES.
    let store = UnifiedStore::open(
        dir.path(),
        options(Duration::from_millis(50), None, DUMP_WAL_BYTES),
    )
    .unwrap();
    put_batch(&store, 0);
    assert!(eventually(Duration::from_secs(30), || newest_dump(
        dir.path()
    ) > 0));
    let hold = store.hold_periodic_dumps();
    let nested = store.hold_periodic_dumps();
    let held_at = newest_dump(dir.path());
    // Writes well below the WAL bound, over many intervals: no dump while held.
    for batch in 1..4 {
        put_batch(&store, batch);
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(
        newest_dump(dir.path()),
        held_at,
        "a periodic dump ran while held"
    );
    drop(nested);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        newest_dump(dir.path()),
        held_at,
        "one hold left still holds the dump"
    );
    // Past the WAL bound the dump comes, held or not.
    let mut batch = 4;
    while store.engine().stats().wal_written_bytes < 2 * DUMP_WAL_BYTES {
        put_batch(&store, batch);
        batch += 1;
    }
    assert!(
        eventually(Duration::from_secs(30), || newest_dump(dir.path())
            > held_at),
        "the WAL bound did not dump while held"
    );
    // Released, the next writes are dumped within the interval again.
    let bounded = newest_dump(dir.path());
    drop(hold);
    put_batch(&store, batch);
    assert!(
        eventually(Duration::from_secs(30), || newest_dump(dir.path())
            > bounded),
        "no periodic dump after the hold ended"
    );
    assert_complete(&store, 0..=batch);
}

/// What a child process does (the `ALLIDB_WAL_CHILD` variable: `<mode> <dir> <first batch>`).
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Writes batches without end, each acknowledged one reported, paced so that the WAL on
    /// disk is back under the bound before the next.
    Stream,
    /// Writes, dumps the indexes, writes more and flushes, then waits: killed between a flush
    /// and the dump that would cover it.
    FlushedNotDumped,
    /// Writes and flushes, then writes a dump without pinning the WAL, then waits: killed
    /// between an index dump and the deletion of the WAL it covers.
    DumpedNotDeleted,
}

const FIRST_PART: u64 = 10;

/// The child process's side (ignored unless run by one of the tests below).
#[test]
#[ignore = "the child process of this module's crash tests, which run it themselves (cargo test -p allidb-index wal_tests); alone it does nothing"]
fn child() {
    let Ok(spec) = std::env::var(CHILD_VAR) else {
        return;
    };
    let mut parts = spec.split(' ');
    let (mode, dir, first) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let store = match mode {
        "Stream" => UnifiedStore::open(dir, size_only()),
        _ => UnifiedStore::open(dir, no_dumps()),
    }
    .unwrap();
    let report = |line: String| println!("ALLIDB {line}");
    match mode {
        "Stream" => {
            for batch in first.. {
                put_batch(&store, batch);
                assert!(
                    eventually(Duration::from_secs(30), || {
                        store.engine().stats().wal_bytes <= WAL_BOUND
                    }),
                    "the WAL stays above the bound"
                );
                report(format!("acked {batch}"));
            }
        }
        "FlushedNotDumped" => {
            for batch in first..first + FIRST_PART {
                put_batch(&store, batch);
            }
            store.dump_indexes().unwrap();
            for batch in first + FIRST_PART..first + 2 * FIRST_PART {
                put_batch(&store, batch);
            }
            store.engine().flush().unwrap();
            report(format!("acked {}", first + 2 * FIRST_PART - 1));
        }
        "DumpedNotDeleted" => {
            for batch in first..first + 2 * FIRST_PART {
                put_batch(&store, batch);
            }
            store.engine().flush().unwrap();
            write_index_dump(&store.indexes, &store.index_dir).unwrap();
            report(format!("acked {}", first + 2 * FIRST_PART - 1));
        }
        other => panic!("unknown child mode {other}"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs [`child`] in `mode` on `dir` from batch `first`, kills it with SIGKILL once it has
/// reported batch `kill_after` as acknowledged, and returns the last acknowledged batch.
fn crash_child(mode: Mode, dir: &Path, first: u64, kill_after: u64) -> u64 {
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::wal_tests::child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_VAR, format!("{mode:?} {} {first}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ALLIDB acked ") {
            let n: u64 = n.parse().unwrap();
            acked = Some(n);
            if n >= kill_after {
                break;
            }
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let acked = acked.unwrap_or_else(|| panic!("the child ended before acknowledging: {status}"));
    assert!(acked >= kill_after, "the child ended early: {status}");
    acked
}

#[test]
fn a_kill_during_writes_loses_nothing_and_replays_at_most_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut next = 0;
    let mut acked_batches = Vec::new();
    // Every kill comes after the WAL has gone past the bound once, so after a dump.
    for kill_after in [40, 70, 110] {
        let acked = crash_child(Mode::Stream, dir.path(), next, kill_after);
        acked_batches.extend(next..=acked);
        let store = UnifiedStore::open(dir.path(), size_only()).unwrap();
        let replayed = store.engine().stats().wal_replayed_bytes;
        assert!(
            replayed <= WAL_BOUND + BATCH_WAL_BYTES,
            "the restart read {replayed} bytes of WAL, bound {WAL_BOUND}"
        );
        assert!(
            matches!(store.recovery(), Some(IndexRecovery::CaughtUp { .. })),
            "{:?}",
            store.recovery()
        );
        assert_complete(&store, acked_batches.iter().copied());
        next = acked + 2;
    }
}

#[test]
fn a_kill_between_a_flush_and_the_next_dump_catches_up_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let acked = crash_child(Mode::FlushedNotDumped, dir.path(), 0, 0);
    let store = UnifiedStore::open(dir.path(), no_dumps()).unwrap();
    // The second part is in tables but not in the dump: only the retained WAL says what to
    // re-index (without it the indexes are rebuilt from scratch).
    match store.recovery() {
        Some(IndexRecovery::CaughtUp { entities, .. }) => {
            assert_eq!(entities as u64, FIRST_PART * BATCH)
        }
        other => panic!("expected a catch-up from the WAL, got {other:?}"),
    }
    assert_complete(&store, 0..=acked);
}

#[test]
fn a_kill_between_a_dump_and_its_wal_deletion_loses_nothing_and_the_open_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let acked = crash_child(Mode::DumpedNotDeleted, dir.path(), 0, 0);
    assert!(
        wal_files(dir.path()) >= 2,
        "the covered segments are still there"
    );
    let store = UnifiedStore::open(dir.path(), no_dumps()).unwrap();
    assert!(
        matches!(
            store.recovery(),
            Some(IndexRecovery::CaughtUp { entities: 0, .. })
        ),
        "{:?}",
        store.recovery()
    );
    assert_complete(&store, 0..=acked);
    // The dump on disk covers every segment, and all are flushed: the open deleted them
    // without waiting for a write and the next dump.
    let stats = store.engine().stats();
    assert_eq!(stats.wal_segments, 1, "{stats:?}");
    assert_eq!(wal_files(dir.path()), 1);
}
