//! The cluster-wide reads' messages (`proto/replica.proto`, version 4; text searches and the
//! candidates' steps within version 9) to and from the store's
//! types: one conversion per direction, shared by the replica service and the peer client so
//! both ends agree by construction.

use std::sync::Arc;

use allidb_index::graph::{Direction, NodeSteps, PathStep, TraversalOptions};
use allidb_index::lexical::{CollectionStats, CorpusStats, LexicalHit};
use allidb_index::query::EntityFacts;
use allidb_index::store::{
    HopNode, HopRequest, SeedCandidate, SeedCandidates, StepRequest, TextCandidate, TextSearch,
};
use allidb_index::vector::VectorHit;
use allidb_index::{Error, Filter};

use super::ahead::HopAhead;
use crate::proto;
use crate::stream::wire::{MAX_SPANS, span_from_proto, span_to_proto};

/// What a candidate search asks of one node.
#[derive(Clone, Debug)]
pub struct SeedSearch {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Candidates wanted.
    pub count: usize,
    /// HNSW candidate list size (`None`: the node's default).
    pub ef: Option<usize>,
    /// Applied inside the search.
    pub filter: Filter,
    /// Also the best by BM25 for this text (`vector` may then be empty).
    pub text: Option<TextSearch>,
    /// Also the candidates' complete steps for the walk's first hop
    /// ([`allidb_index::UnifiedStore::complete_steps`]); `None`: no walk.
    pub steps: Option<StepRequest>,
}

/// Most terms a ring's text query carries (its distinct analyzed terms).
pub const MAX_TEXT_TERMS: usize = 1024;

/// A key range of entity ids: `start <= id < end`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdRange {
    /// First id (inclusive); `None`: the tenant's first.
    pub start: Option<String>,
    /// Last id (exclusive); `None`: no end.
    pub end: Option<String>,
}

pub(crate) fn filter_to_proto(filter: &Filter) -> proto::EntityFilter {
    proto::EntityFilter {
        entity_types: filter.entity_types.clone(),
        attributes: filter.attributes.clone().into_iter().collect(),
        expression: filter
            .expression
            .as_ref()
            .map(allidb_index::filter::wire::encode)
            .unwrap_or_default(),
    }
}

/// The store's form of a filter; an expression that does not decode is refused.
pub(crate) fn filter_from_proto(filter: Option<proto::EntityFilter>) -> Result<Filter, Error> {
    let filter = filter.unwrap_or_default();
    let expression = match filter.expression.is_empty() {
        true => None,
        false => Some(allidb_index::filter::wire::decode(&filter.expression)?),
    };
    Ok(Filter {
        entity_types: filter.entity_types,
        attributes: filter.attributes.into_iter().collect(),
        expression,
    })
}

pub(crate) fn seed_search_to_proto(search: &SeedSearch) -> proto::SearchSeedsRequest {
    proto::SearchSeedsRequest {
        header: None,
        tenant: String::new(),
        vector: search.vector.clone(),
        count: u32::try_from(search.count).unwrap_or(u32::MAX),
        ef: search
            .ef
            .map_or(0, |ef| u32::try_from(ef).unwrap_or(u32::MAX)),
        filter: Some(filter_to_proto(&search.filter)),
        text: search.text.as_ref().map(text_to_proto),
        steps: search.steps.as_ref().map(step_request_to_proto),
    }
}

fn text_to_proto(text: &TextSearch) -> proto::TextSearch {
    proto::TextSearch {
        terms: text.terms.clone(),
        docs: text.corpus.collection.docs,
        total_len: text.corpus.collection.total_len,
        doc_freqs: text.corpus.doc_freqs.clone(),
    }
}

/// Checks a text's terms: at least one, at most [`MAX_TEXT_TERMS`] (the error names `field`).
pub(crate) fn check_terms(terms: &[String], field: &str) -> Result<(), Error> {
    if terms.is_empty() || terms.len() > MAX_TEXT_TERMS {
        return Err(Error::invalid(format!(
            "{field}: {} terms, expected 1..={MAX_TEXT_TERMS}",
            terms.len()
        )));
    }
    Ok(())
}

/// The store's form of a text search; terms out of bounds or statistics that do not fit
/// them are refused naming the field.
fn text_from_proto(text: proto::TextSearch) -> Result<TextSearch, Error> {
    check_terms(&text.terms, "text.terms")?;
    let text = TextSearch {
        terms: text.terms,
        corpus: CorpusStats {
            collection: CollectionStats {
                docs: text.docs,
                total_len: text.total_len,
            },
            doc_freqs: text.doc_freqs,
        },
    };
    text.corpus.check(text.terms.len())?;
    Ok(text)
}

fn lexical_to_proto(hit: &LexicalHit) -> proto::LexicalScore {
    proto::LexicalScore {
        score: hit.score,
        matched: hit
            .matched
            .iter()
            .map(|(term, score)| proto::MatchedTerm {
                term: term.to_string(),
                score: *score,
            })
            .collect(),
    }
}

fn lexical_from_proto(entity_id: Arc<str>, score: proto::LexicalScore) -> LexicalHit {
    LexicalHit {
        entity_id,
        score: score.score,
        matched: score
            .matched
            .into_iter()
            .map(|m| (Arc::from(m.term), m.score))
            .collect(),
    }
}

/// The store's form of a candidate search; a bad filter expression is refused.
pub(crate) fn seed_search_from_proto(
    request: proto::SearchSeedsRequest,
) -> Result<SeedSearch, Error> {
    Ok(SeedSearch {
        vector: request.vector,
        count: request.count as usize,
        ef: (request.ef > 0).then_some(request.ef as usize),
        filter: filter_from_proto(request.filter)?,
        text: request.text.map(text_from_proto).transpose()?,
        steps: request.steps.map(step_request_from_proto).transpose()?,
    })
}

pub(crate) fn seed_to_proto(seed: &SeedCandidate) -> proto::SeedCandidate {
    proto::SeedCandidate {
        entity_id: seed.hit.entity_id.to_string(),
        similarity: seed.hit.similarity,
        importance: seed.facts.importance,
        updated_at_micros: seed.facts.updated_at_micros,
        lexical: seed.lexical.as_ref().map(lexical_to_proto),
    }
}

pub(crate) fn seed_from_proto(seed: proto::SeedCandidate) -> SeedCandidate {
    let entity_id: Arc<str> = Arc::from(seed.entity_id);
    SeedCandidate {
        lexical: seed
            .lexical
            .map(|score| lexical_from_proto(entity_id.clone(), score)),
        hit: VectorHit {
            entity_id,
            similarity: seed.similarity,
        },
        facts: EntityFacts {
            importance: seed.importance,
            updated_at_micros: seed.updated_at_micros,
        },
    }
}

fn text_candidate_to_proto(candidate: &TextCandidate) -> proto::TextCandidate {
    proto::TextCandidate {
        entity_id: candidate.hit.entity_id.to_string(),
        lexical: Some(lexical_to_proto(&candidate.hit)),
        has_similarity: candidate.similarity.is_some(),
        similarity: candidate.similarity.unwrap_or_default(),
        importance: candidate.facts.importance,
        updated_at_micros: candidate.facts.updated_at_micros,
    }
}

fn text_candidate_from_proto(candidate: proto::TextCandidate) -> TextCandidate {
    let entity_id: Arc<str> = Arc::from(candidate.entity_id);
    TextCandidate {
        hit: lexical_from_proto(entity_id, candidate.lexical.unwrap_or_default()),
        similarity: candidate.has_similarity.then_some(candidate.similarity),
        facts: EntityFacts {
            importance: candidate.importance,
            updated_at_micros: candidate.updated_at_micros,
        },
    }
}

/// The wire form of a host's candidates (`text_searched`: the request had a text).
pub(crate) fn seeds_to_proto(
    seeds: &SeedCandidates,
    text_searched: bool,
) -> proto::SearchSeedsResponse {
    proto::SearchSeedsResponse {
        seeds: seeds.vector.iter().map(seed_to_proto).collect(),
        lexical: seeds.lexical.iter().map(text_candidate_to_proto).collect(),
        text_searched,
        candidate_steps: seeds
            .steps
            .iter()
            .map(|(id, steps)| proto::CandidateSteps {
                entity_id: id.to_string(),
                steps: steps_to_proto(steps),
            })
            .collect(),
    }
}

/// A host's candidates from their wire form; an answer to a text search that did not search
/// the text (a node that predates text searches) is refused.
pub(crate) fn seeds_from_proto(
    reply: proto::SearchSeedsResponse,
    text_asked: bool,
) -> Result<SeedCandidates, Error> {
    if text_asked && !reply.text_searched {
        return Err(Error::invalid(
            "the node did not search the text: it predates text searches on a ring; upgrade it",
        ));
    }
    Ok(SeedCandidates {
        vector: reply.seeds.into_iter().map(seed_from_proto).collect(),
        lexical: reply
            .lexical
            .into_iter()
            .map(text_candidate_from_proto)
            .collect(),
        steps: reply
            .candidate_steps
            .into_iter()
            .map(|candidate| {
                let id: Arc<str> = Arc::from(candidate.entity_id);
                let steps = steps_from_proto(&id, candidate.steps);
                (id, steps)
            })
            .collect(),
    })
}

fn direction_code(direction: Direction) -> u32 {
    match direction {
        Direction::Out => 0,
        Direction::In => 1,
        Direction::Both => 2,
    }
}

pub(crate) fn hop_to_proto(hop: &HopRequest, ahead: Option<&HopAhead>) -> proto::ExpandHopRequest {
    proto::ExpandHopRequest {
        header: None,
        tenant: String::new(),
        entity_ids: hop.entity_ids.clone(),
        vector: hop.query.clone(),
        filter: Some(filter_to_proto(&hop.filter)),
        steps: hop.steps.as_ref().map(step_request_to_proto),
        text: hop.text.as_ref().map(text_to_proto),
        ahead: ahead.map(|ahead| proto::HopAhead {
            per_node: u32::try_from(ahead.per_node).unwrap_or(u32::MAX),
            spans: ahead.spans.iter().map(span_to_proto).collect(),
            entity_ids: ahead.entity_ids.iter().map(|id| id.to_string()).collect(),
        }),
    }
}

/// The store's form of what a hop's owner also describes; more spans than [`MAX_SPANS`] are
/// refused naming the field.
fn hop_ahead_from_proto(ahead: proto::HopAhead) -> Result<HopAhead, Error> {
    if ahead.spans.len() > MAX_SPANS {
        return Err(Error::invalid(format!(
            "ahead.spans: {} token ranges, at most {MAX_SPANS}",
            ahead.spans.len()
        )));
    }
    Ok(HopAhead {
        per_node: ahead.per_node as usize,
        spans: ahead.spans.iter().map(span_from_proto).collect(),
        entity_ids: ahead.entity_ids.into_iter().map(Arc::from).collect(),
    })
}

fn step_request_to_proto(steps: &StepRequest) -> proto::StepRequest {
    proto::StepRequest {
        relations: steps.options.relations.clone().unwrap_or_default(),
        direction: direction_code(steps.options.direction),
        min_weight: steps.options.min_weight,
        limit: u32::try_from(steps.limit).unwrap_or(u32::MAX),
        walked: steps.walked.iter().map(|id| id.to_string()).collect(),
    }
}

/// The store's form of a step request; a bad direction or a NaN minimum weight is refused
/// naming the field.
fn step_request_from_proto(steps: proto::StepRequest) -> Result<StepRequest, Error> {
    if steps.min_weight.is_nan() {
        return Err(Error::invalid("steps.min_weight: NaN"));
    }
    let direction = match steps.direction {
        0 => Direction::Out,
        1 => Direction::In,
        2 => Direction::Both,
        other => {
            return Err(Error::invalid(format!(
                "steps.direction: {other} is not 0 (out), 1 (in) or 2 (both)"
            )));
        }
    };
    Ok(StepRequest {
        options: TraversalOptions {
            relations: (!steps.relations.is_empty()).then_some(steps.relations),
            direction,
            min_weight: steps.min_weight,
            ..TraversalOptions::default()
        },
        limit: steps.limit as usize,
        walked: steps.walked.into_iter().map(Arc::from).collect(),
    })
}

/// The store's form of a hop request and what its owner also describes; a bad direction is
/// refused naming the field.
pub(crate) fn hop_from_proto(
    request: proto::ExpandHopRequest,
) -> Result<(HopRequest, Option<HopAhead>), Error> {
    let steps = request.steps.map(step_request_from_proto).transpose()?;
    let hop = HopRequest {
        entity_ids: request.entity_ids,
        query: request.vector,
        filter: filter_from_proto(request.filter)?,
        steps,
        text: request.text.map(text_from_proto).transpose()?,
    };
    Ok((hop, request.ahead.map(hop_ahead_from_proto).transpose()?))
}

pub(crate) fn hop_node_to_proto(node: &HopNode) -> proto::HopNode {
    let facts = node.facts.unwrap_or(EntityFacts {
        importance: 0.0,
        updated_at_micros: 0,
    });
    proto::HopNode {
        found: node.facts.is_some(),
        importance: facts.importance,
        updated_at_micros: facts.updated_at_micros,
        has_similarity: node.similarity.is_some(),
        similarity: node.similarity.unwrap_or_default(),
        matches_filter: node.matches_filter,
        steps: steps_to_proto(&node.steps.steps),
        cut: node.steps.cut,
        lexical: node.lexical.as_ref().map(lexical_to_proto),
    }
}

/// The store's form of a node of a hop reply about `entity_id`.
pub(crate) fn hop_node_from_proto(entity_id: &Arc<str>, node: proto::HopNode) -> HopNode {
    HopNode {
        facts: node.found.then_some(EntityFacts {
            importance: node.importance,
            updated_at_micros: node.updated_at_micros,
        }),
        similarity: node.has_similarity.then_some(node.similarity),
        matches_filter: node.matches_filter,
        lexical: node
            .lexical
            .map(|score| lexical_from_proto(entity_id.clone(), score)),
        steps: NodeSteps {
            steps: steps_from_proto(entity_id, node.steps),
            cut: node.cut,
        },
    }
}

fn steps_to_proto(steps: &[PathStep]) -> Vec<proto::HopStep> {
    steps
        .iter()
        .map(|step| proto::HopStep {
            relation: step.relation.to_string(),
            peer: step.to.to_string(),
            weight: step.weight,
            reversed: step.reversed,
        })
        .collect()
}

/// The steps out of `entity_id` from their wire form (consecutive steps of one relation share
/// its name).
fn steps_from_proto(entity_id: &Arc<str>, steps: Vec<proto::HopStep>) -> Vec<PathStep> {
    let mut relation: Option<Arc<str>> = None;
    steps
        .into_iter()
        .map(|step| {
            let shared = match relation.take() {
                Some(last) if *last == *step.relation => last,
                _ => Arc::from(step.relation),
            };
            relation = Some(shared.clone());
            PathStep {
                from: entity_id.clone(),
                relation: shared,
                to: Arc::from(step.peer),
                weight: step.weight,
                reversed: step.reversed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_request() -> StepRequest {
        StepRequest {
            options: TraversalOptions {
                relations: Some(vec!["depends".to_owned()]),
                direction: Direction::Both,
                min_weight: 0.25,
                ..TraversalOptions::default()
            },
            limit: 32,
            walked: vec![Arc::from("a"), Arc::from("b")],
        }
    }

    fn search(steps: proto::StepRequest) -> proto::SearchSeedsRequest {
        proto::SearchSeedsRequest {
            vector: vec![1.0, 0.0],
            count: 10,
            steps: Some(steps),
            ..proto::SearchSeedsRequest::default()
        }
    }

    #[test]
    fn a_step_request_travels_unchanged() {
        let sent = step_request();
        let request = seed_search_from_proto(search(step_request_to_proto(&sent)))
            .expect("a valid request decodes");
        let got = request.steps.expect("the steps travel");
        assert_eq!(got.options, sent.options);
        assert_eq!(got.limit, sent.limit);
        assert_eq!(got.walked, sent.walked);
    }

    #[test]
    fn a_bad_step_request_is_refused_naming_its_field() {
        let mut steps = step_request_to_proto(&step_request());
        steps.direction = 3;
        for error in [
            seed_search_from_proto(search(steps.clone())).map(drop),
            hop_from_proto(proto::ExpandHopRequest {
                entity_ids: vec!["a".to_owned()],
                steps: Some(steps),
                ..proto::ExpandHopRequest::default()
            })
            .map(drop),
        ] {
            let error = error.expect_err("direction 3 is refused").to_string();
            assert!(error.contains("steps.direction: 3"), "{error}");
        }
        let ahead = proto::HopAhead {
            spans: vec![proto::TokenSpan { start: 0, end: 0 }; MAX_SPANS + 1],
            ..proto::HopAhead::default()
        };
        let error = hop_from_proto(proto::ExpandHopRequest {
            ahead: Some(ahead),
            ..proto::ExpandHopRequest::default()
        })
        .map(drop)
        .expect_err("too many spans are refused")
        .to_string();
        assert!(error.contains("ahead.spans: 16385 token ranges"), "{error}");
        let mut steps = step_request_to_proto(&step_request());
        steps.min_weight = f32::NAN;
        let error = seed_search_from_proto(search(steps))
            .map(drop)
            .expect_err("a NaN minimum weight is refused")
            .to_string();
        assert!(error.contains("steps.min_weight: NaN"), "{error}");
    }
}
