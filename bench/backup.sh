#!/usr/bin/env bash
# Backup and restore benchmark (issue 40; docs/benchmarks.md "Backup and restore"). One allidbd
# on loopback loaded with N entities of DIM dimensions and TEXT_BYTES of chunk text
# (`allidb bench ingest`), moto's S3 server on loopback ($MOTO_SERVER, else moto_server on PATH;
# `pip install 'moto[server]'`). Then:
#   1. `allidb backup create` into a new prefix: time, files and bytes uploaded, peak RSS of the
#      CLI (/usr/bin/time) and of the daemon during it (its VmRSS, sampled every 0.1 s);
#   2. the same again (nothing written since): what an incremental backup uploads, its time;
#   3. `allidb backup restore` into a new directory: time, bytes, peak RSS of the CLI;
#   4. writes during one backup: a steady `allidb bench ingest` runs through the phase; each of
#      ROUNDS rounds counts the batches the daemon acknowledged (allidb_rpc_requests_total of
#      BatchPutEntities on /metrics) over 15 s with no backup, then during one full backup into a
#      new prefix; the two rates and their ratio;
#   5. write throughput: `allidb bench ingest` of N/10 entities alone, and while full backups
#      (each into a new prefix, so every file is uploaded again) run back to back, ROUNDS times
#      (default 4), the order alternating A B, B A, ...; the ratio of the medians.
#
#   bench/backup.sh [BIN_DIR] [N] [DIM] [TEXT_BYTES]
#
# BIN_DIR holds allidbd and allidb (default target/release; the test profile's target/debug is
# optimized too). Defaults: N = 1000000, DIM = 8, TEXT_BYTES = 0. Ports: PORT (default 7300) to
# PORT + 3. STORE=file backs up into a directory (file://) instead of moto, to leave the S3
# server's own CPU out of the write-throughput rounds. MAX_BYTES_PER_SEC (default 0: none) is
# every backup's `--max-bytes-per-sec`. INCREMENTAL=1 makes phases 4 and 5 back up into one
# prefix each (a scheduled backup's case: each backup uploads only what the earlier ones did not
# hold) instead of a new prefix per backup. Prints one labelled JSON line per phase.
#
# CPU: every phase also reports the CPU time (user + system, from /proc/PID/stat and
# /usr/bin/time) of the daemon, of moto and of the backup CLI, as seconds (`*_cpu_s`) and, in
# phases 4 and 5, as cores busy over the window (`*_cores`: CPU seconds per wall second), with
# the whole host's busy cores from /proc/stat (`host_cores`: everything, other load included).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
n="${2:-1000000}"
dim="${3:-8}"
text="${4:-0}"
rounds="${ROUNDS:-4}"
cap="${MAX_BYTES_PER_SEC:-0}"
# The prefix of backup N of a phase: a new one each time, or one for the phase (INCREMENTAL=1).
prefix() { if [ "${INCREMENTAL:-0}" = 1 ]; then echo "$1"; else echo "$1-$2"; fi; }
port="${PORT:-7300}"
moto="${MOTO_SERVER:-moto_server}"
work="$(mktemp -d)"
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
addr="127.0.0.1:$port"
s3="127.0.0.1:$((port + 3))"
if [ "${STORE:-s3}" = file ]; then target="file://$work/store"; else target="s3://bench"; fi

"$bin/allidbd" --data-dir "$work/data" --grpc-addr "$addr" \
  --set "server.http_addr=127.0.0.1:$((port + 1))" --set "server.admin_addr=127.0.0.1:$((port + 2))" \
  > "$work/allidbd.out" 2> "$work/allidbd.log" &
echo $! > "$work/allidbd.pid"
"$moto" -H 127.0.0.1 -p "$((port + 3))" > /dev/null 2>&1 &
echo $! > "$work/moto.pid"
until grep -q "allidbd: ready" "$work/allidbd.out"; do sleep 0.2; done
until curl -s -o /dev/null -X PUT "http://$s3/bench"; do sleep 0.2; done
export AWS_ENDPOINT_URL="http://$s3" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
daemon_pid=$(cat "$work/allidbd.pid")

moto_pid=$(cat "$work/moto.pid")
ticks=$(getconf CLK_TCK)
# CPU seconds (user + system) process $1 has used so far.
cpu() { awk -v t="$ticks" '{sub(/^.*\) /, ""); print ($12 + $13) / t}' "/proc/$1/stat"; }
# CPU seconds the whole host has been busy (not idle, not waiting for I/O) so far.
host_cpu() { awk -v t="$ticks" '/^cpu / {print ($2 + $3 + $4 + $7 + $8 + $9) / t}' /proc/stat; }
# `daemon moto host` CPU seconds so far.
cpus() { echo "$(cpu "$daemon_pid") $(cpu "$moto_pid") $(host_cpu)"; }

cli() { "$bin/allidb" --addr "$addr" --json "$@"; }
ingest() { # prefix count
  cli bench ingest -n "$2" --dim "$dim" --text-bytes "$text" --batch-size 256 --concurrency 4 \
    --id-prefix "$1" | tail -1
}
# Peak VmRSS (KiB) of the daemon while $work/watching exists, into $work/daemon-peak.
watch_daemon() {
  local peak=0 rss
  while [ -e "$work/watching" ]; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$daemon_pid/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.1
  done
  echo "$peak" > "$work/daemon-peak"
}
# Runs `allidb ARGS` under /usr/bin/time; prints `{"seconds", "cli_peak_rss_kib",
# "daemon_peak_rss_kib", "cli_cpu_s", "daemon_cpu_s", "moto_cpu_s", "reply"}`.
measured() {
  touch "$work/watching"
  watch_daemon &
  local watcher=$! before after
  before=$(cpus)
  /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$bin/allidb" --addr "$addr" --json "$@" > "$work/reply"
  after=$(cpus)
  rm "$work/watching"
  wait "$watcher"
  read -r seconds cli_kib cli_user cli_sys < "$work/time"
  read -r d0 m0 _ <<< "$before"
  read -r d1 m1 _ <<< "$after"
  echo "{\"seconds\": $seconds, \"cli_peak_rss_kib\": $cli_kib, \"daemon_peak_rss_kib\": $(cat "$work/daemon-peak"), $(python3 -c "print(f'\"cli_cpu_s\": {$cli_user + $cli_sys:.2f}, \"daemon_cpu_s\": {$d1 - $d0:.2f}, \"moto_cpu_s\": {$m1 - $m0:.2f}')"), \"reply\": $(cat "$work/reply")}"
}
# CPU used between two `cpus` readings over `seconds`, plus the CLI's CPU seconds: a JSON object.
cpu_json() { # before after seconds cli_cpu_s
  python3 -c "
d0, m0, h0 = map(float, '$1'.split()); d1, m1, h1 = map(float, '$2'.split()); s = $3
print(f'{{\"daemon_cores\": {(d1 - d0) / s:.2f}, \"moto_cores\": {(m1 - m0) / s:.2f}, \"cli_cores\": {$4 / s:.2f}, \"host_cores\": {(h1 - h0) / s:.2f}, \"cli_cpu_s\": {$4:.2f}}}')"
}
# Runs `allidb ARGS` under /usr/bin/time, output discarded; appends its user + system CPU
# seconds to the file $1.
timed_cli() {
  local log=$1
  shift
  /usr/bin/time -f "%U %S" -a -o "$log" "$bin/allidb" --addr "$addr" --json "$@" > /dev/null
}
# The sum of the CPU seconds in file $1 (lines `user system`; 0 when absent).
cpu_sum() { awk '{s += $1 + $2} END {printf "%.2f", s + 0}' "$1" 2>/dev/null || echo 0; }

started=$(date +%s.%N)
ingest load- "$n" > "$work/load.json"
echo "load {\"entities\": $n, \"seconds\": $(echo "$(date +%s.%N) - $started" | bc), \"ingest\": $(cat "$work/load.json")}"
echo "data_dir_bytes $(du -sb "$work/data" | cut -f1)"

echo "backup $(measured backup create --to "$target/full" --staging "$work/staging" --max-bytes-per-sec "$cap")"
echo "incremental $(measured backup create --to "$target/full" --staging "$work/staging" --max-bytes-per-sec "$cap")"
id=$(cli backup list --from "$target/full" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup_id"])')
echo "restore $(measured backup restore --from "$target/full" --backup "$id" --data-dir "$work/restored")"
echo "restored_dir_bytes $(du -sb "$work/restored" | cut -f1)"
rm -rf "$work/restored"

# Entities acknowledged so far (batches of 256).
acked() {
  curl -s "http://127.0.0.1:$((port + 2))/metrics" |
    awk '/^allidb_rpc_requests_total\{rpc="BatchPutEntities",code="OK"/ {print $2 * 256}'
}
# Far more than the phase writes, so the ingest runs through every round (stopped below).
"$bin/allidb" --addr "$addr" bench ingest -n "$((n * 20))" --dim "$dim" --text-bytes "$text" --batch-size 256 --concurrency 4 \
  --id-prefix steady- > /dev/null 2>&1 &
echo $! > "$work/steady.pid"
sleep 5
for round in $(seq 1 "$rounds"); do
  a0=$(acked); c0=$(cpus); t0=$(date +%s.%N); sleep 15; a1=$(acked); c1=$(cpus); t1=$(date +%s.%N)
  rm -f "$work/single-cpu"
  timed_cli "$work/single-cpu" backup create --to "$target/$(prefix single "$round")" \
    --staging "$work/staging" --max-bytes-per-sec "$cap"
  a2=$(acked); c2=$(cpus); t2=$(date +%s.%N)
  alone_cpu=$(cpu_json "$c0" "$c1" "$(echo "$t1 - $t0" | bc)" 0)
  during_cpu=$(cpu_json "$c1" "$c2" "$(echo "$t2 - $t1" | bc)" "$(cpu_sum "$work/single-cpu")")
  python3 -c "
import sys
alone = ($a1 - $a0) / ($t1 - $t0); during = ($a2 - $a1) / ($t2 - $t1)
print(f'single $round {{\"alone_per_sec\": {alone:.0f}, \"during_backup_per_sec\": {during:.0f}, \"backup_seconds\": {$t2 - $t1:.1f}, \"ratio\": {during / alone:.2f}, \"alone_cpu\": ' + sys.argv[1] + ', \"during_cpu\": ' + sys.argv[2] + '}')" "$alone_cpu" "$during_cpu"
done
kill "$(cat "$work/steady.pid")" 2>/dev/null || true
rm "$work/steady.pid"

# Full backups back to back, each into a new prefix, until $work/backing-up is removed.
backups_loop() {
  local i=0
  while [ -e "$work/backing-up" ]; do
    i=$((i + 1))
    timed_cli "$work/loop-cpu" backup create --to "$target/$(prefix loop "$BASHPID-$i")" \
      --staging "$work/loop-staging" --max-bytes-per-sec "$cap"
  done
  echo "$i" > "$work/loop-count"
}
per_round=$((n / 10))
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="alone under"; else order="under alone"; fi
  for side in $order; do
    rm -f "$work/loop-cpu"
    c0=$(cpus)
    t0=$(date +%s.%N)
    if [ "$side" = under ]; then
      touch "$work/backing-up"
      backups_loop &
      loop=$!
    fi
    rate=$(ingest "r$round-$side-" "$per_round" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items_per_sec"])')
    if [ "$side" = under ]; then
      rm "$work/backing-up"
      wait "$loop"
    fi
    used=$(cpu_json "$c0" "$(cpus)" "$(echo "$(date +%s.%N) - $t0" | bc)" "$(cpu_sum "$work/loop-cpu")")
    if [ "$side" = under ]; then
      echo "round $round $side {\"entities_per_sec\": $rate, \"backups_started\": $(cat "$work/loop-count"), \"cpu\": $used}"
    else
      echo "round $round $side {\"entities_per_sec\": $rate, \"cpu\": $used}"
    fi
  done
done
