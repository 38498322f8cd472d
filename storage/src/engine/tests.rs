//! Engine-level crash tests on the simulated file system: power loss while writers, flushes,
//! compactions and manifest swaps are in flight.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Engine, Options};
use crate::cell::{Embedding, EntityBody, EntityWrite};
use crate::fs::sim::SimFileSystem;
use crate::types::Durability;

const TENANT: &str = "t";

fn options() -> Options {
    Options {
        memtable_bytes: 64 << 10,
        target_file_bytes: 64 << 10,
        level1_bytes: 128 << 10,
        l0_compaction_trigger: 2,
        ..Options::default()
    }
}

fn write(i: u64) -> EntityWrite {
    EntityWrite {
        id: format!("e{i:06}"),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vec![i as f32; 128],
                timestamp_nanos: 1,
            }],
            importance: i as f64,
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    }
}

#[test]
fn power_loss_keeps_every_sync_acknowledged_write_and_invents_nothing() {
    for round in 0..6u64 {
        let fs = SimFileSystem::new();
        let dir = Path::new("/db");
        let engine = Arc::new(Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap());
        let next = Arc::new(AtomicU64::new(0));
        let acked_sync = Arc::new(Mutex::new(BTreeSet::new()));
        let crash_after = 300 + round * 100;
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let (engine, next, acked) = (engine.clone(), next.clone(), acked_sync.clone());
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let durability = if t == 2 {
                            Durability::Buffered
                        } else {
                            Durability::Sync
                        };
                        match engine.put_entities(TENANT, vec![write(i)], durability) {
                            Ok(_) if durability == Durability::Sync => {
                                acked.lock().unwrap().insert(i);
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        while acked_sync.lock().unwrap().len() < crash_after as usize {
            std::thread::yield_now();
        }
        let flushed_before_crash = engine.stats().flushes;
        fs.crash();
        for t in threads {
            t.join().unwrap();
        }
        let acked = acked_sync.lock().unwrap().clone();
        drop(engine);

        let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
        for i in &acked {
            let got = engine.get_entity(TENANT, &format!("e{i:06}")).unwrap();
            let got =
                got.unwrap_or_else(|| panic!("round {round}: sync-acknowledged e{i:06} lost"));
            assert_eq!(got.body.importance, *i as f64);
        }
        let attempted = next.load(Ordering::Relaxed);
        for e in engine.scan(TENANT, None, None).unwrap() {
            let e = e.unwrap();
            let i: u64 = e.id[1..].parse().unwrap();
            assert!(i < attempted, "round {round}: {} was never written", e.id);
            assert_eq!(
                e.body.importance, i as f64,
                "round {round}: {} has another entity's body",
                e.id
            );
        }
        assert!(
            flushed_before_crash > 0,
            "round {round}: the crash should land after flushes"
        );
    }
}

#[test]
fn reopen_after_clean_close_keeps_everything_and_compacts() {
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    {
        let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
        for chunk in (0..600u64).collect::<Vec<_>>().chunks(50) {
            engine
                .put_entities(
                    TENANT,
                    chunk.iter().map(|i| write(*i)).collect(),
                    Durability::Buffered,
                )
                .unwrap();
        }
        engine.compact().unwrap();
        let stats = engine.stats();
        assert_eq!(stats.tables_per_level[0], 0, "a full compaction empties L0");
        assert!(stats.compactions > 0);
        engine.close().unwrap();
    }
    fs.crash();
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    assert_eq!(engine.scan(TENANT, None, None).unwrap().count(), 600);
}

#[test]
fn retained_wal_serves_changes_across_reopen_until_pinned() {
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let options = Options {
        retain_wal_until_pinned: true,
        ..options()
    };
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options.clone()).unwrap();
    for i in 0..200u64 {
        engine
            .put_entities(TENANT, vec![write(i)], Durability::Buffered)
            .unwrap();
    }
    let mid = engine.last_seq();
    for i in 200..260u64 {
        engine
            .put_entities(TENANT, vec![write(i)], Durability::Buffered)
            .unwrap();
    }
    engine.flush().unwrap();
    engine.close().unwrap();
    drop(engine);

    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options.clone()).unwrap();
    let (changed, upto) = engine
        .changes_since(mid)
        .unwrap()
        .expect("the WAL is retained");
    let ids: BTreeSet<String> = changed.into_iter().map(|c| c.entity_id).collect();
    let want: BTreeSet<String> = (200..260u64).map(|i| format!("e{i:06}")).collect();
    assert_eq!(ids, want);
    assert_eq!(upto, engine.last_seq());
    let (all, _) = engine
        .changes_since(0)
        .unwrap()
        .expect("nothing was released yet");
    assert_eq!(all.len(), 260);

    // Once the follower has persisted everything, a flush releases the old segments.
    engine.pin_wal(engine.last_seq()).unwrap();
    engine
        .put_entities(TENANT, vec![write(999)], Durability::Sync)
        .unwrap();
    engine.flush().unwrap();
    assert_eq!(
        engine.changes_since(0).unwrap(),
        None,
        "released segments no longer serve seq 1"
    );
}

#[test]
fn a_table_overlapping_nothing_below_moves_down_without_a_rewrite() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new("/db"), options()).unwrap();
    engine
        .put_entities(TENANT, (0..20).map(write).collect(), Durability::Sync)
        .unwrap();
    engine.compact().unwrap();
    let stats = engine.stats();
    assert_eq!(stats.tables_per_level[0], 0);
    assert_eq!(
        stats.tables_per_level[1], 1,
        "the one flushed table now sits in L1"
    );
    assert_eq!(
        stats.compaction_write_bytes, 0,
        "a trivial move writes nothing"
    );
    assert!(stats.compactions >= 1);
    drop(engine);
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), Path::new("/db"), options()).unwrap();
    assert_eq!(
        engine.stats().tables_per_level[1],
        1,
        "the move is in the manifest"
    );
    assert_eq!(engine.scan(TENANT, None, None).unwrap().count(), 20);
}

/// One engine per data directory: a second open (in this process or another) fails at once
/// with an error naming the lock file, and succeeds once the first engine is closed (even
/// while the closed engine value still exists).
#[test]
fn a_data_directory_is_opened_by_one_engine_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::open(dir.path(), Options::default()).unwrap();
    let error = Engine::open(dir.path(), Options::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("LOCK") && message.contains("another"),
        "{message}"
    );
    first.close().unwrap();
    Engine::open(dir.path(), Options::default()).unwrap();
    assert!(matches!(first.compact(), Err(crate::Error::Unavailable(_))));
}

/// `(from, relation, to)`.
type EdgeTriple = (String, String, String);

/// Every live out-edge `from -relation-> to` of the pool's partitions as seen from its source,
/// and every live in-edge as seen from its target (partitions, not entities: a deleted entity
/// can still be the target of an edge added later): the two sets must be equal.
fn edge_ends(engine: &Engine, pool: u64) -> (BTreeSet<EdgeTriple>, BTreeSet<EdgeTriple>) {
    let mut out = BTreeSet::new();
    let mut inn = BTreeSet::new();
    for i in 0..pool {
        let partition = engine.read_partition(TENANT, &format!("e{i:06}")).unwrap();
        for e in partition.out_edges {
            out.insert((e.from, e.relation, e.to));
        }
        for e in partition.in_edges {
            inn.insert((e.from, e.relation, e.to));
        }
    }
    (out, inn)
}

#[test]
fn concurrent_mutations_of_shared_entities_keep_both_ends_of_every_edge() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    const POOL: u64 = 16;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                // xorshift: each thread its own deterministic sequence.
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut next = move |bound: u64| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % bound
                };
                for _ in 0..200 {
                    match next(8) {
                        0 => {
                            let id = format!("e{:06}", next(POOL));
                            engine
                                .delete_entity(TENANT, &id, Durability::Buffered)
                                .unwrap();
                            continue;
                        }
                        1 => {
                            let edge = crate::cell::Edge {
                                from: format!("e{:06}", next(POOL)),
                                to: format!("e{:06}", next(POOL)),
                                relation: "links".to_owned(),
                                weight: 1.0,
                                timestamp_nanos: 0,
                                sources: Vec::new(),
                            };
                            engine
                                .add_edges(TENANT, &[edge], Durability::Buffered)
                                .unwrap();
                            continue;
                        }
                        _ => {}
                    }
                    let batch: Vec<EntityWrite> = (0..4)
                        .map(|_| {
                            let mut w = write(next(POOL));
                            w.out_edges = (0..1 + next(3))
                                .map(|_| crate::cell::EdgeWrite {
                                    relation: "cites".to_owned(),
                                    other: format!("e{:06}", next(POOL)),
                                    weight: 1.0,
                                    timestamp_nanos: 0,
                                    sources: Vec::new(),
                                })
                                .collect();
                            w
                        })
                        .collect();
                    engine
                        .put_entities(TENANT, batch, Durability::Buffered)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (out, inn) = edge_ends(&engine, POOL);
    assert!(!out.is_empty());
    let no_out_edge: Vec<_> = inn.difference(&out).collect();
    let no_in_edge: Vec<_> = out.difference(&inn).collect();
    assert!(
        no_out_edge.is_empty() && no_in_edge.is_empty(),
        "in-edges without their out-edge: {no_out_edge:?}; out-edges without their in-edge: {no_in_edge:?}"
    );
}

/// `count` entities of `tenant` from `first`, each with the entity type `tag`.
fn put_tagged(engine: &Engine, tenant: &str, first: u64, count: u64, tag: &str) {
    let writes = (first..first + count)
        .map(|i| {
            let mut w = write(i);
            w.body.entity_type = tag.to_owned();
            w
        })
        .collect();
    engine
        .put_entities(tenant, writes, Durability::Sync)
        .unwrap();
}

fn ids(engine: &Engine, tenant: &str) -> Vec<String> {
    engine
        .scan(tenant, None, None)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect()
}

#[test]
fn a_dropped_tenant_is_gone_at_once_after_a_crash_and_from_every_file_after_compaction() {
    use crate::fs::FileSystem;
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    put_tagged(&engine, "t", 0, 300, "t-before-the-drop");
    put_tagged(&engine, "s", 0, 300, "s-kept");
    engine.flush().unwrap();
    put_tagged(&engine, "t", 300, 100, "t-before-the-drop"); // in the memtable and WAL only
    let before = ids(&engine, "s");
    let drop = engine.drop_tenant("t", engine.clock().now()).unwrap();
    put_tagged(&engine, "t", 400, 10, "t-after-the-drop");
    let after: Vec<String> = (400..410).map(|i| format!("e{i:06}")).collect();
    assert_eq!(ids(&engine, "t"), after);
    assert!(engine.get_entity("t", "e000001").unwrap().is_none());
    assert!(engine.partition_cells("t", "e000350").unwrap().is_empty());
    assert_eq!(ids(&engine, "s"), before, "another tenant untouched");

    // The drop is durable when it returns: a crash right after keeps it.
    fs.crash();
    std::mem::drop(engine);
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    assert_eq!(engine.tenant_drops().get("t"), Some(drop));
    assert!(
        engine.clock().now() > drop.ts,
        "the clock restarts past the drop"
    );
    assert!(engine.get_entity("t", "e000001").unwrap().is_none());
    assert_eq!(ids(&engine, "s"), before);

    // After a full compaction no file holds a cell of the dropped tenant written before the
    // drop, while the other tenant's and the later writes are there.
    put_tagged(&engine, "t", 400, 10, "t-after-the-drop");
    engine.compact().unwrap();
    let holding = |needle: &str| -> Vec<String> {
        fs.list(dir)
            .unwrap()
            .into_iter()
            .filter(|name| {
                fs.read(&dir.join(name))
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
            .collect()
    };
    assert!(!holding("s-kept").is_empty(), "the search finds data");
    assert!(!holding("t-after-the-drop").is_empty());
    assert_eq!(holding("t-before-the-drop"), Vec::<String>::new());
    assert_eq!(ids(&engine, "t"), after);
    assert_eq!(ids(&engine, "s"), before);
}

#[test]
fn a_full_compaction_purges_deletes_past_the_grace_already_at_the_deepest_level() {
    use crate::fs::FileSystem;
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let grace = std::time::Duration::from_millis(300);
    let options = Options {
        gc_grace: grace,
        ..options()
    };
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options).unwrap();
    put_tagged(&engine, "t", 0, 10, "deleted-body");
    put_tagged(&engine, "t", 10, 10, "kept-body");
    for i in 0..10 {
        assert!(
            engine
                .delete_entity("t", &format!("e{i:06}"), Durability::Sync)
                .unwrap()
        );
    }
    // Within the grace a full compaction keeps the markers (and may keep what they hide).
    engine.compact().unwrap();
    assert!(!engine.partition_cells("t", "e000003").unwrap().is_empty());
    assert_eq!(engine.stats().tables_per_level[0], 0, "all below L0");

    // Past the grace, the same tables, already one sorted run at the deepest level, are
    // rewritten: the markers and the bodies they hid leave every file.
    std::thread::sleep(grace + std::time::Duration::from_millis(50));
    engine.compact().unwrap();
    assert!(engine.partition_cells("t", "e000003").unwrap().is_empty());
    let holding = |needle: &str| {
        fs.list(dir).unwrap().into_iter().any(|name| {
            fs.read(&dir.join(name))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    assert!(holding("kept-body"), "the search finds data");
    assert!(!holding("deleted-body"), "a purged body is left in a file");
    let kept: Vec<String> = (10..20).map(|i| format!("e{i:06}")).collect();
    assert_eq!(ids(&engine, "t"), kept);
}

#[test]
fn a_memtable_or_wal_holding_only_dropped_cells_flushes_and_replays_to_no_table() {
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    put_tagged(&engine, "t", 0, 50, "t-before-the-drop");
    engine.drop_tenant("t", engine.clock().now()).unwrap();
    engine.flush().unwrap();
    assert_eq!(
        engine.stats().tables_per_level[0],
        0,
        "nothing left to write"
    );
    put_tagged(&engine, "t", 50, 5, "t-after-the-drop");
    assert_eq!(ids(&engine, "t").len(), 5, "the engine still takes writes");

    // A crash with only dropped cells in the WAL: the replay writes no table either.
    engine.drop_tenant("t", engine.clock().now()).unwrap();
    fs.crash();
    std::mem::drop(engine);
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    assert!(ids(&engine, "t").is_empty());
    put_tagged(&engine, "t", 60, 1, "t-after-the-drop");
    assert_eq!(ids(&engine, "t").len(), 1);
}

#[test]
fn a_partition_scan_goes_on_after_any_partition_over_a_later_snapshot() {
    let fs = SimFileSystem::new();
    let engine = Engine::open_with_fs(Arc::new(fs), Path::new("/db"), options()).unwrap();
    put_tagged(&engine, "a", 0, 40, "x");
    put_tagged(&engine, "b", 0, 40, "x");
    engine.flush().unwrap();
    let keys = |after: Option<(&str, &str)>, tenant: Option<&str>| -> Vec<(String, String)> {
        engine
            .partitions_after(tenant, after)
            .unwrap()
            .map(|p| p.map(|p| (p.tenant, p.entity_id)).unwrap())
            .collect()
    };
    let all = keys(None, None);
    assert_eq!(all.len(), 80);
    // Resumed after each partition, the scan yields exactly the rest, even across tenants and
    // after writes that land before the position.
    put_tagged(&engine, "a", 100, 5, "x");
    let all = keys(None, None);
    for (i, (tenant, id)) in all.iter().enumerate() {
        assert_eq!(
            keys(Some((tenant, id)), None),
            all[i + 1..],
            "after {tenant}/{id}"
        );
    }
    // Restricted to a tenant: a position in another tenant bounds only from below.
    assert_eq!(keys(Some(("a", "e000001")), Some("b")).len(), 40);
    assert!(keys(Some(("c", "e")), Some("b")).is_empty());
    // An id that is only a prefix of others does not skip them.
    assert_eq!(keys(Some(("a", "e00000")), Some("a")).len(), 45);
}

/// Expiry (issue 39): expiring a body whose time has come (by the clock the caller gives)
/// writes a marker at that body's own timestamp, which hides it and its out-edges; a later
/// put is never expired, even where the expiry of the older body arrives after it (a replica
/// that got the newer put first); a full compaction leaves no file holding the expired body.
#[test]
fn an_expired_body_is_shadowed_at_its_own_timestamp_and_compacted_away() {
    use crate::cell::EdgeWrite;
    use crate::fs::FileSystem;
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    let at = 4_000_000_000_000_000_000_i64;
    let put = |i: u64, tag: &str, expires_at_nanos: i64| {
        let mut w = write(i);
        w.body.entity_type = tag.to_owned();
        w.body.expires_at_nanos = expires_at_nanos;
        w.out_edges = vec![EdgeWrite {
            relation: "r".to_owned(),
            other: "e000009".to_owned(),
            weight: 1.0,
            timestamp_nanos: 0,
            sources: Vec::new(),
        }];
        w
    };
    let writes = vec![
        put(0, "expiring-body", at),
        put(1, "expiring-body", at),
        put(2, "kept-body", 0),
    ];
    engine
        .put_entities(TENANT, writes, Durability::Sync)
        .unwrap();
    engine.flush().unwrap();
    let all = ["e000000", "e000001", "e000002"];
    let not_yet = engine
        .expire_entities(TENANT, &all, at - 1, Durability::Sync)
        .unwrap();
    assert!(not_yet.is_empty(), "nothing expires before its time");

    let stale = engine.read_partition(TENANT, "e000001").unwrap();
    engine
        .put_entities(TENANT, vec![put(1, "rewritten", 0)], Durability::Sync)
        .unwrap();
    let body_ts = engine.read_partition(TENANT, "e000000").unwrap().body_ts;
    let expired = engine
        .expire_entities(TENANT, &all, at, Durability::Sync)
        .unwrap();
    assert_eq!(
        expired,
        vec!["e000000"],
        "the rewritten one no longer expires"
    );
    let gone = engine.read_partition(TENANT, "e000000").unwrap();
    assert!(gone.body.is_none() && gone.out_edges.is_empty());
    assert_eq!(
        gone.marker_ts,
        Some(body_ts),
        "the marker has the body's timestamp"
    );
    assert!(engine.get_entity(TENANT, "e000000").unwrap().is_none());

    // The older body's expiry reaching a replica after the newer put hides nothing of it.
    let late = crate::mutation::plan_expire(TENANT, "e000001", &stale, at).unwrap();
    engine.write(late, Durability::Sync).unwrap();
    let kept = engine.get_entity(TENANT, "e000001").unwrap().unwrap();
    assert_eq!(kept.body.entity_type, "rewritten");
    assert_eq!(kept.out_edges.len(), 1);

    engine.compact().unwrap();
    let holding = |needle: &str| {
        fs.list(dir).unwrap().into_iter().any(|name| {
            fs.read(&dir.join(name))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    assert!(
        holding("kept-body") && holding("rewritten"),
        "the search finds data"
    );
    assert!(
        !holding("expiring-body"),
        "an expired body is left in a file"
    );
}

/// A put and its expiry (or delete) in the same memtable: the flush leaves the hidden body out,
/// so a full compaction that only moves the one table down leaves no file holding it.
#[test]
fn a_body_hidden_within_one_memtable_is_not_flushed() {
    use crate::fs::FileSystem;
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    let at = 4_000_000_000_000_000_000_i64;
    let mut expiring = write(0);
    expiring.body.entity_type = "expiring-body".to_owned();
    expiring.body.expires_at_nanos = at;
    let mut kept = write(1);
    kept.body.entity_type = "kept-body".to_owned();
    engine
        .put_entities(TENANT, vec![expiring, kept], Durability::Sync)
        .unwrap();
    let expired = engine
        .expire_entities(TENANT, &["e000000"], at, Durability::Sync)
        .unwrap();
    assert_eq!(expired, ["e000000"]);
    engine.compact().unwrap();
    let holding = |needle: &str| {
        fs.list(dir).unwrap().into_iter().any(|name| {
            name.ends_with(".sst")
                && fs
                    .read(&dir.join(&name))
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    assert!(holding("kept-body"), "the search finds data");
    assert!(!holding("expiring-body"), "a hidden body was flushed");
    assert!(engine.get_entity(TENANT, "e000000").unwrap().is_none());
    assert!(engine.get_entity(TENANT, "e000001").unwrap().is_some());
}

#[test]
fn a_purge_drops_whole_partitions_from_every_table_and_leaves_no_tombstone() {
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    put_tagged(&engine, "t", 0, 300, "old");
    engine.compact().unwrap();
    // Deletes in a newer table above the values they hide: both must go, or the older value
    // would come back.
    for i in [2, 3] {
        assert!(
            engine
                .delete_entity("t", &format!("e{i:06}"), Durability::Sync)
                .unwrap()
        );
    }
    engine.flush().unwrap();
    put_tagged(&engine, "t", 300, 10, "in the memtable");
    put_tagged(&engine, "s", 0, 20, "another tenant");
    let even =
        |tenant: &str, id: &str| tenant == "t" && id[1..].parse::<u64>().is_ok_and(|n| n % 2 == 0);
    let purged = engine.purge_partitions(&even).unwrap();
    assert_eq!(purged.partitions.len(), 155, "every even id of 0..310");
    assert!(
        purged.cells >= 155 && purged.tables_rewritten > 0,
        "{purged:?}"
    );
    assert!(purged.table_bytes_after < purged.table_bytes_before);
    let check = |engine: &Engine| {
        for i in 0..310u64 {
            let id = format!("e{i:06}");
            let cells = engine.partition_cells("t", &id).unwrap();
            match (i % 2 == 0, i) {
                (true, _) => assert!(cells.is_empty(), "{id}: no cell, no tombstone: {cells:?}"),
                (false, 3) => assert!(engine.get_entity("t", &id).unwrap().is_none()),
                (false, _) => assert!(engine.get_entity("t", &id).unwrap().is_some(), "{id}"),
            }
        }
        assert_eq!(ids(engine, "s").len(), 20, "another tenant untouched");
    };
    check(&engine);
    // One durable manifest edit: a crash right after keeps the purge whole.
    fs.crash();
    std::mem::drop(engine);
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), dir, options()).unwrap();
    check(&engine);
    // Nothing shadows the same cells written again (streamed back).
    put_tagged(&engine, "t", 2, 1, "back");
    assert!(engine.get_entity("t", "e000002").unwrap().is_some());
    let again = engine.purge_partitions(&|_: &str, _: &str| false).unwrap();
    assert_eq!((again.partitions.len(), again.tables_rewritten), (0, 0));
}
