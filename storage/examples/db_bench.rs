//! A small db_bench: durable ingest of entities with a 1.5 KiB body (a 384-d vector) in batches of
//! 256 with `sync` durability and group commit, through flushes and compactions; then random
//! entity reads from SSTables (the memtables are flushed first). Reports entities/s, write and
//! space amplification, and read latency percentiles.
//!
//! Phases and what each figure means:
//! 1. ingest: `--writers` threads write `--entities` bodies in `WriteBatch`es of `--batch`, each
//!    acknowledged only once its WAL record is `fdatasync`ed (`Durability::Sync`);
//! 2. flush the memtables, then settle: wait until the background compaction has nothing left to
//!    do (L0 below the trigger and every level within its target: the same test the compaction
//!    picker applies), so the space figure and the reads see the tree's final shape;
//! 3. random `get_entity` of ingested ids, all served from SSTables.
//!
//! Amplification is measured against the logical bytes ingested (key + value of every cell):
//! space = live table bytes / logical bytes; write = (WAL + flush + compaction bytes) / logical
//! bytes from the engine's counters, and also from the kernel's count of bytes this process sent
//! to the block device (`/proc/self/io` `write_bytes`), which is what RocksDB is measured with.
//!
//! ```sh
//! cargo run --release -p allidb-storage --example db_bench -- --entities 1000000 --dir /tmp/allidb-bench
//! ```
//! `bench/rocksdb_bench.py` runs the same workload (same keys, values, batches, sync) on RocksDB;
//! both print a final `result:` line of `name=value` pairs that `bench/run_storage_bench.sh` reads.

#[path = "../benches/common/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allidb_storage::compaction::level_target;
use allidb_storage::version::NUM_LEVELS;
use allidb_storage::{Engine, Options, Stats};

use workload::{TENANT, XorShift, id_of};

struct Args {
    entities: u64,
    batch: u64,
    writers: u64,
    gets: u64,
    dir: PathBuf,
    keep: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        entities: 1_000_000,
        batch: 256,
        writers: 4,
        gets: 100_000,
        dir: std::env::temp_dir().join("allidb-db-bench"),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            args.keep = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--entities" => args.entities = number(),
            "--batch" => args.batch = number(),
            "--writers" => args.writers = number(),
            "--gets" => args.gets = number(),
            "--dir" => args.dir = PathBuf::from(&value),
            other => panic!(
                "unknown flag {other} (flags: --entities --batch --writers --gets --dir --keep)"
            ),
        }
    }
    assert!(
        args.entities > 0 && args.batch > 0 && args.writers > 0,
        "--entities, --batch and --writers must be positive"
    );
    args
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn dir_bytes(dir: &Path, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes this process caused to be sent to the block device so far (Linux `/proc/self/io`);
/// `None` where the kernel does not report it.
fn device_write_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// True when the compaction picker would find nothing to do and no flush is pending: with one
/// compaction at a time and no writes, the tree then cannot change any more.
fn settled(stats: &Stats, options: &Options) -> bool {
    stats.immutable_memtables == 0
        && (stats.tables_per_level[0] as usize) < options.l0_compaction_trigger
        && (1..NUM_LEVELS - 1).all(|level| {
            stats.bytes_per_level[level]
                < level_target(options.level1_bytes, options.level_multiplier, level)
        })
}

/// Random `get_entity` of ingested ids; returns the sorted latencies and the elapsed time.
fn random_gets(engine: &Engine, args: &Args) -> (Vec<Duration>, Duration) {
    let mut samples = Vec::with_capacity(args.gets as usize);
    let mut rng = XorShift::for_reads();
    let start = Instant::now();
    for _ in 0..args.gets {
        let i = rng.next_u64() % args.entities;
        let id = id_of(i);
        let t = Instant::now();
        let found = engine.get_entity(TENANT, &id).expect("read");
        samples.push(t.elapsed());
        workload::check(found, i);
    }
    let elapsed = start.elapsed();
    samples.sort();
    (samples, elapsed)
}

fn main() {
    let args = parse_args();
    let options = Options::default();
    let _ = std::fs::remove_dir_all(&args.dir);
    let engine = Arc::new(Engine::open(&args.dir, options.clone()).expect("open"));
    let written_at_start = device_write_bytes();

    let start = Instant::now();
    let logical = workload::ingest(&engine, args.entities, args.batch, args.writers);
    let ingest_time = start.elapsed();
    engine.flush().expect("flush");
    let flush_time = start.elapsed();
    while !settled(&engine.stats(), &options) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let settle_time = start.elapsed();
    let device_written = written_at_start
        .zip(device_write_bytes())
        .map(|(a, b)| b - a);

    let stats = engine.stats();
    let n = args.entities as f64;
    let logical_f = logical as f64;
    let live_table_bytes: u64 = stats.bytes_per_level.iter().sum();
    let engine_written = stats.user_bytes + stats.flush_bytes + stats.compaction_write_bytes;
    let write_amp = engine_written as f64 / logical_f;
    let device_write_amp = device_written.map(|w| w as f64 / logical_f);
    let space_amp = live_table_bytes as f64 / logical_f;
    println!(
        "ingest: {} entities ({:.0} MB logical) in {:.2?} = {:.0} entities/s acknowledged",
        args.entities,
        logical_f / 1e6,
        ingest_time,
        n / ingest_time.as_secs_f64()
    );
    println!(
        "flushed after {:.2?}, compactions settled after {:.2?}: {:.0} entities/s including both",
        flush_time,
        settle_time,
        n / settle_time.as_secs_f64()
    );
    println!(
        "write amplification: {write_amp:.2} (engine counters: WAL ~{:.0} MB + flush {:.0} MB + compaction {:.0} MB), {} by the block device",
        stats.user_bytes as f64 / 1e6,
        stats.flush_bytes as f64 / 1e6,
        stats.compaction_write_bytes as f64 / 1e6,
        device_write_amp.map_or("not reported".to_owned(), |a| format!("{a:.2}")),
    );
    println!(
        "space amplification: {space_amp:.3} (live tables {:.0} MB; .sst files in the directory {:.0} MB)",
        live_table_bytes as f64 / 1e6,
        dir_bytes(&args.dir, "sst") as f64 / 1e6
    );
    println!(
        "tables per level: {:?}; flushes: {}; compactions: {}; stalls: {}; slowdowns: {}",
        stats.tables_per_level, stats.flushes, stats.compactions, stats.stalls, stats.slowdowns
    );

    let (samples, get_time) = random_gets(&engine, &args);
    let after = engine.stats();
    assert_eq!(
        (after.memtable_bytes, after.immutable_memtables),
        (0, 0),
        "reads were served from SSTables only"
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99, p999) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
    );
    let gets_per_s = args.gets as f64 / get_time.as_secs_f64();
    println!(
        "random get from SSTables: {} reads, {gets_per_s:.0}/s, p50 {:.1}us, p99 {:.1}us, p99.9 {:.1}us, max {:.1}us (block cache hits {} misses {})",
        args.gets,
        us(p50),
        us(p99),
        us(p999),
        us(*samples.last().expect("at least one get")),
        after.block_cache_hits - stats.block_cache_hits,
        after.block_cache_misses - stats.block_cache_misses
    );
    println!(
        "result: engine=allidb entities={} ingest_eps={:.0} total_eps={:.0} settle_s={:.2} write_amp={write_amp:.3} device_write_amp={} space_amp={space_amp:.3} gets_per_s={gets_per_s:.0} get_p50_us={:.1} get_p99_us={:.1} get_p999_us={:.1}",
        args.entities,
        n / ingest_time.as_secs_f64(),
        n / settle_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        device_write_amp.map_or("nan".to_owned(), |a| format!("{a:.3}")),
        us(p50),
        us(p99),
        us(p999),
    );
    drop(engine);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
}
