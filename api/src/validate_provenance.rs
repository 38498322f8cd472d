//! Request validation of provenance (issue 39, docs/api.md "Sources"): source ids on entities,
//! chunks and edges, the write mode, and the `DeleteBySource` / `ReplaceSource` requests. Like
//! [`crate::validate`], every check names the offending field by its request path and maps to
//! `INVALID_ARGUMENT`; nothing here touches storage or panics on any input.

use std::collections::BTreeMap;

use tonic::Status;

use allidb_index::Filter;
use allidb_storage::provenance::PutMode;

use crate::pb;
use crate::validate::{self, MAX_BATCH_ENTITIES, MAX_FILTER_VALUES};

/// `DeleteByFilter.max_deletes` when 0.
pub const DEFAULT_MAX_DELETES: usize = 1000;
/// Largest `DeleteByFilter.max_deletes`.
pub const MAX_DELETES: usize = 100_000;

/// Most source ids one entity, chunk or edge may carry.
pub const MAX_SOURCES_PER_ITEM: usize = 64;

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// `field` must be a valid source id (1..=256 bytes of UTF-8, no NUL).
pub fn source_id(field: &str, value: &str) -> Result<(), Status> {
    allidb_storage::key::validate_source(value).map_err(|e| match e {
        allidb_storage::Error::InvalidArgument(reason) => invalid(format!("{field}: {reason}")),
        other => invalid(format!("{field}: {other}")),
    })
}

/// A list of source ids (`field`): at most [`MAX_SOURCES_PER_ITEM`], each valid, and when
/// `among` is given each one of those.
fn source_list(field: &str, ids: &[String], among: Option<&[String]>) -> Result<(), Status> {
    if ids.len() > MAX_SOURCES_PER_ITEM {
        return Err(invalid(format!(
            "{field} has {} source ids, the maximum is {MAX_SOURCES_PER_ITEM}",
            ids.len()
        )));
    }
    for (index, id) in ids.iter().enumerate() {
        let at = format!("{field}[{index}]");
        source_id(&at, id)?;
        if let Some(among) = among
            && !among.contains(id)
        {
            return Err(invalid(format!(
                "{at}: source {id:?} is not among the entity's source_ids"
            )));
        }
    }
    Ok(())
}

/// The source ids of an entity (`field`) and of its chunks and edges: valid, and those of a
/// chunk or edge among the entity's (empty ones take the entity's).
pub fn entity_sources(field: &str, entity: &pb::Entity) -> Result<(), Status> {
    source_list(&format!("{field}.source_ids"), &entity.source_ids, None)?;
    let among = Some(entity.source_ids.as_slice());
    for (index, chunk) in entity.chunks.iter().enumerate() {
        source_list(
            &format!("{field}.chunks[{index}].source_ids"),
            &chunk.source_ids,
            among,
        )?;
    }
    for (list, edges) in [
        ("outgoing_edges", &entity.outgoing_edges),
        ("incoming_edges", &entity.incoming_edges),
    ] {
        for (index, edge) in edges.iter().enumerate() {
            source_list(
                &format!("{field}.{list}[{index}].source_ids"),
                &edge.source_ids,
                among,
            )?;
        }
    }
    Ok(())
}

/// An edge of `AddEdges` carries no sources: an edge's support is written with its entity.
pub fn standalone_edge_sources(field: &str, edge: &pb::GraphEdge) -> Result<(), Status> {
    match edge.source_ids.is_empty() {
        true => Ok(()),
        false => Err(invalid(format!(
            "{field}.source_ids: AddEdges takes no sources; write the entity with \
             WRITE_MODE_MERGE_SOURCES to add a sourced edge"
        ))),
    }
}

/// A request's write mode.
pub fn write_mode(value: i32) -> Result<PutMode, Status> {
    match pb::WriteMode::try_from(value) {
        Ok(pb::WriteMode::Replace) => Ok(PutMode::Replace),
        Ok(pb::WriteMode::MergeSources) => Ok(PutMode::MergeSources),
        Err(_) => Err(invalid(format!("mode {value} is not a known write mode"))),
    }
}

/// A `DeleteBySource` request.
pub fn delete_by_source(request: &pb::DeleteBySourceRequest) -> Result<(), Status> {
    validate::trace_id(&request.trace_id)?;
    source_id("source_id", &request.source_id)
}

/// A `ReplaceSource` request (the entities are validated one by one as they convert); each
/// entity's sources must be empty or exactly the replaced source.
pub fn replace_source(request: &pb::ReplaceSourceRequest) -> Result<(), Status> {
    validate::trace_id(&request.trace_id)?;
    source_id("source_id", &request.source_id)?;
    if request.entities.len() > MAX_BATCH_ENTITIES {
        return Err(invalid(format!(
            "entities has {} entries, the maximum is {MAX_BATCH_ENTITIES}",
            request.entities.len()
        )));
    }
    let only = std::slice::from_ref(&request.source_id);
    for (index, entity) in request.entities.iter().enumerate() {
        let field = format!("entities[{index}]");
        if entity.source_ids.iter().any(|s| s != &request.source_id) {
            return Err(invalid(format!(
                "{field}.source_ids: a ReplaceSource entity may carry only source_id {:?}",
                request.source_id
            )));
        }
        let mut with_source = entity.clone();
        with_source.source_ids = only.to_vec();
        entity_sources(&field, &with_source)?;
    }
    Ok(())
}

/// A validated `DeleteByFilter` request.
#[derive(Debug)]
pub struct DeleteFilterParams {
    /// What an entity must pass (empty: every entity).
    pub filter: Filter,
    /// Most entities the call deletes.
    pub max_deletes: usize,
}

/// A `DeleteByFilter` request: the filter (as `Query`'s), the cap in range, and `confirm`
/// when the filter is empty (it would match every entity).
pub fn delete_by_filter(request: &pb::DeleteByFilterRequest) -> Result<DeleteFilterParams, Status> {
    validate::trace_id(&request.trace_id)?;
    let (entity_types, attributes) = match &request.filter {
        Some(filter) => {
            if filter.entity_types.len() > MAX_FILTER_VALUES {
                return Err(invalid(format!(
                    "filter.entity_types has {} values, the maximum is {MAX_FILTER_VALUES}",
                    filter.entity_types.len()
                )));
            }
            (filter.entity_types.clone(), filter.attributes.clone())
        }
        None => (Vec::new(), BTreeMap::new()),
    };
    let expression = request
        .r#where
        .as_ref()
        .map(|e| crate::filter::expression("where", e))
        .transpose()?;
    let filter = Filter {
        entity_types,
        attributes,
        expression,
    };
    if filter.is_empty() && !request.confirm && !request.dry_run {
        return Err(invalid(
            "filter and where are empty, which matches every entity of the tenant: set confirm \
             to delete them all"
                .to_owned(),
        ));
    }
    let max_deletes = match usize::try_from(request.max_deletes) {
        Ok(0) => DEFAULT_MAX_DELETES,
        Ok(n) if n <= MAX_DELETES => n,
        _ => {
            return Err(invalid(format!(
                "max_deletes must be 0 (= {DEFAULT_MAX_DELETES}) ..= {MAX_DELETES}, got {}",
                request.max_deletes
            )));
        }
    };
    Ok(DeleteFilterParams {
        filter,
        max_deletes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sources_name_their_field() {
        let request = pb::DeleteBySourceRequest::default();
        let status = delete_by_source(&request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("source_id:"),
            "{}",
            status.message()
        );

        let mut entity = pb::Entity {
            entity_id: "e".into(),
            source_ids: vec!["doc-a".into()],
            ..Default::default()
        };
        entity.chunks.push(pb::TextChunk {
            chunk_id: "c".into(),
            source_ids: vec!["doc-b".into()],
            ..Default::default()
        });
        let status = entity_sources("entity", &entity).unwrap_err();
        assert!(
            status
                .message()
                .starts_with("entity.chunks[0].source_ids[0]:"),
            "{}",
            status.message()
        );
        entity.source_ids.push(String::new());
        let status = entity_sources("entity", &entity).unwrap_err();
        assert!(status.message().starts_with("entity.source_ids[1]:"));

        let replace = pb::ReplaceSourceRequest {
            source_id: "a".into(),
            entities: vec![pb::Entity {
                entity_id: "e".into(),
                source_ids: vec!["b".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let status = replace_source(&replace).unwrap_err();
        assert!(status.message().starts_with("entities[0].source_ids:"));
        assert!(write_mode(7).is_err());

        let everything = delete_by_filter(&pb::DeleteByFilterRequest::default()).unwrap_err();
        assert!(
            everything.message().contains("set confirm"),
            "{}",
            everything.message()
        );
        let too_many = pb::DeleteByFilterRequest {
            confirm: true,
            max_deletes: 100_001,
            ..Default::default()
        };
        let status = delete_by_filter(&too_many).unwrap_err();
        assert!(
            status.message().starts_with("max_deletes"),
            "{}",
            status.message()
        );
    }
}
