//! Fuzzes the SSTable reader: the block parser ([`sstable::decode_block`]) and
//! [`Table::open`] plus iteration over file bytes on a simulated file system.
//!
//! Three kinds of input:
//! * `RawBlock`: arbitrary bytes parsed as one block (what a block whose checksum happens to
//!   pass would hold). Checked: no panic; decoded entries strictly increase; a seek lands on a
//!   key `>=` its target; errors are corruption.
//! * `RawFile`: arbitrary bytes opened as a table and iterated. Same checks.
//! * `Built`: a valid table written by [`TableBuilder`] from generated entries. Checked: every
//!   entry round-trips in order; seeks (repeated on one iterator, so block reuse is exercised)
//!   yield exactly the entries at or after their target; the bloom filter has no false negative;
//!   after one flipped bit the table either fails with corruption or still reads exactly the
//!   same entries (never different data); a truncated table fails to open with corruption.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use allidb_fuzz::{assert_corruption, sim_dir, write_file};
use allidb_storage::Result;
use allidb_storage::fs::FileSystem;
use allidb_storage::fs::sim::SimFileSystem;
use allidb_storage::key::partition_of;
use allidb_storage::sstable::{self, BlockCache, Table, TableBuilder, TableOptions};
use allidb_storage::types::{Entry, InternalKey};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    RawBlock {
        data: Vec<u8>,
        seek: Vec<u8>,
    },
    RawFile(Vec<u8>),
    Built {
        entries: Vec<EntrySpec>,
        block_size: u16,
        seeks: Vec<Vec<u8>>,
        flip: Option<(u32, u8)>,
        cut: Option<u32>,
    },
}

#[derive(Arbitrary, Debug)]
struct EntrySpec {
    key: Vec<u8>,
    ts: u64,
    seq: u64,
    value: Option<Vec<u8>>,
}

const MAX_ENTRIES: usize = 300;
const MAX_SEEKS: usize = 8;
/// Entries compared after each seek (the rest of the table is checked by the full scan).
const ENTRIES_PER_SEEK: usize = 3;

fuzz_target!(|input: Input| match input {
    Input::RawBlock { data, seek } => check_raw_block(&data, &seek),
    Input::RawFile(bytes) => check_raw_file(&bytes),
    Input::Built {
        entries,
        block_size,
        seeks,
        flip,
        cut,
    } => check_built(entries, block_size, &seeks, flip, cut),
});

fn assert_increasing(entries: &[Entry], what: &str) {
    for pair in entries.windows(2) {
        assert!(
            pair[0].key < pair[1].key,
            "{what}: entries out of order: {:?} then {:?}",
            pair[0].key,
            pair[1].key
        );
    }
}

fn check_raw_block(data: &[u8], seek: &[u8]) {
    match sstable::decode_block(data, seek) {
        Ok((entries, found)) => {
            assert!(
                !entries.is_empty(),
                "a parsed block holds at least one entry"
            );
            assert_increasing(&entries, "block");
            if let Some(found) = found {
                assert!(
                    found.key.user_key.as_slice() >= seek,
                    "seek landed before its target"
                );
            }
        }
        Err(error) => assert_corruption(&error, "block parser"),
    }
}

fn open(fs: &SimFileSystem, path: &Path) -> Result<Arc<Table>> {
    let cache = Arc::new(BlockCache::new(1 << 20));
    Table::open(fs, path, 1, cache).map(Arc::new)
}

/// Every entry of the table, or the first error.
fn scan(table: &Arc<Table>) -> Result<Vec<Entry>> {
    table.iter().collect()
}

fn check_raw_file(bytes: &[u8]) {
    let (fs, dir) = sim_dir(&[("000001.sst".to_owned(), bytes)]);
    match open(&fs, &dir.join("000001.sst")).and_then(|table| scan(&table)) {
        Ok(entries) => assert_increasing(&entries, "table"),
        Err(error) => assert_corruption(&error, "table of arbitrary bytes"),
    }
}

fn check_built(
    specs: Vec<EntrySpec>,
    block_size: u16,
    seeks: &[Vec<u8>],
    flip: Option<(u32, u8)>,
    cut: Option<u32>,
) {
    let mut entries: Vec<Entry> = specs
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|spec| Entry {
            key: InternalKey::new(spec.key, spec.ts, spec.seq),
            value: spec.value,
        })
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries.dedup_by(|a, b| a.key == b.key);
    if entries.is_empty() {
        return;
    }
    let (fs, dir) = sim_dir(&[]);
    let path = dir.join("000001.sst");
    let options = TableOptions {
        block_size: 256 + usize::from(block_size % 4096),
        bloom_bits_per_key: 10,
    };
    let mut builder = TableBuilder::new(
        fs.create(&path).expect("the directory exists"),
        path.clone(),
        options,
    );
    for entry in &entries {
        builder
            .add(entry)
            .expect("sorted, distinct entries are accepted");
    }
    builder.finish().expect("a table with entries finishes");

    let table = open(&fs, &path).expect("a freshly built table opens");
    assert_eq!(
        scan(&table).expect("a fresh table reads"),
        entries,
        "entries do not round-trip"
    );
    assert_eq!(table.properties().entries, entries.len() as u64);
    for entry in &entries {
        if let Some(partition) = partition_of(&entry.key.user_key) {
            assert!(
                table.may_contain_partition(partition),
                "bloom filter false negative"
            );
        }
    }
    let mut iter = table.iter();
    for target in seeks.iter().take(MAX_SEEKS) {
        iter.seek(target);
        let got: Vec<Entry> = iter
            .by_ref()
            .take(ENTRIES_PER_SEEK)
            .collect::<Result<_>>()
            .expect("a fresh table reads");
        let expected: Vec<Entry> = entries
            .iter()
            .filter(|e| e.key.user_key.as_slice() >= target.as_slice())
            .take(ENTRIES_PER_SEEK)
            .cloned()
            .collect();
        assert_eq!(got, expected, "seek to {target:?}");
    }

    let bytes = fs.read(&path).expect("the table was just written");
    if let Some((at, bit)) = flip {
        let mut damaged = bytes.clone();
        let at = at as usize % damaged.len();
        damaged[at] ^= 1 << (bit % 8);
        write_file(&fs, &path, &damaged);
        match open(&fs, &path).and_then(|table| scan(&table)) {
            Ok(read) => assert_eq!(read, entries, "a flipped bit at {at} changed the data read"),
            Err(error) => assert_corruption(&error, "table with a flipped bit"),
        }
    }
    if let Some(cut) = cut {
        let cut = cut as usize % bytes.len();
        write_file(&fs, &path, &bytes[..cut]);
        match open(&fs, &path) {
            Ok(_) => panic!("a table cut to {cut} of {} bytes opened", bytes.len()),
            Err(error) => assert_corruption(&error, "truncated table"),
        }
    }
}
