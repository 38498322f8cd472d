//! Entity expiry in the unified store (issue 39, TTL): an entity whose expiry time passes
//! disappears from every read (get, scan, vector and text queries, their context, traversal),
//! leaves every index (the expiry sweep), stays gone across a restart, and a put after the
//! expiry brings the id back as a new entity.

use std::time::{Duration, Instant};

use allidb_index::graph::TraversalOptions;
use allidb_index::query::QueryPlan;
use allidb_index::{QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody, TextChunk};
use allidb_storage::hlc::wall_nanos;
use allidb_storage::{Durability, EdgeWrite, EntityWrite};

const TENANT: &str = "t";

fn entity(
    id: &str,
    vector: [f32; 3],
    text: &str,
    expires_at_nanos: i64,
    to: &[&str],
) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: "note".to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vector.to_vec(),
                timestamp_nanos: 0,
            }],
            chunks: vec![TextChunk {
                chunk_id: "c".to_owned(),
                text: text.to_owned(),
                ..TextChunk::default()
            }],
            expires_at_nanos,
            ..EntityBody::default()
        },
        out_edges: to
            .iter()
            .map(|other| EdgeWrite {
                relation: "rel".to_owned(),
                other: (*other).to_owned(),
                weight: 1.0,
                timestamp_nanos: 0,
                sources: Vec::new(),
            })
            .collect(),
        in_edges: Vec::new(),
    }
}

/// Every id each read path returns, in a fixed order of paths.
fn seen(store: &UnifiedStore) -> Vec<Vec<String>> {
    let ids = |hits: Vec<String>| {
        let mut hits = hits;
        hits.sort();
        hits
    };
    let get = ["a", "b", "c"]
        .iter()
        .filter(|id| store.get_entity(TENANT, id).unwrap().is_some())
        .map(|id| (*id).to_owned())
        .collect();
    let scan = store
        .scan(TENANT, None, None, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut plan = QueryPlan {
        k: 10,
        keep_walk: true,
        ..QueryPlan::default()
    };
    plan.traversal.max_hops = 2;
    let request = QueryRequest {
        vector: vec![1.0, 0.0, 0.0],
        plan: plan.clone(),
        include_entities: true,
        ..QueryRequest::default()
    };
    let reply = store.query_with_context(TENANT, &request, true).unwrap();
    let query = reply
        .hits
        .iter()
        .map(|h| h.result.entity_id.to_string())
        .collect();
    let context = reply
        .context
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.reached.entity_id.to_string())
        .collect();
    let text_request = QueryRequest {
        vector: Vec::new(),
        text: Some("ephemeral".to_owned()),
        plan,
        ..QueryRequest::default()
    };
    let text = store
        .query(TENANT, &text_request)
        .unwrap()
        .iter()
        .map(|h| h.result.entity_id.to_string())
        .collect();
    let lexical = store
        .lexical_search(TENANT, "ephemeral", 10)
        .unwrap()
        .into_iter()
        .map(|h| h.entity_id.to_string())
        .collect();
    let (reached, _) = store
        .traverse(
            TENANT,
            &["b".to_owned()],
            &TraversalOptions::default(),
            true,
        )
        .unwrap();
    let traversal = reached
        .iter()
        .map(|h| h.reached.entity_id.to_string())
        .collect();
    vec![
        ids(get),
        ids(scan),
        ids(query),
        ids(context),
        ids(text),
        ids(lexical),
        ids(traversal),
    ]
}

#[test]
fn an_expired_entity_leaves_every_read_and_index_and_stays_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    let expires_at = wall_nanos() + 1_500_000_000;
    let writes = vec![
        entity(
            "a",
            [1.0, 0.0, 0.0],
            "an ephemeral note",
            expires_at,
            &["b"],
        ),
        entity("b", [0.9, 0.1, 0.0], "a lasting note", 0, &["a", "c"]),
        entity("c", [0.0, 1.0, 0.0], "another lasting note", 0, &[]),
    ];
    store
        .put_entities(TENANT, writes, Durability::Sync)
        .unwrap();
    let all = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let before = seen(&store);
    assert_eq!(before[0], all(&["a", "b", "c"]), "get");
    for (path, ids) in before.iter().enumerate() {
        assert!(
            ids.contains(&"a".to_owned()),
            "path {path} finds a: {ids:?}"
        );
    }

    let left = Duration::from_nanos(u64::try_from(expires_at - wall_nanos()).unwrap());
    std::thread::sleep(left);
    let after = seen(&store);
    for (path, ids) in after.iter().enumerate() {
        assert!(
            !ids.contains(&"a".to_owned()),
            "path {path} still finds a: {ids:?}"
        );
    }
    assert_eq!(after[0], all(&["b", "c"]), "the others stay");
    assert_eq!(after[6], all(&["b", "c"]), "the walk goes on past a");

    // The sweep removes it from every index and shadows it in storage.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = store.tenant_stats(TENANT).unwrap().unwrap();
        if stats.entities == 2 && stats.vectors == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never swept: {stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stored = store.engine().read_partition(TENANT, "a").unwrap();
    assert!(stored.body.is_none(), "the expiry is stored");
    assert!(
        store
            .lexical_documents(TENANT)
            .iter()
            .all(|(id, _)| id != "a")
    );

    // Across a restart (the indexes from their dump) it stays gone.
    store.close().unwrap();
    drop(store);
    let store = UnifiedStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(seen(&store)[0], all(&["b", "c"]));
    assert_eq!(store.tenant_stats(TENANT).unwrap().unwrap().entities, 2);

    // A put after the expiry makes a new entity of the id.
    let again = entity("a", [1.0, 0.0, 0.0], "an ephemeral note again", 0, &[]);
    store
        .put_entities(TENANT, vec![again], Durability::Sync)
        .unwrap();
    assert!(seen(&store).iter().all(|ids| ids.contains(&"a".to_owned())));
}
