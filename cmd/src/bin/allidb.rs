//! `allidb`: the AlliDB command-line client. Parses the command line, runs the command on a Tokio
//! runtime and maps the result to the exit codes of `allidb_cmd::cli::error` (0 complete,
//! 1 error, 2 usage, 3 partial). Errors go to standard error; the API key never does.

use std::process::ExitCode;

use allidb_cmd::cli::error::EXIT_ERROR;
use allidb_cmd::cli::{self, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One runtime thread per busy task, up to the cores (TOKIO_WORKER_THREADS, when set, still
    // decides).
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cli.busy_tasks().clamp(1, cores));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("allidb: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("allidb: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
