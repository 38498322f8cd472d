#!/usr/bin/env bash
# Runs the storage engine's db_bench and the RocksDB baseline (bench/rocksdb_bench.py) back to
# back on the same workload, RUNS times, and prints the medians side by side with the ratios.
#
#   bench/run_storage_bench.sh [ENTITIES=1000000] [RUNS=3] [GETS=100000]
#
# Per run: db_bench with 4 writer threads (the issue's workload), db_bench with 1 writer thread,
# and RocksDB with 1 writer thread (rocksdict holds the GIL during writes, see the script). The
# ingest ratio is taken writer-for-writer (1 vs 1); the 4-writer figure is the engine's own.
# Needs: cargo, python3 with rocksdict (pip install rocksdict). Data goes under $BENCH_DIR
# (default /tmp) and is removed after each run.
set -euo pipefail

entities=${1:-1000000}
runs=${2:-3}
gets=${3:-100000}
bench_dir=${BENCH_DIR:-/tmp}
repo=$(cd "$(dirname "$0")/.." && pwd)
logs=$(mktemp -d "${TMPDIR:-/tmp}/storage-bench-logs.XXXXXX")
trap 'rm -rf "$logs" "$bench_dir/allidb-bench.$$" "$bench_dir/rocksdb-bench.$$"' EXIT

python3 -c 'import rocksdict' 2>/dev/null || {
    echo "rocksdict is missing: pip install rocksdict" >&2
    exit 1
}
cargo build --release --quiet -p allidb-storage --example db_bench --manifest-path "$repo/Cargo.toml"
db_bench="$repo/target/release/examples/db_bench"

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
df -h "$bench_dir" | tail -1 | awk '{print "# disk under " $6 ": " $1 ", " $4 " free"}'
# Runs one benchmark command, shows its output and keeps its result line as engine NAME.
run_one() {
    local name=$1
    shift
    "$@" | tee "$logs/last.log"
    grep '^result:' "$logs/last.log" | sed "s/engine=[^ ]*/engine=$name/" >>"$logs/results"
}

for run in $(seq 1 "$runs"); do
    for writers in 4 1; do
        echo "## run $run: allidb db_bench, $writers writer(s)"
        run_one "allidb-w$writers" "$db_bench" --entities "$entities" --gets "$gets" \
            --writers "$writers" --dir "$bench_dir/allidb-bench.$$"
    done
    echo "## run $run: rocksdb, 1 writer"
    run_one rocksdb-w1 python3 "$repo/bench/rocksdb_bench.py" --entities "$entities" \
        --gets "$gets" --dir "$bench_dir/rocksdb-bench.$$"
done

python3 - "$logs/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    pairs = dict(p.split("=", 1) for p in line.split()[1:])
    rows.setdefault(pairs.pop("engine"), []).append({k: float(v) for k, v in pairs.items()})
def med(engine, key):
    values = [r[key] for r in rows.get(engine, []) if key in r]
    return statistics.median(values) if values else float("nan")
metrics = [
    ("ingest entities/s (acknowledged)", "ingest_eps", True),
    ("entities/s incl. flush + compaction settle", "total_eps", True),
    ("write amplification (block device)", "device_write_amp", False),
    ("space amplification", "space_amp", False),
    ("random gets/s", "gets_per_s", True),
    ("random get p50 (us)", "get_p50_us", False),
    ("random get p99 (us)", "get_p99_us", False),
    ("random get p99.9 (us)", "get_p999_us", False),
]
def run_ratio(key, higher_is_better):
    """Median over runs of the same run's allidb (1 writer) / RocksDB ratio: the machine's load
    changes between runs, so each run is compared with its own RocksDB run."""
    pairs = zip(rows.get("allidb-w1", []), rows.get("rocksdb-w1", []))
    ratios = [a[key] / r[key] if higher_is_better else r[key] / a[key] for a, r in pairs]
    return statistics.median(ratios) if ratios else float("nan")
runs = len(rows.get("rocksdb-w1", []))
print(f"\nmedians of {runs} run(s); ratio = median of per-run allidb 1 writer / RocksDB 1 writer "
      "(>1 = allidb better)")
print("| metric | allidb 4 writers | allidb 1 writer | RocksDB 1 writer | ratio |")
print("|---|---|---|---|---|")
for name, key, higher_is_better in metrics:
    a4, a1, r1 = med("allidb-w4", key), med("allidb-w1", key), med("rocksdb-w1", key)
    print(f"| {name} | {a4:.5g} | {a1:.5g} | {r1:.5g} | {run_ratio(key, higher_is_better):.2f}x |")
print(f"RocksDB: Python per-call overhead (timer + call + value copy) ~{med('rocksdb-w1', 'call_overhead_ns'):.0f} ns "
      f"per get; WriteBatch building in Python {med('rocksdb-w1', 'build_s'):.2f} s of the ingest")
EOF
