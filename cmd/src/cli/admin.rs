//! Operator commands against a running daemon: `allidb checkpoint DIR` (an online backup,
//! the `Checkpoint` RPC; needs an admin key).
//!
//! The directory is a path on the daemon's host, sent as given: the daemon checks it (absolute,
//! outside its data directory, absent or empty) and its refusal comes back as
//! [`CliError::Rpc`].

use allidb_api::pb;
use clap::Args;

use super::Context;
use super::connect::connect;
use super::error::{CliError, CliResult, Outcome};

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
}
