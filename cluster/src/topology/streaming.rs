//! A gaining node's side of a movement (DESIGN.md §6 rule 6): stream every range it takes.
//! In a bootstrap (the joining node) and a decommission (the leaving node's ranges' new owners)
//! each range streams from the replica it displaces there (the one that leaves that range's
//! replica set), or, where the ring is smaller than the replication factor and nobody leaves,
//! from one of the range's current replicas. In a removenode or a replace the displaced replica
//! is dead, so each range streams from every surviving replica (their union holds whatever a QUORUM
//! acknowledged, see [`removal_gaps`]). Runs as a persisted stream session, resumed when asked
//! again.
//!
//! Invariants: streams only for the movement the log says is running, at its `stream` step;
//! writes reach this node through the normal write path meanwhile (write both), so what the
//! stream misses arrives anyway. Must never: stream from a replica that stays in the range's set
//! when a live displaced one exists (it may lack what a QUORUM acknowledged elsewhere).

use std::collections::BTreeMap;

use super::TopologyLog;
use super::state::{MovementKind, MovementStep, TopologyState};
use crate::ClusterError;
use crate::ring::{HostId, TokenSpan};
use crate::stream::StreamRun;
use crate::stream::session::{StreamGroup, StreamPurpose};

impl TopologyLog {
    /// Streams the ranges this node takes in `movement`; fails when that movement is not
    /// running at its stream step, when the store is not open yet, or when a range could not be
    /// streamed (its position is kept for the next call).
    pub async fn stream_movement(&self, movement: u64) -> Result<StreamRun, ClusterError> {
        let state = self.state();
        let Some(running) = state
            .movement
            .as_ref()
            .filter(|m| m.id == movement && m.step == MovementStep::Stream)
        else {
            return Err(ClusterError::InvalidRange(format!(
                "movement {movement} is not running at its stream step (topology version {})",
                state.version
            )));
        };
        let stream = self.shared.stream.get().ok_or_else(|| {
            ClusterError::Unavailable("the store is still opening; retry shortly".to_owned())
        })?;
        let purpose = match running.kind {
            MovementKind::Bootstrap => StreamPurpose::Bootstrap,
            MovementKind::Decommission => StreamPurpose::Decommission,
            MovementKind::RemoveNode => StreamPurpose::RemoveNode,
            MovementKind::Replace => StreamPurpose::Replace,
        };
        let groups = plan(&state, self.host(), self.shared.options.replication_factor);
        // A chunk is asked for only while the movement still runs at its stream step: once it
        // was rolled back (or moved on), streaming stops.
        let wanted = || {
            let now = self.state();
            match now.movement.as_ref() {
                Some(m) if m.id == movement && m.step == MovementStep::Stream => Ok(()),
                _ => Err(format!(
                    "movement {movement} is no longer at its stream step (topology version {})",
                    now.version
                )),
            }
        };
        let planned = stream
            .run_plan(purpose, None, Some(movement), groups, &wanted)
            .await?;
        if !planned.run.unfinished.is_empty() {
            return Err(ClusterError::Unavailable(format!(
                "{} streaming unfinished: {}",
                running.kind.as_str(),
                planned.run.unfinished.join("; ")
            )));
        }
        Ok(planned.run)
    }
}

/// The hosts that take ranges in the running movement of `state` (each streams them in).
pub fn gainers(state: &TopologyState, replication_factor: usize) -> Vec<HostId> {
    let Some(after) = state.ring_after() else {
        return Vec::new();
    };
    after
        .hosts()
        .iter()
        .copied()
        .filter(|host| !plan(state, *host, replication_factor).is_empty())
        .collect()
}

/// The ranges `host` takes in the running movement of `state`, grouped by where they stream
/// from (in a removenode one group per surviving replica: their union is streamed).
pub fn plan(state: &TopologyState, host: HostId, replication_factor: usize) -> Vec<StreamGroup> {
    let (Some(after), Some(movement)) = (state.ring_after(), state.movement.as_ref()) else {
        return Vec::new();
    };
    let before = state.ring_before();
    let mut groups: BTreeMap<Vec<HostId>, Vec<TokenSpan>> = BTreeMap::new();
    for span in before.spans_with(&after) {
        let new = after.replicas(span.end, replication_factor);
        let old = before.replicas(span.end, replication_factor);
        if !new.contains(host) || old.contains(host) {
            continue;
        }
        let sources: Vec<Vec<HostId>> = if let Some(departed) = movement.departed() {
            old.hosts()
                .iter()
                .filter(|h| **h != departed)
                .map(|h| vec![*h])
                .collect()
        } else {
            let displaced: Vec<HostId> = old
                .hosts()
                .iter()
                .copied()
                .filter(|h| !new.contains(*h))
                .collect();
            let mut any = if displaced.is_empty() {
                old.hosts().to_vec()
            } else {
                displaced
            };
            any.sort();
            vec![any]
        };
        for group in sources.into_iter().filter(|s| !s.is_empty()) {
            groups.entry(group).or_default().push(span);
        }
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

/// Why removing `removed` from `state`'s ring could lose what a QUORUM acknowledged: the ranges
/// it replicates whose live surviving replicas (`live`) are too few. A QUORUM write reached at
/// least `q` of a range's replicas, so at least `q - 1` of the survivors; reading `s - q + 2` of
/// the `s` survivors is sure to meet one of them.
pub fn removal_gaps(
    state: &TopologyState,
    removed: HostId,
    replication_factor: usize,
    live: impl Fn(HostId) -> bool,
) -> Vec<String> {
    let before = state.ring_before();
    let mut gaps = Vec::new();
    for range in before.ranges() {
        let replicas = before.replicas(range.end, replication_factor);
        if !replicas.contains(removed) {
            continue;
        }
        let survivors: Vec<HostId> = replicas
            .hosts()
            .iter()
            .copied()
            .filter(|h| *h != removed)
            .collect();
        let quorum = replicas.len() / 2 + 1;
        let needed = (survivors.len() + 2).saturating_sub(quorum).max(1);
        let up = survivors.iter().filter(|h| live(**h)).count();
        if up < needed {
            gaps.push(format!(
                "({}, {}]: {up} of its surviving replicas up, {needed} needed",
                range.start, range.end
            ));
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::topology::state::{Command, JoinRequest, NodeState, TopologyNode};

    fn host(n: u128) -> HostId {
        HostId::from_u128(n)
    }

    fn ring_of(tokens: &[(u128, Vec<u64>)]) -> TopologyState {
        let mut state = TopologyState::default();
        let nodes: BTreeMap<HostId, TopologyNode> = tokens
            .iter()
            .map(|(h, t)| {
                let node = TopologyNode {
                    name: String::new(),
                    rpc_addr: String::new(),
                    tokens: t.clone(),
                    state: NodeState::Normal,
                };
                (host(*h), node)
            })
            .collect();
        state
            .apply(&Command::Form {
                cluster_name: "c".to_owned(),
                nodes,
            })
            .expect("formed");
        state
    }

    fn join(state: &mut TopologyState, h: u128, tokens: Vec<u64>) {
        state
            .apply(&Command::Join(JoinRequest {
                cluster_name: "c".to_owned(),
                protocol_version: crate::PROTOCOL_VERSION,
                host: host(h),
                name: String::new(),
                rpc_addr: String::new(),
                tokens,
                adopt: false,
                replaces: None,
            }))
            .expect("joined");
    }

    #[test]
    fn each_range_streams_from_the_replica_it_displaces() {
        // Three nodes, RF 2; a fourth at 150. (100, 150] was on {2, 3} and goes to {4, 2}:
        // 3 is displaced. (300, 100] was on {1, 2} and goes to {1, 4}: 2 is displaced.
        let mut state = ring_of(&[(1, vec![100]), (2, vec![200]), (3, vec![300])]);
        join(&mut state, 4, vec![150]);
        let groups = plan(&state, host(4), 2);
        let sources: Vec<Vec<HostId>> = groups.iter().map(|g| g.sources.clone()).collect();
        assert_eq!(sources, vec![vec![host(2)], vec![host(3)]]);
        for group in &groups {
            assert!(!group.sources.contains(&host(4)), "never from itself");
        }
    }

    #[test]
    fn a_removal_streams_from_every_survivor_and_names_ranges_without_enough_of_them() {
        let mut state = ring_of(&[
            (1, vec![100]),
            (2, vec![200]),
            (3, vec![300]),
            (4, vec![400]),
        ]);
        let leave = Command::Leave {
            host: host(4),
            kind: MovementKind::RemoveNode,
            replication_factor: 3,
        };
        let gaps = removal_gaps(&state, host(4), 3, |_| true);
        assert!(gaps.is_empty(), "{gaps:?}");
        let gaps = removal_gaps(&state, host(4), 3, |h| h != host(1));
        assert!(
            !gaps.is_empty(),
            "a second replica down leaves ranges short"
        );
        state.apply(&leave).expect("a removal starts");
        // (300, 400] was on {4, 1, 2} and goes to {1, 2, 3}: 3 takes it from 1 and from 2.
        let groups = plan(&state, host(3), 3);
        let sources: Vec<Vec<HostId>> = groups.iter().map(|g| g.sources.clone()).collect();
        assert_eq!(sources, vec![vec![host(1)], vec![host(2)]]);
        assert_eq!(gainers(&state, 3), vec![host(1), host(2), host(3)]);
    }

    #[test]
    fn a_ring_smaller_than_the_factor_streams_from_every_old_replica() {
        let mut state = ring_of(&[(1, vec![100])]);
        join(&mut state, 2, vec![200]);
        let groups = plan(&state, host(2), 3);
        assert!(!groups.is_empty());
        for group in groups {
            assert_eq!(group.sources, vec![host(1)]);
        }
    }
}
