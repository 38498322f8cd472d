//! Source provenance (issue 39, docs/api.md "Sources") against a real `allidbd`: random
//! documents sharing entities and edges, written with `WRITE_MODE_MERGE_SOURCES`, then deleted
//! one by one with `DeleteBySource`, each time compared with a model of what the remaining
//! documents support (this file's own), until nothing is left; `ReplaceSource` under
//! concurrent scans and queries never shows a state with neither version; bad input names its
//! field; the HTTP routes; a ring at QUORUM with a node down reaches that node by hint. A
//! `kill -9` during a `DeleteBySource` is `provenance_crash.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::ring::{found, hints_pending, level, ring_of_three, wait_for_states, wait_until};
use allidb_tests::sources::{delete_source, merge_put, scan_all};
use allidb_tests::{Daemon, doc_entity, http_call, request};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

/// What one source asserts about one entity: chunks and out-edges `(relation, to)`.
#[derive(Clone, Debug, Default)]
struct Assertion {
    chunks: BTreeSet<String>,
    out: BTreeSet<(String, String)>,
}

/// A document: the entities it writes.
type Document = BTreeMap<String, Assertion>;

/// An entity as the model and a reader see it: its sources, its chunks' and out-edges'
/// sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    sources: BTreeSet<String>,
    chunks: BTreeMap<String, BTreeSet<String>>,
    out: BTreeMap<(String, String), BTreeSet<String>>,
}

/// What the documents not `deleted` support: every entity one of them writes, each chunk and
/// out-edge with the live sources that assert it, less the edges into an entity that only
/// deleted documents wrote (it went with its edges both ways).
fn model(documents: &BTreeMap<String, Document>, deleted: &[String]) -> BTreeMap<String, Seen> {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for (source, document) in documents {
        if deleted.contains(source) {
            continue;
        }
        for (id, assertion) in document {
            let entity = seen.entry(id.clone()).or_default();
            entity.sources.insert(source.clone());
            for chunk in &assertion.chunks {
                entity
                    .chunks
                    .entry(chunk.clone())
                    .or_default()
                    .insert(source.clone());
            }
            for edge in &assertion.out {
                entity
                    .out
                    .entry(edge.clone())
                    .or_default()
                    .insert(source.clone());
            }
        }
    }
    // An entity a deleted document alone supported went with its edges both ways: edges into
    // it from surviving entities went too, even when they are asserted by a live document.
    let gone: BTreeSet<String> = documents
        .iter()
        .filter(|(source, _)| deleted.contains(source))
        .flat_map(|(_, document)| document.keys().cloned())
        .filter(|id| !seen.contains_key(id))
        .collect();
    for entity in seen.values_mut() {
        entity.out.retain(|(_, to), _| !gone.contains(to));
    }
    seen
}

fn random_documents(rng: &mut StdRng, documents: usize, pool: usize) -> BTreeMap<String, Document> {
    (0..documents)
        .map(|d| {
            let mut document = Document::new();
            for _ in 0..pool / 2 {
                let id = format!("e{:02}", rng.random_range(0..pool));
                let assertion = document.entry(id).or_default();
                if rng.random_bool(0.7) {
                    assertion
                        .chunks
                        .insert(format!("c{}", rng.random_range(0..3)));
                }
                for _ in 0..rng.random_range(0..3) {
                    let to = format!("e{:02}", rng.random_range(0..pool));
                    let relation = ["knows", "cites"][rng.random_range(0..2)];
                    assertion.out.insert((relation.to_owned(), to));
                }
            }
            (format!("doc-{d}"), document)
        })
        .collect()
}

fn sourced_entity(id: &str, source: &str, assertion: &Assertion) -> pb::Entity {
    pb::Entity {
        source_ids: vec![source.to_owned()],
        chunks: assertion
            .chunks
            .iter()
            .map(|c| pb::TextChunk {
                chunk_id: c.clone(),
                text: format!("{id} {c} from {source}"),
                ..Default::default()
            })
            .collect(),
        outgoing_edges: assertion
            .out
            .iter()
            .map(|(relation, to)| pb::GraphEdge {
                to_entity: to.clone(),
                relation: relation.clone(),
                weight: 1.0,
                ..Default::default()
            })
            .collect(),
        ..doc_entity(id, &[1.0, 0.5, 0.25])
    }
}

async fn write_document(client: &mut Client, source: &str, document: &Document) {
    let entities = document
        .iter()
        .map(|(id, assertion)| sourced_entity(id, source, assertion))
        .collect();
    merge_put(client, entities).await;
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// What a reader sees, in the model's terms; also checks that every in-edge has its out-edge.
fn observed(entities: &[pb::Entity]) -> BTreeMap<String, Seen> {
    let mut outs = BTreeSet::new();
    let mut ins = BTreeSet::new();
    let seen = entities
        .iter()
        .map(|e| {
            for edge in &e.outgoing_edges {
                outs.insert((
                    e.entity_id.clone(),
                    edge.relation.clone(),
                    edge.to_entity.clone(),
                ));
            }
            for edge in &e.incoming_edges {
                ins.insert((
                    edge.from_entity.clone(),
                    edge.relation.clone(),
                    e.entity_id.clone(),
                ));
            }
            let entity = Seen {
                sources: set(&e.source_ids),
                chunks: e
                    .chunks
                    .iter()
                    .map(|c| (c.chunk_id.clone(), set(&c.source_ids)))
                    .collect(),
                out: e
                    .outgoing_edges
                    .iter()
                    .map(|edge| {
                        let key = (edge.relation.clone(), edge.to_entity.clone());
                        (key, set(&edge.source_ids))
                    })
                    .collect(),
            };
            (e.entity_id.clone(), entity)
        })
        .collect();
    let live: BTreeSet<&String> = entities.iter().map(|e| &e.entity_id).collect();
    let outs_to_live: BTreeSet<_> = outs
        .into_iter()
        .filter(|(_, _, to)| live.contains(to))
        .collect();
    assert_eq!(
        ins, outs_to_live,
        "in-edges mirror the out-edges between live entities"
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_documents_one_by_one_leaves_exactly_what_the_others_support() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    for seed in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let documents = random_documents(&mut rng, 3, 24);
        for (source, document) in &documents {
            write_document(&mut client, source, document).await;
        }
        let mut deleted: Vec<String> = Vec::new();
        assert_eq!(
            observed(&scan_all(&mut client).await),
            model(&documents, &deleted)
        );
        for source in documents.keys() {
            let reply = delete_source(&mut client, source).await;
            deleted.push(source.clone());
            assert_eq!(
                observed(&scan_all(&mut client).await),
                model(&documents, &deleted),
                "seed {seed} after deleting {deleted:?}"
            );
            assert!(reply.deleted + reply.updated > 0, "{reply:?}");
            // Idempotent: the same delete again changes nothing.
            let again = delete_source(&mut client, source).await;
            assert_eq!((again.deleted, again.updated), (0, 0));
        }
        assert!(scan_all(&mut client).await.is_empty(), "nothing is left");
    }
}

/// The ids of source `doc` version `v`.
fn version_ids(v: usize) -> Vec<String> {
    (0..20).map(|i| format!("v{v}-{i:02}")).collect()
}

fn version_entities(v: usize) -> Vec<pb::Entity> {
    version_ids(v)
        .iter()
        .map(|id| pb::Entity {
            source_ids: vec!["doc".to_owned()],
            ..doc_entity(id, &[1.0, 0.5, v as f32])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_source_never_shows_neither_version() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let replace = |v: usize| pb::ReplaceSourceRequest {
        source_id: "doc".to_owned(),
        entities: version_entities(v),
        ..Default::default()
    };
    let first = client
        .replace_source(request(replace(0), None))
        .await
        .expect("the first version is written")
        .into_inner();
    assert_eq!((first.deleted, first.written), (0, 20));

    let versions: Vec<BTreeSet<String>> = (0..2).map(|v| set(&version_ids(v))).collect();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|reader| {
            let (done, versions) = (done.clone(), versions.clone());
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let ids: BTreeSet<String> = match reader {
                        0 => scan_all(&mut client)
                            .await
                            .into_iter()
                            .map(|e| e.entity_id)
                            .collect(),
                        _ => client
                            .query(request(
                                pb::QueryRequest {
                                    query_vector: vec![1.0, 0.5, 0.5],
                                    k: 100,
                                    include_entity: Some(false),
                                    ..Default::default()
                                },
                                None,
                            ))
                            .await
                            .expect("the query succeeds")
                            .into_inner()
                            .results
                            .into_iter()
                            .map(|r| r.entity_id)
                            .collect(),
                    };
                    // A scan reads one snapshot: exactly one version. A query reads the
                    // indexes, which apply a batch's new entities before its deletions: one
                    // version whole, possibly with (part of) the other for a moment.
                    let whole = match reader {
                        0 => versions.contains(&ids),
                        _ => {
                            versions.iter().any(|v| v.is_subset(&ids))
                                && ids.iter().all(|id| versions.iter().any(|v| v.contains(id)))
                        }
                    };
                    assert!(whole, "reader {reader} saw no version whole: {ids:?}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 1..=30 {
        let reply = client
            .replace_source(request(replace(round % 2), None))
            .await
            .expect("the source is replaced")
            .into_inner();
        assert_eq!((reply.deleted, reply.written), (20, 20), "{reply:?}");
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.expect("the reader ran") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_provenance_input_is_invalid_argument_naming_the_field() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let empty = client
        .delete_by_source(request(pb::DeleteBySourceRequest::default(), None))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("source_id:"),
        "{}",
        empty.message()
    );

    let mut entity = sourced_entity("x", "a", &Assertion::default());
    entity.outgoing_edges.push(pb::GraphEdge {
        to_entity: "y".into(),
        source_ids: vec!["b".into()],
        ..Default::default()
    });
    let put = client
        .put_entity(request(
            pb::PutEntityRequest {
                entity: Some(entity),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(put.code(), Code::InvalidArgument);
    assert!(
        put.message()
            .starts_with("entity.outgoing_edges[0].source_ids[0]:"),
        "{}",
        put.message()
    );

    let reserved = client
        .put_entity(request(
            pb::PutEntityRequest {
                entity: Some(doc_entity("\u{1}src:a", &[1.0])),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(reserved.code(), Code::InvalidArgument);
    assert!(reserved.message().starts_with("entity.entity_id:"));

    let edges = client
        .add_edges(request(
            pb::AddEdgesRequest {
                edges: vec![pb::GraphEdge {
                    from_entity: "x".into(),
                    to_entity: "y".into(),
                    source_ids: vec!["a".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap_err();
    assert!(
        edges.message().starts_with("edges[0].source_ids:"),
        "{}",
        edges.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_write_merge_and_delete_by_source() {
    let daemon = Daemon::start("");
    let addr = daemon.http_addr.expect("the gateway listens");
    for source in ["a", "b"] {
        let body = format!(
            r#"{{"entity": {{"entity_id": "shared", "source_ids": ["{source}"]}}, "mode": "merge_sources"}}"#
        );
        let reply = http_call(addr, "POST", "/entity", None, &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = http_call(
        addr,
        "POST",
        "/sources/delete",
        None,
        r#"{"source_id": "a"}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["updated"], 1, "{body}");
    let reply = http_call(addr, "GET", "/entity/shared", None, "");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body["entity"]["source_ids"],
        serde_json::json!(["b"]),
        "{body}"
    );
    let reply = http_call(
        addr,
        "POST",
        "/sources/delete",
        None,
        r#"{"source_id": ""}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = http_call(
        addr,
        "POST",
        "/sources/replace",
        None,
        r#"{"source_id": "b", "entities": [{"entity_id": "next"}]}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        (body["deleted"].as_u64(), body["written"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_source_at_quorum_reaches_a_down_node_by_hint() {
    use pb::ConsistencyLevel::{ConsistencyOne as One, ConsistencyQuorum as Quorum};
    let mut nodes = ring_of_three("");
    let mut client = nodes[0].client().await;
    let write = |id: &str, source: &str| pb::PutEntityRequest {
        entity: Some(pb::Entity {
            source_ids: vec![source.to_owned()],
            ..doc_entity(id, &[1.0, 0.5, 0.25])
        }),
        consistency_level: level(Quorum),
        mode: pb::WriteMode::MergeSources as i32,
        ..Default::default()
    };
    for (id, source) in [("only-a", "a"), ("shared", "a"), ("shared", "b")] {
        client
            .put_entity(request(write(id, source), None))
            .await
            .expect("a QUORUM write on a whole ring");
    }
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    let reply = client
        .delete_by_source(request(
            pb::DeleteBySourceRequest {
                source_id: "a".to_owned(),
                consistency_level: level(Quorum),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("DeleteBySource at QUORUM with one node down")
        .into_inner();
    assert_eq!((reply.deleted, reply.updated), (1, 1));
    wait_until("hints kept for n2", Duration::from_secs(10), || {
        hints_pending(&nodes[0]) > 0
    });

    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered", Duration::from_secs(30), || {
        hints_pending(&nodes[0]) == 0
    });
    // Read at ONE through n2: its own store answers.
    assert!(
        !found(&nodes[2], "only-a", One).await.unwrap(),
        "only-a is gone on n2"
    );
    let shared = allidb_tests::ring::get(&nodes[2], "shared", One)
        .await
        .expect("shared is read on n2");
    assert_eq!(shared.entity.expect("shared stays").source_ids, ["b"]);
}

async fn delete_where(
    client: &mut Client,
    kinds: &[&str],
    dry_run: bool,
    max_deletes: u32,
    confirm: bool,
) -> Result<pb::DeleteByFilterResponse, tonic::Status> {
    let filter = match kinds {
        [] => None,
        [kind] => Some(pb::QueryFilter {
            attributes: [("kind".to_owned(), (*kind).to_owned())].into(),
            ..Default::default()
        }),
        _ => Some(pb::QueryFilter {
            entity_types: vec!["doc".to_owned()],
            ..Default::default()
        }),
    };
    let message = pb::DeleteByFilterRequest {
        filter,
        dry_run,
        max_deletes,
        confirm,
        ..Default::default()
    };
    client
        .delete_by_filter(request(message, None))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_filter_counts_caps_and_wants_confirm_for_everything() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let entities = (0..30)
        .map(|i| pb::Entity {
            attributes: [("kind".to_owned(), if i < 20 { "a" } else { "b" }.to_owned())].into(),
            ..doc_entity(&format!("f{i:02}"), &[1.0, 0.5, 0.25])
        })
        .collect();
    let message = pb::BatchPutEntitiesRequest {
        entities,
        ..Default::default()
    };
    client
        .batch_put_entities(request(message, None))
        .await
        .expect("the entities are written");

    let dry = delete_where(&mut client, &["a"], true, 0, false)
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.deleted), (20, 0));
    let everything = delete_where(&mut client, &[], false, 0, false)
        .await
        .unwrap_err();
    assert_eq!(everything.code(), Code::InvalidArgument);
    assert!(
        everything.message().contains("set confirm"),
        "{}",
        everything.message()
    );
    // Every entity is a `doc`: a filter that matches them all needs confirm too.
    let all_docs = delete_where(&mut client, &["doc", "type"], false, 0, false)
        .await
        .unwrap_err();
    assert!(
        all_docs.message().contains("matches all 30"),
        "{}",
        all_docs.message()
    );
    let too_many = delete_where(&mut client, &["a"], false, 100_001, false)
        .await
        .unwrap_err();
    assert!(
        too_many.message().starts_with("max_deletes"),
        "{}",
        too_many.message()
    );

    let first = delete_where(&mut client, &["a"], false, 15, false)
        .await
        .unwrap();
    assert_eq!((first.deleted, first.more), (15, true));
    let rest = delete_where(&mut client, &["a"], false, 15, false)
        .await
        .unwrap();
    assert_eq!((rest.deleted, rest.more), (5, false));
    let left: Vec<String> = scan_all(&mut client)
        .await
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    assert_eq!(
        left,
        (20..30).map(|i| format!("f{i:02}")).collect::<Vec<_>>()
    );
    let all = delete_where(&mut client, &[], false, 0, true)
        .await
        .unwrap();
    assert_eq!(all.deleted, 10);
    assert!(scan_all(&mut client).await.is_empty());
}
