//! The filter expression: its tree, its evaluation against one entity, its check against a
//! tenant's attribute types, and its flat wire encoding (for the ring's replica protocol).
//!
//! Invariants: evaluation is total (a missing key or a value of another type never matches a
//! comparison, and `ne`/`nin`/`not` are exactly the negations of `eq`/`in`/the operand, so a
//! missing key passes them); an expression is at most [`MAX_DEPTH`] levels deep and decoding
//! never recurses, so no input can exhaust the stack.

use std::cmp::Ordering;

use allidb_storage::cell::AttributeValue;

use crate::error::{Error, Result};

/// Deepest expression accepted (the root is level 1).
pub const MAX_DEPTH: usize = 16;

/// The type family of an attribute key: what a tenant's key holds and what a filter may do
/// with it. Integers and floats are one family (`number`) and compare with each other.
/// Serialized by its [`AttrType::name`] (the topology log records a ring's key types so).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AttrType {
    /// Strings (every untyped attribute).
    String,
    /// Integers and floats.
    Number,
    /// Booleans.
    Bool,
    /// Timestamps (nanoseconds since the epoch).
    Timestamp,
    /// Lists of strings.
    StringList,
}

impl AttrType {
    /// The family of a value.
    pub fn of(value: &AttributeValue) -> Self {
        match value {
            AttributeValue::String(_) => Self::String,
            AttributeValue::Int(_) | AttributeValue::Float(_) => Self::Number,
            AttributeValue::Bool(_) => Self::Bool,
            AttributeValue::Timestamp(_) => Self::Timestamp,
            AttributeValue::StringList(_) => Self::StringList,
        }
    }

    /// The family's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::StringList => "string_list",
        }
    }

    /// The family named `name` (its [`AttrType::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::String,
            Self::Number,
            Self::Bool,
            Self::Timestamp,
            Self::StringList,
        ]
        .into_iter()
        .find(|family| family.name() == name)
    }

    /// True when `<`, `<=`, `>`, `>=` are defined on it.
    pub fn is_ordered(self) -> bool {
        matches!(self, Self::Number | Self::Timestamp)
    }
}

/// What a condition reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// The entity's type (`entity_type`).
    EntityType,
    /// The entity's id (`entity_id`).
    EntityId,
    /// An attribute (untyped or typed) by key.
    Attribute(String),
}

impl Field {
    /// The field named `name` in a filter: `entity_type` and `entity_id` are the entity's own
    /// fields (they shadow attributes of those names), anything else an attribute key.
    pub fn named(name: &str) -> Self {
        match name {
            "entity_type" => Self::EntityType,
            "entity_id" => Self::EntityId,
            key => Self::Attribute(key.to_owned()),
        }
    }

    /// The name as a filter spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::EntityType => "entity_type",
            Self::EntityId => "entity_id",
            Self::Attribute(key) => key,
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// Equal.
    Eq,
    /// Not equal (a missing key passes).
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
}

impl Cmp {
    /// The operator's name in a filter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::Lt => "lt",
            Self::Lte => "lte",
        }
    }

    fn is_range(self) -> bool {
        matches!(self, Self::Gt | Self::Gte | Self::Lt | Self::Lte)
    }
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Every operand holds (an empty list holds).
    And(Vec<Expr>),
    /// Some operand holds (an empty list does not).
    Or(Vec<Expr>),
    /// The operand does not hold.
    Not(Box<Expr>),
    /// `field op value`.
    Compare {
        /// The operator.
        op: Cmp,
        /// The field.
        field: Field,
        /// The value compared with.
        value: AttributeValue,
    },
    /// The field equals one of `values` (`negated`: none of them; a missing key passes).
    In {
        /// The field.
        field: Field,
        /// The values.
        values: Vec<AttributeValue>,
        /// `nin` rather than `in`.
        negated: bool,
    },
    /// The field is present.
    Exists(Field),
    /// The string-list field holds `value`.
    Contains {
        /// The field.
        field: Field,
        /// The element looked for.
        value: String,
    },
    /// The string field starts with `prefix`.
    Prefix {
        /// The field.
        field: Field,
        /// The prefix.
        prefix: String,
    },
}

/// A borrowed attribute value, whichever map it comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A timestamp (nanoseconds).
    Timestamp(i64),
    /// A list of strings.
    List(&'a [String]),
}

impl<'a> From<&'a AttributeValue> for ValueRef<'a> {
    fn from(value: &'a AttributeValue) -> Self {
        match value {
            AttributeValue::String(s) => Self::Str(s),
            AttributeValue::Int(i) => Self::Int(*i),
            AttributeValue::Float(f) => Self::Float(*f),
            AttributeValue::Bool(b) => Self::Bool(*b),
            AttributeValue::Timestamp(t) => Self::Timestamp(*t),
            AttributeValue::StringList(l) => Self::List(l),
        }
    }
}

/// What a filter reads of an entity.
pub trait Subject {
    /// The entity id.
    fn id(&self) -> &str;
    /// The entity type ("" when none).
    fn entity_type(&self) -> &str;
    /// The attribute `key`, typed or not.
    fn attribute(&self, key: &str) -> Option<ValueRef<'_>>;
}

fn field_value<'s>(subject: &'s dyn Subject, field: &Field) -> Option<ValueRef<'s>> {
    match field {
        Field::EntityType => Some(subject.entity_type())
            .filter(|t| !t.is_empty())
            .map(ValueRef::Str),
        Field::EntityId => Some(ValueRef::Str(subject.id())),
        Field::Attribute(key) => subject.attribute(key),
    }
}

/// Exact numeric order of an integer and a float (no rounding of large integers).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // i64 converts exactly to i128; a float beyond the i64 range decides alone.
    if f >= 9.3e18 {
        return Some(Ordering::Less);
    }
    if f <= -9.3e18 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    match (i as i128).cmp(&(whole as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)),
        other => Some(other),
    }
}

/// The order of a stored value and a filter value of the same family (`None`: not comparable).
pub fn compare(stored: ValueRef<'_>, value: &AttributeValue) -> Option<Ordering> {
    match (stored, value) {
        (ValueRef::Str(a), AttributeValue::String(b)) => Some(a.cmp(b.as_str())),
        (ValueRef::Int(a), AttributeValue::Int(b)) => Some(a.cmp(b)),
        (ValueRef::Int(a), AttributeValue::Float(b)) => cmp_int_float(a, *b),
        (ValueRef::Float(a), AttributeValue::Int(b)) => cmp_int_float(*b, a).map(Ordering::reverse),
        (ValueRef::Float(a), AttributeValue::Float(b)) => a.partial_cmp(b),
        (ValueRef::Bool(a), AttributeValue::Bool(b)) => Some(a.cmp(b)),
        (ValueRef::Timestamp(a), AttributeValue::Timestamp(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn equals(stored: Option<ValueRef<'_>>, value: &AttributeValue) -> bool {
    stored.is_some_and(|s| compare(s, value) == Some(Ordering::Equal))
}

impl Expr {
    /// True when `subject` passes.
    pub fn matches(&self, subject: &dyn Subject) -> bool {
        match self {
            Self::And(operands) => operands.iter().all(|e| e.matches(subject)),
            Self::Or(operands) => operands.iter().any(|e| e.matches(subject)),
            Self::Not(operand) => !operand.matches(subject),
            Self::Compare { op, field, value } => {
                let stored = field_value(subject, field);
                match op {
                    Cmp::Eq => equals(stored, value),
                    Cmp::Ne => !equals(stored, value),
                    range => match stored.and_then(|s| compare(s, value)) {
                        None => false,
                        Some(order) => match range {
                            Cmp::Gt => order == Ordering::Greater,
                            Cmp::Gte => order != Ordering::Less,
                            Cmp::Lt => order == Ordering::Less,
                            _ => order != Ordering::Greater,
                        },
                    },
                }
            }
            Self::In {
                field,
                values,
                negated,
            } => {
                let stored = field_value(subject, field);
                values.iter().any(|v| equals(stored, v)) != *negated
            }
            Self::Exists(field) => field_value(subject, field).is_some(),
            Self::Contains { field, value } => matches!(
                field_value(subject, field),
                Some(ValueRef::List(list)) if list.iter().any(|v| v == value)
            ),
            Self::Prefix { field, prefix } => matches!(
                field_value(subject, field),
                Some(ValueRef::Str(s)) if s.starts_with(prefix.as_str())
            ),
        }
    }

    /// Levels of the tree (a leaf is 1).
    pub fn depth(&self) -> usize {
        match self {
            Self::And(operands) | Self::Or(operands) => {
                1 + operands.iter().map(Expr::depth).max().unwrap_or(0)
            }
            Self::Not(operand) => 1 + operand.depth(),
            _ => 1,
        }
    }

    /// The operator's name (`and`, `gt`, `in`, ...).
    pub fn op_name(&self) -> &'static str {
        match self {
            Self::And(_) => "and",
            Self::Or(_) => "or",
            Self::Not(_) => "not",
            Self::Compare { op, .. } => op.name(),
            Self::In { negated: false, .. } => "in",
            Self::In { negated: true, .. } => "nin",
            Self::Exists(_) => "exists",
            Self::Contains { .. } => "contains",
            Self::Prefix { .. } => "prefix",
        }
    }

    /// Checks the expression against what a tenant holds: `types(key)` is the type family
    /// the tenant's live entities give `key` (`None`: no live entity has it; any condition is
    /// then accepted and matches as a missing key does). Errors are `InvalidArgument` naming
    /// the condition's path under `root` (`where.and[2].gt.version`), the key and both types.
    pub fn check(&self, root: &str, types: &dyn Fn(&str) -> Option<AttrType>) -> Result<()> {
        if self.depth() > MAX_DEPTH {
            return Err(Error::invalid(format!(
                "{root}: the filter is nested {} levels deep, the maximum is {MAX_DEPTH}",
                self.depth()
            )));
        }
        self.check_at(root, types)
    }

    fn check_at(&self, path: &str, types: &dyn Fn(&str) -> Option<AttrType>) -> Result<()> {
        let op = self.op_name();
        match self {
            Self::And(operands) | Self::Or(operands) => {
                for (i, operand) in operands.iter().enumerate() {
                    operand.check_at(&format!("{path}.{op}[{i}]"), types)?;
                }
                Ok(())
            }
            Self::Not(operand) => operand.check_at(&format!("{path}.not"), types),
            Self::Compare {
                op: cmp,
                field,
                value,
            } => {
                let at = format!("{path}.{op}.{}", field.name());
                let wanted = AttrType::of(value);
                if wanted == AttrType::StringList {
                    return Err(Error::invalid(format!(
                        "{at}: {op} compares with one value, got a string_list (use contains \
                         for list membership)"
                    )));
                }
                if cmp.is_range() && !wanted.is_ordered() {
                    return Err(Error::invalid(format!(
                        "{at}: {op} needs a number or a timestamp, got a {}",
                        wanted.name()
                    )));
                }
                check_field(&at, op, field, &[wanted], types)
            }
            Self::In { field, values, .. } => {
                let at = format!("{path}.{op}.{}", field.name());
                let mut wanted: Vec<AttrType> = values.iter().map(AttrType::of).collect();
                if wanted.contains(&AttrType::StringList) {
                    return Err(Error::invalid(format!(
                        "{at}: {op} takes single values, got a string_list"
                    )));
                }
                wanted.sort();
                wanted.dedup();
                check_field(&at, op, field, &wanted, types)
            }
            Self::Exists(_) => Ok(()),
            Self::Contains { field, .. } => {
                let at = format!("{path}.{op}.{}", field.name());
                match field {
                    Field::Attribute(key) => match types(key) {
                        Some(held) if held != AttrType::StringList => Err(Error::invalid(format!(
                            "{at}: contains needs a string_list attribute, but attribute \
                                 {key:?} holds {} values",
                            held.name()
                        ))),
                        _ => Ok(()),
                    },
                    other => Err(Error::invalid(format!(
                        "{at}: contains needs a string_list attribute, {} is a string",
                        other.name()
                    ))),
                }
            }
            Self::Prefix { field, .. } => {
                let at = format!("{path}.{op}.{}", field.name());
                check_field(&at, op, field, &[AttrType::String], types)
            }
        }
    }
}

/// Checks that `field` can be compared by `op` with values of the `wanted` families.
fn check_field(
    at: &str,
    op: &str,
    field: &Field,
    wanted: &[AttrType],
    types: &dyn Fn(&str) -> Option<AttrType>,
) -> Result<()> {
    let (held, what) = match field {
        Field::EntityType | Field::EntityId => (Some(AttrType::String), field.name().to_owned()),
        Field::Attribute(key) => (types(key), format!("attribute {key:?}")),
    };
    let Some(held) = held else {
        return Ok(());
    };
    if held == AttrType::StringList {
        return Err(Error::invalid(format!(
            "{at}: {what} holds string_list values: {op} does not apply (use contains)"
        )));
    }
    if let Some(other) = wanted.iter().find(|w| **w != held) {
        return Err(Error::invalid(format!(
            "{at}: {what} holds {} values, the filter gives a {}",
            held.name(),
            other.name()
        )));
    }
    if matches!(op, "gt" | "gte" | "lt" | "lte") && !held.is_ordered() {
        return Err(Error::invalid(format!(
            "{at}: {op} needs a number or a timestamp, {what} holds {} values",
            held.name()
        )));
    }
    Ok(())
}

/// A stored entity as a filter reads it (scans and traversals filter what they read).
#[derive(Clone, Copy, Debug)]
pub struct EntitySubject<'a>(pub &'a allidb_storage::cell::Entity);

impl Subject for EntitySubject<'_> {
    fn id(&self) -> &str {
        &self.0.id
    }

    fn entity_type(&self) -> &str {
        &self.0.body.entity_type
    }

    fn attribute(&self, key: &str) -> Option<ValueRef<'_>> {
        let body = &self.0.body;
        match body.typed_attributes.get(key) {
            Some(value) => Some(value.into()),
            None => body.attributes.get(key).map(|s| ValueRef::Str(s)),
        }
    }
}
