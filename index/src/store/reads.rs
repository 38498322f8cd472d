//! The store's reads on one node, besides the query itself (module `answer`): entity gets and
//! scans, graph traversals, BM25 alone and the lexical index's documents; the checks a query's
//! tenant, vector and filter pass first; whether a read is light enough for an async worker
//! thread; and the edges of a query context.
//!
//! Invariants: only live entities are returned (an expired one by neither a get nor a scan, a
//! deleted one not by a traversal); every lookup goes through the caller's tenant first. Must
//! never: change an index or the engine.

use std::sync::Arc;

use allidb_storage::cell::Entity;
use allidb_storage::hlc::wall_nanos;

use super::{Filter, QueryRequest, TenantState, TraverseHit, UnifiedStore, facts};
use crate::error::{Error, Result};
use crate::filter::{AttrType, Expr};
use crate::graph::{PathStep, Reached, TraversalOptions, Truncation};
use crate::lexical::{DocTerms, LexicalHit};

/// Most vectors a tenant's exact-scan tail may hold for its queries to count as light
/// ([`UnifiedStore::query_is_light`]): scanning them takes about 0.75 ms (a 20,000-vector tail
/// of 384-d vectors measured 7.3 ms in process).
pub const LIGHT_QUERY_MAX_TAIL: usize = 2_048;

impl UnifiedStore {
    /// One live entity (an expired one is not returned, even before the expiry sweep).
    pub fn get_entity(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        let now = wall_nanos();
        Ok(self
            .engine
            .get_entity(tenant, id)?
            .filter(|e| !e.body.expired_at(now)))
    }

    /// Up to `limit` live entities with `start <= id < end`, in id order, from one snapshot.
    pub fn scan(
        &self,
        tenant: &str,
        start: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>> {
        let now = wall_nanos();
        let iter = self.engine.scan(tenant, start, end)?;
        Ok(iter
            .filter(|e| e.as_ref().map_or(true, |e| !e.body.expired_at(now)))
            .take(limit)
            .collect::<allidb_storage::Result<Vec<_>>>()?)
    }

    /// Checks `filter` against `tenant`'s attribute types (what a scan or a traversal does
    /// before filtering what it reads; a query checks its own).
    pub fn check_filter(&self, tenant: &str, filter: &Filter) -> Result<()> {
        self.check_filter_with(tenant, filter, &|_| None)
    }

    /// [`UnifiedStore::check_filter`], a key no live entity here holds taking the type
    /// `elsewhere` gives it (a ring's record of the types its other nodes hold).
    pub fn check_filter_with(
        &self,
        tenant: &str,
        filter: &Filter,
        elsewhere: &dyn Fn(&str) -> Option<AttrType>,
    ) -> Result<()> {
        let Some(expression) = &filter.expression else {
            return Ok(());
        };
        let state = self.indexes.tenant(tenant);
        let facts = state.as_ref().map(|s| s.indexes.facts.read());
        let types = |key: &str| {
            facts
                .as_ref()
                .and_then(|f| f.payload().key_type(key))
                .or_else(|| elsewhere(key))
        };
        expression.check("where", &types)
    }

    /// The indexes of `tenant` for a query by `vector` (`None`: the tenant has none), once
    /// the vector is checked: not empty (unless `!vector_needed`: a text-only query), finite,
    /// of the tenant's dimension.
    pub(super) fn query_tenant(
        &self,
        tenant: &str,
        vector: &[f32],
        vector_needed: bool,
    ) -> Result<Option<Arc<TenantState>>> {
        allidb_storage::key::validate_tenant(tenant)?;
        if vector.is_empty() && vector_needed {
            return Err(Error::invalid("query vector is empty"));
        }
        if let Some(bad) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "query vector has a non-finite value at index {bad}"
            )));
        }
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok(None);
        };
        if let Some(expected) = *state.dimension.lock()
            && !vector.is_empty()
            && expected != vector.len()
        {
            return Err(Error::DimensionMismatch {
                expected,
                got: vector.len(),
            });
        }
        Ok(Some(state))
    }

    /// `reached` nodes with their stored entities when `include_entities` (a node deleted
    /// meanwhile is dropped).
    pub(super) fn with_entities(
        &self,
        tenant: &str,
        reached: Vec<Reached>,
        include_entities: bool,
    ) -> Result<Vec<TraverseHit>> {
        let mut hits = Vec::with_capacity(reached.len());
        for reached in reached {
            let entity = if include_entities {
                match self.get_entity(tenant, &reached.entity_id)? {
                    Some(e) => Some(e),
                    None => continue,
                }
            } else {
                None
            };
            hits.push(TraverseHit { reached, entity });
        }
        Ok(hits)
    }

    /// True when `request` only reads in-memory indexes and is cheap: it returns no entities
    /// (which are read from the engine, possibly from disk) and `tenant`'s exact-scan tail
    /// holds at most [`LIGHT_QUERY_MAX_TAIL`] vectors. The rest of a query is bounded by its
    /// plan (HNSW breadth, expansion node budget, exact filter scans of a few thousand
    /// vectors), so such a query takes about a millisecond at most and a caller may run it on an
    /// async worker thread instead of handing it to a blocking one.
    pub fn query_is_light(&self, tenant: &str, request: &QueryRequest) -> bool {
        !request.include_entities && self.index_reads_are_light(tenant)
    }

    /// True when a read of `tenant`'s in-memory indexes alone (a query answer, a ring's
    /// candidate search or hop) is light in the sense of [`UnifiedStore::query_is_light`]:
    /// its exact-scan tail holds at most [`LIGHT_QUERY_MAX_TAIL`] vectors.
    pub fn index_reads_are_light(&self, tenant: &str) -> bool {
        self.indexes
            .tenant(tenant)
            .is_none_or(|t| t.indexes.vectors.pending_len() <= LIGHT_QUERY_MAX_TAIL)
    }

    /// Graph-only traversal from `starts`; only live entities are returned, with the limits
    /// that cut the walk.
    pub fn traverse(
        &self,
        tenant: &str,
        starts: &[String],
        options: &TraversalOptions,
        include_entities: bool,
    ) -> Result<(Vec<TraverseHit>, Truncation)> {
        allidb_storage::key::validate_tenant(tenant)?;
        options.validate()?;
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok((Vec::new(), Truncation::default()));
        };
        let t = &state.indexes;
        let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
        let (reached, truncation) = {
            let facts = t.facts.read();
            let walk = t.graph.walk(&starts, options)?;
            let reached: Vec<Reached> = walk
                .reached
                .into_iter()
                .filter(|r| facts.get(&r.entity_id).is_some())
                .collect();
            (reached, walk.truncation)
        };
        Ok((
            self.with_entities(tenant, reached, include_entities)?,
            truncation,
        ))
    }

    /// The best `n` entities of `tenant` for `text` by BM25 alone (no filter, no graph): the
    /// lexical index's own answer, for diagnostics, benchmarks and tests. A text without a
    /// searchable word is `InvalidArgument`.
    pub fn lexical_search(&self, tenant: &str, text: &str, n: usize) -> Result<Vec<LexicalHit>> {
        allidb_storage::key::validate_tenant(tenant)?;
        let terms = self.options.lexical.of(tenant).query_terms(text)?;
        Ok(self
            .indexes
            .tenant(tenant)
            .map(|state| {
                let facts = state.indexes.facts.read();
                let live = |id: &str| facts.get(id).is_some();
                let allows: Option<&dyn Fn(&str) -> bool> =
                    facts.has_expired(wall_nanos()).then_some(&live);
                state.indexes.lexical.search(&terms, n, allows, None)
            })
            .unwrap_or_default())
    }

    /// Every analyzed document of `tenant`'s lexical index, in entity order (consistency
    /// checks: after any crash it equals a rebuild's).
    pub fn lexical_documents(&self, tenant: &str) -> Vec<(String, DocTerms)> {
        self.indexes
            .tenant(tenant)
            .map(|state| state.indexes.lexical.export())
            .unwrap_or_default()
    }
}

/// Checks `filter`'s expression against the attribute types of the tenant whose facts are
/// `facts` (the request field is `where`): `InvalidArgument` naming the condition's path.
pub fn check_filter(facts: &facts::FactTable, filter: &Filter) -> Result<()> {
    match &filter.expression {
        Some(expression) => check_expression(facts, expression),
        None => Ok(()),
    }
}

fn check_expression(facts: &facts::FactTable, expression: &Expr) -> Result<()> {
    let types = |key: &str| -> Option<AttrType> { facts.payload().key_type(key) };
    expression.check("where", &types)
}

/// The recorded `edges` of a walk of `walked` nodes whose both ends are among `nodes` (what a
/// query context returns once removed nodes are gone).
pub fn edges_between(nodes: &[TraverseHit], walked: usize, edges: Vec<PathStep>) -> Vec<PathStep> {
    // Every recorded edge joins two walked nodes: only a removed node removes edges.
    if nodes.len() == walked {
        return edges;
    }
    let kept: std::collections::HashSet<&str> =
        nodes.iter().map(|n| &*n.reached.entity_id).collect();
    edges
        .into_iter()
        .filter(|e| kept.contains(&*e.from) && kept.contains(&*e.to))
        .collect()
}
