//! `UnifiedStore::checkpoint`: the copy opens as a store with every entity, vector and edge
//! written before it (from its index dump, caught up), the store's own last dump is linked
//! rather than written again and the writes after it are caught up from the WAL kept for it,
//! the source keeps working, and bad targets are refused with the right error and nothing
//! written.

use std::path::Path;

use allidb_index::graph::TraversalOptions;
use allidb_index::query::QueryPlan;
use allidb_index::store::IndexRecovery;
use allidb_index::{Error, QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, EdgeWrite, EntityWrite};

const TENANT: &str = "acme";
const ENTITIES: usize = 60;

fn vector_of(i: usize) -> Vec<f32> {
    (0..8).map(|d| ((i * 8 + d) as f32 * 0.37).sin()).collect()
}

fn entity(i: usize) -> EntityWrite {
    EntityWrite {
        id: format!("doc-{i:03}"),
        body: EntityBody {
            entity_type: "doc".into(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vector_of(i),
                timestamp_nanos: 0,
            }],
            ..EntityBody::default()
        },
        out_edges: vec![EdgeWrite {
            relation: "next".into(),
            other: format!("doc-{:03}", (i + 1) % ENTITIES),
            weight: 1.0,
            timestamp_nanos: 0,
            sources: Vec::new(),
        }],
        in_edges: vec![],
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: allidb_storage::Options {
            memtable_bytes: 64 << 10,
            ..Default::default()
        },
        ..StoreOptions::default()
    }
}

fn nearest(store: &UnifiedStore, vector: Vec<f32>) -> String {
    let mut plan = QueryPlan {
        k: 1,
        ..QueryPlan::default()
    };
    plan.traversal.max_hops = 0;
    let hits = store
        .query(
            TENANT,
            &QueryRequest {
                vector,
                plan,
                ..QueryRequest::default()
            },
        )
        .unwrap();
    hits[0].result.entity_id.to_string()
}

fn assert_has_everything(store: &UnifiedStore, count: usize) {
    for i in 0..count {
        let id = format!("doc-{i:03}");
        let stored = store.get_entity(TENANT, &id).unwrap();
        assert!(stored.is_some(), "{id} is missing");
        assert_eq!(nearest(store, vector_of(i)), id);
    }
    let reached = store
        .traverse(
            TENANT,
            &["doc-000".to_owned()],
            &TraversalOptions {
                max_hops: 1,
                ..TraversalOptions::default()
            },
            false,
        )
        .unwrap()
        .0;
    assert!(reached.iter().any(|r| &*r.reached.entity_id == "doc-001"));
}

#[test]
fn a_checkpoint_opens_with_everything_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path().join("data"), options()).unwrap();
    for i in 0..ENTITIES {
        store
            .put_entities(TENANT, vec![entity(i)], Durability::Sync)
            .unwrap();
    }
    let target = dir.path().join("backups/first");
    let checkpoint = store.checkpoint(&target).unwrap();
    assert!(checkpoint.index_covered_seq <= checkpoint.engine.covered_seq);
    assert!(checkpoint.engine.covered_seq >= ENTITIES as u64);
    assert_eq!(checkpoint.index_tenants, 1);
    assert!(target.join("index/CURRENT").exists());
    assert!(target.join("lsm/CURRENT").exists());

    // The source keeps serving; its later writes do not reach the checkpoint.
    store
        .put_entities(TENANT, vec![entity(ENTITIES)], Durability::Sync)
        .unwrap();
    store.close().unwrap();

    let restored = UnifiedStore::open(&target, options()).unwrap();
    assert_has_everything(&restored, ENTITIES);
    let later = format!("doc-{ENTITIES:03}");
    assert!(restored.get_entity(TENANT, &later).unwrap().is_none());
}

/// The checkpoint takes the store's last index dump as it is (hard links, no dump of its own),
/// with the WAL the store keeps for it: entities written after that dump, here already flushed
/// into tables so that only the kept WAL segments name them, are caught up on open (not
/// rebuilt, not missing from the indexes).
#[test]
fn a_checkpoint_links_the_last_dump_and_catches_up_the_writes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = UnifiedStore::open(&data, options()).unwrap();
    let dumped_part = ENTITIES / 2;
    for i in 0..dumped_part {
        store
            .put_entities(TENANT, vec![entity(i)], Durability::Sync)
            .unwrap();
    }
    let dumped = store.dump_indexes().unwrap();
    for i in dumped_part..ENTITIES {
        store
            .put_entities(TENANT, vec![entity(i)], Durability::Sync)
            .unwrap();
    }
    store.engine().flush().unwrap();
    let target = dir.path().join("backups/linked");
    let checkpoint = store.checkpoint(&target).unwrap();
    assert!(checkpoint.index_dump_linked, "{checkpoint:?}");
    assert_eq!(checkpoint.index_covered_seq, dumped);
    assert!(checkpoint.engine.covered_seq > dumped, "{checkpoint:?}");
    assert!(
        checkpoint.engine.retained_wal_segments > 0,
        "{checkpoint:?}"
    );
    let meta = format!("index/dump-{dumped:012}/META");
    let inode = |path: std::path::PathBuf| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    };
    assert_eq!(inode(data.join(&meta)), inode(target.join(&meta)), "linked");
    // The source's dump at close replaces (deletes) the linked one; the checkpoint keeps it.
    store.close().unwrap();

    let restored = UnifiedStore::open(&target, options()).unwrap();
    match restored.recovery() {
        Some(IndexRecovery::CaughtUp {
            covered, entities, ..
        }) => {
            assert_eq!(covered, dumped);
            assert!(entities >= ENTITIES - dumped_part, "{entities} caught up");
        }
        other => panic!("expected a catch-up from the linked dump, got {other:?}"),
    }
    assert_has_everything(&restored, ENTITIES);
}

#[test]
fn an_empty_existing_directory_is_a_valid_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path().join("data"), options()).unwrap();
    store
        .put_entities(TENANT, vec![entity(0)], Durability::Sync)
        .unwrap();
    let target = dir.path().join("empty");
    std::fs::create_dir(&target).unwrap();
    store.checkpoint(&target).unwrap();
    drop(store);
    let restored = UnifiedStore::open(&target, options()).unwrap();
    assert!(restored.get_entity(TENANT, "doc-000").unwrap().is_some());
}

fn assert_untouched(path: &Path, expected_entries: usize) {
    if expected_entries == usize::MAX {
        assert!(!path.exists(), "{} was created", path.display());
    } else {
        assert_eq!(std::fs::read_dir(path).unwrap().count(), expected_entries);
    }
}

#[test]
fn bad_targets_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = UnifiedStore::open(&data, options()).unwrap();

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("something"), b"x").unwrap();
    let err = store.checkpoint(&full).unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("not empty")),
        "{err}"
    );
    assert_untouched(&full, 1);

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = store.checkpoint(&file).unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("not a directory")),
        "{err}"
    );

    let inside = data.join("backup");
    let err = store.checkpoint(&inside).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("inside the data directory")),
        "{err}"
    );
    assert_untouched(&inside, usize::MAX);

    let sneaky = dir.path().join("x/../data/backup");
    let err = store.checkpoint(&sneaky).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("..")),
        "{err}"
    );
    assert_untouched(&dir.path().join("x"), usize::MAX);
}
