//! A received chunk applied at the pace of this node's indexer (docs/cluster.md "Range
//! streaming"): the chunk's partitions go to the store in pieces that fit the room each
//! tenant's vector tail gives a bulk load. Below half of `index.max_unindexed_vectors` the
//! stream fills the tail freely ([`allidb_index::store::BulkRoom`]); above it, where client
//! writes are filling the tail too, the next piece waits and then gets one vector for every
//! [`INDEXED_PER_STREAMED`] the indexer moved into HNSW meanwhile. So a stream goes as fast as
//! the receiver builds HNSW whatever its chunk size, the tail (memory, and the exact scan every
//! query pays) stays bounded, the client writes this node coordinates keep their share of the
//! indexer (half) instead of waiting behind the stream, and a sustained client load cannot
//! starve the stream either.
//!
//! Invariants: every piece is synced before the next one and before the caller records the
//! chunk's position; the tenant drops go with the first piece, before any cell; a partition
//! counts as one vector (an upper bound). Must never: wait for a tenant's indexer that indexes
//! nothing for [`STALL`] (the chunk fails, and its stream resumes from its position later), or
//! split a partition's cells across pieces.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use allidb_storage::partition::CellVersion;

use crate::ClusterError;
use crate::cells::{self, ReplicaMutation};
use crate::replica::LocalReplica;

/// Above half the tail bound, a stream adds one vector for every this many the indexer indexed
/// (2: the stream and the client writes share the indexer evenly).
pub const INDEXED_PER_STREAMED: u64 = 2;

/// Longest a piece waits for an indexer that indexes nothing of its tenant.
pub const STALL: Duration = Duration::from_secs(300);

/// How often a piece held back by a tail looks again.
const POLL: Duration = Duration::from_millis(5);

/// Applies `mutation` (a chunk) on `local` in pieces that fit its tenants' bulk room, each
/// synced; returns how long it waited for the indexer in all.
pub async fn apply_paced(
    local: &LocalReplica,
    mutation: ReplicaMutation,
) -> Result<Duration, ClusterError> {
    let ReplicaMutation { mut drops, cells } = mutation;
    let partitions = partitions(&cells)?;
    let mut cells = cells.into_iter();
    let mut waited = Duration::ZERO;
    // The room a wait earned a tenant (its share of what the indexer did), for the next piece.
    let mut earned: HashMap<String, usize> = HashMap::new();
    let mut next = 0;
    loop {
        let store = local.store();
        let fits = fitting(&partitions[next..], |tenant| {
            let free = store.bulk_room(tenant).room;
            free.max(earned.get(tenant).copied().unwrap_or(0))
        });
        if fits == 0 && next < partitions.len() {
            let tenant = &partitions[next].tenant;
            let (room, wait) = wait_for_room(local, tenant).await?;
            waited += wait;
            earned.insert(tenant.clone(), room);
            continue;
        }
        earned.clear();
        let count: usize = partitions[next..next + fits].iter().map(|p| p.cells).sum();
        let piece = ReplicaMutation {
            drops: std::mem::take(&mut drops),
            cells: cells.by_ref().take(count).collect(),
        };
        local.apply_synced(piece).await?;
        next += fits;
        if next == partitions.len() {
            return Ok(waited);
        }
    }
}

/// One partition of a chunk: its tenant and how many consecutive cells it has.
#[derive(Debug, PartialEq)]
struct Partition {
    tenant: String,
    cells: usize,
}

/// The partitions of `cells` in order (a chunk holds each partition's cells together, in key
/// order).
fn partitions(cells: &[CellVersion]) -> Result<Vec<Partition>, ClusterError> {
    let mut partitions: Vec<(String, String, usize)> = Vec::new();
    for (key, _, _) in cells {
        let (tenant, id) = cells::partition_of(key)?;
        match partitions.last_mut() {
            Some((t, i, count)) if *t == tenant && *i == id => *count += 1,
            _ => partitions.push((tenant, id, 1)),
        }
    }
    Ok(partitions
        .into_iter()
        .map(|(tenant, _, cells)| Partition { tenant, cells })
        .collect())
}

/// How many of `partitions`, from the first, fit the room `room_of` gives their tenants (each
/// asked once).
fn fitting(partitions: &[Partition], room_of: impl Fn(&str) -> usize) -> usize {
    let mut left: HashMap<&str, usize> = HashMap::new();
    partitions
        .iter()
        .take_while(|p| {
            let room = left
                .entry(p.tenant.as_str())
                .or_insert_with(|| room_of(&p.tenant));
            let fits = *room > 0;
            *room = room.saturating_sub(1);
            fits
        })
        .count()
}

/// Waits until `tenant`'s tail has bulk room again, or the indexer has indexed enough of it to
/// earn the stream a share ([`INDEXED_PER_STREAMED`]); (room, time waited). Fails when the indexer
/// indexes nothing of it for [`STALL`].
async fn wait_for_room(
    local: &LocalReplica,
    tenant: &str,
) -> Result<(usize, Duration), ClusterError> {
    let started = Instant::now();
    let from = local.store().bulk_room(tenant).indexed;
    let (mut last, mut progress) = (from, Instant::now());
    loop {
        let now = local.store().bulk_room(tenant);
        let share = usize::try_from(now.indexed.saturating_sub(from) / INDEXED_PER_STREAMED)
            .unwrap_or(usize::MAX);
        if now.room > 0 || share > 0 {
            return Ok((now.room.max(share), started.elapsed()));
        }
        if now.indexed > last {
            (last, progress) = (now.indexed, Instant::now());
        } else if progress.elapsed() >= STALL {
            return Err(ClusterError::Unavailable(format!(
                "tenant {tenant:?}: {} vectors wait for this node's indexer and none was indexed \
                 for {} s; the stream goes on from its position when asked again",
                now.pending,
                STALL.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allidb_storage::key::CellKey;

    /// A cell of partition `id` of `tenant`: its marker (0), body (1) or an out-edge (2+).
    fn cell(tenant: &str, id: &str, which: usize) -> CellVersion {
        let key = match which {
            0 => CellKey::marker(tenant, id),
            1 => CellKey::body(tenant, id),
            n => CellKey::out_edge(tenant, id, "cites", &format!("x{n}")),
        };
        (key.encode(), 1, Some(b"v".to_vec()))
    }

    #[test]
    fn a_chunk_splits_by_partition_and_pieces_fit_each_tenants_room() {
        let chunk = vec![
            cell("t1", "a", 0),
            cell("t1", "a", 1),
            cell("t1", "b", 0),
            cell("t2", "a", 0),
            cell("t2", "b", 0),
            cell("t2", "b", 1),
            cell("t2", "b", 2),
        ];
        let parts = partitions(&chunk).expect("valid keys");
        let counts: Vec<(&str, usize)> =
            parts.iter().map(|p| (p.tenant.as_str(), p.cells)).collect();
        assert_eq!(counts, [("t1", 2), ("t1", 1), ("t2", 1), ("t2", 3)]);
        let room = |free_t1: usize, free_t2: usize| {
            move |tenant: &str| if tenant == "t1" { free_t1 } else { free_t2 }
        };
        assert_eq!(fitting(&parts, room(10, 10)), 4, "everything fits");
        assert_eq!(fitting(&parts, room(1, 10)), 1, "t1 has room for one");
        assert_eq!(fitting(&parts, room(0, 10)), 0, "t1 waits");
        assert_eq!(fitting(&parts[2..], room(0, 1)), 1, "t1 is not asked");
        assert_eq!(fitting(&[], room(0, 0)), 0);
    }
}
