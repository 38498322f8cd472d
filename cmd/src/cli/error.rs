//! The `allidb` CLI's error type and its process exit codes.
//!
//! Every failure of a command is a [`CliError`] naming what it was working on (the address, the
//! RPC, the file and line). Invariant: no variant carries or prints the API key. Partial outcomes
//! (an id not found, an import with failed lines) are not errors: commands report them through
//! [`Outcome`], so a script can tell "the command ran and some items failed" from "it could not
//! run".

use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a command that ran completely.
pub const EXIT_OK: u8 = 0;
/// Exit code of a command that could not run (connection, RPC, I/O, invalid input).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of invalid command-line usage (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a command that ran but not for every item: an id not found, lines not imported.
pub const EXIT_PARTIAL: u8 = 3;

/// How a command that ran ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done or found.
    Complete,
    /// Some items were not found or not written; the output says which.
    Partial,
}

impl Outcome {
    /// `Partial` when `complete` is false.
    pub fn from_complete(complete: bool) -> Self {
        if complete {
            Self::Complete
        } else {
            Self::Partial
        }
    }

    /// The process exit code of this outcome.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Complete => ExitCode::from(EXIT_OK),
            Self::Partial => ExitCode::from(EXIT_PARTIAL),
        }
    }
}

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--addr` is not a usable endpoint URI.
    #[error("invalid server address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The API key cannot be sent as gRPC metadata (it is not printable ASCII).
    #[error("the API key is not valid gRPC metadata (printable ASCII only)")]
    InvalidApiKey,
    /// The TLS files of `--tls-ca`, `--tls-cert` or `--tls-key` are unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The connection to the daemon failed (the message carries the causes, e.g. a certificate
    /// the CA did not sign).
    #[error("cannot connect to {addr}: {}", error_chain(source))]
    Connect {
        /// The address.
        addr: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The daemon answered an RPC with an error status.
    #[error("{rpc} failed: {code:?}: {message}")]
    Rpc {
        /// The RPC name, e.g. `PutEntity`.
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file (`-` for standard input or output).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Input the user gave (a flag value, a JSON document, a data set file) is malformed.
    #[error("{origin}: {reason}")]
    Input {
        /// Where the input came from: a flag (`--vector`), a file, a file and line or offset.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A backup, restore, listing, verification or prune failed.
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    /// A benchmark could not produce a valid measurement (e.g. the daemon rejected writes).
    #[error("benchmark {bench}: {reason}")]
    Bench {
        /// The benchmark name.
        bench: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// `error` and its sources, joined by `: ` (tonic's transport errors say little on their own).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl CliError {
    /// An [`CliError::Rpc`] from a status returned by `rpc`.
    pub fn rpc(rpc: &'static str, status: tonic::Status) -> Self {
        Self::Rpc {
            rpc,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// An [`CliError::Input`] for malformed user input.
    pub fn input(origin: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Input {
            origin: origin.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`CliError::Io`] for a file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of CLI operations.
pub type CliResult<T> = Result<T, CliError>;
