//! Write fan-out: the cells of one mutation go to the replicas of each partition they belong
//! to, one request per replica host, all in parallel; the call returns as soon as every
//! partition has the level's number of acknowledgements, or fails `Unavailable` when that can
//! no longer happen. Replicas that are down, fail or time out get a hint instead (in the
//! background for the ones still running when the level is reached), this node's own replica
//! included.
//!
//! A tenant drop goes the same way to every node of the ring, and is acknowledged when the
//! replicas of every token range have the level's number of acknowledgements.
//!
//! While a movement runs (the view's `pending` ring), every write goes to the replicas of both
//! rings and needs the level among each set (write both, DESIGN.md §6 rule 3): what is
//! acknowledged is then readable whichever ring a reader routes by.
//!
//! After a pause of this process, the next write is planned only once the ring was checked
//! with the peers ([`super::pause`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use allidb_storage::batch::WriteBatch;
use tokio::sync::mpsc;

use super::Coordinator;
use crate::cells::{self, DroppedTenant, ReplicaMutation};
use crate::consistency::ConsistencyLevel;
use crate::hints::dispatcher::peer_label;
use crate::hints::{Hint, unix_ms};
use crate::membership::ClusterView;
use crate::ring::{HostId, ReplicaSet, Ring, TokenRange};
use crate::{ClusterError, replica_failure};

/// Replicas of which `required` must acknowledge a write: a partition's, or for a tenant drop
/// those of one token range.
struct AckGroup {
    replicas: ReplicaSet,
    required: usize,
    what: Written,
}

/// What an [`AckGroup`] holds, for the message of a write that failed its level.
enum Written {
    Partition { tenant: String, entity_id: String },
    Range { tenant: String, range: TokenRange },
}

impl Written {
    fn failure(&self, level: ConsistencyLevel) -> String {
        match self {
            Written::Partition { tenant, entity_id } => format!(
                "write at consistency {level} failed for entity {entity_id:?} of tenant {tenant:?}"
            ),
            Written::Range { tenant, range } => format!(
                "drop of tenant {tenant:?} at consistency {level} failed for token range ({}, {}]",
                range.start, range.end
            ),
        }
    }
}

const NO_TOKENS: &str = "the ring has no nodes with tokens yet; retry once the cluster has formed";

impl Coordinator {
    /// Writes `batch` at `level`: see the module doc.
    pub(super) async fn write(
        &self,
        batch: WriteBatch,
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let view = self.planning_view().await?;
        let rf = self.inner.options.replication_factor;
        let rings: Vec<&Arc<Ring>> = std::iter::once(&view.ring)
            .chain(view.pending.as_ref())
            .collect();
        let mut groups: BTreeMap<(String, String, usize), AckGroup> = BTreeMap::new();
        let mut per_host: BTreeMap<HostId, ReplicaMutation> = BTreeMap::new();
        // Reused for every cell: the hosts of its replica sets, both rings' without repeats.
        let mut targets: Vec<HostId> = Vec::new();
        for version in cells::batch_versions(&batch) {
            let (tenant, entity_id) = cells::partition_of(&version.0)?;
            targets.clear();
            for (which, ring) in rings.iter().enumerate() {
                let group = groups
                    .entry((tenant.clone(), entity_id.clone(), which))
                    .or_insert_with(|| {
                        let replicas = ring.replicas_of_key(&tenant, &entity_id, rf);
                        let required = level.required(replicas.len());
                        AckGroup {
                            replicas,
                            required,
                            what: Written::Partition {
                                tenant: tenant.clone(),
                                entity_id: entity_id.clone(),
                            },
                        }
                    });
                if group.replicas.is_empty() {
                    return Err(ClusterError::Unavailable(NO_TOKENS.to_owned()));
                }
                targets.extend(group.replicas.hosts());
            }
            targets.sort_unstable();
            targets.dedup();
            for host in &targets {
                per_host
                    .entry(*host)
                    .or_default()
                    .cells
                    .push(version.clone());
            }
        }
        let groups = groups.into_values().collect();
        self.fan_out(view, level, per_host, groups, "write").await
    }

    /// Drops `tenant` at `level` with timestamp `ts`: the drop goes to every node of the ring
    /// (each holds partitions of the tenant), and the level must be reached among the replicas
    /// of every token range. Nodes that miss it get a hint.
    pub(super) async fn write_drop(
        &self,
        tenant: &str,
        ts: u64,
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let view = self.planning_view().await?;
        let rf = self.inner.options.replication_factor;
        let mut groups: BTreeMap<Vec<HostId>, AckGroup> = BTreeMap::new();
        let rings: Vec<&Arc<Ring>> = std::iter::once(&view.ring)
            .chain(view.pending.as_ref())
            .collect();
        for (ring, range) in rings
            .iter()
            .flat_map(|ring| ring.ranges().into_iter().map(move |range| (ring, range)))
        {
            let replicas = ring.replicas(range.end, rf);
            groups
                .entry(replicas.hosts().to_vec())
                .or_insert_with(|| AckGroup {
                    required: level.required(replicas.len()),
                    replicas,
                    what: Written::Range {
                        tenant: tenant.to_owned(),
                        range,
                    },
                });
        }
        if groups.is_empty() {
            return Err(ClusterError::Unavailable(NO_TOKENS.to_owned()));
        }
        let drop = DroppedTenant {
            tenant: tenant.to_owned(),
            ts,
        };
        let hosts: BTreeSet<HostId> = rings
            .iter()
            .flat_map(|ring| ring.hosts().iter().copied())
            .collect();
        let per_host = hosts
            .into_iter()
            .map(|host| {
                let mutation = ReplicaMutation {
                    drops: vec![drop.clone()],
                    cells: Vec::new(),
                };
                (host, mutation)
            })
            .collect();
        let groups = groups.into_values().collect();
        self.fan_out(view, level, per_host, groups, "drop").await
    }

    /// Sends each host its mutation, all in parallel, and returns once every group has its
    /// level's acknowledgements, or `Unavailable` once one of them can no longer have them.
    async fn fan_out(
        &self,
        view: Arc<ClusterView>,
        level: ConsistencyLevel,
        per_host: BTreeMap<HostId, ReplicaMutation>,
        groups: Vec<AckGroup>,
        reason: &'static str,
    ) -> Result<(), ClusterError> {
        let (answers, mut answered) = mpsc::unbounded_channel();
        let hosts = per_host.len();
        for (host, mutation) in per_host {
            let coordinator = self.clone();
            let view = view.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let outcome = coordinator.send(&view, host, mutation, reason).await;
                let _ = answers.send((host, outcome));
            });
        }
        drop(answers);

        let mut acked: BTreeSet<HostId> = BTreeSet::new();
        let mut failed: BTreeMap<HostId, ClusterError> = BTreeMap::new();
        let short = |acked: &BTreeSet<HostId>| {
            groups.iter().find(|g| {
                g.replicas
                    .hosts()
                    .iter()
                    .filter(|h| acked.contains(h))
                    .count()
                    < g.required
            })
        };
        while acked.len() + failed.len() < hosts {
            if short(&acked).is_none() {
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
        let Some(short) = short(&acked) else {
            return Ok(());
        };
        if let Some(error) = self.sole_replica_failure(short.replicas.hosts(), &mut failed) {
            return Err(error);
        }
        Err(ClusterError::Unavailable(replica_failure(
            &short.what.failure(level),
            short.required,
            short.replicas.hosts(),
            &acked,
            &failed,
            &view,
        )))
    }

    /// Sends one replica host its mutation; on failure keeps a hint for it and returns why.
    async fn send(
        &self,
        view: &Arc<ClusterView>,
        host: HostId,
        mutation: ReplicaMutation,
        reason: &'static str,
    ) -> Result<(), ClusterError> {
        let peer = peer_label(view, host);
        let started = Instant::now();
        let outcome = self
            .inner
            .replicas
            .apply(view, host, &mutation, reason)
            .await;
        let result = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!("allidb_cluster_replica_writes_total", "peer" => peer.clone(), "outcome" => result).increment(1);
        metrics::histogram!("allidb_cluster_replica_write_seconds", "peer" => peer.clone())
            .record(started.elapsed().as_secs_f64());
        // This node's own replica too: a local write refused (a full disk, an I/O failure) is
        // delivered by the dispatcher once the engine accepts writes again.
        if let Err(why) = &outcome {
            self.hint(view, host, mutation, &why.to_string()).await;
        }
        outcome
    }

    /// Keeps a hint of `mutation` for `host` (when hinted handoff is on).
    async fn hint(
        &self,
        view: &ClusterView,
        host: HostId,
        mutation: ReplicaMutation,
        reason: &str,
    ) {
        // A ring of one keeps no hints: the only replica is this node, whose failure the
        // client was told of.
        let Some(hints) = self.inner.hints.clone() else {
            return;
        };
        let peer = peer_label(view, host);
        if !self.inner.options.hinted_handoff {
            metrics::counter!("allidb_cluster_hints_dropped_total", "peer" => peer, "reason" => "disabled").increment(1);
            return;
        }
        let hint = Hint {
            created_unix_ms: unix_ms(),
            ring_version: view.ring.version(),
            drops: mutation.drops,
            batch: cells::versions_batch(mutation.cells),
        };
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
