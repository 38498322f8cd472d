//! Admission control in bytes (docs/configuration.md "Request budget"): a node-wide budget of
//! request bytes being decoded, applied and indexed at once, with a share per tenant so that
//! one tenant cannot take all of it.
//!
//! [`budget`] owns the budgets and their permits; [`grpc`] admits gRPC calls from the message
//! length prefix, before decoding; [`http`] admits gateway requests from `Content-Length`,
//! before the body is read; [`metrics`] publishes the budgets, their use and the requests shed.
//! A request that finds no room within the wait is refused `RESOURCE_EXHAUSTED` (HTTP 429)
//! with a message naming the budget's configuration key and when to retry.

pub mod budget;
pub mod grpc;
pub mod http;
pub mod metrics;

pub use budget::{Admitted, BudgetKind, BudgetOptions, Payer, RequestBudget, Shed};
pub use grpc::{AdmittedService, ChargeTo};
pub use http::{HttpAdmission, admit_http};
