//! Validation of `Query` and `QueryBatch`: options, ranking and weights, the hybrid search's text
//! and fusion, with defaults resolved.

use super::*;

/// Weights of the unified score as a request asked them (`None` = the default weight).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestedWeights {
    /// Weight of the vector similarity term.
    pub vector: Option<f64>,
    /// Weight of the graph term.
    pub graph: Option<f64>,
    /// Weight of the importance term.
    pub importance: Option<f64>,
    /// Weight of the recency term.
    pub recency: Option<f64>,
    /// Per-hop decay of the graph term.
    pub hop_decay: Option<f64>,
}

/// A validated `QueryRequest` with defaults resolved (except those only the server's config
/// knows, left as `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryParams {
    /// Results wanted, 1..=[`MAX_K`].
    pub k: usize,
    /// ANN seeds per wanted result, 1..=[`MAX_EXPAND_FACTOR`].
    pub expand_factor: usize,
    /// HNSW search breadth; `None` = configured.
    pub ef: Option<usize>,
    /// Expansion depth; `None` = configured, `Some(0)` = no expansion.
    pub max_hops: Option<u32>,
    /// Expansion direction.
    pub direction: pb::Direction,
    /// Requested score weights.
    pub weights: RequestedWeights,
    /// Whether results carry their entity.
    pub include_entity: bool,
    /// Whether results carry their explanation.
    pub explain: bool,
    /// ANN seeds apart from k (>= 1; the server's cap is checked by the service).
    pub seeds: Option<usize>,
    /// Whether the reply carries the context, and its nodes their chunks.
    pub include_context: bool,
    /// With the context: each node's chunks.
    pub context_chunks: bool,
    /// Expansion node budget (>= 1; `None` = the server's; its cap is checked by the service).
    pub max_nodes: Option<usize>,
    /// Edge budget, 1..=[`MAX_EDGES`] (`None`: no limit beyond the others).
    pub max_edges: Option<usize>,
    /// Per-node fan-out, 1..=[`MAX_FAN_OUT`].
    pub max_fan_out: usize,
    /// Largest encoded context, 1..=[`MAX_CONTEXT_BYTES`].
    pub max_context_bytes: usize,
    /// The ranking.
    pub ranking: Ranking,
    /// The request's `where` (checked for shape; the tenant's types are checked by the store).
    pub expression: Option<Expr>,
    /// The query text (`Query.text`; a batch's texts are apart, in `QueryBatchRequest.texts`).
    pub text: Option<String>,
    /// How a query with a vector and a text fuses them.
    pub hybrid: allidb_index::query::HybridOptions,
}

/// The ranking a query asked for, with PageRank options checked and defaults resolved.
fn ranking(request: &pb::QueryRequest) -> Result<Ranking, Status> {
    let mode = pb::ScoringMode::try_from(request.scoring)
        .map_err(|_| invalid(format!("scoring {} is not a known mode", request.scoring)))?;
    let given = request.pagerank.unwrap_or_default();
    if mode == pb::ScoringMode::ScoringUnified {
        if request.pagerank.is_some() {
            return Err(invalid(
                "pagerank options need scoring PERSONALIZED_PAGERANK".to_owned(),
            ));
        }
        return Ok(Ranking::Unified);
    }
    let defaults = PageRankOptions::default();
    let damping = given.damping.unwrap_or(defaults.damping);
    if !(damping > 0.0 && damping < 1.0) {
        return Err(invalid(format!(
            "pagerank.damping must be in (0, 1), got {damping}"
        )));
    }
    let max_iterations = optional_count(
        "pagerank.max_iterations",
        given.max_iterations,
        MAX_PAGERANK_ITERATIONS,
    )?
    .unwrap_or(defaults.max_iterations);
    let tolerance = given.tolerance.unwrap_or(defaults.tolerance);
    if !(tolerance.is_finite() && tolerance > 0.0) {
        return Err(invalid(format!(
            "pagerank.tolerance must be finite and > 0, got {tolerance}"
        )));
    }
    let similarity_weight = given
        .similarity_weight
        .unwrap_or(defaults.similarity_weight);
    if !(0.0..=1.0).contains(&similarity_weight) {
        return Err(invalid(format!(
            "pagerank.similarity_weight must be in [0, 1], got {similarity_weight}"
        )));
    }
    Ok(Ranking::PersonalizedPageRank(PageRankOptions {
        damping,
        max_iterations,
        tolerance,
        similarity_weight,
    }))
}

fn optional_weight(field: &str, value: Option<f64>) -> Result<Option<f64>, Status> {
    if let Some(weight) = value {
        finite(field, weight)?;
        if weight < 0.0 {
            return Err(invalid(format!("{field} must be >= 0, got {weight}")));
        }
    }
    Ok(value)
}

/// A `QueryRequest`.
pub fn query(request: &pb::QueryRequest) -> Result<QueryParams, Status> {
    if let Some(text) = &request.text {
        crate::hybrid::text("text", text)?;
    }
    if request.text.is_none() || !request.query_vector.is_empty() {
        vector("query_vector", &request.query_vector)?;
    }
    let mut params = query_options(
        request,
        !request.query_vector.is_empty(),
        request.text.is_some(),
    )?;
    params.text = request.text.clone();
    Ok(params)
}

/// A `QueryBatchRequest` whose `options` are `options` (the request's, or the defaults when it
/// has none): the options every query shares, checked once, then the batch's size and each of
/// its vectors. Errors name fields by their path in the batch request (`options.k`,
/// `vectors[3].values[7]`).
pub fn query_batch(
    options: &pb::QueryRequest,
    vectors: &[pb::QueryVector],
    texts: &[String],
) -> Result<QueryParams, Status> {
    if !options.query_vector.is_empty() {
        return Err(invalid(
            "options.query_vector must be empty: a batch's query vectors go in vectors".to_owned(),
        ));
    }
    if options.text.is_some() {
        return Err(invalid(
            "options.text must be absent: a batch's query texts go in texts".to_owned(),
        ));
    }
    let params = query_options(options, !vectors.is_empty(), !texts.is_empty())
        .map_err(|status| in_field("options", status))?;
    if !texts.is_empty() {
        max_count("texts", texts.len(), MAX_QUERY_BATCH)?;
        if !vectors.is_empty() && vectors.len() != texts.len() {
            return Err(invalid(format!(
                "texts has {} entries and vectors {}: give one text per vector, or no vectors \
                 for text-only queries",
                texts.len(),
                vectors.len()
            )));
        }
        for (index, text) in texts.iter().enumerate() {
            crate::hybrid::text(&format!("texts[{index}]"), text)?;
        }
        if vectors.is_empty() {
            let results = texts.len() * params.k;
            if results > MAX_QUERY_BATCH_RESULTS {
                return Err(invalid(format!(
                    "texts x options.k = {} x {} = {results} results, the maximum is \
                     {MAX_QUERY_BATCH_RESULTS}",
                    texts.len(),
                    params.k
                )));
            }
            return Ok(params);
        }
    }
    if vectors.is_empty() {
        return Err(invalid("vectors must not be empty".to_owned()));
    }
    max_count("vectors", vectors.len(), MAX_QUERY_BATCH)?;
    let values: usize = vectors.iter().map(|v| v.values.len()).sum();
    if values > MAX_QUERY_BATCH_VALUES {
        return Err(invalid(format!(
            "vectors hold {values} values in total, the maximum is {MAX_QUERY_BATCH_VALUES}"
        )));
    }
    let results = vectors.len() * params.k;
    if results > MAX_QUERY_BATCH_RESULTS {
        return Err(invalid(format!(
            "vectors x options.k = {} x {} = {results} results, the maximum is \
             {MAX_QUERY_BATCH_RESULTS}",
            vectors.len(),
            params.k
        )));
    }
    for (index, query) in vectors.iter().enumerate() {
        vector(&format!("vectors[{index}].values"), &query.values)?;
    }
    Ok(params)
}

/// The options of a `QueryRequest`: every field but `query_vector` and `text`, for a query
/// that has a vector (`has_vector`) and a text (`has_text`).
fn query_options(
    request: &pb::QueryRequest,
    has_vector: bool,
    has_text: bool,
) -> Result<QueryParams, Status> {
    trace_id(&request.trace_id)?;
    routing_key(&request.routing_key)?;
    let hybrid = crate::hybrid::options(request, has_vector, has_text)?;
    let k = positive_or_default("k", request.k, DEFAULT_K, MAX_K)?;
    let expand_factor = positive_or_default(
        "expand_factor",
        request.expand_factor,
        DEFAULT_EXPAND_FACTOR,
        MAX_EXPAND_FACTOR,
    )?;
    let ef = match usize::try_from(request.ef) {
        Ok(0) | Err(_) => None,
        Ok(ef) if ef > MAX_EF => {
            return Err(invalid(format!("ef is {ef}, the maximum is {MAX_EF}")));
        }
        Ok(ef) => Some(ef),
    };
    let max_hops = match request.max_hops {
        None => None,
        Some(hops) => match u32::try_from(hops) {
            Ok(hops) if hops <= MAX_QUERY_HOPS => Some(hops),
            _ => {
                return Err(invalid(format!(
                    "max_hops must be 0..={MAX_QUERY_HOPS}, got {hops}"
                )));
            }
        },
    };
    relation_filter("relations", &request.relations)?;
    finite("min_weight", request.min_weight)?;
    if let Some(filter) = &request.filter {
        max_count(
            "filter.entity_types",
            filter.entity_types.len(),
            MAX_FILTER_VALUES,
        )?;
        string_map("filter.attributes", filter.attributes.iter())?;
    }
    let expression = request
        .r#where
        .as_ref()
        .map(|e| crate::filter::expression("where", e))
        .transpose()?;
    let requested = request.weights.unwrap_or_default();
    let weights = RequestedWeights {
        vector: optional_weight("weights.vector", requested.vector)?,
        graph: optional_weight("weights.graph", requested.graph)?,
        importance: optional_weight("weights.importance", requested.importance)?,
        recency: optional_weight("weights.recency", requested.recency)?,
        hop_decay: optional_weight("hop_decay", request.hop_decay)?,
    };
    if let Some(decay) = weights.hop_decay.filter(|d| *d > 1.0) {
        return Err(invalid(format!("hop_decay must be 0..=1, got {decay}")));
    }
    Ok(QueryParams {
        k,
        expand_factor,
        ef,
        max_hops,
        direction: direction("direction", request.direction)?,
        weights,
        include_entity: request.include_entity.unwrap_or(true),
        explain: request.explain,
        seeds: optional_count("seeds", request.seeds, usize::MAX)?,
        include_context: request.include_context,
        context_chunks: request.context_chunks,
        max_nodes: optional_count("max_nodes", request.max_nodes, usize::MAX)?,
        max_edges: optional_count("max_edges", request.max_edges, MAX_EDGES)?,
        max_fan_out: optional_count("max_fan_out", request.max_fan_out, MAX_FAN_OUT)?
            .unwrap_or(DEFAULT_FAN_OUT),
        max_context_bytes: optional_count(
            "max_context_bytes",
            request.max_context_bytes,
            MAX_CONTEXT_BYTES,
        )?
        .unwrap_or(DEFAULT_CONTEXT_BYTES),
        ranking: ranking_with_text(request, has_text)?,
        expression,
        text: None,
        hybrid,
    })
}

/// [`ranking`], refusing PageRank for a query with a text (not offered yet).
fn ranking_with_text(request: &pb::QueryRequest, has_text: bool) -> Result<Ranking, Status> {
    let ranking = ranking(request)?;
    if has_text && matches!(ranking, Ranking::PersonalizedPageRank(_)) {
        return Err(invalid(
            "scoring SCORING_PERSONALIZED_PAGERANK does not take a text yet: use the unified \
             scoring with text"
                .to_owned(),
        ));
    }
    Ok(ranking)
}
