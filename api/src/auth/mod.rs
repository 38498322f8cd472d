//! API-key authentication (WIRE.md "Authentication", DESIGN.md §7): a key decides the caller's
//! tenant and role.
//!
//! Keys are never stored: a key set holds the SHA-256 of each key and is looked up by that hash.
//! Key lines come from a key file and/or an environment variable, one key per line:
//!
//! ```text
//! # comment
//! <sha256-hex-of-key> <tenant> <read|write|admin> [expires-unix-seconds]
//! ```
//!
//! (in the environment variable, `;` also separates lines). There is no built-in key. With auth
//! disabled every request runs as the configured default tenant with the admin role. A loaded key
//! set is immutable; [`Authenticator::reload`] builds a new one from the same sources and swaps
//! it in atomically, keeping the old one if the new one does not parse.
//!
//! New keys come from [`generate_key`]: [`GENERATED_KEY_BYTES`] bytes from the operating
//! system's CSPRNG, URL-safe base64 after the [`GENERATED_KEY_PREFIX`], with the key file line
//! that grants them. Failed authentications (missing, empty, unknown or expired key) are counted
//! ([`Authenticator::failed_authentications`]) and logged at most once per
//! [`FAILED_AUTH_LOG_INTERVAL`], each line saying how many failures it stands for.
//!
//! Must never: log or print a key or its hash (the `Debug` impls redact them), accept an empty
//! key, or fall back to a default key when auth is enabled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::admission::Payer;
use crate::log_limit::LogRateLimiter;

/// gRPC metadata key (and, case-insensitively, HTTP header) carrying the API key.
pub const API_KEY_METADATA: &str = "x-allidb-api-key";

/// The start of every key [`generate_key`] makes (recognisable in configs and secret scanners).
pub const GENERATED_KEY_PREFIX: &str = "allidb_";

/// Random bytes in a generated key (256 bits).
pub const GENERATED_KEY_BYTES: usize = 32;

/// At most one failed-authentication log line per this interval.
pub const FAILED_AUTH_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What a key may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: get, scan, query, traverse.
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including the compatibility replica RPCs and operator actions.
    Admin,
}

impl Role {
    /// Parses `read`, `write` or `admin` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every request of this caller runs in.
    pub tenant: String,
    /// What the caller may do.
    pub role: Role,
    /// Where the caller's key is granted, for logs: `<source>:<line>` (e.g. `keys.txt:3`), or
    /// `auth-disabled`. Names the key line, never the key or its hash.
    pub key_id: String,
}

impl Principal {
    /// `Ok` when the caller's role includes `needed`, else [`AuthError::PermissionDenied`].
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied(format!(
                "this operation needs the {} role, the API key has {}",
                needed.name(),
                self.role.name()
            )))
        }
    }
}

/// Authentication and key loading failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials: missing, empty, unknown or expired key.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The key is valid but its role does not allow the operation.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A key line does not parse; names the source and the line, never the line's content.
    #[error("bad API key line {line} in {source_name}: {reason}")]
    BadKeyLine {
        /// The key file path or the environment variable name.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An authentication option is invalid.
    #[error("invalid auth option {option}: {reason}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random source failed while generating a key.
    #[error("cannot generate an API key: the OS random source failed: {0}")]
    RandomSource(String),
    /// The key file cannot be read.
    #[error("cannot read API key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match &error {
            AuthError::Unauthenticated(_) => tonic::Status::unauthenticated(error.to_string()),
            AuthError::PermissionDenied(_) => tonic::Status::permission_denied(error.to_string()),
            AuthError::BadKeyLine { .. }
            | AuthError::BadOption { .. }
            | AuthError::RandomSource(_)
            | AuthError::KeyFile { .. } => tonic::Status::internal("API keys are misconfigured"),
        }
    }
}

/// The SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct KeyHash([u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(<redacted>)")
    }
}

impl KeyHash {
    fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }
}

/// The lowercase hex SHA-256 of `key`: what a key line stores (for operators creating keys).
pub fn hash_key(key: &str) -> String {
    hex::encode(KeyHash::of(key).0)
}

/// Checks that `tenant` can be granted in a key line: a valid tenant id (the storage rules)
/// without whitespace (which separates a line's fields).
pub fn validate_key_tenant(tenant: &str) -> Result<(), String> {
    allidb_storage::key::validate_tenant(tenant).map_err(|e| e.to_string())?;
    if tenant.chars().any(char::is_whitespace) {
        return Err("a tenant in a key line cannot contain whitespace".to_owned());
    }
    Ok(())
}

/// The key file line granting `role` in `tenant` until `expires_at` (unix seconds) to the key
/// whose SHA-256 hex is `key_hash`. The tenant is checked with [`validate_key_tenant`].
pub fn key_file_line(
    key_hash: &str,
    tenant: &str,
    role: Role,
    expires_at: Option<u64>,
) -> Result<String, AuthError> {
    validate_key_tenant(tenant).map_err(|reason| AuthError::BadOption {
        option: "tenant",
        reason,
    })?;
    let mut line = format!("{key_hash} {tenant} {}", role.name());
    if let Some(at) = expires_at {
        line.push_str(&format!(" {at}"));
    }
    Ok(line)
}

/// A newly generated API key and the key file line granting it; `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The key itself: give it to the client once, never store it on the server.
    pub key: String,
    /// The line to add to the key file (holds only the key's hash).
    pub key_file_line: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A new random key granting `role` in `tenant` until `expires_at` (unix seconds, `None` =
/// never), with its key file line.
pub fn generate_key(
    tenant: &str,
    role: Role,
    expires_at: Option<u64>,
) -> Result<GeneratedKey, AuthError> {
    let mut secret = [0_u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut secret).map_err(|e| AuthError::RandomSource(e.to_string()))?;
    let key = format!(
        "{GENERATED_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let key_file_line = key_file_line(&hash_key(&key), tenant, role, expires_at)?;
    Ok(GeneratedKey { key, key_file_line })
}

/// What one key grants.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyGrant {
    tenant: String,
    role: Role,
    /// `<source>:<line>` of the key line.
    id: String,
    /// Unix seconds after which the key is refused.
    expires_at: Option<u64>,
}

/// An immutable set of hashed keys.
#[derive(Clone, Default)]
pub struct KeySet {
    grants: HashMap<KeyHash, KeyGrant>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.grants.len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Adds the key lines of `text` (from `source_name`, for error messages). `line_separators`
    /// are the characters that end a line. A hash that is already present is an error.
    fn add_lines(
        &mut self,
        text: &str,
        source_name: &str,
        line_separators: &[char],
    ) -> Result<(), AuthError> {
        for (index, raw) in text.split(line_separators).enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| AuthError::BadKeyLine {
                source_name: source_name.to_owned(),
                line: index + 1,
                reason: reason.to_owned(),
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (hash, tenant, role, expires) = match fields.as_slice() {
                [hash, tenant, role] => (hash, tenant, role, None),
                [hash, tenant, role, expires] => (hash, tenant, role, Some(expires)),
                _ => {
                    return Err(bad(
                        "expected `<sha256-hex> <tenant> <role> [expires-unix-secs]`",
                    ));
                }
            };
            let mut digest = [0_u8; 32];
            hex::decode_to_slice(hash, &mut digest)
                .map_err(|_| bad("the key hash must be 64 hex digits (sha256 of the key)"))?;
            validate_key_tenant(tenant).map_err(|e| bad(&format!("bad tenant: {e}")))?;
            let role =
                Role::parse(role).ok_or_else(|| bad("the role must be read, write or admin"))?;
            let expires_at = expires
                .map(|text| text.parse::<u64>())
                .transpose()
                .map_err(|_| bad("the expiry must be unix seconds"))?;
            let grant = KeyGrant {
                tenant: (*tenant).to_owned(),
                role,
                id: format!("{source_name}:{}", index + 1),
                expires_at,
            };
            if self.grants.insert(KeyHash(digest), grant).is_some() {
                return Err(bad("this key hash is already listed"));
            }
        }
        Ok(())
    }

    /// Parses key lines (newline separated), e.g. a key file's content.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, AuthError> {
        let mut set = Self::default();
        set.add_lines(text, source_name, &['\n'])?;
        Ok(set)
    }

    /// Parses the value of the key environment variable `var_name`: lines separated by newlines
    /// or `;`.
    pub fn parse_env(value: &str, var_name: &str) -> Result<Self, AuthError> {
        let mut set = Self::default();
        set.add_lines(value, &format!("${var_name}"), &['\n', ';'])?;
        Ok(set)
    }

    /// Moves the keys of `other` into this set; a key present in both is an error naming
    /// `other_source`.
    fn merge(&mut self, other: KeySet, other_source: &str) -> Result<(), AuthError> {
        for (hash, grant) in other.grants {
            if self.grants.insert(hash, grant).is_some() {
                return Err(AuthError::BadKeyLine {
                    source_name: other_source.to_owned(),
                    line: 0,
                    reason: "a key of this source is also listed in the key file".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The caller a key stands for at `now_unix_secs`.
    fn authenticate_at(&self, key: &str, now_unix_secs: u64) -> Result<Principal, AuthError> {
        let grant = self
            .grants
            .get(&KeyHash::of(key))
            .ok_or_else(|| AuthError::Unauthenticated("unknown API key".to_owned()))?;
        if grant.expires_at.is_some_and(|at| now_unix_secs >= at) {
            return Err(AuthError::Unauthenticated(
                "the API key has expired".to_owned(),
            ));
        }
        Ok(Principal {
            tenant: grant.tenant.clone(),
            role: grant.role,
            key_id: grant.id.clone(),
        })
    }
}

/// Authentication settings (built by `cmd` from the `[auth]` config section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOptions {
    /// When false, every request runs as `default_tenant` with the admin role.
    pub enabled: bool,
    /// The tenant of requests when auth is disabled.
    pub default_tenant: String,
    /// A key file to load (and reload).
    pub key_file: Option<PathBuf>,
    /// An environment variable holding key lines (read at load and reload; unset = no keys).
    pub keys_env: Option<String>,
}

/// Turns API keys into principals; shared by every request handler.
#[derive(Debug)]
pub struct Authenticator {
    options: AuthOptions,
    keys: ArcSwap<KeySet>,
    /// Failed authentications since start.
    failed: AtomicU64,
    /// Limits the failed-authentication log lines.
    failure_log: LogRateLimiter,
}

impl Authenticator {
    /// Loads the keys of `options` (nothing is loaded when auth is disabled).
    pub fn new(options: AuthOptions) -> Result<Self, AuthError> {
        allidb_storage::key::validate_tenant(&options.default_tenant).map_err(|e| {
            AuthError::BadOption {
                option: "default_tenant",
                reason: e.to_string(),
            }
        })?;
        let keys = Self::load(&options)?;
        if options.enabled && keys.is_empty() {
            tracing::warn!(
                "auth is enabled but no API key is configured: every request will be refused"
            );
        }
        Ok(Self {
            options,
            keys: ArcSwap::from_pointee(keys),
            failed: AtomicU64::new(0),
            failure_log: LogRateLimiter::new(FAILED_AUTH_LOG_INTERVAL),
        })
    }

    fn load(options: &AuthOptions) -> Result<KeySet, AuthError> {
        let mut keys = KeySet::default();
        if !options.enabled {
            return Ok(keys);
        }
        if let Some(path) = &options.key_file {
            keys = KeySet::parse(&read_key_file(path)?, &path.display().to_string())?;
        }
        if let Some(name) = &options.keys_env
            && let Ok(value) = std::env::var(name)
        {
            keys.merge(KeySet::parse_env(&value, name)?, &format!("${name}"))?;
        }
        Ok(keys)
    }

    /// Re-reads the key sources and swaps the new key set in; on error the old set stays.
    /// Returns the number of keys now loaded.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let keys = Self::load(&self.options)?;
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }

    /// Whether requests need a key (`auth.enabled`).
    pub fn enabled(&self) -> bool {
        self.options.enabled
    }

    /// Number of keys loaded.
    pub fn key_count(&self) -> usize {
        self.keys.load().len()
    }

    /// Failed authentications (missing, empty, unknown or expired key) since start.
    pub fn failed_authentications(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Counts one failed authentication and logs it unless the log is rate-limited. The line
    /// holds the reason (e.g. "unknown API key"), never the key or its hash.
    fn record_failure(&self, error: &AuthError) {
        let total = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(admitted) = self.failure_log.admit(Instant::now()) {
            tracing::warn!(
                reason = %error,
                suppressed = admitted.suppressed,
                failed_total = total,
                "API key authentication failed"
            );
        }
    }

    /// The caller for a request's API key (`None` = no key sent), at the current time.
    pub fn authenticate(&self, key: Option<&str>) -> Result<Principal, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.authenticate_at(key, now)
    }

    /// [`Authenticator::authenticate`] at a given time (unix seconds).
    pub fn authenticate_at(
        &self,
        key: Option<&str>,
        now_unix_secs: u64,
    ) -> Result<Principal, AuthError> {
        if !self.options.enabled {
            return Ok(Principal {
                tenant: self.options.default_tenant.clone(),
                role: Role::Admin,
                key_id: "auth-disabled".to_owned(),
            });
        }
        let result = match key {
            None => Err(AuthError::Unauthenticated(format!(
                "missing API key ({API_KEY_METADATA})"
            ))),
            Some("") => Err(AuthError::Unauthenticated("empty API key".to_owned())),
            Some(key) => self.keys.load().authenticate_at(key, now_unix_secs),
        };
        if let Err(error) = &result {
            self.record_failure(error);
        }
        result
    }

    /// Who pays for a request in the request budget (crate::admission), from the API key in its
    /// headers (gRPC metadata or the gateway's header; a non-text value is an unknown key), found
    /// before the request is decoded: the key's tenant, or [`Payer::Unauthenticated`] when it
    /// grants none. Counts and logs nothing: the service authenticates the request again and
    /// reports a failure once.
    pub fn payer_of(&self, headers: &http::HeaderMap) -> Payer {
        let key = headers
            .get(API_KEY_METADATA)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"));
        if !self.options.enabled {
            return Payer::Tenant(self.options.default_tenant.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match key {
            Some(key) if !key.is_empty() => self
                .keys
                .load()
                .authenticate_at(key, now)
                .map_or(Payer::Unauthenticated, |principal| {
                    Payer::Tenant(principal.tenant)
                }),
            _ => Payer::Unauthenticated,
        }
    }

    /// The API key of a gRPC request's metadata; a non-text value counts as an unknown key.
    pub fn key_from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
        metadata
            .get(API_KEY_METADATA)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
    }
}

fn read_key_file(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::KeyFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
