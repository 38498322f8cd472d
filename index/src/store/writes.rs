//! The store's writes: entity puts (through [`UnifiedStore::prepare_put`]), deletes and edge
//! changes, handed to the engine, whose commit observer ([`super::Indexes`]) indexes each
//! committed batch before the writer is acknowledged.
//!
//! Invariants: a put is checked before its cells are planned (every embedding non-empty and
//! finite, one vector dimension per request and the tenant's, a finite importance, attribute
//! types that agree with the tenant's live entities and within the request) and stamped
//! `created_at`/`updated_at`; a put with a vector waits while the tenant's tail is full. Must
//! never: index anything itself (the commit observer does), or let a vector of another
//! dimension in while the tenant holds vectors or has its dimension configured.

use std::collections::HashMap;

use allidb_storage::cell::{Edge, EdgeRef, EntityWrite};
use allidb_storage::hlc::wall_nanos;
use allidb_storage::{Durability, SeqNo};

use super::{UnifiedStore, facts, tail_room};
use crate::error::{Error, Result};
use crate::filter::AttrType;

impl UnifiedStore {
    /// Replaces entities (see [`Engine::put_entities`](allidb_storage::Engine::put_entities))
    /// after [`Self::prepare_put`].
    pub fn put_entities(
        &self,
        tenant: &str,
        mut writes: Vec<EntityWrite>,
        durability: Durability,
    ) -> Result<SeqNo> {
        self.prepare_put(tenant, &mut writes)?;
        Ok(self.engine.put_entities(tenant, writes, durability)?)
    }

    /// What every put of entities goes through before its cells are planned, here or by a
    /// cluster coordinator: the vectors are validated against the tenant's dimension (the first
    /// vector a tenant accepts fixes it), `created_at`/`updated_at` are set to now
    /// (`created_at` is then kept from the stored entity), and the caller is slowed while the
    /// tenant's not-yet-indexed tail is full.
    pub fn prepare_put(&self, tenant: &str, writes: &mut [EntityWrite]) -> Result<()> {
        allidb_storage::key::validate_tenant(tenant)?;
        let state = self.indexes.tenant_or_create(tenant)?;
        let now = wall_nanos();
        // One request's vectors share one dimension.
        let mut batch_dimension = None;
        for w in writes.iter_mut() {
            for e in &w.body.embeddings {
                if e.vector.is_empty() {
                    return Err(Error::invalid(format!(
                        "entity {}: embedding version {} is empty",
                        w.id, e.version
                    )));
                }
                if let Some(bad) = e.vector.iter().position(|x| !x.is_finite()) {
                    return Err(Error::invalid(format!(
                        "entity {}: embedding version {} has a non-finite value at index {bad}",
                        w.id, e.version
                    )));
                }
            }
            if let Some(e) = w.body.current_embedding() {
                let got = e.vector.len();
                if let Some(first) = batch_dimension
                    && first != got
                {
                    return Err(Error::DimensionMismatch {
                        expected: first,
                        got,
                    });
                }
                batch_dimension = Some(got);
                let mut dimension = state.dimension.lock();
                // A tenant rebuilt from storage knows its dimension from its vector index.
                match dimension.or_else(|| state.indexes.vectors.dimension()) {
                    Some(expected)
                        if expected != got
                            && (self.options.vectors.dimension.is_some()
                                || !state.indexes.vectors.is_empty()) =>
                    {
                        return Err(Error::invalid(format!(
                            "entity {}: vector dimension mismatch: expected {expected}, got {got}; \
                             tenant {tenant:?} holds {expected}-dimensional vectors: to store \
                             {got}-dimensional ones, drop the tenant (`allidb tenant drop \
                             {tenant}` erases all its data) or delete its entities with vectors \
                             first (a tenant without vectors takes the next vector's dimension)",
                            w.id
                        )));
                    }
                    Some(expected) if expected == got => {}
                    _ => *dimension = Some(got),
                }
            }
            if !w.body.importance.is_finite() {
                return Err(Error::invalid(format!(
                    "entity {}: importance must be finite",
                    w.id
                )));
            }
            w.body.created_at_nanos = now;
            w.body.updated_at_nanos = now;
            allidb_storage::provenance::normalise_sources(w)?;
        }
        check_attribute_types(tenant, &state.indexes.facts.read(), writes)?;
        if writes.iter().any(|w| w.body.current_embedding().is_some()) {
            tail_room::wait_for_tail_room(
                tenant,
                &state.indexes.vectors,
                self.options.max_tail_wait,
            )?;
        }
        Ok(())
    }

    /// Deletes an entity; returns whether it existed.
    pub fn delete_entity(&self, tenant: &str, id: &str, durability: Durability) -> Result<bool> {
        Ok(self.engine.delete_entity(tenant, id, durability)?)
    }

    /// Adds edges (both cells of each).
    pub fn add_edges(&self, tenant: &str, edges: &[Edge], durability: Durability) -> Result<SeqNo> {
        Ok(self.engine.add_edges(tenant, edges, durability)?)
    }

    /// Removes edges.
    pub fn remove_edges(
        &self,
        tenant: &str,
        edges: &[EdgeRef],
        durability: Durability,
    ) -> Result<SeqNo> {
        Ok(self.engine.remove_edges(tenant, edges, durability)?)
    }
}

/// One attribute a put gives an entity: the type family it gives the key (string attributes
/// are strings). What a node is asked about by the ring-wide check of attribute types
/// ([`UnifiedStore::check_attribute_claims`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeClaim {
    pub entity_id: String,
    pub key: String,
    pub family: AttrType,
}

impl AttributeClaim {
    /// The claims of `writes`: one per attribute of each, in order.
    pub fn of_writes(writes: &[EntityWrite]) -> Vec<AttributeClaim> {
        writes
            .iter()
            .flat_map(|w| {
                let claim = |key: &String, family| AttributeClaim {
                    entity_id: w.id.clone(),
                    key: key.clone(),
                    family,
                };
                let untyped = w
                    .body
                    .attributes
                    .keys()
                    .map(move |k| claim(k, AttrType::String));
                let typed = w
                    .body
                    .typed_attributes
                    .iter()
                    .map(move |(k, v)| claim(k, AttrType::of(v)));
                untyped.chain(typed)
            })
            .collect()
    }
}

impl UnifiedStore {
    /// Refuses the first claim whose key this node's live entities of `tenant` hold as another
    /// type (the claiming entity's own value excepted), like a local put's check, naming the
    /// entity, the key and both types; reads only.
    pub fn check_attribute_claims(&self, tenant: &str, claims: &[AttributeClaim]) -> Result<()> {
        allidb_storage::key::validate_tenant(tenant)?;
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok(());
        };
        let facts = state.indexes.facts.read();
        claims
            .iter()
            .try_for_each(|c| check_held_type(tenant, &facts, &c.entity_id, &c.key, c.family))
    }
}

/// Refuses giving `key` the type `family` on entity `id` when the tenant's live entities hold
/// it as another type, unless the one entity holding it so is `id` itself (being replaced).
fn check_held_type(
    tenant: &str,
    facts: &facts::FactTable,
    id: &str,
    key: &str,
    family: AttrType,
) -> Result<()> {
    let own = facts.get(id);
    for (held, count) in facts.payload().key_types(key) {
        let own_holds = own.is_some_and(|m| {
            m.attributes
                .get(key)
                .is_some_and(|v| AttrType::of(v) == held)
        });
        if held == family || (count == 1 && own_holds) {
            continue;
        }
        return Err(Error::invalid(format!(
            "entity {id}: attribute {key:?} is a {} but tenant {tenant:?} holds it as {} \
             ({count} entities); a key keeps one type (integers and floats are both \
             numbers) while any live entity holds it",
            family.name(),
            held.name()
        )));
    }
    Ok(())
}

/// Refuses a write whose attribute gives a key another type family than the tenant's live
/// entities give it (or than an earlier entity of the same request), naming the entity, the
/// key and both types. The entity being replaced does not count against its own new value.
/// A key in both the untyped and the typed map, or a float that is not finite, is refused too.
fn check_attribute_types(
    tenant: &str,
    facts: &facts::FactTable,
    writes: &[EntityWrite],
) -> Result<()> {
    let mut in_request: HashMap<&str, (AttrType, &str)> = HashMap::new();
    for w in writes {
        let untyped = w.body.attributes.keys().map(|k| (k, AttrType::String));
        let typed = w
            .body
            .typed_attributes
            .iter()
            .map(|(k, v)| (k, AttrType::of(v)));
        for (key, family) in untyped.chain(typed) {
            if w.body.attributes.contains_key(key) && w.body.typed_attributes.contains_key(key) {
                return Err(Error::invalid(format!(
                    "entity {}: attribute {key:?} is both in attributes and in typed_attributes",
                    w.id
                )));
            }
            if let Some(allidb_storage::cell::AttributeValue::Float(f)) =
                w.body.typed_attributes.get(key)
                && !f.is_finite()
            {
                return Err(Error::invalid(format!(
                    "entity {}: attribute {key:?} must be finite, got {f}",
                    w.id
                )));
            }
            check_held_type(tenant, facts, &w.id, key, family)?;
            match in_request.get(key.as_str()) {
                Some((earlier, other)) if *earlier != family => {
                    return Err(Error::invalid(format!(
                        "entity {}: attribute {key:?} is a {} but entity {other} of the same \
                         request gives it as {}",
                        w.id,
                        family.name(),
                        earlier.name()
                    )));
                }
                _ => {
                    in_request.insert(key, (family, &w.id));
                }
            }
        }
    }
    Ok(())
}
