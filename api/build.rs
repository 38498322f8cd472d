//! Generates the `allidb` protobuf and gRPC code without `protoc`: `protox` compiles
//! `proto/allidb.proto` to a file descriptor set, `tonic-prost-build` generates Rust from it, and
//! the encoded descriptor set is written to `OUT_DIR/allidb_descriptor.bin` for server reflection.
//!
//! Generated messages also derive serde (the HTTP JSON gateway's shapes, see `src/http_model.rs`):
//! int64 fields and enum fields get the gateway's JSON conventions through field attributes.

use std::path::PathBuf;

use prost::Message;

const PROTO: &str = "proto/allidb.proto";

/// int64 fields: JSON numbers out, numbers or quoted strings in.
const INT64_FIELDS: &[&str] = &[
    "VectorEmbedding.version",
    "VectorEmbedding.timestamp_nanos",
    "GraphEdge.timestamp_nanos",
    "Entity.created_at_nanos",
    "Entity.updated_at_nanos",
    "Entity.expires_at_nanos",
    "Entity.ttl_secs",
    "HealthCheckResponse.timestamp_nanos",
    "BulkPutEntitiesResponse.success_count",
    "BulkPutEntitiesResponse.failure_count",
];

/// `ConsistencyLevel` fields: a name in JSON; absent = "unset" (the configured default).
const CONSISTENCY_FIELDS: &[&str] = &[
    "PutEntityRequest.consistency_level",
    "BatchPutEntitiesRequest.consistency_level",
    "QueryRequest.consistency_level",
    "GetEntityRequest.consistency_level",
    "GetEntitiesRequest.consistency_level",
    "DeleteEntityRequest.consistency_level",
    "AddEdgesRequest.consistency_level",
    "RemoveEdgesRequest.consistency_level",
    "TraverseRequest.consistency_level",
    "BulkPutEntitiesRequest.consistency_level",
    "DropTenantRequest.consistency_level",
    "DeleteBySourceRequest.consistency_level",
    "ReplaceSourceRequest.consistency_level",
    "DeleteByFilterRequest.consistency_level",
];

/// `WriteMode` fields: a name in JSON.
const WRITE_MODE_FIELDS: &[&str] = &["PutEntityRequest.mode", "BatchPutEntitiesRequest.mode"];

/// `Direction` fields: a name in JSON.
const DIRECTION_FIELDS: &[&str] = &["QueryRequest.direction", "TraverseRequest.direction"];

/// `ScoringMode` fields: a name in JSON.
const SCORING_FIELDS: &[&str] = &["QueryRequest.scoring"];

/// `Fusion` fields: a name in JSON.
const FUSION_FIELDS: &[&str] = &["QueryRequest.fusion"];

/// Messages whose JSON refuses unknown keys (the rest ignore them): a filter expression and
/// its parts, where an unknown key is a misspelt or unsupported operator (`{"gtx": ...}`) that
/// would otherwise be dropped and change what the filter matches, and the typed value, which
/// holds exactly one of its fields.
const STRICT_MESSAGES: &[&str] = &[
    "FilterExpression",
    "FieldCondition",
    "FieldValues",
    "AttributeValue",
    "StringList",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile([PROTO], ["proto"])?;
    std::fs::write(
        out_dir.join("allidb_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    let mut builder = tonic_prost_build::configure()
        .btree_map(".")
        .message_attribute(
            ".allidb",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        );
    for message in STRICT_MESSAGES {
        builder = builder.message_attribute(
            format!(".allidb.{message}"),
            "#[serde(deny_unknown_fields)]",
        );
    }
    for field in INT64_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::int64\")]",
        );
    }
    for field in CONSISTENCY_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::consistency_level\", \
             default = \"crate::http_model::consistency_level::unset\")]",
        );
    }
    for field in DIRECTION_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::direction\")]",
        );
    }
    for field in WRITE_MODE_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::write_mode\")]",
        );
    }
    for field in SCORING_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::scoring_mode\")]",
        );
    }
    for field in FUSION_FIELDS {
        builder = builder.field_attribute(
            format!(".allidb.{field}"),
            "#[serde(with = \"crate::http_model::fusion\")]",
        );
    }
    builder.compile_fds(descriptors)?;
    Ok(())
}
