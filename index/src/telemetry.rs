//! The index crate's own metrics, recorded through the `metrics` facade: query stage latencies
//! and vector index rebuilds ([`describe`] registers their help texts).
//!
//! Sizes (vectors indexed, pending tail) are not recorded here: the daemon sums
//! [`crate::UnifiedStore::index_sizes`] over tenants at scrape time.
//!
//! Invariants: the only label is `stage` (three fixed values) or `result` (two); never a
//! tenant or entity id. Recording is one registry lookup per query stage, far below the cost of
//! the stage itself. Must never: make a query fail or wait because of a metric.

use std::time::Instant;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

/// Seconds spent in one stage of a query, label `stage` = [`STAGE_ANN_SEARCH`],
/// [`STAGE_LEXICAL_SEARCH`], [`STAGE_EXPANSION`] or [`STAGE_SCORING`].
pub const QUERY_STAGE_SECONDS: &str = "allidb_query_stage_seconds";
/// Vector index rebuilds (stale points dropped), label `result` = `ok` or `error`.
pub const VECTOR_INDEX_REBUILDS_TOTAL: &str = "allidb_vector_index_rebuilds_total";

/// The ANN (HNSW) search for the query's seeds.
pub const STAGE_ANN_SEARCH: &str = "ann_search";
/// The BM25 search of a query's text (hybrid and text queries).
pub const STAGE_LEXICAL_SEARCH: &str = "lexical_search";
/// The bounded graph expansion from the seeds.
pub const STAGE_EXPANSION: &str = "expansion";
/// Similarities, unified scores, ordering and the top k.
pub const STAGE_SCORING: &str = "scoring";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    describe_histogram!(
        QUERY_STAGE_SECONDS,
        Unit::Seconds,
        "Time spent in one query stage (ann_search, lexical_search, expansion, scoring)."
    );
    describe_counter!(
        VECTOR_INDEX_REBUILDS_TOTAL,
        Unit::Count,
        "Vector index rebuilds by the background indexer, by result."
    );
    // Both series exist from the start (at 0), so a dashboard's rate() works before the first
    // rebuild.
    for result in ["ok", "error"] {
        counter!(VECTOR_INDEX_REBUILDS_TOTAL, "result" => result).increment(0);
    }
}

/// Runs `stage` of a query inside a `debug` span named after it and records its duration.
pub(crate) fn query_stage<T>(name: &'static str, stage: impl FnOnce() -> T) -> T {
    let span = tracing::debug_span!("query_stage", stage = name);
    let start = Instant::now();
    let output = span.in_scope(stage);
    histogram!(QUERY_STAGE_SECONDS, "stage" => name).record(start.elapsed().as_secs_f64());
    output
}

/// Counts one finished rebuild.
pub(crate) fn rebuild_finished(succeeded: bool) {
    let result = if succeeded { "ok" } else { "error" };
    counter!(VECTOR_INDEX_REBUILDS_TOTAL, "result" => result).increment(1);
}
