//! Entity write locks: the mutual exclusion behind read-modify-write mutations.
//!
//! A put-replace or delete reads an entity's stored cells (its old edges, its `created_at`) and
//! writes cells derived from them, in its own partition and in those of the entities at the
//! other end of its edges; two mutations touching one entity must not interleave, or the second
//! would be derived from a state the first already replaced (a dangling in-edge, a lost one). So
//! a put or delete locks the entity and all its neighbours, and an edge operation both
//! endpoints (`write.rs`). What it owns: the set of
//! entities some mutation is working on, each named by a 64-bit hash of its partition prefix
//! (tenant + id).
//!
//! Invariants: a batch takes the locks of all its entities at once or none of them (it waits
//! while any is held), so two batches never deadlock and two batches with disjoint entities
//! never wait for each other — they reach the WAL writer together and share one group commit.
//! A hash collision only makes two unrelated entities wait for each other, never lets two
//! mutations of one entity overlap.
//!
//! Must never: hold a lock past its guard (dropping the guard releases and wakes waiters).

use std::collections::HashSet;

use parking_lot::{Condvar, Mutex};

use crate::key;

/// The entities mutations are working on.
#[derive(Debug, Default)]
pub(super) struct EntityLocks {
    held: Mutex<HashSet<u64>>,
    released: Condvar,
}

impl EntityLocks {
    /// Waits until none of the given entities of `tenant` is locked, then locks them all.
    pub(super) fn lock<'a>(
        &self,
        tenant: &str,
        ids: impl Iterator<Item = &'a str>,
    ) -> EntityLockGuard<'_> {
        let mut keys: Vec<u64> = ids
            .map(|id| xxhash_rust::xxh3::xxh3_64(&key::partition_prefix(tenant, id)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut held = self.held.lock();
        while keys.iter().any(|k| held.contains(k)) {
            self.released.wait(&mut held);
        }
        held.extend(keys.iter().copied());
        EntityLockGuard { locks: self, keys }
    }
}

/// Entities locked by one mutation; released when dropped.
#[derive(Debug)]
pub(super) struct EntityLockGuard<'a> {
    locks: &'a EntityLocks,
    keys: Vec<u64>,
}

impl Drop for EntityLockGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock();
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::*;

    #[test]
    fn disjoint_batches_do_not_wait_and_overlapping_ones_do() {
        let locks = Arc::new(EntityLocks::default());
        let first = locks.lock("t", ["a", "b", "c"].into_iter());
        // Disjoint entities (and the same ids of another tenant) lock at once.
        let disjoint = locks.lock("t", ["d", "e"].into_iter());
        let other_tenant = locks.lock("u", ["a", "b"].into_iter());
        drop((disjoint, other_tenant));

        let (locked, got_lock) = channel();
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                let _guard = locks.lock("t", ["z", "c", "z"].into_iter());
                locked.send(()).expect("the test waits for this message");
            })
        };
        assert!(
            got_lock.recv_timeout(Duration::from_millis(200)).is_err(),
            "a batch sharing entity c must wait"
        );
        drop(first);
        got_lock
            .recv_timeout(Duration::from_secs(10))
            .expect("released when the first batch's guard drops");
        waiter.join().expect("the waiter does not panic");
        assert!(locks.held.lock().is_empty());
    }
}
