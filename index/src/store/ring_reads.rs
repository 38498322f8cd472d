//! What a ring's coordinator asks of this node's store for a cluster-wide read
//! (`allidb-cluster`'s `query` module): the ANN and BM25 candidates this node holds, the facts
//! and next steps of a walk's frontier, the ids in a key range, and this node's share of a
//! text query's corpus statistics.
//!
//! Invariants: BM25 scores here use the corpus statistics the coordinator sends (those of the
//! whole ring), never this node's own, so every host scores an entity as one node holding
//! everything would; every answer covers everything this node holds (every range it replicates, not
//! only the ranges a coordinator assigned it), so the union of the answers of a set of nodes
//! covering the ring holds whatever one node holding everything would answer; seeds pass the
//! filter (it applies inside the ANN search, as on one node); a node's steps come from the
//! graph index, which indexes the in-edge cells of the partitions this node holds as well as
//! their out-edge cells, so the owner of an entity answers its incoming edges too.
//!
//! Must never: rank, truncate a walk or read at a consistency level: the coordinator does.

use std::collections::HashMap;
use std::sync::Arc;

use super::planning::{self, SeedPlan};
use super::{Filter, UnifiedStore};
use crate::error::{Error, Result};
use crate::graph::{NodeSteps, PathStep, TraversalOptions};
use crate::lexical::{CorpusStats, LexicalHit, LexicalSettings};
use crate::query::{EntityFacts, FactSource};
use crate::vector::{Metric, VectorHit};

/// One ANN candidate with the facts the coordinator's ranking reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedCandidate {
    /// The entity and its similarity to the query.
    pub hit: VectorHit,
    /// Its importance and update time.
    pub facts: EntityFacts,
    /// Its BM25 score for the search's text (`None`: no text, or it holds no query term).
    pub lexical: Option<LexicalHit>,
}

/// One BM25 candidate with what the coordinator's ranking reads.
#[derive(Clone, Debug, PartialEq)]
pub struct TextCandidate {
    /// The entity, its BM25 score and the query terms it holds.
    pub hit: LexicalHit,
    /// Its own similarity to the search's vector (`None`: no vector, or it has none).
    pub similarity: Option<f32>,
    /// Its importance and update time.
    pub facts: EntityFacts,
}

/// A ring query's text, as each host scores it: the analyzed terms and the statistics of the
/// whole corpus for them (gathered by the coordinator over every token range).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextSearch {
    /// The query's distinct analyzed terms, in query order.
    pub terms: Vec<String>,
    /// The corpus statistics, one document frequency per term.
    pub corpus: CorpusStats,
}

impl TextSearch {
    /// Refuses an empty text or statistics that do not fit its terms.
    fn check(&self) -> Result<()> {
        if self.terms.is_empty() {
            return Err(Error::invalid("text.terms: a text search needs a term"));
        }
        self.corpus.check(self.terms.len())
    }
}

/// What a host's candidate search found: its best candidates by vector and by BM25.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeedCandidates {
    /// The nearest to the search's vector, best first (empty without a vector).
    pub vector: Vec<SeedCandidate>,
    /// The best by BM25 for the search's text, best first (empty without a text).
    pub lexical: Vec<TextCandidate>,
    /// Every eligible step of the candidates whose steps are complete
    /// ([`UnifiedStore::complete_steps`]), when the search asked for them.
    pub steps: HashMap<Arc<str>, Vec<PathStep>>,
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
    /// Each node's BM25 score for this text is returned (`None`: none).
    pub text: Option<TextSearch>,
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
    /// Its BM25 score for the hop's text (`None`: no text, or it holds no query term).
    pub lexical: Option<LexicalHit>,
    /// Its next steps, when asked.
    pub steps: NodeSteps,
}

impl UnifiedStore {
    /// The similarity metric of every tenant's vectors (`index.metric`).
    pub fn metric(&self) -> Metric {
        self.indexes.options.metric
    }

    /// The `ef` of every tenant's vector searches when a query sets none (`index.ef_search`).
    pub fn ef_search(&self) -> usize {
        self.indexes.options.ef_search
    }

    /// Each tenant's lexical options (`index.lexical_*`): a ring's coordinator analyzes query
    /// texts with them.
    pub fn lexical_settings(&self) -> &LexicalSettings {
        &self.indexes.lexical
    }

    /// The `count` entities of `tenant` this node holds whose vectors are nearest `vector`
    /// (when not empty) and the `count` best by BM25 for `text` (when given), among those
    /// passing `filter`, best first, with their facts; `ef` as for a query. Each candidate
    /// also carries its score on the other side (its BM25 score, its similarity).
    pub fn search_seeds(
        &self,
        tenant: &str,
        vector: &[f32],
        text: Option<&TextSearch>,
        count: usize,
        ef: Option<usize>,
        filter: &Filter,
    ) -> Result<SeedCandidates> {
        if count == 0 {
            return Err(Error::invalid("seeds must be at least 1"));
        }
        if let Some(text) = text {
            text.check()?;
        } else if vector.is_empty() {
            return Err(Error::invalid("a seed search needs a vector or a text"));
        }
        let Some(state) = self.query_tenant(tenant, vector, !vector.is_empty())? else {
            return Ok(SeedCandidates::default());
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
        let hits = match (
            vector.is_empty(),
            planning::plan(&facts, filter, t.vectors.options(), false).0,
        ) {
            (true, _) => Vec::new(),
            (false, SeedPlan::Unfiltered) => {
                t.vectors.search(vector, count, ef, filter_fn, None)?
            }
            (false, SeedPlan::Filtered { upper, bitmap }) => {
                let memo = t.seed_memo(&facts, filter, bitmap);
                t.vectors
                    .search_memo(vector, count, ef, filter_fn, Some(upper), memo.as_deref())?
            }
            (false, SeedPlan::Exact(ids)) => {
                let ids: Vec<&str> = ids.iter().map(|id| &**id).collect();
                t.vectors.search_among(vector, count, &ids)?
            }
        };
        let bm25 = |id: &str| {
            text.and_then(|text| t.lexical.score_of(&text.terms, id, Some(&text.corpus)))
        };
        let vector_candidates = hits
            .into_iter()
            .filter_map(|hit| {
                let facts = facts.facts(&hit.entity_id)?;
                let lexical = bm25(&hit.entity_id);
                Some(SeedCandidate {
                    hit,
                    facts,
                    lexical,
                })
            })
            .collect();
        let lexical = match text {
            None => Vec::new(),
            Some(text) => {
                let allows = filter_fn.map(|f| f as &dyn Fn(&str) -> bool);
                let hits = t
                    .lexical
                    .search(&text.terms, count, allows, Some(&text.corpus));
                let ids: Vec<&str> = hits.iter().map(|h| &*h.entity_id).collect();
                let similarities = match vector.is_empty() {
                    true => vec![None; ids.len()],
                    false => t.vectors.similarities(vector, &ids)?,
                };
                hits.into_iter()
                    .zip(similarities)
                    .filter_map(|(hit, similarity)| {
                        let facts = facts.facts(&hit.entity_id)?;
                        Some(TextCandidate {
                            hit,
                            similarity,
                            facts,
                        })
                    })
                    .collect()
            }
        };
        Ok(SeedCandidates {
            vector: vector_candidates,
            lexical,
            steps: HashMap::new(),
        })
    }

    /// The complete steps of each of `ids` under `request`
    /// ([`crate::graph::GraphIndex::complete_steps`]): a complete list does not depend on the
    /// walk so far, so a candidate search sends these with its candidates and the walk's first
    /// hop needs no round of its own for them.
    pub fn complete_steps(
        &self,
        tenant: &str,
        ids: &[&str],
        request: &StepRequest,
    ) -> Result<HashMap<Arc<str>, Vec<PathStep>>> {
        allidb_storage::key::validate_tenant(tenant)?;
        request.options.validate()?;
        let Some(state) = self.indexes.tenant(tenant) else {
            return Ok(HashMap::new());
        };
        state
            .indexes
            .graph
            .complete_steps(ids, &request.options, request.limit, &request.walked)
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
        if let Some(text) = &request.text {
            text.check()?;
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
                lexical: request
                    .text
                    .as_ref()
                    .and_then(|text| t.lexical.score_of(&text.terms, id, Some(&text.corpus))),
                steps,
            })
            .collect())
    }

    /// The statistics of the documents of `tenant` whose entity `holds` accepts for the
    /// analyzed `terms` (a ring host's share of the corpus: [`crate::lexical::LexicalIndex::corpus_stats`]).
    pub fn corpus_stats(
        &self,
        tenant: &str,
        terms: &[String],
        holds: &dyn Fn(&str) -> bool,
    ) -> Result<CorpusStats> {
        allidb_storage::key::validate_tenant(tenant)?;
        Ok(match self.indexes.tenant(tenant) {
            Some(state) => state.indexes.lexical.corpus_stats(terms, holds),
            None => CorpusStats {
                doc_freqs: vec![0; terms.len()],
                ..CorpusStats::default()
            },
        })
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
