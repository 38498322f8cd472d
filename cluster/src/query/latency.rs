//! Measured latency per peer for replica selection (Cassandra's dynamic snitch, Elasticsearch's
//! adaptive replica selection): an exponentially weighted moving average of each peer's
//! cluster-wide read calls, failures counted as the call's deadline.
//!
//! Invariants: this node ranks first (it costs no network hop), then measured peers by their
//! average, then peers never measured.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::ring::HostId;

/// Weight of the newest sample.
const ALPHA: f64 = 0.25;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_host_ranks_first_then_the_faster_peer_then_unmeasured_ones() {
        let (local, fast, slow, new) = (
            HostId::from_u128(1),
            HostId::from_u128(2),
            HostId::from_u128(3),
            HostId::from_u128(4),
        );
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
}
