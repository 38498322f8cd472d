//! Dense integer ids of one graph's nodes and relations: strings at the graph's edges (writes,
//! walk starts, replies), integers inside (adjacency, visited sets, recorded edges, frontier).
//!
//! Owns: the name <-> id maps ([`Names`]), one for entity ids and one for relation names.
//! Invariants: ids are `0..len()`, dense, in order of first appearance; an id names the same
//! string for the whole life of the graph index (ids are never freed, so never reused while
//! anything holds one). They are not persisted: a graph rebuilt from its dump or from the
//! engine assigns them afresh, and nothing outside the graph index ever sees one.
//! Costs: one `Arc<str>` per name, shared by every edge that names it, plus one hash entry; a
//! node whose edges were all removed keeps its entry until the graph is rebuilt (at restart).
//! Never: hand an id to a caller, or map two names to one id.

use std::sync::Arc;

/// Dense id of an entity in one graph.
pub(super) type NodeId = u32;
/// Dense id of a relation name in one graph.
pub(super) type RelationId = u32;

/// Names and their dense ids. The hash is foldhash with a per-process random seed (the names
/// are client-chosen: a fixed seed would let a client pick colliding names).
#[derive(Debug, Default)]
pub(super) struct Names {
    ids: foldhash::HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    /// The id of `name`, if it has one.
    pub(super) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The id of `name`, given one if it has none yet.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        self.intern_with(name, || Arc::from(name))
    }

    /// The id of `name`, given one if it has none yet, keeping `name` itself (no copy).
    pub(super) fn intern_shared(&mut self, name: &Arc<str>) -> u32 {
        self.intern_with(name, || name.clone())
    }

    fn intern_with(&mut self, name: &str, shared: impl FnOnce() -> Arc<str>) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len())
            .expect("fewer than 2^32 distinct names in one tenant's graph (entity ids are bounded by memory long before)");
        let name = shared();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The name of `id` (an id this map gave).
    pub(super) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }

    /// Number of names (every id is below it).
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_stable_and_never_shared() {
        let mut names = Names::default();
        assert_eq!(names.intern("b"), 0);
        assert_eq!(names.intern("a"), 1);
        assert_eq!(names.intern("b"), 0);
        assert_eq!(names.get("a"), Some(1));
        assert_eq!(names.get("c"), None);
        assert_eq!(&**names.name(0), "b");
        assert_eq!(names.len(), 2);
        let shared: Arc<str> = Arc::from("c");
        assert_eq!(names.intern_shared(&shared), 2);
        assert!(
            Arc::ptr_eq(names.name(2), &shared),
            "the name is kept, not copied"
        );
        assert_eq!(names.intern_shared(&Arc::from("a")), 1);
    }
}
