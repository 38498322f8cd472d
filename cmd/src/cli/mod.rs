//! The `allidb` command-line client (DESIGN.md §8): data commands, JSON-lines import,
//! benchmarks and operator commands against a running `allidbd` over gRPC, and API key
//! generation (no daemon needed).
//!
//! This module owns the command line (global flags and the command tree) and the dispatch to
//! [`data`], [`import`], [`bench`], [`admin`], [`backup`], [`keys`] and [`probe`]. Every connection goes through [`connect::connect`].
//! Invariants: the API key (flag `--api-key` or `ALLIDB_API_KEY`) is only sent as request
//! metadata, never printed, logged or shown in `--help` (its environment value is hidden); a
//! command either returns an [`Outcome`] (complete or partial) or a [`CliError`], which `main`
//! maps to the exit codes of [`error`].

pub mod admin;
pub mod backup;
pub mod bench;
pub mod cluster;
pub mod connect;
pub mod data;
pub mod error;
pub mod import;
pub mod keys;
pub mod output;
pub mod parse;
pub mod probe;
pub mod source;
pub mod texmex;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use allidb_api::pb;
use clap::{Parser, Subcommand, ValueEnum};

use self::connect::ConnectOptions;
pub use self::error::{CliError, CliResult, Outcome};
use self::output::Printer;

/// Default daemon address (the default `server.grpc_addr` of `allidbd`); bare, so its scheme
/// follows `--tls-ca` (https with it, http without).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7000";

/// An API key from the command line or the environment; its `Debug` form is redacted.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// Consistency level of the requests a command sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// One replica.
    One,
    /// A majority of replicas.
    Quorum,
    /// Every replica.
    All,
}

impl ConsistencyArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let level = match self {
            Self::One => pb::ConsistencyLevel::ConsistencyOne,
            Self::Quorum => pb::ConsistencyLevel::ConsistencyQuorum,
            Self::All => pb::ConsistencyLevel::ConsistencyAll,
        };
        level as i32
    }
}

/// `allidb`: the AlliDB command-line client.
#[derive(Debug, Parser)]
#[command(
    name = "allidb",
    version,
    about = "AlliDB command-line client (talks gRPC to allidbd)"
)]
pub struct Cli {
    /// gRPC address of the daemon (`http://host:port` or `https://host:port`; a bare
    /// `host:port` means https with --tls-ca, http without).
    #[arg(long, global = true, env = "ALLIDB_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    // The TLS flags have no environment variables: `ALLIDB_TLS_*` are the daemon's `[tls]`
    // configuration overrides.
    /// CA certificate(s) (PEM) that signed the daemon's certificate: connect with TLS and
    /// verify the daemon against them.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for a daemon that requires client certificates (mTLS).
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Name the daemon's certificate must carry, when it differs from the host in --addr (e.g.
    /// connecting by IP address to a certificate issued for a DNS name).
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// API key sent as `x-allidb-api-key` (never printed).
    #[arg(long, global = true, env = "ALLIDB_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// Print replies as JSON (one document per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Consistency level of reads and writes.
    #[arg(long, global = true, value_enum, default_value_t = ConsistencyArg::One)]
    pub consistency: ConsistencyArg,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Tasks the command keeps busy at once: a benchmark's `--concurrency` workers, an
    /// import's `--concurrency` batches in flight plus its reader, one for every other command.
    /// The client's runtime needs no more threads than this: a second thread with one request
    /// in flight only adds cross-thread wake-ups (measured: 20% more client CPU per query for
    /// `bench query --concurrency 1`, docs/benchmarks-e2e.md).
    pub fn busy_tasks(&self) -> usize {
        match &self.command {
            Command::Bench(args) => args.bench.common().concurrency as usize,
            Command::Import(args) => args.concurrency as usize + 1,
            _ => 1,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write (replace) one entity from a JSON file, standard input or flags.
    Put(data::PutArgs),
    /// Read entities by id.
    Get(data::GetArgs),
    /// Delete entities by id.
    Delete(data::DeleteArgs),
    /// What one source (document) contributed: delete it, or replace it with a new version.
    Source(source::SourceArgs),
    /// Delete the entities of given types and attributes (`--dry-run` counts them).
    DeleteWhere(source::DeleteWhereArgs),
    /// Vector query with optional graph expansion and filters.
    Query(data::QueryArgs),
    /// List entities in id order, one page or all pages.
    Scan(data::ScanArgs),
    /// Breadth-first traversal of the graph from start entities.
    Traverse(data::TraverseArgs),
    /// The daemon's health (needs no API key).
    Health,
    /// One GET of the daemon's /readyz or /healthz on its admin port: exit 0 on 200, 1
    /// otherwise (a container health check).
    Probe(probe::ProbeArgs),
    /// Import entities from a JSON-lines file (one entity per line).
    Import(import::ImportArgs),
    /// Benchmarks: ingest, get, query, scan.
    Bench(bench::BenchArgs),
    /// Write an online backup of the daemon's data into DIR on its host (admin key).
    Checkpoint(admin::CheckpointArgs),
    /// Compact the daemon's storage fully: tombstones past storage.gc_grace_secs leave the disk
    /// (operator key).
    Compact,
    /// Backups in an S3-compatible bucket or a directory: create, list, verify, delete, restore.
    Backup(backup::BackupArgs),
    /// Tenants this node holds: list, stats, drop (admin key).
    Tenant(admin::TenantArgs),
    /// API key management (no daemon needed).
    Keys(keys::KeysArgs),
    /// The ring as one node sees it, from its admin port: status, ring, endpoints.
    Cluster(cluster::ClusterArgs),
}

/// What every command needs besides its own arguments.
#[derive(Debug)]
pub struct Context {
    /// Where to connect.
    pub connect: ConnectOptions,
    /// Consistency level of requests (wire value).
    pub consistency: i32,
    /// Output.
    pub printer: Printer,
}

/// The TLS settings of `--tls-ca`, `--tls-cert`, `--tls-key` and `--tls-server-name` (checked
/// here rather than by clap, whose `requires` does not see global flags given before the
/// command).
fn client_tls(cli: &Cli) -> CliResult<Option<tonic::transport::ClientTlsConfig>> {
    let identity = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        (Some(_), None) => return Err(CliError::input("--tls-cert", "needs --tls-key")),
        (None, Some(_)) => return Err(CliError::input("--tls-key", "needs --tls-cert")),
    };
    let needs_ca = "needs --tls-ca (the CA that signed the daemon's certificate)";
    match &cli.tls_ca {
        Some(ca) => {
            let config =
                crate::tls::client_tls_config(crate::tls::ClientTlsFiles { ca, identity })?;
            Ok(Some(match &cli.tls_server_name {
                Some(name) => config.domain_name(name.clone()),
                None => config,
            }))
        }
        None if identity.is_some() => Err(CliError::input("--tls-cert", needs_ca)),
        None if cli.tls_server_name.is_some() => {
            Err(CliError::input("--tls-server-name", needs_ca))
        }
        None => Ok(None),
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> CliResult<Outcome> {
    let tls = client_tls(&cli)?;
    let mut context = Context {
        connect: ConnectOptions {
            addr: cli.addr,
            api_key: cli.api_key.map(|key| key.0),
            tls,
        },
        consistency: cli.consistency.wire(),
        printer: Printer::new(cli.json),
    };
    let outcome = match cli.command {
        Command::Put(args) => data::put(&mut context, args).await,
        Command::Get(args) => data::get(&mut context, args).await,
        Command::Delete(args) => data::delete(&mut context, args).await,
        Command::Source(args) => source::run(&mut context, args).await,
        Command::DeleteWhere(args) => source::delete_where(&mut context, args).await,
        Command::Query(args) => data::query(&mut context, args).await,
        Command::Scan(args) => data::scan(&mut context, args).await,
        Command::Traverse(args) => data::traverse(&mut context, args).await,
        Command::Health => data::health(&mut context).await,
        Command::Probe(args) => probe::run(&mut context, args).await,
        Command::Import(args) => import::run(&mut context, args).await,
        Command::Bench(args) => bench::run(&mut context, args).await,
        Command::Checkpoint(args) => admin::checkpoint(&mut context, args).await,
        Command::Compact => admin::compact(&mut context).await,
        Command::Tenant(args) => admin::tenant(&mut context, args).await,
        Command::Backup(args) => backup::run(&mut context, args).await,
        Command::Keys(args) => keys::run(&mut context, args),
        Command::Cluster(args) => cluster::run(&mut context, args).await,
    }?;
    context.printer.flush()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_and_the_api_key_stays_hidden() {
        let cli = Cli::try_parse_from([
            "allidb",
            "get",
            "a",
            "--addr",
            "http://h:1",
            "--api-key",
            "s3cret",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.addr, "http://h:1");
        assert!(cli.json);
        assert!(!format!("{cli:?}").contains("s3cret"));
        let tls = Cli::try_parse_from([
            "allidb",
            "--tls-ca",
            "ca.pem",
            "health",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .unwrap();
        assert_eq!(tls.tls_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.tls_key, Some(PathBuf::from("k.pem")));
        let incomplete: [(&[&str], &str); 4] = [
            (&["--tls-cert", "c.pem", "--tls-ca", "ca.pem"], "--tls-key"),
            (&["--tls-key", "k.pem"], "--tls-cert"),
            (&["--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-ca"),
            (&["--tls-server-name", "db.internal"], "--tls-ca"),
        ];
        for (flags, named) in incomplete {
            let cli =
                Cli::try_parse_from(["allidb"].iter().chain(flags).chain(&["health"])).unwrap();
            let message = client_tls(&cli).unwrap_err().to_string();
            assert!(message.contains(named), "{flags:?}: {message}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("ALLIDB_API_KEY") && help.contains("ALLIDB_ADDR"),
            "{help}"
        );
    }
}
