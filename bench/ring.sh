#!/usr/bin/env bash
# Ring benchmarks (issue 11; docs/benchmarks.md "Ring"): `allidb bench ingest` and `bench get`
# against a single node and against a local 3-node ring (RF 3) at ONE and QUORUM, same machine,
# same run. The three ring nodes share the machine's cores with each other and the client.
#
#   bench/ring.sh [BIN_DIR] [N]
#
# BIN_DIR holds allidbd and allidb (default target/release; the test profile's target/debug is
# optimized too). N = entities ingested per run (default 20000). Prints one JSON line per phase,
# prefixed with its setup.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-20000}"
work="$(mktemp -d)"
trap 'kill $(cat "$work"/*/pids 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

ingest() { # addr consistency prefix
  "$bin/allidb" --addr "$1" --consistency "$2" --json bench ingest -n "$n" --dim 384 \
    --batch-size 64 --concurrency 4 --id-prefix "$3" | sed "s/^/$4 /"
}
get() { # addr consistency prefix label
  "$bin/allidb" --addr "$1" --consistency "$2" --json bench get --keys "$n" -n "$n" \
    --concurrency 4 --id-prefix "$3" | sed "s/^/$4 /"
}

# A single node.
mkdir -p "$work/single"
"$bin/allidbd" --data-dir "$work/single/data" --grpc-addr 127.0.0.1:7190 --http-addr 127.0.0.1:7191 \
  --set server.admin_addr=127.0.0.1:7192 > "$work/single/out" 2> "$work/single/log" &
echo $! > "$work/single/pids"
until grep -q '^allidbd: ready' "$work/single/out"; do sleep 0.1; done
ingest 127.0.0.1:7190 one r- single
get 127.0.0.1:7190 one r- single
kill "$(cat "$work/single/pids")"
while kill -0 "$(cat "$work/single/pids")" 2>/dev/null; do sleep 0.2; done

# A fresh ring of three, RF 3, per level: a ONE run leaves the other replicas applying (and
# indexing) its writes after the client is done, which would slow the next run.
for level in quorum one; do
  "$root/scripts/dev-cluster.sh" --dir "$work/ring-$level" --bin "$bin/allidbd" > /dev/null
  ingest 127.0.0.1:7100 "$level" r- "ring-$level"
  get 127.0.0.1:7100 "$level" r- "ring-$level"
  kill $(cat "$work/ring-$level/pids")
  # The next ring takes the same ports: wait until these daemons have exited.
  for pid in $(cat "$work/ring-$level/pids"); do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  done
done
