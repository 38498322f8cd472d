#!/usr/bin/env bash
# Anti-entropy repair benchmark (issue 33; docs/benchmarks.md "Anti-entropy repair"). A local
# ring of three (RF 3, hinted handoff off so only repair can fix a replica), N entities of DIM
# dimensions written at ALL; n2 is stopped while N/2000 new entities are written and N/2000
# deleted at QUORUM (0.1% of N differs on n2), then restarted. Then:
#   1. `allidb cluster repair` through n0: its reply (duration, partitions differing against
#      the true difference, cells and bytes streamed) and the peak RSS of each node during it;
#   2. the same repair again, replicas now identical: the time to conclude nothing differs;
#   3. write throughput: `allidb bench ingest` at QUORUM through n1 alone, then again while
#      n0 repairs in a loop (identical replicas; every range compared each time).
#
#   bench/repair.sh [BIN_DIR] [N] [DIM]
#
# BIN_DIR holds allidbd and allidb (default target/release; the test profile's target/debug is
# optimized too). Defaults: N = 1000000, DIM = 8. Uses ports 7100-7123 (scripts/dev-cluster.sh).
# Prints one labelled JSON line per phase.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-1000000}"
dim="${3:-8}"
diff=$((n / 2000))
work="$(mktemp -d)"
trap 'kill $(cat "$work"/pids "$work"/n2.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
export ALLIDB_CLUSTER_HINTED_HANDOFF_ENABLED=false

cli() { # addr args...
  local addr="$1"
  shift
  "$bin/allidb" --addr "$addr" --json "$@"
}
ingest() { # addr consistency prefix count label
  cli "$1" --consistency "$2" bench ingest -n "$4" --dim "$dim" --batch-size 256 \
    --concurrency 4 --id-prefix "$3" | tail -1 | sed "s/^/$5 /"
}
# Peak VmRSS (KiB) of each pid in $work/watch while $work/watching exists, into $work/peak.
watch_rss() {
  declare -A peak
  while [ -e "$work/watching" ]; do
    for pid in $(cat "$work/watch"); do
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${rss:-0}" -gt "${peak[$pid]:-0}" ] && peak[$pid]=$rss
    done
    sleep 0.2
  done
  for pid in $(cat "$work/watch"); do echo "$pid ${peak[$pid]:-0}"; done > "$work/peak"
}
node_pids() { echo "$(sed -n 1,2p "$work/pids" | tr '\n' ' ')$(cat "$work/n2.pid")"; }

"$root/scripts/dev-cluster.sh" --dir "$work" --bin "$bin/allidbd" > /dev/null
sed -n 3p "$work/pids" > "$work/n2.pid"
ingest 127.0.0.1:7100 all base- "$n" "load"

# n2 misses N/2000 puts and N/2000 deletes.
kill -9 "$(cat "$work/n2.pid")"
ingest 127.0.0.1:7100 quorum new- "$diff" "divergence-puts"
# Deletes of base ids spread over the key space (ids are `base-` and 10 digits).
deleted=0
for i in $(seq 0 $((diff - 1))); do
  cli 127.0.0.1:7100 --consistency quorum delete "$(printf 'base-%010d' $((i * 1999 % n)))" > /dev/null
  deleted=$((deleted + 1))
done
echo "divergence-deletes {\"deleted\": $deleted}"
: > "$work/n2/allidbd.out"
"$bin/allidbd" --config "$work/n2/allidb.toml" > "$work/n2/allidbd.out" 2>> "$work/n2/allidbd.log" &
echo $! > "$work/n2.pid"
until grep -q '^allidbd: ready' "$work/n2/allidbd.out"; do sleep 0.1; done
until python3 - <<'PY'
import json, sys, urllib.request
nodes = json.load(urllib.request.urlopen("http://127.0.0.1:7102/cluster/status"))["nodes"]
sys.exit(0 if all(n["status"] == "normal" for n in nodes) else 1)
PY
do sleep 0.2; done

# 1. The repair of the divergence.
node_pids > "$work/watch"
touch "$work/watching"
watch_rss &
watcher=$!
echo "repair-divergent $(cli 127.0.0.1:7100 cluster repair)"
rm "$work/watching"
wait "$watcher"
echo "repair-divergent-peak-rss-kib {$(awk '{printf "%s\"%s\": %s", (NR>1?", ":""), $1, $2}' "$work/peak")}"
echo "true-difference {\"partitions\": $((diff + deleted))}"

# 2. Identical replicas.
echo "repair-identical $(cli 127.0.0.1:7100 cluster repair)"

# 3. Write throughput alone, then under a repair loop.
ingest 127.0.0.1:7110 quorum alone- $((n / 10)) "ingest-alone"
touch "$work/repairing"
(
  runs=0
  while [ -e "$work/repairing" ]; do
    cli 127.0.0.1:7100 cluster repair > /dev/null || true
    runs=$((runs + 1))
  done
  echo "$runs" > "$work/repair-runs"
) &
looper=$!
ingest 127.0.0.1:7110 quorum under- $((n / 10)) "ingest-under-repair"
rm "$work/repairing"
wait "$looper"
echo "repairs-during-ingest {\"runs\": $(cat "$work/repair-runs")}"
