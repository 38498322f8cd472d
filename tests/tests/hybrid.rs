//! End-to-end tests of hybrid search (issue 38, docs/api.md "Hybrid search") against a real
//! `allidbd`: text-only, vector-only and fused queries through `Query`, `QueryBatch` and the
//! HTTP gateway, the lexical part of `explain`, filters on lexical candidates, every bad input
//! `INVALID_ARGUMENT` naming its field, the same answers after a `kill -9` (the lexical index
//! caught up from its dump and the WAL), and text queries on a ring answered by every node
//! exactly as one node answers them.

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, http_call, request};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

/// `(id, type, text, vector)` of the test corpus: package summaries where the names are what a
/// user would type, and vectors that do not know them.
const DOCS: &[(&str, &str, &str, [f32; 3])] = &[
    (
        "left-pad",
        "pkg",
        "left-pad: String left pad",
        [1.0, 0.0, 0.0],
    ),
    (
        "pad-right",
        "pkg",
        "pad-right: pad a string on the right",
        [0.9, 0.1, 0.0],
    ),
    (
        "lodash",
        "pkg",
        "lodash: Lodash modular utilities.",
        [0.0, 0.0, 1.0],
    ),
    (
        "json-parse-fast",
        "pkg",
        "json-parse-fast: a fast JSON parser",
        [0.0, 1.0, 0.0],
    ),
    (
        "readme",
        "doc",
        "How to use left-pad in a Node.js project",
        [0.1, 0.1, 0.9],
    ),
    (
        "iobroker.opcua",
        "pkg",
        "iobroker.opcua: OPC-UA server and client in ioBroker",
        [0.5, 0.5, 0.0],
    ),
];

/// The typed attribute `year` of each entity, which the `where` cases filter on: [`DOCS`] by
/// name, `filler-<i>` 2000 + i mod 25, any other 2024.
fn year(id: &str) -> i64 {
    match id {
        "lodash" => 2012,
        "left-pad" => 2014,
        "pad-right" => 2016,
        "iobroker.opcua" => 2019,
        "json-parse-fast" => 2020,
        "readme" => 2021,
        _ => id
            .strip_prefix("filler-")
            .and_then(|i| i.parse::<i64>().ok())
            .map_or(2024, |i| 2000 + i % 25),
    }
}

fn int(i: i64) -> pb::AttributeValue {
    pb::AttributeValue {
        int_value: Some(i),
        ..Default::default()
    }
}

/// `where year >= from` (a range).
fn year_from(from: i64) -> pb::FilterExpression {
    pb::FilterExpression {
        gte: Some(pb::FieldCondition {
            field: "year".to_owned(),
            value: Some(int(from)),
        }),
        ..Default::default()
    }
}

/// `where year in years`.
fn year_in(years: &[i64]) -> pb::FilterExpression {
    pb::FilterExpression {
        r#in: Some(pb::FieldValues {
            field: "year".to_owned(),
            values: years.iter().copied().map(int).collect(),
        }),
        ..Default::default()
    }
}

fn entity(id: &str, kind: &str, text: &str, vector: [f32; 3]) -> pb::Entity {
    pb::Entity {
        entity_id: id.to_owned(),
        entity_type: kind.to_owned(),
        typed_attributes: [("year".to_owned(), int(year(id)))].into(),
        embeddings: vec![pb::VectorEmbedding {
            vector: vector.to_vec(),
            ..Default::default()
        }],
        chunks: vec![pb::TextChunk {
            chunk_id: "summary".to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }],
        outgoing_edges: if id == "left-pad" {
            vec![pb::GraphEdge {
                to_entity: "lodash".to_owned(),
                relation: "see_also".to_owned(),
                weight: 1.0,
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

async fn load(client: &mut Client) {
    let entities = DOCS
        .iter()
        .map(|(id, kind, text, v)| entity(id, kind, text, *v))
        .collect();
    let reply = client
        .batch_put_entities(request(
            pb::BatchPutEntitiesRequest {
                entities,
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("the load succeeds")
        .into_inner();
    assert!(reply.success, "{reply:?}");
}

fn text_query(text: &str) -> pb::QueryRequest {
    pb::QueryRequest {
        text: Some(text.to_owned()),
        k: 5,
        max_hops: Some(0),
        include_entity: Some(false),
        explain: true,
        ..Default::default()
    }
}

async fn query(
    client: &mut Client,
    message: pb::QueryRequest,
) -> Result<pb::QueryResponse, tonic::Status> {
    client
        .query(request(message, None))
        .await
        .map(tonic::Response::into_inner)
}

fn ids(reply: &pb::QueryResponse) -> Vec<&str> {
    reply.results.iter().map(|r| r.entity_id.as_str()).collect()
}

async fn check_answers(client: &mut Client) -> Vec<pb::QueryResponse> {
    // Text only: every entity holding a term, BM25 order; the identifier matches whole.
    let text = query(client, text_query("left-pad"))
        .await
        .expect("a text query");
    assert_eq!(ids(&text), ["left-pad", "readme", "pad-right"]);
    let explanation = text.results[0].explanation.as_ref().expect("explained");
    assert_eq!(explanation.vector_score, 0.0);
    assert!(
        (explanation.lexical_score - 1.0).abs() < 1e-9,
        "{explanation:?}"
    );
    let lexical = explanation.lexical.as_ref().expect("matched terms");
    let terms: Vec<&str> = lexical
        .matched_terms
        .iter()
        .map(|t| t.term.as_str())
        .collect();
    assert_eq!(terms, ["left-pad", "left", "pad"]);
    let shares: f64 = lexical.matched_terms.iter().map(|t| t.share).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    // Identifiers split on dots too, and ASCII folding applies to queries.
    let dotted = query(client, text_query("OPCUA ioBroker"))
        .await
        .expect("a text query");
    assert_eq!(ids(&dotted), ["iobroker.opcua"]);
    // Filters apply to lexical candidates.
    let mut docs_only = text_query("left-pad");
    docs_only.filter = Some(pb::QueryFilter {
        entity_types: vec!["doc".to_owned()],
        ..Default::default()
    });
    assert_eq!(
        ids(&query(client, docs_only).await.expect("filtered")),
        ["readme"]
    );
    // `where` applies to the lexical candidates: left-pad, the text's best, fails `year >=
    // 2015`, so it is not a candidate: the two seeds are the best two that pass (unfiltered
    // candidates would give left-pad and readme, and only readme would remain), and readme,
    // the best that passes, has the lexical relevance 1 (BM25 over the best candidate's).
    let recent = query(
        client,
        pb::QueryRequest {
            seeds: Some(2),
            r#where: Some(year_from(2015)),
            ..text_query("left-pad")
        },
    )
    .await
    .expect("a text query with where");
    assert_eq!(ids(&recent), ["readme", "pad-right"]);
    let explanation = recent.results[0].explanation.as_ref().expect("explained");
    assert!(
        (explanation.lexical_score - 1.0).abs() < 1e-9,
        "{explanation:?}"
    );
    // Hybrid: `readme`, near the vector and holding the term, comes first; the vector's
    // nearest (lodash) and the text's best (left-pad) are both among the results.
    let hybrid = query(
        client,
        pb::QueryRequest {
            query_vector: vec![0.0, 0.0, 1.0],
            fusion: pb::Fusion::Rrf as i32,
            ..text_query("left-pad")
        },
    )
    .await
    .expect("a hybrid query");
    let found = ids(&hybrid);
    assert_eq!(found[0], "readme", "{found:?}");
    assert!(
        found.contains(&"left-pad") && found.contains(&"lodash"),
        "{found:?}"
    );
    // Hybrid with `where`: left-pad holds the text but fails `year in (2012, 2016, 2021)`, so
    // it is in neither list: readme is first in the lexical list (lexical part 0.5 x 1 under
    // RRF; second, 0.5 x 61/62, if left-pad were a lexical candidate) and first overall.
    let hybrid_where = query(
        client,
        pb::QueryRequest {
            query_vector: vec![0.0, 0.0, 1.0],
            fusion: pb::Fusion::Rrf as i32,
            r#where: Some(year_in(&[2012, 2016, 2021])),
            ..text_query("left-pad")
        },
    )
    .await
    .expect("a hybrid query with where");
    let found = ids(&hybrid_where);
    assert_eq!(found[0], "readme", "{found:?}");
    assert!(
        found.contains(&"lodash") && found.contains(&"pad-right") && !found.contains(&"left-pad"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|id| [2012, 2016, 2021].contains(&year(id))),
        "{found:?}"
    );
    let explanation = hybrid_where.results[0]
        .explanation
        .as_ref()
        .expect("explained");
    assert!(
        (explanation.lexical_score - 0.5).abs() < 1e-9,
        "{explanation:?}"
    );
    // Graph expansion from text seeds: lodash is reached from left-pad.
    let expanded = query(
        client,
        pb::QueryRequest {
            max_hops: Some(1),
            seeds: Some(1),
            ..text_query("left-pad")
        },
    )
    .await
    .expect("an expanded text query");
    assert_eq!(ids(&expanded), ["left-pad", "lodash"]);
    vec![text, dotted, hybrid, expanded]
}

fn invalid(result: Result<pb::QueryResponse, tonic::Status>, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(field),
        "{field}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_queries_answer_explain_and_survive_a_kill() {
    // Dumps every second: the restart below loads a dump and catches up from the WAL.
    let mut daemon = Daemon::start("[index]\ndump_interval_secs = 1\n");
    let mut client = daemon.client().await;
    load(&mut client).await;
    let before = check_answers(&mut client).await;

    // The vector-only query is the same with or without the lexical index: no lexical part.
    let plain = query(
        &mut client,
        pb::QueryRequest {
            query_vector: vec![1.0, 0.0, 0.0],
            k: 2,
            max_hops: Some(0),
            explain: true,
            ..Default::default()
        },
    )
    .await
    .expect("a vector query");
    let explanation = plain.results[0].explanation.as_ref().expect("explained");
    assert!(explanation.lexical.is_none() && explanation.lexical_score == 0.0);

    // QueryBatch: text-only and fused queries equal the single queries.
    let batch = client
        .query_batch(request(
            pb::QueryBatchRequest {
                options: Some(pb::QueryRequest {
                    k: 5,
                    max_hops: Some(0),
                    include_entity: Some(false),
                    ..Default::default()
                }),
                vectors: Vec::new(),
                texts: vec!["left-pad".to_owned(), "json parser".to_owned()],
            },
            None,
        ))
        .await
        .expect("a text batch")
        .into_inner();
    assert_eq!(ids(&batch.replies[0]), ids(&before[0]));
    assert_eq!(ids(&batch.replies[1]), ["json-parse-fast"]);
    let fused = client
        .query_batch(request(
            pb::QueryBatchRequest {
                options: Some(pb::QueryRequest {
                    k: 5,
                    max_hops: Some(0),
                    include_entity: Some(false),
                    ..Default::default()
                }),
                vectors: vec![pb::QueryVector {
                    values: vec![0.0, 0.0, 1.0],
                }],
                texts: vec!["left-pad".to_owned()],
            },
            None,
        ))
        .await
        .expect("a fused batch")
        .into_inner();
    assert_eq!(ids(&fused.replies[0]), ids(&before[2]));

    // Bad input, each naming its field.
    invalid(
        query(&mut client, text_query("   ")).await,
        "text must not be empty",
    );
    invalid(
        query(&mut client, text_query(&"a".repeat(4097))).await,
        "the maximum is 4096",
    );
    invalid(
        query(&mut client, text_query("?!")).await,
        "text: text has no searchable word",
    );
    let vector_only = pb::QueryRequest {
        query_vector: vec![1.0, 0.0, 0.0],
        ..Default::default()
    };
    invalid(
        query(
            &mut client,
            pb::QueryRequest {
                fusion: pb::Fusion::Dbsf as i32,
                ..vector_only.clone()
            },
        )
        .await,
        "fusion needs both query_vector and text",
    );
    invalid(
        query(
            &mut client,
            pb::QueryRequest {
                lexical_weight: Some(0.5),
                ..text_query("left-pad")
            },
        )
        .await,
        "lexical_weight needs both",
    );
    invalid(
        query(
            &mut client,
            pb::QueryRequest {
                query_vector: vec![1.0, 0.0, 0.0],
                lexical_weight: Some(1.5),
                ..text_query("left-pad")
            },
        )
        .await,
        "lexical_weight must be in [0, 1]",
    );
    invalid(
        query(
            &mut client,
            pb::QueryRequest {
                query_vector: vec![1.0, 0.0, 0.0],
                rank_constant: Some(0),
                ..text_query("left-pad")
            },
        )
        .await,
        "rank_constant must be 1..=1000",
    );
    let batch_status = client
        .query_batch(request(
            pb::QueryBatchRequest {
                options: None,
                vectors: vec![pb::QueryVector {
                    values: vec![1.0, 0.0, 0.0],
                }],
                texts: vec!["a".to_owned(), "b".to_owned()],
            },
            None,
        ))
        .await
        .expect_err("mismatched lengths");
    assert_eq!(batch_status.code(), Code::InvalidArgument);
    assert!(
        batch_status
            .message()
            .contains("texts has 2 entries and vectors 1")
    );

    // The HTTP gateway: names for the fusion, 400 naming the field.
    let addr = daemon.http_addr.expect("the gateway listens");
    let reply = http_call(
        addr,
        "POST",
        "/query",
        None,
        r#"{"query_vector": [0, 0, 1], "text": "left-pad", "fusion": "DBSF", "lexical_weight": 0.5, "k": 2, "max_hops": 0}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let http_ids: Vec<&str> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["entity_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(http_ids.len(), 2);
    assert!(http_ids.contains(&"readme"), "{http_ids:?}");
    let reply = http_call(
        addr,
        "POST",
        "/query",
        None,
        r#"{"query_vector": [1, 0, 0], "fusion": "rrf"}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("fusion needs both"), "{}", reply.body);

    // A dump covers the load; one more entity is only in the WAL; then kill -9 and restart:
    // the lexical index is loaded from the dump and caught up, with the same answers.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = entity(
        "late-addition",
        "pkg",
        "late-addition: an alternative",
        [0.0, 0.7, 0.7],
    );
    client
        .put_entity(request(
            pb::PutEntityRequest {
                entity: Some(late),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("the late write succeeds");
    daemon.restart();
    assert!(
        daemon.wait_for_log(
            "indexes loaded and caught up from the WAL",
            1,
            std::time::Duration::from_secs(10)
        ),
        "the restart loads a dump: {}",
        daemon.log()
    );
    let mut client = daemon.client().await;
    let after = check_answers(&mut client).await;
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        // The hybrid answer's fifth result is the late entity now (its vector is the third
        // nearest); the first four are unchanged.
        let keep = if i == 2 { 4 } else { usize::MAX };
        let (a, b) = (ids(a), ids(b));
        assert_eq!(a[..keep.min(a.len())], b[..keep.min(b.len())], "answer {i}");
    }
    let late = query(&mut client, text_query("alternative"))
        .await
        .expect("a text query");
    assert_eq!(ids(&late), ["late-addition"]);
}

/// Words of the filler entities: none is a word of [`DOCS`], so [`check_answers`] holds with
/// them loaded.
const FILLER_WORDS: [&str; 8] = [
    "stream", "module", "widget", "async", "cache", "queue", "tree", "color",
];

/// `count` filler packages (`filler-<i>`): texts over [`FILLER_WORDS`] with varying lengths
/// and term frequencies, so the corpus statistics matter; vectors pointing away from every
/// query vector of [`check_answers`]; an edge from each to the next (the walk crosses nodes).
fn fillers(count: usize) -> Vec<pb::Entity> {
    (0..count)
        .map(|i| {
            let words: Vec<&str> = (0..1 + i % 7)
                .map(|j| FILLER_WORDS[(i * 3 + j * j) % FILLER_WORDS.len()])
                .collect();
            let text = format!("filler-{i}: {}", words.join(" "));
            let vector = [-1.0 - (i % 5) as f32, -1.0, -((i % 3) as f32)];
            let mut filler = entity(&format!("filler-{i}"), "pkg", &text, vector);
            filler.outgoing_edges = vec![pb::GraphEdge {
                to_entity: format!("filler-{}", (i + 1) % count),
                relation: "next".to_owned(),
                weight: 0.5,
                ..Default::default()
            }];
            filler
        })
        .collect()
}

/// The queries whose answers the ring must give exactly as one node: text only, hybrid under
/// both fusions, filtered (`filter`, and `where` on text-only and hybrid queries), and
/// expanded from text seeds over edges that cross nodes.
fn equivalence_queries() -> Vec<pb::QueryRequest> {
    let exact = |message: pb::QueryRequest| pb::QueryRequest {
        k: 10,
        weights: Some(pb::ScoringWeights {
            recency: Some(0.0),
            ..Default::default()
        }),
        ..message
    };
    let mut queries: Vec<pb::QueryRequest> = [
        "left-pad",
        "async cache module",
        "stream stream queue widget",
        "tree color json",
    ]
    .into_iter()
    .map(|text| exact(text_query(text)))
    .collect();
    for fusion in [pb::Fusion::Rrf, pb::Fusion::Dbsf] {
        queries.push(exact(pb::QueryRequest {
            query_vector: vec![-1.0, -1.0, -0.5],
            fusion: fusion as i32,
            ..text_query("cache queue widget")
        }));
    }
    queries.push(exact(pb::QueryRequest {
        filter: Some(pb::QueryFilter {
            entity_types: vec!["pkg".to_owned()],
            ..Default::default()
        }),
        ..text_query("module tree")
    }));
    queries.push(exact(pb::QueryRequest {
        max_hops: Some(2),
        seeds: Some(3),
        ..text_query("async widget")
    }));
    // `where` on the lexical candidates: a range, text only and fused with a vector, and an
    // `in` on a fused query.
    queries.push(exact(pb::QueryRequest {
        seeds: Some(4),
        r#where: Some(year_from(2015)),
        ..text_query("async cache module")
    }));
    queries.push(exact(pb::QueryRequest {
        query_vector: vec![-1.0, -1.0, -0.5],
        fusion: pb::Fusion::Rrf as i32,
        r#where: Some(year_from(2010)),
        ..text_query("stream queue left-pad")
    }));
    queries.push(exact(pb::QueryRequest {
        query_vector: vec![-1.0, -1.0, -0.5],
        fusion: pb::Fusion::Dbsf as i32,
        r#where: Some(year_in(&[2003, 2007, 2011, 2016, 2021])),
        ..text_query("cache tree left-pad")
    }));
    queries
}

/// Whether entity `id` passes `filter` (a [`year_from`] or a [`year_in`]).
fn passes(filter: &pb::FilterExpression, id: &str) -> bool {
    let of = |v: &Option<pb::AttributeValue>| v.as_ref().and_then(|v| v.int_value);
    match (&filter.gte, &filter.r#in) {
        (Some(gte), None) => of(&gte.value).is_some_and(|from| year(id) >= from),
        (None, Some(within)) => within.values.iter().any(|v| v.int_value == Some(year(id))),
        _ => panic!("not a year filter: {filter:?}"),
    }
}

/// What must be equal between one node and a ring: ids, scores and BM25 scores (to 1e-9),
/// matched terms with their shares, paths.
fn answer_digest(reply: &pb::QueryResponse) -> Vec<String> {
    reply
        .results
        .iter()
        .map(|r| {
            let explanation = r.explanation.clone().unwrap_or_default();
            let lexical = explanation.lexical.unwrap_or_default();
            let terms: Vec<String> = lexical
                .matched_terms
                .iter()
                .map(|t| format!("{}={:.9}", t.term, t.share))
                .collect();
            format!(
                "{} score={:.9} lexical={:.9} terms=[{}] path={:?}",
                r.entity_id,
                r.score,
                explanation.lexical_score,
                terms.join(","),
                explanation.path.map(|p| p.entity_ids).unwrap_or_default()
            )
        })
        .collect()
}

/// On a ring where no node holds every range (3 nodes, replication factor 2), every node
/// answers text and hybrid queries exactly as one node holding everything: BM25 scored with
/// the whole ring's statistics (each range counted once), the lists merged and fused, the
/// walk across owners; also with a routing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_scores_text_queries_as_one_node() {
    let single = Daemon::start("");
    let nodes = allidb_tests::ring::start_ring(3, "replication_factor = 2\n");
    let corpus: Vec<pb::Entity> = DOCS
        .iter()
        .map(|(id, kind, text, v)| entity(id, kind, text, *v))
        .chain(fillers(60))
        .collect();
    for client in [&mut single.client().await, &mut nodes[0].client().await] {
        let loaded = client
            .batch_put_entities(request(
                pb::BatchPutEntitiesRequest {
                    entities: corpus.clone(),
                    consistency_level: pb::ConsistencyLevel::ConsistencyAll as i32,
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("the load succeeds")
            .into_inner();
        assert!(loaded.success, "{loaded:?}");
    }
    let mut one = single.client().await;
    let mut expected = Vec::new();
    for message in equivalence_queries() {
        let reply = query(&mut one, message.clone()).await.expect("one node");
        assert!(!reply.results.is_empty(), "{message:?} finds something");
        if let Some(filter) = &message.r#where {
            for result in &reply.results {
                assert!(
                    passes(filter, &result.entity_id),
                    "{} fails {filter:?}",
                    result.entity_id
                );
            }
        }
        expected.push(answer_digest(&reply));
    }
    for (n, node) in nodes.iter().enumerate() {
        let mut client = node.client().await;
        check_answers(&mut client).await;
        for routing_key in ["", "user-42"] {
            for (message, want) in equivalence_queries().into_iter().zip(&expected) {
                let message = pb::QueryRequest {
                    routing_key: routing_key.to_owned(),
                    ..message
                };
                let reply = query(&mut client, message.clone())
                    .await
                    .unwrap_or_else(|e| panic!("n{n} answers {message:?}: {e:?}"));
                assert_eq!(
                    &answer_digest(&reply),
                    want,
                    "n{n}, routing key {routing_key:?}, {:?}",
                    message.text
                );
            }
        }
        let batch = client
            .query_batch(request(
                pb::QueryBatchRequest {
                    options: Some(pb::QueryRequest {
                        k: 10,
                        max_hops: Some(0),
                        weights: Some(pb::ScoringWeights {
                            recency: Some(0.0),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    vectors: Vec::new(),
                    texts: vec!["left-pad".to_owned(), "async cache module".to_owned()],
                },
                None,
            ))
            .await
            .expect("a text batch on a ring")
            .into_inner();
        let found: Vec<Vec<&str>> = batch.replies.iter().map(ids).collect();
        let want: Vec<Vec<&str>> = expected[..2]
            .iter()
            .map(|digest| {
                digest
                    .iter()
                    .map(|d| d.split(' ').next().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(found, want, "n{n}: the batch answers as the queries do");
    }
}
