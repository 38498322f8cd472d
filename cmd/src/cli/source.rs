//! Bulk deletes (issue 39): `allidb source` — what one source (document) contributed
//! (docs/api.md "Sources"): `delete SOURCE` (`DeleteBySource`) and `replace SOURCE FILE`
//! (`ReplaceSource` with the entities of a JSON-lines file, one HTTP JSON `Entity` per line;
//! `-` reads standard input) — and `allidb delete-where` (`DeleteByFilter` on types and
//! attributes, docs/api.md "DeleteByFilter").
//!
//! Like the data commands, it validates nothing the daemon validates; the daemon's status comes
//! back as [`CliError::Rpc`].

use std::io::Read;
use std::path::PathBuf;

use allidb_api::pb;
use clap::{Args, Subcommand};

use super::Context;
use super::connect::connect;
use super::error::{CliError, CliResult, Outcome};

/// `allidb source`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SourceAction,
}

/// The `allidb source` subcommands.
#[derive(Debug, Subcommand)]
pub enum SourceAction {
    /// Remove what SOURCE contributed: its chunks, the edges and entities only it supports;
    /// what other sources support too only loses SOURCE.
    Delete {
        /// The source id.
        source: String,
    },
    /// Replace SOURCE's contribution with the entities of FILE (JSON lines) in one step.
    Replace {
        /// The source id.
        source: String,
        /// JSON lines, one entity per line; `-` reads standard input.
        file: PathBuf,
    },
}

/// `allidb delete-where`.
#[derive(Debug, Args)]
pub struct DeleteWhereArgs {
    /// Entity type the entities must have (repeatable: any of them).
    #[arg(long = "type")]
    pub entity_types: Vec<String>,
    /// Attribute `key=value` the entities must have (repeatable: all of them).
    #[arg(long = "attr", value_parser = super::parse::attribute)]
    pub attributes: Vec<(String, String)>,
    /// Only count the matching entities.
    #[arg(long)]
    pub dry_run: bool,
    /// Most entities this call deletes (the daemon's default, 1000, when omitted).
    #[arg(long)]
    pub max: Option<u32>,
    /// Needed when the filter matches every entity of the tenant.
    #[arg(long)]
    pub confirm: bool,
}

/// Runs `allidb delete-where`; more matches than `--max` make the outcome partial.
pub async fn delete_where(context: &mut Context, args: DeleteWhereArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let filter = pb::QueryFilter {
        entity_types: args.entity_types,
        attributes: args.attributes.into_iter().collect(),
    };
    let reply = client
        .delete_by_filter(pb::DeleteByFilterRequest {
            filter: Some(filter),
            dry_run: args.dry_run,
            max_deletes: args.max.unwrap_or(0),
            confirm: args.confirm,
            consistency_level: context.consistency,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("DeleteByFilter", status))?
        .into_inner();
    let dry_run = args.dry_run;
    context
        .printer
        .reply(&reply, |reply| match (dry_run, reply.more) {
            (true, _) => format!("{} entities match\n", reply.matched),
            (false, false) => format!("deleted {} entities\n", reply.deleted),
            (false, true) => format!(
                "deleted {} entities; more match: run again\n",
                reply.deleted
            ),
        })?;
    Ok(Outcome::from_complete(!reply.more))
}

/// Reads the JSON-lines entities of `path` (`-` = standard input); blank lines are skipped.
fn read_entities(path: &PathBuf) -> CliResult<Vec<pb::Entity>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::io(path, source))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|source| CliError::io(path, source))?;
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| {
                CliError::input(format!("{}:{}", path.display(), index + 1), error)
            })
        })
        .collect()
}

/// Runs `allidb source`.
pub async fn run(context: &mut Context, args: SourceArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    match args.action {
        SourceAction::Delete { source } => {
            let reply = client
                .delete_by_source(pb::DeleteBySourceRequest {
                    source_id: source.clone(),
                    consistency_level: context.consistency,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("DeleteBySource", status))?
                .into_inner();
            context.printer.reply(&reply, |reply| {
                format!(
                    "source {source}: {} entities deleted, {} kept by other sources\n",
                    reply.deleted, reply.updated
                )
            })?;
        }
        SourceAction::Replace { source, file } => {
            let entities = read_entities(&file)?;
            let reply = client
                .replace_source(pb::ReplaceSourceRequest {
                    source_id: source.clone(),
                    entities,
                    consistency_level: context.consistency,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("ReplaceSource", status))?
                .into_inner();
            context.printer.reply(&reply, |reply| {
                format!(
                    "source {source}: {} entities written, {} old ones deleted, {} kept\n",
                    reply.written, reply.deleted, reply.updated
                )
            })?;
        }
    }
    Ok(Outcome::Complete)
}
