//! Unit tests of request validation.

use tonic::Code;

use super::*;

fn good_entity() -> pb::Entity {
    pb::Entity {
        entity_id: "e1".into(),
        embeddings: vec![pb::VectorEmbedding {
            vector: vec![0.5, 0.5],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Asserts the error's code and that its message names `field`.
fn assert_rejects<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, field: &str) {
    let status = result.expect_err("the input must be rejected");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(field),
        "message {:?} does not name {field}",
        status.message()
    );
}

fn entity_with(change: impl FnOnce(&mut pb::Entity)) -> Result<(), Status> {
    let mut e = good_entity();
    change(&mut e);
    entity("entity", &e, "t1")
}

#[test]
fn accepts_a_good_entity_of_the_callers_tenant() {
    assert!(entity_with(|_| {}).is_ok());
    assert!(entity_with(|e| e.tenant_id = "t1".into()).is_ok());
}

#[test]
fn rejects_each_bad_entity_field() {
    use Code::{InvalidArgument as Inv, PermissionDenied as Denied};
    type Change = Box<dyn FnOnce(&mut pb::Entity)>;
    let cases: Vec<(Change, Code, &str)> = vec![
        (Box::new(|e| e.entity_id.clear()), Inv, "entity.entity_id"),
        (
            Box::new(|e| e.entity_id = "a\0b".into()),
            Inv,
            "entity.entity_id",
        ),
        (
            Box::new(|e| e.entity_id = "x".repeat(513)),
            Inv,
            "entity.entity_id",
        ),
        (
            Box::new(|e| e.tenant_id = "t2".into()),
            Denied,
            "entity.tenant_id",
        ),
        (
            Box::new(|e| e.entity_type = "t".repeat(MAX_ENTITY_TYPE_BYTES + 1)),
            Inv,
            "entity.entity_type",
        ),
        (
            Box::new(|e| e.importance = f64::NAN),
            Inv,
            "entity.importance",
        ),
        (
            Box::new(|e| e.embeddings[0].vector[1] = f32::NAN),
            Inv,
            "entity.embeddings[0].vector[1]",
        ),
        (
            Box::new(|e| e.embeddings[0].vector[0] = f32::INFINITY),
            Inv,
            "entity.embeddings[0].vector[0]",
        ),
        (
            Box::new(|e| e.embeddings[0].vector.clear()),
            Inv,
            "entity.embeddings[0].vector",
        ),
        (
            Box::new(|e| e.embeddings[0].vector = vec![0.0; MAX_VECTOR_DIM + 1]),
            Inv,
            "entity.embeddings[0].vector",
        ),
        (
            Box::new(|e| {
                e.embeddings.push(pb::VectorEmbedding {
                    vector: vec![1.0],
                    ..Default::default()
                })
            }),
            Inv,
            "entity.embeddings[1].vector",
        ),
        (
            Box::new(|e| e.embeddings[0].version = -1),
            Inv,
            "entity.embeddings[0].version",
        ),
        (
            Box::new(|e| {
                e.embeddings = vec![e.embeddings[0].clone(); MAX_EMBEDDINGS_PER_ENTITY + 1]
            }),
            Inv,
            "entity.embeddings",
        ),
        (
            Box::new(|e| e.outgoing_edges.push(pb::GraphEdge::default())),
            Inv,
            "entity.outgoing_edges[0].to_entity",
        ),
        (
            Box::new(|e| {
                e.outgoing_edges.push(pb::GraphEdge {
                    from_entity: "x".into(),
                    to_entity: "y".into(),
                    ..Default::default()
                })
            }),
            Inv,
            "entity.outgoing_edges[0].from_entity",
        ),
        (
            Box::new(|e| {
                e.outgoing_edges.push(pb::GraphEdge {
                    to_entity: "y".into(),
                    weight: f64::INFINITY,
                    ..Default::default()
                })
            }),
            Inv,
            "entity.outgoing_edges[0].weight",
        ),
        (
            Box::new(|e| {
                e.outgoing_edges.push(pb::GraphEdge {
                    to_entity: "y".into(),
                    relation: "r\0".into(),
                    ..Default::default()
                })
            }),
            Inv,
            "entity.outgoing_edges[0].relation",
        ),
        (
            Box::new(|e| {
                e.incoming_edges.push(pb::GraphEdge {
                    from_entity: "y".into(),
                    to_entity: "x".into(),
                    ..Default::default()
                })
            }),
            Inv,
            "entity.incoming_edges[0].to_entity",
        ),
        (
            Box::new(|e| {
                e.incoming_edges.push(pb::GraphEdge {
                    from_entity: "y".into(),
                    timestamp_nanos: -5,
                    ..Default::default()
                })
            }),
            Inv,
            "entity.incoming_edges[0].timestamp_nanos",
        ),
        (
            Box::new(|e| {
                e.chunks.push(pb::TextChunk {
                    text: "x".repeat(MAX_CHUNK_TEXT_BYTES + 1),
                    ..Default::default()
                })
            }),
            Inv,
            "entity.chunks[0].text",
        ),
        (
            Box::new(|e| {
                e.chunks.push(pb::TextChunk {
                    chunk_id: "x".repeat(MAX_CHUNK_ID_BYTES + 1),
                    ..Default::default()
                })
            }),
            Inv,
            "entity.chunks[0].chunk_id",
        ),
        (
            Box::new(|e| {
                e.chunks.push(pb::TextChunk::default());
                e.chunks[0]
                    .metadata
                    .insert("k".into(), "v".repeat(MAX_MAP_VALUE_BYTES + 1));
            }),
            Inv,
            "entity.chunks[0].metadata",
        ),
        (
            Box::new(|e| {
                e.attributes = (0..=MAX_MAP_ENTRIES)
                    .map(|i| (i.to_string(), String::new()))
                    .collect()
            }),
            Inv,
            "entity.attributes",
        ),
    ];
    for (change, code, field) in cases {
        assert_rejects(entity_with(change), code, field);
    }
}

#[test]
fn put_needs_an_entity_and_batches_need_entities() {
    assert_rejects(require_entity(None), Code::InvalidArgument, "entity");
    assert!(require_entity(Some(&good_entity())).is_ok());
    assert_rejects(batch_len("entities", 0), Code::InvalidArgument, "entities");
    assert_rejects(
        batch_len("entities", MAX_BATCH_ENTITIES + 1),
        Code::InvalidArgument,
        "entities",
    );
    assert!(batch_len("entities", 1).is_ok());
    assert_rejects(
        id_list("entity_ids", &[]),
        Code::InvalidArgument,
        "entity_ids",
    );
    assert_rejects(
        id_list("entity_ids", &["a".into(), String::new()]),
        Code::InvalidArgument,
        "entity_ids[1]",
    );
}

#[test]
fn query_defaults_and_limits() {
    let base = pb::QueryRequest {
        query_vector: vec![1.0, 0.0],
        ..Default::default()
    };
    let params = query(&base).unwrap();
    assert_eq!(
        (params.k, params.expand_factor),
        (DEFAULT_K, DEFAULT_EXPAND_FACTOR)
    );
    assert_eq!((params.ef, params.max_hops), (None, None));
    assert!(params.include_entity);
    assert_eq!(params.direction, pb::Direction::Out);

    let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
        let mut request = base.clone();
        change(&mut request);
        query(&request)
    };
    assert_eq!(with(&|r| r.k = -3).unwrap().k, DEFAULT_K);
    assert_eq!(with(&|r| r.k = 50).unwrap().k, 50);
    assert_eq!(with(&|r| r.max_hops = Some(0)).unwrap().max_hops, Some(0));
    assert!(
        !with(&|r| r.include_entity = Some(false))
            .unwrap()
            .include_entity
    );
    assert_eq!(
        with(&|r| r.weights = Some(pb::ScoringWeights {
            graph: Some(0.0),
            ..Default::default()
        }))
        .unwrap()
        .weights
        .graph,
        Some(0.0)
    );

    let inv = Code::InvalidArgument;
    assert_rejects(with(&|r| r.query_vector.clear()), inv, "query_vector");
    assert_rejects(
        with(&|r| r.query_vector[1] = f32::NAN),
        inv,
        "query_vector[1]",
    );
    assert_rejects(with(&|r| r.k = MAX_K as i32 + 1), inv, "k");
    assert_rejects(with(&|r| r.expand_factor = 1000), inv, "expand_factor");
    assert_rejects(with(&|r| r.ef = MAX_EF as i32 + 1), inv, "ef");
    assert_rejects(with(&|r| r.max_hops = Some(-1)), inv, "max_hops");
    assert_rejects(with(&|r| r.max_hops = Some(99)), inv, "max_hops");
    assert_rejects(with(&|r| r.direction = 9), inv, "direction");
    assert_rejects(with(&|r| r.hop_decay = Some(1.5)), inv, "hop_decay");
    assert_rejects(with(&|r| r.min_weight = f64::NAN), inv, "min_weight");
    assert_rejects(
        with(&|r| r.trace_id = "t".repeat(MAX_TRACE_ID_BYTES + 1)),
        inv,
        "trace_id",
    );
    assert_rejects(
        with(&|r| {
            r.weights = Some(pb::ScoringWeights {
                recency: Some(-1.0),
                ..Default::default()
            })
        }),
        inv,
        "weights.recency",
    );
    assert_rejects(
        with(&|r| r.relations = vec!["r\0".into()]),
        inv,
        "relations[0]",
    );
}

#[test]
fn query_batches_share_the_query_options_and_are_bounded() {
    let options = pb::QueryRequest {
        k: 7,
        ef: 80,
        max_hops: Some(2),
        explain: true,
        ..Default::default()
    };
    let vectors = |count: usize, dim: usize| {
        vec![
            pb::QueryVector {
                values: vec![0.5; dim],
            };
            count
        ]
    };
    let single = query(&pb::QueryRequest {
        query_vector: vec![0.5; 3],
        ..options.clone()
    })
    .unwrap();
    assert_eq!(query_batch(&options, &vectors(4, 3), &[]).unwrap(), single);
    let defaults = query_batch(&pb::QueryRequest::default(), &vectors(1, 3), &[]).unwrap();
    assert_eq!((defaults.k, defaults.ef), (DEFAULT_K, None));

    // Every rejection names its field by its path in the batch request, first thing.
    let rejects = |result: Result<QueryParams, Status>, field: &str| {
        let status = result.expect_err("the batch must be rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().starts_with(field),
            "message {:?} does not start with {field}",
            status.message()
        );
    };
    let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
        let mut changed = options.clone();
        change(&mut changed);
        query_batch(&changed, &vectors(2, 3), &[])
    };
    rejects(
        with(&|o| o.query_vector = vec![1.0]),
        "options.query_vector",
    );
    rejects(with(&|o| o.k = MAX_K as i32 + 1), "options.k");
    rejects(with(&|o| o.ef = MAX_EF as i32 + 1), "options.ef");
    rejects(with(&|o| o.max_hops = Some(9)), "options.max_hops");
    rejects(with(&|o| o.direction = 9), "options.direction");
    rejects(
        with(&|o| o.relations = vec!["r\0".into()]),
        "options.relations[0]",
    );
    rejects(
        with(&|o| o.trace_id = "t".repeat(MAX_TRACE_ID_BYTES + 1)),
        "options.trace_id",
    );

    rejects(query_batch(&options, &[], &[]), "vectors must not be empty");
    assert!(query_batch(&options, &vectors(MAX_QUERY_BATCH, 3), &[]).is_ok());
    rejects(
        query_batch(&options, &vectors(MAX_QUERY_BATCH + 1, 3), &[]),
        "vectors has 1001 entries, the maximum is 1000",
    );
    let dim = MAX_VECTOR_DIM;
    let most = MAX_QUERY_BATCH_VALUES / dim;
    assert!(query_batch(&options, &vectors(most, dim), &[]).is_ok());
    rejects(
        query_batch(&options, &vectors(most + 1, dim), &[]),
        "vectors hold 2101248 values in total, the maximum is 2097152",
    );
    let k1000 = pb::QueryRequest {
        k: MAX_K as i32,
        ..Default::default()
    };
    assert!(query_batch(&k1000, &vectors(100, 3), &[]).is_ok());
    rejects(
        query_batch(&k1000, &vectors(101, 3), &[]),
        "vectors x options.k = 101 x 1000 = 101000 results",
    );

    let mut bad = vectors(3, 3);
    bad[2].values[1] = f32::INFINITY;
    rejects(
        query_batch(&options, &bad, &[]),
        "vectors[2].values[1] must be finite",
    );
    bad[1].values.clear();
    rejects(
        query_batch(&options, &bad, &[]),
        "vectors[1].values must not be empty",
    );
}

#[test]
fn graph_rag_fields_defaults_and_limits() {
    let base = pb::QueryRequest {
        query_vector: vec![1.0, 0.0],
        ..Default::default()
    };
    let params = query(&base).unwrap();
    assert_eq!(
        (params.seeds, params.max_nodes, params.max_edges),
        (None, None, None)
    );
    assert_eq!(params.max_fan_out, DEFAULT_FAN_OUT);
    assert_eq!(params.max_context_bytes, DEFAULT_CONTEXT_BYTES);
    assert_eq!(params.ranking, Ranking::Unified);
    assert!(!params.include_context);
    let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
        let mut request = base.clone();
        change(&mut request);
        query(&request)
    };
    assert_eq!(with(&|r| r.seeds = Some(10)).unwrap().seeds, Some(10));
    let pagerank = with(&|r| {
        r.scoring = pb::ScoringMode::ScoringPersonalizedPagerank as i32;
        r.pagerank = Some(pb::PageRankOptions {
            damping: Some(0.5),
            ..Default::default()
        });
    })
    .unwrap();
    assert_eq!(
        pagerank.ranking,
        Ranking::PersonalizedPageRank(PageRankOptions {
            damping: 0.5,
            ..PageRankOptions::default()
        })
    );
    let inv = Code::InvalidArgument;
    assert_rejects(with(&|r| r.seeds = Some(0)), inv, "seeds");
    assert_rejects(with(&|r| r.seeds = Some(-5)), inv, "seeds");
    assert_rejects(with(&|r| r.max_nodes = Some(-1)), inv, "max_nodes");
    assert_rejects(with(&|r| r.max_edges = Some(-1)), inv, "max_edges");
    assert_rejects(with(&|r| r.max_edges = Some(100_001)), inv, "max_edges");
    assert_rejects(with(&|r| r.max_fan_out = Some(0)), inv, "max_fan_out");
    assert_rejects(
        with(&|r| r.max_context_bytes = Some(-1)),
        inv,
        "max_context_bytes",
    );
    assert_rejects(with(&|r| r.scoring = 7), inv, "scoring");
    let pr = |options: pb::PageRankOptions| {
        with(&move |r| {
            r.scoring = pb::ScoringMode::ScoringPersonalizedPagerank as i32;
            r.pagerank = Some(options);
        })
    };
    for damping in [0.0, 1.0, -0.2, f64::NAN] {
        assert_rejects(
            pr(pb::PageRankOptions {
                damping: Some(damping),
                ..Default::default()
            }),
            inv,
            "pagerank.damping",
        );
    }
    assert_rejects(
        pr(pb::PageRankOptions {
            max_iterations: Some(0),
            ..Default::default()
        }),
        inv,
        "pagerank.max_iterations",
    );
    assert_rejects(
        pr(pb::PageRankOptions {
            tolerance: Some(0.0),
            ..Default::default()
        }),
        inv,
        "pagerank.tolerance",
    );
    assert_rejects(
        pr(pb::PageRankOptions {
            similarity_weight: Some(2.0),
            ..Default::default()
        }),
        inv,
        "pagerank.similarity_weight",
    );
    assert_rejects(
        with(&|r| r.pagerank = Some(pb::PageRankOptions::default())),
        inv,
        "pagerank",
    );
    assert_rejects(
        within_server_limit("seeds", 1_001, 1_000).map(|_| ()),
        inv,
        "seeds",
    );
}

#[test]
fn traverse_defaults_and_limits() {
    let request = pb::TraverseRequest {
        start_ids: vec!["a".into()],
        ..Default::default()
    };
    let params = traverse(&request).unwrap();
    assert_eq!(
        (params.max_hops, params.max_nodes),
        (1, DEFAULT_TRAVERSE_NODES)
    );
    let mut too_deep = request.clone();
    too_deep.max_hops = MAX_TRAVERSE_HOPS as i32 + 1;
    assert_rejects(traverse(&too_deep), Code::InvalidArgument, "max_hops");
    assert_rejects(
        traverse(&pb::TraverseRequest::default()),
        Code::InvalidArgument,
        "start_ids",
    );
}

#[test]
fn consistency_resolves_unset_and_rejects_unknown() {
    use crate::http_model::consistency_level::UNSET;
    let quorum = pb::ConsistencyLevel::ConsistencyQuorum;
    assert_eq!(consistency(UNSET, quorum).unwrap(), quorum);
    assert_eq!(
        consistency(2, quorum).unwrap(),
        pb::ConsistencyLevel::ConsistencyAll
    );
    assert_rejects(
        consistency(3, quorum),
        Code::InvalidArgument,
        "consistency_level",
    );
}

#[test]
fn range_scan_bounds_limits_tenant_and_tokens() {
    const ONE: pb::ConsistencyLevel = pb::ConsistencyLevel::ConsistencyOne;
    let key = PageTokenKey::from_secret(b"a test key");
    let token = |id: &str| key.encode("t", ONE, id);
    let request = |start: &str, end: &str, limit: i32, token: &str| pb::RangeScanRequest {
        start_key: start.into(),
        end_key: end.into(),
        limit,
        page_token: token.into(),
        ..Default::default()
    };
    let scan =
        |request: &pb::RangeScanRequest, tenant: &str| range_scan(request, tenant, &key, ONE);
    let all = scan(&request("", "", 0, ""), "t").unwrap();
    assert_eq!(
        (all.lower, all.upper, all.limit, all.level),
        (Bound::Unbounded, Bound::Unbounded, DEFAULT_SCAN_LIMIT, ONE)
    );
    let first = scan(&request("b", "m", 5000, ""), "t").unwrap();
    assert_eq!(first.lower, Bound::Included("b".into()));
    assert_eq!(first.upper, Bound::Excluded("m".into()));
    assert_eq!(first.limit, MAX_SCAN_LIMIT);
    let next = scan(&request("b", "m", 10, &token("d")), "t").unwrap();
    assert_eq!(next.lower, Bound::Excluded("d".into()));
    // A token behind start_key cannot widen the scan.
    let behind = scan(&request("b", "", 10, &token("a")), "t").unwrap();
    assert_eq!(behind.lower, Bound::Included("b".into()));

    let mut foreign = request("", "", 0, "");
    foreign.tenant_id = "other".into();
    assert_rejects(scan(&foreign, "t"), Code::PermissionDenied, "tenant_id");
    assert_rejects(
        scan(&request("", "", 0, "%%"), "t"),
        Code::InvalidArgument,
        "page_token",
    );
    // Another tenant's token, and a token continued at another level.
    assert_rejects(
        scan(&request("", "", 0, &token("d")), "u"),
        Code::InvalidArgument,
        "page_token",
    );
    let mut quorum = request("", "", 0, &token("d"));
    quorum.consistency_level = pb::ConsistencyLevel::ConsistencyQuorum as i32;
    assert_rejects(
        scan(&quorum, "t"),
        Code::InvalidArgument,
        "consistency_level",
    );
}

#[test]
fn replica_keys() {
    assert_eq!(
        replica_key("t:a:b", "", "t").unwrap(),
        ReplicaKey {
            tenant: "t".into(),
            entity_id: "a:b".into()
        }
    );
    assert!(replica_key("t:a", "t", "t").is_ok());
    assert_rejects(replica_key("", "", "t"), Code::InvalidArgument, "key");
    assert_rejects(replica_key("ta", "", "t"), Code::InvalidArgument, "colon");
    assert_rejects(
        replica_key(":a", "", "t"),
        Code::InvalidArgument,
        "empty tenant",
    );
    assert_rejects(
        replica_key("t:", "", "t"),
        Code::InvalidArgument,
        "key entity id",
    );
    assert_rejects(
        replica_key("u:a", "", "t"),
        Code::PermissionDenied,
        "key tenant",
    );
    assert_rejects(
        replica_key("t:a", "u", "t"),
        Code::PermissionDenied,
        "tenant_id",
    );
}

#[test]
fn replica_values() {
    let key = replica_key("t:e1", "", "t").unwrap();
    let mut unnamed = good_entity();
    unnamed.entity_id.clear();
    let decoded = replica_value(&unnamed.encode_to_vec(), &key).unwrap();
    assert_eq!(decoded.entity_id, "e1");
    assert_rejects(
        replica_value(&[0xff, 0xff, 0xff], &key),
        Code::InvalidArgument,
        "value",
    );
    let mut other = good_entity();
    other.entity_id = "e2".into();
    assert_rejects(
        replica_value(&other.encode_to_vec(), &key),
        Code::InvalidArgument,
        "value.entity_id",
    );
    let mut foreign = good_entity();
    foreign.tenant_id = "u".into();
    assert_rejects(
        replica_value(&foreign.encode_to_vec(), &key),
        Code::PermissionDenied,
        "value.tenant_id",
    );
}

#[test]
fn edge_requests() {
    assert_rejects(
        add_edges(&pb::AddEdgesRequest::default()),
        Code::InvalidArgument,
        "edges",
    );
    assert_rejects(
        remove_edges(&pb::RemoveEdgesRequest {
            edges: vec![pb::EdgeKey {
                from_entity: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "edges[0].to_entity",
    );
    assert_rejects(
        graph_edge(
            "edge",
            &pb::GraphEdge {
                from_entity: "a".into(),
                to_entity: "b".into(),
                weight: f64::NAN,
                ..Default::default()
            },
        ),
        Code::InvalidArgument,
        "edge.weight",
    );
}
