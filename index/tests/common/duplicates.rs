//! A duplicate-heavy corpus made from a real one, as real corpora are: groups of byte-identical
//! vectors inserted as runs (repeated texts: boilerplate, one description shared by sibling
//! items), near-duplicates (cosine above 0.9999, some so close that `1 - dot` rounds to 0 or
//! below), families of near-identical rows with identical groups inside them, and queries aimed
//! at those groups; with exact ground truth and tie-aware recall.
//!
//! Shared by `index/tests/duplicates.rs` and the `dup_sweep` benchmark example (included there
//! by path), so both measure the same data. Deterministic for a given seed.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Sizes of the groups of identical vectors: a heavy tail like the real corpus's (most groups
/// of 2-3, a few dozens, one of 100).
const GROUP_SIZES: &[(usize, usize)] = &[(2, 220), (3, 80), (5, 40), (10, 16), (30, 6), (100, 1)];

/// The corpus: base rows (normalised), queries (normalised) and, per query, the exact
/// similarities of every base row in descending order for the first `TRUTH_DEPTH` rows.
#[derive(Debug)]
pub struct DuplicateCorpus {
    pub base: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    /// Per query: the exact top `TRUTH_DEPTH` base rows, best first, as (similarity, row).
    pub truth: Vec<Vec<(f32, usize)>>,
    /// Base rows that are copies (exact or near) of another row.
    pub copies: usize,
}

/// Families of near-identical rows, and rows per family (before their copies).
const FAMILIES: usize = 8;
const FAMILY_SIZE: usize = 100;

/// Depth of the exact ground truth kept per query.
pub const TRUTH_DEPTH: usize = 100;
/// Slack of tie-aware recall: a hit's exact similarity may be this much below the k-th's.
pub const TIE_SLACK: f32 = 1e-5;

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `v` moved by a random direction of length `scale`, normalised again.
fn nudge(v: &[f32], scale: f32, rng: &mut StdRng) -> Vec<f32> {
    let mut noise: Vec<f32> = v.iter().map(|_| rng.random_range(-1.0f32..1.0)).collect();
    normalise(&mut noise);
    let mut out: Vec<f32> = v.iter().zip(&noise).map(|(x, n)| x + scale * n).collect();
    normalise(&mut out);
    out
}

impl DuplicateCorpus {
    /// Builds the corpus from `real` base rows (already normalised) and `real_queries`: adds the
    /// groups of [`GROUP_SIZES`] and near-duplicates of 2% of the rows, shuffles, then adds one
    /// query near each of 200 group members to the real queries and computes the exact truth.
    pub fn from_real(real: &[Vec<f32>], real_queries: &[Vec<f32>], seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        // One block per real row; its copies follow it, as runs of identical inserts (sibling
        // items are written together in real corpora), then the blocks are shuffled.
        let mut blocks: Vec<Vec<Vec<f32>>> = real.iter().map(|v| vec![v.clone()]).collect();
        let mut sources = Vec::new();
        for &(size, count) in GROUP_SIZES {
            for _ in 0..count {
                let source = rng.random_range(0..real.len());
                sources.push(source);
                blocks[source].extend(std::iter::repeat_n(real[source].clone(), size - 1));
            }
        }
        for _ in 0..real.len() / 50 {
            let source = rng.random_range(0..real.len());
            // 0.01 keeps cosine near 0.99995; 1e-4 makes `1 - dot` round to 0 or below.
            let scale = if rng.random_bool(0.5) { 1e-2 } else { 1e-4 };
            for _ in 0..rng.random_range(1..=4) {
                let near = nudge(&real[source], scale, &mut rng);
                blocks[source].push(near);
            }
        }
        // Families of near-identical rows (sibling packages described alike), each with groups
        // of identical vectors inside: the queries aimed at groups land in dense regions.
        for _ in 0..FAMILIES {
            let source = rng.random_range(0..real.len());
            let mut family = Vec::new();
            for _ in 0..FAMILY_SIZE {
                let member = nudge(&real[source], rng.random_range(0.05..0.3), &mut rng);
                if rng.random_bool(0.2) {
                    let copies = rng.random_range(2..=40);
                    family.extend(std::iter::repeat_n(member.clone(), copies - 1));
                }
                family.push(member);
            }
            sources.push(source);
            blocks[source].extend(family);
        }
        blocks.shuffle(&mut rng);
        let base: Vec<Vec<f32>> = blocks.into_iter().flatten().collect();
        let copies = base.len() - real.len();
        let mut queries = real_queries.to_vec();
        for _ in 0..200 {
            let source = sources[rng.random_range(0..sources.len())];
            queries.push(nudge(&real[source], 0.3, &mut rng));
        }
        let truth = queries.iter().map(|q| exact_top(&base, q)).collect();
        Self {
            base,
            queries,
            truth,
            copies,
        }
    }

    /// The real rows and queries unchanged (no copies), with the same exact truth: the clean
    /// baseline of the benchmark.
    pub fn unchanged(real: &[Vec<f32>], real_queries: &[Vec<f32>]) -> Self {
        let truth = real_queries.iter().map(|q| exact_top(real, q)).collect();
        Self {
            base: real.to_vec(),
            queries: real_queries.to_vec(),
            truth,
            copies: 0,
        }
    }

    /// Tie-aware recall@k of `found` (base rows) for query `query`: a returned row is a hit when
    /// its exact similarity is at least the k-th exact similarity minus [`TIE_SLACK`].
    pub fn recall(&self, query: usize, found: &[usize], k: usize) -> f64 {
        let kth = self.truth[query][k - 1].0;
        let q = &self.queries[query];
        let hits = found
            .iter()
            .take(k)
            .filter(|&&row| dot(q, &self.base[row]) >= kth - TIE_SLACK)
            .count();
        hits as f64 / k as f64
    }
}

/// The exact top [`TRUTH_DEPTH`] rows of `base` for `query` by inner product, best first.
fn exact_top(base: &[Vec<f32>], query: &[f32]) -> Vec<(f32, usize)> {
    let mut scored: Vec<(f32, usize)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (dot(query, v), i))
        .collect();
    let depth = TRUTH_DEPTH.min(scored.len());
    scored.select_nth_unstable_by(depth - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(depth);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
}
