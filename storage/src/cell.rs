//! Cell values and the entity they assemble into (DESIGN.md §2).
//!
//! An entity is stored as cells, each last-write-wins by its own timestamp: a marker
//! ("this entity's body and out-edges at or before T are deleted", [`MarkerValue`]), a body, and
//! one cell per out-edge and per in-edge. [`Entity`] is the read model: the live cells of one
//! entity merged together.

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
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct TextChunk {
    /// Chunk id, unique within the entity by convention.
    pub chunk_id: String,
    /// The text.
    pub text: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
}

/// The body cell: everything of an entity except its edges.
#[derive(Clone, Debug, Default, PartialEq, bincode::Encode, bincode::Decode)]
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
}

impl EntityBody {
    /// Encodes the body payload.
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes a body payload.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes)
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

/// The value of an edge cell (out or in): weight and the edge's own timestamp.
#[derive(Clone, Copy, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct EdgeValue {
    /// Edge weight.
    pub weight: f64,
    /// Client edge timestamp (nanoseconds) or the server's write time.
    pub timestamp_nanos: i64,
}

impl EdgeValue {
    /// Encodes the edge payload.
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes an edge payload.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes)
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
