//! The unified store end to end (engine + indexes): freshness, updates, deletes, filters against
//! brute force, tenant isolation, and identical results across a restart (with and without a
//! usable index dump).

use std::collections::BTreeMap;

use allidb_index::graph::{Direction, TraversalOptions};
use allidb_index::query::QueryPlan;
use allidb_index::{Filter, QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, Edge, EdgeWrite, EntityWrite};
use rand::{Rng, SeedableRng};

const DIM: usize = 16;

fn options() -> StoreOptions {
    StoreOptions {
        engine: allidb_storage::Options {
            memtable_bytes: 256 << 10,
            ..Default::default()
        },
        ..StoreOptions::default()
    }
}

fn vector(rng: &mut impl Rng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn entity(id: &str, v: Vec<f32>, kind: &str, color: &str, edges: &[(&str, f64)]) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: kind.to_owned(),
            embeddings: vec![Embedding {
                version: 1,
                vector: v,
                timestamp_nanos: 0,
            }],
            attributes: BTreeMap::from([("color".to_owned(), color.to_owned())]),
            ..EntityBody::default()
        },
        out_edges: edges
            .iter()
            .map(|(to, w)| EdgeWrite {
                relation: "rel".into(),
                other: (*to).into(),
                weight: *w,
                timestamp_nanos: 0,
                sources: Vec::new(),
            })
            .collect(),
        in_edges: vec![],
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn no_expansion(k: usize) -> QueryPlan {
    let mut plan = QueryPlan {
        k,
        ..QueryPlan::default()
    };
    plan.traversal.max_hops = 0;
    plan
}

fn ids(store: &UnifiedStore, tenant: &str, request: &QueryRequest) -> Vec<String> {
    store
        .query(tenant, request)
        .unwrap()
        .into_iter()
        .map(|h| h.result.entity_id.to_string())
        .collect()
}

/// Exact top-k by cosine among `live` passing `keep`.
fn brute_force(
    live: &BTreeMap<String, (Vec<f32>, String)>,
    q: &[f32],
    k: usize,
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut all: Vec<(f32, &String)> = live
        .iter()
        .filter(|(_, (_, c))| keep(c))
        .map(|(id, (v, _))| (cosine(q, v), id))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    all.into_iter().take(k).map(|(_, id)| id.clone()).collect()
}

#[test]
fn writes_updates_deletes_and_filters_match_brute_force_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut live: BTreeMap<String, (Vec<f32>, String)> = BTreeMap::new();
    let colors = ["red", "green", "blue", "rare"];
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    for chunk in 0..10 {
        let writes: Vec<EntityWrite> = (0..100)
            .map(|i| {
                let id = format!("e{:04}", chunk * 100 + i);
                let color = if i == 0 { "rare" } else { colors[i % 3] };
                let v = vector(&mut rng);
                live.insert(id.clone(), (v.clone(), color.to_owned()));
                entity(&id, v, "doc", color, &[])
            })
            .collect();
        store
            .put_entities("acme", writes, Durability::Sync)
            .unwrap();
    }
    // Updates and deletes, visible at once (nothing indexed in HNSW yet for some of them).
    for i in (0..1000).step_by(7) {
        let id = format!("e{i:04}");
        let v = vector(&mut rng);
        let color = live[&id].1.clone();
        live.insert(id.clone(), (v.clone(), color.clone()));
        store
            .put_entities(
                "acme",
                vec![entity(&id, v, "doc", &color, &[])],
                Durability::Sync,
            )
            .unwrap();
    }
    for i in (3..1000).step_by(11) {
        let id = format!("e{i:04}");
        assert!(store.delete_entity("acme", &id, Durability::Sync).unwrap());
        live.remove(&id);
    }
    let queries: Vec<Vec<f32>> = (0..20).map(|_| vector(&mut rng)).collect();
    let check = |store: &UnifiedStore, label: &str| {
        let mut hits = 0;
        let mut total = 0;
        for q in &queries {
            let request = QueryRequest {
                vector: q.clone(),
                plan: no_expansion(10),
                ..Default::default()
            };
            let got = ids(store, "acme", &request);
            let want = brute_force(&live, q, 10, |_| true);
            hits += got.iter().filter(|id| want.contains(id)).count();
            total += want.len();
            for id in &got {
                assert!(
                    live.contains_key(id),
                    "{label}: deleted entity {id} returned"
                );
            }
            // A selective filter is answered exactly.
            let rare = QueryRequest {
                vector: q.clone(),
                plan: no_expansion(5),
                filter: Filter {
                    attributes: BTreeMap::from([("color".into(), "rare".into())]),
                    ..Default::default()
                },
                include_entities: true,
                ..QueryRequest::default()
            };
            let got = ids(store, "acme", &rare);
            assert_eq!(
                got,
                brute_force(&live, q, 5, |c| c == "rare"),
                "{label}: filtered results"
            );
        }
        let recall = hits as f64 / total as f64;
        assert!(recall >= 0.95, "{label}: recall {recall}");
    };
    check(&store, "fresh (tail)");
    store.index_all_pending();
    check(&store, "indexed");
    let before: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            ids(
                &store,
                "acme",
                &QueryRequest {
                    vector: q.clone(),
                    plan: no_expansion(10),
                    ..Default::default()
                },
            )
        })
        .collect();
    store.close().unwrap();
    drop(store);

    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    check(&store, "after restart");
    let after: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            ids(
                &store,
                "acme",
                &QueryRequest {
                    vector: q.clone(),
                    plan: no_expansion(10),
                    ..Default::default()
                },
            )
        })
        .collect();
    assert_eq!(
        before, after,
        "results identical before and after a restart"
    );
    drop(store);

    // A damaged dump is rebuilt from storage, never a failed start.
    for entry in walk(&dir.path().join("index")) {
        if entry.file_name().is_some_and(|n| n == "facts") {
            std::fs::write(&entry, b"garbage").unwrap();
        }
    }
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    check(&store, "after rebuild");
    drop(store);

    // The engine's dump holds the only copy of the indexed vectors: damaged, it cannot be
    // repaired from slots.bin, so the store rebuilds from storage. A slots.bin of the older
    // format (AVSLOT01, vectors stored twice) is rejected as a format mismatch, likewise.
    type Damage = fn(&std::path::Path);
    let damages: [(&str, &str, Damage); 2] = [
        ("flat_hnsw.bin", "damaged engine dump", |path| {
            let mut bytes = std::fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x5A;
            std::fs::write(path, bytes).unwrap();
        }),
        ("slots.bin", "old slots.bin format", |path| {
            let mut bytes = std::fs::read(path).unwrap();
            bytes[..8].copy_from_slice(b"AVSLOT01");
            std::fs::write(path, bytes).unwrap();
        }),
    ];
    for (file, label, damage) in damages {
        let damaged: Vec<_> = walk(&dir.path().join("index"))
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|n| n == file))
            .collect();
        assert_eq!(damaged.len(), 1, "{label}: one tenant, one {file}");
        damage(&damaged[0]);
        let store = UnifiedStore::open(dir.path(), options()).unwrap();
        check(&store, label);
        drop(store);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn tenants_never_see_or_rank_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    let q = vec![1.0; DIM];
    store
        .put_entities(
            "a",
            vec![entity("same", q.clone(), "doc", "red", &[("other", 1.0)])],
            Durability::Sync,
        )
        .unwrap();
    store
        .put_entities(
            "a",
            vec![entity("other", q.clone(), "doc", "red", &[])],
            Durability::Sync,
        )
        .unwrap();
    let mut far = vec![-1.0; DIM];
    far[0] = 1.0;
    store
        .put_entities(
            "b",
            vec![entity("same", far.clone(), "doc", "red", &[])],
            Durability::Sync,
        )
        .unwrap();
    let request = QueryRequest {
        vector: q.clone(),
        include_entities: true,
        ..Default::default()
    };
    let a = store.query("a", &request).unwrap();
    assert_eq!(a.len(), 2);
    let b = store.query("b", &request).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].entity.as_ref().unwrap().body.embeddings[0].vector,
        far,
        "b sees its own 'same'"
    );
    assert!(store.query("c", &request).unwrap().is_empty());
    let t = TraversalOptions {
        direction: Direction::Both,
        ..Default::default()
    };
    let (reached, _) = store
        .traverse("b", &["same".to_owned()], &t, false)
        .unwrap();
    assert_eq!(
        reached.len(),
        1,
        "b's 'same' has no edges; a's edges are invisible"
    );
    assert_eq!(store.scan("b", None, None, 100).unwrap().len(), 1);
    // Dimension is per tenant.
    store
        .put_entities(
            "c",
            vec![entity("x", vec![1.0, 2.0], "doc", "red", &[])],
            Durability::Sync,
        )
        .unwrap();
    assert!(
        store
            .put_entities(
                "c",
                vec![entity("y", vec![1.0; 3], "doc", "red", &[])],
                Durability::Sync
            )
            .is_err()
    );
}

#[test]
fn graph_expansion_scores_neighbours_with_their_own_similarity() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    let mut q = vec![0.0; DIM];
    q[0] = 1.0;
    let mut orth = vec![0.0; DIM];
    orth[1] = 1.0;
    store
        .put_entities(
            "t",
            vec![
                entity("seed", q.clone(), "doc", "red", &[("n1", 0.5)]),
                entity("n1", orth.clone(), "doc", "red", &[]),
            ],
            Durability::Sync,
        )
        .unwrap();
    // Only one ANN seed (k=1, expand 1): n1 is reached by the graph, scored with cosine 0.
    let plan = QueryPlan {
        k: 2,
        expand_factor: 1,
        max_candidates: 1,
        ..QueryPlan::default()
    };
    let hits = store
        .query(
            "t",
            &QueryRequest {
                vector: q,
                plan,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(&*hits[0].result.entity_id, "seed");
    assert!(
        (hits[0].result.score - 1.5).abs() < 1e-3,
        "an identical fresh seed scores 1.5, got {}",
        hits[0].result.score
    );
    assert_eq!(&*hits[1].result.entity_id, "n1");
    assert_eq!(hits[1].result.path.len(), 1);
    // (0+1)/2 + 0.3*0.5 + 0.2*0.5 + 0.1*1
    assert!(
        (hits[1].result.score - 0.85).abs() < 1e-3,
        "got {}",
        hits[1].result.score
    );
    // Deleting n1 removes it from expansion; edges added later are followed.
    store.delete_entity("t", "n1", Durability::Sync).unwrap();
    let plan = QueryPlan {
        k: 2,
        expand_factor: 1,
        max_candidates: 1,
        ..QueryPlan::default()
    };
    let mut q2 = vec![0.0; DIM];
    q2[0] = 1.0;
    assert_eq!(
        store
            .query(
                "t",
                &QueryRequest {
                    vector: q2.clone(),
                    plan: plan.clone(),
                    ..Default::default()
                }
            )
            .unwrap()
            .len(),
        1
    );
    store
        .put_entities(
            "t",
            vec![entity("n2", orth, "doc", "red", &[])],
            Durability::Sync,
        )
        .unwrap();
    store
        .add_edges(
            "t",
            &[Edge {
                from: "seed".into(),
                to: "n2".into(),
                relation: "rel".into(),
                weight: 1.0,
                timestamp_nanos: 0,
                sources: Vec::new(),
            }],
            Durability::Sync,
        )
        .unwrap();
    let hits = store
        .query(
            "t",
            &QueryRequest {
                vector: q2,
                plan,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.result.entity_id.to_string())
            .collect::<Vec<_>>(),
        vec!["seed", "n2"]
    );
}

#[test]
fn only_queries_of_in_memory_indexes_are_light() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let writes = (0..10)
        .map(|i| entity(&format!("e{i}"), vector(&mut rng), "doc", "red", &[]))
        .collect();
    store
        .put_entities("acme", writes, Durability::Sync)
        .unwrap();
    let request = |include_entities| QueryRequest {
        vector: vector(&mut rand::rngs::StdRng::seed_from_u64(4)),
        plan: QueryPlan::default(),
        filter: Filter::default(),
        include_entities,
        ..QueryRequest::default()
    };
    // A short tail (10 <= LIGHT_QUERY_MAX_TAIL) and no entity reads: in memory, light.
    assert!(store.query_is_light("acme", &request(false)));
    assert!(store.query_is_light("nobody", &request(false)));
    // Returning entities reads the engine (disk): never light.
    assert!(!store.query_is_light("acme", &request(true)));
    assert_eq!(
        store.query("acme", &request(false)).unwrap().len(),
        QueryPlan::default().k.min(10)
    );
}

#[test]
fn tenant_figures_of_a_selection_add_up_to_the_whole_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = UnifiedStore::open(dir.path(), options()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut bare = entity("bare", vec![0.0; DIM], "doc", "red", &[]);
    bare.body.embeddings.clear();
    let mut writes: Vec<EntityWrite> = (0..40)
        .map(|i| {
            entity(
                &format!("e{i:02}"),
                vector(&mut rng),
                "doc",
                "red",
                &[("e00", 1.0)],
            )
        })
        .collect();
    writes.push(bare);
    store.put_entities("a", writes, Durability::Sync).unwrap();
    store
        .put_entities(
            "b",
            vec![entity("x", vector(&mut rng), "doc", "red", &[])],
            Durability::Sync,
        )
        .unwrap();
    store.delete_entity("a", "e07", Durability::Sync).unwrap();
    let whole = store.tenant_stats("a").unwrap().unwrap();
    assert_eq!((whole.entities, whole.vectors), (40, 39));

    // Two disjoint selections (ids by parity of their last byte) add up to the whole.
    let even = |id: &str| id.as_bytes().last().is_some_and(|b| b % 2 == 0);
    let halves: Vec<_> = [true, false]
        .into_iter()
        .map(|parity| {
            let listed = store
                .tenants_where(Some("a"), &|tenant, id| {
                    assert_eq!(tenant, "a");
                    even(id) == parity
                })
                .unwrap();
            assert_eq!(listed.len(), 1, "only the tenant asked for");
            listed.into_iter().next().unwrap()
        })
        .collect();
    assert_eq!(halves[0].entities + halves[1].entities, whole.entities);
    assert_eq!(halves[0].vectors + halves[1].vectors, whole.vectors);
    assert_eq!(halves[0].bytes + halves[1].bytes, whole.bytes);
    assert!(
        halves
            .iter()
            .all(|h| h.entities > 0 && h.dimension == Some(DIM))
    );

    // Every tenant, selecting everything: the same figures as the whole-node listing; selecting
    // nothing still lists each tenant, with zero counts.
    assert_eq!(
        store.tenants_where(None, &|_, _| true).unwrap(),
        store.tenants().unwrap()
    );
    let none = store.tenants_where(None, &|_, _| false).unwrap();
    let names: Vec<&str> = none.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        none.iter()
            .all(|t| t.entities == 0 && t.vectors == 0 && t.bytes == 0)
    );
    assert!(
        store
            .tenants_where(Some("bad\0tenant"), &|_, _| true)
            .is_err()
    );
}
