//! Slot ordinals: for each internal vector id of a tenant, the payload ordinal of its entity,
//! so that a filter's [`Membership`] (per payload ordinal) becomes a per-query bitmap over the
//! vector slots ([`SlotOrdinals::memo`]) that a filtered graph walk reads with one bit test per
//! visited node.
//!
//! Invariants: an internal vector id's entity never changes (ids are not reused), and while the
//! payload's [`PayloadIndex::ordinal_epoch`] stays, an entity keeps its ordinal or has none; so
//! a table filled at one epoch stays true at that epoch, and only ids created since need
//! resolving. An id whose entity had no ordinal when resolved (its facts not recorded yet) is
//! tried again by the next refresh and meanwhile left unknown: the walk evaluates the filter for
//! it, so a missing entry costs speed, never a wrong answer.

use std::sync::Arc;

use crate::filter::{Membership, PayloadIndex};
use crate::vector::{FilterMemo, VectorIndex};

/// No ordinal known for this internal id.
const NONE: usize = usize::MAX;

/// Internal vector id -> payload ordinal, valid at one ordinal epoch.
#[derive(Debug, Default)]
pub struct SlotOrdinals {
    epoch: u64,
    /// Indexed by internal id; [`NONE`] when unknown.
    table: Vec<usize>,
    /// Internal ids below `table.len()` still [`NONE`] whose vector was live when resolved.
    unresolved: Vec<usize>,
}

impl SlotOrdinals {
    /// True when this table is current for `payload` and internal ids below `id_bound`.
    pub fn is_current(&self, payload: &PayloadIndex, id_bound: usize) -> bool {
        self.epoch == payload.ordinal_epoch() && self.table.len() >= id_bound
    }

    /// The table for `payload` and `vectors` now: `previous` extended when its epoch still
    /// holds (only new and unresolved ids are looked up), else built anew.
    pub fn refreshed(
        previous: Option<&SlotOrdinals>,
        payload: &PayloadIndex,
        vectors: &VectorIndex,
    ) -> SlotOrdinals {
        let epoch = payload.ordinal_epoch();
        let id_bound = vectors.id_bound();
        let (mut table, retry) = match previous {
            Some(p) if p.epoch == epoch => (p.table.clone(), p.unresolved.clone()),
            _ => (Vec::new(), Vec::new()),
        };
        let start = table.len();
        table.resize(id_bound.max(start), NONE);
        let mut unresolved = Vec::new();
        for (id, entity) in retry.iter().zip(vectors.entities_of(&retry)) {
            if let Some(entity) = entity {
                match payload.ordinal(&entity) {
                    Some(ordinal) => table[*id] = ordinal,
                    None => unresolved.push(*id),
                }
            }
        }
        for (id, entity) in vectors.entities_from(start) {
            let Some(slot) = table.get_mut(id) else {
                // Created after `id_bound` was read: left for the next refresh.
                continue;
            };
            match payload.ordinal(&entity) {
                Some(ordinal) => *slot = ordinal,
                None => unresolved.push(id),
            }
        }
        SlotOrdinals {
            epoch,
            table,
            unresolved,
        }
    }

    /// A filter memo for internal ids below `ids` that knows, from `membership`, which slots
    /// the filter refuses (outside the superset) and which it allows for certain; the others
    /// (uncertain, or no ordinal known) are left for the walk to evaluate.
    pub fn memo(&self, membership: &Membership, ids: usize) -> FilterMemo {
        FilterMemo::from_answers(ids, |id| match self.table.get(id) {
            None | Some(&NONE) => None,
            Some(&ordinal) if membership.is_certain(ordinal) => Some(true),
            Some(&ordinal) if membership.may_match(ordinal) => None,
            Some(_) => Some(false),
        })
    }
}

/// The cached table of a tenant, refreshed when stale.
pub fn current(
    cache: &parking_lot::Mutex<Option<Arc<SlotOrdinals>>>,
    payload: &PayloadIndex,
    vectors: &VectorIndex,
) -> Arc<SlotOrdinals> {
    let mut cached = cache.lock();
    let id_bound = vectors.id_bound();
    if let Some(table) = cached.as_ref().filter(|t| t.is_current(payload, id_bound)) {
        return table.clone();
    }
    let table = Arc::new(SlotOrdinals::refreshed(cached.as_deref(), payload, vectors));
    *cached = Some(table.clone());
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use allidb_storage::cell::AttributeValue;

    use super::*;
    use crate::filter::{Cmp, Expr, Field, ValueRef};
    use crate::vector::VectorIndexOptions;

    fn post(payload: &mut PayloadIndex, id: &str, bucket: i64) {
        let attributes: BTreeMap<String, AttributeValue> =
            [("bucket".to_owned(), AttributeValue::Int(bucket))].into();
        payload.insert(
            id,
            "doc",
            attributes.iter().map(|(k, v)| (k, ValueRef::from(v))),
        );
    }

    fn unpost(payload: &mut PayloadIndex, id: &str, bucket: i64) {
        let attributes: BTreeMap<String, AttributeValue> =
            [("bucket".to_owned(), AttributeValue::Int(bucket))].into();
        payload.remove(
            id,
            "doc",
            attributes.iter().map(|(k, v)| (k, ValueRef::from(v))),
        );
    }

    fn below(n: i64) -> Expr {
        Expr::Compare {
            op: Cmp::Lt,
            field: Field::Attribute("bucket".into()),
            value: AttributeValue::Int(n),
        }
    }

    /// The memo knows every slot the membership decides (refused outside the superset,
    /// allowed when certain), leaves the bound posting and slots without facts to the walk, and
    /// follows entities whose ordinal moved (a refresh after the epoch changed).
    #[test]
    fn the_slot_bitmap_follows_the_membership_and_ordinal_moves() {
        let vectors = VectorIndex::new(VectorIndexOptions::default()).unwrap();
        let mut payload = PayloadIndex::default();
        for i in 0..10i64 {
            vectors
                .upsert(&format!("e{i}"), &[1.0, i as f32 + 1.0], i as u64 + 1)
                .unwrap();
            if i < 9 {
                post(&mut payload, &format!("e{i}"), i);
            }
        }
        let cache = parking_lot::Mutex::new(None);
        let table = current(&cache, &payload, &vectors);
        let membership = payload.membership(&below(3)).unwrap();
        let memo = table.memo(&membership, vectors.id_bound());
        let known: Vec<Option<bool>> = (0..10).map(|id| memo.known(id)).collect();
        // Buckets 0..=2: certain; 3, the bound's posting: checked; 4..=8: refused; e9: no
        // facts, unknown.
        let mut expected = vec![Some(true), Some(true), Some(true), None];
        expected.extend([Some(false); 5]);
        expected.push(None);
        assert_eq!(known, expected);
        assert!(Arc::ptr_eq(&table, &current(&cache, &payload, &vectors)));

        // e1 leaves, e9 takes its ordinal with bucket 1: the epoch moves, e9 is allowed and
        // e1's slot (its facts gone) is left to the walk.
        unpost(&mut payload, "e1", 1);
        post(&mut payload, "e9", 1);
        let table = current(&cache, &payload, &vectors);
        let membership = payload.membership(&below(3)).unwrap();
        let memo = table.memo(&membership, vectors.id_bound());
        assert_eq!(memo.known(9), Some(true));
        assert_eq!(memo.known(1), None);

        // A new vector id (an update of e0) is resolved by the next refresh.
        vectors.upsert("e0", &[2.0, 1.0], 20).unwrap();
        let table = current(&cache, &payload, &vectors);
        let memo = table.memo(&membership, vectors.id_bound());
        assert_eq!(memo.known(10), Some(true));
    }
}
