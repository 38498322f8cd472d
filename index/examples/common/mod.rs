//! Command-line flags shared by the index examples: `--name value` pairs after the program name.
//!
//! Examples are benchmarks run by hand, so a malformed value stops the run with a message naming
//! the flag; a missing flag takes its default.

use std::str::FromStr;

/// The process's arguments, searched by flag name.
pub struct Flags(Vec<String>);

impl Flags {
    /// The arguments this process was started with.
    pub fn from_env() -> Self {
        Self(std::env::args().collect())
    }

    /// The value after `name`, if the flag is given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// The value after `name` parsed as a `T`, or `default` when the flag is absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> T {
        self.value(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got {v:?}"))
        })
    }
}
