//! The coordinator (DESIGN.md §6): any node runs the client's writes and point reads against
//! the replicas of each partition, at the request's consistency level.
//!
//! Entity-level mutations are planned here with `allidb_storage::mutation` from the stored
//! partitions read at the request's level ([`read`]) and one timestamp of this node's clock
//! (moved past every timestamp read), then fanned out partition by partition ([`write`]).
//! Every replica, this node's own included, is reached through one seam,
//! [`replicas::ReplicaAccess`] (a fake of in-memory replicas stands behind it in the unit
//! tests).
//!
//! Invariants: a write is acknowledged only when every partition it touches has been
//! acknowledged by the level's number of its replicas; a hint never counts toward a level; a
//! read returns the newest version of every cell among the replicas that answered, after
//! repairing the ones that answered stale (blocking read repair).
//!
//! Cells derived across partitions (an in-edge in its target's partition, its removal when a
//! put replaces the source's edges) are written without a cluster-wide lock: every write that
//! sets a marker or out-edges re-reads those partitions once written and removes the in-edges a
//! racing write left behind ([`shadowed`]); docs/cluster.md "Edges across partitions" states
//! the rule and why it converges.
//!
//! Must never: acknowledge a write below its level, or answer a read from fewer replicas than
//! its level asks.

pub mod attribute_types;
pub mod pause;
mod read;
pub mod replicas;
mod shadowed;
mod source_delete;
#[cfg(test)]
mod tests;
mod write;

use attribute_types::AttributeTypeLog;
use pause::PauseDetector;
use read::Purpose;
use replicas::ReplicaAccess;
use shadowed::WrittenSource;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use allidb_index::{TenantDropped, UnifiedStore};
use allidb_storage::cell::{Edge, EdgeRef, Entity, EntityWrite};
use allidb_storage::mutation;
use allidb_storage::partition::PartitionState;
use allidb_storage::provenance::{self, PutMode};
use tokio::sync::watch;

use crate::ClusterError;
use crate::cells::ReplicaMutation;
use crate::consistency::ConsistencyLevel;
use crate::hints::HintLog;
use crate::hints::dispatcher::peer_label;
use crate::latency::PeerLatency;
use crate::membership::ClusterView;
use crate::replica::LocalReplica;
use crate::ring::HostId;

/// How the coordinator counts replicas and keeps hints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoordinatorOptions {
    /// Replicas per partition (`cluster.replication_factor`, capped by the number of nodes).
    pub replication_factor: usize,
    /// Keep hints for replicas that miss a write (`cluster.hinted_handoff_enabled`).
    pub hinted_handoff: bool,
}

/// What the coordinator of a ring of several nodes keeps beside its replicas.
#[derive(Debug)]
pub struct RingDuties {
    /// Where hints for replicas that miss a write are kept.
    pub hints: Arc<HintLog>,
    /// Pauses of this process: after one, the next write checks the ring with the peers first.
    pub pauses: PauseDetector,
    /// The ring's record of attribute types.
    pub attribute_types: Arc<dyn AttributeTypeLog>,
}

/// Runs writes and point reads against the ring; cheap to clone.
#[derive(Clone, Debug)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    host: HostId,
    /// This node's replica: its store's clock and validation.
    local: LocalReplica,
    view: watch::Receiver<Arc<ClusterView>>,
    /// Every replica's reads and writes, this node's own included.
    replicas: Arc<dyn ReplicaAccess>,
    /// Where hints are kept (`None`: a ring of one, with no other replica to deliver them to).
    hints: Option<Arc<HintLog>>,
    options: CoordinatorOptions,
    /// Pauses of this process, checked with the peers before the next write ([`pause`];
    /// `None`: a ring of one, with no peer to check with).
    pauses: Option<PauseDetector>,
    /// Held while one such check runs.
    checking: tokio::sync::Mutex<()>,
    /// Each replica's point-read latency: the order replicas are asked in, and when a slow
    /// one is read around ([`read`]).
    latency: PeerLatency,
    /// The ring's record of attribute types ([`attribute_types`]; `None`: a ring of one, whose
    /// own check sees every entity).
    attribute_types: Option<Arc<dyn AttributeTypeLog>>,
}

impl Coordinator {
    /// A coordinator on host `host` whose own replica is `local`, reaching every replica
    /// (its own included) through `replicas`, with a ring's `duties`.
    pub fn new(
        host: HostId,
        local: LocalReplica,
        view: watch::Receiver<Arc<ClusterView>>,
        replicas: Arc<dyn ReplicaAccess>,
        options: CoordinatorOptions,
        duties: RingDuties,
    ) -> Self {
        Self::with_parts(host, local, view, replicas, options, Some(duties))
    }

    /// The coordinator of a ring of one ([`crate::standalone`]): `local`'s host alone in
    /// `view`, reached through `replicas`, at replication factor 1; it keeps no hints, checks
    /// no pause and records no attribute types (there is no other replica and no peer).
    pub(crate) fn of_ring_of_one(
        local: LocalReplica,
        view: watch::Receiver<Arc<ClusterView>>,
        replicas: Arc<dyn ReplicaAccess>,
    ) -> Self {
        let options = CoordinatorOptions {
            replication_factor: 1,
            hinted_handoff: false,
        };
        Self::with_parts(local.host(), local, view, replicas, options, None)
    }

    fn with_parts(
        host: HostId,
        local: LocalReplica,
        view: watch::Receiver<Arc<ClusterView>>,
        replicas: Arc<dyn ReplicaAccess>,
        options: CoordinatorOptions,
        duties: Option<RingDuties>,
    ) -> Self {
        let (hints, pauses, attribute_types) = match duties {
            Some(d) => (Some(d.hints), Some(d.pauses), Some(d.attribute_types)),
            None => (None, None, None),
        };
        Self {
            inner: Arc::new(Inner {
                host,
                local,
                view,
                replicas,
                hints,
                options,
                pauses,
                checking: tokio::sync::Mutex::new(()),
                latency: PeerLatency::default(),
                attribute_types,
            }),
        }
    }

    fn store(&self) -> &Arc<UnifiedStore> {
        self.inner.local.store()
    }

    /// The host this coordinator runs on.
    pub fn host(&self) -> HostId {
        self.inner.host
    }

    /// Replicas per partition (`cluster.replication_factor`, before capping by the ring's size).
    pub fn replication_factor(&self) -> usize {
        self.inner.options.replication_factor
    }

    /// The hints waiting per target host, in bytes.
    pub fn hints_pending(&self) -> BTreeMap<HostId, u64> {
        self.inner
            .hints
            .as_ref()
            .map(|hints| hints.pending())
            .unwrap_or_default()
    }

    /// This node's own replica.
    pub(crate) fn local(&self) -> &LocalReplica {
        &self.inner.local
    }

    /// Whether this node is the only member of its ring (a ring of one), with no movement
    /// running: then no other coordinator stamps cells, and its store holds every replica.
    pub(crate) fn alone(&self) -> bool {
        let view = self.inner.view.borrow();
        view.pending.is_none() && view.ring.hosts().iter().eq([&self.inner.host])
    }

    /// The error of this node's own replica when it is the only one of `replicas` (a ring of
    /// one, or a partition at replication factor 1 that this node holds) and it failed: the
    /// client then gets the store's own error (a full disk is `RESOURCE_EXHAUSTED`, an I/O
    /// failure `UNAVAILABLE` naming it), not a level message naming one replica.
    fn sole_replica_failure(
        &self,
        replicas: &[HostId],
        failed: &mut BTreeMap<HostId, ClusterError>,
    ) -> Option<ClusterError> {
        match replicas {
            [only] if *only == self.inner.host => failed.remove(only),
            _ => None,
        }
    }

    /// Replaces entities (`PutEntity`, `BatchPutEntities`, `BulkPutEntities`): validated
    /// against the local tenant state like a local put, planned from the stored partitions
    /// read at `level`, written at `level`.
    pub async fn put_entities(
        &self,
        tenant: &str,
        writes: Vec<EntityWrite>,
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        self.put_entities_as(tenant, writes, PutMode::Replace, level)
            .await
    }

    /// [`Coordinator::put_entities`] in `mode` (with [`PutMode::MergeSources`] each write is
    /// merged into the stored entity read at `level`).
    pub async fn put_entities_as(
        &self,
        tenant: &str,
        writes: Vec<EntityWrite>,
        mode: PutMode,
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let writes = self.prepared(tenant, writes).await?;
        let winners = mutation::put_winners(tenant, &writes).map_err(allidb_index::Error::from)?;
        let stored = self
            .read_partitions(
                tenant,
                winners.iter().map(|w| w.id.as_str()).collect(),
                level,
            )
            .await?;
        let merged: Vec<EntityWrite> = match mode {
            PutMode::Replace => Vec::new(),
            PutMode::MergeSources => winners
                .iter()
                .zip(&stored)
                .map(|(w, old)| provenance::merge_write(w, old))
                .collect(),
        };
        let winners: Vec<&EntityWrite> = match mode {
            PutMode::Replace => winners,
            PutMode::MergeSources => merged.iter().collect(),
        };
        let ts = self.store().engine().clock().now();
        let batch =
            mutation::plan_put(tenant, &winners, &stored, ts).map_err(allidb_index::Error::from)?;
        self.write(batch, level).await?;
        let sources = replaced_sources(&winners, &stored);
        self.remove_shadowed_in_edges(tenant, &sources, level).await
    }

    /// `writes` validated and prepared like a local put ([`UnifiedStore::prepare_put`]), their
    /// attribute types checked on every range ([`attribute_types`]).
    async fn prepared(
        &self,
        tenant: &str,
        writes: Vec<EntityWrite>,
    ) -> Result<Vec<EntityWrite>, ClusterError> {
        let owned_tenant = tenant.to_owned();
        let writes = self
            .inner
            .local
            .on_store("validation", move |store| {
                let mut writes = writes;
                store
                    .prepare_put(&owned_tenant, &mut writes)
                    .map(|()| writes)
            })
            .await?;
        self.check_attribute_types(tenant, &writes).await?;
        Ok(writes)
    }

    /// Deletes an entity (`DeleteEntity`); returns whether a live entity was found at `level`.
    pub async fn delete_entity(
        &self,
        tenant: &str,
        id: &str,
        level: ConsistencyLevel,
    ) -> Result<bool, ClusterError> {
        let stored = self.read_partitions(tenant, vec![id], level).await?;
        let ts = self.store().engine().clock().now();
        let Some(batch) = mutation::plan_delete(tenant, id, &stored[0], ts) else {
            return Ok(false);
        };
        self.write(batch, level).await?;
        let source = WrittenSource::after_replace(id, &stored[0], |_| true);
        self.remove_shadowed_in_edges(tenant, &[source], level)
            .await
            .map(|()| true)
    }

    /// Adds edges (`AddEdges`): both cells of each, each partition at `level`, timestamped
    /// after everything the ends hold at `level` (see [`Coordinator::edge_timestamp`]).
    pub async fn add_edges(
        &self,
        tenant: &str,
        edges: &[Edge],
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let ts = self
            .edge_timestamp(tenant, edges.iter().map(Edge::ends), level)
            .await?;
        let batch =
            mutation::plan_add_edges(tenant, edges, ts).map_err(allidb_index::Error::from)?;
        self.write(batch, level).await?;
        let sources: BTreeSet<&str> = edges.iter().map(|e| e.from.as_str()).collect();
        let sources: Vec<WrittenSource> = sources
            .into_iter()
            .map(|id| WrittenSource::after_edge_write(id, ts))
            .collect();
        self.remove_shadowed_in_edges(tenant, &sources, level).await
    }

    /// Removes edges (`RemoveEdges`), timestamped after everything the ends hold at `level`.
    pub async fn remove_edges(
        &self,
        tenant: &str,
        edges: &[EdgeRef],
        level: ConsistencyLevel,
    ) -> Result<(), ClusterError> {
        let ts = self
            .edge_timestamp(tenant, edges.iter().map(EdgeRef::ends), level)
            .await?;
        let batch =
            mutation::plan_remove_edges(tenant, edges, ts).map_err(allidb_index::Error::from)?;
        self.write(batch, level).await
    }

    /// The timestamp of a write of the `(from, relation, to)` edges: their ends read at `level`
    /// first (after the edges are checked), so
    /// this node's clock moves past every cell they hold there. Without it, an edge removal
    /// through a node whose clock lags the one that added the edge would be older than the
    /// addition and lose to it. A node alone in its ring (a ring of one) reads nothing: it is
    /// the only replica, and its clock observes every cell it commits (and every stored one
    /// when its store opens).
    async fn edge_timestamp<'a>(
        &self,
        tenant: &str,
        edges: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
        level: ConsistencyLevel,
    ) -> Result<u64, ClusterError> {
        let edges: Vec<(&str, &str, &str)> = edges.collect();
        mutation::validate_edges(tenant, edges.iter().copied())
            .map_err(allidb_index::Error::from)?;
        if self.alone() {
            return Ok(self.store().engine().clock().now());
        }
        let ids: BTreeSet<&str> = edges
            .iter()
            .flat_map(|(from, _, to)| [*from, *to])
            .collect();
        self.read_partitions(tenant, ids.into_iter().collect(), level)
            .await?;
        Ok(self.store().engine().clock().now())
    }

    /// Drops `tenant` (`DropTenant`) at `level`: every cell of it written before now, on every
    /// node (docs/cluster.md "Tenant drops"). Returns the drop's timestamp and what this node
    /// held of the tenant when the drop began.
    pub async fn drop_tenant(
        &self,
        tenant: &str,
        level: ConsistencyLevel,
    ) -> Result<TenantDropped, ClusterError> {
        let owned_tenant = tenant.to_owned();
        let held = self
            .inner
            .local
            .on_store("tenant stats", move |store| {
                store.tenant_stats(&owned_tenant)
            })
            .await?;
        self.observe_clocks().await;
        let ts = self.store().engine().clock().now();
        self.write_drop(tenant, ts, level).await?;
        Ok(TenantDropped {
            ts,
            entities: held.as_ref().map_or(0, |s| s.entities),
            vectors: held.as_ref().map_or(0, |s| s.vectors),
        })
    }

    /// Moves this node's clock past the clock of every other node gossip shows up (the `Clock`
    /// call, all at once, within the read timeout), so that a timestamp taken next supersedes
    /// every cell those nodes store, whatever coordinator wrote it. A node that does not answer
    /// is passed over: the drop still reaches it (or its hint does), and the clock skew bound
    /// (`cluster.max_clock_skew_ms`) limits how far ahead a cell on it can be.
    async fn observe_clocks(&self) {
        let view = self.inner.view.borrow().clone();
        let calls = view
            .nodes
            .keys()
            .filter(|h| **h != self.inner.host)
            .map(|host| {
                let view = &view;
                async move { (*host, self.inner.replicas.clock(view, *host).await) }
            });
        for (host, answer) in futures_util::future::join_all(calls).await {
            match answer {
                Ok(now) => self.store().engine().clock().observe(now),
                Err(error) => {
                    tracing::debug!(host = %host, %error, "no clock reading before a drop")
                }
            }
        }
    }

    /// One live entity at `level` (`GetEntity`); an expired one is not found.
    pub async fn get_entity(
        &self,
        tenant: &str,
        id: &str,
        level: ConsistencyLevel,
    ) -> Result<Option<Entity>, ClusterError> {
        let mut found = self.get_entities(tenant, &[id], level).await?;
        Ok(found.pop().flatten())
    }

    /// The live entities `ids` at `level`, in order (`None`: not found, or expired), read all
    /// at once (`GetEntities`, and the entities a cluster-wide read returns): concurrent reads
    /// to one replica share a batched call, and a ring of one reads them in one local call.
    pub async fn get_entities(
        &self,
        tenant: &str,
        ids: &[&str],
        level: ConsistencyLevel,
    ) -> Result<Vec<Option<Entity>>, ClusterError> {
        allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        for id in ids {
            allidb_storage::key::validate_id(id).map_err(allidb_index::Error::from)?;
        }
        let read = self
            .read_cells_of(tenant, ids, level, Purpose::Read)
            .await?;
        // Expiry is judged here, by this coordinator's clock, whatever the replicas hold.
        let now = allidb_storage::hlc::wall_nanos();
        read.into_iter()
            .zip(ids)
            .map(|(cells, id)| {
                let state = PartitionState::resolve(cells).map_err(allidb_index::Error::from)?;
                Ok(state
                    .into_entity(tenant, id)
                    .filter(|e| !e.body.expired_at(now)))
            })
            .collect()
    }

    /// Sends anti-entropy repair's `mutation` (tenant drops, or cells a replica lacks, with
    /// their own timestamps) to the replica `host` through the normal batch path.
    pub async fn send_repair(
        &self,
        host: HostId,
        mutation: &ReplicaMutation,
    ) -> Result<(), ClusterError> {
        let view = self.inner.view.borrow().clone();
        self.inner
            .replicas
            .apply(&view, host, mutation, "repair")
            .await
            .map_err(|reason| {
                ClusterError::Unavailable(format!(
                    "sending {} repaired cells and {} tenant drops to {}: {reason}",
                    mutation.cells.len(),
                    mutation.drops.len(),
                    peer_label(&view, host)
                ))
            })
    }

    /// The stored partitions of `ids` read at `level`, in order; the clock moves past every
    /// timestamp read so the mutation planned next supersedes them.
    async fn read_partitions(
        &self,
        tenant: &str,
        ids: Vec<&str>,
        level: ConsistencyLevel,
    ) -> Result<Vec<PartitionState>, ClusterError> {
        let read = self
            .read_cells_of(tenant, &ids, level, Purpose::Write)
            .await?;
        let mut stored = Vec::with_capacity(ids.len());
        for cells in read {
            if let Some(newest) = cells.iter().map(|(_, ts, _)| *ts).max() {
                self.store().engine().clock().observe(newest);
            }
            stored.push(PartitionState::resolve(cells).map_err(allidb_index::Error::from)?);
        }
        Ok(stored)
    }
}

/// The sources a put of `winners` over `stored` (same order) replaced: each stored out-edge the
/// put dropped had its in-edge removed by the put itself.
fn replaced_sources(winners: &[&EntityWrite], stored: &[PartitionState]) -> Vec<WrittenSource> {
    winners
        .iter()
        .zip(stored)
        .map(|(w, old)| {
            let kept: BTreeSet<(&str, &str)> = w
                .out_edges
                .iter()
                .map(|e| (e.relation.as_str(), e.other.as_str()))
                .collect();
            WrittenSource::after_replace(&w.id, old, |e| {
                !kept.contains(&(e.relation.as_str(), e.to.as_str()))
            })
        })
        .collect()
}
