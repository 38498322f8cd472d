//! The ring-wide check of attribute types against fake replicas and an in-memory record: a key
//! new to the ring is checked on a replica of every range and recorded, a recorded key costs no
//! call, a replica holding another type refuses the put, a record lost to a racing coordinator
//! is checked again (four attempts), and a range without a live replica fails the put.

use std::sync::Arc;

use allidb_index::filter::AttrType;
use allidb_storage::cell::{AttributeValue, EntityWrite};

use super::{Coordinator, FakeReplicas, FakeTypeLog, Fixture, TENANT, coordinator_at, doc, host};
use crate::ClusterError;
use crate::consistency::ConsistencyLevel;

/// Document `id` giving `key` the value `value`.
fn doc_with(id: &str, key: &str, value: AttributeValue) -> EntityWrite {
    let mut write = doc(id);
    write.body.typed_attributes.insert(key.to_owned(), value);
    write
}

/// Puts document `id` giving `key` the value `value`, at ONE.
async fn put_one(
    coordinator: &Coordinator,
    id: &str,
    key: &str,
    value: AttributeValue,
) -> Result<(), ClusterError> {
    coordinator
        .put_entities(
            TENANT,
            vec![doc_with(id, key, value)],
            ConsistencyLevel::One,
        )
        .await
}

/// A coordinator on host 1 of the three-host test ring at replication factor 2: host 1 holds
/// two of the three ranges, so every check asks another host.
fn fixture(
    dir: &std::path::Path,
    replicas: &Arc<FakeReplicas>,
    types: &Arc<FakeTypeLog>,
) -> Fixture {
    coordinator_at(dir, replicas.clone(), false, 2, types.clone())
}

#[tokio::test]
async fn a_new_key_is_checked_on_every_range_then_recorded_and_a_recorded_one_costs_no_call() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let types = Arc::new(FakeTypeLog::default());
    let Fixture { coordinator, .. } = fixture(dir.path(), &replicas, &types);
    put_one(&coordinator, "a", "version", AttributeValue::Int(3))
        .await
        .expect("no replica holds the key");
    let checks = replicas.type_checks.lock().clone();
    assert_eq!(
        checks.len(),
        1,
        "one other host completes the cover: {checks:?}"
    );
    assert_ne!(
        checks[0].0,
        host(1),
        "this node's own store is checked locally"
    );
    assert_eq!(checks[0].1[0].key, "version");
    assert_eq!(checks[0].1[0].family, AttrType::Number);
    assert_eq!(
        types.state.lock().attribute_type(TENANT, "version"),
        Some(AttrType::Number)
    );
    assert_eq!(
        *types.awaited.lock(),
        [1],
        "the put waits until every node applied the record"
    );
    // The same type again: recorded, so no host is asked and nothing is recorded.
    put_one(&coordinator, "b", "version", AttributeValue::Float(4.5))
        .await
        .expect("the recorded type");
    assert_eq!(replicas.type_checks.lock().len(), 1);
    assert_eq!(*types.records.lock(), 1);
}

#[tokio::test]
async fn a_replica_holding_the_key_as_another_type_refuses_the_put_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let refusal = "entity c: attribute \"version\" is a string but tenant \"t\" holds it as number";
    for h in [2, 3] {
        replicas
            .holding_types
            .lock()
            .insert(host(h), refusal.to_owned());
    }
    let types = Arc::new(FakeTypeLog::default());
    let Fixture { coordinator, .. } = fixture(dir.path(), &replicas, &types);
    let error = put_one(
        &coordinator,
        "c",
        "version",
        AttributeValue::String("x".into()),
    )
    .await
    .expect_err("another host holds the key as a number");
    match &error {
        ClusterError::Store(allidb_index::Error::InvalidArgument(message)) => {
            assert_eq!(message, refusal)
        }
        other => panic!("not the replica's refusal: {other}"),
    }
    assert_eq!(*types.records.lock(), 0);
    assert!(
        replicas.cells(host(1), "c").is_empty(),
        "the put was written"
    );
}

#[tokio::test]
async fn a_record_lost_to_a_racing_coordinator_is_checked_again_from_the_new_record() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let types = Arc::new(FakeTypeLog::default());
    let Fixture { coordinator, .. } = fixture(dir.path(), &replicas, &types);
    // Another coordinator recorded "lang" as a string list; this node has not applied it yet.
    coordinator
        .put_entities(
            TENANT,
            vec![doc_with(
                "d",
                "lang",
                AttributeValue::StringList(vec!["en".into()]),
            )],
            ConsistencyLevel::One,
        )
        .await
        .expect("a first record");
    types.lagging.lock().insert("lang".to_owned(), None);
    replicas.type_checks.lock().clear();
    put_one(&coordinator, "e", "lang", AttributeValue::Bool(true))
        .await
        .expect("no replica holds the key (the fakes hold no types)");
    // Checked from "none", refused by the log (it holds string_list), checked again from the
    // record the log answered and recorded over it.
    assert_eq!(*types.records.lock(), 3);
    assert_eq!(
        types.awaited.lock().last().copied(),
        Some(types.state.lock().attribute_types_version),
        "the put waits until every node applied the newest record"
    );
    assert_eq!(replicas.type_checks.lock().len(), 2);
    assert_eq!(
        types.state.lock().attribute_type(TENANT, "lang"),
        Some(AttrType::Bool)
    );
}

#[tokio::test]
async fn a_range_without_a_live_replica_fails_a_put_with_a_new_key_and_a_failed_host_is_replaced() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let types = Arc::new(FakeTypeLog::default());
    let Fixture { coordinator, .. } = fixture(dir.path(), &replicas, &types);
    // Host 2 fails: host 3 holds the range host 1 lacks.
    replicas.failing.lock().insert(host(2));
    put_one(&coordinator, "f", "year", AttributeValue::Int(2026))
        .await
        .expect("host 3 replaces host 2");
    let asked: Vec<_> = replicas.type_checks.lock().iter().map(|c| c.0).collect();
    assert_eq!(asked, [host(3)]);
    // Hosts 2 and 3 fail: the range (host 1's token, host 2's token] has no live replica.
    replicas.failing.lock().insert(host(3));
    let error = put_one(&coordinator, "g", "month", AttributeValue::Int(11))
        .await
        .expect_err("a range cannot be checked")
        .to_string();
    assert!(
        error.contains("attributes \"month\" are new")
            && error.contains("1 of 3 ranges have no live replica")
            && error.contains("hosts down or failing"),
        "{error}"
    );
    assert_eq!(types.state.lock().attribute_type(TENANT, "month"), None);
}

#[tokio::test]
async fn a_put_is_accepted_when_its_record_lands_on_the_last_attempt_and_refused_after() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let replicas = Arc::new(FakeReplicas::default());
    let types = Arc::new(FakeTypeLog::default());
    let Fixture { coordinator, .. } = fixture(dir.path(), &replicas, &types);
    // Three other coordinators record first: the fourth attempt records.
    *types.racing.lock() = 3;
    put_one(&coordinator, "h", "stage", AttributeValue::Timestamp(1))
        .await
        .expect("recorded on the fourth attempt");
    assert_eq!(*types.records.lock(), 4);
    assert_eq!(
        types.state.lock().attribute_type(TENANT, "stage"),
        Some(AttrType::Timestamp)
    );
    // Four of them: the put gives up, naming why.
    *types.racing.lock() = 4;
    let error = put_one(&coordinator, "i", "stage", AttributeValue::Int(2))
        .await
        .expect_err("every attempt lost")
        .to_string();
    assert!(error.contains("changed 4 times"), "{error}");
    assert!(
        replicas.cells(host(1), "i").is_empty(),
        "the put was written"
    );
}
