//! Recording a tenant's attribute types in the log (docs/cluster.md "Attribute types on a
//! ring"): any node takes a record request and forwards it to the leader, which commits it as
//! one `RecordAttributeTypes` command and answers with the types recorded then, whether its
//! changes applied or another coordinator's came first. The node that asked then waits until
//! every live member applied the answer ([`TopologyLog::await_attribute_types`], a `Barrier` on
//! the records' counter): a put acknowledged after a key changed type is checked by the new
//! record on any node, not by a lagging follower's old one.
//!
//! Invariants: a request is forwarded at most once (a leader never forwards); the answer's
//! types are the leader's state right after the command was applied or refused.
//! Must never: record a change without its expectation (the state machine's compare-and-set
//! is what keeps two coordinators from both recording over the same old type); wait without
//! bound for a member that does not answer (it is logged and counted, and catches up with the
//! log when it is back).

use std::collections::BTreeMap;
use std::time::Duration;

use allidb_index::filter::AttrType;
use futures_util::future::join_all;
use tonic::Status;

use super::TopologyLog;
use super::state::{AttributeTypeChange, Command};
use crate::peer_client::topology::JoinRefusal;
use crate::{ClusterError, proto};

/// The deadline of one forwarded record (the leader commits one log entry).
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
/// The most changes one request carries.
pub const MAX_CHANGES: usize = 1024;
/// How long a recording node waits for each live member to apply the record.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The log's answer to a record request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedTypes {
    /// Whether the changes applied (else none did: some key's type was no longer expected).
    pub recorded: bool,
    /// The types recorded then, of the request's keys that have one.
    pub types: BTreeMap<String, AttrType>,
    /// The log's count of applied records then (`TopologyState::attribute_types_version`).
    pub version: u64,
}

impl TopologyLog {
    /// Records `changes` to `tenant`'s attribute types through the log's leader.
    pub async fn record_attribute_types(
        &self,
        tenant: &str,
        changes: &[AttributeTypeChange],
    ) -> Result<RecordedTypes, ClusterError> {
        let request = proto::RecordAttributeTypesRequest {
            header: None,
            tenant: tenant.to_owned(),
            changes: changes.iter().map(change_to_proto).collect(),
            forwarded: false,
        };
        self.take_attribute_types(request)
            .await
            .map_err(|status| ClusterError::Unavailable(status.message().to_owned()))
    }

    /// Waits until this node and every live member applied the records of attribute types up
    /// to `version`; a member that does not confirm within [`APPLY_WAIT`] is logged and counted.
    pub async fn await_attribute_types(&self, version: u64) {
        let state = self.state();
        let peers = self.live_peers(&state);
        let calls = peers.iter().map(|(host, addr)| async move {
            let addr = addr.as_ref().map_err(|e| e.to_string())?;
            self.shared
                .clients
                .barrier(*host, *addr, 0, version, APPLY_WAIT)
                .await
                .map_err(|e| e.to_string())
        });
        let (here, there) = tokio::join!(
            self.applied_attribute_types(version, APPLY_WAIT),
            join_all(calls)
        );
        let mut unconfirmed: Vec<String> = peers
            .iter()
            .zip(there)
            .filter_map(|((host, _), outcome)| Some(format!("{host}: {}", outcome.err()?)))
            .collect();
        if here < version {
            unconfirmed.push(format!("this node: applied {here} records, not {version}"));
        }
        if !unconfirmed.is_empty() {
            metrics::counter!("allidb_attribute_type_records_unconfirmed_total").increment(1);
            tracing::warn!(
                version,
                unconfirmed = %unconfirmed.join("; "),
                "a record of attribute types is not confirmed applied on every live node"
            );
        }
    }

    /// A record request taken here: committed when this node leads, forwarded to the leader
    /// otherwise (once).
    pub async fn take_attribute_types(
        &self,
        request: proto::RecordAttributeTypesRequest,
    ) -> Result<RecordedTypes, Status> {
        if request.changes.is_empty() || request.changes.len() > MAX_CHANGES {
            return Err(Status::invalid_argument(format!(
                "changes: {} changes, expected 1..={MAX_CHANGES}",
                request.changes.len()
            )));
        }
        allidb_storage::key::validate_tenant(&request.tenant)
            .map_err(|e| Status::invalid_argument(format!("tenant: {e}")))?;
        let changes = request
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| change_from_proto(c).map_err(|e| format!("changes[{i}].{e}")))
            .collect::<Result<Vec<_>, String>>()
            .map_err(Status::invalid_argument)?;
        if let Some((leader, addr)) = self.leader_for(request.forwarded).await? {
            let forwarded = proto::RecordAttributeTypesRequest {
                forwarded: true,
                ..request
            };
            let reply = self
                .shared
                .clients
                .record_attribute_types(leader, addr, forwarded, RECORD_TIMEOUT)
                .await
                .map_err(JoinRefusal::into_status)?;
            return recorded_from_proto(&reply).map_err(Status::unavailable);
        }
        let tenant = request.tenant;
        let outcome = self
            .propose(Command::RecordAttributeTypes {
                tenant: tenant.clone(),
                changes: changes.clone(),
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let state = self.state();
        let types = changes
            .iter()
            .filter_map(|c| Some((c.key.clone(), state.attribute_type(&tenant, &c.key)?)))
            .collect();
        Ok(RecordedTypes {
            recorded: outcome.is_ok(),
            types,
            version: state.attribute_types_version,
        })
    }
}

fn change_to_proto(change: &AttributeTypeChange) -> proto::AttributeTypeChange {
    proto::AttributeTypeChange {
        key: change.key.clone(),
        expected: change
            .expected
            .map(AttrType::name)
            .unwrap_or_default()
            .to_owned(),
        r#type: change.to.name().to_owned(),
    }
}

/// A type family by its wire name (`field` names it in the error).
pub(crate) fn family(field: &str, name: &str) -> Result<AttrType, String> {
    AttrType::from_name(name).ok_or_else(|| {
        format!("{field}: {name:?} is not a type (string, number, bool, timestamp or string_list)")
    })
}

fn change_from_proto(change: &proto::AttributeTypeChange) -> Result<AttributeTypeChange, String> {
    if change.key.is_empty() {
        return Err("key: empty".to_owned());
    }
    let expected = match change.expected.as_str() {
        "" => None,
        name => Some(family("expected", name)?),
    };
    Ok(AttributeTypeChange {
        key: change.key.clone(),
        expected,
        to: family("type", &change.r#type)?,
    })
}

/// The answer as the Topology service sends it.
pub(super) fn recorded_to_proto(recorded: &RecordedTypes) -> proto::RecordAttributeTypesResponse {
    proto::RecordAttributeTypesResponse {
        recorded: recorded.recorded,
        types: recorded
            .types
            .iter()
            .map(|(key, family)| (key.clone(), family.name().to_owned()))
            .collect(),
        attribute_types_version: recorded.version,
    }
}

fn recorded_from_proto(
    reply: &proto::RecordAttributeTypesResponse,
) -> Result<RecordedTypes, String> {
    let types = reply
        .types
        .iter()
        .map(|(key, name)| Ok((key.clone(), family(&format!("types[{key:?}]"), name)?)))
        .collect::<Result<_, String>>()?;
    Ok(RecordedTypes {
        recorded: reply.recorded,
        types,
        version: reply.attribute_types_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_answers_round_trip_and_bad_fields_are_named() {
        let change = AttributeTypeChange {
            key: "version".to_owned(),
            expected: Some(AttrType::String),
            to: AttrType::Number,
        };
        assert_eq!(change_from_proto(&change_to_proto(&change)), Ok(change));
        let first = AttributeTypeChange {
            key: "tags".to_owned(),
            expected: None,
            to: AttrType::StringList,
        };
        assert_eq!(change_from_proto(&change_to_proto(&first)), Ok(first));
        let bad = proto::AttributeTypeChange {
            key: "k".to_owned(),
            expected: String::new(),
            r#type: "integer".to_owned(),
        };
        let error = change_from_proto(&bad).expect_err("not a type family");
        assert!(error.starts_with("type: \"integer\""), "{error}");
        let recorded = RecordedTypes {
            recorded: false,
            types: [("version".to_owned(), AttrType::Timestamp)].into(),
            version: 3,
        };
        assert_eq!(
            recorded_from_proto(&recorded_to_proto(&recorded)),
            Ok(recorded)
        );
    }
}
