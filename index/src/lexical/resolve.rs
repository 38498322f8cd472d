//! A lexical index's term dictionary (term -> id, id -> term) and the documents whose terms
//! were looked up in it before their write ([`ResolvedDoc`]): the part of indexing a document
//! that the threads preparing a batch do, so the one thread applying committed batches does not
//! hash terms (docs/index.md "Lexical index").
//!
//! [`LexicalIndex::resolve_body`] analyzes a body straight into term ids: each term the
//! analyzer emits is looked up as it comes (one read lock of the dictionary per document), the
//! ids are counted by sorting them, and only the terms the dictionary does not hold are kept
//! as text. It makes what `LexicalIndex::resolve` (the tests' reference) makes of [`LexicalOptions::document`]'s
//! document (tested), without building that document.
//!
//! Invariants: the dictionary only grows, so an id found in it stays its term's; a
//! [`ResolvedDoc`] holds each of its terms once, either by id (known) or as text (unknown),
//! and its ids are those of the dictionary it names, which it keeps alive (a document applied
//! to another index is looked up again there by its terms' names). Must never: change or take
//! back an id.

use std::hash::BuildHasher;
use std::sync::Arc;

use allidb_storage::cell::EntityBody;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use parking_lot::RwLock;

use super::document::TermBuffer;
use super::{DocTerms, LexicalIndex, Posted};

/// The terms an index has seen, each with its id: the index in `names` and in the postings.
/// Only grows (see the module documentation).
///
/// A lookup compares a term with an entry of the table itself (its first 8 bytes and its
/// length) and reads the entry's name only for a term longer than 8 bytes: comparing with the
/// name, a string elsewhere in memory, was most of a lookup's time (docs/benchmarks.md, issue
/// 38 session 45).
#[derive(Default)]
pub(super) struct TermDictionary {
    /// Every term once, by the hash of its bytes.
    table: HashTable<TermEntry>,
    hasher: RandomState,
    pub(super) names: Vec<Arc<str>>,
}

/// A term in a [`TermDictionary`]'s table.
#[derive(Clone, Copy)]
struct TermEntry {
    /// Its first 8 bytes (zero-padded).
    head: u64,
    len: u32,
    id: u32,
}

impl TermEntry {
    /// The entry `term` would have, with id `id`.
    fn of(term: &str, id: u32) -> Self {
        let bytes = term.as_bytes();
        let head = match bytes.first_chunk::<8>() {
            Some(first) => u64::from_le_bytes(*first),
            None => bytes
                .iter()
                .rev()
                .fold(0, |head, &b| (head << 8) | u64::from(b)),
        };
        Self {
            head,
            // Terms are at most `MAX_TERM_BYTES` long; a longer one compares by its name.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            id,
        }
    }
}

impl std::fmt::Debug for TermDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermDictionary")
            .field("terms", &self.names.len())
            .finish()
    }
}

impl TermDictionary {
    /// The id of `term` (`None`: unknown).
    pub(super) fn get(&self, term: &str) -> Option<u32> {
        let key = TermEntry::of(term, 0);
        let names = &self.names;
        self.table
            .find(self.hasher.hash_one(term.as_bytes()), |e| {
                e.head == key.head
                    && e.len == key.len
                    && (term.len() <= 8
                        || names[e.id as usize].as_bytes()[8..] == term.as_bytes()[8..])
            })
            .map(|e| e.id)
    }

    /// Adds `term` (not held yet) with the next id; returns it.
    pub(super) fn add(&mut self, term: &str) -> u32 {
        // Term ids index vectors: at most u32::MAX distinct terms per tenant.
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let Self {
            table,
            hasher,
            names,
        } = self;
        table.insert_unique(
            hasher.hash_one(term.as_bytes()),
            TermEntry::of(term, id),
            |e| hasher.hash_one(names[e.id as usize].as_bytes()),
        );
        names.push(Arc::from(term));
        id
    }
}

/// A dictionary as an index and the documents resolved in it share it.
pub(super) type SharedDictionary = Arc<RwLock<TermDictionary>>;

/// A document whose terms were looked up in one index's dictionary before its write
/// ([`LexicalIndex::resolve_body`]): the ids of the terms the
/// dictionary held, by id, and the terms it did not hold yet (given ids when the document is
/// applied).
pub struct ResolvedDoc {
    /// Its length (terms, repeats counted).
    len: u64,
    /// The known terms (id, frequency; `at` unset), by id.
    pub(super) known: Vec<Posted>,
    /// The terms that were not in the dictionary, and the body timestamp.
    pub(super) unknown: DocTerms,
    /// The dictionary that gave `known` its ids (`None`: none was asked, `known` is empty).
    dictionary: Option<SharedDictionary>,
}

impl std::fmt::Debug for ResolvedDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedDoc")
            .field("len", &self.len)
            .field("known", &self.known)
            .field("unknown", &self.unknown)
            .field("resolved", &self.dictionary.is_some())
            .finish()
    }
}

impl ResolvedDoc {
    /// `doc`, its terms not looked up: every one is resolved when it is applied.
    pub fn unresolved(doc: DocTerms) -> Self {
        Self {
            len: doc.len(),
            known: Vec::new(),
            unknown: doc,
            dictionary: None,
        }
    }

    /// The timestamp of the body it was analyzed from.
    pub(super) fn body_ts(&self) -> u64 {
        self.unknown.body_ts
    }

    /// Its length (terms, repeats counted).
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// True when it has no term.
    pub(super) fn is_empty(&self) -> bool {
        self.known.is_empty() && self.unknown.is_empty()
    }

    /// The analyzed document: every term with its frequency, in term order (the known ones
    /// named by the dictionary that resolved them).
    pub(crate) fn doc(&self) -> DocTerms {
        let Some(dictionary) = &self.dictionary else {
            return self.unknown.clone();
        };
        let dictionary = dictionary.read();
        let mut terms: Vec<(&str, u32)> = self
            .known
            .iter()
            .map(|p| (&*dictionary.names[p.term as usize], p.tf))
            .chain(self.unknown.terms())
            .collect();
        terms.sort_unstable();
        DocTerms::new(self.body_ts(), terms)
    }

    /// This document resolved in `dictionary`: itself when it was, else its terms to be looked
    /// up there when applied (it was resolved in another index, e.g. of a tenant dropped and
    /// created again since).
    pub(super) fn for_dictionary(self, dictionary: &SharedDictionary) -> Self {
        match &self.dictionary {
            Some(own) if Arc::ptr_eq(own, dictionary) => self,
            Some(_) => Self::unresolved(self.doc()),
            None => self,
        }
    }
}

thread_local! {
    /// Per-thread ids of the known terms of the document [`LexicalIndex::resolve_body`] makes.
    static TERM_IDS: std::cell::RefCell<Vec<u32>> = std::cell::RefCell::default();
}

impl LexicalIndex {
    /// Looks `doc`'s terms up in this index's dictionary, for [`Self::upsert_resolved`]
    /// later: the tests' reference for [`Self::resolve_body`], which the store uses.
    #[cfg(test)]
    pub(crate) fn resolve(&self, doc: DocTerms) -> ResolvedDoc {
        if !self.options.enabled || doc.is_empty() {
            return ResolvedDoc::unresolved(doc);
        }
        let dictionary = self.shared.dictionary.read();
        let mut known = Vec::with_capacity(doc.distinct_terms());
        let mut unknown = Vec::new();
        for (term, tf) in doc.terms() {
            match dictionary.get(term) {
                Some(term) => known.push(Posted { term, tf, at: 0 }),
                None => unknown.push((term, tf)),
            }
        }
        drop(dictionary);
        known.sort_unstable_by_key(|p| p.term);
        ResolvedDoc {
            len: doc.len(),
            known,
            unknown: DocTerms::new(doc.body_ts, unknown),
            dictionary: Some(self.shared.dictionary.clone()),
        }
    }

    /// The document this index makes of `body` (written at `body_ts`), its terms looked up in
    /// this index's dictionary as they are analyzed: what `Self::resolve` makes of
    /// `self.options().document(body, body_ts)`, without that document (see the module
    /// documentation).
    pub fn resolve_body(&self, body: &EntityBody, body_ts: u64) -> ResolvedDoc {
        if !self.options.enabled {
            return ResolvedDoc::unresolved(self.options.document(body, body_ts));
        }
        TERM_IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            ids.clear();
            let mut len = 0u64;
            let unknown = TermBuffer::with(|unknown| {
                let dictionary = self.shared.dictionary.read();
                self.options.for_each_term(body, &mut |term| {
                    len += 1;
                    match dictionary.get(term) {
                        Some(id) => ids.push(id),
                        None => unknown.push(term),
                    }
                });
                drop(dictionary);
                unknown.counted(body_ts)
            });
            ids.sort_unstable();
            let mut known: Vec<Posted> = Vec::with_capacity(ids.len());
            for &term in ids.iter() {
                match known.last_mut() {
                    Some(last) if last.term == term => last.tf += 1,
                    _ => known.push(Posted { term, tf: 1, at: 0 }),
                }
            }
            ResolvedDoc {
                len,
                known,
                unknown,
                dictionary: Some(self.shared.dictionary.clone()),
            }
        })
    }
}
