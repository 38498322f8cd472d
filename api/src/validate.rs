//! Request validation for the public API (WIRE.md §1 "Behaviour", DESIGN.md §7).
//!
//! Every check names the offending field by its path in the request (`entity.embeddings[2]
//! .vector[5]`, `entities[3].entity_id`, ...) and maps to the status code WIRE.md prescribes:
//! `INVALID_ARGUMENT` for malformed input, `PERMISSION_DENIED` for a tenant other than the
//! caller's. The limits are the named constants below. Functions here only read requests and
//! resolve defaults; they never touch storage and never panic on any input.
//! `RangeScan` page tokens are checked with the service's key ([`crate::page_token`]).

use std::ops::Bound;

use prost::Message;
use tonic::Status;

use allidb_index::filter::Expr;
use allidb_index::query::{PageRankOptions, Ranking};

use crate::page_token::PageTokenKey;
use crate::pb;

/// Results of a query when `k <= 0`.
pub const DEFAULT_K: usize = 10;
/// Largest `k` a query may ask for.
pub const MAX_K: usize = 1000;
/// ANN seeds per wanted result when `expand_factor <= 0`.
pub const DEFAULT_EXPAND_FACTOR: usize = 2;
/// Largest `expand_factor`.
pub const MAX_EXPAND_FACTOR: usize = 100;
/// Largest HNSW search breadth `ef` a query may ask for.
pub const MAX_EF: usize = 10_000;
/// Largest graph expansion depth of a query.
pub const MAX_QUERY_HOPS: u32 = 5;
/// Per-node fan-out of a query expansion when `max_fan_out` is absent (the expansion default).
pub const DEFAULT_FAN_OUT: usize = 16;
/// Largest per-node fan-out of a query expansion.
pub const MAX_FAN_OUT: usize = 10_000;
/// Largest edge budget (`max_edges`) of a query or traversal.
pub const MAX_EDGES: usize = 100_000;
/// Encoded size of a query context when `max_context_bytes` is absent.
pub const DEFAULT_CONTEXT_BYTES: usize = 1 << 20;
/// Largest `max_context_bytes`.
pub const MAX_CONTEXT_BYTES: usize = 16 << 20;
/// Largest PageRank iteration cap.
pub const MAX_PAGERANK_ITERATIONS: usize = 1_000;
/// Largest depth of a traversal.
pub const MAX_TRAVERSE_HOPS: u32 = 10;
/// Entities a traversal reaches at most when `max_nodes <= 0`.
pub const DEFAULT_TRAVERSE_NODES: usize = 1000;
/// Largest `max_nodes` of a traversal.
pub const MAX_TRAVERSE_NODES: usize = 100_000;
/// Most entities in one `BatchPutEntities` request or one bulk import chunk.
pub const MAX_BATCH_ENTITIES: usize = 1000;
/// Most ids in one `GetEntities` request or traversal start set.
pub const MAX_IDS_PER_REQUEST: usize = 1000;
/// Most edges in one `AddEdges` / `RemoveEdges` request.
pub const MAX_EDGES_PER_REQUEST: usize = 10_000;
/// Largest vector dimension.
pub const MAX_VECTOR_DIM: usize = 4096;
/// Most embeddings (versions) of one entity.
pub const MAX_EMBEDDINGS_PER_ENTITY: usize = 64;
/// Most edges (incoming plus outgoing) written with one entity.
pub const MAX_EDGES_PER_ENTITY: usize = 10_000;
/// Most text chunks of one entity.
pub const MAX_CHUNKS_PER_ENTITY: usize = 1024;
/// Longest chunk id in bytes.
pub const MAX_CHUNK_ID_BYTES: usize = 512;
/// Longest chunk text in bytes.
pub const MAX_CHUNK_TEXT_BYTES: usize = 256 * 1024;
/// Most entries of a string map (chunk metadata, entity attributes, attribute filter).
pub const MAX_MAP_ENTRIES: usize = 64;
/// Longest key of a string map entry in bytes.
pub const MAX_MAP_KEY_BYTES: usize = 256;
/// Longest value of a string map entry in bytes.
pub const MAX_MAP_VALUE_BYTES: usize = 4096;
/// Longest entity type in bytes.
pub const MAX_ENTITY_TYPE_BYTES: usize = 256;
/// Longest trace id in bytes.
pub const MAX_TRACE_ID_BYTES: usize = 256;
/// Longest routing key of a cluster-wide read in bytes.
pub const MAX_ROUTING_KEY_BYTES: usize = 256;
/// Most entries of a list filter (relations, entity types).
pub const MAX_FILTER_VALUES: usize = 64;
/// Entities per `RangeScan` page when `limit <= 0`.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// Largest `RangeScan` page; a larger `limit` is lowered to it.
pub const MAX_SCAN_LIMIT: usize = 1000;
/// Most query vectors in one `QueryBatch`.
pub const MAX_QUERY_BATCH: usize = 1000;
/// Most vector values (of all its vectors together) in one `QueryBatch`: 8 MiB of floats.
pub const MAX_QUERY_BATCH_VALUES: usize = 1 << 21;
/// Most results one `QueryBatch` may ask for: its vectors times `k`.
pub const MAX_QUERY_BATCH_RESULTS: usize = 100_000;
/// Largest encoded gRPC message the server accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// The message of a storage validation error without its "invalid argument" prefix.
fn storage_reason(error: allidb_storage::Error) -> String {
    match error {
        allidb_storage::Error::InvalidArgument(reason) => reason,
        other => other.to_string(),
    }
}

/// `field` must be a valid entity id (1..=512 bytes of UTF-8, no NUL).
pub fn entity_id(field: &str, id: &str) -> Result<(), Status> {
    allidb_storage::key::validate_id(id)
        .map_err(|e| invalid(format!("{field}: {}", storage_reason(e))))
}

fn relation(field: &str, value: &str) -> Result<(), Status> {
    allidb_storage::key::validate_relation(value)
        .map_err(|e| invalid(format!("{field}: {}", storage_reason(e))))
}

fn max_bytes(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(invalid(format!(
            "{field} is {} bytes, the maximum is {max}",
            value.len()
        )));
    }
    Ok(())
}

fn max_count(field: &str, count: usize, max: usize) -> Result<(), Status> {
    if count > max {
        return Err(invalid(format!(
            "{field} has {count} entries, the maximum is {max}"
        )));
    }
    Ok(())
}

fn finite(field: &str, value: f64) -> Result<(), Status> {
    if !value.is_finite() {
        return Err(invalid(format!("{field} must be finite, got {value}")));
    }
    Ok(())
}

fn non_negative(field: &str, value: i64) -> Result<(), Status> {
    if value < 0 {
        return Err(invalid(format!("{field} must be >= 0, got {value}")));
    }
    Ok(())
}

fn string_map<'a>(
    field: &str,
    map: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Status> {
    max_count(field, map.len(), MAX_MAP_ENTRIES)?;
    for (key, value) in map {
        max_bytes(&format!("{field} key {key:?}"), key, MAX_MAP_KEY_BYTES)?;
        max_bytes(&format!("{field}[{key:?}]"), value, MAX_MAP_VALUE_BYTES)?;
    }
    Ok(())
}

/// A tenant named in a request (`field`) must be empty (= the caller's) or the caller's tenant.
pub fn tenant_matches(field: &str, requested: &str, caller: &str) -> Result<(), Status> {
    if requested.is_empty() || requested == caller {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{field} {requested:?} is not the caller's tenant"
        )))
    }
}

/// A vector: non-empty, at most [`MAX_VECTOR_DIM`] values, all finite. The tenant's dimension is
/// checked by the index, which knows it.
pub fn vector(field: &str, values: &[f32]) -> Result<(), Status> {
    if values.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if values.len() > MAX_VECTOR_DIM {
        return Err(invalid(format!(
            "{field} has {} dimensions, the maximum is {MAX_VECTOR_DIM}",
            values.len()
        )));
    }
    if let Some((index, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(invalid(format!(
            "{field}[{index}] must be finite, got {value}"
        )));
    }
    Ok(())
}

/// A trace id: at most [`MAX_TRACE_ID_BYTES`].
pub fn trace_id(value: &str) -> Result<(), Status> {
    max_bytes("trace_id", value, MAX_TRACE_ID_BYTES)
}

/// A read's routing key: at most [`MAX_ROUTING_KEY_BYTES`].
pub fn routing_key(value: &str) -> Result<(), Status> {
    max_bytes("routing_key", value, MAX_ROUTING_KEY_BYTES)
}

/// Resolves a request's consistency level: [`crate::http_model::consistency_level::UNSET`]
/// (absent in JSON) means `default`; a number outside the enum is `INVALID_ARGUMENT`.
pub fn consistency(
    value: i32,
    default: pb::ConsistencyLevel,
) -> Result<pb::ConsistencyLevel, Status> {
    if value == crate::http_model::consistency_level::UNSET {
        return Ok(default);
    }
    pb::ConsistencyLevel::try_from(value)
        .map_err(|_| invalid(format!("consistency_level {value} is not a known level")))
}

fn direction(field: &str, value: i32) -> Result<pb::Direction, Status> {
    pb::Direction::try_from(value)
        .map_err(|_| invalid(format!("{field} {value} is not a known direction")))
}

/// The `entity` of a `PutEntityRequest` must be present.
pub fn require_entity(entity: Option<&pb::Entity>) -> Result<&pb::Entity, Status> {
    entity.ok_or_else(|| invalid("entity is required".to_owned()))
}

/// One graph edge seen from the entity that carries it: `own_end` (the end that must be empty or
/// `entity_id`) and `other_end` (a required valid id).
fn entity_edge(
    field: &str,
    edge: &pb::GraphEdge,
    entity_id: &str,
    outgoing: bool,
) -> Result<(), Status> {
    let (own_name, own, other_name, other) = if outgoing {
        (
            "from_entity",
            &edge.from_entity,
            "to_entity",
            &edge.to_entity,
        )
    } else {
        (
            "to_entity",
            &edge.to_entity,
            "from_entity",
            &edge.from_entity,
        )
    };
    if !own.is_empty() && own != entity_id {
        return Err(invalid(format!(
            "{field}.{own_name} {own:?} must be empty or the entity id {entity_id:?}"
        )));
    }
    self::entity_id(&format!("{field}.{other_name}"), other)?;
    edge_payload(field, &edge.relation, edge.weight, edge.timestamp_nanos)
}

fn edge_payload(field: &str, value: &str, weight: f64, timestamp_nanos: i64) -> Result<(), Status> {
    relation(&format!("{field}.relation"), value)?;
    finite(&format!("{field}.weight"), weight)?;
    non_negative(&format!("{field}.timestamp_nanos"), timestamp_nanos)
}

/// A complete entity of a write, at request path `field` (e.g. `entity`, `entities[3]`), written
/// by a caller of tenant `caller_tenant`.
pub fn entity(field: &str, entity: &pb::Entity, caller_tenant: &str) -> Result<(), Status> {
    entity_id(&format!("{field}.entity_id"), &entity.entity_id)?;
    tenant_matches(
        &format!("{field}.tenant_id"),
        &entity.tenant_id,
        caller_tenant,
    )?;
    max_bytes(
        &format!("{field}.entity_type"),
        &entity.entity_type,
        MAX_ENTITY_TYPE_BYTES,
    )?;
    finite(&format!("{field}.importance"), entity.importance)?;
    crate::validate_provenance::entity_sources(field, entity)?;

    max_count(
        &format!("{field}.embeddings"),
        entity.embeddings.len(),
        MAX_EMBEDDINGS_PER_ENTITY,
    )?;
    for (index, embedding) in entity.embeddings.iter().enumerate() {
        let at = format!("{field}.embeddings[{index}]");
        vector(&format!("{at}.vector"), &embedding.vector)?;
        let first_dim = entity.embeddings[0].vector.len();
        if embedding.vector.len() != first_dim {
            return Err(invalid(format!(
                "{at}.vector has {} dimensions, {field}.embeddings[0] has {first_dim}",
                embedding.vector.len()
            )));
        }
        non_negative(&format!("{at}.version"), embedding.version)?;
        non_negative(&format!("{at}.timestamp_nanos"), embedding.timestamp_nanos)?;
    }

    max_count(
        &format!("{field}.outgoing_edges + incoming_edges"),
        entity.outgoing_edges.len() + entity.incoming_edges.len(),
        MAX_EDGES_PER_ENTITY,
    )?;
    for (index, edge) in entity.outgoing_edges.iter().enumerate() {
        entity_edge(
            &format!("{field}.outgoing_edges[{index}]"),
            edge,
            &entity.entity_id,
            true,
        )?;
    }
    for (index, edge) in entity.incoming_edges.iter().enumerate() {
        entity_edge(
            &format!("{field}.incoming_edges[{index}]"),
            edge,
            &entity.entity_id,
            false,
        )?;
    }

    max_count(
        &format!("{field}.chunks"),
        entity.chunks.len(),
        MAX_CHUNKS_PER_ENTITY,
    )?;
    for (index, chunk) in entity.chunks.iter().enumerate() {
        let at = format!("{field}.chunks[{index}]");
        max_bytes(
            &format!("{at}.chunk_id"),
            &chunk.chunk_id,
            MAX_CHUNK_ID_BYTES,
        )?;
        max_bytes(&format!("{at}.text"), &chunk.text, MAX_CHUNK_TEXT_BYTES)?;
        string_map(&format!("{at}.metadata"), chunk.metadata.iter())?;
    }
    string_map(&format!("{field}.attributes"), entity.attributes.iter())
}

/// The number of entities in a batch (`field`): at least one, at most [`MAX_BATCH_ENTITIES`].
/// Each entity is validated on its own by the caller, so one bad entity fails only itself.
pub fn batch_len(field: &str, len: usize) -> Result<(), Status> {
    if len == 0 {
        return Err(invalid(format!("{field} must not be empty")));
    }
    max_count(field, len, MAX_BATCH_ENTITIES)
}

/// A list of entity ids (`GetEntities.entity_ids`, `Traverse.start_ids`): 1..=
/// [`MAX_IDS_PER_REQUEST`] valid ids.
pub fn id_list(field: &str, ids: &[String]) -> Result<(), Status> {
    if ids.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    max_count(field, ids.len(), MAX_IDS_PER_REQUEST)?;
    for (index, id) in ids.iter().enumerate() {
        entity_id(&format!("{field}[{index}]"), id)?;
    }
    Ok(())
}

fn relation_filter(field: &str, relations: &[String]) -> Result<(), Status> {
    max_count(field, relations.len(), MAX_FILTER_VALUES)?;
    for (index, value) in relations.iter().enumerate() {
        relation(&format!("{field}[{index}]"), value)?;
    }
    Ok(())
}

/// A standalone edge of `AddEdges`: both ends required.
pub fn graph_edge(field: &str, edge: &pb::GraphEdge) -> Result<(), Status> {
    entity_id(&format!("{field}.from_entity"), &edge.from_entity)?;
    entity_id(&format!("{field}.to_entity"), &edge.to_entity)?;
    edge_payload(field, &edge.relation, edge.weight, edge.timestamp_nanos)
}

/// An edge of `RemoveEdges`: both ends required.
pub fn edge_key(field: &str, edge: &pb::EdgeKey) -> Result<(), Status> {
    entity_id(&format!("{field}.from_entity"), &edge.from_entity)?;
    entity_id(&format!("{field}.to_entity"), &edge.to_entity)?;
    relation(&format!("{field}.relation"), &edge.relation)
}

fn edge_list_len(len: usize) -> Result<(), Status> {
    if len == 0 {
        return Err(invalid("edges must not be empty".to_owned()));
    }
    max_count("edges", len, MAX_EDGES_PER_REQUEST)
}

/// An `AddEdges` request.
pub fn add_edges(request: &pb::AddEdgesRequest) -> Result<(), Status> {
    trace_id(&request.trace_id)?;
    edge_list_len(request.edges.len())?;
    for (index, edge) in request.edges.iter().enumerate() {
        graph_edge(&format!("edges[{index}]"), edge)?;
        crate::validate_provenance::standalone_edge_sources(&format!("edges[{index}]"), edge)?;
    }
    Ok(())
}

/// A `RemoveEdges` request.
pub fn remove_edges(request: &pb::RemoveEdgesRequest) -> Result<(), Status> {
    trace_id(&request.trace_id)?;
    edge_list_len(request.edges.len())?;
    for (index, edge) in request.edges.iter().enumerate() {
        edge_key(&format!("edges[{index}]"), edge)?;
    }
    Ok(())
}

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

/// An optional count that must be `1..=max` when present (`field` names it in the error).
fn optional_count(field: &str, value: Option<i32>, max: usize) -> Result<Option<usize>, Status> {
    let Some(value) = value else {
        return Ok(None);
    };
    match usize::try_from(value) {
        Ok(count) if (1..=max).contains(&count) => Ok(Some(count)),
        _ => Err(invalid(format!("{field} must be 1..={max}, got {value}"))),
    }
}

/// A count resolved by the server's configuration must not exceed the configured `max`.
pub fn within_server_limit(field: &str, value: usize, max: usize) -> Result<(), Status> {
    if value > max {
        return Err(invalid(format!(
            "{field} is {value}, the server's maximum is {max}"
        )));
    }
    Ok(())
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

fn positive_or_default(
    field: &str,
    value: i32,
    default: usize,
    max: usize,
) -> Result<usize, Status> {
    let resolved = usize::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(default);
    if resolved > max {
        return Err(invalid(format!("{field} is {value}, the maximum is {max}")));
    }
    Ok(resolved)
}

/// `status` for a field inside the request field `parent`: its message (which starts with the
/// field's path) gets `parent.` in front, its code is kept.
pub fn in_field(parent: &str, status: Status) -> Status {
    Status::new(status.code(), format!("{parent}.{}", status.message()))
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

/// A validated `TraverseRequest` with defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TraverseParams {
    /// Depth limit, 1..=[`MAX_TRAVERSE_HOPS`].
    pub max_hops: u32,
    /// Which edges to follow.
    pub direction: pb::Direction,
    /// Entities to reach at most, 1..=[`MAX_TRAVERSE_NODES`].
    pub max_nodes: usize,
    /// Whether nodes carry their entity.
    pub include_entity: bool,
    /// Per-node fan-out, 1..=[`MAX_TRAVERSE_NODES`] (default: `max_nodes`).
    pub max_fan_out: usize,
    /// Edge budget, 1..=[`MAX_EDGES`] (`None`: no limit beyond the others).
    pub max_edges: Option<usize>,
    /// Only reached entities passing this are returned.
    pub expression: Option<Expr>,
}

/// A `TraverseRequest`.
pub fn traverse(request: &pb::TraverseRequest) -> Result<TraverseParams, Status> {
    id_list("start_ids", &request.start_ids)?;
    trace_id(&request.trace_id)?;
    routing_key(&request.routing_key)?;
    relation_filter("relations", &request.relations)?;
    finite("min_weight", request.min_weight)?;
    let max_hops =
        positive_or_default("max_hops", request.max_hops, 1, MAX_TRAVERSE_HOPS as usize)?;
    let max_nodes = positive_or_default(
        "max_nodes",
        request.max_nodes,
        DEFAULT_TRAVERSE_NODES,
        MAX_TRAVERSE_NODES,
    )?;
    Ok(TraverseParams {
        max_hops: u32::try_from(max_hops).unwrap_or(MAX_TRAVERSE_HOPS),
        direction: direction("direction", request.direction)?,
        max_nodes,
        include_entity: request.include_entity.unwrap_or(true),
        max_fan_out: optional_count("max_fan_out", request.max_fan_out, MAX_TRAVERSE_NODES)?
            .unwrap_or(max_nodes),
        max_edges: optional_count("max_edges", request.max_edges, MAX_EDGES)?,
        expression: request
            .r#where
            .as_ref()
            .map(|e| crate::filter::expression("where", e))
            .transpose()?,
    })
}

/// A validated `RangeScanRequest`: the id range of the page to read, its size and filter.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanParams {
    /// Lower bound of entity ids: `start_key`, or just after the last id of the previous page.
    pub lower: Bound<String>,
    /// Upper bound of entity ids (`end_key`, exclusive).
    pub upper: Bound<String>,
    /// Entities in this page, 1..=[`MAX_SCAN_LIMIT`].
    pub limit: usize,
    /// Only entities passing this are returned.
    pub expression: Option<Expr>,
    /// The level every entity of the scan is read at (a continued scan keeps its token's).
    pub level: pb::ConsistencyLevel,
}

/// A `RangeScanRequest` from a caller of tenant `caller_tenant` (`node_id` is routed by the
/// caller of this function), its page token checked with `tokens`; `default_level` is the
/// level of a request that names none (HTTP).
pub fn range_scan(
    request: &pb::RangeScanRequest,
    caller_tenant: &str,
    tokens: &PageTokenKey,
    default_level: pb::ConsistencyLevel,
) -> Result<ScanParams, Status> {
    tenant_matches("tenant_id", &request.tenant_id, caller_tenant)?;
    routing_key(&request.routing_key)?;
    let level = consistency(request.consistency_level, default_level)?;
    let bound = |field: &str, key: &str| -> Result<Option<String>, Status> {
        if key.is_empty() {
            return Ok(None);
        }
        entity_id(field, key)?;
        Ok(Some(key.to_owned()))
    };
    let start = bound("start_key", &request.start_key)?;
    let end = bound("end_key", &request.end_key)?;
    let resume_after = if request.page_token.is_empty() {
        None
    } else {
        let position = tokens.decode(caller_tenant, &request.page_token)?;
        if position.level != level {
            return Err(invalid(format!(
                "consistency_level {} differs from the page token's {}: a scan keeps the level                  it started with",
                level.as_str_name(),
                position.level.as_str_name()
            )));
        }
        Some(position.last_entity_id)
    };
    let lower = match (start, resume_after) {
        (Some(start), Some(last)) if start > last => Bound::Included(start),
        (_, Some(last)) => Bound::Excluded(last),
        (Some(start), None) => Bound::Included(start),
        (None, None) => Bound::Unbounded,
    };
    let limit = usize::try_from(request.limit)
        .ok()
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_SCAN_LIMIT)
        .min(MAX_SCAN_LIMIT);
    Ok(ScanParams {
        lower,
        upper: end.map_or(Bound::Unbounded, Bound::Excluded),
        limit,
        expression: request
            .r#where
            .as_ref()
            .map(|e| crate::filter::expression("where", e))
            .transpose()?,
        level,
    })
}

/// The `<tenant>:<entity_id>` key of `ReplicaRead` / `ReplicaWrite`, split at the first colon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaKey {
    /// The tenant part (always the caller's once validated).
    pub tenant: String,
    /// The entity id part.
    pub entity_id: String,
}

/// Parses and authorizes a replica key: empty or without a colon -> `INVALID_ARGUMENT`; a
/// tenant other than the caller's, in the key or in `tenant_id`, -> `PERMISSION_DENIED`.
pub fn replica_key(key: &str, tenant_id: &str, caller_tenant: &str) -> Result<ReplicaKey, Status> {
    if key.is_empty() {
        return Err(invalid("key must not be empty".to_owned()));
    }
    let (tenant, id) = key
        .split_once(':')
        .ok_or_else(|| invalid("key must be <tenant>:<entity_id>, it has no colon".to_owned()))?;
    if tenant.is_empty() {
        return Err(invalid(
            "key has an empty tenant before the colon".to_owned(),
        ));
    }
    tenant_matches("key tenant", tenant, caller_tenant)?;
    tenant_matches("tenant_id", tenant_id, caller_tenant)?;
    entity_id("key entity id", id)?;
    Ok(ReplicaKey {
        tenant: tenant.to_owned(),
        entity_id: id.to_owned(),
    })
}

/// The `value` of a `ReplicaWrite`: a protobuf `Entity` whose id is empty or the key's id
/// (an empty id is filled in), valid as a put of the caller's tenant.
pub fn replica_value(value: &[u8], key: &ReplicaKey) -> Result<pb::Entity, Status> {
    let mut decoded = pb::Entity::decode(value)
        .map_err(|e| invalid(format!("value is not a protobuf Entity: {e}")))?;
    if decoded.entity_id.is_empty() {
        decoded.entity_id = key.entity_id.clone();
    } else if decoded.entity_id != key.entity_id {
        return Err(invalid(format!(
            "value.entity_id {:?} differs from the key's entity id {:?}",
            decoded.entity_id, key.entity_id
        )));
    }
    entity("value", &decoded, &key.tenant)?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn good_entity() -> pb::Entity {
        pb::Entity {
            entity_id: "e1".into(),
            embeddings: vec![pb::VectorEmbedding {
                vector: vec![0.5, 0.5],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Asserts the error's code and that its message names `field`.
    fn assert_rejects<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, field: &str) {
        let status = result.expect_err("the input must be rejected");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(field),
            "message {:?} does not name {field}",
            status.message()
        );
    }

    fn entity_with(change: impl FnOnce(&mut pb::Entity)) -> Result<(), Status> {
        let mut e = good_entity();
        change(&mut e);
        entity("entity", &e, "t1")
    }

    #[test]
    fn accepts_a_good_entity_of_the_callers_tenant() {
        assert!(entity_with(|_| {}).is_ok());
        assert!(entity_with(|e| e.tenant_id = "t1".into()).is_ok());
    }

    #[test]
    fn rejects_each_bad_entity_field() {
        use Code::{InvalidArgument as Inv, PermissionDenied as Denied};
        type Change = Box<dyn FnOnce(&mut pb::Entity)>;
        let cases: Vec<(Change, Code, &str)> = vec![
            (Box::new(|e| e.entity_id.clear()), Inv, "entity.entity_id"),
            (
                Box::new(|e| e.entity_id = "a\0b".into()),
                Inv,
                "entity.entity_id",
            ),
            (
                Box::new(|e| e.entity_id = "x".repeat(513)),
                Inv,
                "entity.entity_id",
            ),
            (
                Box::new(|e| e.tenant_id = "t2".into()),
                Denied,
                "entity.tenant_id",
            ),
            (
                Box::new(|e| e.entity_type = "t".repeat(MAX_ENTITY_TYPE_BYTES + 1)),
                Inv,
                "entity.entity_type",
            ),
            (
                Box::new(|e| e.importance = f64::NAN),
                Inv,
                "entity.importance",
            ),
            (
                Box::new(|e| e.embeddings[0].vector[1] = f32::NAN),
                Inv,
                "entity.embeddings[0].vector[1]",
            ),
            (
                Box::new(|e| e.embeddings[0].vector[0] = f32::INFINITY),
                Inv,
                "entity.embeddings[0].vector[0]",
            ),
            (
                Box::new(|e| e.embeddings[0].vector.clear()),
                Inv,
                "entity.embeddings[0].vector",
            ),
            (
                Box::new(|e| e.embeddings[0].vector = vec![0.0; MAX_VECTOR_DIM + 1]),
                Inv,
                "entity.embeddings[0].vector",
            ),
            (
                Box::new(|e| {
                    e.embeddings.push(pb::VectorEmbedding {
                        vector: vec![1.0],
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.embeddings[1].vector",
            ),
            (
                Box::new(|e| e.embeddings[0].version = -1),
                Inv,
                "entity.embeddings[0].version",
            ),
            (
                Box::new(|e| {
                    e.embeddings = vec![e.embeddings[0].clone(); MAX_EMBEDDINGS_PER_ENTITY + 1]
                }),
                Inv,
                "entity.embeddings",
            ),
            (
                Box::new(|e| e.outgoing_edges.push(pb::GraphEdge::default())),
                Inv,
                "entity.outgoing_edges[0].to_entity",
            ),
            (
                Box::new(|e| {
                    e.outgoing_edges.push(pb::GraphEdge {
                        from_entity: "x".into(),
                        to_entity: "y".into(),
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.outgoing_edges[0].from_entity",
            ),
            (
                Box::new(|e| {
                    e.outgoing_edges.push(pb::GraphEdge {
                        to_entity: "y".into(),
                        weight: f64::INFINITY,
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.outgoing_edges[0].weight",
            ),
            (
                Box::new(|e| {
                    e.outgoing_edges.push(pb::GraphEdge {
                        to_entity: "y".into(),
                        relation: "r\0".into(),
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.outgoing_edges[0].relation",
            ),
            (
                Box::new(|e| {
                    e.incoming_edges.push(pb::GraphEdge {
                        from_entity: "y".into(),
                        to_entity: "x".into(),
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.incoming_edges[0].to_entity",
            ),
            (
                Box::new(|e| {
                    e.incoming_edges.push(pb::GraphEdge {
                        from_entity: "y".into(),
                        timestamp_nanos: -5,
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.incoming_edges[0].timestamp_nanos",
            ),
            (
                Box::new(|e| {
                    e.chunks.push(pb::TextChunk {
                        text: "x".repeat(MAX_CHUNK_TEXT_BYTES + 1),
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.chunks[0].text",
            ),
            (
                Box::new(|e| {
                    e.chunks.push(pb::TextChunk {
                        chunk_id: "x".repeat(MAX_CHUNK_ID_BYTES + 1),
                        ..Default::default()
                    })
                }),
                Inv,
                "entity.chunks[0].chunk_id",
            ),
            (
                Box::new(|e| {
                    e.chunks.push(pb::TextChunk::default());
                    e.chunks[0]
                        .metadata
                        .insert("k".into(), "v".repeat(MAX_MAP_VALUE_BYTES + 1));
                }),
                Inv,
                "entity.chunks[0].metadata",
            ),
            (
                Box::new(|e| {
                    e.attributes = (0..=MAX_MAP_ENTRIES)
                        .map(|i| (i.to_string(), String::new()))
                        .collect()
                }),
                Inv,
                "entity.attributes",
            ),
        ];
        for (change, code, field) in cases {
            assert_rejects(entity_with(change), code, field);
        }
    }

    #[test]
    fn put_needs_an_entity_and_batches_need_entities() {
        assert_rejects(require_entity(None), Code::InvalidArgument, "entity");
        assert!(require_entity(Some(&good_entity())).is_ok());
        assert_rejects(batch_len("entities", 0), Code::InvalidArgument, "entities");
        assert_rejects(
            batch_len("entities", MAX_BATCH_ENTITIES + 1),
            Code::InvalidArgument,
            "entities",
        );
        assert!(batch_len("entities", 1).is_ok());
        assert_rejects(
            id_list("entity_ids", &[]),
            Code::InvalidArgument,
            "entity_ids",
        );
        assert_rejects(
            id_list("entity_ids", &["a".into(), String::new()]),
            Code::InvalidArgument,
            "entity_ids[1]",
        );
    }

    #[test]
    fn query_defaults_and_limits() {
        let base = pb::QueryRequest {
            query_vector: vec![1.0, 0.0],
            ..Default::default()
        };
        let params = query(&base).unwrap();
        assert_eq!(
            (params.k, params.expand_factor),
            (DEFAULT_K, DEFAULT_EXPAND_FACTOR)
        );
        assert_eq!((params.ef, params.max_hops), (None, None));
        assert!(params.include_entity);
        assert_eq!(params.direction, pb::Direction::Out);

        let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
            let mut request = base.clone();
            change(&mut request);
            query(&request)
        };
        assert_eq!(with(&|r| r.k = -3).unwrap().k, DEFAULT_K);
        assert_eq!(with(&|r| r.k = 50).unwrap().k, 50);
        assert_eq!(with(&|r| r.max_hops = Some(0)).unwrap().max_hops, Some(0));
        assert!(
            !with(&|r| r.include_entity = Some(false))
                .unwrap()
                .include_entity
        );
        assert_eq!(
            with(&|r| r.weights = Some(pb::ScoringWeights {
                graph: Some(0.0),
                ..Default::default()
            }))
            .unwrap()
            .weights
            .graph,
            Some(0.0)
        );

        let inv = Code::InvalidArgument;
        assert_rejects(with(&|r| r.query_vector.clear()), inv, "query_vector");
        assert_rejects(
            with(&|r| r.query_vector[1] = f32::NAN),
            inv,
            "query_vector[1]",
        );
        assert_rejects(with(&|r| r.k = MAX_K as i32 + 1), inv, "k");
        assert_rejects(with(&|r| r.expand_factor = 1000), inv, "expand_factor");
        assert_rejects(with(&|r| r.ef = MAX_EF as i32 + 1), inv, "ef");
        assert_rejects(with(&|r| r.max_hops = Some(-1)), inv, "max_hops");
        assert_rejects(with(&|r| r.max_hops = Some(99)), inv, "max_hops");
        assert_rejects(with(&|r| r.direction = 9), inv, "direction");
        assert_rejects(with(&|r| r.hop_decay = Some(1.5)), inv, "hop_decay");
        assert_rejects(with(&|r| r.min_weight = f64::NAN), inv, "min_weight");
        assert_rejects(
            with(&|r| r.trace_id = "t".repeat(MAX_TRACE_ID_BYTES + 1)),
            inv,
            "trace_id",
        );
        assert_rejects(
            with(&|r| {
                r.weights = Some(pb::ScoringWeights {
                    recency: Some(-1.0),
                    ..Default::default()
                })
            }),
            inv,
            "weights.recency",
        );
        assert_rejects(
            with(&|r| r.relations = vec!["r\0".into()]),
            inv,
            "relations[0]",
        );
    }

    #[test]
    fn query_batches_share_the_query_options_and_are_bounded() {
        let options = pb::QueryRequest {
            k: 7,
            ef: 80,
            max_hops: Some(2),
            explain: true,
            ..Default::default()
        };
        let vectors = |count: usize, dim: usize| {
            vec![
                pb::QueryVector {
                    values: vec![0.5; dim],
                };
                count
            ]
        };
        let single = query(&pb::QueryRequest {
            query_vector: vec![0.5; 3],
            ..options.clone()
        })
        .unwrap();
        assert_eq!(query_batch(&options, &vectors(4, 3), &[]).unwrap(), single);
        let defaults = query_batch(&pb::QueryRequest::default(), &vectors(1, 3), &[]).unwrap();
        assert_eq!((defaults.k, defaults.ef), (DEFAULT_K, None));

        // Every rejection names its field by its path in the batch request, first thing.
        let rejects = |result: Result<QueryParams, Status>, field: &str| {
            let status = result.expect_err("the batch must be rejected");
            assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
            assert!(
                status.message().starts_with(field),
                "message {:?} does not start with {field}",
                status.message()
            );
        };
        let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
            let mut changed = options.clone();
            change(&mut changed);
            query_batch(&changed, &vectors(2, 3), &[])
        };
        rejects(
            with(&|o| o.query_vector = vec![1.0]),
            "options.query_vector",
        );
        rejects(with(&|o| o.k = MAX_K as i32 + 1), "options.k");
        rejects(with(&|o| o.ef = MAX_EF as i32 + 1), "options.ef");
        rejects(with(&|o| o.max_hops = Some(9)), "options.max_hops");
        rejects(with(&|o| o.direction = 9), "options.direction");
        rejects(
            with(&|o| o.relations = vec!["r\0".into()]),
            "options.relations[0]",
        );
        rejects(
            with(&|o| o.trace_id = "t".repeat(MAX_TRACE_ID_BYTES + 1)),
            "options.trace_id",
        );

        rejects(query_batch(&options, &[], &[]), "vectors must not be empty");
        assert!(query_batch(&options, &vectors(MAX_QUERY_BATCH, 3), &[]).is_ok());
        rejects(
            query_batch(&options, &vectors(MAX_QUERY_BATCH + 1, 3), &[]),
            "vectors has 1001 entries, the maximum is 1000",
        );
        let dim = MAX_VECTOR_DIM;
        let most = MAX_QUERY_BATCH_VALUES / dim;
        assert!(query_batch(&options, &vectors(most, dim), &[]).is_ok());
        rejects(
            query_batch(&options, &vectors(most + 1, dim), &[]),
            "vectors hold 2101248 values in total, the maximum is 2097152",
        );
        let k1000 = pb::QueryRequest {
            k: MAX_K as i32,
            ..Default::default()
        };
        assert!(query_batch(&k1000, &vectors(100, 3), &[]).is_ok());
        rejects(
            query_batch(&k1000, &vectors(101, 3), &[]),
            "vectors x options.k = 101 x 1000 = 101000 results",
        );

        let mut bad = vectors(3, 3);
        bad[2].values[1] = f32::INFINITY;
        rejects(
            query_batch(&options, &bad, &[]),
            "vectors[2].values[1] must be finite",
        );
        bad[1].values.clear();
        rejects(
            query_batch(&options, &bad, &[]),
            "vectors[1].values must not be empty",
        );
    }

    #[test]
    fn graph_rag_fields_defaults_and_limits() {
        let base = pb::QueryRequest {
            query_vector: vec![1.0, 0.0],
            ..Default::default()
        };
        let params = query(&base).unwrap();
        assert_eq!(
            (params.seeds, params.max_nodes, params.max_edges),
            (None, None, None)
        );
        assert_eq!(params.max_fan_out, DEFAULT_FAN_OUT);
        assert_eq!(params.max_context_bytes, DEFAULT_CONTEXT_BYTES);
        assert_eq!(params.ranking, Ranking::Unified);
        assert!(!params.include_context);
        let with = |change: &dyn Fn(&mut pb::QueryRequest)| {
            let mut request = base.clone();
            change(&mut request);
            query(&request)
        };
        assert_eq!(with(&|r| r.seeds = Some(10)).unwrap().seeds, Some(10));
        let pagerank = with(&|r| {
            r.scoring = pb::ScoringMode::ScoringPersonalizedPagerank as i32;
            r.pagerank = Some(pb::PageRankOptions {
                damping: Some(0.5),
                ..Default::default()
            });
        })
        .unwrap();
        assert_eq!(
            pagerank.ranking,
            Ranking::PersonalizedPageRank(PageRankOptions {
                damping: 0.5,
                ..PageRankOptions::default()
            })
        );
        let inv = Code::InvalidArgument;
        assert_rejects(with(&|r| r.seeds = Some(0)), inv, "seeds");
        assert_rejects(with(&|r| r.seeds = Some(-5)), inv, "seeds");
        assert_rejects(with(&|r| r.max_nodes = Some(-1)), inv, "max_nodes");
        assert_rejects(with(&|r| r.max_edges = Some(-1)), inv, "max_edges");
        assert_rejects(with(&|r| r.max_edges = Some(100_001)), inv, "max_edges");
        assert_rejects(with(&|r| r.max_fan_out = Some(0)), inv, "max_fan_out");
        assert_rejects(
            with(&|r| r.max_context_bytes = Some(-1)),
            inv,
            "max_context_bytes",
        );
        assert_rejects(with(&|r| r.scoring = 7), inv, "scoring");
        let pr = |options: pb::PageRankOptions| {
            with(&move |r| {
                r.scoring = pb::ScoringMode::ScoringPersonalizedPagerank as i32;
                r.pagerank = Some(options);
            })
        };
        for damping in [0.0, 1.0, -0.2, f64::NAN] {
            assert_rejects(
                pr(pb::PageRankOptions {
                    damping: Some(damping),
                    ..Default::default()
                }),
                inv,
                "pagerank.damping",
            );
        }
        assert_rejects(
            pr(pb::PageRankOptions {
                max_iterations: Some(0),
                ..Default::default()
            }),
            inv,
            "pagerank.max_iterations",
        );
        assert_rejects(
            pr(pb::PageRankOptions {
                tolerance: Some(0.0),
                ..Default::default()
            }),
            inv,
            "pagerank.tolerance",
        );
        assert_rejects(
            pr(pb::PageRankOptions {
                similarity_weight: Some(2.0),
                ..Default::default()
            }),
            inv,
            "pagerank.similarity_weight",
        );
        assert_rejects(
            with(&|r| r.pagerank = Some(pb::PageRankOptions::default())),
            inv,
            "pagerank",
        );
        assert_rejects(
            within_server_limit("seeds", 1_001, 1_000).map(|_| ()),
            inv,
            "seeds",
        );
    }

    #[test]
    fn traverse_defaults_and_limits() {
        let request = pb::TraverseRequest {
            start_ids: vec!["a".into()],
            ..Default::default()
        };
        let params = traverse(&request).unwrap();
        assert_eq!(
            (params.max_hops, params.max_nodes),
            (1, DEFAULT_TRAVERSE_NODES)
        );
        let mut too_deep = request.clone();
        too_deep.max_hops = MAX_TRAVERSE_HOPS as i32 + 1;
        assert_rejects(traverse(&too_deep), Code::InvalidArgument, "max_hops");
        assert_rejects(
            traverse(&pb::TraverseRequest::default()),
            Code::InvalidArgument,
            "start_ids",
        );
    }

    #[test]
    fn consistency_resolves_unset_and_rejects_unknown() {
        use crate::http_model::consistency_level::UNSET;
        let quorum = pb::ConsistencyLevel::ConsistencyQuorum;
        assert_eq!(consistency(UNSET, quorum).unwrap(), quorum);
        assert_eq!(
            consistency(2, quorum).unwrap(),
            pb::ConsistencyLevel::ConsistencyAll
        );
        assert_rejects(
            consistency(3, quorum),
            Code::InvalidArgument,
            "consistency_level",
        );
    }

    #[test]
    fn range_scan_bounds_limits_tenant_and_tokens() {
        const ONE: pb::ConsistencyLevel = pb::ConsistencyLevel::ConsistencyOne;
        let key = PageTokenKey::from_secret(b"a test key");
        let token = |id: &str| key.encode("t", ONE, id);
        let request = |start: &str, end: &str, limit: i32, token: &str| pb::RangeScanRequest {
            start_key: start.into(),
            end_key: end.into(),
            limit,
            page_token: token.into(),
            ..Default::default()
        };
        let scan =
            |request: &pb::RangeScanRequest, tenant: &str| range_scan(request, tenant, &key, ONE);
        let all = scan(&request("", "", 0, ""), "t").unwrap();
        assert_eq!(
            (all.lower, all.upper, all.limit, all.level),
            (Bound::Unbounded, Bound::Unbounded, DEFAULT_SCAN_LIMIT, ONE)
        );
        let first = scan(&request("b", "m", 5000, ""), "t").unwrap();
        assert_eq!(first.lower, Bound::Included("b".into()));
        assert_eq!(first.upper, Bound::Excluded("m".into()));
        assert_eq!(first.limit, MAX_SCAN_LIMIT);
        let next = scan(&request("b", "m", 10, &token("d")), "t").unwrap();
        assert_eq!(next.lower, Bound::Excluded("d".into()));
        // A token behind start_key cannot widen the scan.
        let behind = scan(&request("b", "", 10, &token("a")), "t").unwrap();
        assert_eq!(behind.lower, Bound::Included("b".into()));

        let mut foreign = request("", "", 0, "");
        foreign.tenant_id = "other".into();
        assert_rejects(scan(&foreign, "t"), Code::PermissionDenied, "tenant_id");
        assert_rejects(
            scan(&request("", "", 0, "%%"), "t"),
            Code::InvalidArgument,
            "page_token",
        );
        // Another tenant's token, and a token continued at another level.
        assert_rejects(
            scan(&request("", "", 0, &token("d")), "u"),
            Code::InvalidArgument,
            "page_token",
        );
        let mut quorum = request("", "", 0, &token("d"));
        quorum.consistency_level = pb::ConsistencyLevel::ConsistencyQuorum as i32;
        assert_rejects(
            scan(&quorum, "t"),
            Code::InvalidArgument,
            "consistency_level",
        );
    }

    #[test]
    fn replica_keys() {
        assert_eq!(
            replica_key("t:a:b", "", "t").unwrap(),
            ReplicaKey {
                tenant: "t".into(),
                entity_id: "a:b".into()
            }
        );
        assert!(replica_key("t:a", "t", "t").is_ok());
        assert_rejects(replica_key("", "", "t"), Code::InvalidArgument, "key");
        assert_rejects(replica_key("ta", "", "t"), Code::InvalidArgument, "colon");
        assert_rejects(
            replica_key(":a", "", "t"),
            Code::InvalidArgument,
            "empty tenant",
        );
        assert_rejects(
            replica_key("t:", "", "t"),
            Code::InvalidArgument,
            "key entity id",
        );
        assert_rejects(
            replica_key("u:a", "", "t"),
            Code::PermissionDenied,
            "key tenant",
        );
        assert_rejects(
            replica_key("t:a", "u", "t"),
            Code::PermissionDenied,
            "tenant_id",
        );
    }

    #[test]
    fn replica_values() {
        let key = replica_key("t:e1", "", "t").unwrap();
        let mut unnamed = good_entity();
        unnamed.entity_id.clear();
        let decoded = replica_value(&unnamed.encode_to_vec(), &key).unwrap();
        assert_eq!(decoded.entity_id, "e1");
        assert_rejects(
            replica_value(&[0xff, 0xff, 0xff], &key),
            Code::InvalidArgument,
            "value",
        );
        let mut other = good_entity();
        other.entity_id = "e2".into();
        assert_rejects(
            replica_value(&other.encode_to_vec(), &key),
            Code::InvalidArgument,
            "value.entity_id",
        );
        let mut foreign = good_entity();
        foreign.tenant_id = "u".into();
        assert_rejects(
            replica_value(&foreign.encode_to_vec(), &key),
            Code::PermissionDenied,
            "value.tenant_id",
        );
    }

    #[test]
    fn edge_requests() {
        assert_rejects(
            add_edges(&pb::AddEdgesRequest::default()),
            Code::InvalidArgument,
            "edges",
        );
        assert_rejects(
            remove_edges(&pb::RemoveEdgesRequest {
                edges: vec![pb::EdgeKey {
                    from_entity: "a".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Code::InvalidArgument,
            "edges[0].to_entity",
        );
        assert_rejects(
            graph_edge(
                "edge",
                &pb::GraphEdge {
                    from_entity: "a".into(),
                    to_entity: "b".into(),
                    weight: f64::NAN,
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            "edge.weight",
        );
    }
}
