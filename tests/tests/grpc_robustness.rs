//! End-to-end tests of the gRPC API's robustness against a real `allidbd` (WIRE.md §1): bad
//! input (the daemon keeps serving after each), acknowledged writes surviving SIGKILL and a
//! graceful restart, startup refusals of bad configuration, and a full vector tail refusing
//! writes until the indexer makes room. The rest of the API is in `grpc.rs`.

use std::process::Stdio;

use allidb_api::pb;
use allidb_tests::grpc::{
    assert_healthy, axis, expect_code, get, put, put_request, query, query_for, scan_ids,
};
use allidb_tests::{Daemon, doc_entity, request};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start("[server]\nmax_request_bytes = 65536\n");
    let mut client = daemon.client().await;
    put(&mut client, None, doc_entity("ok", &[1.0, 0.0, 0.0]))
        .await
        .unwrap();

    let mut huge = doc_entity("huge", &[1.0, 0.0, 0.0]);
    huge.chunks.push(pb::TextChunk {
        chunk_id: "c".into(),
        text: "x".repeat(100_000),
        ..Default::default()
    });
    let long_id = "i".repeat(513);
    let cases: Vec<(&str, pb::PutEntityRequest, Code)> = vec![
        ("oversized message", put_request(huge), Code::OutOfRange),
        (
            "NaN",
            put_request(doc_entity("n", &[f32::NAN, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "infinity",
            put_request(doc_entity("n", &[f32::INFINITY, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "wrong dimension",
            put_request(doc_entity("n", &[1.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "empty id",
            put_request(doc_entity("", &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "oversized id",
            put_request(doc_entity(&long_id, &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
        (
            "NUL in id",
            put_request(doc_entity("a\0b", &[1.0, 0.0, 0.0])),
            Code::InvalidArgument,
        ),
    ];
    for (what, put_request, expected) in cases {
        let message = expect_code(client.put_entity(put_request).await, expected);
        assert!(!message.is_empty(), "{what}");
        assert_healthy(&mut client).await;
    }
    let dimension = expect_code(
        client
            .put_entity(put_request(doc_entity("n", &[1.0, 0.0])))
            .await,
        Code::InvalidArgument,
    );
    assert!(dimension.contains("dimension"), "{dimension}");

    let queries = [
        query_for(&[f32::NAN, 0.0, 0.0], 1),
        query_for(&[f32::NEG_INFINITY, 0.0, 0.0], 1),
        query_for(&[1.0, 0.0], 1),
        query_for(&[1.0, 0.0, 0.0], 1_000_000),
    ];
    for q in queries {
        expect_code(client.query(q).await, Code::InvalidArgument);
        assert_healthy(&mut client).await;
    }
    for token in ["%%%", "AA", "Ag"] {
        expect_code(
            client
                .range_scan(pb::RangeScanRequest {
                    page_token: token.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
        assert_healthy(&mut client).await;
    }
    expect_code(
        client
            .get_entity(pb::GetEntityRequest {
                entity_id: long_id.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(get(&mut client, None, "ok").await.is_some());
    assert_healthy(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_graceful_restart() {
    const N: usize = 120;
    let mut daemon = Daemon::start("[storage]\ndurability = \"sync\"\n");
    let mut client = daemon.client().await;
    for i in 0..N {
        put(
            &mut client,
            None,
            doc_entity(&format!("e{i:04}"), &axis(i, i as f32 / N as f32)),
        )
        .await
        .unwrap();
    }
    daemon.kill();
    daemon.restart();

    let mut client = daemon.client().await;
    for i in 0..N {
        let id = format!("e{i:04}");
        let found = get(&mut client, None, &id)
            .await
            .unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(found.embeddings[0].vector, axis(i, i as f32 / N as f32));
    }
    let ids = scan_ids(&mut client, None, 50).await;
    assert_eq!(ids.len(), N);
    let probe = axis(7, 7.0 / N as f32);
    let top = query(
        &mut client,
        None,
        pb::QueryRequest {
            max_hops: Some(0),
            ..query_for(&probe, 3)
        },
    )
    .await;
    assert_eq!(top.results[0].entity_id, "e0007");

    // A graceful stop exits 0 and keeps everything too.
    put(
        &mut client,
        None,
        doc_entity("after-restart", &axis(0, 0.9)),
    )
    .await
    .unwrap();
    let status = daemon.stop();
    assert!(status.success(), "{status:?}; log:\n{}", daemon.log());
    daemon.restart();
    let mut client = daemon.client().await;
    assert!(get(&mut client, None, "after-restart").await.is_some());
    assert_eq!(scan_ids(&mut client, None, 1000).await.len(), N + 1);
}

/// Runs `allidbd` with `args` (and no config file), expecting it to refuse to start.
fn refused_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(allidb_tests::allidbd_binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("ALLIDB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    let unknown = refused_start(&["--set", "index.bogus=1"]);
    assert!(unknown.contains("index.bogus"), "{unknown}");
    let range = refused_start(&["--set", "index.m=1"]);
    assert!(range.contains("index.m"), "{range}");
    let open = refused_start(&["--grpc-addr", "0.0.0.0:0"]);
    assert!(open.contains("server.grpc_addr"), "{open}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_vector_tail_refuses_writes_until_the_indexer_makes_room() {
    let daemon = Daemon::start("[index]\nmax_unindexed_vectors = 1\nmax_tail_wait_ms = 0\n");
    let mut client = daemon.client().await;
    let batch = |prefix: &str| pb::BatchPutEntitiesRequest {
        entities: (0..256)
            .map(|i| {
                let vector: Vec<f32> = (0..384).map(|d| ((i * 7 + d) % 13) as f32).collect();
                doc_entity(&format!("{prefix}{i:03}"), &vector)
            })
            .collect(),
        ..Default::default()
    };
    // 256 vectors fill a tail of 1 until the indexer has inserted them into HNSW.
    let first = client.batch_put_entities(request(batch("a"), None)).await;
    assert!(first.unwrap().into_inner().success);
    let message = expect_code(
        client.batch_put_entities(request(batch("b"), None)).await,
        Code::ResourceExhausted,
    );
    assert!(
        message.contains("index.max_unindexed_vectors") && message.contains("retry later"),
        "{message}"
    );
    assert!(
        get(&mut client, None, "b000").await.is_none(),
        "a refused batch writes nothing"
    );
    // Writes without a vector never wait for the index.
    let no_vector = pb::Entity {
        entity_id: "plain".to_owned(),
        ..Default::default()
    };
    put(&mut client, None, no_vector).await.unwrap();
    // Once the indexer has caught up, the same batch goes through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match client.batch_put_entities(request(batch("b"), None)).await {
            Ok(reply) => {
                assert!(reply.into_inner().success);
                break;
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the tail never drained"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert!(get(&mut client, None, "b255").await.is_some());
}
