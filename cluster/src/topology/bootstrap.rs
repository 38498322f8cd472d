//! A joining node's side of a bootstrap (DESIGN.md §6 rule 6): stream every range it takes
//! from the replica it displaces there (the one that leaves that range's replica set), or, where
//! the ring is smaller than the replication factor and nobody leaves, from the range's current
//! replicas. Runs as a persisted stream session (purpose `bootstrap`), resumed when asked again.
//!
//! Invariants: streams only for the movement the log says is running, for this node, at its
//! `stream` step; writes reach this node through the normal write path meanwhile (write both),
//! so what the stream misses arrives anyway. Must never: stream from a replica that stays in the
//! range's set when a displaced one exists (it may lack what a QUORUM acknowledged elsewhere).

use std::collections::BTreeMap;

use super::TopologyLog;
use super::state::{MovementKind, MovementStep, TopologyState};
use crate::ClusterError;
use crate::ring::{HostId, TokenSpan};
use crate::stream::StreamRun;
use crate::stream::session::{StreamGroup, StreamPurpose};

impl TopologyLog {
    /// Streams this node's ranges of bootstrap `movement`; fails when that movement is not this
    /// node's running stream step, when the store is not open yet, or when a range could not be
    /// streamed (its position is kept for the next call).
    pub async fn bootstrap(&self, movement: u64) -> Result<StreamRun, ClusterError> {
        let state = self.state();
        let running = state.movement.as_ref().filter(|m| {
            m.id == movement
                && m.host == self.host()
                && m.kind == MovementKind::Bootstrap
                && m.step == MovementStep::Stream
        });
        if running.is_none() {
            return Err(ClusterError::InvalidRange(format!(
                "movement {movement} is not this node's bootstrap at its stream step (version {})",
                state.version
            )));
        }
        let stream = self.shared.stream.get().ok_or_else(|| {
            ClusterError::Unavailable("the store is still opening; retry shortly".to_owned())
        })?;
        let groups = plan(&state, self.host(), self.shared.options.replication_factor);
        let planned = stream
            .run_plan(StreamPurpose::Bootstrap, None, groups)
            .await?;
        if !planned.run.unfinished.is_empty() {
            return Err(ClusterError::Unavailable(format!(
                "bootstrap streaming unfinished: {}",
                planned.run.unfinished.join("; ")
            )));
        }
        Ok(planned.run)
    }
}

/// The ranges `host` takes in the running movement of `state`, grouped by where they stream
/// from.
pub fn plan(state: &TopologyState, host: HostId, replication_factor: usize) -> Vec<StreamGroup> {
    let Some(pending) = state.pending_ring() else {
        return Vec::new();
    };
    let read = state.read_ring();
    let mut groups: BTreeMap<Vec<HostId>, Vec<TokenSpan>> = BTreeMap::new();
    for (range, new) in pending.ranges_replicated_by(host, replication_factor) {
        let old = read.replicas(range.end, replication_factor);
        if old.contains(host) {
            continue;
        }
        let displaced: Vec<HostId> = old
            .hosts()
            .iter()
            .copied()
            .filter(|h| !new.contains(*h))
            .collect();
        let mut sources = if displaced.is_empty() {
            old.hosts().to_vec()
        } else {
            displaced
        };
        sources.sort();
        if sources.is_empty() {
            continue;
        }
        groups.entry(sources).or_default().push(range.span());
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
