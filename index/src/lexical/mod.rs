//! The lexical index of one tenant: BM25 over each entity's chunk texts (issue 38,
//! docs/index.md "Lexical index").
//!
//! Owns: the analyzed documents (one per live entity that has text: its chunks, and its
//! entity type and chosen attributes when [`LexicalOptions`] says so), an inverted index
//! term -> (document, term frequency), the collection statistics BM25 needs (live documents,
//! total length), and the BM25 search with an allow-list, scored with its own statistics or
//! with a whole ring's ([`CorpusStats`], which a ring's coordinator gathers from the hosts
//! covering its token ranges, each counting only the documents of the ranges it was assigned).
//!
//! Fed like the vector and graph indexes, by the store's commit observer (every committed
//! write: local, replica, hint, repair, stream), the restart catch-up and rebuilds, through
//! [`LexicalIndex::upsert`] / [`LexicalIndex::remove`]; dumped with the other indexes (records
//! of analyzed documents, see `store/persist.rs`). Those calls queue the change; the postings
//! are written by one applier thread beside the writer, and every read applies what is still
//! queued first, so a read sees every change made before it (`queue.rs`).
//!
//! A document's terms may be looked up in the index's term dictionary ahead of its write, on
//! the threads that prepare a batch ([`LexicalIndex::resolve_body`] analyzes a body straight
//! into term ids; `resolve.rs`), so the one thread that applies committed batches does not
//! hash them.
//!
//! Invariants: the postings and statistics always equal what the documents give (updated
//! together under one lock), and each document knows where its entry in each of its terms'
//! postings is; a term's id never changes and is never reused (the dictionary only grows, so
//! an id resolved before a write is still the term's when it is applied, in the same index:
//! [`ResolvedDoc`] names the dictionary it was resolved in); an older body (`body_ts`) never
//! replaces a newer one; a document
//! without terms is not held (it cannot match and does not count in `N` or the average
//! length); an index whose options say it is off ([`LexicalOptions::enabled`]) holds nothing.
//! Must never: touch storage, or score with statistics of another tenant.

pub mod analyzer;
pub mod bm25;
mod document;
mod queue;
mod resolve;
#[cfg(test)]
mod resolve_tests;
mod settings;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use allidb_storage::cell::EntityBody;
use foldhash::HashMap;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
pub use analyzer::Analyzer;
pub use bm25::Bm25Params;
pub use document::{DocTerms, LexicalOptions};
use queue::{Change, ChangeQueue};
pub use resolve::ResolvedDoc;
use resolve::{SharedDictionary, TermDictionary};
pub use settings::LexicalSettings;

/// One document as held: its entity, length and terms.
#[derive(Debug)]
struct Doc {
    entity: Arc<str>,
    body_ts: u64,
    len: u32,
    /// Each distinct term once, by term id.
    terms: Vec<Posted>,
}

/// A term of a document: its frequency there, and where the document's entry sits in the
/// term's postings (so a removal finds it without a search).
#[derive(Clone, Copy, Debug)]
struct Posted {
    term: u32,
    tf: u32,
    at: u32,
}

/// Document slots [`LexicalIndex::export`] reads under one hold of the index's read lock.
const EXPORTED_AT_ONCE: usize = 1024;

#[derive(Debug, Default)]
struct Inner {
    /// Per term id: `(document slot, term frequency)` of each document holding it, in no
    /// order (a removal moves the term's last entry into the freed place). Appending is what
    /// a write costs: a hash map per term cost a random insert into a large table per term
    /// of every document written (docs/benchmarks.md, session 28).
    postings: Vec<Vec<(u32, u32)>>,
    /// Document slots (`None`: free).
    docs: Vec<Option<Doc>>,
    /// Per document slot, its document's length (0: free): what scoring a posting reads,
    /// without touching the documents (4 bytes a slot, where a `Doc` is 56).
    lens: Vec<u32>,
    free: Vec<u32>,
    by_entity: HashMap<Arc<str>, u32>,
    live: u64,
    total_len: u64,
}

/// One lexical match.
#[derive(Clone, Debug, PartialEq)]
pub struct LexicalHit {
    /// The entity.
    pub entity_id: Arc<str>,
    /// Its BM25 score for the query.
    pub score: f64,
    /// The query terms it holds, each with its BM25 contribution, in query order.
    pub matched: Vec<(Arc<str>, f64)>,
}

/// The collection statistics a score was computed with.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CollectionStats {
    /// Live documents (`N`).
    pub docs: u64,
    /// Their total length in terms.
    pub total_len: u64,
}

impl CollectionStats {
    /// The average document length (0 without documents).
    pub fn avg_len(&self) -> f64 {
        if self.docs == 0 {
            0.0
        } else {
            self.total_len as f64 / self.docs as f64
        }
    }
}

/// The statistics of a whole corpus for one query's terms: the documents and their length, and
/// how many documents hold each term. On one node they are the index's own; a ring's
/// coordinator sums them over the token ranges of its ring (each range counted on one host:
/// [`LexicalIndex::corpus_stats`]), so every host scores with what one node holding everything
/// would score with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorpusStats {
    /// `N` and the total length.
    pub collection: CollectionStats,
    /// The documents holding each term of the query, in the query's order (one per term as
    /// passed, repeats included).
    pub doc_freqs: Vec<u64>,
}

impl CorpusStats {
    /// Adds the statistics of other documents (disjoint from these) for the same query.
    pub fn add(&mut self, other: &CorpusStats) {
        self.collection.docs += other.collection.docs;
        self.collection.total_len += other.collection.total_len;
        if self.doc_freqs.len() < other.doc_freqs.len() {
            self.doc_freqs.resize(other.doc_freqs.len(), 0);
        }
        for (sum, df) in self.doc_freqs.iter_mut().zip(&other.doc_freqs) {
            *sum += df;
        }
    }

    /// Refuses statistics that do not fit a query of `terms` terms (one frequency per term).
    pub fn check(&self, terms: usize) -> Result<()> {
        if self.doc_freqs.len() != terms {
            return Err(Error::invalid(format!(
                "text.doc_freqs: {} document frequencies for {terms} query terms",
                self.doc_freqs.len()
            )));
        }
        Ok(())
    }
}

/// Per-thread accumulator of a search: a score per document slot and the slots touched.
#[derive(Default)]
struct Scratch {
    scores: Vec<f64>,
    touched: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A tenant's BM25 index (see the module documentation).
#[derive(Debug)]
pub struct LexicalIndex {
    options: LexicalOptions,
    shared: Arc<Shared>,
}

/// What an index shares with the applier thread (`queue.rs`).
#[derive(Debug, Default)]
struct Shared {
    inner: RwLock<Inner>,
    /// Locked after `inner` when both are (a resolve takes it alone). Shared with the
    /// documents resolved in it ([`ResolvedDoc`]).
    dictionary: SharedDictionary,
    /// Committed changes not in `inner` yet; locked after `inner` when both are.
    queue: Mutex<ChangeQueue>,
}

impl LexicalIndex {
    /// An empty index.
    pub fn new(options: LexicalOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            options,
            shared: Arc::default(),
        })
    }

    /// Its options.
    pub fn options(&self) -> &LexicalOptions {
        &self.options
    }

    /// Indexes `body` as entity `id`'s document (replacing the one it had), unless the held
    /// document comes from a newer body. A body without text removes the document.
    pub fn upsert_body(&self, id: &str, body: &EntityBody, body_ts: u64) {
        self.upsert(id, self.options.document(body, body_ts));
    }

    /// Indexes `doc` as entity `id`'s document (see [`Self::upsert_body`]).
    pub fn upsert(&self, id: &str, doc: DocTerms) {
        self.upsert_resolved(id, ResolvedDoc::unresolved(doc));
    }

    /// Indexes `doc` (resolved by [`Self::resolve_body`], or not) as
    /// entity `id`'s document (see [`Self::upsert_body`]). The postings are written by the
    /// applier thread; every read of this index sees the document (`queue.rs`).
    pub fn upsert_resolved(&self, id: &str, doc: ResolvedDoc) {
        if !self.options.enabled {
            return;
        }
        let doc = doc.for_dictionary(&self.shared.dictionary);
        self.shared.enqueue(Change::Upsert(id.into(), doc));
    }

    /// Removes entity `id`'s document (deleted, or its body is gone), as the facts table
    /// forgets it: unconditionally (applied as [`Self::upsert_resolved`] is).
    pub fn remove(&self, id: &str) {
        if !self.options.enabled {
            return;
        }
        self.shared.enqueue(Change::Remove(id.into()));
    }

    /// Live documents.
    pub fn len(&self) -> usize {
        usize::try_from(self.shared.settled().live).unwrap_or(usize::MAX)
    }

    /// True without documents.
    pub fn is_empty(&self) -> bool {
        self.shared.settled().live == 0
    }

    /// `N` and the total length.
    pub fn stats(&self) -> CollectionStats {
        let inner = self.shared.settled();
        CollectionStats {
            docs: inner.live,
            total_len: inner.total_len,
        }
    }

    /// Every document, in entity order, each entity once, its terms in term order: what
    /// tests and consistency checks compare across indexes (whose term ids differ).
    pub fn export(&self) -> Vec<(String, DocTerms)> {
        by_entity_once(ExportSlices::new(self, true).flatten())
    }

    /// [`Self::export`] with each document's terms in this index's term-id order: what a dump
    /// holds (its load looks every term up whatever the order). Naming the terms in order
    /// sorted every document's terms by their text, a quarter to a third of a dump's CPU
    /// (docs/benchmarks.md, issue 34 session 48).
    ///
    /// Both read the index [`EXPORTED_AT_ONCE`] document slots at a time ([`ExportSlices`]),
    /// each slice under its own short hold of the index's read lock, and name the terms with
    /// no lock held: a dump runs on the niced indexer thread, and holding the lock for a whole
    /// export stopped every write to the index (the writing thread's too, once the change
    /// queue was full) for as long as the export took. So while writes go on, a document may
    /// be exported as of a later moment than another: a dump's catch-up applies every entity
    /// written after the sequence number it covers again from storage, which is all a dump
    /// needs. An entity removed from a slot already read and written again into a later one is
    /// exported once, as of the later read.
    pub fn export_for_dump(&self) -> Vec<(String, DocTerms)> {
        by_entity_once(ExportSlices::new(self, false).flatten())
    }

    /// The best `n` documents for the analyzed `query` by BM25 that `allows` accepts, best
    /// first (ties by entity id), scored with `corpus` (`None`: this index's own statistics;
    /// else one frequency per query term, [`CorpusStats::check`]). Each distinct query term
    /// counts once; documents holding none of them are not returned.
    pub fn search(
        &self,
        query: &[String],
        n: usize,
        allows: Option<&dyn Fn(&str) -> bool>,
        corpus: Option<&CorpusStats>,
    ) -> Vec<LexicalHit> {
        let inner = self.shared.settled();
        let dictionary = self.shared.dictionary.read();
        let terms = query_terms(&dictionary, query);
        if terms.is_empty() || n == 0 {
            return Vec::new();
        }
        let params = self.options.bm25;
        let (stats, idfs) = inner.scoring(&terms, corpus);
        let avg = stats.avg_len();
        // Scores accumulate in this thread's dense scratch (one slot per document slot, every
        // term score > 0, so 0 means untouched), reset before it is returned.
        let mut scored: Vec<(f64, u32)> = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch { scores, touched } = &mut *scratch;
            if scores.len() < inner.lens.len() {
                scores.resize(inner.lens.len(), 0.0);
            }
            for (&(term, _), &idf) in terms.iter().zip(&idfs) {
                let postings = &inner.postings[term as usize];
                for &(slot, tf) in postings {
                    let len = inner.lens[slot as usize];
                    let score = &mut scores[slot as usize];
                    if *score == 0.0 {
                        touched.push(slot);
                    }
                    *score += bm25::term_score(params, idf, tf, len, avg);
                }
            }
            let scored = touched
                .iter()
                .map(|&slot| (std::mem::take(&mut scores[slot as usize]), slot))
                .filter(|&(_, slot)| {
                    allows.is_none_or(|f| inner.entity(slot).is_some_and(|e| f(e)))
                })
                .collect();
            touched.clear();
            scored
        });
        // The best n by score alone, and every document tied with the n-th: only those are
        // ordered by entity id (reading their documents).
        if scored.len() > n {
            scored.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
            let nth = scored[n - 1].0;
            let mut kept = n;
            for i in n..scored.len() {
                if scored[i].0 == nth {
                    scored.swap(kept, i);
                    kept += 1;
                }
            }
            scored.truncate(kept);
        }
        let mut ranked: Vec<(f64, &Arc<str>, u32)> = scored
            .into_iter()
            .filter_map(|(score, slot)| Some((score, inner.entity(slot)?, slot)))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked.truncate(n);
        ranked
            .into_iter()
            .map(|(score, entity, slot)| LexicalHit {
                entity_id: entity.clone(),
                score,
                matched: inner.matched(&dictionary, &terms, &idfs, slot, params, avg),
            })
            .collect()
    }

    /// The BM25 score of entity `id` for the analyzed `query` with `corpus` (as for
    /// [`Self::search`]), with its matched terms (`None`: it holds none of them, or has no
    /// document).
    pub fn score_of(
        &self,
        query: &[String],
        id: &str,
        corpus: Option<&CorpusStats>,
    ) -> Option<LexicalHit> {
        let inner = self.shared.settled();
        let dictionary = self.shared.dictionary.read();
        let slot = *inner.by_entity.get(id)?;
        let terms = query_terms(&dictionary, query);
        let (stats, idfs) = inner.scoring(&terms, corpus);
        let matched = inner.matched(
            &dictionary,
            &terms,
            &idfs,
            slot,
            self.options.bm25,
            stats.avg_len(),
        );
        if matched.is_empty() {
            return None;
        }
        Some(LexicalHit {
            entity_id: inner.docs[slot as usize].as_ref()?.entity.clone(),
            score: matched.iter().map(|(_, s)| s).sum(),
            matched,
        })
    }

    /// The statistics of the documents whose entity `holds` accepts, for the analyzed `query`
    /// (a ring host's share of a corpus: the documents of the token ranges it was assigned).
    pub fn corpus_stats(&self, query: &[String], holds: &dyn Fn(&str) -> bool) -> CorpusStats {
        let inner = self.shared.settled();
        let dictionary = self.shared.dictionary.read();
        let mut collection = CollectionStats {
            docs: 0,
            total_len: 0,
        };
        let held: Vec<bool> = inner
            .docs
            .iter()
            .map(|doc| match doc {
                Some(doc) if holds(&doc.entity) => {
                    collection.docs += 1;
                    collection.total_len += u64::from(doc.len);
                    true
                }
                _ => false,
            })
            .collect();
        let doc_freqs = query
            .iter()
            .map(|term| {
                dictionary.get(term).map_or(0, |t| {
                    inner.postings[t as usize]
                        .iter()
                        .filter(|(slot, _)| held[*slot as usize])
                        .count() as u64
                })
            })
            .collect();
        CorpusStats {
            collection,
            doc_freqs,
        }
    }

    /// Document frequency of an analyzed term (0: unknown).
    pub fn doc_freq(&self, term: &str) -> u64 {
        let inner = self.shared.settled();
        let dictionary = self.shared.dictionary.read();
        dictionary
            .get(term)
            .map_or(0, |t| inner.postings[t as usize].len() as u64)
    }
}

/// `docs` in entity order, each entity once: of an entity given twice, the later one.
fn by_entity_once(docs: impl Iterator<Item = (String, DocTerms)>) -> Vec<(String, DocTerms)> {
    let mut docs: Vec<(String, DocTerms)> = docs.collect();
    // Stable: of an entity given twice, the later comes second, and is the one kept.
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    docs
}

/// The documents of an index, [`EXPORTED_AT_ONCE`] slots at a time, in slot order (for
/// [`LexicalIndex::export`] and [`LexicalIndex::export_for_dump`]). Holds no lock between
/// slices.
struct ExportSlices<'a> {
    shared: &'a Shared,
    /// Each document's terms in term order (else in term-id order).
    term_order: bool,
    /// The dictionary's names read so far (it only grows: a prefix stays valid).
    names: Vec<Arc<str>>,
    /// The first slot not read yet.
    next: usize,
    done: bool,
}

/// A document as an export copies it under the lock: its terms by id, with their frequencies.
struct CopiedDoc {
    entity: Arc<str>,
    body_ts: u64,
    terms: Vec<(u32, u32)>,
}

impl<'a> ExportSlices<'a> {
    fn new(index: &'a LexicalIndex, term_order: bool) -> Self {
        Self {
            shared: &index.shared,
            term_order,
            names: Vec::new(),
            next: 0,
            done: false,
        }
    }
}

impl Iterator for ExportSlices<'_> {
    type Item = Vec<(String, DocTerms)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let slice: Vec<CopiedDoc> = {
            let inner = self.shared.settled();
            let end = self
                .next
                .saturating_add(EXPORTED_AT_ONCE)
                .min(inner.docs.len());
            let slice = inner.docs[self.next.min(end)..end]
                .iter()
                .flatten()
                .map(|doc| CopiedDoc {
                    entity: doc.entity.clone(),
                    body_ts: doc.body_ts,
                    terms: doc.terms.iter().map(|p| (p.term, p.tf)).collect(),
                })
                .collect();
            self.next = end;
            self.done = end >= inner.docs.len();
            slice
        };
        // Every term id read above is below the dictionary's length now.
        let dictionary = self.shared.dictionary.read();
        self.names
            .extend(dictionary.names[self.names.len()..].iter().cloned());
        drop(dictionary);
        let (names, term_order) = (&self.names, self.term_order);
        Some(
            slice
                .into_iter()
                .map(|doc| {
                    let mut terms: Vec<(&str, u32)> = doc
                        .terms
                        .into_iter()
                        .map(|(term, tf)| (&*names[term as usize], tf))
                        .collect();
                    if term_order {
                        terms.sort_unstable();
                    }
                    (doc.entity.to_string(), DocTerms::new(doc.body_ts, terms))
                })
                .collect(),
        )
    }
}

impl Inner {
    /// The entity of the document in `slot` (`None`: a free slot).
    fn entity(&self, slot: u32) -> Option<&Arc<str>> {
        Some(&self.docs.get(slot as usize)?.as_ref()?.entity)
    }

    /// Applies one committed change (see [`LexicalIndex::upsert_resolved`]).
    fn apply(&mut self, change: Change, dictionary: &RwLock<TermDictionary>) {
        match change {
            Change::Upsert(id, doc) => {
                let held = self.by_entity.get(&id).copied();
                let newer_held = held
                    .and_then(|slot| self.docs[slot as usize].as_ref())
                    .is_some_and(|d| d.body_ts > doc.body_ts());
                if newer_held {
                    return;
                }
                if doc.is_empty() {
                    self.remove(&id);
                    return;
                }
                self.insert(id, held, doc, dictionary);
            }
            Change::Remove(id) => {
                self.remove(&id);
            }
        }
    }

    /// The collection statistics and each of `terms`' idf a score uses: `corpus`'s (the
    /// frequency of a term at its first position in the query), or this index's own.
    fn scoring(
        &self,
        terms: &[(u32, usize)],
        corpus: Option<&CorpusStats>,
    ) -> (CollectionStats, Vec<f64>) {
        let own = CollectionStats {
            docs: self.live,
            total_len: self.total_len,
        };
        let stats = corpus.map_or(own, |c| c.collection);
        let idfs = terms
            .iter()
            .map(|&(term, at)| {
                let df = corpus
                    .and_then(|c| c.doc_freqs.get(at).copied())
                    .unwrap_or(self.postings[term as usize].len() as u64);
                bm25::idf(stats.docs, df)
            })
            .collect();
        (stats, idfs)
    }

    /// Each of `terms` (with their `idfs`) that document `slot` holds, with its contribution.
    fn matched(
        &self,
        dictionary: &TermDictionary,
        terms: &[(u32, usize)],
        idfs: &[f64],
        slot: u32,
        params: Bm25Params,
        avg: f64,
    ) -> Vec<(Arc<str>, f64)> {
        let Some(doc) = &self.docs[slot as usize] else {
            return Vec::new();
        };
        terms
            .iter()
            .zip(idfs)
            .filter_map(|(&(term, _), &idf)| {
                let at = doc.terms.binary_search_by_key(&term, |p| p.term).ok()?;
                let tf = doc.terms[at].tf;
                Some((
                    dictionary.names[term as usize].clone(),
                    bm25::term_score(params, idf, tf, doc.len, avg),
                ))
            })
            .collect()
    }

    /// The id of `term`, given one (with its empty postings) if `dictionary` has none.
    fn term_id(&mut self, dictionary: &mut TermDictionary, term: &str) -> u32 {
        if let Some(id) = dictionary.get(term) {
            return id;
        }
        self.postings.push(Vec::new());
        dictionary.add(term)
    }

    /// Indexes `doc` as `id`'s document (`held`: the slot of the one it has), its unresolved
    /// terms looked up in (or added to) `dictionary`. A document it replaces is updated in
    /// place: only the postings of terms whose frequency changed, that it lost or that it
    /// gained are touched, so a body applied again (a stream, a repair or a hint bringing what
    /// is already here) costs no posting change.
    fn insert(
        &mut self,
        id: Arc<str>,
        held: Option<u32>,
        doc: ResolvedDoc,
        dictionary: &RwLock<TermDictionary>,
    ) {
        let len = u32::try_from(doc.len()).unwrap_or(u32::MAX);
        let body_ts = doc.body_ts();
        let mut terms = doc.known;
        if !doc.unknown.is_empty() {
            let mut dictionary = dictionary.write();
            for (term, tf) in doc.unknown.terms() {
                let term = self.term_id(&mut dictionary, term);
                terms.push(Posted { term, tf, at: 0 });
            }
            drop(dictionary);
            terms.sort_unstable_by_key(|p| p.term);
        }
        let (slot, entity, old) = match held {
            Some(slot) => {
                let old = self.docs[slot as usize]
                    .take()
                    .expect("an entity's slot holds its document");
                self.live -= 1;
                self.total_len -= u64::from(old.len);
                (slot, old.entity, old.terms)
            }
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        self.docs.push(None);
                        self.lens.push(0);
                        u32::try_from(self.docs.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                self.by_entity.insert(id.clone(), slot);
                (slot, id, Vec::new())
            }
        };
        // Where this document's new entries go, one per term list, fetched all at once rather
        // than one cache miss after another as the entries are written.
        for posted in &terms {
            prefetch_end(&self.postings[posted.term as usize]);
        }
        // Both term lists are by term id: walk them together.
        let mut old = old.into_iter().peekable();
        for posted in &mut terms {
            while let Some(gone) = old.next_if(|o| o.term < posted.term) {
                self.unpost(gone);
            }
            let postings = &mut self.postings[posted.term as usize];
            match old.next_if(|o| o.term == posted.term) {
                Some(kept) => {
                    posted.at = kept.at;
                    postings[kept.at as usize].1 = posted.tf;
                }
                None => {
                    posted.at = u32::try_from(postings.len()).expect(
                        "a term's postings hold at most one entry per document slot, a u32",
                    );
                    postings.push((slot, posted.tf));
                }
            }
        }
        for gone in old {
            self.unpost(gone);
        }
        self.docs[slot as usize] = Some(Doc {
            entity,
            body_ts,
            len,
            terms,
        });
        self.lens[slot as usize] = len;
        self.live += 1;
        self.total_len += u64::from(len);
    }

    /// Takes a document's entry out of the postings of `posted.term` (the document itself is
    /// not in `docs` meanwhile): the list's last entry moves into its place.
    fn unpost(&mut self, posted: Posted) {
        let postings = &mut self.postings[posted.term as usize];
        postings.swap_remove(posted.at as usize);
        // The term's last entry took the freed place: its document learns where it is.
        if let Some(&(moved, _)) = postings.get(posted.at as usize) {
            let moved = self.docs[moved as usize]
                .as_mut()
                .expect("every posting names a document held");
            let i = moved
                .terms
                .binary_search_by_key(&posted.term, |p| p.term)
                .expect("a document lists every term it is posted under");
            moved.terms[i].at = posted.at;
        }
    }

    /// Removes `id`'s document; returns whether it had one.
    fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_entity.remove(id) else {
            return false;
        };
        let Some(doc) = self.docs[slot as usize].take() else {
            return false;
        };
        for posted in doc.terms {
            self.unpost(posted);
        }
        self.lens[slot as usize] = 0;
        self.free.push(slot);
        self.live -= 1;
        self.total_len -= u64::from(doc.len);
        true
    }
}

/// Asks the CPU to bring the end of `list`, where its next entry is written, into its cache (a
/// hint: nothing on other architectures).
fn prefetch_end<T>(list: &[T]) {
    let end = list.as_ptr().wrapping_add(list.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has, and never faults whatever
    // the address (here one past a list's last entry, or an empty list's dangling pointer).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(end.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = end;
}

/// The distinct known terms of `query`, in query order, with their first positions.
fn query_terms(dictionary: &TermDictionary, query: &[String]) -> Vec<(u32, usize)> {
    let mut terms: Vec<(u32, usize)> = Vec::new();
    for (at, term) in query.iter().enumerate() {
        if let Some(id) = dictionary.get(term)
            && !terms.iter().any(|(t, _)| *t == id)
        {
            terms.push((id, at));
        }
    }
    terms
}

/// Refuses a query text that analyzes to no term by the default analyzer (no searchable
/// word); its terms by that analyzer.
pub fn analyze_query(text: &str) -> Result<Vec<String>> {
    let terms = analyzer::analyze(text);
    if terms.is_empty() {
        return Err(Error::invalid(
            "text has no searchable word (only spaces or punctuation)",
        ));
    }
    Ok(terms)
}
