//! Hybrid relevance: a query's vector hits and lexical (BM25) hits fused into one relevance
//! term per candidate, which takes the place of the vector term in the unified score
//! (docs/index.md "Hybrid search").
//!
//! * Vector only: relevance = the vector term, as before (this module is not used).
//! * Text only: relevance = `bm25(c) / bm25(best lexical hit)` (the best hit scores 1).
//! * Both: relevance = `(1 - w) * V(c) + w * L(c)`, `w` = `lexical_weight`, where
//!   - `Fusion::Rrf { rank_constant: c }`: `V = (c + 1) / (c + rank_v)`, `L = (c + 1) / (c +
//!     rank_l)` (rank 1 = best; a candidate first in both lists has relevance 1);
//!   - `Fusion::Dbsf`: each list's scores normalized by its own distribution, Qdrant's
//!     definition: `(s - (mu - 3 sigma)) / (6 sigma)` with the list's mean and (population)
//!     standard deviation, 0.5 when sigma is 0; clamped to [0, 1] here so the term keeps the
//!     vector term's range.
//!
//!   A candidate absent from a list but holding a score for it (a graph-expanded entity has a
//!   vector and matches a query term) counts at rank `len + 1` under RRF and by its own score
//!   under DBSF; without a score (no vector, no query term) that part is 0.
//!
//! Seeds: the union of both lists, ordered by relevance (ties by entity id), the best
//! `seed count` kept. Invariants: every relevance is in [0, 1] and finite; the order of the
//! inputs decides ranks (best first). Never: read an index (callers pass the hits and look
//! scores up).

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use crate::error::{Error, Result};
use crate::lexical::LexicalHit;
use crate::query::scorer::vector_term;
use crate::vector::{Metric, VectorHit};

/// How a hybrid query fuses its two lists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with this rank constant (default 60).
    Rrf {
        /// The constant `c` of `1 / (c + rank)`; at least 1.
        rank_constant: u32,
    },
    /// Distribution-based score fusion (mean +- 3 standard deviations per list).
    Dbsf,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { rank_constant: 60 }
    }
}

/// The hybrid part of a query plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HybridOptions {
    /// How the lists are fused (RRF, constant 60, by default).
    pub fusion: Fusion,
    /// Share of the lexical part in the relevance, in [0, 1] (default 0.5).
    pub lexical_weight: f64,
}

impl Default for HybridOptions {
    fn default() -> Self {
        Self {
            fusion: Fusion::default(),
            lexical_weight: 0.5,
        }
    }
}

impl HybridOptions {
    /// Checks the weight and the rank constant, naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.lexical_weight) {
            return Err(Error::invalid(format!(
                "lexical_weight must be in [0, 1], got {}",
                self.lexical_weight
            )));
        }
        if let Fusion::Rrf { rank_constant: 0 } = self.fusion {
            return Err(Error::invalid("rrf rank_constant must be at least 1"));
        }
        Ok(())
    }
}

/// A candidate's relevance, split into its two weighted parts (they sum to the relevance).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Relevance {
    /// The vector part, weighted (`(1 - w) * V`, or `V` alone without text).
    pub vector: f64,
    /// The lexical part, weighted (`w * L`, or `L` alone without a vector).
    pub lexical: f64,
}

/// Mean and population standard deviation of `scores`.
fn distribution(scores: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = scores.clone().count() as f64;
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = scores.clone().sum::<f64>() / n;
    let var = scores.map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn dbsf(score: f64, (mean, sigma): (f64, f64)) -> f64 {
    if sigma <= 0.0 || !sigma.is_finite() {
        return 0.5;
    }
    ((score - (mean - 3.0 * sigma)) / (6.0 * sigma)).clamp(0.0, 1.0)
}

/// One query's two lists, ready to give any candidate its relevance.
#[derive(Debug)]
pub struct FusedLists {
    metric: Metric,
    options: HybridOptions,
    has_vector: bool,
    has_text: bool,
    vector_rank: HashMap<Arc<str>, usize>,
    vector_len: usize,
    vector_dist: (f64, f64),
    lexical_rank: HashMap<Arc<str>, usize>,
    lexical_len: usize,
    lexical_dist: (f64, f64),
    lexical_best: f64,
}

impl FusedLists {
    /// The lists of one query: `vector` hits (`None`: no query vector) and `lexical` hits
    /// (`None`: no text), each best first.
    pub fn new(
        metric: Metric,
        options: HybridOptions,
        vector: Option<&[VectorHit]>,
        lexical: Option<&[LexicalHit]>,
    ) -> Self {
        let vector_hits = vector.unwrap_or_default();
        let lexical_hits = lexical.unwrap_or_default();
        Self {
            metric,
            options,
            has_vector: vector.is_some(),
            has_text: lexical.is_some(),
            vector_rank: vector_hits
                .iter()
                .enumerate()
                .map(|(i, h)| (h.entity_id.clone(), i + 1))
                .collect(),
            vector_len: vector_hits.len(),
            vector_dist: distribution(vector_hits.iter().map(|h| f64::from(h.similarity))),
            lexical_rank: lexical_hits
                .iter()
                .enumerate()
                .map(|(i, h)| (h.entity_id.clone(), i + 1))
                .collect(),
            lexical_len: lexical_hits.len(),
            lexical_dist: distribution(lexical_hits.iter().map(|h| h.score)),
            lexical_best: lexical_hits.first().map_or(0.0, |h| h.score),
        }
    }

    /// The relevance of entity `id` whose own similarity is `similarity` and BM25 score `bm25`
    /// (`None`: no vector / no query term).
    pub fn relevance(&self, id: &str, similarity: Option<f32>, bm25: Option<f64>) -> Relevance {
        match (self.has_vector, self.has_text) {
            (true, false) | (false, false) => Relevance {
                vector: vector_term(self.metric, similarity),
                lexical: 0.0,
            },
            (false, true) => Relevance {
                vector: 0.0,
                lexical: match bm25 {
                    Some(s) if self.lexical_best > 0.0 => (s / self.lexical_best).clamp(0.0, 1.0),
                    _ => 0.0,
                },
            },
            (true, true) => {
                let w = self.options.lexical_weight;
                let (v, l) = match self.options.fusion {
                    Fusion::Rrf { rank_constant } => {
                        let c = f64::from(rank_constant);
                        let part =
                            |rank: Option<usize>| rank.map_or(0.0, |r| (c + 1.0) / (c + r as f64));
                        let v_rank = similarity.map(|_| {
                            self.vector_rank
                                .get(id)
                                .copied()
                                .unwrap_or(self.vector_len + 1)
                        });
                        let l_rank = bm25.map(|_| {
                            self.lexical_rank
                                .get(id)
                                .copied()
                                .unwrap_or(self.lexical_len + 1)
                        });
                        (part(v_rank), part(l_rank))
                    }
                    Fusion::Dbsf => (
                        similarity.map_or(0.0, |s| dbsf(f64::from(s), self.vector_dist)),
                        bm25.map_or(0.0, |s| dbsf(s, self.lexical_dist)),
                    ),
                };
                Relevance {
                    vector: (1.0 - w) * v,
                    lexical: w * l,
                }
            }
        }
    }

    /// The seeds: both lists' entities by relevance (ties by id), the best `n`.
    pub fn seeds(
        &self,
        vector: &[VectorHit],
        lexical: &[LexicalHit],
        n: usize,
    ) -> Vec<(Arc<str>, Relevance)> {
        let mut all: HashMap<Arc<str>, (Option<f32>, Option<f64>)> = HashMap::new();
        for hit in vector {
            all.entry(hit.entity_id.clone()).or_default().0 = Some(hit.similarity);
        }
        for hit in lexical {
            all.entry(hit.entity_id.clone()).or_default().1 = Some(hit.score);
        }
        let mut seeds: Vec<(Arc<str>, Relevance)> = all
            .into_iter()
            .map(|(id, (s, l))| {
                let r = self.relevance(&id, s, l);
                (id, r)
            })
            .collect();
        seeds.sort_by(|a, b| {
            (b.1.vector + b.1.lexical)
                .total_cmp(&(a.1.vector + a.1.lexical))
                .then_with(|| a.0.cmp(&b.0))
        });
        seeds.truncate(n);
        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, s: f32) -> VectorHit {
        VectorHit {
            entity_id: Arc::from(id),
            similarity: s,
        }
    }

    fn l(id: &str, s: f64) -> LexicalHit {
        LexicalHit {
            entity_id: Arc::from(id),
            score: s,
            matched: Vec::new(),
        }
    }

    #[test]
    fn rrf_follows_the_reciprocal_ranks() {
        let vector = [v("a", 0.9), v("b", 0.8), v("c", 0.1)];
        let lexical = [l("b", 7.0), l("d", 3.0)];
        let lists = FusedLists::new(
            Metric::Cosine,
            HybridOptions::default(),
            Some(&vector),
            Some(&lexical),
        );
        let seeds = lists.seeds(&vector, &lexical, 10);
        let ids: Vec<&str> = seeds.iter().map(|(id, _)| &**id).collect();
        assert_eq!(ids, ["b", "a", "d", "c"]);
        let b = seeds[0].1;
        assert!((b.vector - 0.5 * 61.0 / 62.0).abs() < 1e-12);
        assert!((b.lexical - 0.5).abs() < 1e-12);
        // Qdrant's unweighted RRF, 1/(60 + rank) summed, orders the same way.
        let qdrant = |id: &str| -> f64 {
            let rv = vector.iter().position(|h| &*h.entity_id == id);
            let rl = lexical.iter().position(|h| &*h.entity_id == id);
            rv.map_or(0.0, |r| 1.0 / (61.0 + r as f64))
                + rl.map_or(0.0, |r| 1.0 / (61.0 + r as f64))
        };
        for pair in ids.windows(2) {
            assert!(qdrant(pair[0]) >= qdrant(pair[1]));
        }
        // An expanded entity with a vector but in neither list: rank len + 1 in the vector list.
        let e = lists.relevance("e", Some(0.0), None);
        assert!((e.vector - 0.5 * 61.0 / 64.0).abs() < 1e-12 && e.lexical == 0.0);
        assert_eq!(lists.relevance("f", None, None), Relevance::default());
    }

    #[test]
    fn dbsf_normalizes_each_list_by_its_distribution() {
        let vector = [v("a", 0.9), v("b", 0.5), v("c", 0.1)];
        let lexical = [l("a", 2.0), l("c", 2.0)];
        let options = HybridOptions {
            fusion: Fusion::Dbsf,
            lexical_weight: 0.25,
        };
        let lists = FusedLists::new(Metric::Cosine, options, Some(&vector), Some(&lexical));
        let sigma = (((0.4f64).powi(2) * 2.0) / 3.0).sqrt();
        let a = lists.relevance("a", Some(0.9), Some(2.0));
        let expected = (0.9 - (0.5 - 3.0 * sigma)) / (6.0 * sigma);
        assert!((a.vector - 0.75 * expected).abs() < 1e-6, "{a:?}");
        // Equal lexical scores: sigma 0, the middle.
        assert!((a.lexical - 0.25 * 0.5).abs() < 1e-12);
        let far = lists.relevance("x", Some(-1.0), None);
        assert_eq!(far.vector, 0.0);
    }

    #[test]
    fn text_only_relevance_is_relative_to_the_best_hit() {
        let lexical = [l("a", 4.0), l("b", 1.0)];
        let lists = FusedLists::new(
            Metric::Cosine,
            HybridOptions::default(),
            None,
            Some(&lexical),
        );
        assert_eq!(lists.relevance("a", None, Some(4.0)).lexical, 1.0);
        assert_eq!(lists.relevance("b", None, Some(1.0)).lexical, 0.25);
        assert_eq!(lists.relevance("c", Some(0.9), None), Relevance::default());
        assert!(
            HybridOptions {
                lexical_weight: 1.5,
                ..HybridOptions::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            HybridOptions {
                fusion: Fusion::Rrf { rank_constant: 0 },
                lexical_weight: 0.5
            }
            .validate()
            .is_err()
        );
    }
}
