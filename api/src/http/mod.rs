//! The HTTP JSON gateway (WIRE.md §2, routes in `docs/api-http.md`).
//!
//! [`router`] turns HTTP requests into calls of the `allidb.AlliDB` service's trait methods,
//! in-process: each handler reads the JSON body (or the path and query string) into the generated
//! protobuf request message ([`crate::http_model`] gives it the gateway's JSON conventions),
//! copies the `X-ALLIDB-API-KEY` header into the metadata key `x-allidb-api-key`, calls the method
//! and writes the reply message as JSON. Authentication, validation, tenant checks and defaults
//! are the service's, so HTTP and gRPC mean the same by construction. A `tonic::Status` becomes
//! [`HttpError::from_status`]; so do the gateway's own refusals (bad JSON 400, body too large 413,
//! unknown route 404, wrong method 405): every error reply is `{"code", "error", "details"}`.
//!
//! Invariants: a handler never decides anything a gRPC caller could decide differently (no
//! tenant, auth or validation logic here); no input panics; a body is never buffered beyond
//! [`HttpLimits::max_body_bytes`]; handlers never reply 405 themselves (the 405 rewrite relies
//! on it). This module must never log request bodies or API keys.

mod extract;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http_model::HttpError;
use crate::pb::allidb_server::AlliDb;
use crate::validate::MAX_MESSAGE_BYTES;

/// Limits the gateway enforces itself (the service enforces the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body in bytes; a larger one is refused with 413 before it is parsed.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_MESSAGE_BYTES,
        }
    }
}

/// State shared by the handlers: the service and the limits.
struct Gateway<S> {
    service: Arc<S>,
    limits: HttpLimits,
}

// Not derived: `S` itself need not be `Clone`, only the `Arc`.
impl<S> Clone for Gateway<S> {
    fn clone(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            limits: self.limits,
        }
    }
}

/// The gateway's routes over `service` (see the module docs and `docs/api-http.md`).
pub fn router<S: AlliDb>(service: Arc<S>, limits: HttpLimits) -> Router {
    Router::new()
        .route("/entity", post(routes::put_entity::<S>))
        .route(
            "/entity/{entity_id}",
            get(routes::get_entity::<S>).delete(routes::delete_entity::<S>),
        )
        .route("/entities", get(routes::scan::<S>))
        .route("/entities/batch", post(routes::batch_put::<S>))
        .route("/entities/get", post(routes::get_entities::<S>))
        .route("/query", post(routes::query::<S>))
        .route("/query/batch", post(routes::query_batch::<S>))
        .route("/traverse", post(routes::traverse::<S>))
        .route("/edges", post(routes::add_edges::<S>))
        .route("/edges/remove", post(routes::remove_edges::<S>))
        .route("/sources/delete", post(routes::delete_by_source::<S>))
        .route("/sources/replace", post(routes::replace_source::<S>))
        .route("/entities/delete", post(routes::delete_by_filter::<S>))
        .route("/health", get(routes::health::<S>))
        .route("/admin/checkpoint", post(routes::checkpoint::<S>))
        .route("/admin/compact", post(routes::compact::<S>))
        .route("/admin/tenants", get(routes::list_tenants::<S>))
        .route("/admin/tenants/stats", post(routes::tenant_stats::<S>))
        .route("/admin/tenants/drop", post(routes::drop_tenant::<S>))
        .fallback(no_route)
        .layer(middleware::from_fn(json_method_not_allowed))
        .with_state(Gateway { service, limits })
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = %self.body.code, error = %self.body.error, "HTTP request failed");
        } else {
            tracing::debug!(status = %self.status, code = %self.body.code, error = %self.body.error, "HTTP request refused");
        }
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Fallback of paths no route serves.
async fn no_route(uri: Uri) -> HttpError {
    HttpError::no_route(uri.path())
}

/// Gives the router's own 405 replies (a route called with a method it does not serve) the JSON
/// error body, keeping their `Allow` header. Handlers never reply 405, so every 405 is the
/// router's.
async fn json_method_not_allowed(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut replaced = HttpError::method_not_allowed(method.as_str(), &path).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

#[cfg(test)]
mod tests;
