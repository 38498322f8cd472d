//! The payload index against evaluation: for random entities with random typed attributes and
//! random expressions, the cardinality bounds hold the true count, and the candidates (when the
//! postings enumerate them) hold every match. Plus the type checks' messages.

use std::collections::BTreeMap;

use allidb_storage::cell::AttributeValue;
use proptest::prelude::*;

use super::expr::{AttrType, Cmp, Expr, Field, Subject, ValueRef};
use super::payload::PayloadIndex;

#[derive(Clone, Debug)]
struct Row {
    id: String,
    entity_type: String,
    attributes: BTreeMap<String, AttributeValue>,
}

impl Subject for Row {
    fn id(&self) -> &str {
        &self.id
    }
    fn entity_type(&self) -> &str {
        &self.entity_type
    }
    fn attribute(&self, key: &str) -> Option<ValueRef<'_>> {
        self.attributes.get(key).map(ValueRef::from)
    }
}

fn number() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        (-5i64..5).prop_map(AttributeValue::Int),
        (-5i32..5).prop_map(|h| AttributeValue::Float(f64::from(h) / 2.0)),
    ]
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "ab", "abc", "b", "ba", ""]).prop_map(str::to_owned)
}

fn row(i: usize) -> impl Strategy<Value = Row> {
    (
        prop::sample::select(vec!["doc", "img", ""]),
        prop::option::of(number()),
        prop::option::of(word()),
        prop::option::of(any::<bool>()),
        prop::option::of(-3i64..3),
        prop::option::of(prop::collection::vec(word(), 0..3)),
    )
        .prop_map(move |(t, n, s, b, ts, l)| {
            let mut attributes = BTreeMap::new();
            if let Some(n) = n {
                attributes.insert("n".to_owned(), n);
            }
            if let Some(s) = s {
                attributes.insert("s".to_owned(), AttributeValue::String(s));
            }
            if let Some(b) = b {
                attributes.insert("b".to_owned(), AttributeValue::Bool(b));
            }
            if let Some(ts) = ts {
                attributes.insert("t".to_owned(), AttributeValue::Timestamp(ts));
            }
            if let Some(l) = l {
                attributes.insert("l".to_owned(), AttributeValue::StringList(l));
            }
            Row {
                id: format!("e{i:02}"),
                entity_type: t.to_owned(),
                attributes,
            }
        })
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    (0usize..40).prop_flat_map(|n| (0..n).map(row).collect::<Vec<_>>())
}

fn cmp() -> impl Strategy<Value = Cmp> {
    prop::sample::select(vec![Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Gte, Cmp::Lt, Cmp::Lte])
}

fn leaf() -> impl Strategy<Value = Expr> {
    let attr = |k: &str| Field::Attribute(k.to_owned());
    prop_oneof![
        (cmp(), number()).prop_map(move |(op, value)| Expr::Compare {
            op,
            field: Field::Attribute("n".into()),
            value
        }),
        (cmp(), -3i64..3).prop_map(|(op, t)| Expr::Compare {
            op,
            field: Field::Attribute("t".into()),
            value: AttributeValue::Timestamp(t)
        }),
        (prop::sample::select(vec![Cmp::Eq, Cmp::Ne]), word()).prop_map(|(op, w)| {
            Expr::Compare {
                op,
                field: Field::Attribute("s".into()),
                value: AttributeValue::String(w),
            }
        }),
        (prop::sample::select(vec![Cmp::Eq, Cmp::Ne]), any::<bool>()).prop_map(|(op, b)| {
            Expr::Compare {
                op,
                field: Field::Attribute("b".into()),
                value: AttributeValue::Bool(b),
            }
        }),
        (prop::collection::vec(number(), 0..3), any::<bool>()).prop_map(|(values, negated)| {
            Expr::In {
                field: Field::Attribute("n".into()),
                values,
                negated,
            }
        }),
        (
            prop::collection::vec(word().prop_map(AttributeValue::String), 0..3),
            any::<bool>()
        )
            .prop_map(|(values, negated)| Expr::In {
                field: Field::EntityType,
                values,
                negated,
            }),
        prop::sample::select(vec!["n", "s", "b", "t", "l", "missing"])
            .prop_map(move |k| Expr::Exists(attr(k))),
        Just(Expr::Exists(Field::EntityType)),
        word().prop_map(|value| Expr::Contains {
            field: Field::Attribute("l".into()),
            value
        }),
        word().prop_map(|prefix| Expr::Prefix {
            field: Field::Attribute("s".into()),
            prefix
        }),
        word().prop_map(|prefix| Expr::Prefix {
            field: Field::EntityType,
            prefix
        }),
        (0usize..45).prop_map(|i| Expr::Compare {
            op: Cmp::Eq,
            field: Field::EntityId,
            value: AttributeValue::String(format!("e{i:02}")),
        }),
        (0usize..45).prop_map(|i| Expr::Prefix {
            field: Field::EntityId,
            prefix: format!("e{}", i % 5),
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn index_of(rows: &[Row]) -> PayloadIndex {
    let mut index = PayloadIndex::default();
    for r in rows {
        index.insert(
            &r.id,
            &r.entity_type,
            r.attributes.iter().map(|(k, v)| (k, v.into())),
        );
    }
    index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn cardinalities_bound_and_candidates_cover_the_matches(
        rows in rows(),
        removed in prop::collection::vec(0usize..40, 0..8),
        exprs in prop::collection::vec(expr(), 1..8),
    ) {
        let mut index = index_of(&rows);
        // Removals keep the postings equal to the live rows.
        let mut live = rows.clone();
        for r in removed {
            if let Some(position) = live.iter().position(|row| row.id == format!("e{r:02}")) {
                let row = live.remove(position);
                index.remove(
                    &row.id,
                    &row.entity_type,
                    row.attributes.iter().map(|(k, v)| (k, v.into())),
                );
            }
        }
        prop_assert_eq!(index.len(), live.len());
        for e in &exprs {
            let matching: Vec<&str> = live.iter().filter(|r| e.matches(*r)).map(|r| r.id.as_str()).collect();
            let c = index.cardinality(e);
            prop_assert!(c.lower <= matching.len() && matching.len() <= c.upper,
                "{:?}: {} matches outside [{}, {}]", e, matching.len(), c.lower, c.upper);
            if let Some(candidates) = index.candidates(e) {
                let mut seen = std::collections::HashSet::new();
                for id in &candidates {
                    prop_assert!(seen.insert(id.clone()), "{:?}: {} twice", e, id);
                }
                for id in &matching {
                    prop_assert!(seen.contains(*id), "{:?}: match {} is not a candidate", e, id);
                }
            }
            check_split(&index, &live, e).map_err(TestCaseError::fail)?;
            check_membership(&index, &live, e).map_err(TestCaseError::fail)?;
        }
    }
}

/// `membership`: every certain ordinal matches, every match is in the superset, and both hold
/// live entities only.
fn check_membership(index: &PayloadIndex, live: &[Row], e: &Expr) -> Result<(), String> {
    let Some(m) = index.membership(e) else {
        return Ok(());
    };
    for row in live {
        let ordinal = index
            .ordinal(&row.id)
            .ok_or_else(|| format!("{} has no ordinal", row.id))?;
        let matches = e.matches(row);
        if m.is_certain(ordinal) && !matches {
            return Err(format!("{e:?}: {} is certain but does not match", row.id));
        }
        if matches && !m.may_match(ordinal) {
            return Err(format!("{e:?}: match {} is outside the superset", row.id));
        }
    }
    for ordinal in m.certain().chain(m.uncertain()) {
        if index.entity(ordinal).is_none() {
            return Err(format!("{e:?}: ordinal {ordinal} is not live"));
        }
    }
    Ok(())
}

/// The certain/uncertain split of `and`, `or` and `not` of ranges: only the bound postings
/// are uncertain, and an operand the postings cannot answer leaves nothing certain.
#[test]
fn combinations_keep_the_certain_split() {
    let rows: Vec<Row> = (0..10)
        .map(|i| Row {
            id: format!("e{i:02}"),
            entity_type: "doc".into(),
            attributes: [("n".to_owned(), AttributeValue::Int(i))].into(),
        })
        .collect();
    let index = index_of(&rows);
    let n = |op, v| Expr::Compare {
        op,
        field: Field::Attribute("n".into()),
        value: AttributeValue::Int(v),
    };
    let split = |e: &Expr| {
        let m = index.membership(e).expect("the postings answer it");
        let ids = |it: &mut dyn Iterator<Item = usize>| {
            let mut v: Vec<String> = it.map(|o| index.entity(o).unwrap().to_string()).collect();
            v.sort();
            v
        };
        (ids(&mut m.certain()), ids(&mut m.uncertain()))
    };
    let names = |r: &[i64]| r.iter().map(|i| format!("e{i:02}")).collect::<Vec<_>>();
    // 2 <= n < 8: the postings at the bounds (2 and 8) are checked, the rest is certain.
    assert_eq!(
        split(&Expr::And(vec![n(Cmp::Gte, 2), n(Cmp::Lt, 8)])),
        (names(&[3, 4, 5, 6, 7]), names(&[2, 8]))
    );
    assert_eq!(
        split(&Expr::Or(vec![n(Cmp::Lt, 2), n(Cmp::Gt, 7)])),
        (names(&[0, 1, 8, 9]), names(&[2, 7]))
    );
    assert_eq!(
        split(&Expr::Not(Box::new(n(Cmp::Lt, 2)))),
        (names(&[3, 4, 5, 6, 7, 8, 9]), names(&[2]))
    );
    assert_eq!(
        split(&n(Cmp::Ne, 4)),
        (names(&[0, 1, 2, 3, 5, 6, 7, 8, 9]), names(&[]))
    );
    let unanswerable = Expr::Exists(Field::Attribute("n".into()));
    assert_eq!(
        split(&Expr::And(vec![n(Cmp::Lt, 2), unanswerable.clone()])),
        (names(&[]), names(&[0, 1, 2]))
    );
    assert!(
        index
            .membership(&Expr::Or(vec![n(Cmp::Lt, 2), unanswerable]))
            .is_none()
    );
}

/// `split_candidates`: its certain ids all match, the two lists cover every match, no id twice.
fn check_split(index: &PayloadIndex, live: &[Row], e: &Expr) -> Result<(), String> {
    let Some((certain, check)) = index.split_candidates(e) else {
        return Ok(());
    };
    let matching: std::collections::HashSet<&str> = live
        .iter()
        .filter(|r| e.matches(*r))
        .map(|r| r.id.as_str())
        .collect();
    let mut seen = std::collections::HashSet::new();
    for id in certain.iter().chain(&check) {
        if !seen.insert(id.clone()) {
            return Err(format!("{e:?}: {id} twice"));
        }
    }
    for id in &certain {
        if !matching.contains(&**id) {
            return Err(format!("{e:?}: {id} is certain but does not match"));
        }
    }
    for id in &matching {
        if !seen.contains(*id) {
            return Err(format!("{e:?}: match {id} is not a candidate"));
        }
    }
    Ok(())
}

#[test]
fn split_candidates_are_exact_around_rounding_and_nan() {
    let big = 1i64 << 53;
    let mut values = vec![
        AttributeValue::Float(f64::NAN),
        AttributeValue::Float(-f64::NAN),
        AttributeValue::Float(-0.0),
        AttributeValue::Float(0.5),
        AttributeValue::Int(0),
        AttributeValue::Int(1),
    ];
    for d in -2..=2 {
        values.push(AttributeValue::Int(big + d));
        values.push(AttributeValue::Int(-big + d));
        values.push(AttributeValue::Float((big + d) as f64));
    }
    let rows: Vec<Row> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Row {
            id: format!("e{i:02}"),
            entity_type: String::new(),
            attributes: BTreeMap::from([("n".to_owned(), v.clone())]),
        })
        .collect();
    let index = index_of(&rows);
    let mut checked = 0;
    for bound in values
        .iter()
        .filter(|v| !matches!(v, AttributeValue::Float(f) if f.is_nan()))
    {
        for op in [Cmp::Eq, Cmp::Lt, Cmp::Lte, Cmp::Gt, Cmp::Gte] {
            let e = Expr::Compare {
                op,
                field: Field::Attribute("n".into()),
                value: bound.clone(),
            };
            check_split(&index, &rows, &e).unwrap();
            checked += 1;
        }
        let e = Expr::In {
            field: Field::Attribute("n".into()),
            values: vec![bound.clone(), AttributeValue::Int(1)],
            negated: false,
        };
        check_split(&index, &rows, &e).unwrap();
    }
    assert!(checked > 50);
    // Interior postings are certain: only the bound's posting is left to check.
    let lt = Expr::Compare {
        op: Cmp::Lt,
        field: Field::Attribute("n".into()),
        value: AttributeValue::Int(1),
    };
    let (certain, check) = index.split_candidates(&lt).unwrap();
    assert!(
        check.len() <= 2,
        "the bound and a negative NaN only: {check:?}"
    );
    assert!(certain.len() >= 5, "{certain:?}");
}

#[test]
fn numbers_compare_exactly_across_int_and_float() {
    let row = |v: AttributeValue| Row {
        id: "x".into(),
        entity_type: String::new(),
        attributes: BTreeMap::from([("n".to_owned(), v)]),
    };
    let gt = |value| Expr::Compare {
        op: Cmp::Gt,
        field: Field::Attribute("n".into()),
        value,
    };
    let big = (1i64 << 53) + 1;
    // As f64 both are 2^53: only an exact comparison tells them apart.
    assert!(gt(AttributeValue::Float((1i64 << 53) as f64)).matches(&row(AttributeValue::Int(big))));
    assert!(
        !gt(AttributeValue::Int(big)).matches(&row(AttributeValue::Float((1i64 << 53) as f64)))
    );
    assert!(gt(AttributeValue::Float(2.5)).matches(&row(AttributeValue::Int(3))));
    assert!(!gt(AttributeValue::Float(2.5)).matches(&row(AttributeValue::String("3".into()))));
    let eq_zero = Expr::Compare {
        op: Cmp::Eq,
        field: Field::Attribute("n".into()),
        value: AttributeValue::Int(0),
    };
    let rows = [row(AttributeValue::Float(-0.0))];
    assert!(eq_zero.matches(&rows[0]));
    assert_eq!(
        index_of(&rows).candidates(&eq_zero).map(|c| c.len()),
        Some(1)
    );
    let index = index_of(&[row(AttributeValue::Int(big))]);
    let c = index.candidates(&gt(AttributeValue::Float((1i64 << 53) as f64)));
    assert_eq!(
        c.map(|c| c.len()),
        Some(1),
        "rounding never loses a range match"
    );
}

#[test]
fn type_checks_name_the_path_the_key_and_both_types() {
    let types = |key: &str| match key {
        "version" => Some(AttrType::Number),
        "lang" => Some(AttrType::String),
        "tags" => Some(AttrType::StringList),
        _ => None,
    };
    let check = |e: &Expr| e.check("where", &types).unwrap_err().to_string();
    let gt_lang = Expr::And(vec![
        Expr::Exists(Field::EntityId),
        Expr::Exists(Field::EntityId),
        Expr::Compare {
            op: Cmp::Gt,
            field: Field::Attribute("lang".into()),
            value: AttributeValue::Int(3),
        },
    ]);
    let message = check(&gt_lang);
    assert!(
        message.contains("where.and[2].gt.lang: attribute \"lang\" holds string values, the filter gives a number"),
        "{message}"
    );
    let gt_string = Expr::Compare {
        op: Cmp::Gt,
        field: Field::Attribute("version".into()),
        value: AttributeValue::String("3".into()),
    };
    assert!(
        check(&gt_string)
            .contains("where.gt.version: gt needs a number or a timestamp, got a string")
    );
    let contains = Expr::Not(Box::new(Expr::Contains {
        field: Field::Attribute("lang".into()),
        value: "x".into(),
    }));
    assert!(check(&contains).contains("where.not.contains.lang"));
    let eq_list = Expr::Compare {
        op: Cmp::Eq,
        field: Field::Attribute("tags".into()),
        value: AttributeValue::String("x".into()),
    };
    assert!(check(&eq_list).contains("holds string_list values"));
    let unknown_key = Expr::Compare {
        op: Cmp::Lt,
        field: Field::Attribute("nothing".into()),
        value: AttributeValue::Float(1.0),
    };
    assert!(unknown_key.check("where", &types).is_ok());
    let mut deep = Expr::Exists(Field::EntityId);
    for _ in 0..16 {
        deep = Expr::Not(Box::new(deep));
    }
    assert!(check(&deep).contains("nested 17 levels deep, the maximum is 16"));
}
