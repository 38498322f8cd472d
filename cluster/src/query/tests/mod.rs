//! Fake replicas for the cluster-wide query paths (each host holding only the partitions it
//! replicates), compared with one index holding everything: the walk across owners
//! (`walk.rs`), the reads over a covering set — candidate search, scan pages, tenant figures,
//! a routing key (`covering.rs`) — and text queries (`text.rs`). This module holds the fake
//! ring and the helpers they share.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use allidb_index::graph::{Direction, EdgeSpec, GraphIndex, TraversalOptions, Walk};
use allidb_index::lexical::{CorpusStats, LexicalIndex, LexicalOptions};
use allidb_index::query::EntityFacts;
use allidb_index::store::{
    HopNode, HopRequest, QueryAnswer, SeedCandidate, SeedCandidates, TextCandidate,
};
use allidb_index::vector::Metric;
use allidb_index::vector::VectorHit;
use allidb_index::{Filter, QueryRequest, TenantStats};
use async_trait::async_trait;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ahead::{self, HopAhead, HopAnswer};
use super::replicas::QueryReplicas;
use super::tenants::{CountRequest, Counts};
use super::text::CorpusRequest;
use super::walk::{GatheredWalk, KnownSeeds, first_hop_steps, walk_across};
use super::wire::{IdRange, SeedSearch};
use super::{Fanout, ReadOptions};
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;
use crate::latency::PeerLatency;
use crate::membership::ClusterView;
use crate::ring::{HostId, Ring, SpanIndex, token};

mod covering;
mod text;
mod walk;

const TENANT: &str = "t";

/// Words of the entities' texts: entity `i` holds a few of them, chosen by `i`.
const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];

/// The text of entity `i`: 1 to 5 of [`WORDS`], repeats included, so lengths and term
/// frequencies vary.
fn text_of(i: usize) -> String {
    (0..1 + i % 5)
        .map(|j| WORDS[(i * 7 + j * j * 3) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as a lexical index holds it.
fn body(text: &str) -> allidb_storage::cell::EntityBody {
    allidb_storage::cell::EntityBody {
        chunks: vec![allidb_storage::cell::TextChunk {
            chunk_id: "c".to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One fake host: the adjacency of the partitions it replicates (a partition holds its
/// out-edges and its in-edges), its entities with a similarity each, and their texts.
#[derive(Debug)]
struct FakeHost {
    graph: GraphIndex,
    entities: BTreeMap<String, f32>,
    texts: LexicalIndex,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            graph: GraphIndex::new(),
            entities: BTreeMap::new(),
            texts: LexicalIndex::new(LexicalOptions::default())
                .expect("the default lexical options are valid"),
        }
    }
}

#[derive(Debug)]
struct FakeRing {
    ring: Ring,
    replication_factor: usize,
    hosts: BTreeMap<HostId, FakeHost>,
    failing: BTreeSet<HostId>,
    /// Calls per host.
    calls: Mutex<BTreeMap<HostId, usize>>,
    /// The nodes hops asked the steps of, in order.
    asked_steps: Mutex<Vec<String>>,
    /// The `ef` each host's candidate search was asked with.
    efs: Mutex<BTreeMap<HostId, Option<usize>>>,
}

impl FakeRing {
    /// `hosts` hosts of 4 vnodes each at replication factor `rf`, holding `edges` between
    /// `nodes` entities `n0..`, entity `i` with similarity `i / nodes` and text [`text_of`]`(i)`.
    fn new(hosts: u128, rf: usize, nodes: usize, edges: &[(usize, &str, usize, f32)]) -> Self {
        let mut rng = StdRng::seed_from_u64(7);
        let ring = Ring::new(
            1,
            (1..=hosts).map(|h| (HostId::from_u128(h), (0..4).map(|_| rng.random()).collect())),
        );
        let mut fake = FakeRing {
            hosts: ring
                .hosts()
                .iter()
                .map(|h| (*h, FakeHost::default()))
                .collect(),
            ring,
            replication_factor: rf,
            failing: BTreeSet::new(),
            calls: Mutex::new(BTreeMap::new()),
            asked_steps: Mutex::new(Vec::new()),
            efs: Mutex::new(BTreeMap::new()),
        };
        for i in 0..nodes {
            let id = format!("n{i}");
            for host in fake.replicas(&id) {
                let held = fake.hosts.get_mut(&host).expect("a replica is a host");
                held.entities.insert(id.clone(), i as f32 / nodes as f32);
                held.texts.upsert_body(&id, &body(&text_of(i)), 1);
            }
        }
        for (from, relation, to, weight) in edges {
            let (from, to) = (format!("n{from}"), format!("n{to}"));
            let holders: BTreeSet<HostId> = fake
                .replicas(&from)
                .into_iter()
                .chain(fake.replicas(&to))
                .collect();
            for host in holders {
                let spec = EdgeSpec {
                    relation: (*relation).to_owned(),
                    to: to.clone(),
                    weight: *weight,
                };
                fake.hosts[&host]
                    .graph
                    .add_edges(&from, &[spec], 0)
                    .unwrap();
            }
        }
        fake
    }

    fn replicas(&self, id: &str) -> Vec<HostId> {
        self.ring
            .replicas_of_key(TENANT, id, self.replication_factor)
            .hosts()
            .to_vec()
    }

    fn view(&self) -> Arc<ClusterView> {
        ClusterView::all_up(self.ring.clone())
    }

    /// What `host` holds of each node of `hop`, in order (the store's `describe_hop`).
    fn describe(&self, host: HostId, hop: &HopRequest) -> Result<Vec<HopNode>, ClusterError> {
        let held = &self.hosts[&host];
        let ids: Vec<&str> = hop.entity_ids.iter().map(String::as_str).collect();
        for id in &ids {
            assert!(
                self.replicas(id).contains(&host),
                "{id} asked of a host that does not replicate it"
            );
        }
        let steps = match &hop.steps {
            None => vec![Default::default(); ids.len()],
            Some(wanted) => held
                .graph
                .steps_from_each(&ids, &wanted.options, wanted.limit, &wanted.walked)
                .map_err(ClusterError::Store)?,
        };
        Ok(ids
            .iter()
            .zip(steps)
            .map(|(id, steps)| HopNode {
                facts: held.entities.get(*id).map(|_| EntityFacts {
                    importance: 0.0,
                    updated_at_micros: 1,
                }),
                similarity: held.entities.get(*id).copied(),
                matches_filter: held.entities.contains_key(*id),
                lexical: hop
                    .text
                    .as_ref()
                    .and_then(|text| held.texts.score_of(&text.terms, id, Some(&text.corpus))),
                steps,
            })
            .collect())
    }

    fn called(&self, host: HostId) -> Result<(), ClusterError> {
        *self.calls.lock().entry(host).or_default() += 1;
        if self.failing.contains(&host) {
            return Err(ClusterError::Peer {
                addr: "127.0.0.1:1".parse().unwrap(),
                reason: "killed".to_owned(),
            });
        }
        Ok(())
    }

    fn total_calls(&self) -> usize {
        self.calls.lock().values().sum()
    }
}

#[async_trait]
impl QueryReplicas for FakeRing {
    async fn search_seeds(
        &self,
        host: HostId,
        _tenant: &str,
        search: &SeedSearch,
    ) -> Result<SeedCandidates, ClusterError> {
        self.called(host)?;
        self.efs.lock().insert(host, search.ef);
        let facts = EntityFacts {
            importance: 0.0,
            updated_at_micros: 1,
        };
        let texts = &self.hosts[&host].texts;
        let bm25 = |id: &str| {
            let text = search.text.as_ref()?;
            texts.score_of(&text.terms, id, Some(&text.corpus))
        };
        let mut held: Vec<(&String, &f32)> = self.hosts[&host].entities.iter().collect();
        held.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let vector = match search.vector.is_empty() {
            true => Vec::new(),
            false => held
                .into_iter()
                .take(search.count)
                .map(|(id, similarity)| SeedCandidate {
                    hit: VectorHit {
                        entity_id: Arc::from(id.as_str()),
                        similarity: *similarity,
                    },
                    facts,
                    lexical: bm25(id),
                })
                .collect(),
        };
        let lexical = match &search.text {
            None => Vec::new(),
            Some(text) => texts
                .search(&text.terms, search.count, None, Some(&text.corpus))
                .into_iter()
                .map(|hit| TextCandidate {
                    similarity: (!search.vector.is_empty())
                        .then(|| self.hosts[&host].entities[&*hit.entity_id]),
                    hit,
                    facts,
                })
                .collect(),
        };
        let steps = match &search.steps {
            None => HashMap::new(),
            Some(wanted) => {
                let ids: BTreeSet<&str> = vector
                    .iter()
                    .map(|c| &*c.hit.entity_id)
                    .chain(lexical.iter().map(|c| &*c.hit.entity_id))
                    .collect();
                let ids: Vec<&str> = ids.into_iter().collect();
                self.hosts[&host]
                    .graph
                    .complete_steps(&ids, &wanted.options, wanted.limit, &wanted.walked)
                    .map_err(ClusterError::Store)?
            }
        };
        Ok(SeedCandidates {
            vector,
            lexical,
            steps,
        })
    }

    async fn expand_hop(
        &self,
        host: HostId,
        tenant: &str,
        hop: &HopRequest,
        ahead: Option<&HopAhead>,
    ) -> Result<HopAnswer, ClusterError> {
        self.called(host)?;
        if hop.steps.is_some() {
            self.asked_steps
                .lock()
                .extend(hop.entity_ids.iter().cloned());
        }
        ahead::answer_hop(tenant, hop, ahead, |hop| self.describe(host, hop))
    }

    async fn answer_here(
        &self,
        _tenant: &str,
        _request: QueryRequest,
    ) -> Result<QueryAnswer, ClusterError> {
        Err(ClusterError::Unavailable(
            "a fake ring has no store of its own: its tests walk and search through the hosts"
                .to_owned(),
        ))
    }

    async fn scan_ids(
        &self,
        host: HostId,
        _tenant: &str,
        range: &IdRange,
        limit: usize,
    ) -> Result<Vec<String>, ClusterError> {
        self.called(host)?;
        Ok(self.hosts[&host]
            .entities
            .keys()
            .filter(|id| range.start.as_ref().is_none_or(|s| *id >= s))
            .filter(|id| range.end.as_ref().is_none_or(|e| *id < e))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn tenant_counts(
        &self,
        host: HostId,
        request: &CountRequest,
    ) -> Result<Counts, ClusterError> {
        self.called(host)?;
        let held = &self.hosts[&host].entities;
        let figures = |entities: usize| TenantStats {
            tenant: TENANT.to_owned(),
            entities,
            vectors: entities,
            dimension: Some(1),
            metric: Metric::Cosine,
            bytes: entities as u64,
        };
        let spans = SpanIndex::new(request.spans.iter().copied());
        let in_spans = held
            .keys()
            .filter(|id| spans.find(token(TENANT, id)).is_some())
            .count();
        Ok(Counts {
            in_spans: match request.spans.is_empty() {
                true => Vec::new(),
                false => vec![figures(in_spans)],
            },
            node: request.node_totals.then(|| vec![figures(held.len())]),
        })
    }

    async fn corpus_stats(
        &self,
        host: HostId,
        _tenant: &str,
        request: &CorpusRequest,
    ) -> Result<CorpusStats, ClusterError> {
        self.called(host)?;
        let spans = SpanIndex::new(request.spans.iter().copied());
        Ok(self.hosts[&host].texts.corpus_stats(&request.terms, &|id| {
            spans.find(token(TENANT, id)).is_some()
        }))
    }
}

fn fanout<'a>(fake: &'a FakeRing, latency: &'a PeerLatency, local: HostId) -> Fanout<'a> {
    Fanout {
        allow_partial: false,
        routing: None,
        report: Mutex::new(Default::default()),
        local,
        replicas: fake,
        latency,
        replication_factor: fake.replication_factor,
        view: fake.view(),
        tenant: TENANT,
        failed: Mutex::new(BTreeSet::new()),
        cover: Mutex::new(BTreeSet::new()),
    }
}

/// A single-threaded runtime for one test's calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without I/O or timers always builds")
}

/// A candidate search by the vector `[1.0]` alone for `count` candidates.
fn vector_search(count: usize) -> SeedSearch {
    SeedSearch {
        vector: vec![1.0],
        count,
        ef: None,
        filter: Filter::default(),
        text: None,
        steps: None,
    }
}
