//! Cluster layer (DESIGN.md §6). Only the ring token function exists so far.

/// The ring token of a partition key `(tenant, entity_id)`: `xxh3_64` over `tenant \0 entity_id`.
pub fn token(tenant: &str, entity_id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0]);
    h.update(entity_id.as_bytes());
    h.digest()
}
