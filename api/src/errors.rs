//! Mapping of store errors to gRPC statuses (WIRE.md §1, DESIGN.md §5).
//!
//! * the caller's fault (`InvalidArgument`, `DimensionMismatch`, in the index or the storage
//!   engine) -> `INVALID_ARGUMENT` with the store's message, which names only the caller's own
//!   values; a state refusing a valid request (`FailedPrecondition`, e.g. a non-empty checkpoint
//!   target) -> `FAILED_PRECONDITION` with the store's message;
//! * the data volume is full (or below the low-space watermark) -> `RESOURCE_EXHAUSTED`, the
//!   message starting with "no space left on device on the data volume" and saying what
//!   clears it;
//! * the engine is closed or refuses writes for another I/O failure, or an I/O operation
//!   failed -> `UNAVAILABLE` naming the operation and the OS error (a client may retry
//!   elsewhere or later; `docs/operations.md` "Disk full and I/O errors");
//! * damaged stored data -> `DATA_LOSS`;
//! * everything else -> `INTERNAL`.
//!
//! Must never: put a file path, another tenant's key or a storage-internal detail into a status
//! sent to a client. Server-side failures are logged in full here and answered with a generic
//! message; only caller errors carry the store's text.

use allidb_cluster::ClusterError;
use allidb_index::Error as IndexError;
use allidb_storage::Error as StorageError;
use tonic::Status;

/// The status for a failed store call made while serving `operation` (for the log).
pub fn store_status(operation: &str, error: IndexError) -> Status {
    match error {
        IndexError::InvalidArgument(message) => Status::invalid_argument(message),
        IndexError::DimensionMismatch { .. } => Status::invalid_argument(error.to_string()),
        IndexError::FailedPrecondition(message) => Status::failed_precondition(message),
        IndexError::ResourceExhausted(message) => Status::resource_exhausted(message),
        IndexError::Storage(storage) => storage_status(operation, storage),
        IndexError::Corruption { .. } => {
            tracing::error!(operation, error = %error, "index data is damaged");
            Status::data_loss("stored index data is damaged; the operator has been alerted")
        }
        IndexError::Io { .. } => io_status(operation, &error, error.is_no_space(), &error.cause()),
        IndexError::Engine { .. } => internal(operation, &error),
    }
}

/// The status for a failed storage engine call made while serving `operation`.
pub fn storage_status(operation: &str, error: StorageError) -> Status {
    match error {
        StorageError::InvalidArgument(message) => Status::invalid_argument(message),
        StorageError::Unavailable(ref reason) => {
            tracing::warn!(operation, error = %error, "storage engine unavailable");
            Status::unavailable(format!(
                "{operation}: the storage engine is not accepting requests: {reason}"
            ))
        }
        StorageError::NoSpace(_) => {
            tracing::warn!(operation, error = %error, "write refused: the data volume is full");
            Status::resource_exhausted(error.to_string())
        }
        StorageError::Corruption { .. } => {
            tracing::error!(operation, error = %error, "stored data is damaged");
            Status::data_loss("stored data is damaged; the operator has been alerted")
        }
        StorageError::Io { .. } => {
            io_status(operation, &error, error.is_no_space(), &error.cause())
        }
        StorageError::Codec(_) => internal(operation, &error),
    }
}

/// The status of an I/O failure while serving `operation` (logged in full, with its path):
/// `RESOURCE_EXHAUSTED` for a full volume, else `UNAVAILABLE` with the path-free `cause`.
fn io_status(
    operation: &str,
    error: &dyn std::fmt::Display,
    no_space: bool,
    cause: &str,
) -> Status {
    tracing::error!(operation, %error, "I/O failure while serving a request");
    if no_space {
        Status::resource_exhausted(format!(
            "{}: {operation} could not write its files",
            allidb_storage::error::NO_SPACE
        ))
    } else {
        Status::unavailable(format!(
            "{operation} failed: I/O error on the data volume: {cause}"
        ))
    }
}

/// The status for a failed coordinator call (cluster mode) made while serving `operation`: a
/// level not reached is `UNAVAILABLE` with the coordinator's message (it names the level and the
/// replicas by node name, never data); the local store's errors map as above.
pub fn cluster_status(operation: &str, error: ClusterError) -> Status {
    match error {
        ClusterError::Store(error) => store_status(operation, error),
        ClusterError::Unavailable(message) => Status::unavailable(message),
        ClusterError::InvalidRange(message) => Status::invalid_argument(message),
        ClusterError::TopologyRefused(message) => Status::failed_precondition(message),
        other => {
            tracing::warn!(operation, error = %other, "replication failed");
            Status::unavailable(format!("{operation}: replication failed: {other}"))
        }
    }
}

/// `INTERNAL` without the error's details (logged instead).
pub fn internal(operation: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::error!(operation, error = %error, "request failed with a server error");
    Status::internal(format!("{operation} failed with a server error"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tonic::Code;

    use super::*;

    fn secret_path() -> PathBuf {
        PathBuf::from("/data/lsm/tenant-b/000042.sst")
    }

    #[test]
    fn caller_errors_keep_their_message() {
        let status = store_status("put", IndexError::invalid("embedding version 1 is empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("embedding version 1 is empty"));

        let status = store_status(
            "query",
            IndexError::DimensionMismatch {
                expected: 3,
                got: 4,
            },
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("expected 3, got 4"));

        let status = store_status(
            "put",
            IndexError::Storage(StorageError::InvalidArgument("id too long".into())),
        );
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "id too long")
        );
    }

    /// `ENOSPC` on Linux.
    const ENOSPC: i32 = 28;

    #[test]
    fn io_failures_name_the_operation_and_the_cause() {
        let status = store_status(
            "put entities",
            IndexError::Storage(StorageError::io(
                secret_path(),
                std::io::Error::from_raw_os_error(ENOSPC),
            )),
        );
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::ResourceExhausted,
                "no space left on device on the data volume: put entities could not write its files"
            )
        );
        let status = store_status(
            "get entity",
            IndexError::Storage(StorageError::io(
                secret_path(),
                std::io::Error::other("disk gone"),
            )),
        );
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::Unavailable,
                "get entity failed: I/O error on the data volume: disk gone"
            )
        );
    }

    #[test]
    fn server_errors_map_by_kind_and_hide_paths() {
        let cases = [
            (
                IndexError::Storage(StorageError::Unavailable("closed".into())),
                Code::Unavailable,
            ),
            (
                IndexError::Storage(StorageError::corruption(secret_path(), 7, "bad crc")),
                Code::DataLoss,
            ),
            (
                IndexError::corruption(secret_path(), "bad checksum"),
                Code::DataLoss,
            ),
            (
                IndexError::Storage(StorageError::io(
                    secret_path(),
                    std::io::Error::other("disk gone"),
                )),
                Code::Unavailable,
            ),
            (
                IndexError::io(secret_path(), std::io::Error::other("disk gone")),
                Code::Unavailable,
            ),
            (
                IndexError::Storage(StorageError::io(
                    secret_path(),
                    std::io::Error::from_raw_os_error(ENOSPC),
                )),
                Code::ResourceExhausted,
            ),
            (
                IndexError::Storage(StorageError::NoSpace("flush".into())),
                Code::ResourceExhausted,
            ),
            (
                IndexError::Storage(StorageError::Codec("bad varint".into())),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let status = store_status("scan", error);
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                !status.message().contains("tenant-b"),
                "{}",
                status.message()
            );
            assert!(!status.message().contains(".sst"), "{}", status.message());
        }
    }
}
