//! End-to-end tests of a full data volume (docs/operations.md "Disk full and I/O errors"): the
//! daemon's data directory is on a small tmpfs the test mounts (as root; skipped with a message
//! when mounting is not permitted) and grows to simulate freeing space.
//!
//! They check what clients and operators see — exact gRPC codes and messages, `/readyz`,
//! `grpc.health.v1`, `HealthCheck`, the `allidb_engine_state` metric — that writes resume by
//! themselves once space returns, and that every acknowledged write is readable after the
//! recovery and after a restart (also after a graceful stop on a full volume).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use allidb_tests::tmpfs::Tmpfs;
use allidb_tests::{Daemon, doc_entity, http_get};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const NO_SPACE: &str = "no space left on device on the data volume";

/// Asserts `message` is the low-space refusal for a watermark of `watermark_mib` MiB:
/// `<NO_SPACE>: <free> MiB available, below the low-space watermark of ...`, with free below it.
fn assert_low_space(message: &str, watermark_mib: f64) {
    let rest = message
        .strip_prefix(&format!("{NO_SPACE}: "))
        .unwrap_or_else(|| panic!("not a no-space message: {message:?}"));
    let (free, rest) = rest
        .split_once(" MiB available, ")
        .unwrap_or_else(|| panic!("no free space in {message:?}"));
    let free: f64 = free
        .parse()
        .unwrap_or_else(|_| panic!("free space in {message:?}"));
    assert!(free < watermark_mib, "{message:?}");
    assert_eq!(
        rest,
        format!(
            "below the low-space watermark of {watermark_mib:.1} MiB (storage.min_free_bytes); \
             writes are refused until space is freed, then resume by themselves"
        ),
        "{message:?}"
    );
}

/// Fills the rest of `dir`'s volume with a file; returns its path.
fn fill_volume(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("the ballast file is created");
    for chunk in [64 << 10, 4 << 10, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).and_then(|()| file.flush()).is_ok() {}
    }
    path
}

fn readyz(daemon: &Daemon) -> (u16, String) {
    http_get(daemon.admin_addr.expect("the admin address"), "/readyz")
}

/// Waits up to 10 s for `/readyz` to answer `status`; returns its body.
fn wait_for_readyz(daemon: &Daemon, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = readyz(daemon);
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz is still {got} {body:?}, want {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `allidb_engine_state{state="<state>"}` in a scrape.
fn engine_state_gauge(daemon: &Daemon, state: &str) -> String {
    let (status, text) = http_get(daemon.admin_addr.expect("the admin address"), "/metrics");
    assert_eq!(status, 200);
    let prefix = format!("allidb_engine_state{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in the scrape"))
        .to_owned()
}

/// Waits up to 5 s for both `grpc.health.v1` services of `daemon` to report `want`; a timeout
/// names what `/readyz` and the engine-state metric say at that moment.
async fn wait_for_grpc_health(daemon: &Daemon, want: ServingStatus) {
    let mut health = HealthClient::new(daemon.channel().await);
    let deadline = Instant::now() + Duration::from_secs(5);
    for service in ["", "allidb.AlliDB"] {
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("the health service answers")
                .into_inner()
                .status;
            if status == want as i32 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{service:?} is {status}, want {want:?}; /readyz now {:?}, healthy gauge {}",
                readyz(daemon),
                engine_state_gauge(daemon, "healthy")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn entity(id: &str, text_bytes: usize) -> pb::Entity {
    let mut entity = doc_entity(id, &[1.0, id.len() as f32, 0.5]);
    entity.chunks = vec![pb::TextChunk {
        chunk_id: "c".to_owned(),
        text: "x".repeat(text_bytes),
        ..Default::default()
    }];
    entity
}

async fn put(
    client: &mut AlliDbClient<Channel>,
    id: &str,
    text_bytes: usize,
) -> Result<(), tonic::Status> {
    client
        .put_entity(pb::PutEntityRequest {
            entity: Some(entity(id, text_bytes)),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// Asserts every id is stored with its chunk of `text_bytes`.
async fn assert_readable(client: &mut AlliDbClient<Channel>, ids: &[String], text_bytes: usize) {
    for id in ids {
        let reply = client
            .get_entity(pb::GetEntityRequest {
                entity_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("reading {id}: {status:?}"))
            .into_inner();
        let entity = reply.entity.unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(entity.chunks[0].text.len(), text_bytes, "{id}");
    }
}

const TEXT: usize = 16 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_volume_refuses_writes_with_the_reason_then_recovers_without_a_restart() {
    // The reserve leaves room for the flush of the last memtable and for a compaction
    // rewriting every table (the WAL is kept until an index dump, so data is on disk twice).
    let Some(volume) = Tmpfs::mount("32m") else {
        return;
    };
    let config = "[storage]\nmemtable_bytes = 1048576\nmin_free_bytes = 16777216\n";
    let mut daemon = Daemon::start_on_data_dir(config, &volume.path().join("data"));
    assert_eq!(readyz(&daemon), (200, "ready\n".to_owned()));
    assert_eq!(engine_state_gauge(&daemon, "healthy"), "1");

    // Four writers until each is refused.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(daemon.client().await);
    }
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, mut client)| {
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    let id = format!("w{w}-{i}");
                    match put(&mut client, &id, TEXT).await {
                        Ok(()) => acked.lock().unwrap().push(id),
                        Err(status) => return status,
                    }
                }
                panic!("writer {w} was never refused on a 32 MiB volume");
            })
        })
        .collect();
    for writer in writers {
        let refused = writer.await.expect("the writer task ends");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert_low_space(refused.message(), 16.0);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged",
        acked.len()
    );
    println!(
        "{} writes of 16 KiB acknowledged before the watermark",
        acked.len()
    );

    let body = wait_for_readyz(&daemon, 503);
    let reason = body
        .strip_prefix("low_space: ")
        .and_then(|reason| reason.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("/readyz body {body:?}"));
    assert_low_space(reason, 16.0);
    wait_for_grpc_health(&daemon, ServingStatus::NotServing).await;
    let mut client = daemon.client().await;
    let health = client
        .health_check(pb::HealthCheckRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!health.healthy);
    assert_low_space(
        health
            .status
            .strip_prefix("low_space: ")
            .unwrap_or_else(|| panic!("HealthCheck status {:?}", health.status)),
        16.0,
    );
    assert_eq!(engine_state_gauge(&daemon, "low_space"), "1");
    assert_eq!(engine_state_gauge(&daemon, "healthy"), "0");
    let refused = put(&mut client, "late", TEXT).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_low_space(refused.message(), 16.0);
    // Reads are served meanwhile.
    assert_readable(&mut client, &acked[..10], TEXT).await;

    // The operator frees space: writes resume by themselves.
    volume.resize("64m");
    assert_eq!(wait_for_readyz(&daemon, 200), "ready\n");
    wait_for_grpc_health(&daemon, ServingStatus::Serving).await;
    assert_eq!(engine_state_gauge(&daemon, "healthy"), "1");
    let mut acked = acked;
    for i in 0..20 {
        let id = format!("after-{i}");
        put(&mut client, &id, TEXT)
            .await
            .expect("writes resume once space is freed");
        acked.push(id);
    }
    assert_readable(&mut client, &acked, TEXT).await;

    assert!(daemon.stop().success(), "log:\n{}", daemon.log());
    daemon.restart();
    let mut client = daemon.client().await;
    assert_readable(&mut client, &acked, TEXT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_on_a_full_volume_says_why_and_loses_nothing_acknowledged() {
    let Some(volume) = Tmpfs::mount("16m") else {
        return;
    };
    let config = "[storage]\nmemtable_bytes = 1048576\nmin_free_bytes = 1048576\n";
    let mut daemon = Daemon::start_on_data_dir(config, &volume.path().join("data"));
    let mut client = daemon.client().await;
    let ids: Vec<String> = (0..200).map(|i| format!("doc-{i}")).collect();
    for id in &ids {
        put(&mut client, id, 1024)
            .await
            .expect("a put on an empty volume");
    }
    let ballast = fill_volume(volume.path());
    // The engine reads the free space at most every 10 ms: a put right after the volume filled
    // could still pass the watermark check and fail on the full volume instead (refused too,
    // without the figures). Once `/readyz` reports the low space, the watermark refuses puts.
    let body = wait_for_readyz(&daemon, 503);
    assert!(body.starts_with("low_space: "), "/readyz body {body:?}");
    let refused = put(&mut client, "refused", 1024).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_low_space(refused.message(), 1.0);

    let status = daemon.stop();
    let log = daemon.log();
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(
        log.contains(
            "stopped without the final index dump (no space left on device on the data \
             volume); nothing acknowledged is lost: the next start catches the indexes up \
             from the WAL"
        ),
        "log:\n{log}"
    );

    std::fs::remove_file(ballast).expect("the ballast is removed");
    daemon.restart();
    let mut client = daemon.client().await;
    assert_readable(&mut client, &ids, 1024).await;
    // The indexes were caught up from the WAL: the vector query finds the entities.
    let reply = client
        .query(pb::QueryRequest {
            query_vector: vec![1.0, 5.0, 0.5],
            k: 5,
            ..Default::default()
        })
        .await
        .expect("the query succeeds")
        .into_inner();
    assert_eq!(reply.results.len(), 5, "{reply:?}");
}
