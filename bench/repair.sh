#!/usr/bin/env bash
# Anti-entropy repair benchmark (issue 33; docs/benchmarks.md "Anti-entropy repair"). A local
# ring of three (RF 3, hinted handoff off so only repair can fix a replica), N entities of DIM
# dimensions written at ALL; n2 is stopped while N/2000 new entities are written and N/2000
# deleted at QUORUM (0.1% of N differs on n2), then restarted. Then:
#   1. `allidb cluster repair` through n0: its reply (duration, partitions differing against
#      the true difference, cells and bytes streamed) and the peak RSS of each node during it;
#   2. the same repair again, replicas now identical: the time to conclude nothing differs;
#   3. write throughput: `allidb bench ingest` of N/10 entities at QUORUM through n1 alone,
#      and again while n0 repairs in a loop (identical replicas; every range compared each
#      time), ROUNDS times (default 4), the order alternating A B, B A, A B, ... so that neither
#      side always runs on the larger store; the ratio of the medians. Each round starts once
#      every node's vector index has caught up (`allidb_vector_index_pending` 0 on each node's
#      /metrics): a write is acknowledged before the ANN graph holds its vector, so without it
#      a round would pay for the indexing of the round before it.
# The CPU seconds each node spends (user + system, /proc/PID/stat) are printed for phases 1
# and 2, beside the bytes of its directory (data and logs).
#
#   bench/repair.sh [BIN_DIR] [N] [DIM]
#
# BIN_DIR holds allidbd and allidb (default target/release; the test profile's target/debug is
# optimized too). Defaults: N = 1000000, DIM = 8. Uses ports 7100-7123 (scripts/dev-cluster.sh).
# The daemons take ALLIDB_* variables from the environment, e.g.
# ALLIDB_CLUSTER_REPAIR_SCAN_BYTES_PER_SEC=0 for unpaced repair scans.
# Prints one labelled JSON line per phase.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-1000000}"
dim="${3:-8}"
diff=$((n / 2000))
rounds="${ROUNDS:-4}"
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
# CPU seconds (user + system) of each node so far, space-separated, in node order.
node_cpu() {
  for pid in $(node_pids); do
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f ", ($14 + $15) / hz}' "/proc/$pid/stat"
  done
}
# `LABEL {"n0": seconds, ...}`: the CPU seconds each node spent since BEFORE (node_cpu).
cpu_since() { # label before
  python3 - "$1" "$2" "$(node_cpu)" <<'PY'
import sys
label, before, after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
spent = ", ".join(f'"n{i}": {float(a) - float(b):.1f}' for i, (b, a) in enumerate(zip(before, after)))
print(f"{label} {{{spent}}}")
PY
}

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
cpu=$(node_cpu)
echo "repair-divergent $(cli 127.0.0.1:7100 cluster repair)"
cpu_since repair-divergent-cpu-s "$cpu"
rm "$work/watching"
# What the replicas streamed to n0 to compare (its log line).
grep -o 'bytes_compared=[0-9]*' "$work/n0/allidbd.log" | tail -1 | sed 's/^/repair-divergent-compared /'
wait "$watcher"
echo "repair-divergent-peak-rss-kib {$(awk '{printf "%s\"%s\": %s", (NR>1?", ":""), $1, $2}' "$work/peak")}"
echo "true-difference {\"partitions\": $((diff + deleted))}"

# 2. Identical replicas.
cpu=$(node_cpu)
echo "repair-identical $(cli 127.0.0.1:7100 cluster repair)"
cpu_since repair-identical-cpu-s "$cpu"
echo "node-dir-bytes {$(for i in 0 1 2; do printf '%s"n%s": %s' "$([ $i -gt 0 ] && echo ', ')" $i "$(du -sb "$work/n$i" | cut -f1)"; done)}"

# 3. Write throughput alone and under a repair loop, ROUNDS times, the order alternating.
rate() { sed 's/.*"items_per_sec":\([0-9.]*\).*/\1/'; }
# Waits until no node has vectors waiting for its ANN graph; prints how long that took.
settle() { # label
  local started=$SECONDS
  until python3 - <<'PY'
import sys, urllib.request
for port in (7102, 7112, 7122):
    for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
        if line.startswith("allidb_vector_index_pending") and float(line.split()[-1]) > 0:
            sys.exit(1)
PY
  do sleep 0.5; done
  echo "settled-before-$1 {\"secs\": $((SECONDS - started))}"
}
ingest_round() { # alone|under start
  cli 127.0.0.1:7110 --consistency quorum bench ingest -n $((n / 10)) --dim "$dim" \
    --batch-size 256 --concurrency 4 --id-prefix "$1-" --start "$2" | tail -1
}
alone() { # round start
  local line
  settle "alone-$1"
  line=$(ingest_round alone "$2")
  echo "ingest-alone-$1 $line"
  echo "$line" | rate >> "$work/alone"
}
under() { # round start
  local line looper
  settle "under-repair-$1"
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
  line=$(ingest_round under "$2")
  rm "$work/repairing"
  wait "$looper"
  echo "ingest-under-repair-$1 $line"
  echo "repairs-during-ingest-$1 {\"runs\": $(cat "$work/repair-runs")}"
  echo "$line" | rate >> "$work/under"
}
: > "$work/alone"
: > "$work/under"
for round in $(seq 1 "$rounds"); do
  start=$(( (round - 1) * n / 10 ))
  if [ $((round % 2)) -eq 1 ]; then
    alone "$round" "$start"
    under "$round" "$start"
  else
    under "$round" "$start"
    alone "$round" "$start"
  fi
done
python3 - "$work/alone" "$work/under" <<'PY'
import statistics, sys
alone, under = ([float(x) for x in open(p)] for p in sys.argv[1:3])
a, u = statistics.median(alone), statistics.median(under)
print(f'ingest-kept {{"alone_median": {a:.0f}, "under_repair_median": {u:.0f}, "kept": {u / a:.2f}}}')
PY
