//! `bench query`: vector and Graph-RAG queries, synthetic or from a TEXMEX data set (ingested
//! first unless skipped) with recall@k against its ground truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allidb_api::pb;

use super::super::Context;
use super::super::connect::Client;
use super::super::error::{CliError, CliResult};
use super::super::texmex::{self, VecsReader};
use super::data::{QUERY_STREAM, bench_entity, synthetic_vector};
use super::driver::{BenchReport, connections, drive, progress_bar};
use super::write::{consistency_name, put_batch};
use super::{QueryBenchArgs, id_index};

/// The query request of the query benchmark.
fn bench_query_request(
    args: &QueryBenchArgs,
    consistency: i32,
    vector: Vec<f32>,
) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vector,
        k: args.k,
        expand_factor: args.expand.unwrap_or(0),
        consistency_level: consistency,
        max_hops: Some(args.max_hops),
        ef: args.ef.unwrap_or(0),
        include_entity: Some(args.with_entities),
        seeds: args.seeds,
        relations: args.relations.clone(),
        max_fan_out: args.fan_out,
        max_nodes: args.max_nodes,
        include_context: args.context,
        ..Default::default()
    }
}

/// Ingests a TEXMEX base set, row `r` as entity `<prefix><r>`.
async fn ingest_vectors(
    context: &Context,
    args: &QueryBenchArgs,
    path: &std::path::Path,
) -> CliResult<BenchReport> {
    let clients = connections(context, args.common.concurrency).await?;
    let size = std::fs::metadata(path)
        .map_err(|source| CliError::io(path, source))?
        .len();
    let mut reader = VecsReader::open(path)?;
    let common = args.common.clone();
    let batch_size = args.batch_size as usize;
    let mut dim = 0;
    let first_row = reader.next_row::<f32>()?;
    if let Some(row) = &first_row {
        dim = row.len();
    }
    let rows_estimate = size / (4 + 4 * dim.max(1) as u64);
    let progress = progress_bar(rows_estimate, "entities");
    let mut pending_first = first_row;
    let next_job = move || {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            let row = match pending_first.take() {
                Some(row) => row,
                None => match reader.next_row::<f32>() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(error) => return Some(Err(error)),
                },
            };
            let index = reader.rows_read() - 1;
            batch.push(bench_entity(common.id(index), row));
        }
        (!batch.is_empty()).then_some(Ok(batch))
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
            ("vectors".into(), path.display().to_string()),
            ("dim".into(), dim.to_string()),
            ("batch_size".into(), args.batch_size.to_string()),
            ("consistency".into(), consistency_name(consistency).into()),
        ],
    ))
}

/// Recall of `found` ids against the first `k` ground-truth rows of one query.
fn recall_hits(prefix: &str, found: &[pb::QueryResult], truth: &[i32], k: usize) -> u64 {
    let truth: std::collections::HashSet<u64> = truth
        .iter()
        .take(k)
        .filter_map(|row| u64::try_from(*row).ok())
        .collect();
    found
        .iter()
        .take(k)
        .filter_map(|result| id_index(prefix, &result.entity_id))
        .filter(|row| truth.contains(row))
        .count() as u64
}

/// Runs the query vectors `indices` of `queries` with `template`'s options: in one
/// `QueryBatch` when `batched`, else in one `Query` (`indices` is then one vector). Returns one
/// reply per vector, in order.
async fn run_queries(
    mut client: Client,
    template: pb::QueryRequest,
    queries: &[Vec<f32>],
    indices: &[usize],
    batched: bool,
) -> CliResult<Vec<pb::QueryResponse>> {
    if let (false, [index]) = (batched, indices) {
        let request = pb::QueryRequest {
            query_vector: queries[*index].clone(),
            ..template
        };
        let reply = client
            .query(request)
            .await
            .map_err(|status| CliError::rpc("Query", status))?;
        return Ok(vec![reply.into_inner()]);
    }
    let request = pb::QueryBatchRequest {
        options: Some(template),
        vectors: indices
            .iter()
            .map(|index| pb::QueryVector {
                values: queries[*index].clone(),
            })
            .collect(),
        texts: Vec::new(),
    };
    let replies = client
        .query_batch(request)
        .await
        .map_err(|status| CliError::rpc("QueryBatch", status))?
        .into_inner()
        .replies;
    if replies.len() != indices.len() {
        return Err(CliError::Bench {
            bench: "query",
            reason: format!(
                "QueryBatch of {} vectors answered {} result lists",
                indices.len(),
                replies.len()
            ),
        });
    }
    Ok(replies)
}

/// `bench query`: synthetic, or a data set (ingest unless skipped, then queries and recall@k).
/// Returns the ingest report too when there was one.
pub(super) async fn query(context: &Context, args: QueryBenchArgs) -> CliResult<Vec<BenchReport>> {
    let mut reports = Vec::new();
    let k = args.k as usize;
    // Query vectors and, in data-set mode, their ground truth.
    let (queries, truth): (Vec<Vec<f32>>, Option<Vec<Vec<i32>>>) = match (
        &args.vectors,
        &args.queries,
        &args.ground_truth,
    ) {
        (Some(base), Some(queries_path), Some(truth_path)) => {
            let queries: Vec<Vec<f32>> = texmex::read_all(queries_path)?;
            let truth: Vec<Vec<i32>> = texmex::read_all(truth_path)?;
            if truth.len() < queries.len() || truth[0].len() < k {
                return Err(CliError::input(
                    truth_path.display().to_string(),
                    format!(
                        "{} rows of {} ids: need at least {} rows (one per query) of at least k = {k}",
                        truth.len(),
                        truth[0].len(),
                        queries.len()
                    ),
                ));
            }
            if !args.skip_ingest {
                reports.push(ingest_vectors(context, &args, base).await?);
            }
            (queries, Some(truth))
        }
        _ => {
            let count = args.count.unwrap_or(1000).max(1);
            let queries = (0..count.min(100_000))
                .map(|index| {
                    synthetic_vector(args.common.seed, QUERY_STREAM, index, args.dim as usize)
                })
                .collect();
            (queries, None)
        }
    };
    if args.settle_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    }
    let count = args.count.unwrap_or(queries.len() as u64);
    let clients = connections(context, args.common.concurrency).await?;
    let progress = progress_bar(count, "queries");
    let hits = Arc::new(AtomicU64::new(0));
    let mut next = 0u64;
    let query_count = queries.len() as u64;
    let batch = u64::from(args.batch);
    let batched = args.batch > 1;
    // A job is the indices of the query vectors of one request.
    let next_job = move || {
        if next >= count {
            return None;
        }
        let end = count.min(next + batch);
        let indices: Vec<usize> = (next..end).map(|n| (n % query_count) as usize).collect();
        next = end;
        Some(Ok(indices))
    };
    let shared = Arc::new((queries, truth, args.common.id_prefix.clone()));
    let template = bench_query_request(&args, context.consistency, Vec::new());
    let worker_hits = Arc::clone(&hits);
    let context_nodes = Arc::new(AtomicU64::new(0));
    let worker_context_nodes = Arc::clone(&context_nodes);
    let measurement = drive(
        clients,
        &progress,
        next_job,
        move |client, indices: Vec<usize>| {
            let shared = Arc::clone(&shared);
            let hits = Arc::clone(&worker_hits);
            let context_nodes = Arc::clone(&worker_context_nodes);
            let template = template.clone();
            async move {
                let (queries, truth, prefix) = &*shared;
                let replies = run_queries(client, template, queries, &indices, batched).await?;
                let nodes: usize = replies
                    .iter()
                    .filter_map(|reply| reply.context.as_ref())
                    .map(|context| context.nodes.len())
                    .sum();
                context_nodes.fetch_add(nodes as u64, Ordering::Relaxed);
                if let Some(truth) = truth {
                    let found: u64 = indices
                        .iter()
                        .zip(&replies)
                        .map(|(index, reply)| {
                            recall_hits(prefix, &reply.results, &truth[*index], k)
                        })
                        .sum();
                    hits.fetch_add(found, Ordering::Relaxed);
                }
                Ok(indices.len() as u64)
            }
        },
    )
    .await?;
    let data_set = args.vectors.is_some();
    let queries = measurement.items;
    let mut report = measurement.report(
        "query",
        "queries",
        args.common.concurrency,
        vec![
            ("n".into(), count.to_string()),
            ("k".into(), args.k.to_string()),
            ("max_hops".into(), args.max_hops.to_string()),
            (
                "expand".into(),
                args.expand.map_or("default".into(), |e| e.to_string()),
            ),
            (
                "ef".into(),
                args.ef.map_or("default".into(), |e| e.to_string()),
            ),
            ("with_entities".into(), args.with_entities.to_string()),
            ("batch".into(), args.batch.to_string()),
            (
                "seeds".into(),
                args.seeds.map_or("k x expand".into(), |s| s.to_string()),
            ),
            ("relations".into(), args.relations.join(",")),
            (
                "fan_out".into(),
                args.fan_out.map_or("default".into(), |f| f.to_string()),
            ),
            (
                "max_nodes".into(),
                args.max_nodes.map_or("default".into(), |m| m.to_string()),
            ),
            ("context".into(), args.context.to_string()),
        ],
    );
    if args.context {
        let mean = context_nodes.load(Ordering::Relaxed) as f64 / queries.max(1) as f64;
        report
            .parameters
            .push(("context_entities_per_query".into(), format!("{mean:.1}")));
    }
    if data_set {
        report.recall_at_k =
            Some(hits.load(Ordering::Relaxed) as f64 / (queries.max(1) as f64 * k as f64));
    }
    reports.push(report);
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `allidb bench query <flags>` sends.
    fn bench_query_request_of(flags: &[&str]) -> pb::QueryRequest {
        use clap::Parser;
        let argv = ["allidb", "bench", "query"].iter().chain(flags);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("valid flags");
        let crate::cli::Command::Bench(super::super::BenchArgs {
            bench: super::super::Bench::Query(args),
        }) = cli.command
        else {
            panic!("not bench query");
        };
        bench_query_request(&args, 0, vec![1.0])
    }

    #[test]
    fn graph_rag_flags_reach_the_query_request() {
        let request = bench_query_request_of(&[
            "-k",
            "10",
            "--seeds",
            "12",
            "--max-hops",
            "2",
            "--relations",
            "depends,uses",
            "--relations",
            "cites",
            "--fan-out",
            "16",
            "--max-nodes",
            "1000",
            "--context",
            "--ef",
            "64",
        ]);
        assert_eq!(request.seeds, Some(12));
        assert_eq!(request.relations, ["depends", "uses", "cites"]);
        assert_eq!(request.max_fan_out, Some(16));
        assert_eq!(request.max_nodes, Some(1000));
        assert!(request.include_context);
        assert_eq!((request.k, request.max_hops, request.ef), (10, Some(2), 64));
        // Without the flags the request leaves them to the daemon (and k x expand seeds).
        let request = bench_query_request_of(&[]);
        assert_eq!(
            (request.seeds, request.max_fan_out, request.max_nodes),
            (None, None, None)
        );
        assert!(request.relations.is_empty() && !request.include_context);
    }

    #[test]
    fn recall_counts_overlap_with_the_first_k_truth_rows() {
        let result = |id: &str| pb::QueryResult {
            entity_id: id.into(),
            ..Default::default()
        };
        let found = [
            result("p0000000005"),
            result("p0000000002"),
            result("other"),
        ];
        assert_eq!(recall_hits("p", &found, &[2, 5, 9], 3), 2);
        assert_eq!(recall_hits("p", &found, &[2, 7, 5], 2), 1);
        assert_eq!(recall_hits("p", &found, &[], 2), 0);
    }
}
