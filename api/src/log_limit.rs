//! Rate limiting of repetitive log lines (failed authentications): at most one line per
//! interval, each line saying how many events were not logged since the previous one.
//!
//! The limiter owns only the decision "log this event now, or count it as suppressed"; the
//! caller passes the current time ([`LogRateLimiter::admit`] takes an `Instant`), so tests
//! drive it with a synthetic clock. Invariants: the first event is always logged; two logged
//! events are at least `interval` apart; every event is either logged or counted in the
//! `suppressed` figure of the next logged line (none is lost from the counts). It never logs by
//! itself and never blocks for long (one short critical section per event).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The decision for one event that is logged: how many events were suppressed before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Events since the previous logged line that were not logged.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct LimiterState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// Lets one event per `interval` through and counts the others.
#[derive(Debug)]
pub struct LogRateLimiter {
    interval: Duration,
    state: Mutex<LimiterState>,
}

impl LogRateLimiter {
    /// A limiter letting at most one event per `interval` be logged.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(LimiterState::default()),
        }
    }

    /// Records one event at `now`: `Some` when it should be logged (with the number of events
    /// suppressed since the last logged one), `None` when it is suppressed.
    pub fn admit(&self, now: Instant) -> Option<Admitted> {
        // The state stays consistent whatever a panicking holder did: two plain fields.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last_logged = Some(now);
            Some(Admitted {
                suppressed: std::mem::take(&mut state.suppressed),
            })
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carrying_the_suppressed_count() {
        let limiter = LogRateLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |millis: u64| t0 + Duration::from_millis(millis);

        assert_eq!(limiter.admit(at(0)), Some(Admitted { suppressed: 0 }));
        for millis in [1, 10, 500, 999] {
            assert_eq!(limiter.admit(at(millis)), None, "at {millis} ms");
        }
        assert_eq!(limiter.admit(at(1000)), Some(Admitted { suppressed: 4 }));
        assert_eq!(limiter.admit(at(1999)), None);
        // A quiet period: the next event is logged at once, with the one suppressed before.
        assert_eq!(limiter.admit(at(60_000)), Some(Admitted { suppressed: 1 }));
        assert_eq!(limiter.admit(at(61_000)), Some(Admitted { suppressed: 0 }));
    }

    #[test]
    fn a_clock_going_backwards_suppresses_instead_of_panicking() {
        let limiter = LogRateLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(limiter.admit(t0).is_some());
        assert_eq!(limiter.admit(t0 - Duration::from_secs(5)), None);
        assert_eq!(
            limiter.admit(t0 + Duration::from_secs(1)),
            Some(Admitted { suppressed: 1 })
        );
    }

    #[test]
    fn every_event_is_logged_or_counted_under_concurrency() {
        let limiter = LogRateLimiter::new(Duration::from_secs(3600));
        let now = Instant::now();
        let logged: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..1000).filter(|_| limiter.admit(now).is_some()).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap() as u64).sum()
        });
        assert_eq!(logged, 1);
        let flushed = limiter.admit(now + Duration::from_secs(3600)).unwrap();
        assert_eq!(flushed.suppressed, 3999);
    }
}
