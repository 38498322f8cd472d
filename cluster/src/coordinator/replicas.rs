//! The seam between the coordinator and the replicas it reads and writes: one trait
//! ([`ReplicaAccess`]) with the ring's implementation ([`RingReplicaAccess`]: this node's
//! store through its topology fence, other nodes through their `Replica` service) and, in the
//! coordinator's unit tests, a fake over in-memory partitions.
//!
//! Which host may be sent which call is one rule, the view's (`ClusterView::address_for` with
//! the call's kind): a host gossip shows down, or whose engine refuses writes, fails at once.
//! Must never: decide levels, hints or repairs (the coordinator does), or acknowledge a
//! mutation the replica did not apply.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use allidb_index::store::AttributeClaim;
use allidb_storage::partition::CellVersion;
use async_trait::async_trait;

use crate::ClusterError;
use crate::cells::{self, ReplicaMutation};
use crate::membership::{CallKind, ClusterView};
use crate::peer_client::PeerClients;
use crate::replica::LocalReplica;
use crate::ring::HostId;

/// What one replica answered for a partition.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Its cells, or their digest.
    pub read: Read,
    /// The replica's drop of the tenant (0: never dropped).
    pub dropped_at: u64,
}

/// A partition's cells, or only their digest ([`cells::digest`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    Cells(Vec<CellVersion>),
    Digest(Vec<u8>),
}

impl Read {
    /// `versions` as asked: the cells, or their digest when `digest_only`.
    pub fn of(versions: Vec<CellVersion>, digest_only: bool) -> Self {
        match digest_only {
            true => Read::Digest(cells::digest(&versions)),
            false => Read::Cells(versions),
        }
    }
}

/// What a peer says of this node's ring (after a pause of this node: `pause`).
#[derive(Clone, Debug, PartialEq)]
pub enum RingCheck {
    /// The topology version it applied.
    Applied(u64),
    /// It refuses this node, which left the ring (its words).
    Refused(String),
    /// It did not answer (why).
    Unreachable(String),
}

/// The calls the coordinator sends one replica; an error says why the replica did not answer
/// (its text goes into the level's `Unavailable` message and the hint log; this node's own
/// store's error reaches the client as it is when this node is a partition's only replica).
#[async_trait]
pub trait ReplicaAccess: Send + Sync + Debug {
    /// Partition `id` of `tenant` as `host` stores it (or its digest), read on `view`'s ring.
    async fn read_partition(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: &str,
        id: &str,
        digest_only: bool,
    ) -> Result<Answer, ClusterError>;

    /// Applies `mutation` (planned on `view`'s ring) on `host`; `reason` labels the call.
    async fn apply(
        &self,
        view: &ClusterView,
        host: HostId,
        mutation: &ReplicaMutation,
        reason: &str,
    ) -> Result<(), ClusterError>;

    /// `host`'s clock reading (a hybrid logical timestamp).
    async fn clock(&self, view: &ClusterView, host: HostId) -> Result<u64, ClusterError>;

    /// `host`'s refusal of `claims` (one of its live entities of `tenant` holds a claimed key as
    /// another type), if any ([`super::attribute_types`]).
    async fn check_attribute_types(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<Option<String>, ClusterError>;

    /// What peer `host` says of this node's ring, asked at the address gossip last gave it
    /// whatever its status in `view` (a view from before a pause shows every peer down).
    async fn applied_version(&self, view: &ClusterView, host: HostId) -> RingCheck;
}

/// The ring's replicas: this node's store without a network hop, the others through their
/// `Replica` service at the address gossip gave them.
#[derive(Debug)]
pub struct RingReplicaAccess {
    local: LocalReplica,
    clients: Arc<PeerClients>,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl RingReplicaAccess {
    /// Replicas reached through `clients` (reads bounded by `read_timeout`, writes by
    /// `write_timeout`), this node's own being `local`.
    pub fn new(
        local: LocalReplica,
        clients: Arc<PeerClients>,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Self {
            local,
            clients,
            read_timeout,
            write_timeout,
        }
    }
}

#[async_trait]
impl ReplicaAccess for RingReplicaAccess {
    async fn read_partition(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: &str,
        id: &str,
        digest_only: bool,
    ) -> Result<Answer, ClusterError> {
        if host == self.local.host() {
            let stored = self.local.partition(tenant, id).await?;
            return Ok(Answer {
                read: Read::of(stored.cells, digest_only),
                dropped_at: stored.tenant_dropped_at,
            });
        }
        let addr = view
            .address_for(host, CallKind::Read)
            .map_err(ClusterError::Unavailable)?;
        let reply = self
            .clients
            .read_partition(
                host,
                addr,
                tenant,
                id,
                digest_only,
                view.ring.version(),
                self.read_timeout,
            )
            .await?;
        Ok(Answer {
            read: match digest_only {
                true => Read::Digest(reply.digest),
                false => Read::Cells(reply.cells.into_iter().map(cells::from_proto).collect()),
            },
            dropped_at: reply.tenant_dropped_at_micros,
        })
    }

    async fn apply(
        &self,
        view: &ClusterView,
        host: HostId,
        mutation: &ReplicaMutation,
        reason: &str,
    ) -> Result<(), ClusterError> {
        if host == self.local.host() {
            // Through the fence like a peer's write: planned on a ring older than this node's
            // fence, it is refused here too (and hinted), never acknowledged by a replica the
            // newer ring does not have.
            return self
                .local
                .apply_planned(mutation.clone(), view.ring.version())
                .await;
        }
        let addr = view
            .address_for(host, CallKind::Write)
            .map_err(ClusterError::Unavailable)?;
        self.clients
            .mutate(
                host,
                addr,
                mutation,
                reason,
                view.ring.version(),
                self.write_timeout,
            )
            .await
    }

    async fn clock(&self, view: &ClusterView, host: HostId) -> Result<u64, ClusterError> {
        if host == self.local.host() {
            return Ok(self.local.store().engine().clock().now());
        }
        let addr = view
            .address_for(host, CallKind::Read)
            .map_err(ClusterError::Unavailable)?;
        self.clients
            .clock(host, addr, view.ring.version(), self.read_timeout)
            .await
    }

    async fn check_attribute_types(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<Option<String>, ClusterError> {
        if host == self.local.host() {
            return self
                .local
                .check_attribute_types(tenant, claims.to_vec())
                .await;
        }
        let addr = view
            .address_for(host, CallKind::Read)
            .map_err(ClusterError::Unavailable)?;
        self.clients
            .check_attribute_types(
                host,
                addr,
                tenant,
                claims,
                view.ring.version(),
                self.read_timeout,
            )
            .await
    }

    async fn applied_version(&self, view: &ClusterView, host: HostId) -> RingCheck {
        let Some(addr) = view.nodes.get(&host).and_then(|node| node.rpc_addr) else {
            return RingCheck::Unreachable("no RPC address gossiped".to_owned());
        };
        match self
            .clients
            .applied_version(host, addr, self.read_timeout)
            .await
        {
            Ok(Ok(version)) => RingCheck::Applied(version),
            Ok(Err(why)) => RingCheck::Refused(why),
            Err(error) => RingCheck::Unreachable(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use allidb_index::{StoreOptions, UnifiedStore};
    use allidb_storage::Durability;
    use allidb_storage::cell::EntityBody;
    use allidb_storage::key::CellKey;

    use super::*;
    use crate::credentials::ClusterCredentials;
    use crate::ring::Ring;
    use crate::topology::fence::TopologyFence;

    #[tokio::test]
    async fn this_nodes_own_write_planned_on_a_ring_older_than_its_fence_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            UnifiedStore::open(dir.path().join("store"), StoreOptions::default())
                .expect("a new store"),
        );
        let fence = TopologyFence::open(dir.path()).expect("a new fence");
        let me = HostId::from_u128(1);
        let local = LocalReplica::new(me, store.clone(), Durability::Sync, fence.clone());
        let credentials = Arc::new(ClusterCredentials::new("c", "secret"));
        let clients = Arc::new(PeerClients::new(
            me,
            credentials,
            None,
            Duration::from_secs(1),
        ));
        let second = Duration::from_secs(1);
        let access = RingReplicaAccess::new(local, clients, second, second);
        let view = |version| ClusterView::all_up(Ring::new(version, [(me, vec![1u64 << 60])]));
        let write = |id: &str| {
            let body = EntityBody::default()
                .encode()
                .expect("an empty body encodes");
            ReplicaMutation::cells(vec![(CellKey::body("t", id).encode(), 1, Some(body))])
        };
        // A barrier of version 5 raised the fence; the coordinator still plans on version 4.
        fence.raise(5);
        let refused = access
            .apply(&view(4), me, &write("old-ring"), "test")
            .await
            .expect_err("a write planned on version 4 below the fence 5")
            .to_string();
        assert!(
            refused.contains("planned on topology version 4")
                && refused.contains("none older than 5"),
            "{refused}"
        );
        access
            .apply(&view(5), me, &write("new-ring"), "test")
            .await
            .expect("a write planned on the fence's version is applied");
        let held = |id: &str| {
            store
                .engine()
                .read_partition("t", id)
                .expect("a readable partition")
                .body
                .is_some()
        };
        assert!(!held("old-ring"), "the fenced write reached the store");
        assert!(held("new-ring"));
    }
}
