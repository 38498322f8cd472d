//! End-to-end tests of the per-tenant lexical settings (issue 38 point 2, docs/configuration.md
//! "Lexical search") against a real `allidbd`: a tenant with its own BM25 `k1` and `b` ranks
//! and scores its texts as a reference BM25 with those parameters does, beside a tenant with
//! the defaults holding the same texts; a tenant with English stemming and stop words finds
//! inflected forms and refuses a text of stop words only; after a restart with that tenant's
//! analyzer switched off, its dumped lexical index is not loaded but rebuilt from storage
//! (logged), so it answers with unstemmed terms only, never a mix of the two analyzers; a
//! tenant with its lexical index off stores its texts, refuses text queries naming the
//! setting, and finds them after a restart with the index on.

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, key_line, request};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

const DEFAULT_KEY: &str = "default-write-key";
const TUNED_KEY: &str = "tuned-write-key";
const STEMMED_KEY: &str = "stemmed-write-key";

/// The tenants with settings of their own; `default` has none.
const TUNED: &str = "\"tuned=k1:2 b:0.1\"";
const STEMMED: &str = "\"stemmed=stemming:english stop_words:english\"";
/// Tenant `stemmed` with no lexical index.
const OFF: &str = "\"stemmed=enabled:false\"";

/// Texts of lowercase words separated by spaces (what the analyzer gives of them is the words):
/// with `b` small and `k1` large, the long text repeating `json` outranks the short ones.
const BM25_DOCS: &[(&str, &str)] = &[
    ("short", "parser for json"),
    (
        "long",
        "json json json tools with many words about streaming encoders decoders schemas \
         validators and other helpers for data",
    ),
    ("mid", "fast json parser library"),
    ("other", "yaml loader and dumper"),
    ("csv", "csv reader"),
];

/// Texts whose words stem (`runs` -> `run`, `parsing` -> `pars`) and hold stop words.
const STEM_DOCS: &[(&str, &str)] = &[
    ("runner", "the runner runs every morning"),
    ("parse", "parsing json files quickly"),
    ("pets", "cats and dogs"),
];

/// A daemon with a write key for each tenant and `lexical_tenants` set to `tenants`.
fn daemon(tenants: &[&str]) -> (Daemon, tempfile::TempDir) {
    let keys_dir = tempfile::tempdir().expect("a temporary directory");
    let key_file = keys_dir.path().join("keys");
    let keys = [
        key_line(DEFAULT_KEY, "default", "write"),
        key_line(TUNED_KEY, "tuned", "write"),
        key_line(STEMMED_KEY, "stemmed", "write"),
    ]
    .concat();
    std::fs::write(&key_file, keys).expect("the key file is written");
    (Daemon::start(&config(&key_file, tenants)), keys_dir)
}

fn config(key_file: &std::path::Path, tenants: &[&str]) -> String {
    format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n[index]\nlexical_tenants = [{}]\n",
        key_file.display().to_string(),
        tenants.join(", ")
    )
}

async fn load(client: &mut Client, key: &str, docs: &[(&str, &str)]) {
    let entities = docs
        .iter()
        .map(|(id, text)| pb::Entity {
            entity_id: (*id).to_owned(),
            entity_type: "doc".to_owned(),
            chunks: vec![pb::TextChunk {
                chunk_id: "c0".to_owned(),
                text: (*text).to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let message = pb::BatchPutEntitiesRequest {
        entities,
        ..Default::default()
    };
    let reply = client
        .batch_put_entities(request(message, Some(key)))
        .await
        .expect("the load succeeds")
        .into_inner();
    assert!(reply.success, "{reply:?}");
}

async fn text_query(
    client: &mut Client,
    key: &str,
    text: &str,
) -> Result<pb::QueryResponse, tonic::Status> {
    let message = pb::QueryRequest {
        text: Some(text.to_owned()),
        k: 10,
        max_hops: Some(0),
        include_entity: Some(false),
        explain: true,
        ..Default::default()
    };
    client
        .query(request(message, Some(key)))
        .await
        .map(tonic::Response::into_inner)
}

/// `(entity, BM25 score)` of each result, in order.
fn scored(reply: &pb::QueryResponse) -> Vec<(String, f64)> {
    reply
        .results
        .iter()
        .map(|r| {
            let explanation = r.explanation.as_ref().expect("explained");
            let lexical = explanation.lexical.as_ref().expect("matched terms");
            (r.entity_id.clone(), lexical.bm25)
        })
        .collect()
}

/// The matched terms of each result, in order.
fn matched(reply: &pb::QueryResponse) -> Vec<(String, Vec<String>)> {
    reply
        .results
        .iter()
        .map(|r| {
            let lexical = r.explanation.as_ref().and_then(|e| e.lexical.as_ref());
            let terms = lexical.map_or(Vec::new(), |l| {
                l.matched_terms.iter().map(|t| t.term.clone()).collect()
            });
            (r.entity_id.clone(), terms)
        })
        .collect()
}

/// Lucene BM25 with `k1` and `b` of the documents holding a word of `query`, best first (ties
/// by id), computed naively over the space-separated words of `docs`.
fn reference(docs: &[(&str, &str)], query: &str, k1: f64, b: f64) -> Vec<(String, f64)> {
    let words: Vec<Vec<&str>> = docs.iter().map(|(_, t)| t.split(' ').collect()).collect();
    let n = docs.len() as f64;
    let avgdl = words.iter().map(|w| w.len() as f64).sum::<f64>() / n;
    let mut terms: Vec<&str> = Vec::new();
    for term in query.split(' ') {
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    let mut scores: Vec<(String, f64)> = Vec::new();
    for ((id, _), doc) in docs.iter().zip(&words) {
        let mut score = 0.0;
        for term in &terms {
            let tf = doc.iter().filter(|w| *w == term).count() as f64;
            if tf == 0.0 {
                continue;
            }
            let df = words.iter().filter(|d| d.contains(term)).count() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            score += idf * tf / (tf + k1 * (1.0 - b + b * doc.len() as f64 / avgdl));
        }
        if score > 0.0 {
            scores.push(((*id).to_owned(), score));
        }
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scores
}

fn assert_scores(got: &[(String, f64)], expected: &[(String, f64)], what: &str) {
    let ids = |s: &[(String, f64)]| s.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(expected), "{what}: {got:?} vs {expected:?}");
    for ((id, got), (_, expected)) in got.iter().zip(expected) {
        assert!(
            (got - expected).abs() < 1e-4,
            "{what}: {id} scores {got}, the reference {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_own_k1_and_b_scores_as_the_reference_bm25() {
    let (daemon, _keys) = daemon(&[TUNED, STEMMED]);
    let mut client = daemon.client().await;
    load(&mut client, DEFAULT_KEY, BM25_DOCS).await;
    load(&mut client, TUNED_KEY, BM25_DOCS).await;
    for query in ["json", "json parser", "parser for data", "csv yaml json"] {
        for (key, k1, b) in [(DEFAULT_KEY, 1.2, 0.75), (TUNED_KEY, 2.0, 0.1)] {
            let reply = text_query(&mut client, key, query)
                .await
                .expect("a text query");
            let what = format!("{query:?} with k1 {k1}, b {b}");
            assert_scores(&scored(&reply), &reference(BM25_DOCS, query, k1, b), &what);
        }
    }
    // The same texts rank differently: the defaults favour the short texts, the tenant's
    // parameters the long one repeating the word.
    let first = |reply: &pb::QueryResponse| reply.results[0].entity_id.clone();
    let default = text_query(&mut client, DEFAULT_KEY, "json").await.unwrap();
    let tuned = text_query(&mut client, TUNED_KEY, "json").await.unwrap();
    assert_eq!(
        (first(&default), first(&tuned)),
        ("short".into(), "long".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stemming_and_stop_words_per_tenant_and_a_changed_analyzer_rebuilds_the_index() {
    let (mut daemon, keys) = daemon(&[TUNED, STEMMED]);
    let mut client = daemon.client().await;
    load(&mut client, DEFAULT_KEY, STEM_DOCS).await;
    load(&mut client, STEMMED_KEY, STEM_DOCS).await;
    let terms = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(id, t)| {
                (
                    (*id).to_owned(),
                    t.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    };
    // Stemmed: `running` finds `runs`, `parsed` finds `parsing`; the default tenant finds
    // neither.
    let running = text_query(&mut client, STEMMED_KEY, "running")
        .await
        .unwrap();
    assert_eq!(matched(&running), terms(&[("runner", &["run"])]));
    let parsed = text_query(&mut client, STEMMED_KEY, "parsed")
        .await
        .unwrap();
    assert_eq!(matched(&parsed), terms(&[("parse", &["pars"])]));
    for text in ["running", "parsed"] {
        let plain = text_query(&mut client, DEFAULT_KEY, text).await.unwrap();
        assert!(plain.results.is_empty(), "{text}: {plain:?}");
    }
    // Stop words: dropped from texts and queries; a text of stop words only is refused.
    let refused = text_query(&mut client, STEMMED_KEY, "the and")
        .await
        .expect_err("stop words only");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("text"), "{refused:?}");
    let the = text_query(&mut client, DEFAULT_KEY, "the and")
        .await
        .unwrap();
    assert_eq!(
        matched(&the),
        terms(&[("pets", &["and"]), ("runner", &["the"])])
    );

    // A restart with the tenant's analyzer switched off: the dump (written at the stop) holds
    // stemmed documents, so its lexical index is rebuilt from storage instead of loaded.
    daemon.stop();
    let key_file = keys.path().join("keys");
    std::fs::write(
        daemon.dir().join("allidb.toml"),
        config(&key_file, &[TUNED]),
    )
    .expect("the config is rewritten");
    daemon.restart();
    let log = daemon.log();
    assert!(
        log.contains("indexes loaded and caught up from the WAL"),
        "the dump is loaded: {log}"
    );
    assert!(
        log.contains("the dumped lexical index was analyzed by another analyzer")
            && log.contains("lexical index rebuilt from storage with the configured analyzer"),
        "{log}"
    );
    let mut client = daemon.client().await;
    let running = text_query(&mut client, STEMMED_KEY, "running")
        .await
        .unwrap();
    assert!(running.results.is_empty(), "{running:?}");
    let runs = text_query(&mut client, STEMMED_KEY, "runs the")
        .await
        .unwrap();
    assert_eq!(matched(&runs), terms(&[("runner", &["runs", "the"])]));
    let parsing = text_query(&mut client, STEMMED_KEY, "parsing")
        .await
        .unwrap();
    assert_eq!(matched(&parsing), terms(&[("parse", &["parsing"])]));
    // The scores are those of the unstemmed texts, as the default tenant holding the same
    // texts scores them.
    for text in ["runs the", "parsing json", "cats and dogs"] {
        let own = text_query(&mut client, STEMMED_KEY, text).await.unwrap();
        let plain = text_query(&mut client, DEFAULT_KEY, text).await.unwrap();
        assert_scores(&scored(&own), &scored(&plain), text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_lexical_index_off_refuses_text_queries_until_it_is_on_again() {
    let (mut daemon, keys) = daemon(&[OFF]);
    let mut client = daemon.client().await;
    load(&mut client, DEFAULT_KEY, STEM_DOCS).await;
    load(&mut client, STEMMED_KEY, STEM_DOCS).await;
    let refused = text_query(&mut client, STEMMED_KEY, "runs")
        .await
        .expect_err("the tenant's lexical index is off");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("lexical index is off")
            && refused.message().contains("index.lexical_enabled"),
        "{refused:?}"
    );
    let plain = text_query(&mut client, DEFAULT_KEY, "runs").await.unwrap();
    assert_eq!(plain.results.len(), 1, "{plain:?}");

    // On again (the node's default): the texts stored while it was off are found.
    daemon.stop();
    let key_file = keys.path().join("keys");
    std::fs::write(daemon.dir().join("allidb.toml"), config(&key_file, &[]))
        .expect("the config is rewritten");
    daemon.restart();
    let log = daemon.log();
    assert!(
        log.contains("indexes loaded and caught up from the WAL")
            && log.contains("lexical index rebuilt from storage with the configured analyzer"),
        "{log}"
    );
    let mut client = daemon.client().await;
    let on = text_query(&mut client, STEMMED_KEY, "runs").await.unwrap();
    let plain = text_query(&mut client, DEFAULT_KEY, "runs").await.unwrap();
    assert_eq!(matched(&on), matched(&plain));
    assert_eq!(on.results.len(), 1, "{on:?}");
}
