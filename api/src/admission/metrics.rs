//! The admission metrics: the budgets' sizes, the bytes in use, the requests shed.
//!
//! Invariants: labels are only the budget kind (`node`, `share`): a bounded set, never a tenant.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::budget::{BudgetKind, BudgetOptions};

/// Size of each request budget in bytes, label `budget` (`node`, `share`: one tenant's share).
pub const REQUEST_BUDGET_BYTES: &str = "allidb_request_budget_bytes";
/// Bytes of requests admitted and not yet answered on this node.
pub const REQUEST_BUDGET_IN_USE_BYTES: &str = "allidb_request_budget_in_use_bytes";
/// Requests refused because a budget stayed full, label `budget`.
pub const REQUESTS_SHED_TOTAL: &str = "allidb_requests_shed_total";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    describe_gauge!(
        REQUEST_BUDGET_BYTES,
        Unit::Bytes,
        "Bytes of requests that may be in flight on this node (budget=node) or per tenant (budget=share)."
    );
    describe_gauge!(
        REQUEST_BUDGET_IN_USE_BYTES,
        Unit::Bytes,
        "Bytes of requests admitted and not yet answered on this node."
    );
    describe_counter!(
        REQUESTS_SHED_TOTAL,
        Unit::Count,
        "Requests refused with RESOURCE_EXHAUSTED because a request budget stayed full, by budget."
    );
}

pub(super) fn set_budgets(options: &BudgetOptions) {
    gauge!(REQUEST_BUDGET_BYTES, "budget" => BudgetKind::Node.label())
        .set(options.node_bytes as f64);
    gauge!(REQUEST_BUDGET_BYTES, "budget" => BudgetKind::Tenant.label())
        .set(options.tenant_bytes as f64);
}

pub(super) fn set_in_use(bytes: u64) {
    gauge!(REQUEST_BUDGET_IN_USE_BYTES).set(bytes as f64);
}

pub(super) fn count_shed(budget: BudgetKind) {
    counter!(REQUESTS_SHED_TOTAL, "budget" => budget.label()).increment(1);
}
