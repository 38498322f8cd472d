//! Replication on a ring of three real daemons (RF 3) on loopback: consistency levels with one
//! and two nodes killed, hinted handoff (also across a restart of the coordinator, to the
//! coordinator's own refusing replica, past a damaged hint segment), the internal service
//! refusing calls without the cluster token, with a clock too far ahead, or with bad input
//! (naming the field), and a replica whose engine refuses writes or that sheds load getting a
//! hint instead of counting toward the level. Membership, read repair and TLS: `cluster.rs`.

use std::time::Duration;

use allidb_api::pb;
use allidb_cluster::credentials::ClusterCredentials;
use allidb_cluster::proto as internal;
use allidb_tests::ring::{
    SECRET, disjoint_spans, e2e_token, found, held_by, hints_for, hints_pending, host_id_of,
    internal_read, put, ring_of_three, ring_of_three_each, status, topology_version,
    wait_for_states, wait_until, with_token,
};
use allidb_tests::{Daemon, http_get};
use internal::replica_client::ReplicaClient;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_levels_and_hinted_handoff_with_nodes_killed() {
    use pb::ConsistencyLevel::{
        ConsistencyAll as All, ConsistencyOne as One, ConsistencyQuorum as Quorum,
    };
    let mut nodes = ring_of_three("");
    put(&nodes[0], "before", Quorum)
        .await
        .expect("QUORUM write on a whole ring");
    assert!(
        found(&nodes[1], "before", All).await.unwrap(),
        "replicated to every node"
    );

    // One node down: QUORUM writes and reads succeed, ALL fails naming the level and the node.
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    wait_for_states(&nodes[1], &one_down, Duration::from_secs(10));
    put(&nodes[0], "hinted", Quorum)
        .await
        .expect("QUORUM with one node down");
    assert!(found(&nodes[1], "hinted", Quorum).await.unwrap());
    let all = put(&nodes[0], "all", All).await.unwrap_err();
    assert_eq!(all.code(), Code::Unavailable, "{all:?}");
    assert!(
        all.message().contains("ALL") && all.message().contains("n2 (down)"),
        "{}",
        all.message()
    );
    let read_all = found(&nodes[0], "before", All).await.unwrap_err();
    assert_eq!(read_all.code(), Code::Unavailable, "{read_all:?}");
    let (_, metrics) = http_get(nodes[0].admin_addr.unwrap(), "/metrics");
    for series in [
        "allidb_cluster_node_up{peer=\"n2\"} 0",
        "allidb_cluster_node_up{peer=\"n1\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }

    // Two nodes down: QUORUM fails, ONE succeeds.
    nodes[1].kill();
    let two_down = [("n0", "normal"), ("n1", "down"), ("n2", "down")];
    wait_for_states(&nodes[0], &two_down, Duration::from_secs(10));
    let quorum = put(&nodes[0], "quorum", Quorum).await.unwrap_err();
    assert_eq!(quorum.code(), Code::Unavailable, "{quorum:?}");
    assert!(quorum.message().contains("QUORUM"), "{}", quorum.message());
    put(&nodes[0], "one", One)
        .await
        .expect("ONE with two nodes down");
    assert!(
        hints_pending(&nodes[0]) > 0,
        "hints kept for the down nodes"
    );
    // A write acknowledged at ONE stores the hints of the down replicas in the background:
    // wait for both before the coordinator is killed.
    wait_until("hints kept for n1 and n2", Duration::from_secs(10), || {
        hints_for(&nodes[0], "n1") > 0 && hints_for(&nodes[0], "n2") > 0
    });

    // The coordinator restarts with undelivered hints, then the others come back: the hints
    // reach them without any read touching the entities (each read below is at ONE, answered
    // by the node's own store).
    nodes[0].restart();
    nodes[1].restart();
    nodes[2].restart();
    let all_normal = [("n0", "normal"), ("n1", "normal"), ("n2", "normal")];
    for node in &nodes {
        wait_for_states(node, &all_normal, Duration::from_secs(30));
    }
    wait_until("hints delivered", Duration::from_secs(30), || {
        hints_pending(&nodes[0]) == 0
    });
    for node in &nodes[1..] {
        for id in ["hinted", "one"] {
            assert!(found(node, id, One).await.unwrap(), "{id} on its own store");
        }
    }
    assert!(
        found(&nodes[0], "one", Quorum).await.unwrap(),
        "ONE's write read back at QUORUM"
    );

    // The replica service refuses calls without this cluster's token.
    let mut internal = ReplicaClient::new(nodes[0].channel().await);
    let n0 = host_id_of(&nodes[0], "n0");
    let version = topology_version(&nodes[0]);
    for token in [
        None,
        Some(ClusterCredentials::new("other", SECRET).token().to_owned()),
    ] {
        let refused = internal
            .read_partitions(internal_read(&n0, version, "before", token))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    // A call addressed to another host (a stale address) is refused too.
    let misdirected = internal
        .read_partitions(internal_read(
            &host_id_of(&nodes[0], "n1"),
            version,
            "before",
            Some(e2e_token()),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        misdirected.code(),
        Code::FailedPrecondition,
        "{misdirected:?}"
    );
    assert!(
        misdirected.message().contains("header.recipient"),
        "{}",
        misdirected.message()
    );
    let cells = internal
        .read_partitions(internal_read(&n0, version, "before", Some(e2e_token())))
        .await
        .expect("a member's call");
    let stored = cells.into_inner().partitions[0].cells.clone();
    assert!(!stored.is_empty());
    // A call planned on a ring older than the node's fence (raised by every movement's
    // barrier: the joins that formed this ring) is refused, naming the field.
    let fenced = internal
        .read_partitions(internal_read(&n0, 0, "before", Some(e2e_token())))
        .await
        .unwrap_err();
    assert_eq!(fenced.code(), Code::FailedPrecondition, "{fenced:?}");
    assert!(
        fenced.message().starts_with("header.ring_version:"),
        "{}",
        fenced.message()
    );

    // A replica write timestamped past cluster.max_clock_skew_ms (10 s by default) ahead of the
    // node's clock is refused, naming the field; one within it is applied.
    let mutate = |ahead: Duration| {
        let mut cell = stored[0].clone();
        cell.timestamp_micros = allidb_storage::hlc::wall_micros() + ahead.as_micros() as u64;
        with_token(internal::MutateRequest {
            header: internal_read(&n0, version, "before", None)
                .into_inner()
                .header,
            cells: vec![cell],
            ..Default::default()
        })
    };
    let skewed = internal
        .mutate(mutate(Duration::from_secs(3600)))
        .await
        .unwrap_err();
    assert_eq!(skewed.code(), Code::FailedPrecondition, "{skewed:?}");
    assert!(
        skewed.message().starts_with("cells[0].timestamp_micros:")
            && skewed.message().contains("cluster.max_clock_skew_ms"),
        "{}",
        skewed.message()
    );
    assert!(nodes[0].metric("allidb_cluster_clock_skew_refused_total", &[]) >= 1.0);
    internal
        .mutate(mutate(Duration::from_secs(1)))
        .await
        .expect("a skew within the bound is applied");

    // Several partitions in one call: each answered in request order, an invalid id failing
    // only its own; more than the limit refused, naming the field.
    let mut several = internal_read(&n0, version, "", Some(e2e_token()));
    let asked = &mut several.get_mut().partitions;
    asked.push(internal::PartitionRead {
        tenant: "default".to_owned(),
        entity_id: "before".to_owned(),
        digest_only: true,
    });
    let answered = internal
        .read_partitions(several)
        .await
        .expect("a member's call")
        .into_inner()
        .partitions;
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert!(answered[0].error.contains("id"), "{:?}", answered[0]);
    assert!(answered[1].error.is_empty() && answered[1].cells.is_empty());
    assert_eq!(answered[1].digest.len(), 16, "{:?}", answered[1]);
    let mut too_many = internal_read(&n0, version, "before", Some(e2e_token()));
    let one = too_many.get_ref().partitions[0].clone();
    too_many.get_mut().partitions = vec![one; allidb_cluster::replica::MAX_PARTITIONS_PER_READ + 1];
    let refused = internal.read_partitions(too_many).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("partitions:"), "{refused:?}");

    // The anti-entropy and streaming calls refuse bad input INVALID_ARGUMENT, naming the field.
    let header = internal_read(&n0, version, "before", None)
        .into_inner()
        .header;
    let shape = |depth| internal::TreeShape {
        start: 1,
        end: 1,
        depth,
    };
    let trees = |trees| internal::MerkleTreesRequest {
        header: header.clone(),
        trees,
        ..Default::default()
    };
    let stream = |damage: fn(&mut internal::StreamRangeRequest)| {
        let mut message = internal::StreamRangeRequest {
            header: header.clone(),
            session_id: format!("{:032x}", 7),
            spans: vec![internal::TokenSpan { start: 1, end: 1 }],
            max_bytes: 1 << 20,
            ..Default::default()
        };
        damage(&mut message);
        message
    };
    let corpus = |damage: fn(&mut internal::CorpusStatsRequest)| {
        let mut message = internal::CorpusStatsRequest {
            header: header.clone(),
            tenant: "default".to_owned(),
            spans: vec![internal::TokenSpan { start: 1, end: 1 }],
            terms: vec!["word".to_owned()],
        };
        damage(&mut message);
        message
    };
    let text = |damage: fn(&mut internal::TextSearch)| {
        let mut text = internal::TextSearch {
            terms: vec!["word".to_owned()],
            docs: 1,
            total_len: 1,
            doc_freqs: vec![1],
        };
        damage(&mut text);
        text
    };
    let refusals = [
        (
            internal
                .merkle_trees(with_token(trees(vec![shape(17)])))
                .await
                .map(drop),
            "trees[0].depth",
        ),
        (
            internal
                .merkle_trees(with_token(trees(vec![shape(16); 17])))
                .await
                .map(drop),
            "trees:",
        ),
        (
            internal
                .stream_range(with_token(stream(|m| m.max_bytes = 0)))
                .await
                .map(drop),
            "max_bytes",
        ),
        (
            internal
                .stream_range(with_token(stream(|m| m.spans.clear())))
                .await
                .map(drop),
            "spans",
        ),
        (
            internal
                .stream_range(with_token(stream(|m| m.spans = disjoint_spans(16_385))))
                .await
                .map(drop),
            "spans: 16385 token ranges",
        ),
        (
            internal
                .stream_range(with_token(stream(|m| m.session_id = "x".to_owned())))
                .await
                .map(drop),
            "session_id",
        ),
        (
            internal
                .corpus_stats(with_token(corpus(|m| m.spans = disjoint_spans(16_385))))
                .await
                .map(drop),
            "spans: 16385 token ranges",
        ),
        (
            internal
                .corpus_stats(with_token(corpus(|m| m.terms.clear())))
                .await
                .map(drop),
            "terms: 0 terms",
        ),
        (
            internal
                .corpus_stats(with_token(corpus(|m| m.terms = vec!["w".to_owned(); 1025])))
                .await
                .map(drop),
            "terms: 1025 terms",
        ),
        (
            internal
                .search_seeds(with_token(internal::SearchSeedsRequest {
                    header: header.clone(),
                    tenant: "default".to_owned(),
                    count: 10,
                    text: Some(text(|t| t.doc_freqs.push(1))),
                    ..Default::default()
                }))
                .await
                .map(drop),
            "text.doc_freqs: 2 document frequencies for 1 query terms",
        ),
        (
            internal
                .search_seeds(with_token(internal::SearchSeedsRequest {
                    header: header.clone(),
                    tenant: "default".to_owned(),
                    count: 10,
                    text: Some(text(|t| t.terms.clear())),
                    ..Default::default()
                }))
                .await
                .map(drop),
            "text.terms: 0 terms",
        ),
        (
            internal
                .expand_hop(with_token(internal::ExpandHopRequest {
                    header: header.clone(),
                    tenant: "default".to_owned(),
                    entity_ids: vec!["before".to_owned()],
                    text: Some(text(|t| t.doc_freqs.clear())),
                    ..Default::default()
                }))
                .await
                .map(drop),
            "text.doc_freqs: 0 document frequencies for 1 query terms",
        ),
    ];
    for (refused, field) in refusals {
        let refused = refused.expect_err(field);
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    internal
        .stream_range(with_token(stream(|_| {})))
        .await
        .expect("a valid stream chunk");
    internal
        .stream_range(with_token(stream(|m| m.spans = disjoint_spans(16_384))))
        .await
        .expect("a stream chunk of as many token ranges as a call may name");
    let counted = internal
        .corpus_stats(with_token(corpus(|m| {
            m.spans = disjoint_spans(16_384);
            m.terms = vec!["w".to_owned(); 1024];
        })))
        .await
        .expect("corpus statistics over as many ranges and terms as a call may name")
        .into_inner();
    assert_eq!(counted.doc_freqs.len(), 1024, "one frequency per term");

    // Clock: no header is refused naming it, no cluster token UNAUTHENTICATED, a valid call
    // answers the node's clock (at or above the wall clock, in microseconds).
    let refused = internal
        .clock(with_token(internal::ClockRequest { header: None }))
        .await
        .expect_err("no header");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("header"), "{refused:?}");
    let clock = internal::ClockRequest {
        header: header.clone(),
    };
    let refused = internal
        .clock(tonic::Request::new(clock.clone()))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let before = allidb_storage::hlc::wall_micros();
    let now = internal
        .clock(with_token(clock))
        .await
        .expect("a clock reading")
        .into_inner()
        .now_micros;
    assert!(now >= before, "{now} < {before}");
}

/// The engine state `daemon`'s status shows for node `name`, once gossiped.
fn engine_state_of(daemon: &Daemon, name: &str) -> Option<String> {
    status(daemon)["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)?["engine_state"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_engine_refuses_writes_gets_hints_not_writes() {
    use pb::ConsistencyLevel::{ConsistencyAll as All, ConsistencyQuorum as Quorum};
    // n2's low-space watermark (1 TiB, the largest allowed) exceeds this disk: its engine refuses
    // writes from the start.
    let nodes = ring_of_three_each(|i| match i {
        2 => "\n[storage]\nmin_free_bytes = 1099511627776\n".to_owned(),
        _ => String::new(),
    });
    wait_until(
        "n0 hears n2's engine state",
        Duration::from_secs(10),
        || engine_state_of(&nodes[0], "n2").as_deref() == Some("low_space"),
    );
    assert_eq!(engine_state_of(&nodes[0], "n1").as_deref(), Some("healthy"));
    put(&nodes[0], "kept-for-n2", Quorum)
        .await
        .expect("QUORUM from n0 and n1");
    // The hint is stored beside the acknowledgement, not before it (as for a replica down).
    wait_until("a hint kept for n2", Duration::from_secs(5), || {
        hints_pending(&nodes[0]) > 0
    });
    let all = put(&nodes[0], "all", All).await.unwrap_err();
    assert_eq!(all.code(), Code::Unavailable, "{all:?}");
    assert!(
        all.message()
            .contains("n2 (refusing writes: engine low_space)"),
        "not counted toward the level, and not sent a write: {}",
        all.message()
    );
    // It still serves reads.
    assert!(found(&nodes[0], "kept-for-n2", All).await.unwrap());
    // Coordinated by n2, its own refused write is hinted too (delivered once its engine
    // accepts writes again), not lost until a repair.
    assert_eq!(hints_for(&nodes[2], "n2"), 0);
    put(&nodes[2], "through-n2", Quorum)
        .await
        .expect("QUORUM from n0 and n1");
    wait_until("n2 keeps a hint for itself", Duration::from_secs(5), || {
        hints_for(&nodes[2], "n2") > 0
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_hint_segment_is_set_aside_and_later_hints_are_still_delivered() {
    use pb::ConsistencyLevel::ConsistencyQuorum as Quorum;
    let mut nodes = ring_of_three("");
    let n2 = host_id_of(&nodes[0], "n2");
    nodes[2].kill();
    let one_down = [("n0", "normal"), ("n1", "normal"), ("n2", "down")];
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(10));
    // Two hints in n0's first segment for n2, one in a second (a restart seals the first).
    for id in ["h1", "h2"] {
        put(&nodes[0], id, Quorum).await.expect("QUORUM, n2 down");
    }
    nodes[0].restart();
    wait_for_states(&nodes[0], &one_down, Duration::from_secs(30));
    put(&nodes[0], "h3", Quorum).await.expect("QUORUM, n2 down");
    let first = nodes[0]
        .data_dir
        .join("cluster/hints")
        .join(&n2)
        .join("000001.hints");
    let mut bytes = std::fs::read(&first).expect("the first segment");
    let middle = bytes.len() / 4;
    bytes[middle] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    nodes[2].restart();
    wait_until(
        "n0 delivers what it can to n2",
        Duration::from_secs(30),
        || hints_for(&nodes[0], "n2") == 0,
    );
    assert_eq!(
        nodes[0].metric("allidb_cluster_hint_segments_damaged_total", &[]),
        1.0
    );
    assert!(nodes[0].metric("allidb_cluster_hints_delivered_total", &[]) >= 1.0);
    let mut kept = first.into_os_string();
    kept.push(".damaged");
    assert!(std::path::Path::new(&kept).exists(), "kept for an operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_sheds_load_gets_a_hint_and_is_not_counted() {
    use pb::ConsistencyLevel::{ConsistencyAll as All, ConsistencyQuorum as Quorum};
    // n2's request budget is one largest message (1 MiB); replica writes share it.
    let nodes = ring_of_three_each(|i| match i {
        2 => "\n[server]\nmax_request_bytes = 1048576\nmax_inflight_request_bytes = 1048576\n\
              admission_wait_ms = 100\n"
            .to_owned(),
        _ => String::new(),
    });
    // An open BulkPutEntities stream holds all of n2's budget (a stream is charged the largest
    // message until it ends).
    let held = nodes[2].hold_bulk_stream(None).await;
    wait_until("n2's budget is held", Duration::from_secs(10), || {
        nodes[2].metric("allidb_request_budget_in_use_bytes", &[]) >= 1_048_576.0
    });
    put(&nodes[0], "shed-by-n2", Quorum)
        .await
        .expect("QUORUM from n0 and n1");
    // The QUORUM write returns once n0 and n1 acknowledged; n2 refuses after its 100 ms wait.
    wait_until("a hint kept for n2", Duration::from_secs(5), || {
        hints_pending(&nodes[0]) > 0
    });
    let all = put(&nodes[0], "all", All).await.unwrap_err();
    assert_eq!(all.code(), Code::Unavailable, "{all:?}");
    // (A put reads the stored state at its level first: n2 sheds that read, so nothing of
    // "all" is written anywhere.)
    assert!(
        all.message().contains("n2") && all.message().contains("server.max_inflight_request_bytes"),
        "the shedding replica is not counted toward ALL, and the reason is its budget: {}",
        all.message()
    );
    assert!(nodes[2].metric("allidb_requests_shed_total", &[("budget", "node")]) >= 2.0);
    // Once the budget is free, the hints reach n2.
    held.abort();
    wait_until("hints delivered to n2", Duration::from_secs(30), || {
        hints_pending(&nodes[0]) == 0
    });
    let (ids, _) = held_by(&nodes[2]).await;
    assert!(
        ids.iter().any(|id| id == "shed-by-n2"),
        "n2 holds the QUORUM write by hint: {ids:?}"
    );
}
