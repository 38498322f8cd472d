//! Delivers stored hints to their target once gossip sees it alive, oldest first, several per
//! `Mutate` call (up to [`HINT_CALL_BYTES`]), throttled, deleting a segment only after the
//! target acknowledged every hint in it (expired hints are dropped and counted instead).
//!
//! Each target is delivered to by its own task (one at a time per target), so a slow or
//! hanging target never holds up the others; the byte cap is shared by the targets being
//! delivered to. A segment damaged in the middle is set aside for an operator (counted) and
//! the segments after it are still delivered.
//!
//! Must never: deliver to a host gossip considers down (it would only time out), or stop for
//! good on an error: a failed delivery is retried next round from the segment's start (hints
//! are idempotent: cells carry their timestamps).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{Hint, HintLog, unix_ms};
use crate::ClusterError;
use crate::cells::{self, ReplicaMutation};
use crate::membership::{CallKind, ClusterView, NodeStatus};
use crate::peer_client::PeerClients;
use crate::ring::HostId;

/// Most hint bytes sent in one `Mutate` call.
pub const HINT_CALL_BYTES: usize = 4 << 20;

/// How the dispatcher paces itself.
#[derive(Clone, Copy, Debug)]
pub struct DispatchOptions {
    /// Time between rounds.
    pub interval: Duration,
    /// Hints older than this are dropped (`cluster.hinted_handoff_window_secs`).
    pub window: Duration,
    /// Most hint bytes delivered per second to all targets (`cluster.hint_delivery_bytes_per_sec`).
    pub bytes_per_sec: u64,
    /// Deadline of one delivery.
    pub timeout: Duration,
}

/// The running dispatcher.
#[derive(Debug)]
pub struct HintDispatcher {
    task: JoinHandle<()>,
}

impl HintDispatcher {
    /// Starts delivering `hints` through `clients` as `view` shows targets alive.
    pub fn spawn(
        hints: Arc<HintLog>,
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        options: DispatchOptions,
    ) -> Self {
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(options.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // One delivery task per target at a time, so a slow or hanging target never holds
            // up the others; dropped (and so aborted) with this task.
            let mut deliveries: JoinSet<HostId> = JoinSet::new();
            let mut delivering: BTreeSet<HostId> = BTreeSet::new();
            let running = Arc::new(AtomicUsize::new(0));
            loop {
                ticker.tick().await;
                while let Some(done) = deliveries.try_join_next() {
                    if let Ok(host) = done {
                        delivering.remove(&host);
                    }
                }
                if deliveries.is_empty() {
                    delivering.clear();
                }
                let view = view.borrow().clone();
                for host in hints.pending().into_keys() {
                    if !delivering.insert(host) {
                        continue;
                    }
                    let (hints, clients, view, running) = (
                        hints.clone(),
                        clients.clone(),
                        view.clone(),
                        running.clone(),
                    );
                    deliveries.spawn(async move {
                        running.fetch_add(1, Ordering::Relaxed);
                        deliver(&hints, &clients, &view, host, options, &running).await;
                        running.fetch_sub(1, Ordering::Relaxed);
                        host
                    });
                }
            }
        });
        Self { task }
    }

    /// Stops delivering (undelivered hints stay on disk for the next start).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The peer label of `host` in metrics: its node name, or its host id.
pub fn peer_label(view: &ClusterView, host: HostId) -> String {
    view.nodes
        .get(&host)
        .map(|node| node.name.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| host.to_string())
}

/// Drops every hint kept for `host`, which left the ring: it owns nothing, and what it was
/// sent reached its ranges' new owners through the movement's write-both step and streaming.
fn drop_left(hints: &HintLog, view: &ClusterView, host: HostId) {
    let peer = peer_label(view, host);
    for segment in hints.seal(host) {
        let count = hints.read(host, segment).map_or(0, |stored| stored.len());
        match hints.remove(host, segment) {
            Ok(()) => {
                metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer.clone(), "reason" => "left")
                    .increment(count as u64);
                tracing::info!(%peer, hints = count, "dropped the hints of a host that left the ring");
            }
            Err(error) => {
                tracing::warn!(%error, %peer, "hints of a host that left the ring not removed")
            }
        }
    }
}

async fn deliver(
    hints: &HintLog,
    clients: &PeerClients,
    view: &ClusterView,
    host: HostId,
    options: DispatchOptions,
    running: &AtomicUsize,
) {
    let Some(node) = view.nodes.get(&host) else {
        return;
    };
    if node.status == NodeStatus::Left {
        drop_left(hints, view, host);
        return;
    }
    let Ok(addr) = node.address_for(CallKind::Hint) else {
        return;
    };
    let peer = peer_label(view, host);
    for segment in hints.seal(host) {
        let stored = match hints.read(host, segment) {
            Ok(stored) => stored,
            Err(error @ ClusterError::CorruptHints { .. }) => {
                // Set aside, so the segments after it are still delivered.
                metrics::counter!("allidb_cluster_hint_segments_damaged_total", "peer" => peer.clone())
                    .increment(1);
                match hints.quarantine(host, segment) {
                    Ok(kept) => tracing::error!(
                        %error,
                        %peer,
                        kept = %kept.display(),
                        "damaged hint segment set aside for an operator; that replica needs a repair"
                    ),
                    Err(quarantine) => tracing::error!(
                        %error,
                        %quarantine,
                        %peer,
                        "damaged hint segment could not be set aside"
                    ),
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, %peer, "hint segment unreadable; retrying next round");
                return;
            }
        };
        let mut live = Vec::new();
        for hint in stored {
            if hint.expired(options.window, unix_ms()) {
                metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer.clone(), "reason" => "expired").increment(1);
            } else {
                live.push(hint);
            }
        }
        for call in calls(&live) {
            let bytes: usize = call.iter().map(Hint::size).sum();
            let mutation = ReplicaMutation {
                drops: call.iter().flat_map(|hint| hint.drops.clone()).collect(),
                cells: call
                    .iter()
                    .flat_map(|hint| cells::batch_versions(&hint.batch))
                    .collect(),
            };
            // Delivered on the current ring's version: a hint is cells with their own timestamps, right
            // on whatever ring delivers them (a stored version would be fenced).
            let ring_version = view.ring.version();
            if let Err(error) = clients
                .mutate(host, addr, &mutation, "hint", ring_version, options.timeout)
                .await
            {
                tracing::debug!(%error, %peer, "hint delivery failed; retrying next round");
                return;
            }
            metrics::counter!("allidb_cluster_hints_delivered_total", "peer" => peer.clone())
                .increment(call.len() as u64);
            if options.bytes_per_sec > 0 {
                // The cap is shared by the targets being delivered to.
                let share =
                    options.bytes_per_sec as f64 / running.load(Ordering::Relaxed).max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / share)).await;
            }
        }
        if let Err(error) = hints.remove(host, segment) {
            tracing::warn!(%error, %peer, "delivered hint segment could not be deleted");
            return;
        }
    }
}

/// Hints sent in one `Mutate`: consecutive hints up to [`HINT_CALL_BYTES`] (a hint larger than
/// that goes alone). Applying several hints as one batch is safe: each cell keeps its own
/// timestamp and last-write-wins does not depend on the order cells arrive in; a tenant drop
/// covers cells by timestamp whether they arrive before or after it.
fn calls(hints: &[Hint]) -> impl Iterator<Item = &[Hint]> {
    let mut rest = hints;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let len = rest
            .iter()
            .take_while(|hint| {
                bytes += hint.size();
                bytes <= HINT_CALL_BYTES
            })
            .count()
            .max(1);
        let (call, tail) = rest.split_at(len);
        rest = tail;
        Some(call)
    })
}

#[cfg(test)]
mod tests {
    use allidb_storage::batch::WriteBatch;

    use super::*;

    fn hint(value_bytes: usize) -> Hint {
        let mut batch = WriteBatch::new();
        batch.put(b"k".to_vec(), 1, vec![0; value_bytes]);
        Hint {
            created_unix_ms: 0,
            ring_version: 0,
            drops: Vec::new(),
            batch,
        }
    }

    #[test]
    fn hints_are_grouped_in_order_up_to_the_call_size() {
        let small = HINT_CALL_BYTES / 4;
        let hints: Vec<Hint> = [small, small, small, HINT_CALL_BYTES * 2, small, 10]
            .into_iter()
            .map(hint)
            .collect();
        let sizes: Vec<usize> = calls(&hints).map(<[Hint]>::len).collect();
        // Three quarter-size hints fit (with their keys), the oversized one goes alone, the
        // last two share a call; every hint is sent once, in order.
        assert_eq!(sizes, [3, 1, 2]);
        assert_eq!(calls(&[]).count(), 0);
    }
}
