//! Similarity metrics of the vector index and the distance kernels the ANN engine runs on.
//!
//! Owns: how a client vector becomes the stored ("prepared") copy, how a similarity is computed
//! between prepared vectors, and the engine-side distance of each metric.
//!
//! Invariants:
//! * Cosine vectors are stored normalised, so cosine similarity is a plain dot product; a zero
//!   vector has no direction and is refused for Cosine.
//! * Every engine distance is finite for finite input and strictly decreasing in the similarity,
//!   so nearest-by-distance is exactly most-similar-first. The distances here are non-negative
//!   (`hnsw_rs` asserts it); the flat engine's own Cosine kernel skips the clamp at 0, so that
//!   near-identical vectors keep distinct distances instead of tying at 0.
//! * Never panics on finite input (the engine's own `DistDot` asserts `dot <= 1`, which rounding
//!   breaks on normalised vectors; that is why the kernels here are our own).

use crate::error::{Error, Result};

/// How similar two vectors are. Similarity is what results report: cosine in `[-1, 1]` for
/// [`Metric::Cosine`], minus the Euclidean distance for [`Metric::L2`], the dot product for
/// [`Metric::Dot`]; higher is always more similar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Metric {
    /// Cosine similarity (the default): vectors are normalised on the way in.
    #[default]
    Cosine,
    /// Euclidean distance; similarity is its negation.
    L2,
    /// Raw inner product (maximum inner product search).
    Dot,
}

impl Metric {
    /// Stable name used in persisted files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }

    /// Parses [`Metric::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Metric::Cosine),
            "l2" => Ok(Metric::L2),
            "dot" => Ok(Metric::Dot),
            other => Err(Error::invalid(format!(
                "unknown metric {other:?}: expected cosine, l2 or dot"
            ))),
        }
    }

    /// Validates a client vector and returns the copy the index stores and searches with:
    /// normalised for Cosine, unchanged otherwise. Rejects empty, non-finite and (for Cosine)
    /// zero vectors.
    pub fn prepare(self, vector: &[f32]) -> Result<Vec<f32>> {
        if vector.is_empty() {
            return Err(Error::invalid("vector is empty"));
        }
        if let Some(position) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "vector component {position} is not finite ({})",
                vector[position]
            )));
        }
        match self {
            Metric::Cosine => {
                let norm = dot(vector, vector).sqrt();
                if !(norm.is_finite() && norm > 0.0) {
                    return Err(Error::invalid(format!(
                        "vector norm {norm} cannot be normalised for the cosine metric"
                    )));
                }
                Ok(vector.iter().map(|x| x / norm).collect())
            }
            Metric::L2 | Metric::Dot => Ok(vector.to_vec()),
        }
    }

    /// Similarity between two prepared vectors of equal length (see [`Metric`]).
    pub fn similarity(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => dot(a, b).clamp(-1.0, 1.0),
            Metric::L2 => -l2_squared(a, b).sqrt(),
            Metric::Dot => dot(a, b),
        }
    }

    /// The similarity whose engine distance (see [`CosineDistance`], [`L2Distance`],
    /// [`DotDistance`]) is `distance`: the inverse map, so the engine's search results need no
    /// second pass over their vectors. Equal to [`Metric::similarity`] up to float rounding
    /// (about 1e-7 absolute for Cosine, whose distance is `1 - dot`).
    pub fn similarity_from_distance(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => (1.0 - distance).clamp(-1.0, 1.0),
            Metric::L2 => -distance.sqrt(),
            // `1 - dot` for `dot <= 0` (distance >= 1), `1 / (1 + dot)` above.
            Metric::Dot if distance >= 1.0 => 1.0 - distance,
            Metric::Dot => 1.0 / distance - 1.0,
        }
    }
}

/// Dot product, written with eight independent accumulators so the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let a_chunks = a.chunks_exact(8);
    let b_chunks = b.chunks_exact(8);
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += ca[lane] * cb[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Squared Euclidean distance, vectorised like [`dot`].
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let a_chunks = a.chunks_exact(8);
    let b_chunks = b.chunks_exact(8);
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            let d = ca[lane] - cb[lane];
            lanes[lane] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Engine distance for Cosine on normalised vectors: `1 - dot`, clamped at 0 against rounding.
#[derive(Clone, Copy, Debug, Default)]
pub struct CosineDistance;

/// Engine distance for L2: the squared Euclidean distance (same order, no square root).
#[derive(Clone, Copy, Debug, Default)]
pub struct L2Distance;

/// Engine distance for Dot: a positive, strictly decreasing map of the inner product
/// (`1 - dot` for `dot <= 0`, `1 / (1 + dot)` above), because the engine needs `distance >= 0`
/// while raw inner products are unbounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct DotDistance;

impl hnsw_rs::prelude::Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

impl hnsw_rs::prelude::Distance<f32> for L2Distance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        l2_squared(a, b)
    }
}

impl hnsw_rs::prelude::Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let product = dot(a, b);
        if product <= 0.0 {
            1.0 - product
        } else {
            1.0 / (1.0 + product)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnsw_rs::prelude::Distance;

    #[test]
    fn kernels_match_naive_sums_for_every_length() {
        for len in [1usize, 3, 8, 9, 17, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(
                (dot(&a, &b) - naive_dot).abs() <= 1e-5 * naive_dot.abs().max(1.0),
                "dot len {len}"
            );
            assert!(
                (l2_squared(&a, &b) - naive_l2).abs() <= 1e-5 * naive_l2.max(1.0),
                "l2 len {len}"
            );
        }
    }

    #[test]
    fn cosine_prepare_normalises_and_rejects_bad_vectors() {
        let v = Metric::Cosine.prepare(&[3.0, 4.0]).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(Metric::Cosine.prepare(&[0.0, 0.0]).is_err());
        assert!(Metric::L2.prepare(&[0.0, 0.0]).is_ok());
        assert!(Metric::Dot.prepare(&[f32::NAN]).is_err());
        assert!(Metric::L2.prepare(&[1.0, f32::INFINITY]).is_err());
        assert!(Metric::L2.prepare(&[]).is_err());
    }

    #[test]
    fn similarities_follow_their_definitions() {
        let a = Metric::Cosine.prepare(&[1.0, 0.0]).unwrap();
        let b = Metric::Cosine.prepare(&[0.0, 2.0]).unwrap();
        assert!((Metric::Cosine.similarity(&a, &a) - 1.0).abs() < 1e-6);
        assert!(Metric::Cosine.similarity(&a, &b).abs() < 1e-6);
        assert!((Metric::L2.similarity(&[0.0, 0.0], &[3.0, 4.0]) + 5.0).abs() < 1e-6);
        assert!((Metric::Dot.similarity(&[2.0, 1.0], &[3.0, 4.0]) - 10.0).abs() < 1e-6);
    }

    #[test]
    fn dot_distance_is_positive_and_strictly_decreasing() {
        let q = [1.0f32];
        let values = [-1e6f32, -5.0, -0.5, 0.0, 0.25, 1.0, 7.0, 1e6];
        let distances: Vec<f32> = values.iter().map(|v| DotDistance.eval(&q, &[*v])).collect();
        for pair in distances.windows(2) {
            assert!(pair[0] > pair[1] && pair[1] > 0.0, "{distances:?}");
        }
        let n = Metric::Cosine.prepare(&[0.3, 0.3, 0.3]).unwrap();
        assert!(CosineDistance.eval(&n, &n) >= 0.0);
    }

    /// The engine distance maps back to the similarity, for every metric and over the whole
    /// range of each (negative, zero and large inner products included).
    #[test]
    fn similarity_from_distance_inverts_the_engine_distances() {
        let a: Vec<f32> = (0..384).map(|i| (i as f32 * 0.37).sin()).collect();
        for scale in [-1e3f32, -3.0, -0.5, 0.0, 1e-3, 0.7, 2.0, 1e3] {
            let b: Vec<f32> = (0..384)
                .map(|i| scale * ((i as f32 * 0.11).cos() + (i as f32 * 0.37).sin()))
                .collect();
            let l2 = Metric::L2.similarity_from_distance(L2Distance.eval(&a, &b));
            let expected = Metric::L2.similarity(&a, &b);
            assert!(
                (l2 - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                "l2 {scale}"
            );
            let product = Metric::Dot.similarity_from_distance(DotDistance.eval(&a, &b));
            let expected = Metric::Dot.similarity(&a, &b);
            assert!(
                (product - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                "dot {scale}: {product} vs {expected}"
            );
            if scale != 0.0 {
                let (pa, pb) = (
                    Metric::Cosine.prepare(&a).unwrap(),
                    Metric::Cosine.prepare(&b).unwrap(),
                );
                let cosine = Metric::Cosine.similarity_from_distance(CosineDistance.eval(&pa, &pb));
                let expected = Metric::Cosine.similarity(&pa, &pb);
                assert!((cosine - expected).abs() <= 1e-6, "cosine {scale}");
            }
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for m in [Metric::Cosine, Metric::L2, Metric::Dot] {
            assert_eq!(Metric::from_name(m.name()).unwrap(), m);
        }
        assert!(Metric::from_name("hamming").is_err());
    }
}
