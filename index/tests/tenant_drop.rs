//! Dropping a tenant through the unified store: gone for every read at once, other tenants
//! untouched, a new dimension accepted afterwards, nothing of it back after a restart, and no
//! file under the data directory holding its ids or chunk texts once compacted.

use std::path::Path;

use allidb_index::graph::TraversalOptions;
use allidb_index::query::QueryPlan;
use allidb_index::{QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{Embedding, EntityBody, TextChunk};
use allidb_storage::{Durability, Edge, EdgeWrite, EntityWrite};

fn entity(id: &str, vector: Vec<f32>, chunk: &str) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: "doc".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector,
                timestamp_nanos: 0,
            }],
            chunks: vec![TextChunk {
                chunk_id: "c0".to_owned(),
                text: chunk.to_owned(),
                metadata: Default::default(),
                sources: Vec::new(),
            }],
            ..EntityBody::default()
        },
        out_edges: Vec::new(),
        in_edges: Vec::new(),
    }
}

/// `count` entities `{prefix}{i}` of dimension `dim`, each with the chunk text `{chunk}-{i}`.
fn put(store: &UnifiedStore, tenant: &str, prefix: &str, dim: usize, count: usize, chunk: &str) {
    let writes = (0..count)
        .map(|i| {
            let vector = (0..dim).map(|d| ((i * 7 + d) % 11) as f32 + 1.0).collect();
            entity(&format!("{prefix}{i:04}"), vector, &format!("{chunk}-{i}"))
        })
        .collect();
    store
        .put_entities(tenant, writes, Durability::Sync)
        .unwrap();
}

fn ids(store: &UnifiedStore, tenant: &str) -> Vec<String> {
    store
        .scan(tenant, None, None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn query_ids(store: &UnifiedStore, tenant: &str, vector: Vec<f32>) -> Vec<String> {
    let request = QueryRequest {
        vector,
        plan: QueryPlan {
            k: 5,
            ..QueryPlan::default()
        },
        ..QueryRequest::default()
    };
    store
        .query(tenant, &request)
        .unwrap()
        .into_iter()
        .map(|hit| hit.result.entity_id.to_string())
        .collect()
}

/// Files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn a_dropped_tenant_is_gone_everywhere_and_takes_a_new_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    // The README walkthrough's 3-d vectors, with edges, in `default`; another tenant beside it.
    put(&store, "default", "walk-", 3, 40, "walkthrough-chunk");
    store
        .add_edges(
            "default",
            &[Edge {
                from: "walk-0001".into(),
                relation: "rel".into(),
                to: "walk-0002".into(),
                weight: 1.0,
                timestamp_nanos: 0,
                sources: Vec::new(),
            }],
            Durability::Sync,
        )
        .unwrap();
    put(&store, "other", "keep-", 8, 30, "other-chunk");
    let other_before: Vec<_> = store.scan("other", None, None, usize::MAX).unwrap();
    let stats = store
        .tenant_stats("default")
        .unwrap()
        .expect("default has data");
    assert_eq!(
        (stats.entities, stats.vectors, stats.dimension),
        (40, 40, Some(3))
    );
    assert!(stats.bytes > 0);

    // A 384-d vector is refused while 3-d vectors exist, naming how to change it.
    let refused = store
        .put_entities(
            "default",
            vec![entity("big", vec![0.5; 384], "x")],
            Durability::Sync,
        )
        .unwrap_err();
    assert!(
        refused.to_string().contains("expected 3, got 384"),
        "{refused}"
    );

    let dropped = store.drop_tenant("default").unwrap();
    assert_eq!((dropped.entities, dropped.vectors), (40, 40));
    assert!(ids(&store, "default").is_empty());
    assert!(store.get_entity("default", "walk-0001").unwrap().is_none());
    assert!(query_ids(&store, "default", vec![1.0, 2.0, 3.0]).is_empty());
    assert_eq!(store.tenant_stats("default").unwrap(), None);
    assert!(
        store
            .tenants()
            .unwrap()
            .iter()
            .all(|t| t.tenant != "default")
    );

    // The newcomer path: 384-d vectors into the same tenant are accepted and found.
    put(&store, "default", "real-", 384, 20, "after-the-drop");
    let mut expected: Vec<String> = (0..20).map(|i| format!("real-{i:04}")).collect();
    assert_eq!(ids(&store, "default"), expected);
    let probe: Vec<f32> = (0..384).map(|d| ((3 * 7 + d) % 11) as f32 + 1.0).collect();
    assert_eq!(query_ids(&store, "default", probe.clone())[0], "real-0003");
    let stats = store.tenant_stats("default").unwrap().unwrap();
    assert_eq!((stats.entities, stats.dimension), (20, Some(384)));
    let other_after: Vec<_> = store.scan("other", None, None, usize::MAX).unwrap();
    assert_eq!(other_after, other_before, "another tenant untouched");

    // Nothing dropped comes back after a restart, from storage or from an index dump.
    store.close().unwrap();
    std::mem::drop(store);
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(ids(&store, "default"), expected);
    assert_eq!(query_ids(&store, "default", probe)[0], "real-0003");
    assert!(store.get_entity("default", "walk-0001").unwrap().is_none());

    // Once dumped and compacted, no file holds a dropped id or chunk text; the kept ones are
    // there (the search can find what it looks for).
    store.dump_indexes().unwrap();
    store.engine().compact().unwrap();
    expected.sort();
    assert!(!files_holding(dir.path(), "after-the-drop-7").is_empty());
    assert!(!files_holding(dir.path(), "other-chunk-3").is_empty());
    assert_eq!(
        files_holding(dir.path(), "walkthrough-chunk"),
        Vec::<String>::new()
    );
    assert_eq!(files_holding(dir.path(), "walk-0001"), Vec::<String>::new());
}

#[test]
fn a_tenant_whose_vectors_are_all_deleted_takes_a_new_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    put(&store, "default", "walk-", 3, 5, "walkthrough-chunk");
    let refused = store
        .put_entities(
            "default",
            vec![entity("big", vec![0.5; 4], "x")],
            Durability::Sync,
        )
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("expected 3, got 4") && refused.contains("allidb tenant drop default"),
        "{refused}"
    );
    // Mixed dimensions in one request are refused whatever the tenant holds.
    let mixed = store
        .put_entities(
            "fresh",
            vec![
                entity("a", vec![1.0; 4], "x"),
                entity("b", vec![1.0; 5], "y"),
            ],
            Durability::Sync,
        )
        .unwrap_err();
    assert!(mixed.to_string().contains("expected 4, got 5"), "{mixed}");

    for i in 0..5 {
        assert!(
            store
                .delete_entity("default", &format!("walk-{i:04}"), Durability::Sync)
                .unwrap()
        );
    }
    put(&store, "default", "four-", 4, 3, "four");
    assert_eq!(
        query_ids(&store, "default", vec![1.0, 2.0, 3.0, 4.0]).len(),
        3,
        "the 4-d vectors are indexed and searchable"
    );
    assert_eq!(
        store.tenant_stats("default").unwrap().unwrap().dimension,
        Some(4)
    );
    // Once vectors of the new dimension exist, the old one is refused in turn.
    let back = store
        .put_entities(
            "default",
            vec![entity("old", vec![1.0; 3], "x")],
            Durability::Sync,
        )
        .unwrap_err();
    assert!(back.to_string().contains("expected 4, got 3"), "{back}");
    assert_eq!(store.index_apply_errors(), 0);
}

/// On a ring a replica may get a drop after writes made later than it (they reached it first),
/// or get the same drop twice (a hint delivered again).
#[test]
fn a_late_drop_keeps_later_writes_indexed_and_a_repeated_drop_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    put(&store, "t", "old-", 3, 3, "old");
    let dropped_at = store.engine().clock().now();
    put(&store, "t", "new-", 3, 2, "new");
    let new_ids = vec!["new-0000".to_owned(), "new-0001".to_owned()];

    let dropped = store.drop_tenant_at("t", dropped_at).unwrap();
    assert_eq!((dropped.entities, dropped.vectors), (3, 3));
    assert_eq!(ids(&store, "t"), new_ids);
    let mut found = query_ids(&store, "t", vec![1.0, 2.0, 3.0]);
    found.sort();
    assert_eq!(found, new_ids, "the later writes are still indexed");
    let stats = store.tenant_stats("t").unwrap().unwrap();
    assert_eq!((stats.entities, stats.vectors), (2, 2));
    // The tenant was re-indexed from storage: it still knows its dimension.
    let refused = store
        .put_entities("t", vec![entity("x", vec![1.0; 4], "x")], Durability::Sync)
        .unwrap_err();
    assert!(
        refused.to_string().contains("expected 3, got 4"),
        "{refused}"
    );

    for again in [dropped_at, dropped_at - 1] {
        let repeated = store.drop_tenant_at("t", again).unwrap();
        assert_eq!((repeated.ts, repeated.entities), (dropped_at, 0));
        assert_eq!(
            query_ids(&store, "t", vec![1.0, 2.0, 3.0]).len(),
            2,
            "a drop not newer than the last one changes nothing"
        );
    }
    assert_eq!(store.index_apply_errors(), 0);
}

/// The cells of `id` as `store` holds them, to be written into another store as a replica
/// would receive them.
fn stored_cells(store: &UnifiedStore, tenant: &str, id: &str, batch: &mut WriteBatch) {
    for (key, ts, value) in store.engine().partition_cells(tenant, id).unwrap() {
        match value {
            Some(value) => batch.put(key, ts, value),
            None => batch.delete(key, ts),
        }
    }
}

/// On a ring a replica can be sent a stored vector of another dimension than its tenant's index
/// holds (replicas that diverged): it is stored, the rest of its batch is indexed all the same,
/// the entity is counted as unindexed, and it is indexed once the old dimension's vectors are
/// gone.
#[test]
fn a_replicated_vector_of_another_dimension_is_counted_and_hides_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    put(&store, "t", "old-", 2, 3, "old");

    // What two other replicas stored: `a-new0000` with a 3-d vector, and `b-mate` (2-d) with
    // an edge to `old-0000`. The 3-d entity sorts first in the batch.
    let three = tempfile::tempdir().unwrap();
    let three = UnifiedStore::open(three.path(), StoreOptions::default()).unwrap();
    put(&three, "t", "a-new", 3, 1, "new");
    let two = tempfile::tempdir().unwrap();
    let two = UnifiedStore::open(two.path(), StoreOptions::default()).unwrap();
    let mut mate = entity("b-mate", vec![1.0, 1.0], "mate");
    mate.out_edges.push(EdgeWrite {
        relation: "cites".to_owned(),
        other: "old-0000".to_owned(),
        weight: 1.0,
        timestamp_nanos: 0,
        sources: Vec::new(),
    });
    two.put_entities("t", vec![mate], Durability::Sync).unwrap();
    let mut batch = WriteBatch::new();
    stored_cells(&three, "t", "a-new0000", &mut batch);
    stored_cells(&two, "t", "b-mate", &mut batch);
    store.engine().write(batch, Durability::Sync).unwrap();

    assert!(ids(&store, "t").contains(&"a-new0000".to_owned()), "stored");
    assert_eq!(store.unindexed_vectors(), 1, "the 3-d entity is counted");
    assert!(
        query_ids(&store, "t", vec![1.0, 1.0]).contains(&"b-mate".to_owned()),
        "the rest of the batch is indexed"
    );
    let (reached, _) = store
        .traverse(
            "t",
            &["b-mate".to_owned()],
            &TraversalOptions::default(),
            false,
        )
        .unwrap();
    assert!(
        reached
            .iter()
            .any(|hit| &*hit.reached.entity_id == "old-0000"),
        "the rest of the batch's edges are indexed"
    );
    assert_eq!(store.index_apply_errors(), 0);

    for id in ["old-0000", "old-0001", "old-0002", "b-mate"] {
        store.delete_entity("t", id, Durability::Sync).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.unindexed_vectors() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the indexer never indexed the 3-d vector once the 2-d ones were gone"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        query_ids(&store, "t", vec![1.0, 2.0, 3.0]),
        vec!["a-new0000".to_owned()]
    );
    assert_eq!(store.tenant_stats("t").unwrap().unwrap().dimension, Some(3));
}
