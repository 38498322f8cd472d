//! Per-tenant entity facts kept in memory for filtering and scoring: type, attributes (typed),
//! importance and update time of every live entity, plus the tenant's payload index
//! ([`PayloadIndex`]: ids per type and per attribute value) so the planner knows how many
//! entities a filter allows without scanning, and which.
//!
//! Storage: the payload index gives each live entity its ordinal (its map from id to ordinal is
//! the tenant's only one), and `metas` holds each entity's facts at its ordinal: one hash entry
//! and one copy of the id per entity (a second map from id to facts cost ~160 bytes an entity).
//!
//! Invariants: `metas[o]` is `Some` exactly for the ordinals the payload index holds live; the
//! payload index always equals what a scan of the recorded facts would give; no live entity's
//! scored importance exceeds `most_important` and none was updated after `newest_update` (both
//! only ever grow: an upper bound, exact until the entity holding the maximum changes).
//!
//! Expiry (issue 39, TTL): `expiring` lists every recorded entity with an expiry time, soonest
//! first. An entity whose time has come is no longer live for any lookup ([`FactTable::get`],
//! the scorer's facts), even before the store's expiry sweep removes it from every index; so
//! every read that decides liveness here hides it at once. Lookups read the wall clock only
//! for entities that carry an expiry time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allidb_storage::cell::AttributeValue;
use allidb_storage::hlc::wall_nanos;

use crate::filter::{Expr, PayloadIndex, Subject, ValueRef};
use crate::query::scorer::scored_importance;
use crate::query::{EntityFacts, FactSource};

/// What the store knows about one live entity.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct EntityMeta {
    /// Entity type.
    pub entity_type: String,
    /// Filterable attributes, untyped ones as strings.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Importance (scorer input).
    pub importance: f64,
    /// Last update, microseconds since the Unix epoch.
    pub updated_at_micros: u64,
    /// Timestamp (HLC) of the body this was taken from: older bodies never overwrite newer.
    pub body_ts: u64,
    /// When the entity expires, nanoseconds since the Unix epoch (0: never).
    pub expires_at_nanos: i64,
}

impl EntityMeta {
    /// Whether the entity is live at `now_nanos` (it has no expiry time, or it lies ahead).
    pub fn live_at(&self, now_nanos: i64) -> bool {
        self.expires_at_nanos == 0 || self.expires_at_nanos > now_nanos
    }
}

/// An entity's facts as a filter reads them.
#[derive(Clone, Copy, Debug)]
pub struct MetaSubject<'a> {
    /// The entity id.
    pub id: &'a str,
    /// Its facts.
    pub meta: &'a EntityMeta,
}

impl Subject for MetaSubject<'_> {
    fn id(&self) -> &str {
        self.id
    }

    fn entity_type(&self) -> &str {
        &self.meta.entity_type
    }

    fn attribute(&self, key: &str) -> Option<ValueRef<'_>> {
        self.meta.attributes.get(key).map(ValueRef::from)
    }
}

/// A query filter: the AND of any of `entity_types` (empty = any type), every attribute in
/// `attributes` equal to its string, and `expression` (the request's `where`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Allowed entity types; empty allows every type.
    pub entity_types: Vec<String>,
    /// Attributes that must be present with exactly these (string) values.
    pub attributes: BTreeMap<String, String>,
    /// A filter expression (`None`: none).
    pub expression: Option<Expr>,
}

impl Filter {
    /// True when the filter restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.entity_types.is_empty() && self.attributes.is_empty() && self.expression.is_none()
    }

    /// True if the entity `subject` passes.
    pub fn matches(&self, subject: &dyn Subject) -> bool {
        (self.entity_types.is_empty()
            || self.entity_types.iter().any(|t| t == subject.entity_type()))
            && self
                .attributes
                .iter()
                .all(|(k, v)| matches!(subject.attribute(k), Some(ValueRef::Str(s)) if s == v))
            && self.expression.as_ref().is_none_or(|e| e.matches(subject))
    }

    /// True if entity `id` with facts `meta` passes.
    pub fn allows(&self, id: &str, meta: &EntityMeta) -> bool {
        self.matches(&MetaSubject { id, meta })
    }

    /// The whole filter as one expression (`None`: it restricts nothing).
    pub fn as_expression(&self) -> Option<Expr> {
        use crate::filter::{Cmp, Field};
        let mut parts = Vec::new();
        if !self.entity_types.is_empty() {
            parts.push(Expr::In {
                field: Field::EntityType,
                values: self
                    .entity_types
                    .iter()
                    .map(|t| AttributeValue::String(t.clone()))
                    .collect(),
                negated: false,
            });
        }
        for (k, v) in &self.attributes {
            parts.push(Expr::Compare {
                op: Cmp::Eq,
                field: Field::Attribute(k.clone()),
                value: AttributeValue::String(v.clone()),
            });
        }
        parts.extend(self.expression.clone());
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Expr::And(parts)),
        }
    }
}

/// A generation number never given before in this process.
fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// The facts of one tenant.
#[derive(Debug, Default)]
pub struct FactTable {
    /// Each recorded entity's facts at its ordinal in `payload` (`None`: a free ordinal).
    metas: Vec<Option<EntityMeta>>,
    payload: PayloadIndex,
    /// The largest scored importance of any entity recorded so far (at least 0).
    most_important: f64,
    /// The latest `updated_at_micros` of any entity recorded so far.
    newest_update: u64,
    /// `(expires_at_nanos, id)` of every recorded entity with an expiry time.
    expiring: BTreeSet<(i64, String)>,
    /// Changed by every change of the recorded facts (what a filter's answer depends on), to a
    /// value no table of this process had before ([`next_generation`]); 0 only while nothing
    /// was ever recorded.
    generation: u64,
}

impl FactTable {
    /// Records (or replaces) an entity's facts, unless the stored ones come from a newer body.
    pub fn upsert(&mut self, id: &str, meta: EntityMeta) {
        if self
            .recorded(id)
            .is_some_and(|old| old.body_ts > meta.body_ts)
        {
            return;
        }
        self.remove(id);
        self.generation = next_generation();
        self.most_important = self.most_important.max(scored_importance(meta.importance));
        self.newest_update = self.newest_update.max(meta.updated_at_micros);
        let ordinal = self.payload.insert(
            id,
            &meta.entity_type,
            meta.attributes.iter().map(|(k, v)| (k, v.into())),
        );
        if meta.expires_at_nanos != 0 {
            self.expiring.insert((meta.expires_at_nanos, id.to_owned()));
        }
        if ordinal == self.metas.len() {
            self.metas.push(Some(meta));
        } else {
            self.metas[ordinal] = Some(meta);
        }
    }

    /// Forgets an entity. Returns whether it was known.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(ordinal) = self.payload.ordinal(id) else {
            return false;
        };
        let old = self.metas[ordinal]
            .take()
            .expect("a live ordinal holds its facts (FactTable invariant)");
        self.generation = next_generation();
        self.payload.remove(
            id,
            &old.entity_type,
            old.attributes.iter().map(|(k, v)| (k, v.into())),
        );
        if old.expires_at_nanos != 0 {
            self.expiring.remove(&(old.expires_at_nanos, id.to_owned()));
        }
        true
    }

    /// The recorded facts of `id`, expired or not.
    fn recorded(&self, id: &str) -> Option<&EntityMeta> {
        self.payload
            .ordinal(id)
            .and_then(|o| self.metas[o].as_ref())
    }

    /// The facts of one live entity (an expired one has none).
    pub fn get(&self, id: &str) -> Option<&EntityMeta> {
        self.recorded(id)
            .filter(|m| m.expires_at_nanos == 0 || m.live_at(wall_nanos()))
    }

    /// The facts of one entity if it is live at `now_nanos`.
    pub fn get_at(&self, id: &str, now_nanos: i64) -> Option<&EntityMeta> {
        self.recorded(id).filter(|m| m.live_at(now_nanos))
    }

    /// Whether some recorded entity has expired at `now_nanos` (the sweep has not removed it
    /// yet): reads must then check every entity they return, even without a filter.
    pub fn has_expired(&self, now_nanos: i64) -> bool {
        self.expiring
            .first()
            .is_some_and(|(at, _)| *at <= now_nanos)
    }

    /// The ids of at most `limit` recorded entities expired at `now_nanos`, soonest first.
    pub fn expired(&self, now_nanos: i64, limit: usize) -> Vec<String> {
        self.expiring
            .iter()
            .take_while(|(at, _)| *at <= now_nanos)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Number of live entities.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Changes with every upsert or removal that changed the recorded facts: a filter's
    /// answers for a given entity hold while it stays the same, unless some entity has an
    /// expiry time ([`FactTable::has_expiry_times`]; expiry changes answers by the clock).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether some recorded entity has an expiry time.
    pub fn has_expiry_times(&self) -> bool {
        !self.expiring.is_empty()
    }

    /// True when no entity is known.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// An upper bound of how many entities `filter` allows (exact for a single condition).
    pub fn allowed_estimate(&self, filter: &Filter) -> usize {
        filter
            .as_expression()
            .map_or(self.len(), |e| self.payload.cardinality(&e).upper)
    }

    /// The tenant's payload index.
    pub fn payload(&self) -> &PayloadIndex {
        &self.payload
    }

    /// The live entities `filter` allows, by a scan of every entity's facts.
    pub fn scan_matches(&self, filter: &Filter) -> Vec<&str> {
        let now = wall_nanos();
        self.iter()
            .filter(|(id, meta)| meta.live_at(now) && filter.allows(id, meta))
            .map(|(id, _)| &**id)
            .collect()
    }

    /// Every recorded entity's facts, expired ones included (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &EntityMeta)> {
        self.metas.iter().enumerate().filter_map(|(ordinal, meta)| {
            let meta = meta.as_ref()?;
            let id = self
                .payload
                .entity(ordinal)
                .expect("a recorded ordinal is live in the payload index (FactTable invariant)");
            Some((id, meta))
        })
    }
}

/// The scorer's view: each entity's importance and update time, and the table's maxima as the
/// bound (`None` while empty).
impl FactSource for FactTable {
    fn facts(&self, entity_id: &str) -> Option<EntityFacts> {
        self.get(entity_id).map(|m| EntityFacts {
            importance: m.importance,
            updated_at_micros: m.updated_at_micros,
        })
    }

    fn bound(&self) -> Option<EntityFacts> {
        (!self.is_empty()).then_some(EntityFacts {
            importance: self.most_important,
            updated_at_micros: self.newest_update,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(t: &str, attr: &str, ts: u64) -> EntityMeta {
        EntityMeta {
            entity_type: t.to_owned(),
            attributes: [("color".to_owned(), AttributeValue::String(attr.to_owned()))].into(),
            importance: 0.0,
            updated_at_micros: ts,
            body_ts: ts,
            expires_at_nanos: 0,
        }
    }

    /// The generation changes with every change of the facts (what a filter memo is keyed by)
    /// and only then, and never comes back to an earlier value, even in another table.
    #[test]
    fn the_generation_changes_with_every_change_of_the_facts() {
        let mut facts = FactTable::default();
        let mut seen = vec![facts.generation()];
        let mut changed = |facts: &FactTable, changes: bool| {
            let now = facts.generation();
            assert_eq!(
                !seen.contains(&now),
                changes,
                "generation {now} after {seen:?}"
            );
            if changes {
                seen.push(now);
            }
        };
        facts.upsert("a", meta("doc", "red", 2));
        changed(&facts, true);
        facts.upsert("a", meta("doc", "blue", 3));
        changed(&facts, true);
        facts.upsert("a", meta("doc", "green", 1)); // older body: ignored
        changed(&facts, false);
        assert!(facts.remove("a"));
        changed(&facts, true);
        assert!(!facts.remove("a"));
        changed(&facts, false);
        let mut other = FactTable::default();
        other.upsert("a", meta("doc", "red", 2));
        changed(&other, true);
        assert!(!facts.has_expiry_times());
    }

    /// An entity is live until its expiry time and not from then on, on a clock the test
    /// moves; the expiring list follows upserts (a newer body with another expiry time, or
    /// none) and removes.
    #[test]
    fn entities_expire_at_their_time_on_a_given_clock() {
        let mut facts = FactTable::default();
        let expiring = |at: i64, ts: u64| EntityMeta {
            expires_at_nanos: at,
            ..meta("doc", "red", ts)
        };
        facts.upsert("soon", expiring(1_000, 1));
        facts.upsert("later", expiring(5_000, 1));
        facts.upsert("never", meta("doc", "red", 1));
        assert!(facts.get_at("soon", 999).is_some());
        assert!(!facts.has_expired(999));
        assert!(facts.expired(999, 10).is_empty());
        assert!(facts.get_at("soon", 1_000).is_none(), "expired at its time");
        assert!(facts.has_expired(1_000));
        assert_eq!(facts.expired(1_000, 10), vec!["soon"]);
        assert_eq!(facts.expired(i64::MAX, 10), vec!["soon", "later"]);
        assert_eq!(facts.expired(i64::MAX, 1), vec!["soon"]);
        assert!(facts.get_at("never", i64::MAX).is_some());
        // A newer put of "soon" without an expiry time: live again, no longer listed.
        facts.upsert("soon", meta("doc", "red", 2));
        assert!(facts.get_at("soon", i64::MAX).is_some());
        assert_eq!(facts.expired(i64::MAX, 10), vec!["later"]);
        facts.remove("later");
        assert!(!facts.has_expired(i64::MAX));
        assert_eq!(facts.len(), 2);
    }

    #[test]
    fn counts_follow_upserts_and_removes() {
        let mut facts = FactTable::default();
        facts.upsert("a", meta("doc", "red", 1));
        facts.upsert("b", meta("doc", "blue", 1));
        facts.upsert("c", meta("img", "red", 1));
        let red_docs = Filter {
            entity_types: vec!["doc".into()],
            attributes: [("color".into(), "red".into())].into(),
            ..Filter::default()
        };
        assert_eq!(facts.allowed_estimate(&red_docs), 2);
        facts.upsert("b", meta("img", "red", 2));
        facts.upsert("b", meta("doc", "blue", 1)); // older body: ignored
        assert_eq!(facts.get("b").unwrap().entity_type, "img");
        assert_eq!(
            facts.allowed_estimate(&Filter {
                entity_types: vec!["doc".into()],
                ..Default::default()
            }),
            1
        );
        assert!(facts.remove("a"));
        assert_eq!(facts.allowed_estimate(&red_docs), 0, "no doc is left");
        assert!(red_docs.allows("x", &meta("doc", "red", 0)));
        assert!(!red_docs.allows("x", &meta("doc", "blue", 0)));
    }

    #[test]
    fn the_bound_covers_every_entity_ever_recorded() {
        let mut facts = FactTable::default();
        assert_eq!(facts.bound(), None, "an empty table knows no bound");
        let with = |importance: f64, ts: u64| EntityMeta {
            importance,
            ..meta("doc", "red", ts)
        };
        facts.upsert("a", with(0.5, 10));
        facts.upsert("b", with(f64::NAN, 30));
        facts.upsert("c", with(2.0, 20));
        let bound = facts.bound().unwrap();
        assert_eq!((bound.importance, bound.updated_at_micros), (2.0, 30));
        // Never lowered: still an upper bound of what is left.
        facts.remove("c");
        facts.upsert("b", with(-1.0, 40));
        let bound = facts.bound().unwrap();
        assert_eq!((bound.importance, bound.updated_at_micros), (2.0, 40));
        for id in ["a", "b"] {
            let f = facts.facts(id).unwrap();
            assert!(
                f.importance <= bound.importance && f.updated_at_micros <= bound.updated_at_micros
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The table follows a model (each id's newest facts) through any sequence of upserts
        /// and removes, whatever ordinals were freed and given again: every lookup, the count,
        /// the persisted listing, a scan and the payload index's counts agree with it.
        #[test]
        fn the_facts_follow_a_model_through_upserts_and_removes(
            ops in prop::collection::vec((0u8..12, any::<bool>(), 0u64..4), 1..200)
        ) {
            let mut facts = FactTable::default();
            let mut model: BTreeMap<String, EntityMeta> = BTreeMap::new();
            for (n, put, ts) in ops {
                let id = format!("e{n}");
                if put {
                    let m = meta(if ts % 2 == 0 { "doc" } else { "img" }, &format!("c{ts}"), ts);
                    facts.upsert(&id, m.clone());
                    if model.get(&id).is_none_or(|old| old.body_ts <= ts) {
                        model.insert(id, m);
                    }
                } else {
                    prop_assert_eq!(facts.remove(&id), model.remove(&id).is_some());
                }
                prop_assert_eq!(facts.len(), model.len());
                for n in 0..12 {
                    let id = format!("e{n}");
                    prop_assert_eq!(facts.get(&id), model.get(&id));
                }
                let mut listed: Vec<(String, EntityMeta)> = facts
                    .iter()
                    .map(|(id, m)| (id.to_string(), m.clone()))
                    .collect();
                listed.sort_by(|a, b| a.0.cmp(&b.0));
                let expected: Vec<(String, EntityMeta)> = model.clone().into_iter().collect();
                prop_assert_eq!(listed, expected);
                let mut scanned = facts.scan_matches(&Filter::default());
                scanned.sort_unstable();
                prop_assert_eq!(scanned, model.keys().map(String::as_str).collect::<Vec<_>>());
                let docs = Filter {
                    entity_types: vec!["doc".into()],
                    ..Filter::default()
                };
                let model_docs = model.values().filter(|m| m.entity_type == "doc").count();
                prop_assert_eq!(facts.allowed_estimate(&docs), model_docs);
            }
        }
    }
}
