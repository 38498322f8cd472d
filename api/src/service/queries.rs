//! The query RPCs of the public service: `Query` and `QueryBatch`, their store request, the
//! batch's chunking over tasks and the reply conversion. Both run through the data path's
//! cluster-wide reads (on a ring of one, or any node holding every range, this node's own
//! indexes answer each query in one call).
//!
//! Invariant: `Query` and `QueryBatch` build their store requests with the same function, so
//! one query means the same whichever way it is sent. Must never run a query around the data
//! path.

use super::*;

impl AlliDbService {
    pub(super) async fn query_rpc(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let mut request = request.into_inner();
        let (level, params) = validation_stage(|| {
            let level = self.consistency(request.consistency_level)?;
            Ok((level, validate::query(&request)?))
        })?;
        validation_stage(|| self.check_query_budgets(&params))?;
        let mut store_request = self.store_query(&request, &params);
        store_request.vector = std::mem::take(&mut request.query_vector);
        let tenant = caller.tenant;
        let chunks = params.include_context && params.context_chunks;
        let reads = self.cluster_reads()?;
        let read = ReadOptions {
            allow_partial: request.allow_partial,
            ..ReadOptions::at(level).routed(&request.routing_key)
        };
        self.check_filter(&tenant, &store_request.filter)
            .map_err(|e| errors::store_status("query", e))?;
        let (reply, report) = reads
            .query(&tenant, &store_request, read, chunks)
            .await
            .map_err(|e| errors::cluster_status("query", e))?;
        let mut response = query_response(reply.hits, params.explain, request.trace_id);
        with_report(&mut response, self.reported(&report), params.explain);
        response.filter_plan = reply.plan.as_ref().map(crate::filter::plan_to_proto);
        response.context = reply
            .context
            .map(|context| context::to_proto(context, params.max_context_bytes));
        tracing::debug!(trace_id = %response.trace_id, results = response.results.len(), "query served");
        Ok(Response::new(response))
    }

    pub(super) async fn query_batch_rpc(
        &self,
        request: Request<pb::QueryBatchRequest>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let caller = self.authorize(&request, Role::Read)?;
        let request = request.into_inner();
        let options = request.options.unwrap_or_default();
        let (level, params) = validation_stage(|| {
            let level = self
                .consistency(options.consistency_level)
                .map_err(|status| validate::in_field("options", status))?;
            let params = validate::query_batch(&options, &request.vectors, &request.texts)?;
            self.check_query_budgets(&params)
                .map_err(|status| validate::in_field("options", status))?;
            if params.include_context {
                return Err(Status::invalid_argument(
                    "options.include_context is not supported by QueryBatch: send one Query per \
                     question for a context reply",
                ));
            }
            Ok((level, params))
        })?;
        let template = self.store_query(&options, &params);
        let texts = request.texts;
        let vectors: Vec<Vec<f32>> = request.vectors.into_iter().map(|v| v.values).collect();
        let read = ReadOptions {
            allow_partial: options.allow_partial,
            ..ReadOptions::at(level).routed(&options.routing_key)
        };
        let reads = self.cluster_reads()?;
        self.check_filter(&caller.tenant, &template.filter)
            .map_err(|e| validate::in_field("options", errors::store_status("query batch", e)))?;
        let queries = batch_queries(vectors, texts);
        let answers = query_batch(reads, &caller.tenant, template, queries, read).await?;
        let replies: Vec<pb::QueryResponse> = answers
            .into_iter()
            .map(|(hits, report, plan)| {
                let mut reply = query_response(hits, params.explain, options.trace_id.clone());
                with_report(&mut reply, self.reported(&report), params.explain);
                reply.filter_plan = plan.as_ref().map(crate::filter::plan_to_proto);
                reply
            })
            .collect();
        tracing::debug!(trace_id = %options.trace_id, queries = replies.len(), "query batch served");
        Ok(Response::new(pb::QueryBatchResponse {
            replies,
            trace_id: options.trace_id,
        }))
    }

    /// Checks a query's seed count and node budget against the server's limits.
    fn check_query_budgets(&self, params: &validate::QueryParams) -> Result<(), Status> {
        let options = &self.options;
        if let Some(seeds) = params.seeds {
            validate::within_server_limit("seeds", seeds, options.query_max_candidates)?;
        }
        let node_budget = params
            .max_nodes
            .unwrap_or(options.query_max_expansion_nodes);
        validate::within_server_limit("max_nodes", node_budget, options.query_max_expansion_nodes)
    }

    /// The store's form of a validated `Query` (or of a `QueryBatch`'s options), without its
    /// vector (its text included): the plan with the server's defaults and limits, the filter
    /// and whether to return entities. `Query` and `QueryBatch` both build their store requests
    /// here, so one query means the same whichever way it is sent.
    fn store_query(
        &self,
        request: &pb::QueryRequest,
        params: &validate::QueryParams,
    ) -> QueryRequest {
        let options = &self.options;
        let (relations, min_weight) = traversal_filters(&request.relations, request.min_weight);
        let defaults = ScoreWeights::default();
        let plan = QueryPlan {
            k: params.k,
            expand_factor: params.expand_factor,
            seeds: params.seeds,
            max_candidates: options.query_max_candidates,
            ef: params.ef,
            traversal: TraversalOptions {
                max_hops: params.max_hops.unwrap_or(options.query_max_hops) as usize,
                fan_out: params.max_fan_out,
                node_budget: params
                    .max_nodes
                    .unwrap_or(options.query_max_expansion_nodes),
                relations,
                direction: graph_direction(params.direction),
                min_weight,
                edge_budget: params.max_edges,
            },
            weights: ScoreWeights {
                vector: params.weights.vector.unwrap_or(defaults.vector),
                graph: params.weights.graph.unwrap_or(defaults.graph),
                importance: params.weights.importance.unwrap_or(defaults.importance),
                recency: params.weights.recency.unwrap_or(defaults.recency),
                hop_decay: params.weights.hop_decay.unwrap_or(defaults.hop_decay),
            },
            ranking: params.ranking,
            keep_walk: params.include_context,
            explain: params.explain,
        };
        let filter = request.filter.clone().unwrap_or_default();
        QueryRequest {
            vector: Vec::new(),
            text: params.text.clone(),
            hybrid: params.hybrid,
            plan,
            filter: Filter {
                entity_types: filter.entity_types,
                attributes: filter.attributes,
                expression: params.expression.clone(),
            },
            include_entities: params.include_entity,
        }
    }
}

/// A batch's queries: vector i with text i, vectors alone, or texts alone (empty vectors).
fn batch_queries(vectors: Vec<Vec<f32>>, texts: Vec<String>) -> Vec<(Vec<f32>, Option<String>)> {
    if texts.is_empty() {
        return vectors.into_iter().map(|v| (v, None)).collect();
    }
    let mut vectors = vectors.into_iter();
    texts
        .into_iter()
        .map(|text| (vectors.next().unwrap_or_default(), Some(text)))
        .collect()
}

/// One `QueryBatch` answer: the hits, the read's report and the filter plan.
type BatchAnswer = (Vec<QueryHit>, ReadReport, Option<PlanReport>);

/// A `QueryBatch`'s queries over every range: cut into [`query_batch_tasks`] consecutive
/// chunks, each a task of its own (so the chunks run on different cores, as the queries a
/// node's own indexes answer run on the task that asks), the queries of a chunk concurrently.
/// The answers come back in query order; a failed query fails the call, its status naming the
/// first failed query (`vectors[i]: ...`, or `texts[i]: ...` for a batch of texts alone).
async fn query_batch(
    reads: &ClusterQuery,
    tenant: &str,
    template: QueryRequest,
    queries: Vec<(Vec<f32>, Option<String>)>,
    read: ReadOptions,
) -> Result<Vec<BatchAnswer>, Status> {
    const OPERATION: &str = "query batch";
    // A batch of texts alone names its texts in errors, any other its vectors.
    let field = match queries.iter().all(|(vector, _)| vector.is_empty()) {
        true => "texts",
        false => "vectors",
    };
    let total = queries.len();
    let chunk_len = total.div_ceil(query_batch_tasks(total)).max(1);
    let tenant: Arc<str> = tenant.into();
    let mut queries = queries.into_iter();
    let mut tasks = Vec::new();
    for _ in (0..total).step_by(chunk_len) {
        let chunk: Vec<QueryRequest> = queries
            .by_ref()
            .take(chunk_len)
            .map(|(vector, text)| QueryRequest {
                vector,
                text,
                ..template.clone()
            })
            .collect();
        let (reads, tenant) = (reads.clone(), Arc::clone(&tenant));
        let span = tracing::debug_span!("store", operation = OPERATION);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            async move {
                let answers = chunk
                    .iter()
                    .map(|request| reads.query(&tenant, request, read, false));
                futures_util::future::join_all(answers).await
            },
            span,
        )));
    }
    let mut answers = Vec::with_capacity(total);
    for task in tasks {
        let chunk = task
            .await
            .map_err(|error| errors::internal(OPERATION, &error))?;
        for reply in chunk {
            let index = answers.len();
            let (reply, report) = reply.map_err(|error| {
                let status = errors::cluster_status(OPERATION, error);
                Status::new(
                    status.code(),
                    format!("{field}[{index}]: {}", status.message()),
                )
            })?;
            answers.push((reply.hits, report, reply.plan));
        }
    }
    Ok(answers)
}

/// Adds a ring read's coverage to `response`, and its profile when the request asked to
/// `explain` (none for a ring of one: [`DataPath`]).
fn with_report(response: &mut pb::QueryResponse, report: Option<&ReadReport>, explain: bool) {
    if let Some(report) = report {
        response.coverage = Some(convert::coverage(&report.coverage));
        response.profile = explain.then(|| convert::read_profile(report));
    }
}

/// How many tasks a batch of `queries` queries is spread over: one per core, but at least
/// [`MIN_QUERIES_PER_TASK`] queries each (below that the hand-off costs more than the
/// parallelism gains).
fn query_batch_tasks(queries: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    cores.min(queries.div_ceil(MIN_QUERIES_PER_TASK)).max(1)
}

/// The reply of one query: its hits as results (with their explanation when `explain`), and
/// the request's `trace_id`.
fn query_response(hits: Vec<QueryHit>, explain: bool, trace_id: String) -> pb::QueryResponse {
    let results: Vec<pb::QueryResult> = hits
        .into_iter()
        .map(|hit| {
            let result = hit.result;
            let explanation = explain.then(|| pb::QueryExplanation {
                vector_score: result.breakdown.vector,
                graph_score: result.breakdown.graph,
                importance_score: result.breakdown.importance,
                recency_score: result.breakdown.recency,
                path: Some(convert::graph_path(&result.entity_id, &result.path)),
                lexical_score: result.breakdown.lexical,
                lexical: result.lexical.as_ref().map(|hit| pb::LexicalExplanation {
                    bm25: hit.score,
                    matched_terms: hit
                        .matched
                        .iter()
                        .map(|(term, score)| pb::MatchedTerm {
                            term: term.to_string(),
                            score: *score,
                            share: if hit.score > 0.0 {
                                score / hit.score
                            } else {
                                0.0
                            },
                        })
                        .collect(),
                }),
                pagerank: result
                    .pagerank
                    .as_ref()
                    .map(|pagerank| pb::PageRankExplanation {
                        mass: pagerank.mass,
                        iterations: convert::count_i32(pagerank.iterations),
                        seed_shares: pagerank
                            .seed_shares
                            .iter()
                            .map(|(seed, share)| pb::SeedShare {
                                entity_id: seed.to_string(),
                                share: *share,
                            })
                            .collect(),
                    }),
            });
            pb::QueryResult {
                entity_id: result.entity_id.to_string(),
                score: result.score,
                entity: hit.entity.as_ref().map(convert::entity_to_proto),
                explanation,
            }
        })
        .collect();
    pb::QueryResponse {
        total_results: convert::count_i32(results.len()),
        results,
        trace_id,
        context: None,
        coverage: None,
        profile: None,
        filter_plan: None,
    }
}
