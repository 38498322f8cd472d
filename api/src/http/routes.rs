//! The gateway's handlers, one per route: each builds the service's request message, calls the
//! trait method through [`call`] and writes the reply as JSON with the route's status. The route
//! table and the meaning of each route are in `docs/api-http.md`. Handlers never reply 405 (see
//! the parent module) and hold no logic of their own beyond picking the HTTP status.

use std::future::Future;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tonic::Code;

use super::Gateway;
use super::extract::{EntityIdPath, JsonBody, QueryParams, rpc_request};
use crate::http_model::{self, HttpError, consistency_level};
use crate::pb;
use crate::pb::allidb_server::AlliDb;

/// Calls one service method with `message` and the caller's API key.
async fn call<Message, Reply, Rpc, ReplyFuture>(
    headers: &HeaderMap,
    message: Message,
    rpc: Rpc,
) -> Result<Reply, HttpError>
where
    Rpc: FnOnce(tonic::Request<Message>) -> ReplyFuture,
    ReplyFuture: Future<Output = Result<tonic::Response<Reply>, tonic::Status>>,
{
    let request = rpc_request(headers, message)?;
    rpc(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| HttpError::from_status(&status))
}

/// Query string of single-entity reads and deletes:
/// `?consistency_level=quorum&trace_id=...`.
#[derive(Debug, Deserialize)]
pub(super) struct EntityParams {
    #[serde(with = "consistency_level", default = "consistency_level::unset")]
    consistency_level: i32,
    #[serde(default)]
    trace_id: String,
}

/// Query string of `GET /entities` (a range scan); `start_key`/`end_key` are accepted as the
/// proto names of `start`/`end`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ScanParams {
    #[serde(alias = "start_key")]
    start: String,
    #[serde(alias = "end_key")]
    end: String,
    limit: i32,
    page_token: String,
    tenant_id: String,
    node_id: String,
    #[serde(with = "consistency_level", default = "consistency_level::unset")]
    consistency_level: i32,
    /// The filter (`RangeScanRequest.where`) as JSON.
    #[serde(rename = "where")]
    where_json: String,
    routing_key: String,
}

/// `POST /entity`: PutEntity.
pub(super) async fn put_entity<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::PutEntityRequest>,
) -> Result<Json<pb::PutEntityResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.put_entity(r))
        .await
        .map(Json)
}

/// `POST /entities/batch`: BatchPutEntities; 200 when all were written, 206 when some failed.
pub(super) async fn batch_put<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::BatchPutEntitiesRequest>,
) -> Result<Response, HttpError> {
    let reply = call(&headers, request, |r| gateway.service.batch_put_entities(r)).await?;
    Ok((http_model::batch_status(&reply), Json(reply)).into_response())
}

/// `POST /query`: Query.
pub(super) async fn query<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::QueryRequest>,
) -> Result<Json<pb::QueryResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.query(r))
        .await
        .map(Json)
}

/// `POST /query/batch`: QueryBatch.
pub(super) async fn query_batch<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::QueryBatchRequest>,
) -> Result<Json<pb::QueryBatchResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.query_batch(r))
        .await
        .map(Json)
}

/// `GET /entity/{entity_id}`: GetEntity; 404 when the entity does not exist.
pub(super) async fn get_entity<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    EntityIdPath(entity_id): EntityIdPath,
    QueryParams(params): QueryParams<EntityParams>,
) -> Result<Json<pb::GetEntityResponse>, HttpError> {
    let request = pb::GetEntityRequest {
        entity_id,
        consistency_level: params.consistency_level,
        trace_id: params.trace_id,
    };
    let entity_id = request.entity_id.clone();
    let reply = call(&headers, request, |r| gateway.service.get_entity(r)).await?;
    if reply.found {
        Ok(Json(reply))
    } else {
        Err(HttpError::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("entity {entity_id:?} not found"),
        ))
    }
}

/// `POST /entities/get`: GetEntities (found entities in request order, plus the missing ids).
pub(super) async fn get_entities<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::GetEntitiesRequest>,
) -> Result<Json<pb::GetEntitiesResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.get_entities(r))
        .await
        .map(Json)
}

/// `DELETE /entity/{entity_id}`: DeleteEntity; 200 with `found: false` when it did not exist.
pub(super) async fn delete_entity<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    EntityIdPath(entity_id): EntityIdPath,
    QueryParams(params): QueryParams<EntityParams>,
) -> Result<Json<pb::DeleteEntityResponse>, HttpError> {
    let request = pb::DeleteEntityRequest {
        entity_id,
        consistency_level: params.consistency_level,
        trace_id: params.trace_id,
    };
    call(&headers, request, |r| gateway.service.delete_entity(r))
        .await
        .map(Json)
}

/// The `where` query parameter of `GET /entities`: a filter expression as JSON. A refusal
/// names the path of the bad part under `where` (`where.and[1].gtx: not a filter expression:
/// unknown field `gtx`, ...`), as a JSON body's errors do.
fn filter_param(json: &str) -> Result<pb::FilterExpression, HttpError> {
    let refused = |at: String, cause: &dyn std::fmt::Display| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            format!("{at}: not a filter expression: {cause}"),
        )
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let filter = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let at = match error.path().to_string() {
            path if path == "." => "where".to_owned(),
            path => format!("where.{path}"),
        };
        refused(at, error.inner())
    })?;
    deserializer
        .end()
        .map_err(|error| refused("where".to_owned(), &error))?;
    Ok(filter)
}

/// `GET /entities?start=&end=&limit=&page_token=&consistency_level=&where=&routing_key=`:
/// RangeScan
/// (`where` is the filter expression as JSON, URL-encoded).
pub(super) async fn scan<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<ScanParams>,
) -> Result<Json<pb::RangeScanResponse>, HttpError> {
    let r#where = match params.where_json.as_str() {
        "" => None,
        json => Some(filter_param(json)?),
    };
    let request = pb::RangeScanRequest {
        tenant_id: params.tenant_id,
        start_key: params.start,
        end_key: params.end,
        limit: params.limit,
        page_token: params.page_token,
        node_id: params.node_id,
        consistency_level: params.consistency_level,
        r#where,
        routing_key: params.routing_key,
    };
    call(&headers, request, |r| gateway.service.range_scan(r))
        .await
        .map(Json)
}

/// `POST /traverse`: Traverse.
pub(super) async fn traverse<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::TraverseRequest>,
) -> Result<Json<pb::TraverseResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.traverse(r))
        .await
        .map(Json)
}

/// `POST /edges`: AddEdges.
pub(super) async fn add_edges<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::AddEdgesRequest>,
) -> Result<Json<pb::AddEdgesResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.add_edges(r))
        .await
        .map(Json)
}

/// `POST /sources/delete`: DeleteBySource.
pub(super) async fn delete_by_source<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::DeleteBySourceRequest>,
) -> Result<Json<pb::DeleteBySourceResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.delete_by_source(r))
        .await
        .map(Json)
}

/// `POST /sources/replace`: ReplaceSource.
pub(super) async fn replace_source<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::ReplaceSourceRequest>,
) -> Result<Json<pb::ReplaceSourceResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.replace_source(r))
        .await
        .map(Json)
}

/// `POST /entities/delete`: DeleteByFilter.
pub(super) async fn delete_by_filter<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::DeleteByFilterRequest>,
) -> Result<Json<pb::DeleteByFilterResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.delete_by_filter(r))
        .await
        .map(Json)
}

/// `POST /edges/remove`: RemoveEdges.
pub(super) async fn remove_edges<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::RemoveEdgesRequest>,
) -> Result<Json<pb::RemoveEdgesResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.remove_edges(r))
        .await
        .map(Json)
}

/// `GET /health`: HealthCheck (no key needed); 200 when healthy, else 503.
pub(super) async fn health<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let reply = call(&headers, pb::HealthCheckRequest {}, |r| {
        gateway.service.health_check(r)
    })
    .await?;
    Ok((http_model::health_status(&reply), Json(reply)).into_response())
}

/// `POST /admin/checkpoint`: Checkpoint (admin role).
pub(super) async fn checkpoint<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::CheckpointRequest>,
) -> Result<Json<pb::CheckpointResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.checkpoint(r))
        .await
        .map(Json)
}

/// `POST /admin/compact`: Compact (admin role, an operator key).
pub(super) async fn compact<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::CompactRequest>,
) -> Result<Json<pb::CompactResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.compact(r))
        .await
        .map(Json)
}

/// `GET /admin/tenants?per_node=true`: ListTenants (admin role).
pub(super) async fn list_tenants<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    QueryParams(request): QueryParams<pb::ListTenantsRequest>,
) -> Result<Json<pb::ListTenantsResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.list_tenants(r))
        .await
        .map(Json)
}

/// `POST /admin/tenants/stats`: GetTenantStats (admin role).
pub(super) async fn tenant_stats<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::GetTenantStatsRequest>,
) -> Result<Json<pb::GetTenantStatsResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.get_tenant_stats(r))
        .await
        .map(Json)
}

/// `POST /admin/tenants/drop`: DropTenant (admin role).
pub(super) async fn drop_tenant<S: AlliDb>(
    State(gateway): State<Gateway<S>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<pb::DropTenantRequest>,
) -> Result<Json<pb::DropTenantResponse>, HttpError> {
    call(&headers, request, |r| gateway.service.drop_tenant(r))
        .await
        .map(Json)
}
