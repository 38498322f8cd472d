//! Entity expiry (issue 39, TTL; docs/api.md "Expiry") against real `allidbd` processes: an
//! entity with a 2 s TTL vanishes from every read path (get, query, text search, the one-call
//! context, scan, traverse, HTTP) and, after a manual compaction, from every SSTable; a tenant's
//! default TTL applies to entities written without one, from gRPC, HTTP and the CLI alike;
//! bad expiry input is `INVALID_ARGUMENT` naming the field; on a 3-node ring an entity that
//! expired while a replica was down comes back neither by hint, nor by read repair, nor by
//! `allidb cluster repair`.

use std::path::Path;
use std::time::{Duration, Instant};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::ring::{
    allidb_json, found, held_per_node, hints_pending, json_reply, level, repair, ring_of_three,
    wait_for_states, wait_until,
};
use allidb_tests::{Daemon, doc_entity, http_call, request};
use tonic::Code;
use tonic::transport::Channel;

type Client = AlliDbClient<Channel>;

/// The text only the expiring entity holds (searched in the SSTables after compaction).
const EPHEMERAL_TEXT: &str = "ephemeralmarkerword";

fn entity(id: &str, vector: &[f32], text: &str, to: &[&str]) -> pb::Entity {
    pb::Entity {
        chunks: vec![pb::TextChunk {
            chunk_id: "c".to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }],
        outgoing_edges: to
            .iter()
            .map(|to| pb::GraphEdge {
                to_entity: (*to).to_owned(),
                relation: "rel".to_owned(),
                weight: 1.0,
                ..Default::default()
            })
            .collect(),
        ..doc_entity(id, vector)
    }
}

async fn put(client: &mut Client, entity: pb::Entity) -> Result<(), tonic::Status> {
    let message = pb::PutEntityRequest {
        entity: Some(entity),
        ..Default::default()
    };
    client.put_entity(request(message, None)).await.map(drop)
}

async fn get(client: &mut Client, id: &str) -> Option<pb::Entity> {
    let message = pb::GetEntityRequest {
        entity_id: id.to_owned(),
        ..Default::default()
    };
    let reply = client
        .get_entity(request(message, None))
        .await
        .expect("a read")
        .into_inner();
    reply.found.then(|| reply.entity.expect("a found entity"))
}

/// The ids every read path returns, by path name.
async fn seen(daemon: &Daemon, client: &mut Client) -> Vec<(&'static str, Vec<String>)> {
    let mut paths = Vec::new();
    let mut got = Vec::new();
    for id in ["ephemeral", "lasting", "other"] {
        if get(client, id).await.is_some() {
            got.push(id.to_owned());
        }
    }
    paths.push(("get", got));
    let many = pb::GetEntitiesRequest {
        entity_ids: vec!["ephemeral".to_owned(), "lasting".to_owned()],
        ..Default::default()
    };
    let many = client
        .get_entities(request(many, None))
        .await
        .expect("a batched read")
        .into_inner();
    paths.push((
        "get_entities",
        ids(many.entities.iter().map(|e| &e.entity_id)),
    ));
    let query = pb::QueryRequest {
        query_vector: vec![1.0, 0.0, 0.0],
        k: 10,
        max_hops: Some(2),
        include_context: true,
        context_chunks: true,
        ..Default::default()
    };
    let reply = client
        .query(request(query, None))
        .await
        .expect("a query")
        .into_inner();
    paths.push(("query", ids(reply.results.iter().map(|r| &r.entity_id))));
    let context = reply.context.expect("the context");
    paths.push(("context", ids(context.nodes.iter().map(|n| &n.entity_id))));
    let text = pb::QueryRequest {
        text: Some(EPHEMERAL_TEXT.to_owned()),
        k: 10,
        ..Default::default()
    };
    let reply = client
        .query(request(text, None))
        .await
        .expect("a text query")
        .into_inner();
    paths.push(("text", ids(reply.results.iter().map(|r| &r.entity_id))));
    let scan = pb::RangeScanRequest {
        limit: 100,
        ..Default::default()
    };
    let reply = client
        .range_scan(request(scan, None))
        .await
        .expect("a scan")
        .into_inner();
    paths.push(("scan", ids(reply.entities.iter().map(|e| &e.entity_id))));
    let traverse = pb::TraverseRequest {
        start_ids: vec!["lasting".to_owned()],
        max_hops: 2,
        ..Default::default()
    };
    let reply = client
        .traverse(request(traverse, None))
        .await
        .expect("a traversal")
        .into_inner();
    paths.push(("traverse", ids(reply.nodes.iter().map(|n| &n.entity_id))));
    let addr = daemon.http_addr.expect("an HTTP listener");
    let http = http_call(addr, "GET", "/entity/ephemeral", None, "");
    let http_found = match http.status {
        200 => vec!["ephemeral".to_owned()],
        404 => Vec::new(),
        other => panic!("HTTP get answered {other}: {}", http.body),
    };
    paths.push(("http", http_found));
    paths
}

fn ids<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.cloned().collect();
    ids.sort();
    ids
}

/// The `.sst` files under `dir` (recursively) whose bytes contain `needle`.
fn tables_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable data dir") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sst") {
                let bytes = std::fs::read(&path).expect("a readable table");
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

async fn tenant_entities(client: &mut Client) -> u64 {
    let stats = pb::GetTenantStatsRequest {
        tenant_id: "default".to_owned(),
        ..Default::default()
    };
    client
        .get_tenant_stats(request(stats, None))
        .await
        .expect("tenant stats")
        .into_inner()
        .stats
        .map_or(0, |s| s.entities)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_with_a_ttl_vanishes_from_every_read_and_from_disk_after_compaction() {
    let daemon = Daemon::start("");
    let mut client = daemon.client().await;
    let ephemeral = pb::Entity {
        ttl_secs: 2,
        ..entity("ephemeral", &[1.0, 0.0, 0.0], EPHEMERAL_TEXT, &["other"])
    };
    let written = Instant::now();
    put(&mut client, ephemeral).await.expect("a put with a TTL");
    let lasting = entity(
        "lasting",
        &[0.9, 0.1, 0.0],
        "a lasting note",
        &["ephemeral"],
    );
    put(&mut client, lasting).await.expect("a put");
    let other = entity("other", &[0.0, 1.0, 0.0], "another note", &[]);
    put(&mut client, other).await.expect("a put");
    let stored = get(&mut client, "ephemeral").await.expect("visible before");
    let now_nanos = allidb_storage::hlc::wall_nanos();
    let left = stored.expires_at_nanos - now_nanos;
    assert!(
        (0..=2_000_000_000).contains(&left),
        "expires about 2 s after the write: {left} ns left"
    );
    assert_eq!(stored.ttl_secs, 0, "reads carry the absolute time only");
    for (path, ids) in seen(&daemon, &mut client).await {
        assert!(
            ids.contains(&"ephemeral".to_owned()),
            "{path} before: {ids:?}"
        );
    }

    let expiry = Duration::from_nanos(u64::try_from(stored.expires_at_nanos - now_nanos).unwrap());
    tokio::time::sleep(expiry + Duration::from_millis(50)).await;
    assert!(
        written.elapsed() < Duration::from_secs(4),
        "the test ran slow"
    );
    for (path, ids) in seen(&daemon, &mut client).await {
        assert!(
            !ids.contains(&"ephemeral".to_owned()),
            "{path} after: {ids:?}"
        );
        if path == "traverse" {
            assert_eq!(ids, ["lasting"], "the walk does not pass through it");
        }
    }
    assert!(
        get(&mut client, "lasting").await.is_some(),
        "the others stay"
    );

    // Swept from the indexes, then from every table by a full compaction.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tenant_entities(&mut client).await != 2 {
        assert!(
            Instant::now() < deadline,
            "the expired entity is never swept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = allidb_json(&daemon, &["compact"])
        .output()
        .expect("allidb runs");
    assert!(output.status.success(), "{output:?}");
    let data = daemon.data_dir.clone();
    assert!(
        !tables_holding(&data, "a lasting note").is_empty(),
        "the search finds data"
    );
    assert_eq!(tables_holding(&data, EPHEMERAL_TEXT), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_default_ttl_applies_and_bad_expiry_input_names_its_field() {
    let daemon = Daemon::start("[storage]\ntenant_ttl_secs = [\"default=2\"]\n");
    let mut client = daemon.client().await;
    let before = allidb_storage::hlc::wall_nanos();
    put(&mut client, doc_entity("by-default", &[1.0, 0.0]))
        .await
        .expect("a put without a TTL");
    let own = pb::Entity {
        ttl_secs: 600,
        ..doc_entity("own-ttl", &[1.0, 0.0])
    };
    put(&mut client, own).await.expect("a put with its own TTL");
    let by_default = get(&mut client, "by-default").await.expect("written");
    let after = allidb_storage::hlc::wall_nanos();
    assert!(
        (before + 2_000_000_000..=after + 2_000_000_000).contains(&by_default.expires_at_nanos),
        "the tenant's 2 s: {by_default:?}"
    );
    let own = get(&mut client, "own-ttl").await.expect("written");
    assert!(
        own.expires_at_nanos >= before + 600_000_000_000,
        "its own TTL wins"
    );

    // HTTP and the CLI write through the same rules.
    let addr = daemon.http_addr.expect("an HTTP listener");
    let body = r#"{"entity": {"entity_id": "http-ttl", "ttl_secs": "30"}}"#;
    let reply = http_call(addr, "POST", "/entity", None, body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = http_call(addr, "GET", "/entity/http-ttl", None, "");
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let at = json["entity"]["expires_at_nanos"]
        .as_i64()
        .expect("a number");
    assert!(at >= before + 30_000_000_000, "{json}");
    let (code, _) = json_reply(
        allidb_json(&daemon, &["put", "--id", "cli-ttl", "--ttl", "45"])
            .output()
            .expect("allidb runs"),
    );
    assert_eq!(code, 0);
    let cli = get(&mut client, "cli-ttl").await.expect("written");
    assert!(cli.expires_at_nanos >= before + 45_000_000_000);
    let output = allidb_json(&daemon, &["put", "--id", "cli-bad", "--ttl", "-5"])
        .output()
        .expect("allidb runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("entity.ttl_secs must be"), "{stderr}");

    let now = allidb_storage::hlc::wall_nanos();
    for (bad, fragment) in [
        (
            pb::Entity {
                ttl_secs: -1,
                ..doc_entity("bad", &[1.0, 0.0])
            },
            "entity.ttl_secs must be 0 (none) or 1..=630720000",
        ),
        (
            pb::Entity {
                ttl_secs: 630_720_001,
                ..doc_entity("bad", &[1.0, 0.0])
            },
            "entity.ttl_secs must be",
        ),
        (
            pb::Entity {
                expires_at_nanos: now - 1_000_000_000,
                ..doc_entity("bad", &[1.0, 0.0])
            },
            "entity.expires_at_nanos",
        ),
        (
            pb::Entity {
                expires_at_nanos: -3,
                ..doc_entity("bad", &[1.0, 0.0])
            },
            "entity.expires_at_nanos must be",
        ),
        (
            pb::Entity {
                expires_at_nanos: now + 60_000_000_000,
                ttl_secs: 60,
                ..doc_entity("bad", &[1.0, 0.0])
            },
            "not both",
        ),
    ] {
        let status = put(&mut client, bad).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(fragment), "{status:?}");
    }
    assert!(get(&mut client, "bad").await.is_none(), "nothing written");
    let batch = pb::BatchPutEntitiesRequest {
        entities: vec![
            doc_entity("fine", &[1.0, 0.0]),
            pb::Entity {
                ttl_secs: -2,
                ..doc_entity("refused", &[1.0, 0.0])
            },
        ],
        ..Default::default()
    };
    let reply = client
        .batch_put_entities(request(batch, None))
        .await
        .expect("a batch answers per entity")
        .into_inner();
    assert_eq!((reply.success_count, reply.failure_count), (1, 1));
    assert!(
        reply.error_message.contains("entities[1].ttl_secs"),
        "{reply:?}"
    );

    // The tenant default expires what it applied to, at its time.
    let left = by_default.expires_at_nanos - allidb_storage::hlc::wall_nanos();
    if left > 0 {
        tokio::time::sleep(Duration::from_nanos(left as u64 + 50_000_000)).await;
    }
    assert!(
        get(&mut client, "by-default").await.is_none(),
        "expired by the default"
    );
    assert!(get(&mut client, "own-ttl").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entity_stays_gone_on_a_ring_through_hints_read_repair_and_repair() {
    use pb::ConsistencyLevel::{
        ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
    };
    let mut nodes = ring_of_three("");
    let mut client = nodes[0].client().await;
    let write = |entity: pb::Entity| pb::PutEntityRequest {
        entity: Some(entity),
        consistency_level: level(Quorum),
        ..Default::default()
    };
    let keep = doc_entity("keep", &[0.0, 1.0, 0.0]);
    client
        .put_entity(request(write(keep), None))
        .await
        .expect("a QUORUM write on a whole ring");
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    let expiring = pb::Entity {
        ttl_secs: 3,
        ..doc_entity("expiring", &[1.0, 0.0, 0.0])
    };
    let written = Instant::now();
    client
        .put_entity(request(write(expiring), None))
        .await
        .expect("a QUORUM write with one node down");
    assert!(
        found(&nodes[0], "expiring", Quorum).await.unwrap(),
        "visible at first"
    );
    wait_until("a hint kept for n2", Duration::from_secs(10), || {
        hints_pending(&nodes[0]) > 0 || hints_pending(&nodes[1]) > 0
    });
    let expired_at = written + Duration::from_secs(3) + Duration::from_millis(100);
    tokio::time::sleep(expired_at.saturating_duration_since(Instant::now())).await;
    assert!(!found(&nodes[0], "expiring", Quorum).await.unwrap());

    // n2 comes back after the expiry: the hint delivers the put, already expired.
    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered", Duration::from_secs(30), || {
        hints_pending(&nodes[0]) == 0 && hints_pending(&nodes[1]) == 0
    });
    for node in &nodes {
        assert!(!found(node, "expiring", One).await.unwrap(), "read at ONE");
        // A read at ALL merges every replica and repairs the stale ones.
        assert!(!found(node, "expiring", All).await.unwrap(), "read at ALL");
        assert!(found(node, "keep", All).await.unwrap());
    }
    for node in &nodes {
        let (code, reply) = repair(node, &[]);
        assert_eq!(code, 0, "{reply}");
    }
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            !found(node, "expiring", One).await.unwrap(),
            "n{i} after repair"
        );
    }
    // Every node's own indexes hold only "keep" (the expired entity was swept everywhere).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = held_per_node(&nodes[0]).await;
        if held.len() == 3 && held.iter().all(|(_, n)| *n == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a node still indexes it: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
