//! Cluster-wide reads (DESIGN.md §6 "Distributed query"): the Graph-RAG query, traversals and
//! scans, answered on any node of a ring of any size, a ring of one included, as one node
//! holding everything would answer them.
//!
//! - [`ahead`]: the last hop's nodes described with the hop before it.
//! - [`cover`]: the covering set of live hosts (this node first, then by measured latency).
//! - [`crate::latency`]: the per-peer latency average that ranks replicas (this module keeps its
//!   own, of its calls).
//! - [`replicas`]: the seam to the hosts asked (the ring's, or a fake in tests).
//! - [`report`]: a read's coverage and profile.
//! - [`wire`]: the node-to-node messages of these reads.
//! - `walk`: a bounded walk across owners, one batched call per owner per hop.
//! - [`tenants`]: the ring-wide tenant figures (`ListTenants`, `GetTenantStats`), each token
//!   range counted on one replica.
//! - [`text`]: a text query's corpus statistics, gathered from one replica per range.
//! - `seeds`: the hosts' candidate lists merged (and fused, for a hybrid query) into the seeds.
//!
//! How a query runs: when this node alone covers every range, its own indexes answer the whole
//! query in one call (`UnifiedStore::answer`, the single-node query). Otherwise every host of
//! the covering set searches everything it holds for the query's full seed count (so a global
//! top-k candidate is in the answer of a host that holds it; a text is scored with the whole
//! ring's corpus statistics, [`text`]), with a share of the query's `ef` (an entity is held by
//! several of them); the candidates are deduplicated and the best seed count
//! kept (the vector and BM25 lists fused as one node fuses them), each host sending the
//! complete steps of its candidates with them; the walk goes hop by hop over the owners (the
//! first hop asking only for seeds without complete steps); the ranking (unified score or
//! PageRank) runs here over the gathered walk, with the facts and similarities the owners sent; the results (and context entities) are
//! then read at the request's consistency level, a result gone at that level being replaced by
//! the next best. Candidate search and walk read one replica per range (ONE): replicas build
//! different HNSW graphs and may lag; the reads at the level make what is returned as fresh as
//! the level promises.
//!
//! Invariants: a request either hears from a live replica of every range or fails
//! `UNAVAILABLE` naming the ranges and the hosts down, unless it allows a partial answer (then
//! its report's coverage says what is missing); a host that fails during a request is
//! replaced by another replica of its ranges within the same request.
//! Must never: answer from fewer ranges than the ring has without saying so, or return an
//! entity its read at the request's level did not find.

pub mod ahead;
pub mod cover;
mod fanout;
pub mod replicas;
pub mod report;
mod seeds;
pub mod tenants;
#[cfg(test)]
mod tests;
pub mod text;
mod walk;
pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use allidb_index::graph::{Reached, TraversalOptions, Truncation};
use allidb_index::lexical::{LexicalHit, LexicalSettings};
use allidb_index::query::{
    FusedLists, HybridRanking, QueryPlan, Ranked, SimilaritySource, check_text_ranking, rank,
};
use allidb_index::store::{
    HopNode, QueryAnswer, SeedCandidate, SeedCandidates, TextCandidate, WalkContext, edges_between,
};
use allidb_index::vector::{Metric, VectorHit};
use allidb_index::{Filter, QueryContext, QueryHit, QueryReply, QueryRequest, TraverseHit};
use allidb_storage::cell::Entity;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::ClusterError;
use crate::consistency::ConsistencyLevel;
use crate::coordinator::Coordinator;
use crate::latency::PeerLatency;
use crate::membership::ClusterView;
use crate::replica::MAX_PARTITIONS_PER_READ;
use crate::ring::HostId;
use fanout::{Fanout, host_failure};
use replicas::QueryReplicas;
use report::{ReadReport, ReportBuilder};
use walk::KnownSeeds;
use wire::{IdRange, SeedSearch};

/// How many times a request replaces hosts that failed during it before giving up.
const MAX_ATTEMPTS: usize = 3;

/// Runs cluster-wide reads from this node; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterQuery {
    host: HostId,
    view: watch::Receiver<Arc<ClusterView>>,
    replicas: Arc<dyn QueryReplicas>,
    latency: Arc<PeerLatency>,
    /// Reads the returned entities at the request's level (with read repair).
    coordinator: Coordinator,
    replication_factor: usize,
    metric: Metric,
    lexical: Arc<LexicalSettings>,
    ef_search: usize,
}

impl ClusterQuery {
    /// Reads from host `host` over `replicas`, reading returned entities through
    /// `coordinator`. The vector metric (`index.metric`), each tenant's analyzer and BM25
    /// parameters (`index.lexical_*`) and the default `ef` (`index.ef_search`) are this node's
    /// store's, the same on every node.
    pub fn new(
        coordinator: Coordinator,
        replicas: Arc<dyn QueryReplicas>,
        view: watch::Receiver<Arc<ClusterView>>,
    ) -> Self {
        let store = coordinator.local().store();
        Self {
            host: coordinator.host(),
            replication_factor: coordinator.replication_factor(),
            metric: store.metric(),
            lexical: Arc::new(store.lexical_settings().clone()),
            ef_search: store.ef_search(),
            view,
            replicas,
            latency: Arc::new(PeerLatency::default()),
            coordinator,
        }
    }

    fn fanout<'a>(&'a self, tenant: &'a str, read: ReadOptions) -> Fanout<'a> {
        Fanout {
            allow_partial: read.allow_partial,
            routing: read.routing,
            report: Mutex::new(ReportBuilder::default()),
            local: self.host,
            replicas: &*self.replicas,
            latency: &self.latency,
            replication_factor: self.replication_factor,
            view: self.view.borrow().clone(),
            tenant,
            failed: Mutex::new(BTreeSet::new()),
            cover: Mutex::new(BTreeSet::new()),
        }
    }

    /// The Graph-RAG query over the whole ring (see the module doc) with its report;
    /// `context_entities` reads each context node's entity too.
    pub async fn query(
        &self,
        tenant: &str,
        request: &QueryRequest,
        read: ReadOptions,
        context_entities: bool,
    ) -> Result<(QueryReply, ReadReport), ClusterError> {
        let level = read.level;
        allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        let plan = &request.plan;
        plan.validate()?;
        metrics::counter!("allidb_cluster_queries_total", "kind" => "query").increment(1);
        let fanout = self.fanout(tenant, read);
        let verify = request.include_entities || level != ConsistencyLevel::One;
        // Twice k when the results are read again at the level, so a result gone there is
        // replaced by the next best.
        let ranked = match verify {
            true => plan.k.saturating_mul(2),
            false => plan.k,
        };
        let answer = match fanout.covered_here()? {
            true => fanout.answer_here(request, ranked).await?,
            false => self.answer_across(&fanout, request, ranked).await?,
        };
        let mut hits = Vec::with_capacity(plan.k);
        let mut results = answer.results.into_iter();
        while hits.len() < plan.k {
            let window: Vec<_> = results.by_ref().take(plan.k - hits.len()).collect();
            if window.is_empty() {
                break;
            }
            if !verify {
                hits.extend(window.into_iter().map(|result| QueryHit {
                    result,
                    entity: None,
                }));
                continue;
            }
            let ids: Vec<&str> = window.iter().map(|r| &*r.entity_id).collect();
            fanout.report.lock().round();
            let found = self.read_at(tenant, &ids, level).await?;
            for (result, entity) in window.into_iter().zip(found) {
                if let Some(entity) = entity {
                    let entity = request.include_entities.then_some(entity);
                    hits.push(QueryHit { result, entity });
                }
            }
        }
        let context = match answer.context {
            None => None,
            Some(walk) => {
                if context_entities {
                    fanout.report.lock().round();
                }
                let nodes = self
                    .with_entities(tenant, walk.nodes, context_entities, level)
                    .await?;
                let edges = edges_between(&nodes, walk.walked, walk.edges);
                Some(QueryContext {
                    nodes,
                    edges,
                    truncation: walk.truncation,
                })
            }
        };
        let reply = QueryReply {
            hits,
            context,
            plan: answer.plan,
        };
        Ok((reply, fanout.finish()))
    }

    /// The best `ranked` results of `request` and its kept walk, gathered from a covering set
    /// of several hosts: their candidates merged (by vector, and by BM25 with the whole ring's
    /// statistics when the query has a text, the two lists then fused as one node fuses them),
    /// the walk hop by hop over the owners, the ranking here.
    async fn answer_across(
        &self,
        fanout: &Fanout<'_>,
        request: &QueryRequest,
        ranked: usize,
    ) -> Result<QueryAnswer, ClusterError> {
        let plan = &request.plan;
        let text = match &request.text {
            None => None,
            Some(text) => {
                request.hybrid.validate()?;
                check_text_ranking(plan)?;
                Some(
                    fanout
                        .text_search(text, self.lexical.of(fanout.tenant))
                        .await?,
                )
            }
        };
        let count = plan.seed_count();
        let search = SeedSearch {
            vector: request.vector.clone(),
            count,
            ef: Some(plan.ef.unwrap_or(self.ef_search)),
            filter: request.filter.clone(),
            text: text.clone(),
            steps: walk::first_hop_steps(&plan.traversal),
        };
        let candidates = fanout.seeds(search).await?;
        let seeds: Vec<VectorHit> = candidates.vector.iter().map(|c| c.hit.clone()).collect();
        let lexical_hits: Vec<LexicalHit> =
            candidates.lexical.iter().map(|c| c.hit.clone()).collect();
        let lists = text.as_ref().map(|_| {
            FusedLists::new(
                self.metric,
                request.hybrid,
                (!request.vector.is_empty()).then_some(&seeds[..]),
                Some(&lexical_hits[..]),
            )
        });
        let starts: Vec<Arc<str>> = match &lists {
            Some(lists) => lists
                .seeds(&seeds, &lexical_hits, count)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
            None => seeds.iter().map(|s| s.entity_id.clone()).collect(),
        };
        let known = KnownSeeds::from(candidates);
        let starts: Vec<&str> = starts.iter().map(|id| &**id).collect();
        let gathered = walk::walk_across(
            fanout,
            &starts,
            &plan.traversal,
            &request.vector,
            &request.filter,
            text.as_ref(),
            known,
        )
        .await?;
        let nodes = &gathered.nodes;
        let matches = |id: &str| nodes.get(id).is_some_and(|n| n.matches_filter);
        let results = {
            let facts = |id: &str| nodes.get(id).and_then(|n| n.facts);
            let similarities = Gathered(nodes);
            let ranked_by = Ranked {
                metric: self.metric,
                similarities: &similarities,
                facts: &facts,
            };
            let filter: Option<&dyn Fn(&str) -> bool> = if request.filter.is_empty() {
                None
            } else {
                Some(&matches)
            };
            let with_margin = QueryPlan {
                k: ranked,
                ..plan.clone()
            };
            let lexical_of = |id: &str| nodes.get(id).and_then(|n| n.lexical.clone());
            let hybrid = lists.as_ref().map(|lists| HybridRanking {
                lists,
                lexical: &lexical_of,
            });
            let now = allidb_storage::hlc::wall_micros();
            rank(
                &ranked_by,
                &request.vector,
                &with_margin,
                &seeds,
                &gathered.walk,
                filter,
                now,
                hybrid.as_ref(),
            )?
        };
        let context = plan.keep_walk.then(|| {
            let walk = gathered.walk;
            WalkContext {
                walked: walk.reached.len(),
                nodes: walk
                    .reached
                    .into_iter()
                    .filter(|r| matches(&r.entity_id))
                    .collect(),
                edges: walk.edges,
                truncation: walk.truncation,
            }
        });
        Ok(QueryAnswer {
            results,
            context,
            plan: None,
        })
    }

    /// A graph-only traversal from `starts` over the whole ring: the live nodes reached (with
    /// their entities read at the level when `include_entities`), the limits that cut it, and
    /// the report.
    pub async fn traverse(
        &self,
        tenant: &str,
        starts: &[String],
        options: &TraversalOptions,
        include_entities: bool,
        read: ReadOptions,
    ) -> Result<(Vec<TraverseHit>, Truncation, ReadReport), ClusterError> {
        allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        metrics::counter!("allidb_cluster_queries_total", "kind" => "traverse").increment(1);
        let fanout = self.fanout(tenant, read);
        let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
        let gathered = walk::walk_across(
            &fanout,
            &starts,
            options,
            &[],
            &Filter::default(),
            None,
            KnownSeeds::default(),
        )
        .await?;
        let nodes = &gathered.nodes;
        let live: Vec<Reached> = gathered
            .walk
            .reached
            .into_iter()
            .filter(|r| nodes.get(&r.entity_id).is_some_and(|n| n.facts.is_some()))
            .collect();
        if include_entities {
            fanout.report.lock().round();
        }
        let hits = self
            .with_entities(tenant, live, include_entities, read.level)
            .await?;
        Ok((hits, gathered.walk.truncation, fanout.finish()))
    }

    /// Up to `limit` entities of `tenant` with `start <= id < end` over the whole ring, in id
    /// order, each read at `read.level` (one gone at that level is skipped). The ids come from
    /// as many replicas of each range as the level needs, so every entity a write at that
    /// level acknowledged is listed, also while a replica that missed it answers.
    pub async fn scan(
        &self,
        tenant: &str,
        range: IdRange,
        limit: usize,
        read: ReadOptions,
    ) -> Result<Vec<Entity>, ClusterError> {
        allidb_storage::key::validate_tenant(tenant).map_err(allidb_index::Error::from)?;
        metrics::counter!("allidb_cluster_queries_total", "kind" => "scan").increment(1);
        // A ring of one holds every replica: its page comes from one snapshot of its own
        // store, at every level, as one node holding everything reads it.
        if self.coordinator.alone() {
            return self.coordinator.local().scan(tenant, range, limit).await;
        }
        let level = read.level;
        let fanout = self.fanout(
            tenant,
            ReadOptions {
                allow_partial: false,
                ..read
            },
        );
        let mut entities: Vec<Entity> = Vec::with_capacity(limit);
        let mut range = range;
        let mut after: Option<String> = None;
        while entities.len() < limit {
            let want = (limit - entities.len()).min(MAX_PARTITIONS_PER_READ);
            let (ids, exhausted) = fanout
                .scan_ids(&range, want, after.as_deref(), level)
                .await?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            let names: Vec<&str> = ids.iter().map(String::as_str).collect();
            entities.extend(
                self.read_at(tenant, &names, level)
                    .await?
                    .into_iter()
                    .flatten(),
            );
            if exhausted {
                break;
            }
            range.start = Some(last.clone());
            after = Some(last);
        }
        Ok(entities)
    }

    /// `ids` read at `level`, in order (`None`: not found at that level). The reads go out
    /// together, so each replica gets them as one batched call.
    async fn read_at(
        &self,
        tenant: &str,
        ids: &[&str],
        level: ConsistencyLevel,
    ) -> Result<Vec<Option<Entity>>, ClusterError> {
        self.coordinator.get_entities(tenant, ids, level).await
    }

    /// `reached` as traversal hits, with their entities read at `level` when
    /// `include_entities` (a node gone at that level is dropped).
    async fn with_entities(
        &self,
        tenant: &str,
        reached: Vec<Reached>,
        include_entities: bool,
        level: ConsistencyLevel,
    ) -> Result<Vec<TraverseHit>, ClusterError> {
        if !include_entities {
            return Ok(reached
                .into_iter()
                .map(|reached| TraverseHit {
                    reached,
                    entity: None,
                })
                .collect());
        }
        let ids: Vec<&str> = reached.iter().map(|r| &*r.entity_id).collect();
        let entities = self.read_at(tenant, &ids, level).await?;
        Ok(reached
            .into_iter()
            .zip(entities)
            .filter_map(|(reached, entity)| {
                entity.map(|entity| TraverseHit {
                    reached,
                    entity: Some(entity),
                })
            })
            .collect())
    }
}

/// How a cluster-wide read reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadOptions {
    /// The level the returned entities are read at.
    pub level: ConsistencyLevel,
    /// Answer from the ranges with a live replica when some have none (else `UNAVAILABLE`).
    pub allow_partial: bool,
    /// The request's routing key ([`ReadOptions::routed`]): reads with the same key ask the
    /// same live replica of each range whichever node coordinates them. `None`: this node
    /// first, then the fastest replicas.
    pub routing: Option<u64>,
}

impl ReadOptions {
    /// Reads at `level`, failing without a live replica of every range, routed by latency.
    pub fn at(level: ConsistencyLevel) -> Self {
        Self {
            level,
            allow_partial: false,
            routing: None,
        }
    }

    /// These options with the routing of `routing_key` (an empty key: none).
    pub fn routed(self, routing_key: &str) -> Self {
        Self {
            routing: (!routing_key.is_empty())
                .then(|| xxhash_rust::xxh3::xxh3_64(routing_key.as_bytes())),
            ..self
        }
    }
}

/// Similarities the owners sent with their facts.
struct Gathered<'a>(&'a HashMap<Arc<str>, HopNode>);

impl SimilaritySource for Gathered<'_> {
    fn similarities(
        &self,
        _query: &[f32],
        entity_ids: &[&str],
    ) -> allidb_index::Result<Vec<Option<f32>>> {
        Ok(entity_ids
            .iter()
            .map(|id| self.0.get(*id).and_then(|n| n.similarity))
            .collect())
    }
}

/// What the candidate search told of each candidate (facts, similarity, BM25 score, complete
/// steps), so the walk does not ask for them again.
impl From<SeedCandidates> for KnownSeeds {
    fn from(candidates: SeedCandidates) -> Self {
        Self {
            nodes: known_nodes(candidates.vector, candidates.lexical),
            steps: candidates.steps,
        }
    }
}

/// Each candidate of the vector and lexical lists with its facts, similarity and BM25 score.
fn known_nodes(
    vector: Vec<SeedCandidate>,
    lexical: Vec<TextCandidate>,
) -> HashMap<Arc<str>, HopNode> {
    let mut known: HashMap<Arc<str>, HopNode> = HashMap::new();
    for c in vector {
        let node = HopNode {
            facts: Some(c.facts),
            similarity: Some(c.hit.similarity),
            matches_filter: true,
            lexical: c.lexical,
            ..HopNode::default()
        };
        known.insert(c.hit.entity_id, node);
    }
    for c in lexical {
        let node = known.entry(c.hit.entity_id.clone()).or_insert(HopNode {
            facts: Some(c.facts),
            similarity: c.similarity,
            matches_filter: true,
            ..HopNode::default()
        });
        node.lexical = Some(c.hit);
    }
    known
}
