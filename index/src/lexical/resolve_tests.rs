//! Documents analyzed straight into term ids ([`LexicalIndex::resolve_body`]) against the
//! documents the index makes otherwise ([`LexicalOptions::document`], then
//! [`LexicalIndex::resolve`]).

use std::collections::BTreeMap;

use allidb_storage::cell::{EntityBody, TextChunk};
use proptest::prelude::*;

use super::analyzer::{Stemming, StopWords};
use super::resolve::TermDictionary;
use super::*;

fn body(texts: &[String], entity_type: &str) -> EntityBody {
    EntityBody {
        entity_type: entity_type.to_owned(),
        chunks: texts
            .iter()
            .enumerate()
            .map(|(i, t)| TextChunk {
                chunk_id: format!("c{i}"),
                text: t.clone(),
                metadata: BTreeMap::new(),
                sources: Vec::new(),
            })
            .collect(),
        ..EntityBody::default()
    }
}

/// What a resolved document holds: its length, its known terms (id, frequency) by id, its
/// unknown terms, and the whole document.
fn parts(doc: &ResolvedDoc) -> (u64, Vec<(u32, u32)>, DocTerms, DocTerms) {
    let known = doc.known.iter().map(|p| (p.term, p.tf)).collect();
    (doc.len(), known, doc.unknown.clone(), doc.doc())
}

proptest! {
    /// Whatever the texts, the options and the terms the dictionary holds already, a body
    /// analyzed straight into ids is the document analyzed then resolved; applied (to its own
    /// index or another) it indexes as that document does.
    #[test]
    fn a_body_resolved_as_analyzed_is_its_document_resolved(
        seen in prop::collection::vec("[ -~àé]{0,40}", 0..4),
        texts in prop::collection::vec("[ -~\t\nàéßÆ東京ﬁ]{0,60}", 0..4),
        repeated in "[a-z._-]{0,20}",
        entity_type in "[a-zA-Z_.-]{0,12}",
        options in (any::<bool>(), any::<bool>(), any::<bool>()),
        ts in 1u64..1000,
    ) {
        let (index_type, stem, stop) = options;
        let options = LexicalOptions {
            analyzer: Analyzer {
                stemming: if stem { Stemming::English } else { Stemming::None },
                stop_words: if stop { StopWords::English } else { StopWords::None },
            },
            entity_type: index_type,
            ..LexicalOptions::default()
        };
        let index = LexicalIndex::new(options.clone()).unwrap();
        let plain = LexicalIndex::new(options.clone()).unwrap();
        for (i, text) in seen.iter().enumerate() {
            let seen = body(std::slice::from_ref(text), "");
            index.upsert_body(&format!("s{i}"), &seen, 1);
            plain.upsert_body(&format!("s{i}"), &seen, 1);
        }
        // Applied (a read applies what is queued): both resolutions see the same dictionary.
        prop_assert_eq!(index.stats(), plain.stats());
        let mut texts = texts;
        texts.push(format!("{repeated} {repeated} {repeated}"));
        let body = body(&texts, &entity_type);
        let doc = options.document(&body, ts);
        let analyzed = index.resolve_body(&body, ts);
        prop_assert_eq!(parts(&analyzed), parts(&index.resolve(doc.clone())));
        prop_assert_eq!(analyzed.body_ts(), ts);
        prop_assert_eq!(analyzed.doc(), doc.clone());
        // Resolved in another index, whose dictionary holds other terms.
        let other = LexicalIndex::new(options.clone()).unwrap();
        other.upsert_body("o", &EntityBody {
            entity_type: "other words".to_owned(),
            ..body.clone()
        }, 1);
        let elsewhere = other.resolve_body(&body, ts);
        prop_assert_eq!(elsewhere.doc(), doc.clone());
        index.upsert_resolved("a", analyzed);
        index.upsert_resolved("b", elsewhere);
        plain.upsert("a", doc.clone());
        plain.upsert("b", doc);
        prop_assert_eq!(index.export(), plain.export());
        prop_assert_eq!(index.stats(), plain.stats());
    }
}

#[test]
fn an_index_that_is_off_resolves_nothing() {
    let off = LexicalIndex::new(LexicalOptions {
        enabled: false,
        ..LexicalOptions::default()
    })
    .unwrap();
    let doc = off.resolve_body(&body(&["left-pad pad".to_owned()], ""), 3);
    assert!(doc.is_empty());
    assert_eq!(doc.body_ts(), 3);
}

/// Terms that share their first 8 bytes, differ only in length or only past their 8th byte,
/// or are short: each has its own id, found again.
#[test]
fn the_dictionary_tells_terms_apart_past_their_first_8_bytes() {
    let terms = [
        "abcdefgh",
        "abcdefghi",
        "abcdefghj",
        "abcdefghij",
        "abcdefg",
        "abc",
        "ab",
        "b",
        "é",
        "abcdefgh-abcdefgh",
        "abcdefgh-abcdefgi",
    ];
    let mut dictionary = TermDictionary::default();
    for (i, term) in terms.iter().enumerate() {
        assert_eq!(dictionary.get(term), None, "{term} before it is added");
        assert_eq!(dictionary.add(term), i as u32);
    }
    for (i, term) in terms.iter().enumerate() {
        assert_eq!(dictionary.get(term), Some(i as u32), "{term}");
        assert_eq!(&*dictionary.names[i], *term);
    }
    for unknown in ["abcdefghk", "abcdefgh-", "a", "abcd", ""] {
        assert_eq!(dictionary.get(unknown), None, "{unknown}");
    }
}

/// Many terms with the same first 8 bytes: the table compares an entry with a term only when
/// part of their hashes match (1 in 128), so it takes many lookups for a term to meet entries of
/// others. Each term is found as itself; a term not held, of the same first 8 bytes and length
/// as those held or of those 8 bytes alone, is not found.
#[test]
fn terms_with_the_same_first_8_bytes_are_told_apart_by_the_rest() {
    let heads: Vec<String> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .map(|c| format!("abcdefg{c}"))
        .collect();
    let mut dictionary = TermDictionary::default();
    let mut id = 0;
    for head in &heads {
        for i in 0..400 {
            assert_eq!(dictionary.add(&format!("{head}{i:03}")), id);
            id += 1;
        }
    }
    let mut id = 0;
    for head in &heads {
        assert_eq!(dictionary.get(head), None, "{head}");
        for i in 0..400 {
            assert_eq!(dictionary.get(&format!("{head}{i:03}")), Some(id));
            assert_eq!(dictionary.get(&format!("{head}{:03}", i + 400)), None);
            id += 1;
        }
    }
    // A term of 8 bytes against longer terms beginning with it, in many tables (each with a
    // hash seed of its own).
    for _ in 0..100 {
        let mut dictionary = TermDictionary::default();
        for i in 0..2_000 {
            dictionary.add(&format!("abcdefgh{i}"));
        }
        assert_eq!(dictionary.get("abcdefgh"), None);
    }
}
