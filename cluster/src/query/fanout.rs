//! One cluster-wide read's view of the ring ([`Fanout`]): the hosts it may ask (live, not
//! failed during the request), their order (the request's routing key, else this node then
//! measured latency), the covering set it settles on, the owner it asks for each entity, and the
//! calls it makes for the single-node answer, the hops' node descriptions and the id scans,
//! each timed into the read's report.
//!
//! Invariants: a host that failed during the request is never asked again by it; a range
//! without enough live replicas fails the read `UNAVAILABLE` naming the ranges and the hosts
//! down, unless the read allows a partial answer (then the report names what is missing).
//! Must never: count a call to this node as a call to another node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use allidb_index::Filter;
use allidb_index::QueryRequest;
use allidb_index::graph::NodeSteps;
use allidb_index::query::QueryPlan;
use allidb_index::store::{HopNode, HopRequest, QueryAnswer, StepRequest, TextSearch};
use futures_util::future::join_all;
use parking_lot::Mutex;

use super::MAX_ATTEMPTS;
use super::ahead::{self, HopAhead, HopAnswer};
use super::cover;
use super::replicas::QueryReplicas;
use super::report::{ReadReport, ReportBuilder};
use super::wire::IdRange;
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;
use crate::hints::dispatcher::peer_label;
use crate::latency::PeerLatency;
use crate::membership::{CallKind, ClusterView};
use crate::peer_client::traffic;
use crate::replica::MAX_PARTITIONS_PER_READ;
use crate::ring::{HostId, Token, TokenSpan, token};

/// One request's view of the ring: the hosts it may ask, the ones that failed during it, and
/// the covering set it settled on.
#[derive(Debug)]
pub(crate) struct Fanout<'a> {
    /// Missing ranges and entities are reported instead of failing the read.
    pub(super) allow_partial: bool,
    /// [`ReadOptions::routing`].
    pub(super) routing: Option<u64>,
    pub(super) report: Mutex<ReportBuilder>,
    pub(super) local: HostId,
    pub(super) replicas: &'a dyn QueryReplicas,
    pub(super) latency: &'a PeerLatency,
    /// `cluster.replication_factor` (capped by the ring's size where used).
    pub(super) replication_factor: usize,
    pub(super) view: Arc<ClusterView>,
    pub(super) tenant: &'a str,
    pub(super) failed: Mutex<BTreeSet<HostId>>,
    pub(super) cover: Mutex<BTreeSet<HostId>>,
}

/// What the owners of a walk's frontier told of it ([`Fanout::describe_ahead`]).
#[derive(Debug, Default)]
pub(super) struct Described {
    /// Each frontier node, with its steps.
    pub nodes: Vec<(Arc<str>, HopNode)>,
    /// The nodes described ahead, facts only.
    pub ahead: Vec<(Arc<str>, HopNode)>,
}

/// A hop's request for `ids`: their facts, similarity to `query`, verdict of `filter` and BM25
/// score for `text`, and their next steps as `steps` asks (`None`: facts only).
fn hop_request(
    ids: &[Arc<str>],
    query: &[f32],
    filter: &Filter,
    text: Option<&TextSearch>,
    steps: Option<StepRequest>,
) -> HopRequest {
    HopRequest {
        entity_ids: ids.iter().map(|id| id.to_string()).collect(),
        query: query.to_vec(),
        filter: filter.clone(),
        steps,
        text: text.cloned(),
    }
}

/// What a range lacks when it has fewer live replicas than a read needs.
fn too_few(copies: usize) -> String {
    match copies {
        0 | 1 => "no live replica".to_owned(),
        n => format!("fewer than {n} live replicas"),
    }
}

/// Whether a failed call may be retried on another replica (the host failed, not the request).
pub(super) fn host_failure(error: &ClusterError) -> bool {
    matches!(
        error,
        ClusterError::Peer { .. } | ClusterError::Unavailable(_)
    )
}

impl Fanout<'_> {
    pub(super) fn live(&self, host: HostId) -> bool {
        if self.failed.lock().contains(&host) {
            return false;
        }
        host == self.local
            || self
                .view
                .nodes
                .get(&host)
                .is_some_and(|node| node.address_for(CallKind::Read).is_ok())
    }

    /// The preference of `host` (smaller first): by the request's routing key when it has
    /// one (the same order on every coordinator), else this node, then measured latency.
    pub(super) fn rank(&self, host: HostId) -> (u8, u64) {
        match self.routing {
            Some(routing) => (
                0,
                xxhash_rust::xxh3::xxh3_64_with_seed(&host.as_u128().to_le_bytes(), routing),
            ),
            None => self.latency.rank(self.local, host),
        }
    }

    pub(super) fn replication_factor(&self) -> usize {
        self.view
            .ring
            .effective_replication_factor(self.replication_factor)
    }

    /// The covering set of live hosts not failed so far, each range covered by `copies`
    /// distinct replicas, or `UNAVAILABLE` naming the ranges without enough live replicas and
    /// the hosts down.
    pub(super) fn cover(&self, copies: usize) -> Result<cover::Cover, ClusterError> {
        let rf = self.replication_factor();
        let cover = cover::cover(
            &self.view.ring,
            rf,
            copies,
            |h| self.live(h),
            |h| self.rank(h),
        );
        if cover.hosts.is_empty() && cover.ranges == 0 {
            return Err(ClusterError::Unavailable(
                "the ring has no nodes with tokens yet; retry once the cluster has formed"
                    .to_owned(),
            ));
        }
        let missing: Vec<String> = cover
            .uncovered
            .iter()
            .map(|r| format!("token range ({}, {}]: {}", r.start, r.end, too_few(copies)))
            .collect();
        if !cover.uncovered.is_empty() && !self.allow_partial {
            let down: Vec<String> = self
                .view
                .ring
                .hosts()
                .iter()
                .filter(|h| !self.live(**h))
                .map(|h| peer_label(&self.view, *h))
                .collect();
            return Err(ClusterError::Unavailable(format!(
                "{} of {} token ranges have {} (replication factor {rf}): {}; hosts down or \
                 failing: [{}]",
                cover.uncovered.len(),
                cover.ranges,
                too_few(copies),
                cover.uncovered_named(),
                down.join(", ")
            )));
        }
        self.report
            .lock()
            .ranges(cover.ranges, cover.uncovered.len(), missing);
        self.cover.lock().extend(cover.hosts.iter().copied());
        Ok(cover)
    }

    pub(super) fn finish(self) -> ReadReport {
        self.report.into_inner().finish()
    }

    /// The host that answers for entity `id`, `preferred` being the covering set so far;
    /// `None` when none can and the read allows a partial answer (reported as missing).
    fn owner(
        &self,
        id: &str,
        preferred: &BTreeSet<HostId>,
    ) -> Result<Option<HostId>, ClusterError> {
        let owner = self.answering(id, preferred);
        if owner.is_some() {
            return Ok(owner);
        }
        let error = {
            let replicas =
                self.view
                    .ring
                    .replicas_of_key(self.tenant, id, self.replication_factor());
            let names: Vec<String> = replicas
                .hosts()
                .iter()
                .map(|h| peer_label(&self.view, *h))
                .collect();
            format!(
                "no live replica of entity {id:?} of tenant {:?}: its replicas [{}] are down or \
                 failing",
                self.tenant,
                names.join(", ")
            )
        };
        if self.allow_partial {
            self.report.lock().miss(error);
            return Ok(None);
        }
        Err(ClusterError::Unavailable(error))
    }

    /// Runs `call` to `host`, timing it for the latency ranking (other hosts) and the report
    /// (with the rows of its answer and the bytes it sent and received over the network), and
    /// counting it by `kind` when it crosses the network.
    pub(super) async fn timed<T>(
        &self,
        host: HostId,
        kind: &'static str,
        call: impl Future<Output = Result<Vec<T>, ClusterError>>,
    ) -> Result<Vec<T>, ClusterError> {
        self.timed_rows(host, kind, call, Vec::len).await
    }

    /// [`Fanout::timed`] for an answer whose rows `rows` counts.
    pub(super) async fn timed_rows<T>(
        &self,
        host: HostId,
        kind: &'static str,
        call: impl Future<Output = Result<T, ClusterError>>,
        rows: impl FnOnce(&T) -> usize,
    ) -> Result<T, ClusterError> {
        let started = Instant::now();
        let (result, traffic) = traffic::measured(call).await;
        let took = started.elapsed();
        if host != self.local {
            metrics::counter!("allidb_cluster_query_calls_total", "call" => kind).increment(1);
            self.latency.record(host, took);
        }
        let rows = result.as_ref().map_or(0, rows);
        self.report
            .lock()
            .call(peer_label(&self.view, host), took, rows, traffic);
        result
    }

    /// Whether this node alone covers every range (it replicates them all, and the request's
    /// routing ranks it first): then the whole query runs on its own indexes.
    pub(super) fn covered_here(&self) -> Result<bool, ClusterError> {
        Ok(self.cover(1)?.hosts == [self.local])
    }

    /// The best `ranked` results of `request` and its kept walk from this node's own indexes,
    /// in one call (for a node that covers every range: [`Fanout::covered_here`]).
    pub(super) async fn answer_here(
        &self,
        request: &QueryRequest,
        ranked: usize,
    ) -> Result<QueryAnswer, ClusterError> {
        let plan = &request.plan;
        let request = QueryRequest {
            plan: QueryPlan {
                k: ranked,
                seeds: Some(plan.seed_count()),
                ..plan.clone()
            },
            include_entities: false,
            ..request.clone()
        };
        let call = self.replicas.answer_here(self.tenant, request);
        let answer = self
            .timed_rows(self.local, "answer", call, |a| a.results.len())
            .await;
        self.report.lock().round();
        answer
    }

    /// What the owners hold of each of `ids` (one batched call per owner, counted as `kind`);
    /// the ids of an owner that fails go to another replica.
    pub(super) async fn describe(
        &self,
        ids: &[Arc<str>],
        query: &[f32],
        filter: &Filter,
        text: Option<&TextSearch>,
        steps: Option<StepRequest>,
        kind: &'static str,
    ) -> Result<Vec<(Arc<str>, HopNode)>, ClusterError> {
        let mut described = Vec::with_capacity(ids.len());
        let mut pending: Vec<Arc<str>> = ids.to_vec();
        for attempt in 1..=MAX_ATTEMPTS {
            let by_owner = self.by_owner(pending.drain(..))?;
            let batches: Vec<(HostId, Vec<Arc<str>>)> = by_owner
                .into_iter()
                .flat_map(|(host, ids)| {
                    ids.chunks(MAX_PARTITIONS_PER_READ)
                        .map(|chunk| (host, chunk.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let calls = batches.iter().map(|(host, ids)| {
                let hop = hop_request(ids, query, filter, text, steps.clone());
                async move {
                    let call = self.replicas.expand_hop(*host, self.tenant, &hop, None);
                    self.timed_rows(*host, kind, call, HopAnswer::rows).await
                }
            });
            let answers = join_all(calls).await;
            self.report.lock().round();
            for ((host, ids), answer) in batches.into_iter().zip(answers) {
                match answer {
                    Ok(answer) => described.extend(ids.into_iter().zip(answer.nodes)),
                    Err(error) if host_failure(&error) && attempt < MAX_ATTEMPTS => {
                        self.failed.lock().insert(host);
                        pending.extend(ids);
                    }
                    Err(error) => return Err(error),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        Ok(described)
    }

    /// The host that answers for entity `id`, `preferred` being the covering set so far
    /// (`None`: no live replica), reporting nothing.
    fn answering(&self, id: &str, preferred: &BTreeSet<HostId>) -> Option<HostId> {
        self.owner_at(token(self.tenant, id), preferred)
    }

    /// The host that answers for the partitions at token `t` ([`cover::owner_of`] over this
    /// read's live hosts and ranking).
    pub(super) fn owner_at(&self, t: Token, preferred: &BTreeSet<HostId>) -> Option<HostId> {
        cover::owner_of(
            &self.view.ring,
            self.replication_factor(),
            t,
            preferred,
            |h| self.live(h),
            |h| self.rank(h),
        )
    }

    /// `ids` grouped by the host that answers for each (an id no host can answer for is left
    /// out when the read allows a partial answer, see `Fanout::owner`).
    fn by_owner(
        &self,
        ids: impl Iterator<Item = Arc<str>>,
    ) -> Result<BTreeMap<HostId, Vec<Arc<str>>>, ClusterError> {
        let preferred = self.cover.lock().clone();
        let mut by_owner: BTreeMap<HostId, Vec<Arc<str>>> = BTreeMap::new();
        for id in ids {
            if let Some(owner) = self.owner(&id, &preferred)? {
                by_owner.entry(owner).or_default().push(id);
            }
        }
        Ok(by_owner)
    }

    /// [`Fanout::describe`] of a walk's frontier whose hop is the walk's last: each owner also
    /// describes, facts only, the nodes that hop may reach in the ranges this read asks it
    /// for ([`super::ahead`], `per_node` per list). This node's own part goes first, so the
    /// neighbours its lists bring that other hosts answer for are named in those hosts' calls.
    /// A host that fails is replaced as in [`Fanout::describe`], without describing ahead.
    pub(super) async fn describe_ahead(
        &self,
        ids: &[Arc<str>],
        query: &[f32],
        filter: &Filter,
        text: Option<&TextSearch>,
        steps: StepRequest,
        per_node: usize,
    ) -> Result<Described, ClusterError> {
        let mut by_owner = self.by_owner(ids.iter().cloned())?;
        if by_owner
            .values()
            .any(|ids| ids.len() > MAX_PARTITIONS_PER_READ)
        {
            let nodes = self
                .describe(ids, query, filter, text, Some(steps), "hop")
                .await?;
            return Ok(Described {
                nodes,
                ahead: Vec::new(),
            });
        }
        let preferred = self.cover.lock().clone();
        // A range no live host answers for has no span: a node there is reported missing (or
        // fails the read) in the walk's last round, as without describing ahead.
        let mut spans: BTreeMap<HostId, Vec<TokenSpan>> = BTreeMap::new();
        for range in self.view.ring.ranges() {
            if let Some(host) = self.owner_at(range.end, &preferred) {
                spans.entry(host).or_default().push(range.span());
            }
        }
        let hop = |ids: &[Arc<str>], steps| hop_request(ids, query, filter, text, steps);
        let ahead_of = |host: HostId, entity_ids: Vec<Arc<str>>| HopAhead {
            per_node,
            spans: spans.get(&host).cloned().unwrap_or_default(),
            entity_ids,
        };
        let walked: HashSet<&str> = ids.iter().chain(&steps.walked).map(|id| &**id).collect();
        let mut described = Described::default();
        let mut named: BTreeMap<HostId, Vec<Arc<str>>> = BTreeMap::new();
        if let Some(here) = by_owner.remove(&self.local) {
            let ahead = ahead_of(self.local, Vec::new());
            let request = hop(&here, Some(steps.clone()));
            let call = self
                .replicas
                .expand_hop(self.local, self.tenant, &request, Some(&ahead));
            let answer = self
                .timed_rows(self.local, "hop", call, HopAnswer::rows)
                .await?;
            let lists = answer.nodes.iter().map(|node| &node.steps);
            for id in ahead::targets(lists, &walked, per_node, |_| true) {
                // Not this node's (described here ahead) and not one no host answers for (the
                // walk's last round reports it).
                if let Some(owner) = self.answering(&id, &preferred)
                    && owner != self.local
                {
                    named.entry(owner).or_default().push(id);
                }
            }
            described.nodes.extend(here.into_iter().zip(answer.nodes));
            described.ahead.extend(answer.ahead);
        }
        let hosts: BTreeSet<HostId> = by_owner.keys().chain(named.keys()).copied().collect();
        let asked: Vec<(HostId, Vec<Arc<str>>, HopRequest, HopAhead)> = hosts
            .into_iter()
            .map(|host| {
                let frontier = by_owner.remove(&host).unwrap_or_default();
                let mut extra = named.remove(&host).unwrap_or_default();
                extra.truncate(MAX_PARTITIONS_PER_READ);
                let steps = (!frontier.is_empty()).then(|| steps.clone());
                let request = hop(&frontier, steps);
                (host, frontier, request, ahead_of(host, extra))
            })
            .collect();
        let calls = asked.iter().map(|(host, _, request, ahead)| {
            let call = self
                .replicas
                .expand_hop(*host, self.tenant, request, Some(ahead));
            self.timed_rows(*host, "hop", call, HopAnswer::rows)
        });
        let answers = join_all(calls).await;
        self.report.lock().round();
        let mut failed: Vec<Arc<str>> = Vec::new();
        for ((host, frontier, _, _), answer) in asked.into_iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    described
                        .nodes
                        .extend(frontier.into_iter().zip(answer.nodes));
                    described.ahead.extend(answer.ahead);
                }
                Err(error) if host_failure(&error) => {
                    self.failed.lock().insert(host);
                    failed.extend(frontier);
                }
                Err(error) => return Err(error),
            }
        }
        if !failed.is_empty() {
            let retried = self
                .describe(&failed, query, filter, text, Some(steps.clone()), "hop")
                .await?;
            described.nodes.extend(retried);
        }
        // The neighbours in other hosts' lists that this node answers for.
        let lists: HashMap<&str, &NodeSteps> = described
            .nodes
            .iter()
            .map(|(id, node)| (&**id, &node.steps))
            .collect();
        let known: HashSet<&str> = described.ahead.iter().map(|(id, _)| &**id).collect();
        let in_order = ids.iter().filter_map(|id| lists.get(&**id).copied());
        let here: Vec<Arc<str>> = ahead::targets(in_order, &walked, per_node, |id| {
            !known.contains(id) && self.answering(id, &preferred) == Some(self.local)
        });
        if !here.is_empty() {
            let request = hop(&here, None);
            let call = self
                .replicas
                .expand_hop(self.local, self.tenant, &request, None);
            let answer = self
                .timed_rows(self.local, "facts", call, HopAnswer::rows)
                .await?;
            described.ahead.extend(here.into_iter().zip(answer.nodes));
        }
        Ok(described)
    }

    /// The first `limit` ids in `range` over a set of hosts holding every range as many times
    /// as `level` needs, after `after` when given, and whether no host has more.
    pub(super) async fn scan_ids(
        &self,
        range: &IdRange,
        limit: usize,
        after: Option<&str>,
        level: ConsistencyLevel,
    ) -> Result<(Vec<String>, bool), ClusterError> {
        let copies = level.required(self.replication_factor());
        let ask = limit + usize::from(after.is_some());
        let mut asked: BTreeSet<HostId> = BTreeSet::new();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut exhausted = true;
        for attempt in 1..=MAX_ATTEMPTS {
            let hosts: Vec<HostId> = self
                .cover(copies)?
                .hosts
                .into_iter()
                .filter(|h| !asked.contains(h))
                .collect();
            let calls = hosts.iter().map(|host| {
                let call = self.replicas.scan_ids(*host, self.tenant, range, ask);
                self.timed(*host, "scan", call)
            });
            let answers = join_all(calls).await;
            self.report.lock().round();
            let mut failure = false;
            for (host, answer) in hosts.into_iter().zip(answers) {
                match answer {
                    Ok(found) => {
                        asked.insert(host);
                        exhausted &= found.len() < ask;
                        ids.extend(found);
                    }
                    Err(error) if host_failure(&error) && attempt < MAX_ATTEMPTS => {
                        self.failed.lock().insert(host);
                        failure = true;
                    }
                    Err(error) => return Err(error),
                }
            }
            if !failure {
                break;
            }
        }
        let mut page: Vec<String> = ids
            .into_iter()
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .collect();
        if page.len() > limit {
            page.truncate(limit);
            exhausted = false;
        }
        Ok((page, exhausted))
    }
}
