//! Hybrid logical clock in microseconds (DESIGN.md §2).
//!
//! Invariant: [`HybridClock::now`] is strictly increasing for the life of the clock, even if the
//! wall clock steps back, and [`HybridClock::observe`] moves it past any timestamp received from
//! another node so causally later writes always get larger timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Timestamp;

/// A monotonic hybrid logical clock shared by all writers of one node.
#[derive(Debug, Default)]
pub struct HybridClock {
    last: AtomicU64,
}

impl HybridClock {
    /// A clock that starts at the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next timestamp: max(wall clock, last + 1).
    pub fn now(&self) -> Timestamp {
        let wall = wall_micros();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Advances the clock to at least `ts` (a timestamp seen in recovered data or from a peer).
    pub fn observe(&self, ts: Timestamp) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn wall_micros() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Wall-clock nanoseconds since the Unix epoch, at microsecond precision (the unit of the
/// timestamps clients see, such as an entity's expiry time).
pub fn wall_nanos() -> i64 {
    i64::try_from(wall_micros())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_observes() {
        let clock = HybridClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        clock.observe(b + 1_000_000_000);
        assert!(clock.now() > b + 1_000_000_000);
    }
}
