//! Personalized PageRank over the subgraph a query walked (docs/index.md, "Personalized
//! PageRank").
//!
//! Owns the power iteration and its options. Mass restarts at the seeds in proportion to their
//! restart weights and flows along the given edges in proportion to their weights; a node
//! without outgoing weight (dangling) sends its mass back to the restart distribution, so the
//! masses always sum to 1. Invariants: the result is a pure function of its inputs (node order
//! included), every mass is finite and non-negative, and at most `max_iterations` iterations
//! run. Never: allocate beyond `O(nodes + edges)` per column, or loop without the cap.

use crate::error::{Error, Result};

/// Parameters of the power iteration and of the final score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageRankOptions {
    /// Probability of following an edge rather than restarting, in `(0, 1)` (default 0.85).
    pub damping: f64,
    /// Most iterations (>= 1, default 100).
    pub max_iterations: usize,
    /// Stop when the L1 change of the mass vector falls below this (> 0, default 1e-6).
    pub tolerance: f64,
    /// Weight of the similarity term in the score, in `[0, 1]` (default 0: mass alone).
    pub similarity_weight: f64,
}

impl Default for PageRankOptions {
    fn default() -> Self {
        Self {
            damping: 0.85,
            max_iterations: 100,
            tolerance: 1e-6,
            similarity_weight: 0.0,
        }
    }
}

impl PageRankOptions {
    /// Checks every option, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if !(self.damping > 0.0 && self.damping < 1.0) {
            return Err(Error::invalid(format!(
                "damping must be in (0, 1), got {}",
                self.damping
            )));
        }
        if self.max_iterations == 0 {
            return Err(Error::invalid("max_iterations must be at least 1"));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(Error::invalid(format!(
                "tolerance must be finite and > 0, got {}",
                self.tolerance
            )));
        }
        if !(0.0..=1.0).contains(&self.similarity_weight) {
            return Err(Error::invalid(format!(
                "similarity_weight must be in [0, 1], got {}",
                self.similarity_weight
            )));
        }
        Ok(())
    }
}

/// The outcome of one personalized PageRank.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRank {
    /// Mass per node (sums to 1 when there is a restart node).
    pub mass: Vec<f64>,
    /// Iterations run.
    pub iterations: usize,
}

/// Row-normalized transition of a weighted digraph: `(to, probability)` per node.
#[derive(Debug)]
pub struct Transition {
    rows: Vec<Vec<(usize, f64)>>,
}

impl Transition {
    /// The transition of `node_count` nodes and `edges` `(from, to, weight)` in the direction
    /// mass flows. Edges with a weight `<= 0` carry nothing; parallel edges add up.
    pub fn new(node_count: usize, edges: &[(usize, usize, f64)]) -> Self {
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); node_count];
        for &(from, to, weight) in edges {
            if weight > 0.0 {
                rows[from].push((to, weight));
            }
        }
        for row in &mut rows {
            let total: f64 = row.iter().map(|(_, w)| w).sum();
            for (_, weight) in row.iter_mut() {
                *weight /= total;
            }
        }
        Self { rows }
    }

    /// One step for the column restarting at `own_restart` (scaled by `1 - damping` here);
    /// dangling mass goes back to `restart`, the full restart distribution.
    fn step(&self, x: &[f64], own_restart: &[f64], restart: &[f64], damping: f64) -> Vec<f64> {
        let mut next: Vec<f64> = own_restart.iter().map(|r| (1.0 - damping) * r).collect();
        let mut dangling = 0.0;
        for (from, row) in self.rows.iter().enumerate() {
            if row.is_empty() {
                dangling += x[from];
                continue;
            }
            let flow = damping * x[from];
            for &(to, probability) in row {
                next[to] += flow * probability;
            }
        }
        if dangling > 0.0 {
            for (value, r) in next.iter_mut().zip(restart) {
                *value += damping * dangling * r;
            }
        }
        next
    }

    /// Personalized PageRank restarting at `restart` (a distribution over the nodes): power
    /// iteration from `restart` until the L1 change is below the tolerance or the cap.
    pub fn pagerank(&self, restart: &[f64], options: &PageRankOptions) -> PageRank {
        let mut mass = restart.to_vec();
        let mut iterations = 0;
        while iterations < options.max_iterations {
            let next = self.step(&mass, restart, restart, options.damping);
            iterations += 1;
            let change: f64 = next.iter().zip(&mass).map(|(a, b)| (a - b).abs()).sum();
            mass = next;
            if change < options.tolerance {
                break;
            }
        }
        PageRank { mass, iterations }
    }

    /// The part of each node's mass that restarted at each of `seeds` (node indexes), after
    /// `iterations` iterations: `shares[i][node]`. The mass is linear in the restart vector,
    /// so the columns add up to [`Transition::pagerank`]'s mass; a seed's column restarts at
    /// the seed alone and its dangling mass returns to the full restart distribution.
    pub fn seed_columns(
        &self,
        restart: &[f64],
        seeds: &[usize],
        iterations: usize,
        damping: f64,
    ) -> Vec<Vec<f64>> {
        seeds
            .iter()
            .map(|&seed| {
                let mut own = vec![0.0; restart.len()];
                own[seed] = restart[seed];
                let mut column = own.clone();
                for _ in 0..iterations {
                    column = self.step(&column, &own, restart, damping);
                }
                column
            })
            .collect()
    }
}

/// The restart distribution over `node_count` nodes: `weights` `(node, weight >= 0)` scaled to
/// sum to 1, or uniform over those nodes when every weight is 0. Empty when `weights` is.
pub fn restart_distribution(node_count: usize, weights: &[(usize, f64)]) -> Vec<f64> {
    let mut restart = vec![0.0; node_count];
    let total: f64 = weights.iter().map(|(_, w)| w.max(0.0)).sum();
    for &(node, weight) in weights {
        restart[node] += if total > 0.0 {
            weight.max(0.0) / total
        } else {
            1.0 / weights.len() as f64
        };
    }
    restart
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The reference: a dense column-stochastic matrix (dangling columns = the restart vector)
    /// and plain power iteration to a fixed point far below the tolerance tested.
    fn dense_reference(
        n: usize,
        edges: &[(usize, usize, f64)],
        restart: &[f64],
        damping: f64,
    ) -> Vec<f64> {
        let mut weight = vec![vec![0.0f64; n]; n];
        for &(from, to, w) in edges {
            if w > 0.0 {
                weight[from][to] += w;
            }
        }
        // m[to][from] = probability of from -> to.
        let mut m = vec![vec![0.0f64; n]; n];
        for from in 0..n {
            let total: f64 = weight[from].iter().sum();
            for to in 0..n {
                m[to][from] = if total > 0.0 {
                    weight[from][to] / total
                } else {
                    restart[to]
                };
            }
        }
        let mut x = restart.to_vec();
        for _ in 0..10_000 {
            let next: Vec<f64> = (0..n)
                .map(|i| {
                    (1.0 - damping) * restart[i]
                        + damping * (0..n).map(|j| m[i][j] * x[j]).sum::<f64>()
                })
                .collect();
            let change: f64 = next.iter().zip(&x).map(|(a, b)| (a - b).abs()).sum();
            x = next;
            if change < 1e-15 {
                break;
            }
        }
        x
    }

    fn random_graph(rng: &mut StdRng, n: usize, undirected: bool) -> Vec<(usize, usize, f64)> {
        let mut edges = Vec::new();
        // Nodes n-3.. stay disconnected; node 0 (a seed) has no out-edges.
        let connected = n - 3;
        for _ in 0..n * 3 {
            let from = rng.random_range(1..connected);
            let to = rng.random_range(0..connected);
            let weight = f64::from(rng.random_range(1u8..=8)) / 4.0;
            edges.push((from, to, weight));
            if undirected && to != 0 {
                edges.push((to, from, weight));
            }
        }
        edges
    }

    #[test]
    fn power_iteration_matches_a_dense_reference_within_1e_6() {
        let mut rng = StdRng::seed_from_u64(20);
        let options = PageRankOptions {
            max_iterations: 1_000,
            tolerance: 1e-12,
            ..PageRankOptions::default()
        };
        let mut compared = 0;
        for round in 0..40 {
            let n = 6 + round % 30;
            let undirected = round % 2 == 1;
            let edges = random_graph(&mut rng, n, undirected);
            // Seeds: node 0 (no out-edges), a disconnected node, and a random one; every
            // fourth round at equal similarity.
            let seeds = [0, n - 1, rng.random_range(1..n - 3)];
            let weights: Vec<(usize, f64)> = seeds
                .iter()
                .map(|&s| {
                    let w = if round % 4 == 0 {
                        0.7
                    } else {
                        rng.random_range(0.0..1.0)
                    };
                    (s, w)
                })
                .collect();
            let restart = restart_distribution(n, &weights);
            let damping = [0.85, 0.5, 0.15, 0.99][round % 4];
            let options = PageRankOptions { damping, ..options };
            let transition = Transition::new(n, &edges);
            let got = transition.pagerank(&restart, &options);
            let expected = dense_reference(n, &edges, &restart, damping);
            for (node, (g, e)) in got.mass.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() < 1e-6,
                    "round {round} node {node}: {g} vs {e}"
                );
                compared += 1;
            }
            assert!((got.mass.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            // Disconnected non-seed nodes get nothing.
            assert_eq!(got.mass[n - 2], 0.0);
            // Seed columns add up to the mass.
            let columns = transition.seed_columns(&restart, &seeds, got.iterations, damping);
            for node in 0..n {
                let sum: f64 = columns.iter().map(|c| c[node]).sum();
                assert!((sum - got.mass[node]).abs() < 1e-9, "round {round}");
            }
        }
        assert!(compared > 500);
    }

    #[test]
    fn equal_similarities_restart_uniformly_and_the_cap_holds() {
        let restart = restart_distribution(4, &[(0, 0.0), (2, 0.0)]);
        assert_eq!(restart, [0.5, 0.0, 0.5, 0.0]);
        let restart = restart_distribution(4, &[(1, 2.0), (3, 6.0)]);
        assert_eq!(restart, [0.0, 0.25, 0.0, 0.75]);
        let transition = Transition::new(4, &[(1, 2, 1.0), (2, 3, 1.0), (3, 1, 1.0)]);
        let capped = transition.pagerank(
            &restart,
            &PageRankOptions {
                max_iterations: 3,
                tolerance: 1e-300,
                ..PageRankOptions::default()
            },
        );
        assert_eq!(capped.iterations, 3);
        let converged = transition.pagerank(&restart, &PageRankOptions::default());
        assert!(converged.iterations > 3 && converged.iterations < 100);
    }

    #[test]
    fn options_are_validated() {
        let ok = PageRankOptions::default();
        assert!(ok.validate().is_ok());
        for bad in [
            PageRankOptions { damping: 1.0, ..ok },
            PageRankOptions { damping: 0.0, ..ok },
            PageRankOptions {
                damping: f64::NAN,
                ..ok
            },
            PageRankOptions {
                max_iterations: 0,
                ..ok
            },
            PageRankOptions {
                tolerance: 0.0,
                ..ok
            },
            PageRankOptions {
                similarity_weight: 1.5,
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
