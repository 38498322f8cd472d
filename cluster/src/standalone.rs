//! A ring of one (DESIGN.md §6: "a single node is a ring of one whose coordinator calls the
//! local `UnifiedStore` directly"): what a node without `[cluster]` serves its data through,
//! the same [`Coordinator`] and [`ClusterQuery`] a member of a larger ring serves it through.
//!
//! Owns the fixed view of one member (this node, named by `server.node_id`, holding every
//! token) and the replica seams over this node's store alone ([`SoleReplica`]). Nothing here
//! gossips, keeps hints, checks pauses, logs topology or opens a network client; the topology
//! fence lives in memory only (no barrier raises it).
//!
//! Invariants: the view never changes (one member, one token, topology version 1); the one
//! replica of every partition and of every token range is this node, so the coordinator's
//! reads and writes at any consistency level are answered by the local store, and a query by
//! its own indexes in one call (`ClusterQuery` on a node covering every range).
//! Must never: name or call another host (a call for one fails `UNAVAILABLE`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use allidb_index::lexical::CorpusStats;
use allidb_index::store::{AttributeClaim, HopRequest, QueryAnswer, SeedCandidates};
use allidb_index::{QueryRequest, UnifiedStore};
use allidb_storage::Durability;
use async_trait::async_trait;
use tokio::sync::watch;

use crate::ClusterError;
use crate::cells::ReplicaMutation;
use crate::coordinator::Coordinator;
use crate::coordinator::replicas::{Answer, Read, ReplicaAccess, RingCheck};
use crate::membership::{ClusterView, NodeStatus, NodeView};
use crate::query::ClusterQuery;
use crate::query::ahead::{HopAhead, HopAnswer};
use crate::query::replicas::QueryReplicas;
use crate::query::tenants::{CountRequest, Counts};
use crate::query::text::CorpusRequest;
use crate::query::wire::{IdRange, SeedSearch};
use crate::replica::LocalReplica;
use crate::ring::{HostId, Ring};
use crate::topology::fence::TopologyFence;

/// The topology version of a ring of one (it never changes).
const TOPOLOGY_VERSION: u64 = 1;

/// The host id of a ring of one's only member (a node without `[cluster]` has no identity
/// file; nothing outside this process ever sees the id).
fn sole_host() -> HostId {
    HostId::from_u128(1)
}

/// The data path of a node without `[cluster]`: its coordinator and cluster-wide reads over a
/// ring whose only member it is.
#[derive(Clone, Debug)]
pub struct RingOfOne {
    /// Writes and point reads at a consistency level (every level is this node's store).
    pub coordinator: Coordinator,
    /// Queries, traversals, scans and tenant figures (answered by this node's indexes).
    pub reads: ClusterQuery,
}

impl RingOfOne {
    /// The ring of one over `store`, this node named `name` (`server.node_id`) in messages and
    /// per-node figures, writing with `durability` (`storage.durability`).
    pub fn new(name: &str, store: Arc<UnifiedStore>, durability: Durability) -> Self {
        let host = sole_host();
        let local = LocalReplica::new(host, store, durability, TopologyFence::in_memory());
        let (_, view) = watch::channel(Arc::new(view_of_one(host, name)));
        let replica = Arc::new(SoleReplica {
            local: local.clone(),
        });
        let coordinator = Coordinator::of_ring_of_one(local, view.clone(), replica.clone());
        let reads = ClusterQuery::new(coordinator.clone(), replica, view);
        Self { coordinator, reads }
    }
}

/// The view of a ring whose only member is `host`, named `name`, owning every token.
fn view_of_one(host: HostId, name: &str) -> ClusterView {
    let token = 0;
    // Never dialled: a ring of one sends no node-to-node call and gossips nothing.
    let no_address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let node = NodeView {
        host_id: host,
        name: name.to_owned(),
        status: NodeStatus::Normal,
        gossip_addr: no_address,
        rpc_addr: None,
        generation: 1,
        tokens: vec![token],
        in_gossip: false,
        load_bytes: None,
        engine_state: None,
        topology_version: Some(TOPOLOGY_VERSION),
    };
    ClusterView {
        nodes: [(host, node)].into_iter().collect(),
        ring: Arc::new(Ring::new(TOPOLOGY_VERSION, [(host, vec![token])])),
        pending: None,
    }
}

/// This node's store as the only replica of a ring of one, behind both replica seams (the
/// coordinator's and the cluster-wide reads').
#[derive(Debug)]
struct SoleReplica {
    local: LocalReplica,
}

impl SoleReplica {
    /// `Ok` for this node; for any other host the error a call to it fails with.
    fn only_this(&self, host: HostId) -> Result<(), ClusterError> {
        match host == self.local.host() {
            true => Ok(()),
            false => Err(ClusterError::Unavailable(format!(
                "host {host} is not a member of this ring of one"
            ))),
        }
    }
}

#[async_trait]
impl ReplicaAccess for SoleReplica {
    async fn read_partition(
        &self,
        _view: &ClusterView,
        host: HostId,
        tenant: &str,
        id: &str,
        digest_only: bool,
    ) -> Result<Answer, ClusterError> {
        self.only_this(host)?;
        let stored = self.local.partition(tenant, id).await?;
        Ok(Answer {
            read: Read::of(stored.cells, digest_only),
            dropped_at: stored.tenant_dropped_at,
        })
    }

    async fn apply(
        &self,
        view: &ClusterView,
        host: HostId,
        mutation: &ReplicaMutation,
        _reason: &str,
    ) -> Result<(), ClusterError> {
        self.only_this(host)?;
        self.local
            .apply_planned(mutation.clone(), view.ring.version())
            .await
    }

    async fn clock(&self, _view: &ClusterView, host: HostId) -> Result<u64, ClusterError> {
        self.only_this(host)?;
        Ok(self.local.store().engine().clock().now())
    }

    async fn check_attribute_types(
        &self,
        _view: &ClusterView,
        host: HostId,
        tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<Option<String>, ClusterError> {
        self.only_this(host)?;
        self.local
            .check_attribute_types(tenant, claims.to_vec())
            .await
    }

    async fn applied_version(&self, _view: &ClusterView, host: HostId) -> RingCheck {
        match self.only_this(host) {
            Ok(()) => RingCheck::Applied(TOPOLOGY_VERSION),
            Err(error) => RingCheck::Unreachable(error.to_string()),
        }
    }
}

#[async_trait]
impl QueryReplicas for SoleReplica {
    async fn answer_here(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<QueryAnswer, ClusterError> {
        self.local.answer(tenant, request).await
    }

    async fn search_seeds(
        &self,
        host: HostId,
        tenant: &str,
        search: &SeedSearch,
    ) -> Result<SeedCandidates, ClusterError> {
        self.only_this(host)?;
        self.local.search_seeds(tenant, search.clone()).await
    }

    async fn expand_hop(
        &self,
        host: HostId,
        tenant: &str,
        hop: &HopRequest,
        ahead: Option<&HopAhead>,
    ) -> Result<HopAnswer, ClusterError> {
        self.only_this(host)?;
        self.local
            .expand_hop(tenant, hop.clone(), ahead.cloned())
            .await
    }

    async fn scan_ids(
        &self,
        host: HostId,
        tenant: &str,
        range: &IdRange,
        limit: usize,
    ) -> Result<Vec<String>, ClusterError> {
        self.only_this(host)?;
        self.local.scan_ids(tenant, range.clone(), limit).await
    }

    async fn tenant_counts(
        &self,
        host: HostId,
        request: &CountRequest,
    ) -> Result<Counts, ClusterError> {
        self.only_this(host)?;
        self.local.tenant_counts(request.clone()).await
    }

    async fn corpus_stats(
        &self,
        host: HostId,
        tenant: &str,
        request: &CorpusRequest,
    ) -> Result<CorpusStats, ClusterError> {
        self.only_this(host)?;
        self.local.corpus_stats(tenant, request.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use allidb_index::StoreOptions;
    use allidb_storage::cell::{EdgeWrite, Embedding, EntityBody, EntityWrite};

    use super::*;
    use crate::consistency::ConsistencyLevel;
    use crate::query::ReadOptions;

    const TENANT: &str = "t";

    fn doc(id: &str, vector: [f32; 2], links_to: Option<&str>) -> EntityWrite {
        EntityWrite {
            id: id.to_owned(),
            body: EntityBody {
                entity_type: "doc".to_owned(),
                embeddings: vec![Embedding {
                    version: 1,
                    vector: vector.to_vec(),
                    timestamp_nanos: 0,
                }],
                ..EntityBody::default()
            },
            out_edges: links_to
                .map(|to| EdgeWrite {
                    relation: "links".to_owned(),
                    other: to.to_owned(),
                    weight: 1.0,
                    timestamp_nanos: 0,
                    sources: Vec::new(),
                })
                .into_iter()
                .collect(),
            in_edges: Vec::new(),
        }
    }

    /// Both runtimes: the store is called in place on a multi-threaded one, on the blocking
    /// pool on a current-thread one.
    async fn writes_reads_and_answers_from_its_own_store() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            UnifiedStore::open(dir.path().join("store"), StoreOptions::default())
                .expect("a new store"),
        );
        let ring = RingOfOne::new("solo", store.clone(), Durability::Sync);
        let writes = vec![doc("a", [1.0, 0.0], Some("b")), doc("b", [0.0, 1.0], None)];
        ring.coordinator
            .put_entities(TENANT, writes, ConsistencyLevel::All)
            .await
            .expect("ALL is this node's own write");
        let held = store
            .get_entity(TENANT, "b")
            .expect("a readable store")
            .expect("the write reached the local store");
        assert_eq!(held.in_edges.len(), 1, "the in-edge of a -> b");
        let read = ring
            .coordinator
            .get_entity(TENANT, "a", ConsistencyLevel::Quorum)
            .await
            .expect("QUORUM of one replica")
            .expect("found");
        assert_eq!(read.out_edges.len(), 1);

        let request = QueryRequest {
            vector: vec![1.0, 0.0],
            include_entities: true,
            ..QueryRequest::default()
        };
        let (reply, report) = ring
            .reads
            .query(
                TENANT,
                &request,
                ReadOptions::at(ConsistencyLevel::All),
                false,
            )
            .await
            .expect("a query");
        assert_eq!(reply.hits[0].result.entity_id.as_ref(), "a");
        assert!(reply.hits.iter().all(|hit| hit.entity.is_some()));
        assert_eq!(
            (
                report.coverage.ranges_total,
                report.coverage.ranges_answered
            ),
            (1, 1)
        );
        assert_eq!(report.coverage.nodes_asked, ["solo"]);
        let calls: Vec<(&str, usize)> = report
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.calls))
            .collect();
        assert_eq!(calls, [("solo", 1)], "one call to its own indexes");

        assert!(
            ring.coordinator
                .delete_entity(TENANT, "b", ConsistencyLevel::One)
                .await
                .expect("a delete")
        );
        let listing = ring.reads.tenants(None, true).await.expect("a listing");
        assert_eq!(listing.tenants[0].entities, 1);
        assert_eq!(listing.nodes[0].node, "solo");
    }

    #[tokio::test]
    async fn a_ring_of_one_serves_from_its_store_on_a_current_thread_runtime() {
        writes_reads_and_answers_from_its_own_store().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ring_of_one_serves_from_its_store_on_a_multi_threaded_runtime() {
        writes_reads_and_answers_from_its_own_store().await;
    }

    #[tokio::test]
    async fn a_ring_of_one_calls_no_other_host() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            UnifiedStore::open(dir.path().join("store"), StoreOptions::default())
                .expect("a new store"),
        );
        let local = LocalReplica::new(
            sole_host(),
            store,
            Durability::Sync,
            TopologyFence::in_memory(),
        );
        let replica = SoleReplica { local };
        let view = view_of_one(sole_host(), "solo");
        let stranger = HostId::from_u128(2);
        let refused = replica
            .read_partition(&view, stranger, TENANT, "a", false)
            .await
            .expect_err("another host");
        assert!(
            matches!(&refused, ClusterError::Unavailable(m) if m.contains("not a member of this ring of one")),
            "{refused}"
        );
        assert_eq!(view.ring.hosts().len(), 1);
        assert_eq!(view.ring.ranges().len(), 1, "one range: every token");
    }
}
