//! The candidate search of a cluster-wide query: every host of the covering set searches
//! everything it holds for the query's full seed count (by vector, and by BM25 when the query
//! has a text), and the answers are merged into the best of each list, as one node holding
//! everything would find them. An entity is held by several hosts of the set, so each searches
//! with a share of the query's `ef` ([`super::cover::Cover::per_host_ef`]).
//!
//! When the query walks, each host also sends the complete steps of its candidates (those with
//! at most the hop's limit of distinct neighbours), so the walk's first hop asks only for the
//! seeds whose steps no host could send in full.
//!
//! Invariants: a candidate appears once per list (the answer with the newest facts kept); each
//! list is cut to the seed count after the merge, in the order one node sorts it (similarity or
//! BM25 score descending, ties by id); a candidate's steps are one host's complete list.
//! Must never: fuse the lists (the query does, over the merged ones) or drop a host's answer
//! without retrying its ranges on another.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use allidb_index::graph::PathStep;
use allidb_index::query::EntityFacts;
use allidb_index::store::{SeedCandidate, SeedCandidates, TextCandidate};
use futures_util::future::join_all;

use super::wire::SeedSearch;
use super::{Fanout, MAX_ATTEMPTS, host_failure};
use crate::ClusterError;
use crate::ring::HostId;

/// Keeps `candidate` under `id` unless the one kept has newer facts.
fn keep_newest<T>(
    best: &mut HashMap<Arc<str>, T>,
    id: &Arc<str>,
    candidate: T,
    facts: impl Fn(&T) -> EntityFacts,
) {
    match best.get_mut(id) {
        Some(kept) if facts(&candidate).updated_at_micros > facts(kept).updated_at_micros => {
            *kept = candidate;
        }
        Some(_) => {}
        None => {
            best.insert(id.clone(), candidate);
        }
    }
}

/// The best `count` of `candidates` by `key` (score descending, ties by id ascending).
fn best<T>(
    candidates: HashMap<Arc<str>, T>,
    count: usize,
    key: impl Fn(&T) -> (f64, Arc<str>),
) -> Vec<T> {
    let mut best: Vec<T> = candidates.into_values().collect();
    best.sort_by(|a, b| {
        let ((a_score, a_id), (b_score, b_id)) = (key(a), key(b));
        b_score.total_cmp(&a_score).then_with(|| a_id.cmp(&b_id))
    });
    best.truncate(count);
    best
}

impl Fanout<'_> {
    /// Asks the covering set for `search`'s candidates: the best `search.count` of all their
    /// answers in each list, deduplicated by id, best first (ties by id). `search.ef` is the
    /// single-node `ef`; each host searches with its share of it for the request's first
    /// covering set ([`super::cover::Cover::per_host_ef`]).
    pub(super) async fn seeds(
        &self,
        mut search: SeedSearch,
    ) -> Result<SeedCandidates, ClusterError> {
        let mut asked: BTreeSet<HostId> = BTreeSet::new();
        let mut vector: HashMap<Arc<str>, SeedCandidate> = HashMap::new();
        let mut lexical: HashMap<Arc<str>, TextCandidate> = HashMap::new();
        let mut steps: HashMap<Arc<str>, Vec<PathStep>> = HashMap::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let cover = self.cover(1)?;
            if attempt == 1 {
                search.ef = search.ef.map(|ef| cover.per_host_ef(ef));
            }
            let hosts: Vec<HostId> = cover
                .hosts
                .into_iter()
                .filter(|h| !asked.contains(h))
                .collect();
            let search = &search;
            let calls = hosts.iter().map(|host| {
                let call = self.replicas.search_seeds(*host, self.tenant, search);
                self.timed_rows(*host, "seeds", call, |found| {
                    found.vector.len() + found.lexical.len()
                })
            });
            let answers = join_all(calls).await;
            self.report.lock().round();
            let mut failure = None;
            for (host, answer) in hosts.into_iter().zip(answers) {
                match answer {
                    Ok(found) => {
                        asked.insert(host);
                        for candidate in found.vector {
                            let id = candidate.hit.entity_id.clone();
                            keep_newest(&mut vector, &id, candidate, |c| c.facts);
                        }
                        for candidate in found.lexical {
                            let id = candidate.hit.entity_id.clone();
                            keep_newest(&mut lexical, &id, candidate, |c| c.facts);
                        }
                        for (id, complete) in found.steps {
                            steps.entry(id).or_insert(complete);
                        }
                    }
                    Err(error) if host_failure(&error) && attempt < MAX_ATTEMPTS => {
                        self.failed.lock().insert(host);
                        failure = Some(error);
                    }
                    Err(error) => return Err(error),
                }
            }
            if failure.is_none() {
                break;
            }
        }
        let vector = best(vector, search.count, |c| {
            (f64::from(c.hit.similarity), c.hit.entity_id.clone())
        });
        let lexical = best(lexical, search.count, |c| {
            (c.hit.score, c.hit.entity_id.clone())
        });
        Ok(SeedCandidates {
            vector,
            lexical,
            steps,
        })
    }
}
