//! How a benchmark runs and what it reports: [`drive`] runs the workers over a shared job
//! source and times every request; [`BenchReport`] is the figure printed.
//!
//! Invariants: a run with an error reports nothing (the first error stops it); latencies are
//! recorded in microseconds up to one hour.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::super::Context;
use super::super::connect::{Client, connect};
use super::super::error::{CliError, CliResult};

/// Longest request latency the histograms track (one hour, in microseconds).
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// Latency percentiles of one benchmark, in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The result of one benchmark run.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// `ingest`, `get`, `query`, `scan`.
    pub bench: String,
    /// What one item is (`entities`, `reads`, `queries`, `entities`).
    pub items_name: String,
    /// Requests sent.
    pub requests: u64,
    /// Items handled (entities written or returned, queries answered).
    pub items: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Items per second.
    pub items_per_sec: f64,
    /// Per-request latency.
    pub latency_ms: LatencyMs,
    /// Workers.
    pub concurrency: u32,
    /// Recall@k against the ground truth (data-set queries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    /// Benchmark parameters, for the record.
    pub parameters: Vec<(String, String)>,
}

impl BenchReport {
    pub(super) fn human(&self) -> String {
        let parameters: Vec<String> = self
            .parameters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let mut text = format!(
            "bench {} ({}, concurrency={})\n  {} {} in {:.3} s: {:.1} {}/s; {} requests, {:.1} requests/s\n  latency per request (ms): p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}\n",
            self.bench,
            parameters.join(", "),
            self.concurrency,
            self.items,
            self.items_name,
            self.elapsed_secs,
            self.items_per_sec,
            self.items_name,
            self.requests,
            self.requests_per_sec,
            self.latency_ms.p50,
            self.latency_ms.p95,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.latency_ms.mean
        );
        if let Some(recall) = self.recall_at_k {
            text.push_str(&format!("  recall@k: {recall:.4}\n"));
        }
        text
    }
}

/// Raw result of [`drive`].
#[derive(Debug)]
pub(super) struct Measurement {
    elapsed: Duration,
    requests: u64,
    /// Items the requests handled (what `execute` returned, summed).
    pub(super) items: u64,
    histogram: Histogram<u64>,
}

impl Measurement {
    pub(super) fn report(
        self,
        bench: &str,
        items_name: &str,
        concurrency: u32,
        parameters: Vec<(String, String)>,
    ) -> BenchReport {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |micros: u64| micros as f64 / 1000.0;
        BenchReport {
            bench: bench.to_owned(),
            items_name: items_name.to_owned(),
            requests: self.requests,
            items: self.items,
            elapsed_secs: self.elapsed.as_secs_f64(),
            requests_per_sec: self.requests as f64 / secs,
            items_per_sec: self.items as f64 / secs,
            latency_ms: LatencyMs {
                p50: ms(self.histogram.value_at_quantile(0.50)),
                p95: ms(self.histogram.value_at_quantile(0.95)),
                p99: ms(self.histogram.value_at_quantile(0.99)),
                max: ms(self.histogram.max()),
                mean: self.histogram.mean() / 1000.0,
            },
            concurrency,
            recall_at_k: None,
            parameters,
        }
    }
}

fn new_histogram() -> CliResult<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).map_err(|error| CliError::Bench {
        bench: "setup",
        reason: format!("histogram: {error}"),
    })
}

/// A progress bar on standard error (hidden unless it is a terminal).
pub(super) fn progress_bar(total_items: u64, items_name: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = format!("{{bar:40}} {{pos}}/{{len}} {items_name} {{per_sec}} eta {{eta}}");
    let bar = ProgressBar::new(total_items).with_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Opens `concurrency` connections.
pub(super) async fn connections(context: &Context, concurrency: u32) -> CliResult<Vec<Client>> {
    let mut clients = Vec::with_capacity(concurrency as usize);
    for _ in 0..concurrency {
        clients.push(connect(&context.connect).await?);
    }
    Ok(clients)
}

/// Runs one worker per client: each takes jobs from `next_job` until it returns `None`, runs
/// `execute` on each (which returns the items it handled) and times it. The first error stops
/// the benchmark.
pub(super) async fn drive<Job, Next, Exec, Fut>(
    clients: Vec<Client>,
    progress: &ProgressBar,
    next_job: Next,
    execute: Exec,
) -> CliResult<Measurement>
where
    Job: Send + 'static,
    Next: FnMut() -> Option<CliResult<Job>> + Send + 'static,
    Exec: Fn(Client, Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CliResult<u64>> + Send + 'static,
{
    let next_job = Arc::new(Mutex::new(next_job));
    let execute = Arc::new(execute);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let next_job = Arc::clone(&next_job);
        let execute = Arc::clone(&execute);
        let progress = progress.clone();
        let mut histogram = new_histogram()?;
        workers.spawn(async move {
            let (mut requests, mut items) = (0u64, 0u64);
            loop {
                // A panic in another worker poisons the lock; the job source is still valid.
                let job = (next_job.lock().unwrap_or_else(PoisonError::into_inner))();
                let job = match job {
                    None => break,
                    Some(job) => job?,
                };
                let begun = Instant::now();
                let handled = execute(client.clone(), job).await?;
                let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
                requests += 1;
                items += handled;
                progress.inc(handled);
            }
            Ok::<_, CliError>((requests, items, histogram))
        });
    }
    let mut total = Measurement {
        elapsed: Duration::ZERO,
        requests: 0,
        items: 0,
        histogram: new_histogram()?,
    };
    while let Some(joined) = workers.join_next().await {
        let (requests, items, histogram) = joined.map_err(|error| CliError::Bench {
            bench: "worker",
            reason: error.to_string(),
        })??;
        total.requests += requests;
        total.items += items;
        total
            .histogram
            .add(&histogram)
            .map_err(|error| CliError::Bench {
                bench: "worker",
                reason: format!("histogram: {error}"),
            })?;
    }
    total.elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use allidb_api::pb;

    use super::*;

    #[tokio::test]
    async fn drive_counts_requests_items_and_stops_at_the_first_error() {
        // `drive` needs clients only to hand them to `execute`; a lazy channel never connects.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let client = pb::alli_db_client::AlliDbClient::with_interceptor(
            channel,
            super::super::super::connect::ApiKeyInterceptor::new(None).unwrap(),
        );
        let mut jobs = 0..10u64;
        let measurement = drive(
            vec![client.clone(), client.clone()],
            &ProgressBar::hidden(),
            move || jobs.next().map(Ok),
            |_, job| async move { Ok(job % 3) },
        )
        .await
        .unwrap();
        assert_eq!((measurement.requests, measurement.items), (10, 9));
        assert_eq!(measurement.histogram.len(), 10);

        let mut jobs = 0..10u64;
        let failed = drive(
            vec![client],
            &ProgressBar::hidden(),
            move || jobs.next().map(Ok),
            |_, job| async move {
                if job == 4 {
                    Err(CliError::input("job", "boom"))
                } else {
                    Ok(1)
                }
            },
        )
        .await;
        assert!(matches!(failed, Err(CliError::Input { .. })));
    }
}
