//! Distance kernels of the flat HNSW engine, chosen once per engine.
//!
//! Owns: the engine distance of each [`Metric`] (the same definitions as the `hnsw_rs` engine's,
//! see `metric.rs`, except that Cosine is `1 - dot` without the clamp at 0, squared Euclidean for L2, a positive
//! decreasing map of the inner product for Dot) and AVX-512F and AVX2+FMA implementations of
//! the dot product and squared distance, the fastest supported one selected at run time.
//!
//! Invariants: every kernel returns the same value as the portable one up to float rounding;
//! the SIMD kernels are only reachable through [`supported_distance_fns`], which hands them out
//! after `is_x86_feature_detected!` confirmed their features. Never reads past either slice: lengths are
//! taken as the shorter of the two.

use crate::vector::metric::{self, Metric};

/// A distance between two prepared vectors: smaller is closer (Cosine's may dip a few ulps
/// below 0 for near-identical vectors).
pub(crate) type DistanceFn = fn(&[f32], &[f32]) -> f32;

/// The two primitive reductions the metrics are built from.
trait Reductions {
    fn dot(a: &[f32], b: &[f32]) -> f32;
    fn l2_squared(a: &[f32], b: &[f32]) -> f32;
}

/// The portable kernels of `metric.rs` (auto-vectorised by LLVM for the baseline target).
struct Portable;

impl Reductions for Portable {
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        metric::dot(a, b)
    }
    fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        metric::l2_squared(a, b)
    }
}

/// `1 - dot`, not clamped: rounding can make it slightly negative for near-identical vectors,
/// and a clamp at 0 would turn those into exact ties (docs/index.md, "Ties and duplicates").
fn cosine_distance<R: Reductions>(a: &[f32], b: &[f32]) -> f32 {
    1.0 - R::dot(a, b)
}

fn l2_distance<R: Reductions>(a: &[f32], b: &[f32]) -> f32 {
    R::l2_squared(a, b)
}

fn dot_distance<R: Reductions>(a: &[f32], b: &[f32]) -> f32 {
    let product = R::dot(a, b);
    if product <= 0.0 {
        1.0 - product
    } else {
        1.0 / (1.0 + product)
    }
}

fn for_metric<R: Reductions>(metric: Metric) -> DistanceFn {
    match metric {
        Metric::Cosine => cosine_distance::<R>,
        Metric::L2 => l2_distance::<R>,
        Metric::Dot => dot_distance::<R>,
    }
}

/// The fastest distance of `metric` this CPU supports.
pub(crate) fn distance_fn(metric: Metric) -> DistanceFn {
    // The list always ends with the portable kernel, so it is never empty.
    supported_distance_fns(metric)[0].1
}

/// Every implementation of `metric`'s distance this CPU can run, fastest first, named; the
/// portable one is always last.
fn supported_distance_fns(metric: Metric) -> Vec<(&'static str, DistanceFn)> {
    let mut supported = Vec::with_capacity(3);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            supported.push(("avx512f", for_metric::<avx512::Avx512>(metric)));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            supported.push(("avx2+fma", for_metric::<avx2::Avx2Fma>(metric)));
        }
    }
    supported.push(("portable", for_metric::<Portable>(metric)));
    supported
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
        _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm256_sub_ps,
    };

    use super::Reductions;

    /// AVX2+FMA reductions. Only instantiated after run-time detection.
    pub(super) struct Avx2Fma;

    impl Reductions for Avx2Fma {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: `Avx2Fma` is private to this module tree and only selected by
            // `supported_distance_fns` after `is_x86_feature_detected!` confirmed AVX2 and FMA.
            unsafe { reduce::<false>(a, b) }
        }
        fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: as for `dot` above.
            unsafe { reduce::<true>(a, b) }
        }
    }

    /// Sum of `a[i] * b[i]` (or of `(a[i] - b[i])^2` when `SQUARED_DIFF`), 32 lanes per step in
    /// four independent accumulators.
    #[target_feature(enable = "avx2,fma")]
    fn reduce<const SQUARED_DIFF: bool>(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let (a, b) = (&a[..len], &b[..len]);
        let step = |acc: __m256, x: &[f32], y: &[f32]| -> __m256 {
            // SAFETY: callers pass chunks of exactly 8 floats, so both unaligned 256-bit loads
            // stay inside the slices.
            let (x, y) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
            if SQUARED_DIFF {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            } else {
                _mm256_fmadd_ps(x, y, acc)
            }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let a_blocks = a.chunks_exact(32);
        let b_blocks = b.chunks_exact(32);
        let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
        for (x, y) in a_blocks.zip(b_blocks) {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let range = lane * 8..lane * 8 + 8;
                *acc = step(*acc, &x[range.clone()], &y[range]);
            }
        }
        let a_eights = a_rest.chunks_exact(8);
        let b_eights = b_rest.chunks_exact(8);
        let (a_tail, b_tail) = (a_eights.remainder(), b_eights.remainder());
        for (x, y) in a_eights.zip(b_eights) {
            acc[0] = step(acc[0], x, y);
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let total = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps::<1>(quarter, quarter)));
        let tail: f32 = a_tail
            .iter()
            .zip(b_tail)
            .map(|(x, y)| {
                if SQUARED_DIFF {
                    (x - y) * (x - y)
                } else {
                    x * y
                }
            })
            .sum();
        total + tail
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
        _mm512_reduce_add_ps, _mm512_setzero_ps, _mm512_sub_ps,
    };

    use super::Reductions;

    /// AVX-512F reductions. Only instantiated after run-time detection.
    pub(super) struct Avx512;

    impl Reductions for Avx512 {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: `Avx512` is private to this module tree and only selected by
            // `supported_distance_fns` after `is_x86_feature_detected!` confirmed AVX-512F.
            unsafe { reduce::<false>(a, b) }
        }
        fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: as for `dot` above.
            unsafe { reduce::<true>(a, b) }
        }
    }

    /// Like the AVX2 `reduce`, 64 lanes per step in four accumulators; the last partial block of
    /// 16 is read with a masked load (lanes past the end read as zero and are never touched).
    #[target_feature(enable = "avx512f")]
    fn reduce<const SQUARED_DIFF: bool>(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let (a, b) = (&a[..len], &b[..len]);
        let combine = |acc: __m512, x: __m512, y: __m512| -> __m512 {
            if SQUARED_DIFF {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            } else {
                _mm512_fmadd_ps(x, y, acc)
            }
        };
        let step = |acc: __m512, x: &[f32], y: &[f32]| -> __m512 {
            // SAFETY: callers pass chunks of exactly 16 floats, so both unaligned 512-bit loads
            // stay inside the slices.
            let (x, y) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr())) };
            combine(acc, x, y)
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        let a_blocks = a.chunks_exact(64);
        let b_blocks = b.chunks_exact(64);
        let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
        for (x, y) in a_blocks.zip(b_blocks) {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let range = lane * 16..lane * 16 + 16;
                *acc = step(*acc, &x[range.clone()], &y[range]);
            }
        }
        let a_sixteens = a_rest.chunks_exact(16);
        let b_sixteens = b_rest.chunks_exact(16);
        let (a_tail, b_tail) = (a_sixteens.remainder(), b_sixteens.remainder());
        for (x, y) in a_sixteens.zip(b_sixteens) {
            acc[1] = step(acc[1], x, y);
        }
        if !a_tail.is_empty() {
            let mask = (1u16 << a_tail.len()) - 1;
            // SAFETY: the mask enables exactly the `a_tail.len()` (< 16) lanes that lie inside
            // both tails; masked-off lanes are not read.
            let (x, y) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, a_tail.as_ptr()),
                    _mm512_maskz_loadu_ps(mask, b_tail.as_ptr()),
                )
            };
            acc[2] = combine(acc[2], x, y);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_kernels_match_the_portable_ones() {
        for len in [1usize, 7, 8, 9, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos() * 2.0).collect();
            for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
                let supported = supported_distance_fns(metric);
                let (_, portable) = supported[supported.len() - 1];
                let reference = portable(&a, &b);
                for (name, kernel) in supported {
                    let fast = kernel(&a, &b);
                    assert!(
                        (fast - reference).abs() <= 1e-4 * reference.abs().max(1.0),
                        "{name} {metric:?} len {len}: {fast} vs {reference}"
                    );
                    // Cosine is `1 - dot`, unclamped (these vectors are not normalised).
                    assert!(metric == Metric::Cosine || fast >= 0.0);
                }
            }
        }
    }

    #[test]
    fn distances_follow_the_metric_definitions() {
        let cosine = distance_fn(Metric::Cosine);
        let x = [0.6f32, 0.8];
        assert!(cosine(&x, &x).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-6);
        assert!((distance_fn(Metric::L2)(&[0.0, 0.0], &[3.0, 4.0]) - 25.0).abs() < 1e-5);
        let dot = distance_fn(Metric::Dot);
        assert!(dot(&[1.0], &[7.0]) < dot(&[1.0], &[1.0]));
        assert!(dot(&[1.0], &[-1.0]) > dot(&[1.0], &[0.0]));
    }
}
