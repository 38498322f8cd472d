//! Request validation for the public API (WIRE.md §1 "Behaviour", DESIGN.md §7).
//!
//! Every check names the offending field by its path in the request (`entity.embeddings[2]
//! .vector[5]`, `entities[3].entity_id`, ...) and maps to the status code WIRE.md prescribes:
//! `INVALID_ARGUMENT` for malformed input, `PERMISSION_DENIED` for a tenant other than the
//! caller's. The limits are the named constants below. Functions here only read requests and
//! resolve defaults; they never touch storage and never panic on any input.
//! `RangeScan` page tokens are checked with the service's key ([`crate::page_token`]).
//!
//! By RPC family: [`writes`] (entities, edges, replica keys), [`queries`] (`Query`,
//! `QueryBatch`), [`reads`] (`GetEntities` ids, `Traverse`, `RangeScan`); the limits and the
//! checks they share are here.

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

mod queries;
mod reads;
mod writes;

pub use queries::*;
pub use reads::*;
pub use writes::*;

fn relation_filter(field: &str, relations: &[String]) -> Result<(), Status> {
    max_count(field, relations.len(), MAX_FILTER_VALUES)?;
    for (index, value) in relations.iter().enumerate() {
        relation(&format!("{field}[{index}]"), value)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests;
