//! The admin HTTP server on `server.admin_addr`: `/metrics` (Prometheus text format),
//! `/healthz` (liveness), `/readyz` (readiness), and, with `[cluster]` enabled, the ring as JSON:
//! `/cluster/status`, `/cluster/ring`, `/cluster/endpoints?tenant=T&id=E` (docs/operations.md).
//!
//! Liveness: `/healthz` answers 200 whenever the process can answer at all. Readiness follows
//! [`Readiness`], which the daemon moves forward only: 503 `starting` until the store is open
//! and serving, 200 `ready` after, 503 `stopping` once a graceful shutdown began. While ready,
//! an engine refusing writes makes it 503 `<state>: <reason>` (the engine's
//! [`allidb_storage::engine::Health`]), and 200 again once the engine recovers. The server
//! binds before the store opens (so probes and metrics work during a long recovery) and is
//! stopped last, after the store is closed.
//!
//! Invariants: no route needs or reads an API key, and none exposes tenant data: `/metrics`
//! carries only bounded, tenant-free series ([`crate::telemetry`]). Must never: block an async
//! worker on the store (a scrape renders on the blocking pool), or report ready before the
//! store is attached to the service.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use allidb_index::UnifiedStore;
use allidb_storage::engine::Health;

use allidb_cluster::hints::HintLog;
use allidb_cluster::hints::dispatcher::peer_label;
use allidb_cluster::membership::transport::GossipCounters;
use allidb_cluster::membership::{ClusterView, NodeStatus, NodeView};
use allidb_cluster::repair::history::RepairHistory;
use allidb_cluster::repair::progress::RepairProgress;
use allidb_cluster::repair::unix_secs;
use allidb_cluster::ring::{HostId, TokenSpan};
use allidb_cluster::topology::TopologyLog;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::telemetry::Scrape;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the daemon is in its lifecycle, and the store whose engine health `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    stage: AtomicU8,
    store: OnceLock<Arc<UnifiedStore>>,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// The store is open and the service serves it.
    pub fn set_ready(&self) {
        // `fetch_max`: a shutdown that began first is never undone.
        self.stage.fetch_max(READY, Ordering::AcqRel);
    }

    /// Makes readiness follow `store`'s engine health too (once; a second call is ignored).
    pub fn follow_engine(&self, store: Arc<UnifiedStore>) {
        let _ = self.store.set(store);
    }

    /// A graceful shutdown began.
    pub fn set_stopping(&self) {
        self.stage.store(STOPPING, Ordering::Release);
    }

    /// `true` while serving.
    pub fn is_ready(&self) -> bool {
        self.stage.load(Ordering::Acquire) == READY
    }

    /// The followed engine's health, when it refuses writes.
    fn engine_refusing(&self) -> Option<Health> {
        let health = self.store.get()?.engine().health();
        (!health.is_healthy()).then_some(health)
    }

    fn name(&self) -> &'static str {
        match self.stage.load(Ordering::Acquire) {
            STARTING => "starting",
            READY => "ready",
            _ => "stopping",
        }
    }
}

/// What `/cluster/*` reports: 404 while `[cluster]` is disabled, 503 until membership runs.
#[derive(Debug, Default)]
pub struct ClusterStatus {
    enabled: bool,
    running: OnceLock<RunningCluster>,
}

/// A running membership as the admin server sees it.
#[derive(Debug)]
pub struct RunningCluster {
    /// `cluster.name`.
    pub cluster_name: String,
    /// This node.
    pub host_id: HostId,
    /// `cluster.replication_factor`.
    pub replication_factor: usize,
    /// The membership's view, updated as gossip changes it.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// The hints this node keeps for others.
    pub hints: Arc<HintLog>,
    /// The gossip transport's counters.
    pub gossip: Arc<GossipCounters>,
    /// When each range this node replicates was last repaired completely.
    pub repair_history: Arc<RepairHistory>,
    /// The repair running on this node, if any.
    pub repair_progress: Arc<RepairProgress>,
    /// `storage.gc_grace_secs`: ranges not repaired for longer are overdue.
    pub gc_grace_secs: u64,
    /// This node's member of the topology log (its applied state, leader and voters).
    pub topology: TopologyLog,
}

impl ClusterStatus {
    /// The status of a daemon with `[cluster]` enabled or not.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            running: OnceLock::new(),
        }
    }

    /// The hint log of a running cluster.
    pub fn hints(&self) -> Option<Arc<HintLog>> {
        self.running.get().map(|running| running.hints.clone())
    }

    /// The repair history, once membership started.
    pub fn repair_history(&self) -> Option<Arc<RepairHistory>> {
        self.running
            .get()
            .map(|running| running.repair_history.clone())
    }

    /// The running repair's progress, once membership started.
    pub fn repair_progress(&self) -> Option<Arc<RepairProgress>> {
        self.running
            .get()
            .map(|running| running.repair_progress.clone())
    }

    /// Membership has started (once; a second call is ignored).
    pub fn set_running(&self, running: RunningCluster) {
        let _ = self.running.set(running);
    }

    fn running(&self) -> Result<&RunningCluster, (StatusCode, &'static str)> {
        match self.running.get() {
            Some(running) => Ok(running),
            None if !self.enabled => Err((StatusCode::NOT_FOUND, "cluster disabled\n")),
            None => Err((StatusCode::SERVICE_UNAVAILABLE, "joining\n")),
        }
    }
}

#[derive(Clone, Debug)]
struct AdminState {
    readiness: Arc<Readiness>,
    scrape: Arc<Scrape>,
    cluster: Arc<ClusterStatus>,
}

/// The admin routes over `readiness`, `scrape` and `cluster`.
pub fn router(readiness: Arc<Readiness>, scrape: Scrape, cluster: Arc<ClusterStatus>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/ring", get(cluster_ring))
        .route("/cluster/endpoints", get(cluster_endpoints))
        .with_state(AdminState {
            readiness,
            scrape: Arc::new(scrape),
            cluster,
        })
}

/// The running admin server.
#[derive(Debug)]
pub struct AdminServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Serves [`router`] on `listener` until [`AdminServer::stop`].
    pub fn serve(
        listener: TcpListener,
        readiness: Arc<Readiness>,
        scrape: Scrape,
        cluster: Arc<ClusterStatus>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            axum::serve(listener, router(readiness, scrape, cluster))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self { stop, task }
    }

    /// Stops accepting, lets in-flight probes and scrapes finish, and waits for the server.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the admin server stopped with an error"),
            Err(join) => tracing::warn!(%join, "admin server task"),
        }
    }
}

/// Per-peer gauges of a running cluster, set at scrape time: whether gossip sees each node up,
/// and the hint bytes kept for it. Labels are node names (bounded by the ring's size).
fn record_cluster(cluster: &ClusterStatus) {
    let Ok(running) = cluster.running() else {
        return;
    };
    let view = running.view.borrow().clone();
    let hints = running.hints.pending();
    for node in view.nodes.values() {
        let peer = allidb_cluster::hints::dispatcher::peer_label(&view, node.host_id);
        let up = node.status != NodeStatus::Down;
        metrics::gauge!(CLUSTER_NODE_UP, "peer" => peer.clone()).set(if up { 1.0 } else { 0.0 });
        let pending = hints.get(&node.host_id).copied().unwrap_or(0);
        metrics::gauge!(CLUSTER_HINTS_PENDING_BYTES, "peer" => peer).set(pending as f64);
    }
    let gossip = &running.gossip;
    metrics::counter!(GOSSIP_REJECTED).absolute(gossip.rejected.load(Ordering::Relaxed));
    metrics::counter!(GOSSIP_SOCKET_ERRORS).absolute(gossip.socket_errors.load(Ordering::Relaxed));
}

/// `1` while gossip sees the node up (normal or joining), `0` while it is down.
const CLUSTER_NODE_UP: &str = "allidb_cluster_node_up";
/// Bytes of hints this node keeps for the node.
const CLUSTER_HINTS_PENDING_BYTES: &str = "allidb_cluster_hints_pending_bytes";
/// Gossip datagrams dropped because their frame did not verify (wrong secret, other cluster).
const GOSSIP_REJECTED: &str = "allidb_cluster_gossip_rejected_datagrams_total";
/// Gossip socket errors absorbed (the gossip loop goes on).
const GOSSIP_SOCKET_ERRORS: &str = "allidb_cluster_gossip_socket_errors_total";

async fn metrics(State(state): State<AdminState>) -> Response {
    record_cluster(&state.cluster);
    let scrape = Arc::clone(&state.scrape);
    match tokio::task::spawn_blocking(move || scrape.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let readiness = &state.readiness;
    if !readiness.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", readiness.name()),
        )
            .into_response();
    }
    // The health check may ask the file system for its free space: on the blocking pool.
    let readiness = Arc::clone(readiness);
    let refusing = tokio::task::spawn_blocking(move || readiness.engine_refusing()).await;
    match refusing {
        Err(error) => {
            tracing::error!(%error, "reading the engine health failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the engine health failed\n",
            )
                .into_response()
        }
        Ok(None) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Ok(Some(health)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{}: {}\n",
                health.state.as_str(),
                health.reason.unwrap_or_default()
            ),
        )
            .into_response(),
    }
}

fn node_json(node: &NodeView) -> serde_json::Value {
    json!({
        "host_id": node.host_id.to_string(),
        "name": node.name,
        "status": node.status.as_str(),
        "gossip_addr": node.gossip_addr.to_string(),
        "rpc_addr": node.rpc_addr.map(|a| a.to_string()),
        "generation": node.generation,
        "tokens": node.tokens.len(),
        "in_gossip": node.in_gossip,
        "load_bytes": node.load_bytes,
        "engine_state": node.engine_state.map(|state| state.as_str()),
    })
}

/// Every known node with its status and owned share (like `nodetool status`).
async fn cluster_status(State(state): State<AdminState>) -> Response {
    let running = match state.cluster.running() {
        Ok(running) => running,
        Err(refusal) => return refusal.into_response(),
    };
    let view = running.view.borrow().clone();
    let topology = running.topology.state();
    let owns = view.ring.ownership(running.replication_factor);
    let hints = running.hints.pending();
    let nodes: Vec<_> = view
        .nodes
        .values()
        .map(|node| {
            let mut entry = node_json(node);
            entry["owns"] = json!(owns.get(&node.host_id).copied().unwrap_or(0.0));
            entry["hints_pending_bytes"] = json!(hints.get(&node.host_id).copied().unwrap_or(0));
            entry
        })
        .collect();
    let current: Vec<TokenSpan> = view
        .ring
        .ranges_replicated_by(running.host_id, running.replication_factor)
        .into_iter()
        .map(|(range, _)| range.span())
        .collect();
    let ages = running
        .repair_history
        .ages(&current, unix_secs(), running.gc_grace_secs);
    axum::Json(json!({
        "cluster_name": running.cluster_name,
        "host_id": running.host_id.to_string(),
        "replication_factor": running.replication_factor,
        "ring_version": view.ring.version(),
        "nodes": nodes,
        "movement": topology.movement.as_ref().map(|m| json!({
            "id": m.id,
            "kind": m.kind.as_str(),
            "host_id": m.host.to_string(),
            "name": peer_label(&view, m.host),
            "step": m.step.as_str(),
            "replaced": m.replaced.map(|h| json!({
                "host_id": h.to_string(),
                "name": peer_label(&view, h),
            })),
        })),
        "cleanups": topology.cleanups.iter().map(|(host, id)| json!({
            "id": id,
            "host_id": host.to_string(),
            "name": peer_label(&view, *host),
        })).collect::<Vec<_>>(),
        "topology_log": {
            "leader": running.topology.known_leader().map(|h| json!({
                "host_id": h.to_string(),
                "name": peer_label(&view, h),
            })),
            "voters": running
                .topology
                .voters()
                .into_iter()
                .map(|h| peer_label(&view, h))
                .collect::<Vec<_>>(),
        },
        "repair": {
            "ranges": ages.ranges,
            "overdue_ranges": ages.overdue,
            "oldest_repair_age_secs": ages.oldest_age_secs,
            "last_repair_unix_secs": ages.last_repair_secs,
            "gc_grace_secs": running.gc_grace_secs,
            "running": running.repair_progress.current().map(|r| json!({
                "started_unix_secs": r.started_unix_secs,
                "preview": r.preview,
                "step": r.step.as_str(),
                "ranges": r.ranges,
                "ranges_done": r.ranges_done,
                "ranges_differing": r.ranges_differing,
                "partitions_differing": r.partitions_differing,
                "partitions_repaired": r.partitions_repaired,
                "cells_streamed": r.cells_streamed,
                "bytes_streamed": r.bytes_streamed,
            })),
        },
    }))
    .into_response()
}

/// Every token range with its owner. Tokens are decimal strings: they exceed JSON's exact
/// integers.
async fn cluster_ring(State(state): State<AdminState>) -> Response {
    let running = match state.cluster.running() {
        Ok(running) => running,
        Err(refusal) => return refusal.into_response(),
    };
    let view = running.view.borrow().clone();
    let name = |host: HostId| view.nodes.get(&host).map(|n| n.name.clone());
    let ranges: Vec<_> = view
        .ring
        .ranges()
        .iter()
        .map(|range| {
            json!({
                "start": range.start.to_string(),
                "end": range.end.to_string(),
                "host_id": range.owner.to_string(),
                "name": name(range.owner),
            })
        })
        .collect();
    axum::Json(json!({"ring_version": view.ring.version(), "ranges": ranges})).into_response()
}

/// `?tenant=T&id=E`.
#[derive(Debug, serde::Deserialize)]
struct EndpointsQuery {
    tenant: Option<String>,
    id: Option<String>,
}

/// The replicas of one entity, in walk order.
async fn cluster_endpoints(
    State(state): State<AdminState>,
    Query(query): Query<EndpointsQuery>,
) -> Response {
    let running = match state.cluster.running() {
        Ok(running) => running,
        Err(refusal) => return refusal.into_response(),
    };
    let (Some(tenant), Some(id)) = (query.tenant, query.id) else {
        return (
            StatusCode::BAD_REQUEST,
            "query parameters `tenant` and `id` are required\n",
        )
            .into_response();
    };
    let view = running.view.borrow().clone();
    let token = allidb_cluster::token(&tenant, &id);
    let replicas: Vec<_> = view
        .ring
        .replicas(token, running.replication_factor)
        .hosts()
        .iter()
        .filter_map(|host| view.nodes.get(host).map(node_json))
        .collect();
    axum::Json(json!({
        "tenant": tenant,
        "id": id,
        "token": token.to_string(),
        "replicas": replicas,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let readiness = Readiness::default();
        assert_eq!(readiness.name(), "starting");
        assert!(!readiness.is_ready());
        readiness.set_ready();
        assert!(readiness.is_ready());
        readiness.set_stopping();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.name(), "stopping");
        readiness.set_ready();
        assert_eq!(readiness.name(), "stopping");
    }
}
