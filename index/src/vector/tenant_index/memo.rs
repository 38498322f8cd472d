//! [`FilterMemo`]: what a filter said of each internal vector id, two bits per id, shared by
//! the graph walks of one filter while the facts it reads stay unchanged; filled by the walks
//! as they evaluate the filter, or up front from the payload index's membership.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// What a filter said of each internal id, remembered across the searches of one filter while
/// the entities' facts do not change (the caller keys it, see `TenantIndexes::filter_memo`).
///
/// Two bits per internal id (known, allowed), in relaxed atomics: concurrent searches fill it
/// together, and a race only evaluates an id twice. An internal id's entity never changes
/// (ids are never reused), so an answer stays true as long as the facts the filter read do;
/// ids beyond the memo's capacity (created after it) are evaluated each time.
#[derive(Debug)]
pub struct FilterMemo {
    words: Box<[AtomicU64]>,
}

impl FilterMemo {
    /// A memo knowing nothing, for internal ids below `ids`.
    pub fn new(ids: usize) -> Self {
        Self {
            words: (0..ids.div_ceil(32)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A memo for internal ids below `ids` that already knows what `answer` says (`None`: not
    /// known yet, evaluated by the first search that needs it). The caller guarantees the
    /// answers are the filter's.
    pub fn from_answers(ids: usize, answer: impl Fn(usize) -> Option<bool>) -> Self {
        let words = (0..ids.div_ceil(32))
            .map(|w| {
                let mut word = 0u64;
                for id in w * 32..((w + 1) * 32).min(ids) {
                    if let Some(allowed) = answer(id) {
                        word |= (1 | (u64::from(allowed) << 1)) << ((id % 32) * 2);
                    }
                }
                AtomicU64::new(word)
            })
            .collect();
        Self { words }
    }

    /// What the filter said of `id`, computing (and remembering) it with `evaluate` the first
    /// time.
    #[inline]
    pub fn get_or(&self, id: usize, evaluate: impl FnOnce() -> bool) -> bool {
        let Some(word) = self.words.get(id / 32) else {
            return evaluate();
        };
        let shift = (id % 32) * 2;
        let bits = word.load(Relaxed) >> shift;
        if bits & 1 == 1 {
            return bits & 2 == 2;
        }
        let allowed = evaluate();
        word.fetch_or((1 | (u64::from(allowed) << 1)) << shift, Relaxed);
        allowed
    }

    /// The remembered answer for `id`, if any.
    #[inline]
    pub fn known(&self, id: usize) -> Option<bool> {
        let bits = self.words.get(id / 32)?.load(Relaxed) >> ((id % 32) * 2);
        (bits & 1 == 1).then_some(bits & 2 == 2)
    }

    /// Internal ids this memo can hold.
    pub fn capacity(&self) -> usize {
        self.words.len() * 32
    }
}
