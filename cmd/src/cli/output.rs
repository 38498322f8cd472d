//! Rendering of replies on standard output: human-readable text by default, JSON with `--json`.
//!
//! JSON output is the generated protobuf messages' serde form (the HTTP gateway's JSON shapes,
//! WIRE.md §2), one document per line, so `allidb scan --all --json` writes JSON lines that
//! `allidb import` reads back. This module only formats: it never decides what a reply means, and
//! it never prints the API key (it is never given it).

use std::fmt::Write as _;
use std::io::{self, Write};

use allidb_api::pb;
use serde::Serialize;

use super::error::{CliError, CliResult};

/// How many vector components the human form shows before `...`.
const SHOWN_COMPONENTS: usize = 4;
/// How many characters of a chunk's text the human form shows.
const SHOWN_TEXT_CHARS: usize = 80;

/// Writes command output to standard output in the chosen format.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    /// A printer writing JSON (`json`) or text.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: io::BufWriter::new(io::stdout()),
        }
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes one line of text.
    pub fn line(&mut self, text: impl AsRef<str>) -> CliResult<()> {
        writeln!(self.out, "{}", text.as_ref()).map_err(stdout_error)
    }

    /// Writes one value as a single line of JSON.
    pub fn json_line(&mut self, value: &impl Serialize) -> CliResult<()> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(|error| stdout_error(io::Error::other(error)))?;
        self.line("")
    }

    /// Writes `value` as JSON in JSON mode, else the text `human` renders.
    pub fn reply<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> CliResult<()> {
        if self.json {
            self.json_line(value)
        } else {
            let text = human(value);
            write!(self.out, "{text}").map_err(stdout_error)
        }
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> CliResult<()> {
        self.out.flush().map_err(stdout_error)
    }
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`512 B`, `1.5 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

fn stdout_error(source: io::Error) -> CliError {
    CliError::io("-", source)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for nanoseconds since the Unix epoch (UTC); `-` for 0.
pub fn timestamp(nanos: i64) -> String {
    if nanos == 0 {
        return "-".to_owned();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let sub_nanos = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{sub_nanos:09}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `[0.1, 0.2, 0.3, 0.4, ...]` (at most [`SHOWN_COMPONENTS`] components).
fn vector_preview(vector: &[f32]) -> String {
    let shown: Vec<String> = vector
        .iter()
        .take(SHOWN_COMPONENTS)
        .map(|value| format!("{value:.4}"))
        .collect();
    let more = if vector.len() > SHOWN_COMPONENTS {
        ", ..."
    } else {
        ""
    };
    format!("[{}{more}]", shown.join(", "))
}

fn text_preview(text: &str) -> String {
    let mut shown: String = text.chars().take(SHOWN_TEXT_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown.replace('\n', " ")
}

fn attributes_text(attributes: &std::collections::BTreeMap<String, String>) -> String {
    attributes
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The full human form of one entity, several lines.
pub fn entity_block(entity: &pb::Entity) -> String {
    let mut text = format!("entity {}\n", entity.entity_id);
    // Writing to a String cannot fail; `let _` keeps the formatting code linear.
    let _ = writeln!(
        text,
        "  type: {}  importance: {}",
        if entity.entity_type.is_empty() {
            "-"
        } else {
            &entity.entity_type
        },
        entity.importance
    );
    let _ = writeln!(
        text,
        "  created: {}  updated: {}",
        timestamp(entity.created_at_nanos),
        timestamp(entity.updated_at_nanos)
    );
    if !entity.attributes.is_empty() {
        let _ = writeln!(
            text,
            "  attributes: {}",
            attributes_text(&entity.attributes)
        );
    }
    if !entity.source_ids.is_empty() {
        let _ = writeln!(text, "  sources: {}", entity.source_ids.join(", "));
    }
    for embedding in &entity.embeddings {
        let _ = writeln!(
            text,
            "  embedding v{}: {} dims {}",
            embedding.version,
            embedding.vector.len(),
            vector_preview(&embedding.vector)
        );
    }
    for edge in &entity.outgoing_edges {
        let _ = writeln!(
            text,
            "  out: -{}-> {} (weight {})",
            edge.relation, edge.to_entity, edge.weight
        );
    }
    for edge in &entity.incoming_edges {
        let _ = writeln!(
            text,
            "  in:  {} -{}-> (weight {})",
            edge.from_entity, edge.relation, edge.weight
        );
    }
    for chunk in &entity.chunks {
        let _ = writeln!(
            text,
            "  chunk {}: {}",
            chunk.chunk_id,
            text_preview(&chunk.text)
        );
    }
    text
}

/// The one-line human form of an entity (scan listings).
pub fn entity_line(entity: &pb::Entity) -> String {
    let dims = entity
        .embeddings
        .iter()
        .max_by_key(|embedding| embedding.version)
        .map_or(0, |embedding| embedding.vector.len());
    format!(
        "{}\ttype={}\tdims={dims}\tout={}\tin={}\tattrs={}",
        entity.entity_id,
        entity.entity_type,
        entity.outgoing_edges.len(),
        entity.incoming_edges.len(),
        entity.attributes.len()
    )
}

/// `a -rel-> b -rel-> c` for a graph path.
pub fn path_text(path: Option<&pb::GraphPath>) -> String {
    let Some(path) = path else {
        return String::new();
    };
    let mut text = path.entity_ids.first().cloned().unwrap_or_default();
    for (edge, next) in path.edges.iter().zip(path.entity_ids.iter().skip(1)) {
        let _ = write!(text, " -{}-> {next}", edge.relation);
    }
    text
}

/// The human form of query results: a ranked table, with score components when explained.
pub fn query_table(reply: &pb::QueryResponse) -> String {
    let mut text = format!("{} results\n", reply.total_results);
    for (rank, result) in reply.results.iter().enumerate() {
        let entity_type = result
            .entity
            .as_ref()
            .map_or("", |e| e.entity_type.as_str());
        let _ = writeln!(
            text,
            "{:>3}  {:.6}  {}  {}",
            rank + 1,
            result.score,
            result.entity_id,
            entity_type
        );
        if let Some(explanation) = &result.explanation {
            let _ = writeln!(
                text,
                "     vector {:.6}  graph {:.6}  importance {:.6}  recency {:.6}  path {}",
                explanation.vector_score,
                explanation.graph_score,
                explanation.importance_score,
                explanation.recency_score,
                path_text(explanation.path.as_ref())
            );
            if let Some(lexical) = &explanation.lexical {
                let terms: Vec<String> = lexical
                    .matched_terms
                    .iter()
                    .map(|t| format!("{} {:.3} ({:.0}%)", t.term, t.score, 100.0 * t.share))
                    .collect();
                let _ = writeln!(
                    text,
                    "     lexical {:.6}  bm25 {:.4}  matched: {}",
                    explanation.lexical_score,
                    lexical.bm25,
                    terms.join(", ")
                );
            }
            if let Some(pagerank) = &explanation.pagerank {
                let shares: Vec<String> = pagerank
                    .seed_shares
                    .iter()
                    .filter(|s| s.share > 0.0)
                    .map(|s| format!("{} {:.3}", s.entity_id, s.share))
                    .collect();
                let _ = writeln!(
                    text,
                    "     pagerank mass {:.6}  iterations {}  from seeds: {}",
                    pagerank.mass,
                    pagerank.iterations,
                    shares.join(", ")
                );
            }
        }
    }
    if let Some(context) = &reply.context {
        let _ = writeln!(
            text,
            "context: {} entities, {} edges{}",
            context.nodes.len(),
            context.edges.len(),
            if context.truncated {
                format!(" (cut by {})", context.truncated_by.join(", "))
            } else {
                String::new()
            }
        );
        let paths = allidb_api::context::node_paths(context);
        for (index, node) in context.nodes.iter().enumerate() {
            let path = match &paths {
                Some(paths) => path_text(paths.get(index)),
                None => "(the reply's steps do not resolve)".to_owned(),
            };
            let _ = writeln!(text, "  hop {}  {}  {path}", node.hop, node.entity_id);
            for chunk in &node.chunks {
                let _ = writeln!(text, "       [{}] {}", chunk.chunk_id, chunk.text);
            }
        }
        for edge in &context.edges {
            let _ = writeln!(
                text,
                "  edge {} -[{} {}]-> {}",
                edge.from_entity, edge.relation, edge.weight, edge.to_entity
            );
        }
    }
    text
}

/// The human form of a traversal: one line per reached entity.
pub fn traverse_table(reply: &pb::TraverseResponse) -> String {
    let mut text = String::new();
    for node in &reply.nodes {
        let _ = writeln!(
            text,
            "{}  {}  {}",
            node.depth,
            node.entity_id,
            path_text(node.path.as_ref())
        );
    }
    if reply.truncated {
        text.push_str("(truncated: a traversal budget was reached)\n");
    }
    text
}

/// The human form of a health reply.
pub fn health_text(reply: &pb::HealthCheckResponse) -> String {
    format!(
        "{} (healthy: {}, version {}, server time {})\n",
        reply.status,
        reply.healthy,
        reply.version,
        timestamp(reply.timestamp_nanos)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(timestamp(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(
            timestamp(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            timestamp(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(timestamp(-1_000_000_000), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn entity_renderings_show_the_parts() {
        let entity = pb::Entity {
            entity_id: "doc-1".into(),
            entity_type: "doc".into(),
            embeddings: vec![pb::VectorEmbedding {
                version: 2,
                vector: vec![1.0, 2.0, 3.0, 4.0, 5.0],
                timestamp_nanos: 0,
            }],
            outgoing_edges: vec![pb::GraphEdge {
                from_entity: "doc-1".into(),
                to_entity: "doc-2".into(),
                relation: "cites".into(),
                weight: 0.5,
                timestamp_nanos: 0,
                source_ids: Vec::new(),
            }],
            attributes: [("lang".to_owned(), "en".to_owned())].into(),
            ..Default::default()
        };
        let block = entity_block(&entity);
        assert!(block.starts_with("entity doc-1\n"), "{block}");
        assert!(block.contains("type: doc"), "{block}");
        assert!(block.contains("embedding v2: 5 dims [1.0000, 2.0000, 3.0000, 4.0000, ...]"));
        assert!(
            block.contains("out: -cites-> doc-2 (weight 0.5)"),
            "{block}"
        );
        assert!(block.contains("attributes: lang=en"), "{block}");
        assert_eq!(
            entity_line(&entity),
            "doc-1\ttype=doc\tdims=5\tout=1\tin=0\tattrs=1"
        );
    }

    #[test]
    fn paths_render_as_chains() {
        let edge = |relation: &str| pb::GraphEdge {
            relation: relation.into(),
            ..Default::default()
        };
        let path = pb::GraphPath {
            entity_ids: vec!["a".into(), "b".into(), "c".into()],
            edges: vec![edge("r"), edge("s")],
        };
        assert_eq!(path_text(Some(&path)), "a -r-> b -s-> c");
        assert_eq!(path_text(None), "");
    }

    #[test]
    fn context_nodes_show_paths_rebuilt_from_their_steps() {
        let node = |id: &str, hop: i32, step: Option<(u32, &str)>| pb::ContextNode {
            entity_id: id.into(),
            hop,
            step: step.map(|(parent, relation)| pb::ContextStep {
                parent,
                relation: relation.into(),
                weight: 1.0,
                reversed: false,
            }),
            ..Default::default()
        };
        let mut reply = pb::QueryResponse {
            context: Some(pb::QueryContext {
                nodes: vec![
                    node("a", 0, None),
                    node("b", 1, Some((0, "r"))),
                    node("c", 2, Some((1, "s"))),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let table = query_table(&reply);
        assert!(table.contains("  hop 2  c  a -r-> b -s-> c\n"), "{table}");
        assert!(table.contains("  hop 0  a  a\n"), "{table}");
        if let Some(context) = reply.context.as_mut() {
            context.nodes[1].step = Some(pb::ContextStep {
                parent: 5,
                ..Default::default()
            });
        }
        let table = query_table(&reply);
        assert!(
            table.contains("the reply's steps do not resolve"),
            "{table}"
        );
    }
}
