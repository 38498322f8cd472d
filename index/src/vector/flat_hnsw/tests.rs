use super::*;

/// Deterministic pseudo-random points in `clusters` Gaussian-ish blobs.
fn points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..dim).map(|_| next() * 4.0).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % centres.len()]
                .iter()
                .map(|c| c + next())
                .collect()
        })
        .collect()
}

fn prepared(metric: Metric, raw: &[Vec<f32>]) -> Vec<Vec<f32>> {
    raw.iter().map(|v| metric.prepare(v).unwrap()).collect()
}

/// An engine holding `data[i]` under id `i * 3` (ids need not be dense).
fn build(metric: Metric, data: &[Vec<f32>]) -> Box<dyn AnnEngine> {
    let engine = FlatHnswFactory
        .create(metric, EngineParams::default())
        .unwrap();
    let items: Vec<(usize, &[f32])> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i * 3, v.as_slice()))
        .collect();
    engine.insert_batch(&items);
    engine
}

/// Exact top-`k` ids (as inserted by `build`) among those `allow`ed.
fn brute_force(
    metric: Metric,
    data: &[Vec<f32>],
    query: &[f32],
    k: usize,
    allow: &dyn Fn(usize) -> bool,
) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| allow(i * 3))
        .map(|(i, v)| (metric.similarity(query, v), i * 3))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

fn recall(found: &[(usize, f32)], truth: &[usize]) -> f64 {
    let hits = truth
        .iter()
        .filter(|t| found.iter().any(|(id, _)| id == *t))
        .count();
    hits as f64 / truth.len() as f64
}

#[test]
fn recall_against_brute_force_for_every_metric() {
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        // Dot runs on unit vectors (embeddings in practice): on raw clustered data maximum inner
        // product search is not a proximity problem and HNSW recall drops (both engines ~0.7).
        let normalise = |v: &Vec<Vec<f32>>| prepared(Metric::Cosine, v);
        let (data, queries) = match metric {
            Metric::Dot => (
                normalise(&points(3_000, 32, 7)),
                normalise(&points(60, 32, 8)),
            ),
            _ => (
                prepared(metric, &points(3_000, 32, 7)),
                prepared(metric, &points(60, 32, 8)),
            ),
        };
        let engine = build(metric, &data);
        assert_eq!(engine.len(), 3_000);
        let mut total = 0.0;
        for q in &queries {
            let found = engine.search(q, 10, 64);
            assert_eq!(found.len(), 10);
            assert!(found.windows(2).all(|w| w[0].1 <= w[1].1), "{found:?}");
            total += recall(&found, &brute_force(metric, &data, q, 10, &|_| true));
        }
        let mean = total / queries.len() as f64;
        assert!(mean >= 0.95, "{metric:?}: recall@10 {mean}");
    }
}

#[test]
fn filtered_search_returns_only_allowed_ids_with_high_recall() {
    let metric = Metric::Cosine;
    let data = prepared(metric, &points(3_000, 24, 11));
    let engine = build(metric, &data);
    let allow = |id: usize| (id / 3).is_multiple_of(5);
    let mut total = 0.0;
    for q in data.iter().step_by(101) {
        let found = engine.search_filtered(q, 10, 64, &allow);
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|(id, _)| allow(*id)), "{found:?}");
        total += recall(&found, &brute_force(metric, &data, q, 10, &allow));
    }
    let mean = total / data.iter().step_by(101).count() as f64;
    assert!(mean >= 0.95, "filtered recall@10 {mean}");
    assert!(
        engine
            .search_filtered(&data[0], 10, 64, &|_| false)
            .is_empty()
    );
}

#[test]
fn finds_an_inserted_point_by_its_own_vector() {
    let data = prepared(Metric::L2, &points(500, 16, 3));
    let engine = build(Metric::L2, &data);
    for i in [0usize, 42, 499] {
        let hits = engine.search(&data[i], 1, 32);
        assert_eq!(hits[0].0, i * 3);
        assert!(hits[0].1 <= 1e-6);
    }
    assert!(engine.search(&data[0], 0, 32).is_empty());
    assert_eq!(engine.search(&data[0], 600, 10).len(), 500);
}

#[test]
fn wrong_length_vectors_are_skipped_not_fatal() {
    let engine = FlatHnswFactory
        .create(Metric::L2, EngineParams::default())
        .unwrap();
    assert!(engine.search(&[1.0, 2.0], 3, 10).is_empty());
    engine.insert(1, &[1.0, 2.0]);
    engine.insert(2, &[1.0, 2.0, 3.0]);
    engine.insert(3, &[]);
    assert_eq!(engine.len(), 1);
    assert!(engine.search(&[1.0, 2.0, 3.0], 3, 10).is_empty());
    assert_eq!(engine.search(&[1.0, 2.5], 3, 10), vec![(1, 0.25)]);
}

#[test]
fn create_refuses_bad_params() {
    let params = EngineParams {
        max_connections: 1,
        ..EngineParams::default()
    };
    assert!(FlatHnswFactory.create(Metric::Cosine, params).is_err());
}

#[test]
fn levels_follow_the_geometric_distribution() {
    let engine = FlatHnswEngine::from_graph(
        Metric::L2,
        EngineParams::default(),
        Graph::new(kernel::distance_fn(Metric::L2), 16, 0),
    );
    let draws = 100_000;
    let upper = (0..draws).filter(|_| engine.draw_level() > 0).count();
    let fraction = upper as f64 / draws as f64;
    // P(level >= 1) = 1/M = 0.0625.
    assert!((0.055..0.07).contains(&fraction), "{fraction}");
}

#[test]
fn dump_and_reload_answer_the_same_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(Metric::Cosine, &points(1_000, 24, 5));
    let engine = build(Metric::Cosine, &data);
    engine.dump(dir.path()).unwrap();
    let reloaded = FlatHnswFactory.load(dir.path(), Metric::Cosine).unwrap();
    assert_eq!(reloaded.len(), 1_000);
    for q in data.iter().step_by(37) {
        assert_eq!(engine.search(q, 10, 64), reloaded.search(q, 10, 64));
    }
    // A dump holds no parents: the loader derives them, and inserts after the load rely on them.
    let bytes = std::fs::read(dir.path().join(DUMP_FILE)).unwrap();
    let decoded = persist::decode(
        &bytes,
        dir.path(),
        Metric::Cosine,
        kernel::distance_fn(Metric::Cosine),
    )
    .unwrap();
    decoded.graph.check_parents().unwrap();
    reloaded.insert(100_000, &data[0]);
    let again = tempfile::tempdir().unwrap();
    reloaded.dump(again.path()).unwrap();
    let twice = FlatHnswFactory.load(again.path(), Metric::Cosine).unwrap();
    assert_eq!(twice.len(), 1_001);
    assert!(
        twice
            .search(&data[0], 2, 32)
            .iter()
            .any(|(id, _)| *id == 100_000)
    );
    let err = FlatHnswFactory.load(dir.path(), Metric::L2).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

#[test]
fn empty_engine_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FlatHnswFactory
        .create(Metric::Dot, EngineParams::default())
        .unwrap();
    engine.dump(dir.path()).unwrap();
    let reloaded = FlatHnswFactory.load(dir.path(), Metric::Dot).unwrap();
    assert!(reloaded.is_empty());
    assert!(reloaded.search(&[1.0, 2.0], 3, 10).is_empty());
    reloaded.insert(7, &[1.0, 2.0]);
    assert_eq!(reloaded.search(&[1.0, 2.0], 3, 10)[0].0, 7);
}

#[test]
fn damaged_dumps_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(Metric::Cosine, &points(200, 8, 9));
    build(Metric::Cosine, &data).dump(dir.path()).unwrap();
    let path = dir.path().join(DUMP_FILE);
    let good = fs::read(&path).unwrap();
    let load = |bytes: &[u8]| {
        fs::write(&path, bytes).unwrap();
        FlatHnswFactory.load(dir.path(), Metric::Cosine)
    };
    let is_corruption = |result: Result<Box<dyn AnnEngine>>| match result {
        Err(Error::Corruption { path: p, .. }) => p == path,
        _ => false,
    };
    // A flipped bit anywhere, and every truncation, fail the checksum or a length check.
    for at in (0..good.len()).step_by(97) {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        assert!(is_corruption(load(&bad)), "flip at {at}");
    }
    for len in (0..good.len()).step_by(89) {
        assert!(is_corruption(load(&good[..len])), "truncated to {len}");
    }
    // Damage behind a valid checksum (a neighbour id past the last node) is caught as well.
    let body_len = good.len() - 4;
    let mut forged = good[..body_len].to_vec();
    let level0_start = forged.len() - 4 * (200 * 33 + upper_slots(&forged));
    forged[level0_start..level0_start + 8].copy_from_slice(&[1, 0, 0, 0, 0xFF, 0xFF, 0, 0]);
    let crc = crc32fast::hash(&forged);
    forged.extend_from_slice(&crc.to_le_bytes());
    let err = load(&forged).unwrap_err();
    assert!(err.to_string().contains("neighbour 65535"), "{err}");
    assert!(load(&good).is_ok());
    fs::remove_file(&path).unwrap();
    assert!(matches!(
        FlatHnswFactory.load(dir.path(), Metric::Cosine),
        Err(Error::Io { .. })
    ));
}

/// Upper-level slots in a dump body of 200 nodes of dimension 8 (levels follow the labels).
fn upper_slots(body: &[u8]) -> usize {
    let levels_start = 8 + 4 + 1 + 4 * 4 + 4 + 8 + 200 * 8;
    body[levels_start..levels_start + 200]
        .iter()
        .map(|l| *l as usize * 17)
        .sum()
}

#[test]
fn searches_run_while_inserting() {
    let data = prepared(Metric::Cosine, &points(2_000, 16, 21));
    let engine = FlatHnswFactory
        .create(Metric::Cosine, EngineParams::default())
        .unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (i, v) in data.iter().enumerate() {
                engine.insert(i, v);
            }
        });
        scope.spawn(|| {
            let mut seen = 0;
            while seen < data.len() {
                let hits = engine.search(&data[0], 5, 32);
                assert!(hits.iter().all(|(id, _)| *id < data.len()));
                seen = engine.len();
            }
        });
    });
    assert_eq!(engine.search(&data[1_234], 1, 64)[0].0, 1_234);
}

/// A concrete engine (the structure check is not part of `AnnEngine`).
fn flat_engine(metric: Metric, max_connections: usize) -> FlatHnswEngine {
    let params = EngineParams {
        max_connections,
        ef_construction: 64,
        capacity_hint: 64,
    };
    let graph = Graph::new(kernel::distance_fn(metric), max_connections, 64);
    FlatHnswEngine::from_graph(metric, params, graph)
}

/// Insert sequences of the kind real corpora produce: points drawn from a few distinct
/// vectors, in runs of identical inserts (up to 60 long), near-identical copies, and fresh
/// points between them.
fn duplicate_runs() -> impl proptest::strategy::Strategy<Value = Vec<Vec<f32>>> {
    use proptest::prelude::*;
    let point = proptest::collection::vec(-1.0f32..1.0, 6);
    let run = (point, 1usize..60, 0u8..3);
    proptest::collection::vec(run, 1..24).prop_map(|runs| {
        let mut out = Vec::new();
        for (point, length, kind) in runs {
            for copy in 0..length {
                let mut v = point.clone();
                match kind {
                    // exact copies
                    0 => {}
                    // near-identical: cosine above 0.9999
                    1 => {
                        let at = copy % v.len();
                        v[at] += 1e-4 * copy as f32;
                    }
                    // distinct points along a line
                    _ => v[0] += 0.05 * copy as f32,
                }
                if v.iter().all(|x| x.abs() < 1e-3) {
                    v[0] = 1.0;
                }
                out.push(v);
            }
        }
        out
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// After any insert sequence, duplicates included, every node is reachable from the entry
    /// point on level 0 and every level-0 list holds min(M, n - 1) distinct nodes.
    #[test]
    fn every_node_stays_reachable_with_full_lists(
        data in duplicate_runs(),
        m in 2usize..12,
        metric_code in 0u8..3,
    ) {
        let metric = [Metric::Cosine, Metric::L2, Metric::Dot][metric_code as usize];
        let engine = flat_engine(metric, m);
        for (id, raw) in data.iter().enumerate() {
            engine.insert(id, &metric.prepare(raw).unwrap());
            if id % 16 == 0 {
                let checked = engine.graph.read().check_structure();
                proptest::prop_assert!(checked.is_ok(), "after {} inserts: {:?}", id + 1, checked);
            }
        }
        let checked = engine.graph.read().check_structure();
        proptest::prop_assert!(checked.is_ok(), "{:?}", checked);
        let parents = engine.graph.read().check_parents();
        proptest::prop_assert!(parents.is_ok(), "{:?}", parents);
        proptest::prop_assert_eq!(engine.len(), data.len());
    }
}

#[test]
fn a_dump_failing_the_structure_check_is_relinked_on_load() {
    let metric = Metric::Cosine;
    let data = prepared(metric, &points(400, 8, 11));
    let engine = flat_engine(metric, 8);
    for (id, v) in data.iter().enumerate() {
        engine.insert(id, v);
    }
    // Orphan one node the way the old tie rule did: no list points to it any more.
    let orphan = 123u32;
    {
        let graph = engine.graph.write();
        for node in 0..graph.len() as u32 {
            for level in 0..=graph.levels[node as usize] as usize {
                let kept: Vec<u32> = graph
                    .neighbour_list(node, level)
                    .into_iter()
                    .filter(|n| *n != orphan)
                    .collect();
                graph.set_neighbours(node, level, &kept);
            }
        }
        let problem = graph.check_structure().unwrap_err();
        assert!(problem.contains("unreachable"), "{problem}");
    }
    let dir = tempfile::tempdir().unwrap();
    engine.dump(dir.path()).unwrap();
    let reloaded = FlatHnswFactory.load(dir.path(), metric).unwrap();
    assert_eq!(reloaded.len(), data.len());
    // Found again by its own vector, under its own id, with every other id still there.
    assert_eq!(
        reloaded.search(&data[orphan as usize], 1, 32)[0].0,
        orphan as usize
    );
    let ids: Vec<usize> = (0..data.len()).collect();
    let mut held = 0;
    reloaded.visit_vectors(&ids, &mut |position, vector| {
        assert_eq!(vector, data[position].as_slice());
        held += 1;
    });
    assert_eq!(held, data.len());
}

/// Batches above the serial threshold link on several threads (4 here, more than the cores of
/// a small CI machine, so links interleave): the structure promises hold, every id is held
/// once, and the result finds as much as a one-at-a-time build of the same data.
#[test]
fn parallel_batches_keep_the_structure_and_recall() {
    let metric = Metric::Cosine;
    let mut data = prepared(metric, &points(6_000, 16, 5));
    // Runs of identical vectors, as real corpora have.
    for run in 0..40 {
        let source = data[run * 97].clone();
        for copy in 0..(run % 7) * 5 {
            data[run * 150 + copy + 1] = source.clone();
        }
    }
    let items: Vec<(usize, &[f32])> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.as_slice()))
        .collect();
    let parallel = flat_engine(metric, 8);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    pool.install(|| {
        for part in items.chunks(1_500) {
            parallel.insert_batch(part);
        }
    });
    let serial = flat_engine(metric, 8);
    for (id, vector) in &items {
        serial.insert(*id, vector);
    }
    assert_eq!(parallel.len(), data.len());
    parallel.graph.read().check_structure().unwrap();
    parallel.graph.read().check_parents().unwrap();
    let ids: Vec<usize> = (0..data.len()).collect();
    let mut held = vec![0u8; data.len()];
    parallel.visit_vectors(&ids, &mut |position, vector| {
        assert_eq!(vector, data[position].as_slice());
        held[position] += 1;
    });
    assert!(held.iter().all(|h| *h == 1));
    let queries = prepared(metric, &points(200, 16, 6));
    let mean = |engine: &FlatHnswEngine| {
        queries
            .iter()
            .map(|q| {
                let truth = brute_force(metric, &data, q, 10, &|_| true)
                    .into_iter()
                    .map(|id| id / 3)
                    .collect::<Vec<_>>();
                recall(&engine.search(q, 10, 128), &truth)
            })
            .sum::<f64>()
            / queries.len() as f64
    };
    let (parallel_recall, serial_recall) = (mean(&parallel), mean(&serial));
    assert!(
        parallel_recall >= serial_recall - 0.02,
        "parallel {parallel_recall:.3} vs serial {serial_recall:.3}"
    );
}
