//! The storage crate's one error type. Every variant carries the context an operator needs
//! (which file, which key, what was expected) so an error can be acted on without a debugger.

use std::path::PathBuf;

/// Result alias for the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes fail a checksum or do not parse: the data is damaged, never silently used.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record or block.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A caller passed a value the engine refuses (bad id, oversized payload, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A payload could not be encoded or decoded with the versioned codec.
    #[error("codec error: {0}")]
    Codec(String),
    /// The engine has been closed, or a background thread failed and the engine stopped
    /// accepting writes to avoid acknowledging data it cannot persist.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
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
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
