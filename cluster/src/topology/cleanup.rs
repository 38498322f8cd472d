//! Cleanup (DESIGN.md §6 rule 7, docs/cluster.md "Cleanup"): a node drops the data of the
//! token ranges it no longer replicates (what a join or a decommission moved away from it), from
//! storage without tombstones and from its indexes.
//!
//! The cleanup is recorded in the log (`StartCleanup`, through the leader) before anything is
//! dropped, and ended (`EndCleanup`) after: the log refuses it while a movement runs and starts
//! no movement while it runs, so the ranges this node keeps are those of the ring when it
//! started, and no stream chunk or write-both write of a range it drops arrives meanwhile. A
//! cleanup left in the log by a node that stopped is ended by that node once it runs again (no
//! cleanup runs there then) or, while it is down, by the topology coordinator: nothing is left
//! half-dropped (the storage purge is one manifest edit); the operator runs it again.
//!
//! Must never: drop a partition of a range this node replicates in the log's ring, or drop
//! anything while a movement runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allidb_index::store::UnifiedStore;
use allidb_storage::engine::Purged;
use tonic::Status;

use super::TopologyLog;
use super::state::{Command, TopologyState};
use crate::membership::NodeStatus;
use crate::peer_client::topology::JoinRefusal;
use crate::ring::{HostId, SpanIndex, token};
use crate::{ClusterError, proto};

/// The deadline of one cleanup call to the leader (it commits one log entry).
const CLEANUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long this node waits to apply its own committed cleanup start.
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// What a cleanup dropped on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupReport {
    /// The cleanup's id in the log.
    pub cleanup: u64,
    /// The topology version whose ring it kept.
    pub topology_version: u64,
    /// The token ranges this node replicates there (what it kept).
    pub ranges_kept: usize,
    /// What the storage purge dropped and rewrote.
    pub purged: Purged,
    /// How long it took.
    pub duration: Duration,
}

impl TopologyLog {
    /// Drops from `store` every partition of a token range this node does not replicate in the
    /// log's ring, with the cleanup recorded in the log meanwhile. One at a time per node
    /// (UNAVAILABLE otherwise); refused (`TopologyRefused`) while a movement runs.
    pub async fn cleanup(&self, store: Arc<UnifiedStore>) -> Result<CleanupReport, ClusterError> {
        let started = Instant::now();
        let _one_here = self.shared.cleaning.try_lock().map_err(|_| {
            ClusterError::Unavailable("a cleanup is already running on this node".to_owned())
        })?;
        let host = self.host();
        let (_, cleanup) = self
            .take_cleanup(cleanup_request(host, None))
            .await
            .map_err(super::status_error)?;
        metrics::gauge!("allidb_cleanup_running").set(1.0);
        let purged = self.purge_unowned(host, cleanup, store).await;
        metrics::gauge!("allidb_cleanup_running").set(0.0);
        if let Err(error) = self
            .take_cleanup(cleanup_request(host, Some(cleanup)))
            .await
        {
            // Ended later: by this node once no cleanup runs here (the coordinator's loop).
            tracing::warn!(cleanup, %error, "the cleanup's end was not committed; retrying");
        }
        let outcome = if purged.is_ok() { "finished" } else { "failed" };
        metrics::counter!("allidb_cleanups_total", "outcome" => outcome).increment(1);
        let (topology_version, ranges_kept, purged) = purged?;
        metrics::counter!("allidb_cleanup_partitions_dropped_total")
            .increment(purged.partitions.len() as u64);
        metrics::counter!("allidb_cleanup_bytes_dropped_total").increment(purged.bytes);
        let report = CleanupReport {
            cleanup,
            topology_version,
            ranges_kept,
            purged,
            duration: started.elapsed(),
        };
        tracing::info!(
            cleanup,
            topology_version,
            partitions = report.purged.partitions.len(),
            cells = report.purged.cells,
            bytes = report.purged.bytes,
            tables = report.purged.tables_rewritten,
            elapsed = ?report.duration,
            "cleanup finished"
        );
        Ok(report)
    }

    /// Once this node applied its cleanup `cleanup`, purges what it does not replicate in that
    /// ring; (topology version, ranges kept, what was purged).
    async fn purge_unowned(
        &self,
        host: HostId,
        cleanup: u64,
        store: Arc<UnifiedStore>,
    ) -> Result<(u64, usize, Purged), ClusterError> {
        let mut changes = self.subscribe();
        let applied: Option<Arc<TopologyState>> = match tokio::time::timeout(
            APPLY_WAIT,
            changes.wait_for(|s| s.cleanups.get(&host) == Some(&cleanup)),
        )
        .await
        {
            Ok(Ok(state)) => Some(Arc::clone(&state)),
            _ => None,
        };
        let state = applied.ok_or_else(|| {
            ClusterError::Unavailable(format!(
                "cleanup {cleanup} was committed but not applied here within {APPLY_WAIT:?}"
            ))
        })?;
        let ring = state.ring_before();
        let kept: Vec<_> = ring
            .ranges_replicated_by(host, self.shared.options.replication_factor)
            .into_iter()
            .map(|(range, _)| range.span())
            .collect();
        let ranges_kept = kept.len();
        tracing::info!(
            cleanup,
            topology_version = state.version,
            ranges_kept,
            "cleanup started: dropping the partitions of the ranges this node no longer replicates"
        );
        let purged = tokio::task::spawn_blocking(move || {
            let owned = SpanIndex::new(kept.into_iter());
            let not_owned = |tenant: &str, id: &str| owned.find(token(tenant, id)).is_none();
            store.purge_partitions(&not_owned)
        })
        .await
        .map_err(|e| ClusterError::Protocol(format!("cleanup task: {e}")))?
        .map_err(ClusterError::Store)?;
        Ok((state.version, ranges_kept, purged))
    }

    /// A cleanup request taken here: committed when this node leads, forwarded to the leader
    /// otherwise (once); (topology version, cleanup id).
    pub async fn take_cleanup(&self, request: proto::CleanupRequest) -> Result<(u64, u64), Status> {
        let host: HostId = request
            .host
            .parse()
            .map_err(|e: ClusterError| Status::invalid_argument(format!("host: {e}")))?;
        if let Some((leader, addr)) = self.leader_for(request.forwarded).await? {
            let forwarded = proto::CleanupRequest {
                forwarded: true,
                ..request
            };
            return self
                .shared
                .clients
                .cleanup(leader, addr, forwarded, CLEANUP_CALL_TIMEOUT)
                .await
                .map_err(JoinRefusal::into_status);
        }
        let _one_at_a_time = self.shared.joins.lock().await;
        let command = match request.end {
            false => Command::StartCleanup { host },
            true => Command::EndCleanup {
                host,
                cleanup: request.cleanup,
            },
        };
        let version = self
            .propose(command)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(Status::failed_precondition)?;
        let cleanup =
            match request.end {
                true => request.cleanup,
                false => self.state().cleanups.get(&host).copied().ok_or_else(|| {
                    Status::unavailable("the cleanup ended before it was reported")
                })?,
            };
        tracing::info!(%host, cleanup, end = request.end, version, "cleanup committed");
        Ok((version, cleanup))
    }

    /// Ends cleanups no node runs: this node's own when none runs here (it stopped during one,
    /// or its end was not committed), and, on the leader, those of hosts that are down or gone.
    pub(super) async fn end_abandoned_cleanups(&self, state: &TopologyState, leads: bool) {
        let view = self.shared.view.borrow().clone();
        let here_idle = self.shared.cleaning.try_lock().is_ok();
        for (host, cleanup) in &state.cleanups {
            let abandoned = if *host == self.host() {
                here_idle
            } else {
                leads
                    && view
                        .nodes
                        .get(host)
                        .is_none_or(|n| matches!(n.status, NodeStatus::Down | NodeStatus::Left))
            };
            if !abandoned {
                continue;
            }
            match self
                .take_cleanup(cleanup_request(*host, Some(*cleanup)))
                .await
            {
                Ok(_) => {
                    tracing::warn!(%host, cleanup, "an abandoned cleanup ended (run it again)");
                    metrics::counter!("allidb_cleanups_total", "outcome" => "abandoned")
                        .increment(1);
                }
                Err(error) => {
                    tracing::debug!(%host, cleanup, %error, "abandoned cleanup not ended yet")
                }
            }
        }
    }
}

/// The request starting (`end` `None`) or ending the cleanup of `host`.
fn cleanup_request(host: HostId, end: Option<u64>) -> proto::CleanupRequest {
    proto::CleanupRequest {
        header: None,
        host: host.to_string(),
        end: end.is_some(),
        cleanup: end.unwrap_or(0),
        forwarded: false,
    }
}
