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
    /// The engine has been closed, or it refuses writes because of an I/O failure (see
    /// [`crate::engine::Health`]). The message names the failing operation and never a path.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The data volume is full, or below the low-space watermark: writes are refused. The
    /// message says what could not be written and what clears the condition, never a path.
    #[error("no space left on device on the data volume: {0}")]
    NoSpace(String),
}

/// How every refusal for lack of space starts (clients and operators match on it; it is what
/// [`Error::NoSpace`] displays first).
pub const NO_SPACE: &str = "no space left on device on the data volume";

/// The message of a write refused because `operation` failed in a way that stops the engine
/// until a restart (`engine::health`): `cause` is path-free, `None` when the volume was full
/// (the [`NO_SPACE`] prefix then says it).
pub(crate) fn stopped_message(operation: &str, cause: Option<&str>) -> String {
    let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
    format!(
        "the {operation} failed{cause}; writes are refused until allidbd is restarted \
         (acknowledged writes are safe; unacknowledged ones may or may not have been applied)"
    )
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

    /// True when the error means the data volume is full: [`Error::NoSpace`], or an I/O error
    /// `ENOSPC` (`StorageFull`) or `EDQUOT` (a quota).
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::NoSpace(_) => true,
            Error::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.kind() == std::io::ErrorKind::QuotaExceeded
                    || source.raw_os_error() == Some(libc::ENOSPC)
                    || source.raw_os_error() == Some(libc::EDQUOT)
            }
            _ => false,
        }
    }

    /// The error without file paths, for messages sent to clients: an I/O error's OS message,
    /// a corruption's kind (its file and offset go to the log), other variants in full.
    pub fn cause(&self) -> String {
        match self {
            Error::Io { source, .. } => source.to_string(),
            Error::Corruption { .. } => "damaged data (file and offset in the server log)".into(),
            other => other.to_string(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_errors_start_with_the_condition_and_hide_paths() {
        let error = Error::NoSpace("the memtable flush cannot write its files".into());
        assert_eq!(
            error.to_string(),
            format!("{NO_SPACE}: the memtable flush cannot write its files")
        );
        assert!(error.is_no_space());
        let full = Error::io(
            "/data/lsm/000007.sst",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(full.is_no_space());
        assert!(!full.cause().contains("000007"), "{}", full.cause());
        let eio = Error::io(
            "/data/lsm/000007.sst",
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(!eio.is_no_space());
    }
}
