#!/usr/bin/env bash
# A/B of two allidbd builds on one ANN query at a time (docs/benchmarks.md, "One question, fast").
#
#   bench/ab_single_query.sh BEFORE_DIR AFTER_DIR [DATA_DIR=../shared/data/npm-minilm-20k]
#
# BEFORE_DIR and AFTER_DIR each hold an `allidbd` and an `allidb`. Starts both daemons on
# loopback ports with their own temporary data directories, loads DATA_DIR into each (`allidb
# bench query`), waits until every vector is in HNSW, then runs ROUNDS (default 10) rounds of N
# (default 4,000) queries, k 10, one in flight, alternating between the two daemons so that both
# see the same moments of a shared machine. Prints per burst the queries/s and the daemon's CPU
# time per query (µs, from /proc), then the medians; each round also runs hnswlib in process, one
# thread, at ef 64 (bench/hnswlib_sweep.py), for the ratios. Needs python3 with hnswlib and numpy.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${3:-$repo/../shared/data/npm-minilm-20k}
rounds=${ROUNDS:-10}
n=${N:-4000}
work=$(mktemp -d "${TMPDIR:-/tmp}/ab-single.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
port=$(( (port % 20000) + 30000 ))
common=(--vectors "$data/base.fvecs" --queries "$data/query.fvecs" --ground-truth "$data/groundtruth.ivecs" -k 10)
start() { # name dir port
    "$2/allidbd" --data-dir "$work/$1" --grpc-addr 127.0.0.1:$3 --http-addr 127.0.0.1:$(($3 + 1)) \
        --set server.admin_addr=127.0.0.1:$(($3 + 2)) >"$work/$1.log" 2>&1 &
    pids+=($!)
    echo $! >"$work/$1.pid"
    for _ in $(seq 1 100); do grep -q ready "$work/$1.log" && break; sleep 0.1; done
    "$2/allidb" --addr 127.0.0.1:$3 bench query "${common[@]}" -n 500 --concurrency 2 >/dev/null
    while :; do
        pending=$(curl -s "http://127.0.0.1:$(($3 + 2))/metrics" | awk '/^allidb_vector_index_pending/ {s += $2} END {print s + 0}')
        [[ $pending == 0 ]] && break
        sleep 2
    done
}
start before "$1" "$port"
start after "$2" $((port + 10))
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
: >"$work/figures"
for _ in $(seq 1 "$rounds"); do
    for side in before:"$1":$port after:"$2":$((port + 10)); do
        IFS=: read -r name dir p <<<"$side"
        pid=$(cat "$work/$name.pid")
        c0=$(cpu "$pid")
        qps=$("$dir/allidb" --addr 127.0.0.1:$p bench query "${common[@]}" --skip-ingest -n "$n" \
            --concurrency 1 | grep -oE '[0-9.]+ queries/s' | cut -d' ' -f1)
        c1=$(cpu "$pid")
        ticks=$(getconf CLK_TCK)
        line="$name $qps $(awk -v a="$c0" -v b="$c1" -v n="$n" -v t="$ticks" 'BEGIN {printf "%.1f", (b - a) * 1e6 / t / n}')"
        echo "$line"
        echo "$line" >>"$work/figures"
    done
    hn=$(python3 "$repo/bench/hnswlib_sweep.py" "$data" | awk -F'|' '$2 + 0 == 64 {print $(NF - 1) + 0}')
    echo "hnswlib $hn"
    echo "hnswlib $hn 0" >>"$work/figures"
done
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
hn=$(grep '^hnswlib ' "$work/figures" | cut -d' ' -f2 | median)
echo "median hnswlib ef 64, one thread: $hn QPS"
for name in before after; do
    qps=$(grep "^$name " "$work/figures" | cut -d' ' -f2 | median)
    echo "median $name: $qps queries/s ($(awk -v a="$qps" -v h="$hn" 'BEGIN {printf "%.2f", a / h}')x hnswlib)," \
        "daemon CPU $(grep "^$name " "$work/figures" | cut -d' ' -f3 | median) us per query"
done
