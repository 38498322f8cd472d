//! Filters beyond equality on the wire (docs/api.md "Filters"): `FilterExpression` (a request's
//! `where`) to the index's [`Expr`], and typed attribute values both ways.
//!
//! Invariants: every refusal is `INVALID_ARGUMENT` naming the bad node by its path in the
//! request (`where.and[2].gt.version`); an expression accepted here is at most
//! [`MAX_DEPTH`] levels deep and [`MAX_FILTER_NODES`] nodes large, and its values are finite,
//! so the index only has to check it against the tenant's attribute types.

use std::collections::BTreeMap;

use allidb_index::filter::{Cmp, Expr, Field, MAX_DEPTH};
use allidb_storage::cell::AttributeValue;
use tonic::Status;

use crate::pb;

/// Most nodes (operators and conditions) of one filter expression.
pub const MAX_FILTER_NODES: usize = 1024;
/// Most values of one `in` / `nin` list.
pub const MAX_IN_VALUES: usize = 1024;
/// Most elements of one string_list attribute value.
pub const MAX_LIST_VALUES: usize = 1024;
/// Longest string in a typed attribute or a filter value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest field name of a condition, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// The index form of a typed value at request path `at`: exactly one of its fields set.
pub fn value_from_proto(
    at: &str,
    value: Option<&pb::AttributeValue>,
) -> Result<AttributeValue, Status> {
    let default = pb::AttributeValue::default();
    let v = value.unwrap_or(&default);
    let mut set: Vec<AttributeValue> = Vec::with_capacity(1);
    if let Some(s) = &v.string_value {
        set.push(AttributeValue::String(s.clone()));
    }
    if let Some(i) = v.int_value {
        set.push(AttributeValue::Int(i));
    }
    if let Some(f) = v.double_value {
        set.push(AttributeValue::Float(f));
    }
    if let Some(b) = v.bool_value {
        set.push(AttributeValue::Bool(b));
    }
    if let Some(t) = v.timestamp_nanos {
        set.push(AttributeValue::Timestamp(t));
    }
    if let Some(list) = &v.string_list {
        set.push(AttributeValue::StringList(list.values.clone()));
    }
    if set.len() != 1 {
        return Err(invalid(format!(
            "{at} must hold exactly one value (string_value, int_value, double_value, \
             bool_value, timestamp_nanos or string_list), got {}",
            set.len()
        )));
    }
    let value = set.remove(0);
    let short = |s: &str, field: &str| -> Result<(), Status> {
        if s.len() > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "{field} is {} bytes, the maximum is {MAX_VALUE_BYTES}",
                s.len()
            )));
        }
        Ok(())
    };
    match &value {
        AttributeValue::String(s) => short(s, at)?,
        AttributeValue::Float(f) if !f.is_finite() => {
            return Err(invalid(format!("{at} must be finite, got {f}")));
        }
        AttributeValue::StringList(list) => {
            if list.len() > MAX_LIST_VALUES {
                return Err(invalid(format!(
                    "{at} has {} elements, the maximum is {MAX_LIST_VALUES}",
                    list.len()
                )));
            }
            for (i, s) in list.iter().enumerate() {
                short(s, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(value)
}

/// The wire form of a stored typed value.
pub fn value_to_proto(value: &AttributeValue) -> pb::AttributeValue {
    let mut out = pb::AttributeValue::default();
    match value {
        AttributeValue::String(s) => out.string_value = Some(s.clone()),
        AttributeValue::Int(i) => out.int_value = Some(*i),
        AttributeValue::Float(f) => out.double_value = Some(*f),
        AttributeValue::Bool(b) => out.bool_value = Some(*b),
        AttributeValue::Timestamp(t) => out.timestamp_nanos = Some(*t),
        AttributeValue::StringList(l) => {
            out.string_list = Some(pb::StringList { values: l.clone() })
        }
    }
    out
}

/// The wire form of a query's seed plan (`explain`).
pub fn plan_to_proto(report: &allidb_index::PlanReport) -> pb::FilterPlan {
    pb::FilterPlan {
        plan: report.plan.to_owned(),
        entities: report.total as u64,
        estimated_matches: report.estimated,
        estimated_selectivity: report.estimated_selectivity(),
        matched: report.matched.unwrap_or(0) as u64,
        real_selectivity: report.real_selectivity().unwrap_or(0.0),
    }
}

/// An entity's typed attributes at request path `field` (`entity.typed_attributes`): at most 64
/// keys, none also in the untyped map, every value valid.
pub fn typed_attributes(
    field: &str,
    typed: &BTreeMap<String, pb::AttributeValue>,
    untyped: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, AttributeValue>, Status> {
    if typed.len() + untyped.len() > crate::validate::MAX_MAP_ENTRIES {
        return Err(invalid(format!(
            "{field} and attributes hold {} keys together, the maximum is {}",
            typed.len() + untyped.len(),
            crate::validate::MAX_MAP_ENTRIES
        )));
    }
    let mut out = BTreeMap::new();
    for (key, value) in typed {
        if key.is_empty() || key.len() > crate::validate::MAX_MAP_KEY_BYTES {
            return Err(invalid(format!(
                "{field} key {key:?} must be 1..={} bytes",
                crate::validate::MAX_MAP_KEY_BYTES
            )));
        }
        if untyped.contains_key(key) {
            return Err(invalid(format!(
                "{field}[{key:?}]: the key is also in attributes; a key is in one of the two maps"
            )));
        }
        out.insert(
            key.clone(),
            value_from_proto(&format!("{field}[{key:?}]"), Some(value))?,
        );
    }
    Ok(out)
}

/// The index form of a request's `where` (`root` names it in errors, e.g. `where` or
/// `options.where`).
pub fn expression(root: &str, expression: &pb::FilterExpression) -> Result<Expr, Status> {
    let mut nodes = 0usize;
    convert(root, expression, 1, &mut nodes)
}

fn field_name(at: &str, field: &str) -> Result<Field, Status> {
    if field.is_empty() {
        return Err(invalid(format!(
            "{at}.field must name an attribute, entity_type or entity_id"
        )));
    }
    if field.len() > MAX_FIELD_BYTES {
        return Err(invalid(format!(
            "{at}.field is {} bytes, the maximum is {MAX_FIELD_BYTES}",
            field.len()
        )));
    }
    Ok(Field::named(field))
}

fn condition(at: &str, op: Cmp, condition: &pb::FieldCondition) -> Result<Expr, Status> {
    let field = field_name(at, &condition.field)?;
    let value = value_from_proto(
        &format!("{at}.{}", condition.field),
        condition.value.as_ref(),
    )?;
    Ok(Expr::Compare { op, field, value })
}

fn string_value(
    at: &str,
    condition: &pb::FieldCondition,
    op: &str,
) -> Result<(Field, String), Status> {
    let field = field_name(at, &condition.field)?;
    let path = format!("{at}.{}", condition.field);
    match value_from_proto(&path, condition.value.as_ref())? {
        AttributeValue::String(s) => Ok((field, s)),
        other => Err(invalid(format!(
            "{path}: {op} needs a string value, got {}",
            other.type_name()
        ))),
    }
}

fn convert(
    path: &str,
    e: &pb::FilterExpression,
    depth: usize,
    nodes: &mut usize,
) -> Result<Expr, Status> {
    *nodes += 1;
    if *nodes > MAX_FILTER_NODES {
        return Err(invalid(format!(
            "{path}: the filter has more than {MAX_FILTER_NODES} nodes"
        )));
    }
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "{path}: the filter is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let mut set: Vec<&str> = Vec::new();
    let checks: [(&str, bool); 14] = [
        ("and", !e.and.is_empty()),
        ("or", !e.or.is_empty()),
        ("not", e.not.is_some()),
        ("eq", e.eq.is_some()),
        ("ne", e.ne.is_some()),
        ("gt", e.gt.is_some()),
        ("gte", e.gte.is_some()),
        ("lt", e.lt.is_some()),
        ("lte", e.lte.is_some()),
        ("in", e.r#in.is_some()),
        ("nin", e.nin.is_some()),
        ("exists", !e.exists.is_empty()),
        ("contains", e.contains.is_some()),
        ("prefix", e.prefix.is_some()),
    ];
    for (name, present) in checks {
        if present {
            set.push(name);
        }
    }
    let op = match set.as_slice() {
        [one] => *one,
        [] => {
            return Err(invalid(format!(
                "{path} sets no operator (one of and, or, not, eq, ne, gt, gte, lt, lte, in, \
                 nin, exists, contains, prefix; and/or need at least one operand)"
            )));
        }
        many => {
            return Err(invalid(format!(
                "{path} sets {} operators ({}); a node holds exactly one (combine with and)",
                many.len(),
                many.join(", ")
            )));
        }
    };
    let at = format!("{path}.{op}");
    let operands = |list: &[pb::FilterExpression], nodes: &mut usize| {
        list.iter()
            .enumerate()
            .map(|(i, operand)| convert(&format!("{at}[{i}]"), operand, depth + 1, nodes))
            .collect::<Result<Vec<_>, Status>>()
    };
    let some = |c: &Option<pb::FieldCondition>| c.clone().unwrap_or_default();
    Ok(match op {
        "and" => Expr::And(operands(&e.and, nodes)?),
        "or" => Expr::Or(operands(&e.or, nodes)?),
        "not" => {
            let operand = e.not.as_deref().cloned().unwrap_or_default();
            Expr::Not(Box::new(convert(&at, &operand, depth + 1, nodes)?))
        }
        "eq" => condition(&at, Cmp::Eq, &some(&e.eq))?,
        "ne" => condition(&at, Cmp::Ne, &some(&e.ne))?,
        "gt" => condition(&at, Cmp::Gt, &some(&e.gt))?,
        "gte" => condition(&at, Cmp::Gte, &some(&e.gte))?,
        "lt" => condition(&at, Cmp::Lt, &some(&e.lt))?,
        "lte" => condition(&at, Cmp::Lte, &some(&e.lte))?,
        "in" | "nin" => {
            let values = if op == "in" { &e.r#in } else { &e.nin };
            let values = values.clone().unwrap_or_default();
            let field = field_name(&at, &values.field)?;
            let path = format!("{at}.{}", values.field);
            if values.values.len() > MAX_IN_VALUES {
                return Err(invalid(format!(
                    "{path} has {} values, the maximum is {MAX_IN_VALUES}",
                    values.values.len()
                )));
            }
            let values = values
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| value_from_proto(&format!("{path}[{i}]"), Some(v)))
                .collect::<Result<Vec<_>, Status>>()?;
            Expr::In {
                field,
                values,
                negated: op == "nin",
            }
        }
        "exists" => Expr::Exists(field_name(&at, &e.exists)?),
        "contains" => {
            let (field, value) = string_value(&at, &some(&e.contains), "contains")?;
            Expr::Contains { field, value }
        }
        _ => {
            let (field, prefix) = string_value(&at, &some(&e.prefix), "prefix")?;
            Expr::Prefix { field, prefix }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: &str, value: AttributeValue) -> Option<pb::FieldCondition> {
        Some(pb::FieldCondition {
            field: field.to_owned(),
            value: Some(value_to_proto(&value)),
        })
    }

    /// The HTTP gateway's JSON form: proto field names, a typed value as its one field.
    #[test]
    fn the_json_form_reads_as_the_proto_does() {
        let json = r#"{"and": [
            {"gte": {"field": "version", "value": {"int_value": 3}}},
            {"in": {"field": "lang", "values": [{"string_value": "en"}]}},
            {"not": {"exists": "archived"}}]}"#;
        let parsed: pb::FilterExpression = serde_json::from_str(json).unwrap();
        let expr = expression("where", &parsed).unwrap();
        assert_eq!(
            expr,
            Expr::And(vec![
                Expr::Compare {
                    op: Cmp::Gte,
                    field: Field::Attribute("version".into()),
                    value: AttributeValue::Int(3),
                },
                Expr::In {
                    field: Field::Attribute("lang".into()),
                    values: vec![AttributeValue::String("en".into())],
                    negated: false,
                },
                Expr::Not(Box::new(Expr::Exists(Field::Attribute("archived".into())))),
            ])
        );
        let two: pb::AttributeValue =
            serde_json::from_str(r#"{"int_value": 1, "bool_value": true}"#).unwrap();
        let message = value_from_proto("v", Some(&two))
            .unwrap_err()
            .message()
            .to_owned();
        assert!(
            message.contains("v must hold exactly one value"),
            "{message}"
        );
        // Unknown keys are refused inside an expression (build.rs, STRICT_MESSAGES), also
        // beside a known operator, and named.
        for (json, unknown) in [
            (
                r#"{"gtx": {"field": "v", "value": {"int_value": 1}}}"#,
                "gtx",
            ),
            (r#"{"and": [{"exists": "a"}], "gtx": {}}"#, "gtx"),
            (
                r#"{"gt": {"field": "v", "value": {"int_value": 1}, "x": 1}}"#,
                "x",
            ),
            (r#"{"in": {"field": "v", "values": [{"int": 1}]}}"#, "int"),
            (
                r#"{"contains": {"field": "v", "value": {"string_list": {"value": []}}}}"#,
                "value",
            ),
        ] {
            let error = serde_json::from_str::<pb::FilterExpression>(json).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("unknown field `{unknown}`")),
                "{json}: {error}"
            );
        }
    }

    #[test]
    fn errors_name_the_path_inside_the_filter() {
        let gt = |value| pb::FilterExpression {
            gt: cond("version", value),
            ..Default::default()
        };
        let ok = pb::FilterExpression {
            exists: "lang".into(),
            ..Default::default()
        };
        let request = pb::FilterExpression {
            and: vec![ok.clone(), ok.clone(), gt(AttributeValue::Float(f64::NAN))],
            ..Default::default()
        };
        let status = expression("where", &request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("where.and[2].gt.version must be finite"),
            "{}",
            status.message()
        );
        let two = pb::FilterExpression {
            exists: "a".into(),
            eq: cond("a", AttributeValue::Int(1)),
            ..Default::default()
        };
        let message = expression("where", &two).unwrap_err().message().to_owned();
        assert!(
            message.contains("where sets 2 operators (eq, exists)"),
            "{message}"
        );
        let mut deep = ok;
        for _ in 0..MAX_DEPTH {
            deep = pb::FilterExpression {
                not: Some(Box::new(deep)),
                ..Default::default()
            };
        }
        let message = expression("where", &deep).unwrap_err().message().to_owned();
        assert!(message.contains("more than 16 levels"), "{message}");
        let prefix = pb::FilterExpression {
            prefix: cond("lang", AttributeValue::Int(3)),
            ..Default::default()
        };
        let message = expression("where", &prefix)
            .unwrap_err()
            .message()
            .to_owned();
        assert_eq!(
            message,
            "where.prefix.lang: prefix needs a string value, got int"
        );
        assert!(expression("where", &pb::FilterExpression::default()).is_err());
    }
}
