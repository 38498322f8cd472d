//! Request observability: one tracing span and one metric sample per request, around any
//! `allidb.AlliDB` implementation ([`ObservedService`]) and around the HTTP gateway's routes
//! ([`http_route_metrics`]).
//!
//! [`ObservedService`] wraps the service once for both transports (the gRPC server and the HTTP
//! gateway, which calls the service in-process), so every RPC is counted with its exact status
//! code whichever way it came in; the gateway marks its calls with [`ViaHttpGateway`]. Calls
//! the gRPC server answers before they reach the service (an oversized or undecodable message,
//! an unknown method) are counted by [`RejectedCallMetrics`] around the tonic service, with
//! tonic's status code; `rpc` is then the method's name, or `other` for an unknown one. Each call
//! runs inside an `info` span `rpc` with the fields `rpc` (method name), `transport` (`grpc` or
//! `http`) and, when known, `trace_id`: the request message's `trace_id` field when it is set,
//! else the [`TRACE_ID_METADATA`] metadata entry (HTTP: the `X-Trace-Id` header). Stage spans
//! below it (`validate`, `store`, `query_stage`) come from the service and the store.
//!
//! Invariants: metric labels are only the RPC name, the status code name, the transport, the
//! gateway's route template and method, and the HTTP status: a bounded set whatever the
//! traffic. A trace id goes into the span (logs), never into a label, and only when it is at
//! most [`MAX_TRACE_ID_BYTES`] without control characters. Must never: change a request or a
//! reply, or fail a request because of observation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request as HttpRequest};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response as HttpResponse;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::pb;
use crate::pb::allidb_server::AlliDb;
use crate::validate::MAX_TRACE_ID_BYTES;

/// gRPC metadata key (and, case-insensitively, HTTP header) carrying a trace id for requests
/// whose message has no `trace_id` field or leaves it empty.
pub const TRACE_ID_METADATA: &str = "x-trace-id";

/// RPCs answered, labels `rpc`, `code`, `transport`.
pub const RPC_REQUESTS_TOTAL: &str = "allidb_rpc_requests_total";
/// Seconds from the call of an RPC to its reply, labels `rpc`, `code`, `transport`.
pub const RPC_REQUEST_DURATION_SECONDS: &str = "allidb_rpc_request_duration_seconds";
/// HTTP gateway requests answered, labels `route` (template), `method`, `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "allidb_http_requests_total";
/// Seconds to answer an HTTP gateway request, labels `route`, `method`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "allidb_http_request_duration_seconds";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    describe_counter!(
        RPC_REQUESTS_TOTAL,
        Unit::Count,
        "allidb.AlliDB calls answered, by RPC, status code and transport."
    );
    describe_histogram!(
        RPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "allidb.AlliDB call latency, by RPC, status code and transport."
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP gateway requests answered, by route template, method and HTTP status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP gateway request latency, by route template, method and HTTP status."
    );
}

/// Extension of a `tonic::Request` built by the HTTP gateway (the `transport` label `http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaHttpGateway;

/// The `trace_id` field of a request message (empty: the message has none or leaves it unset).
pub trait TraceIdField {
    /// The field's value.
    fn trace_id_field(&self) -> &str;
}

macro_rules! with_trace_id_field {
    ($($message:ty),* $(,)?) => {
        $(impl TraceIdField for $message {
            fn trace_id_field(&self) -> &str {
                &self.trace_id
            }
        })*
    };
}

macro_rules! without_trace_id_field {
    ($($message:ty),* $(,)?) => {
        $(impl TraceIdField for $message {
            fn trace_id_field(&self) -> &str {
                ""
            }
        })*
    };
}

with_trace_id_field!(
    pb::PutEntityRequest,
    pb::BatchPutEntitiesRequest,
    pb::QueryRequest,
    pb::GetEntityRequest,
    pb::GetEntitiesRequest,
    pb::DeleteEntityRequest,
    pb::AddEdgesRequest,
    pb::RemoveEdgesRequest,
    pb::TraverseRequest,
    pb::DeleteBySourceRequest,
    pb::ReplaceSourceRequest,
    pb::DeleteByFilterRequest,
);

without_trace_id_field!(
    pb::RangeScanRequest,
    pb::ReplicaReadRequest,
    pb::ReplicaWriteRequest,
    pb::HealthCheckRequest,
    pb::CheckpointRequest,
    pb::ListTenantsRequest,
    pb::GetTenantStatsRequest,
    pb::DropTenantRequest,
    pb::RepairRequest,
    pb::RebuildRequest,
    pb::CompactRequest,
    pb::DecommissionRequest,
    pb::RemoveNodeRequest,
    pb::CleanupRequest,
);

/// A batch's trace id is its options' (which every reply echoes).
impl TraceIdField for pb::QueryBatchRequest {
    fn trace_id_field(&self) -> &str {
        self.options
            .as_ref()
            .map_or("", |options| &options.trace_id)
    }
}

/// A stream's messages each carry their own trace id; the call as a whole has only the metadata.
impl<T> TraceIdField for Streaming<T> {
    fn trace_id_field(&self) -> &str {
        ""
    }
}

/// `value` when it is fit for a log field: non-empty, at most [`MAX_TRACE_ID_BYTES`], no
/// control characters (which could forge log lines in the pretty format).
fn loggable_trace_id(value: &str) -> Option<&str> {
    let fits = !value.is_empty()
        && value.len() <= MAX_TRACE_ID_BYTES
        && !value.chars().any(char::is_control);
    fits.then_some(value)
}

/// The trace id of a call: the message's field, else the metadata entry.
fn call_trace_id<'a>(field: &'a str, metadata: &'a MetadataMap) -> Option<&'a str> {
    loggable_trace_id(field).or_else(|| {
        metadata
            .get(TRACE_ID_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(loggable_trace_id)
    })
}

/// The canonical gRPC name of `code` (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One call being answered; records its outcome exactly once, as `CANCELLED` when the call is
/// dropped before it finishes (the client went away).
struct CallRecord {
    rpc: &'static str,
    transport: &'static str,
    started: Instant,
    finished: bool,
}

impl CallRecord {
    fn record(&mut self, code: Code) -> Duration {
        self.finished = true;
        let elapsed = self.started.elapsed();
        let code = code_name(code);
        let (rpc, transport) = (self.rpc, self.transport);
        counter!(RPC_REQUESTS_TOTAL, "rpc" => rpc, "code" => code, "transport" => transport)
            .increment(1);
        histogram!(RPC_REQUEST_DURATION_SECONDS, "rpc" => rpc, "code" => code, "transport" => transport)
            .record(elapsed.as_secs_f64());
        elapsed
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.record(Code::Cancelled);
        }
    }
}

/// Runs `call` on `request` inside the call's span and records its outcome.
async fn observe<M, R, F>(
    rpc: &'static str,
    request: Request<M>,
    call: impl FnOnce(Request<M>) -> F,
) -> Result<Response<R>, Status>
where
    M: TraceIdField,
    F: Future<Output = Result<Response<R>, Status>>,
{
    if let Some(reached) = request.extensions().get::<ServiceReached>() {
        reached.0.store(true, Ordering::Relaxed);
    }
    let transport = if request.extensions().get::<ViaHttpGateway>().is_some() {
        "http"
    } else {
        "grpc"
    };
    let span = match call_trace_id(request.get_ref().trace_id_field(), request.metadata()) {
        Some(trace_id) => tracing::info_span!("rpc", rpc, transport, trace_id),
        None => tracing::info_span!("rpc", rpc, transport),
    };
    let mut record = CallRecord {
        rpc,
        transport,
        started: Instant::now(),
        finished: false,
    };
    let result = call(request).instrument(span.clone()).await;
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    let elapsed = record.record(code);
    span.in_scope(|| {
        tracing::debug!(
            code = code_name(code),
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request finished"
        );
    });
    result
}

/// An `allidb.AlliDB` implementation observed per call (see the module docs); cheap to clone
/// when `S` is.
#[derive(Clone, Debug)]
pub struct ObservedService<S> {
    inner: S,
}

impl<S> ObservedService<S> {
    /// Observes every call of `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// Implements every RPC of [`AlliDb`] for [`ObservedService`] as an observed delegation; the
/// compiler refuses a new RPC until it is listed here.
macro_rules! observed_rpcs {
    ($($method:ident($request:ty) -> $reply:ty = $name:literal;)*) => {
        /// The `rpc` label of every method.
        const RPC_NAMES: &[&str] = &[$($name),*];

        #[tonic::async_trait]
        impl<S: AlliDb> AlliDb for ObservedService<S> {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$reply>, Status> {
                    observe($name, request, |request| self.inner.$method(request)).await
                }
            )*
        }
    };
}

observed_rpcs! {
    put_entity(pb::PutEntityRequest) -> pb::PutEntityResponse = "PutEntity";
    batch_put_entities(pb::BatchPutEntitiesRequest) -> pb::BatchPutEntitiesResponse
        = "BatchPutEntities";
    query(pb::QueryRequest) -> pb::QueryResponse = "Query";
    range_scan(pb::RangeScanRequest) -> pb::RangeScanResponse = "RangeScan";
    replica_read(pb::ReplicaReadRequest) -> pb::ReplicaReadResponse = "ReplicaRead";
    replica_write(pb::ReplicaWriteRequest) -> pb::ReplicaWriteResponse = "ReplicaWrite";
    health_check(pb::HealthCheckRequest) -> pb::HealthCheckResponse = "HealthCheck";
    get_entity(pb::GetEntityRequest) -> pb::GetEntityResponse = "GetEntity";
    get_entities(pb::GetEntitiesRequest) -> pb::GetEntitiesResponse = "GetEntities";
    delete_entity(pb::DeleteEntityRequest) -> pb::DeleteEntityResponse = "DeleteEntity";
    add_edges(pb::AddEdgesRequest) -> pb::AddEdgesResponse = "AddEdges";
    remove_edges(pb::RemoveEdgesRequest) -> pb::RemoveEdgesResponse = "RemoveEdges";
    traverse(pb::TraverseRequest) -> pb::TraverseResponse = "Traverse";
    checkpoint(pb::CheckpointRequest) -> pb::CheckpointResponse = "Checkpoint";
    bulk_put_entities(Streaming<pb::BulkPutEntitiesRequest>) -> pb::BulkPutEntitiesResponse
        = "BulkPutEntities";
    query_batch(pb::QueryBatchRequest) -> pb::QueryBatchResponse = "QueryBatch";
    list_tenants(pb::ListTenantsRequest) -> pb::ListTenantsResponse = "ListTenants";
    get_tenant_stats(pb::GetTenantStatsRequest) -> pb::GetTenantStatsResponse = "GetTenantStats";
    drop_tenant(pb::DropTenantRequest) -> pb::DropTenantResponse = "DropTenant";
    repair(pb::RepairRequest) -> pb::RepairResponse = "Repair";
    rebuild(pb::RebuildRequest) -> pb::RebuildResponse = "Rebuild";
    compact(pb::CompactRequest) -> pb::CompactResponse = "Compact";
    decommission(pb::DecommissionRequest) -> pb::TopologyChangeResponse = "Decommission";
    remove_node(pb::RemoveNodeRequest) -> pb::TopologyChangeResponse = "RemoveNode";
    cleanup(pb::CleanupRequest) -> pb::CleanupResponse = "Cleanup";
    delete_by_source(pb::DeleteBySourceRequest) -> pb::DeleteBySourceResponse = "DeleteBySource";
    replace_source(pb::ReplaceSourceRequest) -> pb::ReplaceSourceResponse = "ReplaceSource";
    delete_by_filter(pb::DeleteByFilterRequest) -> pb::DeleteByFilterResponse = "DeleteByFilter";
}

/// Marks a gRPC call that reached [`ObservedService`] (which then counts it): put into the
/// request's extensions by [`RejectedCallMetrics`], set by [`observe`].
#[derive(Clone, Debug, Default)]
struct ServiceReached(Arc<AtomicBool>);

/// Around the tonic `allidb.AlliDB` server: counts the calls tonic answers itself, before they
/// reach the service (a message over the size limit or not decodable, an unknown method), in
/// the same metrics as [`ObservedService`], with the status code tonic sent. Every other call
/// is counted once, by [`ObservedService`].
#[derive(Clone, Debug)]
pub struct RejectedCallMetrics<S> {
    inner: S,
}

impl<S> RejectedCallMetrics<S> {
    /// Counts the calls `inner` answers before its service.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for RejectedCallMetrics<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, ResponseBody> Service<http::Request<B>> for RejectedCallMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let reached = ServiceReached::default();
        request.extensions_mut().insert(reached.clone());
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let rpc = RPC_NAMES
            .iter()
            .find(|name| **name == method)
            .copied()
            .unwrap_or("other");
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A call tonic answered itself is a trailers-only reply: its status is a header.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .map(Code::from);
            if let Some(code) = code
                && !reached.0.load(Ordering::Relaxed)
            {
                CallRecord {
                    rpc,
                    transport: "grpc",
                    started,
                    finished: false,
                }
                .record(code);
            }
            Ok(response)
        })
    }
}

/// The `method` label: the standard methods by name, anything else `other` (a client may send
/// any token as a method; the label set must stay bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Axum middleware for the gateway's routes (install with `Router::route_layer`, where the
/// matched route template is known): counts and times each request by route template, method
/// and HTTP status. Requests no route matches are not seen (they never reach a route layer).
pub async fn http_route_metrics(request: HttpRequest, next: Next) -> HttpResponse {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status),
    ];
    counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn the_message_field_wins_over_the_metadata() {
        let mut metadata = MetadataMap::new();
        metadata.insert(TRACE_ID_METADATA, MetadataValue::from_static("from-header"));
        assert_eq!(call_trace_id("from-body", &metadata), Some("from-body"));
        assert_eq!(call_trace_id("", &metadata), Some("from-header"));
        assert_eq!(call_trace_id("", &MetadataMap::new()), None);
    }

    #[test]
    fn unfit_trace_ids_are_not_logged() {
        assert_eq!(loggable_trace_id("t-123"), Some("t-123"));
        assert_eq!(loggable_trace_id(""), None);
        assert_eq!(loggable_trace_id("line\nforged"), None);
        assert_eq!(loggable_trace_id(&"x".repeat(MAX_TRACE_ID_BYTES + 1)), None);
        assert!(loggable_trace_id(&"x".repeat(MAX_TRACE_ID_BYTES)).is_some());
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let custom = Method::from_bytes(b"BREW").expect("a valid method token");
        assert_eq!(method_label(&custom), "other");
    }

    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
