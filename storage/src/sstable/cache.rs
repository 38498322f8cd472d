//! The block cache: a byte-bounded cache of checksum-verified, parsed data blocks, shared by every
//! open table and keyed by `(file_number, block offset)`.
//!
//! Invariants: the total weight (block memory) stays within the capacity given at construction
//! (quick_cache's weighted eviction; a block heavier than a cache shard is simply not cached);
//! blocks are immutable and handed out as `Arc`s, so an evicted block stays valid for its readers.
//! File numbers are unique within one database, so one cache must not be shared by two databases.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::Block;

/// `(file_number, block offset)`.
type BlockKey = (u64, u64);

/// Typical block size, used only to size the cache's internal tables.
const TYPICAL_BLOCK_BYTES: u64 = 4096;

#[derive(Debug, Clone, Copy)]
struct BlockWeighter;

impl Weighter<BlockKey, Arc<Block>> for BlockWeighter {
    fn weight(&self, _key: &BlockKey, block: &Arc<Block>) -> u64 {
        // Never zero: zero-weight items are never evicted by quick_cache.
        (block.memory_size() as u64).max(1)
    }
}

/// A bounded (bytes) cache of decoded data blocks.
pub struct BlockCache {
    blocks: Cache<BlockKey, Arc<Block>, BlockWeighter>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.capacity_bytes())
            .field("used_bytes", &self.used_bytes())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` bytes of blocks (0 disables caching).
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_blocks = (capacity_bytes / TYPICAL_BLOCK_BYTES).clamp(1, 1 << 24) as usize;
        Self {
            blocks: Cache::with_weighter(estimated_blocks, capacity_bytes, BlockWeighter),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached block, counting a hit or a miss.
    pub(crate) fn get(&self, file_number: u64, offset: u64) -> Option<Arc<Block>> {
        let found = self.blocks.get(&(file_number, offset));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches a block (evicting others to stay within the capacity).
    pub(crate) fn insert(&self, file_number: u64, offset: u64, block: Arc<Block>) {
        self.blocks.insert((file_number, offset), block);
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to read and verify the block.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of blocks currently cached.
    pub fn used_bytes(&self) -> u64 {
        self.blocks.weight()
    }

    /// The byte bound.
    pub fn capacity_bytes(&self) -> u64 {
        self.blocks.capacity()
    }

    /// Blocks currently cached.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
