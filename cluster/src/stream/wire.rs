//! The range stream's messages of the replica protocol (`StreamRange`) to and from their Rust
//! forms. Pure.
//!
//! Must never: accept a request without spans, with more than [`MAX_SPANS`], a chunk budget
//! outside 1..=[`MAX_CHUNK_BYTES`], or a malformed session id.

use super::chunk::MAX_CHUNK_BYTES;
use super::session::StreamPosition;
use crate::ClusterError;
use crate::proto;
use crate::ring::TokenSpan;

/// Most token ranges one stream request names (a node holds 16 to 256 vnodes per replica).
pub const MAX_SPANS: usize = 16_384;

/// What a `StreamRange` call asks for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The receiver's session.
    pub session: u128,
    /// The topology movement the stream serves (`None`: a rebuild or a repair).
    pub movement: Option<u64>,
    /// Only this tenant's partitions.
    pub tenant: Option<String>,
    /// The ranges.
    pub spans: Vec<TokenSpan>,
    /// Go on after this partition.
    pub after: Option<StreamPosition>,
    /// The chunk's budget.
    pub max_bytes: usize,
    /// It serves an anti-entropy repair: the source paces its scan by its repair pace.
    pub repair: bool,
}

/// The wire form of a span.
pub fn span_to_proto(span: &TokenSpan) -> proto::TokenSpan {
    proto::TokenSpan {
        start: span.start,
        end: span.end,
    }
}

/// A span from its wire form.
pub fn span_from_proto(span: &proto::TokenSpan) -> TokenSpan {
    TokenSpan {
        start: span.start,
        end: span.end,
    }
}

/// The wire form of a position.
pub fn position_to_proto(position: &StreamPosition) -> proto::StreamPosition {
    proto::StreamPosition {
        tenant: position.tenant.clone(),
        entity_id: position.entity_id.clone(),
    }
}

/// A position from its wire form.
pub fn position_from_proto(position: proto::StreamPosition) -> StreamPosition {
    StreamPosition {
        tenant: position.tenant,
        entity_id: position.entity_id,
    }
}

/// The wire form of a request.
pub fn request_to_proto(
    request: &ChunkRequest,
    header: Option<proto::RequestHeader>,
) -> proto::StreamRangeRequest {
    proto::StreamRangeRequest {
        header,
        session_id: format!("{:032x}", request.session),
        tenant: request.tenant.clone().unwrap_or_default(),
        spans: request.spans.iter().map(span_to_proto).collect(),
        after: request.after.as_ref().map(position_to_proto),
        max_bytes: u32::try_from(request.max_bytes).unwrap_or(u32::MAX),
        repair: request.repair,
        movement: request.movement,
    }
}

/// A request from its wire form, checked (the error names the field).
pub fn request_from_proto(
    request: proto::StreamRangeRequest,
) -> Result<ChunkRequest, ClusterError> {
    let invalid = |message: String| ClusterError::Protocol(message);
    let session = (request.session_id.len() == 32)
        .then(|| u128::from_str_radix(&request.session_id, 16).ok())
        .flatten()
        .ok_or_else(|| {
            invalid(format!(
                "session_id: {:?} is not 32 hex digits",
                request.session_id
            ))
        })?;
    if request.spans.is_empty() || request.spans.len() > MAX_SPANS {
        return Err(invalid(format!(
            "spans: {} token ranges, expected 1 to {MAX_SPANS}",
            request.spans.len()
        )));
    }
    let max_bytes = request.max_bytes as usize;
    if !(1..=MAX_CHUNK_BYTES).contains(&max_bytes) {
        return Err(invalid(format!(
            "max_bytes: {max_bytes}, expected 1 to {MAX_CHUNK_BYTES}"
        )));
    }
    Ok(ChunkRequest {
        session,
        movement: request.movement,
        tenant: (!request.tenant.is_empty()).then_some(request.tenant),
        spans: request.spans.iter().map(span_from_proto).collect(),
        after: request.after.map(position_from_proto),
        max_bytes,
        repair: request.repair,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChunkRequest {
        ChunkRequest {
            session: 42,
            movement: Some(3),
            tenant: Some("t".to_owned()),
            spans: vec![TokenSpan { start: 1, end: 2 }],
            after: Some(StreamPosition {
                tenant: "t".to_owned(),
                entity_id: "e".to_owned(),
            }),
            max_bytes: 1 << 20,
            repair: true,
        }
    }

    #[test]
    fn a_request_round_trips_and_bad_fields_are_named() {
        let wire = request_to_proto(&request(), None);
        assert_eq!(request_from_proto(wire.clone()).unwrap(), request());
        type Damage = fn(&mut proto::StreamRangeRequest);
        let cases: [(&str, Damage); 5] = [
            ("session_id", |r| r.session_id = "xyz".to_owned()),
            ("spans", |r| r.spans.clear()),
            ("spans", |r| {
                r.spans = vec![proto::TokenSpan { start: 1, end: 2 }; MAX_SPANS + 1]
            }),
            ("max_bytes", |r| r.max_bytes = 0),
            ("max_bytes", |r| r.max_bytes = MAX_CHUNK_BYTES as u32 + 1),
        ];
        for (field, damage) in cases {
            let mut bad = wire.clone();
            damage(&mut bad);
            let err = request_from_proto(bad).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
