//! Write fan-out: the cells of one mutation go to the replicas of each partition they belong
//! to, one request per replica host, all in parallel; the call returns as soon as every
//! partition has the level's number of acknowledgements, or fails `Unavailable` when that can
//! no longer happen. Replicas that are down, fail or time out get a hint instead (in the
//! background for the ones still running when the level is reached).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use allidb_storage::batch::WriteBatch;
use allidb_storage::partition::CellVersion;
use tokio::sync::mpsc;

use super::Coordinator;
use crate::cells;
use crate::consistency::ConsistencyLevel;
use crate::hints::dispatcher::peer_label;
use crate::hints::{Hint, unix_ms};
use crate::membership::ClusterView;
use crate::ring::{HostId, ReplicaSet};
use crate::{ClusterError, replica_failure};

/// One partition of a write and the replicas that must acknowledge it.
struct PartitionWrite {
    tenant: String,
    entity_id: String,
    replicas: ReplicaSet,
    required: usize,
}

impl Coordinator {
    /// Writes `batch` at `level`: see the module doc.
    pub(super) async fn write(
        &self,
        batch: WriteBatch,
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let view = self.inner.view.borrow().clone();
        let rf = self.inner.options.replication_factor;
        let mut partitions: BTreeMap<(String, String), PartitionWrite> = BTreeMap::new();
        let mut per_host: BTreeMap<HostId, Vec<CellVersion>> = BTreeMap::new();
        for version in cells::batch_versions(&batch) {
            let (tenant, entity_id) = cells::partition_of(&version.0)?;
            let partition = partitions
                .entry((tenant.clone(), entity_id.clone()))
                .or_insert_with(|| {
                    let replicas = view.ring.replicas_of_key(&tenant, &entity_id, rf);
                    let required = level.required(replicas.len());
                    PartitionWrite {
                        tenant,
                        entity_id,
                        replicas,
                        required,
                    }
                });
            if partition.replicas.is_empty() {
                return Err(ClusterError::Unavailable(
                    "the ring has no nodes with tokens yet; retry once the cluster has formed"
                        .to_owned(),
                ));
            }
            for host in partition.replicas.hosts() {
                per_host.entry(*host).or_default().push(version.clone());
            }
        }

        let (answers, mut answered) = mpsc::unbounded_channel();
        let hosts = per_host.len();
        for (host, versions) in per_host {
            let coordinator = self.clone();
            let view = view.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let outcome = coordinator.send(&view, host, versions).await;
                let _ = answers.send((host, outcome));
            });
        }
        drop(answers);

        let mut acked: BTreeSet<HostId> = BTreeSet::new();
        let mut failed: BTreeMap<HostId, String> = BTreeMap::new();
        let satisfied = |acked: &BTreeSet<HostId>| {
            partitions.values().all(|p| {
                p.replicas
                    .hosts()
                    .iter()
                    .filter(|h| acked.contains(h))
                    .count()
                    >= p.required
            })
        };
        while acked.len() + failed.len() < hosts {
            if satisfied(&acked) {
                return Ok(());
            }
            match answered.recv().await {
                Some((host, Ok(()))) => {
                    acked.insert(host);
                }
                Some((host, Err(reason))) => {
                    failed.insert(host, reason);
                }
                None => break,
            }
        }
        if satisfied(&acked) {
            return Ok(());
        }
        let short = partitions
            .values()
            .find(|p| {
                p.replicas
                    .hosts()
                    .iter()
                    .filter(|h| acked.contains(h))
                    .count()
                    < p.required
            })
            .expect("a write that is not satisfied has a partition short of its level");
        Err(ClusterError::Unavailable(replica_failure(
            &format!(
                "write at consistency {level} failed for entity {:?} of tenant {:?}",
                short.entity_id, short.tenant
            ),
            short.required,
            short.replicas.hosts(),
            &acked,
            &failed,
            &view,
        )))
    }

    /// Sends one replica host its cells; on failure keeps a hint for it and returns why.
    async fn send(
        &self,
        view: &Arc<ClusterView>,
        host: HostId,
        versions: Vec<CellVersion>,
    ) -> Result<(), String> {
        let peer = peer_label(view, host);
        let started = Instant::now();
        let outcome = self.apply_on(view, host, &versions, "write").await;
        let result = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!("allidb_cluster_replica_writes_total", "peer" => peer.clone(), "outcome" => result).increment(1);
        metrics::histogram!("allidb_cluster_replica_write_seconds", "peer" => peer.clone())
            .record(started.elapsed().as_secs_f64());
        if let Err(reason) = &outcome
            && host != self.inner.host
        {
            self.hint(view, host, versions, reason).await;
        }
        outcome
    }

    /// Applies cells on `host`: the local store directly, a peer through its replica service.
    /// A peer gossip shows down, or whose engine gossips that it refuses writes (disk full,
    /// I/O failure), is not tried: it fails at once, so it gets a hint.
    pub(super) async fn apply_on(
        &self,
        view: &ClusterView,
        host: HostId,
        versions: &[CellVersion],
        reason: &str,
    ) -> Result<(), String> {
        if host == self.inner.host {
            return self
                .inner
                .local
                .apply(cells::versions_batch(versions.iter().cloned()))
                .await
                .map_err(|e| e.to_string());
        }
        let node = view.nodes.get(&host).ok_or("unknown to gossip")?;
        if let Some(refusal) = node.refusal() {
            return Err(refusal);
        }
        let addr = node.rpc_addr.ok_or("no RPC address gossiped yet")?;
        self.inner
            .clients
            .mutate(
                host,
                addr,
                versions.iter().map(cells::to_proto).collect(),
                reason,
                view.ring.version(),
                self.inner.options.write_timeout,
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Keeps a hint of `versions` for `host` (when hinted handoff is on).
    async fn hint(
        &self,
        view: &ClusterView,
        host: HostId,
        versions: Vec<CellVersion>,
        reason: &str,
    ) {
        let peer = peer_label(view, host);
        if !self.inner.options.hinted_handoff {
            metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer, "reason" => "disabled").increment(1);
            return;
        }
        let hint = Hint {
            created_unix_ms: unix_ms(),
            ring_version: view.ring.version(),
            batch: cells::versions_batch(versions),
        };
        let hints = self.inner.hints.clone();
        let stored = tokio::task::spawn_blocking(move || hints.store(host, &hint))
            .await
            .unwrap_or_else(|e| Err(ClusterError::Protocol(format!("hint task: {e}"))));
        match stored {
            Ok(true) => {
                tracing::debug!(%peer, reason, "replica missed a write; hint stored");
                metrics::counter!("allidb_cluster_hints_stored_total", "peer" => peer).increment(1);
            }
            Ok(false) => {
                tracing::warn!(%peer, "hint log of this peer is full (cluster.max_hint_bytes_per_node); hint dropped");
                metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer, "reason" => "full").increment(1);
            }
            Err(error) => {
                tracing::error!(%error, %peer, "hint could not be stored");
                metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer, "reason" => "io").increment(1);
            }
        }
    }
}
