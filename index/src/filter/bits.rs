//! A dense set of small integers (one bit each), for the payload index's ordinals: the live
//! entities and the per-query membership of a filter ([`super::membership`]).
//!
//! Invariant: no bit at or beyond `len` is set, so counts and complements stay within the
//! universe the set was made for.

/// A fixed-universe bit set over `0..len`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    /// The empty set over `0..len`.
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Size of the universe.
    pub fn universe(&self) -> usize {
        self.len
    }

    /// Grows the universe to `0..len` (never shrinks); new members are absent.
    pub fn grow(&mut self, len: usize) {
        if len > self.len {
            self.len = len;
            self.words.resize(len.div_ceil(64), 0);
        }
    }

    /// Adds `i` (ignored beyond the universe).
    #[inline]
    pub fn insert(&mut self, i: usize) {
        if i < self.len {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }

    /// Removes `i`.
    #[inline]
    pub fn remove(&mut self, i: usize) {
        if let Some(word) = self.words.get_mut(i / 64) {
            *word &= !(1 << (i % 64));
        }
    }

    /// True when `i` is a member.
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|word| word >> (i % 64) & 1 == 1)
    }

    /// Number of members.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Keeps the members also in `other` (a smaller universe counts as absent beyond it).
    pub fn intersect_with(&mut self, other: &Bits) {
        for (i, word) in self.words.iter_mut().enumerate() {
            *word &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// Adds the members of `other` that lie in this universe.
    pub fn union_with(&mut self, other: &Bits) {
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
        self.clear_beyond_len();
    }

    /// Removes the members of `other`.
    pub fn subtract(&mut self, other: &Bits) {
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word &= !theirs;
        }
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    i * 64 + bit
                })
            })
        })
    }

    fn clear_beyond_len(&mut self) {
        let tail = self.len % 64;
        if let (true, Some(last)) = (tail != 0, self.words.last_mut()) {
            *last &= (1u64 << tail) - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn set_operations_stay_within_the_universe() {
        let mut a = Bits::new(70);
        for i in [0, 5, 64, 69, 70, 200] {
            a.insert(i);
        }
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 5, 64, 69]);
        let mut wide = Bits::new(200);
        wide.insert(5);
        wide.insert(150);
        wide.insert(69);
        let mut both = a.clone();
        both.intersect_with(&wide);
        assert_eq!(both.iter().collect::<Vec<_>>(), vec![5, 69]);
        let mut either = a.clone();
        either.union_with(&wide);
        assert_eq!(either.count(), 4);
        a.subtract(&wide);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64]);
        a.remove(64);
        assert!(!a.contains(64) && a.contains(0));
        a.grow(300);
        a.insert(299);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 299]);
    }
}
