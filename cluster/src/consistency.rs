//! Consistency levels (DESIGN.md §6): how many replicas of a partition must acknowledge a write
//! or answer a read. Pure.
//!
//! Invariant: for `n >= 1` replicas, `1 <= required(n) <= n`, and QUORUM is a strict majority,
//! so a QUORUM write and a QUORUM read of the same replica set always share a replica.

use std::fmt;

/// A per-request consistency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// A strict majority of the replicas.
    Quorum,
    /// Every replica.
    All,
}

impl ConsistencyLevel {
    /// Replicas that must answer out of `replicas` (0 only when there are none).
    pub fn required(self, replicas: usize) -> usize {
        match self {
            ConsistencyLevel::One => replicas.min(1),
            ConsistencyLevel::Quorum => replicas / 2 + usize::from(replicas > 0),
            ConsistencyLevel::All => replicas,
        }
    }

    /// `ONE`, `QUORUM` or `ALL`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::One => "ONE",
            ConsistencyLevel::Quorum => "QUORUM",
            ConsistencyLevel::All => "ALL",
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ConsistencyLevel::{All, One, Quorum};

    #[test]
    fn levels_count_replicas() {
        let table = [
            (1, [1, 1, 1]),
            (2, [1, 2, 2]),
            (3, [1, 2, 3]),
            (4, [1, 3, 4]),
            (5, [1, 3, 5]),
        ];
        for (n, [one, quorum, all]) in table {
            assert_eq!(
                [One.required(n), Quorum.required(n), All.required(n)],
                [one, quorum, all],
                "{n} replicas"
            );
        }
        assert_eq!(Quorum.required(0), 0);
    }

    #[test]
    fn two_quorums_always_overlap() {
        for n in 1..=16 {
            assert!(2 * Quorum.required(n) > n, "{n} replicas");
        }
    }
}
