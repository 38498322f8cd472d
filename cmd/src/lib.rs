//! Binaries `allidbd` (daemon) and `allidb` (CLI): configuration loading ([`config`]), its
//! translation into store and service options ([`options`]) and the daemon's process wiring
//! ([`daemon`]), TLS for both ([`tls`]), and the `allidb` command-line client ([`cli`]).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod options;
pub mod tls;
