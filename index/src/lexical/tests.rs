//! The lexical index against a naive BM25 written independently here (the formula as printed
//! in docs/index.md, recomputed from the raw documents), through updates and removals.

use std::collections::BTreeMap;

use allidb_storage::cell::{EntityBody, TextChunk};
use proptest::prelude::*;

use super::*;

/// Naive Lucene BM25 of every document for `query` (distinct terms), from the documents'
/// token lists: no index, statistics recounted from scratch.
fn reference(docs: &BTreeMap<String, Vec<String>>, query: &[String]) -> BTreeMap<String, f64> {
    let (k1, b) = (1.2f64, 0.75f64);
    let live: Vec<(&String, &Vec<String>)> = docs.iter().filter(|(_, t)| !t.is_empty()).collect();
    let n = live.len() as f64;
    let avgdl = live.iter().map(|(_, t)| t.len() as f64).sum::<f64>() / n;
    let mut distinct: Vec<&String> = Vec::new();
    for q in query {
        if !distinct.contains(&q) {
            distinct.push(q);
        }
    }
    let mut scores = BTreeMap::new();
    for (id, tokens) in &live {
        let mut score = 0.0;
        let mut matched = false;
        for q in &distinct {
            let tf = tokens.iter().filter(|t| t == q).count() as f64;
            if tf == 0.0 {
                continue;
            }
            matched = true;
            let df = live.iter().filter(|(_, t)| t.contains(q)).count() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            score += idf * tf / (tf + k1 * (1.0 - b + b * tokens.len() as f64 / avgdl));
        }
        if matched {
            scores.insert((*id).clone(), score);
        }
    }
    scores
}

fn body(texts: &[&str]) -> EntityBody {
    EntityBody {
        chunks: texts
            .iter()
            .enumerate()
            .map(|(i, t)| TextChunk {
                chunk_id: format!("c{i}"),
                text: (*t).to_owned(),
                metadata: BTreeMap::new(),
                sources: Vec::new(),
            })
            .collect(),
        ..EntityBody::default()
    }
}

fn check(index: &LexicalIndex, docs: &BTreeMap<String, Vec<String>>, query: &str) {
    let q = analyzer::analyze(query);
    let want = reference(docs, &q);
    let got = index.search(&q, usize::MAX, None, None);
    assert_eq!(
        got.len(),
        want.len(),
        "query {query:?}: {got:?} vs {want:?}"
    );
    for hit in &got {
        let expected = want[&*hit.entity_id];
        assert!(
            (hit.score - expected).abs() < 1e-4,
            "query {query:?}, {}: {} vs {expected}",
            hit.entity_id,
            hit.score
        );
        let parts: f64 = hit.matched.iter().map(|(_, s)| s).sum();
        assert!((parts - hit.score).abs() < 1e-9);
        let single = index
            .score_of(&q, &hit.entity_id, None)
            .expect("a matching document");
        assert!((single.score - hit.score).abs() < 1e-12);
    }
    for pair in got.windows(2) {
        assert!(
            pair[0].score > pair[1].score
                || (pair[0].score == pair[1].score && pair[0].entity_id < pair[1].entity_id)
        );
    }
    // The best n are the first n of the whole order, ties at the n-th place included, with
    // and without an allow-list.
    let even = |id: &str| id.bytes().last().is_some_and(|b| b.is_multiple_of(2));
    let allowed: Vec<&LexicalHit> = got.iter().filter(|h| even(&h.entity_id)).collect();
    for n in 1..=got.len() {
        assert_eq!(
            index.search(&q, n, None, None),
            got[..n],
            "query {query:?}, n {n}"
        );
        let filtered = index.search(&q, n, Some(&even), None);
        let want: Vec<&LexicalHit> = allowed.iter().take(n).copied().collect();
        assert_eq!(
            filtered.iter().collect::<Vec<_>>(),
            want,
            "query {query:?}, n {n}"
        );
    }
}

#[test]
fn scores_match_the_reference_on_a_small_corpus() {
    let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
    let texts = [
        ("left-pad", "left-pad: String left pad"),
        (
            "pad-right",
            "pad-right: pad a string on the right, like left-pad but right",
        ),
        ("leftpad", "leftpad: the left pad that broke the internet"),
        ("lodash", "lodash: Lodash modular utilities."),
        ("empty", "  ...  "),
    ];
    let mut docs = BTreeMap::new();
    for (i, (id, text)) in texts.iter().enumerate() {
        index.upsert_body(id, &body(&[text]), i as u64);
        docs.insert(id.to_string(), analyzer::analyze(text));
    }
    assert_eq!(index.len(), 4, "a document without terms is not held");
    for q in [
        "left-pad",
        "left pad",
        "pad",
        "string",
        "lodash utilities",
        "nothing",
        "right right",
    ] {
        check(&index, &docs, q);
    }
    let hits = index.search(&analyzer::analyze("left-pad"), 10, None, None);
    assert_eq!(&*hits[0].entity_id, "left-pad");
    let matched: Vec<&str> = hits[0].matched.iter().map(|(t, _)| &**t).collect();
    assert_eq!(matched, ["left-pad", "left", "pad"]);
    let only_lodash = |id: &str| id == "lodash";
    assert!(
        index
            .search(&analyzer::analyze("pad"), 10, Some(&only_lodash), None)
            .is_empty()
    );
}

#[test]
fn older_bodies_never_replace_newer_and_removal_updates_statistics() {
    let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
    index.upsert_body("a", &body(&["alpha beta"]), 10);
    index.upsert_body("a", &body(&["gamma"]), 5);
    assert_eq!(index.doc_freq("alpha"), 1);
    assert_eq!(index.doc_freq("gamma"), 0);
    index.upsert_body("b", &body(&["alpha", "delta delta"]), 1);
    assert_eq!(
        index.stats(),
        CollectionStats {
            docs: 2,
            total_len: 5
        }
    );
    index.remove("a");
    assert_eq!(
        index.stats(),
        CollectionStats {
            docs: 1,
            total_len: 3
        }
    );
    assert_eq!(index.doc_freq("alpha"), 1);
    index.upsert_body("b", &body(&[]), 2);
    assert!(index.is_empty());
    assert!(
        index
            .search(&analyzer::analyze("alpha"), 10, None, None)
            .is_empty()
    );
}

#[test]
fn entity_type_and_chosen_attributes_are_indexed_when_configured() {
    let options = LexicalOptions {
        entity_type: true,
        attributes: vec!["title".into()],
        ..LexicalOptions::default()
    };
    let index = LexicalIndex::new(options).unwrap();
    let mut b = body(&["chunk text"]);
    b.entity_type = "Article".into();
    b.attributes.insert("title".into(), "Rust-Lang".into());
    b.attributes.insert("other".into(), "hidden".into());
    index.upsert_body("x", &b, 1);
    for q in ["article", "rust-lang", "lang", "chunk"] {
        assert_eq!(
            index.search(&analyzer::analyze(q), 10, None, None).len(),
            1,
            "{q}"
        );
    }
    assert!(
        index
            .search(&analyzer::analyze("hidden"), 10, None, None)
            .is_empty()
    );
    assert!(
        LexicalIndex::new(LexicalOptions {
            bm25: Bm25Params { k1: -1.0, b: 0.75 },
            ..LexicalOptions::default()
        })
        .is_err()
    );
}

#[test]
fn an_index_that_is_off_holds_nothing_and_refuses_text_queries() {
    let off = LexicalOptions {
        enabled: false,
        ..LexicalOptions::default()
    };
    let b = body(&["alpha beta"]);
    assert!(off.document(&b, 1).is_empty());
    let index = LexicalIndex::new(off.clone()).unwrap();
    index.upsert_body("x", &b, 1);
    index.upsert("y", LexicalOptions::default().document(&b, 1));
    assert!(index.is_empty());
    assert!(index.export().is_empty());
    let error = off.query_terms("alpha").unwrap_err();
    assert!(
        matches!(&error, crate::Error::FailedPrecondition(m) if m.contains("index.lexical_enabled")),
        "{error:?}"
    );
    // A malformed text is still named as such first.
    assert!(matches!(
        off.query_terms("   "),
        Err(crate::Error::InvalidArgument(_))
    ));
}

/// Changes are applied by the applier thread without any read asking for them, in the order
/// they were queued: a writer thread rewriting and removing documents while readers search
/// ends with the index a single thread applying the same changes in order gets; reads in
/// between never see more documents than there are entities.
#[test]
fn queued_changes_are_applied_in_order_by_the_applier_and_seen_by_reads() {
    let index = std::sync::Arc::new(LexicalIndex::new(LexicalOptions::default()).unwrap());
    const TEXTS: [&str; 4] = [
        "left-pad string",
        "json parse fast",
        "react hook api",
        "   ",
    ];
    let step = |i: usize| {
        (
            format!("e{}", i % 37),
            TEXTS[i % TEXTS.len()],
            i.is_multiple_of(11),
        )
    };
    let writer = {
        let index = index.clone();
        std::thread::spawn(move || {
            for i in 0..20_000 {
                let (id, text, delete) = step(i);
                match delete {
                    true => index.remove(&id),
                    false => index.upsert_body(&id, &body(&[text]), i as u64),
                }
            }
        })
    };
    let mut searches = 0;
    while !writer.is_finished() {
        assert!(index.len() <= 37);
        let hits = index.search(&analyzer::analyze("pad json"), 50, None, None);
        assert!(hits.len() <= 37);
        searches += 1;
    }
    writer.join().unwrap();
    assert!(searches > 0);
    // The applier empties the queue on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !index.shared.queue.lock().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the applier left changes queued"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let expected = LexicalIndex::new(LexicalOptions::default()).unwrap();
    for i in 0..20_000 {
        let (id, text, delete) = step(i);
        let mut inner = expected.shared.inner.write();
        match delete {
            true => inner.apply(Change::Remove(id.into()), &expected.shared.dictionary),
            false => {
                let doc = ResolvedDoc::unresolved(
                    LexicalOptions::default().document(&body(&[text]), i as u64),
                );
                inner.apply(Change::Upsert(id.into(), doc), &expected.shared.dictionary);
            }
        }
    }
    assert_eq!(index.export(), expected.export());
    assert_eq!(index.stats(), expected.stats());
}

const WORDS: [&str; 12] = [
    "left-pad", "pad", "left", "string", "json", "parse", "fast", "react", "hook", "api", "x_y",
    "v1.2",
];

proptest! {
    /// Random writes, rewrites and removals: every term's document frequency and every
    /// query's scores equal the reference's on the final documents (scores within 1e-4).
    #[test]
    fn incremental_updates_score_as_the_reference(
        ops in prop::collection::vec((0usize..12, prop::collection::vec(0usize..12, 0..8), any::<bool>()), 1..60),
        query in prop::collection::vec(0usize..12, 1..4),
    ) {
        let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
        let mut docs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (ts, (entity, words, delete)) in ops.into_iter().enumerate() {
            let id = format!("e{entity}");
            if delete {
                index.remove(&id);
                docs.remove(&id);
            } else {
                let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
                let text = text.join(" ");
                index.upsert_body(&id, &body(&[&text]), ts as u64);
                docs.insert(id, analyzer::analyze(&text));
            }
        }
        let live = docs.values().filter(|t| !t.is_empty()).count();
        prop_assert_eq!(index.len(), live);
        // Every term's postings hold each live document that has it, once.
        for term in WORDS.iter().flat_map(|w| analyzer::analyze(w)) {
            let holding = docs.values().filter(|t| t.contains(&term)).count() as u64;
            prop_assert_eq!(index.doc_freq(&term), holding, "{}", term);
        }
        let q: Vec<&str> = query.iter().map(|w| WORDS[*w]).collect();
        check(&index, &docs, &q.join(" "));
        // What a dump holds (terms in the index's own id order) loads back to the same index.
        let dumped = index.export_for_dump();
        prop_assert_eq!(dumped.len(), index.len());
        let reloaded = LexicalIndex::new(LexicalOptions::default()).unwrap();
        for (id, doc) in dumped {
            reloaded.upsert(&id, doc);
        }
        prop_assert_eq!(reloaded.export(), index.export());
    }
}

proptest! {
    /// Writes, rewrites (older bodies among them) and removals interleaved with searches: after
    /// every step each term's document frequency and the step's query's scores equal the
    /// reference's on the documents as they are then. A removal or a rewrite moves another
    /// document's posting into the freed place; a position left unrecorded shows up at a later
    /// step as a wrong posting taken out.
    #[test]
    fn interleaved_updates_and_searches_score_as_the_reference(
        ops in prop::collection::vec(
            (0usize..8, prop::collection::vec(0usize..12, 0..8), 0u8..4, 0u64..40, prop::collection::vec(0usize..12, 1..4)),
            1..50,
        ),
    ) {
        let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
        let mut docs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stamps: BTreeMap<String, u64> = BTreeMap::new();
        for (entity, words, kind, ts, query) in ops {
            let id = format!("e{entity}");
            if kind == 0 {
                index.remove(&id);
                docs.remove(&id);
                stamps.remove(&id);
            } else {
                let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
                let text = text.join(" ");
                index.upsert_body(&id, &body(&[&text]), ts);
                // An older body never replaces a newer one; one without terms removes it.
                if stamps.get(&id).is_none_or(|held| *held <= ts) {
                    let terms = analyzer::analyze(&text);
                    if terms.is_empty() {
                        docs.remove(&id);
                        stamps.remove(&id);
                    } else {
                        docs.insert(id.clone(), terms);
                        stamps.insert(id, ts);
                    }
                }
            }
            prop_assert_eq!(index.len(), docs.len());
            for term in WORDS.iter().flat_map(|w| analyzer::analyze(w)) {
                let holding = docs.values().filter(|t| t.contains(&term)).count() as u64;
                prop_assert_eq!(index.doc_freq(&term), holding, "{}", term);
            }
            let q: Vec<&str> = query.iter().map(|w| WORDS[*w]).collect();
            check(&index, &docs, &q.join(" "));
        }
    }
}

proptest! {
    /// A corpus split over three indexes that overlap (as a ring's replicas do), each asked for
    /// the statistics of a disjoint share of the documents (as a ring assigns each token range
    /// to one host): the summed statistics are one index's own, and every index scores the
    /// documents it holds exactly as the index holding them all does.
    #[test]
    fn a_corpus_split_over_overlapping_indexes_scores_as_one_index(
        docs in prop::collection::vec(prop::collection::vec(0usize..12, 0..8), 1..40),
        query in prop::collection::vec(0usize..12, 1..4),
    ) {
        let whole = LexicalIndex::new(LexicalOptions::default()).unwrap();
        let parts: Vec<LexicalIndex> =
            (0..3).map(|_| LexicalIndex::new(LexicalOptions::default()).unwrap()).collect();
        // Document i is held by parts i % 3 and (i + 1) % 3, and counted by part i % 3.
        let share = |id: &str, part: usize| id[1..].parse::<usize>().unwrap() % 3 == part;
        for (i, words) in docs.iter().enumerate() {
            let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
            let text = body(&[&text.join(" ")]);
            let id = format!("e{i}");
            whole.upsert_body(&id, &text, 1);
            parts[i % 3].upsert_body(&id, &text, 1);
            parts[(i + 1) % 3].upsert_body(&id, &text, 1);
        }
        let q: Vec<String> = query.iter().flat_map(|w| analyzer::analyze(WORDS[*w])).collect();
        let mut corpus = CorpusStats::default();
        for (p, part) in parts.iter().enumerate() {
            corpus.add(&part.corpus_stats(&q, &|id| share(id, p)));
        }
        prop_assert_eq!(&corpus, &whole.corpus_stats(&q, &|_| true));
        prop_assert!(corpus.check(q.len()).is_ok());
        prop_assert!(corpus.check(q.len() + 1).is_err());
        let want = whole.search(&q, usize::MAX, None, None);
        for part in &parts {
            let got = part.search(&q, usize::MAX, None, Some(&corpus));
            let held: Vec<&LexicalHit> =
                want.iter().filter(|h| part.score_of(&q, &h.entity_id, None).is_some()).collect();
            prop_assert_eq!(got.len(), held.len());
            for (got, want) in got.iter().zip(held) {
                prop_assert_eq!(got, want);
                let single = part.score_of(&q, &got.entity_id, Some(&corpus));
                prop_assert_eq!(single.as_ref(), Some(want));
            }
        }
    }
}

proptest! {
    /// A document is the analyzed terms of the texts the options read (chunks, then the
    /// entity type and chosen attributes when configured), sorted and counted, whatever the
    /// texts (words, identifiers, other scripts, stop words and stemming).
    #[test]
    fn a_document_counts_the_analyzed_terms_of_its_texts(
        chunks in prop::collection::vec("[ -~\t\nàéßÆ東京ﬁ]{0,60}", 0..4),
        entity_type in "[a-zA-Z_.-]{0,12}",
        attribute in "[ -~é]{0,20}",
        options in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        ts in any::<u64>(),
    ) {
        let (index_type, index_attribute, stem, stop) = options;
        let options = LexicalOptions {
            analyzer: Analyzer {
                stemming: if stem { analyzer::Stemming::English } else { analyzer::Stemming::None },
                stop_words: if stop { analyzer::StopWords::English } else { analyzer::StopWords::None },
            },
            entity_type: index_type,
            attributes: if index_attribute { vec!["title".to_owned()] } else { Vec::new() },
            ..LexicalOptions::default()
        };
        let texts: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let mut body = body(&texts);
        body.entity_type = entity_type.clone();
        body.attributes.insert("title".to_owned(), attribute.clone());
        let mut read: Vec<&str> = texts.clone();
        if index_type {
            read.push(&entity_type);
        }
        if index_attribute {
            read.push(&attribute);
        }
        let mut terms: Vec<String> = read.iter().flat_map(|t| options.analyzer.analyze(t)).collect();
        terms.sort();
        let mut counted: Vec<(String, u32)> = Vec::new();
        for term in terms {
            match counted.last_mut() {
                Some((last, n)) if *last == term => *n += 1,
                _ => counted.push((term, 1)),
            }
        }
        let doc = options.document(&body, ts);
        prop_assert_eq!(doc, DocTerms::new(ts, counted));
    }
}

/// The shape [`DocTerms`] had when the dumps' lexical record format was defined.
#[derive(bincode::Encode, bincode::Decode, Debug, PartialEq)]
struct DumpedDocTerms {
    body_ts: u64,
    terms: Vec<(String, u32)>,
}

proptest! {
    /// A document encodes to the bytes of the dumps' lexical record format and decodes from
    /// them (dumps written before and after read alike).
    #[test]
    fn a_document_keeps_the_dump_format(
        terms in prop::collection::btree_map("[a-zé0-9_.-]{1,12}", 1u32..5000, 0..40),
        body_ts in any::<u64>(),
    ) {
        use allidb_storage::codec;
        let dumped = DumpedDocTerms {
            body_ts,
            terms: terms.clone().into_iter().collect(),
        };
        let doc = DocTerms::new(body_ts, terms);
        let bytes = codec::encode(&doc).unwrap();
        prop_assert_eq!(&bytes, &codec::encode(&dumped).unwrap());
        prop_assert_eq!(codec::decode::<DocTerms>(&bytes).unwrap(), doc.clone());
        let pairs: Vec<(String, u32)> = doc.terms().map(|(t, n)| (t.to_owned(), n)).collect();
        prop_assert_eq!(pairs, dumped.terms);
        prop_assert_eq!(doc.len(), dumped_len(&bytes));
    }
}

/// The length of the document encoded in `bytes` (the sum of its frequencies).
fn dumped_len(bytes: &[u8]) -> u64 {
    let dumped: DumpedDocTerms = allidb_storage::codec::decode(bytes).unwrap();
    dumped.terms.iter().map(|(_, n)| u64::from(*n)).sum()
}

proptest! {
    /// Documents whose terms were looked up ahead of their writes (as a batch's are, on the
    /// threads that prepare it): a whole batch resolved before any of it is applied (so terms
    /// it brings are unknown to the documents resolved before), some resolved in another
    /// index (whose ids differ), some not at all. The index ends as one given the same
    /// documents unresolved, and scores as it does.
    #[test]
    fn documents_resolved_ahead_index_as_unresolved_ones(
        batches in prop::collection::vec(
            prop::collection::vec((0usize..12, prop::collection::vec(0usize..12, 0..8), 0u8..3), 1..8),
            1..8,
        ),
        query in prop::collection::vec(0usize..12, 1..4),
    ) {
        let options = LexicalOptions::default();
        let index = LexicalIndex::new(options.clone()).unwrap();
        let plain = LexicalIndex::new(options.clone()).unwrap();
        // Another index, whose dictionary gave the words other ids.
        let other = LexicalIndex::new(options.clone()).unwrap();
        for (i, word) in WORDS.iter().rev().enumerate() {
            other.upsert_body(&format!("o{i}"), &body(&[word]), 1);
        }
        let mut ts = 0;
        for batch in batches {
            let resolved: Vec<(String, DocTerms, ResolvedDoc)> = batch
                .iter()
                .map(|(entity, words, how)| {
                    ts += 1;
                    let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
                    let doc = options.document(&body(&[&text.join(" ")]), ts);
                    let resolved = match how {
                        0 => index.resolve(doc.clone()),
                        1 => other.resolve(doc.clone()),
                        _ => ResolvedDoc::unresolved(doc.clone()),
                    };
                    (format!("e{entity}"), doc, resolved)
                })
                .collect();
            for (id, doc, resolved) in resolved {
                index.upsert_resolved(&id, resolved);
                plain.upsert(&id, doc);
            }
        }
        prop_assert_eq!(index.export(), plain.export());
        let q: Vec<String> = query.iter().flat_map(|w| analyzer::analyze(WORDS[*w])).collect();
        prop_assert_eq!(
            index.search(&q, usize::MAX, None, None),
            plain.search(&q, usize::MAX, None, None)
        );
    }
}

/// An export reads the index a slice at a time and holds no lock between slices: writes (and
/// the terms they add) go on meanwhile, and an entity removed from a slice already read and
/// written again into a later slot is exported once, as written last.
#[test]
fn an_export_holds_no_lock_between_slices_and_lists_each_entity_once() {
    let index = LexicalIndex::new(LexicalOptions::default()).unwrap();
    let count = 3 * EXPORTED_AT_ONCE + 10;
    for i in 0..count {
        index.upsert_body(&format!("e{i:05}"), &body(&[&format!("common word{i}")]), 1);
    }
    let mut slices = ExportSlices::new(&index, true);
    let first = slices.next().expect("a first slice");
    assert_eq!(first.len(), EXPORTED_AT_ONCE);
    assert!(first.iter().any(|(id, _)| id == "e00003"));
    assert!(
        index.shared.inner.try_write().is_some(),
        "the index is not locked between slices"
    );
    assert!(
        index.shared.dictionary.try_write().is_some(),
        "the dictionary is not locked between slices"
    );
    // e00003's slot is freed and taken by a new entity; e00003 comes back in a new slot, past
    // the slices read so far, with a new term.
    index.remove("e00003");
    index.upsert_body("n00000", &body(&["newcomer"]), 2);
    index.upsert_body("e00003", &body(&["returned unseen"]), 3);
    let exported = by_entity_once(first.into_iter().chain(slices.flatten()));
    // n00000 went into a slot already read: this export misses it, as it misses any write
    // after the sequence number a dump covers (the catch-up applies those again).
    assert_eq!(exported.len(), count);
    assert!(!exported.iter().any(|(id, _)| id == "n00000"));
    let e3: Vec<&DocTerms> = exported
        .iter()
        .filter(|(id, _)| id == "e00003")
        .map(|(_, doc)| doc)
        .collect();
    assert_eq!(
        e3,
        vec![&DocTerms::new(3, [("returned", 1), ("unseen", 1)])]
    );
    assert!(exported.windows(2).all(|w| w[0].0 < w[1].0), "entity order");
}
