//! `allidb cluster status | ring | endpoints TENANT ID` (and `backup`, in [`super::backup`]): the operator's view of a ring, read
//! from a node's admin port (`/cluster/status`, `/cluster/ring`, `/cluster/endpoints`, the
//! same JSON that `--json` prints), like `nodetool status`; and `allidb cluster repair`,
//! `rebuild`, `decommission`, `removenode` and `cleanup`, the `Repair`, `Rebuild`,
//! `Decommission`, `RemoveNode` and `Cleanup` RPCs on the node's gRPC port (`--addr`, an admin
//! key), like `nodetool repair`, `rebuild`, `decommission`, `removenode` and `cleanup`.
//!
//! The admin port is plain HTTP on the node's host (docs/operations.md): its answers come from
//! the CLI's one GET ([`super::probe::admin_http_get`]), which never sends an API key.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use allidb_api::pb;

use super::Context;
use super::connect::connect;
use super::error::{CliError, CliResult, Outcome};
use super::output::human_bytes;

/// Deadline of one admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `allidb cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The node's admin address (`server.admin_addr`).
    #[arg(long, env = "ALLIDB_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin: String,
    /// What to show.
    #[command(subcommand)]
    pub view: ClusterView,
}

/// The views of `allidb cluster`.
#[derive(Debug, Subcommand)]
pub enum ClusterView {
    /// Every node: state, engine state, address, load (bytes of SSTables), tokens, owned share,
    /// hints pending for it.
    Status,
    /// Every token range and its owner.
    Ring,
    /// Back up every node of the ring under one backup id (docs/backup.md).
    Backup(super::backup::ClusterBackupArgs),
    /// Anti-entropy repair of every token range the node at `--addr` replicates: replicas
    /// compare Merkle trees and what differs is sent to those that lack it (docs/cluster.md).
    Repair {
        /// Only this tenant (an admin key of it suffices; every tenant needs an operator key).
        #[arg(long)]
        tenant: Option<String>,
        /// Compare only: report what differs, write nothing.
        #[arg(long)]
        preview: bool,
        /// Only this token range, `START:END` (start exclusive, end inclusive, as `allidb
        /// cluster ring` lists them: a range ends at a ring token and starts after the previous
        /// one); repeatable.
        #[arg(long = "range", value_name = "START:END", value_parser = parse_range)]
        ranges: Vec<pb::TokenRange>,
    },
    /// Streams every token range the node at `--addr` replicates from its other replicas
    /// (a replica restored from an old checkpoint); an interrupted rebuild resumes.
    Rebuild {
        /// Only this tenant (an admin key of it suffices; every tenant needs an operator key).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The node at `--addr` leaves the ring (like `nodetool decommission`): the nodes taking
    /// its ranges stream them from it while writes go to both, then it is `left` for good.
    /// Waits until the movement ended; exits 3 when it was rolled back.
    Decommission,
    /// Removes the dead host HOST_ID (like `nodetool removenode`): the nodes taking its ranges
    /// stream them from every surviving replica. Waits until the movement ended; exits 3 when
    /// it was rolled back.
    Removenode {
        /// The dead host's id, as `allidb cluster status` shows it.
        host_id: String,
        /// Run even when some range lacks the live surviving replicas holding what a QUORUM
        /// acknowledged (what only the dead ones held is lost).
        #[arg(long)]
        ignore_dead: bool,
    },
    /// The node at `--addr` drops the data of the token ranges it no longer replicates (like
    /// `nodetool cleanup`; after a join or a decommission moved ranges away from it). Refused
    /// while a movement runs; no movement starts while it runs.
    Cleanup,
    /// The replicas of one entity, in replica-walk order.
    Endpoints {
        /// The tenant.
        tenant: String,
        /// The entity id.
        id: String,
    },
}

/// Runs `allidb cluster ...`.
pub async fn run(context: &mut Context, args: ClusterArgs) -> CliResult<Outcome> {
    let (path, text): (String, fn(&Value) -> String) = match args.view {
        ClusterView::Backup(backup) => {
            return super::backup::cluster_backup(context, &args.admin, backup).await;
        }
        ClusterView::Repair {
            tenant,
            preview,
            ranges,
        } => {
            return repair(context, tenant, preview, ranges).await;
        }
        ClusterView::Rebuild { tenant } => {
            return rebuild(context, tenant).await;
        }
        ClusterView::Decommission => {
            let mut client = connect(&context.connect).await?;
            let reply = client
                .decommission(pb::DecommissionRequest {})
                .await
                .map_err(|status| CliError::rpc("Decommission", status))?
                .into_inner();
            return topology_change(context, "decommission", reply);
        }
        ClusterView::Cleanup => {
            let mut client = connect(&context.connect).await?;
            let reply = client
                .cleanup(pb::CleanupRequest {})
                .await
                .map_err(|status| CliError::rpc("Cleanup", status))?
                .into_inner();
            context.printer.reply(&reply, cleanup_text)?;
            return Ok(Outcome::Complete);
        }
        ClusterView::Removenode {
            host_id,
            ignore_dead,
        } => {
            let mut client = connect(&context.connect).await?;
            let reply = client
                .remove_node(pb::RemoveNodeRequest {
                    host_id,
                    ignore_dead,
                })
                .await
                .map_err(|status| CliError::rpc("RemoveNode", status))?
                .into_inner();
            return topology_change(context, "removenode", reply);
        }
        ClusterView::Status => ("/cluster/status".to_owned(), status_text),
        ClusterView::Ring => ("/cluster/ring".to_owned(), ring_text),
        ClusterView::Endpoints { tenant, id } => (
            format!(
                "/cluster/endpoints?tenant={}&id={}",
                encode(&tenant),
                encode(&id)
            ),
            endpoints_text,
        ),
    };
    let reply = admin_get(&args.admin, &path).await?;
    context.printer.reply(&reply, text)?;
    Ok(Outcome::Complete)
}

/// `allidb cluster repair`: exits 3 (partial) when some range was skipped or some partition
/// could not be written.
async fn repair(
    context: &mut Context,
    tenant: Option<String>,
    preview: bool,
    ranges: Vec<pb::TokenRange>,
) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .repair(pb::RepairRequest {
            tenant_id: tenant.unwrap_or_default(),
            preview,
            ranges,
        })
        .await
        .map_err(|status| CliError::rpc("Repair", status))?
        .into_inner();
    context.printer.reply(&reply, |r| repair_text(r, preview))?;
    Ok(Outcome::from_complete(reply.complete))
}

/// A `--range START:END` argument.
fn parse_range(text: &str) -> Result<pb::TokenRange, String> {
    let (start, end) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not START:END"))?;
    let token = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{t:?} in {text:?} is not a token (0 to 2^64-1)"))
    };
    Ok(pb::TokenRange {
        start: token(start)?,
        end: token(end)?,
    })
}

/// The human form of a repair's reply.
fn repair_text(reply: &pb::RepairResponse, preview: bool) -> String {
    let mut text = format!(
        "{}: {} of {} token ranges differed, {} leaves, {} partitions\n",
        if preview { "repair preview" } else { "repair" },
        reply.ranges_differing,
        reply.ranges,
        reply.leaves_differing,
        reply.partitions_differing,
    );
    if preview {
        text.push_str(&format!(
            "  nothing written; {} cells ({}) and {} tenant drops would be sent\n",
            reply.cells_streamed,
            human_bytes(reply.bytes_streamed),
            reply.drops_sent
        ));
    } else {
        text.push_str(&format!(
            "  repaired {} partitions: {} cells ({}) and {} tenant drops sent\n",
            reply.partitions_repaired,
            reply.cells_streamed,
            human_bytes(reply.bytes_streamed),
            reply.drops_sent,
        ));
    }
    text.push_str(&format!("  took {} ms\n", reply.duration_ms));
    for skipped in &reply.skipped {
        text.push_str(&format!("  skipped {skipped}\n"));
    }
    for failure in &reply.failures {
        text.push_str(&format!("  failed {failure}\n"));
    }
    text
}

/// Prints how a decommission or removenode ended; exits 3 when it was rolled back.
fn topology_change(
    context: &mut Context,
    what: &'static str,
    reply: pb::TopologyChangeResponse,
) -> CliResult<Outcome> {
    context
        .printer
        .reply(&reply, |reply: &pb::TopologyChangeResponse| {
            let ended = if reply.finished {
                "finished: the host left the ring"
            } else {
                "rolled back: the host is normal again (see the node's log for why)"
            };
            format!(
                "{what} of {} {ended} (topology version {})\n",
                reply.host_id, reply.topology_version
            )
        })?;
    Ok(Outcome::from_complete(reply.finished))
}

/// The human form of a cleanup's reply.
fn cleanup_text(reply: &pb::CleanupResponse) -> String {
    format!(
        "cleanup kept the {} token ranges this node replicates at topology version {}: dropped \
         {} partitions, {} cells ({}); rewrote {} tables, {} -> {}, in {} ms\n",
        reply.ranges_kept,
        reply.topology_version,
        reply.partitions_dropped,
        reply.cells_dropped,
        human_bytes(reply.bytes_dropped),
        reply.tables_rewritten,
        human_bytes(reply.table_bytes_before),
        human_bytes(reply.table_bytes_after),
        reply.duration_ms,
    )
}

/// `allidb cluster rebuild`: exits 3 (partial) when some range was not streamed to its end.
async fn rebuild(context: &mut Context, tenant: Option<String>) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .rebuild(pb::RebuildRequest {
            tenant_id: tenant.unwrap_or_default(),
        })
        .await
        .map_err(|status| CliError::rpc("Rebuild", status))?
        .into_inner();
    context.printer.reply(&reply, rebuild_text)?;
    Ok(Outcome::from_complete(reply.complete))
}

/// The human form of a rebuild's reply.
fn rebuild_text(reply: &pb::RebuildResponse) -> String {
    let mut text = format!(
        "rebuild {} ({}): {} token ranges, received {} partitions, {} cells ({}) in {} ms\n",
        reply.session_id,
        if reply.resumed { "resumed" } else { "new" },
        reply.ranges,
        reply.partitions,
        reply.cells,
        human_bytes(reply.bytes),
        reply.duration_ms,
    );
    for unfinished in &reply.unfinished {
        text.push_str(&format!("  unfinished {unfinished}\n"));
    }
    text
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GETs `path` from the admin server at `addr` and parses its JSON body; a non-200 answer is
/// an error carrying the server's text (e.g. `cluster disabled`).
pub(super) async fn admin_get(addr: &str, path: &str) -> CliResult<Value> {
    let origin = format!("--admin {addr}");
    let (status, body) = super::probe::admin_http_get(addr, path, ADMIN_TIMEOUT).await?;
    if status != "200" {
        return Err(CliError::input(
            &origin,
            format!("{path} answered {status}: {}", body.trim()),
        ));
    }
    serde_json::from_str(&body).map_err(|e| CliError::input(&origin, format!("{path}: {e}")))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

fn status_text(reply: &Value) -> String {
    let mut text = format!(
        "cluster {}, replication factor {}, ring version {} (seen from {})\n",
        str_of(reply, "cluster_name"),
        reply["replication_factor"],
        reply["ring_version"],
        str_of(reply, "host_id"),
    );
    let log = &reply["topology_log"];
    text.push_str(&format!(
        "topology log leader {}, voters {}\n",
        log["leader"]["name"]
            .as_str()
            .unwrap_or("none (no metadata quorum)"),
        log["voters"]
            .as_array()
            .map(|v| v
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    ));
    if let Some(movement) = reply["movement"].as_object() {
        let replacing = movement["replaced"]["name"]
            .as_str()
            .map(|name| format!(" replacing {name}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "movement {} {} of {}{replacing} at step {}\n",
            movement["kind"].as_str().unwrap_or("?"),
            movement["id"],
            movement["name"].as_str().unwrap_or("?"),
            movement["step"].as_str().unwrap_or("?"),
        ));
    }
    for cleanup in reply["cleanups"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "cleanup {} running on {}\n",
            cleanup["id"],
            cleanup["name"].as_str().unwrap_or("?"),
        ));
    }
    text.push_str(&format!(
        "{:<8} {:<9} {:<16} {:<22} {:>10} {:>6} {:>7} {:>12}  {}\n",
        "status",
        "engine",
        "name",
        "rpc address",
        "load",
        "tokens",
        "owns",
        "hints bytes",
        "host id"
    ));
    let mut nodes: Vec<&Value> = reply["nodes"].as_array().into_iter().flatten().collect();
    nodes.sort_by_key(|node| str_of(node, "name"));
    for node in nodes {
        text.push_str(&format!(
            "{:<8} {:<9} {:<16} {:<22} {:>10} {:>6} {:>6.1}% {:>12}  {}\n",
            str_of(node, "status"),
            node["engine_state"].as_str().unwrap_or("?"),
            str_of(node, "name"),
            str_of(node, "rpc_addr"),
            node["load_bytes"]
                .as_u64()
                .map_or_else(|| "?".to_owned(), human_bytes),
            node["tokens"].to_string(),
            node["owns"].as_f64().unwrap_or(0.0) * 100.0,
            node["hints_pending_bytes"].to_string(),
            str_of(node, "host_id"),
        ));
    }
    let repair = &reply["repair"];
    if let Some(ranges) = repair["ranges"].as_u64() {
        let last = match repair["last_repair_unix_secs"].as_u64() {
            Some(secs) => format!("last complete repair at {secs} (Unix seconds)"),
            None => "never repaired".to_owned(),
        };
        text.push_str(&format!(
            "repair: {} of {ranges} ranges this node replicates not repaired within gc_grace \
             ({} s); oldest {} s ago; {last}\n",
            repair["overdue_ranges"], repair["gc_grace_secs"], repair["oldest_repair_age_secs"],
        ));
    }
    let running = &repair["running"];
    if running.is_object() {
        text.push_str(&format!(
            "repair running{} since {} (Unix seconds): step {}, {} of {} ranges done, {} ranges \
             differing, {} of {} differing partitions repaired, {} cells ({} bytes) sent\n",
            if running["preview"].as_bool() == Some(true) {
                " (preview)"
            } else {
                ""
            },
            running["started_unix_secs"],
            str_of(running, "step"),
            running["ranges_done"],
            running["ranges"],
            running["ranges_differing"],
            running["partitions_repaired"],
            running["partitions_differing"],
            running["cells_streamed"],
            running["bytes_streamed"],
        ));
    }
    text
}

fn ring_text(reply: &Value) -> String {
    let mut text = format!("ring version {}\n", reply["ring_version"]);
    text.push_str(&format!(
        "{:>20}  {:<16}  {}\n",
        "end token", "name", "host id"
    ));
    for range in reply["ranges"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{:>20}  {:<16}  {}\n",
            str_of(range, "end"),
            str_of(range, "name"),
            str_of(range, "host_id")
        ));
    }
    text
}

fn endpoints_text(reply: &Value) -> String {
    let mut text = format!(
        "replicas of {:?} in tenant {:?}, token {}\n",
        str_of(reply, "id"),
        str_of(reply, "tenant"),
        str_of(reply, "token")
    );
    for node in reply["replicas"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{:<8} {:<16} {:<22} {}\n",
            str_of(node, "status"),
            str_of(node, "name"),
            str_of(node, "rpc_addr"),
            str_of(node, "host_id")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn cluster_views_parse_and_render() {
        let cli = Cli::try_parse_from([
            "allidb",
            "cluster",
            "--admin",
            "10.0.0.1:9090",
            "endpoints",
            "t",
            "e 1",
        ])
        .unwrap();
        let Command::Cluster(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.admin, "10.0.0.1:9090");
        assert!(matches!(args.view, ClusterView::Endpoints { ref id, .. } if id == "e 1"));
        assert_eq!(encode("e 1/ü"), "e%201%2F%C3%BC");
        let status = json!({
            "cluster_name": "prod", "replication_factor": 3, "ring_version": 4, "host_id": "h0",
            "nodes": [{"status": "down", "name": "n2", "rpc_addr": "10.0.0.3:7000", "tokens": 16,
                       "owns": 1.0, "hints_pending_bytes": 512, "host_id": "h2",
                       "load_bytes": 1572864, "engine_state": "low_space"}],
            "topology_log": {"leader": null, "voters": ["n0", "n2"]},
            "movement": {"id": 7, "kind": "replace", "name": "n5", "step": "stream",
                         "replaced": {"host_id": "h2", "name": "n2"}}
        });
        let text = status_text(&status);
        assert!(
            text.contains("cluster prod, replication factor 3"),
            "{text}"
        );
        assert!(
            text.contains("down") && text.contains("100.0%") && text.contains("512"),
            "{text}"
        );
        assert!(text.contains("1.5 MiB"), "load in binary units: {text}");
        assert!(text.contains("low_space"), "the engine state: {text}");
        assert!(
            text.contains("leader none (no metadata quorum), voters n0, n2"),
            "{text}"
        );
        assert!(
            text.contains("movement replace 7 of n5 replacing n2 at step stream"),
            "{text}"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        let row = text.lines().nth(4).expect("a row per node");
        let header = text.lines().nth(3).expect("a header line");
        let end = |line: &str, column: &str| line.find(column).map(|i| i + column.len());
        assert_eq!(
            end(row, "100.0%"),
            end(header, "owns"),
            "right-aligned: {text}"
        );
    }
}
