//! The covering set of a cluster-wide read: a set of live hosts that together replicate every
//! token range, and the host that answers for each entity of a walk (pure, no I/O).
//!
//! Invariants: a range is covered by a host only if the host is one of its replicas and live;
//! a cover holds the best-ranked host and as few others as a bounded search finds (every other
//! host is one more call per round and one more candidate search), and of one size the
//! best-ranked hosts in preference order (this node first, then the fastest by measured latency, then host id), so the set is stable for the same
//! ring, liveness and ranks and, for one copy, at most `hosts - replication_factor + 1` hosts.
//! A range with too few live replicas is reported, never skipped silently.

use std::collections::BTreeSet;

use crate::ring::{HostId, RING_SIZE, Ring, Token, TokenRange};

/// A covering set, or the ranges it misses.
#[derive(Clone, Debug, PartialEq)]
pub struct Cover {
    /// The chosen hosts, in the order chosen (best first).
    pub hosts: Vec<HostId>,
    /// Ranges with no live replica.
    pub uncovered: Vec<TokenRange>,
    /// Number of ranges of the ring.
    pub ranges: usize,
    /// How many of the chosen hosts replicate a token, on average over the whole token space
    /// (each range weighted by its size): how many chosen hosts hold a given entity. 1 when one
    /// host covers everything; 1.8 for a typical cover of three hosts of a 5-node ring at
    /// replication factor 3 (each of them holds three fifths of the tokens).
    pub copies_per_token: f64,
}

impl Cover {
    /// The `ef` each chosen host searches with when each searches everything it holds for a
    /// query whose single-node search uses `ef`: an entity is searched on
    /// [`Cover::copies_per_token`] hosts on average, each over a smaller graph than one node
    /// holding everything, so `ef` divided by that count keeps the recall of the merged
    /// candidates at one node's (measured: docs/cluster.md "Candidates"). Never below 1.
    pub fn per_host_ef(&self, ef: usize) -> usize {
        let share = ef as f64 / self.copies_per_token.max(1.0);
        (share.ceil() as usize).clamp(1, ef.max(1))
    }

    /// The uncovered ranges for a message: the first eight as `(start, end]`, then `...`.
    pub fn uncovered_named(&self) -> String {
        const SHOWN: usize = 8;
        let mut named: Vec<String> = self
            .uncovered
            .iter()
            .take(SHOWN)
            .map(|r| format!("({}, {}]", r.start, r.end))
            .collect();
        if self.uncovered.len() > SHOWN {
            named.push("...".to_owned());
        }
        named.join(", ")
    }
}

/// Chooses hosts covering every range of `ring` at `replication_factor` `copies` times (by
/// that many distinct replicas: 1 for a read at ONE, a quorum's worth for a scan whose ids must
/// include whatever a QUORUM write acknowledged): `live` says whether a host may be asked,
/// `rank` orders hosts (smaller first). A range with fewer live replicas than `copies` is
/// uncovered.
///
/// The set is the best-ranked host (this node, which costs no call) and as few others as can
/// be found ([`smallest_cover`]): each other host of a cover is one more call per round of a
/// cluster-wide read and one more candidate search, so this node and one other where the token
/// layout allows it cost less than the first useful hosts in rank order. Among covers of one
/// size, the one of best-ranked hosts is taken.
pub fn cover<K: Ord>(
    ring: &Ring,
    replication_factor: usize,
    copies: usize,
    live: impl Fn(HostId) -> bool,
    rank: impl Fn(HostId) -> K,
) -> Cover {
    let ranges = ring.ranges();
    let copies = copies.max(1);
    let replicas: Vec<Vec<HostId>> = ranges
        .iter()
        .map(|range| {
            ring.replicas(range.end, replication_factor)
                .hosts()
                .to_vec()
        })
        .collect();
    let mut candidates: Vec<HostId> = ring.hosts().iter().copied().filter(|h| live(*h)).collect();
    candidates.sort_by_key(|h| (rank(*h), *h));
    let mut hosts = first_useful(&candidates, &replicas, copies);
    let uncovered: Vec<TokenRange> = ranges
        .iter()
        .zip(&replicas)
        .filter(|(_, replicas)| replicas.iter().filter(|h| hosts.contains(h)).count() < copies)
        .map(|(range, _)| *range)
        .collect();
    if uncovered.is_empty()
        && let Some(smaller) = smallest_cover(&candidates, &replicas, copies, hosts.len())
    {
        hosts = smaller;
    }
    let held: u128 = ranges
        .iter()
        .zip(&replicas)
        .map(|(range, replicas)| {
            let chosen = replicas.iter().filter(|h| hosts.contains(h)).count();
            range.span().size() * chosen as u128
        })
        .sum();
    Cover {
        hosts,
        uncovered,
        ranges: ranges.len(),
        copies_per_token: held as f64 / RING_SIZE as f64,
    }
}

/// The hosts of `candidates` (in rank order) kept while each replicates a range not yet held
/// `copies` times: a cover when one exists, at most `hosts - replication_factor + 1` hosts for
/// one copy, and every useful host otherwise.
fn first_useful(candidates: &[HostId], replicas: &[Vec<HostId>], copies: usize) -> Vec<HostId> {
    let mut open: Vec<(&[HostId], usize)> = replicas.iter().map(|r| (&r[..], copies)).collect();
    let mut hosts = Vec::new();
    for host in candidates {
        let mut useful = false;
        for (replicas, needed) in open.iter_mut() {
            if replicas.contains(host) {
                *needed -= 1;
                useful = true;
            }
        }
        if useful {
            hosts.push(*host);
            open.retain(|(_, needed)| *needed > 0);
        }
        if open.is_empty() {
            break;
        }
    }
    hosts
}

/// Most sets of hosts [`smallest_cover`] tries before it keeps the cover it was given: a ring
/// of up to about a dozen hosts is searched whole, a larger one keeps the rank-order cover.
const COVERS_TRIED_AT_MOST: u64 = 4_096;

/// A cover of fewer than `than` hosts of `candidates` (in rank order), `copies` replicas of
/// every range, that includes the best-ranked candidate (this node: it costs no call): the
/// smallest size first, and of one size the first set in rank order. `None` when there is
/// none, or when trying every set of the next size would pass [`COVERS_TRIED_AT_MOST`].
fn smallest_cover(
    candidates: &[HostId],
    replicas: &[Vec<HostId>],
    copies: usize,
    than: usize,
) -> Option<Vec<HostId>> {
    if candidates.len() > 64 {
        return None;
    }
    // Each range as the set of candidates replicating it (one bit each); ranges with the same
    // replicas are one constraint.
    let needs: BTreeSet<u64> = replicas
        .iter()
        .map(|replicas| {
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| replicas.contains(c))
                .fold(0u64, |mask, (bit, _)| mask | 1 << bit)
        })
        .collect();
    let copies = u32::try_from(copies).ok()?;
    // The best-ranked host (this node, unless a routing key ranks) is in every set tried, the
    // others chosen among the rest.
    let others = candidates.len().checked_sub(1)?;
    let mut tried = 0u64;
    for size in 1..than {
        tried = tried.saturating_add(combinations(others, size - 1));
        if tried > COVERS_TRIED_AT_MOST {
            return None;
        }
        let mut chosen: Vec<usize> = (1..size).collect();
        loop {
            let mask = chosen.iter().fold(1u64, |mask, bit| mask | 1 << bit);
            if needs
                .iter()
                .all(|need| (need & mask).count_ones() >= copies)
            {
                let hosts = std::iter::once(0).chain(chosen.iter().copied());
                return Some(hosts.map(|i| candidates[i]).collect());
            }
            if !next_combination(&mut chosen, candidates.len()) {
                break;
            }
        }
    }
    None
}

/// `n` choose `k`, saturating.
fn combinations(n: usize, k: usize) -> u64 {
    (0..k).fold(1u64, |acc, i| {
        acc.saturating_mul((n - i) as u64) / (i as u64 + 1)
    })
}

/// Advances `chosen` (increasing indexes below `n`) to the next set of its size in
/// lexicographic order; false after the last.
fn next_combination(chosen: &mut [usize], n: usize) -> bool {
    let k = chosen.len();
    for i in (0..k).rev() {
        if chosen[i] < n - k + i {
            chosen[i] += 1;
            for j in i + 1..k {
                chosen[j] = chosen[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// The host that answers for the partition at token `t`: a replica already in `preferred` (the
/// covering set) if one is live, else the best live replica by `rank`; `None` when no replica
/// is live.
pub fn owner_of<K: Ord>(
    ring: &Ring,
    replication_factor: usize,
    t: Token,
    preferred: &BTreeSet<HostId>,
    live: impl Fn(HostId) -> bool,
    rank: impl Fn(HostId) -> K,
) -> Option<HostId> {
    let replicas = ring.replicas(t, replication_factor);
    let live_replicas = replicas.hosts().iter().copied().filter(|h| live(*h));
    live_replicas.min_by_key(|h| (!preferred.contains(h), rank(*h), *h))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn host(n: u128) -> HostId {
        HostId::from_u128(n)
    }

    /// Five hosts with four vnodes each, evenly interleaved.
    fn ring_of_five() -> Ring {
        Ring::new(
            1,
            (1..=5).map(|h| {
                let tokens = (0..4u64).map(|v| v * 5_000 + (h as u64) * 1_000).collect();
                (host(h), tokens)
            }),
        )
    }

    fn covers_every_range(ring: &Ring, rf: usize, hosts: &[HostId]) -> bool {
        ring.ranges().iter().all(|range| {
            ring.replicas(range.end, rf)
                .hosts()
                .iter()
                .any(|h| hosts.contains(h))
        })
    }

    #[test]
    fn a_cover_replicates_every_range_and_prefers_the_best_ranked_host() {
        let ring = ring_of_five();
        let cover = cover(&ring, 3, 1, |_| true, |h| h != host(4));
        assert!(cover.uncovered.is_empty());
        assert_eq!(cover.hosts[0], host(4), "the preferred host comes first");
        assert!(covers_every_range(&ring, 3, &cover.hosts));
        assert!(cover.hosts.len() <= 3, "{:?}", cover.hosts);
    }

    #[test]
    fn dead_hosts_are_avoided_and_a_range_without_live_replica_is_reported() {
        let ring = ring_of_five();
        let alive = |h: HostId| h != host(2) && h != host(3);
        let cover3 = cover(&ring, 3, 1, alive, |h| h);
        assert!(cover3.uncovered.is_empty());
        assert!(!cover3.hosts.contains(&host(2)) && !cover3.hosts.contains(&host(3)));
        assert!(covers_every_range(&ring, 3, &cover3.hosts));
        let cover1 = cover(&ring, 1, 1, alive, |h| h);
        assert_eq!(cover1.uncovered.len(), 8, "RF 1: the dead hosts' 8 ranges");
        assert!(
            cover1
                .uncovered
                .iter()
                .all(|r| r.owner == host(2) || r.owner == host(3))
        );
    }

    #[test]
    fn a_cover_of_two_copies_has_two_live_replicas_of_every_range() {
        let ring = ring_of_five();
        let twice = cover(&ring, 3, 2, |_| true, |h| h);
        assert!(twice.uncovered.is_empty());
        for range in ring.ranges() {
            let chosen = ring
                .replicas(range.end, 3)
                .hosts()
                .iter()
                .filter(|h| twice.hosts.contains(h))
                .count();
            assert!(chosen >= 2, "{range:?}: {chosen} of {:?}", twice.hosts);
        }
        // With two hosts down, some ranges keep a single live replica: uncovered at 2 copies.
        let alive = |h: HostId| h != host(2) && h != host(3);
        let short = cover(&ring, 3, 2, alive, |h| h);
        let expected: Vec<TokenRange> = ring
            .ranges()
            .into_iter()
            .filter(|r| {
                ring.replicas(r.end, 3)
                    .hosts()
                    .iter()
                    .filter(|h| alive(**h))
                    .count()
                    < 2
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(short.uncovered, expected);
    }

    #[test]
    fn each_host_searches_with_the_ef_divided_by_the_hosts_holding_a_token() {
        // Five hosts, four vnodes each, spread evenly over the token space: every host
        // replicates three fifths of it at replication factor 3, and two hosts two apart on the
        // ring cover it.
        let step = u64::MAX / 20;
        let ring = Ring::new(
            1,
            (1..=5u64).map(|h| {
                let tokens = (0..4u64).map(|v| (v * 5 + h) * step).collect();
                (host(u128::from(h)), tokens)
            }),
        );
        let two = cover(&ring, 3, 1, |_| true, |h| h);
        assert!(two.uncovered.is_empty());
        assert_eq!(two.hosts, [host(1), host(3)]);
        assert!(
            (two.copies_per_token - 1.2).abs() < 1e-6,
            "two hosts hold {} copies of a token, expected 1.2",
            two.copies_per_token
        );
        assert_eq!(two.per_host_ef(64), 54, "64 / 1.2, rounded up");
        assert_eq!(two.per_host_ef(1), 1);
        // Three hosts where the layout needs three: 0.6 of the tokens each.
        let three = Cover {
            copies_per_token: 1.8,
            ..two.clone()
        };
        assert_eq!(three.per_host_ef(64), 36, "64 / 1.8, rounded up");
        // One host holding everything searches with the single-node ef.
        let one = cover(&ring, 5, 1, |_| true, |h| h);
        assert_eq!(one.hosts.len(), 1);
        assert!((one.copies_per_token - 1.0).abs() < 1e-9);
        assert_eq!(one.per_host_ef(64), 64);
    }

    /// Whether `first` and some `size` hosts of `others` hold `copies` replicas of every range.
    fn some_cover_of(
        ring: &Ring,
        (rf, copies): (usize, usize),
        first: HostId,
        others: &[HostId],
        size: usize,
    ) -> bool {
        let mut chosen: Vec<usize> = (0..size).collect();
        loop {
            let set: Vec<HostId> = std::iter::once(first)
                .chain(chosen.iter().map(|i| others[*i]))
                .collect();
            let covered = ring.ranges().iter().all(|range| {
                let replicas = ring.replicas(range.end, rf);
                replicas.hosts().iter().filter(|h| set.contains(h)).count() >= copies
            });
            if covered {
                return true;
            }
            if !next_combination(&mut chosen, others.len()) {
                return false;
            }
        }
    }

    #[test]
    fn a_cover_is_the_smallest_the_layout_allows_of_the_best_ranked_hosts() {
        // One token each: the ranges' replicas are three hosts in a row, so this node and the
        // host two along cover everything, where the first useful hosts in rank order are three.
        let ring = Ring::new(
            1,
            (1..=5u64).map(|h| (host(u128::from(h)), vec![h * 1_000])),
        );
        let chosen = cover(&ring, 3, 1, |_| true, |h| h);
        assert_eq!(chosen.hosts, [host(1), host(3)]);
        assert!(chosen.uncovered.is_empty());
        // Two copies of every range: two hosts left out would both sit in some range's three,
        // so four hosts; with host 2 dead, the other four.
        let twice = cover(&ring, 3, 2, |_| true, |h| h);
        assert_eq!(twice.hosts, [host(1), host(2), host(3), host(4)]);
        let twice = cover(&ring, 3, 2, |h| h != host(2), |h| h);
        assert!(twice.uncovered.is_empty());
        assert_eq!(twice.hosts, [host(1), host(3), host(4), host(5)]);
        // Random layouts of 3 to 9 hosts: a valid cover with the best-ranked host, and none
        // smaller with it exists.
        let mut rng = StdRng::seed_from_u64(32);
        for _ in 0..300 {
            let hosts = rng.random_range(3..=9u128);
            let tokens = rng.random_range(1..=8usize);
            let rf = rng.random_range(1..=3usize);
            let copies = rng.random_range(1..=rf);
            let ring = Ring::new(
                1,
                (1..=hosts).map(|h| (host(h), (0..tokens).map(|_| rng.random()).collect())),
            );
            let all: Vec<HostId> = ring.hosts().iter().copied().collect();
            let chosen = cover(&ring, rf, copies, |_| true, |h| h);
            assert!(chosen.uncovered.is_empty());
            assert_eq!(
                chosen.hosts[0], all[0],
                "the best-ranked host is in the cover"
            );
            let others = chosen.hosts.len() - 1;
            let shape = (rf, copies);
            assert!(some_cover_of(
                &ring,
                shape,
                all[0],
                &chosen.hosts[1..],
                others
            ));
            assert!(
                others == 0 || !some_cover_of(&ring, shape, all[0], &all[1..], others - 1),
                "{} hosts chosen where fewer with the best-ranked cover: {ring:?}",
                chosen.hosts.len()
            );
        }
    }

    #[test]
    fn a_ring_too_large_to_search_whole_keeps_the_rank_order_cover() {
        let mut rng = StdRng::seed_from_u64(7);
        let ring = Ring::new(
            1,
            (1..=40u128).map(|h| (host(h), (0..16).map(|_| rng.random()).collect())),
        );
        let chosen = cover(&ring, 3, 1, |_| true, |h| h);
        assert!(chosen.uncovered.is_empty());
        assert!(covers_every_range(&ring, 3, &chosen.hosts));
        let candidates: Vec<HostId> = ring.hosts().iter().copied().collect();
        let replicas: Vec<Vec<HostId>> = ring
            .ranges()
            .iter()
            .map(|r| ring.replicas(r.end, 3).hosts().to_vec())
            .collect();
        assert_eq!(chosen.hosts, first_useful(&candidates, &replicas, 1));
    }

    #[test]
    fn the_owner_of_a_partition_is_a_live_replica_in_the_cover_first() {
        let ring = ring_of_five();
        let t: Token = 2_500;
        let replicas = ring.replicas(t, 3).hosts().to_vec();
        let preferred: BTreeSet<HostId> = [replicas[2]].into();
        let owner = owner_of(&ring, 3, t, &preferred, |_| true, |h| h);
        assert_eq!(owner, Some(replicas[2]));
        let none = owner_of(&ring, 3, t, &preferred, |h| !replicas.contains(&h), |h| h);
        assert_eq!(none, None);
    }
}
