//! Validation of reads: id lists (`GetEntities`, a traversal's starts), `Traverse` and
//! `RangeScan` (with its page token).

use super::*;

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
