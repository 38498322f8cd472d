//! `allidbd`: the AlliDB daemon. Loads the layered configuration (defaults, `--config` file,
//! `ALLIDB_*` environment, flags), sets up logging and runs [`allidb_cmd::daemon::run`].
//!
//! Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 2 when the configuration or the API
//! keys are unusable (the message names the key, on standard error), 1 on any other failure.

use std::process::ExitCode;

use allidb_cmd::config::ConfigArgs;
use allidb_cmd::daemon::{self, DaemonError};
use clap::Parser;

/// jemalloc with its background purge threads: freed memory goes back to the system within
/// seconds of a burst (dirty pages decay in 10 s), where glibc's malloc kept all of it; chosen on
/// `bench/burst.py` (docs/benchmarks.md "Memory under a burst": RSS 60 s after the burst 693
/// MiB with jemalloc, 898 MiB with mimalloc, 4,126 MiB with glibc).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its first allocation: one arena per physical CPU, each
/// thread allocating from the arena of the CPU it runs on (jemalloc's default is four arenas per
/// CPU, each thread tied to one: the freed pages of each arena stay resident until they decay,
/// so a burst held several copies of its working set; `tests/tests/admission.rs` measured a
/// burst's peak at 277-370 MiB over the baseline with the default and 217-292 MiB with this, at
/// the same ingest rate, docs/benchmarks.md "Memory under a burst"). `_RJEM_MALLOC_CONF` in the
/// environment still overrides it.
// SAFETY: jemalloc reads this symbol as a NUL-terminated C string of options; the bytes are
// static, never written, and end with the NUL.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &[u8; 20] = b"percpu_arena:phycpu\0";

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
