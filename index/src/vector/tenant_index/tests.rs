//! Unit tests of [`super::VectorIndex`]: both engines, dumps and reloads, updates, deletes,
//! the tail, and damaged or old-format files.

use super::*;
use crate::vector::hnsw::HnswFactory;

fn vector(i: usize) -> Vec<f32> {
    (0..8).map(|j| ((i * 13 + j * 5) as f32).sin()).collect()
}

fn top_ids(index: &VectorIndex, query: &[f32]) -> Vec<String> {
    index
        .search(query, 5, Some(200), None, None)
        .unwrap()
        .iter()
        .map(|hit| hit.entity_id.to_string())
        .collect()
}

fn filled_index(factory: Arc<dyn AnnEngineFactory>, count: usize) -> VectorIndex {
    let index = VectorIndex::with_factory(VectorIndexOptions::default(), factory).unwrap();
    for i in 0..count {
        index
            .upsert(&format!("e{i:03}"), &vector(i), i as u64 + 1)
            .unwrap();
    }
    index
}

/// The engine is replaceable: both engines serve the same index and reload their own dumps;
/// a dump written by one engine is never misread by the other: loading it fails cleanly
/// with a corruption error (the store then rebuilds from storage).
#[test]
fn either_engine_serves_the_index_and_foreign_dumps_are_rejected() {
    let factories: [Arc<dyn AnnEngineFactory>; 2] =
        [Arc::new(FlatHnswFactory), Arc::new(HnswFactory)];
    for (writer, reader) in [(0, 1), (1, 0), (0, 0), (1, 1)] {
        let index = filled_index(factories[writer].clone(), 300);
        assert_eq!(index.index_pending(usize::MAX), 300);
        let query = vector(42);
        let before = top_ids(&index, &query);
        assert_eq!(before[0], "e042");
        let dir = tempfile::tempdir().unwrap();
        index.dump(dir.path()).unwrap();
        let reloaded =
            VectorIndex::load_with_factory(dir.path(), *index.options(), factories[reader].clone());
        if writer != reader {
            let err = reloaded.unwrap_err();
            assert!(
                matches!(err, Error::Corruption { .. }),
                "writer {writer} reader {reader}: {err}"
            );
            continue;
        }
        let reloaded = reloaded.unwrap();
        assert_eq!(reloaded.pending_len(), 0);
        assert_eq!(
            top_ids(&reloaded, &query),
            before,
            "writer {writer} reader {reader}"
        );
    }
}

/// Brute-force similarity of entity `e{i:03}` (written with `vector(i)`) to `query`.
fn brute_force(query: &[f32], i: usize) -> f32 {
    let metric = Metric::Cosine;
    metric.similarity(
        &metric.prepare(query).unwrap(),
        &metric.prepare(&vector(i)).unwrap(),
    )
}

/// An indexed vector lives only in the engine; a pending one only in its slot. Exact reads
/// (similarities, search_among, filtered exact scans, rebuilds, dumps) see both kinds and
/// equal brute force, on either engine.
#[test]
fn indexed_vectors_are_held_once_and_read_back_exactly() {
    let factories: [Arc<dyn AnnEngineFactory>; 2] =
        [Arc::new(FlatHnswFactory), Arc::new(HnswFactory)];
    for factory in factories {
        let index = filled_index(factory.clone(), 200);
        assert_eq!(index.index_pending(usize::MAX), 200);
        for i in 200..260 {
            index
                .upsert(&format!("e{i:03}"), &vector(i), i as u64 + 1)
                .unwrap();
        }
        let copies_held = |index: &VectorIndex| {
            let state = index.state.read();
            for (id, slot) in &state.slots {
                assert_eq!(
                    slot.vector.is_some(),
                    state.pending.contains(id),
                    "a slot holds its vector iff it is pending"
                );
            }
            state.slots.values().filter(|s| s.vector.is_some()).count()
        };
        assert_eq!(copies_held(&index), 60, "only the 60 pending vectors");
        assert_eq!(index.state.read().engine.len(), 200);

        let query = vector(7);
        let entities: Vec<String> = (0..270).map(|i| format!("e{i:03}")).collect();
        let refs: Vec<&str> = entities.iter().map(String::as_str).collect();
        let check = |index: &VectorIndex, when: &str| {
            let similarities = index.similarities(&query, &refs).unwrap();
            for (i, similarity) in similarities.iter().enumerate() {
                if i < 260 {
                    let got = similarity.unwrap_or_else(|| panic!("{when}: e{i:03} missing"));
                    assert!(
                        (got - brute_force(&query, i)).abs() < 1e-5,
                        "{when}: e{i:03}"
                    );
                } else {
                    assert_eq!(*similarity, None, "{when}: e{i:03} has no vector");
                }
            }
            let mut expected: Vec<(f32, String)> = (0..260)
                .filter(|i| i % 3 == 0)
                .map(|i| (brute_force(&query, i), format!("e{i:03}")))
                .collect();
            expected.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let expected: Vec<String> = expected.into_iter().take(10).map(|e| e.1).collect();
            let allowed: Vec<&str> = refs.iter().step_by(3).copied().collect();
            let among: Vec<String> = index
                .search_among(&query, 10, &allowed)
                .unwrap()
                .iter()
                .map(|hit| hit.entity_id.to_string())
                .collect();
            assert_eq!(among, expected, "{when}: search_among");
            let every_third = |entity: &str| entity[1..].parse::<usize>().unwrap() % 3 == 0;
            let filtered: Vec<String> = index
                .search(&query, 10, None, Some(&every_third), Some(87))
                .unwrap()
                .iter()
                .map(|hit| hit.entity_id.to_string())
                .collect();
            assert_eq!(filtered, expected, "{when}: filtered exact scan");
        };
        check(&index, "indexed and pending");

        // A rebuild streams the indexed vectors out of the old engine; the pending ones
        // join them, and still nothing is held twice.
        assert_eq!(index.rebuild(&|| false).unwrap(), Rebuild::Swapped);
        assert_eq!(copies_held(&index), 0);
        assert_eq!(index.state.read().engine.len(), 260);
        check(&index, "after rebuild");

        // A dump keeps the pending vectors (and only those) beside the engine's.
        index
            .upsert("e000", &vector(0), 1_000)
            .and_then(|()| index.upsert("e001", &vector(1), 1_001))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        index.dump(dir.path()).unwrap();
        let reloaded =
            VectorIndex::load_with_factory(dir.path(), *index.options(), factory).unwrap();
        assert_eq!(copies_held(&reloaded), 2, "the tail is reloaded as a tail");
        check(&reloaded, "after reload");
        assert_eq!(reloaded.index_pending(usize::MAX), 2);
        assert_eq!(copies_held(&reloaded), 0);
        check(&reloaded, "after reload and indexing");
    }
}

/// `slots.bin` of an older format is a clean format mismatch; a damaged or missing engine
/// dump is a corruption error, since the indexed vectors are only there.
#[test]
fn old_formats_and_damaged_engine_dumps_are_corruption_errors() {
    let index = filled_index(Arc::new(FlatHnswFactory), 100);
    index.index_pending(usize::MAX);
    let options = *index.options();
    let dump = || {
        let dir = tempfile::tempdir().unwrap();
        index.dump(dir.path()).unwrap();
        dir
    };

    let dir = dump();
    let slots = dir.path().join(SLOTS_FILE);
    let mut bytes = fs::read(&slots).unwrap();
    bytes[..8].copy_from_slice(b"AVSLOT01");
    fs::write(&slots, &bytes).unwrap();
    let err = VectorIndex::load(dir.path(), options).unwrap_err();
    assert!(
        matches!(&err, Error::Corruption { .. }) && err.to_string().contains("format mismatch"),
        "{err}"
    );

    let dir = dump();
    let engine_file = dir.path().join(ENGINE_DIR).join("flat_hnsw.bin");
    let mut bytes = fs::read(&engine_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    fs::write(&engine_file, &bytes).unwrap();
    let err = VectorIndex::load(dir.path(), options).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");

    let dir = dump();
    fs::remove_file(dir.path().join(ENGINE_DIR).join("flat_hnsw.bin")).unwrap();
    let err = VectorIndex::load(dir.path(), options).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");

    // An engine dump of another index (missing some indexed ids) is rejected as well.
    let dir = dump();
    let smaller = filled_index(Arc::new(FlatHnswFactory), 50);
    smaller.index_pending(usize::MAX);
    let other = tempfile::tempdir().unwrap();
    smaller.dump(other.path()).unwrap();
    fs::copy(
        other.path().join(ENGINE_DIR).join("flat_hnsw.bin"),
        dir.path().join(ENGINE_DIR).join("flat_hnsw.bin"),
    )
    .unwrap();
    let err = VectorIndex::load(dir.path(), options).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds 50 of the 100 indexed vectors"),
        "{err}"
    );
}

/// A filter memo remembers one answer per internal id (evaluated once), knows nothing beyond
/// its capacity, and a filtered search through it (two-hop expansion included, once it knows
/// the refused ids) returns what the search without it returns, for the same filter.
#[test]
fn filter_memo_answers_once_per_id_and_keeps_results_equal() {
    let memo = FilterMemo::new(40);
    assert!(memo.capacity() >= 40);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let calls = &calls;
    let evaluate = |answer: bool| {
        move || {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            answer
        }
    };
    assert_eq!(memo.known(3), None);
    assert!(!memo.get_or(3, evaluate(false)));
    assert!(!memo.get_or(3, evaluate(true)));
    assert!(memo.get_or(4, evaluate(true)));
    assert_eq!(memo.known(3), Some(false));
    assert_eq!(memo.known(4), Some(true));
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    let beyond = memo.capacity() + 1;
    assert!(memo.get_or(beyond, evaluate(true)));
    assert_eq!(memo.known(beyond), None);

    // Exact-scan thresholds at zero: every filtered search walks the graph.
    let index = VectorIndex::new(VectorIndexOptions {
        exact_scan_max_allowed: 0,
        exact_scan_max_fraction: 0.0,
        ..VectorIndexOptions::default()
    })
    .unwrap();
    for i in 0..2_000 {
        index
            .upsert(&format!("e{i:03}"), &vector(i), i as u64 + 1)
            .unwrap();
    }
    assert_eq!(index.index_pending(usize::MAX), 2_000);
    // 75% (two-hop width M) and 1 in 7 (~14%, width 2M).
    let most = |i: usize| !i.is_multiple_of(4);
    let few = |i: usize| i.is_multiple_of(7);
    let filters: [(&(dyn Fn(usize) -> bool + Sync), usize); 2] = [(&most, 1_500), (&few, 286)];
    for (keep, hint) in filters {
        let allowed = |entity: &str| {
            entity
                .trim_start_matches('e')
                .parse::<usize>()
                .is_ok_and(keep)
        };
        let memo = FilterMemo::new(index.id_bound());
        for i in (0..2_000).step_by(97) {
            let query = vector(i);
            let plain = index
                .search(&query, 10, None, Some(&allowed), Some(hint))
                .unwrap();
            assert_eq!(plain.len(), 10);
            // Twice: the first fills the memo, the second looks through what it refused.
            for _ in 0..2 {
                let memoised = index
                    .search_memo(&query, 10, None, Some(&allowed), Some(hint), Some(&memo))
                    .unwrap();
                assert!(memoised.iter().all(|hit| allowed(&hit.entity_id)));
                let common = memoised.iter().filter(|hit| plain.contains(hit)).count();
                assert!(common >= 9, "{memoised:?} vs {plain:?}");
            }
        }
        assert!((0..index.id_bound()).any(|id| memo.known(id) == Some(false)));
    }
}
