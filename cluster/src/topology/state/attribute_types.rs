//! The ring's record of attribute types (docs/cluster.md "Attribute types on a ring"): per
//! tenant, the type family each attribute key was last given by a put the ring-wide check
//! accepted. Coordinators read it to skip that check for keys whose type they give again.
//!
//! Invariants: a change applies only over the type it expects (none, or the one recorded), so
//! two coordinators that checked the same key concurrently cannot both record; a command's
//! changes apply all or none. The record is a cache of what the ring's entities hold, not an
//! authority: a key may change type once no live entity holds the old one (the check decides).
//! Must never: bump the topology version (nothing a node routes by changes).

use serde::{Deserialize, Serialize};

use allidb_index::filter::AttrType;

use super::{Outcome, TopologyState};

/// `key` becomes `to`, if its recorded type is `expected` (`None`: none recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeTypeChange {
    pub key: String,
    pub expected: Option<AttrType>,
    pub to: AttrType,
}

impl TopologyState {
    /// The type recorded for `key` of `tenant`.
    pub fn attribute_type(&self, tenant: &str, key: &str) -> Option<AttrType> {
        self.attribute_types.get(tenant)?.get(key).copied()
    }

    /// Applies `changes` to `tenant`'s record, all of them or (one's expectation no longer
    /// holding) none.
    pub(super) fn record_attribute_types(
        &mut self,
        tenant: &str,
        changes: &[AttributeTypeChange],
    ) -> Outcome {
        for change in changes {
            let recorded = self.attribute_type(tenant, &change.key);
            if recorded != change.expected {
                return Err(format!(
                    "attribute {:?} of tenant {tenant:?} is recorded as {}, not {}",
                    change.key,
                    name(recorded),
                    name(change.expected)
                ));
            }
        }
        let record = self.attribute_types.entry(tenant.to_owned()).or_default();
        for change in changes {
            record.insert(change.key.clone(), change.to);
        }
        self.attribute_types_version += 1;
        Ok(self.version)
    }
}

fn name(family: Option<AttrType>) -> &'static str {
    family.map_or("none", AttrType::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, expected: Option<AttrType>, to: AttrType) -> AttributeTypeChange {
        AttributeTypeChange {
            key: key.to_owned(),
            expected,
            to,
        }
    }

    #[test]
    fn a_change_applies_over_the_type_it_expects_and_all_or_none() {
        let mut state = TopologyState {
            version: 7,
            ..TopologyState::default()
        };
        let first = [change("version", None, AttrType::Number)];
        assert_eq!(state.record_attribute_types("t", &first), Ok(7));
        assert_eq!(state.attribute_type("t", "version"), Some(AttrType::Number));
        assert_eq!(state.attribute_type("other", "version"), None);
        // A second coordinator that saw no record loses; nothing of its command applies.
        let racing = [
            change("lang", None, AttrType::String),
            change("version", None, AttrType::String),
        ];
        let refused = state
            .record_attribute_types("t", &racing)
            .expect_err("the key is recorded as a number already");
        assert!(
            refused.contains("\"version\"") && refused.contains("number, not none"),
            "{refused}"
        );
        assert_eq!(state.attribute_type("t", "lang"), None);
        assert_eq!(
            state.attribute_types_version, 1,
            "a refused record counts not"
        );
        // Over the type it expects, a change applies; the version stays, the records' counter
        // (what a barrier waits for) moves.
        let retype = [change("version", Some(AttrType::Number), AttrType::String)];
        assert_eq!(state.record_attribute_types("t", &retype), Ok(7));
        assert_eq!(state.attribute_type("t", "version"), Some(AttrType::String));
        assert_eq!(state.attribute_types_version, 2);
    }

    #[test]
    fn the_record_survives_a_round_trip_through_the_image_json() {
        let mut state = TopologyState::default();
        let changes = [change("tags", None, AttrType::StringList)];
        state
            .record_attribute_types("t", &changes)
            .expect("a first record");
        let json = serde_json::to_string(&state).expect("the state serializes");
        assert!(json.contains("\"string_list\""), "{json}");
        assert!(json.contains("\"attribute_types_version\":1"), "{json}");
        let back: TopologyState = serde_json::from_str(&json).expect("and reads back");
        assert_eq!(back, state);
        // A state written before the record existed reads with an empty one.
        let old = serde_json::to_string(&TopologyState::default()).expect("serializes");
        assert!(!old.contains("attribute_types"), "{old}");
    }
}
