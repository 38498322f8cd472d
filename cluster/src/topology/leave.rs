//! Decommission and removenode requests (docs/cluster.md "Removing a node"): any node takes
//! one and forwards it to the log's leader, which checks it against liveness and commits it;
//! the topology coordinator then drives the movement.
//!
//! Invariants: a decommissioned node must be up (its ranges stream from it); a removed node
//! must be down, and every range it replicates must keep enough live surviving replicas to hold
//! whatever a QUORUM acknowledged, unless the operator accepts the loss (`ignore_dead`).
//! Must never: start a movement while another runs (the log refuses it: `busy`).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use super::TopologyLog;
use super::state::{Command, MovementKind, NodeState, TopologyState};
use super::streaming::removal_gaps;
use crate::membership::{ClusterView, NodeStatus};
use crate::peer_client::topology::JoinRefusal;
use crate::ring::HostId;
use crate::{ClusterError, proto};

/// The deadline of one leave call (the leader commits one log entry).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a caller waiting for its movement checks that the log still has a quorum.
const QUORUM_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a caller waits for its movement without a metadata quorum before it gives up.
const NO_QUORUM_GIVE_UP: Duration = Duration::from_secs(20);
/// How many short ranges a refused removenode names.
const GAPS_NAMED: usize = 5;

/// How a movement this node asked for ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MovementEnd {
    /// It finished: the host is `left` (decommission, removenode) at this topology version.
    Finished { topology_version: u64 },
    /// It was rolled back: the host is `normal` again.
    RolledBack { topology_version: u64 },
}

impl TopologyLog {
    /// Starts `kind` for `host` (through the leader) and waits until the movement ends.
    pub async fn leave(
        &self,
        host: HostId,
        kind: MovementKind,
        ignore_dead: bool,
    ) -> Result<MovementEnd, ClusterError> {
        let kind = match kind {
            MovementKind::Decommission => proto::LeaveKind::Decommission,
            MovementKind::RemoveNode => proto::LeaveKind::Removenode,
            MovementKind::Bootstrap | MovementKind::Replace => {
                return Err(ClusterError::InvalidRange(format!(
                    "a {} starts with a join, not a leave",
                    kind.as_str()
                )));
            }
        };
        let request = proto::LeaveRequest {
            header: None,
            host: host.to_string(),
            kind: kind as i32,
            ignore_dead,
            forwarded: false,
        };
        let (version, movement) = self
            .take_leave(request)
            .await
            .map_err(super::status_error)?;
        // The leader committed it; this node may not have applied it yet. Without a metadata
        // quorum the movement can neither finish nor be rolled back: say so instead of waiting.
        let mut state = self.subscribe();
        let mut no_quorum_since: Option<std::time::Instant> = None;
        let ended = loop {
            let wait = state.wait_for(|s| {
                s.version >= version && s.movement.as_ref().is_none_or(|m| m.id != movement)
            });
            let waited = match tokio::time::timeout(QUORUM_CHECK_EVERY, wait).await {
                Ok(Ok(ended)) => Some(Arc::clone(&ended)),
                Ok(Err(_)) => {
                    return Err(ClusterError::Unavailable(
                        "the topology log stopped".to_owned(),
                    ));
                }
                Err(_) => None,
            };
            if let Some(ended) = waited {
                break ended;
            }
            if self.has_quorum(QUORUM_CHECK_EVERY).await {
                no_quorum_since = None;
                continue;
            }
            let since = *no_quorum_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= NO_QUORUM_GIVE_UP {
                return Err(ClusterError::Unavailable(format!(
                    "the topology log has had no quorum of voters for {:?}: movement \
                     {movement} stays in the log and goes on (or is rolled back) once they \
                     are back; see allidb cluster status",
                    since.elapsed()
                )));
            }
        };
        let left = ended
            .nodes
            .get(&host)
            .is_some_and(|n| n.state == NodeState::Left);
        Ok(if left {
            MovementEnd::Finished {
                topology_version: ended.version,
            }
        } else {
            MovementEnd::RolledBack {
                topology_version: ended.version,
            }
        })
    }

    /// A leave request taken here: checked and committed when this node leads, forwarded to
    /// the leader otherwise (once); (topology version, movement id).
    pub async fn take_leave(&self, request: proto::LeaveRequest) -> Result<(u64, u64), Status> {
        let shared = &self.shared;
        let host: HostId = request
            .host
            .parse()
            .map_err(|e: ClusterError| Status::invalid_argument(format!("host: {e}")))?;
        let kind = match proto::LeaveKind::try_from(request.kind) {
            Ok(proto::LeaveKind::Decommission) => MovementKind::Decommission,
            Ok(proto::LeaveKind::Removenode) => MovementKind::RemoveNode,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "kind: {} is neither decommission nor removenode",
                    request.kind
                )));
            }
        };
        if let Some((leader, addr)) = self.leader_for(request.forwarded).await? {
            let forwarded = proto::LeaveRequest {
                forwarded: true,
                ..request
            };
            return shared
                .clients
                .leave(leader, addr, forwarded, LEAVE_TIMEOUT)
                .await
                .map_err(JoinRefusal::into_status);
        }
        let _one_at_a_time = shared.joins.lock().await;
        let state = self.state();
        let view = shared.view.borrow().clone();
        let up = |h: HostId| live(&view, h);
        let rf = shared.options.replication_factor;
        match kind {
            MovementKind::Decommission if !up(host) => {
                return Err(Status::failed_precondition(format!(
                    "host {host} is down: its ranges stream from it, so a dead node is removed \
                     with removenode instead"
                )));
            }
            MovementKind::RemoveNode if up(host) => {
                return Err(Status::failed_precondition(format!(
                    "host {host} is up: removenode is for a dead node; decommission a live one"
                )));
            }
            MovementKind::RemoveNode if !request.ignore_dead => {
                refuse_gaps(&state, host, rf, up, "removing", "pass --ignore-dead")?;
            }
            _ => {}
        }
        let command = Command::Leave {
            host,
            kind,
            replication_factor: rf,
        };
        let version = self
            .propose(command)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(Status::failed_precondition)?;
        let movement = self
            .state()
            .movement
            .as_ref()
            .filter(|m| m.host == host)
            .map(|m| m.id)
            .ok_or_else(|| Status::unavailable("the movement ended before it was reported"))?;
        tracing::info!(%host, kind = kind.as_str(), movement, version, "leave committed");
        Ok((version, movement))
    }
}

/// Whether gossip sees `host` up (neither down nor left).
pub(super) fn live(view: &ClusterView, host: HostId) -> bool {
    view.nodes
        .get(&host)
        .is_some_and(|n| !matches!(n.status, NodeStatus::Down | NodeStatus::Left))
}

/// Refuses `action` ("removing", "replacing") of the dead `host` when some range it replicates
/// lacks the live surviving replicas to rebuild what a QUORUM acknowledged ([`removal_gaps`]);
/// `way_out` says what the operator may do instead.
pub(super) fn refuse_gaps(
    state: &TopologyState,
    host: HostId,
    replication_factor: usize,
    live: impl Fn(HostId) -> bool,
    action: &str,
    way_out: &str,
) -> Result<(), Status> {
    let gaps = removal_gaps(state, host, replication_factor, live);
    if gaps.is_empty() {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "{action} {host} could lose writes a QUORUM acknowledged: {} range(s) lack live \
         surviving replicas ({}{}); bring them back, or {way_out} to accept the loss",
        gaps.len(),
        gaps.iter()
            .take(GAPS_NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
        if gaps.len() > GAPS_NAMED { "; ..." } else { "" }
    )))
}
