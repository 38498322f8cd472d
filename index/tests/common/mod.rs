//! Shared helpers of the vector index integration tests: data generation, brute force, files.

#![allow(dead_code)]

pub mod duplicates;
mod texmex;

#[allow(unused_imports)]
pub use texmex::read_vecs;

use allidb_index::vector::{Metric, VectorHit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` points in `dim` dimensions drawn from `clusters` Gaussian clusters that live in a
/// 16-dimensional latent space, mapped into `dim` dimensions by a fixed random projection, plus
/// a little isotropic noise (real embeddings have a low intrinsic dimension; isotropic
/// full-dimensional noise would make every neighbour equidistant). Same `seed` = same
/// clusters; `sample_seed` picks the points.
pub fn clustered(
    n: usize,
    dim: usize,
    clusters: usize,
    seed: u64,
    sample_seed: u64,
) -> Vec<Vec<f32>> {
    const LATENT: usize = 16;
    let normal = |rng: &mut StdRng| -> f32 {
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let projection: Vec<Vec<f32>> = (0..dim)
        .map(|_| (0..LATENT).map(|_| normal(&mut rng)).collect())
        .collect();
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..LATENT).map(|_| 2.0 * normal(&mut rng)).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(sample_seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            let latent: Vec<f32> = c.iter().map(|x| x + normal(&mut rng)).collect();
            projection
                .iter()
                .map(|row| {
                    row.iter().zip(&latent).map(|(a, b)| a * b).sum::<f32>()
                        + 0.1 * normal(&mut rng)
                })
                .collect()
        })
        .collect()
}

/// Exact top `k` ids (indices into `base`) by `metric` similarity, ties by index.
/// `prepared` holds the base vectors already passed through [`Metric::prepare`].
pub fn brute_force(metric: Metric, prepared: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let q = metric.prepare(query).unwrap();
    let mut scored: Vec<(f32, usize)> = prepared
        .iter()
        .enumerate()
        .map(|(i, v)| (metric.similarity(&q, v), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Fraction of `truth` found in `got`.
pub fn recall(got: &[VectorHit], truth: &[String]) -> f64 {
    let found = truth
        .iter()
        .filter(|id| got.iter().any(|h| &*h.entity_id == id.as_str()))
        .count();
    found as f64 / truth.len() as f64
}

/// Entity id of base row `i`.
pub fn id(i: usize) -> String {
    format!("e{i:06}")
}
