//! The BM25 formula, Lucene's variant (as `bm25s` method "lucene"):
//!
//! ```text
//! idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
//! score(d, q) = sum over distinct t in q held by d of
//!               idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
//! ```
//!
//! with `N` the tenant's live documents, `df` the documents holding `t`, `|d|` the document's
//! length in terms and `avgdl` the average length. Pure functions, no state; every input is a
//! count, so every score is finite and >= 0.

use crate::error::{Error, Result};

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Params {
    /// Term frequency saturation (default 1.2; finite, >= 0).
    pub k1: f64,
    /// Length normalization (default 0.75; in [0, 1]).
    pub b: f64,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

impl Bm25Params {
    /// `k1` finite and >= 0, `b` in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(Error::invalid(format!(
                "bm25 k1 must be finite and >= 0, got {}",
                self.k1
            )));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(Error::invalid(format!(
                "bm25 b must be in [0, 1], got {}",
                self.b
            )));
        }
        Ok(())
    }
}

/// Lucene's inverse document frequency of a term held by `df` of `n` documents.
pub fn idf(n: u64, df: u64) -> f64 {
    let (n, df) = (n as f64, df as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// One term's contribution to a document's score.
pub fn term_score(params: Bm25Params, idf: f64, tf: u32, doc_len: u32, avg_len: f64) -> f64 {
    let tf = f64::from(tf);
    let norm = if avg_len > 0.0 {
        1.0 - params.b + params.b * f64::from(doc_len) / avg_len
    } else {
        1.0
    };
    idf * tf / (tf + params.k1 * norm)
}
