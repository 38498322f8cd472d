//! `bench get` and `bench scan`: reads of entities `bench ingest` wrote, from random ids.

use allidb_api::pb;

use super::super::Context;
use super::super::error::{CliError, CliResult};
use super::data::{QUERY_STREAM, SplitMix64};
use super::driver::{BenchReport, connections, drive, progress_bar};
use super::{CommonArgs, GetBenchArgs, ScanBenchArgs};

/// Fails a benchmark whose keyspace is empty.
fn require_keys(bench: &'static str, keys: u64) -> CliResult<()> {
    if keys == 0 {
        return Err(CliError::Bench {
            bench,
            reason: "--keys must be at least 1 (the entities `bench ingest` wrote)".into(),
        });
    }
    Ok(())
}

/// Jobs of `bench get` and `bench scan`: `count` ids drawn uniformly among the first `keys`
/// ingested ones, from the query random stream.
fn random_ids(
    common: &CommonArgs,
    count: u64,
    keys: u64,
) -> impl FnMut() -> Option<CliResult<String>> + use<> {
    let mut remaining = count;
    let mut rng = SplitMix64::new(common.seed, QUERY_STREAM);
    let common = common.clone();
    move || {
        if remaining == 0 {
            return None;
        }
        remaining -= 1;
        Some(Ok(common.id(rng.below(keys))))
    }
}

/// `bench get`: every read must find its entity (else the keyspace is wrong and the figures lie).
pub(super) async fn get(context: &Context, args: GetBenchArgs) -> CliResult<BenchReport> {
    require_keys("get", args.keys)?;
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "reads");
    let next_job = random_ids(&args.common, args.count, args.keys);
    let consistency = context.consistency;
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |mut client, id: String| async move {
            let reply = client
                .get_entity(pb::GetEntityRequest {
                    entity_id: id.clone(),
                    consistency_level: consistency,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("GetEntity", status))?
                .into_inner();
            if !reply.found {
                return Err(CliError::Bench {
                    bench: "get",
                    reason: format!(
                        "entity {id} not found: is --keys larger than what was ingested?"
                    ),
                });
            }
            Ok(1)
        },
    )
    .await?;
    Ok(measurement.report(
        "get",
        "reads",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("keys".into(), args.keys.to_string()),
        ],
    ))
}

/// `bench scan`: range scans of `--limit` entities from random start ids.
pub(super) async fn scan(context: &Context, args: ScanBenchArgs) -> CliResult<BenchReport> {
    require_keys("scan", args.keys)?;
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "scans");
    let next_job = random_ids(&args.common, args.count, args.keys);
    let limit = args.limit;
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |mut client, start: String| async move {
            let reply = client
                .range_scan(pb::RangeScanRequest {
                    start_key: start,
                    limit,
                    ..Default::default()
                })
                .await
                .map_err(|status| CliError::rpc("RangeScan", status))?
                .into_inner();
            Ok(reply.entities.len() as u64)
        },
    )
    .await?;
    Ok(measurement.report(
        "scan",
        "entities",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("keys".into(), args.keys.to_string()),
            ("limit".into(), args.limit.to_string()),
        ],
    ))
}
