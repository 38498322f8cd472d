//! Binaries `allidbd` (daemon) and `allidb` (CLI): configuration loading ([`config`]), its
//! translation into store and service options ([`options`]), the daemon's process wiring
//! ([`daemon`], with [`key_reload`] for SIGHUP), its metrics ([`telemetry`]) and admin server
//! ([`admin`]), backups to object stores ([`backup`]), TLS for the daemon and the CLI ([`tls`]), and the `allidb` command-line client
//! ([`cli`]).

pub mod admin;
pub mod backup;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod host_memory;
pub mod key_reload;
pub mod options;
pub mod telemetry;
pub mod tls;
