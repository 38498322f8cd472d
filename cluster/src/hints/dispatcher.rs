//! Delivers stored hints to their target once gossip sees it alive, oldest first, throttled,
//! deleting a segment only after the target acknowledged every hint in it (expired hints are
//! dropped and counted instead).
//!
//! Must never: deliver to a host gossip considers down (it would only time out), or stop for
//! good on an error: a failed delivery is retried next round from the segment's start (hints
//! are idempotent: cells carry their timestamps).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{HintLog, unix_ms};
use crate::cells;
use crate::membership::{ClusterView, NodeStatus};
use crate::peer_client::PeerClients;
use crate::ring::HostId;

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
            loop {
                ticker.tick().await;
                let view = view.borrow().clone();
                for host in hints.pending().into_keys() {
                    deliver(&hints, &clients, &view, host, options).await;
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

async fn deliver(
    hints: &HintLog,
    clients: &PeerClients,
    view: &ClusterView,
    host: HostId,
    options: DispatchOptions,
) {
    let Some(node) = view.nodes.get(&host) else {
        return;
    };
    let (NodeStatus::Normal | NodeStatus::Joining, Some(addr)) = (node.status, node.rpc_addr)
    else {
        return;
    };
    if !node.accepts_writes() {
        return;
    }
    let peer = peer_label(view, host);
    for segment in hints.seal(host) {
        let stored = match hints.read(host, segment) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, %peer, "hint segment unreadable; kept for an operator");
                return;
            }
        };
        for hint in stored {
            if hint.expired(options.window, unix_ms()) {
                metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer.clone(), "reason" => "expired").increment(1);
                continue;
            }
            let bytes = hint.batch.approximate_size() as u64;
            let cells = cells::batch_versions(&hint.batch)
                .iter()
                .map(cells::to_proto)
                .collect();
            if let Err(error) = clients
                .mutate(
                    host,
                    addr,
                    cells,
                    "hint",
                    hint.ring_version,
                    options.timeout,
                )
                .await
            {
                tracing::debug!(%error, %peer, "hint delivery failed; retrying next round");
                return;
            }
            metrics::counter!("allidb_cluster_hints_delivered_total", "peer" => peer.clone())
                .increment(1);
            if options.bytes_per_sec > 0 {
                let pause = Duration::from_secs_f64(bytes as f64 / options.bytes_per_sec as f64);
                tokio::time::sleep(pause).await;
            }
        }
        if let Err(error) = hints.remove(host, segment) {
            tracing::warn!(%error, %peer, "delivered hint segment could not be deleted");
            return;
        }
    }
}
