//! End-to-end tests of the HTTP JSON gateway (WIRE.md §2, `docs/api-http.md`) against a real
//! `allidbd`: every route, every error status, tenant isolation between two tenants' keys, and
//! malformed input; after each bad request the daemon must still serve.
//!
//! Requests go over a plain TCP socket with a minimal HTTP/1.1 client ([`Http`]), so tests can
//! send exactly the bytes they mean (broken JSON, lying lengths, bodies over the limit, non-HTTP).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use allidb_tests::{Daemon, key_line};
use serde_json::{Value, json};

const ACME_WRITER: &str = "acme-writer-key";
const ACME_READER: &str = "acme-reader-key";
const GLOBEX_WRITER: &str = "globex-writer-key";
const MAX_REQUEST_BYTES: usize = 65_536;

/// A daemon with auth on, keys for two tenants, and a 64 KiB request limit.
fn start_daemon() -> Daemon {
    let keys = [
        key_line(ACME_WRITER, "acme", "write"),
        key_line(ACME_READER, "acme", "read"),
        key_line(GLOBEX_WRITER, "globex", "write"),
    ]
    .concat()
    .replace('\n', ";");
    Daemon::start_with_env(
        &format!("[auth]\nenabled = true\n\n[server]\nmax_request_bytes = {MAX_REQUEST_BYTES}\n"),
        &[("ALLIDB_API_KEYS", &keys)],
    )
}

/// A reply: status, headers (names lower case) and the body parsed as JSON.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a success status.
    #[track_caller]
    fn ok(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{:?}", self.body);
        self.body
    }

    /// Asserts an error reply: status, gRPC code name, message containing `needle`, empty
    /// details, JSON content type.
    #[track_caller]
    fn error(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        let message = self.body["error"].as_str().expect("an error message");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(self.body["details"], json!([]));
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// A minimal HTTP/1.1 client: one connection per request (`Connection: close`).
struct Http {
    addr: SocketAddr,
}

impl Http {
    fn of(daemon: &Daemon) -> Http {
        Http {
            addr: daemon.http_addr.expect("allidbd serves HTTP"),
        }
    }

    /// Sends raw bytes and reads the reply until the server closes the connection.
    fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).expect("the gateway accepts connections");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        // The server may answer (and close) before it read everything, e.g. on 413.
        let _ = stream.write_all(request);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    }

    /// Sends one request with `headers` and `body` (its `Content-Length` added).
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        parse_reply(&self.exchange(&bytes))
    }

    fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("X-ALLIDB-API-KEY", k)).into_iter().collect();
        let body = body.map_or_else(Vec::new, |b| b.to_string().into_bytes());
        self.send(method, path, &headers, &body)
    }

    fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call("POST", path, Some(key), Some(&body))
    }

    fn post_raw(&self, path: &str, key: &str, body: &str) -> Reply {
        self.send("POST", path, &[("x-allidb-api-key", key)], body.as_bytes())
    }

    fn get(&self, path: &str, key: &str) -> Reply {
        self.call("GET", path, Some(key), None)
    }

    fn delete(&self, path: &str, key: &str) -> Reply {
        self.call("DELETE", path, Some(key), None)
    }

    /// Asserts the daemon still serves: health is 200 and an authenticated read answers.
    #[track_caller]
    fn assert_serving(&self) {
        let health = self.call("GET", "/health", None, None).ok(200);
        assert_eq!(health["healthy"], true);
        self.get("/entities?limit=1", ACME_READER).ok(200);
    }
}

/// Splits a raw HTTP/1.1 reply into status, headers and JSON body (plain or chunked).
fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "reply body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&chunked[..line_end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("a hex chunk size");
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&chunked[start..start + size]);
        chunked = &chunked[start + size + 2..];
    }
}

fn entity(id: &str, vector: [f32; 3], out: &[(&str, &str)]) -> Value {
    let edges: Vec<Value> = out
        .iter()
        .map(|(to, relation)| json!({"to_entity": to, "relation": relation, "weight": 0.5}))
        .collect();
    json!({"entity_id": id, "entity_type": "doc", "embeddings": [{"vector": vector}],
           "outgoing_edges": edges})
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item[field].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_route_over_a_real_daemon() {
    let daemon = start_daemon();
    let http = Http::of(&daemon);

    let health = http.call("GET", "/health", None, None).ok(200);
    assert_eq!(health["status"], "healthy");
    assert!(health["timestamp_nanos"].as_i64().unwrap() > 0);

    let put = http
        .post(
            "/entity",
            ACME_WRITER,
            json!({"entity": entity("a", [1.0, 0.0, 0.0], &[("b", "cites")]),
                   "consistency_level": "all", "trace_id": "t-put"}),
        )
        .ok(200);
    assert_eq!(
        put,
        json!({"success": true, "error_message": "", "entity_id": "a"})
    );

    let batch = http
        .post(
            "/entities/batch",
            ACME_WRITER,
            json!({"entities": [entity("b", [0.0, 1.0, 0.0], &[]), entity("c", [0.0, 0.0, 1.0], &[])]}),
        )
        .ok(200);
    assert_eq!(batch["success_count"], 2);
    let partial = http
        .post(
            "/entities/batch",
            ACME_WRITER,
            json!({"entities": [entity("d", [0.5, 0.5, 0.0], &[]), {"entity_id": ""}]}),
        )
        .ok(206);
    assert_eq!(
        (
            &partial["success"],
            &partial["failure_count"],
            &partial["entity_ids"]
        ),
        (&json!(false), &json!(1), &json!(["d"]))
    );

    let a = http.get("/entity/a", ACME_READER).ok(200);
    assert_eq!(a["entity"]["entity_type"], "doc");
    assert_eq!(
        a["entity"]["embeddings"][0]["vector"],
        json!([1.0, 0.0, 0.0])
    );
    let b = http
        .get("/entity/b?consistency_level=quorum", ACME_READER)
        .ok(200);
    assert_eq!(b["entity"]["incoming_edges"][0]["from_entity"], "a");
    http.get("/entity/nothing", ACME_READER)
        .error(404, "NotFound", "not found");

    let many = http
        .post(
            "/entities/get",
            ACME_READER,
            json!({"entity_ids": ["b", "x", "a"]}),
        )
        .ok(200);
    assert_eq!(ids(&many["entities"], "entity_id"), ["b", "a"]);
    assert_eq!(many["missing_ids"], json!(["x"]));

    let query = http
        .post(
            "/query",
            ACME_READER,
            json!({"query_vector": [0.0, 1.0, 0.0], "k": 3, "trace_id": "t-q", "explain": true}),
        )
        .ok(200);
    assert_eq!(query["results"][0]["entity_id"], "b");
    assert_eq!(query["trace_id"], "t-q");
    assert_eq!(query["total_results"], 3);

    let page = http.get("/entities?limit=2", ACME_READER).ok(200);
    assert_eq!(ids(&page["entities"], "entity_id"), ["a", "b"]);
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    let rest = http
        .get(
            &format!("/entities?limit=2&page_token={token}"),
            ACME_READER,
        )
        .ok(200);
    assert_eq!(ids(&rest["entities"], "entity_id"), ["c", "d"]);
    let range = http.get("/entities?start=b&end=d", ACME_READER).ok(200);
    assert_eq!(ids(&range["entities"], "entity_id"), ["b", "c"]);

    let added = http
        .post(
            "/edges",
            ACME_WRITER,
            json!({"edges": [{"from_entity": "b", "to_entity": "c", "relation": "next", "weight": 1.0}]}),
        )
        .ok(200);
    assert_eq!(added, json!({"success": true, "edge_count": 1}));
    let reached = http
        .post(
            "/traverse",
            ACME_READER,
            json!({"start_ids": ["a"], "max_hops": 3}),
        )
        .ok(200);
    assert_eq!(ids(&reached["nodes"], "entity_id"), ["a", "b", "c"]);
    assert_eq!(reached["nodes"][2]["depth"], 2);
    assert_eq!(
        reached["nodes"][2]["path"]["entity_ids"],
        json!(["a", "b", "c"])
    );
    let removed = http
        .post(
            "/edges/remove",
            ACME_WRITER,
            json!({"edges": [{"from_entity": "b", "to_entity": "c", "relation": "next"}]}),
        )
        .ok(200);
    assert_eq!(removed["success"], true);
    let reached = http
        .post(
            "/traverse",
            ACME_READER,
            json!({"start_ids": ["a"], "max_hops": 3, "direction": "OUT"}),
        )
        .ok(200);
    assert_eq!(ids(&reached["nodes"], "entity_id"), ["a", "b"]);

    let deleted = http.delete("/entity/c", ACME_WRITER).ok(200);
    assert_eq!(deleted, json!({"success": true, "found": true}));
    http.get("/entity/c", ACME_READER)
        .error(404, "NotFound", "");
    let again = http.delete("/entity/c", ACME_WRITER).ok(200);
    assert_eq!(again["found"], false);
    let scan = http.get("/entities", ACME_READER).ok(200);
    assert_eq!(ids(&scan["entities"], "entity_id"), ["a", "b", "d"]);
}

#[test]
fn every_error_status_has_the_json_shape() {
    let daemon = start_daemon();
    let http = Http::of(&daemon);
    let body = json!({"entity": entity("e", [1.0, 2.0, 3.0], &[])});

    http.call("POST", "/entity", None, Some(&body)).error(
        401,
        "Unauthenticated",
        "missing API key",
    );
    http.assert_serving();
    http.post("/entity", "wrong-key", body.clone())
        .error(401, "Unauthenticated", "");
    http.send(
        "POST",
        "/entity",
        &[
            ("x-allidb-api-key", ACME_WRITER),
            ("X-Allidb-Api-Key", ACME_WRITER),
        ],
        body.to_string().as_bytes(),
    )
    .error(401, "Unauthenticated", "more than once");
    let mixed_case = http.send(
        "POST",
        "/entity",
        &[("x-AlliDB-api-KEY", ACME_WRITER)],
        body.to_string().as_bytes(),
    );
    assert_eq!(mixed_case.ok(200)["success"], true);
    http.post("/entity", ACME_READER, body.clone())
        .error(403, "PermissionDenied", "");
    http.get("/entities?node_id=node-elsewhere", ACME_READER)
        .error(404, "NotFound", "");
    http.get("/no/such/route", ACME_READER)
        .error(404, "NotFound", "no route for /no/such/route");
    let wrong_method = http.call("PUT", "/query", Some(ACME_READER), None);
    wrong_method.error(405, "Unimplemented", "PUT is not allowed on /query");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    http.call("POST", "/health", None, None)
        .error(405, "Unimplemented", "");
    http.assert_serving();
}

#[test]
fn bad_input_is_refused_and_the_daemon_keeps_serving() {
    let daemon = start_daemon();
    let http = Http::of(&daemon);
    http.post(
        "/entity",
        ACME_WRITER,
        json!({"entity": entity("v", [1.0, 2.0, 3.0], &[])}),
    )
    .ok(200);

    let bad_bodies: &[(&str, &str, &str)] = &[
        ("/entity", "{\"entity\": ", "invalid JSON body"),
        ("/entity", "not json at all", "expected a JSON object"),
        ("/entity", "", "empty"),
        (
            "/entity",
            "[{\"entity_id\": \"x\"}]",
            "expected a JSON object",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": 42}}",
            "entity.entity_id: invalid type",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"importance\": \"high\"}}",
            "entity.importance",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"created_at_nanos\": 1.5}}",
            "created_at_nanos",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"created_at_nanos\": 9223372036854775808}}",
            "int64",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"embeddings\": [{\"vector\": [1, 2, 1e999]}]}}",
            "out of range",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"embeddings\": [{\"vector\": [1, 2, 1e39]}]}}",
            "",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\", \"embeddings\": [{\"vector\": [1, 2]}]}}",
            "dimension",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"\"}}",
            "entity_id",
        ),
        (
            "/entity",
            "{\"entity\": {\"entity_id\": \"x\"}, \"consistency_level\": \"SOME\"}",
            "consistency_level",
        ),
        ("/entity", "{}", "entity"),
        (
            "/query",
            "{\"query_vector\": [NaN, 0, 0]}",
            "invalid JSON body",
        ),
        (
            "/query",
            "{\"query_vector\": [\"1\", 0, 0]}",
            "query_vector[0]: invalid type: string",
        ),
        (
            "/query",
            "{\"query_vector\": [1, 0, 0], \"k\": \"ten\"}",
            "k: invalid type",
        ),
        (
            "/query",
            "{\"query_vector\": [1, 0, 0], \"k\": 1e999}",
            "out of range",
        ),
        ("/query", "{\"query_vector\": [1, 0]}", "dimension"),
        ("/query", "{\"query_vector\": []}", "query_vector"),
        (
            "/query",
            "{\"query_vector\": [1, 0, 0]} trailing",
            "trailing",
        ),
        (
            "/query",
            "{\"query_vector\": [1, 0, 0], \"direction\": \"sideways\"}",
            "direction",
        ),
        ("/entities/batch", "{\"entities\": []}", ""),
        (
            "/entities/batch",
            "{\"entities\": {\"entity_id\": \"x\"}}",
            "entities: invalid type",
        ),
        ("/entities/get", "{\"entity_ids\": \"a\"}", "entity_ids"),
        (
            "/traverse",
            "{\"start_ids\": [\"v\"], \"max_hops\": -1e999}",
            "out of range",
        ),
        ("/edges", "{\"edges\": [{\"from_entity\": \"v\"}]}", ""),
        (
            "/edges/remove",
            "{\"edges\": [{\"relation\": 7}]}",
            "edges[0].relation",
        ),
    ];
    for (path, body, needle) in bad_bodies {
        let reply = http.post_raw(path, ACME_WRITER, body);
        assert_eq!(reply.status, 400, "{path} {body}: {:?}", reply.body);
        reply.error(400, "InvalidArgument", needle);
        http.assert_serving();
    }
    for query in [
        "/entities?limit=many",
        "/entities?limit=99999999999",
        "/entities?page_token=%%%",
        "/entities?page_token=bm90LWEtdG9rZW4",
    ] {
        http.get(query, ACME_READER)
            .error(400, "InvalidArgument", "");
        http.assert_serving();
    }
    http.get("/entity/v?consistency_level=eventually", ACME_READER)
        .error(400, "InvalidArgument", "consistency_level");
    http.get("/entity/%C3%28", ACME_READER)
        .error(400, "InvalidArgument", "UTF-8");

    // Over the size limit: declared by Content-Length, and streamed in chunks with no length.
    let padding = "x".repeat(MAX_REQUEST_BYTES + 1);
    let oversized = json!({"entity": {"entity_id": "big", "entity_type": padding}}).to_string();
    http.post_raw("/entity", ACME_WRITER, &oversized).error(
        413,
        "ResourceExhausted",
        "exceeds 65536 bytes",
    );
    http.assert_serving();
    let chunked = format!(
        "POST /entity HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-allidb-api-key: {ACME_WRITER}\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{oversized}\r\n0\r\n\r\n",
        oversized.len()
    );
    parse_reply(&http.exchange(chunked.as_bytes())).error(413, "ResourceExhausted", "exceeds");
    http.assert_serving();

    // Not HTTP at all, and a body shorter than its declared length (the client hangs up).
    let garbage = http.exchange(b"\x16\x03\x01 hello\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with(b"HTTP/1.1 400"),
        "{garbage:?}"
    );
    http.assert_serving();
    let short = b"POST /entity HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"entity\"";
    let mut stream = TcpStream::connect(http.addr).unwrap();
    stream.write_all(short).unwrap();
    drop(stream);
    http.assert_serving();

    let unchanged = http.get("/entity/v", ACME_READER).ok(200);
    assert_eq!(
        unchanged["entity"]["embeddings"][0]["vector"],
        json!([1.0, 2.0, 3.0])
    );
}

#[test]
fn tenants_cannot_reach_each_other_over_http() {
    let daemon = start_daemon();
    let http = Http::of(&daemon);
    let secret = json!({"entity": {"entity_id": "secret", "entity_type": "acme-only",
        "embeddings": [{"vector": [1.0, 0.0, 0.0]}],
        "outgoing_edges": [{"to_entity": "plan", "relation": "owns", "weight": 1.0}],
        "chunks": [{"chunk_id": "c1", "text": "acme's secret"}]}});
    http.post("/entity", ACME_WRITER, secret).ok(200);
    http.post(
        "/entity",
        ACME_WRITER,
        json!({"entity": entity("plan", [0.9, 0.1, 0.0], &[])}),
    )
    .ok(200);
    http.post(
        "/entity",
        GLOBEX_WRITER,
        json!({"entity": entity("mine", [0.0, 1.0, 0.0], &[])}),
    )
    .ok(200);

    // Read, read many, scan (also naming the other tenant), query, traverse.
    http.get("/entity/secret", GLOBEX_WRITER)
        .error(404, "NotFound", "");
    let many = http
        .post(
            "/entities/get",
            GLOBEX_WRITER,
            json!({"entity_ids": ["secret", "plan"]}),
        )
        .ok(200);
    assert_eq!(many["entities"], json!([]));
    let scan = http.get("/entities", GLOBEX_WRITER).ok(200);
    assert_eq!(ids(&scan["entities"], "entity_id"), ["mine"]);
    http.get("/entities?tenant_id=acme", GLOBEX_WRITER)
        .error(403, "PermissionDenied", "");
    let query = http
        .post(
            "/query",
            GLOBEX_WRITER,
            json!({"query_vector": [1.0, 0.0, 0.0], "k": 10, "max_hops": 2}),
        )
        .ok(200);
    assert_eq!(ids(&query["results"], "entity_id"), ["mine"]);
    let traversal = http
        .post(
            "/traverse",
            GLOBEX_WRITER,
            json!({"start_ids": ["secret"], "max_hops": 2, "direction": "both"}),
        )
        .ok(200);
    assert!(
        ids(&traversal["nodes"], "entity_id").is_empty(),
        "{traversal:?}"
    );

    // Overwrite through tenant_id fields: refused.
    http.post(
        "/entity",
        GLOBEX_WRITER,
        json!({"entity": {"entity_id": "secret", "tenant_id": "acme", "entity_type": "stolen"}}),
    )
    .error(403, "PermissionDenied", "");
    let batch = http
        .post(
            "/entities/batch",
            GLOBEX_WRITER,
            json!({"entities": [{"entity_id": "secret", "tenant_id": "acme", "entity_type": "stolen"}]}),
        )
        .ok(206);
    assert_eq!(batch["failure_count"], 1);
    assert!(
        batch["error_message"].as_str().unwrap().contains("tenant"),
        "{batch:?}"
    );

    // Delete, edge writes and a same-id "shadow" land in globex's own namespace only.
    let deleted = http.delete("/entity/secret", GLOBEX_WRITER).ok(200);
    assert_eq!(deleted["found"], false);
    http.post(
        "/edges/remove",
        GLOBEX_WRITER,
        json!({"edges": [{"from_entity": "secret", "to_entity": "plan", "relation": "owns"}]}),
    )
    .ok(200);
    http.post(
        "/edges",
        GLOBEX_WRITER,
        json!({"edges": [{"from_entity": "mine", "to_entity": "secret", "relation": "steals", "weight": 1.0}]}),
    )
    .ok(200);
    let shadow = json!({"entity": {"entity_id": "secret", "entity_type": "shadow",
        "embeddings": [{"vector": [1.0, 0.0, 0.0]}]}});
    http.post("/entity", GLOBEX_WRITER, shadow).ok(200);
    let shadow_read = http.get("/entity/secret", GLOBEX_WRITER).ok(200);
    assert_eq!(shadow_read["entity"]["entity_type"], "shadow");
    assert_eq!(shadow_read["entity"]["tenant_id"], "globex");
    http.delete("/entity/secret", GLOBEX_WRITER).ok(200);

    let original = http.get("/entity/secret", ACME_READER).ok(200);
    assert_eq!(original["entity"]["entity_type"], "acme-only");
    assert_eq!(original["entity"]["chunks"][0]["text"], "acme's secret");
    assert_eq!(original["entity"]["outgoing_edges"][0]["to_entity"], "plan");
    assert_eq!(original["entity"]["incoming_edges"], json!([]));
    let acme_query = http
        .post(
            "/query",
            ACME_READER,
            json!({"query_vector": [1.0, 0.0, 0.0], "k": 10}),
        )
        .ok(200);
    assert_eq!(ids(&acme_query["results"], "entity_id"), ["secret", "plan"]);
    let acme_scan = http.get("/entities", ACME_READER).ok(200);
    assert_eq!(ids(&acme_scan["entities"], "entity_id"), ["plan", "secret"]);
}
