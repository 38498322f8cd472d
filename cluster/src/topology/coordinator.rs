//! The topology coordinator (DESIGN.md §6 rules 3 and 5): the one driver of movements. It runs
//! on every node and acts only while that node leads the log, so a new leader picks a movement
//! up where the log says it stands.
//!
//! Every movement goes: `stream` (write both, read old) → barrier → every node that takes
//! ranges streams them → `read_new` (write both, read new) → barrier → finish (a bootstrapped
//! node `normal`, a leaving one `left`). A barrier waits until every live node has applied the
//! version of the step before, in its log and in the view its coordinator plans by, raised its
//! fence and drained the writes it admitted on older versions (a call, not a sleep; module
//! [`super::fence`]); a node that is down is skipped (it catches up from the log before it
//! serves again). A movement is rolled back when the node joining or
//! decommissioned is down, or its steps keep failing, for [`ABORT_AFTER`]. Between movements it
//! keeps the voters at 1, 3 or 5 of the `normal` nodes. On every node it ends the cleanups
//! nobody runs any more ([`TopologyLog::end_abandoned_cleanups`]).
//!
//! Must never: commit a step before the barrier of the step before, or run two movements.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::TopologyLog;
use super::state::{Command, Movement, MovementKind, MovementStep, NodeState, TopologyState};
use super::streaming::gainers;
use crate::membership::NodeStatus;
use crate::ring::HostId;

/// How long one node may take to answer a barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to stream its ranges of a movement in one call (the call is
/// resumed from its recorded positions when asked again).
const STREAM_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// A movement that cannot progress this long is rolled back.
pub const ABORT_AFTER: Duration = Duration::from_secs(60);

pub(super) fn spawn(log: TopologyLog) {
    tokio::spawn(async move {
        let mut changes = log.subscribe();
        // Since when the running movement (by id) cannot progress, and why.
        let mut stuck: Option<(u64, Instant, String)> = None;
        loop {
            let poll = log.shared.options.poll;
            if let Ok(Err(_)) = tokio::time::timeout(poll, changes.changed()).await {
                return; // the log stopped
            }
            let leads = log.leader().await == Some(log.host());
            let state = log.state();
            if !state.cleanups.is_empty() {
                log.end_abandoned_cleanups(&state, leads).await;
            }
            if !leads {
                continue;
            }
            let Some(movement) = state.movement.clone() else {
                stuck = None;
                keep_voters(&log, &state).await;
                continue;
            };
            let outcome = if subject_down(&log, &movement) {
                Err(format!("{} is down", movement.host))
            } else {
                step(&log, &state, &movement).await
            };
            match outcome {
                Ok(()) => stuck = None,
                Err(reason) => {
                    let since = match &stuck {
                        Some((id, since, _)) if *id == movement.id => *since,
                        _ => Instant::now(),
                    };
                    tracing::warn!(movement = %movement, %reason, "a movement step did not complete; retrying");
                    if since.elapsed() >= ABORT_AFTER {
                        abort(&log, &movement, &reason).await;
                        stuck = None;
                    } else {
                        stuck = Some((movement.id, since, reason));
                    }
                }
            }
        }
    });
}

/// Whether the node a movement is about (joining or decommissioned) is down; a removed node is
/// down by definition.
fn subject_down(log: &TopologyLog, movement: &Movement) -> bool {
    if movement.kind == MovementKind::RemoveNode {
        return false;
    }
    log.shared
        .view
        .borrow()
        .nodes
        .get(&movement.host)
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
    let next = match movement.step {
        MovementStep::Stream => {
            stream(log, state, movement).await?;
            Command::Advance {
                movement: movement.id,
                step: MovementStep::ReadNew,
            }
        }
        MovementStep::ReadNew => Command::Finish {
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

/// Has every node that takes ranges in `movement` stream them (this one directly).
async fn stream(
    log: &TopologyLog,
    state: &TopologyState,
    movement: &Movement,
) -> Result<(), String> {
    let gainers = gainers(state, log.shared.options.replication_factor);
    let view = log.shared.view.borrow().clone();
    let calls = gainers.iter().map(|host| {
        let addr = view.peer_address(*host);
        async move {
            let run = match addr {
                _ if *host == log.host() => log.stream_movement(movement.id).await,
                Ok(addr) => {
                    log.shared
                        .clients
                        .stream_movement(*host, addr, movement.id, state.version, STREAM_TIMEOUT)
                        .await
                }
                Err(unreachable) => Err(unreachable),
            };
            run.map_err(|e| format!("streaming on {host}: {e}"))
        }
    });
    let runs = futures_util::future::join_all(calls).await;
    let (mut partitions, mut bytes) = (0, 0);
    for run in runs {
        let run = run?;
        partitions += run.partitions;
        bytes += run.bytes;
    }
    tracing::info!(
        movement = %movement,
        nodes = gainers.len(),
        partitions,
        bytes,
        "the movement's ranges are streamed"
    );
    Ok(())
}

/// Waits until every live node of `state` has applied its version.
async fn barrier(log: &TopologyLog, state: &TopologyState) -> Result<(), String> {
    let calls = log
        .live_peers(state)
        .into_iter()
        .map(|(host, addr)| async move {
            let addr = addr.map_err(|e| e.to_string())?;
            let applied = log
                .shared
                .clients
                .barrier(host, addr, state.version, 0, BARRIER_TIMEOUT)
                .await
                .map_err(|e| format!("barrier on {host}: {e}"))?;
            if applied < state.version {
                return Err(format!(
                    "barrier on {host}: applied {applied}, not {}",
                    state.version
                ));
            }
            Ok(())
        });
    for outcome in futures_util::future::join_all(calls).await {
        outcome?;
    }
    // The coordinator applied it first (its view may still be catching up); it takes nothing
    // older either, and waits for the older writes it admitted.
    let applied = log.applied(state.version, BARRIER_TIMEOUT).await;
    if applied < state.version {
        return Err(format!(
            "barrier on this node: applied {applied}, not {}",
            state.version
        ));
    }
    log.shared.fence.raise(state.version);
    log.shared
        .fence
        .drained(state.version, BARRIER_TIMEOUT)
        .await
        .map_err(|running| {
            format!(
                "barrier on this node: {running} writes planned on a version older than {} \
                 are still running",
                state.version
            )
        })
}

/// The voters a ring of `normal` nodes keeps: 1 below 3 nodes, 3 below 5, then 5.
fn target_voters(normal: usize) -> usize {
    match normal {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    }
}

/// Keeps the log's voters among the ring's hosts: drops the voters (and learners) that `left`
/// the ring or are no longer in it, whose votes would otherwise count against every quorum
/// (once each has the log up to the entry saying it left, or is down), then adds up `normal`
/// learners that are up as voters until the target is reached.
async fn keep_voters(log: &TopologyLog, state: &TopologyState) {
    let metrics = log.shared.raft.metrics().borrow().clone();
    let view = log.shared.view.borrow().clone();
    // A host that left learns it from the log: it stays a member until it has every entry
    // applied here (the one saying it left among them), or is down. Removed earlier, it would
    // never get that entry, and its own decommission would wait for it forever.
    let applied = metrics.last_applied.map(|id| id.index);
    let informed = |host: &HostId| {
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(host).copied().flatten())
            .map(|id| id.index);
        matched >= applied
            || view
                .nodes
                .get(host)
                .is_none_or(|n| n.status == NodeStatus::Down)
    };
    let gone: BTreeSet<HostId> = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(host, _)| *host)
        .filter(|host| {
            state
                .nodes
                .get(host)
                .is_none_or(|n| n.state == NodeState::Left)
        })
        .filter(|host| *host != log.host())
        .filter(|host| informed(host))
        .collect();
    if !gone.is_empty() {
        match log
            .shared
            .raft
            .change_membership(ChangeMembers::RemoveNodes(gone.clone()), false)
            .await
        {
            Ok(_) => tracing::info!(?gone, "hosts that left removed from the topology log"),
            Err(error) => {
                // RemoveNodes refuses voters: make them learners first, then remove them.
                tracing::debug!(%error, "removing hosts that left: voters first");
                match log
                    .shared
                    .raft
                    .change_membership(ChangeMembers::RemoveVoters(gone.clone()), false)
                    .await
                {
                    Ok(_) => tracing::info!(?gone, "topology log voters that left removed"),
                    Err(error) => {
                        tracing::warn!(%error, "topology log voters that left not removed; retrying")
                    }
                }
            }
        }
        return;
    }
    promote_voters(log, state).await;
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
