//! Measured latency per peer for replica selection (Cassandra's dynamic snitch, Elasticsearch's
//! adaptive replica selection) and speculative reads (Cassandra's rapid read protection): an
//! exponentially weighted moving average of one kind of call to each peer. The coordinator
//! keeps one of its point reads, the cluster-wide query one of its calls; a call still
//! unanswered when its caller stops waiting counts as the time waited.
//!
//! Invariants: this node ranks first (it costs no network hop), then measured peers by their
//! average, then peers never measured; a read is given [`SPECULATE_FACTOR`] times its host's
//! average, within [`MIN_SPECULATE_AFTER`] and [`MAX_SPECULATE_AFTER`], before another replica
//! is asked too. Must never: block (one short lock per call).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::ring::HostId;

/// Weight of the newest sample.
const ALPHA: f64 = 0.25;

/// A read unanswered after this many times its host's average is taken as slow.
pub const SPECULATE_FACTOR: f64 = 4.0;

/// The shortest wait before another replica is asked: below it a second read costs more than
/// the wait it saves (scheduling noise on a loaded machine is of this order).
pub const MIN_SPECULATE_AFTER: Duration = Duration::from_millis(10);

/// The longest wait before another replica is asked, and the wait for a host never measured.
pub const MAX_SPECULATE_AFTER: Duration = Duration::from_millis(200);

/// Latency averages per peer.
#[derive(Debug, Default)]
pub struct PeerLatency {
    micros: Mutex<HashMap<HostId, f64>>,
}

impl PeerLatency {
    /// Records one call to `host` that took `took`.
    pub fn record(&self, host: HostId, took: Duration) {
        let sample = took.as_secs_f64() * 1e6;
        let mut micros = self.micros.lock();
        let average = micros.entry(host).or_insert(sample);
        *average += ALPHA * (sample - *average);
    }

    /// The rank of `host` seen from `local` (smaller is preferred): this node, then peers by
    /// average latency (whole microseconds), unmeasured peers last.
    pub fn rank(&self, local: HostId, host: HostId) -> (u8, u64) {
        if host == local {
            return (0, 0);
        }
        match self.micros.lock().get(&host) {
            Some(average) => (1, *average as u64),
            None => (2, 0),
        }
    }

    /// How long a read of `host` may go unanswered before another replica is asked too.
    pub fn speculate_after(&self, host: HostId) -> Duration {
        match self.micros.lock().get(&host) {
            Some(average) => Duration::from_micros((average * SPECULATE_FACTOR) as u64)
                .clamp(MIN_SPECULATE_AFTER, MAX_SPECULATE_AFTER),
            None => MAX_SPECULATE_AFTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> [HostId; 4] {
        [1, 2, 3, 4].map(HostId::from_u128)
    }

    #[test]
    fn the_local_host_ranks_first_then_the_faster_peer_then_unmeasured_ones() {
        let [local, fast, slow, new] = hosts();
        let latency = PeerLatency::default();
        latency.record(fast, Duration::from_millis(1));
        latency.record(slow, Duration::from_millis(9));
        let mut hosts = vec![new, slow, fast, local];
        hosts.sort_by_key(|h| latency.rank(local, *h));
        assert_eq!(hosts, [local, fast, slow, new]);
        // The average moves a quarter of the way to each new sample.
        for _ in 0..10 {
            latency.record(slow, Duration::from_micros(100));
        }
        assert!(latency.rank(local, slow) < latency.rank(local, fast));
    }

    #[test]
    fn a_read_is_given_four_times_its_hosts_average_within_the_bounds() {
        let [measured, quick, sluggish, new] = hosts();
        let latency = PeerLatency::default();
        latency.record(measured, Duration::from_millis(20));
        latency.record(quick, Duration::from_micros(300));
        latency.record(sluggish, Duration::from_secs(2));
        assert_eq!(latency.speculate_after(measured), Duration::from_millis(80));
        assert_eq!(latency.speculate_after(quick), MIN_SPECULATE_AFTER);
        assert_eq!(latency.speculate_after(sluggish), MAX_SPECULATE_AFTER);
        assert_eq!(latency.speculate_after(new), MAX_SPECULATE_AFTER);
    }
}
