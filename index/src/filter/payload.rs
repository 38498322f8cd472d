//! The per-tenant payload index: for every attribute key, the ids holding each value (in value
//! order), the ids of each entity type, and every live id. It tells the planner how many
//! entities a filter can match before anything is searched, and enumerates the candidates of a
//! selective filter without looking at the other entities.
//!
//! Invariants: the postings always equal what a scan of the live entities would give (the
//! fact table updates them with every upsert and removal); counts per key and type family are
//! exact, so a tenant's key types are known without a scan. Numbers are posted by their `f64`
//! value: a range's candidates are widened to the rounded bounds, and every candidate is then
//! checked with the exact predicate, so rounding never loses a match.
//!
//! Postings hold **ordinals**: each live entity has a small dense number (a removed entity's is
//! reused by the next insert, last in first out, so an entity replaced by an upsert keeps its
//! own). [`PayloadIndex::ordinal_epoch`] changes whenever an ordinal goes to another entity than
//! the one it had, so a map from something else to ordinals stays valid while it does not.
//! The index's map from entity id to ordinal is the tenant's only hash map by entity id among
//! the facts: the fact table keeps each entity's facts in a vector by ordinal.
//!
//! Memory: a posting is a roaring bitmap of ordinals (by the crate's layout, 2 bytes an entity
//! in a sparse container, 8 KiB per 65,536 ordinals in a dense one; a hash set of `usize` took
//! 9 bytes a bucket); each live entity costs one hash entry and one `Arc<str>` of its id,
//! shared with the list of owners.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use roaring::RoaringBitmap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allidb_storage::cell::AttributeValue;

use super::bits::Bits;
use super::expr::{AttrType, Cmp, Expr, Field, ValueRef};

mod membership;

pub use membership::Membership;

/// A posted value, in a total order within each family.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Posted {
    Bool(bool),
    /// `f64::to_bits` mapped so that the integer order is the numeric order.
    Number(u64),
    Str(String),
    Timestamp(i64),
}

fn ordered_bits(f: f64) -> u64 {
    // -0.0 equals 0.0: one posting for both.
    let bits = if f == 0.0 { 0 } else { f.to_bits() };
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The number [`ordered_bits`] posted.
fn from_ordered_bits(bits: u64) -> f64 {
    f64::from_bits(if bits >> 63 == 1 {
        bits & !(1 << 63)
    } else {
        !bits
    })
}

fn posted(value: ValueRef<'_>) -> Vec<Posted> {
    match value {
        ValueRef::Str(s) => vec![Posted::Str(s.to_owned())],
        ValueRef::Int(i) => vec![Posted::Number(ordered_bits(i as f64))],
        ValueRef::Float(f) => vec![Posted::Number(ordered_bits(f))],
        ValueRef::Bool(b) => vec![Posted::Bool(b)],
        ValueRef::Timestamp(t) => vec![Posted::Timestamp(t)],
        ValueRef::List(list) => {
            let mut set: Vec<Posted> = list.iter().map(|s| Posted::Str(s.clone())).collect();
            set.sort();
            set.dedup();
            set
        }
    }
}

fn posted_value(value: &AttributeValue) -> Option<Posted> {
    match value {
        AttributeValue::StringList(_) => None,
        other => posted(other.into()).pop(),
    }
}

#[derive(Debug, Default)]
struct KeyIndex {
    /// Live entities holding the key, per type family.
    types: BTreeMap<AttrType, usize>,
    /// Entities holding the key.
    holders: usize,
    values: BTreeMap<Posted, RoaringBitmap>,
}

/// `(certain, to check)`: candidates that match by construction, and candidates the exact
/// predicate must still check ([`PayloadIndex::split_candidates`]).
pub type SplitCandidates = (Vec<Arc<str>>, Vec<Arc<str>>);

/// Lower and upper bounds of how many entities a filter matches, and a point estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cardinality {
    /// At least this many match.
    pub lower: usize,
    /// At most this many match.
    pub upper: usize,
    /// The planner's estimate (exact when `lower == upper`; independence across `and`/`or`).
    pub estimate: f64,
}

impl Cardinality {
    fn exact(n: usize) -> Self {
        Self {
            lower: n,
            upper: n,
            estimate: n as f64,
        }
    }
}

/// An ordinal epoch never given before in this process.
fn next_epoch() -> u64 {
    static EPOCHS: AtomicU64 = AtomicU64::new(1);
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// The payload index of one tenant.
#[derive(Debug)]
pub struct PayloadIndex {
    /// Each live entity's ordinal (the tenant's one map from entity id: the fact table keeps
    /// its facts by ordinal).
    ordinals: HashMap<Arc<str>, usize>,
    /// The entity each ordinal was given to last (kept after its removal).
    owners: Vec<Arc<str>>,
    /// Ordinals of removed entities, reused last in first out.
    free: Vec<usize>,
    /// The live ordinals.
    live: Bits,
    /// See [`PayloadIndex::ordinal_epoch`].
    epoch: u64,
    types: HashMap<String, RoaringBitmap>,
    keys: HashMap<String, KeyIndex>,
}

impl Default for PayloadIndex {
    fn default() -> Self {
        Self {
            ordinals: HashMap::new(),
            owners: Vec::new(),
            free: Vec::new(),
            live: Bits::default(),
            epoch: next_epoch(),
            types: HashMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl PayloadIndex {
    /// Posts a live entity (which must not be posted already) and returns its ordinal.
    pub fn insert<'a>(
        &mut self,
        id: &str,
        entity_type: &str,
        attributes: impl Iterator<Item = (&'a String, ValueRef<'a>)>,
    ) -> usize {
        let id: Arc<str> = Arc::from(id);
        let ordinal = match self.free.pop() {
            Some(ordinal) => {
                if self.owners[ordinal] != id {
                    self.owners[ordinal] = id.clone();
                    self.epoch = next_epoch();
                }
                ordinal
            }
            None => {
                assert!(
                    u32::try_from(self.owners.len()).is_ok(),
                    "fewer than 2^32 entities in one tenant's facts (memory bounds them long before)"
                );
                self.owners.push(id.clone());
                self.live.grow(self.owners.len());
                self.owners.len() - 1
            }
        };
        self.live.insert(ordinal);
        self.ordinals.insert(id, ordinal);
        let posted_ordinal = posting(ordinal);
        // The type is nearly always known already: no `String` made for it then.
        match self.types.get_mut(entity_type) {
            Some(holders) => holders.insert(posted_ordinal),
            None => self
                .types
                .entry(entity_type.to_owned())
                .or_default()
                .insert(posted_ordinal),
        };
        for (key, value) in attributes {
            let index = self.keys.entry(key.clone()).or_default();
            *index.types.entry(type_of(value)).or_default() += 1;
            index.holders += 1;
            for p in posted(value) {
                index.values.entry(p).or_default().insert(posted_ordinal);
            }
        }
        ordinal
    }

    /// Removes what [`PayloadIndex::insert`] posted for the same arguments.
    pub fn remove<'a>(
        &mut self,
        id: &str,
        entity_type: &str,
        attributes: impl Iterator<Item = (&'a String, ValueRef<'a>)>,
    ) {
        let Some(ordinal) = self.ordinals.remove(id) else {
            return;
        };
        self.live.remove(ordinal);
        self.free.push(ordinal);
        let posted_ordinal = posting(ordinal);
        if let Some(set) = self.types.get_mut(entity_type) {
            set.remove(posted_ordinal);
            if set.is_empty() {
                self.types.remove(entity_type);
            }
        }
        for (key, value) in attributes {
            let Some(index) = self.keys.get_mut(key) else {
                continue;
            };
            let family = type_of(value);
            if let Some(c) = index.types.get_mut(&family) {
                *c -= 1;
                if *c == 0 {
                    index.types.remove(&family);
                }
            }
            index.holders = index.holders.saturating_sub(1);
            for p in posted(value) {
                if let Some(set) = index.values.get_mut(&p) {
                    set.remove(posted_ordinal);
                    if set.is_empty() {
                        index.values.remove(&p);
                    }
                }
            }
            if index.holders == 0 {
                self.keys.remove(key);
            }
        }
    }

    /// Live entities.
    pub fn len(&self) -> usize {
        self.ordinals.len()
    }

    /// True when no entity is posted.
    pub fn is_empty(&self) -> bool {
        self.ordinals.is_empty()
    }

    /// The ordinal of live entity `id`.
    pub fn ordinal(&self, id: &str) -> Option<usize> {
        self.ordinals.get(id).copied()
    }

    /// The live entity holding `ordinal`.
    pub fn entity(&self, ordinal: usize) -> Option<&Arc<str>> {
        self.live.contains(ordinal).then(|| &self.owners[ordinal])
    }

    /// Every ordinal given so far is below this.
    pub fn ordinal_bound(&self) -> usize {
        self.owners.len()
    }

    /// Changes (to a value no index of this process had) whenever an ordinal is given to
    /// another entity than the one it had: while it stays, every entity that holds an ordinal
    /// holds the same one or none (removed), and an entity posted later gets a new one.
    pub fn ordinal_epoch(&self) -> u64 {
        self.epoch
    }

    /// Live entities of `entity_type`.
    pub fn type_count(&self, entity_type: &str) -> usize {
        self.types.get(entity_type).map_or(0, posting_count)
    }

    /// The type family live entities give `key` (`None`: none holds it). Should two writes
    /// have raced past the type check, the most common family is reported.
    pub fn key_type(&self, key: &str) -> Option<AttrType> {
        self.keys
            .get(key)?
            .types
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(family, _)| *family)
    }

    /// The type families live entities give `key`, with their counts.
    pub fn key_types(&self, key: &str) -> Vec<(AttrType, usize)> {
        self.keys
            .get(key)
            .map(|k| k.types.iter().map(|(t, c)| (*t, *c)).collect())
            .unwrap_or_default()
    }

    /// Bounds of how many live entities `expr` matches, from the postings alone.
    pub fn cardinality(&self, expr: &Expr) -> Cardinality {
        let n = self.ordinals.len();
        let unknown = Cardinality {
            lower: 0,
            upper: n,
            estimate: n as f64 / 2.0,
        };
        match expr {
            Expr::And(operands) => {
                let mut lower_sum = 0usize;
                let mut upper = n;
                let mut fraction = 1.0;
                for c in operands.iter().map(|e| self.cardinality(e)) {
                    lower_sum += c.lower;
                    upper = upper.min(c.upper);
                    fraction *= c.estimate / n.max(1) as f64;
                }
                let slack = n.saturating_mul(operands.len().saturating_sub(1));
                Cardinality {
                    lower: lower_sum.saturating_sub(slack).min(upper),
                    upper,
                    estimate: (fraction * n as f64).min(upper as f64),
                }
            }
            Expr::Or(operands) => {
                let mut lower = 0usize;
                let mut upper = 0usize;
                let mut missed = 1.0;
                for c in operands.iter().map(|e| self.cardinality(e)) {
                    lower = lower.max(c.lower);
                    upper = upper.saturating_add(c.upper);
                    missed *= 1.0 - c.estimate / n.max(1) as f64;
                }
                let upper = upper.min(n);
                Cardinality {
                    lower,
                    upper,
                    estimate: ((1.0 - missed) * n as f64).clamp(lower as f64, upper as f64),
                }
            }
            Expr::Not(operand) => {
                let c = self.cardinality(operand);
                Cardinality {
                    lower: n - c.upper.min(n),
                    upper: n - c.lower.min(n),
                    estimate: (n as f64 - c.estimate).max(0.0),
                }
            }
            Expr::Compare {
                op: Cmp::Ne,
                field,
                value,
            } => self.cardinality(&Expr::Not(Box::new(Expr::Compare {
                op: Cmp::Eq,
                field: field.clone(),
                value: value.clone(),
            }))),
            Expr::In {
                field,
                values,
                negated: true,
            } => self.cardinality(&Expr::Not(Box::new(Expr::In {
                field: field.clone(),
                values: values.clone(),
                negated: false,
            }))),
            Expr::Exists(Field::EntityId) => Cardinality::exact(n),
            Expr::Exists(Field::EntityType) => Cardinality::exact(n - self.type_count("").min(n)),
            Expr::Exists(Field::Attribute(key)) => {
                Cardinality::exact(self.keys.get(key).map_or(0, |k| k.holders))
            }
            // The sets of a leaf are disjoint (one value per key and entity; `contains` reads
            // one set), so their sizes add up: an upper bound, and the count itself but for
            // the postings rounding may have mixed (`uncertain`).
            _ => match self.postings(expr) {
                Some(sets) => {
                    let upper = sets.iter().map(PostingSet::len).sum::<usize>().min(n);
                    let lower = upper.saturating_sub(self.uncertain(expr));
                    Cardinality {
                        lower,
                        upper,
                        estimate: upper as f64,
                    }
                }
                None => unknown,
            },
        }
    }

    /// How many of a leaf's posted candidates may not match: a range's posting at its bound
    /// (a strict bound, or integers rounded onto it), and the postings of integers beyond
    /// 2^53 (several integers share one `f64`).
    fn uncertain(&self, expr: &Expr) -> usize {
        const EXACT: i64 = 1 << 53;
        let (key, values): (&str, Vec<&AttributeValue>) = match expr {
            Expr::Compare {
                op: Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte,
                field: Field::Attribute(key),
                value,
            } => {
                let boundary = self
                    .keys
                    .get(key.as_str())
                    .zip(posted_value(value))
                    .and_then(|(index, bound)| index.values.get(&bound))
                    .map_or(0, posting_count);
                return boundary;
            }
            Expr::Compare {
                op: Cmp::Eq,
                field: Field::Attribute(key),
                value,
            } => (key, vec![value]),
            Expr::In {
                field: Field::Attribute(key),
                values,
                ..
            } => (key, values.iter().collect()),
            _ => return 0,
        };
        let Some(index) = self.keys.get(key) else {
            return 0;
        };
        values
            .into_iter()
            .filter(|v| matches!(v, AttributeValue::Int(i) if !(-EXACT..=EXACT).contains(i)))
            .filter_map(|v| posted_value(v).and_then(|p| index.values.get(&p)))
            .map(posting_count)
            .sum()
    }

    /// A superset of the live entities `expr` matches, when the postings can enumerate it
    /// (`None`: only a scan can; negations, for instance). Each id appears once.
    pub fn candidates(&self, expr: &Expr) -> Option<Vec<Arc<str>>> {
        match expr {
            Expr::And(operands) => {
                // The operand with the fewest candidates bounds the whole.
                let best = operands
                    .iter()
                    .filter(|e| self.enumerable(e))
                    .min_by_key(|e| self.cardinality(e).upper)?;
                self.candidates(best)
            }
            Expr::Or(operands) => {
                let mut all: foldhash::HashSet<Arc<str>> = foldhash::HashSet::default();
                for operand in operands {
                    all.extend(self.candidates(operand)?);
                }
                Some(all.into_iter().collect())
            }
            _ => {
                let sets = self.postings(expr)?;
                if sets.len() == 1 {
                    return Some(sets[0].iter().map(|o| self.owners[o].clone()).collect());
                }
                let mut all = RoaringBitmap::new();
                for set in sets {
                    all.extend(set.iter().map(posting));
                }
                Some(
                    all.iter()
                        .map(|o| self.owners[o as usize].clone())
                        .collect(),
                )
            }
        }
    }

    /// The candidates of a single positive leaf on an attribute (`eq`, `in`, a numeric or
    /// timestamp range) split into those that certainly match and those the exact predicate
    /// must still check; `None` when `expr` is not such a leaf (use
    /// [`PayloadIndex::candidates`]). Certain: a posting strictly inside a range (posting
    /// rounds monotonically, so a value posted strictly below the rounded bound is below the
    /// bound), a string, bool or timestamp posting of `eq`/`in`, a number posting of `eq`/`in`
    /// whose magnitude is below 2^53 (no other integer rounds onto it). To check: the posting
    /// at a range's bound, larger numbers, NaN, string ranges. Keys that a live entity holds
    /// as a string list are never split (a list is posted under each element). Every id
    /// appears once; both lists hold live (posted) entities only: expiry is the caller's.
    pub fn split_candidates(&self, expr: &Expr) -> Option<SplitCandidates> {
        let mut certain = Vec::new();
        let mut check = Vec::new();
        self.split_postings(expr, &mut |set, sure| {
            let out = if sure { &mut certain } else { &mut check };
            out.extend(set.iter().map(|o| self.owners[o as usize].clone()));
        })?;
        Some((certain, check))
    }

    /// [`PayloadIndex::split_candidates`] posting by posting: `take(set, certain)` for each
    /// posting of the leaf; `None` (nothing taken) when `expr` is not such a leaf.
    fn split_postings(
        &self,
        expr: &Expr,
        take: &mut dyn FnMut(&RoaringBitmap, bool),
    ) -> Option<()> {
        let key = split_leaf_key(expr)?;
        let Some(index) = self.keys.get(key) else {
            return Some(());
        };
        if index.types.contains_key(&AttrType::StringList) {
            return None;
        }
        const EXACT: f64 = (1u64 << 53) as f64;
        match expr {
            Expr::Compare {
                op: op @ (Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte),
                value,
                ..
            } => {
                let Some(bound) = posted_value(value) else {
                    return Some(());
                };
                let family = std::mem::discriminant(&bound);
                let range: Box<dyn Iterator<Item = (&Posted, &RoaringBitmap)>> = match op {
                    Cmp::Gt | Cmp::Gte => Box::new(index.values.range(&bound..)),
                    _ => Box::new(index.values.range(..=&bound)),
                };
                for (posting, set) in range.filter(|(p, _)| std::mem::discriminant(*p) == family) {
                    let sure = *posting != bound
                        && match posting {
                            Posted::Number(bits) => !from_ordered_bits(*bits).is_nan(),
                            Posted::Timestamp(_) => true,
                            Posted::Bool(_) | Posted::Str(_) => false,
                        };
                    take(set, sure);
                }
            }
            Expr::Compare { .. } | Expr::In { .. } => {
                let values: &[AttributeValue] = match expr {
                    Expr::In { values, .. } => values,
                    Expr::Compare { value, .. } => std::slice::from_ref(value),
                    _ => return None,
                };
                let mut postings: Vec<Posted> = values.iter().filter_map(posted_value).collect();
                postings.sort();
                postings.dedup();
                for posting in &postings {
                    if let Some(set) = index.values.get(posting) {
                        let sure = match posting {
                            Posted::Number(bits) => from_ordered_bits(*bits).abs() < EXACT,
                            Posted::Bool(_) | Posted::Str(_) | Posted::Timestamp(_) => true,
                        };
                        take(set, sure);
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn enumerable(&self, expr: &Expr) -> bool {
        match expr {
            Expr::And(operands) => operands.iter().any(|e| self.enumerable(e)),
            Expr::Or(operands) => operands.iter().all(|e| self.enumerable(e)),
            Expr::Compare { op: Cmp::Ne, .. } | Expr::In { negated: true, .. } => false,
            Expr::Not(_) | Expr::Exists(_) => false,
            _ => self.postings(expr).is_some(),
        }
    }

    /// The posting sets whose union holds every match of a positive leaf (`None`: not a leaf
    /// the postings answer).
    fn postings(&self, expr: &Expr) -> Option<Vec<PostingSet<'_>>> {
        match expr {
            Expr::Compare {
                op: Cmp::Eq,
                field,
                value,
            } => Some(self.equal(field, std::slice::from_ref(value))),
            Expr::In {
                field,
                values,
                negated: false,
            } => Some(self.equal(field, values)),
            Expr::Compare {
                op,
                field: Field::Attribute(key),
                value,
            } if matches!(op, Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte) => {
                let Some(index) = self.keys.get(key) else {
                    return Some(Vec::new());
                };
                let Some(bound) = posted_value(value) else {
                    return Some(Vec::new());
                };
                // Widened to inclusive bounds in the posted order: candidates, checked later.
                let family = std::mem::discriminant(&bound);
                let range: Box<dyn Iterator<Item = (&Posted, &RoaringBitmap)>> = match op {
                    Cmp::Gt | Cmp::Gte => Box::new(index.values.range(bound..)),
                    _ => Box::new(index.values.range(..=bound)),
                };
                Some(
                    range
                        .filter(|(p, _)| std::mem::discriminant(*p) == family)
                        .map(|(_, set)| PostingSet::Set(set))
                        .collect(),
                )
            }
            Expr::Contains {
                field: Field::Attribute(key),
                value,
            } => Some(
                self.keys
                    .get(key)
                    .and_then(|k| k.values.get(&Posted::Str(value.clone())))
                    .map(PostingSet::Set)
                    .into_iter()
                    .collect(),
            ),
            Expr::Prefix {
                field: Field::Attribute(key),
                prefix,
            } => {
                let Some(index) = self.keys.get(key) else {
                    return Some(Vec::new());
                };
                Some(
                    index
                        .values
                        .range(Posted::Str(prefix.clone())..)
                        .take_while(
                            |(p, _)| matches!(p, Posted::Str(s) if s.starts_with(prefix.as_str())),
                        )
                        .map(|(_, set)| PostingSet::Set(set))
                        .collect(),
                )
            }
            Expr::Prefix {
                field: Field::EntityType,
                prefix,
            } => Some(
                self.types
                    .iter()
                    // An entity without a type has no `entity_type` to match.
                    .filter(|(t, _)| !t.is_empty() && t.starts_with(prefix.as_str()))
                    .map(|(_, set)| PostingSet::Set(set))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn equal(&self, field: &Field, values: &[AttributeValue]) -> Vec<PostingSet<'_>> {
        match field {
            Field::EntityType => values
                .iter()
                .filter_map(|v| match v {
                    AttributeValue::String(t) if !t.is_empty() => {
                        self.types.get(t).map(PostingSet::Set)
                    }
                    _ => None,
                })
                .collect(),
            Field::EntityId => values
                .iter()
                .filter_map(|v| match v {
                    AttributeValue::String(id) => self.ordinal(id).map(PostingSet::One),
                    _ => None,
                })
                .collect(),
            Field::Attribute(key) => {
                let Some(index) = self.keys.get(key) else {
                    return Vec::new();
                };
                let mut keys: Vec<Posted> = values.iter().filter_map(posted_value).collect();
                keys.sort();
                keys.dedup();
                keys.iter()
                    .filter_map(|p| index.values.get(p).map(PostingSet::Set))
                    .collect()
            }
        }
    }
}

fn type_of(value: ValueRef<'_>) -> AttrType {
    match value {
        ValueRef::Str(_) => AttrType::String,
        ValueRef::Int(_) | ValueRef::Float(_) => AttrType::Number,
        ValueRef::Bool(_) => AttrType::Bool,
        ValueRef::Timestamp(_) => AttrType::Timestamp,
        ValueRef::List(_) => AttrType::StringList,
    }
}

/// An ordinal as a posting (a roaring bitmap) holds it: ordinals are below 2^32 by
/// construction ([`PayloadIndex::insert`]).
fn posting(ordinal: usize) -> u32 {
    u32::try_from(ordinal).expect("ordinals are below 2^32 (PayloadIndex::insert asserts it)")
}

/// How many ordinals a posting holds.
fn posting_count(set: &RoaringBitmap) -> usize {
    // At most 2^32 members: fits a usize on every target the store builds for (64-bit).
    set.len() as usize
}

/// Some posted ordinals.
enum PostingSet<'a> {
    Set(&'a RoaringBitmap),
    One(usize),
}

impl PostingSet<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Set(set) => posting_count(set),
            Self::One(_) => 1,
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match self {
            Self::Set(set) => Box::new(set.iter().map(|o| o as usize)),
            Self::One(ordinal) => Box::new(std::iter::once(*ordinal)),
        }
    }
}

/// The attribute key of a leaf the postings can split into certain and uncertain matches (a
/// comparison other than `ne`, or a non-negated `in`, on an attribute); `None` for any other
/// expression.
fn split_leaf_key(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Compare {
            op: Cmp::Eq | Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte,
            field: Field::Attribute(key),
            ..
        }
        | Expr::In {
            field: Field::Attribute(key),
            negated: false,
            ..
        } => Some(key.as_str()),
        _ => None,
    }
}
