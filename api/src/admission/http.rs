//! Admission of HTTP gateway requests before their body is read.
//!
//! What it owns: [`admit_http`], an axum middleware that charges the budget the request's
//! `Content-Length` (a body without one: the largest body allowed; a request without a body:
//! nothing) before the handler reads the body, and holds the permit until the handler answers.
//! A refusal is `429 Too Many Requests` with the gateway's JSON error body (code
//! `ResourceExhausted`, the message naming the budget) and a `Retry-After` header in seconds.
//!
//! Must never: read the body itself, or answer a request it admits.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::budget::RequestBudget;
use crate::auth::Authenticator;
use crate::http_model::HttpError;

/// What [`admit_http`] needs: the budget, the authenticator (to find the tenant) and the body
/// limit.
#[derive(Clone, Debug)]
pub struct HttpAdmission {
    budget: RequestBudget,
    auth: Arc<Authenticator>,
    max_body_bytes: u64,
}

impl HttpAdmission {
    /// Admission of gateway requests (bodies of at most `max_body_bytes`) against `budget`.
    pub fn new(budget: RequestBudget, auth: Arc<Authenticator>, max_body_bytes: usize) -> Self {
        Self {
            budget,
            auth,
            max_body_bytes: u64::try_from(max_body_bytes).unwrap_or(u64::MAX),
        }
    }

    /// Bytes a request is charged (see the module documentation).
    fn charge(&self, request: &Request) -> u64 {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        match declared {
            Some(length) => length.min(self.max_body_bytes),
            None if [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS]
                .contains(request.method()) =>
            {
                0
            }
            None => self.max_body_bytes,
        }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state(admission, admit_http)`).
pub async fn admit_http(
    State(admission): State<HttpAdmission>,
    request: Request,
    next: Next,
) -> Response {
    let bytes = admission.charge(&request);
    if bytes == 0 {
        return next.run(request).await;
    }
    let payer = admission.auth.payer_of(request.headers());
    match admission.budget.admit(&payer, bytes).await {
        Ok(admitted) => {
            let response = next.run(request).await;
            drop(admitted);
            response
        }
        Err(shed) => {
            tracing::debug!(budget = shed.budget.label(), "HTTP request shed");
            let status = tonic::Status::resource_exhausted(shed.message());
            let mut response = HttpError::from_status(&status).into_response();
            let seconds = shed.retry_after().as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}
