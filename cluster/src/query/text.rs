//! Text and hybrid queries on a ring whose nodes each hold only part of the data: the corpus
//! statistics BM25 needs, gathered over the whole ring before the candidate search, so every
//! host scores with the statistics one node holding everything has (docs/cluster.md "Text
//! queries on a ring").
//!
//! How: the query's distinct analyzed terms are sent to one live replica of each token range
//! (the covering set first, [`super::cover::owner_of`]), each host counting the documents, their
//! length and the documents holding each term among the entities of the ranges it was
//! assigned (by hashing each id with the ring's partitioner); the sums are the corpus's. They
//! travel with the candidate search and the walk's hops, where each host scores its documents
//! with them.
//!
//! Invariants: each range is counted on exactly one host, so an entity held by several replicas
//! counts once; the statistics are those of one replica per range (ONE): a replica that missed
//! writes counts what it holds. Must never: sum two replicas of one range, or score with a
//! host's own statistics on a ring.

use std::collections::{BTreeMap, BTreeSet};

use allidb_index::lexical::{CollectionStats, CorpusStats, LexicalOptions};
use allidb_index::store::TextSearch;
use futures_util::future::join_all;

use super::wire::check_terms;
use super::{Fanout, MAX_ATTEMPTS, host_failure};
use crate::ClusterError;
use crate::proto;
use crate::ring::{HostId, TokenRange, TokenSpan};
use crate::stream::wire::{MAX_SPANS, span_from_proto, span_to_proto};

/// What a `CorpusStats` call asks of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusRequest {
    /// The query's distinct analyzed terms, in query order.
    pub terms: Vec<String>,
    /// The token ranges counted (disjoint).
    pub spans: Vec<TokenSpan>,
}

/// The distinct terms of `text` analyzed as the tenant's `lexical` options say, in the order
/// they first appear; a text without a searchable word, or with more than
/// [`super::wire::MAX_TEXT_TERMS`] distinct terms, is refused.
pub fn query_terms(text: &str, lexical: &LexicalOptions) -> Result<Vec<String>, ClusterError> {
    let mut terms: Vec<String> = Vec::new();
    for term in lexical.query_terms(text)? {
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    check_terms(&terms, "text")?;
    Ok(terms)
}

impl Fanout<'_> {
    /// `text` as every host scores it: its terms by the tenant's analyzer (`lexical`, the
    /// same on every node) and the whole ring's statistics for them (see the module doc).
    /// Ranges without a live replica fail `UNAVAILABLE`, unless the read allows a partial
    /// answer (then they are left out, as the candidate search leaves them).
    pub(super) async fn text_search(
        &self,
        text: &str,
        lexical: &LexicalOptions,
    ) -> Result<TextSearch, ClusterError> {
        let terms = query_terms(text, lexical)?;
        let mut corpus = CorpusStats {
            collection: CollectionStats {
                docs: 0,
                total_len: 0,
            },
            doc_freqs: vec![0; terms.len()],
        };
        let mut pending: Vec<TokenRange> = self.view.ring.ranges();
        for attempt in 1..=MAX_ATTEMPTS {
            let preferred: BTreeSet<HostId> = self.cover(1)?.hosts.into_iter().collect();
            let assigned = self.assign(pending.drain(..), &preferred)?;
            let asked: Vec<(HostId, Vec<TokenRange>, CorpusRequest)> = assigned
                .into_iter()
                .map(|(host, ranges)| {
                    let request = CorpusRequest {
                        terms: terms.clone(),
                        spans: ranges.iter().map(TokenRange::span).collect(),
                    };
                    (host, ranges, request)
                })
                .collect();
            let calls = asked.iter().map(|(host, _, request)| {
                let call = self.replicas.corpus_stats(*host, self.tenant, request);
                self.timed_rows(*host, "corpus", call, |_| 1)
            });
            let answers = join_all(calls).await;
            self.report.lock().round();
            for ((host, ranges, _), answer) in asked.into_iter().zip(answers) {
                match answer {
                    Ok(stats) => corpus.add(&stats),
                    Err(error) if host_failure(&error) && attempt < MAX_ATTEMPTS => {
                        self.failed.lock().insert(host);
                        pending.extend(ranges);
                    }
                    Err(error) => return Err(error),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        Ok(TextSearch { terms, corpus })
    }

    /// Each of `ranges` assigned to one live replica (one of `preferred` first): per host, its
    /// ranges. A range without a live replica fails `UNAVAILABLE` naming it, or is left out
    /// when the read allows a partial answer.
    pub(super) fn assign(
        &self,
        ranges: impl Iterator<Item = TokenRange>,
        preferred: &BTreeSet<HostId>,
    ) -> Result<BTreeMap<HostId, Vec<TokenRange>>, ClusterError> {
        let mut assigned: BTreeMap<HostId, Vec<TokenRange>> = BTreeMap::new();
        for range in ranges {
            match self.owner_at(range.end, preferred) {
                Some(host) => assigned.entry(host).or_default().push(range),
                None if self.allow_partial => {}
                None => {
                    return Err(ClusterError::Unavailable(format!(
                        "token range ({}, {}]: no live replica",
                        range.start, range.end
                    )));
                }
            }
        }
        Ok(assigned)
    }
}

/// The wire form of a request (the header and tenant are the caller's).
pub(crate) fn request_to_proto(request: &CorpusRequest) -> proto::CorpusStatsRequest {
    proto::CorpusStatsRequest {
        header: None,
        tenant: String::new(),
        spans: request.spans.iter().map(span_to_proto).collect(),
        terms: request.terms.clone(),
    }
}

/// A request from its wire form, checked (the error names the field).
pub(crate) fn request_from_proto(
    request: proto::CorpusStatsRequest,
) -> Result<CorpusRequest, ClusterError> {
    if request.spans.len() > MAX_SPANS {
        return Err(ClusterError::Protocol(format!(
            "spans: {} token ranges, at most {MAX_SPANS}",
            request.spans.len()
        )));
    }
    check_terms(&request.terms, "terms")?;
    Ok(CorpusRequest {
        terms: request.terms,
        spans: request.spans.iter().map(span_from_proto).collect(),
    })
}

/// The wire form of a host's statistics.
pub(crate) fn stats_to_proto(stats: &CorpusStats) -> proto::CorpusStatsResponse {
    proto::CorpusStatsResponse {
        docs: stats.collection.docs,
        total_len: stats.collection.total_len,
        doc_freqs: stats.doc_freqs.clone(),
    }
}

/// A host's statistics from their wire form, for a request of `terms` terms.
pub(crate) fn stats_from_proto(
    reply: proto::CorpusStatsResponse,
    terms: usize,
) -> Result<CorpusStats, ClusterError> {
    let stats = CorpusStats {
        collection: CollectionStats {
            docs: reply.docs,
            total_len: reply.total_len,
        },
        doc_freqs: reply.doc_freqs,
    };
    stats.check(terms)?;
    Ok(stats)
}
