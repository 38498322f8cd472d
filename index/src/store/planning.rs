//! The filtered search planner: per query, how the ANN seeds of a filtered query are found so
//! that recall holds at every selectivity (docs/index.md, "Filtered search").
//!
//! * **exact**: the payload index bounds the matches at most the exact-scan threshold
//!   ([`VectorIndexOptions::exact_scan_max_allowed`], or
//!   [`VectorIndexOptions::exact_scan_max_fraction`] of the tenant): the matching set is
//!   enumerated (from the postings when they can, else by a scan of the facts), checked with
//!   the whole filter, and ranked exactly. Recall 1.
//! * **filtered_hnsw**: otherwise the HNSW graph is searched with the filter applied inside the
//!   walk (disallowed nodes are walked through, never returned; the beam stops only once `ef`
//!   allowed nodes are held), falling back to an exact scan if the walk ends short of `k`.
//!
//! Either plan takes the payload index's membership of the filter
//! ([`Membership`](crate::filter::Membership): certain matches inside a superset, for leaves
//! and their `and`/`or`/`not`) when building it costs less than the filter checks it saves
//! ([`CHECK_COST_IN_BITS`]): the exact plan then checks only the uncertain candidates, the walk
//! tests a per-query bitmap over the vector slots.
//!
//! Invariant: a plan never changes which entities pass, only how they are found.

use std::sync::Arc;

use allidb_storage::hlc::wall_nanos;

use super::facts::{FactTable, Filter};
use crate::vector::VectorIndexOptions;

/// What one filter check (a facts lookup by entity id and an evaluation) costs, in the bit
/// operations of building a [`Membership`](crate::filter::Membership) (a posting enumerated,
/// a word combined). A membership is built when its cost is below this times the checks it
/// saves. Measured on npm-minilm-20k with a new filter per query (docs/index.md, "A bitmap per
/// query"): at 90% selectivity a bitmap of about 38,000 bit operations beat the walk's ~180
/// estimated checks, so a check is worth at least ~210.
pub const CHECK_COST_IN_BITS: usize = 256;

/// A filtered walk checks about this many nodes times `ef / selectivity` (measured: 335
/// checks at 50% and 1,347 at 10% with `ef` 64 on npm-minilm-20k).
const WALK_CHECKS_PER_EF: f64 = 2.5;

/// How a filtered query finds its seeds.
#[derive(Clone, Debug, PartialEq)]
pub enum SeedPlan {
    /// No filter: plain HNSW.
    Unfiltered,
    /// Exact ranking of exactly these entities (the matching set).
    Exact(Vec<Arc<str>>),
    /// HNSW with the filter inside the walk; `upper` bounds the matches.
    Filtered {
        /// At most this many entities match.
        upper: usize,
        /// True when the walk should read a bitmap over the vector slots filled from the
        /// filter's [`Membership`](crate::filter::Membership) (worth building:
        /// [`CHECK_COST_IN_BITS`]); it is built when the filter has no memo yet
        /// ([`super::tenant::TenantIndexes::seed_memo`]).
        bitmap: bool,
    },
}

/// What `explain` tells about a filtered query's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanReport {
    /// `unfiltered`, `exact` or `filtered_hnsw`.
    pub plan: &'static str,
    /// Matches the payload index estimated.
    pub estimated: f64,
    /// Matches counted (exact plans always; others only when asked).
    pub matched: Option<usize>,
    /// Live entities of the tenant.
    pub total: usize,
}

impl PlanReport {
    /// Estimated fraction of the tenant that matches.
    pub fn estimated_selectivity(&self) -> f64 {
        self.estimated / self.total.max(1) as f64
    }

    /// Counted fraction of the tenant that matches (when counted).
    pub fn real_selectivity(&self) -> Option<f64> {
        self.matched.map(|m| m as f64 / self.total.max(1) as f64)
    }
}

/// True when `allowed` matches are few enough to rank exactly.
pub fn is_small(options: &VectorIndexOptions, allowed: usize, live: usize) -> bool {
    allowed <= options.exact_scan_max_allowed
        || (allowed as f64) <= options.exact_scan_max_fraction * live as f64
}

/// Plans the seed search of `filter` over `facts`; with `count` the matches are counted even
/// when the plan does not need them (`explain`).
pub fn plan(
    facts: &FactTable,
    filter: &Filter,
    options: &VectorIndexOptions,
    count: bool,
) -> (SeedPlan, PlanReport) {
    let total = facts.len();
    let Some(expression) = filter.as_expression() else {
        let report = PlanReport {
            plan: "unfiltered",
            estimated: total as f64,
            matched: count.then_some(total),
            total,
        };
        return (SeedPlan::Unfiltered, report);
    };
    let payload = facts.payload();
    let cardinality = payload.cardinality(&expression);
    let small = is_small(options, cardinality.upper, total)
        || is_small(options, cardinality.estimate.ceil() as usize, total);
    // An expired entity is still posted until the sweep: then no member is certain.
    let expired = facts.has_expired(wall_nanos());
    let worth = |checks: f64| {
        payload
            .membership_cost(&expression)
            .is_some_and(|cost| cost as f64 <= CHECK_COST_IN_BITS as f64 * checks)
    };
    let membership = |checks: f64| {
        if !worth(checks) {
            return None;
        }
        let mut membership = payload.membership(&expression)?;
        if expired {
            membership.demote();
        }
        Some(membership)
    };
    if small {
        let allows = |id: &Arc<str>| facts.get(id).is_some_and(|m| filter.allows(id, m));
        if let Some(membership) = membership(cardinality.upper as f64) {
            let mut matching: Vec<Arc<str>> = membership
                .certain()
                .filter_map(|o| payload.entity(o).cloned())
                .collect();
            matching.extend(
                membership
                    .uncertain()
                    .filter_map(|o| payload.entity(o).cloned())
                    .filter(allows),
            );
            let report = PlanReport {
                plan: "exact",
                estimated: cardinality.estimate,
                matched: Some(matching.len()),
                total,
            };
            return (SeedPlan::Exact(matching), report);
        }
        let split = if expired {
            None
        } else {
            payload.split_candidates(&expression)
        };
        let matching: Vec<Arc<str>> = match split {
            // Only the uncertain candidates need the predicate (a range's bound posting): the
            // rest match by construction (`split_candidates`), which saves a facts lookup and
            // an evaluation per match.
            Some((mut certain, check)) => {
                certain.extend(check.into_iter().filter(allows));
                certain
            }
            None => match payload.candidates(&expression) {
                Some(candidates) => candidates.into_iter().filter(allows).collect(),
                None => facts
                    .scan_matches(filter)
                    .into_iter()
                    .map(Arc::from)
                    .collect(),
            },
        };
        let report = PlanReport {
            plan: "exact",
            estimated: cardinality.estimate,
            matched: Some(matching.len()),
            total,
        };
        return (SeedPlan::Exact(matching), report);
    }
    let report = PlanReport {
        plan: "filtered_hnsw",
        estimated: cardinality.estimate,
        matched: count.then(|| facts.scan_matches(filter).len()),
        total,
    };
    let selectivity = (cardinality.estimate / total.max(1) as f64).max(f64::MIN_POSITIVE);
    // The bitmap over the vector slots costs a bit per slot on top of the membership.
    let walk_checks = WALK_CHECKS_PER_EF * options.ef_search as f64 / selectivity
        - total as f64 / CHECK_COST_IN_BITS as f64;
    (
        SeedPlan::Filtered {
            upper: cardinality.upper,
            bitmap: worth(walk_checks),
        },
        report,
    )
}
