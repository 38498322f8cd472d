//! AlliDB's public API layer (DESIGN.md §5, WIRE.md): the `allidb.AlliDB` protobuf types and gRPC
//! service stubs ([`pb`]), operator actions ([`admin`]), conversion to the storage model ([`convert`]), request validation and
//! its status codes ([`validate`]), filter expressions and typed attributes ([`filter`]), API-key authentication ([`auth`]), the HTTP JSON gateway
//! ([`http`]) and its JSON shapes ([`http_model`]), the gRPC service itself ([`service`]), the
//! mapping of store errors to statuses ([`errors`]), per-request spans and metrics
//! ([`observe`]); [`log_limit`] rate-limits repetitive log lines; [`coalesce`] sends a gRPC
//! reply and its trailers in one write.
//!
//! The tenant of a request comes only from authentication, never from a request field.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod coalesce;
pub mod context;
pub mod convert;
pub mod errors;
pub mod filter;
pub mod http;
pub mod http_model;
pub mod hybrid;
pub mod log_limit;
pub mod observe;
pub mod page_token;
pub mod service;
pub mod validate;
pub mod validate_expiry;
pub mod validate_provenance;

/// Generated protobuf messages and gRPC client/server code of package `allidb`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("allidb");

    /// The client side of `allidb.AlliDB` (generated as `alli_db_client`).
    pub use alli_db_client as allidb_client;
    /// The server side of `allidb.AlliDB` (generated as `alli_db_server`).
    pub use alli_db_server as allidb_server;

    /// The encoded file descriptor set of `allidb.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/allidb_descriptor.bin"));
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::field_descriptor_proto::{Label, Type};

    use super::pb;

    /// WIRE.md §1: every original message keeps its field names, numbers and types.
    #[test]
    fn original_fields_keep_their_numbers_and_types() {
        use Type::{Bool, Bytes, Double, Enum, Float, Int32, Int64, Message as Msg, String as Str};
        /// (field name, number, type, repeated)
        type FieldSpec = (&'static str, i32, Type, bool);
        let wire: &[(&str, &[FieldSpec])] = &[
            (
                "VectorEmbedding",
                &[
                    ("version", 1, Int64, false),
                    ("vector", 2, Float, true),
                    ("timestamp_nanos", 3, Int64, false),
                ],
            ),
            (
                "GraphEdge",
                &[
                    ("from_entity", 1, Str, false),
                    ("to_entity", 2, Str, false),
                    ("relation", 3, Str, false),
                    ("weight", 4, Double, false),
                    ("timestamp_nanos", 5, Int64, false),
                ],
            ),
            (
                "TextChunk",
                &[
                    ("chunk_id", 1, Str, false),
                    ("text", 2, Str, false),
                    ("metadata", 3, Msg, true),
                ],
            ),
            (
                "Entity",
                &[
                    ("entity_id", 1, Str, false),
                    ("tenant_id", 2, Str, false),
                    ("entity_type", 3, Str, false),
                    ("embeddings", 4, Msg, true),
                    ("incoming_edges", 5, Msg, true),
                    ("outgoing_edges", 6, Msg, true),
                    ("chunks", 7, Msg, true),
                    ("importance", 8, Double, false),
                    ("created_at_nanos", 9, Int64, false),
                    ("updated_at_nanos", 10, Int64, false),
                    ("attributes", 11, Msg, true),
                ],
            ),
            (
                "PutEntityRequest",
                &[
                    ("entity", 1, Msg, false),
                    ("consistency_level", 2, Enum, false),
                    ("trace_id", 3, Str, false),
                ],
            ),
            (
                "PutEntityResponse",
                &[
                    ("success", 1, Bool, false),
                    ("error_message", 2, Str, false),
                    ("entity_id", 3, Str, false),
                ],
            ),
            (
                "BatchPutEntitiesRequest",
                &[
                    ("entities", 1, Msg, true),
                    ("consistency_level", 2, Enum, false),
                    ("trace_id", 3, Str, false),
                ],
            ),
            (
                "BatchPutEntitiesResponse",
                &[
                    ("success", 1, Bool, false),
                    ("error_message", 2, Str, false),
                    ("entity_ids", 3, Str, true),
                    ("success_count", 4, Int32, false),
                    ("failure_count", 5, Int32, false),
                ],
            ),
            (
                "QueryRequest",
                &[
                    ("query_vector", 1, Float, true),
                    ("k", 2, Int32, false),
                    ("expand_factor", 3, Int32, false),
                    ("trace_id", 4, Str, false),
                    ("consistency_level", 5, Enum, false),
                ],
            ),
            (
                "QueryResult",
                &[
                    ("entity_id", 1, Str, false),
                    ("score", 2, Double, false),
                    ("entity", 3, Msg, false),
                ],
            ),
            (
                "QueryResponse",
                &[
                    ("results", 1, Msg, true),
                    ("trace_id", 2, Str, false),
                    ("total_results", 3, Int32, false),
                ],
            ),
            (
                "RangeScanRequest",
                &[
                    ("tenant_id", 1, Str, false),
                    ("start_key", 2, Str, false),
                    ("end_key", 3, Str, false),
                    ("limit", 4, Int32, false),
                    ("page_token", 5, Str, false),
                    ("node_id", 6, Str, false),
                ],
            ),
            (
                "RangeScanResponse",
                &[
                    ("entities", 1, Msg, true),
                    ("next_page_token", 2, Str, false),
                ],
            ),
            (
                "ReplicaReadRequest",
                &[("key", 1, Str, false), ("tenant_id", 2, Str, false)],
            ),
            ("ReplicaReadResponse", &[("value", 1, Bytes, false)]),
            (
                "ReplicaWriteRequest",
                &[
                    ("key", 1, Str, false),
                    ("value", 2, Bytes, false),
                    ("tenant_id", 3, Str, false),
                ],
            ),
            ("ReplicaWriteResponse", &[("success", 1, Bool, false)]),
            (
                "HealthCheckResponse",
                &[
                    ("healthy", 1, Bool, false),
                    ("status", 2, Str, false),
                    ("timestamp_nanos", 3, Int64, false),
                    ("version", 4, Str, false),
                ],
            ),
        ];
        let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let file = set.file.iter().find(|f| f.package() == "allidb").unwrap();
        for (message, fields) in wire {
            let descriptor = file
                .message_type
                .iter()
                .find(|m| m.name() == *message)
                .unwrap_or_else(|| panic!("message {message} is missing"));
            for (name, number, kind, repeated) in *fields {
                let field = descriptor
                    .field
                    .iter()
                    .find(|f| f.name() == *name)
                    .unwrap_or_else(|| panic!("{message}.{name} is missing"));
                assert_eq!(field.number(), *number, "{message}.{name}");
                assert_eq!(field.r#type(), *kind, "{message}.{name}");
                assert_eq!(
                    field.label() == Label::Repeated,
                    *repeated,
                    "{message}.{name}"
                );
            }
        }
        let service = &file.service[0];
        assert_eq!(service.name(), "AlliDB");
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        for rpc in [
            "PutEntity",
            "BatchPutEntities",
            "Query",
            "RangeScan",
            "ReplicaRead",
            "ReplicaWrite",
            "HealthCheck",
            "GetEntity",
            "GetEntities",
            "DeleteEntity",
            "AddEdges",
            "RemoveEdges",
            "Traverse",
            "BulkPutEntities",
        ] {
            assert!(methods.contains(&rpc), "{rpc}");
        }
        let levels: Vec<(&str, i32)> = file
            .enum_type
            .iter()
            .find(|e| e.name() == "ConsistencyLevel")
            .unwrap()
            .value
            .iter()
            .map(|v| (v.name(), v.number()))
            .collect();
        assert_eq!(
            levels,
            [
                ("CONSISTENCY_ONE", 0),
                ("CONSISTENCY_QUORUM", 1),
                ("CONSISTENCY_ALL", 2)
            ]
        );
    }

    #[test]
    fn the_descriptor_set_serves_reflection() {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the descriptor set registers with tonic-reflection");
    }
}
