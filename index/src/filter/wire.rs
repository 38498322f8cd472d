//! The flat encoding of an [`Expr`] that travels between nodes of a ring (the
//! `EntityFilter.expression` bytes of `cluster/proto/replica.proto`): the tree in postfix
//! order, one node per entry, behind the storage codec's version byte (format 1).
//!
//! Invariant: decoding never recurses and refuses a tree deeper than [`MAX_DEPTH`] or an entry
//! that pops more operands than precede it, so no input can exhaust the stack or panic.

use allidb_storage::cell::AttributeValue;
use allidb_storage::codec;

use super::expr::{Cmp, Expr, Field, MAX_DEPTH};
use crate::error::{Error, Result};

#[derive(bincode::Encode, bincode::Decode)]
enum WireField {
    EntityType,
    EntityId,
    Attribute(String),
}

#[derive(bincode::Encode, bincode::Decode)]
enum WireNode {
    And(u32),
    Or(u32),
    Not,
    Compare(u8, WireField, AttributeValue),
    In(WireField, Vec<AttributeValue>, bool),
    Exists(WireField),
    Contains(WireField, String),
    Prefix(WireField, String),
}

const CMPS: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Gte, Cmp::Lt, Cmp::Lte];

fn field_out(field: &Field) -> WireField {
    match field {
        Field::EntityType => WireField::EntityType,
        Field::EntityId => WireField::EntityId,
        Field::Attribute(key) => WireField::Attribute(key.clone()),
    }
}

fn field_in(field: WireField) -> Field {
    match field {
        WireField::EntityType => Field::EntityType,
        WireField::EntityId => Field::EntityId,
        WireField::Attribute(key) => Field::Attribute(key),
    }
}

fn flatten(expr: &Expr, out: &mut Vec<WireNode>) {
    match expr {
        Expr::And(operands) | Expr::Or(operands) => {
            for operand in operands {
                flatten(operand, out);
            }
            let n = u32::try_from(operands.len()).unwrap_or(u32::MAX);
            out.push(match expr {
                Expr::And(_) => WireNode::And(n),
                _ => WireNode::Or(n),
            });
        }
        Expr::Not(operand) => {
            flatten(operand, out);
            out.push(WireNode::Not);
        }
        Expr::Compare { op, field, value } => {
            let code = CMPS.iter().position(|c| c == op).unwrap_or(0) as u8;
            out.push(WireNode::Compare(code, field_out(field), value.clone()));
        }
        Expr::In {
            field,
            values,
            negated,
        } => out.push(WireNode::In(field_out(field), values.clone(), *negated)),
        Expr::Exists(field) => out.push(WireNode::Exists(field_out(field))),
        Expr::Contains { field, value } => {
            out.push(WireNode::Contains(field_out(field), value.clone()))
        }
        Expr::Prefix { field, prefix } => {
            out.push(WireNode::Prefix(field_out(field), prefix.clone()))
        }
    }
}

/// Encodes `expr` (whose depth was checked when it was built).
pub fn encode(expr: &Expr) -> Vec<u8> {
    let mut nodes = Vec::new();
    flatten(expr, &mut nodes);
    // The codec's layout (its version byte, then bincode's standard configuration, which the
    // codec's size limit does not change when encoding).
    let mut out = vec![codec::PAYLOAD_VERSION];
    out.extend(
        bincode::encode_to_vec(&nodes, bincode::config::standard())
            .expect("encoding plain data into a Vec cannot fail"),
    );
    out
}

/// Decodes what [`encode`] wrote; anything else is `InvalidArgument`.
pub fn decode(bytes: &[u8]) -> Result<Expr> {
    let bad = |why: &str| Error::invalid(format!("filter expression: {why}"));
    let nodes: Vec<WireNode> =
        codec::decode(bytes).map_err(|e| bad(&format!("undecodable ({e})")))?;
    // (expression, its depth)
    let mut stack: Vec<(Expr, usize)> = Vec::new();
    for node in nodes {
        let (expr, depth) = match node {
            WireNode::And(n) | WireNode::Or(n) => {
                let n = n as usize;
                if n > stack.len() {
                    return Err(bad("an operator has fewer operands than it names"));
                }
                let operands = stack.split_off(stack.len() - n);
                let depth = 1 + operands.iter().map(|(_, d)| *d).max().unwrap_or(0);
                let operands: Vec<Expr> = operands.into_iter().map(|(e, _)| e).collect();
                let expr = match node {
                    WireNode::And(_) => Expr::And(operands),
                    _ => Expr::Or(operands),
                };
                (expr, depth)
            }
            WireNode::Not => {
                let (operand, depth) = stack.pop().ok_or_else(|| bad("not without operand"))?;
                (Expr::Not(Box::new(operand)), depth + 1)
            }
            WireNode::Compare(code, field, value) => {
                let op = *CMPS
                    .get(code as usize)
                    .ok_or_else(|| bad("unknown comparison"))?;
                let field = field_in(field);
                (Expr::Compare { op, field, value }, 1)
            }
            WireNode::In(field, values, negated) => (
                Expr::In {
                    field: field_in(field),
                    values,
                    negated,
                },
                1,
            ),
            WireNode::Exists(field) => (Expr::Exists(field_in(field)), 1),
            WireNode::Contains(field, value) => (
                Expr::Contains {
                    field: field_in(field),
                    value,
                },
                1,
            ),
            WireNode::Prefix(field, prefix) => (
                Expr::Prefix {
                    field: field_in(field),
                    prefix,
                },
                1,
            ),
        };
        if depth > MAX_DEPTH {
            return Err(bad(&format!("deeper than {MAX_DEPTH} levels")));
        }
        stack.push((expr, depth));
    }
    match (stack.pop(), stack.is_empty()) {
        (Some((expr, _)), true) => Ok(expr),
        _ => Err(bad("not exactly one expression")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_round_trip_and_bad_bytes_are_refused() {
        let expr = Expr::And(vec![
            Expr::Compare {
                op: Cmp::Gte,
                field: Field::Attribute("v".into()),
                value: AttributeValue::Int(3),
            },
            Expr::Not(Box::new(Expr::Or(vec![
                Expr::Exists(Field::EntityType),
                Expr::Prefix {
                    field: Field::EntityId,
                    prefix: "a".into(),
                },
            ]))),
            Expr::In {
                field: Field::Attribute("lang".into()),
                values: vec![AttributeValue::String("en".into())],
                negated: true,
            },
            Expr::Contains {
                field: Field::Attribute("tags".into()),
                value: "x".into(),
            },
        ]);
        assert_eq!(decode(&encode(&expr)).unwrap(), expr);
        assert!(decode(b"garbage").is_err());
        let mut deep = Expr::Exists(Field::EntityId);
        for _ in 0..MAX_DEPTH {
            deep = Expr::Not(Box::new(deep));
        }
        let message = decode(&encode(&deep)).unwrap_err().to_string();
        assert!(message.contains("deeper than 16"), "{message}");
        let lone_and = codec::encode(&vec![WireNode::And(2)]).unwrap();
        assert!(decode(&lone_and).is_err());
    }
}
