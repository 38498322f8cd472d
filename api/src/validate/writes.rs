//! Validation of writes: entities (with their embeddings, edges and chunks), batches, standalone
//! edges, and the replica key/value calls.

use super::*;

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
