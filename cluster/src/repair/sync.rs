//! Step 3 of a repair: the cells of the differing leaves of one replica group, streamed from
//! every replica in bounded chunks (`StreamRange` over the leaves' token spans), merged
//! partition by partition ([`super::merge`]), and each replica sent what it lacks through the
//! normal batch path with the cells' own timestamps (docs/cluster.md "Anti-entropy repair").
//!
//! Invariants: the differing leaves become token spans (adjacent leaves joined); more spans
//! than one request may name ([`crate::stream::wire::MAX_SPANS`]) are first coarsened to their
//! parent leaves, so a large difference costs one scan per replica, not one per leaf; the
//! repair holds at most one chunk per replica and one step's sends (each at most
//! [`MAX_CHUNK_BYTES`] per call). Must never: write in preview, or send a replica a cell it
//! already holds at that version.

use std::collections::{BTreeMap, BTreeSet};

use super::merge::ChunkMerge;
use super::merkle::leaf_span;
use super::progress::RepairStep;
use super::trees::TreeShape;
use super::{RangeRepair, RepairReport};
use crate::ClusterError;
use crate::cells::{self, ReplicaMutation};
use crate::membership::ClusterView;
use crate::ring::{HostId, TokenSpan};
use crate::stream::Throttle;
use crate::stream::chunk::{Chunk, MAX_CHUNK_BYTES};
use crate::stream::wire::ChunkRequest;
use allidb_storage::partition::CellVersion;

/// The token spans of the listed leaves of `sets`, adjacent leaves joined, in requests of at
/// most `max` spans: while there are more, the set with the most spans is coarsened to the
/// parents of its leaves (a parent holds both children, so nothing differing is left out).
pub fn leaf_spans(sets: &[(TreeShape, BTreeSet<usize>)], max: usize) -> Vec<Vec<TokenSpan>> {
    let mut sets: Vec<(TreeShape, BTreeSet<usize>)> = sets.to_vec();
    let spans_of = |(shape, leaves): &(TreeShape, BTreeSet<usize>)| -> Vec<TokenSpan> {
        let mut spans: Vec<TokenSpan> = Vec::new();
        for span in leaves
            .iter()
            .filter_map(|leaf| leaf_span(&shape.span, shape.depth, *leaf))
        {
            match spans.last_mut() {
                Some(last) if last.end == span.start => last.end = span.end,
                _ => spans.push(span),
            }
        }
        spans
    };
    let mut spans: Vec<Vec<TokenSpan>> = sets.iter().map(spans_of).collect();
    while spans.iter().map(Vec::len).sum::<usize>() > max {
        let Some((widest, _)) = spans
            .iter()
            .enumerate()
            .filter(|(i, _)| sets[*i].0.depth > 0)
            .max_by_key(|(_, s)| s.len())
        else {
            break;
        };
        let (shape, leaves) = &mut sets[widest];
        shape.depth -= 1;
        *leaves = leaves.iter().map(|leaf| leaf >> 1).collect();
        spans[widest] = spans_of(&sets[widest]);
    }
    let all: Vec<TokenSpan> = spans.into_iter().flatten().collect();
    all.chunks(max.max(1)).map(<[TokenSpan]>::to_vec).collect()
}

/// `cells` in mutations of at most [`MAX_CHUNK_BYTES`] (a cell larger than that alone).
fn in_calls(cells: Vec<CellVersion>) -> Vec<ReplicaMutation> {
    let mut calls: Vec<ReplicaMutation> = Vec::new();
    let mut bytes = 0usize;
    for cell in cells {
        let size = cells::version_size(&cell);
        match calls.last_mut() {
            Some(call) if bytes + size <= MAX_CHUNK_BYTES => {
                bytes += size;
                call.cells.push(cell);
            }
            _ => {
                bytes = size;
                calls.push(ReplicaMutation::cells(vec![cell]));
            }
        }
    }
    calls
}

impl RangeRepair {
    /// Streams the cells of `spans` (of `tenant` only, when given) from every one of
    /// `replicas`, merges them and, unless `preview`, sends each replica what it lacks;
    /// `dropped` is the newest drop of each tenant. Counts into `report`; a replica that cannot
    /// stream fails the whole call (the caller skips the group's ranges).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sync_spans(
        &self,
        view: &ClusterView,
        replicas: &[HostId],
        spans: Vec<TokenSpan>,
        tenant: Option<&str>,
        dropped: &BTreeMap<String, u64>,
        preview: bool,
        ranges_done: u64,
        report: &mut RepairReport,
    ) -> Result<(), ClusterError> {
        let request = ChunkRequest {
            session: rand::random(),
            movement: None,
            tenant: tenant.map(str::to_owned),
            spans,
            after: None,
            max_bytes: self.streaming.chunk_bytes.clamp(1, MAX_CHUNK_BYTES),
            repair: true,
        };
        let mut merge = ChunkMerge::new(replicas.len(), dropped.clone());
        let mut throttle = Throttle::new(self.streaming.bytes_per_sec);
        while !merge.finished() {
            let wanted = merge.wanted();
            let fetches = wanted.iter().map(|replica| {
                let mut request = request.clone();
                request.after = merge.after(*replica);
                async move { self.chunk_from(view, replicas[*replica], &request).await }
            });
            let chunks = futures_util::future::join_all(fetches).await;
            let mut moved = 0u64;
            for (replica, chunk) in wanted.into_iter().zip(chunks) {
                let chunk = chunk?;
                moved += chunk.bytes;
                report.bytes_compared += chunk.bytes;
                metrics::counter!("allidb_repair_chunks_total").increment(1);
                metrics::counter!("allidb_repair_compared_bytes_total").increment(chunk.bytes);
                merge.push(replica, chunk)?;
            }
            let step = merge.take_ready()?;
            report.partitions_differing += step.differing.len() as u64;
            let sends = step
                .lacking
                .into_iter()
                .enumerate()
                .filter(|(_, cells)| !cells.is_empty())
                .map(|(replica, cells)| {
                    let host = replicas[replica];
                    async move {
                        let count = cells.len() as u64;
                        let bytes: u64 = cells.iter().map(|c| cells::version_size(c) as u64).sum();
                        if preview {
                            return (replica, count, bytes, Ok(()));
                        }
                        for call in in_calls(cells) {
                            if let Err(error) = self.coordinator.send_repair(host, &call).await {
                                return (replica, count, bytes, Err(error));
                            }
                        }
                        (replica, count, bytes, Ok(()))
                    }
                });
            let mut failed: BTreeSet<usize> = BTreeSet::new();
            for (replica, count, bytes, outcome) in futures_util::future::join_all(sends).await {
                match outcome {
                    Ok(()) => {
                        report.cells_streamed += count;
                        report.bytes_streamed += bytes;
                        moved += bytes;
                    }
                    Err(error) => {
                        failed.insert(replica);
                        report.failures.push(error.to_string());
                    }
                }
            }
            if !preview {
                report.partitions_repaired += step
                    .differing
                    .iter()
                    .filter(|targets| targets.iter().all(|t| !failed.contains(t)))
                    .count() as u64;
            }
            self.progress
                .record(RepairStep::Partitions, ranges_done, report);
            throttle.consume(moved).await;
        }
        Ok(())
    }

    /// The next chunk of `request` from `host`: this node's own store directly, a peer through
    /// `StreamRange`.
    async fn chunk_from(
        &self,
        view: &ClusterView,
        host: HostId,
        request: &ChunkRequest,
    ) -> Result<Chunk, ClusterError> {
        let (chunk, _drops) = match self.address(view, host)? {
            None => self.local.stream_chunk(request.clone()).await?,
            Some(addr) => {
                self.clients
                    .stream_range(
                        host,
                        addr,
                        request,
                        view.ring.version(),
                        self.streaming.call_timeout,
                    )
                    .await?
            }
        };
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::merkle::leaf_of;

    #[test]
    fn leaves_become_joined_spans_and_too_many_are_coarsened_to_their_parents() {
        let shape = TreeShape {
            span: TokenSpan {
                start: 0,
                end: 1 << 20,
            },
            depth: 10,
        };
        let leaves: BTreeSet<usize> = [3, 4, 5, 9, 700].into_iter().collect();
        let spans = leaf_spans(&[(shape, leaves.clone())], 100);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].len(), 3, "3, 4 and 5 joined: {spans:?}");
        // Every token of a listed leaf is in a span, and no other.
        let covered = |spans: &[TokenSpan], t| spans.iter().any(|s| s.contains(t));
        for t in (1..=1u64 << 20).step_by(97) {
            let listed = leaves.contains(&leaf_of(&shape.span, 10, t));
            assert_eq!(covered(&spans[0], t), listed, "token {t}");
        }
        // Every other leaf: 512 spans, asked in at most 100: coarsened until it fits.
        let alternate: BTreeSet<usize> = (0..1024).step_by(2).collect();
        let coarse = leaf_spans(&[(shape, alternate.clone())], 100);
        assert_eq!(coarse.len(), 1);
        assert!(coarse[0].len() <= 100, "{}", coarse[0].len());
        for t in (1..=1u64 << 20).step_by(61) {
            if alternate.contains(&leaf_of(&shape.span, 10, t)) {
                assert!(
                    covered(&coarse[0], t),
                    "a differing token is still streamed"
                );
            }
        }
        // Ranges that cannot be coarsened further go in several requests.
        let ranges: Vec<(TreeShape, BTreeSet<usize>)> = (0..5u64)
            .map(|i| {
                let span = TokenSpan {
                    start: i * 10,
                    end: i * 10 + 5,
                };
                (TreeShape { span, depth: 0 }, [0].into_iter().collect())
            })
            .collect();
        let split = leaf_spans(&ranges, 2);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    }

    #[test]
    fn cells_go_in_calls_of_at_most_the_chunk_budget() {
        let cell = |i: usize, size: usize| -> CellVersion {
            let key = allidb_storage::key::CellKey::body("t", &format!("e{i}")).encode();
            (key, 1, Some(vec![0u8; size]))
        };
        let cells: Vec<CellVersion> = (0..10).map(|i| cell(i, MAX_CHUNK_BYTES / 4)).collect();
        let calls = in_calls(cells);
        assert_eq!(calls.len(), 4, "three of about a quarter each fit");
        assert!(calls.iter().all(|c| {
            c.cells.iter().map(cells::version_size).sum::<usize>() <= MAX_CHUNK_BYTES
        }));
        assert_eq!(in_calls(vec![cell(0, MAX_CHUNK_BYTES * 2)]).len(), 1);
        assert!(in_calls(Vec::new()).is_empty());
    }
}
