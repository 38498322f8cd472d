//! The merge of one repair stream: the chunks every replica of a group streams of the same
//! token spans (the differing leaves), lined up partition by partition in key order, and for
//! each partition what each replica lacks of the newest cells (docs/cluster.md "Anti-entropy
//! repair"). Pure.
//!
//! Every replica streams in key order from its own position (the last partition it looked at).
//! A partition is complete once every replica still streaming has looked past it: then a
//! replica that did not send it does not hold it. So the merge keeps at most the chunk each
//! replica sent last, and asks for the next chunk only of the replicas whose position is the
//! lowest.
//!
//! Invariants: a partition is merged once, after every replica's chunks up to it arrived; the
//! newest tenant drop known removes the cells it covers from every replica's answer before the
//! merge (so a replica that missed a drop is never sent, nor sends, a dropped cell). Must never:
//! hold more than one chunk per replica, or call a partition lacking on a replica that has not
//! streamed up to it.

use std::collections::{BTreeMap, VecDeque};

use allidb_storage::partition::CellVersion;

use crate::ClusterError;
use crate::cells;
use crate::stream::chunk::Chunk;
use crate::stream::session::StreamPosition;

/// One partition as a replica streamed it: its key prefix and its cells.
#[derive(Debug)]
struct Streamed {
    prefix: Vec<u8>,
    cells: Vec<CellVersion>,
}

/// What one replica has streamed so far.
#[derive(Debug, Default)]
struct Feed {
    /// Partitions received and not merged yet, in key order.
    partitions: VecDeque<Streamed>,
    /// The last partition it looked at, and its key prefix.
    position: Option<(StreamPosition, Vec<u8>)>,
    /// It has looked at everything.
    done: bool,
}

/// What the partitions merged in one step need.
#[derive(Debug, Default, PartialEq)]
pub struct MergeStep {
    /// Per replica (in the order given to [`ChunkMerge::new`]), the cells it lacks.
    pub lacking: Vec<Vec<CellVersion>>,
    /// Per differing partition, the replicas that lack something of it.
    pub differing: Vec<Vec<usize>>,
    /// Partitions merged (differing or not).
    pub partitions: u64,
}

/// The merge of the streams of one group's replicas.
#[derive(Debug)]
pub struct ChunkMerge {
    feeds: Vec<Feed>,
    /// The newest drop of each tenant any replica holds.
    dropped: BTreeMap<String, u64>,
}

impl ChunkMerge {
    /// A merge of `replicas` streams; `dropped` is the newest drop of each tenant.
    pub fn new(replicas: usize, dropped: BTreeMap<String, u64>) -> Self {
        Self {
            feeds: (0..replicas).map(|_| Feed::default()).collect(),
            dropped,
        }
    }

    /// Where replica `replica`'s next chunk starts (`None`: at the first partition).
    pub fn after(&self, replica: usize) -> Option<StreamPosition> {
        self.feeds[replica]
            .position
            .as_ref()
            .map(|(position, _)| position.clone())
    }

    /// The lowest position of the replicas still streaming: every partition up to it is
    /// complete. `Err(())` while one of them has sent nothing; `Ok(None)` once all are done.
    fn frontier(&self) -> Result<Option<&[u8]>, ()> {
        let mut lowest: Option<&[u8]> = None;
        for feed in self.feeds.iter().filter(|f| !f.done) {
            let (_, prefix) = feed.position.as_ref().ok_or(())?;
            if lowest.is_none_or(|l| prefix.as_slice() < l) {
                lowest = Some(prefix);
            }
        }
        Ok(lowest)
    }

    /// The replicas whose next chunk the merge needs to go on: those still streaming at the
    /// lowest position (or that have sent nothing yet). Empty once every replica is done.
    pub fn wanted(&self) -> Vec<usize> {
        let frontier = self.frontier();
        self.feeds
            .iter()
            .enumerate()
            .filter(|(_, feed)| !feed.done)
            .filter(|(_, feed)| match (&feed.position, &frontier) {
                (None, _) => true,
                (Some((_, prefix)), Ok(Some(lowest))) => prefix.as_slice() == *lowest,
                (Some(_), _) => false,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether every replica has streamed everything and every partition was merged.
    pub fn finished(&self) -> bool {
        self.feeds
            .iter()
            .all(|feed| feed.done && feed.partitions.is_empty())
    }

    /// Takes in replica `replica`'s next chunk (asked from [`ChunkMerge::after`]). Refused when
    /// it neither ends the stream nor moves past the position, or is out of key order.
    pub fn push(&mut self, replica: usize, chunk: Chunk) -> Result<(), ClusterError> {
        let feed = &mut self.feeds[replica];
        let before = feed.position.as_ref().map(|(_, prefix)| prefix.clone());
        let position = chunk.position.map(|p| {
            let prefix = allidb_storage::key::partition_prefix(&p.tenant, &p.entity_id);
            (p, prefix)
        });
        let advanced = match (&position, &before) {
            (Some((_, next)), Some(after)) => next > after,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !chunk.done && !advanced {
            return Err(ClusterError::Protocol(format!(
                "a replica streamed a chunk that neither ends the stream nor moves past {:?}",
                feed.position.as_ref().map(|(p, _)| p)
            )));
        }
        let mut last = before;
        let mut open: Option<Streamed> = None;
        for cell in chunk.cells {
            let prefix = allidb_storage::key::partition_of(&cell.0)
                .ok_or_else(|| {
                    ClusterError::Protocol("a replica streamed a cell without a partition".into())
                })?
                .to_vec();
            if let Some(partition) = open.as_mut()
                && partition.prefix == prefix
            {
                partition.cells.push(cell);
                continue;
            }
            let in_order = last.as_ref().is_none_or(|l| prefix > *l)
                && position.as_ref().is_none_or(|(_, p)| prefix <= *p);
            if !in_order {
                return Err(ClusterError::Protocol(
                    "a replica streamed partitions out of key order".to_owned(),
                ));
            }
            feed.partitions.extend(open.take());
            last = Some(prefix.clone());
            open = Some(Streamed {
                prefix,
                cells: vec![cell],
            });
        }
        feed.partitions.extend(open);
        if position.is_some() {
            feed.position = position;
        }
        feed.done = chunk.done;
        Ok(())
    }

    /// Merges every partition now complete (see the module doc) and takes it out.
    pub fn take_ready(&mut self) -> Result<MergeStep, ClusterError> {
        let frontier = match self.frontier() {
            Ok(frontier) => frontier.map(<[u8]>::to_vec),
            Err(()) => return Ok(self.empty_step()),
        };
        let mut step = self.empty_step();
        loop {
            let next = self
                .feeds
                .iter()
                .filter_map(|feed| feed.partitions.front().map(|p| &p.prefix))
                .min()
                .filter(|prefix| frontier.as_ref().is_none_or(|f| *prefix <= f))
                .cloned();
            let Some(prefix) = next else {
                return Ok(step);
            };
            let mut own: Vec<Vec<CellVersion>> = Vec::with_capacity(self.feeds.len());
            for feed in &mut self.feeds {
                match feed.partitions.front() {
                    Some(p) if p.prefix == prefix => {
                        let cells = feed.partitions.pop_front().map(|p| p.cells);
                        own.push(cells.unwrap_or_default());
                    }
                    _ => own.push(Vec::new()),
                }
            }
            let (tenant, _) = own
                .iter()
                .find_map(|cells| cells.first())
                .map(|(key, _, _)| cells::partition_of(key))
                .ok_or_else(|| ClusterError::Protocol("an empty partition was merged".into()))??;
            let dropped_at = self.dropped.get(&tenant).copied().unwrap_or(0);
            let own: Vec<Vec<CellVersion>> = own
                .into_iter()
                .map(|cells| cells::without_dropped(cells, dropped_at))
                .collect();
            let merged = cells::merge(own.iter().map(Vec::as_slice));
            let mut targets = Vec::new();
            for (replica, cells) in own.iter().enumerate() {
                let missing = cells::missing_from(&merged, cells);
                if !missing.is_empty() {
                    targets.push(replica);
                    step.lacking[replica].extend(missing);
                }
            }
            if !targets.is_empty() {
                step.differing.push(targets);
            }
            step.partitions += 1;
        }
    }

    fn empty_step(&self) -> MergeStep {
        MergeStep {
            lacking: vec![Vec::new(); self.feeds.len()],
            ..MergeStep::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Held = BTreeMap<String, Vec<CellVersion>>;

    fn cell(id: &str, ts: u64, value: &str) -> CellVersion {
        let key = allidb_storage::key::CellKey::body("t", id).encode();
        (key, ts, Some(value.as_bytes().to_vec()))
    }

    /// The chunk of `held` after `after`, stopping after the partition that reaches
    /// `max_cells` cells (as a source's [`crate::stream::chunk::read_chunk`] does by bytes).
    fn chunk(held: &Held, after: Option<StreamPosition>, max_cells: usize) -> Chunk {
        let mut chunk = Chunk::default();
        for (id, cells) in held.iter().filter(|(id, _)| {
            after
                .as_ref()
                .is_none_or(|a| id.as_str() > a.entity_id.as_str())
        }) {
            chunk.cells.extend(cells.iter().cloned());
            chunk.partitions += 1;
            chunk.position = Some(StreamPosition {
                tenant: "t".to_owned(),
                entity_id: id.clone(),
            });
            if chunk.cells.len() >= max_cells {
                return chunk;
            }
        }
        chunk.done = true;
        chunk
    }

    /// Runs a merge of `replicas` to the end with chunks of `max_cells`, returning every
    /// step's lacking cells per replica and the differing partitions.
    fn run(replicas: &[Held], max_cells: usize) -> (Vec<Vec<CellVersion>>, u64, u64) {
        let mut merge = ChunkMerge::new(replicas.len(), BTreeMap::new());
        let mut lacking = vec![Vec::new(); replicas.len()];
        let (mut differing, mut partitions) = (0, 0);
        let mut rounds = 0;
        while !merge.finished() {
            rounds += 1;
            assert!(rounds < 10_000, "the merge goes on");
            for r in merge.wanted() {
                let next = chunk(&replicas[r], merge.after(r), max_cells);
                merge.push(r, next).unwrap();
            }
            let step = merge.take_ready().unwrap();
            for (r, cells) in step.lacking.into_iter().enumerate() {
                lacking[r].extend(cells);
            }
            differing += step.differing.len() as u64;
            partitions += step.partitions;
        }
        (lacking, differing, partitions)
    }

    #[test]
    fn each_replica_is_sent_exactly_what_it_lacks_whatever_the_chunk_size() {
        let mut full = Held::new();
        for i in 0..300 {
            let id = format!("e{i:04}");
            full.insert(id.clone(), vec![cell(&id, 10, "v")]);
        }
        let mut stale = full.clone();
        // The stale replica misses 7 partitions and holds an older version of 3.
        for i in [0, 1, 57, 58, 150, 298, 299] {
            stale.remove(&format!("e{i:04}"));
        }
        for i in [5, 100, 200] {
            stale.insert(
                format!("e{i:04}"),
                vec![cell(&format!("e{i:04}"), 3, "old")],
            );
        }
        // And one newer write the others lack.
        stale.insert("e0500".to_owned(), vec![cell("e0500", 20, "new")]);
        for max_cells in [1, 2, 7, 64, 1000] {
            let (lacking, differing, partitions) =
                run(&[full.clone(), stale.clone(), full.clone()], max_cells);
            assert_eq!(differing, 11, "chunks of {max_cells}");
            assert_eq!(partitions, 301);
            let ids = |cells: &[CellVersion]| -> Vec<String> {
                cells
                    .iter()
                    .map(|(k, _, _)| cells::partition_of(k).unwrap().1)
                    .collect()
            };
            assert_eq!(ids(&lacking[0]), ["e0500"]);
            assert_eq!(ids(&lacking[2]), ["e0500"]);
            assert_eq!(
                ids(&lacking[1]),
                [
                    "e0000", "e0001", "e0005", "e0057", "e0058", "e0100", "e0150", "e0200",
                    "e0298", "e0299"
                ]
            );
            assert!(
                lacking[1].iter().all(|(_, ts, _)| *ts == 10),
                "original timestamps"
            );
        }
        let (lacking, differing, _) = run(&[full.clone(), full.clone()], 5);
        assert_eq!((differing, lacking[0].len() + lacking[1].len()), (0, 0));
        let empty = Held::new();
        let (lacking, differing, _) = run(&[full.clone(), empty], 16);
        assert_eq!(
            (differing, lacking[1].len()),
            (300, 300),
            "a wiped replica gets it all"
        );
    }

    #[test]
    fn a_drop_removes_what_it_covers_from_every_answer() {
        let mut old = Held::new();
        old.insert("a".to_owned(), vec![cell("a", 5, "before the drop")]);
        let mut dropped = BTreeMap::new();
        dropped.insert("t".to_owned(), 7);
        let mut merge = ChunkMerge::new(2, dropped);
        merge.push(0, chunk(&old, None, 10)).unwrap();
        merge.push(1, chunk(&Held::new(), None, 10)).unwrap();
        let step = merge.take_ready().unwrap();
        assert_eq!((step.partitions, step.differing.len()), (1, 0));
        assert!(merge.finished());
    }

    #[test]
    fn a_chunk_that_does_not_move_on_or_is_out_of_order_is_refused() {
        let mut held = Held::new();
        held.insert("b".to_owned(), vec![cell("b", 1, "v")]);
        let mut merge = ChunkMerge::new(1, BTreeMap::new());
        merge.push(0, chunk(&held, None, 1)).unwrap();
        let mut stuck = chunk(&held, None, 1);
        stuck.done = false;
        assert!(merge.push(0, stuck).is_err(), "the same position again");
        let mut merge = ChunkMerge::new(1, BTreeMap::new());
        let mut backwards = chunk(&held, None, 1);
        backwards.cells.push(cell("a", 1, "v"));
        assert!(merge.push(0, backwards).is_err());
    }
}
