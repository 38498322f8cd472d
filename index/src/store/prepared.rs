//! A write batch decoded for the indexes on the thread that writes it, before it is queued for
//! the WAL ([`allidb_storage::CommitObserver::prepare`]): each cell's key and, for an entity
//! body, the decoded body and its analyzed lexical document, its terms looked up in the
//! tenant's term dictionary. This is the part of indexing that needs nothing but the batch
//! and that dictionary; the one WAL writer thread, which brings the indexes up to date with
//! every committed batch, is left only the updates themselves (docs/index.md "Freshness": a
//! text stream went at the speed of that thread analysing words).
//!
//! Invariants: a prepared op is exactly what the commit path would decode and analyze itself
//! (the same functions, the lexical options of the op's tenant, which its lexical index
//! uses); an op that does not decode is left unprepared, so the commit path meets the error
//! and reports it as before. Must never: read storage or any index state a commit changes
//! (the batch is not committed yet, and may never be); the term dictionary it reads only
//! grows, so what it finds there stays true.

use allidb_storage::batch::{BatchOp, Prepared, WriteBatch};
use allidb_storage::cell::EntityBody;
use allidb_storage::key::{CellKey, CellSuffix};
use rayon::prelude::*;

use crate::lexical::ResolvedDoc;
#[cfg(test)]
use crate::lexical::{DocTerms, LexicalSettings};

/// Batches of at least this many cells are prepared on every thread of the global rayon pool
/// (a stream's chunk piece, a large client batch); smaller ones on the writing thread alone.
const PARALLEL_MIN_OPS: usize = 64;

/// An entity body decoded, with its lexical document.
#[derive(Debug)]
pub struct PreparedBody {
    pub body: EntityBody,
    pub doc: ResolvedDoc,
}

/// The lexical document of a body for the index of a tenant, its terms looked up in that
/// index's dictionary when it has one (`(tenant, body, body timestamp)`).
pub type Analyze<'a> = &'a (dyn Fn(&str, &EntityBody, u64) -> ResolvedDoc + Sync);

/// Looks a document's terms up for the lexical index of a tenant (`(tenant, document)`).
#[cfg(test)]
pub type Resolve<'a> = &'a (dyn Fn(&str, DocTerms) -> ResolvedDoc + Sync);

/// One cell of the batch, decoded.
#[derive(Debug)]
pub struct PreparedOp {
    pub key: CellKey,
    /// The decoded body when the cell is an entity body with a value.
    pub body: Option<PreparedBody>,
}

/// The batch's cells, by position (`None`: not prepared, the commit path decodes it).
#[derive(Debug)]
pub struct PreparedBatch {
    ops: Vec<Option<PreparedOp>>,
}

impl PreparedBatch {
    /// Decodes `batch` and analyzes its bodies by `analyze` (see the module documentation).
    pub fn analyzed(batch: &WriteBatch, analyze: Analyze<'_>) -> Self {
        let prepare = |op: &BatchOp| prepare_op(op, analyze);
        let ops = match batch.len() >= PARALLEL_MIN_OPS {
            true => batch.ops().par_iter().map(prepare).collect(),
            false => batch.ops().iter().map(prepare).collect(),
        };
        Self { ops }
    }

    /// Decodes `batch` and analyzes its bodies with their tenants' options in `lexical`, each
    /// document's terms then looked up by `resolve`.
    #[cfg(test)]
    pub fn of(batch: &WriteBatch, lexical: &LexicalSettings, resolve: Resolve<'_>) -> Self {
        Self::analyzed(batch, &|tenant, body, ts| {
            resolve(tenant, lexical.of(tenant).document(body, ts))
        })
    }

    /// What [`allidb_storage::CommitObserver::committed`] gets back: this batch, if `prepared`
    /// is one.
    pub fn from_prepared(prepared: Option<Prepared>) -> Option<Self> {
        prepared.and_then(|p| p.downcast::<Self>().ok()).map(|p| *p)
    }

    /// Takes op `i`'s preparation (`None`: not prepared, or taken already).
    pub fn take(&mut self, i: usize) -> Option<PreparedOp> {
        self.ops.get_mut(i).and_then(Option::take)
    }
}

fn prepare_op(op: &BatchOp, analyze: Analyze<'_>) -> Option<PreparedOp> {
    let key = CellKey::decode(&op.key).ok()?;
    let body = match (&key.suffix, &op.value) {
        (CellSuffix::Body, Some(value)) => {
            let body = EntityBody::decode(value).ok()?;
            let doc = analyze(&key.tenant, &body, op.ts);
            Some(PreparedBody { body, doc })
        }
        _ => None,
    };
    Some(PreparedOp { key, body })
}

#[cfg(test)]
mod tests {
    use allidb_storage::cell::TextChunk;

    use super::*;
    use crate::lexical::LexicalOptions;
    use crate::lexical::analyzer::{Analyzer, StopWords};

    fn body(text: &str) -> EntityBody {
        EntityBody {
            entity_type: "doc".to_owned(),
            chunks: vec![TextChunk {
                chunk_id: "c0".to_owned(),
                text: text.to_owned(),
                ..TextChunk::default()
            }],
            ..EntityBody::default()
        }
    }

    /// A batch of `n` entities: a marker and a body each, every third body removed instead, and
    /// one cell whose key does not decode.
    fn batch(n: usize) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for i in 0..n {
            let id = format!("e{i}");
            batch.put(CellKey::marker("t", &id).encode(), 10, Vec::new());
            let key = CellKey::body("t", &id).encode();
            match i % 3 {
                2 => batch.delete(key, 11),
                _ => {
                    let text = format!("left-pad {i} Ärger und the left-pad");
                    let value = body(&text).encode().expect("a body encodes");
                    batch.put(key, 11 + i as u64, value);
                }
            }
        }
        batch.put(b"not a cell key".to_vec(), 12, Vec::new());
        batch
    }

    /// Every op is prepared as the commit path would decode and analyze it (with its
    /// tenant's analyzer), on the writing thread alone and on the rayon pool alike.
    #[test]
    fn a_prepared_batch_is_what_the_commit_path_would_decode_and_analyze() {
        let stop_words = LexicalOptions {
            analyzer: Analyzer {
                stop_words: StopWords::English,
                ..Analyzer::default()
            },
            ..LexicalOptions::default()
        };
        let lexical = LexicalSettings {
            default: LexicalOptions::default(),
            tenants: [("t".to_owned(), stop_words)].into(),
        };
        for n in [3, 2 * PARALLEL_MIN_OPS] {
            let batch = batch(n);
            let mut prepared =
                PreparedBatch::of(&batch, &lexical, &|_, doc| ResolvedDoc::unresolved(doc));
            for (i, op) in batch.ops().iter().enumerate() {
                let got = prepared.take(i);
                let Ok(key) = CellKey::decode(&op.key) else {
                    assert!(
                        got.is_none(),
                        "op {i}: a key that does not decode is left alone"
                    );
                    continue;
                };
                let got = got.unwrap_or_else(|| panic!("op {i} of {n} is prepared"));
                assert_eq!(got.key, key);
                let expected = match (&key.suffix, &op.value) {
                    (CellSuffix::Body, Some(value)) => {
                        let body = EntityBody::decode(value).expect("a body decodes");
                        let doc = lexical.of("t").document(&body, op.ts);
                        Some((body, doc))
                    }
                    _ => None,
                };
                let got = got.body.map(|b| (b.body, b.doc.doc().clone()));
                if let Some((_, doc)) = &got {
                    assert!(doc.terms().any(|(t, n)| t == "left-pad" && n == 2));
                    assert!(doc.terms().any(|(t, _)| t == "arger"));
                    assert!(!doc.terms().any(|(t, _)| t == "the"));
                }
                assert_eq!(got, expected, "op {i} of {n}");
                assert!(prepared.take(i).is_none(), "an op is taken once");
            }
        }
    }

    /// What storage hands back is this batch only when it is one.
    #[test]
    fn only_a_prepared_batch_comes_back_as_one() {
        let batch = batch(1);
        let unresolved = |_: &str, doc| ResolvedDoc::unresolved(doc);
        let prepared: Prepared = Box::new(PreparedBatch::of(
            &batch,
            &LexicalSettings::default(),
            &unresolved,
        ));
        assert!(PreparedBatch::from_prepared(Some(prepared)).is_some());
        assert!(PreparedBatch::from_prepared(Some(Box::new(7u32))).is_none());
        assert!(PreparedBatch::from_prepared(None).is_none());
    }
}
