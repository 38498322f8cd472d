//! Filters beyond equality (issue 37): the expression a query, scan or traversal is filtered
//! by, and the per-tenant payload index the query planner reads.
//!
//! * [`expr`]: the expression tree (`and or not`, `eq ne gt gte lt lte`, `in nin`, `exists`,
//!   `contains`, `prefix` on attributes, `entity_type` and `entity_id`), its evaluation against
//!   one entity and its check against a tenant's attribute types;
//! * [`payload`]: ids per attribute value and per type, for cardinalities and candidates, and
//!   a filter's membership (certain matches inside a superset) by payload ordinal;
//! * [`bits`]: the dense bit sets memberships are made of;
//! * [`wire`]: the flat encoding that carries an expression between the nodes of a ring.
//!
//! The planner that picks a search per query from these is `store::planning`.

pub mod bits;
pub mod expr;
pub mod payload;
pub mod wire;

pub use bits::Bits;
pub use expr::{AttrType, Cmp, EntitySubject, Expr, Field, MAX_DEPTH, Subject, ValueRef};
pub use payload::{Cardinality, Membership, PayloadIndex};

#[cfg(test)]
mod tests;
