//! The table's bloom filter over entity partitions (bit layout in docs/storage.md §7).
//!
//! Invariant: a key added to the builder always matches the decoded filter (no false negatives);
//! decoding validates the header, so a malformed filter is an error, never a panic.

use xxhash_rust::xxh3::xxh3_64;

use super::format::{ByteReader, Malformed, Parsed};

const FILTER_VERSION: u8 = 1;
const MAX_PROBES: u8 = 30;
const MIN_FILTER_BYTES: usize = 8;

/// The filter hash of a key (one xxh3 per key; the probes are derived by double hashing).
pub(crate) fn filter_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Bit positions of the probes of `hash` in a filter of `bit_count` bits.
fn probe_bits(hash: u64, probes: u8, bit_count: u64) -> impl Iterator<Item = u64> {
    let step = hash.rotate_left(32) | 1;
    (0..u64::from(probes)).map(move |j| hash.wrapping_add(j.wrapping_mul(step)) % bit_count)
}

/// Builds the filter block from the hashes of the distinct filter keys.
pub(crate) fn build_filter(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    if bits_per_key == 0 || hashes.is_empty() {
        return vec![FILTER_VERSION, 0];
    }
    let probes = ((bits_per_key as f64) * std::f64::consts::LN_2).round() as u8;
    let probes = probes.clamp(1, MAX_PROBES);
    let byte_count = (hashes.len().saturating_mul(bits_per_key))
        .div_ceil(8)
        .max(MIN_FILTER_BYTES);
    let bit_count = byte_count as u64 * 8;
    let mut filter = vec![0u8; 2 + byte_count];
    filter[0] = FILTER_VERSION;
    filter[1] = probes;
    let bits = &mut filter[2..];
    for hash in hashes {
        for bit in probe_bits(*hash, probes, bit_count) {
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    filter
}

/// A decoded filter block.
#[derive(Debug)]
pub(crate) struct BloomFilter {
    probes: u8,
    bits: Box<[u8]>,
}

impl BloomFilter {
    pub(crate) fn decode(block: &[u8]) -> Parsed<Self> {
        let mut reader = ByteReader::new(block);
        let version = reader.u8()?;
        if version != FILTER_VERSION {
            return Err(Malformed(format!("unsupported filter version {version}")));
        }
        let probes = reader.u8()?;
        let bits = &block[2..];
        let valid = if bits.is_empty() {
            probes == 0
        } else {
            (1..=MAX_PROBES).contains(&probes)
        };
        if !valid {
            return Err(Malformed(format!(
                "{probes} probes for a {}-byte filter",
                bits.len()
            )));
        }
        Ok(Self {
            probes,
            bits: bits.into(),
        })
    }

    /// False only if no key with this hash was added.
    pub(crate) fn may_contain_hash(&self, hash: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let bit_count = self.bits.len() as u64 * 8;
        probe_bits(hash, self.probes, bit_count)
            .all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Memory held by the filter.
    pub(crate) fn memory_size(&self) -> usize {
        self.bits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter_of(keys: &[Vec<u8>], bits_per_key: usize) -> BloomFilter {
        let hashes: Vec<u64> = keys.iter().map(|k| filter_hash(k)).collect();
        BloomFilter::decode(&build_filter(&hashes, bits_per_key)).unwrap()
    }

    proptest! {
        #[test]
        fn no_false_negatives(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..300), bits_per_key in 0usize..20) {
            let filter = filter_of(&keys, bits_per_key);
            for key in &keys {
                prop_assert!(filter.may_contain_hash(filter_hash(key)));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), hash in any::<u64>()) {
            if let Ok(filter) = BloomFilter::decode(&bytes) {
                let _ = filter.may_contain_hash(hash);
            }
        }
    }

    #[test]
    fn false_positive_rate_is_near_one_percent_at_ten_bits_per_key() {
        let keys: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("tenant\0entity-{i}\0").into_bytes())
            .collect();
        let filter = filter_of(&keys, 10);
        let trials = 100_000;
        let false_positives = (0..trials)
            .filter(|i| {
                let absent = format!("tenant\0other-{i}\0");
                filter.may_contain_hash(filter_hash(absent.as_bytes()))
            })
            .count();
        let rate = false_positives as f64 / trials as f64;
        assert!(rate < 0.03, "false-positive rate {rate}");
        assert!(rate > 0.001, "suspiciously low false-positive rate {rate}");
    }

    #[test]
    fn disabled_filter_matches_everything() {
        let filter = filter_of(&[b"a".to_vec()], 0);
        assert!(filter.may_contain_hash(filter_hash(b"zzz")));
    }
}
