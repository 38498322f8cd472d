//! Per-tenant entity facts kept in memory for filtering and scoring: type, attributes,
//! importance and update time of every live entity, plus counts per type and per attribute
//! value so the planner can estimate how many entities a filter allows without scanning.
//!
//! Invariants: the counts always equal what a scan of `entities` would give; no live entity's
//! scored importance exceeds `most_important` and none was updated after `newest_update` (both
//! only ever grow: an upper bound, exact until the entity holding the maximum changes).

use std::collections::{BTreeMap, HashMap};

use crate::query::scorer::scored_importance;
use crate::query::{EntityFacts, FactSource};

/// What the store knows about one live entity.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct EntityMeta {
    /// Entity type.
    pub entity_type: String,
    /// Filterable attributes.
    pub attributes: BTreeMap<String, String>,
    /// Importance (scorer input).
    pub importance: f64,
    /// Last update, microseconds since the Unix epoch.
    pub updated_at_micros: u64,
    /// Timestamp (HLC) of the body this was taken from: older bodies never overwrite newer.
    pub body_ts: u64,
}

/// A query filter: any of `entity_types` (empty = any type) and every attribute equal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Allowed entity types; empty allows every type.
    pub entity_types: Vec<String>,
    /// Attributes that must be present with exactly these values.
    pub attributes: BTreeMap<String, String>,
}

impl Filter {
    /// True when the filter restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.entity_types.is_empty() && self.attributes.is_empty()
    }

    /// True if `meta` passes.
    pub fn allows(&self, meta: &EntityMeta) -> bool {
        (self.entity_types.is_empty() || self.entity_types.contains(&meta.entity_type))
            && self
                .attributes
                .iter()
                .all(|(k, v)| meta.attributes.get(k) == Some(v))
    }
}

/// The facts of one tenant.
#[derive(Debug, Default)]
pub struct FactTable {
    entities: HashMap<String, EntityMeta>,
    type_counts: HashMap<String, usize>,
    attribute_counts: HashMap<(String, String), usize>,
    /// The largest scored importance of any entity recorded so far (at least 0).
    most_important: f64,
    /// The latest `updated_at_micros` of any entity recorded so far.
    newest_update: u64,
}

impl FactTable {
    /// Records (or replaces) an entity's facts, unless the stored ones come from a newer body.
    pub fn upsert(&mut self, id: &str, meta: EntityMeta) {
        if self
            .entities
            .get(id)
            .is_some_and(|old| old.body_ts > meta.body_ts)
        {
            return;
        }
        self.remove(id);
        self.most_important = self.most_important.max(scored_importance(meta.importance));
        self.newest_update = self.newest_update.max(meta.updated_at_micros);
        *self
            .type_counts
            .entry(meta.entity_type.clone())
            .or_default() += 1;
        for (k, v) in &meta.attributes {
            *self
                .attribute_counts
                .entry((k.clone(), v.clone()))
                .or_default() += 1;
        }
        self.entities.insert(id.to_owned(), meta);
    }

    /// Forgets an entity. Returns whether it was known.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(old) = self.entities.remove(id) else {
            return false;
        };
        decrement(&mut self.type_counts, &old.entity_type);
        for (k, v) in old.attributes {
            decrement(&mut self.attribute_counts, &(k, v));
        }
        true
    }

    /// The facts of one entity.
    pub fn get(&self, id: &str) -> Option<&EntityMeta> {
        self.entities.get(id)
    }

    /// Number of live entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// True when no entity is known.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// An upper bound of how many entities `filter` allows (exact for a single condition).
    pub fn allowed_estimate(&self, filter: &Filter) -> usize {
        let mut bound = self.entities.len();
        if !filter.entity_types.is_empty() {
            bound = bound.min(
                filter
                    .entity_types
                    .iter()
                    .map(|t| self.type_counts.get(t).copied().unwrap_or(0))
                    .sum(),
            );
        }
        for (k, v) in &filter.attributes {
            bound = bound.min(
                self.attribute_counts
                    .get(&(k.clone(), v.clone()))
                    .copied()
                    .unwrap_or(0),
            );
        }
        bound
    }

    /// Every entity's facts (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &EntityMeta)> {
        self.entities.iter()
    }
}

/// The scorer's view: each entity's importance and update time, and the table's maxima as the
/// bound (`None` while empty).
impl FactSource for FactTable {
    fn facts(&self, entity_id: &str) -> Option<EntityFacts> {
        self.entities.get(entity_id).map(|m| EntityFacts {
            importance: m.importance,
            updated_at_micros: m.updated_at_micros,
        })
    }

    fn bound(&self) -> Option<EntityFacts> {
        (!self.entities.is_empty()).then_some(EntityFacts {
            importance: self.most_important,
            updated_at_micros: self.newest_update,
        })
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(c) = counts.get_mut(key) {
        *c -= 1;
        if *c == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(t: &str, attr: &str, ts: u64) -> EntityMeta {
        EntityMeta {
            entity_type: t.to_owned(),
            attributes: [("color".to_owned(), attr.to_owned())].into(),
            importance: 0.0,
            updated_at_micros: ts,
            body_ts: ts,
        }
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
        assert!(red_docs.allows(&meta("doc", "red", 0)));
        assert!(!red_docs.allows(&meta("doc", "blue", 0)));
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
}
