//! What a range stream's receiver spends per byte of text (docs/benchmarks.md, issue 34): text-only
//! entities (one chunk of synthetic words, no vector) written into a store as a stream applies
//! a chunk's pieces: raw cells (a marker and a body per entity) in synced write batches through
//! the engine, so the commit observer decodes, analyzes and indexes them as on a receiver.
//!
//! ```text
//! cargo run --profile test -p allidb-index --example text_apply -- [--entities 300000] \
//!     [--text-bytes 400] [--batch 8192] [--rounds 3] [--texts FILE]
//! ```
//!
//! The words are those of `allidb bench ingest --text-bytes`: three of 16 syllables each, so a
//! vocabulary of 4,096 words drawn uniformly. `--texts FILE` takes the texts of a JSON-lines
//! file instead (the `text` field of each line, as `npm-minilm-20k/texts.jsonl`), entity `i`
//! the text of line `i` modulo the lines. Each round applies every entity into a fresh store
//! and prints the bytes applied (keys and values), the wall time, the process's CPU time over the
//! round (every thread: the writing thread, the rayon pool that prepares batches, the commit
//! thread, the background indexer and flushes) and MB/s of both; then the medians.

#[path = "common/allocator.rs"]
mod allocator;
mod common;
#[path = "common/median.rs"]
mod median;

use std::time::Instant;

use allidb_index::{StoreOptions, UnifiedStore};
use allidb_storage::Durability;
use allidb_storage::batch::WriteBatch;
use allidb_storage::cell::{EntityBody, TextChunk};
use allidb_storage::key::CellKey;
use common::Flags;
use median::median;

/// Syllables of the synthetic words (as `allidb bench ingest`): three make a word.
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "va", "ze", "bo", "du", "fi", "gu", "ho", "je",
];

/// About `bytes` bytes of words for entity `index` (a fixed xorshift stream per entity).
fn text(index: u64, bytes: usize) -> String {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = String::with_capacity(bytes);
    while text.len() + 7 <= bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = (state >> 20) as usize & 4095;
        for shift in [8, 4, 0] {
            text.push_str(SYLLABLES[(word >> shift) & 15]);
        }
        text.push(' ');
    }
    text
}

/// The `text` field of each line of the JSON-lines file `path`.
fn read_texts(path: &str) -> Vec<String> {
    let file = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    file.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("a line of {path}: {e}"));
            value["text"]
                .as_str()
                .unwrap_or_else(|| panic!("a line of {path} without a text"))
                .to_owned()
        })
        .collect()
}

/// The batches to apply: `entities` text-only entities of tenant `bench`, `batch` per batch,
/// their texts from `texts` when given.
fn batches(
    entities: u64,
    text_bytes: usize,
    batch: u64,
    texts: Option<&[String]>,
) -> (Vec<WriteBatch>, u64) {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut current = WriteBatch::new();
    for i in 0..entities {
        let id = format!("w{i}");
        let body = EntityBody {
            entity_type: "bench".to_owned(),
            chunks: vec![TextChunk {
                chunk_id: "c0".to_owned(),
                text: match texts {
                    Some(texts) => texts[(i % texts.len() as u64) as usize].clone(),
                    None => text(i, text_bytes),
                },
                ..TextChunk::default()
            }],
            ..EntityBody::default()
        };
        let marker = CellKey::marker("bench", &id).encode();
        let key = CellKey::body("bench", &id).encode();
        let value = body.encode().expect("a body encodes");
        bytes += (marker.len() + key.len() + value.len()) as u64;
        current.put(marker, 10 + i, Vec::new());
        current.put(key, 10 + i, value);
        if (i + 1) % batch == 0 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    (out, bytes)
}

/// CPU seconds of this process so far (every thread).
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given and returns 0 on
    // success; the value is read only then.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let flags = Flags::from_env();
    let entities: u64 = flags.number("--entities", 300_000);
    let text_bytes: usize = flags.number("--text-bytes", 400);
    let batch: u64 = flags.number("--batch", 8192);
    let rounds: usize = flags.number("--rounds", 3);
    let texts = flags.value("--texts").map(read_texts);
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for round in 0..rounds {
        let (batches, bytes) = batches(entities, text_bytes, batch, texts.as_deref());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = UnifiedStore::open(dir.path(), StoreOptions::default()).expect("store opens");
        let cpu = cpu_seconds();
        let start = Instant::now();
        for batch in batches {
            store
                .engine()
                .write(batch, Durability::Sync)
                .expect("the batch commits");
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let mb = bytes as f64 / 1e6;
        println!(
            "round {round}: {entities} entities, {mb:.1} MB in {wall:.2} s wall ({:.1} MB/s), \
             {cpu:.2} s CPU ({:.1} MB per CPU second)",
            mb / wall,
            mb / cpu
        );
        walls.push(mb / wall);
        cpus.push(mb / cpu);
        drop(store);
    }
    println!(
        "median: {:.1} MB/s wall, {:.1} MB per CPU second",
        median(walls),
        median(cpus)
    );
}
