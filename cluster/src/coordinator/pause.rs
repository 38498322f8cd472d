//! Pauses of this process (SIGSTOP, a frozen VM, a stall of the whole host; its start counts as
//! one) and the check the coordinator makes after one before it plans a write again (DESIGN.md
//! §6 rule 4, docs/cluster.md "A paused node").
//!
//! While a node is paused, the ring can move on without it: a movement's barriers skip a node
//! the others see down, and a removenode or a replace takes its ranges away. When it resumes it
//! still routes by the ring it knew and its own replica's fence is as old, so a write it
//! coordinates at ONE would be acknowledged by its own store on a ring that no longer exists.
//! The same holds for a node started again after it was removed (an old copy of its disk).
//! A thread ticking every quarter of the threshold notices the gap (a request that arrives
//! before the thread ran notices it too); the next write then asks every peer which topology
//! version it applied (a `Barrier` at version 0) and waits until this node applied the newest,
//! or is refused: when a peer refuses this node (it left the ring), or when it cannot catch up
//! in time.
//!
//! Invariants: a pause is confirmed only by a check started after it; the threshold stays below
//! the time the failure detector takes to see a silent node down, so no movement can skip this
//! node during a pause shorter than it.
//! Must never: hold the writes of a node that was not paused, or need the topology log's quorum
//! (one peer's answer is enough; with no peer reachable, the write goes on as before the pause).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use parking_lot::Mutex;

use super::Coordinator;
use super::replicas::RingCheck;
use crate::ClusterError;
use crate::hints::dispatcher::peer_label;
use crate::membership::{ClusterView, NodeStatus};
use crate::ring::HostId;

/// How long a write waits after a pause for this node to apply the version its peers have.
const CATCH_UP: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Clock {
    /// The last time this process was seen running.
    last_seen: Instant,
    /// Pauses noticed so far, and how many of them a check confirmed.
    pauses: u64,
    confirmed: u64,
    /// The length of the last pause (`None`: the start of the process).
    length: Option<Duration>,
}

/// A pause not confirmed yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pause {
    number: u64,
    length: Option<Duration>,
}

impl Pause {
    /// What happened to this node, for messages.
    fn describe(&self) -> String {
        match self.length {
            Some(length) => format!("this node was paused for {} ms", length.as_millis()),
            None => "this node started".to_owned(),
        }
    }
}

/// Notices the pauses of this process; cheap to clone.
#[derive(Clone, Debug)]
pub struct PauseDetector {
    clock: Arc<Mutex<Clock>>,
    threshold: Duration,
}

impl PauseDetector {
    /// A detector of pauses longer than `threshold`, with its ticking thread (which ends once
    /// every clone is dropped); the start of the process is the first pause.
    pub fn start(threshold: Duration) -> Result<Self, ClusterError> {
        let detector = Self {
            clock: Arc::new(Mutex::new(Clock {
                last_seen: Instant::now(),
                pauses: 1,
                confirmed: 0,
                length: None,
            })),
            threshold,
        };
        let clock: Weak<Mutex<Clock>> = Arc::downgrade(&detector.clock);
        std::thread::Builder::new()
            .name("allidb-pause".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(threshold / 4);
                    let Some(clock) = clock.upgrade() else {
                        return;
                    };
                    observe(&clock, threshold);
                }
            })
            .map_err(|source| ClusterError::Thread {
                name: "allidb-pause",
                source,
            })?;
        Ok(detector)
    }

    /// The last pause, while no check has confirmed it.
    pub fn unconfirmed(&self) -> Option<Pause> {
        observe(&self.clock, self.threshold)
    }

    fn confirm(&self, pause: Pause) {
        let mut clock = self.clock.lock();
        clock.confirmed = clock.confirmed.max(pause.number);
    }

    /// Records a pause of `length` as if the process had just resumed from it.
    #[cfg(test)]
    pub(crate) fn pretend_paused(&self, length: Duration) {
        let mut clock = self.clock.lock();
        clock.pauses += 1;
        clock.length = Some(length);
    }
}

/// Notes that the process runs now; the unconfirmed pause, counting one that just ended.
fn observe(clock: &Mutex<Clock>, threshold: Duration) -> Option<Pause> {
    let now = Instant::now();
    let mut clock = clock.lock();
    let gap = now.saturating_duration_since(clock.last_seen);
    clock.last_seen = clock.last_seen.max(now);
    if gap > threshold {
        clock.pauses += 1;
        clock.length = Some(gap);
        metrics::counter!("allidb_process_pauses_total").increment(1);
        tracing::warn!(
            paused_ms = gap.as_millis() as u64,
            "this process was paused; the next write checks the ring with the peers first"
        );
    }
    (clock.confirmed < clock.pauses).then_some(Pause {
        number: clock.pauses,
        length: clock.length,
    })
}

impl Coordinator {
    /// The view to plan a write on: the current one, once a pause of this process (if any)
    /// has been checked with the peers.
    pub(super) async fn planning_view(&self) -> Result<Arc<ClusterView>, ClusterError> {
        if self.inner.pauses.unconfirmed().is_some() {
            let _one_check = self.inner.checking.lock().await;
            if let Some(pause) = self.inner.pauses.unconfirmed() {
                self.check_ring_after(pause).await?;
                self.inner.pauses.confirm(pause);
            }
        }
        Ok(self.inner.view.borrow().clone())
    }

    /// Asks every peer which topology version it applied and waits until this node applied
    /// the newest; refused when a peer refuses this node or it cannot catch up in time.
    async fn check_ring_after(&self, pause: Pause) -> Result<(), ClusterError> {
        let view = self.inner.view.borrow().clone();
        let paused = pause.describe();
        let peers: Vec<HostId> = view
            .nodes
            .iter()
            .filter(|(host, node)| **host != self.inner.host && node.status != NodeStatus::Left)
            .map(|(host, _)| *host)
            .collect();
        let checks = peers
            .iter()
            .map(|host| self.inner.replicas.applied_version(&view, *host));
        let mut newest = None;
        let mut unreachable = Vec::new();
        for (host, check) in peers.iter().zip(join_all(checks).await) {
            match check {
                RingCheck::Applied(version) => newest = newest.max(Some(version)),
                RingCheck::Refused(why) => {
                    return Err(ClusterError::TopologyRefused(format!(
                        "{paused}, and {} refuses it: {why}",
                        peer_label(&view, *host)
                    )));
                }
                RingCheck::Unreachable(why) => {
                    unreachable.push(format!("{}: {why}", peer_label(&view, *host)));
                }
            }
        }
        let own = view.ring.version();
        let Some(newest) = newest else {
            tracing::warn!(
                after = %paused,
                version = own,
                peers = %unreachable.join("; "),
                "no peer answered after a pause; writes are planned on the ring this node has"
            );
            return Ok(());
        };
        if own >= newest {
            return Ok(());
        }
        let mut views = self.inner.view.clone();
        let caught_up = tokio::time::timeout(
            CATCH_UP,
            views.wait_for(|view| view.ring.version() >= newest),
        )
        .await;
        match caught_up {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClusterError::Unavailable(format!(
                "{paused}: it routes by topology version {own} and its peers applied {newest}; \
                 retry once it has caught up"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_longer_than_the_threshold_is_a_pause_until_confirmed() {
        let detector = PauseDetector::start(Duration::from_millis(400)).expect("a thread");
        let started = detector.unconfirmed().expect("the start is a pause");
        assert_eq!(started.length, None);
        detector.confirm(started);
        assert_eq!(detector.unconfirmed(), None, "no pause since");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(detector.unconfirmed(), None, "a short gap is no pause");
        detector.clock.lock().last_seen -= Duration::from_secs(2);
        let pause = detector.unconfirmed().expect("a gap of 2 s is a pause");
        assert!(
            pause.length.is_some_and(|l| l >= Duration::from_secs(2)),
            "{pause:?}"
        );
        assert_eq!(
            detector.unconfirmed(),
            Some(pause),
            "seen again until confirmed"
        );
        detector.confirm(pause);
        assert_eq!(detector.unconfirmed(), None, "confirmed");
    }
}
