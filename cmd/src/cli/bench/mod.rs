//! `allidb bench`: end-to-end benchmarks against a running daemon — `ingest`, `get`, `query`
//! (synthetic, or a TEXMEX data set with recall@k) and `scan`: their flags here, how a benchmark
//! runs and what it reports in [`driver`], the synthetic data in [`data`], the benchmarks in
//! [`write`], [`read`] and [`query`].
//!
//! Every benchmark runs `--concurrency` workers, each on its own connection, that pull jobs from a
//! shared source until it is exhausted, time each request into an HDR histogram (microseconds)
//! and count the items it handled. The report gives throughput (requests and items per second
//! over the wall time) and p50/p95/p99/max request latency. Synthetic vectors come from a
//! seeded generator, so `bench ingest` and `bench query` agree on the data without storing it.
//! Invariants: a benchmark never reports a figure from a run with errors (a failed request or a
//! rejected entity fails the benchmark); a data-set benchmark reads the base set in bounded
//! memory.

mod data;
mod driver;
mod query;
mod read;
mod write;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Context;
use super::error::{CliResult, Outcome};
pub use driver::{BenchReport, LatencyMs};

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
    /// Write N entities of dimension D (and optionally a text chunk) in batches
    /// (BatchPutEntities).
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
    /// Vector dimension (0: entities without a vector).
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    pub dim: u32,
    /// Bytes of text per entity, in one chunk of seeded synthetic words (0: no text).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub text_bytes: u32,
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

/// `allidb bench ...`: prints one report per phase (text, or one JSON line each).
pub async fn run(context: &mut Context, args: BenchArgs) -> CliResult<Outcome> {
    let reports = match args.bench {
        Bench::Ingest(args) => vec![write::ingest(context, args).await?],
        Bench::Get(args) => vec![read::get(context, args).await?],
        Bench::Query(args) => query::query(context, args).await?,
        Bench::Scan(args) => vec![read::scan(context, args).await?],
    };
    for report in &reports {
        context.printer.reply(report, BenchReport::human)?;
    }
    Ok(Outcome::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_index_order_and_parse_back() {
        assert_eq!(entity_id("b-", 42), "b-0000000042");
        assert!(entity_id("b-", 9) < entity_id("b-", 10));
        assert_eq!(id_index("b-", "b-0000000042"), Some(42));
        assert_eq!(id_index("b-", "x-1"), None);
    }
}
