//! The daemon's configuration (DESIGN.md §9, docs/configuration.md).
//!
//! Layers, each overriding the one before: built-in defaults, the TOML file (`--config` or
//! `ALLIDB_CONFIG`), environment variables `ALLIDB_<SECTION>_<KEY>` (e.g.
//! `ALLIDB_SERVER_GRPC_ADDR`), then flags (`--set section.key=value`, then the named flags such as
//! `--data-dir`). The defaults give a working single node with no file at all.
//!
//! Invariants: an omitted key means its documented default (every section is
//! `#[serde(default)]`), never `false` or zero by accident; an unknown key, a value of the wrong
//! type or out of range stops startup with an error naming the key (and the variable or flag it
//! came from). A data port that listens beyond loopback without auth and TLS is refused unless
//! `server.allow_insecure_non_loopback` says otherwise. This module reads configuration only: it
//! never opens listeners, files other than the config file, or stores.
//!
//! Here: [`Config`], its loading and its validation; the sections in [`sections`] and
//! [`cluster`] (the lexical keys of `[index]` in [`lexical`]), the environment and flag
//! overrides in [`overrides`].

mod cluster;
mod lexical;
mod overrides;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use cluster::ClusterConfig;
pub use lexical::{StemmingName, StopWordsName};
use overrides::{env_overrides, flag_overrides, typed_value};
pub use sections::{
    AuthConfig, ConsistencyName, DurabilityName, IndexConfig, LogConfig, LogFormat, MetricName,
    QueryConfig, ServerConfig, StorageConfig, TlsConfig,
};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "ALLIDB_";

/// The sections of the file; also the only `ALLIDB_<SECTION>_...` variables read as overrides.
pub const SECTIONS: &[&str] = &[
    "server", "tls", "storage", "index", "query", "auth", "log", "cluster", "backup",
];

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Everything `allidbd` can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and request limits.
    pub server: ServerConfig,
    /// TLS for the gRPC and HTTP listeners.
    pub tls: TlsConfig,
    /// The storage engine.
    pub storage: StorageConfig,
    /// The vector index.
    pub index: IndexConfig,
    /// Query defaults.
    pub query: QueryConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Membership in a ring of nodes.
    pub cluster: ClusterConfig,
    /// Backups to an object store (docs/backup.md).
    pub backup: crate::backup::schedule::BackupConfig,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a wrongly typed value.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key (from any layer) is unknown, wrongly typed or out of range.
    #[error("config key {key}{origin}: {message}")]
    Key {
        /// `section.key`.
        key: String,
        /// ` (from <variable or flag>)`, or empty when it came from the file or the defaults.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// An override is not of the form `section.key=value`.
    #[error("{origin}: {message}")]
    Override {
        /// The variable or flag.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Where configuration comes from, in increasing priority (after the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The TOML file; `None` = defaults only.
    pub file: Option<PathBuf>,
    /// The process environment (only `ALLIDB_<SECTION>_<KEY>` variables are used).
    pub env: Vec<(String, String)>,
    /// Flag overrides, in order: `(flag, "section.key", value)`.
    pub flags: Vec<(String, String, String)>,
}

/// Configuration flags shared by the binaries (flatten into a clap parser).
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "ALLIDB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides one key, e.g. `--set index.ef_search=128` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Overrides `storage.data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Overrides `server.grpc_addr`.
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// Overrides `server.http_addr`.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Overrides `log.level`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The sources these flags and the process environment describe.
    pub fn sources(&self) -> Result<ConfigSources, ConfigError> {
        let mut flags = Vec::new();
        for set in &self.set {
            let (key, value) = set.split_once('=').ok_or_else(|| ConfigError::Override {
                origin: format!("--set {set}"),
                message: "expected section.key=value".to_owned(),
            })?;
            flags.push(("--set".to_owned(), key.trim().to_owned(), value.to_owned()));
        }
        let named = [
            ("--data-dir", "storage.data_dir", &self.data_dir),
            ("--grpc-addr", "server.grpc_addr", &self.grpc_addr),
            ("--http-addr", "server.http_addr", &self.http_addr),
            ("--log-level", "log.level", &self.log_level),
        ];
        for (flag, key, value) in named {
            if let Some(value) = value {
                flags.push((flag.to_owned(), key.to_owned(), value.clone()));
            }
        }
        Ok(ConfigSources {
            file: self.config.clone(),
            env: std::env::vars().collect(),
            flags,
        })
    }

    /// Loads the configuration these flags and the process environment describe.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.sources()?)
    }
}

fn check_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Key {
            key: key.to_owned(),
            origin: String::new(),
            message: format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        })
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        origin: String::new(),
        message: message.into(),
    }
}

/// `level` or `target=level` directives separated by commas.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    !filter.trim().is_empty()
        && filter.split(',').all(|directive| {
            let level = match directive.split_once('=') {
                Some((target, level)) if !target.trim().is_empty() => level,
                Some(_) => return false,
                None => directive,
            };
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        })
}

impl Config {
    /// Loads and validates the configuration from `sources` (see the module documentation).
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut table = match &sources.file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file_error = |message: String| ConfigError::File {
                    path: path.clone(),
                    message,
                };
                // Parse as `Config` first: its errors carry the line and column of the key.
                toml::from_str::<Config>(&text).map_err(|e| file_error(e.to_string()))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| file_error(e.to_string()))?
            }
        };

        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| invalid("(defaults)", e.to_string()))?;
        let mut origins: HashMap<String, String> = HashMap::new();
        let overrides = env_overrides(&sources.env)
            .into_iter()
            .chain(flag_overrides(&sources.flags)?);
        for o in overrides {
            let value = typed_value(&defaults, &o)?;
            let section = table
                .entry(o.section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(invalid(&o.section, "must be a table"));
            };
            section.insert(o.key.clone(), value);
            origins.insert(o.path(), o.origin);
        }

        let origin_of = |key: &str| {
            origins
                .get(key)
                .map(|origin| format!(" (from {origin})"))
                .unwrap_or_default()
        };
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Key {
                    origin: origin_of(&key),
                    key,
                    message: e.into_inner().to_string(),
                }
            })?;
        config.validate().map_err(|error| match error {
            ConfigError::Key {
                key,
                origin,
                message,
            } if origin.is_empty() => ConfigError::Key {
                origin: origin_of(&key),
                key,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks ranges and cross-key rules; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backup
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        let server = &self.server;
        check_range(
            "server.max_request_bytes",
            server.max_request_bytes,
            KIB..=GIB,
        )?;
        check_range(
            "server.shutdown_timeout_secs",
            server.shutdown_timeout_secs,
            0..=3600,
        )?;
        for (key, value) in [
            (
                "server.max_inflight_request_bytes",
                server.max_inflight_request_bytes,
            ),
            (
                "server.max_inflight_request_bytes_per_tenant",
                server.max_inflight_request_bytes_per_tenant,
            ),
        ] {
            if value != 0 {
                check_range(key, value, MIB..=1024 * GIB)?;
            }
        }
        if server.max_inflight_request_bytes != 0
            && server.max_inflight_request_bytes_per_tenant > server.max_inflight_request_bytes
        {
            return Err(invalid(
                "server.max_inflight_request_bytes_per_tenant",
                format!(
                    "{} is more than server.max_inflight_request_bytes ({})",
                    server.max_inflight_request_bytes_per_tenant, server.max_inflight_request_bytes
                ),
            ));
        }
        check_range(
            "server.admission_wait_ms",
            server.admission_wait_ms,
            0..=60_000,
        )?;
        let listeners = [
            ("server.grpc_addr", server.grpc_addr),
            ("server.http_addr", server.http_addr),
            ("server.admin_addr", server.admin_addr),
        ];
        for (index, (key, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..index]
                .iter()
                .find(|(_, o)| addr.port() != 0 && o == addr)
            {
                return Err(invalid(key, format!("{addr} is also {other}")));
            }
        }
        let secure = self.auth.enabled && self.tls.enabled;
        if !secure && !server.allow_insecure_non_loopback {
            for (key, addr) in &listeners[..2] {
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        key,
                        format!(
                            "{addr} listens beyond loopback without auth and TLS; enable \
                             auth.enabled and tls.enabled, or set \
                             server.allow_insecure_non_loopback = true"
                        ),
                    ));
                }
            }
        }

        if self.tls.enabled {
            for (key, file) in [
                ("tls.cert_file", &self.tls.cert_file),
                ("tls.key_file", &self.tls.key_file),
            ] {
                if file.is_none() {
                    return Err(invalid(key, "is required when tls.enabled = true"));
                }
            }
        } else if self.tls.client_ca_file.is_some() {
            return Err(invalid(
                "tls.client_ca_file",
                "client certificates need TLS: set tls.enabled = true",
            ));
        }

        let storage = &self.storage;
        if storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        check_range(
            "storage.periodic_sync_ms",
            storage.periodic_sync_ms,
            1..=60_000,
        )?;
        check_range(
            "storage.memtable_bytes",
            storage.memtable_bytes,
            MIB..=4 * GIB,
        )?;
        check_range(
            "storage.block_cache_bytes",
            storage.block_cache_bytes,
            0..=1024 * GIB,
        )?;
        // On a ring, tombstones must also outlive the hint window and the repair interval, or
        // deletes return: checked below, with the cluster settings.
        check_range(
            "storage.gc_grace_secs",
            storage.gc_grace_secs,
            1..=365 * 24 * 3600,
        )?;
        storage
            .tenant_ttls()
            .map_err(|message| invalid("storage.tenant_ttl_secs", message))?;
        check_range(
            "storage.min_free_bytes",
            storage.min_free_bytes,
            0..=1024 * GIB,
        )?;
        check_range(
            "storage.memtable_idle_flush_secs",
            storage.memtable_idle_flush_secs,
            0..=86_400,
        )?;

        let index = &self.index;
        // hnsw_rs exits the process above 256 connections per node.
        check_range("index.m", index.m, 2..=256)?;
        check_range(
            "index.ef_construction",
            index.ef_construction,
            index.m..=4096,
        )?;
        check_range("index.ef_search", index.ef_search, 1..=4096)?;
        check_range(
            "index.max_unindexed_vectors",
            index.max_unindexed_vectors,
            1..=10_000_000,
        )?;
        check_range(
            "index.max_tail_wait_ms",
            index.max_tail_wait_ms,
            0..=600_000,
        )?;
        check_range(
            "index.dump_interval_secs",
            index.dump_interval_secs,
            1..=86_400,
        )?;
        check_range(
            "index.dump_wal_bytes",
            index.dump_wal_bytes,
            MIB..=1024 * GIB,
        )?;
        index
            .lexical()
            .map_err(|(key, message)| invalid(key, message))?;

        let query = &self.query;
        check_range(
            "query.max_hops",
            query.max_hops,
            0..=allidb_api::validate::MAX_QUERY_HOPS,
        )?;
        check_range("query.max_candidates", query.max_candidates, 1..=100_000)?;
        check_range(
            "query.max_expansion_nodes",
            query.max_expansion_nodes,
            1..=1_000_000,
        )?;

        allidb_storage::key::validate_tenant(&self.auth.default_tenant)
            .map_err(|e| invalid("auth.default_tenant", e.to_string()))?;
        let keys_env = &self.auth.keys_env;
        if let Some(rest) = keys_env.strip_prefix(ENV_PREFIX)
            && let Some((section, _)) = rest.split_once('_')
            && SECTIONS.contains(&section.to_ascii_lowercase().as_str())
        {
            return Err(invalid(
                "auth.keys_env",
                format!("{keys_env} would be read as a configuration override"),
            ));
        }

        self.cluster
            .validate(self.server.grpc_addr, self.tls.enabled)?;
        if self.cluster.enabled
            && self.cluster.hinted_handoff_enabled
            && self.storage.gc_grace_secs <= self.cluster.hinted_handoff_window_secs
        {
            return Err(invalid(
                "storage.gc_grace_secs",
                format!(
                    "{} s is not longer than cluster.hinted_handoff_window_secs ({} s): a \
                     tombstone purged before a hint older than it is delivered lets the hinted \
                     value come back (docs/cluster.md \"Anti-entropy repair\")",
                    self.storage.gc_grace_secs, self.cluster.hinted_handoff_window_secs
                ),
            ));
        }
        if self.cluster.enabled && self.cluster.repair_interval_secs >= self.storage.gc_grace_secs {
            return Err(invalid(
                "cluster.repair_interval_secs",
                format!(
                    "{} s is not shorter than storage.gc_grace_secs ({} s): every range must be \
                     repaired within the tombstone grace, or a delete one replica missed can \
                     come back (docs/cluster.md \"Anti-entropy repair\")",
                    self.cluster.repair_interval_secs, self.storage.gc_grace_secs
                ),
            ));
        }
        if self.cluster.enabled && self.tls.enabled && self.tls.client_ca_file.is_none() {
            return Err(invalid(
                "tls.client_ca_file",
                "required when cluster.enabled and tls.enabled: it is the cluster CA that every \
                 node's certificate is signed by, for node-to-node mTLS (docs/operations.md, \
                 \"Cluster security\")",
            ));
        }

        if !valid_log_filter(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level (trace, debug, info, warn, error, off) or \
                     comma-separated target=level directives",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}
