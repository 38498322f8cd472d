//! End-to-end test of the `Checkpoint` operation against a real `allidbd` with API keys:
//! taken under concurrent writes (read and write keys refused, bad targets refused naming the
//! field over gRPC and HTTP), then restored by starting a second daemon on the copy, which must
//! hold every write acknowledged before the request, found by id and by its vector.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allidb_api::pb;
use allidb_tests::auth::{
    ADMIN_KEY, Fixture, READ_KEY, WRITE_KEY, accepted, config, standard_keys,
};
use allidb_tests::{Client, Daemon, doc_entity, http_call, request};
use tonic::Code;

/// Acknowledged writes in acknowledgement order: entity id and vector.
type AckedWrites = Arc<Mutex<Vec<(String, Vec<f32>)>>>;

fn vector_of(writer: usize, n: usize) -> Vec<f32> {
    (0..8)
        .map(|d| ((writer * 7919 + n * 31 + d * 17) as f32 * 0.618).sin())
        .collect()
}

/// Puts entities until `stop`, recording each acknowledged id (after its reply) in `acked`.
async fn write_until_stopped(
    mut client: Client,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: AckedWrites,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{writer}-{n:06}");
        let vector = vector_of(writer, n);
        let message = pb::PutEntityRequest {
            entity: Some(doc_entity(&id, &vector)),
            ..Default::default()
        };
        client
            .put_entity(request(message, Some(WRITE_KEY)))
            .await
            .expect("writes succeed during the checkpoint");
        acked.lock().unwrap().push((id, vector));
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_under_concurrent_writes_restores_every_acknowledged_write() {
    let fx = Fixture::start(&standard_keys());
    let mut client = fx.daemon.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: AckedWrites = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..3 {
        let client = fx.daemon.client().await;
        writers.push(tokio::spawn(write_until_stopped(
            client,
            writer,
            stop.clone(),
            acked.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for key in [READ_KEY, WRITE_KEY] {
        let target = fx.next_target();
        let message = pb::CheckpointRequest {
            target_dir: target.display().to_string(),
        };
        let denied = client.checkpoint(request(message, Some(key))).await;
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied, "{key}");
        assert!(!target.exists());
    }

    let target = fx.next_target();
    let before: Vec<(String, Vec<f32>)> = acked.lock().unwrap().clone();
    let reply = client
        .checkpoint(request(
            pb::CheckpointRequest {
                target_dir: target.display().to_string(),
            },
            Some(ADMIN_KEY),
        ))
        .await
        .expect("the checkpoint is written")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("the writer finishes");
    }
    assert!(
        before.len() > 100,
        "only {} writes before the checkpoint",
        before.len()
    );
    assert!(reply.covered_seq >= before.len() as u64, "{reply:?}");
    assert!(reply.index_covered_seq <= reply.covered_seq, "{reply:?}");
    assert!(
        acked.lock().unwrap().len() > before.len(),
        "writes went on meanwhile"
    );

    // Refusals name the field: a target that is now not empty, a relative path (gRPC and HTTP).
    for (target_dir, code, needle) in [
        (
            target.display().to_string(),
            Code::FailedPrecondition,
            "not empty",
        ),
        ("relative/dir".to_owned(), Code::InvalidArgument, "absolute"),
    ] {
        let status = client
            .checkpoint(request(
                pb::CheckpointRequest {
                    target_dir: target_dir.clone(),
                },
                Some(ADMIN_KEY),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains("target_dir"), "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    let http = fx.daemon.http_addr.expect("allidbd serves HTTP");
    let body = serde_json::json!({ "target_dir": target }).to_string();
    let reply_412 = http_call(http, "POST", "/admin/checkpoint", Some(ADMIN_KEY), &body);
    assert_eq!(reply_412.status, 412, "{}", reply_412.body);

    // Restore: a second daemon on the checkpoint has every acknowledged write, searchable.
    let restored = Daemon::start_on_data_dir(&config(&fx.key_file), &target);
    let mut restored_client = restored.client().await;
    for (id, vector) in &before {
        let found = restored_client
            .get_entity(request(
                pb::GetEntityRequest {
                    entity_id: id.clone(),
                    ..Default::default()
                },
                Some(READ_KEY),
            ))
            .await
            .expect("get succeeds")
            .into_inner();
        let stored = found.entity.unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(&stored.embeddings[0].vector, vector, "{id}");
        let hits = restored_client
            .query(request(
                pb::QueryRequest {
                    query_vector: vector.clone(),
                    k: 10,
                    max_hops: Some(0),
                    ef: 200,
                    include_entity: Some(false),
                    ..Default::default()
                },
                Some(READ_KEY),
            ))
            .await
            .expect("query succeeds")
            .into_inner();
        assert!(
            hits.results.iter().any(|hit| &hit.entity_id == id),
            "{id} not found by its vector"
        );
    }
    // The source keeps serving after the checkpoint.
    assert!(accepted(&mut client, READ_KEY).await);
}
