//! Request extraction of the HTTP gateway: the JSON body ([`JsonBody`], size-limited, parsed with
//! the failing field's path in the error), query strings ([`QueryParams`]), the entity id path
//! segment ([`EntityIdPath`]) and the `tonic::Request` carrying the caller's API key
//! ([`rpc_request`]). Every refusal is an [`HttpError`] (400, 401 or 413), never axum's plain-text
//! rejections. Nothing here interprets a request; it only reads it.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::Gateway;
use crate::auth::API_KEY_METADATA;
use crate::http_model::HttpError;
use crate::observe::{TRACE_ID_METADATA, ViaHttpGateway};
use crate::pb::allidb_server::AlliDb;

/// A request body parsed as JSON into `T` (a protobuf request message).
pub(super) struct JsonBody<T>(pub T);

impl<S: AlliDb, T: DeserializeOwned> FromRequest<Gateway<S>> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, gateway: &Gateway<S>) -> Result<Self, HttpError> {
        let body = read_body(request, gateway.limits.max_body_bytes).await?;
        parse_json(&body).map(JsonBody)
    }
}

/// Buffers a body of at most `limit` bytes: a larger declared `Content-Length` is refused before
/// reading, a longer stream as soon as it passes the limit.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, HttpError> {
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(HttpError::payload_too_large(limit));
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                HttpError::payload_too_large(limit)
            } else {
                bad_request(format!("failed to read the request body: {error}"))
            }
        })
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<LengthLimitError>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Parses a JSON object into `T`. Errors name the problem and where it is: the field path
/// (`entity.embeddings[0].vector[1]: invalid type: string "x", expected f32 at line 1 column 52`).
/// Unknown keys are ignored (the messages derive `#[serde(default)]`), except inside a filter
/// expression and a typed value (`deny_unknown_fields`, `build.rs` `STRICT_MESSAGES`: `where.gtx:
/// unknown field `gtx`, expected one of ...`); trailing data after the object is an error.
pub(super) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => {
            return Err(HttpError::bad_json(
                "the body is empty, expected a JSON object",
            ));
        }
        Some(b'{') => {}
        Some(_) => return Err(HttpError::bad_json("expected a JSON object")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let cause = error.into_inner();
        if path == "." {
            HttpError::bad_json(cause)
        } else {
            HttpError::bad_json(format!("{path}: {cause}"))
        }
    })?;
    deserializer.end().map_err(HttpError::bad_json)?;
    Ok(value)
}

/// A query string parsed into `T`; a value of the wrong type is a 400 naming the parameter.
pub(super) struct QueryParams<T>(pub T);

impl<St: Send + Sync, T: DeserializeOwned> FromRequestParts<St> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, HttpError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| bad_request(rejection.body_text()))
    }
}

/// The percent-decoded `{entity_id}` segment of a path (an id with `/` arrives as `%2F`).
pub(super) struct EntityIdPath(pub String);

impl<St: Send + Sync> FromRequestParts<St> for EntityIdPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, HttpError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(entity_id)| EntityIdPath(entity_id))
            .map_err(|rejection| bad_request(rejection.body_text()))
    }
}

/// The service request for `message`, its metadata carrying the `X-ALLIDB-API-KEY` header (any
/// case) as `x-allidb-api-key`, byte for byte, and the `X-Trace-Id` header as `x-trace-id`; its
/// extensions mark it [`ViaHttpGateway`]. No header = no key (the service decides whether
/// that is allowed); the key header more than once is ambiguous and refused with 401.
pub(super) fn rpc_request<T>(
    headers: &HeaderMap,
    message: T,
) -> Result<tonic::Request<T>, HttpError> {
    let mut keys = headers.get_all(API_KEY_METADATA).iter();
    let mut metadata = HeaderMap::new();
    if let Some(key) = keys.next() {
        if keys.next().is_some() {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "the X-ALLIDB-API-KEY header is given more than once",
            ));
        }
        metadata.insert(HeaderName::from_static(API_KEY_METADATA), key.clone());
    }
    if let Some(trace_id) = headers.get(TRACE_ID_METADATA) {
        metadata.insert(HeaderName::from_static(TRACE_ID_METADATA), trace_id.clone());
    }
    let mut extensions = tonic::Extensions::default();
    extensions.insert(ViaHttpGateway);
    Ok(tonic::Request::from_parts(
        MetadataMap::from_headers(metadata),
        extensions,
        message,
    ))
}

fn bad_request(message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::pb;

    #[test]
    fn json_errors_name_the_field_and_the_problem() {
        let error = parse_json::<pb::PutEntityRequest>(
            br#"{"entity": {"entity_id": "a", "embeddings": [{"vector": [1.0, "x"]}]}}"#,
        )
        .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.body.code, "InvalidArgument");
        assert!(
            error
                .body
                .error
                .starts_with("invalid JSON body: entity.embeddings[0].vector[1]: invalid type"),
            "{}",
            error.body.error
        );
        for (body, expected) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"[1, 2]", "expected a JSON object"),
            (b"{\"k\": 1", "EOF"),
            (b"{} {}", "trailing characters"),
            (b"{\"k\": 1e999}", "number out of range"),
            (b"{\"k\": \"ten\"}", "k: invalid type: string"),
        ] {
            let error = parse_json::<pb::QueryRequest>(body).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(
                error.body.error.contains(expected),
                "{:?}: {}",
                String::from_utf8_lossy(body),
                error.body.error
            );
        }
        let parsed: pb::QueryRequest =
            parse_json(b" {\"k\": 3, \"unknown\": {\"deep\": [1]}}\n").unwrap();
        assert_eq!(parsed.k, 3);
    }

    #[test]
    fn the_api_key_header_becomes_metadata_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-allidb-api-key"),
            HeaderValue::from_static("secret"),
        );
        let request = rpc_request(&headers, ()).unwrap();
        assert_eq!(request.metadata().get(API_KEY_METADATA).unwrap(), "secret");
        let request = rpc_request(&HeaderMap::new(), ()).unwrap();
        assert!(request.metadata().get(API_KEY_METADATA).is_none());
        headers.append(
            HeaderName::from_static("x-allidb-api-key"),
            HeaderValue::from_static("other"),
        );
        let error = rpc_request(&headers, ()).unwrap_err();
        assert_eq!(error.status, StatusCode::UNAUTHORIZED);
    }
}
