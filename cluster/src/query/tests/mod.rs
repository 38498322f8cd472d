//! The cluster-wide walk and candidate search against fake replicas (each host holding only
//! the partitions it replicates), compared with one index holding everything.

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

use super::replicas::QueryReplicas;
use super::tenants::{CountRequest, Counts};
use super::text::CorpusRequest;
use super::walk::{KnownSeeds, first_hop_steps, walk_across};
use super::wire::{IdRange, SeedSearch};
use super::{Fanout, ReadOptions};
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;
use crate::latency::PeerLatency;
use crate::membership::ClusterView;
use crate::ring::{HostId, Ring, SpanIndex, token};

mod text;

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
        _tenant: &str,
        hop: &HopRequest,
    ) -> Result<Vec<HopNode>, ClusterError> {
        self.called(host)?;
        let held = &self.hosts[&host];
        let ids: Vec<&str> = hop.entity_ids.iter().map(String::as_str).collect();
        for id in &ids {
            assert!(
                self.replicas(id).contains(&host),
                "{id} asked of a host that does not replicate it"
            );
        }
        if hop.steps.is_some() {
            self.asked_steps
                .lock()
                .extend(hop.entity_ids.iter().cloned());
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

/// The walk over the fake ring, through host 1.
fn ring_walk(fake: &FakeRing, starts: &[&str], options: &TraversalOptions) -> Walk {
    let latency = PeerLatency::default();
    let fanout = fanout(fake, &latency, HostId::from_u128(1));
    let runtime = runtime();
    let gathered = runtime
        .block_on(walk_across(
            &fanout,
            starts,
            options,
            &[],
            &Filter::default(),
            None,
            KnownSeeds::default(),
        ))
        .unwrap();
    for reached in &gathered.walk.reached {
        assert!(
            gathered.nodes.contains_key(&reached.entity_id),
            "{} was described",
            reached.entity_id
        );
    }
    gathered.walk
}

/// Random edges between `nodes` nodes: three relations, weights from a few values (ties),
/// self-loops and parallel edges of different relations included.
fn random_edges(
    rng: &mut StdRng,
    nodes: usize,
    edges: usize,
) -> Vec<(usize, &'static str, usize, f32)> {
    (0..edges)
        .map(|_| {
            let relation = ["a", "b", "c"][rng.random_range(0..3)];
            let weight = [0.25, 0.5, 0.75, 1.0][rng.random_range(0..4)];
            (
                rng.random_range(0..nodes),
                relation,
                rng.random_range(0..nodes),
                weight,
            )
        })
        .collect()
}

fn whole_graph(edges: &[(usize, &str, usize, f32)]) -> GraphIndex {
    let graph = GraphIndex::new();
    for (from, relation, to, weight) in edges {
        let spec = EdgeSpec {
            relation: (*relation).to_owned(),
            to: format!("n{to}"),
            weight: *weight,
        };
        graph.add_edges(&format!("n{from}"), &[spec], 0).unwrap();
    }
    graph
}

#[test]
fn a_walk_across_owners_equals_the_walk_of_one_node_holding_everything() {
    let mut rng = StdRng::seed_from_u64(42);
    let nodes = 200;
    let edges = random_edges(&mut rng, nodes, 1_200);
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 2, nodes, &edges);
    let mut compared = 0;
    for direction in [Direction::Out, Direction::In, Direction::Both] {
        for (fan_out, node_budget, edge_budget) in [
            (16, 256, None),
            (2, 40, None),
            (3, 1_000, Some(25)),
            (1, 7, None),
        ] {
            for max_hops in 0..=3 {
                for relations in [None, Some(vec!["a".to_owned(), "c".to_owned()])] {
                    let options = TraversalOptions {
                        max_hops,
                        fan_out,
                        node_budget,
                        relations,
                        direction,
                        min_weight: 0.5,
                        edge_budget,
                    };
                    let starts = ["n3", "n77", "n3", "n150"];
                    let expected = whole.walk(&starts, &options).unwrap();
                    let got = ring_walk(&fake, &starts, &options);
                    assert_eq!(got, expected, "{options:?}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 3 * 4 * 4 * 2);
}

#[test]
fn seeds_bring_their_complete_steps_and_the_first_hop_asks_only_for_the_others() {
    let mut rng = StdRng::seed_from_u64(11);
    let nodes = 200;
    let mut edges = random_edges(&mut rng, nodes, 1_200);
    // n199, the best candidate (similarity 199/200), has more neighbours than a hop sends.
    edges.extend((0..150).map(|i| (199, "a", i, 1.0)));
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 3, nodes, &edges);
    let latency = PeerLatency::default();
    let runtime = runtime();
    for (max_hops, fan_out, node_budget, direction) in [
        (1, 4, 100, Direction::Out),
        (2, 3, 60, Direction::Both),
        (3, 16, 1_000, Direction::In),
    ] {
        let options = TraversalOptions {
            max_hops,
            fan_out,
            node_budget,
            relations: None,
            direction,
            min_weight: 0.5,
            edge_budget: None,
        };
        let fanout = fanout(&fake, &latency, HostId::from_u128(1));
        let search = SeedSearch {
            steps: first_hop_steps(&options),
            ..vector_search(10)
        };
        let mut candidates = runtime.block_on(fanout.seeds(search.clone())).unwrap();
        let complete = std::mem::take(&mut candidates.steps);
        let seeds: Vec<String> = candidates
            .vector
            .iter()
            .map(|c| c.hit.entity_id.to_string())
            .collect();
        let cut: Vec<&String> = seeds
            .iter()
            .filter(|id| !complete.contains_key(id.as_str()))
            .collect();
        let expect_cut = match direction {
            Direction::In => Vec::<&String>::new(),
            _ => vec![&seeds[0]],
        };
        assert_eq!(cut, expect_cut, "{options:?}");
        let starts: Vec<&str> = seeds.iter().map(String::as_str).collect();
        fake.asked_steps.lock().clear();
        let gathered = runtime
            .block_on(walk_across(
                &fanout,
                &starts,
                &options,
                &[],
                &Filter::default(),
                None,
                KnownSeeds {
                    steps: complete,
                    ..KnownSeeds::from(candidates)
                },
            ))
            .unwrap();
        assert_eq!(
            gathered.walk,
            whole.walk(&starts, &options).unwrap(),
            "{options:?}"
        );
        let asked_seeds: Vec<String> = fake
            .asked_steps
            .lock()
            .iter()
            .filter(|id| seeds.contains(id))
            .cloned()
            .collect();
        assert_eq!(
            asked_seeds.iter().collect::<Vec<_>>(),
            expect_cut,
            "only the seeds without complete steps are asked for them ({options:?})"
        );
    }
}

#[test]
fn a_hub_walk_across_owners_stops_at_the_same_bounds_in_one_round_per_hop() {
    // n0 has 5,000 out-edges (and n1..n20 link back to it); the walk keeps the same bound.
    let mut edges: Vec<(usize, &str, usize, f32)> = (1..=5_000)
        .map(|i| (0, "r", i, 1.0 + (i % 97) as f32))
        .collect();
    edges.extend((1..=20).map(|i| (i, "r", 0, 0.5)));
    edges.extend((1..=20).map(|i| (i, "r", 4_000 + i, 2.0)));
    let whole = whole_graph(&edges);
    let fake = FakeRing::new(5, 3, 5_001, &edges);
    for direction in [Direction::Out, Direction::Both] {
        let options = TraversalOptions {
            max_hops: 2,
            fan_out: 8,
            node_budget: 50,
            relations: None,
            direction,
            min_weight: f32::NEG_INFINITY,
            edge_budget: Some(60),
        };
        let before = fake.total_calls();
        let got = ring_walk(&fake, &["n0", "n3"], &options);
        assert_eq!(
            got,
            whole.walk(&["n0", "n3"], &options).unwrap(),
            "{direction:?}"
        );
        assert!(got.reached.len() <= 50 && got.edges.len() <= 60);
        // Two hops and the facts of the last one: at most three calls per host.
        assert!(
            fake.total_calls() - before <= 3 * 5,
            "{} calls",
            fake.total_calls() - before
        );
    }
}

#[test]
fn a_failing_host_is_replaced_by_another_replica_and_a_range_without_one_is_unavailable() {
    let mut rng = StdRng::seed_from_u64(9);
    let edges = random_edges(&mut rng, 100, 500);
    let whole = whole_graph(&edges);
    let mut fake = FakeRing::new(5, 3, 100, &edges);
    fake.failing.insert(HostId::from_u128(2));
    let options = TraversalOptions {
        max_hops: 3,
        ..TraversalOptions::default()
    };
    let got = ring_walk(&fake, &["n1", "n2"], &options);
    assert_eq!(got, whole.walk(&["n1", "n2"], &options).unwrap());
    assert!(
        fake.calls.lock()[&HostId::from_u128(2)] >= 1,
        "the failing host was tried"
    );

    // RF 1 with a failing host: the ids it owns have no other replica.
    let mut single = FakeRing::new(5, 1, 100, &edges);
    single.failing.insert(HostId::from_u128(3));
    let latency = PeerLatency::default();
    let fanout = fanout(&single, &latency, HostId::from_u128(1));
    let owned: Vec<String> = (0..100)
        .map(|i| format!("n{i}"))
        .filter(|id| single.replicas(id) == [HostId::from_u128(3)])
        .collect();
    let starts: Vec<&str> = owned.iter().take(1).map(String::as_str).collect();
    let runtime = runtime();
    let error = runtime
        .block_on(walk_across(
            &fanout,
            &starts,
            &options,
            &[],
            &Filter::default(),
            None,
            KnownSeeds::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("no live replica") && m.contains("h3")),
        "{error}"
    );
    let search = vector_search(5);
    let error = runtime.block_on(fanout.seeds(search.clone())).unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("token ranges have no live replica") && m.contains("h3")),
        "{error}"
    );
}

#[test]
fn candidates_from_the_covering_set_are_the_global_best_deduplicated() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(4));
    let runtime = runtime();
    let search = vector_search(10);
    let seeds = runtime.block_on(fanout.seeds(search.clone())).unwrap();
    let ids: Vec<&str> = seeds.vector.iter().map(|s| &*s.hit.entity_id).collect();
    let expected: Vec<String> = (290..300).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(ids, expected);
    let asked: HashSet<HostId> = fake.calls.lock().keys().copied().collect();
    assert!(
        asked.contains(&HostId::from_u128(4)),
        "the local host is asked"
    );
    assert!(asked.len() < 5, "a covering set, not every host: {asked:?}");
}

#[test]
fn each_covering_host_searches_with_its_share_of_the_ef() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(4));
    let runtime = runtime();
    let cover = fanout.cover(1).unwrap();
    assert!(cover.hosts.len() > 1, "{:?}", cover.hosts);
    // How many covering hosts hold a token, sampled: each host searches everything it holds.
    let mut rng = StdRng::seed_from_u64(11);
    let samples = 20_000;
    let held: usize = (0..samples)
        .map(|_| {
            let replicas = fake.ring.replicas(rng.random(), 3);
            let hosts = replicas.hosts();
            hosts.iter().filter(|h| cover.hosts.contains(h)).count()
        })
        .sum();
    let sampled = held as f64 / f64::from(samples);
    assert!(
        (cover.copies_per_token - sampled).abs() < 0.05,
        "copies per token {} against {sampled} sampled",
        cover.copies_per_token
    );
    let search = SeedSearch {
        ef: Some(64),
        ..vector_search(10)
    };
    runtime.block_on(fanout.seeds(search)).unwrap();
    let expected = (64.0 / cover.copies_per_token).ceil() as usize;
    assert!(expected < 64, "{expected}");
    let asked: Vec<(HostId, Option<usize>)> = fake.efs.lock().clone().into_iter().collect();
    assert_eq!(asked.len(), cover.hosts.len(), "{asked:?}");
    for (host, ef) in asked {
        assert_eq!(
            ef,
            Some(expected),
            "{host}: the single-node ef 64 shared by the hosts"
        );
    }
    // One host holding every range searches with the single-node ef.
    let whole = FakeRing::new(3, 3, 30, &[]);
    let fanout = super::tests::fanout(&whole, &latency, HostId::from_u128(1));
    let search = SeedSearch {
        ef: Some(64),
        ..vector_search(10)
    };
    runtime.block_on(fanout.seeds(search)).unwrap();
    let asked: Vec<Option<usize>> = whole.efs.lock().values().copied().collect();
    assert_eq!(asked, [Some(64)]);
}

#[test]
fn scan_pages_merge_the_covering_set_in_id_order_without_duplicates() {
    let fake = FakeRing::new(5, 2, 120, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(1));
    let runtime = runtime();
    let mut all: Vec<String> = (0..120).map(|i| format!("n{i}")).collect();
    all.sort();
    for page in [1, 7, 50, 200] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let range = IdRange {
                start: after.clone(),
                end: None,
            };
            let (ids, exhausted) = runtime
                .block_on(fanout.scan_ids(&range, page, after.as_deref(), ConsistencyLevel::One))
                .unwrap();
            assert!(ids.len() <= page);
            seen.extend(ids.iter().cloned());
            if exhausted {
                break;
            }
            after = ids.last().cloned();
        }
        assert_eq!(seen, all, "page size {page}");
    }
}

#[test]
fn tenant_figures_count_each_entity_once_through_any_host_also_with_one_failing() {
    let mut fake = FakeRing::new(5, 3, 300, &[]);
    let runtime = runtime();
    let latency = PeerLatency::default();
    for local in 1..=5 {
        let reads = fanout(&fake, &latency, HostId::from_u128(local));
        let (sums, nodes) = runtime.block_on(reads.tenant_counts(None, false)).unwrap();
        assert_eq!(sums.len(), 1);
        assert_eq!(
            (sums[0].entities, sums[0].bytes),
            (300, 300),
            "through h{local}"
        );
        assert!(nodes.is_empty(), "no per-node detail unless asked");
    }
    // Per-node detail: every host's own figures; the replicas hold each entity three times.
    let reads = fanout(&fake, &latency, HostId::from_u128(1));
    let (_, nodes) = runtime
        .block_on(reads.tenant_counts(Some(TENANT), true))
        .unwrap();
    assert_eq!(nodes.len(), 5);
    let held: usize = nodes
        .values()
        .map(|n| n.as_ref().unwrap()[0].entities)
        .sum();
    assert_eq!(held, 900);

    // A failing host: its ranges are counted on other replicas, and the detail says why.
    let failing = HostId::from_u128(2);
    fake.failing.insert(failing);
    let reads = fanout(&fake, &latency, failing);
    let (sums, nodes) = runtime.block_on(reads.tenant_counts(None, true)).unwrap();
    assert_eq!(sums[0].entities, 300);
    assert!(nodes[&failing].as_ref().unwrap_err().contains("killed"));
    assert_eq!(nodes.values().filter(|n| n.is_ok()).count(), 4);

    // RF 1: the failing host's ranges have no other replica.
    let mut single = FakeRing::new(5, 1, 100, &[]);
    single.failing.insert(HostId::from_u128(3));
    let reads = fanout(&single, &latency, HostId::from_u128(1));
    let error = runtime
        .block_on(reads.tenant_counts(None, false))
        .unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("token ranges have no live replica") && m.contains("h3")),
        "{error}"
    );
}

/// Every id of the fake ring that `fanout` lists at `level`, paged 7 at a time.
fn scan_everything(fanout: &Fanout<'_>, level: ConsistencyLevel) -> Vec<String> {
    let runtime = runtime();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let range = IdRange {
            start: after.clone(),
            end: None,
        };
        let (ids, exhausted) = runtime
            .block_on(fanout.scan_ids(&range, 7, after.as_deref(), level))
            .unwrap();
        seen.extend(ids.iter().cloned());
        if exhausted {
            return seen;
        }
        after = ids.last().cloned();
    }
}

#[test]
fn a_scan_at_quorum_lists_what_one_replica_missed_even_through_that_replica() {
    let mut fake = FakeRing::new(5, 3, 120, &[]);
    let mut all: Vec<String> = (0..120).map(|i| format!("n{i}")).collect();
    all.sort();
    // A replica missed a write a quorum acknowledged (down, no hint yet), an entity whose
    // range that replica alone answers for when it coordinates a read at ONE (what ONE
    // promises: one replica per range).
    let latency = PeerLatency::default();
    let (missed, stale) = (0..120)
        .map(|i| format!("n{i}"))
        .find_map(|id| {
            let stale = fake.replicas(&id)[0];
            let held = &mut fake
                .hosts
                .get_mut(&stale)
                .expect("a replica is a host")
                .entities;
            let similarity = held.remove(&id).expect("a replica holds it");
            let at_one = scan_everything(&fanout(&fake, &latency, stale), ConsistencyLevel::One);
            if !at_one.contains(&id) {
                return Some((id, stale));
            }
            fake.hosts
                .get_mut(&stale)
                .expect("a replica is a host")
                .entities
                .insert(id, similarity);
            None
        })
        .expect("some entity is answered for by one replica alone at ONE");
    let through_stale = fanout(&fake, &latency, stale);
    assert_eq!(
        scan_everything(&through_stale, ConsistencyLevel::Quorum),
        all,
        "{missed} listed at QUORUM"
    );
    assert_eq!(scan_everything(&through_stale, ConsistencyLevel::All), all);

    // A quorum of some range down: a QUORUM scan says so instead of listing less.
    let down = &fake.replicas("n3")[..2];
    fake.failing.extend(down.iter().copied());
    let runtime = runtime();
    let healthy = fake
        .ring
        .hosts()
        .iter()
        .copied()
        .find(|h| !fake.failing.contains(h))
        .unwrap();
    let reads = fanout(&fake, &latency, healthy);
    let range = IdRange {
        start: None,
        end: None,
    };
    let error = runtime
        .block_on(reads.scan_ids(&range, 10, None, ConsistencyLevel::Quorum))
        .unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("fewer than 2 live replicas")),
        "{error}"
    );
}

#[test]
fn a_routing_key_asks_the_same_replicas_whichever_host_coordinates() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let search = vector_search(10);
    let runtime = runtime();
    let asked_through = |local: u128, routing: Option<u64>| -> BTreeSet<HostId> {
        fake.calls.lock().clear();
        let latency = PeerLatency::default();
        let reads = Fanout {
            routing,
            ..fanout(&fake, &latency, HostId::from_u128(local))
        };
        runtime.block_on(reads.seeds(search.clone())).unwrap();
        fake.calls.lock().keys().copied().collect()
    };
    let routed = ReadOptions::at(ConsistencyLevel::One)
        .routed("user-42")
        .routing;
    assert!(routed.is_some());
    let first = asked_through(1, routed);
    for local in 2..=5 {
        assert_eq!(asked_through(local, routed), first, "through h{local}");
    }
    // Another key may choose other replicas; no key prefers the coordinator itself.
    let unrouted: BTreeSet<BTreeSet<HostId>> = (1..=5).map(|l| asked_through(l, None)).collect();
    assert!(unrouted.len() > 1, "{unrouted:?}");
    assert_eq!(
        ReadOptions::at(ConsistencyLevel::One).routed("").routing,
        None
    );
}
