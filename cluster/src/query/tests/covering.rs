//! Reads over a covering set of the fake ring, against what one host holding everything
//! answers: candidate search (the global best, each host's share of the ef), scan pages at ONE
//! and QUORUM, tenant figures counting each entity once, and a routing key asking the same
//! replicas whichever host coordinates.

use super::*;

#[test]
fn candidates_from_the_covering_set_are_the_global_best_deduplicated() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(4));
    let runtime = runtime();
    let search = vector_search(10);
    let seeds = runtime.block_on(fanout.seeds(search.clone())).unwrap();
    let ids: Vec<&str> = seeds.vector.iter().map(|s| &*s.hit.entity_id).collect();
    let expected: Vec<String> = (290..300).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(ids, expected);
    let asked: HashSet<HostId> = fake.calls.lock().keys().copied().collect();
    assert!(
        asked.contains(&HostId::from_u128(4)),
        "the local host is asked"
    );
    assert!(asked.len() < 5, "a covering set, not every host: {asked:?}");
}

#[test]
fn each_covering_host_searches_with_its_share_of_the_ef() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(4));
    let runtime = runtime();
    let cover = fanout.cover(1).unwrap();
    assert!(cover.hosts.len() > 1, "{:?}", cover.hosts);
    // How many covering hosts hold a token, sampled: each host searches everything it holds.
    let mut rng = StdRng::seed_from_u64(11);
    let samples = 20_000;
    let held: usize = (0..samples)
        .map(|_| {
            let replicas = fake.ring.replicas(rng.random(), 3);
            let hosts = replicas.hosts();
            hosts.iter().filter(|h| cover.hosts.contains(h)).count()
        })
        .sum();
    let sampled = held as f64 / f64::from(samples);
    assert!(
        (cover.copies_per_token - sampled).abs() < 0.05,
        "copies per token {} against {sampled} sampled",
        cover.copies_per_token
    );
    let search = SeedSearch {
        ef: Some(64),
        ..vector_search(10)
    };
    runtime.block_on(fanout.seeds(search)).unwrap();
    let expected = (64.0 / cover.copies_per_token).ceil() as usize;
    assert!(expected < 64, "{expected}");
    let asked: Vec<(HostId, Option<usize>)> = fake.efs.lock().clone().into_iter().collect();
    assert_eq!(asked.len(), cover.hosts.len(), "{asked:?}");
    for (host, ef) in asked {
        assert_eq!(
            ef,
            Some(expected),
            "{host}: the single-node ef 64 shared by the hosts"
        );
    }
    // One host holding every range searches with the single-node ef.
    let whole = FakeRing::new(3, 3, 30, &[]);
    let fanout = super::fanout(&whole, &latency, HostId::from_u128(1));
    let search = SeedSearch {
        ef: Some(64),
        ..vector_search(10)
    };
    runtime.block_on(fanout.seeds(search)).unwrap();
    let asked: Vec<Option<usize>> = whole.efs.lock().values().copied().collect();
    assert_eq!(asked, [Some(64)]);
}

#[test]
fn scan_pages_merge_the_covering_set_in_id_order_without_duplicates() {
    let fake = FakeRing::new(5, 2, 120, &[]);
    let latency = PeerLatency::default();
    let fanout = fanout(&fake, &latency, HostId::from_u128(1));
    let runtime = runtime();
    let mut all: Vec<String> = (0..120).map(|i| format!("n{i}")).collect();
    all.sort();
    for page in [1, 7, 50, 200] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let range = IdRange {
                start: after.clone(),
                end: None,
            };
            let (ids, exhausted) = runtime
                .block_on(fanout.scan_ids(&range, page, after.as_deref(), ConsistencyLevel::One))
                .unwrap();
            assert!(ids.len() <= page);
            seen.extend(ids.iter().cloned());
            if exhausted {
                break;
            }
            after = ids.last().cloned();
        }
        assert_eq!(seen, all, "page size {page}");
    }
}

#[test]
fn tenant_figures_count_each_entity_once_through_any_host_also_with_one_failing() {
    let mut fake = FakeRing::new(5, 3, 300, &[]);
    let runtime = runtime();
    let latency = PeerLatency::default();
    for local in 1..=5 {
        let reads = fanout(&fake, &latency, HostId::from_u128(local));
        let (sums, nodes) = runtime.block_on(reads.tenant_counts(None, false)).unwrap();
        assert_eq!(sums.len(), 1);
        assert_eq!(
            (sums[0].entities, sums[0].bytes),
            (300, 300),
            "through h{local}"
        );
        assert!(nodes.is_empty(), "no per-node detail unless asked");
    }
    // Per-node detail: every host's own figures; the replicas hold each entity three times.
    let reads = fanout(&fake, &latency, HostId::from_u128(1));
    let (_, nodes) = runtime
        .block_on(reads.tenant_counts(Some(TENANT), true))
        .unwrap();
    assert_eq!(nodes.len(), 5);
    let held: usize = nodes
        .values()
        .map(|n| n.as_ref().unwrap()[0].entities)
        .sum();
    assert_eq!(held, 900);

    // A failing host: its ranges are counted on other replicas, and the detail says why.
    let failing = HostId::from_u128(2);
    fake.failing.insert(failing);
    let reads = fanout(&fake, &latency, failing);
    let (sums, nodes) = runtime.block_on(reads.tenant_counts(None, true)).unwrap();
    assert_eq!(sums[0].entities, 300);
    assert!(nodes[&failing].as_ref().unwrap_err().contains("killed"));
    assert_eq!(nodes.values().filter(|n| n.is_ok()).count(), 4);

    // RF 1: the failing host's ranges have no other replica.
    let mut single = FakeRing::new(5, 1, 100, &[]);
    single.failing.insert(HostId::from_u128(3));
    let reads = fanout(&single, &latency, HostId::from_u128(1));
    let error = runtime
        .block_on(reads.tenant_counts(None, false))
        .unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("token ranges have no live replica") && m.contains("h3")),
        "{error}"
    );
}

/// Every id of the fake ring that `fanout` lists at `level`, paged 7 at a time.
fn scan_everything(fanout: &Fanout<'_>, level: ConsistencyLevel) -> Vec<String> {
    let runtime = runtime();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let range = IdRange {
            start: after.clone(),
            end: None,
        };
        let (ids, exhausted) = runtime
            .block_on(fanout.scan_ids(&range, 7, after.as_deref(), level))
            .unwrap();
        seen.extend(ids.iter().cloned());
        if exhausted {
            return seen;
        }
        after = ids.last().cloned();
    }
}

#[test]
fn a_scan_at_quorum_lists_what_one_replica_missed_even_through_that_replica() {
    let mut fake = FakeRing::new(5, 3, 120, &[]);
    let mut all: Vec<String> = (0..120).map(|i| format!("n{i}")).collect();
    all.sort();
    // A replica missed a write a quorum acknowledged (down, no hint yet), an entity whose
    // range that replica alone answers for when it coordinates a read at ONE (what ONE
    // promises: one replica per range).
    let latency = PeerLatency::default();
    let (missed, stale) = (0..120)
        .map(|i| format!("n{i}"))
        .find_map(|id| {
            let stale = fake.replicas(&id)[0];
            let held = &mut fake
                .hosts
                .get_mut(&stale)
                .expect("a replica is a host")
                .entities;
            let similarity = held.remove(&id).expect("a replica holds it");
            let at_one = scan_everything(&fanout(&fake, &latency, stale), ConsistencyLevel::One);
            if !at_one.contains(&id) {
                return Some((id, stale));
            }
            fake.hosts
                .get_mut(&stale)
                .expect("a replica is a host")
                .entities
                .insert(id, similarity);
            None
        })
        .expect("some entity is answered for by one replica alone at ONE");
    let through_stale = fanout(&fake, &latency, stale);
    assert_eq!(
        scan_everything(&through_stale, ConsistencyLevel::Quorum),
        all,
        "{missed} listed at QUORUM"
    );
    assert_eq!(scan_everything(&through_stale, ConsistencyLevel::All), all);

    // A quorum of some range down: a QUORUM scan says so instead of listing less.
    let down = &fake.replicas("n3")[..2];
    fake.failing.extend(down.iter().copied());
    let runtime = runtime();
    let healthy = fake
        .ring
        .hosts()
        .iter()
        .copied()
        .find(|h| !fake.failing.contains(h))
        .unwrap();
    let reads = fanout(&fake, &latency, healthy);
    let range = IdRange {
        start: None,
        end: None,
    };
    let error = runtime
        .block_on(reads.scan_ids(&range, 10, None, ConsistencyLevel::Quorum))
        .unwrap_err();
    assert!(
        matches!(&error, ClusterError::Unavailable(m) if m.contains("fewer than 2 live replicas")),
        "{error}"
    );
}

#[test]
fn a_routing_key_asks_the_same_replicas_whichever_host_coordinates() {
    let fake = FakeRing::new(5, 3, 300, &[]);
    let search = vector_search(10);
    let runtime = runtime();
    let asked_through = |local: u128, routing: Option<u64>| -> BTreeSet<HostId> {
        fake.calls.lock().clear();
        let latency = PeerLatency::default();
        let reads = Fanout {
            routing,
            ..fanout(&fake, &latency, HostId::from_u128(local))
        };
        runtime.block_on(reads.seeds(search.clone())).unwrap();
        fake.calls.lock().keys().copied().collect()
    };
    let routed = ReadOptions::at(ConsistencyLevel::One)
        .routed("user-42")
        .routing;
    assert!(routed.is_some());
    let first = asked_through(1, routed);
    for local in 2..=5 {
        assert_eq!(asked_through(local, routed), first, "through h{local}");
    }
    // Another key may choose other replicas; no key prefers the coordinator itself.
    let unrouted: BTreeSet<BTreeSet<HostId>> = (1..=5).map(|l| asked_through(l, None)).collect();
    assert!(unrouted.len() > 1, "{unrouted:?}");
    assert_eq!(
        ReadOptions::at(ConsistencyLevel::One).routed("").routing,
        None
    );
}
