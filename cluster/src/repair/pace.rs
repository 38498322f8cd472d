//! The repair pace (`cluster.repair_scan_bytes_per_sec`, docs/cluster.md "Repair pace"): a
//! node-wide cap on the bytes of partitions the scans serving anti-entropy read per second
//! (building Merkle trees, streaming differing leaves), whichever node's repair asked, so a
//! repair leaves the node's writes most of its CPU and disk.
//!
//! Invariants: shared by every repair scan on the node (several repairs asking this node at
//! once share one budget); an idle node banks no credit beyond [`BURST`]. Must never: pace
//! when the cap is 0 (no cap), or block an async worker (scans run on the blocking pool).

use std::time::{Duration, Instant};

use allidb_storage::engine::PartitionVersions;
use parking_lot::Mutex;

use crate::cells;

/// How far ahead of the cap a scan may run before it sleeps.
pub const BURST: Duration = Duration::from_millis(50);

/// Bytes a scan reads between two looks at the pace.
const STEP_BYTES: u64 = 64 << 10;

/// About the longest one paced stream chunk scans, so a chunk call answers well within its
/// deadline whatever the cap.
const CHUNK_SCAN: Duration = Duration::from_secs(10);

/// The node's repair pace; one per node, shared.
#[derive(Debug)]
pub struct ScanPace {
    bytes_per_sec: u64,
    /// When the bytes accounted so far are paid for at the cap.
    paid_until: Mutex<Instant>,
}

impl ScanPace {
    /// A cap of `bytes_per_sec` (0: none).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            paid_until: Mutex::new(Instant::now()),
        }
    }

    /// Accounts for `bytes` read, sleeping the calling thread as long as the cap requires.
    pub fn pace(&self, bytes: u64) {
        if self.bytes_per_sec == 0 || bytes == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let now = Instant::now();
        let due = {
            let mut paid_until = self.paid_until.lock();
            *paid_until = (*paid_until).max(now) + cost;
            *paid_until
        };
        if let Some(ahead) = due.checked_duration_since(now + BURST) {
            std::thread::sleep(ahead);
        }
    }

    /// The bytes of partitions one stream chunk may look at: `most`, or less when the cap
    /// would make scanning that take longer than [`CHUNK_SCAN`] (never below one step).
    pub fn chunk_scan_bytes(&self, most: usize) -> usize {
        if self.bytes_per_sec == 0 {
            return most;
        }
        let paced = (self.bytes_per_sec as f64 * CHUNK_SCAN.as_secs_f64()) as usize;
        paced.clamp(STEP_BYTES as usize, most.max(STEP_BYTES as usize))
    }

    /// `partitions`, paced: each partition's cell bytes are accounted for as it is read.
    pub fn paced<'a, I>(&'a self, partitions: I) -> impl Iterator<Item = I::Item> + 'a
    where
        I: Iterator<Item = allidb_storage::Result<PartitionVersions>> + 'a,
    {
        let mut unpaid = 0u64;
        partitions.inspect(move |partition| {
            if let Ok(partition) = partition {
                unpaid += partition
                    .cells
                    .iter()
                    .map(|c| cells::version_size(c) as u64)
                    .sum::<u64>();
                if unpaid >= STEP_BYTES {
                    self.pace(std::mem::take(&mut unpaid));
                }
            }
        })
    }
}

impl Default for ScanPace {
    /// No cap.
    fn default() -> Self {
        Self::new(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_sharing_a_pace_read_at_its_rate_together() {
        let pace = std::sync::Arc::new(ScanPace::new(4 << 20));
        let started = Instant::now();
        let scans: Vec<_> = (0..2)
            .map(|_| {
                let pace = pace.clone();
                std::thread::spawn(move || {
                    for _ in 0..16 {
                        pace.pace(64 << 10);
                    }
                })
            })
            .collect();
        for scan in scans {
            scan.join().expect("a scan thread");
        }
        // 2 MiB at 4 MiB/s: 0.5 s, less the burst.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(440), "{took:?}");
        assert_eq!(pace.chunk_scan_bytes(64 << 20), 40 << 20, "10 s at 4 MiB/s");
        assert_eq!(ScanPace::new(1).chunk_scan_bytes(64 << 20), 64 << 10);
        let free = ScanPace::default();
        let started = Instant::now();
        free.pace(u64::MAX / 2);
        assert!(started.elapsed() < Duration::from_millis(10));
        assert_eq!(free.chunk_scan_bytes(64 << 20), 64 << 20);
    }
}
