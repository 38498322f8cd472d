//! The topology coordinator (DESIGN.md §6 rules 3 and 5): the one driver of movements. It runs
//! on every node and acts only while that node leads the log, so a new leader picks a movement
//! up where the log says it stands.
//!
//! A bootstrap goes: `stream` (write both, read old) → barrier → the joining node streams its
//! ranges → `read_new` (write both, read new) → barrier → finish (`normal`). A barrier waits
//! until every live node has applied the version of the step before (a call, not a sleep); a
//! node that is down is skipped (it catches up from the log before it serves again). A bootstrap
//! whose joining node stays down for [`ABORT_AFTER`] is rolled back. Between movements it keeps
//! the voters at 1, 3 or 5 of the `normal` nodes.
//!
//! Must never: commit a step before the barrier of the step before, or run two movements.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::TopologyLog;
use super::state::{Command, Movement, MovementKind, MovementStep, NodeState, TopologyState};
use crate::membership::NodeStatus;
use crate::ring::HostId;

/// How long one node may take to answer a barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a joining node may take to stream its ranges in one call (the call is resumed
/// from its recorded positions when asked again).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// A bootstrap whose joining node is down this long is rolled back.
pub const ABORT_AFTER: Duration = Duration::from_secs(60);

pub(super) fn spawn(log: TopologyLog) {
    tokio::spawn(async move {
        let mut changes = log.subscribe();
        let mut joiner_down_since: Option<(u64, Instant)> = None;
        loop {
            let poll = log.shared.options.poll;
            if let Ok(Err(_)) = tokio::time::timeout(poll, changes.changed()).await {
                return; // the log stopped
            }
            if log.leader().await != Some(log.host()) {
                continue;
            }
            let state = log.state();
            let Some(movement) = state.movement.clone() else {
                joiner_down_since = None;
                promote_voters(&log, &state).await;
                continue;
            };
            if joiner_down(&log, movement.host) {
                let since = match joiner_down_since {
                    Some((id, since)) if id == movement.id => since,
                    _ => Instant::now(),
                };
                joiner_down_since = Some((movement.id, since));
                if since.elapsed() >= ABORT_AFTER {
                    abort(&log, &movement, "the joining node is down").await;
                }
                continue;
            }
            joiner_down_since = None;
            if let Err(reason) = step(&log, &state, &movement).await {
                tracing::warn!(movement = %movement, %reason, "a movement step did not complete; retrying");
            }
        }
    });
}

fn joiner_down(log: &TopologyLog, host: HostId) -> bool {
    log.shared
        .view
        .borrow()
        .nodes
        .get(&host)
        .is_none_or(|n| n.status == NodeStatus::Down)
}

async fn abort(log: &TopologyLog, movement: &Movement, reason: &str) {
    let command = Command::Abort {
        movement: movement.id,
        reason: reason.to_owned(),
    };
    match log.propose(command).await {
        Ok(Ok(version)) => {
            tracing::warn!(movement = %movement, %reason, version, "movement rolled back");
            metrics::counter!("allidb_topology_movements_total", "kind" => movement.kind.as_str(), "outcome" => "rolled_back").increment(1);
        }
        Ok(Err(refused)) => tracing::warn!(movement = %movement, %refused, "rollback refused"),
        Err(error) => tracing::warn!(movement = %movement, %error, "rollback not committed"),
    }
}

/// Takes the movement's next step, after the barrier of the current one.
async fn step(log: &TopologyLog, state: &TopologyState, movement: &Movement) -> Result<(), String> {
    barrier(log, state).await?;
    let next = match (movement.kind, movement.step) {
        (MovementKind::Bootstrap, MovementStep::Stream) => {
            let addr = log
                .shared
                .view
                .borrow()
                .peer_address(movement.host)
                .map_err(|e| e.to_string())?;
            let run = log
                .shared
                .clients
                .bootstrap(
                    movement.host,
                    addr,
                    movement.id,
                    state.version,
                    BOOTSTRAP_TIMEOUT,
                )
                .await
                .map_err(|e| format!("bootstrap streaming: {e}"))?;
            tracing::info!(
                movement = %movement,
                partitions = run.partitions,
                cells = run.cells,
                bytes = run.bytes,
                "the joining node streamed its ranges"
            );
            Command::Advance {
                movement: movement.id,
                step: MovementStep::ReadNew,
            }
        }
        (MovementKind::Bootstrap, MovementStep::ReadNew) => Command::Finish {
            movement: movement.id,
        },
    };
    let finishing = matches!(next, Command::Finish { .. });
    let version = log
        .propose(next)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|refused| format!("refused: {refused}"))?;
    tracing::info!(movement = %movement, version, "movement step committed");
    if finishing {
        metrics::counter!("allidb_topology_movements_total", "kind" => movement.kind.as_str(), "outcome" => "finished").increment(1);
    }
    Ok(())
}

/// Waits until every live node of `state` has applied its version.
async fn barrier(log: &TopologyLog, state: &TopologyState) -> Result<(), String> {
    let view = log.shared.view.borrow().clone();
    let calls = state
        .nodes
        .iter()
        .filter(|(_, node)| node.state != NodeState::Left)
        .filter(|(host, _)| **host != log.host())
        .filter(|(host, _)| {
            view.nodes
                .get(host)
                .is_some_and(|n| n.status != NodeStatus::Down)
        })
        .map(|(host, _)| {
            let addr = view.peer_address(*host);
            async move {
                let addr = addr.map_err(|e| e.to_string())?;
                let applied = log
                    .shared
                    .clients
                    .barrier(*host, addr, state.version, BARRIER_TIMEOUT)
                    .await
                    .map_err(|e| format!("barrier on {host}: {e}"))?;
                if applied < state.version {
                    return Err(format!(
                        "barrier on {host}: applied {applied}, not {}",
                        state.version
                    ));
                }
                Ok(())
            }
        });
    for outcome in futures_util::future::join_all(calls).await {
        outcome?;
    }
    Ok(())
}

/// The voters a ring of `normal` nodes keeps: 1 below 3 nodes, 3 below 5, then 5.
fn target_voters(normal: usize) -> usize {
    match normal {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    }
}

/// Adds up `normal` learners that are up as voters until the target is reached.
async fn promote_voters(log: &TopologyLog, state: &TopologyState) {
    let normal: Vec<HostId> = state
        .nodes
        .iter()
        .filter(|(_, n)| n.state == NodeState::Normal)
        .map(|(h, _)| *h)
        .collect();
    let voters = log.voters();
    let target = target_voters(normal.len());
    if voters.len() >= target {
        return;
    }
    let membership = log.shared.raft.metrics().borrow().membership_config.clone();
    let view = log.shared.view.borrow().clone();
    let promoted: BTreeSet<HostId> = normal
        .into_iter()
        .filter(|h| !voters.contains(h))
        .filter(|h| membership.membership().get_node(h).is_some())
        .filter(|h| {
            view.nodes
                .get(h)
                .is_some_and(|n| n.status != NodeStatus::Down)
        })
        .take(target - voters.len())
        .collect();
    if promoted.is_empty() {
        return;
    }
    match log
        .shared
        .raft
        .change_membership(ChangeMembers::AddVoterIds(promoted.clone()), true)
        .await
    {
        Ok(_) => tracing::info!(?promoted, "topology log voters added"),
        Err(error) => tracing::warn!(%error, "topology log voters not added; retrying"),
    }
}
