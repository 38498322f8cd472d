//! End-to-end tests of the admin server (`server.admin_addr`): liveness, readiness (also while
//! shutting down), Prometheus metrics after real traffic, the bounded series count under
//! traffic from 10,000 distinct tenants and ids, and request spans in JSON logs.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::{Daemon, doc_entity, http_get, http_get_with_headers, key_line, request};
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

const WRITER: &str = "metrics-writer-key";

/// One sample line of the text format: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A series' labels other than `le`, sorted by name.
type Labels = Vec<(String, String)>;

/// A scrape parsed as the Prometheus text format (0.0.4).
#[derive(Debug)]
struct Scrape {
    /// Family name -> type (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

/// Parses the labels after a `{` up to the closing `}` (escapes `\\`, `\"`, `\n` in values);
/// returns them and the text after the `}`.
fn parse_labels<'a>(mut rest: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after_key) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after_key[end + 1..];
    }
}

/// Parses one sample line: `name{a="x",b="y"} value` or `name value`.
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad metric name in {line:?}"
    );
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(inner) => parse_labels(inner, line),
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value {text:?} in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The family a sample belongs to (histogram and summary samples carry suffixes).
fn family_of<'a>(types: &BTreeMap<String, String>, name: &'a str) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.contains_key(base)
        {
            return base;
        }
    }
    panic!("sample {name} has no # TYPE line")
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_whitespace().collect();
                if words.first() == Some(&"TYPE") {
                    assert_eq!(words.len(), 3, "bad TYPE line {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&words[2]),
                        "bad type in {line:?}"
                    );
                    let previous = types.insert(words[1].to_owned(), words[2].to_owned());
                    assert!(previous.is_none(), "family {} typed twice", words[1]);
                }
                continue;
            }
            samples.push(parse_sample(line));
        }
        for sample in &samples {
            let family = family_of(&types, &sample.name);
            if types[family] == "counter" {
                assert!(sample.value >= 0.0, "negative counter {sample:?}");
            }
        }
        let scrape = Scrape { types, samples };
        scrape.check_histograms();
        scrape
    }

    /// Every histogram series: cumulative buckets ending at `+Inf` equal to `_count`.
    fn check_histograms(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let bucket_name = format!("{family}_bucket");
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for sample in self.samples.iter().filter(|s| s.name == bucket_name) {
                let mut labels = sample.labels.clone();
                let le = labels.remove("le").expect("a bucket has le");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("a numeric le")
                };
                series
                    .entry(labels.into_iter().collect())
                    .or_default()
                    .push((bound, sample.value));
            }
            for (labels, buckets) in series {
                assert!(
                    buckets
                        .windows(2)
                        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                    "{family} {labels:?}: buckets not cumulative {buckets:?}"
                );
                let (last_bound, last_count) = *buckets.last().expect("buckets");
                assert_eq!(last_bound, f64::INFINITY, "{family} {labels:?}");
                let labels: BTreeMap<String, String> = labels.into_iter().collect();
                let count = self.value(&format!("{family}_count"), &labels);
                assert_eq!(count, Some(last_count), "{family} {labels:?}");
            }
        }
    }

    /// The value of the series `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map(|s| s.value)
    }

    /// The value of `name{labels}`, 0 when the series does not exist yet.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.value(name, &labels).unwrap_or(0.0)
    }

    /// The sum of every series of `name` (over all label values).
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn admin_addr(daemon: &Daemon) -> std::net::SocketAddr {
    daemon
        .admin_addr
        .expect("allidbd prints the admin address before ready")
}

fn scrape(daemon: &Daemon) -> (Scrape, usize) {
    let (status, body) = http_get(admin_addr(daemon), "/metrics");
    assert_eq!(status, 200, "{body}");
    let series = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    (Scrape::parse(&body), series)
}

async fn put(client: &mut Client, key: &str, id: &str, vector: &[f32], trace_id: &str) {
    client
        .put_entity(request(
            pb::PutEntityRequest {
                entity: Some(doc_entity(id, vector)),
                trace_id: trace_id.to_owned(),
                ..Default::default()
            },
            Some(key),
        ))
        .await
        .expect("the put succeeds");
}

async fn query(client: &mut Client, key: &str, vector: &[f32], trace_id: &str) -> usize {
    client
        .query(request(
            pb::QueryRequest {
                query_vector: vector.to_vec(),
                k: 5,
                trace_id: trace_id.to_owned(),
                ..Default::default()
            },
            Some(key),
        ))
        .await
        .expect("the query succeeds")
        .into_inner()
        .results
        .len()
}

/// A daemon with auth on and `WRITER` (tenant `acme`) plus `extra` key lines.
fn start_with_keys(extra_keys: &str, config: &str) -> Daemon {
    let key_file = tempfile::NamedTempFile::new().expect("a key file");
    std::fs::write(
        key_file.path(),
        format!("{}{extra_keys}", key_line(WRITER, "acme", "write")),
    )
    .expect("the key file is written");
    let daemon = Daemon::start(&format!(
        "[auth]\nenabled = true\nkey_file = {:?}\n\n{config}",
        key_file.path()
    ));
    // The daemon read the keys at startup; the file may go.
    drop(key_file);
    daemon
}

#[tokio::test]
async fn health_readiness_and_metrics_after_traffic() {
    let daemon = start_with_keys("", "[storage]\ndurability = \"sync\"\n");
    let admin = admin_addr(&daemon);
    assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(admin, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(admin, "/nope").0, 404);

    let (before, _) = scrape(&daemon);
    let put_ok = [("code", "OK"), ("rpc", "PutEntity"), ("transport", "grpc")];
    let mut client = daemon.client().await;
    const PUTS: usize = 7;
    for i in 0..PUTS {
        put(
            &mut client,
            WRITER,
            &format!("e{i}"),
            &[1.0, i as f32, 0.5],
            "",
        )
        .await;
    }
    assert_eq!(query(&mut client, WRITER, &[1.0, 0.0, 0.5], "q-1").await, 5);
    let refused = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: "e0".to_owned(),
                ..Default::default()
            },
            Some("not-a-key"),
        ))
        .await
        .expect_err("an unknown key is refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let http = daemon.http_addr.expect("allidbd serves HTTP");
    // A gateway read; its route template is the label, not the path.
    let (status, _) = http_get_with_headers(http, "/entity/e3", &[("x-allidb-api-key", WRITER)]);
    assert_eq!(status, 200);

    let (after, _) = scrape(&daemon);
    assert_eq!(
        after.get("allidb_rpc_requests_total", &put_ok)
            - before.get("allidb_rpc_requests_total", &put_ok),
        PUTS as f64,
        "the PutEntity OK counter counts exactly the calls"
    );
    assert_eq!(
        after.get("allidb_rpc_request_duration_seconds_count", &put_ok),
        after.get("allidb_rpc_requests_total", &put_ok)
    );
    assert_eq!(
        after.get(
            "allidb_rpc_requests_total",
            &[
                ("code", "UNAUTHENTICATED"),
                ("rpc", "GetEntity"),
                ("transport", "grpc")
            ]
        ),
        1.0
    );
    assert_eq!(
        after.get(
            "allidb_rpc_requests_total",
            &[("code", "OK"), ("rpc", "GetEntity"), ("transport", "http")]
        ),
        1.0,
        "gateway calls are counted per RPC with transport http"
    );
    assert_eq!(
        after.get(
            "allidb_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/entity/{entity_id}"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(after.get("allidb_failed_authentications_total", &[]), 1.0);
    assert!(after.get("allidb_wal_fsync_seconds_count", &[]) > 0.0);
    assert!(after.get("allidb_wal_append_seconds_count", &[]) >= PUTS as f64);
    let groups = after.get("allidb_wal_group_batches_count", &[]);
    assert!(groups > 0.0);
    assert!(after.get("allidb_wal_group_batches_sum", &[]) >= PUTS as f64);
    assert!(after.get("allidb_memtable_bytes", &[]) > 0.0);
    assert_eq!(after.get("allidb_store_ready", &[]), 1.0);
    for stage in ["ann_search", "expansion", "scoring"] {
        assert_eq!(
            after.get("allidb_query_stage_seconds_count", &[("stage", stage)]),
            1.0,
            "stage {stage}"
        );
    }
    assert_eq!(after.get("allidb_sstables", &[("level", "0")]), 0.0);
    assert!(
        after.sum("allidb_vector_index_vectors") + after.sum("allidb_vector_index_pending")
            >= PUTS as f64
    );
    assert_eq!(after.get("allidb_vector_index_tenants", &[]), 1.0);
    let ratio = after.get("allidb_block_cache_hit_ratio", &[]);
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");

    for family in [
        "allidb_rpc_requests_total",
        "allidb_rpc_request_duration_seconds",
        "allidb_http_requests_total",
        "allidb_http_request_duration_seconds",
        "allidb_wal_append_seconds",
        "allidb_wal_fsync_seconds",
        "allidb_wal_group_batches",
        "allidb_memtable_bytes",
        "allidb_immutable_memtables",
        "allidb_sstables",
        "allidb_sstable_bytes",
        "allidb_flushes_total",
        "allidb_flush_bytes_total",
        "allidb_compactions_total",
        "allidb_compaction_read_bytes_total",
        "allidb_compaction_write_bytes_total",
        "allidb_write_stalls_total",
        "allidb_write_slowdowns_total",
        "allidb_block_cache_hits_total",
        "allidb_block_cache_misses_total",
        "allidb_block_cache_hit_ratio",
        "allidb_vector_index_vectors",
        "allidb_vector_index_pending",
        "allidb_vector_index_tenants",
        "allidb_vector_index_max_stale_ratio",
        "allidb_vector_index_rebuilds_total",
        "allidb_index_apply_errors_total",
        "allidb_query_stage_seconds",
        "allidb_failed_authentications_total",
        "allidb_store_ready",
    ] {
        assert!(after.types.contains_key(family), "family {family} missing");
    }
    let histograms = [
        "allidb_rpc_request_duration_seconds",
        "allidb_wal_fsync_seconds",
        "allidb_wal_group_batches",
        "allidb_query_stage_seconds",
    ];
    for family in histograms {
        assert_eq!(after.types[family], "histogram", "{family}");
    }
}

#[tokio::test]
async fn readiness_turns_unavailable_while_shutting_down() {
    let mut daemon = Daemon::start("[server]\nshutdown_timeout_secs = 20\n");
    let admin = admin_addr(&daemon);
    assert_eq!(http_get(admin, "/readyz").0, 200);
    // A client stream that stays open keeps the daemon draining after SIGTERM.
    let mut client = daemon.client().await;
    let (chunks, stream) = tokio::sync::mpsc::channel::<pb::BulkPutEntitiesRequest>(1);
    let bulk = tokio::spawn(async move {
        client
            .bulk_put_entities(tokio_stream::wrappers::ReceiverStream::new(stream))
            .await
    });
    chunks
        .send(pb::BulkPutEntitiesRequest {
            entities: vec![doc_entity("in-flight", &[1.0, 0.0])],
            ..Default::default()
        })
        .await
        .expect("the stream is open");
    // The first chunk is written once the call is in the daemon.
    let mut reader = daemon.client().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = reader
            .get_entity(request(
                pb::GetEntityRequest {
                    entity_id: "in-flight".to_owned(),
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("the get succeeds")
            .into_inner()
            .found;
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "the bulk call never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = libc::pid_t::try_from(daemon.pid().expect("running")).expect("pids fit pid_t");
    // SAFETY: `pid` is our own running child, not yet reaped, so it names no other process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(admin, "/readyz");
        if status == 503 {
            assert_eq!(body, "stopping\n");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(admin, "/healthz").0, 200, "alive while draining");
    drop(chunks);
    let reply = bulk.await.expect("the bulk task");
    assert_eq!(
        reply
            .expect("the in-flight stream finishes")
            .into_inner()
            .success_count,
        1
    );
    assert!(daemon.stop().success());
}

const TENANTS: usize = 10_000;

fn tenant_key(i: usize) -> String {
    format!("tenant-key-{i}")
}

/// Traffic of tenant `i`: a put and a get over gRPC, and for every tenth tenant a query and a
/// get over HTTP, each with its own entity id and trace id.
async fn tenant_traffic(channel: Channel, http: std::net::SocketAddr, i: usize) {
    let mut client = AlliDbClient::new(channel);
    let key = tenant_key(i);
    let id = format!("entity-{i}");
    put(
        &mut client,
        &key,
        &id,
        &[1.0, i as f32],
        &format!("trace-{i}"),
    )
    .await;
    let found = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: id.clone(),
                trace_id: format!("trace-get-{i}"),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .expect("the get succeeds");
    assert!(found.into_inner().found);
    if i.is_multiple_of(10) {
        query(&mut client, &key, &[1.0, 0.0], &format!("trace-q-{i}")).await;
        let path = format!("/entity/{id}");
        let trace_id = format!("trace-http-{i}");
        let (status, body) = tokio::task::spawn_blocking(move || {
            http_get_with_headers(
                http,
                &path,
                &[("x-allidb-api-key", &key), ("x-trace-id", &trace_id)],
            )
        })
        .await
        .expect("the HTTP task");
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_do_not_grow_with_tenants_and_ids() {
    let keys: String = (0..TENANTS)
        .map(|i| key_line(&tenant_key(i), &format!("tenant{i:05}"), "write"))
        .collect();
    let daemon = start_with_keys(&keys, "[storage]\ndurability = \"buffered\"\n");
    let channel = daemon.channel().await;
    let http = daemon.http_addr.expect("allidbd serves HTTP");

    const WARM_UP: usize = 20;
    for i in 0..WARM_UP {
        tenant_traffic(channel.clone(), http, i).await;
    }
    let (_, baseline) = scrape(&daemon);

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut next = WARM_UP;
    while next < TENANTS || !calls.is_empty() {
        while next < TENANTS && calls.len() < 32 {
            calls.spawn(tenant_traffic(channel.clone(), http, next));
            next += 1;
        }
        if let Some(done) = calls.join_next().await {
            done.expect("tenant traffic succeeds");
        }
    }
    let traffic_took = started.elapsed();

    let (after, series) = scrape(&daemon);
    assert!(
        series <= baseline + 5,
        "series grew from {baseline} to {series} after {TENANTS} tenants ({traffic_took:?})"
    );
    assert_eq!(
        after.get(
            "allidb_rpc_requests_total",
            &[("code", "OK"), ("rpc", "PutEntity"), ("transport", "grpc")]
        ),
        TENANTS as f64
    );
    assert_eq!(
        after.get("allidb_vector_index_tenants", &[]),
        TENANTS as f64,
        "every tenant has an index: the traffic really had {TENANTS} tenants"
    );
    let label_values: HashSet<&str> = after
        .samples
        .iter()
        .flat_map(|s| s.labels.values().map(String::as_str))
        .collect();
    for value in label_values {
        assert!(
            !value.contains("tenant") && !value.contains("entity-") && !value.contains("trace"),
            "a label value names a tenant, id or trace: {value:?}"
        );
    }
}

#[tokio::test]
async fn json_logs_carry_the_trace_id_on_request_and_stage_spans() {
    let daemon = start_with_keys(
        "",
        "[log]\nformat = \"json\"\nlevel = \"info,allidb=debug\"\n",
    );
    let mut client = daemon.client().await;
    put(&mut client, WRITER, "a", &[1.0, 0.0], "").await;
    assert_eq!(query(&mut client, WRITER, &[1.0, 0.0], "t-123").await, 1);
    let http = daemon.http_addr.expect("allidbd serves HTTP");
    let headers = [("x-allidb-api-key", WRITER), ("X-Trace-Id", "h-456")];
    let (status, _) = http_get_with_headers(http, "/entity/a", &headers);
    assert_eq!(status, 200);

    // Lines with their span list: [{name, fields...}, ...], root first.
    let spans_of =
        |line: &Value| -> Vec<Value> { line["spans"].as_array().cloned().unwrap_or_default() };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log();
        let lines: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        assert!(!lines.is_empty(), "no JSON log line in:\n{log}");
        let in_query_stage = lines.iter().any(|line| {
            let spans = spans_of(line);
            spans
                .iter()
                .any(|s| s["name"] == "rpc" && s["rpc"] == "Query" && s["trace_id"] == "t-123")
                && spans
                    .iter()
                    .any(|s| s["name"] == "query_stage" && s["stage"] == "ann_search")
        });
        let finished = lines.iter().any(|line| {
            line["fields"]["message"] == "request finished"
                && line["span"]["trace_id"] == "t-123"
                && line["fields"]["code"] == "OK"
        });
        let via_header = lines.iter().any(|line| {
            spans_of(line).iter().any(|s| {
                s["name"] == "rpc"
                    && s["rpc"] == "GetEntity"
                    && s["transport"] == "http"
                    && s["trace_id"] == "h-456"
            })
        });
        if in_query_stage && finished && via_header {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stage span {in_query_stage}, finish line {finished}, header trace id {via_header}; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls tonic answers before the service (here: a message over `server.max_request_bytes`)
/// are counted like every other call, and calls the service answers are counted once.
#[tokio::test]
async fn calls_refused_before_the_service_are_counted_once() {
    let daemon = Daemon::start("[server]\nmax_request_bytes = 65536\n");
    let mut client = daemon.client().await;
    let (before, _) = scrape(&daemon);
    let mut huge = doc_entity("huge", &[1.0, 0.0, 0.0]);
    huge.chunks.push(pb::TextChunk {
        chunk_id: "c".into(),
        text: "x".repeat(100_000),
        ..Default::default()
    });
    let put = |entity: pb::Entity| pb::PutEntityRequest {
        entity: Some(entity),
        ..Default::default()
    };
    let refused = client
        .put_entity(put(huge))
        .await
        .expect_err("the message is over the limit");
    assert_eq!(refused.code(), Code::OutOfRange, "{}", refused.message());
    client
        .put_entity(put(doc_entity("ok", &[1.0, 0.0, 0.0])))
        .await
        .expect("a small put succeeds");
    let invalid = client
        .put_entity(put(doc_entity("nan", &[f32::NAN, 0.0, 0.0])))
        .await
        .expect_err("NaN is refused by the service");
    assert_eq!(invalid.code(), Code::InvalidArgument);

    let (after, _) = scrape(&daemon);
    for (code, expected) in [
        ("OUT_OF_RANGE", 1.0),
        ("OK", 1.0),
        ("INVALID_ARGUMENT", 1.0),
    ] {
        let labels = [("code", code), ("rpc", "PutEntity"), ("transport", "grpc")];
        assert_eq!(
            after.get("allidb_rpc_requests_total", &labels)
                - before.get("allidb_rpc_requests_total", &labels),
            expected,
            "PutEntity {code}"
        );
        assert_eq!(
            after.get("allidb_rpc_request_duration_seconds_count", &labels),
            after.get("allidb_rpc_requests_total", &labels),
            "PutEntity {code}: one duration sample per call"
        );
    }
}
