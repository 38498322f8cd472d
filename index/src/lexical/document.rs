//! What the lexical index makes of an entity: [`LexicalOptions`] (which texts of a body are
//! read, how they are analyzed, how they are scored) and the analyzed document, [`DocTerms`]
//! (each distinct term once, with its frequency, in term order).
//!
//! Invariant: a [`DocTerms`] holds each term at most once, in the order it was given (term
//! order when made by [`LexicalOptions::document`]). Must never: look at an index (this is
//! analysis only, done on the threads that prepare a batch).

use allidb_storage::cell::{AttributeValue, EntityBody};

use super::{Analyzer, Bm25Params, analyze_query};
use crate::error::{Error, Result};

/// What one tenant's lexical index reads of an entity, how it analyzes it and how it scores.
#[derive(Clone, Debug, PartialEq)]
pub struct LexicalOptions {
    /// Whether the tenant has a lexical index at all (default true). Off, no text is analyzed
    /// or held, and a text query is refused `FAILED_PRECONDITION`.
    pub enabled: bool,
    /// BM25 parameters (k1 = 1.2, b = 0.75).
    pub bm25: Bm25Params,
    /// The optional analysis steps (stemming, stop words; default none).
    pub analyzer: Analyzer,
    /// Index the entity's `entity_type` as text too (default false).
    pub entity_type: bool,
    /// Attributes whose string values are indexed as text too (default none).
    pub attributes: Vec<String>,
}

impl Default for LexicalOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            bm25: Bm25Params::default(),
            analyzer: Analyzer::default(),
            entity_type: false,
            attributes: Vec::new(),
        }
    }
}

impl LexicalOptions {
    /// Checks the BM25 parameters.
    pub fn validate(&self) -> Result<()> {
        self.bm25.validate()
    }

    /// Calls `f` with each text of `body` this index analyzes, in order: every chunk, then the
    /// entity type and the chosen attributes when configured.
    fn for_each_text<'b>(&self, body: &'b EntityBody, mut f: impl FnMut(&'b str)) {
        for chunk in &body.chunks {
            f(&chunk.text);
        }
        if self.entity_type {
            f(&body.entity_type);
        }
        for key in &self.attributes {
            if let Some(value) = body.attributes.get(key) {
                f(value);
            }
            if let Some(AttributeValue::String(value)) = body.typed_attributes.get(key) {
                f(value);
            }
        }
    }

    /// Calls `emit` with each term of `body` this index analyzes, in text order (a term may
    /// repeat): the terms of its texts ([`Self::for_each_text`]).
    pub(super) fn for_each_term(&self, body: &EntityBody, emit: &mut dyn FnMut(&str)) {
        self.for_each_text(body, |text| self.analyzer.for_each_term(text, emit));
    }

    /// The document this index makes of `body` (written at `body_ts`): the terms of its texts
    /// ([`Self::for_each_text`]) counted. The terms are gathered in one reused buffer per
    /// thread, so a document costs two allocations, whatever its terms.
    pub fn document(&self, body: &EntityBody, body_ts: u64) -> DocTerms {
        if !self.enabled {
            return DocTerms::new(body_ts, std::iter::empty::<(&str, u32)>());
        }
        TermBuffer::with(|buffer| {
            self.for_each_term(body, &mut |term| buffer.push(term));
            buffer.counted(body_ts)
        })
    }

    /// The terms of a query `text` for this index: refused as [`analyze_query`] refuses it,
    /// then analyzed by this index's analyzer, and refused when every word is a stop word.
    pub fn query_terms(&self, text: &str) -> Result<Vec<String>> {
        let terms = analyze_query(text)?;
        if !self.enabled {
            return Err(Error::FailedPrecondition(
                "text: this tenant's lexical index is off (index.lexical_enabled = false, or \
                 \"enabled:false\" in its index.lexical_tenants item)"
                    .to_owned(),
            ));
        }
        if self.analyzer == Analyzer::default() {
            return Ok(terms);
        }
        let terms = self.analyzer.analyze(text);
        if terms.is_empty() {
            return Err(Error::invalid(
                "text has no searchable word (every word is a stop word)",
            ));
        }
        Ok(terms)
    }
}

/// One analyzed document: its distinct terms with their frequencies, held in one buffer (a
/// document costs two allocations, not one per term: it is made on the threads that prepare a
/// batch and dropped on the commit thread, docs/benchmarks.md issue 34).
///
/// Its bincode encoding is that of `(body_ts: u64, terms: Vec<(String, u32)>)`, the format of
/// the dumps' lexical records (`store/persist.rs`), unchanged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocTerms {
    /// The body timestamp it was analyzed from (older bodies never replace it).
    pub body_ts: u64,
    /// The terms one after the other.
    text: String,
    /// Per term, in order: where it ends in `text`, and how often it occurs.
    ends: Vec<(usize, u32)>,
}

impl DocTerms {
    /// A document of `terms`, distinct, each with its frequency, in the order given (term
    /// order, as [`LexicalOptions::document`] and [`LexicalIndex::export`] give them).
    pub fn new<S: AsRef<str>>(body_ts: u64, terms: impl IntoIterator<Item = (S, u32)>) -> Self {
        let mut doc = Self {
            body_ts,
            ..Self::default()
        };
        for (term, n) in terms {
            doc.push(term.as_ref(), n);
        }
        doc
    }

    fn push(&mut self, term: &str, n: u32) {
        self.text.push_str(term);
        self.ends.push((self.text.len(), n));
    }

    /// The last term and its frequency.
    fn last_mut(&mut self) -> Option<(&str, &mut u32)> {
        let start = match self.ends.len() {
            0 | 1 => 0,
            len => self.ends[len - 2].0,
        };
        let (end, n) = self.ends.last_mut()?;
        Some((&self.text[start..*end], n))
    }

    /// Its distinct terms with their frequencies, in order.
    pub fn terms(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(end, _)| *end));
        starts
            .zip(&self.ends)
            .map(|(start, &(end, n))| (&self.text[start..end], n))
    }

    /// The document length (number of terms, repeats counted).
    pub fn len(&self) -> u64 {
        self.ends.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// The number of distinct terms.
    #[cfg(test)]
    pub(super) fn distinct_terms(&self) -> usize {
        self.ends.len()
    }

    /// True when it has no term.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl bincode::Encode for DocTerms {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.body_ts.encode(encoder)?;
        // A `Vec`'s length, as bincode writes it.
        (self.ends.len() as u64).encode(encoder)?;
        for (term, n) in self.terms() {
            term.encode(encoder)?;
            n.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context> bincode::Decode<Context> for DocTerms {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let body_ts = u64::decode(decoder)?;
        let terms = Vec::<(String, u32)>::decode(decoder)?;
        Ok(Self::new(body_ts, terms))
    }
}

bincode::impl_borrow_decode!(DocTerms);

/// Per-thread buffer of terms being counted into a [`DocTerms`] ([`LexicalOptions::document`],
/// and the terms a dictionary did not hold in `LexicalIndex::resolve_body`): the terms one after
/// the other, and where each one is.
#[derive(Default)]
pub(super) struct TermBuffer {
    text: String,
    spans: Vec<TermSpan>,
}

/// A term in a [`TermBuffer`]: its place, and its first 8 bytes as a big-endian number
/// (zero-padded), which orders two terms as their bytes do whenever the two numbers differ, so
/// sorting compares the bytes only of terms that share their first 8.
struct TermSpan {
    prefix: u64,
    at: usize,
    len: usize,
}

impl TermSpan {
    fn new(at: usize, term: &str) -> Self {
        let mut prefix = [0u8; 8];
        let head = &term.as_bytes()[..term.len().min(8)];
        prefix[..head.len()].copy_from_slice(head);
        Self {
            prefix: u64::from_be_bytes(prefix),
            at,
            len: term.len(),
        }
    }
}

impl TermBuffer {
    /// Most bytes of terms a thread keeps between documents (a larger document's buffer is
    /// given back).
    const KEPT_BYTES: usize = 1 << 20;

    /// Calls `f` with this thread's buffer, empty.
    pub(super) fn with<T>(f: impl FnOnce(&mut TermBuffer) -> T) -> T {
        TERM_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.text.clear();
            buffer.spans.clear();
            let made = f(&mut buffer);
            if buffer.text.capacity() > Self::KEPT_BYTES {
                *buffer = Self::default();
            }
            made
        })
    }

    /// Adds an occurrence of `term`.
    pub(super) fn push(&mut self, term: &str) {
        self.spans.push(TermSpan::new(self.text.len(), term));
        self.text.push_str(term);
    }

    /// The terms added, each once with its count, in term order.
    pub(super) fn counted(&mut self, body_ts: u64) -> DocTerms {
        let TermBuffer { text, spans } = self;
        let term = |span: &TermSpan| &text[span.at..span.at + span.len];
        spans.sort_unstable_by(|a, b| a.prefix.cmp(&b.prefix).then_with(|| term(a).cmp(term(b))));
        let mut doc = DocTerms {
            body_ts,
            text: String::with_capacity(text.len()),
            ends: Vec::with_capacity(spans.len()),
        };
        for span in spans.iter() {
            match doc.last_mut() {
                Some((last, n)) if last == term(span) => *n += 1,
                _ => doc.push(term(span), 1),
            }
        }
        doc
    }
}

thread_local! {
    static TERM_BUFFER: std::cell::RefCell<TermBuffer> = std::cell::RefCell::default();
}
