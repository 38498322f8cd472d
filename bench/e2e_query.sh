#!/usr/bin/env bash
# End-to-end Query and QueryBatch benchmark against hnswlib, in one run (docs/benchmarks-e2e.md).
#
#   bench/e2e_query.sh [RUNS=3] [DATA_DIR=../shared/data/npm-minilm-20k, beside the repository]
#
# Starts a fresh release `allidbd` on loopback ports, loads DATA_DIR through `allidb bench query`,
# waits until the background indexer has moved every vector into HNSW
# (`allidb_vector_index_pending` = 0 on the admin port), then per run:
#   1. `allidb bench query --skip-ingest -k 10 --concurrency 1` (one query in flight), and
#   2. the same with the daemon pinned to one core and 4 queries in flight from one client
#      runtime thread on the other core (the daemon's throughput per core),
#   3. the daemon on every core with 4 queries in flight (client on the same cores),
#   4. `--batch $BATCH` (default 64): the queries in QueryBatch requests, one request in flight,
#      the daemon on every core (to compare with 1: one round trip per batch instead of per query),
#   5. the same with the daemon pinned to one core (client on the other core),
#   6. hnswlib in process, one thread, at ef 64 (bench/hnswlib_sweep.py).
# Prints each figure and the medians' ratios. Needs python3 with hnswlib and numpy.
# Extra daemon flags can be passed in ALLIDBD_FLAGS; CARGO_TARGET_DIR is honoured.
# ALLIDB_BIN_DIR=DIR runs the `allidbd` and `allidb` found in DIR instead of building them
# (an A/B of two builds); PASSES=single runs only pass 1 and hnswlib (6) per run.
set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${2:-$repo/../shared/data/npm-minilm-20k}
queries=${QUERIES:-4000}
batch=${BATCH:-64}
target=${CARGO_TARGET_DIR:-$repo/target}
work=$(mktemp -d "${TMPDIR:-/tmp}/e2e-query.XXXXXX")
daemon_pid=

cleanup() {
    [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -n ${ALLIDB_BIN_DIR:-} ]]; then
    allidbd="$ALLIDB_BIN_DIR/allidbd"
    allidb="$ALLIDB_BIN_DIR/allidb"
else
    cargo build --release --quiet -p allidb-cmd --bins --manifest-path "$repo/Cargo.toml"
    allidbd="$target/release/allidbd"
    allidb="$target/release/allidb"
fi
passes=${PASSES:-all}

# A free port block: P (gRPC), P+1 (HTTP), P+2 (admin).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
port=$(( (port % 20000) + 30000 ))
addr=127.0.0.1:$port
admin=127.0.0.1:$((port + 2))

# shellcheck disable=SC2086
"$allidbd" --data-dir "$work/data" --grpc-addr "$addr" \
    --http-addr 127.0.0.1:$((port + 1)) --set server.admin_addr="$admin" ${ALLIDBD_FLAGS:-} \
    >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
    grep -q ready "$work/daemon.log" && break
    sleep 0.1
done
grep -q ready "$work/daemon.log" || { cat "$work/daemon.log" >&2; exit 1; }

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
common=(--vectors "$data/base.fvecs" --queries "$data/query.fvecs" --ground-truth "$data/groundtruth.ivecs" -k 10)
"$allidb" --addr "$addr" bench query "${common[@]}" -n 500 --concurrency 2 >"$work/load.log"
grep -m1 'entities/s' "$work/load.log" || true
while :; do
    pending=$(curl -s "http://$admin/metrics" | awk '/^allidb_vector_index_pending/ {s += $2} END {print s + 0}')
    [[ $pending == 0 ]] && break
    sleep 2
done

qps() { grep -o '[0-9.]* queries/s' | head -1 | cut -d' ' -f1; }
# The figure line of a report and its recall.
figures() { echo "$(echo "$1" | grep -m1 'queries/s'), $(echo "$1" | grep -m1 -o 'recall@k: [0-9.]*')"; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
: >"$work/c1"
: >"$work/pinned"
: >"$work/hnswlib"
: >"$work/all"
: >"$work/batch"
: >"$work/batch_pinned"
for run in $(seq 1 "$runs"); do
    taskset -a -pc 0-$(($(nproc) - 1)) "$daemon_pid" >/dev/null
    out=$("$allidb" --addr "$addr" bench query "${common[@]}" --skip-ingest -n "$queries" --concurrency 1)
    echo "run $run, concurrency 1: $(figures "$out")"
    echo "$out" | qps >>"$work/c1"

    if [[ $passes == single ]]; then
        hn=$(python3 "$repo/bench/hnswlib_sweep.py" "$data" | awk -F'|' '$2 + 0 == 64 {print $(NF - 1) + 0}')
        echo "run $run, hnswlib ef 64, one thread: $hn QPS"
        echo "$hn" >>"$work/hnswlib"
        continue
    fi

    taskset -a -pc 0 "$daemon_pid" >/dev/null
    out=$(TOKIO_WORKER_THREADS=1 taskset -c 1 "$allidb" --addr "$addr" bench query "${common[@]}" \
        --skip-ingest -n "$queries" --concurrency 4)
    echo "run $run, one-core daemon, 4 in flight: $(figures "$out")"
    echo "$out" | qps >>"$work/pinned"

    taskset -a -pc 0-$(($(nproc) - 1)) "$daemon_pid" >/dev/null
    out=$("$allidb" --addr "$addr" bench query "${common[@]}" --skip-ingest -n "$queries" --concurrency 4)
    echo "run $run, daemon on all cores, 4 in flight: $(figures "$out")"
    echo "$out" | qps >>"$work/all"

    out=$("$allidb" --addr "$addr" bench query "${common[@]}" --skip-ingest -n "$queries" \
        --concurrency 1 --batch "$batch")
    echo "run $run, QueryBatch of $batch, 1 in flight: $(figures "$out")"
    echo "$out" | qps >>"$work/batch"

    taskset -a -pc 0 "$daemon_pid" >/dev/null
    out=$(TOKIO_WORKER_THREADS=1 taskset -c 1 "$allidb" --addr "$addr" bench query "${common[@]}" \
        --skip-ingest -n "$queries" --concurrency 1 --batch "$batch")
    echo "run $run, one-core daemon, QueryBatch of $batch, 1 in flight: $(figures "$out")"
    echo "$out" | qps >>"$work/batch_pinned"
    taskset -a -pc 0-$(($(nproc) - 1)) "$daemon_pid" >/dev/null

    hn=$(python3 "$repo/bench/hnswlib_sweep.py" "$data" | awk -F'|' '$2 + 0 == 64 {print $(NF - 1) + 0}')
    echo "run $run, hnswlib ef 64, one thread: $hn QPS"
    echo "$hn" >>"$work/hnswlib"
done

c1=$(median <"$work/c1")
if [[ $passes == single ]]; then
    hn=$(median <"$work/hnswlib")
    echo "medians: concurrency 1 $c1 QPS, hnswlib $hn QPS"
    awk -v a="$c1" -v h="$hn" 'BEGIN { printf "ratio to hnswlib: concurrency 1 %.2fx\n", a / h }'
    exit 0
fi
pinned=$(median <"$work/pinned")
all=$(median <"$work/all")
qb=$(median <"$work/batch")
qb_pinned=$(median <"$work/batch_pinned")
hn=$(median <"$work/hnswlib")
echo "medians: concurrency 1 $c1 QPS, one-core daemon $pinned QPS, all cores $all QPS, QueryBatch of $batch $qb QPS, one-core daemon QueryBatch $qb_pinned QPS, hnswlib $hn QPS"
awk -v a="$c1" -v b="$pinned" -v c="$all" -v d="$qb" -v e="$qb_pinned" -v h="$hn" 'BEGIN {
    printf "ratio to hnswlib: concurrency 1 %.2fx, one-core daemon %.2fx, all cores %.2fx, QueryBatch %.2fx, one-core daemon QueryBatch %.2fx\n", a / h, b / h, c / h, d / h, e / h
    printf "QueryBatch / Query one at a time: %.2fx\n", d / a
}'
