//! Validation of a query's hybrid-search fields (`text`, `fusion`, `lexical_weight`,
//! `rank_constant`; docs/api.md "Hybrid search"): every refusal is `INVALID_ARGUMENT` naming
//! the field.
//!
//! Rules: a text present must hold a searchable word (not empty, not whitespace or
//! punctuation only) and be at most [`MAX_QUERY_TEXT_BYTES`]; `fusion`, `lexical_weight` and
//! `rank_constant` need both a vector and a text (they say how the two are fused);
//! `lexical_weight` is in [0, 1]; `rank_constant` in 1..=[`MAX_RANK_CONSTANT`] and only with
//! RRF. Must never: accept a field that the query would silently ignore.

use allidb_index::query::{Fusion, HybridOptions};
use tonic::Status;

use crate::pb;

/// Longest query text, in bytes.
pub const MAX_QUERY_TEXT_BYTES: usize = 4096;
/// Largest RRF rank constant.
pub const MAX_RANK_CONSTANT: i32 = 1000;

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// Checks one query text (`field` names it in the error).
pub fn text(field: &str, text: &str) -> Result<(), Status> {
    if text.trim().is_empty() {
        return Err(invalid(format!(
            "{field} must not be empty or whitespace only"
        )));
    }
    if text.len() > MAX_QUERY_TEXT_BYTES {
        return Err(invalid(format!(
            "{field} is {} bytes, the maximum is {MAX_QUERY_TEXT_BYTES}",
            text.len()
        )));
    }
    match allidb_index::lexical::analyze_query(text) {
        Ok(_) => Ok(()),
        Err(allidb_index::Error::InvalidArgument(message)) => {
            Err(invalid(format!("{field}: {message}")))
        }
        Err(other) => Err(invalid(format!("{field}: {}", other.cause()))),
    }
}

/// The fusion options of `request`, for a query that has a vector (`has_vector`) and a text
/// (`has_text`).
pub fn options(
    request: &pb::QueryRequest,
    has_vector: bool,
    has_text: bool,
) -> Result<HybridOptions, Status> {
    let both = has_vector && has_text;
    let fusion = pb::Fusion::try_from(request.fusion)
        .map_err(|_| invalid(format!("fusion {} is not a known value", request.fusion)))?;
    if fusion != pb::Fusion::Unspecified && !both {
        return Err(invalid(
            "fusion needs both query_vector and text (it says how the two are fused)".to_owned(),
        ));
    }
    let mut options = HybridOptions::default();
    if let Some(weight) = request.lexical_weight {
        if !both {
            return Err(invalid(
                "lexical_weight needs both query_vector and text".to_owned(),
            ));
        }
        if !(0.0..=1.0).contains(&weight) {
            return Err(invalid(format!(
                "lexical_weight must be in [0, 1], got {weight}"
            )));
        }
        options.lexical_weight = weight;
    }
    options.fusion = match fusion {
        pb::Fusion::Dbsf => Fusion::Dbsf,
        pb::Fusion::Unspecified | pb::Fusion::Rrf => Fusion::default(),
    };
    if let Some(constant) = request.rank_constant {
        if !both || fusion == pb::Fusion::Dbsf {
            return Err(invalid(
                "rank_constant needs both query_vector and text, with fusion FUSION_RRF".to_owned(),
            ));
        }
        let constant = u32::try_from(constant)
            .ok()
            .filter(|c| (1..=MAX_RANK_CONSTANT as u32).contains(c))
            .ok_or_else(|| {
                invalid(format!(
                    "rank_constant must be 1..={MAX_RANK_CONSTANT}, got {constant}"
                ))
            })?;
        options.fusion = Fusion::Rrf {
            rank_constant: constant,
        };
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, Status>) -> String {
        let status = result.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn bad_texts_name_the_field() {
        assert!(message(text("text", "")).starts_with("text must not be empty"));
        assert!(message(text("text", " \t\n")).starts_with("text must not be empty"));
        assert!(message(text("texts[2]", "?!")).starts_with("texts[2]: text has no searchable"));
        let long = "a ".repeat(MAX_QUERY_TEXT_BYTES);
        assert!(message(text("text", &long)).contains("the maximum is 4096"));
        assert!(text("text", "left-pad").is_ok());
    }

    #[test]
    fn fusion_fields_need_both_inputs_and_stay_in_range() {
        let with = |f: fn(&mut pb::QueryRequest)| {
            let mut r = pb::QueryRequest::default();
            f(&mut r);
            r
        };
        let dbsf = with(|r| r.fusion = pb::Fusion::Dbsf as i32);
        assert!(message(options(&dbsf, true, false)).starts_with("fusion needs both"));
        assert!(message(options(&dbsf, false, true)).starts_with("fusion needs both"));
        assert_eq!(options(&dbsf, true, true).unwrap().fusion, Fusion::Dbsf);
        let weight = with(|r| r.lexical_weight = Some(1.5));
        assert!(message(options(&weight, true, true)).starts_with("lexical_weight must be in"));
        assert!(message(options(&weight, false, true)).starts_with("lexical_weight needs"));
        let nan = with(|r| r.lexical_weight = Some(f64::NAN));
        assert!(message(options(&nan, true, true)).starts_with("lexical_weight must be in"));
        let constant = with(|r| r.rank_constant = Some(0));
        assert!(message(options(&constant, true, true)).starts_with("rank_constant must be"));
        let constant = with(|r| r.rank_constant = Some(10));
        assert_eq!(
            options(&constant, true, true).unwrap().fusion,
            Fusion::Rrf { rank_constant: 10 }
        );
        let unknown = with(|r| r.fusion = 7);
        assert!(message(options(&unknown, true, true)).starts_with("fusion 7"));
        assert_eq!(
            options(&pb::QueryRequest::default(), false, true).unwrap(),
            HybridOptions::default()
        );
    }
}
