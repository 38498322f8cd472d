//! Filter plans against a naive evaluator (issue 37): random `and`/`or`/`not` combinations of
//! ranges, `in`, `eq`/`ne` on typed attributes and entity types, queried through the store
//! with `k` above the tenant's size, give exactly the entities the test's own evaluator
//! selects: with the planner (an exact plan fed by the payload index's certain/uncertain
//! membership) and with every filter forced through the graph walk (its per-query slot bitmap).

use std::collections::BTreeSet;

use allidb_index::filter::{Cmp, Expr, Field};
use allidb_index::graph::TraversalOptions;
use allidb_index::query::{QueryPlan, ScoreWeights};
use allidb_index::vector::VectorIndexOptions;
use allidb_index::{Filter, QueryRequest, StoreOptions, UnifiedStore};
use allidb_storage::cell::{AttributeValue, Embedding, EntityBody};
use allidb_storage::{Durability, EntityWrite};
use proptest::prelude::*;

const ENTITIES: usize = 48;

#[derive(Clone, Debug)]
struct Row {
    entity_type: &'static str,
    n: i64,
    s: &'static str,
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["doc", "img"]),
            -4i64..4,
            prop::sample::select(vec!["a", "b", "c"]),
        )
            .prop_map(|(entity_type, n, s)| Row { entity_type, n, s }),
        ENTITIES,
    )
}

fn leaf() -> impl Strategy<Value = Expr> {
    let cmp = prop::sample::select(vec![Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Gte, Cmp::Lt, Cmp::Lte]);
    prop_oneof![
        (cmp, -5i64..5).prop_map(|(op, v)| Expr::Compare {
            op,
            field: Field::Attribute("n".into()),
            value: AttributeValue::Int(v),
        }),
        (prop::collection::vec(-4i64..4, 0..3), any::<bool>()).prop_map(|(values, negated)| {
            Expr::In {
                field: Field::Attribute("n".into()),
                values: values.into_iter().map(AttributeValue::Int).collect(),
                negated,
            }
        }),
        (
            prop::sample::select(vec![Cmp::Eq, Cmp::Ne]),
            prop::sample::select(vec!["a", "b", "z"])
        )
            .prop_map(|(op, s)| Expr::Compare {
                op,
                field: Field::Attribute("s".into()),
                value: AttributeValue::String(s.into()),
            }),
        prop::sample::select(vec!["doc", "img"]).prop_map(|t| Expr::In {
            field: Field::EntityType,
            values: vec![AttributeValue::String(t.into())],
            negated: false,
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// The test's own evaluator.
fn naive(row: &Row, e: &Expr) -> bool {
    match e {
        Expr::And(parts) => parts.iter().all(|p| naive(row, p)),
        Expr::Or(parts) => parts.iter().any(|p| naive(row, p)),
        Expr::Not(inner) => !naive(row, inner),
        Expr::Compare {
            op,
            field: Field::Attribute(key),
            value,
        } => match (key.as_str(), value) {
            ("n", AttributeValue::Int(v)) => match op {
                Cmp::Eq => row.n == *v,
                Cmp::Ne => row.n != *v,
                Cmp::Gt => row.n > *v,
                Cmp::Gte => row.n >= *v,
                Cmp::Lt => row.n < *v,
                Cmp::Lte => row.n <= *v,
            },
            ("s", AttributeValue::String(v)) => (row.s == v) == (*op == Cmp::Eq),
            other => panic!("the test's evaluator does not know {other:?}"),
        },
        Expr::In {
            field: Field::Attribute(_),
            values,
            negated,
        } => values.contains(&AttributeValue::Int(row.n)) != *negated,
        Expr::In {
            field: Field::EntityType,
            values,
            ..
        } => values.contains(&AttributeValue::String(row.entity_type.into())),
        other => panic!("the test's evaluator does not know {other:?}"),
    }
}

fn open(dir: &std::path::Path, rows: &[Row], vectors: VectorIndexOptions) -> UnifiedStore {
    let store = UnifiedStore::open(
        dir,
        StoreOptions {
            vectors,
            ..StoreOptions::default()
        },
    )
    .expect("the store opens");
    let writes = rows
        .iter()
        .enumerate()
        .map(|(i, row)| EntityWrite {
            id: format!("e{i:02}"),
            body: EntityBody {
                entity_type: row.entity_type.to_owned(),
                embeddings: vec![Embedding {
                    version: 1,
                    vector: vec![1.0, (i as f32 * 0.37).sin(), (i as f32 * 0.11).cos()],
                    timestamp_nanos: 0,
                }],
                typed_attributes: [
                    ("n".to_owned(), AttributeValue::Int(row.n)),
                    ("s".to_owned(), AttributeValue::String(row.s.to_owned())),
                ]
                .into(),
                ..EntityBody::default()
            },
            out_edges: Vec::new(),
            in_edges: Vec::new(),
        })
        .collect();
    store
        .put_entities("t", writes, Durability::Buffered)
        .expect("the write succeeds");
    store.index_all_pending();
    store
}

fn matched(store: &UnifiedStore, e: &Expr) -> BTreeSet<String> {
    let request = QueryRequest {
        vector: vec![1.0, 0.2, 0.3],
        plan: QueryPlan {
            k: ENTITIES + 10,
            traversal: TraversalOptions {
                max_hops: 0,
                ..TraversalOptions::default()
            },
            weights: ScoreWeights {
                vector: 1.0,
                graph: 0.0,
                importance: 0.0,
                recency: 0.0,
                hop_decay: 1.0,
            },
            ..QueryPlan::default()
        },
        filter: Filter {
            expression: Some(e.clone()),
            ..Filter::default()
        },
        ..QueryRequest::default()
    };
    store
        .query("t", &request)
        .expect("the query succeeds")
        .into_iter()
        .map(|hit| hit.result.entity_id.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_plan_returns_exactly_the_naive_matches(
        rows in rows(),
        exprs in prop::collection::vec(expr(), 1..6),
    ) {
        let planner_dir = tempfile::tempdir().expect("a temporary directory");
        let walk_dir = tempfile::tempdir().expect("a temporary directory");
        let planner = open(planner_dir.path(), &rows, VectorIndexOptions::default());
        let walk = open(
            walk_dir.path(),
            &rows,
            VectorIndexOptions {
                exact_scan_max_allowed: 0,
                exact_scan_max_fraction: 0.0,
                ..VectorIndexOptions::default()
            },
        );
        for e in &exprs {
            let expected: BTreeSet<String> = rows
                .iter()
                .enumerate()
                .filter(|(_, row)| naive(row, e))
                .map(|(i, _)| format!("e{i:02}"))
                .collect();
            prop_assert_eq!(&matched(&planner, e), &expected, "planner, {:?}", e);
            prop_assert_eq!(&matched(&walk, e), &expected, "walk, {:?}", e);
        }
    }
}
