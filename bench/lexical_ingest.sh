#!/usr/bin/env bash
# Ingest with a tenant's lexical index on and off, through the daemon (issue 38's ingest goal;
# docs/benchmarks.md "Ingest with the lexical index on and off"): ROUNDS rounds, each writing N
# entities into a fresh daemon with the default configuration and into a fresh one started with
# `--set index.lexical_enabled=false`, the order alternating per round. Per run: entities/s from
# `allidb bench ingest`, the daemon's CPU seconds (from /proc, user + system) and the client's.
#
#   bench/lexical_ingest.sh [BIN_DIR] [ROUNDS] [N] [DIM] [TEXT_BYTES] [CONCURRENCY]
#
# BIN_DIR holds allidbd and allidb (default target/release). Defaults: 5 rounds, 200,000
# entities, DIM 0 (texts only; 384 for the RAG shape), 400 bytes of text, 4 requests in flight.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release}"
rounds="${2:-5}"
n="${3:-200000}"
dim="${4:-0}"
text="${5:-400}"
concurrency="${6:-4}"
work="$(mktemp -d)"
trap 'kill $(cat "$work"/pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
ticks="$(getconf CLK_TCK)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# One run: a fresh daemon with the flags given, N entities written, then the daemon stopped.
run() {
  local label="$1"; shift
  local data="$work/data" grpc http
  rm -rf "$data"
  grpc="$(free_port)"
  http="$(free_port)"
  "$bin/allidbd" --data-dir "$data" --grpc-addr "127.0.0.1:$grpc" --http-addr "127.0.0.1:$http" \
    "$@" >"$work/daemon.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$work/pid"
  for _ in $(seq 300); do
    grep -q ready "$work/daemon.log" && break
    sleep 0.1
  done
  local rate
  local out
  out="$( { /usr/bin/time -f 'client_cpu %U %S' "$bin/allidb" bench ingest --addr "127.0.0.1:$grpc" \
      -n "$n" --dim "$dim" --text-bytes "$text" --concurrency "$concurrency"; } 2>&1)"
  rate="$(echo "$out" | grep -oE '[0-9.]+ (entities|ops)/s' | head -1 | grep -oE '^[0-9.]+')"
  local client
  client="$(echo "$out" | awk '/^client_cpu/ {printf "%.2f", $2 + $3}')"
  local stat cpu
  stat=($(cut -d' ' -f14,15 "/proc/$pid/stat"))
  cpu="$(echo "${stat[0]} ${stat[1]} $ticks" | awk '{printf "%.2f", ($1 + $2) / $3}')"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$label rate=$rate entities/s daemon_cpu=${cpu}s client_cpu=${client}s"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    run "round $round on " ; run "round $round off" --set index.lexical_enabled=false
  else
    run "round $round off" --set index.lexical_enabled=false; run "round $round on "
  fi
done
