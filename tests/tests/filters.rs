//! Filters beyond equality (issue 37, docs/api.md "Filters") against a real `allidbd`: typed
//! attributes round-trip and a key keeps its type per tenant; errors name the path inside the
//! filter, the size limits included; over HTTP an unknown key inside a filter is refused,
//! named; random filters over random typed attributes give exactly the ids a naive evaluator
//! (this file's own) gives, through `RangeScan` (every page) and exact `Query`s; `Traverse`
//! returns only reached entities that pass; `explain` names the plan (`exact` and
//! `filtered_hnsw`) and both selectivities; a ring (replication factor 1) answers filtered
//! queries, scans and traversals as one node.
//!
//! `ALLIDB_FILTER_PROPERTY_CASES` sets the number of random filters (default 120).

use std::collections::{BTreeMap, BTreeSet};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::Daemon;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

/// One typed value (exactly one field of `pb::AttributeValue`).
#[derive(Clone, Debug)]
enum Kind {
    StringValue(String),
    IntValue(i64),
    DoubleValue(f64),
    BoolValue(bool),
    TimestampNanos(i64),
    StringList(pb::StringList),
}

fn value(kind: Kind) -> pb::AttributeValue {
    let mut v = pb::AttributeValue::default();
    match kind {
        Kind::StringValue(s) => v.string_value = Some(s),
        Kind::IntValue(i) => v.int_value = Some(i),
        Kind::DoubleValue(f) => v.double_value = Some(f),
        Kind::BoolValue(b) => v.bool_value = Some(b),
        Kind::TimestampNanos(t) => v.timestamp_nanos = Some(t),
        Kind::StringList(l) => v.string_list = Some(l),
    }
    v
}

fn cond(field: &str, kind: Kind) -> Option<pb::FieldCondition> {
    Some(pb::FieldCondition {
        field: field.to_owned(),
        value: Some(value(kind)),
    })
}

/// Asserts `status` is `INVALID_ARGUMENT` with a message containing `expected`.
fn assert_invalid(status: &tonic::Status, expected: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(expected),
        "{} (expected {expected:?})",
        status.message()
    );
}

fn entity(id: &str, vector: Vec<f32>) -> pb::Entity {
    pb::Entity {
        entity_id: id.to_owned(),
        entity_type: "doc".to_owned(),
        embeddings: vec![pb::VectorEmbedding {
            vector,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn put(client: &mut Client, entity: pb::Entity) -> Result<(), tonic::Status> {
    client
        .put_entity(pb::PutEntityRequest {
            entity: Some(entity),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn typed_attributes_round_trip_and_a_key_keeps_its_type() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let mut a = entity("a", vec![1.0, 0.0]);
    a.attributes = BTreeMap::from([("lang".to_owned(), "en".to_owned())]);
    a.typed_attributes = BTreeMap::from([
        ("version".to_owned(), value(Kind::IntValue(3))),
        ("score".to_owned(), value(Kind::DoubleValue(0.5))),
        ("draft".to_owned(), value(Kind::BoolValue(false))),
        (
            "published".to_owned(),
            value(Kind::TimestampNanos(1_700_000_000_000_000_000)),
        ),
        (
            "tags".to_owned(),
            value(Kind::StringList(pb::StringList {
                values: vec!["x".into(), "y".into()],
            })),
        ),
    ]);
    put(&mut client, a.clone()).await.unwrap();
    let got = client
        .get_entity(pb::GetEntityRequest {
            entity_id: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entity
        .unwrap();
    assert_eq!(got.typed_attributes, a.typed_attributes);
    assert_eq!(got.attributes, a.attributes);

    // "version" is a number in this tenant: a string is refused, typed or not.
    let mut b = entity("b", vec![0.0, 1.0]);
    b.typed_attributes =
        BTreeMap::from([("version".to_owned(), value(Kind::StringValue("v2".into())))]);
    let status = put(&mut client, b.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for needle in ["\"version\"", "is a string", "holds it as number"] {
        assert!(status.message().contains(needle), "{}", status.message());
    }
    b.typed_attributes.clear();
    b.attributes = BTreeMap::from([("version".to_owned(), "7".to_owned())]);
    let status = put(&mut client, b.clone()).await.unwrap_err();
    assert!(
        status.message().contains("holds it as number"),
        "{}",
        status.message()
    );
    // A float is a number too; the entity holding the key may change its own value's type.
    b.attributes.clear();
    b.typed_attributes = BTreeMap::from([("version".to_owned(), value(Kind::DoubleValue(2.5)))]);
    put(&mut client, b.clone()).await.unwrap();
    // One key in both maps.
    let mut c = entity("c", vec![1.0, 1.0]);
    c.attributes = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    c.typed_attributes = BTreeMap::from([("k".to_owned(), value(Kind::IntValue(1)))]);
    let status = put(&mut client, c).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("entity.typed_attributes[\"k\"]"),
        "{}",
        status.message()
    );
    let mut nan = entity("d", vec![1.0, 1.0]);
    nan.typed_attributes = BTreeMap::from([("x".to_owned(), value(Kind::DoubleValue(f64::NAN)))]);
    let status = put(&mut client, nan).await.unwrap_err();
    assert!(
        status.message().contains("must be finite"),
        "{}",
        status.message()
    );
    // Once no live entity holds the key as a number, it may take another type.
    for id in ["a", "b"] {
        client
            .delete_entity(pb::DeleteEntityRequest {
                entity_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut e = entity("e", vec![1.0, 0.0]);
    e.typed_attributes =
        BTreeMap::from([("version".to_owned(), value(Kind::StringValue("v2".into())))]);
    put(&mut client, e).await.unwrap();
}

fn query(filter: pb::FilterExpression) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vec![1.0, 0.0],
        k: 10,
        r#where: Some(filter),
        ..Default::default()
    }
}

#[tokio::test]
async fn filter_errors_name_the_path_inside_the_filter() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let mut a = entity("a", vec![1.0, 0.0]);
    a.attributes = BTreeMap::from([("lang".to_owned(), "en".to_owned())]);
    a.typed_attributes = BTreeMap::from([("version".to_owned(), value(Kind::IntValue(3)))]);
    put(&mut client, a).await.unwrap();
    let exists = pb::FilterExpression {
        exists: "lang".into(),
        ..Default::default()
    };
    let gt = |field: &str, kind| pb::FilterExpression {
        gt: cond(field, kind),
        ..Default::default()
    };
    let and = |third| pb::FilterExpression {
        and: vec![exists.clone(), exists.clone(), third],
        ..Default::default()
    };
    let cases = [
        (
            and(gt("version", Kind::StringValue("2".into()))),
            "where.and[2].gt.version: gt needs a number or a timestamp, got a string",
        ),
        (
            and(gt("lang", Kind::IntValue(2))),
            "where.and[2].gt.lang: attribute \"lang\" holds string values, the filter gives a number",
        ),
        (
            and(gt("version", Kind::DoubleValue(f64::INFINITY))),
            "where.and[2].gt.version must be finite",
        ),
        (
            pb::FilterExpression {
                eq: cond("lang", Kind::StringValue("en".into())),
                exists: "lang".into(),
                ..Default::default()
            },
            "where sets 2 operators (eq, exists)",
        ),
        (pb::FilterExpression::default(), "where sets no operator"),
        (
            pb::FilterExpression {
                contains: cond("lang", Kind::StringValue("en".into())),
                ..Default::default()
            },
            "where.contains.lang: contains needs a string_list attribute",
        ),
        // The size limits (api/src/filter.rs): 1,024 nodes (the root and its 1,023 first
        // operands fit; the next operand is the 1,025th node) and 1,024 `in` values.
        (
            pb::FilterExpression {
                and: vec![exists.clone(); 1025],
                ..Default::default()
            },
            "where.and[1023]: the filter has more than 1024 nodes",
        ),
        (
            pb::FilterExpression {
                r#in: Some(pb::FieldValues {
                    field: "version".into(),
                    values: (0..1025).map(|i| value(Kind::IntValue(i))).collect(),
                }),
                ..Default::default()
            },
            "where.in.version has 1025 values, the maximum is 1024",
        ),
    ];
    for (filter, expected) in cases {
        let status = client.query(query(filter.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(expected),
            "{} / {expected}",
            status.message()
        );
        let status = client
            .range_scan(pb::RangeScanRequest {
                r#where: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            status.message().contains(expected),
            "{} / {expected}",
            status.message()
        );
        let status = client
            .traverse(pb::TraverseRequest {
                start_ids: vec!["a".into()],
                r#where: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            status.message().contains(expected),
            "{} / {expected}",
            status.message()
        );
    }
    // At the limits exactly: 1,024 nodes, 1,024 `in` values.
    let at_limits = [
        pb::FilterExpression {
            and: vec![exists.clone(); 1023],
            ..Default::default()
        },
        pb::FilterExpression {
            r#in: Some(pb::FieldValues {
                field: "version".into(),
                values: (0..1024).map(|i| value(Kind::IntValue(i))).collect(),
            }),
            ..Default::default()
        },
    ];
    for filter in at_limits {
        let ids: Vec<String> = client
            .query(query(filter))
            .await
            .unwrap()
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.entity_id)
            .collect();
        assert_eq!(ids, ["a"]);
    }
    let mut deep = exists;
    for _ in 0..16 {
        deep = pb::FilterExpression {
            not: Some(Box::new(deep)),
            ..Default::default()
        };
    }
    let status = client.query(query(deep)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("nested more than 16 levels deep"),
        "{}",
        status.message()
    );
}

/// The test's model of one entity's filterable fields.
#[derive(Clone, Debug)]
struct Row {
    id: String,
    entity_type: String,
    /// n: number (int or float), s: string, b: bool, t: timestamp, l: string list.
    attributes: BTreeMap<String, Kind>,
}

/// A filter, as sent and as this file evaluates it.
#[derive(Clone, Debug)]
enum F {
    And(Vec<F>),
    Or(Vec<F>),
    Not(Box<F>),
    Cmp(&'static str, String, Kind),
    In(bool, String, Vec<Kind>),
    Exists(String),
    Contains(String, String),
    Prefix(String, String),
}

fn field_of(row: &Row, field: &str) -> Option<Kind> {
    match field {
        "entity_type" if row.entity_type.is_empty() => None,
        "entity_type" => Some(Kind::StringValue(row.entity_type.clone())),
        "entity_id" => Some(Kind::StringValue(row.id.clone())),
        key => row.attributes.get(key).cloned(),
    }
}

fn as_number(kind: &Kind) -> Option<f64> {
    match kind {
        Kind::IntValue(i) => Some(*i as f64),
        Kind::DoubleValue(f) => Some(*f),
        _ => None,
    }
}

/// The order of a stored value and a filter value of the same family (values here are small:
/// f64 is exact for them).
fn order(stored: &Kind, value: &Kind) -> Option<std::cmp::Ordering> {
    match (stored, value) {
        (Kind::StringValue(a), Kind::StringValue(b)) => Some(a.cmp(b)),
        (Kind::BoolValue(a), Kind::BoolValue(b)) => Some(a.cmp(b)),
        (Kind::TimestampNanos(a), Kind::TimestampNanos(b)) => Some(a.cmp(b)),
        (a, b) => as_number(a)?.partial_cmp(&as_number(b)?),
    }
}

fn naive(row: &Row, f: &F) -> bool {
    use std::cmp::Ordering::*;
    match f {
        F::And(parts) => parts.iter().all(|p| naive(row, p)),
        F::Or(parts) => parts.iter().any(|p| naive(row, p)),
        F::Not(p) => !naive(row, p),
        F::Cmp(op, field, value) => {
            let o = field_of(row, field).and_then(|s| order(&s, value));
            match *op {
                "eq" => o == Some(Equal),
                "ne" => o != Some(Equal),
                "gt" => o == Some(Greater),
                "gte" => matches!(o, Some(Greater | Equal)),
                "lt" => o == Some(Less),
                _ => matches!(o, Some(Less | Equal)),
            }
        }
        F::In(negated, field, values) => {
            let stored = field_of(row, field);
            let any = values
                .iter()
                .any(|v| stored.as_ref().and_then(|s| order(s, v)) == Some(Equal));
            any != *negated
        }
        F::Exists(field) => field_of(row, field).is_some(),
        F::Contains(field, value) => {
            matches!(field_of(row, field), Some(Kind::StringList(l)) if l.values.contains(value))
        }
        F::Prefix(field, prefix) => {
            matches!(field_of(row, field), Some(Kind::StringValue(s)) if s.starts_with(prefix.as_str()))
        }
    }
}

fn to_proto(f: &F) -> pb::FilterExpression {
    let mut e = pb::FilterExpression::default();
    match f {
        F::And(parts) => e.and = parts.iter().map(to_proto).collect(),
        F::Or(parts) => e.or = parts.iter().map(to_proto).collect(),
        F::Not(p) => e.not = Some(Box::new(to_proto(p))),
        F::Cmp(op, field, kind) => {
            let c = cond(field, kind.clone());
            match *op {
                "eq" => e.eq = c,
                "ne" => e.ne = c,
                "gt" => e.gt = c,
                "gte" => e.gte = c,
                "lt" => e.lt = c,
                _ => e.lte = c,
            }
        }
        F::In(negated, field, values) => {
            let v = Some(pb::FieldValues {
                field: field.clone(),
                values: values.iter().cloned().map(value).collect(),
            });
            if *negated { e.nin = v } else { e.r#in = v }
        }
        F::Exists(field) => e.exists = field.clone(),
        F::Contains(field, v) => e.contains = cond(field, Kind::StringValue(v.clone())),
        F::Prefix(field, v) => e.prefix = cond(field, Kind::StringValue(v.clone())),
    }
    e
}

const WORDS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];

fn word(rng: &mut StdRng) -> String {
    WORDS[rng.random_range(0..WORDS.len())].to_owned()
}

fn number(rng: &mut StdRng) -> Kind {
    if rng.random_bool(0.5) {
        Kind::IntValue(rng.random_range(-5..5))
    } else {
        Kind::DoubleValue(f64::from(rng.random_range(-10i32..10)) / 2.0)
    }
}

fn random_row(rng: &mut StdRng, i: usize) -> Row {
    let mut attributes = BTreeMap::new();
    if rng.random_bool(0.8) {
        attributes.insert("n".to_owned(), number(rng));
    }
    if rng.random_bool(0.8) {
        attributes.insert("s".to_owned(), Kind::StringValue(word(rng)));
    }
    if rng.random_bool(0.7) {
        attributes.insert("b".to_owned(), Kind::BoolValue(rng.random_bool(0.5)));
    }
    if rng.random_bool(0.7) {
        attributes.insert(
            "t".to_owned(),
            Kind::TimestampNanos(rng.random_range(-3..3) * 1_000_000_000),
        );
    }
    if rng.random_bool(0.7) {
        let n = rng.random_range(0..3);
        attributes.insert(
            "l".to_owned(),
            Kind::StringList(pb::StringList {
                values: (0..n).map(|_| word(rng)).collect(),
            }),
        );
    }
    Row {
        id: format!("e{i:03}"),
        entity_type: ["doc", "img", ""][rng.random_range(0..3)].to_owned(),
        attributes,
    }
}

fn random_leaf(rng: &mut StdRng) -> F {
    const CMPS: [&str; 6] = ["eq", "ne", "gt", "gte", "lt", "lte"];
    match rng.random_range(0..11) {
        0 => F::Cmp(CMPS[rng.random_range(0..6)], "n".into(), number(rng)),
        1 => F::Cmp(
            CMPS[rng.random_range(0..6)],
            "t".into(),
            Kind::TimestampNanos(rng.random_range(-3..3) * 1_000_000_000),
        ),
        2 => F::Cmp(
            ["eq", "ne"][rng.random_range(0..2)],
            "s".into(),
            Kind::StringValue(word(rng)),
        ),
        3 => F::Cmp(
            ["eq", "ne"][rng.random_range(0..2)],
            "b".into(),
            Kind::BoolValue(rng.random_bool(0.5)),
        ),
        4 => {
            let n = rng.random_range(0..4);
            F::In(
                rng.random_bool(0.5),
                "n".into(),
                (0..n).map(|_| number(rng)).collect(),
            )
        }
        5 => {
            let n = rng.random_range(1..3);
            let types = ["doc", "img", "zzz"];
            F::In(
                rng.random_bool(0.5),
                "entity_type".into(),
                (0..n)
                    .map(|_| Kind::StringValue(types[rng.random_range(0..3)].into()))
                    .collect(),
            )
        }
        6 => {
            F::Exists(["n", "s", "b", "t", "l", "zz", "entity_type"][rng.random_range(0..7)].into())
        }
        7 => F::Contains("l".into(), word(rng)),
        8 => F::Prefix(
            ["s", "entity_type"][rng.random_range(0..2)].into(),
            word(rng),
        ),
        9 => F::Cmp(
            "eq",
            "entity_id".into(),
            Kind::StringValue(format!("e{:03}", rng.random_range(0..320))),
        ),
        _ => F::Prefix("entity_id".into(), format!("e{}", rng.random_range(0..4))),
    }
}

fn random_filter(rng: &mut StdRng, depth: usize) -> F {
    if depth == 0 || rng.random_bool(0.4) {
        return random_leaf(rng);
    }
    match rng.random_range(0..3) {
        0 => F::And(
            (0..rng.random_range(1..4))
                .map(|_| random_filter(rng, depth - 1))
                .collect(),
        ),
        1 => F::Or(
            (0..rng.random_range(1..4))
                .map(|_| random_filter(rng, depth - 1))
                .collect(),
        ),
        _ => F::Not(Box::new(random_filter(rng, depth - 1))),
    }
}

#[tokio::test]
async fn random_filters_give_exactly_the_ids_a_naive_evaluator_gives() {
    const ENTITIES: usize = 300;
    let cases: usize = std::env::var("ALLIDB_FILTER_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let mut rng = StdRng::seed_from_u64(37);
    let rows: Vec<Row> = (0..ENTITIES).map(|i| random_row(&mut rng, i)).collect();
    let entities = rows
        .iter()
        .map(|row| {
            let v: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut e = entity(&row.id, v);
            e.entity_type = row.entity_type.clone();
            e.typed_attributes = row
                .attributes
                .iter()
                .filter(|(k, _)| k.as_str() != "s")
                .map(|(k, v)| (k.clone(), value(v.clone())))
                .collect();
            // Strings go half untyped, half typed: one type either way.
            if let Some(Kind::StringValue(s)) = row.attributes.get("s") {
                if row.id.ends_with(['0', '2', '4', '6', '8']) {
                    e.attributes.insert("s".into(), s.clone());
                } else {
                    e.typed_attributes
                        .insert("s".into(), value(Kind::StringValue(s.clone())));
                }
            }
            e
        })
        .collect();
    let reply = client
        .batch_put_entities(pb::BatchPutEntitiesRequest {
            entities,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.failure_count, 0, "{}", reply.error_message);
    for case in 0..cases {
        let f = random_filter(&mut rng, 3);
        let expected: BTreeSet<String> = rows
            .iter()
            .filter(|r| naive(r, &f))
            .map(|r| r.id.clone())
            .collect();
        let filter = to_proto(&f);
        // RangeScan, every page.
        let limit = rng.random_range(7..60);
        let mut scanned = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .range_scan(pb::RangeScanRequest {
                    limit,
                    page_token: token.clone(),
                    r#where: Some(filter.clone()),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("case {case} {f:?}: {s:?}"))
                .into_inner();
            assert!(page.entities.len() <= limit as usize);
            scanned.extend(page.entities.into_iter().map(|e| e.entity_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let scanned_set: BTreeSet<String> = scanned.iter().cloned().collect();
        assert_eq!(scanned.len(), scanned_set.len(), "case {case}: an id twice");
        assert_eq!(scanned_set, expected, "case {case}: RangeScan of {f:?}");
        // An exact query: every match fits in k (and the tenant is small: exact plan).
        let reply = client
            .query(pb::QueryRequest {
                query_vector: vec![1.0, 0.5, -0.5, 0.25],
                k: ENTITIES as i32,
                max_hops: Some(0),
                include_entity: Some(false),
                explain: true,
                r#where: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("case {case} {f:?}: {s:?}"))
            .into_inner();
        let queried: BTreeSet<String> = reply.results.into_iter().map(|r| r.entity_id).collect();
        assert_eq!(queried, expected, "case {case}: Query of {f:?}");
        let plan = reply.filter_plan.expect("explain reports the plan");
        assert_eq!(plan.plan, "exact", "case {case}");
        assert_eq!(plan.matched as usize, expected.len(), "case {case}");
        assert_eq!(plan.entities as usize, ENTITIES);
    }
}

#[tokio::test]
async fn traverse_returns_only_reached_entities_that_pass() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    for i in 0..6i64 {
        let mut e = entity(&format!("n{i}"), vec![1.0, i as f32]);
        e.typed_attributes = BTreeMap::from([("rank".to_owned(), value(Kind::IntValue(i)))]);
        if i < 5 {
            e.outgoing_edges = vec![pb::GraphEdge {
                to_entity: format!("n{}", i + 1),
                relation: "next".into(),
                weight: 1.0,
                ..Default::default()
            }];
        }
        put(&mut client, e).await.unwrap();
    }
    let odd = pb::FilterExpression {
        r#in: Some(pb::FieldValues {
            field: "rank".into(),
            values: vec![value(Kind::IntValue(1)), value(Kind::IntValue(3))],
        }),
        ..Default::default()
    };
    for include_entity in [true, false] {
        let reply = client
            .traverse(pb::TraverseRequest {
                start_ids: vec!["n0".into()],
                max_hops: 5,
                include_entity: Some(include_entity),
                r#where: Some(odd.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = reply.nodes.iter().map(|n| n.entity_id.as_str()).collect();
        // The walk goes through n2 (filtered out) to reach n3.
        assert_eq!(ids, ["n1", "n3"]);
        assert_eq!(reply.nodes[1].depth, 3);
        assert!(
            reply
                .nodes
                .iter()
                .all(|n| n.entity.is_some() == include_entity)
        );
    }
}

/// On a ring (3 nodes, replication factor 1: each node holds a third), `where` travels to every
/// replica inside the seed search (`EntityFilter.expression`) and the answers equal a single
/// node's holding the same entities: the same ids in the same order for queries, the same
/// pages for scans, the same nodes (depth and path) for traversals whose walk crosses the
/// nodes, each passing the filter; a filter of the wrong type is refused before the fan-out.
#[tokio::test]
async fn a_ring_answers_filtered_reads_as_one_node() {
    const ENTITIES: usize = 150;
    let single = Daemon::start("");
    let ring = allidb_tests::ring::start_ring(3, "replication_factor = 1\n");
    let mut rng = StdRng::seed_from_u64(7);
    let rows: Vec<Row> = (0..ENTITIES).map(|i| random_row(&mut rng, i)).collect();
    let entities: Vec<pb::Entity> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let v: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut e = entity(&row.id, v);
            e.entity_type = row.entity_type.clone();
            e.typed_attributes = row
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), value(v.clone())))
                .collect();
            // Two edges each (the next id and a far one): traversals cross the nodes.
            e.outgoing_edges = [(i + 1) % ENTITIES, (i * 7 + 3) % ENTITIES]
                .into_iter()
                .map(|to| pb::GraphEdge {
                    to_entity: format!("e{to:03}"),
                    relation: "link".into(),
                    weight: 1.0,
                    ..Default::default()
                })
                .collect();
            e
        })
        .collect();
    let mut one = single.client().await;
    let mut through = ring[1].client().await;
    for client in [&mut one, &mut through] {
        let reply = client
            .batch_put_entities(pb::BatchPutEntitiesRequest {
                entities: entities.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.failure_count, 0, "{}", reply.error_message);
    }
    let weights = pb::ScoringWeights {
        vector: Some(1.0),
        graph: Some(0.0),
        importance: Some(0.0),
        recency: Some(0.0),
    };
    let mut traversed = 0;
    for case in 0..25 {
        let f = random_filter(&mut rng, 2);
        let request = pb::QueryRequest {
            query_vector: vec![0.5, -0.25, 1.0, 0.0],
            k: 20,
            max_hops: Some(0),
            include_entity: Some(false),
            weights: Some(weights),
            r#where: Some(to_proto(&f)),
            ..Default::default()
        };
        let ids = |reply: pb::QueryResponse| -> Vec<String> {
            reply.results.into_iter().map(|r| r.entity_id).collect()
        };
        let expected = ids(one.query(request.clone()).await.unwrap().into_inner());
        let got = ids(through.query(request).await.unwrap().into_inner());
        assert_eq!(got, expected, "case {case}: {f:?}");
        let naive_count = rows.iter().filter(|r| naive(r, &f)).count();
        assert_eq!(expected.len(), naive_count.min(20), "case {case}");
        let scan = pb::RangeScanRequest {
            limit: 1000,
            r#where: Some(to_proto(&f)),
            ..Default::default()
        };
        let page = |reply: pb::RangeScanResponse| -> Vec<String> {
            reply.entities.into_iter().map(|e| e.entity_id).collect()
        };
        let expected = page(one.range_scan(scan.clone()).await.unwrap().into_inner());
        let got = page(through.range_scan(scan).await.unwrap().into_inner());
        assert_eq!(got, expected, "case {case}: scan of {f:?}");
        // Traverse with `where`: the walk is not pruned, only the reached entities that pass
        // are returned, in walk order, with their depth and path.
        let traverse = pb::TraverseRequest {
            start_ids: vec![
                format!("e{:03}", case * 6),
                format!("e{:03}", (case * 6 + 100) % ENTITIES),
            ],
            max_hops: 3,
            include_entity: Some(false),
            r#where: Some(to_proto(&f)),
            ..Default::default()
        };
        let nodes = |reply: pb::TraverseResponse| -> Vec<String> {
            reply
                .nodes
                .into_iter()
                .map(|n| {
                    let path = n.path.map(|p| p.entity_ids).unwrap_or_default();
                    format!("{} depth={} path={path:?}", n.entity_id, n.depth)
                })
                .collect()
        };
        let expected = nodes(one.traverse(traverse.clone()).await.unwrap().into_inner());
        let got = nodes(through.traverse(traverse).await.unwrap().into_inner());
        assert_eq!(got, expected, "case {case}: traverse with {f:?}");
        for node in &expected {
            let id = node.split(' ').next().unwrap();
            let row = rows.iter().find(|r| r.id == id).unwrap();
            assert!(naive(row, &f), "case {case}: {id} fails {f:?}");
        }
        traversed += expected.len();
    }
    // The walks found something to filter (the cases are not all empty).
    assert!(traversed > 25, "{traversed} nodes over 25 traversals");
    let status = through
        .query(pb::QueryRequest {
            query_vector: vec![0.5, -0.25, 1.0, 0.0],
            r#where: Some(pb::FilterExpression {
                gt: cond("s", Kind::IntValue(1)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "where.gt.s: attribute \"s\" holds string values");
    let status = through
        .traverse(pb::TraverseRequest {
            start_ids: vec!["e000".into()],
            r#where: Some(pb::FilterExpression {
                gt: cond("s", Kind::IntValue(1)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "where.gt.s: attribute \"s\" holds string values");
}

/// On a ring whose nodes each hold a part of the data (3 nodes, replication factor 1), a key
/// keeps its type across the ring (docs/cluster.md "Attribute types on a ring"): a put through
/// a node holding no entity with the key is refused when another node holds it as another
/// type, a `where` of another type is refused there too (the log's record), and once no live
/// entity holds the key it may take another type, through any node. The check's internal calls
/// refuse malformed requests naming the field.
#[tokio::test]
async fn a_key_keeps_its_type_across_a_ring() {
    let ring = allidb_tests::ring::start_ring(3, "replication_factor = 1\n");
    let names = ["n0", "n1", "n2"];
    let node = |name: &str| &ring[names.iter().position(|n| *n == name).unwrap()];
    let typed = |id: &str, kind: Kind| {
        let mut e = entity(id, vec![1.0, 0.0]);
        e.typed_attributes = BTreeMap::from([("version".to_owned(), value(kind))]);
        e
    };
    put(&mut ring[0].client().await, typed("a", Kind::IntValue(3)))
        .await
        .unwrap();
    let holder = allidb_tests::ring::replicas_of(&ring[0], "a").remove(0);
    let others: Vec<&str> = names.into_iter().filter(|n| *n != holder).collect();
    for name in &others {
        let mut client = node(name).client().await;
        let status = put(&mut client, typed("b", Kind::StringValue("v2".into())))
            .await
            .unwrap_err();
        assert_invalid(&status, "attribute \"version\" is a string");
        assert_invalid(&status, "holds it as number");
        let mut untyped = entity("b", vec![1.0, 0.0]);
        untyped.attributes = BTreeMap::from([("version".to_owned(), "7".to_owned())]);
        let status = put(&mut client, untyped).await.unwrap_err();
        assert_invalid(&status, "holds it as number");
        let status = client
            .range_scan(pb::RangeScanRequest {
                r#where: Some(pb::FilterExpression {
                    gt: cond("version", Kind::TimestampNanos(5)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(
            &status,
            "where.gt.version: attribute \"version\" holds number values",
        );
    }
    // No live entity holds the key once "a" is deleted: another type is taken, and then kept.
    let mut first = node(others[0]).client().await;
    first
        .delete_entity(pb::DeleteEntityRequest {
            entity_id: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    put(&mut first, typed("b", Kind::StringValue("v2".into())))
        .await
        .unwrap();
    let b_holder = allidb_tests::ring::replicas_of(&ring[0], "b").remove(0);
    for name in names.into_iter().filter(|n| *n != b_holder) {
        let status = put(
            &mut node(name).client().await,
            typed("c", Kind::IntValue(1)),
        )
        .await
        .unwrap_err();
        assert_invalid(&status, "holds it as string");
    }
    // The two internal calls of the check refuse malformed requests, naming the field.
    use allidb_cluster::proto as internal;
    use allidb_tests::ring::{host_id_of, internal_header, topology_version, with_token};
    let n0 = &ring[0];
    let header = Some(internal_header(&host_id_of(n0, "n0"), topology_version(n0)));
    let mut replica = internal::replica_client::ReplicaClient::new(n0.channel().await);
    let claim = |family: &str| internal::AttributeClaim {
        entity_id: "x".into(),
        key: "unheld".into(),
        r#type: family.into(),
    };
    let check = |claims| {
        with_token(internal::CheckAttributeTypesRequest {
            header: header.clone(),
            tenant: "default".into(),
            claims,
        })
    };
    let answer = replica
        .check_attribute_types(check(vec![claim("number")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.refusal, "", "no entity holds the key");
    for (claims, expected) in [
        (
            vec![claim("integer")],
            "claims[0].type: \"integer\" is not a type",
        ),
        (
            vec![claim("number"); 65_537],
            "claims: 65537 claims, at most 65536",
        ),
    ] {
        let status = replica
            .check_attribute_types(check(claims))
            .await
            .unwrap_err();
        assert_invalid(&status, expected);
    }
    let mut topology = internal::topology_client::TopologyClient::new(n0.channel().await);
    let change = |key: &str, family: &str| internal::AttributeTypeChange {
        key: key.into(),
        expected: String::new(),
        r#type: family.into(),
    };
    for (changes, expected) in [
        (vec![], "changes: 0 changes, expected 1..=1024"),
        (vec![change("", "number")], "changes[0].key: empty"),
        (
            vec![change("k", "integer")],
            "changes[0].type: \"integer\" is not a type",
        ),
    ] {
        let status = topology
            .record_attribute_types(with_token(internal::RecordAttributeTypesRequest {
                header: header.clone(),
                tenant: "default".into(),
                changes,
                forwarded: false,
            }))
            .await
            .unwrap_err();
        assert_invalid(&status, expected);
    }
}

/// Typed attributes, the key types and the payload index survive a restart (the index dump's
/// facts, payload format 2, reloaded; and again after a kill, caught up from the WAL).
#[tokio::test]
async fn typed_attributes_and_their_filters_survive_restarts() {
    let mut daemon = Daemon::start("");
    let mut client = daemon.client().await;
    for i in 0..20i64 {
        let mut e = entity(&format!("r{i:02}"), vec![1.0, i as f32]);
        e.typed_attributes = BTreeMap::from([("rank".to_owned(), value(Kind::IntValue(i)))]);
        put(&mut client, e).await.unwrap();
    }
    let ranked = |below: i64| pb::RangeScanRequest {
        r#where: Some(pb::FilterExpression {
            lt: cond("rank", Kind::IntValue(below)),
            ..Default::default()
        }),
        ..Default::default()
    };
    for round in 0..3 {
        match round {
            1 => daemon.restart(),
            2 => {
                daemon.kill();
                daemon.restart();
            }
            _ => {}
        }
        let mut client = daemon.client().await;
        let page = client.range_scan(ranked(5)).await.unwrap().into_inner();
        let ids: Vec<String> = page.entities.into_iter().map(|e| e.entity_id).collect();
        assert_eq!(ids, ["r00", "r01", "r02", "r03", "r04"], "round {round}");
        let reply = client
            .query(pb::QueryRequest {
                query_vector: vec![1.0, 0.0],
                k: 20,
                max_hops: Some(0),
                explain: true,
                r#where: Some(pb::FilterExpression {
                    gte: cond("rank", Kind::DoubleValue(17.5)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids: Vec<String> = reply.results.into_iter().map(|r| r.entity_id).collect();
        ids.sort();
        assert_eq!(ids, ["r18", "r19"], "round {round}");
        assert_eq!(reply.filter_plan.unwrap().matched, 2, "round {round}");
        let mut wrong = entity("x", vec![1.0, 1.0]);
        wrong.attributes = BTreeMap::from([("rank".to_owned(), "high".to_owned())]);
        let status = put(&mut client, wrong).await.unwrap_err();
        assert!(
            status
                .message()
                .contains("holds it as number (20 entities)"),
            "round {round}: {}",
            status.message()
        );
    }
}

/// URL-encodes `s` for a query string (every byte but unreserved ones as `%XX`).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Over HTTP an unknown key inside a filter expression (a misspelt or unsupported operator, a
/// condition's or a typed value's unknown field) is a 400 naming the key and its path under
/// `where`, alone or beside a known operator (which would otherwise be applied without it),
/// in a JSON body and in `GET /entities?where=`; unknown keys elsewhere in a body are still
/// ignored.
#[tokio::test]
async fn http_refuses_unknown_keys_inside_a_filter() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    for (id, version) in [("a", 3), ("b", 5)] {
        let mut e = entity(id, vec![1.0, 0.0]);
        e.attributes = BTreeMap::from([("lang".to_owned(), "en".to_owned())]);
        e.typed_attributes =
            BTreeMap::from([("version".to_owned(), value(Kind::IntValue(version)))]);
        put(&mut client, e).await.unwrap();
    }
    let addr = daemon.http_addr.expect("the gateway listens");
    let gtx = r#"{"gtx": {"field": "version", "value": {"int_value": 4}}}"#;
    let cases = [
        (gtx.to_owned(), "where.gtx: unknown field `gtx`"),
        (
            // Beside a known operator: without the check the `and` alone would be applied.
            r#"{"and": [{"exists": "lang"}], "gtx": {"field": "version", "value": {"int_value": 4}}}"#
                .to_owned(),
            "where.gtx: unknown field `gtx`",
        ),
        (
            format!(r#"{{"or": [{{"exists": "lang"}}, {gtx}]}}"#),
            "where.or[1].gtx: unknown field `gtx`",
        ),
        (
            r#"{"gt": {"field": "version", "value": {"int_value": 4}, "inclusive": true}}"#
                .to_owned(),
            "where.gt.inclusive: unknown field `inclusive`",
        ),
        (
            r#"{"gt": {"field": "version", "value": {"int_value": 4, "double": 4.5}}}"#.to_owned(),
            "where.gt.value.double: unknown field `double`",
        ),
        (
            r#"{"in": {"field": "version", "values": [{"int_value": 3}], "value": {"int_value": 5}}}"#
                .to_owned(),
            "where.in.value: unknown field `value`",
        ),
    ];
    for (filter, expected) in &cases {
        for (path, body) in [
            (
                "/query",
                format!(r#"{{"query_vector": [1, 0], "k": 10, "where": {filter}}}"#),
            ),
            (
                "/traverse",
                format!(r#"{{"start_ids": ["a"], "where": {filter}}}"#),
            ),
            (
                "/query/batch",
                format!(
                    r#"{{"options": {{"k": 10, "where": {filter}}}, "vectors": [{{"values": [1, 0]}}]}}"#
                ),
            ),
        ] {
            let reply = allidb_tests::http_call(addr, "POST", path, None, &body);
            assert_eq!(reply.status, 400, "{path} {filter}: {}", reply.body);
            let wanted = if path == "/query/batch" {
                format!("options.{expected}")
            } else {
                (*expected).to_owned()
            };
            assert!(
                reply.body.contains(&wanted) && reply.body.contains("InvalidArgument"),
                "{path} {filter}: {} / {wanted}",
                reply.body
            );
        }
        let reply = allidb_tests::http_call(
            addr,
            "GET",
            &format!("/entities?where={}", url_encode(filter)),
            None,
            "",
        );
        assert_eq!(reply.status, 400, "GET {filter}: {}", reply.body);
        let (at, cause) = expected.split_once(": ").unwrap();
        let wanted = format!("{at}: not a filter expression: {cause}");
        assert!(reply.body.contains(&wanted), "{} / {wanted}", reply.body);
    }
    // The same filters without the unknown keys are applied; an unknown key outside the
    // filter is still ignored.
    let reply = allidb_tests::http_call(
        addr,
        "POST",
        "/query",
        None,
        r#"{"query_vector": [1, 0], "k": 10, "max_hops": 0, "unknown": 1,
            "where": {"gt": {"field": "version", "value": {"int_value": 4}}}}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let ids: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b"]);
    let reply = allidb_tests::http_call(
        addr,
        "GET",
        &format!(
            "/entities?where={}",
            url_encode(r#"{"gt": {"field": "version", "value": {"int_value": 4}}}"#)
        ),
        None,
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"entity_id\":\"b\"") && !reply.body.contains("\"entity_id\":\"a\""),
        "{}",
        reply.body
    );
}

/// `explain` reports the seed plan of a filtered query with both selectivities, end to end: a
/// tenant of 10,000 entities (`rank` = 0..9,999); a filter matching 30 is ranked exactly
/// (`exact`: at most 4,096 matches or 2% of the tenant, index/src/store/planning.rs), one
/// matching 5,000 is searched inside the HNSW walk (`filtered_hnsw`); the estimate is the
/// payload index's (for an `and`, the product of its operands' fractions: 0.6 x 0.9 = 0.54,
/// while 0.5 match), the real selectivity the counted matches'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reports_the_plan_and_both_selectivities() {
    const ENTITIES: usize = 10_000;
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let mut rng = StdRng::seed_from_u64(5);
    for batch in 0..ENTITIES / 1000 {
        let entities = (batch * 1000..(batch + 1) * 1000)
            .map(|i| {
                let v: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
                let mut e = entity(&format!("r{i:05}"), v);
                e.typed_attributes =
                    BTreeMap::from([("rank".to_owned(), value(Kind::IntValue(i as i64)))]);
                e
            })
            .collect();
        let reply = client
            .batch_put_entities(pb::BatchPutEntitiesRequest {
                entities,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.failure_count, 0, "{}", reply.error_message);
    }
    let range = |from: i64, below: i64| pb::FilterExpression {
        and: vec![
            pb::FilterExpression {
                gte: cond("rank", Kind::IntValue(from)),
                ..Default::default()
            },
            pb::FilterExpression {
                lt: cond("rank", Kind::IntValue(below)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let ask = |filter: Option<pb::FilterExpression>, explain: bool| pb::QueryRequest {
        query_vector: vec![0.5, -0.5, 0.25, 1.0],
        k: 10,
        max_hops: Some(0),
        include_entity: Some(false),
        explain,
        r#where: filter,
        ..Default::default()
    };
    // (from, below, plan, matches, estimated selectivity bounds)
    let cases = [
        (0, 30, "exact", 30, (0.0030, 0.0031)),
        (1000, 6000, "filtered_hnsw", 5000, (0.5399, 0.5402)),
    ];
    for (from, below, name, matches, (low, high)) in cases {
        let reply = client
            .query(ask(Some(range(from, below)), true))
            .await
            .unwrap()
            .into_inner();
        let plan = reply.filter_plan.expect("explain reports the plan");
        assert_eq!(plan.plan, name, "{plan:?}");
        assert_eq!(plan.entities, ENTITIES as u64, "{plan:?}");
        assert_eq!(plan.matched, matches, "{plan:?}");
        assert!(
            (plan.real_selectivity - matches as f64 / ENTITIES as f64).abs() < 1e-12,
            "{plan:?}"
        );
        assert!(
            (plan.estimated_selectivity - plan.estimated_matches / ENTITIES as f64).abs() < 1e-12,
            "{plan:?}"
        );
        assert!(
            (low..=high).contains(&plan.estimated_selectivity),
            "{plan:?}: estimated selectivity outside {low}..={high}"
        );
        // Either plan returns k results, each passing the filter.
        assert_eq!(reply.results.len(), 10, "{name}");
        for r in &reply.results {
            let rank: i64 = r.entity_id[1..].parse().unwrap();
            assert!((from..below).contains(&rank), "{name}: {}", r.entity_id);
        }
        // Without explain, no plan is reported.
        let quiet = client
            .query(ask(Some(range(from, below)), false))
            .await
            .unwrap()
            .into_inner();
        assert!(quiet.filter_plan.is_none(), "{name}");
    }
    // Without a filter there is no filter plan.
    let reply = client.query(ask(None, true)).await.unwrap().into_inner();
    assert!(reply.filter_plan.is_none());
}
