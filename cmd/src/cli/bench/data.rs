//! The synthetic data of `allidb bench`: seeded vectors, the same for `bench ingest` and
//! `bench query` without storing them, and the benchmark's entities.
//!
//! Invariant: a vector depends only on (seed, stream, index, dimension).

use allidb_api::pb;

/// SplitMix64: a fast, well-mixed deterministic sequence (not for cryptography).
#[derive(Clone, Debug)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub(super) fn next_unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in [0, bound); `bound` > 0.
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The synthetic vector of entity `index` (or of query `index` with another `stream`).
pub(super) fn synthetic_vector(seed: u64, stream: u64, index: u64, dim: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03), stream);
    (0..dim).map(|_| rng.next_unit()).collect()
}

/// Stream of entity vectors; queries use another stream.
pub(super) const ENTITY_STREAM: u64 = 1;
pub(super) const QUERY_STREAM: u64 = 2;
/// Stream of the entities' texts.
const TEXT_STREAM: u64 = 3;

/// A benchmark entity: type `bench`, its vector (none when empty).
pub(super) fn bench_entity(id: String, vector: Vec<f32>) -> pb::Entity {
    let embeddings = (!vector.is_empty())
        .then(|| pb::VectorEmbedding {
            vector,
            ..Default::default()
        })
        .into_iter()
        .collect();
    pb::Entity {
        entity_id: id,
        entity_type: "bench".to_owned(),
        embeddings,
        ..Default::default()
    }
}

/// Syllables of the synthetic words: three make a word, so the vocabulary has 4,096 words.
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "va", "ze", "bo", "du", "fi", "gu", "ho", "je",
];

/// About `bytes` bytes (never more) of synthetic words for entity `index`, drawn uniformly from
/// the 4,096-word vocabulary.
pub(super) fn synthetic_text(seed: u64, index: u64, bytes: usize) -> String {
    let mut rng = SplitMix64::new(
        seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03),
        TEXT_STREAM,
    );
    let mut text = String::with_capacity(bytes);
    // Each word is 6 bytes and a space.
    while text.len() + 7 <= bytes {
        let word = rng.below(4096) as usize;
        for shift in [8, 4, 0] {
            text.push_str(SYLLABLES[(word >> shift) & 15]);
        }
        text.push(' ');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_vectors_are_deterministic_bounded_and_distinct() {
        let a = synthetic_vector(7, ENTITY_STREAM, 3, 384);
        assert_eq!(a, synthetic_vector(7, ENTITY_STREAM, 3, 384));
        assert_ne!(a, synthetic_vector(7, ENTITY_STREAM, 4, 384));
        assert_ne!(a, synthetic_vector(7, QUERY_STREAM, 3, 384));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean: f32 = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.15, "{mean}");
    }

    #[test]
    fn synthetic_texts_are_deterministic_words_within_the_size() {
        let text = synthetic_text(7, 3, 100);
        assert_eq!(text, synthetic_text(7, 3, 100));
        assert_ne!(text, synthetic_text(7, 4, 100));
        assert!(text.len() <= 100 && text.len() > 90, "{}", text.len());
        assert!(text.split_whitespace().all(|w| w.len() == 6), "{text}");
        assert!(synthetic_text(7, 3, 6).is_empty());
        assert!(bench_entity("e".into(), Vec::new()).embeddings.is_empty());
    }
}
