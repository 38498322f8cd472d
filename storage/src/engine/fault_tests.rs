//! Engine tests of I/O failures on the simulated file system: a full volume during a flush
//! (writes refused, then resumed without a reopen), a failed WAL write (stopped until reopened)
//! and the low-space watermark. Every acknowledged write must survive each of them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Engine, EngineState, Options};
use crate::cell::{EntityBody, EntityWrite};
use crate::error::Error;
use crate::fs::sim::SimFileSystem;
use crate::types::Durability;

const TENANT: &str = "t";
const DIR: &str = "/db";

fn options() -> Options {
    Options {
        memtable_bytes: 64 << 10,
        target_file_bytes: 64 << 10,
        level1_bytes: 128 << 10,
        ..Options::default()
    }
}

fn entity(i: u64) -> EntityWrite {
    EntityWrite {
        id: format!("e{i:06}"),
        body: EntityBody {
            entity_type: "x".repeat(1024),
            importance: i as f64,
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    }
}

fn put(engine: &Engine, i: u64) -> crate::Result<u64> {
    engine.put_entities(TENANT, vec![entity(i)], Durability::Sync)
}

/// Waits up to 10 s for `engine` to reach `state`.
fn wait_for(engine: &Engine, state: EngineState) -> super::Health {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = engine.health();
        if health.state == state {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "still {health:?}, want {state:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_all_readable(engine: &Engine, acked: &[u64]) {
    for i in acked {
        let got = engine.get_entity(TENANT, &format!("e{i:06}")).unwrap();
        assert_eq!(
            got.map(|e| e.body.importance),
            Some(*i as f64),
            "entity {i}"
        );
    }
}

#[test]
fn a_flush_on_a_full_volume_refuses_writes_then_resumes_by_itself() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap();
    fs.set_no_space_for(Some(".sst"));
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        match put(&engine, i) {
            Ok(_) => acked.push(i),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("writes are refused once the flush fails");
    assert!(
        matches!(&refused, Error::NoSpace(_)),
        "a full volume is NoSpace: {refused}"
    );
    assert_eq!(
        refused.to_string(),
        "no space left on device on the data volume: the memtable flush cannot write its \
         files; writes are refused until space is freed, then resume by themselves"
    );
    let health = wait_for(&engine, EngineState::Degraded);
    assert_eq!(health.reason, Some(refused.to_string()));
    assert_all_readable(&engine, &acked);

    fs.set_no_space_for(None);
    wait_for(&engine, EngineState::Healthy);
    let next = acked.last().map_or(0, |last| last + 1);
    for i in next..next + 200 {
        put(&engine, i).expect("writes resume once the flush succeeds");
        acked.push(i);
    }
    assert!(engine.stats().flushes > 0);
    assert_all_readable(&engine, &acked);
    engine.close().unwrap();
    drop(engine);
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap();
    assert_all_readable(&engine, &acked);
}

#[test]
fn a_failed_wal_write_stops_the_engine_until_it_is_reopened() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap();
    let acked: Vec<u64> = (0..20)
        .inspect(|&i| {
            put(&engine, i).unwrap();
        })
        .collect();
    fs.set_no_space_for(Some(".wal"));
    let failed = put(&engine, 100).expect_err("the WAL append fails");
    assert!(failed.is_no_space(), "{failed}");
    fs.set_no_space_for(None);
    let health = wait_for(&engine, EngineState::Stopped);
    let reason = "no space left on device on the data volume: the WAL write failed; writes are \
                  refused until allidbd is restarted (acknowledged writes are safe; \
                  unacknowledged ones may or may not have been applied)";
    assert_eq!(health.reason.as_deref(), Some(reason));
    let refused = put(&engine, 101).expect_err("a stopped engine stays stopped");
    assert_eq!(refused.to_string(), reason);
    assert_all_readable(&engine, &acked);
    assert!(engine.close().is_err(), "closing reports the WAL failure");
    drop(engine);

    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap();
    assert!(engine.health().is_healthy());
    assert_all_readable(&engine, &acked);
    put(&engine, 102).expect("a reopened engine accepts writes");
}

#[test]
fn the_watermark_refuses_writes_but_lets_a_flush_use_the_reserve() {
    let fs = SimFileSystem::new();
    let options = Options {
        min_free_bytes: 2 << 20,
        ..options()
    };
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new(DIR), options).unwrap();
    put(&engine, 0).unwrap();
    fs.set_available_space(Some(1 << 20));
    std::thread::sleep(super::health::SPACE_CHECK_INTERVAL);
    let refused = put(&engine, 1).expect_err("below the watermark");
    assert_eq!(
        refused.to_string(),
        "no space left on device on the data volume: 1.0 MiB available, below the low-space \
         watermark of 2.0 MiB (storage.min_free_bytes); writes are refused until space is \
         freed, then resume by themselves"
    );
    assert_eq!(engine.health().state, EngineState::LowSpace);
    engine.flush().expect("a flush may use the reserve");
    assert_eq!(engine.stats().flushes, 1);

    fs.set_available_space(Some(3 << 20));
    std::thread::sleep(super::health::SPACE_CHECK_INTERVAL);
    assert!(engine.health().is_healthy());
    put(&engine, 1).expect("writes resume above the watermark");
    assert_all_readable(&engine, &[0, 1]);
}
