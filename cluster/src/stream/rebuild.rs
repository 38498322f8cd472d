//! `allidb cluster rebuild`: streams every range this node replicates from its other replicas
//! (docs/cluster.md "Rebuild"). For a node whose disk was restored from an old
//! checkpoint or lost data it acknowledged: it gets back every cell one other replica holds,
//! at the cell's own timestamp, without waiting for a repair to find the differences.
//!
//! Invariants: at most one rebuild runs on a node; an interrupted rebuild (this node or a
//! source crashed, a source left) is resumed by the next one from its recorded positions as
//! long as the node still replicates the same ranges, and started over otherwise.
//! Must never: stream a range from this node to itself, or from a host that is not its replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RangeStream;
use super::session::{StreamGroup, StreamPurpose};
use crate::ClusterError;
use crate::membership::ClusterView;
use crate::ring::{HostId, TokenSpan};

/// What a rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// The session (32 hex digits).
    pub session: String,
    /// Whether it went on from an interrupted rebuild's positions.
    pub resumed: bool,
    /// Token ranges this node replicates.
    pub ranges: u64,
    /// Partitions, cells and bytes received by this run.
    pub partitions: u64,
    /// Cells received.
    pub cells: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Ranges not (fully) streamed, each with why; the next rebuild resumes them.
    pub unfinished: Vec<String>,
    /// How long it took.
    pub duration: Duration,
}

impl RebuildReport {
    /// Whether every range was streamed to its end.
    pub fn complete(&self) -> bool {
        self.unfinished.is_empty()
    }
}

/// Rebuilds this node's replicas; cheap to clone.
#[derive(Clone, Debug)]
pub struct ReplicaRebuild {
    stream: RangeStream,
    replication_factor: usize,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl ReplicaRebuild {
    /// Rebuilds through `stream`, on a ring replicating `replication_factor` times.
    pub fn new(stream: RangeStream, replication_factor: usize) -> Self {
        Self {
            stream,
            replication_factor,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Streams every range this node replicates (of `tenant` only, when given) from the other
    /// replicas; fails at once when a rebuild is already running here.
    pub async fn run(&self, tenant: Option<String>) -> Result<RebuildReport, ClusterError> {
        let _running = self.running.try_lock().map_err(|_| {
            ClusterError::Unavailable(
                "a rebuild is already running on this node; wait for it to finish".to_owned(),
            )
        })?;
        if let Some(tenant) = &tenant {
            allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        }
        let started = Instant::now();
        let view = self.stream.view();
        let groups = plan(&view, self.stream.host(), self.replication_factor);
        let ranges = groups.iter().map(|g| g.spans.len() as u64).sum();
        let planned = self
            .stream
            .run_plan(StreamPurpose::Rebuild, tenant, None, groups, &|| Ok(()))
            .await?;
        let (resumed, run) = (planned.resumed, planned.run);
        let report = RebuildReport {
            session: planned.session,
            resumed,
            ranges,
            partitions: run.partitions,
            cells: run.cells,
            bytes: run.bytes,
            unfinished: run.unfinished,
            duration: started.elapsed(),
        };
        tracing::info!(
            session = report.session,
            resumed,
            partitions = report.partitions,
            cells = report.cells,
            bytes = report.bytes,
            unfinished = report.unfinished.len(),
            duration_ms = report.duration.as_millis() as u64,
            "rebuild finished"
        );
        Ok(report)
    }
}

/// The ranges `host` replicates, grouped by their other replicas (each group streams from one
/// of them); ranges with no other replica are left out (nothing to rebuild them from).
fn plan(view: &ClusterView, host: HostId, replication_factor: usize) -> Vec<StreamGroup> {
    let mut groups: BTreeMap<Vec<HostId>, Vec<TokenSpan>> = BTreeMap::new();
    for (range, replicas) in view.ring.ranges_replicated_by(host, replication_factor) {
        let mut others: Vec<HostId> = replicas
            .hosts()
            .iter()
            .copied()
            .filter(|h| *h != host)
            .collect();
        if others.is_empty() {
            continue;
        }
        others.sort();
        groups.entry(others).or_default().push(range.span());
    }
    groups
        .into_iter()
        .map(|(sources, spans)| StreamGroup {
            spans,
            sources,
            after: None,
            done: false,
        })
        .collect()
}
