//! What a cluster-wide read reports about itself: which token ranges answered (its coverage)
//! and where its time went (rounds, and per node the calls, latency, rows and bytes).
//!
//! Invariants: `ranges_answered <= ranges_total`; `missing` is empty exactly when the answer
//! covers every range and every walked entity had a live replica.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::peer_client::traffic::Traffic;

/// The token ranges a read heard from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Ranges of the ring.
    pub ranges_total: usize,
    /// Ranges a live replica answered for.
    pub ranges_answered: usize,
    /// The nodes asked (by name), in name order.
    pub nodes_asked: Vec<String>,
    /// What is missing and why.
    pub missing: Vec<String>,
}

/// The calls a read sent to one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCalls {
    /// The node's name.
    pub node: String,
    /// Calls sent.
    pub calls: usize,
    /// Their summed latency.
    pub latency: Duration,
    /// Items they returned.
    pub rows: usize,
    /// Protobuf bytes of their requests and replies (0 for this node's own calls, which do not
    /// cross the network).
    pub traffic: Traffic,
}

/// A read's coverage and profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Which ranges answered.
    pub coverage: Coverage,
    /// Rounds of calls (each a set of concurrent calls).
    pub rounds: usize,
    /// Per node asked, in name order.
    pub nodes: Vec<NodeCalls>,
}

/// A report being filled by one read.
#[derive(Debug, Default)]
pub(super) struct ReportBuilder {
    ranges_total: usize,
    ranges_uncovered: usize,
    missing: Vec<String>,
    rounds: usize,
    nodes: BTreeMap<String, NodeCalls>,
}

impl ReportBuilder {
    /// The latest covering set computed: `total` ranges, `uncovered` of them without a live
    /// replica, described by `missing`.
    pub(super) fn ranges(&mut self, total: usize, uncovered: usize, missing: Vec<String>) {
        self.ranges_total = total;
        self.ranges_uncovered = uncovered;
        for reason in missing {
            self.miss(reason);
        }
    }

    /// Something the answer lacks.
    pub(super) fn miss(&mut self, reason: String) {
        if !self.missing.contains(&reason) {
            self.missing.push(reason);
        }
    }

    pub(super) fn round(&mut self) {
        self.rounds += 1;
    }

    pub(super) fn call(&mut self, node: String, latency: Duration, rows: usize, traffic: Traffic) {
        let calls = self.nodes.entry(node.clone()).or_insert_with(|| NodeCalls {
            node,
            ..NodeCalls::default()
        });
        calls.calls += 1;
        calls.latency += latency;
        calls.rows += rows;
        calls.traffic.sent += traffic.sent;
        calls.traffic.received += traffic.received;
    }

    pub(super) fn finish(self) -> ReadReport {
        ReadReport {
            coverage: Coverage {
                ranges_total: self.ranges_total,
                ranges_answered: self.ranges_total - self.ranges_uncovered,
                nodes_asked: self.nodes.keys().cloned().collect(),
                missing: self.missing,
            },
            rounds: self.rounds,
            nodes: self.nodes.into_values().collect(),
        }
    }
}
