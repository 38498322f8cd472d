//! Source deletes against a model: what two documents wrote, minus one of them, equals what the
//! other alone writes.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::cell::{Entity, EntityBody};
use crate::engine::{Engine, Options};
use crate::fs::sim::SimFileSystem;
use crate::types::Durability;

const TENANT: &str = "t";

fn edge(relation: &str, other: &str) -> EdgeWrite {
    EdgeWrite {
        relation: relation.to_owned(),
        other: other.to_owned(),
        weight: 1.0,
        timestamp_nanos: 7,
        sources: Vec::new(),
    }
}

fn entity(id: &str, source: &str, chunk: &str, out: &[(&str, &str)]) -> EntityWrite {
    EntityWrite {
        id: id.to_owned(),
        body: EntityBody {
            entity_type: "concept".to_owned(),
            chunks: vec![TextChunk {
                chunk_id: chunk.to_owned(),
                text: format!("{chunk} text"),
                ..TextChunk::default()
            }],
            sources: vec![source.to_owned()],
            ..EntityBody::default()
        },
        out_edges: out.iter().map(|(r, to)| edge(r, to)).collect(),
        in_edges: Vec::new(),
    }
}

/// Document A: a1 -> s, s -> t; document B: b1 -> s, s -> t (the shared edge), t.
fn document(source: &str) -> Vec<EntityWrite> {
    match source {
        "A" => vec![
            entity("a1", "A", "a1.c", &[("mentions", "s")]),
            entity("s", "A", "s.A", &[("knows", "t")]),
        ],
        _ => vec![
            entity("b1", "B", "b1.c", &[("mentions", "s")]),
            entity("s", "B", "s.B", &[("knows", "t")]),
            entity("t", "B", "t.c", &[]),
        ],
    }
}

fn open() -> Engine {
    Engine::open_with_fs(
        Arc::new(SimFileSystem::new()),
        Path::new("/db"),
        Options::default(),
    )
    .expect("a fresh simulated engine opens")
}

fn write_documents(engine: &Engine, sources: &[&str]) {
    for source in sources {
        for w in document(source) {
            let mut w = w;
            normalise_sources(&mut w).expect("test writes are valid");
            engine
                .put_entities_as(TENANT, vec![w], PutMode::MergeSources, Durability::Sync)
                .expect("the write succeeds");
        }
    }
}

/// What a reader sees of the tenant, timestamps left out.
type Seen = Vec<(
    String,
    Vec<String>,
    Vec<(String, Vec<String>)>,
    Vec<String>,
    Vec<String>,
)>;

fn seen(engine: &Engine) -> Seen {
    let edges = |edges: &[Edge]| -> Vec<String> {
        edges
            .iter()
            .map(|e| format!("{}-{}->{} {:?}", e.from, e.relation, e.to, e.sources))
            .collect()
    };
    engine
        .scan(TENANT, None, None)
        .expect("the scan starts")
        .map(|e| e.expect("the scan reads"))
        .map(|e: Entity| {
            let chunks = e
                .body
                .chunks
                .iter()
                .map(|c| (c.chunk_id.clone(), c.sources.clone()))
                .collect();
            (
                e.id.clone(),
                e.body.sources.clone(),
                chunks,
                edges(&e.out_edges),
                edges(&e.in_edges),
            )
        })
        .collect()
}

#[test]
fn deleting_one_document_leaves_exactly_the_others_graph() {
    let both = open();
    write_documents(&both, &["A", "B"]);
    let shared = both.get_entity(TENANT, "s").unwrap().unwrap();
    assert_eq!(shared.body.sources, ["A", "B"]);
    assert_eq!(shared.out_edges[0].sources, ["A", "B"]);

    let done = both
        .delete_by_source(TENANT, "A", Durability::Sync)
        .unwrap();
    assert_eq!(
        done,
        SourceDeleted {
            deleted: 1,
            updated: 1
        }
    );
    let only_b = open();
    write_documents(&only_b, &["B"]);
    assert_eq!(seen(&both), seen(&only_b));
    assert!(both.source_members(TENANT, "A").unwrap().is_empty());

    // Idempotent: a second delete finds no member and writes nothing.
    let again = both
        .delete_by_source(TENANT, "A", Durability::Sync)
        .unwrap();
    assert_eq!(again, SourceDeleted::default());
    assert_eq!(seen(&both), seen(&only_b));

    both.delete_by_source(TENANT, "B", Durability::Sync)
        .unwrap();
    assert!(seen(&both).is_empty(), "{:?}", seen(&both));
}

#[test]
fn replace_source_swaps_one_documents_version_in_one_step() {
    let engine = open();
    write_documents(&engine, &["A", "B"]);
    let new_version = vec![entity("a2", "A", "a2.c", &[("mentions", "t")])];
    let done = engine
        .replace_source(TENANT, "A", new_version, Durability::Sync)
        .unwrap();
    assert_eq!(
        done,
        SourceDeleted {
            deleted: 1,
            updated: 1
        }
    );
    let model = open();
    write_documents(&model, &["B"]);
    let mut a2 = entity("a2", "A", "a2.c", &[("mentions", "t")]);
    normalise_sources(&mut a2).unwrap();
    model
        .put_entities_as(TENANT, vec![a2], PutMode::MergeSources, Durability::Sync)
        .unwrap();
    assert_eq!(seen(&engine), seen(&model));
    assert_eq!(engine.source_members(TENANT, "A").unwrap(), ["a2"]);
}

#[test]
fn a_part_may_name_only_the_entitys_sources() {
    let mut w = entity("x", "A", "c", &[("r", "y")]);
    w.out_edges[0].sources = vec!["B".to_owned()];
    assert!(normalise_sources(&mut w).is_err());
    let mut w = entity("x", "A", "c", &[]);
    w.body.sources.push(String::new());
    assert!(normalise_sources(&mut w).is_err());
    let mut w = entity("x", "B", "c", &[]);
    assert!(assign_source(std::slice::from_mut(&mut w), "A").is_err());
}
