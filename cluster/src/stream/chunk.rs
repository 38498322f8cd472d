//! The source's side of a range stream: one chunk of the partitions of some token ranges,
//! from the partition after a position, read from one pass over a snapshot of its store.
//! Pure over the partitions it is given.
//!
//! Invariants: a chunk holds whole partitions (every newest cell version, tombstones and the
//! marker included), in key order; its position is the last partition looked at, so the next
//! chunk neither repeats nor skips one. Must never: hold more than one chunk's cells, or look
//! at more than its scan budget (at most [`SCAN_BYTES`]) of partitions for one chunk (a sparse
//! range answers in steps).

use allidb_storage::engine::PartitionVersions;
use allidb_storage::partition::CellVersion;

use super::session::StreamPosition;
use crate::ClusterError;
use crate::cells;
use crate::ring::{SpanIndex, token};

/// Largest chunk budget a receiver may ask for (cell keys and values).
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

/// Most bytes of partitions one chunk looks at, in the ranges or not.
pub const SCAN_BYTES: usize = 64 << 20;

/// One chunk of a stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// The cells of the chunk's partitions, partition after partition.
    pub cells: Vec<CellVersion>,
    /// Partitions in the chunk.
    pub partitions: u64,
    /// Bytes of its cells.
    pub bytes: u64,
    /// The last partition looked at (`None`: none was).
    pub position: Option<StreamPosition>,
    /// Nothing is left after `position`.
    pub done: bool,
}

/// The chunk of `partitions` (in key order, already after the position asked for) that fall
/// in `spans`, stopping after the partition that brings it to `max_bytes`, or after
/// `scan_bytes` of partitions looked at.
pub fn read_chunk(
    partitions: impl Iterator<Item = allidb_storage::Result<PartitionVersions>>,
    spans: &SpanIndex,
    max_bytes: usize,
    scan_bytes: usize,
) -> Result<Chunk, ClusterError> {
    let mut chunk = Chunk::default();
    let mut scanned = 0usize;
    for partition in partitions {
        let partition = partition.map_err(|e| ClusterError::Store(e.into()))?;
        let size: usize = partition.cells.iter().map(cells::version_size).sum();
        scanned += size;
        if spans
            .find(token(&partition.tenant, &partition.entity_id))
            .is_some()
        {
            chunk.partitions += 1;
            chunk.bytes += size as u64;
            chunk.cells.extend(partition.cells);
        }
        chunk.position = Some(StreamPosition {
            tenant: partition.tenant,
            entity_id: partition.entity_id,
        });
        if chunk.bytes as usize >= max_bytes || scanned >= scan_bytes {
            return Ok(chunk);
        }
    }
    chunk.done = true;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::TokenSpan;

    fn partition(id: usize) -> PartitionVersions {
        let key = allidb_storage::key::partition_prefix("t", &format!("e{id:04}"));
        PartitionVersions {
            tenant: "t".to_owned(),
            entity_id: format!("e{id:04}"),
            cells: vec![(key, 7, Some(vec![0u8; 100]))],
        }
    }

    #[test]
    fn chunks_cover_every_partition_in_the_ranges_once() {
        let all: Vec<PartitionVersions> = (0..500).map(partition).collect();
        let half = TokenSpan {
            start: 0,
            end: u64::MAX / 2,
        };
        let spans = SpanIndex::new(std::iter::once(half));
        let mut received = Vec::new();
        let mut after: Option<StreamPosition> = None;
        let mut chunks = 0;
        loop {
            let rest = all.iter().filter(|p| {
                after.as_ref().is_none_or(|a| {
                    (p.tenant.as_str(), p.entity_id.as_str())
                        > (a.tenant.as_str(), a.entity_id.as_str())
                })
            });
            let chunk = read_chunk(rest.cloned().map(Ok), &spans, 1000, SCAN_BYTES).unwrap();
            chunks += 1;
            assert!(chunk.bytes <= 1000 + 110, "a chunk stops at its budget");
            received.extend(chunk.cells.iter().map(|(k, _, _)| k.clone()));
            after = chunk.position;
            if chunk.done {
                break;
            }
        }
        let expected: Vec<Vec<u8>> = all
            .iter()
            .filter(|p| half.contains(token(&p.tenant, &p.entity_id)))
            .map(|p| p.cells[0].0.clone())
            .collect();
        assert!(!expected.is_empty() && expected.len() < all.len());
        assert_eq!(received, expected);
        assert!(chunks > expected.len() / 10, "{chunks} chunks");
    }
}
