//! `allidb keys generate`: makes a new API key locally (no daemon involved) and prints it once
//! with the key file line that grants it.
//!
//! The key comes from [`allidb_api::auth::generate_key`] (the OS CSPRNG); the tenant and role are
//! checked with the daemon's own rules, so a printed line always loads. Standard output holds
//! exactly two labelled lines (`api_key: ...`, `key_file_line: ...`; one JSON document with
//! `--json`) so scripts can pick them apart; the reminder that the key is shown only once goes to
//! standard error. Invariant: the key is printed once, here, and nowhere else (never logged,
//! never part of an error); only its hash goes into the key file line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allidb_api::auth::{Role, generate_key};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::error::{CliError, CliResult, Outcome};
use super::{Context, output};

/// `allidb keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The key command.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `allidb keys` commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new API key: prints the key (once) and the line for the daemon's key file.
    Generate(GenerateArgs),
}

/// A role on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads: get, scan, query, traverse.
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including operator actions (checkpoint) and the replica RPCs.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Read => Role::Read,
            RoleArg::Write => Role::Write,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// `allidb keys generate`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expiry").args(["expires_in", "expires_at"])))]
pub struct GenerateArgs {
    /// The tenant every request with this key runs in.
    #[arg(long)]
    pub tenant: String,
    /// What the key may do.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Lifetime from now: a number with a unit s, m, h, d or w (e.g. `30d`, `12h`).
    #[arg(long, value_parser = lifetime)]
    pub expires_in: Option<Duration>,
    /// Expiry as Unix seconds (the key is refused from that second on).
    #[arg(long)]
    pub expires_at: Option<u64>,
}

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w` into a positive duration.
pub fn lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h, d or w (e.g. 30d)"))?;
    let (number, unit) = text.split_at(split);
    let count: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    let secs = count
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if secs == 0 {
        return Err("the lifetime must be positive".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

/// The JSON form of a generated key (`--json`).
#[derive(Debug, Serialize)]
struct GeneratedJson<'a> {
    api_key: &'a str,
    key_file_line: &'a str,
    tenant: &'a str,
    role: &'a str,
    expires_at: Option<u64>,
}

/// Unix seconds of `expires_in` or `expires_at` (checked to be in the future), or `None`.
fn expiry(args: &GenerateArgs, now_secs: u64) -> CliResult<Option<u64>> {
    let at = match (args.expires_in, args.expires_at) {
        (Some(lifetime), _) => Some(now_secs.checked_add(lifetime.as_secs()).ok_or_else(|| {
            CliError::input(
                "--expires-in",
                "the expiry is beyond the representable time",
            )
        })?),
        (None, Some(at)) if at <= now_secs => {
            return Err(CliError::input(
                "--expires-at",
                format!("{at} is not in the future (now is {now_secs})"),
            ));
        }
        (None, at) => at,
    };
    Ok(at)
}

/// Runs `allidb keys ...`.
pub fn run(context: &mut Context, args: KeysArgs) -> CliResult<Outcome> {
    match args.command {
        KeysCommand::Generate(args) => generate(context, &args),
    }
}

fn generate(context: &mut Context, args: &GenerateArgs) -> CliResult<Outcome> {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires_at = expiry(args, now_secs)?;
    let role = Role::from(args.role);
    let generated = generate_key(&args.tenant, role, expires_at)
        .map_err(|error| CliError::input("--tenant", error))?;
    if context.printer.json() {
        context.printer.json_line(&GeneratedJson {
            api_key: &generated.key,
            key_file_line: &generated.key_file_line,
            tenant: &args.tenant,
            role: role.name(),
            expires_at,
        })?;
    } else {
        context
            .printer
            .line(format!("api_key: {}", generated.key))?;
        context
            .printer
            .line(format!("key_file_line: {}", generated.key_file_line))?;
    }
    let expiry_note = expires_at.map_or_else(
        || "it does not expire".to_owned(),
        |at| {
            let nanos = i64::try_from(at).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000;
            format!("it expires at {at} ({})", output::timestamp(nanos))
        },
    );
    eprintln!(
        "allidb: the API key above is shown only this once; {expiry_note}. Add key_file_line to \
         the daemon's key file (auth.key_file) and send SIGHUP to allidbd to load it."
    );
    Ok(Outcome::Complete)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn generate_args(args: &[&str]) -> Result<GenerateArgs, clap::Error> {
        let mut argv = vec!["allidb", "keys", "generate"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Keys(KeysArgs {
                command: KeysCommand::Generate(args),
            }) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn lifetimes_take_a_unit_and_must_be_positive() {
        assert_eq!(lifetime("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(lifetime("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(lifetime("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(lifetime("12h").unwrap(), Duration::from_secs(12 * 3600));
        for bad in [
            "30",
            "d",
            "0d",
            "3y",
            "-1d",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_relative_absolute_or_none_and_never_in_the_past() {
        let now = 1_000_000;
        let relative =
            generate_args(&["--tenant", "t", "--role", "read", "--expires-in", "1h"]).unwrap();
        assert_eq!(expiry(&relative, now).unwrap(), Some(now + 3600));
        let absolute = generate_args(&[
            "--tenant",
            "t",
            "--role",
            "admin",
            "--expires-at",
            "2000000",
        ])
        .unwrap();
        assert_eq!(absolute.role, RoleArg::Admin);
        assert_eq!(expiry(&absolute, now).unwrap(), Some(2_000_000));
        let past =
            generate_args(&["--tenant", "t", "--role", "read", "--expires-at", "5"]).unwrap();
        assert!(matches!(expiry(&past, now), Err(CliError::Input { .. })));
        let forever = generate_args(&["--tenant", "t", "--role", "write"]).unwrap();
        assert_eq!(expiry(&forever, now).unwrap(), None);
    }

    #[test]
    fn bad_roles_and_both_expiry_flags_are_usage_errors() {
        assert!(generate_args(&["--tenant", "t", "--role", "root"]).is_err());
        assert!(generate_args(&["--role", "read"]).is_err());
        assert!(
            generate_args(&[
                "--tenant",
                "t",
                "--role",
                "read",
                "--expires-in",
                "1d",
                "--expires-at",
                "99999999999"
            ])
            .is_err()
        );
    }
}
