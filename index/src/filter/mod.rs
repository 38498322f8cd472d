//! Filters beyond equality (issue 37): the expression a query, scan or traversal is filtered
//! by, and the per-tenant payload index the query planner reads.
//!
//! * [`expr`]: the expression tree (`and or not`, `eq ne gt gte lt lte`, `in nin`, `exists`,
//!   `contains`, `prefix` on attributes, `entity_type` and `entity_id`), its evaluation against
//!   one entity and its check against a tenant's attribute types;
//! * [`payload`]: ids per attribute value and per type, for cardinalities and candidates;
//! * [`wire`]: the flat encoding that carries an expression between the nodes of a ring.
//!
//! The planner that picks a search per query from these is `store::planning`.

pub mod expr;
pub mod payload;
pub mod wire;

pub use expr::{AttrType, Cmp, EntitySubject, Expr, Field, MAX_DEPTH, Subject, ValueRef};
pub use payload::{Cardinality, PayloadIndex};

#[cfg(test)]
mod tests;
