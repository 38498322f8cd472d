//! [`ObjectTarget`]: where backups go, `s3://bucket[/prefix]` (any S3-compatible server,
//! path-style requests) or `file:///absolute/dir`, through the `object_store` crate.
//!
//! What it owns: parsing a target URL, building the store (endpoint, region and credentials
//! from [`S3Settings`], falling back to the standard `AWS_*` environment variables), keys
//! relative to the prefix, uploads with bounded memory (multipart above [`PART_BYTES`]) and an
//! optional bandwidth cap, and turning store errors into causes an operator can act on (wrong
//! credentials, missing bucket, unreachable endpoint).
//!
//! Invariants: every key it touches is under the target's prefix; an upload either completes
//! (the object appears whole) or fails with no object, and a multipart upload that fails (a
//! part, its completion, a read of the file, or the file's bytes no longer matching their hash)
//! is aborted once its parts in flight ended (best effort: a failed abort is logged; a killed
//! process sends none). Requests are retried with exponential backoff by `object_store`
//! before an error is returned. Must never log or print credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, PutPayload, RetryConfig,
};
use tokio::io::AsyncReadExt;
use tokio::task::{JoinError, JoinSet};

use super::{BackupError, BackupResult};
use allidb_cluster::stream::Throttle;

/// Files above this size are uploaded in parts of this size (S3's minimum part is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once: the memory an upload holds is this many parts and
/// the one being read.
const PARTS_IN_FLIGHT: usize = 2;
/// How long a request is retried (with exponential backoff) when [`S3Settings::retry_timeout`]
/// is unset.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries of one request at most (within the retry timeout).
const MAX_RETRIES: usize = 10;

/// S3 connection settings; unset fields fall back to the standard AWS environment variables
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://host:port` of an S3-compatible server (unset: AWS).
    pub endpoint: Option<String>,
    /// The region (S3-compatible servers usually accept any, e.g. `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Total time a request is retried for (with exponential backoff) before it fails.
    pub retry_timeout: Option<Duration>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}

/// An object store and a prefix in it.
#[derive(Clone, Debug)]
pub struct ObjectTarget {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: Option<String>,
    /// The S3 server and bucket, as errors name them (`None` for a `file://` target).
    s3: Option<S3Place>,
}

/// Where an S3 target's requests go, for error messages.
#[derive(Clone, Debug)]
struct S3Place {
    bucket: String,
    /// The endpoint URL (`None`: AWS itself).
    endpoint: Option<String>,
    retry_timeout: Duration,
}

impl ObjectTarget {
    /// Opens `url` (`s3://bucket[/prefix]` or `file:///dir`; a directory is created if
    /// missing when `create_dir` is set). Nothing is sent to the store yet: see
    /// [`ObjectTarget::probe`].
    pub fn open(url: &str, s3: &S3Settings, create_dir: bool) -> BackupResult<Self> {
        let invalid = |reason: &str| BackupError::InvalidTarget {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("names no bucket (expected s3://bucket[/prefix])"));
            }
            let retry_timeout = s3.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT);
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(false)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: MAX_RETRIES,
                    retry_timeout,
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(10))
                        .with_timeout(Duration::from_secs(300)),
                );
            let endpoint = s3
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = &endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|error| invalid(&error.to_string()))?;
            Ok(Self {
                url: url.to_owned(),
                store: Arc::new(store),
                prefix: clean_prefix(prefix),
                s3: Some(S3Place {
                    bucket: bucket.to_owned(),
                    endpoint,
                    retry_timeout,
                }),
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            let dir = PathBuf::from(path);
            if !dir.is_absolute() {
                return Err(invalid(
                    "a file:// target needs an absolute path (file:///dir)",
                ));
            }
            if create_dir {
                std::fs::create_dir_all(&dir).map_err(|e| BackupError::io(&dir, e))?;
            } else if !dir.is_dir() {
                return Err(BackupError::NotFound {
                    target: url.to_owned(),
                    reason: format!("directory {} does not exist", dir.display()),
                });
            }
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|error| invalid(&error.to_string()))?;
            Ok(Self {
                url: url.to_owned(),
                store: Arc::new(store),
                prefix: None,
                s3: None,
            })
        } else {
            Err(invalid(
                "unknown scheme (expected s3://bucket[/prefix] or file:///dir)",
            ))
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, relative: &str) -> ObjectPath {
        match &self.prefix {
            Some(prefix) => ObjectPath::from(format!("{prefix}/{relative}")),
            None => ObjectPath::from(relative),
        }
    }

    fn relative(&self, key: &ObjectPath) -> String {
        let key = key.as_ref();
        match &self.prefix {
            Some(prefix) => key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(key)
                .to_owned(),
            None => key.to_owned(),
        }
    }

    fn store_error(
        &self,
        operation: &'static str,
        key: &str,
        error: &object_store::Error,
    ) -> BackupError {
        BackupError::Store {
            target: self.url.clone(),
            operation,
            key: key.to_owned(),
            cause: cause(error, self.s3.as_ref()),
        }
    }

    /// Checks that the store answers and the bucket exists (one listing request), so a wrong
    /// credential or bucket fails before anything is uploaded.
    pub async fn probe(&self) -> BackupResult<()> {
        self.list("backups/").await.map(|_| ())
    }

    /// The size of the object at `relative`, `None` if there is none.
    pub async fn size_of(&self, relative: &str) -> BackupResult<Option<u64>> {
        match self.store.head(&self.key(relative)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.store_error("read", relative, &error)),
        }
    }

    /// The whole object at `relative`, `None` if there is none (for small objects: manifests).
    pub async fn read(&self, relative: &str) -> BackupResult<Option<Vec<u8>>> {
        let result = match self.store.get(&self.key(relative)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.store_error("read", relative, &error)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|error| self.store_error("read", relative, &error))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Streams the object at `relative` into `sink`, chunk by chunk; `None` if there is none.
    /// Returns the number of bytes passed.
    pub async fn read_into(
        &self,
        relative: &str,
        mut sink: impl FnMut(&[u8]) -> BackupResult<()>,
    ) -> BackupResult<Option<u64>> {
        let result = match self.store.get(&self.key(relative)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.store_error("read", relative, &error)),
        };
        let mut stream = result.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.store_error("read", relative, &error))?;
            total += chunk.len() as u64;
            sink(&chunk)?;
        }
        Ok(Some(total))
    }

    /// Writes a small object whole.
    pub async fn write(&self, relative: &str, bytes: Vec<u8>) -> BackupResult<()> {
        self.store
            .put(&self.key(relative), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|error| self.store_error("upload", relative, &error))
    }

    /// Uploads the file at `path` as `relative`, whose bytes must hash to `sha256` (hex): they
    /// are hashed as they are read, and the object is committed only when they do
    /// ([`BackupError::Changed`] otherwise, and no object). Whole up to [`PART_BYTES`], in
    /// parts above: at most [`PARTS_IN_FLIGHT`] of them sent at once while the next is read,
    /// and on any failure the parts in flight are awaited and the upload aborted. `throttle`
    /// paces the bytes read, `sent` is told each piece handed to the store.
    pub async fn upload_file(
        &self,
        relative: &str,
        path: &Path,
        sha256: &str,
        throttle: &mut Throttle,
        sent: &mut (dyn FnMut(u64) + Send),
    ) -> BackupResult<()> {
        let io = |e| BackupError::io(path, e);
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let check = |digest: ring::digest::Context| {
            let actual = super::hex(digest.finish().as_ref());
            if actual == sha256 {
                Ok(())
            } else {
                Err(BackupError::Changed {
                    path: path.to_owned(),
                    expected: sha256.to_owned(),
                    actual,
                })
            }
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await.map_err(io)?;
            digest.update(&bytes);
            check(digest)?;
            throttle.consume(bytes.len() as u64).await;
            let len = bytes.len() as u64;
            self.write(relative, bytes).await?;
            sent(len);
            return Ok(());
        }
        let key = self.key(relative);
        let mut upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|error| self.store_error("upload", relative, &error))?;
        let mut parts = JoinSet::new();
        let outcome: BackupResult<()> = async {
            loop {
                let mut part = vec![0u8; PART_BYTES];
                let read = read_full(&mut file, &mut part).await.map_err(io)?;
                if read == 0 {
                    break;
                }
                part.truncate(read);
                digest.update(&part);
                throttle.consume(read as u64).await;
                while parts.len() >= PARTS_IN_FLIGHT
                    && let Some(ended) = parts.join_next().await
                {
                    self.part_outcome(relative, ended)?;
                }
                parts.spawn(upload.put_part(PutPayload::from(part)));
                sent(read as u64);
            }
            check(digest)?;
            while let Some(ended) = parts.join_next().await {
                self.part_outcome(relative, ended)?;
            }
            upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|error| self.store_error("upload", relative, &error))
        }
        .await;
        if outcome.is_err() {
            // The parts still in flight end first (stored or failed): S3 may keep a part whose
            // request was still running when the abort came, leaving the upload's storage used.
            while parts.join_next().await.is_some() {}
            if let Err(abort) = upload.abort().await {
                tracing::warn!(key = relative, error = %abort, "aborting a multipart upload failed");
            }
        }
        outcome
    }

    /// How the task sending one part of the upload of `relative` ended.
    fn part_outcome(
        &self,
        relative: &str,
        ended: Result<object_store::Result<()>, JoinError>,
    ) -> BackupResult<()> {
        match ended {
            Ok(sent) => sent.map_err(|error| self.store_error("upload", relative, &error)),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(BackupError::Store {
                target: self.url.clone(),
                operation: "upload",
                key: relative.to_owned(),
                cause: format!("the task sending a part ended: {error}"),
            }),
        }
    }

    /// Every object under `relative_prefix` (e.g. `backups/`), with its size, by key.
    pub async fn list(&self, relative_prefix: &str) -> BackupResult<Vec<(String, u64)>> {
        let trimmed = relative_prefix.trim_end_matches('/');
        let prefix = self.key(trimmed);
        let mut listing = self.store.list(Some(&prefix));
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(meta) => objects.push((self.relative(&meta.location), meta.size)),
                // A file:// target whose prefix directory was never created lists nothing.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(error) => return Err(self.store_error("list", relative_prefix, &error)),
            }
        }
        objects.sort();
        Ok(objects)
    }

    /// Deletes the object at `relative` (absent is fine).
    pub async fn delete(&self, relative: &str) -> BackupResult<()> {
        match self.store.delete(&self.key(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.store_error("delete", relative, &error)),
        }
    }
}

/// Reads until `buffer` is full or the file ends.
async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// `prefix` without leading or trailing slashes, `None` when empty.
fn clean_prefix(prefix: &str) -> Option<String> {
    let trimmed = prefix.trim_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// What went wrong talking to an S3 server, in terms an operator can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The bucket is not there.
    NoBucket,
    /// The server refused the credentials (unknown key, wrong secret, no permission).
    Credentials,
    /// No connection could be made: nothing listens, no route, the name does not resolve.
    Unreachable,
    /// A connection was made, then closed, reset or timed out before the reply.
    ConnectionLost,
}

/// The [`Failure`] behind `error` (whose text, with its sources, is `text`), if it is one.
fn classify(error: &object_store::Error, text: &str) -> Option<Failure> {
    use std::io::ErrorKind;
    if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
        return Some(Failure::NoBucket);
    }
    if matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
    ]
    .iter()
    .any(|code| text.contains(code))
    {
        return Some(Failure::Credentials);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable => return Some(Failure::Unreachable),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::TimedOut => return Some(Failure::ConnectionLost),
                _ => {}
            }
        }
        source = current.source();
    }
    // The HTTP client's own words, when no I/O error is in the chain.
    if ["tcp connect error", "dns error", "Connection refused"]
        .iter()
        .any(|words| text.contains(words))
    {
        Some(Failure::Unreachable)
    } else if [
        "connection closed",
        "connection error",
        "error sending request",
        "operation timed out",
        "error decoding response body",
    ]
    .iter()
    .any(|words| text.contains(words))
    {
        Some(Failure::ConnectionLost)
    } else {
        None
    }
}

/// The cause of a store error in words an operator can act on, naming the bucket and the
/// endpoint of an S3 target (`s3`), then the store's own words.
fn cause(error: &object_store::Error, s3: Option<&S3Place>) -> String {
    let text = crate::cli::error::error_chain(error);
    let (Some(failure), Some(place)) = (classify(error, &text), s3) else {
        return text;
    };
    let endpoint = place.endpoint.as_deref().map_or_else(
        || "AWS S3 (AWS_ENDPOINT_URL unset)".to_owned(),
        str::to_owned,
    );
    let retried = format!(
        "retried with backoff, at most {MAX_RETRIES} times within {} s",
        place.retry_timeout.as_secs()
    );
    let hint = match failure {
        Failure::NoBucket => format!(
            "the bucket does not exist: no bucket {} at {endpoint}",
            place.bucket
        ),
        Failure::Credentials => format!(
            "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY \
             or the [backup] section) for bucket {} at {endpoint}",
            place.bucket
        ),
        Failure::Unreachable => format!(
            "cannot reach the endpoint {endpoint}: no connection could be made (network \
             failure; {retried})"
        ),
        Failure::ConnectionLost => format!(
            "network failure: the connection to the endpoint {endpoint} was closed, reset or \
             timed out ({retried})"
        ),
    };
    format!("{hint} ({text})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_name_what_is_wrong() {
        let s3 = S3Settings::default();
        for (url, why) in [
            ("s3://", "bucket"),
            ("file://relative/dir", "absolute"),
            ("gs://b/p", "scheme"),
        ] {
            let error = ObjectTarget::open(url, &s3, false).unwrap_err().to_string();
            assert!(error.contains(why), "{url}: {error}");
        }
        let target = ObjectTarget::open("s3://bucket/a/b/", &s3, false).unwrap();
        assert_eq!(target.key("blobs/x").as_ref(), "a/b/blobs/x");
        assert_eq!(target.relative(&target.key("blobs/x")), "blobs/x");
        let missing = ObjectTarget::open("file:///nonexistent-allidb-backups", &s3, false);
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn store_errors_name_the_cause_the_bucket_and_the_endpoint() {
        let place = S3Place {
            bucket: "backups".to_owned(),
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            retry_timeout: Duration::from_secs(3),
        };
        let failed = |kind: std::io::ErrorKind| object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(kind)),
        };
        let refused = cause(&failed(std::io::ErrorKind::ConnectionRefused), Some(&place));
        assert!(
            refused.starts_with("cannot reach the endpoint http://127.0.0.1:9: ")
                && refused.contains("within 3 s"),
            "{refused}"
        );
        let reset = cause(&failed(std::io::ErrorKind::ConnectionReset), Some(&place));
        assert!(
            reset.starts_with("network failure: the connection to the endpoint http://127.0.0.1:9"),
            "{reset}"
        );
        let denied = object_store::Error::PermissionDenied {
            path: "x".to_owned(),
            source: "403".into(),
        };
        let denied = cause(&denied, Some(&place));
        assert!(
            denied.starts_with("access denied: check the credentials")
                && denied.contains("bucket backups at http://127.0.0.1:9"),
            "{denied}"
        );
        let other = cause(&failed(std::io::ErrorKind::Other), Some(&place));
        assert!(!other.contains("endpoint"), "{other}");
    }

    #[test]
    fn settings_never_print_the_secret() {
        let settings = S3Settings {
            secret_access_key: Some("hunter2".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            ..S3Settings::default()
        };
        let text = format!("{settings:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("AKIDEXAMPLE"),
            "{text}"
        );
    }
}
