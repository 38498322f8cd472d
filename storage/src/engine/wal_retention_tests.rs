//! WAL retention on the simulated file system: a segment is deleted once every write in it is in
//! a table and (when pinned) the follower has persisted past it — also while no write comes,
//! through the idle flush — and a crash afterwards replays only what is left, losing nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Engine, Options};
use crate::cell::{EntityBody, EntityWrite};
use crate::fs::FileSystem;
use crate::fs::sim::SimFileSystem;
use crate::types::Durability;

const TENANT: &str = "t";
const DIR: &str = "/db";
const IDLE: Duration = Duration::from_millis(100);

fn options(idle: Option<Duration>, retain: bool) -> Options {
    Options {
        memtable_bytes: 64 << 10,
        memtable_idle_flush: idle,
        retain_wal_until_pinned: retain,
        ..Options::default()
    }
}

fn put(engine: &Engine, i: u64) -> u64 {
    let write = EntityWrite {
        id: format!("e{i:06}"),
        body: EntityBody {
            entity_type: "x".repeat(1024),
            importance: i as f64,
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    };
    engine
        .put_entities(TENANT, vec![write], Durability::Sync)
        .unwrap()
}

fn wal_files(fs: &SimFileSystem) -> usize {
    fs.list(Path::new(DIR))
        .unwrap()
        .iter()
        .filter(|name| name.ends_with(".wal"))
        .count()
}

/// Waits up to 30 s for `done` (a ceiling for loaded machines; it takes milliseconds).
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_present(engine: &Engine, ids: std::ops::Range<u64>) {
    for i in ids {
        let got = engine.get_entity(TENANT, &format!("e{i:06}")).unwrap();
        assert_eq!(got.map(|e| e.body.importance), Some(i as f64), "entity {i}");
    }
}

#[test]
fn an_idle_memtable_is_flushed_and_its_segment_deleted_without_another_write() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(
        Arc::new(fs.clone()),
        Path::new(DIR),
        options(Some(IDLE), false),
    )
    .unwrap();
    for i in 0..5 {
        put(&engine, i);
    }
    let stats = engine.stats();
    assert_eq!((stats.wal_segments, stats.flushes), (1, 0));
    assert!(stats.wal_bytes > 5 * 1024, "{stats:?}");
    eventually(
        "the idle memtable is flushed and its segment deleted",
        || {
            let stats = engine.stats();
            stats.flushes == 1
                && stats.wal_segments == 1
                && stats.wal_bytes < 64
                && stats.wal_oldest_segment_age.is_zero()
                && wal_files(&fs) == 1
        },
    );
    // A crash now has nothing to replay and loses nothing.
    fs.crash();
    drop(engine);
    let engine = Engine::open_with_fs(
        Arc::new(fs.clone()),
        Path::new(DIR),
        options(Some(IDLE), false),
    )
    .unwrap();
    assert!(engine.stats().wal_replayed_bytes < 64);
    assert_present(&engine, 0..5);
}

#[test]
fn a_pinned_segment_goes_when_both_the_flush_and_the_pin_cover_it_whichever_is_last() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(
        Arc::new(fs.clone()),
        Path::new(DIR),
        options(Some(IDLE), true),
    )
    .unwrap();
    // Flushed first (idle), then pinned.
    for i in 0..5 {
        put(&engine, i);
    }
    eventually("the idle flush", || engine.stats().flushes == 1);
    let stats = engine.stats();
    assert_eq!(
        (stats.wal_segments, wal_files(&fs)),
        (2, 2),
        "kept for the pin"
    );
    assert!(stats.wal_oldest_segment_age > Duration::ZERO);
    engine.pin_wal(engine.last_seq()).unwrap();
    assert_eq!((engine.stats().wal_segments, wal_files(&fs)), (1, 1));

    // Pinned first, then flushed (idle): the flush deletes it.
    for i in 5..10 {
        put(&engine, i);
    }
    engine.pin_wal(engine.last_seq()).unwrap();
    assert!(engine.stats().wal_bytes > 5 * 1024, "not flushed yet");
    eventually("the idle flush deletes the pinned segment", || {
        engine.stats().flushes == 2 && engine.stats().wal_segments == 1 && wal_files(&fs) == 1
    });
    fs.crash();
    drop(engine);
    let engine = Engine::open_with_fs(
        Arc::new(fs.clone()),
        Path::new(DIR),
        options(Some(IDLE), true),
    )
    .unwrap();
    assert_present(&engine, 0..10);
}

#[test]
fn flushed_segments_held_only_by_the_pin_are_counted_until_the_pin_passes_them() {
    let fs = SimFileSystem::new();
    let engine =
        Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options(None, true)).unwrap();
    assert_eq!(engine.wal_bytes_kept_for_pin(), 0);
    // About 200 KiB of writes: several 64 KiB memtables flushed, their segments kept for the pin.
    let mut last = 0;
    for i in 0..200 {
        last = put(&engine, i);
    }
    eventually("a flushed segment is kept for the pin", || {
        engine.wal_bytes_kept_for_pin() > 64 << 10
    });
    assert!(engine.wal_bytes_kept_for_pin() <= engine.stats().wal_bytes);
    engine.pin_wal(last).unwrap();
    eventually("the pin releases every flushed segment", || {
        engine.wal_bytes_kept_for_pin() == 0
    });
    assert_present(&engine, 0..200);
}
