//! The seam between the cluster-wide reads and the replicas they ask: one trait
//! ([`QueryReplicas`]) with the ring's implementation ([`RingReplicas`]: this node's store
//! directly, other nodes over the `Replica` service) and, in tests, fakes over in-memory
//! indexes.
//!
//! Must never: choose replicas or merge answers (the query module does), or block an async
//! worker on the store.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use allidb_index::QueryRequest;
use allidb_index::lexical::CorpusStats;
use allidb_index::store::{HopRequest, QueryAnswer, SeedCandidates};
use async_trait::async_trait;
use tokio::sync::watch;

use super::ahead::{HopAhead, HopAnswer};
use super::tenants::{CountRequest, Counts};
use super::text::CorpusRequest;
use super::wire::{IdRange, SeedSearch};
use crate::ClusterError;
use crate::membership::{CallKind, ClusterView};
use crate::peer_client::PeerClients;
use crate::replica::LocalReplica;
use crate::ring::HostId;

/// The calls a cluster-wide read sends to one host.
#[async_trait]
pub trait QueryReplicas: Send + Sync + Debug {
    /// `request` answered whole from this node's own indexes (ranked results and kept walk,
    /// no entity read), for when this node replicates every range.
    async fn answer_here(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<QueryAnswer, ClusterError>;

    /// The candidates `host` holds for `search`, best first.
    async fn search_seeds(
        &self,
        host: HostId,
        tenant: &str,
        search: &SeedSearch,
    ) -> Result<SeedCandidates, ClusterError>;

    /// What `host` holds of each node of `hop`, in order, and of the nodes `ahead` asks it to
    /// describe too.
    async fn expand_hop(
        &self,
        host: HostId,
        tenant: &str,
        hop: &HopRequest,
        ahead: Option<&HopAhead>,
    ) -> Result<HopAnswer, ClusterError>;

    /// The ids `host` holds in `range`, in order, at most `limit`.
    async fn scan_ids(
        &self,
        host: HostId,
        tenant: &str,
        range: &IdRange,
        limit: usize,
    ) -> Result<Vec<String>, ClusterError>;

    /// `host`'s tenant figures over the spans of `request` (and over everything it holds, when
    /// asked).
    async fn tenant_counts(
        &self,
        host: HostId,
        request: &CountRequest,
    ) -> Result<Counts, ClusterError>;

    /// `host`'s corpus statistics for a text query over the spans of `request`.
    async fn corpus_stats(
        &self,
        host: HostId,
        tenant: &str,
        request: &CorpusRequest,
    ) -> Result<CorpusStats, ClusterError>;
}

/// The ring's replicas: this node's store without a network hop, the others through their
/// `Replica` service at the address gossip gave them.
#[derive(Debug)]
pub struct RingReplicas {
    local: LocalReplica,
    clients: Arc<PeerClients>,
    view: watch::Receiver<Arc<ClusterView>>,
    timeout: Duration,
}

impl RingReplicas {
    /// Replicas reached through `clients` (calls bounded by `timeout`), this node being `local`.
    pub fn new(
        local: LocalReplica,
        clients: Arc<PeerClients>,
        view: watch::Receiver<Arc<ClusterView>>,
        timeout: Duration,
    ) -> Self {
        Self {
            local,
            clients,
            view,
            timeout,
        }
    }

    /// The address of `host` and the ring version to stamp, or why `host` cannot be asked.
    fn route(&self, host: HostId) -> Result<(std::net::SocketAddr, u64), ClusterError> {
        let view = self.view.borrow();
        let addr = view.address_for(host, CallKind::Read).map_err(|why| {
            ClusterError::Unavailable(format!("host {host} cannot be read: {why}"))
        })?;
        Ok((addr, view.ring.version()))
    }
}

#[async_trait]
impl QueryReplicas for RingReplicas {
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
        if host == self.local.host() {
            return self.local.search_seeds(tenant, search.clone()).await;
        }
        let (addr, version) = self.route(host)?;
        self.clients
            .search_seeds(host, addr, tenant, search, version, self.timeout)
            .await
    }

    async fn expand_hop(
        &self,
        host: HostId,
        tenant: &str,
        hop: &HopRequest,
        ahead: Option<&HopAhead>,
    ) -> Result<HopAnswer, ClusterError> {
        if host == self.local.host() {
            return self
                .local
                .expand_hop(tenant, hop.clone(), ahead.cloned())
                .await;
        }
        let (addr, version) = self.route(host)?;
        self.clients
            .expand_hop(host, addr, tenant, hop, ahead, version, self.timeout)
            .await
    }

    async fn scan_ids(
        &self,
        host: HostId,
        tenant: &str,
        range: &IdRange,
        limit: usize,
    ) -> Result<Vec<String>, ClusterError> {
        if host == self.local.host() {
            return self.local.scan_ids(tenant, range.clone(), limit).await;
        }
        let (addr, version) = self.route(host)?;
        self.clients
            .scan_ids(host, addr, tenant, range, limit, version, self.timeout)
            .await
    }

    async fn tenant_counts(
        &self,
        host: HostId,
        request: &CountRequest,
    ) -> Result<Counts, ClusterError> {
        if host == self.local.host() {
            return self.local.tenant_counts(request.clone()).await;
        }
        let (addr, version) = self.route(host)?;
        self.clients
            .tenant_counts(host, addr, request, version, self.timeout)
            .await
    }

    async fn corpus_stats(
        &self,
        host: HostId,
        tenant: &str,
        request: &CorpusRequest,
    ) -> Result<CorpusStats, ClusterError> {
        if host == self.local.host() {
            return self.local.corpus_stats(tenant, request.clone()).await;
        }
        let (addr, version) = self.route(host)?;
        self.clients
            .corpus_stats(host, addr, tenant, request, version, self.timeout)
            .await
    }
}
