//! What a ring's coordinator asks of this node's store for a cluster-wide read
//! (`allidb-cluster`'s `query` module): the ANN candidates this node holds, the facts and next
//! steps of a walk's frontier, and the ids in a key range.
//!
//! Invariants: every answer covers everything this node holds (every range it replicates, not
//! only the ranges a coordinator assigned it), so the union of the answers of a set of nodes
//! covering the ring holds whatever one node holding everything would answer; seeds pass the
//! filter (it applies inside the ANN search, as on one node); a node's steps come from the
//! graph index, which indexes the in-edge cells of the partitions this node holds as well as
//! their out-edge cells, so the owner of an entity answers its incoming edges too.
//!
//! Must never: rank, truncate a walk or read at a consistency level: the coordinator does.

use std::sync::Arc;

use super::planning::{self, SeedPlan};
use super::{Filter, UnifiedStore};
use crate::error::{Error, Result};
use crate::graph::{NodeSteps, TraversalOptions};
use crate::query::{EntityFacts, FactSource};
use crate::vector::{Metric, VectorHit};

/// One ANN candidate with the facts the coordinator's ranking reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedCandidate {
    /// The entity and its similarity to the query.
    pub hit: VectorHit,
    /// Its importance and update time.
    pub facts: EntityFacts,
}

/// The nodes of one hop of a walk and what to tell about each.
#[derive(Clone, Debug, Default)]
pub struct HopRequest {
    /// The nodes.
    pub entity_ids: Vec<String>,
    /// Each node's own similarity to this vector is returned (empty: none).
    pub query: Vec<f32>,
    /// Whether each node passes this filter is returned.
    pub filter: Filter,
    /// The nodes' next steps are returned (`None`: facts only).
    pub steps: Option<StepRequest>,
}

/// Which steps a hop wants of each node ([`crate::graph::GraphIndex::steps_from_each`]).
#[derive(Clone, Debug)]
pub struct StepRequest {
    /// Direction, relations and minimum weight of the walk.
    pub options: TraversalOptions,
    /// The first this many eligible steps in walk order ...
    pub limit: usize,
    /// ... plus every later one back to one of these nodes.
    pub walked: Vec<Arc<str>>,
}

/// What this node holds of one node of a hop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HopNode {
    /// Its facts (`None`: this node holds no live entity of that id).
    pub facts: Option<EntityFacts>,
    /// Its own similarity to the hop's query (`None`: no vector, or no query).
    pub similarity: Option<f32>,
    /// It is live and passes the hop's filter.
    pub matches_filter: bool,
    /// Its next steps, when asked.
    pub steps: NodeSteps,
}

impl UnifiedStore {
    /// The similarity metric of every tenant's vectors (`index.metric`).
    pub fn metric(&self) -> Metric {
        self.indexes.options.metric
    }

    /// The `count` entities of `tenant` this node holds whose vectors are nearest `vector`
    /// among those passing `filter`, best first, with their facts; `ef` as for a query.
    pub fn search_seeds(
        &self,
        tenant: &str,
        vector: &[f32],
        count: usize,
        ef: Option<usize>,
        filter: &Filter,
    ) -> Result<Vec<SeedCandidate>> {
        if count == 0 {
            return Err(Error::invalid("seeds must be at least 1"));
        }
        let Some(state) = self.query_tenant(tenant, vector, true)? else {
            return Ok(Vec::new());
        };
        let t = &state.indexes;
        let facts = t.facts.read();
        super::check_filter(&facts, filter)?;
        let allows = |id: &str| facts.get(id).is_some_and(|m| filter.allows(id, m));
        // Expired entities not swept yet are still indexed: then every candidate is checked.
        let filter_fn: Option<&(dyn Fn(&str) -> bool + Sync)> =
            match filter.is_empty() && !facts.has_expired(allidb_storage::hlc::wall_nanos()) {
                true => None,
                false => Some(&allows),
            };
        let hits = match planning::plan(&facts, filter, t.vectors.options(), false).0 {
            SeedPlan::Unfiltered => t.vectors.search(vector, count, ef, filter_fn, None)?,
            SeedPlan::Filtered { upper, bitmap } => {
                let memo = t.seed_memo(&facts, filter, bitmap);
                t.vectors
                    .search_memo(vector, count, ef, filter_fn, Some(upper), memo.as_deref())?
            }
            SeedPlan::Exact(ids) => {
                let ids: Vec<&str> = ids.iter().map(|id| &**id).collect();
                t.vectors.search_among(vector, count, &ids)?
            }
        };
        Ok(hits
            .into_iter()
            .filter_map(|hit| {
                let facts = facts.facts(&hit.entity_id)?;
                Some(SeedCandidate { hit, facts })
            })
            .collect())
    }

    /// What this node holds of each node of `request`, in order.
    pub fn describe_hop(&self, tenant: &str, request: &HopRequest) -> Result<Vec<HopNode>> {
        allidb_storage::key::validate_tenant(tenant)?;
        for id in &request.entity_ids {
            allidb_storage::key::validate_id(id)?;
        }
        if let Some(steps) = &request.steps {
            steps.options.validate()?;
        }
        let state = if request.query.is_empty() {
            self.indexes.tenant(tenant)
        } else {
            self.query_tenant(tenant, &request.query, true)?
        };
        let Some(state) = state else {
            return Ok(vec![HopNode::default(); request.entity_ids.len()]);
        };
        let t = &state.indexes;
        let ids: Vec<&str> = request.entity_ids.iter().map(String::as_str).collect();
        let similarities = if request.query.is_empty() {
            vec![None; ids.len()]
        } else {
            t.vectors.similarities(&request.query, &ids)?
        };
        let steps = match &request.steps {
            None => vec![NodeSteps::default(); ids.len()],
            Some(wanted) => {
                t.graph
                    .steps_from_each(&ids, &wanted.options, wanted.limit, &wanted.walked)?
            }
        };
        let table = t.facts.read();
        Ok(ids
            .iter()
            .zip(similarities)
            .zip(steps)
            .map(|((id, similarity), steps)| HopNode {
                facts: table.facts(id),
                similarity,
                matches_filter: table.get(id).is_some_and(|m| request.filter.allows(id, m)),
                steps,
            })
            .collect())
    }

    /// The ids of the entities of `tenant` with `start <= id < end` this node holds, in id
    /// order, at most `limit`.
    pub fn scan_ids(
        &self,
        tenant: &str,
        start: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        Ok(self
            .scan(tenant, start, end, limit)?
            .into_iter()
            .map(|entity| entity.id)
            .collect())
    }
}
