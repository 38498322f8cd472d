//! Room in a tenant's exact-scan tail (the vectors written but not yet in HNSW), the one
//! backpressure of vector writes: `index.max_unindexed_vectors` bounds it for client writers,
//! who wait while it is full ([`wait_for_tail_room`], at most
//! [`super::StoreOptions::max_tail_wait`]), and a bulk load (a range stream, a rebuild, a
//! topology movement) may fill half of it freely ([`UnifiedStore::bulk_room`]) and above that
//! only a share of what the indexer indexes (the stream's pacing decides): the load goes at the
//! pace of this node's indexer, the tail (memory, and the exact scan every query pays) stays
//! bounded, and a node receiving a stream does not stall the client writes it coordinates.
//!
//! Must never: refuse a write (the tail bound slows writers, the engine holds what is written),
//! or give a bulk load room beyond half the bound.

use std::time::{Duration, Instant};

use super::UnifiedStore;
use crate::error::{Error, Result};
use crate::vector::VectorIndex;
use crate::vector::tenant_index::bulk_share;

/// Waits (polling every 2 ms) while `tenant`'s vector tail is full, at most `max_wait`; then
/// fails with [`Error::ResourceExhausted`] so that the client backs off instead of holding a
/// request open without bound.
pub(super) fn wait_for_tail_room(
    tenant: &str,
    vectors: &VectorIndex,
    max_wait: Duration,
) -> Result<()> {
    let deadline = Instant::now() + max_wait;
    while vectors.tail_is_full() {
        if Instant::now() >= deadline {
            return Err(Error::ResourceExhausted(format!(
                "tenant {tenant}: {} vectors wait for indexing (index.max_unindexed_vectors) and \
                 the tail stayed full for {} ms; retry later",
                vectors.pending_len(),
                max_wait.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// What a bulk load may add to one tenant's tail now ([`UnifiedStore::bulk_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkRoom {
    /// Vectors it may add (0: it waits for the indexer).
    pub room: usize,
    /// Vectors waiting in the tail.
    pub pending: usize,
    /// Vectors the indexer has moved out of the tail so far (only grows while the tenant
    /// lives).
    pub indexed: u64,
}

impl UnifiedStore {
    /// What a bulk load may add to `tenant`'s vector tail now: up to half its bound (a tenant
    /// without an index here yet has that whole half).
    pub fn bulk_room(&self, tenant: &str) -> BulkRoom {
        match self.indexes.tenant(tenant) {
            Some(state) => BulkRoom {
                room: state.indexes.vectors.bulk_room(),
                pending: state.indexes.vectors.pending_len(),
                indexed: state.indexes.vectors.indexed_total(),
            },
            None => BulkRoom {
                room: bulk_share(self.options.vectors.max_pending),
                pending: 0,
                indexed: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::vector::VectorIndexOptions;

    fn full_tail() -> Arc<VectorIndex> {
        let index = VectorIndex::new(VectorIndexOptions {
            max_pending: 3,
            ..VectorIndexOptions::default()
        })
        .expect("valid options");
        for i in 0..3 {
            index
                .upsert(&format!("e{i}"), &[1.0, i as f32], i + 1)
                .expect("a valid vector");
        }
        assert!(index.tail_is_full());
        Arc::new(index)
    }

    #[test]
    fn a_full_tail_fails_the_writer_after_the_wait() {
        let index = full_tail();
        let start = Instant::now();
        let error = wait_for_tail_room("t1", &index, Duration::from_millis(50)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(
            matches!(&error, Error::ResourceExhausted(m) if m.contains("tenant t1: 3 vectors wait")),
            "{error}"
        );
        assert!(wait_for_tail_room("t1", &index, Duration::ZERO).is_err());
    }

    #[test]
    fn a_writer_proceeds_as_soon_as_the_indexer_makes_room() {
        let index = full_tail();
        let indexer = {
            let index = index.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                index.index_pending(1)
            })
        };
        let start = Instant::now();
        wait_for_tail_room("t1", &index, Duration::from_secs(60)).expect("room within the wait");
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(
            indexer.join().expect("the indexer thread does not panic"),
            1
        );
    }

    #[test]
    fn a_bulk_load_fills_half_the_bound_and_a_client_writer_waits_only_when_full() {
        let index = VectorIndex::new(VectorIndexOptions {
            max_pending: 4,
            ..VectorIndexOptions::default()
        })
        .expect("valid options");
        let mut written = 0;
        let mut write = |index: &VectorIndex| {
            written += 1;
            index
                .upsert(&format!("e{written}"), &[1.0, written as f32], written)
                .expect("a valid vector");
        };
        assert_eq!(index.bulk_room(), 2, "half of 4");
        write(&index);
        assert_eq!(index.bulk_room(), 1);
        write(&index);
        assert_eq!(index.bulk_room(), 0, "2 of 4: a bulk load waits");
        assert!(!index.tail_is_full(), "2 of 4: a client writer does not");
        write(&index);
        write(&index);
        assert!(index.tail_is_full());
        assert_eq!(index.bulk_room(), 0);
        assert_eq!(index.indexed_total(), 0);
        assert_eq!(index.index_pending(3), 3);
        assert_eq!(index.bulk_room(), 1, "the indexer made room");
        assert_eq!(index.indexed_total(), 3);
    }
}
