//! `allidb bench`: end-to-end benchmarks against a running daemon — `ingest`, `get`, `query`
//! (synthetic, or a TEXMEX data set with recall@k) and `scan`.
//!
//! Every benchmark runs `--concurrency` workers, each on its own connection, that pull jobs from a
//! shared source until it is exhausted, time each request into an HDR histogram (microseconds)
//! and count the items it handled. The report gives throughput (requests and items per second
//! over the wall time) and p50/p95/p99/max request latency. Synthetic vectors come from a
//! seeded generator, so `bench ingest` and `bench query` agree on the data without storing it.
//! Invariants: a benchmark never reports a figure from a run with errors (a failed request or a
//! rejected entity fails the benchmark); a data-set benchmark reads the base set in bounded
//! memory.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use allidb_api::pb;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Context;
use super::connect::{Client, connect};
use super::error::{CliError, CliResult, Outcome};
use super::texmex::{self, VecsReader};

/// Longest request latency the histograms track (one hour, in microseconds).
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// `allidb bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The benchmark.
    #[command(subcommand)]
    pub bench: Bench,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Write N entities of dimension D in batches (BatchPutEntities).
    Ingest(IngestArgs),
    /// Random single-entity reads (GetEntity) of entities `bench ingest` wrote.
    Get(GetBenchArgs),
    /// Vector queries: synthetic, or a TEXMEX data set with recall@k.
    Query(QueryBenchArgs),
    /// Range scans of `--limit` entities from random start ids.
    Scan(ScanBenchArgs),
}

impl Bench {
    /// The flags every benchmark has.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Bench::Ingest(args) => &args.common,
            Bench::Get(args) => &args.common,
            Bench::Query(args) => &args.common,
            Bench::Scan(args) => &args.common,
        }
    }
}

/// Flags every benchmark has.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Concurrent workers, each with its own connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Prefix of the benchmark's entity ids (`<prefix><index, 10 digits>`).
    #[arg(long, default_value = "bench-")]
    pub id_prefix: String,
    /// Seed of the synthetic vectors and of random choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl CommonArgs {
    fn id(&self, index: u64) -> String {
        entity_id(&self.id_prefix, index)
    }
}

/// `allidb bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Entities to write.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub count: u64,
    /// Vector dimension.
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub dim: u32,
    /// Entities per request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Index of the first entity (to grow an existing benchmark set).
    #[arg(long, default_value_t = 0)]
    pub start: u64,
}

/// `allidb bench get`.
#[derive(Debug, Args)]
pub struct GetBenchArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Entities present (`bench ingest -n <keys>` wrote them); reads pick ids among them.
    #[arg(long)]
    pub keys: u64,
    /// Reads to do.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub count: u64,
}

/// `allidb bench query`.
#[derive(Debug, Args)]
pub struct QueryBenchArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Queries to run (data-set mode: default one per query vector, cycling when more).
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Dimension of synthetic queries (must match what `bench ingest` wrote).
    #[arg(long, default_value_t = 384)]
    pub dim: u32,
    /// Results per query.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..))]
    pub k: i32,
    /// ANN seeds per result (`expand_factor`); the daemon's default when omitted.
    #[arg(long)]
    pub expand: Option<i32>,
    /// Graph expansion depth (0 = none).
    #[arg(long, default_value_t = 0)]
    pub max_hops: i32,
    /// HNSW search breadth; the daemon's default when omitted.
    #[arg(long)]
    pub ef: Option<i32>,
    /// ANN seeds of the expansion, apart from `-k` (`seeds` of the request); `k x expand`
    /// when omitted.
    #[arg(long)]
    pub seeds: Option<i32>,
    /// Relations the expansion follows (repeat the flag or separate by commas; all when
    /// omitted).
    #[arg(long, value_delimiter = ',')]
    pub relations: Vec<String>,
    /// Edges followed to new entities per expanded entity (`max_fan_out`); the daemon's
    /// default when omitted.
    #[arg(long)]
    pub fan_out: Option<i32>,
    /// Entities the expansion may visit (`max_nodes`); the daemon's default when omitted.
    #[arg(long)]
    pub max_nodes: Option<i32>,
    /// Ask for the graph context (`include_context`): every visited entity with its hop and
    /// path, and the edges followed, in each reply: the Graph-RAG question in one call.
    #[arg(long)]
    pub context: bool,
    /// Return each result's entity (off: the benchmark measures search, not payload).
    #[arg(long)]
    pub with_entities: bool,
    /// Query vectors per request: 1 sends each in its own `Query`, more sends them in
    /// `QueryBatch` requests of this many (one result list per vector).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// TEXMEX base vectors (.fvecs) to ingest; ids are `<prefix><row>`.
    #[arg(long, requires_all = ["queries", "ground_truth"])]
    pub vectors: Option<PathBuf>,
    /// TEXMEX query vectors (.fvecs).
    #[arg(long, requires = "vectors")]
    pub queries: Option<PathBuf>,
    /// TEXMEX ground truth (.ivecs): per query the base rows nearest first.
    #[arg(long, requires = "vectors")]
    pub ground_truth: Option<PathBuf>,
    /// Entities per request when ingesting `--vectors`.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Do not ingest `--vectors` (they were ingested by an earlier run).
    #[arg(long)]
    pub skip_ingest: bool,
    /// Seconds to wait between the ingest and the queries (lets the index absorb the ingest).
    #[arg(long, default_value_t = 0)]
    pub settle_secs: u64,
}

/// `allidb bench scan`.
#[derive(Debug, Args)]
pub struct ScanBenchArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Entities present (`bench ingest -n <keys>` wrote them); scans start among them.
    #[arg(long)]
    pub keys: u64,
    /// Scans to do.
    #[arg(short = 'n', long, default_value_t = 1_000)]
    pub count: u64,
    /// Entities per scan.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
    pub limit: i32,
}

/// `<prefix><index>` with the index zero-padded to 10 digits, so id order is index order.
pub fn entity_id(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:010}")
}

/// The index of a benchmark id, if it has the prefix.
fn id_index(prefix: &str, id: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.parse().ok()
}

/// SplitMix64: a fast, well-mixed deterministic sequence (not for cryptography).
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn next_unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in [0, bound); `bound` > 0.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The synthetic vector of entity `index` (or of query `index` with another `stream`).
fn synthetic_vector(seed: u64, stream: u64, index: u64, dim: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03), stream);
    (0..dim).map(|_| rng.next_unit()).collect()
}

/// Stream of entity vectors; queries use another stream.
const ENTITY_STREAM: u64 = 1;
const QUERY_STREAM: u64 = 2;

fn bench_entity(id: String, vector: Vec<f32>) -> pb::Entity {
    pb::Entity {
        entity_id: id,
        entity_type: "bench".to_owned(),
        embeddings: vec![pb::VectorEmbedding {
            vector,
            ..Default::default()
        }],
        ..Default::default()
    }
}

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
    fn human(&self) -> String {
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
struct Measurement {
    elapsed: Duration,
    requests: u64,
    items: u64,
    histogram: Histogram<u64>,
}

impl Measurement {
    fn report(
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
fn progress_bar(total_items: u64, items_name: &str) -> ProgressBar {
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
async fn connections(context: &Context, concurrency: u32) -> CliResult<Vec<Client>> {
    let mut clients = Vec::with_capacity(concurrency as usize);
    for _ in 0..concurrency {
        clients.push(connect(&context.connect).await?);
    }
    Ok(clients)
}

/// Runs one worker per client: each takes jobs from `next_job` until it returns `None`, runs
/// `execute` on each (which returns the items it handled) and times it. The first error stops
/// the benchmark.
async fn drive<Job, Next, Exec, Fut>(
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

/// Writes one batch; any rejected entity fails the benchmark.
async fn put_batch(
    mut client: Client,
    consistency: i32,
    entities: Vec<pb::Entity>,
) -> CliResult<u64> {
    let sent = entities.len() as u64;
    let reply = client
        .batch_put_entities(pb::BatchPutEntitiesRequest {
            entities,
            consistency_level: consistency,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("BatchPutEntities", status))?
        .into_inner();
    if reply.failure_count != 0 || reply.success_count as u64 != sent {
        return Err(CliError::Bench {
            bench: "ingest",
            reason: format!(
                "{} of {sent} entities rejected: {}",
                reply.failure_count, reply.error_message
            ),
        });
    }
    Ok(sent)
}

/// `bench ingest`.
async fn ingest(context: &Context, args: IngestArgs) -> CliResult<BenchReport> {
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "entities");
    let (dim, batch_size) = (args.dim as usize, u64::from(args.batch_size));
    let end = args.start.saturating_add(args.count);
    let mut next_index = args.start;
    let common = args.common.clone();
    let next_job = move || {
        if next_index >= end {
            return None;
        }
        let batch_end = end.min(next_index + batch_size);
        let batch: Vec<pb::Entity> = (next_index..batch_end)
            .map(|index| {
                let vector = synthetic_vector(common.seed, ENTITY_STREAM, index, dim);
                bench_entity(common.id(index), vector)
            })
            .collect();
        next_index = batch_end;
        Some(Ok(batch))
    };
    let consistency = context.consistency;
    let measurement = drive(clients, &progress, next_job, move |client, batch| {
        put_batch(client, consistency, batch)
    })
    .await?;
    Ok(measurement.report(
        "ingest",
        "entities",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("dim".into(), args.dim.to_string()),
            ("batch_size".into(), args.batch_size.to_string()),
            ("consistency".into(), consistency_name(consistency).into()),
        ],
    ))
}

fn consistency_name(wire: i32) -> &'static str {
    match pb::ConsistencyLevel::try_from(wire) {
        Ok(pb::ConsistencyLevel::ConsistencyQuorum) => "quorum",
        Ok(pb::ConsistencyLevel::ConsistencyAll) => "all",
        _ => "one",
    }
}

/// Fails a benchmark whose keyspace is empty.
fn require_keys(bench: &'static str, keys: u64) -> CliResult<()> {
    if keys == 0 {
        return Err(CliError::Bench {
            bench,
            reason: "--keys must be at least 1 (the entities `bench ingest` wrote)".into(),
        });
    }
    Ok(())
}

/// Jobs of `bench get` and `bench scan`: `count` ids drawn uniformly among the first `keys`
/// ingested ones, from the query random stream.
fn random_ids(
    common: &CommonArgs,
    count: u64,
    keys: u64,
) -> impl FnMut() -> Option<CliResult<String>> + use<> {
    let mut remaining = count;
    let mut rng = SplitMix64::new(common.seed, QUERY_STREAM);
    let common = common.clone();
    move || {
        if remaining == 0 {
            return None;
        }
        remaining -= 1;
        Some(Ok(common.id(rng.below(keys))))
    }
}

/// `bench get`: every read must find its entity (else the keyspace is wrong and the figures lie).
async fn get(context: &Context, args: GetBenchArgs) -> CliResult<BenchReport> {
    require_keys("get", args.keys)?;
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "reads");
    let next_job = random_ids(&args.common, args.count, args.keys);
    let consistency = context.consistency;
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |mut client, id: String| async move {
            let reply = client
                .get_entity(pb::GetEntityRequest {
                    entity_id: id.clone(),
                    consistency_level: consistency,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("GetEntity", status))?
                .into_inner();
            if !reply.found {
                return Err(CliError::Bench {
                    bench: "get",
                    reason: format!(
                        "entity {id} not found: is --keys larger than what was ingested?"
                    ),
                });
            }
            Ok(1)
        },
    )
    .await?;
    Ok(measurement.report(
        "get",
        "reads",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("keys".into(), args.keys.to_string()),
        ],
    ))
}

/// `bench scan`: range scans of `--limit` entities from random start ids.
async fn scan(context: &Context, args: ScanBenchArgs) -> CliResult<BenchReport> {
    require_keys("scan", args.keys)?;
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "scans");
    let next_job = random_ids(&args.common, args.count, args.keys);
    let limit = args.limit;
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |mut client, start: String| async move {
            let reply = client
                .range_scan(pb::RangeScanRequest {
                    start_key: start,
                    limit,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("RangeScan", status))?
                .into_inner();
            Ok(reply.entities.len() as u64)
        },
    )
    .await?;
    Ok(measurement.report(
        "scan",
        "entities",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("keys".into(), args.keys.to_string()),
            ("limit".into(), args.limit.to_string()),
        ],
    ))
}

/// The query request of the query benchmark.
fn bench_query_request(
    args: &QueryBenchArgs,
    consistency: i32,
    vector: Vec<f32>,
) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vector,
        k: args.k,
        expand_factor: args.expand.unwrap_or(0),
        consistency_level: consistency,
        max_hops: Some(args.max_hops),
        ef: args.ef.unwrap_or(0),
        include_entity: Some(args.with_entities),
        seeds: args.seeds,
        relations: args.relations.clone(),
        max_fan_out: args.fan_out,
        max_nodes: args.max_nodes,
        include_context: args.context,
        ..Default::default()
    }
}

/// Ingests a TEXMEX base set, row `r` as entity `<prefix><r>`.
async fn ingest_vectors(
    context: &Context,
    args: &QueryBenchArgs,
    path: &std::path::Path,
) -> CliResult<BenchReport> {
    let clients = connections(context, args.common.concurrency).await?;
    let size = std::fs::metadata(path)
        .map_err(|source| CliError::io(path, source))?
        .len();
    let mut reader = VecsReader::open(path)?;
    let common = args.common.clone();
    let batch_size = args.batch_size as usize;
    let mut dim = 0;
    let first_row = reader.next_row::<f32>()?;
    if let Some(row) = &first_row {
        dim = row.len();
    }
    let rows_estimate = size / (4 + 4 * dim.max(1) as u64);
    let progress = progress_bar(rows_estimate, "entities");
    let mut pending_first = first_row;
    let next_job = move || {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            let row = match pending_first.take() {
                Some(row) => row,
                None => match reader.next_row::<f32>() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(error) => return Some(Err(error)),
                },
            };
            let index = reader.rows_read() - 1;
            batch.push(bench_entity(common.id(index), row));
        }
        (!batch.is_empty()).then_some(Ok(batch))
    };
    let consistency = context.consistency;
    let measurement = drive(clients, &progress, next_job, move |client, batch| {
        put_batch(client, consistency, batch)
    })
    .await?;
    Ok(measurement.report(
        "ingest",
        "entities",
        args.common.concurrency,
        vec![
            ("vectors".into(), path.display().to_string()),
            ("dim".into(), dim.to_string()),
            ("batch_size".into(), args.batch_size.to_string()),
            ("consistency".into(), consistency_name(consistency).into()),
        ],
    ))
}

/// Recall of `found` ids against the first `k` ground-truth rows of one query.
fn recall_hits(prefix: &str, found: &[pb::QueryResult], truth: &[i32], k: usize) -> u64 {
    let truth: std::collections::HashSet<u64> = truth
        .iter()
        .take(k)
        .filter_map(|row| u64::try_from(*row).ok())
        .collect();
    found
        .iter()
        .take(k)
        .filter_map(|result| id_index(prefix, &result.entity_id))
        .filter(|row| truth.contains(row))
        .count() as u64
}

/// Runs the query vectors `indices` of `queries` with `template`'s options: in one
/// `QueryBatch` when `batched`, else in one `Query` (`indices` is then one vector). Returns one
/// reply per vector, in order.
async fn run_queries(
    mut client: Client,
    template: pb::QueryRequest,
    queries: &[Vec<f32>],
    indices: &[usize],
    batched: bool,
) -> CliResult<Vec<pb::QueryResponse>> {
    if let (false, [index]) = (batched, indices) {
        let request = pb::QueryRequest {
            query_vector: queries[*index].clone(),
            ..template
        };
        let reply = client
            .query(request)
            .await
            .map_err(|status| CliError::rpc("Query", status))?;
        return Ok(vec![reply.into_inner()]);
    }
    let request = pb::QueryBatchRequest {
        options: Some(template),
        vectors: indices
            .iter()
            .map(|index| pb::QueryVector {
                values: queries[*index].clone(),
            })
            .collect(),
        texts: Vec::new(),
    };
    let replies = client
        .query_batch(request)
        .await
        .map_err(|status| CliError::rpc("QueryBatch", status))?
        .into_inner()
        .replies;
    if replies.len() != indices.len() {
        return Err(CliError::Bench {
            bench: "query",
            reason: format!(
                "QueryBatch of {} vectors answered {} result lists",
                indices.len(),
                replies.len()
            ),
        });
    }
    Ok(replies)
}

/// `bench query`: synthetic, or a data set (ingest unless skipped, then queries and recall@k).
/// Returns the ingest report too when there was one.
async fn query(context: &Context, args: QueryBenchArgs) -> CliResult<Vec<BenchReport>> {
    let mut reports = Vec::new();
    let k = args.k as usize;
    // Query vectors and, in data-set mode, their ground truth.
    let (queries, truth): (Vec<Vec<f32>>, Option<Vec<Vec<i32>>>) = match (
        &args.vectors,
        &args.queries,
        &args.ground_truth,
    ) {
        (Some(base), Some(queries_path), Some(truth_path)) => {
            let queries: Vec<Vec<f32>> = texmex::read_all(queries_path)?;
            let truth: Vec<Vec<i32>> = texmex::read_all(truth_path)?;
            if truth.len() < queries.len() || truth[0].len() < k {
                return Err(CliError::input(
                    truth_path.display().to_string(),
                    format!(
                        "{} rows of {} ids: need at least {} rows (one per query) of at least k = {k}",
                        truth.len(),
                        truth[0].len(),
                        queries.len()
                    ),
                ));
            }
            if !args.skip_ingest {
                reports.push(ingest_vectors(context, &args, base).await?);
            }
            (queries, Some(truth))
        }
        _ => {
            let count = args.count.unwrap_or(1000).max(1);
            let queries = (0..count.min(100_000))
                .map(|index| {
                    synthetic_vector(args.common.seed, QUERY_STREAM, index, args.dim as usize)
                })
                .collect();
            (queries, None)
        }
    };
    if args.settle_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    }
    let count = args.count.unwrap_or(queries.len() as u64);
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(count, "queries");
    let hits = Arc::new(AtomicU64::new(0));
    let mut next = 0u64;
    let query_count = queries.len() as u64;
    let batch = u64::from(args.batch);
    let batched = args.batch > 1;
    // A job is the indices of the query vectors of one request.
    let next_job = move || {
        if next >= count {
            return None;
        }
        let end = count.min(next + batch);
        let indices: Vec<usize> = (next..end).map(|n| (n % query_count) as usize).collect();
        next = end;
        Some(Ok(indices))
    };
    let shared = Arc::new((queries, truth, args.common.id_prefix.clone()));
    let template = bench_query_request(&args, context.consistency, Vec::new());
    let worker_hits = Arc::clone(&hits);
    let context_nodes = Arc::new(AtomicU64::new(0));
    let worker_context_nodes = Arc::clone(&context_nodes);
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |client, indices: Vec<usize>| {
            let shared = Arc::clone(&shared);
            let hits = Arc::clone(&worker_hits);
            let context_nodes = Arc::clone(&worker_context_nodes);
            let template = template.clone();
            async move {
                let (queries, truth, prefix) = &*shared;
                let replies = run_queries(client, template, queries, &indices, batched).await?;
                let nodes: usize = replies
                    .iter()
                    .filter_map(|reply| reply.context.as_ref())
                    .map(|context| context.nodes.len())
                    .sum();
                context_nodes.fetch_add(nodes as u64, Ordering::Relaxed);
                if let Some(truth) = truth {
                    let found: u64 = indices
                        .iter()
                        .zip(&replies)
                        .map(|(index, reply)| {
                            recall_hits(prefix, &reply.results, &truth[*index], k)
                        })
                        .sum();
                    hits.fetch_add(found, Ordering::Relaxed);
                }
                Ok(indices.len() as u64)
            }
        },
    )
    .await?;
    let data_set = args.vectors.is_some();
    let queries = measurement.items;
    let mut report = measurement.report(
        "query",
        "queries",
        args.common.concurrency,
        vec![
            ("n".into(), count.to_string()),
            ("k".into(), args.k.to_string()),
            ("max_hops".into(), args.max_hops.to_string()),
            (
                "expand".into(),
                args.expand.map_or("default".into(), |e| e.to_string()),
            ),
            (
                "ef".into(),
                args.ef.map_or("default".into(), |e| e.to_string()),
            ),
            ("with_entities".into(), args.with_entities.to_string()),
            ("batch".into(), args.batch.to_string()),
            (
                "seeds".into(),
                args.seeds.map_or("k x expand".into(), |s| s.to_string()),
            ),
            ("relations".into(), args.relations.join(",")),
            (
                "fan_out".into(),
                args.fan_out.map_or("default".into(), |f| f.to_string()),
            ),
            (
                "max_nodes".into(),
                args.max_nodes.map_or("default".into(), |m| m.to_string()),
            ),
            ("context".into(), args.context.to_string()),
        ],
    );
    if args.context {
        let mean = context_nodes.load(Ordering::Relaxed) as f64 / queries.max(1) as f64;
        report
            .parameters
            .push(("context_entities_per_query".into(), format!("{mean:.1}")));
    }
    if data_set {
        report.recall_at_k =
            Some(hits.load(Ordering::Relaxed) as f64 / (queries.max(1) as f64 * k as f64));
    }
    reports.push(report);
    Ok(reports)
}

/// `allidb bench ...`: prints one report per phase (text, or one JSON line each).
pub async fn run(context: &mut Context, args: BenchArgs) -> CliResult<Outcome> {
    let reports = match args.bench {
        Bench::Ingest(args) => vec![ingest(context, args).await?],
        Bench::Get(args) => vec![get(context, args).await?],
        Bench::Query(args) => query(context, args).await?,
        Bench::Scan(args) => vec![scan(context, args).await?],
    };
    for report in &reports {
        context.printer.reply(report, BenchReport::human)?;
    }
    Ok(Outcome::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `allidb bench query <flags>` sends.
    fn bench_query_request_of(flags: &[&str]) -> pb::QueryRequest {
        use clap::Parser;
        let argv = ["allidb", "bench", "query"].iter().chain(flags);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("valid flags");
        let crate::cli::Command::Bench(BenchArgs {
            bench: Bench::Query(args),
        }) = cli.command
        else {
            panic!("not bench query");
        };
        bench_query_request(&args, 0, vec![1.0])
    }

    #[test]
    fn graph_rag_flags_reach_the_query_request() {
        let request = bench_query_request_of(&[
            "-k",
            "10",
            "--seeds",
            "12",
            "--max-hops",
            "2",
            "--relations",
            "depends,uses",
            "--relations",
            "cites",
            "--fan-out",
            "16",
            "--max-nodes",
            "1000",
            "--context",
            "--ef",
            "64",
        ]);
        assert_eq!(request.seeds, Some(12));
        assert_eq!(request.relations, ["depends", "uses", "cites"]);
        assert_eq!(request.max_fan_out, Some(16));
        assert_eq!(request.max_nodes, Some(1000));
        assert!(request.include_context);
        assert_eq!((request.k, request.max_hops, request.ef), (10, Some(2), 64));
        // Without the flags the request leaves them to the daemon (and k x expand seeds).
        let request = bench_query_request_of(&[]);
        assert_eq!(
            (request.seeds, request.max_fan_out, request.max_nodes),
            (None, None, None)
        );
        assert!(request.relations.is_empty() && !request.include_context);
    }

    #[test]
    fn ids_sort_in_index_order_and_parse_back() {
        assert_eq!(entity_id("b-", 42), "b-0000000042");
        assert!(entity_id("b-", 9) < entity_id("b-", 10));
        assert_eq!(id_index("b-", "b-0000000042"), Some(42));
        assert_eq!(id_index("b-", "x-1"), None);
    }

    #[test]
    fn synthetic_vectors_are_deterministic_bounded_and_distinct() {
        let a = synthetic_vector(7, ENTITY_STREAM, 3, 384);
        assert_eq!(a, synthetic_vector(7, ENTITY_STREAM, 3, 384));
        assert_ne!(a, synthetic_vector(7, ENTITY_STREAM, 4, 384));
        assert_ne!(a, synthetic_vector(7, QUERY_STREAM, 3, 384));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean: f32 = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.15, "{mean}");
    }

    #[test]
    fn recall_counts_overlap_with_the_first_k_truth_rows() {
        let result = |id: &str| pb::QueryResult {
            entity_id: id.into(),
            ..Default::default()
        };
        let found = [
            result("p0000000005"),
            result("p0000000002"),
            result("other"),
        ];
        assert_eq!(recall_hits("p", &found, &[2, 5, 9], 3), 2);
        assert_eq!(recall_hits("p", &found, &[2, 7, 5], 2), 1);
        assert_eq!(recall_hits("p", &found, &[], 2), 0);
    }

    #[tokio::test]
    async fn drive_counts_requests_items_and_stops_at_the_first_error() {
        // `drive` needs clients only to hand them to `execute`; a lazy channel never connects.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let client = pb::alli_db_client::AlliDbClient::with_interceptor(
            channel,
            super::super::connect::ApiKeyInterceptor::new(None).unwrap(),
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
