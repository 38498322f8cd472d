//! AlliDB's public API layer (DESIGN.md §5, WIRE.md): the `allidb.AlliDB` protobuf types and gRPC
//! service stubs ([`pb`]), conversion to the storage model ([`convert`]), request validation and
//! its status codes ([`validate`]), API-key authentication ([`auth`]) and the HTTP JSON shapes of
//! the gateway ([`http_model`]).
//!
//! The tenant of a request comes only from authentication, never from a request field.

pub mod auth;
pub mod convert;
pub mod http_model;
pub mod validate;

/// Generated protobuf messages and gRPC client/server code of package `allidb`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("allidb");

    /// The encoded file descriptor set of `allidb.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/allidb_descriptor.bin"));
}
