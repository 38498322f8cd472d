//! End-to-end tests of the `allidb` CLI: the real binary against a real `allidbd` (harness in
//! `tests/src/lib.rs`). They check what a user sees: output, JSON replies, exit codes (0 complete,
//! 1 error, 3 partial), import summaries and benchmark reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use allidb_tests::{Daemon, allidbd_binary, key_line};
use serde_json::Value;

/// The `allidb` binary, built next to `allidbd` (the harness builds every binary of allidb-cmd).
fn allidb_binary() -> PathBuf {
    let binary = allidbd_binary().with_file_name("allidb");
    assert!(binary.exists(), "{} does not exist", binary.display());
    binary
}

/// What one CLI run produced.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code().expect("allidb exits, not killed"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts the exit code, showing the output otherwise.
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout as JSON lines.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "one JSON document: {}", self.stdout);
        lines.remove(0)
    }
}

/// A CLI command pointed at `addr`, with no `ALLIDB_*` variable from the test environment.
fn allidb_command(addr: &str, args: &[&str]) -> Command {
    let mut command = Command::new(allidb_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    command.arg("--addr").arg(addr).args(args);
    command
}

fn allidb(daemon: &Daemon, args: &[&str]) -> Run {
    let output = allidb_command(&daemon.grpc_url(), args)
        .stdin(Stdio::null())
        .output()
        .expect("allidb runs");
    Run::from_output(output)
}

fn allidb_with_stdin(daemon: &Daemon, args: &[&str], input: &str) -> Run {
    let mut child = allidb_command(&daemon.grpc_url(), args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("allidb runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    Run::from_output(child.wait_with_output().expect("allidb exits"))
}

fn ids_of(entities: &[Value]) -> Vec<&str> {
    entities
        .iter()
        .map(|entity| entity["entity_id"].as_str().expect("an entity id"))
        .collect()
}

#[test]
fn data_commands_round_trip() {
    let daemon = Daemon::start("");

    let health = allidb(&daemon, &["health"]).expect(0);
    assert!(health.stdout.contains("healthy"), "{}", health.stdout);
    let health = allidb(&daemon, &["health", "--json"]).expect(0).json();
    assert_eq!(health["healthy"], Value::Bool(true));

    // Three ways to put: flags, a JSON file, standard input.
    let put = allidb(
        &daemon,
        &[
            "put",
            "--id",
            "a",
            "--type",
            "doc",
            "--vector",
            "1,0,0",
            "--attr",
            "lang=en",
            "--edge",
            "cites:b:0.5",
        ],
    )
    .expect(0);
    assert_eq!(put.stdout.trim(), "put a");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let b_json = dir.path().join("b.json");
    std::fs::write(
        &b_json,
        r#"{"entity_id": "b", "entity_type": "note", "embeddings": [{"vector": [0, 1, 0]}],
            "outgoing_edges": [{"to_entity": "c", "relation": "links", "weight": 1.0}]}"#,
    )
    .expect("the file is written");
    allidb(&daemon, &["put", b_json.to_str().expect("UTF-8 path")]).expect(0);
    allidb_with_stdin(
        &daemon,
        &["put", "-"],
        r#"{"entity_id": "c", "entity_type": "doc", "embeddings": [{"vector": [0, 0, 1]}]}"#,
    )
    .expect(0);

    // get: JSON replies carry both edge sides; missing ids are a partial outcome.
    let got = allidb(&daemon, &["--json", "get", "a", "b"])
        .expect(0)
        .json();
    let entities = got["entities"].as_array().expect("entities");
    assert_eq!(ids_of(entities), ["a", "b"]);
    assert_eq!(entities[0]["attributes"]["lang"], "en");
    assert_eq!(entities[0]["outgoing_edges"][0]["to_entity"], "b");
    assert_eq!(entities[1]["incoming_edges"][0]["from_entity"], "a");
    let human = allidb(&daemon, &["get", "a"]).expect(0);
    assert!(human.stdout.starts_with("entity a\n"), "{}", human.stdout);
    assert!(
        human.stdout.contains("out: -cites-> b (weight 0.5)"),
        "{}",
        human.stdout
    );
    let missing = allidb(&daemon, &["get", "a", "nope"]).expect(3);
    assert!(
        missing.stdout.contains("not found: nope"),
        "{}",
        missing.stdout
    );

    // query: nearest first, filters applied, explain shows components.
    let reply = allidb(
        &daemon,
        &[
            "--json",
            "query",
            "--vector",
            "1,0.1,0",
            "-k",
            "3",
            "--max-hops",
            "0",
        ],
    )
    .expect(0)
    .json();
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results[0]["entity_id"], "a");
    assert_eq!(results.len(), 3);
    let filtered = allidb(
        &daemon,
        &[
            "--json",
            "query",
            "--vector",
            "0,1,0",
            "--max-hops",
            "0",
            "--type",
            "doc",
        ],
    )
    .expect(0)
    .json();
    let filtered_ids: Vec<&str> = filtered["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["entity_id"].as_str().expect("an id"))
        .collect();
    assert!(
        !filtered_ids.contains(&"b") && filtered_ids.len() == 2,
        "{filtered_ids:?}"
    );
    let by_attr = allidb(
        &daemon,
        &["--json", "query", "--vector", "0,0,1", "--attr", "lang=en"],
    )
    .expect(0)
    .json();
    assert_eq!(by_attr["results"].as_array().expect("results").len(), 1);
    let explained = allidb(
        &daemon,
        &["query", "--vector", "1,0,0", "-k", "1", "--explain"],
    )
    .expect(0);
    assert!(explained.stdout.contains("vector "), "{}", explained.stdout);
    assert!(
        explained.stdout.contains("  a  doc"),
        "{}",
        explained.stdout
    );

    // scan: one page with a token on stderr; --all --json = every entity as a JSON line.
    let page = allidb(&daemon, &["scan", "--limit", "2"]).expect(0);
    assert_eq!(page.stdout.lines().count(), 2, "{}", page.stdout);
    assert!(page.stdout.starts_with("a\ttype=doc"), "{}", page.stdout);
    assert!(page.stderr.contains("next page token: "), "{}", page.stderr);
    let all = allidb(&daemon, &["--json", "scan", "--all", "--limit", "1"]).expect(0);
    assert_eq!(ids_of(&all.json_lines()), ["a", "b", "c"]);
    let ranged = allidb(&daemon, &["--json", "scan", "--start", "b", "--end", "c"]).expect(0);
    assert_eq!(ids_of(&ranged.json_lines()), ["b"]);

    // traverse: a -> b -> c.
    let walk = allidb(&daemon, &["--json", "traverse", "a", "--max-hops", "2"])
        .expect(0)
        .json();
    let nodes = walk["nodes"].as_array().expect("nodes");
    let reached: Vec<(&str, i64)> = nodes
        .iter()
        .map(|n| {
            (
                n["entity_id"].as_str().expect("id"),
                n["depth"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(reached, [("a", 0), ("b", 1), ("c", 2)]);
    let human_walk = allidb(&daemon, &["traverse", "a", "--max-hops", "2"]).expect(0);
    assert!(
        human_walk.stdout.contains("2  c  a -cites-> b -links-> c"),
        "{}",
        human_walk.stdout
    );
    let relation = allidb(
        &daemon,
        &[
            "--json",
            "traverse",
            "a",
            "--max-hops",
            "2",
            "--relation",
            "cites",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(relation["nodes"].as_array().expect("nodes").len(), 2);

    // delete: gone from get and scan; deleting again is a partial outcome.
    assert_eq!(
        allidb(&daemon, &["delete", "a"]).expect(0).stdout.trim(),
        "deleted a"
    );
    allidb(&daemon, &["get", "a"]).expect(3);
    assert_eq!(
        allidb(&daemon, &["delete", "a"]).expect(3).stdout.trim(),
        "not found: a"
    );
    let after = allidb(&daemon, &["--json", "scan", "--all"]).expect(0);
    assert_eq!(ids_of(&after.json_lines()), ["b", "c"]);

    // Errors: the daemon's status (exit 1), bad flags (exit 2), no daemon (exit 1).
    let wrong_dim = allidb(&daemon, &["query", "--vector", "1,0"]).expect(1);
    assert!(
        wrong_dim.stderr.contains("InvalidArgument"),
        "{}",
        wrong_dim.stderr
    );
    allidb(&daemon, &["put", "--id", "x", "--vector", "1,zz"]).expect(2);
    let closed = Command::new(allidb_binary())
        .args(["--addr", "http://127.0.0.1:1", "health"])
        .output()
        .expect("allidb runs");
    let closed = Run::from_output(closed).expect(1);
    assert!(
        closed.stderr.contains("cannot connect"),
        "{}",
        closed.stderr
    );
}

#[test]
fn the_api_key_authenticates_and_is_never_printed() {
    let key = "cli-test-key-0123456789";
    let keys = key_line(key, "tenant-a", "write");
    let daemon = Daemon::start_with_env("[auth]\nenabled = true\n", &[("ALLIDB_API_KEYS", &keys)]);

    let denied = allidb(&daemon, &["get", "a"]).expect(1);
    assert!(
        denied.stderr.contains("Unauthenticated"),
        "{}",
        denied.stderr
    );
    // Health needs no key.
    allidb(&daemon, &["health"]).expect(0);

    let with_flag = allidb(
        &daemon,
        &["--api-key", key, "put", "--id", "a", "--vector", "1,2"],
    )
    .expect(0);
    let output = allidb_command(&daemon.grpc_url(), &["get", "a"])
        .env("ALLIDB_API_KEY", key)
        .output()
        .expect("allidb runs");
    let with_env = Run::from_output(output).expect(0);
    assert!(with_env.stdout.contains("entity a"), "{}", with_env.stdout);
    let wrong = allidb(&daemon, &["--api-key", "wrong-key", "get", "a"]).expect(1);
    let help = allidb_command(&daemon.grpc_url(), &["--help"])
        .env("ALLIDB_API_KEY", key)
        .output()
        .expect("allidb runs");
    let help = Run::from_output(help).expect(0);
    for run in [&with_flag, &with_env, &denied, &wrong, &help] {
        assert!(
            !run.stdout.contains(key) && !run.stderr.contains(key),
            "the key leaked"
        );
    }
}

/// Writes `lines` as a JSON-lines file.
fn write_lines(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("the file is written");
}

#[test]
fn import_counts_good_and_bad_lines() {
    let daemon = Daemon::start("");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("entities.jsonl");
    write_lines(
        &file,
        &[
            r#"{"entity_id": "e1", "embeddings": [{"vector": [1, 0]}]}"#,
            r#"{"entity_id": "e2", "embeddings": [{"vector": [0, 1]}], "attributes": {"k": "v"}}"#,
            r#"{"entity_id": "e3", "embeddings": [{"vector": [1, "#, // line 3: broken JSON
            "",                                                      // line 4: blank, skipped
            r#"{"entity_id": "e5", "embeddings": [{"vector": [1, 1]}]}"#,
            r#"{"entity_id": "e6", "embeddings": [{"vector": [1, 2, 3]}]}"#, // line 6: wrong dimension
            r#"{"entity_id": "e7", "outgoing_edges": [{"to_entity": "e1", "relation": "r"}]}"#,
            r#"{"entity_id": "", "entity_type": "no id"}"#, // line 8: empty id
            r#"{"entity_id": "e9", "embeddings": [{"vector": [2, 1]}]}"#,
        ],
    );
    let path = file.to_str().expect("UTF-8 path");
    let run = allidb(&daemon, &["--json", "import", path, "--batch-size", "2"]).expect(3);
    let summary = run.json();
    assert_eq!(summary["written"], 5, "{summary}");
    assert_eq!(summary["failed"], 3, "{summary}");
    assert_eq!(summary["lines"], 9, "{summary}");
    let failed_lines: Vec<i64> = summary["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["line"].as_i64().expect("a line number"))
        .collect();
    assert_eq!(failed_lines, [3, 6, 8], "{summary}");
    assert_eq!(summary["failures"][1]["entity_id"], "e6");
    let scanned = allidb(&daemon, &["--json", "scan", "--all"]).expect(0);
    assert_eq!(
        ids_of(&scanned.json_lines()),
        ["e1", "e2", "e5", "e7", "e9"]
    );

    // The human summary names the lines; a clean import exits 0.
    let human = allidb(&daemon, &["import", path]).expect(3);
    assert!(
        human.stdout.contains("5 written, 3 failed"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("line 3: invalid JSON entity"),
        "{}",
        human.stdout
    );

    // scan --json output imports back (here into a fresh daemon), and stdin works.
    let copy = Daemon::start("");
    let dump = scanned.stdout;
    let run = allidb_with_stdin(&copy, &["import", "-"], &dump).expect(0);
    assert!(run.stdout.contains("5 written, 0 failed"), "{}", run.stdout);
    let copied = allidb(&copy, &["--json", "get", "e1", "e2"])
        .expect(0)
        .json();
    assert_eq!(copied["entities"][1]["attributes"]["k"], "v");
    assert_eq!(
        copied["entities"][0]["incoming_edges"][0]["from_entity"],
        "e7"
    );

    let missing = allidb(&daemon, &["import", "/nonexistent/file.jsonl"]).expect(1);
    assert!(
        missing.stderr.contains("/nonexistent/file.jsonl"),
        "{}",
        missing.stderr
    );
}

/// Writes TEXMEX rows (`i32` count then 4-byte values).
fn write_vecs(path: &Path, rows: &[Vec<[u8; 4]>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for value in row {
            bytes.extend_from_slice(value);
        }
    }
    std::fs::write(path, bytes).expect("the file is written");
}

fn report(run: &Run, bench: &str) -> Value {
    run.json_lines()
        .into_iter()
        .find(|report| report["bench"] == bench)
        .unwrap_or_else(|| panic!("no {bench} report in {}", run.stdout))
}

#[test]
fn bench_smoke() {
    let daemon = Daemon::start("");
    let ingest = allidb(
        &daemon,
        &[
            "--json",
            "bench",
            "ingest",
            "-n",
            "300",
            "--dim",
            "8",
            "--batch-size",
            "64",
            "--concurrency",
            "2",
        ],
    )
    .expect(0);
    let ingest = report(&ingest, "ingest");
    assert_eq!(ingest["items"], 300);
    assert_eq!(ingest["requests"], 5);
    assert!(ingest["items_per_sec"].as_f64().expect("a rate") > 0.0);
    assert!(
        ingest["latency_ms"]["p99"].as_f64().expect("p99")
            >= ingest["latency_ms"]["p50"].as_f64().expect("p50")
    );

    let get = allidb(
        &daemon,
        &["--json", "bench", "get", "--keys", "300", "-n", "100"],
    )
    .expect(0);
    assert_eq!(report(&get, "get")["items"], 100);
    let scan = allidb(
        &daemon,
        &[
            "--json", "bench", "scan", "--keys", "300", "-n", "10", "--limit", "5",
        ],
    )
    .expect(0);
    assert_eq!(report(&scan, "scan")["requests"], 10);
    let query = allidb(
        &daemon,
        &["bench", "query", "-n", "20", "--dim", "8", "-k", "5"],
    )
    .expect(0);
    assert!(
        query.stdout.contains("bench query") && query.stdout.contains("p99"),
        "{}",
        query.stdout
    );
    // Reads of entities that were never written fail the benchmark instead of reporting figures.
    let wrong_keys = allidb(&daemon, &["bench", "get", "--keys", "100000", "-n", "200"]).expect(1);
    assert!(
        wrong_keys.stderr.contains("not found"),
        "{}",
        wrong_keys.stderr
    );

    // A tiny TEXMEX data set with exact ground truth (inner product of normalised vectors).
    let data = Daemon::start("");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let unit = |i: usize, salt: f32| {
        let raw: Vec<f32> = (0..6)
            .map(|d| ((i * 7 + d * 3) as f32 * 0.37 + salt).sin())
            .collect();
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        raw.into_iter().map(|v| v / norm).collect::<Vec<f32>>()
    };
    let base: Vec<Vec<f32>> = (0..200).map(|i| unit(i, 0.0)).collect();
    let queries: Vec<Vec<f32>> = (0..10).map(|i| unit(i, 0.5)).collect();
    let truth: Vec<Vec<i32>> = queries
        .iter()
        .map(|q| {
            let mut rows: Vec<(f32, i32)> = base
                .iter()
                .enumerate()
                .map(|(r, b)| (q.iter().zip(b).map(|(x, y)| x * y).sum(), r as i32))
                .collect();
            rows.sort_by(|x, y| y.0.total_cmp(&x.0));
            rows.iter().take(10).map(|(_, r)| *r).collect()
        })
        .collect();
    let floats = |rows: &[Vec<f32>]| -> Vec<Vec<[u8; 4]>> {
        rows.iter()
            .map(|r| r.iter().map(|v| v.to_le_bytes()).collect())
            .collect()
    };
    let ints: Vec<Vec<[u8; 4]>> = truth
        .iter()
        .map(|r| r.iter().map(|v| v.to_le_bytes()).collect())
        .collect();
    let (base_path, query_path, truth_path) = (
        dir.path().join("base.fvecs"),
        dir.path().join("query.fvecs"),
        dir.path().join("gt.ivecs"),
    );
    write_vecs(&base_path, &floats(&base));
    write_vecs(&query_path, &floats(&queries));
    write_vecs(&truth_path, &ints);
    let run = allidb(
        &data,
        &[
            "--json",
            "bench",
            "query",
            "-k",
            "10",
            "--batch-size",
            "50",
            "--vectors",
            base_path.to_str().expect("UTF-8"),
            "--queries",
            query_path.to_str().expect("UTF-8"),
            "--ground-truth",
            truth_path.to_str().expect("UTF-8"),
        ],
    )
    .expect(0);
    assert_eq!(report(&run, "ingest")["items"], 200);
    let query = report(&run, "query");
    assert_eq!(query["requests"], 10);
    let recall = query["recall_at_k"].as_f64().expect("recall");
    assert!(recall >= 0.9, "recall@10 {recall}");
    // The same queries in QueryBatch requests of 4: 3 requests, the same recall.
    let batched = allidb(
        &data,
        &[
            "--json",
            "bench",
            "query",
            "-k",
            "10",
            "--batch",
            "4",
            "--skip-ingest",
            "--vectors",
            base_path.to_str().expect("UTF-8"),
            "--queries",
            query_path.to_str().expect("UTF-8"),
            "--ground-truth",
            truth_path.to_str().expect("UTF-8"),
        ],
    )
    .expect(0);
    let batched = report(&batched, "query");
    assert_eq!(
        (batched["requests"].clone(), batched["items"].clone()),
        (3.into(), 10.into())
    );
    assert_eq!(batched["recall_at_k"].as_f64(), Some(recall));
}
