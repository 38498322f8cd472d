//! Binaries `allidbd` (daemon) and `allidb` (CLI): configuration loading ([`config`]), its
//! translation into store and service options ([`options`]) and the daemon's process wiring
//! ([`daemon`]).

pub mod config;
pub mod daemon;
pub mod options;
