//! The data commands: `put`, `get`, `delete`, `query`, `scan`, `traverse`, `health`.
//!
//! Each command builds one request type of `allidb.AlliDB` from its flags, sends it through a
//! client from [`super::connect::connect`] and prints the reply with [`super::output`]. They do
//! not validate what the daemon validates (id rules, dimensions); the daemon's status comes back
//! as [`CliError::Rpc`]. Missing entities are a partial [`Outcome`], not an error.

use std::io::Read;
use std::path::PathBuf;

use allidb_api::pb;
use clap::{ArgGroup, Args, ValueEnum};

use super::connect::{Client, connect};
use super::error::{CliError, CliResult, Outcome};
use super::{Context, output, parse};

/// A vector flag value (`1,2,3`); a newtype so clap treats it as one value.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorArg(pub Vec<f32>);

fn vector_arg(text: &str) -> Result<VectorArg, String> {
    parse::vector(text).map(VectorArg)
}

/// How a hybrid query fuses its vector and text hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FusionArg {
    /// Reciprocal rank fusion (rank constant 60).
    Rrf,
    /// Distribution-based score fusion.
    Dbsf,
}

impl FusionArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        match self {
            FusionArg::Rrf => pb::Fusion::Rrf as i32,
            FusionArg::Dbsf => pb::Fusion::Dbsf as i32,
        }
    }
}

/// Which edges a traversal or expansion follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Outgoing edges.
    Out,
    /// Incoming edges, followed backwards.
    In,
    /// Both.
    Both,
}

impl DirectionArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let direction = match self {
            Self::Out => pb::Direction::Out,
            Self::In => pb::Direction::In,
            Self::Both => pb::Direction::Both,
        };
        direction as i32
    }
}

/// `allidb put`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "id"])))]
pub struct PutArgs {
    /// A JSON entity (the HTTP JSON `Entity` shape); `-` reads standard input.
    #[arg(conflicts_with_all = ["entity_type", "vector", "attributes", "edges", "importance"])]
    pub file: Option<PathBuf>,
    /// Entity id (builds the entity from flags).
    #[arg(long)]
    pub id: Option<String>,
    /// Entity type.
    #[arg(long = "type")]
    pub entity_type: Option<String>,
    /// Embedding, comma separated: `0.1,0.2,0.3`.
    #[arg(long, value_parser = vector_arg)]
    pub vector: Option<VectorArg>,
    /// Attribute `key=value` (repeatable).
    #[arg(long = "attr", value_parser = parse::attribute)]
    pub attributes: Vec<(String, String)>,
    /// Outgoing edge `relation:to[:weight]` (repeatable; weight 1 when omitted).
    #[arg(long = "edge", value_parser = parse::edge)]
    pub edges: Vec<pb::GraphEdge>,
    /// Importance in [0, 1].
    #[arg(long)]
    pub importance: Option<f64>,
    /// A source (document) that supports the entity (repeatable; added to a JSON file's).
    #[arg(long = "source")]
    pub source_ids: Vec<String>,
    /// Merge into the stored entity (`WRITE_MODE_MERGE_SOURCES`) instead of replacing it.
    #[arg(long)]
    pub merge: bool,
    /// Time to live in seconds: the entity expires this long after the write (`ttl_secs`;
    /// replaces a JSON file's expiry).
    #[arg(long = "ttl", value_name = "SECONDS", allow_negative_numbers = true)]
    pub ttl_secs: Option<i64>,
    /// Expiry time in seconds since the Unix epoch (`expires_at_nanos`; replaces a JSON file's
    /// expiry).
    #[arg(
        long,
        value_name = "UNIX_SECONDS",
        conflicts_with = "ttl_secs",
        allow_negative_numbers = true
    )]
    pub expires_at: Option<i64>,
}

impl PutArgs {
    /// The entity to write: read from the file, or built from the flags; `--ttl` or
    /// `--expires-at` set its expiry.
    pub fn entity(&self) -> CliResult<pb::Entity> {
        let mut entity = self.content()?;
        if let Some(ttl_secs) = self.ttl_secs {
            entity.ttl_secs = ttl_secs;
            entity.expires_at_nanos = 0;
        }
        if let Some(seconds) = self.expires_at {
            entity.expires_at_nanos = seconds.saturating_mul(1_000_000_000);
            entity.ttl_secs = 0;
        }
        Ok(entity)
    }

    /// The entity from the file or the flags, before the expiry flags.
    fn content(&self) -> CliResult<pb::Entity> {
        match (&self.file, &self.id) {
            (Some(path), _) => read_entity_json(path),
            (None, Some(id)) => Ok(pb::Entity {
                entity_id: id.clone(),
                entity_type: self.entity_type.clone().unwrap_or_default(),
                embeddings: self
                    .vector
                    .iter()
                    .map(|vector| pb::VectorEmbedding {
                        vector: vector.0.clone(),
                        ..Default::default()
                    })
                    .collect(),
                outgoing_edges: self.edges.clone(),
                attributes: self.attributes.iter().cloned().collect(),
                importance: self.importance.unwrap_or(0.0),
                ..Default::default()
            }),
            (None, None) => Err(CliError::input("put", "give a JSON file or --id")),
        }
    }
}

/// Reads one JSON entity from `path` (`-` = standard input).
fn read_entity_json(path: &PathBuf) -> CliResult<pb::Entity> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::io(path, source))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|source| CliError::io(path, source))?;
    }
    serde_json::from_str(&text).map_err(|error| CliError::input(path.display().to_string(), error))
}

/// `allidb get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Entity ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `allidb delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Entity ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `allidb query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Query vector, comma separated (optional with `--text`: a text-only query).
    #[arg(long, value_parser = vector_arg, required_unless_present = "text")]
    pub vector: Option<VectorArg>,
    /// Query text, searched by BM25 over the chunk texts and fused with `--vector` when both
    /// are given (hybrid search).
    #[arg(long)]
    pub text: Option<String>,
    /// How `--vector` and `--text` are fused (the daemon's default, RRF, when omitted).
    #[arg(long, value_enum, requires_all = ["vector", "text"])]
    pub fusion: Option<FusionArg>,
    /// Share of the lexical part in the fused relevance, in [0, 1] (default 0.5).
    #[arg(long, requires_all = ["vector", "text"])]
    pub lexical_weight: Option<f64>,
    /// Results wanted.
    #[arg(short, long, default_value_t = 10)]
    pub k: i32,
    /// ANN seeds per result (`expand_factor`); the daemon's default when omitted.
    #[arg(long)]
    pub expand: Option<i32>,
    /// Graph expansion depth (0 = none); the daemon's default when omitted.
    #[arg(long)]
    pub max_hops: Option<i32>,
    /// Relation the expansion follows (repeatable; all when omitted).
    #[arg(long = "relation")]
    pub relations: Vec<String>,
    /// Expansion direction.
    #[arg(long, value_enum, default_value_t = DirectionArg::Out)]
    pub direction: DirectionArg,
    /// Only entities of this type (repeatable: any of them).
    #[arg(long = "type")]
    pub entity_types: Vec<String>,
    /// Only entities with this attribute `key=value` (repeatable: all of them).
    #[arg(long = "attr", value_parser = parse::attribute)]
    pub attributes: Vec<(String, String)>,
    /// HNSW search breadth; the daemon's default when omitted.
    #[arg(long)]
    pub ef: Option<i32>,
    /// Show each result's score components and path.
    #[arg(long)]
    pub explain: bool,
    /// ANN seeds, apart from `-k` (default: k times the expand factor).
    #[arg(long)]
    pub seeds: Option<i32>,
    /// Also print the context: every entity the expansion visited (hop, path) and the edges
    /// between them.
    #[arg(long)]
    pub context: bool,
    /// With `--context`: print each context entity's text chunks.
    #[arg(long, requires = "context")]
    pub chunks: bool,
    /// Most entities the expansion visits (the daemon's `query.max_expansion_nodes` when omitted).
    #[arg(long)]
    pub max_nodes: Option<i32>,
    /// Most edges the expansion records.
    #[arg(long)]
    pub max_edges: Option<i32>,
    /// Per-entity fan-out of the expansion (default 16).
    #[arg(long)]
    pub fan_out: Option<i32>,
    /// Largest encoded context in bytes (default 1 MiB).
    #[arg(long, requires = "context")]
    pub max_context_bytes: Option<i32>,
    /// Rank by personalized PageRank from the seeds instead of the unified score.
    #[arg(long)]
    pub pagerank: bool,
    /// PageRank damping factor, in (0, 1) (default 0.85).
    #[arg(long, requires = "pagerank")]
    pub damping: Option<f64>,
    /// PageRank weight of the similarity term, in [0, 1] (default 0).
    #[arg(long, requires = "pagerank")]
    pub similarity_weight: Option<f64>,
}

impl QueryArgs {
    /// The request.
    pub fn request(&self, consistency: i32) -> pb::QueryRequest {
        let filter = (!self.entity_types.is_empty() || !self.attributes.is_empty()).then(|| {
            pb::QueryFilter {
                entity_types: self.entity_types.clone(),
                attributes: self.attributes.iter().cloned().collect(),
            }
        });
        pb::QueryRequest {
            query_vector: self
                .vector
                .as_ref()
                .map(|v| v.0.clone())
                .unwrap_or_default(),
            text: self.text.clone(),
            fusion: self.fusion.map_or(0, FusionArg::wire),
            lexical_weight: self.lexical_weight,
            k: self.k,
            expand_factor: self.expand.unwrap_or(0),
            consistency_level: consistency,
            filter,
            max_hops: self.max_hops,
            relations: self.relations.clone(),
            direction: self.direction.wire(),
            ef: self.ef.unwrap_or(0),
            explain: self.explain,
            seeds: self.seeds,
            include_context: self.context,
            context_chunks: self.chunks,
            max_nodes: self.max_nodes,
            max_edges: self.max_edges,
            max_fan_out: self.fan_out,
            max_context_bytes: self.max_context_bytes,
            scoring: if self.pagerank {
                pb::ScoringMode::ScoringPersonalizedPagerank as i32
            } else {
                pb::ScoringMode::ScoringUnified as i32
            },
            pagerank: self.pagerank.then(|| pb::PageRankOptions {
                damping: self.damping,
                similarity_weight: self.similarity_weight,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `allidb scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// First id (inclusive); from the beginning when omitted.
    #[arg(long)]
    pub start: Option<String>,
    /// End id (exclusive); to the end when omitted.
    #[arg(long)]
    pub end: Option<String>,
    /// Entities per page (the daemon's default when omitted; a server maximum applies).
    #[arg(long)]
    pub limit: Option<i32>,
    /// Follow page tokens until the range is exhausted.
    #[arg(long)]
    pub all: bool,
    /// Continue a previous scan from its page token.
    #[arg(long)]
    pub page_token: Option<String>,
}

/// `allidb traverse`.
#[derive(Debug, Args)]
pub struct TraverseArgs {
    /// Start entity ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Hops to follow (the daemon's default when omitted).
    #[arg(long)]
    pub max_hops: Option<i32>,
    /// Which edges to follow.
    #[arg(long, value_enum, default_value_t = DirectionArg::Out)]
    pub direction: DirectionArg,
    /// Relation to follow (repeatable; all when omitted).
    #[arg(long = "relation")]
    pub relations: Vec<String>,
    /// Follow only edges with at least this weight.
    #[arg(long, default_value_t = 0.0)]
    pub min_weight: f64,
    /// Stop after this many entities (the daemon's default when omitted).
    #[arg(long)]
    pub max_nodes: Option<i32>,
    /// Most edges followed from each entity, heaviest first (`--max-nodes` when omitted).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub fan_out: Option<i32>,
    /// Most edges recorded in the reply (no limit when omitted).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub max_edges: Option<i32>,
}

impl TraverseArgs {
    /// The request.
    pub fn request(&self, consistency: i32) -> pb::TraverseRequest {
        pb::TraverseRequest {
            start_ids: self.ids.clone(),
            max_hops: self.max_hops.unwrap_or(0),
            direction: self.direction.wire(),
            relations: self.relations.clone(),
            min_weight: self.min_weight,
            max_nodes: self.max_nodes.unwrap_or(0),
            max_fan_out: self.fan_out,
            max_edges: self.max_edges,
            consistency_level: consistency,
            ..Default::default()
        }
    }
}

/// `allidb put`: writes one entity.
pub async fn put(context: &mut Context, args: PutArgs) -> CliResult<Outcome> {
    let mut entity = args.entity()?;
    entity.source_ids.extend(args.source_ids.iter().cloned());
    let mode = match args.merge {
        true => pb::WriteMode::MergeSources,
        false => pb::WriteMode::Replace,
    };
    let mut client = connect(&context.connect).await?;
    let reply = client
        .put_entity(pb::PutEntityRequest {
            entity: Some(entity),
            consistency_level: context.consistency,
            mode: mode as i32,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("PutEntity", status))?
        .into_inner();
    if !reply.success {
        return Err(CliError::Rpc {
            rpc: "PutEntity",
            code: tonic::Code::Unknown,
            message: reply.error_message,
        });
    }
    context
        .printer
        .reply(&reply, |reply| format!("put {}\n", reply.entity_id))?;
    Ok(Outcome::Complete)
}

/// `allidb get`: reads entities; ids not found make the outcome partial.
pub async fn get(context: &mut Context, args: GetArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .get_entities(pb::GetEntitiesRequest {
            entity_ids: args.ids,
            consistency_level: context.consistency,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("GetEntities", status))?
        .into_inner();
    context.printer.reply(&reply, |reply| {
        let mut text: String = reply.entities.iter().map(output::entity_block).collect();
        for id in &reply.missing_ids {
            text.push_str(&format!("not found: {id}\n"));
        }
        text
    })?;
    Ok(Outcome::from_complete(reply.missing_ids.is_empty()))
}

/// `allidb delete`: deletes entities; ids that did not exist make the outcome partial.
pub async fn delete(context: &mut Context, args: DeleteArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let mut all_found = true;
    for id in args.ids {
        let reply = client
            .delete_entity(pb::DeleteEntityRequest {
                entity_id: id.clone(),
                consistency_level: context.consistency,
                ..Default::default()
            })
            .await
            .map_err(|status| CliError::rpc("DeleteEntity", status))?
            .into_inner();
        all_found &= reply.found;
        context.printer.reply(&reply, |reply| {
            if reply.found {
                format!("deleted {id}\n")
            } else {
                format!("not found: {id}\n")
            }
        })?;
    }
    Ok(Outcome::from_complete(all_found))
}

/// `allidb query`.
pub async fn query(context: &mut Context, args: QueryArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .query(args.request(context.consistency))
        .await
        .map_err(|status| CliError::rpc("Query", status))?
        .into_inner();
    context.printer.reply(&reply, output::query_table)?;
    Ok(Outcome::Complete)
}

/// Fetches one page of a range scan.
async fn scan_page(
    client: &mut Client,
    args: &ScanArgs,
    page_token: String,
) -> CliResult<pb::RangeScanResponse> {
    Ok(client
        .range_scan(pb::RangeScanRequest {
            start_key: args.start.clone().unwrap_or_default(),
            end_key: args.end.clone().unwrap_or_default(),
            limit: args.limit.unwrap_or(0),
            page_token,
            ..Default::default()
        })
        .await
        .map_err(|status| CliError::rpc("RangeScan", status))?
        .into_inner())
}

/// `allidb scan`: one entity per line (JSON lines with `--json`, readable by `allidb import`);
/// the next page token, when the scan stops early, goes to standard error.
pub async fn scan(context: &mut Context, args: ScanArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let mut page_token = args.page_token.clone().unwrap_or_default();
    loop {
        let page = scan_page(&mut client, &args, page_token).await?;
        for entity in &page.entities {
            context.printer.reply(entity, |entity| {
                let mut line = output::entity_line(entity);
                line.push('\n');
                line
            })?;
        }
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
        if !args.all {
            context.printer.flush()?;
            eprintln!("next page token: {page_token}");
            break;
        }
    }
    Ok(Outcome::Complete)
}

/// `allidb traverse`.
pub async fn traverse(context: &mut Context, args: TraverseArgs) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .traverse(args.request(context.consistency))
        .await
        .map_err(|status| CliError::rpc("Traverse", status))?
        .into_inner();
    context.printer.reply(&reply, output::traverse_table)?;
    Ok(Outcome::Complete)
}

/// `allidb health`: an unhealthy daemon makes the outcome partial.
pub async fn health(context: &mut Context) -> CliResult<Outcome> {
    let mut client = connect(&context.connect).await?;
    let reply = client
        .health_check(pb::HealthCheckRequest {})
        .await
        .map_err(|status| CliError::rpc("HealthCheck", status))?
        .into_inner();
    context.printer.reply(&reply, output::health_text)?;
    Ok(Outcome::from_complete(reply.healthy))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["allidb"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().command
    }

    #[test]
    fn put_flags_build_the_entity() {
        let Command::Put(args) = parse(&[
            "put",
            "--id",
            "doc-1",
            "--type",
            "doc",
            "--vector",
            "1,2,3",
            "--attr",
            "lang=en",
            "--edge",
            "cites:doc-2:0.5",
            "--edge",
            "links:doc-3",
            "--importance",
            "0.25",
        ]) else {
            panic!("not a put");
        };
        let entity = args.entity().unwrap();
        assert_eq!(entity.entity_id, "doc-1");
        assert_eq!(entity.entity_type, "doc");
        assert_eq!(entity.embeddings[0].vector, vec![1.0, 2.0, 3.0]);
        assert_eq!(entity.attributes["lang"], "en");
        assert_eq!(entity.outgoing_edges.len(), 2);
        assert_eq!(entity.outgoing_edges[1].weight, 1.0);
        assert_eq!(entity.importance, 0.25);
        assert_eq!((entity.ttl_secs, entity.expires_at_nanos), (0, 0));
    }

    #[test]
    fn put_sets_the_expiry_from_ttl_or_expires_at_but_not_both() {
        let put = |extra: &[&str]| {
            let mut argv = vec!["put", "--id", "s"];
            argv.extend_from_slice(extra);
            let Command::Put(args) = parse(&argv) else {
                panic!("not a put");
            };
            let entity = args.entity().unwrap();
            (entity.ttl_secs, entity.expires_at_nanos)
        };
        assert_eq!(put(&["--ttl", "30"]), (30, 0));
        assert_eq!(
            put(&["--ttl", "-1"]),
            (-1, 0),
            "the server names the bad value"
        );
        assert_eq!(
            put(&["--expires-at", "1700000000"]),
            (0, 1_700_000_000_000_000_000)
        );
        let both = [
            "allidb",
            "put",
            "--id",
            "s",
            "--ttl",
            "3",
            "--expires-at",
            "9",
        ];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn put_reads_a_json_file_and_refuses_mixing_it_with_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        std::fs::write(
            &path,
            r#"{"entity_id": "x", "embeddings": [{"vector": [0.5]}], "attributes": {"a": "b"}}"#,
        )
        .unwrap();
        let path_text = path.to_str().unwrap();
        let Command::Put(args) = parse(&["put", path_text]) else {
            panic!("not a put");
        };
        let entity = args.entity().unwrap();
        assert_eq!(
            (entity.entity_id.as_str(), entity.attributes["a"].as_str()),
            ("x", "b")
        );
        assert!(Cli::try_parse_from(["allidb", "put", path_text, "--type", "t"]).is_err());
        assert!(Cli::try_parse_from(["allidb", "put"]).is_err());

        std::fs::write(&path, "{not json").unwrap();
        let Command::Put(args) = parse(&["put", path_text]) else {
            panic!("not a put");
        };
        assert!(matches!(args.entity(), Err(CliError::Input { .. })));
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for argv in [
            &["allidb", "put", "--id", "a", "--vector", "1,x"][..],
            &["allidb", "put", "--id", "a", "--edge", "nocolon"],
            &["allidb", "query", "--vector", "NaN"],
            &["allidb", "traverse", "a", "--direction", "up"],
            &["allidb", "traverse", "a", "--fan-out", "0"],
            &["allidb", "traverse", "a", "--max-edges", "100001"],
            &["allidb", "traverse", "a", "--max-edges", "x"],
            &["allidb", "get"],
            &["allidb", "query"],
            &["allidb", "query", "--text", "a", "--fusion", "dbsf"],
            &[
                "allidb",
                "query",
                "--vector",
                "1",
                "--lexical-weight",
                "0.3",
            ],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn text_flags_build_a_hybrid_or_text_request() {
        let Command::Query(args) = parse(&[
            "query",
            "--vector",
            "1,0",
            "--text",
            "left-pad",
            "--fusion",
            "dbsf",
            "--lexical-weight",
            "0.25",
        ]) else {
            panic!("not a query");
        };
        let request = args.request(0);
        assert_eq!(request.query_vector, vec![1.0, 0.0]);
        assert_eq!(request.text.as_deref(), Some("left-pad"));
        assert_eq!(request.fusion, pb::Fusion::Dbsf as i32);
        assert_eq!(request.lexical_weight, Some(0.25));
        let Command::Query(text_only) = parse(&["query", "--text", "json parser"]) else {
            panic!("not a query");
        };
        let request = text_only.request(0);
        assert!(request.query_vector.is_empty());
        assert_eq!(request.text.as_deref(), Some("json parser"));
        assert_eq!((request.fusion, request.lexical_weight), (0, None));
    }

    #[test]
    fn query_flags_build_the_request() {
        let Command::Query(args) = parse(&[
            "query",
            "--vector",
            "1,0",
            "-k",
            "5",
            "--expand",
            "3",
            "--max-hops",
            "0",
            "--type",
            "doc",
            "--attr",
            "lang=en",
            "--direction",
            "both",
            "--explain",
        ]) else {
            panic!("not a query");
        };
        let request = args.request(pb::ConsistencyLevel::ConsistencyAll as i32);
        assert_eq!(request.query_vector, vec![1.0, 0.0]);
        assert_eq!((request.k, request.expand_factor), (5, 3));
        assert_eq!(request.max_hops, Some(0));
        assert_eq!(request.direction, pb::Direction::Both as i32);
        assert!(request.explain);
        let filter = request.filter.unwrap();
        assert_eq!(filter.entity_types, vec!["doc".to_owned()]);
        assert_eq!(filter.attributes["lang"], "en");
        assert_eq!(request.consistency_level, 2);

        let Command::Query(plain) = parse(&["query", "--vector", "1"]) else {
            panic!("not a query");
        };
        let request = plain.request(0);
        assert_eq!(
            (request.k, request.max_hops, request.filter),
            (10, None, None)
        );
        assert!(!request.include_context && request.pagerank.is_none());
        assert_eq!((request.seeds, request.max_fan_out), (None, None));
        assert_eq!(request.scoring, pb::ScoringMode::ScoringUnified as i32);

        let Command::Query(graph_rag) = parse(&[
            "query",
            "--vector",
            "1",
            "--seeds",
            "10",
            "--context",
            "--chunks",
            "--fan-out",
            "8",
            "--max-nodes",
            "200",
            "--max-edges",
            "500",
            "--pagerank",
            "--damping",
            "0.5",
        ]) else {
            panic!("not a query");
        };
        let request = graph_rag.request(0);
        assert_eq!(request.seeds, Some(10));
        assert!(request.include_context && request.context_chunks);
        assert_eq!(
            (request.max_fan_out, request.max_nodes, request.max_edges),
            (Some(8), Some(200), Some(500))
        );
        assert_eq!(
            request.scoring,
            pb::ScoringMode::ScoringPersonalizedPagerank as i32
        );
        assert_eq!(request.pagerank.unwrap().damping, Some(0.5));
    }

    #[test]
    fn traverse_flags_build_the_request() {
        let Command::Traverse(args) = parse(&[
            "traverse",
            "a",
            "b",
            "--max-hops",
            "2",
            "--relation",
            "cites",
            "--max-nodes",
            "300",
            "--fan-out",
            "8",
            "--max-edges",
            "500",
        ]) else {
            panic!("not a traverse");
        };
        let request = args.request(pb::ConsistencyLevel::ConsistencyAll as i32);
        assert_eq!(request.start_ids, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!((request.max_hops, request.max_nodes), (2, 300));
        assert_eq!(request.relations, vec!["cites".to_owned()]);
        assert_eq!(
            (request.max_fan_out, request.max_edges),
            (Some(8), Some(500))
        );
        assert_eq!(request.consistency_level, 2);

        let Command::Traverse(plain) = parse(&["traverse", "a"]) else {
            panic!("not a traverse");
        };
        let request = plain.request(0);
        assert_eq!((request.max_fan_out, request.max_edges), (None, None));
        assert_eq!((request.max_hops, request.max_nodes), (0, 0));
    }
}
