//! Conversion between the protobuf messages ([`crate::pb`]) and the storage model
//! ([`allidb_storage::cell`]).
//!
//! Incoming conversions validate first (through [`crate::validate`]) so an unvalidated request
//! can never reach the store, then apply the `PutEntity` rules of WIRE.md: embeddings keep client
//! versions when given (else their position 1..n) and client timestamps when non-zero (else the
//! server's write time); an edge's own end (`from_entity` of an outgoing edge, `to_entity` of an
//! incoming one) is the entity itself. `created_at_nanos` / `updated_at_nanos` are carried as
//! given: the store decides them. Outgoing conversions are total and never fail.

use allidb_cluster::query::report::{Coverage, ReadReport};
use allidb_cluster::repair::RepairReport;
use allidb_cluster::stream::rebuild::RebuildReport;
use allidb_index::graph::PathStep;
use allidb_storage::cell::{
    Edge, EdgeRef, EdgeWrite, Embedding, Entity, EntityBody, EntityWrite, TextChunk,
};
use tonic::Status;

use crate::{pb, validate};

/// A validated replacing write of `entity` (request path `field`) by a caller of tenant
/// `caller_tenant`, with defaults filled from the server's write time `now_nanos`; the expiry
/// time comes from the entity, else from the tenant's default TTL `default_ttl_secs` (0: none;
/// [`crate::validate_expiry::expires_at`]).
pub fn entity_write(
    field: &str,
    entity: &pb::Entity,
    caller_tenant: &str,
    now_nanos: i64,
    default_ttl_secs: u64,
) -> Result<EntityWrite, Status> {
    validate::entity(field, entity, caller_tenant)?;
    let expires_at_nanos =
        crate::validate_expiry::expires_at(field, entity, now_nanos, default_ttl_secs)?;
    let typed_attributes = crate::filter::typed_attributes(
        &format!("{field}.typed_attributes"),
        &entity.typed_attributes,
        &entity.attributes,
    )?;
    let embeddings = entity
        .embeddings
        .iter()
        .zip(1_i64..)
        .map(|(embedding, position)| Embedding {
            version: if embedding.version == 0 {
                position
            } else {
                embedding.version
            },
            vector: embedding.vector.clone(),
            timestamp_nanos: if embedding.timestamp_nanos == 0 {
                now_nanos
            } else {
                embedding.timestamp_nanos
            },
        })
        .collect();
    let chunks = entity
        .chunks
        .iter()
        .map(|chunk| TextChunk {
            chunk_id: chunk.chunk_id.clone(),
            text: chunk.text.clone(),
            metadata: chunk.metadata.clone(),
            sources: chunk.source_ids.clone(),
        })
        .collect();
    let edge_write = |edge: &pb::GraphEdge, other: &str| EdgeWrite {
        relation: edge.relation.clone(),
        other: other.to_owned(),
        weight: edge.weight,
        timestamp_nanos: edge.timestamp_nanos,
        sources: edge.source_ids.clone(),
    };
    Ok(EntityWrite {
        id: entity.entity_id.clone(),
        body: EntityBody {
            entity_type: entity.entity_type.clone(),
            embeddings,
            chunks,
            importance: entity.importance,
            attributes: entity.attributes.clone(),
            created_at_nanos: entity.created_at_nanos,
            updated_at_nanos: entity.updated_at_nanos,
            typed_attributes,
            sources: entity.source_ids.clone(),
            expires_at_nanos,
        },
        out_edges: entity
            .outgoing_edges
            .iter()
            .map(|edge| edge_write(edge, &edge.to_entity))
            .collect(),
        in_edges: entity
            .incoming_edges
            .iter()
            .map(|edge| edge_write(edge, &edge.from_entity))
            .collect(),
    })
}

/// The protobuf form of a stored entity, with both edge lists filled.
pub fn entity_to_proto(entity: &Entity) -> pb::Entity {
    let body = &entity.body;
    pb::Entity {
        entity_id: entity.id.clone(),
        tenant_id: entity.tenant.clone(),
        entity_type: body.entity_type.clone(),
        embeddings: body
            .embeddings
            .iter()
            .map(|embedding| pb::VectorEmbedding {
                version: embedding.version,
                vector: embedding.vector.clone(),
                timestamp_nanos: embedding.timestamp_nanos,
            })
            .collect(),
        incoming_edges: entity.in_edges.iter().map(edge_to_proto).collect(),
        outgoing_edges: entity.out_edges.iter().map(edge_to_proto).collect(),
        chunks: body.chunks.iter().map(chunk_to_proto).collect(),
        importance: body.importance,
        created_at_nanos: body.created_at_nanos,
        updated_at_nanos: body.updated_at_nanos,
        attributes: body.attributes.clone(),
        typed_attributes: body
            .typed_attributes
            .iter()
            .map(|(k, v)| (k.clone(), crate::filter::value_to_proto(v)))
            .collect(),
        source_ids: body.sources.clone(),
        expires_at_nanos: body.expires_at_nanos,
        ttl_secs: 0,
    }
}

/// The protobuf form of a stored text chunk.
pub fn chunk_to_proto(chunk: &TextChunk) -> pb::TextChunk {
    pb::TextChunk {
        chunk_id: chunk.chunk_id.clone(),
        text: chunk.text.clone(),
        metadata: chunk.metadata.clone(),
        source_ids: chunk.sources.clone(),
    }
}

/// A count as a proto `int32`, saturating.
pub fn count_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// A count as a proto `int64`, saturating.
pub fn count_i64(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The protobuf form of an edge.
pub fn edge_to_proto(edge: &Edge) -> pb::GraphEdge {
    pb::GraphEdge {
        from_entity: edge.from.clone(),
        to_entity: edge.to.clone(),
        relation: edge.relation.clone(),
        weight: edge.weight,
        timestamp_nanos: edge.timestamp_nanos,
        source_ids: edge.sources.clone(),
    }
}

/// The path from a seed to `entity_id`: ids seed first, and the stored edges followed (an edge
/// followed backwards is reported in its stored direction).
pub fn graph_path(entity_id: &str, steps: &[PathStep]) -> pb::GraphPath {
    let mut entity_ids: Vec<String> = match steps.first() {
        Some(first) => vec![String::from(&*first.from)],
        None => vec![entity_id.to_owned()],
    };
    entity_ids.extend(steps.iter().map(|step| String::from(&*step.to)));
    let edges = steps.iter().map(stored_edge).collect();
    pb::GraphPath { entity_ids, edges }
}

/// A stored edge as the API shows it (stored direction, whatever the direction of travel).
pub fn stored_edge(step: &PathStep) -> pb::GraphEdge {
    let (from, relation, to) = step.stored();
    pb::GraphEdge {
        from_entity: String::from(&**from),
        to_entity: String::from(&**to),
        relation: String::from(&**relation),
        weight: f64::from(step.weight),
        timestamp_nanos: 0,
        source_ids: Vec::new(),
    }
}

/// The validated edges of an `AddEdges` request (timestamp 0 = the server's write time).
pub fn add_edges(request: &pb::AddEdgesRequest) -> Result<Vec<Edge>, Status> {
    validate::add_edges(request)?;
    Ok(request
        .edges
        .iter()
        .map(|edge| Edge {
            from: edge.from_entity.clone(),
            to: edge.to_entity.clone(),
            relation: edge.relation.clone(),
            weight: edge.weight,
            timestamp_nanos: edge.timestamp_nanos,
            sources: Vec::new(),
        })
        .collect())
}

/// The validated edge references of a `RemoveEdges` request.
pub fn remove_edges(request: &pb::RemoveEdgesRequest) -> Result<Vec<EdgeRef>, Status> {
    validate::remove_edges(request)?;
    Ok(request
        .edges
        .iter()
        .map(|edge| EdgeRef {
            from: edge.from_entity.clone(),
            relation: edge.relation.clone(),
            to: edge.to_entity.clone(),
        })
        .collect())
}

/// A ring read's coverage.
pub fn coverage(coverage: &Coverage) -> pb::Coverage {
    pb::Coverage {
        ranges_total: count_i32(coverage.ranges_total),
        ranges_answered: count_i32(coverage.ranges_answered),
        nodes_asked: coverage.nodes_asked.clone(),
        missing: coverage.missing.clone(),
    }
}

/// A ring read's profile: its rounds and the calls to each node.
pub fn read_profile(report: &ReadReport) -> pb::ReadProfile {
    pb::ReadProfile {
        rounds: count_i32(report.rounds),
        nodes: report
            .nodes
            .iter()
            .map(|node| pb::NodeCalls {
                node: node.node.clone(),
                calls: count_i32(node.calls),
                micros: i64::try_from(node.latency.as_micros()).unwrap_or(i64::MAX),
                rows: count_i64(node.rows),
                bytes_sent: i64::try_from(node.traffic.sent).unwrap_or(i64::MAX),
                bytes_received: i64::try_from(node.traffic.received).unwrap_or(i64::MAX),
            })
            .collect(),
    }
}

/// The reply of a repair.
pub fn repair_response(report: &RepairReport) -> pb::RepairResponse {
    pb::RepairResponse {
        ranges: report.ranges,
        ranges_differing: report.ranges_differing,
        leaves_differing: report.leaves_differing,
        partitions_differing: report.partitions_differing,
        partitions_repaired: report.partitions_repaired,
        cells_streamed: report.cells_streamed,
        bytes_streamed: report.bytes_streamed,
        drops_sent: report.drops_sent,
        skipped: report.skipped.clone(),
        failures: report.failures.clone(),
        duration_ms: report.duration.as_millis() as u64,
        complete: report.complete(),
    }
}

/// The wire form of a rebuild's report.
pub fn rebuild_response(report: &RebuildReport) -> pb::RebuildResponse {
    pb::RebuildResponse {
        session_id: report.session.clone(),
        resumed: report.resumed,
        ranges: report.ranges,
        partitions: report.partitions,
        cells: report.cells,
        bytes: report.bytes,
        unfinished: report.unfinished.clone(),
        duration_ms: report.duration.as_millis() as u64,
        complete: report.complete(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn sample() -> pb::Entity {
        pb::Entity {
            entity_id: "a".into(),
            tenant_id: String::new(),
            entity_type: "doc".into(),
            embeddings: vec![
                pb::VectorEmbedding {
                    version: 0,
                    vector: vec![1.0, 0.0],
                    timestamp_nanos: 0,
                },
                pb::VectorEmbedding {
                    version: 7,
                    vector: vec![0.0, 1.0],
                    timestamp_nanos: 42,
                },
            ],
            incoming_edges: vec![pb::GraphEdge {
                from_entity: "z".into(),
                to_entity: String::new(),
                relation: "cites".into(),
                weight: 0.5,
                timestamp_nanos: 0,
                source_ids: Vec::new(),
            }],
            outgoing_edges: vec![pb::GraphEdge {
                from_entity: "a".into(),
                to_entity: "b".into(),
                relation: "links".into(),
                weight: 2.0,
                timestamp_nanos: 9,
                source_ids: Vec::new(),
            }],
            chunks: vec![pb::TextChunk {
                chunk_id: "c1".into(),
                text: "hello".into(),
                metadata: BTreeMap::from([("lang".into(), "en".into())]),
                source_ids: Vec::new(),
            }],
            importance: 0.25,
            created_at_nanos: 0,
            updated_at_nanos: 0,
            attributes: BTreeMap::from([("color".into(), "red".into())]),
            typed_attributes: BTreeMap::from([(
                "size".into(),
                crate::filter::value_to_proto(&allidb_storage::cell::AttributeValue::Int(3)),
            )]),
            source_ids: Vec::new(),
            // Carried both ways (a read returns it; writing it back keeps it).
            expires_at_nanos: NOW + 60_000_000_000,
            ttl_secs: 0,
        }
    }

    /// What the store would hold after applying `write` (the store's own rules aside).
    fn stored(write: &EntityWrite, tenant: &str) -> Entity {
        let edge = |from: &str, to: &str, e: &EdgeWrite| Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            relation: e.relation.clone(),
            weight: e.weight,
            timestamp_nanos: e.timestamp_nanos,
            sources: Vec::new(),
        };
        Entity {
            tenant: tenant.to_owned(),
            id: write.id.clone(),
            body: write.body.clone(),
            out_edges: write
                .out_edges
                .iter()
                .map(|e| edge(&write.id, &e.other, e))
                .collect(),
            in_edges: write
                .in_edges
                .iter()
                .map(|e| edge(&e.other, &write.id, e))
                .collect(),
            version_ts: 1,
        }
    }

    #[test]
    fn write_fills_versions_and_timestamps_only_when_absent() {
        let write = entity_write("entity", &sample(), "t1", NOW, 0).unwrap();
        let versions: Vec<_> = write.body.embeddings.iter().map(|e| e.version).collect();
        let stamps: Vec<_> = write
            .body
            .embeddings
            .iter()
            .map(|e| e.timestamp_nanos)
            .collect();
        assert_eq!(versions, vec![1, 7]);
        assert_eq!(stamps, vec![NOW, 42]);
        assert_eq!(
            write.out_edges,
            vec![EdgeWrite {
                relation: "links".into(),
                other: "b".into(),
                weight: 2.0,
                timestamp_nanos: 9,
                sources: Vec::new(),
            }]
        );
        assert_eq!(write.in_edges[0].other, "z");
        assert_eq!(write.in_edges[0].timestamp_nanos, 0);
        assert_eq!(write.body.attributes["color"], "red");
    }

    #[test]
    fn round_trip_through_the_store_model() {
        let original = sample();
        let write = entity_write("entity", &original, "t1", NOW, 0).unwrap();
        let back = entity_to_proto(&stored(&write, "t1"));

        let mut expected = original;
        expected.tenant_id = "t1".into();
        expected.embeddings[0].version = 1;
        expected.embeddings[0].timestamp_nanos = NOW;
        expected.incoming_edges[0].to_entity = "a".into();
        assert_eq!(back, expected);
        // A second trip is the identity: every default is now explicit.
        let again = entity_write("entity", &back, "t1", NOW + 1, 0).unwrap();
        assert_eq!(entity_to_proto(&stored(&again, "t1")), back);
    }

    #[test]
    fn write_rejects_foreign_edge_ends_and_tenants() {
        let mut wrong_from = sample();
        wrong_from.outgoing_edges[0].from_entity = "other".into();
        let err = entity_write("entity", &wrong_from, "t1", NOW, 0).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("entity.outgoing_edges[0].from_entity")
        );

        let mut wrong_to = sample();
        wrong_to.incoming_edges[0].to_entity = "other".into();
        let err = entity_write("entity", &wrong_to, "t1", NOW, 0).unwrap_err();
        assert!(err.message().contains("entity.incoming_edges[0].to_entity"));

        let mut foreign = sample();
        foreign.tenant_id = "t2".into();
        let err = entity_write("entity", &foreign, "t1", NOW, 0).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn edge_requests_convert() {
        let edges = add_edges(&pb::AddEdgesRequest {
            edges: vec![pb::GraphEdge {
                from_entity: "a".into(),
                to_entity: "b".into(),
                relation: "r".into(),
                weight: 1.5,
                timestamp_nanos: 3,
                source_ids: Vec::new(),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(edges.len(), 1);
        assert_eq!(edge_to_proto(&edges[0]).weight, 1.5);
        assert_eq!((edges[0].from.as_str(), edges[0].to.as_str()), ("a", "b"));

        let refs = remove_edges(&pb::RemoveEdgesRequest {
            edges: vec![pb::EdgeKey {
                from_entity: "a".into(),
                to_entity: "b".into(),
                relation: "r".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            refs,
            vec![EdgeRef {
                from: "a".into(),
                relation: "r".into(),
                to: "b".into()
            }]
        );
        let missing_end = add_edges(&pb::AddEdgesRequest {
            edges: vec![pb::GraphEdge {
                from_entity: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert!(missing_end.message().contains("edges[0].to_entity"));
    }

    #[test]
    fn paths_list_ids_seed_first_and_edges_in_stored_direction() {
        let steps = vec![
            PathStep {
                from: "a".into(),
                relation: "cites".into(),
                to: "b".into(),
                weight: 0.5,
                reversed: false,
            },
            PathStep {
                from: "b".into(),
                relation: "links".into(),
                to: "c".into(),
                weight: 2.0,
                reversed: true,
            },
        ];
        let path = graph_path("c", &steps);
        assert_eq!(path.entity_ids, ["a", "b", "c"]);
        assert_eq!(
            (
                path.edges[1].from_entity.as_str(),
                path.edges[1].to_entity.as_str()
            ),
            ("c", "b")
        );
        assert_eq!(path.edges[0].weight, 0.5);
        assert_eq!(graph_path("seed", &[]).entity_ids, ["seed"]);
    }
}
