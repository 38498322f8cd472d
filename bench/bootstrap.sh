#!/usr/bin/env bash
# Topology movements under load (issue 34; docs/benchmarks.md "Bootstrap and decommission"): a
# 3-node ring (RF 3, scripts/dev-cluster.sh) loaded with N entities of DIM dimensions at QUORUM, then
# a 4th node started with the same configuration joins (it streams about a quarter of the data
# from the replicas it displaces) and is decommissioned again, while a QUORUM writer runs.
#
#   bench/bootstrap.sh [BIN_DIR] [N] [BASE_PORT] [DIM] [TEXT_BYTES] [WRITER]
#
# BIN_DIR holds allidbd and allidb (default target/release; the test profile's target/debug is
# optimized too). N entities loaded (default 200000). BASE_PORT: the ring's first port (default
# 7100; nodes take BASE_PORT + 10i .. + 3). DIM: the vectors' dimensions, of the load and the
# writer (default 384; 0: entities without a vector). TEXT_BYTES: bytes of text per entity, in
# one chunk (default 0: none); `0 400` loads text-only entities, whose stream is not paced by
# an indexer. WRITER: 1 (default) runs the QUORUM writer through the phases, 0 measures the
# movements alone (the writer's figures are then null). Prints one JSON line per phase: the load
# (and the seconds the ring then took to settle: its flushes, compactions and index dumps done), the
# writer's rate alone, the bootstrap (seconds from start to ready, bytes and cells n3 received,
# MB/s, the stream alone: seconds and MB/s from the first stream session's start to the
# coordinator's "ranges are streamed" in the logs, seconds its stream waited for n3's indexer)
# with the writer's rate meanwhile, the
# decommission likewise, and the writer's slowest round from the decommission on. The writer
# runs rounds of 300 QUORUM writes; a phase's rate is the median of the rounds inside it, and
# its rate in all counts the rounds that waited as well.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-200000}"
port="${3:-7100}"
dim="${4:-384}"
text="${5:-0}"
writer="${6:-1}"
work="$(mktemp -d)"
# On exit: stop the daemons and wait (up to 60 s) until they have shut down, so that the next
# run does not start beside their final flushes or find their ports taken.
stop_all() {
  local pids
  pids=$(cat "$work/ring/pids" "$work/n3.pid" "$work/writer.pid" 2>/dev/null || true)
  kill $pids 2>/dev/null || true
  for _ in $(seq 600); do
    local running=0
    for pid in $pids; do
      # a zombie (an exited child of this script) counts as stopped
      if [ -e "/proc/$pid" ] && ! grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null; then
        running=1
      fi
    done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  rm -rf "$work"
}
trap stop_all EXIT

"$root/scripts/dev-cluster.sh" --nodes 3 --bin "$bin/allidbd" --dir "$work/ring" --base-port "$port" >&2
n0="127.0.0.1:$port"
started=$(date +%s.%N)
"$bin/allidb" --addr "$n0" --consistency quorum --json bench ingest -n "$n" --dim "$dim" --text-bytes "$text" \
  --batch-size 64 --concurrency 4 --id-prefix load- > "$work/load.json"
loaded=$(echo "$(date +%s.%N) - $started" | bc)
# The ring settles before anything is measured: the load's memtable flushes and compactions
# run on after its last acknowledged write, and each node writes its index dump (every
# `index.dump_interval_secs`, 60 s by default, once writes came: seconds of CPU for 300,000
# texts), all of which would share the cores with the movements. Waits (at most 180 s) until
# every node has written a dump since the load ended and the three nodes together use under 5%
# of a core over a second.
settle_started=$(date +%s.%N)
python3 - "$work/load.json" "$work/ring" $(cat "$work/ring/pids") <<'PY'
import os, sys, time
loaded, ring, pids = os.path.getmtime(sys.argv[1]), sys.argv[2], sys.argv[3:]
ticks = os.sysconf("SC_CLK_TCK")
def cpu():
    return sum(sum(int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
               for pid in pids) / ticks
def dumped(node):
    index = os.path.join(ring, node, "data", "index")
    return any(os.path.getmtime(os.path.join(d, f)) > loaded
               for d, _, files in os.walk(index) for f in files)
nodes = sorted(n for n in os.listdir(ring) if os.path.isdir(os.path.join(ring, n, "data")))
deadline = time.time() + 180
before = cpu()
while time.time() < deadline:
    time.sleep(1)
    now = cpu()
    if now - before < 0.05 and all(dumped(n) for n in nodes):
        break
    before = now
PY
echo "{\"phase\": \"load\", \"entities\": $n, \"seconds\": $loaded, \"settle_seconds\": $(echo "$(date +%s.%N) - $settle_started" | bc)}"

# The writer: rounds of 300 QUORUM writes through n0, each logged as "start end entities".
touch "$work/writer.log"
if [ "$writer" = 1 ]; then
  (
    round=0
    while true; do
      begin=$(date +%s.%N)
      "$bin/allidb" --addr "$n0" --consistency quorum --json bench ingest -n 300 --dim "$dim" --text-bytes "$text" \
        --batch-size 16 --concurrency 2 --seed "$round" --id-prefix "w$round-" > /dev/null 2>&1 || true
      echo "$begin $(date +%s.%N) 300" >> "$work/writer.log"
      round=$((round + 1))
    done
  ) &
  echo $! > "$work/writer.pid"
fi

rate_between() { # from to: median entities/s of the writer rounds inside [from, to], their
  # number, and the entities/s in all (their writes over the time from the first's start to the
  # last's end: unlike the median, it counts the rounds that waited)
  python3 - "$1" "$2" "$work/writer.log" <<'PY'
import statistics, sys
lo, hi, path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rounds = [(b, e, n) for b, e, n in (map(float, l.split()) for l in open(path)) if b >= lo and e <= hi]
rates = [n / (e - b) for b, e, n in rounds]
in_all = sum(n for _, _, n in rounds) / (rounds[-1][1] - rounds[0][0]) if len(rounds) > 1 else None
print(round(statistics.median(rates), 1) if rates else "null", len(rates),
      round(in_all, 1) if in_all else "null")
PY
}
stream_seconds() { # KIND (bootstrap|decommission): seconds from the first "stream session
  # started" of that purpose in any node's log to the coordinator's "the movement's ranges are
  # streamed" for the last movement of that kind (the stream alone, without start-up and
  # barriers; the ring's own nodes joined by empty bootstraps before)
  python3 - "$1" "$work"/ring/n*/allidbd.log "$work/ring/n3/log" <<'PY'
import datetime, re, sys
kind, logs = sys.argv[1], sys.argv[2:]
stamp = lambda line: datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
starts, ends = [], []
for path in logs:
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        continue
    for line in lines:
        if "stream session started" in line and re.search(f'purpose="?{kind}\\b', line):
            starts.append(stamp(line))
        elif "the movement's ranges are streamed" in line and re.search(f"movement={kind} ", line):
            ends.append(stamp(line))
# the last movement of that kind: its end, and the sessions started since the one before ended
ends.sort()
last, before = (ends[-1], ends[-2] if len(ends) > 1 else float("-inf")) if ends else (None, None)
starts = [t for t in starts if last is not None and before < t <= last]
print(round(last - min(starts), 3) if starts else "null")
PY
}
mb_per_sec() { # BYTES SECONDS ("null" when the seconds are unknown)
  if [ "$2" = null ]; then echo null; else echo "scale=1; $1 / $2 / 1000000" | bc; fi
}
metric() { # admin metric (summed over labels)
  curl -s "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'
}

if [ "$writer" = 1 ]; then sleep 30; fi
alone_end=$(date +%s.%N)
read -r alone alone_rounds alone_all < <(rate_between 0 "$alone_end")
echo "{\"phase\": \"writer alone\", \"writes_per_sec\": $alone, \"rounds\": $alone_rounds, \"writes_per_sec_in_all\": $alone_all}"

# The 4th node: n2's configuration on the next ports, its own data dir and name.
base3=$((port + 30))
mkdir -p "$work/ring/n3"
sed -e "s/127.0.0.1:$((port + 20))/127.0.0.1:$base3/; s/127.0.0.1:$((port + 21))/127.0.0.1:$((base3 + 1))/" \
  -e "s/127.0.0.1:$((port + 22))/127.0.0.1:$((base3 + 2))/; s/127.0.0.1:$((port + 23))/127.0.0.1:$((base3 + 3))/" \
  -e "s#/n2/data#/n3/data#; s/node_name = \"n2\"/node_name = \"n3\"/" \
  "$work/ring/n2/allidb.toml" > "$work/ring/n3/allidb.toml"
join_start=$(date +%s.%N)
"$bin/allidbd" --config "$work/ring/n3/allidb.toml" > "$work/ring/n3/out" 2> "$work/ring/n3/log" &
echo $! > "$work/n3.pid"
until grep -q '^allidbd: ready' "$work/ring/n3/out" 2>/dev/null; do sleep 0.2; done
join_end=$(date +%s.%N)
admin3="127.0.0.1:$((base3 + 2))"
bytes=$(metric "$admin3" allidb_stream_received_bytes_total)
cells=$(metric "$admin3" allidb_stream_received_cells_total)
seconds=$(echo "$join_end - $join_start" | bc)
read -r during during_rounds during_all < <(rate_between "$join_start" "$join_end")
waited=$(metric "$admin3" allidb_stream_index_wait_seconds_sum)
streamed=$(stream_seconds bootstrap)
echo "{\"phase\": \"bootstrap\", \"seconds\": $seconds, \"stream_seconds\": $streamed, \"stream_mb_per_sec\": $(mb_per_sec "$bytes" "$streamed"), \"bytes_received\": $bytes, \"cells_received\": $cells, \"mb_per_sec\": $(echo "scale=1; $bytes / $seconds / 1000000" | bc), \"index_wait_secs\": $waited, \"writer_writes_per_sec\": $during, \"writer_rounds\": $during_rounds, \"writer_writes_per_sec_in_all\": $during_all}"

sleep 10
leave_start=$(date +%s.%N)
"$bin/allidb" --addr "127.0.0.1:$base3" cluster decommission > "$work/decommission.out"
leave_end=$(date +%s.%N)
read -r during during_rounds during_all < <(rate_between "$leave_start" "$leave_end")
sent=$(metric "$admin3" allidb_stream_sent_bytes_total)
seconds=$(echo "$leave_end - $leave_start" | bc)
waits=""
for i in 0 1 2; do
  waits="$waits${waits:+, }$(metric "127.0.0.1:$((port + 10 * i + 2))" allidb_stream_index_wait_seconds_sum)"
done
streamed=$(stream_seconds decommission)
echo "{\"phase\": \"decommission\", \"seconds\": $seconds, \"stream_seconds\": $streamed, \"stream_mb_per_sec\": $(mb_per_sec "$sent" "$streamed"), \"bytes_sent_by_n3\": $sent, \"mb_per_sec\": $(echo "scale=1; $sent / $seconds / 1000000" | bc), \"index_wait_secs_n0_n1_n2\": [$waits], \"writer_writes_per_sec\": $during, \"writer_rounds\": $during_rounds, \"writer_writes_per_sec_in_all\": $during_all}"
# The writer's slowest round after the decommission began (a stall shows here even when no
# round fits inside the phase).
python3 - "$leave_start" "$work/writer.log" <<'PY'
import sys
lo, path = float(sys.argv[1]), sys.argv[2]
rounds = [(b, e) for b, e, _ in (map(float, l.split()) for l in open(path)) if e >= lo]
slowest = max((e - b for b, e in rounds), default=0.0)
print(f'{{"phase": "after decommission", "writer_rounds": {len(rounds)}, "slowest_round_secs": {slowest:.2f}}}')
PY
