//! Pauses of this process (SIGSTOP, a frozen VM, a stall of the whole host; its start counts as
//! one), the times it loses contact with every peer (a partition that hides it), and the check
//! the coordinator makes after either before it plans a write again (DESIGN.md §6 rule 4,
//! docs/cluster.md "A paused or cut-off node").
//!
//! While a node is paused or cut off, the ring can move on without it: a movement's barriers
//! skip a node the others see down, and a removenode or a replace takes its ranges away. When
//! it resumes, or the partition heals, it still routes by the ring it knew and its own
//! replica's fence is as old, so a write it coordinates at ONE would be acknowledged by its own
//! store on a ring that no longer exists. The same holds for a node started again after it was
//! removed (an old copy of its disk). A thread ticking every quarter of the threshold notices
//! the gap, and a view in which every peer is down after one was up (a request that arrives
//! before the thread ran notices a gap too); the next write then asks every peer which topology
//! version it applied (a `Barrier` at version 0; once a majority of the ring's members has
//! answered, the rest get a short grace, so a frozen peer does not hold the write for a read
//! timeout) and waits until this node applied the newest, or is refused: when a peer refuses
//! this node (it left the ring), or when it cannot catch up in time. While no peer answers, writes go on as before (what ONE promises a node alone) and
//! one of them asks again at most once per threshold, the others not waiting for it.
//!
//! Invariants: a pause is confirmed only by a check started after it that a peer answered; the
//! threshold stays below the time the failure detector takes to see a silent node down, so no
//! movement can skip this node during a pause shorter than it.
//! Must never: hold the writes of a node that was not paused or cut off, or need the topology
//! log's quorum (one peer's answer is enough).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parking_lot::Mutex;

use tokio::sync::watch;

use super::Coordinator;
use super::replicas::RingCheck;
use crate::ClusterError;
use crate::hints::dispatcher::peer_label;
use crate::membership::{ClusterView, NodeStatus};
use crate::ring::HostId;

/// How long a write waits after a pause for this node to apply the version its peers have.
const CATCH_UP: Duration = Duration::from_secs(5);

/// How long the peers that have not answered a check get once a majority of the ring's
/// members has: a frozen peer never answers before its read timeout.
const STRAGGLERS: Duration = Duration::from_millis(200);

/// What may have left this node behind the ring.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cause {
    /// The process started.
    Start,
    /// The process did not run for this long.
    Paused(Duration),
    /// Every peer was seen down after one was up.
    CutOff,
}

#[derive(Debug)]
struct Clock {
    /// The last time this process was seen running.
    last_seen: Instant,
    /// Pauses noticed so far, and how many of them a check confirmed.
    pauses: u64,
    confirmed: u64,
    /// The cause of the last pause.
    cause: Cause,
    /// Whether some peer was up since every peer was last seen down (or since the start).
    in_contact: bool,
    /// When the last check found no peer answering: no check before this instant, and the
    /// writes do not wait for the next one.
    retry_at: Option<Instant>,
}

/// A pause not confirmed yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pause {
    number: u64,
    cause: Cause,
}

impl Pause {
    /// What happened to this node, for messages.
    fn describe(&self) -> String {
        match self.cause {
            Cause::Paused(length) => {
                format!("this node was paused for {} ms", length.as_millis())
            }
            Cause::Start => "this node started".to_owned(),
            Cause::CutOff => "this node was cut off from every peer".to_owned(),
        }
    }
}

/// What a check after a pause concluded, when it did not refuse the write.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Checked {
    /// A peer answered and this node routes by the newest ring its peers applied.
    Current,
    /// No peer answered.
    Alone,
}

/// Notices the pauses of this process; cheap to clone.
#[derive(Clone, Debug)]
pub struct PauseDetector {
    clock: Arc<Mutex<Clock>>,
    threshold: Duration,
}

impl PauseDetector {
    /// A detector of pauses longer than `threshold` and of the loss of every peer in the views
    /// of host `host`, with its ticking thread (which ends once every clone is dropped); the
    /// start of the process is the first pause.
    pub fn start(
        threshold: Duration,
        host: HostId,
        views: watch::Receiver<Arc<ClusterView>>,
    ) -> Result<Self, ClusterError> {
        let detector = Self {
            clock: Arc::new(Mutex::new(Clock {
                last_seen: Instant::now(),
                pauses: 1,
                confirmed: 0,
                cause: Cause::Start,
                in_contact: false,
                retry_at: None,
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
                    let alone = cut_off(&views.borrow(), host);
                    note_contact(&clock, alone);
                }
            })
            .map_err(|source| ClusterError::Thread {
                name: "allidb-pause",
                source,
            })?;
        Ok(detector)
    }

    /// The last pause, while no check has confirmed it and none is due later.
    pub fn unconfirmed(&self) -> Option<Pause> {
        let pause = observe(&self.clock, self.threshold)?;
        let retry_at = self.clock.lock().retry_at;
        retry_at
            .is_none_or(|at| Instant::now() >= at)
            .then_some(pause)
    }

    fn confirm(&self, pause: Pause) {
        let mut clock = self.clock.lock();
        clock.confirmed = clock.confirmed.max(pause.number);
        clock.retry_at = None;
    }

    /// Whether the last check of the pause found no peer answering.
    fn found_no_peer(&self) -> bool {
        self.clock.lock().retry_at.is_some()
    }

    /// No check of the pause before one threshold from now (no peer answered this one).
    fn retry_later(&self) {
        self.clock.lock().retry_at = Some(Instant::now() + self.threshold);
    }

    /// Makes a check put off by [`PauseDetector::retry_later`] due now.
    #[cfg(test)]
    pub(crate) fn retry_now(&self) {
        self.clock.lock().retry_at = Some(Instant::now());
    }

    /// Records a pause of `length` as if the process had just resumed from it.
    #[cfg(test)]
    pub(crate) fn pretend_paused(&self, length: Duration) {
        let mut clock = self.clock.lock();
        clock.pauses += 1;
        clock.cause = Cause::Paused(length);
        clock.retry_at = None;
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
        clock.cause = Cause::Paused(gap);
        clock.retry_at = None;
        metrics::counter!("allidb_process_pauses_total").increment(1);
        tracing::warn!(
            paused_ms = gap.as_millis() as u64,
            "this process was paused; the next write checks the ring with the peers first"
        );
    }
    (clock.confirmed < clock.pauses).then_some(Pause {
        number: clock.pauses,
        cause: clock.cause,
    })
}

/// Whether `view` shows every peer of `host` down (`None`: it has no peer that has not left).
fn cut_off(view: &ClusterView, host: HostId) -> Option<bool> {
    let mut peers = view
        .nodes
        .iter()
        .filter(|(h, node)| **h != host && node.status != NodeStatus::Left)
        .map(|(_, node)| node.status)
        .peekable();
    peers.peek()?;
    Some(peers.all(|status| status == NodeStatus::Down))
}

/// Notes whether every peer is down now ([`cut_off`]); losing the last one after one was up
/// counts as a pause.
fn note_contact(clock: &Mutex<Clock>, alone: Option<bool>) {
    let mut clock = clock.lock();
    match alone {
        Some(false) => clock.in_contact = true,
        Some(true) if clock.in_contact => {
            clock.in_contact = false;
            clock.pauses += 1;
            clock.cause = Cause::CutOff;
            clock.retry_at = None;
            metrics::counter!("allidb_peer_isolations_total").increment(1);
            tracing::warn!(
                "every peer is down; the next write checks the ring with the peers first"
            );
        }
        _ => {}
    }
}

impl Coordinator {
    /// The view to plan a write on: the current one, once a pause of this process (if any)
    /// has been checked with the peers.
    pub(super) async fn planning_view(&self) -> Result<Arc<ClusterView>, ClusterError> {
        let Some(pauses) = &self.inner.pauses else {
            return Ok(self.inner.view.borrow().clone());
        };
        if pauses.unconfirmed().is_some() {
            let _one_check = match pauses.found_no_peer() {
                // While no peer answers, the writes go on as one of them asks again.
                true => match self.inner.checking.try_lock() {
                    Ok(guard) => guard,
                    Err(_) => return Ok(self.inner.view.borrow().clone()),
                },
                false => self.inner.checking.lock().await,
            };
            if let Some(pause) = pauses.unconfirmed() {
                match self.check_ring_after(pause).await? {
                    Checked::Current => pauses.confirm(pause),
                    Checked::Alone => pauses.retry_later(),
                }
            }
        }
        Ok(self.inner.view.borrow().clone())
    }

    /// Asks every peer which topology version it applied and waits until this node applied
    /// the newest; refused when a peer refuses this node or it cannot catch up in time.
    async fn check_ring_after(&self, pause: Pause) -> Result<Checked, ClusterError> {
        let view = self.inner.view.borrow().clone();
        let paused = pause.describe();
        let (newest, unreachable) = self.ask_peers(&view, &paused).await?;
        let own = view.ring.version();
        let Some(newest) = newest else {
            tracing::warn!(
                after = %paused,
                version = own,
                peers = %unreachable.join("; "),
                "no peer answered after a pause; writes are planned on the ring this node has \
                 until one does"
            );
            return Ok(Checked::Alone);
        };
        if own >= newest {
            return Ok(Checked::Current);
        }
        let mut views = self.inner.view.clone();
        let caught_up = tokio::time::timeout(
            CATCH_UP,
            views.wait_for(|view| view.ring.version() >= newest),
        )
        .await;
        match caught_up {
            Ok(Ok(_)) => Ok(Checked::Current),
            _ => Err(ClusterError::Unavailable(format!(
                "{paused}: it routes by topology version {own} and its peers applied {newest}; \
                 retry once it has caught up"
            ))),
        }
    }

    /// Every peer's applied topology version: the newest answered (`None`: no peer answered)
    /// and why the others did not. Once a majority of the ring's members (this node counted)
    /// has answered, the rest get [`STRAGGLERS`] more: a frozen peer holds no write for a
    /// whole read timeout. A refusal by any peer refuses this node at once.
    async fn ask_peers(
        &self,
        view: &ClusterView,
        paused: &str,
    ) -> Result<(Option<u64>, Vec<String>), ClusterError> {
        let peers: Vec<HostId> = view
            .nodes
            .iter()
            .filter(|(host, node)| **host != self.inner.host && node.status != NodeStatus::Left)
            .map(|(host, _)| *host)
            .collect();
        let members = peers.len() + 1;
        let majority = members / 2 + 1;
        let mut checks: FuturesUnordered<_> = peers
            .iter()
            .map(|host| async move {
                (
                    *host,
                    self.inner.replicas.applied_version(view, *host).await,
                )
            })
            .collect();
        let (mut newest, mut unreachable, mut answered) = (None, Vec::new(), 1);
        let mut deadline = None;
        let mut silent: Vec<HostId> = peers.clone();
        loop {
            let next = match deadline {
                None => checks.next().await,
                Some(at) => match tokio::time::timeout_at(at, checks.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        unreachable.extend(silent.iter().map(|host| {
                            format!(
                                "{}: no answer {} ms after a majority answered",
                                peer_label(view, *host),
                                STRAGGLERS.as_millis()
                            )
                        }));
                        break;
                    }
                },
            };
            let Some((host, check)) = next else { break };
            silent.retain(|h| *h != host);
            match check {
                RingCheck::Applied(version) => {
                    newest = newest.max(Some(version));
                    answered += 1;
                }
                RingCheck::Refused(why) => {
                    return Err(ClusterError::TopologyRefused(format!(
                        "{paused}, and {} refuses it: {why}",
                        peer_label(view, host)
                    )));
                }
                RingCheck::Unreachable(why) => {
                    unreachable.push(format!("{}: {why}", peer_label(view, host)));
                }
            }
            if deadline.is_none() && answered >= majority {
                deadline = Some(tokio::time::Instant::now() + STRAGGLERS);
            }
        }
        Ok((newest, unreachable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn host(n: u128) -> HostId {
        HostId::from_u128(n)
    }

    /// Hosts 1 to 3, every one up.
    fn all_up() -> Arc<ClusterView> {
        ClusterView::all_up(Ring::new(
            1,
            (1..=3u128).map(|i| (host(i), vec![(i as u64) << 60])),
        ))
    }

    /// [`all_up`] with the peers of host 1 in `status`.
    fn peers(status: NodeStatus) -> Arc<ClusterView> {
        let mut view = (*all_up()).clone();
        for (h, node) in view.nodes.iter_mut() {
            if *h != host(1) {
                node.status = status;
            }
        }
        Arc::new(view)
    }

    /// A detector on host 1 whose own thread sees every peer up.
    fn detector(threshold: Duration) -> PauseDetector {
        let (_, views) = watch::channel(all_up());
        PauseDetector::start(threshold, host(1), views).expect("a thread")
    }

    #[test]
    fn a_gap_longer_than_the_threshold_is_a_pause_until_confirmed() {
        let detector = detector(Duration::from_millis(400));
        let started = detector.unconfirmed().expect("the start is a pause");
        assert_eq!(started.cause, Cause::Start);
        detector.confirm(started);
        assert_eq!(detector.unconfirmed(), None, "no pause since");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(detector.unconfirmed(), None, "a short gap is no pause");
        detector.clock.lock().last_seen -= Duration::from_secs(2);
        let pause = detector.unconfirmed().expect("a gap of 2 s is a pause");
        assert!(
            matches!(pause.cause, Cause::Paused(l) if l >= Duration::from_secs(2)),
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

    #[test]
    fn losing_every_peer_after_one_was_up_is_a_pause_checked_again_while_no_peer_answers() {
        let detector = detector(Duration::from_secs(60));
        let started = detector.unconfirmed().expect("the start is a pause");
        detector.confirm(started);
        let (up, down) = (peers(NodeStatus::Normal), peers(NodeStatus::Down));
        assert_eq!(cut_off(&peers(NodeStatus::Left), host(1)), None, "no peer");
        note_contact(&detector.clock, cut_off(&down, host(1)));
        assert_eq!(
            detector.unconfirmed(),
            None,
            "peers not heard yet since the start (the start's own check covers it)"
        );
        note_contact(&detector.clock, cut_off(&up, host(1)));
        assert_eq!(detector.unconfirmed(), None, "in contact");
        note_contact(&detector.clock, cut_off(&down, host(1)));
        let pause = detector.unconfirmed().expect("every peer lost");
        assert_eq!(pause.cause, Cause::CutOff);
        note_contact(&detector.clock, cut_off(&down, host(1)));
        assert_eq!(detector.unconfirmed(), Some(pause), "one pause per loss");

        detector.retry_later();
        assert_eq!(detector.unconfirmed(), None, "no peer answered: later");
        detector.retry_now();
        assert_eq!(detector.unconfirmed(), Some(pause), "due again");
        detector.confirm(pause);
        assert_eq!(detector.unconfirmed(), None, "confirmed");
    }
}
