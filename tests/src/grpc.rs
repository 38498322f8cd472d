//! The gRPC calls and checks the `grpc*` tests share (`tests/grpc.rs`, `tests/grpc_tenants.rs`,
//! `tests/grpc_robustness.rs`): a put, get, scan and query through one client with an optional
//! API key, the expected error code of a refused call, and a health check that must pass.
//!
//! Every helper panics with what failed when a step that must succeed does not.

use allidb_api::pb;
use tonic::{Code, Response, Status};

use crate::{Client, request};

/// A `PutEntity` request for `entity` with every other field at its default.
pub fn put_request(entity: pb::Entity) -> pb::PutEntityRequest {
    pb::PutEntityRequest {
        entity: Some(entity),
        ..Default::default()
    }
}

/// The error code of `result`, which must have failed.
pub fn code<T: std::fmt::Debug>(result: Result<Response<T>, Status>) -> Code {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status.code(),
    }
}

/// Asserts `result` failed with `expected`; returns the message.
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<Response<T>, Status>,
    expected: Code,
) -> String {
    match result {
        Ok(response) => panic!("expected {expected:?}, got {:?}", response.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), expected, "{}", status.message());
            status.message().to_owned()
        }
    }
}

/// Puts `e` with `key`: the call's error, or a reply that must report success.
pub async fn put(client: &mut Client, key: Option<&str>, e: pb::Entity) -> Result<(), Status> {
    let response = client.put_entity(request(put_request(e), key)).await?;
    assert!(response.get_ref().success);
    Ok(())
}

/// `GetEntity(id)` with `key`, which must succeed: the entity when found.
pub async fn get(client: &mut Client, key: Option<&str>, id: &str) -> Option<pb::Entity> {
    let response = client
        .get_entity(request(
            pb::GetEntityRequest {
                entity_id: id.to_owned(),
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("get succeeds")
        .into_inner();
    assert_eq!(response.found, response.entity.is_some());
    response.entity
}

/// Every id `RangeScan` lists with `key`, paging `limit` at a time (0: the default page).
pub async fn scan_ids(client: &mut Client, key: Option<&str>, limit: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .range_scan(request(
                pb::RangeScanRequest {
                    limit,
                    page_token: token,
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("scan succeeds")
            .into_inner();
        let page_size = usize::try_from(limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(100);
        assert!(page.entities.len() <= page_size);
        ids.extend(page.entities.into_iter().map(|e| e.entity_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// `Query(q)` with `key`, which must succeed.
pub async fn query(
    client: &mut Client,
    key: Option<&str>,
    q: pb::QueryRequest,
) -> pb::QueryResponse {
    client
        .query(request(q, key))
        .await
        .expect("query succeeds")
        .into_inner()
}

/// A query by `vector` for `k` results, every other field at its default.
pub fn query_for(vector: &[f32], k: i32) -> pb::QueryRequest {
    pb::QueryRequest {
        query_vector: vector.to_vec(),
        k,
        ..Default::default()
    }
}

/// `HealthCheck` must report the daemon healthy.
pub async fn assert_healthy(client: &mut Client) {
    let health = client
        .health_check(pb::HealthCheckRequest {})
        .await
        .expect("HealthCheck answers")
        .into_inner();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.status, "healthy");
}

/// A unit vector along axis `i` of 4 dimensions, slightly tilted so entities are distinct.
pub fn axis(i: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![tilt; 4];
    v[i % 4] = 1.0;
    v
}
