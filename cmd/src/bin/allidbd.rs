//! `allidbd`: the AlliDB daemon. Loads the layered configuration (defaults, `--config` file,
//! `ALLIDB_*` environment, flags), sets up logging and runs [`allidb_cmd::daemon::run`].
//!
//! Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 2 when the configuration or the API
//! keys are unusable (the message names the key, on standard error), 1 on any other failure.

use std::process::ExitCode;

use allidb_cmd::config::ConfigArgs;
use allidb_cmd::daemon::{self, DaemonError};
use clap::Parser;

/// The AlliDB daemon: serves the gRPC API (and its health and reflection services).
#[derive(Debug, Parser)]
#[command(name = "allidbd", version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn fail(error: &DaemonError) -> ExitCode {
    eprintln!("allidbd: {error}");
    ExitCode::from(error.exit_code())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.config.load() {
        Ok(config) => config,
        Err(error) => return fail(&DaemonError::Config(error)),
    };
    if let Err(error) = daemon::init_logging(&config.log) {
        return fail(&error);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("allidbd")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("allidbd: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "allidbd stopped");
            fail(&error)
        }
    }
}
