//! Operator commands against a running daemon: `allidb checkpoint DIR` (an online backup,
//! the `Checkpoint` RPC), `allidb compact` (a full manual compaction, `Compact`) and `allidb tenant list | stats T | drop T --yes` (`ListTenants`,
//! `GetTenantStats`, `DropTenant`); all need an admin key.
//!
//! The directory is a path on the daemon's host, sent as given: the daemon checks it (absolute,
//! outside its data directory, absent or empty) and its refusal comes back as
//! [`CliError::Rpc`].

use allidb_api::pb;
use clap::{Args, Subcommand};

use super::Context;
use super::connect::connect;
use super::error::{CliError, CliResult, Outcome};
use super::output::human_bytes;

/// `allidb tenant`.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TenantAction,
}

/// The actions of `allidb tenant`.
#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Every tenant the key may see: entities, vectors, dimension, metric, bytes (on a ring:
    /// of the whole ring, each entity counted once).
    List {
        /// Also list what each node of the ring holds.
        #[arg(long)]
        per_node: bool,
    },
    /// One tenant's figures.
    Stats {
        /// The tenant id.
        tenant: String,
        /// Also list what each node of the ring holds of it.
        #[arg(long)]
        per_node: bool,
    },
    /// Erase a tenant: every entity, edge, chunk and vector written to it so far.
    Drop {
        /// The tenant id.
        tenant: String,
        /// Confirm: a drop cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `allidb tenant ...`.
pub async fn tenant(context: &mut Context, args: TenantArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    match args.action {
        TenantAction::List { per_node } => {
            let reply = client
                .list_tenants(pb::ListTenantsRequest { per_node })
                .await
                .map_err(|status| CliError::rpc("ListTenants", status))?
                .into_inner();
            context
                .printer
                .reply(&reply, |r| tenants_text(&r.tenants) + &nodes_text(&r.nodes))?;
        }
        TenantAction::Stats { tenant, per_node } => {
            let reply = client
                .get_tenant_stats(pb::GetTenantStatsRequest {
                    tenant_id: tenant.clone(),
                    per_node,
                })
                .await
                .map_err(|status| CliError::rpc("GetTenantStats", status))?
                .into_inner();
            context.printer.reply(&reply, |r| {
                let total = match &r.stats {
                    Some(stats) => tenants_text(std::slice::from_ref(stats)),
                    None => format!("no data of tenant {tenant:?}\n"),
                };
                total + &nodes_text(&r.nodes)
            })?;
        }
        TenantAction::Drop { tenant, yes } => {
            if !yes {
                return Err(CliError::input(
                    "--yes",
                    format!(
                        "dropping tenant {tenant:?} erases all its data and cannot be undone; \
                         add --yes to confirm"
                    ),
                ));
            }
            let reply = client
                .drop_tenant(pb::DropTenantRequest {
                    tenant_id: tenant.clone(),
                    confirm: true,
                    consistency_level: context.consistency,
                })
                .await
                .map_err(|status| CliError::rpc("DropTenant", status))?
                .into_inner();
            context.printer.reply(&reply, |r| {
                format!(
                    "tenant {tenant:?} dropped: {} entities, {} vectors; everything written \
                     to it up to {} is gone\n",
                    r.entities,
                    r.vectors,
                    super::output::timestamp(
                        i64::try_from(r.dropped_at_micros)
                            .unwrap_or(i64::MAX)
                            .saturating_mul(1000)
                    )
                )
            })?;
        }
    }
    Ok(Outcome::Complete)
}

/// The human form of tenant figures, one row each.
fn tenants_text(tenants: &[pb::TenantStats]) -> String {
    let mut text = format!(
        "{:<24} {:>10} {:>10} {:>9} {:<7} {:>10}\n",
        "tenant", "entities", "vectors", "dimension", "metric", "bytes"
    );
    for t in tenants {
        let dimension = match t.dimension {
            0 => "-".to_owned(),
            d => d.to_string(),
        };
        text.push_str(&format!(
            "{:<24} {:>10} {:>10} {:>9} {:<7} {:>10}\n",
            t.tenant_id,
            t.entities,
            t.vectors,
            dimension,
            t.metric,
            human_bytes(t.bytes)
        ));
    }
    text
}

/// The human form of per-node figures (`--per-node`): each node's name, then its rows or why it
/// did not answer; empty when none were asked for.
fn nodes_text(nodes: &[pb::NodeTenantStats]) -> String {
    nodes
        .iter()
        .map(|node| match node.error.is_empty() {
            true => format!("\nnode {}:\n{}", node.node, tenants_text(&node.tenants)),
            false => format!("\nnode {}: no answer: {}\n", node.node, node.error),
        })
        .collect()
}

/// `allidb checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Absolute directory on the daemon's host; must not exist or be empty.
    pub dir: String,
}

/// Runs `allidb checkpoint DIR`.
pub async fn checkpoint(context: &mut Context, args: CheckpointArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .checkpoint(pb::CheckpointRequest {
            target_dir: args.dir,
        })
        .await
        .map_err(|status| CliError::rpc("Checkpoint", status))?
        .into_inner();
    context.printer.reply(&reply, checkpoint_text)?;
    Ok(Outcome::Complete)
}

/// The human form of a checkpoint reply.
fn checkpoint_text(reply: &pb::CheckpointResponse) -> String {
    format!(
        "checkpoint written to {}\n  covers every write up to sequence {} (index dump: {}, {} \
         tenants)\n  tables: {} hard-linked, {} copied, {} bytes\n  WAL: {} segments, {} bytes \
         copied\nrestore: start allidbd with --data-dir {}\n",
        reply.target_dir,
        reply.covered_seq,
        reply.index_covered_seq,
        reply.index_tenants,
        reply.tables_linked,
        reply.tables_copied,
        reply.table_bytes,
        reply.wal_segments,
        reply.wal_bytes,
        reply.target_dir,
    )
}

/// Runs `allidb compact`.
pub async fn compact(context: &mut Context) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .compact(pb::CompactRequest {})
        .await
        .map_err(|status| CliError::rpc("Compact", status))?
        .into_inner();
    context.printer.reply(&reply, compact_text)?;
    Ok(Outcome::Complete)
}

/// The human form of a compaction reply.
fn compact_text(reply: &pb::CompactResponse) -> String {
    format!(
        "compacted in {} ms\n  before: {} tables, {}\n  after:  {} tables, {}\n",
        reply.duration_ms,
        reply.tables_before,
        human_bytes(reply.table_bytes_before),
        reply.tables_after,
        human_bytes(reply.table_bytes_after),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn checkpoint_takes_one_directory_and_prints_how_to_restore() {
        let cli = Cli::try_parse_from(["allidb", "checkpoint", "/backups/b1"]).unwrap();
        let Command::Checkpoint(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.dir, "/backups/b1");
        assert!(Cli::try_parse_from(["allidb", "checkpoint"]).is_err());
        let text = checkpoint_text(&pb::CheckpointResponse {
            target_dir: "/backups/b1".into(),
            covered_seq: 42,
            ..Default::default()
        });
        assert!(text.contains("up to sequence 42"), "{text}");
        assert!(text.contains("--data-dir /backups/b1"), "{text}");
    }

    #[test]
    fn tenant_per_node_lists_each_node_or_why_it_did_not_answer() {
        let cli = Cli::try_parse_from(["allidb", "tenant", "list", "--per-node"]).unwrap();
        let Command::Tenant(TenantArgs {
            action: TenantAction::List { per_node },
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert!(per_node);
        let stats = pb::TenantStats {
            tenant_id: "acme".into(),
            entities: 7,
            ..Default::default()
        };
        let text = nodes_text(&[
            pb::NodeTenantStats {
                node: "n0".into(),
                tenants: vec![stats],
                error: String::new(),
            },
            pb::NodeTenantStats {
                node: "n1".into(),
                tenants: Vec::new(),
                error: "down".into(),
            },
        ]);
        assert!(
            text.contains("node n0:\n") && text.contains("acme "),
            "{text}"
        );
        assert!(text.contains("node n1: no answer: down"), "{text}");
        assert_eq!(nodes_text(&[]), "");
    }

    #[test]
    fn compact_takes_no_argument_and_prints_both_sizes() {
        let cli = Cli::try_parse_from(["allidb", "compact"]).unwrap();
        assert!(matches!(cli.command, Command::Compact), "{:?}", cli.command);
        assert!(Cli::try_parse_from(["allidb", "compact", "/x"]).is_err());
        let text = compact_text(&pb::CompactResponse {
            tables_before: 7,
            tables_after: 1,
            duration_ms: 12,
            ..Default::default()
        });
        assert!(text.contains("before: 7 tables"), "{text}");
        assert!(text.contains("after:  1 tables"), "{text}");
    }
}
