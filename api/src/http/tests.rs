//! Router tests: requests through `tower::ServiceExt::oneshot` into a real [`AlliDbService`] over
//! a real [`UnifiedStore`] in a temporary directory, with API keys from a key file.

use std::sync::Arc;

use allidb_index::store::{StoreOptions, UnifiedStore};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

use super::{HttpLimits, router};
use crate::auth::{AuthOptions, Authenticator, hash_key};
use crate::service::{AlliDbService, ServiceOptions};

const WRITER: &str = "key-of-acme-writer";
const READER: &str = "key-of-acme-reader";
const OTHER: &str = "key-of-globex";

/// A service over a store in a temporary directory and the gateway in front of it.
struct Fixture {
    service: Arc<AlliDbService>,
    gateway: Router,
    _dir: TempDir,
}

impl Fixture {
    fn new(limits: HttpLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys");
        let lines = [
            (WRITER, "acme", "write"),
            (READER, "acme", "read"),
            (OTHER, "globex", "write"),
        ]
        .map(|(key, tenant, role)| format!("{} {tenant} {role}\n", hash_key(key)))
        .concat();
        std::fs::write(&key_file, lines).unwrap();
        let auth = Authenticator::new(AuthOptions {
            enabled: true,
            default_tenant: "default".into(),
            key_file: Some(key_file),
            keys_env: None,
        })
        .unwrap();
        let store = UnifiedStore::open(dir.path().join("data"), StoreOptions::default()).unwrap();
        let service = Arc::new(AlliDbService::new(
            Arc::new(store),
            Arc::new(auth),
            ServiceOptions::default(),
        ));
        let gateway = router(Arc::clone(&service), limits);
        Self {
            service,
            gateway,
            _dir: dir,
        }
    }

    /// Sends one request; `body` is sent as is (with its Content-Length when `declare_length`).
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        declare_length: bool,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if declare_length {
            request = request.header(header::CONTENT_LENGTH, body.len());
        }
        let response = self
            .gateway
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "reply is not JSON ({error}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends `body` (JSON, if any) with `key` (if any).
    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> = key
            .map(|key| ("x-allidb-api-key", key))
            .into_iter()
            .collect();
        let body = body.map_or_else(Vec::new, |body| body.to_string().into_bytes());
        self.raw(method, uri, &headers, body, true).await
    }

    async fn post(&self, uri: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, Some(key), Some(body)).await
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(Method::GET, uri, Some(key), None).await
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts an error reply: status, gRPC code name, a message containing `needle`, and the
    /// `details` array.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        let message = self.body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(self.body["details"], json!([]));
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/json",
            "{:?}",
            self.body
        );
    }
}

fn entity(id: &str, vector: [f32; 3], out: &[(&str, &str)]) -> Value {
    let edges: Vec<Value> = out
        .iter()
        .map(|(to, relation)| json!({"to_entity": to, "relation": relation, "weight": 0.5}))
        .collect();
    json!({"entity_id": id, "entity_type": "doc", "embeddings": [{"vector": vector}], "outgoing_edges": edges})
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_route_serves_its_rpc() {
    let fx = Fixture::new(HttpLimits::default());

    let put = fx
        .post(
            "/entity",
            WRITER,
            json!({"entity": entity("a", [1.0, 0.0, 0.0], &[("b", "cites")]), "consistency_level": "quorum"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_eq!(put.body["success"], true);
    assert_eq!(put.body["entity_id"], "a");

    let partial = fx
        .post(
            "/entities/batch",
            WRITER,
            json!({"entities": [entity("b", [0.0, 1.0, 0.0], &[]), {"entity_id": ""}, entity("c", [0.0, 0.0, 1.0], &[])]}),
        )
        .await;
    assert_eq!(
        partial.status,
        StatusCode::PARTIAL_CONTENT,
        "{:?}",
        partial.body
    );
    assert_eq!(partial.body["success"], false);
    assert_eq!(partial.body["success_count"], 2);
    assert_eq!(partial.body["failure_count"], 1);
    assert_eq!(partial.body["entity_ids"], json!(["b", "c"]));
    let complete = fx
        .post(
            "/entities/batch",
            WRITER,
            json!({"entities": [entity("d", [0.5, 0.5, 0.0], &[])]}),
        )
        .await;
    assert_eq!(complete.status, StatusCode::OK, "{:?}", complete.body);
    assert_eq!(complete.body["success"], true);

    let a = fx.get("/entity/a", READER).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["found"], true);
    assert_eq!(a.body["entity"]["entity_id"], "a");
    assert_eq!(a.body["entity"]["outgoing_edges"][0]["to_entity"], "b");
    assert!(a.body["entity"]["created_at_nanos"].as_i64().unwrap() > 0);
    let b = fx
        .get("/entity/b?consistency_level=ALL&trace_id=t1", READER)
        .await;
    assert_eq!(b.body["entity"]["incoming_edges"][0]["from_entity"], "a");

    let many = fx
        .post(
            "/entities/get",
            READER,
            json!({"entity_ids": ["c", "zz", "a"]}),
        )
        .await;
    assert_eq!(many.status, StatusCode::OK);
    assert_eq!(ids(&many.body["entities"], "entity_id"), ["c", "a"]);
    assert_eq!(many.body["missing_ids"], json!(["zz"]));

    let query = fx
        .post(
            "/query",
            READER,
            json!({"query_vector": [1.0, 0.0, 0.0], "k": 2, "trace_id": "q1"}),
        )
        .await;
    assert_eq!(query.status, StatusCode::OK, "{:?}", query.body);
    assert_eq!(query.body["results"][0]["entity_id"], "a");
    assert_eq!(query.body["trace_id"], "q1");
    assert_eq!(query.body["total_results"], 2);
    assert!(query.body.get("context").is_none_or(Value::is_null));

    // Graph-RAG in one call: one seed apart from k, its context, PageRank ranking.
    let graph_rag = fx
        .post(
            "/query",
            READER,
            json!({"query_vector": [1.0, 0.0, 0.0], "k": 5, "seeds": 1, "max_hops": 1,
                   "include_context": true, "scoring": "personalized_pagerank",
                   "pagerank": {"damping": 0.5}, "explain": true}),
        )
        .await;
    assert_eq!(graph_rag.status, StatusCode::OK, "{:?}", graph_rag.body);
    let context = &graph_rag.body["context"];
    assert_eq!(ids(&context["nodes"], "entity_id"), ["a", "b"]);
    assert_eq!(context["nodes"][1]["hop"], 1);
    // b's path is a step from a (listed at index 0), not a repeated path; a seed has neither.
    assert_eq!(context["nodes"][1]["step"]["parent"], 0);
    assert_eq!(context["nodes"][1]["step"]["relation"], "cites");
    assert_eq!(context["nodes"][1]["step"]["reversed"], false);
    assert!(context["nodes"][1].get("path").is_none_or(Value::is_null));
    assert!(context["nodes"][0].get("step").is_none_or(Value::is_null));
    assert_eq!(context["edges"][0]["from_entity"], "a");
    assert_eq!(context["edges"][0]["to_entity"], "b");
    assert_eq!(context["truncated"], false);
    assert_eq!(ids(&graph_rag.body["results"], "entity_id"), ["a", "b"]);
    let pagerank = &graph_rag.body["results"][0]["explanation"]["pagerank"];
    // a -> b -> (dangling, back to a): x_a = 1 / (1 + d), x_b = d / (1 + d).
    assert!((pagerank["mass"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-5);
    assert_eq!(pagerank["seed_shares"][0]["entity_id"], "a");
    fx.post(
        "/query",
        READER,
        json!({"query_vector": [1.0, 0.0, 0.0], "scoring": "personalized_pagerank",
               "pagerank": {"damping": 1.5}}),
    )
    .await
    .assert_error(400, "InvalidArgument", "pagerank.damping");

    let first = fx.get("/entities?limit=3", READER).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(ids(&first.body["entities"], "entity_id"), ["a", "b", "c"]);
    let token = first.body["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let rest = fx
        .get(&format!("/entities?limit=3&page_token={token}"), READER)
        .await;
    assert_eq!(ids(&rest.body["entities"], "entity_id"), ["d"]);
    assert!(
        rest.body["next_page_token"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
    let bounded = fx.get("/entities?start=b&end_key=d", READER).await;
    assert_eq!(ids(&bounded.body["entities"], "entity_id"), ["b", "c"]);

    let hops = fx
        .post(
            "/traverse",
            READER,
            json!({"start_ids": ["a"], "max_hops": 2, "direction": "out"}),
        )
        .await;
    assert_eq!(hops.status, StatusCode::OK, "{:?}", hops.body);
    assert_eq!(ids(&hops.body["nodes"], "entity_id"), ["a", "b"]);

    let added = fx
        .post(
            "/edges",
            WRITER,
            json!({"edges": [{"from_entity": "b", "to_entity": "c", "relation": "next", "weight": 1.0}]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    assert_eq!(added.body["edge_count"], 1);
    let hops = fx
        .post(
            "/traverse",
            READER,
            json!({"start_ids": ["a"], "max_hops": 2}),
        )
        .await;
    assert_eq!(ids(&hops.body["nodes"], "entity_id"), ["a", "b", "c"]);
    let removed = fx
        .post(
            "/edges/remove",
            WRITER,
            json!({"edges": [{"from_entity": "b", "to_entity": "c", "relation": "next"}]}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    let hops = fx
        .post(
            "/traverse",
            READER,
            json!({"start_ids": ["a"], "max_hops": 2}),
        )
        .await;
    assert_eq!(ids(&hops.body["nodes"], "entity_id"), ["a", "b"]);

    let deleted = fx
        .send(Method::DELETE, "/entity/a", Some(WRITER), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert_eq!(deleted.body["found"], true);
    fx.get("/entity/a", READER)
        .await
        .assert_error(404, "NotFound", "\"a\" not found");
    let again = fx
        .send(Method::DELETE, "/entity/a", Some(WRITER), None)
        .await;
    assert_eq!(
        (again.status, &again.body["found"]),
        (StatusCode::OK, &json!(false))
    );

    let health = fx.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["healthy"], true);
    assert_eq!(health.body["status"], "healthy");
    fx.service.begin_shutdown();
    let stopping = fx.send(Method::GET, "/health", None, None).await;
    assert_eq!(stopping.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stopping.body["healthy"], false);
}

#[tokio::test]
async fn ids_with_reserved_characters_travel_percent_encoded() {
    let fx = Fixture::new(HttpLimits::default());
    let put = fx
        .post(
            "/entity",
            WRITER,
            json!({"entity": entity("dir/file name?#%", [1.0, 2.0, 3.0], &[])}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let got = fx.get("/entity/dir%2Ffile%20name%3F%23%25", READER).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["entity"]["entity_id"], "dir/file name?#%");
    fx.get("/entity/%FF", READER)
        .await
        .assert_error(400, "InvalidArgument", "UTF-8");
}

#[tokio::test]
async fn auth_errors_and_the_key_header_in_any_case() {
    let fx = Fixture::new(HttpLimits::default());
    let body = json!({"entity": entity("a", [1.0, 0.0, 0.0], &[])});
    fx.send(Method::POST, "/entity", None, Some(body.clone()))
        .await
        .assert_error(401, "Unauthenticated", "missing API key");
    fx.post("/entity", "not-a-key", body.clone())
        .await
        .assert_error(401, "Unauthenticated", "");
    fx.post("/entity", "", body.clone())
        .await
        .assert_error(401, "Unauthenticated", "empty");
    fx.post("/entity", READER, body.clone())
        .await
        .assert_error(403, "PermissionDenied", "");
    let bytes = body.to_string().into_bytes();
    let mixed_case = fx
        .raw(
            Method::POST,
            "/entity",
            &[("X-AlliDB-Api-Key", WRITER)],
            bytes.clone(),
            true,
        )
        .await;
    assert_eq!(mixed_case.status, StatusCode::OK, "{:?}", mixed_case.body);
    fx.raw(
        Method::POST,
        "/entity",
        &[("X-ALLIDB-API-KEY", WRITER), ("x-allidb-api-key", OTHER)],
        bytes,
        true,
    )
    .await
    .assert_error(401, "Unauthenticated", "more than once");
    fx.get("/entities", "nope")
        .await
        .assert_error(401, "Unauthenticated", "");
}

#[tokio::test]
async fn tenants_cannot_reach_each_other() {
    let fx = Fixture::new(HttpLimits::default());
    let put = fx
        .post(
            "/entity",
            WRITER,
            json!({"entity": entity("secret", [1.0, 0.0, 0.0], &[])}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);

    fx.get("/entity/secret", OTHER)
        .await
        .assert_error(404, "NotFound", "");
    let scan = fx.get("/entities", OTHER).await;
    assert_eq!(scan.body["entities"], json!([]), "{:?}", scan.body);
    fx.get("/entities?tenant_id=acme", OTHER)
        .await
        .assert_error(403, "PermissionDenied", "");
    fx.post(
        "/entity",
        OTHER,
        json!({"entity": {"entity_id": "secret", "tenant_id": "acme"}}),
    )
    .await
    .assert_error(403, "PermissionDenied", "");
    let deleted = fx
        .send(Method::DELETE, "/entity/secret", Some(OTHER), None)
        .await;
    assert_eq!(deleted.body["found"], false, "{:?}", deleted.body);
    let mine = fx.get("/entity/secret", READER).await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let fx = Fixture::new(HttpLimits::default());
    let post = |uri: &'static str, body: &'static str| {
        fx.raw(
            Method::POST,
            uri,
            &[("x-allidb-api-key", WRITER)],
            body.as_bytes().to_vec(),
            true,
        )
    };
    post("/entity", "{")
        .await
        .assert_error(400, "InvalidArgument", "invalid JSON body");
    post("/entity", "")
        .await
        .assert_error(400, "InvalidArgument", "empty");
    post("/entity", r#"{"entity": {"entity_id": 5}}"#)
        .await
        .assert_error(
            400,
            "InvalidArgument",
            "entity.entity_id: invalid type: integer",
        );
    post("/query", r#"{"query_vector": [1e999, 0, 0]}"#)
        .await
        .assert_error(400, "InvalidArgument", "query_vector[0]");
    post("/query", r#"{"query_vector": [1, "NaN", 0]}"#)
        .await
        .assert_error(
            400,
            "InvalidArgument",
            "query_vector[1]: invalid type: string",
        );
    post(
        "/query",
        r#"{"query_vector": [1, 0, 0], "consistency_level": "MOST"}"#,
    )
    .await
    .assert_error(400, "InvalidArgument", "consistency_level");
    post("/query", r#"{"query_vector": []}"#)
        .await
        .assert_error(400, "InvalidArgument", "query_vector");
    post(
        "/entity",
        r#"{"entity": {"entity_id": "x", "embeddings": [{"vector": [1, 2, 3]}]}}"#,
    )
    .await;
    post("/query", r#"{"query_vector": [1, 0]}"#)
        .await
        .assert_error(400, "InvalidArgument", "dimension");
    post(
        "/entity",
        r#"{"entity": {"entity_id": "y", "embeddings": [{"vector": [1e39, 0, 0]}]}}"#,
    )
    .await
    .assert_error(400, "InvalidArgument", "");
    fx.get("/entities?limit=ten", WRITER)
        .await
        .assert_error(400, "InvalidArgument", "limit");
    fx.get("/entities?page_token=%21%21", WRITER)
        .await
        .assert_error(400, "InvalidArgument", "");
    fx.get("/entity/x?consistency_level=sometimes", WRITER)
        .await
        .assert_error(400, "InvalidArgument", "consistency_level");

    let wrong_method = fx.send(Method::GET, "/query", Some(WRITER), None).await;
    wrong_method.assert_error(405, "Unimplemented", "GET is not allowed on /query");
    assert_eq!(wrong_method.headers[header::ALLOW], "POST");
    fx.send(Method::PUT, "/entity/x", Some(WRITER), None)
        .await
        .assert_error(405, "Unimplemented", "PUT");
    fx.send(Method::GET, "/nowhere", Some(WRITER), None)
        .await
        .assert_error(404, "NotFound", "no route for /nowhere");
    fx.send(Method::GET, "/entity/", Some(WRITER), None)
        .await
        .assert_error(404, "NotFound", "no route");
    let still = fx.get("/entity/x", WRITER).await;
    assert_eq!(still.status, StatusCode::OK, "{:?}", still.body);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let fx = Fixture::new(HttpLimits {
        max_body_bytes: 1024,
    });
    let padding = "p".repeat(2000);
    let body = json!({"entity": {"entity_id": "big", "entity_type": padding}})
        .to_string()
        .into_bytes();
    for declare_length in [true, false] {
        fx.raw(
            Method::POST,
            "/entity",
            &[("x-allidb-api-key", WRITER)],
            body.clone(),
            declare_length,
        )
        .await
        .assert_error(413, "ResourceExhausted", "exceeds 1024 bytes");
    }
    let small = fx
        .post("/entity", WRITER, json!({"entity": {"entity_id": "small"}}))
        .await;
    assert_eq!(small.status, StatusCode::OK, "{:?}", small.body);
}

#[tokio::test]
async fn query_batches_answer_like_one_query_per_vector() {
    let fx = Fixture::new(HttpLimits::default());
    for (id, vector, out) in [
        ("a", [1.0, 0.0, 0.0], &[("b", "cites")][..]),
        ("b", [0.0, 1.0, 0.0], &[("c", "cites")][..]),
        ("c", [0.6, 0.0, 0.8], &[][..]),
    ] {
        let put = fx
            .post(
                "/entity",
                WRITER,
                json!({"entity": entity(id, vector, out)}),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    }
    let theirs = fx
        .post(
            "/entity",
            OTHER,
            json!({"entity": entity("theirs", [1.0, 0.0, 0.0], &[])}),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::OK, "{:?}", theirs.body);

    // Recency weight 0: the scores do not depend on when each call ran.
    let options = json!({"k": 2, "max_hops": 1, "explain": true, "trace_id": "qb-1",
        "weights": {"recency": 0}, "filter": {"entity_types": ["doc"]}});
    // Nine vectors: more than one blocking task's share on a machine with 2+ cores.
    let vectors = [
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 0.1],
        [0.5, 0.5, 0.0],
        [0.1, 0.2, 0.9],
        [0.9, 0.1, 0.4],
        [0.0, 0.7, 0.7],
        [0.3, 0.0, 1.0],
        [0.2, 1.0, 0.0],
    ];
    let batch = fx
        .post(
            "/query/batch",
            READER,
            json!({"options": options, "vectors": vectors.map(|v| json!({"values": v}))}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{:?}", batch.body);
    assert_eq!(batch.body["trace_id"], "qb-1");
    let replies = batch.body["replies"].as_array().unwrap();
    assert_eq!(replies.len(), vectors.len());
    for (reply, vector) in replies.iter().zip(vectors) {
        let mut single = options.clone();
        single["query_vector"] = json!(vector);
        let alone = fx.post("/query", READER, single).await;
        assert_eq!(alone.status, StatusCode::OK, "{:?}", alone.body);
        assert_eq!(reply, &alone.body);
        assert_eq!(reply["results"].as_array().unwrap().len(), 2, "{reply:?}");
    }
    assert_eq!(replies[0]["results"][0]["entity_id"], "a");

    // Another tenant's batch ranks only its own entities.
    let other = fx
        .post(
            "/query/batch",
            OTHER,
            json!({"vectors": [{"values": [1.0, 0.0, 0.0]}, {"values": [0.0, 1.0, 0.0]}]}),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK, "{:?}", other.body);
    for reply in other.body["replies"].as_array().unwrap() {
        assert_eq!(ids(&reply["results"], "entity_id"), ["theirs"]);
    }

    // Errors are Query's, naming the field in the batch request.
    fx.post("/query/batch", READER, json!({"vectors": []}))
        .await
        .assert_error(400, "InvalidArgument", "vectors must not be empty");
    fx.post(
        "/query/batch",
        READER,
        json!({"options": {"query_vector": [1.0, 0.0, 0.0]}, "vectors": [{"values": [1.0, 0.0, 0.0]}]}),
    )
    .await
    .assert_error(400, "InvalidArgument", "options.query_vector must be empty");
    fx.post(
        "/query/batch",
        READER,
        json!({"vectors": [{"values": [1.0, 0.0, 0.0]}, {"values": [1.0, 0.0]}]}),
    )
    .await
    .assert_error(400, "InvalidArgument", "vectors[1]: ");
    fx.get("/query/batch", READER)
        .await
        .assert_error(405, "Unimplemented", "");
}
