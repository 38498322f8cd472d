//! `kill -9` during a `DeleteBySource` (issue 39, docs/api.md "Sources") against a real
//! `allidbd`, landed while the request is in flight: after the restart the tenant equals the
//! model either before the delete or after it (never a mix), and a retried `DeleteBySource`
//! finishes it, idempotently.
//!
//! How a kill is known to land mid-request, with nothing in the daemon but what it always does:
//! the test waits until the daemon reports the request admitted and not yet answered
//! (`allidb_request_budget_in_use_bytes` above zero on the admin port, with nothing else in
//! flight), kills it, and counts the run only if the client then sees the connection break, not
//! a reply. The kills land at several points of the delete ([`KILL_AT`] of the time an answered
//! delete of the same source took), each run on a fresh daemon, so that some land before the
//! delete's batch is written and some may land after. When no run lands mid-request (every
//! reply came first), the runs are repeated with a source twice as large, a bounded number of
//! times; the test fails if none ever lands.
//!
//! `ALLIDB_PROVENANCE_KILL_ENTITIES` sets the size of the source of the first runs (default
//! 3000; the figure is 100000).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use allidb_api::pb;
use allidb_tests::sources::{delete_source, merge_put, scan_all};
use allidb_tests::{Daemon, doc_entity, request};
use tonic::Code;

/// Rounds of runs before the test gives up on landing a kill mid-request (each round doubles
/// the source).
const ATTEMPTS: u32 = 4;

/// Where the kills of a round land: fractions of the time an answered delete of the same source
/// took, counted from when the daemon reports the request in flight.
const KILL_AT: [f64; 3] = [0.0, 0.4, 0.8];

/// The daemon's gauge of request bytes admitted and not yet answered.
const IN_FLIGHT: &str = "allidb_request_budget_in_use_bytes";

/// Each entity's sources, as the model and a reader see them.
type Sources = BTreeMap<String, BTreeSet<String>>;

/// The tenant before and after `DeleteBySource(big)`: `big` supports `count` entities, every
/// tenth of which also comes from `keep`, so the delete removes nine in ten and leaves the tenth
/// with `keep` alone.
fn model(count: usize) -> (Sources, Sources) {
    let id = |i: usize| format!("k{i:07}");
    let before = (0..count)
        .map(|i| {
            let sources = match i % 10 {
                0 => ["big", "keep"].as_slice(),
                _ => ["big"].as_slice(),
            };
            (id(i), sources.iter().map(|s| (*s).to_owned()).collect())
        })
        .collect();
    let after = (0..count)
        .step_by(10)
        .map(|i| (id(i), BTreeSet::from(["keep".to_owned()])))
        .collect();
    (before, after)
}

/// What a scan of the whole tenant shows, in the model's terms.
async fn observed(daemon: &Daemon) -> Sources {
    let mut client = daemon.client().await;
    scan_all(&mut client)
        .await
        .into_iter()
        .map(|e| (e.entity_id, e.source_ids.into_iter().collect()))
        .collect()
}

/// Writes `before`, each source's entities in batches of 1000 in the merge-sources mode.
async fn load(daemon: &Daemon, before: &Sources) {
    let mut client = daemon.client().await;
    for source in ["big", "keep"] {
        let ids: Vec<&String> = before
            .iter()
            .filter(|(_, sources)| sources.contains(source))
            .map(|(id, _)| id)
            .collect();
        for batch in ids.chunks(1000) {
            let entities = batch
                .iter()
                .map(|id| pb::Entity {
                    source_ids: vec![source.to_owned()],
                    ..doc_entity(id, &[1.0, 0.5, 0.25])
                })
                .collect();
            merge_put(&mut client, entities).await;
        }
    }
}

/// Waits (up to `limit`) until `done` holds, checking every few milliseconds.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An answered `DeleteBySource(big)` of a source of `count` entities on a fresh daemon: how
/// long it took, from the call to the reply.
async fn answered_delete(count: usize) -> Duration {
    let (before, after) = model(count);
    let daemon = Daemon::start("");
    load(&daemon, &before).await;
    let mut client = daemon.client().await;
    let started = Instant::now();
    let reply = delete_source(&mut client, "big").await;
    let took = started.elapsed();
    assert_eq!(
        (reply.deleted, reply.updated),
        ((count - after.len()) as u64, after.len() as u64)
    );
    assert_eq!(
        observed(&daemon).await,
        after,
        "the delete leaves the model"
    );
    took
}

/// One run on a fresh daemon with a source of `count` entities: sends `DeleteBySource(big)`,
/// kills the daemon with SIGKILL `delay` after it reports the request in flight, and returns
/// whether the kill landed mid-request (the client saw the connection break). When it did, the
/// restarted daemon's tenant must equal the model before or after the delete, and the retry
/// must leave exactly the model after it.
async fn kill_during_delete(count: usize, delay: Duration) -> bool {
    let (before, after) = model(count);
    let mut daemon = Daemon::start("");
    load(&daemon, &before).await;
    assert_eq!(observed(&daemon).await, before, "the source is written");
    wait_for("the writes answered", Duration::from_secs(10), || {
        daemon.metric(IN_FLIGHT, &[]) == 0.0
    });

    let mut client = daemon.client().await;
    let call = tokio::spawn(async move {
        let message = pb::DeleteBySourceRequest {
            source_id: "big".to_owned(),
            ..Default::default()
        };
        client.delete_by_source(request(message, None)).await
    });
    let started = Instant::now();
    while !call.is_finished() {
        if daemon.metric(IN_FLIGHT, &[]) > 0.0 {
            std::thread::sleep(delay);
            daemon.kill();
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the delete is neither in flight nor answered"
        );
    }
    let killed_after = started.elapsed();
    let reply = call.await.expect("the call ends");
    let broken = match reply {
        Ok(reply) => {
            eprintln!(
                "{count} entities: the delete was answered ({:?}) {killed_after:?} after the call, before the kill",
                reply.into_inner()
            );
            return false;
        }
        Err(status) => status,
    };
    assert!(
        matches!(broken.code(), Code::Unavailable | Code::Unknown),
        "the client sees the connection break, not an answer: {broken:?}"
    );

    daemon.restart();
    let crashed = observed(&daemon).await;
    let done = crashed == after;
    assert!(
        done || crashed == before,
        "after the crash the delete is whole or undone: {} entities of {} before and {} after",
        crashed.len(),
        before.len(),
        after.len()
    );
    eprintln!(
        "{count} entities: killed {killed_after:?} after the call, mid-request ({:?}: {}); the delete was {} after the restart",
        broken.code(),
        broken.message(),
        if done { "whole" } else { "undone" }
    );
    let mut client = daemon.client().await;
    let retry = delete_source(&mut client, "big").await;
    let expected = match done {
        true => (0, 0),
        false => ((count - after.len()) as u64, after.len() as u64),
    };
    assert_eq!(
        (retry.deleted, retry.updated),
        expected,
        "the retry deletes what is left"
    );
    assert_eq!(
        observed(&daemon).await,
        after,
        "the retry finishes the delete"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delete_by_source_leaves_it_whole_or_undone_and_the_retry_finishes_it() {
    let count: usize = std::env::var("ALLIDB_PROVENANCE_KILL_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for attempt in 0..ATTEMPTS {
        let size = count << attempt;
        let took = answered_delete(size).await;
        let mut landed = 0;
        for fraction in KILL_AT {
            if kill_during_delete(size, took.mul_f64(fraction)).await {
                landed += 1;
            }
        }
        if landed > 0 {
            return;
        }
    }
    panic!(
        "no kill landed while DeleteBySource was in flight in {ATTEMPTS} rounds (sources of {count} to {} entities)",
        count << (ATTEMPTS - 1)
    );
}
