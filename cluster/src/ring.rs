//! The token ring: host ids, vnode tokens, token ranges, the replica walk and ownership.
//!
//! Owns the pure arithmetic of consistent hashing (DESIGN.md §6). A [`Ring`] is an immutable
//! value with a version: whoever learns new membership builds a new ring and swaps it in whole;
//! nothing mutates a ring in place. A partition key `(tenant, entity_id)` hashes to a [`Token`]
//! ([`token`]); the token belongs to the range `(previous ring token, ring token]` of the first
//! ring token at or after it, clockwise, wrapping past `u64::MAX` to the smallest token.
//!
//! Invariants: ring tokens are unique (a token claimed by two hosts goes to the smaller host id,
//! deterministically, so every node builds the same ring from the same members); a
//! [`ReplicaSet`] never names a host twice and holds `min(replication_factor, hosts)` hosts.
//!
//! Never does I/O, never reads a clock; randomness comes only from the caller's generator.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::ClusterError;

/// A position on the ring: `xxh3_64` of a partition key, or a vnode's token.
pub type Token = u64;

/// The ring token of a partition key `(tenant, entity_id)`: `xxh3_64` over `tenant \0 entity_id`.
pub fn token(tenant: &str, entity_id: &str) -> Token {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0]);
    h.update(entity_id.as_bytes());
    h.digest()
}

/// The number of tokens on the whole ring, `2^64`, as a `u128` so that a full-circle range has a
/// size.
pub(crate) const RING_SIZE: u128 = 1 << 64;

/// A node's permanent identity: 128 random bits generated once and kept in the data dir. It is
/// never reused: a departed host's id does not come back. `Default` is the all-zero id, which
/// [`HostId::generate`] gives with probability 2^-128 (the topology log's library needs one).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(u128);

/// In JSON (the topology log) a host id is its [`Display`](fmt::Display) string.
impl serde::Serialize for HostId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HostId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl HostId {
    /// A fresh random host id.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        HostId(rng.random())
    }

    /// The id's 128 bits.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The host id with these 128 bits.
    pub fn from_u128(bits: u128) -> Self {
        HostId(bits)
    }
}

/// 32 lowercase hex digits in UUID grouping: `8-4-4-4-12`.
impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostId({self})")
    }
}

impl FromStr for HostId {
    type Err = ClusterError;

    /// Accepts the [`Display`](fmt::Display) form, with or without the dashes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let invalid = || ClusterError::InvalidHostId(s.to_string());
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        u128::from_str_radix(&hex, 16)
            .map(HostId)
            .map_err(|_| invalid())
    }
}

/// The hosts that hold one partition, in walk order: the first is the primary (the owner of the
/// token's range), the others follow clockwise. Never names a host twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSet {
    hosts: Vec<HostId>,
}

impl ReplicaSet {
    /// The replicas in walk order.
    pub fn hosts(&self) -> &[HostId] {
        &self.hosts
    }

    /// The owner of the token's range.
    pub fn primary(&self) -> Option<HostId> {
        self.hosts.first().copied()
    }

    /// Whether `host` is one of the replicas.
    pub fn contains(&self, host: HostId) -> bool {
        self.hosts.contains(&host)
    }

    /// The number of replicas: `min(replication_factor, hosts in the ring)`.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True only for the replica set of an empty ring.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// The tokens `(start, end]` of a range, without its owner (what two nodes exchange to name a
/// range). `start == end` is the whole circle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenSpan {
    /// Exclusive start.
    pub start: Token,
    /// Inclusive end.
    pub end: Token,
}

impl TokenSpan {
    /// The number of tokens in the span (`2^64` for the whole circle).
    pub fn size(&self) -> u128 {
        match self.end.wrapping_sub(self.start) {
            0 => RING_SIZE,
            n => u128::from(n),
        }
    }

    /// Whether `t` falls in `(start, end]`.
    pub fn contains(&self, t: Token) -> bool {
        let offset = t.wrapping_sub(self.start);
        self.start == self.end || (offset != 0 && u128::from(offset) <= self.size())
    }
}

/// Several disjoint spans, to find the one a token falls in (logarithmic, plus the one
/// wrapping span if any).
#[derive(Clone, Debug)]
pub struct SpanIndex {
    /// (span, position in the list given), by end token.
    by_end: Vec<(TokenSpan, usize)>,
}

impl SpanIndex {
    /// The index of `spans` (disjoint).
    pub fn new(spans: impl Iterator<Item = TokenSpan>) -> Self {
        let mut by_end: Vec<(TokenSpan, usize)> = spans.enumerate().map(|(i, s)| (s, i)).collect();
        by_end.sort_by_key(|(span, _)| span.end);
        Self { by_end }
    }

    /// The position (in the list given) of the span `t` falls in.
    pub fn find(&self, t: Token) -> Option<usize> {
        let first = self.by_end.partition_point(|(span, _)| span.end < t);
        // The span ending at or after `t`, or a wrapping one (it starts after its end).
        self.by_end
            .get(first)
            .into_iter()
            .chain(
                self.by_end
                    .iter()
                    .filter(|(span, _)| span.start >= span.end),
            )
            .find(|(span, _)| span.contains(t))
            .map(|(_, i)| *i)
    }
}

/// One token range `(start, end]` and its primary owner. The range whose `end` is the smallest
/// ring token wraps: it starts at the largest ring token. A ring with one token has one range, the
/// whole circle (`start == end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRange {
    /// Exclusive start.
    pub start: Token,
    /// Inclusive end: the ring token of the range's owner.
    pub end: Token,
    /// The host whose vnode token is `end`.
    pub owner: HostId,
}

impl TokenRange {
    /// Its tokens.
    pub fn span(&self) -> TokenSpan {
        TokenSpan {
            start: self.start,
            end: self.end,
        }
    }

    /// The number of tokens in the range (`2^64` for the whole circle).
    pub fn size(&self) -> u128 {
        self.span().size()
    }

    /// Whether `t` falls in `(start, end]`.
    pub fn contains(&self, t: Token) -> bool {
        self.span().contains(t)
    }
}

/// An immutable ring: every member host with its vnode tokens, and a version. Built whole from a
/// membership view, swapped atomically by its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    version: u64,
    /// Sorted by token, tokens unique.
    tokens: Vec<(Token, HostId)>,
    /// Every member, including one whose tokens were all claimed by smaller host ids.
    hosts: BTreeSet<HostId>,
}

impl Ring {
    /// The ring of these members at this version. A token listed by two hosts goes to the smaller
    /// host id; a host keeps its membership even if it is left with no token.
    pub fn new(version: u64, members: impl IntoIterator<Item = (HostId, Vec<Token>)>) -> Self {
        let mut hosts = BTreeSet::new();
        let mut owner_of: BTreeMap<Token, HostId> = BTreeMap::new();
        for (host, tokens) in members {
            hosts.insert(host);
            for t in tokens {
                owner_of
                    .entry(t)
                    .and_modify(|owner| *owner = (*owner).min(host))
                    .or_insert(host);
            }
        }
        Ring {
            version,
            tokens: owner_of.into_iter().collect(),
            hosts,
        }
    }

    /// The version this ring was built at; carried on internal requests and hints.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every member host.
    pub fn hosts(&self) -> &BTreeSet<HostId> {
        &self.hosts
    }

    /// The number of member hosts.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// How many tokens the ring's hosts hold: the median over its hosts with tokens (the lower
    /// of the two middle counts for an even number of hosts); `None` for an empty ring.
    pub fn tokens_per_host(&self) -> Option<usize> {
        let mut counts: BTreeMap<HostId, usize> = BTreeMap::new();
        for (_, host) in &self.tokens {
            *counts.entry(*host).or_default() += 1;
        }
        let mut counts: Vec<usize> = counts.into_values().collect();
        counts.sort_unstable();
        counts.get(counts.len().saturating_sub(1) / 2).copied()
    }

    /// Every ring token with its host, sorted by token.
    pub fn tokens(&self) -> &[(Token, HostId)] {
        &self.tokens
    }

    /// The tokens `host` owns, sorted.
    pub fn tokens_of(&self, host: HostId) -> Vec<Token> {
        self.tokens
            .iter()
            .filter(|(_, h)| *h == host)
            .map(|(t, _)| *t)
            .collect()
    }

    /// `replication_factor` capped by the number of hosts.
    pub fn effective_replication_factor(&self, replication_factor: usize) -> usize {
        replication_factor.min(self.hosts.len())
    }

    /// The index in `tokens` of the first ring token at or after `t`, wrapping to 0.
    fn position(&self, t: Token) -> usize {
        let i = self.tokens.partition_point(|(rt, _)| *rt < t);
        if i == self.tokens.len() { 0 } else { i }
    }

    /// The replicas of token `t`: walk clockwise from the owner of `t`'s range, taking each host
    /// not already chosen, until `min(replication_factor, hosts with a token)` hosts are chosen.
    pub fn replicas(&self, t: Token, replication_factor: usize) -> ReplicaSet {
        let mut hosts = Vec::with_capacity(replication_factor);
        if self.tokens.is_empty() {
            return ReplicaSet { hosts };
        }
        let start = self.position(t);
        let n = self.tokens.len();
        for step in 0..n {
            if hosts.len() == replication_factor {
                break;
            }
            let host = self.tokens[(start + step) % n].1;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        ReplicaSet { hosts }
    }

    /// The replicas of the partition `(tenant, entity_id)`.
    pub fn replicas_of_key(
        &self,
        tenant: &str,
        entity_id: &str,
        replication_factor: usize,
    ) -> ReplicaSet {
        self.replicas(token(tenant, entity_id), replication_factor)
    }

    /// Every token range, in ring order (the wrapping range first).
    pub fn ranges(&self) -> Vec<TokenRange> {
        let n = self.tokens.len();
        (0..n)
            .map(|i| TokenRange {
                start: self.tokens[(i + n - 1) % n].0,
                end: self.tokens[i].0,
                owner: self.tokens[i].1,
            })
            .collect()
    }

    /// The spans the tokens of this ring and of `other` together cut the circle into, in token
    /// order: each lies within one range of each ring (empty when neither has a token).
    pub fn spans_with(&self, other: &Ring) -> Vec<TokenSpan> {
        let tokens: BTreeSet<Token> = self
            .tokens
            .iter()
            .chain(other.tokens.iter())
            .map(|(t, _)| *t)
            .collect();
        let tokens: Vec<Token> = tokens.into_iter().collect();
        let n = tokens.len();
        (0..n)
            .map(|i| TokenSpan {
                start: tokens[(i + n - 1) % n],
                end: tokens[i],
            })
            .collect()
    }

    /// The token ranges `host` replicates at `replication_factor` (the effective one on a
    /// small ring), in ring order, each with all of its replicas.
    pub fn ranges_replicated_by(
        &self,
        host: HostId,
        replication_factor: usize,
    ) -> Vec<(TokenRange, ReplicaSet)> {
        let rf = self.effective_replication_factor(replication_factor);
        self.ranges()
            .into_iter()
            .map(|range| (range, self.replicas(range.end, rf)))
            .filter(|(_, replicas)| replicas.contains(host))
            .collect()
    }

    /// Each host's share of the token space as a replica at `replication_factor` (each range
    /// counted for every replica of it). Shares add up to the effective replication factor; a
    /// member without tokens has share 0.
    pub fn ownership(&self, replication_factor: usize) -> BTreeMap<HostId, f64> {
        let mut owned: BTreeMap<HostId, u128> = self.hosts.iter().map(|h| (*h, 0)).collect();
        for range in self.ranges() {
            for host in self.replicas(range.end, replication_factor).hosts() {
                *owned.entry(*host).or_default() += range.size();
            }
        }
        owned
            .into_iter()
            .map(|(h, size)| (h, size as f64 / RING_SIZE as f64))
            .collect()
    }

    /// `count` new tokens for `host` joining this ring, none already on it. On an empty ring
    /// they are evenly spaced from a random offset. Otherwise each new token is the best of
    /// [`ALLOCATION_CANDIDATES`] random points in the middle halves of the currently largest
    /// ranges (counting the tokens already chosen): the one after which the hosts' shares as
    /// replicas at `replication_factor` are closest to even (the least sum of squared
    /// differences; `host`'s even share scaled by the tokens it has so far), so a node that
    /// joins a settled ring takes a fair share of the replicated data from the most loaded
    /// hosts, and two nodes joining at once with the same view still choose different tokens.
    /// When scoring would build rings of more than [`ALLOCATION_SCORED_TOKENS_AT_MOST`] tokens
    /// in all, each token splits the largest range unscored.
    pub fn allocate_tokens<R: Rng + ?Sized>(
        &self,
        host: HostId,
        count: usize,
        replication_factor: usize,
        rng: &mut R,
    ) -> Vec<Token> {
        let mut taken: BTreeSet<Token> = self.tokens.iter().map(|(t, _)| *t).collect();
        let mut chosen = Vec::with_capacity(count);
        if taken.is_empty() && count > 0 {
            let step = RING_SIZE / count as u128;
            let offset: u64 = rng.random();
            for i in 0..count as u128 {
                // Truncation is the point: positions wrap around the ring.
                let t = offset.wrapping_add((i * step) as u64);
                if taken.insert(t) {
                    chosen.push(t);
                }
            }
        }
        let scored = (self.tokens.len() + count)
            .saturating_mul(count)
            .saturating_mul(ALLOCATION_CANDIDATES)
            <= ALLOCATION_SCORED_TOKENS_AT_MOST;
        let mut members: BTreeMap<HostId, Vec<Token>> = BTreeMap::new();
        for (t, owner) in &self.tokens {
            members.entry(*owner).or_default().push(*t);
        }
        while chosen.len() < count {
            let gaps = largest_gaps(&taken, ALLOCATION_GAPS);
            if gaps.first().is_none_or(|(_, size)| *size < 4) {
                // Every gap is tiny: the ring is full to the last token; nothing fair is left.
                break;
            }
            let candidates = if scored { ALLOCATION_CANDIDATES } else { 1 };
            let mut best: Option<(f64, Token)> = None;
            for candidate in 0..candidates {
                let (start, size) = gaps[candidate % gaps.len()];
                if size < 4 {
                    continue;
                }
                let quarter = size / 4;
                let offset = quarter + rng.random_range(0..=(size / 2) - 1);
                // `offset < size <= 2^64`, so the sum wraps around the ring exactly once at most.
                let t = start.wrapping_add(offset as u64);
                if taken.contains(&t) {
                    continue;
                }
                let spread = if scored {
                    let mut trial = members.clone();
                    trial.insert(host, chosen.iter().copied().chain([t]).collect());
                    let shares = Ring::new(0, trial).ownership(replication_factor);
                    // Each host's share against an even share of the ring with this host, the
                    // new host's scaled by the tokens it has so far.
                    let hosts = shares.len() as f64;
                    let even = shares.values().sum::<f64>() / hosts;
                    let progress = (chosen.len() + 1) as f64 / count as f64;
                    shares
                        .iter()
                        .map(|(h, share)| {
                            let target = if *h == host { even * progress } else { even };
                            (share - target) * (share - target)
                        })
                        .sum()
                } else {
                    0.0
                };
                if best.is_none_or(|(least_spread, _)| spread < least_spread) {
                    best = Some((spread, t));
                }
            }
            if let Some((_, t)) = best
                && taken.insert(t)
            {
                chosen.push(t);
            }
        }
        chosen.sort_unstable();
        chosen
    }
}

/// Tokens a node takes when `cluster.num_tokens` is 0 and the ring has no node yet (a node
/// joining a ring takes as many as its nodes hold, [`Ring::tokens_per_host`]). Few tokens keep
/// the covering sets of cluster-wide reads small (docs/cluster.md "Covering set"); the
/// allocation's scoring keeps their shares even.
pub const NEW_RING_TOKENS: usize = 4;

/// Points [`Ring::allocate_tokens`] scores for each token it chooses.
const ALLOCATION_CANDIDATES: usize = 16;

/// How many of the largest ranges the candidate points of [`Ring::allocate_tokens`] split.
const ALLOCATION_GAPS: usize = 4;

/// Most tokens [`Ring::allocate_tokens`] puts in the rings it builds to score its candidates
/// (one ring per candidate of each new token): 4 tokens joining a ring of 16,000 are scored,
/// or 16 joining one of 4,000 (0.2-0.3 s at this bound in a test-profile build); past it each
/// token splits the largest range unscored.
const ALLOCATION_SCORED_TOKENS_AT_MOST: usize = 1 << 20;

/// The `at_most` largest gaps between consecutive tokens of a set, largest first, as
/// `(start, size)`; an empty set or a set of one token has the whole circle.
fn largest_gaps(tokens: &BTreeSet<Token>, at_most: usize) -> Vec<(Token, u128)> {
    let (Some(first), Some(last)) = (tokens.first(), tokens.last()) else {
        return vec![(0, RING_SIZE)];
    };
    let wrap = TokenRange {
        start: *last,
        end: *first,
        owner: HostId(0),
    };
    let mut gaps = vec![(wrap.start, wrap.size())];
    let mut prev = *first;
    for t in tokens.iter().skip(1) {
        gaps.push((prev, u128::from(t - prev)));
        prev = *t;
    }
    let order = |(start, size): &(Token, u128)| (std::cmp::Reverse(*size), *start);
    if gaps.len() > at_most && at_most > 0 {
        // Linear selection: a join into a large ring looks for the largest gaps once per token.
        gaps.select_nth_unstable_by_key(at_most - 1, order);
        gaps.truncate(at_most);
    }
    gaps.sort_by_key(order);
    gaps.truncate(at_most);
    gaps
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn host(n: u128) -> HostId {
        HostId::from_u128(n)
    }

    /// A ring of `n` hosts that joined one after another, each allocating `vnodes` tokens against
    /// the ring it found.
    fn joined_ring(n: usize, vnodes: usize, rf: usize, seed: u64) -> Ring {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members: Vec<(HostId, Vec<Token>)> = Vec::new();
        for i in 0..n {
            let ring = Ring::new(0, members.clone());
            let tokens = ring.allocate_tokens(host(i as u128 + 1), vnodes, rf, &mut rng);
            assert_eq!(tokens.len(), vnodes);
            members.push((host(i as u128 + 1), tokens));
        }
        Ring::new(1, members)
    }

    #[test]
    fn token_is_xxh3_of_tenant_nul_entity() {
        assert_eq!(token("t", "e"), xxhash_rust::xxh3::xxh3_64(b"t\0e"));
        assert_ne!(token("ab", "c"), token("a", "bc"));
    }

    #[test]
    fn host_id_round_trips_through_text() {
        let mut rng = StdRng::seed_from_u64(7);
        let id = HostId::generate(&mut rng);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<HostId>().unwrap(), id);
        assert_eq!(text.replace('-', "").parse::<HostId>().unwrap(), id);
        assert!("xyz".parse::<HostId>().is_err());
        assert!(
            "0123456789abcdef0123456789abcdeg"
                .parse::<HostId>()
                .is_err()
        );
    }

    #[test]
    fn key_belongs_to_the_first_token_at_or_after_it() {
        let ring = Ring::new(
            3,
            [
                (host(1), vec![100, 300]),
                (host(2), vec![200]),
                (host(3), vec![400]),
            ],
        );
        assert_eq!(ring.version(), 3);
        assert_eq!(ring.replicas(100, 1).hosts(), &[host(1)]);
        assert_eq!(ring.replicas(101, 1).hosts(), &[host(2)]);
        assert_eq!(ring.replicas(250, 1).hosts(), &[host(1)]);
        assert_eq!(ring.replicas(400, 1).hosts(), &[host(3)]);
        // Past the largest token: wraps to the smallest.
        assert_eq!(ring.replicas(401, 1).hosts(), &[host(1)]);
        assert_eq!(ring.replicas(0, 1).hosts(), &[host(1)]);
    }

    #[test]
    fn replica_walk_skips_hosts_already_chosen() {
        let ring = Ring::new(
            0,
            [
                (host(1), vec![10, 20]),
                (host(2), vec![30]),
                (host(3), vec![40, 50]),
            ],
        );
        // From 10: host 1 (10), host 1 again (20) skipped, host 2 (30), host 3 (40).
        assert_eq!(ring.replicas(5, 3).hosts(), &[host(1), host(2), host(3)]);
        // From 40: host 3, 3 skipped, wrap to host 1, then host 2.
        assert_eq!(ring.replicas(35, 3).hosts(), &[host(3), host(1), host(2)]);
        assert_eq!(ring.replicas(35, 2).hosts(), &[host(3), host(1)]);
    }

    #[test]
    fn replication_factor_is_capped_by_the_hosts() {
        let ring = Ring::new(0, [(host(1), vec![10]), (host(2), vec![20])]);
        assert_eq!(ring.effective_replication_factor(3), 2);
        assert_eq!(ring.replicas(15, 3).len(), 2);
        assert!(Ring::new(0, []).replicas(5, 3).is_empty());
    }

    #[test]
    fn a_contested_token_goes_to_the_smaller_host_id() {
        let a = Ring::new(0, [(host(2), vec![10]), (host(1), vec![10, 20])]);
        let b = Ring::new(0, [(host(1), vec![10, 20]), (host(2), vec![10])]);
        assert_eq!(a, b);
        assert_eq!(a.tokens(), &[(10, host(1)), (20, host(1))]);
        assert!(a.hosts().contains(&host(2)));
        assert_eq!(a.ownership(1)[&host(2)], 0.0);
    }

    #[test]
    fn ranges_cover_the_ring_once() {
        let ring = joined_ring(4, 16, 3, 1);
        let ranges = ring.ranges();
        assert_eq!(ranges.len(), 64);
        assert_eq!(ranges.iter().map(TokenRange::size).sum::<u128>(), RING_SIZE);
        let single = Ring::new(0, [(host(1), vec![42])]).ranges();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].size(), RING_SIZE);
        assert!(single[0].contains(0) && single[0].contains(42) && single[0].contains(43));
    }

    #[test]
    fn first_node_tokens_are_evenly_spaced() {
        let mut rng = StdRng::seed_from_u64(3);
        let tokens = Ring::new(0, []).allocate_tokens(host(1), 16, 3, &mut rng);
        let ring = Ring::new(0, [(host(1), tokens)]);
        for range in ring.ranges() {
            assert_eq!(range.size(), RING_SIZE / 16);
        }
    }

    #[test]
    fn ownership_shares_add_up_to_the_replication_factor() {
        let ring = joined_ring(5, 16, 3, 2);
        for rf in 1..=6 {
            let total: f64 = ring.ownership(rf).values().sum();
            assert!((total - rf.min(5) as f64).abs() < 1e-9, "rf {rf}: {total}");
        }
    }

    /// The worst ratio of the largest share to the smallest over `rings` rings of 2 to 12
    /// nodes joined one after another with `vnodes` tokens each, allocated for and measured at
    /// `rf`.
    fn worst_spread(rings: u64, vnodes: usize, rf: usize) -> (f64, u64) {
        let mut worst = (0.0, 0);
        for seed in 0..rings {
            let n = 2 + (seed as usize % 11);
            let ring = joined_ring(n, vnodes, rf, seed);
            let shares: Vec<f64> = ring.ownership(rf).into_values().collect();
            let max = shares.iter().copied().fold(0.0, f64::max);
            let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
            if max / min > worst.0 {
                worst = (max / min, seed);
            }
        }
        worst
    }

    /// The spread of primary ownership for nodes joining one after another with 16 vnodes:
    /// over 100 rings of 2 to 12 nodes, the most loaded node owns at most 1.4x the least
    /// loaded one (measured worst 1.33x; 1.70x splitting the largest range without scoring
    /// candidates; uniform random tokens, the next test, reach 4.06x over 200 rings).
    #[test]
    fn sequential_joins_balance_ownership() {
        let worst = worst_spread(100, 16, 1);
        assert!(worst.0 <= 1.4, "worst max/min share {worst:?}");
    }

    /// With four tokens a node, the shares as replicas at replication factor 3 over 200 rings:
    /// at most 1.4x apart (measured worst 1.31x; 1.83x splitting the largest range without
    /// scoring candidates).
    #[test]
    fn four_tokens_balance_replicated_ownership() {
        let worst = worst_spread(200, 4, 3);
        assert!(worst.0 <= 1.4, "worst max/min share {worst:?}");
    }

    /// A join too large to score (16 tokens into a ring of 20,000) still gets as many new
    /// tokens, each splitting the largest range.
    #[test]
    fn a_join_too_large_to_score_splits_the_largest_ranges() {
        let mut rng = StdRng::seed_from_u64(9);
        let ring = Ring::new(
            0,
            (1..=100u128).map(|h| {
                let tokens = (0..200).map(|_| rand::Rng::random(&mut rng)).collect();
                (host(h), tokens)
            }),
        );
        let largest = largest_gaps(&ring.tokens.iter().map(|(t, _)| *t).collect(), 1)[0];
        let tokens = ring.allocate_tokens(host(101), 16, 3, &mut rng);
        assert_eq!(tokens.len(), 16);
        assert!(
            tokens
                .iter()
                .all(|t| !ring.tokens.iter().any(|(taken, _)| taken == t))
        );
        let (start, size) = largest;
        assert!(
            tokens
                .iter()
                .any(|t| u128::from(t.wrapping_sub(start)) < size),
            "the first token splits the largest range"
        );
    }

    /// The same measure for uniformly random tokens, to show what the allocation buys.
    #[test]
    fn random_tokens_balance_worse() {
        let mut worst: f64 = 0.0;
        for seed in 0..200 {
            let n = 2 + (seed as usize % 11);
            let mut rng = StdRng::seed_from_u64(seed);
            let ring = Ring::new(
                0,
                (0..n).map(|i| {
                    (
                        host(i as u128),
                        (0..16).map(|_| rand::Rng::random(&mut rng)).collect(),
                    )
                }),
            );
            let shares: Vec<f64> = ring.ownership(1).into_values().collect();
            let max = shares.iter().copied().fold(0.0, f64::max);
            let min = shares.iter().copied().fold(1.0, f64::min);
            worst = worst.max(max / min);
        }
        assert!(worst > 2.5, "random tokens worst max/min share {worst}");
    }

    proptest! {
        /// Any ring, any key, any RF: the replicas are distinct members, as many as
        /// `min(rf, hosts with tokens)`, the first owns the key's range, and a smaller RF's
        /// replicas are a prefix of a larger one's.
        #[test]
        fn replica_walk_properties(
            members in prop::collection::btree_map(1u128..50, prop::collection::vec(any::<u64>(), 1..8), 1..10),
            key in any::<u64>(),
            rf in 1usize..7,
        ) {
            let ring = Ring::new(0, members.iter().map(|(h, t)| (host(*h), t.clone())));
            let with_tokens: BTreeSet<HostId> = ring.tokens().iter().map(|(_, h)| *h).collect();
            let replicas = ring.replicas(key, rf);
            prop_assert_eq!(replicas.len(), rf.min(with_tokens.len()));
            let distinct: BTreeSet<HostId> = replicas.hosts().iter().copied().collect();
            prop_assert_eq!(distinct.len(), replicas.len());
            prop_assert!(replicas.hosts().iter().all(|h| with_tokens.contains(h)));
            let owner = ring.ranges().into_iter().find(|r| r.contains(key)).map(|r| r.owner);
            prop_assert_eq!(replicas.primary(), owner);
            let larger = ring.replicas(key, rf + 1);
            prop_assert_eq!(&larger.hosts()[..replicas.len()], replicas.hosts());
        }

        /// Ownership follows the walk: a host's share at RF r is the size of the ranges whose
        /// replica set names it, and no share exceeds 1.
        #[test]
        fn ownership_is_bounded(
            members in prop::collection::btree_map(1u128..50, prop::collection::vec(any::<u64>(), 1..8), 1..10),
            rf in 1usize..5,
        ) {
            let ring = Ring::new(0, members.iter().map(|(h, t)| (host(*h), t.clone())));
            for share in ring.ownership(rf).values() {
                prop_assert!((0.0..=1.0 + 1e-9).contains(share));
            }
        }

        /// Allocation never reuses a token already on the ring and returns the count asked for.
        #[test]
        fn allocation_adds_new_tokens(
            existing in prop::collection::btree_set(any::<u64>(), 0..40),
            count in 1usize..32,
            seed in any::<u64>(),
        ) {
            let ring = Ring::new(0, [(host(1), existing.iter().copied().collect())]);
            let mut rng = StdRng::seed_from_u64(seed);
            let tokens = ring.allocate_tokens(host(2), count, 3, &mut rng);
            prop_assert_eq!(tokens.len(), count);
            let distinct: BTreeSet<Token> = tokens.iter().copied().collect();
            prop_assert_eq!(distinct.len(), count);
            prop_assert!(tokens.iter().all(|t| !existing.contains(t)));
        }
    }
}
