//! The ring-wide check of attribute types (docs/cluster.md "Attribute types on a ring"): within
//! a tenant a key keeps one type while any live entity holds it, on every node of the ring, not
//! only on the coordinating node.
//!
//! A put is first checked against this node's store ([`UnifiedStore::prepare_put`]). When this
//! node does not replicate every range, each key whose type the log's record
//! ([`AttributeTypeLog`]) does not give as the put does is then checked by one live replica of
//! every range (`CheckAttributeTypes`, the same check on each node's own entities) and, if none
//! refuses, recorded in the log over the type the check started from (a compare-and-set), and
//! the put waits until every live node applied the log's answer (a follower would otherwise
//! still check by the old record). A key recorded with the put's type needs none of it: the
//! common put costs no call.
//!
//! Invariants: a put whose key a live replica holds as another type is refused with that
//! replica's message (the entity, the key and both types); a key's record changes only after
//! a check of every range found no entity holding another type; a record refused because
//! another coordinator changed it first is checked again from the new record (a bounded number
//! of times).
//! Must never: record a type without having checked every range, or accept a put when a range
//! had no live replica to check (`UNAVAILABLE` naming the ranges); what it cannot close is the
//! race of two puts checked at the same moment (as on one node).
//!
//! [`UnifiedStore::prepare_put`]: allidb_index::UnifiedStore::prepare_put

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use allidb_index::Filter;
use allidb_index::filter::AttrType;
use allidb_index::store::AttributeClaim;
use allidb_storage::cell::EntityWrite;
use async_trait::async_trait;
use futures_util::future::join_all;

use super::Coordinator;
use crate::ClusterError;
use crate::hints::dispatcher::peer_label;
use crate::membership::{CallKind, ClusterView};
use crate::proto;
use crate::query::cover;
use crate::ring::HostId;
use crate::topology::TopologyLog;
use crate::topology::attribute_types::{MAX_CHANGES, RecordedTypes, family};
use crate::topology::state::AttributeTypeChange;

/// The most claims one `CheckAttributeTypes` call carries.
pub const MAX_CLAIMS_PER_CALL: usize = 65_536;
/// How many times the replicas are asked again when a host fails during the check.
const CHECK_ATTEMPTS: usize = 3;
/// How many times a record refused by a racing coordinator's is checked again.
const RECORD_ATTEMPTS: usize = 4;

/// Where the ring's record of attribute types lives: the topology log, or a fake in the
/// coordinator's unit tests.
#[async_trait]
pub trait AttributeTypeLog: Send + Sync + Debug {
    /// The type recorded for `key` of `tenant` in the state this node applied.
    fn recorded(&self, tenant: &str, key: &str) -> Option<AttrType>;

    /// Records `changes` (all or none, each over its expected type); the log's answer.
    async fn record(
        &self,
        tenant: &str,
        changes: &[AttributeTypeChange],
    ) -> Result<RecordedTypes, ClusterError>;

    /// Waits until every live node applied the records up to `version` (an answer's), so that
    /// none checks a later put by an older record; bounded (a node that does not confirm is
    /// logged and counted).
    async fn await_applied(&self, version: u64);
}

#[async_trait]
impl AttributeTypeLog for TopologyLog {
    fn recorded(&self, tenant: &str, key: &str) -> Option<AttrType> {
        self.state().attribute_type(tenant, key)
    }

    async fn record(
        &self,
        tenant: &str,
        changes: &[AttributeTypeChange],
    ) -> Result<RecordedTypes, ClusterError> {
        self.record_attribute_types(tenant, changes).await
    }

    async fn await_applied(&self, version: u64) {
        self.await_attribute_types(version).await
    }
}

impl Coordinator {
    /// Checks the attribute types of `writes` (already checked against this node's store) on
    /// every range and records the new ones (see the module doc); `writes` give each key one
    /// type (the local check refused a request giving a key two).
    pub(super) async fn check_attribute_types(
        &self,
        tenant: &str,
        writes: &[EntityWrite],
    ) -> Result<(), ClusterError> {
        let Some(log) = &self.inner.attribute_types else {
            return Ok(());
        };
        let view = self.inner.view.borrow().clone();
        let rf = view
            .ring
            .effective_replication_factor(self.inner.options.replication_factor);
        if rf >= view.ring.host_count() {
            // Every node holds every range: this node's own check saw every entity.
            return Ok(());
        }
        let claims = AttributeClaim::of_writes(writes);
        let wanted: BTreeMap<&str, AttrType> =
            claims.iter().map(|c| (c.key.as_str(), c.family)).collect();
        let mut recorded: BTreeMap<&str, Option<AttrType>> = wanted
            .keys()
            .map(|key| (*key, log.recorded(tenant, key)))
            .collect();
        for _ in 0..RECORD_ATTEMPTS {
            let changes: Vec<AttributeTypeChange> = wanted
                .iter()
                .filter(|(key, family)| recorded[*key] != Some(**family))
                .map(|(key, family)| AttributeTypeChange {
                    key: (*key).to_owned(),
                    expected: recorded[*key],
                    to: *family,
                })
                .collect();
            if changes.is_empty() {
                return Ok(());
            }
            let changed: BTreeSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
            let asked: Vec<AttributeClaim> = claims
                .iter()
                .filter(|c| changed.contains(c.key.as_str()))
                .cloned()
                .collect();
            self.check_on_every_range(&view, tenant, &asked).await?;
            let mut refused = false;
            let mut answered = 0;
            for chunk in changes.chunks(MAX_CHANGES) {
                let answer = log.record(tenant, chunk).await?;
                for change in chunk {
                    if let Some(slot) = recorded.get_mut(change.key.as_str()) {
                        *slot = answer.types.get(&change.key).copied();
                    }
                }
                refused |= !answer.recorded;
                answered = answered.max(answer.version);
            }
            // Whether recorded or refused, the put goes on by the types answered: every live
            // node is to check by them too before it is acknowledged.
            log.await_applied(answered).await;
            metrics::counter!(
                "allidb_attribute_type_records_total",
                "outcome" => if refused { "raced" } else { "recorded" }
            )
            .increment(1);
            if !refused {
                return Ok(());
            }
        }
        Err(ClusterError::Unavailable(format!(
            "the recorded types of tenant {tenant:?}'s attributes changed {RECORD_ATTEMPTS} times \
             while this put checked them (other puts give its keys other types); retry"
        )))
    }

    /// Checks `filter` against `tenant`'s attribute types: the type this node's live entities
    /// give a key, else the type the ring's record gives it (a key only other nodes hold).
    pub fn check_filter(&self, tenant: &str, filter: &Filter) -> allidb_index::Result<()> {
        let recorded = |key: &str| {
            self.inner
                .attribute_types
                .as_ref()
                .and_then(|log| log.recorded(tenant, key))
        };
        self.store().check_filter_with(tenant, filter, &recorded)
    }

    /// Asks one live replica of every range (this node's own store was checked already)
    /// whether it holds a claimed key as another type; the first refusal as the put's error.
    async fn check_on_every_range(
        &self,
        view: &ClusterView,
        tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<(), ClusterError> {
        let host = self.inner.host;
        let rf = view
            .ring
            .effective_replication_factor(self.inner.options.replication_factor);
        let mut failed: BTreeMap<HostId, ClusterError> = BTreeMap::new();
        let mut answered: BTreeSet<HostId> = [host].into();
        for _ in 0..CHECK_ATTEMPTS {
            let live = |h: HostId| {
                h == host
                    || (!failed.contains_key(&h) && view.address_for(h, CallKind::Read).is_ok())
            };
            let cover = cover::cover(&view.ring, rf, 1, live, |h| {
                self.inner.latency.rank(host, h)
            });
            if !cover.uncovered.is_empty() {
                return Err(uncovered(view, tenant, claims, &cover, &failed));
            }
            let asked: Vec<HostId> = cover
                .hosts
                .into_iter()
                .filter(|h| !answered.contains(h))
                .collect();
            if asked.is_empty() {
                return Ok(());
            }
            let calls = asked
                .iter()
                .map(|h| self.check_on(view, *h, tenant, claims));
            let mut all_answered = true;
            for (h, answer) in asked.iter().zip(join_all(calls).await) {
                match answer {
                    Ok(None) => {
                        answered.insert(*h);
                    }
                    Ok(Some(refusal)) => {
                        return Err(ClusterError::Store(allidb_index::Error::invalid(refusal)));
                    }
                    Err(error) => {
                        all_answered = false;
                        failed.insert(*h, error);
                    }
                }
            }
            if all_answered {
                return Ok(());
            }
        }
        Err(ClusterError::Unavailable(format!(
            "checking the types of attributes {} of tenant {tenant:?} on every range: replicas \
             failed: {}",
            keys_named(claims),
            failures(view, &failed)
        )))
    }

    /// `host`'s refusal of `claims`, if any (asked in calls of at most
    /// [`MAX_CLAIMS_PER_CALL`]).
    async fn check_on(
        &self,
        view: &ClusterView,
        host: HostId,
        tenant: &str,
        claims: &[AttributeClaim],
    ) -> Result<Option<String>, ClusterError> {
        for chunk in claims.chunks(MAX_CLAIMS_PER_CALL) {
            let refusal = self
                .inner
                .replicas
                .check_attribute_types(view, host, tenant, chunk)
                .await?;
            if refusal.is_some() {
                return Ok(refusal);
            }
        }
        Ok(None)
    }
}

/// The distinct keys of `claims`, for messages.
fn keys_named(claims: &[AttributeClaim]) -> String {
    let keys: BTreeSet<&str> = claims.iter().map(|c| c.key.as_str()).collect();
    keys.iter()
        .map(|key| format!("{key:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hosts in `failed` with why.
fn failures(view: &ClusterView, failed: &BTreeMap<HostId, ClusterError>) -> String {
    failed
        .iter()
        .map(|(h, e)| format!("{}: {e}", peer_label(view, *h)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The put's error when some ranges have no live replica to check.
fn uncovered(
    view: &ClusterView,
    tenant: &str,
    claims: &[AttributeClaim],
    cover: &cover::Cover,
    failed: &BTreeMap<HostId, ClusterError>,
) -> ClusterError {
    let down: Vec<String> = view
        .ring
        .hosts()
        .iter()
        .filter(|h| failed.contains_key(*h) || view.address_for(**h, CallKind::Read).is_err())
        .map(|h| peer_label(view, *h))
        .collect();
    ClusterError::Unavailable(format!(
        "attributes {} are new to tenant {tenant:?} or change type: their type is checked on \
         every token range first, and {} of {} ranges have no live replica: {}; hosts down or \
         failing: [{}]",
        keys_named(claims),
        cover.uncovered.len(),
        cover.ranges,
        cover.uncovered_named(),
        down.join(", ")
    ))
}

/// `claims` as a `CheckAttributeTypes` call carries them.
pub(crate) fn claims_to_proto(claims: &[AttributeClaim]) -> Vec<proto::AttributeClaim> {
    claims
        .iter()
        .map(|c| proto::AttributeClaim {
            entity_id: c.entity_id.clone(),
            key: c.key.clone(),
            r#type: c.family.name().to_owned(),
        })
        .collect()
}

/// The claims of a `CheckAttributeTypes` call, or what is wrong with them.
pub(crate) fn claims_from_proto(
    claims: Vec<proto::AttributeClaim>,
) -> Result<Vec<AttributeClaim>, String> {
    if claims.len() > MAX_CLAIMS_PER_CALL {
        return Err(format!(
            "claims: {} claims, at most {MAX_CLAIMS_PER_CALL}",
            claims.len()
        ));
    }
    claims
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(AttributeClaim {
                family: family(&format!("claims[{i}].type"), &c.r#type)?,
                entity_id: c.entity_id,
                key: c.key,
            })
        })
        .collect()
}
