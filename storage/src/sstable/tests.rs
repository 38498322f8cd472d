//! Whole-table tests: round trips against a model, seeks, the partition filter, corruption in
//! every region, truncated and garbage files, and the block cache bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::format::{BLOCK_TRAILER_LEN, FOOTER_LEN, Footer};
use super::*;
use crate::error::Error;
use crate::fs::{FileSystem, OsFileSystem};
use crate::key::{CellKey, partition_of};
use crate::types::Entry;

const NO_CACHE: u64 = 0;

fn write_table(path: &Path, entries: &[Entry], options: TableOptions) -> TableProperties {
    let file = OsFileSystem.create(path).unwrap();
    let mut builder = TableBuilder::new(file, path.to_owned(), options);
    for entry in entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap()
}

fn open_table(path: &Path, cache_bytes: u64) -> Result<Arc<Table>, Error> {
    Table::open(
        &OsFileSystem,
        path,
        7,
        Arc::new(BlockCache::new(cache_bytes)),
    )
    .map(Arc::new)
}

fn read_all(table: &Arc<Table>) -> Vec<Entry> {
    table.iter().map(|entry| entry.unwrap()).collect()
}

/// Deterministic value bytes of a given length.
fn value_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn entry(user_key: Vec<u8>, ts: u64, seq: u64, value: Option<Vec<u8>>) -> Entry {
    Entry {
        key: InternalKey::new(user_key, ts, seq),
        value,
    }
}

/// Cell keys of entities whose ids share a long prefix, several cells and versions each.
fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
    let cell = (0u8..4, 0u8..3, 0u8..3).prop_map(|(entity, kind, other)| {
        let tenant = "tenant";
        let id = format!("entity-with-a-long-shared-prefix-{entity}");
        let other = format!("other-{other}");
        match kind {
            0 => CellKey::marker(tenant, &id),
            1 => CellKey::body(tenant, &id),
            _ => CellKey::out_edge(tenant, &id, "knows", &other),
        }
        .encode()
    });
    let value = prop_oneof![
        3 => (0usize..64, any::<u8>()).prop_map(|(len, seed)| Some(value_bytes(len, seed))),
        1 => (200usize..2_000, any::<u8>()).prop_map(|(len, seed)| Some(value_bytes(len, seed))),
        1 => Just(None),
    ];
    proptest::collection::vec((cell, 0u64..6, 0u64..1_000, value), 1..120).prop_map(|raw| {
        let mut entries: Vec<Entry> = raw
            .into_iter()
            .map(|(key, ts, seq, value)| entry(key, ts, seq, value))
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries.dedup_by(|a, b| a.key == b.key);
        entries
    })
}

fn small_blocks() -> TableOptions {
    TableOptions {
        block_size: 256,
        bloom_bits_per_key: 10,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_and_seek_match_the_model(
        entries in arb_entries(),
        targets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.sst");
        let written = write_table(&path, &entries, small_blocks());
        let table = open_table(&path, 1 << 20).unwrap();
        prop_assert_eq!(table.properties(), &written);
        prop_assert_eq!(written.entries, entries.len() as u64);
        prop_assert_eq!(written.tombstones, entries.iter().filter(|e| e.value.is_none()).count() as u64);
        prop_assert_eq!(&written.smallest, &entries[0].key);
        prop_assert_eq!(&written.largest, &entries[entries.len() - 1].key);
        prop_assert_eq!(written.file_size, std::fs::metadata(&path).unwrap().len());
        prop_assert_eq!(&read_all(&table), &entries);

        for entry in &entries {
            let partition = partition_of(&entry.key.user_key).unwrap();
            prop_assert!(table.may_contain_partition(partition));
        }

        // Targets: every stored key, its successor and random bytes near the key space.
        let mut all_targets: Vec<Vec<u8>> = entries.iter().map(|e| e.key.user_key.clone()).collect();
        all_targets.extend(entries.iter().map(|e| [e.key.user_key.as_slice(), &[0]].concat()));
        all_targets.extend(targets.iter().map(|t| [b"tenant\0entity".as_slice(), t].concat()));
        all_targets.extend(targets);
        let mut iter = table.iter();
        for target in &all_targets {
            iter.seek(target);
            let expected: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.key.user_key.as_slice() >= target.as_slice())
                .take(3)
                .collect();
            let found: Vec<Entry> = iter.by_ref().take(3).map(|e| e.unwrap()).collect();
            prop_assert_eq!(found.iter().collect::<Vec<_>>(), expected);
        }
    }
}

#[test]
fn big_values_span_single_entry_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sst");
    let entries: Vec<Entry> = (0..10)
        .map(|i| {
            let key = CellKey::body("t", &format!("e{i:02}")).encode();
            entry(key, 1, i, Some(value_bytes(10_000, i as u8)))
        })
        .collect();
    let properties = write_table(&path, &entries, TableOptions::default());
    assert_eq!(properties.data_blocks, 10);
    let table = open_table(&path, NO_CACHE).unwrap();
    assert_eq!(read_all(&table), entries);
}

#[test]
fn builder_rejects_unordered_and_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sst");
    let mut builder = TableBuilder::new(
        OsFileSystem.create(&path).unwrap(),
        path.clone(),
        TableOptions::default(),
    );
    builder.add(&entry(b"b".to_vec(), 5, 5, None)).unwrap();
    for (key, ts, seq) in [("b", 5, 5), ("a", 5, 5), ("b", 6, 5), ("b", 5, 6)] {
        let error = builder
            .add(&entry(key.as_bytes().to_vec(), ts, seq, None))
            .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    }
    builder.add(&entry(b"b".to_vec(), 4, 9, None)).unwrap();
    assert_eq!(builder.finish().unwrap().entries, 2);

    let empty = TableBuilder::new(
        OsFileSystem.create(&path).unwrap(),
        path.clone(),
        TableOptions::default(),
    );
    assert!(matches!(empty.finish(), Err(Error::InvalidArgument(_))));
}

fn entity_partition(i: usize) -> Vec<u8> {
    crate::key::partition_prefix("tenant", &format!("entity-{i}"))
}

#[test]
fn partition_filter_false_positive_rate_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bloom.sst");
    let entries: Vec<Entry> = (0..10_000)
        .flat_map(|i| {
            let id = format!("entity-{i}");
            [CellKey::marker("tenant", &id), CellKey::body("tenant", &id)]
        })
        .map(|key| key.encode())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(seq, key)| entry(key, 1, seq as u64, Some(vec![1])))
        .collect();
    write_table(&path, &entries, TableOptions::default());
    let table = open_table(&path, NO_CACHE).unwrap();
    assert!((0..10_000).all(|i| table.may_contain_partition(&entity_partition(i))));
    let trials = 20_000;
    let false_positives = (10_000..10_000 + trials)
        .filter(|i| table.may_contain_partition(&entity_partition(*i)))
        .count();
    let rate = false_positives as f64 / trials as f64;
    assert!(rate < 0.03, "false-positive rate {rate}");
}

/// A table of several data blocks, its entries and its bytes.
fn corruption_fixture(dir: &Path) -> (PathBuf, Vec<Entry>, Vec<u8>) {
    let path = dir.join("victim.sst");
    let entries: Vec<Entry> = (0..200)
        .map(|i| {
            let key = CellKey::body("t", &format!("entity-{i:04}")).encode();
            let value = (i % 5 != 0).then(|| value_bytes(40, i as u8));
            entry(key, 10, i, value)
        })
        .collect();
    write_table(&path, &entries, small_blocks());
    let bytes = std::fs::read(&path).unwrap();
    (path, entries, bytes)
}

/// Opens a damaged table, reads everything, seeks; the damage must surface as corruption and no
/// entry may differ from the original.
fn assert_damage_detected(path: &Path, entries: &[Entry], what: &str) {
    let table = match open_table(path, 1 << 20) {
        Err(error) => {
            assert!(error.is_corruption(), "{what}: open gave {error}");
            return;
        }
        Ok(table) => table,
    };
    let mut read = Vec::new();
    let mut error = None;
    for item in table.iter() {
        match item {
            Ok(entry) => read.push(entry),
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(read, entries[..read.len()], "{what}: wrong entries");
    let error = error.unwrap_or_else(|| panic!("{what}: damage not detected"));
    assert!(error.is_corruption(), "{what}: {error}");
    assert!(matches!(error, Error::Corruption { ref path, .. } if path.ends_with("victim.sst")));
}

#[test]
fn a_bit_flip_in_every_region_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, entries, original) = corruption_fixture(dir.path());
    let footer_start = original.len() - FOOTER_LEN;
    let footer = Footer::decode(&original[footer_start..], original.len() as u64).unwrap();
    let region_end = |offset: u64, size: u64| (offset + size) as usize + BLOCK_TRAILER_LEN;
    let regions = [
        ("data blocks", 0, footer.filter.offset as usize),
        (
            "filter block",
            footer.filter.offset as usize,
            region_end(footer.filter.offset, footer.filter.size),
        ),
        (
            "properties block",
            footer.properties.offset as usize,
            region_end(footer.properties.offset, footer.properties.size),
        ),
        (
            "index block",
            footer.index.offset as usize,
            region_end(footer.index.offset, footer.index.size),
        ),
        ("footer", footer_start, original.len()),
    ];
    for (name, start, end) in regions {
        assert!(start < end, "{name} is empty");
        // Every byte of small regions, a spread of bytes in the data region (and its trailers).
        let step = ((end - start) / 300).max(1);
        for position in (start..end).step_by(step) {
            let bit = position % 8;
            let mut damaged = original.clone();
            damaged[position] ^= 1 << bit;
            std::fs::write(&path, &damaged).unwrap();
            assert_damage_detected(
                &path,
                &entries,
                &format!("{name} byte {position} bit {bit}"),
            );
        }
    }
}

#[test]
fn data_block_damage_fails_reads_but_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, entries, mut bytes) = corruption_fixture(dir.path());
    bytes[10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let table = open_table(&path, 1 << 20).unwrap();
    let mut iter = table.iter();
    iter.seek(&entries[0].key.user_key);
    let error = iter.next().unwrap().unwrap_err();
    assert!(
        matches!(error, Error::Corruption { offset: 0, .. }),
        "{error}"
    );
    assert!(iter.next().is_none(), "iteration ends after an error");
    // Blocks after the damaged one are still readable.
    iter.seek(&entries[150].key.user_key);
    assert_eq!(iter.next().unwrap().unwrap(), entries[150]);
}

#[test]
fn truncated_files_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, original) = corruption_fixture(dir.path());
    let step = (original.len() / 200).max(1);
    for len in (0..original.len())
        .step_by(step)
        .chain(original.len() - 8..original.len())
    {
        std::fs::write(&path, &original[..len]).unwrap();
        let error = open_table(&path, NO_CACHE).unwrap_err();
        assert!(error.is_corruption(), "length {len}: {error}");
    }
}

#[test]
fn garbage_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sst");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..300 {
        let len = rng.random_range(0..4_000);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 2 == 0 && len >= FOOTER_LEN {
            // Give half of them a valid magic so the footer checks run.
            bytes[len - 8..].copy_from_slice(&super::format::TABLE_MAGIC);
        }
        std::fs::write(&path, &bytes).unwrap();
        let error = open_table(&path, NO_CACHE).unwrap_err();
        assert!(error.is_corruption(), "round {round}: {error}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn bounded_iteration_matches_the_model(entries in arb_entries()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.sst");
        write_table(&path, &entries, small_blocks());
        let table = open_table(&path, 1 << 20).unwrap();
        for e in &entries {
            let partition = partition_of(&e.key.user_key).unwrap();
            let end = crate::key::prefix_successor(partition);
            let expected: Vec<&Entry> = entries
                .iter()
                .filter(|x| x.key.user_key.as_slice() >= partition)
                .filter(|x| end.as_ref().is_none_or(|end| x.key.user_key < *end))
                .collect();
            let mut iter = table.iter().with_upper_bound(end.clone());
            iter.seek(partition);
            let found: Vec<Entry> = iter.map(|x| x.unwrap()).collect();
            prop_assert_eq!(found.iter().collect::<Vec<_>>(), expected);
        }
    }
}

#[test]
fn a_bounded_point_read_does_not_load_the_next_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sst");
    // Each value fills a block, so every partition ends a block.
    let entries: Vec<Entry> = (0..50)
        .map(|i| {
            let key = CellKey::body("t", &format!("entity-{i:03}")).encode();
            entry(key, 1, i, Some(value_bytes(5_000, i as u8)))
        })
        .collect();
    write_table(&path, &entries, TableOptions::default());
    let cache = Arc::new(BlockCache::new(1 << 20));
    let table = Arc::new(Table::open(&OsFileSystem, &path, 3, Arc::clone(&cache)).unwrap());
    let partition = crate::key::partition_prefix("t", "entity-010");
    let end = crate::key::prefix_successor(&partition);

    let mut bounded = table.iter().with_upper_bound(end);
    bounded.seek(&partition);
    let found: Vec<Entry> = bounded.map(|x| x.unwrap()).collect();
    assert_eq!(found, vec![entries[10].clone()]);
    assert_eq!(cache.misses(), 1, "only the partition's block is read");

    let mut unbounded = table.iter();
    unbounded.seek(&partition);
    assert_eq!(unbounded.nth(1).unwrap().unwrap(), entries[11]);
    assert_eq!(cache.misses(), 2, "without a bound the next block is read");
}

#[test]
fn block_cache_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cached.sst");
    let entries: Vec<Entry> = (0..2_000)
        .map(|i| {
            let key = CellKey::body("t", &format!("entity-{i:05}")).encode();
            entry(key, 1, i, Some(value_bytes(500, i as u8)))
        })
        .collect();
    let properties = write_table(&path, &entries, TableOptions::default());
    assert!(properties.data_blocks > 100);
    let capacity = 64 << 10;
    let cache = Arc::new(BlockCache::new(capacity));
    let table = Arc::new(Table::open(&OsFileSystem, &path, 3, Arc::clone(&cache)).unwrap());
    for _ in 0..2 {
        assert_eq!(read_all(&table), entries);
        assert!(cache.used_bytes() <= capacity, "{cache:?}");
    }
    assert!(!cache.is_empty());
    assert_eq!(cache.misses(), 2 * properties.data_blocks - cache.hits());

    // Repeated reads of one block hit the cache.
    let hits = cache.hits();
    let mut iter = table.iter();
    for _ in 0..10 {
        iter.seek(&entries[1_999].key.user_key);
        assert_eq!(iter.next().unwrap().unwrap(), entries[1_999]);
    }
    let mut other_iter = table.iter();
    other_iter.seek(&entries[1_999].key.user_key);
    assert_eq!(other_iter.next().unwrap().unwrap(), entries[1_999]);
    assert!(cache.hits() > hits);
}

#[test]
fn tables_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Table>();
    assert_send_sync::<BlockCache>();

    let dir = tempfile::tempdir().unwrap();
    let (path, entries, _) = corruption_fixture(dir.path());
    let table = open_table(&path, 1 << 20).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let table = Arc::clone(&table);
            let entries = &entries;
            scope.spawn(move || {
                for i in (thread..entries.len()).step_by(2) {
                    let mut iter = table.iter();
                    iter.seek(&entries[i].key.user_key);
                    assert_eq!(iter.next().unwrap().unwrap(), entries[i]);
                }
            });
        }
    });
}
