//! Parsers of the CLI's compact flag values: vectors (`1,2.5,-3`), attributes (`key=value`) and
//! edges (`relation:to[:weight]`).
//!
//! They only shape text into request fields; what the daemon accepts (dimensions, id rules) is
//! the daemon's decision. Invariant: malformed text is an error naming the flag and the value,
//! never a panic, and non-finite numbers are rejected here already.

use allidb_api::pb;

/// Parses a comma-separated vector of finite floats, e.g. `1, 2.5,-3e-2`.
pub fn vector(text: &str) -> Result<Vec<f32>, String> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    if trimmed.trim().is_empty() {
        return Err("the vector is empty".to_owned());
    }
    trimmed
        .split(',')
        .enumerate()
        .map(|(position, part)| {
            let part = part.trim();
            match part.parse::<f32>() {
                Ok(value) if value.is_finite() => Ok(value),
                Ok(_) => Err(format!("component {position} ({part}) is not finite")),
                Err(_) => Err(format!("component {position} ({part:?}) is not a number")),
            }
        })
        .collect()
}

/// Parses `key=value` (the value may contain `=`; the key must not be empty).
pub fn attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not of the form key=value")),
    }
}

/// Parses `relation:to[:weight]` into an outgoing edge (weight 1 when omitted).
///
/// The relation ends at the first `:`. A last `:`-separated part that is a finite number is the
/// weight; everything between is the target id, which may itself contain `:` (a target whose id
/// ends in `:<number>` therefore needs an explicit weight).
pub fn edge(text: &str) -> Result<pb::GraphEdge, String> {
    let malformed = || format!("{text:?} is not of the form relation:to[:weight]");
    let (relation, rest) = text.split_once(':').ok_or_else(malformed)?;
    let (to_entity, weight) = match rest.rsplit_once(':') {
        Some((to, weight)) => match weight.trim().parse::<f64>() {
            Ok(weight) if weight.is_finite() => (to, weight),
            Ok(_) => return Err(format!("{text:?}: the weight is not finite")),
            Err(_) => (rest, 1.0),
        },
        None => (rest, 1.0),
    };
    if relation.is_empty() || to_entity.is_empty() {
        return Err(malformed());
    }
    Ok(pb::GraphEdge {
        to_entity: to_entity.to_owned(),
        relation: relation.to_owned(),
        weight,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_with_spaces_and_brackets_and_reject_garbage() {
        assert_eq!(vector("1,2.5, -3e-1").unwrap(), vec![1.0, 2.5, -0.3]);
        assert_eq!(vector("[0.5,1]").unwrap(), vec![0.5, 1.0]);
        assert!(vector("").unwrap_err().contains("empty"));
        assert!(vector("1,,2").unwrap_err().contains("component 1"));
        assert!(vector("1,x").unwrap_err().contains("not a number"));
        assert!(vector("NaN").unwrap_err().contains("not finite"));
        assert!(vector("1,inf").unwrap_err().contains("not finite"));
    }

    #[test]
    fn attributes_split_at_the_first_equals_sign() {
        assert_eq!(attribute("k=v").unwrap(), ("k".into(), "v".into()));
        assert_eq!(attribute("q=a=b").unwrap(), ("q".into(), "a=b".into()));
        assert_eq!(attribute("empty=").unwrap(), ("empty".into(), "".into()));
        assert!(attribute("=v").is_err());
        assert!(attribute("novalue").is_err());
    }

    #[test]
    fn edges_take_relation_target_and_optional_weight() {
        let e = edge("cites:doc-2:0.5").unwrap();
        assert_eq!(
            (e.relation.as_str(), e.to_entity.as_str(), e.weight),
            ("cites", "doc-2", 0.5)
        );
        let e = edge("cites:doc-2").unwrap();
        assert_eq!((e.to_entity.as_str(), e.weight), ("doc-2", 1.0));
        let e = edge("in:ns:item:2").unwrap();
        assert_eq!((e.to_entity.as_str(), e.weight), ("ns:item", 2.0));
        let e = edge("in:ns:item").unwrap();
        assert_eq!((e.to_entity.as_str(), e.weight), ("ns:item", 1.0));
        assert!(edge("nocolon").is_err());
        assert!(edge(":to:1").is_err());
        assert!(edge("rel::1").is_err());
        assert!(edge("rel:to:inf").unwrap_err().contains("not finite"));
    }
}
