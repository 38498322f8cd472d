//! A bandwidth cap: `consume(n)` sleeps until sending `n` more bytes keeps the average since the
//! cap was made at or below its rate. Used by range streams (`cluster.stream_bytes_per_sec`)
//! and backups (`backup.max_bytes_per_sec`).
//!
//! Must never: sleep when the cap is 0 (no cap).

use std::time::{Duration, Instant};

/// Average-rate cap over the life of one transfer.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    start: Instant,
    sent: u64,
}

impl Throttle {
    /// A cap of `bytes_per_sec` (0: none).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Accounts for `bytes` sent, sleeping as long as the cap requires.
    pub async fn consume(&mut self, bytes: u64) {
        let pause = self.pause(bytes);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }

    /// Accounts for `bytes` sent; how long to wait before sending more (zero: none). For a
    /// cap shared by several senders, which sleep outside its lock.
    pub fn pause(&mut self, bytes: u64) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        self.sent += bytes;
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_sec as f64);
        due.saturating_sub(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_average_rate_stays_at_the_cap() {
        let start = tokio::time::Instant::now();
        let mut capped = Throttle::new(1000);
        for _ in 0..10 {
            capped.consume(500).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4900), "{took:?}");
        let start = tokio::time::Instant::now();
        let mut free = Throttle::new(0);
        free.consume(u64::MAX / 2).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
