//! `bench ingest`: batches of synthetic entities written with `BatchPutEntities`.

use allidb_api::pb;

use super::super::Context;
use super::super::connect::Client;
use super::super::error::{CliError, CliResult};
use super::IngestArgs;
use super::data::{ENTITY_STREAM, bench_entity, synthetic_text, synthetic_vector};
use super::driver::{BenchReport, connections, drive, progress_bar};

/// Writes one batch; any rejected entity fails the benchmark.
pub(super) async fn put_batch(
    mut client: Client,
    consistency: i32,
    entities: Vec<pb::Entity>,
) -> CliResult<u64> {
    let sent = entities.len() as u64;
    let reply = client
        .batch_put_entities(pb::BatchPutEntitiesRequest {
            entities,
            consistency_level: consistency,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("BatchPutEntities", status))?
        .into_inner();
    if reply.failure_count != 0 || reply.success_count as u64 != sent {
        return Err(CliError::Bench {
            bench: "ingest",
            reason: format!(
                "{} of {sent} entities rejected: {}",
                reply.failure_count, reply.error_message
            ),
        });
    }
    Ok(sent)
}

/// `bench ingest`.
pub(super) async fn ingest(context: &Context, args: IngestArgs) -> CliResult<BenchReport> {
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(args.count, "entities");
    let (dim, batch_size) = (args.dim as usize, u64::from(args.batch_size));
    let text_bytes = args.text_bytes as usize;
    let end = args.start.saturating_add(args.count);
    let mut next_index = args.start;
    let common = args.common.clone();
    let next_job = move || {
        if next_index >= end {
            return None;
        }
        let batch_end = end.min(next_index + batch_size);
        let batch: Vec<pb::Entity> = (next_index..batch_end)
            .map(|index| {
                let vector = synthetic_vector(common.seed, ENTITY_STREAM, index, dim);
                let mut entity = bench_entity(common.id(index), vector);
                if text_bytes > 0 {
                    entity.chunks = vec![pb::TextChunk {
                        chunk_id: "c0".to_owned(),
                        text: synthetic_text(common.seed, index, text_bytes),
                        ..Default::default()
                    }];
                }
                entity
            })
            .collect();
        next_index = batch_end;
        Some(Ok(batch))
    };
    let consistency = context.consistency;
    let measurement = drive(clients, &progress, next_job, move |client, batch| {
        put_batch(client, consistency, batch)
    })
    .await?;
    Ok(measurement.report(
        "ingest",
        "entities",
        args.common.concurrency,
        vec![
            ("n".into(), args.count.to_string()),
            ("dim".into(), args.dim.to_string()),
            ("text_bytes".into(), args.text_bytes.to_string()),
            ("batch_size".into(), args.batch_size.to_string()),
            ("consistency".into(), consistency_name(consistency).into()),
        ],
    ))
}

/// The name of a consistency level on the wire, for the report.
pub(super) fn consistency_name(wire: i32) -> &'static str {
    match pb::ConsistencyLevel::try_from(wire) {
        Ok(pb::ConsistencyLevel::ConsistencyQuorum) => "quorum",
        Ok(pb::ConsistencyLevel::ConsistencyAll) => "all",
        _ => "one",
    }
}
