//! Text queries across the fake ring: the corpus statistics gathered over the ranges, and
//! every host scoring its candidates and walked nodes with them, against one lexical index
//! holding every entity.

use super::*;
use crate::query::text::query_terms;
use allidb_index::lexical::analyzer::{Analyzer, Stemming, StopWords};

/// One lexical index holding the texts of entities `0..nodes`.
fn whole_texts(nodes: usize) -> LexicalIndex {
    let whole = LexicalIndex::new(LexicalOptions::default()).expect("default options");
    for i in 0..nodes {
        whole.upsert_body(&format!("n{i}"), &body(&text_of(i)), 1);
    }
    whole
}

#[test]
fn text_statistics_count_each_range_once_and_every_host_scores_as_one_index() {
    let nodes = 200;
    let whole = whole_texts(nodes);
    let runtime = runtime();
    let edges: Vec<(usize, &str, usize, f32)> = (0..nodes)
        .map(|i| (i, "next", (i + 1) % nodes, 0.5))
        .collect();
    let mut fake = FakeRing::new(5, 3, nodes, &edges);
    for failing in [None, Some(HostId::from_u128(2))] {
        fake.failing.extend(failing);
        fake.calls.lock().clear();
        let latency = PeerLatency::default();
        // Through host 2, which fails in the second round: its ranges go to other replicas.
        let fanout = fanout(&fake, &latency, HostId::from_u128(2));
        let text = runtime
            .block_on(
                fanout.text_search("gamma alpha gamma zeta unknown", &LexicalOptions::default()),
            )
            .unwrap();
        assert_eq!(text.terms, ["gamma", "alpha", "zeta", "unknown"]);
        assert_eq!(
            text.corpus,
            whole.corpus_stats(&text.terms, &|_| true),
            "failing: {failing:?}"
        );
        assert!(text.corpus.collection.docs == nodes as u64);

        // Candidates: the global BM25 top 10, each scored as the whole index scores it.
        let search = SeedSearch {
            vector: Vec::new(),
            count: 10,
            ef: None,
            filter: Filter::default(),
            text: Some(text.clone()),
            steps: None,
        };
        let found = runtime.block_on(fanout.seeds(search.clone())).unwrap();
        let got: Vec<_> = found.lexical.iter().map(|c| c.hit.clone()).collect();
        assert_eq!(got, whole.search(&text.terms, 10, None, None));
        assert!(found.vector.is_empty(), "no vector, no vector candidates");

        // A walk reports each node's BM25 score from its owner, with the ring's statistics.
        let options = TraversalOptions {
            max_hops: 2,
            ..TraversalOptions::default()
        };
        let gathered = runtime
            .block_on(walk_across(
                &fanout,
                &["n3", "n100"],
                &options,
                &[],
                &Filter::default(),
                Some(&text),
                KnownSeeds::default(),
            ))
            .unwrap();
        assert_eq!(gathered.walk.reached.len(), 6);
        for reached in &gathered.walk.reached {
            let id = &reached.entity_id;
            assert_eq!(
                gathered.nodes[id].lexical,
                whole.score_of(&text.terms, id, None),
                "{id}"
            );
        }
    }
    assert!(
        fake.calls.lock()[&HostId::from_u128(2)] >= 1,
        "the failing host was tried"
    );
}

#[test]
fn a_text_without_a_searchable_word_or_with_too_many_terms_is_refused() {
    let plain = LexicalOptions::default();
    assert!(query_terms(" ... ", &plain).is_err());
    let many: Vec<String> = (0..=super::super::wire::MAX_TEXT_TERMS)
        .map(|i| format!("w{i}"))
        .collect();
    let error = query_terms(&many.join(" "), &plain).unwrap_err();
    assert!(error.to_string().contains("text: 1025 terms"), "{error}");
    assert_eq!(query_terms("b a b", &plain).unwrap(), ["b", "a"]);
}

/// The coordinator analyzes a text with the tenant's analyzer, as the hosts analyzed its
/// documents.
#[test]
fn the_terms_are_the_tenants_analyzers() {
    let stemmed = LexicalOptions {
        analyzer: Analyzer {
            stemming: Stemming::English,
            stop_words: StopWords::English,
        },
        ..LexicalOptions::default()
    };
    assert_eq!(
        query_terms("the running runners", &stemmed).unwrap(),
        ["run", "runner"]
    );
    let error = query_terms("the and of", &stemmed).unwrap_err();
    assert!(error.to_string().contains("stop word"), "{error}");
    assert_eq!(
        query_terms("the running runners", &LexicalOptions::default()).unwrap(),
        ["the", "running", "runners"]
    );
}
