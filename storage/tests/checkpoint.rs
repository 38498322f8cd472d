//! `Engine::checkpoint`: an online backup must open as a consistent database holding every write
//! acknowledged before it began (later writes whole or absent), must stay unaffected by later
//! writes and compactions on either side, must refuse an existing destination, must fall back to
//! copying when hard links fail, and must be durable on its own (simulated power loss right
//! after it returns).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::fs::sim::SimFileSystem;
use allidb_storage::fs::{FileSystem, OsFileSystem, ReadableFile, WritableFile};
use allidb_storage::{Durability, EdgeWrite, Engine, EntityWrite, Error, Options, Result};

const TENANT: &str = "backup";
/// Out-edges every test entity is written with (one batch with its body).
const EDGES_PER_ENTITY: usize = 3;

fn options() -> Options {
    // Small memtables and tables: flushes and compactions run while checkpoints are taken.
    Options {
        memtable_bytes: 64 << 10,
        target_file_bytes: 64 << 10,
        level1_bytes: 256 << 10,
        l0_compaction_trigger: 2,
        ..Options::default()
    }
}

/// Entity `id` written for the `generation`-th time: its body and edges encode both, so a read
/// can tell which write it sees and whether that write is whole.
fn entity(id: &str, generation: u64) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vec![generation as f32; 64],
                timestamp_nanos: 1,
            }],
            importance: generation as f64,
            ..EntityBody::default()
        },
        out_edges: (0..EDGES_PER_ENTITY)
            .map(|k| EdgeWrite {
                relation: "links".to_owned(),
                other: format!("{id}-target{k}"),
                weight: generation as f64,
                timestamp_nanos: 0,
                sources: Vec::new(),
            })
            .collect(),
        in_edges: Vec::new(),
    }
}

/// The generation of `id` stored in `engine`, after checking the entity is whole (body and every
/// out-edge of one write). `None` if absent.
fn stored_generation(engine: &Engine, id: &str) -> Option<u64> {
    let entity = engine.get_entity(TENANT, id).unwrap()?;
    let generation = entity.body.importance;
    assert_eq!(
        entity.out_edges.len(),
        EDGES_PER_ENTITY,
        "{id}: a torn batch (body of generation {generation} without all its edges)"
    );
    for edge in &entity.out_edges {
        assert_eq!(
            edge.weight, generation,
            "{id}: an edge of another write than its body"
        );
    }
    assert_eq!(entity.body.embeddings[0].vector[0], generation as f32);
    Some(generation as u64)
}

/// Every entity id of the test tenant with its generation (whole-checked).
fn contents(engine: &Engine) -> BTreeMap<String, u64> {
    let ids: Vec<String> = engine
        .scan(TENANT, None, None)
        .unwrap()
        .map(|e| e.unwrap().id)
        .filter(|id| !id.contains("-target"))
        .collect();
    ids.into_iter()
        .map(|id| {
            let generation = stored_generation(engine, &id).expect("scanned ids exist");
            (id, generation)
        })
        .collect()
}

fn write_range(engine: &Engine, ids: std::ops::Range<u64>, generation: u64) {
    for i in ids {
        engine
            .put_entities(
                TENANT,
                vec![entity(&format!("e{i:05}"), generation)],
                Durability::Buffered,
            )
            .unwrap();
    }
}

#[test]
fn checkpoint_under_concurrent_writers_holds_every_write_acknowledged_before_it() {
    let root = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(root.path().join("db"), options()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    // (id, generation, when acknowledged)
    let acks: Arc<Mutex<Vec<(String, u64, Instant)>>> = Arc::default();
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let (engine, stop, acked, acks) =
                (engine.clone(), stop.clone(), acked.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut generation = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    generation += 1;
                    // 40 ids per thread, rewritten with rising generations.
                    let id = format!("t{t}-{:02}", generation % 40);
                    engine
                        .put_entities(TENANT, vec![entity(&id, generation)], Durability::Sync)
                        .unwrap();
                    acks.lock().unwrap().push((id, generation, Instant::now()));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut checkpoints = Vec::new();
    for round in 0..3u64 {
        let target = (round + 1) * 400;
        while acked.load(Ordering::Relaxed) < target {
            std::thread::sleep(Duration::from_millis(2));
        }
        let dest = root.path().join(format!("checkpoint-{round}"));
        let began = Instant::now();
        let info = engine.checkpoint(&dest).unwrap();
        assert!(info.wal_segments >= 1, "the live segment is always copied");
        checkpoints.push((dest, began, info));
    }
    // Keep writing after the last checkpoint, then stop.
    let after = acked.load(Ordering::Relaxed) + 200;
    while acked.load(Ordering::Relaxed) < after {
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        engine.stats().flushes > 0,
        "flushes should run while checkpoints are taken"
    );
    let acks = acks.lock().unwrap().clone();

    for (dest, began, info) in &checkpoints {
        let restored = Engine::open(dest, options()).unwrap();
        // Newest generation of each id acknowledged before the checkpoint began.
        let mut must_have: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, generation, at) in &acks {
            if at < began {
                let g = must_have.entry(id).or_default();
                *g = (*g).max(*generation);
            }
        }
        assert!(!must_have.is_empty());
        let found = contents(&restored);
        for (id, generation) in &must_have {
            let got = found.get(*id).copied();
            assert!(
                got.is_some_and(|g| g >= *generation),
                "{}: {id} acknowledged at generation {generation} before the checkpoint, found {got:?}",
                dest.display()
            );
        }
        for id in found.keys() {
            assert!(
                acks.iter().any(|(a, _, _)| a == id),
                "{id} was never written"
            );
        }
        assert!(restored.last_seq() >= info.covered_seq);
    }
}

#[test]
fn checkpoint_is_unaffected_by_later_writes_and_compactions_on_either_side() {
    let root = tempfile::tempdir().unwrap();
    let engine = Engine::open(root.path().join("db"), options()).unwrap();
    write_range(&engine, 0..300, 1);
    engine.flush().unwrap();
    write_range(&engine, 300..400, 1); // in the WAL and memtable only
    let dest = root.path().join("checkpoint");
    let info = engine.checkpoint(&dest).unwrap();
    assert!(info.tables_linked > 0, "flushed tables are hard-linked");
    assert_eq!(info.tables_copied, 0);
    assert!(info.table_bytes > 0 && info.wal_bytes > 0);
    let at_checkpoint = contents(&engine);
    assert_eq!(at_checkpoint.len(), 400);

    // The original moves on: overwrites, deletes, a full compaction (which removes the tables
    // the checkpoint links).
    write_range(&engine, 0..400, 2);
    for i in 0..50 {
        engine
            .delete_entity(TENANT, &format!("e{i:05}"), Durability::Buffered)
            .unwrap();
    }
    engine.compact().unwrap();

    let restored = Engine::open(&dest, options()).unwrap();
    assert_eq!(
        contents(&restored),
        at_checkpoint,
        "the checkpoint changed after it was taken"
    );
    // The restored copy moves on too; the original must not see it.
    write_range(&restored, 0..100, 3);
    restored.compact().unwrap();
    drop(restored);

    let original = contents(&engine);
    assert_eq!(original.len(), 350);
    assert!(original.values().all(|g| *g == 2));
    engine.close().unwrap();
    let reopened = Engine::open(root.path().join("db"), options()).unwrap();
    assert_eq!(contents(&reopened), original);
    let restored = Engine::open(&dest, options()).unwrap();
    let restored_contents = contents(&restored);
    assert_eq!(restored_contents.len(), 400);
    assert_eq!(restored_contents.values().filter(|g| **g == 3).count(), 100);
}

#[test]
fn checkpoint_refuses_an_existing_destination() {
    let root = tempfile::tempdir().unwrap();
    let engine = Engine::open(root.path().join("db"), options()).unwrap();
    write_range(&engine, 0..10, 1);
    let dest = root.path().join("taken");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep-me"), b"operator data").unwrap();
    let err = engine.checkpoint(&dest).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "got {err}");
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["keep-me"],
        "nothing written into an existing directory"
    );
    // A checkpoint over a previous checkpoint is refused too.
    let first = root.path().join("first");
    engine.checkpoint(&first).unwrap();
    assert!(matches!(
        engine.checkpoint(&first),
        Err(Error::InvalidArgument(_))
    ));
    engine.close().unwrap();
    assert!(matches!(
        engine.checkpoint(&root.path().join("after-close")),
        Err(Error::Unavailable(_))
    ));
}

/// The real file system, except that hard links fail as they do across devices.
#[derive(Debug)]
struct NoHardLinks;

impl FileSystem for NoHardLinks {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        OsFileSystem.create(path)
    }
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        OsFileSystem.open_append(path)
    }
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        OsFileSystem.open_read(path)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        OsFileSystem.read(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        OsFileSystem.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        OsFileSystem.rename(from, to)
    }
    fn remove(&self, path: &Path) -> Result<()> {
        OsFileSystem.remove(path)
    }
    fn available_space(&self, dir: &Path) -> Result<Option<u64>> {
        OsFileSystem.available_space(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        OsFileSystem.exists(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        OsFileSystem.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        OsFileSystem.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        OsFileSystem.sync_dir(dir)
    }
    fn hard_link(&self, from: &Path, _to: &Path) -> Result<()> {
        Err(Error::io(
            from,
            std::io::Error::from(std::io::ErrorKind::CrossesDevices),
        ))
    }
    fn lock_exclusive(&self, path: &Path) -> Result<allidb_storage::fs::LockGuard> {
        OsFileSystem.lock_exclusive(path)
    }
}

#[test]
fn checkpoint_copies_tables_when_hard_links_fail() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    let engine = Engine::open_with_fs(Arc::new(NoHardLinks), &db, options()).unwrap();
    write_range(&engine, 0..200, 1);
    engine.flush().unwrap();
    let dest = root.path().join("copy");
    let info = engine.checkpoint(&dest).unwrap();
    assert_eq!(info.tables_linked, 0);
    assert!(info.tables_copied > 0);
    let expected = contents(&engine);
    drop(engine);
    // Removing the original proves the copy shares nothing with it.
    std::fs::remove_dir_all(&db).unwrap();
    let restored = Engine::open(&dest, options()).unwrap();
    assert_eq!(contents(&restored), expected);
}

#[test]
fn checkpoint_survives_power_loss_right_after_it_returns() {
    let fs = SimFileSystem::new();
    let db = PathBuf::from("/data/db");
    let dest = PathBuf::from("/backups/b1");
    fs.create_dir_all(Path::new("/backups")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let engine = Engine::open_with_fs(Arc::new(fs.clone()), &db, options()).unwrap();
    write_range(&engine, 0..200, 1);
    engine.flush().unwrap();
    // Acknowledged but never synced in the source: the checkpoint must have made its copy durable.
    write_range(&engine, 200..300, 1);
    let info = engine.checkpoint(&dest).unwrap();
    assert!(info.tables_linked > 0 && info.wal_segments > 0);
    let expected = contents(&engine);
    assert_eq!(expected.len(), 300);
    fs.crash();
    drop(engine);

    let restored = Engine::open_with_fs(Arc::new(fs.clone()), &dest, options()).unwrap();
    assert_eq!(contents(&restored), expected);
}

#[test]
fn checkpoint_keeps_tenant_drops() {
    let root = tempfile::tempdir().unwrap();
    let engine = Engine::open(root.path().join("db"), options()).unwrap();
    write_range(&engine, 0..50, 1);
    engine.flush().unwrap();
    // The dropped cells stay in the flushed tables until a compaction rewrites them: only the
    // drop record hides them, so a checkpoint without it would bring the tenant back.
    engine.drop_tenant(TENANT, engine.clock().now()).unwrap();
    assert!(engine.get_entity(TENANT, "e00001").unwrap().is_none());
    let dest = root.path().join("copy");
    let info = engine.checkpoint(&dest).unwrap();
    assert_eq!(info.tenant_drops, 1);
    let copy = Engine::open(&dest, options()).unwrap();
    assert!(
        copy.get_entity(TENANT, "e00001").unwrap().is_none(),
        "a dropped tenant stays dropped in the checkpoint"
    );
    assert_eq!(
        copy.tenant_drops().get(TENANT),
        engine.tenant_drops().get(TENANT)
    );
    copy.close().unwrap();
    engine.close().unwrap();
}
