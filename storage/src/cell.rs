//! Cell values and the entity they assemble into (DESIGN.md §2).
//!
//! An entity is stored as cells, each last-write-wins by its own timestamp: a marker
//! ("this entity's body and out-edges at or before T are deleted", [`MarkerValue`]), a body, and
//! one cell per out-edge and per in-edge. [`Entity`] is the read model: the live cells of one
//! entity merged together.
//!
//! Provenance (issue 39): a body, each of its chunks and each edge value may carry source ids
//! (the documents that support them), each list sorted and without repeats. The payload formats
//! that carry them (body format 3, edge format 2) are written only when a list is not empty, so
//! an entity without sources is stored byte for byte as before (docs/storage.md "Provenance").
//!
//! Expiry (issue 39, TTL): a body may carry an absolute expiry time ([`EntityBody::expires_at_nanos`],
//! fixed by the write's coordinator); body format 4 carries it and is written only when it is
//! set. An expired body is a stored fact like any other: reads hide it ([`EntityBody::expired_at`])
//! and the node's expiry sweep shadows it with a marker at its own timestamp
//! ([`crate::mutation::plan_expire`]), which compaction then purges like any hidden cell.

use std::collections::BTreeMap;

use crate::codec;
use crate::error::Result;
use crate::types::Timestamp;

/// One versioned embedding of an entity. The highest `version` is the searchable one.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct Embedding {
    /// Client-visible version number.
    pub version: i64,
    /// The vector exactly as the client gave it.
    pub vector: Vec<f32>,
    /// Client timestamp (nanoseconds) or the server's write time.
    pub timestamp_nanos: i64,
}

/// A text chunk attached to an entity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextChunk {
    /// Chunk id, unique within the entity by convention.
    pub chunk_id: String,
    /// The text.
    pub text: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// The sources (documents) that support this chunk, sorted, no repeats.
    pub sources: Vec<String>,
}

/// A chunk as body formats 1 to 3 store it (its sources travel apart, in format 3).
#[derive(bincode::Encode, bincode::Decode)]
struct ChunkV1 {
    chunk_id: String,
    text: String,
    metadata: BTreeMap<String, String>,
}

impl ChunkV1 {
    fn of(chunk: &TextChunk) -> Self {
        Self {
            chunk_id: chunk.chunk_id.clone(),
            text: chunk.text.clone(),
            metadata: chunk.metadata.clone(),
        }
    }

    fn into_chunk(self, sources: Vec<String>) -> TextChunk {
        TextChunk {
            chunk_id: self.chunk_id,
            text: self.text,
            metadata: self.metadata,
            sources,
        }
    }
}

/// A typed attribute value (`Entity.typed_attributes` on the wire): what filters compare with
/// ranges, lists and booleans. Untyped attributes stay strings in [`EntityBody::attributes`].
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub enum AttributeValue {
    /// A string (the same type as an untyped attribute).
    String(String),
    /// A 64-bit signed integer.
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time, nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// A list of strings (`contains` tests membership).
    StringList(Vec<String>),
}

impl AttributeValue {
    /// The type's name, as error messages and docs spell it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Bool(_) => "bool",
            Self::Timestamp(_) => "timestamp",
            Self::StringList(_) => "string_list",
        }
    }
}

/// The body cell: everything of an entity except its edges.
///
/// Encoded as payload format 1 (no typed attributes: the layout every earlier build wrote and
/// reads), format 2 when `typed_attributes` is not empty (format 1's fields then the typed map),
/// or format 3 when the body or a chunk carries sources (format 2's fields, then the body's
/// sources, then one source list per chunk in chunk order). A build that predates a format fails
/// to decode it (a `Codec` error, never wrong data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntityBody {
    /// Application-defined type (filterable).
    pub entity_type: String,
    /// Versioned embeddings.
    pub embeddings: Vec<Embedding>,
    /// Text chunks.
    pub chunks: Vec<TextChunk>,
    /// Importance, used by the query scorer.
    pub importance: f64,
    /// Filterable attributes.
    pub attributes: BTreeMap<String, String>,
    /// First write time of the entity (nanoseconds), kept across replacing puts.
    pub created_at_nanos: i64,
    /// Time of the write that produced this body (nanoseconds).
    pub updated_at_nanos: i64,
    /// Typed attributes (a key is never in both maps).
    pub typed_attributes: BTreeMap<String, AttributeValue>,
    /// The sources (documents) that support this entity, sorted, no repeats.
    pub sources: Vec<String>,
    /// When the entity expires, nanoseconds since the Unix epoch (0: never): from then on no
    /// read returns it.
    pub expires_at_nanos: i64,
}

/// Body payload format 1: every field but the typed attributes and sources (borrowed for
/// encoding, but the chunks).
#[derive(bincode::Encode)]
struct BodyV1Ref<'a> {
    entity_type: &'a String,
    embeddings: &'a Vec<Embedding>,
    chunks: Vec<ChunkV1>,
    importance: f64,
    attributes: &'a BTreeMap<String, String>,
    created_at_nanos: i64,
    updated_at_nanos: i64,
}

/// Body payload format 2: format 1 then the typed attributes.
#[derive(bincode::Encode)]
struct BodyV2Ref<'a> {
    v1: BodyV1Ref<'a>,
    typed_attributes: &'a BTreeMap<String, AttributeValue>,
}

/// Body payload format 3: format 2 then the sources of the body and of each chunk.
#[derive(bincode::Encode)]
struct BodyV3Ref<'a> {
    v2: BodyV2Ref<'a>,
    sources: &'a Vec<String>,
    chunk_sources: Vec<&'a Vec<String>>,
}

/// Body payload format 4: format 3 then the expiry time.
#[derive(bincode::Encode)]
struct BodyV4Ref<'a> {
    v3: BodyV3Ref<'a>,
    expires_at_nanos: i64,
}

#[derive(bincode::Decode)]
struct BodyV1 {
    entity_type: String,
    embeddings: Vec<Embedding>,
    chunks: Vec<ChunkV1>,
    importance: f64,
    attributes: BTreeMap<String, String>,
    created_at_nanos: i64,
    updated_at_nanos: i64,
}

#[derive(bincode::Decode)]
struct BodyV2 {
    v1: BodyV1,
    typed_attributes: BTreeMap<String, AttributeValue>,
}

#[derive(bincode::Decode)]
struct BodyV3 {
    v2: BodyV2,
    sources: Vec<String>,
    chunk_sources: Vec<Vec<String>>,
}

#[derive(bincode::Decode)]
struct BodyV4 {
    v3: BodyV3,
    expires_at_nanos: i64,
}

impl BodyV3 {
    /// The body (no expiry: formats up to 3 have none).
    fn into_body(self) -> EntityBody {
        let BodyV2 {
            v1,
            typed_attributes,
        } = self.v2;
        v1.into_body(typed_attributes, self.sources, self.chunk_sources)
    }
}

impl BodyV1 {
    /// The body, given what later formats add (`chunk_sources` pairs with the chunks in order;
    /// missing lists are empty).
    fn into_body(
        self,
        typed_attributes: BTreeMap<String, AttributeValue>,
        sources: Vec<String>,
        chunk_sources: Vec<Vec<String>>,
    ) -> EntityBody {
        let mut chunk_sources = chunk_sources.into_iter();
        EntityBody {
            entity_type: self.entity_type,
            embeddings: self.embeddings,
            chunks: self
                .chunks
                .into_iter()
                .map(|c| c.into_chunk(chunk_sources.next().unwrap_or_default()))
                .collect(),
            importance: self.importance,
            attributes: self.attributes,
            created_at_nanos: self.created_at_nanos,
            updated_at_nanos: self.updated_at_nanos,
            typed_attributes,
            sources,
            expires_at_nanos: 0,
        }
    }
}

/// Payload format of a body with typed attributes.
const BODY_FORMAT_TYPED: u8 = 2;
/// Payload format of a body with sources (on the body or a chunk).
const BODY_FORMAT_SOURCED: u8 = 3;
/// Payload format of a body with an expiry time.
const BODY_FORMAT_EXPIRING: u8 = 4;

impl EntityBody {
    /// Encodes the body payload (format 4 with an expiry time, else 3 with sources, else 2 with
    /// typed attributes, else 1).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let v1 = BodyV1Ref {
            entity_type: &self.entity_type,
            embeddings: &self.embeddings,
            chunks: self.chunks.iter().map(ChunkV1::of).collect(),
            importance: self.importance,
            attributes: &self.attributes,
            created_at_nanos: self.created_at_nanos,
            updated_at_nanos: self.updated_at_nanos,
        };
        let sourced = !self.sources.is_empty() || self.chunks.iter().any(|c| !c.sources.is_empty());
        let expiring = self.expires_at_nanos != 0;
        if !expiring && !sourced && self.typed_attributes.is_empty() {
            return codec::encode(&v1);
        }
        let v2 = BodyV2Ref {
            v1,
            typed_attributes: &self.typed_attributes,
        };
        if !expiring && !sourced {
            return codec::encode_as(BODY_FORMAT_TYPED, &v2);
        }
        let v3 = BodyV3Ref {
            v2,
            sources: &self.sources,
            chunk_sources: self.chunks.iter().map(|c| &c.sources).collect(),
        };
        if !expiring {
            return codec::encode_as(BODY_FORMAT_SOURCED, &v3);
        }
        codec::encode_as(
            BODY_FORMAT_EXPIRING,
            &BodyV4Ref {
                v3,
                expires_at_nanos: self.expires_at_nanos,
            },
        )
    }

    /// Decodes a body payload of any format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&BODY_FORMAT_EXPIRING) => {
                let body: BodyV4 = codec::decode_as(BODY_FORMAT_EXPIRING, bytes)?;
                Ok(EntityBody {
                    expires_at_nanos: body.expires_at_nanos,
                    ..body.v3.into_body()
                })
            }
            Some(&BODY_FORMAT_SOURCED) => {
                let body: BodyV3 = codec::decode_as(BODY_FORMAT_SOURCED, bytes)?;
                Ok(body.into_body())
            }
            Some(&BODY_FORMAT_TYPED) => {
                let body: BodyV2 = codec::decode_as(BODY_FORMAT_TYPED, bytes)?;
                Ok(body
                    .v1
                    .into_body(body.typed_attributes, Vec::new(), Vec::new()))
            }
            _ => {
                let body: BodyV1 = codec::decode(bytes)?;
                Ok(body.into_body(BTreeMap::new(), Vec::new(), Vec::new()))
            }
        }
    }

    /// Whether the body has expired at `now_nanos` (nanoseconds since the Unix epoch): it has an
    /// expiry time and that time has come.
    pub fn expired_at(&self, now_nanos: i64) -> bool {
        self.expires_at_nanos != 0 && self.expires_at_nanos <= now_nanos
    }

    /// The searchable embedding: the one with the highest version (the last one on ties).
    pub fn current_embedding(&self) -> Option<&Embedding> {
        self.embeddings.iter().rev().max_by_key(|e| e.version)
    }
}

/// The value of a marker cell: up to which timestamp it hides the entity's in-edge cells.
///
/// A marker at `M` hides the body and out-edge cells at or before `M`. In-edge cells belong to
/// their sources' out-edges, so a marker written today does not hide them
/// (`in_edges_upto` is carried forward from the marker it replaces); a put or delete removes the
/// in-edges it must remove with explicit tombstones. Encodings:
/// * empty (format 0, markers written before format 1): in-edges at or before `M` are hidden too;
/// * `[1, in_edges_upto as u64 little-endian]` (format 1).
///
/// Any other value reads as format 0 (the older, wider rule), in reads and compaction alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerValue {
    /// In-edge cells at or before this timestamp are hidden (0: none).
    pub in_edges_upto: Timestamp,
}

/// Format tag of a [`MarkerValue`] encoding with its own in-edge bound.
const MARKER_FORMAT_1: u8 = 1;

impl MarkerValue {
    /// Encodes the marker value (format 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(MARKER_FORMAT_1);
        out.extend_from_slice(&self.in_edges_upto.to_le_bytes());
        out
    }

    /// Decodes the value of a marker written at `marker_ts` (never fails: see the type's doc).
    pub fn decode(marker_ts: Timestamp, bytes: &[u8]) -> Self {
        let in_edges_upto = match bytes {
            [MARKER_FORMAT_1, rest @ ..] => rest
                .try_into()
                .map(Timestamp::from_le_bytes)
                .unwrap_or(marker_ts),
            _ => marker_ts,
        };
        Self { in_edges_upto }
    }
}

/// What a partition's live entity marker hides, cell by cell in key order: the body and
/// out-edge cells at or below the marker's timestamp, and the in-edge cells at or below its
/// in-edge bound ([`MarkerValue`]). Compaction drops those cells and reads skip them; anti-entropy
/// leaves them out of partition digests, so that replicas that compacted differently agree.
#[derive(Clone, Debug, Default)]
pub struct MarkerShadow {
    partition: Vec<u8>,
    marker_ts: Option<Timestamp>,
    in_edges_upto: Timestamp,
}

/// What [`MarkerShadow::next`] says of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shadowed {
    /// The partition's marker (live or a tombstone).
    Marker,
    /// A cell the partition's marker hides.
    Hidden,
    /// Any other cell.
    Visible,
}

impl MarkerShadow {
    /// Classifies the next cell (`key` encoded, written at `ts`, `value` `None` for a tombstone):
    /// cells must come in key order, partition by partition, each partition's marker first (its
    /// key sorts first).
    pub fn next(&mut self, key: &[u8], ts: Timestamp, value: Option<&[u8]>) -> Shadowed {
        let partition = crate::key::partition_of(key).unwrap_or(key);
        if partition != self.partition.as_slice() {
            self.partition = partition.to_vec();
            self.marker_ts = None;
            self.in_edges_upto = 0;
        }
        let kind = key.get(partition.len()).copied();
        if key.len() == partition.len() + 1 && kind == Some(0) {
            if let Some(value) = value {
                self.marker_ts = Some(ts);
                self.in_edges_upto = MarkerValue::decode(ts, value).in_edges_upto;
            }
            return Shadowed::Marker;
        }
        let hidden = match kind == Some(crate::key::IN_EDGE_KIND) {
            true => ts <= self.in_edges_upto,
            false => self.marker_ts.is_some_and(|m| ts <= m),
        };
        match hidden {
            true => Shadowed::Hidden,
            false => Shadowed::Visible,
        }
    }
}

/// The value of an edge cell (out or in): weight, the edge's own timestamp and its sources.
///
/// Payload format 1 (`weight, timestamp_nanos`, what every earlier build wrote) when it has no
/// sources, else format 2 (format 1's fields then the sources).
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct EdgeValue {
    /// Edge weight.
    pub weight: f64,
    /// Client edge timestamp (nanoseconds) or the server's write time.
    pub timestamp_nanos: i64,
    /// The sources (documents) that support this edge, sorted, no repeats.
    pub sources: Vec<String>,
}

/// Edge payload format 1: no sources.
#[derive(bincode::Encode, bincode::Decode)]
struct EdgeV1 {
    weight: f64,
    timestamp_nanos: i64,
}

/// Payload format of an edge with sources.
const EDGE_FORMAT_SOURCED: u8 = 2;

impl EdgeValue {
    /// Encodes the edge payload (format 2 with sources, else format 1).
    pub fn encode(&self) -> Result<Vec<u8>> {
        match self.sources.is_empty() {
            true => codec::encode(&EdgeV1 {
                weight: self.weight,
                timestamp_nanos: self.timestamp_nanos,
            }),
            false => codec::encode_as(EDGE_FORMAT_SOURCED, self),
        }
    }

    /// Decodes an edge payload of either format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.first() == Some(&EDGE_FORMAT_SOURCED) {
            return codec::decode_as(EDGE_FORMAT_SOURCED, bytes);
        }
        let v1: EdgeV1 = codec::decode(bytes)?;
        Ok(Self {
            weight: v1.weight,
            timestamp_nanos: v1.timestamp_nanos,
            sources: Vec::new(),
        })
    }
}

/// A directed, labelled, weighted edge as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Source entity id.
    pub from: String,
    /// Target entity id.
    pub to: String,
    /// Relation label.
    pub relation: String,
    /// Weight.
    pub weight: f64,
    /// Edge timestamp (nanoseconds).
    pub timestamp_nanos: i64,
    /// The sources (documents) that support this edge, sorted, no repeats.
    pub sources: Vec<String>,
}

impl Edge {
    /// `(from, relation, to)`.
    pub fn ends(&self) -> (&str, &str, &str) {
        (&self.from, &self.relation, &self.to)
    }
}

/// The read model of one live entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub id: String,
    /// The body.
    pub body: EntityBody,
    /// Live outgoing edges, ordered by (relation, to).
    pub out_edges: Vec<Edge>,
    /// Live incoming edges, ordered by (relation, from).
    pub in_edges: Vec<Edge>,
    /// Timestamp of the newest live cell (HLC microseconds).
    pub version_ts: Timestamp,
}

/// One edge of an entity being written, seen from that entity: `other` is the target of an
/// out-edge or the source of an in-edge.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeWrite {
    /// Relation label.
    pub relation: String,
    /// The entity at the other end.
    pub other: String,
    /// Weight.
    pub weight: f64,
    /// Edge timestamp (nanoseconds); 0 = the server's write time.
    pub timestamp_nanos: i64,
    /// The sources (documents) that support this edge, sorted, no repeats.
    pub sources: Vec<String>,
}

/// A replacing write of one entity (`PutEntity`): body plus the entity's complete edge lists.
#[derive(Clone, Debug, PartialEq)]
pub struct EntityWrite {
    /// Entity id.
    pub id: String,
    /// The new body (`created_at_nanos` is kept from the stored entity when it exists).
    pub body: EntityBody,
    /// Outgoing edges; each also becomes an in-edge of its target.
    pub out_edges: Vec<EdgeWrite>,
    /// Incoming edges kept as this entity's in-edges (they do not modify the source entity).
    pub in_edges: Vec<EdgeWrite>,
}

/// Identifies one edge for removal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeRef {
    /// Source entity id.
    pub from: String,
    /// Relation label.
    pub relation: String,
    /// Target entity id.
    pub to: String,
}

impl EdgeRef {
    /// `(from, relation, to)`.
    pub fn ends(&self) -> (&str, &str, &str) {
        (&self.from, &self.relation, &self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format 1 is what every build before typed attributes wrote (the same fields, in order,
    /// behind version byte 1): it still decodes, and a body without typed attributes is still
    /// written as format 1 byte for byte; typed attributes make format 2, which round-trips.
    #[test]
    fn bodies_keep_format_1_and_typed_attributes_use_format_2() {
        #[derive(bincode::Encode)]
        struct Before {
            entity_type: String,
            embeddings: Vec<Embedding>,
            chunks: Vec<ChunkV1>,
            importance: f64,
            attributes: BTreeMap<String, String>,
            created_at_nanos: i64,
            updated_at_nanos: i64,
        }
        let before = Before {
            entity_type: "doc".into(),
            embeddings: vec![Embedding {
                version: 1,
                vector: vec![1.0, 2.0],
                timestamp_nanos: 3,
            }],
            chunks: Vec::new(),
            importance: 0.5,
            attributes: BTreeMap::from([("lang".into(), "en".into())]),
            created_at_nanos: 4,
            updated_at_nanos: 5,
        };
        let old_bytes = codec::encode(&before).unwrap();
        let body = EntityBody::decode(&old_bytes).unwrap();
        assert_eq!(body.attributes["lang"], "en");
        assert!(body.typed_attributes.is_empty());
        assert_eq!(body.encode().unwrap(), old_bytes);
        let typed = EntityBody {
            typed_attributes: BTreeMap::from([
                ("n".into(), AttributeValue::Int(-7)),
                ("f".into(), AttributeValue::Float(0.25)),
                ("b".into(), AttributeValue::Bool(true)),
                ("t".into(), AttributeValue::Timestamp(9)),
                ("l".into(), AttributeValue::StringList(vec!["x".into()])),
                ("s".into(), AttributeValue::String("y".into())),
            ]),
            ..body
        };
        let bytes = typed.encode().unwrap();
        assert_eq!(bytes[0], BODY_FORMAT_TYPED);
        assert_eq!(EntityBody::decode(&bytes).unwrap(), typed);
        assert!(EntityBody::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// An expiry time makes body format 4 (with or without sources and typed attributes),
    /// which round-trips; a body without one keeps its earlier format.
    #[test]
    fn an_expiry_time_uses_body_format_4() {
        let plain = EntityBody {
            entity_type: "session".into(),
            ..EntityBody::default()
        };
        assert_eq!(plain.encode().unwrap()[0], codec::PAYLOAD_VERSION);
        let expiring = EntityBody {
            expires_at_nanos: 1_700_000_000_000_000_000,
            ..plain.clone()
        };
        let bytes = expiring.encode().unwrap();
        assert_eq!(bytes[0], BODY_FORMAT_EXPIRING);
        assert_eq!(EntityBody::decode(&bytes).unwrap(), expiring);
        let full = EntityBody {
            sources: vec!["doc".into()],
            typed_attributes: BTreeMap::from([("n".into(), AttributeValue::Int(1))]),
            ..expiring.clone()
        };
        assert_eq!(EntityBody::decode(&full.encode().unwrap()).unwrap(), full);
        assert!(!expiring.expired_at(1_700_000_000_000_000_000 - 1));
        assert!(expiring.expired_at(1_700_000_000_000_000_000));
        assert!(!plain.expired_at(i64::MAX));
    }

    /// Sources make body format 3 and edge format 2; without sources both stay byte for byte
    /// what earlier builds wrote.
    #[test]
    fn sources_use_body_format_3_and_edge_format_2() {
        let chunk = |id: &str, sources: &[&str]| TextChunk {
            chunk_id: id.into(),
            text: "t".into(),
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            ..TextChunk::default()
        };
        let body = EntityBody {
            chunks: vec![chunk("c1", &["a"]), chunk("c2", &[])],
            sources: vec!["a".into()],
            typed_attributes: BTreeMap::from([("n".into(), AttributeValue::Int(1))]),
            ..EntityBody::default()
        };
        let bytes = body.encode().unwrap();
        assert_eq!(bytes[0], BODY_FORMAT_SOURCED);
        assert_eq!(EntityBody::decode(&bytes).unwrap(), body);
        let unsourced = EntityBody {
            chunks: vec![chunk("c1", &[])],
            ..EntityBody::default()
        };
        assert_eq!(unsourced.encode().unwrap()[0], codec::PAYLOAD_VERSION);

        let edge = EdgeValue {
            weight: 0.5,
            timestamp_nanos: 9,
            sources: vec!["a".into(), "b".into()],
        };
        let bytes = edge.encode().unwrap();
        assert_eq!(bytes[0], EDGE_FORMAT_SOURCED);
        assert_eq!(EdgeValue::decode(&bytes).unwrap(), edge);
        let plain = EdgeValue {
            sources: Vec::new(),
            ..edge
        };
        let v1 = codec::encode(&EdgeV1 {
            weight: 0.5,
            timestamp_nanos: 9,
        })
        .unwrap();
        assert_eq!(plain.encode().unwrap(), v1);
        assert_eq!(EdgeValue::decode(&v1).unwrap(), plain);
    }
}
