//! The single-node query (DESIGN.md §5): ANN seeds, the bounded walk and the ranking over what
//! this node's indexes hold, as one [`QueryAnswer`], then the reply with the stored entities.
//!
//! A ring's coordinator that holds every range asks this node for the [`QueryAnswer`] alone and
//! reads the entities at the request's consistency level itself; a single node reads them from
//! its own engine ([`UnifiedStore::query_with_context`]).
//!
//! Invariants: the answer ranks only entities of `tenant` that pass the filter; the context's
//! nodes are the walked ones passing the filter, in walk order. Must never: read the engine
//! while building the answer (only the in-memory indexes), so it stays light.

use allidb_storage::hlc::wall_nanos;

use super::planning::{self, PlanReport};
use super::{QueryContext, QueryHit, QueryReply, QueryRequest, UnifiedStore, check_filter};
use crate::error::Result;
use crate::graph::{PathStep, Reached, Truncation};
use crate::query::{ScoredResult, Seeding, TextQuery, run_hybrid_query, run_query};

/// A query's ranked results and kept walk, before any entity is read.
#[derive(Clone, Debug, Default)]
pub struct QueryAnswer {
    /// The ranked results, best first, at most `plan.k`.
    pub results: Vec<ScoredResult>,
    /// The walk's context (when `plan.keep_walk`).
    pub context: Option<WalkContext>,
    /// How the seeds were searched (when `plan.explain` and the query has a filter).
    pub plan: Option<PlanReport>,
}

/// The walk a query keeps for its context.
#[derive(Clone, Debug, Default)]
pub struct WalkContext {
    /// The walked nodes that are live and pass the filter, in walk order.
    pub nodes: Vec<Reached>,
    /// How many nodes the walk reached before the filter.
    pub walked: usize,
    /// The edges the walk recorded (between walked nodes).
    pub edges: Vec<PathStep>,
    /// The limits that cut the walk.
    pub truncation: Truncation,
}

impl UnifiedStore {
    /// The Graph-RAG query: ANN seeds -> graph walk -> ranking -> top k.
    pub fn query(&self, tenant: &str, request: &QueryRequest) -> Result<Vec<QueryHit>> {
        Ok(self.query_with_context(tenant, request, false)?.hits)
    }

    /// [`UnifiedStore::query`] plus, when `request.plan.keep_walk`, the walk's context; with
    /// `context_entities` each context node carries its stored entity (its chunks).
    pub fn query_with_context(
        &self,
        tenant: &str,
        request: &QueryRequest,
        context_entities: bool,
    ) -> Result<QueryReply> {
        let answer = self.answer(tenant, request)?;
        let mut hits = Vec::with_capacity(answer.results.len());
        for result in answer.results {
            let entity = if request.include_entities {
                match self.get_entity(tenant, &result.entity_id)? {
                    Some(e) => Some(e),
                    None => continue, // deleted after ranking
                }
            } else {
                None
            };
            hits.push(QueryHit { result, entity });
        }
        let context = match answer.context {
            None => None,
            Some(walk) => {
                let nodes = self.with_entities(tenant, walk.nodes, context_entities)?;
                let edges = super::edges_between(&nodes, walk.walked, walk.edges);
                Some(QueryContext {
                    nodes,
                    edges,
                    truncation: walk.truncation,
                })
            }
        };
        Ok(QueryReply {
            hits,
            context,
            plan: answer.plan,
        })
    }

    /// The ranked results and kept walk of `request` over what this node's indexes hold of
    /// `tenant` (no entity read: `include_entities` is the caller's to honour).
    pub fn answer(&self, tenant: &str, request: &QueryRequest) -> Result<QueryAnswer> {
        request.plan.validate()?;
        request.hybrid.validate()?;
        let terms = request
            .text
            .as_deref()
            .map(|text| self.options.lexical.of(tenant).query_terms(text))
            .transpose()?;
        let vector_needed = terms.is_none() || !request.vector.is_empty();
        let Some(state) = self.query_tenant(tenant, &request.vector, vector_needed)? else {
            return Ok(QueryAnswer {
                context: request.plan.keep_walk.then(WalkContext::default),
                ..QueryAnswer::default()
            });
        };
        let t = &state.indexes;
        let facts = t.facts.read();
        let filter = &request.filter;
        check_filter(&facts, filter)?;
        let allows = |id: &str| facts.get(id).is_some_and(|m| filter.allows(id, m));
        let (seed_plan, report) =
            planning::plan(&facts, filter, t.vectors.options(), request.plan.explain);
        // Entities that expired but are not swept yet are still indexed: then every candidate
        // is checked, even without a filter.
        let filter_fn: Option<&(dyn Fn(&str) -> bool + Sync)> =
            match filter.is_empty() && !facts.has_expired(wall_nanos()) {
                true => None,
                false => Some(&allows),
            };
        let among: Vec<&str>;
        let memo;
        let seeding = match &seed_plan {
            planning::SeedPlan::Unfiltered => Seeding::Search(None),
            planning::SeedPlan::Filtered { upper, bitmap } => {
                match t.seed_memo(&facts, filter, *bitmap) {
                    Some(m) => {
                        memo = m;
                        Seeding::SearchMemo(Some(*upper), &memo)
                    }
                    None => Seeding::Search(Some(*upper)),
                }
            }
            planning::SeedPlan::Exact(ids) => {
                among = ids.iter().map(|id| &**id).collect();
                Seeding::Among(&among)
            }
        };
        let now = allidb_storage::hlc::wall_micros();
        let answer = match &terms {
            None => run_query(
                &t.vectors,
                &t.graph,
                &request.vector,
                &request.plan,
                filter_fn,
                seeding,
                &*facts,
                now,
            )?,
            Some(terms) => {
                let text = TextQuery {
                    lexical: &t.lexical,
                    terms,
                    options: request.hybrid,
                    corpus: None,
                };
                run_hybrid_query(
                    &t.vectors,
                    &t.graph,
                    &request.vector,
                    &text,
                    &request.plan,
                    filter_fn,
                    seeding,
                    &*facts,
                    now,
                )?
            }
        };
        let context = answer.walk.map(|walk| WalkContext {
            walked: walk.reached.len(),
            nodes: walk
                .reached
                .into_iter()
                .filter(|r| allows(&r.entity_id))
                .collect(),
            edges: walk.edges,
            truncation: walk.truncation,
        });
        Ok(QueryAnswer {
            results: answer.results,
            context,
            plan: (request.plan.explain && !filter.is_empty()).then_some(report),
        })
    }
}
