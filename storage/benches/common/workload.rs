//! The benchmark workload shared by `examples/db_bench.rs` and `benches/engine.rs`: entity ids in
//! pseudo-random key order, 1.5 KiB encoded bodies (a 384-d vector), durable batched ingest from
//! several writer threads, and a deterministic random read sequence.
//!
//! Bodies come from a pool of [`BODY_VARIANTS`] pre-encoded bodies (entity `i` gets variant
//! `i % BODY_VARIANTS`), so the writers spend their time in the engine rather than in encoding
//! 384 floats per entity; the RocksDB script likewise slices values out of a pre-generated pool.
//!
//! `bench/rocksdb_bench.py` reproduces the same keys and value length for RocksDB: keep the two
//! in step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::key::CellKey;
use allidb_storage::{Durability, Engine, Entity};

/// The tenant every benchmark entity belongs to.
pub const TENANT: &str = "bench";

/// Entity `i`'s id: a multiplicative permutation of 0..n, so inserts arrive in random key order.
pub fn id_of(i: u64) -> String {
    format!("e{:010}", i.wrapping_mul(2_654_435_761) % 4_294_967_291)
}

/// Entity `i`'s importance, checked by readers.
pub fn importance_of(i: u64) -> f64 {
    (i % 10) as f64
}

/// Distinct pre-encoded bodies; a multiple of 10 so that variant `i % BODY_VARIANTS` carries
/// entity `i`'s importance.
pub const BODY_VARIANTS: u64 = 1_000;

/// Body variant `i`: a 384-d vector (1.5 KiB) plus a type and an importance.
fn encoded_body(i: u64) -> Vec<u8> {
    let mut state = XorShift(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let vector = (0..384)
        .map(|_| (state.next_u64() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let body = EntityBody {
        entity_type: "doc".to_owned(),
        embeddings: vec![Embedding {
            version: 1,
            vector,
            timestamp_nanos: 1,
        }],
        importance: importance_of(i),
        ..EntityBody::default()
    };
    body.encode()
        .expect("a 1.5 KiB body is far below the payload limit")
}

/// The pre-encoded bodies entities are written with.
pub struct BodyPool(Vec<Vec<u8>>);

impl BodyPool {
    /// Encodes the [`BODY_VARIANTS`] bodies.
    pub fn encode() -> Self {
        Self((0..BODY_VARIANTS).map(encoded_body).collect())
    }

    /// Entity `i`'s encoded body.
    pub fn body(&self, i: u64) -> &[u8] {
        &self.0[(i % BODY_VARIANTS) as usize]
    }
}

/// A xorshift64 generator (the read sequence `bench/rocksdb_bench.py` reproduces).
pub struct XorShift(pub u64);

impl XorShift {
    /// The sequence the read phases use.
    pub fn for_reads() -> Self {
        Self(0x2545_F491_4F6C_DD1D)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes the bodies of entities `0..entities` from `writers` threads, each taking the next
/// `batch` ids and writing them as one `Durability::Sync` batch; returns the logical bytes
/// written (key + value of every cell).
pub fn ingest(engine: &Arc<Engine>, entities: u64, batch: u64, writers: u64) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let logical = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(BodyPool::encode());
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (engine, next, logical) = (engine.clone(), next.clone(), logical.clone());
            let bodies = bodies.clone();
            std::thread::spawn(move || {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= entities {
                        return;
                    }
                    let mut wb = WriteBatch::new();
                    let ts = engine.clock().now();
                    let mut bytes = 0;
                    for i in first..(first + batch).min(entities) {
                        let key = CellKey::body(TENANT, &id_of(i)).encode();
                        let value = bodies.body(i).to_vec();
                        bytes += (key.len() + value.len()) as u64;
                        wb.put(key, ts, value);
                    }
                    engine.write(wb, Durability::Sync).expect("bench write");
                    logical.fetch_add(bytes, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writer thread panicked");
    }
    logical.load(Ordering::Relaxed)
}

/// Checks that a read of entity `i` found the entity written.
pub fn check(found: Option<Entity>, i: u64) {
    let entity = found.unwrap_or_else(|| panic!("entity {i} was ingested but is not found"));
    assert_eq!(entity.body.importance, importance_of(i), "entity {i}");
}
