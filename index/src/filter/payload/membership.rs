//! A filter's matching set as far as the postings tell, per ordinal: the entities that match
//! by construction (**certain**) inside a superset of every match, for single leaves and for
//! `and`, `or` and `not` of them. The store turns it into a per-query bitmap over the vector
//! slots, so a filtered graph walk tests membership with a bit instead of evaluating the filter
//! per visited node, and the exact plan checks only the uncertain candidates.
//!
//! Invariant: `certain ⊆ matches ⊆ superset ⊆ live` for every expression that gets one.
//! * leaf: a range, `eq` or `in` on an attribute is split as
//!   [`PayloadIndex::split_candidates`] splits it; `eq`/`in`/`prefix` on `entity_type` and
//!   `eq`/`in` on `entity_id` are exact; `contains` and an attribute `prefix` are a superset
//!   only; `exists` on `entity_id` is every live entity;
//! * `and`: certain is the intersection of the operands' certain sets when every operand has
//!   one (else empty), the superset the intersection of the operands' supersets that exist;
//! * `or`: unions of both, when every operand has one;
//! * `not` (and `ne`, `nin`): certain is what the operand's superset leaves out, the superset
//!   what its certain set leaves out (complements within the live entities).
//!
//! Other expressions (`exists` on an attribute or on `entity_type`, comparisons the postings
//! cannot answer) have none.

use super::{AttrType, Bits, Cmp, Expr, Field, PayloadIndex};

/// The ordinals a filter matches for certain, inside a superset of all its matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    certain: Bits,
    superset: Bits,
}

impl Membership {
    /// True when `ordinal` matches by construction.
    #[inline]
    pub fn is_certain(&self, ordinal: usize) -> bool {
        self.certain.contains(ordinal)
    }

    /// False when `ordinal` cannot match.
    #[inline]
    pub fn may_match(&self, ordinal: usize) -> bool {
        self.superset.contains(ordinal)
    }

    /// The ordinals that match by construction.
    pub fn certain(&self) -> impl Iterator<Item = usize> + '_ {
        self.certain.iter()
    }

    /// The ordinals that may match but must be checked.
    pub fn uncertain(&self) -> impl Iterator<Item = usize> + '_ {
        self.superset.iter().filter(|&o| !self.certain.contains(o))
    }

    /// How many ordinals may match.
    pub fn superset_len(&self) -> usize {
        self.superset.count()
    }

    /// Makes every member uncertain (when an expired entity may still be posted).
    pub fn demote(&mut self) {
        self.certain = Bits::new(self.certain.universe());
    }
}

impl PayloadIndex {
    /// The filter's certain matches and a superset of all of them, by ordinal (`None`: the
    /// postings cannot bound it; see the module doc).
    pub fn membership(&self, expr: &Expr) -> Option<Membership> {
        let universe = self.owners.len();
        match expr {
            Expr::And(operands) => {
                if operands.is_empty() {
                    return Some(self.everything());
                }
                let mut all_known = true;
                let mut out: Option<Membership> = None;
                for part in operands.iter().map(|e| self.membership(e)) {
                    let Some(part) = part else {
                        all_known = false;
                        continue;
                    };
                    out = Some(match out {
                        None => part,
                        Some(mut acc) => {
                            acc.certain.intersect_with(&part.certain);
                            acc.superset.intersect_with(&part.superset);
                            acc
                        }
                    });
                }
                let mut out = out?;
                if !all_known {
                    // An operand the postings cannot answer may refuse any of them.
                    out.certain = Bits::new(universe);
                }
                Some(out)
            }
            Expr::Or(operands) => {
                let mut out = Membership {
                    certain: Bits::new(universe),
                    superset: Bits::new(universe),
                };
                for part in operands.iter().map(|e| self.membership(e)) {
                    let part = part?;
                    out.certain.union_with(&part.certain);
                    out.superset.union_with(&part.superset);
                }
                Some(out)
            }
            Expr::Not(operand) => self.membership(operand).map(|inner| self.complement(inner)),
            Expr::Compare {
                op: Cmp::Ne,
                field,
                value,
            } => self
                .membership(&Expr::Compare {
                    op: Cmp::Eq,
                    field: field.clone(),
                    value: value.clone(),
                })
                .map(|inner| self.complement(inner)),
            Expr::In {
                field,
                values,
                negated: true,
            } => self
                .membership(&Expr::In {
                    field: field.clone(),
                    values: values.clone(),
                    negated: false,
                })
                .map(|inner| self.complement(inner)),
            Expr::Exists(Field::EntityId) => Some(self.everything()),
            _ => self.leaf(expr),
        }
    }

    /// A leaf's membership: split postings, exact postings, or postings as a superset.
    fn leaf(&self, expr: &Expr) -> Option<Membership> {
        if self.certainly_all(expr) {
            return Some(self.everything());
        }
        let universe = self.owners.len();
        let mut certain = Bits::new(universe);
        let mut superset = Bits::new(universe);
        let split = self.split_postings(expr, &mut |set, sure| {
            for o in set {
                let o = o as usize;
                superset.insert(o);
                if sure {
                    certain.insert(o);
                }
            }
        });
        if split.is_some() {
            return Some(Membership { certain, superset });
        }
        let exact = match expr {
            Expr::Compare {
                op: Cmp::Eq, field, ..
            }
            | Expr::In { field, .. } => matches!(field, Field::EntityType | Field::EntityId),
            Expr::Prefix { field, .. } => matches!(field, Field::EntityType),
            _ => false,
        };
        for set in self.postings(expr)? {
            for o in set.iter() {
                superset.insert(o);
            }
        }
        if exact {
            certain = superset.clone();
        }
        Some(Membership { certain, superset })
    }

    /// True when a leaf [`PayloadIndex::split_candidates`] splits matches every live entity
    /// for certain (its cardinality's lower bound, which counts only certain postings, is the
    /// whole tenant): then its postings need not be enumerated.
    fn certainly_all(&self, expr: &Expr) -> bool {
        let Some(key) = super::split_leaf_key(expr) else {
            return false;
        };
        // A list is posted under each element: such keys are never split.
        let lists = self
            .key_types(key)
            .iter()
            .any(|(family, _)| *family == AttrType::StringList);
        !lists && !self.is_empty() && self.cardinality(expr).lower >= self.len()
    }

    fn everything(&self) -> Membership {
        Membership {
            certain: self.live.clone(),
            superset: self.live.clone(),
        }
    }

    fn complement(&self, inner: Membership) -> Membership {
        let mut certain = self.live.clone();
        certain.subtract(&inner.superset);
        let mut superset = self.live.clone();
        superset.subtract(&inner.certain);
        Membership { certain, superset }
    }

    /// About how many bit operations [`PayloadIndex::membership`] costs for `expr`: the
    /// postings it enumerates plus a word per ordinal for each set it combines (`None`: it has
    /// none).
    pub fn membership_cost(&self, expr: &Expr) -> Option<usize> {
        let words = self.owners.len() / 64 + 1;
        match expr {
            Expr::And(operands) => {
                let costs: Vec<usize> = operands
                    .iter()
                    .filter_map(|e| self.membership_cost(e))
                    .collect();
                (operands.is_empty() || !costs.is_empty())
                    .then(|| costs.iter().sum::<usize>() + 2 * words * (costs.len() + 1))
            }
            Expr::Or(operands) => operands
                .iter()
                .map(|e| self.membership_cost(e).map(|c| c + 2 * words))
                .sum(),
            Expr::Not(operand) => self.membership_cost(operand).map(|c| c + 4 * words),
            Expr::Compare {
                op: Cmp::Ne,
                field,
                value,
            } => self
                .membership_cost(&Expr::Compare {
                    op: Cmp::Eq,
                    field: field.clone(),
                    value: value.clone(),
                })
                .map(|c| c + 4 * words),
            Expr::In {
                field,
                values,
                negated: true,
            } => self
                .membership_cost(&Expr::In {
                    field: field.clone(),
                    values: values.clone(),
                    negated: false,
                })
                .map(|c| c + 4 * words),
            Expr::Exists(Field::EntityId) => Some(2 * words),
            _ if self.certainly_all(expr) => Some(2 * words),
            _ => {
                let sets = self.postings(expr)?;
                Some(sets.iter().map(|s| s.len()).sum::<usize>() + 2 * words)
            }
        }
    }
}
