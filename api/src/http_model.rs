//! JSON shapes of the HTTP gateway (WIRE.md §2).
//!
//! The request and reply bodies are the generated protobuf messages themselves ([`crate::pb`]),
//! which derive serde with `#[serde(default)]` (see `build.rs`), so:
//! * field names are the proto names in snake_case, unknown keys are ignored and absent keys take
//!   their zero value;
//! * int64 fields go through [`int64`]: written as JSON numbers, read from numbers (exactly, also
//!   beyond 2^53) or quoted decimal strings;
//! * `consistency_level` goes through [`consistency_level`]: a name (`"ONE"`, `"quorum"`,
//!   `"CONSISTENCY_ALL"`, ...); an absent level reads as [`consistency_level::UNSET`], which
//!   [`crate::validate::consistency`] resolves to the configured default;
//! * `direction` goes through [`direction`]: `"OUT"`, `"in"`, `"DIRECTION_BOTH"`, ...
//! * `scoring` goes through [`scoring_mode`]: `"UNIFIED"`, `"personalized_pagerank"`, ...
//! * `fusion` goes through [`fusion`]: `"RRF"`, `"dbsf"`, `"FUSION_RRF"`, ...
//!
//! Errors are [`HttpError`]: a status code and the body `{"code", "error", "details"}` with the
//! gRPC code name. This module never decides what a request means; it only shapes JSON.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::pb;

/// Serde for int64 protobuf fields (`#[serde(with = "crate::http_model::int64")]`).
pub mod int64 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes the value as a JSON number.
    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(*value)
    }

    /// Reads a JSON number (integral, within i64) or a quoted decimal string; `null` is 0.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(Int64Visitor)
    }

    struct Int64Visitor;

    impl Visitor<'_> for Int64Visitor {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a 64-bit integer as a JSON number or a quoted decimal string")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of the int64 range")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exactly representable; every integral f64 in [-2^63, 2^63) fits an i64.
            const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an int64")))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.parse::<i64>()
                .map_err(|_| E::custom(format!("\"{v}\" is not a decimal int64")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
}

/// Parses an enum name case-insensitively, with or without its proto prefix.
fn enum_from_name<'a, T: Copy>(name: &str, prefix: &str, table: &'a [(&'a str, T)]) -> Option<T> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix(prefix).unwrap_or(&upper);
    table.iter().find(|(n, _)| *n == short).map(|(_, v)| *v)
}

/// Defines a serde module for one protobuf enum field: names in and out, numbers accepted in.
macro_rules! enum_field_serde {
    ($(#[$doc:meta])* $module:ident, $prefix:literal, null = $null:expr,
     [$(($name:literal, $value:expr)),+ $(,)?]
     $($extra:item)*) => {
        $(#[$doc])*
        pub mod $module {
            use serde::de::{self, Visitor};
            use serde::{Deserializer, Serializer};

            $($extra)*

            /// Short names and their wire values.
            pub const NAMES: &[(&str, i32)] = &[$(($name, $value as i32)),+];

            /// Writes the short name; a value outside the enum is written as its number.
            pub fn serialize<S: Serializer>(value: &i32, serializer: S) -> Result<S::Ok, S::Error> {
                match NAMES.iter().find(|(_, v)| v == value) {
                    Some((name, _)) => serializer.serialize_str(name),
                    None => serializer.serialize_i32(*value),
                }
            }

            /// Reads a name (any case, with or without the proto prefix) or a wire number; `null`
            /// reads as an absent field.
            pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
                deserializer.deserialize_any(EnumVisitor)
            }

            struct EnumVisitor;

            impl Visitor<'_> for EnumVisitor {
                type Value = i32;

                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "a {} name, {}", stringify!($module), self.expected())
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
                    super::enum_from_name(v, $prefix, NAMES).ok_or_else(|| {
                        E::custom(format!("unknown {} `{v}`, {}", stringify!($module), Self.expected()))
                    })
                }

                fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
                    NAMES
                        .iter()
                        .find(|(_, value)| i64::from(*value) == v)
                        .map(|(_, value)| *value)
                        .ok_or_else(|| {
                            E::custom(format!("unknown {} {v}, {}", stringify!($module), Self.expected()))
                        })
                }

                fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
                    Ok($null)
                }

                fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
                    let signed = i64::try_from(v).map_err(|_| {
                        E::custom(format!("unknown {} {v}", stringify!($module)))
                    })?;
                    self.visit_i64(signed)
                }
            }

            impl EnumVisitor {
                fn expected(&self) -> String {
                    let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                    format!("expected one of {}", names.join(", "))
                }
            }
        }
    };
}

enum_field_serde!(
    /// Serde for `ConsistencyLevel` fields. An absent field reads as [`consistency_level::UNSET`]
    /// (through `#[serde(default = "...::unset")]`, see `build.rs`), and so does `null`.
    consistency_level,
    "CONSISTENCY_",
    null = UNSET,
    [
        ("ONE", crate::pb::ConsistencyLevel::ConsistencyOne),
        ("QUORUM", crate::pb::ConsistencyLevel::ConsistencyQuorum),
        ("ALL", crate::pb::ConsistencyLevel::ConsistencyAll),
    ]

    /// The value of an absent `consistency_level`: not a valid level, resolved to the
    /// configured default by [`crate::validate::consistency`].
    pub const UNSET: i32 = -1;

    /// Serde default of an absent `consistency_level`.
    pub fn unset() -> i32 {
        UNSET
    }
);

enum_field_serde!(
    /// Serde for `WriteMode` fields; absent = `REPLACE` (the proto default).
    write_mode,
    "WRITE_MODE_",
    null = 0,
    [
        ("REPLACE", crate::pb::WriteMode::Replace),
        ("MERGE_SOURCES", crate::pb::WriteMode::MergeSources),
    ]
);

enum_field_serde!(
    /// Serde for `Direction` fields; absent = `OUT` (the proto default).
    direction,
    "DIRECTION_",
    null = 0,
    [
        ("OUT", crate::pb::Direction::Out),
        ("IN", crate::pb::Direction::In),
        ("BOTH", crate::pb::Direction::Both),
    ]
);

enum_field_serde!(
    /// Serde for `ScoringMode` fields; absent = `UNIFIED` (the proto default).
    scoring_mode,
    "SCORING_",
    null = 0,
    [
        ("UNIFIED", crate::pb::ScoringMode::ScoringUnified),
        (
            "PERSONALIZED_PAGERANK",
            crate::pb::ScoringMode::ScoringPersonalizedPagerank
        ),
    ]
);

enum_field_serde!(
    /// Serde for `Fusion` fields; absent = `UNSPECIFIED` (RRF; only with a vector and a text).
    fusion,
    "FUSION_",
    null = 0,
    [
        ("UNSPECIFIED", crate::pb::Fusion::Unspecified),
        ("RRF", crate::pb::Fusion::Rrf),
        ("DBSF", crate::pb::Fusion::Dbsf),
    ]
);

/// The HTTP status of a `POST /entities/batch` reply: 200 when every entity was written, 206
/// (partial content) when some failed.
pub fn batch_status(reply: &pb::BatchPutEntitiesResponse) -> StatusCode {
    if reply.failure_count == 0 {
        StatusCode::OK
    } else {
        StatusCode::PARTIAL_CONTENT
    }
}

/// The HTTP status of a `GET /health` reply.
pub fn health_status(reply: &pb::HealthCheckResponse) -> StatusCode {
    if reply.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The gateway's error body: `{"code": "PermissionDenied", "error": "...", "details": []}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The gRPC code name in CamelCase, e.g. `InvalidArgument`.
    pub code: String,
    /// The human-readable message.
    pub error: String,
    /// Always present; empty unless a route has structured details to add.
    pub details: Vec<serde_json::Value>,
}

/// An error reply of the gateway: status code plus body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ErrorBody,
}

impl HttpError {
    /// An error with an explicit status and gRPC code.
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code_name(code).to_owned(),
                error: message.into(),
                details: Vec::new(),
            },
        }
    }

    /// The reply for a gRPC status, with the status mapping of WIRE.md §2.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self::new(http_status(status.code()), status.code(), status.message())
    }

    /// A body that is not valid JSON for the route: 400.
    pub fn bad_json(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            format!("invalid JSON body: {reason}"),
        )
    }

    /// A body over the gateway's size limit: 413.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("request body exceeds {limit_bytes} bytes"),
        )
    }

    /// A route called with the wrong method: 405.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            format!("method {method} is not allowed on {path}"),
        )
    }

    /// A path that no route serves: 404.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("no route for {path}"),
        )
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

/// The HTTP status for a gRPC code (WIRE.md §2).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The CamelCase name of a gRPC code, as in the `code` field of error bodies.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn int64_accepts_big_numbers_and_strings() {
        let big = i64::MAX - 1; // far beyond 2^53: must not go through f64
        let from_number: pb::VectorEmbedding =
            serde_json::from_str(&format!(r#"{{"version": {big}, "timestamp_nanos": -7}}"#))
                .unwrap();
        assert_eq!(
            (from_number.version, from_number.timestamp_nanos),
            (big, -7)
        );
        let from_string: pb::VectorEmbedding = serde_json::from_str(&format!(
            r#"{{"version": "{big}", "timestamp_nanos": "-7"}}"#
        ))
        .unwrap();
        assert_eq!(from_string, from_number);
        let from_float: pb::VectorEmbedding =
            serde_json::from_str(r#"{"version": 1e3, "timestamp_nanos": null}"#).unwrap();
        assert_eq!((from_float.version, from_float.timestamp_nanos), (1000, 0));

        for bad in [
            r#""12x""#,
            "1.5",
            "9223372036854775808",
            r#""""#,
            "1e19",
            "true",
        ] {
            let text = format!(r#"{{"version": {bad}}}"#);
            assert!(
                serde_json::from_str::<pb::VectorEmbedding>(&text).is_err(),
                "{bad}"
            );
        }
        let out = serde_json::to_value(&from_number).unwrap();
        assert_eq!(out["version"], json!(big));
    }

    #[test]
    fn entities_read_snake_case_ignore_unknown_keys_and_default_absent_ones() {
        let body = json!({
            "entity": {
                "entity_id": "a",
                "embeddings": [{"vector": [1.0, 2.5]}],
                "outgoing_edges": [{"to_entity": "b", "relation": "r", "weight": 0.5}],
                "attributes": {"k": "v"},
                "created_at_nanos": "1700000000000000000",
                "someday": {"nested": true}
            },
            "trace_id": "tr",
            "extra": 1
        });
        let request: pb::PutEntityRequest = serde_json::from_value(body).unwrap();
        let entity = request.entity.unwrap();
        assert_eq!(entity.entity_id, "a");
        assert_eq!(entity.embeddings[0].vector, vec![1.0, 2.5]);
        assert_eq!(entity.outgoing_edges[0].to_entity, "b");
        assert_eq!(entity.attributes["k"], "v");
        assert_eq!(entity.created_at_nanos, 1_700_000_000_000_000_000);
        assert_eq!(entity.importance, 0.0);
        assert_eq!(request.consistency_level, consistency_level::UNSET);
        assert_eq!(request.trace_id, "tr");
    }

    #[test]
    fn consistency_level_by_name_any_case_or_number() {
        for (text, level) in [
            ("\"ONE\"", pb::ConsistencyLevel::ConsistencyOne),
            ("\"quorum\"", pb::ConsistencyLevel::ConsistencyQuorum),
            ("\"CONSISTENCY_ALL\"", pb::ConsistencyLevel::ConsistencyAll),
            ("\"consistency_one\"", pb::ConsistencyLevel::ConsistencyOne),
            ("2", pb::ConsistencyLevel::ConsistencyAll),
        ] {
            let body = format!(r#"{{"entities": [], "consistency_level": {text}}}"#);
            let request: pb::BatchPutEntitiesRequest = serde_json::from_str(&body).unwrap();
            assert_eq!(request.consistency_level, level as i32, "{text}");
        }
        let null: pb::QueryRequest =
            serde_json::from_str(r#"{"consistency_level": null}"#).unwrap();
        assert_eq!(null.consistency_level, consistency_level::UNSET);
        for bad in ["\"MOST\"", "7", "-1", "[]"] {
            let body = format!(r#"{{"consistency_level": {bad}}}"#);
            let err = serde_json::from_str::<pb::QueryRequest>(&body).unwrap_err();
            assert!(
                err.to_string().contains("consistency_level"),
                "{bad}: {err}"
            );
        }
        let out = serde_json::to_value(pb::GetEntityRequest {
            consistency_level: pb::ConsistencyLevel::ConsistencyQuorum as i32,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(out["consistency_level"], json!("QUORUM"));
    }

    #[test]
    fn query_extensions_and_direction() {
        let body = json!({
            "query_vector": [0.1, 0.2],
            "k": 25,
            "direction": "both",
            "max_hops": 0,
            "include_entity": false,
            "weights": {"graph": 0.0},
            "filter": {"entity_types": ["doc"], "attributes": {"lang": "en"}}
        });
        let request: pb::QueryRequest = serde_json::from_value(body).unwrap();
        assert_eq!(request.k, 25);
        assert_eq!(request.direction, pb::Direction::Both as i32);
        assert_eq!(request.max_hops, Some(0));
        assert_eq!(request.include_entity, Some(false));
        assert_eq!(request.weights.unwrap().graph, Some(0.0));
        assert_eq!(request.weights.unwrap().vector, None);
        assert_eq!(request.filter.unwrap().attributes["lang"], "en");
        let absent: pb::QueryRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!((absent.include_entity, absent.max_hops), (None, None));
        assert!(serde_json::from_value::<pb::QueryRequest>(json!({"direction": "up"})).is_err());
    }

    #[test]
    fn graph_rag_fields_and_scoring_mode_names() {
        let body = json!({
            "query_vector": [0.1, 0.2],
            "seeds": 10,
            "include_context": true,
            "max_fan_out": 8,
            "scoring": "personalized_pagerank",
            "pagerank": {"damping": 0.5}
        });
        let request: pb::QueryRequest = serde_json::from_value(body).unwrap();
        assert_eq!(request.seeds, Some(10));
        assert!(request.include_context);
        assert_eq!(request.max_fan_out, Some(8));
        assert_eq!(
            request.scoring,
            pb::ScoringMode::ScoringPersonalizedPagerank as i32
        );
        assert_eq!(request.pagerank.unwrap().damping, Some(0.5));
        let out = serde_json::to_value(&request).unwrap();
        assert_eq!(out["scoring"], json!("PERSONALIZED_PAGERANK"));
        let absent: pb::QueryRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(absent.scoring, pb::ScoringMode::ScoringUnified as i32);
        assert!(serde_json::from_value::<pb::QueryRequest>(json!({"scoring": "magic"})).is_err());
    }

    #[test]
    fn error_bodies_and_status_mapping() {
        let error = HttpError::from(tonic::Status::permission_denied("tenant ID mismatch"));
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::to_value(&error.body).unwrap(),
            json!({"code": "PermissionDenied", "error": "tenant ID mismatch", "details": []})
        );
        let expected = [
            (Code::InvalidArgument, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::FailedPrecondition, 412),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        assert_eq!(HttpError::bad_json("eof").status, StatusCode::BAD_REQUEST);
        assert_eq!(HttpError::payload_too_large(10).status.as_u16(), 413);
        assert_eq!(
            HttpError::method_not_allowed("GET", "/query")
                .status
                .as_u16(),
            405
        );
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
    }

    #[test]
    fn batch_and_health_statuses() {
        let mut reply = pb::BatchPutEntitiesResponse {
            success: true,
            success_count: 2,
            ..Default::default()
        };
        assert_eq!(batch_status(&reply), StatusCode::OK);
        reply.failure_count = 1;
        assert_eq!(batch_status(&reply), StatusCode::PARTIAL_CONTENT);
        let mut health = pb::HealthCheckResponse {
            healthy: true,
            ..Default::default()
        };
        assert_eq!(health_status(&health), StatusCode::OK);
        health.healthy = false;
        assert_eq!(health_status(&health), StatusCode::SERVICE_UNAVAILABLE);
    }
}
