//! The expiry sweep (issue 39, TTL): turns the entities whose expiry time has come into
//! stored expiries, so that they leave every index and, at the next compaction, the disk.
//!
//! Reads hide an expired entity on their own from its expiry time on (the facts table, the
//! store's reads); the sweep is what removes it. For each tenant it takes the entities the facts
//! table lists as expired and asks the engine to expire them
//! ([`allidb_storage::Engine::expire_entities`]: a marker at each body's own timestamp). That
//! marker is an ordinary committed write, so the indexes drop the entity through the same path
//! as a delete (vector, graph, facts, lexical), and compaction drops the cells it hides. An
//! entity the engine did not expire (a newer put replaced it, or it is gone) is indexed again
//! from its stored state, so the list never keeps an entry the engine refuses.
//!
//! Each replica sweeps what it holds, with its own clock, and writes the same cell for the same
//! body; nothing here goes through a coordinator. Must never: write a marker at a timestamp
//! other than the expired body's (that could hide a later put), or hold an index lock while it
//! writes (the commit it causes updates those indexes).

use allidb_storage::hlc::wall_nanos;
use allidb_storage::{Durability, Engine};

use super::Indexes;
use crate::error::Result;

/// Most entities of one tenant expired by one sweep (one write batch).
const SWEEP_BATCH: usize = 1024;

impl Indexes {
    /// Expires, tenant by tenant, the entities whose time has come at the wall clock's now;
    /// returns how many were expired.
    pub(super) fn sweep_expired(&self, engine: &Engine) -> Result<usize> {
        let mut swept = 0;
        for (tenant, state) in self.all() {
            let now = wall_nanos();
            let due = state.indexes.facts.read().expired(now, SWEEP_BATCH);
            if due.is_empty() {
                continue;
            }
            let ids: Vec<&str> = due.iter().map(String::as_str).collect();
            let expired = engine.expire_entities(&tenant, &ids, now, Durability::Buffered)?;
            swept += expired.len();
            if expired.len() < due.len() {
                let snapshot = engine.last_seq();
                for id in due.iter().filter(|id| !expired.contains(id)) {
                    let stored = engine.read_partition(&tenant, id)?;
                    state.indexes.apply_state(id, &stored, snapshot)?;
                }
            }
        }
        Ok(swept)
    }
}
