//! A received chunk applied at the pace of this node's indexer (docs/cluster.md "Range
//! streaming"): the chunk's partitions go to the store in pieces that fit the room each
//! tenant's vector tail gives a bulk load. Below half of `index.max_unindexed_vectors` the
//! stream fills the tail freely ([`allidb_index::store::BulkRoom`]); above it, where client
//! writes are filling the tail too, the next piece waits and then gets one vector for every
//! [`INDEXED_PER_STREAMED`] the indexer moved into HNSW since the chunk first waited (a
//! [`Credit`] counted from that moment, so what the indexer does while a piece is applied and
//! synced counts as well). So a stream goes as fast as
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
/// synced; returns how long it waited for the indexer in all. `shares` chunks of one stream
/// are applied at once (its groups streamed together, at least 1): each takes that share of
/// the free room and of what the indexer earns, so together they take no more than one would.
pub async fn apply_paced(
    local: &LocalReplica,
    mutation: ReplicaMutation,
    shares: usize,
) -> Result<Duration, ClusterError> {
    let shares = shares.max(1);
    let ReplicaMutation { mut drops, cells } = mutation;
    let partitions = partitions(&cells)?;
    let mut cells = cells.into_iter();
    let mut waited = Duration::ZERO;
    // Per tenant that had to wait, what the indexer has earned this chunk since.
    let mut credits: HashMap<String, Credit> = HashMap::new();
    let mut next = 0;
    while next < partitions.len() {
        let store = local.store();
        let mut free: HashMap<String, usize> = HashMap::new();
        let fits = fitting(&partitions[next..], |tenant| {
            let room = store.bulk_room(tenant);
            let share = room.room / shares;
            free.insert(tenant.to_owned(), share);
            let earned = credits.get(tenant).map_or(0, |c| c.room(room.indexed));
            share.max(earned)
        });
        if fits == 0 {
            let tenant = &partitions[next].tenant;
            let credit = credits
                .entry(tenant.clone())
                .or_insert_with(|| Credit::from(store.bulk_room(tenant).indexed, shares));
            waited += wait_for_room(local, tenant, credit, shares).await?;
            continue;
        }
        let piece = &partitions[next..next + fits];
        for (tenant, credit) in &mut credits {
            let applied = piece.iter().filter(|p| &p.tenant == tenant).count();
            credit.spend(applied.saturating_sub(free.get(tenant).copied().unwrap_or(0)));
        }
        let count: usize = piece.iter().map(|p| p.cells).sum();
        let piece = ReplicaMutation {
            drops: std::mem::take(&mut drops),
            cells: cells.by_ref().take(count).collect(),
        };
        local.apply_synced(piece).await?;
        next += fits;
    }
    Ok(waited)
}

/// What a tenant's indexer has earned a stream within one chunk, once the stream found the
/// tail at half its bound: one vector for every [`INDEXED_PER_STREAMED`] indexed since then
/// (divided among the chunks applied at once), less what the stream added on that credit.
/// Counting from a fixed start, the indexer's work while a piece is applied and synced counts
/// too.
#[derive(Debug, PartialEq)]
struct Credit {
    /// The tenant's indexed count when the stream first waited.
    since: u64,
    /// Chunks of the stream applied at once, which share what is earned.
    shares: u64,
    /// Vectors added beyond the free room since then.
    spent: usize,
}

impl Credit {
    fn from(indexed: u64, shares: usize) -> Credit {
        Credit {
            since: indexed,
            shares: (shares as u64).max(1),
            spent: 0,
        }
    }

    /// Vectors the stream may add now, the tenant's indexer having indexed `indexed` in all.
    fn room(&self, indexed: u64) -> usize {
        let earned = indexed.saturating_sub(self.since) / INDEXED_PER_STREAMED / self.shares;
        usize::try_from(earned)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.spent)
    }

    fn spend(&mut self, vectors: usize) {
        self.spent = self.spent.saturating_add(vectors);
    }
}

/// One partition of a chunk: its tenant and how many consecutive cells it has.
#[derive(Debug, PartialEq)]
struct Partition {
    tenant: String,
    cells: usize,
}

/// The partitions of `cells` in order (a chunk holds each partition's cells together, in key
/// order); each partition's first key is decoded, the others are compared by their partition
/// prefix.
fn partitions(cells: &[CellVersion]) -> Result<Vec<Partition>, ClusterError> {
    let mut partitions: Vec<Partition> = Vec::new();
    let mut current: &[u8] = &[];
    for (key, _, _) in cells {
        let prefix = allidb_storage::key::partition_of(key).ok_or_else(|| {
            ClusterError::Protocol("a cell key has no partition prefix".to_owned())
        })?;
        match partitions.last_mut() {
            Some(last) if prefix == current => last.cells += 1,
            _ => {
                let (tenant, _) = cells::partition_of(key)?;
                partitions.push(Partition { tenant, cells: 1 });
                current = prefix;
            }
        }
    }
    Ok(partitions)
}

/// How many of `partitions`, from the first, fit the room `room_of` gives their tenants (each
/// asked once).
fn fitting(partitions: &[Partition], mut room_of: impl FnMut(&str) -> usize) -> usize {
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

/// Waits until `tenant`'s tail has bulk room again (a share of it: one of `shares` chunks
/// applied at once) or its indexer has earned `credit` room; the time waited. Fails when the
/// indexer indexes nothing of it for [`STALL`].
async fn wait_for_room(
    local: &LocalReplica,
    tenant: &str,
    credit: &Credit,
    shares: usize,
) -> Result<Duration, ClusterError> {
    let started = Instant::now();
    let (mut last, mut progress) = (local.store().bulk_room(tenant).indexed, Instant::now());
    loop {
        let now = local.store().bulk_room(tenant);
        if now.room / shares > 0 || credit.room(now.indexed) > 0 {
            return Ok(started.elapsed());
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

    #[test]
    fn a_credit_counts_everything_indexed_since_the_first_wait_less_what_it_paid_for() {
        let mut credit = Credit::from(1000, 1);
        assert_eq!(credit.room(1000), 0);
        assert_eq!(credit.room(1001), 0, "one vector per two indexed");
        assert_eq!(credit.room(2024), 512);
        credit.spend(512);
        assert_eq!(credit.room(2024), 0, "spent");
        // Indexed while the piece was applied: earned as well, not lost to the next wait.
        assert_eq!(credit.room(4072), 1024);
        credit.spend(2000);
        assert_eq!(
            credit.room(4072),
            0,
            "overspent is no room, not an underflow"
        );
        assert_eq!(credit.room(999), 0, "an index made again counts from zero");
        let shared = Credit::from(1000, 2);
        assert_eq!(
            shared.room(2024),
            256,
            "two chunks applied at once earn half each"
        );
    }
}
