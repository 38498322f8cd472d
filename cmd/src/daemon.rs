//! The `allidbd` process: logging, listeners, the store's lifecycle and graceful shutdown.
//!
//! Startup order: bind the gRPC listener (printing the bound address), start serving
//! `allidb.AlliDB`, `grpc.health.v1.Health` (NOT_SERVING) and server reflection (v1 and
//! v1alpha), bind the HTTP listener and serve the JSON gateway ([`allidb_api::http::router`],
//! the same service in-process; printing the bound address), bind the admin listener and serve
//! `/metrics`, `/healthz` and `/readyz` ([`crate::admin`]; printing the bound address), open the
//! store on the blocking pool, attach it to the service, mark health SERVING and readiness ready
//! and print `allidbd: ready`. Until then the AlliDB RPCs answer `UNAVAILABLE`. The metrics
//! recorder ([`crate::telemetry`]) is installed first; every AlliDB call (gRPC or HTTP) goes
//! through [`ObservedService`] (one span and one metric sample per request).
//!
//! With `tls.enabled`, both listeners serve TLS only ([`crate::tls`]). SIGHUP runs the reload
//! steps of [`on_sighup`]: the API keys ([`crate::key_reload`]) and the TLS certificates, without
//! dropping connections.
//!
//! While serving, [`watch_engine_health`] keeps `grpc.health.v1` in step with the storage
//! engine: NOT_SERVING while it refuses writes (disk full, I/O failure), SERVING once it
//! recovers; `/readyz` and `HealthCheck` read the engine health themselves.
//!
//! Shutdown (SIGTERM or SIGINT): health goes NOT_SERVING and `/readyz` 503; on a ring the node
//! announces it in gossip and keeps serving its peers for a few gossip intervals (they count it
//! down once they heard); then the listeners stop accepting, in-flight requests finish (bounded
//! by `server.shutdown_timeout_secs`), then the store is closed (index dump, WAL synced), the
//! admin server stops and the process exits 0. A final index dump that fails (a full disk) is
//! logged and skipped: the next start catches the indexes up from the WAL, so the exit is still
//! 0; a failing engine close exits 1.
//!
//! Standard output carries only the machine-readable lines ([`print_line`]); logs go to
//! standard error. Must never: serve AlliDB requests before the store is open, or exit before
//! the store is closed on a graceful shutdown.

mod health;
mod ring;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use allidb_api::admission::{AdmittedService, ChargeTo, HttpAdmission, RequestBudget, admit_http};
use allidb_api::auth::{AuthError, Authenticator};
use allidb_api::coalesce::CoalescedWrites;
use allidb_api::http::HttpLimits;
use allidb_api::observe::{self, ObservedService, RejectedCallMetrics};
use allidb_api::page_token::PageTokenKey;
use allidb_api::pb::allidb_server::AlliDbServer;
use allidb_api::service::{AlliDbService, DataPath};
use allidb_cluster::credentials::ClusterCredentials;
use allidb_cluster::identity;
use allidb_cluster::replica::ReplicaService;
use allidb_cluster::topology::fence::TopologyFence;
use allidb_cluster::topology::service::TopologyService;
use allidb_index::UnifiedStore;
use axum::serve::ListenerExt;
use futures_util::TryStreamExt;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing_subscriber::EnvFilter;

use crate::admin::{AdminServer, ClusterStatus, Readiness};
use crate::config::{Config, ConfigError, LogConfig, LogFormat};
use crate::options::{budget_options, service_options, store_options};
use crate::telemetry::{self, Scrape};
use crate::tls::{ServerTls, TlsError};
use health::{set_serving, watch_engine_health};
use ring::{Joined, join_cluster, start_replication, wait_until_normal};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The API keys cannot be loaded.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The TLS files are unusable.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The log filter does not parse.
    #[error("config key log.level: {0}")]
    Logging(String),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The config key of the listener.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot be opened or closed.
    #[error("store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// The store's error.
        #[source]
        source: allidb_index::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(String),
    /// The metrics recorder cannot be installed.
    #[error("{0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    /// Membership cannot start (a data dir of another cluster, gossip port in use...).
    #[error("cluster: {0}")]
    Cluster(#[from] allidb_cluster::ClusterError),
    /// This node's page token key cannot be read or made.
    #[error("page token key in {dir}: {source}")]
    PageTokenKey {
        /// The data directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// The process exit code: 2 for configuration errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_)
            | DaemonError::Auth(_)
            | DaemonError::Tls(_)
            | DaemonError::Logging(_) => 2,
            DaemonError::Bind { .. }
            | DaemonError::Store { .. }
            | DaemonError::Serve(_)
            | DaemonError::Telemetry(_)
            | DaemonError::Cluster(_)
            | DaemonError::PageTokenKey { .. } => 1,
        }
    }
}

/// The key of `RangeScan` page tokens (docs/api.md "RangeScan page tokens"): on a ring the
/// one every node derives from `cluster.secret`, so a token is good through any node; on a
/// single node its own, kept in its data directory so tokens outlive a restart.
fn page_token_key(config: &Config, data_dir: &Path) -> Result<PageTokenKey, DaemonError> {
    if config.cluster.enabled {
        return Ok(PageTokenKey::for_cluster(
            &config.cluster.name,
            &config.cluster.secret,
        ));
    }
    std::fs::create_dir_all(data_dir)
        .and_then(|()| PageTokenKey::load_or_create(data_dir))
        .map_err(|source| DaemonError::PageTokenKey {
            dir: data_dir.to_owned(),
            source,
        })
}

/// Prints one machine-readable line (`allidbd: ...`) on standard output and flushes it.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the parent stopped reading) must not stop the daemon.
    let _ = writeln!(out, "allidbd: {line}").and_then(|()| out.flush());
}

/// Installs the global tracing subscriber (to standard error) for `log`.
pub fn init_logging(log: &LogConfig) -> Result<(), DaemonError> {
    let filter = EnvFilter::try_new(&log.level).map_err(|e| DaemonError::Logging(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| DaemonError::Logging(e.to_string()))
}

/// Resolves when the process receives SIGTERM or SIGINT (the handlers are installed at call
/// time, so a signal that arrives while the store opens is not lost).
fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// One thing SIGHUP reloads; it logs its own outcome.
pub type ReloadStep = Box<dyn Fn() + Send + Sync>;

/// Runs every step of `steps`, in order and on the blocking pool (they read files), on each
/// SIGHUP. The handler is installed at call time, so from then on SIGHUP no longer terminates
/// the process, even with no steps.
fn on_sighup(steps: Vec<ReloadStep>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let steps: Arc<[ReloadStep]> = steps.into();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let steps = steps.clone();
            let reloaded =
                tokio::task::spawn_blocking(move || steps.iter().for_each(|step| step()));
            if let Err(error) = reloaded.await {
                tracing::error!(%error, "a SIGHUP reload step panicked");
            }
        }
    });
    Ok(())
}

async fn bind(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let bind_error = |source| DaemonError::Bind { key, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

fn reflection_error(error: tonic_reflection::server::Error) -> DaemonError {
    DaemonError::Serve(format!("reflection descriptors: {error}"))
}

/// Methods of `allidb.AlliDB` whose request is a stream of messages (charged the largest
/// message by the request budget).
const STREAMING_METHODS: &[&str] = &["BulkPutEntities"];

/// Runs the daemon with `config` until a shutdown signal; returns after the store is closed.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let signal = shutdown_signal().map_err(|e| DaemonError::Serve(format!("signals: {e}")))?;
    crate::tls::install_crypto_provider();
    let tls = ServerTls::from_config(&config.tls)?.map(Arc::new);
    let auth = Arc::new(Authenticator::new(config.auth.options())?);
    let mut reload_steps: Vec<ReloadStep> = Vec::new();
    let reload_auth = Arc::clone(&auth);
    reload_steps.push(Box::new(move || {
        crate::key_reload::reload_keys(&reload_auth)
    }));
    if let Some(tls) = &tls {
        tracing::info!(
            client_certificates = tls.requires_client_certificates(),
            "TLS enabled on the gRPC and HTTP listeners"
        );
        let tls = tls.clone();
        reload_steps.push(Box::new(move || tls.reload_and_log()));
    }
    on_sighup(reload_steps).map_err(|e| DaemonError::Serve(format!("signals: {e}")))?;
    if config.auth.enabled {
        tracing::info!(keys = auth.key_count(), "API key authentication enabled");
    } else {
        tracing::warn!(
            tenant = %config.auth.default_tenant,
            "authentication is disabled: every request runs as the default tenant with the admin role"
        );
    }
    let metrics = telemetry::install_recorder()?;

    let data_dir = std::path::absolute(&config.storage.data_dir)
        .unwrap_or_else(|_| config.storage.data_dir.clone());
    let page_tokens = page_token_key(&config, &data_dir)?;
    let service = AlliDbService::starting(auth.clone(), service_options(&config, page_tokens));
    let observed = ObservedService::new(service.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    set_serving(&health, false).await;

    let descriptor_sets = [
        allidb_api::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ];
    let reflection = || {
        descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure(),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let max_message = usize::try_from(config.server.max_request_bytes).unwrap_or(usize::MAX);
    let budget = RequestBudget::new(budget_options(
        &config,
        crate::host_memory::memory_limit_bytes(),
    ));
    tracing::info!(
        node_bytes = budget.options().node_bytes,
        tenant_bytes = budget.options().tenant_bytes,
        wait_ms = budget.options().wait.as_millis(),
        "request budget (server.max_inflight_request_bytes, _per_tenant)"
    );
    let allidb = RejectedCallMetrics::new(AdmittedService::new(
        AlliDbServer::new(observed.clone())
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
        budget.clone(),
        ChargeTo::Caller(auth.clone()),
        max_message,
        STREAMING_METHODS,
    ));

    let (grpc_listener, grpc_addr) = bind("server.grpc_addr", config.server.grpc_addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The node-to-node service shares the gRPC port (docs/cluster.md "Internal protocol").
    let cluster_credentials = config.cluster.enabled.then(|| {
        Arc::new(ClusterCredentials::new(
            &config.cluster.name,
            &config.cluster.secret,
        ))
    });
    // The fence is read before the node-to-node service serves its first call.
    let fence = match config.cluster.enabled {
        true => Some(TopologyFence::open(&data_dir)?),
        false => None,
    };
    let replica_service =
        cluster_credentials
            .as_ref()
            .zip(fence.as_ref())
            .map(|(credentials, fence)| {
                ReplicaService::new(
                    credentials.clone(),
                    Duration::from_millis(config.cluster.max_clock_skew_ms),
                    fence.clone(),
                )
            });
    let topology_service = cluster_credentials
        .as_ref()
        .map(|credentials| TopologyService::new(credentials.clone()));
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(allidb)
        .add_optional_service(replica_service.as_ref().map(|replica| {
            // Replica writes, hints and reads share the node's budget (a replica that sheds
            // answers RESOURCE_EXHAUSTED: the coordinator keeps a hint, docs/cluster.md).
            AdmittedService::new(
                replica.server(),
                budget.clone(),
                ChargeTo::Node,
                allidb_cluster::MAX_MESSAGE_BYTES,
                &[],
            )
        }))
        // The topology log's messages are few and small; they are not charged to the budget
        // (a node under load must still follow the ring).
        .add_optional_service(topology_service.as_ref().map(TopologyService::server));
    let grpc_stopped = async {
        let _ = stop_rx.await;
    };
    let server = match &tls {
        // Each connection's reply and trailers leave in one write (allidb_api::coalesce).
        None => tokio::spawn(
            router.serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener)
                    .with_nodelay(Some(true))
                    .map_ok(CoalescedWrites::new),
                grpc_stopped,
            ),
        ),
        Some(tls) => tokio::spawn(
            router.serve_with_incoming_shutdown(
                tls.grpc_listener(grpc_listener, grpc_addr)
                    .into_incoming()
                    .map_ok(CoalescedWrites::new),
                grpc_stopped,
            ),
        ),
    };
    tracing::info!(%grpc_addr, "gRPC listening");
    print_line(&format!("grpc listening on {grpc_addr}"));

    let (http_listener, http_addr) = bind("server.http_addr", config.server.http_addr).await?;
    let gateway = allidb_api::http::router(
        Arc::new(observed),
        HttpLimits {
            max_body_bytes: max_message,
        },
    )
    .layer(axum::middleware::from_fn_with_state(
        HttpAdmission::new(budget, auth.clone(), max_message),
        admit_http,
    ))
    .route_layer(axum::middleware::from_fn(observe::http_route_metrics));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_stopped = async {
        let _ = http_stop_rx.await;
    };
    let mut http_server = match &tls {
        None => {
            let http_listener = http_listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY on an HTTP connection");
                }
            });
            tokio::spawn(
                axum::serve(http_listener, gateway)
                    .with_graceful_shutdown(http_stopped)
                    .into_future(),
            )
        }
        Some(tls) => tokio::spawn(
            axum::serve(tls.http_listener(http_listener, http_addr), gateway)
                .with_graceful_shutdown(http_stopped)
                .into_future(),
        ),
    };
    tracing::info!(%http_addr, "HTTP listening");
    print_line(&format!("http listening on {http_addr}"));

    let readiness = Arc::new(Readiness::default());
    let cluster_status = Arc::new(ClusterStatus::new(config.cluster.enabled));
    let (admin_listener, admin_addr) = bind("server.admin_addr", config.server.admin_addr).await?;
    let admin = AdminServer::serve(
        admin_listener,
        readiness.clone(),
        Scrape::new(metrics, service.clone(), auth),
        cluster_status.clone(),
    );
    tracing::info!(%admin_addr, "admin listening");
    print_line(&format!("admin listening on {admin_addr}"));

    print_line(&format!("data dir {}", data_dir.display()));
    let options = store_options(&config);
    let open_dir = data_dir.clone();
    let opened = async {
        // Membership first: a data dir of another cluster, or an identity whose storage is
        // gone, is refused before the store opens (or creates) it.
        let membership = match (&topology_service, &fence) {
            (Some(topology_service), Some(fence)) => {
                identity::check_storage(&data_dir, UnifiedStore::holds_data(&data_dir))?;
                Some(
                    join_cluster(
                        &config,
                        &data_dir,
                        grpc_addr,
                        &cluster_status,
                        topology_service,
                        fence.clone(),
                    )
                    .await?,
                )
            }
            _ => None,
        };
        let store = tokio::task::spawn_blocking(move || UnifiedStore::open(&open_dir, options))
            .await
            .map_err(|e| DaemonError::Serve(format!("opening the store panicked: {e}")))?
            .map_err(|source| DaemonError::Store {
                dir: data_dir.clone(),
                source,
            })?;
        if membership.is_some() {
            identity::record_storage(&data_dir)?;
        }
        Ok::<_, DaemonError>((Arc::new(store), membership))
    }
    .await;
    let (store, mut membership) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = stop_tx.send(());
            let _ = http_stop_tx.send(());
            let _ = server.await;
            let _ = http_server.await;
            admin.stop().await;
            return Err(error);
        }
    };
    if service.attach_store(store.clone()).is_err() {
        return Err(DaemonError::Serve(
            "the store was attached twice".to_owned(),
        ));
    }
    if let Some(Joined { membership, .. }) = &mut membership {
        let engine_of = store.clone();
        membership.publish_load(
            Duration::from_millis(config.cluster.gossip_interval_ms) * LOAD_GOSSIP_INTERVALS,
            move || engine_of.engine().stats().bytes_per_level.iter().sum(),
        );
    }
    let replication = match (&membership, &replica_service) {
        (Some(joined), Some(replica_service)) => Some(start_replication(
            &config,
            &data_dir,
            joined,
            replica_service,
            &service,
            &cluster_status,
            store.clone(),
        )?),
        _ => {
            // A node without `[cluster]` serves its data as a ring of one (DESIGN.md §6).
            let data = DataPath::ring_of_one(store.clone(), service.options());
            if service.attach_data_path(data).is_err() {
                return Err(DaemonError::Serve(
                    "the data path was attached twice".to_owned(),
                ));
            }
            None
        }
    };
    if let Some(joined) = &membership {
        // Ready means normal in the log (a joining node streams its ranges first), having heard
        // from the other members, and routing by the newest topology they gossip.
        wait_until_normal(joined).await?;
        joined
            .topology
            .settle(Duration::from_millis(config.cluster.gossip_interval_ms) * SETTLE_INTERVALS)
            .await;
    }
    set_serving(&health, true).await;
    readiness.follow_engine(store.clone());
    readiness.set_ready();
    let health_watch = watch_engine_health(
        store.clone(),
        health.clone(),
        membership
            .as_ref()
            .map(|joined| joined.membership.own_keys()),
    );
    let scheduled_backups = match crate::backup::schedule::ScheduledBackups::start(
        &config.backup,
        store.clone(),
        data_dir.clone(),
    ) {
        Ok(schedule) => schedule,
        Err(error) => {
            // The target's form was checked with the configuration; what is left (a directory
            // that cannot be created) must not take the serving node down.
            tracing::error!(%error, "scheduled backups are off: their target cannot be opened");
            None
        }
    };
    tracing::info!(data_dir = %data_dir.display(), "store open; serving");
    print_line("ready");

    let mut server = server;
    tokio::select! {
        name = signal => {
            tracing::info!(signal = name, "shutting down: draining in-flight requests");
        }
        joined = &mut server => {
            // The server stopped on its own: close the store, then report why.
            let why = match joined {
                Ok(Ok(())) => "the gRPC server stopped unexpectedly".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(join) => format!("server task: {join}"),
            };
            close_store(store, &data_dir).await?;
            return Err(DaemonError::Serve(why));
        }
    }
    if let Some(schedule) = scheduled_backups {
        schedule.stop();
    }
    service.begin_shutdown();
    readiness.set_stopping();
    health_watch.abort();
    set_serving(&health, false).await;
    let drain = Duration::from_secs(config.server.shutdown_timeout_secs);
    if let Some(joined) = &membership {
        // Peers hear of the shutdown before the listeners close, and go on calling this node
        // until they have: their requests in flight are answered, not timed out.
        joined.membership.announce_shutdown().await;
        let announce =
            Duration::from_millis(config.cluster.gossip_interval_ms) * SHUTDOWN_ANNOUNCE_INTERVALS;
        tokio::time::sleep(announce.min(drain)).await;
    }
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    let drain_deadline = tokio::time::Instant::now() + drain;
    let served = match tokio::time::timeout_at(drain_deadline, &mut server).await {
        Ok(Ok(result)) => result.map_err(|e| DaemonError::Serve(e.to_string())),
        Ok(Err(join)) => Err(DaemonError::Serve(format!("server task: {join}"))),
        Err(_) => {
            tracing::warn!(
                ?drain,
                "in-flight requests did not finish in time; closing anyway"
            );
            server.abort();
            Ok(())
        }
    };
    match tokio::time::timeout_at(drain_deadline, &mut http_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP server stopped with an error"),
        Ok(Err(join)) => tracing::warn!(%join, "HTTP server task"),
        Err(_) => {
            tracing::warn!(
                ?drain,
                "in-flight HTTP requests did not finish in time; closing anyway"
            );
            http_server.abort();
        }
    }

    drop(service);
    if let Some(replication) = replication {
        replication.scheduler.stop();
        replication.dispatcher.stop();
    }
    if let Some(Joined {
        membership,
        topology,
        ..
    }) = membership
    {
        topology.shutdown().await;
        if let Err(error) = membership.shutdown().await {
            tracing::warn!(%error, "leaving the gossip");
        }
    }
    close_store(store, &data_dir).await?;
    admin.stop().await;
    tracing::info!("store closed; exiting");
    print_line("stopped");
    served
}

/// A starting node waits up to this many gossip intervals to hear from the ring's other members
/// before it reports ready (the failure detector's window; 10 s at the default interval).
const SETTLE_INTERVALS: u32 = 10;

/// A stopping node keeps serving for this many gossip intervals after it announced its shutdown
/// in gossip (docs/cluster.md "Shutdown"): chitchat reaches every node of a small ring within
/// two rounds (each round gossips to up to three peers).
const SHUTDOWN_ANNOUNCE_INTERVALS: u32 = 3;

/// A node gossips its load (bytes of SSTables) every this many gossip intervals (10 s by
/// default), for `allidb cluster status`.
const LOAD_GOSSIP_INTERVALS: u32 = 10;

/// Closes the store on the blocking pool: dumps the indexes and syncs the WAL. A failed dump
/// is reported (nothing is lost) but is not an error.
async fn close_store(
    store: Arc<UnifiedStore>,
    data_dir: &std::path::Path,
) -> Result<(), DaemonError> {
    let closed = tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| DaemonError::Serve(format!("closing the store panicked: {e}")))?
        .map_err(|source| DaemonError::Store {
            dir: data_dir.to_owned(),
            source,
        })?;
    if let Some(error) = closed.dump_error {
        let cause = if error.is_no_space() {
            allidb_storage::error::NO_SPACE.to_owned()
        } else {
            error.cause()
        };
        tracing::warn!(
            %cause,
            "stopped without the final index dump ({cause}); nothing acknowledged is lost: the \
             next start catches the indexes up from the WAL"
        );
    }
    Ok(())
}
