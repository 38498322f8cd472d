//! The index crate's one error type. Every variant carries the context needed to act on it
//! (which tenant or file, what was expected and what was received).
//!
//! Invariant: no code in this crate panics on caller input; it returns one of these instead.

use std::path::PathBuf;

/// Result alias for the index crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the vector index, graph index or query planner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed a value the index refuses (non-finite vector, option out of range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is well formed but the state of the system refuses it (e.g. a checkpoint
    /// target directory that already holds files); retrying after fixing that state can succeed.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The node cannot take the request now (e.g. a tenant's vector tail stayed full for the
    /// whole wait); retrying later can succeed.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A vector's dimension differs from the one fixed for the tenant's index.
    #[error("vector dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The dimension fixed by config or by the first vector.
        expected: usize,
        /// The dimension of the vector received.
        got: usize,
    },
    /// An operating-system I/O error on a named file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A persisted index file fails its checksum or does not parse; it must be rebuilt.
    #[error("corrupt index file {path}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The storage engine failed (or refused the request).
    #[error(transparent)]
    Storage(#[from] allidb_storage::Error),
    /// The ANN engine reported a failure (dump or load) with its own message.
    #[error("ANN engine error ({context}): {message}")]
    Engine {
        /// What the index was doing.
        context: String,
        /// The engine's message.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a corruption error.
    pub fn corruption(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// True when the error means the data volume is full (`ENOSPC`, `EDQUOT`).
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.kind() == std::io::ErrorKind::QuotaExceeded
                    || source.raw_os_error() == Some(libc::ENOSPC)
                    || source.raw_os_error() == Some(libc::EDQUOT)
            }
            Error::Storage(storage) => storage.is_no_space(),
            _ => false,
        }
    }

    /// The error without file paths (for messages sent to clients).
    pub fn cause(&self) -> String {
        match self {
            Error::Io { source, .. } => source.to_string(),
            Error::Corruption { .. } => "damaged data (file in the server log)".to_owned(),
            Error::Engine { message, .. } => message.clone(),
            Error::Storage(storage) => storage.cause(),
            other => other.to_string(),
        }
    }

    /// Builds an invalid-argument error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
