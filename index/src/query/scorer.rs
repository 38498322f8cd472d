//! The unified score of a query candidate.
//!
//! Default formula (AlliDB's, kept so migrating clients see the same numbers):
//! `1.0*(cos+1)/2 + 0.3*G + 0.2*sigmoid(importance) + 0.1*exp(-age/30d)`, where `G` is the mean
//! edge weight along the candidate's path (1.0 for a seed), multiplied by `hop_decay^hops`.
//! Age is measured at query time (never negative). For non-cosine metrics the vector term maps
//! the similarity into `[0, 1]` monotonically: `1/(1+distance)` for L2, `sigmoid(dot)` for Dot.
//!
//! Invariant: the score is a pure function of its inputs (no clock read here) and is finite for
//! finite inputs. Never: reorder or drop a component silently; every component is reported.

use crate::error::{Error, Result};
use crate::graph::PathStep;
use crate::query::fusion::Relevance;
use crate::vector::Metric;

/// Microseconds in 30 days: the recency time constant.
pub const RECENCY_TIME_CONSTANT_MICROS: f64 = 30.0 * 24.0 * 3600.0 * 1e6;

/// Weights of the score components; configurable per request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreWeights {
    /// Weight of the vector term (default 1.0).
    pub vector: f64,
    /// Weight of the graph term (default 0.3).
    pub graph: f64,
    /// Weight of the importance term (default 0.2).
    pub importance: f64,
    /// Weight of the recency term (default 0.1).
    pub recency: f64,
    /// Multiplier of the graph term per hop, in `(0, 1]` (default 1.0 = no decay).
    pub hop_decay: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            vector: 1.0,
            graph: 0.3,
            importance: 0.2,
            recency: 0.1,
            hop_decay: 1.0,
        }
    }
}

impl ScoreWeights {
    /// Weights must be finite and non-negative; the decay in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("vector", self.vector),
            ("graph", self.graph),
            ("importance", self.importance),
            ("recency", self.recency),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::invalid(format!(
                    "score weight {name} must be finite and >= 0, got {value}"
                )));
            }
        }
        if !(self.hop_decay > 0.0 && self.hop_decay <= 1.0) {
            return Err(Error::invalid(format!(
                "hop_decay must be in (0, 1], got {}",
                self.hop_decay
            )));
        }
        Ok(())
    }
}

/// Each weighted component of one score, plus the total.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreBreakdown {
    /// Weighted vector term (in a hybrid query: the vector part of the relevance term).
    pub vector: f64,
    /// Weighted lexical part of the relevance term (0 without a query text; see
    /// [`crate::query::fusion`]).
    pub lexical: f64,
    /// Weighted graph term (after hop decay).
    pub graph: f64,
    /// Weighted importance term.
    pub importance: f64,
    /// Weighted recency term.
    pub recency: f64,
    /// Sum of the five.
    pub total: f64,
}

/// The importance the score uses: a non-finite one counts as 0.
pub fn scored_importance(importance: f64) -> f64 {
    if importance.is_finite() {
        importance
    } else {
        0.0
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The vector term in `[0, 1]` for a similarity of `metric` (`None`: the entity has no vector).
pub fn vector_term(metric: Metric, similarity: Option<f32>) -> f64 {
    let Some(similarity) = similarity else {
        return 0.0;
    };
    let s = f64::from(similarity);
    match metric {
        Metric::Cosine => ((s + 1.0) / 2.0).clamp(0.0, 1.0),
        Metric::L2 => 1.0 / (1.0 - s.min(0.0)),
        Metric::Dot => sigmoid(s),
    }
}

/// `G`: mean edge weight along the path (1.0 for a seed), times `hop_decay^hops`.
pub fn graph_term(path: &[PathStep], hop_decay: f64) -> f64 {
    if path.is_empty() {
        return 1.0;
    }
    let mean = path.iter().map(|s| f64::from(s.weight)).sum::<f64>() / path.len() as f64;
    mean * hop_decay.powi(i32::try_from(path.len()).unwrap_or(i32::MAX))
}

/// The terms of a score that depend on the candidate's vector and path, computed once; the
/// importance and recency terms (which need the entity's facts) complete it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartialScore {
    vector: f64,
    lexical: f64,
    graph: f64,
}

impl PartialScore {
    /// The weighted vector and graph terms of a candidate.
    pub fn new(
        weights: &ScoreWeights,
        metric: Metric,
        similarity: Option<f32>,
        path: &[PathStep],
    ) -> Self {
        Self {
            vector: weights.vector * vector_term(metric, similarity),
            lexical: 0.0,
            graph: weights.graph * graph_term(path, weights.hop_decay),
        }
    }

    /// The weighted relevance parts (a hybrid or text query's, in place of the vector term)
    /// and graph term of a candidate.
    pub fn with_relevance(weights: &ScoreWeights, relevance: Relevance, path: &[PathStep]) -> Self {
        Self {
            vector: weights.vector * relevance.vector,
            lexical: weights.vector * relevance.lexical,
            graph: weights.graph * graph_term(path, weights.hop_decay),
        }
    }

    /// A total no completion can exceed. Without `most`, the importance and recency terms at
    /// their maximum (their weights): each term is at most its weight after rounding and
    /// floating-point addition is monotone, so `complete(..).total <= upper_bound(.., None)`.
    /// With `most` = (an importance no candidate exceeds, an age no candidate is below), the
    /// completion at those values plus a margin far above the few ulps by which a non-monotone
    /// rounding of `exp` could exceed it.
    pub fn upper_bound(&self, weights: &ScoreWeights, most: Option<(f64, i64)>) -> f64 {
        let Some((importance, age_micros)) = most else {
            return (self.vector + self.lexical)
                + (self.graph + (weights.importance + weights.recency));
        };
        let bound = self.complete(weights, importance, age_micros).total;
        bound + 1e-12 * (1.0 + bound.abs())
    }

    /// The full score, given the entity's importance and age (query time minus `updated_at`,
    /// clamped at 0).
    pub fn complete(
        self,
        weights: &ScoreWeights,
        importance: f64,
        age_micros: i64,
    ) -> ScoreBreakdown {
        let importance = weights.importance * sigmoid(scored_importance(importance));
        let age = age_micros.max(0) as f64;
        let recency = weights.recency * (-age / RECENCY_TIME_CONSTANT_MICROS).exp();
        ScoreBreakdown {
            vector: self.vector,
            lexical: self.lexical,
            graph: self.graph,
            importance,
            recency,
            // Smallest terms first: exact for the documented 1.5 case and less rounding in
            // general (the lexical part is 0 without text, and `x + 0.0 == x`).
            total: (self.vector + self.lexical) + (self.graph + (importance + recency)),
        }
    }
}

/// Scores one candidate. `age_micros` = query time minus the entity's `updated_at` (clamped at 0).
pub fn score(
    weights: &ScoreWeights,
    metric: Metric,
    similarity: Option<f32>,
    path: &[PathStep],
    importance: f64,
    age_micros: i64,
) -> ScoreBreakdown {
    PartialScore::new(weights, metric, similarity, path).complete(weights, importance, age_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn step(weight: f32) -> PathStep {
        PathStep {
            from: Arc::from("a"),
            relation: Arc::from("r"),
            to: Arc::from("b"),
            weight,
            reversed: false,
        }
    }

    #[test]
    fn identical_fresh_unimportant_seed_scores_exactly_one_and_a_half() {
        let s = score(
            &ScoreWeights::default(),
            Metric::Cosine,
            Some(1.0),
            &[],
            0.0,
            0,
        );
        assert_eq!(s.total, 1.5);
        assert_eq!(
            (s.vector, s.graph, s.importance, s.recency),
            (1.0, 0.3, 0.1, 0.1)
        );
    }

    #[test]
    fn recency_halves_roughly_every_21_days_and_future_is_fresh() {
        let w = ScoreWeights::default();
        let month = RECENCY_TIME_CONSTANT_MICROS as i64;
        let s = score(&w, Metric::Cosine, Some(1.0), &[], 0.0, month);
        assert!((s.recency - 0.1 * (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(
            score(&w, Metric::Cosine, Some(1.0), &[], 0.0, -5).recency,
            0.1
        );
    }

    #[test]
    fn graph_term_is_mean_weight_with_hop_decay() {
        let path = [step(0.8), step(0.4)];
        let plain = score(
            &ScoreWeights::default(),
            Metric::Cosine,
            Some(0.0),
            &path,
            0.0,
            0,
        );
        assert!((plain.graph - 0.3 * 0.6).abs() < 1e-6);
        let decayed = ScoreWeights {
            hop_decay: 0.5,
            ..ScoreWeights::default()
        };
        let s = score(&decayed, Metric::Cosine, Some(0.0), &path, 0.0, 0);
        assert!((s.graph - 0.3 * 0.6 * 0.25).abs() < 1e-6);
        assert!((s.vector - 0.5).abs() < 1e-12);
    }

    #[test]
    fn weights_change_components_and_are_validated() {
        let w = ScoreWeights {
            vector: 2.0,
            graph: 0.0,
            importance: 1.0,
            recency: 0.0,
            hop_decay: 1.0,
        };
        let s = score(&w, Metric::Cosine, Some(0.0), &[], 2.0, 0);
        assert!((s.vector - 1.0).abs() < 1e-12);
        assert_eq!(s.graph, 0.0);
        assert!((s.importance - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
        assert!(w.validate().is_ok());
        assert!(ScoreWeights { graph: -1.0, ..w }.validate().is_err());
        assert!(
            ScoreWeights {
                hop_decay: 0.0,
                ..w
            }
            .validate()
            .is_err()
        );
        assert!(
            ScoreWeights {
                vector: f64::NAN,
                ..w
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn vector_terms_of_other_metrics_are_monotone_in_unit_range() {
        assert_eq!(vector_term(Metric::L2, Some(0.0)), 1.0);
        assert!((vector_term(Metric::L2, Some(-1.0)) - 0.5).abs() < 1e-12);
        assert!((vector_term(Metric::Dot, Some(0.0)) - 0.5).abs() < 1e-12);
        assert_eq!(vector_term(Metric::Cosine, None), 0.0);
    }

    #[test]
    fn upper_bound_is_never_exceeded_and_reached_at_full_importance_and_zero_age() {
        let path = [step(0.7), step(0.2)];
        for weights in [
            ScoreWeights::default(),
            ScoreWeights {
                importance: 3.0,
                recency: 0.0,
                hop_decay: 0.3,
                ..ScoreWeights::default()
            },
        ] {
            for similarity in [Some(-1.0), Some(0.3), Some(1.0), None] {
                let partial = PartialScore::new(&weights, Metric::Cosine, similarity, &path);
                let bound = partial.upper_bound(&weights, None);
                let importances = [-50.0, -1.0, 0.0, 2.5, f64::NAN];
                let ages = [-10, 0, 1_000_000, i64::MAX];
                for importance in importances {
                    for age in ages {
                        let total = partial.complete(&weights, importance, age).total;
                        assert!(total <= bound, "{total} > {bound}");
                        // Bounded by any larger importance and smaller age, and tighter than
                        // the weights' bound.
                        for most_importance in importances {
                            let most_importance = scored_importance(most_importance);
                            if most_importance < scored_importance(importance) {
                                continue;
                            }
                            for most_recent in ages.into_iter().filter(|a| *a <= age) {
                                let tighter = partial
                                    .upper_bound(&weights, Some((most_importance, most_recent)));
                                assert!(total <= tighter && tighter <= bound + 1e-9);
                            }
                        }
                    }
                }
                assert_eq!(partial.complete(&weights, 1e6, 0).total, bound);
            }
        }
    }
}
