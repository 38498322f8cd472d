//! Order-preserving cell keys (DESIGN.md §2).
//!
//! Layout of an encoded [`CellKey`] (all strings are NUL-free, see [`validate_id`]):
//!
//! ```text
//! tenant 0x00 entity_id 0x00 kind [relation 0x00 other_entity_id | member_entity_id]
//!                             kind: 0 marker, 1 body, 2 out-edge, 3 in-edge, 4 source member
//! ```
//!
//! Source members (issue 39, docs/storage.md "Provenance"): the partition whose id is
//! [`source_partition_id`] (`U+0001 "src:" source_id`, an id no client may use: see
//! [`validate_id`]) holds one kind-4 cell per entity written with that source. It has no marker
//! and no body, so no read ever shows it as an entity; it replicates, repairs and compacts like
//! any partition.
//!
//! Invariants:
//! * byte order of encoded keys = (tenant, entity_id, kind, relation, other) order, because every
//!   string is NUL-free and terminated by `0x00`, the smallest byte;
//! * all keys of one tenant share the prefix `tenant 0x00` and no other tenant's key starts with
//!   it, so a tenant is one contiguous key range and ranges never interleave;
//! * all cells of one entity share the prefix `tenant 0x00 entity_id 0x00` (the partition key),
//!   and the entity marker sorts first among them.

use crate::error::{Error, Result};

/// Longest tenant id in bytes.
pub const MAX_TENANT_LEN: usize = 128;
/// Longest entity id in bytes.
pub const MAX_ENTITY_ID_LEN: usize = 512;
/// Longest edge relation name in bytes.
pub const MAX_RELATION_LEN: usize = 256;

/// Longest source id in bytes.
pub const MAX_SOURCE_LEN: usize = 256;

/// The kind byte of an in-edge cell (it follows the partition key).
pub const IN_EDGE_KIND: u8 = 3;
/// The kind byte of a source-member cell.
pub const SOURCE_MEMBER_KIND: u8 = 4;

/// The first character of every reserved partition id (refused in client entity ids).
const RESERVED_ID_START: char = '\u{1}';
/// The id prefix of a source's member partition.
const SOURCE_PARTITION_PREFIX: &str = "\u{1}src:";

/// Which cell of an entity a key addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CellSuffix {
    /// "everything of this entity older than T is deleted".
    Marker,
    /// type, embeddings, chunks, importance, attributes, created_at.
    Body,
    /// An outgoing edge `entity -> to` with a relation.
    OutEdge {
        /// Edge relation.
        relation: String,
        /// Target entity id.
        to: String,
    },
    /// An incoming edge `from -> entity` with a relation.
    InEdge {
        /// Edge relation.
        relation: String,
        /// Source entity id.
        from: String,
    },
    /// In a source's member partition: `member` was written with that source.
    SourceMember {
        /// The member entity id.
        member: String,
    },
}

impl CellSuffix {
    fn kind(&self) -> u8 {
        match self {
            CellSuffix::Marker => 0,
            CellSuffix::Body => 1,
            CellSuffix::OutEdge { .. } => 2,
            CellSuffix::InEdge { .. } => IN_EDGE_KIND,
            CellSuffix::SourceMember { .. } => SOURCE_MEMBER_KIND,
        }
    }
}

/// A decoded cell key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub entity_id: String,
    /// Which cell.
    pub suffix: CellSuffix,
}

impl CellKey {
    /// Key of an entity's marker cell.
    pub fn marker(tenant: &str, entity_id: &str) -> Self {
        Self::new(tenant, entity_id, CellSuffix::Marker)
    }

    /// Key of an entity's body cell.
    pub fn body(tenant: &str, entity_id: &str) -> Self {
        Self::new(tenant, entity_id, CellSuffix::Body)
    }

    /// Key of the out-edge cell `from -[relation]-> to`, stored under `from`.
    pub fn out_edge(tenant: &str, from: &str, relation: &str, to: &str) -> Self {
        Self::new(
            tenant,
            from,
            CellSuffix::OutEdge {
                relation: relation.to_owned(),
                to: to.to_owned(),
            },
        )
    }

    /// Key of the in-edge cell `from -[relation]-> to`, stored under `to`.
    pub fn in_edge(tenant: &str, from: &str, relation: &str, to: &str) -> Self {
        Self::new(
            tenant,
            to,
            CellSuffix::InEdge {
                relation: relation.to_owned(),
                from: from.to_owned(),
            },
        )
    }

    /// Key of the cell saying `member` was written with source `source`.
    pub fn source_member(tenant: &str, source: &str, member: &str) -> Self {
        Self::new(
            tenant,
            &source_partition_id(source),
            CellSuffix::SourceMember {
                member: member.to_owned(),
            },
        )
    }

    fn new(tenant: &str, entity_id: &str, suffix: CellSuffix) -> Self {
        Self {
            tenant: tenant.to_owned(),
            entity_id: entity_id.to_owned(),
            suffix,
        }
    }

    /// Encodes the key (see the module layout). The caller must have validated the strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = partition_prefix(&self.tenant, &self.entity_id);
        out.push(self.suffix.kind());
        match &self.suffix {
            CellSuffix::Marker | CellSuffix::Body => {}
            CellSuffix::OutEdge {
                relation,
                to: other,
            }
            | CellSuffix::InEdge {
                relation,
                from: other,
            } => {
                out.extend_from_slice(relation.as_bytes());
                out.push(0);
                out.extend_from_slice(other.as_bytes());
            }
            CellSuffix::SourceMember { member } => out.extend_from_slice(member.as_bytes()),
        }
        out
    }

    /// Decodes an encoded key; any malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::InvalidArgument(format!("malformed cell key ({why})"));
        let mut parts = bytes.splitn(3, |b| *b == 0);
        let tenant = parts.next().ok_or_else(|| bad("no tenant"))?;
        let entity_id = parts.next().ok_or_else(|| bad("no entity id"))?;
        let rest = parts.next().ok_or_else(|| bad("no cell kind"))?;
        let (&kind, tail) = rest.split_first().ok_or_else(|| bad("no cell kind"))?;
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| bad("not UTF-8"))
        };
        let edge = |tail: &[u8]| -> Result<(String, String)> {
            let nul = tail
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| bad("edge without relation end"))?;
            let other = &tail[nul + 1..];
            if other.contains(&0) {
                return Err(bad("NUL inside the other entity id"));
            }
            Ok((text(&tail[..nul])?, text(other)?))
        };
        let suffix = match kind {
            0 if tail.is_empty() => CellSuffix::Marker,
            1 if tail.is_empty() => CellSuffix::Body,
            2 => {
                let (relation, to) = edge(tail)?;
                CellSuffix::OutEdge { relation, to }
            }
            IN_EDGE_KIND => {
                let (relation, from) = edge(tail)?;
                CellSuffix::InEdge { relation, from }
            }
            SOURCE_MEMBER_KIND if !tail.is_empty() && !tail.contains(&0) => {
                CellSuffix::SourceMember {
                    member: text(tail)?,
                }
            }
            _ => return Err(bad("unknown cell kind")),
        };
        Ok(Self {
            tenant: text(tenant)?,
            entity_id: text(entity_id)?,
            suffix,
        })
    }
}

/// `tenant 0x00 entity_id 0x00`: the prefix shared by every cell of one entity.
pub fn partition_prefix(tenant: &str, entity_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tenant.len() + entity_id.len() + 2);
    out.extend_from_slice(tenant.as_bytes());
    out.push(0);
    out.extend_from_slice(entity_id.as_bytes());
    out.push(0);
    out
}

/// `tenant 0x00`: the prefix shared by every key of one tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tenant.len() + 1);
    out.extend_from_slice(tenant.as_bytes());
    out.push(0);
    out
}

/// The partition prefix of an encoded cell key (everything up to and including the second NUL),
/// or `None` if the key is malformed.
pub fn partition_of(encoded: &[u8]) -> Option<&[u8]> {
    let first = encoded.iter().position(|b| *b == 0)?;
    let second = encoded[first + 1..].iter().position(|b| *b == 0)? + first + 1;
    Some(&encoded[..=second])
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (`None` when no such string exists, i.e. the prefix is all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

fn validate_text(what: &str, value: &str, min: usize, max: usize) -> Result<()> {
    if value.len() < min || value.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} must be {min}..={max} bytes, got {}",
            value.len()
        )));
    }
    if value.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "{what} must not contain NUL"
        )));
    }
    Ok(())
}

/// Tenant ids: 1..=128 bytes of UTF-8, no NUL.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    validate_text("tenant id", tenant, 1, MAX_TENANT_LEN)
}

/// Entity ids: 1..=512 bytes of UTF-8, no NUL (DESIGN.md §2), not starting with U+0001
/// (reserved for the source member partitions).
pub fn validate_id(entity_id: &str) -> Result<()> {
    validate_text("entity id", entity_id, 1, MAX_ENTITY_ID_LEN)?;
    if entity_id.starts_with(RESERVED_ID_START) {
        return Err(Error::InvalidArgument(
            "entity id must not start with U+0001 (reserved)".to_owned(),
        ));
    }
    Ok(())
}

/// Partition ids: an entity id or a reserved one (a source's member partition); what a replica
/// accepts in a partition read.
pub fn validate_partition_id(id: &str) -> Result<()> {
    validate_text("partition id", id, 1, MAX_ENTITY_ID_LEN)
}

/// Source ids: 1..=256 bytes of UTF-8, no NUL.
pub fn validate_source(source: &str) -> Result<()> {
    validate_text("source id", source, 1, MAX_SOURCE_LEN)
}

/// The id of the partition that lists the members of `source` (see the module doc).
pub fn source_partition_id(source: &str) -> String {
    format!("{SOURCE_PARTITION_PREFIX}{source}")
}

/// Relations: 0..=256 bytes of UTF-8, no NUL.
pub fn validate_relation(relation: &str) -> Result<()> {
    validate_text("relation", relation, 0, MAX_RELATION_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_text(min: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-c\u{e9}\u{1}-\u{3}]{{{min},6}}")).unwrap()
    }

    fn arb_key() -> impl Strategy<Value = CellKey> {
        let suffix = prop_oneof![
            Just(CellSuffix::Marker),
            Just(CellSuffix::Body),
            (arb_text(0), arb_text(1))
                .prop_map(|(relation, to)| CellSuffix::OutEdge { relation, to }),
            (arb_text(0), arb_text(1))
                .prop_map(|(relation, from)| CellSuffix::InEdge { relation, from }),
            arb_text(1).prop_map(|member| CellSuffix::SourceMember { member }),
        ];
        (arb_text(1), arb_text(1), suffix).prop_map(|(tenant, entity_id, suffix)| CellKey {
            tenant,
            entity_id,
            suffix,
        })
    }

    proptest! {
        #[test]
        fn round_trips(key in arb_key()) {
            prop_assert_eq!(CellKey::decode(&key.encode()).unwrap(), key);
        }

        #[test]
        fn byte_order_is_key_order(a in arb_key(), b in arb_key()) {
            prop_assert_eq!(a.encode().cmp(&b.encode()), a.cmp(&b));
        }

        #[test]
        fn tenants_never_interleave(a in arb_key(), b in arb_key()) {
            let pa = tenant_prefix(&a.tenant);
            prop_assert_eq!(b.encode().starts_with(&pa), a.tenant == b.tenant);
            let encoded = a.encode();
            prop_assert_eq!(partition_of(&encoded).unwrap(), &partition_prefix(&a.tenant, &a.entity_id)[..]);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = CellKey::decode(&bytes);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(validate_id("").is_err());
        assert!(validate_id("a\0b").is_err());
        assert!(validate_id(&"x".repeat(513)).is_err());
        assert!(validate_id(&"x".repeat(512)).is_ok());
        assert!(validate_id("\u{1}src:doc").is_err());
        assert!(validate_source("").is_err());
        assert!(validate_source(&"s".repeat(257)).is_err());
        assert!(validate_tenant("").is_err());
        assert!(validate_relation("").is_ok());
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor(b"ab\0"), Some(b"ab\x01".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff"), None);
    }
}
