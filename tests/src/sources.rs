//! The source-provenance calls the provenance tests make through one client (issue 39,
//! docs/api.md "Sources"): a batch written in the merge-sources mode, a `DeleteBySource`, and a
//! scan of the whole tenant page by page.
//!
//! Every helper panics with what failed: the tests use them for steps that must succeed.

use allidb_api::pb::{self, allidb_client::AlliDbClient};
use tonic::transport::Channel;

use crate::request;

/// Writes `entities` in one batch in the merge-sources mode; every one must be written.
pub async fn merge_put(client: &mut AlliDbClient<Channel>, entities: Vec<pb::Entity>) {
    let reply = client
        .batch_put_entities(request(
            pb::BatchPutEntitiesRequest {
                entities,
                mode: pb::WriteMode::MergeSources as i32,
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("the batch is written")
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
}

/// `DeleteBySource(source)`, which must succeed.
pub async fn delete_source(
    client: &mut AlliDbClient<Channel>,
    source: &str,
) -> pb::DeleteBySourceResponse {
    client
        .delete_by_source(request(
            pb::DeleteBySourceRequest {
                source_id: source.to_owned(),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect("the source is deleted")
        .into_inner()
}

/// Every entity of the tenant, in id order (a `RangeScan` followed page by page).
pub async fn scan_all(client: &mut AlliDbClient<Channel>) -> Vec<pb::Entity> {
    let mut entities = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .range_scan(request(
                pb::RangeScanRequest {
                    limit: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                None,
            ))
            .await
            .expect("the scan succeeds")
            .into_inner();
        entities.extend(page.entities);
        if page.next_page_token.is_empty() {
            return entities;
        }
        page_token = page.next_page_token;
    }
}
