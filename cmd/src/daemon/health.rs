//! `grpc.health.v1` of the daemon: the status of the server as a whole and of `allidb.AlliDB`,
//! set together, and kept in step with the storage engine while serving (NOT_SERVING while it
//! refuses writes, SERVING once it recovers; on a ring the engine's state is gossiped too).
//!
//! Invariants: the watch changes the status only when the engine's health changes, and logs
//! each change with its reason; a failed health read is logged and read again at the next poll.
//! Must never: end on its own (it runs until the daemon aborts it at shutdown).

use std::sync::Arc;
use std::time::Duration;

use allidb_api::pb::allidb_server::AlliDbServer;
use allidb_api::service::AlliDbService;
use allidb_cluster::membership::OwnKeys;
use allidb_index::UnifiedStore;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Sets `grpc.health.v1` for the server as a whole (`""`) and for `allidb.AlliDB`.
pub(super) async fn set_serving(health: &HealthReporter, serving: bool) {
    if serving {
        health.set_serving::<AlliDbServer<AlliDbService>>().await;
        health.set_service_status("", ServingStatus::Serving).await;
    } else {
        health
            .set_not_serving::<AlliDbServer<AlliDbService>>()
            .await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
    }
}

/// How often [`watch_engine_health`] reads the engine health.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Keeps `grpc.health.v1` in step with the engine: NOT_SERVING while it refuses writes, SERVING
/// again once it recovers; each change is logged with the reason. On a ring, the engine's state
/// is also gossiped (`gossip`), from the first poll on and at every change, so coordinators stop
/// sending writes to this node while it refuses them. Runs until aborted.
pub(super) fn watch_engine_health(
    store: Arc<UnifiedStore>,
    health: HealthReporter,
    gossip: Option<OwnKeys>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut serving = true;
        let mut gossiped = None;
        let mut tick = tokio::time::interval(HEALTH_POLL);
        loop {
            tick.tick().await;
            let store = store.clone();
            // Reading the health may ask the file system for its free space.
            let current = match tokio::task::spawn_blocking(move || store.engine().health()).await {
                Ok(current) => current,
                Err(error) => {
                    tracing::error!(%error, "reading the engine health failed");
                    continue;
                }
            };
            if let Some(gossip) = &gossip
                && gossiped != Some(current.state)
            {
                gossip.set_engine_state(current.state).await;
                gossiped = Some(current.state);
            }
            if current.is_healthy() == serving {
                continue;
            }
            serving = current.is_healthy();
            match &current.reason {
                None => tracing::info!("the storage engine accepts writes again: health SERVING"),
                Some(reason) => tracing::warn!(
                    state = current.state.as_str(),
                    %reason,
                    "the storage engine refuses writes: health NOT_SERVING"
                ),
            }
            set_serving(&health, serving).await;
        }
    })
}
