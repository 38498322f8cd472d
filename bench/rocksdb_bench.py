#!/usr/bin/env python3
"""RocksDB baseline for storage/examples/db_bench.rs: the same workload through rocksdict.

Workload (mirrors db_bench):
  * keys: the engine's encoded body-cell key b"bench\\x00" + id + b"\\x00\\x01" with
    id = "e%010d" % ((i * 2654435761) % 4294967291), i in 0..N (random key order);
  * values: 1559 bytes each (the length of db_bench's encoded 384-d body), deterministic
    pseudo-random bytes sliced from one seeded buffer; compression off;
  * WriteBatch of 256, WriteOptions.sync = True, then flush, then wait until no flush or
    compaction is pending or running, then random gets of ingested keys.

The tree is configured like the engine's defaults: 64 MiB memtables (1 + 2 immutable), L0
triggers 4/12/20, 64 MiB target files, L1 256 MiB x10 per level (static level sizes), 4 KiB blocks,
10-bit bloom filters, 256 MiB block cache, one flush and one compaction job.

rocksdict keeps the GIL inside Rdict.write and Rdict.get (measured: a Python thread makes almost
no progress during a 1 s write), so several writer threads would only take turns: this script
writes from ONE thread, and RocksDB's group commit never merges batches from several writers.
The comparison with db_bench is therefore made with db_bench --writers 1 as well.

Python adds a per-call cost around each RocksDB call (argument conversion, result bytes object,
timer). The script measures it (timer + a trivial builtin call; a bytes slice of the value size)
and prints it so the reader can subtract it.

Prints human-readable lines and a final "result:" line of name=value pairs.
"""

import argparse
import random
import shutil
import time

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

VALUE_BYTES = 1559
MASK64 = (1 << 64) - 1


def key_of(i):
    return b"bench\x00" + (b"e%010d" % ((i * 2654435761) % 4294967291)) + b"\x00\x01"


def device_write_bytes():
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def open_db(path):
    opt = Options(raw_mode=True)
    opt.create_if_missing(True)
    opt.set_write_buffer_size(64 << 20)
    opt.set_max_write_buffer_number(3)
    opt.set_min_write_buffer_number_to_merge(1)
    opt.set_level_zero_file_num_compaction_trigger(4)
    opt.set_level_zero_slowdown_writes_trigger(12)
    opt.set_level_zero_stop_writes_trigger(20)
    opt.set_target_file_size_base(64 << 20)
    opt.set_max_bytes_for_level_base(256 << 20)
    opt.set_max_bytes_for_level_multiplier(10.0)
    opt.set_level_compaction_dynamic_level_bytes(False)
    opt.set_compression_type(DBCompressionType.none())
    opt.set_max_background_jobs(2)
    opt.enable_statistics()
    table = BlockBasedOptions()
    table.set_block_size(4096)
    table.set_bloom_filter(10, False)
    table.set_block_cache(Cache(256 << 20))
    opt.set_block_based_table_factory(table)
    db = Rdict(path, opt)
    write_opt = WriteOptions()
    write_opt.sync = True
    db.set_write_options(write_opt)
    return db, opt


def ticker(stats_text, name):
    """A ticker's COUNT from the Options statistics dump, or 0 if absent."""
    for line in stats_text.splitlines():
        if line.startswith(name + " COUNT"):
            return int(line.split(":")[1])
    return 0


def per_call_overhead_ns(value):
    """Timer + trivial builtin call, and a bytes copy of one value, in ns per call."""
    rounds = 200_000
    noop = len
    total = 0
    for _ in range(rounds):
        t = time.perf_counter_ns()
        noop(value)
        total += time.perf_counter_ns() - t
    timer_call = total / rounds
    t = time.perf_counter_ns()
    for j in range(rounds):
        value[j & 7 :]
    copy = (time.perf_counter_ns() - t) / rounds
    return timer_call, copy


def settled(db):
    return all(
        db.property_int_value(p) == 0
        for p in (
            "rocksdb.compaction-pending",
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
            "rocksdb.mem-table-flush-pending",
        )
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--gets", type=int, default=100_000)
    ap.add_argument("--dir", default="/tmp/rocksdb-bench")
    ap.add_argument("--keep", action="store_true", help="keep the database directory")
    args = ap.parse_args()

    shutil.rmtree(args.dir, ignore_errors=True)
    db, opt = open_db(args.dir)
    pool = random.Random(42).randbytes(16 << 20)
    span = len(pool) - VALUE_BYTES

    def value_of(i):
        start = (i * 7919) % span
        return pool[start : start + VALUE_BYTES]

    written_at_start = device_write_bytes()
    n = args.entities
    logical = 0
    build_ns = 0
    start = time.perf_counter()
    for first in range(0, n, args.batch):
        t = time.perf_counter_ns()
        wb = WriteBatch(raw_mode=True)
        for i in range(first, min(first + args.batch, n)):
            key, value = key_of(i), value_of(i)
            logical += len(key) + len(value)
            wb.put(key, value)
        build_ns += time.perf_counter_ns() - t
        db.write(wb)
    ingest_s = time.perf_counter() - start
    db.flush(True)
    flush_s = time.perf_counter() - start
    while not settled(db):
        time.sleep(0.02)
    settle_s = time.perf_counter() - start
    written = device_write_bytes()
    device_wa = (
        (written - written_at_start) / logical
        if written is not None and written_at_start is not None
        else float("nan")
    )

    stats = opt.get_statistics() or ""
    live = db.property_int_value("rocksdb.live-sst-files-size")
    space_amp = live / logical
    levels = [
        db.property_int_value("rocksdb.num-files-at-level%d" % level) for level in range(7)
    ]
    print(
        "ingest: %d entities (%.0f MB logical) in %.2fs = %.0f entities/s acknowledged "
        "(of which %.2fs building WriteBatches in Python)"
        % (n, logical / 1e6, ingest_s, n / ingest_s, build_ns / 1e9)
    )
    print(
        "flushed after %.2fs, compactions settled after %.2fs: %.0f entities/s including both"
        % (flush_s, settle_s, n / settle_s)
    )
    print("write amplification: %.2f by the block device" % device_wa)
    if stats:
        wal, flush, compact = (
            ticker(stats, "rocksdb.wal.bytes"),
            ticker(stats, "rocksdb.flush.write.bytes"),
            ticker(stats, "rocksdb.compact.write.bytes"),
        )
        print(
            "  (RocksDB counters: WAL %.0f MB + flush %.0f MB + compaction %.0f MB = %.2f)"
            % (wal / 1e6, flush / 1e6, compact / 1e6, (wal + flush + compact) / logical)
        )
    print("space amplification: %.3f (live tables %.0f MB)" % (space_amp, live / 1e6))
    print("tables per level: %s" % levels)

    state = 0x2545F4914F6CDD1D
    samples = []
    get = db.get
    clock = time.perf_counter_ns
    get_start = time.perf_counter()
    for _ in range(args.gets):
        state ^= (state << 13) & MASK64
        state ^= state >> 7
        state ^= (state << 17) & MASK64
        i = state % n
        key = key_of(i)
        t = clock()
        value = get(key)
        samples.append(clock() - t)
        if value is None or len(value) != VALUE_BYTES:
            raise SystemExit("entity %d not found or wrong length" % i)
    get_s = time.perf_counter() - get_start
    samples.sort()

    def pct(p):
        return samples[round((len(samples) - 1) * p)] / 1e3

    timer_call, copy = per_call_overhead_ns(value_of(0))
    gets_per_s = args.gets / get_s
    print(
        "random get: %d reads, %.0f/s, p50 %.1fus, p99 %.1fus, p99.9 %.1fus, max %.1fus"
        % (args.gets, gets_per_s, pct(0.5), pct(0.99), pct(0.999), samples[-1] / 1e3)
    )
    print(
        "python overhead per call: timer + trivial call %.0f ns, a %d-byte bytes copy %.0f ns"
        % (timer_call, VALUE_BYTES, copy)
    )
    print(
        "result: engine=rocksdb entities=%d ingest_eps=%.0f total_eps=%.0f settle_s=%.2f "
        "write_amp=nan device_write_amp=%.3f space_amp=%.3f gets_per_s=%.0f get_p50_us=%.1f "
        "get_p99_us=%.1f get_p999_us=%.1f build_s=%.2f call_overhead_ns=%.0f"
        % (
            n,
            n / ingest_s,
            n / settle_s,
            settle_s,
            device_wa,
            space_amp,
            gets_per_s,
            pct(0.5),
            pct(0.99),
            pct(0.999),
            build_ns / 1e9,
            timer_call + copy,
        )
    )
    db.close()
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
