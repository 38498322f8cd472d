//! The daemon on a ring (`[cluster]`): joining it (membership, the topology log, entering the
//! ring, publishing it to the admin server's `/cluster/*` routes), waiting until this node is
//! `normal` in the log, and, once the store is open, making the node a replica and a
//! coordinator (replica service, coordinator, repair scheduler, range streams, ring reads, hint
//! dispatcher).
//!
//! Invariants: replication starts only with the open store; each part is attached to its
//! service once (a second attach is a `DaemonError::Serve`); the background work it starts is
//! handed back ([`Replication`]) for the shutdown to stop. Must never: let a node report
//! ready before it is `normal` in the topology log (the daemon waits in
//! [`wait_until_normal`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use allidb_api::service::{AlliDbService, DataPath, RingMember};
use allidb_cluster::coordinator::pause::PauseDetector;
use allidb_cluster::coordinator::replicas::RingReplicaAccess;
use allidb_cluster::coordinator::{Coordinator, CoordinatorOptions, RingDuties};
use allidb_cluster::credentials::ClusterCredentials;
use allidb_cluster::hints::HintLog;
use allidb_cluster::hints::dispatcher::{DispatchOptions, HintDispatcher};
use allidb_cluster::membership::Membership;
use allidb_cluster::peer_client::PeerClients;
use allidb_cluster::query::ClusterQuery;
use allidb_cluster::query::replicas::RingReplicas;
use allidb_cluster::repair::history::RepairHistory;
use allidb_cluster::repair::scheduler::{RepairScheduler, ScheduleOptions};
use allidb_cluster::repair::{RangeRepair, unix_secs};
use allidb_cluster::replica::{LocalReplica, ReplicaService};
use allidb_cluster::stream::rebuild::ReplicaRebuild;
use allidb_cluster::stream::{RangeStream, StreamOptions};
use allidb_cluster::topology::entry::LegacyRing;
use allidb_cluster::topology::fence::TopologyFence;
use allidb_cluster::topology::service::TopologyService;
use allidb_cluster::topology::state::NodeState;
use allidb_cluster::topology::{TopologyFiles, TopologyLog};
use allidb_index::UnifiedStore;

use super::{DaemonError, print_line};
use crate::admin::{ClusterStatus, RunningCluster};
use crate::config::{ClusterConfig, Config};
use crate::options::{
    SEED_RESOLVE_WAIT, host_name, membership_options, resolve_seeds, topology_options,
};

/// A node in the ring: its gossip, its member of the topology log, and its clients to peers.
pub(super) struct Joined {
    pub(super) membership: Membership,
    pub(super) topology: TopologyLog,
    clients: Arc<PeerClients>,
    legacy: LegacyRing,
}

/// Starts membership (`[cluster]`) and the topology log, enters the ring (a restarted member at
/// once; a new node once the log accepted it) and publishes it to the admin server's
/// `/cluster/*` routes. Waits, logging, until a formed ring answers.
pub(super) async fn join_cluster(
    config: &Config,
    data_dir: &std::path::Path,
    grpc_addr: SocketAddr,
    status: &ClusterStatus,
    topology_service: &TopologyService,
    fence: TopologyFence,
) -> Result<Joined, DaemonError> {
    let cluster = &config.cluster;
    let files = TopologyFiles::open(data_dir)?;
    let membership = Membership::start(
        membership_options(config, data_dir, grpc_addr),
        files.state(),
    )
    .await?;
    tracing::info!(host_id = %membership.host_id(), "gossip started");
    print_line(&format!("cluster host id {}", membership.host_id()));
    let credentials = Arc::new(ClusterCredentials::new(&cluster.name, &cluster.secret));
    let tls = crate::tls::cluster_client_tls(&config.tls)?;
    let clients = Arc::new(PeerClients::new(
        membership.host_id(),
        credentials,
        tls,
        Duration::from_millis(cluster.write_timeout_ms),
    ));
    let seeds = resolve_seeds(cluster, host_name().as_deref(), SEED_RESOLVE_WAIT).await;
    let topology = TopologyLog::start(
        files,
        membership.host_id(),
        clients.clone(),
        membership.subscribe(),
        topology_options(config, grpc_addr, seeds),
        fence,
    )
    .await?;
    if topology_service.attach(topology.clone()).is_err() {
        return Err(DaemonError::Serve(
            "the topology log was attached twice".to_owned(),
        ));
    }
    let legacy = membership.legacy_ring(data_dir)?;
    let version = topology.enter(legacy.clone()).await?;
    tracing::info!(topology_version = version, "in the ring's topology log");
    let hints_dir = data_dir.join("cluster").join("hints");
    let hints = HintLog::open(&hints_dir, cluster.max_hint_bytes_per_node)?;
    let repair_history = RepairHistory::open(data_dir, unix_secs())?;
    status.set_running(RunningCluster {
        cluster_name: cluster.name.clone(),
        host_id: membership.host_id(),
        replication_factor: cluster.replication_factor as usize,
        view: membership.subscribe(),
        hints: Arc::new(hints),
        gossip: membership.counters(),
        repair_history: Arc::new(repair_history),
        repair_progress: Arc::default(),
        gc_grace_secs: config.storage.gc_grace_secs,
        topology: topology.clone(),
    });
    Ok(Joined {
        membership,
        topology,
        clients,
        legacy,
    })
}

/// Waits until this node is `normal` in the log (a bootstrap streams its ranges in first); a
/// bootstrap rolled back (this node was down too long) asks to join again.
pub(super) async fn wait_until_normal(joined: &Joined) -> Result<(), DaemonError> {
    let mut state = joined.topology.subscribe();
    let host = joined.topology.host();
    let mut announced = false;
    loop {
        let current = state.borrow_and_update().clone();
        match current.nodes.get(&host).map(|n| n.state) {
            Some(NodeState::Normal) => return Ok(()),
            Some(NodeState::Joining) if !announced => {
                announced = true;
                tracing::info!("joining: streaming this node's ranges before it serves reads");
                print_line("joining");
            }
            None => {
                joined.topology.enter(joined.legacy.clone()).await?;
                continue;
            }
            _ => {}
        }
        if state.changed().await.is_err() {
            return Err(DaemonError::Serve(
                "the topology log stopped while this node was joining".to_owned(),
            ));
        }
    }
}

/// The shortest pause of this process its coordinator checks the ring after: a quarter of the
/// time the failure detector takes to see a silent node down (`phi_threshold` mean heartbeat
/// gaps, a gap being at most a gossip interval), so no movement can have skipped this node
/// during a shorter one (docs/cluster.md "A paused or cut-off node").
fn pause_threshold(cluster: &ClusterConfig) -> Duration {
    Duration::from_millis(cluster.gossip_interval_ms).mul_f64(cluster.phi_threshold / 4.0)
}

/// Makes this node a replica and a coordinator once its store is open: the replica service
/// starts applying, the gRPC service serves its data through the ring's coordinator and
/// reads, the operator actions through its membership, and the hint dispatcher starts
/// delivering.
pub(super) fn start_replication(
    config: &Config,
    data_dir: &std::path::Path,
    joined: &Joined,
    replica_service: &ReplicaService,
    service: &AlliDbService,
    status: &ClusterStatus,
    store: Arc<UnifiedStore>,
) -> Result<Replication, DaemonError> {
    let cluster = &config.cluster;
    let attached = || DaemonError::Serve("replication was started twice".to_owned());
    let hints = status.hints().ok_or_else(attached)?;
    let membership = &joined.membership;
    let local = LocalReplica::new(
        membership.host_id(),
        store,
        config.storage.durability(),
        replica_service.fence().clone(),
    )
    .with_repair_pace(cluster.repair_scan_bytes_per_sec);
    replica_service
        .attach(local.clone(), joined.topology.subscribe())
        .map_err(|_| attached())?;
    let clients = joined.clients.clone();
    let replicas = RingReplicaAccess::new(
        local.clone(),
        clients.clone(),
        Duration::from_millis(cluster.read_timeout_ms),
        Duration::from_millis(cluster.write_timeout_ms),
    );
    let coordinator = Coordinator::new(
        membership.host_id(),
        local.clone(),
        membership.subscribe(),
        Arc::new(replicas),
        CoordinatorOptions {
            replication_factor: cluster.replication_factor as usize,
            hinted_handoff: cluster.hinted_handoff_enabled,
        },
        RingDuties {
            hints: hints.clone(),
            pauses: PauseDetector::start(
                pause_threshold(cluster),
                membership.host_id(),
                membership.subscribe(),
            )?,
            attribute_types: Arc::new(joined.topology.clone()),
        },
    );
    let streaming = StreamOptions {
        bytes_per_sec: cluster.stream_bytes_per_sec,
        chunk_bytes: cluster.stream_chunk_bytes as usize,
        concurrency: cluster.stream_concurrency as usize,
        ..StreamOptions::default()
    };
    let repair = RangeRepair::new(
        coordinator.clone(),
        local.clone(),
        clients.clone(),
        membership.subscribe(),
        status.repair_history().ok_or_else(attached)?,
        status.repair_progress().ok_or_else(attached)?,
        streaming,
    );
    let scheduler = RepairScheduler::spawn(
        repair.clone(),
        ScheduleOptions {
            interval: Duration::from_secs(cluster.repair_interval_secs),
            gc_grace: Duration::from_secs(config.storage.gc_grace_secs),
        },
    );
    let stream = RangeStream::new(
        local.clone(),
        clients.clone(),
        membership.subscribe(),
        data_dir.to_owned(),
        streaming,
    );
    joined.topology.attach_stream(stream.clone());
    let rebuild = ReplicaRebuild::new(stream, cluster.replication_factor as usize);
    let replicas = RingReplicas::new(
        local,
        clients.clone(),
        membership.subscribe(),
        Duration::from_millis(cluster.read_timeout_ms),
    );
    let reads = ClusterQuery::new(
        coordinator.clone(),
        Arc::new(replicas),
        membership.subscribe(),
    );
    service
        .attach_data_path(DataPath::ring(coordinator, reads))
        .map_err(|_| attached())?;
    service
        .attach_ring_member(RingMember {
            repair,
            rebuild,
            topology: joined.topology.clone(),
        })
        .map_err(|_| attached())?;
    tracing::info!(
        replication_factor = cluster.replication_factor,
        "replicating writes and point reads over the ring"
    );
    let dispatcher = HintDispatcher::spawn(
        hints,
        clients,
        membership.subscribe(),
        DispatchOptions {
            interval: Duration::from_millis(cluster.gossip_interval_ms.max(100)),
            window: Duration::from_secs(cluster.hinted_handoff_window_secs),
            bytes_per_sec: cluster.hint_delivery_bytes_per_sec,
            timeout: Duration::from_millis(cluster.write_timeout_ms),
        },
    );
    Ok(Replication {
        dispatcher,
        scheduler,
    })
}

/// The background work of a replicating node, stopped at shutdown.
pub(super) struct Replication {
    pub(super) dispatcher: HintDispatcher,
    pub(super) scheduler: RepairScheduler,
}
