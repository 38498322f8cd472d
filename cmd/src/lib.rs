//! Binaries `allidbd` and `allidb` (issue 4): configuration loading and process wiring live here.

pub mod cli;
pub mod config;
