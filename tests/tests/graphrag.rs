//! End-to-end tests of Graph-RAG in one call (docs/api.md "Graph-RAG in one call") against a
//! real `allidbd`: seeds apart from k, the context reply against `Traverse` from the same seeds
//! with the same limits on a generated graph with hubs, cycles, self-loops, parallel edges and
//! deleted entities; budgets and the bounds named by `truncated_by`; filters; chunks; the
//! personalized PageRank ranking and its explanation; tenant isolation; bad values.

use std::collections::{BTreeMap, BTreeSet};

use allidb_api::context;
use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, request};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

const DIM: usize = 8;
const ENTITIES: usize = 150;
const WRITER_A: Option<&str> = Some("key-a");
const WRITER_B: Option<&str> = Some("key-b");

fn start() -> Daemon {
    Daemon::start_with_keys(&[("key-a", "a", "write"), ("key-b", "b", "write")])
}

fn id(i: usize) -> String {
    format!("e{i:03}")
}

fn edge(to: usize, relation: &str, weight: f64) -> pb::GraphEdge {
    pb::GraphEdge {
        to_entity: id(to),
        relation: relation.to_owned(),
        weight,
        ..Default::default()
    }
}

/// A seeded graph: e000 and e001 are hubs (most entities link to them and they link out to
/// many), plus random edges, self-loops, parallel edges of two relations and cycles. Every
/// fifth entity is a "note" (the rest "doc"s); every entity has one chunk.
fn entities(rng: &mut StdRng) -> Vec<pb::Entity> {
    (0..ENTITIES)
        .map(|i| {
            let vector: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out: Vec<pb::GraphEdge> = Vec::new();
            if i > 1 && rng.random_range(0..3) > 0 {
                out.push(edge(rng.random_range(0..2), "depends", 0.5));
            }
            if i < 2 {
                out.extend(
                    (2..ENTITIES)
                        .step_by(2)
                        .map(|to| edge(to, "depends", f64::from((to % 7) as u8) / 7.0)),
                );
            }
            for _ in 0..rng.random_range(0..4) {
                let to = rng.random_range(0..ENTITIES);
                if !out.iter().any(|e| e.to_entity == id(to)) {
                    out.push(edge(
                        to,
                        "depends",
                        f64::from(rng.random_range(1u8..9)) / 8.0,
                    ));
                }
            }
            if i % 13 == 0 {
                out.push(edge(i, "self", 1.0));
            }
            if i % 9 == 0 {
                let to = (i + 1) % ENTITIES;
                out.push(edge(to, "cites", 0.25));
                out.push(edge(to, "mentions", 0.75));
            }
            pb::Entity {
                entity_id: id(i),
                entity_type: if i % 5 == 4 { "note" } else { "doc" }.to_owned(),
                embeddings: vec![pb::VectorEmbedding {
                    vector,
                    ..Default::default()
                }],
                outgoing_edges: out,
                chunks: vec![pb::TextChunk {
                    chunk_id: "c0".into(),
                    text: format!("text of {}", id(i)),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect()
}

async fn load(client: &mut Client, key: Option<&str>, rng: &mut StdRng) {
    let all = entities(rng);
    let reply = client
        .batch_put_entities(request(
            pb::BatchPutEntitiesRequest {
                entities: all,
                ..Default::default()
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.failure_count, 0, "{reply:?}");
    for deleted in [7, 40, 41] {
        client
            .delete_entity(request(
                pb::DeleteEntityRequest {
                    entity_id: id(deleted),
                    ..Default::default()
                },
                key,
            ))
            .await
            .unwrap();
    }
}

fn context_query(vector: Vec<f32>) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vector,
        k: 5,
        seeds: Some(10),
        max_hops: Some(2),
        include_context: true,
        include_entity: Some(false),
        max_fan_out: Some(6),
        max_nodes: Some(120),
        relations: vec![
            "depends".into(),
            "self".into(),
            "cites".into(),
            "mentions".into(),
        ],
        ..Default::default()
    }
}

async fn query(client: &mut Client, key: Option<&str>, q: pb::QueryRequest) -> pb::QueryResponse {
    client.query(request(q, key)).await.unwrap().into_inner()
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn edge_key(e: &pb::GraphEdge) -> (String, String, String) {
    (
        e.from_entity.clone(),
        e.relation.clone(),
        e.to_entity.clone(),
    )
}

/// Every stored out-edge of the tenant, as `(from, relation, to)` -> weight.
async fn stored_edges(
    client: &mut Client,
    key: Option<&str>,
) -> BTreeMap<(String, String, String), f64> {
    let reply = client
        .get_entities(request(
            pb::GetEntitiesRequest {
                entity_ids: (0..ENTITIES).map(id).collect(),
                ..Default::default()
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    reply
        .entities
        .iter()
        .flat_map(|e| e.outgoing_edges.iter())
        .map(|e| (edge_key(e), e.weight))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_equals_traverse_from_the_same_seeds_and_budgets_are_named() {
    let daemon = start();
    let mut client = daemon.client().await;
    let mut rng = StdRng::seed_from_u64(20);
    load(&mut client, WRITER_A, &mut rng).await;
    let stored = stored_edges(&mut client, WRITER_A).await;
    let mut compared = 0;
    for round in 0..12 {
        let vector = random_vector(&mut rng);
        let direction = [pb::Direction::Out, pb::Direction::In, pb::Direction::Both][round % 3];
        let mut q = context_query(vector.clone());
        q.direction = direction as i32;
        let reply = query(&mut client, WRITER_A, q.clone()).await;
        assert_eq!(reply.results.len(), 5, "k stays apart from the 10 seeds");
        let context = reply.context.expect("the context was asked for");
        // The seeds equal a plain query's top 10 by similarity alone.
        let plain = query(
            &mut client,
            WRITER_A,
            pb::QueryRequest {
                query_vector: vector.clone(),
                k: 10,
                seeds: Some(10),
                max_hops: Some(0),
                include_entity: Some(false),
                weights: Some(pb::ScoringWeights {
                    graph: Some(0.0),
                    importance: Some(0.0),
                    recency: Some(0.0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        let seeds: Vec<String> = context
            .nodes
            .iter()
            .filter(|n| n.hop == 0)
            .map(|n| n.entity_id.clone())
            .collect();
        let plain_ids: Vec<String> = plain.results.iter().map(|r| r.entity_id.clone()).collect();
        assert_eq!(seeds, plain_ids, "round {round}");
        // Traverse from the same seeds with the same limits reaches the same nodes by the
        // same paths.
        let traversal = client
            .traverse(request(
                pb::TraverseRequest {
                    start_ids: seeds.clone(),
                    max_hops: 2,
                    direction: direction as i32,
                    relations: q.relations.clone(),
                    max_nodes: 120,
                    max_fan_out: Some(6),
                    include_entity: Some(false),
                    ..Default::default()
                },
                WRITER_A,
            ))
            .await
            .unwrap()
            .into_inner();
        // The reply carries a step per node (its path's last edge from a listed parent);
        // rebuilt, the paths are Traverse's.
        let paths = context::node_paths(&context).expect("steps name earlier nodes");
        let from_context: Vec<(String, i32, pb::GraphPath)> = context
            .nodes
            .iter()
            .zip(paths)
            .map(|(n, path)| (n.entity_id.clone(), n.hop, path))
            .collect();
        let from_traverse: Vec<(String, i32, pb::GraphPath)> = traversal
            .nodes
            .iter()
            .map(|n| (n.entity_id.clone(), n.depth, n.path.clone().unwrap()))
            .collect();
        assert_eq!(from_context, from_traverse, "round {round} {direction:?}");
        assert!(
            from_context
                .iter()
                .all(|(id, ..)| !["e007", "e040", "e041"].contains(&id.as_str()))
        );
        // Edges: each once, stored, between context nodes, and every path's edges among them.
        let nodes: BTreeSet<&str> = context.nodes.iter().map(|n| n.entity_id.as_str()).collect();
        let edges: BTreeSet<(String, String, String)> =
            context.edges.iter().map(edge_key).collect();
        assert_eq!(edges.len(), context.edges.len());
        for e in &context.edges {
            // The graph index keeps weights as f32.
            let weight = stored.get(&edge_key(e)).map(|w| f64::from(*w as f32));
            assert_eq!(weight, Some(e.weight), "{e:?}");
            assert!(nodes.contains(e.from_entity.as_str()) && nodes.contains(e.to_entity.as_str()));
        }
        for node in &traversal.nodes {
            for e in &node.path.as_ref().unwrap().edges {
                assert!(edges.contains(&edge_key(e)), "path edge {e:?} missing");
            }
        }
        // The hubs' fan-out cut the walk and is named.
        assert_eq!(context.truncated, !context.truncated_by.is_empty());
        compared += context.nodes.len() + context.edges.len();
    }
    assert!(compared > 500, "compared {compared}");

    // Budgets and the bound that cut the context.
    let vector = random_vector(&mut rng);
    let cut = |change: &dyn Fn(&mut pb::QueryRequest)| {
        let mut q = context_query(vector.clone());
        change(&mut q);
        q
    };
    let nodes = query(&mut client, WRITER_A, cut(&|q| q.max_nodes = Some(12))).await;
    let context = nodes.context.unwrap();
    assert!(context.nodes.len() <= 12);
    assert!(
        context.truncated_by.contains(&"max_nodes".to_owned()),
        "{:?}",
        context.truncated_by
    );
    let edges = query(&mut client, WRITER_A, cut(&|q| q.max_edges = Some(7))).await;
    let context = edges.context.unwrap();
    assert!(context.edges.len() <= 7);
    assert!(context.truncated_by.contains(&"max_edges".to_owned()));
    // Seeded at the hub e000 (its own vector), a fan-out of 2 cuts at once and is named.
    let hub_vector = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: id(0),
                ..Default::default()
            },
            WRITER_A,
        ))
        .await
        .unwrap()
        .into_inner()
        .entity
        .unwrap()
        .embeddings[0]
        .vector
        .clone();
    let mut at_hub = context_query(hub_vector);
    at_hub.seeds = Some(1);
    at_hub.max_fan_out = Some(2);
    let hub = query(&mut client, WRITER_A, at_hub).await.context.unwrap();
    assert_eq!(hub.nodes[0].entity_id, id(0));
    assert!(
        hub.truncated_by.contains(&"max_fan_out".to_owned()),
        "{:?}",
        hub.truncated_by
    );
    let from_hub = hub.edges.iter().filter(|e| e.from_entity == id(0)).count();
    assert!(from_hub <= 4, "{from_hub} edges from the hub");
    let small = query(
        &mut client,
        WRITER_A,
        cut(&|q| q.max_context_bytes = Some(600)),
    )
    .await;
    let context = small.context.unwrap();
    assert!(prost::Message::encoded_len(&context) <= 600);
    assert!(!context.nodes.is_empty());
    assert!(
        context
            .truncated_by
            .contains(&"max_context_bytes".to_owned())
    );
    let whole = query(&mut client, WRITER_A, cut(&|q| q.max_hops = Some(0))).await;
    let context = whole.context.unwrap();
    assert_eq!(context.nodes.len(), 10);
    assert!(!context.truncated && context.edges.is_empty());

    // Chunks on request.
    let chunks = query(&mut client, WRITER_A, cut(&|q| q.context_chunks = true)).await;
    for node in &chunks.context.unwrap().nodes {
        assert_eq!(node.chunks.len(), 1);
        assert_eq!(node.chunks[0].text, format!("text of {}", node.entity_id));
    }
    let no_chunks = query(&mut client, WRITER_A, cut(&|_| {})).await;
    assert!(
        no_chunks
            .context
            .as_ref()
            .unwrap()
            .nodes
            .iter()
            .all(|n| n.chunks.is_empty())
    );
    // Without include_context there is no context (today's reply).
    let plain = query(&mut client, WRITER_A, cut(&|q| q.include_context = false)).await;
    assert!(plain.context.is_none());

    // Filters apply to what is returned; the walk goes through filtered-out nodes.
    let filtered = query(
        &mut client,
        WRITER_A,
        cut(&|q| {
            q.filter = Some(pb::QueryFilter {
                entity_types: vec!["doc".into()],
                ..Default::default()
            });
        }),
    )
    .await;
    let context = filtered.context.unwrap();
    let is_note = |id: &str| id[1..].parse::<usize>().unwrap() % 5 == 4;
    assert!(context.nodes.iter().all(|n| !is_note(&n.entity_id)));
    assert!(
        context
            .edges
            .iter()
            .all(|e| !is_note(&e.from_entity) && !is_note(&e.to_entity))
    );
    let paths = context::node_paths(&context).expect("steps name earlier nodes");
    assert!(
        paths
            .iter()
            .any(|path| path.entity_ids.iter().any(|id| is_note(id))),
        "some returned node was reached through a note"
    );
    // A node whose parent is filtered out carries its whole path; the others a step.
    for (node, path) in context.nodes.iter().zip(&paths) {
        let parent = path
            .entity_ids
            .len()
            .checked_sub(2)
            .map(|i| &path.entity_ids[i]);
        match parent {
            Some(parent) if is_note(parent) => {
                assert_eq!(node.path.as_ref(), Some(path), "{}", node.entity_id);
                assert!(node.step.is_none());
            }
            Some(_) => assert!(node.step.is_some() && node.path.is_none()),
            None => assert!(node.step.is_none() && node.path.is_none() && node.hop == 0),
        }
    }
    assert!(
        context.nodes.iter().any(|n| n.path.is_some()),
        "some returned node's parent is a note"
    );
    assert!(filtered.results.iter().all(|r| !is_note(&r.entity_id)));

    // Tenant isolation: b has no entities, so nothing of a's shows up.
    let other = query(&mut client, WRITER_B, context_query(vector.clone())).await;
    assert!(other.results.is_empty());
    assert!(other.context.unwrap().nodes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerank_ranking_explains_its_mass_and_bad_values_name_the_field() {
    let daemon = start();
    let mut client = daemon.client().await;
    let mut rng = StdRng::seed_from_u64(7);
    load(&mut client, WRITER_A, &mut rng).await;
    let vector = random_vector(&mut rng);
    let mut q = context_query(vector.clone());
    q.k = 20;
    q.explain = true;
    q.scoring = pb::ScoringMode::ScoringPersonalizedPagerank as i32;
    q.direction = pb::Direction::Both as i32;
    let reply = query(&mut client, WRITER_A, q.clone()).await;
    assert_eq!(reply.results.len(), 20);
    let context = reply.context.unwrap();
    let seeds: Vec<&str> = context
        .nodes
        .iter()
        .filter(|n| n.hop == 0)
        .map(|n| n.entity_id.as_str())
        .collect();
    let mut previous = f64::INFINITY;
    let mut expanded = 0;
    for result in &reply.results {
        assert!(result.score <= previous);
        previous = result.score;
        let explanation = result.explanation.as_ref().unwrap();
        let pagerank = explanation.pagerank.as_ref().expect("PageRank explanation");
        assert!(pagerank.mass > 0.0 && pagerank.iterations >= 1 && pagerank.iterations <= 100);
        let shares: Vec<&str> = pagerank
            .seed_shares
            .iter()
            .map(|s| s.entity_id.as_str())
            .collect();
        assert_eq!(shares, seeds);
        let total: f64 = pagerank.seed_shares.iter().map(|s| s.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        if !seeds.contains(&result.entity_id.as_str()) {
            expanded += 1;
        }
    }
    assert!(expanded > 0, "the graph counts: expanded entities rank");
    assert!(
        (reply.results[0].score - 1.0).abs() < 1e-12,
        "the top mass scores 1"
    );

    let inv = Code::InvalidArgument;
    let bad: Vec<(pb::QueryRequest, &str)> = vec![
        (
            pb::QueryRequest {
                pagerank: Some(pb::PageRankOptions {
                    damping: Some(1.5),
                    ..Default::default()
                }),
                ..q.clone()
            },
            "pagerank.damping",
        ),
        (
            pb::QueryRequest {
                seeds: Some(1_001),
                ..q.clone()
            },
            "seeds",
        ),
        (
            pb::QueryRequest {
                max_nodes: Some(-3),
                ..q.clone()
            },
            "max_nodes",
        ),
        (
            pb::QueryRequest {
                max_nodes: Some(5_000),
                ..q.clone()
            },
            "max_nodes",
        ),
        (
            pb::QueryRequest {
                max_edges: Some(0),
                ..q.clone()
            },
            "max_edges",
        ),
        (
            pb::QueryRequest {
                max_fan_out: Some(-1),
                ..q.clone()
            },
            "max_fan_out",
        ),
        (
            pb::QueryRequest {
                max_context_bytes: Some(0),
                ..q.clone()
            },
            "max_context_bytes",
        ),
    ];
    for (request_body, field) in bad {
        let status = client
            .query(request(request_body, WRITER_A))
            .await
            .unwrap_err();
        assert_eq!(status.code(), inv, "{}", status.message());
        assert!(
            status.message().contains(field),
            "{} does not name {field}",
            status.message()
        );
    }
    let status = client
        .traverse(request(
            pb::TraverseRequest {
                start_ids: vec![id(0)],
                max_edges: Some(-1),
                ..Default::default()
            },
            WRITER_A,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), inv);
    assert!(status.message().contains("max_edges"));
}
