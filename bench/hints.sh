#!/usr/bin/env bash
# Hint delivery time (issue 11; docs/benchmarks.md "Ring"): a fresh local 3-node ring (RF 3,
# scripts/dev-cluster.sh), n2 killed, N single-entity QUORUM writes of 384-d entities through
# n0 (each stores one hint for n2 on n0), then n2 restarted. Prints the hints n0 stored and the
# seconds from n2 being ready until n0 delivered every one (its metrics: delivered = stored,
# nothing pending).
#
#   bench/hints.sh [BIN_DIR] [N]
#
# BIN_DIR holds allidbd and allidb (default target/release); N defaults to 100000.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-100000}"
work="$(mktemp -d)"
trap 'kill $(cat "$work/pids") 2>/dev/null || true; rm -rf "$work"' EXIT

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
metric() { # name: the value of the n0 counter `name` for peer n2 (0 when absent)
  curl -s http://127.0.0.1:7102/metrics |
    awk -v m="$1" '$1 ~ "^"m"\\{" && $1 ~ /peer="n2"/ { v = $2 } END { print v + 0 }'
}

"$root/scripts/dev-cluster.sh" --dir "$work" --bin "$bin/allidbd" > /dev/null
status() { "$bin/allidb" cluster --admin 127.0.0.1:7102 status; }
# n0 must know n2's tokens before n2 goes, or n2 owns nothing and gets no hints.
until [ "$(status | grep -cE '^normal +healthy +n[0-2] .* 16 ')" = 3 ]; do sleep 0.5; done
kill -9 "$(sed -n 3p "$work/pids")"
until status | grep -qE '^down +\S+ +n2 '; do sleep 0.5; done

start=$(date +%s.%N)
"$bin/allidb" --addr 127.0.0.1:7100 --consistency quorum --json bench ingest -n "$n" \
  --dim 384 --batch-size 1 --concurrency 16 --id-prefix h- | sed 's/^/ingest /'
stored=$(metric allidb_cluster_hints_stored_total)
echo "hints stored for n2: $stored in $(since "$start") s"

"$bin/allidbd" --config "$work/n2/allidb.toml" > "$work/n2/allidbd.out" 2>> "$work/n2/allidbd.log" &
echo $! >> "$work/pids"
until grep -q '^allidbd: ready' "$work/n2/allidbd.out"; do sleep 0.1; done
ready=$(date +%s.%N)
until [ "$(metric allidb_cluster_hints_delivered_total)" -ge "$stored" ]; do sleep 0.2; done
echo "hints delivered: $(metric allidb_cluster_hints_delivered_total) in $(since "$ready") s after n2 was ready"
